/*  test_config: cd_config, the node's configuration.

    Every test passes its own argv and environ-style array, so the real
    environment is never read. Config files are written into a mkdtemp
    directory that the group teardown removes. Bad values are table-driven:
    each row must fail with CD_ECONFIG and a message that names the option
    (flag, variable or file key) and quotes the value. */
#include "cd_config.h"
#include "cd_error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_dir[64]; //  the mkdtemp directory for config files

static int
s_setup(void **state)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/test_config.XXXXXX");
    return mkdtemp(s_dir) ? 0 : -1;
}

static int
s_teardown(void **state)
{
    DIR *dir = opendir(s_dir);
    if (!dir) {
        return -1;
    }
    for (struct dirent *entry = readdir(dir); entry; entry = readdir(dir)) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s", s_dir, entry->d_name);
        if (rmdir(path) != 0) {
            unlink(path);
        }
    }
    closedir(dir);
    return rmdir(s_dir);
}

//  Writes a config file and returns its path (static; valid until the next
//  call).
static const char *
s_write(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

static int
s_count(char **list)
{
    int n = 0;
    while (list[n]) {
        n++;
    }
    return n;
}

//  Loads from a NULL-terminated argv (argv[0] included) and environ.
static int
s_load(char **argv, char **env, cd_config_t **cfg, char **err)
{
    return cd_config_load(s_count(argv), argv, env, cfg, err);
}

static cd_config_t *
s_load_ok(char **argv, char **env)
{
    cd_config_t *cfg = NULL;
    char *err = NULL;
    int rc = s_load(argv, env, &cfg, &err);
    if (rc != 0) {
        fail_msg("load failed: %s", err ? err : "(no message)");
    }
    assert_null(err);
    assert_non_null(cfg);
    return cfg;
}

//  Loads expecting CD_ECONFIG; returns the message (caller frees).
static char *
s_load_err(char **argv, char **env)
{
    cd_config_t *cfg = (cd_config_t *)(uintptr_t)1;
    char *err = NULL;
    int rc = s_load(argv, env, &cfg, &err);
    if (rc == 0) {
        cd_config_destroy(&cfg);
    }
    assert_int_equal(rc, CD_ECONFIG);
    assert_null(cfg);
    assert_non_null(err);
    return err;
}

static void
s_expect_err(char **argv, char **env, const char *part1, const char *part2)
{
    char *err = s_load_err(argv, env);
    if (!strstr(err, part1) || (part2 && !strstr(err, part2))) {
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err, part1, part2 ? part2 : "");
    }
    free(err);
}

//  CurveZMQ test keys (Z85). PK1 holds an '@', which peers must survive.
#define PK1 "h0u@z9*!t8FmiDtH@AFF:$41&XJ((QSE!Cp05Swy"
#define PK2 "XDEu&g+^V<:<j=-O7IPx>vOYc[iD[.OMHIEhwuiU"
#define SK1 "vU/>xR=cyx7*^0dJewB)hN[ZUP947vpCC3Jo!gUn"
#define SK2 "S0E@!93R6l*RSP<.G0xVy1%kyO>832^*NWci.CF2"

#define ARGV(...) ((char *[]){"cadred", __VA_ARGS__, NULL})
#define NOARGS ((char *[]){"cadred", NULL})
#define ENV(...) ((char *[]){__VA_ARGS__, NULL})
#define NOENV ((char *[]){NULL})

//  ---------------------------------------------------------------------------

static void
test_config_defaults(void **state)
{
    cd_config_t *cfg = s_load_ok(NOARGS, NOENV);
    assert_string_equal(cfg->data_dir, "./var");
    assert_string_equal(cfg->http_addr, "127.0.0.1:8080");
    assert_null(cfg->database_url);
    assert_null(cfg->admin_password);
    assert_string_equal(cfg->log_level, "info");
    assert_null(cfg->node_id);
    assert_null(cfg->tls_cert);
    assert_null(cfg->tls_key);
    assert_null(cfg->worker_addr);
    assert_null(cfg->cluster_addr);
    assert_null(cfg->curve_secret_key);
    assert_null(cfg->curve_allowed_keys);
    assert_false(cfg->allow_insecure_tcp);
    assert_int_equal(cfg->n_peers, 0);
    assert_null(cfg->peers);
    assert_int_equal(cfg->queue_hwm, 1000);
    assert_int_equal(cfg->send_timeout_ms, 1000);
    assert_int_equal(cfg->heartbeat_ivl_ms, 1000);
    assert_int_equal(cfg->heartbeat_timeout_ms, 5000);
    assert_int_equal(cfg->restart_max, 5);
    assert_int_equal(cfg->restart_window_s, 10);
    assert_int_equal(cfg->stop_timeout_ms, 5000);
    assert_int_equal(cfg->http_max_body_bytes, 1048576);
    assert_int_equal(cfg->http_max_header_bytes, 16384);
    assert_int_equal(cfg->http_max_streams, 100);
    assert_int_equal(cfg->http_request_timeout_ms, 10000);
    assert_int_equal(cfg->http_idle_timeout_ms, 30000);
    assert_int_equal(cfg->http_max_requests_per_conn_s, 0);
    assert_int_equal(cfg->persist_batch_max, 500);
    assert_int_equal(cfg->persist_batch_wait_ms, 5);
    assert_int_equal(cfg->persist_queue_limit, 20000);
    assert_int_equal(cfg->persist_wait_timeout_ms, 10000);
    assert_int_equal(cfg->events_retention_days, 30);
    assert_int_equal(cfg->stats_retention_days, 30);
    assert_null(cfg->config_path);
    assert_false(cfg->help);
    assert_false(cfg->version);
    assert_int_equal(cfg->n_args, 0);
    cd_config_destroy(&cfg);
    assert_null(cfg);

    //  NULL argv and env are an empty command line and environment.
    assert_int_equal(cd_config_load(0, NULL, NULL, &cfg, NULL), 0);
    assert_string_equal(cfg->data_dir, "./var");
    cd_config_destroy(&cfg);
}

static void
test_config_default_echo_agent(void **state)
{
    cd_config_t *cfg = s_load_ok(NOARGS, NOENV);
    assert_int_equal(cfg->n_agents, 1);
    assert_string_equal(cfg->agents[0].name, "echo");
    assert_string_equal(cfg->agents[0].kind, "echo");
    assert_null(cfg->agents[0].role);
    assert_int_equal(cfg->agents[0].concurrency, 1);
    assert_int_equal(cfg->agents[0].n_options, 0);
    cd_config_destroy(&cfg);

    //  An empty agents section configures none, so the default still applies.
    const char *path = s_write("empty-agents.cfg", "agents\nnode\n    id = n1\n");
    cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_int_equal(cfg->n_agents, 1);
    assert_string_equal(cfg->agents[0].name, "echo");
    cd_config_destroy(&cfg);
}

//  Each pair of sources, for a scalar of each kind.
static void
test_config_precedence(void **state)
{
    const char *path = s_write("prec.cfg", "node\n"
                                           "    data_dir = /from/file\n"
                                           "    log_level = error\n"
                                           "queue\n"
                                           "    hwm = 11\n"
                                           "    send_timeout_ms = 11\n"
                                           "database\n"
                                           "    url = postgresql://file/db\n");
    char config_env[600];
    snprintf(config_env, sizeof config_env, "CADRE_CONFIG=%s", path);

    //  file over default
    cd_config_t *cfg = s_load_ok(NOARGS, ENV(config_env));
    assert_string_equal(cfg->config_path, path);
    assert_string_equal(cfg->data_dir, "/from/file");
    assert_string_equal(cfg->log_level, "error");
    assert_int_equal(cfg->queue_hwm, 11);
    assert_string_equal(cfg->database_url, "postgresql://file/db");
    assert_string_equal(cfg->http_addr, "127.0.0.1:8080");
    cd_config_destroy(&cfg);

    //  env over file
    cfg = s_load_ok(NOARGS, ENV(config_env, "CADRE_DATA_DIR=/from/env", "CADRE_LOG_LEVEL=debug",
                                "CADRE_QUEUE_HWM=22", "DATABASE_URL=postgresql://env/db"));
    assert_string_equal(cfg->data_dir, "/from/env");
    assert_string_equal(cfg->log_level, "debug");
    assert_int_equal(cfg->queue_hwm, 22);
    assert_int_equal(cfg->send_timeout_ms, 11);
    assert_string_equal(cfg->database_url, "postgresql://env/db");
    cd_config_destroy(&cfg);

    //  flag over env
    cfg = s_load_ok(ARGV("--data-dir", "/from/flag", "--queue-hwm=33", "--log-level", "warn"),
                    ENV("CADRE_DATA_DIR=/from/env", "CADRE_QUEUE_HWM=22", "CADRE_LOG_LEVEL=debug"));
    assert_string_equal(cfg->data_dir, "/from/flag");
    assert_int_equal(cfg->queue_hwm, 33);
    assert_string_equal(cfg->log_level, "warn");
    cd_config_destroy(&cfg);

    //  flag over file
    cfg = s_load_ok(ARGV("--config", (char *)path, "--data-dir", "/from/flag", "--queue-hwm", "44"),
                    NOENV);
    assert_string_equal(cfg->data_dir, "/from/flag");
    assert_int_equal(cfg->queue_hwm, 44);
    assert_int_equal(cfg->send_timeout_ms, 11);
    cd_config_destroy(&cfg);

    //  all three: the flag wins, and the last of repeated flags
    cfg = s_load_ok(ARGV("--queue-hwm", "55", "--queue-hwm", "66"),
                    ENV(config_env, "CADRE_QUEUE_HWM=22"));
    assert_int_equal(cfg->queue_hwm, 66);
    cd_config_destroy(&cfg);
}

