/* label: integration */
/*  test_api_schedules: scheduled tasks over HTTP/2 against a real node
    (cd_testnode) on a real PostgreSQL: create with an interval or a cron
    (next_run_at computed), list, get, patch (next time recomputed only
    when it must be), delete, fire now (the task, its history and events
    in one commit), and bad input that changes nothing. */
#include "cd_testnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK                                                                                       \
    "\"task\":{\"title\":\"nightly\",\"assignee\":{\"agent\":\"coder\"},\"input\":{\"x\":0.10}}"

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

static long long
s_sql_int(const tn_node_t *node, const char *sql)
{
    char *text = tn_sql(node, sql);
    if (!text) {
        fail_msg("no value from: %s", sql);
    }
    long long v = atoll(text);
    free(text);
    return v;
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

static const char *
s_field(const tn_resp_t *r)
{
    const char *f = json_string_value(
        json_object_get(json_object_get(json_object_get(r->json, "error"), "details"), "field"));
    return f ? f : "";
}

static const char *
s_reason(const tn_resp_t *r)
{
    const char *f = json_string_value(
        json_object_get(json_object_get(json_object_get(r->json, "error"), "details"), "reason"));
    return f ? f : "";
}

//  Asserts status, error code and (if not NULL) the field named; returns
//  nothing but fails with the body.
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

//  POST /schedules with body; asserts 201 and returns the id.
static long long
s_create(const tn_node_t *node, const char *body, tn_resp_t *keep)
{
    tn_resp_t r;
    if (tn_call(node, &r, "POST", "/api/v1/schedules", body) != 201) {
        fail_msg("create %s: %ld %s", body, r.status, r.body);
    }
    long long id = (long long)json_integer_value(json_object_get(r.json, "id"));
    char loc[96], want[96];
    snprintf(want, sizeof want, "/api/v1/schedules/%lld", id);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), want);
    if (keep) {
        *keep = r;
    } else {
        tn_resp_free(&r);
    }
    return id;
}

//  PATCH /schedules/{id}; asserts 200; the answer in *r (caller frees).
static void
s_patch(const tn_node_t *node, long long id, const char *body, tn_resp_t *r)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", id);
    if (tn_call(node, r, "PATCH", path, body) != 200) {
        fail_msg("patch %s: %ld %s", body, r->status, r->body);
    }
}

static const char *
s_str(const tn_resp_t *r, const char *key)
{
    return json_string_value(json_object_get(r->json, key));
}

