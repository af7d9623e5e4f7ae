/* label: db */
/*  test_q_tasks: the task queries (cd_q_tasks) against a real PostgreSQL:
    every function, claim ordering and concurrency, leases, archiving and
    keyset paging under concurrent inserts. */
#include "cd_q_tasks.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "test_q_support.h"

//  Inserts a task from a body and returns its id.
static int64_t
s_task(cd_db_t *db, const char *body)
{
    char *out = NULL;
    int rc = cd_q_tasks_insert(db, body, CD_Q_NULL, &out);
    if (rc != 0) {
        fail_msg("insert %s: %s", body, cd_db_error(db) ? cd_db_error(db)->message : "?");
    }
    json_t *t = s_parse(out, true);
    int64_t id = s_int(t, "id");
    json_decref(t);
    return id;
}

static void
test_q_tasks_insert_get(void **state)
{
    fixture_t *fx = *state;
    int64_t user = s_user(fx->db, "ann");
    char *out = NULL;
    assert_int_equal(cd_q_tasks_insert(fx->db,
                                       "{\"title\":\"Write\",\"assignee\":{\"agent\":\"coder\"},"
                                       "\"input\":{\"x\":[1,2]}}",
                                       user, &out),
                     0);
    json_t *t = s_parse(out, true);
    assert_string_equal(s_str(t, "title"), "Write");
    assert_string_equal(s_str(t, "description"), "");
    assert_string_equal(s_str(t, "status"), "todo");
    assert_int_equal(s_int(t, "priority"), 5);
    assert_int_equal(s_int(t, "max_attempts"), 3);
    assert_int_equal(s_int(t, "timeout_ms"), 300000);
    assert_int_equal(s_int(t, "attempts"), 0);
    assert_int_equal(s_int(t, "created_by"), user);
    assert_true(json_is_null(json_object_get(t, "project_id")));
    assert_true(json_is_null(json_object_get(t, "started_at")));
    assert_true(json_is_null(json_object_get(t, "output")));
    assert_string_equal(s_str(json_object_get(t, "assignee"), "agent"), "coder");
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(json_object_get(t, "input"), "x"), 1)),
        2);
    assert_int_equal(s_int(json_object_get(t, "usage"), "llm_calls"), 0);
    //  RFC 3339 UTC with microseconds.
    char *ts = strdup(s_str(t, "created_at"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), strlen("2026-11-22T10:00:00.123456Z"));
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[26], 'Z');
    int64_t id = s_int(t, "id");
    json_decref(t);

    assert_int_equal(cd_q_tasks_get(fx->db, id, &out), 0);
    t = s_parse(out, true);
    assert_int_equal(s_int(t, "id"), id);
    assert_string_equal(s_str(t, "created_at"), ts);
    free(ts);
    json_decref(t);
    assert_int_equal(cd_q_tasks_get(fx->db, id + 1000, &out), CD_ENOTFOUND);
    assert_null(out);

    //  Every field a create takes.
    int64_t project = s_project(fx->db);
    char body[512];
    snprintf(body, sizeof body,
             "{\"title\":\"All\",\"description\":\"d\",\"priority\":9,\"project_id\":%lld,"
             "\"assignee\":{\"team\":7},\"input\":null,\"max_attempts\":5,\"timeout_ms\":10,"
             "\"budget\":{\"max_tokens\":100}}",
             (long long)project);
    assert_int_equal(cd_q_tasks_insert(fx->db, body, CD_Q_NULL, &out), 0);
    t = s_parse(out, true);
    assert_int_equal(s_int(t, "priority"), 9);
    assert_int_equal(s_int(t, "project_id"), project);
    assert_int_equal(s_int(json_object_get(t, "assignee"), "team"), 7);
    assert_true(json_is_null(json_object_get(t, "input")));
    assert_true(json_is_null(json_object_get(t, "created_by")));
    assert_int_equal(s_int(t, "max_attempts"), 5);
    assert_int_equal(s_int(json_object_get(t, "budget"), "max_tokens"), 100);
    json_decref(t);
}

static void
test_q_tasks_insert_rejects_bad_rows(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_sqlstate(fx->db,
               cd_q_tasks_insert(fx->db,
                                 "{\"title\":\"t\",\"priority\":10,"
                                 "\"assignee\":{\"agent\":\"a\"}}",
                                 CD_Q_NULL, &out),
               "23514");
    assert_null(out);
    s_sqlstate(fx->db,
               cd_q_tasks_insert(fx->db, "{\"assignee\":{\"agent\":\"a\"}}", CD_Q_NULL, &out),
               "23502");
    s_sqlstate(fx->db, cd_q_tasks_insert(fx->db, "{\"title\":\"t\"}", CD_Q_NULL, &out), "23502");
    s_sqlstate(fx->db,
               cd_q_tasks_insert(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"Bad\"}}",
                                 CD_Q_NULL, &out),
               "23514");
    s_sqlstate(fx->db,
               cd_q_tasks_insert(fx->db,
                                 "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\","
                                 "\"role\":\"r\"}}",
                                 CD_Q_NULL, &out),
               "23514");
    s_sqlstate(fx->db,
               cd_q_tasks_insert(fx->db,
                                 "{\"title\":\"t\",\"project_id\":999,"
                                 "\"assignee\":{\"agent\":\"a\"}}",
                                 CD_Q_NULL, &out),
               "23503");
    s_sqlstate(fx->db,
               cd_q_tasks_insert(fx->db,
                                 "{\"title\":\"t\",\"priority\":\"high\","
                                 "\"assignee\":{\"agent\":\"a\"}}",
                                 CD_Q_NULL, &out),
               "22P02");
    s_sqlstate(fx->db, cd_q_tasks_insert(fx->db, "{not json", CD_Q_NULL, &out), "22P02");
    s_sqlstate(
        fx->db,
        cd_q_tasks_insert(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}", 999, &out),
        "23503");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 0);
}

static void
test_q_tasks_insert_batch(void **state)
{
    fixture_t *fx = *state;
    cd_q_page_t page = {0};
    assert_int_equal(cd_q_tasks_insert_batch(fx->db,
                                             "[{\"title\":\"a\",\"assignee\":{\"agent\":\"x\"}},"
                                             "{\"title\":\"b\",\"assignee\":{\"role\":\"r\"},"
                                             "\"priority\":1},"
                                             "{\"title\":\"c\",\"assignee\":{\"agent\":\"x\"}}]",
                                             CD_Q_NULL, &page),
                     0);
    assert_int_equal(page.count, 3);
    assert_null(page.next_cursor);
    json_t *items = s_parse(page.items, false);
    assert_int_equal(json_array_size(items), 3);
    const char *want[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(s_str(json_array_get(items, i), "title"), want[i]);
    }
    json_decref(items);
    cd_q_page_fini(&page);
    cd_q_page_fini(&page);

    //  All or nothing.
    s_sqlstate(fx->db,
               cd_q_tasks_insert_batch(fx->db,
                                       "[{\"title\":\"d\",\"assignee\":{\"agent\":\"x\"}},"
                                       "{\"title\":\"e\",\"assignee\":{}}]",
                                       CD_Q_NULL, &page),
               "23514");
    assert_null(page.items);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 3);

    assert_int_equal(cd_q_tasks_insert_batch(fx->db, "[]", CD_Q_NULL, &page), 0);
    assert_int_equal(page.count, 0);
    assert_string_equal(page.items, "[]");
    cd_q_page_fini(&page);
}

