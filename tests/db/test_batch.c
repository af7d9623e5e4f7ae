/* label: db */
/*  test_batch: the persist write engine against a real PostgreSQL from the
    fixture. Each test gets a fresh database holding migration 0003 (the
    request records) and test tables of its own: `ev` (append-only, written
    with COPY) and `kv` (a unique key, written by statements). */
#include "cd_batch.h"
#include "cd_db.h"
#include "cd_error.h"
#include "cd_migrate.h"
#include "cd_testpg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

//  SQL NULL among s_req_init's variadic values (a typed null pointer).
#define NIL ((const char *)0)

typedef struct {
    char *conninfo; //  the test's database
    cd_db_t *db;    //  a plain connection, to look at the tables
    cd_batch_t *batch;
    int ev;     //  table target: ev (task_id, kind, body)
    int kv_put; //  statement target: INSERT INTO kv ... RETURNING id
    int kv_set; //  statement target: UPDATE kv ...
} fx_t;

static const char *s_schema =
    "CREATE TABLE ev (id bigserial PRIMARY KEY, task_id bigint NOT NULL, kind text NOT NULL, "
    "  body jsonb, tag varchar(8));"
    "CREATE TABLE kv (id bigserial PRIMARY KEY, k text UNIQUE NOT NULL, v text, "
    "  n int CHECK (n >= 0));";

//  Applies only migration 0003, so these tests do not depend on the rest of
//  the schema.
static void
s_migrate_0003(cd_db_t *db)
{
    size_t n = 0;
    const cd_migration_t *all = cd_migrate_embedded(&n);
    for (size_t i = 0; i < n; i++) {
        if (all[i].version == 3) {
            char *err = NULL;
            if (cd_migrate_run_list(db, &all[i], 1, NULL, &err) != 0) {
                fail_msg("migration 0003: %s", err);
            }
            return;
        }
    }
    fail_msg("migration 0003 is not embedded");
}

static int
s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    assert_int_equal(cd_testpg_fresh_db(&fx->conninfo), 0);
    assert_int_equal(cd_db_connect(fx->conninfo, &fx->db, NULL), 0);
    s_migrate_0003(fx->db);
    assert_int_equal(cd_db_exec(fx->db, s_schema, NULL), 0);
    fx->batch = cd_batch_new(&(cd_batch_opts_t){.conninfo = fx->conninfo, .max_value_bytes = 4096});
    assert_non_null(fx->batch);
    const char *cols[] = {"task_id", "kind", "body", "tag"};
    fx->ev = cd_batch_add_table(fx->batch, "ev", "ev", cols, 4);
    assert_true(fx->ev >= 0);
    fx->kv_put = cd_batch_add_statement(
        fx->batch, "kv.put", "INSERT INTO kv (k, v, n) VALUES ($1, $2, $3::int) RETURNING id", 3);
    assert_true(fx->kv_put >= 0);
    fx->kv_set =
        cd_batch_add_statement(fx->batch, "kv.set", "UPDATE kv SET v = $2 WHERE k = $1", 2);
    assert_true(fx->kv_set >= 0);
    char *err = NULL;
    if (cd_batch_connect(fx->batch, &err) != 0) {
        fail_msg("connect: %s", err);
    }
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    fx_t *fx = *state;
    cd_batch_destroy(&fx->batch);
    cd_db_close(&fx->db);
    free(fx->conninfo);
    free(fx);
    return 0;
}

//  A request with its own copies of values; id from a counter.
typedef struct {
    cd_batch_req_t req;
    char *values[4];
    uint32_t lengths[4];
} s_req_t;

