/*  cd_q_tasks: queries on tasks, task_events and archived_tasks (see
    cd_q_tasks.h).

    Every change is one statement. Conditional changes (patch, status
    moves, cancel, retry) are compare-and-set: the UPDATE carries the
    allowed current statuses in its WHERE, which READ COMMITTED re-checks
    against the newest row version after waiting for a concurrent writer,
    so two racing changes cannot both pass. A second branch of the same
    statement returns the row as it is when the UPDATE matched nothing, so
    the caller can tell "wrong state" (CD_ESTATE) from "no such task".

    Claiming is the classic queue pattern: a sub-select finds the best
    todo row in (priority DESC, created_at, id) order and locks it FOR
    UPDATE SKIP LOCKED; rows another claimer holds are skipped rather than
    waited for, and a row that stopped being todo while we looked is
    re-checked and passed over. The partial indexes on status = 'todo'
    serve that order.

    The API's writes (cd_q_tasks_writes, run by the persist actor; the
    functions of the same names run the very same SQL) are one statement
    each, with the task's event (events) and history row (task_events) in
    data-modifying CTEs of that statement, so the three commit together or
    not at all. Their first column is what the API answers with, so the
    api actor can tell the outcomes apart without a second query:

      create, create_batch  the task (tasks) as JSON, or {"invalid": field,
                            "reason": why} when the body names a project,
                            agent, role or team that does not exist (then
                            nothing is written)
      create_many           an array with one such answer per element
      patch, cancel, retry  the task, {"conflict": true, "status": s} when
                            its status does not allow the change, or no
                            row (no such task, or not the caller's)
      archive               the archived task, or no row

    A create writes its history row with seq 1 and the task with
    event_seq 1 itself (the seq trigger skips rows that bring a seq:
    migration 0004), and looks the referenced rows up in the same
    statement: no read before the write, and no failed statement (which
    would send persist's whole batch down its slow path) for a reference
    that does not exist. A row deleted between that look-up and the commit
    is caught by the project's foreign key; agents, roles and teams have
    none (a task may outlive its agent), so such a task waits until it is
    cancelled.

    Interface: cd_q_tasks_writes, cd_q_tasks_create, cd_q_tasks_create_batch,
    cd_q_tasks_create_many, cd_q_tasks_insert, cd_q_tasks_insert_batch, cd_q_tasks_get,
    cd_q_tasks_list, cd_q_tasks_patch, cd_q_tasks_claim_next,
    cd_q_tasks_renew_leases, cd_q_tasks_update_status,
    cd_q_tasks_fail_attempt, cd_q_tasks_cancel, cd_q_tasks_retry,
    cd_q_tasks_requeue_expired, cd_q_tasks_requeue_owned,
    cd_q_tasks_counts, cd_q_tasks_archive, cd_q_tasks_archived_get,
    cd_q_tasks_archived_list, cd_q_task_events_append,
    cd_q_task_events_list. */
#include "cd_q_tasks.h"
#include "cd_error.h"
#include "db_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

//  The task object, from a row aliased t.
#define TASK_JSON                                                                                  \
    "json_build_object('id', t.id, 'title', t.title, 'description', t.description, 'status', "     \
    "t.status, 'priority', t.priority, 'project_id', t.project_id, 'assignee', t.assignee, "       \
    "'agent', t.agent, 'input', t.input, 'output', t.output, 'error', t.error, 'attempts', "       \
    "t.attempts, 'max_attempts', t.max_attempts, 'timeout_ms', t.timeout_ms, 'budget', t.budget, " \
    "'usage', t.usage, 'created_by', t.created_by, 'created_at', cd_ts(t.created_at), "            \
    "'started_at', cd_ts(t.started_at), 'finished_at', cd_ts(t.finished_at), 'updated_at', "       \
    "cd_ts(t.updated_at), 'lease_owner', t.lease_owner, 'lease_expires_at', "                      \
    "cd_ts(t.lease_expires_at), 'next_attempt_at', cd_ts(t.next_attempt_at))"

