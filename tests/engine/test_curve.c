/*  cd_curve: Z85 keys (valid, decode/encode, the public key of a secret
    key), key lists, which tcp endpoints count as loopback, and the keygen
    subcommand (stdout form, files with their modes, no overwrite, usage). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_curve.h"
#include "cd_error.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_curve_keys_decode_encode_and_derive(void **state)
{
    char public_key[CD_CURVE_KEY_LEN + 1], secret_key[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_keypair(public_key, secret_key), 0);
    assert_int_equal(strlen(public_key), CD_CURVE_KEY_LEN);
    assert_true(cd_curve_key_valid(public_key));
    assert_true(cd_curve_key_valid(secret_key));
    char derived[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_public_of(secret_key, derived), 0);
    assert_string_equal(derived, public_key);
    cd_curve_key_t key;
    assert_int_equal(cd_curve_key_decode(public_key, &key), 0);
    char again[CD_CURVE_KEY_LEN + 1];
    cd_curve_key_encode(&key, again);
    assert_string_equal(again, public_key);
    //  Malformed: short, long, outside the alphabet, empty, NULL.
    char bad[64];
    snprintf(bad, sizeof bad, "%.39s", public_key);
    assert_false(cd_curve_key_valid(bad));
    snprintf(bad, sizeof bad, "%sA", public_key);
    assert_false(cd_curve_key_valid(bad));
    snprintf(bad, sizeof bad, "%s", public_key);
    bad[7] = '"';
    assert_false(cd_curve_key_valid(bad));
    bad[7] = ' ';
    assert_false(cd_curve_key_valid(bad));
    assert_false(cd_curve_key_valid(""));
    assert_false(cd_curve_key_valid(NULL));
    assert_int_equal(cd_curve_public_of("short", derived), CD_EINVAL);
}

static void
test_curve_key_lists(void **state)
{
    char a[CD_CURVE_KEY_LEN + 1], b[CD_CURVE_KEY_LEN + 1], s[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_keypair(a, s), 0);
    assert_int_equal(cd_curve_keypair(b, s), 0);
    char text[256];
    snprintf(text, sizeof text, " %s ,,%s,", a, b);
    cd_curve_key_t *keys = NULL;
    size_t n = 0, bad = 99;
    assert_int_equal(cd_curve_key_list(text, &keys, &n, &bad), 0);
    assert_int_equal(n, 2);
    cd_curve_key_t expected;
    assert_int_equal(cd_curve_key_decode(b, &expected), 0);
    assert_memory_equal(keys[1].bytes, expected.bytes, CD_CURVE_KEY_BYTES);
    free(keys);
    snprintf(text, sizeof text, "%s,%s,nope", a, b);
    assert_int_equal(cd_curve_key_list(text, &keys, &n, &bad), CD_EINVAL);
    assert_int_equal(bad, 2);
    assert_null(keys);
    assert_int_equal(cd_curve_key_list(NULL, &keys, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(cd_curve_key_list("", &keys, &n, NULL), 0);
    assert_int_equal(cd_curve_key_list(" , ", &keys, &n, NULL), 0);
    assert_int_equal(n, 0);
    free(keys);
}

static void
test_curve_loopback_endpoints(void **state)
{
    static const char *const loopback[] = {
        "tcp://127.0.0.1:7000", "tcp://127.1.2.3:1", "tcp://[::1]:7000",
        "tcp://localhost:7000", "tcp://lo:7000",     "tcp://[::ffff:127.0.0.1]:7000",
    };
    static const char *const other[] = {
        "tcp://0.0.0.0:7000",
        "tcp://*:7000",
        "tcp://10.0.0.1:7000",
        "tcp://[::]:7000",
        "tcp://eth0:7000",
        "tcp://node-2.local:7000",
        "tcp://128.0.0.1:1",
        "ipc:///tmp/x",
        "tcp://127.0.0.1",
        "127.0.0.1:7000",
        "",
        "tcp://[::ffff:10.0.0.1]:7000",
    };
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        if (!cd_curve_endpoint_is_loopback(loopback[i])) {
            fail_msg("%s should be loopback", loopback[i]);
        }
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        if (cd_curve_endpoint_is_loopback(other[i])) {
            fail_msg("%s should not be loopback", other[i]);
        }
    }
    assert_false(cd_curve_endpoint_is_loopback(NULL));
}

//  Runs the subcommand with args; returns its exit code, its stdout in out.
static int
s_keygen(char **args, size_t n, char *out, size_t size)
{
    char *text = NULL, *err_text = NULL;
    size_t len = 0, err_len = 0;
    FILE *f = open_memstream(&text, &len);
    FILE *e = open_memstream(&err_text, &err_len);
    int code = cd_curve_keygen_command(args, n, f, e);
    fclose(f);
    fclose(e);
    snprintf(out, size, "%s%s", text, err_text);
    free(text);
    free(err_text);
    return code;
}

static void
test_curve_keygen_prints_or_writes_a_usable_pair(void **state)
{
    char out[1024];
    assert_int_equal(s_keygen(NULL, 0, out, sizeof out), 0);
    char public_key[64] = "", secret_key[64] = "";
    assert_int_equal(sscanf(out, "public-key %63s\nsecret-key %63s", public_key, secret_key), 2);
    char derived[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_public_of(secret_key, derived), 0);
    assert_string_equal(derived, public_key);

    char dir[] = "/tmp/cadre-keygen-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char base[128], key_path[160], pub_path[160];
    snprintf(base, sizeof base, "%s/node1", dir);
    snprintf(key_path, sizeof key_path, "%s.key", base);
    snprintf(pub_path, sizeof pub_path, "%s.pub", base);
    char *args[] = {base};
    assert_int_equal(s_keygen(args, 1, out, sizeof out), 0);
    assert_non_null(strstr(out, "public-key "));
    struct stat st;
    assert_int_equal(stat(key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(pub_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    FILE *f = fopen(key_path, "r");
    char line[128] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    assert_true(cd_curve_key_valid(line));
    assert_int_equal(cd_curve_public_of(line, derived), 0);
    f = fopen(pub_path, "r");
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    assert_string_equal(line, derived);
    //  The public key printed is the one written.
    assert_non_null(strstr(out, derived));
    //  An existing key is never overwritten.
    assert_int_equal(s_keygen(args, 1, out, sizeof out), 1);
    assert_non_null(strstr(out, "cannot write"));
    //  Usage.
    char *two[] = {base, base};
    assert_int_equal(s_keygen(two, 2, out, sizeof out), 2);
    char *empty[] = {""};
    assert_int_equal(s_keygen(empty, 1, out, sizeof out), 2);
    char *missing[] = {"/nonexistent-dir/x"};
    assert_int_equal(s_keygen(missing, 1, out, sizeof out), 1);
    unlink(key_path);
    unlink(pub_path);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curve_keys_decode_encode_and_derive),
        cmocka_unit_test(test_curve_key_lists),
        cmocka_unit_test(test_curve_loopback_endpoints),
        cmocka_unit_test(test_curve_keygen_prints_or_writes_a_usable_pair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
