/* label: integration */
/*  test_api_vault: the credential vault and connections over HTTP/2
    against a real node (cd_testnode) on a real PostgreSQL: status, init
    (weak password, twice), unlock (wrong password, not initialised),
    lock, the rate limit on wrong master passwords, the vault locked again
    after a restart; connections with secrets: stored only sealed (no
    clear text in any table, nor in any log line), read back as
    "********" by every route, secret_fields honoured, PATCH keeping,
    replacing and sealing values, 423 while locked, and bad input that
    changes nothing. */
#include "cd_log.h"
#include "cd_testnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MASTER "{\"master_password\":\"correct horse battery staple\"}"
#define S_WRONG "{\"master_password\":\"incorrect horse battery staple\"}"

//  --- every log line, to search for secrets -----------------------------------------

static pthread_mutex_t s_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *s_log_text;
static size_t s_log_len;

static bool
s_log_wants(void *arg, const char *actor)
{
    return true;
}

static void
s_log_write(void *arg, cd_log_level_t level, const char *actor, const char *text, size_t len)
{
    pthread_mutex_lock(&s_log_lock);
    char *grown = (char *)realloc(s_log_text, s_log_len + len + 2);
    if (grown) {
        s_log_text = grown;
        memcpy(s_log_text + s_log_len, text, len);
        s_log_len += len;
        s_log_text[s_log_len++] = '\n';
        s_log_text[s_log_len] = '\0';
    }
    pthread_mutex_unlock(&s_log_lock);
}

static const cd_log_sink_t s_sink = {s_log_wants, s_log_write};

static bool
s_logged(const char *needle)
{
    pthread_mutex_lock(&s_log_lock);
    bool found = s_log_text && strstr(s_log_text, needle);
    pthread_mutex_unlock(&s_log_lock);
    return found;
}

//  --- fixture and helpers ----------------------------------------------------------

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
    cd_log_sink_remove(&s_sink, NULL); //  if a test failed with it installed
    tn_stop(&node);
    return 0;
}

static const char *
s_field(const tn_resp_t *r)
{
    const char *f = json_string_value(
        json_object_get(json_object_get(json_object_get(r->json, "error"), "details"), "field"));
    return f ? f : "";
}

static void
s_sql_is(const tn_node_t *node, const char *sql, const char *want)
{
    char *text = tn_sql(node, sql);
    if (!text || strcmp(text, want) != 0) {
        fail_msg("%s: got '%s', want '%s'", sql, text ? text : "(null)", want);
    }
    free(text);
}

//  The vault's and the connections' rows, as one text: equal before and
//  after a request that must change nothing. Caller frees.
static char *
s_state(const tn_node_t *node)
{
    char *state = tn_sql(node, "SELECT concat_ws('|',"
                               " (SELECT json_agg(x ORDER BY x.id) FROM connections x),"
                               " (SELECT json_agg(x) FROM vault x),"
                               " (SELECT count(*) FROM events), 'end')");
    assert_non_null(state);
    return state;
}

//  A request that must answer status and code (and name field, if not
//  NULL) and change no row.
static void
s_bad(const tn_node_t *node, const char *method, const char *path, const char *body, long status,
      const char *code, const char *field)
{
    char *before = s_state(node);
    tn_resp_t r;
    long got = tn_call(node, &r, method, path, body);
    if (got != status || strcmp(tn_error_code(&r), code) != 0 ||
        (field && strcmp(s_field(&r), field) != 0)) {
        fail_msg("%s %s %s: want %ld %s %s, got %ld %s", method, path, body ? body : "", status,
                 code, field ? field : "", got, r.body);
    }
    tn_resp_free(&r);
    char *after = s_state(node);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void
s_status(const tn_node_t *node, bool initialized, bool locked)
{
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/system/status", NULL), 200);
    if (json_is_true(json_object_get(r.json, "initialized")) != initialized ||
        json_is_true(json_object_get(r.json, "locked")) != locked) {
        fail_msg("status: %s, want initialized %d locked %d", r.body, initialized, locked);
    }
    tn_resp_free(&r);
}

static void
s_post(const tn_node_t *node, const char *path, const char *body, long want)
{
    tn_resp_t r;
    long got = tn_call(node, &r, "POST", path, body);
    if (got != want) {
        fail_msg("POST %s: got %ld %s, want %ld", path, got, r.body, want);
    }
    tn_resp_free(&r);
}

//  Creates a connection (201 expected); returns the response (caller frees).
static void
s_create(const tn_node_t *node, const char *body, tn_resp_t *r)
{
    long got = tn_call(node, r, "POST", "/api/v1/connections", body);
    if (got != 201) {
        fail_msg("POST /connections %s: %ld %s", body, got, r->body);
    }
}

static const char *
s_config_str(const json_t *conn, const char *key)
{
    return json_string_value(json_object_get(json_object_get(conn, "config"), key));
}

//  Fails if needle is found in clear in any table of the database (every
//  row of every table as XML: bytea columns appear as base64, so the
//  sealed values are searched as raw bytes too).
static void
s_nowhere(const tn_node_t *node, const char *needle)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM information_schema.tables t,"
             " LATERAL (SELECT query_to_xml(format('SELECT * FROM %%I.%%I', t.table_schema,"
             " t.table_name), true, false, '')::text AS x) q"
             " WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
             " AND strpos(q.x, '%s') > 0",
             needle);
    s_sql_is(node, sql, "0");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM connections"
             " WHERE position(convert_to('%s', 'UTF8') in coalesce(secrets, '')) > 0",
             needle);
    s_sql_is(node, sql, "0");
    if (s_logged(needle)) {
        fail_msg("%s appears in the log", needle);
    }
}

