/*  cd_config: the node's configuration (see cd_config.h).

    Design. Every option is one row of s_options[]: its flag, environment
    variable, config-file key, type, default (as text), range and help. The
    loader, the validators, cd_config_destroy and cd_config_print_help all
    walk that table, so adding an option is adding a row. Defaults are text
    parsed by the same code as user input, so a default can never be a value
    the validators would reject (an assert checks it on every load).

    Loading runs in phases, so that flags, which win, can still be read first:

      1. scan argv: --help/--version, positionals, and (option, value) pairs
         kept for later; unknown flags and missing values fail here;
      2. find the config file: --config, else CADRE_CONFIG;
      3. apply defaults, then the file, then the environment, then the flags,
         each value through s_apply(), which validates and records the source;
      4. checks between options (TLS pair, heartbeat timeout > interval,
         persist queue >= batch and wait timeout > batch wait, peers vs own
         node id) and the default agent.

    The loader remembers where each option's value came from, so every error
    names what the user actually wrote: "--queue-hwm", "CADRE_QUEUE_HWM" or
    "config file /etc/cadre.cfg: queue/hwm". Lists (peers, agents) are
    replaced whole when a stronger source gives any: the first item from a new
    source clears the list, later items of that source append.

    The file is read here (size-checked, so a huge or binary file gives a
    clear error) and parsed by czmq's zconfig. Its tree is walked once; every
    node must be a known section or key, or loading fails. zconfig itself
    reports syntax errors only on stdout, so our message just says the file is
    not valid ZPL.

    Interface: cd_config_load, cd_config_destroy, cd_config_print_help,
    cd_config_agent_option. */
#include "cd_config.h"
#include "cd_curve.h"
#include "cd_error.h"
#include "cd_log.h"

#include <czmq.h>
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum {
    S_CONFIG,   //  the config file's path: flag and environment only
    S_STRING,   //  any non-empty string
    S_PATH,     //  a non-empty path, relative to the working directory
    S_SECRET,   //  a non-empty string that is never echoed
    S_INT,      //  an integer in min..max
    S_BOOL,     //  true/false (yes/no, on/off, 1/0); a flag alone means true
    S_LEVEL,    //  a log level, stored as its canonical name
    S_HOSTPORT, //  host:port or [ipv6]:port
    S_BIND,     //  tcp://host:port, host may be * (a ZeroMQ bind endpoint)
    S_NAME,     //  1..64 of [a-z0-9_-]
    S_PEERS,    //  list of NODE_ID=[KEY@]tcp://HOST:PORT
    S_AGENTS    //  list of agents
} s_type_t;

typedef struct {
    const char *flag;    //  "--data-dir"
    const char *env;     //  "CADRE_DATA_DIR"
    const char *key;     //  path in the config file, NULL if the file cannot set it
    s_type_t type;       //  how the value is parsed and stored
    const char *metavar; //  placeholder for the value in --help
    const char *def;     //  default as text, parsed like input; NULL when unset
    const char *unset;   //  what "unset" means, shown in --help when def is NULL
    long min;            //  S_INT: smallest accepted value
    long max;            //  S_INT: largest accepted value
    size_t offset;       //  offset of the field in cd_config_t (not for lists)
    const char *help;    //  one line for --help
} s_option_t;

#define S_AT(field) offsetof(cd_config_t, field)

