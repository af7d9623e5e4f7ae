/* label: db */
/*  test_vault_table: what migration 0004 stores, against a real
    PostgreSQL. A vault record written to the `vault` table and read back
    unlocks the vault; the table holds one record and refuses malformed
    ones; auth_keys takes only its two 32-byte keys; a connection secret
    sealed by the vault is stored through the query layer, is found
    nowhere in clear in the row, and opens again from cd_q_connections_sealed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_q_support.h"

#include "cd_q_system.h"
#include "cd_vault.h"

#include <sodium.h>

static const cd_vault_params_t s_fast = {1, 64 * 1024};
static const char s_master[] = "correct horse battery staple";

static const char *const s_store_sql =
    "INSERT INTO vault (kdf, opslimit, memlimit, salt, wrapped_dek)"
    " SELECT r ->> 'kdf', (r ->> 'opslimit')::bigint, (r ->> 'memlimit')::bigint,"
    " decode(r ->> 'salt', 'hex'), decode(r ->> 'wrapped_dek', 'hex')"
    " FROM (SELECT $1::jsonb AS r) x";

static const char *const s_load_sql =
    "SELECT json_build_object('kdf', kdf, 'opslimit', opslimit, 'memlimit', memlimit,"
    " 'salt', encode(salt, 'hex'), 'wrapped_dek', encode(wrapped_dek, 'hex'))::text FROM vault";

static void
test_vault_table_record_round_trip_unlocks(void **state)
{
    fixture_t *fx = *state;
    cd_vault_record_t record;
    cd_vault_t *vault = NULL;
    assert_int_equal(cd_vault_create(s_master, strlen(s_master), &s_fast, &record, &vault), 0);
    cd_vault_destroy(&vault);
    char *json = NULL;
    cd_vault_record_to_json(&record, &json);
    const char *params[] = {json};
    s_ok(fx->db, cd_db_exec_params(fx->db, s_store_sql, 1, params, NULL));
    //  One record only.
    s_sqlstate(fx->db, cd_db_exec_params(fx->db, s_store_sql, 1, params, NULL), "23505");
    free(json);
    char *loaded = NULL;
    s_ok(fx->db, cd_db_query_text(fx->db, s_load_sql, 0, NULL, &loaded));
    cd_vault_record_t back;
    const char *why = NULL;
    if (cd_vault_record_from_json(loaded, &back, &why) != 0) {
        fail_msg("%s: %s", loaded, why);
    }
    free(loaded);
    assert_memory_equal(&back, &record, sizeof record);
    assert_int_equal(cd_vault_unlock(&back, s_master, strlen(s_master), &vault), 0);
    cd_vault_destroy(&vault);
    assert_int_equal(cd_vault_unlock(&back, "wrong master password", 21, &vault), CD_EPERM);
}

static void
test_vault_table_refuses_malformed_records_and_keys(void **state)
{
    fixture_t *fx = *state;
    static const char *const bad[] = {
        "INSERT INTO vault (kdf, opslimit, memlimit, salt, wrapped_dek) VALUES"
        " ('scrypt', 3, 268435456, '\\x00112233445566778899aabbccddeeff', decode(repeat('00', 72),"
        " 'hex'))",
        "INSERT INTO vault (kdf, opslimit, memlimit, salt, wrapped_dek) VALUES"
        " ('argon2id13', 0, 268435456, '\\x00112233445566778899aabbccddeeff',"
        " decode(repeat('00', 72), 'hex'))",
        "INSERT INTO vault (kdf, opslimit, memlimit, salt, wrapped_dek) VALUES"
        " ('argon2id13', 3, 268435456, '\\x0011', decode(repeat('00', 72), 'hex'))",
        "INSERT INTO vault (kdf, opslimit, memlimit, salt, wrapped_dek) VALUES"
        " ('argon2id13', 3, 268435456, '\\x00112233445566778899aabbccddeeff',"
        " decode(repeat('00', 71), 'hex'))",
        "INSERT INTO vault (id, kdf, opslimit, memlimit, salt, wrapped_dek) VALUES"
        " (2, 'argon2id13', 3, 268435456, '\\x00112233445566778899aabbccddeeff',"
        " decode(repeat('00', 72), 'hex'))",
        "INSERT INTO auth_keys (name, key) VALUES ('other', decode(repeat('00', 32), 'hex'))",
        "INSERT INTO auth_keys (name, key) VALUES ('jwt', decode(repeat('00', 31), 'hex'))",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_sqlstate(fx->db, cd_db_exec_params(fx->db, bad[i], 0, NULL, NULL), "23514");
    }
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, key, sizeof key);
    const char *params[] = {hex};
    const char *insert = "INSERT INTO auth_keys (name, key) VALUES ('jwt', decode($1, 'hex'))"
                         " ON CONFLICT (name) DO NOTHING";
    s_ok(fx->db, cd_db_exec_params(fx->db, insert, 1, params, NULL));
    //  A second node's attempt changes nothing; both read the first key.
    char other[65];
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(other, sizeof other, key, sizeof key);
    const char *params2[] = {other};
    int64_t n = -1;
    s_ok(fx->db, cd_db_exec_params(fx->db, insert, 1, params2, &n));
    assert_int_equal(n, 0);
    char *stored = NULL;
    s_ok(fx->db, cd_db_query_text(fx->db,
                                  "SELECT encode(key, 'hex') FROM auth_keys WHERE"
                                  " name = 'jwt'",
                                  0, NULL, &stored));
    assert_string_equal(stored, hex);
    free(stored);
}

static void
test_vault_table_connection_secrets_are_sealed_at_rest(void **state)
{
    fixture_t *fx = *state;
    cd_vault_record_t record;
    cd_vault_t *vault = NULL;
    assert_int_equal(cd_vault_create(s_master, strlen(s_master), &s_fast, &record, &vault), 0);
    const char *secret = "sk-clear-text-must-not-appear";
    char *sealed = NULL;
    assert_int_equal(cd_vault_seal(vault, secret, strlen(secret), &sealed), 0);
    char secrets[512];
    snprintf(secrets, sizeof secrets, "{\"api_key\":\"%s\"}", sealed);
    char *out = NULL;
    s_ok(fx->db, cd_q_connections_insert(fx->db,
                                         "{\"name\":\"openai\",\"connector_type\":\"openai\","
                                         "\"config\":{\"base_url\":\"https://api\","
                                         "\"api_key\":\"********\"},"
                                         "\"secret_fields\":[\"api_key\"]}",
                                         secrets, CD_Q_NULL, &out));
    free(out);
    //  Nothing in the row holds the clear text, in any column.
    int64_t hits = -1;
    s_ok(fx->db, cd_db_query_int64(fx->db,
                                   "SELECT count(*) FROM connections c WHERE"
                                   " position(convert_to('sk-clear-text', 'UTF8') in"
                                   " coalesce(c.secrets, '')) > 0 OR c::text LIKE"
                                   " '%sk-clear-text%'",
                                   0, NULL, &hits));
    assert_int_equal(hits, 0);
    //  The vault opens what the query layer gives back.
    s_ok(fx->db, cd_q_connections_sealed(fx->db, CD_Q_NULL, "openai", &out));
    json_t *row = s_parse(out, true);
    const char *hex = s_str(json_object_get(row, "secrets"), "api_key");
    assert_non_null(hex);
    assert_string_equal(hex, sealed);
    char *plain = NULL;
    assert_int_equal(cd_vault_open(vault, hex, &plain, NULL), 0);
    assert_string_equal(plain, secret);
    cd_vault_secret_free(&plain);
    json_decref(row);
    free(sealed);
    cd_vault_destroy(&vault);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vault_table_record_round_trip_unlocks, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_vault_table_refuses_malformed_records_and_keys,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_vault_table_connection_secrets_are_sealed_at_rest,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
