/* label: integration */
/*  test_api_tasks: the task routes (API.md "Tasks") over HTTP/2 against a
    real node (cd_testnode) on a real PostgreSQL: every route, every error
    code, Location, history content, batch order and all-or-nothing,
    filters, paging under concurrent inserts, archiving, and that no bad
    input changes a row. */
#include "cd_testnode.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    tn_node_t *node;
    int64_t project; //  a project
    int64_t team;    //  a team
} fx_t;

static int64_t
s_sql_int(const tn_node_t *node, const char *sql)
{
    char *v = tn_sql(node, sql);
    if (!v) {
        fail_msg("no value from: %s", sql);
    }
    int64_t n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

static void
s_sql_exec(const tn_node_t *node, const char *sql)
{
    char *v = tn_sql(node, sql);
    free(v);
}

static int
s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    fx->node = tn_start(NULL);
    if (!fx->node) {
        free(fx);
        return -1;
    }
    s_sql_exec(fx->node, "INSERT INTO agents (name, kind, role) VALUES ('coder', 'echo', 'dev'),"
                         " ('rev', 'echo', NULL) RETURNING 1");
    s_sql_exec(fx->node, "INSERT INTO roles (name) VALUES ('reviewer') RETURNING id");
    fx->team = s_sql_int(fx->node, "WITH y AS (INSERT INTO team_types (name) VALUES ('tt')"
                                   " RETURNING id) INSERT INTO teams (name, team_type_id)"
                                   " SELECT 'crew', id FROM y RETURNING id");
    fx->project = s_sql_int(fx->node, "INSERT INTO projects (name) VALUES ('p') RETURNING id");
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_stop(&fx->node);
    free(fx);
    return 0;
}

static int64_t
s_id(const json_t *obj)
{
    return (int64_t)json_integer_value(json_object_get(obj, "id"));
}

static const char *
s_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

//  details.field of an error answer, or "".
static const char *
s_field(const tn_resp_t *r)
{
    const char *f = s_str(json_object_get(json_object_get(r->json, "error"), "details"), "field");
    return f ? f : "";
}

//  Creates a task from body, asserting 201; returns its id.
static int64_t
s_create(const tn_node_t *node, const char *body)
{
    tn_resp_t r;
    long status = tn_call(node, &r, "POST", "/api/v1/tasks", body);
    if (status != 201) {
        fail_msg("create %s: %ld %s", body, status, r.body ? r.body : "");
    }
    int64_t id = s_id(r.json);
    tn_resp_free(&r);
    return id;
}

//  The rows that bad input must not touch: counts and the newest change.
static char *
s_snapshot(const tn_node_t *node)
{
    return tn_sql(node, "SELECT (SELECT count(*) FROM tasks) || '/' || (SELECT count(*) FROM"
                        " events) || '/' || (SELECT count(*) FROM task_events) || '/' ||"
                        " (SELECT count(*) FROM archived_tasks) || '/' ||"
                        " coalesce((SELECT max(updated_at)::text FROM tasks), '-') || '/' ||"
                        " coalesce((SELECT string_agg(status || priority || title, ',' ORDER BY"
                        " id) FROM tasks), '-')");
}

