/* label: db */
/*  test_q_system: config, stats history, audit log, nodes, idempotency
    keys and connections (cd_q_system) against a real PostgreSQL. */
#include "cd_q_system.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

#define HASH_1 "1111111111111111111111111111111111111111111111111111111111111111"
#define HASH_2 "2222222222222222222222222222222222222222222222222222222222222222"

static void
test_q_system_config(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_ok(fx->db, cd_q_config_get_all(fx->db, &out));
    assert_string_equal(out, "{}");
    free(out);
    s_ok(fx->db,
         cd_q_config_set(fx->db, "{\"llm_prices\":{\"m\":1.5},\"retention_days\":30}", &out));
    json_t *c = s_parse(out, true);
    assert_int_equal(s_int(c, "retention_days"), 30);
    assert_true(json_is_object(json_object_get(c, "llm_prices")));
    json_decref(c);
    s_ok(fx->db, cd_q_config_set(fx->db, "{\"retention_days\":7}", &out));
    c = s_parse(out, true);
    assert_int_equal(s_int(c, "retention_days"), 7);
    assert_int_equal(json_object_size(c), 2);
    json_decref(c);
    s_ok(fx->db, cd_q_config_get(fx->db, "retention_days", &out));
    assert_string_equal(out, "7");
    free(out);
    assert_int_equal(cd_q_config_get(fx->db, "nope", &out), CD_ENOTFOUND);
    s_sqlstate(fx->db, cd_q_config_set(fx->db, "[1,2]", &out), "22023");
    assert_null(out);
    //  null deletes a key (a missing one too); the others are set at once.
    s_ok(fx->db, cd_q_config_set(fx->db, "{\"llm_prices\":null,\"a.b\":[1],\"gone\":null}", &out));
    c = s_parse(out, true);
    assert_int_equal(json_object_size(c), 2);
    assert_null(json_object_get(c, "llm_prices"));
    assert_int_equal(json_array_size(json_object_get(c, "a.b")), 1);
    json_decref(c);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM config"), 2);
    s_ok(fx->db, cd_q_config_set(fx->db, "{}", &out));
    c = s_parse(out, true);
    assert_int_equal(json_object_size(c), 2);
    json_decref(c);
    s_ok(fx->db, cd_q_config_set(fx->db, "{\"a.b\":null,\"llm_prices\":{\"m\":2}}", &out));
    free(out);
    s_ok(fx->db, cd_q_config_delete(fx->db, "retention_days"));
    assert_int_equal(cd_q_config_delete(fx->db, "retention_days"), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_config_get_all(fx->db, &out));
    c = s_parse(out, true);
    assert_int_equal(json_object_size(c), 1);
    json_decref(c);
}

