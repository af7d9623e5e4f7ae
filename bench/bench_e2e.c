/*  bench_e2e: tasks end to end through a three-agent pipeline with durable
    persistence.

    A whole node runs in this process (cd_node_start, what cadred runs) on
    its embedded PostgreSQL in a scratch data dir, fsync on (or on
    DATABASE_URL when set), or --node HOST:PORT measures a running one. A
    team of three echo agents (one per role, --concurrency steps each) is
    the pipeline: every task goes agent 1 -> 2 -> 3, each step recorded
    (output, handoff, events) in PostgreSQL before the next starts, so a
    task costs its create, its claim, three step records and their events.

    Clients, all HTTP/2 (libcurl), over TLS with ALPN by default (the node
    gets a throw-away certificate; --h2c for cleartext with prior
    knowledge, which this system's libcurl 7.88 cannot reuse: s_curl_h2):
      - one SSE stream, GET /api/v1/events?types=task.completed, opened
        before the first task is sent: the time a task's task.completed
        event arrives here is when it is done;
      - POST /api/v1/tasks from a libcurl multi handle, --inflight requests
        at once (closed loop: as fast as the node answers), or paced at
        --rate tasks/s (open loop; still at most --inflight at once).

    Per scenario (--tasks, default 1000 and 10000): completed tasks/s (the
    tasks over the time from the first submit to the last task.completed),
    and submit-to-task.completed latency p50 / p99 (from the moment the
    POST was started to the SSE event's arrival), plus the create's own
    latency (the 201, which is sent after the commit). A table on stderr,
    one JSON object on stdout. */
#include "bench_curl.h"
#include "bench_stats.h"
#include "cd_config.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_node.h"

#include <curl/curl.h>
#include <czmq.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SCENARIOS 8
#define MAX_RUNS 15

typedef struct {
    long tasks[MAX_SCENARIOS]; //  tasks per scenario
    int n_scenarios;           //  how many
    int inflight;              //  POSTs at once
    double rate;               //  tasks/s, 0: closed loop
    int concurrency;           //  each agent's
    const char *node;          //  a running node, or NULL
    int timeout_s;             //  per scenario
    bool h2c;                  //  cleartext h2 (prior knowledge) instead of h2 over TLS
    int runs;                  //  runs of each scenario; its median run (by tasks/s) is reported
} options_t;

static const char *s_scheme = "https"; //  the node's scheme (set once in main)

#define S_ADMIN_PASSWORD "bench-admin-password" //  the node's admin (--node: CADRE_ADMIN_PASSWORD)
static char s_auth[1024];                       //  "Authorization: Bearer ..." once signed in

typedef struct {
    long tasks;         //  submitted
    long completed;     //  seen on the stream
    long failed;        //  creates that did not answer 201
    double seconds;     //  first submit to last completion
    double tasks_per_s; //  completed / seconds
    double p50_ms;      //  submit to task.completed
    double p99_ms;
    double max_ms;
    double create_p50_ms; //  submit to 201
    double create_p99_ms;
} result_t;

//  --- the node ------------------------------------------------------------------------------

typedef struct {
    cd_node_t *node; //  the node
    char dir[64];    //  its scratch data dir
} node_t;