static void
test_api_tasks_create_and_get(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    tn_resp_t r;
    char body[512];
    snprintf(body, sizeof body,
             "{\"title\":\"Write it\",\"description\":\"d\",\"priority\":7,\"project_id\":%lld,"
             "\"assignee\":{\"agent\":\"coder\"},\"input\":{\"x\":[1,2]},\"max_attempts\":4,"
             "\"timeout_ms\":1000,\"budget\":{\"max_tokens\":100,\"max_cost_usd\":0.5}}",
             (long long)fx->project);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/tasks", body), 201);
    assert_int_equal(r.version, 2);
    int64_t id = s_id(r.json);
    assert_true(id > 0);
    char want[64], loc[128];
    snprintf(want, sizeof want, "/api/v1/tasks/%lld", (long long)id);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), want);
    assert_string_equal(s_str(r.json, "status"), "todo");
    assert_string_equal(s_str(r.json, "title"), "Write it");
    assert_int_equal(json_integer_value(json_object_get(r.json, "priority")), 7);
    assert_int_equal(json_integer_value(json_object_get(r.json, "project_id")), fx->project);
    assert_string_equal(s_str(json_object_get(r.json, "assignee"), "agent"), "coder");
    assert_int_equal(json_integer_value(
                         json_array_get(json_object_get(json_object_get(r.json, "input"), "x"), 1)),
                     2);
    assert_int_equal(json_integer_value(json_object_get(r.json, "max_attempts")), 4);
    assert_int_equal(json_integer_value(json_object_get(r.json, "timeout_ms")), 1000);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r.json, "budget"), "max_tokens")), 100);
    assert_int_equal(json_integer_value(json_object_get(r.json, "attempts")), 0);
    assert_true(json_is_object(json_object_get(r.json, "usage")));
    assert_true(json_is_null(json_object_get(r.json, "output")));
    assert_non_null(s_str(r.json, "created_at"));
    char *created = strdup(r.body);
    tn_resp_free(&r);

    //  Committed before the 201, with its event and history row.
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tasks WHERE id = %lld AND status = 'todo'",
             (long long)id);
    assert_int_equal(s_sql_int(node, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM events WHERE type = 'task.created' AND task_id = %lld"
             " AND agent = 'coder' AND project_id = %lld",
             (long long)id, (long long)fx->project);
    assert_int_equal(s_sql_int(node, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM task_events WHERE task_id = %lld AND kind = 'created'"
             " AND seq = 1 AND status = 'todo'",
             (long long)id);
    assert_int_equal(s_sql_int(node, sql), 1);

    //  GET gives the same object.
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_string_equal(r.body, created);
    tn_resp_free(&r);
    free(created);

    //  Defaults; role and team assignees; a title of 500 two-byte
    //  characters (1000 bytes) is 500 characters.
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/tasks",
                             "{\"title\":\"t\",\"assignee\":{\"role\":\"dev\"}}"),
                     201);
    assert_int_equal(json_integer_value(json_object_get(r.json, "priority")), 5);
    assert_int_equal(json_integer_value(json_object_get(r.json, "max_attempts")), 3);
    assert_int_equal(json_integer_value(json_object_get(r.json, "timeout_ms")), 300000);
    assert_string_equal(s_str(r.json, "description"), "");
    assert_true(json_is_null(json_object_get(r.json, "project_id")));
    assert_true(json_is_null(json_object_get(r.json, "input")));
    assert_true(json_is_null(json_object_get(r.json, "budget")));
    tn_resp_free(&r);
    s_create(node, "{\"title\":\"t\",\"assignee\":{\"role\":\"reviewer\"},\"priority\":null}");
    snprintf(body, sizeof body, "{\"title\":\"t\",\"assignee\":{\"team\":%lld}}",
             (long long)fx->team);
    s_create(node, body);
    char *title = calloc(1, 1100);
    strcat(title, "{\"title\":\"");
    for (int i = 0; i < 500; i++) {
        strcat(title, "\xc3\xa9");
    }
    strcat(title, "\",\"assignee\":{\"agent\":\"rev\"}}");
    s_create(node, title);
    free(title);

    //  Unknown and malformed ids are 404.
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/tasks/999999", NULL), 404);
    assert_string_equal(tn_error_code(&r), "not_found");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/tasks/abc", NULL), 404);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/tasks/-1", NULL), 404);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/tasks/99999999999999999999999", NULL), 404);
    tn_resp_free(&r);
    //  The batch path is no task either.
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/tasks/batch", NULL), 404);
    tn_resp_free(&r);
}

static void
test_api_tasks_create_errors_change_nothing(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    s_create(node, "{\"title\":\"keep\",\"assignee\":{\"agent\":\"coder\"}}");
    char *before = s_snapshot(node);
    char long_title[600] = "{\"title\":\"";
    for (int i = 0; i < 501; i++) {
        strcat(long_title, "x");
    }
    strcat(long_title, "\",\"assignee\":{\"agent\":\"coder\"}}");
    char *long_desc = calloc(1, 100200);
    strcat(long_desc, "{\"title\":\"t\",\"assignee\":{\"agent\":\"coder\"},\"description\":\"");
    memset(long_desc + strlen(long_desc), 'd', 100001);
    strcat(long_desc, "\"}");
#define A "\"assignee\":{\"agent\":\"coder\"}"
    struct {
        const char *body;
        const char *code;
        const char *field;
    } cases[] = {
        {"{not json", "invalid_json", NULL},
        {"[1,2]", NULL, NULL},
        {"{}", "validation_failed", "title"},
        {"{\"title\":\"t\"}", "validation_failed", "assignee"},
        {"{\"title\":\"\"," A "}", "validation_failed", "title"},
        {long_title, "validation_failed", "title"},
        {long_desc, "validation_failed", "description"},
        {"{\"title\":null," A "}", "validation_failed", "title"},
        {"{\"title\":12," A "}", "validation_failed", "title"},
        {"{\"title\":\"t\",\"color\":\"red\"," A "}", "validation_failed", "color"},
        {"{\"title\":\"t\",\"priority\":10," A "}", "validation_failed", "priority"},
        {"{\"title\":\"t\",\"priority\":-1," A "}", "validation_failed", "priority"},
        {"{\"title\":\"t\",\"priority\":\"high\"," A "}", "validation_failed", "priority"},
        {"{\"title\":\"t\",\"priority\":5.5," A "}", "validation_failed", "priority"},
        {"{\"title\":\"t\",\"project_id\":0," A "}", "validation_failed", "project_id"},
        {"{\"title\":\"t\",\"project_id\":\"1\"," A "}", "validation_failed", "project_id"},
        {"{\"title\":\"t\",\"project_id\":987654," A "}", "validation_failed", "project_id"},
        {"{\"title\":\"t\",\"assignee\":\"coder\"}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":null}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"coder\",\"role\":\"dev\"}}",
         "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"Bad Name\"}}", "validation_failed",
         "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":5}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"role\":\"\"}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"team\":\"crew\"}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"team\":0}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"robot\":\"x\"}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"ghost\"}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"role\":\"ghost\"}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"assignee\":{\"team\":987654}}", "validation_failed", "assignee"},
        {"{\"title\":\"t\",\"max_attempts\":0," A "}", "validation_failed", "max_attempts"},
        {"{\"title\":\"t\",\"max_attempts\":101," A "}", "validation_failed", "max_attempts"},
        {"{\"title\":\"t\",\"timeout_ms\":0," A "}", "validation_failed", "timeout_ms"},
        {"{\"title\":\"t\",\"timeout_ms\":604800001," A "}", "validation_failed", "timeout_ms"},
        {"{\"title\":\"t\",\"budget\":5," A "}", "validation_failed", "budget"},
        {"{\"title\":\"t\",\"budget\":{\"max_tokens\":0}," A "}", "validation_failed", "budget"},
        {"{\"title\":\"t\",\"budget\":{\"max_cost_usd\":-1}," A "}", "validation_failed", "budget"},
        {"{\"title\":\"t\",\"budget\":{\"tokens\":5}," A "}", "validation_failed", "budget"},
        {"{\"title\":\"t\",\"description\":7," A "}", "validation_failed", "description"},
    };
