/*  cd_node: assembles a node from every layer (see cd_node.h).

    Interface: cd_node_start, cd_node_stop, cd_node_root, cd_node_http_addr,
    cd_node_id, cd_node_config. */
#include "cd_node.h"

#include "cd_agents.h"
#include "cd_api.h"
#include "cd_auditlog.h"
#include "cd_authboot.h"
#include "cd_bus.h"
#include "cd_cluster.h"
#include "cd_config.h"
#include "cd_curve.h"
#include "cd_datadir.h"
#include "cd_db.h"
#include "cd_deadletter.h"
#include "cd_echo.h"
#include "cd_error.h"
#include "cd_hasher.h"
#include "cd_http.h"
#include "cd_log.h"
#include "cd_migrate.h"
#include "cd_orchestrator.h"
#include "cd_persist.h"
#include "cd_stats.h"
#include "cd_pgembed.h"
#include "cd_port.h"
#include "cd_scheduler.h"
#include "cd_supervisor.h"
#include "cd_vault_actor.h"

#include <czmq.h>
#include <jansson.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CD_NODE_ID_FILE "node-id"

//  Everything the node owns, released in reverse order by cd_node_stop.
struct cd_node {
    cd_config_t *config;              //  configuration
    cd_datadir_lock_t *lock;          //  the data dir lock
    char *node_id;                    //  this node's id
    cd_pgembed_t *pg;                 //  embedded PostgreSQL, if used
    cd_db_t *db;                      //  start-up connection (migrations)
    cd_registry_t *registry;          //  actor directory
    cd_runtime_t rt;                  //  runtime settings
    cd_cluster_args_t cluster;        //  cluster link settings
    cd_echo_args_t **echo_args;       //  per agent, parallel to config->agents
    cd_child_spec_t *agent_specs;     //  children of `agents`
    cd_supervisor_spec_t agents_spec; //  the agents supervisor
    const char *conninfo;             //  the database (borrowed from config or pg)
    cd_persist_args_t persist;        //  persist actor settings
    cd_bus_args_t bus;                //  event bus settings
    cd_agents_env_t agents_env;       //  what agents need from the node (factory_arg)
    cd_api_args_t api;                //  API actor settings
    cd_stats_args_t stats;            //  stats snapshot writer settings
    cd_orchestrator_args_t orch;      //  orchestrator settings
    cd_scheduler_args_t scheduler;    //  scheduler settings
    char **api_names;                 //  "api/<i>" (owned)
    cd_authboot_t auth;               //  keys (wiped at stop), the bans at start
    cd_auditlog_args_t audit;         //  audit chain writer settings
    char **auth_names;                //  "auth/<i>" (owned)
    cd_child_spec_t *root_children;   //  deadletter, persist, bus, vault, audit, auth/*, api/*,
                                      //  stats, [cluster], orchestrator, scheduler, agents
    cd_supervisor_spec_t root_spec;   //  the root supervisor
    char **agent_names;               //  "agent/<name>" (owned)
    cd_root_t *root;                  //  the running tree
    cd_http_t *http;                  //  the HTTP frontend
    int64_t started_us;               //  when main started (zclock_usecs), for uptime
};

typedef struct cd_node s_node_t;

//  Reads <data dir>/node-id, or creates it with a fresh id.
static char *
s_node_id(const char *data_dir, char **errmsg)
{
    char *path = zsys_sprintf("%s/%s", data_dir, CD_NODE_ID_FILE);
    char *id = NULL;
    FILE *file = fopen(path, "r");
    if (file) {
        char line[80] = "";
        if (fgets(line, sizeof line, file)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (*line) {
                id = strdup(line);
            }
        }
        fclose(file);
    }
    if (!id) {
        uint8_t bytes[5];
        randombytes_buf(bytes, sizeof bytes);
        char hex[11];
        sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
        id = zsys_sprintf("n%s", hex);
        file = fopen(path, "w");
        if (!file || fprintf(file, "%s\n", id) < 0) {
            *errmsg = zsys_sprintf("cannot write %s: %s", path, strerror(errno));
            zstr_free(&id);
        }
        if (file) {
            fclose(file);
        }
    }
    zstr_free(&path);
    return id;
}

