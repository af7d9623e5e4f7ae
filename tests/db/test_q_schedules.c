/* label: db */
/*  test_q_schedules: scheduled tasks (cd_q_schedules) against a real
    PostgreSQL: CRUD, due lists and one firing per due time. */
#include "cd_q_schedules.h"
#include "cd_q_tasks.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

#define TASK "\"task\":{\"title\":\"nightly\",\"assignee\":{\"agent\":\"a\"},\"input\":{\"n\":1}}"

static void
test_q_schedules_crud(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    char *out = NULL;
    s_ok(fx->db, cd_q_schedules_insert(fx->db, "{\"name\":\"every5\",\"interval_s\":5," TASK "}",
                                       "2030-01-01T00:00:05Z", ann, &out));
    json_t *s = s_parse(out, true);
    int64_t every = s_int(s, "id");
    assert_int_equal(s_int(s, "interval_s"), 5);
    assert_true(s_null(s, "cron") && s_null(s, "last_run_at"));
    assert_true(json_is_true(json_object_get(s, "enabled")));
    assert_string_equal(s_str(s, "catch_up"), "skip");
    assert_string_equal(s_str(s, "next_run_at"), "2030-01-01T00:00:05.000000Z");
    assert_string_equal(s_str(json_object_get(s, "task"), "title"), "nightly");
    assert_int_equal(s_int(s, "created_by"), ann);
    json_decref(s);
    s_ok(fx->db, cd_q_schedules_insert(fx->db,
                                       "{\"name\":\"cron\",\"cron\":\"0 3 * * *\","
                                       "\"enabled\":false,\"catch_up\":\"once\"," TASK "}",
                                       NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    int64_t cron = s_int(s, "id");
    assert_true(s_null(s, "next_run_at"));
    json_decref(s);
    s_sqlstate(fx->db,
               cd_q_schedules_insert(fx->db,
                                     "{\"name\":\"both\",\"interval_s\":5,\"cron\":\"* * * "
                                     "* *\"," TASK "}",
                                     "2030-01-01T00:00:00Z", CD_Q_NULL, &out),
               "23514");
    s_sqlstate(fx->db,
               cd_q_schedules_insert(fx->db, "{\"name\":\"zero\",\"interval_s\":0," TASK "}",
                                     "2030-01-01T00:00:00Z", CD_Q_NULL, &out),
               "23514");
    //  No time given: an interval schedule is due one interval from now; a
    //  cron schedule needs its time from the caller.
    s_ok(fx->db, cd_q_schedules_insert(fx->db, "{\"name\":\"due\",\"interval_s\":5," TASK "}", NULL,
                                       CD_Q_NULL, &out));
    s = s_parse(out, true);
    int64_t due = s_int(s, "id");
    json_decref(s);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM scheduled_tasks WHERE name = 'due'"
                                     " AND next_run_at = created_at + interval '5 seconds'"),
                     1);
    s_sqlstate(fx->db,
               cd_q_schedules_insert(fx->db, "{\"name\":\"nodue\",\"cron\":\"* * * * *\"," TASK "}",
                                     NULL, CD_Q_NULL, &out),
               "23514");
    s_ok(fx->db, cd_q_schedules_delete(fx->db, due, CD_Q_NULL));
    s_sqlstate(fx->db,
               cd_q_schedules_insert(fx->db, "{\"name\":\"badtask\",\"interval_s\":5,\"task\":{}}",
                                     "2030-01-01T00:00:00Z", CD_Q_NULL, &out),
               "23514");

    s_ok(fx->db, cd_q_schedules_get(fx->db, cron, &out));
    free(out);
    assert_int_equal(cd_q_schedules_get(fx->db, cron + 9, &out), CD_ENOTFOUND);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_schedules_list(fx->db, CD_Q_NULL, NULL, 0, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 2);
    assert_int_equal(ids[0], cron);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_schedules_list(fx->db, ann, NULL, 0, &page));
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], every);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_schedules_list(fx->db, CD_Q_NULL, NULL, 1, &page));
    assert_non_null(page.next_cursor);
    cd_q_page_fini(&page);

    //  Switch from interval to cron: the other set to null, next time given.
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every,
                                      "{\"interval_s\":null,\"cron\":\"*/10 * * * *\","
                                      "\"name\":\"ten\"}",
                                      "2030-01-01T00:10:00Z", NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    assert_true(s_null(s, "interval_s"));
    assert_string_equal(s_str(s, "cron"), "*/10 * * * *");
    assert_string_equal(s_str(s, "name"), "ten");
    assert_string_equal(s_str(s, "next_run_at"), "2030-01-01T00:10:00.000000Z");
    char *updated = strdup(s_str(s, "updated_at"));
    json_decref(s);
    //  Another user's schedule: not found, unchanged.
    assert_int_equal(
        cd_q_schedules_patch(fx->db, every, "{\"name\":\"x\"}", NULL, NULL, ann + 1, &out),
        CD_ENOTFOUND);
    //  The trigger unchanged: the time given is ignored, the time kept.
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every, "{\"cron\":\"*/10 * * * *\"}",
                                      "2031-01-01T00:00:00Z", updated, ann, &out));
    s = s_parse(out, true);
    assert_string_equal(s_str(s, "next_run_at"), "2030-01-01T00:10:00.000000Z");
    json_decref(s);
    //  updated_at moved since `updated` was read: a conflict, nothing changes.
    assert_int_equal(
        cd_q_schedules_patch(fx->db, every, "{\"name\":\"stale\"}", NULL, updated, CD_Q_NULL, &out),
        CD_ESTATE);
    free(updated);
    s = s_parse(out, true);
    assert_string_equal(s_str(s, "name"), "ten");
    assert_true(json_is_true(json_object_get(s, "conflict")));
    json_decref(s);
    //  Disabled: no next time.
    s_ok(fx->db,
         cd_q_schedules_patch(fx->db, every, "{\"enabled\":false}", NULL, NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    assert_false(json_is_true(json_object_get(s, "enabled")));
    assert_true(s_null(s, "next_run_at"));
    json_decref(s);
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every,
                                      "{\"task\":{\"title\":\"t2\",\"assignee\":{\"role\":\"r\"}},"
                                      "\"catch_up\":\"once\"}",
                                      NULL, NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    assert_string_equal(s_str(json_object_get(s, "task"), "title"), "t2");
    assert_string_equal(s_str(s, "catch_up"), "once");
    assert_true(s_null(s, "next_run_at"));
    json_decref(s);
    //  Enabled again: the cron's next time, as given.
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every, "{\"enabled\":true}", "2032-01-01T00:00:00Z",
                                      NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    assert_string_equal(s_str(s, "next_run_at"), "2032-01-01T00:00:00.000000Z");
    json_decref(s);
    //  Back to an interval: due one interval from now.
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every, "{\"cron\":null,\"interval_s\":3600}", NULL,
                                      NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    assert_int_equal(s_int(s, "interval_s"), 3600);
    json_decref(s);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM scheduled_tasks"
                                     " WHERE next_run_at > now() + interval '3599 seconds'"
                                     " AND next_run_at <= now() + interval '3600 seconds'"),
                     1);
    //  A new cron clears the interval (and the other way round) ...
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every, "{\"cron\":\"0 0 * * *\"}",
                                      "2033-01-01T00:00:00Z", NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    assert_true(s_null(s, "interval_s"));
    assert_string_equal(s_str(s, "next_run_at"), "2033-01-01T00:00:00.000000Z");
    json_decref(s);
    s_ok(fx->db,
         cd_q_schedules_patch(fx->db, every, "{\"interval_s\":60}", NULL, NULL, CD_Q_NULL, &out));
    s = s_parse(out, true);
    assert_true(s_null(s, "cron"));
    assert_int_equal(s_int(s, "interval_s"), 60);
    json_decref(s);
    //  ... but both at once are refused.
    s_sqlstate(fx->db,
               cd_q_schedules_patch(fx->db, every, "{\"cron\":\"* * * * *\",\"interval_s\":5}",
                                    "2030-01-01T00:00:00Z", NULL, CD_Q_NULL, &out),
               "23514");
    s_sqlstate(
        fx->db,
        cd_q_schedules_patch(fx->db, cron, "{\"enabled\":true}", NULL, NULL, CD_Q_NULL, &out),
        "23514");
    assert_int_equal(cd_q_schedules_patch(fx->db, cron + 99, "{}", NULL, NULL, CD_Q_NULL, &out),
                     CD_ENOTFOUND);

    assert_int_equal(cd_q_schedules_delete(fx->db, every, ann + 1), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_schedules_delete(fx->db, every, ann));
    s_ok(fx->db, cd_q_schedules_delete(fx->db, cron, CD_Q_NULL));
    assert_int_equal(cd_q_schedules_delete(fx->db, cron, CD_Q_NULL), CD_ENOTFOUND);
}