static void
s_req_init(s_req_t *r, uint64_t id, int target, int nparams, ...)
{
    memset(r, 0, sizeof *r);
    r->req.id[0] = 0xcd;
    for (int i = 0; i < 8; i++) {
        r->req.id[8 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
    va_list ap;
    va_start(ap, nparams);
    for (int i = 0; i < nparams; i++) {
        const char *v = va_arg(ap, const char *);
        r->values[i] = v ? strdup(v) : NULL;
        r->lengths[i] = v ? (uint32_t)strlen(v) : 0;
    }
    va_end(ap);
    r->req.target = target;
    r->req.nparams = nparams;
    r->req.values = (const char *const *)r->values;
    r->req.lengths = r->lengths;
}

static void
s_req_fini(s_req_t *r)
{
    for (int i = 0; i < 4; i++) {
        free(r->values[i]);
    }
    cd_batch_outcome_clear(&r->req.out);
}

static void
s_run(fx_t *fx, s_req_t *reqs, size_t n, int expect)
{
    cd_batch_req_t *arr = calloc(n, sizeof *arr);
    for (size_t i = 0; i < n; i++) {
        arr[i] = reqs[i].req;
    }
    assert_int_equal(cd_batch_run(fx->batch, arr, n), expect);
    for (size_t i = 0; i < n; i++) {
        reqs[i].req.out = arr[i].out;
    }
    free(arr);
}

static int64_t
s_count(fx_t *fx, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(cd_db_query_int64(fx->db, sql, 0, NULL, &n), 0);
    return n;
}

static void
test_batch_new_destroy_and_targets(void **state)
{
    assert_null(cd_batch_new(&(cd_batch_opts_t){0}));
    assert_null(cd_batch_new(NULL));
    cd_batch_t *b = cd_batch_new(&(cd_batch_opts_t){.conninfo = "host=/nonexistent"});
    assert_non_null(b);
    const char *cols[] = {"a", "b"};
    const char *bad_cols[] = {"a", "b; DROP TABLE x"};
    assert_int_equal(cd_batch_add_table(b, "t", "t", cols, 2), 0);
    assert_int_equal(cd_batch_add_table(b, "t", "t", cols, 2), CD_EEXIST);
    assert_int_equal(cd_batch_add_table(b, "u", "t;x", cols, 2), CD_EINVAL);
    assert_int_equal(cd_batch_add_table(b, "u", "t", bad_cols, 2), CD_EINVAL);
    assert_int_equal(cd_batch_add_table(b, "u", "\"T\"", cols, 2), CD_EINVAL);
    assert_int_equal(cd_batch_add_table(b, "u", "public.t", cols, 0), CD_EINVAL);
    assert_int_equal(cd_batch_add_table(b, "u", "public.t", cols, 2), 1);
    assert_int_equal(cd_batch_add_statement(b, "s", NULL, 0), CD_EINVAL);
    assert_int_equal(cd_batch_add_statement(b, "", "SELECT 1", 0), CD_EINVAL);
    assert_int_equal(cd_batch_add_statement(b, "s", "SELECT 1", CD_BATCH_MAX_PARAMS + 1),
                     CD_EINVAL);
    assert_int_equal(cd_batch_add_statement(b, "s", "SELECT 1", 0), 2);
    assert_int_equal(cd_batch_find(b, "s", 1), 2);
    assert_int_equal(cd_batch_find(b, "u", 1), 1);
    assert_int_equal(cd_batch_find(b, "x", 1), CD_ENOTFOUND);
    assert_int_equal(cd_batch_target_nparams(b, 1), 2);
    assert_int_equal(cd_batch_target_nparams(b, 9), -1);
    assert_false(cd_batch_connected(b));
    cd_batch_destroy(&b);
    assert_null(b);
    cd_batch_destroy(&b);
}

static void
test_batch_connect_failures_are_clear_and_bounded(void **state)
{
    fx_t *fx = *state;
    cd_batch_t *b = cd_batch_new(&(cd_batch_opts_t){.conninfo = "host=/nonexistent/cadre dbname=x",
                                                    .connect_timeout_ms = 500});
    char *err = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cd_batch_connect(b, &err), CD_ECONN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2);
    assert_non_null(strstr(err, "could not connect"));
    free(err);
    //  A run without a connection reports every request as not done.
    s_req_t r;
    s_req_init(&r, 1, 0, 0);
    cd_batch_add_statement(b, "s", "SELECT 1", 0);
    s_run(&(fx_t){.batch = b}, &r, 1, CD_ECONN);
    assert_int_equal(r.req.out.rc, CD_ECONN);
    s_req_fini(&r);
    cd_batch_destroy(&b);

    //  A database without migration 0003.
    char *bare = NULL;
    assert_int_equal(cd_testpg_fresh_db(&bare), 0);
    b = cd_batch_new(&(cd_batch_opts_t){.conninfo = bare});
    assert_int_equal(cd_batch_connect(b, &err), CD_EDB);
    assert_non_null(strstr(err, "persist_requests is missing"));
    assert_false(cd_batch_connected(b));
    free(err);
    cd_batch_destroy(&b);
    free(bare);
    (void)fx;
}

static void
test_batch_writes_rows_and_statements_in_one_commit(void **state)
{
    fx_t *fx = *state;
    enum { N = 1000 };
    s_req_t *reqs = calloc(N + 2, sizeof *reqs);
    for (int i = 0; i < N; i++) {
        char task[16], body[64];
        snprintf(task, sizeof task, "%d", i);
        snprintf(body, sizeof body, "{\"i\": %d, \"s\": \"tab\\there\"}", i);
        s_req_init(&reqs[i], (uint64_t)i + 1, fx->ev, 4, task, "output", body, NIL);
    }
    s_req_init(&reqs[N], 100001, fx->kv_put, 3, "a", "1", "5");
    s_req_init(&reqs[N + 1], 100002, fx->kv_put, 3, "b", NIL, NIL);
    s_run(fx, reqs, N + 2, 0);
    for (int i = 0; i < N + 2; i++) {
        assert_int_equal(reqs[i].req.out.rc, 0);
        assert_false(reqs[i].req.out.replayed);
        assert_int_equal(reqs[i].req.out.rows, 1);
    }
    assert_non_null(reqs[N].req.out.value);
    assert_non_null(reqs[N + 1].req.out.value);
    assert_string_not_equal(reqs[N].req.out.value, reqs[N + 1].req.out.value);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev"), N);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM kv"), 2);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM persist_requests"), N + 2);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev WHERE body->>'s' = E'tab\\there'"), N);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev WHERE tag IS NULL"), N);
    const cd_batch_stats_t *st = cd_batch_stats(fx->batch);
    assert_int_equal(st->commits, 1);
    assert_int_equal(st->slow_batches, 0);
    assert_int_equal(st->applied, N + 2);
    for (int i = 0; i < N + 2; i++) {
        s_req_fini(&reqs[i]);
    }
    free(reqs);
}

