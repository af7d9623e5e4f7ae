/* label: integration */
/*  test_api_projects: projects, their status and artifacts over HTTP/2
    against a real node (cd_testnode) on a real PostgreSQL: every route,
    every error it answers, pagination, Location headers, raw content
    round trips, the artifact.created event, and that no bad input changes
    a row. */
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

static int64_t
s_id(const tn_resp_t *r)
{
    return (int64_t)json_integer_value(json_object_get(r->json, "id"));
}

static const char *
s_str(const tn_resp_t *r, const char *key)
{
    return json_string_value(json_object_get(r->json, key));
}

//  Every row of the tables these routes touch, as one text (artifact
//  content by its hash). Caller frees.
static char *
s_state(const tn_node_t *node)
{
    char *state = tn_sql(
        node, "SELECT concat_ws('|',"
              " (SELECT json_agg(x ORDER BY x.id) FROM projects x),"
              " (SELECT json_agg(json_build_object('id', x.id, 'p', x.project_id, 't', x.task_id,"
              "  'n', x.name, 'ct', x.content_type, 'md5', md5(x.content), 'at', x.created_at)"
              "  ORDER BY x.id) FROM artifacts x),"
              " (SELECT json_agg(x ORDER BY x.id) FROM tasks x),"
              " (SELECT json_agg(x ORDER BY x.id) FROM events x), 'end')");
    assert_non_null(state);
    return state;
}

static const char *
s_error_field(const tn_resp_t *r)
{
    const char *f = json_string_value(
        json_object_get(json_object_get(json_object_get(r->json, "error"), "details"), "field"));
    return f ? f : "";
}

//  A request that must fail with status and code (and name field, if not
//  NULL) and change no row.
static void
s_bad(const tn_node_t *node, const char *method, const char *path, const char *body, long status,
      const char *code, const char *field)
{
    char *before = s_state(node);
    tn_resp_t r;
    long got = tn_call(node, &r, method, path, body);
    if (got != status || strcmp(tn_error_code(&r), code) != 0 ||
        (field && strcmp(s_error_field(&r), field) != 0)) {
        fail_msg("%s %s %.200s: want %ld %s %s, got %ld %.300s", method, path, body ? body : "",
                 status, code, field ? field : "", got, r.body);
    }
    tn_resp_free(&r);
    char *after = s_state(node);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

//  POSTs body to path, expects 201 with Location location_prefix/<id>;
//  returns the id.
static int64_t
s_create_at(const tn_node_t *node, const char *path, const char *body, const char *location_prefix)
{
    tn_resp_t r;
    long status = tn_call(node, &r, "POST", path, body);
    if (status != 201) {
        fail_msg("POST %s %.200s: %ld %.300s", path, body, status, r.body);
    }
    int64_t id = s_id(&r);
    assert_true(id > 0);
    char loc[160], want[160];
    snprintf(want, sizeof want, "%s/%lld", location_prefix, (long long)id);
    assert_non_null(tn_header(&r, "location", loc, sizeof loc));
    assert_string_equal(loc, want);
    tn_resp_free(&r);
    return id;
}

static int64_t
s_project(const tn_node_t *node, const char *name)
{
    char body[128];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    return s_create_at(node, "/api/v1/projects", body, "/api/v1/projects");
}

//  A task row of project with this status (and agent, if not NULL);
//  tasks come from the tasks family, here they are plain rows.
static int64_t
s_task(const tn_node_t *node, int64_t project, const char *status, const char *agent)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO tasks (title, assignee, project_id, status, agent, lease_owner,"
             " lease_expires_at, started_at, finished_at) VALUES ('t', '{\"agent\":\"a\"}', %lld,"
             " '%s', %s%s%s, %s, %s, %s, %s) RETURNING id",
             (long long)project, status, agent ? "'" : "", agent ? agent : "NULL", agent ? "'" : "",
             strcmp(status, "in_progress") == 0 ? "'n1'" : "NULL",
             strcmp(status, "in_progress") == 0 ? "now() + interval '1 h'" : "NULL",
             strcmp(status, "todo") == 0 ? "NULL" : "now()",
             strcmp(status, "done") == 0 || strcmp(status, "failed") == 0 ||
                     strcmp(status, "cancelled") == 0
                 ? "now()"
                 : "NULL");
    char *id = tn_sql(node, sql);
    if (!id) {
        fail_msg("could not insert a task: %s", sql);
    }
    int64_t v = strtoll(id, NULL, 10);
    free(id);
    return v;
}

