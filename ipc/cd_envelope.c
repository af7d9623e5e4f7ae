/*  cd_envelope: the handoff envelope codec, and the small msgpack toolkit the
    other layers use so that only ipc/ includes <msgpack.h>.

    Encoding goes through msgpack-c's packer into a msgpack_sbuffer that lives
    in a cd_envbuf_t and is reused from one message to the next. Before
    packing, the envelope is checked whole and an upper bound of its encoded
    size is computed; the buffer is grown to that bound once, so a failed
    encode leaves the previous bytes intact, a successful one reallocates at
    most once, and the packer's write callback is a bare append (no capacity
    check, no realloc path). Constant keys are appended pre-encoded.

    Decoding never runs msgpack-c (its unpacker reserves memory for declared
    sizes before checking that the bytes exist). Our reader walks the bytes
    once: s_next reads one value's head, checks a str/bin/ext length against
    CD_ENV_MAX_SIZE and the bytes left before exposing the body, and each
    caller checks a container's count against its own limit and against the
    bytes left (every entry needs at least one byte) before walking it. Nested
    values are walked by a loop with a stack of remaining counts, so nesting
    is bounded by CD_ENV_MAX_DEPTH and not by the C stack. Nothing is
    allocated; every decoded view points into the input. The field readers
    take the common heads (fixstr, fixmap, uint8..64, bin8) inline and fall
    back to s_next for everything else.

    Choices the wire format leaves open, made here:
    - Integers may use any width and either the uint or the int family
      (uint8 holding 5, int16 holding 7) as long as the value fits the field.
      A float, nil, bool or string where an integer belongs is CD_EPROTO.
    - ext values (fixext 1..16, ext8/16/32) are accepted inside payloads and
      inside unknown top-level values: their lengths are checked, their bytes
      are not interpreted (msgpack timestamps are ext -1).
    - Keys of maps inside a payload may be of any type, as msgpack allows;
      cd_msgpack_map_find matches str keys only.
    - str bytes are not checked to be UTF-8.
    - Top-level keys must be strings. A duplicate top-level key, known or
      unknown, is CD_EPROTO. Header names may repeat (they are a list).
    - Unknown keys inside an artifact are validated and skipped, like unknown
      top-level keys.
    - `from` and `to` must not be empty (an envelope to "" cannot be routed);
      encode and decode agree on every limit so that whatever decodes
      re-encodes.

    Interface: cd_envbuf_*, cd_kind_*, cd_str*, cd_envelope_encode,
    cd_envelope_decode, cd_envelope_attach_payload, cd_envelope_peek_route,
    cd_msgpack_validate, cd_idgen_*, cd_pack_*, cd_msgpack_map_find,
    cd_msgpack_read_*. */
#include "cd_envelope.h"
#include "cd_error.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack/pack.h>
#include <msgpack/sbuffer.h>
#include <sodium.h>

struct cd_envbuf {
    msgpack_sbuffer sbuf; //  encoded bytes; size 0 until the first encode
};

struct cd_pack {
    msgpack_sbuffer sbuf; //  bytes written since the last reset
};

static void
s_oom(const char *file, int line)
{
    fprintf(stderr, "cadre: out of memory at %s:%d\n", file, line);
    fflush(stderr);
    abort();
}

//  -------------------------------------------------------------------------
//  Kinds and string views

static const struct {
    const char *name; //  wire name
    uint8_t len;      //  strlen(name)
} s_kinds[CD_KIND_COUNT_] = {
    [CD_KIND_NONE] = {NULL, 0},
    [CD_KIND_TASK] = {"task", 4},
    [CD_KIND_HANDOFF] = {"handoff", 7},
    [CD_KIND_RESULT] = {"result", 6},
    [CD_KIND_ERROR] = {"error", 5},
    [CD_KIND_HITL_REQUEST] = {"hitl_request", 12},
    [CD_KIND_HITL_RESPONSE] = {"hitl_response", 13},
    [CD_KIND_EVENT] = {"event", 5},
    [CD_KIND_CONTROL] = {"control", 7},
    [CD_KIND_LOG] = {"log", 3},
};

const char *
cd_kind_name(cd_kind_t kind)
{
    //  Through unsigned so that a negative value read from a cast is caught.
    if ((unsigned)kind >= CD_KIND_COUNT_) {
        return NULL;
    }
    return s_kinds[kind].name;
}

static inline bool
s_mem_is(const char *ptr, uint32_t len, const char *lit, uint32_t lit_len)
{
    return len == lit_len && memcmp(ptr, lit, lit_len) == 0;
}

cd_kind_t
cd_kind_from_str(cd_str_t name)
{
    if (!name.ptr) {
        return CD_KIND_NONE;
    }
    //  By length first: one memcmp on the hot path instead of nine.
    switch (name.len) {
    case 3:
        return memcmp(name.ptr, "log", 3) == 0 ? CD_KIND_LOG : CD_KIND_NONE;
    case 4:
        return memcmp(name.ptr, "task", 4) == 0 ? CD_KIND_TASK : CD_KIND_NONE;
    case 5:
        if (memcmp(name.ptr, "error", 5) == 0) {
            return CD_KIND_ERROR;
        }
        return memcmp(name.ptr, "event", 5) == 0 ? CD_KIND_EVENT : CD_KIND_NONE;
    case 6:
        return memcmp(name.ptr, "result", 6) == 0 ? CD_KIND_RESULT : CD_KIND_NONE;
    case 7:
        if (memcmp(name.ptr, "handoff", 7) == 0) {
            return CD_KIND_HANDOFF;
        }
        return memcmp(name.ptr, "control", 7) == 0 ? CD_KIND_CONTROL : CD_KIND_NONE;
    case 12:
        return memcmp(name.ptr, "hitl_request", 12) == 0 ? CD_KIND_HITL_REQUEST : CD_KIND_NONE;
    case 13:
        return memcmp(name.ptr, "hitl_response", 13) == 0 ? CD_KIND_HITL_RESPONSE : CD_KIND_NONE;
    default:
        return CD_KIND_NONE;
    }
}

cd_str_t
cd_str(const char *cstr)
{
    if (!cstr) {
        return (cd_str_t){NULL, 0};
    }
    size_t len = strlen(cstr);
    assert(len <= UINT32_MAX);
    return (cd_str_t){cstr, (uint32_t)len};
}

bool
cd_str_eq(cd_str_t view, const char *cstr)
{
    size_t len = cstr ? strlen(cstr) : 0;
    if (view.len != len) {
        return false;
    }
    return len == 0 || memcmp(view.ptr, cstr, len) == 0;
}

bool
cd_envelope_header(const cd_envelope_t *env, const char *key, cd_str_t *value)
{
    for (uint32_t i = 0; i < env->n_headers; i++) {
        if (cd_str_eq(env->headers[i].key, key)) {
            if (value) {
                *value = env->headers[i].value;
            }
            return true;
        }
    }
    return false;
}

//  -------------------------------------------------------------------------
//  The reader

typedef enum {
    MP_NIL,   //  nil
    MP_BOOL,  //  true or false, in u
    MP_UINT,  //  a non-negative integer of either family, in u
    MP_INT,   //  a negative integer, in i
    MP_FLOAT, //  float32 or float64 (value not read)
    MP_STR,   //  str: len bytes at ptr
    MP_BIN,   //  bin: len bytes at ptr
    MP_EXT,   //  ext: len bytes at ptr (type byte not kept)
    MP_ARRAY, //  array of len values
    MP_MAP    //  map of len key/value pairs
} mp_type_t;

