/*  cd_q_catalog: queries on templates, roles, team_types,
    team_type_roles, teams and team_members (see cd_q_catalog.h).

    Every write is one statement, listed in cd_q_catalog_writes for the
    persist actor, and the functions here run those very strings. A team
    type and its ordered roles (a team and its members) are written by
    data-modifying CTEs, and the answer is built from what those CTEs
    return: the statement's final SELECT sees the tables as they were
    before it, not the rows its own CTEs wrote.

    References are checked inside the statement, before anything is
    written: a body naming a template, role, team type or agent that does
    not exist writes nothing and answers INVALID, {"invalid": {"field",
    "reason"}}, so that the API can name the field (a foreign key error
    alone could not say which of several references failed). The foreign
    keys still guard a referenced row deleted at the same moment.

    Interface: cd_q_templates_{insert,get,list,patch,delete},
    cd_q_roles_{insert,get,list,patch,delete},
    cd_q_team_types_{insert,get,list,patch,delete},
    cd_q_teams_{insert,get,list,patch,delete}, cd_q_teams_member_add,
    cd_q_teams_member_remove. */
#include "cd_q_catalog.h"
#include "cd_error.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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

//  A write whose body names a row that does not exist answers
//  INVALID_OPEN <field> , 'reason', <reason> INVALID_CLOSE, which
//  PostgreSQL prints as {"invalid" : ...}: no row object starts that way.
#define INVALID_OPEN "json_build_object('invalid', json_build_object('field', "
#define INVALID_CLOSE "))"

//  Runs a write that may answer INVALID: 0 and the row, CD_ENOTFOUND, CD_EDB,
//  or CD_EINVAL with the INVALID object in *out.
static int
s_checked(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out)
{
    int rc = cd__q_one(db, sql, nparams, params, out);
    if (rc == 0 && strncmp(*out, "{\"invalid\"", 10) == 0) {
        rc = CD_EINVAL;
    }
    return rc;
}

//  Runs one "DELETE ... WHERE id = $1 RETURNING id".
static int
s_delete(cd_db_t *db, const char *sql, int64_t id)
{
    char b1[24], *row = NULL;
    const char *params[] = {cd__q_i64(b1, id)};
    int rc = cd__q_one(db, sql, 1, params, &row);
    free(row);
    return rc;
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

//  Runs a checked write on ($1 = id, $2 = json).
static int
s_id_json(cd_db_t *db, const char *sql, int64_t id, const char *json, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json};
    return s_checked(db, sql, 2, params, out);
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
    return s_delete(db, s_templates_delete, id);
}

//  --- roles ------------------------------------------------------------

//  A role's writes. bad: the INVALID answer when default_template_id names
//  no template.
#define ROLE_BAD_TEMPLATE                                                                          \
    " bad AS (SELECT " INVALID_OPEN                                                                \
    "'default_template_id', 'reason', 'no template has this id'" INVALID_CLOSE                     \
    " AS j FROM b WHERE b.e ->> 'default_template_id' IS NOT NULL AND NOT EXISTS"                  \
    " (SELECT 1 FROM templates t WHERE t.id = (b.e ->> 'default_template_id')::bigint))"

static const char s_roles_insert[] =
    "WITH b AS (SELECT $1::jsonb AS e)," ROLE_BAD_TEMPLATE ","
    " r AS (INSERT INTO roles AS r (name, description, default_template_id)"
    " SELECT b.e ->> 'name', coalesce(b.e ->> 'description', ''),"
    " (b.e ->> 'default_template_id')::bigint FROM b WHERE NOT EXISTS (SELECT 1 FROM bad)"
    " RETURNING " ROLE_JSON " AS j)"
    " SELECT coalesce((SELECT j FROM bad), (SELECT j FROM r))";
static const char s_roles_patch[] =
    "WITH b AS (SELECT $2::jsonb AS e)," ROLE_BAD_TEMPLATE ","
    " r AS (UPDATE roles r SET"
    " name = CASE WHEN b.e ? 'name' THEN b.e ->> 'name' ELSE r.name END,"
    " description = CASE WHEN b.e ? 'description' THEN b.e ->> 'description'"
    " ELSE r.description END,"
    " default_template_id = CASE WHEN b.e ? 'default_template_id'"
    " THEN (b.e ->> 'default_template_id')::bigint ELSE r.default_template_id END"
    " FROM b WHERE r.id = $1::bigint AND NOT EXISTS (SELECT 1 FROM bad)"
    " RETURNING " ROLE_JSON " AS j)"
    " SELECT CASE WHEN EXISTS (SELECT 1 FROM roles WHERE id = $1::bigint)"
    " THEN coalesce((SELECT j FROM bad), (SELECT j FROM r)) END";