static void
test_config_config_path_flag_over_env(void **state)
{
    const char *path = s_write("good.cfg", "queue\n    hwm = 77\n");
    char good[600];
    snprintf(good, sizeof good, "%s", path);
    char missing_env[600];
    snprintf(missing_env, sizeof missing_env, "CADRE_CONFIG=%s/missing.cfg", s_dir);

    //  With --config, CADRE_CONFIG's (missing) file is never opened.
    cd_config_t *cfg = s_load_ok(ARGV("--config", good), ENV(missing_env));
    assert_int_equal(cfg->queue_hwm, 77);
    assert_string_equal(cfg->config_path, good);
    cd_config_destroy(&cfg);

    char *err = s_load_err(NOARGS, ENV(missing_env));
    assert_non_null(strstr(err, "missing.cfg: cannot read: No such file or directory"));
    free(err);
}

static void
test_config_flag_forms(void **state)
{
    cd_config_t *cfg = s_load_ok(ARGV("--node-id=n1", "--http-addr", "[::1]:9090",
                                      "--data-dir=--odd", "--send-timeout-ms=0"),
                                 NOENV);
    assert_string_equal(cfg->node_id, "n1");
    assert_string_equal(cfg->http_addr, "[::1]:9090");
    assert_string_equal(cfg->data_dir, "--odd");
    assert_int_equal(cfg->send_timeout_ms, 0);
    cd_config_destroy(&cfg);

    //  Log levels are stored in one canonical spelling.
    cfg = s_load_ok(ARGV("--log-level", "WARNING"), NOENV);
    assert_string_equal(cfg->log_level, "warn");
    cd_config_destroy(&cfg);

    cfg = s_load_ok(ARGV("--worker-addr", "tcp://*:7001", "--cluster-addr=tcp://10.0.0.1:7000",
                         "--tls-cert", "/c.pem", "--tls-key", "/k.pem", "--curve-secret-key", SK1,
                         "--curve-allowed-keys", PK1 "," PK2, "--admin-password", "pw",
                         "--heartbeat-ivl-ms", "10", "--heartbeat-timeout-ms", "11",
                         "--restart-max", "0", "--restart-window-s", "86400", "--stop-timeout-ms",
                         "100", "--queue-hwm", "10000000"),
                    NOENV);
    assert_string_equal(cfg->worker_addr, "tcp://*:7001");
    assert_string_equal(cfg->cluster_addr, "tcp://10.0.0.1:7000");
    assert_string_equal(cfg->tls_cert, "/c.pem");
    assert_string_equal(cfg->tls_key, "/k.pem");
    assert_string_equal(cfg->curve_secret_key, SK1);
    assert_string_equal(cfg->curve_allowed_keys, PK1 "," PK2);
    assert_string_equal(cfg->admin_password, "pw");
    assert_int_equal(cfg->heartbeat_ivl_ms, 10);
    assert_int_equal(cfg->heartbeat_timeout_ms, 11);
    assert_int_equal(cfg->restart_max, 0);
    assert_int_equal(cfg->restart_window_s, 86400);
    assert_int_equal(cfg->stop_timeout_ms, 100);
    assert_int_equal(cfg->queue_hwm, 10000000);
    cd_config_destroy(&cfg);
}

static void
test_config_help_version_and_args(void **state)
{
    cd_config_t *cfg = s_load_ok(ARGV("-h"), NOENV);
    assert_true(cfg->help);
    cd_config_destroy(&cfg);

    //  Help and version work even when the environment is broken.
    cfg = s_load_ok(ARGV("--help"), ENV("CADRE_QUEUE_HWM=abc", "CADRE_CONFIG=/nonexistent"));
    assert_true(cfg->help);
    assert_false(cfg->version);
    assert_int_equal(cfg->queue_hwm, 1000);
    assert_int_equal(cfg->n_agents, 1);
    cd_config_destroy(&cfg);

    cfg = s_load_ok(ARGV("--version"), NOENV);
    assert_true(cfg->version);
    cd_config_destroy(&cfg);

    cfg = s_load_ok(ARGV("run", "--queue-hwm", "5", "-", "--", "--help", "x"), NOENV);
    assert_false(cfg->help);
    assert_int_equal(cfg->queue_hwm, 5);
    assert_int_equal(cfg->n_args, 4);
    assert_string_equal(cfg->args[0], "run");
    assert_string_equal(cfg->args[1], "-");
    assert_string_equal(cfg->args[2], "--help");
    assert_string_equal(cfg->args[3], "x");
    cd_config_destroy(&cfg);
}

static void
test_config_empty_env_is_unset(void **state)
{
    cd_config_t *cfg = s_load_ok(NOARGS, ENV("CADRE_TLS_CERT=", "CADRE_QUEUE_HWM=", "CADRE_CONFIG=",
                                             "CADRE_AGENTS=", "CADRE_BUILD_DIR=/not/an/option",
                                             "CADRE_DATA_DIR=/first", "CADRE_DATA_DIR=/second"));
    assert_null(cfg->tls_cert);
    assert_int_equal(cfg->queue_hwm, 1000);
    assert_null(cfg->config_path);
    assert_int_equal(cfg->n_agents, 1);
    //  As getenv: the first entry of a name wins.
    assert_string_equal(cfg->data_dir, "/first");
    cd_config_destroy(&cfg);
}

//  ---------------------------------------------------------------------------
//  Bad values, table-driven.

typedef struct {
    const char *flag; //  the option
    const char *env;  //  its variable
    long min;         //  smallest valid value
    long max;         //  largest valid value
    const char *also; //  "--flag=value" another option needs for both bounds to load, or NULL
} s_int_option_t;

static const s_int_option_t s_int_options[] = {
    {"--queue-hwm", "CADRE_QUEUE_HWM", 1, 10000000},
    {"--send-timeout-ms", "CADRE_SEND_TIMEOUT_MS", 0, 600000},
    {"--heartbeat-ivl-ms", "CADRE_HEARTBEAT_IVL_MS", 10, 600000},
    {"--heartbeat-timeout-ms", "CADRE_HEARTBEAT_TIMEOUT_MS", 1, 3600000},
    {"--restart-max", "CADRE_RESTART_MAX", 0, 1000},
    {"--restart-window-s", "CADRE_RESTART_WINDOW_S", 1, 86400},
    {"--stop-timeout-ms", "CADRE_STOP_TIMEOUT_MS", 100, 600000},
    {"--http-max-body-bytes", "CADRE_HTTP_MAX_BODY_BYTES", 1, 1073741824},
    {"--http-max-header-bytes", "CADRE_HTTP_MAX_HEADER_BYTES", 1024, 1048576},
    {"--http-max-streams", "CADRE_HTTP_MAX_STREAMS", 1, 100},
    {"--http-request-timeout-ms", "CADRE_HTTP_REQUEST_TIMEOUT_MS", 1, 600000},
    {"--http-idle-timeout-ms", "CADRE_HTTP_IDLE_TIMEOUT_MS", 1, 3600000},
    {"--http-max-requests-per-conn-s", "CADRE_HTTP_MAX_REQUESTS_PER_CONN_S", 0, 1000000},
    {"--persist-batch-max", "CADRE_PERSIST_BATCH_MAX", 1, 5000},
    {"--persist-batch-wait-ms", "CADRE_PERSIST_BATCH_WAIT_MS", 1, 1000},
    //  A queue of 1 needs a batch of 1 (the queue holds at least a batch).
    {"--persist-queue-limit", "CADRE_PERSIST_QUEUE_LIMIT", 1, 1000000, "--persist-batch-max=1"},
    {"--persist-wait-timeout-ms", "CADRE_PERSIST_WAIT_TIMEOUT_MS", 100, 3600000},
    {"--events-retention-days", "CADRE_EVENTS_RETENTION_DAYS", 0, 3650},
    {"--stats-retention-days", "CADRE_STATS_RETENTION_DAYS", 0, 3650},
};