//  File-local: a cursor over untrusted bytes.
typedef struct {
    const uint8_t *p;   //  next unread byte
    const uint8_t *end; //  one past the last byte
} mp_reader_t;

//  File-local: the head of one value, as s_next read it.
typedef struct {
    mp_type_t type;     //  value family
    uint32_t len;       //  str/bin/ext length, array/map entry count
    uint64_t u;         //  MP_UINT value; MP_BOOL 0 or 1
    int64_t i;          //  MP_INT value (always negative)
    const uint8_t *ptr; //  str/bin/ext body, inside the input
} mp_tok_t;

static const char s_truncated[] = "truncated input";

//  A reader over data[0..size); NULL data reads as empty (NULL + 0 is not C).
static inline mp_reader_t
s_reader(const uint8_t *data, size_t size)
{
    return data ? (mp_reader_t){data, data + size} : (mp_reader_t){NULL, NULL};
}

static inline int
s_fail(const char **why, int code, const char *text)
{
    *why = text;
    return code;
}

static inline size_t
s_left(const mp_reader_t *r)
{
    return (size_t)(r->end - r->p);
}

static inline uint32_t
s_be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static inline uint32_t
s_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t
s_be64(const uint8_t *p)
{
    return (uint64_t)s_be32(p) << 32 | s_be32(p + 4);
}

//  A signed value from the int family: negative ones stay MP_INT, the rest
//  become MP_UINT so that callers see one integer type whatever the width.
static inline void
s_set_signed(mp_tok_t *t, int64_t value)
{
    if (value < 0) {
        t->type = MP_INT;
        t->i = value;
    } else {
        t->type = MP_UINT;
        t->u = (uint64_t)value;
    }
}

//  Reads the head of the next value. For str/bin/ext the body is checked to
//  be present and skipped; for containers only the head is consumed and the
//  caller must check the count (s_check_count) before walking the entries.
static inline int
s_next(mp_reader_t *r, mp_tok_t *t, const char **why)
{
    if (r->p >= r->end) {
        return s_fail(why, CD_ETRUNC, s_truncated);
    }
    uint8_t b = *r->p++;
    size_t left = s_left(r);
    const uint8_t *p = r->p;
    uint32_t len;
    if (b <= 0x7f) {
        t->type = MP_UINT;
        t->u = b;
        return 0;
    }
    if (b >= 0xe0) {
        t->type = MP_INT;
        t->i = (int8_t)b;
        return 0;
    }
    if (b <= 0x8f) {
        t->type = MP_MAP;
        t->len = b & 0x0fu;
        return 0;
    }
    if (b <= 0x9f) {
        t->type = MP_ARRAY;
        t->len = b & 0x0fu;
        return 0;
    }
    if (b <= 0xbf) {
        t->type = MP_STR;
        len = b & 0x1fu;
        goto body;
    }
    //  0xc0..0xdf: every head here has a fixed number of bytes after the
    //  type byte; check them all at once.
    static const uint8_t extra[32] = {
        0, 0, 0, 0, 1, 2, 4, 2, 3, 5, 4, 8, 1, 2, 4, 8, //  c0..cf
        1, 2, 4, 8, 1, 1, 1, 1, 1, 1, 2, 4, 2, 4, 2, 4, //  d0..df
    };
    if (left < extra[b - 0xc0]) {
        return s_fail(why, CD_ETRUNC, s_truncated);
    }
    r->p += extra[b - 0xc0];
    left -= extra[b - 0xc0];
    switch (b) {
    case 0xc0:
        t->type = MP_NIL;
        return 0;
    case 0xc1:
        return s_fail(why, CD_EPROTO, "reserved byte 0xc1");
    case 0xc2:
    case 0xc3:
        t->type = MP_BOOL;
        t->u = b & 1u;
        return 0;
    case 0xc4:
        t->type = MP_BIN;
        len = p[0];
        goto body;
    case 0xc5:
        t->type = MP_BIN;
        len = s_be16(p);
        goto body;
    case 0xc6:
        t->type = MP_BIN;
        len = s_be32(p);
        goto body;
    case 0xc7: //  ext8/16/32: length, then the type byte (counted in extra)
        t->type = MP_EXT;
        len = p[0];
        goto body;
    case 0xc8:
        t->type = MP_EXT;
        len = s_be16(p);
        goto body;
    case 0xc9:
        t->type = MP_EXT;
        len = s_be32(p);
        goto body;
    case 0xca:
    case 0xcb:
        t->type = MP_FLOAT;
        return 0;
    case 0xcc:
        t->type = MP_UINT;
        t->u = p[0];
        return 0;
    case 0xcd:
        t->type = MP_UINT;
        t->u = s_be16(p);
        return 0;
    case 0xce:
        t->type = MP_UINT;
        t->u = s_be32(p);
        return 0;
    case 0xcf:
        t->type = MP_UINT;
        t->u = s_be64(p);
        return 0;
    case 0xd0:
        s_set_signed(t, (int8_t)p[0]);
        return 0;
    case 0xd1:
        s_set_signed(t, (int16_t)(uint16_t)s_be16(p));
        return 0;
    case 0xd2:
        s_set_signed(t, (int32_t)s_be32(p));
        return 0;
    case 0xd3:
        s_set_signed(t, (int64_t)s_be64(p));
        return 0;
    case 0xd4: //  fixext 1/2/4/8/16: the type byte was counted in extra
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        t->type = MP_EXT;
        len = 1u << (b - 0xd4);
        goto body;
    case 0xd9:
        t->type = MP_STR;
        len = p[0];
        goto body;
    case 0xda:
        t->type = MP_STR;
        len = s_be16(p);
        goto body;
    case 0xdb:
        t->type = MP_STR;
        len = s_be32(p);
        goto body;
    case 0xdc:
        t->type = MP_ARRAY;
        t->len = s_be16(p);
        return 0;
    case 0xdd:
        t->type = MP_ARRAY;
        t->len = s_be32(p);
        return 0;
    case 0xde:
        t->type = MP_MAP;
        t->len = s_be16(p);
        return 0;
    default: //  0xdf
        t->type = MP_MAP;
        t->len = s_be32(p);
        return 0;
    }
body:
    //  The limit first: a 4 GB declaration is "too big" even in 10 bytes.
    if (len > CD_ENV_MAX_SIZE) {
        return s_fail(why, CD_ETOOBIG, "declared length over CD_ENV_MAX_SIZE");
    }
    if (len > left) {
        return s_fail(why, CD_ETRUNC, s_truncated);
    }
    t->len = len;
    t->ptr = r->p;
    r->p += len;
    return 0;
}

//  Checks a container head's count against limit, then against the bytes
//  left: each array entry takes at least one byte and each map entry two, so
//  a huge declared count in a short message stops here, before any walk.
static inline int
s_check_count(const mp_reader_t *r, const mp_tok_t *t, uint32_t limit, const char *over,
              const char **why)
{
    if (t->len > limit) {
        return s_fail(why, CD_ETOOBIG, over);
    }
    uint64_t min_bytes = t->type == MP_MAP ? 2 * (uint64_t)t->len : t->len;
    if (min_bytes > s_left(r)) {
        return s_fail(why, CD_ETRUNC, s_truncated);
    }
    return 0;
}

