/* label: integration */
/*  test_api_catalog: templates, roles, team types and teams (with their
    members) over HTTP/2 against a real node (cd_testnode) on a real
    PostgreSQL: every route, every error it answers, pagination, Location
    headers, and that no bad input changes a row. */
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

//  Every row of the catalog tables and of events, as one text: equal
//  before and after a request that must change nothing (updated_at
//  included, so even a no-op UPDATE would show). Caller frees.
static char *
s_state(const tn_node_t *node)
{
    char *state = tn_sql(
        node, "SELECT concat_ws('|',"
              " (SELECT json_agg(x ORDER BY x.id) FROM templates x),"
              " (SELECT json_agg(x ORDER BY x.id) FROM roles x),"
              " (SELECT json_agg(x ORDER BY x.id) FROM team_types x),"
              " (SELECT json_agg(x ORDER BY x.team_type_id, x.position) FROM team_type_roles x),"
              " (SELECT json_agg(x ORDER BY x.id) FROM teams x),"
              " (SELECT json_agg(x ORDER BY x.team_id, x.agent) FROM team_members x),"
              " (SELECT json_agg(x ORDER BY x.id) FROM events x), 'end')");
    assert_non_null(state);
    return state;
}

//  The field an error names (details.field), or "".
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
        fail_msg("%s %s %s: want %ld %s %s, got %ld %s", method, path, body ? body : "", status,
                 code, field ? field : "", got, r.body);
    }
    tn_resp_free(&r);
    char *after = s_state(node);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

//  POSTs body to path, expects 201 with a Location of path/<id>; returns
//  the id.
static int64_t
s_create(const tn_node_t *node, const char *path, const char *body)
{
    tn_resp_t r;
    long status = tn_call(node, &r, "POST", path, body);
    if (status != 201) {
        fail_msg("POST %s %s: %ld %s", path, body, status, r.body);
    }
    int64_t id = s_id(&r);
    assert_true(id > 0);
    char loc[160], want[160];
    snprintf(want, sizeof want, "%s/%lld", path, (long long)id);
    assert_non_null(tn_header(&r, "location", loc, sizeof loc));
    assert_string_equal(loc, want);
    tn_resp_free(&r);
    return id;
}

//  Pages through a list with limit 2: every item once, newest first.
//  Returns how many there were.
static int
s_page_all(const tn_node_t *node, const char *list)
{
    char path[256];
    snprintf(path, sizeof path, "%s?limit=2", list);
    int seen = 0;
    int64_t last = INT64_MAX;
    while (true) {
        tn_resp_t r;
        assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
        json_t *items = json_object_get(r.json, "items");
        assert_true(json_array_size(items) <= 2);
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            int64_t id = json_integer_value(json_object_get(item, "id"));
            assert_true(id < last);
            last = id;
            seen++;
        }
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!next) {
            tn_resp_free(&r);
            break;
        }
        snprintf(path, sizeof path, "%s?limit=2&cursor=%s", list, next);
        tn_resp_free(&r);
    }
    return seen;
}

static void
test_templates_crud(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/templates",
                             "{\"name\":\"greet\",\"description\":\"hi\",\"body\":\"Hello "
                             "{{ who }}, {{n}}!\"}"),
                     201);
    int64_t id = s_id(&r);
    assert_true(id > 0);
    char loc[128], want[128];
    snprintf(want, sizeof want, "/api/v1/templates/%lld", (long long)id);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), want);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "greet");
    assert_int_equal(r.version, 2); //  HTTP/2
    tn_resp_free(&r);

    //  Committed before the 201: the row is there.
    char *count = tn_sql(node, "SELECT count(*) FROM templates WHERE name = 'greet'");
    assert_string_equal(count, "1");
    free(count);

    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "body")),
                        "Hello {{ who }}, {{n}}!");
    tn_resp_free(&r);

    char path[160];
    snprintf(path, sizeof path, "%s/render", want);
    assert_int_equal(tn_call(node, &r, "POST", path, "{\"variables\":{\"who\":\"Ada\",\"n\":3}}"),
                     200);
    assert_string_equal(json_string_value(json_object_get(r.json, "text")), "Hello Ada, 3!");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", path, "{\"variables\":{\"who\":\"Ada\"}}"), 400);
    assert_string_equal(tn_error_code(&r), "missing_variable");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(r.json, "error"), "details"), "variable")),
        "n");
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "PATCH", want, "{\"description\":\"changed\"}"), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "description")), "changed");
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "greet");
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/templates?limit=10", NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "DELETE", want, NULL), 204);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 404);
    assert_string_equal(tn_error_code(&r), "not_found");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "DELETE", want, NULL), 404);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", want, "{\"body\":\"x\"}"), 404);
    tn_resp_free(&r);
}

