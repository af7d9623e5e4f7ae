/*  cd_api_projects: projects (+status) and their artifacts for the REST
    API (API.md "Projects").

    Reads run on the api actor's connection (db/cd_q_projects); writes go
    to persist by statement name (cd_q_projects_writes) and are answered
    after the commit. An artifact and its `artifact.created` event are
    one statement, so they commit together.

    Visibility: a `user` sees only the projects it created, and their
    artifacts; another user's is 404, as if it did not exist, and absent
    from lists. Reads check the project's created_by; writes pass the
    caller as the statement's owner parameter, so the check and the change
    are one statement. An admin (and, until authentication is in place,
    the anonymous caller: user id 0) sees every project.

    Artifact content arrives as `content` (text, stored as UTF-8) or
    `content_base64` (bytes), exactly one of them, within the request body
    limit; it is served back raw with its content type. */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_projects.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Largest content the content route serves: the answer travels to the
//  HTTP thread in one envelope (CD_ENV_MAX_SIZE), with room for the rest.
#define S_CONTENT_MAX ((size_t)CD_ENV_MAX_SIZE - 65536)

//  --- shared shapes ---------------------------------------------------------------

//  The created_by a caller's writes and lists are limited to: the user,
//  unless it is an admin (or anonymous); else CD_Q_NULL (any).
static int64_t
s_owner(const cd_api_req_t *req)
{
    return cd_api_user(req) > 0 && !cd_api_admin(req) ? cd_api_user(req) : CD_Q_NULL;
}

//  The project id as the caller may see it: 0 and the row in *out (caller
//  frees, if out is not NULL), CD_ENOTFOUND when it does not exist or is
//  another user's, or the query's error.
static int
s_project_read(cd_api_req_t *req, cd_db_t *db, int64_t id, char **out)
{
    char *row = NULL;
    int rc = cd_q_projects_get(db, id, &row);
    int64_t owner = s_owner(req);
    if (rc == 0 && owner != CD_Q_NULL) {
        json_t *project = json_loads(row, 0, NULL);
        json_t *created_by = json_object_get(project, "created_by");
        if (!json_is_integer(created_by) || json_integer_value(created_by) != owner) {
            rc = CD_ENOTFOUND;
        }
        json_decref(project);
    }
    if (rc == 0 && out) {
        *out = row;
    } else {
        free(row);
    }
    return rc;
}

//  Answers a failed cd_api_write (nothing was parked).
static void
s_write_not_sent(cd_api_req_t *req, int rc)
{
    cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
}

//  --- projects -------------------------------------------------------------------------

static int
s_projects_list(cd_api_req_t *req)
{
    int limit = 0;
    const char *cursor = NULL;
    cd_db_t *db = cd_api_page_begin(req, &limit, &cursor);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_projects_list(db, s_owner(req), cursor, limit, &page);
    cd_api_reply_read_page(req, rc, db, &page);
    return 0;
}

static int
s_projects_create(cd_api_req_t *req)
{
    char userbuf[24];
    snprintf(userbuf, sizeof userbuf, "%lld", (long long)cd_api_user(req));
    const char *params[] = {cd_api_body_text(req), cd_api_user(req) > 0 ? userbuf : NULL};
    int rc = cd_api_write(req, "projects.insert", 2, params, cd_api_on_created, "/api/v1/projects");
    if (rc != 0) {
        s_write_not_sent(req, rc);
    }
    return 0;
}

static int
s_projects_get(cd_api_req_t *req)
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
    int rc = s_project_read(req, db, id, &row);
    cd_api_reply_read(req, rc, db, row);
    return 0;
}

//  After a patch: 200 with the project, or 404 (none, or not the caller's).
static void
s_project_patched(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such project", NULL);
    } else {
        cd_api_reply_text(req, 200, res->value, NULL);
    }
}

static int
s_projects_patch(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24], ownerbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    int64_t owner = s_owner(req);
    snprintf(ownerbuf, sizeof ownerbuf, "%lld", (long long)owner);
    const char *params[] = {idbuf, cd_api_body_text(req), owner != CD_Q_NULL ? ownerbuf : NULL};
    int rc = cd_api_write(req, "projects.patch", 3, params, s_project_patched, NULL);
    if (rc != 0) {
        s_write_not_sent(req, rc);
    }
    return 0;
}

