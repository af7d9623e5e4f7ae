/*  cd_health: health, readiness, status, metrics, OpenAPI (see cd_health.h).

    Readiness has two kinds of checks. The registry ones are immediate:
    every core actor named in the options is running, and no actor is
    restarting or dead. The persist one is a question: a `control`
    envelope with header op=stats to the actor named `persist`, answered
    through the HTTP port within ready_timeout_ms; its answer's db_ok says
    whether the database is reachable. When there is no actor named
    `persist`, the check fails without asking (a message to nobody would
    only make a dead letter). /health/detailed asks the same question and
    shows the figures, and persist's settings in force. */
#include "cd_health.h"

#include <stdarg.h>
#include "http_internal.h"

#include "cd_error.h"

#include <stdlib.h>
#include <string.h>

typedef enum { S_READY, S_DETAILED } s_mode_t;

static const char s_ok_body[] = "{\"status\":\"ok\"}";

int
cd_health_live(cd_http_rctx_t *rctx)
{
    cd__http_send(rctx, 200, "application/json; charset=utf-8", s_ok_body, sizeof s_ok_body - 1,
                  true);
    return 0;
}

static json_t *
s_check(const char *name, bool ok, const char *reason)
{
    json_t *check = json_pack("{s:s, s:b}", "name", name, "ok", ok);
    if (reason) {
        json_object_set_new(check, "reason", json_string(reason));
    }
    return check;
}

//  Registry entries, sorted by name. Caller frees *entries_p.
static size_t
s_entries(cd_registry_t *registry, cd_registry_entry_t **entries_p)
{
    cd_registry_entry_t probe;
    size_t cap = cd_registry_list(registry, &probe, 0) + 8;
    cd_registry_entry_t *entries = (cd_registry_entry_t *)calloc(cap, sizeof *entries);
    if (!entries) {
        abort();
    }
    size_t n = cd_registry_list(registry, entries, cap);
    *entries_p = entries;
    return n < cap ? n : cap;
}