//  Writes the two odd rows in a batch of n rows (n - 2 plain ones): small
//  batches take prepared INSERTs, larger ones COPY.
static void
s_escapes_in_batch_of(fx_t *fx, int n, int64_t task_base)
{
    const char *odd = "back\\slash\ttab\nnewline\rcr \\N \\. end";
    char json[256];
    snprintf(json, sizeof json, "\"%s\"", "q\\\"uote\\\\ \\t");
    s_req_t *r = calloc((size_t)n, sizeof *r);
    char t1[24], t2[24], sql[128];
    snprintf(t1, sizeof t1, "%lld", (long long)task_base + 1);
    snprintf(t2, sizeof t2, "%lld", (long long)task_base + 2);
    s_req_init(&r[0], (uint64_t)task_base + 1, fx->ev, 4, t1, odd, json, "x");
    s_req_init(&r[1], (uint64_t)task_base + 2, fx->ev, 4, t2, "\\N", NIL, "");
    for (int i = 2; i < n; i++) {
        s_req_init(&r[i], (uint64_t)task_base + 100 + (uint64_t)i, fx->ev, 4, "0", "plain", NIL,
                   NIL);
    }
    s_run(fx, r, (size_t)n, 0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(r[i].req.out.rc, 0);
    }
    char *kind = NULL;
    snprintf(sql, sizeof sql, "SELECT kind FROM ev WHERE task_id = %s", t1);
    assert_int_equal(cd_db_query_text(fx->db, sql, 0, NULL, &kind), 0);
    assert_string_equal(kind, odd);
    free(kind);
    snprintf(sql, sizeof sql, "SELECT body::text FROM ev WHERE task_id = %s", t1);
    assert_int_equal(cd_db_query_text(fx->db, sql, 0, NULL, &kind), 0);
    assert_string_equal(kind, json);
    free(kind);
    snprintf(sql, sizeof sql, "SELECT kind FROM ev WHERE task_id = %s", t2);
    assert_int_equal(cd_db_query_text(fx->db, sql, 0, NULL, &kind), 0);
    assert_string_equal(kind, "\\N");
    free(kind);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM ev WHERE task_id = %s AND body IS NULL AND tag = ''", t2);
    assert_int_equal(s_count(fx, sql), 1);
    for (int i = 0; i < n; i++) {
        s_req_fini(&r[i]);
    }
    free(r);
}