//  The archived task object, from a row of archived_tasks aliased t.
#define ARCHIVED_JSON                                                                              \
    "json_build_object('id', t.id, 'title', t.title, 'description', t.description, 'status', "     \
    "t.status, 'priority', t.priority, 'project_id', t.project_id, 'assignee', t.assignee, "       \
    "'agent', t.agent, 'input', t.input, 'output', t.output, 'error', t.error, 'attempts', "       \
    "t.attempts, 'max_attempts', t.max_attempts, 'timeout_ms', t.timeout_ms, 'budget', t.budget, " \
    "'usage', t.usage, 'created_by', t.created_by, 'created_at', cd_ts(t.created_at), "            \
    "'started_at', cd_ts(t.started_at), 'finished_at', cd_ts(t.finished_at), 'archived_at', "      \
    "cd_ts(t.archived_at), 'archived_by', t.archived_by)"

//  A history row aliased e.
#define EVENT_JSON                                                                                 \
    "json_build_object('id', e.id, 'task_id', e.task_id, 'seq', e.seq, 'ts', cd_ts(e.ts), "        \
    "'kind', e.kind, 'from', e.from_agent, 'to', e.to_agent, 'status', e.status, 'payload', "      \
    "e.payload)"

//  The columns a create fills and their values from a body b.e, by the
//  user `by` (SQL); JSON null counts as absent.
#define TASK_FIELDS                                                                                \
    "title, description, priority, project_id, assignee, input, max_attempts, timeout_ms, "        \
    "budget, created_by"
#define TASK_COLUMNS "(" TASK_FIELDS ")"
#define TASK_VALUES_BY(by)                                                                         \
    "b.e ->> 'title', coalesce(b.e ->> 'description', ''), coalesce((b.e ->> "                     \
    "'priority')::smallint, 5), (b.e ->> 'project_id')::bigint, nullif(b.e -> 'assignee', "        \
    "'null'), nullif(b.e -> 'input', 'null'), coalesce((b.e ->> 'max_attempts')::int, 3), "        \
    "coalesce((b.e ->> 'timeout_ms')::bigint, 300000), nullif(b.e -> 'budget', 'null'), " by
#define TASK_VALUES TASK_VALUES_BY("$2::bigint")

#define FINISHED "('done', 'failed', 'cancelled')"

//  Why a create body b.e refers to something that does not exist, or NULL.
//  `scope` (SQL) limits projects to one owner's (a `user` caller), NULL for
//  any. A role exists when the catalog has it or an agent was started
//  with it.
#define CREATE_WHY_IN(scope)                                                                       \
    "CASE WHEN jsonb_typeof(b.e -> 'project_id') = 'number' AND NOT EXISTS (SELECT FROM projects"  \
    " p WHERE p.id = (b.e ->> 'project_id')::bigint AND (" scope                                   \
    " IS NULL OR p.created_by = " scope "))"                                                       \
    " THEN 'no such project'"                                                                      \
    " WHEN b.e -> 'assignee' ? 'agent' AND NOT EXISTS (SELECT FROM agents a"                       \
    " WHERE a.name = b.e -> 'assignee' ->> 'agent') THEN 'no such agent'"                          \
    " WHEN b.e -> 'assignee' ? 'role' AND NOT EXISTS (SELECT FROM roles r"                         \
    " WHERE r.name = b.e -> 'assignee' ->> 'role') AND NOT EXISTS (SELECT FROM agents a"           \
    " WHERE a.role = b.e -> 'assignee' ->> 'role') THEN 'no such role'"                            \
    " WHEN b.e -> 'assignee' ? 'team' AND NOT EXISTS (SELECT FROM teams m"                         \
    " WHERE m.id = (b.e -> 'assignee' ->> 'team')::bigint) THEN 'no such team' END"
#define CREATE_WHY CREATE_WHY_IN("$3::bigint")

//  The body field a CREATE_WHY reason is about.
#define WHY_FIELD(why) "CASE WHEN " why " = 'no such project' THEN 'project_id' ELSE 'assignee' END"

