/*  cd_q_projects: queries on projects and artifacts (see
    cd_q_projects.h).

    Every write is one statement, listed in cd_q_projects_writes for the
    persist actor; the functions here run those very strings (with no
    owner filter). Storing an artifact inserts its `artifact.created`
    event in the same statement, so the event commits with it.

    Interface: cd_q_projects_insert, cd_q_projects_get,
    cd_q_projects_list, cd_q_projects_patch, cd_q_projects_delete,
    cd_q_projects_status, cd_q_artifacts_insert, cd_q_artifacts_get,
    cd_q_artifacts_content, cd_q_artifacts_list, cd_q_artifacts_delete. */
#include "cd_q_projects.h"
#include "cd_error.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define PROJECT_JSON                                                                               \
    "json_build_object('id', p.id, 'name', p.name, 'description', p.description, 'created_by', "   \
    "p.created_by, 'created_at', cd_ts(p.created_at), 'updated_at', cd_ts(p.updated_at))"

#define ARTIFACT_JSON                                                                              \
    "json_build_object('id', a.id, 'project_id', a.project_id, 'task_id', a.task_id, 'name', "     \
    "a.name, 'content_type', a.content_type, 'size', a.size, 'created_by', a.created_by, "         \
    "'created_at', cd_ts(a.created_at))"

//  The writes. An owner parameter ($n::bigint) NULL means any project;
//  else only a project created_by that user matches (another's is not
//  found).
static const char s_projects_insert[] =
    "INSERT INTO projects AS p (name, description, created_by)"
    " SELECT b.e ->> 'name', coalesce(b.e ->> 'description', ''), $2::bigint"
    " FROM (SELECT $1::jsonb AS e) b RETURNING " PROJECT_JSON;
static const char s_projects_patch[] =
    "UPDATE projects p SET"
    " name = CASE WHEN $2::jsonb ? 'name' THEN $2::jsonb ->> 'name' ELSE p.name END,"
    " description = CASE WHEN $2::jsonb ? 'description'"
    " THEN $2::jsonb ->> 'description' ELSE p.description END"
    " WHERE p.id = $1::bigint AND ($3::bigint IS NULL OR p.created_by = $3::bigint)"
    " RETURNING " PROJECT_JSON;
static const char s_projects_delete[] =
    "DELETE FROM projects p WHERE p.id = $1::bigint"
    " AND ($2::bigint IS NULL OR p.created_by = $2::bigint) RETURNING p.id";

//  ($1 project, $2 body, $3 created_by, $4 owner). No row when the
//  project does not exist (or is not the owner's). A task_id must name a
//  task of the project, else the answer is {"invalid": {"field":
//  "task_id", "reason"}} and nothing is written. Content: content_base64
//  decoded, else content as UTF-8 (neither: NOT NULL fails, 23502).
static const char s_artifacts_insert[] =
    "WITH b AS (SELECT $2::jsonb AS e),"
    " p AS (SELECT p.id FROM projects p WHERE p.id = $1::bigint"
    " AND ($4::bigint IS NULL OR p.created_by = $4::bigint)),"
    " bad AS (SELECT json_build_object('invalid', json_build_object('field', 'task_id',"
    " 'reason', 'no task of this project has this id')) AS j FROM b, p"
    " WHERE b.e ->> 'task_id' IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasks t"
    " WHERE t.id = (b.e ->> 'task_id')::bigint AND t.project_id = p.id)),"
    " a AS (INSERT INTO artifacts AS a (project_id, task_id, name, content_type, content,"
    " created_by) SELECT p.id, (b.e ->> 'task_id')::bigint, b.e ->> 'name',"
    " coalesce(b.e ->> 'content_type', CASE WHEN b.e ? 'content_base64'"
    " THEN 'application/octet-stream' ELSE 'text/plain; charset=utf-8' END),"
    " CASE WHEN b.e ? 'content_base64' THEN decode(b.e ->> 'content_base64', 'base64')"
    " ELSE convert_to(b.e ->> 'content', 'UTF8') END, $3::bigint"
    " FROM b, p WHERE NOT EXISTS (SELECT 1 FROM bad)"
    " RETURNING a.id, a.project_id, a.task_id, a.name, a.content_type, a.size, a.created_by,"
    " a.created_at),"
    " ev AS (INSERT INTO events (type, project_id, task_id, data)"
    " SELECT 'artifact.created', a.project_id, a.task_id, jsonb_build_object('artifact_id',"
    " a.id, 'name', a.name, 'content_type', a.content_type, 'size', a.size) FROM a)"
    " SELECT coalesce((SELECT j FROM bad), (SELECT " ARTIFACT_JSON " FROM a))";

