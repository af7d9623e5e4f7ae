/*  cd_routes_catalog: templates, roles, team types, teams (API.md
    "Templates, roles, teams"). Served by the api actors
    (actors/cd_api_catalog.c), operation names in `arg`. */
#include "cd_routes.h"

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
};

const size_t cd_routes_catalog_n = sizeof cd_routes_catalog / sizeof cd_routes_catalog[0];
