/* label: db */
/*  The llm agent against the local OpenAI-compatible test server
    (cd_testllm.h), with the real persist actor and a real database: the
    test plays the orchestrator (cd_teststep.h) and the bus (a port named
    `bus`), beside the real vault actor holding the key that sealed the
    connection's api_key. Streaming tokens reach the bus, the usage row is
    committed before the result, the template is rendered, each error
    class is answered as documented, a budget that would be exceeded makes
    no call, the per-connection rate limit makes steps wait, cancel aborts
    the transfer, the key is opened by the vault at call time (a locked
    vault fails the step with vault_locked), and bad configs are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_llm.h"
#include "cd_log.h"
#include "cd_persist.h"
#include "cd_q_usage.h"
#include "cd_supervisor.h"
#include "cd_testllm.h"
#include "cd_teststep.h"
#include "cd_vault_actor.h"

#include <sodium.h>

#include "../db/test_q_support.h"

#define S_MAX_AGENTS 16

typedef struct {
    fixture_t *db;                       //  the test's database (test_q_support.h)
    cd_testllm_t *server;                //  the provider
    cd_persist_stmt_t stmts[1];          //  usage.record
    cd_runtime_t rt;                     //  node settings
    cd_persist_args_t persist;           //  persist's arguments
    cd_llm_rates_t *rates;               //  shared buckets
    cd_llm_args_t *agents[S_MAX_AGENTS]; //  the agents' arguments
    char names[S_MAX_AGENTS][80];        //  agent/<name>
    cd_vault_actor_args_t vault;         //  the vault actor's arguments
    char *record;                        //  its record (JSON), for unlocks
    cd_child_spec_t children[S_MAX_AGENTS + 2];
    size_t n_children;
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port; //  the orchestrator's place
    cd_port_t *bus;  //  catches token events
    int64_t project; //  a project ...
    int64_t task;    //  ... and a task of it
    int64_t template_id;
} fx_t;

static const cd_vault_params_t s_fast = {1, 64 * 1024};
static const char s_master[] = "correct horse battery staple";

static int
s_fx_setup(void **state)
{
    void *dbfx = NULL;
    s_setup(&dbfx);
    fx_t *fx = calloc(1, sizeof *fx);
    fx->db = (fixture_t *)dbfx;
    fx->server = cd_testllm_start();
    assert_non_null(fx->server);
    cd_db_t *db = fx->db->db;
    const char *url = cd_testllm_base_url(fx->server);
    //  prov's key sealed as the API stores it, by a vault whose record
    //  the vault actor is unlocked with (s_fx_run).
    cd_vault_record_t record;
    cd_vault_t *vault = NULL;
    assert_int_equal(cd_vault_create(s_master, strlen(s_master), &s_fast, &record, &vault), 0);
    cd_vault_record_to_json(&record, &fx->record);
    char *sealed = NULL;
    assert_int_equal(cd_vault_seal(vault, "sk-test", 7, &sealed), 0);
    cd_vault_destroy(&vault);
    char secrets[256];
    snprintf(secrets, sizeof secrets, "{\"api_key\": \"%s\"}", sealed);
    free(sealed);
    const char *params[] = {url, secrets};
    s_ok(db, cd_db_exec_params(db,
                               "INSERT INTO connections (name, connector_type, config, secrets)"
                               " VALUES"
                               " ('prov', 'openai', jsonb_build_object('base_url', $1::text,"
                               "  'api_key', '********'), convert_to($2, 'UTF8')),"
                               " ('clear', 'openai', jsonb_build_object('base_url', $1::text,"
                               "  'api_key', 'sk-in-clear'), NULL),"
                               " ('limited', 'openai', jsonb_build_object('base_url', $1::text,"
                               "  'llm_rate_per_s', 2), NULL),"
                               " ('down', 'openai', '{\"base_url\": \"http://127.0.0.1:1/v1\"}',"
                               "  NULL),"
                               " ('nourl', 'openai', '{}', NULL)",
                               2, params, NULL));
    s_ok(db, cd_db_exec(db,
                        "INSERT INTO config (key, value) VALUES ('llm_prices', "
                        "'{\"stream-ok\": {\"prompt_per_1k\": 1.0, \"completion_per_1k\": 2.0}}')",
                        NULL));
    s_ok(db, cd_db_query_int64(db,
                               "INSERT INTO templates (name, body) VALUES ('t',"
                               " 'Write about {{topic}} in {{ style }}') RETURNING id",
                               0, NULL, &fx->template_id));
    fx->project = s_project(db);
    fx->task = s_raw_task(db, "{\"agent\":\"writer\"}", fx->project, CD_Q_NULL);
    fx->stmts[0] = (cd_persist_stmt_t){cd_q_usage_writes[0].name, cd_q_usage_writes[0].sql,
                                       cd_q_usage_writes[0].nparams};
    static int generation = 0;
    char id[16];
    snprintf(id, sizeof id, "l%d", ++generation);
    fx->rt = (cd_runtime_t){cd_registry_new(id), 1000, 1000, 200, 5000, 5000, 5, 10};
    fx->persist =
        (cd_persist_args_t){.conninfo = fx->db->conninfo, .stmts = fx->stmts, .n_stmts = 1};
    fx->children[0] =
        (cd_child_spec_t){"persist", &cd_persist_ops, &fx->persist, CD_RESTART_PERMANENT};
    fx->children[1] = (cd_child_spec_t){CD_VAULT_ACTOR_NAME, &cd_vault_actor_ops, &fx->vault,
                                        CD_RESTART_PERMANENT};
    fx->n_children = 2;
    fx->rates = cd_llm_rates_new();
    *state = fx;
    return 0;
}

//  Adds an agent (before s_fx_run) from its JSON config.
static void
s_agent(fx_t *fx, const char *name, const char *config)
{
    json_t *conf = json_loads(config, 0, NULL);
    assert_non_null(conf);
    size_t i = fx->n_children - 2;
    char why[256] = "";
    if (cd_llm_args_new(name, conf, 4, &fx->agents[i], why, sizeof why) != 0) {
        fail_msg("%s: %s", config, why);
    }
    json_decref(conf);
    fx->agents[i]->conninfo = fx->db->conninfo;
    fx->agents[i]->rates = fx->rates;
    snprintf(fx->names[i], sizeof fx->names[i], "agent/%s", name);
    fx->children[fx->n_children++] =
        (cd_child_spec_t){fx->names[i], &cd_llm_ops, fx->agents[i], CD_RESTART_PERMANENT};
}

//  Sends op (unlock, with the fixture's record, or lock) to the vault
//  actor and waits for its result.
static void
s_vault(fx_t *fx, const char *op)
{
    cd_pack_t *pack = cd_pack_new();
    bool unlock = strcmp(op, "unlock") == 0;
    cd_pack_map(pack, unlock ? 2 : 0);
    if (unlock) {
        cd_pack_cstr(pack, "password");
        cd_pack_cstr(pack, s_master);
        cd_pack_cstr(pack, "record");
        cd_pack_cstr(pack, fx->record);
    }
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, CD_VAULT_ACTOR_NAME);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    cd_pack_destroy(&pack);
    assert_int_equal(cd_port_recv(fx->port, 10000, &env), 0);
    assert_int_equal(env.kind, CD_KIND_RESULT);
}

static void
s_fx_run(fx_t *fx)
{
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, fx->children, fx->n_children};
    fx->port = cd_port_new(&fx->rt, "test");
    fx->bus = cd_port_new(&fx->rt, "bus");
    char why[256] = "";
    fx->root = cd_root_new(&fx->rt, "root", &fx->spec, why, sizeof why);
    if (!fx->root) {
        fail_msg("tree: %s", why);
    }
    s_vault(fx, "unlock");
}

static int
s_fx_teardown(void **state)
{
    fx_t *fx = (fx_t *)*state;
    if (fx->root) {
        assert_int_equal(cd_root_destroy(&fx->root), 0);
    }
    cd_port_destroy(&fx->port);
    cd_port_destroy(&fx->bus);
    for (size_t i = 0; i < S_MAX_AGENTS; i++) {
        cd_llm_args_destroy(&fx->agents[i]);
    }
    cd_llm_rates_destroy(&fx->rates);
    free(fx->record);
    cd_registry_destroy(&fx->rt.registry);
    cd_testllm_stop(&fx->server);
    void *dbfx = fx->db;
    s_teardown(&dbfx);
    free(fx);
    return 0;
}

//  The "task" and optional extra keys of a step's payload.
static char *
s_extra(fx_t *fx, const char *more)
{
    char *text = NULL;
    assert_true(asprintf(&text, "{\"task\":{\"id\":%lld,\"title\":\"t\",\"project_id\":%lld}%s%s}",
                         (long long)fx->task, (long long)fx->project, more ? "," : "",
                         more ? more : "") > 0);
    return text;
}

//  Sends a step for the fixture's task and returns the answer (caller
//  decrefs); *kind its kind. id (if not NULL) gets the step's id.
static json_t *
s_step(fx_t *fx, const char *agent, const char *input, const char *more, cd_kind_t *kind)
{
    char *extra = s_extra(fx, more);
    uint8_t id[CD_ENV_UUID_SIZE] = {0};
    assert_int_equal(ts_step_send(fx->port, agent, fx->task, input, extra, 0, id), 0);
    free(extra);
    cd_envelope_t env;
    json_t *payload = NULL;
    int rc = ts_recv_json(fx->port, 10000, &env, &payload);
    if (rc != 0) {
        fail_msg("%s: no answer (%s)", agent, cd_errname(rc));
    }
    assert_memory_equal(env.parent_id, id, CD_ENV_UUID_SIZE);
    assert_int_equal(env.task_id, fx->task);
    *kind = env.kind;
    return payload;
}

//  The error code of an answer, checking its retryable flag.
static void
s_expect_error(json_t *payload, cd_kind_t kind, const char *code, bool retryable)
{
    char *text = ts_dump(payload);
    if (kind != CD_KIND_ERROR || !json_is_string(json_object_get(payload, "code")) ||
        strcmp(json_string_value(json_object_get(payload, "code")), code) != 0 ||
        json_is_true(json_object_get(payload, "retryable")) != retryable) {
        fail_msg("expected error %s (retryable %d), got %s %s", code, retryable, cd_kind_name(kind),
                 text);
    }
    free(text);
}

static void
test_llm_streams_tokens_and_records_usage(void **state)
{
    fx_t *fx = (fx_t *)*state;
    char config[256];
    snprintf(config, sizeof config,
             "{\"connection\":\"prov\",\"model\":\"stream-ok\",\"template_id\":%lld,"
             "\"temperature\":0.5,\"max_tokens\":50}",
             (long long)fx->template_id);
    s_agent(fx, "writer", config);
    s_fx_run(fx);
    cd_kind_t kind;
    json_t *answer =
        s_step(fx, "agent/writer", "{\"topic\":\"cats\",\"style\":\"haiku\"}", NULL, &kind);
    char *text = ts_dump(answer);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"output\":\"Hello world\"}");
    free(text);
    json_decref(answer);
    //  The usage row was committed before the answer.
    cd_db_t *db = fx->db->db;
    char *row = NULL;
    s_ok(db, cd_db_query_text(db,
                              "SELECT json_build_object('task_id', task_id, 'project_id',"
                              " project_id, 'agent', agent, 'model', model, 'p', prompt_tokens,"
                              " 'c', completion_tokens, 'cost', cost_usd,"
                              " 'conn', connection_id = (SELECT id FROM connections"
                              "  WHERE name = 'prov'), 'latency', latency_ms >= 0)::text"
                              " FROM llm_calls",
                              0, NULL, &row));
    json_t *call = s_parse(row, true);
    assert_int_equal(s_int(call, "task_id"), fx->task);
    assert_int_equal(s_int(call, "project_id"), fx->project);
    assert_string_equal(s_str(call, "agent"), "writer");
    assert_string_equal(s_str(call, "model"), "stream-ok");
    assert_int_equal(s_int(call, "p"), 12);
    assert_int_equal(s_int(call, "c"), 3);
    double cost = json_number_value(json_object_get(call, "cost"));
    assert_true(cost > 0.018 - 1e-9 && cost < 0.018 + 1e-9);
    assert_true(json_is_true(json_object_get(call, "conn")));
    assert_true(json_is_true(json_object_get(call, "latency")));
    json_decref(call);
    s_ok(db, cd_db_query_text(db, "SELECT usage::text FROM tasks", 0, NULL, &row));
    json_t *usage = s_parse(row, true);
    assert_int_equal(s_int(usage, "llm_calls"), 1);
    assert_int_equal(s_int(usage, "completion_tokens"), 3);
    json_decref(usage);
    //  The tokens went to the bus, live and in order.
    static const char *const tokens[] = {"Hel", "lo", " world"};
    for (int i = 0; i < 3; i++) {
        cd_envelope_t env;
        json_t *event = NULL;
        assert_int_equal(ts_recv_json(fx->bus, 2000, &env, &event), 0);
        assert_int_equal(env.kind, CD_KIND_CONTROL);
        cd_str_t op, ack;
        assert_true(cd_envelope_header(&env, "op", &op) && cd_str_eq(op, "emit"));
        assert_true(cd_envelope_header(&env, "ack", &ack) && cd_str_eq(ack, "none"));
        assert_string_equal(s_str(event, "type"), "task.token");
        assert_int_equal(s_int(event, "task_id"), fx->task);
        assert_int_equal(s_int(event, "project_id"), fx->project);
        assert_string_equal(s_str(event, "agent"), "writer");
        assert_true(json_is_false(json_object_get(event, "persist")));
        json_t *data = json_loads(s_str(event, "data"), 0, NULL);
        assert_string_equal(s_str(data, "token"), tokens[i]);
        assert_int_equal(s_int(data, "index"), i);
        json_decref(data);
        json_decref(event);
    }
    //  What the provider was asked.
    char *body = cd_testllm_last_body(fx->server);
    json_t *req = s_parse(body, true);
    assert_string_equal(s_str(req, "model"), "stream-ok");
    assert_true(json_is_true(json_object_get(req, "stream")));
    assert_true(
        json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage")));
    assert_int_equal(s_int(req, "max_tokens"), 50);
    assert_true(json_number_value(json_object_get(req, "temperature")) == 0.5);
    json_t *message = json_array_get(json_object_get(req, "messages"), 0);
    assert_string_equal(s_str(message, "role"), "user");
    assert_string_equal(s_str(message, "content"), "Write about cats in haiku");
    json_decref(req);
    char *auth = cd_testllm_last_auth(fx->server);
    assert_string_equal(auth, "Bearer sk-test");
    free(auth);
}

static void
test_llm_plain_answers_and_prompts(void **state)
{
    fx_t *fx = (fx_t *)*state;
    s_agent(fx, "plain", "{\"connection\":\"prov\",\"model\":\"echo\",\"stream\":false}");
    char config[160];
    snprintf(config, sizeof config,
             "{\"connection\":\"limited\",\"model\":\"echo\",\"template_id\":%lld}",
             (long long)fx->template_id);
    s_agent(fx, "templated", config);
    s_fx_run(fx);
    cd_kind_t kind;
    //  No template: a string input is the prompt; JSON otherwise.
    json_t *answer = s_step(fx, "agent/plain", "\"just this\"", NULL, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(s_str(answer, "output"), "just this");
    json_decref(answer);
    answer = s_step(fx, "agent/plain", "{\"a\":[1,2]}", NULL, &kind);
    assert_string_equal(s_str(answer, "output"), "{\"a\":[1,2]}");
    json_decref(answer);
    //  Streamed echo, the template's variables from the task's input
    //  overlaid with the stage input's keys; no API key: no header.
    cd_db_t *db = fx->db->db;
    char sql[200];
    snprintf(sql, sizeof sql,
             "UPDATE templates SET body = 'On {{topic}}: {{input}}' WHERE id = %lld",
             (long long)fx->template_id);
    s_ok(db, cd_db_exec(db, sql, NULL));
    char *extra = s_extra(fx, NULL);
    assert_int_equal(
        ts_step_send(fx->port, "agent/templated", fx->task, "\"draft\"", extra, 0, NULL), 0);
    free(extra);
    cd_envelope_t env;
    assert_int_equal(ts_recv_json(fx->port, 10000, &env, &answer), 0);
    //  (original = input here, a string: topic is missing)
    assert_int_equal(env.kind, CD_KIND_ERROR);
    assert_string_equal(s_str(answer, "code"), "missing_variable");
    json_decref(answer);
    //  With an original that names topic, the stage input fills {{input}}.
    json_t *payload_extra =
        json_pack("{s:{s:I, s:s, s:I}, s:{s:s}}", "task", "id", (json_int_t)fx->task, "title", "t",
                  "project_id", (json_int_t)fx->project, "original", "topic", "dogs");
    extra = json_dumps(payload_extra, JSON_COMPACT);
    json_decref(payload_extra);
    assert_int_equal(
        ts_step_send(fx->port, "agent/templated", fx->task, "\"draft\"", extra, 0, NULL), 0);
    free(extra);
    assert_int_equal(ts_recv_json(fx->port, 10000, &env, &answer), 0);
    assert_int_equal(env.kind, CD_KIND_RESULT);
    assert_string_equal(s_str(answer, "output"), "On dogs: draft");
    json_decref(answer);
    char *auth = cd_testllm_last_auth(fx->server);
    assert_null(auth);
    //  Not orchestrated (no step header): the payload is the input, the
    //  answer goes to the sender.
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, "agent/plain");
    env.payload_type = CD_PAYLOAD_BIN;
    env.payload = (cd_bin_t){(const uint8_t *)"raw words", 9};
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    assert_int_equal(ts_recv_json(fx->port, 10000, &env, &answer), 0);
    assert_int_equal(env.kind, CD_KIND_RESULT);
    assert_string_equal(s_str(answer, "output"), "raw words");
    json_decref(answer);
    //  Four calls made, four rows (unpriced models cost nothing; no task).
    assert_int_equal(s_count(db, "SELECT count(*) FROM llm_calls"), 4);
    assert_int_equal(s_count(db, "SELECT count(*) FROM llm_calls WHERE cost_usd = 0"), 4);
    assert_int_equal(s_count(db, "SELECT count(*) FROM llm_calls WHERE task_id IS NULL"), 1);
}

static void
test_llm_error_classes(void **state)
{
    fx_t *fx = (fx_t *)*state;
    static const struct {
        const char *name;
        const char *config;
        const char *code;
        bool retryable;
    } cases[] = {
        {"e500", "{\"connection\":\"prov\",\"model\":\"error-500\"}", "provider_error", true},
        {"e400", "{\"connection\":\"prov\",\"model\":\"error-400\"}", "provider_error", false},
        {"e429", "{\"connection\":\"prov\",\"model\":\"rate-429\"}", "rate_limited", true},
        {"garbage", "{\"connection\":\"prov\",\"model\":\"garbage\"}", "malformed_response", true},
        {"garbagejson", "{\"connection\":\"prov\",\"model\":\"garbage-json\",\"stream\":false}",
         "malformed_response", true},
        {"nodone", "{\"connection\":\"prov\",\"model\":\"no-done\"}", "malformed_response", true},
        {"midstream", "{\"connection\":\"prov\",\"model\":\"stream-error\"}", "provider_error",
         true},
        {"slow", "{\"connection\":\"prov\",\"model\":\"slow\",\"timeout_ms\":300}", "timeout",
         true},
        {"down", "{\"connection\":\"down\",\"model\":\"m\"}", "provider_unreachable", true},
        {"nourl", "{\"connection\":\"nourl\",\"model\":\"m\"}", "connection_invalid", false},
        {"nowhere", "{\"connection\":\"nowhere\",\"model\":\"m\"}", "connection_not_found", false},
        {"notemplate", "{\"connection\":\"prov\",\"model\":\"m\",\"template_id\":999999}",
         "template_not_found", false},
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        s_agent(fx, cases[i].name, cases[i].config);
    }
    s_fx_run(fx);
    for (size_t i = 0; i < n; i++) {
        char to[80];
        snprintf(to, sizeof to, "agent/%s", cases[i].name);
        cd_kind_t kind;
        json_t *answer = s_step(fx, to, "\"x\"", NULL, &kind);
        s_expect_error(answer, kind, cases[i].code, cases[i].retryable);
        if (strcmp(cases[i].name, "e429") == 0) {
            assert_int_equal(s_int(answer, "retry_after_ms"), 2000);
        } else if (strcmp(cases[i].name, "e400") == 0) {
            assert_non_null(strstr(s_str(answer, "message"), "HTTP 400: bad model"));
        } else if (strcmp(cases[i].name, "e500") == 0) {
            assert_non_null(strstr(s_str(answer, "message"), "upstream exploded"));
        } else {
            assert_null(json_object_get(answer, "retry_after_ms"));
        }
        json_decref(answer);
    }
    //  Failed calls are not in the ledger.
    assert_int_equal(s_count(fx->db->db, "SELECT count(*) FROM llm_calls"), 0);
}

static void
test_llm_budget_exceeded_makes_no_call(void **state)
{
    fx_t *fx = (fx_t *)*state;
    s_agent(fx, "big", "{\"connection\":\"prov\",\"model\":\"stream-ok\",\"max_tokens\":1024}");
    s_fx_run(fx);
    cd_kind_t kind;
    json_t *answer = s_step(fx, "agent/big", "\"hello\"",
                            "\"budget\":{\"max_tokens\":1000,\"max_cost_usd\":null,"
                            "\"used_tokens\":0,\"used_cost_usd\":0}",
                            &kind);
    s_expect_error(answer, kind, "budget_exceeded", false);
    json_decref(answer);
    //  The cost bound: 1024 completion tokens at $2/1k alone is > $2.
    answer = s_step(fx, "agent/big", "\"hello\"",
                    "\"budget\":{\"max_tokens\":null,\"max_cost_usd\":2.0,\"used_tokens\":0,"
                    "\"used_cost_usd\":0.0}",
                    &kind);
    s_expect_error(answer, kind, "budget_exceeded", false);
    json_decref(answer);
    //  What was already used counts.
    answer =
        s_step(fx, "agent/big", "\"hello\"",
               "\"budget\":{\"max_tokens\":2000,\"used_tokens\":1000,\"used_cost_usd\":0}", &kind);
    s_expect_error(answer, kind, "budget_exceeded", false);
    json_decref(answer);
    assert_int_equal(cd_testllm_requests(fx->server), 0);
    assert_int_equal(s_count(fx->db->db, "SELECT count(*) FROM llm_calls"), 0);
    //  Room enough: the call is made.
    answer = s_step(fx, "agent/big", "\"hello\"",
                    "\"budget\":{\"max_tokens\":5000,\"max_cost_usd\":5,\"used_tokens\":10,"
                    "\"used_cost_usd\":0.5}",
                    &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    json_decref(answer);
    assert_int_equal(cd_testllm_requests(fx->server), 1);
}

static void
test_llm_rate_limit_makes_steps_wait(void **state)
{
    fx_t *fx = (fx_t *)*state;
    //  Two agents on one connection limited to 2 requests/s (burst 2).
    s_agent(fx, "r1", "{\"connection\":\"limited\",\"model\":\"stream-ok\"}");
    s_agent(fx, "r2", "{\"connection\":\"limited\",\"model\":\"stream-ok\"}");
    s_fx_run(fx);
    char *extra = s_extra(fx, NULL);
    int64_t started = zclock_mono();
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ts_step_send(fx->port, i % 2 ? "agent/r2" : "agent/r1", fx->task, "\"x\"",
                                      extra, 0, NULL),
                         0);
    }
    free(extra);
    int64_t at[4];
    for (int i = 0; i < 4; i++) {
        cd_envelope_t env;
        json_t *answer = NULL;
        assert_int_equal(ts_recv_json(fx->port, 10000, &env, &answer), 0);
        assert_int_equal(env.kind, CD_KIND_RESULT);
        json_decref(answer);
        at[i] = zclock_mono() - started;
    }
    //  Two at once, then one every 500 ms, whichever agent asks.
    assert_true(at[1] < 450);
    assert_true(at[2] >= 450);
    assert_true(at[3] >= 950);
    assert_int_equal(cd_testllm_requests(fx->server), 4);
    //  The bucket itself: a reservation queue.
    cd_llm_rates_t *rates = cd_llm_rates_new();
    assert_int_equal(cd_llm_rates_reserve(rates, "k", 0.5, 0), 0);
    assert_int_equal(cd_llm_rates_reserve(rates, "k", 0.5, 0), 2000);
    assert_int_equal(cd_llm_rates_reserve(rates, "k", 0.5, 0), 4000);
    assert_int_equal(cd_llm_rates_reserve(rates, "k", 0.5, 6000000), 0);
    assert_int_equal(cd_llm_rates_reserve(rates, "other", 10, 0), 0);
    cd_llm_rates_destroy(&rates);
    cd_llm_rates_destroy(&rates);
}

static void
test_llm_cancel_aborts_the_transfer(void **state)
{
    fx_t *fx = (fx_t *)*state;
    s_agent(fx, "slowpoke", "{\"connection\":\"prov\",\"model\":\"slow\"}");
    s_fx_run(fx);
    char *extra = s_extra(fx, NULL);
    uint8_t id[CD_ENV_UUID_SIZE] = {0};
    assert_int_equal(ts_step_send(fx->port, "agent/slowpoke", fx->task, "\"x\"", extra, 0, id), 0);
    free(extra);
    for (int i = 0; i < 300 && cd_testllm_requests(fx->server) == 0; i++) {
        zclock_sleep(10);
    }
    assert_int_equal(cd_testllm_requests(fx->server), 1);
    assert_int_equal(ts_cancel_send(fx->port, "agent/slowpoke", fx->task, id), 0);
    for (int i = 0; i < 300 && cd_testllm_hangups(fx->server) == 0; i++) {
        zclock_sleep(10);
    }
    assert_int_equal(cd_testllm_hangups(fx->server), 1);
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(fx->port, 300, &env), CD_ETIMEDOUT);
    assert_int_equal(cd_testllm_requests(fx->server), 1);
    //  The agent serves on; the step's deadline bounds a call.
    extra = s_extra(fx, NULL);
    int64_t started = zclock_mono();
    assert_int_equal(ts_step_send(fx->port, "agent/slowpoke", fx->task, "\"x\"", extra,
                                  cd_now_us() + 300000, NULL),
                     0);
    free(extra);
    json_t *answer = NULL;
    assert_int_equal(ts_recv_json(fx->port, 5000, &env, &answer), 0);
    s_expect_error(answer, env.kind, "timeout", true);
    assert_true(zclock_mono() - started < 3000);
    json_decref(answer);
}

//  The key is opened by the vault at call time: with the vault locked the
//  step fails with vault_locked (not retryable) and no call is made;
//  unlocked again, it works. A key left in clear in the config is refused.
static void
test_llm_vault_locked(void **state)
{
    fx_t *fx = (fx_t *)*state;
    s_agent(fx, "keyed", "{\"connection\":\"prov\",\"model\":\"m\",\"stream\":false}");
    s_agent(fx, "clear", "{\"connection\":\"clear\",\"model\":\"m\"}");
    s_fx_run(fx);
    cd_kind_t kind;
    json_t *answer = s_step(fx, "agent/keyed", "\"hi\"", NULL, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    json_decref(answer);
    char *auth = cd_testllm_last_auth(fx->server);
    assert_string_equal(auth, "Bearer sk-test");
    free(auth);
    int calls = cd_testllm_requests(fx->server);
    s_vault(fx, "lock");
    answer = s_step(fx, "agent/keyed", "\"hi\"", NULL, &kind);
    s_expect_error(answer, kind, "vault_locked", false);
    assert_non_null(strstr(s_str(answer, "message"), "locked"));
    json_decref(answer);
    assert_int_equal(cd_testllm_requests(fx->server), calls);
    s_vault(fx, "unlock");
    answer = s_step(fx, "agent/keyed", "\"hi\"", NULL, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    json_decref(answer);
    assert_int_equal(cd_testllm_requests(fx->server), calls + 1);
    answer = s_step(fx, "agent/clear", "\"hi\"", NULL, &kind);
    s_expect_error(answer, kind, "connection_invalid", false);
    json_decref(answer);
    assert_int_equal(cd_testllm_requests(fx->server), calls + 1);
}

static void
test_llm_not_configured_and_bad_steps(void **state)
{
    fx_t *fx = (fx_t *)*state;
    s_agent(fx, "orphan", "{\"connection\":\"prov\",\"model\":\"m\"}");
    fx->agents[0]->conninfo = NULL;
    s_fx_run(fx);
    cd_kind_t kind;
    json_t *answer = s_step(fx, "agent/orphan", "\"x\"", NULL, &kind);
    s_expect_error(answer, kind, "not_configured", false);
    json_decref(answer);
    answer = s_step(fx, "agent/orphan", "\"x\"", "\"budget\":{\"max_tokens\":\"lots\"}", &kind);
    s_expect_error(answer, kind, "bad_request", false);
    json_decref(answer);
}

static void
test_llm_rejects_bad_config(void **state)
{
    static const struct {
        const char *config;
        const char *names;
    } cases[] = {
        {"{}", "config.connection"},
        {"{\"connection\":\"c\"}", "config.model"},
        {"{\"connection\":\"\",\"model\":\"m\"}", "config.connection"},
        {"{\"connection\":\"c\",\"model\":7}", "config.model"},
        {"{\"connection\":\"c\",\"model\":\"m\",\"temperature\":3}", "config.temperature"},
        {"{\"connection\":\"c\",\"model\":\"m\",\"max_tokens\":0}", "config.max_tokens"},
        {"{\"connection\":\"c\",\"model\":\"m\",\"stream\":\"yes\"}", "config.stream"},
        {"{\"connection\":\"c\",\"model\":\"m\",\"template_id\":0}", "config.template_id"},
        {"{\"connection\":\"c\",\"model\":\"m\",\"timeout_ms\":0}", "config.timeout_ms"},
        {"{\"connection\":\"c\",\"model\":\"m\",\"top_p\":1}", "config.top_p"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *conf = json_loads(cases[i].config, 0, NULL);
        cd_llm_args_t *args = NULL;
        char why[256] = "";
        assert_int_equal(cd_llm_args_new("a", conf, 1, &args, why, sizeof why), CD_EINVAL);
        assert_null(args);
        if (strncmp(why, cases[i].names, strlen(cases[i].names)) != 0) {
            fail_msg("%s: %s", cases[i].config, why);
        }
        json_decref(conf);
    }
    json_t *conf =
        json_loads("{\"connection\":\"c\",\"model\":\"m\",\"temperature\":null}", 0, NULL);
    cd_llm_args_t *args = NULL;
    char why[256];
    assert_int_equal(cd_llm_args_new("a", conf, 0, &args, why, sizeof why), 0);
    assert_true(args->temperature < 0);
    assert_true(args->stream);
    assert_int_equal(args->max_tokens, CD_LLM_MAX_TOKENS);
    assert_int_equal(args->concurrency, 1);
    assert_string_equal(args->persist, "persist");
    cd_llm_args_destroy(&args);
    cd_llm_args_destroy(&args);
    json_decref(conf);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_llm_streams_tokens_and_records_usage, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_llm_plain_answers_and_prompts, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_llm_error_classes, s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_llm_budget_exceeded_makes_no_call, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_llm_rate_limit_makes_steps_wait, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_llm_cancel_aborts_the_transfer, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_llm_vault_locked, s_fx_setup, s_fx_teardown),
        cmocka_unit_test_setup_teardown(test_llm_not_configured_and_bad_steps, s_fx_setup,
                                        s_fx_teardown),
        cmocka_unit_test(test_llm_rejects_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
