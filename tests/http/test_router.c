/*  cd_router: matching, parameters, 404 vs 405 with Allow, HEAD, strict
    paths, malformed tables refused; and the real route table: every route
    is in the OpenAPI document (generated, and as served), every response
    schema parses, and the document has nothing the table lacks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_openapi.h"
#include "cd_router.h"
#include "cd_api.h"
#include "cd_routes.h"
#include "httptest.h"

static int
s_handler(cd_http_rctx_t *rctx)
{
    return 0;
}

static const cd_route_t s_routes[] = {
    {"GET", "/", s_handler, 0, NULL, NULL, 0, NULL, NULL, NULL},
    {"GET", "/api/v1/agents", s_handler, CD_ROUTE_AUTH, NULL, NULL, 0, NULL, NULL, NULL},
    {"POST", "/api/v1/agents", s_handler, CD_ROUTE_ADMIN, NULL, NULL, 201, NULL, NULL, NULL},
    {"GET", "/api/v1/agents/{name}", s_handler, CD_ROUTE_AUTH, NULL, NULL, 0, NULL, NULL, NULL},
    {"DELETE", "/api/v1/agents/{name}", s_handler, CD_ROUTE_ADMIN, NULL, NULL, 204, NULL, NULL,
     NULL},
    {"POST", "/api/v1/agents/{name}/stop", s_handler, CD_ROUTE_ADMIN, NULL, NULL, 202, NULL, NULL,
     NULL},
    {"DELETE", "/api/v1/teams/{id}/members/{agent}", s_handler, CD_ROUTE_AUTH, NULL, NULL, 204,
     NULL, NULL, NULL},
};

static cd_router_t *
s_router(void)
{
    cd_router_t *router = cd_router_new();
    assert_int_equal(cd_router_add(router, s_routes, sizeof s_routes / sizeof s_routes[0]), 0);
    return router;
}

static cd_route_result_t
s_match(const cd_router_t *router, const char *method, const char *path, cd_route_match_t *match)
{
    return cd_router_match(router, method, strlen(method), path, strlen(path), match);
}

static void
test_router_matches_literals_and_parameters(void **state)
{
    cd_router_t *router = s_router();
    cd_route_match_t match;
    assert_int_equal(s_match(router, "GET", "/", &match), CD_ROUTE_FOUND);
    assert_ptr_equal(match.route, &s_routes[0]);
    assert_int_equal(s_match(router, "POST", "/api/v1/agents", &match), CD_ROUTE_FOUND);
    assert_ptr_equal(match.route, &s_routes[2]);
    assert_int_equal(match.index, 2);
    assert_int_equal(s_match(router, "GET", "/api/v1/agents/coder", &match), CD_ROUTE_FOUND);
    assert_ptr_equal(match.route, &s_routes[3]);
    size_t len = 0;
    const char *name = cd_route_param(&match, "name", &len);
    assert_non_null(name);
    assert_int_equal(len, 5);
    assert_memory_equal(name, "coder", 5);
    assert_null(cd_route_param(&match, "id", NULL));
    assert_int_equal(s_match(router, "DELETE", "/api/v1/teams/7/members/bob", &match),
                     CD_ROUTE_FOUND);
    assert_int_equal(match.n_params, 2);
    assert_memory_equal(cd_route_param(&match, "id", &len), "7", 1);
    assert_memory_equal(cd_route_param(&match, "agent", &len), "bob", 3);
    assert_int_equal(s_match(router, "POST", "/api/v1/agents/x/stop", &match), CD_ROUTE_FOUND);
    assert_ptr_equal(match.route, &s_routes[5]);
    assert_true(cd_route_needs_auth(&s_routes[1]));
    assert_true(cd_route_needs_auth(&s_routes[2]));
    assert_false(cd_route_needs_auth(&s_routes[0]));
    cd_router_destroy(&router);
    cd_router_destroy(&router);
    assert_null(router);
}

static void
test_router_404_405_and_head(void **state)
{
    cd_router_t *router = s_router();
    cd_route_match_t match;
    const char *missing[] = {
        "/api/v1/agents/", "/api/v1/agents//stop",  "/api/v1/agent", "/api/v1/agents/a/b", "//", "",
        "api/v1/agents",   "/api/v1/agents/a/stop/"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        if (s_match(router, "GET", missing[i], &match) != CD_ROUTE_NO_PATH) {
            fail_msg("'%s' matched", missing[i]);
        }
    }
    assert_int_equal(s_match(router, "PUT", "/api/v1/agents", &match), CD_ROUTE_NO_METHOD);
    assert_string_equal(match.allow, "GET, HEAD, POST");
    assert_int_equal(s_match(router, "PATCH", "/api/v1/agents/x", &match), CD_ROUTE_NO_METHOD);
    assert_string_equal(match.allow, "GET, HEAD, DELETE");
    assert_int_equal(s_match(router, "GET", "/api/v1/agents/x/stop", &match), CD_ROUTE_NO_METHOD);
    assert_string_equal(match.allow, "POST");
    assert_int_equal(s_match(router, "HEAD", "/api/v1/agents", &match), CD_ROUTE_FOUND);
    assert_ptr_equal(match.route, &s_routes[1]);
    //  Methods are case-sensitive.
    assert_int_equal(s_match(router, "get", "/api/v1/agents", &match), CD_ROUTE_NO_METHOD);
    cd_router_destroy(&router);
}

static void
test_router_refuses_malformed_tables(void **state)
{
    const char *bad[] = {"",
                         "x",
                         "/a/",
                         "/a//b",
                         "/{}",
                         "/{a",
                         "/a}",
                         "/{a}b",
                         "/x{a}",
                         "/{a{b}}",
                         "/{a}/{b}/{c}/{d}/{e}",
                         "/1/2/3/4/5/6/7/8/9/10/11/12/13"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cd_route_t route = {"GET", bad[i], s_handler, 0, NULL, NULL, 0, NULL, NULL, NULL};
        cd_router_t *router = cd_router_new();
        if (cd_router_add(router, &route, 1) != CD_EINVAL) {
            fail_msg("pattern '%s' accepted", bad[i]);
        }
        assert_int_equal(cd_router_size(router), 0);
        cd_router_destroy(&router);
    }
    cd_router_t *router = s_router();
    assert_int_equal(cd_router_add(router, &s_routes[3], 1), CD_EINVAL); //  routed twice
    assert_int_equal(cd_router_size(router), sizeof s_routes / sizeof s_routes[0]);
    cd_route_t no_handler = {"GET", "/z", NULL, 0, NULL, NULL, 0, NULL, NULL, NULL};
    assert_int_equal(cd_router_add(router, &no_handler, 1), CD_EINVAL);
    cd_router_destroy(&router);
}

//  Every route of router has its operation in doc, and doc has no other.
static void
s_check_document(json_t *doc, const cd_router_t *router)
{
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.0.3");
    size_t operations = 0;
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        operations += json_object_size(item);
    }
    assert_int_equal(operations, cd_router_size(router));
    for (size_t i = 0; i < cd_router_size(router); i++) {
        const cd_route_t *route = cd_router_at(router, i);
        json_t *op = cd_openapi_operation(doc, route);
        if (!op) {
            fail_msg("%s %s is not in the OpenAPI document", route->method, route->pattern);
        }
        assert_non_null(json_object_get(op, "operationId"));
        assert_non_null(json_object_get(op, "responses"));
        assert_non_null(json_object_get(json_object_get(op, "responses"), "default"));
        json_t *security = json_object_get(op, "security");
        assert_int_equal(json_array_size(security), !cd_route_needs_auth(route)       ? 0
                                                    : route->flags & CD_ROUTE_WS_AUTH ? 4
                                                                                      : 2);
        size_t k;
        json_t *scheme;
        json_array_foreach(security, k, scheme)
        {
            //  Every scheme named is defined.
            const char *name = json_object_iter_key(json_object_iter(scheme));
            assert_non_null(json_object_get(
                json_object_get(json_object_get(doc, "components"), "securitySchemes"), name));
        }
        assert_int_equal(json_object_get(op, "requestBody") != NULL, route->body != NULL);
        size_t params = 0;
        for (const char *c = route->pattern; *c; c++) {
            params += *c == '{';
        }
        assert_int_equal(json_array_size(json_object_get(op, "parameters")), params);
    }
}

static void
test_router_every_route_is_in_the_openapi_document(void **state)
{
    cd_router_t *router = cd_router_new();
    assert_int_equal(cd_router_add(router, cd_http_routes, cd_http_n_routes), 0);
    assert_int_equal(cd_router_add(router, s_routes, sizeof s_routes / sizeof s_routes[0]), 0);
    for (size_t i = 0; i < cd_http_n_routes; i++) {
        //  Response schemas are JSON (cd_openapi_document asserts it too).
        json_t *schema = json_loads(cd_http_routes[i].response_schema, 0, NULL);
        assert_non_null(schema);
        json_decref(schema);
        assert_non_null(cd_http_routes[i].summary);
        //  Public: health, metrics, openapi (API.md); everything else needs auth.
        const char *pattern = cd_http_routes[i].pattern;
        bool public = strncmp(pattern, "/health", 7) == 0 || strcmp(pattern, "/metrics") == 0 ||
                      strcmp(pattern, "/openapi.json") == 0;
        assert_int_equal(cd_route_needs_auth(&cd_http_routes[i]), !public);
    }
    json_t *doc = cd_openapi_document(router, "1.2.3");
    s_check_document(doc, router);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "info"), "version")),
                        "1.2.3");
    json_t *op = cd_openapi_operation(doc, &s_routes[6]);
    assert_string_equal(json_string_value(json_object_get(op, "operationId")),
                        "delete_api_v1_teams_id_members_agent");
    assert_true(
        json_is_true(json_object_get(cd_openapi_operation(doc, &s_routes[2]), "x-cadre-admin")));
    //  The WebSocket route names the browser's ways to send credentials.
    for (size_t i = 0; i < cd_http_n_routes; i++) {
        if (strcmp(cd_http_routes[i].pattern, "/ws") == 0) {
            assert_true(cd_http_routes[i].flags & CD_ROUTE_WS_AUTH);
            char *text = json_dumps(
                json_object_get(cd_openapi_operation(doc, &cd_http_routes[i]), "security"), 0);
            assert_non_null(strstr(text, "accessToken"));
            assert_non_null(strstr(text, "webSocketProtocol"));
            free(text);
        } else {
            assert_false(cd_http_routes[i].flags & CD_ROUTE_WS_AUTH);
        }
    }
    json_t *query = json_object_get(
        json_object_get(json_object_get(doc, "components"), "securitySchemes"), "accessToken");
    assert_string_equal(json_string_value(json_object_get(query, "in")), "query");
    assert_string_equal(json_string_value(json_object_get(query, "name")), "access_token");
    json_decref(doc);
    cd_router_destroy(&router);
}

//  Every resource route names an operation some api module serves, has a
//  summary and a JSON response schema, and needs authentication (but
//  signing in and refreshing: API.md's public routes).
static void
test_router_resource_routes_have_operations(void **state)
{
    size_t resource = 0;
    for (size_t t = 1; t < cd_http_n_route_tables; t++) {
        for (size_t i = 0; i < *cd_http_route_tables[t].n; i++) {
            const cd_route_t *route = &cd_http_route_tables[t].routes[i];
            const char *op = (const char *)route->arg;
            if (route->handler == cd_http_route_api && (!op || !cd_api_has_op(op))) {
                fail_msg("%s %s: operation %s is served by no api module", route->method,
                         route->pattern, op ? op : "(none)");
            }
            assert_non_null(route->summary);
            bool public = streq(route->pattern, "/api/v1/auth/login") ||
                          streq(route->pattern, "/api/v1/auth/refresh");
            assert_true(cd_route_needs_auth(route) != public);
            if (route->response_schema) {
                json_t *schema = json_loads(route->response_schema, 0, NULL);
                if (!schema) {
                    fail_msg("%s %s: response schema is not JSON", route->method,
                             route->pattern);
                }
                json_decref(schema);
            }
            resource++;
        }
    }
    assert_true(resource > 0);
}

//  True if a body field's name says it carries a secret.
static bool
s_secret_field(const char *name)
{
    static const char *const words[] = {"password", "secret", "token", "totp"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strstr(name, words[i])) {
            return true;
        }
    }
    return streq(name, "code");
}

//  Idempotency-Key: the api actors ignore it exactly on the routes the
//  table marks (so /openapi.json tells the truth), and on every POST whose
//  body has a field that carries a secret (no fast hash of it is stored).
static void
test_router_idempotency_key_is_ignored_where_a_secret_travels(void **state)
{
    size_t marked = 0;
    for (size_t t = 1; t < cd_http_n_route_tables; t++) {
        for (size_t i = 0; i < *cd_http_route_tables[t].n; i++) {
            const cd_route_t *route = &cd_http_route_tables[t].routes[i];
            const char *op = (const char *)route->arg;
            if (route->handler != cd_http_route_api || !streq(route->method, "POST")) {
                continue;
            }
            bool flagged = (route->flags & CD_ROUTE_NO_IDEM) != 0;
            if (flagged != cd_api_idem_ignored(op)) {
                fail_msg("POST %s (%s): the table says Idempotency-Key is %s, the api actors %s",
                         route->pattern, op, flagged ? "ignored" : "honoured",
                         cd_api_idem_ignored(op) ? "ignore it" : "honour it");
            }
            marked += flagged;
            for (size_t f = 0; route->body && f < route->body->n_fields; f++) {
                if (s_secret_field(route->body->fields[f].name) && !flagged) {
                    fail_msg("POST %s: field %s carries a secret, but Idempotency-Key is "
                             "honoured (its request hash would be stored)",
                             route->pattern, route->body->fields[f].name);
                }
            }
        }
    }
    //  login, refresh, password, MFA setup and verify, users, API keys,
    //  vault init, unlock and lock, connections.
    assert_int_equal(marked, 11);
    assert_true(cd_api_idem_ignored("connections.create"));
    assert_true(cd_api_idem_ignored("vault.init"));
    assert_false(cd_api_idem_ignored("tasks.create"));
    assert_false(cd_api_idem_ignored("connections.list"));
}

static void
test_router_served_document_matches_the_table(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    ht_response_t r;
    assert_int_equal(ht_get(node, "/openapi.json", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    json_t *doc = ht_json(&r);
    assert_non_null(doc);
    cd_router_t *router = cd_router_new();
    for (size_t t = 0; t < cd_http_n_route_tables; t++) {
        assert_int_equal(cd_router_add(router, cd_http_route_tables[t].routes,
                                       *cd_http_route_tables[t].n),
                         0);
    }
    assert_int_equal(cd_router_add(router, opts.extra_routes, opts.n_extra_routes), 0);
    s_check_document(doc, router);
    //  The forwarding route's body schema is published.
    assert_non_null(json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
                                    "ForwardRequest"));
    //  Routes that ignore Idempotency-Key say so; others do not.
    json_t *paths = json_object_get(doc, "paths");
    assert_non_null(
        json_object_get(json_object_get(json_object_get(paths, "/api/v1/connections"), "post"),
                        "x-cadre-idempotency-key"));
    assert_null(json_object_get(json_object_get(json_object_get(paths, "/api/v1/tasks"), "post"),
                                "x-cadre-idempotency-key"));
    json_decref(doc);
    cd_router_destroy(&router);
    ht_response_free(&r);
    ht_node_stop(&node);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_matches_literals_and_parameters),
        cmocka_unit_test(test_router_404_405_and_head),
        cmocka_unit_test(test_router_refuses_malformed_tables),
        cmocka_unit_test(test_router_every_route_is_in_the_openapi_document),
        cmocka_unit_test(test_router_resource_routes_have_operations),
        cmocka_unit_test(test_router_idempotency_key_is_ignored_where_a_secret_travels),
        cmocka_unit_test(test_router_served_document_matches_the_table),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