static void
test_templates_errors_change_nothing(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/templates", "{\"name\":\"dup\",\"body\":\"a\"}"), 201);
    tn_resp_free(&r);
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/templates", "{\"name\":\"dup\",\"body\":\"b\"}"), 409);
    assert_string_equal(tn_error_code(&r), "conflict");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/templates",
                             "{\"name\":\"x\",\"body\":\"b\",\"color\":1}"),
                     400);
    assert_string_equal(tn_error_code(&r), "validation_failed");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/templates", "{\"name\":\"x\"}"), 400);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/templates/abc", NULL), 404);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/templates?limit=-1", NULL), 400);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/templates?cursor=zz", NULL), 400);
    tn_resp_free(&r);
    char *count = tn_sql(node, "SELECT count(*) FROM templates");
    assert_string_equal(count, "1");
    free(count);
}

static void
test_templates_pagination(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    for (int i = 0; i < 5; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"name\":\"page%d\",\"body\":\"x\"}", i);
        assert_int_equal(tn_call(node, &r, "POST", "/api/v1/templates", body), 201);
        tn_resp_free(&r);
    }
    char path[160] = "/api/v1/templates?limit=2";
    int seen = 0, pages = 0;
    while (true) {
        assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
        seen += (int)json_array_size(json_object_get(r.json, "items"));
        pages++;
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!next) {
            tn_resp_free(&r);
            break;
        }
        snprintf(path, sizeof path, "/api/v1/templates?limit=2&cursor=%s", next);
        tn_resp_free(&r);
    }
    assert_int_equal(seen, 5);
    assert_int_equal(pages, 3);
}

static void
test_idempotency_key(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    static const char *const key[] = {"Idempotency-Key: k-1", NULL};
    tn_resp_t a, b, c;
    assert_int_equal(tn_request(node, "POST", "/api/v1/templates",
                                "{\"name\":\"idem\",\"body\":\"x\"}", key, &a),
                     201);
    assert_int_equal(tn_request(node, "POST", "/api/v1/templates",
                                "{\"name\":\"idem\",\"body\":\"x\"}", key, &b),
                     201);
    assert_string_equal(a.body, b.body); //  the first answer, replayed
    assert_int_equal(tn_request(node, "POST", "/api/v1/templates",
                                "{\"name\":\"idem2\",\"body\":\"x\"}", key, &c),
                     409);
    assert_string_equal(tn_error_code(&c), "conflict");
    tn_resp_free(&a);
    tn_resp_free(&b);
    tn_resp_free(&c);
    char *count = tn_sql(node, "SELECT count(*) FROM templates WHERE name LIKE 'idem%'");
    assert_string_equal(count, "1");
    free(count);
}

