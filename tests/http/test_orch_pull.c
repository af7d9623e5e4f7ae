/* label: integration */
/*  test_orch_pull: the pull API for HTTP workers of `remote` agents, over
    HTTP/2 against a real node: POST /api/v1/agents/{name}/next claims
    steps up to the agent's concurrency (a further poll waits and gets
    204), a waiting poll is woken by a new task, and POST
    /api/v1/tasks/{id}/complete answers a step with an output, an error or
    a question (then the answer resumes the step at the worker); an answer
    to a step that is not in flight is 409, a late one after a timeout
    too; errors for agents that are not remote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "orchtest.h"

#include <pthread.h>

static int
s_setup(void **state)
{
    tn_node_t *node = ot_start();
    *state = node;
    if (node) {
        ot_agent(node, "worker", "remote", NULL, 2, NULL);
    }
    return node ? 0 : -1;
}

static int
s_teardown(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_stop(&node);
    return 0;
}

typedef struct {
    const tn_node_t *node;
    const char *path;
    long status;
    json_t *json;
    int64_t took_ms;
} s_poll_t;

static void *
s_poll_thread(void *arg)
{
    s_poll_t *poll = (s_poll_t *)arg;
    int64_t started = zclock_mono();
    tn_resp_t r;
    poll->status = tn_call(poll->node, &r, "POST", poll->path, NULL);
    poll->json = r.json ? json_incref(r.json) : NULL;
    tn_resp_free(&r);
    poll->took_ms = zclock_mono() - started;
    return NULL;
}

//  Completes task id's step with body fields (JSON members text), want
//  status; returns the answer.
static json_t *
s_complete(const tn_node_t *node, int64_t id, const char *step, const char *fields, long want)
{
    char path[96], body[1024];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/complete", (long long)id);
    snprintf(body, sizeof body, "{\"step\":\"%s\",%s}", step, fields);
    return ot_call(node, "POST", path, body, want);
}

static const char *
s_step_id(const json_t *task)
{
    return ot_str(json_object_get(task, "step"), "id");
}

static void
test_orch_pull_claims_up_to_concurrency_and_completes(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t ids[3];
    for (int i = 0; i < 3; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"title\":\"job %d\",\"assignee\":{\"agent\":\"worker\"},\"input\":{\"n\":%d},"
                 "\"priority\":%d}",
                 i, i, 9 - i);
        ids[i] = ot_task(node, body);
    }
    //  Three workers poll at once; the agent runs two steps at most.
    s_poll_t polls[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        polls[i] = (s_poll_t){.node = node, .path = "/api/v1/agents/worker/next?wait_ms=1500"};
        pthread_create(&threads[i], NULL, s_poll_thread, &polls[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
    }
    json_t *got[2] = {NULL, NULL};
    int n_got = 0, n_empty = 0;
    for (int i = 0; i < 3; i++) {
        if (polls[i].status == 200) {
            got[n_got++] = polls[i].json;
        } else {
            assert_int_equal(polls[i].status, 204);
            assert_true(polls[i].took_ms >= 1000);
            n_empty++;
        }
    }
    assert_int_equal(n_got, 2);
    assert_int_equal(n_empty, 1);
    //  The two best (priority 9 and 8), each with its step.
    int64_t a = ot_int(got[0], "id"), b = ot_int(got[1], "id");
    assert_true((a == ids[0] && b == ids[1]) || (a == ids[1] && b == ids[0]));
    json_t *first = a == ids[0] ? got[0] : got[1];
    json_t *second = a == ids[0] ? got[1] : got[0];
    json_t *step = json_object_get(first, "step");
    assert_int_equal(strlen(s_step_id(first)), 32);
    assert_int_equal(ot_int(step, "number"), 1);
    assert_string_equal(ot_str(step, "agent"), "worker");
    ot_json_is(json_object_get(step, "input"), "{\"n\":0}");
    ot_json_is(json_object_get(step, "original"), "{\"n\":0}");
    assert_non_null(json_string_value(json_object_get(step, "deadline")));
    assert_string_equal(ot_str(first, "status"), "in_progress");
    assert_int_equal(ot_int(first, "attempts"), 1);
    json_t *task = ot_get_task(node, ids[2]);
    assert_string_equal(ot_str(task, "status"), "todo");
    json_decref(task);
    //  An output completes the first.
    json_t *answer = s_complete(node, ids[0], s_step_id(first), "\"output\":{\"done\":true}", 200);
    assert_string_equal(ot_str(answer, "status"), "done");
    json_decref(answer);
    task = ot_get_task(node, ids[0]);
    assert_string_equal(ot_str(task, "status"), "done");
    ot_json_is(json_object_get(task, "output"), "{\"done\":true}");
    json_decref(task);
    ot_history_is(node, ids[0],
                  "created:>worker,assigned:>worker,started:>worker,output:worker>,"
                  "completed:worker>");
    //  Twice is 409; a step that is not the task's too; no such task 404.
    json_decref(s_complete(node, ids[0], s_step_id(first), "\"output\":1", 409));
    json_decref(s_complete(node, ids[1], s_step_id(first), "\"output\":1", 409));
    json_decref(s_complete(node, 999999, s_step_id(first), "\"output\":1", 404));
    //  Bad answers: none or two of output/error/hitl.
    char path[96];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/complete", (long long)ids[1]);
    json_decref(ot_call(node, "POST", path, "{\"step\":\"x\"}", 400));
    json_decref(ot_call(node, "POST", path, "{\"step\":\"x\",\"output\":1,\"error\":{}}", 400));
    //  A non-retryable error fails the second.
    answer = s_complete(node, ids[1], s_step_id(second),
                        "\"error\":{\"code\":\"bad_input\",\"message\":\"no\"}", 200);
    assert_string_equal(ot_str(answer, "status"), "failed");
    json_decref(answer);
    task = ot_get_task(node, ids[1]);
    assert_string_equal(ot_str(json_object_get(task, "error"), "code"), "bad_input");
    json_decref(task);
    json_decref(got[0]);
    json_decref(got[1]);
    //  A slot is free again: the third is handed out at once.
    json_t *third = ot_call(node, "POST", "/api/v1/agents/worker/next?wait_ms=2000", NULL, 200);
    assert_int_equal(ot_int(third, "id"), ids[2]);
    json_decref(third);
}

static void
test_orch_pull_long_poll_wakes_up_for_a_new_task(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    s_poll_t poll = {.node = node, .path = "/api/v1/agents/worker/next?wait_ms=10000"};
    pthread_t thread;
    pthread_create(&thread, NULL, s_poll_thread, &poll);
    zclock_sleep(300);
    int64_t id = ot_task(node, "{\"title\":\"late\",\"assignee\":{\"agent\":\"worker\"}}");
    pthread_join(thread, NULL);
    assert_int_equal(poll.status, 200);
    assert_int_equal(ot_int(poll.json, "id"), id);
    assert_true(poll.took_ms < 2000);
    json_decref(poll.json);
}

static void
test_orch_pull_question_and_timeout(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t id =
        ot_task(node, "{\"title\":\"ask\",\"assignee\":{\"agent\":\"worker\"},\"input\":\"i\"}");
    json_t *task = ot_call(node, "POST", "/api/v1/agents/worker/next?wait_ms=3000", NULL, 200);
    json_t *answer = s_complete(node, id, s_step_id(task), "\"hitl\":{\"question\":\"ok?\"}", 200);
    assert_string_equal(ot_str(answer, "status"), "waiting_human");
    json_decref(answer);
    json_decref(task);
    char *hitl = ot_sql(node, "SELECT id FROM hitl_requests WHERE task_id = %lld", (long long)id);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/hitl/%s/respond", hitl);
    free(hitl);
    json_decref(ot_call(node, "POST", path, "{\"response\":\"fine\"}", 200));
    //  The same step comes back to a worker, with the answer.
    task = ot_call(node, "POST", "/api/v1/agents/worker/next?wait_ms=3000", NULL, 200);
    json_t *step = json_object_get(task, "step");
    assert_string_equal(ot_str(json_object_get(step, "hitl"), "response"), "fine");
    ot_json_is(json_object_get(step, "input"), "\"i\"");
    json_decref(s_complete(node, id, s_step_id(task), "\"output\":\"ok\"", 200));
    json_decref(task);
    json_decref(ot_wait_status(node, id, "done", 3000));
    //  A step not answered within timeout_ms is retried; the late answer
    //  is refused.
    id = ot_task(node,
                 "{\"title\":\"slow\",\"assignee\":{\"agent\":\"worker\"},\"timeout_ms\":300}");
    task = ot_call(node, "POST", "/api/v1/agents/worker/next?wait_ms=3000", NULL, 200);
    char late[40];
    snprintf(late, sizeof late, "%s", s_step_id(task));
    json_decref(task);
    zclock_sleep(600);
    json_decref(s_complete(node, id, late, "\"output\":\"late\"", 409));
    task = ot_call(node, "POST", "/api/v1/agents/worker/next?wait_ms=3000", NULL, 200);
    assert_int_equal(ot_int(task, "id"), id);
    assert_int_equal(ot_int(task, "attempts"), 2);
    json_decref(s_complete(node, id, s_step_id(task), "\"output\":\"ok\"", 200));
    json_decref(task);
    task = ot_wait_status(node, id, "done", 3000);
    assert_int_equal(ot_int(task, "attempts"), 2);
    json_decref(task);
}

static void
test_orch_pull_only_for_remote_agents(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "local", "echo", NULL, 1, NULL);
    json_decref(ot_call(node, "POST", "/api/v1/agents/local/next", NULL, 404));
    json_decref(ot_call(node, "POST", "/api/v1/agents/nobody/next", NULL, 404));
    json_decref(ot_call(node, "POST", "/api/v1/agents/worker/next?wait_ms=30001", NULL, 400));
    //  Nothing to do: 204 after the wait.
    json_decref(ot_call(node, "POST", "/api/v1/agents/worker/next", NULL, 204));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_orch_pull_claims_up_to_concurrency_and_completes,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_pull_long_poll_wakes_up_for_a_new_task, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_pull_question_and_timeout, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_pull_only_for_remote_agents, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