#undef A
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tn_resp_t r;
        long status = tn_call(node, &r, "POST", "/api/v1/tasks", cases[i].body);
        if (status != 400 || (cases[i].code && strcmp(tn_error_code(&r), cases[i].code) != 0) ||
            (cases[i].field && strcmp(s_field(&r), cases[i].field) != 0)) {
            fail_msg("case %zu (%.80s): %ld %s", i, cases[i].body, status, r.body ? r.body : "");
        }
        tn_resp_free(&r);
    }
    free(long_desc);
    //  Not JSON at all.
    static const char *const text[] = {"Content-Type: text/plain", NULL};
    tn_resp_t r;
    assert_int_equal(tn_request(node, "POST", "/api/v1/tasks", "title", text, &r), 415);
    tn_resp_free(&r);
    char *after = s_snapshot(node);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void
test_api_tasks_batch(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/tasks/batch",
                             "{\"tasks\":[{\"title\":\"one\",\"assignee\":{\"agent\":\"coder\"}},"
                             "{\"title\":\"two\",\"priority\":9,\"assignee\":{\"role\":\"dev\"}},"
                             "{\"title\":\"three\",\"assignee\":{\"agent\":\"rev\"}}]}"),
                     201);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 3);
    const char *titles[] = {"one", "two", "three"};
    int64_t prev = 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *t = json_array_get(items, i);
        assert_string_equal(s_str(t, "title"), titles[i]);
        assert_string_equal(s_str(t, "status"), "todo");
        assert_true(s_id(t) > prev);
        prev = s_id(t);
    }
    tn_resp_free(&r);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM events WHERE type = 'task.created'"), 3);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM task_events WHERE kind = 'created'"), 3);

    char *before = s_snapshot(node);
    struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"{}", "tasks"},
        {"{\"tasks\":[]}", "tasks"},
        {"{\"tasks\":{}}", "tasks"},
        {"{\"tasks\":[{\"title\":\"a\",\"assignee\":{\"agent\":\"coder\"}},7]}", "tasks[1]"},
        {"{\"tasks\":[{\"title\":\"a\",\"assignee\":{\"agent\":\"coder\"}},"
         "{\"title\":\"b\",\"assignee\":{\"agent\":\"coder\"}},"
         "{\"title\":\"c\",\"priority\":11,\"assignee\":{\"agent\":\"coder\"}}]}",
         "tasks[2].priority"},
        {"{\"tasks\":[{\"title\":\"a\",\"assignee\":{\"agent\":\"coder\"}},{\"title\":\"b\"}]}",
         "tasks[1].assignee"},
        {"{\"tasks\":[{\"title\":\"a\",\"assignee\":{\"agent\":\"coder\"}},"
         "{\"title\":\"b\",\"what\":1,\"assignee\":{\"agent\":\"coder\"}}]}",
         "tasks[1].what"},
        //  Refused by the write statement: nothing of the batch is written.
        {"{\"tasks\":[{\"title\":\"a\",\"assignee\":{\"agent\":\"coder\"}},"
         "{\"title\":\"b\",\"assignee\":{\"agent\":\"ghost\"}}]}",
         "tasks[1].assignee"},
        {"{\"tasks\":[{\"title\":\"a\",\"project_id\":987654,\"assignee\":{\"agent\":\"coder\"}}]}",
         "tasks[0].project_id"},
        {"{\"tasks\":[],\"more\":1}", "more"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long status = tn_call(node, &r, "POST", "/api/v1/tasks/batch", cases[i].body);
        if (status != 400 || strcmp(s_field(&r), cases[i].field) != 0) {
            fail_msg("case %zu: %ld %s", i, status, r.body ? r.body : "");
        }
        tn_resp_free(&r);
    }
    //  1001 is too many; 1000 is fine.
    size_t cap = 1001 * 64 + 32;
    char *big = calloc(1, cap);
    strcat(big, "{\"tasks\":[");
    for (int i = 0; i < 1001; i++) {
        char one[64];
        snprintf(one, sizeof one, "%s{\"title\":\"b%d\",\"assignee\":{\"agent\":\"rev\"}}",
                 i ? "," : "", i);
        strcat(big, one);
    }
    strcat(big, "]}");
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/tasks/batch", big), 400);
    assert_string_equal(s_field(&r), "tasks");
    tn_resp_free(&r);
    char *after = s_snapshot(node);
    assert_string_equal(before, after);
    free(before);
    free(after);

    //  Drop the last element.
    char *last = NULL;
    for (char *at = strstr(big, ",{"); at; at = strstr(at + 1, ",{")) {
        last = at;
    }
    assert_non_null(last);
    strcpy(last, "]}");
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/tasks/batch", big), 201);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1000);
    for (size_t i = 0; i < 1000; i++) {
        char want[16];
        snprintf(want, sizeof want, "b%zu", i);
        assert_string_equal(s_str(json_array_get(items, i), "title"), want);
    }
    tn_resp_free(&r);
    free(big);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM tasks"), 1003);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM task_events"), 1003);
}