static int
s_node_start(node_t *node, bool tls)
{
    memset(node, 0, sizeof *node);
    snprintf(node->dir, sizeof node->dir, "/tmp/cadre-bench-e2e-XXXXXX");
    if (!mkdtemp(node->dir) || chmod(node->dir, 0711) != 0) {
        fprintf(stderr, "bench_e2e: cannot make a scratch dir\n");
        return -1;
    }
    char dir_env[128], cert_env[160], key_env[160];
    snprintf(dir_env, sizeof dir_env, "CADRE_DATA_DIR=%s", node->dir);
    snprintf(cert_env, sizeof cert_env, "CADRE_TLS_CERT=%s/cert.pem", node->dir);
    snprintf(key_env, sizeof key_env, "CADRE_TLS_KEY=%s/key.pem", node->dir);
    if (tls) {
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout %s/key.pem -out %s/cert.pem -days 1 -subj /CN=localhost >/dev/null 2>&1",
                 node->dir, node->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_e2e: openssl could not make a certificate\n");
            return -1;
        }
    }
    const char *url = getenv("DATABASE_URL");
    char url_env[1024];
    snprintf(url_env, sizeof url_env, "DATABASE_URL=%s", url ? url : "");
    char *env[8] = {dir_env, "CADRE_HTTP_ADDR=127.0.0.1:0", "CADRE_LOG_LEVEL=error",
                    "CADRE_ADMIN_PASSWORD=" S_ADMIN_PASSWORD, NULL};
    size_t n_env = 4;
    if (tls) {
        env[n_env++] = cert_env;
        env[n_env++] = key_env;
    }
    if (url) {
        env[n_env++] = url_env;
    }
    char *argv[] = {"cadred", NULL};
    cd_config_t *config = NULL;
    char *errmsg = NULL;
    int rc = cd_config_load(1, argv, env, &config, &errmsg);
    if (rc == 0) {
        fprintf(stderr, "starting a node (%s) ...\n",
                url ? "DATABASE_URL" : "embedded PostgreSQL, fsync on");
        rc = cd_node_start(&config, zclock_usecs(), &node->node, &errmsg);
    }
    if (rc != 0) {
        fprintf(stderr, "bench_e2e: node: %s\n", errmsg ? errmsg : cd_strerror(rc));
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
        fprintf(stderr, "bench_e2e: could not remove %s\n", node->dir);
    }
}

//  --- requests ---------------------------------------------------------------------------------

//  HTTP/2 either way: over TLS (ALPN h2; the certificate is our own) or
//  cleartext with prior knowledge. TLS is the default because libcurl
//  7.88 (Debian 12's) breaks a prior-knowledge connection reused by a new
//  request ("Error in the HTTP2 framing layer", curl issue #10634, fixed
//  in 8.0): over h2c only the first requests of a connection would pass.
static void
s_curl_h2(CURL *curl)
{
    if (streq(s_scheme, "https")) {
        curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        s_curl_h2(curl);
    }
}