static const s_option_t s_options[] = {
    {.flag = "--config",
     .env = "CADRE_CONFIG",
     .type = S_CONFIG,
     .metavar = "PATH",
     .unset = "none",
     .offset = S_AT(config_path),
     .help = "Config file in czmq ZPL format; its keys are the `file` names here."},
    {.flag = "--data-dir",
     .env = "CADRE_DATA_DIR",
     .key = "node/data_dir",
     .type = S_PATH,
     .metavar = "PATH",
     .def = "./var",
     .offset = S_AT(data_dir),
     .help = "Data directory: embedded PostgreSQL, keys, admin-password."},
    {.flag = "--http-addr",
     .env = "CADRE_HTTP_ADDR",
     .key = "http/addr",
     .type = S_HOSTPORT,
     .metavar = "HOST:PORT",
     .def = "127.0.0.1:8080",
     .offset = S_AT(http_addr),
     .help = "Where the HTTP/2 frontend listens; IPv6 as [::1]:8080; port 0: any free port."},
    {.flag = "--database-url",
     .env = "DATABASE_URL",
     .key = "database/url",
     .type = S_STRING,
     .metavar = "URL",
     .unset = "none (embedded PostgreSQL)",
     .offset = S_AT(database_url),
     .help = "PostgreSQL connection URL (postgresql://...)."},
    {.flag = "--admin-password",
     .env = "CADRE_ADMIN_PASSWORD",
     .key = "node/admin_password",
     .type = S_SECRET,
     .metavar = "SECRET",
     .unset = "none",
     .offset = S_AT(admin_password),
     .help = "Password of the initial admin user (secret, never printed)."},
    {.flag = "--log-level",
     .env = "CADRE_LOG_LEVEL",
     .key = "node/log_level",
     .type = S_LEVEL,
     .metavar = "LEVEL",
     .def = "info",
     .offset = S_AT(log_level),
     .help = "Least severe level logged: debug, info, warn, error, off."},
    {.flag = "--node-id",
     .env = "CADRE_NODE_ID",
     .key = "node/id",
     .type = S_NAME,
     .metavar = "ID",
     .unset = "none (generated, kept in the data dir)",
     .offset = S_AT(node_id),
     .help = "This node's id in the cluster: 1-64 of a-z, 0-9, _ and -."},
    {.flag = "--tls-cert",
     .env = "CADRE_TLS_CERT",
     .key = "http/tls_cert",
     .type = S_PATH,
     .metavar = "PATH",
     .unset = "none (HTTP/2 over cleartext)",
     .offset = S_AT(tls_cert),
     .help = "TLS certificate chain (PEM); needs --tls-key too."},
    {.flag = "--tls-key",
     .env = "CADRE_TLS_KEY",
     .key = "http/tls_key",
     .type = S_PATH,
     .metavar = "PATH",
     .unset = "none",
     .offset = S_AT(tls_key),
     .help = "TLS private key (PEM); needs --tls-cert too."},
    {.flag = "--worker-addr",
     .env = "CADRE_WORKER_ADDR",
     .key = "worker/addr",
     .type = S_BIND,
     .metavar = "tcp://HOST:PORT",
     .unset = "none",
     .offset = S_AT(worker_addr),
     .help = "ZeroMQ endpoint where external workers connect (host * = all)."},
    {.flag = "--cluster-addr",
     .env = "CADRE_CLUSTER_ADDR",
     .key = "cluster/addr",
     .type = S_BIND,
     .metavar = "tcp://HOST:PORT",
     .unset = "none",
     .offset = S_AT(cluster_addr),
     .help = "ZeroMQ endpoint where this node's cluster link binds."},
    {.flag = "--curve-secret-key",
     .env = "CADRE_CURVE_SECRET_KEY",
     .key = "curve/secret_key",
     .type = S_SECRET,
     .metavar = "KEY",
     .unset = "none (tcp links unencrypted)",
     .offset = S_AT(curve_secret_key),
     .help = "CurveZMQ secret key (Z85) of this node's tcp links (secret; cadred keygen)."},
    {.flag = "--curve-allowed-keys",
     .env = "CADRE_CURVE_ALLOWED_KEYS",
     .key = "curve/allowed_keys",
     .type = S_STRING,
     .metavar = "KEYS",
     .unset = "none",
     .offset = S_AT(curve_allowed_keys),
     .help = "CurveZMQ public keys (Z85, comma-separated) allowed to connect; peers' keys too."},
    {.flag = "--allow-insecure-tcp",
     .env = "CADRE_ALLOW_INSECURE_TCP",
     .key = "cluster/allow_insecure_tcp",
     .type = S_BOOL,
     .metavar = "[=true|false]",
     .def = "false",
     .offset = S_AT(allow_insecure_tcp),
     .help = "Let non-loopback tcp links run without CurveZMQ (node traffic in clear)."},
    {.flag = "--peer",
     .env = "CADRE_PEERS",
     .key = "cluster/peers",
     .type = S_PEERS,
     .metavar = "ID=[KEY@]tcp://HOST:PORT",
     .unset = "none",
     .help =
         "Another cluster node, KEY its CurveZMQ public key; repeatable. Env: comma-separated."},
    {.flag = "--queue-hwm",
     .env = "CADRE_QUEUE_HWM",
     .key = "queue/hwm",
     .type = S_INT,
     .metavar = "N",
     .def = "1000",
     .min = 1,
     .max = 10000000,
     .offset = S_AT(queue_hwm),
     .help = "Bound of each actor queue, in messages (ZeroMQ HWM)."},
    {.flag = "--api-workers",
     .env = "CADRE_API_WORKERS",
     .key = "http/api_workers",
     .type = S_INT,
     .metavar = "N",
     .def = "2",
     .min = 1,
     .max = 64,
     .offset = S_AT(api_workers),
     .help = "REST API actors (api/0 ...), each with its own database connection for reads."},
    {.flag = "--auth-workers",
     .env = "CADRE_AUTH_WORKERS",
     .key = "auth/workers",
     .type = S_INT,
     .metavar = "N",
     .def = "2",
     .min = 1,
     .max = 16,
     .offset = S_AT(auth_workers),
     .help = "Password hashing actors (auth/0 ...): argon2id jobs at once, 64 MiB each."},
    {.flag = "--login-max-failures",
     .env = "CADRE_LOGIN_MAX_FAILURES",
     .key = "auth/login_max_failures",
     .type = S_INT,
     .metavar = "N",
     .def = "5",
     .min = 1,
     .max = 1000,
     .offset = S_AT(login_max_failures),
     .help = "Failed logins of one user, or from one address, that lock it out (429)."},
    {.flag = "--login-window-s",
     .env = "CADRE_LOGIN_WINDOW_S",
     .key = "auth/login_window_s",
     .type = S_INT,
     .metavar = "SECONDS",
     .def = "900",
     .min = 1,
     .max = 86400,
     .offset = S_AT(login_window_s),
     .help = "The window in which those failures count; a lockout lasts until they leave it."},
    {.flag = "--send-timeout-ms",
     .env = "CADRE_SEND_TIMEOUT_MS",
     .key = "queue/send_timeout_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "1000",
     .min = 0,
     .max = 600000,
     .offset = S_AT(send_timeout_ms),
     .help = "How long a send to a full queue waits before it fails."},
    {.flag = "--heartbeat-ivl-ms",
     .env = "CADRE_HEARTBEAT_IVL_MS",
     .key = "supervisor/heartbeat_ivl_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "1000",
     .min = 10,
     .max = 600000,
     .offset = S_AT(heartbeat_ivl_ms),
     .help = "Interval between heartbeats of supervised actors."},
    {.flag = "--heartbeat-timeout-ms",
     .env = "CADRE_HEARTBEAT_TIMEOUT_MS",
     .key = "supervisor/heartbeat_timeout_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "5000",
     .min = 1,
     .max = 3600000,
     .offset = S_AT(heartbeat_timeout_ms),
     .help = "Silence after which an actor is hung; must exceed the interval."},
    {.flag = "--restart-max",
     .env = "CADRE_RESTART_MAX",
     .key = "supervisor/restart_max",
     .type = S_INT,
     .metavar = "N",
     .def = "5",
     .min = 0,
     .max = 1000,
     .offset = S_AT(restart_max),
     .help = "Restart intensity: at most N restarts per window, then escalate."},
    {.flag = "--restart-window-s",
     .env = "CADRE_RESTART_WINDOW_S",
     .key = "supervisor/restart_window_s",
     .type = S_INT,
     .metavar = "S",
     .def = "10",
     .min = 1,
     .max = 86400,
     .offset = S_AT(restart_window_s),
     .help = "The window of the restart intensity, in seconds."},
    {.flag = "--stop-timeout-ms",
     .env = "CADRE_STOP_TIMEOUT_MS",
     .key = "supervisor/stop_timeout_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "5000",
     .min = 100,
     .max = 600000,
     .offset = S_AT(stop_timeout_ms),
     .help = "How long an actor may take to stop before it is abandoned."},
    {.flag = "--http-max-body-bytes",
     .env = "CADRE_HTTP_MAX_BODY_BYTES",
     .key = "http/max_body_bytes",
     .type = S_INT,
     .metavar = "BYTES",
     .def = "1048576",
     .min = 1,
     .max = 1073741824,
     .offset = S_AT(http_max_body_bytes),
     .help = "Largest request body; larger ones get 413 payload_too_large."},
    {.flag = "--http-max-header-bytes",
     .env = "CADRE_HTTP_MAX_HEADER_BYTES",
     .key = "http/max_header_bytes",
     .type = S_INT,
     .metavar = "BYTES",
     .def = "16384",
     .min = 1024,
     .max = 1048576,
     .offset = S_AT(http_max_header_bytes),
     .help = "Largest request head (headers and path); larger ones get 431."},
    {.flag = "--http-max-streams",
     .env = "CADRE_HTTP_MAX_STREAMS",
     .key = "http/max_streams",
     .type = S_INT,
     .metavar = "N",
     .def = "100",
     .min = 1,
     .max = 100,
     .offset = S_AT(http_max_streams),
     .help = "Requests in progress at once per connection; more wait their turn."},
    {.flag = "--http-request-timeout-ms",
     .env = "CADRE_HTTP_REQUEST_TIMEOUT_MS",
     .key = "http/request_timeout_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "10000",
     .min = 1,
     .max = 600000,
     .offset = S_AT(http_request_timeout_ms),
     .help = "Time to receive a request head, and for an actor to answer (then 504)."},
    {.flag = "--http-idle-timeout-ms",
     .env = "CADRE_HTTP_IDLE_TIMEOUT_MS",
     .key = "http/idle_timeout_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "30000",
     .min = 1,
     .max = 3600000,
     .offset = S_AT(http_idle_timeout_ms),
     .help = "An HTTP/2 connection idle this long is closed."},
    {.flag = "--http-max-requests-per-conn-s",
     .env = "CADRE_HTTP_MAX_REQUESTS_PER_CONN_S",
     .key = "http/max_requests_per_conn_s",
     .type = S_INT,
     .metavar = "N",
     .def = "0",
     .min = 0,
     .max = 1000000,
     .offset = S_AT(http_max_requests_per_conn_s),
     .help = "Requests per second per connection before 429 (0: unlimited)."},
    //  The persist actor's batching and waiting (actors/cd_persist.h). The
    //  defaults are the actor's own, chosen with bench/bench_persist: keep
    //  them equal (test_persist checks). The bounds:
    //  - batch max 1..5000: throughput measured flat from 250 to 1,000, so
    //    more buys nothing, while a batch must commit within the 3 s bound
    //    on one batch (cd_batch's io timeout) or it is rolled back and run
    //    again; 5,000 task creates (~0.5 ms of the database each, the
    //    heaviest write measured) take about 2.5 s;
    //  - batch wait 1..1000 ms: a cap in whole milliseconds. 0 would send
    //    what waits the moment the writer is free, before the last batch's
    //    requesters are answered, so their next writes always miss it (the
    //    case the quiet-inbox rule exists for), and the actor's arguments
    //    take 0 as "default"; past 1 s the cap only adds latency;
    //  - queue limit up to 1,000,000: every waiting request holds its
    //    parameters in memory, and its slot is allocated at start;
    //  - wait timeout 100 ms..1 h: below 100 ms writes fail that are only
    //    queued behind a batch in progress.
    {.flag = "--persist-batch-max",
     .env = "CADRE_PERSIST_BATCH_MAX",
     .key = "persist/batch_max",
     .type = S_INT,
     .metavar = "N",
     .def = "500",
     .min = 1,
     .max = 5000,
     .offset = S_AT(persist_batch_max),
     .help = "Most write requests per transaction (default measured with bench_persist)."},
    {.flag = "--persist-batch-wait-ms",
     .env = "CADRE_PERSIST_BATCH_WAIT_MS",
     .key = "persist/batch_wait_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "5",
     .min = 1,
     .max = 1000,
     .offset = S_AT(persist_batch_wait_ms),
     .help = "Longest a write waits for its batch to fill (default measured with bench_persist)."},
    {.flag = "--persist-queue-limit",
     .env = "CADRE_PERSIST_QUEUE_LIMIT",
     .key = "persist/queue_limit",
     .type = S_INT,
     .metavar = "N",
     .def = "20000",
     .min = 1,
     .max = 1000000,
     .offset = S_AT(persist_queue_limit),
     .help = "Writes that may wait at once (database away or slow); beyond, they fail at once."},
    {.flag = "--persist-wait-timeout-ms",
     .env = "CADRE_PERSIST_WAIT_TIMEOUT_MS",
     .key = "persist/wait_timeout_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "10000",
     .min = 100,
     .max = 3600000,
     .offset = S_AT(persist_wait_timeout_ms),
     .help = "How long a write may wait for the database before it fails (> the batch wait)."},
    //  Retention in days, 0 keeping everything: the event log (what SSE and
    //  WebSocket clients replay from, and GET /api/v1/events lists) and the
    //  stats snapshots grow with every task otherwise. A task's own history
    //  (task_events) and the audit log are never pruned.
    {.flag = "--events-retention-days",
     .env = "CADRE_EVENTS_RETENTION_DAYS",
     .key = "persist/events_retention_days",
     .type = S_INT,
     .metavar = "DAYS",
     .def = "30",
     .min = 0,
     .max = 3650,
     .offset = S_AT(events_retention_days),
     .help = "Delete events older than this (0: keep them all)."},
    {.flag = "--stats-retention-days",
     .env = "CADRE_STATS_RETENTION_DAYS",
     .key = "persist/stats_retention_days",
     .type = S_INT,
     .metavar = "DAYS",
     .def = "30",
     .min = 0,
     .max = 3650,
     .offset = S_AT(stats_retention_days),
     .help = "Delete stats history older than this (0: keep it all)."},
    {.flag = "--orch-lease-ms",
     .env = "CADRE_ORCH_LEASE_MS",
     .key = "orchestrator/lease_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "30000",
     .min = 300,
     .max = 3600000,
     .offset = S_AT(orch_lease_ms),
     .help = "How long a running task's lease lasts; renewed every third of it."},
    {.flag = "--orch-scan-ms",
     .env = "CADRE_ORCH_SCAN_MS",
     .key = "orchestrator/scan_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "250",
     .min = 10,
     .max = 60000,
     .offset = S_AT(orch_scan_ms),
     .help = "The orchestrator looks for claimable tasks at least this often."},
    {.flag = "--orch-backoff-ms",
     .env = "CADRE_ORCH_BACKOFF_MS",
     .key = "orchestrator/backoff_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "1000",
     .min = 1,
     .max = 3600000,
     .offset = S_AT(orch_backoff_ms),
     .help = "Retry delay after a failed attempt, doubled per attempt."},
    {.flag = "--orch-backoff-max-ms",
     .env = "CADRE_ORCH_BACKOFF_MAX_MS",
     .key = "orchestrator/backoff_max_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "60000",
     .min = 1,
     .max = 86400000,
     .offset = S_AT(orch_backoff_max_ms),
     .help = "The longest retry delay."},
    {.flag = "--orch-hitl-check-ms",
     .env = "CADRE_ORCH_HITL_CHECK_MS",
     .key = "orchestrator/hitl_check_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "1000",
     .min = 10,
     .max = 600000,
     .offset = S_AT(orch_hitl_check_ms),
     .help = "How often HITL deadlines are checked."},
    {.flag = "--scheduler-tick-ms",
     .env = "CADRE_SCHEDULER_TICK_MS",
     .key = "scheduler/tick_ms",
     .type = S_INT,
     .metavar = "MS",
     .def = "1000",
     .min = 10,
     .max = 60000,
     .offset = S_AT(scheduler_tick_ms),
     .help = "How often the scheduler looks for due schedules."},
    {.flag = "--agent",
     .env = "CADRE_AGENTS",
     .key = "agents",
     .type = S_AGENTS,
     .metavar = "NAME:KIND[:ROLE[:CONCURRENCY]]",
     .def = "echo:echo",
     .help = "An agent; repeatable (env: comma-separated). KIND: echo|llm|exec|remote."},
};