//  The ids of a list answer's items, appended to ids; returns how many.
static size_t
s_ids(const tn_resp_t *r, int64_t *ids, size_t max)
{
    json_t *items = json_object_get(r->json, "items");
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(items) && n < max; i++) {
        ids[n++] = s_id(json_array_get(items, i));
    }
    return n;
}

//  GET path, asserting 200, and the ids it lists.
static size_t
s_list(const tn_node_t *node, const char *path, int64_t *ids, size_t max)
{
    tn_resp_t r;
    long status = tn_call(node, &r, "GET", path, NULL);
    if (status != 200) {
        fail_msg("GET %s: %ld %s", path, status, r.body ? r.body : "");
    }
    size_t n = s_ids(&r, ids, max);
    tn_resp_free(&r);
    return n;
}

static void
test_api_tasks_list_filters(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    char body[256];
    snprintf(
        body, sizeof body,
        "{\"title\":\"a\",\"priority\":8,\"project_id\":%lld,\"assignee\":{\"agent\":\"coder\"}}",
        (long long)fx->project);
    int64_t a = s_create(node, body);
    int64_t b =
        s_create(node, "{\"title\":\"b\",\"priority\":2,\"assignee\":{\"agent\":\"coder\"}}");
    int64_t c = s_create(node, "{\"title\":\"c\",\"priority\":9,\"assignee\":{\"role\":\"dev\"}}");
    int64_t d = s_create(node, "{\"title\":\"d\",\"priority\":5,\"assignee\":{\"agent\":\"rev\"}}");
    //  c was claimed by rev; d is old.
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET status = 'in_progress', agent = 'rev', lease_owner = 'n',"
             " lease_expires_at = now() + interval '1 h' WHERE id = %lld RETURNING id",
             (long long)c);
    s_sql_exec(node, sql);
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET created_at = '2020-01-01T00:00:00Z' WHERE id = %lld RETURNING id",
             (long long)d);
    s_sql_exec(node, sql);

    int64_t ids[16];
    assert_int_equal(s_list(node, "/api/v1/tasks", ids, 16), 4);
    assert_true(ids[0] == d && ids[1] == c && ids[2] == b && ids[3] == a); //  newest first
    assert_int_equal(s_list(node, "/api/v1/tasks?status=todo", ids, 16), 3);
    assert_int_equal(s_list(node, "/api/v1/tasks?status=in_progress", ids, 16), 1);
    assert_int_equal(ids[0], c);
    assert_int_equal(s_list(node, "/api/v1/tasks?status=done", ids, 16), 0);
    char path[160];
    snprintf(path, sizeof path, "/api/v1/tasks?project_id=%lld", (long long)fx->project);
    assert_int_equal(s_list(node, path, ids, 16), 1);
    assert_int_equal(ids[0], a);
    assert_int_equal(s_list(node, "/api/v1/tasks?agent=coder", ids, 16), 2);
    //  agent: assigned to, or holding it.
    assert_int_equal(s_list(node, "/api/v1/tasks?agent=rev", ids, 16), 2);
    assert_int_equal(s_list(node, "/api/v1/tasks?agent=nobody", ids, 16), 0);
    assert_int_equal(s_list(node, "/api/v1/tasks?priority_min=8", ids, 16), 2);
    assert_int_equal(s_list(node, "/api/v1/tasks?since=2021-01-01T00:00:00Z", ids, 16), 3);
    assert_int_equal(s_list(node, "/api/v1/tasks?since=2019-06-01T00:00:00.5%2B02:00", ids, 16), 4);
    //  AND.
    assert_int_equal(s_list(node, "/api/v1/tasks?agent=coder&priority_min=5", ids, 16), 1);
    assert_int_equal(ids[0], a);
    assert_int_equal(s_list(node, "/api/v1/tasks?agent=rev&status=todo", ids, 16), 1);
    assert_int_equal(ids[0], d);
    assert_int_equal(
        s_list(node, "/api/v1/tasks?agent=rev&status=todo&since=2021-01-01T00:00:00Z", ids, 16), 0);
    assert_int_equal(s_list(node, "/api/v1/tasks?status=todo&priority_min=3&limit=1", ids, 16), 1);
    assert_int_equal(ids[0], d);

    struct {
        const char *query;
        const char *field;
    } bad[] = {
        {"status=sleeping", "status"},
        {"project_id=x", "project_id"},
        {"project_id=0", "project_id"},
        {"priority_min=10", "priority_min"},
        {"priority_min=-1", "priority_min"},
        {"since=yesterday", "since"},
        {"since=2026-13-45T00:00:00Z", "since"},
        {"agent=Not%20A%20Name", "agent"},
        {"limit=0", "limit"},
        {"limit=1001", "limit"},
        {"cursor=zz", "cursor"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tn_resp_t r;
        snprintf(path, sizeof path, "/api/v1/tasks?%s", bad[i].query);
        long status = tn_call(node, &r, "GET", path, NULL);
        if (status != 400 || strcmp(tn_error_code(&r), "validation_failed") != 0 ||
            strcmp(s_field(&r), bad[i].field) != 0) {
            fail_msg("%s: %ld %s", path, status, r.body ? r.body : "");
        }
        tn_resp_free(&r);
    }
}

