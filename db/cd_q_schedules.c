/*  cd_q_schedules: queries on scheduled_tasks (see cd_q_schedules.h).

    Interface: cd_q_schedules_insert, cd_q_schedules_get,
    cd_q_schedules_list, cd_q_schedules_patch, cd_q_schedules_delete,
    cd_q_schedules_due, cd_q_schedules_mark_fired. */
#include "cd_q_schedules.h"
#include "cd_error.h"

#include <stddef.h>

#define SCHEDULE_JSON                                                                              \
    "json_build_object('id', s.id, 'name', s.name, 'interval_s', s.interval_s, 'cron', s.cron, "   \
    "'task', s.task, 'enabled', s.enabled, 'catch_up', s.catch_up, 'last_run_at', "                \
    "cd_ts(s.last_run_at), 'next_run_at', cd_ts(s.next_run_at), 'created_by', s.created_by, "      \
    "'created_at', cd_ts(s.created_at), 'updated_at', cd_ts(s.updated_at))"

//  A PATCH of column col from key col of $2, of SQL type type.
#define PATCH(col, type)                                                                           \
    " " col " = CASE WHEN $2::jsonb ? '" col "' THEN ($2::jsonb ->> '" col "')::" type             \
    " ELSE s." col " END"

int
cd_q_schedules_insert(cd_db_t *db, const char *json, const char *next_run_at, int64_t created_by,
                      char **out)
{
    char b1[24];
    const char *params[] = {json, next_run_at, cd__q_i64(b1, created_by)};
    return cd__q_one(db,
                     "INSERT INTO scheduled_tasks AS s (name, interval_s, cron, task, enabled,"
                     " catch_up, next_run_at, created_by)"
                     " SELECT b.e ->> 'name', (b.e ->> 'interval_s')::int, b.e ->> 'cron',"
                     " b.e -> 'task', coalesce((b.e ->> 'enabled')::boolean, true),"
                     " coalesce(b.e ->> 'catch_up', 'skip'), $2::timestamptz, $3::bigint"
                     " FROM (SELECT $1::jsonb AS e) b RETURNING " SCHEDULE_JSON,
                     3, params, out);
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
cd_q_schedules_patch(cd_db_t *db, int64_t id, const char *json, const char *next_run_at, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json, next_run_at};
    return cd__q_one(
        db,
        "UPDATE scheduled_tasks s SET" PATCH("name", "text") "," PATCH(
            "interval_s",
            "int") "," PATCH("cron",
                             "text") "," PATCH("enabled",
                                               "boolean") "," PATCH("catch_up",
                                                                    "text") ","
                                                                            " task = CASE WHEN "
                                                                            "$2::jsonb ? 'task' "
                                                                            "THEN $2::jsonb -> "
                                                                            "'task' ELSE s.task "
                                                                            "END,"
                                                                            " next_run_at = "
                                                                            "coalesce($3::"
                                                                            "timestamptz, "
                                                                            "s.next_run_at)"
                                                                            " WHERE s.id = $1 "
                                                                            "RETURNING"
                                                                            " " SCHEDULE_JSON,
        3, params, out);
}

int
cd_q_schedules_delete(cd_db_t *db, int64_t id)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_write(db, "DELETE FROM scheduled_tasks WHERE id = $1", 1, params, NULL);
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
