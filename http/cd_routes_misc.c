/*  cd_routes_misc: human-in-the-loop requests, schedules, configuration
    and statistics (API.md "Human in the loop", "Schedules",
    "Configuration and statistics"), one table. Served by the api actors
    (actors/cd_api_hitl.c, cd_api_schedules.c, cd_api_system.c),
    operation names in `arg`. */
#include "cd_routes.h"

#define S_OBJ(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define S_LIST(item)                                                                               \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" item "},"                                     \
          "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}")
#define S_TS "{\"type\":\"string\",\"format\":\"date-time\"}"
#define S_TS_NULL "{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true}"
#define S_INT_NULL "{\"type\":\"integer\",\"nullable\":true}"

//  --- human in the loop -----------------------------------------------------------

#define S_HITL                                                                                     \
    S_OBJ(                                                                                         \
        "\"id\":{\"type\":\"integer\"},\"task_id\":{\"type\":\"integer\"},"                        \
        "\"project_id\":{\"type\":\"integer\",\"nullable\":true},"                                 \
        "\"agent\":{\"type\":\"string\",\"nullable\":true},\"question\":{\"type\":\"string\"},"    \
        "\"options\":{\"type\":\"array\",\"nullable\":true},"                                      \
        "\"status\":{\"type\":\"string\",\"enum\":[\"pending\",\"answered\",\"expired\","          \
        "\"cancelled\"]},"                                                                         \
        "\"response\":{\"nullable\":true},\"approved\":{\"type\":\"boolean\",\"nullable\":true},"  \
        "\"deadline\":" S_TS_NULL ",\"on_timeout\":{\"type\":\"string\",\"enum\":[\"deny\","       \
        "\"approve\",\"fail\"]},\"created_at\":" S_TS ",\"answered_at\":" S_TS_NULL)

static const cd_json_field_t s_respond_fields[] = {
    {"response", CD_JSON_ANY, true, true, 0, 0, "the answer: any JSON value"},
    {"approved", CD_JSON_BOOLEAN, false, true, 0, 0, "approval, for yes/no questions"},
};
static const cd_json_schema_t s_respond = {"HitlResponse", s_respond_fields, 2};

#define S_FILTERS "; filters status (pending, answered, expired, cancelled), task_id"

//  --- schedules ------------------------------------------------------------------

#define S_TEMPLATE                                                                                 \
    S_OBJ("\"title\":{\"type\":\"string\"},\"description\":{\"type\":\"string\"},"                 \
          "\"priority\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},"                       \
          "\"project_id\":" S_INT_NULL ",\"assignee\":{\"type\":\"object\"},\"input\":{}")

#define S_SCHEDULE                                                                                 \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},"                          \
          "\"interval_s\":" S_INT_NULL ",\"cron\":{\"type\":\"string\",\"nullable\":true},"        \
          "\"task\":" S_TEMPLATE ",\"enabled\":{\"type\":\"boolean\"},"                            \
          "\"catch_up\":{\"type\":\"string\",\"enum\":[\"skip\",\"once\"]},"                       \
          "\"last_run_at\":" S_TS_NULL ",\"next_run_at\":" S_TS_NULL ","                           \
          "\"created_by\":" S_INT_NULL ",\"created_at\":" S_TS ",\"updated_at\":" S_TS)

#define S_TASK                                                                                     \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"title\":{\"type\":\"string\"},"                         \
          "\"description\":{\"type\":\"string\"},\"status\":{\"type\":\"string\"},"                \
          "\"priority\":{\"type\":\"integer\"},\"project_id\":" S_INT_NULL ","                     \
          "\"assignee\":{\"type\":\"object\"},\"input\":{},\"created_by\":" S_INT_NULL ","         \
          "\"created_at\":" S_TS)

#define S_FIELDS(req)                                                                              \
    {"name", CD_JSON_STRING, req, false, 1, 200, "a label"},                                       \
        {"interval_s",                                                                             \
         CD_JSON_INTEGER,                                                                          \
         false,                                                                                    \
         true,                                                                                     \
         1,                                                                                        \
         2147483647,                                                                               \
         "fire every this many seconds (exactly one of interval_s and cron)"},                     \
        {"cron",                                                                                   \
         CD_JSON_STRING,                                                                           \
         false,                                                                                    \
         true,                                                                                     \
         1,                                                                                        \
         200,                                                                                      \
         "five-field cron expression, in UTC: minute hour day month weekday"},                     \
        {"task",                                                                                   \
         CD_JSON_OBJECT,                                                                           \
         req,                                                                                      \
         false,                                                                                    \
         0,                                                                                        \
         0,                                                                                        \
         "the task each firing creates: {title, description?, priority?, project_id?, assignee, "  \
         "input?}"},                                                                               \
        {"enabled", CD_JSON_BOOLEAN, false, false, 0, 0, "a disabled schedule does not fire"},     \
    {                                                                                              \
        "catch_up", CD_JSON_STRING, false, false, 1, 4,                                            \
            "firings missed while no node ran: \"skip\" (default) or \"once\""                     \
    }

static const cd_json_field_t s_create_fields[] = {S_FIELDS(true)};
static const cd_json_schema_t s_create = {"ScheduleCreate", s_create_fields, 6};
static const cd_json_field_t s_patch_fields[] = {S_FIELDS(false)};
static const cd_json_schema_t s_patch = {"SchedulePatch", s_patch_fields, 6};

//  --- configuration and statistics ---------------------------------------------------

#define S_COUNTS "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}"