static void
test_schedules_crud_and_next_run_at(void **state)
{
    tn_node_t *n = (tn_node_t *)*state;
    tn_resp_t r;
    char sql[256], path[96];

    //  Interval: first due one interval after it was created (to the µs).
    long long every = s_create(n, "{\"name\":\"hourly\",\"interval_s\":3600," TASK "}", &r);
    assert_int_equal(json_integer_value(json_object_get(r.json, "interval_s")), 3600);
    assert_true(json_is_null(json_object_get(r.json, "cron")));
    assert_true(json_is_true(json_object_get(r.json, "enabled")));
    assert_string_equal(s_str(&r, "catch_up"), "skip");
    assert_true(json_is_null(json_object_get(r.json, "last_run_at")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "task"), "title")), "nightly");
    tn_resp_free(&r);
    snprintf(sql, sizeof sql,
             "SELECT (next_run_at = created_at + interval '3600 seconds')::text"
             " || ' ' || (task -> 'input' ->> 'x') FROM scheduled_tasks WHERE id = %lld",
             every);
    s_sql_is(n, sql, "true 0.10"); //  the template's numbers as written

    //  Cron, in UTC: the next matching minute, in the future.
    long long five = s_create(n,
                              "{\"name\":\"five\",\"cron\":\"*/5 * * * *\",\"catch_up\":\"once\","
                              "\"interval_s\":null," TASK "}",
                              NULL);
    snprintf(sql, sizeof sql,
             "SELECT (extract(minute FROM next_run_at AT TIME ZONE 'UTC')::int %% 5 = 0"
             " AND extract(second FROM next_run_at) = 0 AND next_run_at > now() - interval '2 s'"
             " AND next_run_at <= now() + interval '5 minutes')::text"
             " FROM scheduled_tasks WHERE id = %lld",
             five);
    s_sql_is(n, sql, "true");
    //  Disabled: no next time.
    long long off = s_create(
        n, "{\"name\":\"off\",\"cron\":\"0 0 * * mon-fri\",\"enabled\":false," TASK "}", &r);
    assert_true(json_is_null(json_object_get(r.json, "next_run_at")));
    assert_true(json_is_false(json_object_get(r.json, "enabled")));
    tn_resp_free(&r);

    //  List (newest first), pages, one.
    assert_int_equal(tn_call(n, &r, "GET", "/api/v1/schedules", NULL), 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "id")), off);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    tn_resp_free(&r);
    assert_int_equal(tn_call(n, &r, "GET", "/api/v1/schedules?limit=2", NULL), 200);
    const char *cursor = json_string_value(json_object_get(r.json, "next_cursor"));
    assert_non_null(cursor);
    snprintf(path, sizeof path, "/api/v1/schedules?limit=2&cursor=%s", cursor);
    tn_resp_free(&r);
    assert_int_equal(tn_call(n, &r, "GET", path, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    tn_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", five);
    assert_int_equal(tn_call(n, &r, "GET", path, NULL), 200);
    assert_string_equal(s_str(&r, "cron"), "*/5 * * * *");
    assert_string_equal(s_str(&r, "catch_up"), "once");
    tn_resp_free(&r);

    //  A rename keeps the next time.
    snprintf(sql, sizeof sql, "SELECT cd_ts(next_run_at) FROM scheduled_tasks WHERE id = %lld",
             every);
    char *next = tn_sql(n, sql);
    s_patch(n, every, "{\"name\":\"renamed\"}", &r);
    assert_string_equal(s_str(&r, "name"), "renamed");
    assert_string_equal(s_str(&r, "next_run_at"), next);
    tn_resp_free(&r);
    free(next);
    //  A cron instead of the interval: the interval is cleared, the time is
    //  the next midnight (UTC).
    s_patch(n, every, "{\"cron\":\"0 0 * * *\"}", &r);
    assert_true(json_is_null(json_object_get(r.json, "interval_s")));
    assert_string_equal(s_str(&r, "cron"), "0 0 * * *");
    assert_non_null(strstr(s_str(&r, "next_run_at"), "T00:00:00.000000Z"));
    tn_resp_free(&r);
    s_sql_is(n,
             "SELECT (next_run_at > now() AND next_run_at <= now() + interval '1 day')::text"
             " FROM scheduled_tasks WHERE name = 'renamed'",
             "true");
    //  Disabled, then enabled again: none, then a new one.
    s_patch(n, every, "{\"enabled\":false}", &r);
    assert_true(json_is_null(json_object_get(r.json, "next_run_at")));
    tn_resp_free(&r);
    s_patch(n, every, "{\"enabled\":true}", &r);
    assert_non_null(strstr(s_str(&r, "next_run_at"), "T00:00:00.000000Z"));
    tn_resp_free(&r);
    //  Back to an interval: one interval from now.
    s_patch(n, every, "{\"interval_s\":60,\"task\":{\"title\":\"t2\",\"assignee\":{\"team\":7}}}",
            &r);
    assert_true(json_is_null(json_object_get(r.json, "cron")));
    assert_int_equal(json_integer_value(json_object_get(r.json, "interval_s")), 60);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(r.json, "task"), "assignee"), "team")),
                     7);
    tn_resp_free(&r);
    snprintf(sql, sizeof sql,
             "SELECT (next_run_at = updated_at + interval '60 seconds')::text"
             " FROM scheduled_tasks WHERE id = %lld",
             every);
    s_sql_is(n, sql, "true");
    //  Enabling a disabled cron schedule gives it its next time.
    s_patch(n, off, "{\"enabled\":true}", &r);
    assert_non_null(s_str(&r, "next_run_at"));
    assert_non_null(strstr(s_str(&r, "next_run_at"), ":00:00.000000Z"));
    tn_resp_free(&r);

    //  Delete.
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", off);
    assert_int_equal(tn_call(n, &r, "DELETE", path, NULL), 204);
    tn_resp_free(&r);
    s_expect(n, "GET", path, NULL, 404, "not_found", NULL);
    s_expect(n, "DELETE", path, NULL, 404, "not_found", NULL);
    s_expect(n, "PATCH", path, "{\"name\":\"x\"}", 404, "not_found", NULL);
    s_expect(n, "GET", "/api/v1/schedules/abc", NULL, 404, "not_found", NULL);
    s_expect(n, "DELETE", "/api/v1/schedules/0", NULL, 404, "not_found", NULL);
    assert_int_equal(s_sql_int(n, "SELECT count(*) FROM scheduled_tasks"), 2);
}

