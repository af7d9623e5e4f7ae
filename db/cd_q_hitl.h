/*  cd_q_hitl: human-in-the-loop requests (hitl_requests table).

    Conventions: cd_q.h. A row is API.md's HITL request: {id, task_id,
    project_id, agent, question, options, status, response, approved,
    deadline, on_timeout, created_at, answered_at}. status: pending ->
    answered | expired | cancelled, each move a compare-and-set, so an
    answer racing the deadline has exactly one winner. Deadlines are
    stored, so they survive restarts: the scheduler calls
    cd_q_hitl_expire_due.

    Answering (the API's POST /hitl/{id}/respond, statement "hitl.respond"
    of cd_q_hitl_writes, which persist runs) is one statement: the request
    becomes answered, its task's history gains a `hitl_answered` row, an
    `hitl.answered` event is written, and when no other request of the
    task is still pending, the task goes from waiting_human back to
    in_progress, leased to the answering node for the task's timeout_ms
    (the agent that resumes it renews the lease). The task's pending
    requests are locked in id order first, so two answers racing for the
    last two requests of one task (on two nodes) cannot both leave the
    task waiting. */
#ifndef CD_DB_Q_HITL_H
#define CD_DB_Q_HITL_H

#include "cd_q.h"

//  Opens a request for task_id (its project is copied from the task)
//  asked by agent (or NULL), from {question, options?, timeout_s?,
//  on_timeout?="deny"}; timeout_s sets the deadline. Returns 0 and the
//  row in *out (caller frees); CD_ENOTFOUND if the task does not exist;
//  CD_EDB 23514 for a bad on_timeout, an empty question.
int cd_q_hitl_insert(cd_db_t *db, int64_t task_id, const char *agent, const char *json, char **out);

//  The request, or CD_ENOTFOUND; created_by (CD_Q_NULL: anyone's)
//  limits it to requests of tasks that user created (a `user` caller).
int cd_q_hitl_get(cd_db_t *db, int64_t id, int64_t created_by, char **out);

//  Filters of a HITL list (CD_Q_NULL / NULL: any); they combine with AND.
typedef struct {
    const char *status; // this status
    int64_t project_id; // of this project
    int64_t task_id;    // of this task
    int64_t created_by; // of tasks this user created (a `user` caller)
    const char *cursor; // next_cursor of the previous page, or NULL
    int limit;          // page size (cd_q.h)
} cd_q_hitl_filter_t;

#define CD_Q_HITL_FILTER_ALL                                                                       \
    ((cd_q_hitl_filter_t){.project_id = CD_Q_NULL, .task_id = CD_Q_NULL, .created_by = CD_Q_NULL})

//  One page of requests, newest first.
int cd_q_hitl_list(cd_db_t *db, const cd_q_hitl_filter_t *filter, cd_q_page_t *out);

//  The writes persist runs for this family (cd_q.h, cd_q_write_t):
//    "hitl.respond" ($1 id, $2 the API's body {response, approved?} as
//    JSON text, $3 created_by or NULL, $4 node id taking the task's lease):
//    no row when there is no such request (or not of created_by's tasks);
//    else one row (json, ok): ok true and the answered request, or ok
//    false and the request as it is with "conflict": true added (it was
//    not pending). persist hands out the JSON column only.
extern const cd_q_write_t cd_q_hitl_writes[];
extern const size_t cd_q_hitl_n_writes;

//  Answers a pending request with response (JSON) and approved (1, 0, or
//  -1 for null), as "hitl.respond" does (history row, event, task resumed
//  when it was the last pending request; node_id takes the task's lease
//  and is required). created_by: as in cd_q_hitl_get. Returns 0 and the
//  row; CD_ESTATE (the row as it is, with "conflict": true) if it is not
//  pending any more; CD_ENOTFOUND.
int cd_q_hitl_respond(cd_db_t *db, int64_t id, const char *response, int approved,
                      int64_t created_by, const char *node_id, char **out);

//  Every pending request whose deadline has passed becomes expired; *out
//  receives them (each with its on_timeout, for the caller to act on).
int cd_q_hitl_expire_due(cd_db_t *db, cd_q_page_t *out);

//  Cancels the pending requests of a task (the task was cancelled).
//  *count (if not NULL) receives how many.
int cd_q_hitl_cancel_task(cd_db_t *db, int64_t task_id, int64_t *count);

#endif
