/* label: db */
/*  test_q_orch: the orchestrator's statements and reads (cd_q_orch)
    against a real PostgreSQL: candidates in priority order per key, the
    claim and its history, a pipeline's advance and completion, retries,
    failure, parking, questions and their expiry, recovery and where a run
    resumes, leases, and that a record for a task that changed meanwhile
    changes nothing. */
#include "cd_q_hitl.h"
#include "cd_q_orch.h"
#include "cd_q_tasks.h"

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

#define NODE "n1"

//  A task with its `created` history row, as the API leaves it (without
//  the API's check that its assignee exists); returns its id.
static int64_t
s_task(cd_db_t *db, const char *body)
{
    char *out = NULL;
    int rc = cd_q_tasks_insert(db, body, CD_Q_NULL, &out);
    if (rc != 0) {
        fail_msg("insert %s: %s", body, cd_errname(rc));
    }
    json_t *t = s_parse(out, true);
    int64_t id = s_int(t, "id");
    const char *agent = s_str(json_object_get(t, "assignee"), "agent");
    s_ok(db, cd_q_task_events_append(db, id, "created", NULL, agent, "todo", NULL, &out));
    free(out);
    json_decref(t);
    return id;
}

//  Runs a write and returns its answer parsed.
static json_t *
s_write(cd_db_t *db, const char *name, const char *const *params)
{
    char *out = NULL;
    int rc = cd_q_orch_write(db, name, params, &out);
    if (rc != 0) {
        const cd_db_error_t *err = cd_db_error(db);
        fail_msg("%s: %s %s", name, cd_errname(rc), err ? err->message : "");
    }
    return s_parse(out, true);
}

//  One text from SQL (caller frees).
static char *
s_text(cd_db_t *db, const char *sql)
{
    char *out = NULL;
    s_ok(db, cd_db_query_text(db, sql, 0, NULL, &out));
    return out;
}

static void
s_text_is(cd_db_t *db, const char *sql, const char *want)
{
    char *got = s_text(db, sql);
    if (!got || strcmp(got, want) != 0) {
        fail_msg("%s\n got  %s\n want %s", sql, got ? got : "(null)", want);
    }
    free(got);
}

//  The history of task id as "kind:from>to:status" joined by ','.
static char *
s_history(cd_db_t *db, int64_t id)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(kind || ':' || coalesce(from_agent, '') || '>' ||"
             " coalesce(to_agent, '') || ':' || coalesce(status, ''), ',' ORDER BY seq)"
             " FROM task_events WHERE task_id = %lld",
             (long long)id);
    return s_text(db, sql);
}

static void
s_history_is(cd_db_t *db, int64_t id, const char *want)
{
    char *got = s_history(db, id);
    if (!got || strcmp(got, want) != 0) {
        fail_msg("history of %lld\n got  %s\n want %s", (long long)id, got ? got : "(null)", want);
    }
    free(got);
}

//  Claims task id (read at attempts a) for agent g at stage s.
static json_t *
s_claim(cd_db_t *db, int64_t id, int a, const char *g, int s)
{
    char recs[256];
    snprintf(recs, sizeof recs, "[{\"t\":%lld,\"a\":%d,\"g\":\"%s\",\"s\":%d}]", (long long)id, a,
             g, s);
    const char *params[] = {NODE, "60000", recs};
    return s_write(db, "orch.claim", params);
}

static json_t *
s_records(cd_db_t *db, const char *name, const char *recs)
{
    const char *params[] = {NODE, recs};
    return s_write(db, name, params);
}

