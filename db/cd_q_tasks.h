/*  cd_q_tasks: tasks, their history (task_events) and archived_tasks.

    Conventions (JSON rows out, CD_Q_NULL, cursors, errors): cd_q.h.

    A task row is the API's task object: {id, title, description, status,
    priority, project_id, assignee, input, output, error, attempts,
    max_attempts, timeout_ms, budget, usage, created_by, created_at,
    started_at, finished_at} plus agent (the agent holding it now or
    last), lease_owner, lease_expires_at, next_attempt_at, updated_at.

    Status moves: todo -> in_progress (a claim) -> done | failed |
    cancelled, with waiting_human while a HITL request is open. The
    finished statuses (done, failed, cancelled) are left only through
    cd_q_tasks_retry. A task in progress carries a lease (node id and
    expiry); leaving in_progress drops it.

    History rows: {id, task_id, seq, ts, kind, from, to, status,
    payload}; seq counts 1, 2, 3 ... per task and is assigned by the
    database, so concurrent appends neither collide nor leave gaps. */
#ifndef CD_DB_Q_TASKS_H
#define CD_DB_Q_TASKS_H

#include "cd_q.h"

//  The writes persist runs for the API (cd_q.h, cd_q_write_t; the answers
//  they give are described in cd_q_tasks.c):
//    tasks.create        ($1 body, $2 created_by, $3 project owner scope)
//    tasks.create_batch  ($1 array of bodies or {"tasks": array}, $2 created_by,
//                         $3 project owner scope)
//    tasks.create_many   ($1 array of {"b": body, "u": created_by, "s": scope})
//    tasks.patch         ($1 id, $2 body, $3 owner scope)
//    tasks.cancel        ($1 id, $2 owner scope)
//    tasks.retry         ($1 id, $2 owner scope)
//    tasks.archive       ($1 id, $2 archived_by, $3 owner scope)
//  An owner scope is a user id (only that user's tasks or projects) or
//  NULL (any). Each runs as the function of the same name below.
extern const cd_q_write_t cd_q_tasks_writes[];
extern const size_t cd_q_tasks_n_writes;

//  The API's create: as cd_q_tasks_insert, and in the same statement the
//  task.created event and the first history row (kind created, seq 1).
//  The project, agent, role or team the body names must exist (a project
//  of project_owner's when that is not CD_Q_NULL): otherwise nothing is
//  written and the result is CD_EINVAL with *out = {"invalid": "project_id"
//  or "assignee", "reason": "no such ..."} (caller frees). Other errors as
//  cd_q_tasks_insert.
int cd_q_tasks_create(cd_db_t *db, const char *json, int64_t created_by, int64_t project_owner,
                      char **out);

//  The API's batch create: cd_q_tasks_create for every element of the
//  JSON array json (or of json's "tasks" array), in one statement, all or none; out->items receives
//  the tasks in request order. If an element refers to something that does not exist, nothing is
//  written and the result is CD_EINVAL with out->items = {"invalid": "tasks[<i>].<field>",
//  "reason": ...} (i from 0) and out->count 0.
int cd_q_tasks_create_batch(cd_db_t *db, const char *json, int64_t created_by,
                            int64_t project_owner, cd_q_page_t *out);

//  Several independent creates in one statement (the api actor merges
//  concurrent POST /api/v1/tasks this way): json is an array of {"b":
//  body, "u": created_by or null, "s": project owner scope or null}. Each
//  element succeeds or is refused alone, as cd_q_tasks_create would; *out
//  receives an array, in request order, of the task or the {"invalid":
//  ...} answer of each. Returns 0, or CD_EDB when the statement as a whole
//  failed (a bad value in any element: nothing is written).
int cd_q_tasks_create_many(cd_db_t *db, const char *json, char **out);