static void
test_q_system_stats_and_audit(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    for (int i = 0; i < 3; i++) {
        char stats[64];
        snprintf(stats, sizeof stats, "{\"tasks\":%d}", i);
        s_ok(fx->db, cd_q_stats_insert(fx->db, "n1", stats, &out));
        json_t *s = s_parse(out, true);
        assert_string_equal(s_str(s, "node_id"), "n1");
        assert_int_equal(s_int(json_object_get(s, "stats"), "tasks"), i);
        json_decref(s);
    }
    s_sqlstate(fx->db, cd_q_stats_insert(fx->db, NULL, "[]", &out), "23514");
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_stats_list(fx->db, NULL, NULL, 2, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 2);
    assert_true(ids[0] < ids[1]); // oldest first
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_stats_list(fx->db, "2000-01-01T00:00:00Z", cursor, 2, &page));
    free(cursor);
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_stats_list(fx->db, "2999-01-01T00:00:00Z", NULL, 0, &page));
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_db_exec(fx->db, "DELETE FROM stats_history", NULL));

    //  The counters, now and as a snapshot.
    s_raw_task(fx->db, "{\"agent\":\"a\"}", CD_Q_NULL, CD_Q_NULL);
    s_raw_task(fx->db, "{\"agent\":\"a\"}", CD_Q_NULL, CD_Q_NULL);
    s_ok(fx->db, cd_db_exec(fx->db,
                            "INSERT INTO agents (name, kind, status) VALUES ('a', 'echo', 'idle');"
                            "INSERT INTO events (type) VALUES ('agent.status'), ('agent.status')",
                            NULL));
    s_ok(fx->db, cd_q_stats_current(fx->db, &out));
    json_t *cur = s_parse(out, true);
    assert_non_null(s_str(cur, "ts"));
    json_t *tasks = json_object_get(cur, "tasks");
    assert_int_equal(json_object_size(tasks), 6);
    assert_int_equal(s_int(tasks, "todo"), 2);
    assert_int_equal(s_int(tasks, "waiting_human"), 0);
    json_t *agents = json_object_get(cur, "agents");
    assert_int_equal(json_object_size(agents), 6);
    assert_int_equal(s_int(agents, "idle"), 1);
    assert_int_equal(s_int(agents, "busy"), 0);
    assert_int_equal(s_int(cur, "hitl_pending"), 0);
    assert_int_equal(s_int(cur, "schedules_enabled"), 0);
    assert_int_equal(s_int(cur, "events_total"), 2);
    s_ok(fx->db, cd_q_stats_snapshot(fx->db, "n1", "{\"uptime_s\":61}", &out));
    json_t *snap = s_parse(out, true);
    assert_string_equal(s_str(snap, "node_id"), "n1");
    json_t *stats = json_object_get(snap, "stats");
    assert_int_equal(s_int(stats, "uptime_s"), 61);
    assert_int_equal(s_int(json_object_get(stats, "tasks"), "todo"), 2);
    assert_true(json_equal(json_object_get(stats, "agents"), agents));
    assert_null(json_object_get(stats, "ts")); //  the row's ts says when
    json_decref(snap);
    json_decref(cur);
    s_ok(fx->db, cd_q_stats_snapshot(fx->db, NULL, NULL, &out));
    free(out);
    s_sqlstate(fx->db, cd_q_stats_snapshot(fx->db, "n1", "[1]", &out), "23514");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM stats_history"), 2);
    assert_int_equal(cd_q_system_n_writes, 2);

    int64_t ann = s_user(fx->db, "ann");
    s_ok(fx->db, cd_q_audit_insert(fx->db, ann, "task.create", "task/1", "{\"title\":\"t\"}",
                                   "10.0.0.1", &out));
    json_t *a = s_parse(out, true);
    assert_int_equal(s_int(a, "user_id"), ann);
    assert_string_equal(s_str(a, "action"), "task.create");
    assert_string_equal(s_str(a, "target"), "task/1");
    assert_string_equal(s_str(a, "ip"), "10.0.0.1");
    assert_true(s_null(a, "hash") && s_null(a, "prev_hash"));
    json_decref(a);
    s_ok(fx->db, cd_q_audit_insert(fx->db, CD_Q_NULL, "login", NULL, NULL, NULL, &out));
    a = s_parse(out, true);
    assert_true(s_null(a, "user_id") && s_null(a, "ip"));
    assert_int_equal(json_object_size(json_object_get(a, "details")), 0);
    json_decref(a);
    s_ok(fx->db, cd_q_audit_insert(fx->db, ann, "login", NULL, NULL, NULL, &out));
    free(out);
    s_sqlstate(fx->db, cd_q_audit_insert(fx->db, ann, "", NULL, NULL, NULL, &out), "23514");

    cd_q_audit_filter_t f = {.user_id = CD_Q_NULL};
    s_ok(fx->db, cd_q_audit_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 4), 3);
    assert_true(ids[0] > ids[1]); // newest first
    cd_q_page_fini(&page);
    f = (cd_q_audit_filter_t){.user_id = ann, .action = "login"};
    s_ok(fx->db, cd_q_audit_list(fx->db, &f, &page));
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);
    f = (cd_q_audit_filter_t){.user_id = CD_Q_NULL, .since = "2999-01-01T00:00:00Z"};
    s_ok(fx->db, cd_q_audit_list(fx->db, &f, &page));
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);
    f = (cd_q_audit_filter_t){.user_id = CD_Q_NULL, .limit = 2};
    s_ok(fx->db, cd_q_audit_list(fx->db, &f, &page));
    assert_non_null(page.next_cursor);
    f.cursor = page.next_cursor;
    cd_q_page_t next = {0};
    s_ok(fx->db, cd_q_audit_list(fx->db, &f, &next));
    assert_int_equal(next.count, 1);
    cd_q_page_fini(&next);
    cd_q_page_fini(&page);
}

