/*  The exec agent, driven as the orchestrator would (cd_teststep.h): the
    output as JSON or text, stdin raw or as JSON, exit status with the
    stderr tail, timeout and the step deadline killing the whole process
    group, cancel, a too-large output, a child that ignores its stdin, a
    program that cannot run, the child's environment, concurrency with a
    queue, fini killing children and answering what it owed, and config
    checks. Real processes; every wait is bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_exec.h"
#include "cd_log.h"
#include "cd_supervisor.h"
#include "cd_teststep.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    cd_runtime_t rt;
    cd_exec_args_t *args;
    cd_child_spec_t child;
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port;
} fx_t;

static fx_t *
s_start(const char *config, int concurrency)
{
    static int generation = 0;
    char id[16];
    snprintf(id, sizeof id, "x%d", ++generation);
    fx_t *fx = calloc(1, sizeof *fx);
    fx->rt = (cd_runtime_t){cd_registry_new(id), 1000, 1000, 100, 2000, 3000, 5, 10};
    json_t *conf = json_loads(config, 0, NULL);
    assert_non_null(conf);
    char why[256] = "";
    if (cd_exec_args_new(conf, concurrency, &fx->args, why, sizeof why) != 0) {
        fail_msg("config %s: %s", config, why);
    }
    json_decref(conf);
    fx->child = (cd_child_spec_t){"agent/run", &cd_exec_ops, fx->args, CD_RESTART_PERMANENT};
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, &fx->child, 1};
    fx->port = cd_port_new(&fx->rt, "test");
    fx->root = cd_root_new(&fx->rt, "root", &fx->spec, why, sizeof why);
    assert_non_null(fx->root);
    return fx;
}

static void
s_stop(fx_t **fx_p)
{
    fx_t *fx = *fx_p;
    if (fx->root) {
        assert_int_equal(cd_root_destroy(&fx->root), 0);
    }
    cd_port_destroy(&fx->port);
    cd_exec_args_destroy(&fx->args);
    cd_registry_destroy(&fx->rt.registry);
    free(fx);
    *fx_p = NULL;
}

//  Receives one answer; returns its payload (caller decrefs) and kind.
static json_t *
s_answer(fx_t *fx, int timeout_ms, cd_kind_t *kind, int64_t *task_id)
{
    cd_envelope_t env;
    json_t *payload = NULL;
    int rc = ts_recv_json(fx->port, timeout_ms, &env, &payload);
    if (rc != 0) {
        fail_msg("no answer within %d ms: %s", timeout_ms, cd_errname(rc));
    }
    *kind = env.kind;
    if (task_id) {
        *task_id = env.task_id;
    }
    return payload;
}

//  Runs one step and returns the answer's payload as JSON text (caller
//  frees).
static char *
s_run(fx_t *fx, const char *input, int64_t deadline_us, cd_kind_t *kind)
{
    uint8_t id[CD_ENV_UUID_SIZE] = {0};
    assert_int_equal(ts_step_send(fx->port, "agent/run", 1, input, NULL, deadline_us, id), 0);
    json_t *payload = s_answer(fx, 10000, kind, NULL);
    char *text = ts_dump(payload);
    json_decref(payload);
    return text;
}

//  True once pid is gone (or a zombie nobody needs: reaped by init).
static bool
s_dead(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        if (kill(pid, 0) != 0 && errno == ESRCH) {
            return true;
        }
        char path[64], stat[256] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(stat, 1, sizeof stat - 1, f);
            stat[n] = '\0';
            fclose(f);
            const char *close_paren = strrchr(stat, ')');
            if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z') {
                return true;
            }
        }
        usleep(10000);
    }
    return false;
}

//  The pids a script wrote to path, one per line.
static int
s_read_pids(const char *path, pid_t *pids, int max)
{
    int n = 0;
    for (int i = 0; i < 200 && n < 2; i++) {
        FILE *f = fopen(path, "r");
        n = 0;
        if (f) {
            int pid;
            while (n < max && fscanf(f, "%d", &pid) == 1) {
                pids[n++] = (pid_t)pid;
            }
            fclose(f);
        }
        if (n < 2) {
            usleep(10000);
        }
    }
    return n;
}

static void
test_exec_output_is_json_or_text(void **state)
{
    fx_t *fx = s_start("{\"argv\":[\"/usr/bin/wc\",\"-c\"]}", 1);
    cd_kind_t kind;
    char *text = s_run(fx, "\"hello\"", 0, &kind); //  a string goes raw: 5 bytes
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"output\":5}");
    free(text);
    text = s_run(fx, "{\"a\":1}", 0, &kind); //  anything else as JSON text
    assert_string_equal(text, "{\"output\":7}");
    free(text);
    s_stop(&fx);

    fx = s_start("{\"argv\":[\"/bin/cat\"]}", 1);
    text = s_run(fx, "{\"a\":[1,2,{\"b\":null}]}", 0, &kind);
    assert_string_equal(text, "{\"output\":{\"a\":[1,2,{\"b\":null}]}}");
    free(text);
    text = s_run(fx, "\"not json at all\"", 0, &kind);
    assert_string_equal(text, "{\"output\":\"not json at all\"}");
    free(text);
    //  Larger than a pipe buffer both ways (POLLOUT on stdin).
    size_t big = 300000;
    char *input = malloc(big + 3);
    input[0] = '"';
    memset(input + 1, 'a', big);
    input[big + 1] = '"';
    input[big + 2] = '\0';
    text = s_run(fx, input, 0, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_int_equal(strlen(text), big + strlen("{\"output\":\"\"}"));
    free(text);
    free(input);
    //  Not orchestrated: a bin payload goes raw, the answer to the sender.
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_TASK, "agent/run");
    env.task_id = 77;
    env.payload_type = CD_PAYLOAD_BIN;
    env.payload = (cd_bin_t){(const uint8_t *)"[1, 2]", 6};
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    int64_t task_id = 0;
    json_t *payload = s_answer(fx, 5000, &kind, &task_id);
    assert_int_equal(task_id, 77);
    text = ts_dump(payload);
    assert_string_equal(text, "{\"output\":[1,2]}");
    free(text);
    json_decref(payload);
    s_stop(&fx);
}

static void
test_exec_exit_status_carries_the_stderr_tail(void **state)
{
    fx_t *fx =
        s_start("{\"argv\":[\"/bin/sh\",\"-c\",\"echo starting; echo oops >&2; exit 3\"]}", 1);
    cd_kind_t kind;
    char *text = s_run(fx, "null", 0, &kind);
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_non_null(strstr(text, "\"code\":\"exit_status\""));
    assert_non_null(strstr(text, "exited with status 3: oops"));
    assert_non_null(strstr(text, "\"retryable\":true"));
    free(text);
    s_stop(&fx);
    //  Bytes that are not UTF-8 on stderr: the message stays text.
    fx = s_start("{\"argv\":[\"/bin/sh\",\"-c\",\"printf '\\\\377\\\\376bad \\\\342\\\\202\\\\254' "
                 ">&2; exit 1\"]}",
                 1);
    text = s_run(fx, "null", 0, &kind);
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_non_null(strstr(text, "status 1: ??bad \xe2\x82\xac"));
    free(text);
    s_stop(&fx);
    //  A program that cannot be executed.
    fx = s_start("{\"argv\":[\"/nonexistent/program\"]}", 1);
    text = s_run(fx, "null", 0, &kind);
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_non_null(strstr(text, "status 127"));
    assert_non_null(strstr(text, "cannot execute"));
    free(text);
    s_stop(&fx);
}

//  A script that starts a grandchild and writes both pids to path.
static char *
s_sleeper_config(const char *path, int timeout_ms)
{
    char *config = NULL;
    assert_true(asprintf(&config,
                         "{\"argv\":[\"/bin/sh\",\"-c\",\"/bin/sleep 30 & echo $! > %s; echo $$ "
                         ">> %s; wait\"],\"timeout_ms\":%d}",
                         path, path, timeout_ms) > 0);
    return config;
}

static void
test_exec_timeout_kills_the_process_group(void **state)
{
    char path[] = "/tmp/cadre-exec-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char *config = s_sleeper_config(path, 300);
    fx_t *fx = s_start(config, 1);
    int64_t started = zclock_mono();
    cd_kind_t kind;
    char *text = s_run(fx, "null", 0, &kind);
    int64_t took = zclock_mono() - started;
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_non_null(strstr(text, "\"code\":\"timeout\""));
    assert_non_null(strstr(text, "\"retryable\":true"));
    assert_true(took >= 290 && took < 3000);
    free(text);
    pid_t pids[2] = {0, 0};
    assert_int_equal(s_read_pids(path, pids, 2), 2);
    assert_true(s_dead(pids[0])); //  the grandchild went with the group
    assert_true(s_dead(pids[1]));
    //  The step's deadline bounds it too, when it comes first.
    s_stop(&fx);
    free(config);
    config = s_sleeper_config(path, 60000);
    fx = s_start(config, 1);
    started = zclock_mono();
    text = s_run(fx, "null", cd_now_us() + 300000, &kind);
    took = zclock_mono() - started;
    assert_non_null(strstr(text, "\"code\":\"timeout\""));
    assert_true(took < 3000);
    free(text);
    //  A deadline already passed: no child at all.
    text = s_run(fx, "null", cd_now_us() - 1000, &kind);
    assert_non_null(strstr(text, "\"code\":\"timeout\""));
    free(text);
    s_stop(&fx);
    free(config);
    unlink(path);
}

static void
test_exec_cancel_kills_and_answers_nothing(void **state)
{
    char path[] = "/tmp/cadre-exec-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    char *config = s_sleeper_config(path, 60000);
    fx_t *fx = s_start(config, 1);
    uint8_t id[CD_ENV_UUID_SIZE] = {0};
    assert_int_equal(ts_step_send(fx->port, "agent/run", 9, "null", NULL, 0, id), 0);
    pid_t pids[2] = {0, 0};
    assert_int_equal(s_read_pids(path, pids, 2), 2);
    assert_int_equal(ts_cancel_send(fx->port, "agent/run", 9, id), 0);
    assert_true(s_dead(pids[0]));
    assert_true(s_dead(pids[1]));
    cd_envelope_t env;
    assert_int_equal(cd_port_recv(fx->port, 300, &env), CD_ETIMEDOUT);
    //  The agent goes on serving.
    cd_kind_t kind;
    unlink(path);
    char *text = s_run(fx, "null", cd_now_us() + 200000, &kind);
    assert_non_null(strstr(text, "timeout"));
    free(text);
    s_stop(&fx);
    free(config);
    unlink(path);
}

static void
test_exec_output_bound_and_unread_stdin(void **state)
{
    fx_t *fx = s_start("{\"argv\":[\"/usr/bin/head\",\"-c\",\"100000\",\"/dev/zero\"],"
                       "\"max_output_bytes\":1000}",
                       1);
    cd_kind_t kind;
    char *text = s_run(fx, "null", 0, &kind);
    assert_int_equal(kind, CD_KIND_ERROR);
    assert_non_null(strstr(text, "\"code\":\"output_too_large\""));
    assert_non_null(strstr(text, "\"retryable\":false"));
    free(text);
    s_stop(&fx);
    //  A child that never reads a 1 MB stdin: the write just stops.
    fx = s_start("{\"argv\":[\"/bin/true\"]}", 1);
    size_t big = 1 << 20;
    char *input = malloc(big + 3);
    input[0] = '"';
    memset(input + 1, 'b', big);
    input[big + 1] = '"';
    input[big + 2] = '\0';
    text = s_run(fx, input, 0, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_string_equal(text, "{\"output\":\"\"}");
    free(text);
    free(input);
    s_stop(&fx);
}

static void
test_exec_child_environment_is_only_its_own(void **state)
{
    setenv("CADRE_TEST_SECRET", "hush", 1);
    fx_t *fx = s_start("{\"argv\":[\"/usr/bin/env\"],\"env\":{\"GREETING\":\"hi there\"}}", 1);
    cd_kind_t kind;
    char *text = s_run(fx, "null", 0, &kind);
    assert_int_equal(kind, CD_KIND_RESULT);
    assert_non_null(strstr(text, "GREETING=hi there"));
    assert_non_null(strstr(text, "PATH=/usr/local/bin:/usr/bin:/bin"));
    assert_null(strstr(text, "CADRE_TEST_SECRET"));
    free(text);
    s_stop(&fx);
    //  No fd of the node leaks into the child: only 0, 1, 2 (and the one
    //  ls opens to list them).
    fx = s_start("{\"argv\":[\"/bin/ls\",\"/proc/self/fd\"]}", 1);
    text = s_run(fx, "null", 0, &kind);
    assert_string_equal(text, "{\"output\":\"0\\n1\\n2\\n3\\n\"}");
    free(text);
    s_stop(&fx);
}

static void
test_exec_concurrency_and_queue(void **state)
{
    const char *config = "{\"argv\":[\"/bin/sleep\",\"0.3\"]}";
    for (int concurrency = 1; concurrency <= 2; concurrency++) {
        fx_t *fx = s_start(config, concurrency);
        int64_t started = zclock_mono();
        for (int i = 0; i < 2; i++) {
            assert_int_equal(ts_step_send(fx->port, "agent/run", 10 + i, "null", NULL, 0, NULL), 0);
        }
        for (int i = 0; i < 2; i++) {
            cd_kind_t kind;
            json_t *payload = s_answer(fx, 5000, &kind, NULL);
            assert_int_equal(kind, CD_KIND_RESULT);
            json_decref(payload);
        }
        int64_t took = zclock_mono() - started;
        if (concurrency == 1) {
            assert_true(took >= 590); //  one after the other
        } else {
            assert_true(took < 590); //  side by side
        }
        s_stop(&fx);
    }
}

static void
test_exec_stop_kills_children_and_answers(void **state)
{
    char path[] = "/tmp/cadre-exec-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    char *config = s_sleeper_config(path, 60000);
    fx_t *fx = s_start(config, 1);
    assert_int_equal(ts_step_send(fx->port, "agent/run", 21, "null", NULL, 0, NULL), 0);
    assert_int_equal(ts_step_send(fx->port, "agent/run", 22, "null", NULL, 0, NULL), 0);
    pid_t pids[2] = {0, 0};
    assert_int_equal(s_read_pids(path, pids, 2), 2);
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    assert_true(s_dead(pids[0]));
    assert_true(s_dead(pids[1]));
    //  Both steps (running and queued) are told.
    for (int i = 0; i < 2; i++) {
        cd_kind_t kind;
        json_t *payload = s_answer(fx, 2000, &kind, NULL);
        assert_int_equal(kind, CD_KIND_ERROR);
        assert_string_equal(json_string_value(json_object_get(payload, "code")), "agent_stopped");
        json_decref(payload);
    }
    s_stop(&fx);
    free(config);
    unlink(path);
}

static void
test_exec_rejects_bad_config(void **state)
{
    static const struct {
        const char *config;
        const char *names;
    } cases[] = {
        {"{}", "config.argv"},
        {"{\"argv\":[]}", "config.argv"},
        {"{\"argv\":\"/bin/ls\"}", "config.argv"},
        {"{\"argv\":[\"ls\"]}", "config.argv[0]"},
        {"{\"argv\":[\"/bin/ls\", 3]}", "config.argv[1]"},
        {"{\"argv\":[\"\"]}", "config.argv[0]"},
        {"{\"argv\":[\"/bin/ls\"],\"timeout_ms\":0}", "config.timeout_ms"},
        {"{\"argv\":[\"/bin/ls\"],\"timeout_ms\":\"5\"}", "config.timeout_ms"},
        {"{\"argv\":[\"/bin/ls\"],\"env\":{\"1X\":\"a\"}}", "config.env.1X"},
        {"{\"argv\":[\"/bin/ls\"],\"env\":{\"X\":1}}", "config.env.X"},
        {"{\"argv\":[\"/bin/ls\"],\"env\":[]}", "config.env"},
        {"{\"argv\":[\"/bin/ls\"],\"max_output_bytes\":0}", "config.max_output_bytes"},
        {"{\"argv\":[\"/bin/ls\"],\"shell\":true}", "config.shell"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *conf = json_loads(cases[i].config, 0, NULL);
        cd_exec_args_t *args = NULL;
        char why[256] = "";
        assert_int_equal(cd_exec_args_new(conf, 1, &args, why, sizeof why), CD_EINVAL);
        assert_null(args);
        if (strncmp(why, cases[i].names, strlen(cases[i].names)) != 0) {
            fail_msg("%s: %s", cases[i].config, why);
        }
        json_decref(conf);
    }
    cd_exec_args_t *args = NULL;
    char why[256];
    assert_int_equal(cd_exec_args_new(NULL, 0, &args, why, sizeof why), CD_EINVAL);
    json_t *conf = json_loads("{\"argv\":[\"/bin/ls\",\"\"],\"env\":{\"PATH\":\"/x\"}}", 0, NULL);
    assert_int_equal(cd_exec_args_new(conf, 1000, &args, why, sizeof why), 0);
    assert_int_equal(args->concurrency, CD_EXEC_MAX_CONCURRENCY);
    assert_string_equal(args->envp[0], "PATH=/x");
    assert_null(args->envp[1]);
    assert_int_equal(args->timeout_ms, CD_EXEC_TIMEOUT_MS);
    cd_exec_args_destroy(&args);
    cd_exec_args_destroy(&args);
    json_decref(conf);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_output_is_json_or_text),
        cmocka_unit_test(test_exec_exit_status_carries_the_stderr_tail),
        cmocka_unit_test(test_exec_timeout_kills_the_process_group),
        cmocka_unit_test(test_exec_cancel_kills_and_answers_nothing),
        cmocka_unit_test(test_exec_output_bound_and_unread_stdin),
        cmocka_unit_test(test_exec_child_environment_is_only_its_own),
        cmocka_unit_test(test_exec_concurrency_and_queue),
        cmocka_unit_test(test_exec_stop_kills_children_and_answers),
        cmocka_unit_test(test_exec_rejects_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