static void
test_config_rejects_bad_integers(void **state)
{
    static const char *const not_ints[] = {"abc",  "12x", " 5",  "5 ", "1.5",
                                           "0x10", "+5",  "1e3", "-"};
    for (size_t o = 0; o < sizeof s_int_options / sizeof s_int_options[0]; o++) {
        const s_int_option_t *opt = &s_int_options[o];
        for (size_t v = 0; v < sizeof not_ints / sizeof not_ints[0]; v++) {
            char expect[160];
            snprintf(expect, sizeof expect, "%s: '%s' is not an integer (expected %ld..%ld)",
                     opt->flag, not_ints[v], opt->min, opt->max);
            s_expect_err(ARGV((char *)opt->flag, (char *)not_ints[v]), NOENV, expect, NULL);
            char env[160];
            snprintf(env, sizeof env, "%s=%s", opt->env, not_ints[v]);
            snprintf(expect, sizeof expect, "%s: '%s' is not an integer", opt->env, not_ints[v]);
            s_expect_err(NOARGS, ENV(env), expect, NULL);
        }
        char low[32], high[32];
        snprintf(low, sizeof low, "%ld", opt->min - 1);
        snprintf(high, sizeof high, "%ld", opt->max + 1);
        const char *const out_of_range[] = {low, high, "99999999999999999999999",
                                            "-99999999999999999999999"};
        for (size_t v = 0; v < 4; v++) {
            char expect[160];
            snprintf(expect, sizeof expect, "%s: '%s' is out of range (expected %ld..%ld)",
                     opt->flag, out_of_range[v], opt->min, opt->max);
            s_expect_err(ARGV((char *)opt->flag, (char *)out_of_range[v]), NOENV, expect, NULL);
        }
        //  The bounds themselves are accepted (the heartbeat pair aside,
        //  which has its own test).
        if (strstr(opt->flag, "heartbeat") == NULL) {
            snprintf(low, sizeof low, "%ld", opt->min);
            snprintf(high, sizeof high, "%ld", opt->max);
            //  A NULL `also` ends argv early.
            char *also = (char *)opt->also;
            cd_config_t *cfg = s_load_ok(ARGV((char *)opt->flag, low, also), NOENV);
            cd_config_destroy(&cfg);
            cfg = s_load_ok(ARGV((char *)opt->flag, high, also), NOENV);
            cd_config_destroy(&cfg);
        }
    }
}

typedef struct {
    const char *flag;   //  option under test
    const char *value;  //  a bad value for it
    const char *expect; //  a further substring the message must contain
} s_bad_t;

static const s_bad_t s_bad_values[] = {
    {"--log-level", "loud", "is not one of debug, info, warn, error, off"},
    {"--log-level", "", "empty value"},
    {"--http-addr", "localhost", "is not HOST:PORT"},
    {"--http-addr", "localhost:", "is not HOST:PORT"},
    {"--http-addr", ":8080", "is not HOST:PORT"},
    {"--http-addr", "localhost:-0", "is not HOST:PORT"},
    {"--http-addr", "localhost:+80", "is not HOST:PORT"},
    {"--http-addr", "localhost:65536", "is not HOST:PORT"},
    {"--http-addr", "localhost:http", "is not HOST:PORT"},
    {"--http-addr", "::1:8080", "IPv6 as [::1]:8080"},
    {"--http-addr", "[::1:8080", "is not HOST:PORT"},
    {"--http-addr", "[::1]", "is not HOST:PORT"},
    {"--http-addr", "[zz]:80", "is not HOST:PORT"},
    {"--http-addr", "[]:80", "is not HOST:PORT"},
    {"--http-addr", "host name:80", "is not HOST:PORT"},
    {"--http-addr", "*:8080", "is not HOST:PORT"},
    {"--worker-addr", "localhost:7000", "is not a tcp endpoint"},
    {"--worker-addr", "http://h:1", "is not a tcp endpoint"},
    {"--worker-addr", "tcp://h", "is not a tcp endpoint"},
    {"--worker-addr", "tcp://:1", "is not a tcp endpoint"},
    {"--worker-addr", "tcp://h:0", "is not a tcp endpoint"},
    {"--cluster-addr", "tcp://h:70000", "is not a tcp endpoint"},
    {"--cluster-addr", "tcp://h:-1", "is not a tcp endpoint"},
    {"--cluster-addr", "ipc:///tmp/x", "is not a tcp endpoint"},
    {"--node-id", "Node1", "is not a valid id"},
    {"--node-id", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "is not a valid id"},
    {"--node-id", "a b", "is not a valid id"},
    {"--node-id", "a.b", "is not a valid id"},
    {"--node-id", "", "empty value"},
    {"--data-dir", "", "empty value"},
    {"--database-url", "", "empty value"},
    {"--tls-cert", "", "empty value"},
    {"--agent", "", "empty value"},
    {"--agent", "coder", "is not NAME:KIND[:ROLE[:CONCURRENCY]]"},
    {"--agent", "coder:", "agent kind '' is not 1-64"},
    {"--agent", ":echo", "agent name '' is not 1-64"},
    {"--agent", "Coder:echo", "agent name 'Coder'"},
    {"--agent", "coder:Echo", "agent kind 'Echo'"},
    {"--agent", "coder:echo:Role", "agent role 'Role'"},
    {"--agent", "coder:echo:r:0", "concurrency '0' is not an integer in 1..1024"},
    {"--agent", "coder:echo:r:1025", "concurrency '1025'"},
    {"--agent", "coder:echo:r:x", "concurrency 'x'"},
    {"--agent", "coder:echo:r:1:extra", "too many fields"},
    {"--agent", "a:echo,b:echo,a:llm", "duplicate agent 'a'"},
    {"--peer", "n2", "is not ID=[KEY@]tcp://HOST:PORT"},
    {"--peer", "n2=abc@tcp://h:1", "the public key before '@' is not 40 Z85 characters"},
    {"--peer", "n2=" SK1 "x@tcp://h:1", "is not 40 Z85 characters"},
    {"--peer",
     "n2="
     "h0u@z9*!t8FmiDtH@AFF:$41&XJ((QSE!Cp05Sw\"@tcp://h:1",
     "is not a Z85 key"},
    {"--peer", "n2=", "is not a tcp endpoint"},
    {"--peer", "=tcp://h:1", "peer id '' is not 1-64"},
    {"--peer", "N2=tcp://h:1", "peer id 'N2'"},
    {"--peer", "n2=http://h:1", "is not a tcp endpoint"},
    {"--peer", "n2=tcp://*:1", "is not a tcp endpoint"},
    {"--peer", "n2=tcp://a:1,n2=tcp://b:1", "duplicate peer 'n2'"},
};

static void
test_config_rejects_bad_values(void **state)
{
    for (size_t i = 0; i < sizeof s_bad_values / sizeof s_bad_values[0]; i++) {
        const s_bad_t *bad = &s_bad_values[i];
        char name[64];
        snprintf(name, sizeof name, "%s: ", bad->flag);
        char quoted[128];
        snprintf(quoted, sizeof quoted, "'%s", bad->value);
        char *err = s_load_err(ARGV((char *)bad->flag, (char *)bad->value), NOENV);
        if (strncmp(err, name, strlen(name)) != 0 || !strstr(err, bad->expect) ||
            (bad->value[0] && !strchr(bad->value, ',') && !strstr(err, quoted))) {
            fail_msg("%s '%s': message \"%s\" lacks the option, value or \"%s\"", bad->flag,
                     bad->value, err, bad->expect);
        }
        free(err);
    }
    //  The message examples of the header, verbatim.
    char *err = s_load_err(ARGV("--queue-hwm", "abc"), NOENV);
    assert_string_equal(err, "--queue-hwm: 'abc' is not an integer (expected 1..10000000)");
    free(err);
    err = s_load_err(NOARGS, ENV("CADRE_LOG_LEVEL=loud"));
    assert_string_equal(err, "CADRE_LOG_LEVEL: 'loud' is not one of debug, info, warn, error, off");
    free(err);
}

