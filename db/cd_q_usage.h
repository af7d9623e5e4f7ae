/*  cd_q_usage: the usage ledger (llm_calls table): one row per LLM call.

    Conventions: cd_q.h. A call row: {id, ts, task_id, project_id, agent,
    connection_id, model, prompt_tokens, completion_tokens, cost_usd,
    latency_ms}. Recording a call also adds it to its task's usage
    ({prompt_tokens, completion_tokens, llm_calls, cost_usd}) in the same
    statement, so the two never disagree. */
#ifndef CD_DB_Q_USAGE_H
#define CD_DB_Q_USAGE_H

#include "cd_q.h"

//  Records a call from {task_id?, project_id?, agent?, connection_id?,
//  model, prompt_tokens, completion_tokens, cost_usd, latency_ms?}; a
//  missing project_id is taken from the task. Returns 0 and the row in
//  *out (caller frees); CD_EDB 23514 for negative counts.
int cd_q_usage_record(cd_db_t *db, const char *json, char **out);

//  GET /api/v1/usage: sums per group_by ("agent", "project", "task" or
//  "connection") of the calls since (RFC 3339, or NULL for all), as
//  items [{key, prompt_tokens, completion_tokens, llm_calls, cost_usd}]
//  ordered by cost, highest first. Returns 0; CD_EINVAL for another
//  group_by.
int cd_q_usage_summary(cd_db_t *db, const char *group_by, const char *since, cd_q_page_t *out);

#endif
