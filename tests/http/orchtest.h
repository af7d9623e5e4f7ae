/*  orchtest.h: what the orchestration tests (tests/http/test_orch_*.c)
    share, on top of cd_testnode: a node with short timers, REST helpers
    that assert their status, waiting for a task's status (bounded), and
    a task's history as one comparable string. Header-only, included once
    per test program after <cmocka.h>. */
#ifndef CD_TESTS_ORCHTEST_H
#define CD_TESTS_ORCHTEST_H

#include "cd_testnode.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Short timers, so that retries, expiries and schedules happen within a
//  test's bounds.
#define OT_ENV                                                                                     \
    "CADRE_ORCH_SCAN_MS=50", "CADRE_ORCH_BACKOFF_MS=50", "CADRE_ORCH_BACKOFF_MAX_MS=400",          \
        "CADRE_ORCH_HITL_CHECK_MS=50", "CADRE_ORCH_LEASE_MS=3000", "CADRE_SCHEDULER_TICK_MS=100"

static inline tn_node_t *
ot_start(void)
{
    static const char *const env[] = {OT_ENV, NULL};
    return tn_start(env);
}

static inline int
ot_restart(tn_node_t *node)
{
    static const char *const env[] = {OT_ENV, NULL};
    return tn_restart(node, env);
}

//  A request that must answer `want`; returns the parsed body (caller
//  decrefs; may be NULL for an empty body).
static inline json_t *
ot_call(const tn_node_t *node, const char *method, const char *path, const char *body, long want)
{
    tn_resp_t r;
    long status = tn_call(node, &r, method, path, body);
    if (status != want) {
        fail_msg("%s %s %s: %ld (want %ld) %s", method, path, body ? body : "", status, want,
                 r.body ? r.body : "");
    }
    json_t *json = r.json ? json_incref(r.json) : NULL;
    tn_resp_free(&r);
    return json;
}

static inline int64_t
ot_int(const json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

static inline const char *
ot_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

//  POSTs body to path (201) and returns the new object's id.
static inline int64_t
ot_create(const tn_node_t *node, const char *path, const char *body)
{
    json_t *obj = ot_call(node, "POST", path, body, 201);
    int64_t id = ot_int(obj, "id");
    json_decref(obj);
    return id;
}

//  An agent (kind echo unless config says; config JSON text or NULL).
static inline void
ot_agent(const tn_node_t *node, const char *name, const char *kind, const char *role,
         int concurrency, const char *config)
{
    char body[1024];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"kind\":\"%s\"%s%s%s,\"concurrency\":%d%s%s}",
             name, kind, role ? ",\"role\":\"" : "", role ? role : "", role ? "\"" : "",
             concurrency, config ? ",\"config\":" : "", config ? config : "");
    json_decref(ot_call(node, "POST", "/api/v1/agents", body, 201));
}

static inline int64_t
ot_role(const tn_node_t *node, const char *name)
{
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    return ot_create(node, "/api/v1/roles", body);
}

//  A team whose type has the roles in order, with members[i] holding
//  roles[i]. Returns its id.
static inline int64_t
ot_team(const tn_node_t *node, const char *name, const int64_t *roles, const char *const *members,
        size_t n)
{
    char body[2048];
    size_t len = (size_t)snprintf(body, sizeof body, "{\"name\":\"%s-type\",\"roles\":[", name);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(body + len, sizeof body - len, "%s%lld", i ? "," : "",
                                (long long)roles[i]);
    }
    snprintf(body + len, sizeof body - len, "]}");
    int64_t type = ot_create(node, "/api/v1/team-types", body);
    len =
        (size_t)snprintf(body, sizeof body, "{\"name\":\"%s\",\"team_type_id\":%lld,\"members\":[",
                         name, (long long)type);
    for (size_t i = 0; i < n; i++) {
        len +=
            (size_t)snprintf(body + len, sizeof body - len, "%s{\"agent\":\"%s\",\"role_id\":%lld}",
                             i ? "," : "", members[i], (long long)roles[i]);
    }
    snprintf(body + len, sizeof body - len, "]}");
    return ot_create(node, "/api/v1/teams", body);
}

static inline int64_t
ot_task(const tn_node_t *node, const char *body)
{
    return ot_create(node, "/api/v1/tasks", body);
}

static inline json_t *
ot_get_task(const tn_node_t *node, int64_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld", (long long)id);
    return ot_call(node, "GET", path, NULL, 200);
}

//  Waits (up to timeout_ms) for task id to reach status; returns the task
//  (caller decrefs). Fails the test on a timeout.
static inline json_t *
ot_wait_status(const tn_node_t *node, int64_t id, const char *status, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    json_t *task = NULL;
    while (true) {
        json_decref(task);
        task = ot_get_task(node, id);
        if (strcmp(ot_str(task, "status"), status) == 0) {
            return task;
        }
        if (zclock_mono() > deadline) {
            char *text = json_dumps(task, JSON_COMPACT);
            fail_msg("task %lld did not become %s in %d ms: %s", (long long)id, status, timeout_ms,
                     text);
        }
        zclock_sleep(20);
    }
}

//  SQL's first value as text (caller frees) or NULL.
static inline char *ot_sql(const tn_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline char *
ot_sql(const tn_node_t *node, const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return tn_sql(node, sql);
}

static inline int64_t
ot_sql_int(const tn_node_t *node, const char *sql)
{
    char *v = tn_sql(node, sql);
    int64_t n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

//  A task's history as "kind:from>to,..." in order.
static inline char *
ot_history(const tn_node_t *node, int64_t id)
{
    return ot_sql(node,
                  "SELECT string_agg(kind || ':' || coalesce(from_agent, '') || '>' ||"
                  " coalesce(to_agent, ''), ',' ORDER BY seq) FROM task_events"
                  " WHERE task_id = %lld",
                  (long long)id);
}

static inline void
ot_history_is(const tn_node_t *node, int64_t id, const char *want)
{
    char *got = ot_history(node, id);
    if (!got || strcmp(got, want) != 0) {
        fail_msg("history of task %lld\n got  %s\n want %s", (long long)id, got ? got : "(null)",
                 want);
    }
    free(got);
}

//  Asserts that JSON value v serialises (compact, sorted keys) to want.
static inline void
ot_json_is(const json_t *v, const char *want)
{
    char *got = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!got || strcmp(got, want) != 0) {
        fail_msg("got  %s\nwant %s", got ? got : "(null)", want);
    }
    free(got);
}

#endif
