/*  The echo agent: its answer's shape, fail, handoff_to, sleep_ms without
    blocking, answers owed at stop are flushed, and bad options rejected. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_echo.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"

typedef struct {
    cd_runtime_t rt;
    cd_echo_args_t plain, failing, relay, slow;
    cd_child_spec_t children[4];
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
    fx->children[0] = (cd_child_spec_t){"agent/plain", &cd_echo_ops, &fx->plain, 0};
    fx->children[1] = (cd_child_spec_t){"agent/failing", &cd_echo_ops, &fx->failing, 0};
    fx->children[2] = (cd_child_spec_t){"agent/relay", &cd_echo_ops, &fx->relay, 0};
    fx->children[3] = (cd_child_spec_t){"agent/slow", &cd_echo_ops, &fx->slow, 0};
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, fx->children, 4};
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
        cmocka_unit_test(test_echo_rejects_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
