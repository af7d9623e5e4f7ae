/*  cd_config: the node's configuration.

    Four sources, each overriding the one before:

      defaults  <  config file  <  environment (CADRE_*)  <  command-line flags

    The config file is optional, in czmq's ZPL format (read with zconfig); its
    path comes from --config or CADRE_CONFIG. Every option is described once,
    in a table inside cd_config.c (flag, environment variable, file key, type,
    default, range, help), and that table drives parsing, validation and
    --help alike, so they cannot drift. A typical file:

        node
            id = n1
            data_dir = /var/lib/cadre
            log_level = info
        http
            addr = 0.0.0.0:8080
            max_body_bytes = 1048576
        persist
            batch_max = 500
            batch_wait_ms = 5
            events_retention_days = 30
        cluster
            addr = tcp://0.0.0.0:7000
            peers
                n2 = "<n2's public key>@tcp://10.0.0.2:7000"
        curve
            secret_key = "<this node's secret key, from cadred keygen>"
        agents
            coder
                kind = echo
                role = coder
                concurrency = 2
                config
                    sleep_ms = 0
                    handoff_to = reviewer

    A peer is ID=tcp://HOST:PORT, or ID=KEY@tcp://HOST:PORT with its
    CurveZMQ public key. Z85 keys may hold '#', which starts a comment in
    ZPL: quote them in the file. With a secret key every peer needs its
    key; keys without a secret key are an error. Whether an endpoint may be
    non-loopback without CurveZMQ is decided at start-up (cd_node), not
    here.

    Lists (peers, agents) take precedence as whole lists: --peer/--agent flags
    replace CADRE_PEERS/CADRE_AGENTS, which replace the file's. With no agent
    configured anywhere the node gets one agent `echo` of kind `echo`.

    Rules worth knowing:
    - An environment variable set to the empty string counts as unset (so
      scripts can write CADRE_TLS_CERT=${CERT:-}); an empty flag or file value
      is an error.
    - Unknown flags and unknown or duplicated config-file keys are errors, so
      typos are never silently ignored. Unknown CADRE_* variables are not (the
      environment is shared with other tools).
    - --help/-h and --version only set `help`/`version`: the library never
      exits or prints. When either is set the file and environment are not
      read and values are not checked, so help works with a broken setup;
      malformed flags (unknown, missing value) are still errors.
    - Secrets (admin password, CURVE secret key) are never echoed: not in
      --help, not in error messages. cd_config_destroy wipes them.

    Not thread-aware: load once in main() and treat the result as read-only
    (it may then be shared between threads as an immutable snapshot). */
#ifndef CD_ENGINE_CONFIG_H
#define CD_ENGINE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CD_CONFIG_NAME_MAX 64          //  node id, agent name, kind, role: 1..64 of [a-z0-9_-]
#define CD_CONFIG_VALUE_MAX 65536      //  any one value, in bytes
#define CD_CONFIG_FILE_MAX (1u << 20)  //  the config file, in bytes
#define CD_CONFIG_CONCURRENCY_MAX 1024 //  an agent's concurrency

//  One `key = value` of an agent's `config` section.
typedef struct {
    char *key;   //  option name as written in the file
    char *value; //  its value, "" when written without one
} cd_config_kv_t;

typedef struct {
    char *name;              //  unique among agents, [a-z0-9_-]{1,64}
    char *kind;              //  echo, llm, exec, remote (only checked as a name here)
    char *role;              //  NULL if none
    int concurrency;         //  1..CD_CONFIG_CONCURRENCY_MAX, default 1
    cd_config_kv_t *options; //  the agent's `config` section, in file order
    size_t n_options;        //  entries in options
} cd_config_agent_t;

typedef struct {
    char *node_id;    //  the peer's node id
    char *endpoint;   //  tcp://host:port where its cluster link listens
    char *public_key; //  its CurveZMQ public key (Z85), NULL if not given
} cd_config_peer_t;