static void
test_q_schedules_due_and_fire_once(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_ok(fx->db, cd_q_schedules_insert(fx->db, "{\"name\":\"late\",\"interval_s\":60," TASK "}",
                                       "2000-01-01T00:01:00Z", CD_Q_NULL, &out));
    free(out);
    s_ok(fx->db, cd_q_schedules_insert(fx->db, "{\"name\":\"early\",\"interval_s\":60," TASK "}",
                                       "2000-01-01T00:00:00Z", CD_Q_NULL, &out));
    json_t *s = s_parse(out, true);
    int64_t early = s_int(s, "id");
    json_decref(s);
    s_ok(fx->db, cd_q_schedules_insert(fx->db, "{\"name\":\"future\",\"interval_s\":60," TASK "}",
                                       "2999-01-01T00:00:00Z", CD_Q_NULL, &out));
    free(out);
    s_ok(fx->db, cd_q_schedules_insert(
                     fx->db, "{\"name\":\"off\",\"interval_s\":60,\"enabled\":false," TASK "}",
                     "2000-01-01T00:00:00Z", CD_Q_NULL, &out));
    free(out);

    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_schedules_due(fx->db, 0, &page));
    assert_int_equal(page.count, 2);
    json_t *first = s_page_item(&page, 0);
    assert_int_equal(s_int(first, "id"), early);
    char *expected = strdup(s_str(first, "next_run_at"));
    json_decref(first);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_schedules_due(fx->db, 1, &page));
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);

    //  Two schedulers race for one firing: one wins, the other sees the
    //  moved time.
    s_ok(fx->db, cd_q_schedules_mark_fired(fx->db, early, expected, "2999-06-01T00:00:00Z", &out));
    s = s_parse(out, true);
    assert_non_null(s_str(s, "last_run_at"));
    assert_string_equal(s_str(s, "next_run_at"), "2999-06-01T00:00:00.000000Z");
    json_decref(s);
    assert_int_equal(
        cd_q_schedules_mark_fired(fx->db, early, expected, "2999-06-01T00:00:00Z", &out),
        CD_ESTATE);
    free(out);
    assert_int_equal(
        cd_q_schedules_mark_fired(fx->db, early + 99, expected, "2999-06-01T00:00:00Z", &out),
        CD_ENOTFOUND);
    free(expected);
    s_ok(fx->db, cd_q_schedules_due(fx->db, 0, &page));
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);
}

