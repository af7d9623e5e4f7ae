/*  cd_api_schedules: scheduled tasks for the REST API (API.md
    "Schedules"): list, create, get, patch, delete, and run (fire now).

    A schedule fires every interval_s seconds or by a five-field cron
    expression in UTC (actors/cd_cron, validated here so a bad one is a
    400 naming `cron` with the reason). This module stores next_run_at;
    the scheduler actor (a later issue) fires due schedules. An interval
    schedule first fires one interval after it is created (computed by
    the database); a cron schedule at its next matching minute (computed
    here). A disabled schedule has no next_run_at; enabling it, or
    changing its interval or cron, computes a new one; other changes keep
    it. A PATCH reads the schedule first (to compute the next time of the
    patched cron) and the write checks that the schedule has not changed
    since (updated_at): if it has, 409, and nothing is written.

    POST /schedules/{id}/run fires it now, whether or not it is enabled or
    due: one statement creates the task from the schedule's template
    (created_by the schedule's owner) with its `created` history row and
    `task.created` event, writes `schedule.fired`, and sets last_run_at
    (next_run_at stays): 201 with the task and its Location.

    The task template is {title, description?, priority?, project_id?,
    assignee, input?} with the rules of POST /tasks, checked here so that
    a firing cannot fail on it later (project_id must name an existing
    project).

    A `user` caller sees and changes only its own schedules (404
    otherwise), like its tasks; admins see all. */
#include "api_internal.h"

#include "cd_cron.h"
#include "cd_error.h"
#include "cd_q_projects.h"
#include "cd_q_schedules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  The user whose schedules the caller may see, or CD_Q_NULL: all.
static int64_t
s_owner(const cd_api_req_t *req)
{
    return cd_api_user(req) > 0 && !cd_api_admin(req) ? cd_api_user(req) : CD_Q_NULL;
}

//  Characters (not bytes) of UTF-8 text, as the database counts them.
static size_t
s_chars(const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        n += (*p & 0xc0) != 0x80;
    }
    return n;
}

//  Answers 400 naming "task.<key>".
static void
s_task_invalid(cd_api_req_t *req, const char *key, const char *reason)
{
    //  The key may be long: shortened on a character boundary (the error
    //  body must stay valid UTF-8).
    size_t len = strlen(key);
    if (len > 60) {
        len = 60;
        while (len > 0 && ((unsigned char)key[len] & 0xc0) == 0x80) {
            len--;
        }
    }
    char field[80];
    snprintf(field, sizeof field, "task.%.*s", (int)len, key);
    cd_api_invalid(req, field, reason);
}

//  An assignee: exactly one of {"agent": name}, {"role": name},
//  {"team": id}. NULL when fine, else the reason.
static const char *
s_assignee_problem(const json_t *assignee)
{
    if (!json_is_object(assignee) || json_object_size(assignee) != 1) {
        return "must be one of {\"agent\": name}, {\"role\": name}, {\"team\": id}";
    }
    const json_t *agent = json_object_get(assignee, "agent");
    const json_t *role = json_object_get(assignee, "role");
    const json_t *team = json_object_get(assignee, "team");
    if (agent) {
        const char *name = json_string_value(agent);
        size_t len = name ? strlen(name) : 0;
        bool ok = len >= 1 && len <= 64;
        for (size_t i = 0; ok && i < len; i++) {
            ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                 name[i] == '_' || name[i] == '-';
        }
        return ok ? NULL : "agent must be a name of 1-64 characters a-z 0-9 _ -";
    }
    if (role) {
        const char *name = json_string_value(role);
        size_t len = name ? s_chars(name) : 0;
        return len >= 1 && len <= 64 ? NULL : "role must be a name of 1-64 characters";
    }
    if (team) {
        return json_is_integer(team) && json_integer_value(team) >= 1 &&
                       json_integer_value(team) < 1000000000000000000LL
                   ? NULL
                   : "team must be a positive integer id";
    }
    return "must be one of {\"agent\": name}, {\"role\": name}, {\"team\": id}";
}

