/*  cd_q_events: queries on the events table (see cd_q_events.h).

    Inserts draw their id in the table's trigger under a transaction-
    scoped advisory lock, which is what orders ids by commit; nothing here
    needs to know. Lists filter with the partial indexes on (task_id, id),
    (project_id, id), (agent, id) and (type, id).

    Interface: cd_q_events_insert, cd_q_events_list, cd_q_events_rows,
    cd_q_events_last_id, cd_q_events_purge. */
#include "cd_q_events.h"
#include "cd_error.h"

#include <stddef.h>

//  The filters of a list, as parameters $1..$5.
#define EVENT_WHERE                                                                                \
    " WHERE ($1::bigint IS NULL OR e.project_id = $1)"                                             \
    " AND ($2::bigint IS NULL OR e.task_id = $2)"                                                  \
    " AND ($3::text IS NULL OR e.agent = $3)"                                                      \
    " AND ($4::text IS NULL OR e.type = ANY (string_to_array($4, ',')))"                           \
    " AND e.id > coalesce($5::bigint, 0)"

#define EVENT_JSON                                                                                 \
    "json_build_object('id', e.id, 'ts', cd_ts(e.ts), 'type', e.type, 'project_id', "              \
    "e.project_id, 'task_id', e.task_id, 'agent', e.agent, 'data', e.data)"

int
cd_q_events_insert(cd_db_t *db, const char *type, int64_t project_id, int64_t task_id,
                   const char *agent, const char *data, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {type, cd__q_i64(b1, project_id), cd__q_i64(b2, task_id), agent, data};
    return cd__q_one(db,
                     "INSERT INTO events AS e (type, project_id, task_id, agent, data)"
                     " VALUES ($1, $2, $3, $4, coalesce($5::jsonb, '{}')) RETURNING " EVENT_JSON,
                     5, params, out);
}

int
cd_q_events_list(cd_db_t *db, const cd_q_event_filter_t *f, cd_q_page_t *out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, f->project_id),
                            cd__q_i64(b2, f->task_id),
                            f->agent,
                            f->types,
                            f->after,
                            NULL};
    return cd__q_page(
        db, "SELECT e.id, " EVENT_JSON " FROM events e" EVENT_WHERE " ORDER BY e.id LIMIT $6", 6,
        params, f->limit, out);
}

int
cd_q_events_rows(cd_db_t *db, const cd_q_event_filter_t *f, cd_db_rows_t **out)
{
    char b1[24], b2[24], b3[24];
    int limit = f->limit <= 0                     ? CD_Q_LIMIT_DEFAULT
                : f->limit > CD_Q_EVENTS_ROWS_MAX ? CD_Q_EVENTS_ROWS_MAX
                                                  : f->limit;
    const char *params[] = {
        cd__q_i64(b1, f->project_id), cd__q_i64(b2, f->task_id), f->agent, f->types, f->after,
        cd__q_i64(b3, limit)};
    *out = NULL;
    return cd_db_query(db,
                       "SELECT e.id, e.type, e.project_id, e.task_id, e.agent, " EVENT_JSON
                       " FROM events e" EVENT_WHERE " ORDER BY e.id LIMIT $6",
                       6, params, out);
}

int
cd_q_events_last_id(cd_db_t *db, int64_t *id)
{
    return cd_db_query_int64(db, "SELECT coalesce(max(id), 0) FROM events", 0, NULL, id);
}

int
cd_q_events_purge(cd_db_t *db, const char *before, int64_t *count)
{
    const char *params[] = {before};
    return cd_db_exec_params(db, "DELETE FROM events WHERE ts < $1::timestamptz", 1, params, count);
}
