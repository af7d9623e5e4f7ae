/* label: integration */
/*  test_orch_failure: what happens when steps fail, over HTTP/2 against a
    real node: retried with backoff until an attempt succeeds; retries
    exhausted -> failed with the error; a step timeout; an error that is
    not retryable fails at once; cancel of a running task frees its agent
    at once and its late answer is discarded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "orchtest.h"

static int
s_setup(void **state)
{
    tn_node_t *node = ot_start();
    *state = node;
    return node ? 0 : -1;
}

static int
s_teardown(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_stop(&node);
    return 0;
}

//  Waits until SQL answers want (bounded).
static void
s_wait_sql(const tn_node_t *node, const char *sql, const char *want, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    while (true) {
        char *got = tn_sql(node, sql);
        bool ok = got && strcmp(got, want) == 0;
        if (ok || zclock_mono() > deadline) {
            if (!ok) {
                fail_msg("%s: got %s, want %s", sql, got ? got : "(null)", want);
            }
            free(got);
            return;
        }
        free(got);
        zclock_sleep(10);
    }
}

static void
test_orch_retry_then_success(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "flaky", "echo", NULL, 1, "{\"fail\":true}");
    int64_t id = ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"flaky\"},\"input\":"
                               "\"x\",\"max_attempts\":20}");
    //  It failed at least once and is waiting for its next attempt ...
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) > 0 FROM task_events WHERE task_id = %lld AND kind = 'retry'",
             (long long)id);
    s_wait_sql(node, sql, "t", 10000);
    //  ... then the agent is fixed, and the next attempt succeeds.
    json_decref(
        ot_call(node, "PATCH", "/api/v1/agents/flaky", "{\"config\":{\"fail\":false}}", 200));
    json_t *task = ot_wait_status(node, id, "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":\"x\"}");
    assert_true(ot_int(task, "attempts") >= 2);
    json_decref(task);
    char *history = ot_history(node, id);
    assert_non_null(strstr(history, "assigned:>flaky,started:>flaky,retry:flaky>,"));
    const char *tail = "assigned:>flaky,started:>flaky,output:flaky>,completed:flaky>";
    assert_string_equal(history + strlen(history) - strlen(tail), tail);
    free(history);
    //  A retry row carries the error and the backoff; the next run resumes.
    char *retry = ot_sql(node,
                         "SELECT (payload -> 'error' ->> 'code') || ' ' || (payload ->> 'resume')"
                         " FROM task_events WHERE task_id = %lld AND kind = 'retry' ORDER BY seq"
                         " LIMIT 1",
                         (long long)id);
    assert_string_equal(retry, "echo_failed true");
    free(retry);
}

static void
test_orch_retries_exhausted_fail_the_task(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "broken", "echo", NULL, 1, "{\"fail\":true}");
    int64_t id =
        ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"broken\"},\"max_attempts\":3}");
    json_t *task = ot_wait_status(node, id, "failed", 10000);
    assert_int_equal(ot_int(task, "attempts"), 3);
    assert_string_equal(ot_str(json_object_get(task, "error"), "code"), "echo_failed");
    assert_string_equal(ot_str(json_object_get(task, "error"), "agent"), "broken");
    assert_non_null(json_string_value(json_object_get(task, "finished_at")));
    json_decref(task);
    ot_history_is(node, id,
                  "created:>broken,assigned:>broken,started:>broken,retry:broken>,"
                  "assigned:>broken,started:>broken,retry:broken>,assigned:>broken,"
                  "started:>broken,failed:broken>");
    char *events = ot_sql(node,
                          "SELECT string_agg(type, ',' ORDER BY id) FROM events"
                          " WHERE task_id = %lld",
                          (long long)id);
    assert_string_equal(events, "task.created,task.started,task.started,task.started,task.failed");
    free(events);
    //  Fixed, the API's retry starts it over.
    json_decref(
        ot_call(node, "PATCH", "/api/v1/agents/broken", "{\"config\":{\"fail\":false}}", 200));
    char path[64];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/retry", (long long)id);
    json_decref(ot_call(node, "POST", path, NULL, 200));
    task = ot_wait_status(node, id, "done", 10000);
    assert_int_equal(ot_int(task, "attempts"), 1);
    json_decref(task);
}

static void
test_orch_step_timeout_is_a_failed_attempt(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "slow", "echo", NULL, 1, "{\"sleep_ms\":3000}");
    int64_t started = zclock_mono();
    int64_t id =
        ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"slow\"},\"max_attempts\":"
                      "2,\"timeout_ms\":200}");
    json_t *task = ot_wait_status(node, id, "failed", 5000);
    //  Two attempts of 200 ms, not two sleeps of 3 s.
    assert_true(zclock_mono() - started < 2500);
    assert_int_equal(ot_int(task, "attempts"), 2);
    assert_string_equal(ot_str(json_object_get(task, "error"), "code"), "timeout");
    json_decref(task);
    //  The agent's late answers (it was told to cancel) change nothing.
    zclock_sleep(300);
    ot_history_is(node, id,
                  "created:>slow,assigned:>slow,started:>slow,retry:slow>,assigned:>slow,"
                  "started:>slow,failed:slow>");
}

static void
test_orch_not_retryable_fails_at_once(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "astray", "echo", NULL, 1, "{\"handoff_to\":\"nobody\"}");
    int64_t id = ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"astray\"}}");
    json_t *task = ot_wait_status(node, id, "failed", 5000);
    assert_int_equal(ot_int(task, "attempts"), 1);
    assert_string_equal(ot_str(json_object_get(task, "error"), "code"), "bad_handoff");
    json_decref(task);
}

static void
test_orch_cancel_stops_a_running_task(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "busy", "echo", NULL, 1, "{\"sleep_ms\":4000}");
    int64_t id = ot_task(node, "{\"title\":\"long\",\"assignee\":{\"agent\":\"busy\"}}");
    json_decref(ot_wait_status(node, id, "in_progress", 5000));
    char path[64];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/cancel", (long long)id);
    json_t *task = ot_call(node, "POST", path, NULL, 200);
    assert_string_equal(ot_str(task, "status"), "cancelled");
    json_decref(task);
    //  The agent is free at once: the next task does not wait out the
    //  4 s step (the echo agent drops a cancelled step's answer).
    int64_t started = zclock_mono();
    int64_t next = ot_task(node, "{\"title\":\"next\",\"assignee\":{\"agent\":\"busy\"}}");
    json_decref(ot_wait_status(node, next, "in_progress", 2000));
    assert_true(zclock_mono() - started < 2000);
    task = ot_get_task(node, id);
    assert_string_equal(ot_str(task, "status"), "cancelled");
    assert_true(json_is_null(json_object_get(task, "output")));
    json_decref(task);
    ot_history_is(node, id, "created:>busy,assigned:>busy,started:>busy,cancelled:busy>");
    //  A cancelled task's retry runs it again.
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/cancel", (long long)next);
    json_decref(ot_call(node, "POST", path, NULL, 200));
    json_decref(
        ot_call(node, "PATCH", "/api/v1/agents/busy", "{\"config\":{\"sleep_ms\":0}}", 200));
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/retry", (long long)id);
    json_decref(ot_call(node, "POST", path, NULL, 200));
    json_decref(ot_wait_status(node, id, "done", 5000));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_orch_retry_then_success, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_retries_exhausted_fail_the_task, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_step_timeout_is_a_failed_attempt, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_not_retryable_fails_at_once, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_cancel_stops_a_running_task, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
