/* label: db */
/*  The node process itself: cadred started as a real process on the
    embedded PostgreSQL. It comes up and says so, stops cleanly with exit 0
    on SIGTERM and SIGINT (PostgreSQL stopped too), refuses a second
    instance on the same data dir, recovers after SIGKILL (a postmaster left
    running), keeps its node id and data across restarts, and rejects bad
    configuration naming the option, refuses a non-loopback cluster bind
    without CurveZMQ, and runs the keygen subcommand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;      //  the cadred process
    int out_fd;     //  its stdout (read end)
    char *err_path; //  where its stderr goes
    char out[8192]; //  stdout read so far
    size_t out_len; //  bytes in out
} node_t;

static char s_cadred[512];
static char s_dir[256];

static void
s_node_start(node_t *node, const char *data_dir, const char *extra)
{
    memset(node, 0, sizeof *node);
    int out[2];
    assert_int_equal(pipe(out), 0);
    node->err_path = zsys_sprintf("%s/stderr-%d.log", s_dir, rand());
    node->pid = fork();
    assert_true(node->pid >= 0);
    if (node->pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        int err = open(node->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(err, STDERR_FILENO);
        close(out[0]);
        setenv("CADRE_LOG_LEVEL", "info", 1);
        unsetenv("DATABASE_URL");
        char *argv[8] = {s_cadred, "--data-dir", (char *)data_dir, NULL, NULL, NULL};
        if (extra) {
            argv[3] = (char *)extra;
        }
        execv(s_cadred, argv);
        _exit(127);
    }
    close(out[1]);
    node->out_fd = out[0];
    fcntl(node->out_fd, F_SETFL, O_NONBLOCK);
}

//  Reads stdout until `text` appears or timeout_ms passes.
static bool
s_wait_output(node_t *node, const char *text, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    while (zclock_mono() < deadline) {
        ssize_t n =
            read(node->out_fd, node->out + node->out_len, sizeof node->out - 1 - node->out_len);
        if (n > 0) {
            node->out_len += (size_t)n;
            node->out[node->out_len] = '\0';
        }
        if (strstr(node->out, text)) {
            return true;
        }
        zclock_sleep(20);
    }
    return false;
}

//  Waits for the process to end; returns its exit code, or -signal.
static int
s_wait_exit(node_t *node, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    int status = 0;
    while (zclock_mono() < deadline) {
        pid_t pid = waitpid(node->pid, &status, WNOHANG);
        if (pid == node->pid) {
            close(node->out_fd);
            return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        }
        zclock_sleep(20);
    }
    kill(node->pid, SIGKILL);
    waitpid(node->pid, &status, 0);
    close(node->out_fd);
    fail_msg("cadred did not exit within %d ms", timeout_ms);
    return -1;
}

static char *
s_stderr(node_t *node)
{
    char *text = NULL;
    FILE *file = fopen(node->err_path, "r");
    if (file) {
        text = calloc(1, 1 << 20);
        size_t n = fread(text, 1, (1 << 20) - 1, file);
        text[n] = '\0';
        fclose(file);
    }
    return text ? text : strdup("");
}

static void
s_node_free(node_t *node)
{
    unlink(node->err_path);
    zstr_free(&node->err_path);
}

//  True while a postmaster runs on data_dir's embedded cluster.
static bool
s_postmaster_alive(const char *data_dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/pg/data/postmaster.pid", data_dir);
    FILE *file = fopen(path, "r");
    if (!file) {
        return false;
    }
    long pid = 0;
    int fields = fscanf(file, "%ld", &pid);
    fclose(file);
    return fields == 1 && pid > 0 && kill((pid_t)pid, 0) == 0;
}

static char *
s_data_dir(const char *name)
{
    return zsys_sprintf("%s/%s", s_dir, name);
}

static void
test_cadred_starts_and_stops_cleanly_on_sigterm(void **state)
{
    char *dir = s_data_dir("term");
    node_t node;
    //  With one persist option set, to see it reach the actor.
    s_node_start(&node, dir, "--persist-batch-max=7");
    assert_true(s_wait_output(&node, "supervisor running", 120000));
    assert_non_null(strstr(node.out, "node "));
    assert_non_null(strstr(node.out, dir));
    assert_true(s_postmaster_alive(dir));
    kill(node.pid, SIGTERM);
    assert_int_equal(s_wait_exit(&node, 30000), 0);
    assert_false(s_postmaster_alive(dir));
    char *err = s_stderr(&node);
    //  Structured logs: one JSON object per line.
    assert_non_null(strstr(err, "{\"ts\":\""));
    assert_non_null(strstr(err, "\"msg\":\"node up\""));
    //  The persist actor logs the settings it runs with.
    assert_non_null(strstr(err,
                           "\"actor\":\"persist\",\"msg\":\"settings\",\"batch_max\":7,"
                           "\"batch_wait_ms\":5,\"queue_limit\":20000,\"wait_timeout_ms\":10000"));
    free(err);
    s_node_free(&node);
    zstr_free(&dir);
}

static void
test_cadred_second_instance_on_the_same_data_dir_is_refused(void **state)
{
    char *dir = s_data_dir("twice");
    node_t first, second;
    s_node_start(&first, dir, NULL);
    assert_true(s_wait_output(&first, "supervisor running", 120000));
    s_node_start(&second, dir, NULL);
    assert_int_equal(s_wait_exit(&second, 30000), 1);
    char *err = s_stderr(&second);
    assert_non_null(strstr(err, "another cadred"));
    free(err);
    //  The first one is unaffected.
    assert_true(s_postmaster_alive(dir));
    kill(first.pid, SIGINT);
    assert_int_equal(s_wait_exit(&first, 30000), 0);
    s_node_free(&first);
    s_node_free(&second);
    zstr_free(&dir);
}

static void
test_cadred_recovers_after_sigkill_and_keeps_its_identity(void **state)
{
    char *dir = s_data_dir("kill");
    node_t node;
    s_node_start(&node, dir, NULL);
    assert_true(s_wait_output(&node, "supervisor running", 120000));
    char id[64] = "";
    assert_int_equal(sscanf(strstr(node.out, "node ") + 5, "%63s", id), 1);
    kill(node.pid, SIGKILL);
    assert_int_equal(s_wait_exit(&node, 10000), -SIGKILL);
    s_node_free(&node);
    //  Its PostgreSQL outlived it; the next start takes over.
    s_node_start(&node, dir, NULL);
    assert_true(s_wait_output(&node, "supervisor running", 120000));
    assert_non_null(strstr(node.out, id));
    char *err = s_stderr(&node);
    assert_null(strstr(err, "\"msg\":\"initdb\""));
    assert_non_null(strstr(err, "\"migrations_applied\":0"));
    free(err);
    kill(node.pid, SIGTERM);
    assert_int_equal(s_wait_exit(&node, 30000), 0);
    assert_false(s_postmaster_alive(dir));
    s_node_free(&node);
    zstr_free(&dir);
}

static void
test_cadred_rejects_bad_configuration_naming_the_option(void **state)
{
    char *dir = s_data_dir("bad");
    node_t node;
    s_node_start(&node, dir, "--queue-hwm=lots");
    assert_int_equal(s_wait_exit(&node, 10000), 2);
    char *err = s_stderr(&node);
    assert_non_null(strstr(err, "--queue-hwm"));
    free(err);
    s_node_free(&node);
    s_node_start(&node, dir, "--persist-batch-wait-ms=0");
    assert_int_equal(s_wait_exit(&node, 10000), 2);
    err = s_stderr(&node);
    assert_non_null(strstr(err, "--persist-batch-wait-ms: '0' is out of range"));
    free(err);
    s_node_free(&node);
    //  Nothing was created for a node that never started.
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
    zstr_free(&dir);
}

static void
test_cadred_help_lists_the_options(void **state)
{
    node_t node;
    s_node_start(&node, "/nonexistent", "--help");
    assert_true(s_wait_output(&node, "CADRE_DATA_DIR", 10000));
    assert_int_equal(s_wait_exit(&node, 10000), 0);
    assert_non_null(strstr(node.out, "--http-addr"));
    s_node_free(&node);
}

static void
test_cadred_refuses_an_insecure_cluster_bind(void **state)
{
    char *dir = s_data_dir("insecure");
    node_t node;
    s_node_start(&node, dir, "--cluster-addr=tcp://0.0.0.0:7999");
    assert_int_equal(s_wait_exit(&node, 10000), 2);
    char *err = s_stderr(&node);
    assert_non_null(strstr(err, "--cluster-addr tcp://0.0.0.0:7999 is not a loopback address"));
    assert_non_null(strstr(err, "--allow-insecure-tcp"));
    free(err);
    s_node_free(&node);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
    zstr_free(&dir);
}

static void
test_cadred_keygen_prints_a_key_pair(void **state)
{
    node_t node;
    s_node_start(&node, "/nonexistent", "keygen");
    assert_true(s_wait_output(&node, "secret-key ", 10000));
    assert_int_equal(s_wait_exit(&node, 10000), 0);
    char public_key[64] = "", secret_key[64] = "";
    assert_int_equal(sscanf(node.out, "public-key %63s\nsecret-key %63s", public_key, secret_key),
                     2);
    assert_int_equal(strlen(public_key), 40);
    assert_int_equal(strlen(secret_key), 40);
    s_node_free(&node);
    //  Anything else is not a command.
    s_node_start(&node, "/nonexistent", "frobnicate");
    assert_int_equal(s_wait_exit(&node, 10000), 2);
    char *err = s_stderr(&node);
    assert_non_null(strstr(err, "unknown command 'frobnicate'"));
    free(err);
    s_node_free(&node);
}

static int
s_setup(void **state)
{
    const char *build = getenv("CADRE_BUILD_DIR");
    snprintf(s_cadred, sizeof s_cadred, "%s/cadred", build ? build : "build");
    if (access(s_cadred, X_OK) != 0) {
        fprintf(stderr, "test_cadred: %s not found (set CADRE_BUILD_DIR)\n", s_cadred);
        return -1;
    }
    //  Under /tmp: the postgres account must be able to reach the cluster.
    snprintf(s_dir, sizeof s_dir, "/tmp/cadre-node-XXXXXX");
    if (!mkdtemp(s_dir)) {
        return -1;
    }
    chmod(s_dir, 0755);
    return 0;
}

static int
s_teardown(void **state)
{
    char *command = zsys_sprintf("rm -rf '%s'", s_dir);
    int rc = system(command);
    zstr_free(&command);
    return rc == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cadred_starts_and_stops_cleanly_on_sigterm),
        cmocka_unit_test(test_cadred_second_instance_on_the_same_data_dir_is_refused),
        cmocka_unit_test(test_cadred_recovers_after_sigkill_and_keeps_its_identity),
        cmocka_unit_test(test_cadred_rejects_bad_configuration_naming_the_option),
        cmocka_unit_test(test_cadred_help_lists_the_options),
        cmocka_unit_test(test_cadred_refuses_an_insecure_cluster_bind),
        cmocka_unit_test(test_cadred_keygen_prints_a_key_pair),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
