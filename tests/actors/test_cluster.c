/*  Two nodes in one process, linked over real tcp on loopback: a task sent
    to an echo agent on the other node comes back; a handoff crosses nodes
    and the last agent answers the original requester; a large payload
    travels as its own frame; unknown nodes and misrouted messages become
    dead letters.

    Security: with CurveZMQ keys (made by the keygen subcommand) the same
    link works; a client whose key is not allowed, or one without Curve,
    gets nothing through and the refusal is logged and counted; a
    non-loopback bind or peer without keys is refused at start unless
    allowed; and if the ZAP handler cannot be bound (zmq_bind wrapped to
    fail it) the link does not start and binds nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_cluster.h"
#include "cd_curve.h"
#include "cd_echo.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"
#include "cd_zap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

//  The cluster actor's zmq_bind calls come here (-Wl,--wrap=zmq_bind, see
//  tests/CMakeLists.txt): a test can make the ZAP endpoint unbindable.
int __real_zmq_bind(void *socket, const char *endpoint);
int __wrap_zmq_bind(void *socket, const char *endpoint);
static bool s_fail_zap_bind;

int
__wrap_zmq_bind(void *socket, const char *endpoint)
{
    if (s_fail_zap_bind && strcmp(endpoint, CD_ZAP_ENDPOINT) == 0) {
        errno = EADDRINUSE;
        return -1;
    }
    return __real_zmq_bind(socket, endpoint);
}

//  A node's CurveZMQ settings (all NULL: no CurveZMQ).
typedef struct {
    const char *secret;    //  this node's secret key
    const char *peer_key;  //  the peer's public key
    const char *allowed;   //  allowed keys, comma-separated
    bool insecure;         //  allow_insecure
    const char *bind_host; //  host to bind (default 127.0.0.1)
    const char *peer_host; //  host of the peer (default 127.0.0.1)
} security_t;

typedef struct {
    cd_runtime_t rt;
    cd_config_peer_t peer;
    cd_cluster_args_t cluster;
    cd_echo_args_t echo;
    cd_echo_args_t relay;
    cd_child_spec_t children[3];
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port;
    char bind[64];
    char peer_endpoint[64];
    char peer_key[CD_CURVE_KEY_LEN + 1];
} node_t;

//  A free tcp port on loopback (bound once by the kernel, then released).
static int
s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

//  Starts a node; returns the root, or NULL with why filled (the node is
//  then half made: s_node_free releases it).
static cd_root_t *
s_node_try(node_t *node, const char *id, int port, const char *peer_id, int peer_port,
           const char *relay_to, const security_t *sec, char *why, size_t why_size)
{
    static const security_t none = {0};
    sec = sec ? sec : &none;
    memset(node, 0, sizeof *node);
    node->rt = (cd_runtime_t){cd_registry_new(id), 1000, 1000, 100, 2000, 3000, 5, 10};

    snprintf(node->bind, sizeof node->bind, "tcp://%s:%d",
             sec->bind_host ? sec->bind_host : "127.0.0.1", port);
    snprintf(node->peer_endpoint, sizeof node->peer_endpoint, "tcp://%s:%d",
             sec->peer_host ? sec->peer_host : "127.0.0.1", peer_port);
    snprintf(node->peer_key, sizeof node->peer_key, "%s", sec->peer_key ? sec->peer_key : "");
    node->peer = (cd_config_peer_t){(char *)peer_id, node->peer_endpoint,
                                    sec->peer_key ? node->peer_key : NULL};
    node->cluster = (cd_cluster_args_t){.bind = node->bind,
                                        .peers = peer_id ? &node->peer : NULL,
                                        .n_peers = peer_id ? 1 : 0,
                                        .heartbeat_ivl_ms = 200,
                                        .heartbeat_timeout_ms = 2000,
                                        .curve_secret_key = sec->secret,
                                        .curve_allowed_keys = sec->allowed,
                                        .allow_insecure = sec->insecure};
    node->relay.handoff_to = (char *)relay_to;
    node->children[0] =
        (cd_child_spec_t){"cluster", &cd_cluster_ops, &node->cluster, CD_RESTART_PERMANENT};
    node->children[1] =
        (cd_child_spec_t){"agent/echo", &cd_echo_ops, &node->echo, CD_RESTART_PERMANENT};
    node->children[2] =
        (cd_child_spec_t){"agent/relay", &cd_echo_ops, &node->relay, CD_RESTART_PERMANENT};
    node->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, node->children, 3};
    node->root = cd_root_new(&node->rt, "root", &node->spec, why, why_size);
    if (node->root) {
        node->port = cd_port_new(&node->rt, "test");
        assert_non_null(node->port);
    }
    return node->root;
}

static void
s_node_start_secure(node_t *node, const char *id, int port, const char *peer_id, int peer_port,
                    const char *relay_to, const security_t *sec)
{
    char why[160] = "";
    if (!s_node_try(node, id, port, peer_id, peer_port, relay_to, sec, why, sizeof why)) {
        fail_msg("node %s: %s", id, why);
    }
}

static void
s_node_start(node_t *node, const char *id, int port, const char *peer_id, int peer_port,
             const char *relay_to)
{
    s_node_start_secure(node, id, port, peer_id, peer_port, relay_to, NULL);
}

//  Releases a node that did not start.
static void
s_node_free(node_t *node)
{
    cd_registry_destroy(&node->rt.registry);
}

static void
s_node_stop(node_t *node)
{
    cd_port_destroy(&node->port);
    assert_int_equal(cd_root_destroy(&node->root), 0);
    cd_registry_destroy(&node->rt.registry);
}

static int
s_send(node_t *node, const char *to, const void *payload, size_t size, int64_t task_id)
{
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(node->port), &env, CD_KIND_TASK, to);
    env.task_id = task_id;
    env.payload_type = CD_PAYLOAD_BIN;
    env.payload = (cd_bin_t){(const uint8_t *)payload, (uint32_t)size};
    return cd_port_send(node->port, &env);
}

//  Waits for the answer to task_id; returns its echo value view.
static cd_bin_t
s_answer(node_t *node, int64_t task_id, cd_envelope_t *env)
{
    int64_t deadline = zclock_mono() + 5000;
    while (zclock_mono() < deadline) {
        if (cd_port_recv(node->port, 100, env) == 0 && env->task_id == task_id) {
            cd_bin_t value = {NULL, 0};
            assert_int_equal(cd_msgpack_map_find(env->payload, "echo", &value), 0);
            return value;
        }
    }
    fail_msg("no answer for task %lld", (long long)task_id);
    return (cd_bin_t){NULL, 0};
}

static void
test_cluster_task_to_an_agent_on_another_node_comes_back(void **state)
{
    int pa = s_free_port(), pb = s_free_port();
    node_t a, b;
    s_node_start(&b, "nb", pb, "na", pa, NULL);
    s_node_start(&a, "na", pa, "nb", pb, NULL);
    for (int i = 1; i <= 50; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "hello %d", i);
        assert_int_equal(s_send(&a, "node/nb/agent/echo", text, (size_t)len, i), 0);
        cd_envelope_t env;
        cd_bin_t value = s_answer(&a, i, &env);
        //  msgpack bin8: 0xc4, length, bytes.
        assert_int_equal(value.len, (uint32_t)len + 2);
        assert_memory_equal(value.ptr + 2, text, (size_t)len);
        assert_true(cd_str_eq(env.from, "node/nb/agent/echo"));
    }
    s_node_stop(&a);
    s_node_stop(&b);
}

static void
test_cluster_handoff_crosses_nodes_and_answers_the_requester(void **state)
{
    int pa = s_free_port(), pb = s_free_port();
    node_t a, b;
    s_node_start(&b, "nb", pb, "na", pa, NULL);
    //  a's relay hands its output to b's echo, which answers a's test port.
    s_node_start(&a, "na", pa, "nb", pb, "node/nb/agent/echo");
    assert_int_equal(s_send(&a, "agent/relay", "x", 1, 7), 0);
    cd_envelope_t env;
    cd_bin_t value = s_answer(&a, 7, &env);
    //  {"echo": {"echo": bin "x"}}
    cd_bin_t inner;
    assert_int_equal(cd_msgpack_map_find(value, "echo", &inner), 0);
    assert_int_equal(inner.len, 3);
    assert_int_equal(inner.ptr[2], 'x');
    s_node_stop(&a);
    s_node_stop(&b);
}

static void
test_cluster_large_payload_travels_as_its_own_frame(void **state)
{
    int pa = s_free_port(), pb = s_free_port();
    node_t a, b;
    s_node_start(&b, "nb", pb, "na", pa, NULL);
    s_node_start(&a, "na", pa, "nb", pb, NULL);
    size_t size = 300 * 1024;
    uint8_t *big = malloc(size);
    for (size_t i = 0; i < size; i++) {
        big[i] = (uint8_t)(i * 31);
    }
    assert_int_equal(s_send(&a, "node/nb/agent/echo", big, size, 9), 0);
    cd_envelope_t env;
    cd_bin_t value = s_answer(&a, 9, &env);
    assert_true(env.payload_in_frame);
    assert_int_equal(value.len, size + 5); //  bin32 header
    assert_memory_equal(value.ptr + 5, big, size);
    free(big);
    s_node_stop(&a);
    s_node_stop(&b);
}

static void
test_cluster_unknown_node_is_a_dead_letter(void **state)
{
    int pa = s_free_port(), pb = s_free_port();
    node_t a;
    s_node_start(&a, "na", pa, "nb", pb, NULL);
    //  The mailer accepts it (the cluster link exists); the link has no
    //  route to "nz" and records it.
    assert_int_equal(s_send(&a, "node/nz/agent/echo", "x", 1, 1), 0);
    int64_t deadline = zclock_mono() + 3000;
    while (cd_registry_dead_letters(a.rt.registry) == 0 && zclock_mono() < deadline) {
        zclock_sleep(10);
    }
    assert_int_equal(cd_registry_dead_letters(a.rt.registry), 1);
    s_node_stop(&a);
}

static void
test_cluster_rejects_garbage_and_misrouted_messages_from_peers(void **state)
{
    int pa = s_free_port();
    node_t a;
    s_node_start(&a, "na", pa, "nb", s_free_port(), NULL);
    zsock_t *rogue = zsock_new(ZMQ_DEALER);
    assert_int_equal(zsock_connect(rogue, "tcp://127.0.0.1:%d", pa), 0);
    //  Garbage, then a valid envelope for another node: neither is delivered
    //  nor bounced, both are recorded; the node keeps serving.
    zstr_send(rogue, "not msgpack");
    cd_envbuf_t *buf = cd_envbuf_new();
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(a.port), &env, CD_KIND_TASK, "node/nq/agent/echo");
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    zmq_send(zsock_resolve(rogue), cd_envbuf_data(buf), cd_envbuf_size(buf), 0);
    int64_t deadline = zclock_mono() + 3000;
    while (cd_registry_dead_letters(a.rt.registry) < 2 && zclock_mono() < deadline) {
        zclock_sleep(10);
    }
    assert_int_equal(cd_registry_dead_letters(a.rt.registry), 2);
    cd_registry_entry_t entry;
    assert_int_equal(cd_registry_get(a.rt.registry, "cluster", &entry), 0);
    assert_int_equal(entry.restarts, 0);
    cd_envbuf_destroy(&buf);
    zsock_destroy(&rogue);
    s_node_stop(&a);
}

//  --- security ---------------------------------------------------------------------------

//  A key pair made by `cadred keygen PATH`, read back from its files.
static void
s_keygen_pair(char public_key[CD_CURVE_KEY_LEN + 1], char secret_key[CD_CURVE_KEY_LEN + 1])
{
    char dir[] = "/tmp/cadre-cluster-keys-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char base[96], path[128];
    snprintf(base, sizeof base, "%s/node", dir);
    char *args[] = {base};
    FILE *sink = fopen("/dev/null", "w");
    assert_int_equal(cd_curve_keygen_command(args, 1, sink, sink), 0);
    fclose(sink);
    const char *ext[2] = {"pub", "key"};
    char *dest[2] = {public_key, secret_key};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s.%s", base, ext[i]);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char line[128] = "";
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        unlink(path);
        line[strcspn(line, "\n")] = '\0';
        assert_true(cd_curve_key_valid(line));
        memcpy(dest[i], line, CD_CURVE_KEY_LEN + 1);
    }
    rmdir(dir);
}

//  True once the cluster actor of node has logged a line containing text.
static bool
s_logged(node_t *node, const char *text, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    do {
        char *json = NULL;
        bool found = cd_registry_log_read(node->rt.registry, "cluster", 0, &json) == 0 &&
                     strstr(json, text) != NULL;
        free(json);
        if (found) {
            return true;
        }
        zclock_sleep(20);
    } while (zclock_mono() < deadline);
    return false;
}

//  Lines the cluster actors log, whatever their node (a failed start
//  leaves no registry entry to read them from).
static struct {
    pthread_mutex_t lock; //  guards text
    char text[1 << 16];   //  lines, newline-separated; the oldest dropped when full
} s_lines = {PTHREAD_MUTEX_INITIALIZER, ""};

static bool
s_sink_wants(void *arg, const char *actor)
{
    return strcmp(actor, "cluster") == 0;
}

static void
s_sink_write(void *arg, cd_log_level_t level, const char *actor, const char *text, size_t len)
{
    pthread_mutex_lock(&s_lines.lock);
    size_t used = strlen(s_lines.text);
    if (used + len + 2 > sizeof s_lines.text) {
        used = 0;
    }
    snprintf(s_lines.text + used, sizeof s_lines.text - used, "%s\n", text);
    pthread_mutex_unlock(&s_lines.lock);
}

static const cd_log_sink_t s_sink = {s_sink_wants, s_sink_write};

static bool
s_sink_has(const char *text)
{
    pthread_mutex_lock(&s_lines.lock);
    bool found = strstr(s_lines.text, text) != NULL;
    pthread_mutex_unlock(&s_lines.lock);
    return found;
}

//  A DEALER to 127.0.0.1:port, a Curve client with the given keys (NULL
//  public_key: no Curve at all).
static zsock_t *
s_dealer(int port, const char *server_key, const char *public_key, const char *secret_key)
{
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    if (public_key) {
        zsock_set_curve_serverkey(dealer, server_key);
        zsock_set_curve_publickey(dealer, public_key);
        zsock_set_curve_secretkey(dealer, secret_key);
    }
    assert_int_equal(zsock_connect(dealer, "tcp://127.0.0.1:%d", port), 0);
    return dealer;
}

static void
test_cluster_curve_link_carries_messages_between_keyed_nodes(void **state)
{
    char a_pub[CD_CURVE_KEY_LEN + 1], a_sec[CD_CURVE_KEY_LEN + 1];
    char b_pub[CD_CURVE_KEY_LEN + 1], b_sec[CD_CURVE_KEY_LEN + 1];
    s_keygen_pair(a_pub, a_sec);
    s_keygen_pair(b_pub, b_sec);
    int pa = s_free_port(), pb = s_free_port();
    //  Each knows the other as a peer, which is also what lets it in.
    security_t sa = {.secret = a_sec, .peer_key = b_pub};
    security_t sb = {.secret = b_sec, .peer_key = a_pub};
    node_t a, b;
    s_node_start_secure(&b, "nb", pb, "na", pa, NULL, &sb);
    s_node_start_secure(&a, "na", pa, "nb", pb, NULL, &sa);
    for (int i = 1; i <= 10; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "secret %d", i);
        assert_int_equal(s_send(&a, "node/nb/agent/echo", text, (size_t)len, i), 0);
        cd_envelope_t env;
        cd_bin_t value = s_answer(&a, i, &env);
        assert_int_equal(value.len, (uint32_t)len + 2);
        assert_memory_equal(value.ptr + 2, text, (size_t)len);
    }
    assert_true(s_logged(&a, "\"security\":\"curve\"", 1000));
    assert_false(s_logged(&a, "refused a peer", 0));
    s_node_stop(&a);
    s_node_stop(&b);
}

static void
test_cluster_curve_refuses_a_client_with_an_unknown_key(void **state)
{
    char a_pub[CD_CURVE_KEY_LEN + 1], a_sec[CD_CURVE_KEY_LEN + 1];
    char b_pub[CD_CURVE_KEY_LEN + 1], b_sec[CD_CURVE_KEY_LEN + 1];
    char c_pub[CD_CURVE_KEY_LEN + 1], c_sec[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_keypair(a_pub, a_sec), 0);
    assert_int_equal(cd_curve_keypair(b_pub, b_sec), 0);
    assert_int_equal(cd_curve_keypair(c_pub, c_sec), 0);
    int pa = s_free_port();
    //  A admits B's key only, and has no peers of its own.
    security_t sa = {.secret = a_sec, .allowed = b_pub};
    node_t a;
    s_node_start_secure(&a, "na", pa, NULL, 0, NULL, &sa);
    //  A task for A's echo agent, answered to A's test port if delivered.
    cd_envbuf_t *buf = cd_envbuf_new();
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(a.port), &env, CD_KIND_TASK, "node/na/agent/echo");
    env.task_id = 77;
    env.payload_type = CD_PAYLOAD_BIN;
    env.payload = (cd_bin_t){(const uint8_t *)"x", 1};
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    //  C knows A's server key but its own key is not allowed; D speaks no
    //  Curve at all. Neither gets anything through.
    zsock_t *c = s_dealer(pa, a_pub, c_pub, c_sec);
    zsock_t *d = s_dealer(pa, NULL, NULL, NULL);
    zmq_send(zsock_resolve(c), cd_envbuf_data(buf), cd_envbuf_size(buf), 0);
    zmq_send(zsock_resolve(d), cd_envbuf_data(buf), cd_envbuf_size(buf), 0);
    cd_envelope_t reply;
    assert_int_equal(cd_port_recv(a.port, 1500, &reply), CD_ETIMEDOUT);
    //  The refusal is logged with C's key, and counted.
    assert_true(s_logged(&a, "refused a peer", 3000));
    assert_true(s_logged(&a, c_pub, 0));
    assert_true(s_logged(&a, "\"refused\":1", 0));
    //  B's key gets in: the same task is answered.
    zsock_t *b = s_dealer(pa, a_pub, b_pub, b_sec);
    zmq_send(zsock_resolve(b), cd_envbuf_data(buf), cd_envbuf_size(buf), 0);
    cd_bin_t value = s_answer(&a, 77, &reply);
    assert_int_equal(value.len, 3);
    //  A client that has the right key but expects another server key
    //  (a node impersonating A) cannot complete the handshake either.
    zsock_t *e = s_dealer(pa, c_pub, b_pub, b_sec);
    env.task_id = 78;
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    zmq_send(zsock_resolve(e), cd_envbuf_data(buf), cd_envbuf_size(buf), 0);
    assert_int_equal(cd_port_recv(a.port, 1000, &reply), CD_ETIMEDOUT);
    zsock_destroy(&b);
    zsock_destroy(&c);
    zsock_destroy(&d);
    zsock_destroy(&e);
    cd_envbuf_destroy(&buf);
    s_node_stop(&a);
}

static void
test_cluster_insecure_endpoints_are_refused_unless_allowed(void **state)
{
    node_t n;
    char why[160] = "";
    //  A bind on every interface without keys.
    security_t wide = {.bind_host = "0.0.0.0"};
    assert_null(
        s_node_try(&n, "na", s_free_port(), "nb", s_free_port(), NULL, &wide, why, sizeof why));
    assert_true(s_sink_has("refusing to bind a non-loopback endpoint without CurveZMQ"));
    s_node_free(&n);
    //  A peer elsewhere without keys.
    security_t far = {.peer_host = "10.255.255.1"};
    assert_null(s_node_try(&n, "na", s_free_port(), "nb", 7000, NULL, &far, why, sizeof why));
    assert_true(s_sink_has("refusing a non-loopback peer without CurveZMQ"));
    s_node_free(&n);
    //  Explicitly allowed.
    wide.insecure = true;
    s_node_start_secure(&n, "na", s_free_port(), "nb", s_free_port(), NULL, &wide);
    assert_true(s_logged(&n, "\"security\":\"none\"", 1000));
    s_node_stop(&n);
    //  With CurveZMQ both are fine.
    char a_pub[CD_CURVE_KEY_LEN + 1], a_sec[CD_CURVE_KEY_LEN + 1];
    char b_pub[CD_CURVE_KEY_LEN + 1], b_sec[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_keypair(a_pub, a_sec), 0);
    assert_int_equal(cd_curve_keypair(b_pub, b_sec), 0);
    security_t keyed = {
        .secret = a_sec, .peer_key = b_pub, .bind_host = "0.0.0.0", .peer_host = "10.255.255.1"};
    s_node_start_secure(&n, "na", s_free_port(), "nb", 7000, NULL, &keyed);
    s_node_stop(&n);
    //  With CurveZMQ a peer without a key is refused.
    keyed.peer_key = NULL;
    assert_null(s_node_try(&n, "na", s_free_port(), "nb", 7000, NULL, &keyed, why, sizeof why));
    assert_true(s_sink_has("peer has no valid CurveZMQ public key"));
    s_node_free(&n);
}

static void
test_cluster_without_a_zap_handler_the_link_fails_closed(void **state)
{
    char a_pub[CD_CURVE_KEY_LEN + 1], a_sec[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_keypair(a_pub, a_sec), 0);
    int port = s_free_port();
    security_t sa = {.secret = a_sec};
    node_t n;
    char why[160] = "";
    s_fail_zap_bind = true;
    cd_root_t *root = s_node_try(&n, "na", port, NULL, 0, NULL, &sa, why, sizeof why);
    s_fail_zap_bind = false;
    assert_null(root);
    assert_true(s_sink_has("cannot bind the ZAP handler"));
    s_node_free(&n);
    //  Nothing was bound: the port is free.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    close(fd);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    cd_log_sink_add(&s_sink, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_task_to_an_agent_on_another_node_comes_back),
        cmocka_unit_test(test_cluster_handoff_crosses_nodes_and_answers_the_requester),
        cmocka_unit_test(test_cluster_large_payload_travels_as_its_own_frame),
        cmocka_unit_test(test_cluster_unknown_node_is_a_dead_letter),
        cmocka_unit_test(test_cluster_rejects_garbage_and_misrouted_messages_from_peers),
        cmocka_unit_test(test_cluster_curve_link_carries_messages_between_keyed_nodes),
        cmocka_unit_test(test_cluster_curve_refuses_a_client_with_an_unknown_key),
        cmocka_unit_test(test_cluster_insecure_endpoints_are_refused_unless_allowed),
        cmocka_unit_test(test_cluster_without_a_zap_handler_the_link_fails_closed),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cd_log_sink_remove(&s_sink, NULL);
    return rc;
}