static const char s_roles_delete[] = "DELETE FROM roles r WHERE r.id = $1::bigint RETURNING r.id";

int
cd_q_roles_insert(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return s_checked(db, s_roles_insert, 1, params, out);
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
    return s_id_json(db, s_roles_patch, id, json, out);
}

int
cd_q_roles_delete(cd_db_t *db, int64_t id)
{
    return s_delete(db, s_roles_delete, id);
}

//  --- team types -------------------------------------------------------

//  A team type and its pipeline in one statement. rl: the roles asked
//  for, with their positions; bad: INVALID for the first that names no
//  role. The answer's roles come from what the INSERT returns. A patch
//  that gives roles rewrites positions 0..n-1 in place (ON CONFLICT) and
//  deletes those beyond, rather than deleting all and inserting again: a
//  DELETE and an INSERT of the same key in one statement could run in
//  either order.
#define TEAM_TYPE_ROLES_IN                                                                         \
    " rl AS (SELECT x.r::bigint AS role_id, (x.o - 1)::integer AS position FROM b,"                \
    " jsonb_array_elements_text(coalesce(b.e -> 'roles', '[]')) WITH ORDINALITY AS x(r, o)),"      \
    " bad AS (SELECT " INVALID_OPEN                                                                \
    "'roles', 'reason', format('no role has id %s', rl.role_id)" INVALID_CLOSE                     \
    " AS j FROM rl WHERE NOT EXISTS (SELECT 1 FROM roles o WHERE o.id = rl.role_id)"               \
    " ORDER BY rl.position LIMIT 1),"

//  The team type y: TEAM_TYPE_HEAD <roles expression> TEAM_TYPE_TAIL.
#define TEAM_TYPE_HEAD                                                                             \
    "json_build_object('id', y.id, 'name', y.name, 'description', y.description, 'roles', "
#define TEAM_TYPE_TAIL ", 'created_at', cd_ts(y.created_at), 'updated_at', cd_ts(y.updated_at))"

//  Role ids in order, from rows p (position, role_id) of a FROM clause
//  that follows.
#define TEAM_TYPE_ROLES_AGG "(SELECT coalesce(json_agg(p.role_id ORDER BY p.position), '[]') FROM "

static const char s_team_types_insert[] =
    "WITH b AS (SELECT $1::jsonb AS e)," TEAM_TYPE_ROLES_IN
    " y AS (INSERT INTO team_types (name, description)"
    " SELECT b.e ->> 'name', coalesce(b.e ->> 'description', '') FROM b"
    " WHERE NOT EXISTS (SELECT 1 FROM bad) RETURNING *),"
    " ins AS (INSERT INTO team_type_roles (team_type_id, position, role_id)"
    " SELECT y.id, rl.position, rl.role_id FROM y, rl RETURNING position, role_id)"
    " SELECT coalesce((SELECT j FROM bad),"
    " (SELECT " TEAM_TYPE_HEAD TEAM_TYPE_ROLES_AGG "ins p)" TEAM_TYPE_TAIL " FROM y))";
static const char s_team_types_patch[] =
    "WITH b AS (SELECT $2::jsonb AS e)," TEAM_TYPE_ROLES_IN " y AS (UPDATE team_types y SET"
    " name = CASE WHEN b.e ? 'name' THEN b.e ->> 'name' ELSE y.name END,"
    " description = CASE WHEN b.e ? 'description' THEN b.e ->> 'description'"
    " ELSE y.description END"
    " FROM b WHERE y.id = $1::bigint AND NOT EXISTS (SELECT 1 FROM bad) RETURNING y.*),"
    " del AS (DELETE FROM team_type_roles d USING y, b WHERE d.team_type_id = y.id"
    " AND b.e ? 'roles' AND d.position >= (SELECT count(*) FROM rl)),"
    " ins AS (INSERT INTO team_type_roles (team_type_id, position, role_id)"
    " SELECT y.id, rl.position, rl.role_id FROM y, rl"
    " ON CONFLICT (team_type_id, position) DO UPDATE SET role_id = EXCLUDED.role_id"
    " RETURNING position, role_id)"
    " SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM team_types WHERE id = $1::bigint) THEN NULL"
    " WHEN EXISTS (SELECT 1 FROM bad) THEN (SELECT j FROM bad)"
    " ELSE (SELECT " TEAM_TYPE_HEAD "CASE WHEN b.e ? 'roles' THEN " TEAM_TYPE_ROLES_AGG "ins p)"
    " ELSE " TEAM_TYPE_ROLES_AGG "team_type_roles p WHERE p.team_type_id = y.id) END" TEAM_TYPE_TAIL
    " FROM y, b) END";
