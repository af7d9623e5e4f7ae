/*  cd_json: JSON at the HTTP edge, with jansson.

    Request bodies are parsed strictly: the top level must be an object,
    duplicate keys, invalid UTF-8, NUL escapes, trailing bytes, integers
    that do not fit 64 bits and nesting deeper than CD_JSON_MAX_DEPTH are
    all `invalid_json` (checked before jansson builds anything, so absurd
    nesting never reaches its recursive parser). A parsed object is then
    checked against a schema: a small table of fields (name, type,
    required, bounds) that also feeds the OpenAPI document, so the checks
    and the published contract cannot drift. An unknown field or a wrong
    type is `validation_failed`, and the problem names the field.

    Error bodies are always {"error": {"code", "message", "details"}}
    (API.md).

    Between JSON and envelopes: cd_json_to_msgpack packs a JSON value as a
    msgpack payload; cd_json_from_msgpack reads an actor's msgpack reply
    back into JSON with its own bounded reader (only ipc/ includes
    <msgpack.h>), rejecting what JSON cannot say (non-string keys, ext
    values, invalid UTF-8 text).

    Pure functions; any thread. */
#ifndef CD_HTTP_JSON_H
#define CD_HTTP_JSON_H

#include "cd_envelope.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_JSON_MAX_DEPTH 32 //  nesting of arrays and objects in a body or reply

typedef enum {
    CD_JSON_ANY = 0, //  any JSON value
    CD_JSON_STRING,
    CD_JSON_INTEGER,
    CD_JSON_NUMBER, //  integer or real
    CD_JSON_BOOLEAN,
    CD_JSON_OBJECT,
    CD_JSON_ARRAY
} cd_json_type_t;

//  One field of an object schema.
typedef struct {
    const char *name;        //  key
    cd_json_type_t type;     //  expected type
    bool required;           //  must be present
    bool nullable;           //  null is accepted
    int64_t min;             //  integers: smallest value; strings: shortest length
    int64_t max;             //  integers: largest value; strings: longest length (0: no bound)
    const char *description; //  one line for the OpenAPI document
} cd_json_field_t;

//  A field named CD_JSON_OTHER_KEYS ("*") stands for every key the other
//  fields do not name (for bodies whose keys are data, like PATCH
//  /config): such keys are checked against it (type, null, bounds) and a
//  problem names the key itself. Without one, unknown keys are refused.
#define CD_JSON_OTHER_KEYS "*"

//  An object schema: its fields, nothing else is allowed.
typedef struct {
    const char *name;              //  component name in the OpenAPI document
    const cd_json_field_t *fields; //  the fields
    size_t n_fields;               //  entries in fields
} cd_json_schema_t;

//  What was wrong with a body. Strings are static or borrowed from the
//  schema (field) and valid while it is.
typedef struct {
    const char *code;   //  "invalid_json" or "validation_failed"
    const char *field;  //  the field at fault, or NULL
    const char *reason; //  what was wrong
    char text[224];     //  parser detail for invalid_json (line, column, why)
} cd_json_problem_t;

//  True if a Content-Type value is JSON: application/json, any case,
//  optionally with parameters ("; charset=utf-8").
bool cd_json_content_type_ok(const char *value, size_t len);

//  Parses a request body into an object. Returns 0 and sets *out (caller
//  owns it: json_decref), or CD_EPROTO with *problem filled (code
//  "invalid_json"; "validation_failed" when the JSON is valid but not an
//  object).
int cd_json_parse_body(const char *data, size_t size, json_t **out, cd_json_problem_t *problem);

//  Checks obj against schema. Returns 0, or CD_EINVAL with *problem filled
//  (code "validation_failed", field named).
int cd_json_validate(const json_t *obj, const cd_json_schema_t *schema, cd_json_problem_t *problem);

//  Builds the error body {"error":{"code","message","details"}}. Takes
//  ownership of details (may be NULL: an empty object). Returns a string
//  the caller frees (free()), and its length in *size.
char *cd_json_error_body(const char *code, const char *message, json_t *details, size_t *size);

//  Details object for a problem: {"field": ..., "reason": ...}. Caller owns
//  the result.
json_t *cd_json_problem_details(const cd_json_problem_t *problem);

//  JSON Schema (OpenAPI 3 flavour) of an object schema. Caller owns it.
json_t *cd_json_schema_doc(const cd_json_schema_t *schema);

//  Name of a type as JSON Schema spells it ("string", "integer", ...).
const char *cd_json_type_name(cd_json_type_t type);

//  Appends value to pack as one msgpack value. Reals become float64.
//  Returns 0, or CD_EDEPTH beyond CD_JSON_MAX_DEPTH.
int cd_json_to_msgpack(const json_t *value, cd_pack_t *pack);

//  Reads one msgpack value (exactly the bytes of value) into JSON. Returns
//  0 and sets *out (caller owns it), or CD_EPROTO (malformed, trailing
//  bytes, a non-string map key, an ext value, invalid UTF-8 text),
//  CD_EDEPTH (nesting), CD_ETOOBIG (a count over CD_ENV_MAX_ELEMS) with
//  *why set to a static string. bin values become strings when they are
//  UTF-8 text, else an error.
int cd_json_from_msgpack(cd_bin_t value, json_t **out, const char **why);

#endif
