/*  cd_q_catalog: queries on templates, roles, team_types,
    team_type_roles, teams and team_members (see cd_q_catalog.h).

    A team type and its ordered roles (a team and its members) are
    written in one transaction of several statements: the row, then its
    list, then the row read back with the list. One statement with
    data-modifying CTEs would not do, because its final SELECT cannot see
    the rows its own CTEs insert. When the caller already has a
    transaction open these statements simply join it.

    Interface: cd_q_templates_{insert,get,list,patch,delete},
    cd_q_roles_{insert,get,list,patch,delete},
    cd_q_team_types_{insert,get,list,patch,delete},
    cd_q_teams_{insert,get,list,patch,delete}, cd_q_teams_member_add,
    cd_q_teams_member_remove. */
#include "cd_q_catalog.h"
#include "cd_error.h"

#include <stddef.h>
#include <stdlib.h>

#define TEMPLATE_JSON                                                                              \
    "json_build_object('id', t.id, 'name', t.name, 'description', t.description, 'body', "         \
    "t.body, 'created_at', cd_ts(t.created_at), 'updated_at', cd_ts(t.updated_at))"

#define ROLE_JSON                                                                                  \
    "json_build_object('id', r.id, 'name', r.name, 'description', r.description, "                 \
    "'default_template_id', r.default_template_id, 'created_at', cd_ts(r.created_at), "            \
    "'updated_at', cd_ts(r.updated_at))"

#define TEAM_TYPE_JSON                                                                             \
    "json_build_object('id', y.id, 'name', y.name, 'description', y.description, 'roles', "        \
    "(SELECT coalesce(json_agg(p.role_id ORDER BY p.position), '[]') FROM team_type_roles p "      \
    "WHERE p.team_type_id = y.id), 'created_at', cd_ts(y.created_at), 'updated_at', "              \
    "cd_ts(y.updated_at))"

#define TEAM_JSON                                                                                  \
    "json_build_object('id', m.id, 'name', m.name, 'team_type_id', m.team_type_id, 'members', "    \
    "(SELECT coalesce(json_agg(json_build_object('agent', x.agent, 'role_id', x.role_id) "         \
    "ORDER BY x.added_at, x.agent), '[]') FROM team_members x WHERE x.team_id = m.id), "           \
    "'created_at', cd_ts(m.created_at), 'updated_at', cd_ts(m.updated_at))"

//  Runs one "DELETE ... WHERE id = $1".
static int
s_delete(cd_db_t *db, const char *sql, int64_t id)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_write(db, sql, 1, params, NULL);
}

//  Runs one "SELECT json ... WHERE id = $1".
static int
s_get(cd_db_t *db, const char *sql, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, sql, 1, params, out);
}

//  Runs one keyset list "... WHERE ($1 IS NULL OR id < $1) ... LIMIT $2".
static int
s_list(cd_db_t *db, const char *sql, const char *cursor, int limit, cd_q_page_t *out)
{
    const char *params[] = {cursor, NULL};
    return cd__q_page(db, sql, 2, params, limit, out);
}

//  Runs a statement on ($1 = id, $2 = json).
static int
s_id_json(cd_db_t *db, const char *sql, int64_t id, const char *json, int64_t *affected)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json};
    return cd_db_exec_params(db, sql, 2, params, affected);
}

//  --- templates --------------------------------------------------------

//  The templates' writes, shared by persist (cd_q_catalog_writes) and the
//  functions below.
static const char s_templates_insert[] =
    "INSERT INTO templates AS t (name, description, body)"
    " SELECT b.e ->> 'name', coalesce(b.e ->> 'description', ''), b.e ->> 'body'"
    " FROM (SELECT $1::jsonb AS e) b RETURNING " TEMPLATE_JSON;
static const char s_templates_patch[] =
    "UPDATE templates t SET"
    " name = CASE WHEN $2::jsonb ? 'name' THEN $2::jsonb ->> 'name' ELSE t.name END,"
    " description = CASE WHEN $2::jsonb ? 'description'"
    " THEN $2::jsonb ->> 'description' ELSE t.description END,"
    " body = CASE WHEN $2::jsonb ? 'body' THEN $2::jsonb ->> 'body' ELSE t.body END,"
    " updated_at = now()"
    " WHERE t.id = $1 RETURNING " TEMPLATE_JSON;
static const char s_templates_delete[] = "DELETE FROM templates t WHERE t.id = $1 RETURNING t.id";

int
cd_q_templates_insert(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return cd__q_one(db, s_templates_insert, 1, params, out);
}

int
cd_q_templates_get(cd_db_t *db, int64_t id, char **out)
{
    return s_get(db, "SELECT " TEMPLATE_JSON " FROM templates t WHERE t.id = $1", id, out);
}

int
cd_q_templates_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out)
{
    return s_list(db,
                  "SELECT t.id, " TEMPLATE_JSON " FROM templates t"
                  " WHERE ($1::bigint IS NULL OR t.id < $1) ORDER BY t.id DESC LIMIT $2",
                  cursor, limit, out);
}

