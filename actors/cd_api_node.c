/*  cd_api_node: node-wide figures the HTTP layer needs from the database
    but serves outside the route table: tasks by status (/metrics), a timed
    database round trip (/health/detailed).

    Interface: cd__api_node_module (ops node.metrics, node.ping). */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_tasks.h"

#include <stdlib.h>

//  {"tasks": {"todo": n, ...}}
static int
s_metrics(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
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

//  {"ok": bool, "latency_ms": float|null}: one round trip to the database
//  on this actor's connection, timed.
static int
s_ping(cd_api_req_t *req)
{
    int64_t start = zclock_usecs();
    cd_db_t *db = cd_api_db(req);
    int64_t one = 0;
    bool ok = db && cd_db_query_int64(db, "SELECT 1", 0, NULL, &one) == 0 && one == 1;
    double ms = (double)(zclock_usecs() - start) / 1000.0;
    cd_api_reply_json(req, 200,
                      ok ? json_pack("{s:b, s:f}", "ok", 1, "latency_ms", ms)
                         : json_pack("{s:b, s:n}", "ok", 0, "latency_ms"),
                      NULL);
    return 0;
}

static const cd_api_op_t s_ops[] = {
    {"node.metrics", s_metrics},
    {"node.ping", s_ping},
};

const cd_api_module_t cd__api_node_module = {"node", s_ops, sizeof s_ops / sizeof s_ops[0], NULL,
                                             NULL};
