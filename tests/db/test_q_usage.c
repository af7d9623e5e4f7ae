/* label: db */
/*  test_q_usage: the LLM usage ledger (cd_q_usage) against a real
    PostgreSQL: a call updates its task's usage; sums by group; the write
    statement persist runs (usage.record); an llm agent's context read. */
#include "cd_q_agents.h"
#include "cd_q_catalog.h"
#include "cd_q_system.h"
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

static void
test_q_usage_record_write_statement(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(cd_q_usage_n_writes, 1);
    const cd_q_write_t *w = &cd_q_usage_writes[0];
    assert_string_equal(w->name, "usage.record");
    assert_int_equal(w->nparams, 1);
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"writer\"}", s_project(fx->db), CD_Q_NULL);
    char body[256];
    snprintf(body, sizeof body,
             "{\"task_id\":%lld,\"agent\":\"writer\",\"connection_id\":3,\"model\":\"m\","
             "\"prompt_tokens\":12,\"completion_tokens\":3,\"cost_usd\":0.018,\"latency_ms\":9}",
             (long long)task);
    //  What persist runs: the statement text with its one parameter.
    const char *params[] = {body};
    char *out = NULL;
    s_ok(fx->db, cd__q_one(fx->db, w->sql, w->nparams, params, &out));
    json_t *c = s_parse(out, true);
    assert_int_equal(s_int(c, "task_id"), task);
    assert_int_equal(s_int(c, "connection_id"), 3);
    assert_int_equal(s_int(c, "completion_tokens"), 3);
    json_decref(c);
    s_ok(fx->db, cd_db_query_text(fx->db, "SELECT usage::text FROM tasks", 0, NULL, &out));
    json_t *u = s_parse(out, true);
    assert_int_equal(s_int(u, "prompt_tokens"), 12);
    assert_int_equal(s_int(u, "llm_calls"), 1);
    assert_true(json_real_value(json_object_get(u, "cost_usd")) == 0.018);
    json_decref(u);
}

//  The "id" of a row's JSON (freed).
static int64_t
s_id(char *row)
{
    json_t *obj = s_parse(row, true);
    int64_t id = s_int(obj, "id");
    json_decref(obj);
    return id;
}

static void
test_q_usage_llm_context(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    //  Nothing there yet: every part null.
    s_ok(fx->db, cd_q_usage_llm_context(fx->db, "writer", "openai", CD_Q_NULL, &out));
    assert_string_equal(out, "{\"connection\" : null, \"template_id\" : null, \"template\" : "
                             "null, \"prices\" : null}");
    free(out);
    s_ok(fx->db, cd_q_templates_insert(fx->db, "{\"name\":\"a\",\"body\":\"About {{x}}\"}", &out));
    int64_t t1 = s_id(out);
    s_ok(fx->db, cd_q_templates_insert(fx->db, "{\"name\":\"b\",\"body\":\"Other\"}", &out));
    int64_t t2 = s_id(out);
    char body[160];
    snprintf(body, sizeof body, "{\"name\":\"writer\",\"kind\":\"llm\",\"template_id\":%lld}",
             (long long)t1);
    s_ok(fx->db, cd_q_agents_insert(fx->db, body, NULL, &out));
    free(out);
    s_ok(fx->db,
         cd_q_connections_insert(fx->db,
                                 "{\"name\":\"openai\",\"connector_type\":\"openai\","
                                 "\"config\":{\"base_url\":\"http://x\",\"api_key\":\"********\"}}",
                                 "{\"api_key\":\"00aa\"}", CD_Q_NULL, &out));
    int64_t conn = s_id(out);
    s_ok(fx->db, cd_q_config_set(fx->db, "{\"llm_prices\":{\"m\":{\"prompt_per_1k\":1}}}", &out));
    free(out);
    //  The agent's own template.
    s_ok(fx->db, cd_q_usage_llm_context(fx->db, "writer", "openai", CD_Q_NULL, &out));
    json_t *ctx = s_parse(out, true);
    json_t *c = json_object_get(ctx, "connection");
    assert_int_equal(s_int(c, "id"), conn);
    assert_string_equal(s_str(json_object_get(c, "config"), "api_key"), "********");
    assert_string_equal(s_str(c, "sealed_api_key"), "00aa");
    assert_int_equal(s_int(ctx, "template_id"), t1);
    assert_string_equal(s_str(ctx, "template"), "About {{x}}");
    assert_true(json_is_object(json_object_get(json_object_get(ctx, "prices"), "m")));
    json_decref(ctx);
    //  A template named by the agent's config wins; another agent has none.
    s_ok(fx->db, cd_q_usage_llm_context(fx->db, "writer", "openai", t2, &out));
    ctx = s_parse(out, true);
    assert_string_equal(s_str(ctx, "template"), "Other");
    json_decref(ctx);
    s_ok(fx->db, cd_q_usage_llm_context(fx->db, "nobody", "nothing", CD_Q_NULL, &out));
    ctx = s_parse(out, true);
    assert_true(s_null(ctx, "connection") && s_null(ctx, "template"));
    assert_false(s_null(ctx, "prices"));
    json_decref(ctx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_usage_record_and_summary, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_usage_record_write_statement, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_usage_llm_context, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