static void
test_q_orch_candidates_in_priority_order_per_key(void **state)
{
    fixture_t *fx = *state;
    int64_t low =
        s_task(fx->db, "{\"title\":\"low\",\"priority\":0,\"assignee\":{\"role\":\"r\"}}");
    int64_t old9 = s_task(fx->db, "{\"title\":\"a\",\"priority\":9,\"assignee\":{\"role\":\"r\"}}");
    int64_t new9 = s_task(fx->db, "{\"title\":\"b\",\"priority\":9,\"assignee\":{\"role\":\"r\"}}");
    int64_t mine = s_task(fx->db, "{\"title\":\"c\",\"assignee\":{\"agent\":\"x\"}}");
    int64_t team = s_task(fx->db, "{\"title\":\"d\",\"assignee\":{\"team\":7}}");
    s_task(fx->db, "{\"title\":\"e\",\"assignee\":{\"agent\":\"other\"}}");
    //  Not yet claimable: a backoff that has not passed.
    int64_t later =
        s_task(fx->db, "{\"title\":\"f\",\"priority\":9,\"assignee\":{\"role\":\"r\"}}");
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET next_attempt_at = now() + interval '1 hour' WHERE id = %lld",
             (long long)later);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    char *out = NULL;
    s_ok(fx->db, cd_q_orch_candidates(fx->db,
                                      "[{\"k\":\"role\",\"v\":\"r\",\"n\":2},"
                                      "{\"k\":\"agent\",\"v\":\"x\",\"n\":5},"
                                      "{\"k\":\"team\",\"v\":\"7\",\"n\":5}]",
                                      &out));
    json_t *list = s_parse(out, true);
    assert_int_equal(json_array_size(list), 4);
    //  9 before 5 (the agent's and the team's, oldest first) before 0
    //  (beyond the role's limit of 2).
    assert_int_equal(s_int(json_array_get(list, 0), "id"), old9);
    assert_int_equal(s_int(json_array_get(list, 1), "id"), new9);
    assert_int_equal(s_int(json_array_get(list, 2), "id"), mine);
    assert_int_equal(s_int(json_array_get(list, 3), "id"), team);
    assert_true(s_null(json_array_get(list, 0), "resume"));
    assert_int_equal(s_int(json_array_get(list, 0), "attempts"), 0);
    json_decref(list);
    (void)low;
}

static void
test_q_orch_claim_writes_history_and_event_once(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"input\":1}");
    json_t *got = s_claim(fx->db, id, 0, "a", 0);
    assert_int_equal(json_array_size(got), 1);
    assert_int_equal(json_integer_value(json_array_get(got, 0)), id);
    json_decref(got);
    //  The same record again (a duplicate): nothing.
    got = s_claim(fx->db, id, 0, "a", 0);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    s_history_is(fx->db, id, "created:>a:todo,assigned:>a:in_progress,started:>a:in_progress");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || agent || ' ' || attempts || ' ' || lease_owner || ' ' ||"
             " (lease_expires_at > now()) || ' ' || event_seq FROM tasks WHERE id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "in_progress a 1 n1 true 3");
    snprintf(sql, sizeof sql,
             "SELECT string_agg(type || ' ' || coalesce(agent, '-'), ',' ORDER BY id) FROM events"
             " WHERE task_id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "task.started a");
}

static void
test_q_orch_pipeline_advances_and_completes_once(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"team\":3},\"input\":\"X\"}");
    json_decref(s_claim(fx->db, id, 0, "a", 0));
    char recs[512];
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"a\",\"s\":0,\"o\":{\"echo\":\"X\"},"
             "\"n\":{\"g\":\"b\",\"s\":1}}]",
             (long long)id);
    json_t *got = s_records(fx->db, "orch.advance", recs);
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
    //  A record of another attempt changes nothing.
    snprintf(recs, sizeof recs, "[{\"t\":%lld,\"a\":2,\"f\":\"b\",\"s\":1,\"o\":0}]",
             (long long)id);
    got = s_records(fx->db, "orch.advance", recs);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"b\",\"s\":1,\"o\":{\"echo\":{\"echo\":\"X\"}}}]",
             (long long)id);
    got = s_records(fx->db, "orch.advance", recs);
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
    //  Completed: a duplicate of the last record is refused.
    got = s_records(fx->db, "orch.advance", recs);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    s_history_is(fx->db, id,
                 "created:>:todo,assigned:>a:in_progress,started:>a:in_progress,"
                 "output:a>:in_progress,handoff:a>b:in_progress,output:b>:in_progress,"
                 "completed:b>:done");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || output::text || ' ' || (lease_owner IS NULL) || ' ' ||"
             " (finished_at IS NOT NULL) FROM tasks WHERE id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "done {\"echo\": {\"echo\": \"X\"}} true true");
    snprintf(sql, sizeof sql,
             "SELECT string_agg(type, ',' ORDER BY id) FROM events WHERE task_id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "task.started,task.handoff,task.completed");
    snprintf(sql, sizeof sql,
             "SELECT payload::text FROM task_events WHERE task_id = %lld AND kind = 'handoff'",
             (long long)id);
    s_text_is(fx->db, sql, "{\"input\": {\"echo\": \"X\"}, \"stage\": 1}");
}