#define S_N_OPTIONS (sizeof s_options / sizeof s_options[0])

typedef enum { S_SRC_NONE, S_SRC_DEFAULT, S_SRC_FILE, S_SRC_ENV, S_SRC_FLAG } s_src_t;

//  Where a value came from, for error messages.
typedef struct {
    s_src_t src;      //  which source
    const char *name; //  flag, variable or file key; NULL for the file as a whole
} s_where_t;

//  A flag seen in argv, applied after the file and the environment.
typedef struct {
    const s_option_t *opt; //  the option
    const char *value;     //  borrowed from argv
} s_pending_t;

typedef struct {
    cd_config_t *cfg;            //  being built
    const char *file;            //  config file path, for messages
    s_src_t src[S_N_OPTIONS];    //  where each option's current value came from
    char *file_key[S_N_OPTIONS]; //  file key path (as written) of file-set options
    char *errmsg;                //  the first error
} s_loader_t;

static const char *const s_level_names = "debug, info, warn, error, off";
static const char *const s_level_canonical[] = {"debug", "info", "warn", "error", "off"};

//  ---------------------------------------------------------------------------
//  Memory. Out of memory aborts (STYLE.md); sizes from outside are checked
//  before they reach these.

static void *
s_need(void *ptr)
{
    if (!ptr) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return ptr;
}

static char *
s_strdup(const char *text)
{
    return s_need(strdup(text));
}

static char *
s_strndup(const char *text, size_t len)
{
    return s_need(strndup(text, len));
}

static void *
s_grow(void *array, size_t count, size_t size)
{
    return s_need(reallocarray(array, count, size));
}

static char *
s_vprintf(const char *fmt, va_list args)
{
    char *out = NULL;
    if (vasprintf(&out, fmt, args) < 0) {
        s_need(NULL);
    }
    return out;
}

static char *s_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
s_printf(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *out = s_vprintf(fmt, args);
    va_end(args);
    return out;
}

static char **
s_str_field(cd_config_t *cfg, const s_option_t *opt)
{
    return (char **)((char *)cfg + opt->offset);
}

static int *
s_int_field(cd_config_t *cfg, const s_option_t *opt)
{
    return (int *)((char *)cfg + opt->offset);
}

static bool
s_is_str_type(s_type_t type)
{
    return type != S_INT && type != S_BOOL && type != S_PEERS && type != S_AGENTS;
}

static bool *
s_bool_field(cd_config_t *cfg, const s_option_t *opt)
{
    return (bool *)((char *)cfg + opt->offset);
}

