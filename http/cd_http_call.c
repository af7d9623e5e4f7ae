/*  cd_http_call: handlers call actors without blocking the event loop.

    A handler sends an envelope through the HTTP layer's port and returns;
    the call is remembered in a table by the envelope's id. The port's
    inbox is a ZeroMQ PULL socket whose ZMQ_FD the loop watches (a dup of
    it, since h2o closes the fds of its sockets). That fd only says "the
    socket's state may have changed", once: every time it fires, the inbox
    is drained with non-blocking receives until one finds nothing (asking
    ZMQ_EVENTS before each would cost a system call per reply; a receive
    that finds nothing also re-arms the fd). A drain cut short at a batch
    limit continues from a zero timeout, because the fd will not fire
    again for what is already queued. Each
    reply is matched by its parent_id (or trace_id, for a reply that comes
    at the end of a chain of handoffs) and handed to the handler's
    callback, which answers the request.

    The client may leave before the reply: the request and its memory go
    with it. So the call record lives in the request's pool as a shared
    allocation with a dispose callback (h2o_mem_alloc_shared): when h2o
    clears the pool, the record takes itself out of the table and its
    timer, and a late reply finds nothing and is dropped. A call that
    outlives its timeout is answered 504 by its callback (rc CD_ETIMEDOUT).

    A detached call belongs to no request (an event subscriber's replay
    outlives a WebSocket's upgrade request): its record is malloc'd, freed
    after its callback, and its owner cancels it if it goes first.

    `event` envelopes are not replies: they go to the event streams
    (cd_events.c).

    Interface: cd__http_envelope_init, cd__http_call, cd__http_call_detached,
    cd__http_call_cancel, cd__http_call_failed, cd__http_calls_start /
    _abort / _stop / _pending, cd_http_route_forward. */
#include "http_internal.h"

#include "cd_error.h"
#include "cd_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_DRAIN_BATCH 256 //  replies handled per wake-up before yielding to HTTP

typedef struct {
    cd_http_t *http;              //  the server
    cd_http_rctx_t *rctx;         //  the request (same pool), NULL when detached
    uint8_t id[CD_ENV_UUID_SIZE]; //  the envelope id: the table key
    h2o_timeout_entry_t timeout;  //  its deadline
    cd__http_reply_fn *fn;        //  the handler's callback
    void *arg;                    //  passed to fn
    bool pending;                 //  in the table, fn not yet called
    bool detached;                //  malloc'd, freed after fn (or when cancelled)
} s_call_t;

//  Keys are the 16 id bytes, borrowed from the record.
static size_t
s_id_hash(const void *key)
{
    const uint8_t *id = (const uint8_t *)key;
    uint64_t hash = 1469598103934665603ull;
    for (int i = 0; i < CD_ENV_UUID_SIZE; i++) {
        hash = (hash ^ id[i]) * 1099511628211ull;
    }
    return (size_t)hash;
}

static int
s_id_compare(const void *a, const void *b)
{
    return memcmp(a, b, CD_ENV_UUID_SIZE);
}

static bool
s_zero(const uint8_t *id)
{
    static const uint8_t zero[CD_ENV_UUID_SIZE] = {0};
    return memcmp(id, zero, CD_ENV_UUID_SIZE) == 0;
}

//  Takes a call out of the table and off its timer.
static void
s_settle(s_call_t *call)
{
    zhashx_delete(call->http->calls, call->id);
    h2o_timeout_unlink(&call->timeout);
    call->pending = false;
}

//  The request's pool is being cleared: the request is over (answered, or
//  the client left). A call still pending will never be answered.
static void
s_call_dispose(void *data)
{
    s_call_t *call = (s_call_t *)data;
    if (call->pending) {
        s_settle(call);
        cd_metrics_call(call->http->metrics, CD_CALL_CLIENT_GONE);
    }
}

//  Calls fn once; a detached record goes with it.
static void
s_finish(s_call_t *call, const cd_envelope_t *reply, int rc)
{
    call->fn(call->rctx, reply, rc, call->arg);
    if (call->detached) {
        free(call);
    }
}