//  Checks a task template. Returns true if it is fine; else answers 400
//  (or 503 when the database is away) and returns false.
static bool
s_task_ok(cd_api_req_t *req, const json_t *task)
{
    static const char *const keys[] = {"title",      "description", "priority",
                                       "project_id", "assignee",    "input"};
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)task, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !known; i++) {
            known = strcmp(key, keys[i]) == 0;
        }
        if (!known) {
            s_task_invalid(req, key, "unknown field");
            return false;
        }
    }
    const json_t *title = json_object_get(task, "title");
    if (!json_is_string(title) || s_chars(json_string_value(title)) < 1 ||
        s_chars(json_string_value(title)) > 500) {
        s_task_invalid(req, "title", title ? "must be a string of 1-500 characters" : "required");
        return false;
    }
    const json_t *description = json_object_get(task, "description");
    if (description && !json_is_null(description) &&
        (!json_is_string(description) || s_chars(json_string_value(description)) > 100000)) {
        s_task_invalid(req, "description", "must be a string of at most 100000 characters");
        return false;
    }
    const json_t *priority = json_object_get(task, "priority");
    if (priority && !json_is_null(priority) &&
        (!json_is_integer(priority) || json_integer_value(priority) < 0 ||
         json_integer_value(priority) > 9)) {
        s_task_invalid(req, "priority", "must be an integer from 0 to 9");
        return false;
    }
    const json_t *assignee = json_object_get(task, "assignee");
    const char *wrong = assignee ? s_assignee_problem(assignee) : "required";
    if (wrong) {
        s_task_invalid(req, "assignee", wrong);
        return false;
    }
    const json_t *project = json_object_get(task, "project_id");
    if (!project || json_is_null(project)) {
        return true;
    }
    if (!json_is_integer(project) || json_integer_value(project) < 1) {
        s_task_invalid(req, "project_id", "must be a positive integer id");
        return false;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return false;
    }
    char *row = NULL;
    int rc = cd_q_projects_get(db, json_integer_value(project), &row);
    if (rc == 0 && s_owner(req) != CD_Q_NULL) {
        json_t *p = json_loads(row, 0, NULL);
        json_t *by = json_object_get(p, "created_by");
        rc = json_is_integer(by) && json_integer_value(by) == s_owner(req) ? 0 : CD_ENOTFOUND;
        json_decref(p);
    }
    free(row);
    if (rc == CD_ENOTFOUND) {
        s_task_invalid(req, "project_id", "no such project");
        return false;
    }
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return false;
    }
    return true;
}

//  Checks catch_up if present ("skip" or "once").
static bool
s_catch_up_ok(cd_api_req_t *req, const json_t *body)
{
    const char *catch_up = json_string_value(json_object_get(body, "catch_up"));
    if (catch_up && strcmp(catch_up, "skip") != 0 && strcmp(catch_up, "once") != 0) {
        cd_api_invalid(req, "catch_up", "must be \"skip\" or \"once\"");
        return false;
    }
    return true;
}

//  Parses cron and writes its next matching minute after now into next
//  (RFC 3339, UTC). Returns false after answering 400 naming `cron`.
static bool
s_cron_next(cd_api_req_t *req, const char *expr, char next[32])
{
    cd_cron_t cron;
    const char *why = NULL;
    if (cd_cron_parse(expr, &cron, &why) != 0) {
        cd_api_invalid(req, "cron", why);
        return false;
    }
    int64_t at = 0;
    if (cd_cron_next(&cron, (int64_t)time(NULL), &at) != 0) {
        cd_api_invalid(req, "cron", "never matches (no such day in any of the next 30 years)");
        return false;
    }
    time_t t = (time_t)at;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(next, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return true;
}

static const char *
s_i64(char buf[24], int64_t v)
{
    if (v == CD_Q_NULL) {
        return NULL;
    }
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

//  --- continuations ----------------------------------------------------------------

//  201 with the row and its Location (prefix + its id).
static void
s_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
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
    char location[96];
    snprintf(location, sizeof location, "%s/%lld", (const char *)arg,
             (long long)json_integer_value(json_object_get(row, "id")));
    json_decref(row);
    cd_api_reply_text(req, 201, res->value, location);
}

static void
s_patched(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
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
        cd_api_error(req, 409, "conflict",
                     "the schedule changed while this request ran; read it and retry",
                     json_pack("{s:s}", "updated_at",
                               json_string_value(json_object_get(row, "updated_at"))
                                   ? json_string_value(json_object_get(row, "updated_at"))
                                   : ""));
    } else {
        cd_api_reply_text(req, 200, res->value, NULL);
    }
    json_decref(row);
}

//  Sends a write; on a failed send answers (503 for a busy or missing
//  persist actor).
static void
s_write(cd_api_req_t *req, const char *stmt, int n, const char *const *params, cd_api_write_fn *fn,
        void *arg)
{
    int rc = cd_api_write(req, stmt, n, params, fn, arg);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
}

//  --- operations -------------------------------------------------------------------

static int
s_list(cd_api_req_t *req)
{
    int limit = 0;
    const char *cursor = NULL;
    cd_db_t *db = cd_api_page_begin(req, &limit, &cursor);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_schedules_list(db, s_owner(req), cursor, limit, &page);
    cd_api_reply_read_page(req, rc, db, &page);
    return 0;
}

//  Reads schedule id as the caller may see it into *row (parsed; caller
//  decrefs). Returns false after answering (404, 503).
static bool
s_read(cd_api_req_t *req, int64_t id, json_t **row)
{
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return false;
    }
    char *text = NULL;
    int rc = cd_q_schedules_get(db, id, &text);
    *row = rc == 0 ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (rc == 0 && !*row) {
        rc = CD_EINVAL;
    }
    if (rc == 0 && s_owner(req) != CD_Q_NULL) {
        json_t *by = json_object_get(*row, "created_by");
        if (!json_is_integer(by) || json_integer_value(by) != s_owner(req)) {
            json_decref(*row);
            *row = NULL;
            rc = CD_ENOTFOUND;
        }
    }
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return false;
    }
    return true;
}

