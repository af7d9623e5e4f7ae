/*  cd_q_usage: queries on llm_calls (see cd_q_usage.h).

    The grouping column cannot be a parameter, and SQL is never built
    from values, so the summary chooses it with a CASE on the parameter;
    group_by is checked against the four names first.

    Interface: cd_q_usage_writes, cd_q_usage_record, cd_q_usage_summary,
    cd_q_usage_llm_context. */
#include "cd_q_usage.h"
#include "cd_error.h"

#include <stddef.h>
#include <string.h>

#define CALL_JSON                                                                                  \
    "json_build_object('id', c.id, 'ts', cd_ts(c.ts), 'task_id', c.task_id, 'project_id', "        \
    "c.project_id, 'agent', c.agent, 'connection_id', c.connection_id, 'model', c.model, "         \
    "'prompt_tokens', c.prompt_tokens, 'completion_tokens', c.completion_tokens, 'cost_usd', "     \
    "c.cost_usd, 'latency_ms', c.latency_ms)"

//  ($1 the call as JSON) -> the call row. The task's usage is updated in a
//  sibling CTE: a different table, so sharing the statement's snapshot is
//  no problem.
static const char s_record[] =
    "WITH b AS (SELECT $1::jsonb AS e),"
    " c AS (INSERT INTO llm_calls (task_id, project_id, agent, connection_id, model,"
    "  prompt_tokens, completion_tokens, cost_usd, latency_ms)"
    "  SELECT (b.e ->> 'task_id')::bigint, coalesce((b.e ->> 'project_id')::bigint,"
    "  (SELECT t.project_id FROM tasks t WHERE t.id = (b.e ->> 'task_id')::bigint)),"
    "  b.e ->> 'agent', (b.e ->> 'connection_id')::bigint, b.e ->> 'model',"
    "  coalesce((b.e ->> 'prompt_tokens')::int, 0),"
    "  coalesce((b.e ->> 'completion_tokens')::int, 0),"
    "  coalesce((b.e ->> 'cost_usd')::numeric, 0), (b.e ->> 'latency_ms')::int FROM b"
    "  RETURNING *),"
    " t AS (UPDATE tasks t SET usage = jsonb_build_object("
    "  'prompt_tokens', coalesce((t.usage ->> 'prompt_tokens')::bigint, 0) + c.prompt_tokens,"
    "  'completion_tokens', coalesce((t.usage ->> 'completion_tokens')::bigint, 0)"
    "   + c.completion_tokens,"
    "  'llm_calls', coalesce((t.usage ->> 'llm_calls')::bigint, 0) + 1,"
    "  'cost_usd', coalesce((t.usage ->> 'cost_usd')::numeric, 0) + c.cost_usd)"
    "  FROM c WHERE t.id = c.task_id)"
    " SELECT " CALL_JSON " FROM c";

const cd_q_write_t cd_q_usage_writes[] = {
    {"usage.record", s_record, 1},
};
const size_t cd_q_usage_n_writes = sizeof cd_q_usage_writes / sizeof cd_q_usage_writes[0];

int
cd_q_usage_record(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return cd__q_one(db, s_record, 1, params, out);
}

int
cd_q_usage_llm_context(cd_db_t *db, const char *agent, const char *connection, int64_t template_id,
                       char **out)
{
    char tb[24];
    const char *params[] = {agent, connection, cd__q_i64(tb, template_id)};
    return cd__q_one(
        db,
        "WITH t AS (SELECT coalesce($3::bigint,"
        "  (SELECT a.template_id FROM agents a WHERE a.name = $1)) AS id)"
        " SELECT json_build_object("
        "  'connection', (SELECT json_build_object('id', c.id, 'name', c.name, 'config', c.config,"
        "   'sealed_api_key', convert_from(c.secrets, 'UTF8')::jsonb ->> 'api_key')"
        "   FROM connections c WHERE c.name = $2),"
        "  'template_id', t.id,"
        "  'template', (SELECT p.body FROM templates p WHERE p.id = t.id),"
        "  'prices', (SELECT k.value FROM config k WHERE k.key = 'llm_prices'))"
        " FROM t",
        3, params, out);
}

int
cd_q_usage_summary(cd_db_t *db, const char *group_by, const char *since, cd_q_page_t *out)
{
    *out = (cd_q_page_t){0};
    if (!group_by || (strcmp(group_by, "agent") != 0 && strcmp(group_by, "project") != 0 &&
                      strcmp(group_by, "task") != 0 && strcmp(group_by, "connection") != 0)) {
        return CD_EINVAL;
    }
    const char *params[] = {group_by, since};
    return cd__q_all(db,
                     "SELECT json_build_object('key', g.key, 'prompt_tokens', g.p,"
                     " 'completion_tokens', g.c, 'llm_calls', g.n, 'cost_usd', g.cost) FROM ("
                     " SELECT CASE $1 WHEN 'agent' THEN to_jsonb(agent)"
                     "  WHEN 'project' THEN to_jsonb(project_id) WHEN 'task' THEN to_jsonb(task_id)"
                     "  ELSE to_jsonb(connection_id) END AS key,"
                     "  sum(prompt_tokens) AS p, sum(completion_tokens) AS c, count(*) AS n,"
                     "  sum(cost_usd) AS cost"
                     " FROM llm_calls WHERE $2::timestamptz IS NULL OR ts >= $2"
                     " GROUP BY 1) g ORDER BY g.cost DESC, g.key::text",
                     2, params, out);
}
