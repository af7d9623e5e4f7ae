/*  cd_openapi: the OpenAPI 3 document of the routes, generated from the
    router table (and each route's body and response schemas), so the
    published contract is the served one. Served at /openapi.json. */
#ifndef CD_HTTP_OPENAPI_H
#define CD_HTTP_OPENAPI_H

#include "cd_router.h"

#include <jansson.h>

//  Builds the document for every route of router. version is the API's
//  version string. Caller owns the result. A route whose response_schema
//  is not valid JSON is a bug in the route table: it asserts.
json_t *cd_openapi_document(const cd_router_t *router, const char *version);

//  The operation object of route in doc ("paths" -> pattern -> method in
//  lower case), or NULL. Borrowed from doc.
json_t *cd_openapi_operation(json_t *doc, const cd_route_t *route);

#endif