//  A request with the admin's token (once signed in); *id gets the answer's
//  first "id", and *answer (if not NULL) the whole body (caller frees).
static long
s_request_body(const char *base, const char *method, const char *path, const char *json,
               long long *id, char **answer)
{
    char url[512];
    snprintf(url, sizeof url, "%s://%s%s", s_scheme, base, path);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (s_auth[0]) {
        headers = curl_slist_append(headers, s_auth);
    }
    bench_buf_t buf = {NULL, 0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (json) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    s_curl_h2(curl);
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
    const char *at = buf.data ? strstr(buf.data, "\"id\"") : NULL;
    if (id) {
        *id = -1;
        if (at) {
            at = strchr(at, ':');
            *id = at ? atoll(at + 1) : -1;
        }
    }
    if (status >= 300) {
        fprintf(stderr, "bench_e2e: %s %s: HTTP %ld %.300s\n", method, path, status,
                buf.data ? buf.data : "");
    }
    if (answer) {
        *answer = buf.data;
    } else {
        free(buf.data);
    }
    return status;
}

static long
s_request(const char *base, const char *method, const char *path, const char *json, long long *id)
{
    return s_request_body(base, method, path, json, id, NULL);
}

//  Signs in as admin: every later request carries the access token.
static int
s_sign_in(const char *base, const options_t *opt)
{
    const char *password = opt->node && getenv("CADRE_ADMIN_PASSWORD")
                               ? getenv("CADRE_ADMIN_PASSWORD")
                               : S_ADMIN_PASSWORD;
    char login[256];
    snprintf(login, sizeof login, "{\"username\":\"admin\",\"password\":\"%s\"}", password);
    char *body = NULL;
    long status = s_request_body(base, "POST", "/api/v1/auth/login", login, NULL, &body);
    bool ok = status == 200 && bench_bearer(body, s_auth, sizeof s_auth);
    free(body);
    if (!ok) {
        fprintf(stderr, "bench_e2e: signing in as admin: HTTP %ld%s\n", status,
                opt->node ? " (set CADRE_ADMIN_PASSWORD to the node's admin password)" : "");
        s_auth[0] = '\0';
        return -1;
    }
    return 0;
}

//  Three roles, three echo agents, the team. Returns the team id or -1.
static long long
s_setup(const char *base, int concurrency)
{
    const char *roles[3] = {"draft", "edit", "check"};
    long long role_ids[3];
    char body[512];
    int tag = (int)getpid();
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof body, "{\"name\":\"e2e-%s-%d\"}", roles[i], tag);
        if (s_request(base, "POST", "/api/v1/roles", body, &role_ids[i]) != 201) {
            return -1;
        }
        snprintf(body, sizeof body,
                 "{\"name\":\"e2e-%s-%d\",\"kind\":\"echo\",\"role\":\"e2e-%s-%d\","
                 "\"concurrency\":%d}",
                 roles[i], tag, roles[i], tag, concurrency);
        if (s_request(base, "POST", "/api/v1/agents", body, NULL) != 201) {
            return -1;
        }
    }
    long long type = -1, team = -1;
    snprintf(body, sizeof body, "{\"name\":\"e2e-%d\",\"roles\":[%lld,%lld,%lld]}", tag,
             role_ids[0], role_ids[1], role_ids[2]);
    if (s_request(base, "POST", "/api/v1/team-types", body, &type) != 201) {
        return -1;
    }
    snprintf(body, sizeof body,
             "{\"name\":\"e2e-%d\",\"team_type_id\":%lld,\"members\":["
             "{\"agent\":\"e2e-draft-%d\",\"role_id\":%lld},{\"agent\":\"e2e-edit-%d\",\"role_id\":"
             "%lld},{\"agent\":\"e2e-check-%d\",\"role_id\":%lld}]}",
             tag, type, tag, role_ids[0], tag, role_ids[1], tag, role_ids[2]);
    if (s_request(base, "POST", "/api/v1/teams", body, &team) != 201) {
        return -1;
    }
    return team;
}

//  --- the event stream ----------------------------------------------------------------------

typedef struct {
    long long id; //  task id
    int64_t ns;   //  when its task.completed arrived
} seen_t;

typedef struct {
    char url[512];         //  the stream
    pthread_t thread;      //  reading it
    atomic_bool stop;      //  asks it to end
    atomic_bool open;      //  headers arrived: the stream is live
    pthread_mutex_t lock;  //  guards seen
    seen_t *seen;          //  completions, in arrival order
    long n_seen, max_seen; //  used, allocated
    char line[65536];      //  the line being read
    size_t line_len;
} sse_t;

static size_t
s_sse_header(char *data, size_t size, size_t n, void *arg)
{
    sse_t *sse = (sse_t *)arg;
    if (size * n >= 10 && memcmp(data, "HTTP/2 200", 10) == 0) {
        atomic_store(&sse->open, true);
    }
    return size * n;
}

static size_t
s_sse_data(char *data, size_t size, size_t n, void *arg)
{
    sse_t *sse = (sse_t *)arg;
    int64_t now = bench_now_ns();
    for (size_t i = 0; i < size * n; i++) {
        char c = data[i];
        if (c != '\n') {
            if (sse->line_len + 1 < sizeof sse->line) {
                sse->line[sse->line_len++] = c;
            }
            continue;
        }
        sse->line[sse->line_len] = '\0';
        sse->line_len = 0;
        if (strncmp(sse->line, "data:", 5) != 0) {
            continue;
        }
        const char *at = strstr(sse->line, "\"task_id\"");
        at = at ? strchr(at, ':') : NULL;
        if (!at) {
            continue;
        }
        pthread_mutex_lock(&sse->lock);
        if (sse->n_seen == sse->max_seen) {
            sse->max_seen = sse->max_seen ? sse->max_seen * 2 : 4096;
            sse->seen = (seen_t *)realloc(sse->seen, (size_t)sse->max_seen * sizeof *sse->seen);
        }
        sse->seen[sse->n_seen++] = (seen_t){atoll(at + 1), now};
        pthread_mutex_unlock(&sse->lock);
    }
    return size * n;
}

