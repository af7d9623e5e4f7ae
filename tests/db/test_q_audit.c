/* label: db */
/*  test_q_audit: the audit chain's statements (cd_q_audit) and its
    verification routine (cd_auditlog_verify) against a real PostgreSQL:
    batches append in chain order, the head and the ordered pages read
    them back, a second writer linking to the same row is refused (the
    chain cannot fork), and the verifier pages through and names what was
    edited or deleted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_q_support.h"

#include "cd_audit.h"
#include "cd_auditlog.h"
#include "cd_q_audit.h"

#include <sodium.h>

//  Seals n rows after prev (NULL: the chain's start) into a JSON array for
//  "audit.append"; head gets the last hash. Caller frees.
static char *
s_batch(int n, const uint8_t *prev, int first_user, uint8_t head[32])
{
    json_t *rows = json_array();
    uint8_t last[32] = {0};
    const uint8_t *link = prev;
    for (int i = 0; i < n; i++) {
        char ts[CD_AUDIT_TS_LEN + 1], target[32];
        cd_audit_ts((int64_t)time(NULL) * 1000000 + i * 7, ts);
        snprintf(target, sizeof target, "/api/v1/tasks/%d", first_user + i);
        cd_audit_row_t row = {.ts = ts,
                              .user_id = first_user + i,
                              .action = "tasks.create",
                              .target = target,
                              .details = "{\"method\":\"POST\",\"status\":201}",
                              .ip = "127.0.0.1"};
        assert_int_equal(cd_audit_seal(&row, link, NULL), 0);
        char prev_hex[65], hash_hex[65];
        sodium_bin2hex(prev_hex, sizeof prev_hex, row.prev_hash, 32);
        sodium_bin2hex(hash_hex, sizeof hash_hex, row.hash, 32);
        json_array_append_new(rows, json_pack("{s:s, s:i, s:s, s:s, s:{s:s, s:i}, s:s, s:s, s:s}",
                                              "ts", ts, "user_id", first_user + i, "action",
                                              "tasks.create", "target", target, "details", "method",
                                              "POST", "status", 201, "ip", "127.0.0.1", "prev_hash",
                                              prev_hex, "hash", hash_hex));
        memcpy(last, row.hash, 32);
        link = last;
    }
    memcpy(head, last, 32);
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    return text;
}

static void
test_q_audit_batches_chain_and_cannot_fork(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    assert_int_equal(cd_q_audit_head(fx->db, &out), CD_ENOTFOUND);
    uint8_t head[32], head2[32];
    char *batch = s_batch(3, NULL, 10, head);
    s_ok(fx->db, cd_q_audit_append(fx->db, batch, &out));
    json_t *r = s_parse(out, true);
    assert_int_equal(s_int(r, "count"), 3);
    int64_t last_id = s_int(r, "last_id");
    json_decref(r);
    //  Another writer linking to the start again: refused, nothing written.
    s_sqlstate(fx->db, cd_q_audit_append(fx->db, batch, &out), "23505");
    free(batch);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM audit_logs"), 3);
    //  The head is the last row; the next batch links to it.
    s_ok(fx->db, cd_q_audit_head(fx->db, &out));
    r = s_parse(out, true);
    assert_int_equal(s_int(r, "id"), last_id);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, head, 32);
    assert_string_equal(s_str(r, "hash"), hex);
    json_decref(r);
    batch = s_batch(2, head, 20, head2);
    s_ok(fx->db, cd_q_audit_append(fx->db, batch, &out));
    free(out);
    free(batch);
    //  Pages in chain order.
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_audit_chain(fx->db, 0, 2, &page));
    json_t *items = s_parse(page.items, false);
    assert_int_equal(json_array_size(items), 2);
    assert_int_equal(s_int(json_array_get(items, 0), "user_id"), 10);
    assert_int_equal(s_int(json_array_get(items, 1), "user_id"), 11);
    int64_t after = s_int(json_array_get(items, 1), "id");
    json_decref(items);
    assert_non_null(page.next_cursor);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_audit_chain(fx->db, after, 10, &page));
    items = s_parse(page.items, false);
    assert_int_equal(json_array_size(items), 3);
    assert_int_equal(s_int(json_array_get(items, 2), "user_id"), 21);
    json_decref(items);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);
    //  Malformed batches are refused whole.
    assert_int_equal(cd_q_audit_append(fx->db, "[{\"ts\":\"x\"}]", &out), CD_EDB);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM audit_logs"), 5);
}

static void
test_q_audit_verification_finds_edits_and_deletions(void **state)
{
    fixture_t *fx = *state;
    uint8_t head[32];
    char *out = NULL;
    //  More rows than one page of the verifier.
    char *batch = s_batch(1100, NULL, 1, head);
    s_ok(fx->db, cd_q_audit_append(fx->db, batch, &out));
    free(out);
    free(batch);
    cd_audit_finding_t finding;
    int64_t rows = 0;
    s_ok(fx->db, cd_auditlog_verify(fx->db, head, &finding, &rows));
    assert_int_equal(finding.verdict, CD_AUDIT_INTACT);
    assert_int_equal(rows, 1100);
    int64_t id = s_count(fx->db, "SELECT id FROM audit_logs ORDER BY id OFFSET 1050 LIMIT 1");
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE audit_logs SET user_id = 99 WHERE id = %lld", (long long)id);
    s_ok(fx->db, cd_db_exec(fx->db, "BEGIN", NULL));
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    s_ok(fx->db, cd_auditlog_verify(fx->db, head, &finding, &rows));
    assert_int_equal(finding.verdict, CD_AUDIT_EDITED);
    assert_int_equal(finding.id, id);
    s_ok(fx->db, cd_db_exec(fx->db, "ROLLBACK", NULL));
    snprintf(sql, sizeof sql, "DELETE FROM audit_logs WHERE id = %lld", (long long)id);
    s_ok(fx->db, cd_db_exec(fx->db, "BEGIN", NULL));
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    s_ok(fx->db, cd_auditlog_verify(fx->db, head, &finding, &rows));
    assert_int_equal(finding.verdict, CD_AUDIT_DELETED);
    assert_int_equal(finding.id, id + 1);
    s_ok(fx->db, cd_db_exec(fx->db, "ROLLBACK", NULL));
    //  The last row gone: only the expected head shows it.
    s_ok(fx->db, cd_db_exec(fx->db,
                            "DELETE FROM audit_logs WHERE id = (SELECT max(id) FROM"
                            " audit_logs)",
                            NULL));
    s_ok(fx->db, cd_auditlog_verify(fx->db, NULL, &finding, &rows));
    assert_int_equal(finding.verdict, CD_AUDIT_INTACT);
    s_ok(fx->db, cd_auditlog_verify(fx->db, head, &finding, &rows));
    assert_int_equal(finding.verdict, CD_AUDIT_TRUNCATED);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_audit_batches_chain_and_cannot_fork, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_audit_verification_finds_edits_and_deletions,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
