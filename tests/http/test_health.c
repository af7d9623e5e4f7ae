/* label: db */
/*  /health/ready and /health/detailed against the real persist actor on a
    real PostgreSQL (the fixture): ready with its figures when the database
    is there, not ready (naming the database check) when it is not, and
    not ready (naming persist) once persist is stopped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_db.h"
#include "cd_deadletter.h"
#include "cd_migrate.h"
#include "cd_persist.h"
#include "cd_testpg.h"
#include "httptest.h"

typedef struct {
    cd_runtime_t rt;             //  runtime
    cd_persist_args_t args;      //  persist's arguments
    cd_child_spec_t children[2]; //  deadletter, persist
    cd_supervisor_spec_t spec;   //  the root
    cd_root_t *root;             //  the tree
    cd_http_t *http;             //  the server
    ht_node_t view;              //  base URL, for the ht_* helpers
    char *conninfo;              //  the database
} fx_t;

static fx_t *
s_start(const char *conninfo)
{
    static const char *const core[] = {"root", "deadletter", "persist", NULL};
    fx_t *fx = (fx_t *)calloc(1, sizeof *fx);
    fx->conninfo = strdup(conninfo);
    fx->rt = (cd_runtime_t){cd_registry_new("hp"), 1000, 1000, 200, 5000, 5000, 3, 10};
    fx->args = (cd_persist_args_t){.conninfo = fx->conninfo, .connect_timeout_ms = 500};
    fx->children[0] = (cd_child_spec_t){"deadletter", &cd_deadletter_ops, NULL, 0};
    fx->children[1] = (cd_child_spec_t){"persist", &cd_persist_ops, &fx->args, 0};
    fx->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, fx->children, 2};
    char why[160] = "";
    fx->root = cd_root_new(&fx->rt, "root", &fx->spec, why, sizeof why);
    if (!fx->root) {
        fail_msg("tree: %s", why);
    }
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.core_actors = core;
    opts.ready_timeout_ms = 3000;
    char *errmsg = NULL;
    assert_int_equal(cd_http_start(&opts, &fx->rt, &fx->http, &errmsg), 0);
    snprintf(fx->view.base, sizeof fx->view.base, "http://%s", cd_http_addr(fx->http));
    return fx;
}

static void
s_stop(fx_t *fx)
{
    assert_int_equal(cd_http_stop(&fx->http), 0);
    assert_int_equal(cd_root_destroy(&fx->root), 0);
    cd_registry_destroy(&fx->rt.registry);
    free(fx->conninfo);
    free(fx);
}

static void
test_health_ready_with_the_real_persist_actor(void **state)
{
    char *conninfo = NULL;
    assert_int_equal(cd_testpg_fresh_db(&conninfo), 0);
    cd_db_t *db = NULL;
    assert_int_equal(cd_db_connect(conninfo, &db, NULL), 0);
    char *err = NULL;
    int applied = 0;
    assert_int_equal(cd_migrate_run(db, &applied, &err), 0);
    cd_db_close(&db);
    fx_t *fx = s_start(conninfo);
    free(conninfo);

    //  persist connects in the background: ready within a few seconds.
    ht_response_t r;
    int64_t deadline = ht_now_ms() + 10000;
    long status = 0;
    while (status != 200 && ht_now_ms() < deadline) {
        assert_int_equal(ht_get(&fx->view, "/health/ready", HT_H2C, &r), CURLE_OK);
        status = r.status;
        ht_response_free(&r);
        if (status != 200) {
            usleep(100 * 1000);
        }
    }
    assert_int_equal(status, 200);

    assert_int_equal(ht_get(&fx->view, "/health/detailed", HT_H2C, &r), CURLE_OK);
    json_t *doc = ht_json(&r);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "ok");
    assert_true(json_is_true(json_object_get(json_object_get(doc, "db"), "ok")));
    json_t *persist = json_object_get(doc, "persist");
    assert_true(json_is_integer(json_object_get(persist, "pending")));
    assert_true(json_is_integer(json_object_get(persist, "batches")));
    assert_true(json_is_integer(json_object_get(persist, "rows")));
    assert_true(json_is_number(json_object_get(persist, "last_batch_ms")));
    //  The settings in force: the fixture sets none, so the actor's defaults.
    json_t *settings = json_object_get(persist, "settings");
    assert_int_equal(json_integer_value(json_object_get(settings, "batch_max")),
                     CD_PERSIST_BATCH_MAX);
    assert_int_equal(json_integer_value(json_object_get(settings, "batch_wait_ms")),
                     CD_PERSIST_BATCH_WAIT_MS);
    assert_int_equal(json_integer_value(json_object_get(settings, "queue_limit")),
                     CD_PERSIST_QUEUE_LIMIT);
    assert_int_equal(json_integer_value(json_object_get(settings, "wait_timeout_ms")),
                     CD_PERSIST_WAIT_TIMEOUT_MS);
    json_decref(doc);
    ht_response_free(&r);

    //  persist stopped: not ready, and the check says why.
    char why[128];
    assert_int_equal(cd_root_call(fx->root, "STOP", "", "persist", NULL, 5000, why, sizeof why), 0);
    assert_int_equal(ht_get(&fx->view, "/health/ready", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "no actor named persist"));
    assert_non_null(strstr(r.body, "persist is absent"));
    ht_response_free(&r);
    s_stop(fx);
}

static void
test_health_not_ready_while_the_database_is_away(void **state)
{
    fx_t *fx = s_start("host=/tmp/cadre-no-such-dir dbname=x connect_timeout=1");
    ht_response_t r;
    assert_int_equal(ht_get(&fx->view, "/health/ready", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    json_t *doc = ht_json(&r);
    json_t *failing =
        json_object_get(json_object_get(json_object_get(doc, "error"), "details"), "failing");
    bool database = false;
    size_t i;
    json_t *item;
    json_array_foreach(failing, i, item)
    {
        database = database || strcmp(json_string_value(item), "database") == 0;
    }
    assert_true(database);
    json_decref(doc);
    ht_response_free(&r);
    assert_int_equal(ht_get(&fx->view, "/health/detailed", HT_H2C, &r), CURLE_OK);
    assert_non_null(strstr(r.body, "\"db\":{\"ok\":false"));
    ht_response_free(&r);
    s_stop(fx);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_ready_with_the_real_persist_actor),
        cmocka_unit_test(test_health_not_ready_while_the_database_is_away),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