static int
s_get(cd_api_req_t *req)
{
    int64_t id = 0;
    json_t *row = NULL;
    if (!cd_api_param_id(req, "id", &id) || !s_read(req, id, &row)) {
        return 0;
    }
    cd_api_reply_json(req, 200, row, NULL);
    return 0;
}

static int
s_create(cd_api_req_t *req)
{
    const json_t *body = cd_api_body(req);
    const json_t *interval = json_object_get(body, "interval_s");
    const json_t *cron = json_object_get(body, "cron");
    bool has_interval = interval && !json_is_null(interval);
    bool has_cron = cron && !json_is_null(cron);
    if (has_interval == has_cron) {
        cd_api_invalid(req, has_cron ? "cron" : "interval_s",
                       "give exactly one of interval_s and cron");
        return 0;
    }
    if (!s_catch_up_ok(req, body)) {
        return 0;
    }
    //  Checked even when disabled: a cron that can never fire is a mistake.
    char next[32] = "";
    if (has_cron && !s_cron_next(req, json_string_value(cron), next)) {
        return 0;
    }
    if (!s_task_ok(req, json_object_get(body, "task"))) {
        return 0;
    }
    bool enabled = !json_is_false(json_object_get(body, "enabled"));
    char user[24];
    const char *params[] = {cd_api_body_text(req), has_cron && enabled ? next : NULL,
                            cd_api_user(req) > 0 ? s_i64(user, cd_api_user(req)) : NULL};
    s_write(req, "schedules.insert", 3, params, s_created, (void *)"/api/v1/schedules");
    return 0;
}

static int
s_patch(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    const json_t *body = cd_api_body(req);
    const json_t *interval = json_object_get(body, "interval_s");
    const json_t *cron = json_object_get(body, "cron");
    if (interval && !json_is_null(interval) && cron && !json_is_null(cron)) {
        cd_api_invalid(req, "cron", "give only one of interval_s and cron");
        return 0;
    }
    if (!s_catch_up_ok(req, body)) {
        return 0;
    }
    char next[32] = "";
    if (cron && !json_is_null(cron) && !s_cron_next(req, json_string_value(cron), next)) {
        return 0;
    }
    const json_t *task = json_object_get(body, "task");
    if (task && !s_task_ok(req, task)) {
        return 0;
    }
    json_t *cur = NULL;
    if (!s_read(req, id, &cur)) {
        return 0;
    }
    //  The schedule as the patch leaves it: a new interval clears the cron
    //  and the other way round (as the statement does).
    const json_t *new_interval = interval ? interval
                                 : (cron && !json_is_null(cron))
                                     ? NULL
                                     : json_object_get(cur, "interval_s");
    const json_t *new_cron = cron                                    ? cron
                             : (interval && !json_is_null(interval)) ? NULL
                                                                     : json_object_get(cur, "cron");
    bool has_interval = new_interval && !json_is_null(new_interval);
    bool has_cron = new_cron && !json_is_null(new_cron);
    if (!has_interval && !has_cron) {
        json_decref(cur);
        cd_api_invalid(req, interval ? "interval_s" : "cron",
                       "a schedule needs one of interval_s and cron");
        return 0;
    }
    if (has_cron && !cron && !s_cron_next(req, json_string_value(new_cron), next)) {
        json_decref(cur);
        return 0;
    }
    char idbuf[24], ownerbuf[24];
    const char *updated = json_string_value(json_object_get(cur, "updated_at"));
    char *expected = updated ? strdup(updated) : NULL;
    json_decref(cur);
    const char *params[] = {s_i64(idbuf, id), cd_api_body_text(req), has_cron ? next : NULL,
                            expected, s_i64(ownerbuf, s_owner(req))};
    s_write(req, "schedules.patch", 5, params, s_patched, NULL);
    free(expected);
    return 0;
}

static int
s_delete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24], ownerbuf[24];
    const char *params[] = {s_i64(idbuf, id), s_i64(ownerbuf, s_owner(req))};
    s_write(req, "schedules.delete", 2, params, cd_api_on_deleted, NULL);
    return 0;
}

static int
s_run(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24], ownerbuf[24];
    const char *params[] = {s_i64(idbuf, id), s_i64(ownerbuf, s_owner(req))};
    s_write(req, "schedules.run", 2, params, s_created, (void *)"/api/v1/tasks");
    return 0;
}

static const cd_api_op_t s_ops[] = {
    {"schedules.list", s_list},   {"schedules.create", s_create}, {"schedules.get", s_get},
    {"schedules.patch", s_patch}, {"schedules.delete", s_delete}, {"schedules.run", s_run},
};

const cd_api_module_t cd__api_schedules_module = {
    "schedules",
    s_ops,
    sizeof s_ops / sizeof s_ops[0],
    cd_q_schedules_writes,
    &cd_q_schedules_n_writes,
};