static const char s_team_types_delete[] =
    "DELETE FROM team_types y WHERE y.id = $1::bigint RETURNING y.id";

int
cd_q_team_types_insert(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return s_checked(db, s_team_types_insert, 1, params, out);
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
    return s_id_json(db, s_team_types_patch, id, json, out);
}

int
cd_q_team_types_delete(cd_db_t *db, int64_t id)
{
    return s_delete(db, s_team_types_delete, id);
}

//  --- teams ------------------------------------------------------------

//  A team and its members in one statement, as team types above. mem: the
//  members asked for; bad: INVALID for the first problem in request order
//  (an unknown team type, agent or role, or an agent listed twice). A
//  patch that gives members upserts them (an agent that stays keeps its
//  added_at) and deletes the others.
#define TEAM_MEMBERS_IN                                                                            \
    " mem AS (SELECT x.v ->> 'agent' AS agent, (x.v ->> 'role_id')::bigint AS role_id, x.o"        \
    " FROM b, jsonb_array_elements(coalesce(b.e -> 'members', '[]')) WITH ORDINALITY AS x(v, o))," \
    " bad AS (SELECT " INVALID_OPEN "f.field, 'reason', f.reason" INVALID_CLOSE " AS j FROM ("     \
    " SELECT 0 AS o, 'team_type_id' AS field, 'no team type has this id' AS reason FROM b"         \
    " WHERE b.e ? 'team_type_id' AND NOT EXISTS"                                                   \
    " (SELECT 1 FROM team_types y WHERE y.id = (b.e ->> 'team_type_id')::bigint)"                  \
    " UNION ALL SELECT mem.o, 'members', format('no agent is named %s', mem.agent) FROM mem"       \
    " WHERE NOT EXISTS (SELECT 1 FROM agents a WHERE a.name = mem.agent)"                          \
    " UNION ALL SELECT mem.o, 'members', format('no role has id %s', mem.role_id) FROM mem"        \
    " WHERE NOT EXISTS (SELECT 1 FROM roles r WHERE r.id = mem.role_id)"                           \
    " UNION ALL SELECT mem.o, 'members', format('agent %s is listed twice', mem.agent) FROM mem"   \
    " WHERE EXISTS (SELECT 1 FROM mem n WHERE n.agent = mem.agent AND n.o < mem.o)"                \
    ") f ORDER BY f.o LIMIT 1),"

//  The team m: TEAM_HEAD <members expression> TEAM_TAIL.
#define TEAM_HEAD                                                                                  \
    "json_build_object('id', m.id, 'name', m.name, 'team_type_id', m.team_type_id, 'members', "
#define TEAM_TAIL ", 'created_at', cd_ts(m.created_at), 'updated_at', cd_ts(m.updated_at))"

//  Members in order, from rows x (agent, role_id, added_at) of a FROM
//  clause that follows.
#define TEAM_MEMBERS_AGG                                                                           \
    "(SELECT coalesce(json_agg(json_build_object('agent', x.agent, 'role_id', x.role_id)"          \
    " ORDER BY x.added_at, x.agent), '[]') FROM "

static const char s_teams_insert[] =
    "WITH b AS (SELECT $1::jsonb AS e)," TEAM_MEMBERS_IN
    " t AS (INSERT INTO teams (name, team_type_id)"
    " SELECT b.e ->> 'name', (b.e ->> 'team_type_id')::bigint FROM b"
    " WHERE NOT EXISTS (SELECT 1 FROM bad) RETURNING *),"
    " ins AS (INSERT INTO team_members (team_id, agent, role_id)"
    " SELECT t.id, mem.agent, mem.role_id FROM t, mem RETURNING agent, role_id, added_at)"
    " SELECT coalesce((SELECT j FROM bad),"
    " (SELECT " TEAM_HEAD TEAM_MEMBERS_AGG "ins x)" TEAM_TAIL " FROM t m))";
static const char s_teams_patch[] =
    "WITH b AS (SELECT $2::jsonb AS e)," TEAM_MEMBERS_IN " t AS (UPDATE teams m SET"
    " name = CASE WHEN b.e ? 'name' THEN b.e ->> 'name' ELSE m.name END,"
    " team_type_id = CASE WHEN b.e ? 'team_type_id' THEN (b.e ->> 'team_type_id')::bigint"
    " ELSE m.team_type_id END"
    " FROM b WHERE m.id = $1::bigint AND NOT EXISTS (SELECT 1 FROM bad) RETURNING m.*),"
    " del AS (DELETE FROM team_members d USING t, b WHERE d.team_id = t.id AND b.e ? 'members'"
    " AND NOT EXISTS (SELECT 1 FROM mem WHERE mem.agent = d.agent)),"
    " ins AS (INSERT INTO team_members (team_id, agent, role_id)"
    " SELECT t.id, mem.agent, mem.role_id FROM t, mem"
    " ON CONFLICT (team_id, agent) DO UPDATE SET role_id = EXCLUDED.role_id"
    " RETURNING agent, role_id, added_at)"
    " SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM teams WHERE id = $1::bigint) THEN NULL"
    " WHEN EXISTS (SELECT 1 FROM bad) THEN (SELECT j FROM bad)"
    " ELSE (SELECT " TEAM_HEAD "CASE WHEN b.e ? 'members' THEN " TEAM_MEMBERS_AGG "ins x)"
    " ELSE " TEAM_MEMBERS_AGG "team_members x WHERE x.team_id = m.id) END" TEAM_TAIL
    " FROM t m, b) END";