static void
s_on_timeout(h2o_timeout_entry_t *entry)
{
    s_call_t *call = H2O_STRUCT_FROM_MEMBER(s_call_t, timeout, entry);
    s_settle(call);
    cd_metrics_call(call->http->metrics, CD_CALL_TIMED_OUT);
    if (!call->detached) {
        cd_metrics_limit(call->http->metrics, CD_LIMIT_REQUEST_TIMEOUT);
    }
    s_finish(call, NULL, CD_ETIMEDOUT);
}

static void
s_dispatch(cd_http_t *http, const cd_envelope_t *env)
{
    if (env->kind == CD_KIND_EVENT) {
        cd__events_live(http, env);
        return;
    }
    cd_str_t op;
    if (env->kind == CD_KIND_CONTROL && cd_envelope_header(env, "op", &op) && op.len == 4 &&
        memcmp(op.ptr, "auth", 4) == 0) {
        cd__auth_notify(http, env);
        return;
    }
    s_call_t *call = NULL;
    if (!s_zero(env->parent_id)) {
        call = (s_call_t *)zhashx_lookup(http->calls, env->parent_id);
    }
    if (!call && !s_zero(env->trace_id)) {
        call = (s_call_t *)zhashx_lookup(http->calls, env->trace_id);
    }
    if (!call) {
        //  Its client left, or it timed out: nobody is waiting.
        cd_log_debug("http", "reply nobody waits for", "{s:s, s:s}", "kind",
                     cd_kind_name(env->kind) ? cd_kind_name(env->kind) : "?", "from",
                     env->from.ptr ? "set" : "none");
        return;
    }
    s_settle(call);
    cd_metrics_call(http->metrics, CD_CALL_REPLIED);
    s_finish(call, env, 0);
}

//  Drains the inbox until a receive finds it empty, or a batch is done.
static void
s_drain(cd_http_t *http)
{
    for (int i = 0; i < S_DRAIN_BATCH; i++) {
        cd_envelope_t env;
        int rc = cd_port_recv(http->port, 0, &env);
        if (rc == CD_ETIMEDOUT) {
            return;
        }
        if (rc == 0) {
            s_dispatch(http, &env);
        }
    }
    if (!h2o_timeout_is_linked(&http->port_more)) {
        h2o_timeout_link(http->loop, &http->ctx.zero_timeout, &http->port_more);
    }
}

static void
s_on_port(h2o_socket_t *sock, const char *err)
{
    s_drain((cd_http_t *)sock->data);
}

static void
s_on_port_more(h2o_timeout_entry_t *entry)
{
    s_drain(H2O_STRUCT_FROM_MEMBER(cd_http_t, port_more, entry));
}