//  The inserts that go with new tasks t: the task.created event and the
//  first history row (seq 1: the task was inserted with event_seq 1).
#define CREATED_ROWS                                                                               \
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"                          \
    " SELECT 'task.created', t.project_id, t.id, t.assignee ->> 'agent', jsonb_build_object("      \
    "'title', t.title, 'status', t.status, 'priority', t.priority, 'assignee', t.assignee)"        \
    " FROM t ORDER BY t.id),"                                                                      \
    " h AS (INSERT INTO task_events (task_id, seq, kind, to_agent, status, payload)"               \
    " SELECT t.id, 1, 'created', t.assignee ->> 'agent', t.status, jsonb_build_object("            \
    "'assignee', t.assignee, 'priority', t.priority, 'created_by', t.created_by)"                  \
    " FROM t ORDER BY t.id)"

//  The answer about a refused body c (CREATE_WHY), with a field prefix: of
//  a create, and of the element c.o of a batch.
#define INVALID(prefix)                                                                            \
    "json_build_object('invalid', " prefix WHY_FIELD("c.why") ", 'reason', c.why)"
#define INVALID_ONE INVALID("")
#define INVALID_ELEMENT INVALID("'tasks[' || (c.o - 1) || '].' || ")

//  tasks.create: $1 body, $2 created_by, $3 project owner scope.
static const char s_create[] =
    "WITH c AS (SELECT b.e, " CREATE_WHY " AS why FROM (SELECT $1::jsonb AS e) b),"
    " t AS (INSERT INTO tasks AS t (event_seq, " TASK_FIELDS ") SELECT 1, " TASK_VALUES
    " FROM c b WHERE b.why IS NULL RETURNING t.*)," CREATED_ROWS " SELECT " TASK_JSON
    " FROM t UNION ALL SELECT " INVALID_ONE " FROM c WHERE c.why IS NOT NULL";

//  tasks.create_batch: $1 array of bodies (or the batch body {"tasks":
//  [...]} as the API received it), $2 created_by, $3 project owner scope.
//  All or nothing: the first element that refers to something that does
//  not exist stops the whole batch. Identity values are drawn as the
//  ordered SELECT produces rows, so ordering by id gives the request order.
static const char s_create_batch[] =
    "WITH c AS (SELECT b.e, b.o, " CREATE_WHY " AS why"
    " FROM jsonb_array_elements(CASE WHEN jsonb_typeof($1::jsonb) = 'object'"
    " THEN $1::jsonb -> 'tasks' ELSE $1::jsonb END) WITH ORDINALITY AS b(e, o)),"
    " bad AS (SELECT c.o, c.why FROM c WHERE c.why IS NOT NULL ORDER BY c.o LIMIT 1),"
    " t AS (INSERT INTO tasks AS t (event_seq, " TASK_FIELDS ") SELECT 1, " TASK_VALUES
    " FROM c b WHERE NOT EXISTS (SELECT FROM bad) ORDER BY b.o RETURNING t.*)," CREATED_ROWS
    " SELECT coalesce((SELECT " INVALID_ELEMENT " FROM bad c),"
    " (SELECT coalesce(json_agg(" TASK_JSON " ORDER BY t.id), '[]'::json) FROM t)),"
    " (SELECT count(*) FROM t)";

//  tasks.create_many: independent creates of several callers in one
//  statement (the api actor merges concurrent POST /api/v1/tasks into one
//  write, so the per-statement work is paid once). $1 is an array of
//  {"b": body, "u": created_by|null, "s": project owner scope|null}. Each
//  element stands alone: the answer is an array, in request order, of the
//  task or {"invalid": ...} for each. Valid elements draw their ids in
//  request order, so the k-th valid element is the k-th new task by id.
#define CREATE_WHY_MANY CREATE_WHY_IN("b.s")
#define TASK_VALUES_MANY TASK_VALUES_BY("b.u")
static const char s_create_many[] =
    "WITH c AS (SELECT b.e, b.o, b.u, " CREATE_WHY_MANY " AS why"
    " FROM (SELECT x.e -> 'b' AS e, x.o, (x.e ->> 'u')::bigint AS u,"
    " (x.e ->> 's')::bigint AS s FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, o))"
    " b),"
    " t AS (INSERT INTO tasks AS t (event_seq, " TASK_FIELDS ") SELECT 1, " TASK_VALUES_MANY
    " FROM c b WHERE b.why IS NULL ORDER BY b.o RETURNING t.*)," CREATED_ROWS ","
    " k AS (SELECT row_number() OVER (ORDER BY t.id) AS k, " TASK_JSON " AS j FROM t),"
    " w AS (SELECT c.o, c.why, row_number() OVER (PARTITION BY c.why IS NULL ORDER BY c.o) AS k"
    " FROM c)"
    " SELECT json_agg(CASE WHEN c.why IS NULL THEN k.j ELSE " INVALID_ONE " END ORDER BY c.o)"
    " FROM w c LEFT JOIN k ON c.why IS NULL AND k.k = c.k";

