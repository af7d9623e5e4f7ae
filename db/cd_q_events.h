/*  cd_q_events: the persisted event stream (events table).

    Conventions: cd_q.h. An event row is API.md's event: {id, ts, type,
    project_id, task_id, agent, data}. Ids increase in commit order (the
    schema's events_id trigger), so "every event after id N" read at any
    moment never misses one that commits later with a smaller id: SSE and
    WebSocket clients resume from the last id they saw.

    Who may see an event (API.md: a `user` sees only its own tasks,
    projects and HITL requests): its owners are the user who created its
    task (task_id, in tasks or archived_tasks) and the user who created
    its project (project_id). An admin sees every event; a user sees an
    event it owns (either way), and an event that names neither a task
    nor a project only if it is an agent.status (agents are readable by
    every user). Everything else that concerns no user's object (a
    schedule.fired without a task, say) is for admins. The owners are
    read with the event (cd_q_events_rows), not stored in it: no event
    insert pays for them, and they cannot change (created_by and a task's
    project_id are never updated). */
#ifndef CD_DB_Q_EVENTS_H
#define CD_DB_Q_EVENTS_H

#include "cd_q.h"

//  Records an event: type (one of API.md's event types), project_id and
//  task_id (or CD_Q_NULL), agent (or NULL), data (JSON, or NULL for {}).
//  Inside a caller's transaction, other event writers wait at this call
//  until that transaction ends. Returns 0 and the event in *out (caller
//  frees); CD_EDB 23514 for an unknown type.
int cd_q_events_insert(cd_db_t *db, const char *type, int64_t project_id, int64_t task_id,
                       const char *agent, const char *data, char **out);

//  Filters of an event list; they combine with AND.
typedef struct {
    int64_t project_id; // or CD_Q_NULL
    int64_t task_id;    // or CD_Q_NULL
    const char *agent;  // or NULL
    const char *types;  // comma-separated list of types ("task.created,task.failed"), or NULL
    const char *after;  // events with a greater id (a cursor or Last-Event-ID); NULL or "0": all
    int limit;          // page size (cd_q.h)
    int64_t viewer;     // a user: only the events it may see (above); CD_Q_NULL: every event
} cd_q_event_filter_t;

#define CD_Q_EVENT_FILTER_ALL                                                                      \
    ((cd_q_event_filter_t){.project_id = CD_Q_NULL, .task_id = CD_Q_NULL, .viewer = CD_Q_NULL})

//  Events in ascending id order; next_cursor is the last id of the page.
int cd_q_events_list(cd_db_t *db, const cd_q_event_filter_t *filter, cd_q_page_t *out);

//  Most rows cd_q_events_rows returns at once.
#define CD_Q_EVENTS_ROWS_MAX 5000

//  Columns of cd_q_events_rows' result.
enum {
    CD_Q_EVENT_COL_ID = 0,       // id (integer text)
    CD_Q_EVENT_COL_TYPE,         // type
    CD_Q_EVENT_COL_PROJECT,      // project_id, or NULL
    CD_Q_EVENT_COL_TASK,         // task_id, or NULL
    CD_Q_EVENT_COL_AGENT,        // agent, or NULL
    CD_Q_EVENT_COL_JSON,         // the whole event as JSON, as cd_q_events_list's items
    CD_Q_EVENT_COL_TASK_OWNER,   // created_by of its task, or NULL (none, or no such task)
    CD_Q_EVENT_COL_PROJECT_OWNER // created_by of its project, or NULL
};

//  The same events as cd_q_events_list (filters, after, ascending ids),
//  but as a row set that also carries the fields a stream filters on
//  beside each event's JSON, its owners among them, so that the event bus
//  can forward events and the HTTP layer match them against
//  subscriptions and subscribers without parsing any JSON. An exception
//  to cd_q.h's "rows out are JSON text", for that hot path only.
//  filter->limit rows at most (<= 0: CD_Q_LIMIT_DEFAULT; above
//  CD_Q_EVENTS_ROWS_MAX: clamped); there is no cursor: the next page is
//  after the last id. Returns 0 and *out (caller owns: cd_db_rows_destroy;
//  columns CD_Q_EVENT_COL_*), or an error (a malformed after is CD_EDB
//  22P02).
int cd_q_events_rows(cd_db_t *db, const cd_q_event_filter_t *filter, cd_db_rows_t **out);

//  cd_q_events_rows for every event after id `after` (no filter, no
//  viewer), up to limit rows (clamped as there): the event bus's read of
//  what committed since its last, after every commit. A prepared
//  statement, unlike the filtered read: the same rows and columns.
int cd_q_events_tail(cd_db_t *db, int64_t after, int limit, cd_db_rows_t **out);

//  The owners of an event that is not in the table (an ephemeral one):
//  the created_by of task_id's task and of project_id's project (either
//  may be CD_Q_NULL). *task_owner and *project_owner get CD_Q_NULL where
//  there is none. Returns 0 or an error.
int cd_q_events_owners(cd_db_t *db, int64_t task_id, int64_t project_id, int64_t *task_owner,
                       int64_t *project_owner);

//  The highest committed event id (0 if none), where a live stream
//  starts.
int cd_q_events_last_id(cd_db_t *db, int64_t *id);

#endif