//  The registry check: appends it to checks; returns whether it passed.
//  When actors is not NULL, also lists every actor into it.
static bool
s_actor_check(cd_http_t *http, json_t *checks, json_t *actors)
{
    cd_registry_entry_t *entries = NULL;
    size_t n = s_entries(http->rt.registry, &entries);
    char problems[512] = "";
    size_t used = 0;
    for (const char *const *core = http->opts.core_actors; core && *core; core++) {
        const char *status = "absent";
        for (size_t i = 0; i < n; i++) {
            if (strcmp(entries[i].name, *core) == 0) {
                status = entries[i].status == CD_ACTOR_RUNNING
                             ? NULL
                             : cd_actor_status_name(entries[i].status);
            }
        }
        if (status && used < sizeof problems) {
            used += (size_t)snprintf(problems + used, sizeof problems - used, "%s%s is %s",
                                     used ? "; " : "", *core, status);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const cd_registry_entry_t *entry = &entries[i];
        if ((entry->status == CD_ACTOR_RESTARTING || entry->status == CD_ACTOR_DEAD) &&
            used < sizeof problems) {
            used += (size_t)snprintf(problems + used, sizeof problems - used, "%s%s is %s",
                                     used ? "; " : "", entry->name,
                                     cd_actor_status_name(entry->status));
        }
        if (actors) {
            json_array_append_new(actors, json_pack("{s:s, s:s, s:i, s:I}", "name", entry->name,
                                                    "status", cd_actor_status_name(entry->status),
                                                    "restarts", (int)entry->restarts, "queue_depth",
                                                    (json_int_t)entry->queue_depth));
        }
    }
    free(entries);
    bool ok = used == 0;
    json_array_append_new(checks, s_check("actors", ok, ok ? NULL : problems));
    return ok;
}

static json_t *
s_get_or_null(json_t *obj, const char *key)
{
    json_t *value = json_object_get(obj, key);
    return value ? json_incref(value) : json_null();
}

//  Answers from the checks and (for the detailed page) the figures.
//  stats is persist's answer as JSON, or NULL; takes ownership of checks
//  and stats.
static void s_detailed(cd_http_rctx_t *rctx, json_t *checks, json_t *stats, bool ok, json_t *ping);

//  What /health/detailed has gathered while it asks an api actor for a
//  database round trip (pool-allocated; released with the request).
typedef struct {
    json_t *checks;
    json_t *stats;
    bool ok;
} s_detail_t;

static void
s_detail_dispose(void *data)
{
    s_detail_t *d = (s_detail_t *)data;
    json_decref(d->checks);
    json_decref(d->stats);
}

static void
s_on_ping(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    s_detail_t *d = (s_detail_t *)arg;
    json_t *body = NULL;
    int status = 0;
    if (rc != 0 || cd__http_api_reply_json(reply, &status, &body) != 0 || status != 200) {
        json_decref(body);
        body = NULL;
    }
    json_t *checks = d->checks, *stats = d->stats;
    d->checks = d->stats = NULL;
    s_detailed(rctx, checks, stats, d->ok, body);
    json_decref(body);
}

static void
s_answer(cd_http_rctx_t *rctx, s_mode_t mode, json_t *checks, json_t *stats, bool ok)
{
    if (mode == S_DETAILED) {
        //  The database's latency, measured now by an api actor.
        s_detail_t *d =
            (s_detail_t *)h2o_mem_alloc_shared(&rctx->req->pool, sizeof *d, s_detail_dispose);
        *d = (s_detail_t){checks, stats, ok};
        if (cd__http_api_call_bare(rctx, "node.ping", s_on_ping, d) != 0) {
            d->checks = d->stats = NULL;
            s_detailed(rctx, checks, stats, ok, NULL);
        }
        return;
    }
    if (mode == S_READY) {
        json_decref(stats);
        if (ok) {
            json_decref(checks);
            cd__http_send_json(rctx, 200, json_pack("{s:s}", "status", "ready"));
            return;
        }
        json_t *failing = json_array();
        size_t i;
        json_t *check;
        json_array_foreach(checks, i, check)
        {
            if (!json_is_true(json_object_get(check, "ok"))) {
                json_array_append(failing, json_object_get(check, "name"));
            }
        }
        cd__http_send_error(rctx, 503, "not_ready", "the node is not ready",
                            json_pack("{s:o, s:o}", "failing", failing, "checks", checks));
        return;
    }
}

//  Answers /health/detailed; ping is an api actor's {ok, latency_ms}, or
//  NULL. Takes ownership of checks and stats.
static void
s_detailed(cd_http_rctx_t *rctx, json_t *checks, json_t *stats, bool ok, json_t *ping)
{
    cd_http_t *http = rctx->http;
    json_t *actors = json_array();
    //  Re-read the registry: the page shows it as it is when answered.
    json_t *scratch = json_array();
    s_actor_check(http, scratch, actors);
    json_decref(scratch);
    json_t *persist = json_null();
    json_t *db = json_pack("{s:n, s:n}", "ok", "latency_ms");
    if (stats) {
        //  The settings in force beside the figures they explain (a batch
        //  never holds more than batch_max rows).
        static const char *const keys[] = {"batch_max",          "batch_wait_ms",
                                           "queue_limit",        "wait_timeout_ms",
                                           "events_retention_s", "stats_retention_s"};
        json_t *settings = json_object();
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            json_object_set_new(settings, keys[i], s_get_or_null(stats, keys[i]));
        }
        persist = json_pack("{s:o, s:o, s:o, s:o, s:o}", "pending", s_get_or_null(stats, "pending"),
                            "batches", s_get_or_null(stats, "batches"), "rows",
                            s_get_or_null(stats, "rows"), "last_batch_ms",
                            s_get_or_null(stats, "last_batch_ms"), "settings", settings);
        json_object_set_new(db, "ok", s_get_or_null(stats, "db_ok"));
        json_decref(stats);
    }
    if (ping) {
        json_object_set_new(db, "ok", s_get_or_null(ping, "ok"));
        json_object_set_new(db, "latency_ms", s_get_or_null(ping, "latency_ms"));
    }
    double uptime = (double)(cd__http_now_us() - http->started_us) / 1e6;
    cd__http_send_json(rctx, 200,
                       json_pack("{s:s, s:s, s:s, s:f, s:o, s:o, s:o, s:o}", "status",
                                 ok ? "ok" : "degraded", "version", http->version, "node_id",
                                 cd_registry_node_id(http->rt.registry), "uptime_s", uptime, "db",
                                 db, "actors", actors, "persist", persist, "checks", checks));
}

