/* label: integration */
/*  test_orch_pipeline: tasks run through agents, over HTTP/2 against a
    real node on a real PostgreSQL: a three-role team pipeline completes
    with the right output, history and events; a result's handoff_to;
    role routing balances across two agents; priority order holds under
    load (9 before 0, then oldest first) with one slot. */
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

static void
test_orch_team_pipeline_completes_with_its_history(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    const char *names[] = {"writer", "editor", "checker"};
    int64_t roles[3];
    for (int i = 0; i < 3; i++) {
        roles[i] = ot_role(node, names[i]);
    }
    const char *members[] = {"w1", "e1", "c1"};
    for (int i = 0; i < 3; i++) {
        ot_agent(node, members[i], "echo", names[i], 2, NULL);
    }
    int64_t team = ot_team(node, "crew", roles, members, 3);
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"three stages\",\"assignee\":{\"team\":%lld},\"input\":\"X\"}",
             (long long)team);
    int64_t id = ot_task(node, body);
    json_t *task = ot_wait_status(node, id, "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":{\"echo\":{\"echo\":\"X\"}}}");
    ot_json_is(json_object_get(task, "input"), "\"X\"");
    assert_int_equal(ot_int(task, "attempts"), 1);
    assert_string_equal(ot_str(task, "agent"), "c1");
    assert_non_null(json_string_value(json_object_get(task, "finished_at")));
    json_decref(task);
    ot_history_is(node, id,
                  "created:>,assigned:>w1,started:>w1,output:w1>,handoff:w1>e1,output:e1>,"
                  "handoff:e1>c1,output:c1>,completed:c1>");
    //  Each stage got the previous output: the handoff carries it.
    char *handoffs = ot_sql(node,
                            "SELECT string_agg((payload ->> 'stage') || '=' ||"
                            " (payload -> 'input')::text, ' ' ORDER BY seq) FROM task_events"
                            " WHERE task_id = %lld AND kind = 'handoff'",
                            (long long)id);
    assert_string_equal(handoffs, "1={\"echo\": \"X\"} 2={\"echo\": {\"echo\": \"X\"}}");
    free(handoffs);
    //  The same history over the API, and the events in order.
    char path[96];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/history", (long long)id);
    json_t *history = ot_call(node, "GET", path, NULL, 200);
    json_t *items = json_object_get(history, "items");
    assert_int_equal(json_array_size(items), 9);
    assert_string_equal(ot_str(json_array_get(items, 8), "kind"), "completed");
    assert_string_equal(ot_str(json_array_get(items, 8), "status"), "done");
    json_decref(history);
    char *events = ot_sql(node,
                          "SELECT string_agg(type || '/' || coalesce(agent, ''), ',' ORDER BY id)"
                          " FROM events WHERE task_id = %lld",
                          (long long)id);
    assert_string_equal(events, "task.created/,task.started/w1,task.handoff/e1,task.handoff/c1,"
                                "task.completed/c1");
    free(events);
    char *completed = ot_sql(node,
                             "SELECT data::text FROM events WHERE task_id = %lld"
                             " AND type = 'task.completed'",
                             (long long)id);
    assert_string_equal(
        completed, "{\"agent\": \"c1\", \"output\": {\"echo\": {\"echo\": {\"echo\": \"X\"}}}}");
    free(completed);
}

static void
test_orch_handoff_to_sends_the_output_on(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "last", "echo", NULL, 1, NULL);
    ot_agent(node, "first", "echo", NULL, 1, "{\"handoff_to\":\"last\"}");
    int64_t id = ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"first\"},\"input\":7}");
    json_t *task = ot_wait_status(node, id, "done", 10000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":{\"echo\":7}}");
    json_decref(task);
    ot_history_is(node, id,
                  "created:>first,assigned:>first,started:>first,output:first>,"
                  "handoff:first>last,output:last>,completed:last>");
}