//  Frees a string, wiping it first if it held a secret.
static void
s_free_str(char **text_p, bool secret)
{
    if (*text_p && secret) {
        explicit_bzero(*text_p, strlen(*text_p));
    }
    free(*text_p);
    *text_p = NULL;
}

//  ---------------------------------------------------------------------------
//  Errors. Only the first is kept: later ones are consequences.

static int s_fail(s_loader_t *self, s_where_t where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
s_fail(s_loader_t *self, s_where_t where, const char *fmt, ...)
{
    //  A default that fails its own validation is our bug, not the user's.
    assert(where.src != S_SRC_DEFAULT);
    if (self->errmsg) {
        return CD_ECONFIG;
    }
    va_list args;
    va_start(args, fmt);
    char *text = s_vprintf(fmt, args);
    va_end(args);
    if (where.src == S_SRC_FILE && where.name) {
        self->errmsg = s_printf("config file %s: %s: %s", self->file, where.name, text);
    } else if (where.src == S_SRC_FILE) {
        self->errmsg = s_printf("config file %s: %s", self->file, text);
    } else if (where.name) {
        self->errmsg = s_printf("%s: %s", where.name, text);
    } else {
        self->errmsg = s_strdup(text);
    }
    free(text);
    return CD_ECONFIG;
}

//  Describes where option i's current value came from, for errors that
//  involve two options. Caller owns the result.
static char *
s_describe(const s_loader_t *self, size_t i)
{
    const s_option_t *opt = &s_options[i];
    switch (self->src[i]) {
    case S_SRC_FLAG:
        return s_strdup(opt->flag);
    case S_SRC_ENV:
        return s_strdup(opt->env);
    case S_SRC_FILE:
        return s_printf("%s in config file %s", self->file_key[i], self->file);
    default:
        return s_printf("default of %s", opt->flag);
    }
}

static size_t
s_option_index(const char *flag)
{
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        if (strcmp(s_options[i].flag, flag) == 0) {
            return i;
        }
    }
    assert(!"no such option in s_options");
    return 0;
}

//  ---------------------------------------------------------------------------
//  Validators: pure functions over one value.

static bool
s_valid_name(const char *text)
{
    size_t len = strlen(text);
    if (len == 0 || len > CD_CONFIG_NAME_MAX) {
        return false;
    }
    for (const char *c = text; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-')) {
            return false;
        }
    }
    return true;
}

//  Parses a base-10 integer with nothing around it. Returns 0, -1 if text is
//  not an integer, -2 if it is out of min..max.
static int
s_parse_int(const char *text, long min, long max, int *out)
{
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (!isdigit((unsigned char)digits[0])) {
        return -1;
    }
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (*end != '\0') {
        return -1;
    }
    if (errno == ERANGE || value < min || value > max) {
        return -2;
    }
    *out = (int)value;
    return 0;
}

//  A port 1..65535, or 0 ("any free port") where a listener allows it.
static bool
s_valid_port(const char *text, bool any)
{
    int port = 0;
    return strlen(text) <= 5 && s_parse_int(text, any ? 0 : 1, 65535, &port) == 0 &&
           text[0] != '-' && text[0] != '+';
}

