/* label: integration */
/*  test_api_system: configuration and statistics over HTTP/2 against a
    real node (cd_testnode) on a real PostgreSQL: config read and merge
    patches (null deletes), key names, current counters, the snapshot
    history with since and pages, and bad input that changes nothing. */
#include "cd_testnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
s_setup(void **state)
{
    tn_node_t *node = tn_start(NULL);
    if (!node) {
        return -1;
    }
    *state = node;
    return 0;
}

static int
s_teardown(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_stop(&node);
    return 0;
}

static void
s_sql_is(const tn_node_t *node, const char *sql, const char *want)
{
    char *text = tn_sql(node, sql);
    if (!text || strcmp(text, want) != 0) {
        fail_msg("%s: got '%s', want '%s'", sql, text ? text : "(null)", want);
    }
    free(text);
}

static void
s_sql(const tn_node_t *node, const char *sql)
{
    free(tn_sql(node, sql));
}

static const char *
s_field(const tn_resp_t *r)
{
    const char *f = json_string_value(
        json_object_get(json_object_get(json_object_get(r->json, "error"), "details"), "field"));
    return f ? f : "";
}

static void
s_expect(const tn_node_t *node, const char *method, const char *path, const char *body, long status,
         const char *code, const char *field)
{
    tn_resp_t r;
    long got = tn_call(node, &r, method, path, body);
    if (got != status || strcmp(tn_error_code(&r), code) != 0 ||
        (field && strcmp(s_field(&r), field) != 0)) {
        fail_msg("%s %s %s: got %ld %s, want %ld %s field %s", method, path, body ? body : "", got,
                 r.body, status, code, field ? field : "-");
    }
    tn_resp_free(&r);
}

static void
test_config_get_and_patch(void **state)
{
    tn_node_t *n = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(tn_call(n, &r, "GET", "/api/v1/config", NULL), 200);
    assert_true(json_is_object(r.json));
    assert_int_equal(json_object_size(r.json), 0);
    tn_resp_free(&r);

    assert_int_equal(
        tn_call(n, &r, "PATCH", "/api/v1/config",
                "{\"llm_prices\":{\"gpt-x\":{\"prompt\":0.10,\"completion\":2e-6}},"
                "\"retention_days\":30,\"ui.theme\":\"dark\",\"flags\":[1,true,null]}"),
        200);
    assert_int_equal(json_object_size(r.json), 4); //  the whole config
    assert_int_equal(json_integer_value(json_object_get(r.json, "retention_days")), 30);
    assert_string_equal(json_string_value(json_object_get(r.json, "ui.theme")), "dark");
    assert_int_equal(json_array_size(json_object_get(r.json, "flags")), 3);
    tn_resp_free(&r);
    //  Committed before the 200, values as the client wrote them.
    s_sql_is(n, "SELECT value -> 'gpt-x' ->> 'prompt' FROM config WHERE key = 'llm_prices'",
             "0.10");

    //  null deletes (a missing key too); other keys stay.
    assert_int_equal(tn_call(n, &r, "PATCH", "/api/v1/config",
                             "{\"retention_days\":null,\"never_set\":null,\"ui.theme\":\"light\"}"),
                     200);
    assert_int_equal(json_object_size(r.json), 3);
    assert_null(json_object_get(r.json, "retention_days"));
    assert_string_equal(json_string_value(json_object_get(r.json, "ui.theme")), "light");
    tn_resp_free(&r);
    s_sql_is(n, "SELECT count(*) FROM config", "3");
    //  An empty patch changes nothing and answers the config.
    assert_int_equal(tn_call(n, &r, "PATCH", "/api/v1/config", "{}"), 200);
    assert_int_equal(json_object_size(r.json), 3);
    tn_resp_free(&r);
    assert_int_equal(tn_call(n, &r, "GET", "/api/v1/config", NULL), 200);
    assert_int_equal(json_object_size(r.json), 3);
    assert_true(json_is_object(json_object_get(r.json, "llm_prices")));
    tn_resp_free(&r);
    //  The longest key, every allowed character.
    char body[160], key[101];
    memset(key, 'k', 100);
    key[100] = '\0';
    memcpy(key, "a-z_0.9", 7);
    snprintf(body, sizeof body, "{\"%s\":1}", key);
    assert_int_equal(tn_call(n, &r, "PATCH", "/api/v1/config", body), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, key)), 1);
    tn_resp_free(&r);
}