int
cd_q_templates_patch(cd_db_t *db, int64_t id, const char *json, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json};
    return cd__q_one(db, s_templates_patch, 2, params, out);
}

int
cd_q_templates_delete(cd_db_t *db, int64_t id)
{
    char b1[24], *row = NULL;
    const char *params[] = {cd__q_i64(b1, id)};
    int rc = cd__q_one(db, s_templates_delete, 1, params, &row);
    free(row);
    return rc;
}

//  --- roles ------------------------------------------------------------

int
cd_q_roles_insert(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return cd__q_one(db,
                     "INSERT INTO roles AS r (name, description, default_template_id)"
                     " SELECT b.e ->> 'name', coalesce(b.e ->> 'description', ''),"
                     " (b.e ->> 'default_template_id')::bigint"
                     " FROM (SELECT $1::jsonb AS e) b RETURNING " ROLE_JSON,
                     1, params, out);
}

int
cd_q_roles_get(cd_db_t *db, int64_t id, const char *name, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), name};
    return cd__q_one(db,
                     "SELECT " ROLE_JSON " FROM roles r WHERE CASE WHEN $1::bigint IS NULL"
                     " THEN r.name = $2 ELSE r.id = $1 END",
                     2, params, out);
}

int
cd_q_roles_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out)
{
    return s_list(db,
                  "SELECT r.id, " ROLE_JSON " FROM roles r"
                  " WHERE ($1::bigint IS NULL OR r.id < $1) ORDER BY r.id DESC LIMIT $2",
                  cursor, limit, out);
}

int
cd_q_roles_patch(cd_db_t *db, int64_t id, const char *json, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json};
    return cd__q_one(
        db,
        "UPDATE roles r SET"
        " name = CASE WHEN $2::jsonb ? 'name' THEN $2::jsonb ->> 'name' ELSE r.name END,"
        " description = CASE WHEN $2::jsonb ? 'description'"
        " THEN $2::jsonb ->> 'description' ELSE r.description END,"
        " default_template_id = CASE WHEN $2::jsonb ? 'default_template_id'"
        " THEN ($2::jsonb ->> 'default_template_id')::bigint"
        " ELSE r.default_template_id END"
        " WHERE r.id = $1 RETURNING " ROLE_JSON,
        2, params, out);
}

int
cd_q_roles_delete(cd_db_t *db, int64_t id)
{
    return s_delete(db, "DELETE FROM roles WHERE id = $1", id);
}

//  --- team types -------------------------------------------------------

static const char *const s_team_type_roles =
    "INSERT INTO team_type_roles (team_type_id, position, role_id)"
    " SELECT $1, x.o - 1, x.r::bigint"
    " FROM jsonb_array_elements_text(coalesce($2::jsonb -> 'roles', '[]')) WITH ORDINALITY"
    " AS x(r, o)";

int
cd_q_team_types_insert(cd_db_t *db, const char *json, char **out)
{
    *out = NULL;
    bool own = false;
    int rc = cd__q_tx_begin(db, &own);
    if (rc != 0) {
        return rc;
    }
    const char *params[] = {json};
    int64_t id = 0;
    rc = cd_db_query_int64(db,
                           "INSERT INTO team_types (name, description)"
                           " SELECT $1::jsonb ->> 'name', coalesce($1::jsonb ->> 'description', '')"
                           " RETURNING id",
                           1, params, &id);
    if (rc == 0) {
        rc = s_id_json(db, s_team_type_roles, id, json, NULL);
    }
    if (rc == 0) {
        rc = cd_q_team_types_get(db, id, out);
    }
    rc = cd__q_tx_end(db, own, rc);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int
cd_q_team_types_get(cd_db_t *db, int64_t id, char **out)
{
    return s_get(db, "SELECT " TEAM_TYPE_JSON " FROM team_types y WHERE y.id = $1", id, out);
}

int
cd_q_team_types_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out)
{
    return s_list(db,
                  "SELECT y.id, " TEAM_TYPE_JSON " FROM team_types y"
                  " WHERE ($1::bigint IS NULL OR y.id < $1) ORDER BY y.id DESC LIMIT $2",
                  cursor, limit, out);
}

