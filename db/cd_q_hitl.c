/*  cd_q_hitl: queries on hitl_requests (see cd_q_hitl.h).

    The expiry pass locks the due rows with SKIP LOCKED, so nodes running
    it together split the work instead of expiring (and acting on) one
    request twice, and a request being answered right now is left to
    that answer.

    Interface: cd_q_hitl_writes, cd_q_hitl_insert, cd_q_hitl_get,
    cd_q_hitl_list, cd_q_hitl_respond, cd_q_hitl_expire_due,
    cd_q_hitl_cancel_task. */
#include "cd_q_hitl.h"
#include "cd_error.h"
#include "db_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HITL_JSON                                                                                  \
    "json_build_object('id', h.id, 'task_id', h.task_id, 'project_id', h.project_id, 'agent', "    \
    "h.agent, 'question', h.question, 'options', h.options, 'status', h.status, 'response', "      \
    "h.response, 'approved', h.approved, 'deadline', cd_ts(h.deadline), 'on_timeout', "            \
    "h.on_timeout, 'created_at', cd_ts(h.created_at), 'answered_at', cd_ts(h.answered_at))"

int
cd_q_hitl_insert(cd_db_t *db, int64_t task_id, const char *agent, const char *json, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, task_id), agent, json};
    return cd__q_one(db,
                     "INSERT INTO hitl_requests AS h (task_id, project_id, agent, question,"
                     " options, deadline, on_timeout)"
                     " SELECT t.id, t.project_id, $2, b.e ->> 'question',"
                     " nullif(b.e -> 'options', 'null'),"
                     " now() + (b.e ->> 'timeout_s')::double precision * interval '1 second',"
                     " coalesce(b.e ->> 'on_timeout', 'deny')"
                     " FROM tasks t, (SELECT $3::jsonb AS e) b WHERE t.id = $1"
                     " RETURNING " HITL_JSON,
                     3, params, out);
}

int
cd_q_hitl_get(cd_db_t *db, int64_t id, int64_t created_by, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), cd__q_i64(b2, created_by)};
    return cd__q_one(db,
                     "SELECT " HITL_JSON " FROM hitl_requests h WHERE h.id = $1"
                     " AND ($2::bigint IS NULL OR EXISTS (SELECT FROM tasks o"
                     " WHERE o.id = h.task_id AND o.created_by = $2))",
                     2, params, out);
}

int
cd_q_hitl_list(cd_db_t *db, const cd_q_hitl_filter_t *f, cd_q_page_t *out)
{
    char b1[24], b2[24], b3[24];
    const char *params[] = {f->status,
                            cd__q_i64(b1, f->project_id),
                            cd__q_i64(b2, f->task_id),
                            cd__q_i64(b3, f->created_by),
                            f->cursor,
                            NULL};
    return cd__q_page(db,
                      "SELECT h.id, " HITL_JSON " FROM hitl_requests h"
                      " WHERE ($1::text IS NULL OR h.status = $1)"
                      " AND ($2::bigint IS NULL OR h.project_id = $2)"
                      " AND ($3::bigint IS NULL OR h.task_id = $3)"
                      " AND ($4::bigint IS NULL OR EXISTS (SELECT FROM tasks t"
                      "  WHERE t.id = h.task_id AND t.created_by = $4))"
                      " AND ($5::bigint IS NULL OR h.id < $5)"
                      " ORDER BY h.id DESC LIMIT $6",
                      6, params, f->limit, out);
}