static void
test_roles(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    int64_t tpl = s_create(node, "/api/v1/templates", "{\"name\":\"t\",\"body\":\"x\"}");
    char body[256], path[96];
    snprintf(body, sizeof body,
             "{\"name\":\"coder\",\"description\":\"writes code\",\"default_template_id\":%lld}",
             (long long)tpl);
    int64_t coder = s_create(node, "/api/v1/roles", body);
    int64_t plain = s_create(node, "/api/v1/roles", "{\"name\":\"plain\"}");
    char *count = tn_sql(node, "SELECT count(*) FROM roles");
    assert_string_equal(count, "2");
    free(count);

    snprintf(path, sizeof path, "/api/v1/roles/%lld", (long long)coder);
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "coder");
    assert_string_equal(json_string_value(json_object_get(r.json, "description")), "writes code");
    assert_int_equal(json_integer_value(json_object_get(r.json, "default_template_id")), tpl);
    tn_resp_free(&r);
    char plain_path[96];
    snprintf(plain_path, sizeof plain_path, "/api/v1/roles/%lld", (long long)plain);
    assert_int_equal(tn_call(node, &r, "GET", plain_path, NULL), 200);
    assert_true(json_is_null(json_object_get(r.json, "default_template_id")));
    assert_string_equal(json_string_value(json_object_get(r.json, "description")), "");
    tn_resp_free(&r);

    //  Patch: only what is given; null clears the template.
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"name\":\"dev\"}"), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "dev");
    assert_int_equal(json_integer_value(json_object_get(r.json, "default_template_id")), tpl);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"default_template_id\":null}"), 200);
    assert_true(json_is_null(json_object_get(r.json, "default_template_id")));
    tn_resp_free(&r);

    //  Bad input: named, and nothing changes.
    s_bad(node, "POST", "/api/v1/roles", "{\"name\":\"x\",\"default_template_id\":999}", 400,
          "validation_failed", "default_template_id");
    s_bad(node, "PATCH", path, "{\"name\":\"y\",\"default_template_id\":999}", 400,
          "validation_failed", "default_template_id");
    s_bad(node, "POST", "/api/v1/roles", "{\"name\":\"plain\"}", 409, "conflict", NULL);
    s_bad(node, "PATCH", path, "{\"name\":\"plain\"}", 409, "conflict", NULL);
    s_bad(node, "POST", "/api/v1/roles", "{\"name\":\"\"}", 400, "validation_failed", "name");
    s_bad(node, "POST", "/api/v1/roles", "{}", 400, "validation_failed", "name");
    s_bad(node, "POST", "/api/v1/roles", "{\"name\":\"x\",\"color\":1}", 400, "validation_failed",
          "color");
    s_bad(node, "POST", "/api/v1/roles", "{\"name\":\"x\",\"default_template_id\":\"1\"}", 400,
          "validation_failed", "default_template_id");
    s_bad(node, "POST", "/api/v1/roles", "{\"name\":\"x\",\"default_template_id\":0}", 400,
          "validation_failed", "default_template_id");
    s_bad(node, "POST", "/api/v1/roles", "[1]", 400, "validation_failed", NULL);
    s_bad(node, "POST", "/api/v1/roles", "{\"name\":", 400, "invalid_json", NULL);
    s_bad(node, "PATCH", path, "{\"name\":null}", 400, "validation_failed", "name");
    s_bad(node, "PATCH", "/api/v1/roles/999", "{\"name\":\"z\"}", 404, "not_found", NULL);
    s_bad(node, "PATCH", "/api/v1/roles/999", "{\"default_template_id\":999}", 404, "not_found",
          NULL);
    s_bad(node, "GET", "/api/v1/roles/999", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/roles/x1", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/roles/-1", NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", "/api/v1/roles/999", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/roles?limit=0", NULL, 400, "validation_failed", "limit");
    s_bad(node, "GET", "/api/v1/roles?limit=1001", NULL, 400, "validation_failed", "limit");
    s_bad(node, "GET", "/api/v1/roles?cursor=abc", NULL, 400, "validation_failed", "cursor");

    //  In use by a team type: 409, and the role stays.
    snprintf(body, sizeof body, "{\"name\":\"uses\",\"roles\":[%lld]}", (long long)coder);
    int64_t tt = s_create(node, "/api/v1/team-types", body);
    s_bad(node, "DELETE", path, NULL, 409, "conflict", NULL);
    char tt_path[96];
    snprintf(tt_path, sizeof tt_path, "/api/v1/team-types/%lld", (long long)tt);
    assert_int_equal(tn_call(node, &r, "DELETE", tt_path, NULL), 204);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 204);
    assert_int_equal(r.body_len, 0);
    tn_resp_free(&r);
    s_bad(node, "GET", path, NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", path, NULL, 404, "not_found", NULL);

    //  A deleted template leaves its roles without one.
    snprintf(path, sizeof path, "/api/v1/templates/%lld", (long long)tpl);
    snprintf(body, sizeof body, "{\"default_template_id\":%lld}", (long long)tpl);
    assert_int_equal(tn_call(node, &r, "PATCH", plain_path, body), 200);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 204);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", plain_path, NULL), 200);
    assert_true(json_is_null(json_object_get(r.json, "default_template_id")));
    tn_resp_free(&r);
}

