/*  cd_q_agents: queries on the agents table (see cd_q_agents.h).

    Interface: cd_q_agents_insert, cd_q_agents_get, cd_q_agents_list,
    cd_q_agents_patch, cd_q_agents_set_status, cd_q_agents_add_restart,
    cd_q_agents_set_node_status, cd_q_agents_delete. */
#include "cd_q_agents.h"
#include "cd_error.h"

#include <stddef.h>
#include <stdlib.h>

#define AGENT_JSON                                                                                 \
    "json_build_object('name', a.name, 'kind', a.kind, 'role', a.role, 'status', a.status, "       \
    "'concurrency', a.concurrency, 'config', a.config, 'template_id', a.template_id, 'node_id', "  \
    "a.node_id, 'restarts', a.restarts, 'created_at', cd_ts(a.created_at), 'updated_at', "         \
    "cd_ts(a.updated_at))"

int
cd_q_agents_insert(cd_db_t *db, const char *json, const char *node_id, char **out)
{
    const char *params[] = {json, node_id};
    return cd__q_one(db,
                     "INSERT INTO agents AS a (name, kind, role, concurrency, config, template_id,"
                     " node_id) SELECT b.e ->> 'name', b.e ->> 'kind', b.e ->> 'role',"
                     " coalesce((b.e ->> 'concurrency')::int, 1),"
                     " coalesce(nullif(b.e -> 'config', 'null'), '{}'),"
                     " (b.e ->> 'template_id')::bigint, $2"
                     " FROM (SELECT $1::jsonb AS e) b RETURNING " AGENT_JSON,
                     2, params, out);
}

int
cd_q_agents_get(cd_db_t *db, const char *name, char **out)
{
    const char *params[] = {name};
    return cd__q_one(db, "SELECT " AGENT_JSON " FROM agents a WHERE a.name = $1", 1, params, out);
}

int
cd_q_agents_list(cd_db_t *db, const cd_q_agent_filter_t *f, cd_q_page_t *out)
{
    const char *params[] = {f->role, f->kind, f->status, f->node_id, f->cursor, NULL};
    return cd__q_page(db,
                      "SELECT a.name, " AGENT_JSON " FROM agents a"
                      " WHERE ($1::text IS NULL OR a.role = $1)"
                      " AND ($2::text IS NULL OR a.kind = $2)"
                      " AND ($3::text IS NULL OR a.status = $3)"
                      " AND ($4::text IS NULL OR a.node_id = $4)"
                      " AND ($5::text IS NULL OR a.name > $5)"
                      " ORDER BY a.name LIMIT $6",
                      6, params, f->limit, out);
}

int
cd_q_agents_patch(cd_db_t *db, const char *name, const char *json, char **out)
{
    const char *params[] = {name, json};
    return cd__q_one(
        db,
        "UPDATE agents a SET"
        " kind = CASE WHEN $2::jsonb ? 'kind' THEN $2::jsonb ->> 'kind' ELSE a.kind END,"
        " role = CASE WHEN $2::jsonb ? 'role' THEN $2::jsonb ->> 'role' ELSE a.role END,"
        " concurrency = CASE WHEN $2::jsonb ? 'concurrency'"
        " THEN ($2::jsonb ->> 'concurrency')::int ELSE a.concurrency END,"
        " config = CASE WHEN $2::jsonb ? 'config'"
        " THEN coalesce(nullif($2::jsonb -> 'config', 'null'), '{}') ELSE a.config END,"
        " template_id = CASE WHEN $2::jsonb ? 'template_id'"
        " THEN ($2::jsonb ->> 'template_id')::bigint ELSE a.template_id END"
        " WHERE a.name = $1 RETURNING " AGENT_JSON,
        2, params, out);
}

int
cd_q_agents_set_status(cd_db_t *db, const char *name, const char *status, const char *node_id,
                       char **out)
{
    const char *params[] = {name, status, node_id};
    return cd__q_one(db,
                     "UPDATE agents a SET status = $2, node_id = coalesce($3, a.node_id)"
                     " WHERE a.name = $1 RETURNING " AGENT_JSON,
                     3, params, out);
}