//  Standard base64 with padding of len bytes (caller frees).
static char *
s_base64(const unsigned char *data, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = (char *)malloc((len + 2) / 3 * 4 + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        v |= i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0;
        v |= i + 2 < len ? data[i + 2] : 0;
        out[n++] = abc[v >> 18 & 63];
        out[n++] = abc[v >> 12 & 63];
        out[n++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
        out[n++] = i + 2 < len ? abc[v & 63] : '=';
    }
    out[n] = '\0';
    return out;
}

static void
test_projects_crud(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/projects",
                             "{\"name\":\"site\",\"description\":\"the web site\"}"),
                     201);
    int64_t id = s_id(&r);
    char path[96], loc[128];
    snprintf(path, sizeof path, "/api/v1/projects/%lld", (long long)id);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), path);
    assert_string_equal(s_str(&r, "name"), "site");
    assert_string_equal(s_str(&r, "description"), "the web site");
    assert_non_null(s_str(&r, "created_at"));
    char *admin = tn_sql(node, "SELECT id FROM users WHERE username = 'admin'");
    assert_int_equal(json_integer_value(json_object_get(r.json, "created_by")), atoll(admin));
    free(admin);
    tn_resp_free(&r);
    char *count = tn_sql(node, "SELECT count(*) FROM projects WHERE name = 'site'");
    assert_string_equal(count, "1");
    free(count);

    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_int_equal(s_id(&r), id);
    assert_string_equal(s_str(&r, "description"), "the web site");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"name\":\"www\"}"), 200);
    assert_string_equal(s_str(&r, "name"), "www");
    assert_string_equal(s_str(&r, "description"), "the web site");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"description\":\"\"}"), 200);
    assert_string_equal(s_str(&r, "description"), "");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{}"), 200);
    assert_string_equal(s_str(&r, "name"), "www");
    tn_resp_free(&r);

    //  Bad input: named, and nothing changes.
    s_bad(node, "POST", "/api/v1/projects", "{}", 400, "validation_failed", "name");
    s_bad(node, "POST", "/api/v1/projects", "{\"name\":\"\"}", 400, "validation_failed", "name");
    s_bad(node, "POST", "/api/v1/projects", "{\"name\":7}", 400, "validation_failed", "name");
    s_bad(node, "POST", "/api/v1/projects", "{\"name\":\"x\",\"owner\":1}", 400,
          "validation_failed", "owner");
    s_bad(node, "POST", "/api/v1/projects", "{\"name\":\"x\",\"description\":null}", 400,
          "validation_failed", "description");
    char long_name[260] = "{\"name\":\"";
    memset(long_name + 9, 'n', 201);
    strcpy(long_name + 210, "\"}");
    s_bad(node, "POST", "/api/v1/projects", long_name, 400, "validation_failed", "name");
    s_bad(node, "POST", "/api/v1/projects", "\"x\"", 400, "validation_failed", NULL);
    s_bad(node, "POST", "/api/v1/projects", "{\"name\":\"x\"", 400, "invalid_json", NULL);
    s_bad(node, "PATCH", path, "{\"name\":\"\"}", 400, "validation_failed", "name");
    s_bad(node, "PATCH", path, "{\"created_by\":1}", 400, "validation_failed", "created_by");
    s_bad(node, "PATCH", "/api/v1/projects/999", "{\"name\":\"y\"}", 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/projects/999", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/projects/abc", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/projects/99999999999999999999", NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", "/api/v1/projects/999", NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", "/api/v1/projects/0", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/projects?limit=x", NULL, 400, "validation_failed", "limit");
    s_bad(node, "GET", "/api/v1/projects?cursor=1.5", NULL, 400, "validation_failed", "cursor");

    assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 204);
    assert_int_equal(r.body_len, 0);
    tn_resp_free(&r);
    s_bad(node, "GET", path, NULL, 404, "not_found", NULL);
    s_bad(node, "PATCH", path, "{\"name\":\"z\"}", 404, "not_found", NULL);
    s_bad(node, "DELETE", path, NULL, 404, "not_found", NULL);
}

