/*  fuzz_envelope: libFuzzer harness for the envelope codec.

    Each input is decoded. Whatever the result, cd_envelope_peek_route and
    cd_msgpack_validate run on it too. A decoded envelope must:
    - agree with peek_route on kind and to;
    - re-encode without error and decode again to identical fields (a map
      payload compared byte for byte);
    - have a map payload that validates, and whose keys the payload readers
      can walk;
    - when it announces a payload frame, accept or refuse the input itself as
      that frame, as cd_msgpack_validate would.
    Any disagreement aborts, which libFuzzer reports as a crash.

    Run with `make fuzz FUZZ_SECONDS=...`; seeds are in tests/fuzz/seeds. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cd_envelope.h"
#include "cd_error.h"

static cd_envbuf_t *s_buf; //  reused by every input, as a sender would

static void
s_require(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_envelope: %s\n", what);
        abort();
    }
}

static bool
s_view_eq(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void
s_require_same(const cd_envelope_t *a, const cd_envelope_t *b)
{
    s_require(memcmp(a->id, b->id, CD_ENV_UUID_SIZE) == 0, "id differs");
    s_require(a->kind == b->kind, "kind differs");
    s_require(s_view_eq(a->from.ptr, a->from.len, b->from.ptr, b->from.len), "from differs");
    s_require(s_view_eq(a->to.ptr, a->to.len, b->to.ptr, b->to.len), "to differs");
    s_require(a->task_id == b->task_id, "task_id differs");
    s_require(memcmp(a->trace_id, b->trace_id, CD_ENV_UUID_SIZE) == 0, "trace_id differs");
    s_require(memcmp(a->parent_id, b->parent_id, CD_ENV_UUID_SIZE) == 0, "parent_id differs");
    s_require(a->ts == b->ts, "ts differs");
    s_require(a->attempt == b->attempt, "attempt differs");
    s_require(a->deadline == b->deadline, "deadline differs");
    s_require(a->n_headers == b->n_headers, "n_headers differs");
    for (uint32_t i = 0; i < a->n_headers; i++) {
        const cd_env_header_t *x = &a->headers[i], *y = &b->headers[i];
        s_require(s_view_eq(x->key.ptr, x->key.len, y->key.ptr, y->key.len), "header key");
        s_require(s_view_eq(x->value.ptr, x->value.len, y->value.ptr, y->value.len),
                  "header value");
    }
    s_require(a->n_artifacts == b->n_artifacts, "n_artifacts differs");
    for (uint32_t i = 0; i < a->n_artifacts; i++) {
        const cd_env_artifact_t *x = &a->artifacts[i], *y = &b->artifacts[i];
        s_require(x->id == y->id && x->size == y->size, "artifact id/size");
        s_require(s_view_eq(x->name.ptr, x->name.len, y->name.ptr, y->name.len), "artifact name");
    }
    s_require(a->payload_type == b->payload_type, "payload_type differs");
    s_require(a->payload_in_frame == b->payload_in_frame, "payload_in_frame differs");
    s_require(s_view_eq(a->payload.ptr, a->payload.len, b->payload.ptr, b->payload.len),
              "payload bytes differ");
}

//  Walks a validated map payload with the readers.
static void
s_read_payload(cd_bin_t map)
{
    static const char *const keys[] = {"a", "text", "n", "ok", "list", ""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        cd_bin_t value;
        int rc = cd_msgpack_map_find(map, keys[i], &value);
        s_require(rc == 0 || rc == CD_ENOTFOUND, "map_find failed on a valid map");
        if (rc == 0) {
            s_require(cd_msgpack_validate(value.ptr, value.len, NULL) == 0, "found value invalid");
            cd_str_t s;
            int64_t n;
            bool b;
            int hits = (cd_msgpack_read_str(value, &s) == 0) +
                       (cd_msgpack_read_int(value, &n) == 0) +
                       (cd_msgpack_read_bool(value, &b) == 0);
            s_require(hits <= 1, "a value read as two types");
        }
    }
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    s_buf = cd_envbuf_new();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cd_envelope_t env;
    const char *why = NULL;
    int rc = cd_envelope_decode(data, size, &env, &why);
    cd_kind_t kind = CD_KIND_NONE;
    cd_str_t to = {0};
    int peek = cd_envelope_peek_route(data, size, &kind, &to);
    const char *vwhy = NULL;
    int valid = cd_msgpack_validate(data, size, &vwhy);
    s_require(valid == 0 || vwhy != NULL, "validate failed without a reason");
    if (rc != 0) {
        s_require(rc < 0 && why != NULL && why[0] != '\0', "decode failed without a reason");
        return 0;
    }
    s_require(peek == 0, "peek_route refused what decode accepted");
    s_require(kind == env.kind, "peek_route kind differs");
    s_require(to.ptr == env.to.ptr && to.len == env.to.len, "peek_route to differs");
    //  The envelope is one level deeper than its payload, so a payload at
    //  the depth limit makes the whole input too deep as a bare value.
    s_require(valid == 0 || valid == CD_EDEPTH, "decoded envelope is not valid msgpack");
    if (env.payload_type == CD_PAYLOAD_MAP && !env.payload_in_frame) {
        s_require(cd_msgpack_validate(env.payload.ptr, env.payload.len, NULL) == 0,
                  "map payload does not validate");
        s_read_payload(env.payload);
    }

    s_require(cd_envelope_encode(&env, s_buf) == 0, "re-encode failed");
    cd_envelope_t again;
    rc = cd_envelope_decode(cd_envbuf_data(s_buf), cd_envbuf_size(s_buf), &again, &why);
    s_require(rc == 0, "re-encoded envelope does not decode");
    s_require_same(&env, &again);
    s_require(cd_envbuf_size(s_buf) <= size, "re-encoding grew: the encoder is not minimal");

    if (env.payload_in_frame) {
        int arc = cd_envelope_attach_payload(&env, data, size, &why);
        if (env.payload_type == CD_PAYLOAD_BIN) {
            s_require(arc == 0, "bin frame refused");
        } else {
            bool is_map =
                size > 0 && ((data[0] & 0xf0) == 0x80 || data[0] == 0xde || data[0] == 0xdf);
            s_require((arc == 0) == (is_map && valid == 0), "map frame check disagrees");
        }
        if (arc == 0) {
            s_require(env.payload.ptr == data && env.payload.len == size, "frame view wrong");
        }
    }
    return 0;
}