static void
test_q_tasks_list_filters(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    int64_t project = s_project(fx->db);
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"p\",\"project_id\":%lld,\"priority\":8,\"assignee\":{\"agent\":\"a\"}}",
             (long long)project);
    int64_t in_project = s_task(fx->db, body);
    int64_t low = s_task(fx->db, "{\"title\":\"l\",\"priority\":1,\"assignee\":{\"role\":\"r\"}}");
    char *out = NULL;
    assert_int_equal(
        cd_q_tasks_insert(fx->db, "{\"title\":\"mine\",\"assignee\":{\"agent\":\"b\"}}", ann, &out),
        0);
    free(out);
    int64_t ids[16];

    cd_q_page_t page = {0};
    cd_q_task_filter_t f = CD_Q_TASK_FILTER_ALL;
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(page.count, 3);
    assert_int_equal(s_page_ids(&page, ids, 16), 3);
    assert_true(ids[0] > ids[1] && ids[1] > ids[2]); // newest first
    cd_q_page_fini(&page);

    f = CD_Q_TASK_FILTER_ALL;
    f.project_id = project;
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(s_page_ids(&page, ids, 16), 1);
    assert_int_equal(ids[0], in_project);
    cd_q_page_fini(&page);

    f = CD_Q_TASK_FILTER_ALL;
    f.priority_min = 5;
    f.agent = "a";
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(s_page_ids(&page, ids, 16), 1);
    assert_int_equal(ids[0], in_project);
    cd_q_page_fini(&page);

    f = CD_Q_TASK_FILTER_ALL;
    f.created_by = ann;
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);

    //  agent also matches the holder of a task claimed through its role.
    cd_q_claim_t claim = {
        .agent = "worker", .role = "r", .team = CD_Q_NULL, .owner = "n1", .lease_ms = 60000};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &claim, &out), 0);
    free(out);
    f = CD_Q_TASK_FILTER_ALL;
    f.agent = "worker";
    f.status = "in_progress";
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(s_page_ids(&page, ids, 16), 1);
    assert_int_equal(ids[0], low);
    cd_q_page_fini(&page);

    f = CD_Q_TASK_FILTER_ALL;
    f.since = "2999-01-01T00:00:00Z";
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(page.count, 0);
    assert_string_equal(page.items, "[]");
    cd_q_page_fini(&page);
    f.since = "2000-01-01T00:00:00Z";
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(page.count, 3);
    cd_q_page_fini(&page);

    f = CD_Q_TASK_FILTER_ALL;
    f.cursor = "not-a-number";
    s_sqlstate(fx->db, cd_q_tasks_list(fx->db, &f, &page), "22P02");
    f.cursor = NULL;
    f.since = "yesterday-ish";
    s_sqlstate(fx->db, cd_q_tasks_list(fx->db, &f, &page), "22007");
}

typedef struct {
    const char *conninfo; // database to insert into
    int n;                // how many tasks to insert
    volatile int done;    // set when finished
} inserter_t;

static void *
s_inserter(void *arg)
{
    inserter_t *in = arg;
    cd_db_t *db = NULL;
    if (cd_db_connect(in->conninfo, &db, NULL) == 0) {
        for (int i = 0; i < in->n; i++) {
            char *out = NULL;
            cd_q_tasks_insert(db, "{\"title\":\"new\",\"assignee\":{\"agent\":\"a\"}}", CD_Q_NULL,
                              &out);
            free(out);
        }
    }
    cd_db_close(&db);
    in->done = 1;
    return NULL;
}

static void
test_q_tasks_keyset_stable_under_inserts(void **state)
{
    fixture_t *fx = *state;
    enum { N = 250 };
    cd_q_page_t page = {0};
    char *body = NULL;
    //  One batch of N "old" rows.
    size_t cap = N * 64 + 2;
    body = calloc(1, cap);
    assert_non_null(body);
    strcat(body, "[");
    for (int i = 0; i < N; i++) {
        strcat(body, i ? "," : "");
        strcat(body, "{\"title\":\"old\",\"assignee\":{\"agent\":\"a\"}}");
    }
    strcat(body, "]");
    assert_int_equal(cd_q_tasks_insert_batch(fx->db, body, CD_Q_NULL, &page), 0);
    free(body);
    cd_q_page_fini(&page);
    int64_t max_old = s_count(fx->db, "SELECT max(id) FROM tasks");

    //  Page through 10 at a time while another connection inserts.
    inserter_t in = {fx->conninfo, 200, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_inserter, &in), 0);
    static int64_t seen[N * 2];
    int nseen = 0;
    char *cursor = NULL;
    int pages = 0;
    do {
        cd_q_task_filter_t f = CD_Q_TASK_FILTER_ALL;
        f.cursor = cursor;
        f.limit = 10;
        assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
        assert_true(page.count <= 10);
        nseen += s_page_ids(&page, seen + nseen, N * 2 - nseen);
        free(cursor);
        cursor = page.next_cursor;
        page.next_cursor = NULL;
        cd_q_page_fini(&page);
        pages++;
        s_sleep_ms(1);
    } while (cursor);
    pthread_join(th, NULL);
    assert_true(in.done);

    //  Strictly descending (no duplicates), and every old row seen once.
    int old = 0;
    for (int i = 0; i < nseen; i++) {
        if (i > 0) {
            assert_true(seen[i] < seen[i - 1]);
        }
        if (seen[i] <= max_old) {
            old++;
        }
    }
    assert_int_equal(old, N);
    assert_true(pages >= N / 10);

    //  limit clamps: 0 means 50, over 1000 means 1000.
    cd_q_task_filter_t f = CD_Q_TASK_FILTER_ALL;
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(page.count, CD_Q_LIMIT_DEFAULT);
    assert_non_null(page.next_cursor);
    cd_q_page_fini(&page);
    f.limit = 5000;
    assert_int_equal(cd_q_tasks_list(fx->db, &f, &page), 0);
    assert_int_equal(page.count, N + 200);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);
}

static void
test_q_tasks_patch(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_task(fx->db, "{\"title\":\"t\",\"description\":\"d\",\"assignee\":{\"agent\":"
                                "\"a\"}}");
    char *out = NULL;
    assert_int_equal(cd_q_tasks_patch(fx->db, id, "{\"title\":\"t2\",\"priority\":7}", &out), 0);
    json_t *t = s_parse(out, true);
    assert_string_equal(s_str(t, "title"), "t2");
    assert_string_equal(s_str(t, "description"), "d");
    assert_int_equal(s_int(t, "priority"), 7);
    json_decref(t);
    s_sqlstate(fx->db, cd_q_tasks_patch(fx->db, id, "{\"priority\":-1}", &out), "23514");
    assert_int_equal(cd_q_tasks_patch(fx->db, id + 99, "{\"title\":\"x\"}", &out), CD_ENOTFOUND);
    assert_null(out);

    assert_int_equal(cd_q_tasks_cancel(fx->db, id, &out), 0);
    free(out);
    assert_int_equal(cd_q_tasks_patch(fx->db, id, "{\"title\":\"late\"}", &out), CD_ESTATE);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "title"), "t2");
    assert_string_equal(s_str(t, "status"), "cancelled");
    json_decref(t);
}

