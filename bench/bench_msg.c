/*  bench_msg: handoff throughput and latency of the actor runtime, next to
    raw ZeroMQ measured in the same run.

    Scenarios (each run --runs times; the median is reported):
      codec          ns per envelope encode and decode (64 B payload)
      inproc / tcp   throughput: one actor sends N envelopes to another
                     (encode, route, push, pull, decode, dispatch) vs raw
                     PAIR sockets moving the same bytes between two threads
                     round trip: an actor sends to an echo agent and waits
                     for its answer, vs a raw PAIR ping-pong of the same size
                     (tcp: two nodes in this process joined by their cluster
                     links over loopback; the raw ceiling is one PAIR over tcp)
      spawn          1,000 echo agents started under a supervisor: time, and
                     resident memory per idle agent

    Output: a table on stderr and one JSON object on stdout. */
#include "bench_stats.h"
#include "cd_cluster.h"
#include "cd_echo.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 15

typedef struct {
    int runs;         //  repetitions per scenario
    long messages;    //  messages per throughput run
    long roundtrips;  //  round trips per latency run
    int agents;       //  agents for the spawn scenario
    const char *only; //  run only this scenario (codec, inproc, tcp, spawn), or NULL
} options_t;

static int
s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("bind");
        exit(1);
    }
    close(fd);
    return ntohs(addr.sin_port);
}

//  --- the bench actors ---------------------------------------------------------------
//  source: on a task {n, size, to} sends n handoffs of size bytes to `to`.
//  sink:   counts handoffs; after n (header) answers its `done` to the port.
//  pinger: on a task {n, size, to} does n round trips to `to` (an echo
//          agent) and answers the latencies (µs, doubles) to the port.

typedef struct {
    long expected;  //  messages to count before answering
    long count;     //  messages counted
    char reply[64]; //  where to answer
} s_sink_t;

static long
s_header_long(const cd_envelope_t *env, const char *key)
{
    cd_str_t value;
    if (!cd_envelope_header(env, key, &value)) {
        return 0;
    }
    char text[32];
    snprintf(text, sizeof text, "%.*s", (int)value.len, value.ptr);
    return atol(text);
}

static void
s_header_str(const cd_envelope_t *env, const char *key, char *out, size_t size)
{
    out[0] = '\0';
    cd_str_t value;
    if (cd_envelope_header(env, key, &value)) {
        snprintf(out, size, "%.*s", (int)value.len, value.ptr);
    }
}

static int
s_plain_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    *state_p = calloc(1, sizeof(s_sink_t));
    return 0;
}

static void
s_plain_fini(cd_actor_t *self, void **state_p)
{
    free(*state_p);
    *state_p = NULL;
}

static int
s_sink_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_sink_t *sink = (s_sink_t *)state;
    if (env->kind == CD_KIND_CONTROL) {
        sink->expected = s_header_long(env, "n");
        sink->count = 0;
        s_header_str(env, "reply", sink->reply, sizeof sink->reply);
        return 0;
    }
    if (++sink->count == sink->expected) {
        cd_envelope_t done;
        cd_actor_envelope_init(self, &done, CD_KIND_RESULT, sink->reply);
        cd_actor_send(self, &done);
    }
    return 0;
}

static int
s_source_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    long n = s_header_long(env, "n");
    long size = s_header_long(env, "size");
    char to[128];
    s_header_str(env, "to", to, sizeof to);
    uint8_t *payload = calloc(1, (size_t)size);
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_HANDOFF, to);
    out.payload_type = CD_PAYLOAD_BIN;
    out.payload = (cd_bin_t){payload, (uint32_t)size};
    for (long i = 0; i < n; i++) {
        //  A fresh id and timestamp per message, as a real handoff has.
        cd_actor_envelope_init(self, &out, CD_KIND_HANDOFF, to);
        out.task_id = i + 1;
        out.payload_type = CD_PAYLOAD_BIN;
        out.payload = (cd_bin_t){payload, (uint32_t)size};
        while (cd_actor_send(self, &out) == CD_EBUSY) {
        }
    }
    free(payload);
    return 0;
}

