/*  cd_token: new tokens are well-formed, of their kind and unique; parsing
    refuses every malformed or foreign text (and every truncation); the
    keyed hash depends on the token, the key and nothing else, and refuses
    malformed tokens; hex and byte comparisons; the display prefix. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_token.h"

#include <sodium.h>
#include <string.h>

static void
test_token_new_tokens_are_well_formed_of_their_kind_and_unique(void **state)
{
    char api[CD_TOKEN_LEN + 1], refresh[CD_TOKEN_LEN + 1], again[CD_TOKEN_LEN + 1];
    cd_token_new(CD_TOKEN_API_KEY, api);
    cd_token_new(CD_TOKEN_REFRESH, refresh);
    cd_token_new(CD_TOKEN_API_KEY, again);
    assert_int_equal(strlen(api), CD_TOKEN_LEN);
    assert_int_equal(strncmp(api, "cdk_", 4), 0);
    assert_int_equal(strncmp(refresh, "cdr_", 4), 0);
    assert_string_not_equal(api, again);
    cd_token_kind_t kind = CD_TOKEN_REFRESH;
    assert_true(cd_token_parse(api, strlen(api), &kind));
    assert_int_equal(kind, CD_TOKEN_API_KEY);
    assert_true(cd_token_parse(refresh, strlen(refresh), &kind));
    assert_int_equal(kind, CD_TOKEN_REFRESH);
    for (size_t i = 4; i < CD_TOKEN_LEN; i++) {
        char c = api[i];
        assert_true((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_');
    }
}

static void
test_token_parse_refuses_malformed_and_foreign_text(void **state)
{
    char good[CD_TOKEN_LEN + 1];
    cd_token_new(CD_TOKEN_API_KEY, good);
    char bad[CD_TOKEN_LEN + 8];
    //  Every truncation, and one character more.
    for (size_t len = 0; len < CD_TOKEN_LEN; len++) {
        assert_false(cd_token_parse(good, len, NULL));
    }
    snprintf(bad, sizeof bad, "%sA", good);
    assert_false(cd_token_parse(bad, strlen(bad), NULL));
    //  Another prefix, or none.
    snprintf(bad, sizeof bad, "cdx_%s", good + 4);
    assert_false(cd_token_parse(bad, strlen(bad), NULL));
    snprintf(bad, sizeof bad, "CDK_%s", good + 4);
    assert_false(cd_token_parse(bad, strlen(bad), NULL));
    //  A character outside base64url, and standard base64's.
    const char foreign[] = {'+', '/', '=', ' ', '.', '\0'};
    for (size_t f = 0; f < sizeof foreign; f++) {
        memcpy(bad, good, sizeof good);
        bad[10] = foreign[f];
        assert_false(cd_token_parse(bad, CD_TOKEN_LEN, NULL));
    }
    //  The last character carries 4 bits and 2 unused ones, which must be
    //  zero: 'A' is canonical, 'B' (unused bits 01) is not.
    memcpy(bad, good, sizeof good);
    bad[CD_TOKEN_LEN - 1] = 'A';
    assert_true(cd_token_parse(bad, CD_TOKEN_LEN, NULL));
    bad[CD_TOKEN_LEN - 1] = 'B';
    assert_false(cd_token_parse(bad, CD_TOKEN_LEN, NULL));
    assert_false(cd_token_parse(NULL, CD_TOKEN_LEN, NULL));
    //  A JWT is not an opaque token.
    assert_false(cd_token_parse("eyJhbGciOiJIUzI1NiJ9.e30.AAAAAAAAAAAAAAAAAAAAAA", 47, NULL));
}

static void
test_token_hash_depends_on_token_and_key_only(void **state)
{
    uint8_t key[CD_TOKEN_KEY_BYTES], other_key[CD_TOKEN_KEY_BYTES];
    cd_token_keygen(key);
    cd_token_keygen(other_key);
    char a[CD_TOKEN_LEN + 1], b[CD_TOKEN_LEN + 1];
    cd_token_new(CD_TOKEN_API_KEY, a);
    cd_token_new(CD_TOKEN_API_KEY, b);
    uint8_t h1[CD_TOKEN_HASH_BYTES], h2[CD_TOKEN_HASH_BYTES], h3[CD_TOKEN_HASH_BYTES],
        h4[CD_TOKEN_HASH_BYTES];
    assert_int_equal(cd_token_hash(key, a, CD_TOKEN_LEN, h1), 0);
    assert_int_equal(cd_token_hash(key, a, CD_TOKEN_LEN, h2), 0);
    assert_int_equal(cd_token_hash(key, b, CD_TOKEN_LEN, h3), 0);
    assert_int_equal(cd_token_hash(other_key, a, CD_TOKEN_LEN, h4), 0);
    assert_true(cd_token_hash_equal(h1, h2));
    assert_false(cd_token_hash_equal(h1, h3));
    assert_false(cd_token_hash_equal(h1, h4));
    //  It is the keyed BLAKE2b-256 of the token text, nothing more.
    uint8_t expected[32];
    crypto_generichash(expected, 32, (const unsigned char *)a, CD_TOKEN_LEN, key, 32);
    assert_memory_equal(h1, expected, 32);
    //  Malformed tokens are not hashed.
    memset(h2, 0, sizeof h2);
    assert_int_equal(cd_token_hash(key, a, CD_TOKEN_LEN - 1, h2), CD_EINVAL);
    assert_int_equal(cd_token_hash(key, "password", 8, h2), CD_EINVAL);
    //  A refresh token with the same random part hashes differently.
    char refresh[CD_TOKEN_LEN + 1];
    memcpy(refresh, a, sizeof refresh);
    memcpy(refresh, "cdr_", 4);
    assert_int_equal(cd_token_hash(key, refresh, CD_TOKEN_LEN, h2), 0);
    assert_false(cd_token_hash_equal(h1, h2));
}

static void
test_token_hex_form_and_constant_time_comparison(void **state)
{
    uint8_t key[CD_TOKEN_KEY_BYTES];
    cd_token_keygen(key);
    char token[CD_TOKEN_LEN + 1];
    cd_token_new(CD_TOKEN_REFRESH, token);
    uint8_t hash[CD_TOKEN_HASH_BYTES];
    assert_int_equal(cd_token_hash(key, token, CD_TOKEN_LEN, hash), 0);
    char hex[CD_TOKEN_HASH_HEX_LEN + 1], again[CD_TOKEN_HASH_HEX_LEN + 1];
    cd_token_hash_hex(hash, hex);
    cd_token_hash_hex(hash, again);
    assert_int_equal(strlen(hex), 64);
    for (size_t i = 0; i < 64; i++) {
        assert_true((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    }
    assert_true(cd_token_hex_equal(hex, again));
    again[63] = again[63] == '0' ? '1' : '0';
    assert_false(cd_token_hex_equal(hex, again));
    again[63] = hex[63];
    again[0] = again[0] == '0' ? '1' : '0';
    assert_false(cd_token_hex_equal(hex, again));
    //  Different lengths, or not a hash at all, are never equal.
    assert_false(cd_token_hex_equal(hex, "abc"));
    assert_false(cd_token_hex_equal("", ""));
    assert_false(cd_token_hex_equal(hex, NULL));
    char longer[80];
    snprintf(longer, sizeof longer, "%s0", hex);
    assert_false(cd_token_hex_equal(longer, longer));
}

static void
test_token_display_prefix_tells_keys_apart(void **state)
{
    char token[CD_TOKEN_LEN + 1];
    cd_token_new(CD_TOKEN_API_KEY, token);
    char shown[CD_TOKEN_DISPLAY_LEN + 1];
    cd_token_display(token, shown);
    assert_int_equal(strlen(shown), CD_TOKEN_DISPLAY_LEN);
    assert_memory_equal(shown, token, CD_TOKEN_DISPLAY_LEN);
    //  api_keys.prefix holds 1..16 characters.
    assert_true(CD_TOKEN_DISPLAY_LEN <= 16);
    cd_token_display("not a token", shown);
    assert_string_equal(shown, "");
    cd_token_display(NULL, shown);
    assert_string_equal(shown, "");
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_new_tokens_are_well_formed_of_their_kind_and_unique),
        cmocka_unit_test(test_token_parse_refuses_malformed_and_foreign_text),
        cmocka_unit_test(test_token_hash_depends_on_token_and_key_only),
        cmocka_unit_test(test_token_hex_form_and_constant_time_comparison),
        cmocka_unit_test(test_token_display_prefix_tells_keys_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
