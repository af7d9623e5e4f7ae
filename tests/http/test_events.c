/* label: db */
/*  test_events: the event routes over real HTTP/2 and HTTP/1.1 against the
    real pipeline (persist with the events COPY table and commit notices,
    the bus, the HTTP server) and a migrated database per test: SSE live
    delivery, resumption with Last-Event-ID with no gap and no duplicate
    while events are committed concurrently and the client reconnects
    again and again, pings, filters, the JSON list with pagination and bad
    parameters, WebSocket subscriptions (a small client over a TCP socket),
    a slow client that is dropped while a normal one keeps receiving, and
    a stop with streams open. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../db/test_q_support.h"
#include "cd_events.h"
#include "cd_q_events.h"
#include "cd_testbus.h"
#include "httptest.h"
#include "streamtest.h"

//  --- the fixture --------------------------------------------------------------------

typedef struct {
    void *db;        //  fixture_t: the test's migrated database
    tb_tree_t tree;  //  persist + bus
    cd_http_t *http; //  the server
    char base[160];  //  "http://127.0.0.1:port"
    int port;        //  its TCP port
    cd_port_t *test; //  emits
} fx_t;

static cd_db_t *
s_db(fx_t *fx)
{
    return ((fixture_t *)fx->db)->db;
}

static int
s_fx_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    s_setup(&fx->db);
    tb_init(&fx->tree, ((fixture_t *)fx->db)->conninfo, "e1");
    fx->tree.bus.poll_ms = 100;
    *state = fx;
    return 0;
}

//  Starts the tree (unless without_bus is set, then persist only) and the
//  server with these event settings (0: defaults).
static void
s_fx_start(fx_t *fx, int ping_ms, size_t max_buffer, bool without_bus)
{
    if (without_bus) {
        fx->tree.children[0] = (cd_child_spec_t){"persist", &cd_persist_ops, &fx->tree.persist, 0};
        fx->tree.spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, fx->tree.children, 1};
        char why[160] = "";
        fx->tree.root = cd_root_new(&fx->tree.rt, "root", &fx->tree.spec, why, sizeof why);
        assert_non_null(fx->tree.root);
    } else {
        tb_start(&fx->tree);
    }
    cd_http_opts_t opts;
    cd_http_opts_defaults(&opts);
    opts.addr = "127.0.0.1:0";
    opts.stop_timeout_ms = 1000;
    if (ping_ms) {
        opts.events_ping_ms = ping_ms;
    }
    if (max_buffer) {
        opts.events_max_buffer = max_buffer;
    }
    char *errmsg = NULL;
    if (cd_http_start(&opts, &fx->tree.rt, &fx->http, &errmsg) != 0) {
        fail_msg("cd_http_start: %s", errmsg);
    }
    snprintf(fx->base, sizeof fx->base, "http://%s", cd_http_addr(fx->http));
    fx->port = cd_http_port(fx->http);
    fx->test = cd_port_new(&fx->tree.rt, "test");
    assert_non_null(fx->test);
}

static int
s_fx_teardown(void **state)
{
    fx_t *fx = *state;
    cd_port_destroy(&fx->test);
    if (fx->http) {
        assert_int_equal(cd_http_stop(&fx->http), 0);
    }
    tb_stop(&fx->tree);
    s_teardown(&fx->db);
    free(fx);
    return 0;
}

//  GET base + path.
static CURLcode
s_get(fx_t *fx, const char *path, int proto, ht_response_t *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", fx->base, path);
    return ht_request("GET", url, NULL, 0, NULL, proto, 10000, r);
}

static long long
s_metric(fx_t *fx, const char *series)
{
    ht_response_t r;
    long long value = -1;
    if (s_get(fx, "/metrics", HT_HTTP1, &r) == CURLE_OK) {
        value = ht_metric(r.body, series);
    }
    ht_response_free(&r);
    return value;
}

//  Emits n persisted events of type (project, task by index) and waits
//  for persist to acknowledge each (so they are committed on return).
static void
s_emit_committed(fx_t *fx, int n, const char *type, int64_t project, int64_t task,
                 const char *agent)
{
    uint8_t(*ids)[16] = calloc((size_t)n, 16);
    for (int i = 0; i < n; i++) {
        char data[96];
        snprintf(data, sizeof data, "{\"i\": %d, \"note\": \"line one\\nline two\"}", i);
        assert_int_equal(tb_emit(fx->test, type, project, task, agent, data, true, true, ids[i]),
                         0);
    }
    for (int i = 0; i < n; i++) {
        tb_msg_t msg;
        tb_await(fx->test, ids[i], 10000, &msg);
        assert_int_equal(msg.kind, CD_KIND_RESULT);
        json_decref(msg.payload);
    }
    free(ids);
}

//  Every committed event id, ascending.
static int
s_committed_ids(fx_t *fx, int64_t *ids, int max)
{
    cd_db_rows_t *rows = NULL;
    s_ok(s_db(fx), cd_db_query(s_db(fx), "SELECT id FROM events ORDER BY id", 0, NULL, &rows));
    int n = cd_db_rows_count(rows);
    assert_true(n <= max);
    for (int i = 0; i < n; i++) {
        assert_int_equal(cd_db_rows_int64(rows, i, 0, &ids[i]), 0);
    }
    cd_db_rows_destroy(&rows);
    return n;
}

//  --- stream clients (streamtest.h) on this fixture's server -------------------------------

//  Starts an SSE client on base + path; last_event_id < 0: none.
static st_sse_t *
s_sse_start(fx_t *fx, const char *path, int proto, int64_t last_event_id)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", fx->base, path);
    return st_sse_start(url, proto, last_event_id, NULL);
}

//  A TCP connection to the server (see st_connect).
static int
s_connect(fx_t *fx, int rcvbuf)
{
    return st_connect(fx->port, rcvbuf);
}

//  Connects and upgrades; returns NULL if the handshake failed (the
//  status line is copied into status).
static st_ws_t *
s_ws_open(fx_t *fx, int rcvbuf, char *status, size_t size)
{
    return st_ws_open_at(fx->port, rcvbuf, NULL, NULL, status, size, NULL, 0);
}

//  --- tests ------------------------------------------------------------------------------

static void
test_events_sse_delivers_live_events_over_h2c(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    st_sse_t *c = s_sse_start(fx, "/api/v1/events", HT_H2C, -1);
    st_sse_await_ok(c, 5000);
    //  Committed after ": ok": every one arrives, in order, with its type.
    s_emit_committed(fx, 5, "task.created", 3, 9, "coder");
    s_emit_committed(fx, 5, "task.completed", 3, 9, "coder");
    assert_int_equal(st_sse_await(c, 10, 5000), 10);
    int64_t ids[16];
    assert_int_equal(s_committed_ids(fx, ids, 16), 10);
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(c->ids[i], ids[i]);
        assert_string_equal(c->types[i], i < 5 ? "task.created" : "task.completed");
    }
    json_t *data = json_object_get(c->last_data, "data");
    assert_string_equal(json_string_value(json_object_get(data, "note")), "line one\nline two");
    assert_int_equal(json_integer_value(json_object_get(c->last_data, "task_id")), 9);
    pthread_mutex_unlock(&c->lock);
    //  Ephemeral events come live, without an id.
    assert_int_equal(
        tb_emit(fx->test, "task.token", 3, 9, "coder", "{\"token\": \"x\"}", false, false, NULL),
        0);
    int64_t deadline = ht_now_ms() + 5000;
    int ephemeral = 0;
    while (ephemeral == 0 && ht_now_ms() < deadline) {
        pthread_mutex_lock(&c->lock);
        ephemeral = c->ephemeral;
        pthread_mutex_unlock(&c->lock);
        zclock_sleep(5);
    }
    assert_int_equal(ephemeral, 1);
    assert_int_equal(s_metric(fx, "cadre_http_event_subscribers"), 1);
    st_sse_stop(&c);
    //  The server notices the client left.
    deadline = ht_now_ms() + 5000;
    while (s_metric(fx, "cadre_http_event_subscribers") != 0 && ht_now_ms() < deadline) {
        zclock_sleep(20);
    }
    assert_int_equal(s_metric(fx, "cadre_http_event_subscribers"), 0);
}

static void
test_events_sse_headers_and_http1(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    s_emit_committed(fx, 3, "agent.status", -1, -1, "a");
    //  HTTP/1.1 (chunked), replaying after=0.
    st_sse_t *c = s_sse_start(fx, "/api/v1/events?after=0", HT_HTTP1, -1);
    st_sse_await_ok(c, 5000);
    assert_int_equal(st_sse_await(c, 3, 5000), 3);
    s_emit_committed(fx, 2, "agent.status", -1, -1, "a");
    assert_int_equal(st_sse_await(c, 5, 5000), 5);
    st_sse_stop(&c);
    //  The headers, over h2c (a HEAD is the list, not a stream).
    ht_response_t r;
    char url[256];
    snprintf(url, sizeof url, "%s/api/v1/events?limit=1", fx->base);
    const char *const accept[] = {"Accept: text/event-stream", NULL};
    assert_int_equal(ht_request("HEAD", url, NULL, 0, accept, HT_H2C, 5000, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    char value[128];
    assert_non_null(ht_header(&r, "content-type", value, sizeof value));
    assert_non_null(strstr(value, "application/json"));
    ht_response_free(&r);
    c = s_sse_start(fx, "/api/v1/events", HT_H2C, -1);
    st_sse_await_ok(c, 5000);
    st_sse_stop(&c);
}

//  One client session: reads until it has `want` events or for `ms`, then
//  leaves. Appends what it got to all[] and returns the last id.
static int64_t
s_session(fx_t *fx, int proto, int64_t last, int ms, int64_t *all, int *n_all)
{
    st_sse_t *c = s_sse_start(fx, "/api/v1/events?after=0", proto, last);
    st_sse_await_ok(c, 5000);
    zclock_sleep(ms);
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    if (c->error[0]) {
        fail_msg("SSE: %s", c->error);
    }
    for (int i = 0; i < c->n; i++) {
        all[(*n_all)++] = c->ids[i];
    }
    int64_t out = c->n ? c->ids[c->n - 1] : last;
    json_decref(c->last_data);
    free(c->pending);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return out;
}

typedef struct {
    const cd_runtime_t *rt; //  the node's
    int count;              //  events to emit
    atomic_int committed;   //  acknowledged so far
} writer_t;

static void *
s_writer_main(void *arg)
{
    writer_t *w = (writer_t *)arg;
    cd_port_t *port = cd_port_new(w->rt, "writer");
    uint8_t(*ids)[16] = calloc((size_t)w->count, 16);
    int sent = 0, acked = 0;
    //  A few in flight at a time, at a steady pace, so that commits keep
    //  landing while the client comes and goes.
    while (acked < w->count) {
        while (sent < w->count && sent - acked < 8) {
            char data[64];
            snprintf(data, sizeof data, "{\"seq\": %d}", sent);
            if (tb_emit(port, "task.handoff", 1, sent % 7, "w", data, true, true, ids[sent]) != 0) {
                break;
            }
            sent++;
        }
        tb_msg_t msg;
        if (tb_recv(port, 100, &msg)) {
            if (msg.kind == CD_KIND_RESULT) {
                acked++;
                atomic_store(&w->committed, acked);
            }
            json_decref(msg.payload);
        }
        zclock_sleep(1);
    }
    free(ids);
    cd_port_destroy(&port);
    return NULL;
}

static void
test_events_sse_resume_with_last_event_id_has_no_gap_and_no_duplicate(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    s_emit_committed(fx, 20, "task.created", 1, 1, "w");
    enum { N = 2000 };
    writer_t w = {&fx->tree.rt, N, 0};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_writer_main, &w), 0);
    int64_t *all = calloc(ST_SSE_MAX * 2, sizeof *all);
    int n_all = 0;
    //  Sessions that leave after a short while and come back with
    //  Last-Event-ID, alternating protocols, while the writer commits.
    int64_t last = -1; //  the first session has no Last-Event-ID: after=0 replays all
    int sessions = 0;
    while (atomic_load(&w.committed) < N && sessions < 200) {
        last = s_session(fx, sessions % 2 ? HT_HTTP1 : HT_H2C, last, 20 + (sessions * 37) % 90, all,
                         &n_all);
        sessions++;
    }
    pthread_join(thread, NULL);
    //  And a last one that stays until it has everything.
    st_sse_t *c = s_sse_start(fx, "/api/v1/events?after=0", HT_H2C, last);
    st_sse_await_ok(c, 5000);
    int64_t *committed = calloc(ST_SSE_MAX, sizeof *committed);
    int n = s_committed_ids(fx, committed, ST_SSE_MAX);
    assert_int_equal(n, 20 + N);
    int64_t deadline = ht_now_ms() + 10000;
    while (ht_now_ms() < deadline) {
        pthread_mutex_lock(&c->lock);
        int64_t top = c->n ? c->ids[c->n - 1] : last;
        pthread_mutex_unlock(&c->lock);
        if (top == committed[n - 1]) {
            break;
        }
        zclock_sleep(10);
    }
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    for (int i = 0; i < c->n; i++) {
        all[n_all++] = c->ids[i];
    }
    //  The union of what every session received is exactly what was
    //  committed, in order: nothing missing, nothing twice.
    print_message("%d sessions received %d events (%d committed)\n", sessions + 1, n_all, n);
    assert_true(sessions >= 3);
    assert_int_equal(n_all, n);
    for (int i = 0; i < n; i++) {
        if (all[i] != committed[i]) {
            fail_msg("event %d: received %lld, committed %lld", i, (long long)all[i],
                     (long long)committed[i]);
        }
    }
    json_decref(c->last_data);
    free(c->pending);
    pthread_mutex_destroy(&c->lock);
    free(c);
    free(committed);
    free(all);
}

//  Waits until c has received `last` (or timeout_ms).
static void
s_sse_await_id(st_sse_t *c, int64_t last, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (ht_now_ms() < deadline && !atomic_load(&c->done)) {
        pthread_mutex_lock(&c->lock);
        int64_t top = c->n ? c->ids[c->n - 1] : -1;
        pthread_mutex_unlock(&c->lock);
        if (top >= last) {
            return;
        }
        zclock_sleep(10);
    }
}

//  c received exactly the committed events after `after`, in order.
static void
s_sse_check_exact(fx_t *fx, st_sse_t *c, int64_t after)
{
    int64_t *committed = calloc(ST_SSE_MAX, sizeof *committed);
    int n = s_committed_ids(fx, committed, ST_SSE_MAX);
    int first = 0;
    while (first < n && committed[first] <= after) {
        first++;
    }
    pthread_mutex_lock(&c->lock);
    if (c->n != n - first) {
        fail_msg("received %d events, %d committed after %lld", c->n, n - first, (long long)after);
    }
    for (int i = 0; i < c->n; i++) {
        if (c->ids[i] != committed[first + i]) {
            fail_msg("event %d: received %lld, committed %lld", i, (long long)c->ids[i],
                     (long long)committed[first + i]);
        }
    }
    pthread_mutex_unlock(&c->lock);
    free(committed);
}

static void
test_events_sse_replay_longer_than_the_buffer_has_no_gap(void **state)
{
    fx_t *fx = *state;
    //  A small buffer: live batches held during the replay overflow it,
    //  are dropped, and are read back from the table instead.
    s_fx_start(fx, 0, 16 << 10, false);
    for (int i = 0; i < 6; i++) {
        s_emit_committed(fx, 250, "task.started", 2, i, "r");
    }
    enum { N = 1500 };
    writer_t w = {&fx->tree.rt, N, 0};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_writer_main, &w), 0);
    zclock_sleep(50);
    st_sse_t *c = s_sse_start(fx, "/api/v1/events?after=0", HT_H2C, -1);
    st_sse_await_ok(c, 5000);
    pthread_join(thread, NULL);
    int64_t last = s_count(s_db(fx), "SELECT max(id) FROM events");
    s_sse_await_id(c, last, 20000);
    s_sse_check_exact(fx, c, 0);
    assert_int_equal(s_metric(fx, "cadre_http_slow_clients_dropped_total"), 0);
    st_sse_stop(&c);
}

static void
test_events_sse_bus_restart_is_repaired_without_a_gap(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    s_emit_committed(fx, 10, "task.created", 1, 1, "b");
    st_sse_t *c = s_sse_start(fx, "/api/v1/events?after=0", HT_HTTP1, -1);
    st_sse_await_ok(c, 5000);
    assert_int_equal(st_sse_await(c, 10, 5000), 10);
    //  The bus restarts (its watch is lost with it) while events keep
    //  being committed; the stream must come out whole.
    enum { N = 400 };
    writer_t w = {&fx->tree.rt, N, 0};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_writer_main, &w), 0);
    zclock_sleep(30);
    char why[128];
    assert_int_equal(cd_root_call(fx->tree.root, "RESTART", "", "bus", NULL, 5000, why, sizeof why),
                     0);
    pthread_join(thread, NULL);
    int64_t last = s_count(s_db(fx), "SELECT max(id) FROM events");
    s_sse_await_id(c, last, 15000);
    s_sse_check_exact(fx, c, 0);
    st_sse_stop(&c);
}

static void
test_events_sse_pings_an_idle_stream(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 150, 0, false);
    st_sse_t *c = s_sse_start(fx, "/api/v1/events", HT_H2C, -1);
    st_sse_await_ok(c, 5000);
    int64_t deadline = ht_now_ms() + 3000;
    int pings = 0;
    while (pings < 2 && ht_now_ms() < deadline) {
        pthread_mutex_lock(&c->lock);
        pings = c->pings;
        pthread_mutex_unlock(&c->lock);
        zclock_sleep(20);
    }
    assert_true(pings >= 2);
    st_sse_stop(&c);
}

static void
test_events_sse_filters_apply_to_replay_and_live(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    s_emit_committed(fx, 2, "task.created", 1, 10, "alpha");
    s_emit_committed(fx, 2, "task.created", 2, 20, "beta");
    s_emit_committed(fx, 2, "task.failed", 1, 11, "alpha");
    struct {
        const char *query;
        int replayed; //  of the 6 above
        int live;     //  of the 6 below
    } cases[] = {
        {"project_id=1", 4, 4},
        {"task_id=20", 2, 2},
        {"agent=alpha", 4, 4},
        {"types=task.failed", 2, 2},
        {"types=task.created,task.failed&project_id=2", 2, 2},
        {"project_id=1&agent=beta", 0, 0},
    };
    st_sse_t *c[6];
    for (int i = 0; i < 6; i++) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/events?after=0&%s", cases[i].query);
        c[i] = s_sse_start(fx, path, i % 2 ? HT_HTTP1 : HT_H2C, -1);
        st_sse_await_ok(c[i], 5000);
    }
    s_emit_committed(fx, 2, "task.created", 1, 10, "alpha");
    s_emit_committed(fx, 2, "task.created", 2, 20, "beta");
    s_emit_committed(fx, 2, "task.failed", 1, 11, "alpha");
    //  A last event every filter but the last matches: once it is in,
    //  everything before it is too.
    for (int i = 0; i < 6; i++) {
        int want = cases[i].replayed + cases[i].live;
        st_sse_await(c[i], want, 5000);
        zclock_sleep(i == 0 ? 300 : 0); //  nothing more comes
        int have = st_sse_count(c[i]);
        if (have != want) {
            fail_msg("%s: %d events, want %d", cases[i].query, have, want);
        }
        st_sse_stop(&c[i]);
    }
}

static void
test_events_json_list_pages_and_refuses_bad_params(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    s_emit_committed(fx, 70, "task.started", 5, 6, "lister");
    s_emit_committed(fx, 50, "task.completed", 5, 7, "lister");
    int64_t ids[256];
    assert_int_equal(s_committed_ids(fx, ids, 256), 120);

    //  Default page 50, cursors through to the end.
    int seen = 0;
    char path[256] = "/api/v1/events";
    for (int page = 0; page < 4; page++) {
        ht_response_t r;
        assert_int_equal(s_get(fx, path, page % 2 ? HT_HTTP1 : HT_H2C, &r), CURLE_OK);
        assert_int_equal(r.status, 200);
        json_t *doc = ht_json(&r);
        assert_non_null(doc);
        json_t *items = json_object_get(doc, "items");
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            assert_int_equal(json_integer_value(json_object_get(item, "id")), ids[seen]);
            seen++;
        }
        json_t *next = json_object_get(doc, "next_cursor");
        if (page < 2) {
            assert_int_equal(json_array_size(items), 50);
            assert_true(json_is_string(next));
        }
        ht_response_free(&r);
        if (json_is_null(next)) {
            json_decref(doc);
            break;
        }
        snprintf(path, sizeof path, "/api/v1/events?cursor=%s", json_string_value(next));
        json_decref(doc);
    }
    assert_int_equal(seen, 120);

    //  after, limit and filters; explicit JSON.
    static const char *const json_accept[] = {"Accept: application/json", NULL};
    char url[256];
    snprintf(url, sizeof url, "%s/api/v1/events?after=%lld&limit=5&types=task.completed", fx->base,
             (long long)ids[100]);
    ht_response_t r;
    assert_int_equal(ht_request("GET", url, NULL, 0, json_accept, HT_H2C, 5000, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    json_t *doc = ht_json(&r);
    json_t *items = json_object_get(doc, "items");
    assert_int_equal(json_array_size(items), 5);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "id")), ids[101]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "type")),
                        "task.completed");
    json_decref(doc);
    ht_response_free(&r);
    assert_int_equal(s_get(fx, "/api/v1/events?task_id=6&agent=lister&limit=1000", HT_H2C, &r),
                     CURLE_OK);
    doc = ht_json(&r);
    assert_int_equal(json_array_size(json_object_get(doc, "items")), 70);
    assert_true(json_is_null(json_object_get(doc, "next_cursor")));
    json_decref(doc);
    ht_response_free(&r);

    //  Bad parameters: 400 validation_failed naming the field.
    struct {
        const char *query;
        const char *field;
    } bad[] = {
        {"limit=-1", "limit"},
        {"limit=abc", "limit"},
        {"limit=0", "limit"},
        {"limit=1001", "limit"},
        {"limit=", "limit"},
        {"after=-5", "after"},
        {"after=1e3", "after"},
        {"cursor=x", "cursor"},
        {"after=1&cursor=2", "cursor"},
        {"limit=5&limit=6", "limit"},
        {"project_id=0", "project_id"},
        {"task_id=99999999999999999999", "task_id"},
        {"agent=Bad%20Name", "agent"},
        {"types=task.created,bogus", "types"},
        {"types=", "types"},
        {"colour=red", "colour"},
        {"%ZZ=1", "query"},
        {"limit=%4", "limit"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/api/v1/events?%s", bad[i].query);
        assert_int_equal(s_get(fx, path, HT_H2C, &r), CURLE_OK);
        doc = ht_json(&r);
        const char *code =
            json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
        const char *field = json_string_value(
            json_object_get(json_object_get(json_object_get(doc, "error"), "details"), "field"));
        if (r.status != 400 || !code || strcmp(code, "validation_failed") != 0 || !field ||
            strcmp(field, bad[i].field) != 0) {
            fail_msg("%s: %ld %s", bad[i].query, r.status, r.body);
        }
        json_decref(doc);
        ht_response_free(&r);
    }
    //  A garbage Last-Event-ID on a stream.
    static const char *const bad_last[] = {"Accept: text/event-stream", "Last-Event-ID: nope",
                                           NULL};
    snprintf(url, sizeof url, "%s/api/v1/events", fx->base);
    assert_int_equal(ht_request("GET", url, NULL, 0, bad_last, HT_H2C, 5000, &r), CURLE_OK);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "Last-Event-ID"));
    ht_response_free(&r);
}

static void
test_events_websocket_subscribes_replays_and_refuses_bad_messages(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    s_emit_committed(fx, 3, "task.created", 1, 1, "ws");
    s_emit_committed(fx, 2, "task.failed", 1, 1, "ws");
    char status[128];
    st_ws_t *ws = s_ws_open(fx, 0, status, sizeof status);
    if (!ws) {
        fail_msg("handshake: %s", status);
    }
    //  Bad messages: an error each, and the connection stays.
    struct {
        const char *text;
        const char *field;
    } bad[] = {
        {"not json", "message"},
        {"[1, 2]", NULL},
        {"{}", "subscribe"},
        {"{\"subscribe\": 3}", "subscribe"},
        {"{\"subscribe\": {}, \"after\": -1}", "after"},
        {"{\"subscribe\": {}, \"later\": 1}", "later"},
        {"{\"subscribe\": {\"types\": [\"task.created\", \"nope\"]}}", "subscribe.types"},
        {"{\"subscribe\": {\"types\": []}}", "subscribe.types"},
        {"{\"subscribe\": {\"project_id\": \"1\"}}", "subscribe.project_id"},
        {"{\"subscribe\": {\"agent\": \"UPPER\"}}", "subscribe.agent"},
        {"{\"subscribe\": {\"colour\": \"red\"}}", "subscribe.colour"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_ws_send_text(ws, bad[i].text);
        json_t *doc = st_ws_json(ws, 5000);
        json_t *error = json_object_get(doc, "error");
        if (!error) {
            fail_msg("%s: no error", bad[i].text);
        }
        const char *field =
            json_string_value(json_object_get(json_object_get(error, "details"), "field"));
        if (bad[i].field && (!field || strcmp(field, bad[i].field) != 0)) {
            fail_msg("%s: field %s", bad[i].text, field ? field : "(none)");
        }
        json_decref(doc);
    }
    st_ws_send(ws, 0x2, "\x01\x02", 2);
    json_t *doc = st_ws_json(ws, 5000);
    assert_non_null(json_object_get(doc, "error"));
    json_decref(doc);

    //  Subscribe to task.created from the start: the 3 persisted ones,
    //  then live ones; task.failed never.
    st_ws_send_text(ws, "{\"subscribe\": {\"types\": [\"task.created\"], \"agent\": \"ws\"}, "
                        "\"after\": 0}");
    doc = st_ws_json(ws, 5000);
    assert_true(json_is_true(json_object_get(doc, "subscribed")));
    json_decref(doc);
    int64_t last = 0;
    for (int i = 0; i < 3; i++) {
        doc = st_ws_json(ws, 5000);
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "type")), "task.created");
        assert_true(json_integer_value(json_object_get(doc, "id")) > last);
        last = json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
    }
    s_emit_committed(fx, 1, "task.failed", 1, 1, "ws");
    s_emit_committed(fx, 2, "task.created", 1, 1, "ws");
    for (int i = 0; i < 2; i++) {
        doc = st_ws_json(ws, 5000);
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "type")), "task.created");
        assert_true(json_integer_value(json_object_get(doc, "id")) > last);
        last = json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
    }
    //  Another subscribe replaces it: live only, types as a comma list.
    st_ws_send_text(ws, "{\"subscribe\": {\"types\": \"task.failed,task.token\"}}");
    doc = st_ws_json(ws, 5000);
    assert_true(json_is_true(json_object_get(doc, "subscribed")));
    json_decref(doc);
    s_emit_committed(fx, 1, "task.created", 1, 1, "ws");
    s_emit_committed(fx, 1, "task.failed", 1, 1, "ws");
    doc = st_ws_json(ws, 5000);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "task.failed");
    json_decref(doc);
    assert_int_equal(
        tb_emit(fx->test, "task.token", 1, 1, "ws", "{\"token\": \"t\"}", false, false, NULL), 0);
    doc = st_ws_json(ws, 5000);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "task.token");
    assert_true(json_is_null(json_object_get(doc, "id")));
    json_decref(doc);
    st_ws_close(&ws);

    //  Not a WebSocket handshake, or over HTTP/2: 426.
    ht_response_t r;
    assert_int_equal(s_get(fx, "/ws", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 426);
    ht_response_free(&r);
    assert_int_equal(s_get(fx, "/ws", HT_HTTP1, &r), CURLE_OK);
    assert_int_equal(r.status, 426);
    ht_response_free(&r);
    int64_t deadline = ht_now_ms() + 5000;
    while (s_metric(fx, "cadre_http_event_subscribers") != 0 && ht_now_ms() < deadline) {
        zclock_sleep(20);
    }
    assert_int_equal(s_metric(fx, "cadre_http_event_subscribers"), 0);
}

static void
test_events_slow_client_is_dropped_and_others_keep_receiving(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 256 << 10, false);
    //  A client that subscribes and never reads, with a small window.
    int slow = s_connect(fx, 4096);
    const char req[] =
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    assert_true(ht_send_all(slow, req, sizeof req - 1, 2000));
    //  A slow WebSocket subscriber too.
    char status[128];
    st_ws_t *ws = s_ws_open(fx, 4096, status, sizeof status);
    assert_non_null(ws);
    st_ws_send_text(ws, "{\"subscribe\": {}}");
    json_t *doc = st_ws_json(ws, 5000);
    assert_true(json_is_true(json_object_get(doc, "subscribed")));
    json_decref(doc);
    //  And a normal one.
    st_sse_t *c = s_sse_start(fx, "/api/v1/events", HT_H2C, -1);
    st_sse_await_ok(c, 5000);
    int64_t deadline = ht_now_ms() + 5000;
    while (s_metric(fx, "cadre_http_event_subscribers") < 3 && ht_now_ms() < deadline) {
        zclock_sleep(10);
    }
    assert_int_equal(s_metric(fx, "cadre_http_event_subscribers"), 3);
    long long dropped0 = s_metric(fx, "cadre_http_slow_clients_dropped_total");

    //  Many events of about 2 KB: more than the kernel buffers for the
    //  clients that do not read (it takes megabytes per socket here),
    //  paced so that the normal client never falls behind: it is not slow.
    enum { N = 6000, CHUNK = 200 };
    char data[1900];
    memset(data, 'x', sizeof data);
    memcpy(data, "{\"pad\": \"", 9);
    memcpy(data + sizeof data - 3, "\"}", 3);
    int64_t t0 = ht_now_ms();
    for (int i = 0; i < N; i += CHUNK) {
        for (int j = 0; j < CHUNK; j++) {
            assert_int_equal(tb_emit(fx->test, "task.token", 1, 1, "x", data, true, false, NULL),
                             0);
        }
        assert_int_equal(st_sse_await(c, i + CHUNK, 30000), i + CHUNK);
    }
    print_message("%d events (%d MB) to a normal client in %lld ms next to two that never read\n",
                  N, N * (int)sizeof data >> 20, (long long)(ht_now_ms() - t0));
    deadline = ht_now_ms() + 5000;
    while (s_metric(fx, "cadre_http_slow_clients_dropped_total") < dropped0 + 2 &&
           ht_now_ms() < deadline) {
        zclock_sleep(20);
    }
    assert_int_equal(s_metric(fx, "cadre_http_slow_clients_dropped_total"), dropped0 + 2);
    assert_int_equal(s_metric(fx, "cadre_http_event_subscribers"), 1);
    //  Their connections are closed: reading drains what was sent, then ends.
    int fds[2] = {slow, ws->fd};
    for (int i = 0; i < 2; i++) {
        assert_true(ht_wait_closed(fds[i], 5000));
    }
    close(slow);
    st_ws_close(&ws);
    //  The normal client still receives.
    s_emit_committed(fx, 1, "task.completed", 1, 1, "x");
    assert_int_equal(st_sse_await(c, N + 1, 5000), N + 1);
    st_sse_stop(&c);
}

static void
test_events_without_the_bus_are_503(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, true);
    ht_response_t r;
    char code[64];
    assert_int_equal(s_get(fx, "/api/v1/events", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "not_ready");
    ht_response_free(&r);
    char url[256];
    snprintf(url, sizeof url, "%s/api/v1/events", fx->base);
    static const char *const accept[] = {"Accept: text/event-stream", NULL};
    assert_int_equal(ht_request("GET", url, NULL, 0, accept, HT_H2C, 5000, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "not_ready");
    ht_response_free(&r);
}

static void
test_events_stop_ends_open_streams(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx, 0, 0, false);
    st_sse_t *c1 = s_sse_start(fx, "/api/v1/events", HT_H2C, -1);
    st_sse_t *c2 = s_sse_start(fx, "/api/v1/events?after=0", HT_HTTP1, -1);
    st_sse_await_ok(c1, 5000);
    st_sse_await_ok(c2, 5000);
    char status[128];
    st_ws_t *ws = s_ws_open(fx, 0, status, sizeof status);
    assert_non_null(ws);
    st_ws_send_text(ws, "{\"subscribe\": {}}");
    json_t *doc = st_ws_json(ws, 5000);
    json_decref(doc);
    int64_t t0 = ht_now_ms();
    assert_int_equal(cd_http_stop(&fx->http), 0);
    int64_t took = ht_now_ms() - t0;
    print_message("stop with two SSE streams and a WebSocket open: %lld ms\n", (long long)took);
    assert_true(took < 3000);
    int64_t deadline = ht_now_ms() + 3000;
    while ((!atomic_load(&c1->done) || !atomic_load(&c2->done)) && ht_now_ms() < deadline) {
        zclock_sleep(10);
    }
    assert_true(atomic_load(&c1->done) && atomic_load(&c2->done));
    //  The WebSocket got a close frame (1001 going away).
    char *payload = NULL;
    size_t len = 0;
    int opcode = st_ws_recv(ws, &payload, &len, 3000);
    assert_int_equal(opcode, 0x8);
    assert_true(len >= 2 && ((uint8_t)payload[0] << 8 | (uint8_t)payload[1]) == 1001);
    free(payload);
    st_ws_close(&ws);
    st_sse_stop(&c1);
    st_sse_stop(&c2);
}

int
main(void)
{
    cd_log_level_t level = CD_LOG_WARN;
    if (getenv("CADRE_LOG_LEVEL")) {
        cd_log_level_parse(getenv("CADRE_LOG_LEVEL"), &level);
    }
    cd_log_set_level(level);
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_sse_delivers_live_events_over_h2c, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_sse_headers_and_http1, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_events_sse_resume_with_last_event_id_has_no_gap_and_no_duplicate, s_fx_setup,
            s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_sse_replay_longer_than_the_buffer_has_no_gap,
                                        s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_sse_bus_restart_is_repaired_without_a_gap,
                                        s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_sse_pings_an_idle_stream, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_sse_filters_apply_to_replay_and_live,
                                        s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_json_list_pages_and_refuses_bad_params,
                                        s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_events_websocket_subscribes_replays_and_refuses_bad_messages, s_fx_setup,
            s_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_events_slow_client_is_dropped_and_others_keep_receiving, s_fx_setup,
            s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_without_the_bus_are_503, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_stop_ends_open_streams, s_fx_setup,
                                        s_fx_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
