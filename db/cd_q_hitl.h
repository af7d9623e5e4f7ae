/*  cd_q_hitl: human-in-the-loop requests (hitl_requests table).

    Conventions: cd_q.h. A row is API.md's HITL request: {id, task_id,
    project_id, agent, question, options, status, response, approved,
    deadline, on_timeout, created_at, answered_at}. status: pending ->
    answered | expired | cancelled, each move a compare-and-set, so an
    answer racing the deadline has exactly one winner. Deadlines are
    stored, so they survive restarts: the scheduler calls
    cd_q_hitl_expire_due. */
#ifndef CD_DB_Q_HITL_H
#define CD_DB_Q_HITL_H

#include "cd_q.h"

//  Opens a request for task_id (its project is copied from the task)
//  asked by agent (or NULL), from {question, options?, timeout_s?,
//  on_timeout?="deny"}; timeout_s sets the deadline. Returns 0 and the
//  row in *out (caller frees); CD_ENOTFOUND if the task does not exist;
//  CD_EDB 23514 for a bad on_timeout, an empty question.
int cd_q_hitl_insert(cd_db_t *db, int64_t task_id, const char *agent, const char *json, char **out);

//  The request, or CD_ENOTFOUND.
int cd_q_hitl_get(cd_db_t *db, int64_t id, char **out);

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

//  Answers a pending request with response (JSON) and approved (1, 0, or
//  -1 for null). Returns 0 and the row; CD_ESTATE (row as it is) if it
//  is not pending any more; CD_ENOTFOUND.
int cd_q_hitl_respond(cd_db_t *db, int64_t id, const char *response, int approved, char **out);

//  Every pending request whose deadline has passed becomes expired; *out
//  receives them (each with its on_timeout, for the caller to act on).
int cd_q_hitl_expire_due(cd_db_t *db, cd_q_page_t *out);

//  Cancels the pending requests of a task (the task was cancelled).
//  *count (if not NULL) receives how many.
int cd_q_hitl_cancel_task(cd_db_t *db, int64_t task_id, int64_t *count);

#endif
