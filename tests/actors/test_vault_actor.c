/*  test_vault_actor: the vault actor in a real supervisor tree, talked to
    over a port: locked at start, init (pending until commit, dropped by
    abort), seal and open, lock, unlock with the right and a wrong
    password, the rate limit on wrong passwords and its expiry, status
    answered while a key derivation runs, too many derivations at once,
    malformed requests, requests from another node refused, and a stop
    during a derivation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_port.h"
#include "cd_supervisor.h"
#include "cd_teststep.h"
#include "cd_vault_actor.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cd_vault_params_t s_fast = {1, 64 * 1024};
static const cd_vault_params_t s_slow = {3, 64 * 1024 * 1024};
static const char s_master[] = "correct horse battery staple";

typedef struct {
    cd_runtime_t rt;
    cd_vault_actor_args_t args;
    cd_child_spec_t children[1];
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port;
} fx_t;

static fx_t *
s_start(const cd_vault_params_t *params, int max_failures, int window_ms)
{
    static int generation = 0;
    char id[16];
    snprintf(id, sizeof id, "v%d", ++generation);
    fx_t *fx = calloc(1, sizeof *fx);
    fx->rt = (cd_runtime_t){cd_registry_new(id), 1000, 1000, 200, 5000, 5000, 3, 10};
    fx->args = (cd_vault_actor_args_t){params, max_failures, window_ms};
    fx->children[0] = (cd_child_spec_t){CD_VAULT_ACTOR_NAME, &cd_vault_actor_ops, &fx->args,
                                        CD_RESTART_PERMANENT};
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, fx->children, 1};
    char why[160] = "";
    fx->root = cd_root_new(&fx->rt, "root", &fx->spec, why, sizeof why);
    if (!fx->root) {
        fail_msg("tree: %s", why);
    }
    fx->port = cd_port_new(&fx->rt, "test");
    assert_non_null(fx->port);
    return fx;
}

static void
s_stop(fx_t **fx_p)
{
    fx_t *fx = *fx_p;
    cd_port_destroy(&fx->port);
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    cd_registry_destroy(&fx->rt.registry);
    free(fx);
    *fx_p = NULL;
}

//  Sends op with payload (JSON object text); from (if not NULL) replaces
//  the sender's name. Returns 0 or the send's error; id gets the request's id.
static int
s_send(fx_t *fx, const char *op, const char *payload, const char *from,
       uint8_t id[CD_ENV_UUID_SIZE])
{
    json_t *value = json_loads(payload ? payload : "{}", 0, NULL);
    assert_non_null(value);
    cd_pack_t *pack = cd_pack_new();
    assert_int_equal(cd_mpjson_encode(value, pack), 0);
    json_decref(value);
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, CD_VAULT_ACTOR_NAME);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    if (from) {
        env.from = cd_str(from);
    }
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    if (id) {
        memcpy(id, env.id, CD_ENV_UUID_SIZE);
    }
    int rc = cd_port_send(fx->port, &env);
    cd_pack_destroy(&pack);
    return rc;
}

//  The next answer (caller decrefs), its kind in *kind; id (if not NULL)
//  must be its parent.
static json_t *
s_answer(fx_t *fx, cd_kind_t *kind, const uint8_t *id)
{
    cd_envelope_t env;
    json_t *payload = NULL;
    int rc = ts_recv_json(fx->port, 10000, &env, &payload);
    if (rc != 0) {
        fail_msg("no answer: %s", cd_errname(rc));
    }
    if (id) {
        assert_memory_equal(env.parent_id, id, CD_ENV_UUID_SIZE);
    }
    *kind = env.kind;
    return payload;
}

//  Sends op and returns its answer.
static json_t *
s_call(fx_t *fx, const char *op, const char *payload, cd_kind_t *kind)
{
    uint8_t id[CD_ENV_UUID_SIZE];
    assert_int_equal(s_send(fx, op, payload, NULL, id), 0);
    return s_answer(fx, kind, id);
}

//  Sends op and expects a result; returns it (caller decrefs).
static json_t *
s_ok(fx_t *fx, const char *op, const char *payload)
{
    cd_kind_t kind;
    json_t *answer = s_call(fx, op, payload, &kind);
    if (kind != CD_KIND_RESULT) {
        char *text = ts_dump(answer);
        fail_msg("%s: expected a result, got %s", op, text);
    }
    return answer;
}

//  Sends op and expects the error code; returns the answer.
static json_t *
s_err(fx_t *fx, const char *op, const char *payload, const char *code)
{
    cd_kind_t kind;
    json_t *answer = s_call(fx, op, payload, &kind);
    const char *got = json_string_value(json_object_get(answer, "code"));
    if (kind != CD_KIND_ERROR || !got || strcmp(got, code) != 0) {
        char *text = ts_dump(answer);
        fail_msg("%s: expected error %s, got %s", op, code, text);
    }
    return answer;
}

static bool
s_locked(fx_t *fx)
{
    json_t *status = s_ok(fx, "status", NULL);
    bool locked = json_is_true(json_object_get(status, "locked"));
    json_decref(status);
    return locked;
}

//  A record for s_master made outside the actor (as stored).
static char *
s_record(const char *password)
{
    cd_vault_record_t record;
    cd_vault_t *vault = NULL;
    assert_int_equal(cd_vault_create(password, strlen(password), &s_fast, &record, &vault), 0);
    cd_vault_destroy(&vault);
    char *json = NULL;
    cd_vault_record_to_json(&record, &json);
    return json;
}

//  The payload of an unlock: {"password", "record"}. Caller frees.
static char *
s_unlock_payload(const char *password, const char *record)
{
    json_t *p = json_pack("{s:s, s:s}", "password", password, "record", record);
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    return text;
}

static void
test_vault_actor_init_commit_seal_open_lock(void **state)
{
    fx_t *fx = s_start(&s_fast, 0, 0);
    assert_true(s_locked(fx));
    json_decref(s_err(fx, "seal", "{\"values\":{\"k\":\"v\"}}", "vault_locked"));
    json_decref(s_err(fx, "open", "{\"sealed\":\"00\"}", "vault_locked"));
    //  init: a record and a pending vault, still locked.
    json_t *made = s_ok(fx, "init", "{\"password\":\"correct horse battery staple\"}");
    const char *salt = json_string_value(json_object_get(made, "salt"));
    const char *record_text = json_string_value(json_object_get(made, "record"));
    assert_non_null(salt);
    assert_non_null(record_text);
    cd_vault_record_t record;
    assert_int_equal(cd_vault_record_from_json(record_text, &record, NULL), 0);
    assert_int_equal(record.params.opslimit, 1);
    assert_true(s_locked(fx));
    json_decref(s_err(fx, "commit", "{\"salt\":\"00\"}", "not_pending"));
    char payload[128];
    snprintf(payload, sizeof payload, "{\"salt\":\"%s\"}", salt);
    json_decref(s_ok(fx, "commit", payload));
    assert_false(s_locked(fx));
    json_decref(s_err(fx, "commit", payload, "not_pending")); //  once
    //  Seal two values, open each.
    json_t *sealed = s_ok(fx, "seal", "{\"values\":{\"api_key\":\"sk-1\",\"token\":\"t-2\"}}");
    json_t *map = json_object_get(sealed, "sealed");
    assert_int_equal(json_object_size(map), 2);
    const char *hex = json_string_value(json_object_get(map, "api_key"));
    assert_non_null(hex);
    assert_null(strstr(hex, "sk-1"));
    char open[512];
    snprintf(open, sizeof open, "{\"sealed\":\"%s\"}", hex);
    json_t *opened = s_ok(fx, "open", open);
    assert_string_equal(json_string_value(json_object_get(opened, "value")), "sk-1");
    json_decref(opened);
    //  A fresh nonce per value: sealing the same value twice differs.
    json_t *again = s_ok(fx, "seal", "{\"values\":{\"api_key\":\"sk-1\"}}");
    assert_string_not_equal(
        json_string_value(json_object_get(json_object_get(again, "sealed"), "api_key")), hex);
    json_decref(again);
    json_decref(s_ok(fx, "seal", "{\"values\":{}}"));
    json_decref(s_err(fx, "open", "{\"sealed\":\"zz\"}", "bad_secret"));
    json_decref(s_err(fx, "seal", "{\"values\":{\"k\":1}}", "invalid"));
    json_decref(s_err(fx, "seal", "{\"values\":[1]}", "invalid"));
    json_decref(s_err(fx, "seal", "{}", "invalid"));
    json_decref(s_err(fx, "open", "{}", "invalid"));
    json_decref(s_err(fx, "init", "{}", "invalid"));
    json_decref(s_err(fx, "init", "{\"password\":\"\"}", "invalid"));
    json_decref(s_err(fx, "frobnicate", NULL, "invalid"));
    //  Lock: wiped; the sealed value opens only after an unlock.
    json_decref(s_ok(fx, "lock", NULL));
    assert_true(s_locked(fx));
    json_decref(s_err(fx, "open", open, "vault_locked"));
    char *unlock = s_unlock_payload(s_master, record_text);
    json_decref(s_ok(fx, "unlock", unlock));
    free(unlock);
    assert_false(s_locked(fx));
    opened = s_ok(fx, "open", open);
    assert_string_equal(json_string_value(json_object_get(opened, "value")), "sk-1");
    json_decref(opened);
    json_decref(sealed);
    json_decref(made);
    //  init then abort: nothing changes.
    json_decref(s_ok(fx, "lock", NULL));
    made = s_ok(fx, "init", "{\"password\":\"another long password\"}");
    snprintf(payload, sizeof payload, "{\"salt\":\"%s\"}",
             json_string_value(json_object_get(made, "salt")));
    json_decref(s_ok(fx, "abort", payload));
    json_decref(s_err(fx, "commit", payload, "not_pending"));
    assert_true(s_locked(fx));
    json_decref(made);
    s_stop(&fx);
}

static void
test_vault_actor_wrong_password_and_rate_limit(void **state)
{
    fx_t *fx = s_start(&s_fast, 3, 1500);
    char *record = s_record(s_master);
    char *right = s_unlock_payload(s_master, record);
    char *wrong = s_unlock_payload("not the master password", record);
    json_decref(s_err(fx, "unlock", "{\"password\":\"x\",\"record\":\"{}\"}", "invalid"));
    json_decref(s_err(fx, "unlock", "{\"password\":\"x\"}", "invalid"));
    //  Two wrong, then right: unlocked, and the failures forgotten.
    json_decref(s_err(fx, "unlock", wrong, "unauthenticated"));
    json_decref(s_err(fx, "unlock", wrong, "unauthenticated"));
    assert_true(s_locked(fx));
    json_decref(s_ok(fx, "unlock", right));
    assert_false(s_locked(fx));
    json_decref(s_ok(fx, "lock", NULL));
    //  Three wrong within the window: even the right one is refused, and
    //  the vault stays locked.
    int64_t t0 = zclock_usecs();
    for (int i = 0; i < 3; i++) {
        json_decref(s_err(fx, "unlock", wrong, "unauthenticated"));
    }
    json_t *limited = s_err(fx, "unlock", right, "rate_limited");
    json_int_t retry = json_integer_value(json_object_get(limited, "retry_after_s"));
    assert_true(retry >= 1 && retry <= 2);
    json_decref(limited);
    assert_true(s_locked(fx));
    //  Once the oldest failure leaves the window, unlocking works again;
    //  a wrong password then leaves the unlocked vault as it is.
    while (zclock_usecs() - t0 < 1700 * 1000) {
        zclock_sleep(50);
    }
    json_decref(s_ok(fx, "unlock", right));
    json_decref(s_err(fx, "unlock", wrong, "unauthenticated"));
    assert_false(s_locked(fx));
    free(right);
    free(wrong);
    free(record);
    s_stop(&fx);
}

static void
test_vault_actor_kdf_off_the_actor_thread(void **state)
{
    fx_t *fx = s_start(&s_slow, 0, 0);
    char *record = NULL;
    {
        cd_vault_record_t r;
        cd_vault_t *vault = NULL;
        assert_int_equal(cd_vault_create(s_master, strlen(s_master), &s_slow, &r, &vault), 0);
        cd_vault_destroy(&vault);
        cd_vault_record_to_json(&r, &record);
    }
    char *right = s_unlock_payload(s_master, record);
    //  One running, CD_VAULT_MAX_WAITING waiting, the next is busy; a
    //  status sent behind them all is answered first among the rest.
    uint8_t ids[CD_VAULT_MAX_WAITING + 2][CD_ENV_UUID_SIZE];
    for (int i = 0; i < CD_VAULT_MAX_WAITING + 2; i++) {
        assert_int_equal(s_send(fx, "unlock", right, NULL, ids[i]), 0);
    }
    uint8_t status_id[CD_ENV_UUID_SIZE];
    assert_int_equal(s_send(fx, "status", NULL, NULL, status_id), 0);
    int ok = 0, busy = 0;
    bool status_seen = false;
    for (int i = 0; i < CD_VAULT_MAX_WAITING + 3; i++) {
        cd_kind_t kind;
        cd_envelope_t env;
        json_t *answer = NULL;
        assert_int_equal(ts_recv_json(fx->port, 20000, &env, &answer), 0);
        kind = env.kind;
        if (memcmp(env.parent_id, status_id, CD_ENV_UUID_SIZE) == 0) {
            status_seen = true;
            assert_true(ok == 0); //  before the first derivation ended
            assert_true(json_is_true(json_object_get(answer, "busy")));
            assert_true(json_is_true(json_object_get(answer, "locked")));
        } else if (kind == CD_KIND_RESULT) {
            ok++;
        } else {
            assert_string_equal(json_string_value(json_object_get(answer, "code")), "busy");
            busy++;
        }
        json_decref(answer);
    }
    assert_true(status_seen);
    assert_int_equal(ok, CD_VAULT_MAX_WAITING + 1);
    assert_int_equal(busy, 1);
    assert_false(s_locked(fx));
    //  A stop while a derivation runs waits for it and leaks nothing.
    assert_int_equal(s_send(fx, "unlock", right, NULL, NULL), 0);
    zclock_sleep(20);
    free(right);
    free(record);
    s_stop(&fx);
}

static void
test_vault_actor_refuses_other_nodes(void **state)
{
    fx_t *fx = s_start(&s_fast, 0, 0);
    json_t *made = s_ok(fx, "init", "{\"password\":\"correct horse battery staple\"}");
    char payload[128];
    snprintf(payload, sizeof payload, "{\"salt\":\"%s\"}",
             json_string_value(json_object_get(made, "salt")));
    json_decref(s_ok(fx, "commit", payload));
    json_decref(made);
    //  A request that says it comes from another node gets no answer
    //  (it would go there), not even a status.
    assert_int_equal(s_send(fx, "status", NULL, "node/n9/api/0", NULL), 0);
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(fx->port, 300, &env), CD_ETIMEDOUT);
    //  The actor is still there for local callers.
    assert_false(s_locked(fx));
    s_stop(&fx);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vault_actor_init_commit_seal_open_lock),
        cmocka_unit_test(test_vault_actor_wrong_password_and_rate_limit),
        cmocka_unit_test(test_vault_actor_kdf_off_the_actor_thread),
        cmocka_unit_test(test_vault_actor_refuses_other_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