static void
test_batch_copy_escapes_every_special_byte(void **state)
{
    fx_t *fx = *state;
    s_escapes_in_batch_of(fx, 2, 1000);  //  prepared INSERTs
    s_escapes_in_batch_of(fx, 40, 2000); //  COPY
}

static void
test_batch_bad_requests_fail_alone_and_the_rest_commits(void **state)
{
    fx_t *fx = *state;
    s_req_t seed;
    s_req_init(&seed, 900, fx->kv_put, 3, "taken", "x", "1");
    s_run(fx, &seed, 1, 0);
    s_req_fini(&seed);

    char *big = malloc(5000);
    memset(big, 'a', 4999);
    big[4999] = '\0';
    const char bad_utf8[] = {'o', 'k', (char)0xc3, (char)0x28, '\0'};
    enum { N = 12 };
    s_req_t r[N];
    s_req_init(&r[0], 1, fx->ev, 4, "1", "good", "{}", NIL);
    s_req_init(&r[1], 2, fx->kv_put, 3, "taken", "dup", "1"); //  unique violation
    s_req_init(&r[2], 3, fx->ev, 4, "3", big, NIL, NIL);      //  over our limit
    s_req_init(&r[3], 4, fx->ev, 4, "4", bad_utf8, NIL, NIL); //  invalid UTF-8
    s_req_init(&r[4], 5, fx->ev, 4, "5", "good", "{}", NIL);
    s_req_init(&r[5], 6, fx->ev, 4, "6", "tag", NIL, "123456789"); //  varchar(8): server says no
    s_req_init(&r[6], 7, fx->kv_put, 3, "neg", "x", "-1");         //  CHECK violation
    s_req_init(&r[7], 8, fx->kv_put, 3, "fine", "x", "2");
    s_req_init(&r[8], 9, fx->ev, 4, "9", "bad json", "{oops", NIL); //  jsonb syntax
    s_req_init(&r[9], 10, fx->kv_set, 2, "taken", "updated");
    s_req_init(&r[10], 11, fx->kv_set, 3, "a", "b", "c"); //  wrong parameter count
    s_req_init(&r[11], 12, 57, 0);                        //  unknown target
    //  A NUL inside a value (its length says more than strlen).
    r[4].lengths[1] = 6;
    free(r[4].values[1]);
    r[4].values[1] = malloc(7);
    memcpy(r[4].values[1], "go\0od!", 7);
    s_run(fx, r, N, 0);

    assert_int_equal(r[0].req.out.rc, 0);
    assert_int_equal(r[1].req.out.rc, CD_EDB);
    assert_string_equal(r[1].req.out.sqlstate, "23505");
    assert_non_null(strstr(r[1].req.out.message, "kv_k_key"));
    assert_int_equal(r[2].req.out.rc, CD_ETOOBIG);
    assert_string_equal(r[2].req.out.sqlstate, "54000");
    assert_non_null(strstr(r[2].req.out.message, "over the limit"));
    assert_int_equal(r[3].req.out.rc, CD_EINVAL);
    assert_string_equal(r[3].req.out.sqlstate, "22021");
    assert_non_null(strstr(r[3].req.out.message, "not valid UTF-8"));
    assert_int_equal(r[4].req.out.rc, CD_EINVAL);
    assert_non_null(strstr(r[4].req.out.message, "NUL byte"));
    assert_int_equal(r[5].req.out.rc, CD_EDB);
    assert_string_equal(r[5].req.out.sqlstate, "22001");
    assert_int_equal(r[6].req.out.rc, CD_EDB);
    assert_string_equal(r[6].req.out.sqlstate, "23514");
    assert_int_equal(r[7].req.out.rc, 0);
    assert_non_null(r[7].req.out.value);
    assert_int_equal(r[8].req.out.rc, CD_EDB);
    assert_string_equal(r[8].req.out.sqlstate, "22P02");
    assert_int_equal(r[9].req.out.rc, 0);
    assert_int_equal(r[9].req.out.rows, 1);
    assert_int_equal(r[10].req.out.rc, CD_EINVAL);
    assert_non_null(strstr(r[10].req.out.message, "takes 2 parameters"));
    assert_int_equal(r[11].req.out.rc, CD_EINVAL);

    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev"), 1);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev WHERE task_id = 1"), 1);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM kv WHERE k = 'fine'"), 1);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM kv WHERE k = 'taken' AND v = 'updated'"), 1);
    //  Only what was applied is recorded: the seed, r0, r7, r9.
    assert_int_equal(s_count(fx, "SELECT count(*) FROM persist_requests"), 4);
    assert_int_equal(cd_batch_stats(fx->batch)->slow_batches, 1);
    //  r4 ("good", id 5) failed on its NUL byte; its twin r0 went through.
    (void)r;
    for (int i = 0; i < N; i++) {
        s_req_fini(&r[i]);
    }
    free(big);
}