static void
s_on_stats(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    s_mode_t mode = (s_mode_t)(intptr_t)arg;
    json_t *checks = json_array();
    bool ok = s_actor_check(rctx->http, checks, NULL);
    json_t *stats = NULL;
    const char *why = NULL;
    if (rc == CD_ETIMEDOUT) {
        json_array_append_new(checks, s_check(CD_HEALTH_PERSIST, false,
                                              "persist did not answer the stats request in time"));
        ok = false;
    } else if (rc != 0) {
        const char *reason = rc == CD_EBUSY     ? "persist's queue is full"
                             : rc == CD_ECLOSED ? "the node is stopping"
                                                : "persist is not running";
        json_array_append_new(checks, s_check(CD_HEALTH_PERSIST, false, reason));
        ok = false;
    } else if (reply->kind != CD_KIND_RESULT ||
               cd_json_from_msgpack(reply->payload, &stats, &why) != 0 || !json_is_object(stats)) {
        json_decref(stats);
        stats = NULL;
        json_array_append_new(checks, s_check(CD_HEALTH_PERSIST, false,
                                              "persist answered the stats request with an error"));
        ok = false;
    } else {
        json_array_append_new(checks, s_check(CD_HEALTH_PERSIST, true, NULL));
        bool db_ok = json_is_true(json_object_get(stats, "db_ok"));
        json_t *error = json_object_get(stats, "last_error");
        const char *text = json_is_string(error) && json_string_length(error)
                               ? json_string_value(error)
                               : "persist reports the database unreachable";
        json_array_append_new(checks, s_check("database", db_ok, db_ok ? NULL : text));
        ok = ok && db_ok;
    }
    s_answer(rctx, mode, checks, stats, ok);
}

static int
s_health(cd_http_rctx_t *rctx, s_mode_t mode)
{
    cd_http_t *http = rctx->http;
    cd_actor_status_t status = cd_registry_status(http->rt.registry, CD_HEALTH_PERSIST);
    if (!cd_registry_status_deliverable(status)) {
        json_t *checks = json_array();
        s_actor_check(http, checks, NULL);
        char reason[96];
        snprintf(reason, sizeof reason,
                 status == CD_ACTOR_ABSENT ? "no actor named %s" : "%s is not running",
                 CD_HEALTH_PERSIST);
        json_array_append_new(checks, s_check(CD_HEALTH_PERSIST, false, reason));
        s_answer(rctx, mode, checks, NULL, false);
        return 0;
    }
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_CONTROL, CD_HEALTH_PERSIST);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("stats")};
    env.n_headers = 1;
    int rc =
        cd__http_call(rctx, &env, http->opts.ready_timeout_ms, s_on_stats, (void *)(intptr_t)mode);
    if (rc != 0) {
        //  Gone or full between the look and the send: a failing check.
        s_on_stats(rctx, NULL, rc, (void *)(intptr_t)mode);
    }
    return 0;
}

int
cd_health_ready(cd_http_rctx_t *rctx)
{
    return s_health(rctx, S_READY);
}

int
cd_health_detailed(cd_http_rctx_t *rctx)
{
    return s_health(rctx, S_DETAILED);
}

//  /metrics gathers what it does not count itself: persist's figures (a
//  stats call) and tasks by status (an api actor's read), one after the
//  other, each bounded by the readiness timeout; what does not come in
//  time is left out rather than failing the page.
typedef struct {
    json_t *persist; //  persist's stats, or NULL
} s_metrics_t;

static void
s_metrics_dispose(void *data)
{
    s_metrics_t *m = (s_metrics_t *)data;
    json_decref(m->persist);
}

//  Appends one line to a growing page.
static void
s_line(char **page, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list args;
    for (int attempt = 0; attempt < 2; attempt++) {
        va_start(args, fmt);
        int n = vsnprintf(*page + *len, *cap - *len, fmt, args);
        va_end(args);
        if (n < 0) {
            return;
        }
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        *cap = (*cap + (size_t)n) * 2;
        *page = (char *)realloc(*page, *cap);
    }
}

