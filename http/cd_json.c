/*  cd_json: strict request bodies, schema checks, error bodies, and the
    JSON <-> msgpack bridge (see cd_json.h).

    Nesting is measured by a scan of the raw bytes before jansson runs
    (jansson's parser recurses, and its own depth limit is 2048): a flat
    pass that tracks whether it is inside a string, so brackets inside
    strings do not count. Jansson then does the rest of the strictness:
    UTF-8, NUL escapes, duplicate keys (JSON_REJECT_DUPLICATES), trailing
    bytes and 64-bit integer overflow all fail the parse.

    The msgpack reader walks one value recursively, bounded by
    CD_JSON_MAX_DEPTH; every declared length and count is checked against
    the bytes left before anything is built, as ipc's decoder does. */
#include "cd_json.h"
#include "cd_mpjson.h"
#include "cd_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool
cd_json_content_type_ok(const char *value, size_t len)
{
    static const char type[] = "application/json";
    size_t n = sizeof type - 1;
    if (!value || len < n || strncasecmp(value, type, n) != 0) {
        return false;
    }
    //  Only parameters may follow: "application/jsonx" is another type.
    for (size_t i = n; i < len; i++) {
        if (value[i] == ';') {
            return true;
        }
        if (value[i] != ' ' && value[i] != '\t') {
            return false;
        }
    }
    return true;
}

static void
s_problem(cd_json_problem_t *problem, const char *code, const char *field, const char *reason)
{
    problem->code = code;
    problem->field = field;
    problem->reason = reason;
    problem->text[0] = '\0';
}

