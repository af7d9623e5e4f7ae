/* label: integration */
/*  test_orch_hitl: human in the loop through the orchestrator, over
    HTTP/2 against a real node: an agent's question makes the task wait
    (waiting_human, a pending request) and the answer resumes the same
    stage of a pipeline; the wait survives a node restart; deadlines with
    on_timeout deny, approve and fail; a deadline that passed while the
    node was down is applied when it comes back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cd_db.h"
#include "cd_q.h"
#include "cd_q_hitl.h"
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

//  The pending request of task id (asserts there is exactly one).
static int64_t
s_pending(const tn_node_t *node, int64_t id)
{
    json_t *list = ot_call(node, "GET", "/api/v1/hitl?status=pending", NULL, 200);
    json_t *items = json_object_get(list, "items");
    int64_t found = 0;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (ot_int(item, "task_id") == id) {
            assert_int_equal(found, 0);
            found = ot_int(item, "id");
        }
    }
    json_decref(list);
    assert_true(found > 0);
    return found;
}

static void
s_respond(const tn_node_t *node, int64_t hitl, const char *body)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", (long long)hitl);
    json_decref(ot_call(node, "POST", path, body, 200));
}

static void
test_orch_hitl_round_trip_resumes_the_stage(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t roles[2] = {ot_role(node, "drafter"), ot_role(node, "approver")};
    ot_agent(node, "d1", "echo", "drafter", 1, NULL);
    ot_agent(node, "a1", "echo", "approver", 1,
             "{\"ask_human\":{\"question\":\"Ship it?\",\"options\":[\"yes\",\"no\"]}}");
    const char *members[] = {"d1", "a1"};
    int64_t team = ot_team(node, "review", roles, members, 2);
    char body[256];
    snprintf(body, sizeof body, "{\"title\":\"t\",\"assignee\":{\"team\":%lld},\"input\":\"X\"}",
             (long long)team);
    int64_t id = ot_task(node, body);
    json_decref(ot_wait_status(node, id, "waiting_human", 10000));
    int64_t hitl = s_pending(node, id);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/hitl/%lld", (long long)hitl);
    json_t *req = ot_call(node, "GET", path, NULL, 200);
    assert_string_equal(ot_str(req, "question"), "Ship it?");
    assert_string_equal(ot_str(req, "agent"), "a1");
    assert_string_equal(ot_str(req, "on_timeout"), "deny");
    ot_json_is(json_object_get(req, "options"), "[\"yes\",\"no\"]");
    json_decref(req);
    //  Nothing runs meanwhile: the task has no lease.
    char *lease = ot_sql(node, "SELECT (lease_owner IS NULL)::text FROM tasks WHERE id = %lld",
                         (long long)id);
    assert_string_equal(lease, "true");
    free(lease);
    s_respond(node, hitl, "{\"response\":\"yes\",\"approved\":true}");
    json_t *task = ot_wait_status(node, id, "done", 10000);
    //  The approver's stage ran again with the answer: its input is the
    //  drafter's output.
    ot_json_is(json_object_get(task, "output"), "{\"echo\":{\"echo\":\"X\"},\"human\":\"yes\"}");
    assert_int_equal(ot_int(task, "attempts"), 1);
    json_decref(task);
    ot_history_is(node, id,
                  "created:>,assigned:>d1,started:>d1,output:d1>,handoff:d1>a1,"
                  "hitl_requested:a1>,hitl_answered:>a1,output:a1>,completed:a1>");
    char *events = ot_sql(node,
                          "SELECT string_agg(type, ',' ORDER BY id) FROM events"
                          " WHERE task_id = %lld",
                          (long long)id);
    assert_string_equal(events, "task.created,task.started,task.handoff,hitl.requested,"
                                "hitl.answered,task.completed");
    free(events);
    //  Answered once: again is 409.
    snprintf(path, sizeof path, "/api/v1/hitl/%lld/respond", (long long)hitl);
    json_decref(ot_call(node, "POST", path, "{\"response\":\"again\"}", 409));
}

static void
test_orch_hitl_wait_survives_a_restart(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "asker", "echo", NULL, 1, "{\"ask_human\":\"Proceed?\"}");
    int64_t id = ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"asker\"},\"input\":1}");
    json_decref(ot_wait_status(node, id, "waiting_human", 10000));
    assert_int_equal(ot_restart(node), 0);
    //  Still waiting (nothing was running it), and the request is there.
    zclock_sleep(300);
    json_decref(ot_wait_status(node, id, "waiting_human", 100));
    int64_t hitl = s_pending(node, id);
    s_respond(node, hitl, "{\"response\":{\"ok\":true}}");
    json_t *task = ot_wait_status(node, id, "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":1,\"human\":{\"ok\":true}}");
    json_decref(task);
}

static void
test_orch_hitl_deadlines_apply_their_policy(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    const char *policies[] = {"deny", "approve", "fail"};
    int64_t ids[3];
    for (int i = 0; i < 3; i++) {
        char name[32], config[256], body[256];
        snprintf(name, sizeof name, "ask-%s", policies[i]);
        snprintf(config, sizeof config,
                 "{\"ask_human\":{\"question\":\"q\",\"timeout_s\":1,\"on_timeout\":\"%s\"}}",
                 policies[i]);
        ot_agent(node, name, "echo", NULL, 1, config);
        snprintf(body, sizeof body,
                 "{\"title\":\"t\",\"assignee\":{\"agent\":\"%s\"},\"input\":%d}", name, i);
        ids[i] = ot_task(node, body);
    }
    json_t *task = ot_wait_status(node, ids[0], "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"approved\":false,\"echo\":0}");
    json_decref(task);
    task = ot_wait_status(node, ids[1], "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":1}");
    json_decref(task);
    task = ot_wait_status(node, ids[2], "failed", 10000);
    assert_string_equal(ot_str(json_object_get(task, "error"), "code"), "hitl_expired");
    json_decref(task);
    ot_history_is(node, ids[0],
                  "created:>ask-deny,assigned:>ask-deny,started:>ask-deny,hitl_requested:ask-deny>,"
                  "hitl_expired:>ask-deny,output:ask-deny>,completed:ask-deny>");
    ot_history_is(node, ids[2],
                  "created:>ask-fail,assigned:>ask-fail,started:>ask-fail,hitl_requested:ask-fail>,"
                  "hitl_expired:>ask-fail,failed:>");
    char *statuses = ot_sql(node, "SELECT string_agg(status, ',' ORDER BY id) FROM hitl_requests");
    assert_string_equal(statuses, "expired,expired,expired");
    free(statuses);
    assert_int_equal(ot_sql_int(node, "SELECT count(*) FROM events WHERE type = 'hitl.expired'"),
                     3);
}

static void
test_orch_hitl_deadline_passed_while_down(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "patient", "echo", NULL, 1,
             "{\"ask_human\":{\"question\":\"q\",\"timeout_s\":1,\"on_timeout\":\"approve\"}}");
    int64_t id =
        ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"patient\"},\"input\":5}");
    json_decref(ot_wait_status(node, id, "waiting_human", 10000));
    //  The node goes down before the deadline and comes back after it.
    cd_node_stop(&node->node);
    zclock_sleep(1500);
    char *pending = ot_sql(node, "SELECT status FROM hitl_requests");
    assert_string_equal(pending, "pending");
    free(pending);
    assert_int_equal(ot_restart(node), 0);
    json_t *task = ot_wait_status(node, id, "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":5}");
    json_decref(task);
}

static void
test_orch_hitl_answer_before_a_crash_is_not_asked_again(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "asker", "echo", NULL, 1, "{\"ask_human\":\"Proceed?\"}");
    int64_t id = ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"asker\"},\"input\":2}");
    json_decref(ot_wait_status(node, id, "waiting_human", 10000));
    int64_t hitl = s_pending(node, id);
    //  The answer commits (the task back in progress, leased to this node)
    //  and the node dies before it resumes the task: answered here with
    //  the very statement the API runs, while the node is down.
    char node_id[64];
    snprintf(node_id, sizeof node_id, "%s", cd_node_id(node->node));
    cd_node_stop(&node->node);
    cd_db_t *db = NULL;
    assert_int_equal(cd_db_connect(node->conninfo, &db, NULL), 0);
    char *row = NULL;
    assert_int_equal(cd_q_hitl_respond(db, hitl, "\"go\"", 1, CD_Q_NULL, node_id, &row), 0);
    free(row);
    cd_db_close(&db);
    assert_int_equal(ot_restart(node), 0);
    json_t *task = ot_wait_status(node, id, "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":2,\"human\":\"go\"}");
    json_decref(task);
    //  Taken back at the start (the attempt counted), resumed with the
    //  answer: one question only.
    assert_int_equal(ot_sql_int(node, "SELECT count(*) FROM hitl_requests"), 1);
    ot_history_is(node, id,
                  "created:>asker,assigned:>asker,started:>asker,hitl_requested:asker>,"
                  "hitl_answered:>asker,retry:asker>,assigned:>asker,started:>asker,output:asker>,"
                  "completed:asker>");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_orch_hitl_round_trip_resumes_the_stage, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_hitl_wait_survives_a_restart, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_hitl_deadlines_apply_their_policy, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_hitl_deadline_passed_while_down, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_hitl_answer_before_a_crash_is_not_asked_again,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