static void
test_q_tasks_claim_order(void **state)
{
    fixture_t *fx = *state;
    int64_t p5a = s_task(fx->db, "{\"title\":\"p5a\",\"assignee\":{\"agent\":\"a\"}}");
    int64_t p9 = s_task(fx->db, "{\"title\":\"p9\",\"priority\":9,\"assignee\":{\"agent\":\"a\"}}");
    int64_t p5b = s_task(fx->db, "{\"title\":\"p5b\",\"assignee\":{\"agent\":\"a\"}}");
    int64_t p0 = s_task(fx->db, "{\"title\":\"p0\",\"priority\":0,\"assignee\":{\"agent\":\"a\"}}");
    int64_t other =
        s_task(fx->db, "{\"title\":\"o\",\"priority\":9,\"assignee\":{\"agent\":\"b\"}}");
    int64_t role =
        s_task(fx->db, "{\"title\":\"r\",\"priority\":9,\"assignee\":{\"role\":\"rev\"}}");
    int64_t team = s_task(fx->db, "{\"title\":\"t\",\"priority\":9,\"assignee\":{\"team\":4}}");
    //  An older task of the same priority goes first even with a higher id.
    const char *params[] = {"2000-01-01T00:00:00Z"};
    char idb[24];
    snprintf(idb, sizeof idb, "%lld", (long long)p5b);
    const char *p2[] = {params[0], idb};
    assert_int_equal(
        cd_db_exec_params(fx->db, "UPDATE tasks SET created_at = $1 WHERE id = $2", 2, p2, NULL),
        0);

    cd_q_claim_t c = {.agent = "a", .team = CD_Q_NULL, .owner = "node-1", .lease_ms = 60000};
    int64_t want[] = {p9, p5b, p5a, p0};
    for (int i = 0; i < 4; i++) {
        char *out = NULL;
        assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
        json_t *t = s_parse(out, true);
        assert_int_equal(s_int(t, "id"), want[i]);
        assert_string_equal(s_str(t, "status"), "in_progress");
        assert_string_equal(s_str(t, "agent"), "a");
        assert_string_equal(s_str(t, "lease_owner"), "node-1");
        assert_non_null(s_str(t, "lease_expires_at"));
        assert_non_null(s_str(t, "started_at"));
        assert_int_equal(s_int(t, "attempts"), 1);
        json_decref(t);
    }
    char *out = NULL;
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), CD_ENOTFOUND);
    assert_null(out);

    //  By role (agent name recorded as holder), by team.
    c = (cd_q_claim_t){.role = "rev",
                       .agent = "reviewer-1",
                       .team = CD_Q_NULL,
                       .owner = "node-1",
                       .lease_ms = 60000};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    json_t *t = s_parse(out, true);
    assert_int_equal(s_int(t, "id"), role);
    assert_string_equal(s_str(t, "agent"), "reviewer-1");
    json_decref(t);
    c = (cd_q_claim_t){.team = 4, .owner = "node-1", .lease_ms = 60000};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    t = s_parse(out, true);
    assert_int_equal(s_int(t, "id"), team);
    assert_true(json_is_null(json_object_get(t, "agent")));
    json_decref(t);
    (void)other;

    //  A claim must name someone and an owner.
    c = (cd_q_claim_t){.team = CD_Q_NULL, .owner = "node-1", .lease_ms = 1};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), CD_EINVAL);
    c = (cd_q_claim_t){.agent = "b", .team = CD_Q_NULL, .lease_ms = 1};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), CD_EINVAL);
    c = (cd_q_claim_t){.agent = "b", .team = CD_Q_NULL, .owner = "n", .lease_ms = 0};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), CD_EINVAL);
}

typedef struct {
    const char *conninfo;       // database to claim from
    pthread_barrier_t *barrier; // start together
    int64_t *ids;               // claimed ids
    int n;                      // how many
    int rc;                     // first unexpected error, or 0
} claimer_t;

static void *
s_claimer(void *arg)
{
    claimer_t *cl = arg;
    cd_db_t *db = NULL;
    cl->rc = cd_db_connect(cl->conninfo, &db, NULL);
    pthread_barrier_wait(cl->barrier);
    cd_q_claim_t c = {
        .agent = "w", .role = "r", .team = CD_Q_NULL, .owner = "n", .lease_ms = 60000};
    while (cl->rc == 0) {
        char *out = NULL;
        int rc = cd_q_tasks_claim_next(db, &c, &out);
        if (rc == CD_ENOTFOUND) {
            break;
        }
        if (rc != 0) {
            cl->rc = rc;
            break;
        }
        json_t *t = json_loads(out, 0, NULL);
        free(out);
        cl->ids[cl->n++] = json_integer_value(json_object_get(t, "id"));
        json_decref(t);
    }
    cd_db_close(&db);
    return NULL;
}

static void
test_q_tasks_claim_concurrent_exactly_once(void **state)
{
    fixture_t *fx = *state;
    enum { N = 200, CLAIMERS = 2 };
    for (int i = 0; i < N; i++) {
        s_task(fx->db, i % 2 ? "{\"title\":\"x\",\"assignee\":{\"agent\":\"w\"}}"
                             : "{\"title\":\"y\",\"assignee\":{\"role\":\"r\"}}");
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, CLAIMERS);
    static int64_t ids[CLAIMERS][N];
    claimer_t cl[CLAIMERS];
    pthread_t th[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++) {
        cl[i] = (claimer_t){fx->conninfo, &barrier, ids[i], 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, s_claimer, &cl[i]), 0);
    }
    for (int i = 0; i < CLAIMERS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
    static int hits[N + 1];
    int total = 0;
    int64_t first = s_count(fx->db, "SELECT min(id) FROM tasks");
    for (int i = 0; i < CLAIMERS; i++) {
        assert_int_equal(cl[i].rc, 0);
        total += cl[i].n;
        for (int k = 0; k < cl[i].n; k++) {
            int64_t slot = ids[i][k] - first;
            assert_true(slot >= 0 && slot < N);
            hits[slot]++;
        }
    }
    assert_int_equal(total, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(hits[i], 1);
    }
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks WHERE status = 'in_progress' "
                                     "AND attempts = 1"),
                     N);
}