//  Builds every agent's child spec. Only the echo kind exists so far.
static int
s_agents(s_node_t *node, char **errmsg)
{
    const cd_config_t *config = node->config;
    node->echo_args = (cd_echo_args_t **)zmalloc((config->n_agents + 1) * sizeof(void *));
    node->agent_specs =
        (cd_child_spec_t *)zmalloc((config->n_agents + 1) * sizeof(cd_child_spec_t));
    node->agent_names = (char **)zmalloc((config->n_agents + 1) * sizeof(char *));
    for (size_t i = 0; i < config->n_agents; i++) {
        const cd_config_agent_t *agent = &config->agents[i];
        if (!streq(agent->kind, "echo")) {
            *errmsg = zsys_sprintf("agent %s: kind '%s' is not available in this build (available: "
                                   "echo)",
                                   agent->name, agent->kind);
            return CD_ECONFIG;
        }
        int rc = cd_echo_args_new(agent, &node->echo_args[i], errmsg);
        if (rc != 0) {
            return rc;
        }
        node->agent_names[i] = zsys_sprintf("agent/%s", agent->name);
        node->agent_specs[i] = (cd_child_spec_t){node->agent_names[i], &cd_echo_ops,
                                                 node->echo_args[i], CD_RESTART_PERMANENT};
    }
    //  Agents created over the API are started by message through the
    //  factory; those of the config file are children from the start.
    node->agents_spec = (cd_supervisor_spec_t){.strategy = CD_ONE_FOR_ONE,
                                               .max_restarts = -1,
                                               .children = node->agent_specs,
                                               .n_children = config->n_agents,
                                               .factory = &cd_agents_factory,
                                               .factory_arg = &node->agents_env,
                                               .prefix = CD_AGENTS_PREFIX};
    return 0;
}

static int
s_database(s_node_t *node, char **errmsg)
{
    const cd_config_t *config = node->config;
    const char *conninfo = config->database_url;
    if (!conninfo) {
        char *dir = zsys_sprintf("%s/pg", config->data_dir);
        cd_pgembed_opts_t opts = {.dir = dir, .dbname = "cadre", .start_timeout_s = 120};
        cd_log_info("node", "starting embedded PostgreSQL", "{s:s}", "dir", dir);
        int rc = cd_pgembed_start(&opts, &node->pg, errmsg);
        zstr_free(&dir);
        if (rc != 0) {
            return rc;
        }
        conninfo = cd_pgembed_conninfo(node->pg);
    }
    node->conninfo = conninfo;
    int rc = cd_db_connect(conninfo, &node->db, errmsg);
    if (rc != 0) {
        return rc;
    }
    int applied = 0;
    rc = cd_migrate_run(node->db, &applied, errmsg);
    if (rc != 0) {
        return rc;
    }
    cd_log_info("node", "database ready", "{s:s, s:i, s:i}", "database",
                node->pg ? "embedded" : "DATABASE_URL", "migrations_applied", applied,
                "schema_version", cd_migrate_latest());
    return 0;
}

//  What the persist actor may write: the append-only histories, by COPY.
static const char *const s_task_event_columns[] = {"task_id",  "kind",   "from_agent",
                                                   "to_agent", "status", "payload"};
static const char *const s_event_columns[] = {"type", "project_id", "task_id", "agent", "data"};
static const cd_persist_table_t s_persist_tables[] = {
    {"task_events", "task_events", s_task_event_columns, 6},
    {"events", "events", s_event_columns, 5},
};