typedef struct {
    double *samples;  //  round-trip times, µs
    long n;           //  round trips to do
    long done;        //  round trips done
    int64_t sent_ns;  //  when the current ping left
    uint8_t *payload; //  ping payload
    long size;        //  its size
    char to[128];     //  echo agent
    char reply[64];   //  where the results go
} s_pinger_t;

static void
s_ping(cd_actor_t *self, s_pinger_t *pinger)
{
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_TASK, pinger->to);
    out.task_id = pinger->done + 1;
    out.payload_type = CD_PAYLOAD_BIN;
    out.payload = (cd_bin_t){pinger->payload, (uint32_t)pinger->size};
    pinger->sent_ns = bench_now_ns();
    cd_actor_send(self, &out);
}

static int
s_pinger_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    *state_p = calloc(1, sizeof(s_pinger_t));
    return 0;
}

static void
s_pinger_fini(cd_actor_t *self, void **state_p)
{
    s_pinger_t *pinger = (s_pinger_t *)*state_p;
    if (pinger) {
        free(pinger->samples);
        free(pinger->payload);
        free(pinger);
    }
    *state_p = NULL;
}

static int
s_pinger_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_pinger_t *pinger = (s_pinger_t *)state;
    if (env->kind == CD_KIND_TASK) {
        free(pinger->samples);
        free(pinger->payload);
        pinger->n = s_header_long(env, "n");
        pinger->size = s_header_long(env, "size");
        s_header_str(env, "to", pinger->to, sizeof pinger->to);
        s_header_str(env, "reply", pinger->reply, sizeof pinger->reply);
        pinger->samples = calloc((size_t)pinger->n, sizeof(double));
        pinger->payload = calloc(1, (size_t)pinger->size);
        pinger->done = 0;
        s_ping(self, pinger);
        return 0;
    }
    if (env->kind != CD_KIND_RESULT) {
        return 0;
    }
    pinger->samples[pinger->done++] = (double)(bench_now_ns() - pinger->sent_ns) / 1000.0;
    if (pinger->done < pinger->n) {
        s_ping(self, pinger);
        return 0;
    }
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_RESULT, pinger->reply);
    out.payload_type = CD_PAYLOAD_BIN;
    out.payload =
        (cd_bin_t){(const uint8_t *)pinger->samples, (uint32_t)(pinger->n * (long)sizeof(double))};
    cd_actor_send(self, &out);
    return 0;
}

static const cd_actor_ops_t s_sink_ops = {"bench-sink", s_plain_init, s_sink_handle, NULL,
                                          s_plain_fini};
static const cd_actor_ops_t s_source_ops = {"bench-source", s_plain_init, s_source_handle, NULL,
                                            s_plain_fini};
static const cd_actor_ops_t s_pinger_ops = {"bench-pinger", s_pinger_init, s_pinger_handle, NULL,
                                            s_pinger_fini};

//  --- one node of the bench -----------------------------------------------------------

typedef struct {
    cd_runtime_t rt;
    cd_echo_args_t echo;
    cd_config_peer_t peer;
    cd_cluster_args_t cluster;
    char bind[64];
    char peer_endpoint[64];
    cd_child_spec_t children[5];
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port;
} node_t;

static void
s_node_start(node_t *node, const char *id, int port, const char *peer_id, int peer_port)
{
    memset(node, 0, sizeof *node);
    node->rt = (cd_runtime_t){cd_registry_new(id), 1000, 5000, 1000, 60000, 5000, 5, 10};
    size_t n = 0;
    if (port) {
        snprintf(node->bind, sizeof node->bind, "tcp://127.0.0.1:%d", port);
        snprintf(node->peer_endpoint, sizeof node->peer_endpoint, "tcp://127.0.0.1:%d", peer_port);
        node->peer = (cd_config_peer_t){(char *)peer_id, node->peer_endpoint};
        node->cluster = (cd_cluster_args_t){node->bind, &node->peer, 1, 1000, 60000};
        node->children[n++] =
            (cd_child_spec_t){"cluster", &cd_cluster_ops, &node->cluster, CD_RESTART_PERMANENT};
    }
    node->children[n++] = (cd_child_spec_t){"agent/sink", &s_sink_ops, NULL, CD_RESTART_PERMANENT};
    node->children[n++] =
        (cd_child_spec_t){"agent/source", &s_source_ops, NULL, CD_RESTART_PERMANENT};
    node->children[n++] =
        (cd_child_spec_t){"agent/pinger", &s_pinger_ops, NULL, CD_RESTART_PERMANENT};
    node->children[n++] =
        (cd_child_spec_t){"agent/echo", &cd_echo_ops, &node->echo, CD_RESTART_PERMANENT};
    node->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, node->children, n};
    char why[160];
    node->root = cd_root_new(&node->rt, "root", &node->spec, why, sizeof why);
    if (!node->root) {
        fprintf(stderr, "bench: node failed: %s\n", why);
        exit(1);
    }
    node->port = cd_port_new(&node->rt, "bench");
}

