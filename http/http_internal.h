/*  http_internal.h: what the HTTP layer's modules share. Not for other
    layers (and the only header of ours that includes <h2o.h>).

    The server (cd_http.c) owns the loop, connections and the per-request
    context; handlers (cd_health.c, future resource modules) answer through
    the cd__http_send* helpers, which set content-length, count the request
    in the metrics and mark it answered; cd_http_call.c sends envelopes to
    actors and calls back when the reply arrives; cd_events.c keeps the
    event streams (SSE and WebSocket subscribers). All of it runs in the
    HTTP thread. */
#ifndef CD_HTTP_INTERNAL_H
#define CD_HTTP_INTERNAL_H

#include "cd_auth.h"
#include "cd_h2guard.h"
#include "cd_http.h"
#include "cd_json.h"
#include "cd_metrics.h"
#include "cd_port.h"
#include "cd_router.h"

#include <h2o.h>
#include <h2o/http1.h>
#include <h2o/http2.h>
#include <h2o/websocket.h>
#include <jansson.h>
#include <pthread.h>
#include <semaphore.h>

#define CD__HTTP_CALL_TIMEOUTS 8 //  distinct call timeouts in use at once

typedef struct cd__events cd__events_t;
typedef struct cd__auth cd__auth_t;

//  A call timeout: one h2o timeout list per distinct duration.
typedef struct {
    uint64_t ms;           //  its duration; 0 marks a free slot
    h2o_timeout_t timeout; //  the list
} cd__http_timeout_t;

struct cd_http {
    //  Set by cd_http_start, read-only afterwards.
    cd_http_opts_t opts;         //  copy; strings below
    char *addr_opt;              //  opts.addr
    char *tls_cert;              //  opts.tls_cert
    char *tls_key;               //  opts.tls_key
    char *port_name;             //  opts.port_name
    char *version;               //  opts.version
    cd_runtime_t rt;             //  copy of the node's, send timeout 0
    const cd_runtime_t *node_rt; //  the node's; borrowed
    char addr[CD_HTTP_ADDR_MAX]; //  bound address
    int tcp_port;                //  bound TCP port
    int listen_fd;               //  listening socket (h2o closes it)
    int stop_fd;                 //  eventfd the main thread writes to stop
    SSL_CTX *ssl_ctx;            //  TLS, or NULL
    cd_router_t *router;         //  routes
    char *openapi;               //  the OpenAPI document, generated once
    size_t openapi_len;          //  its length
    int64_t started_us;          //  node start, monotonic µs (for uptime_s)
    pthread_t thread;            //  the HTTP thread
    sem_t ready;                 //  posted once the thread is set up (or failed)
    int start_rc;                //  the thread's set-up result
    char *start_err;             //  its message
    //  Owned by the HTTP thread.
    h2o_globalconf_t config;                             //  h2o configuration
    h2o_context_t ctx;                                   //  h2o context
    h2o_evloop_t *loop;                                  //  the event loop
    h2o_accept_ctx_t accept_ctx;                         //  for h2o_http1_accept / h2o_http2_accept
    h2o_socket_t *listener;                              //  listening socket
    h2o_socket_t *stop_sock;                             //  watches a dup of stop_fd
    h2o_socket_t *port_sock;                             //  watches a dup of the port's ZMQ_FD
    cd_port_t *port;                                     //  inbox + mailer to actors
    cd_metrics_t *metrics;                               //  counters
    cd_h2guard_limits_t guard_limits;                    //  HTTP/2 budgets
    h2o_linklist_t conns;                                //  every connection (s_conn_t)
    size_t n_conns;                                      //  entries in conns
    zhashx_t *by_conn;                                   //  h2o_conn_t * -> s_conn_t *
    zhashx_t *calls;                                     //  message id -> pending call
    cd_pack_t *pack;                                     //  reused payload buffer for calls
    unsigned api_next;                                   //  round-robin over the api actors
    cd__events_t *events;                                //  event subscribers (cd_events.c)
    cd__auth_t *auth;                                    //  tokens, keys, bans (cd_auth.c)
    cd__http_timeout_t timeouts[CD__HTTP_CALL_TIMEOUTS]; //  call timeout lists
    h2o_timeout_t sweep_timeout;                         //  periodic checks
    h2o_timeout_entry_t sweep_entry;                     //  its entry
    h2o_timeout_entry_t port_more;                       //  continues a port drain cut short
    bool stopping;                                       //  stop requested
    bool done;                                           //  leave the loop
    uint64_t stop_soft_ms;                               //  after this, close what is left
    uint64_t stop_hard_ms;                               //  after this, give up waiting
};