//  Validates the rest of a value whose head `first` was just read: for a
//  container, every nested value, within CD_ENV_MAX_DEPTH levels (the first
//  container is level 1) and CD_ENV_MAX_ELEMS entries per container.
static int
s_walk(mp_reader_t *r, const mp_tok_t *first, const char **why)
{
    if (first->type != MP_ARRAY && first->type != MP_MAP) {
        return 0;
    }
    uint32_t left[CD_ENV_MAX_DEPTH]; //  values still to read in each open container
    int depth = 0;
    mp_tok_t t = *first;
    for (;;) {
        if (t.type == MP_ARRAY || t.type == MP_MAP) {
            int rc = s_check_count(r, &t, CD_ENV_MAX_ELEMS,
                                   "container over CD_ENV_MAX_ELEMS entries", why);
            if (rc) {
                return rc;
            }
            if (depth == CD_ENV_MAX_DEPTH) {
                return s_fail(why, CD_EDEPTH, "nesting deeper than CD_ENV_MAX_DEPTH");
            }
            //  t.len <= CD_ENV_MAX_ELEMS, so twice it fits.
            left[depth++] = t.type == MP_MAP ? 2 * t.len : t.len;
        }
        while (depth > 0 && left[depth - 1] == 0) {
            depth--;
        }
        if (depth == 0) {
            return 0;
        }
        int rc = s_next(r, &t, why);
        if (rc) {
            return rc;
        }
        left[depth - 1]--;
    }
}

//  Reads and validates one whole value.
static inline int
s_skip(mp_reader_t *r, const char **why)
{
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    return s_walk(r, &t, why);
}

//  Fast path for the unsigned heads every encoder uses (positive fixint,
//  uint8..64): true with *out set and the bytes consumed, or false with
//  nothing consumed (other heads, or too few bytes: s_next then decides).
static inline bool
s_uint_fast(mp_reader_t *r, uint64_t *out)
{
    const uint8_t *p = r->p;
    if (p >= r->end) {
        return false;
    }
    size_t left = s_left(r);
    switch (*p) {
    case 0xcc:
        if (left < 2) {
            return false;
        }
        *out = p[1];
        r->p += 2;
        return true;
    case 0xcd:
        if (left < 3) {
            return false;
        }
        *out = s_be16(p + 1);
        r->p += 3;
        return true;
    case 0xce:
        if (left < 5) {
            return false;
        }
        *out = s_be32(p + 1);
        r->p += 5;
        return true;
    case 0xcf:
        if (left < 9) {
            return false;
        }
        *out = s_be64(p + 1);
        r->p += 9;
        return true;
    default:
        if (*p > 0x7f) {
            return false;
        }
        *out = *p;
        r->p++;
        return true;
    }
}

//  Reads a map head and checks its count.
static inline int
s_read_map(mp_reader_t *r, mp_tok_t *t, uint32_t limit, const char *not_map, const char *over,
           const char **why)
{
    if (r->p < r->end && (*r->p & 0xf0) == 0x80) { //  fixmap
        t->type = MP_MAP;
        t->len = *r->p++ & 0x0fu;
        return s_check_count(r, t, limit, over, why);
    }
    int rc = s_next(r, t, why);
    if (rc) {
        return rc;
    }
    if (t->type != MP_MAP) {
        return s_fail(why, CD_EPROTO, not_map);
    }
    return s_check_count(r, t, limit, over, why);
}

//  Reads a str of at most max bytes into *out.
static inline int
s_read_str(mp_reader_t *r, cd_str_t *out, uint32_t max, const char *not_str, const char *too_long,
           const char **why)
{
    //  Fast path: keys and most names are fixstr (< 32 bytes, under every max).
    _Static_assert(CD_ENV_MAX_NAME >= 31, "a fixstr must fit every name limit");
    const uint8_t *p = r->p;
    if (p < r->end && (*p & 0xe0) == 0xa0 && (size_t)(*p & 0x1f) < (size_t)(r->end - p)) {
        out->ptr = (const char *)p + 1;
        out->len = *p & 0x1fu;
        r->p = p + 1 + out->len;
        return 0;
    }
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    if (t.type != MP_STR) {
        return s_fail(why, CD_EPROTO, not_str);
    }
    if (t.len > max) {
        return s_fail(why, CD_ETOOBIG, too_long);
    }
    out->ptr = (const char *)t.ptr;
    out->len = t.len;
    return 0;
}

static inline int
s_read_i64(mp_reader_t *r, int64_t *out, const char *not_int, const char *range, const char **why)
{
    uint64_t u;
    if (s_uint_fast(r, &u)) {
        if (u > INT64_MAX) {
            return s_fail(why, CD_EPROTO, range);
        }
        *out = (int64_t)u;
        return 0;
    }
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    if (t.type == MP_INT) {
        *out = t.i;
        return 0;
    }
    if (t.type != MP_UINT) {
        return s_fail(why, CD_EPROTO, not_int);
    }
    if (t.u > INT64_MAX) {
        return s_fail(why, CD_EPROTO, range);
    }
    *out = (int64_t)t.u;
    return 0;
}

static inline int
s_read_u64(mp_reader_t *r, uint64_t *out, const char *not_int, const char *range, const char **why)
{
    if (s_uint_fast(r, out)) {
        return 0;
    }
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    if (t.type == MP_INT) {
        return s_fail(why, CD_EPROTO, range);
    }
    if (t.type != MP_UINT) {
        return s_fail(why, CD_EPROTO, not_int);
    }
    *out = t.u;
    return 0;
}

static inline int
s_read_uuid(mp_reader_t *r, uint8_t out[CD_ENV_UUID_SIZE], const char *wrong, const char **why)
{
    //  Fast path: bin8 of 16, as every encoder writes it.
    if (s_left(r) >= 2 + CD_ENV_UUID_SIZE && r->p[0] == 0xc4 && r->p[1] == CD_ENV_UUID_SIZE) {
        memcpy(out, r->p + 2, CD_ENV_UUID_SIZE);
        r->p += 2 + CD_ENV_UUID_SIZE;
        return 0;
    }
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    if (t.type != MP_BIN || t.len != CD_ENV_UUID_SIZE) {
        return s_fail(why, CD_EPROTO, wrong);
    }
    memcpy(out, t.ptr, CD_ENV_UUID_SIZE);
    return 0;
}

//  -------------------------------------------------------------------------
//  Decode

enum {
    K_V,
    K_ID,
    K_KIND,
    K_FROM,
    K_TO,
    K_TASK_ID,
    K_TRACE_ID,
    K_PARENT_ID,
    K_TS,
    K_ATTEMPT,
    K_DEADLINE,
    K_HEADERS,
    K_ARTIFACTS,
    K_PAYLOAD,
    K_PFRAME,
    K_UNKNOWN = -1
};

#define S_BIT(k) (1u << (k))
#define S_REQUIRED (S_BIT(K_V) | S_BIT(K_ID) | S_BIT(K_KIND) | S_BIT(K_FROM) | S_BIT(K_TO))