static void
test_q_orch_fail_retries_then_fails_and_park_keeps_the_attempt(void **state)
{
    fixture_t *fx = *state;
    int64_t id =
        s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"},\"max_attempts\":2}");
    json_decref(s_claim(fx->db, id, 0, "a", 0));
    char recs[512];
    //  Parked: back to todo with the attempt given back.
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"a\",\"s\":0,\"e\":{\"code\":\"rate_limited\"},"
             "\"r\":true,\"b\":0,\"p\":true}]",
             (long long)id);
    json_t *got = s_records(fx->db, "orch.fail", recs);
    assert_string_equal(s_str(json_array_get(got, 0), "status"), "todo");
    json_decref(got);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT status || ' ' || attempts FROM tasks WHERE id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "todo 0");
    json_decref(s_claim(fx->db, id, 0, "a", 0));
    //  A retryable error: todo, not claimable during the backoff.
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"a\",\"s\":0,\"e\":{\"code\":\"boom\"},\"r\":true,"
             "\"b\":3600000}]",
             (long long)id);
    got = s_records(fx->db, "orch.fail", recs);
    assert_string_equal(s_str(json_array_get(got, 0), "status"), "todo");
    json_decref(got);
    char *out = NULL;
    s_ok(fx->db, cd_q_orch_candidates(fx->db, "[{\"k\":\"agent\",\"v\":\"a\",\"n\":5}]", &out));
    assert_string_equal(out, "[]");
    free(out);
    s_ok(fx->db, cd_db_exec(fx->db, "UPDATE tasks SET next_attempt_at = now()", NULL));
    json_decref(s_claim(fx->db, id, 1, "a", 0));
    //  The last attempt fails for good.
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":2,\"f\":\"a\",\"s\":0,\"e\":{\"code\":\"boom\"},\"r\":true,"
             "\"b\":0}]",
             (long long)id);
    got = s_records(fx->db, "orch.fail", recs);
    assert_string_equal(s_str(json_array_get(got, 0), "status"), "failed");
    json_decref(got);
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || attempts || ' ' || (error ->> 'code') || ' ' ||"
             " (finished_at IS NOT NULL) || ' ' || (lease_owner IS NULL) FROM tasks"
             " WHERE id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "failed 2 boom true true");
    s_history_is(fx->db, id,
                 "created:>a:todo,assigned:>a:in_progress,started:>a:in_progress,retry:a>:todo,"
                 "assigned:>a:in_progress,started:>a:in_progress,retry:a>:todo,"
                 "assigned:>a:in_progress,started:>a:in_progress,failed:a>:failed");
    snprintf(sql, sizeof sql,
             "SELECT string_agg(type, ',' ORDER BY id) FROM events WHERE task_id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "task.started,task.started,task.started,task.failed");
}