static void
test_q_tasks_status_moves(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}");
    char *out = NULL;
    cd_q_task_status_t s = {.from = "in_progress", .to = "done"};
    //  Not in progress yet: wrong state, and nothing changed.
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), CD_ESTATE);
    json_t *t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "todo");
    json_decref(t);
    assert_int_equal(cd_q_tasks_update_status(fx->db, id + 99, &s, &out), CD_ENOTFOUND);
    s = (cd_q_task_status_t){.to = NULL};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), CD_EINVAL);

    //  Running without a lease is refused.
    s = (cd_q_task_status_t){.from = "todo", .to = "in_progress", .agent = "a"};
    s_sqlstate(fx->db, cd_q_tasks_update_status(fx->db, id, &s, &out), "23514");
    assert_null(out);

    //  todo -> in_progress with a lease, a handoff, waiting_human drops
    //  the lease, back in progress, done.
    s = (cd_q_task_status_t){
        .from = "todo", .to = "in_progress", .agent = "a", .owner = "n1", .lease_ms = 60000};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "lease_owner"), "n1");
    assert_non_null(s_str(t, "started_at"));
    json_decref(t);
    s = (cd_q_task_status_t){.from = "in_progress", .to = "in_progress", .agent = "b"};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "agent"), "b");
    assert_string_equal(s_str(t, "lease_owner"), "n1");
    json_decref(t);
    s = (cd_q_task_status_t){.to = "waiting_human"};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), 0);
    t = s_parse(out, true);
    assert_true(json_is_null(json_object_get(t, "lease_owner")));
    json_decref(t);
    s = (cd_q_task_status_t){
        .from = "waiting_human", .to = "in_progress", .owner = "n2", .lease_ms = 1000};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), 0);
    free(out);
    s = (cd_q_task_status_t){.from = "in_progress", .to = "done", .output = "{\"echo\":1}"};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "done");
    assert_non_null(s_str(t, "finished_at"));
    assert_true(json_is_null(json_object_get(t, "lease_owner")));
    assert_int_equal(s_int(json_object_get(t, "output"), "echo"), 1);
    json_decref(t);

    //  Finished: only retry leaves it (and not from done).
    s = (cd_q_task_status_t){.to = "failed", .error = "{\"code\":\"x\"}"};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id, &s, &out), CD_ESTATE);
    free(out);
    assert_int_equal(cd_q_tasks_cancel(fx->db, id, &out), CD_ESTATE);
    free(out);
    assert_int_equal(cd_q_tasks_retry(fx->db, id, &out), CD_ESTATE);
    free(out);
    assert_int_equal(cd_q_tasks_cancel(fx->db, id + 99, &out), CD_ENOTFOUND);
    assert_int_equal(cd_q_tasks_retry(fx->db, id + 99, &out), CD_ENOTFOUND);

    //  A bad status is the CHECK's business.
    int64_t id2 = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}");
    s = (cd_q_task_status_t){.to = "sleeping"};
    s_sqlstate(fx->db, cd_q_tasks_update_status(fx->db, id2, &s, &out), "23514");
    s = (cd_q_task_status_t){.to = "failed", .error = "{\"code\":\"boom\"}"};
    assert_int_equal(cd_q_tasks_update_status(fx->db, id2, &s, &out), 0);
    free(out);
    assert_int_equal(cd_q_tasks_retry(fx->db, id2, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "todo");
    assert_true(json_is_null(json_object_get(t, "error")));
    assert_true(json_is_null(json_object_get(t, "finished_at")));
    assert_int_equal(s_int(t, "attempts"), 0);
    json_decref(t);
    assert_int_equal(cd_q_tasks_cancel(fx->db, id2, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "cancelled");
    json_decref(t);
    assert_int_equal(cd_q_tasks_retry(fx->db, id2, &out), 0);
    free(out);
}

static void
test_q_tasks_fail_attempt_backoff(void **state)
{
    fixture_t *fx = *state;
    int64_t id =
        s_task(fx->db, "{\"title\":\"t\",\"max_attempts\":2,\"assignee\":{\"agent\":\"a\"}}");
    char *out = NULL;
    assert_int_equal(cd_q_tasks_fail_attempt(fx->db, id, NULL, 0, &out), CD_ESTATE);
    free(out);
    assert_int_equal(cd_q_tasks_fail_attempt(fx->db, id + 99, NULL, 0, &out), CD_ENOTFOUND);

    cd_q_claim_t c = {.agent = "a", .team = CD_Q_NULL, .owner = "n", .lease_ms = 60000};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    free(out);
    //  First failure: back to todo, not claimable during the backoff.
    assert_int_equal(cd_q_tasks_fail_attempt(fx->db, id, "{\"code\":\"e1\"}", 300, &out), 0);
    json_t *t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "todo");
    assert_non_null(s_str(t, "next_attempt_at"));
    assert_true(json_is_null(json_object_get(t, "lease_owner")));
    assert_string_equal(s_str(json_object_get(t, "error"), "code"), "e1");
    json_decref(t);
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), CD_ENOTFOUND);
    s_sleep_ms(350);
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    t = s_parse(out, true);
    assert_int_equal(s_int(t, "attempts"), 2);
    assert_true(json_is_null(json_object_get(t, "next_attempt_at")));
    json_decref(t);
    //  Second failure: out of attempts.
    assert_int_equal(cd_q_tasks_fail_attempt(fx->db, id, "{\"code\":\"e2\"}", 300, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "failed");
    assert_non_null(s_str(t, "finished_at"));
    json_decref(t);
}

static void
test_q_tasks_leases(void **state)
{
    fixture_t *fx = *state;
    int64_t a = s_task(fx->db, "{\"title\":\"a\",\"assignee\":{\"agent\":\"a\"}}");
    int64_t b =
        s_task(fx->db, "{\"title\":\"b\",\"max_attempts\":1,\"assignee\":{\"agent\":\"a\"}}");
    int64_t c3 = s_task(fx->db, "{\"title\":\"c\",\"assignee\":{\"agent\":\"c\"}}");
    char *out = NULL;
    cd_q_claim_t c = {.agent = "a", .team = CD_Q_NULL, .owner = "dead", .lease_ms = 50};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    free(out);
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    free(out);
    c = (cd_q_claim_t){.agent = "c", .team = CD_Q_NULL, .owner = "alive", .lease_ms = 50};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    free(out);

    //  Nothing has expired yet.
    cd_q_page_t page = {0};
    assert_int_equal(cd_q_tasks_requeue_expired(fx->db, &page), 0);
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);

    //  "alive" renews its lease; "dead" does not.
    int64_t renewed = 0;
    assert_int_equal(cd_q_tasks_renew_leases(fx->db, "alive", 60000, &renewed), 0);
    assert_int_equal(renewed, 1);
    s_sleep_ms(80);
    assert_int_equal(cd_q_tasks_requeue_expired(fx->db, &page), 0);
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
    assert_int_equal(cd_q_tasks_get(fx->db, a, &out), 0);
    json_t *t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "todo");
    assert_true(json_is_null(json_object_get(t, "lease_owner")));
    assert_int_equal(s_int(t, "attempts"), 1);
    json_decref(t);
    //  b had used its only attempt: failed.
    assert_int_equal(cd_q_tasks_get(fx->db, b, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "failed");
    assert_string_equal(s_str(json_object_get(t, "error"), "code"), "lease_expired");
    json_decref(t);
    assert_int_equal(cd_q_tasks_get(fx->db, c3, &out), 0);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "in_progress");
    json_decref(t);

    //  The requeued task is claimable again; a restarting node releases
    //  what it owned even before the lease runs out.
    c = (cd_q_claim_t){.agent = "a", .team = CD_Q_NULL, .owner = "alive", .lease_ms = 60000};
    assert_int_equal(cd_q_tasks_claim_next(fx->db, &c, &out), 0);
    t = s_parse(out, true);
    assert_int_equal(s_int(t, "id"), a);
    assert_int_equal(s_int(t, "attempts"), 2);
    json_decref(t);
    assert_int_equal(cd_q_tasks_requeue_owned(fx->db, "alive", &page), 0);
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
    assert_int_equal(
        s_count(fx->db, "SELECT count(*) FROM tasks WHERE status = 'todo' AND lease_owner IS NULL"),
        2);
    assert_int_equal(cd_q_tasks_renew_leases(fx->db, "alive", 60000, &renewed), 0);
    assert_int_equal(renewed, 0);
}