static void
test_batch_many_failures_across_savepoint_windows(void **state)
{
    fx_t *fx = *state;
    s_req_t seed;
    s_req_init(&seed, 100000, fx->kv_put, 3, "taken", "x", "1");
    s_run(fx, &seed, 1, 0);
    s_req_fini(&seed);
    //  300 statements over 5 windows; every 7th collides with "taken",
    //  including the very last one (the batch ends on a failed window).
    enum { N = 300 };
    s_req_t *r = calloc(N, sizeof *r);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        bool collide = i % 7 == 3 || i == N - 1;
        bad += collide;
        s_req_init(&r[i], (uint64_t)i + 1, i % 2 ? fx->kv_put : fx->ev, i % 2 ? 3 : 4,
                   i % 2 ? (collide ? "taken" : k) : "1", i % 2 ? "v" : "e", i % 2 ? "0" : NIL,
                   NIL);
        if (i % 2 == 0 && collide) {
            //  A table row that fails on the server: kind NULL violates NOT NULL.
            free(r[i].values[1]);
            r[i].values[1] = NULL;
        }
    }
    s_run(fx, r, N, 0);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        bool collide = i % 7 == 3 || i == N - 1;
        if (collide) {
            assert_int_equal(r[i].req.out.rc, CD_EDB);
            assert_string_equal(r[i].req.out.sqlstate, i % 2 ? "23505" : "23502");
        } else {
            assert_int_equal(r[i].req.out.rc, 0);
            ok++;
        }
    }
    assert_int_equal(ok, N - bad);
    assert_int_equal(
        s_count(fx, "SELECT count(*) FROM kv") + s_count(fx, "SELECT count(*) FROM ev"), 1 + ok);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM persist_requests"), 1 + ok);
    for (int i = 0; i < N; i++) {
        s_req_fini(&r[i]);
    }
    free(r);
}

static void
test_batch_replay_is_answered_from_the_record(void **state)
{
    fx_t *fx = *state;
    s_req_t r[3];
    s_req_init(&r[0], 1, fx->kv_put, 3, "k1", "v", "1");
    s_req_init(&r[1], 2, fx->ev, 4, "2", "e", NIL, NIL);
    s_req_init(&r[2], 3, fx->kv_set, 2, "k1", "w");
    s_run(fx, r, 3, 0);
    char *first_id = strdup(r[0].req.out.value);
    //  The same three ids again, mixed with a new one: the old ones are
    //  answered from their records, the new one is applied.
    s_req_t again[4];
    s_req_init(&again[0], 1, fx->kv_put, 3, "k1", "v", "1");
    s_req_init(&again[1], 2, fx->ev, 4, "2", "e", NIL, NIL);
    s_req_init(&again[2], 3, fx->kv_set, 2, "k1", "w");
    s_req_init(&again[3], 4, fx->ev, 4, "4", "new", NIL, NIL);
    s_run(fx, again, 4, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(again[i].req.out.rc, 0);
        assert_true(again[i].req.out.replayed);
    }
    assert_string_equal(again[0].req.out.value, first_id);
    assert_int_equal(again[2].req.out.rows, 1);
    assert_int_equal(again[3].req.out.rc, 0);
    assert_false(again[3].req.out.replayed);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM kv"), 1);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev"), 2);
    //  Found out by the statement's unique key or by the records' key.
    assert_int_equal(cd_batch_stats(fx->batch)->conflicts + cd_batch_stats(fx->batch)->slow_batches,
                     1);
    assert_int_equal(cd_batch_stats(fx->batch)->replayed, 3);
    //  A lone replayed INSERT fails on its unique key before its record can
    //  collide: the lookup still finds it, so it is a replay, not an error.
    s_req_t lone;
    s_req_init(&lone, 1, fx->kv_put, 3, "k1", "v", "1");
    s_run(fx, &lone, 1, 0);
    assert_int_equal(lone.req.out.rc, 0);
    assert_true(lone.req.out.replayed);
    assert_null(lone.req.out.message);
    assert_string_equal(lone.req.out.value, first_id);
    s_req_fini(&lone);
    //  A lone replayed table row: its record's COPY collides, the batch is
    //  rolled back and run again with the lookup.
    uint64_t conflicts = cd_batch_stats(fx->batch)->conflicts;
    s_req_init(&lone, 2, fx->ev, 4, "2", "e", NIL, NIL);
    s_run(fx, &lone, 1, 0);
    assert_true(lone.req.out.replayed);
    assert_int_equal(cd_batch_stats(fx->batch)->conflicts, conflicts + 1);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev"), 2);
    s_req_fini(&lone);
    free(first_id);
    for (int i = 0; i < 3; i++) {
        s_req_fini(&r[i]);
    }
    for (int i = 0; i < 4; i++) {
        s_req_fini(&again[i]);
    }
}