static void
s_node_stop(node_t *node)
{
    cd_port_destroy(&node->port);
    cd_root_destroy(&node->root);
    cd_registry_destroy(&node->rt.registry);
}

static void
s_command(node_t *node, cd_kind_t kind, const char *to, const char *key1, const char *v1,
          const char *key2, const char *v2, const char *key3, const char *v3)
{
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(node->port), &env, kind, to);
    const char *keys[] = {"reply", key1, key2, key3};
    const char *values[] = {"bench", v1, v2, v3};
    for (int i = 0; i < 4; i++) {
        if (keys[i]) {
            env.headers[env.n_headers++] = (cd_env_header_t){cd_str(keys[i]), cd_str(values[i])};
        }
    }
    if (cd_port_send(node->port, &env) != 0) {
        fprintf(stderr, "bench: command not delivered\n");
        exit(1);
    }
}

static void
s_wait_answer(node_t *node, cd_envelope_t *env)
{
    if (cd_port_recv(node->port, 120000, env) != 0) {
        fprintf(stderr, "bench: no answer within 120 s\n");
        exit(1);
    }
}

//  Throughput of ours: source on `from` node -> sink named `sink`.
static double
s_ours_throughput(node_t *from, node_t *to_node, const char *sink, long n, long size)
{
    char text[32], sizetext[32];
    snprintf(text, sizeof text, "%ld", n);
    snprintf(sizetext, sizeof sizetext, "%ld", size);
    s_command(to_node, CD_KIND_CONTROL, "agent/sink", "n", text, NULL, NULL, NULL, NULL);
    zclock_sleep(20);
    int64_t started = bench_now_ns();
    s_command(from, CD_KIND_TASK, "agent/source", "n", text, "size", sizetext, "to", sink);
    cd_envelope_t env;
    s_wait_answer(to_node, &env);
    return (double)n / ((double)(bench_now_ns() - started) / 1e9);
}

static void
s_ours_latency(node_t *node, const char *echo, long n, long size, double *p50, double *p99)
{
    char text[32], sizetext[32];
    snprintf(text, sizeof text, "%ld", n);
    snprintf(sizetext, sizeof sizetext, "%ld", size);
    s_command(node, CD_KIND_TASK, "agent/pinger", "n", text, "size", sizetext, "to", echo);
    cd_envelope_t env;
    s_wait_answer(node, &env);
    long count = (long)(env.payload.len / sizeof(double));
    double *samples = malloc((size_t)count * sizeof(double));
    memcpy(samples, env.payload.ptr, (size_t)count * sizeof(double));
    qsort(samples, (size_t)count, sizeof(double), bench_cmp_double);
    *p50 = bench_percentile(samples, count, 50);
    *p99 = bench_percentile(samples, count, 99);
    free(samples);
}

//  --- raw ZeroMQ ceilings ----------------------------------------------------------------

typedef struct {
    char endpoint[64]; //  where the receiver binds
    long n;            //  messages
    long size;         //  bytes each
    bool pong;         //  echo each message back (latency) instead of counting
} raw_args_t;

