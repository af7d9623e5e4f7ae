/*  cd_routes_tasks: tasks, their history and archived tasks (API.md
    "Tasks"). Served by the api actors (actors/cd_api_tasks.c), operation
    names in `arg`.

    The schemas here check types and byte bounds before anything reaches
    an actor; what they cannot say (title length in characters, the shape
    of `assignee` and `budget`, a batch's elements) the actor checks. */
#include "cd_routes.h"

#include <stdint.h>

#define S_OBJ(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define S_LIST(item)                                                                               \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" item "},"                                     \
          "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}")
#define S_TS "{\"type\":\"string\",\"format\":\"date-time\"}"
#define S_TS_NULL "{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true}"
#define S_INT "{\"type\":\"integer\"}"
#define S_INT_NULL "{\"type\":\"integer\",\"nullable\":true}"
#define S_ANY "{\"nullable\":true}"

#define S_TASK_FIELDS                                                                              \
    "\"id\":" S_INT ",\"title\":{\"type\":\"string\"},\"description\":{\"type\":\"string\"},"      \
    "\"status\":{\"type\":\"string\",\"enum\":[\"todo\",\"in_progress\",\"waiting_human\","        \
    "\"done\",\"failed\",\"cancelled\"]},"                                                         \
    "\"priority\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},"                             \
    "\"project_id\":" S_INT_NULL ",\"assignee\":{\"type\":\"object\"},"                            \
    "\"agent\":{\"type\":\"string\",\"nullable\":true},"                                           \
    "\"input\":" S_ANY ",\"output\":" S_ANY ",\"error\":" S_ANY ",\"attempts\":" S_INT             \
    ",\"max_attempts\":" S_INT ",\"timeout_ms\":" S_INT                                            \
    ",\"budget\":{\"type\":\"object\",\"nullable\":true},\"usage\":{\"type\":\"object\"},"         \
    "\"created_by\":" S_INT_NULL ",\"created_at\":" S_TS ",\"started_at\":" S_TS_NULL              \
    ",\"finished_at\":" S_TS_NULL
#define S_TASK S_OBJ(S_TASK_FIELDS ",\"updated_at\":" S_TS)
#define S_ARCHIVED S_OBJ(S_TASK_FIELDS ",\"archived_at\":" S_TS ",\"archived_by\":" S_INT_NULL)
#define S_HISTORY                                                                                  \
    S_OBJ("\"seq\":" S_INT ",\"ts\":" S_TS ",\"kind\":{\"type\":\"string\",\"enum\":[\"created\"," \
          "\"assigned\",\"started\",\"handoff\",\"output\",\"hitl_requested\",\"hitl_answered\","  \
          "\"hitl_expired\",\"retry\",\"completed\",\"failed\",\"cancelled\"]},"                   \
          "\"from\":{\"type\":\"string\",\"nullable\":true},"                                      \
          "\"to\":{\"type\":\"string\",\"nullable\":true},"                                        \
          "\"status\":{\"type\":\"string\",\"nullable\":true},\"payload\":{\"type\":\"object\"}")

//  Byte bounds only: the characters are counted by the actor (a title is
//  1-500 characters, a description at most 100,000; UTF-8 takes up to 4
//  bytes each).
static const cd_json_field_t s_create_fields[] = {
    {"title", CD_JSON_STRING, true, false, 1, 2000, "1-500 characters"},
    {"description", CD_JSON_STRING, false, true, 0, 400000, "up to 100,000 characters"},
    {"priority", CD_JSON_INTEGER, false, true, 0, 9, "0 (low) to 9 (critical); default 5"},
    {"project_id", CD_JSON_INTEGER, false, true, 1, INT64_MAX,
     "a project (of the caller's, for a user)"},
    {"assignee", CD_JSON_OBJECT, true, false, 0, 0,
     "exactly one of {\"agent\": name}, {\"role\": name}, {\"team\": id}; it must exist"},
    {"input", CD_JSON_ANY, false, true, 0, 0, "the task's input, any JSON"},
    {"max_attempts", CD_JSON_INTEGER, false, true, 1, 100, "1-100; default 3"},
    {"timeout_ms", CD_JSON_INTEGER, false, true, 1, 604800000,
     "per attempt, 1 ms to 7 days; default 300000"},
    {"budget", CD_JSON_OBJECT, false, true, 0, 0,
     "{max_tokens?: integer >= 1, max_cost_usd?: number >= 0}"},
};
static const cd_json_schema_t s_create = {"TaskCreate", s_create_fields,
                                          sizeof s_create_fields / sizeof s_create_fields[0]};

static const cd_json_field_t s_batch_fields[] = {
    {"tasks", CD_JSON_ARRAY, true, false, 0, 0,
     "1-1000 TaskCreate objects; an element's fault is named tasks[i].field"},
};
static const cd_json_schema_t s_batch = {"TaskBatch", s_batch_fields, 1};