static void
test_q_system_nodes(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_ok(fx->db, cd_q_nodes_register(fx->db, "n1", "tcp://10.0.0.1:7000", "0.1.0", 60000, &out));
    json_t *n = s_parse(out, true);
    assert_string_equal(s_str(n, "id"), "n1");
    assert_true(json_is_true(json_object_get(n, "alive")));
    json_decref(n);
    s_ok(fx->db, cd_q_nodes_register(fx->db, "n2", NULL, NULL, 1, &out));
    free(out);
    s_sqlstate(fx->db, cd_q_nodes_register(fx->db, "bad id", NULL, NULL, 1, &out), "23514");
    s_sleep_ms(20);

    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_nodes_list(fx->db, &page));
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_nodes_expired(fx->db, &page));
    assert_int_equal(page.count, 1);
    n = s_page_item(&page, 0);
    assert_string_equal(s_str(n, "id"), "n2");
    assert_false(json_is_true(json_object_get(n, "alive")));
    json_decref(n);
    cd_q_page_fini(&page);

    //  A heartbeat revives the lease; re-registering restarts the node.
    s_ok(fx->db, cd_q_nodes_heartbeat(fx->db, "n2", 60000, &out));
    n = s_parse(out, true);
    assert_true(json_is_true(json_object_get(n, "alive")));
    json_decref(n);
    s_ok(fx->db, cd_q_nodes_expired(fx->db, &page));
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_nodes_register(fx->db, "n1", "tcp://10.0.0.9:7000", "0.2.0", 60000, &out));
    n = s_parse(out, true);
    assert_string_equal(s_str(n, "address"), "tcp://10.0.0.9:7000");
    assert_string_equal(s_str(n, "version"), "0.2.0");
    json_decref(n);
    s_ok(fx->db, cd_q_nodes_delete(fx->db, "n2"));
    assert_int_equal(cd_q_nodes_delete(fx->db, "n2"), CD_ENOTFOUND);
    assert_int_equal(cd_q_nodes_heartbeat(fx->db, "n2", 1000, &out), CD_ENOTFOUND);
}

static void
test_q_system_idempotency(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    char *out = NULL;
    s_ok(fx->db, cd_q_idem_begin(fx->db, "k1", ann, HASH_1, 86400, &out));
    json_t *k = s_parse(out, true);
    assert_string_equal(s_str(k, "request_hash"), HASH_1);
    assert_true(s_null(k, "response_status"));
    json_decref(k);
    //  Repeat while running: exists, no response yet.
    assert_int_equal(cd_q_idem_begin(fx->db, "k1", ann, HASH_1, 86400, &out), CD_EEXIST);
    k = s_parse(out, true);
    assert_true(s_null(k, "response_status"));
    json_decref(k);
    s_ok(fx->db, cd_q_idem_finish(fx->db, "k1", ann, 201, "{\"id\":5}"));
    //  Repeat after: the first response; a different body shows its hash.
    assert_int_equal(cd_q_idem_begin(fx->db, "k1", ann, HASH_2, 86400, &out), CD_EEXIST);
    k = s_parse(out, true);
    assert_int_equal(s_int(k, "response_status"), 201);
    assert_string_equal(s_str(k, "response_body"), "{\"id\":5}");
    assert_string_equal(s_str(k, "request_hash"), HASH_1);
    json_decref(k);
    //  Keys are per user; anonymous keys are unique too.
    s_ok(fx->db, cd_q_idem_begin(fx->db, "k1", CD_Q_NULL, HASH_1, 86400, &out));
    free(out);
    assert_int_equal(cd_q_idem_begin(fx->db, "k1", CD_Q_NULL, HASH_1, 86400, &out), CD_EEXIST);
    free(out);
    s_ok(fx->db, cd_q_idem_finish(fx->db, "k1", CD_Q_NULL, 200, "{}"));
    assert_int_equal(cd_q_idem_finish(fx->db, "k9", ann, 200, "{}"), CD_ENOTFOUND);
    s_sqlstate(fx->db, cd_q_idem_finish(fx->db, "k1", ann, 42, "{}"), "23514");

    //  Abandoned: the key is free again.
    s_ok(fx->db, cd_q_idem_begin(fx->db, "k2", ann, HASH_1, 86400, &out));
    free(out);
    s_ok(fx->db, cd_q_idem_abandon(fx->db, "k2", ann));
    assert_int_equal(cd_q_idem_abandon(fx->db, "k2", ann), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_idem_begin(fx->db, "k2", ann, HASH_2, 86400, &out));
    free(out);

    //  Expired: taken over by a new request; purged.
    s_ok(fx->db, cd_db_exec(fx->db,
                            "UPDATE idempotency_keys SET expires_at = now() - interval '1 s'"
                            " WHERE key = 'k1'",
                            NULL));
    s_ok(fx->db, cd_q_idem_begin(fx->db, "k1", ann, HASH_2, 86400, &out));
    k = s_parse(out, true);
    assert_string_equal(s_str(k, "request_hash"), HASH_2);
    assert_true(s_null(k, "response_status"));
    json_decref(k);
    int64_t n = -1;
    s_ok(fx->db, cd_q_idem_purge(fx->db, &n));
    assert_int_equal(n, 1); // the anonymous k1
    s_sqlstate(fx->db, cd_q_idem_begin(fx->db, "k3", ann, "00", 60, &out), "23514");
}

