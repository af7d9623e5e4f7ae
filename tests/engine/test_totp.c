/*  cd_totp: HOTP against RFC 4226 appendix D, TOTP against the SHA-1 rows
    of RFC 6238 appendix B (8 digits as printed there, and the 6-digit
    codes cadre uses, which the RFC's reference code derives from the same
    31-bit number modulo 10^6, i.e. the last six digits), the +-1 step
    window, replay refusal through the returned step, malformed input,
    secrets and the otpauth URI. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_base32.h"
#include "cd_error.h"
#include "cd_totp.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The RFC's SHA-1 seed, ASCII "12345678901234567890", in base32.
static const char s_rfc_key[] = "12345678901234567890";
static char s_rfc_secret[40];

static int
s_setup(void **state)
{
    assert_int_equal(
        cd_base32_encode((const uint8_t *)s_rfc_key, 20, false, s_rfc_secret, sizeof s_rfc_secret),
        0);
    return 0;
}

static void
test_totp_hotp_matches_rfc4226_appendix_d(void **state)
{
    static const uint32_t expected[10] = {755224, 287082, 359152, 969429, 338314,
                                          254676, 287922, 162583, 399871, 520489};
    for (uint64_t counter = 0; counter < 10; counter++) {
        uint32_t code = 0;
        assert_int_equal(cd_totp_hotp((const uint8_t *)s_rfc_key, 20, counter, 6, &code), 0);
        assert_int_equal(code, expected[counter]);
    }
}

static const struct {
    int64_t time;
    uint32_t code8; //  as printed in RFC 6238 appendix B (SHA-1 rows)
} s_rfc6238[] = {
    {59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
    {1234567890, 89005924}, {2000000000, 69279037}, {20000000000LL, 65353130},
};

static void
test_totp_matches_rfc6238_appendix_b_sha1_rows(void **state)
{
    for (size_t i = 0; i < sizeof s_rfc6238 / sizeof s_rfc6238[0]; i++) {
        uint64_t step = (uint64_t)cd_totp_step(s_rfc6238[i].time);
        uint32_t code = 0;
        assert_int_equal(cd_totp_hotp((const uint8_t *)s_rfc_key, 20, step, 8, &code), 0);
        assert_int_equal(code, s_rfc6238[i].code8);
        //  Six digits: the same number modulo 10^6.
        char text[CD_TOTP_DIGITS + 1];
        assert_int_equal(cd_totp_code(s_rfc_secret, s_rfc6238[i].time, text), 0);
        char expected[16];
        snprintf(expected, sizeof expected, "%06u", s_rfc6238[i].code8 % 1000000);
        assert_string_equal(text, expected);
        int64_t matched = -1;
        assert_int_equal(cd_totp_verify(s_rfc_secret, expected, s_rfc6238[i].time, -1, &matched),
                         0);
        assert_int_equal(matched, (int64_t)step);
    }
    //  Leading zeros are kept: 1111111109 gives 081804.
    char text[CD_TOTP_DIGITS + 1];
    assert_int_equal(cd_totp_code(s_rfc_secret, 1111111109, text), 0);
    assert_string_equal(text, "081804");
}

static void
test_totp_accepts_one_step_either_side_and_no_further(void **state)
{
    const char *secret = s_rfc_secret;
    int64_t now = 1700000015; //  middle of a step
    int64_t step = cd_totp_step(now);
    for (int delta = -3; delta <= 3; delta++) {
        char code[CD_TOTP_DIGITS + 1];
        assert_int_equal(cd_totp_code(secret, now + delta * CD_TOTP_PERIOD_S, code), 0);
        int64_t matched = -1;
        int rc = cd_totp_verify(secret, code, now, -1, &matched);
        if (delta >= -1 && delta <= 1) {
            assert_int_equal(rc, 0);
            assert_int_equal(matched, step + delta);
        } else {
            assert_int_equal(rc, CD_EPERM);
        }
    }
}

static void
test_totp_refuses_a_replay_through_the_last_step(void **state)
{
    char secret[CD_TOTP_SECRET_LEN + 1];
    cd_totp_secret_new(secret);
    int64_t now = 1700000000;
    char code[CD_TOTP_DIGITS + 1];
    assert_int_equal(cd_totp_code(secret, now, code), 0);
    int64_t used = -1;
    assert_int_equal(cd_totp_verify(secret, code, now, -1, &used), 0);
    //  The same code again, at once and later in its window: refused.
    int64_t again = -1;
    assert_int_equal(cd_totp_verify(secret, code, now, used, &again), CD_EEXIST);
    assert_int_equal(cd_totp_verify(secret, code, now + CD_TOTP_PERIOD_S, used, &again), CD_EEXIST);
    assert_int_equal(again, -1);
    //  An older code of the window is refused too once a later one was used.
    char older[CD_TOTP_DIGITS + 1];
    assert_int_equal(cd_totp_code(secret, now - CD_TOTP_PERIOD_S, older), 0);
    if (strcmp(older, code) != 0) {
        assert_int_equal(cd_totp_verify(secret, older, now, used, &again), CD_EEXIST);
    }
    //  The next step's code is fresh.
    char next[CD_TOTP_DIGITS + 1];
    assert_int_equal(cd_totp_code(secret, now + CD_TOTP_PERIOD_S, next), 0);
    assert_int_equal(cd_totp_verify(secret, next, now + CD_TOTP_PERIOD_S, used, &again), 0);
    assert_int_equal(again, used + 1);
}

static void
test_totp_refuses_a_wrong_code_and_malformed_input(void **state)
{
    const char *secret = s_rfc_secret;
    int64_t now = 1700000000;
    char code[CD_TOTP_DIGITS + 1];
    assert_int_equal(cd_totp_code(secret, now, code), 0);
    char wrong[CD_TOTP_DIGITS + 1];
    memcpy(wrong, code, sizeof wrong);
    wrong[5] = (char)('0' + (wrong[5] - '0' + 1) % 10);
    int64_t step = -1;
    assert_int_equal(cd_totp_verify(secret, wrong, now, -1, &step), CD_EPERM);
    static const char *const bad_codes[] = {"", "12345", "1234567", "12345a", " 12345", "-12345"};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        assert_int_equal(cd_totp_verify(secret, bad_codes[i], now, -1, &step), CD_EINVAL);
    }
    assert_int_equal(cd_totp_verify(secret, NULL, now, -1, &step), CD_EINVAL);
    static const char *const bad_secrets[] = {"", "not base32!", "my", "MZ"};
    for (size_t i = 0; i < sizeof bad_secrets / sizeof bad_secrets[0]; i++) {
        assert_int_equal(cd_totp_verify(bad_secrets[i], code, now, -1, &step), CD_EINVAL);
        assert_int_equal(cd_totp_code(bad_secrets[i], now, code), CD_EINVAL);
    }
    assert_int_equal(cd_totp_verify(NULL, code, now, -1, &step), CD_EINVAL);
    //  A secret longer than users.mfa_secret allows.
    char huge[200];
    memset(huge, 'A', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(cd_totp_verify(huge, code, now, -1, &step), CD_EINVAL);
    uint32_t value = 0;
    assert_int_equal(cd_totp_hotp((const uint8_t *)"k", 1, 0, 5, &value), CD_EINVAL);
    assert_int_equal(cd_totp_hotp((const uint8_t *)"k", 1, 0, 9, &value), CD_EINVAL);
}

static void
test_totp_secrets_are_random_base32_of_20_bytes(void **state)
{
    char a[CD_TOTP_SECRET_LEN + 1], b[CD_TOTP_SECRET_LEN + 1];
    cd_totp_secret_new(a);
    cd_totp_secret_new(b);
    assert_int_equal(strlen(a), CD_TOTP_SECRET_LEN);
    assert_string_not_equal(a, b);
    uint8_t key[32];
    size_t len = 0;
    assert_int_equal(cd_base32_decode(a, strlen(a), key, sizeof key, &len, NULL), 0);
    assert_int_equal(len, CD_TOTP_SECRET_BYTES);
    //  The schema's users.mfa_secret check: ^[A-Z2-7]{16,128}$.
    for (size_t i = 0; i < strlen(a); i++) {
        assert_true((a[i] >= 'A' && a[i] <= 'Z') || (a[i] >= '2' && a[i] <= '7'));
    }
}

static void
test_totp_uri_names_issuer_and_escapes_the_account(void **state)
{
    char *uri = NULL;
    assert_int_equal(cd_totp_uri("JBSWY3DPEHPK3PXP", "alice@example.com", &uri), 0);
    assert_string_equal(uri, "otpauth://totp/cadre:alice%40example.com?secret=JBSWY3DPEHPK3PXP"
                             "&issuer=cadre&algorithm=SHA1&digits=6&period=30");
    free(uri);
    assert_int_equal(cd_totp_uri("JBSWY3DPEHPK3PXP", "a b:c/é", &uri), 0);
    assert_non_null(strstr(uri, "cadre:a%20b%3Ac%2F%C3%A9?"));
    free(uri);
    uri = NULL;
    assert_int_equal(cd_totp_uri("not base32", "alice", &uri), CD_EINVAL);
    assert_int_equal(cd_totp_uri("JBSWY3DPEHPK3PXP", "", &uri), CD_EINVAL);
    assert_null(uri);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_totp_hotp_matches_rfc4226_appendix_d),
        cmocka_unit_test(test_totp_matches_rfc6238_appendix_b_sha1_rows),
        cmocka_unit_test(test_totp_accepts_one_step_either_side_and_no_further),
        cmocka_unit_test(test_totp_refuses_a_replay_through_the_last_step),
        cmocka_unit_test(test_totp_refuses_a_wrong_code_and_malformed_input),
        cmocka_unit_test(test_totp_secrets_are_random_base32_of_20_bytes),
        cmocka_unit_test(test_totp_uri_names_issuer_and_escapes_the_account),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