static void
test_schedules_run_fires_now(void **state)
{
    tn_node_t *n = (tn_node_t *)*state;
    long long project = s_sql_int(n, "INSERT INTO projects (name) VALUES ('p') RETURNING id");
    char body[512], path[96], sql[256], want[160];
    snprintf(body, sizeof body,
             "{\"name\":\"report\",\"interval_s\":86400,\"task\":{\"title\":\"report\","
             "\"description\":\"weekly\",\"priority\":8,\"project_id\":%lld,"
             "\"assignee\":{\"role\":\"writer\"},\"input\":{\"weeks\":1}}}",
             project);
    long long id = s_create(n, body, NULL);
    snprintf(sql, sizeof sql, "SELECT cd_ts(next_run_at) FROM scheduled_tasks WHERE id = %lld", id);
    char *next = tn_sql(n, sql);

    snprintf(path, sizeof path, "/api/v1/schedules/%lld/run", id);
    static const char *const key[] = {"Idempotency-Key: fire-1", NULL};
    tn_resp_t r, again;
    assert_int_equal(tn_request(n, "POST", path, NULL, key, &r), 201);
    long long task = (long long)json_integer_value(json_object_get(r.json, "id"));
    char loc[96];
    snprintf(want, sizeof want, "/api/v1/tasks/%lld", task);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), want);
    assert_string_equal(s_str(&r, "title"), "report");
    assert_string_equal(s_str(&r, "description"), "weekly");
    assert_string_equal(s_str(&r, "status"), "todo");
    assert_int_equal(json_integer_value(json_object_get(r.json, "priority")), 8);
    assert_int_equal(json_integer_value(json_object_get(r.json, "project_id")), project);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "assignee"), "role")), "writer");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "input"), "weeks")),
                     1);
    //  The same key again: the first answer, no second task.
    assert_int_equal(tn_request(n, "POST", path, NULL, key, &again), 201);
    assert_string_equal(again.body, r.body);
    tn_resp_free(&again);
    tn_resp_free(&r);
    assert_int_equal(s_sql_int(n, "SELECT count(*) FROM tasks"), 1);
    snprintf(sql, sizeof sql,
             "SELECT string_agg(kind || ':' || status, ',') FROM task_events WHERE task_id = %lld",
             task);
    s_sql_is(n, sql, "created:todo");
    s_sql_is(n, "SELECT string_agg(type, ',' ORDER BY id) FROM events",
             "task.created,schedule.fired");
    snprintf(sql, sizeof sql,
             "SELECT (data ->> 'schedule_id') || ' ' || task_id || ' ' || project_id FROM events"
             " WHERE type = 'schedule.fired'");
    snprintf(want, sizeof want, "%lld %lld %lld", id, task, project);
    s_sql_is(n, sql, want);
    //  last_run_at set; the next regular firing unchanged.
    snprintf(sql, sizeof sql,
             "SELECT (last_run_at IS NOT NULL)::text || ' ' || cd_ts(next_run_at)"
             " FROM scheduled_tasks WHERE id = %lld",
             id);
    snprintf(want, sizeof want, "true %s", next);
    s_sql_is(n, sql, want);
    free(next);

    //  A second firing (no key) makes a second task.
    assert_int_equal(tn_call(n, &r, "POST", path, NULL), 201);
    tn_resp_free(&r);
    assert_int_equal(s_sql_int(n, "SELECT count(*) FROM tasks"), 2);
    assert_int_equal(s_sql_int(n, "SELECT count(*) FROM events"), 4);

    snprintf(path, sizeof path, "/api/v1/schedules/%lld/run", id + 100);
    s_expect(n, "POST", path, NULL, 404, "not_found", NULL);
    s_expect(n, "POST", "/api/v1/schedules/abc/run", NULL, 404, "not_found", NULL);
    s_expect(n, "GET", "/api/v1/schedules/1/run", NULL, 405, "method_not_allowed", NULL);
    assert_int_equal(s_sql_int(n, "SELECT count(*) FROM tasks"), 2);
}