static void
test_q_system_connections(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_ok(fx->db, cd_q_connections_insert(fx->db,
                                         "{\"name\":\"openai\",\"connector_type\":\"openai\","
                                         "\"config\":{\"base_url\":\"https://x\","
                                         "\"api_key\":\"********\"},"
                                         "\"secret_fields\":[\"api_key\"]}",
                                         "{\"api_key\":\"00112233\"}", CD_Q_NULL, &out));
    json_t *c = s_parse(out, true);
    int64_t id = s_int(c, "id");
    assert_true(json_is_true(json_object_get(c, "has_secrets")));
    assert_null(json_object_get(c, "secrets"));
    assert_string_equal(s_str(json_object_get(c, "config"), "base_url"), "https://x");
    assert_string_equal(s_str(json_object_get(c, "config"), "api_key"), "********");
    char *updated_at = strdup(s_str(c, "updated_at"));
    json_decref(c);
    s_ok(fx->db,
         cd_q_connections_insert(fx->db, "{\"name\":\"local\",\"connector_type\":\"ollama\"}", "{}",
                                 CD_Q_NULL, &out));
    c = s_parse(out, true);
    assert_false(json_is_true(json_object_get(c, "has_secrets")));
    assert_int_equal(json_array_size(json_object_get(c, "secret_fields")), 0);
    json_decref(c);
    s_sqlstate(fx->db,
               cd_q_connections_insert(fx->db, "{\"name\":\"openai\",\"connector_type\":\"x\"}",
                                       NULL, CD_Q_NULL, &out),
               "23505");
    s_sqlstate(fx->db,
               cd_q_connections_insert(fx->db, "{\"name\":\"y\",\"connector_type\":\"Bad Type\"}",
                                       NULL, CD_Q_NULL, &out),
               "23514");

    s_ok(fx->db, cd_q_connections_get(fx->db, id, &out));
    c = s_parse(out, true);
    assert_null(json_object_get(c, "secrets"));
    json_decref(c);
    assert_int_equal(cd_q_connections_get(fx->db, id + 99, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_connections_sealed(fx->db, CD_Q_NULL, "openai", &out));
    c = s_parse(out, true);
    assert_string_equal(s_str(json_object_get(c, "secrets"), "api_key"), "00112233");
    json_decref(c);
    s_ok(fx->db, cd_q_connections_sealed(fx->db, CD_Q_NULL, "local", &out));
    c = s_parse(out, true);
    assert_int_equal(json_object_size(json_object_get(c, "secrets")), 0);
    json_decref(c);
    s_ok(fx->db, cd_q_connections_sealed(fx->db, id, NULL, &out));
    free(out);
    assert_int_equal(cd_q_connections_sealed(fx->db, CD_Q_NULL, "nope", &out), CD_ENOTFOUND);

    //  A PATCH guarded by the updated_at it read.
    s_ok(fx->db, cd_q_connections_patch(fx->db, id,
                                        "{\"config\":{\"base_url\":\"https://y\","
                                        "\"api_key\":\"********\"}}",
                                        NULL, updated_at, &out));
    free(out);
    s_ok(fx->db, cd_q_connections_sealed(fx->db, id, NULL, &out));
    c = s_parse(out, true);
    assert_string_equal(s_str(json_object_get(c, "secrets"), "api_key"), "00112233"); // kept
    assert_string_equal(s_str(json_object_get(c, "config"), "base_url"), "https://y");
    json_decref(c);
    //  The same guard again: the row changed since.
    assert_int_equal(cd_q_connections_patch(fx->db, id, "{\"name\":\"z\"}", "{}", updated_at, &out),
                     CD_ESTATE);
    c = s_parse(out, true);
    assert_true(json_is_true(json_object_get(c, "conflict")));
    assert_string_equal(s_str(c, "name"), "openai");
    json_decref(c);
    free(updated_at);
    s_ok(fx->db, cd_q_connections_patch(fx->db, id, "{\"name\":\"oa\",\"secret_fields\":null}",
                                        "{\"token\":\"ff\"}", NULL, &out));
    c = s_parse(out, true);
    assert_string_equal(s_str(c, "name"), "oa");
    assert_int_equal(json_array_size(json_object_get(c, "secret_fields")), 0);
    json_decref(c);
    s_ok(fx->db, cd_q_connections_sealed(fx->db, id, NULL, &out));
    c = s_parse(out, true);
    assert_string_equal(s_str(json_object_get(c, "secrets"), "token"), "ff");
    assert_null(json_object_get(json_object_get(c, "secrets"), "api_key"));
    json_decref(c);
    s_ok(fx->db,
         cd_q_connections_patch(fx->db, id, "{\"connector_type\":\"azure\"}", "{}", NULL, &out));
    c = s_parse(out, true);
    assert_false(json_is_true(json_object_get(c, "has_secrets")));
    json_decref(c);
    assert_int_equal(cd_q_connections_patch(fx->db, id + 99, "{}", NULL, NULL, &out), CD_ENOTFOUND);

    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_connections_list(fx->db, NULL, 1, &page));
    assert_int_equal(page.count, 1);
    assert_non_null(page.next_cursor);
    c = s_page_item(&page, 0);
    assert_null(json_object_get(c, "secrets"));
    json_decref(c);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_connections_delete(fx->db, id));
    assert_int_equal(cd_q_connections_delete(fx->db, id), CD_ENOTFOUND);
}

