/* label: db */
/*  test_migrate: schema migrations against a real PostgreSQL. */
#include "cd_db.h"
#include "cd_error.h"
#include "cd_migrate.h"
#include "cd_testpg.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    char *conninfo; // the test's own database
    cd_db_t *db;    // a connection to it
} fixture_t;

static int
s_setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(cd_testpg_fresh_db(&fx->conninfo), 0);
    assert_int_equal(cd_db_connect(fx->conninfo, &fx->db, NULL), 0);
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    fixture_t *fx = *state;
    cd_db_close(&fx->db);
    free(fx->conninfo);
    free(fx);
    return 0;
}

static int64_t
s_count(cd_db_t *db, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(cd_db_query_int64(db, sql, 0, NULL, &n), 0);
    return n;
}

static bool
s_table_exists(cd_db_t *db, const char *name)
{
    const char *params[] = {name};
    int64_t n = 0;
    assert_int_equal(
        cd_db_query_int64(db, "SELECT (to_regclass($1) IS NOT NULL)::int", 1, params, &n), 0);
    return n == 1;
}

static void
test_migrate_embedded_list(void **state)
{
    size_t n = 0;
    const cd_migration_t *list = cd_migrate_embedded(&n);
    assert_true(n >= 1);
    assert_int_equal(list[0].version, 1);
    assert_string_equal(list[0].name, "init");
    assert_non_null(strstr(list[0].sql, "CREATE TABLE config"));
    assert_int_equal(cd_migrate_latest(), list[n - 1].version);
    for (size_t i = 1; i < n; i++) {
        assert_true(list[i].version > list[i - 1].version);
    }
}

static void
test_migrate_applies_once(void **state)
{
    fixture_t *fx = *state;
    int version = -1;
    assert_int_equal(cd_migrate_version(fx->db, &version), 0);
    assert_int_equal(version, 0);

    int applied = -1;
    char *err = NULL;
    assert_int_equal(cd_migrate_run(fx->db, &applied, &err), 0);
    assert_null(err);
    assert_int_equal(applied, cd_migrate_latest());
    assert_true(s_table_exists(fx->db, "config"));
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM schema_migrations WHERE version = 1 "
                                     "AND name = 'init' AND applied_at <= now()"),
                     1);
    assert_int_equal(cd_migrate_version(fx->db, &version), 0);
    assert_int_equal(version, cd_migrate_latest());

    //  Nothing left to do the second time.
    assert_int_equal(cd_migrate_run(fx->db, &applied, &err), 0);
    assert_int_equal(applied, 0);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM schema_migrations"),
                     cd_migrate_latest());
}

static const cd_migration_t s_three[] = {
    {1, "a", "CREATE TABLE a (id int PRIMARY KEY)"},
    {2, "b", "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO a VALUES (1)"},
    {3, "c", "INSERT INTO a VALUES (3); INSERT INTO b VALUES (3)"},
};

typedef struct {
    const char *conninfo;       // database both runners migrate
    pthread_barrier_t *barrier; // released when both are connected
    int rc;                     // cd_migrate_run_list's result
    int applied;                // its applied count
    char *err;                  // its message, if any
} runner_t;

static void *
s_runner(void *arg)
{
    runner_t *r = arg;
    cd_db_t *db = NULL;
    r->rc = cd_db_connect(r->conninfo, &db, &r->err);
    pthread_barrier_wait(r->barrier);
    if (r->rc == 0) {
        r->rc = cd_migrate_run_list(db, s_three, 3, &r->applied, &r->err);
    }
    cd_db_close(&db);
    return NULL;
}

static void
test_migrate_concurrent_runs_apply_once(void **state)
{
    fixture_t *fx = *state;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    runner_t runs[2] = {{fx->conninfo, &barrier}, {fx->conninfo, &barrier}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, s_runner, &runs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 2; i++) {
        if (runs[i].rc != 0) {
            fail_msg("runner %d: %s", i, runs[i].err);
        }
        free(runs[i].err);
    }
    assert_int_equal(runs[0].applied + runs[1].applied, 3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM schema_migrations"), 3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM a"), 2);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM b"), 1);
}

