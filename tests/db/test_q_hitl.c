/* label: db */
/*  test_q_hitl: human-in-the-loop requests (cd_q_hitl) against a real
    PostgreSQL: open, list, answer once, expire at the deadline. */
#include "cd_q_hitl.h"

#include <pthread.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

static int64_t
s_hitl(cd_db_t *db, int64_t task, const char *json)
{
    char *out = NULL;
    s_ok(db, cd_q_hitl_insert(db, task, "coder", json, &out));
    json_t *h = s_parse(out, true);
    int64_t id = s_int(h, "id");
    json_decref(h);
    return id;
}

static void
test_q_hitl_lifecycle(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    int64_t project = s_project(fx->db);
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"coder\"}", project, ann);
    int64_t other = s_raw_task(fx->db, "{\"agent\":\"coder\"}", CD_Q_NULL, CD_Q_NULL);

    char *out = NULL;
    s_ok(fx->db, cd_q_hitl_insert(fx->db, task, "coder",
                                  "{\"question\":\"Deploy?\",\"options\":[\"yes\",\"no\"],"
                                  "\"timeout_s\":60,\"on_timeout\":\"approve\"}",
                                  &out));
    json_t *h = s_parse(out, true);
    int64_t id = s_int(h, "id");
    assert_int_equal(s_int(h, "task_id"), task);
    assert_int_equal(s_int(h, "project_id"), project); // copied from the task
    assert_string_equal(s_str(h, "agent"), "coder");
    assert_string_equal(s_str(h, "question"), "Deploy?");
    assert_int_equal(json_array_size(json_object_get(h, "options")), 2);
    assert_string_equal(s_str(h, "status"), "pending");
    assert_string_equal(s_str(h, "on_timeout"), "approve");
    assert_non_null(s_str(h, "deadline"));
    assert_true(s_null(h, "response") && s_null(h, "answered_at") && s_null(h, "approved"));
    json_decref(h);
    s_ok(fx->db, cd_q_hitl_insert(fx->db, other, NULL, "{\"question\":\"Why?\"}", &out));
    h = s_parse(out, true);
    int64_t plain = s_int(h, "id");
    assert_true(s_null(h, "deadline") && s_null(h, "options") && s_null(h, "project_id"));
    assert_string_equal(s_str(h, "on_timeout"), "deny");
    json_decref(h);
    assert_int_equal(cd_q_hitl_insert(fx->db, task + 99, NULL, "{\"question\":\"q\"}", &out),
                     CD_ENOTFOUND);
    s_sqlstate(fx->db, cd_q_hitl_insert(fx->db, task, NULL, "{\"question\":\"\"}", &out), "23514");
    s_sqlstate(
        fx->db,
        cd_q_hitl_insert(fx->db, task, NULL, "{\"question\":\"q\",\"on_timeout\":\"x\"}", &out),
        "23514");
    s_sqlstate(fx->db,
               cd_q_hitl_insert(fx->db, task, NULL, "{\"question\":\"q\",\"options\":{}}", &out),
               "23514");

    s_ok(fx->db, cd_q_hitl_get(fx->db, id, CD_Q_NULL, &out));
    free(out);
    s_ok(fx->db, cd_q_hitl_get(fx->db, id, ann, &out)); //  ann's task
    free(out);
    int64_t bob = s_user(fx->db, "bob");
    assert_int_equal(cd_q_hitl_get(fx->db, id, bob, &out), CD_ENOTFOUND);
    assert_int_equal(cd_q_hitl_get(fx->db, plain, ann, &out), CD_ENOTFOUND);
    assert_int_equal(cd_q_hitl_get(fx->db, id + 99, CD_Q_NULL, &out), CD_ENOTFOUND);

    //  Lists and filters.
    int64_t ids[8];
    cd_q_page_t page = {0};
    cd_q_hitl_filter_t f = CD_Q_HITL_FILTER_ALL;
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 8), 2);
    assert_int_equal(ids[0], plain);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.project_id = project;
    f.status = "pending";
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 8), 1);
    assert_int_equal(ids[0], id);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.created_by = ann;
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(s_page_ids(&page, ids, 8), 1);
    assert_int_equal(ids[0], id);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.task_id = other;
    f.limit = 1;
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_int_equal(page.count, 1);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);
    f = CD_Q_HITL_FILTER_ALL;
    f.limit = 1;
    f.cursor = "999999";
    s_ok(fx->db, cd_q_hitl_list(fx->db, &f, &page));
    assert_non_null(page.next_cursor);
    cd_q_page_fini(&page);

    //  Answered once; the second answer is a conflict.
    //  Another user's task: as if it did not exist, and nothing changes.
    assert_int_equal(cd_q_hitl_respond(fx->db, id, "\"yes\"", 1, bob, "n1", &out), CD_ENOTFOUND);
    assert_int_equal(
        s_count(fx->db, "SELECT count(*) FROM hitl_requests WHERE status <> 'pending'"), 0);
    s_ok(fx->db, cd_q_hitl_respond(fx->db, id, "\"yes\"", 1, ann, "n1", &out));
    h = s_parse(out, true);
    assert_string_equal(s_str(h, "status"), "answered");
    assert_string_equal(s_str(h, "response"), "yes");
    assert_true(json_is_true(json_object_get(h, "approved")));
    assert_non_null(s_str(h, "answered_at"));
    json_decref(h);
    assert_int_equal(cd_q_hitl_respond(fx->db, id, "\"no\"", 0, CD_Q_NULL, "n1", &out), CD_ESTATE);
    h = s_parse(out, true);
    assert_string_equal(s_str(h, "response"), "yes");
    assert_true(json_is_true(json_object_get(h, "conflict")));
    json_decref(h);
    assert_int_equal(cd_q_hitl_respond(fx->db, id + 99, "1", -1, CD_Q_NULL, "n1", &out),
                     CD_ENOTFOUND);
    s_ok(fx->db, cd_q_hitl_respond(fx->db, plain, "{\"because\":1}", -1, CD_Q_NULL, "n1", &out));
    h = s_parse(out, true);
    assert_true(s_null(h, "approved"));
    json_decref(h);
}