static void
test_q_tasks_counts(void **state)
{
    fixture_t *fx = *state;
    int64_t project = s_project(fx->db);
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"p\",\"project_id\":%lld,\"assignee\":{\"agent\":\"a\"}}",
             (long long)project);
    s_task(fx->db, body);
    int64_t id = s_task(fx->db, body);
    s_task(fx->db, "{\"title\":\"x\",\"assignee\":{\"agent\":\"a\"}}");
    char *out = NULL;
    assert_int_equal(cd_q_tasks_cancel(fx->db, id, &out), 0);
    free(out);
    assert_int_equal(cd_q_tasks_counts(fx->db, project, &out), 0);
    json_t *t = s_parse(out, true);
    assert_int_equal(s_int(t, "todo"), 1);
    assert_int_equal(s_int(t, "cancelled"), 1);
    assert_int_equal(s_int(t, "done"), 0);
    assert_int_equal(s_int(t, "in_progress"), 0);
    assert_int_equal(s_int(t, "waiting_human"), 0);
    assert_int_equal(s_int(t, "failed"), 0);
    json_decref(t);
    assert_int_equal(cd_q_tasks_counts(fx->db, CD_Q_NULL, &out), 0);
    t = s_parse(out, true);
    assert_int_equal(s_int(t, "todo"), 2);
    json_decref(t);
}

static void
test_q_tasks_history_and_archive(void **state)
{
    fixture_t *fx = *state;
    int64_t user = s_user(fx->db, "ann");
    int64_t project = s_project(fx->db);
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"p\",\"project_id\":%lld,\"assignee\":{\"agent\":\"a\"}}",
             (long long)project);
    int64_t id = s_task(fx->db, body);
    char *out = NULL;
    assert_int_equal(cd_q_task_events_append(fx->db, id, "created", NULL, NULL, "todo", NULL, &out),
                     0);
    json_t *e = s_parse(out, true);
    assert_int_equal(s_int(e, "seq"), 1);
    assert_int_equal(s_int(e, "task_id"), id);
    assert_string_equal(s_str(e, "kind"), "created");
    assert_true(json_is_object(json_object_get(e, "payload")));
    assert_true(json_is_null(json_object_get(e, "from")));
    json_decref(e);
    assert_int_equal(cd_q_task_events_append(fx->db, id, "handoff", "a", "b", "in_progress",
                                             "{\"output\":{\"echo\":1}}", &out),
                     0);
    e = s_parse(out, true);
    assert_int_equal(s_int(e, "seq"), 2);
    assert_string_equal(s_str(e, "from"), "a");
    assert_string_equal(s_str(e, "to"), "b");
    json_decref(e);
    s_sqlstate(fx->db,
               cd_q_task_events_append(fx->db, id, "exploded", NULL, NULL, NULL, NULL, &out),
               "23514");
    s_sqlstate(fx->db,
               cd_q_task_events_append(fx->db, id + 99, "created", NULL, NULL, NULL, NULL, &out),
               "23503");
    assert_int_equal(
        cd_q_task_events_append(fx->db, id, "completed", "b", NULL, "done", NULL, &out), 0);
    free(out);

    //  Paged history, in order.
    cd_q_page_t page = {0};
    assert_int_equal(cd_q_task_events_list(fx->db, id, NULL, 2, &page), 0);
    assert_int_equal(page.count, 2);
    assert_string_equal(page.next_cursor, "2");
    cd_q_page_fini(&page);
    assert_int_equal(cd_q_task_events_list(fx->db, id, "2", 2, &page), 0);
    assert_int_equal(page.count, 1);
    assert_null(page.next_cursor);
    json_t *items = s_parse(page.items, false);
    assert_string_equal(s_str(json_array_get(items, 0), "kind"), "completed");
    assert_int_equal(s_int(json_array_get(items, 0), "seq"), 3);
    json_decref(items);
    cd_q_page_fini(&page);

    //  An open HITL request goes with the task.
    char idb[24];
    snprintf(idb, sizeof idb, "%lld", (long long)id);
    const char *params[] = {idb};
    assert_int_equal(cd_db_exec_params(fx->db,
                                       "INSERT INTO hitl_requests (task_id, question) VALUES ($1, "
                                       "'ok?')",
                                       1, params, NULL),
                     0);

    //  Archive: the row moves, the history stays readable.
    assert_int_equal(cd_q_tasks_archive(fx->db, id, user, &out), 0);
    json_t *a = s_parse(out, true);
    assert_int_equal(s_int(a, "id"), id);
    assert_int_equal(s_int(a, "archived_by"), user);
    assert_int_equal(s_int(a, "project_id"), project);
    assert_non_null(s_str(a, "archived_at"));
    assert_string_equal(s_str(json_object_get(a, "assignee"), "agent"), "a");
    json_decref(a);
    assert_int_equal(cd_q_tasks_get(fx->db, id, &out), CD_ENOTFOUND);
    assert_int_equal(cd_q_tasks_archive(fx->db, id, user, &out), CD_ENOTFOUND);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM hitl_requests"), 0);
    assert_int_equal(cd_q_tasks_archived_get(fx->db, id, &out), 0);
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "title"), "p");
    json_decref(a);
    assert_int_equal(cd_q_tasks_archived_get(fx->db, id + 99, &out), CD_ENOTFOUND);
    assert_int_equal(cd_q_task_events_list(fx->db, id, NULL, 0, &page), 0);
    assert_int_equal(page.count, 3);
    cd_q_page_fini(&page);
    //  No new history for an archived task.
    s_sqlstate(fx->db, cd_q_task_events_append(fx->db, id, "output", NULL, NULL, NULL, NULL, &out),
               "23503");

    //  The archive list and its filters.
    int64_t id2 = s_task(fx->db, "{\"title\":\"q\",\"assignee\":{\"agent\":\"a\"}}");
    assert_int_equal(cd_q_tasks_archive(fx->db, id2, CD_Q_NULL, &out), 0);
    free(out);
    assert_int_equal(cd_q_tasks_archived_list(fx->db, CD_Q_NULL, CD_Q_NULL, NULL, 1, &page), 0);
    assert_int_equal(page.count, 1);
    assert_non_null(page.next_cursor);
    items = s_parse(page.items, false);
    assert_int_equal(s_int(json_array_get(items, 0), "id"), id2);
    json_decref(items);
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    assert_int_equal(cd_q_tasks_archived_list(fx->db, CD_Q_NULL, CD_Q_NULL, cursor, 1, &page), 0);
    free(cursor);
    assert_int_equal(page.count, 1);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);
    assert_int_equal(cd_q_tasks_archived_list(fx->db, project, CD_Q_NULL, NULL, 0, &page), 0);
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);
    assert_int_equal(cd_q_tasks_archived_list(fx->db, CD_Q_NULL, user + 1, NULL, 0, &page), 0);
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);
}