static int
s_start_tree(s_node_t *node, char **errmsg)
{
    const cd_config_t *config = node->config;
    node->registry = cd_registry_new(node->node_id);
    node->rt = (cd_runtime_t){
        .registry = node->registry,
        .queue_hwm = config->queue_hwm,
        .send_timeout_ms = config->send_timeout_ms,
        .heartbeat_ivl_ms = config->heartbeat_ivl_ms,
        .heartbeat_timeout_ms = config->heartbeat_timeout_ms,
        .stop_timeout_ms = config->stop_timeout_ms,
        .restart_max = config->restart_max,
        .restart_window_s = config->restart_window_s,
    };
    size_t n = 0;
    node->root_children = (cd_child_spec_t *)zmalloc(
        ((size_t)config->api_workers + (size_t)config->auth_workers + 10) *
        sizeof(cd_child_spec_t));
    node->root_children[n++] =
        (cd_child_spec_t){"deadletter", &cd_deadletter_ops, NULL, CD_RESTART_PERMANENT};
    size_t n_stmts = 0;
    const cd_persist_stmt_t *stmts = cd_api_stmts(&n_stmts);
    node->persist =
        (cd_persist_args_t){.conninfo = node->conninfo,
                            .stmts = stmts,
                            .n_stmts = n_stmts,
                            .tables = s_persist_tables,
                            .n_tables = sizeof s_persist_tables / sizeof s_persist_tables[0],
                            .batch_max = config->persist_batch_max,
                            .batch_wait_ms = config->persist_batch_wait_ms,
                            .queue_limit = config->persist_queue_limit,
                            .wait_timeout_ms = config->persist_wait_timeout_ms,
                            .events_retention_s = config->events_retention_days * 86400,
                            .stats_retention_s = config->stats_retention_days * 86400,
                            .notify = "bus"};
    node->root_children[n++] =
        (cd_child_spec_t){"persist", &cd_persist_ops, &node->persist, CD_RESTART_PERMANENT};
    node->bus = (cd_bus_args_t){.conninfo = node->conninfo};
    node->agents_env = (cd_agents_env_t){.conninfo = node->conninfo,
                                         .persist = "persist",
                                         .bus = "bus",
                                         .rates = cd_llm_rates_new()};
    node->root_children[n++] =
        (cd_child_spec_t){"bus", &cd_bus_ops, &node->bus, CD_RESTART_PERMANENT};
    //  Locked at every start; stopped (and wiped) after the api actors and
    //  agents that ask it, which stop first (children stop in reverse).
    node->root_children[n++] =
        (cd_child_spec_t){CD_VAULT_ACTOR_NAME, &cd_vault_actor_ops, NULL, CD_RESTART_PERMANENT};
    node->audit = (cd_auditlog_args_t){.conninfo = node->conninfo, .persist = "persist"};
    node->root_children[n++] =
        (cd_child_spec_t){CD_AUDITLOG_NAME, &cd_auditlog_ops, &node->audit, CD_RESTART_PERMANENT};
    node->auth_names = (char **)zmalloc(((size_t)config->auth_workers + 1) * sizeof(char *));
    for (int i = 0; i < config->auth_workers; i++) {
        node->auth_names[i] = zsys_sprintf("%s/%d", CD_HASHER_NAME, i);
        node->root_children[n++] =
            (cd_child_spec_t){node->auth_names[i], &cd_hasher_ops, NULL, CD_RESTART_PERMANENT};
    }
    node->api = (cd_api_args_t){.conninfo = node->conninfo,
                                .node_id = node->node_id,
                                .persist = "persist",
                                .agents = "agents",
                                .bus = "bus",
                                .orchestrator = CD_ORCHESTRATOR_NAME,
                                .started_us = node->started_us,
                                .jwt_key = &node->auth.jwt,
                                .token_key = node->auth.token_key,
                                .auth_workers = config->auth_workers,
                                .login_max_failures = config->login_max_failures,
                                .login_window_s = config->login_window_s,
                                .audit = CD_AUDITLOG_NAME};
    node->api_names = (char **)zmalloc(((size_t)config->api_workers + 1) * sizeof(char *));
    for (int i = 0; i < config->api_workers; i++) {
        node->api_names[i] = zsys_sprintf("%s/%d", CD_API_NAME, i);
        node->root_children[n++] =
            (cd_child_spec_t){node->api_names[i], &cd_api_ops, &node->api, CD_RESTART_PERMANENT};
    }
    node->stats = (cd_stats_args_t){
        .persist = "persist", .node_id = node->node_id, .started_us = node->started_us};
    node->root_children[n++] =
        (cd_child_spec_t){CD_STATS_NAME, &cd_stats_ops, &node->stats, CD_RESTART_PERMANENT};
    if (config->cluster_addr || config->n_peers) {
        node->cluster = (cd_cluster_args_t){.bind = config->cluster_addr,
                                            .peers = config->peers,
                                            .n_peers = config->n_peers,
                                            .heartbeat_ivl_ms = config->heartbeat_ivl_ms,
                                            .heartbeat_timeout_ms = config->heartbeat_timeout_ms,
                                            .curve_secret_key = config->curve_secret_key,
                                            .curve_allowed_keys = config->curve_allowed_keys,
                                            .allow_insecure = config->allow_insecure_tcp};
        node->root_children[n++] =
            (cd_child_spec_t){"cluster", &cd_cluster_ops, &node->cluster, CD_RESTART_PERMANENT};
    }
    //  Before the agents: at a stop the agents go first, and the
    //  orchestrator's recovery at start-up runs before any agent could
    //  take a step.
    node->orch = (cd_orchestrator_args_t){.conninfo = node->conninfo,
                                          .node_id = node->node_id,
                                          .persist = "persist",
                                          .lease_ms = config->orch_lease_ms,
                                          .scan_ms = config->orch_scan_ms,
                                          .backoff_ms = config->orch_backoff_ms,
                                          .backoff_max_ms = config->orch_backoff_max_ms,
                                          .hitl_check_ms = config->orch_hitl_check_ms};
    node->root_children[n++] = (cd_child_spec_t){CD_ORCHESTRATOR_NAME, &cd_orchestrator_ops,
                                                 &node->orch, CD_RESTART_PERMANENT};
    node->scheduler = (cd_scheduler_args_t){.conninfo = node->conninfo,
                                            .persist = "persist",
                                            .orchestrator = CD_ORCHESTRATOR_NAME,
                                            .tick_ms = config->scheduler_tick_ms};
    node->root_children[n++] = (cd_child_spec_t){CD_SCHEDULER_NAME, &cd_scheduler_ops,
                                                 &node->scheduler, CD_RESTART_PERMANENT};
    node->root_children[n++] =
        (cd_child_spec_t){"agents", &cd_supervisor_ops, &node->agents_spec, CD_RESTART_PERMANENT};
    node->root_spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, node->root_children, n};
    char why[256] = "";
    node->root = cd_root_new(&node->rt, "root", &node->root_spec, why, sizeof why);
    if (!node->root) {
        *errmsg = zsys_sprintf("supervisor tree failed to start: %s", why);
        return CD_ECRASH;
    }
    return 0;
}