static void
test_projects_pagination(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        s_project(node, name);
    }
    char path[160] = "/api/v1/projects?limit=2";
    int seen = 0, pages = 0;
    int64_t last = INT64_MAX;
    while (true) {
        tn_resp_t r;
        assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
        json_t *items = json_object_get(r.json, "items");
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            int64_t id = json_integer_value(json_object_get(item, "id"));
            assert_true(id < last); //  newest first, never twice
            last = id;
            seen++;
        }
        pages++;
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!next) {
            tn_resp_free(&r);
            break;
        }
        snprintf(path, sizeof path, "/api/v1/projects?limit=2&cursor=%s", next);
        tn_resp_free(&r);
    }
    assert_int_equal(seen, 5);
    assert_int_equal(pages, 3);
}

static void
test_projects_status(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t site = s_project(node, "site");
    int64_t other = s_project(node, "other");
    char path[128];
    snprintf(path, sizeof path, "/api/v1/projects/%lld/status", (long long)site);
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "project_id")), site);
    json_t *tasks = json_object_get(r.json, "tasks");
    static const char *const statuses[] = {"todo", "in_progress", "waiting_human",
                                           "done", "failed",      "cancelled"};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(json_integer_value(json_object_get(tasks, statuses[i])), 0);
    }
    assert_int_equal(json_integer_value(json_object_get(r.json, "pending_hitl")), 0);
    assert_int_equal(json_integer_value(json_object_get(r.json, "agents_busy")), 0);
    tn_resp_free(&r);

    s_task(node, site, "todo", NULL);
    s_task(node, site, "todo", NULL);
    s_task(node, site, "in_progress", "ann");
    s_task(node, site, "in_progress", "ann");
    s_task(node, site, "in_progress", "bob");
    int64_t waiting = s_task(node, site, "waiting_human", "cy");
    s_task(node, site, "done", "ann");
    s_task(node, site, "failed", "ann");
    s_task(node, site, "cancelled", NULL);
    s_task(node, other, "in_progress", "dan");
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO hitl_requests (task_id, project_id, question) VALUES (%lld, %lld, 'ok?'),"
             " (%lld, %lld, 'and?') RETURNING 1",
             (long long)waiting, (long long)site, (long long)waiting, (long long)site);
    free(tn_sql(node, sql));
    snprintf(sql, sizeof sql,
             "UPDATE hitl_requests SET status = 'answered', answered_at = now()"
             " WHERE question = 'and?' RETURNING 1");
    free(tn_sql(node, sql));

    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    tasks = json_object_get(r.json, "tasks");
    static const int want[] = {2, 3, 1, 1, 1, 1};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(json_integer_value(json_object_get(tasks, statuses[i])), want[i]);
    }
    assert_int_equal(json_integer_value(json_object_get(r.json, "pending_hitl")), 1);
    //  ann and bob hold tasks in progress; dan works for another project.
    assert_int_equal(json_integer_value(json_object_get(r.json, "agents_busy")), 2);
    tn_resp_free(&r);

    s_bad(node, "GET", "/api/v1/projects/999/status", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/projects/x/status", NULL, 404, "not_found", NULL);

    //  A project with tasks cannot be deleted.
    snprintf(path, sizeof path, "/api/v1/projects/%lld", (long long)site);
    s_bad(node, "DELETE", path, NULL, 409, "conflict", NULL);
    free(tn_sql(node, "DELETE FROM tasks RETURNING 1"));
    assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 204);
    tn_resp_free(&r);
}