static void
test_q_orch_question_waits_and_resumes_with_the_answer(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"team\":3},\"input\":\"X\"}");
    json_decref(s_claim(fx->db, id, 0, "a", 0));
    char recs[512];
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"a\",\"s\":0,\"o\":\"A\",\"n\":{\"g\":\"b\",\"s\":1}}]",
             (long long)id);
    json_decref(s_records(fx->db, "orch.advance", recs));
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"b\",\"s\":1,\"i\":\"A\",\"q\":{\"question\":\"ok?\","
             "\"options\":[\"y\",\"n\"]}}]",
             (long long)id);
    json_t *got = s_records(fx->db, "orch.hitl", recs);
    assert_int_equal(s_int(json_array_get(got, 0), "id"), id);
    int64_t hitl = s_int(json_array_get(got, 0), "hitl_id");
    json_decref(got);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || (lease_owner IS NULL) FROM tasks WHERE id = %lld",
             (long long)id);
    s_text_is(fx->db, sql, "waiting_human true");
    char *out = NULL;
    //  Not in progress: no position to resume.
    assert_int_equal(cd_q_orch_position(fx->db, id, NODE, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_hitl_respond(fx->db, hitl, "\"yes\"", 1, CD_Q_NULL, NODE, &out));
    free(out);
    s_ok(fx->db, cd_q_orch_position(fx->db, id, NODE, &out));
    json_t *t = s_parse(out, true);
    json_t *resume = json_object_get(t, "resume");
    assert_string_equal(s_str(resume, "kind"), "hitl_requested");
    assert_string_equal(s_str(resume, "agent"), "b");
    assert_int_equal(s_int(resume, "stage"), 1);
    assert_string_equal(s_str(resume, "input"), "A");
    json_t *h = json_object_get(resume, "hitl");
    assert_int_equal(s_int(h, "request_id"), hitl);
    assert_string_equal(s_str(h, "status"), "answered");
    assert_string_equal(s_str(h, "response"), "yes");
    assert_true(json_is_true(json_object_get(h, "approved")));
    json_decref(t);
    s_history_is(fx->db, id,
                 "created:>:todo,assigned:>a:in_progress,started:>a:in_progress,"
                 "output:a>:in_progress,handoff:a>b:in_progress,hitl_requested:b>:waiting_human,"
                 "hitl_answered:>b:in_progress");
}

static void
test_q_orch_expiry_applies_each_policy(void **state)
{
    fixture_t *fx = *state;
    const char *policies[] = {"deny", "approve", "fail"};
    int64_t ids[3], hitl[3];
    for (int i = 0; i < 3; i++) {
        ids[i] = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}");
        json_decref(s_claim(fx->db, ids[i], 0, "a", 0));
        char recs[512];
        snprintf(recs, sizeof recs,
                 "[{\"t\":%lld,\"a\":1,\"f\":\"a\",\"s\":0,\"i\":null,\"q\":{\"question\":\"q\","
                 "\"timeout_s\":0.001,\"on_timeout\":\"%s\"}}]",
                 (long long)ids[i], policies[i]);
        json_t *got = s_records(fx->db, "orch.hitl", recs);
        hitl[i] = s_int(json_array_get(got, 0), "hitl_id");
        json_decref(got);
    }
    //  A task with a second request still pending keeps waiting.
    int64_t two = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}");
    json_decref(s_claim(fx->db, two, 0, "a", 0));
    char recs[512];
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"a\",\"s\":0,\"i\":null,\"q\":{\"question\":\"q\","
             "\"timeout_s\":0.001}}]",
             (long long)two);
    json_decref(s_records(fx->db, "orch.hitl", recs));
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO hitl_requests (task_id, question) VALUES (%lld, 'later')",
             (long long)two);
    s_ok(fx->db, cd_db_exec(fx->db, sql, NULL));
    s_sleep_ms(20);
    const char *params[] = {NODE, "60000"};
    json_t *got = s_write(fx->db, "orch.expire", params);
    assert_int_equal(json_array_size(got), 4);
    const char *want[] = {"resume", "resume", "failed", "wait"};
    for (int i = 0; i < 4; i++) {
        json_t *a = json_array_get(got, (size_t)i);
        assert_int_equal(s_int(a, "id"), i < 3 ? ids[i] : two);
        assert_string_equal(s_str(a, "action"), want[i]);
    }
    json_decref(got);
    //  Expired once: the next pass finds nothing.
    got = s_write(fx->db, "orch.expire", params);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    char *out = NULL;
    s_ok(fx->db, cd_q_orch_position(fx->db, ids[0], NODE, &out));
    json_t *t = s_parse(out, true);
    json_t *h = json_object_get(json_object_get(t, "resume"), "hitl");
    assert_string_equal(s_str(h, "status"), "expired");
    assert_true(json_is_false(json_object_get(h, "approved")));
    assert_int_equal(s_int(h, "request_id"), hitl[0]);
    json_decref(t);
    s_ok(fx->db, cd_q_orch_position(fx->db, ids[1], NODE, &out));
    t = s_parse(out, true);
    h = json_object_get(json_object_get(t, "resume"), "hitl");
    assert_true(json_is_true(json_object_get(h, "approved")));
    json_decref(t);
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || (error ->> 'code') FROM tasks WHERE id = %lld",
             (long long)ids[2]);
    s_text_is(fx->db, sql, "failed hitl_expired");
    s_history_is(fx->db, ids[2],
                 "created:>a:todo,assigned:>a:in_progress,started:>a:in_progress,"
                 "hitl_requested:a>:waiting_human,hitl_expired:>a:failed,failed:>:failed");
    s_history_is(fx->db, ids[0],
                 "created:>a:todo,assigned:>a:in_progress,started:>a:in_progress,"
                 "hitl_requested:a>:waiting_human,hitl_expired:>a:in_progress");
    snprintf(sql, sizeof sql, "SELECT status FROM tasks WHERE id = %lld", (long long)two);
    s_text_is(fx->db, sql, "waiting_human");
    snprintf(sql, sizeof sql,
             "SELECT string_agg(type, ',' ORDER BY id) FROM events WHERE task_id = %lld",
             (long long)ids[2]);
    s_text_is(fx->db, sql, "task.started,hitl.requested,hitl.expired,task.failed");
}

