/* label: db */
/*  test_q_usage: the LLM usage ledger (cd_q_usage) against a real
    PostgreSQL: a call updates its task's usage; sums by group. */
#include "cd_q_usage.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

static void
test_q_usage_record_and_summary(void **state)
{
    fixture_t *fx = *state;
    int64_t project = s_project(fx->db);
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"coder\"}", project, CD_Q_NULL);
    char body[256];
    snprintf(body, sizeof body,
             "{\"task_id\":%lld,\"agent\":\"coder\",\"connection_id\":7,\"model\":\"m1\","
             "\"prompt_tokens\":100,\"completion_tokens\":20,\"cost_usd\":0.25,"
             "\"latency_ms\":300}",
             (long long)task);
    char *out = NULL;
    s_ok(fx->db, cd_q_usage_record(fx->db, body, &out));
    json_t *c = s_parse(out, true);
    assert_int_equal(s_int(c, "task_id"), task);
    assert_int_equal(s_int(c, "project_id"), project); // from the task
    assert_int_equal(s_int(c, "prompt_tokens"), 100);
    assert_true(json_real_value(json_object_get(c, "cost_usd")) == 0.25);
    assert_int_equal(s_int(c, "latency_ms"), 300);
    json_decref(c);
    s_ok(fx->db, cd_q_usage_record(fx->db, body, &out));
    free(out);
    s_ok(fx->db, cd_q_usage_record(fx->db,
                                   "{\"agent\":\"writer\",\"model\":\"m2\",\"prompt_tokens\":5,"
                                   "\"cost_usd\":1}",
                                   &out));
    c = s_parse(out, true);
    assert_true(s_null(c, "task_id") && s_null(c, "project_id"));
    assert_int_equal(s_int(c, "completion_tokens"), 0);
    json_decref(c);
    s_sqlstate(fx->db, cd_q_usage_record(fx->db, "{\"model\":\"m\",\"prompt_tokens\":-1}", &out),
               "23514");
    s_sqlstate(fx->db, cd_q_usage_record(fx->db, "{\"prompt_tokens\":1}", &out), "23502");

    //  The task's usage is the sum of its calls.
    s_ok(fx->db, cd_db_query_text(fx->db, "SELECT usage::text FROM tasks", 0, NULL, &out));
    json_t *u = s_parse(out, true);
    assert_int_equal(s_int(u, "prompt_tokens"), 200);
    assert_int_equal(s_int(u, "completion_tokens"), 40);
    assert_int_equal(s_int(u, "llm_calls"), 2);
    assert_true(json_real_value(json_object_get(u, "cost_usd")) == 0.5);
    json_decref(u);

    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_usage_summary(fx->db, "agent", NULL, &page));
    assert_int_equal(page.count, 2);
    json_t *g = s_page_item(&page, 0); // highest cost first
    assert_string_equal(s_str(g, "key"), "writer");
    assert_int_equal(s_int(g, "llm_calls"), 1);
    json_decref(g);
    g = s_page_item(&page, 1);
    assert_string_equal(s_str(g, "key"), "coder");
    assert_int_equal(s_int(g, "prompt_tokens"), 200);
    assert_int_equal(s_int(g, "llm_calls"), 2);
    json_decref(g);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_usage_summary(fx->db, "project", NULL, &page));
    assert_int_equal(page.count, 2);
    g = s_page_item(&page, 1);
    assert_int_equal(s_int(g, "key"), project);
    json_decref(g);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_usage_summary(fx->db, "task", NULL, &page));
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_usage_summary(fx->db, "connection", "2000-01-01T00:00:00Z", &page));
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_usage_summary(fx->db, "agent", "2999-01-01T00:00:00Z", &page));
    assert_int_equal(page.count, 0);
    assert_string_equal(page.items, "[]");
    cd_q_page_fini(&page);
    assert_int_equal(cd_q_usage_summary(fx->db, "model; DROP TABLE tasks", NULL, &page), CD_EINVAL);
    assert_int_equal(cd_q_usage_summary(fx->db, NULL, NULL, &page), CD_EINVAL);
    assert_null(page.items);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_usage_record_and_summary, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
