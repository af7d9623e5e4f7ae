/*  bench_http: the REST API under h2load, next to a bare h2o server
    measured in the same run (the ceiling).

    Two servers run in this process, each on its own event-loop thread on
    127.0.0.1 with an ephemeral port:
      ours     a whole node (cd_node_start, exactly what cadred runs) on its
               embedded PostgreSQL in a scratch data dir, fsync on (or on
               DATABASE_URL when set)
      ceiling  a bare h2o 2.2 evloop server whose one handler answers 200
               with {"status":"ok"} and a content-length
    h2load (Debian's nghttp2-client) drives, over h2c with prior knowledge,
    --clients connections x --streams concurrent streams (default -c 4
    -m 16: 64 streams in flight), one h2load thread:
      GET  /health              (and the ceiling's, alternating run by run
                                 so drift hits both: the ratio)
      GET  /api/v1/tasks/{id}   a task that exists (a read on an api actor)
      POST /api/v1/tasks        durable creates: the 201 leaves after the
                                 task row and its task.created event are
                                 committed; assigned to an agent that is
                                 stopped, so every task stays todo
    Each figure is the median of --runs runs (after a warm-up). Latency
    percentiles come from h2load's per-request log; non-2xx answers count
    as failed.

    --node HOST:PORT measures an already running node (e.g. cadred from
    `make run`) instead: it must have an agent named "parked" (stopped) or
    lets this program create one.

    Output: a table on stderr and one JSON object on stdout. */
#include "bench_curl.h"
#include "bench_stats.h"
#include "cd_config.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_node.h"

#include <curl/curl.h>
#include <sodium.h>
#include <sys/stat.h>

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
#define S_ADMIN_PASSWORD "bench-admin-password" //  the node's admin (--node: CADRE_ADMIN_PASSWORD)

typedef struct {
    int runs;         //  measured runs per server
    long requests;    //  requests per run
    int clients;      //  h2load -c
    int streams;      //  h2load -m
    const char *node; //  measure this running node instead, or NULL
    char auth[1200];  //  "Authorization: Bearer <admin's access token>" once signed in
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

//  --- ours: a whole node -------------------------------------------------------------------

typedef struct {
    cd_node_t *node; //  the node
    char dir[64];    //  its scratch data dir
} node_t;

static int
s_node_start(node_t *node)
{
    memset(node, 0, sizeof *node);
    snprintf(node->dir, sizeof node->dir, "/tmp/cadre-bench-http-XXXXXX");
    if (!mkdtemp(node->dir) || chmod(node->dir, 0711) != 0) {
        fprintf(stderr, "bench_http: cannot make a scratch dir\n");
        return -1;
    }
    char dir_env[128];
    snprintf(dir_env, sizeof dir_env, "CADRE_DATA_DIR=%s", node->dir);
    const char *url = getenv("DATABASE_URL");
    char url_env[1024];
    snprintf(url_env, sizeof url_env, "DATABASE_URL=%s", url ? url : "");
    char *env[] = {dir_env,
                   "CADRE_HTTP_ADDR=127.0.0.1:0",
                   "CADRE_LOG_LEVEL=error",
                   "CADRE_ADMIN_PASSWORD=" S_ADMIN_PASSWORD,
                   url ? url_env : NULL,
                   NULL};
    char *argv[] = {"cadred", NULL};
    cd_config_t *config = NULL;
    char *errmsg = NULL;
    int rc = cd_config_load(1, argv, env, &config, &errmsg);
    if (rc == 0) {
        fprintf(stderr, "starting a node (embedded PostgreSQL in %s) ...\n", node->dir);
        rc = cd_node_start(&config, zclock_usecs(), &node->node, &errmsg);
    }
    if (rc != 0) {
        fprintf(stderr, "bench_http: node: %s\n", errmsg ? errmsg : cd_strerror(rc));
        free(errmsg);
        cd_config_destroy(&config);
        return -1;
    }
    return 0;
}

static void
s_node_stop(node_t *node)
{
    fprintf(stderr, "stopping the node ...\n");
    cd_node_stop(&node->node);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", node->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_http: could not remove %s\n", node->dir);
    }
}

