/*  Two nodes in one process, linked over real tcp on loopback: a task sent
    to an echo agent on the other node comes back; a handoff crosses nodes
    and the last agent answers the original requester; a large payload
    travels as its own frame; unknown nodes and misrouted messages become
    dead letters. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_cluster.h"
#include "cd_echo.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

static void
s_node_start(node_t *node, const char *id, int port, const char *peer_id, int peer_port,
             const char *relay_to)
{
    memset(node, 0, sizeof *node);
    node->rt = (cd_runtime_t){cd_registry_new(id), 1000, 1000, 100, 2000, 3000, 5, 10};

    snprintf(node->bind, sizeof node->bind, "tcp://127.0.0.1:%d", port);
    snprintf(node->peer_endpoint, sizeof node->peer_endpoint, "tcp://127.0.0.1:%d", peer_port);
    node->peer = (cd_config_peer_t){(char *)peer_id, node->peer_endpoint};
    node->cluster = (cd_cluster_args_t){node->bind, &node->peer, 1, 200, 2000};
    node->relay.handoff_to = (char *)relay_to;
    node->children[0] = (cd_child_spec_t){"cluster", &cd_cluster_ops, &node->cluster,
                                          CD_RESTART_PERMANENT};
    node->children[1] =
        (cd_child_spec_t){"agent/echo", &cd_echo_ops, &node->echo, CD_RESTART_PERMANENT};
    node->children[2] =
        (cd_child_spec_t){"agent/relay", &cd_echo_ops, &node->relay, CD_RESTART_PERMANENT};
    node->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, node->children, 3};
    char why[160] = "";
    node->root = cd_root_new(&node->rt, "root", &node->spec, why, sizeof why);
    if (!node->root) {
        fail_msg("node %s: %s", id, why);
    }
    node->port = cd_port_new(&node->rt, "test");
    assert_non_null(node->port);
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

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_task_to_an_agent_on_another_node_comes_back),
        cmocka_unit_test(test_cluster_handoff_crosses_nodes_and_answers_the_requester),
        cmocka_unit_test(test_cluster_large_payload_travels_as_its_own_frame),
        cmocka_unit_test(test_cluster_unknown_node_is_a_dead_letter),
        cmocka_unit_test(test_cluster_rejects_garbage_and_misrouted_messages_from_peers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
