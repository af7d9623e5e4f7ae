/*  cd_metrics: counters and the Prometheus page (see cd_metrics.h).

    Per route a short list of (status, count) pairs, found by a linear look
    (a route answers a handful of distinct statuses), and a cumulative-free
    histogram (each bucket counts its own range; the page sums them, as the
    format wants cumulative buckets). The page is written with
    open_memstream: one buffer, grown by libc. */
#include "cd_metrics.h"
#include "cd_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Upper bounds of the latency buckets, in seconds.
static const double s_bounds[CD_METRICS_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};

typedef struct {
    int status;     //  0 for "other"
    uint64_t count; //  requests
} s_status_t;

typedef struct {
    s_status_t statuses[CD_METRICS_STATUSES + 1]; //  the last slot is "other"
    uint64_t buckets[CD_METRICS_BUCKETS + 1];     //  per range; the last is > largest bound
    double sum;                                   //  seconds
    uint64_t count;                               //  requests
} s_route_t;

struct cd_metrics {
    size_t n_routes;                           //  routes of the router (+1 slot: none)
    s_route_t *routes;                         //  n_routes + 1
    uint64_t limits[CD_LIMIT_COUNT_];          //  limit hits
    uint64_t guard[CD_H2GUARD_VERDICT_COUNT_]; //  guard closes by reason
    uint64_t calls[CD_CALL_OUTCOME_COUNT_];    //  actor calls by outcome
    uint64_t connections;                      //  accepted
    int64_t open;                              //  open now
    uint64_t slow_clients;                     //  dropped slow clients
    int64_t subscribers;                       //  event subscribers now
    uint64_t events_sent;                      //  events handed to SSE streams
};

static const char *const s_limit_names[CD_LIMIT_COUNT_] = {"body_size", "header_size", "rate",
                                                           "request_timeout", "actor_busy"};

static const char *const s_call_names[CD_CALL_OUTCOME_COUNT_] = {
    "replied", "timed_out", "undeliverable", "busy", "client_gone"};

const char *
cd_limit_name(cd_limit_t limit)
{
    return limit >= 0 && limit < CD_LIMIT_COUNT_ ? s_limit_names[limit] : "unknown";
}

const char *
cd_call_outcome_name(cd_call_outcome_t outcome)
{
    return outcome >= 0 && outcome < CD_CALL_OUTCOME_COUNT_ ? s_call_names[outcome] : "unknown";
}

cd_metrics_t *
cd_metrics_new(size_t n_routes)
{
    cd_metrics_t *self = (cd_metrics_t *)calloc(1, sizeof *self);
    s_route_t *routes = (s_route_t *)calloc(n_routes + 1, sizeof(s_route_t));
    if (!self || !routes) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    self->n_routes = n_routes;
    self->routes = routes;
    return self;
}

void
cd_metrics_destroy(cd_metrics_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->routes);
        free(*self_p);
        *self_p = NULL;
    }
}

void
cd_metrics_request(cd_metrics_t *self, size_t route, int status, double seconds)
{
    s_route_t *r = &self->routes[route < self->n_routes ? route : self->n_routes];
    s_status_t *slot = &r->statuses[CD_METRICS_STATUSES];
    for (size_t i = 0; i < CD_METRICS_STATUSES; i++) {
        if (r->statuses[i].status == status || r->statuses[i].status == 0) {
            slot = &r->statuses[i];
            slot->status = status;
            break;
        }
    }
    slot->count++;
    size_t bucket = 0;
    while (bucket < CD_METRICS_BUCKETS && seconds > s_bounds[bucket]) {
        bucket++;
    }
    r->buckets[bucket]++;
    r->sum += seconds;
    r->count++;
}

void
cd_metrics_limit(cd_metrics_t *self, cd_limit_t limit)
{
    if (limit >= 0 && limit < CD_LIMIT_COUNT_) {
        self->limits[limit]++;
    }
}

void
cd_metrics_guard(cd_metrics_t *self, cd_h2guard_verdict_t verdict)
{
    if (verdict >= 0 && verdict < CD_H2GUARD_VERDICT_COUNT_) {
        self->guard[verdict]++;
    }
}

void
cd_metrics_call(cd_metrics_t *self, cd_call_outcome_t outcome)
{
    if (outcome >= 0 && outcome < CD_CALL_OUTCOME_COUNT_) {
        self->calls[outcome]++;
    }
}

void
cd_metrics_connection(cd_metrics_t *self, int delta)
{
    if (delta > 0) {
        self->connections++;
    }
    self->open += delta;
}

void
cd_metrics_slow_client(cd_metrics_t *self)
{
    self->slow_clients++;
}

void
cd_metrics_event_subscribers(cd_metrics_t *self, int delta)
{
    self->subscribers += delta;
}

