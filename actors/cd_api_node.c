/*  cd_api_node: node-wide figures the HTTP layer needs from the database
    but serves outside the route table (/metrics): tasks by status.

    Interface: cd__api_node_module (op node.metrics). */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_tasks.h"

#include <stdlib.h>

//  {"tasks": {"todo": n, ...}}
static int
s_metrics(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_db(req);
    if (!db) {
        cd_api_fail(req, CD_ECONN, NULL);
        return 0;
    }
    char *counts = NULL;
    int rc = cd_q_tasks_counts(db, CD_Q_NULL, &counts);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *tasks = json_loads(counts, 0, NULL);
    free(counts);
    cd_api_reply_json(req, 200, json_pack("{s:o}", "tasks", tasks ? tasks : json_object()), NULL);
    return 0;
}

static const cd_api_op_t s_ops[] = {
    {"node.metrics", s_metrics},
};

const cd_api_module_t cd__api_node_module = {"node", s_ops, 1, NULL, NULL};