static void
s_raw_receiver(zsock_t *pipe, void *args)
{
    raw_args_t *raw = (raw_args_t *)args;
    void *socket = zmq_socket(zsys_init(), ZMQ_PAIR);
    zmq_bind(socket, raw->endpoint);
    zsock_signal(pipe, 0);
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (long i = 0; i < raw->n; i++) {
        zmq_msg_recv(&msg, socket, 0);
        if (raw->pong) {
            zmq_msg_send(&msg, socket, 0);
        }
    }
    zmq_msg_close(&msg);
    zsock_signal(pipe, 0);
    zstr_free(&(char *){zstr_recv(pipe)}); //  $TERM
    int linger = 0;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(socket);
}

//  Throughput: the sender copies `size` bytes into each message, as our
//  mailer copies the encoded envelope.
static double
s_raw_throughput(const char *endpoint, long n, long size)
{
    raw_args_t args = {"", n, size, false};
    snprintf(args.endpoint, sizeof args.endpoint, "%s", endpoint);
    zactor_t *receiver = zactor_new(s_raw_receiver, &args);
    void *socket = zmq_socket(zsys_init(), ZMQ_PAIR);
    zmq_connect(socket, endpoint);
    uint8_t *bytes = calloc(1, (size_t)size);
    int64_t started = bench_now_ns();
    for (long i = 0; i < n; i++) {
        zmq_msg_t msg;
        zmq_msg_init_size(&msg, (size_t)size);
        memcpy(zmq_msg_data(&msg), bytes, (size_t)size);
        zmq_msg_send(&msg, socket, 0);
    }
    zsock_wait(receiver);
    double rate = (double)n / ((double)(bench_now_ns() - started) / 1e9);
    free(bytes);
    int linger = 0;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(socket);
    zactor_destroy(&receiver);
    return rate;
}

static void
s_raw_latency(const char *endpoint, long n, long size, double *p50, double *p99)
{
    raw_args_t args = {"", n, size, true};
    snprintf(args.endpoint, sizeof args.endpoint, "%s", endpoint);
    zactor_t *receiver = zactor_new(s_raw_receiver, &args);
    void *socket = zmq_socket(zsys_init(), ZMQ_PAIR);
    zmq_connect(socket, endpoint);
    uint8_t *bytes = calloc(1, (size_t)size);
    double *samples = malloc((size_t)n * sizeof(double));
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (long i = 0; i < n; i++) {
        int64_t started = bench_now_ns();
        zmq_send(socket, bytes, (size_t)size, 0);
        zmq_msg_recv(&msg, socket, 0);
        samples[i] = (double)(bench_now_ns() - started) / 1000.0;
    }
    zmq_msg_close(&msg);
    zsock_wait(receiver);
    qsort(samples, (size_t)n, sizeof(double), bench_cmp_double);
    *p50 = bench_percentile(samples, n, 50);
    *p99 = bench_percentile(samples, n, 99);
    free(samples);
    free(bytes);
    int linger = 0;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(socket);
    zactor_destroy(&receiver);
}

//  --- codec ------------------------------------------------------------------------------

static size_t
s_sample_envelope(cd_envelope_t *env, uint8_t *payload, long size, cd_idgen_t *gen)
{
    memset(env, 0, sizeof *env);
    cd_idgen_next(gen, env->id);
    env->kind = CD_KIND_HANDOFF;
    env->from = cd_str("agent/source");
    env->to = cd_str("agent/sink");
    env->task_id = 42;
    cd_idgen_next(gen, env->trace_id);
    env->ts = 1;
    env->attempt = 1;
    env->payload_type = CD_PAYLOAD_BIN;
    env->payload = (cd_bin_t){payload, (uint32_t)size};
    return 0;
}

static void
s_codec(long n, double *encode_ns, double *decode_ns, size_t *encoded_size)
{
    uint8_t payload[64] = {0};
    cd_idgen_t gen;
    cd_idgen_init(&gen);
    cd_envelope_t env;
    s_sample_envelope(&env, payload, sizeof payload, &gen);
    cd_envbuf_t *buf = cd_envbuf_new();
    int64_t started = bench_now_ns();
    for (long i = 0; i < n; i++) {
        env.task_id = i;
        cd_envelope_encode(&env, buf);
    }
    *encode_ns = (double)(bench_now_ns() - started) / (double)n;
    *encoded_size = cd_envbuf_size(buf);
    cd_envelope_t out;
    started = bench_now_ns();
    long ok = 0;
    for (long i = 0; i < n; i++) {
        ok += cd_envelope_decode(cd_envbuf_data(buf), cd_envbuf_size(buf), &out, NULL) == 0;
    }
    *decode_ns = (double)(bench_now_ns() - started) / (double)n;
    if (ok != n) {
        fprintf(stderr, "bench: decode failed\n");
        exit(1);
    }
    cd_envbuf_destroy(&buf);
}