typedef struct {
    const tn_node_t *node;
    volatile int stop; //  set by the pager when it is done
    int created;       //  tasks created
    int failed;        //  creates that were not 201
} inserter_t;

static void *
s_inserter(void *arg)
{
    inserter_t *in = (inserter_t *)arg;
    while (!in->stop && in->created < 400) {
        tn_resp_t r;
        long status = tn_call(in->node, &r, "POST", "/api/v1/tasks",
                              "{\"title\":\"new\",\"assignee\":{\"agent\":\"coder\"}}");
        tn_resp_free(&r);
        if (status == 201) {
            in->created++;
        } else {
            in->failed++;
        }
    }
    return NULL;
}

static void
test_api_tasks_pagination_under_inserts(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    enum { N = 150 };
    size_t cap = N * 64 + 32;
    char *big = calloc(1, cap);
    strcat(big, "{\"tasks\":[");
    for (int i = 0; i < N; i++) {
        strcat(big, i ? ",{\"title\":\"old\",\"assignee\":{\"agent\":\"coder\"}}"
                      : "{\"title\":\"old\",\"assignee\":{\"agent\":\"coder\"}}");
    }
    strcat(big, "]}");
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/tasks/batch", big), 201);
    tn_resp_free(&r);
    free(big);
    int64_t max_old = s_sql_int(node, "SELECT max(id) FROM tasks");
    int64_t min_old = s_sql_int(node, "SELECT min(id) FROM tasks");

    inserter_t in = {node, 0, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_inserter, &in), 0);
    static int64_t seen[N * 4];
    size_t nseen = 0;
    char path[160] = "/api/v1/tasks?limit=7";
    int pages = 0;
    while (true) {
        assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
        size_t n = s_ids(&r, seen + nseen, N * 4 - nseen);
        assert_true(n <= 7);
        nseen += n;
        pages++;
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!next) {
            tn_resp_free(&r);
            break;
        }
        snprintf(path, sizeof path, "/api/v1/tasks?limit=7&cursor=%s", next);
        tn_resp_free(&r);
    }
    in.stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(in.failed, 0);
    assert_true(in.created > 0); //  the inserts did overlap the paging
    //  Strictly descending (no duplicate), every old row exactly once.
    int old = 0;
    for (size_t i = 0; i < nseen; i++) {
        if (i > 0) {
            assert_true(seen[i] < seen[i - 1]);
        }
        old += seen[i] >= min_old && seen[i] <= max_old;
    }
    assert_int_equal(old, N);
    assert_true(pages >= N / 7);
}

//  The kinds of a task's history, comma-separated, after checking seq runs
//  1, 2, 3 ... and every entry has the documented members.
static char *
s_history_kinds(const tn_node_t *node, int64_t id)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/history", (long long)id);
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    json_t *items = json_object_get(r.json, "items");
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    char *kinds = calloc(1, 512);
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *h = json_array_get(items, i);
        assert_int_equal(json_integer_value(json_object_get(h, "seq")), (json_int_t)i + 1);
        static const char *const members[] = {"seq", "ts",     "kind",   "from",
                                              "to",  "status", "payload"};
        for (size_t m = 0; m < sizeof members / sizeof members[0]; m++) {
            assert_non_null(json_object_get(h, members[m]));
        }
        strcat(kinds, i ? "," : "");
        strcat(kinds, s_str(h, "kind"));
    }
    tn_resp_free(&r);
    return kinds;
}

