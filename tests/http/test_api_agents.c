/* label: integration */
/*  test_api_agents: the agents routes over HTTP/2 against a real node:
    creating an agent starts its actor under the supervisor before the 201,
    stop/start/restart act on it, DELETE removes it, a restart of the node
    brings the table's agents back, llm and exec agents are created with
    their configs checked, and bad input changes nothing. */
#include "cd_testnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
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

static const char *
s_str(const tn_resp_t *r, const char *key)
{
    const char *v = json_string_value(json_object_get(r->json, key));
    return v ? v : "";
}

//  The status /health/detailed gives the actor named name, or "absent".
static char *
s_actor_status(tn_node_t *node, const char *name)
{
    tn_resp_t r;
    tn_call(node, &r, "GET", "/health/detailed", NULL);
    json_t *actors = json_object_get(r.json, "actors");
    char *out = strdup("absent");
    size_t i;
    json_t *a;
    json_array_foreach(actors, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "name")), name) == 0) {
            free(out);
            out = strdup(json_string_value(json_object_get(a, "status")));
        }
    }
    tn_resp_free(&r);
    return out;
}

static char *
s_count(tn_node_t *node, const char *sql)
{
    return tn_sql(node, sql);
}

static void
test_agent_lifecycle(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/agents",
                             "{\"name\":\"coder\",\"kind\":\"echo\",\"role\":\"dev\","
                             "\"config\":{\"sleep_ms\":0}}"),
                     201);
    assert_string_equal(s_str(&r, "status"), "idle");
    char loc[128];
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), "/api/v1/agents/coder");
    tn_resp_free(&r);
    //  Running when the 201 came.
    char *status = s_actor_status(node, "agent/coder");
    assert_string_equal(status, "running");
    free(status);
    char *events = s_count(node, "SELECT count(*) FROM events WHERE type = 'agent.status' AND "
                                 "agent = 'coder'");
    assert_true(atoi(events) >= 2); //  starting, idle
    free(events);

    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents?kind=echo&role=dev", NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/agents/coder/stop", NULL), 202);
    assert_string_equal(s_str(&r, "status"), "stopped");
    tn_resp_free(&r);
    status = s_actor_status(node, "agent/coder");
    assert_string_equal(status, "stopped");
    free(status);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents/coder", NULL), 200);
    assert_string_equal(s_str(&r, "status"), "stopped");
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/agents/coder/start", NULL), 202);
    assert_string_equal(s_str(&r, "status"), "idle");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/agents/coder/restart", NULL), 202);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents/coder", NULL), 200);
    assert_true(json_integer_value(json_object_get(r.json, "restarts")) >= 1);
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents/coder/log?limit=50", NULL), 200);
    assert_true(json_is_array(json_object_get(r.json, "items")));
    tn_resp_free(&r);

    assert_int_equal(tn_call(node, &r, "PATCH", "/api/v1/agents/coder",
                             "{\"config\":{\"sleep_ms\":5},\"concurrency\":2}"),
                     200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "concurrency")), 2);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r.json, "config"), "sleep_ms")), 5);
    tn_resp_free(&r);
    status = s_actor_status(node, "agent/coder");
    assert_string_equal(status, "running");
    free(status);

    assert_int_equal(tn_call(node, &r, "DELETE", "/api/v1/agents/coder", NULL), 204);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents/coder", NULL), 404);
    tn_resp_free(&r);
    status = s_actor_status(node, "agent/coder");
    assert_string_equal(status, "absent");
    free(status);
    assert_int_equal(tn_call(node, &r, "DELETE", "/api/v1/agents/coder", NULL), 404);
    tn_resp_free(&r);
}

static void
test_agent_remote_and_restart_of_the_node(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/agents", "{\"name\":\"far\",\"kind\":\"remote\"}"), 201);
    assert_string_equal(s_str(&r, "status"), "offline");
    tn_resp_free(&r);
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/agents", "{\"name\":\"near\",\"kind\":\"echo\"}"), 201);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/agents/far/stop", NULL), 409);
    tn_resp_free(&r);
    assert_int_equal(tn_restart(node, NULL), 0);
    char *status = s_actor_status(node, "agent/near");
    assert_string_equal(status, "running");
    free(status);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents/near", NULL), 200);
    assert_string_equal(s_str(&r, "status"), "idle");
    tn_resp_free(&r);
}

