/*  cd_routes: the route table, the one list of everything the HTTP API
    serves (cd_routes.c). The server routes by it; /openapi.json and its
    sync test walk it. */
#ifndef CD_HTTP_ROUTES_H
#define CD_HTTP_ROUTES_H

#include "cd_router.h"

//  The health, metrics and OpenAPI routes.
extern const cd_route_t cd_http_routes[];
extern const size_t cd_http_n_routes;

//  A family's routes (http/cd_routes_<family>.c).
typedef struct {
    const cd_route_t *routes; //  the table
    const size_t *n;          //  its length
} cd_route_table_t;

//  Every table the server routes by, cd_http_routes first.
extern const cd_route_table_t cd_http_route_tables[];
extern const size_t cd_http_n_route_tables;

//  The resource routes, one table per family. Their handler is
//  cd_http_route_api and their arg the api actor's operation name.
extern const cd_route_t cd_routes_catalog[];
extern const size_t cd_routes_catalog_n;
extern const cd_route_t cd_routes_agents[];
extern const size_t cd_routes_agents_n;
extern const cd_route_t cd_routes_projects[];
extern const size_t cd_routes_projects_n;
extern const cd_route_t cd_routes_misc[]; //  HITL, schedules, config, stats
extern const size_t cd_routes_misc_n;
extern const cd_route_t cd_routes_tasks[];
extern const size_t cd_routes_tasks_n;
extern const cd_route_t cd_routes_vault[]; //  system (vault) and connections
extern const size_t cd_routes_vault_n;
extern const cd_route_t cd_routes_auth[];
extern const size_t cd_routes_auth_n;

//  The resource routes' handler (cd_http_api.c): forwards to an api actor.
cd_route_fn cd_http_route_api;

#endif