static void
test_api_tasks_patch_cancel_retry(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    int64_t id = s_create(node, "{\"title\":\"t\",\"description\":\"d\",\"assignee\":{\"agent\":"
                                "\"coder\"}}");
    char path[64], cancel[96], retry[96];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld", (long long)id);
    snprintf(cancel, sizeof cancel, "%s/cancel", path);
    snprintf(retry, sizeof retry, "%s/retry", path);
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"title\":\"t2\",\"priority\":8}"), 200);
    assert_string_equal(s_str(r.json, "title"), "t2");
    assert_string_equal(s_str(r.json, "description"), "d");
    assert_int_equal(json_integer_value(json_object_get(r.json, "priority")), 8);
    tn_resp_free(&r);

    //  Bad patches change nothing.
    char *before = s_snapshot(node);
    struct {
        const char *body;
        const char *field;
    } bad[] = {
        {"{\"priority\":10}", "priority"},      {"{\"priority\":null}", "priority"},
        {"{\"title\":\"\"}", "title"},          {"{\"title\":null}", "title"},
        {"{\"status\":\"done\"}", "status"},    {"{\"assignee\":{\"agent\":\"rev\"}}", "assignee"},
        {"{\"description\":5}", "description"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long status = tn_call(node, &r, "PATCH", path, bad[i].body);
        if (status != 400 || strcmp(s_field(&r), bad[i].field) != 0) {
            fail_msg("PATCH %s: %ld %s", bad[i].body, status, r.body ? r.body : "");
        }
        tn_resp_free(&r);
    }
    //  A task that is not finished cannot be retried.
    assert_int_equal(tn_call(node, &r, "POST", retry, NULL), 409);
    assert_string_equal(tn_error_code(&r), "conflict");
    tn_resp_free(&r);
    char *after = s_snapshot(node);
    assert_string_equal(before, after);
    free(before);
    free(after);

    //  Cancel: 200, the event names the holder, history.
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET status = 'in_progress', agent = 'coder', lease_owner = 'n',"
             " lease_expires_at = now() + interval '1 h' WHERE id = %lld RETURNING id",
             (long long)id);
    s_sql_exec(node, sql);
    assert_int_equal(tn_call(node, &r, "POST", cancel, NULL), 200);
    assert_string_equal(s_str(r.json, "status"), "cancelled");
    assert_non_null(s_str(r.json, "finished_at"));
    assert_true(json_is_null(json_object_get(r.json, "lease_owner")));
    tn_resp_free(&r);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM events WHERE type = 'task.cancelled' AND task_id = %lld"
             " AND agent = 'coder'",
             (long long)id);
    assert_int_equal(s_sql_int(node, sql), 1);

    //  Finished: cancel and patch are 409 and change nothing.
    before = s_snapshot(node);
    assert_int_equal(tn_call(node, &r, "POST", cancel, NULL), 409);
    assert_string_equal(tn_error_code(&r), "conflict");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"title\":\"t3\"}"), 409);
    assert_string_equal(tn_error_code(&r), "conflict");
    tn_resp_free(&r);
    after = s_snapshot(node);
    assert_string_equal(before, after);
    free(before);
    free(after);

    //  Retry from cancelled, then from failed; not from done.
    assert_int_equal(tn_call(node, &r, "POST", retry, NULL), 200);
    assert_string_equal(s_str(r.json, "status"), "todo");
    assert_true(json_is_null(json_object_get(r.json, "finished_at")));
    tn_resp_free(&r);
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET status = 'failed', finished_at = now(), attempts = 3,"
             " error = '{\"code\":\"x\"}' WHERE id = %lld RETURNING id",
             (long long)id);
    s_sql_exec(node, sql);
    assert_int_equal(tn_call(node, &r, "POST", retry, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "attempts")), 0);
    assert_true(json_is_null(json_object_get(r.json, "error")));
    tn_resp_free(&r);
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET status = 'done', finished_at = now() WHERE id = %lld RETURNING id",
             (long long)id);
    s_sql_exec(node, sql);
    before = s_snapshot(node);
    assert_int_equal(tn_call(node, &r, "POST", retry, NULL), 409);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", cancel, NULL), 409);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"priority\":1}"), 409);
    tn_resp_free(&r);
    after = s_snapshot(node);
    assert_string_equal(before, after);
    free(before);
    free(after);

    char *kinds = s_history_kinds(node, id);
    assert_string_equal(kinds, "created,cancelled,retry,retry");
    free(kinds);
    snprintf(sql, sizeof sql, "/api/v1/tasks/%lld/history?limit=1", (long long)id);
    assert_int_equal(tn_call(node, &r, "GET", sql, NULL), 200);
    json_t *h = json_array_get(json_object_get(r.json, "items"), 0);
    assert_string_equal(s_str(h, "kind"), "created");
    assert_string_equal(s_str(h, "to"), "coder");
    assert_string_equal(s_str(h, "status"), "todo");
    assert_string_equal(s_str(json_object_get(json_object_get(h, "payload"), "assignee"), "agent"),
                        "coder");
    assert_string_equal(json_string_value(json_object_get(r.json, "next_cursor")), "1");
    tn_resp_free(&r);

    //  Unknown and malformed ids.
    static const char *const unknown[] = {"/api/v1/tasks/999999", "/api/v1/tasks/x"};
    for (size_t i = 0; i < 2; i++) {
        char p[96];
        assert_int_equal(tn_call(node, &r, "PATCH", unknown[i], "{\"title\":\"x\"}"), 404);
        tn_resp_free(&r);
        snprintf(p, sizeof p, "%s/cancel", unknown[i]);
        assert_int_equal(tn_call(node, &r, "POST", p, NULL), 404);
        assert_string_equal(tn_error_code(&r), "not_found");
        tn_resp_free(&r);
        snprintf(p, sizeof p, "%s/retry", unknown[i]);
        assert_int_equal(tn_call(node, &r, "POST", p, NULL), 404);
        tn_resp_free(&r);
        snprintf(p, sizeof p, "%s/history", unknown[i]);
        assert_int_equal(tn_call(node, &r, "GET", p, NULL), 404);
        tn_resp_free(&r);
    }
    assert_int_equal(tn_call(node, &r, "PUT", path, "{}"), 405);
    assert_string_equal(tn_error_code(&r), "method_not_allowed");
    tn_resp_free(&r);
}