static void
test_agent_bad_input_changes_nothing(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    static const struct {
        const char *body;
        long status;
        const char *field;
    } cases[] = {
        {"{\"name\":\"Bad Name\",\"kind\":\"echo\"}", 400, "name"},
        {"{\"name\":\"a\",\"kind\":\"robot\"}", 400, "kind"},
        {"{\"name\":\"a\",\"kind\":\"llm\"}", 400, "config"},
        {"{\"name\":\"a\",\"kind\":\"llm\",\"config\":{\"connection\":\"c\"}}", 400, "config"},
        {"{\"name\":\"a\",\"kind\":\"exec\",\"config\":{\"argv\":[\"ls\"]}}", 400, "config"},
        {"{\"name\":\"a\",\"kind\":\"exec\",\"config\":{\"argv\":[]}}", 400, "config"},
        {"{\"name\":\"a\",\"kind\":\"exec\"}", 400, "config"},
        {"{\"name\":\"a\",\"kind\":\"echo\",\"config\":{\"sleep_ms\":\"x\"}}", 400, "config"},
        {"{\"name\":\"a\",\"kind\":\"echo\",\"config\":{\"colour\":1}}", 400, "config"},
        {"{\"name\":\"a\",\"kind\":\"echo\",\"template_id\":999}", 400, "template_id"},
        {"{\"name\":\"a\",\"kind\":\"echo\",\"concurrency\":0}", 400, "concurrency"},
        {"{\"name\":\"a\",\"kind\":\"echo\",\"extra\":1}", 400, "extra"},
        {"{\"kind\":\"echo\"}", 400, "name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tn_resp_t r;
        long status = tn_call(node, &r, "POST", "/api/v1/agents", cases[i].body);
        if (status != cases[i].status) {
            fail_msg("%s: %ld %s", cases[i].body, status, r.body);
        }
        const char *field = json_string_value(
            json_object_get(json_object_get(json_object_get(r.json, "error"), "details"), "field"));
        if (!field || strcmp(field, cases[i].field) != 0) {
            fail_msg("%s: field %s, body %s", cases[i].body, field ? field : "(none)", r.body);
        }
        tn_resp_free(&r);
    }
    tn_resp_t r;
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/agents", "{\"name\":\"dup\",\"kind\":\"echo\"}"), 201);
    tn_resp_free(&r);
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/agents", "{\"name\":\"dup\",\"kind\":\"echo\"}"), 409);
    tn_resp_free(&r);
    assert_int_equal(
        tn_call(node, &r, "PATCH", "/api/v1/agents/dup", "{\"config\":{\"fail\":\"maybe\"}}"), 400);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents/NOPE", NULL), 404);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents?status=sleepy", NULL), 400);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents?cursor=%20x", NULL), 400);
    tn_resp_free(&r);
    char *count = s_count(node, "SELECT count(*) FROM agents WHERE name <> 'echo'");
    assert_string_equal(count, "1");
    free(count);
    char *config = s_count(node, "SELECT config::text FROM agents WHERE name = 'dup'");
    assert_string_equal(config, "{}");
    free(config);
}

//  llm and exec agents are created (their actors run when the 201 comes)
//  and reconfigured; an invalid config is refused naming it.
static void
test_agent_llm_and_exec_kinds(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/agents",
                             "{\"name\":\"runner\",\"kind\":\"exec\",\"concurrency\":2,"
                             "\"config\":{\"argv\":[\"/bin/cat\"],\"timeout_ms\":5000}}"),
                     201);
    assert_string_equal(s_str(&r, "status"), "idle");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/agents",
                             "{\"name\":\"writer\",\"kind\":\"llm\",\"config\":"
                             "{\"connection\":\"openai\",\"model\":\"gpt-4o-mini\","
                             "\"temperature\":0.2,\"max_tokens\":256,\"stream\":true}}"),
                     201);
    assert_string_equal(s_str(&r, "status"), "idle");
    tn_resp_free(&r);
    char *status = s_actor_status(node, "agent/runner");
    assert_string_equal(status, "running");
    free(status);
    status = s_actor_status(node, "agent/writer");
    assert_string_equal(status, "running");
    free(status);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/agents?kind=llm", NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    tn_resp_free(&r);
    //  A PATCH is checked against the kind's rules, then restarts the actor.
    assert_int_equal(
        tn_call(node, &r, "PATCH", "/api/v1/agents/runner", "{\"config\":{\"argv\":[\"cat\"]}}"),
        400);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "PATCH", "/api/v1/agents/runner",
                             "{\"config\":{\"argv\":[\"/usr/bin/wc\",\"-c\"]}}"),
                     200);
    tn_resp_free(&r);
    status = s_actor_status(node, "agent/runner");
    assert_string_equal(status, "running");
    free(status);
    char *config = s_count(node, "SELECT config->'argv'->>0 FROM agents WHERE name = 'runner'");
    assert_string_equal(config, "/usr/bin/wc");
    free(config);
    assert_int_equal(tn_call(node, &r, "DELETE", "/api/v1/agents/writer", NULL), 204);
    tn_resp_free(&r);
    status = s_actor_status(node, "agent/writer");
    assert_string_equal(status, "absent");
    free(status);
}