static void
test_team_types(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    int64_t a = s_create(node, "/api/v1/roles", "{\"name\":\"a\"}");
    int64_t b = s_create(node, "/api/v1/roles", "{\"name\":\"b\"}");
    char body[256], path[96];
    //  The order is the pipeline's, and a role may repeat.
    snprintf(body, sizeof body, "{\"name\":\"pipe\",\"roles\":[%lld,%lld,%lld]}", (long long)b,
             (long long)a, (long long)b);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/team-types", body), 201);
    int64_t pipe = s_id(&r);
    json_t *roles = json_object_get(r.json, "roles");
    assert_int_equal(json_array_size(roles), 3);
    assert_int_equal(json_integer_value(json_array_get(roles, 0)), b);
    assert_int_equal(json_integer_value(json_array_get(roles, 1)), a);
    assert_int_equal(json_integer_value(json_array_get(roles, 2)), b);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "pipe");
    tn_resp_free(&r);
    char *rows = tn_sql(
        node, "SELECT string_agg(role_id::text, ',' ORDER BY position) FROM team_type_roles");
    char want[96];
    snprintf(want, sizeof want, "%lld,%lld,%lld", (long long)b, (long long)a, (long long)b);
    assert_string_equal(rows, want);
    free(rows);
    snprintf(path, sizeof path, "/api/v1/team-types/%lld", (long long)pipe);
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(r.json, "roles"), 0)), b);
    tn_resp_free(&r);
    int64_t solo = s_create(node, "/api/v1/team-types", "{\"name\":\"solo\"}");
    assert_true(solo > pipe);

    //  Patch: name alone keeps the pipeline; roles replaces it.
    assert_int_equal(tn_call(node, &r, "PATCH", path, "{\"description\":\"d\"}"), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "roles")), 3);
    assert_string_equal(json_string_value(json_object_get(r.json, "description")), "d");
    tn_resp_free(&r);
    snprintf(body, sizeof body, "{\"roles\":[%lld]}", (long long)a);
    assert_int_equal(tn_call(node, &r, "PATCH", path, body), 200);
    roles = json_object_get(r.json, "roles");
    assert_int_equal(json_array_size(roles), 1);
    assert_int_equal(json_integer_value(json_array_get(roles, 0)), a);
    tn_resp_free(&r);

    //  Bad input: named, and nothing changes.
    snprintf(body, sizeof body, "{\"name\":\"bad\",\"roles\":[%lld,999]}", (long long)a);
    s_bad(node, "POST", "/api/v1/team-types", body, 400, "validation_failed", "roles");
    s_bad(node, "PATCH", path, "{\"name\":\"n\",\"roles\":[999]}", 400, "validation_failed",
          "roles");
    s_bad(node, "POST", "/api/v1/team-types", "{\"name\":\"x\",\"roles\":[\"a\"]}", 400,
          "validation_failed", "roles");
    s_bad(node, "POST", "/api/v1/team-types", "{\"name\":\"x\",\"roles\":[0]}", 400,
          "validation_failed", "roles");
    s_bad(node, "POST", "/api/v1/team-types", "{\"name\":\"x\",\"roles\":[1.5]}", 400,
          "validation_failed", "roles");
    s_bad(node, "POST", "/api/v1/team-types", "{\"name\":\"x\",\"roles\":{}}", 400,
          "validation_failed", "roles");
    s_bad(node, "POST", "/api/v1/team-types", "{\"name\":\"x\",\"roles\":null}", 400,
          "validation_failed", "roles");
    char many[512] = "{\"name\":\"x\",\"roles\":[";
    for (int i = 0; i < 65; i++) {
        strcat(many, i ? ",1" : "1");
    }
    strcat(many, "]}");
    s_bad(node, "POST", "/api/v1/team-types", many, 400, "validation_failed", "roles");
    s_bad(node, "PATCH", path, "{\"roles\":[\"x\"]}", 400, "validation_failed", "roles");
    s_bad(node, "POST", "/api/v1/team-types", "{\"name\":\"solo\"}", 409, "conflict", NULL);
    s_bad(node, "POST", "/api/v1/team-types", "{\"roles\":[]}", 400, "validation_failed", "name");
    s_bad(node, "PATCH", "/api/v1/team-types/999", "{\"roles\":[999]}", 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/team-types/999", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/team-types/0", NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", "/api/v1/team-types/999", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/team-types?cursor=-2", NULL, 400, "validation_failed", "cursor");

    //  A role in a pipeline cannot go; a type used by a team cannot.
    snprintf(body, sizeof body, "/api/v1/roles/%lld", (long long)a);
    s_bad(node, "DELETE", body, NULL, 409, "conflict", NULL);
    snprintf(body, sizeof body, "{\"name\":\"team\",\"team_type_id\":%lld}", (long long)pipe);
    int64_t team = s_create(node, "/api/v1/teams", body);
    s_bad(node, "DELETE", path, NULL, 409, "conflict", NULL);
    snprintf(body, sizeof body, "/api/v1/teams/%lld", (long long)team);
    assert_int_equal(tn_call(node, &r, "DELETE", body, NULL), 204);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 204);
    tn_resp_free(&r);
    rows = tn_sql(node, "SELECT count(*) FROM team_type_roles");
    assert_string_equal(rows, "0");
    free(rows);
    s_bad(node, "GET", path, NULL, 404, "not_found", NULL);
}

