/*  bench_http: the HTTP frontend under h2load, next to a bare h2o server
    measured in the same run (the ceiling).

    Two servers run in this process, each on its own event-loop thread on
    127.0.0.1 with an ephemeral port:
      ours     the node's HTTP layer (cd_http) on a small supervisor tree
               (deadletter + an echo agent), exactly as cadred starts it
      ceiling  a bare h2o 2.2 evloop server whose one handler answers 200
               with the same body, {"status":"ok"} with content-length
    h2load (Debian's nghttp2-client) drives GET /health over h2c with prior
    knowledge, --clients connections x --streams concurrent streams
    (default -c 4 -m 16: 64 streams in flight), --requests per run, one
    h2load thread. Runs alternate ours / ceiling so that drift hits both;
    each figure is the median of --runs runs (after one warm-up each).
    Latency percentiles come from h2load's per-request log.

    --node HOST:PORT measures an already running node (e.g. cadred from
    `make run`) instead of the in-process one.

    Output: a table on stderr and one JSON object on stdout. */
#include "bench_stats.h"
#include "cd_deadletter.h"
#include "cd_echo.h"
#include "cd_error.h"
#include "cd_http.h"
#include "cd_log.h"
#include "cd_supervisor.h"

#include <h2o.h>

#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_RUNS 15

typedef struct {
    int runs;         //  measured runs per server
    long requests;    //  requests per run
    int clients;      //  h2load -c
    int streams;      //  h2load -m
    const char *node; //  measure this running node instead, or NULL
} options_t;

typedef struct {
    double rps;    //  requests per second
    double p50_ms; //  median latency
    double p99_ms; //  99th percentile latency
    long failed;   //  requests that did not succeed
} run_t;


//  --- the ceiling: a bare h2o server ----------------------------------------------------

typedef struct {
    h2o_globalconf_t config;     //  h2o configuration
    h2o_context_t ctx;           //  its context
    h2o_accept_ctx_t accept_ctx; //  for h2o_accept
    int fd;                      //  listening socket
    int port;                    //  its port
    atomic_bool stop;            //  asks the loop to end
    pthread_t thread;            //  the loop's thread
} bare_t;

static int
s_bare_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    static const char body[] = "{\"status\":\"ok\"}";
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = sizeof body - 1;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json; charset=utf-8"));
    h2o_iovec_t buf = h2o_iovec_init(body, sizeof body - 1);
    h2o_start_response(req, &generator);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void
s_bare_on_accept(h2o_socket_t *listener, const char *err)
{
    bare_t *bare = (bare_t *)listener->data;
    h2o_socket_t *sock;
    if (err) {
        return;
    }
    while ((sock = h2o_evloop_socket_accept(listener)) != NULL) {
        h2o_accept(&bare->accept_ctx, sock);
    }
}

static void *
s_bare_thread(void *arg)
{
    bare_t *bare = (bare_t *)arg;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    h2o_evloop_t *loop = h2o_evloop_create();
    h2o_context_init(&bare->ctx, loop, &bare->config);
    bare->accept_ctx.ctx = &bare->ctx;
    bare->accept_ctx.hosts = bare->config.hosts;
    h2o_socket_t *listener = h2o_evloop_socket_create(loop, bare->fd, H2O_SOCKET_FLAG_DONT_READ);
    listener->data = bare;
    h2o_socket_read_start(listener, s_bare_on_accept);
    while (!atomic_load(&bare->stop)) {
        h2o_evloop_run(loop, 100);
    }
    //  The program ends next: h2o's memory goes with it.
    return NULL;
}

static int
s_bare_start(bare_t *bare)
{
    h2o_config_init(&bare->config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&bare->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof *handler);
    handler->on_req = s_bare_on_req;
    bare->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bare->fd < 0 || bind(bare->fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(bare->fd, SOMAXCONN) != 0 ||
        getsockname(bare->fd, (struct sockaddr *)&addr, &len) != 0) {
        return -1;
    }
    bare->port = ntohs(addr.sin_port);
    atomic_store(&bare->stop, false);
    return pthread_create(&bare->thread, NULL, s_bare_thread, bare) == 0 ? 0 : -1;
}

static void
s_bare_stop(bare_t *bare)
{
    atomic_store(&bare->stop, true);
    pthread_join(bare->thread, NULL);
}

//  --- ours: a node's HTTP layer ------------------------------------------------------------