static int
s_sse_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    sse_t *sse = (sse_t *)arg;
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return atomic_load(&sse->stop) ? 1 : 0;
}

static void *
s_sse_thread(void *arg)
{
    sse_t *sse = (sse_t *)arg;
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: text/event-stream");
    headers = curl_slist_append(headers, s_auth);
    curl_easy_setopt(curl, CURLOPT_URL, sse->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    s_curl_h2(curl);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s_sse_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, sse);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_sse_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, sse);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, s_sse_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, sse);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    return NULL;
}

//  --- submitting ----------------------------------------------------------------------------

typedef struct {
    CURL *curl;       //  its handle
    bench_buf_t buf;  //  its answer
    int64_t start_ns; //  when it was sent
} post_t;

typedef struct {
    long long id;     //  the task
    int64_t start_ns; //  when its POST was sent
    int64_t done_ns;  //  when the 201 came back
} sub_t;

static int
s_cmp_sub(const void *a, const void *b)
{
    long long x = ((const sub_t *)a)->id, y = ((const sub_t *)b)->id;
    return x < y ? -1 : x > y;
}

//  Orders runs by completed tasks/s.
static int
s_cmp_rate(const void *a, const void *b)
{
    double x = ((const result_t *)a)->tasks_per_s, y = ((const result_t *)b)->tasks_per_s;
    return x < y ? -1 : x > y;
}

static int
s_cmp_seen(const void *a, const void *b)
{
    long long x = ((const seen_t *)a)->id, y = ((const seen_t *)b)->id;
    return x < y ? -1 : x > y;
}