static inline int
s_key_id(const char *k, uint32_t len)
{
    switch (len) {
    case 1:
        return k[0] == 'v' ? K_V : K_UNKNOWN;
    case 2:
        if (k[0] == 'i' && k[1] == 'd') {
            return K_ID;
        }
        if (k[0] == 't' && k[1] == 'o') {
            return K_TO;
        }
        return k[0] == 't' && k[1] == 's' ? K_TS : K_UNKNOWN;
    case 4:
        if (memcmp(k, "kind", 4) == 0) {
            return K_KIND;
        }
        return memcmp(k, "from", 4) == 0 ? K_FROM : K_UNKNOWN;
    case 6:
        return memcmp(k, "pframe", 6) == 0 ? K_PFRAME : K_UNKNOWN;
    case 7:
        switch (k[0]) {
        case 't':
            return memcmp(k, "task_id", 7) == 0 ? K_TASK_ID : K_UNKNOWN;
        case 'a':
            return memcmp(k, "attempt", 7) == 0 ? K_ATTEMPT : K_UNKNOWN;
        case 'h':
            return memcmp(k, "headers", 7) == 0 ? K_HEADERS : K_UNKNOWN;
        case 'p':
            return memcmp(k, "payload", 7) == 0 ? K_PAYLOAD : K_UNKNOWN;
        default:
            return K_UNKNOWN;
        }
    case 8:
        if (memcmp(k, "trace_id", 8) == 0) {
            return K_TRACE_ID;
        }
        return memcmp(k, "deadline", 8) == 0 ? K_DEADLINE : K_UNKNOWN;
    case 9:
        if (memcmp(k, "parent_id", 9) == 0) {
            return K_PARENT_ID;
        }
        return memcmp(k, "artifacts", 9) == 0 ? K_ARTIFACTS : K_UNKNOWN;
    default:
        return K_UNKNOWN;
    }
}

static int
s_decode_headers(mp_reader_t *r, cd_envelope_t *env, const char **why)
{
    mp_tok_t t;
    int rc = s_read_map(r, &t, CD_ENV_MAX_HEADERS, "headers: not a map",
                        "headers: more than CD_ENV_MAX_HEADERS entries", why);
    if (rc) {
        return rc;
    }
    for (uint32_t i = 0; i < t.len; i++) {
        cd_env_header_t *h = &env->headers[i];
        rc = s_read_str(r, &h->key, CD_ENV_MAX_NAME, "headers: key is not a string",
                        "headers: key longer than CD_ENV_MAX_NAME", why);
        if (rc) {
            return rc;
        }
        rc = s_read_str(r, &h->value, CD_ENV_MAX_NAME, "headers: value is not a string",
                        "headers: value longer than CD_ENV_MAX_NAME", why);
        if (rc) {
            return rc;
        }
    }
    env->n_headers = t.len;
    return 0;
}

static int
s_decode_artifact(mp_reader_t *r, cd_env_artifact_t *a, const char **why)
{
    mp_tok_t t;
    int rc = s_read_map(r, &t, CD_ENV_MAX_KEYS, "artifacts: entry is not a map",
                        "artifacts: entry has more than CD_ENV_MAX_KEYS keys", why);
    if (rc) {
        return rc;
    }
    unsigned seen = 0; //  bit 0 id, 1 name, 2 size
    for (uint32_t i = 0; i < t.len; i++) {
        cd_str_t key;
        rc = s_read_str(r, &key, UINT32_MAX, "artifacts: key is not a string", "", why);
        if (rc) {
            return rc;
        }
        unsigned bit;
        if (s_mem_is(key.ptr, key.len, "id", 2)) {
            bit = 1;
            rc = s_read_i64(r, &a->id, "artifacts: id is not an integer",
                            "artifacts: id does not fit int64", why);
        } else if (s_mem_is(key.ptr, key.len, "name", 4)) {
            bit = 2;
            rc = s_read_str(r, &a->name, CD_ENV_MAX_NAME, "artifacts: name is not a string",
                            "artifacts: name longer than CD_ENV_MAX_NAME", why);
        } else if (s_mem_is(key.ptr, key.len, "size", 4)) {
            bit = 4;
            rc = s_read_u64(r, &a->size, "artifacts: size is not an integer",
                            "artifacts: size is negative", why);
        } else {
            bit = 0;
            rc = s_skip(r, why);
        }
        if (rc) {
            return rc;
        }
        if (seen & bit) {
            return s_fail(why, CD_EPROTO, "artifacts: duplicate key");
        }
        seen |= bit;
    }
    if (seen != 7) {
        return s_fail(why, CD_EINVAL, "artifacts: entry lacks id, name or size");
    }
    return 0;
}

static int
s_decode_artifacts(mp_reader_t *r, cd_envelope_t *env, const char **why)
{
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    if (t.type != MP_ARRAY) {
        return s_fail(why, CD_EPROTO, "artifacts: not an array");
    }
    rc = s_check_count(r, &t, CD_ENV_MAX_ARTIFACTS,
                       "artifacts: more than CD_ENV_MAX_ARTIFACTS entries", why);
    if (rc) {
        return rc;
    }
    for (uint32_t i = 0; i < t.len; i++) {
        rc = s_decode_artifact(r, &env->artifacts[i], why);
        if (rc) {
            return rc;
        }
    }
    env->n_artifacts = t.len;
    return 0;
}

//  Validates a map payload that starts at r->p; on success *out views its
//  encoded bytes.
static int
s_read_map_payload(mp_reader_t *r, cd_bin_t *out, const char *not_map, const char **why)
{
    const uint8_t *start = r->p;
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    if (t.type != MP_MAP) {
        return s_fail(why, CD_EPROTO, not_map);
    }
    rc = s_walk(r, &t, why);
    if (rc) {
        return rc;
    }
    out->ptr = start;
    out->len = (uint32_t)(r->p - start);
    return 0;
}

static int
s_decode_payload(mp_reader_t *r, cd_envelope_t *env, const char **why)
{
    //  Peek at the head to choose: a bin is one s_next, a map is walked.
    if (r->p < r->end && ((*r->p & 0xf0) == 0x80 || *r->p == 0xde || *r->p == 0xdf)) {
        env->payload_type = CD_PAYLOAD_MAP;
        return s_read_map_payload(r, &env->payload, "payload: not bin or map", why);
    }
    //  bin8 fast path: the common small payload.
    if (s_left(r) >= 2 && r->p[0] == 0xc4 && (size_t)r->p[1] <= s_left(r) - 2) {
        env->payload_type = CD_PAYLOAD_BIN;
        env->payload.ptr = r->p + 2;
        env->payload.len = r->p[1];
        r->p += 2 + env->payload.len;
        return 0;
    }
    mp_tok_t t;
    int rc = s_next(r, &t, why);
    if (rc) {
        return rc;
    }
    if (t.type != MP_BIN) {
        return s_fail(why, CD_EPROTO, "payload: not bin or map");
    }
    env->payload_type = CD_PAYLOAD_BIN;
    env->payload.ptr = t.ptr;
    env->payload.len = t.len;
    return 0;
}

