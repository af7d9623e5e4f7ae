/* label: db */
/*  test_db: cd_db against a real PostgreSQL from the fixture. */
#include "cd_db.h"
#include "cd_error.h"
#include "cd_testpg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int
s_setup(void **state)
{
    char *conninfo = NULL;
    assert_int_equal(cd_testpg_fresh_db(&conninfo), 0);
    cd_db_t *db = NULL;
    char *err = NULL;
    int rc = cd_db_connect(conninfo, &db, &err);
    free(conninfo);
    if (rc != 0) {
        fail_msg("connect: %s", err);
    }
    assert_null(err);
    *state = db;
    return 0;
}

static int
s_teardown(void **state)
{
    cd_db_t *db = *state;
    cd_db_close(&db);
    return 0;
}

static void
test_db_connect_failure_message(void **state)
{
    cd_db_t *db = NULL;
    char *err = NULL;
    int rc = cd_db_connect("host=/nonexistent/cadre port=5432 dbname=x user=x", &db, &err);
    assert_int_equal(rc, CD_ECONN);
    assert_null(db);
    assert_non_null(err);
    assert_non_null(strstr(err, "could not connect to PostgreSQL"));
    assert_non_null(strstr(err, "/nonexistent/cadre"));
    free(err);

    rc = cd_db_connect("no_such_option=1", &db, &err);
    assert_int_equal(rc, CD_EINVAL);
    assert_non_null(strstr(err, "no_such_option"));
    free(err);

    //  A string holding a password is not echoed back.
    rc = cd_db_connect("password=hunter2 broken", &db, &err);
    assert_int_equal(rc, CD_EINVAL);
    assert_null(strstr(err, "hunter2"));
    free(err);

    rc = cd_db_connect(NULL, &db, NULL);
    assert_int_equal(rc, CD_EINVAL);
}

static void
test_db_close_twice(void **state)
{
    char *conninfo = NULL;
    assert_int_equal(cd_testpg_fresh_db(&conninfo), 0);
    cd_db_t *db = NULL;
    assert_int_equal(cd_db_connect(conninfo, &db, NULL), 0);
    free(conninfo);
    assert_true(cd_db_connected(db));
    cd_db_close(&db);
    assert_null(db);
    cd_db_close(&db);
    cd_db_close(NULL);
}

static void
test_db_exec_syntax_error_keeps_sqlstate(void **state)
{
    cd_db_t *db = *state;
    char *err = NULL;
    assert_int_equal(cd_db_exec(db, "SELEC 1", &err), CD_EDB);
    const cd_db_error_t *e = cd_db_error(db);
    assert_non_null(e);
    assert_string_equal(e->sqlstate, "42601");
    assert_true(cd_db_error_is(e, "42601"));
    assert_false(cd_db_error_is(e, "23505"));
    assert_non_null(strstr(e->message, "syntax error"));
    assert_non_null(strstr(err, "(SQLSTATE 42601)"));
    free(err);

    //  Success clears the last error; the connection is still usable.
    assert_int_equal(cd_db_exec(db, "SELECT 1", &err), 0);
    assert_null(err);
    assert_null(cd_db_error(db));
    assert_false(cd_db_error_is(cd_db_error(db), "42601"));
}

