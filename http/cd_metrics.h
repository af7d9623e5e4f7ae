/*  cd_metrics: the HTTP layer's counters and their Prometheus text.

    Counted in the HTTP thread only (plain integers, no atomics): requests
    by route and status with a latency histogram per route, limit hits,
    connections closed by the HTTP/2 guard, connections, actor calls and
    their outcomes, event subscribers, events sent, slow clients dropped. Actor figures (status,
   restarts, dead letters) are read from the registry when the page is rendered.

    Exposition format 0.0.4 (text/plain; version=0.0.4). */
#ifndef CD_HTTP_METRICS_H
#define CD_HTTP_METRICS_H

#include "cd_h2guard.h"
#include "cd_registry.h"
#include "cd_router.h"

#include <stddef.h>
#include <stdint.h>

#define CD_METRICS_BUCKETS 14  //  latency histogram buckets, +Inf excluded
#define CD_METRICS_STATUSES 12 //  distinct statuses counted per route (then "other")

//  Limits whose hits are counted.
typedef enum {
    CD_LIMIT_BODY_SIZE = 0,   //  413
    CD_LIMIT_HEADER_SIZE,     //  431
    CD_LIMIT_RATE,            //  429: requests per connection per second
    CD_LIMIT_REQUEST_TIMEOUT, //  504: an actor did not answer in time
    CD_LIMIT_ACTOR_BUSY,      //  503: an actor's queue was full
    CD_LIMIT_COUNT_           //  number of limits, not a limit
} cd_limit_t;

//  Outcomes of calls to actors.
typedef enum {
    CD_CALL_REPLIED = 0,   //  answered in time
    CD_CALL_TIMED_OUT,     //  no answer within the timeout
    CD_CALL_UNDELIVERABLE, //  no such actor, or it is stopped or dead
    CD_CALL_BUSY,          //  its queue stayed full
    CD_CALL_CLIENT_GONE,   //  the client left before the answer
    CD_CALL_OUTCOME_COUNT_ //  number of outcomes, not an outcome
} cd_call_outcome_t;

typedef struct cd_metrics cd_metrics_t;

//  Counters for a router of n_routes routes (index n_routes counts requests
//  that matched none). Caller owns the result.
cd_metrics_t *cd_metrics_new(size_t n_routes);

void cd_metrics_destroy(cd_metrics_t **self_p);

//  One answered request: route index (n_routes for none), status, seconds
//  from arrival to answer.
void cd_metrics_request(cd_metrics_t *self, size_t route, int status, double seconds);

void cd_metrics_limit(cd_metrics_t *self, cd_limit_t limit);

void cd_metrics_guard(cd_metrics_t *self, cd_h2guard_verdict_t verdict);

void cd_metrics_call(cd_metrics_t *self, cd_call_outcome_t outcome);

//  A connection opened (+1) or closed (-1).
void cd_metrics_connection(cd_metrics_t *self, int delta);

//  A slow event-stream client was disconnected.
void cd_metrics_slow_client(cd_metrics_t *self);

//  An event subscriber (SSE or WebSocket) came (+1) or went (-1).
void cd_metrics_event_subscribers(cd_metrics_t *self, int delta);

//  n events were handed to SSE streams.
void cd_metrics_events_sent(cd_metrics_t *self, uint64_t n);

uint64_t cd_metrics_slow_clients(const cd_metrics_t *self);

//  Reads back a counter (tests).
uint64_t cd_metrics_limit_hits(const cd_metrics_t *self, cd_limit_t limit);

uint64_t cd_metrics_guard_closes(const cd_metrics_t *self, cd_h2guard_verdict_t verdict);

uint64_t cd_metrics_calls(const cd_metrics_t *self, cd_call_outcome_t outcome);

//  Renders the page. router names the routes; registry (may be NULL) gives
//  actor figures; uptime_s is the node's. Returns a string the caller
//  frees (free()) and its length in *size.
char *cd_metrics_render(const cd_metrics_t *self, const cd_router_t *router,
                        cd_registry_t *registry, double uptime_s, size_t *size);

//  Names, for labels: "body_size", ... / "replied", ...
const char *cd_limit_name(cd_limit_t limit);

const char *cd_call_outcome_name(cd_call_outcome_t outcome);

#endif
