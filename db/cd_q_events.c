/*  cd_q_events: queries on the events table (see cd_q_events.h).

    Inserts draw their id in the table's trigger under a transaction-
    scoped advisory lock, which is what orders ids by commit; nothing here
    needs to know. Lists filter with the partial indexes on (task_id, id),
    (project_id, id), (agent, id) and (type, id).

    An event's owners are looked up per row by primary key (its task in
    tasks, else in archived_tasks, and its project): three index probes
    per event read, paid by the reader and not by the hot insert path. A
    list for a viewer (a `user`) filters on them, so a user's page holds
    only its events; its cost grows with the events it skips, which a
    page's limit does not bound (the events table is kept short by
    cd_q_events_purge).

    Interface: cd_q_events_insert, cd_q_events_list, cd_q_events_rows,
    cd_q_events_owners, cd_q_events_last_id, cd_q_events_purge. */
#include "cd_q_events.h"
#include "cd_error.h"

#include <stddef.h>

//  An event's owners (cd_q_events.h), as o.task_owner and o.project_owner.
#define EVENT_OWNERS                                                                               \
    " CROSS JOIN LATERAL (SELECT coalesce((SELECT t.created_by FROM tasks t"                       \
    " WHERE t.id = e.task_id), (SELECT a.created_by FROM archived_tasks a"                         \
    " WHERE a.id = e.task_id)) AS task_owner, (SELECT p.created_by FROM projects p"                \
    " WHERE p.id = e.project_id) AS project_owner) o"

//  The filters of a list, as parameters $1..$5.
#define EVENT_WHERE                                                                                \
    " WHERE ($1::bigint IS NULL OR e.project_id = $1)"                                             \
    " AND ($2::bigint IS NULL OR e.task_id = $2)"                                                  \
    " AND ($3::text IS NULL OR e.agent = $3)"                                                      \
    " AND ($4::text IS NULL OR e.type = ANY (string_to_array($4, ',')))"                           \
    " AND e.id > coalesce($5::bigint, 0)"

//  Only what viewer v (a parameter: NULL for every event) may see.
#define EVENT_VISIBLE(v)                                                                           \
    " AND (" v "::bigint IS NULL OR o.task_owner = " v " OR o.project_owner = " v                  \
    " OR (e.task_id IS NULL AND e.project_id IS NULL AND e.type = 'agent.status'))"

#define EVENT_JSON                                                                                 \
    "json_build_object('id', e.id, 'ts', cd_ts(e.ts), 'type', e.type, 'project_id', "              \
    "e.project_id, 'task_id', e.task_id, 'agent', e.agent, 'data', e.data)"

//  The columns of a row read (CD_Q_EVENT_COL_*), from events e and its
//  owners.
#define EVENT_ROWS                                                                                 \
    "SELECT e.id, e.type, e.project_id, e.task_id, e.agent, " EVENT_JSON                           \
    ", o.task_owner, o.project_owner FROM events e" EVENT_OWNERS

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
    char b1[24], b2[24], b3[24];
    //  The viewer is $6: cd__q_page sets the last parameter, the LIMIT.
    const char *params[] = {cd__q_i64(b1, f->project_id),
                            cd__q_i64(b2, f->task_id),
                            f->agent,
                            f->types,
                            f->after,
                            cd__q_i64(b3, f->viewer),
                            NULL};
    return cd__q_page(
        db,
        "SELECT e.id, " EVENT_JSON
        " FROM events e" EVENT_OWNERS EVENT_WHERE EVENT_VISIBLE("$6") " ORDER BY e.id LIMIT $7",
        7, params, f->limit, out);
}

//  A row read's limit: <= 0 the default, at most CD_Q_EVENTS_ROWS_MAX.
static int
s_rows_limit(int limit)
{
    return limit <= 0                     ? CD_Q_LIMIT_DEFAULT
           : limit > CD_Q_EVENTS_ROWS_MAX ? CD_Q_EVENTS_ROWS_MAX
                                          : limit;
}

int
cd_q_events_rows(cd_db_t *db, const cd_q_event_filter_t *f, cd_db_rows_t **out)
{
    char b1[24], b2[24], b3[24], b4[24];
    int limit = s_rows_limit(f->limit);
    const char *params[] = {
        cd__q_i64(b1, f->project_id), cd__q_i64(b2, f->task_id), f->agent, f->types, f->after,
        cd__q_i64(b3, limit),         cd__q_i64(b4, f->viewer)};
    *out = NULL;
    return cd_db_query(db, EVENT_ROWS EVENT_WHERE EVENT_VISIBLE("$7") " ORDER BY e.id LIMIT $6", 7,
                       params, out);
}

//  The bus's read of what committed since: cd_q_events_rows without
//  filters or viewer, prepared (it runs after every commit that carries
//  events; parsing and planning the filtered read cost more than running
//  it).
static const char s_tail[] = EVENT_ROWS " WHERE e.id > $1::bigint ORDER BY e.id LIMIT $2::int";

int
cd_q_events_tail(cd_db_t *db, int64_t after, int limit, cd_db_rows_t **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, after < 0 ? 0 : after),
                            cd__q_i64(b2, s_rows_limit(limit))};
    *out = NULL;
    return cd_db_query_prepared(db, s_tail, 2, params, out);
}

int
cd_q_events_owners(cd_db_t *db, int64_t task_id, int64_t project_id, int64_t *task_owner,
                   int64_t *project_owner)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, task_id), cd__q_i64(b2, project_id)};
    cd_db_rows_t *rows = NULL;
    *task_owner = CD_Q_NULL;
    *project_owner = CD_Q_NULL;
    int rc =
        cd_db_query(db,
                    "SELECT o.task_owner, o.project_owner"
                    " FROM (SELECT $1::bigint AS task_id, $2::bigint AS project_id) e" EVENT_OWNERS,
                    2, params, &rows);
    if (rc != 0) {
        return rc;
    }
    int64_t v = 0;
    if (cd_db_rows_count(rows) == 1 && cd_db_rows_int64(rows, 0, 0, &v) == 0) {
        *task_owner = v;
    }
    if (cd_db_rows_count(rows) == 1 && cd_db_rows_int64(rows, 0, 1, &v) == 0) {
        *project_owner = v;
    }
    cd_db_rows_destroy(&rows);
    return 0;
}

int
cd_q_events_last_id(cd_db_t *db, int64_t *id)
{
    return cd_db_query_int64(db, "SELECT coalesce(max(id), 0) FROM events", 0, NULL, id);
}
