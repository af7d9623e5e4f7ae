/* label: db */
/*  test_q_events: the event stream queries (cd_q_events) against a real
    PostgreSQL, including ids that increase in commit order. */
#include "cd_q_events.h"
#include "cd_q_tasks.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

static int64_t
s_event(cd_db_t *db, const char *type, int64_t project, int64_t task, const char *agent)
{
    char *out = NULL;
    s_ok(db, cd_q_events_insert(db, type, project, task, agent, NULL, &out));
    json_t *e = s_parse(out, true);
    int64_t id = s_int(e, "id");
    json_decref(e);
    return id;
}

static void
test_q_events_insert_list(void **state)
{
    fixture_t *fx = *state;
    int64_t last = -1;
    s_ok(fx->db, cd_q_events_last_id(fx->db, &last));
    assert_int_equal(last, 0);

    char *out = NULL;
    s_ok(fx->db,
         cd_q_events_insert(fx->db, "task.created", 3, 9, "coder", "{\"title\":\"t\"}", &out));
    json_t *e = s_parse(out, true);
    assert_int_equal(s_int(e, "id"), 1);
    assert_string_equal(s_str(e, "type"), "task.created");
    assert_int_equal(s_int(e, "project_id"), 3);
    assert_int_equal(s_int(e, "task_id"), 9);
    assert_string_equal(s_str(e, "agent"), "coder");
    assert_string_equal(s_str(json_object_get(e, "data"), "title"), "t");
    assert_non_null(s_str(e, "ts"));
    json_decref(e);
    s_ok(fx->db,
         cd_q_events_insert(fx->db, "agent.status", CD_Q_NULL, CD_Q_NULL, NULL, NULL, &out));
    e = s_parse(out, true);
    assert_true(s_null(e, "project_id") && s_null(e, "task_id") && s_null(e, "agent"));
    assert_int_equal(json_object_size(json_object_get(e, "data")), 0);
    json_decref(e);
    s_sqlstate(fx->db,
               cd_q_events_insert(fx->db, "task.exploded", CD_Q_NULL, CD_Q_NULL, NULL, NULL, &out),
               "23514");
    assert_null(out);

    //  The failed insert used up a sequence value: ids have gaps, but
    //  still increase.
    int64_t e3 = s_event(fx->db, "task.started", 3, 9, "coder");
    int64_t e4 = s_event(fx->db, "task.completed", 3, 10, "coder");
    int64_t e5 = s_event(fx->db, "task.failed", 4, 11, "other");
    assert_true(e3 > 2 && e4 > e3 && e5 > e4);
    s_ok(fx->db, cd_q_events_last_id(fx->db, &last));
    assert_int_equal(last, e5);

    //  Ascending, filters combine.
    int64_t ids[16];
    cd_q_page_t page = {0};
    cd_q_event_filter_t f = CD_Q_EVENT_FILTER_ALL;
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 16), 5);
    int64_t want[] = {1, 2, e3, e4, e5};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ids[i], want[i]);
    }
    cd_q_page_fini(&page);
    f = CD_Q_EVENT_FILTER_ALL;
    f.project_id = 3;
    f.types = "task.started,task.completed";
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 16), 2);
    assert_int_equal(ids[0], e3);
    assert_int_equal(ids[1], e4);
    cd_q_page_fini(&page);
    f = CD_Q_EVENT_FILTER_ALL;
    f.task_id = 9;
    f.agent = "coder";
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
    f = CD_Q_EVENT_FILTER_ALL;
    f.agent = "other";
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 16), 1);
    assert_int_equal(ids[0], e5);
    cd_q_page_fini(&page);

    //  after = Last-Event-ID; pages continue from next_cursor.
    f = CD_Q_EVENT_FILTER_ALL;
    f.after = "0";
    f.limit = 2;
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    assert_int_equal(page.count, 2);
    assert_string_equal(page.next_cursor, "2");
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    f.after = cursor;
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    free(cursor);
    assert_int_equal(s_page_ids(&page, ids, 16), 2);
    assert_int_equal(ids[0], e3);
    cd_q_page_fini(&page);
    char lastb[24];
    f.after = cd__q_i64(lastb, e5);
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    assert_int_equal(page.count, 0);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);
}