//  One text value of SQL, freed by the caller.
static char *
s_text(cd_db_t *db, const char *sql)
{
    char *out = NULL;
    s_ok(db, cd_db_query_text(db, sql, 0, NULL, &out));
    return out;
}

static void
test_q_schedules_run_creates_the_task(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    int64_t project = s_project(fx->db);
    char body[512];
    snprintf(body, sizeof body,
             "{\"name\":\"nightly\",\"interval_s\":86400,\"enabled\":false,\"task\":{\"title\":"
             "\"report\",\"description\":\"d\",\"priority\":7,\"project_id\":%lld,\"assignee\":"
             "{\"role\":\"writer\"},\"input\":{\"n\":1}}}",
             (long long)project);
    char *out = NULL;
    s_ok(fx->db, cd_q_schedules_insert(fx->db, body, NULL, ann, &out));
    json_t *s = s_parse(out, true);
    int64_t id = s_int(s, "id");
    json_decref(s);

    assert_int_equal(cd_q_schedules_run(fx->db, id, ann + 1, &out), CD_ENOTFOUND);
    assert_int_equal(cd_q_schedules_run(fx->db, id + 99, CD_Q_NULL, &out), CD_ENOTFOUND);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 0);

    //  Fired by hand although disabled.
    s_ok(fx->db, cd_q_schedules_run(fx->db, id, ann, &out));
    json_t *t = s_parse(out, true);
    int64_t task = s_int(t, "id");
    assert_string_equal(s_str(t, "title"), "report");
    assert_string_equal(s_str(t, "description"), "d");
    assert_string_equal(s_str(t, "status"), "todo");
    assert_int_equal(s_int(t, "priority"), 7);
    assert_int_equal(s_int(t, "project_id"), project);
    assert_string_equal(s_str(json_object_get(t, "assignee"), "role"), "writer");
    assert_int_equal(s_int(json_object_get(t, "input"), "n"), 1);
    assert_int_equal(s_int(t, "created_by"), ann);
    assert_int_equal(s_int(t, "max_attempts"), 3);
    //  The very object cd_q_tasks gives (TASK_JSON is a copy).
    s_ok(fx->db, cd_q_tasks_get(fx->db, task, &out));
    json_t *got = s_parse(out, true);
    assert_true(json_equal(t, got));
    json_decref(got);
    json_decref(t);
    char sql[256];

    snprintf(sql, sizeof sql,
             "SELECT kind || ' ' || status || ' ' || seq || ' ' || (payload ->> 'schedule_id')"
             " FROM task_events WHERE task_id = %lld",
             (long long)task);
    char *history = s_text(fx->db, sql);
    char want[64];
    snprintf(want, sizeof want, "created todo 1 %lld", (long long)id);
    assert_string_equal(history, want);
    free(history);
    char *events = s_text(fx->db, "SELECT string_agg(type || ':' || task_id || ':' || project_id,"
                                  " ',' ORDER BY id) FROM events");
    snprintf(want, sizeof want, "task.created:%lld:%lld,schedule.fired:%lld:%lld", (long long)task,
             (long long)project, (long long)task, (long long)project);
    assert_string_equal(events, want);
    free(events);
    char *fired = s_text(fx->db, "SELECT data ->> 'schedule_id' FROM events"
                                 " WHERE type = 'schedule.fired'");
    snprintf(want, sizeof want, "%lld", (long long)id);
    assert_string_equal(fired, want);
    free(fired);
    char *task_data = s_text(fx->db, "SELECT data ->> 'title' FROM events"
                                     " WHERE type = 'task.created'");
    assert_string_equal(task_data, "report");
    free(task_data);
    s_ok(fx->db, cd_q_schedules_get(fx->db, id, &out));
    s = s_parse(out, true);
    assert_non_null(s_str(s, "last_run_at"));
    assert_true(s_null(s, "next_run_at")); //  a firing by hand moves no schedule
    json_decref(s);

    //  The template's project is gone: 23503, and nothing is written.
    snprintf(sql, sizeof sql,
             "DELETE FROM task_events; DELETE FROM tasks;"
             " DELETE FROM projects WHERE id = %lld",
             (long long)project);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    s_sqlstate(fx->db, cd_q_schedules_run(fx->db, id, CD_Q_NULL, &out), "23503");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events"), 2);

    assert_int_equal(cd_q_schedules_n_writes, 5);
}

