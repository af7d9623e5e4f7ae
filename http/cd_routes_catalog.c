/*  cd_routes_catalog: templates, roles, team types, teams (API.md
    "Templates, roles, teams"). Served by the api actors
    (actors/cd_api_catalog.c), operation names in `arg`. */
#include "cd_routes.h"

#include <stdint.h>

#define S_OBJ(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define S_LIST(item)                                                                               \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" item "},"                                     \
          "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}")
#define S_TS "{\"type\":\"string\",\"format\":\"date-time\"}"

//  --- templates -----------------------------------------------------------------

#define S_TEMPLATE                                                                                 \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},"                          \
          "\"description\":{\"type\":\"string\"},\"body\":{\"type\":\"string\"},"                  \
          "\"created_at\":" S_TS ",\"updated_at\":" S_TS)

static const cd_json_field_t s_template_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 200, "unique name"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what it is for"},
    {"body", CD_JSON_STRING, true, false, 0, 1000000, "text with {{variable}} placeholders"},
};
static const cd_json_schema_t s_template_create = {"TemplateCreate", s_template_create_fields, 3};

static const cd_json_field_t s_template_patch_fields[] = {
    {"name", CD_JSON_STRING, false, false, 1, 200, "unique name"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what it is for"},
    {"body", CD_JSON_STRING, false, false, 0, 1000000, "text with {{variable}} placeholders"},
};
static const cd_json_schema_t s_template_patch = {"TemplatePatch", s_template_patch_fields, 3};

static const cd_json_field_t s_render_fields[] = {
    {"variables", CD_JSON_OBJECT, true, false, 0, 0, "values for the placeholders"},
};
static const cd_json_schema_t s_render = {"TemplateRender", s_render_fields, 1};

//  --- roles, team types, teams ----------------------------------------------------

#define S_ID_MAX INT64_MAX

#define S_ROLE                                                                                     \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},"                          \
          "\"description\":{\"type\":\"string\"},"                                                 \
          "\"default_template_id\":{\"type\":\"integer\",\"nullable\":true},"                      \
          "\"created_at\":" S_TS ",\"updated_at\":" S_TS)

static const cd_json_field_t s_role_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 64, "unique name (agents and assignees use it)"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what the role does"},
    {"default_template_id", CD_JSON_INTEGER, false, true, 1, S_ID_MAX,
     "template its agents use unless they name one; must exist"},
};
static const cd_json_schema_t s_role_create = {"RoleCreate", s_role_create_fields, 3};

static const cd_json_field_t s_role_patch_fields[] = {
    {"name", CD_JSON_STRING, false, false, 1, 64, "unique name"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what the role does"},
    {"default_template_id", CD_JSON_INTEGER, false, true, 1, S_ID_MAX,
     "template id (must exist), or null"},
};
static const cd_json_schema_t s_role_patch = {"RolePatch", s_role_patch_fields, 3};

#define S_TEAM_TYPE                                                                                \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},"                          \
          "\"description\":{\"type\":\"string\"},"                                                 \
          "\"roles\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}},"                       \
          "\"created_at\":" S_TS ",\"updated_at\":" S_TS)

static const cd_json_field_t s_team_type_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 200, "unique name"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what the team does"},
    {"roles", CD_JSON_ARRAY, false, false, 0, 0,
     "role ids in pipeline order (at most 64; a role may repeat); each must exist"},
};
static const cd_json_schema_t s_team_type_create = {"TeamTypeCreate", s_team_type_create_fields, 3};

static const cd_json_field_t s_team_type_patch_fields[] = {
    {"name", CD_JSON_STRING, false, false, 1, 200, "unique name"},
    {"description", CD_JSON_STRING, false, false, 0, 10000, "what the team does"},
    {"roles", CD_JSON_ARRAY, false, false, 0, 0, "role ids in pipeline order; replaces the list"},
};
static const cd_json_schema_t s_team_type_patch = {"TeamTypePatch", s_team_type_patch_fields, 3};

#define S_TEAM                                                                                     \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},"                          \
          "\"team_type_id\":{\"type\":\"integer\"},"                                               \
          "\"members\":{\"type\":\"array\",\"items\":" S_OBJ(                                      \
              "\"agent\":{\"type\":\"string\"},\"role_id\":{\"type\":\"integer\"}") "},"           \
                                                                                    "\"created_"   \
                                                                                    "at\":" S_TS   \
                                                                                    ",\"updated_"  \
                                                                                    "at\":" S_TS)

static const cd_json_field_t s_team_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 200, "unique name"},
    {"team_type_id", CD_JSON_INTEGER, true, false, 1, S_ID_MAX, "its team type; must exist"},
    {"members", CD_JSON_ARRAY, false, false, 0, 0,
     "[{agent, role_id}] (at most 1000; agents and roles must exist; an agent once)"},
};
static const cd_json_schema_t s_team_create = {"TeamCreate", s_team_create_fields, 3};

static const cd_json_field_t s_team_patch_fields[] = {
    {"name", CD_JSON_STRING, false, false, 1, 200, "unique name"},
    {"team_type_id", CD_JSON_INTEGER, false, false, 1, S_ID_MAX, "its team type; must exist"},
    {"members", CD_JSON_ARRAY, false, false, 0, 0,
     "[{agent, role_id}]; replaces the list (an agent that stays keeps its place)"},
};
static const cd_json_schema_t s_team_patch = {"TeamPatch", s_team_patch_fields, 3};