static void
test_q_events_rows_carry_the_filter_fields(void **state)
{
    fixture_t *fx = *state;
    int64_t e1 = s_event(fx->db, "task.created", 3, 9, "coder");
    int64_t e2 = s_event(fx->db, "agent.status", CD_Q_NULL, CD_Q_NULL, NULL);
    int64_t e3 = s_event(fx->db, "task.failed", 4, 11, "other");

    //  Every column, and the same JSON as the list gives.
    cd_db_rows_t *rows = NULL;
    cd_q_event_filter_t f = CD_Q_EVENT_FILTER_ALL;
    s_ok(fx->db, cd_q_events_rows(fx->db, &f, &rows));
    assert_int_equal(cd_db_rows_count(rows), 3);
    assert_int_equal(cd_db_rows_ncols(rows), 8);
    int64_t id = 0;
    assert_int_equal(cd_db_rows_int64(rows, 0, CD_Q_EVENT_COL_ID, &id), 0);
    assert_int_equal(id, e1);
    assert_string_equal(cd_db_rows_get(rows, 0, CD_Q_EVENT_COL_TYPE), "task.created");
    assert_string_equal(cd_db_rows_get(rows, 0, CD_Q_EVENT_COL_PROJECT), "3");
    assert_string_equal(cd_db_rows_get(rows, 0, CD_Q_EVENT_COL_TASK), "9");
    assert_string_equal(cd_db_rows_get(rows, 0, CD_Q_EVENT_COL_AGENT), "coder");
    assert_true(cd_db_rows_isnull(rows, 1, CD_Q_EVENT_COL_PROJECT));
    assert_true(cd_db_rows_isnull(rows, 1, CD_Q_EVENT_COL_TASK));
    assert_true(cd_db_rows_isnull(rows, 1, CD_Q_EVENT_COL_AGENT));
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_events_list(fx->db, &f, &page));
    json_t *items = s_parse(page.items, false);
    for (int i = 0; i < 3; i++) {
        json_t *row = s_parse((char *)cd_db_rows_get(rows, i, CD_Q_EVENT_COL_JSON), false);
        assert_true(json_equal(row, json_array_get(items, (size_t)i)));
        json_decref(row);
    }
    json_decref(items);
    cd_q_page_fini(&page);
    cd_db_rows_destroy(&rows);

    //  Filters, after and limit as the list's.
    f.types = "task.created,task.failed";
    f.limit = 1;
    s_ok(fx->db, cd_q_events_rows(fx->db, &f, &rows));
    assert_int_equal(cd_db_rows_count(rows), 1);
    assert_int_equal(cd_db_rows_int64(rows, 0, CD_Q_EVENT_COL_ID, &id), 0);
    assert_int_equal(id, e1);
    cd_db_rows_destroy(&rows);
    char after[24];
    f.after = cd__q_i64(after, e1);
    f.limit = 0;
    s_ok(fx->db, cd_q_events_rows(fx->db, &f, &rows));
    assert_int_equal(cd_db_rows_count(rows), 1);
    assert_int_equal(cd_db_rows_int64(rows, 0, CD_Q_EVENT_COL_ID, &id), 0);
    assert_int_equal(id, e3);
    cd_db_rows_destroy(&rows);
    f = CD_Q_EVENT_FILTER_ALL;
    f.agent = "coder";
    f.project_id = 3;
    f.task_id = 9;
    s_ok(fx->db, cd_q_events_rows(fx->db, &f, &rows));
    assert_int_equal(cd_db_rows_count(rows), 1);
    cd_db_rows_destroy(&rows);
    f = CD_Q_EVENT_FILTER_ALL;
    f.after = cd__q_i64(after, e3);
    s_ok(fx->db, cd_q_events_rows(fx->db, &f, &rows));
    assert_int_equal(cd_db_rows_count(rows), 0);
    cd_db_rows_destroy(&rows);
    (void)e2;

    //  A limit above the cap is clamped, a malformed after refused.
    f = CD_Q_EVENT_FILTER_ALL;
    f.limit = CD_Q_EVENTS_ROWS_MAX * 10;
    s_ok(fx->db, cd_q_events_rows(fx->db, &f, &rows));
    assert_int_equal(cd_db_rows_count(rows), 3);
    cd_db_rows_destroy(&rows);
    f.after = "12x";
    s_sqlstate(fx->db, cd_q_events_rows(fx->db, &f, &rows), "22P02");
    assert_null(rows);

    //  The bus's tail: the unfiltered rows, every column alike, after an
    //  id, up to a limit.
    f = CD_Q_EVENT_FILTER_ALL;
    s_ok(fx->db, cd_q_events_rows(fx->db, &f, &rows));
    cd_db_rows_t *tail = NULL;
    s_ok(fx->db, cd_q_events_tail(fx->db, 0, 0, &tail));
    assert_int_equal(cd_db_rows_count(tail), 3);
    assert_int_equal(cd_db_rows_ncols(tail), cd_db_rows_ncols(rows));
    for (int i = 0; i < 3; i++) {
        for (int c = 0; c < cd_db_rows_ncols(rows); c++) {
            assert_int_equal(cd_db_rows_isnull(tail, i, c), cd_db_rows_isnull(rows, i, c));
            if (!cd_db_rows_isnull(rows, i, c)) {
                assert_string_equal(cd_db_rows_get(tail, i, c), cd_db_rows_get(rows, i, c));
            }
        }
    }
    cd_db_rows_destroy(&tail);
    cd_db_rows_destroy(&rows);
    s_ok(fx->db, cd_q_events_tail(fx->db, e1, 1, &tail));
    assert_int_equal(cd_db_rows_count(tail), 1);
    assert_int_equal(cd_db_rows_int64(tail, 0, CD_Q_EVENT_COL_ID, &id), 0);
    assert_int_equal(id, e2);
    cd_db_rows_destroy(&tail);
    s_ok(fx->db, cd_q_events_tail(fx->db, e3, CD_Q_EVENTS_ROWS_MAX * 10, &tail));
    assert_int_equal(cd_db_rows_count(tail), 0);
    cd_db_rows_destroy(&tail);
}

