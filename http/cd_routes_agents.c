/*  cd_routes_agents: the agents routes (API.md "Agents"), served by the
    api actors (actors/cd_api_agents.c). */
#include "cd_routes.h"

#define S_OBJ(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define S_TS "{\"type\":\"string\",\"format\":\"date-time\"}"
#define S_AGENT                                                                                    \
    S_OBJ("\"name\":{\"type\":\"string\"},"                                                        \
          "\"kind\":{\"type\":\"string\",\"enum\":[\"echo\",\"llm\",\"exec\",\"remote\"]},"        \
          "\"role\":{\"type\":\"string\",\"nullable\":true},"                                      \
          "\"status\":{\"type\":\"string\",\"enum\":[\"starting\",\"idle\",\"busy\",\"stopped\","  \
          "\"crashed\",\"offline\"]},"                                                             \
          "\"concurrency\":{\"type\":\"integer\"},\"config\":{\"type\":\"object\"},"               \
          "\"template_id\":{\"type\":\"integer\",\"nullable\":true},"                              \
          "\"node_id\":{\"type\":\"string\",\"nullable\":true},"                                   \
          "\"restarts\":{\"type\":\"integer\"},\"created_at\":" S_TS)
#define S_LIST(item)                                                                               \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" item "},"                                     \
          "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}")

static const cd_json_field_t s_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 64, "1-64 of [a-z0-9_-]; the agent's address"},
    {"kind", CD_JSON_STRING, true, false, 1, 16, "echo, llm, exec or remote"},
    {"role", CD_JSON_STRING, false, true, 1, 64, "a role name"},
    {"concurrency", CD_JSON_INTEGER, false, false, 1, 1024, "tasks it may hold at once (1)"},
    {"config", CD_JSON_OBJECT, false, true, 0, 0, "kind-specific settings (API.md)"},
    {"template_id", CD_JSON_INTEGER, false, true, 1, INT64_MAX, "its prompt template"},
};
static const cd_json_schema_t s_create = {"AgentCreate", s_create_fields, 6};

static const cd_json_field_t s_patch_fields[] = {
    {"kind", CD_JSON_STRING, false, false, 1, 16, "echo, llm, exec or remote"},
    {"role", CD_JSON_STRING, false, true, 1, 64, "a role name"},
    {"concurrency", CD_JSON_INTEGER, false, false, 1, 1024, "tasks it may hold at once"},
    {"config", CD_JSON_OBJECT, false, true, 0, 0, "kind-specific settings (API.md)"},
    {"template_id", CD_JSON_INTEGER, false, true, 1, INT64_MAX, "its prompt template"},
};
static const cd_json_schema_t s_patch = {"AgentPatch", s_patch_fields, 5};

#define S_LOG                                                                                      \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" S_OBJ(                                        \
        "\"ts\":" S_TS ",\"level\":{\"type\":\"string\"},\"msg\":{\"type\":\"string\"},"           \
        "\"fields\":{\"type\":\"object\"}") "}")

//  A task as the pull API hands it out, with the step to run.
#define S_STEP_TASK                                                                                \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"title\":{\"type\":\"string\"},"                         \
          "\"priority\":{\"type\":\"integer\"},\"project_id\":{\"type\":\"integer\","              \
          "\"nullable\":true},\"input\":{\"nullable\":true},\"attempts\":{\"type\":\"integer\"},"  \
          "\"max_attempts\":{\"type\":\"integer\"},\"timeout_ms\":{\"type\":\"integer\"},"         \
          "\"step\":" S_OBJ("\"id\":{\"type\":\"string\"},\"number\":{\"type\":\"integer\"},"      \
                            "\"stage\":{\"type\":\"integer\",\"nullable\":true},"                  \
                            "\"agent\":{\"type\":\"string\"},\"input\":{\"nullable\":true},"       \
                            "\"original\":{\"nullable\":true},\"hitl\":{\"type\":\"object\"},"     \
                            "\"deadline\":" S_TS))

const cd_route_t cd_routes_agents[] = {
    {"GET", "/api/v1/agents", cd_http_route_api, CD_ROUTE_AUTH,
     "List agents (filters role, kind, status; pages in name order)", NULL, 200, NULL,
     S_LIST(S_AGENT), "agents.list"},
    {"POST", "/api/v1/agents", cd_http_route_api, CD_ROUTE_ADMIN,
     "Create an agent; its actor runs under the supervisor when the 201 is sent (remote agents "
     "are stored offline until their worker connects)",
     &s_create, 201, NULL, S_AGENT, "agents.create"},
    {"GET", "/api/v1/agents/{name}", cd_http_route_api, CD_ROUTE_AUTH,
     "Get an agent, with its live status and restart count", NULL, 200, NULL, S_AGENT,
     "agents.get"},
    {"PATCH", "/api/v1/agents/{name}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Reconfigure an agent; its actor is restarted with the new settings", &s_patch, 200, NULL,
     S_AGENT, "agents.patch"},
    {"DELETE", "/api/v1/agents/{name}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Stop an agent and remove it", NULL, 204, NULL, NULL, "agents.delete"},
    {"POST", "/api/v1/agents/{name}/stop", cd_http_route_api, CD_ROUTE_ADMIN,
     "Stop the agent's actor (its queued messages become dead letters)", NULL, 202, NULL, S_AGENT,
     "agents.stop"},
    {"POST", "/api/v1/agents/{name}/start", cd_http_route_api, CD_ROUTE_ADMIN,
     "Start a stopped agent's actor", NULL, 202, NULL, S_AGENT, "agents.start"},
    {"POST", "/api/v1/agents/{name}/restart", cd_http_route_api, CD_ROUTE_ADMIN,
     "Restart the agent's actor", NULL, 202, NULL, S_AGENT, "agents.restart"},
    {"POST", "/api/v1/agents/{name}/next", cd_http_route_api, CD_ROUTE_AUTH | CD_ROUTE_LONG_POLL,
     "Pull API for an HTTP worker of a remote agent: claims the agent's next step (its task's "
     "highest-priority todo task, or a pipeline stage handed to it), long-polling up to "
     "?wait_ms= (0-30000, default 0; even 0 waits for the one claim the poll starts). 200: the "
     "task with \"step\": {id, number, stage, agent, input, original, hitl?, deadline}, which "
     "the worker answers with POST /api/v1/tasks/{id}/complete before the deadline (the task's "
     "timeout_ms); 204: nothing to do; 404: no remote agent of that name",
     NULL, 200, NULL, S_STEP_TASK, "agents.next"},
    {"GET", "/api/v1/agents/{name}/log", cd_http_route_api, CD_ROUTE_AUTH,
     "The agent's recent log lines, newest last (?limit=, at most 200)", NULL, 200, NULL, S_LOG,
     "agents.log"},
};

const size_t cd_routes_agents_n = sizeof cd_routes_agents / sizeof cd_routes_agents[0];