//  --- vault ----------------------------------------------------------------------------

static void
test_vault_init_unlock_lock(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    s_status(node, false, true);
    s_bad(node, "POST", "/api/v1/system/unlock", S_MASTER, 409, "conflict", NULL);
    s_bad(node, "POST", "/api/v1/system/init", "{\"master_password\":\"short\"}", 400,
          "weak_password", "master_password");
    //  Eleven characters, 22 bytes: characters count, not bytes.
    s_bad(node, "POST", "/api/v1/system/init",
          "{\"master_password\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
          "\xc3\xa9\xc3\xa9\xc3\xa9\"}",
          400, "weak_password", "master_password");
    s_bad(node, "POST", "/api/v1/system/init", "{}", 400, "validation_failed", "master_password");
    s_bad(node, "POST", "/api/v1/system/init", "{\"master_password\":12345678901234}", 400,
          "validation_failed", "master_password");
    s_bad(node, "POST", "/api/v1/system/init",
          "{\"master_password\":\"correct horse battery staple\",\"x\":1}", 400,
          "validation_failed", "x");
    s_status(node, false, true);
    //  Init: only the wrapped key, salt and parameters (MODERATE) are
    //  stored; the vault is unlocked.
    s_post(node, "/api/v1/system/init", S_MASTER, 204);
    s_status(node, true, false);
    s_sql_is(node,
             "SELECT concat_ws(',', kdf, opslimit, memlimit, octet_length(salt),"
             " octet_length(wrapped_dek)) FROM vault",
             "argon2id13,3,268435456,16,72");
    s_bad(node, "POST", "/api/v1/system/init", S_MASTER, 409, "conflict", NULL);
    //  Lock, a wrong password (stays locked), the right one.
    s_post(node, "/api/v1/system/lock", NULL, 204);
    s_status(node, true, true);
    s_bad(node, "POST", "/api/v1/system/unlock", S_WRONG, 401, "unauthenticated", NULL);
    s_status(node, true, true);
    //  An Idempotency-Key is not recorded for the vault (its request hash
    //  would be a fast hash of the master password, and the vault is per
    //  node).
    const char *headers[] = {"Idempotency-Key: unlock-1", NULL};
    tn_resp_t r;
    assert_int_equal(tn_request(node, "POST", "/api/v1/system/unlock", S_MASTER, headers, &r), 204);
    tn_resp_free(&r);
    s_sql_is(node, "SELECT count(*) FROM idempotency_keys", "0");
    s_status(node, true, false);
    //  Unlocking an unlocked vault checks the password all the same.
    s_bad(node, "POST", "/api/v1/system/unlock", S_WRONG, 401, "unauthenticated", NULL);
    s_status(node, true, false);
    s_post(node, "/api/v1/system/lock", NULL, 204);
    s_post(node, "/api/v1/system/lock", NULL, 204);
    s_status(node, true, true);
    s_nowhere(node, "battery staple");
}

