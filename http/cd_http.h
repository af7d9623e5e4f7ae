/*  cd_http: the node's HTTP frontend (h2o 2.2, evloop flavour).

    One thread runs an h2o event loop serving, on one address, HTTP/1.1 and
    HTTP/2 over cleartext with prior knowledge (h2c) or, when a certificate
    is configured, HTTP/1.1 and HTTP/2 over TLS (ALPN; the port then speaks
    TLS only). Requests are routed by the static table of cd_routes.c
    (cd_router.h); handlers reach actors only by envelopes through a port
    named opts.port_name, and answer when the reply arrives, never blocking
    the loop.

    Limits (each configurable, defaults in cd_http_opts_defaults):
      max_body_bytes        1 MiB    larger bodies: 413 payload_too_large
      max_header_bytes      16 KiB   larger request heads: 431 headers_too_large
      max_streams           100      requests in progress per connection;
                                     more wait (HTTP/2 refuses above 100 open)
      request_timeout_ms    10 s     to receive a request head (HTTP/1.1: and
                                     body) and for an actor to answer (504)
      idle_timeout_ms       30 s     an idle HTTP/2 connection is closed
      max_requests_per_conn_s  0     0: unlimited; else 429 rate_limited past
                                     it, and a client that ignores 429s is
                                     disconnected
    and HTTP/2 abuse budgets (cd_h2guard.h): client resets, control frames,
    CONTINUATION frames per header block. Event streams (cd_events.h):
      events_ping_ms        15 s     ": ping" on idle SSE streams (a ping
                                     frame on WebSockets)
      events_max_buffer     1 MiB    bytes waiting for one subscriber; a
                                     backlog that stays above it (or goes
                                     above 16x) drops the subscriber
      events_max_subscribers 10000   SSE + WebSocket subscribers at once
                                     (beyond: 503)

    Threads: cd_http_start and cd_http_stop are called from one thread (the
    node's main thread); everything else happens in the HTTP thread. */
#ifndef CD_HTTP_HTTP_H
#define CD_HTTP_HTTP_H

#include "cd_actor.h"
#include "cd_router.h"

#include <stddef.h>
#include <stdint.h>

#define CD_HTTP_DEFAULT_ADDR "127.0.0.1:8080"
#define CD_HTTP_ADDR_MAX 128 //  longest bound address text

typedef struct cd_http cd_http_t;

typedef struct {
    const char *addr;               //  host:port or [v6]:port; port 0 = any free port
    const char *tls_cert;           //  PEM certificate chain, or NULL for cleartext
    const char *tls_key;            //  PEM private key, with tls_cert
    const char *port_name;          //  registry name of the HTTP layer's port ("http")
    const char *version;            //  reported by /health/detailed and /openapi.json
    size_t max_body_bytes;          //  request body limit
    size_t max_header_bytes;        //  request head limit (names + values + path)
    int max_streams;                //  requests in progress per connection, 1..100
    int request_timeout_ms;         //  see above
    int idle_timeout_ms;            //  see above
    int max_requests_per_conn_s;    //  0: unlimited
    int resets_per_s;               //  HTTP/2 client RST_STREAM budget per connection ...
    int resets_burst;               //  ... and its burst
    int control_frames_per_s;       //  HTTP/2 SETTINGS/PING/PRIORITY/empty frames ...
    int control_frames_burst;       //  ... and their burst
    int max_continuations;          //  CONTINUATION frames in one header block
    int stop_timeout_ms;            //  cd_http_stop waits this long for clients to finish
    int ready_timeout_ms;           //  how long /health/ready waits for persist's stats
    int events_ping_ms;             //  period of ": ping" on event streams
    size_t events_max_buffer;       //  bytes queued for one event subscriber at most
    int events_max_subscribers;     //  event subscribers at once
    int64_t started_us;             //  node start, monotonic µs (zclock_usecs); 0: now
    const char *const *core_actors; //  NULL-terminated names that must run to be ready
    int api_actors;                 //  REST API actors api/0 .. api/N-1 (0: none)
    const cd_route_t *extra_routes; //  routes served beside the table (tests, embedding)
    size_t n_extra_routes;          //  entries in extra_routes
    //  Authentication (cd_auth.h): both keys, or neither (then nothing is
    //  checked: for tests of this layer alone). Borrowed until
    //  cd_http_start returns (they are copied).
    const uint8_t *auth_jwt_key;   //  32 bytes: the access tokens' HMAC key
    const uint8_t *auth_token_key; //  32 bytes: the key of API-key hashes
    const char *auth_bans;         //  the bans in force (cd_q_bans_live's JSON), or NULL
} cd_http_opts_t;

//  Fills opts with the defaults above (addr CD_HTTP_DEFAULT_ADDR, port
//  name "http", no TLS, no core actors, no extra routes).
void cd_http_opts_defaults(cd_http_opts_t *opts);

//  Binds opts->addr and starts the HTTP thread. rt is borrowed and must
//  outlive the server (its registry names the actors; sends from the HTTP
//  thread never wait on a full queue, whatever rt->send_timeout_ms says).
//  opts and the strings it points to are copied; extra_routes and
//  core_actors are borrowed and must outlive the server. On success
//  returns 0 and sets *http_p (caller owns it: cd_http_stop). On failure
//  returns CD_EINVAL (bad options), CD_EIO (cannot bind, bad certificate
//  or key) or CD_EEXIST (the port name is taken), sets *errmsg (caller
//  frees with free()) and leaves *http_p NULL.
int cd_http_start(const cd_http_opts_t *opts, const cd_runtime_t *rt, cd_http_t **http_p,
                  char **errmsg);

//  The address actually bound, "127.0.0.1:34567" (the real port when 0 was
//  asked for). Borrowed, valid until cd_http_stop.
const char *cd_http_addr(const cd_http_t *self);

//  The bound TCP port.
int cd_http_port(const cd_http_t *self);

//  Stops accepting, lets requests in progress finish for up to
//  opts.stop_timeout_ms (calls still waiting for an actor are answered 503),
//  closes what remains, ends the thread and frees everything. Returns 0, or
//  CD_ETIMEDOUT if the thread did not end in time (it is then left
//  running and its memory is not freed). Nulls *self_p; safe on NULL and
//  twice.
int cd_http_stop(cd_http_t **self_p);

//  A route handler that forwards a JSON body {"input": <any>} as a `task`
//  envelope (payload: input as msgpack) to the actor route->arg names,
//  with "{name}" in it replaced by the route's {name} parameter
//  ("agent/{name}"), and answers 200 {"kind", "from", "output"} with the
//  reply's payload as JSON; an `error` reply is 502 actor_error. Used by
//  tests to call real actors through the whole stack.
cd_route_fn cd_http_route_forward;

//  The body schema of cd_http_route_forward's routes: {"input": object}.
extern const cd_json_schema_t cd_http_forward_body;

#endif