//  Encoded size of a bench handoff with `size` payload bytes.
static long
s_wire_size(long size)
{
    uint8_t *payload = calloc(1, (size_t)size);
    cd_idgen_t gen;
    cd_idgen_init(&gen);
    cd_envelope_t env;
    s_sample_envelope(&env, payload, size, &gen);
    cd_envbuf_t *buf = cd_envbuf_new();
    cd_envelope_encode(&env, buf);
    long wire = (long)cd_envbuf_size(buf);
    cd_envbuf_destroy(&buf);
    free(payload);
    return wire;
}

//  --- spawn ----------------------------------------------------------------------------------

static long
s_rss_kib(void)
{
    FILE *file = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (file) {
        if (fscanf(file, "%ld %ld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(file);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void
s_spawn(int agents, double *seconds, double *rss_per_agent_kib)
{
    cd_runtime_t rt = {cd_registry_new("spawn"), 1000, 1000, 1000, 5000, 5000, 5, 10};
    cd_echo_args_t echo = {0};
    cd_child_spec_t *specs = calloc((size_t)agents, sizeof *specs);
    char **names = calloc((size_t)agents, sizeof *names);
    for (int i = 0; i < agents; i++) {
        names[i] = zsys_sprintf("agent/echo-%d", i);
        specs[i] = (cd_child_spec_t){names[i], &cd_echo_ops, &echo, CD_RESTART_PERMANENT};
    }
    cd_supervisor_spec_t agents_spec = {CD_ONE_FOR_ONE, -1, 0, specs, (size_t)agents};
    cd_child_spec_t top[] = {{"agents", &cd_supervisor_ops, &agents_spec, CD_RESTART_PERMANENT}};
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, top, 1};
    //  Measure against a tree with no agents, so the baseline holds the
    //  supervisor's own thread and czmq's context.
    cd_supervisor_spec_t empty_agents = {CD_ONE_FOR_ONE, -1, 0, NULL, 0};
    cd_child_spec_t empty_top[] = {
        {"agents", &cd_supervisor_ops, &empty_agents, CD_RESTART_PERMANENT}};
    cd_supervisor_spec_t empty = {CD_ONE_FOR_ONE, -1, 0, empty_top, 1};
    char why[160];
    cd_root_t *root = cd_root_new(&rt, "root", &empty, why, sizeof why);
    zclock_sleep(200);
    long before = s_rss_kib();
    cd_root_destroy(&root);

    int64_t started = bench_now_ns();
    root = cd_root_new(&rt, "root", &spec, why, sizeof why);
    *seconds = (double)(bench_now_ns() - started) / 1e9;
    if (!root) {
        fprintf(stderr, "bench: spawn failed: %s\n", why);
        exit(1);
    }
    zclock_sleep(1500); //  idle, heartbeats running
    long after = s_rss_kib();
    *rss_per_agent_kib = (double)(after - before) / agents;
    cd_root_destroy(&root);
    for (int i = 0; i < agents; i++) {
        zstr_free(&names[i]);
    }
    free(names);
    free(specs);
    cd_registry_destroy(&rt.registry);
}

//  --- main ------------------------------------------------------------------------------------

typedef struct {
    const char *transport;
    long size;
    double ours_rate[MAX_RUNS], raw_rate[MAX_RUNS];
    double ours_p50[MAX_RUNS], ours_p99[MAX_RUNS], raw_p50[MAX_RUNS], raw_p99[MAX_RUNS];
} result_t;

static void
s_usage(void)
{
    fprintf(stderr, "usage: bench_msg [--runs N] [--messages N] [--roundtrips N] [--agents N]\n"
                    "                 [--only codec|inproc|tcp|spawn]\n");
}

int
main(int argc, char **argv)
{
    options_t opt = {5, 1000000, 20000, 1000, NULL};
    static const struct option longopts[] = {{"runs", required_argument, NULL, 'r'},
                                             {"messages", required_argument, NULL, 'm'},
                                             {"roundtrips", required_argument, NULL, 't'},
                                             {"agents", required_argument, NULL, 'a'},
                                             {"only", required_argument, NULL, 'o'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            opt.runs = atoi(optarg);
            break;
        case 'm':
            opt.messages = atol(optarg);
            break;
        case 't':
            opt.roundtrips = atol(optarg);
            break;
        case 'a':
            opt.agents = atoi(optarg);
            break;
        case 'o':
            opt.only = optarg;
            break;
        default:
            s_usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (opt.runs < 1 || opt.runs > MAX_RUNS || opt.messages < 1 || opt.roundtrips < 1 ||
        opt.agents < 1) {
        s_usage();
        return 2;
    }
    cd_log_set_level(CD_LOG_ERROR);
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    zsys_set_max_sockets(0);
    zsys_set_linger(0);
    zsys_init();

    double enc[MAX_RUNS] = {0}, dec[MAX_RUNS] = {0};
    size_t wire64 = 0;
    for (int r = 0; r < opt.runs; r++) {
        enc[r] = dec[r] = 0;
        if (!opt.only || streq(opt.only, "codec")) {
            s_codec(1000000, &enc[r], &dec[r], &wire64);
        }
    }
    double encode_ns = bench_median(enc, opt.runs), decode_ns = bench_median(dec, opt.runs);
    fprintf(stderr, "codec: encode %.0f ns, decode %.0f ns (%zu-byte envelope, 64 B payload)\n",
            encode_ns, decode_ns, wire64);

    bench_cpu_t cpu0 = bench_cpu_read();
    result_t results[4] = {{"inproc", 64}, {"inproc", 4096}, {"tcp", 64}, {"tcp", 4096}};
    for (int k = 0; k < 4; k++) {
        result_t *res = &results[k];
        bool tcp = streq(res->transport, "tcp");
        long wire = s_wire_size(res->size);
        for (int r = 0; r < opt.runs; r++) {
            res->ours_rate[r] = res->raw_rate[r] = 1;
            res->ours_p50[r] = res->ours_p99[r] = res->raw_p50[r] = res->raw_p99[r] = 1;
            if (opt.only && !streq(opt.only, res->transport)) {
                continue;
            }
            fprintf(stderr, "\r%s %ld B: run %d/%d ...", res->transport, res->size, r + 1,
                    opt.runs);
            node_t a, b;
            if (tcp) {
                int pa = s_free_port(), pb = s_free_port();
                s_node_start(&b, "nb", pb, "na", pa);
                s_node_start(&a, "na", pa, "nb", pb);
                zclock_sleep(200); //  let the links connect
                res->ours_rate[r] =
                    s_ours_throughput(&a, &b, "node/nb/agent/sink", opt.messages, res->size);
                s_ours_latency(&a, "node/nb/agent/echo", opt.roundtrips, res->size,
                               &res->ours_p50[r], &res->ours_p99[r]);
                s_node_stop(&a);
                s_node_stop(&b);
                char endpoint[64];
                snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s_free_port());
                res->raw_rate[r] = s_raw_throughput(endpoint, opt.messages, wire);
                snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s_free_port());
                s_raw_latency(endpoint, opt.roundtrips, wire, &res->raw_p50[r], &res->raw_p99[r]);
            } else {
                s_node_start(&a, "na", 0, NULL, 0);
                res->ours_rate[r] =
                    s_ours_throughput(&a, &a, "agent/sink", opt.messages, res->size);
                s_ours_latency(&a, "agent/echo", opt.roundtrips, res->size, &res->ours_p50[r],
                               &res->ours_p99[r]);
                s_node_stop(&a);
                char endpoint[64];
                snprintf(endpoint, sizeof endpoint, "inproc://bench-raw-%d-%d", k, r);
                res->raw_rate[r] = s_raw_throughput(endpoint, opt.messages, wire);
                snprintf(endpoint, sizeof endpoint, "inproc://bench-rawl-%d-%d", k, r);
                s_raw_latency(endpoint, opt.roundtrips, wire, &res->raw_p50[r], &res->raw_p99[r]);
            }
        }
        fprintf(stderr, "\r%-40s\r", "");
    }

    double spawn_s[MAX_RUNS] = {0}, rss[MAX_RUNS] = {0};
    for (int r = 0; r < opt.runs; r++) {
        spawn_s[r] = rss[r] = 0;
        if (opt.only && !streq(opt.only, "spawn")) {
            continue;
        }
        fprintf(stderr, "\rspawn %d agents: run %d/%d ...", opt.agents, r + 1, opt.runs);
        s_spawn(opt.agents, &spawn_s[r], &rss[r]);
    }
    fprintf(stderr, "\r%-40s\r", "");
    double spawn_median = bench_median(spawn_s, opt.runs), rss_median = bench_median(rss, opt.runs);
    char machine[128];
    bench_cpu_report(cpu0, machine, sizeof machine);

    fprintf(stderr,
            "\nmedians of %d runs; %ld messages per throughput run, %ld round trips per "
            "latency run\n",
            opt.runs, opt.messages, opt.roundtrips);
    fprintf(stderr, "%-8s %6s | %12s %12s %6s | %9s %9s %6s | %9s %9s\n", "link", "size",
            "ours msg/s", "raw msg/s", "ratio", "ours p50", "raw p50", "ratio", "ours p99",
            "raw p99");
    printf("{\"bench\":\"msg\",\"runs\":%d,\"messages\":%ld,\"roundtrips\":%ld,"
           "\"codec\":{\"encode_ns\":%.1f,\"decode_ns\":%.1f,\"envelope_bytes\":%zu},\"handoff\":[",
           opt.runs, opt.messages, opt.roundtrips, encode_ns, decode_ns, wire64);
    bool first = true;
    for (int k = 0; k < 4; k++) {
        if (opt.only && !streq(opt.only, results[k].transport)) {
            continue; //  not measured in this run
        }
        result_t *res = &results[k];
        double ours = bench_median(res->ours_rate, opt.runs),
               raw = bench_median(res->raw_rate, opt.runs);
        double op50 = bench_median(res->ours_p50, opt.runs),
               rp50 = bench_median(res->raw_p50, opt.runs);
        double op99 = bench_median(res->ours_p99, opt.runs),
               rp99 = bench_median(res->raw_p99, opt.runs);
        fprintf(stderr,
                "%-8s %5ldB | %12.0f %12.0f %5.0f%% | %7.1fus %7.1fus %5.2fx | %7.1fus %7.1fus\n",
                res->transport, res->size, ours, raw, 100 * ours / raw, op50, rp50, op50 / rp50,
                op99, rp99);
        printf("%s{\"transport\":\"%s\",\"payload_bytes\":%ld,\"ours_msgs_per_s\":%.0f,"
               "\"raw_msgs_per_s\":%.0f,\"throughput_ratio\":%.3f,\"ours_rtt_p50_us\":%.2f,"
               "\"raw_rtt_p50_us\":%.2f,\"rtt_p50_ratio\":%.3f,\"ours_rtt_p99_us\":%.2f,"
               "\"raw_rtt_p99_us\":%.2f}",
               first ? "" : ",", res->transport, res->size, ours, raw, ours / raw, op50, rp50,
               op50 / rp50, op99, rp99);
        first = false;
    }
    printf("]");
    if (!opt.only || streq(opt.only, "spawn")) {
        fprintf(stderr, "spawn %d echo agents: %.3f s; resident memory per idle agent: %.1f KiB\n",
                opt.agents, spawn_median, rss_median);
        printf(",\"spawn\":{\"agents\":%d,\"seconds\":%.4f,\"rss_per_agent_kib\":%.1f}", opt.agents,
               spawn_median, rss_median);
    }
    printf(",%s}\n", machine);
    return 0;
}
