/* label: db */
/*  test_bus: the event bus with the real persist actor against a real
    PostgreSQL from the fixture (a migrated database per test): emitted
    events are committed once and fanned out live in id order with chained
    envelopes, ephemeral events go live without a row, nothing is read
    while nobody watches, events written by "another node" are seen by the
    poll, lists page with a head, a full watcher delays delivery without
    skipping, and a database restart is survived. The watcher is a port
    named `http`, as the HTTP frontend's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../db/test_q_support.h"
#include "cd_log.h"
#include "cd_q_events.h"
#include "cd_testbus.h"

#include <pthread.h>

typedef struct {
    fixture_t *db;   //  the test's database
    tb_tree_t tree;  //  persist + bus
    cd_port_t *http; //  the watcher
    cd_port_t *test; //  emits and asks
} fx_t;

static int
s_fx_setup(void **state)
{
    void *db = NULL;
    s_setup(&db);
    fx_t *fx = calloc(1, sizeof *fx);
    fx->db = db;
    tb_init(&fx->tree, fx->db->conninfo, "b1");
    fx->tree.bus.poll_ms = 50;
    *state = fx;
    return 0;
}

static void
s_fx_start(fx_t *fx)
{
    tb_start(&fx->tree);
    fx->http = cd_port_new(&fx->tree.rt, "http");
    fx->test = cd_port_new(&fx->tree.rt, "test");
    assert_non_null(fx->http);
    assert_non_null(fx->test);
}

static int
s_fx_teardown(void **state)
{
    fx_t *fx = *state;
    cd_port_destroy(&fx->http);
    cd_port_destroy(&fx->test);
    tb_stop(&fx->tree);
    void *db = fx->db;
    s_teardown(&db);
    free(fx);
    return 0;
}

static void
s_watch(fx_t *fx, bool on)
{
    bool was = tb_stat(fx->test, "watched") != 0;
    tb_request(fx->http, "watch", on ? "{\"on\": true}" : "{\"on\": false}", NULL);
    //  The bus has handled it once it answers something sent after it.
    int64_t want = on ? 1 : 0, watched = -1;
    for (int i = 0; i < 100 && watched != want; i++) {
        watched = tb_stat(fx->test, "watched");
    }
    assert_int_equal(watched, want);
    if (on && !was) {
        //  A new watch: first the position alone, at the newest event.
        tb_msg_t msg;
        assert_true(tb_recv(fx->http, 5000, &msg));
        assert_int_equal(msg.kind, CD_KIND_EVENT);
        int64_t prev = json_integer_value(json_object_get(msg.payload, "prev"));
        assert_int_equal(prev, json_integer_value(json_object_get(msg.payload, "last")));
        assert_int_equal(prev, tb_stat(fx->test, "last_seen"));
        assert_int_equal(json_array_size(json_object_get(msg.payload, "events")), 0);
        json_decref(msg.payload);
    }
}

//  What the watcher collected: persisted ids in order (and their types),
//  the chain's last `last`, ephemeral events.
typedef struct {
    int64_t ids[20000]; //  persisted ids, in arrival order
    int n;              //  entries in ids
    int64_t last;       //  the last envelope's `last` (-1 before any)
    int envelopes;      //  persisted envelopes
    json_t *ephemeral;  //  ephemeral EVENT arrays
    json_t *first;      //  the first persisted EVENT array
} s_seen_t;

static void
s_seen_init(s_seen_t *seen)
{
    seen->n = 0;
    seen->last = -1;
    seen->envelopes = 0;
    seen->ephemeral = json_array();
    seen->first = NULL;
}

static void
s_seen_fini(s_seen_t *seen)
{
    json_decref(seen->ephemeral);
    json_decref(seen->first);
}

//  Reads live envelopes until `want` persisted events arrived (or
//  timeout_ms); checks the chain as it goes.
static void
s_collect(cd_port_t *http, s_seen_t *seen, int want, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    while (seen->n < want && zclock_mono() < deadline) {
        tb_msg_t msg;
        if (!tb_recv(http, 20, &msg)) {
            continue;
        }
        assert_int_equal(msg.kind, CD_KIND_EVENT);
        json_t *events = json_object_get(msg.payload, "events");
        assert_true(json_is_array(events));
        json_t *prev = json_object_get(msg.payload, "prev");
        if (!prev) {
            size_t i;
            json_t *e;
            json_array_foreach(events, i, e)
            {
                json_array_append(seen->ephemeral, e);
            }
            json_decref(msg.payload);
            continue;
        }
        if (seen->last >= 0) {
            //  Envelopes chain.
            assert_int_equal(json_integer_value(prev), seen->last);
        }
        seen->last = json_integer_value(json_object_get(msg.payload, "last"));
        seen->envelopes++;
        size_t i;
        json_t *e;
        json_array_foreach(events, i, e)
        {
            assert_int_equal(json_array_size(e), 8);
            int64_t id = json_integer_value(json_array_get(e, 0));
            assert_true(id > json_integer_value(prev) && id <= seen->last);
            if (seen->n > 0) {
                assert_true(id > seen->ids[seen->n - 1]);
            }
            if (!seen->first) {
                seen->first = json_incref(e);
            }
            seen->ids[seen->n++] = id;
        }
        json_decref(msg.payload);
    }
}

static void
test_bus_emitted_events_are_committed_once_and_fanned_out_in_order(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx);
    s_watch(fx, true);

    //  One event with every field: acked by persist after COMMIT, then live.
    uint8_t id[16];
    int64_t t0 = zclock_mono();
    assert_int_equal(
        tb_emit(fx->test, "task.created", 7, 42, "coder", "{\"title\": \"hello\"}", true, true, id),
        0);
    tb_msg_t ack;
    tb_await(fx->test, id, 5000, &ack);
    assert_int_equal(ack.kind, CD_KIND_RESULT);
    assert_int_equal(json_integer_value(json_object_get(ack.payload, "rows")), 1);
    assert_false(json_is_true(json_object_get(ack.payload, "replayed")));
    json_decref(ack.payload);
    s_seen_t *seen = calloc(1, sizeof *seen);
    s_seen_init(seen);
    s_collect(fx->http, seen, 1, 5000);
    int64_t latency = zclock_mono() - t0;
    assert_int_equal(seen->n, 1);
    print_message("emit -> commit -> live envelope: %lld ms\n", (long long)latency);
    json_t *e = seen->first;
    assert_string_equal(json_string_value(json_array_get(e, 1)), "task.created");
    assert_int_equal(json_integer_value(json_array_get(e, 2)), 7);
    assert_int_equal(json_integer_value(json_array_get(e, 3)), 42);
    assert_string_equal(json_string_value(json_array_get(e, 4)), "coder");
    json_t *doc = json_loads(json_string_value(json_array_get(e, 5)), 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "id")), seen->ids[0]);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "task.created");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "data"), "title")),
                        "hello");
    assert_non_null(json_string_value(json_object_get(doc, "ts")));
    json_decref(doc);

    //  The same emit again (same envelope id, as a retry): not written twice.
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "type");
    cd_pack_cstr(pack, "task.created");
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->test), &env, CD_KIND_EVENT, "bus");
    memcpy(env.id, id, 16);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("emit")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    assert_int_equal(cd_port_send(fx->test, &env), 0);
    tb_await(fx->test, id, 5000, &ack);
    assert_true(json_is_true(json_object_get(ack.payload, "replayed")));
    json_decref(ack.payload);
    cd_pack_destroy(&pack);
    assert_int_equal(s_count(fx->db->db, "SELECT count(*) FROM events"), 1);

    //  Many events from four threads' worth of emits, no acks: every one
    //  arrives once, in id order, in few envelopes.
    enum { N = 3000 };
    t0 = zclock_mono();
    for (int i = 0; i < N; i++) {
        char data[64];
        snprintf(data, sizeof data, "{\"i\": %d}", i);
        assert_int_equal(
            tb_emit(fx->test, "task.handoff", 1, i % 10, NULL, data, true, false, NULL), 0);
    }
    s_collect(fx->http, seen, 1 + N, 20000);
    int64_t took = zclock_mono() - t0;
    assert_int_equal(seen->n, 1 + N);
    assert_int_equal(s_count(fx->db->db, "SELECT count(*) FROM events"), 1 + N);
    assert_int_equal(seen->last, s_count(fx->db->db, "SELECT max(id) FROM events"));
    print_message("%d events emitted and received live in %lld ms (%.0f/s), %d envelopes\n", N,
                  (long long)took, N * 1000.0 / (double)(took ? took : 1), seen->envelopes);
    assert_true(seen->envelopes < N / 2);
    s_seen_fini(seen);
    free(seen);
}

static void
test_bus_ephemeral_events_go_live_without_a_row(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx);
    //  Unwatched: dropped.
    uint8_t id[16];
    assert_int_equal(
        tb_emit(fx->test, "task.token", 1, 2, "llm", "{\"token\": \"a\"}", false, true, id), 0);
    tb_msg_t ack;
    tb_await(fx->test, id, 5000, &ack);
    assert_int_equal(ack.kind, CD_KIND_RESULT);
    assert_int_equal(json_integer_value(json_object_get(ack.payload, "rows")), 0);
    json_decref(ack.payload);
    s_watch(fx, true);
    for (int i = 0; i < 3; i++) {
        char data[64];
        snprintf(data, sizeof data, "{\"token\": \"t%d\"}", i);
        assert_int_equal(tb_emit(fx->test, "task.token", 1, 2, "llm", data, false, false, NULL), 0);
    }
    s_seen_t *seen = calloc(1, sizeof *seen);
    s_seen_init(seen);
    int64_t deadline = zclock_mono() + 5000;
    while (json_array_size(seen->ephemeral) < 3 && zclock_mono() < deadline) {
        s_collect(fx->http, seen, 1, 50);
    }
    assert_int_equal(json_array_size(seen->ephemeral), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(seen->ephemeral, i);
        assert_true(json_is_null(json_array_get(e, 0)));
        assert_string_equal(json_string_value(json_array_get(e, 1)), "task.token");
        //  No such task or project: no owners (admins only).
        assert_true(json_is_null(json_array_get(e, 6)) && json_is_null(json_array_get(e, 7)));
        json_t *doc = json_loads(json_string_value(json_array_get(e, 5)), 0, NULL);
        assert_true(json_is_null(json_object_get(doc, "id")));
        assert_int_equal(json_integer_value(json_object_get(doc, "task_id")), 2);
        char want[8];
        snprintf(want, sizeof want, "t%d", (int)i);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(doc, "data"), "token")), want);
        const char *ts = json_string_value(json_object_get(doc, "ts"));
        assert_non_null(ts);
        assert_int_equal(strlen(ts), strlen("2026-11-22T10:00:00.123456Z"));
        json_decref(doc);
    }
    assert_int_equal(s_count(fx->db->db, "SELECT count(*) FROM events"), 0);
    //  ack=none: no answer at all.
    tb_msg_t msg;
    assert_false(tb_recv(fx->test, 200, &msg));
    s_seen_fini(seen);
    free(seen);
}

static void
test_bus_events_carry_their_owners_and_lists_take_a_viewer(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx);
    cd_db_t *db = fx->db->db;
    int64_t ann = s_user(db, "ann"), bob = s_user(db, "bob");
    int64_t ann_task = s_raw_task(db, "{\"agent\":\"a\"}", CD_Q_NULL, ann);
    char sql[160];
    snprintf(sql, sizeof sql,
             "INSERT INTO projects (name, created_by) VALUES ('b', %lld) RETURNING id",
             (long long)bob);
    int64_t bob_project = s_count(db, sql);
    s_watch(fx, true);

    //  Persisted: the owners come with each event, live and in lists.
    assert_int_equal(tb_emit(fx->test, "task.started", -1, ann_task, "a", NULL, true, false, NULL),
                     0);
    assert_int_equal(
        tb_emit(fx->test, "artifact.created", bob_project, -1, NULL, NULL, true, false, NULL), 0);
    assert_int_equal(tb_emit(fx->test, "agent.status", -1, -1, "a", NULL, true, false, NULL), 0);
    s_seen_t *seen = calloc(1, sizeof *seen);
    s_seen_init(seen);
    json_t *live = json_array();
    int64_t deadline = zclock_mono() + 5000;
    while (json_array_size(live) < 3 && zclock_mono() < deadline) {
        tb_msg_t msg;
        if (!tb_recv(fx->http, 50, &msg)) {
            continue;
        }
        json_array_extend(live, json_object_get(msg.payload, "events"));
        json_decref(msg.payload);
    }
    assert_int_equal(json_array_size(live), 3);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(live, 0), 6)), ann);
    assert_true(json_is_null(json_array_get(json_array_get(live, 0), 7)));
    assert_true(json_is_null(json_array_get(json_array_get(live, 1), 6)));
    assert_int_equal(json_integer_value(json_array_get(json_array_get(live, 1), 7)), bob);
    assert_true(json_is_null(json_array_get(json_array_get(live, 2), 6)));
    assert_true(json_is_null(json_array_get(json_array_get(live, 2), 7)));
    json_decref(live);

    //  A list for a viewer: its own events and agent.status only.
    struct {
        const char *req;
        int n;
        const char *first_type;
    } lists[] = {
        {"{}", 3, "task.started"},
        {"{\"viewer\": null}", 3, "task.started"},
        {NULL, 2, "task.started"},     //  ann
        {NULL, 2, "artifact.created"}, //  bob
        {NULL, 0, NULL},               //  bob asks for ann's task
    };
    char req[96];
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const char *r = lists[i].req;
        if (!r) {
            if (i == 2) {
                snprintf(req, sizeof req, "{\"viewer\": %lld}", (long long)ann);
            } else if (i == 3) {
                snprintf(req, sizeof req, "{\"viewer\": %lld}", (long long)bob);
            } else {
                snprintf(req, sizeof req, "{\"viewer\": %lld, \"task_id\": %lld}", (long long)bob,
                         (long long)ann_task);
            }
            r = req;
        }
        uint8_t id[16];
        tb_msg_t msg;
        tb_request(fx->test, "list", r, id);
        tb_await(fx->test, id, 5000, &msg);
        assert_int_equal(msg.kind, CD_KIND_RESULT);
        json_t *events = json_object_get(msg.payload, "events");
        if ((int)json_array_size(events) != lists[i].n) {
            fail_msg("list %s: %zu events", r, json_array_size(events));
        }
        if (lists[i].first_type) {
            assert_string_equal(json_string_value(json_array_get(json_array_get(events, 0), 1)),
                                lists[i].first_type);
        }
        json_decref(msg.payload);
    }
    uint8_t id[16];
    tb_msg_t msg;
    tb_request(fx->test, "list", "{\"viewer\": \"ann\"}", id);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(msg.kind, CD_KIND_ERROR);
    assert_string_equal(json_string_value(json_object_get(msg.payload, "code")), "bad_request");
    json_decref(msg.payload);

    //  Ephemeral: the owners are looked up for it.
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tb_emit(fx->test, "task.token", bob_project, ann_task, "a",
                                 "{\"token\": \"x\"}", false, false, NULL),
                         0);
    }
    deadline = zclock_mono() + 5000;
    while (json_array_size(seen->ephemeral) < 3 && zclock_mono() < deadline) {
        s_collect(fx->http, seen, 1, 50);
    }
    assert_int_equal(json_array_size(seen->ephemeral), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(seen->ephemeral, i);
        assert_int_equal(json_integer_value(json_array_get(e, 6)), ann);
        assert_int_equal(json_integer_value(json_array_get(e, 7)), bob);
    }
    s_seen_fini(seen);
    free(seen);
}

static void
test_bus_refuses_malformed_emits(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx);
    struct {
        const char *type, *agent, *data;
        const char *reason;
    } bad[] = {
        {"task.exploded", NULL, NULL, "not an event type"},
        {"task.created", NULL, "[1, 2]", "JSON text of an object"},
        {"task.created", NULL, "{\"a\": 1} x", "JSON text of an object"},
        {"task.created", NULL, "{\"a\": 1, \"a\": 2}", "JSON text of an object"},
        {"task.created", "", NULL, "1-64 bytes"},
        {"task.created", "a-name-that-is-much-longer-than-sixty-four-bytes-which-is-the-limit-here",
         NULL, "1-64 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t id[16];
        for (int persist = 0; persist < 2; persist++) {
            assert_int_equal(tb_emit(fx->test, bad[i].type, -1, -1, bad[i].agent, bad[i].data,
                                     persist, true, id),
                             0);
            tb_msg_t msg;
            tb_await(fx->test, id, 5000, &msg);
            assert_int_equal(msg.kind, CD_KIND_ERROR);
            assert_string_equal(json_string_value(json_object_get(msg.payload, "code")),
                                "bad_request");
            const char *message = json_string_value(json_object_get(msg.payload, "message"));
            if (!strstr(message, bad[i].reason)) {
                fail_msg("case %zu: %s", i, message);
            }
            json_decref(msg.payload);
        }
    }
    //  Not a map; an unknown op.
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->test), &env, CD_KIND_CONTROL, "bus");
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("emit")};
    env.n_headers = 1;
    assert_int_equal(cd_port_send(fx->test, &env), 0);
    tb_msg_t msg;
    tb_await(fx->test, env.id, 5000, &msg);
    assert_int_equal(msg.kind, CD_KIND_ERROR);
    json_decref(msg.payload);
    uint8_t id[16];
    tb_request(fx->test, "explode", NULL, id);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(msg.kind, CD_KIND_ERROR);
    assert_non_null(
        strstr(json_string_value(json_object_get(msg.payload, "message")), "unknown op"));
    json_decref(msg.payload);
    //  Nothing was written; the bus is still there.
    assert_int_equal(s_count(fx->db->db, "SELECT count(*) FROM events"), 0);
    assert_true(tb_stat(fx->test, "failed") >= 12);
    //  Persist gone: db_unavailable.
    char why[128];
    assert_int_equal(
        cd_root_call(fx->tree.root, "STOP", "", "persist", NULL, 5000, why, sizeof why), 0);
    assert_int_equal(tb_emit(fx->test, "task.created", -1, -1, NULL, NULL, true, true, id), 0);
    tb_await(fx->test, id, 5000, &msg);
    assert_string_equal(json_string_value(json_object_get(msg.payload, "code")), "db_unavailable");
    json_decref(msg.payload);
}

static void
test_bus_reads_nothing_unwatched_and_polls_other_writers_while_watched(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx);
    cd_db_t *db = fx->db->db;
    //  Written by "another node" (not through this persist): no notice.
    char *out = NULL;
    for (int i = 0; i < 3; i++) {
        s_ok(db, cd_q_events_insert(db, "agent.status", CD_Q_NULL, CD_Q_NULL, "x", NULL, &out));
        free(out);
    }
    zclock_sleep(200);
    tb_msg_t msg;
    assert_false(tb_recv(fx->http, 100, &msg));
    assert_int_equal(tb_stat(fx->test, "read"), 0);

    //  A watch starts at the newest event: those before are not sent.
    s_watch(fx, true);
    int64_t head = tb_stat(fx->test, "last_seen");
    assert_int_equal(head, s_count(db, "SELECT max(id) FROM events"));
    s_ok(db, cd_q_events_insert(db, "agent.status", CD_Q_NULL, CD_Q_NULL, "y", NULL, &out));
    free(out);
    s_seen_t *seen = calloc(1, sizeof *seen);
    s_seen_init(seen);
    int64_t t0 = zclock_mono();
    s_collect(fx->http, seen, 1, 3000);
    assert_int_equal(seen->n, 1);
    assert_true(seen->ids[0] > head);
    print_message("another writer's event seen by the poll after %lld ms\n",
                  (long long)(zclock_mono() - t0));

    //  Watch off: nothing more is sent.
    s_watch(fx, false);
    s_ok(db, cd_q_events_insert(db, "agent.status", CD_Q_NULL, CD_Q_NULL, "z", NULL, &out));
    free(out);
    assert_false(tb_recv(fx->http, 300, &msg));

    //  A watch that is not renewed lapses.
    s_fx_teardown((void **)&fx);
    s_fx_setup((void **)&fx);
    *state = fx;
    fx->tree.bus.watch_lease_ms = 300;
    s_fx_start(fx);
    s_watch(fx, true);
    zclock_sleep(500);
    assert_int_equal(tb_stat(fx->test, "watched"), 0);
    s_ok(fx->db->db,
         cd_q_events_insert(fx->db->db, "agent.status", CD_Q_NULL, CD_Q_NULL, "w", NULL, &out));
    free(out);
    assert_false(tb_recv(fx->http, 300, &msg));
    s_seen_fini(seen);
    free(seen);
}

static void
test_bus_lists_pages_with_a_head(void **state)
{
    fx_t *fx = *state;
    s_fx_start(fx);
    cd_db_t *db = fx->db->db;
    char *out = NULL;
    for (int i = 0; i < 7; i++) {
        s_ok(db, cd_q_events_insert(db, i % 2 ? "task.started" : "task.created", i % 3, 100 + i,
                                    i % 2 ? "a" : "b", "{\"k\": 1}", &out));
        free(out);
    }
    int64_t max = s_count(db, "SELECT max(id) FROM events");
    uint8_t id[16];
    tb_msg_t msg;

    //  Pages of 3, then the rest; the head is the newest id.
    tb_request(fx->test, "list", "{\"limit\": 3}", id);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(msg.kind, CD_KIND_RESULT);
    json_t *events = json_object_get(msg.payload, "events");
    assert_int_equal(json_array_size(events), 3);
    const char *cursor = json_string_value(json_object_get(msg.payload, "next_cursor"));
    assert_non_null(cursor);
    assert_int_equal(atoll(cursor),
                     json_integer_value(json_array_get(json_array_get(events, 2), 0)));
    assert_int_equal(json_integer_value(json_object_get(msg.payload, "head")), max);
    char req[96];
    snprintf(req, sizeof req, "{\"limit\": 10, \"after\": %s}", cursor);
    json_decref(msg.payload);
    tb_request(fx->test, "list", req, id);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(json_array_size(json_object_get(msg.payload, "events")), 4);
    assert_true(json_is_null(json_object_get(msg.payload, "next_cursor")));
    json_decref(msg.payload);

    //  A page that ends exactly at the last event says no more follow.
    tb_request(fx->test, "list", "{\"limit\": 7}", id);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(json_array_size(json_object_get(msg.payload, "events")), 7);
    assert_true(json_is_null(json_object_get(msg.payload, "next_cursor")));
    json_decref(msg.payload);

    //  Filters combine.
    tb_request(fx->test, "list",
               "{\"types\": \"task.started\", \"agent\": \"a\", \"project_id\": 1}", id);
    tb_await(fx->test, id, 5000, &msg);
    events = json_object_get(msg.payload, "events");
    assert_int_equal(json_array_size(events), 1);
    json_t *e = json_array_get(events, 0);
    assert_string_equal(json_string_value(json_array_get(e, 1)), "task.started");
    assert_int_equal(json_integer_value(json_array_get(e, 2)), 1);
    json_decref(msg.payload);
    tb_request(fx->test, "list", "{\"task_id\": 104}", id);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(json_array_size(json_object_get(msg.payload, "events")), 1);
    json_decref(msg.payload);

    //  head_only; malformed requests.
    tb_request(fx->test, "list", "{\"head_only\": true}", id);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(json_array_size(json_object_get(msg.payload, "events")), 0);
    assert_int_equal(json_integer_value(json_object_get(msg.payload, "head")), max);
    json_decref(msg.payload);
    const char *bad[] = {"{\"limit\": 0}",     "{\"limit\": 1001}",      "{\"after\": -1}",
                         "{\"after\": \"x\"}", "{\"project_id\": true}", "{\"head_only\": 3}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tb_request(fx->test, "list", bad[i], id);
        tb_await(fx->test, id, 5000, &msg);
        assert_int_equal(msg.kind, CD_KIND_ERROR);
        assert_string_equal(json_string_value(json_object_get(msg.payload, "code")), "bad_request");
        json_decref(msg.payload);
    }
}

static void
test_bus_full_watcher_delays_delivery_without_skipping(void **state)
{
    fx_t *fx = *state;
    //  Tiny queues and envelopes: the watcher fills after a few envelopes.
    fx->tree.rt.queue_hwm = 4;
    fx->tree.bus.batch_events = 3;
    s_fx_start(fx);
    s_watch(fx, true);
    cd_db_t *db = fx->db->db;
    enum { N = 200 };
    s_ok(db, cd_db_exec(db,
                        "INSERT INTO events (type, data) SELECT 'task.token', "
                        "json_build_object('i', i) FROM generate_series(1, 200) i",
                        NULL));
    //  Nobody reads for a while: the bus has to wait.
    zclock_sleep(400);
    assert_true(tb_stat(fx->test, "delayed") > 0);
    s_seen_t *seen = calloc(1, sizeof *seen);
    s_seen_init(seen);
    s_collect(fx->http, seen, N, 10000);
    assert_int_equal(seen->n, N);
    for (int i = 1; i < N; i++) {
        assert_int_equal(seen->ids[i], seen->ids[i - 1] + 1);
    }
    s_seen_fini(seen);
    free(seen);
}

static void
test_bus_survives_a_database_restart(void **state)
{
    fx_t *fx = *state;
    fx->tree.bus.reconnect_max_ms = 200;
    fx->tree.persist.reconnect_max_ms = 200;
    s_fx_start(fx);
    s_watch(fx, true);
    uint8_t id[16];
    tb_msg_t msg;
    assert_int_equal(tb_emit(fx->test, "task.created", 1, 1, NULL, NULL, true, true, id), 0);
    tb_await(fx->test, id, 5000, &msg);
    assert_int_equal(msg.kind, CD_KIND_RESULT);
    json_decref(msg.payload);
    s_seen_t *seen = calloc(1, sizeof *seen);
    s_seen_init(seen);
    s_collect(fx->http, seen, 1, 5000);
    assert_int_equal(seen->n, 1);

    cd_pgembed_t *pg = cd_testpg_cluster();
    assert_int_equal(cd_pgembed_kill(pg, "immediate"), 0);
    //  The bus notices at its next read (a poll) and answers lists
    //  db_unavailable while the server is away.
    int64_t deadline = zclock_mono() + 5000;
    bool down = false;
    while (!down && zclock_mono() < deadline) {
        tb_request(fx->test, "list", NULL, id);
        tb_await(fx->test, id, 5000, &msg);
        down =
            msg.kind == CD_KIND_ERROR &&
            strcmp(json_string_value(json_object_get(msg.payload, "code")), "db_unavailable") == 0;
        json_decref(msg.payload);
        zclock_sleep(50);
    }
    assert_true(down);
    char *err = NULL;
    if (cd_pgembed_restart(pg, &err) != 0) {
        fail_msg("restart: %s", err);
    }
    //  The watcher is renewed as the HTTP side would; new events flow again,
    //  and the chain goes on from where it stopped.
    deadline = zclock_mono() + 10000;
    while (tb_stat(fx->test, "db_ok") == 0 && zclock_mono() < deadline) {
        zclock_sleep(50);
    }
    assert_int_equal(tb_stat(fx->test, "db_ok"), 1);
    s_watch(fx, true);
    assert_int_equal(tb_emit(fx->test, "task.completed", 1, 1, NULL, NULL, true, true, id), 0);
    tb_await(fx->test, id, 10000, &msg);
    assert_int_equal(msg.kind, CD_KIND_RESULT);
    json_decref(msg.payload);
    s_collect(fx->http, seen, 2, 5000);
    assert_int_equal(seen->n, 2);
    assert_true(tb_stat(fx->test, "reconnects") >= 1);
    s_seen_fini(seen);
    free(seen);
}

int
main(void)
{
    cd_log_level_t level = CD_LOG_WARN;
    if (getenv("CADRE_LOG_LEVEL")) {
        cd_log_level_parse(getenv("CADRE_LOG_LEVEL"), &level);
    }
    cd_log_set_level(level);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_bus_emitted_events_are_committed_once_and_fanned_out_in_order, s_fx_setup,
            s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bus_ephemeral_events_go_live_without_a_row, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bus_events_carry_their_owners_and_lists_take_a_viewer,
                                        s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bus_refuses_malformed_emits, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_bus_reads_nothing_unwatched_and_polls_other_writers_while_watched, s_fx_setup,
            s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bus_lists_pages_with_a_head, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bus_full_watcher_delays_delivery_without_skipping,
                                        s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bus_survives_a_database_restart, s_fx_setup,
                                        s_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
