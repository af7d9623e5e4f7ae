/*  cd_q_agents: the agent directory (agents table).

    Conventions: cd_q.h. An agent row is API.md's agent: {name, kind,
    role, status, concurrency, config, template_id, node_id, restarts,
    created_at} plus updated_at. Agents are addressed by name, so their
    list pages in name order (the cursor is the last name). */
#ifndef CD_DB_Q_AGENTS_H
#define CD_DB_Q_AGENTS_H

#include "cd_q.h"

//  The writes persist runs for this family (cd_q.h): agents.insert ($1
//  body, $2 node id, $3 initial status), agents.patch ($1 name, $2 body),
//  agents.set_status ($1 name, $2 status, $3 node id or NULL),
//  agents.delete ($1 name). Each writes an agent.status event in the same
//  statement and returns the agent (delete: {name}); no row: no such agent.
extern const cd_q_write_t cd_q_agents_writes[];
extern const size_t cd_q_agents_n_writes;

//  Creates an agent from a POST /api/v1/agents body {name, kind, role?,
//  concurrency?=1, config?={}, template_id?}, status "starting", on node
//  node_id (or NULL). Returns 0 and the agent in *out (caller frees);
//  CD_EDB 23505 if the name is taken, 23514 for a bad name or kind,
//  23503 for an unknown template.
int cd_q_agents_insert(cd_db_t *db, const char *json, const char *node_id, char **out);

//  The agent called name, or CD_ENOTFOUND.
int cd_q_agents_get(cd_db_t *db, const char *name, char **out);

//  Filters of an agent list (NULL: any); they combine with AND.
typedef struct {
    const char *role;    // agents of this role name
    const char *kind;    // of this kind
    const char *status;  // in this status
    const char *node_id; // running on this node
    const char *cursor;  // next_cursor of the previous page, or NULL
    int limit;           // page size (cd_q.h)
} cd_q_agent_filter_t;

//  One page of agents in name order.
int cd_q_agents_list(cd_db_t *db, const cd_q_agent_filter_t *filter, cd_q_page_t *out);

//  Applies a PATCH body: kind, role, concurrency, config, template_id
//  (role and template_id may be set to null). Returns 0 and the agent;
//  CD_ENOTFOUND; CD_EDB for bad values.
int cd_q_agents_patch(cd_db_t *db, const char *name, const char *json, char **out);

//  Sets an agent's status, and its node unless node_id is NULL. Returns 0
//  and the agent; CD_ENOTFOUND; CD_EDB 23514 for a bad status.
int cd_q_agents_set_status(cd_db_t *db, const char *name, const char *status, const char *node_id,
                           char **out);

//  Counts one more restart of the agent. Returns 0 and the agent, or
//  CD_ENOTFOUND.
int cd_q_agents_add_restart(cd_db_t *db, const char *name, char **out);

//  Sets the status of every agent on node_id (a dead node's agents go
//  "offline"). *count (if not NULL) receives how many.
int cd_q_agents_set_node_status(cd_db_t *db, const char *node_id, const char *status,
                                int64_t *count);

//  Deletes the agent (and its team memberships). Returns 0 or
//  CD_ENOTFOUND.
int cd_q_agents_delete(cd_db_t *db, const char *name);

#endif
