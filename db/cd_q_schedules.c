/*  cd_q_schedules: queries on scheduled_tasks (see cd_q_schedules.h).

    Interface: cd_q_schedules_writes, cd_q_schedules_insert,
    cd_q_schedules_get, cd_q_schedules_list, cd_q_schedules_patch,
    cd_q_schedules_delete, cd_q_schedules_run, cd_q_schedules_due,
    cd_q_schedules_mark_fired. */
#include "cd_q_schedules.h"
#include "cd_error.h"

#include <stddef.h>
#include <stdlib.h>

#define SCHEDULE_JSON                                                                              \
    "json_build_object('id', s.id, 'name', s.name, 'interval_s', s.interval_s, 'cron', s.cron, "   \
    "'task', s.task, 'enabled', s.enabled, 'catch_up', s.catch_up, 'last_run_at', "                \
    "cd_ts(s.last_run_at), 'next_run_at', cd_ts(s.next_run_at), 'created_by', s.created_by, "      \
    "'created_at', cd_ts(s.created_at), 'updated_at', cd_ts(s.updated_at))"

//  The task object, from a row aliased t: the same text as TASK_JSON in
//  cd_q_tasks.c (test_q_schedules compares a fired task with
//  cd_q_tasks_get's).
#define TASK_JSON                                                                                  \
    "json_build_object('id', t.id, 'title', t.title, 'description', t.description, 'status', "     \
    "t.status, 'priority', t.priority, 'project_id', t.project_id, 'assignee', t.assignee, "       \
    "'agent', t.agent, 'input', t.input, 'output', t.output, 'error', t.error, 'attempts', "       \
    "t.attempts, 'max_attempts', t.max_attempts, 'timeout_ms', t.timeout_ms, 'budget', t.budget, " \
    "'usage', t.usage, 'created_by', t.created_by, 'created_at', cd_ts(t.created_at), "            \
    "'started_at', cd_ts(t.started_at), 'finished_at', cd_ts(t.finished_at), 'updated_at', "       \
    "cd_ts(t.updated_at), 'lease_owner', t.lease_owner, 'lease_expires_at', "                      \
    "cd_ts(t.lease_expires_at), 'next_attempt_at', cd_ts(t.next_attempt_at))"

//  The writes (see cd_q_schedules.h), shared by persist and the functions
//  below.
static const char s_insert[] =
    "INSERT INTO scheduled_tasks AS s (name, interval_s, cron, task, enabled,"
    " catch_up, next_run_at, created_by)"
    " SELECT b.e ->> 'name', (b.e ->> 'interval_s')::int, b.e ->> 'cron',"
    " b.e -> 'task', coalesce((b.e ->> 'enabled')::boolean, true),"
    " coalesce(b.e ->> 'catch_up', 'skip'),"
    " CASE WHEN $2::timestamptz IS NOT NULL THEN $2::timestamptz"
    " WHEN coalesce((b.e ->> 'enabled')::boolean, true)"
    " THEN now() + (b.e ->> 'interval_s')::int * interval '1 second' END,"
    " $3::bigint"
    " FROM (SELECT $1::jsonb AS e) b RETURNING " SCHEDULE_JSON;

//  `cur` is the schedule as read, `n` its trigger and switch after the
//  patch (a key of $2 replaces the column; a new interval_s clears cron
//  and a new cron interval_s, unless $2 gives both); next_run_at follows from
//  comparing them. The UPDATE re-checks updated_at against $4 on the
//  latest row version, so a schedule changed since the caller read it
//  (and computed $3 from it) is a conflict.
static const char s_patch[] =
    "WITH cur AS (SELECT s.* FROM scheduled_tasks s"
    "  WHERE s.id = $1 AND ($5::bigint IS NULL OR s.created_by = $5)),"
    " n AS (SELECT c.id,"
    "  CASE WHEN $2::jsonb ? 'interval_s' THEN ($2::jsonb ->> 'interval_s')::int"
    "  WHEN jsonb_typeof($2::jsonb -> 'cron') = 'string' THEN NULL"
    "  ELSE c.interval_s END AS interval_s,"
    "  CASE WHEN $2::jsonb ? 'cron' THEN $2::jsonb ->> 'cron'"
    "  WHEN jsonb_typeof($2::jsonb -> 'interval_s') = 'number' THEN NULL"
    "  ELSE c.cron END AS cron,"
    "  CASE WHEN $2::jsonb ? 'enabled' THEN ($2::jsonb ->> 'enabled')::boolean"
    "  ELSE c.enabled END AS enabled,"
    "  c.interval_s AS old_interval, c.cron AS old_cron, c.enabled AS was_enabled FROM cur c),"
    " u AS (UPDATE scheduled_tasks s SET"
    "  name = CASE WHEN $2::jsonb ? 'name' THEN $2::jsonb ->> 'name' ELSE s.name END,"
    "  interval_s = n.interval_s, cron = n.cron, enabled = n.enabled,"
    "  task = CASE WHEN $2::jsonb ? 'task' THEN $2::jsonb -> 'task' ELSE s.task END,"
    "  catch_up = CASE WHEN $2::jsonb ? 'catch_up' THEN $2::jsonb ->> 'catch_up'"
    "  ELSE s.catch_up END,"
    "  next_run_at = CASE WHEN NOT n.enabled THEN NULL"
    "  WHEN n.was_enabled AND n.interval_s IS NOT DISTINCT FROM n.old_interval"
    "  AND n.cron IS NOT DISTINCT FROM n.old_cron THEN s.next_run_at"
    "  WHEN n.cron IS NOT NULL THEN $3::timestamptz"
    "  ELSE now() + n.interval_s * interval '1 second' END"
    "  FROM n WHERE s.id = n.id AND ($4::timestamptz IS NULL OR s.updated_at = $4::timestamptz)"
    "  RETURNING " SCHEDULE_JSON " AS j)"
    " SELECT j, true FROM u"
    " UNION ALL SELECT (" SCHEDULE_JSON "::jsonb || '{\"conflict\": true}')::json, false"
    " FROM cur s WHERE NOT EXISTS (SELECT FROM u)";