//  After a delete: 204, 404, or 409 while the project has tasks.
static void
s_project_deleted(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "23503")) {
        cd_api_error(req, 409, "conflict",
                     "the project still has tasks: delete (archive) them first",
                     json_pack("{s:s}", "sqlstate", res->sqlstate));
    } else if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such project", NULL);
    } else {
        cd_api_reply_empty(req);
    }
}

static int
s_projects_delete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24], ownerbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    int64_t owner = s_owner(req);
    snprintf(ownerbuf, sizeof ownerbuf, "%lld", (long long)owner);
    const char *params[] = {idbuf, owner != CD_Q_NULL ? ownerbuf : NULL};
    int rc = cd_api_write(req, "projects.delete", 2, params, s_project_deleted, NULL);
    if (rc != 0) {
        s_write_not_sent(req, rc);
    }
    return 0;
}

static int
s_projects_status(cd_api_req_t *req)
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
    int rc = s_project_read(req, db, id, NULL);
    if (rc == 0) {
        rc = cd_q_projects_status(db, id, &row);
    }
    cd_api_reply_read(req, rc, db, row);
    return 0;
}

//  --- artifacts ------------------------------------------------------------------------

//  True if text can be a Content-Type header value: 1..255 printable
//  ASCII characters (no line breaks or other controls to smuggle headers).
static bool
s_content_type_ok(const char *text)
{
    size_t len = text ? strlen(text) : 0;
    if (len < 1 || len > 255) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] < 0x20 || text[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

//  True if text is standard base64 with padding (whitespace ignored, as
//  PostgreSQL's decode ignores it).
static bool
s_base64_ok(const char *text, size_t len)
{
    size_t cap = len / 4 * 3 + 3;
    unsigned char *bin = (unsigned char *)zmalloc(cap);
    size_t bin_len = 0;
    const char *end = NULL;
    int rc = sodium_base642bin(bin, cap, text, len, " \t\r\n", &bin_len, &end,
                               sodium_base64_VARIANT_ORIGINAL);
    free(bin);
    return rc == 0 && end == text + len;
}

static int
s_artifacts_list(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    int limit = 0;
    const char *cursor = NULL;
    cd_db_t *db = cd_api_page_begin(req, &limit, &cursor);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = s_project_read(req, db, id, NULL);
    if (rc == 0) {
        rc = cd_q_artifacts_list(db, id, cursor, limit, &page);
    }
    cd_api_reply_read_page(req, rc, db, &page);
    return 0;
}

//  After storing an artifact: 201 with its metadata and Location, 404 for
//  no such project, 400 for a task_id of no task of the project or
//  content PostgreSQL cannot decode, 413 for content over persist's value
//  limit.
static void
s_artifact_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "22023")) {
        cd_api_invalid(req, "content_base64", "not valid base64");
        return;
    }
    if (res->rc == CD_EDB && streq(res->sqlstate, "54000")) {
        cd_api_error(req, 413, "payload_too_large", "the artifact is too large to store",
                     json_pack("{s:s}", "field", "content"));
        return;
    }
    if (res->rc == 0 && !res->value) {
        cd_api_error(req, 404, "not_found", "no such project", NULL);
        return;
    }
    if (res->rc == 0 && strncmp(res->value, "{\"invalid\"", 10) == 0) {
        cd_api_invalid(req, "task_id", "no task of this project has this id");
        return;
    }
    cd_api_on_created(req, res, "/api/v1/artifacts");
}

static int
s_artifacts_create(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    json_t *body = cd_api_body(req);
    json_t *text = json_object_get(body, "content");
    json_t *b64 = json_object_get(body, "content_base64");
    json_t *type = json_object_get(body, "content_type");
    if (!text && !b64) {
        cd_api_invalid(req, "content", "give content (text) or content_base64 (bytes)");
        return 0;
    }
    if (text && b64) {
        cd_api_invalid(req, "content_base64", "give content or content_base64, not both");
        return 0;
    }
    if (b64 && !s_base64_ok(json_string_value(b64), json_string_length(b64))) {
        cd_api_invalid(req, "content_base64", "not valid base64");
        return 0;
    }
    if (type && !s_content_type_ok(json_string_value(type))) {
        cd_api_invalid(req, "content_type", "must be 1 to 255 printable ASCII characters");
        return 0;
    }
    char idbuf[24], userbuf[24], ownerbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    snprintf(userbuf, sizeof userbuf, "%lld", (long long)cd_api_user(req));
    int64_t owner = s_owner(req);
    snprintf(ownerbuf, sizeof ownerbuf, "%lld", (long long)owner);
    const char *params[] = {idbuf, cd_api_body_text(req), cd_api_user(req) > 0 ? userbuf : NULL,
                            owner != CD_Q_NULL ? ownerbuf : NULL};
    int rc = cd_api_write(req, "artifacts.insert", 4, params, s_artifact_created, NULL);
    if (rc != 0) {
        s_write_not_sent(req, rc);
    }
    return 0;
}