static void
test_artifacts(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t project = s_project(node, "site");
    int64_t other = s_project(node, "other");
    int64_t task = s_task(node, project, "in_progress", "ann");
    int64_t foreign_task = s_task(node, other, "todo", NULL);
    char list[96], body[512];
    snprintf(list, sizeof list, "/api/v1/projects/%lld/artifacts", (long long)project);

    //  Text: stored as UTF-8, default type.
    tn_resp_t r;
    assert_int_equal(
        tn_call(node, &r, "POST", list, "{\"name\":\"notes.txt\",\"content\":\"h\\u00e9llo\"}"),
        201);
    int64_t text = s_id(&r);
    char loc[128], want[256];
    snprintf(want, sizeof want, "/api/v1/artifacts/%lld", (long long)text);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), want);
    assert_int_equal(json_integer_value(json_object_get(r.json, "size")), 6);
    assert_string_equal(s_str(&r, "content_type"), "text/plain; charset=utf-8");
    assert_int_equal(json_integer_value(json_object_get(r.json, "project_id")), project);
    assert_true(json_is_null(json_object_get(r.json, "task_id")));
    assert_null(json_object_get(r.json, "content"));
    tn_resp_free(&r);

    //  Bytes (every value, NUL included), with a type and a task.
    unsigned char bytes[256];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (unsigned char)(255 - i);
    }
    char *b64 = s_base64(bytes, sizeof bytes);
    snprintf(body, sizeof body,
             "{\"name\":\"blob.bin\",\"content_type\":\"image/png\",\"content_base64\":\"%s\","
             "\"task_id\":%lld}",
             b64, (long long)task);
    free(b64);
    int64_t bin = s_create_at(node, list, body, "/api/v1/artifacts");

    //  Metadata, and content back raw with its type.
    snprintf(want, sizeof want, "/api/v1/artifacts/%lld", (long long)bin);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "size")), 256);
    assert_int_equal(json_integer_value(json_object_get(r.json, "task_id")), task);
    assert_string_equal(s_str(&r, "name"), "blob.bin");
    assert_string_equal(s_str(&r, "content_type"), "image/png");
    assert_non_null(s_str(&r, "created_at"));
    tn_resp_free(&r);
    snprintf(want, sizeof want, "/api/v1/artifacts/%lld/content", (long long)bin);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_int_equal(r.body_len, 256);
    assert_memory_equal(r.body, bytes, 256);
    assert_string_equal(tn_header(&r, "content-type", loc, sizeof loc), "image/png");
    //  Served as a download under its name, its type taken as given.
    assert_string_equal(tn_header(&r, "x-content-type-options", loc, sizeof loc), "nosniff");
    assert_string_equal(tn_header(&r, "content-disposition", loc, sizeof loc),
                        "attachment; filename=\"blob.bin\"; filename*=UTF-8''blob.bin");
    tn_resp_free(&r);
    snprintf(want, sizeof want, "/api/v1/artifacts/%lld/content", (long long)text);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_int_equal(r.body_len, 6);
    assert_memory_equal(r.body, "h\xc3\xa9llo", 6);
    assert_string_equal(tn_header(&r, "content-type", loc, sizeof loc),
                        "text/plain; charset=utf-8");
    tn_resp_free(&r);

    //  Empty content is content.
    int64_t empty = s_create_at(node, list, "{\"name\":\"empty\",\"content_base64\":\"\"}",
                                "/api/v1/artifacts");
    snprintf(want, sizeof want, "/api/v1/artifacts/%lld/content", (long long)empty);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(tn_header(&r, "content-type", loc, sizeof loc), "application/octet-stream");
    assert_string_equal(tn_header(&r, "x-content-type-options", loc, sizeof loc), "nosniff");
    assert_string_equal(tn_header(&r, "content-disposition", loc, sizeof loc),
                        "attachment; filename=\"empty\"; filename*=UTF-8''empty");
    tn_resp_free(&r);

    //  Each stored artifact has its artifact.created event, committed with
    //  it.
    char *events = tn_sql(node, "SELECT count(*) FROM events WHERE type = 'artifact.created'");
    assert_string_equal(events, "3");
    free(events);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT json_build_object('p', project_id, 't', task_id, 'd', data) FROM events"
             " WHERE (data ->> 'artifact_id')::bigint = %lld",
             (long long)bin);
    char *ev = tn_sql(node, sql);
    json_t *event = json_loads(ev, 0, NULL);
    free(ev);
    assert_int_equal(json_integer_value(json_object_get(event, "p")), project);
    assert_int_equal(json_integer_value(json_object_get(event, "t")), task);
    json_t *data = json_object_get(event, "d");
    assert_string_equal(json_string_value(json_object_get(data, "name")), "blob.bin");
    assert_string_equal(json_string_value(json_object_get(data, "content_type")), "image/png");
    assert_int_equal(json_integer_value(json_object_get(data, "size")), 256);
    json_decref(event);

    //  The list, newest first, paged.
    snprintf(want, sizeof want, "%s?limit=2", list);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "id")), empty);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 1), "id")), bin);
    assert_null(json_object_get(json_array_get(items, 0), "content"));
    const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
    assert_non_null(next);
    snprintf(want, sizeof want, "%s?limit=2&cursor=%s", list, next);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "id")), text);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    tn_resp_free(&r);
    snprintf(want, sizeof want, "/api/v1/projects/%lld/artifacts", (long long)other);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    tn_resp_free(&r);

    //  Content a browser would render (HTML under a hostile name) is a
    //  download, its name made safe; JSON is served as data, inline.
    struct {
        const char *body, *type, *disposition;
    } served[] = {
        {"{\"name\":\"../x \\\"y\\\"\\r\\nSet-Cookie: a=b;.html\",\"content_type\":\"text/html\","
         "\"content\":\"<script>alert(1)</script>\"}",
         "text/html",
         "attachment; filename=\".._x__y___Set-Cookie__a_b_.html\"; "
         "filename*=UTF-8''.._x%20%22y%22%0D%0ASet-Cookie%3A%20a%3Db%3B.html"},
        {"{\"name\":\"h\\u00e9 w.txt\",\"content\":\"x\"}", "text/plain; charset=utf-8",
         "attachment; filename=\"h___w.txt\"; filename*=UTF-8''h%C3%A9%20w.txt"},
        {"{\"name\":\"..\",\"content_type\":\"image/svg+xml\",\"content\":\"<svg/>\"}",
         "image/svg+xml", "attachment; filename=\"artifact\"; filename*=UTF-8''artifact"},
        {"{\"name\":\"r.json\",\"content_type\":\"application/json\",\"content\":\"{}\"}",
         "application/json", NULL},
        {"{\"name\":\"p.json\",\"content_type\":\"application/problem+json; charset=utf-8\","
         "\"content\":\"{}\"}",
         "application/problem+json; charset=utf-8", NULL},
    };
    for (size_t i = 0; i < sizeof served / sizeof served[0]; i++) {
        int64_t id = s_create_at(node, list, served[i].body, "/api/v1/artifacts");
        snprintf(want, sizeof want, "/api/v1/artifacts/%lld/content", (long long)id);
        assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
        assert_string_equal(tn_header(&r, "content-type", loc, sizeof loc), served[i].type);
        assert_string_equal(tn_header(&r, "x-content-type-options", loc, sizeof loc), "nosniff");
        const char *got = tn_header(&r, "content-disposition", body, sizeof body);
        if (served[i].disposition) {
            assert_non_null(got);
            assert_string_equal(got, served[i].disposition);
        } else {
            assert_null(got);
        }
        //  No header was smuggled in by the name.
        assert_null(tn_header(&r, "set-cookie", loc, sizeof loc));
        tn_resp_free(&r);
        //  Metadata keeps the name as given.
        snprintf(want, sizeof want, "/api/v1/artifacts/%lld", (long long)id);
        assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
        assert_null(tn_header(&r, "content-disposition", loc, sizeof loc));
        tn_resp_free(&r);
    }

    //  Bad input: named, and nothing changes (no artifact, no event).
    s_bad(node, "POST", list, "{\"name\":\"x\"}", 400, "validation_failed", "content");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content\":\"a\",\"content_base64\":\"YQ==\"}", 400,
          "validation_failed", "content_base64");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content_base64\":\"!!!!\"}", 400,
          "validation_failed", "content_base64");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content_base64\":\"AAE\"}", 400,
          "validation_failed", "content_base64");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content_base64\":\"AA-_\"}", 400,
          "validation_failed", "content_base64");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content_base64\":\"AAE=AAE=\"}", 400,
          "validation_failed", "content_base64");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content_base64\":7}", 400, "validation_failed",
          "content_base64");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content\":null}", 400, "validation_failed",
          "content");
    s_bad(node, "POST", list,
          "{\"name\":\"x\",\"content\":\"a\",\"content_type\":\"text/html\\r\\nX-Evil: 1\"}", 400,
          "validation_failed", "content_type");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content\":\"a\",\"content_type\":\"t\\u00e9\"}",
          400, "validation_failed", "content_type");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content\":\"a\",\"content_type\":\"\"}", 400,
          "validation_failed", "content_type");
    snprintf(body, sizeof body, "{\"name\":\"x\",\"content\":\"a\",\"task_id\":%lld}",
             (long long)foreign_task);
    s_bad(node, "POST", list, body, 400, "validation_failed", "task_id");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content\":\"a\",\"task_id\":99999}", 400,
          "validation_failed", "task_id");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content\":\"a\",\"task_id\":\"1\"}", 400,
          "validation_failed", "task_id");
    s_bad(node, "POST", list, "{\"content\":\"a\"}", 400, "validation_failed", "name");
    s_bad(node, "POST", list, "{\"name\":\"\",\"content\":\"a\"}", 400, "validation_failed",
          "name");
    s_bad(node, "POST", list, "{\"name\":\"x\",\"content\":\"a\",\"size\":1}", 400,
          "validation_failed", "size");
    s_bad(node, "POST", "/api/v1/projects/999/artifacts", "{\"name\":\"x\",\"content\":\"a\"}", 404,
          "not_found", NULL);
    s_bad(node, "POST", "/api/v1/projects/p1/artifacts", "{\"name\":\"x\",\"content\":\"a\"}", 404,
          "not_found", NULL);
    s_bad(node, "GET", "/api/v1/projects/999/artifacts", NULL, 404, "not_found", NULL);
    snprintf(want, sizeof want, "%s?limit=5000", list);
    s_bad(node, "GET", want, NULL, 400, "validation_failed", "limit");
    s_bad(node, "GET", "/api/v1/artifacts/999", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/artifacts/999/content", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/artifacts/%2F/content", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/artifacts/-3", NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", "/api/v1/artifacts/1", NULL, 405, "method_not_allowed", NULL);

    //  Deleting the project deletes its artifacts.
    free(tn_sql(node, "DELETE FROM tasks RETURNING 1"));
    snprintf(want, sizeof want, "/api/v1/projects/%lld", (long long)project);
    assert_int_equal(tn_call(node, &r, "DELETE", want, NULL), 204);
    tn_resp_free(&r);
    snprintf(want, sizeof want, "/api/v1/artifacts/%lld", (long long)bin);
    s_bad(node, "GET", want, NULL, 404, "not_found", NULL);
    s_bad(node, "GET", list, NULL, 404, "not_found", NULL);
    char *count = tn_sql(node, "SELECT count(*) FROM artifacts");
    assert_string_equal(count, "0");
    free(count);
}