#define S_CONFIG "{\"type\":\"object\",\"additionalProperties\":true}"

#define S_COUNTERS                                                                                 \
    "\"tasks\":" S_COUNTS ",\"agents\":" S_COUNTS ",\"hitl_pending\":{\"type\":\"integer\"},"      \
    "\"schedules_enabled\":{\"type\":\"integer\"},\"events_total\":{\"type\":\"integer\"}"

#define S_STATS                                                                                    \
    S_OBJ("\"ts\":" S_TS ",\"node_id\":{\"type\":\"string\"},"                                     \
          "\"uptime_s\":{\"type\":\"number\",\"nullable\":true}," S_COUNTERS)

#define S_SNAPSHOT                                                                                 \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"ts\":" S_TS ","                                         \
          "\"node_id\":{\"type\":\"string\",\"nullable\":true},"                                   \
          "\"stats\":" S_OBJ(S_COUNTERS ",\"uptime_s\":{\"type\":\"number\"}"))

static const cd_json_field_t s_config_fields[] = {
    {CD_JSON_OTHER_KEYS, CD_JSON_ANY, false, true, 0, 0,
     "a config key (1-100 of a-z 0-9 _ . -) and its JSON value; null deletes the key"},
};
static const cd_json_schema_t s_config_patch = {"ConfigPatch", s_config_fields, 1};

const cd_route_t cd_routes_misc[] = {
    {"GET", "/api/v1/hitl", cd_http_route_api, CD_ROUTE_AUTH,
     "List HITL requests, newest first" S_FILTERS
     ", project_id; a user sees only the requests of its own tasks",
     NULL, 200, NULL, S_LIST(S_HITL), "hitl.list"},
    {"GET", "/api/v1/hitl/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get a HITL request", NULL, 200,
     NULL, S_HITL, "hitl.get"},
    {"POST", "/api/v1/hitl/{id}/respond", cd_http_route_api, CD_ROUTE_AUTH,
     "Answer a pending HITL request: it becomes answered and, if it was the last pending request "
     "of its task, the task goes from waiting_human back to in_progress, in one commit with the "
     "hitl.answered event and the task's hitl_answered history row; 409 conflict if the request "
     "is not pending",
     &s_respond, 200, NULL, S_HITL, "hitl.respond"},
    {"GET", "/api/v1/projects/{id}/hitl", cd_http_route_api, CD_ROUTE_AUTH,
     "List a project's HITL requests, newest first" S_FILTERS "; 404 for an unknown project", NULL,
     200, NULL, S_LIST(S_HITL), "hitl.project_list"},
    {"GET", "/api/v1/schedules", cd_http_route_api, CD_ROUTE_AUTH,
     "List schedules, newest first; a user sees only its own", NULL, 200, NULL, S_LIST(S_SCHEDULE),
     "schedules.list"},
    {"POST", "/api/v1/schedules", cd_http_route_api, CD_ROUTE_AUTH,
     "Create a schedule: exactly one of interval_s (first firing one interval after creation) "
     "and cron (UTC; 400 naming cron with the reason if it is invalid or never matches); "
     "next_run_at is null while disabled",
     &s_create, 201, NULL, S_SCHEDULE, "schedules.create"},
    {"GET", "/api/v1/schedules/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get a schedule", NULL, 200,
     NULL, S_SCHEDULE, "schedules.get"},
    {"PATCH", "/api/v1/schedules/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Update a schedule: a new interval_s clears cron and a new cron clears interval_s; "
     "next_run_at is recomputed when the trigger changes or it is enabled, and null while "
     "disabled; 409 if the schedule changed meanwhile",
     &s_patch, 200, NULL, S_SCHEDULE, "schedules.patch"},
    {"DELETE", "/api/v1/schedules/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Delete a schedule",
     NULL, 204, NULL, NULL, "schedules.delete"},
    {"POST", "/api/v1/schedules/{id}/run", cd_http_route_api, CD_ROUTE_AUTH,
     "Fire a schedule now (enabled or not): creates its task (task.created and schedule.fired "
     "events) and sets last_run_at; next_run_at stays. 201 with the task, Location "
     "/api/v1/tasks/{id}",
     NULL, 201, NULL, S_TASK, "schedules.run"},
    {"GET", "/api/v1/config", cd_http_route_api, CD_ROUTE_AUTH,
     "The configuration: {key: value, ...}", NULL, 200, NULL, S_CONFIG, "config.get"},
    {"PATCH", "/api/v1/config", cd_http_route_api, CD_ROUTE_ADMIN,
     "Set configuration keys to JSON values (a one-level merge patch: null deletes a key; keys "
     "are 1-100 of a-z 0-9 _ . -); answers the whole configuration after the commit",
     &s_config_patch, 200, NULL, S_CONFIG, "config.patch"},
    {"GET", "/api/v1/stats", cd_http_route_api, CD_ROUTE_AUTH,
     "Current counters: tasks and agents by status, pending HITL requests, enabled schedules, "
     "events so far (the newest event id), this node's id and uptime",
     NULL, 200, NULL, S_STATS, "stats.get"},
    {"GET", "/api/v1/stats/history", cd_http_route_api, CD_ROUTE_AUTH,
     "Snapshots of the counters, one per node per minute, oldest first; since= (RFC 3339) "
     "keeps those taken at or after it",
     NULL, 200, NULL, S_LIST(S_SNAPSHOT), "stats.history"},
};

const size_t cd_routes_misc_n = sizeof cd_routes_misc / sizeof cd_routes_misc[0];