//  Reads artifact {id} of the path's for the caller: its metadata in *meta
//  (caller owns), or false after answering (404 for none or another
//  user's).
static bool
s_artifact_read(cd_api_req_t *req, cd_db_t *db, json_t **meta)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return false;
    }
    char *row = NULL;
    int rc = cd_q_artifacts_get(db, id, &row);
    json_t *artifact = rc == 0 ? json_loads(row, 0, NULL) : NULL;
    free(row);
    if (rc == 0) {
        int64_t project = json_integer_value(json_object_get(artifact, "project_id"));
        rc = s_project_read(req, db, project, NULL);
    }
    if (rc != 0) {
        json_decref(artifact);
        cd_api_fail(req, rc, db);
        return false;
    }
    *meta = artifact;
    return true;
}

static int
s_artifacts_get(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    json_t *meta = NULL;
    if (db && s_artifact_read(req, db, &meta)) {
        cd_api_reply_json(req, 200, meta, NULL);
    }
    return 0;
}

static int
s_artifacts_content(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    json_t *meta = NULL;
    if (!db || !s_artifact_read(req, db, &meta)) {
        return 0;
    }
    json_int_t size = json_integer_value(json_object_get(meta, "size"));
    int64_t id = json_integer_value(json_object_get(meta, "id"));
    const char *name = json_string_value(json_object_get(meta, "name"));
    char *filename = strdup(name ? name : "");
    json_decref(meta);
    if (size < 0 || (size_t)size > S_CONTENT_MAX) {
        free(filename);
        cd_api_error(
            req, 413, "payload_too_large", "the artifact is too large to send whole",
            json_pack("{s:I, s:I}", "size", size, "limit_bytes", (json_int_t)S_CONTENT_MAX));
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_artifacts_content(db, id, &row);
    if (rc != 0) {
        free(filename);
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *content = json_loads(row, 0, NULL);
    free(row);
    const char *b64 = json_string_value(json_object_get(content, "content_base64"));
    const char *type = json_string_value(json_object_get(content, "content_type"));
    size_t cap = (size_t)size + 1;
    unsigned char *bytes = (unsigned char *)zmalloc(cap);
    size_t len = 0;
    if (!b64 || sodium_base642bin(bytes, cap, b64, strlen(b64), NULL, &len, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) != 0) {
        cd_api_error(req, 500, "internal", "the stored content could not be read", NULL);
    } else {
        //  Agents store artifacts too: a type unfit for a header is served
        //  as plain bytes. Served as a download (unless JSON), under its
        //  name: what an artifact holds is never rendered as a page of
        //  this origin.
        cd_api_reply_bytes(req, 200, s_content_type_ok(type) ? type : "application/octet-stream",
                           filename, bytes, len);
    }
    free(filename);
    free(bytes);
    json_decref(content);
    return 0;
}

//  --- the module ---------------------------------------------------------------------

static const cd_api_op_t s_ops[] = {
    {"projects.list", s_projects_list},     {"projects.create", s_projects_create},
    {"projects.get", s_projects_get},       {"projects.patch", s_projects_patch},
    {"projects.delete", s_projects_delete}, {"projects.status", s_projects_status},
    {"artifacts.list", s_artifacts_list},   {"artifacts.create", s_artifacts_create},
    {"artifacts.get", s_artifacts_get},     {"artifacts.content", s_artifacts_content},
};

const cd_api_module_t cd__api_projects_module = {
    "projects",
    s_ops,
    sizeof s_ops / sizeof s_ops[0],
    cd_q_projects_writes,
    &cd_q_projects_n_writes,
};