static void
test_config_rejects_bad_env_lists(void **state)
{
    s_expect_err(NOARGS, ENV("CADRE_AGENTS=a:echo, a:llm"), "CADRE_AGENTS: duplicate agent 'a'",
                 NULL);
    s_expect_err(NOARGS, ENV("CADRE_AGENTS=a"), "CADRE_AGENTS: 'a' is not NAME:KIND", NULL);
    s_expect_err(NOARGS, ENV("CADRE_PEERS=n2=tcp://h:1,n2=tcp://h:2"),
                 "CADRE_PEERS: duplicate peer 'n2'", NULL);
    s_expect_err(NOARGS, ENV("CADRE_HTTP_ADDR=nope"), "CADRE_HTTP_ADDR: 'nope'", NULL);
    s_expect_err(NOARGS, ENV("CADRE_NODE_ID=X"), "CADRE_NODE_ID: 'X'", NULL);
    s_expect_err(NOARGS, ENV("CADRE_WORKER_ADDR=tcp://h"), "CADRE_WORKER_ADDR: 'tcp://h'", NULL);
    //  Repeated --agent flags accumulate and are checked together.
    s_expect_err(ARGV("--agent", "a:echo", "--agent", "a:llm"), NOENV,
                 "--agent: duplicate agent 'a'", NULL);
}

static void
test_config_rejects_bad_flags(void **state)
{
    s_expect_err(ARGV("--bogus"), NOENV, "--bogus: unknown option", NULL);
    s_expect_err(ARGV("--bogus=1"), NOENV, "--bogus: unknown option", NULL);
    s_expect_err(ARGV("-x"), NOENV, "-x: unknown option", NULL);
    s_expect_err(ARGV("-data-dir", "x"), NOENV, "-data-dir: unknown option", NULL);
    s_expect_err(ARGV("--queue-hwm"), NOENV, "--queue-hwm: missing value", NULL);
    s_expect_err(ARGV("--data-dir", "--http-addr", "h:1"), NOENV, "--data-dir: missing value",
                 "--http-addr");
    s_expect_err(ARGV("--help=yes"), NOENV, "--help: takes no value", NULL);
    s_expect_err(ARGV("--version=1"), NOENV, "--version: takes no value", NULL);
    s_expect_err(ARGV("--config="), NOENV, "--config: empty value", NULL);

    //  A mistyped secret flag is named, its value never echoed.
    char *err = s_load_err(ARGV("--admin-pasword=hunter2"), NOENV);
    assert_non_null(strstr(err, "--admin-pasword"));
    assert_null(strstr(err, "hunter2"));
    free(err);
}

static void
test_config_tls_needs_cert_and_key(void **state)
{
    s_expect_err(ARGV("--tls-cert", "/c.pem"), NOENV, "--tls-cert is set but --tls-key", NULL);
    s_expect_err(NOARGS, ENV("CADRE_TLS_KEY=/k.pem"), "CADRE_TLS_KEY is set but --tls-cert",
                 "CADRE_TLS_CERT");
    const char *path = s_write("tls.cfg", "http\n    tls_cert = /c.pem\n");
    s_expect_err(ARGV("--config", (char *)path), NOENV, "http/tls_cert in config file", path);

    cd_config_t *cfg = s_load_ok(ARGV("--config", (char *)path), ENV("CADRE_TLS_KEY=/k.pem"));
    assert_string_equal(cfg->tls_cert, "/c.pem");
    assert_string_equal(cfg->tls_key, "/k.pem");
    cd_config_destroy(&cfg);
}

static void
test_config_heartbeat_timeout_exceeds_interval(void **state)
{
    //  Equal is rejected; both sources are named.
    s_expect_err(ARGV("--heartbeat-timeout-ms", "1000"), NOENV,
                 "heartbeat timeout 1000 (--heartbeat-timeout-ms) must be greater than the "
                 "heartbeat interval 1000 (default of --heartbeat-ivl-ms)",
                 NULL);
    s_expect_err(NOARGS, ENV("CADRE_HEARTBEAT_IVL_MS=6000"), "(default of --heartbeat-timeout-ms)",
                 "interval 6000 (CADRE_HEARTBEAT_IVL_MS)");
    const char *path = s_write("hb.cfg", "supervisor\n    heartbeat_timeout_ms = 500\n");
    s_expect_err(ARGV("--config", (char *)path), NOENV,
                 "supervisor/heartbeat_timeout_ms in config file", NULL);

    cd_config_t *cfg = s_load_ok(ARGV("--heartbeat-timeout-ms", "1001"), NOENV);
    assert_int_equal(cfg->heartbeat_timeout_ms, 1001);
    cd_config_destroy(&cfg);
}

//  ---------------------------------------------------------------------------
//  The config file.

static void
test_config_file_errors(void **state)
{
    static const struct {
        const char *text;   //  file content
        const char *expect; //  after "config file <path>: "
    } cases[] = {
        {"node\n    dta_dir = x\n", "node/dta_dir: unknown key"},
        {"nodes\n    id = n1\n", "nodes: unknown key"},
        {"data_dir = x\n", "data_dir: unknown key"},
        {"queue\n    hwm = abc\n", "queue/hwm: 'abc' is not an integer (expected 1..10000000)"},
        {"queue\n    hwm = 0\n", "queue/hwm: '0' is out of range"},
        {"persist\n    batch_max = 0\n",
         "persist/batch_max: '0' is out of range (expected 1..5000)"},
        {"persist = 5\n", "persist: is a section and takes no value"},
        {"queue\n    hwm\n", "queue/hwm: empty value"},
        {"node\n    log_level = loud\n", "node/log_level: 'loud' is not one of"},
        {"node\n    id = n1\n    id = n2\n", "node/id: duplicate key"},
        {"node\n    id = n1\nnode/id = n2\n", "node/id: duplicate key"},
        {"node = x\n", "node: is a section and takes no value"},
        {"node\n    data_dir\n        x = 1\n", "node/data_dir: expected a value, not a section"},
        {"node\n  id = n1\n", "not valid ZPL"},
        {"node\n    id = \"n1\n", "not valid ZPL"},
        {"agents = a:echo\n", "agents: expected a section"},
        {"agents\n    coder\n        role = r\n", "agents/coder: kind is required"},
        {"agents\n    coder\n        kind = echo\n        colour = red\n",
         "agents/coder/colour: unknown key"},
        {"agents\n    coder\n        kind = echo\n        kind = llm\n",
         "agents/coder/kind: duplicate key"},
        {"agents\n    coder\n        kind = echo\n        concurrency = 0\n",
         "agents/coder/concurrency: '0' is not an integer in 1..1024"},
        {"agents\n    coder\n        kind\n            x = 1\n",
         "agents/coder/kind: expected a value, not a section"},
        {"agents\n    coder\n        kind = echo\n        config = x\n",
         "agents/coder/config: expected a section"},
        {"agents\n    coder\n        kind = echo\n        config\n            a\n"
         "                b = 1\n",
         "agents/coder/config/a: agent config values are strings"},
        {"agents\n    coder\n        kind = echo\n        config\n            a = 1\n"
         "            a = 2\n",
         "agents/coder/config/a: duplicate key"},
        {"agents\n    Coder\n        kind = echo\n", "agents/Coder: agent name 'Coder'"},
        {"agents\n    coder = echo\n", "agents/coder: an agent is a section"},
        {"agents\n    a\n        kind = echo\n    a\n        kind = llm\n",
         "agents/a: duplicate agent 'a'"},
        {"agents\n    a\n        kind = echo\nagents\n    b\n        kind = echo\n",
         "agents: duplicate key"},
        {"cluster\n    peers\n        n2 = http://h:1\n", "cluster/peers/n2: 'n2 = http://h:1'"},
        {"cluster\n    peers\n        n2\n            x = 1\n", "cluster/peers/n2: expected id"},
        {"cluster\n    peers = n2=tcp://h:1\n    peers\n        n3 = tcp://h:1\n",
         "cluster/peers: duplicate key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = s_write("bad.cfg", cases[i].text);
        char expect[600];
        snprintf(expect, sizeof expect, "config file %s: %s", path, cases[i].expect);
        char *err = s_load_err(ARGV("--config", (char *)path), NOENV);
        if (strncmp(err, expect, strlen(expect)) != 0) {
            fail_msg("case %zu: got \"%s\", expected \"%s...\"", i, err, expect);
        }
        free(err);
    }
}

static void
test_config_missing_config_file(void **state)
{
    char path[600];
    snprintf(path, sizeof path, "%s/nope.cfg", s_dir);
    char expect[700];
    snprintf(expect, sizeof expect, "config file %s: cannot read: No such file or directory", path);
    char *err = s_load_err(ARGV("--config", path), NOENV);
    assert_string_equal(err, expect);
    free(err);

    //  A directory is not a config file.
    snprintf(expect, sizeof expect, "config file %s: cannot read: not a regular file", s_dir);
    err = s_load_err(ARGV("--config", s_dir), NOENV);
    assert_string_equal(err, expect);
    free(err);
}

static void
test_config_file_rejects_nul_and_huge(void **state)
{
    char path[600];
    snprintf(path, sizeof path, "%s/nul.cfg", s_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite("node\n\0    id = x\n", 1, 17, f);
    fclose(f);
    s_expect_err(ARGV("--config", path), NOENV, "contains a NUL byte", NULL);

    snprintf(path, sizeof path, "%s/huge.cfg", s_dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), CD_CONFIG_FILE_MAX + 1), 0);
    fclose(f);
    s_expect_err(ARGV("--config", path), NOENV, "larger than", NULL);
}