//  The scheduler's firing: the task with its history and events, the next
//  time on the interval's beat however late, once; a skipped firing moves
//  the time and creates nothing; a cron schedule takes the given time.
static void
test_q_schedules_fire_keeps_the_beat_and_fires_once(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    //  Due 10.5 periods ago.
    s_ok(fx->db, cd_q_schedules_insert(fx->db, "{\"name\":\"beat\",\"interval_s\":60," TASK "}",
                                       NULL, CD_Q_NULL, &out));
    json_t *s = s_parse(out, true);
    int64_t id = s_int(s, "id");
    json_decref(s);
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE scheduled_tasks SET next_run_at = date_trunc('second', now())"
             " - interval '630 seconds' WHERE id = %lld",
             (long long)id);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    s_ok(fx->db, cd_q_schedules_get(fx->db, id, &out));
    s = s_parse(out, true);
    char *due = strdup(s_str(s, "next_run_at"));
    json_decref(s);
    s_ok(fx->db, cd_q_schedules_fire(fx->db, id, due, NULL, true, &out));
    s = s_parse(out, true);
    json_t *task = json_object_get(s, "task");
    assert_true(json_is_object(task));
    assert_string_equal(s_str(task, "status"), "todo");
    json_decref(s);
    //  Once: the same firing again finds the schedule moved.
    assert_int_equal(cd_q_schedules_fire(fx->db, id, due, NULL, true, &out), CD_ENOTFOUND);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events WHERE type = 'schedule.fired'"),
                     1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events WHERE kind = 'created'"
                                     " AND seq = 1"),
                     1);
    //  On the beat: 11 periods after the missed time, in the future.
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM scheduled_tasks WHERE id = %lld AND next_run_at > now()"
             " AND next_run_at <= now() + interval '60 seconds' AND extract(epoch FROM"
             " next_run_at - '%s'::timestamptz)::int %% 60 = 0 AND last_run_at IS NOT NULL",
             (long long)id, due);
    assert_int_equal(s_count(fx->db, sql), 1);
    free(due);
    //  A skipped firing: no task, the time moves.
    snprintf(sql, sizeof sql,
             "UPDATE scheduled_tasks SET next_run_at = '2000-01-01T00:00:00Z' WHERE id = %lld",
             (long long)id);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    s_ok(fx->db, cd_q_schedules_fire(fx->db, id, "2000-01-01T00:00:00Z", NULL, false, &out));
    s = s_parse(out, true);
    assert_true(json_is_null(json_object_get(s, "task")));
    json_decref(s);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 1);
    //  A cron schedule's next time is the caller's.
    s_ok(fx->db, cd_q_schedules_insert(fx->db, "{\"name\":\"c\",\"cron\":\"0 * * * *\"," TASK "}",
                                       "2000-01-01T00:00:00Z", CD_Q_NULL, &out));
    s = s_parse(out, true);
    int64_t cron = s_int(s, "id");
    json_decref(s);
    s_ok(fx->db, cd_q_schedules_fire(fx->db, cron, "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z",
                                     true, &out));
    s = s_parse(out, true);
    assert_string_equal(s_str(s, "next_run_at"), "2999-01-01T00:00:00.000000Z");
    json_decref(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_schedules_crud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_schedules_due_and_fire_once, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_schedules_run_creates_the_task, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_schedules_fire_keeps_the_beat_and_fires_once,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
