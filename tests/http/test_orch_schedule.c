/* label: integration */
/*  test_orch_schedule: the scheduler in a real node, over HTTP/2: an
    interval schedule fires every interval (first one interval after its
    creation) and its tasks run through the orchestrator; a cron schedule
    fires when due and moves to its next minute; after downtime a missed
    firing runs once with catch_up "once" and not at all with "skip",
    never once per missed period. */
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
    if (node) {
        ot_agent(node, "tick", "echo", NULL, 4, NULL);
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

#define S_TASK                                                                                     \
    "\"task\":{\"title\":\"scheduled\",\"assignee\":{\"agent\":\"tick\"},\"input\":\"s\"}"

static int64_t
s_count(const tn_node_t *node, const char *fmt, int64_t id)
{
    char *v = ot_sql(node, fmt, (long long)id);
    int64_t n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

//  Tasks a schedule created so far (its schedule.fired events).
static int64_t
s_fired(const tn_node_t *node, int64_t schedule)
{
    return s_count(node,
                   "SELECT count(*) FROM events WHERE type = 'schedule.fired'"
                   " AND (data ->> 'schedule_id')::bigint = %lld",
                   schedule);
}

static void
test_orch_schedule_interval_fires_and_runs(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t created = zclock_mono();
    int64_t id = ot_create(node, "/api/v1/schedules",
                           "{\"name\":\"every second\",\"interval_s\":1," S_TASK "}");
    //  Nothing before one interval ...
    zclock_sleep(600);
    assert_int_equal(s_fired(node, id), 0);
    //  ... then one per interval.
    int64_t deadline = created + 5000;
    while (s_fired(node, id) < 2 && zclock_mono() < deadline) {
        zclock_sleep(50);
    }
    int64_t fired = s_fired(node, id);
    assert_true(fired >= 2 && fired <= 5);
    //  Their tasks ran.
    char *first =
        ot_sql(node, "SELECT task_id FROM events WHERE type = 'schedule.fired' ORDER BY id"
                     " LIMIT 1");
    json_t *task = ot_wait_status(node, strtoll(first, NULL, 10), "done", 5000);
    ot_json_is(json_object_get(task, "output"), "{\"echo\":\"s\"}");
    json_decref(task);
    free(first);
    char path[64];
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", (long long)id);
    json_t *s = ot_call(node, "GET", path, NULL, 200);
    assert_non_null(json_string_value(json_object_get(s, "last_run_at")));
    json_decref(s);
    //  Disabled: it stops.
    json_decref(ot_call(node, "PATCH", path, "{\"enabled\":false}", 200));
    zclock_sleep(200);
    fired = s_fired(node, id);
    zclock_sleep(1500);
    assert_int_equal(s_fired(node, id), fired);
}

static void
test_orch_schedule_cron_fires_and_moves_to_its_next_minute(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    //  A minute that turns during the test may fire it once more, rightly.
    int64_t minute = (int64_t)time(NULL) / 60;
    int64_t id = ot_create(node, "/api/v1/schedules",
                           "{\"name\":\"minutely\",\"cron\":\"* * * * *\"," S_TASK "}");
    //  Due now (rather than waiting up to a minute for it).
    char *ok = ot_sql(node,
                      "UPDATE scheduled_tasks SET next_run_at = now() WHERE id = %lld"
                      " RETURNING 1",
                      (long long)id);
    free(ok);
    int64_t deadline = zclock_mono() + 3000;
    while (s_fired(node, id) < 1 && zclock_mono() < deadline) {
        zclock_sleep(20);
    }
    bool turned = (int64_t)time(NULL) / 60 != minute;
    assert_true(s_fired(node, id) == 1 || (turned && s_fired(node, id) == 2));
    //  Next: a whole minute, within the coming minute.
    assert_int_equal(s_count(node,
                             "SELECT count(*) FROM scheduled_tasks WHERE id = %lld"
                             " AND next_run_at > now() AND next_run_at <= now() + interval"
                             " '60 seconds' AND extract(second FROM next_run_at) = 0",
                             id),
                     1);
    zclock_sleep(300);
    turned = (int64_t)time(NULL) / 60 != minute;
    assert_true(s_fired(node, id) == 1 || (turned && s_fired(node, id) == 2));
}

static void
test_orch_schedule_missed_firings_after_downtime(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    int64_t once =
        ot_create(node, "/api/v1/schedules",
                  "{\"name\":\"once\",\"interval_s\":60,\"catch_up\":\"once\"," S_TASK "}");
    int64_t skip =
        ot_create(node, "/api/v1/schedules",
                  "{\"name\":\"skip\",\"interval_s\":60,\"catch_up\":\"skip\"," S_TASK "}");
    //  Down for ten periods and a half.
    cd_node_stop(&node->node);
    char *ok = ot_sql(node, "UPDATE scheduled_tasks SET next_run_at = now() - interval '630 s'"
                            " RETURNING 1");
    free(ok);
    assert_int_equal(ot_restart(node), 0);
    int64_t deadline = zclock_mono() + 3000;
    while (s_fired(node, once) < 1 && zclock_mono() < deadline) {
        zclock_sleep(20);
    }
    zclock_sleep(500);
    assert_int_equal(s_fired(node, once), 1);
    assert_int_equal(s_fired(node, skip), 0);
    //  Both wait for their next time on their beat, after now.
    assert_int_equal(ot_sql_int(node, "SELECT count(*) FROM scheduled_tasks WHERE next_run_at >"
                                      " now() AND next_run_at <= now() + interval '60 s'"),
                     2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_orch_schedule_interval_fires_and_runs, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_schedule_cron_fires_and_moves_to_its_next_minute,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_orch_schedule_missed_firings_after_downtime, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
