/*  cadred: the node. The one file that wires every layer together.

    Start-up, in order: configuration (flags > CADRE_* > config file), the
    data directory and its lock (one cadred per data dir), the node id, the
    database (DATABASE_URL, or the embedded PostgreSQL in <data dir>/pg),
    migrations, then the supervisor tree, then the HTTP frontend:

      root (one_for_one)
        deadletter
        persist          the batching writer every durable write goes through
        cluster          when a cluster endpoint or peers are configured
        agents (one_for_one)
          agent/<name>   one per configured agent

    SIGINT and SIGTERM are blocked in every thread and read from a signalfd
    by the main thread, so no ZeroMQ call anywhere is interrupted and the
    shutdown happens in one place: the HTTP frontend first (no new requests
    reach actors that are stopping), then the tree in reverse start order,
    then the database, then the embedded PostgreSQL, then the lock. Exit
    codes: 0 after a clean stop, 1 when the tree gave up (restart intensity
    exceeded at the root) or start-up failed, 2 for bad configuration. */
#include "cd_cluster.h"
#include "cd_config.h"
#include "cd_datadir.h"
#include "cd_db.h"
#include "cd_deadletter.h"
#include "cd_echo.h"
#include "cd_error.h"
#include "cd_http.h"
#include "cd_log.h"
#include "cd_migrate.h"
#include "cd_persist.h"
#include "cd_pgembed.h"
#include "cd_supervisor.h"

#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

extern char **environ;

#define CD_NODE_ID_FILE "node-id"

//  Everything the node owns, released in reverse order by s_node_close.
typedef struct {
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
    cd_child_spec_t root_children[4]; //  deadletter, persist, [cluster], agents
    cd_supervisor_spec_t root_spec;   //  the root supervisor
    char **agent_names;               //  "agent/<name>" (owned)
    cd_root_t *root;                  //  the running tree
    cd_http_t *http;                  //  the HTTP frontend
    int64_t started_us;               //  when main started (zclock_usecs), for uptime
} s_node_t;

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
    node->agents_spec =
        (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, node->agent_specs, config->n_agents};
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
    node->root_children[n++] =
        (cd_child_spec_t){"deadletter", &cd_deadletter_ops, NULL, CD_RESTART_PERMANENT};
    node->persist =
        (cd_persist_args_t){.conninfo = node->conninfo,
                            .tables = s_persist_tables,
                            .n_tables = sizeof s_persist_tables / sizeof s_persist_tables[0]};
    node->root_children[n++] =
        (cd_child_spec_t){"persist", &cd_persist_ops, &node->persist, CD_RESTART_PERMANENT};
    if (config->cluster_addr || config->n_peers) {
        node->cluster = (cd_cluster_args_t){config->cluster_addr, config->peers, config->n_peers,
                                            config->heartbeat_ivl_ms, config->heartbeat_timeout_ms};
        node->root_children[n++] =
            (cd_child_spec_t){"cluster", &cd_cluster_ops, &node->cluster, CD_RESTART_PERMANENT};
    }
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

//  Starts the HTTP frontend on the running tree.
static int
s_start_http(s_node_t *node, char **errmsg)
{
    static const char *const core[] = {"root", "deadletter", "persist", "agents", NULL};
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
    return cd_http_start(&opts, &node->rt, &node->http, errmsg);
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
    free(node->echo_args);
    free(node->agent_names);
    free(node->agent_specs);
    cd_datadir_unlock(&node->lock);
    zstr_free(&node->node_id);
    cd_config_destroy(&node->config);
}

