/*  The actor runtime's fd watches with events (cd_actor_watch_fd_events):
    a watch for POLLOUT fires on a writable pipe and reports POLLOUT; a
    second watch of the same fd changes its events and callback instead of
    adding one; a watch for nothing stays quiet; POLLIN fires on data.
    A draining socket watch (cd_actor_watch_drain) takes every message,
    past the batch limit and after going quiet. A real actor under a real
    supervisor, bounded waits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

typedef struct {
    int fds[2];       //  the pipe: read end, write end
    int writable;     //  POLLOUT callbacks seen
    int quiet_calls;  //  calls of the callback that should never run
    char report[128]; //  what was seen, sent to the test port
} s_probe_t;

static void
s_report(cd_actor_t *self, s_probe_t *probe)
{
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_RESULT, "test");
    out.payload_type = CD_PAYLOAD_BIN;
    out.payload = (cd_bin_t){(const uint8_t *)probe->report, (uint32_t)strlen(probe->report)};
    cd_actor_send(self, &out);
}

static int
s_on_quiet(cd_actor_t *self, void *socket, void *arg)
{
    ((s_probe_t *)arg)->quiet_calls++;
    return 0;
}

static int
s_on_readable(cd_actor_t *self, void *socket, void *arg)
{
    s_probe_t *probe = (s_probe_t *)arg;
    char buf[16] = "";
    ssize_t n = read(probe->fds[0], buf, sizeof buf - 1);
    snprintf(probe->report, sizeof probe->report, "read=%.*s in=%d writable=%d quiet=%d",
             (int)(n > 0 ? n : 0), buf, (cd_actor_fd_revents(self) & POLLIN) != 0, probe->writable,
             probe->quiet_calls);
    cd_actor_unwatch_fd(self, probe->fds[0]);
    s_report(self, probe);
    return 0;
}

static int
s_on_writable(cd_actor_t *self, void *socket, void *arg)
{
    s_probe_t *probe = (s_probe_t *)arg;
    if (!(cd_actor_fd_revents(self) & POLLOUT)) {
        return CD_EPROTO;
    }
    probe->writable++;
    if (write(probe->fds[1], "hey", 3) != 3) {
        return CD_EIO;
    }
    //  Same fd again: the watch changes (waits for nothing), none is added.
    cd_actor_watch_fd_events(self, probe->fds[1], 0, s_on_quiet, probe);
    cd_actor_watch_fd_events(self, probe->fds[0], POLLIN, s_on_readable, probe);
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    s_probe_t *probe = (s_probe_t *)calloc(1, sizeof *probe);
    if (pipe2(probe->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(probe);
        *why = "pipe";
        return CD_EIO;
    }
    cd_actor_watch_fd_events(self, probe->fds[1], POLLOUT, s_on_writable, probe);
    *state_p = probe;
    return 0;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_probe_t *probe = (s_probe_t *)*state_p;
    if (probe) {
        close(probe->fds[0]);
        close(probe->fds[1]);
        free(probe);
        *state_p = NULL;
    }
}

static const cd_actor_ops_t s_ops = {"probe", s_init, s_handle, NULL, s_fini, NULL};

//  One actor (name, ops) under a root of a fresh registry of node `node`,
//  and the test port "test" it reports to.
typedef struct {
    cd_runtime_t rt;
    cd_child_spec_t child;
    cd_supervisor_spec_t spec;
    cd_port_t *port;
    cd_root_t *root;
} s_tree_t;

static void
s_tree_start(s_tree_t *t, const char *node, const char *name, const cd_actor_ops_t *ops)
{
    t->rt = (cd_runtime_t){cd_registry_new(node), 1000, 1000, 100, 2000, 3000, 5, 10};
    t->child = (cd_child_spec_t){name, ops, NULL, CD_RESTART_PERMANENT};
    t->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, &t->child, 1};
    t->port = cd_port_new(&t->rt, "test");
    char why[160] = "";
    t->root = cd_root_new(&t->rt, "root", &t->spec, why, sizeof why);
    assert_non_null(t->root);
}

static void
s_tree_stop(s_tree_t *t)
{
    assert_int_equal(cd_root_destroy(&t->root), 0);
    cd_port_destroy(&t->port);
    cd_registry_destroy(&t->rt.registry);
}

static void
test_actor_fd_watch_events(void **state)
{
    s_tree_t t;
    s_tree_start(&t, "a1", "probe", &s_ops);
    cd_port_t *port = t.port;
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(port, 2000, &env), 0);
    char text[128];
    snprintf(text, sizeof text, "%.*s", (int)env.payload.len, (const char *)env.payload.ptr);
    assert_string_equal(text, "read=hey in=1 writable=1 quiet=0");
    s_tree_stop(&t);
}

//  --- a draining socket watch -------------------------------------------------------

#define S_DRAIN_ENDPOINT "inproc://test-actor-drain"

typedef struct {
    zsock_t *pull;   //  bound at S_DRAIN_ENDPOINT, watched with cd_actor_watch_drain
    int received;    //  messages taken
    int expect;      //  report when received reaches it
    char report[32]; //  sent to the test port
} s_drain_t;

static int
s_on_drain(cd_actor_t *self, void *socket, void *arg)
{
    s_drain_t *drain = (s_drain_t *)arg;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, zsock_resolve(socket), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return CD_ACTOR_DRAINED;
    }
    zmq_msg_close(&msg);
    if (++drain->received == drain->expect) {
        snprintf(drain->report, sizeof drain->report, "%d", drain->received);
        cd_envelope_t out;
        cd_actor_envelope_init(self, &out, CD_KIND_RESULT, "test");
        out.payload_type = CD_PAYLOAD_BIN;
        out.payload = (cd_bin_t){(const uint8_t *)drain->report, (uint32_t)strlen(drain->report)};
        cd_actor_send(self, &out);
    }
    return 0;
}

static int
s_drain_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    s_drain_t *drain = (s_drain_t *)calloc(1, sizeof *drain);
    drain->pull = zsock_new_pull("@" S_DRAIN_ENDPOINT);
    if (!drain->pull) {
        free(drain);
        *why = "bind";
        return CD_EIO;
    }
    drain->expect = 300;
    cd_actor_watch_drain(self, drain->pull, s_on_drain, drain);
    *state_p = drain;
    return 0;
}

//  A control message sets how many to count to next.
static int
s_drain_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    ((s_drain_t *)state)->expect += (int)env->task_id;
    return 0;
}

static void
s_drain_fini(cd_actor_t *self, void **state_p)
{
    s_drain_t *drain = (s_drain_t *)*state_p;
    if (drain) {
        cd_actor_unwatch(self, drain->pull);
        zsock_destroy(&drain->pull);
        free(drain);
        *state_p = NULL;
    }
}

static const cd_actor_ops_t s_drain_ops = {"drain", s_drain_init, s_drain_handle,
                                           NULL,    s_drain_fini, NULL};

static void
s_expect_count(cd_port_t *port, const char *want)
{
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(port, 5000, &env), 0);
    char text[32];
    snprintf(text, sizeof text, "%.*s", (int)env.payload.len, (const char *)env.payload.ptr);
    assert_string_equal(text, want);
}

static void
test_actor_drain_watch_takes_every_message(void **state)
{
    s_tree_t t;
    s_tree_start(&t, "a2", "drain", &s_drain_ops);
    cd_port_t *port = t.port;
    zsock_t *push = zsock_new_push(">" S_DRAIN_ENDPOINT);
    assert_non_null(push);
    //  Many at once: more than one batch of the loop.
    for (int i = 0; i < 300; i++) {
        assert_int_equal(zstr_send(push, "m"), 0);
    }
    s_expect_count(port, "300");
    //  Later, after the watch found the socket empty: still seen.
    cd_envelope_t more;
    cd_mailer_envelope_init(cd_port_mailer(port), &more, CD_KIND_CONTROL, "drain");
    more.task_id = 5;
    assert_int_equal(cd_port_send(port, &more), 0);
    zclock_sleep(50);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(zstr_send(push, "m"), 0);
        zclock_sleep(5);
    }
    s_expect_count(port, "305");
    zsock_destroy(&push);
    s_tree_stop(&t);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_actor_fd_watch_events),
        cmocka_unit_test(test_actor_drain_watch_takes_every_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
