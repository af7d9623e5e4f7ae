/*  cd_routes_projects: projects, their status and artifacts (API.md
    "Projects"). Served by the api actors (actors/cd_api_projects.c),
    operation names in `arg`. A `user` sees only its own projects and
    their artifacts (another's is 404). */
#include "cd_routes.h"

#include <stdint.h>

#define S_OBJ(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define S_LIST(item)                                                                               \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" item "},"                                     \
          "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}")
#define S_TS "{\"type\":\"string\",\"format\":\"date-time\"}"
#define S_INT "{\"type\":\"integer\"}"

//  --- projects ---------------------------------------------------------------------

#define S_PROJECT                                                                                  \
    S_OBJ("\"id\":" S_INT ",\"name\":{\"type\":\"string\"},\"description\":{\"type\":\"string\"}," \
          "\"created_by\":{\"type\":\"integer\",\"nullable\":true},"                               \
          "\"created_at\":" S_TS ",\"updated_at\":" S_TS)

#define S_STATUS                                                                                   \
    S_OBJ("\"project_id\":" S_INT ",\"tasks\":" S_OBJ(                                             \
        "\"todo\":" S_INT ",\"in_progress\":" S_INT ",\"waiting_human\":" S_INT ",\"done\":" S_INT \
        ",\"failed\":" S_INT ",\"cancelled\":" S_INT) ",\"pending_hitl\":" S_INT                   \
                                                      ",\"agents_busy\":" S_INT)

static const cd_json_field_t s_project_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 200, "name"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what it is about"},
};
static const cd_json_schema_t s_project_create = {"ProjectCreate", s_project_create_fields, 2};

static const cd_json_field_t s_project_patch_fields[] = {
    {"name", CD_JSON_STRING, false, false, 1, 200, "name"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what it is about"},
};
static const cd_json_schema_t s_project_patch = {"ProjectPatch", s_project_patch_fields, 2};

//  --- artifacts --------------------------------------------------------------------

#define S_ARTIFACT                                                                                 \
    S_OBJ("\"id\":" S_INT ",\"project_id\":" S_INT                                                 \
          ",\"task_id\":{\"type\":\"integer\",\"nullable\":true},"                                 \
          "\"name\":{\"type\":\"string\"},\"content_type\":{\"type\":\"string\"},"                 \
          "\"size\":" S_INT ",\"created_by\":{\"type\":\"integer\",\"nullable\":true},"            \
          "\"created_at\":" S_TS)

static const cd_json_field_t s_artifact_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 255, "file name"},
    {"content_type", CD_JSON_STRING, false, false, 1, 255,
     "media type, printable ASCII (default text/plain; charset=utf-8 for content, "
     "application/octet-stream for content_base64)"},
    {"content", CD_JSON_STRING, false, false, 0, 0,
     "the content as text (stored as UTF-8); exactly one of content and content_base64"},
    {"content_base64", CD_JSON_STRING, false, false, 0, 0,
     "the content as standard base64 with padding; exactly one of content and content_base64"},
    {"task_id", CD_JSON_INTEGER, false, true, 1, INT64_MAX,
     "the task it came from; must be a task of this project"},
};
static const cd_json_schema_t s_artifact_create = {"ArtifactCreate", s_artifact_create_fields, 5};

const cd_route_t cd_routes_projects[] = {
    {"GET", "/api/v1/projects", cd_http_route_api, CD_ROUTE_AUTH, "List projects (a user: its own)",
     NULL, 200, NULL, S_LIST(S_PROJECT), "projects.list"},
    {"POST", "/api/v1/projects", cd_http_route_api, CD_ROUTE_AUTH, "Create a project",
     &s_project_create, 201, NULL, S_PROJECT, "projects.create"},
    {"GET", "/api/v1/projects/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get a project", NULL, 200,
     NULL, S_PROJECT, "projects.get"},
    {"PATCH", "/api/v1/projects/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Update a project",
     &s_project_patch, 200, NULL, S_PROJECT, "projects.patch"},
    {"DELETE", "/api/v1/projects/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Delete a project and its artifacts; 409 while it has tasks (archive them first)", NULL, 204,
     NULL, NULL, "projects.delete"},
    {"GET", "/api/v1/projects/{id}/status", cd_http_route_api, CD_ROUTE_AUTH,
     "Task counts by status, pending HITL requests, and agents_busy: the distinct agents holding "
     "one of its tasks in_progress",
     NULL, 200, NULL, S_STATUS, "projects.status"},
    {"GET", "/api/v1/projects/{id}/artifacts", cd_http_route_api, CD_ROUTE_AUTH,
     "List a project's artifacts (metadata), newest first", NULL, 200, NULL, S_LIST(S_ARTIFACT),
     "artifacts.list"},
    {"POST", "/api/v1/projects/{id}/artifacts", cd_http_route_api, CD_ROUTE_AUTH,
     "Store an artifact from content (text) or content_base64 (bytes), exactly one, within the "
     "request body limit; emits artifact.created {artifact_id, name, content_type, size} in the "
     "same commit; answers its metadata",
     &s_artifact_create, 201, NULL, S_ARTIFACT, "artifacts.create"},
    {"GET", "/api/v1/artifacts/{id}", cd_http_route_api, CD_ROUTE_AUTH, "An artifact's metadata",
     NULL, 200, NULL, S_ARTIFACT, "artifacts.get"},
    {"GET", "/api/v1/artifacts/{id}/content", cd_http_route_api, CD_ROUTE_AUTH,
     "An artifact's content: the raw bytes with its content type (413 if larger than one answer "
     "can carry, about 16 MiB), with X-Content-Type-Options: nosniff and, unless the type is JSON "
     "(application/json or +json), Content-Disposition: attachment under the artifact's name "
     "(an ASCII fallback with every other byte as _, and the name itself in filename*)",
     NULL, 200, "application/octet-stream", "{\"type\":\"string\",\"format\":\"binary\"}",
     "artifacts.content"},
};

const size_t cd_routes_projects_n = sizeof cd_routes_projects / sizeof cd_routes_projects[0];
