/*  cd_api_catalog: templates (+render), roles, team types and teams
    (+members) for the REST API (API.md "Templates, roles, teams").

    Reads run on the api actor's connection (db/cd_q_catalog); writes go
    to persist by statement name (cd_q_catalog_writes) and are answered
    after the commit. Bodies arrive checked against the route's schema
    (unknown fields, types, lengths); what a schema cannot say (the items
    of `roles` and `members`) is checked here. Whether a referenced row
    exists is checked by the write statement itself: it writes nothing and
    answers {"invalid": {field, reason}}, which becomes 400
    validation_failed naming the field (db/cd_q_catalog.h). */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_catalog.h"
#include "cd_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --- shared shapes ---------------------------------------------------------------

//  Answers 400 if a write's result is INVALID ({"invalid": {field,
//  reason}}: the body names a row that does not exist). Returns true if
//  it answered.
static bool
s_invalid_answered(cd_api_req_t *req, const char *value)
{
    if (strncmp(value, "{\"invalid\"", 10) != 0) {
        return false;
    }
    json_t *row = json_loads(value, 0, NULL);
    json_t *invalid = json_object_get(row, "invalid");
    const char *field = json_string_value(json_object_get(invalid, "field"));
    const char *reason = json_string_value(json_object_get(invalid, "reason"));
    cd_api_invalid(req, field ? field : "body",
                   reason ? reason : "names an object that does not exist");
    json_decref(row);
    return true;
}

//  After a create: as cd_api_on_created, or 400 for an INVALID answer.
static void
s_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == 0 && res->value && s_invalid_answered(req, res->value)) {
        return;
    }
    cd_api_on_created(req, res, arg);
}

//  After an update: 200 with the row, 404 when no row matched, 400 for an
//  INVALID answer.
static void
s_updated(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such object", NULL);
    } else if (!s_invalid_answered(req, res->value)) {
        cd_api_reply_text(req, 200, res->value, NULL);
    }
}

//  Sends the body as the statement's one parameter.
static int
s_create(cd_api_req_t *req, const char *stmt, const char *location_prefix)
{
    const char *params[] = {cd_api_body_text(req)};
    int rc = cd_api_write(req, stmt, 1, params, s_created, (void *)location_prefix);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

//  Sends ($1 = path id, $2 = body).
static int
s_patch(cd_api_req_t *req, const char *stmt)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    const char *params[] = {idbuf, cd_api_body_text(req)};
    int rc = cd_api_write(req, stmt, 2, params, s_updated, NULL);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

//  Sends ($1 = path id). in_use: the 409 message when the row is still
//  referenced (NULL: the generic one).
static int
s_delete(cd_api_req_t *req, const char *stmt, const char *in_use)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    const char *params[] = {idbuf};
    int rc = cd_api_write(req, stmt, 1, params, cd_api_on_deleted, (void *)in_use);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

//  --- templates --------------------------------------------------------------------

static int
s_templates_list(cd_api_req_t *req)
{
    return cd_api_list(req, cd_q_templates_list);
}

static int
s_templates_create(cd_api_req_t *req)
{
    return s_create(req, "templates.insert", "/api/v1/templates");
}

static int
s_templates_get(cd_api_req_t *req)
{
    return cd_api_get(req, cd_q_templates_get);
}

static int
s_templates_patch(cd_api_req_t *req)
{
    return s_patch(req, "templates.patch");
}

static int
s_templates_delete(cd_api_req_t *req)
{
    return s_delete(req, "templates.delete", NULL);
}

static int
s_templates_render(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_templates_get(db, id, &row);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *template = json_loads(row, 0, NULL);
    free(row);
    json_t *variables = json_object_get(cd_api_body(req), "variables");
    char *missing = NULL;
    const char *body = json_string_value(json_object_get(template, "body"));
    char *text = cd_template_render(body ? body : "", variables, &missing);
    json_decref(template);
    if (!text) {
        char message[200];
        snprintf(message, sizeof message, "the template needs variable '%.100s'", missing);
        cd_api_error(req, 400, "missing_variable", message,
                     json_pack("{s:s, s:s}", "field", "variables", "variable", missing));
        free(missing);
        return 0;
    }
    cd_api_reply_json(req, 200, json_pack("{s:s}", "text", text), NULL);
    free(text);
    return 0;
}

//  --- roles ------------------------------------------------------------------------

static int
s_roles_list(cd_api_req_t *req)
{
    return cd_api_list(req, cd_q_roles_list);
}

static int
s_roles_create(cd_api_req_t *req)
{
    return s_create(req, "roles.insert", "/api/v1/roles");
}

static int
s_role_get_by_id(cd_db_t *db, int64_t id, char **out)
{
    return cd_q_roles_get(db, id, NULL, out);
}

static int
s_roles_get(cd_api_req_t *req)
{
    return cd_api_get(req, s_role_get_by_id);
}

static int
s_roles_patch(cd_api_req_t *req)
{
    return s_patch(req, "roles.patch");
}

static int
s_roles_delete(cd_api_req_t *req)
{
    return s_delete(req, "roles.delete", "the role is still used by a team type or a team member");
}

//  --- team types ---------------------------------------------------------------------

#define S_MAX_ROLES 64     //  stages of one pipeline
#define S_MAX_MEMBERS 1000 //  members of one team

//  The body's `roles`, if present, must be an array of at most S_MAX_ROLES
//  role ids. Returns false after answering 400.
static bool
s_roles_ok(cd_api_req_t *req)
{
    json_t *roles = json_object_get(cd_api_body(req), "roles");
    if (!roles) {
        return true;
    }
    if (json_array_size(roles) > S_MAX_ROLES) {
        cd_api_invalid(req, "roles", "at most 64 roles");
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
            cd_api_invalid(req, "roles", "must be an array of role ids (positive integers)");
            return false;
        }
    }
    return true;
}

