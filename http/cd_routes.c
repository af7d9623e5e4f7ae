/*  cd_routes: the route table (see cd_routes.h). Resource routes join it
    as their modules are written. */
#include "cd_routes.h"
#include "cd_events.h"
#include "cd_health.h"

#define S_OBJECT(props) "{\"type\":\"object\",\"properties\":{" props "}}"

//  API.md's event.
#define S_EVENT                                                                                    \
    S_OBJECT("\"id\":{\"type\":\"integer\",\"nullable\":true},"                                    \
             "\"ts\":{\"type\":\"string\",\"format\":\"date-time\"},"                              \
             "\"type\":{\"type\":\"string\"},"                                                     \
             "\"project_id\":{\"type\":\"integer\",\"nullable\":true},"                            \
             "\"task_id\":{\"type\":\"integer\",\"nullable\":true},"                               \
             "\"agent\":{\"type\":\"string\",\"nullable\":true},"                                  \
             "\"data\":{\"type\":\"object\"}")

const cd_route_t cd_http_routes[] = {
    {"GET", "/health", cd_health_live, 0, "Liveness: 200 while the process runs", NULL, 200, NULL,
     S_OBJECT("\"status\":{\"type\":\"string\",\"enum\":[\"ok\"]}"), NULL},
    {"GET", "/health/ready", cd_health_ready, 0,
     "Readiness: core actors running and persist answering with the database reachable; else "
     "503 not_ready with the failing checks",
     NULL, 200, NULL, S_OBJECT("\"status\":{\"type\":\"string\",\"enum\":[\"ready\"]}"), NULL},
    {"GET", "/health/detailed", cd_health_detailed, 0,
     "Node status: version, node id, uptime, database, actors, persist figures and settings, "
     "checks",
     NULL, 200, NULL,
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
              "\"last_batch_ms\":{\"type\":\"number\",\"nullable\":true},"
              "\"settings\":{\"type\":\"object\",\"properties\":{"
              "\"batch_max\":{\"type\":\"integer\",\"nullable\":true},"
              "\"batch_wait_ms\":{\"type\":\"integer\",\"nullable\":true},"
              "\"queue_limit\":{\"type\":\"integer\",\"nullable\":true},"
              "\"wait_timeout_ms\":{\"type\":\"integer\",\"nullable\":true},"
              "\"events_retention_s\":{\"type\":\"integer\",\"nullable\":true},"
              "\"stats_retention_s\":{\"type\":\"integer\",\"nullable\":true}}}}},"
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
    {"GET", "/api/v1/events", cd_events_get, CD_ROUTE_AUTH,
     "Events. Accept: text/event-stream: Server-Sent Events (id:, event:, data: lines; "
     "\": ping\" when idle), replaying after Last-Event-ID or ?after= first, with no gap and no "
     "duplicate, then live; otherwise the persisted events as a list, ascending by id (?after= "
     "or ?cursor=, ?limit= 1..1000, default 50). Filters project_id, task_id, agent, types "
     "(comma list). A user sees only the events of its own tasks and projects (HITL and "
     "artifact events with them) and agent.status; another user's are absent, never an error",
     NULL, 200, NULL,
     S_OBJECT("\"items\":{\"type\":\"array\",\"items\":" S_EVENT "},"
              "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}"),
     NULL},
    {"GET", "/ws", cd_events_ws, CD_ROUTE_AUTH | CD_ROUTE_WS_AUTH,
     "Events over a WebSocket (HTTP/1.1 Upgrade): send {\"subscribe\": {project_id?, task_id?, "
     "agent?, types?}, \"after\": id?}; receive {\"subscribed\": true}, then one event JSON "
     "per text message (replayed after `after` first); bad messages get {\"error\": ...}. "
     "Credentials as on every route, or, from a browser (which cannot set headers on a "
     "WebSocket), an access token or API key as the subprotocol bearer.<token> "
     "(Sec-WebSocket-Protocol; echoed back as the chosen one) or as ?access_token=<token>; "
     "401 before the upgrade without valid ones. A user receives only its own tasks' and "
     "projects' events and agent.status",
     NULL, 101, NULL,
     "{\"type\":\"string\",\"description\":\"101 Switching Protocols; then WebSocket text "
     "messages, each an event (or {subscribed} / {error})\"}",
     NULL},
};

const size_t cd_http_n_routes = sizeof cd_http_routes / sizeof cd_http_routes[0];

const cd_route_table_t cd_http_route_tables[] = {
    {cd_http_routes, &cd_http_n_routes},
    {cd_routes_catalog, &cd_routes_catalog_n},
    {cd_routes_agents, &cd_routes_agents_n},
    {cd_routes_projects, &cd_routes_projects_n},
    {cd_routes_misc, &cd_routes_misc_n},
    {cd_routes_tasks, &cd_routes_tasks_n},
    {cd_routes_vault, &cd_routes_vault_n},
    {cd_routes_auth, &cd_routes_auth_n},
};

const size_t cd_http_n_route_tables = sizeof cd_http_route_tables / sizeof cd_http_route_tables[0];
