/*  cd_agents: the kinds and their config checks, and the factory under a
    real `agents` supervisor: echo, exec and llm children started by
    `start` requests (with the agent's concurrency), answering steps, and
    released on `remove` (ASan checks the args are freed); bad requests
    refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_agents.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_supervisor.h"
#include "cd_teststep.h"

#include <stdio.h>
#include <string.h>

static void
test_agents_kinds_and_checks(void **state)
{
    assert_true(cd_agents_kind_valid("echo") && cd_agents_kind_valid("llm") &&
                cd_agents_kind_valid("exec") && cd_agents_kind_valid("remote"));
    assert_false(cd_agents_kind_valid("robot") || cd_agents_kind_valid(NULL));
    assert_true(cd_agents_kind_local("echo") && cd_agents_kind_local("llm") &&
                cd_agents_kind_local("exec"));
    assert_false(cd_agents_kind_local("remote") || cd_agents_kind_local(NULL));
    static const struct {
        const char *kind;
        const char *config; //  NULL: none
        int rc;
        const char *why; //  prefix of the reason
    } cases[] = {
        {"echo", NULL, 0, ""},
        {"echo", "{\"sleep_ms\":5,\"ask_human\":{\"question\":\"Q\"}}", 0, ""},
        {"echo", "{\"ask_human\":7}", CD_EINVAL, "config.ask_human"},
        {"echo", "{\"ask_human\":{\"options\":[]}}", CD_EINVAL, "config: agent check"},
        {"remote", "{\"anything\":1}", 0, ""},
        {"exec", "{\"argv\":[\"/bin/cat\"]}", 0, ""},
        {"exec", NULL, CD_EINVAL, "config.argv"},
        {"exec", "{\"argv\":[\"cat\"]}", CD_EINVAL, "config.argv[0]"},
        {"llm", "{\"connection\":\"c\",\"model\":\"m\"}", 0, ""},
        {"llm", "{\"model\":\"m\"}", CD_EINVAL, "config.connection"},
        {"llm", "{\"connection\":\"c\"}", CD_EINVAL, "config.model"},
        {"robot", NULL, CD_EINVAL, "kind must be"},
        {"echo", "[]", CD_EINVAL, "config must be an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *config =
            cases[i].config ? json_loads(cases[i].config, JSON_DECODE_ANY, NULL) : NULL;
        char why[256] = "";
        int rc = cd_agents_check(cases[i].kind, config, why, sizeof why);
        if (rc != cases[i].rc || strncmp(why, cases[i].why, strlen(cases[i].why)) != 0) {
            fail_msg("%s %s: %s (%s)", cases[i].kind, cases[i].config ? cases[i].config : "",
                     cd_errname(rc), why);
        }
        json_decref(config);
    }
}

typedef struct {
    cd_runtime_t rt;
    cd_agents_env_t env;
    cd_supervisor_spec_t agents;
    cd_child_spec_t child;
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port;
} fx_t;

static fx_t *
s_start(void)
{
    fx_t *fx = calloc(1, sizeof *fx);
    fx->rt = (cd_runtime_t){cd_registry_new("g1"), 1000, 1000, 100, 2000, 3000, 5, 10};
    fx->env = (cd_agents_env_t){NULL, NULL, NULL, NULL};
    fx->agents = (cd_supervisor_spec_t){.strategy = CD_ONE_FOR_ONE,
                                        .max_restarts = -1,
                                        .factory = &cd_agents_factory,
                                        .factory_arg = &fx->env,
                                        .prefix = CD_AGENTS_PREFIX};
    fx->child = (cd_child_spec_t){"agents", &cd_supervisor_ops, &fx->agents, CD_RESTART_PERMANENT};
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, &fx->child, 1};
    fx->port = cd_port_new(&fx->rt, "test");
    char why[160] = "";
    fx->root = cd_root_new(&fx->rt, "root", &fx->spec, why, sizeof why);
    assert_non_null(fx->root);
    return fx;
}

static void
s_stop(fx_t **fx_p)
{
    fx_t *fx = *fx_p;
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    cd_port_destroy(&fx->port);
    cd_registry_destroy(&fx->rt.registry);
    free(fx);
    *fx_p = NULL;
}

//  Sends op to the agents supervisor; returns the answer's JSON (caller
//  decrefs) and kind.
static json_t *
s_control(fx_t *fx, const char *op, const char *payload_json, cd_kind_t *kind)
{
    json_t *payload = json_loads(payload_json, 0, NULL);
    cd_pack_t *pack = cd_pack_new();
    cd_mpjson_encode(payload, pack);
    json_decref(payload);
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_CONTROL, "agents");
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    cd_pack_destroy(&pack);
    json_t *answer = NULL;
    assert_int_equal(ts_recv_json(fx->port, 5000, &env, &answer), 0);
    *kind = env.kind;
    return answer;
}

//  Runs one step on agent to and returns the answer as JSON text.
static char *
s_step(fx_t *fx, const char *to, const char *input, cd_kind_t *kind)
{
    assert_int_equal(ts_step_send(fx->port, to, 1, input, NULL, 0, NULL), 0);
    cd_envelope_t env;
    json_t *answer = NULL;
    assert_int_equal(ts_recv_json(fx->port, 5000, &env, &answer), 0);
    *kind = env.kind;
    char *text = ts_dump(answer);
    json_decref(answer);
    return text;
}

static void
test_agents_factory_builds_each_kind(void **state)
{
    fx_t *fx = s_start();
    cd_kind_t kind;
    json_t *answer = s_control(
        fx, "start",
        "{\"name\":\"e\",\"kind\":\"echo\",\"config\":\"{\\\"ask_human\\\":\\\"Sure?\\\"}\"}",
        &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    json_decref(answer);
    answer = s_control(fx, "start",
                       "{\"name\":\"x\",\"kind\":\"exec\",\"concurrency\":3,"
                       "\"config\":\"{\\\"argv\\\":[\\\"/usr/bin/wc\\\",\\\"-c\\\"]}\"}",
                       &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    json_decref(answer);
    answer = s_control(fx, "start",
                       "{\"name\":\"l\",\"kind\":\"llm\","
                       "\"config\":\"{\\\"connection\\\":\\\"c\\\",\\\"model\\\":\\\"m\\\"}\"}",
                       &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    json_decref(answer);

    char *text = s_step(fx, "agent/e", "\"in\"", &kind);
    assert_int_equal(kind, CD_KIND_HITL_REQUEST);
    assert_string_equal(text, "{\"question\":\"Sure?\"}");
    free(text);
    text = s_step(fx, "agent/x", "\"four\"", &kind);
    assert_string_equal(text, "{\"output\":4}");
    free(text);
    //  Without the node's database in the env, llm steps say so.
    text = s_step(fx, "agent/l", "\"hi\"", &kind);
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_non_null(strstr(text, "\"code\":\"not_configured\""));
    free(text);

    //  Removing releases the args (ASan would see a leak otherwise).
    static const char *const names[] = {"{\"name\":\"e\"}", "{\"name\":\"x\"}", "{\"name\":\"l\"}"};
    for (int i = 0; i < 3; i++) {
        answer = s_control(fx, "remove", names[i], &kind);
        assert_int_equal(kind, CD_KIND_RESULT);
        json_decref(answer);
    }
    //  Bad requests change nothing.
    static const char *const bad[] = {
        "{\"name\":\"r\",\"kind\":\"remote\"}",
        "{\"name\":\"q\",\"kind\":\"exec\",\"config\":\"{\\\"argv\\\":[\\\"ls\\\"]}\"}",
        "{\"name\":\"q\",\"kind\":\"echo\",\"config\":\"{not json\"}",
        "{\"name\":\"q\",\"kind\":\"echo\",\"concurrency\":0}",
        "{\"kind\":\"echo\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        answer = s_control(fx, "start", bad[i], &kind);
        assert_int_equal(kind, CD_KIND_ERROR);
        assert_string_equal(json_string_value(json_object_get(answer, "code")), "invalid");
        json_decref(answer);
    }
    //  Children still held at the end are released with the supervisor.
    answer = s_control(fx, "start",
                       "{\"name\":\"y\",\"kind\":\"exec\",\"config\":\"{\\\"argv\\\":[\\\"/bin/"
                       "true\\\"]}\"}",
                       &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    json_decref(answer);
    s_stop(&fx);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agents_kinds_and_checks),
        cmocka_unit_test(test_agents_factory_builds_each_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