//  What a handler works with: one per request, from the request's pool.
struct cd_http_rctx {
    cd_http_t *http;             //  the server
    h2o_req_t *req;              //  the request; gone once the client is
    cd_route_match_t match;      //  the route and its parameters
    size_t route_index;          //  for metrics (router size: no route)
    int64_t start_us;            //  monotonic arrival time
    json_t *body;                //  parsed body when the route has a schema (pool-released)
    cd_auth_identity_t identity; //  who is calling
    const char *ws_protocol;     //  the Sec-WebSocket-Protocol entry that carried the
                                 //  credentials (pool), echoed in the 101; or NULL
    bool answered;               //  a response was started
};

//  --- answering (cd_http.c) ------------------------------------------------------

//  Sends a complete response: status, content type, body (copied into the
//  request's pool unless is_static), with content-length. HEAD gets no body.
void cd__http_send(cd_http_rctx_t *rctx, int status, const char *content_type, const char *body,
                   size_t len, bool is_static);

//  Sends obj as compact JSON (application/json; charset=utf-8). Takes
//  ownership of obj.
void cd__http_send_json(cd_http_rctx_t *rctx, int status, json_t *obj);

//  Sends {"error": {"code", "message", "details"}}. Takes ownership of
//  details (may be NULL).
void cd__http_send_error(cd_http_rctx_t *rctx, int status, const char *code, const char *message,
                         json_t *details);

//  Adds a response header (copied into the pool). Before the send.
void cd__http_add_header(cd_http_rctx_t *rctx, const char *name, const char *value);

//  A request header's value (first one) by lower-case name, or NULL.
//  Borrowed from the request.
const char *cd__http_header(cd_http_rctx_t *rctx, const char *name, size_t *len);

//  Monotonic microseconds (CLOCK_MONOTONIC, as zclock_usecs).
int64_t cd__http_now_us(void);

//  --- streams and upgrades (cd_http.c) -------------------------------------------

//  Starts a response whose body the handler sends itself, as h2o streams
//  it (h2o_send with H2O_SEND_STATE_IN_PROGRESS, then again from
//  generator->proceed): status, content type, no content-length (HTTP/1.1
//  sends it chunked). Marks the request answered and counts it, with the
//  time to this start. generator is borrowed until the request ends.
void cd__http_start_stream(cd_http_rctx_t *rctx, int status, const char *content_type,
                           h2o_generator_t *generator);

//  Marks a request answered by an upgrade (a WebSocket's 101) and counts it.
void cd__http_upgraded(cd_http_rctx_t *rctx, int status);

//  Ends a streamed response that is stuck (its client does not read) from
//  outside h2o's callbacks by shutting its connection down (both ways):
//  h2o's pending write fails, it closes the connection and disposes the
//  request (and, for HTTP/2, every other stream of that connection) soon
//  after. Not during this call: the request stays valid until its pool's
//  dispose callbacks run.
void cd__http_abort(cd_http_t *http, h2o_req_t *req);

//  --- calling actors (cd_http_call.c) ------------------------------------------

//  Called once per call: with the reply (rc 0; borrowed, valid during the
//  call), or with reply NULL and rc CD_ETIMEDOUT (no answer in time) or
//  CD_ECLOSED (the server is stopping). Not called if the client went away
//  first: the reply is then dropped.
typedef void(cd__http_reply_fn)(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc,
                                void *arg);

//  Fills the routine fields of an envelope from the HTTP port (fresh id,
//  from, ts, attempt). Then set payload, headers, task_id as needed.
void cd__http_envelope_init(cd_http_t *http, cd_envelope_t *env, cd_kind_t kind, const char *to);

//  Sends env (its id becomes the call id; trace_id is set to it if unset)
//  and registers fn for the reply, matched by parent_id (or trace_id, for
//  replies after handoffs). The send never waits. Returns 0, or
//  CD_ENOTFOUND / CD_EDEAD (nobody to deliver to), CD_EBUSY (the queue is
//  full), CD_EINVAL (env does not encode): then nothing is pending and the
//  handler answers itself.
int cd__http_call(cd_http_rctx_t *rctx, cd_envelope_t *env, int timeout_ms, cd__http_reply_fn *fn,
                  void *arg);

