/*  cd_q_usage: the usage ledger (llm_calls table): one row per LLM call.

    Conventions: cd_q.h. A call row: {id, ts, task_id, project_id, agent,
    connection_id, model, prompt_tokens, completion_tokens, cost_usd,
    latency_ms}. Recording a call also adds it to its task's usage
    ({prompt_tokens, completion_tokens, llm_calls, cost_usd}) in the same
    statement, so the two never disagree.

    The llm agents write calls through persist (cd_q_usage_writes) and
    read what a call needs with cd_q_usage_llm_context on a connection of
    their own. */
#ifndef CD_DB_Q_USAGE_H
#define CD_DB_Q_USAGE_H

#include "cd_q.h"

//  The writes persist runs for this family (cd_q.h): usage.record ($1
//  the call as JSON, as cd_q_usage_record takes it) -> the call row.
extern const cd_q_write_t cd_q_usage_writes[];
extern const size_t cd_q_usage_n_writes;

//  Records a call from {task_id?, project_id?, agent?, connection_id?,
//  model, prompt_tokens, completion_tokens, cost_usd, latency_ms?}; a
//  missing project_id is taken from the task. Returns 0 and the row in
//  *out (caller frees); CD_EDB 23514 for negative counts. The statement
//  is usage.record's.
int cd_q_usage_record(cd_db_t *db, const char *json, char **out);

//  What an llm agent needs for one call, in one read:
//    {"connection": {"id", "name", "config", "sealed_api_key"} | null, (by name)
//     "template_id": int | null,   (template_id, or else the agent's own)
//     "template": str | null,      (that template's body)
//     "prices": <config llm_prices> | null}
//  agent is the agent's name (its agents row gives the template when
//  template_id is CD_Q_NULL). The connection's config is returned as
//  stored (its secret values masked, "********"); sealed_api_key is the
//  sealed form of its api_key (hex, for the vault to open), or null.
//  Returns 0 and *out (caller frees).
int cd_q_usage_llm_context(cd_db_t *db, const char *agent, const char *connection,
                           int64_t template_id, char **out);

//  GET /api/v1/usage: sums per group_by ("agent", "project", "task" or
//  "connection") of the calls since (RFC 3339, or NULL for all), as
//  items [{key, prompt_tokens, completion_tokens, llm_calls, cost_usd}]
//  ordered by cost, highest first. Returns 0; CD_EINVAL for another
//  group_by.
int cd_q_usage_summary(cd_db_t *db, const char *group_by, const char *since, cd_q_page_t *out);

#endif
