/* label: integration */
/*  test_api_hitl: human-in-the-loop requests over HTTP/2 against a real
    node (cd_testnode) on a real PostgreSQL: lists and their filters, one
    request, a project's requests, answers (the task resumes after the
    last one, with history and events), conflicts, and bad input that
    changes nothing. Agents that ask questions come later: requests are
    made with SQL here. */
#include "cd_testnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    tn_node_t *node;   //  the node
    long long project; //  a project
    long long waiting; //  its task, waiting_human, with two pending requests
    long long other;   //  a task without a project, todo
    long long h1, h2;  //  the waiting task's pending requests
    long long h3, h4;  //  the other task's answered and expired requests
} fx_t;

//  SQL returning one integer.
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

//  SQL returning one text; compared with want.
static void
s_sql_is(const tn_node_t *node, const char *sql, const char *want)
{
    char *text = tn_sql(node, sql);
    if (!text || strcmp(text, want) != 0) {
        fail_msg("%s: got '%s', want '%s'", sql, text ? text : "(null)", want);
    }
    free(text);
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
    tn_node_t *n = fx->node;
    char sql[512];
    fx->project = s_sql_int(n, "INSERT INTO projects (name) VALUES ('p') RETURNING id");
    snprintf(sql, sizeof sql,
             "INSERT INTO tasks (title, assignee, project_id, status, timeout_ms)"
             " VALUES ('w', '{\"agent\":\"coder\"}', %lld, 'waiting_human', 60000) RETURNING id",
             fx->project);
    fx->waiting = s_sql_int(n, sql);
    fx->other = s_sql_int(n, "INSERT INTO tasks (title, assignee) VALUES ('o', '{\"role\":\"r\"}')"
                             " RETURNING id");
    snprintf(sql, sizeof sql,
             "INSERT INTO hitl_requests (task_id, project_id, agent, question, options, deadline)"
             " VALUES (%lld, %lld, 'coder', 'Deploy?', '[\"yes\",\"no\"]',"
             " now() + interval '1 hour') RETURNING id",
             fx->waiting, fx->project);
    fx->h1 = s_sql_int(n, sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO hitl_requests (task_id, project_id, agent, question)"
             " VALUES (%lld, %lld, 'coder', 'Really?') RETURNING id",
             fx->waiting, fx->project);
    fx->h2 = s_sql_int(n, sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO hitl_requests (task_id, question, status, response, answered_at)"
             " VALUES (%lld, 'Old?', 'answered', '\"ok\"', now()) RETURNING id",
             fx->other);
    fx->h3 = s_sql_int(n, sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO hitl_requests (task_id, question, status)"
             " VALUES (%lld, 'Late?', 'expired') RETURNING id",
             fx->other);
    fx->h4 = s_sql_int(n, sql);
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

//  The ids of a list answer's items, in order; returns how many.
static int
s_ids(const tn_resp_t *r, long long *ids, int max)
{
    json_t *items = json_object_get(r->json, "items");
    assert_true(json_is_array(items));
    int n = 0;
    for (size_t i = 0; i < json_array_size(items) && n < max; i++) {
        ids[n++] = (long long)json_integer_value(json_object_get(json_array_get(items, i), "id"));
    }
    return n;
}

//  GET path; asserts 200 and returns how many items (their ids in ids).
static int
s_list(const tn_node_t *node, const char *path, long long *ids, int max)
{
    tn_resp_t r;
    if (tn_call(node, &r, "GET", path, NULL) != 200) {
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    }
    int n = s_ids(&r, ids, max);
    tn_resp_free(&r);
    return n;
}

//  The error's details.field, or "".
static const char *
s_field(const tn_resp_t *r)
{
    const char *f = json_string_value(
        json_object_get(json_object_get(json_object_get(r->json, "error"), "details"), "field"));
    return f ? f : "";
}

//  Asserts a request answers status with error code (and field, if not NULL).
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

//  Everything an answer could change, as one text.
static char *
s_fingerprint(const tn_node_t *node)
{
    return tn_sql(node, "SELECT md5((SELECT coalesce(string_agg(h::text, ',' ORDER BY id), '')"
                        " FROM hitl_requests h) || (SELECT coalesce(string_agg(t::text, ','"
                        " ORDER BY id), '') FROM tasks t) || (SELECT count(*) FROM events)"
                        " || (SELECT count(*) FROM task_events))");
}

static void
test_hitl_lists_and_filters(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *n = fx->node;
    long long ids[8];
    assert_int_equal(s_list(n, "/api/v1/hitl", ids, 8), 4);
    assert_true(ids[0] == fx->h4 && ids[3] == fx->h1); //  newest first
    assert_int_equal(s_list(n, "/api/v1/hitl?status=pending", ids, 8), 2);
    assert_true(ids[0] == fx->h2 && ids[1] == fx->h1);
    assert_int_equal(s_list(n, "/api/v1/hitl?status=answered", ids, 8), 1);
    assert_true(ids[0] == fx->h3);
    assert_int_equal(s_list(n, "/api/v1/hitl?status=cancelled", ids, 8), 0);
    char path[160];
    snprintf(path, sizeof path, "/api/v1/hitl?project_id=%lld", fx->project);
    assert_int_equal(s_list(n, path, ids, 8), 2);
    snprintf(path, sizeof path, "/api/v1/hitl?task_id=%lld&status=expired", fx->other);
    assert_int_equal(s_list(n, path, ids, 8), 1);
    assert_true(ids[0] == fx->h4);

    //  Pages of one, through the cursor.
    snprintf(path, sizeof path, "/api/v1/hitl?limit=1");
    int seen = 0;
    while (true) {
        tn_resp_t r;
        assert_int_equal(tn_call(n, &r, "GET", path, NULL), 200);
        seen += s_ids(&r, ids, 8);
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!next) {
            tn_resp_free(&r);
            break;
        }
        snprintf(path, sizeof path, "/api/v1/hitl?limit=1&cursor=%s", next);
        tn_resp_free(&r);
    }
    assert_int_equal(seen, 4);

    //  One request, in full.
    tn_resp_t r;
    snprintf(path, sizeof path, "/api/v1/hitl/%lld", fx->h1);
    assert_int_equal(tn_call(n, &r, "GET", path, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "task_id")), fx->waiting);
    assert_int_equal(json_integer_value(json_object_get(r.json, "project_id")), fx->project);
    assert_string_equal(json_string_value(json_object_get(r.json, "agent")), "coder");
    assert_string_equal(json_string_value(json_object_get(r.json, "question")), "Deploy?");
    assert_int_equal(json_array_size(json_object_get(r.json, "options")), 2);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "pending");
    assert_string_equal(json_string_value(json_object_get(r.json, "on_timeout")), "deny");
    assert_non_null(json_string_value(json_object_get(r.json, "deadline")));
    assert_true(json_is_null(json_object_get(r.json, "response")));
    assert_true(json_is_null(json_object_get(r.json, "answered_at")));
    tn_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/hitl/%lld", fx->h4 + 100);
    s_expect(n, "GET", path, NULL, 404, "not_found", NULL);
    s_expect(n, "GET", "/api/v1/hitl/abc", NULL, 404, "not_found", NULL);
    s_expect(n, "GET", "/api/v1/hitl/0", NULL, 404, "not_found", NULL);
    s_expect(n, "GET", "/api/v1/hitl/-3", NULL, 404, "not_found", NULL);

    //  A project's requests.
    snprintf(path, sizeof path, "/api/v1/projects/%lld/hitl", fx->project);
    assert_int_equal(s_list(n, path, ids, 8), 2);
    snprintf(path, sizeof path, "/api/v1/projects/%lld/hitl?status=answered", fx->project);
    assert_int_equal(s_list(n, path, ids, 8), 0);
    snprintf(path, sizeof path, "/api/v1/projects/%lld/hitl?limit=1", fx->project);
    assert_int_equal(tn_call(n, &r, "GET", path, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_non_null(json_string_value(json_object_get(r.json, "next_cursor")));
    tn_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/projects/%lld/hitl", fx->project + 100);
    s_expect(n, "GET", path, NULL, 404, "not_found", NULL);
    s_expect(n, "GET", "/api/v1/projects/x/hitl", NULL, 404, "not_found", NULL);
    //  A project whose requests are none is an empty list, not a 404.
    long long empty = s_sql_int(n, "INSERT INTO projects (name) VALUES ('e') RETURNING id");
    snprintf(path, sizeof path, "/api/v1/projects/%lld/hitl", empty);
    assert_int_equal(s_list(n, path, ids, 8), 0);
}

static void
test_hitl_respond_resumes_after_the_last(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *n = fx->node;
    char path[160], sql[256];
    tn_resp_t r;

    //  The first answer: answered, the task still waits for the second.
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", fx->h1);
    assert_int_equal(tn_call(n, &r, "POST", path,
                             "{\"response\":{\"choice\":\"yes\",\"n\":0.1,\"big\":1e400},"
                             "\"approved\":true}"),
                     400); //  1e400 is no JSON number jansson (or anyone) can hold
    tn_resp_free(&r);
    assert_int_equal(
        tn_call(n, &r, "POST", path,
                "{\"response\":{\"choice\":\"yes\",\"n\":0.1,\"exact\":1.10},\"approved\":true}"),
        200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "answered");
    assert_true(json_is_true(json_object_get(r.json, "approved")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "response"), "choice")), "yes");
    assert_non_null(json_string_value(json_object_get(r.json, "answered_at")));
    assert_null(json_object_get(r.json, "conflict"));
    tn_resp_free(&r);
    //  Committed before the 200, and numbers kept as the client wrote them.
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || (response ->> 'n') || ' ' || (response ->> 'exact')"
             " FROM hitl_requests WHERE id = %lld",
             fx->h1);
    s_sql_is(n, sql, "answered 0.1 1.10");
    snprintf(sql, sizeof sql, "SELECT status FROM tasks WHERE id = %lld", fx->waiting);
    s_sql_is(n, sql, "waiting_human");
    snprintf(sql, sizeof sql,
             "SELECT kind || ' ' || status || ' ' || to_agent || ' ' || (payload ->> 'hitl_id')"
             " FROM task_events WHERE task_id = %lld ORDER BY seq",
             fx->waiting);
    char want[96];
    snprintf(want, sizeof want, "hitl_answered waiting_human coder %lld", fx->h1);
    s_sql_is(n, sql, want);
    snprintf(sql, sizeof sql,
             "SELECT type || ' ' || task_id || ' ' || project_id || ' ' || agent || ' '"
             " || (data ->> 'id') || ' ' || (data ->> 'task_resumed') FROM events ORDER BY id");
    snprintf(want, sizeof want, "hitl.answered %lld %lld coder %lld false", fx->waiting,
             fx->project, fx->h1);
    s_sql_is(n, sql, want);

    //  Again: 409, and nothing more is written.
    char *before = s_fingerprint(n);
    assert_int_equal(tn_call(n, &r, "POST", path, "{\"response\":\"no\"}"), 409);
    assert_string_equal(tn_error_code(&r), "conflict");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(r.json, "error"), "details"), "status")),
        "answered");
    tn_resp_free(&r);
    char *after = s_fingerprint(n);
    assert_string_equal(before, after);
    free(before);
    free(after);

    //  The last answer (a bare string, no approval): the task resumes,
    //  leased to this node.
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", fx->h2);
    assert_int_equal(tn_call(n, &r, "POST", path, "{\"response\":\"go\"}"), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "response")), "go");
    assert_true(json_is_null(json_object_get(r.json, "approved")));
    tn_resp_free(&r);
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || lease_owner || ' ' || (lease_expires_at > now())"
             " FROM tasks WHERE id = %lld",
             fx->waiting);
    snprintf(want, sizeof want, "in_progress %s true", cd_node_id(n->node));
    s_sql_is(n, sql, want);
    snprintf(sql, sizeof sql,
             "SELECT string_agg(kind || ':' || status, ',' ORDER BY seq) FROM task_events"
             " WHERE task_id = %lld",
             fx->waiting);
    s_sql_is(n, sql, "hitl_answered:waiting_human,hitl_answered:in_progress");
    s_sql_is(n,
             "SELECT string_agg(data ->> 'task_resumed', ',' ORDER BY id) FROM events"
             " WHERE type = 'hitl.answered'",
             "false,true");

    //  Requests that are not pending: 409 naming their status.
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", fx->h4);
    assert_int_equal(tn_call(n, &r, "POST", path, "{\"response\":null}"), 409);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(r.json, "error"), "details"), "status")),
        "expired");
    tn_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", fx->h3);
    s_expect(n, "POST", path, "{\"response\":1}", 409, "conflict", NULL);
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", fx->h4 + 100);
    s_expect(n, "POST", path, "{\"response\":1}", 404, "not_found", NULL);
    s_expect(n, "POST", "/api/v1/hitl/abc/respond", "{\"response\":1}", 404, "not_found", NULL);
    s_sql_is(n, "SELECT count(*) FROM events", "2");
}