//  Everything a schedule request could change, as one text.
static char *
s_fingerprint(const tn_node_t *node)
{
    return tn_sql(node, "SELECT md5((SELECT coalesce(string_agg(s::text, ',' ORDER BY id), '')"
                        " FROM scheduled_tasks s) || (SELECT count(*) FROM tasks)"
                        " || (SELECT count(*) FROM events) || (SELECT count(*) FROM task_events))");
}

static void
test_schedules_bad_input_changes_nothing(void **state)
{
    tn_node_t *n = (tn_node_t *)*state;
    long long id = s_create(n, "{\"name\":\"keep\",\"interval_s\":60," TASK "}", NULL);
    long long cron = s_create(n, "{\"name\":\"c\",\"cron\":\"0 12 * * *\"," TASK "}", NULL);
    char *before = s_fingerprint(n);
    const char *post = "/api/v1/schedules";
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":5,\"cron\":\"* * * * *\"," TASK "}",
             400, "validation_failed", "cron");
    s_expect(n, "POST", post, "{\"name\":\"x\"," TASK "}", 400, "validation_failed", "interval_s");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":null,\"cron\":null," TASK "}", 400,
             "validation_failed", "interval_s");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":0," TASK "}", 400,
             "validation_failed", "interval_s");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":\"5\"," TASK "}", 400,
             "validation_failed", "interval_s");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":2147483648," TASK "}", 400,
             "validation_failed", "interval_s");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":1.5," TASK "}", 400,
             "validation_failed", "interval_s");
    //  Cron: the reason names what is wrong.
    tn_resp_t r;
    assert_int_equal(
        tn_call(n, &r, "POST", post, "{\"name\":\"x\",\"cron\":\"61 * * * *\"," TASK "}"), 400);
    assert_string_equal(s_field(&r), "cron");
    assert_string_equal(s_reason(&r), "minute: value out of range 0-59");
    tn_resp_free(&r);
    assert_int_equal(
        tn_call(n, &r, "POST", post, "{\"name\":\"x\",\"cron\":\"0 0 30 2 *\"," TASK "}"), 400);
    assert_string_equal(s_field(&r), "cron");
    assert_non_null(strstr(s_reason(&r), "never"));
    tn_resp_free(&r);
    const char *crons[] = {"* * * *", "* * * * * *", "* 24 * * *", "*/0 * * * *", "1-0 * * * *",
                           "@daily",  " * * * * *",  "* * * * 8",  "a b c d e",   "* * * * *\\t"};
    for (size_t i = 0; i < sizeof crons / sizeof crons[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"name\":\"x\",\"cron\":\"%s\"," TASK "}", crons[i]);
        s_expect(n, "POST", post, body, 400, "validation_failed", "cron");
    }
    s_expect(n, "POST", post, "{\"name\":\"x\",\"cron\":\"\"," TASK "}", 400, "validation_failed",
             "cron");
    //  The rest of the body.
    s_expect(n, "POST", post, "{\"interval_s\":5," TASK "}", 400, "validation_failed", "name");
    s_expect(n, "POST", post, "{\"name\":\"\",\"interval_s\":5," TASK "}", 400, "validation_failed",
             "name");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":5}", 400, "validation_failed",
             "task");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":5,\"task\":[]}", 400,
             "validation_failed", "task");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":5,\"enabled\":\"yes\"," TASK "}", 400,
             "validation_failed", "enabled");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":5,\"catch_up\":\"all\"," TASK "}",
             400, "validation_failed", "catch_up");
    s_expect(n, "POST", post, "{\"name\":\"x\",\"interval_s\":5,\"color\":1," TASK "}", 400,
             "validation_failed", "color");
    s_expect(n, "POST", post, "{\"name\":\"x\"", 400, "invalid_json", NULL);
    //  The task template.
    struct {
        const char *task;
        const char *field;
    } tasks[] = {
        {"{\"assignee\":{\"agent\":\"a\"}}", "task.title"},
        {"{\"title\":\"\",\"assignee\":{\"agent\":\"a\"}}", "task.title"},
        {"{\"title\":5,\"assignee\":{\"agent\":\"a\"}}", "task.title"},
        {"{\"title\":\"t\"}", "task.assignee"},
        {"{\"title\":\"t\",\"assignee\":{}}", "task.assignee"},
        {"{\"title\":\"t\",\"assignee\":\"a\"}", "task.assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"Not Ok\"}}", "task.assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\",\"role\":\"r\"}}", "task.assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"team\":0}}", "task.assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"role\":\"\"}}", "task.assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"priority\":10}", "task.priority"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"priority\":\"1\"}", "task.priority"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"description\":1}", "task.description"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"project_id\":999}", "task.project_id"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"project_id\":\"1\"}",
         "task.project_id"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"max_attempts\":2}",
         "task.max_attempts"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"\xc3\xa9t\xc3\xa9\":2}",
         "task.\xc3\xa9t\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"name\":\"x\",\"interval_s\":5,\"task\":%s}", tasks[i].task);
        s_expect(n, "POST", post, body, 400, "validation_failed", tasks[i].field);
    }
    //  Patches.
    char path[96];
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", id);
    s_expect(n, "PATCH", path, "{\"interval_s\":5,\"cron\":\"* * * * *\"}", 400,
             "validation_failed", "cron");
    s_expect(n, "PATCH", path, "{\"interval_s\":null}", 400, "validation_failed", "interval_s");
    s_expect(n, "PATCH", path, "{\"cron\":\"bad\"}", 400, "validation_failed", "cron");
    s_expect(n, "PATCH", path, "{\"cron\":\"0 0 31 4 *\"}", 400, "validation_failed", "cron");
    s_expect(n, "PATCH", path, "{\"task\":{}}", 400, "validation_failed", "task.title");
    s_expect(n, "PATCH", path, "{\"task\":null}", 400, "validation_failed", "task");
    s_expect(n, "PATCH", path, "{\"enabled\":null}", 400, "validation_failed", "enabled");
    s_expect(n, "PATCH", path, "{\"name\":null}", 400, "validation_failed", "name");
    s_expect(n, "PATCH", path, "{\"catch_up\":\"x\"}", 400, "validation_failed", "catch_up");
    s_expect(n, "PATCH", path, "{\"id\":5}", 400, "validation_failed", "id");
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", cron);
    s_expect(n, "PATCH", path, "{\"cron\":null}", 400, "validation_failed", "cron");
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", cron + 100);
    s_expect(n, "PATCH", path, "{\"name\":\"x\"}", 404, "not_found", NULL);
    s_expect(n, "PATCH", "/api/v1/schedules/x", "{\"name\":\"x\"}", 404, "not_found", NULL);
    //  Lists.
    s_expect(n, "GET", "/api/v1/schedules?limit=0", NULL, 400, "validation_failed", "limit");
    s_expect(n, "GET", "/api/v1/schedules?cursor=-1", NULL, 400, "validation_failed", "cursor");
    s_expect(n, "PUT", "/api/v1/schedules", "{}", 405, "method_not_allowed", NULL);
    char *after = s_fingerprint(n);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schedules_crud_and_next_run_at, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_schedules_run_fires_now, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_schedules_bad_input_changes_nothing, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