static void
test_config_bad_input_changes_nothing(void **state)
{
    tn_node_t *n = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(tn_call(n, &r, "PATCH", "/api/v1/config", "{\"a\":1}"), 200);
    tn_resp_free(&r);
    char *before = tn_sql(n, "SELECT string_agg(key || '=' || value || '@' || updated_at, ','"
                             " ORDER BY key) FROM config");
    const char *p = "/api/v1/config";
    s_expect(n, "PATCH", p, "{\"Bad\":1}", 400, "validation_failed", "Bad");
    s_expect(n, "PATCH", p, "{\"a\":2,\"has space\":1}", 400, "validation_failed", "has space");
    s_expect(n, "PATCH", p, "{\"\":1}", 400, "validation_failed", "");
    s_expect(n, "PATCH", p, "{\"caf\xc3\xa9\":1}", 400, "validation_failed", "caf\xc3\xa9");
    char body[400], key[201];
    memset(key, 'k', 200);
    key[200] = '\0';
    snprintf(body, sizeof body, "{\"%s\":1}", key);
    tn_resp_t tr;
    assert_int_equal(tn_call(n, &tr, "PATCH", p, body), 400);
    assert_int_equal(strlen(s_field(&tr)), 64); //  named, shortened
    tn_resp_free(&tr);
    //  A long key of two-byte characters is shortened on a character
    //  boundary (the error body stays valid UTF-8).
    char wide[400] = "{\"";
    for (int i = 0; i < 80; i++) {
        strcat(wide, "\xc3\xa9");
    }
    strcat(wide, "\":1}");
    assert_int_equal(tn_call(n, &tr, "PATCH", p, wide), 400);
    assert_int_equal(strlen(s_field(&tr)), 64);
    tn_resp_free(&tr);
    s_expect(n, "PATCH", p, "{\"a\":", 400, "invalid_json", NULL);
    s_expect(n, "PATCH", p, "[1]", 400, "validation_failed", NULL);
    s_expect(n, "PATCH", p, "\"a\"", 400, "validation_failed", NULL);
    s_expect(n, "PATCH", p, "{\"a\":1,\"a\":2}", 400, "invalid_json", NULL);
    static const char *const text[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(tn_request(n, "PATCH", p, "{\"a\":3}", text, &r), 415);
    tn_resp_free(&r);
    s_expect(n, "POST", p, "{}", 405, "method_not_allowed", NULL);
    s_expect(n, "DELETE", p, NULL, 405, "method_not_allowed", NULL);
    char *after = tn_sql(n, "SELECT string_agg(key || '=' || value || '@' || updated_at, ','"
                            " ORDER BY key) FROM config");
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void
test_stats_now(void **state)
{
    tn_node_t *n = (tn_node_t *)*state;
    s_sql(n, "INSERT INTO tasks (title, assignee) SELECT 't' || i, '{\"agent\":\"a\"}'"
             " FROM generate_series(1, 3) i RETURNING 1");
    s_sql(n, "INSERT INTO tasks (title, assignee, status) VALUES"
             " ('w', '{\"agent\":\"a\"}', 'waiting_human') RETURNING id");
    s_sql(n, "INSERT INTO agents (name, kind, status) VALUES ('busy1', 'echo', 'busy'),"
             " ('idle1', 'echo', 'idle'), ('idle2', 'echo', 'idle') RETURNING 1");
    s_sql(n, "INSERT INTO hitl_requests (task_id, question)"
             " SELECT id, 'q' FROM tasks WHERE status = 'waiting_human' RETURNING 1");
    s_sql(n, "INSERT INTO events (type) VALUES ('agent.status'), ('agent.status') RETURNING 1");
    tn_resp_t r;
    assert_int_equal(tn_call(n, &r, "GET", "/api/v1/stats", NULL), 200);
    json_t *tasks = json_object_get(r.json, "tasks");
    assert_int_equal(json_object_size(tasks), 6);
    assert_int_equal(json_integer_value(json_object_get(tasks, "todo")), 3);
    assert_int_equal(json_integer_value(json_object_get(tasks, "waiting_human")), 1);
    assert_int_equal(json_integer_value(json_object_get(tasks, "done")), 0);
    json_t *agents = json_object_get(r.json, "agents");
    assert_int_equal(json_object_size(agents), 6);
    //  The node's configured agent (`echo`) is listed, and idle, too.
    assert_int_equal(json_integer_value(json_object_get(agents, "idle")), 3);
    assert_int_equal(json_integer_value(json_object_get(agents, "busy")), 1);
    assert_int_equal(json_integer_value(json_object_get(r.json, "hitl_pending")), 1);
    assert_int_equal(json_integer_value(json_object_get(r.json, "schedules_enabled")), 0);
    assert_true(json_integer_value(json_object_get(r.json, "events_total")) >= 2);
    assert_string_equal(json_string_value(json_object_get(r.json, "node_id")), cd_node_id(n->node));
    assert_non_null(json_string_value(json_object_get(r.json, "ts")));
    //  uptime_s: a number once the node passes its start time to the api
    //  actors (cd_api_args_t.started_us), null until then.
    json_t *uptime = json_object_get(r.json, "uptime_s");
    assert_true(json_is_null(uptime) || (json_is_number(uptime) && json_number_value(uptime) >= 0));
    tn_resp_free(&r);
    s_expect(n, "POST", "/api/v1/stats", "{}", 405, "method_not_allowed", NULL);
}

static void
test_stats_history(void **state)
{
    tn_node_t *n = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(tn_call(n, &r, "GET", "/api/v1/stats/history", NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    tn_resp_free(&r);
    s_sql(n, "INSERT INTO stats_history (ts, node_id, stats) SELECT"
             " timestamptz '2026-01-01T00:00:00Z' + i * interval '1 minute', 'n1',"
             " jsonb_build_object('i', i) FROM generate_series(0, 4) i RETURNING 1");
    assert_int_equal(tn_call(n, &r, "GET", "/api/v1/stats/history", NULL), 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 5);
    //  Oldest first, the snapshot as stored.
    json_t *first = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(first, "ts")),
                        "2026-01-01T00:00:00.000000Z");
    assert_string_equal(json_string_value(json_object_get(first, "node_id")), "n1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(first, "stats"), "i")), 0);
    tn_resp_free(&r);
    assert_int_equal(
        tn_call(n, &r, "GET", "/api/v1/stats/history?since=2026-01-01T00:03:00Z", NULL), 200);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(json_array_get(items, 0), "stats"), "i")),
                     3);
    tn_resp_free(&r);
    //  An offset is a time like another.
    assert_int_equal(
        tn_call(n, &r, "GET", "/api/v1/stats/history?since=2026-01-01T01:03:00%2B01:00", NULL),
        200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    tn_resp_free(&r);
    //  Pages.
    char path[160] = "/api/v1/stats/history?limit=2";
    int seen = 0, pages = 0;
    while (true) {
        assert_int_equal(tn_call(n, &r, "GET", path, NULL), 200);
        seen += (int)json_array_size(json_object_get(r.json, "items"));
        pages++;
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!next) {
            tn_resp_free(&r);
            break;
        }
        snprintf(path, sizeof path, "/api/v1/stats/history?limit=2&cursor=%s", next);
        tn_resp_free(&r);
    }
    assert_int_equal(seen, 5);
    assert_int_equal(pages, 3);

    const char *h = "/api/v1/stats/history";
    char bad[160];
    const char *since[] = {"yesterday", "2026-13-45T00:00:00Z", "2026-01-01T25:00:00Z", "20260101",
                           "2026-01-01T00:00:00Zjunk"};
    for (size_t i = 0; i < sizeof since / sizeof since[0]; i++) {
        snprintf(bad, sizeof bad, "%s?since=%s", h, since[i]);
        s_expect(n, "GET", bad, NULL, 400, "validation_failed", "since");
    }
    snprintf(bad, sizeof bad, "%s?limit=2000", h);
    s_expect(n, "GET", bad, NULL, 400, "validation_failed", "limit");
    snprintf(bad, sizeof bad, "%s?cursor=abc", h);
    s_expect(n, "GET", bad, NULL, 400, "validation_failed", "cursor");
    s_sql_is(n, "SELECT count(*) FROM stats_history", "5");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_get_and_patch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_config_bad_input_changes_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stats_now, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stats_history, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
