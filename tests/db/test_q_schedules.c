/* label: db */
/*  test_q_schedules: scheduled tasks (cd_q_schedules) against a real
    PostgreSQL: CRUD, due lists and one firing per due time. */
#include "cd_q_schedules.h"

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
    s_sqlstate(fx->db,
               cd_q_schedules_insert(fx->db, "{\"name\":\"nodue\",\"interval_s\":5," TASK "}", NULL,
                                     CD_Q_NULL, &out),
               "23514");
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
                                      "2030-01-01T00:10:00Z", &out));
    s = s_parse(out, true);
    assert_true(s_null(s, "interval_s"));
    assert_string_equal(s_str(s, "cron"), "*/10 * * * *");
    assert_string_equal(s_str(s, "name"), "ten");
    assert_string_equal(s_str(s, "next_run_at"), "2030-01-01T00:10:00.000000Z");
    json_decref(s);
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every, "{\"enabled\":false}", NULL, &out));
    s = s_parse(out, true);
    assert_false(json_is_true(json_object_get(s, "enabled")));
    assert_string_equal(s_str(s, "next_run_at"), "2030-01-01T00:10:00.000000Z");
    json_decref(s);
    s_ok(fx->db, cd_q_schedules_patch(fx->db, every,
                                      "{\"task\":{\"title\":\"t2\",\"assignee\":{\"role\":\"r\"}},"
                                      "\"catch_up\":\"once\"}",
                                      NULL, &out));
    s = s_parse(out, true);
    assert_string_equal(s_str(json_object_get(s, "task"), "title"), "t2");
    assert_string_equal(s_str(s, "catch_up"), "once");
    json_decref(s);
    s_sqlstate(fx->db, cd_q_schedules_patch(fx->db, every, "{\"interval_s\":5}", NULL, &out),
               "23514");
    s_sqlstate(fx->db, cd_q_schedules_patch(fx->db, cron, "{\"enabled\":true}", NULL, &out),
               "23514");
    assert_int_equal(cd_q_schedules_patch(fx->db, cron + 9, "{}", NULL, &out), CD_ENOTFOUND);

    s_ok(fx->db, cd_q_schedules_delete(fx->db, cron));
    assert_int_equal(cd_q_schedules_delete(fx->db, cron), CD_ENOTFOUND);
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_schedules_crud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_schedules_due_and_fire_once, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
