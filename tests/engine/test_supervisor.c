/*  Supervisor tree, actor runtime and mailer: strategies, restart intensity
    and escalation, crash isolation (handler error, unexpected exit, hang),
    bounded queues, dead letters, commands, clean shutdown. Real actors,
    real threads, real ZeroMQ; every wait is bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

//  --- a test actor ----------------------------------------------------------------
//  Answers every task with a result; the headers `crash`, `exit` and
//  `block_ms` make it fail in the three ways a supervisor must catch.

static int
s_probe_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    if (args && streq((const char *)args, "fail-init")) {
        *why = "told to fail";
        return CD_EINVAL;
    }
    return 0;
}

static int
s_probe_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    cd_str_t value;
    if (cd_envelope_header(env, "crash", NULL)) {
        return CD_ECRASH;
    }
    if (cd_envelope_header(env, "exit", NULL)) {
        cd_actor_quit(self);
        return 0;
    }
    if (cd_envelope_header(env, "block_ms", &value)) {
        char text[16];
        snprintf(text, sizeof text, "%.*s", (int)value.len, value.ptr);
        usleep((useconds_t)atoi(text) * 1000u);
    }
    char to[128];
    snprintf(to, sizeof to, "%.*s", (int)env->from.len, env->from.ptr);
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_RESULT, to);
    out.task_id = env->task_id;
    out.payload_type = env->payload_type;
    out.payload = env->payload;
    return cd_actor_send(self, &out) == 0 ? 0 : 0;
}

//  Names of the probes whose fini ran, in order (for the shutdown order).
static pthread_mutex_t s_stops_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_stops[16][64];
static int s_n_stops;

static void
s_stops_reset(void)
{
    pthread_mutex_lock(&s_stops_lock);
    s_n_stops = 0;
    pthread_mutex_unlock(&s_stops_lock);
}

static void
s_probe_fini(cd_actor_t *self, void **state_p)
{
    pthread_mutex_lock(&s_stops_lock);
    if (s_n_stops < 16) {
        snprintf(s_stops[s_n_stops++], sizeof s_stops[0], "%s", cd_actor_name(self));
    }
    pthread_mutex_unlock(&s_stops_lock);
}

static const cd_actor_ops_t s_probe_ops = {
    .kind = "probe",
    .init = s_probe_init,
    .handle = s_probe_handle,
    .fini = s_probe_fini,
};

//  --- fixture ------------------------------------------------------------------------

typedef struct {
    cd_runtime_t rt;
    cd_port_t *port;
    cd_root_t *root;
} fixture_t;

static fixture_t *
s_fixture(int hb_ivl_ms, int hb_timeout_ms, int restart_max)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    //  A node id per fixture: a failed test cannot disturb the next one.
    static int generation = 0;
    char node_id[16];
    snprintf(node_id, sizeof node_id, "t%d", ++generation);
    fx->rt.registry = cd_registry_new(node_id);
    fx->rt.queue_hwm = 1000;
    fx->rt.send_timeout_ms = 1000;
    fx->rt.heartbeat_ivl_ms = hb_ivl_ms;
    fx->rt.heartbeat_timeout_ms = hb_timeout_ms;
    fx->rt.stop_timeout_ms = 3000;
    fx->rt.restart_max = restart_max;
    fx->rt.restart_window_s = 10;
    fx->port = cd_port_new(&fx->rt, "test");
    assert_non_null(fx->port);
    return fx;
}

static void
s_fixture_destroy(fixture_t **fx_p)
{
    fixture_t *fx = *fx_p;
    if (fx->root) {
        assert_int_equal(cd_root_destroy(&fx->root), 0);
    }
    cd_port_destroy(&fx->port);
    assert_int_equal(cd_registry_hung(fx->rt.registry), 0);
    cd_registry_destroy(&fx->rt.registry);
    free(fx);
    *fx_p = NULL;
}

static void
s_start(fixture_t *fx, const cd_supervisor_spec_t *spec)
{
    char why[160] = "";
    fx->root = cd_root_new(&fx->rt, "root", spec, why, sizeof why);
    if (!fx->root) {
        fail_msg("root failed: %s", why);
    }
}

//  Sends a task to `to` with one optional header; returns the send result.
static int
s_send(fixture_t *fx, const char *to, const char *header, const char *value, int64_t task_id)
{
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, to);
    env.task_id = task_id;
    if (header) {
        env.headers[0] = (cd_env_header_t){cd_str(header), cd_str(value ? value : "1")};
        env.n_headers = 1;
    }
    return cd_port_send(fx->port, &env);
}

//  Sends a task and expects its answer within timeout_ms.
static void
s_expect_echo(fixture_t *fx, const char *to, int64_t task_id, int timeout_ms)
{
    assert_int_equal(s_send(fx, to, NULL, NULL, task_id), 0);
    cd_envelope_t env;
    int64_t deadline = zclock_mono() + timeout_ms;
    while (zclock_mono() < deadline) {
        if (cd_port_recv(fx->port, 100, &env) == 0 && env.task_id == task_id) {
            assert_int_equal(env.kind, CD_KIND_RESULT);
            return;
        }
    }
    fail_msg("no answer from %s for task %lld", to, (long long)task_id);
}

static uint32_t
s_restarts(fixture_t *fx, const char *name)
{
    cd_registry_entry_t entry;
    assert_int_equal(cd_registry_get(fx->rt.registry, name, &entry), 0);
    return entry.restarts;
}

//  Waits until name's restart count reaches n (bounded).
static void
s_wait_restarts(fixture_t *fx, const char *name, uint32_t n, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    while (zclock_mono() < deadline) {
        cd_registry_entry_t entry;
        if (cd_registry_get(fx->rt.registry, name, &entry) == 0 && entry.restarts >= n &&
            entry.status == CD_ACTOR_RUNNING) {
            return;
        }
        zclock_sleep(10);
    }
    fail_msg("%s did not reach %u restarts", name, n);
}

static const cd_child_spec_t s_abc[] = {
    {"a", &s_probe_ops, NULL, CD_RESTART_PERMANENT},
    {"b", &s_probe_ops, NULL, CD_RESTART_PERMANENT},
    {"c", &s_probe_ops, NULL, CD_RESTART_PERMANENT},
};

static void
s_strategy_case(cd_strategy_t strategy, uint32_t ra, uint32_t rb, uint32_t rc)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_supervisor_spec_t spec = {strategy, -1, 0, s_abc, 3};
    s_start(fx, &spec);
    s_expect_echo(fx, "b", 1, 2000);
    assert_int_equal(s_send(fx, "b", "crash", NULL, 2), 0);
    s_wait_restarts(fx, "b", 1, 3000);
    zclock_sleep(100); //  let any sibling restarts finish
    assert_int_equal(s_restarts(fx, "a"), ra);
    assert_int_equal(s_restarts(fx, "b"), rb);
    assert_int_equal(s_restarts(fx, "c"), rc);
    s_expect_echo(fx, "a", 3, 2000);
    s_expect_echo(fx, "b", 4, 2000);
    s_expect_echo(fx, "c", 5, 2000);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_one_for_one_restarts_only_the_failed_child(void **state)
{
    s_strategy_case(CD_ONE_FOR_ONE, 0, 1, 0);
}

static void
test_supervisor_one_for_all_restarts_every_child(void **state)
{
    s_strategy_case(CD_ONE_FOR_ALL, 1, 1, 1);
}

static void
test_supervisor_rest_for_one_restarts_the_failed_and_later_children(void **state)
{
    s_strategy_case(CD_REST_FOR_ONE, 0, 1, 1);
}

static void
test_supervisor_handler_error_is_isolated(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, s_abc, 3};
    s_start(fx, &spec);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(s_send(fx, "a", "crash", NULL, i), 0);
        s_wait_restarts(fx, "a", (uint32_t)i, 3000);
        s_expect_echo(fx, "b", 100 + i, 2000); //  siblings are untouched
    }
    s_expect_echo(fx, "a", 200, 2000);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_unexpected_exit_is_restarted(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, s_abc, 3};
    s_start(fx, &spec);
    assert_int_equal(s_send(fx, "c", "exit", NULL, 1), 0);
    s_wait_restarts(fx, "c", 1, 3000);
    s_expect_echo(fx, "c", 2, 2000);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_hang_is_detected_by_heartbeat_and_replaced(void **state)
{
    fixture_t *fx = s_fixture(50, 300, 5);
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, s_abc, 3};
    s_start(fx, &spec);
    //  The handler blocks 1.5 s; heartbeats stop being answered.
    assert_int_equal(s_send(fx, "b", "block_ms", "1500", 1), 0);
    s_wait_restarts(fx, "b", 1, 3000);
    assert_int_equal(cd_registry_hung(fx->rt.registry), 1);
    //  The replacement serves b's inbox while the old thread still sleeps.
    s_expect_echo(fx, "b", 2, 1000);
    //  When the old thread wakes it sees it was replaced and ends quietly.
    int64_t deadline = zclock_mono() + 3000;
    while (cd_registry_hung(fx->rt.registry) != 0 && zclock_mono() < deadline) {
        zclock_sleep(20);
    }
    assert_int_equal(cd_registry_hung(fx->rt.registry), 0);
    s_expect_echo(fx, "b", 3, 1000);
    assert_int_equal(s_restarts(fx, "b"), 1);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_messages_queued_for_a_crashed_actor_survive_its_restart(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, s_abc, 3};
    s_start(fx, &spec);
    //  Queue a crash and then 100 tasks behind it: all 100 are answered by
    //  the restarted instance, none lost.
    assert_int_equal(s_send(fx, "a", "block_ms", "100", 1), 0);
    assert_int_equal(s_send(fx, "a", "crash", NULL, 2), 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(s_send(fx, "a", NULL, NULL, 1000 + i), 0);
    }
    bool seen[100] = {false};
    int got = 0;
    int64_t deadline = zclock_mono() + 5000;
    while (got < 100 && zclock_mono() < deadline) {
        cd_envelope_t env;
        if (cd_port_recv(fx->port, 100, &env) == 0 && env.task_id >= 1000 && env.task_id < 1100 &&
            !seen[env.task_id - 1000]) {
            seen[env.task_id - 1000] = true;
            got++;
        }
    }
    assert_int_equal(got, 100);
    assert_int_equal(s_restarts(fx, "a"), 1);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_intensity_escalates_to_the_parent(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    static const cd_child_spec_t worker[] = {{"w", &s_probe_ops, NULL, CD_RESTART_PERMANENT}};
    cd_supervisor_spec_t sub_spec = {CD_ONE_FOR_ONE, 2, 10, worker, 1};
    cd_child_spec_t top[] = {{"sub", &cd_supervisor_ops, &sub_spec, CD_RESTART_PERMANENT},
                             {"a", &s_probe_ops, NULL, CD_RESTART_PERMANENT}};
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, 5, 10, top, 2};
    s_start(fx, &spec);
    //  Two restarts are within sub's intensity...
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(s_send(fx, "w", "crash", NULL, i), 0);
        s_wait_restarts(fx, "w", (uint32_t)i, 3000);
    }
    assert_int_equal(s_restarts(fx, "sub"), 0);
    //  ...the third makes sub give up; root restarts sub (and so w afresh).
    assert_int_equal(s_send(fx, "w", "crash", NULL, 3), 0);
    s_wait_restarts(fx, "sub", 1, 3000);
    s_expect_echo(fx, "w", 4, 3000);
    assert_int_equal(s_restarts(fx, "a"), 0);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_root_gives_up_and_reports(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 1);
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, 1, 10, s_abc, 3};
    s_start(fx, &spec);
    assert_int_equal(s_send(fx, "a", "crash", NULL, 1), 0);
    s_wait_restarts(fx, "a", 1, 3000);
    assert_int_equal(s_send(fx, "a", "crash", NULL, 2), 0);
    //  The root's parent (this thread) hears $CRASH, then the thread's end.
    zactor_t *root = cd_root_actor(fx->root);
    zmq_pollitem_t item = {zsock_resolve(root), 0, ZMQ_POLLIN, 0};
    assert_true(zmq_poll(&item, 1, 3000) == 1);
    char *command = zstr_recv(root);
    assert_string_equal(command, "$CRASH");
    zstr_free(&command);
    //  Every child is dead and its queue went to the dead letters.
    assert_int_equal(cd_registry_status(fx->rt.registry, "b"), CD_ACTOR_DEAD);
    assert_int_equal(s_send(fx, "b", NULL, NULL, 3), CD_EDEAD);
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_child_init_failure_fails_the_start(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    static const cd_child_spec_t bad[] = {
        {"ok", &s_probe_ops, NULL, CD_RESTART_PERMANENT},
        {"bad", &s_probe_ops, "fail-init", CD_RESTART_PERMANENT},
    };
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, bad, 2};
    char why[160] = "";
    fx->root = cd_root_new(&fx->rt, "root", &spec, why, sizeof why);
    assert_null(fx->root);
    assert_true(strlen(why) > 0);
    //  Nothing it started is left registered.
    assert_int_equal(cd_registry_status(fx->rt.registry, "ok"), CD_ACTOR_ABSENT);
    assert_int_equal(cd_registry_status(fx->rt.registry, "bad"), CD_ACTOR_ABSENT);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_commands_start_stop_restart(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    static const cd_child_spec_t none[] = {{"a", &s_probe_ops, NULL, CD_RESTART_PERMANENT}};
    cd_supervisor_spec_t sub_spec = {CD_ONE_FOR_ONE, -1, 0, NULL, 0};
    cd_child_spec_t top[] = {{"a", &s_probe_ops, NULL, CD_RESTART_PERMANENT},
                             {"agents", &cd_supervisor_ops, &sub_spec, CD_RESTART_PERMANENT}};
    (void)none;
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, top, 2};
    s_start(fx, &spec);
    char why[160];
    cd_child_spec_t x = {"agent/x", &s_probe_ops, NULL, CD_RESTART_PERMANENT};
    assert_int_equal(cd_root_call(fx->root, "START", "agents", NULL, &x, 3000, why, sizeof why), 0);
    s_expect_echo(fx, "agent/x", 1, 2000);
    //  A duplicate name is refused and changes nothing.
    assert_int_equal(cd_root_call(fx->root, "START", "agents", NULL, &x, 3000, why, sizeof why),
                     CD_ESTATE);
    assert_non_null(strstr(why, "already"));
    assert_int_equal(
        cd_root_call(fx->root, "RESTART", "agents", "agent/x", NULL, 3000, why, sizeof why), 0);
    assert_int_equal(s_restarts(fx, "agent/x"), 1);
    s_expect_echo(fx, "agent/x", 2, 2000);
    assert_int_equal(
        cd_root_call(fx->root, "STOP", "agents", "agent/x", NULL, 3000, why, sizeof why), 0);
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/x"), CD_ACTOR_ABSENT);
    assert_int_equal(s_send(fx, "agent/x", NULL, NULL, 3), CD_ENOTFOUND);
    assert_int_equal(
        cd_root_call(fx->root, "STOP", "agents", "nobody", NULL, 3000, why, sizeof why), CD_ESTATE);
    assert_int_equal(cd_root_call(fx->root, "STOP", "nowhere", "a", NULL, 3000, why, sizeof why),
                     CD_ESTATE);
    s_fixture_destroy(&fx);
}

//  --- queues and dead letters -------------------------------------------------------

static void
test_supervisor_full_queue_blocks_then_errors_without_loss(void **state)
{
    fixture_t *fx = s_fixture(100, 60000, 5);
    fx->rt.queue_hwm = 10;
    fx->rt.send_timeout_ms = 200;
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, s_abc, 1};
    s_start(fx, &spec);
    //  a is busy for 1.5 s: its queue fills, then a send waits 200 ms and
    //  fails with CD_EBUSY; nothing accepted is lost.
    assert_int_equal(s_send(fx, "a", "block_ms", "1500", 0), 0);
    zclock_sleep(50);
    int accepted = 0;
    int rc = 0;
    int64_t started = zclock_mono();
    while ((rc = s_send(fx, "a", NULL, NULL, 1 + accepted)) == 0 && accepted < 10000) {
        accepted++;
    }
    int64_t waited = zclock_mono() - started;
    assert_int_equal(rc, CD_EBUSY);
    assert_true(accepted >= 10 && accepted < 10000);
    assert_true(waited >= 150);
    int got = 0;
    int64_t deadline = zclock_mono() + 5000;
    while (got < accepted + 1 && zclock_mono() < deadline) {
        cd_envelope_t env;
        if (cd_port_recv(fx->port, 100, &env) == 0) {
            got++;
        }
    }
    assert_int_equal(got, accepted + 1); //  +1: the blocking task itself
    s_fixture_destroy(&fx);
}

static void
test_supervisor_undeliverable_messages_become_dead_letters(void **state)
{
    extern const cd_actor_ops_t cd_deadletter_ops;
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_child_spec_t top[] = {{"deadletter", &cd_deadletter_ops, NULL, CD_RESTART_PERMANENT},
                             {"a", &s_probe_ops, NULL, CD_RESTART_PERMANENT}};
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, top, 2};
    s_start(fx, &spec);
    assert_int_equal(s_send(fx, "nobody", NULL, NULL, 1), CD_ENOTFOUND);
    char local[64];
    snprintf(local, sizeof local, "node/%s/nobody", cd_registry_node_id(fx->rt.registry));
    assert_int_equal(s_send(fx, local, NULL, NULL, 2), CD_ENOTFOUND);
    assert_int_equal(cd_registry_dead_letters(fx->rt.registry), 2);
    //  A remote node with no cluster link is undeliverable too.
    assert_int_equal(s_send(fx, "node/elsewhere/agent/x", NULL, NULL, 3), CD_ENOTFOUND);
    char why[160];
    assert_int_equal(cd_root_call(fx->root, "STOP", "", "a", NULL, 3000, why, sizeof why), 0);
    assert_int_equal(s_send(fx, "a", NULL, NULL, 4), CD_ENOTFOUND);
    //  The dead-letter actor counted them by reason.
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_CONTROL, "deadletter");
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("stats")};
    env.n_headers = 1;
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    assert_int_equal(cd_port_recv(fx->port, 2000, &env), 0);
    cd_bin_t total;
    assert_int_equal(cd_msgpack_map_find(env.payload, "total", &total), 0);
    int64_t n = 0;
    assert_int_equal(cd_msgpack_read_int(total, &n), 0);
    assert_int_equal(n, 4);
    cd_bin_t reasons, unknown;
    assert_int_equal(cd_msgpack_map_find(env.payload, "reasons", &reasons), 0);
    assert_int_equal(cd_msgpack_map_find(reasons, "unknown_actor", &unknown), 0);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_malformed_message_is_rejected_not_fatal(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, s_abc, 1};
    s_start(fx, &spec);
    zmq_msg_t frames[1];
    zmq_msg_init_size(&frames[0], 5);
    memcpy(zmq_msg_data(&frames[0]), "\xdb\xff\xff\xff\xff", 5); //  str32 of 4 GiB
    assert_int_equal(cd_mailer_forward_frames(cd_port_mailer(fx->port), "a", frames, 1), 0);
    zmq_msg_close(&frames[0]);
    s_expect_echo(fx, "a", 1, 2000);
    assert_int_equal(s_restarts(fx, "a"), 0);
    assert_int_equal(cd_registry_dead_letters(fx->rt.registry), 1);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_failed_forward_leaves_the_frames_with_the_caller(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_envbuf_t *buf = cd_envbuf_new();
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, "nobody");
    assert_int_equal(cd_envelope_encode(&env, buf), 0);
    zmq_msg_t frames[1];
    zmq_msg_init_size(&frames[0], cd_envbuf_size(buf));
    memcpy(zmq_msg_data(&frames[0]), cd_envbuf_data(buf), cd_envbuf_size(buf));
    assert_int_equal(cd_mailer_forward_frames(cd_port_mailer(fx->port), "nobody", frames, 1),
                     CD_ENOTFOUND);
    //  Still ours, intact: it can be sent elsewhere.
    assert_int_equal(zmq_msg_size(&frames[0]), cd_envbuf_size(buf));
    assert_memory_equal(zmq_msg_data(&frames[0]), cd_envbuf_data(buf), cd_envbuf_size(buf));
    assert_int_equal(cd_mailer_forward_frames(cd_port_mailer(fx->port), "test", frames, 1), 0);
    assert_int_equal(zmq_msg_size(&frames[0]), 0); //  sent: emptied
    zmq_msg_close(&frames[0]);
    assert_int_equal(cd_port_recv(fx->port, 1000, &env), 0);
    assert_true(cd_str_eq(env.to, "nobody"));
    cd_envbuf_destroy(&buf);
    s_fixture_destroy(&fx);
}

static void
test_supervisor_destroy_twice_is_safe(void **state)
{
    cd_runtime_t rt = {cd_registry_new("twice"), 10, 10, 100, 1000, 1000, 1, 1};
    cd_port_t *port = cd_port_new(&rt, "p");
    assert_non_null(port);
    //  A name can be bound once at a time.
    assert_null(cd_port_new(&rt, "p"));
    cd_port_destroy(&port);
    cd_port_destroy(&port);
    assert_null(port);
    cd_mailer_t *mailer = cd_mailer_new(&rt, "m");
    cd_mailer_destroy(&mailer);
    cd_mailer_destroy(&mailer);
    assert_null(mailer);
    cd_registry_destroy(&rt.registry);
    cd_registry_destroy(&rt.registry);
    assert_null(rt.registry);
}

static void
test_supervisor_shutdown_is_clean_and_bounded(void **state)
{
    fixture_t *fx = s_fixture(100, 2000, 5);
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ALL, -1, 0, s_abc, 3};
    s_start(fx, &spec);
    s_expect_echo(fx, "c", 1, 2000);
    int64_t started = zclock_mono();
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    assert_true(zclock_mono() - started < 2000);
    cd_registry_entry_t entries[8];
    //  Only the test's own port is left.
    assert_int_equal(cd_registry_list(fx->rt.registry, entries, 8), 1);
    cd_root_destroy(&fx->root); //  twice is safe
    s_fixture_destroy(&fx);
}

//  --- control by message: the child factory ---------------------------------------
//  Builds probes from {"kind": "probe", "config": {"mode": str}}; the mode
//  becomes the probe's args ("fail-init" makes its init fail). Counts what
//  it built and released (the supervisor's thread calls it; tests read).

typedef struct {
    atomic_int built;    //  specs built
    atomic_int released; //  args released
    bool rename;         //  misbehave: give the child another name
} s_factory_t;

static int
s_factory_build(void *factory_arg, const cd_envelope_t *request, cd_child_spec_t *out, char *why,
                size_t why_size)
{
    s_factory_t *factory = (s_factory_t *)factory_arg;
    cd_bin_t value;
    cd_str_t kind = {NULL, 0};
    if (cd_msgpack_map_find(request->payload, "kind", &value) != 0 ||
        cd_msgpack_read_str(value, &kind) != 0) {
        snprintf(why, why_size, "a string kind is required");
        return CD_EINVAL;
    }
    if (!cd_str_eq(kind, "probe")) {
        snprintf(why, why_size, "unknown kind '%.*s'", (int)kind.len, kind.ptr);
        return CD_EINVAL;
    }
    char *mode = NULL;
    cd_bin_t config;
    if (cd_msgpack_map_find(request->payload, "config", &config) == 0) {
        cd_bin_t found;
        cd_str_t text;
        int rc = cd_msgpack_map_find(config, "mode", &found);
        if (rc == CD_EPROTO) {
            snprintf(why, why_size, "config must be a map");
            return CD_EINVAL;
        }
        if (rc == 0 && cd_msgpack_read_str(found, &text) == 0) {
            mode = strndup(text.ptr, text.len);
        }
    }
    out->ops = &s_probe_ops;
    out->args = mode ? mode : strdup("");
    if (factory->rename) {
        out->name = "agent/elsewhere";
    }
    atomic_fetch_add(&factory->built, 1);
    return 0;
}

static void
s_factory_release(void *factory_arg, void *child_args)
{
    s_factory_t *factory = (s_factory_t *)factory_arg;
    free(child_args);
    atomic_fetch_add(&factory->released, 1);
}

static const cd_child_factory_t s_factory_ops = {s_factory_build, s_factory_release};

//  A fixture whose root runs `agents`, a supervisor with the test factory
//  and the prefix "agent/" (plus the static children given).
typedef struct {
    fixture_t *fx;               //  runtime, port, root
    s_factory_t factory;         //  counts
    cd_supervisor_spec_t agents; //  the agents supervisor's spec
    cd_child_spec_t top[1];      //  the root's child: agents
} s_agents_t;

static s_agents_t *
s_agents_start(cd_strategy_t strategy, int max_restarts, const cd_child_spec_t *children,
               size_t n_children)
{
    s_agents_t *a = calloc(1, sizeof *a);
    a->fx = s_fixture(100, 2000, 5);
    atomic_init(&a->factory.built, 0);
    atomic_init(&a->factory.released, 0);
    a->agents = (cd_supervisor_spec_t){strategy,   max_restarts,   10,          children,
                                       n_children, &s_factory_ops, &a->factory, "agent/"};
    a->top[0] = (cd_child_spec_t){"agents", &cd_supervisor_ops, &a->agents, CD_RESTART_PERMANENT};
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, 5, 10, a->top, 1};
    s_start(a->fx, &spec);
    return a;
}

static void
s_agents_destroy(s_agents_t **a_p)
{
    s_agents_t *a = *a_p;
    s_fixture_destroy(&a->fx);
    //  Whatever the factory built is released once the tree is gone.
    assert_int_equal(atomic_load(&a->factory.released), atomic_load(&a->factory.built));
    free(a);
    *a_p = NULL;
}

//  What a control request got back.
typedef struct {
    cd_kind_t kind;    //  result or error
    char name[128];    //  result: the child's registry name
    char status[32];   //  result: its status
    char code[32];     //  error: its code
    char message[256]; //  error: its text
} s_answer_t;

static void
s_copy_field(cd_bin_t map, const char *key, char *out, size_t size)
{
    cd_bin_t value;
    cd_str_t text = {NULL, 0};
    out[0] = '\0';
    if (cd_msgpack_map_find(map, key, &value) == 0 && cd_msgpack_read_str(value, &text) == 0) {
        snprintf(out, size, "%.*s", (int)text.len, text.ptr);
    }
}

//  Sends a control request with payload to `to` (reply_to: where the
//  answer should go, or NULL) and waits for its answer on port, checking it
//  answers this request.
static s_answer_t
s_control_raw(fixture_t *fx, cd_port_t *port, const char *to, const char *op, cd_bin_t payload,
              cd_payload_type_t type, const char *reply_to)
{
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_CONTROL, to);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    if (reply_to) {
        env.headers[1] = (cd_env_header_t){cd_str("reply_to"), cd_str(reply_to)};
        env.n_headers = 2;
    }
    env.task_id = 4242;
    memset(env.trace_id, 0x5a, sizeof env.trace_id);
    env.payload_type = type;
    env.payload = payload;
    uint8_t id[CD_ENV_UUID_SIZE];
    memcpy(id, env.id, sizeof id);
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    int64_t deadline = zclock_mono() + 8000;
    while (zclock_mono() < deadline) {
        cd_envelope_t in;
        if (cd_port_recv(port, 100, &in) != 0 || memcmp(in.parent_id, id, sizeof id) != 0) {
            continue;
        }
        s_answer_t answer = {in.kind, "", "", "", ""};
        assert_true(in.kind == CD_KIND_RESULT || in.kind == CD_KIND_ERROR);
        assert_true(cd_str_eq(in.from, to));
        assert_int_equal(in.task_id, 4242);
        uint8_t trace[CD_ENV_UUID_SIZE];
        memset(trace, 0x5a, sizeof trace);
        assert_memory_equal(in.trace_id, trace, sizeof trace);
        assert_int_equal(in.payload_type, CD_PAYLOAD_MAP);
        if (in.kind == CD_KIND_RESULT) {
            cd_bin_t ok;
            bool yes = false;
            assert_int_equal(cd_msgpack_map_find(in.payload, "ok", &ok), 0);
            assert_int_equal(cd_msgpack_read_bool(ok, &yes), 0);
            assert_true(yes);
            s_copy_field(in.payload, "name", answer.name, sizeof answer.name);
            s_copy_field(in.payload, "status", answer.status, sizeof answer.status);
        } else {
            s_copy_field(in.payload, "code", answer.code, sizeof answer.code);
            s_copy_field(in.payload, "message", answer.message, sizeof answer.message);
            assert_true(strlen(answer.message) > 0);
        }
        return answer;
    }
    fail_msg("no answer from %s to %s", to, op);
    return (s_answer_t){CD_KIND_NONE, "", "", "", ""};
}

//  op for name at `agents`, with kind and config.mode when given.
static s_answer_t
s_control(s_agents_t *a, const char *op, const char *name, const char *kind, const char *mode)
{
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 1 + (kind != NULL) + (mode != NULL));
    cd_pack_cstr(pack, "name");
    cd_pack_cstr(pack, name);
    if (kind) {
        cd_pack_cstr(pack, "kind");
        cd_pack_cstr(pack, kind);
    }
    if (mode) {
        cd_pack_cstr(pack, "config");
        cd_pack_map(pack, 1);
        cd_pack_cstr(pack, "mode");
        cd_pack_cstr(pack, mode);
    }
    s_answer_t answer =
        s_control_raw(a->fx, a->fx->port, "agents", op, cd_pack_bytes(pack), CD_PAYLOAD_MAP, NULL);
    cd_pack_destroy(&pack);
    return answer;
}

static void
s_expect_result(s_answer_t answer, const char *name, const char *status)
{
    if (answer.kind != CD_KIND_RESULT) {
        fail_msg("expected a result, got error %s: %s", answer.code, answer.message);
    }
    assert_string_equal(answer.name, name);
    assert_string_equal(answer.status, status);
}

static void
s_expect_error(s_answer_t answer, const char *code, const char *in_message)
{
    if (answer.kind != CD_KIND_ERROR) {
        fail_msg("expected error %s, got a result (%s)", code, answer.status);
    }
    assert_string_equal(answer.code, code);
    if (in_message && !strstr(answer.message, in_message)) {
        fail_msg("message \"%s\" does not say \"%s\"", answer.message, in_message);
    }
}

static void
test_supervisor_control_start_stop_restart_remove(void **state)
{
    s_agents_t *a = s_agents_start(CD_ONE_FOR_ONE, -1, NULL, 0);
    fixture_t *fx = a->fx;
    s_expect_result(s_control(a, "start", "x", "probe", NULL), "agent/x", "running");
    assert_int_equal(atomic_load(&a->factory.built), 1);
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/x"), CD_ACTOR_RUNNING);
    s_expect_echo(fx, "agent/x", 1, 2000);
    //  Running already, by either form of its name.
    s_expect_error(s_control(a, "start", "agent/x", "probe", NULL), "exists", "agent/x");
    assert_int_equal(atomic_load(&a->factory.built), 1);
    //  Stopped but known: messages are refused, a second stop is harmless.
    s_expect_result(s_control(a, "stop", "x", NULL, NULL), "agent/x", "stopped");
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/x"), CD_ACTOR_STOPPED);
    assert_int_equal(s_send(fx, "agent/x", NULL, NULL, 2), CD_EDEAD);
    s_expect_result(s_control(a, "stop", "agent/x", NULL, NULL), "agent/x", "stopped");
    //  Started again without the factory.
    s_expect_result(s_control(a, "start", "x", NULL, NULL), "agent/x", "running");
    assert_int_equal(atomic_load(&a->factory.built), 1);
    s_expect_echo(fx, "agent/x", 3, 2000);
    s_expect_result(s_control(a, "restart", "x", NULL, NULL), "agent/x", "running");
    assert_int_equal(s_restarts(fx, "agent/x"), 1);
    s_expect_echo(fx, "agent/x", 4, 2000);
    //  A stopped child can be restarted too.
    s_expect_result(s_control(a, "stop", "x", NULL, NULL), "agent/x", "stopped");
    s_expect_result(s_control(a, "restart", "x", NULL, NULL), "agent/x", "running");
    s_expect_echo(fx, "agent/x", 5, 2000);
    //  Removed: gone from the registry, its args released.
    s_expect_result(s_control(a, "remove", "x", NULL, NULL), "agent/x", "removed");
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/x"), CD_ACTOR_ABSENT);
    assert_int_equal(atomic_load(&a->factory.released), 1);
    assert_int_equal(s_send(fx, "agent/x", NULL, NULL, 6), CD_ENOTFOUND);
    s_expect_error(s_control(a, "remove", "x", NULL, NULL), "not_found", "agent/x");
    //  The name is free again: a new start builds anew.
    s_expect_result(s_control(a, "start", "x", "probe", NULL), "agent/x", "running");
    assert_int_equal(atomic_load(&a->factory.built), 2);
    s_expect_echo(fx, "agent/x", 7, 2000);
    //  The pipe's STOP (which forgets the child) releases it too.
    char why[160];
    assert_int_equal(
        cd_root_call(fx->root, "STOP", "agents", "agent/x", NULL, 3000, why, sizeof why), 0);
    assert_int_equal(atomic_load(&a->factory.released), 2);
    s_agents_destroy(&a);
}

static void
test_supervisor_control_answers_reply_to_with_the_request_ids(void **state)
{
    s_agents_t *a = s_agents_start(CD_ONE_FOR_ONE, -1, NULL, 0);
    cd_port_t *other = cd_port_new(&a->fx->rt, "other");
    assert_non_null(other);
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "name");
    cd_pack_cstr(pack, "r");
    cd_pack_cstr(pack, "kind");
    cd_pack_cstr(pack, "probe");
    //  The answer goes to reply_to, not to the sender (s_control_raw checks
    //  parent_id, task_id and trace_id).
    s_answer_t answer = s_control_raw(a->fx, other, "agents", "start", cd_pack_bytes(pack),
                                      CD_PAYLOAD_MAP, "other");
    s_expect_result(answer, "agent/r", "running");
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(a->fx->port, 200, &env), CD_ETIMEDOUT);
    cd_pack_destroy(&pack);
    cd_port_destroy(&other);
    s_agents_destroy(&a);
}

static void
test_supervisor_control_errors_change_nothing(void **state)
{
    s_agents_t *a = s_agents_start(CD_ONE_FOR_ONE, -1, NULL, 0);
    fixture_t *fx = a->fx;
    s_expect_result(s_control(a, "start", "keep", "probe", NULL), "agent/keep", "running");
    cd_registry_entry_t before[16];
    size_t n_before = cd_registry_list(fx->rt.registry, before, 16);
    //  Unknown children.
    s_expect_error(s_control(a, "stop", "nobody", NULL, NULL), "not_found", "agent/nobody");
    s_expect_error(s_control(a, "restart", "nobody", NULL, NULL), "not_found", NULL);
    s_expect_error(s_control(a, "remove", "nobody", NULL, NULL), "not_found", NULL);
    //  The factory refuses: its message comes back, nothing is built.
    s_expect_error(s_control(a, "start", "y", "wizard", NULL), "invalid", "unknown kind 'wizard'");
    s_expect_error(s_control(a, "start", "y", NULL, NULL), "invalid", "kind is required");
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 3);
    cd_pack_cstr(pack, "name");
    cd_pack_cstr(pack, "y");
    cd_pack_cstr(pack, "kind");
    cd_pack_cstr(pack, "probe");
    cd_pack_cstr(pack, "config");
    cd_pack_int(pack, 7);
    s_expect_error(
        s_control_raw(fx, fx->port, "agents", "start", cd_pack_bytes(pack), CD_PAYLOAD_MAP, NULL),
        "invalid", "config must be a map");
    assert_int_equal(atomic_load(&a->factory.built), 1);
    //  The child's init fails: failed, its args released, its name free.
    s_expect_error(s_control(a, "start", "y", "probe", "fail-init"), "failed", "told to fail");
    assert_int_equal(atomic_load(&a->factory.built), 2);
    assert_int_equal(atomic_load(&a->factory.released), 1);
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/y"), CD_ACTOR_ABSENT);
    //  A factory that renames the child is caught.
    a->factory.rename = true;
    s_expect_error(s_control(a, "start", "y", "probe", NULL), "failed", "renamed");
    a->factory.rename = false;
    assert_int_equal(atomic_load(&a->factory.released), 2);
    //  Malformed requests.
    cd_pack_reset(pack);
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "kind");
    cd_pack_cstr(pack, "probe");
    s_expect_error(
        s_control_raw(fx, fx->port, "agents", "start", cd_pack_bytes(pack), CD_PAYLOAD_MAP, NULL),
        "invalid", "name");
    cd_pack_reset(pack);
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "name");
    cd_pack_int(pack, 12);
    s_expect_error(
        s_control_raw(fx, fx->port, "agents", "stop", cd_pack_bytes(pack), CD_PAYLOAD_MAP, NULL),
        "invalid", "name");
    s_expect_error(s_control_raw(fx, fx->port, "agents", "stop",
                                 (cd_bin_t){(const uint8_t *)"x", 1}, CD_PAYLOAD_BIN, NULL),
                   "invalid", "name");
    s_expect_error(s_control(a, "start", "bad\nname", "probe", NULL), "invalid", "control");
    s_expect_error(s_control(a, "start", "", "probe", NULL), "invalid", "empty");
    s_expect_error(s_control(a, "start", "agent/", "probe", NULL), "invalid", "empty");
    char long_name[CD_REGISTRY_MAX_NAME + 1];
    memset(long_name, 'n', CD_REGISTRY_MAX_NAME);
    long_name[CD_REGISTRY_MAX_NAME] = '\0';
    s_expect_error(s_control(a, "start", long_name, "probe", NULL), "invalid", "longer");
    s_expect_error(s_control(a, "explode", "keep", NULL, NULL), "invalid", "unknown op");
    //  A name another actor holds.
    cd_port_t *taken = cd_port_new(&fx->rt, "agent/taken");
    assert_non_null(taken);
    s_expect_error(s_control(a, "start", "taken", "probe", NULL), "exists", "agent/taken");
    cd_port_destroy(&taken);
    //  A supervisor without a factory starts nothing new on request.
    cd_pack_reset(pack);
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "name");
    cd_pack_cstr(pack, "z");
    cd_pack_cstr(pack, "kind");
    cd_pack_cstr(pack, "probe");
    s_expect_error(
        s_control_raw(fx, fx->port, "root", "start", cd_pack_bytes(pack), CD_PAYLOAD_MAP, NULL),
        "invalid", "does not start children");
    cd_pack_destroy(&pack);
    assert_int_equal(atomic_load(&a->factory.built), 3);
    //  Nothing changed: the same actors in the same states, keep still works.
    cd_registry_entry_t after[16];
    assert_int_equal(cd_registry_list(fx->rt.registry, after, 16), n_before);
    for (size_t i = 0; i < n_before; i++) {
        assert_string_equal(after[i].name, before[i].name);
        assert_int_equal(after[i].status, before[i].status);
        assert_int_equal(after[i].restarts, before[i].restarts);
    }
    s_expect_echo(fx, "agent/keep", 1, 2000);
    //  Other kinds of envelope are not control requests: no answer.
    assert_int_equal(s_send(fx, "agents", NULL, NULL, 99), 0);
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(fx->port, 300, &env), CD_ETIMEDOUT);
    s_agents_destroy(&a);
}

static void
test_supervisor_control_started_child_is_supervised(void **state)
{
    //  agents allows 2 restarts in 10 s.
    s_agents_t *a = s_agents_start(CD_ONE_FOR_ONE, 2, NULL, 0);
    fixture_t *fx = a->fx;
    s_expect_result(s_control(a, "start", "x", "probe", NULL), "agent/x", "running");
    s_expect_result(s_control(a, "start", "y", "probe", NULL), "agent/y", "running");
    for (uint32_t i = 1; i <= 2; i++) {
        assert_int_equal(s_send(fx, "agent/x", "crash", NULL, i), 0);
        s_wait_restarts(fx, "agent/x", i, 3000);
        s_expect_echo(fx, "agent/x", 10 + i, 2000);
    }
    assert_int_equal(s_restarts(fx, "agent/y"), 0); //  one_for_one
    //  Its crash is in its own log.
    char *log = NULL;
    assert_int_equal(cd_registry_log_read(fx->rt.registry, "agent/x", 0, &log), 0);
    assert_non_null(strstr(log, "actor crashed"));
    free(log);
    //  The third crash exceeds the intensity: agents gives up (its children
    //  die and are released) and the root restarts it.
    assert_int_equal(s_send(fx, "agent/x", "crash", NULL, 3), 0);
    s_wait_restarts(fx, "agents", 1, 3000);
    int64_t deadline = zclock_mono() + 3000;
    while (atomic_load(&a->factory.released) < 2 && zclock_mono() < deadline) {
        zclock_sleep(10);
    }
    assert_int_equal(atomic_load(&a->factory.released), 2);
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/x"), CD_ACTOR_DEAD);
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/y"), CD_ACTOR_DEAD);
    //  The restarted agents serves requests, and the names can be used again.
    s_expect_result(s_control(a, "start", "x", "probe", NULL), "agent/x", "running");
    s_expect_echo(fx, "agent/x", 20, 2000);
    s_agents_destroy(&a);
}

static void
test_supervisor_control_stopped_child_stays_stopped_when_a_sibling_fails(void **state)
{
    s_agents_t *a = s_agents_start(CD_ONE_FOR_ALL, -1, NULL, 0);
    fixture_t *fx = a->fx;
    s_expect_result(s_control(a, "start", "x", "probe", NULL), "agent/x", "running");
    s_expect_result(s_control(a, "start", "y", "probe", NULL), "agent/y", "running");
    s_expect_result(s_control(a, "start", "z", "probe", NULL), "agent/z", "running");
    s_expect_result(s_control(a, "stop", "y", NULL, NULL), "agent/y", "stopped");
    assert_int_equal(s_send(fx, "agent/x", "crash", NULL, 1), 0);
    s_wait_restarts(fx, "agent/x", 1, 3000);
    s_wait_restarts(fx, "agent/z", 1, 3000); //  one_for_all: z too...
    zclock_sleep(100);
    assert_int_equal(s_restarts(fx, "agent/y"), 0); //  ...but not the stopped y
    assert_int_equal(cd_registry_status(fx->rt.registry, "agent/y"), CD_ACTOR_STOPPED);
    s_expect_echo(fx, "agent/x", 2, 2000);
    s_expect_echo(fx, "agent/z", 3, 2000);
    s_agents_destroy(&a);
}

static void
test_supervisor_control_shutdown_stops_started_children_in_reverse_and_releases_them(void **state)
{
    static const cd_child_spec_t fixed[] = {
        {"agent/static", &s_probe_ops, NULL, CD_RESTART_PERMANENT}};
    s_agents_t *a = s_agents_start(CD_ONE_FOR_ONE, -1, fixed, 1);
    fixture_t *fx = a->fx;
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        s_answer_t answer = s_control(a, "start", names[i], "probe", NULL);
        assert_int_equal(answer.kind, CD_KIND_RESULT);
    }
    s_expect_result(s_control(a, "stop", "b", NULL, NULL), "agent/b", "stopped");
    s_expect_echo(fx, "agent/d", 1, 2000);
    s_stops_reset();
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    //  Started last, stopped first; the static child (started first) last.
    pthread_mutex_lock(&s_stops_lock);
    assert_int_equal(s_n_stops, 4);
    assert_string_equal(s_stops[0], "agent/d");
    assert_string_equal(s_stops[1], "agent/c");
    assert_string_equal(s_stops[2], "agent/a");
    assert_string_equal(s_stops[3], "agent/static");
    pthread_mutex_unlock(&s_stops_lock);
    assert_int_equal(atomic_load(&a->factory.built), 4);
    assert_int_equal(atomic_load(&a->factory.released), 4);
    cd_registry_entry_t entries[8];
    assert_int_equal(cd_registry_list(fx->rt.registry, entries, 8), 1); //  the port
    s_agents_destroy(&a);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_supervisor_one_for_one_restarts_only_the_failed_child),
        cmocka_unit_test(test_supervisor_one_for_all_restarts_every_child),
        cmocka_unit_test(test_supervisor_rest_for_one_restarts_the_failed_and_later_children),
        cmocka_unit_test(test_supervisor_handler_error_is_isolated),
        cmocka_unit_test(test_supervisor_unexpected_exit_is_restarted),
        cmocka_unit_test(test_supervisor_hang_is_detected_by_heartbeat_and_replaced),
        cmocka_unit_test(test_supervisor_messages_queued_for_a_crashed_actor_survive_its_restart),
        cmocka_unit_test(test_supervisor_intensity_escalates_to_the_parent),
        cmocka_unit_test(test_supervisor_root_gives_up_and_reports),
        cmocka_unit_test(test_supervisor_child_init_failure_fails_the_start),
        cmocka_unit_test(test_supervisor_commands_start_stop_restart),
        cmocka_unit_test(test_supervisor_full_queue_blocks_then_errors_without_loss),
        cmocka_unit_test(test_supervisor_undeliverable_messages_become_dead_letters),
        cmocka_unit_test(test_supervisor_malformed_message_is_rejected_not_fatal),
        cmocka_unit_test(test_supervisor_failed_forward_leaves_the_frames_with_the_caller),
        cmocka_unit_test(test_supervisor_destroy_twice_is_safe),
        cmocka_unit_test(test_supervisor_shutdown_is_clean_and_bounded),
        cmocka_unit_test(test_supervisor_control_start_stop_restart_remove),
        cmocka_unit_test(test_supervisor_control_answers_reply_to_with_the_request_ids),
        cmocka_unit_test(test_supervisor_control_errors_change_nothing),
        cmocka_unit_test(test_supervisor_control_started_child_is_supervised),
        cmocka_unit_test(test_supervisor_control_stopped_child_stays_stopped_when_a_sibling_fails),
        cmocka_unit_test(
            test_supervisor_control_shutdown_stops_started_children_in_reverse_and_releases_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