static int
s_decode_field(mp_reader_t *r, int key, cd_envelope_t *env, const char **why)
{
    mp_tok_t t;
    uint64_t u;
    int rc;
    switch (key) {
    case K_V:
        if (r->p < r->end && *r->p == CD_ENV_VERSION) {
            r->p++;
            return 0;
        }
        rc = s_next(r, &t, why);
        if (rc) {
            return rc;
        }
        if (t.type != MP_UINT && t.type != MP_INT) {
            return s_fail(why, CD_EPROTO, "v: not an integer");
        }
        if (t.type != MP_UINT || t.u != CD_ENV_VERSION) {
            return s_fail(why, CD_EVERSION, "v: unsupported envelope version");
        }
        return 0;
    case K_ID:
        return s_read_uuid(r, env->id, "id: not bin(16)", why);
    case K_KIND: {
        cd_str_t name;
        rc = s_read_str(r, &name, CD_ENV_MAX_NAME, "kind: not a string",
                        "kind: longer than CD_ENV_MAX_NAME", why);
        if (rc) {
            return rc;
        }
        env->kind = cd_kind_from_str(name);
        return env->kind == CD_KIND_NONE ? s_fail(why, CD_EPROTO, "kind: unknown kind") : 0;
    }
    case K_FROM:
        rc = s_read_str(r, &env->from, CD_ENV_MAX_NAME, "from: not a string",
                        "from: longer than CD_ENV_MAX_NAME", why);
        if (rc == 0 && env->from.len == 0) {
            rc = s_fail(why, CD_EPROTO, "from: empty");
        }
        return rc;
    case K_TO:
        rc = s_read_str(r, &env->to, CD_ENV_MAX_NAME, "to: not a string",
                        "to: longer than CD_ENV_MAX_NAME", why);
        if (rc == 0 && env->to.len == 0) {
            rc = s_fail(why, CD_EPROTO, "to: empty");
        }
        return rc;
    case K_TASK_ID:
        return s_read_i64(r, &env->task_id, "task_id: not an integer",
                          "task_id: does not fit int64", why);
    case K_TRACE_ID:
        return s_read_uuid(r, env->trace_id, "trace_id: not bin(16)", why);
    case K_PARENT_ID:
        return s_read_uuid(r, env->parent_id, "parent_id: not bin(16)", why);
    case K_TS:
        return s_read_i64(r, &env->ts, "ts: not an integer", "ts: does not fit int64", why);
    case K_ATTEMPT:
        rc = s_read_u64(r, &u, "attempt: not an integer", "attempt: negative", why);
        if (rc) {
            return rc;
        }
        if (u > UINT32_MAX) {
            return s_fail(why, CD_EPROTO, "attempt: does not fit uint32");
        }
        env->attempt = (uint32_t)u;
        return 0;
    case K_DEADLINE:
        return s_read_i64(r, &env->deadline, "deadline: not an integer",
                          "deadline: does not fit int64", why);
    case K_HEADERS:
        return s_decode_headers(r, env, why);
    case K_ARTIFACTS:
        return s_decode_artifacts(r, env, why);
    case K_PAYLOAD:
        return s_decode_payload(r, env, why);
    default: //  K_PFRAME
        rc = s_read_u64(r, &u, "pframe: not an integer", "pframe: not 1 or 2", why);
        if (rc) {
            return rc;
        }
        if (u != 1 && u != 2) {
            return s_fail(why, CD_EPROTO, "pframe: not 1 or 2");
        }
        env->payload_type = u == 1 ? CD_PAYLOAD_BIN : CD_PAYLOAD_MAP;
        env->payload_in_frame = true;
        return 0;
    }
}

//  Zeroes what a decode may leave unset. Not the header and artifact arrays
//  (valid up to their counts; clearing them would cost more than a whole
//  small decode), and field by field rather than one memset of the struct's
//  head, which compilers turn into `rep stos`, whose start-up cost was a
//  tenth of a decode. A field added to cd_envelope_t must be added here
//  (test_envelope_round_trip_minimal decodes into a struct full of junk).
static inline void
s_clear(cd_envelope_t *env)
{
    memset(env->id, 0, CD_ENV_UUID_SIZE);
    env->kind = CD_KIND_NONE;
    env->from = (cd_str_t){NULL, 0};
    env->to = (cd_str_t){NULL, 0};
    env->task_id = 0;
    memset(env->trace_id, 0, CD_ENV_UUID_SIZE);
    memset(env->parent_id, 0, CD_ENV_UUID_SIZE);
    env->ts = 0;
    env->attempt = 0;
    env->deadline = 0;
    env->n_headers = 0;
    env->n_artifacts = 0;
    env->payload_type = CD_PAYLOAD_NONE;
    env->payload_in_frame = false;
    env->payload = (cd_bin_t){NULL, 0};
}

static const char *const s_missing[] = {
    [K_V] = "missing required key: v",       [K_ID] = "missing required key: id",
    [K_KIND] = "missing required key: kind", [K_FROM] = "missing required key: from",
    [K_TO] = "missing required key: to",
};

int
cd_envelope_decode(const uint8_t *data, size_t size, cd_envelope_t *env, const char **why)
{
    assert(env);
    const char *ignored;
    if (!why) {
        why = &ignored;
    }
    s_clear(env);
    if (size > CD_ENV_MAX_SIZE) {
        return s_fail(why, CD_ETOOBIG, "envelope over CD_ENV_MAX_SIZE");
    }
    if (!data && size > 0) {
        return s_fail(why, CD_EINVAL, "no data");
    }
    mp_reader_t r = s_reader(data, size);
    mp_tok_t top;
    int rc = s_read_map(&r, &top, CD_ENV_MAX_KEYS, "envelope: not a map",
                        "envelope: more than CD_ENV_MAX_KEYS keys", why);
    if (rc) {
        return rc;
    }
    uint32_t seen = 0;
    cd_str_t unknown[CD_ENV_MAX_KEYS]; //  unknown keys so far, for duplicates
    uint32_t n_unknown = 0;
    for (uint32_t i = 0; i < top.len; i++) {
        cd_str_t key;
        rc = s_read_str(&r, &key, UINT32_MAX, "envelope: key is not a string", "", why);
        if (rc) {
            return rc;
        }
        int k = s_key_id(key.ptr, key.len);
        if (k == K_UNKNOWN) {
            for (uint32_t j = 0; j < n_unknown; j++) {
                if (s_mem_is(key.ptr, key.len, unknown[j].ptr, unknown[j].len)) {
                    return s_fail(why, CD_EPROTO, "envelope: duplicate key");
                }
            }
            unknown[n_unknown++] = key;
            rc = s_skip(&r, why);
        } else {
            if (seen & S_BIT(k)) {
                return s_fail(why, CD_EPROTO, "envelope: duplicate key");
            }
            seen |= S_BIT(k);
            rc = s_decode_field(&r, k, env, why);
        }
        if (rc) {
            return rc;
        }
    }
    if (r.p != r.end) {
        return s_fail(why, CD_EPROTO, "trailing bytes after the envelope");
    }
    if ((seen & S_REQUIRED) != S_REQUIRED) {
        for (int k = K_V; k <= K_TO; k++) {
            if (!(seen & S_BIT(k))) {
                return s_fail(why, CD_EINVAL, s_missing[k]);
            }
        }
    }
    if ((seen & S_BIT(K_PAYLOAD)) && (seen & S_BIT(K_PFRAME))) {
        return s_fail(why, CD_EPROTO, "payload and pframe both present");
    }
    return 0;
}

