/*  cd_scheduler: fires scheduled tasks (see cd_scheduler.h).

    One read per tick (the due schedules, at most S_DUE_MAX) and one
    persist write per firing. A schedule whose firing is out is not fired
    again until the write comes back (its next_run_at moves then), so a
    slow database never doubles a firing; the statement's compare-and-set
    would refuse it anyway.

    Interface: cd_scheduler_ops. */
#include "cd_scheduler.h"

#include "cd_cron.h"
#include "cd_db.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_mailer.h"
#include "cd_pwriter.h"
#include "cd_q_schedules.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_DUE_MAX 100

typedef struct {
    cd_actor_t *self;
    cd_scheduler_args_t cfg; //  settings, defaults applied
    cd_db_t *db;             //  reads; NULL while the database is away
    int64_t db_retry_us;     //  no connect before this (monotonic)
    cd_pwriter_t *writer;    //  firings through persist
    zhashx_t *out;           //  schedule id text -> (void *)1: a firing is out
    cd_runtime_t kick_rt;    //  the runtime with no send timeout, for kicks
    cd_mailer_t *kicker;     //  kicks the orchestrator without waiting
    uint64_t fired;          //  firings written
    uint64_t skipped;        //  missed firings skipped
} s_sched_t;

//  A firing out: which schedule.
typedef struct {
    s_sched_t *sched;
    char key[24];
} s_firing_t;

//  Seconds since the epoch of an RFC 3339 UTC time as the database writes
//  it ("2026-11-22T10:00:00.123456Z"), fractions dropped; -1 if malformed.
static int64_t
s_epoch(const char *text)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    if (!text || sscanf(text, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6) {
        return -1;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm);
}

static void
s_rfc3339(int64_t epoch, char *buf, size_t size)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static cd_db_t *
s_db(s_sched_t *sched)
{
    if (sched->db && !cd_db_connected(sched->db) && cd_db_reset(sched->db) != 0) {
        cd_db_close(&sched->db);
        sched->db_retry_us = zclock_usecs() + 1000000;
    }
    if (!sched->db && zclock_usecs() >= sched->db_retry_us) {
        char *errmsg = NULL;
        if (cd_db_connect(sched->cfg.conninfo, &sched->db, &errmsg) != 0) {
            cd_log_warn(cd_actor_name(sched->self), "database unreachable", "{s:s}", "error",
                        errmsg ? errmsg : "?");
            sched->db_retry_us = zclock_usecs() + 1000000;
        }
        free(errmsg);
    }
    return sched->db;
}

static void
s_kick(s_sched_t *sched)
{
    const char *to = sched->cfg.orchestrator;
    if (!to || !cd_registry_status_deliverable(cd_registry_status(sched->kick_rt.registry, to))) {
        return;
    }
    if (!sched->kicker) {
        sched->kicker = cd_mailer_new(&sched->kick_rt, cd_actor_name(sched->self));
    }
    cd_envelope_t env;
    cd_mailer_envelope_init(sched->kicker, &env, CD_KIND_CONTROL, to);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("kick")};
    env.n_headers = 1;
    cd_mailer_send(sched->kicker, &env);
}

static void
s_fired(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg)
{
    s_firing_t *firing = (s_firing_t *)arg;
    s_sched_t *sched = firing->sched;
    zhashx_delete(sched->out, firing->key);
    if (res->rc == CD_ECLOSED) {
        free(firing);
        return;
    }
    if (res->rc != 0) {
        cd_log_error(cd_actor_name(self), "a schedule's firing was refused", "{s:s, s:s, s:s}",
                     "schedule", firing->key, "sqlstate", res->sqlstate, "error", res->message);
    } else if (res->value) {
        json_t *out = json_loads(res->value, 0, NULL);
        if (json_is_object(json_object_get(out, "task"))) {
            sched->fired++;
            s_kick(sched);
        }
        json_decref(out);
    }
    free(firing);
}

