/*  cd_q_schedules: scheduled tasks (scheduled_tasks table).

    Conventions: cd_q.h. A row is API.md's schedule: {id, name,
    interval_s, cron, task, enabled, catch_up, last_run_at, next_run_at,
    created_by, created_at, updated_at}, with exactly one of interval_s
    and cron non-null. Computing next_run_at (interval arithmetic, cron
    in UTC) is the scheduler's job; the database stores it and hands out
    due schedules. Several nodes may run schedulers: a firing is recorded
    with cd_q_schedules_mark_fired, a compare-and-set on next_run_at, and
    only the node that wins it creates the task. */
#ifndef CD_DB_Q_SCHEDULES_H
#define CD_DB_Q_SCHEDULES_H

#include "cd_q.h"

//  Creates a schedule from {name, interval_s | cron, task, enabled?=true,
//  catch_up?="skip"}, first due at next_run_at (RFC 3339; may be NULL
//  only if disabled). Returns 0 and the row in *out (caller frees);
//  CD_EDB 23514 for both or neither of interval_s and cron, a cron that
//  is not 5 fields, a task without title or valid assignee.
int cd_q_schedules_insert(cd_db_t *db, const char *json, const char *next_run_at,
                          int64_t created_by, char **out);

//  The schedule, or CD_ENOTFOUND.
int cd_q_schedules_get(cd_db_t *db, int64_t id, char **out);

//  One page of schedules, newest first; created_by (CD_Q_NULL: any)
//  limits it to one user's.
int cd_q_schedules_list(cd_db_t *db, int64_t created_by, const char *cursor, int limit,
                        cd_q_page_t *out);

//  Applies a PATCH body: name, interval_s, cron, task, enabled, catch_up
//  (setting one of interval_s and cron, set the other to null), and
//  next_run_at unless it is NULL. Returns 0 and the row; CD_ENOTFOUND;
//  CD_EDB for bad values.
int cd_q_schedules_patch(cd_db_t *db, int64_t id, const char *json, const char *next_run_at,
                         char **out);

//  Deletes a schedule. Returns 0 or CD_ENOTFOUND.
int cd_q_schedules_delete(cd_db_t *db, int64_t id);

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