static void
test_migrate_refuses_newer_database(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(cd_migrate_run(fx->db, NULL, NULL), 0);
    assert_int_equal(cd_db_exec(fx->db,
                                "INSERT INTO schema_migrations (version, name) "
                                "VALUES (9999, 'from_the_future')",
                                NULL),
                     0);
    int applied = -1;
    char *err = NULL;
    assert_int_equal(cd_migrate_run(fx->db, &applied, &err), CD_EVERSION);
    assert_int_equal(applied, 0);
    char *want = NULL;
    assert_true(asprintf(&want,
                         "database schema version 9999 is newer than this cadred (knows up to "
                         "%d); upgrade cadred",
                         cd_migrate_latest()) > 0);
    assert_string_equal(err, want);
    free(want);
    free(err);
    //  No transaction left open: the connection works normally.
    assert_int_equal(s_count(fx->db, "SELECT 1"), 1);
}

static void
test_migrate_newer_binary_applies_the_rest(void **state)
{
    fixture_t *fx = *state;
    //  An "old binary" knows migration 1; a "new" one knows 1..3.
    int applied = 0;
    assert_int_equal(cd_migrate_run_list(fx->db, s_three, 1, &applied, NULL), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(cd_migrate_run_list(fx->db, s_three, 3, &applied, NULL), 0);
    assert_int_equal(applied, 2);
    //  The old one now refuses the database.
    char *err = NULL;
    assert_int_equal(cd_migrate_run_list(fx->db, s_three, 1, &applied, &err), CD_EVERSION);
    assert_non_null(strstr(err, "version 3 is newer"));
    free(err);
}

static void
test_migrate_failure_rolls_back(void **state)
{
    fixture_t *fx = *state;
    const cd_migration_t list[] = {
        {1, "good", "CREATE TABLE good (id int)"},
        {2, "bad", "CREATE TABLE partial (id int); INSERT INTO good VALUES (1); SELEC broken"},
        {3, "after", "CREATE TABLE after_bad (id int)"},
    };
    int applied = -1;
    char *err = NULL;
    assert_int_equal(cd_migrate_run_list(fx->db, list, 3, &applied, &err), CD_EDB);
    assert_int_equal(applied, 1);
    assert_non_null(err);
    assert_non_null(strstr(err, "migration 0002_bad failed"));
    assert_non_null(strstr(err, "SQLSTATE 42601"));
    free(err);
    //  The failure is still on the connection, after the rollback.
    assert_true(cd_db_error_is(cd_db_error(fx->db), "42601"));

    assert_true(s_table_exists(fx->db, "good"));
    assert_false(s_table_exists(fx->db, "partial"));
    assert_false(s_table_exists(fx->db, "after_bad"));
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM good"), 0);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM schema_migrations WHERE version = 2"),
                     0);
    assert_int_equal(s_count(fx->db, "SELECT max(version) FROM schema_migrations"), 1);

    //  Fixed, it goes through.
    const cd_migration_t fixed[] = {
        list[0],
        {2, "bad", "CREATE TABLE partial (id int)"},
        list[2],
    };
    assert_int_equal(cd_migrate_run_list(fx->db, fixed, 3, &applied, NULL), 0);
    assert_int_equal(applied, 2);
}

static void
test_migrate_rejects_unsorted_list(void **state)
{
    fixture_t *fx = *state;
    const cd_migration_t list[] = {
        {2, "b", "SELECT 1"},
        {1, "a", "SELECT 1"},
    };
    char *err = NULL;
    assert_int_equal(cd_migrate_run_list(fx->db, list, 2, NULL, &err), CD_EINVAL);
    free(err);
    const cd_migration_t dup[] = {{1, "a", "SELECT 1"}, {1, "b", "SELECT 1"}};
    assert_int_equal(cd_migrate_run_list(fx->db, dup, 2, NULL, NULL), CD_EINVAL);
    assert_false(s_table_exists(fx->db, "schema_migrations"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_embedded_list),
        cmocka_unit_test_setup_teardown(test_migrate_applies_once, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_concurrent_runs_apply_once, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_refuses_newer_database, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_newer_binary_applies_the_rest, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_failure_rolls_back, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_rejects_unsorted_list, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
