/* label: db */
/*  test_audit_chain: the audit hash chain (engine/cd_audit) across a real
    PostgreSQL. Rows sealed by a writer and inserted with their own ts,
    prev_hash and hash come back through cd_q_audit_list (jsonb details
    reformatted, inet re-printed) and verify; then SQL that edits, deletes
    or inserts rows behind the writer's back is caught and the row named. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_q_support.h"

#include "cd_audit.h"
#include "cd_q_system.h"

#include <sodium.h>

//  What the writer inserts (ts first, then the rest as cd_audit_row_t).
static const char *const s_insert_sql =
    "INSERT INTO audit_logs (ts, user_id, action, target, details, ip, prev_hash, hash)"
    " VALUES ($1::timestamptz, $2::bigint, $3, $4, coalesce($5::jsonb, '{}'), $6::inet,"
    " decode($7, 'hex'), decode($8, 'hex'))";

//  Seals row after prev (NULL: the first) and inserts it; head gets its hash.
static void
s_append(cd_db_t *db, cd_audit_row_t *row, const uint8_t *prev, uint8_t head[32])
{
    const char *why = NULL;
    if (cd_audit_seal(row, prev, &why) != 0) {
        fail_msg("seal: %s", why);
    }
    char user[24], prev_hex[65], hash_hex[65];
    snprintf(user, sizeof user, "%lld", (long long)row->user_id);
    sodium_bin2hex(prev_hex, sizeof prev_hex, row->prev_hash, 32);
    sodium_bin2hex(hash_hex, sizeof hash_hex, row->hash, 32);
    const char *params[] = {row->ts,      row->user_id == CD_AUDIT_NO_USER ? NULL : user,
                            row->action,  row->target,
                            row->details, row->ip,
                            prev_hex,     hash_hex};
    if (cd_db_exec_params(db, s_insert_sql, 8, params, NULL) != 0) {
        fail_msg("insert: %s", cd_db_error(db) ? cd_db_error(db)->message : "?");
    }
    memcpy(head, row->hash, 32);
}

//  Every row through the query layer, verified in id order.
static cd_audit_verdict_t
s_verify(cd_db_t *db, const uint8_t *head, cd_audit_finding_t *finding)
{
    cd_q_audit_filter_t filter = {.user_id = CD_Q_NULL, .limit = CD_Q_LIMIT_MAX};
    cd_q_page_t page = {0};
    assert_int_equal(cd_q_audit_list(db, &filter, &page), 0);
    cd_audit_row_t *rows = NULL;
    size_t n = 0;
    const char *why = NULL;
    if (cd_audit_rows_parse(page.items, strlen(page.items), &rows, &n, &why) != 0) {
        fail_msg("parse: %s in %s", why, page.items);
    }
    cd_q_page_fini(&page);
    //  The list runs newest first.
    for (size_t i = 0; i < n / 2; i++) {
        cd_audit_row_t t = rows[i];
        rows[i] = rows[n - 1 - i];
        rows[n - 1 - i] = t;
    }
    cd_audit_verdict_t verdict = cd_audit_verify(rows, n, head, finding);
    cd_audit_rows_free(&rows, n);
    return verdict;
}

//  Six rows whose values PostgreSQL reformats on the way back.
static void
s_write_chain(cd_db_t *db, uint8_t head[32])
{
    static const char *const details[] = {
        "{\"title\": \"t\", \"priority\": 1e1}",
        "{\"b\":1,\"a\":{\"z\":[1.50,-0.0,true,null],\"y\":\"\\u00e9\"}}",
        NULL,
        "{\"big\":12345678901234567890,\"tiny\":1E-7}",
        "{\"long_key\":1,\"k\":2}",
        "[\"not\", \"an\", \"object\"]",
    };
    static const char *const ips[] = {
        "10.0.0.1", "2001:DB8:0:0:0:0:0:1", NULL, "::FFFF:192.168.0.9", "127.0.0.1", "::1"};
    int64_t now = (int64_t)time(NULL) * 1000000 + 123456;
    uint8_t prev[32];
    for (int i = 0; i < 6; i++) {
        char ts[CD_AUDIT_TS_LEN + 1];
        cd_audit_ts(now + i * 1001, ts);
        char target[32];
        snprintf(target, sizeof target, "task/%d", i + 1);
        cd_audit_row_t row = {.ts = ts,
                              .user_id = i == 2 ? CD_AUDIT_NO_USER : 100 + i,
                              .action = i % 2 ? "task.update" : "task.create",
                              .target = i == 4 ? NULL : target,
                              .details = details[i],
                              .ip = ips[i]};
        s_append(db, &row, i ? prev : NULL, head);
        memcpy(prev, head, 32);
    }
}

static void
test_audit_chain_rows_written_by_the_writer_verify(void **state)
{
    fixture_t *fx = *state;
    uint8_t head[32];
    s_write_chain(fx->db, head);
    cd_audit_finding_t finding;
    assert_int_equal(s_verify(fx->db, head, &finding), CD_AUDIT_INTACT);
    assert_int_equal(s_verify(fx->db, NULL, &finding), CD_AUDIT_INTACT);
}

static void
test_audit_chain_sql_edits_are_caught(void **state)
{
    fixture_t *fx = *state;
    uint8_t head[32];
    s_write_chain(fx->db, head);
    int64_t id3 = 0;
    assert_int_equal(
        cd_db_query_int64(fx->db, "SELECT id FROM audit_logs ORDER BY id OFFSET 2", 0, NULL, &id3),
        0);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)id3);
    const char *params[] = {id};
    static const char *const edits[] = {
        "UPDATE audit_logs SET details = '{\"title\": \"other\"}' WHERE id = $1",
        "UPDATE audit_logs SET user_id = 1 WHERE id = $1",
        "UPDATE audit_logs SET ts = ts + interval '1 microsecond' WHERE id = $1",
        "UPDATE audit_logs SET ip = '10.9.9.9' WHERE id = $1",
    };
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        assert_int_equal(cd_db_exec(fx->db, "BEGIN", NULL), 0);
        assert_int_equal(cd_db_exec_params(fx->db, edits[e], 1, params, NULL), 0);
        cd_audit_finding_t finding;
        assert_int_equal(s_verify(fx->db, head, &finding), CD_AUDIT_EDITED);
        assert_int_equal(finding.id, id3);
        assert_int_equal(finding.index, 2);
        assert_int_equal(cd_db_exec(fx->db, "ROLLBACK", NULL), 0);
    }
    cd_audit_finding_t finding;
    assert_int_equal(s_verify(fx->db, head, &finding), CD_AUDIT_INTACT);
}

static void
test_audit_chain_sql_deletes_and_inserts_are_caught(void **state)
{
    fixture_t *fx = *state;
    uint8_t head[32];
    s_write_chain(fx->db, head);
    int64_t first = 0;
    assert_int_equal(cd_db_query_int64(fx->db, "SELECT min(id) FROM audit_logs", 0, NULL, &first),
                     0);
    cd_audit_finding_t finding;
    //  A row in the middle: the next one is named.
    assert_int_equal(cd_db_exec(fx->db, "BEGIN", NULL), 0);
    assert_int_equal(
        cd_db_exec(fx->db, "DELETE FROM audit_logs WHERE id = (SELECT min(id) + 3 FROM audit_logs)",
                   NULL),
        0);
    assert_int_equal(s_verify(fx->db, head, &finding), CD_AUDIT_DELETED);
    assert_int_equal(finding.id, first + 4);
    assert_int_equal(cd_db_exec(fx->db, "ROLLBACK", NULL), 0);
    //  The last row: the head shows it.
    assert_int_equal(cd_db_exec(fx->db, "BEGIN", NULL), 0);
    assert_int_equal(
        cd_db_exec(fx->db, "DELETE FROM audit_logs WHERE id = (SELECT max(id) FROM audit_logs)",
                   NULL),
        0);
    assert_int_equal(s_verify(fx->db, head, &finding), CD_AUDIT_TRUNCATED);
    assert_int_equal(cd_db_exec(fx->db, "ROLLBACK", NULL), 0);
    //  A copy of row 2 inserted at the end, hashes and all: its link is a
    //  row already linked to. The unique index on prev_hash refuses it
    //  (0006_auth.sql); someone who can drop the index is still caught.
    static const char *const copy_sql =
        "INSERT INTO audit_logs (ts, user_id, action, target, details, ip, prev_hash,"
        " hash) SELECT ts, user_id, action, target, details, ip, prev_hash, hash FROM"
        " audit_logs WHERE id = (SELECT min(id) + 1 FROM audit_logs)";
    assert_int_equal(cd_db_exec(fx->db, copy_sql, NULL), CD_EDB);
    assert_string_equal(cd_db_error(fx->db)->sqlstate, "23505");
    assert_int_equal(cd_db_exec(fx->db, "BEGIN", NULL), 0);
    assert_int_equal(cd_db_exec(fx->db, "DROP INDEX audit_logs_prev_hash_key", NULL), 0);
    assert_int_equal(
        cd_db_exec(fx->db,
                   "INSERT INTO audit_logs (ts, user_id, action, target, details, ip, prev_hash,"
                   " hash) SELECT ts, user_id, action, target, details, ip, prev_hash, hash FROM"
                   " audit_logs WHERE id = (SELECT min(id) + 1 FROM audit_logs)",
                   NULL),
        0);
    assert_int_equal(s_verify(fx->db, head, &finding), CD_AUDIT_INSERTED);
    assert_int_equal(finding.index, 6);
    assert_int_equal(cd_db_exec(fx->db, "ROLLBACK", NULL), 0);
    assert_int_equal(s_verify(fx->db, head, &finding), CD_AUDIT_INTACT);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_audit_chain_rows_written_by_the_writer_verify, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain_sql_edits_are_caught, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain_sql_deletes_and_inserts_are_caught,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