static void
test_config_file_sets_every_option(void **state)
{
    const char *path = s_write("all.cfg", "# a comment\n"
                                          "node\n"
                                          "    id = n1          # trailing comment\n"
                                          "    data_dir = \"/srv/cadre data\"\n"
                                          "    log_level = off\n"
                                          "    admin_password = 'pw'\n"
                                          "http\n"
                                          "    addr = [::]:8443\n"
                                          "    tls_cert = /c.pem\n"
                                          "    tls_key = /k.pem\n"
                                          "database\n"
                                          "    url = postgresql://u@h/db\n"
                                          "worker\n"
                                          "    addr = tcp://*:7001\n"
                                          "cluster\n"
                                          "    addr = tcp://0.0.0.0:7000\n"
                                          "curve\n"
                                          "    secret_key = \"" SK1 "\"\n"
                                          "    allowed_keys = \"" PK1 "\"\n"
                                          "queue\n"
                                          "    hwm = 5\n"
                                          "    send_timeout_ms = 6\n"
                                          "supervisor\n"
                                          "    heartbeat_ivl_ms = 100\n"
                                          "    heartbeat_timeout_ms = 300\n"
                                          "    restart_max = 7\n"
                                          "    restart_window_s = 8\n"
                                          "    stop_timeout_ms = 900\n"
                                          "supervisor/restart_max_typo_free = 1\n");
    //  The last line is a typo at the root in the one-line spelling: rejected.
    char *err = s_load_err(ARGV("--config", (char *)path), NOENV);
    assert_non_null(strstr(err, "supervisor/restart_max_typo_free: unknown key"));
    free(err);

    path = s_write("all.cfg", "node\n"
                              "    id = n1          # trailing comment\n"
                              "    data_dir = \"/srv/cadre data\"\n"
                              "    log_level = off\n"
                              "    admin_password = 'pw'\n"
                              "http\n"
                              "    addr = [::]:8443\n"
                              "    tls_cert = /c.pem\n"
                              "    tls_key = /k.pem\n"
                              "database\n"
                              "    url = postgresql://u@h/db\n"
                              "worker\n"
                              "    addr = tcp://*:7001\n"
                              "cluster\n"
                              "    addr = tcp://0.0.0.0:7000\n"
                              "curve\n"
                              "    secret_key = \"" SK1 "\"\n"
                              "    allowed_keys = '" PK1 "," PK2 "'\n"
                              "queue\n"
                              "    hwm = 5\n"
                              "    send_timeout_ms = 6\n"
                              "supervisor\n"
                              "    heartbeat_ivl_ms = 100\n"
                              "    heartbeat_timeout_ms = 300\n"
                              "    restart_window_s = 8\n"
                              "    stop_timeout_ms = 900\n"
                              "supervisor/restart_max = 7\n");
    cd_config_t *cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_string_equal(cfg->node_id, "n1");
    assert_string_equal(cfg->data_dir, "/srv/cadre data");
    assert_string_equal(cfg->log_level, "off");
    assert_string_equal(cfg->admin_password, "pw");
    assert_string_equal(cfg->http_addr, "[::]:8443");
    assert_string_equal(cfg->tls_cert, "/c.pem");
    assert_string_equal(cfg->tls_key, "/k.pem");
    assert_string_equal(cfg->database_url, "postgresql://u@h/db");
    assert_string_equal(cfg->worker_addr, "tcp://*:7001");
    assert_string_equal(cfg->cluster_addr, "tcp://0.0.0.0:7000");
    assert_string_equal(cfg->curve_secret_key, SK1);
    assert_string_equal(cfg->curve_allowed_keys, PK1 "," PK2);
    assert_int_equal(cfg->queue_hwm, 5);
    assert_int_equal(cfg->send_timeout_ms, 6);
    assert_int_equal(cfg->heartbeat_ivl_ms, 100);
    assert_int_equal(cfg->heartbeat_timeout_ms, 300);
    assert_int_equal(cfg->restart_max, 7);
    assert_int_equal(cfg->restart_window_s, 8);
    assert_int_equal(cfg->stop_timeout_ms, 900);
    cd_config_destroy(&cfg);

    //  An empty file is a valid file that sets nothing.
    path = s_write("empty.cfg", "");
    cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_string_equal(cfg->data_dir, "./var");
    cd_config_destroy(&cfg);
}

//  ---------------------------------------------------------------------------
//  Agents and peers.

static const char *const s_agents_file = "agents\n"
                                         "    coder\n"
                                         "        kind = echo\n"
                                         "        role = coder\n"
                                         "        concurrency = 2\n"
                                         "        config\n"
                                         "            sleep_ms = 0\n"
                                         "            handoff_to = reviewer\n"
                                         "    reviewer\n"
                                         "        kind = llm\n";

static void
test_config_agents_from_file_with_options(void **state)
{
    const char *path = s_write("agents.cfg", s_agents_file);
    cd_config_t *cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_int_equal(cfg->n_agents, 2);
    const cd_config_agent_t *coder = &cfg->agents[0];
    assert_string_equal(coder->name, "coder");
    assert_string_equal(coder->kind, "echo");
    assert_string_equal(coder->role, "coder");
    assert_int_equal(coder->concurrency, 2);
    assert_int_equal(coder->n_options, 2);
    assert_string_equal(coder->options[0].key, "sleep_ms");
    assert_string_equal(coder->options[0].value, "0");
    assert_string_equal(coder->options[1].key, "handoff_to");
    assert_string_equal(coder->options[1].value, "reviewer");
    assert_string_equal(cd_config_agent_option(coder, "handoff_to"), "reviewer");
    assert_string_equal(cd_config_agent_option(coder, "sleep_ms"), "0");
    assert_null(cd_config_agent_option(coder, "missing"));
    assert_null(cd_config_agent_option(coder, NULL));
    assert_null(cd_config_agent_option(NULL, "sleep_ms"));

    const cd_config_agent_t *reviewer = &cfg->agents[1];
    assert_string_equal(reviewer->name, "reviewer");
    assert_string_equal(reviewer->kind, "llm");
    assert_null(reviewer->role);
    assert_int_equal(reviewer->concurrency, 1);
    assert_int_equal(reviewer->n_options, 0);
    assert_null(cd_config_agent_option(reviewer, "sleep_ms"));
    cd_config_destroy(&cfg);
}