int
cd_q_projects_insert(cd_db_t *db, const char *json, int64_t created_by, char **out)
{
    char b1[24];
    const char *params[] = {json, cd__q_i64(b1, created_by)};
    return cd__q_one(db, s_projects_insert, 2, params, out);
}

int
cd_q_projects_get(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, "SELECT " PROJECT_JSON " FROM projects p WHERE p.id = $1", 1, params, out);
}

int
cd_q_projects_list(cd_db_t *db, int64_t created_by, const char *cursor, int limit, cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, created_by), cursor, NULL};
    return cd__q_page(db,
                      "SELECT p.id, " PROJECT_JSON " FROM projects p"
                      " WHERE ($1::bigint IS NULL OR p.created_by = $1)"
                      " AND ($2::bigint IS NULL OR p.id < $2) ORDER BY p.id DESC LIMIT $3",
                      3, params, limit, out);
}

int
cd_q_projects_patch(cd_db_t *db, int64_t id, const char *json, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json, NULL};
    return cd__q_one(db, s_projects_patch, 3, params, out);
}

int
cd_q_projects_delete(cd_db_t *db, int64_t id)
{
    char b1[24], *row = NULL;
    const char *params[] = {cd__q_i64(b1, id), NULL};
    int rc = cd__q_one(db, s_projects_delete, 2, params, &row);
    free(row);
    return rc;
}
int
cd_q_projects_status(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(
        db,
        "SELECT json_build_object('project_id', p.id, 'tasks', json_build_object("
        " 'todo', count(t.id) FILTER (WHERE t.status = 'todo'),"
        " 'in_progress', count(t.id) FILTER (WHERE t.status = 'in_progress'),"
        " 'waiting_human', count(t.id) FILTER (WHERE t.status = 'waiting_human'),"
        " 'done', count(t.id) FILTER (WHERE t.status = 'done'),"
        " 'failed', count(t.id) FILTER (WHERE t.status = 'failed'),"
        " 'cancelled', count(t.id) FILTER (WHERE t.status = 'cancelled')),"
        " 'pending_hitl', (SELECT count(*) FROM hitl_requests h"
        "  WHERE h.project_id = p.id AND h.status = 'pending'),"
        " 'agents_busy', count(DISTINCT t.agent) FILTER (WHERE t.status = 'in_progress'))"
        " FROM projects p LEFT JOIN tasks t ON t.project_id = p.id WHERE p.id = $1"
        " GROUP BY p.id",
        1, params, out);
}

int
cd_q_artifacts_insert(cd_db_t *db, int64_t project_id, const char *json, int64_t created_by,
                      char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, project_id), json, cd__q_i64(b2, created_by), NULL};
    int rc = cd__q_one(db, s_artifacts_insert, 4, params, out);
    if (rc == 0 && strncmp(*out, "{\"invalid\"", 10) == 0) {
        rc = CD_EINVAL;
    }
    return rc;
}

int
cd_q_artifacts_get(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, "SELECT " ARTIFACT_JSON " FROM artifacts a WHERE a.id = $1", 1, params,
                     out);
}

int
cd_q_artifacts_content(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    //  encode() breaks base64 lines at 76 characters; the API wants one.
    return cd__q_one(db,
                     "SELECT json_build_object('content_type', a.content_type, 'size', a.size,"
                     " 'content_base64', translate(encode(a.content, 'base64'), E'\\n', ''))"
                     " FROM artifacts a WHERE a.id = $1",
                     1, params, out);
}

int
cd_q_artifacts_list(cd_db_t *db, int64_t project_id, const char *cursor, int limit,
                    cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, project_id), cursor, NULL};
    return cd__q_page(db,
                      "SELECT a.id, " ARTIFACT_JSON " FROM artifacts a WHERE a.project_id = $1"
                      " AND ($2::bigint IS NULL OR a.id < $2) ORDER BY a.id DESC LIMIT $3",
                      3, params, limit, out);
}

int
cd_q_artifacts_delete(cd_db_t *db, int64_t id)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_write(db, "DELETE FROM artifacts WHERE id = $1", 1, params, NULL);
}

const cd_q_write_t cd_q_projects_writes[] = {
    {"projects.insert", s_projects_insert, 2},
    {"projects.patch", s_projects_patch, 3},
    {"projects.delete", s_projects_delete, 2},
    {"artifacts.insert", s_artifacts_insert, 4},
};
const size_t cd_q_projects_n_writes = sizeof cd_q_projects_writes / sizeof cd_q_projects_writes[0];