static double
s_num(json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

static void
s_metrics_send(cd_http_rctx_t *rctx, s_metrics_t *m, json_t *tasks)
{
    cd_http_t *http = rctx->http;
    double uptime = (double)(cd__http_now_us() - http->started_us) / 1e6;
    size_t base_len = 0;
    char *base =
        cd_metrics_render(http->metrics, http->router, http->rt.registry, uptime, &base_len);
    size_t cap = base_len + 4096, len = base_len;
    char *page = (char *)malloc(cap);
    memcpy(page, base, base_len);
    free(base);

    uint64_t sent[CD_KIND_COUNT_];
    cd_registry_messages(http->rt.registry, sent);
    s_line(&page, &len, &cap,
           "# HELP cadre_messages_sent_total Envelopes sent between actors, by kind.\n"
           "# TYPE cadre_messages_sent_total counter\n");
    for (int k = CD_KIND_NONE + 1; k < CD_KIND_COUNT_; k++) {
        const char *name = cd_kind_name((cd_kind_t)k);
        s_line(&page, &len, &cap, "cadre_messages_sent_total{kind=\"%s\"} %llu\n",
               name ? name : "?", (unsigned long long)sent[k]);
    }
    if (m->persist) {
        json_t *p = m->persist;
        double batches = s_num(p, "batches");
        s_line(&page, &len, &cap,
               "# HELP cadre_persist_up Whether the persist actor reaches the database.\n"
               "# TYPE cadre_persist_up gauge\ncadre_persist_up %d\n"
               "# HELP cadre_persist_pending Write requests waiting for their batch.\n"
               "# TYPE cadre_persist_pending gauge\ncadre_persist_pending %.0f\n"
               "# HELP cadre_persist_batch_rows Requests per committed batch.\n"
               "# TYPE cadre_persist_batch_rows summary\n"
               "cadre_persist_batch_rows_sum %.0f\ncadre_persist_batch_rows_count %.0f\n"
               "# HELP cadre_persist_batch_seconds Time to write and commit a batch.\n"
               "# TYPE cadre_persist_batch_seconds summary\n"
               "cadre_persist_batch_seconds_sum %.6f\ncadre_persist_batch_seconds_count %.0f\n"
               "# HELP cadre_persist_last_batch_rows Requests in the last batch.\n"
               "# TYPE cadre_persist_last_batch_rows gauge\ncadre_persist_last_batch_rows %.0f\n"
               "# HELP cadre_persist_last_batch_seconds Duration of the last batch.\n"
               "# TYPE cadre_persist_last_batch_seconds gauge\n"
               "cadre_persist_last_batch_seconds %.6f\n"
               "# HELP cadre_persist_failed_total Write requests that failed.\n"
               "# TYPE cadre_persist_failed_total counter\ncadre_persist_failed_total %.0f\n"
               "# HELP cadre_persist_reconnects_total Database reconnections.\n"
               "# TYPE cadre_persist_reconnects_total counter\n"
               "cadre_persist_reconnects_total %.0f\n",
               json_is_true(json_object_get(p, "db_ok")) ? 1 : 0, s_num(p, "pending"),
               s_num(p, "rows"), batches, s_num(p, "batch_ms_total") / 1000.0, batches,
               s_num(p, "last_batch_size"), s_num(p, "last_batch_ms") / 1000.0, s_num(p, "failed"),
               s_num(p, "reconnects"));
    }
    if (json_is_object(tasks)) {
        s_line(&page, &len, &cap,
               "# HELP cadre_tasks Tasks by status (from the database).\n"
               "# TYPE cadre_tasks gauge\n");
        const char *status;
        json_t *count;
        json_object_foreach(tasks, status, count)
        {
            s_line(&page, &len, &cap, "cadre_tasks{status=\"%s\"} %lld\n", status,
                   (long long)json_integer_value(count));
        }
    }
    cd__http_send(rctx, 200, "text/plain; version=0.0.4; charset=utf-8", page, len, false);
    free(page);
}

static void
s_metrics_on_tasks(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    json_t *body = NULL;
    int status = 0;
    if (rc == 0 && cd__http_api_reply_json(reply, &status, &body) == 0 && status != 200) {
        json_decref(body);
        body = NULL;
    }
    s_metrics_send(rctx, (s_metrics_t *)arg, json_object_get(body, "tasks"));
    json_decref(body);
}

static void
s_metrics_on_persist(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    s_metrics_t *m = (s_metrics_t *)arg;
    const char *why = NULL;
    if (rc == 0 && reply->kind == CD_KIND_RESULT &&
        cd_json_from_msgpack(reply->payload, &m->persist, &why) != 0) {
        m->persist = NULL;
    }
    if (cd__http_api_call_bare(rctx, "node.metrics", s_metrics_on_tasks, m) != 0) {
        s_metrics_send(rctx, m, NULL);
    }
}

int
cd_health_metrics(cd_http_rctx_t *rctx)
{
    cd_http_t *http = rctx->http;
    s_metrics_t *m =
        (s_metrics_t *)h2o_mem_alloc_shared(&rctx->req->pool, sizeof *m, s_metrics_dispose);
    memset(m, 0, sizeof *m);
    //  Nothing to ask when persist is not running (a page without it).
    cd_actor_status_t status = cd_registry_status(http->rt.registry, CD_HEALTH_PERSIST);
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_CONTROL, CD_HEALTH_PERSIST);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("stats")};
    env.n_headers = 1;
    if (status != CD_ACTOR_RUNNING ||
        cd__http_call(rctx, &env, http->opts.ready_timeout_ms, s_metrics_on_persist, m) != 0) {
        s_metrics_on_persist(rctx, NULL, CD_EDEAD, m);
    }
    return 0;
}

int
cd_health_openapi(cd_http_rctx_t *rctx)
{
    cd_http_t *http = rctx->http;
    cd__http_send(rctx, 200, "application/json; charset=utf-8", http->openapi, http->openapi_len,
                  true);
    return 0;
}
