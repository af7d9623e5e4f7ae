/*  cd_envelope: the handoff envelope and its msgpack codec.

    Every message between actors, nodes and workers is one msgpack map (see
    DESIGN.md, "The handoff envelope"):

      v          uint      envelope version, 1                       required
      id         bin(16)   message id                                required
      kind       str       task|handoff|result|error|hitl_request|
                           hitl_response|event|control|log           required
      from, to   str       actor names                               required
      task_id    int       0 if none                                 optional
      trace_id   bin(16)                                             optional
      parent_id  bin(16)                                             optional
      ts         int       microseconds since the epoch              optional
      attempt    uint      from 1                                    optional
      deadline   int       microseconds since the epoch, 0 = none    optional
      headers    map str->str                                        optional
      artifacts  array of {id:int, name:str, size:uint}              optional
      payload    bin or map                                          optional
      pframe     uint      1 = the payload is the next ZeroMQ frame,
                           as bin; 2 = as a msgpack map              optional

    Large payloads travel as a separate frame (`pframe`) so they are never
    copied into the envelope bytes; the receiver attaches that frame with
    cd_envelope_attach_payload().

    Decoding is a strict single pass over the bytes. msgpack-c's unpacker is
    never run on external input: it reserves memory for the sizes a message
    *declares* before checking that the bytes exist, so a 5-byte message can
    make it reserve gigabytes. Every declared length is checked against the
    bytes present and against the limits below before anything is used, and
    nothing is allocated: the decoded envelope is a set of views borrowed from
    the input buffer. Encoding uses msgpack-c's packer into a reused buffer. */
#ifndef CD_IPC_ENVELOPE_H
#define CD_IPC_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_ENV_VERSION 1
#define CD_ENV_UUID_SIZE 16
#define CD_ENV_MAX_SIZE (16u << 20)      //  whole encoded envelope (tcp ZMQ_MAXMSGSIZE too)
#define CD_ENV_MAX_NAME 256              //  from / to / kind / header key+value lengths
#define CD_ENV_MAX_HEADERS 16            //  entries in `headers`
#define CD_ENV_MAX_ARTIFACTS 16          //  entries in `artifacts`
#define CD_ENV_MAX_KEYS 64               //  keys of the top-level map and of one artifact
#define CD_ENV_MAX_DEPTH 32              //  nesting inside a map payload
#define CD_ENV_MAX_ELEMS 65536           //  entries of any one array or map in a payload
#define CD_ENV_LARGE_PAYLOAD (64u << 10) //  above this, payloads travel as their own frame

typedef enum {
    CD_KIND_NONE = 0,
    CD_KIND_TASK,
    CD_KIND_HANDOFF,
    CD_KIND_RESULT,
    CD_KIND_ERROR,
    CD_KIND_HITL_REQUEST,
    CD_KIND_HITL_RESPONSE,
    CD_KIND_EVENT,
    CD_KIND_CONTROL,
    CD_KIND_LOG,
    CD_KIND_COUNT_ //  number of kinds, not a kind
} cd_kind_t;

//  A string view: not NUL-terminated, borrowed from whoever owns the bytes.
typedef struct {
    const char *ptr; //  first byte, NULL when absent
    uint32_t len;    //  length in bytes
} cd_str_t;

//  A byte view, borrowed like cd_str_t.
typedef struct {
    const uint8_t *ptr; //  first byte, NULL when absent
    uint32_t len;       //  length in bytes
} cd_bin_t;

typedef struct {
    cd_str_t key;   //  header name
    cd_str_t value; //  header value
} cd_env_header_t;

typedef struct {
    int64_t id;    //  artifact id
    cd_str_t name; //  artifact name
    uint64_t size; //  its size in bytes
} cd_env_artifact_t;

typedef enum {
    CD_PAYLOAD_NONE = 0, //  no payload
    CD_PAYLOAD_BIN,      //  opaque bytes
    CD_PAYLOAD_MAP       //  a msgpack map; `payload` holds its encoded bytes
} cd_payload_type_t;