//  The second branch of a compare-and-set (patch, cancel, retry) on task
//  $1 within owner scope `scope`: the task as it is when the UPDATE u
//  matched nothing. Columns: (answer, ok, task).
#define CAS_TAIL(scope)                                                                            \
    " SELECT " TASK_JSON ", true, " TASK_JSON " FROM u t"                                          \
    " UNION ALL SELECT json_build_object('conflict', true, 'status', t.status), false, " TASK_JSON \
    " FROM tasks t WHERE t.id = $1 AND (" scope "::bigint IS NULL OR t.created_by = " scope ")"    \
    " AND NOT EXISTS (SELECT FROM u)"

//  tasks.patch: $1 id, $2 body, $3 owner scope.
static const char s_patch[] =
    "WITH u AS (UPDATE tasks t SET"
    " title = CASE WHEN $2::jsonb ? 'title' THEN $2::jsonb ->> 'title' ELSE t.title END,"
    " description = CASE WHEN $2::jsonb ? 'description'"
    " THEN coalesce($2::jsonb ->> 'description', '') ELSE t.description END,"
    " priority = CASE WHEN $2::jsonb ? 'priority'"
    " THEN coalesce(($2::jsonb ->> 'priority')::smallint, t.priority) ELSE t.priority END"
    " WHERE t.id = $1 AND ($3::bigint IS NULL OR t.created_by = $3)"
    " AND t.status NOT IN " FINISHED " RETURNING t.*)" CAS_TAIL("$3");

//  tasks.cancel: $1 id, $2 owner scope. The task.cancelled event names the
//  agent holding the task; the orchestrator is kicked (op=cancel) after
//  the commit and tells a running agent to stop. Questions still pending
//  are cancelled with the task (nobody will resume it).
static const char s_cancel[] =
    "WITH u AS (UPDATE tasks t SET status = 'cancelled', finished_at = now(),"
    " lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL"
    " WHERE t.id = $1 AND ($2::bigint IS NULL OR t.created_by = $2)"
    " AND t.status NOT IN " FINISHED " RETURNING t.*),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    " SELECT 'task.cancelled', u.project_id, u.id, u.agent,"
    " jsonb_build_object('title', u.title, 'status', u.status) FROM u),"
    " h AS (INSERT INTO task_events (task_id, kind, from_agent, status)"
    " SELECT u.id, 'cancelled', u.agent, u.status FROM u),"
    " q AS (UPDATE hitl_requests r SET status = 'cancelled' FROM u"
    " WHERE r.task_id = u.id AND r.status = 'pending')" CAS_TAIL("$2");

//  tasks.retry: $1 id, $2 owner scope. API.md has no event type for a
//  retry: the history row records it, and the task is claimable again.
static const char s_retry[] = "WITH u AS (UPDATE tasks t SET status = 'todo', finished_at = NULL,"
                              " attempts = 0, output = NULL, error = NULL, next_attempt_at = NULL"
                              " WHERE t.id = $1 AND ($2::bigint IS NULL OR t.created_by = $2)"
                              " AND t.status IN ('failed', 'cancelled') RETURNING t.*),"
                              " h AS (INSERT INTO task_events (task_id, kind, status) SELECT u.id, "
                              "'retry', u.status FROM u)" CAS_TAIL("$2");