//  One JSON request for the set-up. Returns the status; *body (caller
//  frees) the answer.
static long
s_request(const char *base, const char *auth, const char *method, const char *path,
          const char *json, char **body)
{
    char url[512];
    snprintf(url, sizeof url, "http://%s%s", base, path);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (auth && *auth) {
        headers = curl_slist_append(headers, auth);
    }
    bench_buf_t buf = {NULL, 0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (json) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, bench_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    long status = 0;
    if (curl_easy_perform(curl) == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    *body = buf.data ? buf.data : strdup("");
    return status;
}

//  Signs in as admin (opt->auth), then the parked agent (created and
//  stopped if needed) and one task to read. Returns the task id, or -1.
static long long
s_setup(const char *base, options_t *opt)
{
    char *body = NULL;
    const char *password = opt->node && getenv("CADRE_ADMIN_PASSWORD")
                               ? getenv("CADRE_ADMIN_PASSWORD")
                               : S_ADMIN_PASSWORD;
    char login[256];
    snprintf(login, sizeof login, "{\"username\":\"admin\",\"password\":\"%s\"}", password);
    long status = s_request(base, NULL, "POST", "/api/v1/auth/login", login, &body);
    bool ok = status == 200 && bench_bearer(body, opt->auth, sizeof opt->auth);
    free(body);
    if (!ok) {
        fprintf(stderr, "bench_http: signing in as admin: HTTP %ld\n", status);
        return -1;
    }
    const char *auth = opt->auth;
    status = s_request(base, auth, "POST", "/api/v1/agents",
                       "{\"name\":\"parked\",\"kind\":\"echo\"}", &body);
    free(body);
    if (status != 201 && status != 409) {
        fprintf(stderr, "bench_http: creating the agent: HTTP %ld\n", status);
        return -1;
    }
    status = s_request(base, auth, "POST", "/api/v1/agents/parked/stop", NULL, &body);
    free(body);
    if (status != 202) {
        fprintf(stderr, "bench_http: stopping the agent: HTTP %ld\n", status);
        return -1;
    }
    status = s_request(base, auth, "POST", "/api/v1/tasks",
                       "{\"title\":\"read me\",\"assignee\":{\"agent\":\"parked\"},"
                       "\"input\":{\"n\":1}}",
                       &body);
    const char *id = strstr(body, "\"id\"");
    if (id) {
        id += 4;
        while (*id == ' ' || *id == ':') {
            id++;
        }
    }
    long long task = status == 201 && id ? atoll(id) : -1;
    if (task < 0) {
        fprintf(stderr, "bench_http: creating a task: HTTP %ld %.200s\n", status, body);
    }
    free(body);
    return task;
}

//  --- h2load ---------------------------------------------------------------------------------

//  Runs h2load once against url. Returns 0 and fills *run, or -1.
static int
s_h2load(const options_t *opt, const char *url, const char *data_file, long requests, run_t *run)
{
    char log_path[] = "/tmp/bench_http.XXXXXX";
    int log_fd = mkstemp(log_path);
    if (log_fd < 0) {
        return -1;
    }
    close(log_fd);
    char cmd[2560];
    char data[256] = "";
    if (data_file) {
        snprintf(data, sizeof data, "-d %s -H 'content-type: application/json'", data_file);
    }
    //  Every route but /health needs the token; /health ignores it.
    snprintf(cmd, sizeof cmd, "h2load -n %ld -c %d -m %d -t 1 %s -H '%s' --log-file=%s %s 2>&1",
             requests, opt->clients, opt->streams, data, opt->auth, log_path, url);
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
        if (strncmp(line, "status codes: ", 14) == 0) {
            succeeded = atol(line + 14); //  "N 2xx, ..."
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

//  Medians of runs: rps, p50, p99; failed summed.
static void
s_medians(const run_t *runs, int n, run_t *out)
{
    double v[MAX_RUNS];
    out->failed = 0;
    for (int r = 0; r < n; r++) {
        v[r] = runs[r].rps;
        out->failed += runs[r].failed;
    }
    out->rps = bench_median(v, n);
    for (int r = 0; r < n; r++) {
        v[r] = runs[r].p50_ms;
    }
    out->p50_ms = bench_median(v, n);
    for (int r = 0; r < n; r++) {
        v[r] = runs[r].p99_ms;
    }
    out->p99_ms = bench_median(v, n);
}

int
main(int argc, char **argv)
{
    options_t opt = {5, 200000, 4, 16, NULL, ""};
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
    zsys_set_max_sockets(0);
    zsys_set_linger(0);
    zsys_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sodium_init() < 0) {
        return 1;
    }

    node_t node;
    bool own_node = opt.node == NULL;
    if (own_node && s_node_start(&node) != 0) {
        return 1;
    }
    const char *base = own_node ? cd_node_http_addr(node.node) : opt.node;
    long long task = s_setup(base, &opt);
    if (task < 0) {
        if (own_node) {
            s_node_stop(&node);
        }
        return 1;
    }
    bare_t bare;
    memset(&bare, 0, sizeof bare);
    if (s_bare_start(&bare) != 0) {
        fprintf(stderr, "bench_http: cannot start the bare h2o server\n");
        return 1;
    }
    char data_file[] = "/tmp/bench_http_body.XXXXXX";
    int data_fd = mkstemp(data_file);
    static const char task_body[] =
        "{\"title\":\"bench\",\"priority\":5,\"assignee\":{\"agent\":\"parked\"},"
        "\"input\":{\"n\":42,\"text\":\"hello\"}}";
    if (data_fd < 0 || write(data_fd, task_body, sizeof task_body - 1) != sizeof task_body - 1) {
        return 1;
    }
    close(data_fd);

    enum { HEALTH, BARE, GET_TASK, POST_TASK, N_SCENARIOS };
    static const char *const names[] = {"GET /health", "bare h2o", "GET /api/v1/tasks/{id}",
                                        "POST /api/v1/tasks"};
    char urls[N_SCENARIOS][256];
    snprintf(urls[HEALTH], sizeof urls[0], "http://%s/health", base);
    snprintf(urls[BARE], sizeof urls[0], "http://127.0.0.1:%d/health", bare.port);
    snprintf(urls[GET_TASK], sizeof urls[0], "http://%s/api/v1/tasks/%lld", base, task);
    snprintf(urls[POST_TASK], sizeof urls[0], "http://%s/api/v1/tasks", base);

    run_t runs[N_SCENARIOS][MAX_RUNS];
    bench_cpu_t cpu0 = bench_cpu_read();
    long warm_requests = opt.requests / 10 < 1000 ? 1000 : opt.requests / 10;
    for (int k = 0; k < N_SCENARIOS; k++) {
        run_t warm;
        if (s_h2load(&opt, urls[k], k == POST_TASK ? data_file : NULL, warm_requests, &warm) != 0) {
            fprintf(stderr, "bench_http: h2load failed on %s\n", urls[k]);
            return 1;
        }
    }
    for (int r = 0; r < opt.runs; r++) {
        for (int k = 0; k < N_SCENARIOS; k++) {
            fprintf(stderr, "\rrun %d/%d: %-24s", r + 1, opt.runs, names[k]);
            if (s_h2load(&opt, urls[k], k == POST_TASK ? data_file : NULL, opt.requests,
                         &runs[k][r]) != 0) {
                fprintf(stderr, "\nbench_http: h2load failed on %s\n", urls[k]);
                return 1;
            }
        }
    }
    fprintf(stderr, "\r%-60s\r", "");
    unlink(data_file);
    run_t med[N_SCENARIOS];
    for (int k = 0; k < N_SCENARIOS; k++) {
        s_medians(runs[k], opt.runs, &med[k]);
    }
    double ratio = med[HEALTH].rps / med[BARE].rps;
    char machine[128];
    bench_cpu_report(cpu0, machine, sizeof machine);

    fprintf(stderr, "h2c, h2load -c %d -m %d -t 1, %ld requests per run; medians of %d runs%s\n",
            opt.clients, opt.streams, opt.requests, opt.runs,
            own_node ? " (node on embedded PostgreSQL, fsync on)" : "");
    fprintf(stderr, "%-24s | %10s | %9s | %9s | %6s\n", "scenario", "req/s", "p50", "p99",
            "failed");
    for (int k = 0; k < N_SCENARIOS; k++) {
        fprintf(stderr, "%-24s | %10.0f | %7.3fms | %7.3fms | %6ld\n", names[k], med[k].rps,
                med[k].p50_ms, med[k].p99_ms, med[k].failed);
    }
    fprintf(stderr, "GET /health ours / bare h2o: %.1f%%\n", ratio * 100);
    printf("{\"bench\":\"http\",\"protocol\":\"h2c\",\"clients\":%d,\"streams\":%d,"
           "\"requests\":%ld,\"runs\":%d,\"scenarios\":{",
           opt.clients, opt.streams, opt.requests, opt.runs);
    static const char *const keys[] = {"health", "ceiling", "get_task", "post_task"};
    for (int k = 0; k < N_SCENARIOS; k++) {
        printf("%s\"%s\":{\"route\":\"%s\",\"rps\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"failed\":%ld}",
               k ? "," : "", keys[k], names[k], med[k].rps, med[k].p50_ms, med[k].p99_ms,
               med[k].failed);
    }
    printf("},\"health_ratio\":%.3f,%s}\n", ratio, machine);

    s_bare_stop(&bare);
    if (own_node) {
        s_node_stop(&node);
    }
    return 0;
}