static void
test_config_agents_from_flags_replace_file(void **state)
{
    const char *path = s_write("agents.cfg", s_agents_file);

    //  env replaces the file's list
    cd_config_t *cfg =
        s_load_ok(ARGV("--config", (char *)path), ENV("CADRE_AGENTS= a:echo , b:exec:builder:3,"));
    assert_int_equal(cfg->n_agents, 2);
    assert_string_equal(cfg->agents[0].name, "a");
    assert_null(cfg->agents[0].role);
    assert_string_equal(cfg->agents[1].name, "b");
    assert_string_equal(cfg->agents[1].kind, "exec");
    assert_string_equal(cfg->agents[1].role, "builder");
    assert_int_equal(cfg->agents[1].concurrency, 3);
    cd_config_destroy(&cfg);

    //  flags replace both; repeated flags (and comma lists) accumulate
    cfg = s_load_ok(ARGV("--config", (char *)path, "--agent", "x:remote::1024", "--agent=y:echo",
                         "--agent", "z:llm:writer,coder:echo"),
                    ENV("CADRE_AGENTS=a:echo"));
    assert_int_equal(cfg->n_agents, 4);
    assert_string_equal(cfg->agents[0].name, "x");
    assert_string_equal(cfg->agents[0].kind, "remote");
    assert_null(cfg->agents[0].role);
    assert_int_equal(cfg->agents[0].concurrency, 1024);
    assert_string_equal(cfg->agents[1].name, "y");
    assert_string_equal(cfg->agents[2].name, "z");
    assert_string_equal(cfg->agents[2].role, "writer");
    //  The file's coder is gone, options and all: lists are never merged.
    assert_string_equal(cfg->agents[3].name, "coder");
    assert_int_equal(cfg->agents[3].n_options, 0);
    cd_config_destroy(&cfg);
}

static void
test_config_peers(void **state)
{
    cd_config_t *cfg = s_load_ok(
        ARGV("--peer", "n2=tcp://10.0.0.2:7000", "--peer=n3=tcp://[::1]:7000", "--node-id", "n1"),
        ENV("CADRE_PEERS=zz=tcp://h:1"));
    assert_int_equal(cfg->n_peers, 2);
    assert_string_equal(cfg->peers[0].node_id, "n2");
    assert_string_equal(cfg->peers[0].endpoint, "tcp://10.0.0.2:7000");
    assert_string_equal(cfg->peers[1].node_id, "n3");
    assert_string_equal(cfg->peers[1].endpoint, "tcp://[::1]:7000");
    cd_config_destroy(&cfg);

    cfg = s_load_ok(NOARGS, ENV("CADRE_PEERS=a=tcp://h:1, b=tcp://h:2 ,"));
    assert_int_equal(cfg->n_peers, 2);
    assert_string_equal(cfg->peers[1].node_id, "b");
    assert_string_equal(cfg->peers[1].endpoint, "tcp://h:2");
    cd_config_destroy(&cfg);

    const char *path = s_write("peers.cfg", "cluster\n"
                                            "    addr = tcp://*:7000\n"
                                            "    peers\n"
                                            "        n2 = tcp://10.0.0.2:7000\n"
                                            "        n3 = tcp://node-3.local:7000\n");
    cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_int_equal(cfg->n_peers, 2);
    assert_string_equal(cfg->peers[0].node_id, "n2");
    assert_string_equal(cfg->peers[1].endpoint, "tcp://node-3.local:7000");
    cd_config_destroy(&cfg);

    //  env replaces the file's list
    cfg = s_load_ok(ARGV("--config", (char *)path), ENV("CADRE_PEERS=n9=tcp://h:9"));
    assert_int_equal(cfg->n_peers, 1);
    assert_string_equal(cfg->peers[0].node_id, "n9");
    cd_config_destroy(&cfg);

    //  a comma list as the section's value works too
    path = s_write("peers2.cfg", "cluster\n    peers = a=tcp://h:1,b=tcp://h:2\n");
    cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_int_equal(cfg->n_peers, 2);
    cd_config_destroy(&cfg);

    //  A peer cannot carry this node's own id.
    s_expect_err(ARGV("--node-id", "n2", "--peer", "n2=tcp://h:1"), NOENV,
                 "--peer: peer 'n2' is this node's own id", NULL);
}

//  ---------------------------------------------------------------------------
//  --help.

static void
test_config_help_lists_every_option(void **state)
{
    //  The list from the issue, kept here by hand so that a row dropped from
    //  the table fails this test.
    static const char *const names[] = {
        "--help",
        "--version",
        "--config",
        "CADRE_CONFIG",
        "--data-dir",
        "CADRE_DATA_DIR",
        "--http-addr",
        "CADRE_HTTP_ADDR",
        "--database-url",
        "DATABASE_URL",
        "--admin-password",
        "CADRE_ADMIN_PASSWORD",
        "--log-level",
        "CADRE_LOG_LEVEL",
        "--node-id",
        "CADRE_NODE_ID",
        "--tls-cert",
        "CADRE_TLS_CERT",
        "--tls-key",
        "CADRE_TLS_KEY",
        "--worker-addr",
        "CADRE_WORKER_ADDR",
        "--cluster-addr",
        "CADRE_CLUSTER_ADDR",
        "--curve-secret-key",
        "CADRE_CURVE_SECRET_KEY",
        "--curve-allowed-keys",
        "CADRE_CURVE_ALLOWED_KEYS",
        "--allow-insecure-tcp",
        "CADRE_ALLOW_INSECURE_TCP",
        "cluster/allow_insecure_tcp",
        "--peer",
        "CADRE_PEERS",
        "--queue-hwm",
        "CADRE_QUEUE_HWM",
        "--send-timeout-ms",
        "CADRE_SEND_TIMEOUT_MS",
        "--heartbeat-ivl-ms",
        "CADRE_HEARTBEAT_IVL_MS",
        "--heartbeat-timeout-ms",
        "CADRE_HEARTBEAT_TIMEOUT_MS",
        "--restart-max",
        "CADRE_RESTART_MAX",
        "--restart-window-s",
        "CADRE_RESTART_WINDOW_S",
        "--stop-timeout-ms",
        "CADRE_STOP_TIMEOUT_MS",
        "--http-max-body-bytes",
        "CADRE_HTTP_MAX_BODY_BYTES",
        "--http-max-header-bytes",
        "CADRE_HTTP_MAX_HEADER_BYTES",
        "--http-max-streams",
        "CADRE_HTTP_MAX_STREAMS",
        "--http-request-timeout-ms",
        "CADRE_HTTP_REQUEST_TIMEOUT_MS",
        "--http-idle-timeout-ms",
        "CADRE_HTTP_IDLE_TIMEOUT_MS",
        "--http-max-requests-per-conn-s",
        "CADRE_HTTP_MAX_REQUESTS_PER_CONN_S",
        "http/max_body_bytes",
        "--persist-batch-max",
        "CADRE_PERSIST_BATCH_MAX",
        "persist/batch_max",
        "--persist-batch-wait-ms",
        "CADRE_PERSIST_BATCH_WAIT_MS",
        "persist/batch_wait_ms",
        "--persist-queue-limit",
        "CADRE_PERSIST_QUEUE_LIMIT",
        "persist/queue_limit",
        "--persist-wait-timeout-ms",
        "CADRE_PERSIST_WAIT_TIMEOUT_MS",
        "persist/wait_timeout_ms",
        "file persist/batch_max, default 500\n",
        "file persist/batch_wait_ms, default 5\n",
        "file persist/queue_limit, default 20000\n",
        "file persist/wait_timeout_ms, default 10000\n",
        "--events-retention-days",
        "CADRE_EVENTS_RETENTION_DAYS",
        "file persist/events_retention_days, default 30\n",
        "--stats-retention-days",
        "CADRE_STATS_RETENTION_DAYS",
        "file persist/stats_retention_days, default 30\n",
        "--agent",
        "CADRE_AGENTS",
        "default ./var",
        "default 127.0.0.1:8080",
        "default info",
        "default 1000",
        "default 5000",
        "default echo:echo",
        "node/data_dir",
        "agents",
        "Usage: mynode",
    };
    //  Secrets loaded before printing must not leak into the help text.
    cd_config_t *cfg =
        s_load_ok(ARGV("--admin-password", "hunter2-pw"), ENV("CADRE_CURVE_SECRET_KEY=" SK2));
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    cd_config_print_help(f, "mynode");
    assert_int_equal(fclose(f), 0);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strstr(text, names[i])) {
            fail_msg("--help lacks \"%s\":\n%s", names[i], text);
        }
    }
    assert_null(strstr(text, "hunter2-pw"));
    assert_null(strstr(text, SK2));
    assert_non_null(strstr(text, "mynode keygen [PATH]"));
    free(text);
    cd_config_destroy(&cfg);

    //  NULL argv0 falls back to the node's name.
    f = open_memstream(&text, &size);
    cd_config_print_help(f, NULL);
    fclose(f);
    assert_non_null(strstr(text, "Usage: cadred"));
    free(text);
}

