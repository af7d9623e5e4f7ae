/* label: integration */
/*  test_events_access: who sees which events, over HTTP/2 and WebSocket
    against a real node on a real PostgreSQL. Two users, ann and bob, each
    create tasks (ann in a project of hers, with an artifact and a HITL
    question; bob through a schedule of his); the JSON list (whole and
    paged, with filters), SSE replay from after=0 and live events, and a
    WebSocket (replay and live) give each user only its own tasks' and
    projects' events and the shared agent.status, and the admin all of
    them; filtering on the other user's task or project gives nothing,
    not an error. And a browser's ways to authenticate a WebSocket: the
    subprotocol bearer.<token> (echoed), ?access_token= with an access
    token or an API key, each refused with 401 before the upgrade when
    missing or wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "httptest.h"
#include "orchtest.h"
#include "streamtest.h"

typedef struct {
    tn_node_t *node;       //  the node
    int port;              //  its HTTP port
    int64_t ann, bob;      //  user ids
    char *ann_token;       //  their access tokens
    char *bob_token;       //  ...
    int64_t ann_project;   //  a project of ann's
    int64_t ann_task;      //  a task of ann's in it (done)
    int64_t ann_question;  //  a task of ann's waiting for a human
    int64_t bob_task;      //  a task of bob's (done)
    int64_t bob_scheduled; //  a task of bob's schedule
    int64_t bob_project;   //  a project of bob's
} fx_t;

//  A request as cred that must answer want; returns the body (caller
//  decrefs).
static json_t *
s_call_as(const fx_t *fx, const char *cred, const char *method, const char *path, const char *body,
          long want)
{
    tn_resp_t r;
    long status = tn_call_as(fx->node, cred, &r, method, path, body);
    if (status != want) {
        fail_msg("%s %s: %ld (want %ld) %s", method, path, status, want, r.body ? r.body : "");
    }
    json_t *json = r.json ? json_incref(r.json) : NULL;
    tn_resp_free(&r);
    return json;
}

static int64_t
s_create_as(const fx_t *fx, const char *cred, const char *path, const char *body)
{
    json_t *obj = s_call_as(fx, cred, "POST", path, body, 201);
    int64_t id = ot_int(obj, "id");
    json_decref(obj);
    return id;
}

static int
s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    *state = fx; //  (for the teardown, should a step below fail)
    fx->node = ot_start();
    if (!fx->node) {
        return -1;
    }
    const char *colon = strrchr(fx->node->base, ':');
    fx->port = atoi(colon + 1);
    ot_agent(fx->node, "worker", "echo", NULL, 4, NULL);
    ot_agent(fx->node, "asker", "echo", NULL, 1, "{\"ask_human\":\"Proceed?\"}");
    fx->ann = tn_user(fx->node, "ann", "user", &fx->ann_token);
    fx->bob = tn_user(fx->node, "bob", "user", &fx->bob_token);
    assert_true(fx->ann > 0 && fx->bob > 0);

    //  ann: a project, a task in it, an artifact of it, a question.
    fx->ann_project = s_create_as(fx, fx->ann_token, "/api/v1/projects", "{\"name\":\"ann's\"}");
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"a1\",\"project_id\":%lld,\"assignee\":{\"agent\":\"worker\"},"
             "\"input\":1}",
             (long long)fx->ann_project);
    fx->ann_task = s_create_as(fx, fx->ann_token, "/api/v1/tasks", body);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/projects/%lld/artifacts", (long long)fx->ann_project);
    json_decref(s_call_as(fx, fx->ann_token, "POST", path,
                          "{\"name\":\"notes.txt\",\"content\":\"hers\"}", 201));
    fx->ann_question = s_create_as(fx, fx->ann_token, "/api/v1/tasks",
                                   "{\"title\":\"q\",\"assignee\":{\"agent\":\"asker\"}}");

    //  bob: a task, a project, and a schedule fired by hand.
    fx->bob_task =
        s_create_as(fx, fx->bob_token, "/api/v1/tasks",
                    "{\"title\":\"b1\",\"assignee\":{\"agent\":\"worker\"},\"input\":2}");
    fx->bob_project = s_create_as(fx, fx->bob_token, "/api/v1/projects", "{\"name\":\"bob's\"}");
    int64_t schedule =
        s_create_as(fx, fx->bob_token, "/api/v1/schedules",
                    "{\"name\":\"nightly\",\"interval_s\":3600,\"task\":{\"title\":\"s\","
                    "\"assignee\":{\"agent\":\"worker\"}}}");
    snprintf(path, sizeof path, "/api/v1/schedules/%lld/run", (long long)schedule);
    json_t *fired = s_call_as(fx, fx->bob_token, "POST", path, NULL, 201);
    fx->bob_scheduled = ot_int(fired, "id");
    json_decref(fired);
    assert_true(fx->bob_scheduled > 0);

    json_decref(ot_wait_status(fx->node, fx->ann_task, "done", 10000));
    json_decref(ot_wait_status(fx->node, fx->bob_task, "done", 10000));
    json_decref(ot_wait_status(fx->node, fx->bob_scheduled, "done", 10000));
    json_decref(ot_wait_status(fx->node, fx->ann_question, "waiting_human", 10000));
    return 0;
}

static int
s_teardown(void **state)
{
    fx_t *fx = (fx_t *)*state;
    if (!fx) {
        return 0;
    }
    tn_stop(&fx->node);
    free(fx->ann_token);
    free(fx->bob_token);
    free(fx);
    return 0;
}

//  Every event of the JSON list from after=0 as cred, following
//  next_cursor with pages of limit; query: extra parameters ("" or
//  "&task_id=3").
static json_t *
s_list(const fx_t *fx, const char *cred, int limit, const char *query)
{
    json_t *all = json_array();
    char cursor[32] = "0";
    while (true) {
        char path[256];
        snprintf(path, sizeof path, "/api/v1/events?after=%s&limit=%d%s", cursor, limit, query);
        json_t *page = s_call_as(fx, cred, "GET", path, NULL, 200);
        json_array_extend(all, json_object_get(page, "items"));
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        if (!next) {
            json_decref(page);
            return all;
        }
        snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(page);
    }
}

//  True if an event is ann's (her tasks, her project), bob's, or shared.
typedef enum { S_ANN, S_BOB, S_SHARED, S_NOBODY } s_whose_t;

static s_whose_t
s_whose(const fx_t *fx, int64_t task, int64_t project, const char *type)
{
    if (task == fx->ann_task || task == fx->ann_question || project == fx->ann_project) {
        return S_ANN;
    }
    if (task == fx->bob_task || task == fx->bob_scheduled || project == fx->bob_project) {
        return S_BOB;
    }
    if (task == 0 && project == 0 && strcmp(type, "agent.status") == 0) {
        return S_SHARED;
    }
    return S_NOBODY;
}

static s_whose_t
s_whose_event(const fx_t *fx, const json_t *event)
{
    return s_whose(fx, ot_int(event, "task_id"), ot_int(event, "project_id"),
                   ot_str(event, "type"));
}

//  Counts a list's events by owner, and checks ids ascend.
static void
s_tally(const fx_t *fx, const json_t *events, int counts[4])
{
    memset(counts, 0, 4 * sizeof counts[0]);
    int64_t last = 0;
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        counts[s_whose_event(fx, e)]++;
        assert_true(ot_int(e, "id") > last);
        last = ot_int(e, "id");
    }
}

static bool
s_has_type(const json_t *events, int64_t task, const char *type)
{
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        if (ot_int(e, "task_id") == task && strcmp(ot_str(e, "type"), type) == 0) {
            return true;
        }
    }
    return false;
}

static void
test_events_access_json_list_is_per_user(void **state)
{
    fx_t *fx = (fx_t *)*state;
    int admin[4], ann[4], bob[4];
    json_t *all = s_list(fx, fx->node->admin_token, 1000, "");
    s_tally(fx, all, admin);
    json_t *hers = s_list(fx, fx->ann_token, 1000, "");
    s_tally(fx, hers, ann);
    json_t *his = s_list(fx, fx->bob_token, 1000, "");
    s_tally(fx, his, bob);

    //  The admin sees everyone's; each user its own and the shared ones.
    assert_true(admin[S_ANN] > 0 && admin[S_BOB] > 0 && admin[S_SHARED] >= 2);
    assert_int_equal(ann[S_ANN], admin[S_ANN]);
    assert_int_equal(ann[S_SHARED], admin[S_SHARED]);
    assert_int_equal(ann[S_BOB] + ann[S_NOBODY], 0);
    assert_int_equal(bob[S_BOB], admin[S_BOB]);
    assert_int_equal(bob[S_SHARED], admin[S_SHARED]);
    assert_int_equal(bob[S_ANN] + bob[S_NOBODY], 0);
    //  HITL events go with their task, artifact events with their project,
    //  schedule.fired with the task it created.
    assert_true(s_has_type(hers, fx->ann_question, "hitl.requested"));
    assert_true(s_has_type(hers, 0, "artifact.created"));
    assert_true(s_has_type(his, fx->bob_scheduled, "schedule.fired"));
    assert_true(s_has_type(all, fx->bob_scheduled, "schedule.fired"));
    assert_false(s_has_type(his, fx->ann_question, "hitl.requested"));
    assert_false(s_has_type(hers, fx->bob_scheduled, "schedule.fired"));

    //  Paged in twos, the same events.
    json_t *paged = s_list(fx, fx->ann_token, 2, "");
    assert_true(json_equal(paged, hers));
    json_decref(paged);

    //  The other user's task, project or both: nothing, and 200.
    char query[96];
    snprintf(query, sizeof query, "&task_id=%lld", (long long)fx->ann_task);
    json_t *none = s_list(fx, fx->bob_token, 50, query);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    json_t *own = s_list(fx, fx->ann_token, 50, query);
    assert_true(json_array_size(own) >= 3); //  created, started, completed
    json_decref(own);
    snprintf(query, sizeof query, "&project_id=%lld&types=artifact.created",
             (long long)fx->ann_project);
    none = s_list(fx, fx->bob_token, 50, query);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    own = s_list(fx, fx->ann_token, 50, query);
    assert_int_equal(json_array_size(own), 1);
    json_decref(own);
    //  An API key speaks for its user as a token does.
    json_t *key = s_call_as(fx, fx->bob_token, "POST", "/api/v1/api-keys", "{\"name\":\"k\"}", 201);
    json_t *by_key = s_list(fx, ot_str(key, "key"), 1000, "");
    assert_true(json_equal(by_key, his));
    json_decref(by_key);
    json_decref(key);

    json_decref(all);
    json_decref(hers);
    json_decref(his);
}

//  A streaming SSE client as cred on the node.
static st_sse_t *
s_sse(const fx_t *fx, const char *cred, const char *query, int64_t last_event_id)
{
    char url[256], auth[1200];
    snprintf(url, sizeof url, "%s/api/v1/events%s", fx->node->base, query);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cred);
    st_sse_t *c = st_sse_start(url, HT_H2C, last_event_id, auth);
    st_sse_await_ok(c, 5000);
    return c;
}

//  Waits until stream c has an event of type for task (bounded).
static void
s_sse_wait_for(st_sse_t *c, int64_t task, const char *type, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (ht_now_ms() < deadline) {
        pthread_mutex_lock(&c->lock);
        bool found = false;
        for (int i = 0; i < c->n && !found; i++) {
            found = c->tasks[i] == task && strcmp(c->types[i], type) == 0;
        }
        pthread_mutex_unlock(&c->lock);
        if (found) {
            return;
        }
        zclock_sleep(10);
    }
    fail_msg("no %s of task %lld on the stream within %d ms", type, (long long)task, timeout_ms);
}

//  Every event on stream c is about one of tasks (0-terminated), or
//  project, or is a shared agent.status.
static void
s_sse_only(st_sse_t *c, const int64_t *tasks, int64_t project)
{
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n; i++) {
        bool ok =
            c->tasks[i] == 0 && (c->projects[i] == project ||
                                 (c->projects[i] == 0 && strcmp(c->types[i], "agent.status") == 0));
        for (const int64_t *t = tasks; *t && !ok; t++) {
            ok = c->tasks[i] == *t;
        }
        if (!ok) {
            fail_msg("event %lld (%s, task %lld, project %lld) reached the wrong user",
                     (long long)c->ids[i], c->types[i], (long long)c->tasks[i],
                     (long long)c->projects[i]);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

static void
test_events_access_sse_replay_and_live_are_per_user(void **state)
{
    fx_t *fx = (fx_t *)*state;
    json_t *hers = s_list(fx, fx->ann_token, 1000, "");
    json_t *his = s_list(fx, fx->bob_token, 1000, "");
    //  Replay from 0 (as ?after= and as Last-Event-ID): exactly the list.
    st_sse_t *ann = s_sse(fx, fx->ann_token, "?after=0", -1);
    st_sse_t *bob = s_sse(fx, fx->bob_token, "", 0);
    st_sse_t *admin = s_sse(fx, fx->node->admin_token, "", -1); //  live only
    assert_int_equal(st_sse_await(ann, (int)json_array_size(hers), 5000),
                     (int)json_array_size(hers));
    assert_int_equal(st_sse_await(bob, (int)json_array_size(his), 5000), (int)json_array_size(his));
    pthread_mutex_lock(&ann->lock);
    for (size_t i = 0; i < json_array_size(hers); i++) {
        assert_int_equal(ann->ids[i], ot_int(json_array_get(hers, i), "id"));
    }
    pthread_mutex_unlock(&ann->lock);

    //  Live: a task each; each stream gets its own, the admin's both.
    int64_t a2 = ot_create(fx->node, "/api/v1/tasks",
                           "{\"title\":\"x\",\"assignee\":{\"agent\":"
                           "\"worker\"}}"); //  the admin's: nobody's
    int64_t ann2 = s_create_as(fx, fx->ann_token, "/api/v1/tasks",
                               "{\"title\":\"a2\",\"assignee\":{\"agent\":\"worker\"}}");
    int64_t bob2 = s_create_as(fx, fx->bob_token, "/api/v1/tasks",
                               "{\"title\":\"b2\",\"assignee\":{\"agent\":\"worker\"}}");
    s_sse_wait_for(ann, ann2, "task.completed", 10000);
    s_sse_wait_for(bob, bob2, "task.completed", 10000);
    s_sse_wait_for(admin, ann2, "task.completed", 10000);
    s_sse_wait_for(admin, bob2, "task.completed", 10000);
    s_sse_wait_for(admin, a2, "task.completed", 10000);
    //  Whatever else came, nothing of another's reached a user.
    zclock_sleep(200);
    const int64_t ann_tasks[] = {fx->ann_task, fx->ann_question, ann2, 0};
    const int64_t bob_tasks[] = {fx->bob_task, fx->bob_scheduled, bob2, 0};
    s_sse_only(ann, ann_tasks, fx->ann_project);
    s_sse_only(bob, bob_tasks, fx->bob_project);
    st_sse_stop(&ann);
    st_sse_stop(&bob);
    st_sse_stop(&admin);

    //  A filter on the other's task: the stream opens and stays empty.
    char query[64];
    snprintf(query, sizeof query, "?after=0&task_id=%lld", (long long)ann2);
    st_sse_t *peek = s_sse(fx, fx->bob_token, query, -1);
    zclock_sleep(300);
    assert_int_equal(st_sse_count(peek), 0);
    st_sse_stop(&peek);
    json_decref(hers);
    json_decref(his);
}

//  Opens /ws (path may carry a query) with extra handshake lines; fails
//  unless the status line has want.
static st_ws_t *
s_ws(const fx_t *fx, const char *path, const char *extra, const char *want, char *head,
     size_t head_size)
{
    char status[128];
    st_ws_t *ws = st_ws_open_at(fx->port, 0, path, extra, status, sizeof status, head, head_size);
    if (!strstr(status, want)) {
        fail_msg("%s: %s (want %s)", path ? path : "/ws", status, want);
    }
    return ws;
}

//  Subscribes from after=0 and reads events until none comes for a
//  while; returns them (caller decrefs).
static json_t *
s_ws_replay(st_ws_t *ws)
{
    st_ws_send_text(ws, "{\"subscribe\": {}, \"after\": 0}");
    json_t *ack = st_ws_json(ws, 5000);
    assert_true(json_is_true(json_object_get(ack, "subscribed")));
    json_decref(ack);
    json_t *events = json_array();
    json_t *e;
    while ((e = st_ws_json(ws, 500)) != NULL) {
        json_array_append_new(events, e);
    }
    return events;
}

static void
test_events_access_websocket_is_per_user(void **state)
{
    fx_t *fx = (fx_t *)*state;
    json_t *hers = s_list(fx, fx->ann_token, 1000, "");
    char line[1200];
    snprintf(line, sizeof line, "Authorization: Bearer %s\r\n", fx->ann_token);
    st_ws_t *ann = s_ws(fx, NULL, line, " 101 ", NULL, 0);
    json_t *replayed = s_ws_replay(ann);
    assert_true(json_equal(replayed, hers));
    json_decref(replayed);

    //  Live: bob's task never reaches ann; hers does.
    int64_t bob3 = s_create_as(fx, fx->bob_token, "/api/v1/tasks",
                               "{\"title\":\"b3\",\"assignee\":{\"agent\":\"worker\"}}");
    json_decref(ot_wait_status(fx->node, bob3, "done", 10000));
    int64_t ann3 = s_create_as(fx, fx->ann_token, "/api/v1/tasks",
                               "{\"title\":\"a3\",\"assignee\":{\"agent\":\"worker\"}}");
    bool completed = false;
    json_t *e;
    while (!completed && (e = st_ws_json(ann, 10000)) != NULL) {
        assert_int_not_equal(ot_int(e, "task_id"), bob3);
        assert_false(s_whose_event(fx, e) == S_BOB);
        completed =
            ot_int(e, "task_id") == ann3 && strcmp(ot_str(e, "type"), "task.completed") == 0;
        json_decref(e);
    }
    assert_true(completed);
    //  A subscription to bob's task: accepted, and nothing comes.
    char sub[96];
    snprintf(sub, sizeof sub, "{\"subscribe\": {\"task_id\": %lld}, \"after\": 0}",
             (long long)bob3);
    st_ws_send_text(ann, sub);
    json_t *ack = st_ws_json(ann, 5000);
    assert_true(json_is_true(json_object_get(ack, "subscribed")));
    json_decref(ack);
    assert_null(st_ws_json(ann, 500));
    st_ws_close(&ann);
    json_decref(hers);
}

static void
test_events_access_websocket_browser_credentials(void **state)
{
    fx_t *fx = (fx_t *)*state;
    json_t *his = s_list(fx, fx->bob_token, 1000, "");
    char line[1400], head[4096], want[1400];

    //  The subprotocol bearer.<token>, alone or among others: echoed.
    snprintf(line, sizeof line, "Sec-WebSocket-Protocol: bearer.%s\r\n", fx->bob_token);
    st_ws_t *ws = s_ws(fx, NULL, line, " 101 ", head, sizeof head);
    snprintf(want, sizeof want, "sec-websocket-protocol: bearer.%s\r\n", fx->bob_token);
    if (!strcasestr(head, want)) {
        fail_msg("the subprotocol is not echoed: %s", head);
    }
    json_t *events = s_ws_replay(ws);
    assert_true(json_equal(events, his));
    json_decref(events);
    st_ws_close(&ws);
    snprintf(line, sizeof line, "Sec-WebSocket-Protocol: chat, bearer.%s , json\r\n",
             fx->bob_token);
    ws = s_ws(fx, NULL, line, " 101 ", head, sizeof head);
    assert_non_null(strcasestr(head, want));
    events = s_ws_replay(ws);
    assert_true(json_equal(events, his));
    json_decref(events);
    st_ws_close(&ws);

    //  ?access_token= with an access token, and with an API key.
    char path[1200];
    snprintf(path, sizeof path, "/ws?access_token=%s", fx->bob_token);
    ws = s_ws(fx, path, NULL, " 101 ", head, sizeof head);
    assert_null(strcasestr(head, "sec-websocket-protocol"));
    events = s_ws_replay(ws);
    assert_true(json_equal(events, his));
    json_decref(events);
    st_ws_close(&ws);
    json_t *key = s_call_as(fx, fx->bob_token, "POST", "/api/v1/api-keys", "{\"name\":\"b\"}", 201);
    snprintf(path, sizeof path, "/ws?x=1&access_token=%s", ot_str(key, "key"));
    ws = s_ws(fx, path, NULL, " 101 ", NULL, 0);
    events = s_ws_replay(ws);
    assert_true(json_equal(events, his));
    json_decref(events);
    st_ws_close(&ws);
    snprintf(line, sizeof line, "Sec-WebSocket-Protocol: bearer.%s\r\n", ot_str(key, "key"));
    ws = s_ws(fx, NULL, line, " 101 ", NULL, 0);
    st_ws_close(&ws);
    //  The admin's token, as a subprotocol: everything.
    snprintf(line, sizeof line, "Sec-WebSocket-Protocol: bearer.%s\r\n", fx->node->admin_token);
    ws = s_ws(fx, NULL, line, " 101 ", NULL, 0);
    events = s_ws_replay(ws);
    assert_true(json_array_size(events) > json_array_size(his));
    json_decref(events);
    st_ws_close(&ws);

    //  Missing or wrong: 401 before any upgrade.
    struct {
        const char *path, *extra;
    } bad[] = {
        {NULL, NULL},
        {NULL, "Sec-WebSocket-Protocol: chat\r\n"},
        {NULL, "Sec-WebSocket-Protocol: bearer.\r\n"},
        {NULL, "Sec-WebSocket-Protocol: bearer.not-a-token\r\n"},
        {NULL, "Sec-WebSocket-Protocol: Bearer.x\r\n"},
        {"/ws?access_token=", NULL},
        {"/ws?access_token=eyJhbGciOiJIUzI1NiJ9.e30.AAAA", NULL},
        {"/ws?access_token=cdk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL},
        {"/ws?token=x", NULL},
        {"/ws?access_token=x", "Authorization: Bearer nope\r\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char status[128];
        st_ws_t *refused = st_ws_open_at(fx->port, 0, bad[i].path, bad[i].extra, status,
                                         sizeof status, head, sizeof head);
        if (refused || !strstr(status, " 401 ")) {
            fail_msg("case %zu: %s", i, status);
        }
    }
    //  A revoked key: refused too.
    snprintf(path, sizeof path, "/api/v1/api-keys/%lld", (long long)ot_int(key, "id"));
    json_decref(s_call_as(fx, fx->bob_token, "DELETE", path, NULL, 204));
    snprintf(path, sizeof path, "/ws?access_token=%s", ot_str(key, "key"));
    char status[128];
    assert_null(st_ws_open_at(fx->port, 0, path, NULL, status, sizeof status, NULL, 0));
    assert_non_null(strstr(status, " 401 "));
    json_decref(key);

    //  Only /ws reads them: the event list takes no access_token.
    tn_resp_t r;
    snprintf(path, sizeof path, "/api/v1/events?access_token=%s", fx->bob_token);
    assert_int_equal(tn_request_as(fx->node, NULL, "GET", path, NULL, NULL, &r), 401);
    tn_resp_free(&r);
    json_decref(his);
}

//  True once a WebSocket's server ended it (a close frame, or the socket
//  closed) within timeout_ms; false if it is still open then.
static bool
s_ws_ended(st_ws_t *ws, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (ht_now_ms() < deadline) {
        char *payload = NULL;
        size_t len = 0;
        int op = st_ws_recv(ws, &payload, &len, (int)(deadline - ht_now_ms()));
        free(payload);
        if (op == 8 || (op == -1 && ht_now_ms() < deadline)) {
            return true;
        }
    }
    return false;
}

//  True once an SSE stream's transfer ended within timeout_ms.
static bool
s_sse_ended(st_sse_t *c, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (!atomic_load(&c->done) && ht_now_ms() < deadline) {
        zclock_sleep(20);
    }
    return atomic_load(&c->done);
}

static void
test_events_access_revoked_credentials_end_streams(void **state)
{
    fx_t *fx = (fx_t *)*state;
    //  A second login of ann's: her SSE stream with it ends at its logout;
    //  the stream of her other login goes on.
    char *second = tn_login(fx->node, "ann", TN_USER_PASSWORD, NULL);
    assert_non_null(second);
    st_sse_t *ended = s_sse(fx, second, "", -1);
    st_sse_t *kept = s_sse(fx, fx->ann_token, "", -1);
    json_decref(s_call_as(fx, second, "POST", "/api/v1/auth/logout", NULL, 204));
    assert_true(s_sse_ended(ended, 3000));
    assert_false(s_sse_ended(kept, 500));
    st_sse_stop(&ended);
    st_sse_stop(&kept);
    free(second);

    //  bob's WebSocket opened with an API key ends when the key is deleted;
    //  one opened with his access token goes on.
    json_t *key =
        s_call_as(fx, fx->bob_token, "POST", "/api/v1/api-keys", "{\"name\":\"ws\"}", 201);
    char path[1200];
    snprintf(path, sizeof path, "/ws?access_token=%s", ot_str(key, "key"));
    st_ws_t *by_key = s_ws(fx, path, NULL, " 101 ", NULL, 0);
    json_decref(s_ws_replay(by_key));
    snprintf(path, sizeof path, "/ws?access_token=%s", fx->bob_token);
    st_ws_t *by_token = s_ws(fx, path, NULL, " 101 ", NULL, 0);
    json_decref(s_ws_replay(by_token));
    snprintf(path, sizeof path, "/api/v1/api-keys/%lld", (long long)ot_int(key, "id"));
    json_decref(s_call_as(fx, fx->bob_token, "DELETE", path, NULL, 204));
    assert_true(s_ws_ended(by_key, 3000));
    assert_false(s_ws_ended(by_token, 500));
    st_ws_close(&by_key);
    st_ws_close(&by_token);
    json_decref(key);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_access_json_list_is_per_user),
        cmocka_unit_test(test_events_access_sse_replay_and_live_are_per_user),
        cmocka_unit_test(test_events_access_websocket_is_per_user),
        cmocka_unit_test(test_events_access_websocket_browser_credentials),
        cmocka_unit_test(test_events_access_revoked_credentials_end_streams),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