//  tasks.archive: $1 id, $2 archived_by, $3 owner scope. Explicit column
//  lists: the two tables need not keep their columns in the same order as
//  migrations add to them.
static const char s_archive[] =
    "WITH d AS (DELETE FROM tasks t WHERE t.id = $1 AND ($3::bigint IS NULL OR t.created_by = $3)"
    " RETURNING t.*)"
    " INSERT INTO archived_tasks AS t (id, title, description, status, priority, project_id,"
    " assignee, agent, input, output, error, attempts, max_attempts, timeout_ms, budget,"
    " usage, created_by, created_at, started_at, finished_at, archived_by)"
    " SELECT id, title, description, status, priority, project_id, assignee, agent, input,"
    " output, error, attempts, max_attempts, timeout_ms, budget, usage, created_by,"
    " created_at, started_at, finished_at, $2::bigint FROM d RETURNING " ARCHIVED_JSON;

const cd_q_write_t cd_q_tasks_writes[] = {
    {"tasks.create", s_create, 3},           {"tasks.create_batch", s_create_batch, 3},
    {"tasks.create_many", s_create_many, 1}, {"tasks.patch", s_patch, 3},
    {"tasks.cancel", s_cancel, 2},           {"tasks.retry", s_retry, 2},
    {"tasks.archive", s_archive, 3},
};
const size_t cd_q_tasks_n_writes = sizeof cd_q_tasks_writes / sizeof cd_q_tasks_writes[0];

//  Runs a compare-and-set write whose rows are (answer, ok, task): no row
//  is CD_ENOTFOUND; ok true 0, false CD_ESTATE; *out (if not NULL)
//  receives the task either way.
static int
s_cas(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out)
{
    if (out) {
        *out = NULL;
    }
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query(db, sql, nparams, params, &rows);
    if (rc != 0) {
        return rc;
    }
    if (cd_db_rows_count(rows) == 0) {
        rc = CD_ENOTFOUND;
    } else {
        const char *ok = cd_db_rows_get(rows, 0, 1);
        rc = ok && strcmp(ok, "t") == 0 ? 0 : CD_ESTATE;
        const char *json = cd_db_rows_get(rows, 0, 2);
        if (out && json) {
            *out = cd__db_strdup(json);
        }
    }
    cd_db_rows_destroy(&rows);
    return rc;
}

//  True if a create's answer says a reference does not exist.
static bool
s_invalid(const char *answer)
{
    return answer && strncmp(answer, "{\"invalid\"", 10) == 0;
}

int
cd_q_tasks_create(cd_db_t *db, const char *json, int64_t created_by, int64_t project_owner,
                  char **out)
{
    char b1[24], b2[24];
    const char *params[] = {json, cd__q_i64(b1, created_by), cd__q_i64(b2, project_owner)};
    int rc = cd__q_one(db, s_create, 3, params, out);
    return rc == 0 && s_invalid(*out) ? CD_EINVAL : rc;
}

int
cd_q_tasks_create_many(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return cd__q_one(db, s_create_many, 1, params, out);
}

int
cd_q_tasks_create_batch(cd_db_t *db, const char *json, int64_t created_by, int64_t project_owner,
                        cd_q_page_t *out)
{
    *out = (cd_q_page_t){0};
    char b1[24], b2[24];
    const char *params[] = {json, cd__q_i64(b1, created_by), cd__q_i64(b2, project_owner)};
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query(db, s_create_batch, 3, params, &rows);
    if (rc != 0) {
        return rc;
    }
    const char *answer = cd_db_rows_get(rows, 0, 0);
    out->items = cd__db_strdup(answer ? answer : "[]");
    if (s_invalid(out->items)) {
        rc = CD_EINVAL;
    } else {
        int64_t count = 0;
        cd_db_rows_int64(rows, 0, 1, &count);
        out->count = (int)count;
    }
    cd_db_rows_destroy(&rows);
    return rc;
}

int
cd_q_tasks_insert(cd_db_t *db, const char *json, int64_t created_by, char **out)
{
    char b1[24];
    const char *params[] = {json, cd__q_i64(b1, created_by)};
    return cd__q_one(db,
                     "INSERT INTO tasks AS t " TASK_COLUMNS " SELECT " TASK_VALUES
                     " FROM (SELECT $1::jsonb AS e) b RETURNING " TASK_JSON,
                     2, params, out);
}

