/*  cd_mpjson: msgpack <-> JSON (see cd_mpjson.h).

    The reader is a recursive descent over the bytes with a cursor and an
    end pointer; a container's declared count is checked against the bytes
    left (each entry needs at least one byte) before anything is built, so
    a small message cannot make it allocate much.

    Interface: cd_mpjson_decode, cd_mpjson_encode. */
#include "cd_mpjson.h"
#include "cd_error.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *at;  //  next byte
    const uint8_t *end; //  one past the last byte
    const char *why;    //  what was wrong
} s_reader_t;

static bool
s_uint(s_reader_t *r, int n, uint64_t *out)
{
    if (r->end - r->at < n) {
        r->why = "truncated";
        return false;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = v << 8 | r->at[i];
    }
    r->at += n;
    *out = v;
    return true;
}

static int s_read(s_reader_t *r, json_t **out, int depth);

static int
s_text(s_reader_t *r, uint64_t len, json_t **out)
{
    if ((uint64_t)(r->end - r->at) < len) {
        r->why = "truncated";
        return CD_EPROTO;
    }
    json_t *text = json_stringn((const char *)r->at, (size_t)len);
    if (!text) {
        r->why = "text is not UTF-8";
        return CD_EPROTO;
    }
    r->at += len;
    *out = text;
    return 0;
}

static int
s_container(s_reader_t *r, uint64_t count, bool map, json_t **out, int depth)
{
    if (depth >= CD_MPJSON_MAX_DEPTH) {
        r->why = "nesting too deep";
        return CD_EDEPTH;
    }
    if (count > CD_ENV_MAX_ELEMS) {
        r->why = "too many elements";
        return CD_ETOOBIG;
    }
    if (count * (map ? 2 : 1) > (uint64_t)(r->end - r->at)) {
        r->why = "truncated";
        return CD_EPROTO;
    }
    json_t *container = map ? json_object() : json_array();
    assert(container);
    for (uint64_t i = 0; i < count; i++) {
        json_t *key = NULL;
        json_t *item = NULL;
        int rc = 0;
        if (map) {
            rc = s_read(r, &key, depth + 1);
            if (rc == 0 && !json_is_string(key)) {
                r->why = "map key is not a string";
                rc = CD_EPROTO;
            }
        }
        if (rc == 0) {
            rc = s_read(r, &item, depth + 1);
        }
        if (rc == 0 && map) {
            json_object_set_new(container, json_string_value(key), item);
        } else if (rc == 0) {
            json_array_append_new(container, item);
        }
        json_decref(key);
        if (rc != 0) {
            json_decref(item);
            json_decref(container);
            return rc;
        }
    }
    *out = container;
    return 0;
}

static int
s_real(s_reader_t *r, double d, json_t **out)
{
    *out = json_real(d); //  NULL for NaN and infinities, which JSON lacks
    r->why = *out ? NULL : "not a finite number";
    return *out ? 0 : CD_EPROTO;
}