typedef struct {
    const char *conninfo; // database
    int64_t task;         // task to append to
    int n;                // appends
    int rc;               // first error
} appender_t;

static void *
s_appender(void *arg)
{
    appender_t *ap = arg;
    cd_db_t *db = NULL;
    ap->rc = cd_db_connect(ap->conninfo, &db, NULL);
    for (int i = 0; i < ap->n && ap->rc == 0; i++) {
        char *out = NULL;
        ap->rc = cd_q_task_events_append(db, ap->task, "output", NULL, NULL, NULL, NULL, &out);
        free(out);
    }
    cd_db_close(&db);
    return NULL;
}

static void
test_q_task_events_concurrent_seq(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}");
    appender_t ap[2] = {{fx->conninfo, id, 100, 0}, {fx->conninfo, id, 100, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, s_appender, &ap[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ap[i].rc, 0);
    }
    //  1..200, no gap, no duplicate (the UNIQUE would have refused one).
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events"), 200);
    assert_int_equal(s_count(fx->db, "SELECT max(seq) FROM task_events"), 200);
    assert_int_equal(s_count(fx->db, "SELECT count(DISTINCT seq) FROM task_events"), 200);
}

//  Runs persist's statement `name` (cd_q_tasks_writes) as persist would and
//  returns its first column (caller frees; NULL for no row), asserting it
//  ran.
static char *
s_write(cd_db_t *db, const char *name, int nparams, const char *const *params)
{
    const cd_q_write_t *w = NULL;
    for (size_t i = 0; i < cd_q_tasks_n_writes; i++) {
        if (strcmp(cd_q_tasks_writes[i].name, name) == 0) {
            w = &cd_q_tasks_writes[i];
        }
    }
    assert_non_null(w);
    assert_int_equal(w->nparams, nparams);
    cd_db_rows_t *rows = NULL;
    s_ok(db, cd_db_query(db, w->sql, nparams, params, &rows));
    const char *v = cd_db_rows_get(rows, 0, 0);
    char *out = v ? strdup(v) : NULL;
    cd_db_rows_destroy(&rows);
    return out;
}

//  An agent (with an optional role) and a team; returns the team id.
static int64_t
s_catalog(cd_db_t *db)
{
    s_ok(db, cd_db_exec(db,
                        "INSERT INTO agents (name, kind, role) VALUES ('coder', 'echo', 'dev');"
                        "INSERT INTO roles (name) VALUES ('reviewer');"
                        "INSERT INTO team_types (name) VALUES ('tt')",
                        NULL));
    int64_t team = 0;
    s_ok(db, cd_db_query_int64(db,
                               "INSERT INTO teams (name, team_type_id) SELECT 'crew', id"
                               " FROM team_types RETURNING id",
                               0, NULL, &team));
    return team;
}

static void
test_q_tasks_create_writes_event_and_history(void **state)
{
    fixture_t *fx = *state;
    int64_t team = s_catalog(fx->db);
    int64_t user = s_user(fx->db, "ann");
    int64_t project = s_project(fx->db);
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"Write\",\"project_id\":%lld,\"priority\":7,"
             "\"assignee\":{\"agent\":\"coder\"},\"input\":{\"x\":1}}",
             (long long)project);
    char *out = NULL;
    s_ok(fx->db, cd_q_tasks_create(fx->db, body, user, CD_Q_NULL, &out));
    json_t *t = s_parse(out, true);
    int64_t id = s_int(t, "id");
    assert_string_equal(s_str(t, "status"), "todo");
    assert_int_equal(s_int(t, "priority"), 7);
    assert_int_equal(s_int(t, "created_by"), user);
    json_decref(t);

    //  The event and the history row, committed with it.
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM events WHERE type = 'task.created' AND task_id = %lld"
             " AND project_id = %lld AND agent = 'coder' AND data ->> 'title' = 'Write'",
             (long long)id, (long long)project);
    assert_int_equal(s_count(fx->db, sql), 1);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_task_events_list(fx->db, id, NULL, 0, &page));
    assert_int_equal(page.count, 1);
    json_t *h = s_page_item(&page, 0);
    cd_q_page_fini(&page);
    assert_int_equal(s_int(h, "seq"), 1);
    assert_string_equal(s_str(h, "kind"), "created");
    assert_string_equal(s_str(h, "status"), "todo");
    assert_string_equal(s_str(h, "to"), "coder");
    assert_true(s_null(h, "from"));
    assert_string_equal(s_str(json_object_get(json_object_get(h, "payload"), "assignee"), "agent"),
                        "coder");
    json_decref(h);
    //  The counter agrees with the seq the statement wrote: the next
    //  append is 2.
    s_ok(fx->db, cd_q_task_events_append(fx->db, id, "output", NULL, NULL, NULL, NULL, &out));
    h = s_parse(out, true);
    assert_int_equal(s_int(h, "seq"), 2);
    json_decref(h);

    //  A role exists in the catalog or as an agent's role; a team by id.
    s_ok(fx->db, cd_q_tasks_create(fx->db, "{\"title\":\"r\",\"assignee\":{\"role\":\"reviewer\"}}",
                                   CD_Q_NULL, CD_Q_NULL, &out));
    free(out);
    s_ok(fx->db, cd_q_tasks_create(fx->db, "{\"title\":\"r\",\"assignee\":{\"role\":\"dev\"}}",
                                   CD_Q_NULL, CD_Q_NULL, &out));
    t = s_parse(out, true);
    assert_string_equal(s_str(json_object_get(t, "assignee"), "role"), "dev");
    json_decref(t);
    snprintf(body, sizeof body, "{\"title\":\"m\",\"assignee\":{\"team\":%lld}}", (long long)team);
    s_ok(fx->db, cd_q_tasks_create(fx->db, body, CD_Q_NULL, CD_Q_NULL, &out));
    free(out);
    //  Events without an agent for role and team assignees.
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events WHERE type = 'task.created'"
                                     " AND agent IS NULL"),
                     3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events WHERE kind = 'created'"), 4);
}