//  One envelope. Decoded envelopes borrow every view from the decoded buffer
//  (and from the attached payload frame); for encoding the caller fills the
//  views from memory it keeps alive until cd_envelope_encode returns.
//  The header/artifact arrays are only valid up to n_headers / n_artifacts;
//  the decoder does not clear the rest.
typedef struct cd_envelope {
    uint8_t id[CD_ENV_UUID_SIZE];                      //  message id
    cd_kind_t kind;                                    //  message kind
    cd_str_t from;                                     //  sender name
    cd_str_t to;                                       //  receiver name
    int64_t task_id;                                   //  task it belongs to, 0 if none
    uint8_t trace_id[CD_ENV_UUID_SIZE];                //  one per task run; all zero if absent
    uint8_t parent_id[CD_ENV_UUID_SIZE];               //  message this answers; all zero if absent
    int64_t ts;                                        //  µs since the epoch, 0 if absent
    uint32_t attempt;                                  //  delivery attempt, 0 if absent
    int64_t deadline;                                  //  µs since the epoch, 0 = none
    uint32_t n_headers;                                //  entries used in headers[]
    uint32_t n_artifacts;                              //  entries used in artifacts[]
    cd_payload_type_t payload_type;                    //  what payload holds
    bool payload_in_frame;                             //  payload travels as the next frame
    cd_bin_t payload;                                  //  payload bytes (map: its msgpack encoding)
    cd_env_header_t headers[CD_ENV_MAX_HEADERS];       //  optional headers
    cd_env_artifact_t artifacts[CD_ENV_MAX_ARTIFACTS]; //  optional artifact refs
} cd_envelope_t;

//  Reusable encode buffer. Encoding into the same buffer again reuses its
//  memory, so a sender that keeps one buffer allocates nothing per message.
typedef struct cd_envbuf cd_envbuf_t;

//  Caller owns the result. Aborts on out-of-memory (like czmq).
cd_envbuf_t *cd_envbuf_new(void);

//  Destroys the buffer and nulls *self_p. Safe on NULL and twice.
void cd_envbuf_destroy(cd_envbuf_t **self_p);

//  Encoded bytes of the last successful encode. Borrowed, valid until the
//  next encode into or destroy of this buffer.
const uint8_t *cd_envbuf_data(const cd_envbuf_t *self);

size_t cd_envbuf_size(const cd_envbuf_t *self);

//  Name of a kind ("task", "handoff", ...) or NULL for an invalid value.
const char *cd_kind_name(cd_kind_t kind);

//  Kind for a name, or CD_KIND_NONE if it names no kind.
cd_kind_t cd_kind_from_str(cd_str_t name);

//  A view of a NUL-terminated string (NULL gives an empty, absent view).
cd_str_t cd_str(const char *cstr);

//  True if the view holds exactly the bytes of cstr.
bool cd_str_eq(cd_str_t view, const char *cstr);

//  Finds the first header named key. Returns true and sets *value (if
//  value is non-NULL; borrowed like the envelope's other views) when found.
bool cd_envelope_header(const cd_envelope_t *env, const char *key, cd_str_t *value);

//  Encodes env into buf (replacing what buf held). If env->payload_in_frame
//  is set the payload bytes are not written, only `pframe`: the caller sends
//  them as the next frame. Optional fields that are zero are not written.
//  Returns 0, CD_EINVAL if a required field is missing or a value is out of
//  range (kind, empty from/to, name lengths, header/artifact counts, a view
//  with len but no ptr, a map payload that is not one valid msgpack map), or
//  CD_ETOOBIG if the result would exceed CD_ENV_MAX_SIZE (judged from an
//  upper bound of the size, at most a few hundred bytes above it). On
//  failure buf is left as it was. Any thread; buf must not be shared between
//  threads.
int cd_envelope_encode(const cd_envelope_t *env, cd_envbuf_t *buf);

//  Decodes one envelope from data[0..size). Every view in *env is borrowed
//  from data. On error returns CD_EPROTO (wrong type, duplicate or unknown
//  structure), CD_ETRUNC (input ends early), CD_ETOOBIG (a declared size or
//  count over a limit), CD_EVERSION (v != 1), CD_EDEPTH (payload nesting) or
//  CD_EINVAL (missing required key), and sets *why (if non-NULL) to a static
//  string naming what was wrong; *env is then unspecified. Never allocates.
//  Unknown top-level keys are skipped (after validation) so newer peers can
//  add optional fields. Integers may use any msgpack width or family if the
//  value fits the field; ext values are accepted (length-checked, not
//  interpreted) inside payloads and unknown values; payload map keys may be
//  of any type. Any thread.
int cd_envelope_decode(const uint8_t *data, size_t size, cd_envelope_t *env, const char **why);

