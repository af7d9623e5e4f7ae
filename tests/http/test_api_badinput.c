/* label: integration */
/*  test_api_badinput: bad input over EVERY route of the route table, on a
    real node. For each route it sends what a careless or hostile client
    sends — garbage JSON, JSON that is not an object, truncated JSON,
    invalid UTF-8, absurd nesting, integers beyond 64 bits, unknown fields,
    each field with a wrong type or out of its bounds, a non-JSON content
    type, malformed ids, negative and huge limits, unknown cursors, broken
    percent-escapes — and checks that each gets a 4xx with an API.md error
    body ({"error": {code, message, details}}) and a code that says what
    was wrong, that nothing answers 5xx, that the node keeps serving, and
    that no table changed (row counts and a checksum of every table before
    and after).

    The table is walked, not listed: a route added later is covered by
    this test the day it is added. */
#include "cd_routes.h"
#include "cd_testnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  What every table holds, as one text: a change anywhere changes it.
static char *
s_snapshot(const tn_node_t *node)
{
    return tn_sql(
        node, "SELECT string_agg(t || ':' || n, ',' ORDER BY t) FROM ("
              " SELECT c.relname AS t, (xpath('/row/n/text()', query_to_xml("
              " format('SELECT count(*) || ''/'' || coalesce(sum(hashtext(x::text)), 0) AS n"
              " FROM %I x', c.relname), false, true, '')))[1]::text AS n"
              " FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace"
              " WHERE c.relkind = 'r' AND s.nspname = 'public'"
              " AND c.relname NOT IN ('idempotency_keys', 'persist_requests', 'audit_logs')) q");
}

//  Builds a concrete path from a pattern: {param} -> value.
static void
s_path(const char *pattern, const char *value, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = pattern; *p && n + 1 < size;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            n += (size_t)snprintf(out + n, size - n, "%s", value);
            p = end ? end + 1 : p + strlen(p);
        } else {
            out[n++] = *p++;
        }
    }
    out[n < size ? n : size - 1] = '\0';
}

typedef struct {
    int checked;  //  requests sent
    int failures; //  wrong answers (printed)
} s_tally_t;

//  Sends one request and checks the answer is a 4xx error body whose code
//  is one of codes (comma list; NULL: any) and, if want is non-zero, that
//  exact status.
static void
s_expect(const tn_node_t *node, s_tally_t *tally, const char *method, const char *path,
         const char *body, const char *content_type, long want, const char *codes)
{
    const char *headers[] = {content_type, NULL};
    tn_resp_t r;
    long status = tn_request(node, method, path, body, content_type ? headers : NULL, &r);
    tally->checked++;
    const char *code = tn_error_code(&r);
    bool ok = status >= 400 && status < 500 && (want == 0 || status == want) && *code &&
              json_is_string(json_object_get(json_object_get(r.json, "error"), "message")) &&
              json_is_object(json_object_get(json_object_get(r.json, "error"), "details"));
    if (ok && codes) {
        char list[128];
        snprintf(list, sizeof list, ",%s,", codes);
        char needle[64];
        snprintf(needle, sizeof needle, ",%s,", code);
        ok = strstr(list, needle) != NULL;
    }
    if (!ok) {
        tally->failures++;
        fprintf(stderr, "BAD ANSWER %s %s body=%.80s -> %ld %.300s\n", method, path,
                body ? body : "(none)", status, r.body);
    }
    tn_resp_free(&r);
}

//  A value of the wrong type for a field.
static const char *
s_wrong(cd_json_type_t type)
{
    switch (type) {
    case CD_JSON_STRING:
        return "12345";
    case CD_JSON_INTEGER:
        return "\"seven\"";
    case CD_JSON_NUMBER:
        return "\"seven\"";
    case CD_JSON_BOOLEAN:
        return "\"yes\"";
    case CD_JSON_OBJECT:
        return "[1,2]";
    case CD_JSON_ARRAY:
        return "{\"a\":1}";
    default:
        return NULL;
    }
}