static void
test_vault_wrong_passwords_are_rate_limited(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    s_post(node, "/api/v1/system/init", S_MASTER, 204);
    s_post(node, "/api/v1/system/lock", NULL, 204);
    for (int i = 0; i < 5; i++) {
        s_bad(node, "POST", "/api/v1/system/unlock", S_WRONG, 401, "unauthenticated", NULL);
    }
    //  The sixth, even with the right password: 429 with Retry-After, locked.
    tn_resp_t r;
    assert_int_equal(tn_call(node, &r, "POST", "/api/v1/system/unlock", S_MASTER), 429);
    assert_string_equal(tn_error_code(&r), "rate_limited");
    char retry[32];
    assert_non_null(tn_header(&r, "retry-after", retry, sizeof retry));
    long seconds = strtol(retry, NULL, 10);
    assert_true(seconds > 800 && seconds <= 900);
    tn_resp_free(&r);
    s_status(node, true, true);
}

static void
test_vault_locked_after_restart(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    s_post(node, "/api/v1/system/init", S_MASTER, 204);
    tn_resp_t r;
    s_create(node,
             "{\"name\":\"prov\",\"connector_type\":\"openai\",\"config\":{\"base_url\":"
             "\"https://x\",\"api_key\":\"sk-restart-SECRET\"}}",
             &r);
    tn_resp_free(&r);
    assert_int_equal(tn_restart(node, NULL), 0);
    s_status(node, true, true);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/connections", NULL), 200);
    json_t *item = json_array_get(json_object_get(r.json, "items"), 0);
    assert_string_equal(s_config_str(item, "api_key"), "********");
    tn_resp_free(&r);
    s_bad(node, "POST", "/api/v1/connections", "{\"name\":\"b\",\"connector_type\":\"x\"}", 423,
          "locked", NULL);
    s_post(node, "/api/v1/system/unlock", S_MASTER, 204);
    s_status(node, true, false);
    s_create(node, "{\"name\":\"b\",\"connector_type\":\"x\"}", &r);
    tn_resp_free(&r);
    s_nowhere(node, "sk-restart-SECRET");
}

//  --- connections ----------------------------------------------------------------------