//  Content near the body limit round-trips; over it is 413 and stores
//  nothing.
static void
test_artifacts_large(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t project = s_project(node, "big");
    char list[128];
    snprintf(list, sizeof list, "/api/v1/projects/%lld/artifacts", (long long)project);
    size_t n = 700 * 1024; //  ~933 KiB of base64: under the 1 MiB body limit
    unsigned char *bytes = (unsigned char *)malloc(n);
    for (size_t i = 0; i < n; i++) {
        bytes[i] = (unsigned char)(i * 2654435761u >> 24);
    }
    char *b64 = s_base64(bytes, n);
    size_t len = strlen(b64) + 64;
    char *body = (char *)malloc(len);
    snprintf(body, len, "{\"name\":\"big\",\"content_base64\":\"%s\"}", b64);
    int64_t id = s_create_at(node, list, body, "/api/v1/artifacts");
    char path[128];
    snprintf(path, sizeof path, "/api/v1/artifacts/%lld/content", (long long)id);
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, bytes, n);
    tn_resp_free(&r);
    free(body);
    free(b64);
    free(bytes);

    //  Over the limit.
    size_t big = (1u << 20) + 16;
    body = (char *)malloc(big + 64);
    int off = snprintf(body, big + 64, "{\"name\":\"big2\",\"content\":\"");
    memset(body + off, 'a', big);
    strcpy(body + off + big, "\"}");
    s_bad(node, "POST", list, body, 413, "payload_too_large", NULL);
    free(body);
}