static void
test_hitl_respond_null_and_idempotency_key(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *n = fx->node;
    char path[160], sql[160];
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", fx->h1);
    static const char *const key[] = {"Idempotency-Key: answer-1", NULL};
    tn_resp_t a, b;
    //  null is an answer too (JSON null, not "no answer").
    assert_int_equal(tn_request(n, "POST", path, "{\"response\":null,\"approved\":false}", key, &a),
                     200);
    assert_int_equal(tn_request(n, "POST", path, "{\"response\":null,\"approved\":false}", key, &b),
                     200); //  the first answer replayed, not a 409
    assert_string_equal(a.body, b.body);
    assert_true(json_is_false(json_object_get(a.json, "approved")));
    tn_resp_free(&a);
    tn_resp_free(&b);
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || jsonb_typeof(response) FROM hitl_requests WHERE id = %lld",
             fx->h1);
    s_sql_is(n, sql, "answered null");
    s_sql_is(n, "SELECT count(*) FROM events", "1");
}

static void
test_hitl_bad_input_changes_nothing(void **state)
{
    fx_t *fx = (fx_t *)*state;
    tn_node_t *n = fx->node;
    char *before = s_fingerprint(n);
    char path[160];
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", fx->h1);
    s_expect(n, "POST", path, NULL, 400, "validation_failed", "response");
    s_expect(n, "POST", path, "{}", 400, "validation_failed", "response");
    s_expect(n, "POST", path, "{\"approved\":true}", 400, "validation_failed", "response");
    s_expect(n, "POST", path, "{\"response\":1,\"approved\":\"yes\"}", 400, "validation_failed",
             "approved");
    s_expect(n, "POST", path, "{\"response\":1,\"approved\":1}", 400, "validation_failed",
             "approved");
    s_expect(n, "POST", path, "{\"response\":1,\"why\":2}", 400, "validation_failed", "why");
    s_expect(n, "POST", path, "{\"response\":1", 400, "invalid_json", NULL);
    s_expect(n, "POST", path, "[1]", 400, "validation_failed", NULL);
    s_expect(n, "POST", path, "{\"response\":1,\"response\":2}", 400, "invalid_json", NULL);
    static const char *const text[] = {"Content-Type: text/plain", NULL};
    tn_resp_t r;
    assert_int_equal(tn_request(n, "POST", path, "{\"response\":1}", text, &r), 415);
    tn_resp_free(&r);
    s_expect(n, "DELETE", path, NULL, 405, "method_not_allowed", NULL);
    s_expect(n, "PATCH", "/api/v1/hitl/1", "{}", 405, "method_not_allowed", NULL);
    s_expect(n, "GET", "/api/v1/hitl?status=open", NULL, 400, "validation_failed", "status");
    s_expect(n, "GET", "/api/v1/hitl?project_id=abc", NULL, 400, "validation_failed", "project_id");
    s_expect(n, "GET", "/api/v1/hitl?project_id=0", NULL, 400, "validation_failed", "project_id");
    s_expect(n, "GET", "/api/v1/hitl?task_id=-1", NULL, 400, "validation_failed", "task_id");
    s_expect(n, "GET", "/api/v1/hitl?limit=0", NULL, 400, "validation_failed", "limit");
    s_expect(n, "GET", "/api/v1/hitl?limit=1001", NULL, 400, "validation_failed", "limit");
    s_expect(n, "GET", "/api/v1/hitl?cursor=zz", NULL, 400, "validation_failed", "cursor");
    snprintf(path, sizeof path, "/api/v1/projects/%lld/hitl?status=x", fx->project);
    s_expect(n, "GET", path, NULL, 400, "validation_failed", "status");
    char *after = s_fingerprint(n);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hitl_lists_and_filters, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hitl_respond_resumes_after_the_last, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_hitl_respond_null_and_idempotency_key, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_hitl_bad_input_changes_nothing, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