static const cd_json_field_t s_member_fields[] = {
    {"agent", CD_JSON_STRING, true, false, 1, 64, "agent name; must exist"},
    {"role_id", CD_JSON_INTEGER, true, false, 1, S_ID_MAX, "its role in the team; must exist"},
};
static const cd_json_schema_t s_member = {"TeamMember", s_member_fields, 2};

const cd_route_t cd_routes_catalog[] = {
    {"GET", "/api/v1/templates", cd_http_route_api, CD_ROUTE_AUTH, "List templates", NULL, 200,
     NULL, S_LIST(S_TEMPLATE), "templates.list"},
    {"POST", "/api/v1/templates", cd_http_route_api, CD_ROUTE_ADMIN, "Create a template",
     &s_template_create, 201, NULL, S_TEMPLATE, "templates.create"},
    {"GET", "/api/v1/templates/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get a template", NULL, 200,
     NULL, S_TEMPLATE, "templates.get"},
    {"PATCH", "/api/v1/templates/{id}", cd_http_route_api, CD_ROUTE_ADMIN, "Update a template",
     &s_template_patch, 200, NULL, S_TEMPLATE, "templates.patch"},
    {"DELETE", "/api/v1/templates/{id}", cd_http_route_api, CD_ROUTE_ADMIN, "Delete a template",
     NULL, 204, NULL, NULL, "templates.delete"},
    {"POST", "/api/v1/templates/{id}/render", cd_http_route_api, CD_ROUTE_AUTH,
     "Render a template with variables; 400 missing_variable names a missing one", &s_render, 200,
     NULL, S_OBJ("\"text\":{\"type\":\"string\"}"), "templates.render"},

    {"GET", "/api/v1/roles", cd_http_route_api, CD_ROUTE_AUTH, "List roles", NULL, 200, NULL,
     S_LIST(S_ROLE), "roles.list"},
    {"POST", "/api/v1/roles", cd_http_route_api, CD_ROUTE_ADMIN,
     "Create a role; 400 naming default_template_id if no such template", &s_role_create, 201, NULL,
     S_ROLE, "roles.create"},
    {"GET", "/api/v1/roles/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get a role", NULL, 200, NULL,
     S_ROLE, "roles.get"},
    {"PATCH", "/api/v1/roles/{id}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Update a role; 400 naming default_template_id if no such template", &s_role_patch, 200, NULL,
     S_ROLE, "roles.patch"},
    {"DELETE", "/api/v1/roles/{id}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Delete a role; 409 while a team type or a team member uses it (its agents keep the name)",
     NULL, 204, NULL, NULL, "roles.delete"},

    {"GET", "/api/v1/team-types", cd_http_route_api, CD_ROUTE_AUTH, "List team types", NULL, 200,
     NULL, S_LIST(S_TEAM_TYPE), "team_types.list"},
    {"POST", "/api/v1/team-types", cd_http_route_api, CD_ROUTE_ADMIN,
     "Create a team type with its roles in pipeline order (one statement); 400 naming roles for "
     "an unknown role",
     &s_team_type_create, 201, NULL, S_TEAM_TYPE, "team_types.create"},
    {"GET", "/api/v1/team-types/{id}", cd_http_route_api, CD_ROUTE_AUTH, "Get a team type", NULL,
     200, NULL, S_TEAM_TYPE, "team_types.get"},
    {"PATCH", "/api/v1/team-types/{id}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Update a team type; roles, if given, replaces the pipeline", &s_team_type_patch, 200, NULL,
     S_TEAM_TYPE, "team_types.patch"},
    {"DELETE", "/api/v1/team-types/{id}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Delete a team type; 409 while a team uses it", NULL, 204, NULL, NULL, "team_types.delete"},

    {"GET", "/api/v1/teams", cd_http_route_api, CD_ROUTE_AUTH, "List teams", NULL, 200, NULL,
     S_LIST(S_TEAM), "teams.list"},
    {"POST", "/api/v1/teams", cd_http_route_api, CD_ROUTE_ADMIN,
     "Create a team with its members; 400 naming team_type_id or members for an unknown team "
     "type, agent or role",
     &s_team_create, 201, NULL, S_TEAM, "teams.create"},
    {"GET", "/api/v1/teams/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Get a team; members in the order they joined", NULL, 200, NULL, S_TEAM, "teams.get"},
    {"PATCH", "/api/v1/teams/{id}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Update a team; members, if given, replaces the list", &s_team_patch, 200, NULL, S_TEAM,
     "teams.patch"},
    {"DELETE", "/api/v1/teams/{id}", cd_http_route_api, CD_ROUTE_ADMIN, "Delete a team", NULL, 204,
     NULL, NULL, "teams.delete"},
    {"POST", "/api/v1/teams/{id}/members", cd_http_route_api, CD_ROUTE_ADMIN,
     "Add an agent to a team, or change its role if it is a member; 201 with the whole team and "
     "the member's Location (/api/v1/teams/{id}/members/{agent}); 404 for no such team; 400 "
     "naming agent or role_id if it does not exist",
     &s_member, 201, NULL, S_TEAM, "teams.member_add"},
    {"DELETE", "/api/v1/teams/{id}/members/{agent}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Remove an agent from a team; 404 if it is not a member", NULL, 204, NULL, NULL,
     "teams.member_remove"},
};

const size_t cd_routes_catalog_n = sizeof cd_routes_catalog / sizeof cd_routes_catalog[0];