//  A call that belongs to no request (an event subscriber's): as
//  cd__http_call, with fn called with rctx NULL. The record is freed after
//  fn; the caller that goes away first cancels it with the envelope's id.
int cd__http_call_detached(cd_http_t *http, cd_envelope_t *env, int timeout_ms,
                           cd__http_reply_fn *fn, void *arg);

//  Forgets a pending detached call: fn will not be called. No-op for an
//  unknown id.
void cd__http_call_cancel(cd_http_t *http, const uint8_t id[CD_ENV_UUID_SIZE]);

//  Answers a failed cd__http_call: 404 not_found, 503 not_ready with
//  Retry-After, or 500.
void cd__http_call_failed(cd_http_rctx_t *rctx, int rc, const char *to);

//  Creates the pending-call table and watches the port (HTTP thread, at
//  start). Returns 0 or CD_EIO.
int cd__http_calls_start(cd_http_t *http);

//  Answers every pending call with CD_ECLOSED (stop).
void cd__http_calls_abort(cd_http_t *http);

//  Releases the table, the port watch and the timeout lists (the loop is
//  about to be destroyed and no call is pending).
void cd__http_calls_stop(cd_http_t *http);

//  Pending calls (tests, metrics).
size_t cd__http_calls_pending(cd_http_t *http);

//  --- the api actors (cd_http_api.c) ----------------------------------------------

//  Sends operation op to an api actor (round-robin) with the payload built
//  in http->pack; *to_p gets the actor's name (pool). Returns as
//  cd__http_call.
int cd__http_api_call(cd_http_rctx_t *rctx, const char *op, cd__http_reply_fn *fn, void *arg,
                      const char **to_p);

//  Calls op with an empty request (no parameters, query or body): for
//  figures the HTTP layer serves itself (/metrics).
int cd__http_api_call_bare(cd_http_rctx_t *rctx, const char *op, cd__http_reply_fn *fn, void *arg);

//  Reads an api actor's JSON answer: status and parsed body (caller owns
//  it). Returns 0 or CD_EPROTO.
int cd__http_api_reply_json(const cd_envelope_t *reply, int *status, json_t **body);
//  --- authentication (cd_auth.c; the hook is cd_auth.h) -----------------------------

//  Sets the auth state up from http->opts (HTTP thread, at start, after
//  the port). Returns 0 or CD_EINVAL (the initial bans do not parse).
int cd__auth_start(cd_http_t *http);

//  Releases it (HTTP thread, at stop, before the loop goes).
void cd__auth_stop(cd_http_t *http);

//  True if the request's peer address is banned (every route).
bool cd__auth_banned(cd_http_rctx_t *rctx);

//  A `control` envelope with header op "auth" from an api actor: what
//  changed for the caches (cd_api_auth_notify). env is borrowed.
void cd__auth_notify(cd_http_t *http, const cd_envelope_t *env);

//  The server's continuation after the hook (cd_http.c): answers 401, 403
//  or 503 for a refusal, or parses the body and runs the route's handler.
void cd__http_after_auth(cd_http_rctx_t *rctx, cd_auth_verdict_t verdict, const char *message);

//  --- event streams (cd_events.c) ------------------------------------------------

//  Sets the event streams up (HTTP thread, at start, after the port).
//  Returns 0.
int cd__events_start(cd_http_t *http);

//  A live `event` envelope from the bus (cd_bus.h), for the subscribers.
//  env is borrowed for the call.
void cd__events_live(cd_http_t *http, const cd_envelope_t *env);

//  Credentials were revoked (the effects of an auth change, cd_auth.c:
//  "fams" login families, "keys" API-key hashes, "users" whose keys all
//  went): every stream opened with one of them ends now, as a slow one
//  does (it may reconnect with a valid credential and resume).
void cd__events_revoke(cd_http_t *http, const json_t *effects);

//  The server is stopping: ends every SSE stream (after what is in flight)
//  and closes every WebSocket (going away).
void cd__events_shutdown(cd_http_t *http);

//  Releases what is left (no connection is open any more).
void cd__events_stop(cd_http_t *http);

#endif