static void
test_q_tasks_create_unknown_references(void **state)
{
    fixture_t *fx = *state;
    s_catalog(fx->db);
    int64_t ann = s_user(fx->db, "ann");
    int64_t bob = s_user(fx->db, "bob");
    int64_t project = s_project(fx->db);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE projects SET created_by = %lld", (long long)ann);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    struct {
        const char *body;
        const char *field;
        const char *reason;
    } cases[] = {
        {"{\"title\":\"t\",\"assignee\":{\"agent\":\"ghost\"}}", "assignee", "no such agent"},
        {"{\"title\":\"t\",\"assignee\":{\"role\":\"ghost\"}}", "assignee", "no such role"},
        {"{\"title\":\"t\",\"assignee\":{\"team\":999}}", "assignee", "no such team"},
        {"{\"title\":\"t\",\"project_id\":999,\"assignee\":{\"agent\":\"coder\"}}", "project_id",
         "no such project"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        assert_int_equal(cd_q_tasks_create(fx->db, cases[i].body, CD_Q_NULL, CD_Q_NULL, &out),
                         CD_EINVAL);
        json_t *j = s_parse(out, true);
        assert_string_equal(s_str(j, "invalid"), cases[i].field);
        assert_string_equal(s_str(j, "reason"), cases[i].reason);
        json_decref(j);
    }
    //  Another user's project does not exist for a scoped caller.
    char body[160];
    snprintf(body, sizeof body,
             "{\"title\":\"t\",\"project_id\":%lld,\"assignee\":{\"role\":\"dev\"}}",
             (long long)project);
    char *out = NULL;
    assert_int_equal(cd_q_tasks_create(fx->db, body, bob, bob, &out), CD_EINVAL);
    free(out);
    s_ok(fx->db, cd_q_tasks_create(fx->db, body, ann, ann, &out));
    free(out);
    //  Nothing was written for the refused ones.
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events"), 1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events"), 1);
    //  Bad values are still the database's.
    s_sqlstate(fx->db,
               cd_q_tasks_create(fx->db, "{\"title\":\"\",\"assignee\":{\"agent\":\"coder\"}}",
                                 CD_Q_NULL, CD_Q_NULL, &out),
               "23514");
}

static void
test_q_tasks_create_batch(void **state)
{
    fixture_t *fx = *state;
    s_catalog(fx->db);
    cd_q_page_t page = {0};
    s_ok(fx->db,
         cd_q_tasks_create_batch(fx->db,
                                 "[{\"title\":\"a\",\"assignee\":{\"agent\":\"coder\"}},"
                                 "{\"title\":\"b\",\"assignee\":{\"role\":\"dev\"},\"priority\":1},"
                                 "{\"title\":\"c\",\"assignee\":{\"agent\":\"coder\"}}]",
                                 CD_Q_NULL, CD_Q_NULL, &page));
    assert_int_equal(page.count, 3);
    int64_t ids[3];
    assert_int_equal(s_page_ids(&page, ids, 3), 3);
    assert_true(ids[0] < ids[1] && ids[1] < ids[2]);
    json_t *b = s_page_item(&page, 1);
    assert_string_equal(s_str(b, "title"), "b");
    json_decref(b);
    cd_q_page_fini(&page);
    //  One event and one history row each, events in the same order.
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events WHERE kind = 'created'"
                                     " AND seq = 1"),
                     3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM (SELECT task_id, lag(task_id) OVER"
                                     " (ORDER BY id) AS prev FROM events) e"
                                     " WHERE e.prev >= e.task_id"),
                     0);

    //  All or nothing: the first element at fault is named.
    assert_int_equal(
        cd_q_tasks_create_batch(fx->db,
                                "[{\"title\":\"d\",\"assignee\":{\"agent\":\"coder\"}},"
                                "{\"title\":\"e\",\"assignee\":{\"agent\":\"ghost\"}},"
                                "{\"title\":\"f\",\"project_id\":12345,"
                                "\"assignee\":{\"agent\":\"coder\"}}]",
                                CD_Q_NULL, CD_Q_NULL, &page),
        CD_EINVAL);
    json_t *j = s_parse(page.items, false);
    assert_string_equal(s_str(j, "invalid"), "tasks[1].assignee");
    assert_string_equal(s_str(j, "reason"), "no such agent");
    json_decref(j);
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);
    assert_int_equal(cd_q_tasks_create_batch(fx->db,
                                             "[{\"title\":\"f\",\"project_id\":12345,"
                                             "\"assignee\":{\"agent\":\"coder\"}}]",
                                             CD_Q_NULL, CD_Q_NULL, &page),
                     CD_EINVAL);
    j = s_parse(page.items, false);
    assert_string_equal(s_str(j, "invalid"), "tasks[0].project_id");
    json_decref(j);
    cd_q_page_fini(&page);
    s_sqlstate(fx->db,
               cd_q_tasks_create_batch(fx->db,
                                       "[{\"title\":\"g\",\"assignee\":{\"agent\":\"coder\"}},"
                                       "{\"title\":\"h\",\"priority\":12,"
                                       "\"assignee\":{\"agent\":\"coder\"}}]",
                                       CD_Q_NULL, CD_Q_NULL, &page),
               "23514");
    assert_null(page.items);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events"), 3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events"), 3);

    s_ok(fx->db, cd_q_tasks_create_batch(fx->db, "[]", CD_Q_NULL, CD_Q_NULL, &page));
    assert_int_equal(page.count, 0);
    assert_string_equal(page.items, "[]");
    cd_q_page_fini(&page);
}

