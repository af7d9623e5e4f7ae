/* label: db */
/*  test_q_hitl: human-in-the-loop requests (cd_q_hitl) against a real
    PostgreSQL: open, list, answer once, expire at the deadline. */
#include "cd_q_hitl.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

static int64_t
s_hitl(cd_db_t *db, int64_t task, const char *json)
{
    char *out = NULL;
    s_ok(db, cd_q_hitl_insert(db, task, "coder", json, &out));
    json_t *h = s_parse(out, true);
    int64_t id = s_int(h, "id");
    json_decref(h);
    return id;
}

static void
test_q_hitl_lifecycle(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    int64_t project = s_project(fx->db);
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"coder\"}", project, ann);
    int64_t other = s_raw_task(fx->db, "{\"agent\":\"coder\"}", CD_Q_NULL, CD_Q_NULL);

    char *out = NULL;
    s_ok(fx->db, cd_q_hitl_insert(fx->db, task, "coder",
                                  "{\"question\":\"Deploy?\",\"options\":[\"yes\",\"no\"],"
                                  "\"timeout_s\":60,\"on_timeout\":\"approve\"}",
                                  &out));
    json_t *h = s_parse(out, true);
    int64_t id = s_int(h, "id");
    assert_int_equal(s_int(h, "task_id"), task);
    assert_int_equal(s_int(h, "project_id"), project); // copied from the task
    assert_string_equal(s_str(h, "agent"), "coder");
    assert_string_equal(s_str(h, "question"), "Deploy?");
    assert_int_equal(json_array_size(json_object_get(h, "options")), 2);
    assert_string_equal(s_str(h, "status"), "pending");
    assert_string_equal(s_str(h, "on_timeout"), "approve");
    assert_non_null(s_str(h, "deadline"));
    assert_true(s_null(h, "response") && s_null(h, "answered_at") && s_null(h, "approved"));
    json_decref(h);
    s_ok(fx->db, cd_q_hitl_insert(fx->db, other, NULL, "{\"question\":\"Why?\"}", &out));
    h = s_parse(out, true);
    int64_t plain = s_int(h, "id");
    assert_true(s_null(h, "deadline") && s_null(h, "options") && s_null(h, "project_id"));
    assert_string_equal(s_str(h, "on_timeout"), "deny");
    json_decref(h);
    assert_int_equal(cd_q_hitl_insert(fx->db, task + 99, NULL, "{\"question\":\"q\"}", &out),
                     CD_ENOTFOUND);
    s_sqlstate(fx->db, cd_q_hitl_insert(fx->db, task, NULL, "{\"question\":\"\"}", &out), "23514");
    s_sqlstate(
        fx->db,
        cd_q_hitl_insert(fx->db, task, NULL, "{\"question\":\"q\",\"on_timeout\":\"x\"}", &out),
        "23514");
    s_sqlstate(fx->db,
               cd_q_hitl_insert(fx->db, task, NULL, "{\"question\":\"q\",\"options\":{}}", &out),
               "23514");

    s_ok(fx->db, cd_q_hitl_get(fx->db, id, &out));
    free(out);
    assert_int_equal(cd_q_hitl_get(fx->db, id + 99, &out), CD_ENOTFOUND);

    //  Lists and filters.
    int64_t ids[8];
    cd_q_page_t page = {0};
    cd_q_hitl_filter_t f = CD_Q_HITL_FILTER_ALL;
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 8), 2);
    assert_int_equal(ids[0], plain);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.project_id = project;
    f.status = "pending";
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 8), 1);
    assert_int_equal(ids[0], id);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.created_by = ann;
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 8), 1);
    assert_int_equal(ids[0], id);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.task_id = other;
    f.limit = 1;
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(page.count, 1);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.limit = 1;
    f.cursor = "999999";
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_non_null(page.next_cursor);
    cd_q_page_fini(&page);

    //  Answered once; the second answer is a conflict.
    s_ok(fx->db, cd_q_hitl_respond(fx->db, id, "\"yes\"", 1, &out));
    h = s_parse(out, true);
    assert_string_equal(s_str(h, "status"), "answered");
    assert_string_equal(s_str(h, "response"), "yes");
    assert_true(json_is_true(json_object_get(h, "approved")));
    assert_non_null(s_str(h, "answered_at"));
    json_decref(h);
    assert_int_equal(cd_q_hitl_respond(fx->db, id, "\"no\"", 0, &out), CD_ESTATE);
    h = s_parse(out, true);
    assert_string_equal(s_str(h, "response"), "yes");
    json_decref(h);
    assert_int_equal(cd_q_hitl_respond(fx->db, id + 99, "1", -1, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_hitl_respond(fx->db, plain, "{\"because\":1}", -1, &out));
    h = s_parse(out, true);
    assert_true(s_null(h, "approved"));
    json_decref(h);
}

static void
test_q_hitl_expiry_and_cancel(void **state)
{
    fixture_t *fx = *state;
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"coder\"}", CD_Q_NULL, CD_Q_NULL);
    int64_t soon = s_hitl(fx->db, task,
                          "{\"question\":\"q1\",\"timeout_s\":0.05,"
                          "\"on_timeout\":\"fail\"}");
    int64_t later = s_hitl(fx->db, task, "{\"question\":\"q2\",\"timeout_s\":3600}");
    s_hitl(fx->db, task, "{\"question\":\"q3\"}");
    cd_q_page_t page = {0};
    s_sleep_ms(80);
    s_ok(fx->db, cd_q_hitl_expire_due(fx->db, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], soon);
    json_t *h = s_page_item(&page, 0);
    assert_string_equal(s_str(h, "status"), "expired");
    assert_string_equal(s_str(h, "on_timeout"), "fail");
    json_decref(h);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_hitl_expire_due(fx->db, &page));
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);
    //  Too late to answer.
    char *out = NULL;
    assert_int_equal(cd_q_hitl_respond(fx->db, soon, "\"ok\"", 1, &out), CD_ESTATE);
    free(out);

    int64_t n = -1;
    s_ok(fx->db, cd_q_hitl_cancel_task(fx->db, task, &n));
    assert_int_equal(n, 2);
    s_ok(fx->db, cd_q_hitl_get(fx->db, later, &out));
    h = s_parse(out, true);
    assert_string_equal(s_str(h, "status"), "cancelled");
    json_decref(h);
    s_ok(fx->db, cd_q_hitl_cancel_task(fx->db, task, &n));
    assert_int_equal(n, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_hitl_lifecycle, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_hitl_expiry_and_cancel, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