int
cd_envelope_attach_payload(cd_envelope_t *env, const uint8_t *data, size_t size, const char **why)
{
    assert(env);
    const char *ignored;
    if (!why) {
        why = &ignored;
    }
    if (!env->payload_in_frame) {
        return s_fail(why, CD_ESTATE, "envelope announced no payload frame");
    }
    if (size > CD_ENV_MAX_SIZE) {
        return s_fail(why, CD_ETOOBIG, "payload frame over CD_ENV_MAX_SIZE");
    }
    if (!data && size > 0) {
        return s_fail(why, CD_EINVAL, "no data");
    }
    if (env->payload_type == CD_PAYLOAD_MAP) {
        mp_reader_t r = s_reader(data, size);
        cd_bin_t view;
        int rc = s_read_map_payload(&r, &view, "payload frame: not a map", why);
        if (rc) {
            return rc;
        }
        if (r.p != r.end) {
            return s_fail(why, CD_EPROTO, "trailing bytes after the payload map");
        }
    }
    env->payload.ptr = data;
    env->payload.len = (uint32_t)size;
    return 0;
}

int
cd_envelope_peek_route(const uint8_t *data, size_t size, cd_kind_t *kind, cd_str_t *to)
{
    assert(kind && to);
    const char *why;
    if (size > CD_ENV_MAX_SIZE) {
        return CD_ETOOBIG;
    }
    if (!data && size > 0) {
        return CD_EINVAL;
    }
    mp_reader_t r = s_reader(data, size);
    mp_tok_t top;
    int rc = s_read_map(&r, &top, CD_ENV_MAX_KEYS, "", "", &why);
    if (rc) {
        return rc;
    }
    bool have_kind = false, have_to = false;
    for (uint32_t i = 0; i < top.len; i++) {
        cd_str_t key;
        rc = s_read_str(&r, &key, UINT32_MAX, "", "", &why);
        if (rc) {
            return rc;
        }
        if (s_mem_is(key.ptr, key.len, "kind", 4)) {
            cd_str_t name;
            rc = s_read_str(&r, &name, CD_ENV_MAX_NAME, "", "", &why);
            if (rc) {
                return rc;
            }
            *kind = cd_kind_from_str(name);
            if (*kind == CD_KIND_NONE) {
                return CD_EPROTO;
            }
            have_kind = true;
        } else if (s_mem_is(key.ptr, key.len, "to", 2)) {
            rc = s_read_str(&r, to, CD_ENV_MAX_NAME, "", "", &why);
            if (rc) {
                return rc;
            }
            if (to->len == 0) {
                return CD_EPROTO;
            }
            have_to = true;
        } else {
            rc = s_skip(&r, &why);
            if (rc) {
                return rc;
            }
        }
        if (have_kind && have_to) {
            return 0;
        }
    }
    return CD_EINVAL;
}

int
cd_msgpack_validate(const uint8_t *data, size_t size, const char **why)
{
    const char *ignored;
    if (!why) {
        why = &ignored;
    }
    if (size > CD_ENV_MAX_SIZE) {
        return s_fail(why, CD_ETOOBIG, "value over CD_ENV_MAX_SIZE");
    }
    if (!data && size > 0) {
        return s_fail(why, CD_EINVAL, "no data");
    }
    mp_reader_t r = s_reader(data, size);
    int rc = s_skip(&r, why);
    if (rc) {
        return rc;
    }
    if (r.p != r.end) {
        return s_fail(why, CD_EPROTO, "trailing bytes after the value");
    }
    return 0;
}

//  -------------------------------------------------------------------------
//  Encode

//  The packer's write callback: msgpack-c reports a failed realloc as -1
//  from deep inside a pack call; we abort there instead, so that pack calls
//  never fail and need no checks.
static int
s_write(void *data, const char *bytes, size_t len)
{
    if (msgpack_sbuffer_write(data, bytes, len) != 0) {
        s_oom(__FILE__, __LINE__);
    }
    return 0;
}

//  Grows the buffer to hold at least `want` bytes (no-op when it does).
static void
s_reserve(msgpack_sbuffer *sbuf, size_t want)
{
    if (sbuf->alloc >= want) {
        return;
    }
    size_t alloc = sbuf->alloc ? sbuf->alloc : MSGPACK_SBUFFER_INIT_SIZE;
    while (alloc < want) {
        alloc *= 2;
    }
    char *data = realloc(sbuf->data, alloc);
    if (!data) {
        s_oom(__FILE__, __LINE__);
    }
    sbuf->data = data;
    sbuf->alloc = alloc;
}

//  Appends bytes known to fit (the buffer was reserved for the whole bound).
static inline void
s_put(msgpack_sbuffer *sbuf, const void *bytes, size_t len)
{
    assert(sbuf->alloc - sbuf->size >= len);
    //  memcpy(p, NULL, 0) is undefined, and empty views may be NULL.
    if (len > 0) {
        memcpy(sbuf->data + sbuf->size, bytes, len);
    }
    sbuf->size += len;
}

//  The packer's callback inside cd_envelope_encode, where the buffer holds
//  the whole bound already: no capacity check, no realloc path, small enough
//  for the compiler to inline into every pack call.
static int
s_write_reserved(void *data, const char *bytes, size_t len)
{
    s_put(data, bytes, len);
    return 0;
}

//  A view is usable if it points somewhere or is empty, and is not too long.
static inline bool
s_view_ok(const void *ptr, uint32_t len, uint32_t max)
{
    return (ptr || len == 0) && len <= max;
}

static inline bool
s_uuid_set(const uint8_t id[CD_ENV_UUID_SIZE])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    return (a | b) != 0;
}

//  Most bytes a str or bin of len bytes takes, head included.
#define S_STR_BOUND(len) ((size_t)(len) + 5)
//  Most bytes of everything but names, headers, artifacts and payload: the
//  top-level map head, 15 keys (81 bytes), 6 integers, 3 ids.
#define S_FIXED_BOUND 256
//  Most bytes of one artifact but its name: map head, 3 keys, 2 integers.
#define S_ARTIFACT_BOUND 40

//  Checks env whole and returns an upper bound of its encoded size, or 0.
static size_t
s_encode_bound(const cd_envelope_t *env, int *rc)
{
    *rc = CD_EINVAL;
    if (!cd_kind_name(env->kind)) {
        return 0;
    }
    if (!env->from.ptr || env->from.len == 0 || env->from.len > CD_ENV_MAX_NAME) {
        return 0;
    }
    if (!env->to.ptr || env->to.len == 0 || env->to.len > CD_ENV_MAX_NAME) {
        return 0;
    }
    if (env->n_headers > CD_ENV_MAX_HEADERS || env->n_artifacts > CD_ENV_MAX_ARTIFACTS) {
        return 0;
    }
    size_t bound = S_FIXED_BOUND + S_STR_BOUND(env->from.len) + S_STR_BOUND(env->to.len) +
                   S_STR_BOUND(s_kinds[env->kind].len);
    for (uint32_t i = 0; i < env->n_headers; i++) {
        const cd_env_header_t *h = &env->headers[i];
        if (!s_view_ok(h->key.ptr, h->key.len, CD_ENV_MAX_NAME) ||
            !s_view_ok(h->value.ptr, h->value.len, CD_ENV_MAX_NAME)) {
            return 0;
        }
        bound += S_STR_BOUND(h->key.len) + S_STR_BOUND(h->value.len);
    }
    for (uint32_t i = 0; i < env->n_artifacts; i++) {
        const cd_env_artifact_t *a = &env->artifacts[i];
        if (!s_view_ok(a->name.ptr, a->name.len, CD_ENV_MAX_NAME)) {
            return 0;
        }
        bound += S_ARTIFACT_BOUND + S_STR_BOUND(a->name.len);
    }
    switch (env->payload_type) {
    case CD_PAYLOAD_NONE:
        if (env->payload_in_frame) {
            return 0;
        }
        break;
    case CD_PAYLOAD_BIN:
    case CD_PAYLOAD_MAP:
        if (env->payload_in_frame) {
            break;
        }
        if (!s_view_ok(env->payload.ptr, env->payload.len, UINT32_MAX)) {
            return 0;
        }
        if (env->payload.len > CD_ENV_MAX_SIZE) {
            *rc = CD_ETOOBIG;
            return 0;
        }
        if (env->payload_type == CD_PAYLOAD_MAP) {
            //  What we write must decode: never send a map we would refuse.
            mp_reader_t r = s_reader(env->payload.ptr, env->payload.len);
            const char *why;
            cd_bin_t view;
            if (s_read_map_payload(&r, &view, "", &why) != 0 || r.p != r.end) {
                return 0;
            }
        }
        bound += S_STR_BOUND(env->payload.len);
        break;
    default:
        return 0;
    }
    if (bound > CD_ENV_MAX_SIZE) {
        *rc = CD_ETOOBIG;
        return 0;
    }
    *rc = 0;
    return bound;
}

