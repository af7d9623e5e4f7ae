/*  cd_base32: the RFC 4648 section 10 vectors both ways, with and without
    padding; round trips of every length; and every way a text can fail to
    be canonical base32 (bad length, bad padding, foreign or lower-case
    characters, non-zero trailing bits, a too-small buffer). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_base32.h"
#include "cd_error.h"

#include <sodium.h>
#include <string.h>

static const struct {
    const char *plain;
    const char *padded;
    const char *bare;
} s_rfc4648[] = {
    {"", "", ""},
    {"f", "MY======", "MY"},
    {"fo", "MZXQ====", "MZXQ"},
    {"foo", "MZXW6===", "MZXW6"},
    {"foob", "MZXW6YQ=", "MZXW6YQ"},
    {"fooba", "MZXW6YTB", "MZXW6YTB"},
    {"foobar", "MZXW6YTBOI======", "MZXW6YTBOI"},
};

#define N_VECTORS (sizeof s_rfc4648 / sizeof s_rfc4648[0])

static void
test_base32_encodes_the_rfc4648_vectors(void **state)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        const char *plain = s_rfc4648[i].plain;
        char out[32];
        assert_int_equal(
            cd_base32_encode((const uint8_t *)plain, strlen(plain), true, out, sizeof out), 0);
        assert_string_equal(out, s_rfc4648[i].padded);
        assert_int_equal(cd_base32_encoded_len(strlen(plain), true), strlen(s_rfc4648[i].padded));
        assert_int_equal(
            cd_base32_encode((const uint8_t *)plain, strlen(plain), false, out, sizeof out), 0);
        assert_string_equal(out, s_rfc4648[i].bare);
        assert_int_equal(cd_base32_encoded_len(strlen(plain), false), strlen(s_rfc4648[i].bare));
    }
}

static void
test_base32_decodes_the_rfc4648_vectors_padded_or_not(void **state)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        const char *forms[2] = {s_rfc4648[i].padded, s_rfc4648[i].bare};
        for (int f = 0; f < 2; f++) {
            uint8_t out[16];
            size_t len = 99;
            assert_int_equal(
                cd_base32_decode(forms[f], strlen(forms[f]), out, sizeof out, &len, NULL), 0);
            assert_int_equal(len, strlen(s_rfc4648[i].plain));
            assert_memory_equal(out, s_rfc4648[i].plain, len);
        }
    }
}

static void
test_base32_round_trips_every_length(void **state)
{
    uint8_t in[64];
    randombytes_buf(in, sizeof in);
    for (size_t n = 0; n <= sizeof in; n++) {
        for (int pad = 0; pad < 2; pad++) {
            char text[128];
            assert_int_equal(cd_base32_encode(in, n, pad, text, sizeof text), 0);
            uint8_t out[64];
            size_t len = 0;
            assert_int_equal(cd_base32_decode(text, strlen(text), out, sizeof out, &len, NULL), 0);
            assert_int_equal(len, n);
            assert_memory_equal(out, in, n);
        }
    }
}

static void
test_base32_refuses_text_that_is_not_canonical(void **state)
{
    static const char *const bad[] = {
        "M",                //  1 character: no encoding ends so
        "MZX",              //  3
        "MZXW6Y",           //  6
        "MY=",              //  padding that does not reach 8 characters
        "MY=======",        //  too much padding
        "MZXW6YTB========", //  a whole group of padding
        "========",         //  padding alone
        "MY======MY",       //  data after padding
        "M=Y=====",         //  padding in the middle
        "my",               //  lower case
        "M1",               //  not in the alphabet (0, 1, 8, 9 are not)
        "M8",
        "MZ",      //  'Z' leaves 2 unused bits that are not zero
        "MZXR",    //  4 unused bits not zero
        "MZXW7",   //  1 unused bit not zero
        "MZXW6YR", //  3 unused bits not zero
        "MZ XQ",   //  a space
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t out[16];
        size_t len = 0;
        const char *why = NULL;
        int rc = cd_base32_decode(bad[i], strlen(bad[i]), out, sizeof out, &len, &why);
        if (rc != CD_EPROTO) {
            fail_msg("'%s' gave %s", bad[i], cd_errname(rc));
        }
        assert_non_null(why);
    }
}

static void
test_base32_refuses_a_too_small_buffer(void **state)
{
    uint8_t out[5];
    size_t len = 0;
    assert_int_equal(cd_base32_decode("MZXW6YTBOI", 10, out, sizeof out, &len, NULL), CD_ETOOBIG);
    assert_int_equal(cd_base32_decode("MZXW6YTB", 8, out, sizeof out, &len, NULL), 0);
    char text[8];
    assert_int_equal(cd_base32_encode((const uint8_t *)"fooba", 5, false, text, sizeof text),
                     CD_ETOOBIG);
}

//  Every prefix of a valid text either decodes or is refused cleanly.
static void
test_base32_every_truncation_decodes_or_is_refused(void **state)
{
    const char *text = "MZXW6YTBOI======";
    for (size_t len = 0; len <= strlen(text); len++) {
        uint8_t out[16];
        size_t got = 0;
        int rc = cd_base32_decode(text, len, out, sizeof out, &got, NULL);
        assert_true(rc == 0 || rc == CD_EPROTO);
        if (rc == 0) {
            assert_memory_equal(out, "foobar", got);
        }
    }
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base32_encodes_the_rfc4648_vectors),
        cmocka_unit_test(test_base32_decodes_the_rfc4648_vectors_padded_or_not),
        cmocka_unit_test(test_base32_round_trips_every_length),
        cmocka_unit_test(test_base32_refuses_text_that_is_not_canonical),
        cmocka_unit_test(test_base32_refuses_a_too_small_buffer),
        cmocka_unit_test(test_base32_every_truncation_decodes_or_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