static void
test_q_hitl_expiry_and_cancel(void **state)
{
    fixture_t *fx = *state;
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"coder\"}", CD_Q_NULL, CD_Q_NULL);
    int64_t soon = s_hitl(fx->db, task,
                          "{\"question\":\"q1\",\"timeout_s\":0.05,"
                          "\"on_timeout\":\"fail\"}");
    int64_t later = s_hitl(fx->db, task, "{\"question\":\"q2\",\"timeout_s\":3600}");
    s_hitl(fx->db, task, "{\"question\":\"q3\"}");
    cd_q_page_t page = {0};
    s_sleep_ms(80);
    s_ok(fx->db, cd_q_hitl_expire_due(fx->db, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], soon);
    json_t *h = s_page_item(&page, 0);
    assert_string_equal(s_str(h, "status"), "expired");
    assert_string_equal(s_str(h, "on_timeout"), "fail");
    json_decref(h);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_hitl_expire_due(fx->db, &page));
    assert_int_equal(page.count, 0);
    cd_q_page_fini(&page);
    //  Too late to answer.
    char *out = NULL;
    assert_int_equal(cd_q_hitl_respond(fx->db, soon, "\"ok\"", 1, CD_Q_NULL, "n1", &out),
                     CD_ESTATE);
    free(out);

    int64_t n = -1;
    s_ok(fx->db, cd_q_hitl_cancel_task(fx->db, task, &n));
    assert_int_equal(n, 2);
    s_ok(fx->db, cd_q_hitl_get(fx->db, later, CD_Q_NULL, &out));
    h = s_parse(out, true);
    assert_string_equal(s_str(h, "status"), "cancelled");
    json_decref(h);
    s_ok(fx->db, cd_q_hitl_cancel_task(fx->db, task, &n));
    assert_int_equal(n, 0);
}