static const cd_json_field_t s_patch_fields[] = {
    {"title", CD_JSON_STRING, false, false, 1, 2000, "1-500 characters"},
    {"description", CD_JSON_STRING, false, false, 0, 400000, "up to 100,000 characters"},
    {"priority", CD_JSON_INTEGER, false, false, 0, 9, "0 (low) to 9 (critical)"},
};
static const cd_json_schema_t s_patch = {"TaskPatch", s_patch_fields, 3};

static const cd_json_field_t s_complete_fields[] = {
    {"step", CD_JSON_STRING, true, false, 1, 64, "the step's id, as the pull API gave it"},
    {"output", CD_JSON_ANY, false, true, 0, 0, "the step's output (any JSON)"},
    {"handoff_to", CD_JSON_STRING, false, true, 1, 64,
     "with output: the agent to run next, overriding the team pipeline"},
    {"error", CD_JSON_OBJECT, false, false, 0, 0,
     "{code, message?, retryable? (default false), retry_after_ms? (with code rate_limited: "
     "parks the task without counting the attempt)}"},
    {"hitl", CD_JSON_OBJECT, false, false, 0, 0,
     "{question, options?, timeout_s?, on_timeout? (deny, approve, fail)}: ask a human"},
};
static const cd_json_schema_t s_complete = {"TaskStepAnswer", s_complete_fields,
                                            sizeof s_complete_fields / sizeof s_complete_fields[0]};

const cd_route_t cd_routes_tasks[] = {
    {"POST", "/api/v1/tasks", cd_http_route_api, CD_ROUTE_AUTH | CD_ROUTE_MERGED,
     "Create a task (status todo), answered after the commit with its task.created event and "
     "history; an assignee or project that does not exist is 400 naming the field",
     &s_create, 201, NULL, S_TASK, "tasks.create"},
    {"POST", "/api/v1/tasks/batch", cd_http_route_api, CD_ROUTE_AUTH,
     "Create 1-1000 tasks in one transaction, all or nothing; items in request order", &s_batch,
     201, NULL, S_OBJ("\"items\":{\"type\":\"array\",\"items\":" S_TASK "}"), "tasks.batch"},
    {"GET", "/api/v1/tasks", cd_http_route_api, CD_ROUTE_AUTH,
     "List tasks, newest first; filters status, project_id, agent (assigned to or held by), "
     "priority_min, since (created_at >= an RFC 3339 time) combine with AND",
     NULL, 200, NULL, S_LIST(S_TASK), "tasks.list"},
    {"GET", "/api/v1/tasks/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get a task", NULL, 200, NULL,
     S_TASK, "tasks.get"},
    {"PATCH", "/api/v1/tasks/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Change title, description or priority of an unfinished task; a finished one is 409", &s_patch,
     200, NULL, S_TASK, "tasks.patch"},
    {"DELETE", "/api/v1/tasks/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Move a task to the archived tasks (its history stays readable)", NULL, 204, NULL, NULL,
     "tasks.delete"},
    {"POST", "/api/v1/tasks/{id}/cancel", cd_http_route_api, CD_ROUTE_AUTH,
     "Cancel an unfinished task (a finished one is 409); the task.cancelled event names the agent "
     "holding it, which tells it to stop",
     NULL, 200, NULL, S_TASK, "tasks.cancel"},
    {"POST", "/api/v1/tasks/{id}/retry", cd_http_route_api, CD_ROUTE_AUTH,
     "Put a failed or cancelled task back to todo (any other status is 409)", NULL, 200, NULL,
     S_TASK, "tasks.retry"},
    {"POST", "/api/v1/tasks/{id}/complete", cd_http_route_api, CD_ROUTE_AUTH,
     "Pull API: a worker's answer to the step it got from POST /api/v1/agents/{name}/next, with "
     "exactly one of output (the step's result; handoff_to optional), error or hitl (a question "
     "for a human). Answered after it is recorded: 200 {id, status} with the task's status then "
     "(in_progress: handed on; done; todo: to be retried; failed; waiting_human); 409 when that "
     "step is not the one in flight (timed out, cancelled, answered already)",
     &s_complete, 200, NULL, S_OBJ("\"id\":" S_INT ",\"status\":{\"type\":\"string\"}"),
     "tasks.complete"},
    {"GET", "/api/v1/tasks/{id}/history", cd_http_route_api, CD_ROUTE_AUTH,
     "A task's history in order (also of an archived task); limit defaults to 1000 here", NULL, 200,
     NULL, S_LIST(S_HISTORY), "tasks.history"},
    {"GET", "/api/v1/archived-tasks", cd_http_route_api, CD_ROUTE_AUTH,
     "List archived tasks, newest first; filter project_id", NULL, 200, NULL, S_LIST(S_ARCHIVED),
     "archived.list"},
    {"GET", "/api/v1/archived-tasks/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get an archived task",
     NULL, 200, NULL, S_ARCHIVED, "archived.get"},
};

const size_t cd_routes_tasks_n = sizeof cd_routes_tasks / sizeof cd_routes_tasks[0];