//  The agent directory and the running agents agree: the config file's
//  agents are listed in the agents table (as this node's), and the
//  table's local agents of this node (or of none) that are not stopped are
//  started under `agents` through its factory, by message as the API
//  does. Bootstrap writes on the start-up connection, before any request.
static int
s_sync_agents(s_node_t *node, char **errmsg)
{
    const cd_config_t *config = node->config;
    for (size_t i = 0; i < config->n_agents; i++) {
        const cd_config_agent_t *agent = &config->agents[i];
        json_t *options = json_object();
        for (size_t k = 0; k < agent->n_options; k++) {
            json_object_set_new(options, agent->options[k].key,
                                json_string(agent->options[k].value));
        }
        char *text = json_dumps(options, JSON_COMPACT);
        json_decref(options);
        char concurrency[16];
        snprintf(concurrency, sizeof concurrency, "%d", agent->concurrency);
        const char *params[] = {agent->name, agent->kind, agent->role,
                                concurrency, text,        node->node_id};
        int rc = cd_db_exec_params(
            node->db,
            "INSERT INTO agents (name, kind, role, concurrency, config, node_id, status)"
            " VALUES ($1, $2, $3, $4::int, $5::jsonb, $6, 'idle') ON CONFLICT (name) DO UPDATE"
            " SET kind = EXCLUDED.kind, role = EXCLUDED.role, concurrency = EXCLUDED.concurrency,"
            " config = EXCLUDED.config, node_id = EXCLUDED.node_id, status = 'idle'",
            6, params, NULL);
        free(text);
        if (rc != 0) {
            *errmsg = zsys_sprintf("agent %s: cannot record it: %s", agent->name,
                                   cd_db_error(node->db) && cd_db_error(node->db)->message
                                       ? cd_db_error(node->db)->message
                                       : cd_strerror(rc));
            return rc;
        }
    }
    cd_db_rows_t *rows = NULL;
    const char *params[] = {node->node_id};
    int rc = cd_db_query(node->db,
                         "SELECT name, kind, config::text, concurrency FROM agents"
                         " WHERE kind IN ('echo', 'llm', 'exec')"
                         " AND (node_id = $1 OR node_id IS NULL) AND status <> 'stopped'"
                         " ORDER BY name",
                         1, params, &rows);
    if (rc != 0) {
        *errmsg = zsys_sprintf("cannot read the agents table: %s", cd_strerror(rc));
        return rc;
    }
    cd_port_t *port = cd_port_new(&node->rt, "node");
    cd_pack_t *pack = cd_pack_new();
    int started = 0, failed = 0;
    for (int r = 0; r < cd_db_rows_count(rows); r++) {
        const char *name = cd_db_rows_get(rows, r, 0);
        bool configured = false;
        for (size_t i = 0; i < config->n_agents && !configured; i++) {
            configured = streq(config->agents[i].name, name);
        }
        if (configured) {
            continue;
        }
        cd_pack_reset(pack);
        int64_t concurrency = 1;
        cd_db_rows_int64(rows, r, 3, &concurrency);
        cd_pack_map(pack, 4);
        cd_pack_cstr(pack, "name");
        cd_pack_cstr(pack, name);
        cd_pack_cstr(pack, "concurrency");
        cd_pack_int(pack, concurrency);
        cd_pack_cstr(pack, "kind");
        cd_pack_cstr(pack, cd_db_rows_get(rows, r, 1));
        cd_pack_cstr(pack, "config");
        cd_pack_cstr(pack, cd_db_rows_get(rows, r, 2));
        cd_envelope_t env;
        cd_mailer_envelope_init(cd_port_mailer(port), &env, CD_KIND_CONTROL, "agents");
        env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("start")};
        env.n_headers = 1;
        env.payload_type = CD_PAYLOAD_MAP;
        env.payload = cd_pack_bytes(pack);
        bool ok = cd_port_send(port, &env) == 0;
        cd_envelope_t reply;
        ok = ok && cd_port_recv(port, 10000, &reply) == 0 && reply.kind == CD_KIND_RESULT;
        const char *status = ok ? "idle" : "crashed";
        const char *upd[] = {name, status, node->node_id};
        cd_db_exec_params(node->db, "UPDATE agents SET status = $2, node_id = $3 WHERE name = $1",
                          3, upd, NULL);
        if (ok) {
            started++;
        } else {
            failed++;
            cd_log_error("node", "agent did not start", "{s:s}", "agent", name);
        }
    }
    cd_pack_destroy(&pack);
    cd_port_destroy(&port);
    cd_db_rows_destroy(&rows);
    if (started || failed) {
        cd_log_info("node", "agents from the database", "{s:i, s:i}", "started", started, "failed",
                    failed);
    }
    return 0;
}

