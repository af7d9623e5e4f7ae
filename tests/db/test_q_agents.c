/* label: db */
/*  test_q_agents: the agent directory queries (cd_q_agents) against a
    real PostgreSQL. */
#include "cd_q_agents.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

static json_t *
s_agent(cd_db_t *db, const char *json, const char *node)
{
    char *out = NULL;
    s_ok(db, cd_q_agents_insert(db, json, node, &out));
    return s_parse(out, true);
}

static void
test_q_agents_crud(void **state)
{
    fixture_t *fx = *state;
    json_t *a = s_agent(fx->db, "{\"name\":\"coder\",\"kind\":\"echo\"}", "n1");
    assert_string_equal(s_str(a, "name"), "coder");
    assert_string_equal(s_str(a, "kind"), "echo");
    assert_string_equal(s_str(a, "status"), "starting");
    assert_string_equal(s_str(a, "node_id"), "n1");
    assert_int_equal(s_int(a, "concurrency"), 1);
    assert_int_equal(s_int(a, "restarts"), 0);
    assert_true(s_null(a, "role") && s_null(a, "template_id"));
    assert_int_equal(json_object_size(json_object_get(a, "config")), 0);
    assert_non_null(s_str(a, "created_at"));
    json_decref(a);

    int64_t tpl = 0;
    s_ok(fx->db, cd_db_query_int64(
                     fx->db, "INSERT INTO templates (name, body) VALUES ('t', 'b') RETURNING id", 0,
                     NULL, &tpl));
    char body[256];
    snprintf(body, sizeof body,
             "{\"name\":\"rev\",\"kind\":\"llm\",\"role\":\"reviewer\",\"concurrency\":4,"
             "\"config\":{\"model\":\"m\"},\"template_id\":%lld}",
             (long long)tpl);
    a = s_agent(fx->db, body, NULL);
    assert_string_equal(s_str(a, "role"), "reviewer");
    assert_int_equal(s_int(a, "concurrency"), 4);
    assert_int_equal(s_int(a, "template_id"), tpl);
    assert_string_equal(s_str(json_object_get(a, "config"), "model"), "m");
    assert_true(s_null(a, "node_id"));
    json_decref(a);

    char *out = NULL;
    s_sqlstate(fx->db,
               cd_q_agents_insert(fx->db, "{\"name\":\"coder\",\"kind\":\"echo\"}", NULL, &out),
               "23505");
    s_sqlstate(fx->db,
               cd_q_agents_insert(fx->db, "{\"name\":\"Coder\",\"kind\":\"echo\"}", NULL, &out),
               "23514");
    s_sqlstate(fx->db,
               cd_q_agents_insert(fx->db, "{\"name\":\"x\",\"kind\":\"shell\"}", NULL, &out),
               "23514");
    s_sqlstate(fx->db, cd_q_agents_insert(fx->db, "{\"kind\":\"echo\"}", NULL, &out), "23502");
    s_sqlstate(fx->db,
               cd_q_agents_insert(fx->db, "{\"name\":\"x\",\"kind\":\"echo\",\"template_id\":999}",
                                  NULL, &out),
               "23503");
    assert_null(out);

    s_ok(fx->db, cd_q_agents_get(fx->db, "rev", &out));
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "kind"), "llm");
    json_decref(a);
    assert_int_equal(cd_q_agents_get(fx->db, "nobody", &out), CD_ENOTFOUND);

    //  PATCH: present keys only; null clears what may be null.
    s_ok(fx->db, cd_q_agents_patch(fx->db, "rev",
                                   "{\"concurrency\":2,\"role\":null,\"template_id\":null,"
                                   "\"config\":{\"model\":\"n\"}}",
                                   &out));
    a = s_parse(out, true);
    assert_int_equal(s_int(a, "concurrency"), 2);
    assert_true(s_null(a, "role") && s_null(a, "template_id"));
    assert_string_equal(s_str(json_object_get(a, "config"), "model"), "n");
    assert_string_equal(s_str(a, "kind"), "llm");
    json_decref(a);
    s_ok(fx->db, cd_q_agents_patch(fx->db, "rev", "{\"kind\":\"remote\"}", &out));
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "kind"), "remote");
    assert_int_equal(s_int(a, "concurrency"), 2);
    json_decref(a);
    s_sqlstate(fx->db, cd_q_agents_patch(fx->db, "rev", "{\"concurrency\":0}", &out), "23514");
    assert_int_equal(cd_q_agents_patch(fx->db, "nobody", "{}", &out), CD_ENOTFOUND);

    //  Status, node, restarts.
    s_ok(fx->db, cd_q_agents_set_status(fx->db, "coder", "idle", NULL, &out));
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "status"), "idle");
    assert_string_equal(s_str(a, "node_id"), "n1");
    json_decref(a);
    s_ok(fx->db, cd_q_agents_set_status(fx->db, "rev", "busy", "n2", &out));
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "node_id"), "n2");
    json_decref(a);
    s_sqlstate(fx->db, cd_q_agents_set_status(fx->db, "rev", "dancing", NULL, &out), "23514");
    assert_int_equal(cd_q_agents_set_status(fx->db, "nobody", "idle", NULL, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_agents_add_restart(fx->db, "coder", &out));
    free(out);
    s_ok(fx->db, cd_q_agents_add_restart(fx->db, "coder", &out));
    a = s_parse(out, true);
    assert_int_equal(s_int(a, "restarts"), 2);
    json_decref(a);
    assert_int_equal(cd_q_agents_add_restart(fx->db, "nobody", &out), CD_ENOTFOUND);

    int64_t n = -1;
    s_ok(fx->db, cd_q_agents_set_node_status(fx->db, "n1", "offline", &n));
    assert_int_equal(n, 1);
    s_ok(fx->db, cd_q_agents_get(fx->db, "coder", &out));
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "status"), "offline");
    json_decref(a);

    s_ok(fx->db, cd_q_agents_delete(fx->db, "coder"));
    assert_int_equal(cd_q_agents_delete(fx->db, "coder"), CD_ENOTFOUND);
    assert_int_equal(cd_q_agents_get(fx->db, "coder", &out), CD_ENOTFOUND);
}