//  Strings are NULL when unset. Everything is owned by the config.
typedef struct cd_config {
    char *data_dir;            //  embedded PostgreSQL, keys, admin-password; "./var"
    char *http_addr;           //  host:port or [v6]:port (port 0: any); "127.0.0.1:8080"
    char *database_url;        //  NULL: run the embedded PostgreSQL
    char *admin_password;      //  secret
    char *log_level;           //  debug, info, warn, error or off (canonical); "info"
    char *node_id;             //  NULL: the node generates one and keeps it in data_dir
    char *tls_cert;            //  PEM file; set together with tls_key or not at all
    char *tls_key;             //  PEM file
    char *worker_addr;         //  tcp://host:port for external workers
    char *cluster_addr;        //  tcp://host:port where the cluster link binds
    char *curve_secret_key;    //  secret; a Z85 key (engine/cd_curve.h)
    char *curve_allowed_keys;  //  Z85 public keys allowed to connect, comma-separated
    bool allow_insecure_tcp;   //  non-loopback tcp without CurveZMQ allowed; false
    cd_config_peer_t *peers;   //  other nodes of the cluster
    size_t n_peers;            //  entries in peers
    int queue_hwm;             //  messages per actor queue, 1..10000000
    int api_workers;           //  REST API actors, 1..64; 2
    int auth_workers;          //  password hashing actors, 1..16; 2
    int login_max_failures;    //  failed logins that lock out, 1..1000; 5
    int login_window_s;        //  ... within this window, 1..86400; 900
    int send_timeout_ms;       //  0..600000
    int heartbeat_ivl_ms;      //  10..600000
    int heartbeat_timeout_ms;  //  > heartbeat_ivl_ms, up to 3600000
    int restart_max;           //  restart intensity R, 0..1000
    int restart_window_s;      //  restart period T, 1..86400
    int stop_timeout_ms;       //  100..600000
    int http_max_body_bytes;   //  request body limit, 1..1 GiB; 1 MiB
    int http_max_header_bytes; //  request head limit, 1024..1 MiB; 16 KiB
    int http_max_streams;      //  requests in progress per connection, 1..100; 100
    int http_request_timeout_ms; //  request head, and an actor's answer, 1..600000; 10000
    int http_idle_timeout_ms;  //  idle HTTP/2 connections, 1..3600000; 30000
    int http_max_requests_per_conn_s; //  before 429, 0 (unlimited)..1000000; 0
    int persist_batch_max;     //  write requests per transaction, 1..5000; 500
    int persist_batch_wait_ms; //  longest a request waits for its batch, 1..1000; 5
    int persist_queue_limit;   //  requests waiting at most, >= batch max, up to 1000000; 20000
    int persist_wait_timeout_ms; //  wait for the database, > batch wait, 100..3600000; 10000
    int events_retention_days; //  events kept, 0 (all)..3650; 30
    int stats_retention_days;  //  stats history kept, 0 (all)..3650; 30
    int orch_lease_ms;         //  task lease length, 300..3600000; 30000
    int orch_scan_ms;          //  claim at least this often, 10..60000; 250
    int orch_backoff_ms;       //  first retry delay, 1..3600000; 1000
    int orch_backoff_max_ms;   //  longest retry delay, 1..86400000; 60000
    int orch_hitl_check_ms;    //  HITL deadline pass, 10..600000; 1000
    int scheduler_tick_ms;     //  due schedules read, 10..60000; 1000
    cd_config_agent_t *agents; //  at least one after a successful load
    size_t n_agents;           //  entries in agents
    char *config_path;         //  the file that was read, NULL if none
    bool help;                 //  --help or -h was given
    bool version;              //  --version was given
    char **args;               //  positional arguments (a subcommand), in order
    size_t n_args;             //  entries in args
} cd_config_t;

//  Loads the configuration: defaults < file < env < argv. argv[0] is the
//  program name and is skipped. `env` is an environ-style NULL-terminated
//  array (main passes `environ`; tests pass their own, so the real
//  environment is never read here); NULL means an empty environment.
//  On success returns 0 and sets *out; caller owns *out (cd_config_destroy).
//  On a bad value returns CD_ECONFIG, sets *out to NULL and *errmsg to a
//  message that names the source, the option and the value; caller owns
//  *errmsg (free()). errmsg may be NULL if the caller does not want it.
//  Examples:
//    --queue-hwm: 'abc' is not an integer (expected 1..10000000)
//    CADRE_LOG_LEVEL: 'loud' is not one of debug, info, warn, error, off
//    config file /x.cfg: cannot read: No such file or directory
//    config file /x.cfg: node/dta_dir: unknown key
//  Any thread; touches no global state.
int
cd_config_load(int argc, char **argv, char **env, cd_config_t **out, char **errmsg);

//  Destroys a configuration, wiping secrets first. Safe on NULL and on a
//  NULL *self_p; nulls the caller's pointer.
void
cd_config_destroy(cd_config_t **self_p);

//  Writes the --help text to f: usage, then every option with its flag,
//  environment variable, config-file key, default and a one-line help.
//  Prints static defaults only, never a loaded value, so no secret can appear.
//  argv0 is the program name for the usage line (NULL: "cadred").
void
cd_config_print_help(FILE *f, const char *argv0);

//  Returns the value of `key` in the agent's `config` section, or NULL.
//  Borrowed, valid until the config is destroyed.
const char *
cd_config_agent_option(const cd_config_agent_t *agent, const char *key);

#endif