int
cd_q_team_types_patch(cd_db_t *db, int64_t id, const char *json, char **out)
{
    *out = NULL;
    bool own = false;
    int rc = cd__q_tx_begin(db, &own);
    if (rc != 0) {
        return rc;
    }
    int64_t n = 0;
    rc = s_id_json(db,
                   "UPDATE team_types y SET"
                   " name = CASE WHEN $2::jsonb ? 'name' THEN $2::jsonb ->> 'name' ELSE y.name END,"
                   " description = CASE WHEN $2::jsonb ? 'description'"
                   " THEN $2::jsonb ->> 'description' ELSE y.description END"
                   " WHERE y.id = $1",
                   id, json, &n);
    if (rc == 0 && n == 0) {
        rc = CD_ENOTFOUND;
    }
    if (rc == 0) {
        rc = s_id_json(
            db, "DELETE FROM team_type_roles WHERE team_type_id = $1 AND $2::jsonb ? 'roles'", id,
            json, &n);
    }
    if (rc == 0) {
        rc = s_id_json(db, s_team_type_roles, id, json, NULL);
    }
    if (rc == 0) {
        rc = cd_q_team_types_get(db, id, out);
    }
    rc = cd__q_tx_end(db, own, rc);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int
cd_q_team_types_delete(cd_db_t *db, int64_t id)
{
    return s_delete(db, "DELETE FROM team_types WHERE id = $1", id);
}

//  --- teams ------------------------------------------------------------

static const char *const s_team_members =
    "INSERT INTO team_members (team_id, agent, role_id)"
    " SELECT $1, x.m ->> 'agent', (x.m ->> 'role_id')::bigint"
    " FROM jsonb_array_elements(coalesce($2::jsonb -> 'members', '[]')) AS x(m)";

int
cd_q_teams_insert(cd_db_t *db, const char *json, char **out)
{
    *out = NULL;
    bool own = false;
    int rc = cd__q_tx_begin(db, &own);
    if (rc != 0) {
        return rc;
    }
    const char *params[] = {json};
    int64_t id = 0;
    rc = cd_db_query_int64(db,
                           "INSERT INTO teams (name, team_type_id)"
                           " SELECT $1::jsonb ->> 'name', ($1::jsonb ->> 'team_type_id')::bigint"
                           " RETURNING id",
                           1, params, &id);
    if (rc == 0) {
        rc = s_id_json(db, s_team_members, id, json, NULL);
    }
    if (rc == 0) {
        rc = cd_q_teams_get(db, id, out);
    }
    rc = cd__q_tx_end(db, own, rc);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int
cd_q_teams_get(cd_db_t *db, int64_t id, char **out)
{
    return s_get(db, "SELECT " TEAM_JSON " FROM teams m WHERE m.id = $1", id, out);
}

int
cd_q_teams_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out)
{
    return s_list(db,
                  "SELECT m.id, " TEAM_JSON " FROM teams m"
                  " WHERE ($1::bigint IS NULL OR m.id < $1) ORDER BY m.id DESC LIMIT $2",
                  cursor, limit, out);
}

int
cd_q_teams_patch(cd_db_t *db, int64_t id, const char *json, char **out)
{
    *out = NULL;
    bool own = false;
    int rc = cd__q_tx_begin(db, &own);
    if (rc != 0) {
        return rc;
    }
    int64_t n = 0;
    rc = s_id_json(db,
                   "UPDATE teams m SET"
                   " name = CASE WHEN $2::jsonb ? 'name' THEN $2::jsonb ->> 'name' ELSE m.name END,"
                   " team_type_id = CASE WHEN $2::jsonb ? 'team_type_id'"
                   " THEN ($2::jsonb ->> 'team_type_id')::bigint ELSE m.team_type_id END"
                   " WHERE m.id = $1",
                   id, json, &n);
    if (rc == 0 && n == 0) {
        rc = CD_ENOTFOUND;
    }
    if (rc == 0) {
        rc = s_id_json(db, "DELETE FROM team_members WHERE team_id = $1 AND $2::jsonb ? 'members'",
                       id, json, &n);
    }
    if (rc == 0) {
        rc = s_id_json(db, s_team_members, id, json, NULL);
    }
    if (rc == 0) {
        rc = cd_q_teams_get(db, id, out);
    }
    rc = cd__q_tx_end(db, own, rc);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int
cd_q_teams_delete(cd_db_t *db, int64_t id)
{
    return s_delete(db, "DELETE FROM teams WHERE id = $1", id);
}

int
cd_q_teams_member_add(cd_db_t *db, int64_t team_id, const char *agent, int64_t role_id, char **out)
{
    *out = NULL;
    bool own = false;
    int rc = cd__q_tx_begin(db, &own);
    if (rc != 0) {
        return rc;
    }
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, team_id), agent, cd__q_i64(b2, role_id)};
    rc = cd_db_exec_params(db,
                           "INSERT INTO team_members (team_id, agent, role_id) VALUES ($1, $2, $3)"
                           " ON CONFLICT (team_id, agent) DO UPDATE SET role_id = EXCLUDED.role_id",
                           3, params, NULL);
    if (rc == 0) {
        rc = cd_q_teams_get(db, team_id, out);
    }
    rc = cd__q_tx_end(db, own, rc);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int
cd_q_teams_member_remove(cd_db_t *db, int64_t team_id, const char *agent)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, team_id), agent};
    return cd__q_write(db, "DELETE FROM team_members WHERE team_id = $1 AND agent = $2", 2, params,
                       NULL);
}

const cd_q_write_t cd_q_catalog_writes[] = {
    {"templates.insert", s_templates_insert, 1},
    {"templates.patch", s_templates_patch, 2},
    {"templates.delete", s_templates_delete, 1},
};
const size_t cd_q_catalog_n_writes = sizeof cd_q_catalog_writes / sizeof cd_q_catalog_writes[0];