static void
test_db_unique_violation_detail(void **state)
{
    cd_db_t *db = *state;
    assert_int_equal(cd_db_exec(db, "CREATE TABLE t (id int PRIMARY KEY, name text)", NULL), 0);
    const char *params[] = {"1", "one"};
    int64_t rows = -1;
    assert_int_equal(
        cd_db_exec_params(db, "INSERT INTO t (id, name) VALUES ($1, $2)", 2, params, &rows), 0);
    assert_int_equal(rows, 1);
    int rc = cd_db_exec_params(db, "INSERT INTO t (id, name) VALUES ($1, $2)", 2, params, &rows);
    assert_int_equal(rc, CD_EDB);
    const cd_db_error_t *e = cd_db_error(db);
    assert_string_equal(e->sqlstate, "23505");
    assert_string_equal(e->constraint, "t_pkey");
    assert_non_null(e->detail);
    assert_non_null(strstr(e->detail, "(id)=(1)"));
    char *text = cd_db_error_format(e);
    assert_non_null(strstr(text, "23505"));
    assert_non_null(strstr(text, "detail: Key (id)=(1)"));
    free(text);

    //  Parameters are values, never SQL.
    const char *evil[] = {"2", "x'); DROP TABLE t; --"};
    assert_int_equal(cd_db_exec_params(db, "INSERT INTO t VALUES ($1, $2)", 2, evil, NULL), 0);
    int64_t n = 0;
    assert_int_equal(cd_db_query_int64(db, "SELECT count(*) FROM t", 0, NULL, &n), 0);
    assert_int_equal(n, 2);
    //  UPDATE reports rows affected.
    assert_int_equal(cd_db_exec_params(db, "UPDATE t SET name = 'z'", 0, NULL, &rows), 0);
    assert_int_equal(rows, 2);
}