int
cd_q_tasks_insert_batch(cd_db_t *db, const char *json, int64_t created_by, cd_q_page_t *out)
{
    //  Identity values are drawn as the ordered SELECT produces rows, so
    //  ordering the result by id gives back the request order.
    char b1[24];
    const char *params[] = {json, cd__q_i64(b1, created_by)};
    return cd__q_all(db,
                     "WITH ins AS (INSERT INTO tasks " TASK_COLUMNS " SELECT " TASK_VALUES
                     " FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS b(e, o)"
                     " ORDER BY b.o RETURNING *)"
                     " SELECT " TASK_JSON " FROM ins t ORDER BY t.id",
                     2, params, out);
}

//  Runs a one-id read as a prepared statement (GET of a task is a hot read:
//  planning it every time cost several times its execution) and returns
//  its first column in *out, or CD_ENOTFOUND.
static int
s_get_prepared(cd_db_t *db, const char *sql, int64_t id, char **out)
{
    *out = NULL;
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query_prepared(db, sql, 1, params, &rows);
    if (rc != 0) {
        return rc;
    }
    const char *v = cd_db_rows_get(rows, 0, 0);
    if (v) {
        *out = cd__db_strdup(v);
    }
    cd_db_rows_destroy(&rows);
    return v ? 0 : CD_ENOTFOUND;
}

static const char s_get[] = "SELECT " TASK_JSON " FROM tasks t WHERE t.id = $1::bigint";
static const char s_archived_get[] =
    "SELECT " ARCHIVED_JSON " FROM archived_tasks t WHERE t.id = $1::bigint";

int
cd_q_tasks_get(cd_db_t *db, int64_t id, char **out)
{
    return s_get_prepared(db, s_get, id, out);
}

int
cd_q_tasks_list(cd_db_t *db, const cd_q_task_filter_t *f, cd_q_page_t *out)
{
    char b1[24], b2[24], b3[24];
    const char *params[] = {
        f->status, cd__q_i64(b1, f->project_id), f->agent,  cd__q_i64(b2, f->priority_min),
        f->since,  cd__q_i64(b3, f->created_by), f->cursor, NULL};
    return cd__q_page(db,
                      "SELECT t.id, " TASK_JSON " FROM tasks t"
                      " WHERE ($1::text IS NULL OR t.status = $1)"
                      " AND ($2::bigint IS NULL OR t.project_id = $2)"
                      " AND ($3::text IS NULL OR t.agent = $3 OR t.assignee ->> 'agent' = $3)"
                      " AND ($4::int IS NULL OR t.priority >= $4)"
                      " AND ($5::timestamptz IS NULL OR t.created_at >= $5)"
                      " AND ($6::bigint IS NULL OR t.created_by = $6)"
                      " AND ($7::bigint IS NULL OR t.id < $7)"
                      " ORDER BY t.id DESC LIMIT $8",
                      8, params, f->limit, out);
}

int
cd_q_tasks_patch(cd_db_t *db, int64_t id, const char *json, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json, NULL};
    return s_cas(db, s_patch, 3, params, out);
}

int
cd_q_tasks_claim_next(cd_db_t *db, const cd_q_claim_t *c, char **out)
{
    *out = NULL;
    if (!c->owner || c->lease_ms <= 0 || (!c->agent && !c->role && c->team == CD_Q_NULL)) {
        return CD_EINVAL;
    }
    char b1[24], b2[24];
    const char *params[] = {c->agent, c->role, cd__q_i64(b1, c->team), c->owner,
                            cd__q_i64(b2, c->lease_ms)};
    //  The outer status check is belt and braces: the locked sub-select
    //  already re-checked the row after locking it.
    return cd__q_one(db,
                     "UPDATE tasks t SET status = 'in_progress', agent = coalesce($1, t.agent),"
                     " lease_owner = $4,"
                     " lease_expires_at = now() + $5::bigint * interval '1 millisecond',"
                     " attempts = t.attempts + 1, started_at = now(), next_attempt_at = NULL"
                     " WHERE t.status = 'todo' AND t.id = ("
                     "  SELECT c.id FROM tasks c WHERE c.status = 'todo'"
                     "  AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now())"
                     "  AND (c.assignee ->> 'agent' = $1 OR c.assignee ->> 'role' = $2"
                     "   OR c.assignee -> 'team' = to_jsonb($3::bigint))"
                     "  ORDER BY c.priority DESC, c.created_at, c.id"
                     "  LIMIT 1 FOR UPDATE SKIP LOCKED)"
                     " RETURNING " TASK_JSON,
                     5, params, out);
}

