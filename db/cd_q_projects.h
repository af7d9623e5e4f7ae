/*  cd_q_projects: projects and their artifacts.

    Conventions: cd_q.h. Rows:
      project   {id, name, description, created_by, created_at, updated_at}
      artifact  {id, project_id, task_id, name, content_type, size, created_by, created_at}
    Artifact content crosses as base64 text (no line breaks). A project
    that still has tasks cannot be deleted (CD_EDB 23503, HTTP 409);
    deleting a project deletes its artifacts.

    Writes are single statements (cd_q_projects_writes, for persist; the
    functions below run the same SQL). The statements for a patch, a
    delete and an artifact take an owner parameter as well: NULL for any
    project, else a user id, and then another user's project is not found
    (API.md: a user sees only its own projects). The functions pass NULL. */
#ifndef CD_DB_Q_PROJECTS_H
#define CD_DB_Q_PROJECTS_H

#include "cd_q.h"

//  The writes persist runs for this family (cd_q.h, cd_q_write_t):
//    projects.insert  ($1 body, $2 created_by)
//    projects.patch   ($1 id, $2 body, $3 owner)
//    projects.delete  ($1 id, $2 owner)               answers the id
//    artifacts.insert ($1 project, $2 body, $3 created_by, $4 owner),
//                     with its artifact.created event
//  No row: no such project (or not the owner's).
extern const cd_q_write_t cd_q_projects_writes[];
extern const size_t cd_q_projects_n_writes;

//  Creates a project from {name, description?} for user created_by (or
//  CD_Q_NULL). Returns 0 and the row in *out (caller frees).
int cd_q_projects_insert(cd_db_t *db, const char *json, int64_t created_by, char **out);

//  The project, or CD_ENOTFOUND.
int cd_q_projects_get(cd_db_t *db, int64_t id, char **out);

//  One page of projects, newest first; created_by (CD_Q_NULL: any) limits
//  it to one user's.
int cd_q_projects_list(cd_db_t *db, int64_t created_by, const char *cursor, int limit,
                       cd_q_page_t *out);

//  Applies a PATCH body: name, description.
int cd_q_projects_patch(cd_db_t *db, int64_t id, const char *json, char **out);

//  Deletes a project. Returns 0; CD_ENOTFOUND; CD_EDB 23503 if it has
//  tasks.
int cd_q_projects_delete(cd_db_t *db, int64_t id);

//  GET /projects/{id}/status: {project_id, tasks: {todo, in_progress,
//  waiting_human, done, failed, cancelled}, pending_hitl, agents_busy}
//  (agents_busy: distinct agents holding a task of it in progress).
//  Returns 0 or CD_ENOTFOUND.
int cd_q_projects_status(cd_db_t *db, int64_t id, char **out);

//  Stores an artifact of project_id from {name, content_type?, content}
//  (text, stored as UTF-8) or {name, content_type?, content_base64},
//  optionally with task_id (a task of that project), and its
//  artifact.created event {artifact_id, name, content_type, size}, in one
//  statement. Returns 0 and the metadata row; CD_ENOTFOUND for an unknown
//  project; CD_EINVAL for a task_id that names no task of the project,
//  with {"invalid": {"field": "task_id", "reason"}} in *out (caller
//  frees); CD_EDB 23502 without content, 22023 for bad base64.
int cd_q_artifacts_insert(cd_db_t *db, int64_t project_id, const char *json, int64_t created_by,
                          char **out);

//  An artifact's metadata, or CD_ENOTFOUND.
int cd_q_artifacts_get(cd_db_t *db, int64_t id, char **out);

//  An artifact's content: {content_type, size, content_base64}, or
//  CD_ENOTFOUND.
int cd_q_artifacts_content(cd_db_t *db, int64_t id, char **out);

//  One page of a project's artifacts (metadata), newest first.
int cd_q_artifacts_list(cd_db_t *db, int64_t project_id, const char *cursor, int limit,
                        cd_q_page_t *out);

//  Deletes an artifact. Returns 0 or CD_ENOTFOUND.
int cd_q_artifacts_delete(cd_db_t *db, int64_t id);

#endif