//  Appends pre-encoded bytes given as a string literal (a macro for its
//  sizeof): a key's fixstr head and name, in one copy. Heads are in octal
//  where the name starts with a hex digit ("\xa4from" would not parse).
#define S_KEY(sbuf, lit) s_put((sbuf), (lit), sizeof(lit) - 1)

int
cd_envelope_encode(const cd_envelope_t *env, cd_envbuf_t *buf)
{
    assert(env && buf);
    int rc;
    size_t bound = s_encode_bound(env, &rc);
    if (rc) {
        return rc;
    }
    msgpack_sbuffer *sbuf = &buf->sbuf;
    msgpack_sbuffer_clear(sbuf);
    s_reserve(sbuf, bound);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sbuf, s_write_reserved);

    bool has_trace = s_uuid_set(env->trace_id);
    bool has_parent = s_uuid_set(env->parent_id);
    size_t n = 5 + (env->task_id != 0) + has_trace + has_parent + (env->ts != 0) +
               (env->attempt != 0) + (env->deadline != 0) + (env->n_headers > 0) +
               (env->n_artifacts > 0) + (env->payload_type != CD_PAYLOAD_NONE);
    msgpack_pack_map(&pk, n);
    //  Routing keys first: cd_envelope_peek_route stops once it has kind and to.
    S_KEY(sbuf, "\xa1v\x01\xa2id\xc4\x10");
    s_put(sbuf, env->id, CD_ENV_UUID_SIZE);
    S_KEY(sbuf, "\xa4kind");
    msgpack_pack_str_with_body(&pk, s_kinds[env->kind].name, s_kinds[env->kind].len);
    S_KEY(sbuf, "\xa2to");
    msgpack_pack_str_with_body(&pk, env->to.ptr, env->to.len);
    S_KEY(sbuf, "\244from");
    msgpack_pack_str_with_body(&pk, env->from.ptr, env->from.len);
    if (env->task_id != 0) {
        S_KEY(sbuf, "\xa7task_id");
        msgpack_pack_int64(&pk, env->task_id);
    }
    if (has_trace) {
        S_KEY(sbuf, "\xa8trace_id\xc4\x10");
        s_put(sbuf, env->trace_id, CD_ENV_UUID_SIZE);
    }
    if (has_parent) {
        S_KEY(sbuf, "\xa9parent_id\xc4\x10");
        s_put(sbuf, env->parent_id, CD_ENV_UUID_SIZE);
    }
    if (env->ts != 0) {
        S_KEY(sbuf, "\xa2ts");
        msgpack_pack_int64(&pk, env->ts);
    }
    if (env->attempt != 0) {
        S_KEY(sbuf, "\247attempt");
        msgpack_pack_uint32(&pk, env->attempt);
    }
    if (env->deadline != 0) {
        S_KEY(sbuf, "\250deadline");
        msgpack_pack_int64(&pk, env->deadline);
    }
    if (env->n_headers > 0) {
        S_KEY(sbuf, "\xa7headers");
        msgpack_pack_map(&pk, env->n_headers);
        for (uint32_t i = 0; i < env->n_headers; i++) {
            const cd_env_header_t *h = &env->headers[i];
            msgpack_pack_str_with_body(&pk, h->key.ptr, h->key.len);
            msgpack_pack_str_with_body(&pk, h->value.ptr, h->value.len);
        }
    }
    if (env->n_artifacts > 0) {
        S_KEY(sbuf, "\251artifacts");
        msgpack_pack_array(&pk, env->n_artifacts);
        for (uint32_t i = 0; i < env->n_artifacts; i++) {
            const cd_env_artifact_t *a = &env->artifacts[i];
            S_KEY(sbuf, "\x83\xa2id");
            msgpack_pack_int64(&pk, a->id);
            S_KEY(sbuf, "\xa4name");
            msgpack_pack_str_with_body(&pk, a->name.ptr, a->name.len);
            S_KEY(sbuf, "\xa4size");
            msgpack_pack_uint64(&pk, a->size);
        }
    }
    if (env->payload_in_frame) {
        S_KEY(sbuf, "\xa6pframe");
        msgpack_pack_uint8(&pk, env->payload_type == CD_PAYLOAD_BIN ? 1 : 2);
    } else if (env->payload_type == CD_PAYLOAD_BIN) {
        S_KEY(sbuf, "\xa7payload");
        msgpack_pack_bin_with_body(&pk, env->payload.ptr, env->payload.len);
    } else if (env->payload_type == CD_PAYLOAD_MAP) {
        S_KEY(sbuf, "\xa7payload");
        s_put(sbuf, env->payload.ptr, env->payload.len);
    }
    assert(sbuf->size <= bound);
    return 0;
}

cd_envbuf_t *
cd_envbuf_new(void)
{
    cd_envbuf_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_oom(__FILE__, __LINE__);
    }
    msgpack_sbuffer_init(&self->sbuf);
    return self;
}

void
cd_envbuf_destroy(cd_envbuf_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    msgpack_sbuffer_destroy(&(*self_p)->sbuf);
    free(*self_p);
    *self_p = NULL;
}

const uint8_t *
cd_envbuf_data(const cd_envbuf_t *self)
{
    assert(self);
    return (const uint8_t *)self->sbuf.data;
}

size_t
cd_envbuf_size(const cd_envbuf_t *self)
{
    assert(self);
    return self->sbuf.size;
}

//  -------------------------------------------------------------------------
//  Message ids

void
cd_idgen_init(cd_idgen_t *gen)
{
    assert(gen);
    //  Idempotent and thread-safe; it fails only if no entropy source exists,
    //  and then no id we could make would be unique.
    if (sodium_init() < 0) {
        fprintf(stderr, "cadre: sodium_init failed at %s:%d\n", __FILE__, __LINE__);
        abort();
    }
    randombytes_buf(gen->prefix, sizeof gen->prefix);
    gen->counter = 0;
}

void
cd_idgen_next(cd_idgen_t *gen, uint8_t out[CD_ENV_UUID_SIZE])
{
    assert(gen && out);
    memcpy(out, gen->prefix, sizeof gen->prefix);
    //  Big-endian, so the ids of one generator sort in creation order.
    uint64_t c = gen->counter++;
    for (int i = 0; i < 8; i++) {
        out[8 + i] = (uint8_t)(c >> (56 - 8 * i));
    }
}

