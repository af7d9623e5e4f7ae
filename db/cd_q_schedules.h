/*  cd_q_schedules: scheduled tasks (scheduled_tasks table).

    Conventions: cd_q.h. A row is API.md's schedule: {id, name,
    interval_s, cron, task, enabled, catch_up, last_run_at, next_run_at,
    created_by, created_at, updated_at}, with exactly one of interval_s
    and cron non-null. A cron's next time is computed by the caller (in
    UTC, actors/cd_cron) and passed in; an interval's is computed here
    from the database clock (now() + interval_s), so "one interval after
    it is created" holds to the microsecond. A disabled schedule has no
    next_run_at. The database stores the time and hands out due
    schedules. Several nodes may run schedulers: a firing is recorded
    with cd_q_schedules_mark_fired, a compare-and-set on next_run_at, and
    only the node that wins it creates the task.

    The API's writes go through persist as statements of
    cd_q_schedules_writes, which the functions below run too:
      "schedules.insert"  ($1 body, $2 next_run_at or NULL, $3 created_by)
                          -> the schedule
      "schedules.patch"   ($1 id, $2 patch, $3 cron next time or NULL,
                          $4 updated_at as read or NULL, $5 owner or NULL)
                          -> no row (no such schedule of that owner), or
                          (json, ok): ok false when updated_at moved (the
                          JSON then has "conflict": true); persist hands
                          out the JSON only
      "schedules.delete"  ($1 id, $2 owner or NULL) -> its id, or no row
      "schedules.run"     ($1 id, $2 owner or NULL) -> the created task,
                          or no row
      "schedules.fire"    ($1 id, $2 next_run_at as read, $3 a cron
                          schedule's next time or NULL, $4 "true" to
                          fire, "false" to skip) -> {"task": the created
                          task or null, "next_run_at"}, or no row (fired
                          or changed meanwhile)
    An owner (created_by) limits the change to that user's schedules. */
#ifndef CD_DB_Q_SCHEDULES_H
#define CD_DB_Q_SCHEDULES_H

#include "cd_q.h"

#include <stdbool.h>

//  The writes persist runs for this family (cd_q.h, cd_q_write_t).
extern const cd_q_write_t cd_q_schedules_writes[];
extern const size_t cd_q_schedules_n_writes;

//  Creates a schedule from {name, interval_s | cron, task, enabled?=true,
//  catch_up?="skip"}, first due at next_run_at (RFC 3339) if given, else,
//  when enabled, one interval from now (an enabled cron schedule needs
//  next_run_at). Returns 0 and the row in *out (caller frees); CD_EDB
//  23514 for both or neither of interval_s and cron, a cron that is not
//  5 fields, a task without title or valid assignee, an enabled cron
//  schedule without next_run_at.
int cd_q_schedules_insert(cd_db_t *db, const char *json, const char *next_run_at,
                          int64_t created_by, char **out);

//  The schedule, or CD_ENOTFOUND.
int cd_q_schedules_get(cd_db_t *db, int64_t id, char **out);

//  One page of schedules, newest first; created_by (CD_Q_NULL: any)
//  limits it to one user's.
int cd_q_schedules_list(cd_db_t *db, int64_t created_by, const char *cursor, int limit,
                        cd_q_page_t *out);

//  Applies a PATCH body: name, interval_s, cron, task, enabled, catch_up
//  (a non-null interval_s clears cron and a non-null cron clears
//  interval_s, unless the body gives both, which is 23514). The next
//  time follows: none when the schedule ends up disabled; kept when it
//  was enabled and its interval and cron are unchanged; else (enabled
//  now, or a new trigger) next_run_at for a cron schedule (the caller
//  computes it from the patched cron) or now() + interval_s.
//  expected (updated_at as the caller read it, RFC 3339, or NULL: no
//  check) guards that computation: a schedule changed since is
//  CD_ESTATE (the row as it is, with "conflict": true). created_by
//  (CD_Q_NULL: any) limits it to that user's schedules. Returns 0 and
//  the row; CD_ENOTFOUND; CD_EDB for bad values (23514: neither or both
//  of interval_s and cron).
int cd_q_schedules_patch(cd_db_t *db, int64_t id, const char *json, const char *next_run_at,
                         const char *expected, int64_t created_by, char **out);

//  Deletes a schedule (of created_by, or CD_Q_NULL: anyone's). Returns 0
//  or CD_ENOTFOUND.
int cd_q_schedules_delete(cd_db_t *db, int64_t id, int64_t created_by);

//  Fires a schedule now, whatever its next_run_at or enabled say (POST
//  /schedules/{id}/run): creates a task from its template (created_by
//  the schedule's owner; the other fields take POST /tasks' defaults)
//  with its `created` history row and `task.created` event, writes a
//  `schedule.fired` event and sets last_run_at; next_run_at stays.
//  created_by (CD_Q_NULL: any) limits it to that user's schedules.
//  Returns 0 and the task; CD_ENOTFOUND; CD_EDB 23503 if the template's
//  project is gone.
int cd_q_schedules_run(cd_db_t *db, int64_t id, int64_t created_by, char **out);

//  The scheduler's firing ("schedules.fire"): if the schedule is still
//  enabled and due at expected (next_run_at as read), creates its task
//  (when fire; a skipped firing creates none) with its `created` history
//  row, task.created and schedule.fired events, sets last_run_at (when
//  fired) and next_run_at: cron_next for a cron schedule, else the first
//  time after now on the interval's beat. Returns 0 and {"task",
//  "next_run_at"}; CD_ENOTFOUND when it was not due at expected any more.
int cd_q_schedules_fire(cd_db_t *db, int64_t id, const char *expected, const char *cron_next,
                        bool fire, char **out);

//  Enabled schedules whose next_run_at has come, earliest first, at most
//  limit of them.
int cd_q_schedules_due(cd_db_t *db, int limit, cd_q_page_t *out);

//  Records a firing: if the schedule is still due at expected (its
//  next_run_at as read, RFC 3339), sets last_run_at = now() and
//  next_run_at = next. Returns 0 and the row; CD_ESTATE (row as it is)
//  if another firing moved it first; CD_ENOTFOUND.
int cd_q_schedules_mark_fired(cd_db_t *db, int64_t id, const char *expected, const char *next,
                              char **out);

#endif