//  Creates a task from a POST /api/v1/tasks body {title, description?,
//  priority?=5, project_id?, assignee, input?, max_attempts?=3,
//  timeout_ms?=300000, budget?}, status todo. created_by is the user (or
//  CD_Q_NULL). Returns 0 and the task in *out (caller frees); CD_EDB with
//  23502 (title or assignee missing), 23514 (a value out of range, a bad
//  assignee), 23503 (no such project), 22P02 (a value of the wrong type).
//  The bare row: no event, no history, the assignee not looked up (for
//  fixtures and internal writers; the API uses cd_q_tasks_create).
int cd_q_tasks_insert(cd_db_t *db, const char *json, int64_t created_by, char **out);

//  Creates every task of the JSON array json (bodies as above) in one
//  statement: all or none. *out receives the tasks in request order.
int cd_q_tasks_insert_batch(cd_db_t *db, const char *json, int64_t created_by, cd_q_page_t *out);

//  The task with this id in *out (caller frees), or CD_ENOTFOUND.
int cd_q_tasks_get(cd_db_t *db, int64_t id, char **out);

//  Filters of a task list; they combine with AND. Zero-initialise and
//  set what you need ({0} is not "no filter" for the integers: use
//  CD_Q_TASK_FILTER_ALL).
typedef struct {
    const char *status;   // this status, or NULL
    int64_t project_id;   // this project, or CD_Q_NULL
    const char *agent;    // assigned to ({"agent": ...}) or held by this agent, or NULL
    int64_t priority_min; // priority >= this, or CD_Q_NULL
    const char *since;    // created_at >= this RFC 3339 time, or NULL
    int64_t created_by;   // this user's tasks only (a `user` caller), or CD_Q_NULL
    const char *cursor;   // next_cursor of the previous page, or NULL
    int limit;            // page size (cd_q.h)
} cd_q_task_filter_t;

#define CD_Q_TASK_FILTER_ALL                                                                       \
    ((cd_q_task_filter_t){                                                                         \
        .project_id = CD_Q_NULL, .priority_min = CD_Q_NULL, .created_by = CD_Q_NULL})

//  One page of tasks, newest first.
int cd_q_tasks_list(cd_db_t *db, const cd_q_task_filter_t *filter, cd_q_page_t *out);

//  Applies a PATCH body: title, description, priority (other keys are
//  ignored; a null description is empty, a null priority keeps it).
//  Returns 0 and the task; CD_ESTATE (with the task as it is in *out) if
//  it is finished; CD_ENOTFOUND; CD_EDB for bad values. (tasks.patch)
int cd_q_tasks_patch(cd_db_t *db, int64_t id, const char *json, char **out);

//  Who claims, and for how long.
typedef struct {
    const char *agent; // claims tasks assigned to this agent and records it as holder; or NULL
    const char *role;  // also claims tasks assigned to this role; or NULL
    int64_t team;      // also claims tasks assigned to this team; or CD_Q_NULL
    const char *owner; // node id taking the lease; required
    int64_t lease_ms;  // lease length, > 0
} cd_q_claim_t;

//  Claims the best claimable task: status todo, next_attempt_at passed,
//  assigned to one of the claimer's names; highest priority first, then
//  oldest (created_at, then id). The row is locked with FOR UPDATE SKIP
//  LOCKED, so concurrent claimers (threads, nodes) never get the same
//  task and never wait for each other. The claim sets status in_progress,
//  the lease, agent (if given), attempts + 1 and started_at. Returns 0 and
//  the task in *out; CD_ENOTFOUND if nothing is claimable; CD_EINVAL if
//  the claim names no agent, role or team, or no owner.
int cd_q_tasks_claim_next(cd_db_t *db, const cd_q_claim_t *claim, char **out);

//  Extends every lease owner holds to now + lease_ms (the node's
//  heartbeat). *count (if not NULL) receives how many. Returns 0 or an
//  error.
int cd_q_tasks_renew_leases(cd_db_t *db, const char *owner, int64_t lease_ms, int64_t *count);

//  A status change.
typedef struct {
    const char *from;   // required current status, or NULL for "any unfinished one"
    const char *to;     // the new status; required
    const char *agent;  // new holder (a handoff), or NULL to keep
    const char *owner;  // with to == in_progress: node taking the lease, or NULL to keep
    int64_t lease_ms;   // its length, with owner
    const char *output; // JSON to store as output, or NULL to keep
    const char *error;  // JSON to store as error, or NULL to keep
} cd_q_task_status_t;