static void
test_q_orch_recover_requeues_and_the_run_resumes_at_its_handoff(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"team\":3},\"input\":\"X\"}");
    json_decref(s_claim(fx->db, id, 0, "a", 0));
    char recs[512];
    snprintf(recs, sizeof recs,
             "[{\"t\":%lld,\"a\":1,\"f\":\"a\",\"s\":0,\"o\":\"A\",\"n\":{\"g\":\"b\",\"s\":1}}]",
             (long long)id);
    json_decref(s_records(fx->db, "orch.advance", recs));
    //  Another node's live lease is left alone; this node's own is taken
    //  back when asked (a restart).
    const char *others[] = {"n2", "false"};
    json_t *got = s_write(fx->db, "orch.recover", others);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    const char *mine[] = {NODE, "true"};
    got = s_write(fx->db, "orch.recover", mine);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(s_str(json_array_get(got, 0), "status"), "todo");
    json_decref(got);
    char *out = NULL;
    s_ok(fx->db, cd_q_orch_candidates(fx->db, "[{\"k\":\"team\",\"v\":\"3\",\"n\":5}]", &out));
    json_t *list = s_parse(out, true);
    json_t *resume = json_object_get(json_array_get(list, 0), "resume");
    assert_string_equal(s_str(resume, "kind"), "handoff");
    assert_string_equal(s_str(resume, "agent"), "b");
    assert_int_equal(s_int(resume, "stage"), 1);
    assert_string_equal(s_str(resume, "input"), "A");
    assert_int_equal(s_int(json_array_get(list, 0), "attempts"), 1);
    json_decref(list);
    //  An expired lease of another node is taken back by anyone.
    json_decref(s_claim(fx->db, id, 1, "b", 1));
    s_ok(fx->db, cd_db_exec(fx->db,
                            "UPDATE tasks SET lease_owner = 'n2', lease_expires_at = now() -"
                            " interval '1 second'",
                            NULL));
    got = s_write(fx->db, "orch.recover", others);
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
    //  The API's retry starts over: nothing to resume.
    s_ok(fx->db,
         cd_db_exec(fx->db, "UPDATE tasks SET status = 'failed', finished_at = now()", NULL));
    s_ok(fx->db, cd_q_tasks_retry(fx->db, id, &out));
    free(out);
    s_ok(fx->db, cd_q_orch_candidates(fx->db, "[{\"k\":\"team\",\"v\":\"3\",\"n\":5}]", &out));
    list = s_parse(out, true);
    assert_true(s_null(json_array_get(list, 0), "resume"));
    json_decref(list);
}