static void
test_db_query_int64_params(void **state)
{
    cd_db_t *db = *state;
    const char *params[] = {"40", "2"};
    int64_t v = 0;
    assert_int_equal(cd_db_query_int64(db, "SELECT $1::bigint + $2::bigint", 2, params, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(cd_db_query_int64(db, "SELECT 9223372036854775807", 0, NULL, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(cd_db_query_int64(db, "SELECT 1 WHERE false", 0, NULL, &v), CD_ENOTFOUND);
    assert_int_equal(cd_db_query_int64(db, "SELECT NULL::int", 0, NULL, &v), CD_ENOTFOUND);
    assert_int_equal(cd_db_query_int64(db, "SELECT 'abc'", 0, NULL, &v), CD_EPROTO);
    assert_int_equal(cd_db_query_int64(db, "SELECT 1.5", 0, NULL, &v), CD_EPROTO);
    const char *nul[] = {NULL};
    assert_int_equal(cd_db_query_int64(db, "SELECT $1::int IS NULL", 1, nul, &v), CD_EPROTO);
    assert_int_equal(cd_db_query_int64(db, "SELECT ($1::int IS NULL)::int", 1, nul, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(cd_db_query_int64(db, "SELECT * FROM no_such_table", 0, NULL, &v), CD_EDB);
    assert_string_equal(cd_db_error(db)->sqlstate, "42P01");

    char *text = NULL;
    const char *p[] = {"héllo"};
    assert_int_equal(cd_db_query_text(db, "SELECT upper($1)", 1, p, &text), 0);
    assert_string_equal(text, "HÉLLO");
    free(text);
    assert_int_equal(cd_db_query_text(db, "SELECT NULL::text", 0, NULL, &text), CD_ENOTFOUND);
    assert_null(text);
}

static void
test_db_quote_ident(void **state)
{
    cd_db_t *db = *state;
    char *q = cd_db_quote_ident(db, "we\"ird name");
    assert_string_equal(q, "\"we\"\"ird name\"");
    char *sql = NULL;
    assert_true(asprintf(&sql, "CREATE TABLE %s (x int)", q) > 0);
    assert_int_equal(cd_db_exec(db, sql, NULL), 0);
    free(sql);
    free(q);
}

static void
test_db_connection_lost_then_reset(void **state)
{
    cd_db_t *db = *state;
    int64_t pid = 0;
    assert_int_equal(cd_db_query_int64(db, "SELECT pg_backend_pid()", 0, NULL, &pid), 0);
    cd_db_t *other = NULL;
    char *conninfo = NULL;
    assert_int_equal(cd_testpg_fresh_db(&conninfo), 0);
    assert_int_equal(cd_db_connect(conninfo, &other, NULL), 0);
    free(conninfo);
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "%lld", (long long)pid);
    const char *params[] = {pidtext};
    int64_t ok = 0;
    assert_int_equal(
        cd_db_query_int64(other, "SELECT pg_terminate_backend($1::int)::int", 1, params, &ok), 0);
    assert_int_equal(ok, 1);
    cd_db_close(&other);

    //  The server ends the session with 57P01; either way it is CD_ECONN.
    int64_t v = 0;
    assert_int_equal(cd_db_query_int64(db, "SELECT 1", 0, NULL, &v), CD_ECONN);
    assert_non_null(cd_db_error(db));
    assert_int_equal(cd_db_reset(db), 0);
    assert_true(cd_db_connected(db));
    assert_int_equal(cd_db_query_int64(db, "SELECT 1", 0, NULL, &v), 0);
}

static const char s_twice[] = "SELECT $1::int * 2";

static void
test_db_query_prepared(void **state)
{
    cd_db_t *db = *state;
    for (int i = 0; i < 3; i++) {
        char in[16];
        snprintf(in, sizeof in, "%d", i + 20);
        const char *params[] = {in};
        cd_db_rows_t *rows = NULL;
        assert_int_equal(cd_db_query_prepared(db, s_twice, 1, params, &rows), 0);
        int64_t v = 0;
        assert_int_equal(cd_db_rows_int64(rows, 0, 0, &v), 0);
        assert_int_equal(v, 2 * (i + 20));
        cd_db_rows_destroy(&rows);
    }
    //  Prepared once in the session.
    int64_t n = 0;
    assert_int_equal(cd_db_query_int64(db,
                                       "SELECT count(*) FROM pg_prepared_statements"
                                       " WHERE statement = 'SELECT $1::int * 2'",
                                       0, NULL, &n),
                     0);
    assert_int_equal(n, 1);
    //  A bad value fails the execution with its SQLSTATE; a statement that
    //  does not parse fails the preparation, and nothing is kept.
    const char *bad[] = {"x"};
    cd_db_rows_t *rows = NULL;
    assert_int_equal(cd_db_query_prepared(db, s_twice, 1, bad, &rows), CD_EDB);
    assert_true(cd_db_error_is(cd_db_error(db), "22P02"));
    assert_null(rows);
    static const char broken[] = "SELEKT 1";
    assert_int_equal(cd_db_query_prepared(db, broken, 0, NULL, &rows), CD_EDB);
    assert_true(cd_db_error_is(cd_db_error(db), "42601"));
    //  After a reset the statement is prepared again on the new session.
    assert_int_equal(cd_db_reset(db), 0);
    const char *params[] = {"5"};
    assert_int_equal(cd_db_query_prepared(db, s_twice, 1, params, &rows), 0);
    assert_string_equal(cd_db_rows_get(rows, 0, 0), "10");
    cd_db_rows_destroy(&rows);
}

//  Connections run without JIT, unless their connection string says
//  otherwise.
static void
test_db_session_options(void **state)
{
    cd_db_t *db = *state;
    int64_t off = -1;
    assert_int_equal(
        cd_db_query_int64(db, "SELECT (current_setting('jit') = 'off')::int", 0, NULL, &off), 0);
    assert_int_equal(off, 1);
    char *conninfo = NULL;
    assert_int_equal(cd_testpg_fresh_db(&conninfo), 0);
    size_t size = strlen(conninfo) + 32;
    char *mine = malloc(size);
    snprintf(mine, size, "%s options='-c jit=on'", conninfo);
    cd_db_t *other = NULL;
    assert_int_equal(cd_db_connect(mine, &other, NULL), 0);
    assert_int_equal(
        cd_db_query_int64(other, "SELECT (current_setting('jit') = 'off')::int", 0, NULL, &off), 0);
    assert_int_equal(off, 0);
    cd_db_close(&other);
    free(mine);
    free(conninfo);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_db_connect_failure_message),
        cmocka_unit_test_setup_teardown(test_db_session_options, s_setup, s_teardown),
        cmocka_unit_test(test_db_close_twice),
        cmocka_unit_test_setup_teardown(test_db_exec_syntax_error_keeps_sqlstate, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_db_unique_violation_detail, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_db_query_int64_params, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_db_quote_ident, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_db_connection_lost_then_reset, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_db_query_prepared, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