static const char s_delete[] = "DELETE FROM scheduled_tasks s WHERE s.id = $1"
                               " AND ($2::bigint IS NULL OR s.created_by = $2) RETURNING s.id";

//  A firing: the schedule is locked (a PATCH or another firing waits),
//  the task is created from its template as POST /tasks would (defaults
//  for the rest, created_by the schedule's owner), with its `created`
//  history row and `task.created` event, then `schedule.fired`; the
//  history insert reads the task from `t`, so it runs after the task
//  exists (its trigger bumps the task's event_seq).
static const char s_run[] =
    "WITH s AS (SELECT x.* FROM scheduled_tasks x"
    "  WHERE x.id = $1 AND ($2::bigint IS NULL OR x.created_by = $2) FOR UPDATE),"
    " t AS (INSERT INTO tasks AS t (title, description, priority, project_id, assignee, input,"
    "  created_by)"
    "  SELECT s.task ->> 'title', coalesce(s.task ->> 'description', ''),"
    "  coalesce((s.task ->> 'priority')::smallint, 5), (s.task ->> 'project_id')::bigint,"
    "  s.task -> 'assignee', nullif(s.task -> 'input', 'null'), s.created_by FROM s"
    "  RETURNING " TASK_JSON " AS j, t.id, t.project_id),"
    " h AS (INSERT INTO task_events (task_id, kind, status, payload)"
    "  SELECT t.id, 'created', 'todo', jsonb_build_object('schedule_id', s.id, 'manual', true)"
    "  FROM t, s RETURNING id),"
    " e AS (INSERT INTO events (type, project_id, task_id, data)"
    "  SELECT 'task.created', t.project_id, t.id, t.j::jsonb FROM t"
    "  UNION ALL SELECT 'schedule.fired', t.project_id, t.id, jsonb_build_object('schedule_id',"
    "  s.id, 'name', s.name, 'task_id', t.id, 'manual', true) FROM t, s RETURNING id),"
    " u AS (UPDATE scheduled_tasks x SET last_run_at = now() FROM s WHERE x.id = s.id"
    "  RETURNING x.id)"
    " SELECT t.j FROM t";

//  A timed firing (the scheduler's): the CAS on next_run_at (locked, and
//  re-checked on the newest row version) lets one node fire a due
//  schedule once; $4 false records a skipped firing (next_run_at moves on,
//  no task). The task as POST /tasks creates it (history row `created`
//  with seq 1, event task.created), then schedule.fired. next_run_at: $3
//  for a cron schedule (its next minute after now, computed by the
//  caller); for an interval, the first time after now on the schedule's
//  own beat (next_run_at + k * interval_s), so a firing late by any
//  number of periods is one firing, and the beat is kept.
static const char s_fire[] =
    "WITH s AS (SELECT x.* FROM scheduled_tasks x"
    "  WHERE x.id = $1 AND x.enabled AND x.next_run_at = $2::timestamptz FOR UPDATE),"
    " t AS (INSERT INTO tasks AS t (event_seq, title, description, priority, project_id,"
    "  assignee, input, created_by)"
    "  SELECT 1, s.task ->> 'title', coalesce(s.task ->> 'description', ''),"
    "  coalesce((s.task ->> 'priority')::smallint, 5), (s.task ->> 'project_id')::bigint,"
    "  s.task -> 'assignee', nullif(s.task -> 'input', 'null'), s.created_by FROM s"
    "  WHERE $4::boolean RETURNING " TASK_JSON " AS j, t.*),"
    " h AS (INSERT INTO task_events (task_id, seq, kind, to_agent, status, payload)"
    "  SELECT t.id, 1, 'created', t.assignee ->> 'agent', 'todo',"
    "  jsonb_build_object('assignee', t.assignee, 'priority', t.priority, 'schedule_id', s.id)"
    "  FROM t, s),"
    " e AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT 'task.created', t.project_id, t.id, t.assignee ->> 'agent', jsonb_build_object("
    "  'title', t.title, 'status', t.status, 'priority', t.priority, 'assignee', t.assignee)"
    "  FROM t"
    "  UNION ALL SELECT 'schedule.fired', t.project_id, t.id, NULL, jsonb_build_object("
    "  'schedule_id', s.id, 'name', s.name, 'task_id', t.id, 'due_at', cd_ts(s.next_run_at))"
    "  FROM t, s),"
    " u AS (UPDATE scheduled_tasks x SET last_run_at = CASE WHEN $4::boolean THEN now()"
    "  ELSE x.last_run_at END,"
    "  next_run_at = CASE WHEN x.cron IS NOT NULL THEN $3::timestamptz"
    "  ELSE x.next_run_at + (floor(extract(epoch FROM now() - x.next_run_at) / x.interval_s)"
    "  + 1) * x.interval_s * interval '1 second' END"
    "  FROM s WHERE x.id = s.id RETURNING x.id, x.next_run_at)"
    " SELECT json_build_object('task', (SELECT t.j FROM t), 'next_run_at', cd_ts(u.next_run_at))"
    " FROM u";