//  The bodies every route with a schema must refuse.
static void
s_bad_bodies(const tn_node_t *node, s_tally_t *tally, const cd_route_t *route, const char *path)
{
    static const char *const garbage[] = {
        "this is not json",
        "{\"a\":",
        "{\"a\":1}}",
        "{\"a\":1,\"a\":2}",
        "\"just a string\"",
        "[1,2,3]",
        "null",
        "{\"name\":\"\xff\xfe\"}",
        "{\"n\":99999999999999999999999}",
        "{\"s\":\"a\\u0000b\"}",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        s_expect(node, tally, route->method, path, garbage[i], NULL, 400,
                 "invalid_json,validation_failed");
    }
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 150; i++) {
        deep[n++] = '[';
    }
    for (int i = 0; i < 150; i++) {
        deep[n++] = ']';
    }
    deep[n] = '\0';
    char body[600];
    snprintf(body, sizeof body, "{\"x\":%s}", deep);
    s_expect(node, tally, route->method, path, body, NULL, 400, "invalid_json,validation_failed");
    bool open_schema = false; //  a schema that takes any key (PATCH /config)
    for (size_t f = 0; f < route->body->n_fields; f++) {
        open_schema = open_schema || strcmp(route->body->fields[f].name, CD_JSON_OTHER_KEYS) == 0;
    }
    if (!open_schema) {
        s_expect(node, tally, route->method, path, "{\"no_such_field_here\":1}", NULL, 400,
                 "validation_failed");
    }
    s_expect(node, tally, route->method, path, "{}", "Content-Type: text/plain", 415,
             "unsupported_media_type");
    const cd_json_schema_t *schema = route->body;
    for (size_t f = 0; f < schema->n_fields; f++) {
        const cd_json_field_t *field = &schema->fields[f];
        if (strcmp(field->name, CD_JSON_OTHER_KEYS) == 0) {
            continue;
        }
        const char *wrong = s_wrong(field->type);
        if (wrong) {
            snprintf(body, sizeof body, "{\"%s\":%s}", field->name, wrong);
            s_expect(node, tally, route->method, path, body, NULL, 400, "validation_failed");
        }
        if (!field->nullable) {
            snprintf(body, sizeof body, "{\"%s\":null}", field->name);
            s_expect(node, tally, route->method, path, body, NULL, 400, "validation_failed");
        }
        if (field->type == CD_JSON_INTEGER && field->max > field->min) {
            snprintf(body, sizeof body, "{\"%s\":%lld}", field->name, (long long)field->min - 1);
            s_expect(node, tally, route->method, path, body, NULL, 400, "validation_failed");
            if (field->max < INT64_MAX) {
                snprintf(body, sizeof body, "{\"%s\":%lld}", field->name,
                         (long long)field->max + 1);
                s_expect(node, tally, route->method, path, body, NULL, 400, "validation_failed");
            }
        }
    }
}

