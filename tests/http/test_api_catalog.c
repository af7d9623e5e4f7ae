/* label: integration */
/*  test_api_catalog: templates, roles, team types and teams over HTTP/2
    against a real node (cd_testnode) on a real PostgreSQL. */
#include "cd_testnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_templates_crud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_templates_errors_change_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_templates_pagination, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