int
cd_q_tasks_renew_leases(cd_db_t *db, const char *owner, int64_t lease_ms, int64_t *count)
{
    char b1[24];
    const char *params[] = {owner, cd__q_i64(b1, lease_ms)};
    return cd_db_exec_params(db,
                             "UPDATE tasks SET lease_expires_at = now() + $2::bigint * "
                             "interval '1 millisecond' WHERE lease_owner = $1",
                             2, params, count);
}

int
cd_q_tasks_update_status(cd_db_t *db, int64_t id, const cd_q_task_status_t *s, char **out)
{
    if (out) {
        *out = NULL;
    }
    if (!s->to) {
        return CD_EINVAL;
    }
    char b1[24], b2[24];
    const char *params[] = {
        cd__q_i64(b1, id), s->from,  s->to,
        s->agent,          s->owner, cd__q_i64(b2, s->owner ? s->lease_ms : CD_Q_NULL),
        s->output,         s->error};
    //  The lease: kept when staying in progress without a new owner,
    //  replaced with one, dropped when leaving in progress.
    return cd__q_cas(
        db,
        "WITH u AS (UPDATE tasks t SET status = $3, agent = coalesce($4, t.agent),"
        " lease_owner = CASE WHEN $3 <> 'in_progress' THEN NULL ELSE coalesce($5, t.lease_owner)"
        " END,"
        " lease_expires_at = CASE WHEN $3 <> 'in_progress' THEN NULL"
        " WHEN $5::text IS NOT NULL THEN now() + $6::bigint * interval '1 millisecond'"
        " ELSE t.lease_expires_at END,"
        " started_at = CASE WHEN $3 = 'in_progress' THEN coalesce(t.started_at, now())"
        " ELSE t.started_at END,"
        " finished_at = CASE WHEN $3 IN " FINISHED " THEN now() ELSE NULL END,"
        " output = coalesce($7::jsonb, t.output), error = coalesce($8::jsonb, t.error)"
        " WHERE t.id = $1 AND CASE WHEN $2::text IS NULL THEN t.status NOT IN " FINISHED
        " ELSE t.status = $2 END RETURNING " TASK_JSON " AS j)"
        " SELECT true, j FROM u UNION ALL SELECT false, " TASK_JSON
        " FROM tasks t WHERE t.id = $1 AND NOT EXISTS (SELECT FROM u)",
        8, params, out);
}

int
cd_q_tasks_fail_attempt(cd_db_t *db, int64_t id, const char *error, int64_t backoff_ms, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), error,
                            cd__q_i64(b2, backoff_ms < 0 ? 0 : backoff_ms)};
    return cd__q_cas(
        db,
        "WITH u AS (UPDATE tasks t SET"
        " status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'todo' END,"
        " finished_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,"
        " next_attempt_at = CASE WHEN t.attempts < t.max_attempts"
        " THEN now() + $3::bigint * interval '1 millisecond' END,"
        " lease_owner = NULL, lease_expires_at = NULL, error = coalesce($2::jsonb, t.error)"
        " WHERE t.id = $1 AND t.status = 'in_progress' RETURNING " TASK_JSON " AS j)"
        " SELECT true, j FROM u UNION ALL SELECT false, " TASK_JSON
        " FROM tasks t WHERE t.id = $1 AND NOT EXISTS (SELECT FROM u)",
        3, params, out);
}

int
cd_q_tasks_cancel(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), NULL};
    return s_cas(db, s_cancel, 2, params, out);
}

int
cd_q_tasks_retry(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), NULL};
    return s_cas(db, s_retry, 2, params, out);
}

