/*  test_envelope: the handoff envelope codec (ipc/cd_envelope.c).

    Round trips of every field, the decoder on each malformed, truncated and
    oversized input it must refuse, cross-checks against msgpack-c's own
    unpacker and packer, the small pack/read toolkit, and deterministic
    mutation loops that must never crash.

    Under ASan the decoder is also checked to allocate nothing: every decode
    in this file runs through s_decode, which counts calls to malloc with the
    sanitizer's malloc hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <msgpack.h>

#include "cd_envelope.h"
#include "cd_error.h"

//  -------------------------------------------------------------------------
//  Allocation counting (ASan/LSan runtimes only; a no-op elsewhere)

int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *))
    __attribute__((weak));

static volatile size_t s_mallocs; //  calls to malloc/calloc/realloc seen by the hook
static bool s_counting;           //  the hook is installed

static void
s_malloc_hook(const volatile void *ptr, size_t size)
{
    (void)ptr;
    (void)size;
    s_mallocs++;
}

static void
s_free_hook(const volatile void *ptr)
{
    (void)ptr;
}

//  Decodes and checks that nothing was allocated on the way.
static int
s_decode(const uint8_t *data, size_t size, cd_envelope_t *env, const char **why)
{
    size_t before = s_mallocs;
    int rc = cd_envelope_decode(data, size, env, why);
    assert_int_equal(s_mallocs, before);
    return rc;
}

static double
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

//  Deterministic pseudo-random numbers (xorshift64*).
static uint64_t
s_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

//  -------------------------------------------------------------------------
//  Fixtures

static const uint8_t s_id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t s_trace[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static const uint8_t s_parent[16] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

//  An envelope with every field set; payload is 64 bytes of bin.
static void
s_full_env(cd_envelope_t *env, const uint8_t payload[64])
{
    memset(env, 0, sizeof *env);
    memcpy(env->id, s_id, 16);
    env->kind = CD_KIND_HANDOFF;
    env->from = cd_str("agent/coder");
    env->to = cd_str("agent/review");
    env->task_id = 1234567890123;
    memcpy(env->trace_id, s_trace, 16);
    memcpy(env->parent_id, s_parent, 16);
    env->ts = 1700000000123456;
    env->attempt = 3;
    env->deadline = 1700000060000000;
    env->n_headers = 3;
    env->headers[0] = (cd_env_header_t){cd_str("content-type"), cd_str("text/plain")};
    env->headers[1] = (cd_env_header_t){cd_str("x-empty"), cd_str("")};
    env->headers[2] = (cd_env_header_t){cd_str("content-type"), cd_str("again")};
    env->n_artifacts = 2;
    env->artifacts[0] = (cd_env_artifact_t){42, cd_str("report.md"), 1024};
    env->artifacts[1] = (cd_env_artifact_t){-7, cd_str(""), UINT64_MAX};
    env->payload_type = CD_PAYLOAD_BIN;
    env->payload = (cd_bin_t){payload, 64};
}

static void
s_assert_view_eq(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    assert_int_equal(alen, blen);
    if (alen > 0) {
        assert_memory_equal(a, b, alen);
    }
}

static void
s_assert_env_eq(const cd_envelope_t *a, const cd_envelope_t *b)
{
    assert_memory_equal(a->id, b->id, 16);
    assert_int_equal(a->kind, b->kind);
    s_assert_view_eq(a->from.ptr, a->from.len, b->from.ptr, b->from.len);
    s_assert_view_eq(a->to.ptr, a->to.len, b->to.ptr, b->to.len);
    assert_true(a->task_id == b->task_id);
    assert_memory_equal(a->trace_id, b->trace_id, 16);
    assert_memory_equal(a->parent_id, b->parent_id, 16);
    assert_true(a->ts == b->ts);
    assert_int_equal(a->attempt, b->attempt);
    assert_true(a->deadline == b->deadline);
    assert_int_equal(a->n_headers, b->n_headers);
    for (uint32_t i = 0; i < a->n_headers; i++) {
        s_assert_view_eq(a->headers[i].key.ptr, a->headers[i].key.len, b->headers[i].key.ptr,
                         b->headers[i].key.len);
        s_assert_view_eq(a->headers[i].value.ptr, a->headers[i].value.len, b->headers[i].value.ptr,
                         b->headers[i].value.len);
    }
    assert_int_equal(a->n_artifacts, b->n_artifacts);
    for (uint32_t i = 0; i < a->n_artifacts; i++) {
        assert_true(a->artifacts[i].id == b->artifacts[i].id);
        assert_true(a->artifacts[i].size == b->artifacts[i].size);
        s_assert_view_eq(a->artifacts[i].name.ptr, a->artifacts[i].name.len,
                         b->artifacts[i].name.ptr, b->artifacts[i].name.len);
    }
    assert_int_equal(a->payload_type, b->payload_type);
    assert_int_equal(a->payload_in_frame, b->payload_in_frame);
    s_assert_view_eq(a->payload.ptr, a->payload.len, b->payload.ptr, b->payload.len);
}

//  Encodes env and returns a heap copy of the bytes (so that the buffer can
//  be reused while the copy is decoded). Caller owns the result.
static uint8_t *
s_encode_copy(const cd_envelope_t *env, size_t *size)
{
    cd_envbuf_t *buf = cd_envbuf_new();
    assert_int_equal(cd_envelope_encode(env, buf), 0);
    *size = cd_envbuf_size(buf);
    uint8_t *copy = malloc(*size + 1);
    assert_non_null(copy);
    memcpy(copy, cd_envbuf_data(buf), *size);
    cd_envbuf_destroy(&buf);
    return copy;
}

//  A map payload exercising most value types.
static cd_bin_t
s_map_payload(cd_pack_t *pk)
{
    cd_pack_reset(pk);
    cd_pack_map(pk, 7);
    cd_pack_cstr(pk, "text");
    cd_pack_cstr(pk, "hello, world");
    cd_pack_cstr(pk, "n");
    cd_pack_int(pk, -300);
    cd_pack_cstr(pk, "list");
    cd_pack_array(pk, 3);
    cd_pack_uint(pk, 1);
    cd_pack_double(pk, 2.5);
    cd_pack_map(pk, 1);
    cd_pack_cstr(pk, "x");
    cd_pack_nil(pk);
    cd_pack_cstr(pk, "ok");
    cd_pack_bool(pk, true);
    cd_pack_cstr(pk, "blob");
    cd_pack_bin(pk, "\x00\x01\x02", 3);
    cd_pack_int(pk, 7); //  a non-string key
    cd_pack_cstr(pk, "seven");
    cd_pack_cstr(pk, "big");
    cd_pack_uint(pk, UINT64_MAX);
    return cd_pack_bytes(pk);
}

//  -------------------------------------------------------------------------
//  A builder of envelopes with one thing wrong

enum {
    F_V,
    F_ID,
    F_KIND,
    F_FROM,
    F_TO,
    F_TASK_ID,
    F_TRACE_ID,
    F_PARENT_ID,
    F_TS,
    F_ATTEMPT,
    F_DEADLINE,
    F_HEADERS,
    F_ARTIFACTS,
    F_PAYLOAD,
    F_COUNT
};

static const char *const s_names[F_COUNT] = {
    "v",         "id", "kind",    "from",     "to",      "task_id",   "trace_id",
    "parent_id", "ts", "attempt", "deadline", "headers", "artifacts", "payload",
};

typedef struct {
    int omit;              //  field left out, or -1
    int replace;           //  field whose value is `raw`, or -1
    cd_bin_t raw;          //  replacement value (encoded msgpack)
    const char *extra[2];  //  keys appended after the fields (NULL: none)
    cd_bin_t extra_raw[2]; //  their values
} edit_t;

static void
s_pack_default(cd_pack_t *pk, int f)
{
    switch (f) {
    case F_V:
        cd_pack_uint(pk, 1);
        break;
    case F_ID:
        cd_pack_bin(pk, s_id, 16);
        break;
    case F_KIND:
        cd_pack_cstr(pk, "task");
        break;
    case F_FROM:
        cd_pack_cstr(pk, "orchestrator");
        break;
    case F_TO:
        cd_pack_cstr(pk, "agent/echo");
        break;
    case F_TASK_ID:
        cd_pack_int(pk, 99);
        break;
    case F_TRACE_ID:
        cd_pack_bin(pk, s_trace, 16);
        break;
    case F_PARENT_ID:
        cd_pack_bin(pk, s_parent, 16);
        break;
    case F_TS:
        cd_pack_int(pk, 1700000000000000);
        break;
    case F_ATTEMPT:
        cd_pack_uint(pk, 1);
        break;
    case F_DEADLINE:
        cd_pack_int(pk, 0);
        break;
    case F_HEADERS:
        cd_pack_map(pk, 2);
        cd_pack_cstr(pk, "h1");
        cd_pack_cstr(pk, "v1");
        cd_pack_cstr(pk, "h2");
        cd_pack_cstr(pk, "v2");
        break;
    case F_ARTIFACTS:
        cd_pack_array(pk, 1);
        cd_pack_map(pk, 3);
        cd_pack_cstr(pk, "id");
        cd_pack_int(pk, 5);
        cd_pack_cstr(pk, "name");
        cd_pack_cstr(pk, "a.txt");
        cd_pack_cstr(pk, "size");
        cd_pack_uint(pk, 10);
        break;
    default:
        cd_pack_bin(pk, "hello", 5);
        break;
    }
}

static cd_bin_t
s_build(cd_pack_t *pk, const edit_t *e)
{
    cd_pack_reset(pk);
    uint32_t n = F_COUNT - (e->omit >= 0) + (e->extra[0] != NULL) + (e->extra[1] != NULL);
    cd_pack_map(pk, n);
    for (int f = 0; f < F_COUNT; f++) {
        if (f == e->omit) {
            continue;
        }
        cd_pack_cstr(pk, s_names[f]);
        if (f == e->replace) {
            cd_pack_raw(pk, e->raw.ptr, e->raw.len);
        } else {
            s_pack_default(pk, f);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (e->extra[i]) {
            cd_pack_cstr(pk, e->extra[i]);
            cd_pack_raw(pk, e->extra_raw[i].ptr, e->extra_raw[i].len);
        }
    }
    return cd_pack_bytes(pk);
}

static cd_bin_t
s_build_replace(cd_pack_t *pk, int field, cd_bin_t raw)
{
    edit_t e = {.omit = -1, .replace = field, .raw = raw};
    return s_build(pk, &e);
}

//  Decodes bytes that must be refused with `code` and a reason.
static void
s_expect_fail(cd_bin_t bytes, int code)
{
    cd_envelope_t env;
    const char *why = NULL;
    int rc = s_decode(bytes.ptr, bytes.len, &env, &why);
    if (rc != code) {
        print_error("expected %s, got %s (%s)\n", cd_errname(code), cd_errname(rc),
                    why ? why : "no reason");
    }
    assert_int_equal(rc, code);
    assert_non_null(why);
    assert_true(strlen(why) > 0);
}

static void
s_expect_ok(cd_bin_t bytes, cd_envelope_t *env)
{
    const char *why = NULL;
    int rc = s_decode(bytes.ptr, bytes.len, env, &why);
    if (rc != 0) {
        print_error("unexpected %s (%s)\n", cd_errname(rc), why ? why : "no reason");
    }
    assert_int_equal(rc, 0);
}

#define S_RAW(...) ((cd_bin_t){(const uint8_t[]){__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__})})

//  -------------------------------------------------------------------------
//  Round trips

static void
test_envelope_round_trip_full_bin(void **state)
{
    uint8_t payload[64];
    for (int i = 0; i < 64; i++) {
        payload[i] = (uint8_t)(i * 7);
    }
    cd_envelope_t in, out;
    s_full_env(&in, payload);
    size_t size;
    uint8_t *bytes = s_encode_copy(&in, &size);
    const char *why = NULL;
    assert_int_equal(s_decode(bytes, size, &out, &why), 0);
    s_assert_env_eq(&in, &out);
    //  Views borrow from the input, not from anything else.
    assert_true(out.from.ptr >= (const char *)bytes && out.from.ptr < (const char *)bytes + size);
    assert_true(out.payload.ptr >= bytes && out.payload.ptr + 64 <= bytes + size);
    free(bytes);
}

static void
test_envelope_round_trip_map_payload(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    uint8_t unused[64] = {0};
    cd_envelope_t in, out;
    s_full_env(&in, unused);
    in.payload_type = CD_PAYLOAD_MAP;
    in.payload = s_map_payload(pk);
    size_t size;
    uint8_t *bytes = s_encode_copy(&in, &size);
    s_expect_ok((cd_bin_t){bytes, (uint32_t)size}, &out);
    s_assert_env_eq(&in, &out);
    assert_int_equal(cd_msgpack_validate(out.payload.ptr, out.payload.len, NULL), 0);
    free(bytes);
    cd_pack_destroy(&pk);
}

static void
test_envelope_round_trip_minimal(void **state)
{
    cd_envelope_t in, out;
    memset(&in, 0, sizeof in);
    in.kind = CD_KIND_LOG;
    in.from = cd_str("a");
    in.to = cd_str("b");
    cd_envbuf_t *buf = cd_envbuf_new();
    assert_int_equal(cd_envelope_encode(&in, buf), 0);
    //  Zero optional fields are not written: map(5) v id kind to from.
    assert_int_equal(cd_envbuf_data(buf)[0], 0x85);
    //  Fill out with junk first: decode must clear every scalar field.
    memset(&out, 0x5a, sizeof out);
    assert_int_equal(s_decode(cd_envbuf_data(buf), cd_envbuf_size(buf), &out, NULL), 0);
    s_assert_env_eq(&in, &out);
    assert_null(out.payload.ptr);
    cd_envbuf_destroy(&buf);
}

static void
test_envelope_round_trip_extremes(void **state)
{
    uint8_t payload[64] = {0};
    cd_envelope_t in, out;
    s_full_env(&in, payload);
    in.task_id = INT64_MIN;
    in.ts = -1;
    in.deadline = INT64_MAX;
    in.attempt = UINT32_MAX;
    in.artifacts[0].id = INT64_MIN;
    in.artifacts[0].size = 0;
    in.payload = (cd_bin_t){NULL, 0}; //  an empty bin payload
    char name[CD_ENV_MAX_NAME];
    memset(name, 'n', sizeof name);
    in.from = (cd_str_t){name, CD_ENV_MAX_NAME};
    in.n_headers = CD_ENV_MAX_HEADERS;
    in.n_artifacts = CD_ENV_MAX_ARTIFACTS;
    for (int i = 0; i < CD_ENV_MAX_HEADERS; i++) {
        in.headers[i] = (cd_env_header_t){{name, CD_ENV_MAX_NAME}, {name, (uint32_t)i}};
        in.artifacts[i] = (cd_env_artifact_t){i, {name, CD_ENV_MAX_NAME}, (uint64_t)i << 40};
    }
    for (int kind = CD_KIND_TASK; kind < CD_KIND_COUNT_; kind++) {
        in.kind = (cd_kind_t)kind;
        size_t size;
        uint8_t *bytes = s_encode_copy(&in, &size);
        s_expect_ok((cd_bin_t){bytes, (uint32_t)size}, &out);
        s_assert_env_eq(&in, &out);
        assert_int_equal(out.payload_type, CD_PAYLOAD_BIN);
        assert_non_null(out.payload.ptr);
        free(bytes);
    }
}

static void
test_envelope_payload_in_frame_attach(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    uint8_t payload[64] = {0};
    cd_envelope_t in, out;
    s_full_env(&in, payload);
    size_t size, inline_size;
    free(s_encode_copy(&in, &inline_size));
    in.payload_in_frame = true;
    uint8_t *bytes = s_encode_copy(&in, &size);
    //  The payload bytes are not in the envelope.
    assert_true(size + 64 < inline_size);
    s_expect_ok((cd_bin_t){bytes, (uint32_t)size}, &out);
    assert_true(out.payload_in_frame);
    assert_int_equal(out.payload_type, CD_PAYLOAD_BIN);
    assert_null(out.payload.ptr);
    const char *why = NULL;
    assert_int_equal(cd_envelope_attach_payload(&out, payload, sizeof payload, &why), 0);
    assert_ptr_equal(out.payload.ptr, payload);
    assert_int_equal(out.payload.len, 64);
    //  Re-encoding the attached envelope still sends the payload as a frame.
    size_t size2;
    uint8_t *again = s_encode_copy(&out, &size2);
    assert_int_equal(size, size2);
    assert_memory_equal(bytes, again, size);
    free(again);
    free(bytes);

    //  A map frame is validated on attach.
    in.payload_type = CD_PAYLOAD_MAP;
    bytes = s_encode_copy(&in, &size);
    s_expect_ok((cd_bin_t){bytes, (uint32_t)size}, &out);
    assert_int_equal(out.payload_type, CD_PAYLOAD_MAP);
    assert_int_equal(cd_envelope_attach_payload(&out, payload, sizeof payload, &why), CD_EPROTO);
    assert_non_null(why);
    cd_bin_t map = s_map_payload(pk);
    assert_int_equal(cd_envelope_attach_payload(&out, map.ptr, map.len, &why), 0);
    assert_ptr_equal(out.payload.ptr, map.ptr);
    uint8_t *trailing = malloc(map.len + 1);
    memcpy(trailing, map.ptr, map.len);
    trailing[map.len] = 0xc0;
    assert_int_equal(cd_envelope_attach_payload(&out, trailing, map.len + 1, &why), CD_EPROTO);
    assert_int_equal(cd_envelope_attach_payload(&out, trailing, map.len - 1, &why), CD_ETRUNC);
    free(trailing);
    free(bytes);

    //  No frame announced: wrong state.
    in.payload_in_frame = false;
    in.payload_type = CD_PAYLOAD_BIN;
    in.payload = (cd_bin_t){payload, 64};
    bytes = s_encode_copy(&in, &size);
    s_expect_ok((cd_bin_t){bytes, (uint32_t)size}, &out);
    assert_int_equal(cd_envelope_attach_payload(&out, payload, 64, &why), CD_ESTATE);
    free(bytes);
    cd_pack_destroy(&pk);
}

static void
test_envelope_encode_reuses_buffer(void **state)
{
    uint8_t payload[64] = {0};
    cd_envelope_t env;
    s_full_env(&env, payload);
    cd_envbuf_t *buf = cd_envbuf_new();
    assert_int_equal(cd_envbuf_size(buf), 0);
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    size_t full = cd_envbuf_size(buf);
    const uint8_t *data = cd_envbuf_data(buf);
    env.n_headers = 0;
    env.n_artifacts = 0;
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    assert_true(cd_envbuf_size(buf) < full);
    //  Same memory, no reallocation for a smaller message.
    assert_ptr_equal(cd_envbuf_data(buf), data);
    size_t small = cd_envbuf_size(buf);
    uint8_t *copy = malloc(small);
    memcpy(copy, data, small);
    //  A failed encode leaves the last good bytes in place.
    env.kind = CD_KIND_NONE;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    assert_int_equal(cd_envbuf_size(buf), small);
    assert_memory_equal(cd_envbuf_data(buf), copy, small);
    free(copy);
    cd_envbuf_destroy(&buf);
}

//  -------------------------------------------------------------------------
//  Encode errors

static void
test_envelope_encode_rejects_bad_input(void **state)
{
    uint8_t payload[64] = {0};
    char longname[CD_ENV_MAX_NAME + 1];
    memset(longname, 'x', sizeof longname);
    cd_str_t too_long = {longname, CD_ENV_MAX_NAME + 1};
    cd_envbuf_t *buf = cd_envbuf_new();
    cd_envelope_t env;

    s_full_env(&env, payload);
    assert_int_equal(cd_envelope_encode(&env, buf), 0);

    s_full_env(&env, payload);
    env.kind = CD_KIND_NONE;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.kind = CD_KIND_COUNT_;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.kind = (cd_kind_t)-1;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);

    s_full_env(&env, payload);
    env.from = cd_str(NULL);
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.from = cd_str("");
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.from = too_long;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);

    s_full_env(&env, payload);
    env.to = too_long;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.to = (cd_str_t){NULL, 3};
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);

    s_full_env(&env, payload);
    env.n_headers = CD_ENV_MAX_HEADERS + 1;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.n_headers = 1;
    env.headers[0].key = too_long;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.headers[0].key = cd_str("k");
    env.headers[0].value = too_long;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.headers[0].value = (cd_str_t){NULL, 1};
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);

    s_full_env(&env, payload);
    env.n_artifacts = CD_ENV_MAX_ARTIFACTS + 1;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.n_artifacts = 1;
    env.artifacts[0].name = too_long;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);

    s_full_env(&env, payload);
    env.payload = (cd_bin_t){NULL, 5};
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.payload_type = (cd_payload_type_t)7;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.payload_type = CD_PAYLOAD_NONE;
    env.payload_in_frame = true;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);

    //  A map payload must be exactly one valid map.
    s_full_env(&env, payload);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = (cd_bin_t){(const uint8_t *)"\x81\xa1k", 3};
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.payload = (cd_bin_t){(const uint8_t *)"\x90", 1};
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.payload = (cd_bin_t){(const uint8_t *)"\x80\xc0", 2};
    assert_int_equal(cd_envelope_encode(&env, buf), CD_EINVAL);
    env.payload = (cd_bin_t){(const uint8_t *)"\x80", 1};
    assert_int_equal(cd_envelope_encode(&env, buf), 0);

    cd_envbuf_destroy(&buf);
}

static void
test_envelope_encode_rejects_oversize(void **state)
{
    size_t big = CD_ENV_MAX_SIZE + 1;
    uint8_t *payload = calloc(1, big);
    assert_non_null(payload);
    cd_envbuf_t *buf = cd_envbuf_new();
    cd_envelope_t env, out;
    s_full_env(&env, payload);
    env.payload.len = (uint32_t)big;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_ETOOBIG);
    assert_int_equal(cd_envbuf_size(buf), 0);
    env.payload.len = CD_ENV_MAX_SIZE - 1;
    assert_int_equal(cd_envelope_encode(&env, buf), CD_ETOOBIG);
    //  Well under the limit: fine, and it decodes.
    env.payload.len = CD_ENV_MAX_SIZE - 20000;
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    assert_true(cd_envbuf_size(buf) <= CD_ENV_MAX_SIZE);
    assert_int_equal(s_decode(cd_envbuf_data(buf), cd_envbuf_size(buf), &out, NULL), 0);
    s_assert_env_eq(&env, &out);
    //  A decoder input over the limit is refused before it is read.
    const char *why = NULL;
    assert_int_equal(s_decode(payload, big, &out, &why), CD_ETOOBIG);
    assert_non_null(why);
    cd_envbuf_destroy(&buf);
    free(payload);
}

//  -------------------------------------------------------------------------
//  Decode errors

static void
test_envelope_decode_wrong_type_per_key(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    //  For each key, a value of the wrong type.
    const cd_bin_t wrong[F_COUNT] = {
        [F_V] = S_RAW(0xa1, '1'),
        [F_ID] = S_RAW(0xa2, 'i', 'd'),
        [F_KIND] = S_RAW(0x01),
        [F_FROM] = S_RAW(0xc4, 0x01, 'a'),
        [F_TO] = S_RAW(0xc0),
        [F_TASK_ID] = S_RAW(0xa2, '4', '2'),
        [F_TRACE_ID] = S_RAW(0x90),
        [F_PARENT_ID] = S_RAW(0x05),
        [F_TS] = S_RAW(0xca, 0x3f, 0x80, 0x00, 0x00),
        [F_ATTEMPT] = S_RAW(0xc3),
        [F_DEADLINE] = S_RAW(0xcb, 0, 0, 0, 0, 0, 0, 0, 0),
        [F_HEADERS] = S_RAW(0x91, 0xa1, 'a'),
        [F_ARTIFACTS] = S_RAW(0x80),
        [F_PAYLOAD] = S_RAW(0xa5, 'h', 'e', 'l', 'l', 'o'),
    };
    for (int f = 0; f < F_COUNT; f++) {
        s_expect_fail(s_build_replace(pk, f, wrong[f]), CD_EPROTO);
    }
    //  Inside headers and artifacts.
    s_expect_fail(s_build_replace(pk, F_HEADERS, S_RAW(0x81, 0xa1, 'k', 0x01)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_HEADERS, S_RAW(0x81, 0x01, 0xa1, 'v')), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_ARTIFACTS, S_RAW(0x91, 0x90)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_ARTIFACTS,
                                  S_RAW(0x91, 0x83, 0xa2, 'i', 'd', 0xa1, '1', 0xa4, 'n', 'a', 'm',
                                        'e', 0xa1, 'n', 0xa4, 's', 'i', 'z', 'e', 0x01)),
                  CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_ARTIFACTS,
                                  S_RAW(0x91, 0x83, 0xa2, 'i', 'd', 0x01, 0xa4, 'n', 'a', 'm', 'e',
                                        0x02, 0xa4, 's', 'i', 'z', 'e', 0x01)),
                  CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_ARTIFACTS,
                                  S_RAW(0x91, 0x83, 0xa2, 'i', 'd', 0x01, 0xa4, 'n', 'a', 'm', 'e',
                                        0xa1, 'n', 0xa4, 's', 'i', 'z', 'e', 0xff)),
                  CD_EPROTO);
    //  Artifact key not a string, artifact with a duplicate key.
    s_expect_fail(s_build_replace(pk, F_ARTIFACTS, S_RAW(0x91, 0x81, 0x01, 0x01)), CD_EPROTO);
    s_expect_fail(
        s_build_replace(pk, F_ARTIFACTS,
                        S_RAW(0x91, 0x84, 0xa2, 'i', 'd', 0x01, 0xa2, 'i', 'd', 0x02, 0xa4, 'n',
                              'a', 'm', 'e', 0xa1, 'n', 0xa4, 's', 'i', 'z', 'e', 0x01)),
        CD_EPROTO);
    //  Artifact lacking its name; with an unknown key it is still fine.
    s_expect_fail(
        s_build_replace(pk, F_ARTIFACTS,
                        S_RAW(0x91, 0x82, 0xa2, 'i', 'd', 0x01, 0xa4, 's', 'i', 'z', 'e', 0x01)),
        CD_EINVAL);
    cd_envelope_t env;
    s_expect_ok(
        s_build_replace(pk, F_ARTIFACTS,
                        S_RAW(0x91, 0x84, 0xa2, 'i', 'd', 0x01, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'n',
                              0xa1, 'x', 0x92, 0x01, 0x80, 0xa4, 's', 'i', 'z', 'e', 0x01)),
        &env);
    assert_int_equal(env.n_artifacts, 1);
    assert_true(cd_str_eq(env.artifacts[0].name, "n"));
    //  A top-level key that is not a string.
    s_expect_fail(S_RAW(0x81, 0x01, 0x01), CD_EPROTO);
    //  Not a map at all.
    s_expect_fail(S_RAW(0x90), CD_EPROTO);
    s_expect_fail(S_RAW(0xc1), CD_EPROTO);
    s_expect_fail(S_RAW(0xa1, 'v'), CD_EPROTO);
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_missing_required_key(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    for (int f = F_V; f <= F_TO; f++) {
        edit_t e = {.omit = f, .replace = -1};
        cd_envelope_t env;
        const char *why = NULL;
        cd_bin_t bytes = s_build(pk, &e);
        assert_int_equal(s_decode(bytes.ptr, bytes.len, &env, &why), CD_EINVAL);
        assert_non_null(why);
        assert_non_null(strstr(why, s_names[f]));
    }
    //  Optional keys may all be missing.
    for (int f = F_TASK_ID; f < F_COUNT; f++) {
        edit_t e = {.omit = f, .replace = -1};
        cd_envelope_t env;
        s_expect_ok(s_build(pk, &e), &env);
    }
    s_expect_fail(S_RAW(0x80), CD_EINVAL);
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_version(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_envelope_t env;
    s_expect_fail(s_build_replace(pk, F_V, S_RAW(0x02)), CD_EVERSION);
    s_expect_fail(s_build_replace(pk, F_V, S_RAW(0x00)), CD_EVERSION);
    s_expect_fail(s_build_replace(pk, F_V, S_RAW(0xff)), CD_EVERSION);
    s_expect_fail(s_build_replace(pk, F_V, S_RAW(0xcf, 0, 0, 0, 1, 0, 0, 0, 1)), CD_EVERSION);
    s_expect_fail(s_build_replace(pk, F_V, S_RAW(0xc0)), CD_EPROTO);
    //  Liberal in width: 1 as uint8, uint64 and int16.
    s_expect_ok(s_build_replace(pk, F_V, S_RAW(0xcc, 0x01)), &env);
    s_expect_ok(s_build_replace(pk, F_V, S_RAW(0xcf, 0, 0, 0, 0, 0, 0, 0, 1)), &env);
    s_expect_ok(s_build_replace(pk, F_V, S_RAW(0xd1, 0, 1)), &env);
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_bad_ids(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    uint8_t raw[2 + 17] = {0xc4, 15};
    for (int f = F_ID; f <= F_PARENT_ID; f += (f == F_ID ? F_TRACE_ID - F_ID : 1)) {
        raw[1] = 15;
        s_expect_fail(s_build_replace(pk, f, (cd_bin_t){raw, 2 + 15}), CD_EPROTO);
        raw[1] = 17;
        s_expect_fail(s_build_replace(pk, f, (cd_bin_t){raw, 2 + 17}), CD_EPROTO);
        raw[1] = 0;
        s_expect_fail(s_build_replace(pk, f, (cd_bin_t){raw, 2}), CD_EPROTO);
        //  bin16 (0xc5) holding 16 bytes is a wider head, still bin(16).
        uint8_t wide[3 + 16] = {0xc5, 0, 16};
        cd_envelope_t env;
        s_expect_ok(s_build_replace(pk, f, (cd_bin_t){wide, sizeof wide}), &env);
    }
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_duplicate_key(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_pack_t *val = cd_pack_new();
    for (int f = 0; f < F_COUNT; f++) {
        cd_pack_reset(val);
        s_pack_default(val, f);
        edit_t e = {
            .omit = -1, .replace = -1, .extra = {s_names[f]}, .extra_raw = {cd_pack_bytes(val)}};
        s_expect_fail(s_build(pk, &e), CD_EPROTO);
    }
    //  Unknown keys too; two different unknown keys are fine.
    edit_t e = {.omit = -1,
                .replace = -1,
                .extra = {"x-new", "x-new"},
                .extra_raw = {S_RAW(0x01), S_RAW(0x02)}};
    s_expect_fail(s_build(pk, &e), CD_EPROTO);
    e.extra[1] = "x-new2";
    cd_envelope_t env;
    s_expect_ok(s_build(pk, &e), &env);
    //  payload and pframe together.
    edit_t both = {.omit = -1, .replace = -1, .extra = {"pframe"}, .extra_raw = {S_RAW(0x01)}};
    s_expect_fail(s_build(pk, &both), CD_EPROTO);
    cd_pack_destroy(&val);
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_trailing_bytes(void **state)
{
    uint8_t payload[64] = {0};
    cd_envelope_t env;
    s_full_env(&env, payload);
    size_t size;
    uint8_t *bytes = s_encode_copy(&env, &size);
    bytes[size] = 0xc0;
    s_expect_fail((cd_bin_t){bytes, (uint32_t)size + 1}, CD_EPROTO);
    bytes[size] = 0x00;
    s_expect_fail((cd_bin_t){bytes, (uint32_t)size + 1}, CD_EPROTO);
    free(bytes);
}

static void
test_envelope_decode_value_ranges(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_envelope_t env;
    //  attempt: negative, over uint32, at uint32 max.
    s_expect_fail(s_build_replace(pk, F_ATTEMPT, S_RAW(0xff)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_ATTEMPT, S_RAW(0xd0, 0x80)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_ATTEMPT, S_RAW(0xcf, 0, 0, 0, 1, 0, 0, 0, 0)), CD_EPROTO);
    s_expect_ok(s_build_replace(pk, F_ATTEMPT, S_RAW(0xce, 0xff, 0xff, 0xff, 0xff)), &env);
    assert_int_equal(env.attempt, UINT32_MAX);
    //  An int8 holding a positive number is fine.
    s_expect_ok(s_build_replace(pk, F_ATTEMPT, S_RAW(0xd0, 0x05)), &env);
    assert_int_equal(env.attempt, 5);
    //  task_id / ts / deadline must fit int64.
    const uint8_t over[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    s_expect_fail(s_build_replace(pk, F_TASK_ID, (cd_bin_t){over, 9}), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_TS, (cd_bin_t){over, 9}), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_DEADLINE, (cd_bin_t){over, 9}), CD_EPROTO);
    s_expect_ok(
        s_build_replace(pk, F_TASK_ID, S_RAW(0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
        &env);
    assert_true(env.task_id == INT64_MAX);
    s_expect_ok(s_build_replace(pk, F_TASK_ID, S_RAW(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0)), &env);
    assert_true(env.task_id == INT64_MIN);
    s_expect_ok(s_build_replace(pk, F_TASK_ID, S_RAW(0xd0, 0x05)), &env);
    assert_true(env.task_id == 5);
    //  artifact size must not be negative; artifact id must fit int64.
    s_expect_fail(
        s_build_replace(pk, F_ARTIFACTS,
                        S_RAW(0x91, 0x83, 0xa2, 'i', 'd', 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xa4,
                              'n', 'a', 'm', 'e', 0xa1, 'n', 0xa4, 's', 'i', 'z', 'e', 0x01)),
        CD_EPROTO);
    //  kind must name a kind; from and to must not be empty.
    s_expect_fail(s_build_replace(pk, F_KIND, S_RAW(0xa3, 'f', 'o', 'o')), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_KIND, S_RAW(0xa5, 't', 'a', 's', 'k', 's')), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_KIND, S_RAW(0xa0)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_FROM, S_RAW(0xa0)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_TO, S_RAW(0xd9, 0x00)), CD_EPROTO);
    //  pframe is 1 or 2.
    edit_t e = {.omit = F_PAYLOAD, .replace = -1, .extra = {"pframe"}};
    e.extra_raw[0] = S_RAW(0x03);
    s_expect_fail(s_build(pk, &e), CD_EPROTO);
    e.extra_raw[0] = S_RAW(0x00);
    s_expect_fail(s_build(pk, &e), CD_EPROTO);
    e.extra_raw[0] = S_RAW(0xa1, '1');
    s_expect_fail(s_build(pk, &e), CD_EPROTO);
    e.extra_raw[0] = S_RAW(0xcd, 0x00, 0x02);
    s_expect_ok(s_build(pk, &e), &env);
    assert_true(env.payload_in_frame);
    assert_int_equal(env.payload_type, CD_PAYLOAD_MAP);
    //  payload is bin or map, never nil, str, array or int.
    s_expect_fail(s_build_replace(pk, F_PAYLOAD, S_RAW(0xc0)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_PAYLOAD, S_RAW(0x91, 0x01)), CD_EPROTO);
    s_expect_fail(s_build_replace(pk, F_PAYLOAD, S_RAW(0x01)), CD_EPROTO);
    s_expect_ok(s_build_replace(pk, F_PAYLOAD, S_RAW(0xde, 0x00, 0x01, 0xa1, 'k', 0x01)), &env);
    assert_int_equal(env.payload_type, CD_PAYLOAD_MAP);
    assert_int_equal(env.payload.len, 6);
    cd_pack_destroy(&pk);
}

//  A str value of len bytes of 'x' in pk (str8/16 as msgpack-c picks).
static cd_bin_t
s_long_str(cd_pack_t *pk, size_t len)
{
    char *s = malloc(len + 1);
    memset(s, 'x', len);
    cd_pack_reset(pk);
    cd_pack_str(pk, s, len);
    free(s);
    return cd_pack_bytes(pk);
}

static void
test_envelope_decode_limits(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_pack_t *val = cd_pack_new();
    cd_envelope_t env;
    //  Names: 256 bytes fine, 257 too big.
    for (int f = F_KIND; f <= F_TO; f++) {
        s_expect_fail(s_build_replace(pk, f, s_long_str(val, CD_ENV_MAX_NAME + 1)), CD_ETOOBIG);
    }
    s_expect_ok(s_build_replace(pk, F_FROM, s_long_str(val, CD_ENV_MAX_NAME)), &env);
    assert_int_equal(env.from.len, CD_ENV_MAX_NAME);
    //  Header key and value lengths.
    char big[CD_ENV_MAX_NAME + 1];
    memset(big, 'h', sizeof big);
    cd_pack_reset(val);
    cd_pack_map(val, 1);
    cd_pack_str(val, big, CD_ENV_MAX_NAME + 1);
    cd_pack_cstr(val, "v");
    s_expect_fail(s_build_replace(pk, F_HEADERS, cd_pack_bytes(val)), CD_ETOOBIG);
    cd_pack_reset(val);
    cd_pack_map(val, 1);
    cd_pack_cstr(val, "k");
    cd_pack_str(val, big, CD_ENV_MAX_NAME + 1);
    s_expect_fail(s_build_replace(pk, F_HEADERS, cd_pack_bytes(val)), CD_ETOOBIG);
    //  Artifact name.
    cd_pack_reset(val);
    cd_pack_array(val, 1);
    cd_pack_map(val, 3);
    cd_pack_cstr(val, "id");
    cd_pack_int(val, 1);
    cd_pack_cstr(val, "name");
    cd_pack_str(val, big, CD_ENV_MAX_NAME + 1);
    cd_pack_cstr(val, "size");
    cd_pack_uint(val, 1);
    s_expect_fail(s_build_replace(pk, F_ARTIFACTS, cd_pack_bytes(val)), CD_ETOOBIG);
    //  16 headers fine, 17 too many.
    for (uint32_t n = CD_ENV_MAX_HEADERS; n <= CD_ENV_MAX_HEADERS + 1; n++) {
        cd_pack_reset(val);
        cd_pack_map(val, n);
        for (uint32_t i = 0; i < n; i++) {
            cd_pack_cstr(val, "k");
            cd_pack_cstr(val, "v");
        }
        cd_bin_t bytes = s_build_replace(pk, F_HEADERS, cd_pack_bytes(val));
        if (n == CD_ENV_MAX_HEADERS) {
            s_expect_ok(bytes, &env);
            assert_int_equal(env.n_headers, n);
        } else {
            s_expect_fail(bytes, CD_ETOOBIG);
        }
    }
    //  16 artifacts fine, 17 too many.
    for (uint32_t n = CD_ENV_MAX_ARTIFACTS; n <= CD_ENV_MAX_ARTIFACTS + 1; n++) {
        cd_pack_reset(val);
        cd_pack_array(val, n);
        for (uint32_t i = 0; i < n; i++) {
            cd_pack_map(val, 3);
            cd_pack_cstr(val, "id");
            cd_pack_int(val, i);
            cd_pack_cstr(val, "name");
            cd_pack_cstr(val, "a");
            cd_pack_cstr(val, "size");
            cd_pack_uint(val, i);
        }
        cd_bin_t bytes = s_build_replace(pk, F_ARTIFACTS, cd_pack_bytes(val));
        if (n == CD_ENV_MAX_ARTIFACTS) {
            s_expect_ok(bytes, &env);
            assert_int_equal(env.n_artifacts, n);
            assert_true(env.artifacts[n - 1].id == n - 1);
        } else {
            s_expect_fail(bytes, CD_ETOOBIG);
        }
    }
    //  The top-level map: at most CD_ENV_MAX_KEYS keys.
    for (uint32_t n = CD_ENV_MAX_KEYS; n <= CD_ENV_MAX_KEYS + 1; n++) {
        cd_pack_reset(pk);
        cd_pack_map(pk, n);
        for (int f = F_V; f <= F_TO; f++) {
            cd_pack_cstr(pk, s_names[f]);
            s_pack_default(pk, f);
        }
        for (uint32_t i = 5; i < n; i++) {
            char key[16];
            snprintf(key, sizeof key, "x%u", i);
            cd_pack_cstr(pk, key);
            cd_pack_nil(pk);
        }
        if (n == CD_ENV_MAX_KEYS) {
            s_expect_ok(cd_pack_bytes(pk), &env);
        } else {
            s_expect_fail(cd_pack_bytes(pk), CD_ETOOBIG);
        }
    }
    cd_pack_destroy(&val);
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_truncated_every_length(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    uint8_t payload[64] = {0};
    cd_envelope_t in, out;
    for (int variant = 0; variant < 3; variant++) {
        s_full_env(&in, payload);
        if (variant == 1) {
            in.payload_type = CD_PAYLOAD_MAP;
            in.payload = s_map_payload(pk);
        } else if (variant == 2) {
            in.payload_in_frame = true;
        }
        size_t size;
        uint8_t *bytes = s_encode_copy(&in, &size);
        for (size_t len = 0; len < size; len++) {
            //  A fresh allocation of exactly len bytes, so that ASan sees any
            //  read past the end.
            uint8_t *prefix = malloc(len ? len : 1);
            memcpy(prefix, bytes, len);
            const char *why = NULL;
            int rc = s_decode(len ? prefix : NULL, len, &out, &why);
            assert_true(rc < 0);
            assert_non_null(why);
            //  Wherever the cut falls, the map still owes entries: the
            //  answer is "truncated", never a misreading of what is there.
            assert_int_equal(rc, CD_ETRUNC);
            assert_int_equal(cd_msgpack_validate(prefix, len, &why), CD_ETRUNC);
            cd_kind_t kind;
            cd_str_t to;
            (void)cd_envelope_peek_route(prefix, len, &kind, &to);
            free(prefix);
        }
        assert_int_equal(s_decode(bytes, size, &out, NULL), 0);
        free(bytes);
    }
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_huge_declared_lengths(void **state)
{
    //  5-13 byte messages that declare ~4 GB: refused at once, no allocation
    //  (s_decode checks), and quickly.
    const struct {
        cd_bin_t bytes; //  the message
        int rc;         //  expected result
    } cases[] = {
        {S_RAW(0xdf, 0xff, 0xff, 0xff, 0xff), CD_ETOOBIG},                     //  map32 top
        {S_RAW(0xdf, 0x00, 0x00, 0x00, 0x40), CD_ETRUNC},                      //  64 keys, 5 B
        {S_RAW(0x81, 0xa1, 'v', 0xdb, 0xff, 0xff, 0xff, 0xff), CD_ETOOBIG},    //  str32
        {S_RAW(0x81, 0xa1, 'x', 0xc6, 0xff, 0xff, 0xff, 0xff), CD_ETOOBIG},    //  bin32
        {S_RAW(0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff), CD_ETOOBIG},    //  array32
        {S_RAW(0x81, 0xa1, 'x', 0xdf, 0xff, 0xff, 0xff, 0xff), CD_ETOOBIG},    //  map32
        {S_RAW(0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 1), CD_ETOOBIG}, //  ext32
        {S_RAW(0x81, 0xa1, 'x', 0xdd, 0x00, 0x01, 0x00, 0x00), CD_ETRUNC},     //  65536 in 8 B
        {S_RAW(0x81, 0xa1, 'x', 0xdb, 0x00, 0xff, 0xff, 0xff), CD_ETRUNC},     //  16 MB - 1 str
        {S_RAW(0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xc6, 0xff, 0xff, 0xff, 0xff),
         CD_ETOOBIG},
        {S_RAW(0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xdf, 0xff, 0xff, 0xff, 0xff),
         CD_ETOOBIG},
        {S_RAW(0x81, 0xa7, 'h', 'e', 'a', 'd', 'e', 'r', 's', 0xdf, 0xff, 0xff, 0xff, 0xff),
         CD_ETOOBIG},
        {S_RAW(0x81, 0xa9, 'a', 'r', 't', 'i', 'f', 'a', 'c', 't', 's', 0xdd, 0xff, 0xff, 0xff,
               0xff),
         CD_ETOOBIG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double t0 = s_now_ms();
        s_expect_fail(cases[i].bytes, cases[i].rc);
        cd_kind_t kind;
        cd_str_t to;
        assert_true(cd_envelope_peek_route(cases[i].bytes.ptr, cases[i].bytes.len, &kind, &to) < 0);
        assert_true(s_now_ms() - t0 < 50.0);
    }
    //  The same heads as bare values for cd_msgpack_validate.
    const cd_bin_t bare[] = {
        S_RAW(0xdb, 0xff, 0xff, 0xff, 0xff),       S_RAW(0xc6, 0xff, 0xff, 0xff, 0xff),
        S_RAW(0xdd, 0xff, 0xff, 0xff, 0xff),       S_RAW(0xdf, 0xff, 0xff, 0xff, 0xff),
        S_RAW(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01),
    };
    for (size_t i = 0; i < sizeof bare / sizeof bare[0]; i++) {
        const char *why = NULL;
        size_t before = s_mallocs;
        assert_int_equal(cd_msgpack_validate(bare[i].ptr, bare[i].len, &why), CD_ETOOBIG);
        assert_int_equal(s_mallocs, before);
        assert_non_null(why);
    }
}

static void
test_envelope_decode_allocates_nothing(void **state)
{
    if (!s_counting) {
        skip();
    }
    //  The hook sees allocations (so s_decode's checks mean something)...
    size_t before = s_mallocs;
    free(malloc(16));
    assert_true(s_mallocs > before);
    //  ...and a whole decode of a full envelope, a map payload and a refused
    //  4 GB declaration make none.
    cd_pack_t *pk = cd_pack_new();
    uint8_t payload[64] = {0};
    cd_envelope_t env, out;
    s_full_env(&env, payload);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = s_map_payload(pk);
    size_t size;
    uint8_t *bytes = s_encode_copy(&env, &size);
    before = s_mallocs;
    assert_int_equal(cd_envelope_decode(bytes, size, &out, NULL), 0);
    assert_int_equal(cd_msgpack_validate(out.payload.ptr, out.payload.len, NULL), 0);
    cd_bin_t v;
    assert_int_equal(cd_msgpack_map_find(out.payload, "big", &v), 0);
    const uint8_t huge[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(cd_envelope_decode(huge, sizeof huge, &out, NULL), CD_ETOOBIG);
    assert_int_equal(s_mallocs, before);
    free(bytes);
    cd_pack_destroy(&pk);
}

//  n nested arrays around a nil, inside a one-key map: depth n + 1.
static cd_bin_t
s_nested(cd_pack_t *pk, int arrays)
{
    cd_pack_reset(pk);
    cd_pack_map(pk, 1);
    cd_pack_cstr(pk, "k");
    for (int i = 0; i < arrays; i++) {
        cd_pack_array(pk, 1);
    }
    cd_pack_nil(pk);
    return cd_pack_bytes(pk);
}

static void
test_envelope_decode_depth(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_pack_t *val = cd_pack_new();
    cd_envelope_t env;
    //  The payload map is level 1: 31 arrays inside reach the limit.
    s_expect_ok(s_build_replace(pk, F_PAYLOAD, s_nested(val, CD_ENV_MAX_DEPTH - 1)), &env);
    s_expect_fail(s_build_replace(pk, F_PAYLOAD, s_nested(val, CD_ENV_MAX_DEPTH)), CD_EDEPTH);
    //  Empty containers count too.
    cd_bin_t deep = s_nested(val, CD_ENV_MAX_DEPTH);
    uint8_t *copy = malloc(deep.len);
    memcpy(copy, deep.ptr, deep.len);
    copy[deep.len - 2] = 0x90; //  the innermost [nil] becomes []
    s_expect_fail(s_build_replace(pk, F_PAYLOAD, (cd_bin_t){copy, deep.len - 1}), CD_EDEPTH);
    free(copy);
    //  Unknown top-level values are held to the same limit.
    edit_t e = {.omit = -1, .replace = -1, .extra = {"x-deep"}};
    e.extra_raw[0] = s_nested(val, CD_ENV_MAX_DEPTH);
    s_expect_fail(s_build(pk, &e), CD_EDEPTH);
    e.extra_raw[0] = s_nested(val, CD_ENV_MAX_DEPTH - 1);
    s_expect_ok(s_build(pk, &e), &env);
    //  cd_msgpack_validate: a million levels end at the limit, not the stack.
    size_t n = 1000000;
    uint8_t *tower = malloc(n + 1);
    memset(tower, 0x91, n);
    tower[n] = 0xc0;
    const char *why = NULL;
    assert_int_equal(cd_msgpack_validate(tower, n + 1, &why), CD_EDEPTH);
    assert_int_equal(cd_msgpack_validate(tower + n - CD_ENV_MAX_DEPTH, CD_ENV_MAX_DEPTH + 1, &why),
                     0);
    assert_int_equal(
        cd_msgpack_validate(tower + n - CD_ENV_MAX_DEPTH - 1, CD_ENV_MAX_DEPTH + 2, &why),
        CD_EDEPTH);
    free(tower);
    cd_pack_destroy(&val);
    cd_pack_destroy(&pk);
}

static void
test_envelope_decode_too_many_elements(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_pack_t *val = cd_pack_new();
    cd_envelope_t env;
    for (uint32_t n = CD_ENV_MAX_ELEMS; n <= CD_ENV_MAX_ELEMS + 1; n++) {
        cd_pack_reset(val);
        cd_pack_map(val, 1);
        cd_pack_cstr(val, "list");
        cd_pack_array(val, n);
        for (uint32_t i = 0; i < n; i++) {
            cd_pack_uint(val, i & 0x7f);
        }
        cd_bin_t bytes = s_build_replace(pk, F_PAYLOAD, cd_pack_bytes(val));
        if (n == CD_ENV_MAX_ELEMS) {
            s_expect_ok(bytes, &env);
        } else {
            s_expect_fail(bytes, CD_ETOOBIG);
        }
    }
    //  A map counts its entries (pairs), not keys + values.
    cd_pack_reset(val);
    cd_pack_map(val, CD_ENV_MAX_ELEMS + 1);
    for (uint32_t i = 0; i < CD_ENV_MAX_ELEMS + 1; i++) {
        cd_pack_uint(val, i);
        cd_pack_nil(val);
    }
    s_expect_fail(s_build_replace(pk, F_PAYLOAD, cd_pack_bytes(val)), CD_ETOOBIG);
    cd_pack_destroy(&val);
    cd_pack_destroy(&pk);
}

//  -------------------------------------------------------------------------
//  Cross-checks with msgpack-c

static void
test_envelope_cross_check_msgpack_unpack(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    uint8_t payload[64];
    for (int i = 0; i < 64; i++) {
        payload[i] = (uint8_t)i;
    }
    for (int variant = 0; variant < 2; variant++) {
        cd_envelope_t env;
        s_full_env(&env, payload);
        if (variant == 1) {
            env.payload_type = CD_PAYLOAD_MAP;
            env.payload = s_map_payload(pk);
        }
        size_t size;
        uint8_t *bytes = s_encode_copy(&env, &size);
        //  Our bytes, their unpacker (trusted input here: we made it).
        msgpack_unpacked msg;
        msgpack_unpacked_init(&msg);
        size_t off = 0;
        assert_int_equal(msgpack_unpack_next(&msg, (const char *)bytes, size, &off),
                         MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(off, size);
        msgpack_object top = msg.data;
        assert_int_equal(top.type, MSGPACK_OBJECT_MAP);
        assert_int_equal(top.via.map.size, 14);
        int found = 0;
        for (uint32_t i = 0; i < top.via.map.size; i++) {
            msgpack_object k = top.via.map.ptr[i].key;
            msgpack_object v = top.via.map.ptr[i].val;
            assert_int_equal(k.type, MSGPACK_OBJECT_STR);
            cd_str_t key = {k.via.str.ptr, k.via.str.size};
            if (cd_str_eq(key, "v")) {
                assert_int_equal(v.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
                assert_int_equal(v.via.u64, 1);
                found++;
            } else if (cd_str_eq(key, "id")) {
                assert_int_equal(v.type, MSGPACK_OBJECT_BIN);
                assert_int_equal(v.via.bin.size, 16);
                assert_memory_equal(v.via.bin.ptr, s_id, 16);
                found++;
            } else if (cd_str_eq(key, "kind")) {
                assert_int_equal(v.type, MSGPACK_OBJECT_STR);
                assert_true(cd_str_eq((cd_str_t){v.via.str.ptr, v.via.str.size}, "handoff"));
                found++;
            } else if (cd_str_eq(key, "task_id")) {
                assert_int_equal(v.via.u64, 1234567890123);
                found++;
            } else if (cd_str_eq(key, "headers")) {
                assert_int_equal(v.type, MSGPACK_OBJECT_MAP);
                assert_int_equal(v.via.map.size, 3);
                found++;
            } else if (cd_str_eq(key, "artifacts")) {
                assert_int_equal(v.type, MSGPACK_OBJECT_ARRAY);
                assert_int_equal(v.via.array.size, 2);
                msgpack_object a1 = v.via.array.ptr[1];
                assert_int_equal(a1.type, MSGPACK_OBJECT_MAP);
                assert_int_equal(a1.via.map.ptr[0].val.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
                assert_true(a1.via.map.ptr[0].val.via.i64 == -7);
                assert_true(a1.via.map.ptr[2].val.via.u64 == UINT64_MAX);
                found++;
            } else if (cd_str_eq(key, "payload")) {
                if (variant == 0) {
                    assert_int_equal(v.type, MSGPACK_OBJECT_BIN);
                    assert_int_equal(v.via.bin.size, 64);
                    assert_memory_equal(v.via.bin.ptr, payload, 64);
                } else {
                    assert_int_equal(v.type, MSGPACK_OBJECT_MAP);
                    assert_int_equal(v.via.map.size, 7);
                }
                found++;
            }
        }
        assert_int_equal(found, 7);
        msgpack_unpacked_destroy(&msg);
        free(bytes);
    }
    cd_pack_destroy(&pk);
}

static void
test_envelope_cross_check_msgpack_packer(void **state)
{
    //  An envelope written by msgpack-c's packer with non-minimal widths,
    //  keys in another order, unknown keys (nested, ext, float), decoded by us.
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 13);
    msgpack_pack_str_with_body(&pk, "payload", 7);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "when", 4);
    msgpack_pack_ext_with_body(&pk, "\x00\x00\x00\x01", 4, -1); //  a timestamp
    msgpack_pack_str_with_body(&pk, "deep", 4);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_float(&pk, 1.5f);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_fix_int8(&pk, -3);
    msgpack_pack_v4raw(&pk, 2); //  old raw = str
    msgpack_pack_v4raw_body(&pk, "ab", 2);
    msgpack_pack_str_with_body(&pk, "to", 2);
    msgpack_pack_str_with_body(&pk, "agent/x", 7);
    msgpack_pack_str_with_body(&pk, "x-future", 8);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_double(&pk, 2.0);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_fix_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "result", 6);
    msgpack_pack_str_with_body(&pk, "from", 4);
    msgpack_pack_str_with_body(&pk, "node/1/agent/y", 14);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_bin_with_body(&pk, s_id, 16);
    msgpack_pack_str_with_body(&pk, "task_id", 7);
    msgpack_pack_fix_int64(&pk, 77);
    msgpack_pack_str_with_body(&pk, "attempt", 7);
    msgpack_pack_fix_uint16(&pk, 2);
    msgpack_pack_str_with_body(&pk, "ts", 2);
    msgpack_pack_fix_int32(&pk, -5);
    msgpack_pack_str_with_body(&pk, "deadline", 8);
    msgpack_pack_fix_uint32(&pk, 9);
    msgpack_pack_str_with_body(&pk, "x-ext", 5);
    msgpack_pack_ext_with_body(&pk, "0123456789abcdef0123", 20, 5); //  ext8
    msgpack_pack_str_with_body(&pk, "headers", 7);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, "b", 1);

    cd_envelope_t env;
    s_expect_ok((cd_bin_t){(const uint8_t *)sbuf.data, (uint32_t)sbuf.size}, &env);
    assert_int_equal(env.kind, CD_KIND_RESULT);
    assert_true(cd_str_eq(env.to, "agent/x"));
    assert_true(cd_str_eq(env.from, "node/1/agent/y"));
    assert_memory_equal(env.id, s_id, 16);
    assert_true(env.task_id == 77);
    assert_int_equal(env.attempt, 2);
    assert_true(env.ts == -5);
    assert_true(env.deadline == 9);
    assert_int_equal(env.n_headers, 1);
    assert_true(cd_str_eq(env.headers[0].value, "b"));
    assert_int_equal(env.payload_type, CD_PAYLOAD_MAP);
    assert_ptr_equal(env.payload.ptr, (const uint8_t *)sbuf.data + 9);
    cd_bin_t when;
    assert_int_equal(cd_msgpack_map_find(env.payload, "when", &when), 0);
    assert_int_equal(when.len, 6); //  fixext 4
    assert_int_equal(cd_msgpack_read_int(when, &(int64_t){0}), CD_EPROTO);
    static const uint8_t zero[16];
    assert_memory_equal(env.trace_id, zero, 16);
    assert_memory_equal(env.parent_id, zero, 16);

    cd_kind_t kind;
    cd_str_t to;
    assert_int_equal(cd_envelope_peek_route((const uint8_t *)sbuf.data, sbuf.size, &kind, &to), 0);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_true(cd_str_eq(to, "agent/x"));
    msgpack_sbuffer_destroy(&sbuf);
}

//  -------------------------------------------------------------------------
//  Route peek, validate, names, ids, the pack/read toolkit

static void
test_envelope_peek_route(void **state)
{
    uint8_t payload[64] = {0};
    cd_envelope_t env;
    s_full_env(&env, payload);
    size_t size;
    uint8_t *bytes = s_encode_copy(&env, &size);
    cd_kind_t kind = CD_KIND_NONE;
    cd_str_t to = {0};
    assert_int_equal(cd_envelope_peek_route(bytes, size, &kind, &to), 0);
    assert_int_equal(kind, CD_KIND_HANDOFF);
    assert_true(cd_str_eq(to, "agent/review"));
    //  It stops at kind and to: what follows is not read.
    size_t routed = (size_t)((const uint8_t *)to.ptr + to.len - bytes);
    assert_int_equal(cd_envelope_peek_route(bytes, routed, &kind, &to), 0);
    free(bytes);

    cd_pack_t *pk = cd_pack_new();
    edit_t no_to = {.omit = F_TO, .replace = -1};
    cd_bin_t b = s_build(pk, &no_to);
    assert_int_equal(cd_envelope_peek_route(b.ptr, b.len, &kind, &to), CD_EINVAL);
    b = s_build_replace(pk, F_KIND, S_RAW(0xa3, 'f', 'o', 'o'));
    assert_int_equal(cd_envelope_peek_route(b.ptr, b.len, &kind, &to), CD_EPROTO);
    b = s_build_replace(pk, F_TO, S_RAW(0x01));
    assert_int_equal(cd_envelope_peek_route(b.ptr, b.len, &kind, &to), CD_EPROTO);
    b = s_build_replace(pk, F_ID, S_RAW(0xc6, 0xff, 0xff, 0xff, 0xff));
    assert_int_equal(cd_envelope_peek_route(b.ptr, b.len, &kind, &to), CD_ETOOBIG);
    assert_int_equal(cd_envelope_peek_route(NULL, 0, &kind, &to), CD_ETRUNC);
    assert_int_equal(cd_envelope_peek_route((const uint8_t *)"\x91\x01", 2, &kind, &to), CD_EPROTO);
    cd_pack_destroy(&pk);
}

static void
test_envelope_validate(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_bin_t map = s_map_payload(pk);
    const char *why = NULL;
    assert_int_equal(cd_msgpack_validate(map.ptr, map.len, &why), 0);
    assert_int_equal(cd_msgpack_validate(map.ptr, map.len - 1, &why), CD_ETRUNC);
    assert_non_null(why);
    //  Every scalar family, alone.
    const cd_bin_t ok[] = {
        S_RAW(0x00),
        S_RAW(0x7f),
        S_RAW(0xe0),
        S_RAW(0xc0),
        S_RAW(0xc2),
        S_RAW(0xc3),
        S_RAW(0xcc, 1),
        S_RAW(0xcd, 1, 2),
        S_RAW(0xce, 1, 2, 3, 4),
        S_RAW(0xcf, 1, 2, 3, 4, 5, 6, 7, 8),
        S_RAW(0xd0, 1),
        S_RAW(0xd1, 1, 2),
        S_RAW(0xd2, 1, 2, 3, 4),
        S_RAW(0xd3, 1, 2, 3, 4, 5, 6, 7, 8),
        S_RAW(0xca, 1, 2, 3, 4),
        S_RAW(0xcb, 1, 2, 3, 4, 5, 6, 7, 8),
        S_RAW(0xa1, 'a'),
        S_RAW(0xd9, 1, 'a'),
        S_RAW(0xda, 0, 1, 'a'),
        S_RAW(0xdb, 0, 0, 0, 1, 'a'),
        S_RAW(0xc4, 1, 'a'),
        S_RAW(0xc5, 0, 1, 'a'),
        S_RAW(0xc6, 0, 0, 0, 1, 'a'),
        S_RAW(0x91, 0x01),
        S_RAW(0xdc, 0, 1, 0x01),
        S_RAW(0xdd, 0, 0, 0, 1, 0x01),
        S_RAW(0x81, 0x01, 0x02),
        S_RAW(0xde, 0, 1, 0x01, 0x02),
        S_RAW(0xdf, 0, 0, 0, 1, 0x01, 0x02),
        S_RAW(0xd4, 1, 'a'),
        S_RAW(0xd5, 1, 'a', 'b'),
        S_RAW(0xd6, 1, 1, 2, 3, 4),
        S_RAW(0xd7, 1, 1, 2, 3, 4, 5, 6, 7, 8),
        S_RAW(0xd8, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
        S_RAW(0xc7, 1, 5, 'a'),
        S_RAW(0xc8, 0, 1, 5, 'a'),
        S_RAW(0xc9, 0, 0, 0, 1, 5, 'a'),
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(cd_msgpack_validate(ok[i].ptr, ok[i].len, &why), 0);
        //  Every shorter prefix is truncated; one more byte is trailing.
        for (uint32_t len = 0; len < ok[i].len; len++) {
            assert_int_equal(cd_msgpack_validate(ok[i].ptr, len, &why), CD_ETRUNC);
        }
        uint8_t more[32];
        memcpy(more, ok[i].ptr, ok[i].len);
        more[ok[i].len] = 0;
        assert_int_equal(cd_msgpack_validate(more, ok[i].len + 1, &why), CD_EPROTO);
    }
    assert_int_equal(cd_msgpack_validate((const uint8_t *)"\xc1", 1, &why), CD_EPROTO);
    assert_int_equal(cd_msgpack_validate(NULL, 0, NULL), CD_ETRUNC);
    cd_pack_destroy(&pk);
}

static void
test_envelope_kind_names(void **state)
{
    for (int k = CD_KIND_TASK; k < CD_KIND_COUNT_; k++) {
        const char *name = cd_kind_name((cd_kind_t)k);
        assert_non_null(name);
        assert_int_equal(cd_kind_from_str(cd_str(name)), k);
    }
    assert_string_equal(cd_kind_name(CD_KIND_HITL_RESPONSE), "hitl_response");
    assert_null(cd_kind_name(CD_KIND_NONE));
    assert_null(cd_kind_name(CD_KIND_COUNT_));
    assert_null(cd_kind_name((cd_kind_t)-1));
    assert_int_equal(cd_kind_from_str(cd_str("tasks")), CD_KIND_NONE);
    assert_int_equal(cd_kind_from_str(cd_str("Task")), CD_KIND_NONE);
    assert_int_equal(cd_kind_from_str(cd_str("")), CD_KIND_NONE);
    assert_int_equal(cd_kind_from_str(cd_str(NULL)), CD_KIND_NONE);
    assert_int_equal(cd_kind_from_str((cd_str_t){"task", 3}), CD_KIND_NONE);
}

static void
test_envelope_header_lookup(void **state)
{
    cd_envelope_t env;
    memset(&env, 0, sizeof env);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("stats")};
    env.headers[1] = (cd_env_header_t){cd_str("empty"), cd_str("")};
    env.headers[2] = (cd_env_header_t){cd_str("op"), cd_str("second")};
    env.n_headers = 3;
    cd_str_t value = {NULL, 0};
    assert_true(cd_envelope_header(&env, "op", &value));
    assert_true(cd_str_eq(value, "stats")); //  the first of a repeated name
    assert_true(cd_envelope_header(&env, "empty", &value));
    assert_int_equal(value.len, 0);
    assert_true(cd_envelope_header(&env, "empty", NULL));
    value = (cd_str_t){NULL, 0};
    assert_false(cd_envelope_header(&env, "missing", &value));
    assert_null(value.ptr); //  untouched when absent
    env.n_headers = 0;
    assert_false(cd_envelope_header(&env, "op", NULL));
}

static void
test_envelope_str_helpers(void **state)
{
    cd_str_t s = cd_str("abc");
    assert_int_equal(s.len, 3);
    assert_true(cd_str_eq(s, "abc"));
    assert_false(cd_str_eq(s, "abcd"));
    assert_false(cd_str_eq(s, "abd"));
    cd_str_t none = cd_str(NULL);
    assert_null(none.ptr);
    assert_int_equal(none.len, 0);
    assert_true(cd_str_eq(none, ""));
    assert_true(cd_str_eq(none, NULL));
    assert_false(cd_str_eq(s, NULL));
}

static int
s_cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, CD_ENV_UUID_SIZE);
}

static void
test_envelope_idgen_unique(void **state)
{
    enum { N = 20000 };
    uint8_t(*ids)[CD_ENV_UUID_SIZE] = malloc(2 * N * CD_ENV_UUID_SIZE);
    cd_idgen_t a, b;
    cd_idgen_init(&a);
    cd_idgen_init(&b);
    assert_memory_not_equal(a.prefix, b.prefix, 8);
    for (int i = 0; i < N; i++) {
        cd_idgen_next(&a, ids[i]);
        cd_idgen_next(&b, ids[N + i]);
    }
    //  Within one generator, ids sort in creation order.
    for (int i = 1; i < N; i++) {
        assert_true(memcmp(ids[i - 1], ids[i], CD_ENV_UUID_SIZE) < 0);
    }
    qsort(ids, 2 * N, CD_ENV_UUID_SIZE, s_cmp_id);
    for (int i = 1; i < 2 * N; i++) {
        assert_true(memcmp(ids[i - 1], ids[i], CD_ENV_UUID_SIZE) != 0);
    }
    free(ids);
}

static void
test_envelope_map_find_and_read(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_bin_t map = s_map_payload(pk);
    cd_bin_t v;
    cd_str_t s;
    int64_t i;
    bool b;
    assert_int_equal(cd_msgpack_map_find(map, "text", &v), 0);
    assert_int_equal(cd_msgpack_read_str(v, &s), 0);
    assert_true(cd_str_eq(s, "hello, world"));
    assert_int_equal(cd_msgpack_read_int(v, &i), CD_EPROTO);
    assert_int_equal(cd_msgpack_read_bool(v, &b), CD_EPROTO);
    assert_int_equal(cd_msgpack_map_find(map, "n", &v), 0);
    assert_int_equal(cd_msgpack_read_int(v, &i), 0);
    assert_true(i == -300);
    assert_int_equal(cd_msgpack_read_str(v, &s), CD_EPROTO);
    assert_int_equal(cd_msgpack_map_find(map, "ok", &v), 0);
    assert_int_equal(cd_msgpack_read_bool(v, &b), 0);
    assert_true(b);
    //  A container value: its whole encoding.
    assert_int_equal(cd_msgpack_map_find(map, "list", &v), 0);
    assert_int_equal(cd_msgpack_validate(v.ptr, v.len, NULL), 0);
    assert_int_equal(v.ptr[0], 0x93);
    assert_int_equal(cd_msgpack_read_int(v, &i), CD_EPROTO);
    //  The key after a non-string key is still found.
    assert_int_equal(cd_msgpack_map_find(map, "big", &v), 0);
    assert_int_equal(cd_msgpack_read_int(v, &i), CD_EPROTO); //  UINT64_MAX > INT64_MAX
    assert_int_equal(cd_msgpack_map_find(map, "seven", &v), CD_ENOTFOUND);
    assert_int_equal(cd_msgpack_map_find(map, "", &v), CD_ENOTFOUND);
    //  Not a map; truncated map; NULL view.
    assert_int_equal(cd_msgpack_map_find((cd_bin_t){(const uint8_t *)"\x91\x01", 2}, "a", &v),
                     CD_EPROTO);
    assert_int_equal(cd_msgpack_map_find((cd_bin_t){map.ptr, map.len - 1}, "big", &v), CD_EPROTO);
    assert_int_equal(cd_msgpack_map_find((cd_bin_t){NULL, 0}, "a", &v), CD_EPROTO);
    //  Readers want exactly one value.
    assert_int_equal(cd_msgpack_read_int((cd_bin_t){(const uint8_t *)"\x01\x02", 2}, &i),
                     CD_EPROTO);
    assert_int_equal(cd_msgpack_read_int((cd_bin_t){(const uint8_t *)"\xd0\xfe", 2}, &i), 0);
    assert_true(i == -2);
    assert_int_equal(cd_msgpack_read_int((cd_bin_t){(const uint8_t *)"\xcc\xfe", 2}, &i), 0);
    assert_true(i == 254);
    assert_int_equal(cd_msgpack_read_str((cd_bin_t){(const uint8_t *)"\xa3"
                                                                     "ab",
                                                    3},
                                         &s),
                     CD_EPROTO);
    assert_int_equal(cd_msgpack_read_bool((cd_bin_t){NULL, 0}, &b), CD_EPROTO);
    cd_pack_destroy(&pk);
}

static void
test_envelope_pack_writer(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_pack_array(pk, 9);
    cd_pack_int(pk, INT64_MIN);
    cd_pack_uint(pk, UINT64_MAX);
    cd_pack_bool(pk, false);
    cd_pack_nil(pk);
    cd_pack_double(pk, -0.25);
    cd_pack_str(pk, "abc", 3);
    cd_pack_bin(pk, NULL, 0);
    cd_pack_map(pk, 0);
    cd_pack_raw(pk, "\x92\x01\x02", 3);
    cd_bin_t bytes = cd_pack_bytes(pk);
    assert_int_equal(cd_msgpack_validate(bytes.ptr, bytes.len, NULL), 0);
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&msg, (const char *)bytes.ptr, bytes.len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, bytes.len);
    msgpack_object *a = msg.data.via.array.ptr;
    assert_int_equal(msg.data.via.array.size, 9);
    assert_true(a[0].via.i64 == INT64_MIN);
    assert_true(a[1].via.u64 == UINT64_MAX);
    assert_int_equal(a[2].type, MSGPACK_OBJECT_BOOLEAN);
    assert_int_equal(a[3].type, MSGPACK_OBJECT_NIL);
    assert_true(a[4].via.f64 == -0.25);
    assert_int_equal(a[5].type, MSGPACK_OBJECT_STR);
    assert_int_equal(a[6].type, MSGPACK_OBJECT_BIN);
    assert_int_equal(a[7].type, MSGPACK_OBJECT_MAP);
    assert_int_equal(a[8].via.array.size, 2);
    msgpack_unpacked_destroy(&msg);
    cd_pack_reset(pk);
    assert_int_equal(cd_pack_bytes(pk).len, 0);
    cd_pack_destroy(&pk);
}

static void
test_envelope_destroy_twice(void **state)
{
    cd_envbuf_t *buf = cd_envbuf_new();
    cd_envbuf_destroy(&buf);
    assert_null(buf);
    cd_envbuf_destroy(&buf);
    cd_envbuf_destroy(NULL);
    cd_pack_t *pk = cd_pack_new();
    cd_pack_cstr(pk, "x");
    cd_pack_destroy(&pk);
    assert_null(pk);
    cd_pack_destroy(&pk);
    cd_pack_destroy(NULL);
}

//  -------------------------------------------------------------------------
//  Mutation loops: must never crash; what decodes must re-encode and
//  decode to the same envelope.

static void
s_check_mutant(const uint8_t *data, size_t size, cd_envbuf_t *buf)
{
    cd_envelope_t env, again;
    const char *why = NULL;
    int rc = s_decode(data, size, &env, &why);
    cd_kind_t kind;
    cd_str_t to;
    int peek = cd_envelope_peek_route(data, size, &kind, &to);
    (void)cd_msgpack_validate(data, size, &why);
    if (rc != 0) {
        assert_non_null(why);
        return;
    }
    assert_int_equal(peek, 0);
    assert_int_equal(kind, env.kind);
    assert_true(to.ptr == env.to.ptr && to.len == env.to.len);
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    assert_int_equal(s_decode(cd_envbuf_data(buf), cd_envbuf_size(buf), &again, &why), 0);
    s_assert_env_eq(&env, &again);
}

static void
test_envelope_mutation_flip_bytes(void **state)
{
    cd_pack_t *pk = cd_pack_new();
    cd_envbuf_t *buf = cd_envbuf_new();
    uint8_t payload[64] = {0};
    cd_envelope_t env;
    s_full_env(&env, payload);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = s_map_payload(pk);
    size_t size;
    uint8_t *orig = s_encode_copy(&env, &size);
    uint8_t *work = malloc(size);
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    int decoded = 0;
    for (int iter = 0; iter < 100000; iter++) {
        memcpy(work, orig, size);
        int flips = 1 + (int)(s_rand(&seed) % 4);
        for (int f = 0; f < flips; f++) {
            size_t at = s_rand(&seed) % size;
            work[at] ^= (uint8_t)(1u << (s_rand(&seed) % 8));
        }
        size_t len = (s_rand(&seed) % 8 == 0) ? s_rand(&seed) % (size + 1) : size;
        cd_envelope_t probe;
        if (cd_envelope_decode(work, len, &probe, NULL) == 0) {
            decoded++;
        }
        s_check_mutant(work, len, buf);
    }
    //  Some flips land in values (ids, payload bytes) and still decode.
    assert_true(decoded > 0);
    free(work);
    free(orig);
    cd_envbuf_destroy(&buf);
    cd_pack_destroy(&pk);
}

static void
test_envelope_mutation_interesting_bytes(void **state)
{
    //  Overwrite bytes with heads that declare sizes, nesting or nothing.
    static const uint8_t heads[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                    0xc1, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb,
                                    0xcf, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd,
                                    0xde, 0xdf, 0xe0, 0xff, 0x01, 0x10};
    cd_pack_t *pk = cd_pack_new();
    cd_envbuf_t *buf = cd_envbuf_new();
    uint8_t payload[64];
    memset(payload, 0xdd, sizeof payload);
    cd_envelope_t env;
    s_full_env(&env, payload);
    size_t size;
    uint8_t *orig = s_encode_copy(&env, &size);
    uint8_t *work = malloc(size + 16);
    uint64_t seed = 42;
    for (int iter = 0; iter < 100000; iter++) {
        memcpy(work, orig, size);
        size_t len = size;
        int edits = 1 + (int)(s_rand(&seed) % 3);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t at = s_rand(&seed) % len;
            switch (s_rand(&seed) % 4) {
            case 0: //  a type head
                work[at] = heads[s_rand(&seed) % sizeof heads];
                break;
            case 1: //  a length byte at its extreme
                work[at] = (s_rand(&seed) & 1) ? 0xff : 0x00;
                break;
            case 2: //  delete one byte
                memmove(work + at, work + at + 1, len - at - 1);
                len--;
                break;
            default: //  insert one byte
                if (len < size + 16) {
                    memmove(work + at + 1, work + at, len - at);
                    work[at] = heads[s_rand(&seed) % sizeof heads];
                    len++;
                }
                break;
            }
        }
        s_check_mutant(work, len, buf);
    }
    free(work);
    free(orig);
    cd_envbuf_destroy(&buf);
    cd_pack_destroy(&pk);
}

int
main(void)
{
    if (__sanitizer_install_malloc_and_free_hooks) {
        s_counting = __sanitizer_install_malloc_and_free_hooks(s_malloc_hook, s_free_hook) != 0;
    }
    if (!s_counting) {
        fprintf(stderr, "test_envelope: no sanitizer malloc hook; allocation checks are off\n");
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_round_trip_full_bin),
        cmocka_unit_test(test_envelope_round_trip_map_payload),
        cmocka_unit_test(test_envelope_round_trip_minimal),
        cmocka_unit_test(test_envelope_round_trip_extremes),
        cmocka_unit_test(test_envelope_payload_in_frame_attach),
        cmocka_unit_test(test_envelope_encode_reuses_buffer),
        cmocka_unit_test(test_envelope_encode_rejects_bad_input),
        cmocka_unit_test(test_envelope_encode_rejects_oversize),
        cmocka_unit_test(test_envelope_decode_wrong_type_per_key),
        cmocka_unit_test(test_envelope_decode_missing_required_key),
        cmocka_unit_test(test_envelope_decode_version),
        cmocka_unit_test(test_envelope_decode_bad_ids),
        cmocka_unit_test(test_envelope_decode_duplicate_key),
        cmocka_unit_test(test_envelope_decode_trailing_bytes),
        cmocka_unit_test(test_envelope_decode_value_ranges),
        cmocka_unit_test(test_envelope_decode_limits),
        cmocka_unit_test(test_envelope_decode_truncated_every_length),
        cmocka_unit_test(test_envelope_decode_huge_declared_lengths),
        cmocka_unit_test(test_envelope_decode_allocates_nothing),
        cmocka_unit_test(test_envelope_decode_depth),
        cmocka_unit_test(test_envelope_decode_too_many_elements),
        cmocka_unit_test(test_envelope_cross_check_msgpack_unpack),
        cmocka_unit_test(test_envelope_cross_check_msgpack_packer),
        cmocka_unit_test(test_envelope_peek_route),
        cmocka_unit_test(test_envelope_validate),
        cmocka_unit_test(test_envelope_kind_names),
        cmocka_unit_test(test_envelope_header_lookup),
        cmocka_unit_test(test_envelope_str_helpers),
        cmocka_unit_test(test_envelope_idgen_unique),
        cmocka_unit_test(test_envelope_map_find_and_read),
        cmocka_unit_test(test_envelope_pack_writer),
        cmocka_unit_test(test_envelope_destroy_twice),
        cmocka_unit_test(test_envelope_mutation_flip_bytes),
        cmocka_unit_test(test_envelope_mutation_interesting_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