static void
s_post_start(CURLM *multi, post_t *post, const char *url, const char *body,
             struct curl_slist *headers)
{
    free(post->buf.data);
    post->buf = (bench_buf_t){NULL, 0};
    //  A fresh handle per request: libcurl's HTTP/2 state does not carry
    //  over well to a reused easy handle.
    if (post->curl) {
        curl_easy_cleanup(post->curl);
    }
    post->curl = curl_easy_init();
    curl_easy_setopt(post->curl, CURLOPT_URL, url);
    curl_easy_setopt(post->curl, CURLOPT_HTTPHEADER, headers);
    s_curl_h2(post->curl);
    curl_easy_setopt(post->curl, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(post->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(post->curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(post->curl, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(post->curl, CURLOPT_WRITEFUNCTION, bench_collect);
    curl_easy_setopt(post->curl, CURLOPT_PRIVATE, post);
    curl_easy_setopt(post->curl, CURLOPT_VERBOSE, getenv("E2E_VERBOSE") ? 1L : 0L);
    curl_easy_setopt(post->curl, CURLOPT_WRITEDATA, &post->buf);
    curl_easy_setopt(post->curl, CURLOPT_COPYPOSTFIELDS, body);
    post->start_ns = bench_now_ns();
    curl_multi_add_handle(multi, post->curl);
}

static int
s_scenario(const char *base, long long team, const options_t *opt, long n, sse_t *sse,
           result_t *out)
{
    memset(out, 0, sizeof *out);
    out->tasks = n;
    char url[512];
    snprintf(url, sizeof url, "%s://%s/api/v1/tasks", s_scheme, base);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (s_auth[0]) {
        headers = curl_slist_append(headers, s_auth);
    }
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    post_t *posts = (post_t *)calloc((size_t)opt->inflight, sizeof *posts);
    int *free_slots = (int *)malloc((size_t)opt->inflight * sizeof *free_slots);
    int n_free = opt->inflight;
    for (int i = 0; i < opt->inflight; i++) {
        free_slots[i] = opt->inflight - 1 - i;
    }
    sub_t *subs = (sub_t *)calloc((size_t)n, sizeof *subs);
    long sent = 0, answered = 0, n_ok = 0;
    pthread_mutex_lock(&sse->lock);
    long seen_from = sse->n_seen;
    pthread_mutex_unlock(&sse->lock);
    int64_t t0 = bench_now_ns();
    while (answered < n) {
        int64_t now = bench_now_ns();
        while (sent < n && n_free > 0 &&
               (opt->rate <= 0 || (double)(now - t0) >= (double)sent * 1e9 / opt->rate)) {
            char body[256];
            snprintf(body, sizeof body,
                     "{\"title\":\"e2e\",\"assignee\":{\"team\":%lld},\"input\":{\"n\":%ld}}", team,
                     sent);
            s_post_start(multi, &posts[free_slots[--n_free]], url, body, headers);
            sent++;
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            post_t *post = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&post);
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(multi, msg->easy_handle);
            const char *at = post->buf.data ? strstr(post->buf.data, "\"id\"") : NULL;
            at = at ? strchr(at, ':') : NULL;
            if (status == 201 && at) {
                subs[n_ok++] = (sub_t){atoll(at + 1), post->start_ns, bench_now_ns()};
            } else {
                out->failed++;
                if (out->failed <= 3) {
                    fprintf(stderr, "bench_e2e: create: HTTP %ld (%s) %.200s\n", status,
                            curl_easy_strerror(msg->data.result),
                            post->buf.data ? post->buf.data : "");
                }
            }
            answered++;
            free_slots[n_free++] = (int)(post - posts);
        }
        int waiting = 0;
        curl_multi_poll(multi, NULL, 0, opt->rate > 0 ? 1 : 50, &waiting);
    }
    long ok = n_ok;
    //  Wait for their completions.
    qsort(subs, (size_t)ok, sizeof *subs, s_cmp_sub);
    int64_t deadline = bench_now_ns() + (int64_t)opt->timeout_s * 1000000000;
    long done = 0;
    seen_t *seen = NULL;
    long n_seen = 0;
    while (true) {
        pthread_mutex_lock(&sse->lock);
        n_seen = sse->n_seen - seen_from;
        pthread_mutex_unlock(&sse->lock);
        if (n_seen >= ok || bench_now_ns() > deadline) {
            break;
        }
        usleep(2000);
    }
    pthread_mutex_lock(&sse->lock);
    n_seen = sse->n_seen - seen_from;
    seen = (seen_t *)malloc((size_t)(n_seen + 1) * sizeof *seen);
    memcpy(seen, sse->seen + seen_from, (size_t)n_seen * sizeof *seen);
    pthread_mutex_unlock(&sse->lock);
    qsort(seen, (size_t)n_seen, sizeof *seen, s_cmp_seen);
    double *lat = (double *)malloc((size_t)(ok + 1) * sizeof *lat);
    double *create = (double *)malloc((size_t)(ok + 1) * sizeof *create);
    int64_t last = t0;
    for (long i = 0; i < ok; i++) {
        create[i] = (double)(subs[i].done_ns - subs[i].start_ns) / 1e6;
        seen_t key = {subs[i].id, 0};
        seen_t *hit = (seen_t *)bsearch(&key, seen, (size_t)n_seen, sizeof *seen, s_cmp_seen);
        if (hit) {
            lat[done++] = (double)(hit->ns - subs[i].start_ns) / 1e6;
            last = hit->ns > last ? hit->ns : last;
        }
    }
    out->completed = done;
    out->seconds = (double)(last - t0) / 1e9;
    out->tasks_per_s = out->seconds > 0 ? (double)done / out->seconds : 0;
    if (done > 0) {
        qsort(lat, (size_t)done, sizeof *lat, bench_cmp_double);
        out->p50_ms = bench_percentile(lat, done, 50);
        out->p99_ms = bench_percentile(lat, done, 99);
        out->max_ms = lat[done - 1];
    }
    if (ok > 0) {
        qsort(create, (size_t)ok, sizeof *create, bench_cmp_double);
        out->create_p50_ms = bench_percentile(create, ok, 50);
        out->create_p99_ms = bench_percentile(create, ok, 99);
    }
    for (int i = 0; i < opt->inflight; i++) {
        if (posts[i].curl) {
            curl_easy_cleanup(posts[i].curl);
        }
        free(posts[i].buf.data);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(posts);
    free(free_slots);
    free(subs);
    free(seen);
    free(lat);
    free(create);
    return done == ok ? 0 : -1;
}

static void
s_usage(void)
{
    fprintf(stderr,
            "usage: bench_e2e [--tasks N]... [--inflight N] [--rate TASKS_PER_S]\n"
            "                 [--concurrency N] [--timeout-s S] [--node HOST:PORT] [--h2c]\n"
            "                 [--runs N]\n"
            "  defaults: --tasks 1000 --tasks 10000 --inflight 64 --concurrency 256 --runs 1\n"
            "  --runs N: each scenario N times (1-15); its median run by tasks/s is reported\n");
}

int
main(int argc, char **argv)
{
    options_t opt = {.inflight = 64, .concurrency = 256, .timeout_s = 120, .runs = 1};
    static const struct option longopts[] = {{"tasks", required_argument, NULL, 'n'},
                                             {"inflight", required_argument, NULL, 'i'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"concurrency", required_argument, NULL, 'c'},
                                             {"timeout-s", required_argument, NULL, 't'},
                                             {"node", required_argument, NULL, 'a'},
                                             {"h2c", no_argument, NULL, 'p'},
                                             {"runs", required_argument, NULL, 'R'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (opt.n_scenarios < MAX_SCENARIOS) {
                opt.tasks[opt.n_scenarios++] = atol(optarg);
            }
            break;
        case 'i':
            opt.inflight = atoi(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 'c':
            opt.concurrency = atoi(optarg);
            break;
        case 't':
            opt.timeout_s = atoi(optarg);
            break;
        case 'a':
            opt.node = optarg;
            break;
        case 'p':
            opt.h2c = true;
            break;
        case 'R':
            opt.runs = atoi(optarg);
            break;
        default:
            s_usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (opt.n_scenarios == 0) {
        opt.tasks[opt.n_scenarios++] = 1000;
        opt.tasks[opt.n_scenarios++] = 10000;
    }
    if (opt.inflight < 1 || opt.concurrency < 1 || opt.concurrency > 1024 || opt.timeout_s < 1 ||
        opt.runs < 1 || opt.runs > MAX_RUNS) {
        s_usage();
        return 2;
    }
    cd_log_set_level(getenv("E2E_LOG_WARN") ? CD_LOG_WARN : CD_LOG_ERROR);
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

    s_scheme = opt.h2c ? "http" : "https";
    node_t node;
    bool own_node = opt.node == NULL;
    if (own_node && s_node_start(&node, !opt.h2c) != 0) {
        return 1;
    }
    const char *base = own_node ? cd_node_http_addr(node.node) : opt.node;
    long long team = s_sign_in(base, &opt) == 0 ? s_setup(base, opt.concurrency) : -1;
    if (team < 0) {
        if (own_node) {
            s_node_stop(&node);
        }
        return 1;
    }
    sse_t *sse = (sse_t *)calloc(1, sizeof *sse);
    pthread_mutex_init(&sse->lock, NULL);
    snprintf(sse->url, sizeof sse->url, "%s://%s/api/v1/events?types=task.completed", s_scheme,
             base);
    pthread_create(&sse->thread, NULL, s_sse_thread, sse);
    for (int i = 0; i < 500 && !atomic_load(&sse->open); i++) {
        usleep(10000);
    }
    if (!atomic_load(&sse->open)) {
        fprintf(stderr, "bench_e2e: the event stream did not open\n");
    }
    //  A warm-up: connections, prepared statements, the agents' first steps.
    result_t results[MAX_SCENARIOS];
    result_t warm;
    s_scenario(base, team, &opt, 200, sse, &warm);
    int rc = 0;
    bench_cpu_t cpu0 = bench_cpu_read();
    for (int s = 0; s < opt.n_scenarios; s++) {
        result_t runs[MAX_RUNS] = {0};
        for (int k = 0; k < opt.runs; k++) {
            fprintf(stderr, "%ld tasks, run %d/%d ...\n", opt.tasks[s], k + 1, opt.runs);
            if (s_scenario(base, team, &opt, opt.tasks[s], sse, &runs[k]) != 0) {
                fprintf(stderr, "bench_e2e: %ld of %ld tasks completed in time\n",
                        runs[k].completed, runs[k].tasks);
                rc = 1;
            }
        }
        qsort(runs, (size_t)opt.runs, sizeof runs[0], s_cmp_rate);
        results[s] = runs[opt.runs / 2];
    }
    atomic_store(&sse->stop, true);
    pthread_join(sse->thread, NULL);
    char machine[128];
    bench_cpu_report(cpu0, machine, sizeof machine);

    fprintf(stderr,
            "\ne2e: POST /api/v1/tasks over %s (%d in flight%s), a 3-agent echo team pipeline "
            "(concurrency %d each), durable; latency = submit to task.completed on SSE\n",
            opt.h2c ? "h2c" : "h2 (TLS)", opt.inflight, opt.rate > 0 ? ", paced" : ", closed loop",
            opt.concurrency);
    if (opt.rate > 0) {
        fprintf(stderr, "paced at %.0f tasks/s\n", opt.rate);
    }
    if (opt.runs > 1) {
        fprintf(stderr, "each row: the median of %d runs by tasks/s\n", opt.runs);
    }
    fprintf(stderr, "%8s | %10s | %9s | %9s | %9s | %11s | %11s | %6s\n", "tasks", "tasks/s", "p50",
            "p99", "max", "create p50", "create p99", "failed");
    for (int s = 0; s < opt.n_scenarios; s++) {
        const result_t *r = &results[s];
        fprintf(stderr, "%8ld | %10.0f | %7.1fms | %7.1fms | %7.1fms | %9.2fms | %9.2fms | %6ld\n",
                r->tasks, r->tasks_per_s, r->p50_ms, r->p99_ms, r->max_ms, r->create_p50_ms,
                r->create_p99_ms, r->failed + (r->tasks - r->failed - r->completed));
    }
    printf("{\"bench\":\"e2e\",\"protocol\":\"%s\",\"pipeline_stages\":3,\"inflight\":%d,"
           "\"rate\":%.0f,\"agent_concurrency\":%d,\"durable\":true,\"runs\":%d,\"scenarios\":[",
           opt.h2c ? "h2c" : "h2", opt.inflight, opt.rate, opt.concurrency, opt.runs);
    for (int s = 0; s < opt.n_scenarios; s++) {
        const result_t *r = &results[s];
        printf("%s{\"tasks\":%ld,\"completed\":%ld,\"failed\":%ld,\"seconds\":%.3f,"
               "\"tasks_per_s\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
               "\"create_p50_ms\":%.2f,\"create_p99_ms\":%.2f}",
               s ? "," : "", r->tasks, r->completed, r->failed, r->seconds, r->tasks_per_s,
               r->p50_ms, r->p99_ms, r->max_ms, r->create_p50_ms, r->create_p99_ms);
    }
    printf("],%s}\n", machine);
    free(sse->seen);
    pthread_mutex_destroy(&sse->lock);
    free(sse);
    if (own_node) {
        s_node_stop(&node);
    }
    curl_global_cleanup();
    return rc;
}