//  A host: a name or IPv4 address of [A-Za-z0-9._-], a bracketed IPv6
//  address, or (for binds) * for every interface.
static bool
s_valid_host(const char *host, size_t len, bool wildcard)
{
    if (len == 1 && host[0] == '*') {
        return wildcard;
    }
    if (len >= 2 && host[0] == '[') {
        char addr[INET6_ADDRSTRLEN];
        size_t inner = len - 2;
        if (host[len - 1] != ']' || inner == 0 || inner >= sizeof addr) {
            return false;
        }
        memcpy(addr, host + 1, inner);
        addr[inner] = '\0';
        struct in6_addr parsed;
        return inet_pton(AF_INET6, addr, &parsed) == 1;
    }
    if (len == 0 || len > 253 || host[0] == '-' || host[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (!(isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

static bool
s_valid_hostport(const char *text, bool wildcard, bool any_port)
{
    //  The port follows the last colon; an unbracketed IPv6 host then still
    //  holds a colon and is rejected by s_valid_host.
    const char *colon = strrchr(text, ':');
    return colon && s_valid_host(text, (size_t)(colon - text), wildcard) &&
           s_valid_port(colon + 1, any_port);
}

static bool
s_valid_endpoint(const char *text, bool wildcard)
{
    return strncmp(text, "tcp://", 6) == 0 && s_valid_hostport(text + 6, wildcard, false);
}

//  ---------------------------------------------------------------------------
//  Lists: peers and agents.

static void
s_agent_fini(cd_config_agent_t *agent)
{
    free(agent->name);
    free(agent->kind);
    free(agent->role);
    for (size_t i = 0; i < agent->n_options; i++) {
        free(agent->options[i].key);
        free(agent->options[i].value);
    }
    free(agent->options);
    memset(agent, 0, sizeof *agent);
}

static void
s_clear_agents(cd_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_agents; i++) {
        s_agent_fini(&cfg->agents[i]);
    }
    free(cfg->agents);
    cfg->agents = NULL;
    cfg->n_agents = 0;
}

static void
s_clear_peers(cd_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_peers; i++) {
        free(cfg->peers[i].node_id);
        free(cfg->peers[i].endpoint);
        free(cfg->peers[i].public_key);
    }
    free(cfg->peers);
    cfg->peers = NULL;
    cfg->n_peers = 0;
}

//  Makes `src` the source of list option i, emptying the list if a weaker
//  source had filled it: lists are replaced whole, never merged.
static void
s_list_claim(s_loader_t *self, size_t i, s_src_t src)
{
    if (self->src[i] == src) {
        return;
    }
    if (s_options[i].type == S_AGENTS) {
        s_clear_agents(self->cfg);
    } else {
        s_clear_peers(self->cfg);
    }
    self->src[i] = src;
}

//  Appends a peer after checking it. `item` is the text as written, for
//  messages; value is what follows "ID=": [KEY@]tcp://HOST:PORT.
static int
s_peer_add(s_loader_t *self, s_where_t where, const char *item, const char *node_id,
           const char *value)
{
    cd_config_t *cfg = self->cfg;
    if (!s_valid_name(node_id)) {
        return s_fail(self, where,
                      "'%s': peer id '%s' is not 1-64 of a-z, 0-9, _ and - "
                      "(expected ID=[KEY@]tcp://HOST:PORT)",
                      item, node_id);
    }
    //  A Z85 key may itself hold '@': it is the first 40 characters.
    const char *endpoint = value;
    char *key = NULL;
    const char *at = strstr(value, "@tcp://");
    if (at) {
        if (at - value != CD_CURVE_KEY_LEN) {
            return s_fail(self, where,
                          "'%s': the public key before '@' is not 40 Z85 characters (quote it in "
                          "the config file: Z85 uses '#')",
                          item);
        }
        key = s_strndup(value, CD_CURVE_KEY_LEN);
        endpoint = at + 1;
        if (!cd_curve_key_valid(key)) {
            free(key);
            return s_fail(self, where, "'%s': the public key before '@' is not a Z85 key", item);
        }
    }
    if (!s_valid_endpoint(endpoint, false)) {
        free(key);
        return s_fail(self, where,
                      "'%s': '%s' is not a tcp endpoint tcp://HOST:PORT (port 1..65535)", item,
                      endpoint);
    }
    for (size_t i = 0; i < cfg->n_peers; i++) {
        if (strcmp(cfg->peers[i].node_id, node_id) == 0) {
            free(key);
            return s_fail(self, where, "duplicate peer '%s'", node_id);
        }
    }
    cfg->peers = s_grow(cfg->peers, cfg->n_peers + 1, sizeof *cfg->peers);
    cfg->peers[cfg->n_peers].node_id = s_strdup(node_id);
    cfg->peers[cfg->n_peers].endpoint = s_strdup(endpoint);
    cfg->peers[cfg->n_peers].public_key = key;
    cfg->n_peers++;
    return 0;
}

//  Parses NODE_ID=tcp://HOST:PORT.
static int
s_peer_spec(s_loader_t *self, s_where_t where, const char *item)
{
    const char *eq = strchr(item, '=');
    if (!eq) {
        return s_fail(self, where, "'%s' is not ID=[KEY@]tcp://HOST:PORT", item);
    }
    char *node_id = s_strndup(item, (size_t)(eq - item));
    int rc = s_peer_add(self, where, item, node_id, eq + 1);
    free(node_id);
    return rc;
}

//  Appends an agent after checking it; on success *index (if not NULL) is
//  its position. `spec` is the text as written (NULL for the file form).
static int
s_agent_add(s_loader_t *self, s_where_t where, const char *spec, const char *name, const char *kind,
            const char *role, int concurrency, size_t *index)
{
    cd_config_t *cfg = self->cfg;
    const char *what = NULL;
    const char *bad = NULL;
    if (!s_valid_name(name)) {
        what = "agent name";
        bad = name;
    } else if (!s_valid_name(kind)) {
        what = "agent kind";
        bad = kind;
    } else if (role && !s_valid_name(role)) {
        what = "agent role";
        bad = role;
    }
    if (what) {
        return s_fail(self, where, "%s%s%s%s '%s' is not 1-64 of a-z, 0-9, _ and -",
                      spec ? "'" : "", spec ? spec : "", spec ? "': " : "", what, bad);
    }
    for (size_t i = 0; i < cfg->n_agents; i++) {
        if (strcmp(cfg->agents[i].name, name) == 0) {
            return s_fail(self, where, "duplicate agent '%s'", name);
        }
    }
    cfg->agents = s_grow(cfg->agents, cfg->n_agents + 1, sizeof *cfg->agents);
    cd_config_agent_t *agent = &cfg->agents[cfg->n_agents];
    *agent = (cd_config_agent_t){.name = s_strdup(name),
                                 .kind = s_strdup(kind),
                                 .role = role ? s_strdup(role) : NULL,
                                 .concurrency = concurrency};
    if (index) {
        *index = cfg->n_agents;
    }
    cfg->n_agents++;
    return 0;
}

//  Parses NAME:KIND[:ROLE[:CONCURRENCY]]; an empty ROLE means none.
static int
s_agent_spec(s_loader_t *self, s_where_t where, const char *spec)
{
    static const char *const form = "NAME:KIND[:ROLE[:CONCURRENCY]]";
    char *copy = s_strdup(spec);
    char *part[4] = {NULL};
    size_t n = 0;
    int rc = 0;
    for (char *cursor = copy; cursor; n++) {
        if (n == 4) {
            rc = s_fail(self, where, "'%s' has too many fields (expected %s)", spec, form);
            goto done;
        }
        part[n] = cursor;
        char *colon = strchr(cursor, ':');
        if (colon) {
            *colon = '\0';
        }
        cursor = colon ? colon + 1 : NULL;
    }
    if (n < 2) {
        rc = s_fail(self, where, "'%s' is not %s", spec, form);
        goto done;
    }
    int concurrency = 1;
    if (n == 4 && s_parse_int(part[3], 1, CD_CONFIG_CONCURRENCY_MAX, &concurrency) != 0) {
        rc = s_fail(self, where, "'%s': concurrency '%s' is not an integer in 1..%d", spec, part[3],
                    CD_CONFIG_CONCURRENCY_MAX);
        goto done;
    }
    const char *role = n >= 3 && part[2][0] ? part[2] : NULL;
    rc = s_agent_add(self, where, spec, part[0], part[1], role, concurrency, NULL);
done:
    free(copy);
    return rc;
}

//  Applies a comma-separated list (env, flags) to list option i. Blanks
//  around items and empty items (a trailing comma) are ignored.
static int
s_apply_list(s_loader_t *self, size_t i, const char *value, s_where_t where)
{
    s_list_claim(self, i, where.src);
    char *copy = s_strdup(value);
    char *save = NULL;
    int rc = 0;
    for (char *item = strtok_r(copy, ",", &save); item && rc == 0;
         item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item)) {
            item++;
        }
        size_t len = strlen(item);
        while (len > 0 && isspace((unsigned char)item[len - 1])) {
            item[--len] = '\0';
        }
        if (len == 0) {
            continue;
        }
        rc = s_options[i].type == S_AGENTS ? s_agent_spec(self, where, item)
                                           : s_peer_spec(self, where, item);
    }
    free(copy);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Applying one value from any source.

static int
s_apply(s_loader_t *self, size_t i, const char *value, s_where_t where)
{
    const s_option_t *opt = &s_options[i];
    cd_config_t *cfg = self->cfg;
    if (strlen(value) > CD_CONFIG_VALUE_MAX) {
        return s_fail(self, where, "value is longer than %d bytes", CD_CONFIG_VALUE_MAX);
    }
    if (value[0] == '\0') {
        return s_fail(self, where, "empty value");
    }
    if (opt->type == S_PEERS || opt->type == S_AGENTS) {
        return s_apply_list(self, i, value, where);
    }
    int number = 0;
    cd_log_level_t level = CD_LOG_INFO;
    switch (opt->type) {
    case S_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        int found = -1;
        for (size_t k = 0; k < 4; k++) {
            found = strcasecmp(value, yes[k]) == 0 ? 1 : strcasecmp(value, no[k]) == 0 ? 0 : found;
        }
        if (found < 0) {
            return s_fail(self, where, "'%s' is not true or false", value);
        }
        *s_bool_field(cfg, opt) = found == 1;
        self->src[i] = where.src;
        return 0;
    }
    case S_INT: {
        int rc = s_parse_int(value, opt->min, opt->max, &number);
        if (rc == -1) {
            return s_fail(self, where, "'%s' is not an integer (expected %ld..%ld)", value,
                          opt->min, opt->max);
        }
        if (rc == -2) {
            return s_fail(self, where, "'%s' is out of range (expected %ld..%ld)", value, opt->min,
                          opt->max);
        }
        *s_int_field(cfg, opt) = number;
        self->src[i] = where.src;
        return 0;
    }
    case S_LEVEL:
        if (cd_log_level_parse(value, &level) != 0) {
            return s_fail(self, where, "'%s' is not one of %s", value, s_level_names);
        }
        //  Stored canonical ("WARNING" becomes "warn"), so users of the
        //  config compare one spelling.
        value = s_level_canonical[level];
        break;
    case S_HOSTPORT:
        //  Port 0 asks the kernel for a free port (the node logs the one it
        //  got): tests and several nodes on one host use it.
        if (!s_valid_hostport(value, false, true)) {
            return s_fail(self, where, "'%s' is not HOST:PORT (port 0..65535; IPv6 as [::1]:8080)",
                          value);
        }
        break;
    case S_BIND:
        if (!s_valid_endpoint(value, true)) {
            return s_fail(self, where, "'%s' is not a tcp endpoint tcp://HOST:PORT (port 1..65535)",
                          value);
        }
        break;
    case S_NAME:
        if (!s_valid_name(value)) {
            return s_fail(self, where, "'%s' is not a valid id (1-64 of a-z, 0-9, _ and -)", value);
        }
        break;
    default:
        break;
    }
    char **field = s_str_field(cfg, opt);
    s_free_str(field, opt->type == S_SECRET);
    *field = s_strdup(value);
    self->src[i] = where.src;
    return 0;
}

//  ---------------------------------------------------------------------------
//  The config file.

static const char *
s_node_value(zconfig_t *node)
{
    const char *value = zconfig_value(node);
    return value ? value : "";
}

//  Reads the whole file into a NUL-terminated string. Caller owns *text_p.
//  strerror() is not thread-safe; this is (GNU strerror_r).
static int
s_fail_errno(s_loader_t *self, int err)
{
    char buf[128];
    return s_fail(self, (s_where_t){S_SRC_FILE, NULL}, "cannot read: %s",
                  strerror_r(err, buf, sizeof buf));
}

static int
s_file_read(s_loader_t *self, const char *path, char **text_p)
{
    s_where_t where = {S_SRC_FILE, NULL};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return s_fail_errno(self, errno);
    }
    int rc = 0;
    char *text = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = s_fail_errno(self, errno);
        goto err_close;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = s_fail(self, where, "cannot read: not a regular file");
        goto err_close;
    }
    if (st.st_size > (off_t)CD_CONFIG_FILE_MAX) {
        rc = s_fail(self, where, "larger than %u bytes", CD_CONFIG_FILE_MAX);
        goto err_close;
    }
    size_t size = (size_t)st.st_size;
    text = s_need(malloc(size + 1));
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, text + got, size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = s_fail_errno(self, errno);
            goto err_free_text;
        }
        if (n == 0) {
            break; //  shrank while we read: parse what is there
        }
        got += (size_t)n;
    }
    text[got] = '\0';
    //  zconfig takes a C string: a NUL inside would silently cut the file.
    if (memchr(text, '\0', got)) {
        rc = s_fail(self, where, "contains a NUL byte (not a text file)");
        goto err_free_text;
    }
    close(fd);
    *text_p = text;
    return 0;