//  Moves task id from change->from (or from any unfinished status) to
//  change->to. Entering a finished status sets finished_at; leaving
//  in_progress drops the lease; entering it needs change->owner (every
//  running task is leased: CD_EDB 23514 otherwise). Returns 0 and the
//  task; CD_ESTATE (task as it is in *out) if its status does not match;
//  CD_ENOTFOUND.
int cd_q_tasks_update_status(cd_db_t *db, int64_t id, const cd_q_task_status_t *change, char **out);

//  A failed attempt of a task in progress: back to todo, claimable again
//  after backoff_ms, or failed if attempts reached max_attempts. error
//  (JSON, or NULL to keep) is stored either way. Returns 0 and the task
//  (look at its status to tell which); CD_ESTATE if it is not in
//  progress; CD_ENOTFOUND.
int cd_q_tasks_fail_attempt(cd_db_t *db, int64_t id, const char *error, int64_t backoff_ms,
                            char **out);

//  Cancels an unfinished task, and in the same statement writes the
//  task.cancelled event (agent: the task's holder) and the history row
//  (kind cancelled), and cancels its pending HITL requests. Returns 0
//  and the task; CD_ESTATE if it is finished already; CD_ENOTFOUND.
//  (tasks.cancel)
int cd_q_tasks_cancel(cd_db_t *db, int64_t id, char **out);

//  Puts a failed or cancelled task back to todo with attempts, output,
//  error and backoff cleared, with a history row (kind retry; API.md has
//  no event type for it). Returns 0 and the task; CD_ESTATE if it is in
//  another status; CD_ENOTFOUND. (tasks.retry)
int cd_q_tasks_retry(cd_db_t *db, int64_t id, char **out);

//  Crash recovery: every task in progress whose lease has expired goes
//  back to todo, or to failed (error {"code":"lease_expired"}) if it has
//  used all its attempts. Tasks another transaction holds are left for
//  the next pass. *out receives the tasks changed.
int cd_q_tasks_requeue_expired(cd_db_t *db, cd_q_page_t *out);

//  The same for every task in progress leased by owner, expired or not:
//  a node that restarts with the same id releases what it held.
int cd_q_tasks_requeue_owned(cd_db_t *db, const char *owner, cd_q_page_t *out);

//  Counts of tasks by status, {"todo": n, "in_progress": n,
//  "waiting_human": n, "done": n, "failed": n, "cancelled": n}, of one
//  project or (CD_Q_NULL) of all.
int cd_q_tasks_counts(cd_db_t *db, int64_t project_id, char **out);

//  Moves task id to archived_tasks in one statement (its open HITL
//  requests go with it; its history stays in task_events). archived_by
//  is the user or CD_Q_NULL. Returns 0 and the archived row ({...task,
//  archived_at, archived_by}); CD_ENOTFOUND. (tasks.archive)
int cd_q_tasks_archive(cd_db_t *db, int64_t id, int64_t archived_by, char **out);

//  An archived task, or CD_ENOTFOUND.
int cd_q_tasks_archived_get(cd_db_t *db, int64_t id, char **out);

//  Archived tasks, newest first; filters project_id and created_by
//  (CD_Q_NULL for any).
int cd_q_tasks_archived_list(cd_db_t *db, int64_t project_id, int64_t created_by,
                             const char *cursor, int limit, cd_q_page_t *out);

//  Appends one history row to task task_id: kind (one of API.md's history
//  kinds), from and to (agent names or NULL), status (or NULL), payload
//  (JSON or NULL for {}). Returns 0 and the row (with its seq); CD_EDB
//  23503 if the task does not exist (or is archived), 23514 for a bad
//  kind.
int cd_q_task_events_append(cd_db_t *db, int64_t task_id, const char *kind, const char *from,
                            const char *to, const char *status, const char *payload, char **out);

//  The history of a task (live or archived) in seq order, after cursor.
int cd_q_task_events_list(cd_db_t *db, int64_t task_id, const char *cursor, int limit,
                          cd_q_page_t *out);

#endif