static void
test_q_system_vault_record(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    assert_int_equal(cd_q_vault_get(fx->db, &out), CD_ENOTFOUND);
    const char *record = "{\"kdf\":\"argon2id13\",\"opslimit\":3,\"memlimit\":268435456,"
                         "\"salt\":\"00112233445566778899aabbccddeeff\",\"wrapped_dek\":\"";
    char full[400];
    char dek[145];
    memset(dek, 'a', 144);
    dek[144] = '\0';
    snprintf(full, sizeof full, "%s%s\"}", record, dek);
    s_ok(fx->db, cd_q_vault_init(fx->db, full, &out));
    json_t *r = s_parse(out, true);
    assert_true(json_is_true(json_object_get(r, "initialized")));
    json_decref(r);
    //  One record: a second init keeps the first.
    dek[0] = 'b';
    snprintf(full, sizeof full, "%s%s\"}", record, dek);
    assert_int_equal(cd_q_vault_init(fx->db, full, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_vault_get(fx->db, &out));
    r = s_parse(out, true);
    assert_int_equal(s_int(r, "opslimit"), 3);
    assert_string_equal(s_str(r, "salt"), "00112233445566778899aabbccddeeff");
    assert_true(s_str(r, "wrapped_dek")[0] == 'a');
    json_decref(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_system_config, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_system_stats_and_audit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_system_nodes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_system_idempotency, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_system_connections, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_system_vault_record, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
