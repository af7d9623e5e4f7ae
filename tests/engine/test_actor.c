/*  The actor runtime's fd watches with events (cd_actor_watch_fd_events):
    a watch for POLLOUT fires on a writable pipe and reports POLLOUT; a
    second watch of the same fd changes its events and callback instead of
    adding one; a watch for nothing stays quiet; POLLIN fires on data. A
    real actor under a real supervisor, bounded waits. */
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

static void
test_actor_fd_watch_events(void **state)
{
    cd_runtime_t rt = {cd_registry_new("a1"), 1000, 1000, 100, 2000, 3000, 5, 10};
    cd_child_spec_t child = {"probe", &s_ops, NULL, CD_RESTART_PERMANENT};
    cd_supervisor_spec_t spec = {CD_ONE_FOR_ONE, -1, 0, &child, 1};
    cd_port_t *port = cd_port_new(&rt, "test");
    char why[160] = "";
    cd_root_t *root = cd_root_new(&rt, "root", &spec, why, sizeof why);
    assert_non_null(root);
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(port, 2000, &env), 0);
    char text[128];
    snprintf(text, sizeof text, "%.*s", (int)env.payload.len, (const char *)env.payload.ptr);
    assert_string_equal(text, "read=hey in=1 writable=1 quiet=0");
    assert_int_equal(cd_root_destroy(&root), 0);
    cd_port_destroy(&port);
    cd_registry_destroy(&rt.registry);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_actor_fd_watch_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
