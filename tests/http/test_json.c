/*  cd_json: strict body parsing, schema checks, error bodies, and the
    msgpack bridge (round trips, every truncation, hostile bytes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_json.h"

#include <stdlib.h>
#include <string.h>

static const cd_json_field_t s_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 8, "a name"},
    {"count", CD_JSON_INTEGER, false, false, 0, 10, NULL},
    {"ratio", CD_JSON_NUMBER, false, true, 0, 0, NULL},
    {"on", CD_JSON_BOOLEAN, false, false, 0, 0, NULL},
    {"tags", CD_JSON_ARRAY, false, false, 0, 0, NULL},
    {"meta", CD_JSON_OBJECT, false, false, 0, 0, NULL},
    {"any", CD_JSON_ANY, false, true, 0, 0, NULL},
};
static const cd_json_schema_t s_schema = {"Thing", s_fields, 7};

static int
s_check(const char *text, cd_json_problem_t *problem)
{
    json_t *obj = NULL;
    int rc = cd_json_parse_body(text, strlen(text), &obj, problem);
    if (rc == 0) {
        rc = cd_json_validate(obj, &s_schema, problem);
        if (rc != 0) {
            //  The field may be borrowed from obj: copy what the test reads.
            static char field[64];
            snprintf(field, sizeof field, "%s", problem->field ? problem->field : "");
            problem->field = field;
        }
        json_decref(obj);
    }
    return rc;
}

static void
test_json_valid_bodies_pass(void **state)
{
    cd_json_problem_t problem;
    assert_int_equal(s_check("{\"name\":\"a\"}", &problem), 0);
    assert_int_equal(s_check("{\"name\":\"abcdefgh\",\"count\":10,\"ratio\":0.5,\"on\":true,"
                             "\"tags\":[],\"meta\":{},\"any\":[1,\"x\"]}",
                             &problem),
                     0);
    assert_int_equal(s_check("{\"name\":\"a\",\"ratio\":null,\"any\":null,\"count\":0}", &problem),
                     0);
    assert_int_equal(s_check("{\"name\":\"a\",\"ratio\":3}", &problem), 0); //  integer is a number
}

static void
test_json_malformed_bodies_are_invalid_json(void **state)
{
    const char *rows[] = {
        "",
        "{",
        "{\"name\":\"a\"",
        "{\"name\":\"a\"}}",
        "{\"name\":\"a\"} x",
        "{'name':'a'}",
        "{\"name\":\"a\",\"name\":\"b\"}",
        "{\"name\":\"\xc3\x28\"}",
        "{\"name\":\"\xed\xa0\x80\"}",
        "{\"name\":\"a\\u0000\"}",
        "{\"count\":99999999999999999999}",
        "{\"count\":-99999999999999999999}",
        "{\"ratio\":1e999}",
        "{\"name\":\"a\",}",
        "nul",
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        cd_json_problem_t problem;
        json_t *obj = NULL;
        int rc = cd_json_parse_body(rows[i], strlen(rows[i]), &obj, &problem);
        if (rc != CD_EPROTO || strcmp(problem.code, "invalid_json") != 0) {
            fail_msg("row %zu '%s' was accepted or misnamed", i, rows[i]);
        }
        assert_null(obj);
    }
}

static void
test_json_nesting_is_bounded_before_parsing(void **state)
{
    size_t n = 100000;
    char *deep = (char *)malloc(2 * n + 16);
    strcpy(deep, "{\"a\":");
    size_t at = strlen(deep);
    for (size_t i = 0; i < n; i++) {
        deep[at++] = '[';
    }
    for (size_t i = 0; i < n; i++) {
        deep[at++] = ']';
    }
    deep[at++] = '}';
    json_t *obj = NULL;
    cd_json_problem_t problem;
    assert_int_equal(cd_json_parse_body(deep, at, &obj, &problem), CD_EPROTO);
    assert_string_equal(problem.code, "invalid_json");
    assert_non_null(strstr(problem.text, "nesting"));
    free(deep);
    //  Brackets inside strings do not count; the limit itself is fine.
    char ok[256] = "{\"s\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\",\"a\":";
    for (int i = 0; i < CD_JSON_MAX_DEPTH - 1; i++) {
        strcat(ok, "[");
    }
    for (int i = 0; i < CD_JSON_MAX_DEPTH - 1; i++) {
        strcat(ok, "]");
    }
    strcat(ok, "}");
    assert_int_equal(cd_json_parse_body(ok, strlen(ok), &obj, &problem), 0);
    json_decref(obj);
    //  An escaped quote does not end a string.
    const char *escaped = "{\"s\":\"\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}";
    assert_int_equal(cd_json_parse_body(escaped, strlen(escaped), &obj, &problem), 0);
    json_decref(obj);
}

static void
test_json_schema_names_the_field(void **state)
{
    struct {
        const char *body;
        const char *field;
        const char *reason;
    } rows[] = {
        {"[]", "", "the body must be a JSON object"},
        {"5", "", "the body must be a JSON object"},
        {"{}", "name", "required"},
        {"{\"name\":\"a\",\"colour\":1}", "colour", "unknown field"},
        {"{\"name\":5}", "name", "must be a string"},
        {"{\"name\":\"\"}", "name", "length out of range"},
        {"{\"name\":\"abcdefghi\"}", "name", "length out of range"},
        {"{\"name\":null}", "name", "must not be null"},
        {"{\"name\":\"a\",\"count\":1.5}", "count", "must be an integer"},
        {"{\"name\":\"a\",\"count\":\"1\"}", "count", "must be an integer"},
        {"{\"name\":\"a\",\"count\":11}", "count", "out of range"},
        {"{\"name\":\"a\",\"count\":-1}", "count", "out of range"},
        {"{\"name\":\"a\",\"ratio\":\"x\"}", "ratio", "must be a number"},
        {"{\"name\":\"a\",\"on\":1}", "on", "must be a boolean"},
        {"{\"name\":\"a\",\"tags\":{}}", "tags", "must be an array"},
        {"{\"name\":\"a\",\"meta\":[]}", "meta", "must be an object"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        cd_json_problem_t problem;
        int rc = s_check(rows[i].body, &problem);
        if (rc == 0) {
            fail_msg("row %zu '%s' passed", i, rows[i].body);
        }
        assert_string_equal(problem.code, "validation_failed");
        assert_string_equal(problem.field ? problem.field : "", rows[i].field);
        assert_string_equal(problem.reason, rows[i].reason);
    }
}

//  A schema whose keys are data: "*" checks every key not named.
static void
test_json_other_keys_follow_the_star_field(void **state)
{
    static const cd_json_field_t fields[] = {
        {"mode", CD_JSON_STRING, false, false, 1, 4, NULL},
        {CD_JSON_OTHER_KEYS, CD_JSON_INTEGER, true, false, 0, 9, "a digit"},
    };
    static const cd_json_schema_t schema = {"Digits", fields, 2};
    struct {
        const char *body;
        int rc;
        const char *field;
        const char *reason;
    } rows[] = {
        {"{}", 0, NULL, NULL}, //  required means nothing for other keys
        {"{\"a\":1,\"b.c\":9,\"mode\":\"x\"}", 0, NULL, NULL},
        {"{\"*\":3}", 0, NULL, NULL},
        {"{\"a\":1,\"zz\":10}", CD_EINVAL, "zz", "out of range"},
        {"{\"q\":null}", CD_EINVAL, "q", "must not be null"},
        {"{\"q\":\"1\"}", CD_EINVAL, "q", "must be an integer"},
        {"{\"mode\":1}", CD_EINVAL, "mode", "must be a string"}, //  a named field keeps its rules
        {"{\"mode\":\"toolong\"}", CD_EINVAL, "mode", "length out of range"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        json_t *obj = json_loads(rows[i].body, 0, NULL);
        assert_non_null(obj);
        cd_json_problem_t problem;
        int rc = cd_json_validate(obj, &schema, &problem);
        if (rc != rows[i].rc) {
            fail_msg("row %zu '%s': rc %d", i, rows[i].body, rc);
        }
        if (rc != 0) {
            assert_string_equal(problem.field, rows[i].field);
            assert_string_equal(problem.reason, rows[i].reason);
        }
        json_decref(obj);
    }
    json_t *doc = cd_json_schema_doc(&schema);
    json_t *other = json_object_get(doc, "additionalProperties");
    assert_true(json_is_object(other));
    assert_string_equal(json_string_value(json_object_get(other, "type")), "integer");
    assert_null(json_object_get(json_object_get(doc, "properties"), CD_JSON_OTHER_KEYS));
    assert_null(json_object_get(doc, "required"));
    json_decref(doc);
    //  Without a "*" field, other keys are refused.
    doc = cd_json_schema_doc(&s_schema);
    assert_true(json_is_false(json_object_get(doc, "additionalProperties")));
    json_decref(doc);
}

static void
test_json_content_types(void **state)
{
    const char *yes[] = {"application/json", "APPLICATION/JSON", "application/json; charset=utf-8",
                         "application/json ;charset=utf-8", "application/json  "};
    const char *no[] = {"",
                        "text/plain",
                        "application/jsonx",
                        "application/json-patch+json",
                        "application/js",
                        "text/json"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        assert_true(cd_json_content_type_ok(yes[i], strlen(yes[i])));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        assert_false(cd_json_content_type_ok(no[i], strlen(no[i])));
    }
    assert_false(cd_json_content_type_ok(NULL, 0));
}

static void
test_json_error_body_has_the_contract_shape(void **state)
{
    size_t size = 0;
    char *text = cd_json_error_body("not_found", "no such thing", NULL, &size);
    assert_int_equal(size, strlen(text));
    json_t *doc = json_loads(text, 0, NULL);
    json_t *error = json_object_get(doc, "error");
    assert_string_equal(json_string_value(json_object_get(error, "code")), "not_found");
    assert_string_equal(json_string_value(json_object_get(error, "message")), "no such thing");
    assert_true(json_is_object(json_object_get(error, "details")));
    assert_int_equal(json_object_size(doc), 1);
    json_decref(doc);
    free(text);
    text = cd_json_error_body("validation_failed", "bad", json_pack("{s:s}", "field", "x"), &size);
    assert_non_null(strstr(text, "\"details\":{\"field\":\"x\"}"));
    free(text);
    json_t *schema = cd_json_schema_doc(&s_schema);
    assert_false(json_is_true(json_object_get(schema, "additionalProperties")));
    assert_int_equal(json_array_size(json_object_get(schema, "required")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(schema, "properties"), "count"), "maximum")),
        10);
    json_decref(schema);
}

static void
test_json_msgpack_round_trip(void **state)
{
    const char *text = "{\"s\":\"h\\u00e9\",\"i\":-5,\"big\":9007199254740993,\"neg\":-300000,"
                       "\"r\":2.5,\"t\":true,\"f\":false,\"n\":null,\"a\":[1,[2,{\"x\":[]}]],"
                       "\"o\":{}}";
    json_t *in = json_loads(text, 0, NULL);
    cd_pack_t *pack = cd_pack_new();
    assert_int_equal(cd_json_to_msgpack(in, pack), 0);
    json_t *out = NULL;
    const char *why = NULL;
    assert_int_equal(cd_json_from_msgpack(cd_pack_bytes(pack), &out, &why), 0);
    assert_true(json_equal(in, out));
    json_decref(out);

    //  Every truncation fails cleanly; so does every extension.
    cd_bin_t bytes = cd_pack_bytes(pack);
    for (uint32_t len = 0; len < bytes.len; len++) {
        assert_int_not_equal(cd_json_from_msgpack((cd_bin_t){bytes.ptr, len}, &out, &why), 0);
        assert_null(out);
        assert_non_null(why);
    }
    uint8_t *longer = (uint8_t *)malloc(bytes.len + 1);
    memcpy(longer, bytes.ptr, bytes.len);
    longer[bytes.len] = 0xc0;
    assert_int_equal(cd_json_from_msgpack((cd_bin_t){longer, bytes.len + 1}, &out, &why),
                     CD_EPROTO);
    assert_string_equal(why, "trailing bytes");
    free(longer);
    json_decref(in);
    cd_pack_destroy(&pack);
}

static void
test_json_msgpack_rejects_what_json_cannot_say(void **state)
{
    struct {
        uint8_t bytes[16];
        uint32_t len;
        int rc;
    } rows[] = {
        {{0x81, 0x01, 0x02}, 3, CD_EPROTO},                                     //  integer key
        {{0xd4, 0x00, 0x00}, 3, CD_EPROTO},                                     //  fixext
        {{0xc1}, 1, CD_EPROTO},                                                 //  never used
        {{0xa2, 0xc3, 0x28}, 3, CD_EPROTO},                                     //  invalid UTF-8
        {{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, CD_EPROTO}, //  > INT64_MAX
        {{0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}, 9, CD_EPROTO},                   //  +inf
        {{0xdd, 0xff, 0xff, 0xff, 0xff}, 5, CD_ETOOBIG},                        //  4 G elements
        {{0xdf, 0x00, 0x00, 0x10, 0x00, 0xc0}, 6, CD_EPROTO},                   //  count > bytes
        {{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, 6, CD_EPROTO},                    //  length > bytes
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        json_t *out = NULL;
        const char *why = NULL;
        int rc = cd_json_from_msgpack((cd_bin_t){rows[i].bytes, rows[i].len}, &out, &why);
        if (rc != rows[i].rc) {
            fail_msg("row %zu: %s (%s)", i, cd_errname(rc), why ? why : "-");
        }
        assert_null(out);
    }
    //  Nesting beyond the limit.
    uint8_t deep[100];
    memset(deep, 0x91, sizeof deep);
    deep[99] = 0xc0;
    json_t *out = NULL;
    const char *why = NULL;
    assert_int_equal(cd_json_from_msgpack((cd_bin_t){deep, sizeof deep}, &out, &why), CD_EDEPTH);
    //  bin that is text becomes a string.
    uint8_t bin[] = {0xc4, 0x02, 'o', 'k'};
    assert_int_equal(cd_json_from_msgpack((cd_bin_t){bin, sizeof bin}, &out, &why), 0);
    assert_string_equal(json_string_value(out), "ok");
    json_decref(out);
    //  Hostile bytes never crash: every single byte and pairs of them.
    for (int a = 0; a < 256; a++) {
        for (int b = 0; b < 256; b += 17) {
            uint8_t two[2] = {(uint8_t)a, (uint8_t)b};
            for (uint32_t len = 1; len <= 2; len++) {
                if (cd_json_from_msgpack((cd_bin_t){two, len}, &out, &why) == 0) {
                    json_decref(out);
                }
            }
        }
    }
    assert_int_equal(cd_json_from_msgpack((cd_bin_t){NULL, 0}, &out, &why), CD_EPROTO);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_valid_bodies_pass),
        cmocka_unit_test(test_json_malformed_bodies_are_invalid_json),
        cmocka_unit_test(test_json_nesting_is_bounded_before_parsing),
        cmocka_unit_test(test_json_schema_names_the_field),
        cmocka_unit_test(test_json_other_keys_follow_the_star_field),
        cmocka_unit_test(test_json_content_types),
        cmocka_unit_test(test_json_error_body_has_the_contract_shape),
        cmocka_unit_test(test_json_msgpack_round_trip),
        cmocka_unit_test(test_json_msgpack_rejects_what_json_cannot_say),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