//  Waits for a signal or for the tree to give up. Returns the exit code.
static int
s_run(s_node_t *node, int signal_fd)
{
    zmq_pollitem_t items[2] = {
        {NULL, signal_fd, ZMQ_POLLIN, 0},
        {zsock_resolve(cd_root_actor(node->root)), 0, ZMQ_POLLIN, 0},
    };
    while (true) {
        if (zmq_poll(items, 2, -1) < 0) {
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo info;
            if (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
                cd_log_info("node", "stopping", "{s:s}", "signal", strsignal((int)info.ssi_signo));
                return 0;
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(cd_root_actor(node->root));
            bool crashed = command && streq(command, "$CRASH");
            zstr_free(&command);
            if (crashed) {
                cd_log_error("node", "supervisor tree gave up; shutting down", NULL);
                return 1;
            }
        }
    }
}

int
main(int argc, char **argv)
{
    //  Before any thread exists: every thread inherits this mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);

    s_node_t node = {.started_us = zclock_usecs()};
    char *errmsg = NULL;
    if (cd_config_load(argc, argv, environ, &node.config, &errmsg) != 0) {
        fprintf(stderr, "cadred: %s\nTry 'cadred --help'.\n",
                errmsg ? errmsg : "bad configuration");
        free(errmsg);
        return 2;
    }
    if (node.config->help) {
        cd_config_print_help(stdout, argv[0]);
        cd_config_destroy(&node.config);
        return 0;
    }
    if (node.config->version) {
        printf("cadred %s\n", CADRE_VERSION);
        cd_config_destroy(&node.config);
        return 0;
    }
    cd_log_level_t level = CD_LOG_INFO;
    cd_log_level_parse(node.config->log_level, &level);
    cd_log_set_level(level);
    if (sodium_init() < 0) {
        fprintf(stderr, "cadred: libsodium failed to initialise\n");
        return 1;
    }

    //  One socket pair per actor pipe, one inbox each, one PUSH per route:
    //  a node with thousands of agents needs far more than czmq's 1024.
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    zsys_handler_set(NULL);
    zsys_set_max_sockets(0); //  0: as many as the process may open
    zsys_set_linger(0);

    int code = 1;
    if (cd_datadir_lock(node.config->data_dir, &node.lock, &errmsg) != 0) {
        goto fail;
    }
    node.node_id = node.config->node_id ? strdup(node.config->node_id)
                                        : s_node_id(node.config->data_dir, &errmsg);
    if (!node.node_id) {
        goto fail;
    }
    if (s_agents(&node, &errmsg) != 0) {
        code = 2;
        goto fail;
    }
    if (s_database(&node, &errmsg) != 0) {
        goto fail;
    }
    if (s_start_tree(&node, &errmsg) != 0) {
        goto fail;
    }
    if (s_start_http(&node, &errmsg) != 0) {
        goto fail;
    }
    cd_log_info("node", "node up", "{s:s, s:s, s:i, s:s, s:s}", "node_id", node.node_id, "data_dir",
                node.config->data_dir, "agents", (int)node.config->n_agents, "supervisor",
                "running", "http", cd_http_addr(node.http));
    printf("cadred %s: node %s up (data dir %s); supervisor running with %zu agent(s): ",
           CADRE_VERSION, node.node_id, node.config->data_dir, node.config->n_agents);
    for (size_t i = 0; i < node.config->n_agents; i++) {
        printf("%s%s", i ? ", " : "", node.config->agents[i].name);
    }
    printf(". HTTP on %s. Ctrl-C stops it.\n", cd_http_addr(node.http));
    fflush(stdout);

    code = s_run(&node, signal_fd);
    s_node_close(&node);
    cd_log_info("node", "stopped", "{s:i}", "exit_code", code);
    close(signal_fd);
    if (node.registry && cd_registry_hung(node.registry) > 0) {
        //  A thread stuck in agent code holds ZeroMQ sockets, and the
        //  context would wait for it forever at exit.
        _exit(code);
    }
    cd_registry_destroy(&node.registry);
    return code;

fail:
    cd_log_error("node", "start-up failed", "{s:s}", "error", errmsg ? errmsg : "unknown");
    fprintf(stderr, "cadred: %s\n", errmsg ? errmsg : "start-up failed");
    free(errmsg);
    s_node_close(&node);
    cd_registry_destroy(&node.registry);
    close(signal_fd);
    return code;
}