//  The HTTP limits, each from a flag, the environment and the file; and
//  port 0 for the HTTP address (any free port) but not for tcp endpoints.
static void
test_config_http_limits(void **state)
{
    cd_config_t *cfg = s_load_ok(
        ARGV("--http-max-body-bytes", "2048", "--http-max-header-bytes=4096", "--http-max-streams",
             "8", "--http-request-timeout-ms", "250", "--http-idle-timeout-ms", "500",
             "--http-max-requests-per-conn-s", "50", "--http-addr", "127.0.0.1:0"),
        NOENV);
    assert_int_equal(cfg->http_max_body_bytes, 2048);
    assert_int_equal(cfg->http_max_header_bytes, 4096);
    assert_int_equal(cfg->http_max_streams, 8);
    assert_int_equal(cfg->http_request_timeout_ms, 250);
    assert_int_equal(cfg->http_idle_timeout_ms, 500);
    assert_int_equal(cfg->http_max_requests_per_conn_s, 50);
    assert_string_equal(cfg->http_addr, "127.0.0.1:0");
    cd_config_destroy(&cfg);

    cfg = s_load_ok(NOARGS, ENV("CADRE_HTTP_MAX_BODY_BYTES=3", "CADRE_HTTP_MAX_HEADER_BYTES=1024",
                                "CADRE_HTTP_MAX_STREAMS=1", "CADRE_HTTP_REQUEST_TIMEOUT_MS=7",
                                "CADRE_HTTP_IDLE_TIMEOUT_MS=9",
                                "CADRE_HTTP_MAX_REQUESTS_PER_CONN_S=1", "CADRE_HTTP_ADDR=[::1]:0"));
    assert_int_equal(cfg->http_max_body_bytes, 3);
    assert_int_equal(cfg->http_max_header_bytes, 1024);
    assert_int_equal(cfg->http_max_streams, 1);
    assert_int_equal(cfg->http_request_timeout_ms, 7);
    assert_int_equal(cfg->http_idle_timeout_ms, 9);
    assert_int_equal(cfg->http_max_requests_per_conn_s, 1);
    assert_string_equal(cfg->http_addr, "[::1]:0");
    cd_config_destroy(&cfg);

    const char *path = s_write("http.cfg", "http\n"
                                           "    addr = localhost:0\n"
                                           "    max_body_bytes = 11\n"
                                           "    max_header_bytes = 2000\n"
                                           "    max_streams = 12\n"
                                           "    request_timeout_ms = 13\n"
                                           "    idle_timeout_ms = 14\n"
                                           "    max_requests_per_conn_s = 15\n");
    cfg = s_load_ok(ARGV("--config", (char *)path, "--http-max-streams", "99"), NOENV);
    assert_int_equal(cfg->http_max_body_bytes, 11);
    assert_int_equal(cfg->http_max_header_bytes, 2000);
    assert_int_equal(cfg->http_max_streams, 99); //  the flag wins
    assert_int_equal(cfg->http_request_timeout_ms, 13);
    assert_int_equal(cfg->http_idle_timeout_ms, 14);
    assert_int_equal(cfg->http_max_requests_per_conn_s, 15);
    assert_string_equal(cfg->http_addr, "localhost:0");
    cd_config_destroy(&cfg);

    s_expect_err(ARGV("--worker-addr", "tcp://h:0"), NOENV, "is not a tcp endpoint", NULL);
}

//  The persist actor's limits: each from a flag, the environment and the
//  file, in that order of precedence; and the checks between them, which
//  name both options and where each value came from.
static void
test_config_persist_limits(void **state)
{
    cd_config_t *cfg =
        s_load_ok(ARGV("--persist-batch-max", "1", "--persist-batch-wait-ms=20",
                       "--persist-queue-limit", "50", "--persist-wait-timeout-ms", "250"),
                  NOENV);
    assert_int_equal(cfg->persist_batch_max, 1);
    assert_int_equal(cfg->persist_batch_wait_ms, 20);
    assert_int_equal(cfg->persist_queue_limit, 50);
    assert_int_equal(cfg->persist_wait_timeout_ms, 250);
    cd_config_destroy(&cfg);

    cfg = s_load_ok(NOARGS,
                    ENV("CADRE_PERSIST_BATCH_MAX=1000", "CADRE_PERSIST_BATCH_WAIT_MS=2",
                        "CADRE_PERSIST_QUEUE_LIMIT=1000", "CADRE_PERSIST_WAIT_TIMEOUT_MS=60000"));
    assert_int_equal(cfg->persist_batch_max, 1000);
    assert_int_equal(cfg->persist_batch_wait_ms, 2);
    assert_int_equal(cfg->persist_queue_limit, 1000);
    assert_int_equal(cfg->persist_wait_timeout_ms, 60000);
    cd_config_destroy(&cfg);

    const char *path = s_write("persist.cfg", "persist\n"
                                              "    batch_max = 64\n"
                                              "    batch_wait_ms = 10\n"
                                              "    queue_limit = 640\n"
                                              "    wait_timeout_ms = 3000\n");
    cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_int_equal(cfg->persist_batch_max, 64);
    assert_int_equal(cfg->persist_batch_wait_ms, 10);
    assert_int_equal(cfg->persist_queue_limit, 640);
    assert_int_equal(cfg->persist_wait_timeout_ms, 3000);
    cd_config_destroy(&cfg);

    //  flag over env over file, option by option
    cfg = s_load_ok(ARGV("--config", (char *)path, "--persist-batch-max", "32"),
                    ENV("CADRE_PERSIST_BATCH_MAX=16", "CADRE_PERSIST_BATCH_WAIT_MS=7"));
    assert_int_equal(cfg->persist_batch_max, 32);
    assert_int_equal(cfg->persist_batch_wait_ms, 7);
    assert_int_equal(cfg->persist_queue_limit, 640);
    assert_int_equal(cfg->persist_wait_timeout_ms, 3000);
    cd_config_destroy(&cfg);

    //  Bad values, from each source, name the option.
    s_expect_err(ARGV("--persist-batch-max", "0"), NOENV,
                 "--persist-batch-max: '0' is out of range (expected 1..5000)", NULL);
    s_expect_err(ARGV("--persist-batch-max=10001"), NOENV, "--persist-batch-max: '10001'", NULL);
    s_expect_err(NOARGS, ENV("CADRE_PERSIST_BATCH_WAIT_MS=0"),
                 "CADRE_PERSIST_BATCH_WAIT_MS: '0' is out of range (expected 1..1000)", NULL);
    s_expect_err(ARGV("--persist-queue-limit", "many"), NOENV,
                 "--persist-queue-limit: 'many' is not an integer (expected 1..1000000)", NULL);
    s_expect_err(NOARGS, ENV("CADRE_PERSIST_WAIT_TIMEOUT_MS=99"),
                 "CADRE_PERSIST_WAIT_TIMEOUT_MS: '99' is out of range (expected 100..3600000)",
                 NULL);
    path = s_write("persist-bad.cfg", "persist\n    batch_wait_ms = -5\n");
    s_expect_err(ARGV("--config", (char *)path), NOENV,
                 "persist/batch_wait_ms: '-5' is out of range", path);
    path = s_write("persist-bad.cfg", "persist\n    batch_size = 5\n");
    s_expect_err(ARGV("--config", (char *)path), NOENV, "persist/batch_size: unknown key", path);

    //  A queue smaller than a batch, and a wait timeout no longer than the
    //  batch wait, are refused; both sources are named.
    s_expect_err(ARGV("--persist-queue-limit", "499"), NOENV,
                 "persist queue limit 499 (--persist-queue-limit) must be at least the batch size "
                 "500 (default of --persist-batch-max)",
                 NULL);
    s_expect_err(NOARGS, ENV("CADRE_PERSIST_BATCH_MAX=5000", "CADRE_PERSIST_QUEUE_LIMIT=4999"),
                 "(CADRE_PERSIST_QUEUE_LIMIT) must be at least the batch size 5000 "
                 "(CADRE_PERSIST_BATCH_MAX)",
                 NULL);
    s_expect_err(ARGV("--persist-batch-wait-ms", "1000", "--persist-wait-timeout-ms", "1000"),
                 NOENV,
                 "persist wait timeout 1000 (--persist-wait-timeout-ms) must be greater than the "
                 "batch wait 1000 (--persist-batch-wait-ms)",
                 NULL);
    path = s_write("persist-pair.cfg", "persist\n    wait_timeout_ms = 100\n");
    s_expect_err(ARGV("--config", (char *)path, "--persist-batch-wait-ms", "100"), NOENV,
                 "persist/wait_timeout_ms in config file", "must be greater than the batch wait");
    //  Equal queue and batch is enough.
    cfg = s_load_ok(ARGV("--persist-batch-max", "500", "--persist-queue-limit", "500",
                         "--persist-batch-wait-ms", "99", "--persist-wait-timeout-ms", "100"),
                    NOENV);
    assert_int_equal(cfg->persist_queue_limit, 500);
    cd_config_destroy(&cfg);
}

