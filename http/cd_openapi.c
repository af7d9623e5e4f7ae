/*  cd_openapi: OpenAPI 3.0 from the route table (see cd_openapi.h).

    One operation per route: its path parameters from the `{name}`
    segments, its security (none for public routes; bearer token or API
    key otherwise), its request body from the route's field schema (the
    same table the server validates bodies with, published under
    components/schemas), its success response from the route's status,
    media type and response schema, and the shared error response for
    every failure (API.md's {"error": {...}} shape). Admin-only and
    idempotent routes are marked with x-cadre-admin / x-cadre-idempotent. */
#include "cd_openapi.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

static void
s_lower(const char *in, char *out, size_t size)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++) {
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[i] = '\0';
}

//  "GET" "/api/v1/agents/{name}" -> "get_api_v1_agents_name"
static void
s_operation_id(const cd_route_t *route, char *out, size_t size)
{
    char method[16];
    s_lower(route->method, method, sizeof method);
    size_t used = (size_t)snprintf(out, size, "%s", method);
    bool sep = true;
    for (const char *c = route->pattern; *c && used + 2 < size; c++) {
        if (isalnum((unsigned char)*c)) {
            if (sep) {
                out[used++] = '_';
            }
            out[used++] = *c;
            sep = false;
        } else {
            sep = true;
        }
    }
    out[used] = '\0';
}

static json_t *
s_parameters(const cd_route_t *route)
{
    json_t *params = json_array();
    for (const char *at = strchr(route->pattern, '{'); at; at = strchr(at + 1, '{')) {
        const char *end = strchr(at, '}');
        if (!end) {
            break;
        }
        json_array_append_new(params, json_pack("{s:s%, s:s, s:b, s:{s:s}}", "name", at + 1,
                                                (size_t)(end - at - 1), "in", "path", "required", 1,
                                                "schema", "type", "string"));
    }
    return params;
}

static json_t *
s_operation(const cd_route_t *route, json_t *schemas)
{
    char id[160];
    s_operation_id(route, id, sizeof id);
    json_t *op = json_pack("{s:s, s:s}", "operationId", id, "summary",
                           route->summary ? route->summary : route->pattern);
    json_t *params = s_parameters(route);
    if (json_array_size(params)) {
        json_object_set_new(op, "parameters", params);
    } else {
        json_decref(params);
    }
    if (cd_route_needs_auth(route) && (route->flags & CD_ROUTE_WS_AUTH)) {
        json_object_set_new(op, "security",
                            json_pack("[{s:[]}, {s:[]}, {s:[]}, {s:[]}]", "bearerAuth", "apiKey",
                                      "webSocketProtocol", "accessToken"));
    } else if (cd_route_needs_auth(route)) {
        json_object_set_new(op, "security", json_pack("[{s:[]}, {s:[]}]", "bearerAuth", "apiKey"));
    } else {
        json_object_set_new(op, "security", json_array());
    }
    if (route->flags & CD_ROUTE_ADMIN) {
        json_object_set_new(op, "x-cadre-admin", json_true());
    }
    if (route->flags & CD_ROUTE_IDEMPOTENT) {
        json_object_set_new(op, "x-cadre-idempotent", json_true());
    }
    if (route->flags & CD_ROUTE_NO_IDEM) {
        json_object_set_new(op, "x-cadre-idempotency-key",
                            json_string("ignored: the body or the answer carries a secret "
                                        "(nothing of it is stored), or the operation acts on "
                                        "the receiving node only; a repeat runs again"));
    }
    if (route->body) {
        if (!json_object_get(schemas, route->body->name)) {
            json_object_set_new(schemas, route->body->name, cd_json_schema_doc(route->body));
        }
        char ref[160];
        snprintf(ref, sizeof ref, "#/components/schemas/%s", route->body->name);
        bool required = false;
        for (size_t i = 0; i < route->body->n_fields; i++) {
            required = required || route->body->fields[i].required;
        }
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b, s:{s:{s:{s:s}}}}", "required", required, "content",
                                      "application/json", "schema", "$ref", ref));
    }
    json_t *schema = NULL;
    if (route->response_schema) {
        json_error_t error;
        schema = json_loads(route->response_schema, 0, &error);
        assert(schema && "a route's response_schema is not valid JSON");
    }
    char status[8];
    snprintf(status, sizeof status, "%d", route->status ? route->status : 200);
    json_t *success = json_pack("{s:s}", "description", route->summary ? route->summary : "ok");
    if (strcmp(status, "204") != 0) {
        const char *type = route->response_type ? route->response_type : "application/json";
        json_object_set_new(
            success, "content",
            json_pack("{s:{s:o}}", type, "schema", schema ? schema : json_object()));
    } else {
        json_decref(schema);
    }
    json_object_set_new(op, "responses",
                        json_pack("{s:o, s:{s:s}}", status, success, "default", "$ref",
                                  "#/components/responses/Error"));
    return op;
}

json_t *
cd_openapi_document(const cd_router_t *router, const char *version)
{
    json_t *paths = json_object();
    json_t *schemas =
        json_pack("{s:{s:s, s:[s], s:{s:{s:s, s:[s, s], s:{s:{s:s}, s:{s:s}, s:{s:s}}}}}}", "Error",
                  "type", "object", "required", "error", "properties", "error", "type", "object",
                  "required", "code", "message", "properties", "code", "type", "string", "message",
                  "type", "string", "details", "type", "object");
    for (size_t i = 0; i < cd_router_size(router); i++) {
        const cd_route_t *route = cd_router_at(router, i);
        json_t *item = json_object_get(paths, route->pattern);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, route->pattern, item);
        }
        char method[16];
        s_lower(route->method, method, sizeof method);
        json_object_set_new(item, method, s_operation(route, schemas));
    }
    //  The last two schemes serve only WebSocket upgrades (CD_ROUTE_WS_AUTH).
    json_t *schemes = json_pack(
        "{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:s}}",
        "bearerAuth", "type", "http", "scheme", "bearer", "bearerFormat", "JWT", "apiKey", "type",
        "apiKey", "in", "header", "name", "X-API-Key", "webSocketProtocol", "type", "apiKey", "in",
        "header", "name", "Sec-WebSocket-Protocol", "description",
        "WebSocket upgrades only: an entry bearer.<access token or API key>; the server echoes "
        "it as the chosen subprotocol",
        "accessToken", "type", "apiKey", "in", "query", "name", "access_token", "description",
        "WebSocket upgrades only: an access token or API key, for browsers");
    return json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:o, s:{s:{s:s, s:{s:{s:{s:s}}}}}, s:o}}",
                     "openapi", "3.0.3", "info", "title", "cadre", "version", version,
                     "description",
                     "The cadre multi-agent orchestration engine's HTTP API (see API.md).", "paths",
                     paths, "components", "schemas", schemas, "responses", "Error", "description",
                     "An error: {\"error\": {\"code\", \"message\", \"details\"}}", "content",
                     "application/json", "schema", "$ref", "#/components/schemas/Error",
                     "securitySchemes", schemes);
}

json_t *
cd_openapi_operation(json_t *doc, const cd_route_t *route)
{
    char method[16];
    s_lower(route->method, method, sizeof method);
    return json_object_get(json_object_get(json_object_get(doc, "paths"), route->pattern), method);
}
