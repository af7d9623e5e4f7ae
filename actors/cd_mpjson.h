/*  cd_mpjson: msgpack values <-> jansson JSON, for agents.

    Step payloads are msgpack (cd_agent_proto.h); what agents do with them
    (a prompt template's variables, a child process's stdin, a provider's
    answer) is JSON. These two functions cross between them with a bounded
    reader of our own (only ipc/ includes <msgpack.h>): every declared
    length is checked against the bytes present before it is used, nesting
    is limited, and what JSON cannot say (non-string map keys, ext values,
    NaN, invalid UTF-8 text) is an error, never a crash.

    The HTTP layer has the same pair (http/cd_json.h); the layers may not
    share code sideways, so this is the actors' copy.

    Pure functions; any thread. */
#ifndef CD_ACTORS_MPJSON_H
#define CD_ACTORS_MPJSON_H

#include "cd_envelope.h"

#include <jansson.h>

#define CD_MPJSON_MAX_DEPTH 32 //  nesting of arrays and maps

//  Reads one msgpack value (exactly the bytes of value) into JSON. Returns
//  0 and sets *out (caller owns it), or CD_EPROTO (malformed, truncated,
//  trailing bytes, a non-string map key, an ext value, a non-finite float,
//  text that is not UTF-8), CD_EDEPTH (nesting beyond CD_MPJSON_MAX_DEPTH)
//  or CD_ETOOBIG (a count over CD_ENV_MAX_ELEMS), with *why (if not NULL)
//  set to a static string. bin values become strings when they are UTF-8.
int cd_mpjson_decode(cd_bin_t value, json_t **out, const char **why);

//  Appends value to pack as one msgpack value (reals as float64). Returns
//  0, or CD_EDEPTH beyond CD_MPJSON_MAX_DEPTH (pack then holds a partial
//  value: reset it).
int cd_mpjson_encode(const json_t *value, cd_pack_t *pack);

#endif