static void
test_batch_same_id_twice_in_one_batch_applies_once(void **state)
{
    fx_t *fx = *state;
    s_req_t r[3];
    s_req_init(&r[0], 7, fx->ev, 4, "1", "e", NIL, NIL);
    s_req_init(&r[1], 8, fx->kv_put, 3, "z", "v", "1");
    s_req_init(&r[2], 7, fx->ev, 4, "1", "e", NIL, NIL);
    s_run(fx, r, 3, 0);
    assert_int_equal(r[0].req.out.rc, 0);
    assert_false(r[0].req.out.replayed);
    assert_int_equal(r[2].req.out.rc, 0);
    assert_true(r[2].req.out.replayed);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev"), 1);
    for (int i = 0; i < 3; i++) {
        s_req_fini(&r[i]);
    }
}

static void
test_batch_lost_connection_then_replay_applies_once(void **state)
{
    fx_t *fx = *state;
    //  Kill the writer's backend from the side: the next run finds the
    //  connection dead and reports every request as not done.
    assert_int_equal(cd_db_exec(fx->db,
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = 'cadred-persist' AND datname = "
                                "current_database()",
                                NULL),
                     0);
    s_req_t r[2];
    s_req_init(&r[0], 1, fx->ev, 4, "1", "e", NIL, NIL);
    s_req_init(&r[1], 2, fx->kv_put, 3, "k", "v", "1");
    s_run(fx, r, 2, CD_ECONN);
    assert_int_equal(r[0].req.out.rc, CD_ECONN);
    assert_int_equal(r[1].req.out.rc, CD_ECONN);
    assert_non_null(strstr(r[0].req.out.message, "connection lost"));
    assert_false(cd_batch_connected(fx->batch));
    assert_int_equal(cd_batch_connect(fx->batch, NULL), 0);
    s_run(fx, r, 2, 0);
    assert_int_equal(r[0].req.out.rc, 0);
    assert_int_equal(r[1].req.out.rc, 0);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev"), 1);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM kv"), 1);
    for (int i = 0; i < 2; i++) {
        s_req_fini(&r[i]);
    }
}

static int64_t
s_txid_of(fx_t *fx, bool commit)
{
    int64_t txid = 0;
    assert_int_equal(cd_db_exec(fx->db, "BEGIN", NULL), 0);
    assert_int_equal(
        cd_db_query_int64(fx->db, "SELECT pg_current_xact_id()::text::bigint", 0, NULL, &txid), 0);
    assert_int_equal(cd_db_exec(fx->db, commit ? "COMMIT" : "ROLLBACK", NULL), 0);
    return txid;
}