static void
test_config_destroy_twice(void **state)
{
    const char *path = s_write("agents.cfg", s_agents_file);
    cd_config_t *cfg = s_load_ok(
        ARGV("--config", (char *)path, "--admin-password", "pw", "--peer", "n2=tcp://h:1", "sub"),
        NOENV);
    cd_config_destroy(&cfg);
    assert_null(cfg);
    cd_config_destroy(&cfg);
    assert_null(cfg);
    cd_config_destroy(NULL);
}

static void
test_config_errmsg_optional(void **state)
{
    cd_config_t *cfg = NULL;
    char *argv[] = {"cadred", "--queue-hwm", "abc", NULL};
    assert_int_equal(cd_config_load(3, argv, NULL, &cfg, NULL), CD_ECONFIG);
    assert_null(cfg);
}

static void
test_config_curve_keys_with_peers(void **state)
{
    //  A peer's key is the 40 characters before '@tcp://', even when the
    //  key holds an '@' itself.
    cd_config_t *cfg = s_load_ok(ARGV("--peer", "n2=" PK1 "@tcp://10.0.0.2:7000", "--peer",
                                      "n3=" PK2 "@tcp://[::1]:7000", "--curve-secret-key", SK1),
                                 NOENV);
    assert_int_equal(cfg->n_peers, 2);
    assert_string_equal(cfg->peers[0].public_key, PK1);
    assert_string_equal(cfg->peers[0].endpoint, "tcp://10.0.0.2:7000");
    assert_string_equal(cfg->peers[1].public_key, PK2);
    assert_string_equal(cfg->peers[1].endpoint, "tcp://[::1]:7000");
    cd_config_destroy(&cfg);
    //  The same from the environment and from a file (quoted: Z85 may hold
    //  '#', which starts a ZPL comment).
    cfg = s_load_ok(NOARGS, ENV("CADRE_PEERS=n2=" PK1 "@tcp://h:1", "CADRE_CURVE_SECRET_KEY=" SK1,
                                "CADRE_CURVE_ALLOWED_KEYS= " PK2 " ,"));
    assert_string_equal(cfg->peers[0].public_key, PK1);
    cd_config_destroy(&cfg);
    const char *path = s_write("curve.cfg", "cluster\n"
                                            "    peers\n"
                                            "        n2 = \"" PK2 "@tcp://h:7000\"\n"
                                            "curve\n"
                                            "    secret_key = \"" SK2 "\"  # a comment\n");
    cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_string_equal(cfg->peers[0].public_key, PK2);
    assert_string_equal(cfg->curve_secret_key, SK2);
    cd_config_destroy(&cfg);
    //  Without CurveZMQ peers need no key.
    cfg = s_load_ok(ARGV("--peer", "n2=tcp://h:1"), NOENV);
    assert_null(cfg->peers[0].public_key);
    cd_config_destroy(&cfg);
}

static void
test_config_curve_keys_are_checked_and_never_echoed(void **state)
{
    //  A malformed secret key: named by its source, never quoted.
    char *err = s_load_err(ARGV("--curve-secret-key", "not-a-key-but-secret"), NOENV);
    assert_non_null(strstr(err, "--curve-secret-key: not a CurveZMQ key"));
    assert_null(strstr(err, "not-a-key-but-secret"));
    free(err);
    err = s_load_err(NOARGS, ENV("CADRE_CURVE_SECRET_KEY=" SK1 "x"));
    assert_non_null(strstr(err, "CADRE_CURVE_SECRET_KEY: not a CurveZMQ key"));
    assert_null(strstr(err, SK1));
    free(err);
    //  The second allowed key is wrong.
    s_expect_err(ARGV("--curve-secret-key", SK1, "--curve-allowed-keys", PK1 ",nope"), NOENV,
                 "--curve-allowed-keys: key 2 is not a CurveZMQ public key", NULL);
    //  Public keys without a secret key, and a secret key with an unkeyed peer.
    s_expect_err(ARGV("--curve-allowed-keys", PK1), NOENV,
                 "--curve-allowed-keys is set but --curve-secret-key", NULL);
    s_expect_err(ARGV("--peer", "n2=" PK1 "@tcp://h:1"), NOENV,
                 "a peer's public key is set but --curve-secret-key", NULL);
    s_expect_err(ARGV("--curve-secret-key", SK1, "--peer", "n2=tcp://h:1"), NOENV,
                 "peer 'n2' has no public key", NULL);
}

static void
test_config_allow_insecure_tcp_is_a_switch(void **state)
{
    //  Alone it means true and does not take the next argument.
    cd_config_t *cfg = s_load_ok(ARGV("--allow-insecure-tcp", "--queue-hwm", "5"), NOENV);
    assert_true(cfg->allow_insecure_tcp);
    assert_int_equal(cfg->queue_hwm, 5);
    cd_config_destroy(&cfg);
    cfg = s_load_ok(ARGV("--queue-hwm", "5", "--allow-insecure-tcp"), NOENV);
    assert_true(cfg->allow_insecure_tcp);
    cd_config_destroy(&cfg);
    cfg = s_load_ok(ARGV("--allow-insecure-tcp=false"), ENV("CADRE_ALLOW_INSECURE_TCP=yes"));
    assert_false(cfg->allow_insecure_tcp);
    cd_config_destroy(&cfg);
    cfg = s_load_ok(NOARGS, ENV("CADRE_ALLOW_INSECURE_TCP=1"));
    assert_true(cfg->allow_insecure_tcp);
    cd_config_destroy(&cfg);
    const char *path = s_write("insecure.cfg", "cluster\n    allow_insecure_tcp = TRUE\n");
    cfg = s_load_ok(ARGV("--config", (char *)path), NOENV);
    assert_true(cfg->allow_insecure_tcp);
    cd_config_destroy(&cfg);
    s_expect_err(ARGV("--allow-insecure-tcp=maybe"), NOENV,
                 "--allow-insecure-tcp: 'maybe' is not true or false", NULL);
    s_expect_err(NOARGS, ENV("CADRE_ALLOW_INSECURE_TCP=2"), "CADRE_ALLOW_INSECURE_TCP: '2'", NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_default_echo_agent),
        cmocka_unit_test(test_config_precedence),
        cmocka_unit_test(test_config_config_path_flag_over_env),
        cmocka_unit_test(test_config_flag_forms),
        cmocka_unit_test(test_config_help_version_and_args),
        cmocka_unit_test(test_config_empty_env_is_unset),
        cmocka_unit_test(test_config_rejects_bad_integers),
        cmocka_unit_test(test_config_rejects_bad_values),
        cmocka_unit_test(test_config_rejects_bad_env_lists),
        cmocka_unit_test(test_config_rejects_bad_flags),
        cmocka_unit_test(test_config_tls_needs_cert_and_key),
        cmocka_unit_test(test_config_heartbeat_timeout_exceeds_interval),
        cmocka_unit_test(test_config_file_errors),
        cmocka_unit_test(test_config_missing_config_file),
        cmocka_unit_test(test_config_file_rejects_nul_and_huge),
        cmocka_unit_test(test_config_file_sets_every_option),
        cmocka_unit_test(test_config_agents_from_file_with_options),
        cmocka_unit_test(test_config_agents_from_flags_replace_file),
        cmocka_unit_test(test_config_peers),
        cmocka_unit_test(test_config_curve_keys_with_peers),
        cmocka_unit_test(test_config_curve_keys_are_checked_and_never_echoed),
        cmocka_unit_test(test_config_allow_insecure_tcp_is_a_switch),
        cmocka_unit_test(test_config_help_lists_every_option),
        cmocka_unit_test(test_config_http_limits),
        cmocka_unit_test(test_config_persist_limits),
        cmocka_unit_test(test_config_destroy_twice),
        cmocka_unit_test(test_config_errmsg_optional),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