static void
test_connections_secrets_sealed(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    assert_int_equal(cd_log_sink_add(&s_sink, NULL), 0);
    //  Before init: the vault is locked, nothing is created.
    s_bad(node, "POST", "/api/v1/connections",
          "{\"name\":\"openai\",\"connector_type\":\"openai\",\"config\":{\"api_key\":\"k\"}}", 423,
          "locked", NULL);
    s_post(node, "/api/v1/system/init", S_MASTER, 204);
    tn_resp_t r;
    s_create(node,
             "{\"name\":\"openai\",\"connector_type\":\"openai\",\"config\":{\"base_url\":"
             "\"https://api.example\",\"api_key\":\"sk-live-SECRET1\",\"org\":\"org-SECRET2\","
             "\"Password\":\"pw-SECRET5\",\"retries\":3,\"headers\":{\"x-trace\":\"on\"}},"
             "\"secret_fields\":[\"org\"]}",
             &r);
    char location[64], want[64];
    int64_t id = json_integer_value(json_object_get(r.json, "id"));
    snprintf(want, sizeof want, "/api/v1/connections/%lld", (long long)id);
    assert_non_null(tn_header(&r, "location", location, sizeof location));
    assert_string_equal(location, want);
    assert_string_equal(s_config_str(r.json, "api_key"), "********");
    assert_string_equal(s_config_str(r.json, "org"), "********");
    assert_string_equal(s_config_str(r.json, "Password"), "********");
    assert_string_equal(s_config_str(r.json, "base_url"), "https://api.example");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r.json, "config"), "retries")), 3);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(r.json, "secret_fields"), 0)), "org");
    assert_true(json_is_true(json_object_get(r.json, "has_secrets")));
    tn_resp_free(&r);
    //  Stored sealed, one value each.
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(k, ',' ORDER BY k) FROM connections,"
             " jsonb_object_keys(convert_from(secrets, 'UTF8')::jsonb) k WHERE id = %lld",
             (long long)id);
    s_sql_is(node, sql, "Password,api_key,org");
    s_nowhere(node, "sk-live-SECRET1");
    s_nowhere(node, "org-SECRET2");
    s_nowhere(node, "pw-SECRET5");
    s_nowhere(node, "battery staple");
    //  Every read masks.
    snprintf(want, sizeof want, "/api/v1/connections/%lld", (long long)id);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_string_equal(s_config_str(r.json, "api_key"), "********");
    assert_null(json_object_get(r.json, "secrets"));
    assert_null(strstr(r.body, "SECRET"));
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "GET", "/api/v1/connections", NULL), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_null(strstr(r.body, "SECRET"));
    tn_resp_free(&r);

    //  Bad input changes nothing.
    static const struct {
        const char *body;
        long status;
        const char *code;
        const char *field;
    } bad[] = {
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"config\":{\"api_key\":5}}", 400,
         "validation_failed", "config.api_key"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"config\":{\"api_key\":\"********\"}}", 400,
         "validation_failed", "config.api_key"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"config\":{\"auth\":{\"password\":\"p\"}}}",
         400, "validation_failed", "config.auth"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"config\":{\"list\":[{\"TOKEN\":\"t\"}]}}", 400,
         "validation_failed", "config.list"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"config\":{\"k\":{\"a\":1}},"
         "\"secret_fields\":[\"k\"]}",
         400, "validation_failed", "config.k"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"secret_fields\":[1]}", 400,
         "validation_failed", "secret_fields"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"secret_fields\":\"org\"}", 400,
         "validation_failed", "secret_fields"},
        {"{\"name\":\"n\",\"connector_type\":\"Bad Type\"}", 400, "validation_failed",
         "connector_type"},
        {"{\"name\":\"\",\"connector_type\":\"x\"}", 400, "validation_failed", "name"},
        {"{\"connector_type\":\"x\"}", 400, "validation_failed", "name"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"config\":[]}", 400, "validation_failed",
         "config"},
        {"{\"name\":\"n\",\"connector_type\":\"x\",\"extra\":1}", 400, "validation_failed",
         "extra"},
        {"{\"name\":\"openai\",\"connector_type\":\"x\"}", 409, "conflict", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_bad(node, "POST", "/api/v1/connections", bad[i].body, bad[i].status, bad[i].code,
              bad[i].field);
    }
    s_bad(node, "PATCH", want, "{\"config\":{\"api_key\":5}}", 400, "validation_failed",
          "config.api_key");
    s_bad(node, "PATCH", want, "{\"config\":{\"new_token\":\"x\",\"token\":\"********\"}}", 400,
          "validation_failed", "config.token");
    s_bad(node, "PATCH", want, "{\"connector_type\":\"A\"}", 400, "validation_failed",
          "connector_type");
    s_bad(node, "PATCH", "/api/v1/connections/999999", "{\"name\":\"q\"}", 404, "not_found", NULL);
    s_bad(node, "PATCH", "/api/v1/connections/abc", "{\"name\":\"q\"}", 404, "not_found", NULL);
    s_bad(node, "GET", "/api/v1/connections/999999", NULL, 404, "not_found", NULL);

    //  PATCH: "********" keeps a sealed value, the others are re-read.
    snprintf(sql, sizeof sql,
             "SELECT convert_from(secrets, 'UTF8')::jsonb ->> 'api_key' FROM connections"
             " WHERE id = %lld",
             (long long)id);
    char *sealed_before = tn_sql(node, sql);
    assert_non_null(sealed_before);
    assert_int_equal(tn_call(node, &r, "PATCH", want,
                             "{\"config\":{\"base_url\":\"https://b.example\",\"api_key\":"
                             "\"********\",\"org\":\"********\",\"region\":\"eu-SECRET3\"}}"),
                     200);
    assert_string_equal(s_config_str(r.json, "base_url"), "https://b.example");
    assert_string_equal(s_config_str(r.json, "api_key"), "********");
    assert_string_equal(s_config_str(r.json, "region"), "eu-SECRET3"); //  not secret (yet)
    assert_null(json_object_get(json_object_get(r.json, "config"), "Password"));
    tn_resp_free(&r);
    s_sql_is(node, sql, sealed_before);
    //  secret_fields alone: region's current value gets sealed.
    assert_int_equal(tn_call(node, &r, "PATCH", want, "{\"secret_fields\":[\"org\",\"region\"]}"),
                     200);
    assert_string_equal(s_config_str(r.json, "region"), "********");
    assert_string_equal(s_config_str(r.json, "org"), "********");
    tn_resp_free(&r);
    //  Not s_nowhere: the value was stored in clear while it was not
    //  secret, and persist keeps each write's answer for a while
    //  (persist_requests); the connection itself no longer holds it.
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM connections c WHERE strpos(c::text, 'eu-SECRET3') > 0"
             " OR position(convert_to('eu-SECRET3', 'UTF8') in coalesce(c.secrets, '')) > 0");
    s_sql_is(node, sql, "0");
    s_nowhere(node, "pw-SECRET5"); //  dropped with its key
    //  A new value replaces the sealed one; a rename keeps them all.
    assert_int_equal(tn_call(node, &r, "PATCH", want,
                             "{\"config\":{\"base_url\":\"https://b.example\",\"api_key\":"
                             "\"sk-new-SECRET4\",\"region\":\"********\"}}"),
                     200);
    assert_null(json_object_get(json_object_get(r.json, "config"), "org"));
    tn_resp_free(&r);
    char *sealed_after = tn_sql(node, sql);
    assert_string_not_equal(sealed_before, sealed_after);
    free(sealed_before);
    assert_int_equal(tn_call(node, &r, "PATCH", want, "{\"name\":\"openai-2\"}"), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "openai-2");
    tn_resp_free(&r);
    s_sql_is(node, sql, sealed_after);
    free(sealed_after);
    snprintf(sql, sizeof sql,
             "SELECT string_agg(k, ',' ORDER BY k) FROM connections,"
             " jsonb_object_keys(convert_from(secrets, 'UTF8')::jsonb) k WHERE id = %lld",
             (long long)id);
    s_sql_is(node, sql, "api_key,region");
    s_nowhere(node, "sk-new-SECRET4");
    s_nowhere(node, "sk-live-SECRET1");

    //  Locked: creates and updates are 423 and change nothing; reads and
    //  deletes work.
    s_create(node, "{\"name\":\"spare\",\"connector_type\":\"x\"}", &r);
    char spare[64];
    snprintf(spare, sizeof spare, "/api/v1/connections/%lld",
             (long long)json_integer_value(json_object_get(r.json, "id")));
    tn_resp_free(&r);
    s_post(node, "/api/v1/system/lock", NULL, 204);
    s_bad(node, "POST", "/api/v1/connections", "{\"name\":\"c\",\"connector_type\":\"x\"}", 423,
          "locked", NULL);
    s_bad(node, "PATCH", want, "{\"name\":\"z\"}", 423, "locked", NULL);
    s_bad(node, "PATCH", want, "{\"config\":{\"api_key\":\"sk-locked-SECRET6\"}}", 423, "locked",
          NULL);
    assert_int_equal(tn_call(node, &r, "GET", want, NULL), 200);
    assert_string_equal(s_config_str(r.json, "api_key"), "********");
    tn_resp_free(&r);
    assert_int_equal(tn_call(node, &r, "DELETE", spare, NULL), 204);
    tn_resp_free(&r);
    s_bad(node, "DELETE", spare, NULL, 404, "not_found", NULL);
    s_nowhere(node, "sk-locked-SECRET6");
    s_post(node, "/api/v1/system/unlock", S_MASTER, 204);
    assert_int_equal(tn_call(node, &r, "DELETE", want, NULL), 204);
    tn_resp_free(&r);
    s_sql_is(node, "SELECT count(*) FROM connections", "0");

    //  Idempotency-Key is ignored for a create (its body carries secrets):
    //  no record, so no fast hash of the body; a repeat runs again and
    //  meets the taken name.
    static const char keyed[] = "{\"name\":\"keyed\",\"connector_type\":\"openai\","
                                "\"config\":{\"api_key\":\"sk-keyed-SECRET7\"}}";
    const char *const headers[] = {"Idempotency-Key: conn-1", NULL};
    assert_int_equal(tn_request(node, "POST", "/api/v1/connections", keyed, headers, &r), 201);
    tn_resp_free(&r);
    assert_int_equal(tn_request(node, "POST", "/api/v1/connections", keyed, headers, &r), 409);
    assert_string_equal(tn_error_code(&r), "conflict");
    tn_resp_free(&r);
    s_sql_is(node, "SELECT count(*) FROM connections", "1");
    s_sql_is(node, "SELECT count(*) FROM idempotency_keys", "0");
    s_nowhere(node, "sk-keyed-SECRET7");
    cd_log_sink_remove(&s_sink, NULL);
    //  The log did see the node working (the sink was live).
    assert_true(s_logged("vault"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vault_init_unlock_lock, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_vault_wrong_passwords_are_rate_limited, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_vault_locked_after_restart, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_connections_secrets_sealed, s_setup, s_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(s_log_text);
    return rc;
}