//  /metrics carries the figures API.md names beside the HTTP ones.
static void
test_metrics_page(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/agents", "{\"name\":\"m\",\"kind\":\"echo\"}"), 201);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/metrics", NULL), 200);
    static const char *const series[] = {
        "cadre_http_requests_total",
        "cadre_http_request_duration_seconds_bucket",
        "cadre_messages_sent_total{kind=\"control\"}",
        "cadre_actor_restarts_total",
        "cadre_persist_batch_rows_count",
        "cadre_persist_batch_seconds_sum",
        "cadre_tasks{status=\"todo\"} 0",
        "cadre_persist_up 1",
    };
    for (size_t i = 0; i < sizeof series / sizeof series[0]; i++) {
        if (!strstr(r.body, series[i])) {
            fail_msg("/metrics lacks %s:\n%s", series[i], r.body);
        }
    }
    tn_resp_free(&r);
    //  /health/detailed: a measured database round trip, every core actor.
    assert_int_equal(tn_call(node, &r, "GET", "/health/detailed", NULL), 200);
    json_t *db = json_object_get(r.json, "db");
    assert_true(json_is_true(json_object_get(db, "ok")));
    assert_true(json_is_number(json_object_get(db, "latency_ms")));
    assert_true(json_number_value(json_object_get(db, "latency_ms")) > 0);
    char *status = s_actor_status(node, "bus");
    assert_string_equal(status, "running");
    free(status);
    status = s_actor_status(node, "api/0");
    assert_string_equal(status, "running");
    free(status);
    tn_resp_free(&r);
}

static size_t
s_sse_collect(char *data, size_t size, size_t n, void *arg)
{
    char **buf = (char **)arg;
    size_t have = *buf ? strlen(*buf) : 0;
    *buf = (char *)realloc(*buf, have + size * n + 1);
    memcpy(*buf + have, data, size * n);
    (*buf)[have + size * n] = '\0';
    return size * n;
}

//  The node runs the bus: events of the API's writes are listed and
//  streamed (replayed with after=0 over SSE on HTTP/2).
static void
test_events_of_the_node(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_resp_t r;
    assert_int_equal(
        tn_call(node, &r, "POST", "/api/v1/agents", "{\"name\":\"ev\",\"kind\":\"echo\"}"), 201);
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/events?after=0&limit=100", NULL), 200);
    assert_non_null(strstr(r.body, "\"agent.status\""));
    assert_non_null(strstr(r.body, "\"ev\""));
    tn_resp_free(&r);

    char url[256];
    snprintf(url, sizeof url, "%s/api/v1/events?after=0&agent=ev", node->base);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: text/event-stream");
    char bearer[1200];
    snprintf(bearer, sizeof bearer, "Authorization: Bearer %s", node->admin_token);
    headers = curl_slist_append(headers, bearer);
    char *body = NULL;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1500L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_sse_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_perform(curl); //  ends by its timeout: a stream does not end
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    assert_non_null(body);
    assert_non_null(strstr(body, "event: agent.status"));
    assert_non_null(strstr(body, "id: "));
    free(body);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_agent_lifecycle, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_agent_remote_and_restart_of_the_node, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_agent_bad_input_changes_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_agent_llm_and_exec_kinds, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_metrics_page, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_events_of_the_node, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