//  The ids a viewer's list gives (every page of at most limit), in order.
static int
s_viewer_ids(cd_db_t *db, int64_t viewer, int64_t task, int64_t *ids, int max)
{
    cd_q_event_filter_t f = CD_Q_EVENT_FILTER_ALL;
    f.viewer = viewer;
    f.task_id = task;
    f.limit = 2;
    char *cursor = NULL;
    int n = 0;
    do {
        cd_q_page_t page = {0};
        f.after = cursor;
        s_ok(db, cd_q_events_list(db, &f, &page));
        n += s_page_ids(&page, ids + n, max - n);
        free(cursor);
        cursor = page.next_cursor;
        page.next_cursor = NULL;
        cd_q_page_fini(&page);
    } while (cursor);
    //  The row set agrees with the list, owners included.
    f.after = NULL;
    f.limit = 0;
    cd_db_rows_t *rows = NULL;
    s_ok(db, cd_q_events_rows(db, &f, &rows));
    assert_int_equal(cd_db_rows_count(rows), n);
    for (int i = 0; i < n; i++) {
        int64_t id = 0, owner = 0, powner = 0;
        assert_int_equal(cd_db_rows_int64(rows, i, CD_Q_EVENT_COL_ID, &id), 0);
        assert_int_equal(id, ids[i]);
        if (viewer != CD_Q_NULL &&
            cd_db_rows_int64(rows, i, CD_Q_EVENT_COL_TASK_OWNER, &owner) != 0) {
            owner = CD_Q_NULL;
        }
        if (viewer != CD_Q_NULL &&
            cd_db_rows_int64(rows, i, CD_Q_EVENT_COL_PROJECT_OWNER, &powner) != 0) {
            powner = CD_Q_NULL;
        }
        if (viewer != CD_Q_NULL && owner != viewer && powner != viewer) {
            //  Shared: an agent.status naming no task and no project.
            assert_string_equal(cd_db_rows_get(rows, i, CD_Q_EVENT_COL_TYPE), "agent.status");
            assert_true(cd_db_rows_isnull(rows, i, CD_Q_EVENT_COL_TASK));
            assert_true(cd_db_rows_isnull(rows, i, CD_Q_EVENT_COL_PROJECT));
        }
    }
    cd_db_rows_destroy(&rows);
    return n;
}