int
cd__http_calls_start(cd_http_t *http)
{
    http->calls = zhashx_new();
    zhashx_set_key_hasher(http->calls, s_id_hash);
    zhashx_set_key_comparator(http->calls, s_id_compare);
    zhashx_set_key_duplicator(http->calls, NULL);
    zhashx_set_key_destructor(http->calls, NULL);
    http->pack = cd_pack_new();
    http->port_more.cb = s_on_port_more;
    int fd = dup(zsock_fd(cd_port_socket(http->port)));
    if (fd < 0) {
        return CD_EIO;
    }
    http->port_sock = h2o_evloop_socket_create(http->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    http->port_sock->data = http;
    h2o_socket_read_start(http->port_sock, s_on_port);
    //  Anything already queued raised the fd before we watched it.
    h2o_timeout_link(http->loop, &http->ctx.zero_timeout, &http->port_more);
    return 0;
}

void
cd__http_calls_abort(cd_http_t *http)
{
    if (!http->calls) {
        return;
    }
    s_call_t *call;
    while ((call = (s_call_t *)zhashx_first(http->calls)) != NULL) {
        s_settle(call);
        s_finish(call, NULL, CD_ECLOSED);
    }
}

void
cd__http_calls_stop(cd_http_t *http)
{
    h2o_timeout_unlink(&http->port_more);
    if (http->port_sock) {
        h2o_socket_read_stop(http->port_sock);
        h2o_socket_close(http->port_sock);
        http->port_sock = NULL;
    }
    for (int i = 0; i < CD__HTTP_CALL_TIMEOUTS; i++) {
        if (http->timeouts[i].ms) {
            h2o_timeout_dispose(http->loop, &http->timeouts[i].timeout);
            http->timeouts[i].ms = 0;
        }
    }
    zhashx_destroy(&http->calls);
    cd_pack_destroy(&http->pack);
}

size_t
cd__http_calls_pending(cd_http_t *http)
{
    return http->calls ? zhashx_size(http->calls) : 0;
}

//  The timeout list for a duration: one per distinct value, made on first
//  use. With every slot taken, the longest list is used (a later answer
//  rather than an early one).
static h2o_timeout_t *
s_timeout_list(cd_http_t *http, uint64_t ms)
{
    cd__http_timeout_t *longest = &http->timeouts[0];
    for (int i = 0; i < CD__HTTP_CALL_TIMEOUTS; i++) {
        cd__http_timeout_t *slot = &http->timeouts[i];
        if (slot->ms == ms) {
            return &slot->timeout;
        }
        if (slot->ms == 0) {
            slot->ms = ms;
            h2o_timeout_init(http->loop, &slot->timeout, ms);
            return &slot->timeout;
        }
        if (slot->ms > longest->ms) {
            longest = slot;
        }
    }
    return &longest->timeout;
}

void
cd__http_envelope_init(cd_http_t *http, cd_envelope_t *env, cd_kind_t kind, const char *to)
{
    cd_mailer_envelope_init(cd_port_mailer(http->port), env, kind, to);
}

//  Sends env for a call. The caller records the call only after this
//  succeeded: the reply cannot come before, it is read by this same loop.
static int
s_call_send(cd_http_t *http, cd_envelope_t *env)
{
    if (http->stopping) {
        return CD_ECLOSED;
    }
    if (s_zero(env->trace_id)) {
        memcpy(env->trace_id, env->id, CD_ENV_UUID_SIZE);
    }
    int rc = cd_port_send(http->port, env);
    if (rc != 0) {
        cd_metrics_call(http->metrics, rc == CD_EBUSY ? CD_CALL_BUSY : CD_CALL_UNDELIVERABLE);
    }
    return rc;
}

static void
s_call_register(cd_http_t *http, s_call_t *call, const cd_envelope_t *env, int timeout_ms,
                cd__http_reply_fn *fn, void *arg)
{
    call->http = http;
    memcpy(call->id, env->id, CD_ENV_UUID_SIZE);
    call->fn = fn;
    call->arg = arg;
    call->pending = true;
    call->timeout.cb = s_on_timeout;
    zhashx_insert(http->calls, call->id, call);
    h2o_timeout_link(http->loop, s_timeout_list(http, (uint64_t)(timeout_ms > 0 ? timeout_ms : 1)),
                     &call->timeout);
}

int
cd__http_call(cd_http_rctx_t *rctx, cd_envelope_t *env, int timeout_ms, cd__http_reply_fn *fn,
              void *arg)
{
    cd_http_t *http = rctx->http;
    int rc = s_call_send(http, env);
    if (rc != 0) {
        return rc;
    }
    s_call_t *call =
        (s_call_t *)h2o_mem_alloc_shared(&rctx->req->pool, sizeof *call, s_call_dispose);
    memset(call, 0, sizeof *call);
    call->rctx = rctx;
    s_call_register(http, call, env, timeout_ms, fn, arg);
    return 0;
}

int
cd__http_call_detached(cd_http_t *http, cd_envelope_t *env, int timeout_ms, cd__http_reply_fn *fn,
                       void *arg)
{
    int rc = s_call_send(http, env);
    if (rc != 0) {
        return rc;
    }
    s_call_t *call = (s_call_t *)calloc(1, sizeof *call);
    if (!call) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    call->detached = true;
    s_call_register(http, call, env, timeout_ms, fn, arg);
    return 0;
}

void
cd__http_call_cancel(cd_http_t *http, const uint8_t id[CD_ENV_UUID_SIZE])
{
    s_call_t *call = http->calls ? (s_call_t *)zhashx_lookup(http->calls, id) : NULL;
    if (call && call->detached) {
        s_settle(call);
        cd_metrics_call(http->metrics, CD_CALL_CLIENT_GONE);
        free(call);
    }
}

void
cd__http_call_failed(cd_http_rctx_t *rctx, int rc, const char *to)
{
    json_t *details = json_pack("{s:s}", "actor", to);
    if (rc == CD_ENOTFOUND) {
        cd__http_send_error(rctx, 404, "not_found", "no such actor", details);
    } else if (rc == CD_EBUSY) {
        cd_metrics_limit(rctx->http->metrics, CD_LIMIT_ACTOR_BUSY);
        cd__http_add_header(rctx, "retry-after", "1");
        cd__http_send_error(rctx, 503, "not_ready", "the actor is busy; retry later", details);
    } else if (rc == CD_EDEAD || rc == CD_ECLOSED) {
        cd__http_send_error(rctx, 503, "not_ready",
                            rc == CD_EDEAD ? "the actor is not running" : "the node is stopping",
                            details);
    } else {
        cd__http_send_error(rctx, 500, "internal", "the actor could not be called", details);
    }
}

//  --- the forwarding route ------------------------------------------------------

static const cd_json_field_t s_forward_fields[] = {
    {"input", CD_JSON_OBJECT, true, false, 0, 0, "sent to the actor as its task payload"},
};

const cd_json_schema_t cd_http_forward_body = {"ForwardRequest", s_forward_fields, 1};

static void
s_forward_reply(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    if (rc == CD_ETIMEDOUT) {
        cd__http_send_error(rctx, 504, "timeout", "the actor did not answer in time", NULL);
        return;
    }
    if (rc != 0) {
        cd__http_call_failed(rctx, rc, (const char *)arg);
        return;
    }
    json_t *output = NULL;
    const char *why = NULL;
    if (reply->payload_type != CD_PAYLOAD_NONE &&
        cd_json_from_msgpack(reply->payload, &output, &why) != 0) {
        json_t *details = json_pack("{s:s}", "reason", why);
        cd__http_send_error(rctx, 502, "bad_reply", "the actor's answer is not JSON-compatible",
                            details);
        return;
    }
    if (!output) {
        output = json_null();
    }
    json_t *from = json_stringn(reply->from.ptr ? reply->from.ptr : "", reply->from.len);
    if (reply->kind == CD_KIND_ERROR) {
        json_t *details =
            json_pack("{s:o, s:o}", "from", from ? from : json_null(), "output", output);
        cd__http_send_error(rctx, 502, "actor_error", "the actor answered with an error", details);
        return;
    }
    const char *kind = cd_kind_name(reply->kind);
    cd__http_send_json(rctx, 200,
                       json_pack("{s:s, s:o, s:o}", "kind", kind ? kind : "?", "from",
                                 from ? from : json_null(), "output", output));
}

int
cd_http_route_forward(cd_http_rctx_t *rctx)
{
    cd_http_t *http = rctx->http;
    const char *pattern = (const char *)rctx->match.route->arg;
    size_t name_len = 0;
    const char *name = cd_route_param(&rctx->match, "name", &name_len);
    const char *slot = pattern ? strstr(pattern, "{name}") : NULL;
    if (!pattern || (slot && !name)) {
        return CD_EINVAL;
    }
    char to[CD_ENV_MAX_NAME];
    if (slot) {
        snprintf(to, sizeof to, "%.*s%.*s%s", (int)(slot - pattern), pattern, (int)name_len, name,
                 slot + 6);
    } else {
        snprintf(to, sizeof to, "%s", pattern);
    }
    cd_pack_reset(http->pack);
    if (cd_json_to_msgpack(json_object_get(rctx->body, "input"), http->pack) != 0) {
        json_t *details = json_pack("{s:s, s:s}", "field", "input", "reason", "nesting too deep");
        cd__http_send_error(rctx, 400, "validation_failed", "nesting too deep", details);
        return 0;
    }
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_TASK, to);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(http->pack);
    //  `to` outlives the call only through this copy, for error messages.
    char *target = (char *)h2o_mem_alloc_pool(&rctx->req->pool, strlen(to) + 1);
    memcpy(target, to, strlen(to) + 1);
    int rc = cd__http_call(rctx, &env, http->opts.request_timeout_ms, s_forward_reply, target);
    if (rc != 0) {
        cd__http_call_failed(rctx, rc, to);
    }
    return 0;
}