//  Requeues (or fails, when out of attempts) the in-progress tasks that
//  match `which`, a condition on alias c with $1 available.
#define REQUEUE(which)                                                                             \
    "UPDATE tasks t SET"                                                                           \
    " status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'todo' END,"              \
    " finished_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,"                        \
    " error = CASE WHEN t.attempts >= t.max_attempts"                                              \
    " THEN jsonb_build_object('code', 'lease_expired', 'message',"                                 \
    " 'the node running the task stopped', 'node', t.lease_owner) ELSE t.error END,"               \
    " lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL"                         \
    " WHERE t.id IN (SELECT c.id FROM tasks c WHERE c.status = 'in_progress' AND " which           \
    " FOR UPDATE SKIP LOCKED) RETURNING " TASK_JSON

int
cd_q_tasks_requeue_expired(cd_db_t *db, cd_q_page_t *out)
{
    return cd__q_all(db, REQUEUE("c.lease_expires_at < now()"), 0, NULL, out);
}

int
cd_q_tasks_requeue_owned(cd_db_t *db, const char *owner, cd_q_page_t *out)
{
    const char *params[] = {owner};
    return cd__q_all(db, REQUEUE("c.lease_owner = $1"), 1, params, out);
}

int
cd_q_tasks_counts(cd_db_t *db, int64_t project_id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, project_id)};
    return cd__q_one(db,
                     "SELECT json_build_object("
                     "'todo', count(*) FILTER (WHERE status = 'todo'),"
                     " 'in_progress', count(*) FILTER (WHERE status = 'in_progress'),"
                     " 'waiting_human', count(*) FILTER (WHERE status = 'waiting_human'),"
                     " 'done', count(*) FILTER (WHERE status = 'done'),"
                     " 'failed', count(*) FILTER (WHERE status = 'failed'),"
                     " 'cancelled', count(*) FILTER (WHERE status = 'cancelled'))"
                     " FROM tasks WHERE $1::bigint IS NULL OR project_id = $1",
                     1, params, out);
}

int
cd_q_tasks_archive(cd_db_t *db, int64_t id, int64_t archived_by, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), cd__q_i64(b2, archived_by), NULL};
    return cd__q_one(db, s_archive, 3, params, out);
}

int
cd_q_tasks_archived_get(cd_db_t *db, int64_t id, char **out)
{
    return s_get_prepared(db, s_archived_get, id, out);
}

int
cd_q_tasks_archived_list(cd_db_t *db, int64_t project_id, int64_t created_by, const char *cursor,
                         int limit, cd_q_page_t *out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, project_id), cd__q_i64(b2, created_by), cursor, NULL};
    return cd__q_page(db,
                      "SELECT t.id, " ARCHIVED_JSON " FROM archived_tasks t"
                      " WHERE ($1::bigint IS NULL OR t.project_id = $1)"
                      " AND ($2::bigint IS NULL OR t.created_by = $2)"
                      " AND ($3::bigint IS NULL OR t.id < $3)"
                      " ORDER BY t.id DESC LIMIT $4",
                      4, params, limit, out);
}

int
cd_q_task_events_append(cd_db_t *db, int64_t task_id, const char *kind, const char *from,
                        const char *to, const char *status, const char *payload, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, task_id), kind, from, to, status, payload};
    //  seq comes from the task_events_seq trigger.
    return cd__q_one(db,
                     "INSERT INTO task_events AS e (task_id, kind, from_agent, to_agent, status,"
                     " payload) VALUES ($1, $2, $3, $4, $5, coalesce($6::jsonb, '{}'))"
                     " RETURNING " EVENT_JSON,
                     6, params, out);
}

int
cd_q_task_events_list(cd_db_t *db, int64_t task_id, const char *cursor, int limit, cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, task_id), cursor, NULL};
    return cd__q_page(db,
                      "SELECT e.seq, " EVENT_JSON " FROM task_events e WHERE e.task_id = $1"
                      " AND ($2::int IS NULL OR e.seq > $2) ORDER BY e.seq LIMIT $3",
                      3, params, limit, out);
}