static void
test_api_tasks_archive(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"p\",\"project_id\":%lld,\"assignee\":{\"agent\":\"coder\"}}",
             (long long)fx->project);
    int64_t a = s_create(node, body);
    int64_t b = s_create(node, "{\"title\":\"q\",\"assignee\":{\"agent\":\"coder\"}}");
    int64_t c = s_create(node, "{\"title\":\"r\",\"assignee\":{\"agent\":\"coder\"}}");
    tn_resp_t r;
    char path[96];
    int64_t order[] = {a, b, c};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/api/v1/tasks/%lld", (long long)order[i]);
        assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 204);
        assert_int_equal(r.body_len, 0);
        tn_resp_free(&r);
    }
    snprintf(path, sizeof path, "/api/v1/tasks/%lld", (long long)a);
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 404);
    tn_resp_free(&r);
    char *before = s_snapshot(node);
    assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 404);
    assert_string_equal(tn_error_code(&r), "not_found");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "DELETE", "/api/v1/tasks/zz", NULL), 404);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/tasks/999999/cancel", NULL), 404);
    tn_resp_free(&r);
    char *after = s_snapshot(node);
    assert_string_equal(before, after);
    free(before);
    free(after);

    //  The archived task, and its history still readable.
    snprintf(path, sizeof path, "/api/v1/archived-tasks/%lld", (long long)a);
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_int_equal(s_id(r.json), a);
    assert_string_equal(s_str(r.json, "title"), "p");
    assert_non_null(s_str(r.json, "archived_at"));
    assert_int_equal(json_integer_value(json_object_get(r.json, "project_id")), fx->project);
    tn_resp_free(&r);
    char *kinds = s_history_kinds(node, a);
    assert_string_equal(kinds, "created");
    free(kinds);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/archived-tasks/999999", NULL), 404);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/archived-tasks/abc", NULL), 404);
    tn_resp_free(&r);

    //  The list: newest first, paged, filtered.
    int64_t ids[8];
    assert_int_equal(s_list(node, "/api/v1/archived-tasks", ids, 8), 3);
    assert_true(ids[0] == c && ids[1] == b && ids[2] == a);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/archived-tasks?limit=2", NULL), 200);
    const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
    assert_non_null(next);
    char p2[128];
    snprintf(p2, sizeof p2, "/api/v1/archived-tasks?limit=2&cursor=%s", next);
    tn_resp_free(&r);
    assert_int_equal(s_list(node, p2, ids, 8), 1);
    assert_int_equal(ids[0], a);
    snprintf(p2, sizeof p2, "/api/v1/archived-tasks?project_id=%lld", (long long)fx->project);
    assert_int_equal(s_list(node, p2, ids, 8), 1);
    assert_int_equal(ids[0], a);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/archived-tasks?project_id=x", NULL), 400);
    assert_string_equal(s_field(&r), "project_id");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/archived-tasks?cursor=-", NULL), 400);
    assert_string_equal(s_field(&r), "cursor");
    tn_resp_free(&r);
    assert_int_equal(s_list(node, "/api/v1/tasks", ids, 8), 0);
}

