/*  The HTTP server core over real HTTP/1.1 and HTTP/2 (libcurl, loopback,
    port 0): health and readiness against a real supervisor tree, calls to
    real echo agents (reply, error, timeout, client gone), error bodies,
    every configured limit, TLS with ALPN, start-up errors and a bounded
    stop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "httptest.h"

#include <pthread.h>
#include <sys/stat.h>

static void
test_http_health_answers_over_h2c_and_http1(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    int protos[] = {HT_H2C, HT_HTTP1};
    for (size_t i = 0; i < 2; i++) {
        ht_response_t r;
        assert_int_equal(ht_get(node, "/health", protos[i], &r), CURLE_OK);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.version,
                         protos[i] == HT_H2C ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_1_1);
        assert_string_equal(r.body, "{\"status\":\"ok\"}");
        char value[128];
        assert_non_null(ht_header(&r, "content-length", value, sizeof value));
        assert_string_equal(value, "15");
        assert_null(ht_header(&r, "transfer-encoding", value, sizeof value));
        assert_non_null(ht_header(&r, "content-type", value, sizeof value));
        assert_non_null(strstr(value, "application/json"));
        ht_response_free(&r);
    }
    ht_node_stop(&node);
}

static void
test_http_unknown_path_is_404_and_wrong_method_405(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    ht_response_t r;
    char code[64], value[128];
    assert_int_equal(ht_get(node, "/nope", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 404);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "not_found");
    ht_response_free(&r);
    //  Strict paths: no trailing slash, no extra segment.
    assert_int_equal(ht_get(node, "/health/", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 404);
    ht_response_free(&r);
    assert_int_equal(ht_get(node, "/health/ready/x", HT_HTTP1, &r), CURLE_OK);
    assert_int_equal(r.status, 404);
    ht_response_free(&r);

    char url[256];
    snprintf(url, sizeof url, "%s/health", node->base);
    assert_int_equal(ht_request("DELETE", url, NULL, 0, NULL, HT_H2C, 5000, &r), CURLE_OK);
    assert_int_equal(r.status, 405);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "method_not_allowed");
    assert_non_null(ht_header(&r, "allow", value, sizeof value));
    assert_string_equal(value, "GET, HEAD");
    ht_response_free(&r);
    //  HEAD is served by the GET route, with the length and no body.
    assert_int_equal(ht_request("HEAD", url, NULL, 0, NULL, HT_HTTP1, 5000, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_non_null(ht_header(&r, "content-length", value, sizeof value));
    assert_string_equal(value, "15");
    ht_response_free(&r);
    ht_node_stop(&node);
}

static json_t *
s_failing(const ht_response_t *r)
{
    json_t *doc = ht_json(r);
    json_t *failing =
        json_object_get(json_object_get(json_object_get(doc, "error"), "details"), "failing");
    json_incref(failing);
    json_decref(doc);
    return failing;
}

static bool
s_contains(json_t *array, const char *text)
{
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        if (json_is_string(item) && strcmp(json_string_value(item), text) == 0) {
            return true;
        }
    }
    return false;
}

static void
test_http_ready_names_the_missing_persist_actor(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    static const char *const core[] = {"root", "agent/plain", NULL};
    opts.core_actors = core;
    ht_node_t *node = ht_node_start(&opts, NULL);
    ht_response_t r;
    char code[64];
    assert_int_equal(ht_get(node, "/health/ready", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "not_ready");
    json_t *failing = s_failing(&r);
    assert_true(s_contains(failing, "persist"));
    assert_false(s_contains(failing, "actors"));
    assert_non_null(strstr(r.body, "no actor named persist"));
    json_decref(failing);
    ht_response_free(&r);

    //  A core actor that stops makes the actors check fail too.
    char why[128];
    assert_int_equal(
        cd_root_call(node->root, "STOP", "", "agent/plain", NULL, 3000, why, sizeof why), 0);
    assert_int_equal(ht_get(node, "/health/ready", HT_HTTP1, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    failing = s_failing(&r);
    assert_true(s_contains(failing, "actors"));
    assert_non_null(strstr(r.body, "agent/plain is"));
    json_decref(failing);
    ht_response_free(&r);
    ht_node_stop(&node);
}

static void
test_http_ready_when_persist_answers_with_the_database_up(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_persist_args_t persist = {.db_ok = true};
    ht_node_t *node = ht_node_start(&opts, &persist);
    ht_response_t r;
    assert_int_equal(ht_get(node, "/health/ready", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ready\"}");
    ht_response_free(&r);

    assert_int_equal(ht_get(node, "/health/detailed", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    json_t *doc = ht_json(&r);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(doc, "version")), CADRE_VERSION);
    assert_non_null(json_string_value(json_object_get(doc, "node_id")));
    assert_true(json_is_number(json_object_get(doc, "uptime_s")));
    json_t *db = json_object_get(doc, "db");
    assert_true(json_is_true(json_object_get(db, "ok")));
    assert_true(json_is_null(json_object_get(db, "latency_ms"))); //  nobody measures it yet
    json_t *persist_doc = json_object_get(doc, "persist");
    assert_int_equal(json_integer_value(json_object_get(persist_doc, "pending")), 2);
    assert_int_equal(json_integer_value(json_object_get(persist_doc, "batches")), 3);
    assert_int_equal(json_integer_value(json_object_get(persist_doc, "rows")), 7);
    assert_true(json_real_value(json_object_get(persist_doc, "last_batch_ms")) == 1.5);
    json_t *actors = json_object_get(doc, "actors");
    bool found = false;
    size_t i;
    json_t *actor;
    json_array_foreach(actors, i, actor)
    {
        if (strcmp(json_string_value(json_object_get(actor, "name")), "agent/slow") == 0) {
            found = true;
            assert_string_equal(json_string_value(json_object_get(actor, "status")), "running");
            assert_int_equal(json_integer_value(json_object_get(actor, "restarts")), 0);
            assert_true(json_is_integer(json_object_get(actor, "queue_depth")));
        }
    }
    assert_true(found);
    json_decref(doc);
    ht_response_free(&r);
    ht_node_stop(&node);
}

static void
test_http_ready_fails_when_persist_reports_the_database_down(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_persist_args_t persist = {.db_ok = false};
    ht_node_t *node = ht_node_start(&opts, &persist);
    ht_response_t r;
    assert_int_equal(ht_get(node, "/health/ready", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    json_t *failing = s_failing(&r);
    assert_true(s_contains(failing, "database"));
    assert_false(s_contains(failing, "persist"));
    assert_non_null(strstr(r.body, "connection refused"));
    json_decref(failing);
    ht_response_free(&r);
    assert_int_equal(ht_get(node, "/health/detailed", HT_H2C, &r), CURLE_OK);
    assert_non_null(strstr(r.body, "\"status\":\"degraded\""));
    assert_non_null(strstr(r.body, "\"db\":{\"ok\":false"));
    ht_response_free(&r);
    ht_node_stop(&node);
}

static void
test_http_ready_fails_when_persist_does_not_answer(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.ready_timeout_ms = 200;
    ht_persist_args_t persist = {.silent = true};
    ht_node_t *node = ht_node_start(&opts, &persist);
    ht_response_t r;
    int64_t started = ht_now_ms();
    assert_int_equal(ht_get(node, "/health/ready", HT_H2C, &r), CURLE_OK);
    int64_t took = ht_now_ms() - started;
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "did not answer"));
    assert_true(took >= 190 && took < 2000);
    ht_response_free(&r);
    ht_node_stop(&node);
}

static void
test_http_call_reaches_a_real_echo_agent(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    int protos[] = {HT_H2C, HT_HTTP1};
    for (size_t i = 0; i < 2; i++) {
        ht_response_t r;
        assert_int_equal(ht_post_json(node, "/test/agents/plain",
                                      "{\"input\":{\"x\":42,\"s\":\"h\\u00e9\",\"a\":[1,2.5,null,"
                                      "true]}}",
                                      protos[i], &r),
                         CURLE_OK);
        assert_int_equal(r.status, 200);
        json_t *doc = ht_json(&r);
        assert_string_equal(json_string_value(json_object_get(doc, "kind")), "result");
        assert_string_equal(json_string_value(json_object_get(doc, "from")), "agent/plain");
        json_t *echo = json_object_get(json_object_get(doc, "output"), "echo");
        assert_int_equal(json_integer_value(json_object_get(echo, "x")), 42);
        assert_string_equal(json_string_value(json_object_get(echo, "s")), "h\xc3\xa9");
        assert_int_equal(json_array_size(json_object_get(echo, "a")), 4);
        json_decref(doc);
        ht_response_free(&r);
    }
    assert_int_equal(ht_node_metric(node, "cadre_http_actor_calls_total{outcome=\"replied\"}"), 2);
    ht_node_stop(&node);
}

static void
test_http_call_failures_map_to_statuses(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    ht_response_t r;
    char code[64];
    assert_int_equal(ht_post_json(node, "/test/agents/nobody", "{\"input\":{}}", HT_H2C, &r),
                     CURLE_OK);
    assert_int_equal(r.status, 404);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "not_found");
    ht_response_free(&r);
    assert_int_equal(ht_post_json(node, "/test/agents/failing", "{\"input\":{}}", HT_H2C, &r),
                     CURLE_OK);
    assert_int_equal(r.status, 502);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "actor_error");
    assert_non_null(strstr(r.body, "configured to fail"));
    ht_response_free(&r);
    char why[128];
    assert_int_equal(
        cd_root_call(node->root, "STOP", "", "agent/plain", NULL, 3000, why, sizeof why), 0);
    //  A stopped agent leaves the registry: no such actor.
    assert_int_equal(ht_post_json(node, "/test/agents/plain", "{\"input\":{}}", HT_HTTP1, &r),
                     CURLE_OK);
    assert_int_equal(r.status, 404);
    ht_response_free(&r);
    assert_int_equal(
        ht_node_metric(node, "cadre_http_actor_calls_total{outcome=\"undeliverable\"}"), 2);
    ht_node_stop(&node);
}

static void
test_http_call_timeout_is_504(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.request_timeout_ms = 50; //  well before the agent's 300 ms, even on a busy machine
    ht_node_t *node = ht_node_start(&opts, NULL);
    ht_response_t r;
    char code[64];
    int64_t started = ht_now_ms();
    assert_int_equal(ht_post_json(node, "/test/agents/slow", "{\"input\":{}}", HT_H2C, &r),
                     CURLE_OK);
    int64_t took = ht_now_ms() - started;
    assert_int_equal(r.status, 504);
    assert_string_equal(ht_error_code(&r, code, sizeof code), "timeout");
    assert_true(took >= 45 && took < 2000);
    ht_response_free(&r);
    //  The late reply arrives at 300 ms and finds nobody: dropped quietly.
    usleep(400 * 1000);
    assert_int_equal(ht_get(node, "/health", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    ht_response_free(&r);
    assert_int_equal(ht_node_metric(node, "cadre_http_actor_calls_total{outcome=\"timed_out\"}"),
                     1);
    assert_int_equal(ht_node_metric(node, "cadre_http_limit_hits_total{limit=\"request_timeout\"}"),
                     1);
    ht_node_stop(&node);
}

static void
test_http_call_reply_after_the_client_left_is_dropped(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    char url[256];
    snprintf(url, sizeof url, "%s/test/agents/slow", node->base);
    int protos[] = {HT_H2C, HT_HTTP1};
    for (size_t i = 0; i < 2; i++) {
        ht_response_t r;
        //  The client gives up at 50 ms; the agent answers at 300 ms.
        assert_int_equal(ht_request("POST", url, "{\"input\":{}}", 12, headers, protos[i], 50, &r),
                         CURLE_OPERATION_TIMEDOUT);
        ht_response_free(&r);
    }
    usleep(500 * 1000);
    //  HTTP/2 reads on while a request runs, so the reset is seen and the
    //  call dropped at once. h2o's HTTP/1.1 does not read while a request
    //  runs: the close is found when the answer is written, which is then
    //  discarded. Either way the late reply harms nothing.
    long long gone = ht_node_metric(node, "cadre_http_actor_calls_total{outcome=\"client_gone\"}");
    long long replied = ht_node_metric(node, "cadre_http_actor_calls_total{outcome=\"replied\"}");
    assert_true(gone >= 1);
    assert_int_equal(gone + replied, 2);
    ht_response_t r;
    assert_int_equal(ht_post_json(node, "/test/agents/plain", "{\"input\":{\"k\":1}}", HT_H2C, &r),
                     CURLE_OK);
    assert_int_equal(r.status, 200);
    ht_response_free(&r);
    ht_node_stop(&node);
}

//  Bad bodies: every one is 400 with the right code, and nothing reaches
//  the agent.
static void
test_http_bad_bodies_are_rejected_with_the_field_named(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    char deep[200];
    memset(deep, 0, sizeof deep);
    strcat(deep, "{\"input\":");
    for (int i = 0; i < 40; i++) {
        strcat(deep, "[");
    }
    for (int i = 0; i < 40; i++) {
        strcat(deep, "]");
    }
    strcat(deep, "}");
    struct {
        const char *body;
        size_t len; //  0: strlen
        const char *code;
        const char *field; //  named in details, or NULL
    } rows[] = {
        {"{", 0, "invalid_json", NULL},
        {"not json", 0, "invalid_json", NULL},
        {"{\"input\":{}} trailing", 0, "invalid_json", NULL},
        {"{\"input\":{},\"input\":{}}", 0, "invalid_json", NULL},
        {"{\"input\":{\"s\":\"\xff\xfe\"}}", 0, "invalid_json", NULL},
        {"{\"input\":{\"s\":\"a\\u0000b\"}}", 0, "invalid_json", NULL},
        {"{\"input\":{\"n\":123456789012345678901234567890}}", 0, "invalid_json", NULL},
        {deep, 0, "invalid_json", NULL},
        {"[1,2]", 0, "validation_failed", NULL},
        {"\"text\"", 0, "validation_failed", NULL},
        {"{}", 0, "validation_failed", "input"},
        {"{\"input\":[]}", 0, "validation_failed", "input"},
        {"{\"input\":null}", 0, "validation_failed", "input"},
        {"{\"input\":{},\"extra\":1}", 0, "validation_failed", "extra"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ht_response_t r;
        static const char *const headers[] = {"Content-Type: application/json", NULL};
        char url[256];
        snprintf(url, sizeof url, "%s/test/agents/plain", node->base);
        size_t len = rows[i].len ? rows[i].len : strlen(rows[i].body);
        assert_int_equal(ht_request("POST", url, rows[i].body, len, headers,
                                    i % 2 ? HT_HTTP1 : HT_H2C, 5000, &r),
                         CURLE_OK);
        char code[64];
        if (r.status != 400 || strcmp(ht_error_code(&r, code, sizeof code), rows[i].code) != 0) {
            fail_msg("row %zu (%s): got %ld %s", i, rows[i].body, r.status, r.body);
        }
        if (rows[i].field) {
            json_t *doc = ht_json(&r);
            const char *field = json_string_value(json_object_get(
                json_object_get(json_object_get(doc, "error"), "details"), "field"));
            assert_non_null(field);
            assert_string_equal(field, rows[i].field);
            json_decref(doc);
        }
        ht_response_free(&r);
    }
    assert_int_equal(ht_node_metric(node, "cadre_http_actor_calls_total{outcome=\"replied\"}"), 0);
    ht_node_stop(&node);
}

static void
test_http_non_json_content_type_is_415(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    char url[256];
    snprintf(url, sizeof url, "%s/test/agents/plain", node->base);
    const char *const types[][2] = {{"Content-Type: text/plain", NULL},
                                    {"Content-Type: application/jsonx", NULL},
                                    {"Content-Type: application/x-www-form-urlencoded", NULL}};
    for (size_t i = 0; i < 3; i++) {
        ht_response_t r;
        assert_int_equal(ht_request("POST", url, "{\"input\":{}}", 12, types[i], HT_H2C, 5000, &r),
                         CURLE_OK);
        char code[64];
        assert_int_equal(r.status, 415);
        assert_string_equal(ht_error_code(&r, code, sizeof code), "unsupported_media_type");
        ht_response_free(&r);
    }
    //  Parameters are fine.
    const char *const ok[] = {"Content-Type: Application/JSON; charset=utf-8", NULL};
    ht_response_t r;
    assert_int_equal(ht_request("POST", url, "{\"input\":{}}", 12, ok, HT_H2C, 5000, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    ht_response_free(&r);
    ht_node_stop(&node);
}

//  A body of `size` bytes that is valid JSON for the forwarding route.
static char *
s_big_body(size_t size)
{
    char *body = (char *)malloc(size + 1);
    const char *head = "{\"input\":{\"pad\":\"";
    const char *tail = "\"}}";
    memset(body, 'a', size);
    memcpy(body, head, strlen(head));
    memcpy(body + size - strlen(tail), tail, strlen(tail));
    body[size] = '\0';
    return body;
}

static void
test_http_body_limit_is_413(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.max_body_bytes = 4096;
    ht_node_t *node = ht_node_start(&opts, NULL);
    char url[256];
    snprintf(url, sizeof url, "%s/test/agents/plain", node->base);
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    int protos[] = {HT_H2C, HT_HTTP1};
    for (size_t i = 0; i < 2; i++) {
        ht_response_t r;
        char *fits = s_big_body(4096);
        assert_int_equal(ht_request("POST", url, fits, 4096, headers, protos[i], 5000, &r),
                         CURLE_OK);
        assert_int_equal(r.status, 200);
        ht_response_free(&r);
        free(fits);
        char *over = s_big_body(4097);
        assert_int_equal(ht_request("POST", url, over, 4097, headers, protos[i], 5000, &r),
                         CURLE_OK);
        char code[64];
        assert_int_equal(r.status, 413);
        assert_string_equal(ht_error_code(&r, code, sizeof code), "payload_too_large");
        ht_response_free(&r);
        free(over);
        //  Far over the limit h2o stops reading the body (HTTP/1.1: 413;
        //  HTTP/2: the stream is refused). Either way nothing is buffered
        //  whole and the server goes on.
        char *huge = s_big_body(64 * 1024);
        CURLcode rc = ht_request("POST", url, huge, 64 * 1024, headers, protos[i], 5000, &r);
        assert_true(rc != CURLE_OK || r.status == 413);
        ht_response_free(&r);
        free(huge);
    }
    //  HTTP/1.1 announcing a body far over the limit: h2o refuses it before
    //  reading it, and the answer is still our JSON error.
    int fd = ht_connect(cd_http_port(node->http));
    const char *head = "POST /test/agents/plain HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n";
    assert_true(ht_send_all(fd, head, strlen(head), 1000));
    char reply[2048] = "";
    size_t got = 0;
    int64_t deadline = ht_now_ms() + 3000;
    while (got < sizeof reply - 1 && ht_now_ms() < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, reply + got, sizeof reply - 1 - got, 0);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        reply[got] = '\0';
    }
    close(fd);
    assert_non_null(strstr(reply, "HTTP/1.1 413"));
    assert_non_null(strstr(reply, "application/json"));
    assert_non_null(strstr(reply, "{\"error\":{\"code\":\"payload_too_large\""));
    ht_response_t r;
    assert_int_equal(ht_get(node, "/health", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    ht_response_free(&r);
    assert_true(ht_node_metric(node, "cadre_http_limit_hits_total{limit=\"body_size\"}") >= 2);
    ht_node_stop(&node);
}

static void
test_http_header_limit_is_431(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.max_header_bytes = 2048;
    ht_node_t *node = ht_node_start(&opts, NULL);
    char url[256];
    snprintf(url, sizeof url, "%s/health", node->base);
    char big[3000];
    snprintf(big, sizeof big, "X-Big: ");
    memset(big + 7, 'b', sizeof big - 8);
    big[sizeof big - 1] = '\0';
    const char *const headers[] = {big, NULL};
    int protos[] = {HT_H2C, HT_HTTP1};
    for (size_t i = 0; i < 2; i++) {
        ht_response_t r;
        assert_int_equal(ht_request("GET", url, NULL, 0, headers, protos[i], 5000, &r), CURLE_OK);
        char code[64];
        assert_int_equal(r.status, 431);
        assert_string_equal(ht_error_code(&r, code, sizeof code), "headers_too_large");
        ht_response_free(&r);
        assert_int_equal(ht_request("GET", url, NULL, 0, NULL, protos[i], 5000, &r), CURLE_OK);
        assert_int_equal(r.status, 200);
        ht_response_free(&r);
    }
    assert_int_equal(ht_node_metric(node, "cadre_http_limit_hits_total{limit=\"header_size\"}"), 2);
    ht_node_stop(&node);
}

//  Starts a node over TLS (libcurl 7.88 cannot reuse an h2c prior-knowledge
//  connection, curl issue #10634; over TLS with ALPN it can).
static ht_node_t *
s_tls_node(cd_http_opts_t *opts, char *dir, char *cert, char *key, size_t size)
{
    assert_true(ht_tls_make(dir, cert, key, size));
    opts->tls_cert = cert;
    opts->tls_key = key;
    ht_node_t *node = ht_node_start(opts, NULL);
    snprintf(node->base, sizeof node->base, "https://%s", cd_http_addr(node->http));
    return node;
}

//  Sends n GETs of path on one easy handle (one connection while the server
//  keeps it). Counts 200s and 429s; stops at the first transport error and
//  returns its code.
static CURLcode
s_burst(const ht_node_t *node, const char *path, int proto, int n, int *ok, int *limited)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", node->base, path);
    ht_buf_t hbuf = {NULL, 0}, bbuf = {NULL, 0};
    CURL *curl = ht_easy("GET", url, NULL, 0, NULL, proto, 5000, &hbuf, &bbuf);
    CURLcode rc = CURLE_OK;
    *ok = *limited = 0;
    for (int i = 0; i < n && rc == CURLE_OK; i++) {
        ht_response_t r;
        hbuf = (ht_buf_t){NULL, 0};
        bbuf = (ht_buf_t){NULL, 0};
        rc = curl_easy_perform(curl);
        ht_finish(curl, rc, &hbuf, &bbuf, &r);
        if (rc == CURLE_OK && r.status == 200) {
            (*ok)++;
        } else if (rc == CURLE_OK) {
            char code[64], value[16];
            assert_int_equal(r.status, 429);
            assert_string_equal(ht_error_code(&r, code, sizeof code), "rate_limited");
            assert_non_null(ht_header(&r, "retry-after", value, sizeof value));
            assert_string_equal(value, "1");
            (*limited)++;
        }
        ht_response_free(&r);
    }
    curl_easy_cleanup(curl);
    return rc;
}

static void
test_http_requests_per_connection_are_rate_limited(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.max_requests_per_conn_s = 5;
    char dir[] = "/tmp/test_http_rate.XXXXXX";
    char cert[256], key[256];
    ht_node_t *node = s_tls_node(&opts, dir, cert, key, sizeof cert);
    int ok = 0, limited = 0;
    //  HTTP/2: the burst of 5 passes, then 429 (the refill during the test's
    //  few milliseconds stays under one request).
    assert_int_equal(s_burst(node, "/health", HT_H2_TLS, 12, &ok, &limited), CURLE_OK);
    assert_true(ok >= 5 && ok <= 6);
    assert_true(limited >= 6);
    //  HTTP/1.1: a 429 also closes the connection (the client cannot be
    //  slowed down otherwise); the next request comes on a new one.
    assert_int_equal(s_burst(node, "/health", HT_HTTP1, 12, &ok, &limited), CURLE_OK);
    assert_true(limited >= 1);
    assert_true(ok >= 6);
    assert_true(ht_node_metric(node, "cadre_http_limit_hits_total{limit=\"rate\"}") >= 7);
    //  An HTTP/2 client that ignores its 429s is disconnected.
    CURLcode rc = s_burst(node, "/health", HT_H2_TLS, 60, &ok, &limited);
    assert_true(rc != CURLE_OK);
    assert_true(ht_node_metric(node, "cadre_http_guard_closes_total{reason=\"stream_flood\"}") >=
                1);
    ht_node_stop(&node);
    ht_tls_remove(dir, cert, key);
}

//  n concurrent calls to agent/slow multiplexed on one HTTP/2 connection
//  (TLS); returns how long they all took, in ms.
static int64_t
s_multiplexed_slow_calls(const ht_node_t *node, int n)
{
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    char url[256];
    snprintf(url, sizeof url, "%s/test/agents/slow", node->base);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *easy[16];
    ht_buf_t hbuf[16], bbuf[16];
    for (int i = 0; i < n; i++) {
        hbuf[i] = (ht_buf_t){NULL, 0};
        bbuf[i] = (ht_buf_t){NULL, 0};
        easy[i] = ht_easy("POST", url, "{\"input\":{}}", 12, headers, HT_H2_TLS, 10000, &hbuf[i],
                          &bbuf[i]);
        curl_easy_setopt(easy[i], CURLOPT_PIPEWAIT, 1L);
        curl_multi_add_handle(multi, easy[i]);
    }
    int64_t started = ht_now_ms();
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        if (running) {
            curl_multi_poll(multi, NULL, 0, 100, NULL);
        }
    }
    int64_t took = ht_now_ms() - started;
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK) {
            fail_msg("a multiplexed call failed: %s", curl_easy_strerror(msg->data.result));
        }
    }
    for (int i = 0; i < n; i++) {
        long status = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
        assert_int_equal(status, 200);
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
        free(hbuf[i].data);
        free(bbuf[i].data);
    }
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    return took;
}

static void
test_http_requests_in_progress_per_connection_are_bounded(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.max_streams = 2;
    char dir[] = "/tmp/test_http_streams.XXXXXX";
    char cert[256], key[256];
    ht_node_t *node = s_tls_node(&opts, dir, cert, key, sizeof cert);
    //  Six 300 ms calls, two at a time: three rounds.
    int64_t bounded = s_multiplexed_slow_calls(node, 6);
    assert_true(bounded >= 850);
    ht_node_stop(&node);
    ht_tls_remove(dir, cert, key);

    ht_opts(&opts);
    char dir2[] = "/tmp/test_http_streams.XXXXXX";
    node = s_tls_node(&opts, dir2, cert, key, sizeof cert);
    //  All six at once: one round.
    int64_t unbounded = s_multiplexed_slow_calls(node, 6);
    assert_true(unbounded < bounded - 300);
    ht_node_stop(&node);
    ht_tls_remove(dir2, cert, key);
}

static void
test_http_idle_and_slow_connections_are_closed(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.idle_timeout_ms = 300;
    opts.request_timeout_ms = 300;
    ht_node_t *node = ht_node_start(&opts, NULL);
    int port = cd_http_port(node->http);
    //  An HTTP/2 connection that goes quiet.
    int fd = ht_connect(port);
    assert_true(fd >= 0);
    assert_true(ht_h2_open(fd));
    int64_t started = ht_now_ms();
    assert_true(ht_wait_closed(fd, 3000));
    int64_t took = ht_now_ms() - started;
    assert_true(took >= 250 && took < 2000);
    close(fd);
    //  An HTTP/1.1 request head that never ends.
    fd = ht_connect(port);
    const char *partial = "GET /health HTTP/1.1\r\nHost: x\r\n";
    assert_true(ht_send_all(fd, partial, strlen(partial), 1000));
    started = ht_now_ms();
    assert_true(ht_wait_closed(fd, 3000));
    took = ht_now_ms() - started;
    assert_true(took >= 250 && took < 2000);
    close(fd);
    //  A connection that never says anything.
    fd = ht_connect(port);
    assert_true(ht_wait_closed(fd, 3000));
    close(fd);
    ht_response_t r;
    assert_int_equal(ht_get(node, "/health", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    ht_response_free(&r);
    ht_node_stop(&node);
}

static void
test_http_tls_serves_h2_with_alpn(void **state)
{
    char dir[] = "/tmp/test_http_tls.XXXXXX";
    char cert[256], key[256];
    assert_true(ht_tls_make(dir, cert, key, sizeof cert));
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.tls_cert = cert;
    opts.tls_key = key;
    ht_node_t *node = ht_node_start(&opts, NULL);
    snprintf(node->base, sizeof node->base, "https://%s", cd_http_addr(node->http));
    ht_response_t r;
    assert_int_equal(ht_get(node, "/health", HT_H2_TLS, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.version, CURL_HTTP_VERSION_2_0);
    ht_response_free(&r);
    assert_int_equal(
        ht_post_json(node, "/test/agents/plain", "{\"input\":{\"t\":1}}", HT_H2_TLS, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    ht_response_free(&r);
    //  HTTP/1.1 over TLS (no ALPN h2 offered).
    assert_int_equal(ht_get(node, "/health", HT_HTTP1, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.version, CURL_HTTP_VERSION_1_1);
    ht_response_free(&r);
    //  The TLS port does not speak cleartext.
    char url[256];
    snprintf(url, sizeof url, "http://%s/health", cd_http_addr(node->http));
    assert_true(ht_request("GET", url, NULL, 0, NULL, HT_H2C, 3000, &r) != CURLE_OK);
    ht_response_free(&r);
    ht_node_stop(&node);

    //  A key that does not exist is a start-up error that says so.
    opts.tls_key = "/nonexistent/key.pem";
    cd_runtime_t rt = {cd_registry_new("tls"), 1000, 1000, 100, 2000, 3000, 5, 10};
    cd_http_t *http = NULL;
    char *errmsg = NULL;
    assert_int_equal(cd_http_start(&opts, &rt, &http, &errmsg), CD_EIO);
    assert_null(http);
    assert_non_null(strstr(errmsg, "TLS"));
    free(errmsg);
    cd_registry_destroy(&rt.registry);
    ht_tls_remove(dir, cert, key);
}

static void
test_http_start_errors_are_reported(void **state)
{
    cd_runtime_t rt = {cd_registry_new("errs"), 1000, 1000, 100, 2000, 3000, 5, 10};
    cd_http_opts_t opts;
    ht_opts(&opts);
    cd_http_t *http = NULL, *other = NULL;
    char *errmsg = NULL;
    assert_int_equal(cd_http_start(&opts, &rt, &http, &errmsg), 0);
    assert_true(cd_http_port(http) > 0);
    //  The same address again: in use.
    char addr[CD_HTTP_ADDR_MAX];
    snprintf(addr, sizeof addr, "%s", cd_http_addr(http));
    opts.addr = addr;
    opts.port_name = "http2";
    assert_int_equal(cd_http_start(&opts, &rt, &other, &errmsg), CD_EIO);
    assert_null(other);
    assert_non_null(strstr(errmsg, "cannot listen"));
    free(errmsg);
    //  The port name is taken.
    opts.addr = "127.0.0.1:0";
    opts.port_name = "http";
    assert_int_equal(cd_http_start(&opts, &rt, &other, &errmsg), CD_EEXIST);
    assert_null(other);
    assert_non_null(strstr(errmsg, "taken"));
    free(errmsg);
    //  Bad options.
    opts.port_name = "http3";
    opts.max_streams = 0;
    assert_int_equal(cd_http_start(&opts, &rt, &other, &errmsg), CD_EINVAL);
    free(errmsg);
    opts.max_streams = 100;
    opts.addr = "no-port";
    assert_int_equal(cd_http_start(&opts, &rt, &other, &errmsg), CD_EINVAL);
    free(errmsg);
    opts.addr = "127.0.0.1:0";
    opts.tls_cert = "/x.pem";
    assert_int_equal(cd_http_start(&opts, &rt, &other, &errmsg), CD_EINVAL);
    free(errmsg);
    //  Stop twice is safe.
    assert_int_equal(cd_http_stop(&http), 0);
    assert_null(http);
    assert_int_equal(cd_http_stop(&http), 0);
    cd_registry_destroy(&rt.registry);
}

typedef struct {
    ht_node_t *node; //  the server
    long status;     //  what the client got
} s_client_t;

static void *
s_slow_client(void *arg)
{
    s_client_t *client = (s_client_t *)arg;
    ht_response_t r;
    ht_post_json(client->node, "/test/agents/slow", "{\"input\":{}}", HT_H2C, &r);
    client->status = r.status;
    ht_response_free(&r);
    return NULL;
}

static void
test_http_stop_is_bounded_and_answers_waiting_calls(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.stop_timeout_ms = 600;
    ht_node_t *node = ht_node_start(&opts, NULL);
    int port = cd_http_port(node->http);
    //  Idle connections of both kinds, and a half-sent request head.
    int h2 = ht_connect(port);
    assert_true(ht_h2_open(h2));
    int h1 = ht_connect(port);
    const char *partial = "GET /health HTTP/1.1\r\n";
    assert_true(ht_send_all(h1, partial, strlen(partial), 1000));
    //  A call waiting for the slow agent, from another thread so that this
    //  one can stop the server meanwhile.
    s_client_t client = {node, 0};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_slow_client, &client), 0);
    usleep(100 * 1000); //  the call is in flight (the agent answers at 300 ms)
    int64_t started = ht_now_ms();
    assert_int_equal(cd_http_stop(&node->http), 0);
    int64_t took = ht_now_ms() - started;
    assert_true(took < 600 + 1000);
    pthread_join(thread, NULL);
    assert_int_equal(client.status, 503);
    assert_true(ht_wait_closed(h2, 2000));
    assert_true(ht_wait_closed(h1, 2000));
    close(h2);
    close(h1);
    assert_int_equal(cd_root_destroy(&node->root), 0);
    cd_registry_destroy(&node->rt.registry);
    free(node);
}

static void
test_http_metrics_page_has_every_family(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    ht_response_t r;
    assert_int_equal(ht_get(node, "/health", HT_H2C, &r), CURLE_OK);
    ht_response_free(&r);
    assert_int_equal(ht_get(node, "/nope", HT_H2C, &r), CURLE_OK);
    ht_response_free(&r);
    assert_int_equal(ht_get(node, "/metrics", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    char value[128];
    assert_non_null(ht_header(&r, "content-type", value, sizeof value));
    assert_non_null(strstr(value, "text/plain; version=0.0.4"));
    const char *page = r.body;
    assert_int_equal(
        ht_metric(page,
                  "cadre_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"}"),
        1);
    assert_int_equal(
        ht_metric(page,
                  "cadre_http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"}"),
        1);
    assert_int_equal(ht_metric(page, "cadre_http_request_duration_seconds_count{method=\"GET\","
                                     "route=\"/health\"}"),
                     1);
    assert_int_equal(ht_metric(page, "cadre_http_request_duration_seconds_bucket{method=\"GET\","
                                     "route=\"/health\",le=\"+Inf\"}"),
                     1);
    assert_int_equal(ht_metric(page, "cadre_http_limit_hits_total{limit=\"body_size\"}"), 0);
    assert_int_equal(ht_metric(page, "cadre_http_guard_closes_total{reason=\"rapid_reset\"}"), 0);
    assert_int_equal(ht_metric(page, "cadre_http_slow_clients_dropped_total"), 0);
    assert_int_equal(ht_metric(page, "cadre_actor_restarts_total{actor=\"agent/plain\"}"), 0);
    assert_int_equal(ht_metric(page, "cadre_actor_up{actor=\"agent/plain\",status=\"running\"}"),
                     1);
    assert_true(ht_metric(page, "cadre_dead_letters_total") >= 0);
    assert_true(ht_metric(page, "cadre_http_connections_open") >= 1);
    ht_response_free(&r);
    ht_node_stop(&node);
}

int
main(void)
{
    const char *only = getenv("TEST_ONLY");
    cd_log_level_t level = CD_LOG_ERROR;
    if (getenv("CADRE_LOG_LEVEL")) {
        cd_log_level_parse(getenv("CADRE_LOG_LEVEL"), &level);
    }
    cd_log_set_level(level);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_health_answers_over_h2c_and_http1),
        cmocka_unit_test(test_http_unknown_path_is_404_and_wrong_method_405),
        cmocka_unit_test(test_http_ready_names_the_missing_persist_actor),
        cmocka_unit_test(test_http_ready_when_persist_answers_with_the_database_up),
        cmocka_unit_test(test_http_ready_fails_when_persist_reports_the_database_down),
        cmocka_unit_test(test_http_ready_fails_when_persist_does_not_answer),
        cmocka_unit_test(test_http_call_reaches_a_real_echo_agent),
        cmocka_unit_test(test_http_call_failures_map_to_statuses),
        cmocka_unit_test(test_http_call_timeout_is_504),
        cmocka_unit_test(test_http_call_reply_after_the_client_left_is_dropped),
        cmocka_unit_test(test_http_bad_bodies_are_rejected_with_the_field_named),
        cmocka_unit_test(test_http_non_json_content_type_is_415),
        cmocka_unit_test(test_http_body_limit_is_413),
        cmocka_unit_test(test_http_header_limit_is_431),
        cmocka_unit_test(test_http_requests_per_connection_are_rate_limited),
        cmocka_unit_test(test_http_requests_in_progress_per_connection_are_bounded),
        cmocka_unit_test(test_http_idle_and_slow_connections_are_closed),
        cmocka_unit_test(test_http_tls_serves_h2_with_alpn),
        cmocka_unit_test(test_http_start_errors_are_reported),
        cmocka_unit_test(test_http_stop_is_bounded_and_answers_waiting_calls),
        cmocka_unit_test(test_http_metrics_page_has_every_family),
    };
    if (only) {
        cmocka_set_test_filter(only);
    }
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
