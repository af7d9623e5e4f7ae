/* label: integration */
/*  test_orch_crash: crash recovery with the real binary. cadred runs as a
    child process on a database of the test's PostgreSQL (DATABASE_URL),
    1,000 tasks go through a two-agent team pipeline, and the node is
    killed with SIGKILL twice in the middle and started again on the same
    data dir (same node id) each time. At the end, checked with SQL: every
    task is done, completed exactly once, with the right output; no
    history shows a step after a completion, nor a stage run again after
    its handoff was recorded; and the kills did hit running tasks, which
    resumed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cd_testpg.h"
#include "orchtest.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_TASKS 1000

typedef struct {
    char cadred[512];   //  the binary
    char *conninfo;     //  its database
    char *dir;          //  its data dir
    char env_url[4096]; //  DATABASE_URL=...
    char env_dir[600];  //  CADRE_DATA_DIR=...
    char env_addr[64];  //  CADRE_HTTP_ADDR=...
    pid_t pid;          //  the running node, or 0
    tn_node_t client;   //  base URL for requests (no node in this process)
    int starts;         //  how many times it was started
} fx_t;

//  A free loopback port (bound and released: the node binds it next).
static int
s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        fail_msg("no free port");
    }
    close(fd);
    return ntohs(addr.sin_port);
}

static void
s_node_start(fx_t *fx)
{
    snprintf(fx->env_addr, sizeof fx->env_addr, "CADRE_HTTP_ADDR=127.0.0.1:%d", s_free_port());
    snprintf(fx->client.base, sizeof fx->client.base, "http://%s", fx->env_addr + 16);
    char log[700];
    snprintf(log, sizeof log, "%s/cadred-%d.log", fx->dir, ++fx->starts);
    fx->pid = fork();
    assert_true(fx->pid >= 0);
    if (fx->pid == 0) {
        int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
        char *env[] = {fx->env_url,
                       fx->env_dir,
                       fx->env_addr,
                       "CADRE_LOG_LEVEL=warn",
                       "CADRE_ADMIN_PASSWORD=" TN_ADMIN_PASSWORD,
                       "CADRE_ORCH_SCAN_MS=50",
                       "CADRE_ORCH_BACKOFF_MS=20",
                       "CADRE_ORCH_BACKOFF_MAX_MS=200",
                       "CADRE_ORCH_LEASE_MS=3000",
                       "ASAN_OPTIONS=detect_leaks=0",
                       NULL};
        char *argv[] = {fx->cadred, NULL};
        execve(fx->cadred, argv, env);
        _exit(127);
    }
    //  Ready when /health/ready says so.
    int64_t deadline = zclock_mono() + 60000;
    while (zclock_mono() < deadline) {
        tn_resp_t r;
        long status = tn_call(&fx->client, &r, "GET", "/health/ready", NULL);
        tn_resp_free(&r);
        if (status == 200) {
            //  Requests go as admin (the same password on every start).
            free(fx->client.admin_token);
            fx->client.admin_token = tn_login(&fx->client, "admin", TN_ADMIN_PASSWORD, NULL);
            assert_non_null(fx->client.admin_token);
            return;
        }
        int wstatus = 0;
        if (waitpid(fx->pid, &wstatus, WNOHANG) == fx->pid) {
            fail_msg("cadred exited at start (see %s)", log);
        }
        zclock_sleep(50);
    }
    fail_msg("cadred did not get ready (see %s)", log);
}

static void
s_node_kill(fx_t *fx)
{
    kill(fx->pid, SIGKILL);
    int wstatus = 0;
    waitpid(fx->pid, &wstatus, 0);
    assert_true(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
    fx->pid = 0;
}

static int
s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    const char *build = getenv("CADRE_BUILD_DIR");
    snprintf(fx->cadred, sizeof fx->cadred, "%s/cadred", build ? build : "build");
    if (access(fx->cadred, X_OK) != 0 || cd_testpg_fresh_db(&fx->conninfo) != 0) {
        fprintf(stderr, "test_orch_crash: no %s or no database\n", fx->cadred);
        free(fx);
        return -1;
    }
    fx->dir = cd_testpg_scratch_dir();
    snprintf(fx->env_url, sizeof fx->env_url, "DATABASE_URL=%s", fx->conninfo);
    snprintf(fx->env_dir, sizeof fx->env_dir, "CADRE_DATA_DIR=%s", fx->dir);
    fx->client.conninfo = fx->conninfo;
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    fx_t *fx = (fx_t *)*state;
    if (fx->pid > 0) {
        kill(fx->pid, SIGKILL);
        waitpid(fx->pid, NULL, 0);
    }
    cd_testpg_rmtree(fx->dir);
    free(fx->client.admin_token);
    free(fx->dir);
    free(fx->conninfo);
    free(fx);
    return 0;
}

static int64_t
s_done(fx_t *fx)
{
    return ot_sql_int(&fx->client, "SELECT count(*) FROM tasks WHERE status = 'done'");
}

//  Waits until at least n tasks are done (bounded).
static void
s_wait_done(fx_t *fx, int64_t n, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    int64_t done = 0;
    while ((done = s_done(fx)) < n) {
        if (zclock_mono() > deadline) {
            fail_msg("only %lld of %lld tasks done after %d ms", (long long)done, (long long)n,
                     timeout_ms);
        }
        zclock_sleep(5);
    }
}

static void
s_sql_is(fx_t *fx, const char *sql, const char *want)
{
    char *got = tn_sql(&fx->client, sql);
    if (!got || strcmp(got, want) != 0) {
        fail_msg("%s\n got  %s\n want %s", sql, got ? got : "(null)", want);
    }
    free(got);
}

static void
test_orch_crash_twice_every_task_done_exactly_once(void **state)
{
    fx_t *fx = (fx_t *)*state;
    s_node_start(fx);
    tn_node_t *c = &fx->client;
    int64_t roles[2] = {ot_role(c, "first"), ot_role(c, "second")};
    ot_agent(c, "one", "echo", "first", 8, "{\"sleep_ms\":10}");
    ot_agent(c, "two", "echo", "second", 8, "{\"sleep_ms\":10}");
    const char *members[] = {"one", "two"};
    int64_t team = ot_team(c, "pair", roles, members, 2);
    //  1,000 tasks in 10 batches.
    for (int b = 0; b < 10; b++) {
        char *body = malloc(64 * 1024);
        size_t len = (size_t)snprintf(body, 64, "{\"tasks\":[");
        for (int i = 0; i < 100; i++) {
            len += (size_t)snprintf(body + len, 64 * 1024 - len,
                                    "%s{\"title\":\"t\",\"assignee\":{\"team\":%lld},\"input\":%d,"
                                    "\"max_attempts\":5}",
                                    i ? "," : "", (long long)team, b * 100 + i);
        }
        snprintf(body + len, 64 * 1024 - len, "]}");
        json_decref(ot_call(c, "POST", "/api/v1/tasks/batch", body, 201));
        free(body);
    }
    //  Killed while tasks run, twice.
    s_wait_done(fx, 200, 60000);
    s_node_kill(fx);
    int64_t at_first = s_done(fx);
    s_node_start(fx);
    s_wait_done(fx, at_first + 250, 60000);
    s_node_kill(fx);
    int64_t at_second = s_done(fx);
    assert_true(at_second < S_TASKS);
    s_node_start(fx);
    s_wait_done(fx, S_TASKS, 90000);
    //  Everything done, once, with the right output.
    s_sql_is(fx, "SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'done') FROM tasks",
             "1000 1000");
    s_sql_is(fx,
             "SELECT count(*) FROM tasks WHERE output IS DISTINCT FROM"
             " jsonb_build_object('echo', jsonb_build_object('echo', input))",
             "0");
    s_sql_is(fx,
             "SELECT count(DISTINCT task_id) || ' ' || count(*) FROM task_events"
             " WHERE kind = 'completed'",
             "1000 1000");
    s_sql_is(fx, "SELECT count(*) FROM events WHERE type = 'task.completed'", "1000");
    //  Nothing after a completion.
    s_sql_is(fx,
             "SELECT count(*) FROM task_events e JOIN task_events c ON c.task_id = e.task_id"
             " AND c.kind = 'completed' AND e.seq > c.seq",
             "0");
    //  History rows numbered 1, 2, 3 ... per task without gaps.
    s_sql_is(fx,
             "SELECT count(*) FROM (SELECT task_id FROM task_events GROUP BY task_id"
             " HAVING max(seq) <> count(*)) g",
             "0");
    //  A stage whose handoff was recorded did not run again after a
    //  recovery: no output of the first stage after a retry that follows
    //  the handoff.
    s_sql_is(fx,
             "SELECT count(*) FROM task_events h JOIN task_events r ON r.task_id = h.task_id"
             " AND r.kind = 'retry' AND r.seq > h.seq JOIN task_events o ON o.task_id = h.task_id"
             " AND o.kind = 'output' AND o.from_agent = 'one' AND o.seq > r.seq"
             " WHERE h.kind = 'handoff'",
             "0");
    //  The kills hit running tasks, which the restarted node took back.
    int64_t recovered =
        ot_sql_int(c, "SELECT count(DISTINCT task_id) FROM task_events WHERE"
                      " kind = 'retry' AND payload ->> 'reason' = 'node_restarted'");
    assert_true(recovered > 0);
    int64_t resumed = ot_sql_int(c, "SELECT count(*) FROM task_events h JOIN task_events r"
                                    " ON r.task_id = h.task_id AND r.kind = 'retry'"
                                    " AND r.seq > h.seq WHERE h.kind = 'handoff'");
    fprintf(stderr,
            "crash test: done at the kills %lld, %lld; tasks taken back %lld, "
            "resumed after a recorded handoff %lld\n",
            (long long)at_first, (long long)at_second, (long long)recovered, (long long)resumed);
    s_node_kill(fx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_orch_crash_twice_every_task_done_exactly_once, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