static void
test_api_tasks_idempotency_key(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    static const char *const key[] = {"Idempotency-Key: task-1", NULL};
    static const char body[] = "{\"title\":\"once\",\"assignee\":{\"agent\":\"coder\"}}";
    tn_resp_t a, b, c;
    assert_int_equal(tn_request(node, "POST", "/api/v1/tasks", body, key, &a), 201);
    assert_int_equal(tn_request(node, "POST", "/api/v1/tasks", body, key, &b), 201);
    assert_string_equal(a.body, b.body);
    assert_int_equal(tn_request(node, "POST", "/api/v1/tasks",
                                "{\"title\":\"twice\",\"assignee\":{\"agent\":\"coder\"}}", key,
                                &c),
                     409);
    tn_resp_free(&a);
    tn_resp_free(&b);
    tn_resp_free(&c);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM tasks"), 1);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM events"), 1);
}

typedef struct {
    const tn_node_t *node;
    int thread;      //  its number
    int n;           //  creates to send
    int created;     //  201s with the right task
    int refused;     //  400s where one was due
    int wrong;       //  anything else
    int64_t ids[64]; //  ids of the created tasks
} creator_t;

//  Sends n creates; every 5th of thread 0 names an agent that does not
//  exist, every 5th of thread 1 a title the test's trigger refuses.
static void *
s_creator(void *arg)
{
    creator_t *c = (creator_t *)arg;
    for (int i = 0; i < c->n; i++) {
        bool ghost = c->thread == 0 && i % 5 == 0;
        bool boom = c->thread == 1 && i % 5 == 0;
        char title[32], body[160];
        snprintf(title, sizeof title, "%s%d-%d", boom ? "boom" : "t", c->thread, i);
        snprintf(body, sizeof body, "{\"title\":\"%s\",\"assignee\":{\"agent\":\"%s\"}}", title,
                 ghost ? "ghost" : "coder");
        tn_resp_t r;
        long status = tn_call(c->node, &r, "POST", "/api/v1/tasks", body);
        if (ghost || boom) {
            bool ok = status == 400 && strcmp(tn_error_code(&r), "validation_failed") == 0 &&
                      (!ghost || strcmp(s_field(&r), "assignee") == 0);
            c->refused += ok;
            c->wrong += !ok;
        } else {
            char loc[64], want[64];
            snprintf(want, sizeof want, "/api/v1/tasks/%lld", (long long)s_id(r.json));
            bool ok = status == 201 && r.json && strcmp(s_str(r.json, "title"), title) == 0 &&
                      tn_header(&r, "location", loc, sizeof loc) && strcmp(loc, want) == 0;
            if (ok && c->created < 64) {
                c->ids[c->created] = s_id(r.json);
            }
            c->created += ok;
            c->wrong += !ok;
            if (!ok) {
                fprintf(stderr, "create %s: %ld %s\n", title, status, r.body ? r.body : "");
            }
        }
        tn_resp_free(&r);
    }
    return NULL;
}

//  Concurrent creates are merged into shared writes, and each caller still
//  gets its own answer: its task, or its own refusal (an unknown agent,
//  answered by the merged statement; a body the database refuses, which
//  sends the merge again one request per write).
static void
test_api_tasks_concurrent_creates(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *node = fx->node;
    s_sql_exec(node, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                     " IF NEW.title LIKE 'boom%' THEN RAISE check_violation USING MESSAGE = 'boom';"
                     " END IF; RETURN NEW; END $$");
    s_sql_exec(node, "CREATE TRIGGER boom BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION"
                     " boom()");
    int64_t writes_before = s_sql_int(node, "SELECT count(*) FROM persist_requests");
    enum { THREADS = 16, EACH = 25 };
    static creator_t creators[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        creators[i] = (creator_t){.node = node, .thread = i, .n = EACH};
        assert_int_equal(pthread_create(&th[i], NULL, s_creator, &creators[i]), 0);
    }
    int created = 0, refused = 0, wrong = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        created += creators[i].created;
        refused += creators[i].refused;
        wrong += creators[i].wrong;
    }
    assert_int_equal(wrong, 0);
    assert_int_equal(refused, 2 * EACH / 5);
    assert_int_equal(created, THREADS * EACH - 2 * EACH / 5);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM tasks"), created);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM task_events WHERE kind = 'created'"),
                     created);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM events WHERE type = 'task.created'"),
                     created);
    //  Each thread's tasks were created in its order.
    for (int i = 0; i < THREADS; i++) {
        for (int k = 1; k < creators[i].created && k < 64; k++) {
            assert_true(creators[i].ids[k] > creators[i].ids[k - 1]);
        }
    }
    //  Fewer writes than creates: they were merged.
    int64_t writes = s_sql_int(node, "SELECT count(*) FROM persist_requests") - writes_before;
    print_message("%d creates in %lld writes\n", THREADS * EACH, (long long)writes);
    assert_true(writes < THREADS * EACH);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_api_tasks_create_and_get, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_create_errors_change_nothing, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_list_filters, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_pagination_under_inserts, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_patch_cancel_retry, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_archive, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_idempotency_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_api_tasks_concurrent_creates, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