void
cd_metrics_events_sent(cd_metrics_t *self, uint64_t n)
{
    self->events_sent += n;
}

uint64_t
cd_metrics_slow_clients(const cd_metrics_t *self)
{
    return self->slow_clients;
}

uint64_t
cd_metrics_limit_hits(const cd_metrics_t *self, cd_limit_t limit)
{
    return limit >= 0 && limit < CD_LIMIT_COUNT_ ? self->limits[limit] : 0;
}

uint64_t
cd_metrics_guard_closes(const cd_metrics_t *self, cd_h2guard_verdict_t verdict)
{
    return verdict >= 0 && verdict < CD_H2GUARD_VERDICT_COUNT_ ? self->guard[verdict] : 0;
}

uint64_t
cd_metrics_calls(const cd_metrics_t *self, cd_call_outcome_t outcome)
{
    return outcome >= 0 && outcome < CD_CALL_OUTCOME_COUNT_ ? self->calls[outcome] : 0;
}

//  Writes a label value, escaped as the exposition format wants.
static void
s_label(FILE *out, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (*c == '\\' || *c == '"') {
            fputc('\\', out);
            fputc(*c, out);
        } else if (*c == '\n') {
            fputs("\\n", out);
        } else {
            fputc(*c, out);
        }
    }
}

static void
s_route_labels(FILE *out, const cd_route_t *route)
{
    fputs("method=\"", out);
    s_label(out, route ? route->method : "");
    fputs("\",route=\"", out);
    s_label(out, route ? route->pattern : "unmatched");
    fputc('"', out);
}

static void
s_requests(FILE *out, const cd_metrics_t *self, const cd_router_t *router)
{
    fputs("# HELP cadre_http_requests_total HTTP requests answered, by route and status.\n"
          "# TYPE cadre_http_requests_total counter\n",
          out);
    for (size_t i = 0; i <= self->n_routes; i++) {
        const s_route_t *r = &self->routes[i];
        const cd_route_t *route = i < self->n_routes ? cd_router_at(router, i) : NULL;
        for (size_t j = 0; j <= CD_METRICS_STATUSES; j++) {
            if (r->statuses[j].count == 0) {
                continue;
            }
            fputs("cadre_http_requests_total{", out);
            s_route_labels(out, route);
            if (j == CD_METRICS_STATUSES) {
                fputs(",status=\"other\"", out);
            } else {
                fprintf(out, ",status=\"%d\"", r->statuses[j].status);
            }
            fprintf(out, "} %llu\n", (unsigned long long)r->statuses[j].count);
        }
    }
    fputs("# HELP cadre_http_request_duration_seconds Time from a request's arrival to its "
          "answer.\n"
          "# TYPE cadre_http_request_duration_seconds histogram\n",
          out);
    for (size_t i = 0; i <= self->n_routes; i++) {
        const s_route_t *r = &self->routes[i];
        if (r->count == 0) {
            continue;
        }
        const cd_route_t *route = i < self->n_routes ? cd_router_at(router, i) : NULL;
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= CD_METRICS_BUCKETS; b++) {
            cumulative += r->buckets[b];
            fputs("cadre_http_request_duration_seconds_bucket{", out);
            s_route_labels(out, route);
            if (b < CD_METRICS_BUCKETS) {
                fprintf(out, ",le=\"%g\"} %llu\n", s_bounds[b], (unsigned long long)cumulative);
            } else {
                fprintf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
            }
        }
        fputs("cadre_http_request_duration_seconds_sum{", out);
        s_route_labels(out, route);
        fprintf(out, "} %.6f\n", r->sum);
        fputs("cadre_http_request_duration_seconds_count{", out);
        s_route_labels(out, route);
        fprintf(out, "} %llu\n", (unsigned long long)r->count);
    }
}