static int
s_team_types_list(cd_api_req_t *req)
{
    return cd_api_list(req, cd_q_team_types_list);
}

static int
s_team_types_create(cd_api_req_t *req)
{
    if (!s_roles_ok(req)) {
        return 0;
    }
    return s_create(req, "team_types.insert", "/api/v1/team-types");
}

static int
s_team_types_get(cd_api_req_t *req)
{
    return cd_api_get(req, cd_q_team_types_get);
}

static int
s_team_types_patch(cd_api_req_t *req)
{
    if (!s_roles_ok(req)) {
        return 0;
    }
    return s_patch(req, "team_types.patch");
}

static int
s_team_types_delete(cd_api_req_t *req)
{
    return s_delete(req, "team_types.delete", "the team type is still used by a team");
}

//  --- teams --------------------------------------------------------------------------

//  The body's `members`, if present, must be an array of at most
//  S_MAX_MEMBERS objects {agent: name, role_id: id} with no other keys.
//  Returns false after answering 400.
static bool
s_members_ok(cd_api_req_t *req)
{
    json_t *members = json_object_get(cd_api_body(req), "members");
    if (!members) {
        return true;
    }
    if (json_array_size(members) > S_MAX_MEMBERS) {
        cd_api_invalid(req, "members", "at most 1000 members");
        return false;
    }
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        json_t *agent = json_object_get(m, "agent");
        json_t *role = json_object_get(m, "role_id");
        if (!json_is_object(m) || json_object_size(m) != 2 || !json_is_string(agent) ||
            json_string_length(agent) < 1 || json_string_length(agent) > 64 ||
            !json_is_integer(role) || json_integer_value(role) <= 0) {
            cd_api_invalid(req, "members",
                           "must be an array of {\"agent\": name, \"role_id\": id} objects");
            return false;
        }
    }
    return true;
}

static int
s_teams_list(cd_api_req_t *req)
{
    return cd_api_list(req, cd_q_teams_list);
}

static int
s_teams_create(cd_api_req_t *req)
{
    if (!s_members_ok(req)) {
        return 0;
    }
    return s_create(req, "teams.insert", "/api/v1/teams");
}

static int
s_teams_get(cd_api_req_t *req)
{
    return cd_api_get(req, cd_q_teams_get);
}

static int
s_teams_patch(cd_api_req_t *req)
{
    if (!s_members_ok(req)) {
        return 0;
    }
    return s_patch(req, "teams.patch");
}

static int
s_teams_delete(cd_api_req_t *req)
{
    return s_delete(req, "teams.delete", NULL);
}

//  After a member add: 201 with the team and the member's Location, 404
//  for no such team, 400 for an unknown agent or role.
static void
s_member_added(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such team", NULL);
    } else if (!s_invalid_answered(req, res->value)) {
        //  The agent exists, so its name is [a-z0-9_-]: safe in a path.
        json_t *team = json_loads(res->value, 0, NULL);
        char location[160];
        snprintf(location, sizeof location, "/api/v1/teams/%lld/members/%s",
                 (long long)json_integer_value(json_object_get(team, "id")),
                 json_string_value(json_object_get(cd_api_body(req), "agent")));
        json_decref(team);
        cd_api_reply_text(req, 201, res->value, location);
    }
}

static int
s_teams_member_add(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    json_t *body = cd_api_body(req);
    char idbuf[24], rolebuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    snprintf(rolebuf, sizeof rolebuf, "%lld",
             (long long)json_integer_value(json_object_get(body, "role_id")));
    const char *params[] = {idbuf, json_string_value(json_object_get(body, "agent")), rolebuf};
    int rc = cd_api_write(req, "teams.member_add", 3, params, s_member_added, NULL);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

static int
s_teams_member_remove(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    const char *params[] = {idbuf, cd_api_param(req, "agent")};
    int rc = cd_api_write(req, "teams.member_remove", 2, params, cd_api_on_deleted, NULL);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

//  --- the module ---------------------------------------------------------------------

static const cd_api_op_t s_ops[] = {
    {"templates.list", s_templates_list},
    {"templates.create", s_templates_create},
    {"templates.get", s_templates_get},
    {"templates.patch", s_templates_patch},
    {"templates.delete", s_templates_delete},
    {"templates.render", s_templates_render},
    {"roles.list", s_roles_list},
    {"roles.create", s_roles_create},
    {"roles.get", s_roles_get},
    {"roles.patch", s_roles_patch},
    {"roles.delete", s_roles_delete},
    {"team_types.list", s_team_types_list},
    {"team_types.create", s_team_types_create},
    {"team_types.get", s_team_types_get},
    {"team_types.patch", s_team_types_patch},
    {"team_types.delete", s_team_types_delete},
    {"teams.list", s_teams_list},
    {"teams.create", s_teams_create},
    {"teams.get", s_teams_get},
    {"teams.patch", s_teams_patch},
    {"teams.delete", s_teams_delete},
    {"teams.member_add", s_teams_member_add},
    {"teams.member_remove", s_teams_member_remove},
};

const cd_api_module_t cd__api_catalog_module = {
    "catalog", s_ops, sizeof s_ops / sizeof s_ops[0], cd_q_catalog_writes, &cd_q_catalog_n_writes,
};
