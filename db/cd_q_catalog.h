/*  cd_q_catalog: templates, roles, team types (with their ordered
    roles) and teams (with their members).

    Conventions: cd_q.h. Rows, as API.md gives them:
      template   {id, name, description, body, created_at, updated_at}
      role       {id, name, description, default_template_id, created_at, updated_at}
      team type  {id, name, description, roles: [role_id, ...], created_at, updated_at}
                 (roles in pipeline order)
      team       {id, name, team_type_id, members: [{agent, role_id}], created_at, updated_at}
    Lists run newest first. Deleting a role still used by a team type or a
    team member, or a team type used by a team, fails with CD_EDB 23503
    (HTTP 409).

    Writes are single statements (cd_q_catalog_writes, for persist; the
    functions below run the same SQL). A write whose body names a row that
    does not exist (a template, role, team type or agent) writes nothing:
    the statement answers {"invalid": {"field": f, "reason": r}} instead of
    the row, and the functions return CD_EINVAL with that object in *out
    (caller frees). A write on an id that does not exist answers no row
    (CD_ENOTFOUND), before any INVALID. */
#ifndef CD_DB_Q_CATALOG_H
#define CD_DB_Q_CATALOG_H

#include "cd_q.h"

//  The writes persist runs for this family (cd_q.h, cd_q_write_t).
extern const cd_q_write_t cd_q_catalog_writes[];
extern const size_t cd_q_catalog_n_writes;

//  --- templates --------------------------------------------------------

//  Creates a template from {name, description?, body}. Returns 0 and the
//  row in *out (caller frees); CD_EDB 23505 if the name is taken.
int cd_q_templates_insert(cd_db_t *db, const char *json, char **out);
int cd_q_templates_get(cd_db_t *db, int64_t id, char **out);
int cd_q_templates_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);
//  Applies a PATCH body: name, description, body.
int cd_q_templates_patch(cd_db_t *db, int64_t id, const char *json, char **out);
//  Returns 0 or CD_ENOTFOUND (roles and agents using it lose the link).
int cd_q_templates_delete(cd_db_t *db, int64_t id);

//  --- roles ------------------------------------------------------------

//  Creates a role from {name, description?, default_template_id?}.
//  CD_EINVAL (field default_template_id) for an unknown template.
int cd_q_roles_insert(cd_db_t *db, const char *json, char **out);
//  By id, or (id CD_Q_NULL) by name.
int cd_q_roles_get(cd_db_t *db, int64_t id, const char *name, char **out);
int cd_q_roles_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);
//  Applies a PATCH body: name, description, default_template_id.
int cd_q_roles_patch(cd_db_t *db, int64_t id, const char *json, char **out);
int cd_q_roles_delete(cd_db_t *db, int64_t id);

//  --- team types -------------------------------------------------------

//  Creates a team type from {name, description?, roles: [role_id, ...]},
//  the roles in pipeline order, in one statement. CD_EINVAL (field roles)
//  for an unknown role.
int cd_q_team_types_insert(cd_db_t *db, const char *json, char **out);
int cd_q_team_types_get(cd_db_t *db, int64_t id, char **out);
int cd_q_team_types_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);
//  Applies a PATCH body: name, description, roles (replaces the list).
int cd_q_team_types_patch(cd_db_t *db, int64_t id, const char *json, char **out);
int cd_q_team_types_delete(cd_db_t *db, int64_t id);

//  --- teams ------------------------------------------------------------

//  Creates a team from {name, team_type_id, members?: [{agent, role_id}]}
//  in one statement. CD_EINVAL (field team_type_id or members) for an
//  unknown type, agent or role, or an agent listed twice; CD_EDB 23505
//  for a taken name.
int cd_q_teams_insert(cd_db_t *db, const char *json, char **out);
int cd_q_teams_get(cd_db_t *db, int64_t id, char **out);
int cd_q_teams_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);
//  Applies a PATCH body: name, team_type_id, members (replaces the list).
int cd_q_teams_patch(cd_db_t *db, int64_t id, const char *json, char **out);
int cd_q_teams_delete(cd_db_t *db, int64_t id);

//  Adds agent to team with role_id, or changes its role if it is a
//  member already. Returns 0 and the team; CD_ENOTFOUND for an unknown
//  team; CD_EINVAL (field agent or role_id) for an unknown agent or role.
int cd_q_teams_member_add(cd_db_t *db, int64_t team_id, const char *agent, int64_t role_id,
                          char **out);

//  Removes agent from team. Returns 0 or CD_ENOTFOUND.
int cd_q_teams_member_remove(cd_db_t *db, int64_t team_id, const char *agent);

#endif