static void
test_every_route_refuses_bad_input(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    //  One of each object, so that item routes also meet real ids.
    tn_resp_t r;
    tn_call(node, &r, "POST", "/api/v1/templates", "{\"name\":\"t\",\"body\":\"x\"}");
    tn_resp_free(&r);
    tn_call(node, &r, "POST", "/api/v1/agents", "{\"name\":\"a\",\"kind\":\"echo\"}");
    tn_resp_free(&r);
    char *before = s_snapshot(node);
    assert_non_null(before);
    //  Audit rows are written after the answer (the sign-in and the two
    //  creates): wait until their count holds still.
    char *audited = tn_sql(node, "SELECT count(*) FROM audit_logs");
    for (int i = 0; i < 50; i++) {
        usleep(100000);
        char *again = tn_sql(node, "SELECT count(*) FROM audit_logs");
        bool still = audited && again && strcmp(audited, again) == 0 && strcmp(again, "0") != 0;
        free(audited);
        audited = again;
        if (still) {
            break;
        }
    }
    assert_non_null(audited);

    s_tally_t tally = {0};
    int routes = 0;
    for (size_t t = 1; t < cd_http_n_route_tables; t++) {
        for (size_t i = 0; i < *cd_http_route_tables[t].n; i++) {
            const cd_route_t *route = &cd_http_route_tables[t].routes[i];
            bool has_param = strchr(route->pattern, '{') != NULL;
            char path[256];
            routes++;
            if (route->body) {
                //  The first existing object (id 1, agent "a"), and one that is not.
                s_path(route->pattern, strstr(route->pattern, "{name}") ? "a" : "1", path,
                       sizeof path);
                s_bad_bodies(node, &tally, route, path);
            }
            if (has_param) {
                static const char *const bad_ids[] = {
                    "0", "-1", "abc", "99999999999999999999999", "%ZZ", "1%00"};
                for (size_t b = 0; b < sizeof bad_ids / sizeof bad_ids[0]; b++) {
                    s_path(route->pattern, bad_ids[b], path, sizeof path);
                    const char *body = route->body ? "{}" : NULL;
                    //  An id that cannot exist is 404, or 400 when the body is
                    //  checked first (a required field is missing from {}).
                    s_expect(node, &tally, route->method, path, body, NULL, 0,
                             "not_found,validation_failed");
                }
            }
            if (streq(route->method, "GET")) {
                static const char *const queries[] = {
                    "?limit=-1",   "?limit=0",    "?limit=abc",   "?limit=99999999999999999999",
                    "?limit=1001", "?cursor=%%%", "?cursor=zz%ZZ"};
                s_path(route->pattern, strstr(route->pattern, "{name}") ? "a" : "1", path,
                       sizeof path);
                for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
                    char full[320];
                    snprintf(full, sizeof full, "%s%s", path, queries[q]);
                    //  Routes that read no limit may ignore it: only check
                    //  that nothing breaks (a 2xx is fine there).
                    tn_resp_t q_r;
                    long status = tn_request(node, "GET", full, NULL, NULL, &q_r);
                    tally.checked++;
                    if (status >= 500 || status == 0) {
                        tally.failures++;
                        fprintf(stderr, "BAD ANSWER GET %s -> %ld %.200s\n", full, status,
                                q_r.body);
                    }
                    tn_resp_free(&q_r);
                }
            }
        }
    }
    fprintf(stderr, "bad input: %d routes, %d requests, %d wrong answers\n", routes, tally.checked,
            tally.failures);
    assert_true(routes > 0);
    assert_int_equal(tally.failures, 0);

    //  Still serving, and nothing changed.
    assert_int_equal(tn_call(node, &r, "GET", "/health", NULL), 200);
    tn_resp_free(&r);
    char *after = s_snapshot(node);
    assert_non_null(after);
    //  A refused request is no change: nothing more was audited.
    usleep(200000);
    char *audited_after = tn_sql(node, "SELECT count(*) FROM audit_logs");
    assert_string_equal(audited_after, audited);
    free(audited_after);
    free(audited);
    if (strcmp(before, after) != 0) {
        fail_msg("state changed:\nbefore %s\nafter  %s", before, after);
    }
    free(before);
    free(after);
}

//  The list routes read limit and cursor: bad ones are 400 naming them.
static void
test_list_routes_check_limit_and_cursor(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    s_tally_t tally = {0};
    for (size_t t = 1; t < cd_http_n_route_tables; t++) {
        for (size_t i = 0; i < *cd_http_route_tables[t].n; i++) {
            const cd_route_t *route = &cd_http_route_tables[t].routes[i];
            if (!streq(route->method, "GET") || strchr(route->pattern, '{') ||
                !route->response_schema || !strstr(route->response_schema, "next_cursor")) {
                continue;
            }
            static const char *const queries[] = {"?limit=-1", "?limit=abc", "?limit=1001",
                                                  "?cursor=%25%25"};
            for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
                char full[320];
                snprintf(full, sizeof full, "%s%s", route->pattern, queries[q]);
                s_expect(node, &tally, "GET", full, NULL, NULL, 400, "validation_failed");
            }
        }
    }
    assert_int_equal(tally.failures, 0);
    assert_true(tally.checked > 0);
}

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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_route_refuses_bad_input, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_list_routes_check_limit_and_cursor, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