static void
test_teams_and_members(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    //  Agents come from the agents family; here they are plain rows.
    free(tn_sql(node, "INSERT INTO agents (name, kind) VALUES ('ann', 'echo'), ('bob', 'echo'),"
                      " ('cy', 'echo') RETURNING name"));
    int64_t a = s_create(node, "/api/v1/roles", "{\"name\":\"a\"}");
    int64_t b = s_create(node, "/api/v1/roles", "{\"name\":\"b\"}");
    char body[512], path[96], mpath[160];
    snprintf(body, sizeof body, "{\"name\":\"tt\",\"roles\":[%lld,%lld]}", (long long)a,
             (long long)b);
    int64_t tt = s_create(node, "/api/v1/team-types", body);
    int64_t other_tt = s_create(node, "/api/v1/team-types", "{\"name\":\"other\"}");

    snprintf(body, sizeof body,
             "{\"name\":\"red\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"bob\",\"role_id\":"
             "%lld},{\"agent\":\"ann\",\"role_id\":%lld}]}",
             (long long)tt, (long long)b, (long long)a);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/teams", body), 201);
    int64_t red = s_id(&r);
    assert_int_equal(json_integer_value(json_object_get(r.json, "team_type_id")), tt);
    json_t *members = json_object_get(r.json, "members");
    assert_int_equal(json_array_size(members), 2);
    tn_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/teams/%lld", (long long)red);
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    members = json_object_get(r.json, "members");
    assert_int_equal(json_array_size(members), 2);
    //  Joined together: by name.
    assert_string_equal(json_string_value(json_object_get(json_array_get(members, 0), "agent")),
                        "ann");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(members, 0), "role_id")), a);
    tn_resp_free(&r);

    //  Bad creates and patches: named, and nothing changes.
    snprintf(body, sizeof body, "{\"name\":\"x\",\"team_type_id\":999}");
    s_bad(node, "POST", "/api/v1/teams", body, 400, "validation_failed", "team_type_id");
    snprintf(body, sizeof body,
             "{\"name\":\"x\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"ghost\",\"role_id\":"
             "%lld}]}",
             (long long)tt, (long long)a);
    s_bad(node, "POST", "/api/v1/teams", body, 400, "validation_failed", "members");
    snprintf(body, sizeof body,
             "{\"name\":\"x\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"ann\",\"role_id\":"
             "999}]}",
             (long long)tt);
    s_bad(node, "POST", "/api/v1/teams", body, 400, "validation_failed", "members");
    snprintf(body, sizeof body,
             "{\"name\":\"x\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"ann\",\"role_id\":"
             "%lld},{\"agent\":\"ann\",\"role_id\":%lld}]}",
             (long long)tt, (long long)a, (long long)b);
    s_bad(node, "POST", "/api/v1/teams", body, 400, "validation_failed", "members");
    static const char *const shapes[] = {
        "[1]",
        "[{\"agent\":\"ann\"}]",
        "[{\"agent\":\"ann\",\"role_id\":\"1\"}]",
        "[{\"agent\":\"ann\",\"role_id\":1,\"x\":1}]",
        "[{\"agent\":\"\",\"role_id\":1}]",
        "[{\"agent\":7,\"role_id\":1}]",
        "{\"agent\":\"ann\",\"role_id\":1}",
        "null",
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        snprintf(body, sizeof body, "{\"name\":\"x\",\"team_type_id\":%lld,\"members\":%s}",
                 (long long)tt, shapes[i]);
        s_bad(node, "POST", "/api/v1/teams", body, 400, "validation_failed", "members");
        snprintf(body, sizeof body, "{\"members\":%s}", shapes[i]);
        s_bad(node, "PATCH", path, body, 400, "validation_failed", "members");
    }
    snprintf(body, sizeof body, "{\"name\":\"red\",\"team_type_id\":%lld}", (long long)tt);
    s_bad(node, "POST", "/api/v1/teams", body, 409, "conflict", NULL);
    s_bad(node, "POST", "/api/v1/teams", "{\"name\":\"x\"}", 400, "validation_failed",
          "team_type_id");
    s_bad(node, "PATCH", path, "{\"team_type_id\":999}", 400, "validation_failed", "team_type_id");
    s_bad(node, "PATCH", path, "{\"name\":\"y\",\"members\":[{\"agent\":\"ghost\",\"role_id\":1}]}",
          400, "validation_failed", "members");
    s_bad(node, "PATCH", "/api/v1/teams/999", "{\"name\":\"y\"}", 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/teams/999", NULL, 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/teams/1e3", NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", "/api/v1/teams/999", NULL, 404, "not_found", NULL);

    //  Patch: the type changes; members replace (one stays in its place).
    snprintf(body, sizeof body,
             "{\"team_type_id\":%lld,\"members\":[{\"agent\":\"cy\",\"role_id\":%lld},"
             "{\"agent\":\"ann\",\"role_id\":%lld}]}",
             (long long)other_tt, (long long)a, (long long)b);
    assert_int_equal(tn_call(node, &r, "PATCH", path, body), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "team_type_id")), other_tt);
    members = json_object_get(r.json, "members");
    assert_int_equal(json_array_size(members), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(members, 0), "agent")),
                        "ann");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(members, 0), "role_id")), b);
    assert_string_equal(json_string_value(json_object_get(json_array_get(members, 1), "agent")),
                        "cy");
    tn_resp_free(&r);
    char *count = tn_sql(node, "SELECT string_agg(agent, ',' ORDER BY agent) FROM team_members");
    assert_string_equal(count, "ann,cy");
    free(count);

    //  Members: add (201, Location), change a role, remove.
    snprintf(mpath, sizeof mpath, "%s/members", path);
    snprintf(body, sizeof body, "{\"agent\":\"bob\",\"role_id\":%lld}", (long long)a);
    assert_int_equal(tn_call(node, &r, "POST", mpath, body), 201);
    char loc[160], want[192];
    snprintf(want, sizeof want, "%s/bob", mpath);
    assert_non_null(tn_header(&r, "location", loc, sizeof loc));
    assert_string_equal(loc, want);
    assert_int_equal(s_id(&r), red);
    assert_int_equal(json_array_size(json_object_get(r.json, "members")), 3);
    tn_resp_free(&r);
    snprintf(body, sizeof body, "{\"agent\":\"bob\",\"role_id\":%lld}", (long long)b);
    assert_int_equal(tn_call(node, &r, "POST", mpath, body), 201);
    members = json_object_get(r.json, "members");
    assert_int_equal(json_array_size(members), 3);
    tn_resp_free(&r);
    count = tn_sql(node, "SELECT role_id FROM team_members WHERE agent = 'bob'");
    snprintf(want, sizeof want, "%lld", (long long)b);
    assert_string_equal(count, want);
    free(count);

    snprintf(body, sizeof body, "{\"agent\":\"ghost\",\"role_id\":%lld}", (long long)a);
    s_bad(node, "POST", mpath, body, 400, "validation_failed", "agent");
    s_bad(node, "POST", mpath, "{\"agent\":\"ann\",\"role_id\":999}", 400, "validation_failed",
          "role_id");
    s_bad(node, "POST", mpath, "{\"agent\":\"ann\"}", 400, "validation_failed", "role_id");
    s_bad(node, "POST", mpath, "{\"role_id\":1}", 400, "validation_failed", "agent");
    s_bad(node, "POST", mpath, "{\"agent\":\"ann\",\"role_id\":1,\"x\":1}", 400,
          "validation_failed", "x");
    s_bad(node, "POST", mpath, "{\"agent\":\"ann\",\"role_id\":-1}", 400, "validation_failed",
          "role_id");
    s_bad(node, "POST", "/api/v1/teams/999/members", body, 404, "not_found", NULL);
    snprintf(body, sizeof body, "{\"agent\":\"ann\",\"role_id\":%lld}", (long long)a);
    s_bad(node, "POST", "/api/v1/teams/999/members", body, 404, "not_found", NULL);
    s_bad(node, "POST", "/api/v1/teams/zz/members", body, 404, "not_found", NULL);

    snprintf(want, sizeof want, "%s/bob", mpath);
    assert_int_equal(tn_call(node, &r, "DELETE", want, NULL), 204);
    tn_resp_free(&r);
    s_bad(node, "DELETE", want, NULL, 404, "not_found", NULL);
    s_bad(node, "DELETE", "/api/v1/teams/999/members/ann", NULL, 404, "not_found", NULL);
    snprintf(want, sizeof want, "%s/ghost", mpath);
    s_bad(node, "DELETE", want, NULL, 404, "not_found", NULL);
    snprintf(want, sizeof want, "%s/%%41nn", mpath); //  "Ann": names are lower case
    s_bad(node, "DELETE", want, NULL, 404, "not_found", NULL);
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "members")), 2);
    tn_resp_free(&r);

    //  A role with members cannot go; a deleted agent leaves its teams.
    snprintf(body, sizeof body, "/api/v1/roles/%lld", (long long)b);
    s_bad(node, "DELETE", body, NULL, 409, "conflict", NULL);
    free(tn_sql(node, "DELETE FROM agents WHERE name = 'cy' RETURNING name"));
    assert_int_equal(tn_call(node, &r, "GET", path, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "members")), 1);
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "DELETE", path, NULL), 204);
    tn_resp_free(&r);
    s_bad(node, "GET", path, NULL, 404, "not_found", NULL);
    count = tn_sql(node, "SELECT count(*) FROM team_members");
    assert_string_equal(count, "0");
    free(count);
}

static void
test_catalog_pagination(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    char body[128];
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof body, "{\"name\":\"r%d\"}", i);
        int64_t role = s_create(node, "/api/v1/roles", body);
        snprintf(body, sizeof body, "{\"name\":\"tt%d\",\"roles\":[%lld]}", i, (long long)role);
        int64_t tt = s_create(node, "/api/v1/team-types", body);
        snprintf(body, sizeof body, "{\"name\":\"t%d\",\"team_type_id\":%lld}", i, (long long)tt);
        s_create(node, "/api/v1/teams", body);
    }
    assert_int_equal(s_page_all(node, "/api/v1/roles"), 5);
    assert_int_equal(s_page_all(node, "/api/v1/team-types"), 5);
    assert_int_equal(s_page_all(node, "/api/v1/teams"), 5);
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/teams", NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 5);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    tn_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_templates_crud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_templates_errors_change_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_templates_pagination, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_roles, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_team_types, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_teams_and_members, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_catalog_pagination, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