//  The answer (see cd_q_hitl.h). Order matters where one part writes a
//  row another part also writes: the history insert's trigger bumps the
//  task's event_seq, so the task's own status change (`resumed`) must be
//  done before that insert runs, which joining `resumed` into the
//  insert's rows guarantees (a row cannot be produced before the CTE it
//  joins has yielded or finished). `pending` locks the task's pending
//  requests in id order and re-reads each after waiting (READ COMMITTED),
//  so it holds what is pending now, not at the statement's snapshot.
static const char s_respond[] =
    "WITH target AS (SELECT h.id, h.task_id FROM hitl_requests h WHERE h.id = $1"
    "  AND ($3::bigint IS NULL OR EXISTS (SELECT FROM tasks o"
    "  WHERE o.id = h.task_id AND o.created_by = $3))),"
    " pending AS (SELECT p.id FROM hitl_requests p"
    "  WHERE p.task_id = (SELECT task_id FROM target) AND p.status = 'pending'"
    "  ORDER BY p.id FOR UPDATE),"
    " u AS (UPDATE hitl_requests h SET status = 'answered', response = $2::jsonb -> 'response',"
    "  approved = ($2::jsonb ->> 'approved')::boolean, answered_at = now()"
    "  WHERE h.id = $1 AND h.id IN (SELECT id FROM pending) RETURNING h.*),"
    " resumed AS (UPDATE tasks t SET status = 'in_progress', lease_owner = $4::text,"
    "  lease_expires_at = now() + t.timeout_ms * interval '1 millisecond'"
    "  FROM u WHERE t.id = u.task_id AND t.status = 'waiting_human'"
    "  AND NOT EXISTS (SELECT FROM pending p WHERE p.id <> u.id)"
    "  RETURNING t.id, t.status),"
    " hist AS (INSERT INTO task_events (task_id, kind, to_agent, status, payload)"
    "  SELECT h.task_id, 'hitl_answered', h.agent, coalesce(r.status, k.status),"
    "  jsonb_build_object('hitl_id', h.id, 'question', h.question, 'response', h.response,"
    "  'approved', h.approved)"
    "  FROM u h LEFT JOIN resumed r ON r.id = h.task_id"
    "  LEFT JOIN tasks k ON k.id = h.task_id RETURNING id),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT 'hitl.answered', h.project_id, h.task_id, h.agent, " HITL_JSON "::jsonb"
    "  || jsonb_build_object('task_resumed', r.id IS NOT NULL)"
    "  FROM u h LEFT JOIN resumed r ON r.id = h.task_id RETURNING id)"
    " SELECT " HITL_JSON ", true FROM u h"
    " UNION ALL SELECT (" HITL_JSON "::jsonb || '{\"conflict\": true}')::json, false"
    " FROM hitl_requests h WHERE h.id IN (SELECT id FROM target)"
    " AND NOT EXISTS (SELECT FROM u)";

const cd_q_write_t cd_q_hitl_writes[] = {
    {"hitl.respond", s_respond, 4},
};
const size_t cd_q_hitl_n_writes = sizeof cd_q_hitl_writes / sizeof cd_q_hitl_writes[0];

int
cd_q_hitl_respond(cd_db_t *db, int64_t id, const char *response, int approved, int64_t created_by,
                  const char *node_id, char **out)
{
    //  The statement takes the API's body, {response, approved?}.
    size_t size = strlen(response) + 48;
    char *body = (char *)cd__db_checked(malloc(size), __FILE__, __LINE__);
    snprintf(body, size, "{\"response\": %s, \"approved\": %s}", response,
             approved < 0 ? "null" : (approved ? "true" : "false"));
    char b1[24], b3[24];
    const char *params[] = {cd__q_i64(b1, id), body, cd__q_i64(b3, created_by), node_id};
    int rc = cd__q_cas_json(db, s_respond, 4, params, out);
    free(body);
    return rc;
}

int
cd_q_hitl_expire_due(cd_db_t *db, cd_q_page_t *out)
{
    return cd__q_all(db,
                     "UPDATE hitl_requests h SET status = 'expired' WHERE h.id IN ("
                     " SELECT d.id FROM hitl_requests d WHERE d.status = 'pending'"
                     " AND d.deadline <= now() FOR UPDATE SKIP LOCKED) RETURNING " HITL_JSON,
                     0, NULL, out);
}

int
cd_q_hitl_cancel_task(cd_db_t *db, int64_t task_id, int64_t *count)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, task_id)};
    return cd_db_exec_params(db,
                             "UPDATE hitl_requests SET status = 'cancelled'"
                             " WHERE task_id = $1 AND status = 'pending'",
                             1, params, count);
}