//  With a body limit above persist's per-value limit (1 MiB), a body that
//  passes HTTP but not persist is 413 too, and stores nothing.
static void
test_artifacts_over_persist_limit(void **state)
{
    (void)state;
    static const char *const env[] = {"CADRE_HTTP_MAX_BODY_BYTES=4194304", NULL};
    tn_node_t *node = tn_start(env);
    assert_non_null(node);
    int64_t project = s_project(node, "big");
    char list[96];
    snprintf(list, sizeof list, "/api/v1/projects/%lld/artifacts", (long long)project);
    size_t big = (3u << 19); //  1.5 MiB
    char *body = (char *)malloc(big + 64);
    int off = snprintf(body, big + 64, "{\"name\":\"big\",\"content\":\"");
    memset(body + off, 'a', big);
    strcpy(body + off + big, "\"}");
    s_bad(node, "POST", list, body, 413, "payload_too_large", "content");
    free(body);
    tn_stop(&node);
}

//  A repeated create with the same Idempotency-Key stores one artifact
//  and emits one event.
static void
test_artifacts_idempotency(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t project = s_project(node, "idem");
    char list[128];
    snprintf(list, sizeof list, "/api/v1/projects/%lld/artifacts", (long long)project);
    static const char *const key[] = {"Idempotency-Key: art-1", NULL};
    tn_resp_t a, b;
    assert_int_equal(
        tn_request(node, "POST", list, "{\"name\":\"x\",\"content\":\"once\"}", key, &a), 201);
    assert_int_equal(
        tn_request(node, "POST", list, "{\"name\":\"x\",\"content\":\"once\"}", key, &b), 201);
    assert_string_equal(a.body, b.body);
    tn_resp_free(&a);
    tn_resp_free(&b);
    char *count = tn_sql(node, "SELECT count(*) FROM artifacts");
    assert_string_equal(count, "1");
    free(count);
    count = tn_sql(node, "SELECT count(*) FROM events WHERE type = 'artifact.created'");
    assert_string_equal(count, "1");
    free(count);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_projects_crud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_projects_pagination, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_projects_status, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_artifacts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_artifacts_large, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_artifacts_idempotency, s_setup, s_teardown),
        cmocka_unit_test(test_artifacts_over_persist_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