static void
test_q_events_owners_decide_what_a_user_sees(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann"), bob = s_user(fx->db, "bob");
    int64_t ann_project = 0, bob_project = 0;
    const char *pa[] = {cd__q_i64((char[24]){0}, ann)};
    s_ok(fx->db, cd_db_query_int64(fx->db,
                                   "INSERT INTO projects (name, created_by) VALUES ('a', $1)"
                                   " RETURNING id",
                                   1, pa, &ann_project));
    const char *pb[] = {cd__q_i64((char[24]){0}, bob)};
    s_ok(fx->db, cd_db_query_int64(fx->db,
                                   "INSERT INTO projects (name, created_by) VALUES ('b', $1)"
                                   " RETURNING id",
                                   1, pb, &bob_project));
    int64_t ann_task = s_raw_task(fx->db, "{\"agent\":\"a\"}", CD_Q_NULL, ann);
    int64_t bob_task = s_raw_task(fx->db, "{\"agent\":\"a\"}", CD_Q_NULL, bob);
    //  An admin's (no owner) task in ann's project: ann owns its events
    //  through the project.
    int64_t in_ann_project = s_raw_task(fx->db, "{\"agent\":\"a\"}", ann_project, CD_Q_NULL);
    int64_t gone_task = s_raw_task(fx->db, "{\"agent\":\"a\"}", CD_Q_NULL, bob);

    int64_t e_ann = s_event(fx->db, "task.created", CD_Q_NULL, ann_task, NULL);
    int64_t e_bob = s_event(fx->db, "task.created", CD_Q_NULL, bob_task, NULL);
    int64_t e_agent = s_event(fx->db, "agent.status", CD_Q_NULL, CD_Q_NULL, "coder");
    int64_t e_fired = s_event(fx->db, "schedule.fired", CD_Q_NULL, CD_Q_NULL, NULL);
    int64_t e_proj = s_event(fx->db, "task.started", ann_project, in_ann_project, "coder");
    int64_t e_art = s_event(fx->db, "artifact.created", bob_project, CD_Q_NULL, NULL);
    int64_t e_gone = s_event(fx->db, "task.completed", CD_Q_NULL, gone_task, NULL);
    int64_t e_none = s_event(fx->db, "task.failed", CD_Q_NULL, 999999, NULL);
    int64_t e_agent_task = s_event(fx->db, "agent.status", CD_Q_NULL, ann_task, "coder");
    //  An archived task's events stay its owner's.
    char *archived = NULL;
    s_ok(fx->db, cd_q_tasks_archive(fx->db, gone_task, CD_Q_NULL, &archived));
    free(archived);

    int64_t ids[32];
    int n = s_viewer_ids(fx->db, CD_Q_NULL, CD_Q_NULL, ids, 32);
    assert_int_equal(n, 9);
    n = s_viewer_ids(fx->db, ann, CD_Q_NULL, ids, 32);
    int64_t want_ann[] = {e_ann, e_agent, e_proj, e_agent_task};
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) {
        assert_int_equal(ids[i], want_ann[i]);
    }
    n = s_viewer_ids(fx->db, bob, CD_Q_NULL, ids, 32);
    int64_t want_bob[] = {e_bob, e_agent, e_art, e_gone};
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) {
        assert_int_equal(ids[i], want_bob[i]);
    }
    //  Another's task by id: nothing, not an error.
    assert_int_equal(s_viewer_ids(fx->db, bob, ann_task, ids, 32), 0);
    assert_int_equal(s_viewer_ids(fx->db, ann, ann_task, ids, 32), 2);
    (void)e_fired;
    (void)e_none;

    //  Owners of events not in the table.
    int64_t to = 0, po = 0;
    s_ok(fx->db, cd_q_events_owners(fx->db, ann_task, bob_project, &to, &po));
    assert_int_equal(to, ann);
    assert_int_equal(po, bob);
    s_ok(fx->db, cd_q_events_owners(fx->db, gone_task, CD_Q_NULL, &to, &po));
    assert_int_equal(to, bob);
    assert_true(po == CD_Q_NULL);
    s_ok(fx->db, cd_q_events_owners(fx->db, CD_Q_NULL, CD_Q_NULL, &to, &po));
    assert_true(to == CD_Q_NULL && po == CD_Q_NULL);
    s_ok(fx->db, cd_q_events_owners(fx->db, in_ann_project, 424242, &to, &po));
    assert_true(to == CD_Q_NULL && po == CD_Q_NULL);
}

