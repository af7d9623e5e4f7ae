/*  cd_password: the policy's edges (11 vs 12 characters in ASCII and in
    multibyte UTF-8, the byte limit, every kind of invalid UTF-8, NUL);
    argon2id hashes with the documented parameters that verify, differ by
    salt and refuse wrong passwords; needs_rehash for weaker, argon2i and
    malformed hashes; an unknown user (NULL hash) is refused after the
    same work. Prints the time of one hash on this machine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_password.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double
s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

//  count copies of the UTF-8 character ch, NUL-terminated, in buf.
static const char *
s_repeat(char *buf, size_t size, const char *ch, int count)
{
    buf[0] = '\0';
    for (int i = 0; i < count; i++) {
        strncat(buf, ch, size - strlen(buf) - 1);
    }
    return buf;
}

static int
s_policy(const char *text)
{
    return cd_password_check_policy(text, strlen(text), NULL);
}

static void
test_password_policy_counts_code_points_not_bytes(void **state)
{
    char buf[256];
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "a", 11)), CD_EINVAL);
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "a", 12)), 0);
    //  é is 2 bytes: 11 of them are 22 bytes but 11 characters.
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "\xc3\xa9", 11)), CD_EINVAL);
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "\xc3\xa9", 12)), 0);
    //  € (3 bytes) and an emoji (4 bytes).
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "\xe2\x82\xac", 11)), CD_EINVAL);
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "\xe2\x82\xac", 12)), 0);
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "\xf0\x9f\x94\x91", 11)), CD_EINVAL);
    assert_int_equal(s_policy(s_repeat(buf, sizeof buf, "\xf0\x9f\x94\x91", 12)), 0);
    //  Mixed: 10 ASCII + 2 multibyte = 12.
    assert_int_equal(s_policy("abcdefghij\xc3\xa9\xe2\x82\xac"), 0);
    assert_int_equal(s_policy("abcdefghi\xc3\xa9\xe2\x82\xac"), CD_EINVAL);
    //  Blanks count; nothing is trimmed.
    assert_int_equal(s_policy("            "), 0);
    assert_int_equal(s_policy(""), CD_EINVAL);
    const char *why = NULL;
    assert_int_equal(cd_password_check_policy("short", 5, &why), CD_EINVAL);
    assert_string_equal(why, "shorter than 12 characters");
    assert_int_equal(cd_password_check_policy(NULL, 0, &why), CD_EINVAL);
}

static void
test_password_policy_limits_bytes(void **state)
{
    static char big[CD_PASSWORD_MAX_BYTES + 2];
    memset(big, 'x', sizeof big);
    assert_int_equal(cd_password_check_policy(big, CD_PASSWORD_MAX_BYTES, NULL), 0);
    const char *why = NULL;
    assert_int_equal(cd_password_check_policy(big, CD_PASSWORD_MAX_BYTES + 1, &why), CD_ETOOBIG);
    assert_non_null(why);
    //  1024 bytes that end inside a 2-byte character: invalid, not cut.
    for (int i = 0; i < CD_PASSWORD_MAX_BYTES; i += 2) {
        big[i] = '\xc3';
        big[i + 1] = '\xa9';
    }
    assert_int_equal(cd_password_check_policy(big, CD_PASSWORD_MAX_BYTES, NULL), 0);
    assert_int_equal(cd_password_check_policy(big, CD_PASSWORD_MAX_BYTES - 1, NULL), CD_EINVAL);
}

static void
test_password_policy_refuses_invalid_utf8(void **state)
{
    static const struct {
        const char *text;
        size_t len;
    } bad[] = {
        {"abcdefghijkl\x80", 13},                 //  a continuation byte alone
        {"abcdefghijkl\xc3", 13},                 //  a lead byte at the end
        {"abcdefghijkl\xe2\x82", 14},             //  a 3-byte character cut short
        {"abcdefghijkl\xc3\x41", 14},             //  a lead byte without its continuation
        {"abcdefghijkl\xc0\xaf", 14},             //  overlong '/'
        {"abcdefghijkl\xe0\x80\xaf", 15},         //  overlong, 3 bytes
        {"abcdefghijkl\xed\xa0\x80", 15},         //  a UTF-16 surrogate
        {"abcdefghijkl\xf4\x90\x80\x80", 16},     //  above U+10FFFF
        {"abcdefghijkl\xf8\x88\x80\x80\x80", 17}, //  5-byte form
        {"abcdefghijkl\xff", 13},
        {"abcdef\0ghijkl", 13}, //  a NUL inside
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        assert_int_equal(cd_password_check_policy(bad[i].text, bad[i].len, &why), CD_EINVAL);
        assert_string_equal(why, "not valid UTF-8 text");
    }
    size_t count = 0;
    assert_true(cd_password_utf8_chars("\xf4\x8f\xbf\xbf", 4, &count)); //  U+10FFFF itself
    assert_int_equal(count, 1);
    assert_true(cd_password_utf8_chars("", 0, &count));
    assert_int_equal(count, 0);
}

static void
test_password_hash_verifies_and_refuses_wrong_passwords(void **state)
{
    const char *password = "correct horse battery staple";
    char hash[CD_PASSWORD_HASH_MAX], again[CD_PASSWORD_HASH_MAX];
    double t0 = s_now();
    assert_int_equal(cd_password_hash(password, strlen(password), hash), 0);
    double t1 = s_now();
    printf("argon2id t=%u m=%u KiB: one hash in %.0f ms\n", CD_PASSWORD_OPSLIMIT,
           CD_PASSWORD_MEMLIMIT / 1024, (t1 - t0) * 1000);
    assert_int_equal(strncmp(hash, "$argon2id$v=19$m=65536,t=2,p=1$", 31), 0);
    assert_true(strlen(hash) < CD_PASSWORD_HASH_MAX);
    assert_true(cd_password_verify(hash, password, strlen(password)));
    assert_false(cd_password_verify(hash, "correct horse battery stapl", 27));
    assert_false(cd_password_verify(hash, "Correct horse battery staple", 28));
    assert_false(cd_password_verify(hash, "", 0));
    //  A new salt each time.
    assert_int_equal(cd_password_hash(password, strlen(password), again), 0);
    assert_string_not_equal(hash, again);
    assert_true(cd_password_verify(again, password, strlen(password)));
    assert_false(cd_password_needs_rehash(hash));
    //  Malformed hashes never verify.
    assert_false(cd_password_verify("$argon2id$garbage", password, strlen(password)));
    assert_false(cd_password_verify("", password, strlen(password)));
    //  Over-long input is refused before any work.
    static char big[CD_PASSWORD_MAX_BYTES + 1];
    memset(big, 'x', sizeof big);
    assert_int_equal(cd_password_hash(big, sizeof big, again), CD_ETOOBIG);
    assert_false(cd_password_verify(hash, big, sizeof big));
    assert_false(cd_password_verify(hash, NULL, 0));
}

static void
test_password_needs_rehash_for_other_parameters(void **state)
{
    const char *password = "correct horse battery staple";
    char weak[crypto_pwhash_STRBYTES];
    assert_int_equal(
        crypto_pwhash_str_alg(weak, password, strlen(password), crypto_pwhash_argon2id_OPSLIMIT_MIN,
                              crypto_pwhash_argon2id_MEMLIMIT_MIN, crypto_pwhash_ALG_ARGON2ID13),
        0);
    //  Still accepted (it is the user's password), but to be re-hashed.
    assert_true(cd_password_verify(weak, password, strlen(password)));
    assert_true(cd_password_needs_rehash(weak));
    char argon2i[crypto_pwhash_STRBYTES];
    assert_int_equal(crypto_pwhash_argon2i_str(argon2i, password, strlen(password),
                                               CD_PASSWORD_OPSLIMIT + 1, 8 * 1024 * 1024),
                     0);
    assert_true(cd_password_needs_rehash(argon2i));
    assert_true(cd_password_needs_rehash("not a hash"));
    assert_true(cd_password_needs_rehash(NULL));
}

static void
test_password_unknown_user_costs_a_verification_and_fails(void **state)
{
    const char *password = "correct horse battery staple";
    char hash[CD_PASSWORD_HASH_MAX];
    assert_int_equal(cd_password_hash(password, strlen(password), hash), 0);
    double t0 = s_now();
    assert_false(cd_password_verify(NULL, password, strlen(password)));
    double t1 = s_now();
    assert_false(cd_password_verify(hash, "wrong password!", 15));
    double t2 = s_now();
    double unknown = t1 - t0, wrong = t2 - t1;
    printf("verify: unknown user %.0f ms, wrong password %.0f ms\n", unknown * 1000, wrong * 1000);
    //  Same parameters, same work: well within a factor of 3 even on a
    //  busy machine (a skipped verification would take microseconds).
    assert_true(unknown > wrong / 3 && unknown < wrong * 3);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_policy_counts_code_points_not_bytes),
        cmocka_unit_test(test_password_policy_limits_bytes),
        cmocka_unit_test(test_password_policy_refuses_invalid_utf8),
        cmocka_unit_test(test_password_hash_verifies_and_refuses_wrong_passwords),
        cmocka_unit_test(test_password_needs_rehash_for_other_parameters),
        cmocka_unit_test(test_password_unknown_user_costs_a_verification_and_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