static void
test_batch_in_doubt_requests_are_looked_up_before_replay(void **state)
{
    fx_t *fx = *state;
    //  Commit two requests, then hand them back as if their COMMIT's answer
    //  had been lost (doubt_txid set to a committed transaction).
    s_req_t r[2];
    s_req_init(&r[0], 1, fx->kv_put, 3, "k", "v", "1");
    s_req_init(&r[1], 2, fx->ev, 4, "1", "e", NIL, NIL);
    s_run(fx, r, 2, 0);
    char *value = strdup(r[0].req.out.value);
    int64_t committed = s_txid_of(fx, true);
    r[0].req.out.doubt_txid = committed;
    r[1].req.out.doubt_txid = committed;
    s_run(fx, r, 2, 0);
    assert_true(r[0].req.out.replayed);
    assert_true(r[1].req.out.replayed);
    assert_string_equal(r[0].req.out.value, value);
    assert_int_equal(r[0].req.out.doubt_txid, 0);
    //  Doubt about an aborted transaction: nothing to look up, applied.
    s_req_t n;
    s_req_init(&n, 3, fx->ev, 4, "3", "e", NIL, NIL);
    n.req.out.doubt_txid = s_txid_of(fx, false);
    s_run(fx, &n, 1, 0);
    assert_int_equal(n.req.out.rc, 0);
    assert_false(n.req.out.replayed);
    assert_int_equal(n.req.out.doubt_txid, 0);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM ev"), 2);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM kv"), 1);
    free(value);
    s_req_fini(&r[0]);
    s_req_fini(&r[1]);
    s_req_fini(&n);
}

static void
test_batch_a_rejected_statement_fails_only_its_requests(void **state)
{
    fx_t *fx = *state;
    cd_batch_t *b = cd_batch_new(&(cd_batch_opts_t){.conninfo = fx->conninfo});
    const char *cols[] = {"task_id", "kind"};
    int ev = cd_batch_add_table(b, "ev", "ev", cols, 2);
    int broken = cd_batch_add_statement(b, "broken", "INSERT INTO nowhere VALUES ($1)", 1);
    int nocol = cd_batch_add_table(b, "nocol", "ev", (const char *[]){"missing"}, 1);
    assert_int_equal(cd_batch_connect(b, NULL), 0);
    s_req_t r[3];
    s_req_init(&r[0], 1, broken, 1, "x");
    s_req_init(&r[1], 2, ev, 2, "1", "e");
    s_req_init(&r[2], 3, nocol, 1, "x");
    s_run(&(fx_t){.batch = b}, r, 3, 0);
    assert_int_equal(r[0].req.out.rc, CD_EDB);
    assert_string_equal(r[0].req.out.sqlstate, "42P01");
    assert_non_null(strstr(r[0].req.out.message, "rejected by the database"));
    assert_int_equal(r[1].req.out.rc, 0);
    assert_int_equal(r[2].req.out.rc, CD_EDB);
    assert_string_equal(r[2].req.out.sqlstate, "42703");
    for (int i = 0; i < 3; i++) {
        s_req_fini(&r[i]);
    }
    cd_batch_destroy(&b);
}

static void
test_batch_a_slow_statement_times_out_alone(void **state)
{
    fx_t *fx = *state;
    cd_batch_t *b =
        cd_batch_new(&(cd_batch_opts_t){.conninfo = fx->conninfo, .io_timeout_ms = 1000});
    const char *cols[] = {"task_id", "kind"};
    int ev = cd_batch_add_table(b, "ev", "ev", cols, 2);
    int sleep = cd_batch_add_statement(b, "sleep", "SELECT pg_sleep($1::float)", 1);
    assert_int_equal(cd_batch_connect(b, NULL), 0);
    s_req_t r[2];
    s_req_init(&r[0], 1, sleep, 1, "0.8");
    s_req_init(&r[1], 2, ev, 2, "1", "e");
    s_run(&(fx_t){.batch = b}, r, 2, 0);
    assert_int_equal(r[0].req.out.rc, CD_EDB);
    assert_string_equal(r[0].req.out.sqlstate, "57014");
    assert_int_equal(r[1].req.out.rc, 0);
    assert_true(cd_batch_connected(b));
    for (int i = 0; i < 2; i++) {
        s_req_fini(&r[i]);
    }
    cd_batch_destroy(&b);
}