static void
test_q_tasks_api_writes(void **state)
{
    fixture_t *fx = *state;
    s_catalog(fx->db);
    int64_t ann = s_user(fx->db, "ann");
    int64_t bob = s_user(fx->db, "bob");
    char *out = NULL;
    s_ok(fx->db, cd_q_tasks_create(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"coder\"}}",
                                   ann, CD_Q_NULL, &out));
    json_t *t = s_parse(out, true);
    int64_t id = s_int(t, "id");
    json_decref(t);
    char idb[24], annb[24], bobb[24];
    snprintf(idb, sizeof idb, "%lld", (long long)id);
    snprintf(annb, sizeof annb, "%lld", (long long)ann);
    snprintf(bobb, sizeof bobb, "%lld", (long long)bob);

    //  Another user's task is no row, for every write.
    const char *p_bob[] = {idb, "{\"title\":\"x\"}", bobb};
    assert_null(s_write(fx->db, "tasks.patch", 3, p_bob));
    const char *c_bob[] = {idb, bobb};
    assert_null(s_write(fx->db, "tasks.cancel", 2, c_bob));
    assert_null(s_write(fx->db, "tasks.retry", 2, c_bob));
    const char *a_bob[] = {idb, bobb, bobb};
    assert_null(s_write(fx->db, "tasks.archive", 3, a_bob));

    //  patch: the task; retry of an unfinished one: a conflict answer.
    const char *p_ann[] = {idb, "{\"title\":\"x\",\"priority\":null}", annb};
    char *v = s_write(fx->db, "tasks.patch", 3, p_ann);
    t = s_parse(v, true);
    assert_string_equal(s_str(t, "title"), "x");
    assert_int_equal(s_int(t, "priority"), 5);
    json_decref(t);
    const char *c_ann[] = {idb, annb};
    v = s_write(fx->db, "tasks.retry", 2, c_ann);
    t = s_parse(v, true);
    assert_true(json_is_true(json_object_get(t, "conflict")));
    assert_string_equal(s_str(t, "status"), "todo");
    json_decref(t);

    //  cancel: the task, its event (with the holder) and history.
    s_ok(fx->db, cd_db_exec(fx->db, "UPDATE tasks SET agent = 'coder'", NULL));
    v = s_write(fx->db, "tasks.cancel", 2, c_ann);
    t = s_parse(v, true);
    assert_string_equal(s_str(t, "status"), "cancelled");
    json_decref(t);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events WHERE type = 'task.cancelled'"
                                     " AND agent = 'coder' AND data ->> 'status' = 'cancelled'"),
                     1);
    v = s_write(fx->db, "tasks.cancel", 2, c_ann);
    t = s_parse(v, true);
    assert_true(json_is_true(json_object_get(t, "conflict")));
    assert_string_equal(s_str(t, "status"), "cancelled");
    json_decref(t);
    v = s_write(fx->db, "tasks.patch", 3, p_ann);
    t = s_parse(v, true);
    assert_true(json_is_true(json_object_get(t, "conflict")));
    json_decref(t);

    //  retry: back to todo, with history.
    v = s_write(fx->db, "tasks.retry", 2, c_ann);
    t = s_parse(v, true);
    assert_string_equal(s_str(t, "status"), "todo");
    json_decref(t);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_task_events_list(fx->db, id, NULL, 0, &page));
    json_t *items = s_parse(page.items, false);
    cd_q_page_fini(&page);
    const char *kinds[] = {"created", "cancelled", "retry"};
    assert_int_equal(json_array_size(items), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *h = json_array_get(items, i);
        assert_string_equal(s_str(h, "kind"), kinds[i]);
        assert_int_equal(s_int(h, "seq"), (int64_t)i + 1);
    }
    assert_string_equal(s_str(json_array_get(items, 1), "from"), "coder");
    assert_string_equal(s_str(json_array_get(items, 1), "status"), "cancelled");
    assert_string_equal(s_str(json_array_get(items, 2), "status"), "todo");
    json_decref(items);

    //  The functions run the same statements (no owner scope).
    assert_int_equal(cd_q_tasks_cancel(fx->db, id, &out), 0);
    free(out);
    assert_int_equal(cd_q_tasks_patch(fx->db, id, "{\"title\":\"y\"}", &out), CD_ESTATE);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "status"), "cancelled");
    assert_string_equal(s_str(t, "title"), "x");
    json_decref(t);

    //  archive: the archived row, then no row.
    const char *a_ann[] = {idb, annb, annb};
    v = s_write(fx->db, "tasks.archive", 3, a_ann);
    t = s_parse(v, true);
    assert_int_equal(s_int(t, "id"), id);
    assert_int_equal(s_int(t, "archived_by"), ann);
    json_decref(t);
    assert_null(s_write(fx->db, "tasks.archive", 3, a_ann));
    assert_null(s_write(fx->db, "tasks.cancel", 2, c_ann));
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events"), 4);
}

static void
test_q_tasks_create_many(void **state)
{
    fixture_t *fx = *state;
    s_catalog(fx->db);
    int64_t ann = s_user(fx->db, "ann");
    int64_t bob = s_user(fx->db, "bob");
    int64_t project = s_project(fx->db);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE projects SET created_by = %lld", (long long)ann);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    //  Five callers: ok, unknown agent, ok (ann's project, scoped to ann),
    //  bob's view of ann's project, ok.
    char json[1024];
    snprintf(json, sizeof json,
             "[{\"b\":{\"title\":\"a\",\"assignee\":{\"agent\":\"coder\"}},\"u\":%lld,\"s\":null},"
             "{\"b\":{\"title\":\"b\",\"assignee\":{\"agent\":\"ghost\"}},\"u\":null,\"s\":null},"
             "{\"b\":{\"title\":\"c\",\"project_id\":%lld,\"assignee\":{\"role\":\"dev\"}},"
             "\"u\":%lld,\"s\":%lld},"
             "{\"b\":{\"title\":\"d\",\"project_id\":%lld,\"assignee\":{\"role\":\"dev\"}},"
             "\"u\":%lld,\"s\":%lld},"
             "{\"b\":{\"title\":\"e\",\"priority\":9,\"assignee\":{\"agent\":\"coder\"}}}]",
             (long long)ann, (long long)project, (long long)ann, (long long)ann, (long long)project,
             (long long)bob, (long long)bob);
    char *out = NULL;
    s_ok(fx->db, cd_q_tasks_create_many(fx->db, json, &out));
    json_t *a = s_parse(out, true);
    assert_int_equal(json_array_size(a), 5);
    assert_string_equal(s_str(json_array_get(a, 0), "title"), "a");
    assert_int_equal(s_int(json_array_get(a, 0), "created_by"), ann);
    assert_string_equal(s_str(json_array_get(a, 1), "invalid"), "assignee");
    assert_string_equal(s_str(json_array_get(a, 1), "reason"), "no such agent");
    assert_string_equal(s_str(json_array_get(a, 2), "title"), "c");
    assert_int_equal(s_int(json_array_get(a, 2), "project_id"), project);
    assert_string_equal(s_str(json_array_get(a, 3), "invalid"), "project_id");
    assert_string_equal(s_str(json_array_get(a, 4), "title"), "e");
    assert_int_equal(s_int(json_array_get(a, 4), "priority"), 9);
    assert_true(s_null(json_array_get(a, 4), "created_by"));
    int64_t i0 = s_int(json_array_get(a, 0), "id");
    int64_t i2 = s_int(json_array_get(a, 2), "id");
    int64_t i4 = s_int(json_array_get(a, 4), "id");
    assert_true(i0 < i2 && i2 < i4);
    json_decref(a);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events WHERE type = 'task.created'"), 3);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events WHERE seq = 1"), 3);
    //  A bad value fails the statement as a whole; nothing is written.
    s_sqlstate(
        fx->db,
        cd_q_tasks_create_many(fx->db,
                               "[{\"b\":{\"title\":\"f\",\"assignee\":{\"agent\":\"coder\"}}},"
                               "{\"b\":{\"title\":\"g\",\"priority\":10,"
                               "\"assignee\":{\"agent\":\"coder\"}}}]",
                               &out),
        "23514");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks"), 3);
    s_ok(fx->db, cd_q_tasks_create_many(fx->db,
                                        "[{\"b\":{\"title\":\"h\",\"assignee\":{\"agent\":"
                                        "\"ghost\"}}}]",
                                        &out));
    assert_non_null(strstr(out, "invalid"));
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_tasks_insert_get, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_insert_rejects_bad_rows, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_insert_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_list_filters, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_keyset_stable_under_inserts, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_patch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_claim_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_claim_concurrent_exactly_once, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_status_moves, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_fail_attempt_backoff, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_leases, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_counts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_history_and_archive, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_task_events_concurrent_seq, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_create_writes_event_and_history, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_create_unknown_references, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_create_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_create_many, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_tasks_api_writes, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