//  One text value of SQL, freed by the caller.
static char *
s_text(cd_db_t *db, const char *sql)
{
    char *out = NULL;
    s_ok(db, cd_db_query_text(db, sql, 0, NULL, &out));
    return out;
}

static void
test_q_hitl_respond_resumes_task_after_the_last(void **state)
{
    fixture_t *fx = *state;
    int64_t project = s_project(fx->db);
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"coder\"}", project, CD_Q_NULL);
    int64_t first = s_hitl(fx->db, task, "{\"question\":\"one?\"}");
    int64_t second = s_hitl(fx->db, task, "{\"question\":\"two?\"}");
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE tasks SET status = 'waiting_human' WHERE id = %lld",
             (long long)task);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));

    //  The first answer: the task still waits for the second.
    char *out = NULL;
    s_ok(fx->db, cd_q_hitl_respond(fx->db, first, "{\"ok\":1}", 1, CD_Q_NULL, "n1", &out));
    json_t *h = s_parse(out, true);
    assert_string_equal(s_str(h, "status"), "answered");
    assert_null(json_object_get(h, "conflict"));
    json_decref(h);
    snprintf(sql, sizeof sql, "SELECT status FROM tasks WHERE id = %lld", (long long)task);
    char *status = s_text(fx->db, sql);
    assert_string_equal(status, "waiting_human");
    free(status);
    snprintf(sql, sizeof sql,
             "SELECT json_build_object('kind', kind, 'to', to_agent, 'status', status, 'payload',"
             " payload) FROM task_events WHERE task_id = %lld ORDER BY seq DESC LIMIT 1",
             (long long)task);
    json_t *e = s_parse(s_text(fx->db, sql), true);
    assert_string_equal(s_str(e, "kind"), "hitl_answered");
    assert_string_equal(s_str(e, "to"), "coder");
    assert_string_equal(s_str(e, "status"), "waiting_human");
    json_t *payload = json_object_get(e, "payload");
    assert_int_equal(s_int(payload, "hitl_id"), first);
    assert_int_equal(s_int(json_object_get(payload, "response"), "ok"), 1);
    assert_true(json_is_true(json_object_get(payload, "approved")));
    json_decref(e);
    const char *last_event = "SELECT json_build_object('type', type, 'project_id', project_id,"
                             " 'task_id', task_id, 'agent', agent, 'data', data) FROM events"
                             " ORDER BY id DESC LIMIT 1";
    e = s_parse(s_text(fx->db, last_event), true);
    assert_string_equal(s_str(e, "type"), "hitl.answered");
    assert_int_equal(s_int(e, "project_id"), project);
    assert_int_equal(s_int(e, "task_id"), task);
    assert_string_equal(s_str(e, "agent"), "coder");
    json_t *data = json_object_get(e, "data");
    assert_int_equal(s_int(data, "id"), first);
    assert_string_equal(s_str(data, "status"), "answered");
    assert_true(json_is_false(json_object_get(data, "task_resumed")));
    json_decref(e);

    //  The last answer: back in progress, leased to the answering node.
    s_ok(fx->db, cd_q_hitl_respond(fx->db, second, "\"go\"", -1, CD_Q_NULL, "n1", &out));
    free(out);
    snprintf(sql, sizeof sql,
             "SELECT json_build_object('status', status, 'lease_owner', lease_owner,"
             " 'leased', lease_expires_at > now(), 'seq', event_seq) FROM tasks WHERE id = %lld",
             (long long)task);
    json_t *t = s_parse(s_text(fx->db, sql), true);
    assert_string_equal(s_str(t, "status"), "in_progress");
    assert_string_equal(s_str(t, "lease_owner"), "n1");
    assert_true(json_is_true(json_object_get(t, "leased")));
    assert_int_equal(s_int(t, "seq"), 2); //  two history rows, numbered by the trigger
    json_decref(t);
    e = s_parse(s_text(fx->db, last_event), true);
    assert_true(json_is_true(json_object_get(json_object_get(e, "data"), "task_resumed")));
    json_decref(e);
    snprintf(sql, sizeof sql,
             "SELECT status FROM task_events WHERE task_id = %lld ORDER BY seq DESC LIMIT 1",
             (long long)task);
    status = s_text(fx->db, sql);
    assert_string_equal(status, "in_progress");
    free(status);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events WHERE type = 'hitl.answered'"),
                     2);

    //  A conflict writes nothing.
    assert_int_equal(cd_q_hitl_respond(fx->db, second, "1", -1, CD_Q_NULL, "n1", &out), CD_ESTATE);
    free(out);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events"), 2);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM task_events"), 2);

    //  A task that is not waiting (here: todo) is left as it is.
    int64_t other = s_raw_task(fx->db, "{\"agent\":\"coder\"}", CD_Q_NULL, CD_Q_NULL);
    int64_t q = s_hitl(fx->db, other, "{\"question\":\"q\"}");
    s_ok(fx->db, cd_q_hitl_respond(fx->db, q, "null", 0, CD_Q_NULL, "n1", &out));
    h = s_parse(out, true);
    assert_true(s_null(h, "response")); //  JSON null is an answer too
    assert_true(json_is_false(json_object_get(h, "approved")));
    json_decref(h);
    snprintf(sql, sizeof sql, "SELECT status FROM tasks WHERE id = %lld", (long long)other);
    status = s_text(fx->db, sql);
    assert_string_equal(status, "todo");
    free(status);

    //  The statement persist runs is the one these calls ran.
    assert_int_equal(cd_q_hitl_n_writes, 1);
    assert_string_equal(cd_q_hitl_writes[0].name, "hitl.respond");
    assert_int_equal(cd_q_hitl_writes[0].nparams, 4);
}