static void
test_q_orch_renew_extends_only_this_nodes_running_tasks(void **state)
{
    fixture_t *fx = *state;
    int64_t a = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}");
    int64_t b = s_task(fx->db, "{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}");
    json_decref(s_claim(fx->db, a, 0, "a", 0));
    char ids[64];
    snprintf(ids, sizeof ids, "[%lld,%lld]", (long long)a, (long long)b);
    const char *params[] = {NODE, "120000", ids};
    json_t *got = s_write(fx->db, "orch.renew", params);
    assert_int_equal(json_array_size(got), 1);
    assert_int_equal(json_integer_value(json_array_get(got, 0)), a);
    json_decref(got);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks WHERE lease_expires_at >"
                                     " now() + interval '100 seconds'"),
                     1);
}

static void
test_q_orch_directory_lists_agents_and_team_pipelines(void **state)
{
    fixture_t *fx = *state;
    s_ok(fx->db,
         cd_db_exec(fx->db,
                    "INSERT INTO agents (name, kind, role, concurrency) VALUES ('w1', 'echo', 'w',"
                    " 2), ('r1', 'echo', 'r', 1), ('r2', 'remote', 'r', 3);"
                    " INSERT INTO roles (name) VALUES ('write'), ('review');"
                    " INSERT INTO team_types (name) VALUES ('tt');"
                    " INSERT INTO team_type_roles (team_type_id, position, role_id)"
                    " SELECT y.id, 0, (SELECT id FROM roles WHERE name = 'write') FROM team_types y"
                    " UNION ALL SELECT y.id, 1, (SELECT id FROM roles WHERE name = 'review')"
                    " FROM team_types y;"
                    " INSERT INTO teams (name, team_type_id) SELECT 'crew', id FROM team_types;"
                    " INSERT INTO team_members (team_id, agent, role_id) SELECT m.id, 'w1', r.id"
                    " FROM teams m, roles r WHERE r.name = 'write' UNION ALL SELECT m.id, a.n,"
                    " r.id FROM teams m, roles r, (VALUES ('r1'), ('r2')) a(n)"
                    " WHERE r.name = 'review'",
                    NULL));
    char *out = NULL;
    s_ok(fx->db, cd_q_orch_directory(fx->db, &out));
    json_t *d = s_parse(out, true);
    json_t *agents = json_object_get(d, "agents");
    assert_int_equal(json_array_size(agents), 3);
    assert_string_equal(s_str(json_array_get(agents, 1), "kind"), "remote");
    assert_int_equal(s_int(json_array_get(agents, 1), "concurrency"), 3);
    json_t *stages = json_object_get(json_array_get(json_object_get(d, "teams"), 0), "stages");
    assert_int_equal(json_array_size(stages), 2);
    assert_string_equal(json_string_value(json_array_get(json_array_get(stages, 0), 0)), "w1");
    assert_int_equal(json_array_size(json_array_get(stages, 1)), 2);
    json_decref(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_orch_candidates_in_priority_order_per_key, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_orch_claim_writes_history_and_event_once, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_orch_pipeline_advances_and_completes_once, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_q_orch_fail_retries_then_fails_and_park_keeps_the_attempt, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_orch_question_waits_and_resumes_with_the_answer,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_orch_expiry_applies_each_policy, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_q_orch_recover_requeues_and_the_run_resumes_at_its_handoff, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_orch_renew_extends_only_this_nodes_running_tasks,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_orch_directory_lists_agents_and_team_pipelines,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