int
cd_q_agents_add_restart(cd_db_t *db, const char *name, char **out)
{
    const char *params[] = {name};
    return cd__q_one(db,
                     "UPDATE agents a SET restarts = a.restarts + 1 WHERE a.name = $1"
                     " RETURNING " AGENT_JSON,
                     1, params, out);
}

int
cd_q_agents_set_node_status(cd_db_t *db, const char *node_id, const char *status, int64_t *count)
{
    const char *params[] = {node_id, status};
    return cd_db_exec_params(db, "UPDATE agents SET status = $2 WHERE node_id = $1", 2, params,
                             count);
}

int
cd_q_agents_delete(cd_db_t *db, const char *name)
{
    const char *params[] = {name};
    return cd__q_write(db, "DELETE FROM agents WHERE name = $1", 1, params, NULL);
}

//  --- writes through persist -------------------------------------------------------

//  An agent.status event for the row(s) of CTE a, in the same statement.
#define STATUS_EVENT(extra)                                                                        \
    "ev AS (INSERT INTO events (type, agent, data) SELECT 'agent.status', a.name,"                 \
    " jsonb_build_object('status', a.status, 'node_id', a.node_id" extra ") FROM a)"

//  ($1 body, $2 node id, $3 initial status) -> the agent.
static const char s_insert[] =
    "WITH a AS (INSERT INTO agents (name, kind, role, concurrency, config, template_id, node_id,"
    " status) SELECT b.e ->> 'name', b.e ->> 'kind', b.e ->> 'role',"
    " coalesce((b.e ->> 'concurrency')::int, 1),"
    " coalesce(nullif(b.e -> 'config', 'null'), '{}'), (b.e ->> 'template_id')::bigint, $2, $3"
    " FROM (SELECT $1::jsonb AS e) b RETURNING *), " STATUS_EVENT("") " SELECT " AGENT_JSON
                                                                      " FROM a";

//  ($1 name, $2 body) -> the agent, or no row.
static const char s_patch[] =
    "WITH a AS (UPDATE agents a SET"
    " kind = CASE WHEN $2::jsonb ? 'kind' THEN $2::jsonb ->> 'kind' ELSE a.kind END,"
    " role = CASE WHEN $2::jsonb ? 'role' THEN $2::jsonb ->> 'role' ELSE a.role END,"
    " concurrency = CASE WHEN $2::jsonb ? 'concurrency'"
    " THEN coalesce(($2::jsonb ->> 'concurrency')::int, 1) ELSE a.concurrency END,"
    " config = CASE WHEN $2::jsonb ? 'config'"
    " THEN coalesce(nullif($2::jsonb -> 'config', 'null'), '{}') ELSE a.config END,"
    " template_id = CASE WHEN $2::jsonb ? 'template_id'"
    " THEN ($2::jsonb ->> 'template_id')::bigint ELSE a.template_id END"
    " WHERE a.name = $1 RETURNING *) SELECT " AGENT_JSON " FROM a";

//  ($1 name, $2 status, $3 node id or NULL) -> the agent, or no row.
static const char s_set_status[] =
    "WITH a AS (UPDATE agents a SET status = $2, node_id = coalesce($3, a.node_id)"
    " WHERE a.name = $1 RETURNING *), " STATUS_EVENT("") " SELECT " AGENT_JSON " FROM a";

//  ($1 name) -> the deleted agent, or no row.
static const char s_delete[] =
    "WITH a AS (DELETE FROM agents a WHERE a.name = $1 RETURNING a.name, a.node_id,"
    " 'stopped'::text AS status), " STATUS_EVENT(
        ", 'deleted', true") " SELECT"
                             " json_build_object('name', a.name) FROM a";

const cd_q_write_t cd_q_agents_writes[] = {
    {"agents.insert", s_insert, 3},
    {"agents.patch", s_patch, 2},
    {"agents.set_status", s_set_status, 3},
    {"agents.delete", s_delete, 1},
};
const size_t cd_q_agents_n_writes = sizeof cd_q_agents_writes / sizeof cd_q_agents_writes[0];