static void
test_orch_role_routing_balances_two_agents(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    ot_agent(node, "r1", "echo", "reviewer", 1, "{\"sleep_ms\":40}");
    ot_agent(node, "r2", "echo", "reviewer", 1, "{\"sleep_ms\":40}");
    int64_t ids[12];
    for (int i = 0; i < 12; i++) {
        ids[i] =
            ot_task(node, "{\"title\":\"t\",\"assignee\":{\"role\":\"reviewer\"},\"input\":1}");
    }
    for (int i = 0; i < 12; i++) {
        json_decref(ot_wait_status(node, ids[i], "done", 15000));
    }
    int64_t by_r1 = ot_sql_int(node, "SELECT count(*) FROM tasks WHERE agent = 'r1'");
    int64_t by_r2 = ot_sql_int(node, "SELECT count(*) FROM tasks WHERE agent = 'r2'");
    assert_int_equal(by_r1 + by_r2, 12);
    //  Least-loaded routing with one slot each: they take turns.
    assert_true(by_r1 >= 4 && by_r2 >= 4);
}

static void
test_orch_priority_order_holds_under_load(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    //  The tasks wait (todo) for the role's only agent, which starts after
    //  them all; one slot makes the order of starts the order of claims.
    ot_role(node, "solo");
    const int n = 30;
    int64_t ids[30];
    int prio[30];
    for (int i = 0; i < n; i++) {
        prio[i] = (i * 7) % 10; //  0..9, mixed
        char body[160];
        snprintf(body, sizeof body,
                 "{\"title\":\"t%d\",\"priority\":%d,\"assignee\":{\"role\":\"solo\"}}", i,
                 prio[i]);
        ids[i] = ot_task(node, body);
    }
    zclock_sleep(200);
    assert_int_equal(ot_sql_int(node, "SELECT count(*) FROM tasks WHERE status = 'todo'"), n);
    ot_agent(node, "only", "echo", "solo", 1, "{\"sleep_ms\":5}");
    for (int i = 0; i < n; i++) {
        json_decref(ot_wait_status(node, ids[i], "done", 20000));
    }
    //  Started in order: priority 9 first, then oldest (lowest id).
    char *got = ot_sql(node, "SELECT string_agg(task_id::text, ',' ORDER BY id) FROM events"
                             " WHERE type = 'task.started'");
    char want[512] = "";
    size_t len = 0;
    for (int p = 9; p >= 0; p--) {
        for (int i = 0; i < n; i++) {
            if (prio[i] == p) {
                len += (size_t)snprintf(want + len, sizeof want - len, "%s%lld", len ? "," : "",
                                        (long long)ids[i]);
            }
        }
    }
    assert_string_equal(got, want);
    free(got);
}

static void
test_orch_long_step_keeps_its_lease(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    //  A step of 4 s under a lease of 3 s (OT_ENV): renewed every second,
    //  so the recovery pass (which takes back expired leases) leaves it.
    ot_agent(node, "steady", "echo", NULL, 1, "{\"sleep_ms\":4000}");
    int64_t id = ot_task(node, "{\"title\":\"t\",\"assignee\":{\"agent\":\"steady\"},\"input\":1}");
    json_decref(ot_wait_status(node, id, "in_progress", 5000));
    zclock_sleep(3500);
    char *lease = ot_sql(node,
                         "SELECT status || ' ' || (lease_expires_at > now() + interval '1 second')"
                         " FROM tasks WHERE id = %lld",
                         (long long)id);
    assert_string_equal(lease, "in_progress true");
    free(lease);
    json_t *task = ot_wait_status(node, id, "done", 5000);
    assert_int_equal(ot_int(task, "attempts"), 1);
    json_decref(task);
    ot_history_is(node, id,
                  "created:>steady,assigned:>steady,started:>steady,output:steady>,"
                  "completed:steady>");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_orch_team_pipeline_completes_with_its_history, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_handoff_to_sends_the_output_on, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_role_routing_balances_two_agents, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_priority_order_holds_under_load, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_long_step_keeps_its_lease, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