//  Starts the HTTP frontend on the running tree.
static int
s_start_http(s_node_t *node, char **errmsg)
{
    static const char *const core[] = {"root",         "deadletter", "persist", "bus",
                                       "orchestrator", "scheduler",  "agents",  NULL};
    const cd_config_t *config = node->config;
    cd_http_opts_t opts;
    cd_http_opts_defaults(&opts);
    opts.addr = config->http_addr;
    opts.tls_cert = config->tls_cert;
    opts.tls_key = config->tls_key;
    opts.max_body_bytes = (size_t)config->http_max_body_bytes;
    opts.max_header_bytes = (size_t)config->http_max_header_bytes;
    opts.max_streams = config->http_max_streams;
    opts.request_timeout_ms = config->http_request_timeout_ms;
    opts.idle_timeout_ms = config->http_idle_timeout_ms;
    opts.max_requests_per_conn_s = config->http_max_requests_per_conn_s;
    opts.started_us = node->started_us;
    opts.core_actors = core;
    opts.api_actors = config->api_workers;
    opts.auth_jwt_key = node->auth.jwt_secret;
    opts.auth_token_key = node->auth.token_key;
    opts.auth_bans = node->auth.bans;
    return cd_http_start(&opts, &node->rt, &node->http, errmsg);
}

//  Node traffic on a non-loopback tcp endpoint travels in clear without
//  CurveZMQ: refused before anything starts, unless explicitly allowed.
//  (The cluster actor enforces it too; this names the option.)
static int
s_check_tcp_security(const cd_config_t *config, char **errmsg)
{
    if (config->curve_secret_key || config->allow_insecure_tcp) {
        return 0;
    }
    const char *what = NULL, *endpoint = NULL;
    if (config->cluster_addr && !cd_curve_endpoint_is_loopback(config->cluster_addr)) {
        what = "--cluster-addr";
        endpoint = config->cluster_addr;
    } else if (config->worker_addr && !cd_curve_endpoint_is_loopback(config->worker_addr)) {
        what = "--worker-addr";
        endpoint = config->worker_addr;
    }
    for (size_t i = 0; !what && i < config->n_peers; i++) {
        if (!cd_curve_endpoint_is_loopback(config->peers[i].endpoint)) {
            what = "--peer";
            endpoint = config->peers[i].endpoint;
        }
    }
    if (what) {
        *errmsg = zsys_sprintf("%s %s is not a loopback address and CurveZMQ is off: node "
                               "traffic would cross the network in clear. Configure "
                               "--curve-secret-key (see `cadred keygen`), or pass "
                               "--allow-insecure-tcp",
                               what, endpoint);
        return CD_ECONFIG;
    }
    return 0;
}