static void
test_batch_prune_removes_old_records(void **state)
{
    fx_t *fx = *state;
    s_req_t r[3];
    for (int i = 0; i < 3; i++) {
        char t[8];
        snprintf(t, sizeof t, "%d", i);
        s_req_init(&r[i], (uint64_t)i + 1, fx->ev, 4, t, "e", NIL, NIL);
    }
    s_run(fx, r, 3, 0);
    assert_int_equal(cd_db_exec(fx->db,
                                "UPDATE persist_requests SET committed_at = now() - interval "
                                "'2 days' WHERE id IN (SELECT id FROM persist_requests ORDER BY "
                                "id LIMIT 2)",
                                NULL),
                     0);
    int64_t deleted = -1;
    assert_int_equal(cd_batch_prune(fx->batch, CD_BATCH_PRUNE_REQUESTS, 86400, 1, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(cd_batch_prune(fx->batch, CD_BATCH_PRUNE_REQUESTS, 86400, 100, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(cd_batch_prune(fx->batch, CD_BATCH_PRUNE_REQUESTS, 86400, 100, &deleted), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(s_count(fx, "SELECT count(*) FROM persist_requests"), 1);
    for (int i = 0; i < 3; i++) {
        s_req_fini(&r[i]);
    }
}

//  Retention, on the whole schema (every migration): events and stats
//  history older than the age go, oldest first, a chunk at a time; newer
//  rows stay; the request records are not touched by either.
static void
test_batch_prune_applies_retention_to_events_and_stats(void **state)
{
    (void)state;
    char *conninfo = NULL;
    assert_int_equal(cd_testpg_fresh_db(&conninfo), 0);
    cd_db_t *db = NULL;
    assert_int_equal(cd_db_connect(conninfo, &db, NULL), 0);
    char *err = NULL;
    if (cd_migrate_run(db, NULL, &err) != 0) {
        fail_msg("migrate: %s", err);
    }
    cd_batch_t *batch = cd_batch_new(&(cd_batch_opts_t){.conninfo = conninfo});
    if (cd_batch_connect(batch, &err) != 0) {
        fail_msg("connect: %s", err);
    }
    assert_int_equal(
        cd_db_exec(db,
                   "INSERT INTO events (type, ts) SELECT 'agent.status', now() - interval '3 days'"
                   " FROM generate_series(1, 3);"
                   " INSERT INTO events (type, ts) VALUES ('agent.status', now());"
                   " INSERT INTO stats_history (ts, stats) VALUES (now() - interval '3 days',"
                   " '{}'), (now() - interval '1 hour', '{}');"
                   " INSERT INTO persist_requests (id, rows, committed_at) VALUES"
                   " (gen_random_uuid(), 1, now() - interval '3 days')",
                   NULL),
        0);
    int64_t oldest = 0, n = 0;
    assert_int_equal(cd_db_query_int64(db, "SELECT min(id) FROM events", 0, NULL, &oldest), 0);
    int64_t deleted = -1;
    assert_int_equal(cd_batch_prune(batch, CD_BATCH_PRUNE_EVENTS, 86400, 2, &deleted), 0);
    assert_int_equal(deleted, 2);
    //  The oldest went first.
    assert_int_equal(cd_db_query_int64(db, "SELECT min(id) FROM events", 0, NULL, &n), 0);
    assert_int_equal(n, oldest + 2);
    assert_int_equal(cd_batch_prune(batch, CD_BATCH_PRUNE_EVENTS, 86400, 100, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(cd_batch_prune(batch, CD_BATCH_PRUNE_EVENTS, 86400, 100, &deleted), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(cd_db_query_int64(db, "SELECT count(*) FROM events", 0, NULL, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cd_batch_prune(batch, CD_BATCH_PRUNE_STATS, 86400, 100, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(cd_db_query_int64(db, "SELECT count(*) FROM stats_history", 0, NULL, &n), 0);
    assert_int_equal(n, 1);
    //  An unknown table is refused, and nothing changes.
    assert_int_equal(cd_batch_prune(batch, CD_BATCH_PRUNE_COUNT_, 1, 100, &deleted), CD_EINVAL);
    assert_int_equal(deleted, 0);
    assert_int_equal(cd_db_query_int64(db, "SELECT count(*) FROM persist_requests", 0, NULL, &n),
                     0);
    assert_int_equal(n, 1);
    cd_batch_destroy(&batch);
    cd_db_close(&db);
    free(conninfo);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_new_destroy_and_targets),
        cmocka_unit_test_setup_teardown(test_batch_connect_failures_are_clear_and_bounded, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_writes_rows_and_statements_in_one_commit,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_copy_escapes_every_special_byte, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_bad_requests_fail_alone_and_the_rest_commits,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_many_failures_across_savepoint_windows, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_replay_is_answered_from_the_record, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_same_id_twice_in_one_batch_applies_once, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_lost_connection_then_replay_applies_once,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_in_doubt_requests_are_looked_up_before_replay,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_a_rejected_statement_fails_only_its_requests,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_a_slow_statement_times_out_alone, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_prune_removes_old_records, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_prune_applies_retention_to_events_and_stats,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
