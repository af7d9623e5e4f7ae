/* label: db */
/*  test_stats: the statistics snapshot writer in a real supervisor tree,
    writing through the real persist actor (with the node's statements,
    cd_api_stmts) into a migrated database of the fixture; and the same
    actor with nobody to write to, which must keep running and count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_api.h"
#include "cd_db.h"
#include "cd_error.h"
#include "cd_migrate.h"
#include "cd_persist.h"
#include "cd_port.h"
#include "cd_stats.h"
#include "cd_supervisor.h"
#include "cd_testpg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *conninfo;            //  the test's database
    cd_db_t *db;               //  to read rows
    cd_runtime_t rt;           //  node settings
    cd_persist_args_t persist; //  persist's arguments
    cd_stats_args_t stats;     //  the actor's arguments
    cd_child_spec_t children[2];
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_port_t *port; //  the test's mailbox
} fx_t;

static fx_t *
s_start(bool with_persist, const char *persist_name)
{
    fx_t *fx = calloc(1, sizeof *fx);
    fx->rt = (cd_runtime_t){cd_registry_new("n1"), 1000, 2000, 200, 5000, 5000, 3, 10};
    size_t n = 0;
    if (with_persist) {
        assert_int_equal(cd_testpg_fresh_db(&fx->conninfo), 0);
        assert_int_equal(cd_db_connect(fx->conninfo, &fx->db, NULL), 0);
        char *err = NULL;
        if (cd_migrate_run(fx->db, NULL, &err) != 0) {
            fail_msg("migrate: %s", err);
        }
        size_t n_stmts = 0;
        const cd_persist_stmt_t *stmts = cd_api_stmts(&n_stmts);
        fx->persist =
            (cd_persist_args_t){.conninfo = fx->conninfo, .stmts = stmts, .n_stmts = n_stmts};
        fx->children[n++] =
            (cd_child_spec_t){"persist", &cd_persist_ops, &fx->persist, CD_RESTART_PERMANENT};
    }
    fx->stats = (cd_stats_args_t){
        .persist = persist_name, .node_id = "n1", .started_us = zclock_usecs(), .interval_ms = 100};
    fx->children[n++] =
        (cd_child_spec_t){CD_STATS_NAME, &cd_stats_ops, &fx->stats, CD_RESTART_PERMANENT};
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, fx->children, n};
    char why[160] = "";
    fx->root = cd_root_new(&fx->rt, "root", &fx->spec, why, sizeof why);
    if (!fx->root) {
        fail_msg("tree: %s", why);
    }
    fx->port = cd_port_new(&fx->rt, "test");
    assert_non_null(fx->port);
    return fx;
}

static void
s_stop(fx_t **fx_p)
{
    fx_t *fx = *fx_p;
    cd_port_destroy(&fx->port);
    cd_port_destroy(&fx->port); //  twice is harmless
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    cd_registry_destroy(&fx->rt.registry);
    cd_db_close(&fx->db);
    free(fx->conninfo);
    free(fx);
    *fx_p = NULL;
}

static int64_t
s_int(cd_bin_t map, const char *key)
{
    cd_bin_t value;
    int64_t n = -1;
    if (cd_msgpack_map_find(map, key, &value) == 0) {
        cd_msgpack_read_int(value, &n);
    }
    return n;
}

//  Asks the actor for its counters (bounded wait).
static void
s_counters(fx_t *fx, int64_t *sent, int64_t *written, int64_t *failed, char *last_error,
           size_t size)
{
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(fx->port), &env, CD_KIND_CONTROL, CD_STATS_NAME);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("stats")};
    env.n_headers = 1;
    assert_int_equal(cd_port_send(fx->port, &env), 0);
    uint8_t id[CD_ENV_UUID_SIZE];
    memcpy(id, env.id, sizeof id);
    int64_t deadline = zclock_mono() + 5000;
    while (zclock_mono() < deadline) {
        cd_envelope_t ans;
        if (cd_port_recv(fx->port, 50, &ans) == 0 && memcmp(ans.parent_id, id, sizeof id) == 0) {
            assert_int_equal(ans.kind, CD_KIND_RESULT);
            *sent = s_int(ans.payload, "sent");
            *written = s_int(ans.payload, "written");
            *failed = s_int(ans.payload, "failed");
            cd_bin_t value;
            cd_str_t text = {"", 0};
            if (cd_msgpack_map_find(ans.payload, "last_error", &value) == 0) {
                cd_msgpack_read_str(value, &text);
            }
            snprintf(last_error, size, "%.*s", (int)text.len, text.ptr ? text.ptr : "");
            return;
        }
    }
    fail_msg("the stats actor did not answer");
}

static void
test_stats_writes_a_snapshot_every_interval(void **state)
{
    fx_t *fx = s_start(true, NULL);
    int64_t rows = 0;
    int64_t deadline = zclock_mono() + 10000;
    while (zclock_mono() < deadline && rows < 3) {
        zclock_sleep(50);
        assert_int_equal(
            cd_db_query_int64(fx->db, "SELECT count(*) FROM stats_history", 0, NULL, &rows), 0);
    }
    assert_true(rows >= 3);
    char *text = NULL;
    assert_int_equal(cd_db_query_text(fx->db,
                                      "SELECT json_build_object('node_id', node_id, 'stats',"
                                      " stats) FROM stats_history ORDER BY id LIMIT 1",
                                      0, NULL, &text),
                     0);
    json_t *row = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(row);
    assert_string_equal(json_string_value(json_object_get(row, "node_id")), "n1");
    json_t *stats = json_object_get(row, "stats");
    assert_true(json_is_number(json_object_get(stats, "uptime_s")));
    assert_true(json_number_value(json_object_get(stats, "uptime_s")) > 0.05);
    assert_true(json_is_object(json_object_get(stats, "tasks")));
    assert_true(json_is_integer(json_object_get(stats, "events_total")));
    json_decref(row);
    int64_t sent = 0, written = 0, failed = 0;
    char last_error[128];
    s_counters(fx, &sent, &written, &failed, last_error, sizeof last_error);
    assert_true(written >= 3);
    assert_true(sent >= written);
    assert_int_equal(failed, 0);
    assert_string_equal(last_error, "");
    s_stop(&fx);
}

static void
test_stats_without_persist_counts_and_keeps_running(void **state)
{
    fx_t *fx = s_start(false, "nobody");
    zclock_sleep(450);
    int64_t sent = 0, written = 0, failed = 0;
    char last_error[128];
    s_counters(fx, &sent, &written, &failed, last_error, sizeof last_error);
    assert_int_equal(sent, 0);
    assert_int_equal(written, 0);
    assert_true(failed >= 2);
    assert_true(last_error[0] != '\0');
    //  Still answering.
    s_counters(fx, &sent, &written, &failed, last_error, sizeof last_error);
    s_stop(&fx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_writes_a_snapshot_every_interval),
        cmocka_unit_test(test_stats_without_persist_counts_and_keeps_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