//  Releases what the node holds, in reverse order of acquisition.
static void
s_node_close(s_node_t *node)
{
    if (node->http && cd_http_stop(&node->http) != 0) {
        cd_log_error("node", "the HTTP frontend did not stop in time", NULL);
    }
    if (node->root && cd_root_destroy(&node->root) != 0) {
        cd_log_error("node", "some actors did not stop in time", NULL);
    }
    cd_llm_rates_destroy(&node->agents_env.rates);
    cd_db_close(&node->db);
    if (node->pg) {
        cd_log_info("node", "stopping embedded PostgreSQL", NULL);
        cd_pgembed_stop(&node->pg);
    }
    for (size_t i = 0; node->config && i < node->config->n_agents; i++) {
        if (node->echo_args) {
            cd_echo_args_destroy(&node->echo_args[i]);
        }
        if (node->agent_names) {
            zstr_free(&node->agent_names[i]);
        }
    }
    for (int i = 0; node->api_names && node->api_names[i]; i++) {
        zstr_free(&node->api_names[i]);
    }
    free(node->api_names);
    for (int i = 0; node->auth_names && node->auth_names[i]; i++) {
        zstr_free(&node->auth_names[i]);
    }
    free(node->auth_names);
    cd_authboot_fini(&node->auth);
    free(node->root_children);
    free(node->echo_args);
    free(node->agent_names);
    free(node->agent_specs);
    cd_datadir_unlock(&node->lock);
    zstr_free(&node->node_id);
    cd_config_destroy(&node->config);
}

int
cd_node_start(cd_config_t **config_p, int64_t started_us, cd_node_t **out, char **errmsg)
{
    *out = NULL;
    s_node_t *node = (s_node_t *)zmalloc(sizeof *node);
    node->config = *config_p;
    *config_p = NULL;
    node->started_us = started_us;
    int rc = s_check_tcp_security(node->config, errmsg);
    if (rc == 0) {
        rc = cd_datadir_lock(node->config->data_dir, &node->lock, errmsg);
    }
    if (rc == 0) {
        node->node_id = node->config->node_id ? strdup(node->config->node_id)
                                              : s_node_id(node->config->data_dir, errmsg);
        rc = node->node_id ? 0 : CD_EIO;
    }
    if (rc == 0) {
        rc = s_agents(node, errmsg);
    }
    if (rc == 0) {
        rc = s_database(node, errmsg);
    }
    if (rc == 0) {
        rc = cd_authboot_run(node->db, node->config->data_dir, node->config->admin_password,
                             &node->auth, errmsg);
    }
    if (rc == 0) {
        rc = s_start_tree(node, errmsg);
    }
    if (rc == 0) {
        rc = s_sync_agents(node, errmsg);
    }
    if (rc == 0) {
        rc = s_start_http(node, errmsg);
    }
    if (rc != 0) {
        cd_node_stop(&node);
        return rc;
    }
    *out = node;
    return 0;
}

bool
cd_node_stop(cd_node_t **self_p)
{
    if (!self_p || !*self_p) {
        return false;
    }
    s_node_t *node = *self_p;
    *self_p = NULL;
    s_node_close(node);
    bool hung = node->registry && cd_registry_hung(node->registry) > 0;
    if (!hung) {
        cd_registry_destroy(&node->registry);
    }
    free(node);
    return hung;
}

zactor_t *
cd_node_root(cd_node_t *self)
{
    return cd_root_actor(self->root);
}

const char *
cd_node_http_addr(cd_node_t *self)
{
    return cd_http_addr(self->http);
}

const char *
cd_node_id(cd_node_t *self)
{
    return self->node_id;
}

const cd_config_t *
cd_node_config(cd_node_t *self)
{
    return self->config;
}