//  Fires (or skips) one due schedule.
static void
s_due(s_sched_t *sched, const json_t *row, int64_t now)
{
    int64_t id = (int64_t)json_integer_value(json_object_get(row, "id"));
    char key[24];
    snprintf(key, sizeof key, "%" PRId64, id);
    if (zhashx_lookup(sched->out, key)) {
        return;
    }
    const char *due_text = json_string_value(json_object_get(row, "next_run_at"));
    int64_t due = s_epoch(due_text);
    const char *expr = json_string_value(json_object_get(row, "cron"));
    const json_t *interval = json_object_get(row, "interval_s");
    const char *catch_up = json_string_value(json_object_get(row, "catch_up"));
    if (due < 0) {
        return;
    }
    int64_t following = -1;
    char cron_next[40] = "";
    if (expr) {
        cd_cron_t cron;
        const char *why = NULL;
        int64_t next = 0;
        if (cd_cron_parse(expr, &cron, &why) != 0 || cd_cron_next(&cron, now, &next) != 0) {
            cd_log_warn(cd_actor_name(sched->self), "a schedule's cron cannot fire",
                        "{s:s, s:s, s:s}", "schedule", key, "cron", expr, "why",
                        why ? why : "never matches");
            return;
        }
        s_rfc3339(next, cron_next, sizeof cron_next);
        if (cd_cron_next(&cron, due, &following) != 0) {
            following = -1;
        }
    } else if (json_is_integer(interval)) {
        following = due + (int64_t)json_integer_value(interval);
    }
    //  Missed: the firing after this one is due too (cd_scheduler.h).
    bool missed = following >= 0 && following <= now;
    bool fire = !(missed && !(catch_up && streq(catch_up, "once")));
    if (!fire) {
        sched->skipped++;
        cd_log_info(cd_actor_name(sched->self), "missed firings skipped (catch_up skip)",
                    "{s:s, s:s}", "schedule", key, "due_at", due_text);
    }
    s_firing_t *firing = (s_firing_t *)zmalloc(sizeof *firing);
    firing->sched = sched;
    snprintf(firing->key, sizeof firing->key, "%s", key);
    zhashx_insert(sched->out, key, (void *)1);
    const char *params[] = {key, due_text, expr ? cron_next : NULL, fire ? "true" : "false"};
    cd_pwriter_send(sched->writer, "schedules.fire", 4, params, s_fired, firing);
}

static void
s_look(s_sched_t *sched)
{
    cd_db_t *db = s_db(sched);
    if (!db) {
        return;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_schedules_due(db, S_DUE_MAX, &page);
    if (rc != 0) {
        cd_log_warn(cd_actor_name(sched->self), "cannot read due schedules", "{s:s}", "error",
                    cd_strerror(rc));
        cd_q_page_fini(&page);
        return;
    }
    json_t *rows = json_loads(page.items ? page.items : "[]", 0, NULL);
    cd_q_page_fini(&page);
    int64_t now = (int64_t)time(NULL);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        s_due(sched, row, now);
    }
    json_decref(rows);
}

static int
s_tick(cd_actor_t *self, void *arg)
{
    s_sched_t *sched = (s_sched_t *)arg;
    cd_pwriter_tick(sched->writer);
    s_look(sched);
    (void)self;
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_scheduler_args_t *a = (const cd_scheduler_args_t *)args;
    if (!a || !a->conninfo) {
        *why = "the scheduler needs conninfo";
        return CD_EINVAL;
    }
    s_sched_t *sched = (s_sched_t *)zmalloc(sizeof *sched);
    sched->self = self;
    sched->cfg = *a;
    if (!sched->cfg.persist) {
        sched->cfg.persist = "persist";
    }
    sched->cfg.tick_ms = a->tick_ms > 0 ? a->tick_ms : CD_SCHEDULER_TICK_MS;
    sched->writer = cd_pwriter_new(self, sched->cfg.persist, 0);
    sched->out = zhashx_new();
    zhashx_set_destructor(sched->out, NULL);
    zhashx_set_duplicator(sched->out, NULL);
    sched->kick_rt = *cd_actor_runtime(self);
    sched->kick_rt.send_timeout_ms = 0;
    cd_actor_every(self, sched->cfg.tick_ms, s_tick, sched);
    *state_p = sched;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_sched_t *sched = (s_sched_t *)*state_p;
    if (!sched) {
        return;
    }
    cd_pwriter_destroy(&sched->writer);
    zhashx_destroy(&sched->out);
    cd_mailer_destroy(&sched->kicker);
    cd_db_close(&sched->db);
    cd_log_debug(cd_actor_name(self), "stopped", "{s:i, s:i}", "fired", (int)sched->fired,
                 "skipped", (int)sched->skipped);
    free(sched);
    *state_p = NULL;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_sched_t *sched = (s_sched_t *)state;
    if (cd_pwriter_handle(sched->writer, env)) {
        return 0;
    }
    cd_str_t op;
    if (env->kind == CD_KIND_CONTROL && cd_envelope_header(env, "op", &op) &&
        cd_str_eq(op, "tick")) {
        s_look(sched);
    }
    (void)self;
    return 0;
}

const cd_actor_ops_t cd_scheduler_ops = {
    .kind = "scheduler",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
