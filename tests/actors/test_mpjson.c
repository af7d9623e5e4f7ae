/*  cd_mpjson: JSON -> msgpack -> JSON round trips, every truncation of a
    value rejected, and what JSON cannot hold refused (ext, non-string
    keys, NaN, invalid UTF-8, nesting, trailing bytes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_mpjson.h"

#include <stdlib.h>
#include <string.h>

static void
test_mpjson_round_trip(void **state)
{
    static const char *const docs[] = {
        "{\"a\":1,\"b\":[true,false,null,-1,-200,70000,-70000,4294967296,-4294967296],"
        "\"c\":{\"d\":\"text é\",\"e\":1.5,\"f\":[]},\"g\":{}}",
        "\"just a string\"",
        "[9223372036854775807,-9223372036854775808,0.25]",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        json_t *in = json_loads(docs[i], JSON_DECODE_ANY, NULL);
        assert_non_null(in);
        cd_pack_t *pack = cd_pack_new();
        assert_int_equal(cd_mpjson_encode(in, pack), 0);
        json_t *out = NULL;
        const char *why = NULL;
        assert_int_equal(cd_mpjson_decode(cd_pack_bytes(pack), &out, &why), 0);
        assert_true(json_equal(in, out));
        //  Every truncation is an error, never a crash or a partial value.
        cd_bin_t whole = cd_pack_bytes(pack);
        for (uint32_t len = 0; len < whole.len; len++) {
            json_t *partial = NULL;
            uint8_t *copy = (uint8_t *)malloc(len ? len : 1);
            memcpy(copy, whole.ptr, len);
            assert_int_not_equal(cd_mpjson_decode((cd_bin_t){copy, len}, &partial, &why), 0);
            assert_null(partial);
            free(copy);
        }
        json_decref(in);
        json_decref(out);
        cd_pack_destroy(&pack);
    }
}

static void
test_mpjson_refuses_what_json_cannot_hold(void **state)
{
    static const struct {
        uint8_t bytes[16];
        uint32_t len;
        int rc;
    } cases[] = {
        {{0xd4, 0x01, 0x02}, 3, CD_EPROTO},                                     //  fixext
        {{0x81, 0x01, 0x02}, 3, CD_EPROTO},                                     //  int key
        {{0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0}, 9, CD_EPROTO},                   //  NaN
        {{0xa2, 0xff, 0xfe}, 3, CD_EPROTO},                                     //  not UTF-8
        {{0x01, 0x02}, 2, CD_EPROTO},                                           //  trailing
        {{0xc1}, 1, CD_EPROTO},                                                 //  never used
        {{0xdd, 0xff, 0xff, 0xff, 0xff}, 5, CD_ETOOBIG},                        //  huge count
        {{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, CD_EPROTO}, //  > int64
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *out = NULL;
        const char *why = NULL;
        assert_int_equal(cd_mpjson_decode((cd_bin_t){cases[i].bytes, cases[i].len}, &out, &why),
                         cases[i].rc);
        assert_null(out);
        assert_non_null(why);
    }
    //  Nesting beyond the limit, both ways.
    uint8_t deep[64];
    memset(deep, 0x91, sizeof deep);
    deep[63] = 0x01;
    json_t *out = NULL;
    assert_int_equal(cd_mpjson_decode((cd_bin_t){deep, 64}, &out, NULL), CD_EDEPTH);
    json_t *nest = json_integer(1);
    for (int i = 0; i < 40; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, nest);
        nest = outer;
    }
    cd_pack_t *pack = cd_pack_new();
    assert_int_equal(cd_mpjson_encode(nest, pack), CD_EDEPTH);
    json_decref(nest);
    cd_pack_destroy(&pack);
    assert_int_equal(cd_mpjson_decode((cd_bin_t){NULL, 0}, &out, NULL), CD_EPROTO);
    //  bin holding text reads as a string.
    uint8_t bin[] = {0xc4, 0x02, 'o', 'k'};
    assert_int_equal(cd_mpjson_decode((cd_bin_t){bin, sizeof bin}, &out, NULL), 0);
    assert_string_equal(json_string_value(out), "ok");
    json_decref(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpjson_round_trip),
        cmocka_unit_test(test_mpjson_refuses_what_json_cannot_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