static void
s_http(FILE *out, const cd_metrics_t *self)
{
    fputs("# HELP cadre_http_limit_hits_total Requests refused by a configured limit.\n"
          "# TYPE cadre_http_limit_hits_total counter\n",
          out);
    for (int i = 0; i < CD_LIMIT_COUNT_; i++) {
        fprintf(out, "cadre_http_limit_hits_total{limit=\"%s\"} %llu\n", s_limit_names[i],
                (unsigned long long)self->limits[i]);
    }
    fputs("# HELP cadre_http_guard_closes_total HTTP/2 connections closed for abuse (rapid "
          "reset, CONTINUATION or control frame floods, header blocks left open).\n"
          "# TYPE cadre_http_guard_closes_total counter\n",
          out);
    for (int i = 1; i < CD_H2GUARD_VERDICT_COUNT_; i++) {
        fprintf(out, "cadre_http_guard_closes_total{reason=\"%s\"} %llu\n",
                cd_h2guard_verdict_name((cd_h2guard_verdict_t)i),
                (unsigned long long)self->guard[i]);
    }
    fprintf(out,
            "# HELP cadre_http_slow_clients_dropped_total Event-stream clients disconnected "
            "because their buffer overflowed.\n"
            "# TYPE cadre_http_slow_clients_dropped_total counter\n"
            "cadre_http_slow_clients_dropped_total %llu\n"
            "# HELP cadre_http_event_subscribers Event subscribers (SSE and WebSocket) now.\n"
            "# TYPE cadre_http_event_subscribers gauge\n"
            "cadre_http_event_subscribers %lld\n"
            "# HELP cadre_http_events_sent_total Events written to SSE streams.\n"
            "# TYPE cadre_http_events_sent_total counter\n"
            "cadre_http_events_sent_total %llu\n"
            "# HELP cadre_http_connections_total Connections accepted.\n"
            "# TYPE cadre_http_connections_total counter\n"
            "cadre_http_connections_total %llu\n"
            "# HELP cadre_http_connections_open Connections open now.\n"
            "# TYPE cadre_http_connections_open gauge\n"
            "cadre_http_connections_open %lld\n",
            (unsigned long long)self->slow_clients, (long long)self->subscribers,
            (unsigned long long)self->events_sent, (unsigned long long)self->connections,
            (long long)self->open);
    fputs("# HELP cadre_http_actor_calls_total Calls from HTTP handlers to actors, by outcome.\n"
          "# TYPE cadre_http_actor_calls_total counter\n",
          out);
    for (int i = 0; i < CD_CALL_OUTCOME_COUNT_; i++) {
        fprintf(out, "cadre_http_actor_calls_total{outcome=\"%s\"} %llu\n", s_call_names[i],
                (unsigned long long)self->calls[i]);
    }
}

static void
s_actors(FILE *out, cd_registry_t *registry)
{
    cd_registry_entry_t probe;
    size_t cap = cd_registry_list(registry, &probe, 0) + 8;
    cd_registry_entry_t *entries = (cd_registry_entry_t *)calloc(cap, sizeof(cd_registry_entry_t));
    if (!entries) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    //  Actors may have come and gone between the two calls.
    size_t n = cd_registry_list(registry, entries, cap);
    n = n < cap ? n : cap;
    fputs("# HELP cadre_actor_restarts_total Restarts of each actor since the node started.\n"
          "# TYPE cadre_actor_restarts_total counter\n",
          out);
    for (size_t i = 0; i < n; i++) {
        fputs("cadre_actor_restarts_total{actor=\"", out);
        s_label(out, entries[i].name);
        fprintf(out, "\"} %u\n", entries[i].restarts);
    }
    fputs("# HELP cadre_actor_queue_depth Messages waiting in each actor's inbox.\n"
          "# TYPE cadre_actor_queue_depth gauge\n",
          out);
    for (size_t i = 0; i < n; i++) {
        fputs("cadre_actor_queue_depth{actor=\"", out);
        s_label(out, entries[i].name);
        fprintf(out, "\"} %llu\n", (unsigned long long)entries[i].queue_depth);
    }
    fputs("# HELP cadre_actor_dead_letters_total Messages to each actor that could not be "
          "delivered.\n"
          "# TYPE cadre_actor_dead_letters_total counter\n",
          out);
    for (size_t i = 0; i < n; i++) {
        fputs("cadre_actor_dead_letters_total{actor=\"", out);
        s_label(out, entries[i].name);
        fprintf(out, "\"} %llu\n", (unsigned long long)entries[i].dead_letters);
    }
    fputs("# HELP cadre_actor_up Whether each actor is running (1) or not (0), with its "
          "status.\n"
          "# TYPE cadre_actor_up gauge\n",
          out);
    for (size_t i = 0; i < n; i++) {
        fputs("cadre_actor_up{actor=\"", out);
        s_label(out, entries[i].name);
        fprintf(out, "\",status=\"%s\"} %d\n", cd_actor_status_name(entries[i].status),
                entries[i].status == CD_ACTOR_RUNNING);
    }
    fprintf(out,
            "# HELP cadre_dead_letters_total Messages on this node that could not be delivered.\n"
            "# TYPE cadre_dead_letters_total counter\n"
            "cadre_dead_letters_total %llu\n",
            (unsigned long long)cd_registry_dead_letters(registry));
    free(entries);
}

char *
cd_metrics_render(const cd_metrics_t *self, const cd_router_t *router, cd_registry_t *registry,
                  double uptime_s, size_t *size)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, size);
    if (!out) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    fprintf(out,
            "# HELP cadre_uptime_seconds Seconds since the node started.\n"
            "# TYPE cadre_uptime_seconds gauge\n"
            "cadre_uptime_seconds %.3f\n",
            uptime_s);
    s_requests(out, self, router);
    s_http(out, self);
    if (registry) {
        s_actors(out, registry);
    }
    fclose(out);
    return text;
}