typedef struct {
    const char *conninfo; //  the test's database
    int64_t id;           //  the request to answer
    int rc;               //  the answer's outcome
} s_racer_t;

static void *
s_racer(void *arg)
{
    s_racer_t *racer = (s_racer_t *)arg;
    cd_db_t *db = NULL;
    racer->rc = cd_db_connect(racer->conninfo, &db, NULL);
    if (racer->rc == 0) {
        char *out = NULL;
        racer->rc = cd_q_hitl_respond(db, racer->id, "\"b\"", 1, CD_Q_NULL, "n2", &out);
        free(out);
    }
    cd_db_close(&db);
    return NULL;
}

//  Two nodes answer the last two requests of a task at once: the second
//  waits for the first to commit and then sees that it is the last, so
//  the task resumes (deciding from its snapshot, both would leave it
//  waiting).
static void
test_q_hitl_racing_answers_resume_the_task(void **state)
{
    fixture_t *fx = *state;
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"coder\"}", CD_Q_NULL, CD_Q_NULL);
    int64_t first = s_hitl(fx->db, task, "{\"question\":\"one?\"}");
    int64_t second = s_hitl(fx->db, task, "{\"question\":\"two?\"}");
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE tasks SET status = 'waiting_human' WHERE id = %lld",
             (long long)task);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));

    s_ok(fx->db, cd_db_begin(fx->db));
    char *out = NULL;
    s_ok(fx->db, cd_q_hitl_respond(fx->db, first, "\"a\"", 1, CD_Q_NULL, "n1", &out));
    free(out);
    s_racer_t racer = {fx->conninfo, second, -1};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_racer, &racer), 0);
    s_sleep_ms(300); //  the racer is now waiting for our locks
    s_ok(fx->db, cd_db_commit(fx->db));
    pthread_join(thread, NULL);
    assert_int_equal(racer.rc, 0);
    snprintf(sql, sizeof sql, "SELECT status || ' ' || lease_owner FROM tasks WHERE id = %lld",
             (long long)task);
    char *status = s_text(fx->db, sql);
    assert_string_equal(status, "in_progress n2");
    free(status);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_hitl_lifecycle, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_hitl_expiry_and_cancel, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_hitl_respond_resumes_task_after_the_last, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_hitl_racing_answers_resume_the_task, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
