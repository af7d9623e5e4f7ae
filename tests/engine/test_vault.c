/*  cd_vault: init, lock (destroy) and unlock round trip; a wrong master
    password and a tampered record are refused (CD_EPERM); sealed values
    never contain the clear text and differ each time; opening refuses
    malformed, altered and foreign values; size limits; re-wrapping under a
    new master password keeps old values readable; the record as JSON.
    Most tests derive with cheap KDF parameters; one uses the real
    (MODERATE) ones and prints how long a derivation takes here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_vault.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const cd_vault_params_t s_fast = {1, 64 * 1024};
static const char s_master[] = "correct horse battery staple";

static double
s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static cd_vault_t *
s_create(cd_vault_record_t *record)
{
    cd_vault_t *vault = NULL;
    assert_int_equal(cd_vault_create(s_master, strlen(s_master), &s_fast, record, &vault), 0);
    assert_non_null(vault);
    return vault;
}

static void
test_vault_locks_and_unlocks_with_its_master_password(void **state)
{
    cd_vault_record_t record;
    cd_vault_t *vault = s_create(&record);
    char *sealed = NULL;
    const char *secret = "sk-live-0123456789abcdef";
    assert_int_equal(cd_vault_seal(vault, secret, strlen(secret), &sealed), 0);
    //  Lock: the object and its key are gone.
    cd_vault_destroy(&vault);
    assert_null(vault);
    cd_vault_destroy(&vault);
    cd_vault_destroy(NULL);
    //  Unlock from the stored record alone.
    assert_int_equal(cd_vault_unlock(&record, s_master, strlen(s_master), &vault), 0);
    char *plain = NULL;
    size_t len = 0;
    assert_int_equal(cd_vault_open(vault, sealed, &plain, &len), 0);
    assert_int_equal(len, strlen(secret));
    assert_string_equal(plain, secret);
    cd_vault_secret_free(&plain);
    assert_null(plain);
    cd_vault_secret_free(&plain);
    free(sealed);
    cd_vault_destroy(&vault);
}

static void
test_vault_wrong_password_or_tampered_record_is_refused(void **state)
{
    cd_vault_record_t record;
    cd_vault_t *vault = s_create(&record);
    cd_vault_destroy(&vault);
    assert_int_equal(cd_vault_unlock(&record, "correct horse battery stapl", 27, &vault), CD_EPERM);
    assert_null(vault);
    assert_int_equal(cd_vault_unlock(&record, "Correct horse battery staple", 28, &vault),
                     CD_EPERM);
    //  Any change to what is stored makes the right password fail too:
    //  the salt, the wrapped key, or a weaker cost (no downgrade).
    cd_vault_record_t bad = record;
    bad.salt[0] ^= 1;
    assert_int_equal(cd_vault_unlock(&bad, s_master, strlen(s_master), &vault), CD_EPERM);
    bad = record;
    bad.wrapped[CD_VAULT_WRAPPED_BYTES - 1] ^= 1;
    assert_int_equal(cd_vault_unlock(&bad, s_master, strlen(s_master), &vault), CD_EPERM);
    bad = record;
    bad.wrapped[0] ^= 1; //  the nonce
    assert_int_equal(cd_vault_unlock(&bad, s_master, strlen(s_master), &vault), CD_EPERM);
    bad = record;
    bad.params.memlimit = 32 * 1024;
    assert_int_equal(cd_vault_unlock(&bad, s_master, strlen(s_master), &vault), CD_EPERM);
    bad = record;
    bad.params.opslimit = 0;
    assert_int_equal(cd_vault_unlock(&bad, s_master, strlen(s_master), &vault), CD_EINVAL);
    bad.params.opslimit = 1000;
    assert_int_equal(cd_vault_unlock(&bad, s_master, strlen(s_master), &vault), CD_EINVAL);
    assert_null(vault);
    assert_int_equal(cd_vault_unlock(&record, s_master, strlen(s_master), &vault), 0);
    cd_vault_destroy(&vault);
}

static void
test_vault_sealed_values_never_contain_the_clear_text(void **state)
{
    cd_vault_record_t record;
    cd_vault_t *vault = s_create(&record);
    const char *secret = "{\"api_key\":\"sk-very-secret-value-XYZ\"}";
    size_t len = strlen(secret);
    char *a = NULL, *b = NULL;
    assert_int_equal(cd_vault_seal(vault, secret, len, &a), 0);
    assert_int_equal(cd_vault_seal(vault, secret, len, &b), 0);
    //  A fresh nonce each time.
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), 2 * (len + CD_VAULT_OVERHEAD));
    //  Neither the text nor its hex appears, nor any 8-byte piece of it
    //  in the raw bytes.
    char secret_hex[256];
    sodium_bin2hex(secret_hex, sizeof secret_hex, (const unsigned char *)secret, len);
    assert_null(strstr(a, "sk-very-secret"));
    assert_null(strstr(a, secret_hex));
    uint8_t raw[256];
    size_t raw_len = 0;
    assert_int_equal(sodium_hex2bin(raw, sizeof raw, a, strlen(a), NULL, &raw_len, NULL), 0);
    for (size_t i = 0; i + 8 <= len; i++) {
        assert_null(memmem(raw, raw_len, secret + i, 8));
    }
    //  The record holds neither the password nor the key's use.
    char *json = NULL;
    cd_vault_record_to_json(&record, &json);
    assert_null(strstr(json, s_master));
    free(json);
    free(a);
    free(b);
    cd_vault_destroy(&vault);
}

static void
test_vault_open_refuses_malformed_altered_and_foreign_values(void **state)
{
    cd_vault_record_t record, other_record;
    cd_vault_t *vault = s_create(&record);
    cd_vault_t *other = s_create(&other_record);
    char *sealed = NULL;
    assert_int_equal(cd_vault_seal(vault, "token", 5, &sealed), 0);
    char *plain = NULL;
    //  Another vault (another DEK) cannot open it, even with the same
    //  master password.
    assert_int_equal(cd_vault_open(other, sealed, &plain, NULL), CD_EPERM);
    assert_null(plain);
    //  One hex digit changed, anywhere.
    size_t n = strlen(sealed);
    for (size_t i = 0; i < n; i += 7) {
        char *copy = strdup(sealed);
        copy[i] = copy[i] == '0' ? '1' : '0';
        assert_int_equal(cd_vault_open(vault, copy, &plain, NULL), CD_EPERM);
        free(copy);
    }
    //  Truncated at every length, odd, not hex, empty, NULL.
    for (size_t cut = 0; cut < n; cut++) {
        char *copy = strndup(sealed, cut);
        int rc = cd_vault_open(vault, copy, &plain, NULL);
        assert_true(rc == CD_EPROTO || rc == CD_EPERM);
        free(copy);
    }
    char *bad = strdup(sealed);
    bad[3] = 'g';
    assert_int_equal(cd_vault_open(vault, bad, &plain, NULL), CD_EPROTO);
    free(bad);
    assert_int_equal(cd_vault_open(vault, "", &plain, NULL), CD_EPROTO);
    assert_int_equal(cd_vault_open(vault, NULL, &plain, NULL), CD_EPROTO);
    //  An empty value seals and opens.
    char *empty = NULL;
    assert_int_equal(cd_vault_seal(vault, "", 0, &empty), 0);
    size_t len = 99;
    assert_int_equal(cd_vault_open(vault, empty, &plain, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(plain, "");
    cd_vault_secret_free(&plain);
    free(empty);
    free(sealed);
    cd_vault_destroy(&vault);
    cd_vault_destroy(&other);
}

static void
test_vault_size_and_input_limits(void **state)
{
    cd_vault_record_t record;
    cd_vault_t *vault = s_create(&record);
    uint8_t *big = calloc(1, CD_VAULT_PLAIN_MAX + 1);
    char *sealed = NULL;
    assert_int_equal(cd_vault_seal(vault, big, CD_VAULT_PLAIN_MAX + 1, &sealed), CD_ETOOBIG);
    assert_null(sealed);
    assert_int_equal(cd_vault_seal(vault, big, CD_VAULT_PLAIN_MAX, &sealed), 0);
    //  Exactly what connections.secrets may hold.
    assert_int_equal(strlen(sealed), 2 * CD_VAULT_SEALED_MAX);
    char *plain = NULL;
    size_t len = 0;
    assert_int_equal(cd_vault_open(vault, sealed, &plain, &len), 0);
    assert_int_equal(len, CD_VAULT_PLAIN_MAX);
    cd_vault_secret_free(&plain);
    free(sealed);
    free(big);
    cd_vault_destroy(&vault);
    //  Master passwords and parameters.
    cd_vault_t *none = NULL;
    assert_int_equal(cd_vault_create("", 0, &s_fast, &record, &none), CD_EINVAL);
    assert_int_equal(cd_vault_create(NULL, 5, &s_fast, &record, &none), CD_EINVAL);
    static char huge[CD_VAULT_PASSWORD_MAX + 1];
    memset(huge, 'x', sizeof huge);
    assert_int_equal(cd_vault_create(huge, sizeof huge, &s_fast, &record, &none), CD_ETOOBIG);
    cd_vault_params_t weak = {0, 64 * 1024};
    assert_int_equal(cd_vault_create(s_master, strlen(s_master), &weak, &record, &none), CD_EINVAL);
    weak = (cd_vault_params_t){1, 1024};
    assert_int_equal(cd_vault_create(s_master, strlen(s_master), &weak, &record, &none), CD_EINVAL);
    assert_null(none);
}

static void
test_vault_rewrap_changes_the_master_password_and_keeps_values(void **state)
{
    cd_vault_record_t record, rewrapped;
    cd_vault_t *vault = s_create(&record);
    char *sealed = NULL;
    assert_int_equal(cd_vault_seal(vault, "kept", 4, &sealed), 0);
    const char *fresh = "another long master password";
    assert_int_equal(cd_vault_rewrap(vault, fresh, strlen(fresh), &s_fast, &rewrapped), 0);
    assert_memory_not_equal(record.salt, rewrapped.salt, sizeof record.salt);
    cd_vault_destroy(&vault);
    assert_int_equal(cd_vault_unlock(&rewrapped, s_master, strlen(s_master), &vault), CD_EPERM);
    assert_int_equal(cd_vault_unlock(&rewrapped, fresh, strlen(fresh), &vault), 0);
    char *plain = NULL;
    assert_int_equal(cd_vault_open(vault, sealed, &plain, NULL), 0);
    assert_string_equal(plain, "kept");
    cd_vault_secret_free(&plain);
    assert_int_equal(cd_vault_rewrap(vault, "", 0, &s_fast, &rewrapped), CD_EINVAL);
    cd_vault_destroy(&vault);
    free(sealed);
}

static void
test_vault_record_json_round_trip_and_refusals(void **state)
{
    cd_vault_record_t record;
    cd_vault_t *vault = s_create(&record);
    cd_vault_destroy(&vault);
    char *json = NULL;
    cd_vault_record_to_json(&record, &json);
    assert_non_null(strstr(json, "\"kdf\":\"argon2id13\""));
    assert_non_null(strstr(json, "\"opslimit\":1,\"memlimit\":65536"));
    cd_vault_record_t back;
    assert_int_equal(cd_vault_record_from_json(json, &back, NULL), 0);
    assert_memory_equal(&back, &record, sizeof record);
    free(json);
    assert_int_equal(cd_vault_unlock(&back, s_master, strlen(s_master), &vault), 0);
    cd_vault_destroy(&vault);
    //  bigint columns may arrive as strings; extra members are ignored.
    char salt[33], wrapped[145];
    sodium_bin2hex(salt, sizeof salt, record.salt, sizeof record.salt);
    sodium_bin2hex(wrapped, sizeof wrapped, record.wrapped, sizeof record.wrapped);
    char text[512];
    snprintf(text, sizeof text,
             "{\"id\":1,\"kdf\":\"argon2id13\",\"opslimit\":\"1\",\"memlimit\":\"65536\","
             "\"salt\":\"%s\",\"wrapped_dek\":\"%s\"}",
             salt, wrapped);
    assert_int_equal(cd_vault_record_from_json(text, &back, NULL), 0);
    assert_memory_equal(&back, &record, sizeof record);
    static const char *const bad[] = {
        "{\"kdf\":\"scrypt\",\"opslimit\":1,\"memlimit\":65536,\"salt\":\"%s\",\"wrapped_dek\":\"%"
        "s\"}",
        "{\"kdf\":\"argon2id13\",\"opslimit\":0,\"memlimit\":65536,\"salt\":\"%s\",\"wrapped_dek\":"
        "\"%s\"}",
        "{\"kdf\":\"argon2id13\",\"opslimit\":-1,\"memlimit\":65536,\"salt\":\"%s\","
        "\"wrapped_dek\":\"%s\"}",
        "{\"kdf\":\"argon2id13\",\"opslimit\":1,\"memlimit\":99999999999999,\"salt\":\"%s\","
        "\"wrapped_dek\":\"%s\"}",
        "{\"kdf\":\"argon2id13\",\"opslimit\":1,\"memlimit\":\"6x\",\"salt\":\"%s\","
        "\"wrapped_dek\":\"%s\"}",
        "{\"kdf\":\"argon2id13\",\"opslimit\":1,\"memlimit\":65536,\"salt\":\"%s00\","
        "\"wrapped_dek\":\"%s\"}",
        "{\"kdf\":\"argon2id13\",\"opslimit\":1,\"memlimit\":65536,\"salt\":\"%s\","
        "\"wrapped_dek\":\"%.142s\"}",
        "{\"kdf\":\"argon2id13\",\"opslimit\":1,\"memlimit\":65536,\"salt\":\"%s\"}%s",
        "[\"%s\",\"%s\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, bad[i], salt, wrapped);
        const char *why = NULL;
        if (cd_vault_record_from_json(text, &back, &why) != CD_EPROTO) {
            fail_msg("accepted %s", text);
        }
        assert_non_null(why);
    }
    assert_int_equal(cd_vault_record_from_json("not json", &back, NULL), CD_EPROTO);
    assert_int_equal(cd_vault_record_from_json(NULL, &back, NULL), CD_EPROTO);
}

//  The real parameters: MODERATE argon2id, once to init and once to
//  unlock (and once more for a wrong password, which costs the same).
static void
test_vault_moderate_derivation_time(void **state)
{
    cd_vault_record_t record;
    cd_vault_t *vault = NULL;
    double t0 = s_now();
    assert_int_equal(cd_vault_create(s_master, strlen(s_master), NULL, &record, &vault), 0);
    double t1 = s_now();
    assert_int_equal(record.params.opslimit, CD_VAULT_OPSLIMIT);
    assert_int_equal(record.params.memlimit, CD_VAULT_MEMLIMIT);
    cd_vault_destroy(&vault);
    double t2 = s_now();
    assert_int_equal(cd_vault_unlock(&record, s_master, strlen(s_master), &vault), 0);
    double t3 = s_now();
    cd_vault_destroy(&vault);
    assert_int_equal(cd_vault_unlock(&record, "wrong master password", 21, &vault), CD_EPERM);
    double t4 = s_now();
    printf("vault argon2id t=%llu m=%llu MiB: init %.0f ms, unlock %.0f ms, wrong password "
           "%.0f ms\n",
           CD_VAULT_OPSLIMIT, CD_VAULT_MEMLIMIT >> 20, (t1 - t0) * 1000, (t3 - t2) * 1000,
           (t4 - t3) * 1000);
    cd_vault_destroy(&vault);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vault_locks_and_unlocks_with_its_master_password),
        cmocka_unit_test(test_vault_wrong_password_or_tampered_record_is_refused),
        cmocka_unit_test(test_vault_sealed_values_never_contain_the_clear_text),
        cmocka_unit_test(test_vault_open_refuses_malformed_altered_and_foreign_values),
        cmocka_unit_test(test_vault_size_and_input_limits),
        cmocka_unit_test(test_vault_rewrap_changes_the_master_password_and_keeps_values),
        cmocka_unit_test(test_vault_record_json_round_trip_and_refusals),
        cmocka_unit_test(test_vault_moderate_derivation_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