err_free_text:
    free(text);
err_close:
    close(fd);
    return rc;
}

static int
s_option_by_key(const char *key)
{
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        if (s_options[i].key && strcmp(s_options[i].key, key) == 0) {
            return (int)i;
        }
    }
    return -1;
}

//  True if some option's key lies under `path/`.
static bool
s_is_section(const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        const char *key = s_options[i].key;
        if (key && strncmp(key, path, len) == 0 && key[len] == '/') {
            return true;
        }
    }
    return false;
}

//  cluster/peers: children `id = endpoint`, or a comma list as its value.
static int
s_file_peers(s_loader_t *self, size_t i, zconfig_t *node, const char *path)
{
    s_list_claim(self, i, S_SRC_FILE);
    const char *value = s_node_value(node);
    if (*value) {
        int rc = s_apply_list(self, i, value, (s_where_t){S_SRC_FILE, path});
        if (rc) {
            return rc;
        }
    }
    for (zconfig_t *peer = zconfig_child(node); peer; peer = zconfig_next(peer)) {
        char *where_name = s_printf("%s/%s", path, zconfig_name(peer));
        s_where_t where = {S_SRC_FILE, where_name};
        int rc = 0;
        if (zconfig_child(peer)) {
            rc = s_fail(self, where, "expected id = tcp://HOST:PORT, not a section");
        } else {
            char *item = s_printf("%s = %s", zconfig_name(peer), s_node_value(peer));
            rc = s_peer_add(self, where, item, zconfig_name(peer), s_node_value(peer));
            free(item);
        }
        free(where_name);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

//  agents/<name>/config: string pairs, kept in order.
static int
s_file_agent_config(s_loader_t *self, size_t index, zconfig_t *node, const char *path)
{
    for (zconfig_t *item = zconfig_child(node); item; item = zconfig_next(item)) {
        cd_config_agent_t *agent = &self->cfg->agents[index];
        const char *key = zconfig_name(item);
        char *where_name = s_printf("%s/%s", path, key);
        s_where_t where = {S_SRC_FILE, where_name};
        int rc = 0;
        if (zconfig_child(item)) {
            rc = s_fail(self, where, "agent config values are strings, not sections");
        } else if (cd_config_agent_option(agent, key)) {
            rc = s_fail(self, where, "duplicate key");
        } else {
            agent->options = s_grow(agent->options, agent->n_options + 1, sizeof *agent->options);
            agent->options[agent->n_options++] =
                (cd_config_kv_t){.key = s_strdup(key), .value = s_strdup(s_node_value(item))};
        }
        free(where_name);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

//  One agent section: kind (required), role, concurrency, config.
static int
s_file_agent(s_loader_t *self, zconfig_t *node, const char *path)
{
    s_where_t where = {S_SRC_FILE, path};
    if (*s_node_value(node)) {
        return s_fail(self, where, "an agent is a section (kind = ..., role = ...), not a value");
    }
    zconfig_t *fields[4] = {NULL}; //  kind, role, concurrency, config
    static const char *const names[4] = {"kind", "role", "concurrency", "config"};
    for (zconfig_t *child = zconfig_child(node); child; child = zconfig_next(child)) {
        size_t f = 0;
        while (f < 4 && strcmp(zconfig_name(child), names[f]) != 0) {
            f++;
        }
        char *child_path = s_printf("%s/%s", path, zconfig_name(child));
        s_where_t child_where = {S_SRC_FILE, child_path};
        int rc = 0;
        if (f == 4) {
            rc =
                s_fail(self, child_where, "unknown key (expected kind, role, concurrency, config)");
        } else if (fields[f]) {
            rc = s_fail(self, child_where, "duplicate key");
        } else if (f < 3 && zconfig_child(child)) {
            rc = s_fail(self, child_where, "expected a value, not a section");
        } else if (f == 3 && *s_node_value(child)) {
            rc = s_fail(self, child_where, "expected a section of key = value, not a value");
        }
        free(child_path);
        if (rc) {
            return rc;
        }
        fields[f] = child;
    }
    if (!fields[0]) {
        return s_fail(self, where, "kind is required (echo, llm, exec or remote)");
    }
    int concurrency = 1;
    if (fields[2] &&
        s_parse_int(s_node_value(fields[2]), 1, CD_CONFIG_CONCURRENCY_MAX, &concurrency) != 0) {
        char *child_path = s_printf("%s/concurrency", path);
        int rc =
            s_fail(self, (s_where_t){S_SRC_FILE, child_path}, "'%s' is not an integer in 1..%d",
                   s_node_value(fields[2]), CD_CONFIG_CONCURRENCY_MAX);
        free(child_path);
        return rc;
    }
    const char *role = fields[1] && *s_node_value(fields[1]) ? s_node_value(fields[1]) : NULL;
    size_t index = 0;
    int rc = s_agent_add(self, where, NULL, zconfig_name(node), s_node_value(fields[0]), role,
                         concurrency, &index);
    if (rc == 0 && fields[3]) {
        char *config_path = s_printf("%s/config", path);
        rc = s_file_agent_config(self, index, fields[3], config_path);
        free(config_path);
    }
    return rc;
}

static int
s_file_agents(s_loader_t *self, size_t i, zconfig_t *node, const char *path)
{
    s_list_claim(self, i, S_SRC_FILE);
    if (*s_node_value(node)) {
        return s_fail(self, (s_where_t){S_SRC_FILE, path},
                      "expected a section with one subsection per agent, not a value");
    }
    for (zconfig_t *agent = zconfig_child(node); agent; agent = zconfig_next(agent)) {
        char *agent_path = s_printf("%s/%s", path, zconfig_name(agent));
        int rc = s_file_agent(self, agent, agent_path);
        free(agent_path);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

//  Visits the children of `node`, whose key path is `parent` (NULL at the
//  root). zconfig also accepts "node/data_dir = x" as one name at the root;
//  it yields the same path, so both spellings work (but not both at once).
static int
s_file_walk(s_loader_t *self, zconfig_t *node, const char *parent)
{
    for (zconfig_t *child = zconfig_child(node); child; child = zconfig_next(child)) {
        char *path =
            parent ? s_printf("%s/%s", parent, zconfig_name(child)) : s_strdup(zconfig_name(child));
        s_where_t where = {S_SRC_FILE, path};
        int i = s_option_by_key(path);
        int rc = 0;
        if (i >= 0 && self->src[i] == S_SRC_FILE) {
            rc = s_fail(self, where, "duplicate key");
        } else if (i >= 0 && s_options[i].type == S_AGENTS) {
            rc = s_file_agents(self, (size_t)i, child, path);
        } else if (i >= 0 && s_options[i].type == S_PEERS) {
            rc = s_file_peers(self, (size_t)i, child, path);
        } else if (i >= 0 && zconfig_child(child)) {
            rc = s_fail(self, where, "expected a value, not a section");
        } else if (i >= 0) {
            rc = s_apply(self, (size_t)i, s_node_value(child), where);
        } else if (s_is_section(path) && *s_node_value(child)) {
            rc = s_fail(self, where, "is a section and takes no value");
        } else if (s_is_section(path)) {
            rc = s_file_walk(self, child, path);
        } else {
            rc = s_fail(self, where, "unknown key");
        }
        if (rc == 0 && i >= 0) {
            free(self->file_key[i]);
            self->file_key[i] = s_strdup(path);
        }
        free(path);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int
s_load_file(s_loader_t *self, const char *path)
{
    self->file = path;
    char *text = NULL;
    int rc = s_file_read(self, path, &text);
    if (rc) {
        return rc;
    }
    zconfig_t *root = zconfig_str_load(text);
    free(text);
    if (!root) {
        return s_fail(self, (s_where_t){S_SRC_FILE, NULL},
                      "not valid ZPL (indent by 4 spaces; lines are `name = value` or a "
                      "section name)");
    }
    rc = s_file_walk(self, root, NULL);
    zconfig_destroy(&root);
    return rc;
}

//  ---------------------------------------------------------------------------
//  argv and the environment.

static const char *
s_env_get(char **env, const char *name)
{
    size_t len = strlen(name);
    for (char **entry = env; entry && *entry; entry++) {
        if (strncmp(*entry, name, len) == 0 && (*entry)[len] == '=') {
            return *entry + len + 1;
        }
    }
    return NULL;
}

//  Phase 1: sorts argv into help/version, positionals and pending flags.
//  pending has room for argc entries.
static int
s_scan_argv(s_loader_t *self, int argc, char **argv, s_pending_t *pending, size_t *n_pending)
{
    cd_config_t *cfg = self->cfg;
    bool positional_only = false;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (positional_only || arg[0] != '-' || arg[1] == '\0') {
            cfg->args = s_grow(cfg->args, cfg->n_args + 1, sizeof *cfg->args);
            cfg->args[cfg->n_args++] = s_strdup(arg);
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            positional_only = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            cfg->help = true;
            continue;
        }
        if (strcmp(arg, "--version") == 0) {
            cfg->version = true;
            continue;
        }
        //  Only the name is quoted in errors: the value may be a secret.
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const s_option_t *opt = NULL;
        for (size_t i = 0; i < S_N_OPTIONS && arg[1] == '-'; i++) {
            if (strlen(s_options[i].flag) == name_len &&
                strncmp(s_options[i].flag, arg, name_len) == 0) {
                opt = &s_options[i];
            }
        }
        if (!opt) {
            bool no_value = name_len == 6 && strncmp(arg, "--help", 6) == 0;
            no_value = no_value || (name_len == 9 && strncmp(arg, "--version", 9) == 0);
            return s_fail(self, (s_where_t){S_SRC_FLAG, NULL}, "%.*s: %s", (int)name_len, arg,
                          no_value ? "takes no value" : "unknown option (see --help)");
        }
        s_where_t where = {S_SRC_FLAG, opt->flag};
        const char *value = eq ? eq + 1 : NULL;
        if (!value && opt->type == S_BOOL) {
            //  A switch: its presence is the value; the next argument is
            //  not taken.
            value = "true";
        }
        if (!value && a + 1 >= argc) {
            return s_fail(self, where, "missing value (%s)", opt->metavar);
        }
        if (!value) {
            value = argv[++a];
            //  "--data-dir --http-addr x" is a forgotten value, not a
            //  directory called "--http-addr"; --data-dir=--x still works.
            if (strncmp(value, "--", 2) == 0) {
                return s_fail(self, where, "missing value (%s) before '%s'", opt->metavar, value);
            }
        }
        pending[*n_pending] = (s_pending_t){opt, value};
        (*n_pending)++;
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Checks between options, after every source is applied.

//  CurveZMQ keys: well-formed, and all or nothing (a secret key needs every
//  peer's public key; public keys need a secret key to be of any use).
//  The secret key is never quoted.
static int
s_check_curve(s_loader_t *self)
{
    cd_config_t *cfg = self->cfg;
    size_t secret = s_option_index("--curve-secret-key");
    size_t allowed = s_option_index("--curve-allowed-keys");
    if (cfg->curve_secret_key && !cd_curve_key_valid(cfg->curve_secret_key)) {
        char *by = s_describe(self, secret);
        s_fail(self, (s_where_t){S_SRC_NONE, NULL},
               "%s: not a CurveZMQ key (40 Z85 characters, as cadred keygen writes; quote it in "
               "the config file)",
               by);
        free(by);
        return CD_ECONFIG;
    }
    cd_curve_key_t *keys = NULL;
    size_t n_keys = 0, bad = 0;
    if (cd_curve_key_list(cfg->curve_allowed_keys, &keys, &n_keys, &bad) != 0) {
        char *by = s_describe(self, allowed);
        s_fail(self, (s_where_t){S_SRC_NONE, NULL},
               "%s: key %zu is not a CurveZMQ public key (40 Z85 characters)", by, bad + 1);
        free(by);
        return CD_ECONFIG;
    }
    free(keys);
    const char *orphan = n_keys ? s_options[allowed].flag : NULL;
    for (size_t p = 0; !orphan && p < cfg->n_peers; p++) {
        orphan = cfg->peers[p].public_key ? "a peer's public key" : NULL;
    }
    if (!cfg->curve_secret_key && orphan) {
        s_fail(self, (s_where_t){S_SRC_NONE, NULL},
               "%s is set but %s / %s is not: CurveZMQ needs this node's secret key", orphan,
               s_options[secret].flag, s_options[secret].env);
        return CD_ECONFIG;
    }
    for (size_t p = 0; cfg->curve_secret_key && p < cfg->n_peers; p++) {
        if (!cfg->peers[p].public_key) {
            char *by = s_describe(self, s_option_index("--peer"));
            s_fail(self, (s_where_t){S_SRC_NONE, NULL},
                   "%s: peer '%s' has no public key; with CurveZMQ write ID=KEY@tcp://HOST:PORT",
                   by, cfg->peers[p].node_id);
            free(by);
            return CD_ECONFIG;
        }
    }
    return 0;
}

//  Fails with a message naming both options and where each value came
//  from: "<what_a> A (source) must <relation> <what_b> B (source)".
static int
s_fail_pair(s_loader_t *self, const char *flag_a, const char *what_a, int a, const char *relation,
            const char *flag_b, const char *what_b, int b)
{
    char *a_by = s_describe(self, s_option_index(flag_a));
    char *b_by = s_describe(self, s_option_index(flag_b));
    s_fail(self, (s_where_t){S_SRC_NONE, NULL}, "%s %d (%s) must %s %s %d (%s)", what_a, a, a_by,
           relation, what_b, b, b_by);
    free(a_by);
    free(b_by);
    return CD_ECONFIG;
}

//  The persist limits between themselves: a queue smaller than a batch
//  would cap every batch at the queue's size, and a request that may wait
//  no longer than its batch does would fail before its batch goes.
static int
s_check_persist(s_loader_t *self)
{
    const cd_config_t *cfg = self->cfg;
    if (cfg->persist_queue_limit < cfg->persist_batch_max) {
        return s_fail_pair(self, "--persist-queue-limit", "persist queue limit",
                           cfg->persist_queue_limit, "be at least", "--persist-batch-max",
                           "the batch size", cfg->persist_batch_max);
    }
    if (cfg->persist_wait_timeout_ms <= cfg->persist_batch_wait_ms) {
        return s_fail_pair(self, "--persist-wait-timeout-ms", "persist wait timeout",
                           cfg->persist_wait_timeout_ms, "be greater than",
                           "--persist-batch-wait-ms", "the batch wait", cfg->persist_batch_wait_ms);
    }
    return 0;
}

static int
s_check_all(s_loader_t *self)
{
    cd_config_t *cfg = self->cfg;
    size_t cert = s_option_index("--tls-cert");
    size_t key = s_option_index("--tls-key");
    if (!cfg->tls_cert != !cfg->tls_key) {
        size_t set = cfg->tls_cert ? cert : key;
        size_t unset = cfg->tls_cert ? key : cert;
        char *set_by = s_describe(self, set);
        s_fail(self, (s_where_t){S_SRC_NONE, NULL},
               "%s is set but %s / %s is not: TLS needs both a certificate and a key", set_by,
               s_options[unset].flag, s_options[unset].env);
        free(set_by);
        return CD_ECONFIG;
    }
    if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_ivl_ms) {
        return s_fail_pair(self, "--heartbeat-timeout-ms", "heartbeat timeout",
                           cfg->heartbeat_timeout_ms, "be greater than", "--heartbeat-ivl-ms",
                           "the heartbeat interval", cfg->heartbeat_ivl_ms);
    }
    if (s_check_persist(self) != 0) {
        return CD_ECONFIG;
    }
    if (s_check_curve(self) != 0) {
        return CD_ECONFIG;
    }
    for (size_t p = 0; cfg->node_id && p < cfg->n_peers; p++) {
        if (strcmp(cfg->peers[p].node_id, cfg->node_id) == 0) {
            char *peers_by = s_describe(self, s_option_index("--peer"));
            s_fail(self, (s_where_t){S_SRC_NONE, NULL}, "%s: peer '%s' is this node's own id",
                   peers_by, cfg->node_id);
            free(peers_by);
            return CD_ECONFIG;
        }
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Public interface.

//  Phases 2 to 4 (see the top of the file).
static int
s_load_sources(s_loader_t *self, char **env, const s_pending_t *pending, size_t n_pending)
{
    size_t config = s_option_index("--config");
    const char *path = s_env_get(env, s_options[config].env);
    for (size_t p = 0; p < n_pending; p++) {
        if (pending[p].opt == &s_options[config]) {
            path = pending[p].value;
        }
    }
    if (path && *path) {
        int rc = s_load_file(self, path);
        if (rc) {
            return rc;
        }
    }
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        const char *value = s_env_get(env, s_options[i].env);
        if (value && *value) {
            int rc = s_apply(self, i, value, (s_where_t){S_SRC_ENV, s_options[i].env});
            if (rc) {
                return rc;
            }
        }
    }
    for (size_t p = 0; p < n_pending; p++) {
        const s_option_t *opt = pending[p].opt;
        int rc = s_apply(self, (size_t)(opt - s_options), pending[p].value,
                         (s_where_t){S_SRC_FLAG, opt->flag});
        if (rc) {
            return rc;
        }
    }
    return s_check_all(self);
}

int
cd_config_load(int argc, char **argv, char **env, cd_config_t **out, char **errmsg)
{
    assert(out);
    *out = NULL;
    if (errmsg) {
        *errmsg = NULL;
    }
    s_loader_t self = {.cfg = s_need(calloc(1, sizeof(cd_config_t)))};
    s_pending_t *pending = s_need(calloc(argc > 0 ? (size_t)argc : 1, sizeof *pending));
    size_t n_pending = 0;
    int rc = argv ? s_scan_argv(&self, argc, argv, pending, &n_pending) : 0;
    if (rc) {
        goto err_free;
    }
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        if (s_options[i].def && s_options[i].type != S_AGENTS) {
            rc = s_apply(&self, i, s_options[i].def, (s_where_t){S_SRC_DEFAULT, NULL});
            assert(rc == 0);
        }
    }
    //  Help and version must work whatever the file or environment hold.
    if (!self.cfg->help && !self.cfg->version) {
        rc = s_load_sources(&self, env, pending, n_pending);
        if (rc) {
            goto err_free;
        }
    }
    //  The default agent only when no source configured any, so that a
    //  file's agent list is never merged with it.
    if (self.cfg->n_agents == 0) {
        size_t agents = s_option_index("--agent");
        self.src[agents] = S_SRC_DEFAULT;
        rc = s_apply(&self, agents, s_options[agents].def, (s_where_t){S_SRC_DEFAULT, NULL});
        assert(rc == 0);
    }
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        free(self.file_key[i]);
    }
    free(pending);
    *out = self.cfg;
    return 0;

err_free:
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        free(self.file_key[i]);
    }
    free(pending);
    cd_config_destroy(&self.cfg);
    if (errmsg) {
        *errmsg = self.errmsg;
    } else {
        free(self.errmsg);
    }
    return CD_ECONFIG;
}

void
cd_config_destroy(cd_config_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_config_t *self = *self_p;
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        if (s_is_str_type(s_options[i].type)) {
            s_free_str(s_str_field(self, &s_options[i]), s_options[i].type == S_SECRET);
        }
    }
    s_clear_peers(self);
    s_clear_agents(self);
    for (size_t i = 0; i < self->n_args; i++) {
        free(self->args[i]);
    }
    free(self->args);
    free(self);
    *self_p = NULL;
}

void
cd_config_print_help(FILE *f, const char *argv0)
{
    fprintf(f,
            "Usage: %s [OPTIONS]\n"
            "       %s keygen [PATH]   write a CurveZMQ key pair (PATH.key, PATH.pub) or print it\n"
            "\n"
            "Runs a cadre node. Each setting is taken from the first of: a flag, an\n"
            "environment variable, the config file (czmq ZPL), the default. Flags take\n"
            "--name VALUE or --name=VALUE. Lists (--peer, --agent) are replaced whole\n"
            "by a stronger source; the default agent applies only if none is configured.\n"
            "\n"
            "  -h, --help\n"
            "      Print this help and exit.\n"
            "  --version\n"
            "      Print the version and exit.\n",
            argv0 ? argv0 : "cadred", argv0 ? argv0 : "cadred");
    for (size_t i = 0; i < S_N_OPTIONS; i++) {
        const s_option_t *opt = &s_options[i];
        //  A switch's metavar is its optional "=value".
        fprintf(f, "  %s%s%s\n      env %s", opt->flag, opt->type == S_BOOL ? "" : " ",
                opt->metavar, opt->env);
        if (opt->key) {
            fprintf(f, ", file %s", opt->key);
        }
        //  Only static defaults are printed, never a loaded value: a secret
        //  has no default text to show.
        fprintf(f, ", default %s\n", opt->def ? opt->def : opt->unset);
        fprintf(f, "      %s\n", opt->help);
    }
}

const char *
cd_config_agent_option(const cd_config_agent_t *agent, const char *key)
{
    if (!agent || !key) {
        return NULL;
    }
    for (size_t i = 0; i < agent->n_options; i++) {
        if (strcmp(agent->options[i].key, key) == 0) {
            return agent->options[i].value;
        }
    }
    return NULL;
}
