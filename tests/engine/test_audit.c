/*  cd_audit: the canonical form (exact text; the same bytes for details
    and addresses written the way PostgreSQL reformats them; refusals),
    timestamps, and the chain: intact, an edited row, a deleted row (first,
    middle, last with and without the head), inserted rows (well linked,
    with a made-up link, appended), a row rewritten with a fresh hash,
    verification page by page, and rows read from the query layer's JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_audit.h"
#include "cd_error.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ROWS 8

//  A chain of rows whose strings live in the fixture.
typedef struct {
    cd_audit_row_t rows[N_ROWS + 2]; //  room to insert
    size_t n;
    char ts[N_ROWS + 2][CD_AUDIT_TS_LEN + 1];
    char target[N_ROWS + 2][32];
    char details[N_ROWS + 2][64];
} chain_t;

static void
s_row(chain_t *c, size_t i, int64_t id, int64_t us)
{
    cd_audit_ts(us, c->ts[i]);
    snprintf(c->target[i], sizeof c->target[i], "task/%lld", (long long)id);
    snprintf(c->details[i], sizeof c->details[i], "{\"n\": %lld, \"ok\": true}", (long long)id);
    c->rows[i] = (cd_audit_row_t){.id = id,
                                  .ts = c->ts[i],
                                  .user_id = id % 3 ? id : CD_AUDIT_NO_USER,
                                  .action = "task.create",
                                  .target = c->target[i],
                                  .details = c->details[i],
                                  .ip = id % 2 ? "10.0.0.1" : NULL};
}

//  N_ROWS rows sealed in order, ids 1..N_ROWS.
static void
s_chain(chain_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_ROWS; i++) {
        s_row(c, i, (int64_t)i + 1, 1700000000000000LL + (int64_t)i * 1000);
        const char *why = NULL;
        int rc = cd_audit_seal(&c->rows[i], i ? c->rows[i - 1].hash : NULL, &why);
        if (rc != 0) {
            fail_msg("seal: %s", why);
        }
    }
    c->n = N_ROWS;
}

static void
s_remove(chain_t *c, size_t at)
{
    memmove(&c->rows[at], &c->rows[at + 1], (c->n - at - 1) * sizeof c->rows[0]);
    c->n--;
}

static void
s_insert(chain_t *c, size_t at, const cd_audit_row_t *row)
{
    memmove(&c->rows[at + 1], &c->rows[at], (c->n - at) * sizeof c->rows[0]);
    c->rows[at] = *row;
    c->n++;
}

static void
s_expect(const chain_t *c, const uint8_t *head, cd_audit_verdict_t verdict, size_t index,
         int64_t id)
{
    cd_audit_finding_t finding;
    cd_audit_verdict_t got = cd_audit_verify(c->rows, c->n, head, &finding);
    if (got != verdict ||
        (verdict != CD_AUDIT_INTACT && (finding.index != index || finding.id != id))) {
        fail_msg("expected verdict %d at %zu (id %lld), got %d at %zu (id %lld): %s", verdict,
                 index, (long long)id, got, finding.index, (long long)finding.id, finding.why);
    }
    assert_non_null(finding.why);
}

static char *
s_canonical(const cd_audit_row_t *row)
{
    char *text = NULL;
    size_t len = 0;
    const char *why = NULL;
    int rc = cd_audit_canonical(row, &text, &len, &why);
    if (rc != 0) {
        fail_msg("canonical: %s", why);
    }
    assert_int_equal(len, strlen(text));
    return text;
}

static void
test_audit_canonical_form_is_exact(void **state)
{
    cd_audit_row_t row = {.ts = "2026-11-22T10:00:00.123456Z",
                          .user_id = 7,
                          .action = "task.create",
                          .target = "task/\"42\"\\x",
                          .details = "{ \"b\" : null, \"a\": [1, 2.5, \"x\\n\", -0.0, 1e2, true] }",
                          .ip = "10.0.0.1"};
    char *text = s_canonical(&row);
    assert_string_equal(text, "[\"cadre-audit-1\",\"2026-11-22T10:00:00.123456Z\",7,"
                              "\"task.create\",\"task/\\\"42\\\"\\\\x\","
                              "{\"a\":[1,2.5,\"x\\u000a\",0,100,true],\"b\":null},\"10.0.0.1\"]");
    free(text);
    cd_audit_row_t bare = {
        .ts = "2026-11-22T10:00:00.000000Z", .user_id = CD_AUDIT_NO_USER, .action = "login"};
    text = s_canonical(&bare);
    assert_string_equal(text, "[\"cadre-audit-1\",\"2026-11-22T10:00:00.000000Z\",null,"
                              "\"login\",null,{},null]");
    free(text);
}

//  What the writer hands over and what PostgreSQL gives back (jsonb output,
//  host(inet)) must canonicalise to the same bytes.
static void
test_audit_canonical_form_survives_postgresql_reformatting(void **state)
{
    static const struct {
        const char *written;
        const char *read_back; //  as jsonb prints it
    } details[] = {
        {"{\"b\":1,\"a\":2}", "{\"a\": 2, \"b\": 1}"},
        {"{\"n\":1e2}", "{\"n\": 100}"},
        {"{\"n\":1.50}", "{\"n\": 1.50}"},
        {"{\"n\":-0.0}", "{\"n\": 0.0}"},
        {"{\"n\":0.1}", "{\"n\": 0.1}"},
        {"{\"n\":1E-7}", "{\"n\": 0.0000001}"},
        {"{\"n\":12345678901234567890}", "{\"n\": 12345678901234567890}"},
        {"{\"s\":\"\\u00e9\\u0041\"}", "{\"s\": \"\xc3\xa9\x41\"}"},
        {"{\"s\":\"\\/\"}", "{\"s\": \"/\"}"},
        {"{\"long_key\":1,\"k\":{\"z\":[],\"y\":{}}}",
         "{\"k\": {\"y\": {}, \"z\": []}, \"long_key\": 1}"},
        {"[3, \"x\"]", "[3, \"x\"]"},
        {"\"text\"", "\"text\""},
    };
    for (size_t i = 0; i < sizeof details / sizeof details[0]; i++) {
        cd_audit_row_t a = {.ts = "2026-01-01T00:00:00.000000Z",
                            .user_id = 1,
                            .action = "x",
                            .details = details[i].written};
        cd_audit_row_t b = a;
        b.details = details[i].read_back;
        char *ta = s_canonical(&a);
        char *tb = s_canonical(&b);
        if (strcmp(ta, tb) != 0) {
            fail_msg("%s and %s: %s vs %s", details[i].written, details[i].read_back, ta, tb);
        }
        free(ta);
        free(tb);
    }
    static const struct {
        const char *written;
        const char *read_back; //  as host(inet) prints it
    } ips[] = {
        {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
        {"::FFFF:10.0.0.1", "::ffff:10.0.0.1"},
        {"0:0:0:0:0:0:0:1", "::1"},
        {"192.168.001.002", "192.168.1.2"},
    };
    for (size_t i = 0; i < sizeof ips / sizeof ips[0]; i++) {
        cd_audit_row_t a = {
            .ts = "2026-01-01T00:00:00.000000Z", .user_id = 1, .action = "x", .ip = ips[i].written};
        cd_audit_row_t b = a;
        b.ip = ips[i].read_back;
        const char *why = NULL;
        char *ta = NULL, *tb = NULL;
        size_t len = 0;
        int rc = cd_audit_canonical(&a, &ta, &len, &why);
        if (rc != 0) {
            //  glibc's inet_pton refuses leading zeros in IPv4; then the
            //  writer must not write them (PostgreSQL would print without).
            assert_string_equal(ips[i].written, "192.168.001.002");
            continue;
        }
        tb = s_canonical(&b);
        assert_string_equal(ta, tb);
        free(ta);
        free(tb);
    }
}

static void
test_audit_canonical_form_refuses_what_it_cannot_write(void **state)
{
    static const char *const bad_ts[] = {
        "2026-11-22T10:00:00Z",        "2026-11-22 10:00:00.000000Z",
        "2026-11-22T10:00:00.000000",  "2026-11-22T10:00:00.000000+00",
        "x026-11-22T10:00:00.000000Z", "",
    };
    for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++) {
        cd_audit_row_t row = {.ts = bad_ts[i], .user_id = 1, .action = "x"};
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(cd_audit_canonical(&row, &text, &len, NULL), CD_EINVAL);
        assert_null(text);
    }
    cd_audit_row_t row = {.ts = "2026-11-22T10:00:00.000000Z", .user_id = 1, .action = "x"};
    static const char *const bad_details[] = {"{", "{\"a\":1,\"a\":2}", "nope",
                                              "{\"a\":\"\\u0000\"}", "{} {}"};
    for (size_t i = 0; i < sizeof bad_details / sizeof bad_details[0]; i++) {
        cd_audit_row_t r = row;
        r.details = bad_details[i];
        char *text = NULL;
        size_t len = 0;
        const char *why = NULL;
        assert_int_equal(cd_audit_canonical(&r, &text, &len, &why), CD_EINVAL);
        assert_non_null(why);
    }
    static const char *const bad_ips[] = {"10.0.0.0/8", "localhost", "", "1.2.3.4.5", "::g"};
    for (size_t i = 0; i < sizeof bad_ips / sizeof bad_ips[0]; i++) {
        cd_audit_row_t r = row;
        r.ip = bad_ips[i];
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(cd_audit_canonical(&r, &text, &len, NULL), CD_EINVAL);
    }
    cd_audit_row_t r = row;
    r.action = "";
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(cd_audit_canonical(&r, &text, &len, NULL), CD_EINVAL);
    r.action = NULL;
    assert_int_equal(cd_audit_canonical(&r, &text, &len, NULL), CD_EINVAL);
    static char huge[CD_AUDIT_DETAILS_MAX + 16];
    memset(huge, ' ', sizeof huge - 1);
    huge[0] = '1';
    r = row;
    r.details = huge;
    assert_int_equal(cd_audit_canonical(&r, &text, &len, NULL), CD_ETOOBIG);
    //  seal leaves a row it cannot hash as it was.
    r = row;
    r.ip = "nope";
    memset(r.hash, 0xab, sizeof r.hash);
    assert_int_equal(cd_audit_seal(&r, NULL, NULL), CD_EINVAL);
    assert_int_equal(r.hash[0], 0xab);
}

static void
test_audit_timestamps_are_canonical_utc_microseconds(void **state)
{
    char ts[CD_AUDIT_TS_LEN + 1];
    cd_audit_ts(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000000Z");
    cd_audit_ts(1700000000123456LL, ts);
    assert_string_equal(ts, "2023-11-14T22:13:20.123456Z");
    cd_audit_ts(-1, ts);
    assert_string_equal(ts, "1969-12-31T23:59:59.999999Z");
}

static void
test_audit_intact_chain_verifies_with_and_without_head(void **state)
{
    chain_t c;
    s_chain(&c);
    uint8_t zero[CD_AUDIT_HASH_BYTES] = {0};
    assert_memory_equal(c.rows[0].prev_hash, zero, sizeof zero);
    for (size_t i = 1; i < c.n; i++) {
        assert_memory_equal(c.rows[i].prev_hash, c.rows[i - 1].hash, CD_AUDIT_HASH_BYTES);
    }
    s_expect(&c, NULL, CD_AUDIT_INTACT, 0, 0);
    s_expect(&c, c.rows[c.n - 1].hash, CD_AUDIT_INTACT, 0, 0);
    //  An empty table is intact; against a head it is truncated.
    cd_audit_finding_t finding;
    assert_int_equal(cd_audit_verify(NULL, 0, NULL, &finding), CD_AUDIT_INTACT);
    assert_int_equal(cd_audit_verify(NULL, 0, c.rows[0].hash, &finding), CD_AUDIT_TRUNCATED);
}

static void
test_audit_an_edited_row_is_named(void **state)
{
    chain_t c;
    s_chain(&c);
    c.rows[3].action = "task.delete";
    s_expect(&c, NULL, CD_AUDIT_EDITED, 3, 4);
    s_chain(&c);
    c.rows[0].details = "{\"n\": 1, \"ok\": false}";
    s_expect(&c, NULL, CD_AUDIT_EDITED, 0, 1);
    s_chain(&c);
    c.rows[5].user_id = 1;
    s_expect(&c, NULL, CD_AUDIT_EDITED, 5, 6);
    s_chain(&c);
    c.rows[2].ip = "10.0.0.2";
    s_expect(&c, NULL, CD_AUDIT_EDITED, 2, 3);
    s_chain(&c);
    c.rows[7].ts = "2023-11-14T22:13:20.000000Z";
    s_expect(&c, NULL, CD_AUDIT_EDITED, 7, 8);
    s_chain(&c);
    c.rows[4].prev_hash[0] ^= 1; //  the link is hashed too
    s_expect(&c, NULL, CD_AUDIT_EDITED, 4, 5);
    s_chain(&c);
    c.rows[6].details = "not json"; //  cannot even be read
    s_expect(&c, NULL, CD_AUDIT_UNREADABLE, 6, 7);
}

static void
test_audit_a_deleted_row_is_named(void **state)
{
    chain_t c;
    s_chain(&c);
    uint8_t head[CD_AUDIT_HASH_BYTES];
    memcpy(head, c.rows[c.n - 1].hash, sizeof head);
    s_remove(&c, 3); //  id 4: the gap shows at id 5, now index 3
    s_expect(&c, head, CD_AUDIT_DELETED, 3, 5);
    s_chain(&c);
    s_remove(&c, 0); //  the first row
    s_expect(&c, head, CD_AUDIT_DELETED, 0, 2);
    s_chain(&c);
    s_remove(&c, 2);
    s_remove(&c, 2); //  two in a row
    s_expect(&c, NULL, CD_AUDIT_DELETED, 2, 5);
    //  The last row: only the head shows it.
    s_chain(&c);
    s_remove(&c, c.n - 1);
    s_expect(&c, NULL, CD_AUDIT_INTACT, 0, 0);
    s_expect(&c, head, CD_AUDIT_TRUNCATED, N_ROWS - 1, 0);
}

static void
test_audit_inserted_rows_are_named(void **state)
{
    chain_t c;
    s_chain(&c);
    uint8_t head[CD_AUDIT_HASH_BYTES];
    memcpy(head, c.rows[c.n - 1].hash, sizeof head);
    //  A forger who knows the scheme links the new row properly to row 2...
    cd_audit_row_t forged;
    s_row(&c, N_ROWS, 100, 1700000000000500LL);
    forged = c.rows[N_ROWS];
    assert_int_equal(cd_audit_seal(&forged, c.rows[1].hash, NULL), 0);
    s_insert(&c, 2, &forged);
    //  ...but row 3 still links to row 2, around it.
    s_expect(&c, head, CD_AUDIT_INSERTED, 2, 100);
    //  Two forged rows, linked to each other.
    cd_audit_row_t second;
    s_row(&c, N_ROWS + 1, 101, 1700000000000600LL);
    second = c.rows[N_ROWS + 1];
    assert_int_equal(cd_audit_seal(&second, forged.hash, NULL), 0);
    s_insert(&c, 3, &second);
    s_expect(&c, head, CD_AUDIT_INSERTED, 2, 100);
    //  A row with a made-up link: the next row goes around it.
    s_chain(&c);
    s_row(&c, N_ROWS, 100, 1700000000000500LL);
    forged = c.rows[N_ROWS];
    uint8_t made_up[CD_AUDIT_HASH_BYTES];
    randombytes_buf(made_up, sizeof made_up);
    assert_int_equal(cd_audit_seal(&forged, made_up, NULL), 0);
    s_insert(&c, 5, &forged);
    s_expect(&c, NULL, CD_AUDIT_INSERTED, 5, 100);
    //  A row whose hash does not even match: edited (forged) at once.
    s_chain(&c);
    s_row(&c, N_ROWS, 100, 1700000000000500LL);
    forged = c.rows[N_ROWS];
    memset(forged.hash, 0x11, sizeof forged.hash);
    memcpy(forged.prev_hash, c.rows[4].hash, CD_AUDIT_HASH_BYTES);
    s_insert(&c, 5, &forged);
    s_expect(&c, NULL, CD_AUDIT_EDITED, 5, 100);
    //  Appended after the head: well linked, or with a made-up link.
    s_chain(&c);
    s_row(&c, N_ROWS, 100, 1700000000009000LL);
    assert_int_equal(cd_audit_seal(&c.rows[N_ROWS], c.rows[N_ROWS - 1].hash, NULL), 0);
    c.n++;
    s_expect(&c, NULL, CD_AUDIT_INTACT, 0, 0);
    s_expect(&c, head, CD_AUDIT_INSERTED, N_ROWS, 100);
    assert_int_equal(cd_audit_seal(&c.rows[N_ROWS], made_up, NULL), 0);
    s_expect(&c, head, CD_AUDIT_INSERTED, N_ROWS, 100);
    //  A copy of an earlier row (hashes and all), at the end or between
    //  two rows: it is the row named, with or without the head.
    s_chain(&c);
    cd_audit_row_t copy = c.rows[1];
    copy.id = 100;
    c.rows[c.n++] = copy;
    s_expect(&c, head, CD_AUDIT_INSERTED, N_ROWS, 100);
    s_expect(&c, NULL, CD_AUDIT_INSERTED, N_ROWS, 100);
    s_chain(&c);
    s_insert(&c, 5, &copy);
    s_expect(&c, head, CD_AUDIT_INSERTED, 5, 100);
}

static void
test_audit_a_row_rewritten_with_a_fresh_hash_breaks_the_next_link(void **state)
{
    chain_t c;
    s_chain(&c);
    c.rows[3].action = "task.delete";
    assert_int_equal(cd_audit_seal(&c.rows[3], c.rows[2].hash, NULL), 0);
    //  Row 3 now fits; row 4 links to the old row 3, which is gone.
    s_expect(&c, NULL, CD_AUDIT_DELETED, 4, 5);
}

static void
test_audit_verification_resumes_page_by_page(void **state)
{
    chain_t c;
    s_chain(&c);
    //  Pages of 3: each page starts from the last verified hash.
    const uint8_t *start = NULL;
    for (size_t page = 0; page < c.n; page += 3) {
        cd_audit_verifier_t v;
        cd_audit_verifier_init(&v, start);
        for (size_t i = page; i < page + 3 && i < c.n; i++) {
            assert_true(cd_audit_verifier_feed(&v, &c.rows[i]));
        }
        size_t last = page + 3 < c.n ? page + 2 : c.n - 1;
        cd_audit_finding_t finding;
        assert_int_equal(cd_audit_verifier_end(&v, c.rows[last].hash, &finding), CD_AUDIT_INTACT);
        start = c.rows[last].hash;
    }
    //  One verifier fed row by row stops at the first finding and ignores
    //  the rest.
    c.rows[2].target = "task/x";
    c.rows[5].target = "task/y";
    cd_audit_verifier_t v;
    cd_audit_verifier_init(&v, NULL);
    size_t fed = 0;
    while (fed < c.n && cd_audit_verifier_feed(&v, &c.rows[fed])) {
        fed++;
    }
    assert_int_equal(fed, 2);
    assert_false(cd_audit_verifier_feed(&v, &c.rows[3]));
    cd_audit_finding_t finding;
    assert_int_equal(cd_audit_verifier_end(&v, NULL, &finding), CD_AUDIT_EDITED);
    assert_int_equal(finding.id, 3);
}

static void
test_audit_rows_read_from_query_json_verify(void **state)
{
    chain_t c;
    s_chain(&c);
    cd_audit_row_t parsed[N_ROWS];
    for (size_t i = 0; i < c.n; i++) {
        const cd_audit_row_t *r = &c.rows[i];
        char prev[65], hash[65], user[24], ip[32];
        sodium_bin2hex(prev, sizeof prev, r->prev_hash, 32);
        sodium_bin2hex(hash, sizeof hash, r->hash, 32);
        snprintf(user, sizeof user, "%lld", (long long)r->user_id);
        snprintf(ip, sizeof ip, "\"%s\"", r->ip ? r->ip : "");
        //  As json_build_object prints a row: jsonb details reformatted.
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"id\" : %lld, \"ts\" : \"%s\", \"user_id\" : %s, \"action\" : \"%s\", "
                 "\"target\" : \"%s\", \"details\" : {\"n\": %lld, \"ok\": true}, \"ip\" : %s, "
                 "\"prev_hash\" : \"%s\", \"hash\" : \"%s\"}",
                 (long long)r->id, r->ts, r->user_id == CD_AUDIT_NO_USER ? "null" : user, r->action,
                 r->target, (long long)r->id, r->ip ? ip : "null", prev, hash);
        const char *why = NULL;
        if (cd_audit_row_parse(json, strlen(json), &parsed[i], &why) != 0) {
            fail_msg("%s: %s", json, why);
        }
        assert_int_equal(parsed[i].id, r->id);
        assert_int_equal(parsed[i].user_id, r->user_id);
    }
    cd_audit_finding_t finding;
    assert_int_equal(cd_audit_verify(parsed, c.n, c.rows[c.n - 1].hash, &finding), CD_AUDIT_INTACT);
    for (size_t i = 0; i < c.n; i++) {
        cd_audit_row_fini(&parsed[i]);
        cd_audit_row_fini(&parsed[i]);
    }
    //  details may also come as text; a null hash reads as zeros.
    const char *row = "{\"id\":1,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"user_id\":null,"
                      "\"action\":\"x\",\"target\":null,\"details\":\"{\\\"a\\\":1}\","
                      "\"ip\":null,\"prev_hash\":null,\"hash\":null}";
    cd_audit_row_t one;
    assert_int_equal(cd_audit_row_parse(row, strlen(row), &one, NULL), 0);
    assert_string_equal(one.details, "{\"a\":1}");
    assert_null(one.target);
    assert_null(one.ip);
    assert_int_equal(one.user_id, CD_AUDIT_NO_USER);
    assert_int_equal(cd_audit_verify(&one, 1, NULL, &finding), CD_AUDIT_EDITED);
    cd_audit_row_fini(&one);
    static const char *const bad[] = {
        "[]",
        "{\"ts\":\"2026-01-01T00:00:00.000000Z\",\"action\":\"x\"}",
        "{\"id\":1.5,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"action\":\"x\"}",
        "{\"id\":1,\"action\":\"x\"}",
        "{\"id\":1,\"ts\":\"2026-01-01T00:00:00.000000Z\"}",
        "{\"id\":1,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"action\":\"x\",\"user_id\":\"7\"}",
        "{\"id\":1,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"action\":\"x\",\"hash\":\"abc\"}",
        "{\"id\":1,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"action\":\"x\",\"ip\":5}",
        "{\"id\":1,\"id\":2,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"action\":\"x\"}",
        "{\"id\":1,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"action\":\"a\\u0000b\"}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        if (cd_audit_row_parse(bad[i], strlen(bad[i]), &one, &why) != CD_EPROTO) {
            fail_msg("accepted %s", bad[i]);
        }
        assert_non_null(why);
        assert_null(one.owned);
    }
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_canonical_form_is_exact),
        cmocka_unit_test(test_audit_canonical_form_survives_postgresql_reformatting),
        cmocka_unit_test(test_audit_canonical_form_refuses_what_it_cannot_write),
        cmocka_unit_test(test_audit_timestamps_are_canonical_utc_microseconds),
        cmocka_unit_test(test_audit_intact_chain_verifies_with_and_without_head),
        cmocka_unit_test(test_audit_an_edited_row_is_named),
        cmocka_unit_test(test_audit_a_deleted_row_is_named),
        cmocka_unit_test(test_audit_inserted_rows_are_named),
        cmocka_unit_test(test_audit_a_row_rewritten_with_a_fresh_hash_breaks_the_next_link),
        cmocka_unit_test(test_audit_verification_resumes_page_by_page),
        cmocka_unit_test(test_audit_rows_read_from_query_json_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
