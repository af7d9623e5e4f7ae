/*  cd_routes: the route table, the one list of everything the HTTP API
    serves (cd_routes.c). The server routes by it; /openapi.json and its
    sync test walk it. */
#ifndef CD_HTTP_ROUTES_H
#define CD_HTTP_ROUTES_H

#include "cd_router.h"

extern const cd_route_t cd_http_routes[];
extern const size_t cd_http_n_routes;

#endif