//  -------------------------------------------------------------------------
//  cd_pack: a msgpack writer for the layers that must not include msgpack.h

cd_pack_t *
cd_pack_new(void)
{
    cd_pack_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_oom(__FILE__, __LINE__);
    }
    msgpack_sbuffer_init(&self->sbuf);
    return self;
}

void
cd_pack_destroy(cd_pack_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    msgpack_sbuffer_destroy(&(*self_p)->sbuf);
    free(*self_p);
    *self_p = NULL;
}

void
cd_pack_reset(cd_pack_t *self)
{
    assert(self);
    msgpack_sbuffer_clear(&self->sbuf);
}

//  A packer on the stack: the callback is then a known function and every
//  append is inlined.
static inline msgpack_packer
s_packer(cd_pack_t *self)
{
    assert(self);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->sbuf, s_write);
    return pk;
}

void
cd_pack_map(cd_pack_t *self, uint32_t n)
{
    msgpack_packer pk = s_packer(self);
    msgpack_pack_map(&pk, n);
}

void
cd_pack_array(cd_pack_t *self, uint32_t n)
{
    msgpack_packer pk = s_packer(self);
    msgpack_pack_array(&pk, n);
}

void
cd_pack_str(cd_pack_t *self, const char *ptr, size_t len)
{
    assert(ptr || len == 0);
    assert(len <= UINT32_MAX);
    msgpack_packer pk = s_packer(self);
    msgpack_pack_str_with_body(&pk, ptr, len);
}

void
cd_pack_cstr(cd_pack_t *self, const char *cstr)
{
    assert(cstr);
    cd_pack_str(self, cstr, strlen(cstr));
}

void
cd_pack_bin(cd_pack_t *self, const void *ptr, size_t len)
{
    assert(ptr || len == 0);
    assert(len <= UINT32_MAX);
    msgpack_packer pk = s_packer(self);
    msgpack_pack_bin_with_body(&pk, ptr, len);
}

void
cd_pack_int(cd_pack_t *self, int64_t value)
{
    msgpack_packer pk = s_packer(self);
    msgpack_pack_int64(&pk, value);
}

void
cd_pack_uint(cd_pack_t *self, uint64_t value)
{
    msgpack_packer pk = s_packer(self);
    msgpack_pack_uint64(&pk, value);
}

void
cd_pack_bool(cd_pack_t *self, bool value)
{
    msgpack_packer pk = s_packer(self);
    if (value) {
        msgpack_pack_true(&pk);
    } else {
        msgpack_pack_false(&pk);
    }
}

void
cd_pack_nil(cd_pack_t *self)
{
    msgpack_packer pk = s_packer(self);
    msgpack_pack_nil(&pk);
}

void
cd_pack_double(cd_pack_t *self, double value)
{
    msgpack_packer pk = s_packer(self);
    msgpack_pack_double(&pk, value);
}

void
cd_pack_raw(cd_pack_t *self, const void *ptr, size_t len)
{
    assert(self && (ptr || len == 0));
    s_write(&self->sbuf, ptr, len);
}

cd_bin_t
cd_pack_bytes(const cd_pack_t *self)
{
    assert(self);
    assert(self->sbuf.size <= UINT32_MAX);
    return (cd_bin_t){(const uint8_t *)self->sbuf.data, (uint32_t)self->sbuf.size};
}

//  -------------------------------------------------------------------------
//  Readers over a payload (bounds-checked like the decoder: a payload that
//  was validated once may still be handed here by mistake).

int
cd_msgpack_map_find(cd_bin_t map, const char *key, cd_bin_t *value)
{
    assert(key && value);
    const char *why;
    if (!map.ptr) {
        return CD_EPROTO;
    }
    mp_reader_t r = s_reader(map.ptr, map.len);
    mp_tok_t top;
    if (s_read_map(&r, &top, CD_ENV_MAX_ELEMS, "", "", &why) != 0) {
        return CD_EPROTO;
    }
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < top.len; i++) {
        mp_tok_t k;
        if (s_next(&r, &k, &why) != 0) {
            return CD_EPROTO;
        }
        bool match = k.type == MP_STR && k.len == klen && memcmp(k.ptr, key, klen) == 0;
        //  Keys may be containers: walk them like any value.
        if (s_walk(&r, &k, &why) != 0) {
            return CD_EPROTO;
        }
        const uint8_t *start = r.p;
        if (s_skip(&r, &why) != 0) {
            return CD_EPROTO;
        }
        if (match) {
            value->ptr = start;
            value->len = (uint32_t)(r.p - start);
            return 0;
        }
    }
    return CD_ENOTFOUND;
}

int
cd_msgpack_map_each(cd_bin_t map, cd_msgpack_entry_fn *fn, void *arg)
{
    assert(fn);
    const char *why;
    if (!map.ptr) {
        return CD_EPROTO;
    }
    mp_reader_t r = s_reader(map.ptr, map.len);
    mp_tok_t top;
    if (s_read_map(&r, &top, CD_ENV_MAX_ELEMS, "", "", &why) != 0) {
        return CD_EPROTO;
    }
    for (uint32_t i = 0; i < top.len; i++) {
        const uint8_t *kstart = r.p;
        if (s_skip(&r, &why) != 0) {
            return CD_EPROTO;
        }
        cd_bin_t key = {kstart, (uint32_t)(r.p - kstart)};
        const uint8_t *vstart = r.p;
        if (s_skip(&r, &why) != 0) {
            return CD_EPROTO;
        }
        cd_bin_t value = {vstart, (uint32_t)(r.p - vstart)};
        int rc = fn(key, value, arg);
        if (rc != 0) {
            return rc;
        }
    }
    return r.p == r.end ? 0 : CD_EPROTO;
}

//  Reads the one value `value` must hold exactly.
static int
s_read_only(cd_bin_t value, mp_tok_t *t)
{
    const char *why;
    if (!value.ptr) {
        return CD_EPROTO;
    }
    mp_reader_t r = s_reader(value.ptr, value.len);
    if (s_next(&r, t, &why) != 0 || r.p != r.end) {
        return CD_EPROTO;
    }
    return 0;
}

int
cd_msgpack_read_str(cd_bin_t value, cd_str_t *out)
{
    assert(out);
    mp_tok_t t;
    if (s_read_only(value, &t) != 0 || t.type != MP_STR) {
        return CD_EPROTO;
    }
    out->ptr = (const char *)t.ptr;
    out->len = t.len;
    return 0;
}

int
cd_msgpack_read_int(cd_bin_t value, int64_t *out)
{
    assert(out);
    mp_tok_t t;
    if (s_read_only(value, &t) != 0) {
        return CD_EPROTO;
    }
    if (t.type == MP_INT) {
        *out = t.i;
        return 0;
    }
    if (t.type != MP_UINT || t.u > INT64_MAX) {
        return CD_EPROTO;
    }
    *out = (int64_t)t.u;
    return 0;
}

int
cd_msgpack_read_bool(cd_bin_t value, bool *out)
{
    assert(out);
    mp_tok_t t;
    if (s_read_only(value, &t) != 0 || t.type != MP_BOOL) {
        return CD_EPROTO;
    }
    *out = t.u != 0;
    return 0;
}