//  Deepest nesting of arrays and objects in data, stopping once past limit.
static int
s_depth(const char *data, size_t size, int limit)
{
    int depth = 0, deepest = 0;
    bool in_string = false;
    for (size_t i = 0; i < size && deepest <= limit; i++) {
        char c = data[i];
        if (in_string) {
            if (c == '\\') {
                i++; //  the escaped character cannot end the string
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest) {
                deepest = depth;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return deepest;
}

int
cd_json_parse_body(const char *data, size_t size, json_t **out, cd_json_problem_t *problem)
{
    *out = NULL;
    if (size == 0) {
        s_problem(problem, "invalid_json", NULL, "empty body");
        return CD_EPROTO;
    }
    if (s_depth(data, size, CD_JSON_MAX_DEPTH) > CD_JSON_MAX_DEPTH) {
        s_problem(problem, "invalid_json", NULL, "nesting too deep");
        snprintf(problem->text, sizeof problem->text, "nesting deeper than %d levels",
                 CD_JSON_MAX_DEPTH);
        return CD_EPROTO;
    }
    json_error_t error;
    json_t *value = json_loadb(data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (!value) {
        s_problem(problem, "invalid_json", NULL, "not valid JSON");
        snprintf(problem->text, sizeof problem->text, "line %d, column %d: %s", error.line,
                 error.column, error.text);
        return CD_EPROTO;
    }
    if (!json_is_object(value)) {
        json_decref(value);
        s_problem(problem, "validation_failed", NULL, "the body must be a JSON object");
        return CD_EPROTO;
    }
    *out = value;
    return 0;
}

const char *
cd_json_type_name(cd_json_type_t type)
{
    switch (type) {
    case CD_JSON_STRING:
        return "string";
    case CD_JSON_INTEGER:
        return "integer";
    case CD_JSON_NUMBER:
        return "number";
    case CD_JSON_BOOLEAN:
        return "boolean";
    case CD_JSON_OBJECT:
        return "object";
    case CD_JSON_ARRAY:
        return "array";
    default:
        return "any";
    }
}

static bool
s_type_ok(const json_t *value, cd_json_type_t type)
{
    switch (type) {
    case CD_JSON_STRING:
        return json_is_string(value);
    case CD_JSON_INTEGER:
        return json_is_integer(value);
    case CD_JSON_NUMBER:
        return json_is_number(value);
    case CD_JSON_BOOLEAN:
        return json_is_boolean(value);
    case CD_JSON_OBJECT:
        return json_is_object(value);
    case CD_JSON_ARRAY:
        return json_is_array(value);
    default:
        return true;
    }
}

static const char *
s_expected(cd_json_type_t type)
{
    switch (type) {
    case CD_JSON_STRING:
        return "must be a string";
    case CD_JSON_INTEGER:
        return "must be an integer";
    case CD_JSON_NUMBER:
        return "must be a number";
    case CD_JSON_BOOLEAN:
        return "must be a boolean";
    case CD_JSON_OBJECT:
        return "must be an object";
    case CD_JSON_ARRAY:
        return "must be an array";
    default:
        return "invalid value";
    }
}

//  Checks one present value against its field. NULL when fine.
static const char *
s_check_field(const cd_json_field_t *field, const json_t *value)
{
    if (json_is_null(value)) {
        return field->nullable ? NULL : "must not be null";
    }
    if (!s_type_ok(value, field->type)) {
        return s_expected(field->type);
    }
    if (field->type == CD_JSON_INTEGER && field->max > field->min) {
        json_int_t n = json_integer_value(value);
        if (n < field->min || n > field->max) {
            return "out of range";
        }
    }
    if (field->type == CD_JSON_STRING && field->max > 0) {
        size_t len = json_string_length(value);
        if ((int64_t)len < field->min || (int64_t)len > field->max) {
            return "length out of range";
        }
    }
    return NULL;
}

int
cd_json_validate(const json_t *obj, const cd_json_schema_t *schema, cd_json_problem_t *problem)
{
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)obj, key, value)
    {
        const cd_json_field_t *field = NULL, *other = NULL;
        for (size_t i = 0; i < schema->n_fields && !field; i++) {
            if (strcmp(schema->fields[i].name, key) == 0) {
                field = &schema->fields[i];
            } else if (strcmp(schema->fields[i].name, CD_JSON_OTHER_KEYS) == 0) {
                other = &schema->fields[i];
            }
        }
        //  Keys are borrowed from obj; the caller reports them before
        //  releasing obj.
        if (!field && !other) {
            s_problem(problem, "validation_failed", key, "unknown field");
            return CD_EINVAL;
        }
        const char *wrong = s_check_field(field ? field : other, value);
        if (wrong) {
            s_problem(problem, "validation_failed", field ? field->name : key, wrong);
            return CD_EINVAL;
        }
    }
    for (size_t i = 0; i < schema->n_fields; i++) {
        if (schema->fields[i].required && strcmp(schema->fields[i].name, CD_JSON_OTHER_KEYS) != 0 &&
            !json_object_get(obj, schema->fields[i].name)) {
            s_problem(problem, "validation_failed", schema->fields[i].name, "required");
            return CD_EINVAL;
        }
    }
    return 0;
}

static void *
s_need(void *ptr)
{
    if (!ptr) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return ptr;
}

char *
cd_json_error_body(const char *code, const char *message, json_t *details, size_t *size)
{
    json_t *body = s_need(json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message",
                                    message, "details", details ? details : json_object()));
    char *text = s_need(json_dumps(body, JSON_COMPACT));
    json_decref(body);
    *size = strlen(text);
    return text;
}

json_t *
cd_json_problem_details(const cd_json_problem_t *problem)
{
    json_t *details = s_need(json_object());
    if (problem->field) {
        json_object_set_new(details, "field", json_string(problem->field));
    }
    if (problem->reason) {
        json_object_set_new(details, "reason", json_string(problem->reason));
    }
    if (problem->text[0]) {
        json_object_set_new(details, "detail", json_string(problem->text));
    }
    return details;
}

json_t *
cd_json_schema_doc(const cd_json_schema_t *schema)
{
    json_t *properties = s_need(json_object());
    json_t *required = s_need(json_array());
    json_t *other = NULL; //  the schema of other keys, if any
    for (size_t i = 0; i < schema->n_fields; i++) {
        const cd_json_field_t *field = &schema->fields[i];
        json_t *prop = s_need(json_object());
        if (field->type != CD_JSON_ANY) {
            json_object_set_new(prop, "type", json_string(cd_json_type_name(field->type)));
        }
        if (field->nullable) {
            json_object_set_new(prop, "nullable", json_true());
        }
        if (field->type == CD_JSON_INTEGER && field->max > field->min) {
            json_object_set_new(prop, "minimum", json_integer(field->min));
            json_object_set_new(prop, "maximum", json_integer(field->max));
        }
        if (field->type == CD_JSON_STRING && field->max > 0) {
            json_object_set_new(prop, "minLength", json_integer(field->min));
            json_object_set_new(prop, "maxLength", json_integer(field->max));
        }
        if (field->description) {
            json_object_set_new(prop, "description", json_string(field->description));
        }
        if (strcmp(field->name, CD_JSON_OTHER_KEYS) == 0) {
            json_decref(other);
            other = prop;
            continue;
        }
        json_object_set_new(properties, field->name, prop);
        if (field->required) {
            json_array_append_new(required, json_string(field->name));
        }
    }
    json_t *doc = s_need(json_pack("{s:s, s:o, s:o}", "type", "object", "properties", properties,
                                   "additionalProperties", other ? other : json_false()));
    if (json_array_size(required)) {
        json_object_set_new(doc, "required", required);
    } else {
        json_decref(required);
    }
    return doc;
}

//  --- JSON <-> msgpack: the engine's converter (cd_mpjson) -----------------------

int
cd_json_to_msgpack(const json_t *value, cd_pack_t *pack)
{
    return cd_mpjson_encode(value, pack);
}

int
cd_json_from_msgpack(cd_bin_t value, json_t **out, const char **why)
{
    return cd_mpjson_decode(value, out, why);
}
