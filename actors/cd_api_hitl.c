/*  cd_api_hitl: human-in-the-loop requests for the REST API (API.md
    "Human in the loop"): list (all, or one project's), get, respond.

    Requests are opened by agents (a later issue); here they are read and
    answered. An answer is one statement through persist ("hitl.respond",
    db/cd_q_hitl.h): the request becomes answered, the task's history and
    the event stream record it, and the task resumes (waiting_human ->
    in_progress) when no other request of it is pending, all in one
    commit; the agent that resumes it learns of it from the event.

    A `user` caller sees only the requests of tasks it created: another
    user's request is 404 and absent from lists (the filter applies when
    the caller is a user and not an admin, so the auth issue only fills in
    identities). */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_hitl.h"
#include "cd_q_projects.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const s_statuses[] = {"pending", "answered", "expired", "cancelled", NULL};

//  The user whose tasks' requests the caller may see, or CD_Q_NULL: all.
static int64_t
s_owner(const cd_api_req_t *req)
{
    return cd_api_user(req) > 0 && !cd_api_admin(req) ? cd_api_user(req) : CD_Q_NULL;
}

//  Answers a list: the query's filters, and project_id from the path when
//  it is not CD_Q_NULL (the project was checked by the caller).
static int
s_list(cd_api_req_t *req, int64_t project_id, cd_db_t *db)
{
    cd_q_hitl_filter_t f = CD_Q_HITL_FILTER_ALL;
    if (!cd_api_page_args(req, &f.limit, &f.cursor) ||
        !cd_api_query_enum(req, "status", s_statuses, &f.status) ||
        !cd_api_query_int(req, "task_id", 1, INT64_MAX, CD_Q_NULL, &f.task_id)) {
        return 0;
    }
    if (project_id != CD_Q_NULL) {
        f.project_id = project_id;
    } else if (!cd_api_query_int(req, "project_id", 1, INT64_MAX, CD_Q_NULL, &f.project_id)) {
        return 0;
    }
    f.created_by = s_owner(req);
    if (!db && !(db = cd_api_read_db(req))) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_hitl_list(db, &f, &page);
    cd_api_reply_read_page(req, rc, db, &page);
    return 0;
}

static int
s_hitl_list(cd_api_req_t *req)
{
    return s_list(req, CD_Q_NULL, NULL);
}

//  GET /projects/{id}/hitl: 404 for a project that does not exist (or,
//  for a `user`, is not its own), then the list.
static int
s_hitl_project_list(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_projects_get(db, id, &row);
    if (rc == 0 && s_owner(req) != CD_Q_NULL) {
        json_t *project = json_loads(row, 0, NULL);
        json_t *by = json_object_get(project, "created_by");
        if (!json_is_integer(by) || json_integer_value(by) != s_owner(req)) {
            rc = CD_ENOTFOUND;
        }
        json_decref(project);
    }
    free(row);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    return s_list(req, id, db);
}

static int
s_hitl_get(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_hitl_get(db, id, s_owner(req), &row);
    cd_api_reply_read(req, rc, db, row);
    return 0;
}

//  After "hitl.respond": 200 with the answered request; 404 (no row);
//  409 when it was not pending (the row carries "conflict": true).
static void
s_responded(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such object", NULL);
        return;
    }
    json_t *row = json_loads(res->value, 0, NULL);
    if (json_is_true(json_object_get(row, "conflict"))) {
        const char *status = json_string_value(json_object_get(row, "status"));
        char message[96];
        snprintf(message, sizeof message, "the request is %s, not pending",
                 status ? status : "no longer pending");
        cd_api_error(req, 409, "conflict", message,
                     json_pack("{s:s}", "status", status ? status : ""));
    } else {
        cd_api_reply_text(req, 200, res->value, NULL);
    }
    json_decref(row);
}

static int
s_hitl_respond(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    //  The body as received ({response, approved?}, checked by the route's
    //  schema): the statement takes it apart, so the response is stored
    //  exactly as the client spelled it.
    char idbuf[24], ownerbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    int64_t owner = s_owner(req);
    snprintf(ownerbuf, sizeof ownerbuf, "%lld", (long long)owner);
    const char *params[] = {idbuf, cd_api_body_text(req), owner == CD_Q_NULL ? NULL : ownerbuf,
                            cd_api_node_id(req)};
    int rc = cd_api_write(req, "hitl.respond", 4, params, s_responded, NULL);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

static const cd_api_op_t s_ops[] = {
    {"hitl.list", s_hitl_list},
    {"hitl.get", s_hitl_get},
    {"hitl.respond", s_hitl_respond},
    {"hitl.project_list", s_hitl_project_list},
};

const cd_api_module_t cd__api_hitl_module = {
    "hitl", s_ops, sizeof s_ops / sizeof s_ops[0], cd_q_hitl_writes, &cd_q_hitl_n_writes,
};