typedef struct {
    const char *conninfo; // database
    int64_t id;           // the id its event got
    int64_t waited_ms;    // how long the insert took
    int rc;               // its result
} writer_t;

static int64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
s_writer(void *arg)
{
    writer_t *w = arg;
    cd_db_t *db = NULL;
    w->rc = cd_db_connect(w->conninfo, &db, NULL);
    if (w->rc == 0) {
        int64_t t0 = s_now_ms();
        char *out = NULL;
        w->rc = cd_q_events_insert(db, "task.token", CD_Q_NULL, CD_Q_NULL, NULL, NULL, &out);
        w->waited_ms = s_now_ms() - t0;
        if (w->rc == 0) {
            json_t *e = json_loads(out, 0, NULL);
            w->id = json_integer_value(json_object_get(e, "id"));
            json_decref(e);
        }
        free(out);
    }
    cd_db_close(&db);
    return NULL;
}

static void
test_q_events_ids_in_commit_order(void **state)
{
    fixture_t *fx = *state;
    //  A holds an event in an open transaction; B's insert must wait for
    //  A's commit and get a larger id, so a reader that saw B's id cannot
    //  later find A's below it.
    s_ok(fx->db, cd_db_begin(fx->db));
    int64_t a = s_event(fx->db, "task.created", CD_Q_NULL, CD_Q_NULL, NULL);
    writer_t w = {fx->conninfo, 0, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_writer, &w), 0);
    s_sleep_ms(300);

    //  Meanwhile a reader sees neither.
    cd_db_t *reader = NULL;
    assert_int_equal(cd_db_connect(fx->conninfo, &reader, NULL), 0);
    int64_t last = -1;
    s_ok(reader, cd_q_events_last_id(reader, &last));
    assert_int_equal(last, 0);

    s_ok(fx->db, cd_db_commit(fx->db));
    pthread_join(th, NULL);
    assert_int_equal(w.rc, 0);
    assert_true(w.id > a);
    assert_true(w.waited_ms >= 200);
    s_ok(reader, cd_q_events_last_id(reader, &last));
    assert_int_equal(last, w.id);
    cd_db_close(&reader);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_events_insert_list, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_events_rows_carry_the_filter_fields, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_events_owners_decide_what_a_user_sees, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_events_ids_in_commit_order, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