static void
test_q_agents_list(void **state)
{
    fixture_t *fx = *state;
    const char *names[] = {"delta", "alpha", "charlie", "bravo", "echo"};
    for (int i = 0; i < 5; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"kind\":\"%s\",\"role\":\"%s\"}", names[i],
                 i % 2 ? "echo" : "llm", i < 3 ? "coder" : "reviewer");
        json_decref(s_agent(fx->db, body, i == 4 ? "n2" : "n1"));
    }
    char *out = NULL;
    s_ok(fx->db, cd_q_agents_set_status(fx->db, "bravo", "busy", NULL, &out));
    free(out);

    //  Name order, paged by name.
    cd_q_page_t page = {0};
    cd_q_agent_filter_t f = {.limit = 2};
    s_ok(fx->db, cd_q_agents_list(fx->db, &f, &page));
    assert_int_equal(page.count, 2);
    json_t *a = s_page_item(&page, 0);
    assert_string_equal(s_str(a, "name"), "alpha");
    json_decref(a);
    assert_string_equal(page.next_cursor, "bravo");
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    f.cursor = cursor;
    s_ok(fx->db, cd_q_agents_list(fx->db, &f, &page));
    free(cursor);
    a = s_page_item(&page, 0);
    assert_string_equal(s_str(a, "name"), "charlie");
    json_decref(a);
    cd_q_page_fini(&page);

    //  Filters.
    f = (cd_q_agent_filter_t){.role = "coder"};
    s_ok(fx->db, cd_q_agents_list(fx->db, &f, &page));
    assert_int_equal(page.count, 3);
    cd_q_page_fini(&page);
    f = (cd_q_agent_filter_t){.role = "coder", .kind = "echo"};
    s_ok(fx->db, cd_q_agents_list(fx->db, &f, &page));
    assert_int_equal(page.count, 1);
    a = s_page_item(&page, 0);
    assert_string_equal(s_str(a, "name"), "alpha");
    json_decref(a);
    cd_q_page_fini(&page);
    f = (cd_q_agent_filter_t){.status = "busy"};
    s_ok(fx->db, cd_q_agents_list(fx->db, &f, &page));
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);
    f = (cd_q_agent_filter_t){.node_id = "n2"};
    s_ok(fx->db, cd_q_agents_list(fx->db, &f, &page));
    assert_int_equal(page.count, 1);
    a = s_page_item(&page, 0);
    assert_string_equal(s_str(a, "name"), "echo");
    json_decref(a);
    cd_q_page_fini(&page);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_agents_crud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_agents_list, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