//  Attaches the payload that travelled as its own frame to an envelope
//  decoded with payload_in_frame set; validates it as a msgpack map when the
//  envelope says so. The view is borrowed from data. Returns 0, CD_ESTATE if
//  the envelope announced no payload frame, or a decode error as above.
int cd_envelope_attach_payload(cd_envelope_t *env, const uint8_t *data, size_t size,
                               const char **why);

//  Reads only what routing needs (kind and to) without validating the rest:
//  a hop that only forwards uses this and passes the bytes on unchanged.
//  It stops as soon as it has both; values before them are skipped (bounds-
//  and limit-checked, not typed). *to is borrowed from data. Returns 0 or a
//  decode error (CD_EINVAL if kind or to is missing).
int cd_envelope_peek_route(const uint8_t *data, size_t size, cd_kind_t *kind, cd_str_t *to);

//  Validates that data[0..size) is exactly one well-formed msgpack value
//  within the payload limits (depth, element counts, sizes). Returns 0 or a
//  decode error with *why set.
int cd_msgpack_validate(const uint8_t *data, size_t size, const char **why);

//  Builds a message id: 8 random bytes fixed per generator followed by a
//  64-bit counter, so ids are unique without a syscall per message.
typedef struct {
    uint8_t prefix[8]; //  random, drawn once by cd_idgen_init
    uint64_t counter;  //  next counter value
} cd_idgen_t;

void cd_idgen_init(cd_idgen_t *gen);

void cd_idgen_next(cd_idgen_t *gen, uint8_t out[CD_ENV_UUID_SIZE]);

//  Small msgpack writer for payloads built by agents (so that no layer but
//  ipc includes <msgpack.h>). Writes into its own reusable buffer, which
//  cd_pack_reset clears. Aborts on out-of-memory; str/bin over 4 GiB and
//  NULL pointers with a non-zero length are caller bugs (assert).
typedef struct cd_pack cd_pack_t;

//  Caller owns the result. Aborts on out-of-memory.
cd_pack_t *cd_pack_new(void);

void cd_pack_destroy(cd_pack_t **self_p);

//  Clears what was written.
void cd_pack_reset(cd_pack_t *self);

void cd_pack_map(cd_pack_t *self, uint32_t n);
void cd_pack_array(cd_pack_t *self, uint32_t n);
void cd_pack_str(cd_pack_t *self, const char *ptr, size_t len);
void cd_pack_cstr(cd_pack_t *self, const char *cstr);
void cd_pack_bin(cd_pack_t *self, const void *ptr, size_t len);
void cd_pack_int(cd_pack_t *self, int64_t value);
void cd_pack_uint(cd_pack_t *self, uint64_t value);
void cd_pack_bool(cd_pack_t *self, bool value);
void cd_pack_nil(cd_pack_t *self);
void cd_pack_double(cd_pack_t *self, double value);
//  Appends bytes that are already one encoded msgpack value.
void cd_pack_raw(cd_pack_t *self, const void *ptr, size_t len);

//  What was written so far. Borrowed, valid until the next write or reset.
cd_bin_t cd_pack_bytes(const cd_pack_t *self);

//  Minimal reader over a validated map payload: finds a top-level key.
//  On success *value is a view of that key's encoded msgpack value, borrowed
//  from map. Only str keys match. Returns 0, CD_ENOTFOUND, or CD_EPROTO if
//  map is not a map (or is malformed up to the key).
int cd_msgpack_map_find(cd_bin_t map, const char *key, cd_bin_t *value);

//  Calls fn for every top-level entry of a map, in order, with views of
//  the key's and the value's encoded bytes (borrowed from map). Stops at
//  fn's first non-zero return and returns it. Returns 0, or CD_EPROTO if
//  map is not exactly one well-formed map.
typedef int(cd_msgpack_entry_fn)(cd_bin_t key, cd_bin_t value, void *arg);
int cd_msgpack_map_each(cd_bin_t map, cd_msgpack_entry_fn *fn, void *arg);

//  Reads a msgpack value as a string / signed integer / bool. value must
//  hold exactly one value (as cd_msgpack_map_find gives). A string view is
//  borrowed from value. Return 0, or CD_EPROTO on a type mismatch, an integer
//  that does not fit int64, or malformed bytes.
int cd_msgpack_read_str(cd_bin_t value, cd_str_t *out);
int cd_msgpack_read_int(cd_bin_t value, int64_t *out);
int cd_msgpack_read_bool(cd_bin_t value, bool *out);

#endif