typedef struct {
    cd_runtime_t rt;             //  runtime settings
    cd_echo_args_t echo;         //  the echo agent's options
    cd_child_spec_t children[2]; //  deadletter, agent/echo
    cd_supervisor_spec_t spec;   //  the root
    cd_root_t *root;             //  the tree
    cd_http_t *http;             //  the frontend
} node_t;

static int
s_node_start(node_t *node)
{
    static const char *const core[] = {"root", "deadletter", NULL};
    memset(node, 0, sizeof *node);
    node->rt = (cd_runtime_t){cd_registry_new("bench"), 1000, 1000, 1000, 5000, 5000, 5, 10};
    node->children[0] = (cd_child_spec_t){"deadletter", &cd_deadletter_ops, NULL, 0};
    node->children[1] = (cd_child_spec_t){"agent/echo", &cd_echo_ops, &node->echo, 0};
    node->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, node->children, 2};
    char why[160];
    node->root = cd_root_new(&node->rt, "root", &node->spec, why, sizeof why);
    if (!node->root) {
        fprintf(stderr, "bench_http: tree: %s\n", why);
        return -1;
    }
    cd_http_opts_t opts;
    cd_http_opts_defaults(&opts);
    opts.addr = "127.0.0.1:0";
    opts.core_actors = core;
    char *errmsg = NULL;
    if (cd_http_start(&opts, &node->rt, &node->http, &errmsg) != 0) {
        fprintf(stderr, "bench_http: %s\n", errmsg ? errmsg : "cannot start HTTP");
        free(errmsg);
        return -1;
    }
    return 0;
}

static void
s_node_stop(node_t *node)
{
    cd_http_stop(&node->http);
    cd_root_destroy(&node->root);
    cd_registry_destroy(&node->rt.registry);
}

//  --- h2load ---------------------------------------------------------------------------------

//  Runs h2load once against url. Returns 0 and fills *run, or -1.
static int
s_h2load(const options_t *opt, const char *url, long requests, run_t *run)
{
    char log_path[] = "/tmp/bench_http.XXXXXX";
    int log_fd = mkstemp(log_path);
    if (log_fd < 0) {
        return -1;
    }
    close(log_fd);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "h2load -n %ld -c %d -m %d -t 1 --log-file=%s %s 2>&1", requests,
             opt->clients, opt->streams, log_path, url);
    FILE *out = popen(cmd, "r");
    if (!out) {
        unlink(log_path);
        return -1;
    }
    char line[512];
    long succeeded = -1;
    run->rps = 0;
    while (fgets(line, sizeof line, out)) {
        const char *at = strstr(line, "finished in ");
        if (at) {
            const char *comma = strchr(at, ',');
            run->rps = comma ? atof(comma + 1) : 0;
        }
        if (strncmp(line, "requests: ", 10) == 0) {
            const char *s = strstr(line, "done, ");
            succeeded = s ? atol(s + 6) : -1;
        }
    }
    int status = pclose(out);
    run->failed = succeeded < 0 ? requests : requests - succeeded;
    //  Per-request latencies: start (µs since epoch) \t status \t duration (µs).
    FILE *log = fopen(log_path, "r");
    double *lat = (double *)malloc((size_t)requests * sizeof(double));
    long n = 0;
    while (log && lat && n < requests && fgets(line, sizeof line, log)) {
        char *tab = strchr(line, '\t');
        tab = tab ? strchr(tab + 1, '\t') : NULL;
        if (tab) {
            lat[n++] = atof(tab + 1) / 1000.0;
        }
    }
    if (log) {
        fclose(log);
    }
    unlink(log_path);
    run->p50_ms = run->p99_ms = 0;
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof *lat, bench_cmp_double);
        run->p50_ms = bench_percentile(lat, n, 50);
        run->p99_ms = bench_percentile(lat, n, 99);
    }
    free(lat);
    return status == 0 && run->rps > 0 ? 0 : -1;
}

static void
s_usage(void)
{
    fprintf(stderr, "usage: bench_http [--runs N] [--requests N] [--clients N] [--streams N]\n"
                    "                  [--node HOST:PORT]\n");
}

