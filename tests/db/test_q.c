/* label: db */
/*  test_q: the result-set reader and transaction helpers of cd_db, and
    the cd_q helpers every query module is built on, against a real
    PostgreSQL. */
#include "cd_db.h"
#include "cd_error.h"
#include "cd_q.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

static void
test_q_rows_reader(void **state)
{
    fixture_t *fx = *state;
    cd_db_rows_t *rows = NULL;
    const char *params[] = {"7", NULL};
    s_ok(fx->db, cd_db_query(fx->db,
                             "SELECT n AS \"Num\", CASE WHEN n % 2 = 0 THEN NULL ELSE 'odd' END "
                             "AS kind, $2::text AS nothing FROM generate_series(1, $1::int) n",
                             2, params, &rows));
    assert_non_null(rows);
    assert_null(cd_db_error(fx->db));
    assert_int_equal(cd_db_rows_count(rows), 7);
    assert_int_equal(cd_db_rows_ncols(rows), 3);
    assert_int_equal(cd_db_rows_affected(rows), 7);
    //  Column names are matched exactly.
    assert_int_equal(cd_db_rows_col(rows, "Num"), 0);
    assert_int_equal(cd_db_rows_col(rows, "num"), -1);
    assert_int_equal(cd_db_rows_col(rows, "kind"), 1);
    assert_int_equal(cd_db_rows_col(rows, "missing"), -1);
    assert_string_equal(cd_db_rows_get(rows, 0, 0), "1");
    assert_string_equal(cd_db_rows_get(rows, 0, 1), "odd");
    assert_null(cd_db_rows_get(rows, 1, 1));
    assert_true(cd_db_rows_isnull(rows, 1, 1));
    assert_false(cd_db_rows_isnull(rows, 0, 1));
    assert_true(cd_db_rows_isnull(rows, 0, 2));
    //  Out of range reads as NULL, never a crash.
    assert_null(cd_db_rows_get(rows, 7, 0));
    assert_null(cd_db_rows_get(rows, -1, 0));
    assert_null(cd_db_rows_get(rows, 0, 3));
    assert_true(cd_db_rows_isnull(rows, 0, -1));
    int64_t v = 0;
    assert_int_equal(cd_db_rows_int64(rows, 6, 0, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(cd_db_rows_int64(rows, 0, 1, &v), CD_EPROTO);
    assert_int_equal(cd_db_rows_int64(rows, 1, 1, &v), CD_ENOTFOUND);
    assert_int_equal(cd_db_rows_int64(rows, 99, 0, &v), CD_ENOTFOUND);
    cd_db_rows_destroy(&rows);
    assert_null(rows);
    cd_db_rows_destroy(&rows);
    cd_db_rows_destroy(NULL);

    //  A command: no rows, its count.
    s_ok(fx->db, cd_db_query(fx->db, "CREATE TABLE t (a int)", 0, NULL, &rows));
    assert_int_equal(cd_db_rows_count(rows), 0);
    assert_int_equal(cd_db_rows_affected(rows), 0);
    cd_db_rows_destroy(&rows);
    s_ok(fx->db, cd_db_query(fx->db, "INSERT INTO t SELECT generate_series(1, 3)", 0, NULL, &rows));
    assert_int_equal(cd_db_rows_affected(rows), 3);
    cd_db_rows_destroy(&rows);

    //  A failure: no rows object, the SQLSTATE kept.
    rows = (cd_db_rows_t *)&rows; // must be overwritten
    s_sqlstate(fx->db, cd_db_query(fx->db, "SELECT 1/0", 0, NULL, &rows), "22012");
    assert_null(rows);
    s_sqlstate(fx->db, cd_db_query(fx->db, "SELEKT", 0, NULL, &rows), "42601");
    assert_null(rows);
}

static void
test_q_transactions(void **state)
{
    fixture_t *fx = *state;
    s_ok(fx->db, cd_db_exec(fx->db, "CREATE TABLE t (a int PRIMARY KEY)", NULL));
    assert_false(cd_db_in_transaction(fx->db));
    s_ok(fx->db, cd_db_begin(fx->db));
    assert_true(cd_db_in_transaction(fx->db));
    s_ok(fx->db, cd_db_exec(fx->db, "INSERT INTO t VALUES (1)", NULL));
    s_ok(fx->db, cd_db_commit(fx->db));
    assert_false(cd_db_in_transaction(fx->db));

    s_ok(fx->db, cd_db_begin(fx->db));
    s_ok(fx->db, cd_db_exec(fx->db, "INSERT INTO t VALUES (2)", NULL));
    s_ok(fx->db, cd_db_rollback(fx->db));
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM t"), 1);

    //  A failed statement: rollback keeps the error that caused it.
    s_ok(fx->db, cd_db_begin(fx->db));
    s_sqlstate(fx->db, cd_db_exec(fx->db, "INSERT INTO t VALUES (1)", NULL), "23505");
    assert_true(cd_db_in_transaction(fx->db));
    assert_int_equal(cd_db_rollback(fx->db), 0);
    s_sqlstate(fx->db, CD_EDB, "23505");
    assert_false(cd_db_in_transaction(fx->db));

    //  COMMIT of a failed transaction is not a success.
    s_ok(fx->db, cd_db_begin(fx->db));
    cd_db_exec(fx->db, "INSERT INTO t VALUES (1)", NULL);
    s_sqlstate(fx->db, cd_db_commit(fx->db), "25P02");
    assert_false(cd_db_in_transaction(fx->db));

    //  Rollback with nothing open is harmless.
    assert_int_equal(cd_db_rollback(fx->db), 0);
}

static void
test_q_helpers(void **state)
{
    fixture_t *fx = *state;
    char buf[24];
    assert_null(cd__q_i64(buf, CD_Q_NULL));
    assert_string_equal(cd__q_i64(buf, -42), "-42");
    assert_string_equal(cd__q_i64(buf, INT64_MAX), "9223372036854775807");
    assert_int_equal(cd__q_limit(0), CD_Q_LIMIT_DEFAULT);
    assert_int_equal(cd__q_limit(-5), CD_Q_LIMIT_DEFAULT);
    assert_int_equal(cd__q_limit(7), 7);
    assert_int_equal(cd__q_limit(1000000), CD_Q_LIMIT_MAX);

    char *out = NULL;
    s_ok(fx->db, cd__q_one(fx->db, "SELECT json_build_object('a', 1)", 0, NULL, &out));
    assert_string_equal(out, "{\"a\" : 1}");
    free(out);
    assert_int_equal(cd__q_one(fx->db, "SELECT 1 WHERE false", 0, NULL, &out), CD_ENOTFOUND);
    assert_null(out);

    //  Compare-and-set outcomes.
    assert_int_equal(cd__q_cas(fx->db, "SELECT true, '{\"x\":1}'", 0, NULL, &out), 0);
    assert_string_equal(out, "{\"x\":1}");
    free(out);
    assert_int_equal(cd__q_cas(fx->db, "SELECT false, '{\"x\":2}'", 0, NULL, &out), CD_ESTATE);
    assert_string_equal(out, "{\"x\":2}");
    free(out);
    assert_int_equal(cd__q_cas(fx->db, "SELECT true, 'x' WHERE false", 0, NULL, &out),
                     CD_ENOTFOUND);
    assert_null(out);
    assert_int_equal(cd__q_cas(fx->db, "SELECT false, 'x'", 0, NULL, NULL), CD_ESTATE);
    s_sqlstate(fx->db, cd__q_cas(fx->db, "SELECT 1/0, 'x'", 0, NULL, &out), "22012");

    //  Pages: limit + 1 rows tell that another page follows.
    const char *sql = "SELECT n, json_build_object('id', n) FROM generate_series(1, 5) n"
                      " WHERE $1::int IS NULL OR n > $1 ORDER BY n LIMIT $2";
    cd_q_page_t page = {0};
    const char *params[] = {NULL, NULL};
    s_ok(fx->db, cd__q_page(fx->db, sql, 2, params, 2, &page));
    assert_int_equal(page.count, 2);
    assert_string_equal(page.items, "[{\"id\" : 1},{\"id\" : 2}]");
    assert_string_equal(page.next_cursor, "2");
    params[0] = "4";
    cd_q_page_t last = {0};
    s_ok(fx->db, cd__q_page(fx->db, sql, 2, params, 2, &last));
    assert_int_equal(last.count, 1);
    assert_null(last.next_cursor);
    cd_q_page_fini(&last);
    params[0] = "2";
    s_ok(fx->db, cd__q_page(fx->db, sql, 2, params, 3, &last));
    assert_int_equal(last.count, 3);
    assert_null(last.next_cursor); // exactly full: no further page
    cd_q_page_fini(&last);
    cd_q_page_fini(&page);
    cd_q_page_fini(&page);
    cd_q_page_fini(NULL);
    assert_null(page.items);

    s_ok(fx->db, cd__q_all(fx->db, "SELECT NULL::json UNION ALL SELECT '[1]'", 0, NULL, &page));
    assert_int_equal(page.count, 2);
    assert_string_equal(page.items, "[null,[1]]");
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);

    //  Writes: touching nothing is CD_ENOTFOUND.
    s_ok(fx->db, cd_db_exec(fx->db, "CREATE TABLE t (a int)", NULL));
    int64_t n = -1;
    assert_int_equal(cd__q_write(fx->db, "DELETE FROM t", 0, NULL, &n), CD_ENOTFOUND);
    assert_int_equal(n, 0);
    s_ok(fx->db, cd__q_write(fx->db, "INSERT INTO t VALUES (1), (2)", 0, NULL, &n));
    assert_int_equal(n, 2);

    //  Transactions: owned when idle, joined otherwise.
    bool own = false;
    s_ok(fx->db, cd__q_tx_begin(fx->db, &own));
    assert_true(own);
    s_ok(fx->db, cd_db_exec(fx->db, "INSERT INTO t VALUES (3)", NULL));
    s_ok(fx->db, cd__q_tx_end(fx->db, own, 0));
    assert_false(cd_db_in_transaction(fx->db));
    s_ok(fx->db, cd__q_tx_begin(fx->db, &own));
    s_ok(fx->db, cd_db_exec(fx->db, "INSERT INTO t VALUES (4)", NULL));
    assert_int_equal(cd__q_tx_end(fx->db, own, CD_EINVAL), CD_EINVAL); // rolled back
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM t"), 3);

    s_ok(fx->db, cd_db_begin(fx->db));
    s_ok(fx->db, cd__q_tx_begin(fx->db, &own));
    assert_false(own);
    s_ok(fx->db, cd_db_exec(fx->db, "INSERT INTO t VALUES (5)", NULL));
    s_ok(fx->db, cd__q_tx_end(fx->db, own, 0));
    assert_true(cd_db_in_transaction(fx->db)); // still the caller's
    s_ok(fx->db, cd_db_rollback(fx->db));
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM t"), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_rows_reader, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_transactions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_helpers, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
