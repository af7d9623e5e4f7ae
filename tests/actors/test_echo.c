/*  The echo agent: its answer's shape, fail, handoff_to, sleep_ms without
    blocking, answers owed at stop are flushed, and bad options rejected;
    orchestrated steps (the test plays the orchestrator): result with
    handoff_to, error, hitl_request and the resumed step (answered,
    expired with deny and approve), cancel of a delayed answer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_echo.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"
#include "cd_teststep.h"

typedef struct {
    cd_runtime_t rt;
    cd_echo_args_t plain, failing, relay, slow, ask, ask_approve;
    cd_child_spec_t children[6];
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port;
} fixture_t;

static fixture_t *
s_start(void)
{
    static int generation = 0;
    char id[16];
    snprintf(id, sizeof id, "e%d", ++generation);
    fixture_t *fx = calloc(1, sizeof *fx);
    fx->rt = (cd_runtime_t){cd_registry_new(id), 1000, 1000, 100, 2000, 3000, 5, 10};
    fx->failing.fail = true;
    fx->relay.handoff_to = "agent/plain";
    fx->slow.sleep_ms = 300;
    static char *options[] = {"yes", "no"};
    fx->ask.ask = (cd_echo_ask_t){"Ship it?", options, 2, 60, "deny"};
    fx->ask_approve.ask = (cd_echo_ask_t){"Ship it?", NULL, 0, 0, "approve"};
    fx->children[0] = (cd_child_spec_t){"agent/plain", &cd_echo_ops, &fx->plain, 0};
    fx->children[1] = (cd_child_spec_t){"agent/failing", &cd_echo_ops, &fx->failing, 0};
    fx->children[2] = (cd_child_spec_t){"agent/relay", &cd_echo_ops, &fx->relay, 0};
    fx->children[3] = (cd_child_spec_t){"agent/slow", &cd_echo_ops, &fx->slow, 0};
    fx->children[4] = (cd_child_spec_t){"agent/ask", &cd_echo_ops, &fx->ask, 0};
    fx->children[5] = (cd_child_spec_t){"agent/ask_approve", &cd_echo_ops, &fx->ask_approve, 0};
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, fx->children, 6};
    char why[160];
    fx->root = cd_root_new(&fx->rt, "root", &fx->spec, why, sizeof why);
    assert_non_null(fx->root);
    fx->port = cd_port_new(&fx->rt, "test");
    return fx;
}

static void
s_stop(fixture_t **fx_p)
{
    fixture_t *fx = *fx_p;
    cd_port_destroy(&fx->port);
    if (fx->root) {
        assert_int_equal(cd_root_destroy(&fx->root), 0);
    }
    cd_registry_destroy(&fx->rt.registry);
    free(fx);
    *fx_p = NULL;
}

static void
s_send(fixture_t *fx, const char *to, cd_payload_type_t type, const void *bytes, size_t size,
       int64_t task_id)
{
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, to);
    env.task_id = task_id;
    env.payload_type = type;
    env.payload = (cd_bin_t){(const uint8_t *)bytes, (uint32_t)size};
    assert_int_equal(cd_port_send(fx->port, &env), 0);
}

static void
s_recv(fixture_t *fx, cd_envelope_t *env, int timeout_ms)
{
    assert_int_equal(cd_port_recv(fx->port, timeout_ms, env), 0);
}

static void
test_echo_answers_with_its_input_wrapped(void **state)
{
    fixture_t *fx = s_start();
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "x");
    cd_pack_int(pack, 42);
    cd_bin_t input = cd_pack_bytes(pack);
    s_send(fx, "agent/plain", CD_PAYLOAD_MAP, input.ptr, input.len, 1);
    cd_envelope_t env;
    s_recv(fx, &env, 2000);
    assert_int_equal(env.kind, CD_KIND_RESULT);
    assert_int_equal(env.task_id, 1);
    assert_true(cd_str_eq(env.from, "agent/plain"));
    cd_bin_t echo, x;
    assert_int_equal(cd_msgpack_map_find(env.payload, "echo", &echo), 0);
    assert_int_equal(echo.len, input.len);
    assert_memory_equal(echo.ptr, input.ptr, input.len);
    assert_int_equal(cd_msgpack_map_find(echo, "x", &x), 0);
    int64_t value = 0;
    assert_int_equal(cd_msgpack_read_int(x, &value), 0);
    assert_int_equal(value, 42);
    cd_pack_destroy(&pack);
    s_stop(&fx);
}

static void
test_echo_fail_answers_with_an_error(void **state)
{
    fixture_t *fx = s_start();
    s_send(fx, "agent/failing", CD_PAYLOAD_BIN, "a", 1, 2);
    cd_envelope_t env;
    s_recv(fx, &env, 2000);
    assert_int_equal(env.kind, CD_KIND_ERROR);
    cd_bin_t error;
    assert_int_equal(cd_msgpack_map_find(env.payload, "error", &error), 0);
    s_stop(&fx);
}

static void
test_echo_handoff_reaches_the_next_agent_and_answers_the_requester(void **state)
{
    fixture_t *fx = s_start();
    s_send(fx, "agent/relay", CD_PAYLOAD_BIN, "b", 1, 3);
    cd_envelope_t env;
    s_recv(fx, &env, 2000);
    assert_int_equal(env.kind, CD_KIND_RESULT);
    assert_true(cd_str_eq(env.from, "agent/plain"));
    cd_bin_t outer, inner;
    assert_int_equal(cd_msgpack_map_find(env.payload, "echo", &outer), 0);
    assert_int_equal(cd_msgpack_map_find(outer, "echo", &inner), 0);
    assert_int_equal(inner.ptr[2], 'b');
    s_stop(&fx);
}

static void
test_echo_sleep_does_not_block_the_agent(void **state)
{
    fixture_t *fx = s_start();
    int64_t started = zclock_mono();
    for (int i = 0; i < 5; i++) {
        s_send(fx, "agent/slow", CD_PAYLOAD_BIN, "c", 1, 10 + i);
    }
    for (int i = 0; i < 5; i++) {
        cd_envelope_t env;
        s_recv(fx, &env, 2000);
    }
    int64_t took = zclock_mono() - started;
    //  Five 300 ms answers overlap: far less than 5 x 300 ms.
    assert_true(took >= 290);
    assert_true(took < 1000);
    s_stop(&fx);
}

static void
test_echo_stop_flushes_answers_it_owes(void **state)
{
    fixture_t *fx = s_start();
    s_send(fx, "agent/slow", CD_PAYLOAD_BIN, "d", 1, 20);
    zclock_sleep(50);
    char why[160];
    assert_int_equal(cd_root_call(fx->root, "STOP", "", "agent/slow", NULL, 3000, why, sizeof why),
                     0);
    cd_envelope_t env;
    s_recv(fx, &env, 100); //  well before the 300 ms were up
    assert_int_equal(env.task_id, 20);
    s_stop(&fx);
}

//  Sends a step and returns the answer's payload as JSON text (caller
//  frees); *kind gets the answer's kind. The answer must come to the test
//  port with parent_id = the step's id and the task id copied.
static char *
s_step(fixture_t *fx, const char *to, int64_t task_id, const char *input, const char *extra,
       cd_kind_t *kind)
{
    uint8_t id[CD_ENV_UUID_SIZE];
    assert_int_equal(ts_step_send(fx->port, to, task_id, input, extra, 0, id), 0);
    cd_envelope_t env;
    json_t *payload = NULL;
    assert_int_equal(ts_recv_json(fx->port, 2000, &env, &payload), 0);
    assert_memory_equal(env.parent_id, id, CD_ENV_UUID_SIZE);
    assert_int_equal(env.task_id, task_id);
    assert_int_equal(env.trace_id[0], 7);
    *kind = env.kind;
    char *text = ts_dump(payload);
    json_decref(payload);
    return text;
}

static void
test_echo_step_answers_result_with_the_input_echoed(void **state)
{
    fixture_t *fx = s_start();
    cd_kind_t kind;
    char *text = s_step(fx, "agent/plain", 5, "{\"x\":[1,\"two\"]}", NULL, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"output\":{\"echo\":{\"x\":[1,\"two\"]}}}");
    free(text);
    //  A string input, and handoff_to named in the result (not followed).
    text = s_step(fx, "agent/relay", 6, "\"hi\"", NULL, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"handoff_to\":\"agent/plain\",\"output\":{\"echo\":\"hi\"}}");
    free(text);
    s_stop(&fx);
}

static void
test_echo_step_fail_answers_a_retryable_error(void **state)
{
    fixture_t *fx = s_start();
    cd_kind_t kind;
    char *text = s_step(fx, "agent/failing", 7, "1", NULL, &kind);
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_string_equal(text, "{\"code\":\"echo_failed\",\"message\":\"echo agent configured to "
                              "fail\",\"retryable\":true}");
    free(text);
    s_stop(&fx);
}

static void
test_echo_step_asks_a_human_then_resumes(void **state)
{
    fixture_t *fx = s_start();
    cd_kind_t kind;
    char *text = s_step(fx, "agent/ask", 8, "\"draft\"", NULL, &kind);
    assert_int_equal(kind, CD_KIND_HITL_REQUEST);
    assert_string_equal(text, "{\"on_timeout\":\"deny\",\"options\":[\"yes\",\"no\"],\"question\":"
                              "\"Ship it?\",\"timeout_s\":60}");
    free(text);
    //  Answered: the human's response joins the echo.
    text = s_step(fx, "agent/ask", 8, "\"draft\"",
                  "{\"hitl\":{\"request_id\":3,\"response\":\"yes\",\"approved\":true,"
                  "\"expired\":false}}",
                  &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"output\":{\"echo\":\"draft\",\"human\":\"yes\"}}");
    free(text);
    //  Expired with deny (approved nil: the agent's policy decides).
    text = s_step(fx, "agent/ask", 8, "\"draft\"",
                  "{\"hitl\":{\"request_id\":4,\"response\":null,\"approved\":null,"
                  "\"expired\":true}}",
                  &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"output\":{\"approved\":false,\"echo\":\"draft\"}}");
    free(text);
    //  Expired, the orchestrator saying denied.
    text = s_step(fx, "agent/ask_approve", 9, "\"d\"",
                  "{\"hitl\":{\"request_id\":5,\"approved\":false,\"expired\":true}}", &kind);
    assert_string_equal(text, "{\"output\":{\"approved\":false,\"echo\":\"d\"}}");
    free(text);
    //  Expired with approve: the normal output.
    text = s_step(fx, "agent/ask_approve", 9, "\"d\"",
                  "{\"hitl\":{\"request_id\":6,\"expired\":true}}", &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"output\":{\"echo\":\"d\"}}");
    free(text);
    //  A malformed hitl is a non-retryable error, not a crash.
    text = s_step(fx, "agent/ask", 8, "1", "{\"hitl\":{\"expired\":\"soon\"}}", &kind);
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_non_null(strstr(text, "\"retryable\":false"));
    free(text);
    s_stop(&fx);
}

static void
test_echo_step_cancel_drops_the_delayed_answer(void **state)
{
    fixture_t *fx = s_start();
    uint8_t first[CD_ENV_UUID_SIZE], second[CD_ENV_UUID_SIZE];
    assert_int_equal(ts_step_send(fx->port, "agent/slow", 30, "1", NULL, 0, first), 0);
    assert_int_equal(ts_step_send(fx->port, "agent/slow", 31, "2", NULL, 0, second), 0);
    assert_int_equal(ts_cancel_send(fx->port, "agent/slow", 30, first), 0);
    cd_envelope_t env;
    json_t *payload = NULL;
    assert_int_equal(ts_recv_json(fx->port, 2000, &env, &payload), 0);
    assert_int_equal(env.task_id, 31);
    assert_memory_equal(env.parent_id, second, CD_ENV_UUID_SIZE);
    json_decref(payload);
    //  Nothing for the cancelled step; a cancel by task id works too.
    assert_int_equal(cd_port_recv(fx->port, 400, &env), CD_ETIMEDOUT);
    assert_int_equal(ts_step_send(fx->port, "agent/slow", 32, "3", NULL, 0, NULL), 0);
    assert_int_equal(ts_cancel_send(fx->port, "agent/slow", 32, NULL), 0);
    assert_int_equal(cd_port_recv(fx->port, 500, &env), CD_ETIMEDOUT);
    s_stop(&fx);
}

static void
test_echo_step_malformed_payload_is_a_bad_request(void **state)
{
    fixture_t *fx = s_start();
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, "agent/plain");
    env.headers[0] = (cd_env_header_t){cd_str(CD_PROTO_STEP_HEADER), cd_str("1")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_BIN;
    env.payload = (cd_bin_t){(const uint8_t *)"x", 1};
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    json_t *payload = NULL;
    assert_int_equal(ts_recv_json(fx->port, 2000, &env, &payload), 0);
    assert_int_equal(env.kind, CD_KIND_ERROR);
    assert_string_equal(json_string_value(json_object_get(payload, "code")), "bad_request");
    json_decref(payload);
    s_stop(&fx);
}

static void
test_echo_rejects_bad_options(void **state)
{
    cd_config_kv_t bad_sleep[] = {{"sleep_ms", "soon"}};
    cd_config_kv_t unknown[] = {{"slep_ms", "10"}};
    cd_config_kv_t bad_fail[] = {{"fail", "maybe"}};
    cd_config_kv_t good[] = {{"sleep_ms", "10"}, {"fail", "true"}, {"handoff_to", "agent/x"}};
    cd_config_agent_t agent = {"a", "echo", NULL, 1, bad_sleep, 1};
    cd_echo_args_t *args = NULL;
    char *errmsg = NULL;
    assert_int_equal(cd_echo_args_new(&agent, &args, &errmsg), CD_ECONFIG);
    assert_non_null(strstr(errmsg, "sleep_ms"));
    free(errmsg);
    agent.options = unknown;
    assert_int_equal(cd_echo_args_new(&agent, &args, &errmsg), CD_ECONFIG);
    assert_non_null(strstr(errmsg, "slep_ms"));
    free(errmsg);
    agent.options = bad_fail;
    assert_int_equal(cd_echo_args_new(&agent, &args, &errmsg), CD_ECONFIG);
    free(errmsg);
    agent.options = good;
    agent.n_options = 3;
    assert_int_equal(cd_echo_args_new(&agent, &args, &errmsg), 0);
    assert_int_equal(args->sleep_ms, 10);
    assert_true(args->fail);
    assert_string_equal(args->handoff_to, "agent/x");
    cd_echo_args_destroy(&args);
    cd_echo_args_destroy(&args);
    assert_null(args);
    //  ask_human: a question, or an object's JSON text.
    cd_config_kv_t ask[] = {{"ask_human", "Proceed?"}};
    agent.options = ask;
    agent.n_options = 1;
    assert_int_equal(cd_echo_args_new(&agent, &args, &errmsg), 0);
    assert_string_equal(args->ask.question, "Proceed?");
    cd_echo_args_destroy(&args);
    cd_config_kv_t ask_obj[] = {{"ask_human", "{\"question\":\"Q\",\"options\":[\"a\",\"b\"],"
                                              "\"timeout_s\":5,\"on_timeout\":\"fail\"}"}};
    agent.options = ask_obj;
    assert_int_equal(cd_echo_args_new(&agent, &args, &errmsg), 0);
    assert_string_equal(args->ask.question, "Q");
    assert_int_equal(args->ask.n_options, 2);
    assert_string_equal(args->ask.options[1], "b");
    assert_int_equal(args->ask.timeout_s, 5);
    assert_string_equal(args->ask.on_timeout, "fail");
    cd_echo_args_destroy(&args);
    static const char *const bad_asks[] = {
        "{\"options\":[\"a\"]}",                         //  no question
        "{\"question\":\"Q\",\"on_timeout\":\"later\"}", //  bad policy
        "{\"question\":\"Q\",\"timeout_s\":0}",          //  bad timeout
        "{\"question\":\"Q\",\"options\":[1]}",          //  bad options
        "{\"question\":\"Q\",\"colour\":1}",             //  unknown key
        "{\"question\":",                                //  not JSON
    };
    for (size_t i = 0; i < sizeof bad_asks / sizeof bad_asks[0]; i++) {
        cd_config_kv_t bad[] = {{"ask_human", (char *)bad_asks[i]}};
        agent.options = bad;
        assert_int_equal(cd_echo_args_new(&agent, &args, &errmsg), CD_ECONFIG);
        assert_non_null(strstr(errmsg, "ask_human"));
        free(errmsg);
        assert_null(args);
    }
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_answers_with_its_input_wrapped),
        cmocka_unit_test(test_echo_fail_answers_with_an_error),
        cmocka_unit_test(test_echo_handoff_reaches_the_next_agent_and_answers_the_requester),
        cmocka_unit_test(test_echo_sleep_does_not_block_the_agent),
        cmocka_unit_test(test_echo_stop_flushes_answers_it_owes),
        cmocka_unit_test(test_echo_step_answers_result_with_the_input_echoed),
        cmocka_unit_test(test_echo_step_fail_answers_a_retryable_error),
        cmocka_unit_test(test_echo_step_asks_a_human_then_resumes),
        cmocka_unit_test(test_echo_step_cancel_drops_the_delayed_answer),
        cmocka_unit_test(test_echo_step_malformed_payload_is_a_bad_request),
        cmocka_unit_test(test_echo_rejects_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