static int
s_read(s_reader_t *r, json_t **out, int depth)
{
    if (r->at >= r->end) {
        r->why = "truncated";
        return CD_EPROTO;
    }
    uint8_t b = *r->at++;
    uint64_t n = 0;
    if (b <= 0x7f) {
        *out = json_integer(b);
        return 0;
    }
    if (b >= 0xe0) {
        *out = json_integer((int8_t)b);
        return 0;
    }
    if (b <= 0x8f) {
        return s_container(r, b & 0x0f, true, out, depth);
    }
    if (b <= 0x9f) {
        return s_container(r, b & 0x0f, false, out, depth);
    }
    if (b <= 0xbf) {
        return s_text(r, b & 0x1f, out);
    }
    switch (b) {
    case 0xc0:
        *out = json_null();
        return 0;
    case 0xc2:
        *out = json_false();
        return 0;
    case 0xc3:
        *out = json_true();
        return 0;
    case 0xc4: //  bin 8/16/32: text when it is UTF-8
    case 0xd9: //  str 8
        return s_uint(r, 1, &n) ? s_text(r, n, out) : CD_EPROTO;
    case 0xc5:
    case 0xda:
        return s_uint(r, 2, &n) ? s_text(r, n, out) : CD_EPROTO;
    case 0xc6:
    case 0xdb:
        return s_uint(r, 4, &n) ? s_text(r, n, out) : CD_EPROTO;
    case 0xca: {
        if (!s_uint(r, 4, &n)) {
            return CD_EPROTO;
        }
        uint32_t bits = (uint32_t)n;
        float f;
        memcpy(&f, &bits, sizeof f);
        return s_real(r, f, out);
    }
    case 0xcb: {
        if (!s_uint(r, 8, &n)) {
            return CD_EPROTO;
        }
        double d;
        memcpy(&d, &n, sizeof d);
        return s_real(r, d, out);
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (!s_uint(r, 1 << (b - 0xcc), &n)) {
            return CD_EPROTO;
        }
        if (n > INT64_MAX) {
            r->why = "integer beyond 64-bit signed range";
            return CD_EPROTO;
        }
        *out = json_integer((json_int_t)n);
        return 0;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int width = 1 << (b - 0xd0);
        if (!s_uint(r, width, &n)) {
            return CD_EPROTO;
        }
        //  Sign-extend from the encoded width (as unsigned: no UB).
        uint64_t sign = (uint64_t)1 << (8 * width - 1);
        uint64_t v = width == 8 ? n : (n ^ sign) - sign;
        *out = json_integer((json_int_t)(int64_t)v);
        return 0;
    }
    case 0xdc:
        return s_uint(r, 2, &n) ? s_container(r, n, false, out, depth) : CD_EPROTO;
    case 0xdd:
        return s_uint(r, 4, &n) ? s_container(r, n, false, out, depth) : CD_EPROTO;
    case 0xde:
        return s_uint(r, 2, &n) ? s_container(r, n, true, out, depth) : CD_EPROTO;
    case 0xdf:
        return s_uint(r, 4, &n) ? s_container(r, n, true, out, depth) : CD_EPROTO;
    default: //  ext types and the never-used 0xc1
        r->why = "a value JSON cannot hold (ext)";
        return CD_EPROTO;
    }
}

int
cd_mpjson_decode(cd_bin_t value, json_t **out, const char **why)
{
    *out = NULL;
    s_reader_t r = {value.ptr, value.ptr ? value.ptr + value.len : NULL, NULL};
    json_t *result = NULL;
    int rc = value.ptr ? s_read(&r, &result, 0) : CD_EPROTO;
    if (rc == 0 && r.at != r.end) {
        r.why = "trailing bytes";
        rc = CD_EPROTO;
    }
    if (rc != 0 || !result) {
        json_decref(result);
        if (why) {
            *why = r.why ? r.why : "empty";
        }
        return rc ? rc : CD_EPROTO;
    }
    *out = result;
    return 0;
}

static int
s_write(const json_t *value, cd_pack_t *pack, int depth)
{
    if (depth > CD_MPJSON_MAX_DEPTH) {
        return CD_EDEPTH;
    }
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        cd_pack_map(pack, (uint32_t)json_object_size(value));
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)value, key, item)
        {
            cd_pack_cstr(pack, key);
            int rc = s_write(item, pack, depth + 1);
            if (rc != 0) {
                return rc;
            }
        }
        return 0;
    }
    case JSON_ARRAY: {
        cd_pack_array(pack, (uint32_t)json_array_size(value));
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item)
        {
            int rc = s_write(item, pack, depth + 1);
            if (rc != 0) {
                return rc;
            }
        }
        return 0;
    }
    case JSON_STRING:
        cd_pack_str(pack, json_string_value(value), json_string_length(value));
        return 0;
    case JSON_INTEGER:
        cd_pack_int(pack, json_integer_value(value));
        return 0;
    case JSON_REAL:
        cd_pack_double(pack, json_real_value(value));
        return 0;
    case JSON_TRUE:
        cd_pack_bool(pack, true);
        return 0;
    case JSON_FALSE:
        cd_pack_bool(pack, false);
        return 0;
    default:
        cd_pack_nil(pack);
        return 0;
    }
}

int
cd_mpjson_encode(const json_t *value, cd_pack_t *pack)
{
    return s_write(value, pack, 0);
}
