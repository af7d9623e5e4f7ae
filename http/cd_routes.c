/*  cd_routes: the route table (see cd_routes.h). Resource routes join it
    as their modules are written. */
#include "cd_routes.h"
#include "cd_health.h"

#define S_OBJECT(props) "{\"type\":\"object\",\"properties\":{" props "}}"

const cd_route_t cd_http_routes[] = {
    {"GET", "/health", cd_health_live, 0, "Liveness: 200 while the process runs", NULL, 200, NULL,
     S_OBJECT("\"status\":{\"type\":\"string\",\"enum\":[\"ok\"]}"), NULL},
    {"GET", "/health/ready", cd_health_ready, 0,
     "Readiness: core actors running and persist answering with the database reachable; else "
     "503 not_ready with the failing checks",
     NULL, 200, NULL, S_OBJECT("\"status\":{\"type\":\"string\",\"enum\":[\"ready\"]}"), NULL},
    {"GET", "/health/detailed", cd_health_detailed, 0,
     "Node status: version, node id, uptime, database, actors, persist figures, checks", NULL, 200,
     NULL,
     S_OBJECT("\"status\":{\"type\":\"string\",\"enum\":[\"ok\",\"degraded\"]},"
              "\"version\":{\"type\":\"string\"},"
              "\"node_id\":{\"type\":\"string\"},"
              "\"uptime_s\":{\"type\":\"number\"},"
              "\"db\":{\"type\":\"object\",\"properties\":{"
              "\"ok\":{\"type\":\"boolean\",\"nullable\":true},"
              "\"latency_ms\":{\"type\":\"number\",\"nullable\":true}}},"
              "\"actors\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
              "\"name\":{\"type\":\"string\"},\"status\":{\"type\":\"string\"},"
              "\"restarts\":{\"type\":\"integer\"},"
              "\"queue_depth\":{\"type\":\"integer\",\"nullable\":true}}}},"
              "\"persist\":{\"type\":\"object\",\"nullable\":true,\"properties\":{"
              "\"pending\":{\"type\":\"integer\",\"nullable\":true},"
              "\"batches\":{\"type\":\"integer\",\"nullable\":true},"
              "\"rows\":{\"type\":\"integer\",\"nullable\":true},"
              "\"last_batch_ms\":{\"type\":\"number\",\"nullable\":true}}},"
              "\"checks\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
              "\"name\":{\"type\":\"string\"},\"ok\":{\"type\":\"boolean\"},"
              "\"reason\":{\"type\":\"string\"}}}}"),
     NULL},
    {"GET", "/metrics", cd_health_metrics, 0,
     "Prometheus metrics: requests by route and status, latency histogram, limit hits, HTTP/2 "
     "guard closes, slow clients dropped, actor restarts and dead letters",
     NULL, 200, "text/plain; version=0.0.4", "{\"type\":\"string\"}", NULL},
    {"GET", "/openapi.json", cd_health_openapi, 0, "This document", NULL, 200, NULL,
     "{\"type\":\"object\"}", NULL},
};

const size_t cd_http_n_routes = sizeof cd_http_routes / sizeof cd_http_routes[0];

const cd_route_table_t cd_http_route_tables[] = {
    {cd_http_routes, &cd_http_n_routes},
    {cd_routes_catalog, &cd_routes_catalog_n},
    {cd_routes_tasks, &cd_routes_tasks_n},
};

const size_t cd_http_n_route_tables = sizeof cd_http_route_tables / sizeof cd_http_route_tables[0];