const cd_q_write_t cd_q_schedules_writes[] = {
    {"schedules.insert", s_insert, 3},
    {"schedules.patch", s_patch, 5},
    {"schedules.delete", s_delete, 2},
    {"schedules.run", s_run, 2},
    {"schedules.fire", s_fire, 4},
};
const size_t cd_q_schedules_n_writes =
    sizeof cd_q_schedules_writes / sizeof cd_q_schedules_writes[0];

int
cd_q_schedules_insert(cd_db_t *db, const char *json, const char *next_run_at, int64_t created_by,
                      char **out)
{
    char b1[24];
    const char *params[] = {json, next_run_at, cd__q_i64(b1, created_by)};
    return cd__q_one(db, s_insert, 3, params, out);
}

int
cd_q_schedules_get(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, "SELECT " SCHEDULE_JSON " FROM scheduled_tasks s WHERE s.id = $1", 1,
                     params, out);
}

int
cd_q_schedules_list(cd_db_t *db, int64_t created_by, const char *cursor, int limit,
                    cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, created_by), cursor, NULL};
    return cd__q_page(db,
                      "SELECT s.id, " SCHEDULE_JSON " FROM scheduled_tasks s"
                      " WHERE ($1::bigint IS NULL OR s.created_by = $1)"
                      " AND ($2::bigint IS NULL OR s.id < $2) ORDER BY s.id DESC LIMIT $3",
                      3, params, limit, out);
}

int
cd_q_schedules_patch(cd_db_t *db, int64_t id, const char *json, const char *next_run_at,
                     const char *expected, int64_t created_by, char **out)
{
    char b1[24], b5[24];
    const char *params[] = {cd__q_i64(b1, id), json, next_run_at, expected,
                            cd__q_i64(b5, created_by)};
    return cd__q_cas_json(db, s_patch, 5, params, out);
}

int
cd_q_schedules_delete(cd_db_t *db, int64_t id, int64_t created_by)
{
    char b1[24], b2[24], *row = NULL;
    const char *params[] = {cd__q_i64(b1, id), cd__q_i64(b2, created_by)};
    int rc = cd__q_one(db, s_delete, 2, params, &row);
    free(row);
    return rc;
}

int
cd_q_schedules_run(cd_db_t *db, int64_t id, int64_t created_by, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), cd__q_i64(b2, created_by)};
    return cd__q_one(db, s_run, 2, params, out);
}

int
cd_q_schedules_fire(cd_db_t *db, int64_t id, const char *expected, const char *cron_next, bool fire,
                    char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), expected, cron_next, fire ? "true" : "false"};
    return cd__q_one(db, s_fire, 4, params, out);
}

int
cd_q_schedules_due(cd_db_t *db, int limit, cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, cd__q_limit(limit))};
    return cd__q_all(db,
                     "SELECT " SCHEDULE_JSON " FROM scheduled_tasks s"
                     " WHERE s.enabled AND s.next_run_at <= now()"
                     " ORDER BY s.next_run_at, s.id LIMIT $1",
                     1, params, out);
}

int
cd_q_schedules_mark_fired(cd_db_t *db, int64_t id, const char *expected, const char *next,
                          char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), expected, next};
    return cd__q_cas(db,
                     "WITH u AS (UPDATE scheduled_tasks s SET last_run_at = now(),"
                     " next_run_at = $3::timestamptz"
                     " WHERE s.id = $1 AND s.next_run_at = $2::timestamptz RETURNING " SCHEDULE_JSON
                     " AS j)"
                     " SELECT true, j FROM u UNION ALL SELECT false, " SCHEDULE_JSON
                     " FROM scheduled_tasks s WHERE s.id = $1 AND NOT EXISTS (SELECT FROM u)",
                     3, params, out);
}