int
main(int argc, char **argv)
{
    options_t opt = {5, 200000, 4, 16, NULL};
    static const struct option longopts[] = {{"runs", required_argument, NULL, 'r'},
                                             {"requests", required_argument, NULL, 'n'},
                                             {"clients", required_argument, NULL, 'c'},
                                             {"streams", required_argument, NULL, 'm'},
                                             {"node", required_argument, NULL, 'a'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            opt.runs = atoi(optarg);
            break;
        case 'n':
            opt.requests = atol(optarg);
            break;
        case 'c':
            opt.clients = atoi(optarg);
            break;
        case 'm':
            opt.streams = atoi(optarg);
            break;
        case 'a':
            opt.node = optarg;
            break;
        default:
            s_usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (opt.runs < 1 || opt.runs > MAX_RUNS || opt.requests < 100 || opt.clients < 1 ||
        opt.streams < 1) {
        s_usage();
        return 2;
    }
    if (system("h2load --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "bench_http: h2load not found (Debian package nghttp2-client; "
                        "scripts/deps installs it)\n");
        return 1;
    }
    cd_log_set_level(CD_LOG_ERROR);
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    zsys_handler_set(NULL);
    zsys_set_linger(0);
    zsys_init();

    node_t node;
    bool own_node = opt.node == NULL;
    if (own_node && s_node_start(&node) != 0) {
        return 1;
    }
    bare_t bare;
    memset(&bare, 0, sizeof bare);
    if (s_bare_start(&bare) != 0) {
        fprintf(stderr, "bench_http: cannot start the bare h2o server\n");
        return 1;
    }
    char ours_url[256], bare_url[256];
    snprintf(ours_url, sizeof ours_url, "http://%s/health",
             own_node ? cd_http_addr(node.http) : opt.node);
    snprintf(bare_url, sizeof bare_url, "http://127.0.0.1:%d/health", bare.port);

    run_t warm;
    long warm_requests = opt.requests / 10 < 1000 ? 1000 : opt.requests / 10;
    if (s_h2load(&opt, ours_url, warm_requests, &warm) != 0 ||
        s_h2load(&opt, bare_url, warm_requests, &warm) != 0) {
        fprintf(stderr, "bench_http: h2load failed (is %s answering?)\n", ours_url);
        return 1;
    }
    run_t ours[MAX_RUNS], ceiling[MAX_RUNS];
    for (int r = 0; r < opt.runs; r++) {
        fprintf(stderr, "\rrun %d/%d ...", r + 1, opt.runs);
        if (s_h2load(&opt, ours_url, opt.requests, &ours[r]) != 0 ||
            s_h2load(&opt, bare_url, opt.requests, &ceiling[r]) != 0) {
            fprintf(stderr, "\nbench_http: h2load failed\n");
            return 1;
        }
    }
    fprintf(stderr, "\r%-20s\r", "");
    double v[MAX_RUNS] = {0};
    double med[2][3];
    long failed[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        const run_t *runs = s == 0 ? ours : ceiling;
        for (int r = 0; r < opt.runs; r++) {
            v[r] = runs[r].rps;
            failed[s] += runs[r].failed;
        }
        med[s][0] = bench_median(v, opt.runs);
        for (int r = 0; r < opt.runs; r++) {
            v[r] = runs[r].p50_ms;
        }
        med[s][1] = bench_median(v, opt.runs);
        for (int r = 0; r < opt.runs; r++) {
            v[r] = runs[r].p99_ms;
        }
        med[s][2] = bench_median(v, opt.runs);
    }
    double ratio = med[0][0] / med[1][0];

    fprintf(stderr,
            "GET /health over h2c, h2load -c %d -m %d -t 1, %ld requests per run; medians of %d "
            "runs\n",
            opt.clients, opt.streams, opt.requests, opt.runs);
    fprintf(stderr, "%-10s | %12s | %9s | %9s | %6s\n", "server", "req/s", "p50", "p99", "failed");
    fprintf(stderr, "%-10s | %12.0f | %7.3fms | %7.3fms | %6ld\n", own_node ? "ours" : opt.node,
            med[0][0], med[0][1], med[0][2], failed[0]);
    fprintf(stderr, "%-10s | %12.0f | %7.3fms | %7.3fms | %6ld\n", "bare h2o", med[1][0], med[1][1],
            med[1][2], failed[1]);
    fprintf(stderr, "ours / ceiling: %.1f%%\n", ratio * 100);
    printf("{\"bench\":\"http\",\"route\":\"GET /health\",\"protocol\":\"h2c\",\"clients\":%d,"
           "\"streams\":%d,\"requests\":%ld,\"runs\":%d,"
           "\"ours\":{\"rps\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"failed\":%ld},"
           "\"ceiling\":{\"rps\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"failed\":%ld},"
           "\"ratio\":%.3f}\n",
           opt.clients, opt.streams, opt.requests, opt.runs, med[0][0], med[0][1], med[0][2],
           failed[0], med[1][0], med[1][1], med[1][2], failed[1], ratio);

    s_bare_stop(&bare);
    if (own_node) {
        s_node_stop(&node);
    }
    return 0;
}