static const char s_teams_delete[] = "DELETE FROM teams m WHERE m.id = $1::bigint RETURNING m.id";

//  ($1 team, $2 agent, $3 role_id): adds the member, or changes its role.
//  No row when the team does not exist; INVALID naming agent or role_id.
//  The answer's members: the team's others, plus the upserted row.
static const char s_teams_member_add[] =
    "WITH bad AS (SELECT " INVALID_OPEN "f.field, 'reason', f.reason" INVALID_CLOSE " AS j FROM ("
    " SELECT 1 AS o, 'agent' AS field, 'no agent has this name' AS reason"
    " WHERE NOT EXISTS (SELECT 1 FROM agents a WHERE a.name = $2::text)"
    " UNION ALL SELECT 2, 'role_id', 'no role has this id'"
    " WHERE NOT EXISTS (SELECT 1 FROM roles r WHERE r.id = $3::bigint)"
    ") f ORDER BY f.o LIMIT 1),"
    " ins AS (INSERT INTO team_members (team_id, agent, role_id)"
    " SELECT m.id, $2::text, $3::bigint FROM teams m"
    " WHERE m.id = $1::bigint AND NOT EXISTS (SELECT 1 FROM bad)"
    " ON CONFLICT (team_id, agent) DO UPDATE SET role_id = EXCLUDED.role_id"
    " RETURNING agent, role_id, added_at)"
    " SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM teams WHERE id = $1::bigint) THEN NULL"
    " WHEN EXISTS (SELECT 1 FROM bad) THEN (SELECT j FROM bad)"
    " ELSE (SELECT " TEAM_HEAD TEAM_MEMBERS_AGG "(SELECT o.agent, o.role_id, o.added_at"
    " FROM team_members o WHERE o.team_id = m.id AND o.agent <> $2::text"
    " UNION ALL SELECT * FROM ins) x)" TEAM_TAIL " FROM teams m WHERE m.id = $1::bigint) END";
static const char s_teams_member_remove[] =
    "DELETE FROM team_members x WHERE x.team_id = $1::bigint AND x.agent = $2::text"
    " RETURNING x.agent";

int
cd_q_teams_insert(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return s_checked(db, s_teams_insert, 1, params, out);
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
    return s_id_json(db, s_teams_patch, id, json, out);
}

int
cd_q_teams_delete(cd_db_t *db, int64_t id)
{
    return s_delete(db, s_teams_delete, id);
}

int
cd_q_teams_member_add(cd_db_t *db, int64_t team_id, const char *agent, int64_t role_id, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, team_id), agent, cd__q_i64(b2, role_id)};
    return s_checked(db, s_teams_member_add, 3, params, out);
}

int
cd_q_teams_member_remove(cd_db_t *db, int64_t team_id, const char *agent)
{
    char b1[24], *row = NULL;
    const char *params[] = {cd__q_i64(b1, team_id), agent};
    int rc = cd__q_one(db, s_teams_member_remove, 2, params, &row);
    free(row);
    return rc;
}

const cd_q_write_t cd_q_catalog_writes[] = {
    {"templates.insert", s_templates_insert, 1},
    {"templates.patch", s_templates_patch, 2},
    {"templates.delete", s_templates_delete, 1},
    {"roles.insert", s_roles_insert, 1},
    {"roles.patch", s_roles_patch, 2},
    {"roles.delete", s_roles_delete, 1},
    {"team_types.insert", s_team_types_insert, 1},
    {"team_types.patch", s_team_types_patch, 2},
    {"team_types.delete", s_team_types_delete, 1},
    {"teams.insert", s_teams_insert, 1},
    {"teams.patch", s_teams_patch, 2},
    {"teams.delete", s_teams_delete, 1},
    {"teams.member_add", s_teams_member_add, 3},
    {"teams.member_remove", s_teams_member_remove, 2},
};
const size_t cd_q_catalog_n_writes = sizeof cd_q_catalog_writes / sizeof cd_q_catalog_writes[0];
