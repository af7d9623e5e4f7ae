/*  cd_router: the REST routes as one static table.

    A route is {method, path pattern, handler, flags} plus what the OpenAPI
    document needs (summary, body schema, response schema). Patterns are
    literal segments and `{param}` segments that match one non-empty
    segment: "/api/v1/agents/{name}/log". The router answers three ways: a
    route (with its parameters), no route for this path (404), or routes
    for this path but not this method (405, with the `Allow` list). HEAD is
    served by the GET route.

    The table is walkable (cd_router_size / cd_router_at), which is how
    /openapi.json is generated and how its test checks that every route is
    documented.

    Handlers see an opaque request context (cd_http_rctx_t, defined inside
    the HTTP layer), so this header and the route tables need no h2o. */
#ifndef CD_HTTP_ROUTER_H
#define CD_HTTP_ROUTER_H

#include "cd_json.h"

#include <stdbool.h>
#include <stddef.h>

#define CD_ROUTE_MAX_PARAMS 4    //  `{param}` segments in one pattern
#define CD_ROUTE_MAX_SEGMENTS 12 //  segments in one pattern
#define CD_ROUTE_ALLOW_MAX 96    //  the Allow header value

typedef struct cd_http_rctx cd_http_rctx_t;

//  Route flags.
enum {
    CD_ROUTE_AUTH = 1u << 0,       //  needs a token or API key (the auth hook runs)
    CD_ROUTE_ADMIN = 1u << 1,      //  admin only (implies CD_ROUTE_AUTH)
    CD_ROUTE_IDEMPOTENT = 1u << 2, //  safe to retry (Idempotency-Key honoured on POST)
    CD_ROUTE_LONG_POLL = 1u << 3,  //  the actor may take CD_ROUTE_LONG_POLL_MS more to answer
    CD_ROUTE_WS_AUTH = 1u << 4,    //  credentials may also come as a browser's WebSocket can
                                   //  send them (cd_auth.h)
    CD_ROUTE_NO_IDEM = 1u << 5,    //  Idempotency-Key ignored (cd_api_idem_ignored decides;
                                   //  this documents it, and a test keeps the two agreed)
    CD_ROUTE_MERGED = 1u << 6,     //  always served by api/0, where concurrent calls merge
};

#define CD_ROUTE_LONG_POLL_MS 35000 //  a long poll's wait (30 s at most) and a margin

//  A handler answers the request (now, or later from a callback) and
//  returns 0; a non-zero return means it answered nothing and the server
//  answers 500.
typedef int(cd_route_fn)(cd_http_rctx_t *rctx);

typedef struct {
    const char *method;           //  "GET", "POST", "PATCH", "DELETE", "PUT"
    const char *pattern;          //  "/api/v1/agents/{name}"
    cd_route_fn *handler;         //  answers it
    unsigned flags;               //  CD_ROUTE_*
    const char *summary;          //  one line for the OpenAPI document
    const cd_json_schema_t *body; //  request body schema (JSON object), or NULL: no body
    int status;                   //  success status (0: 200)
    const char *response_type;    //  media type of the success body (NULL: JSON)
    const char *response_schema;  //  JSON Schema of the success body, as JSON text, or NULL
    const void *arg;              //  handler-specific, borrowed
} cd_route_t;

typedef struct {
    const char *name;  //  parameter name (in the pattern, without braces)
    size_t name_len;   //  its length
    const char *value; //  the matching path segment, borrowed from the path
    size_t value_len;  //  its length
} cd_route_param_t;

typedef enum {
    CD_ROUTE_FOUND = 0, //  match->route is set
    CD_ROUTE_NO_PATH,   //  404
    CD_ROUTE_NO_METHOD  //  405; match->allow lists the methods
} cd_route_result_t;

typedef struct {
    const cd_route_t *route;                      //  the route, when found
    size_t index;                                 //  its index in the router
    cd_route_param_t params[CD_ROUTE_MAX_PARAMS]; //  its parameters, in pattern order
    size_t n_params;                              //  entries in params
    char allow[CD_ROUTE_ALLOW_MAX];               //  "GET, HEAD, POST" for a 405
} cd_route_match_t;

typedef struct cd_router cd_router_t;

//  Creates an empty router. Caller owns the result.
cd_router_t *cd_router_new(void);

void cd_router_destroy(cd_router_t **self_p);

//  Adds routes (borrowed: the table must outlive the router). Returns 0,
//  or CD_EINVAL if a pattern is malformed (no leading '/', an empty or
//  unterminated `{}`, too many segments or parameters) or a method and
//  pattern pair is already routed; nothing is added then.
int cd_router_add(cd_router_t *self, const cd_route_t *routes, size_t n);

//  Matches method and path (path without the query string). Parameters
//  borrow from path.
cd_route_result_t cd_router_match(const cd_router_t *self, const char *method, size_t method_len,
                                  const char *path, size_t path_len, cd_route_match_t *match);

//  Number of routes, and route i (0 <= i < size). Borrowed.
size_t cd_router_size(const cd_router_t *self);

const cd_route_t *cd_router_at(const cd_router_t *self, size_t i);

//  Looks a parameter of a match up by name. Returns its value (borrowed)
//  and length, or NULL.
const char *cd_route_param(const cd_route_match_t *match, const char *name, size_t *len);

//  True if a route needs the auth hook (CD_ROUTE_AUTH or CD_ROUTE_ADMIN).
bool cd_route_needs_auth(const cd_route_t *route);

#endif
