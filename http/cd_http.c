/*  cd_http: the HTTP server core (see cd_http.h).

    Threads. cd_http_start validates the options, binds the listening
    socket, loads the TLS certificate, builds the router and the OpenAPI
    document on the caller's thread, so that every configuration error is
    reported synchronously; then it starts the HTTP thread and waits until
    that thread has built its h2o context and port (or failed). Everything
    h2o is created, used and destroyed on the HTTP thread: h2o keeps
    per-thread buffer caches. cd_http_stop writes an eventfd the loop
    watches, and joins the thread with a bound.

    Accepting. h2o's own h2o_accept is not used, because every HTTP/2
    connection must pass through the guard (cd_h2guard.h) and h2o 2.2.5 has
    no hook for that. Instead, on a cleartext port the first bytes are read
    here: the 24-byte HTTP/2 preface makes it an h2c connection, anything
    else HTTP/1.1 (h2o's own "PRI * HTTP/2" detection and the h2c Upgrade
    are switched off, so no connection reaches HTTP/2 another way). On a
    TLS port, the handshake is run here and ALPN decides. Then the
    connection is handed to h2o_http1_accept or h2o_http2_accept with its
    input buffer swapped out, so that h2o cannot process a request before
    we have recorded the connection; the bytes are put back and h2o's read
    callback is called on them.

    Guarding HTTP/2. After h2o_http2_accept, h2o's read callback is saved
    and replaced by s_on_h2_read, which feeds the bytes just read (h2o 2.2.5
    sets sock->bytes_read to the size of the last read, decrypted under
    TLS) to the guard before calling h2o's. A verdict closes the connection
    before h2o sees the offending frames: a GOAWAY(ENHANCE_YOUR_CALM) is
    written when nothing else is being written (cleartext only; under TLS
    the records belong to h2o), the socket is shut down both ways, and h2o's
    callback is called with an error so that h2o tears its connection down
    along its normal path. A periodic sweep catches header blocks left open
    (CONTINUATION drip) and connections still silent before their first
    request, with the same shutdown.

    Per connection we keep an s_conn_t, found from the socket
    (sock->on_close.data: h2o server sockets do not use that slot) and from
    h2o's connection (the by_conn table, for handlers). Its memory is
    released from the socket's on_close callback, unless a call into h2o is
    in progress on it (`busy`), in which case the caller releases it.

    Requests. One h2o handler at "/" routes every request itself
    (cd_router.h), checks the limits, runs the auth hook and the body
    schema, and calls the route's handler with a context from the request's
    pool. Every response goes through cd__http_send, which sets
    content-length (h2o_send_inline would not) and counts it.

    Interface: cd_http_opts_defaults, cd_http_start, cd_http_addr,
    cd_http_port, cd_http_stop; inside the layer cd__http_send*,
    cd__http_header, cd__http_add_header, cd__http_now_us. */
#include "cd_openapi.h"
#include "cd_routes.h"
#include "http_internal.h"

#include "cd_error.h"
#include "cd_log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_ACCEPT_BATCH 64       //  connections accepted per wake-up
#define S_SWEEP_MS 250          //  period of the timeout sweep
#define S_GUARD_SLACK 4096      //  header block bytes allowed beyond max_header_bytes
#define S_H2_MAX_STREAMS 100    //  what h2o 2.2.5 advertises and enforces
#define S_ENHANCE_YOUR_CALM 0xb //  HTTP/2 error code

typedef enum {
    S_SNIFF,     //  cleartext: reading the first bytes
    S_HANDSHAKE, //  TLS handshake in progress
    S_HTTP1,     //  handed to h2o as HTTP/1.1
    S_HTTP2      //  handed to h2o as HTTP/2, guarded
} s_phase_t;

typedef struct {
    cd_http_t *http;              //  the server
    h2o_linklist_t link;          //  in http->conns
    h2o_socket_t *sock;           //  the socket (h2o owns it)
    h2o_conn_t *h2o;              //  h2o's connection, once handed over
    s_phase_t phase;              //  where it is
    struct timeval connected_at;  //  for h2o
    uint64_t deadline_ms;         //  end of the sniff or handshake phase
    cd_h2guard_t guard;           //  HTTP/2 budgets
    h2o_socket_cb h2_read;        //  h2o's HTTP/2 read callback, which we wrap
    cd_h2guard_bucket_t requests; //  requests per second
    int busy;                     //  calls into h2o in progress on it
    bool closed;                  //  its socket is gone (free when not busy)
    bool killed;                  //  closed by the guard or the stop
} s_conn_t;

typedef struct {
    h2o_handler_t super; //  h2o's handler
    cd_http_t *http;     //  the server
} s_handler_t;

//  --- small helpers ----------------------------------------------------------------

//  h2o 2.2.5 keeps per-thread caches of freed buffers and pool chunks
//  (h2o_mem_alloc_recycle) that nothing can empty when a thread ends, and
//  h2o_multithread_destroy_queue leaves the queue itself allocated. Under
//  LeakSanitizer every program that ran the HTTP thread would report them
//  at exit; this hook, read by the sanitizer runtime at start-up (and
//  unused otherwise), suppresses exactly those two allocation sites.
const char *__lsan_default_suppressions(void);

const char *
__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\nleak:h2o_multithread_create_queue\n";
}

int64_t
cd__http_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *
s_strdup(const char *text)
{
    if (!text) {
        return NULL;
    }
    char *copy = strdup(text);
    if (!copy) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return copy;
}

static char *s_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
s_sprintf(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *out = NULL;
    if (vasprintf(&out, fmt, args) < 0) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    va_end(args);
    return out;
}

static const char *
s_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 423:
        return "Locked";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

//  pointer-keyed table of h2o connections
static size_t
s_ptr_hash(const void *key)
{
    uintptr_t v = (uintptr_t)key;
    return (size_t)((v >> 4) * 0x9e3779b97f4a7c15ull);
}

static int
s_ptr_compare(const void *a, const void *b)
{
    return a == b ? 0 : (uintptr_t)a < (uintptr_t)b ? -1 : 1;
}

//  --- answering --------------------------------------------------------------------

void
cd__http_send(cd_http_rctx_t *rctx, int status, const char *content_type, const char *body,
              size_t len, bool is_static)
{
    //  Answering twice would corrupt h2o's output state: our bug.
    assert(!rctx->answered);
    rctx->answered = true;
    h2o_req_t *req = rctx->req;
    static h2o_generator_t generator = {NULL, NULL};
    req->res.status = status;
    req->res.reason = s_reason(status);
    req->res.content_length = len;
    if (content_type) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
    }
    h2o_iovec_t buf = is_static ? h2o_iovec_init(body, len) : h2o_strdup(&req->pool, body, len);
    h2o_start_response(req, &generator);
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    } else {
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
    }
    double seconds = (double)(cd__http_now_us() - rctx->start_us) / 1e6;
    cd_metrics_request(rctx->http->metrics, rctx->route_index, status, seconds);
}

void
cd__http_start_stream(cd_http_rctx_t *rctx, int status, const char *content_type,
                      h2o_generator_t *generator)
{
    assert(!rctx->answered);
    rctx->answered = true;
    h2o_req_t *req = rctx->req;
    req->res.status = status;
    req->res.reason = s_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    h2o_start_response(req, generator);
    double seconds = (double)(cd__http_now_us() - rctx->start_us) / 1e6;
    cd_metrics_request(rctx->http->metrics, rctx->route_index, status, seconds);
}

void
cd__http_upgraded(cd_http_rctx_t *rctx, int status)
{
    assert(!rctx->answered);
    rctx->answered = true;
    double seconds = (double)(cd__http_now_us() - rctx->start_us) / 1e6;
    cd_metrics_request(rctx->http->metrics, rctx->route_index, status, seconds);
}

void
cd__http_send_json(cd_http_rctx_t *rctx, int status, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(obj);
    if (!text) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    cd__http_send(rctx, status, "application/json; charset=utf-8", text, strlen(text), false);
    free(text);
}

void
cd__http_send_error(cd_http_rctx_t *rctx, int status, const char *code, const char *message,
                    json_t *details)
{
    size_t len = 0;
    char *text = cd_json_error_body(code, message, details, &len);
    cd__http_send(rctx, status, "application/json; charset=utf-8", text, len, false);
    free(text);
}

void
cd__http_add_header(cd_http_rctx_t *rctx, const char *name, const char *value)
{
    h2o_req_t *req = rctx->req;
    h2o_iovec_t copy = h2o_strdup(&req->pool, value, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 1, NULL, copy.base,
                          copy.len);
}

const char *
cd__http_header(cd_http_rctx_t *rctx, const char *name, size_t *len)
{
    const h2o_headers_t *headers = &rctx->req->headers;
    size_t name_len = strlen(name);
    for (size_t i = 0; i < headers->size; i++) {
        const h2o_header_t *header = &headers->entries[i];
        if (header->name->len == name_len && memcmp(header->name->base, name, name_len) == 0) {
            if (len) {
                *len = header->value.len;
            }
            return header->value.base;
        }
    }
    return NULL;
}

//  --- connections --------------------------------------------------------------------

static void
s_conn_free(s_conn_t *conn)
{
    cd_http_t *http = conn->http;
    if (conn->h2o && zhashx_lookup(http->by_conn, conn->h2o) == conn) {
        zhashx_delete(http->by_conn, conn->h2o);
    }
    h2o_linklist_unlink(&conn->link);
    http->n_conns--;
    cd_metrics_connection(http->metrics, -1);
    free(conn);
}

//  The socket's on_close: h2o has closed it (it is not to be touched again).
static void
s_on_sock_close(void *data)
{
    s_conn_t *conn = (s_conn_t *)data;
    conn->closed = true;
    conn->sock = NULL;
    if (conn->busy == 0) {
        s_conn_free(conn);
    }
}

//  Ends a call into h2o on conn; frees it if the socket closed meanwhile.
//  Returns false when conn is gone.
static bool
s_conn_release(s_conn_t *conn)
{
    conn->busy--;
    if (conn->closed && conn->busy == 0) {
        s_conn_free(conn);
        return false;
    }
    return true;
}

//  Closes a connection we still own (sniff and handshake phases).
static void
s_conn_close(s_conn_t *conn)
{
    h2o_socket_t *sock = conn->sock;
    if (sock) {
        h2o_socket_read_stop(sock);
        h2o_socket_close(sock);
    }
}

static void
s_peer(s_conn_t *conn, char *buf, size_t size)
{
    struct sockaddr_storage sa;
    snprintf(buf, size, "?");
    if (!conn->sock) {
        return;
    }
    socklen_t len = h2o_socket_getpeername(conn->sock, (struct sockaddr *)&sa);
    char host[64], serv[16];
    if (len > 0 && getnameinfo((struct sockaddr *)&sa, len, host, sizeof host, serv, sizeof serv,
                               NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        snprintf(buf, size, "%s:%s", host, serv);
    }
}

//  Closes an HTTP/2 connection h2o owns, from outside h2o: a GOAWAY if it
//  can be written cleanly, then shut the socket down both ways. h2o then
//  sees the end of its input (or a failed write) and closes it itself.
static void
s_kill(s_conn_t *conn, cd_h2guard_verdict_t verdict)
{
    if (conn->killed || !conn->sock) {
        return;
    }
    conn->killed = true;
    int fd = h2o_socket_get_fd(conn->sock);
    if (verdict != CD_H2GUARD_OK) {
        cd_metrics_guard(conn->http->metrics, verdict);
        char peer[96];
        s_peer(conn, peer, sizeof peer);
        cd_log_warn("http", "closing abusive HTTP/2 connection", "{s:s, s:s, s:I, s:I, s:I}",
                    "reason", cd_h2guard_verdict_name(verdict), "peer", peer, "frames",
                    (json_int_t)conn->guard.frames, "streams",
                    (json_int_t)conn->guard.streams_opened, "resets",
                    (json_int_t)conn->guard.resets_seen);
        //  Frames are written whole by h2o; with no write in progress the
        //  stream is at a frame boundary and a GOAWAY can go in between.
        if (conn->phase == S_HTTP2 && !conn->sock->ssl && !conn->sock->_cb.write && fd >= 0) {
            const char *debug = cd_h2guard_verdict_name(verdict);
            size_t debug_len = strlen(debug);
            uint8_t frame[CD_H2GUARD_FRAME_HEADER + 8 + 32];
            size_t length = 8 + debug_len;
            uint32_t last = conn->guard.max_stream_id;
            uint8_t head[] = {(uint8_t)(length >> 16),
                              (uint8_t)(length >> 8),
                              (uint8_t)length,
                              0x7,
                              0,
                              0,
                              0,
                              0,
                              0,
                              (uint8_t)(last >> 24 & 0x7f),
                              (uint8_t)(last >> 16),
                              (uint8_t)(last >> 8),
                              (uint8_t)last,
                              0,
                              0,
                              0,
                              S_ENHANCE_YOUR_CALM};
            memcpy(frame, head, sizeof head);
            memcpy(frame + sizeof head, debug, debug_len);
            ssize_t sent = send(fd, frame, sizeof head + debug_len, MSG_DONTWAIT | MSG_NOSIGNAL);
            (void)sent; //  best effort: the connection is closed either way
        }
    }
    if (fd >= 0) {
        shutdown(fd, SHUT_RDWR);
    }
}

void
cd__http_abort(cd_http_t *http, h2o_req_t *req)
{
    //  h2o 2.2.5 offers no public way to reset one HTTP/2 stream from a
    //  handler (that is in http2_internal.h, which Debian's headers cannot
    //  compile without klib's khash.h), so the connection goes, with
    //  whatever else it carries: its client is not reading.
    s_conn_t *conn = (s_conn_t *)zhashx_lookup(http->by_conn, req->conn);
    if (conn) {
        s_kill(conn, CD_H2GUARD_OK);
    }
}

//  h2o's HTTP/2 read callback, wrapped: the guard sees the bytes first.
static void
s_on_h2_read(h2o_socket_t *sock, const char *err)
{
    s_conn_t *conn = (s_conn_t *)sock->on_close.data;
    h2o_socket_cb h2_read = conn->h2_read;
    if (!err && !conn->killed && sock->bytes_read > 0 && sock->bytes_read <= sock->input->size) {
        const uint8_t *fresh =
            (const uint8_t *)sock->input->bytes + sock->input->size - sock->bytes_read;
        uint64_t now = h2o_now(conn->http->loop);
        cd_h2guard_verdict_t verdict = cd_h2guard_feed(&conn->guard, fresh, sock->bytes_read, now);
        if (verdict != CD_H2GUARD_OK) {
            s_kill(conn, verdict);
        }
    }
    if (conn->killed && !err) {
        //  Nothing more of this client is parsed: h2o closes on an error.
        err = "connection closed by cadre";
    }
    h2_read(sock, err);
}

//  Hands a connection to h2o without letting h2o process input before the
//  connection is recorded: the input is swapped out around the accept.
static void
s_hand_over(s_conn_t *conn, bool http2)
{
    cd_http_t *http = conn->http;
    h2o_socket_t *sock = conn->sock;
    h2o_buffer_t *input = sock->input;
    h2o_buffer_init(&sock->input, &h2o_socket_buffer_prototype);
    conn->busy++;
    if (http2) {
        conn->phase = S_HTTP2;
        h2o_http2_accept(&http->accept_ctx, sock, conn->connected_at);
    } else {
        conn->phase = S_HTTP1;
        h2o_http1_accept(&http->accept_ctx, sock, conn->connected_at);
    }
    //  Nothing was read during the accept, so h2o cannot have closed it.
    conn->h2o = (h2o_conn_t *)sock->data;
    zhashx_update(http->by_conn, conn->h2o, conn);
    if (http2) {
        conn->h2_read = sock->_cb.read;
        sock->_cb.read = s_on_h2_read;
    }
    h2o_buffer_dispose(&sock->input);
    sock->input = input;
    if (sock->input->size > 0) {
        //  h2o's own callback: the guard has seen these bytes already.
        h2o_socket_cb read = http2 ? conn->h2_read : sock->_cb.read;
        read(sock, NULL);
    }
    s_conn_release(conn);
}

//  Starts the guard on bytes already read, then hands over as HTTP/2.
static void
s_start_http2(s_conn_t *conn)
{
    cd_http_t *http = conn->http;
    h2o_socket_t *sock = conn->sock;
    uint64_t now = h2o_now(http->loop);
    cd_h2guard_init(&conn->guard, &http->guard_limits, true, now);
    cd_h2guard_verdict_t verdict =
        cd_h2guard_feed(&conn->guard, (const uint8_t *)sock->input->bytes, sock->input->size, now);
    if (verdict != CD_H2GUARD_OK) {
        cd_metrics_guard(http->metrics, verdict);
        s_conn_close(conn);
        return;
    }
    s_hand_over(conn, true);
}

//  Cleartext: decides between HTTP/2 (the preface) and HTTP/1.1.
static void
s_on_sniff(h2o_socket_t *sock, const char *err)
{
    s_conn_t *conn = (s_conn_t *)sock->on_close.data;
    if (err) {
        s_conn_close(conn);
        return;
    }
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t have = sock->input->size;
    size_t n = have < CD_H2GUARD_PREFACE_SIZE ? have : CD_H2GUARD_PREFACE_SIZE;
    if (memcmp(sock->input->bytes, preface, n) != 0) {
        s_hand_over(conn, false);
    } else if (have >= CD_H2GUARD_PREFACE_SIZE) {
        s_start_http2(conn);
    }
}

//  TLS: ALPN decides.
static void
s_on_handshake(h2o_socket_t *sock, const char *err)
{
    s_conn_t *conn = (s_conn_t *)sock->on_close.data;
    if (err) {
        s_conn_close(conn);
        return;
    }
    h2o_iovec_t proto = h2o_socket_ssl_get_selected_protocol(sock);
    for (const h2o_iovec_t *ident = h2o_http2_alpn_protocols; ident->len != 0; ++ident) {
        if (proto.len == ident->len && memcmp(proto.base, ident->base, proto.len) == 0) {
            s_start_http2(conn);
            return;
        }
    }
    s_hand_over(conn, false);
}

static void
s_on_accept(h2o_socket_t *listener, const char *err)
{
    cd_http_t *http = (cd_http_t *)listener->data;
    if (err || http->stopping) {
        return;
    }
    for (int i = 0; i < S_ACCEPT_BATCH; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (!sock) {
            return;
        }
        int fd = h2o_socket_get_fd(sock);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s_conn_t *conn = (s_conn_t *)calloc(1, sizeof *conn);
        if (!conn) {
            fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
            abort();
        }
        conn->http = http;
        conn->sock = sock;
        conn->connected_at = *h2o_get_timestamp(&http->ctx, NULL, NULL);
        uint64_t now = h2o_now(http->loop);
        conn->deadline_ms = now + (uint64_t)http->opts.request_timeout_ms;
        cd_h2guard_bucket_init(&conn->requests, (uint32_t)http->opts.max_requests_per_conn_s, 0,
                               now);
        h2o_linklist_insert(&http->conns, &conn->link);
        http->n_conns++;
        cd_metrics_connection(http->metrics, +1);
        sock->on_close.cb = s_on_sock_close;
        sock->on_close.data = conn;
        if (http->ssl_ctx) {
            conn->phase = S_HANDSHAKE;
            h2o_socket_ssl_handshake(sock, http->ssl_ctx, NULL, s_on_handshake);
        } else {
            conn->phase = S_SNIFF;
            h2o_socket_read_start(sock, s_on_sniff);
        }
    }
}

//  Periodic: deadlines of connections not yet handed over, open header
//  blocks of HTTP/2 ones. Connections may close while we walk: take the
//  next link first, and do not touch a connection after closing it.
static void
s_sweep(cd_http_t *http)
{
    uint64_t now = h2o_now(http->loop);
    h2o_linklist_t *node = http->conns.next;
    while (node != &http->conns) {
        s_conn_t *conn = H2O_STRUCT_FROM_MEMBER(s_conn_t, link, node);
        node = node->next;
        if ((conn->phase == S_SNIFF || conn->phase == S_HANDSHAKE) && now > conn->deadline_ms) {
            s_conn_close(conn);
        } else if (conn->phase == S_HTTP2 && !conn->killed) {
            cd_h2guard_verdict_t verdict = cd_h2guard_tick(&conn->guard, now);
            if (verdict != CD_H2GUARD_OK) {
                s_kill(conn, verdict);
            }
        }
    }
}

//  --- requests ----------------------------------------------------------------------

static void
s_body_dispose(void *data)
{
    json_t **body = (json_t **)data;
    json_decref(*body);
}

static size_t
s_head_size(const h2o_req_t *req)
{
    size_t size = req->path.len + req->method.len + req->authority.len;
    for (size_t i = 0; i < req->headers.size; i++) {
        size += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    }
    return size;
}

//  Limits that apply before the route runs. True if answered.
static bool
s_check_limits(cd_http_rctx_t *rctx)
{
    cd_http_t *http = rctx->http;
    h2o_req_t *req = rctx->req;
    if (s_head_size(req) > http->opts.max_header_bytes) {
        cd_metrics_limit(http->metrics, CD_LIMIT_HEADER_SIZE);
        json_t *details =
            json_pack("{s:I}", "limit_bytes", (json_int_t)http->opts.max_header_bytes);
        cd__http_send_error(rctx, 431, "headers_too_large", "request headers are too large",
                            details);
        return true;
    }
    if (http->opts.max_requests_per_conn_s > 0) {
        s_conn_t *conn = (s_conn_t *)zhashx_lookup(http->by_conn, req->conn);
        if (conn &&
            !cd_h2guard_bucket_take(&conn->requests, (uint32_t)http->opts.max_requests_per_conn_s,
                                    0, h2o_now(http->loop))) {
            cd_metrics_limit(http->metrics, CD_LIMIT_RATE);
            cd__http_add_header(rctx, "retry-after", "1");
            if (req->version < 0x200) {
                //  An HTTP/1.1 client cannot be slowed otherwise: make it
                //  reconnect.
                req->http1_is_persistent = 0;
            }
            json_t *details = json_pack("{s:i}", "limit_per_s", http->opts.max_requests_per_conn_s);
            cd__http_send_error(rctx, 429, "rate_limited", "too many requests on this connection",
                                details);
            return true;
        }
    }
    if (req->entity.base && req->entity.len > http->opts.max_body_bytes) {
        cd_metrics_limit(http->metrics, CD_LIMIT_BODY_SIZE);
        json_t *details = json_pack("{s:I}", "limit_bytes", (json_int_t)http->opts.max_body_bytes);
        cd__http_send_error(rctx, 413, "payload_too_large", "request body is too large", details);
        return true;
    }
    return false;
}

//  Parses and checks the body of a route that takes one. True if answered.
static bool
s_check_body(cd_http_rctx_t *rctx)
{
    h2o_req_t *req = rctx->req;
    const cd_json_schema_t *schema = rctx->match.route->body;
    if (!schema) {
        return false;
    }
    size_t type_len = 0;
    const char *type = cd__http_header(rctx, "content-type", &type_len);
    bool has_body = req->entity.base && req->entity.len > 0;
    if (has_body && !cd_json_content_type_ok(type, type_len)) {
        cd__http_send_error(rctx, 415, "unsupported_media_type",
                            "the body must be application/json", NULL);
        return true;
    }
    cd_json_problem_t problem;
    json_t *body = NULL;
    if (!has_body) {
        body = json_object(); //  no body: as {}, so required fields are reported by name
    } else if (cd_json_parse_body(req->entity.base, req->entity.len, &body, &problem) != 0) {
        cd__http_send_error(rctx, 400, problem.code, problem.reason,
                            cd_json_problem_details(&problem));
        return true;
    }
    if (cd_json_validate(body, schema, &problem) != 0) {
        //  The problem may borrow a key from body: report before releasing.
        cd__http_send_error(rctx, 400, problem.code, problem.reason,
                            cd_json_problem_details(&problem));
        json_decref(body);
        return true;
    }
    json_t **slot = (json_t **)h2o_mem_alloc_shared(&req->pool, sizeof(json_t *), s_body_dispose);
    *slot = body;
    rctx->body = body;
    return false;
}

static int
s_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cd_http_t *http = ((s_handler_t *)self)->http;
    cd_http_rctx_t *rctx = (cd_http_rctx_t *)h2o_mem_alloc_pool(&req->pool, sizeof *rctx);
    memset(rctx, 0, sizeof *rctx);
    rctx->http = http;
    rctx->req = req;
    rctx->start_us = cd__http_now_us();
    rctx->route_index = cd_router_size(http->router);
    if (cd__auth_banned(rctx)) {
        //  Before routing: a banned address learns nothing, not even which
        //  paths exist.
        cd__http_send_error(rctx, 403, "forbidden", "this address is banned", NULL);
        return 0;
    }
    cd_route_result_t found =
        cd_router_match(http->router, req->method.base, req->method.len, req->path_normalized.base,
                        req->path_normalized.len, &rctx->match);
    if (found == CD_ROUTE_NO_PATH) {
        cd__http_send_error(rctx, 404, "not_found", "no such resource", NULL);
        return 0;
    }
    if (found == CD_ROUTE_NO_METHOD) {
        cd__http_add_header(rctx, "allow", rctx->match.allow);
        json_t *details = json_pack("{s:s}", "allow", rctx->match.allow);
        cd__http_send_error(rctx, 405, "method_not_allowed", "method not allowed here", details);
        return 0;
    }
    rctx->route_index = rctx->match.index;
    if (s_check_limits(rctx)) {
        return 0;
    }
    const cd_route_t *route = rctx->match.route;
    cd_auth_verdict_t verdict = CD_AUTH_ALLOW;
    const char *message = NULL;
    if (cd_route_needs_auth(route)) {
        verdict = cd_auth_check(rctx, route, &rctx->identity, &message);
        if (verdict == CD_AUTH_PENDING) {
            return 0; //  the hook resumes it (or the client leaves first)
        }
    }
    cd__http_after_auth(rctx, verdict, message);
    return 0;
}

void
cd__http_after_auth(cd_http_rctx_t *rctx, cd_auth_verdict_t verdict, const char *message)
{
    if (verdict == CD_AUTH_UNAUTHENTICATED) {
        cd__http_send_error(rctx, 401, "unauthenticated",
                            message ? message : "authentication required", NULL);
        return;
    }
    if (verdict == CD_AUTH_BUSY) {
        cd__http_add_header(rctx, "retry-after", "1");
        cd__http_send_error(rctx, 503, "not_ready", message ? message : "busy; retry", NULL);
        return;
    }
    if (verdict != CD_AUTH_ALLOW) {
        cd__http_send_error(rctx, 403, "forbidden", message ? message : "forbidden", NULL);
        return;
    }
    if (s_check_body(rctx)) {
        return;
    }
    if (rctx->match.route->handler(rctx) != 0 && !rctx->answered) {
        cd__http_send_error(rctx, 500, "internal", "the request could not be handled", NULL);
    }
}

//  --- the loop ------------------------------------------------------------------------

static void
s_on_sweep(h2o_timeout_entry_t *entry)
{
    cd_http_t *http = H2O_STRUCT_FROM_MEMBER(cd_http_t, sweep_entry, entry);
    s_sweep(http);
    if (http->stopping) {
        uint64_t now = h2o_now(http->loop);
        if (http->n_conns == 0 || now > http->stop_hard_ms) {
            http->done = true;
            return;
        }
        if (now > http->stop_soft_ms) {
            h2o_linklist_t *node = http->conns.next;
            while (node != &http->conns) {
                s_conn_t *conn = H2O_STRUCT_FROM_MEMBER(s_conn_t, link, node);
                node = node->next;
                if (conn->phase == S_SNIFF || conn->phase == S_HANDSHAKE) {
                    s_conn_close(conn);
                } else {
                    s_kill(conn, CD_H2GUARD_OK);
                }
            }
        }
    }
    h2o_timeout_link(http->loop, &http->sweep_timeout, &http->sweep_entry);
}

static void
s_begin_stop(cd_http_t *http)
{
    if (http->stopping) {
        return;
    }
    http->stopping = true;
    uint64_t now = h2o_now(http->loop);
    //  Half the time for clients to finish, then they are cut off; the
    //  rest for h2o to notice.
    http->stop_soft_ms = now + (uint64_t)http->opts.stop_timeout_ms / 2;
    http->stop_hard_ms = now + (uint64_t)http->opts.stop_timeout_ms;
    if (http->listener) {
        h2o_socket_read_stop(http->listener);
        h2o_socket_close(http->listener);
        http->listener = NULL;
    }
    h2o_context_request_shutdown(&http->ctx);
    cd__events_shutdown(http);
    cd__http_calls_abort(http);
    //  Check soon rather than at the next sweep.
    h2o_timeout_unlink(&http->sweep_entry);
    h2o_timeout_link(http->loop, &http->ctx.hundred_ms_timeout, &http->sweep_entry);
}

static void
s_on_stop_fd(h2o_socket_t *sock, const char *err)
{
    cd_http_t *http = (cd_http_t *)sock->data;
    uint64_t value;
    ssize_t n = read(h2o_socket_get_fd(sock), &value, sizeof value);
    (void)n;
    s_begin_stop(http);
}

//  --- h2o's own errors, in our shape ---------------------------------------------------

//  The body replacing one of h2o's own error bodies.
typedef struct {
    h2o_ostream_t super; //  h2o's output stream
    h2o_iovec_t body;    //  the JSON body, in the request's pool
} s_error_ostream_t;

static void
s_error_ostream_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                     h2o_send_state_t state)
{
    s_error_ostream_t *os = (s_error_ostream_t *)self;
    if (h2o_send_state_is_in_progress(state)) {
        h2o_ostream_send_next(self, req, NULL, 0, state); //  h2o's text: dropped
        return;
    }
    h2o_ostream_send_next(self, req, &os->body, 1, state);
}

static const char *
s_error_code(int status)
{
    switch (status) {
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 413:
        return "payload_too_large";
    case 431:
        return "headers_too_large";
    case 503:
        return "not_ready";
    default:
        return status >= 500 ? "internal" : "bad_request";
    }
}

//  A filter on the fallback path, where h2o answers what never reached a
//  handler (a body far over the limit, malformed headers): the status
//  stays, the body becomes {"error": {...}} like every other error.
static void
s_error_filter(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    if (req->res.status >= 400) {
        size_t len = 0;
        char *text = cd_json_error_body(s_error_code(req->res.status),
                                        req->res.reason ? req->res.reason : "error", NULL, &len);
        s_error_ostream_t *os = (s_error_ostream_t *)h2o_add_ostream(req, sizeof *os, slot);
        os->super.do_send = s_error_ostream_send;
        os->body = h2o_strdup(&req->pool, text, len);
        free(text);
        req->res.content_length = len;
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       H2O_STRLIT("application/json; charset=utf-8"), 1);
        slot = &os->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

static void
s_config(cd_http_t *http)
{
    const cd_http_opts_t *opts = &http->opts;
    h2o_config_init(&http->config);
    http->config.server_name = h2o_iovec_init(H2O_STRLIT("cadre"));
    //  Bodies between the limit and twice the limit reach the handler and
    //  are answered 413 by it; beyond that h2o stops reading them (its own
    //  413 on HTTP/1.1, given our JSON body by s_error_filter; RST_STREAM
    //  REFUSED_STREAM on HTTP/2), so a huge body is never buffered whole.
    http->config.max_request_entity_size = opts->max_body_bytes * 2 + 1;
    http->config.handshake_timeout = (uint64_t)opts->request_timeout_ms;
    http->config.http1.req_timeout = (uint64_t)opts->request_timeout_ms;
    http->config.http1.upgrade_to_http2 = 0; //  HTTP/2 only through our preface check
    http->config.http2.idle_timeout = (uint64_t)opts->idle_timeout_ms;
    http->config.http2.max_concurrent_requests_per_connection = (size_t)opts->max_streams;
    h2o_hostconf_t *host =
        h2o_config_register_host(&http->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    s_handler_t *handler = (s_handler_t *)h2o_create_handler(path, sizeof *handler);
    handler->super.on_req = s_on_req;
    handler->http = http;
    h2o_filter_t *filter = h2o_create_filter(&host->fallback_path, sizeof *filter);
    filter->on_setup_ostream = s_error_filter;
}

//  Sets up everything h2o in the HTTP thread. Returns 0 or an error with
//  http->start_err set.
static int
s_thread_setup(cd_http_t *http)
{
    s_config(http);
    http->loop = h2o_evloop_create();
    h2o_context_init(&http->ctx, http->loop, &http->config);
    http->accept_ctx.ctx = &http->ctx;
    http->accept_ctx.hosts = http->config.hosts;
    http->accept_ctx.ssl_ctx = http->ssl_ctx;
    h2o_linklist_init_anchor(&http->conns);
    http->by_conn = zhashx_new();
    zhashx_set_key_hasher(http->by_conn, s_ptr_hash);
    zhashx_set_key_comparator(http->by_conn, s_ptr_compare);
    zhashx_set_key_duplicator(http->by_conn, NULL);
    zhashx_set_key_destructor(http->by_conn, NULL);
    http->metrics = cd_metrics_new(cd_router_size(http->router));
    h2o_timeout_init(http->loop, &http->sweep_timeout, S_SWEEP_MS);
    http->sweep_entry.cb = s_on_sweep;
    h2o_timeout_link(http->loop, &http->sweep_timeout, &http->sweep_entry);

    http->port = cd_port_new(&http->rt, http->port_name);
    if (!http->port) {
        http->start_err = s_sprintf("the name '%s' is taken in the registry", http->port_name);
        return CD_EEXIST;
    }
    int rc = cd__http_calls_start(http);
    if (rc != 0) {
        http->start_err = s_sprintf("cannot watch the HTTP port's inbox");
        return rc;
    }
    cd__events_start(http);
    rc = cd__auth_start(http);
    if (rc != 0) {
        http->start_err = s_sprintf("the initial list of banned addresses is malformed");
        return rc;
    }
    int stop_fd = dup(http->stop_fd);
    if (stop_fd < 0) {
        http->start_err = s_sprintf("dup: %s", strerror(errno));
        return CD_EIO;
    }
    http->stop_sock = h2o_evloop_socket_create(http->loop, stop_fd, H2O_SOCKET_FLAG_DONT_READ);
    http->stop_sock->data = http;
    h2o_socket_read_start(http->stop_sock, s_on_stop_fd);
    http->listener =
        h2o_evloop_socket_create(http->loop, http->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    http->listen_fd = -1; //  h2o's now
    http->listener->data = http;
    h2o_socket_read_start(http->listener, s_on_accept);
    return 0;
}

//  Releases what s_thread_setup built, as far as it got. Only with no
//  connection left (h2o asserts that its timeouts are empty).
static void
s_thread_teardown(cd_http_t *http)
{
    if (http->listener) {
        h2o_socket_close(http->listener);
        http->listener = NULL;
    }
    if (http->stop_sock) {
        h2o_socket_close(http->stop_sock);
        http->stop_sock = NULL;
    }
    cd__events_stop(http);
    if (http->loop) {
        cd__auth_stop(http);
    }
    cd__http_calls_stop(http);
    cd_port_destroy(&http->port);
    if (http->loop) {
        h2o_timeout_unlink(&http->sweep_entry);
        h2o_timeout_dispose(http->loop, &http->sweep_timeout);
        //  h2o's HTTP/2 graceful shutdown leaves its own entry linked for a
        //  second; the context's timeout lists must be empty to go.
        h2o_timeout_unlink(&http->ctx.http2._graceful_shutdown_timeout);
        h2o_context_dispose(&http->ctx);
        h2o_evloop_destroy(http->loop);
        http->loop = NULL;
    }
    h2o_config_dispose(&http->config);
    zhashx_destroy(&http->by_conn);
}

static void *
s_thread(void *arg)
{
    cd_http_t *http = (cd_http_t *)arg;
    //  A peer that has gone makes writes raise SIGPIPE: h2o expects it
    //  ignored. Blocking it in this thread keeps the process-wide
    //  disposition untouched; the write just fails with EPIPE.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);

    http->start_rc = s_thread_setup(http);
    bool ok = http->start_rc == 0;
    sem_post(&http->ready); //  from here on, http->start_* are the caller's
    if (!ok) {
        s_thread_teardown(http);
        return NULL;
    }
    while (!http->done) {
        h2o_evloop_run(http->loop, INT32_MAX);
    }
    if (http->n_conns > 0) {
        //  Connections that would not close: h2o cannot be torn down under
        //  them. Leave its memory rather than crash (an error is logged).
        cd_log_error("http", "connections still open at stop; not releasing h2o", "{s:i}",
                     "connections", (int)http->n_conns);
        cd_port_destroy(&http->port);
        return NULL;
    }
    s_thread_teardown(http);
    return NULL;
}

//  --- start and stop --------------------------------------------------------------

void
cd_http_opts_defaults(cd_http_opts_t *opts)
{
    *opts = (cd_http_opts_t){
        .addr = CD_HTTP_DEFAULT_ADDR,
        .port_name = "http",
        .version = CADRE_VERSION,
        .max_body_bytes = 1u << 20,
        .max_header_bytes = 16u << 10,
        .max_streams = 100,
        .request_timeout_ms = 10000,
        .idle_timeout_ms = 30000,
        .max_requests_per_conn_s = 0,
        .resets_per_s = 100,
        .resets_burst = 200,
        .control_frames_per_s = 500,
        .control_frames_burst = 1000,
        .max_continuations = 32,
        .stop_timeout_ms = 2000,
        .ready_timeout_ms = 1000,
        .events_ping_ms = 15000,
        .events_max_buffer = 1u << 20,
        .events_max_subscribers = 10000,
    };
}

static int
s_check_opts(const cd_http_opts_t *opts, char **errmsg)
{
    const char *bad = NULL;
    if (!opts->addr || !*opts->addr) {
        bad = "addr is empty";
    } else if (!opts->tls_cert != !opts->tls_key) {
        bad = "tls_cert and tls_key go together";
    } else if (!opts->port_name || !*opts->port_name) {
        bad = "port_name is empty";
    } else if (opts->max_body_bytes < 1 || opts->max_body_bytes > (1u << 30)) {
        bad = "max_body_bytes must be 1..1 GiB";
    } else if (opts->max_header_bytes < 1024 || opts->max_header_bytes > (1u << 20)) {
        bad = "max_header_bytes must be 1 KiB..1 MiB";
    } else if (opts->max_streams < 1 || opts->max_streams > S_H2_MAX_STREAMS) {
        bad = "max_streams must be 1..100";
    } else if (opts->request_timeout_ms < 1 || opts->idle_timeout_ms < 1 ||
               opts->stop_timeout_ms < 1 || opts->ready_timeout_ms < 1) {
        bad = "timeouts must be positive";
    } else if (opts->events_ping_ms < 1 || opts->events_max_subscribers < 1 ||
               opts->events_max_buffer < 4096) {
        bad = "events_ping_ms and events_max_subscribers must be positive, events_max_buffer "
              "at least 4 KiB";
    } else if (opts->max_requests_per_conn_s < 0 || opts->resets_per_s < 0 ||
               opts->resets_burst < 0 || opts->control_frames_per_s < 0 ||
               opts->control_frames_burst < 0 || opts->max_continuations < 0) {
        bad = "rates and counts must not be negative";
    }
    if (bad) {
        *errmsg = s_sprintf("HTTP options: %s", bad);
        return CD_EINVAL;
    }
    return 0;
}

//  Binds the listening socket. Returns 0 or CD_EIO with *errmsg.
static int
s_bind(cd_http_t *http, char **errmsg)
{
    const char *addr = http->addr_opt;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1]) {
        *errmsg = s_sprintf("HTTP address '%s' is not HOST:PORT", addr);
        return CD_EINVAL;
    }
    char host[256];
    size_t host_len = (size_t)(colon - addr);
    if (addr[0] == '[' && colon[-1] == ']') {
        addr++;
        host_len -= 2;
    }
    if (host_len >= sizeof host) {
        *errmsg = s_sprintf("HTTP address '%s': host too long", http->addr_opt);
        return CD_EINVAL;
    }
    memcpy(host, addr, host_len);
    host[host_len] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int gai = getaddrinfo(host, colon + 1, &hints, &found);
    if (gai != 0) {
        *errmsg = s_sprintf("HTTP address '%s': %s", http->addr_opt, gai_strerror(gai));
        return CD_EINVAL;
    }
    int fd = -1;
    int last_errno = 0;
    for (struct addrinfo *ai = found; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(found);
    if (fd < 0) {
        *errmsg = s_sprintf("cannot listen on %s: %s", http->addr_opt, strerror(last_errno));
        return CD_EIO;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    char name[INET6_ADDRSTRLEN] = "?", serv[16] = "0";
    if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0) {
        getnameinfo((struct sockaddr *)&bound, len, name, sizeof name, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    }
    snprintf(http->addr, sizeof http->addr, bound.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", name,
             serv);
    http->tcp_port = atoi(serv);
    http->listen_fd = fd;
    return 0;
}

static int
s_tls(cd_http_t *http, char **errmsg)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *errmsg = s_sprintf("TLS: cannot create a context");
        return CD_EIO;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    const char *what = NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, http->tls_cert) != 1) {
        what = "cannot load the certificate";
    } else if (SSL_CTX_use_PrivateKey_file(ctx, http->tls_key, SSL_FILETYPE_PEM) != 1) {
        what = "cannot load the private key";
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        what = "the private key does not match the certificate";
    }
    if (what) {
        char detail[256];
        ERR_error_string_n(ERR_get_error(), detail, sizeof detail);
        *errmsg = s_sprintf("TLS: %s (%s, %s): %s", what, http->tls_cert, http->tls_key, detail);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return CD_EIO;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    http->ssl_ctx = ctx;
    return 0;
}

static void
s_free(cd_http_t *http)
{
    if (http->listen_fd >= 0) {
        close(http->listen_fd);
    }
    if (http->stop_fd >= 0) {
        close(http->stop_fd);
    }
    if (http->ssl_ctx) {
        SSL_CTX_free(http->ssl_ctx);
    }
    cd_router_destroy(&http->router);
    cd_metrics_destroy(&http->metrics);
    free(http->openapi);
    free(http->start_err);
    free(http->addr_opt);
    free(http->tls_cert);
    free(http->tls_key);
    free(http->port_name);
    free(http->version);
    free(http);
}

int
cd_http_start(const cd_http_opts_t *opts, const cd_runtime_t *rt, cd_http_t **http_p, char **errmsg)
{
    *http_p = NULL;
    char *ignored = NULL;
    if (!errmsg) {
        errmsg = &ignored;
    }
    int rc = s_check_opts(opts, errmsg);
    if (rc != 0) {
        return rc;
    }
    cd_http_t *http = (cd_http_t *)calloc(1, sizeof *http);
    if (!http) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    http->opts = *opts;
    http->addr_opt = s_strdup(opts->addr);
    http->tls_cert = s_strdup(opts->tls_cert);
    http->tls_key = s_strdup(opts->tls_key);
    http->port_name = s_strdup(opts->port_name);
    http->version = s_strdup(opts->version ? opts->version : CADRE_VERSION);
    http->opts.addr = http->addr_opt;
    http->opts.tls_cert = http->tls_cert;
    http->opts.tls_key = http->tls_key;
    http->opts.port_name = http->port_name;
    http->opts.version = http->version;
    http->node_rt = rt;
    http->rt = *rt;
    http->rt.send_timeout_ms = 0; //  the event loop never waits on a full queue
    http->listen_fd = -1;
    http->stop_fd = -1;
    http->started_us = opts->started_us > 0 ? opts->started_us : cd__http_now_us();
    http->guard_limits = (cd_h2guard_limits_t){
        .max_header_block = (uint32_t)opts->max_header_bytes + S_GUARD_SLACK,
        .max_continuations = (uint32_t)opts->max_continuations,
        .header_timeout_ms = (uint32_t)opts->request_timeout_ms,
        .resets_per_s = (uint32_t)opts->resets_per_s,
        .resets_burst = (uint32_t)opts->resets_burst,
        .control_per_s = (uint32_t)opts->control_frames_per_s,
        .control_burst = (uint32_t)opts->control_frames_burst,
        //  Twice the request rate, and a burst of four seconds' worth: the
        //  excess is answered 429 first; a client that keeps going
        //  regardless is cut off.
        .streams_per_s = (uint32_t)opts->max_requests_per_conn_s * 2,
        .streams_burst = (uint32_t)opts->max_requests_per_conn_s * 4,
    };

    http->router = cd_router_new();
    bool routed = true;
    for (size_t i = 0; i < cd_http_n_route_tables; i++) {
        routed = routed && cd_router_add(http->router, cd_http_route_tables[i].routes,
                                         *cd_http_route_tables[i].n) == 0;
    }
    if (!routed || cd_router_add(http->router, opts->extra_routes, opts->n_extra_routes) != 0) {
        *errmsg = s_sprintf("HTTP routes: a pattern is malformed or routed twice");
        rc = CD_EINVAL;
        goto fail;
    }
    json_t *doc = cd_openapi_document(http->router, http->version);
    http->openapi = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http->openapi_len = strlen(http->openapi);

    rc = s_bind(http, errmsg);
    if (rc != 0) {
        goto fail;
    }
    if (http->tls_cert) {
        rc = s_tls(http, errmsg);
        if (rc != 0) {
            goto fail;
        }
    }
    http->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (http->stop_fd < 0 || sem_init(&http->ready, 0, 0) != 0) {
        *errmsg = s_sprintf("eventfd: %s", strerror(errno));
        rc = CD_EIO;
        goto fail;
    }
    if (pthread_create(&http->thread, NULL, s_thread, http) != 0) {
        *errmsg = s_sprintf("cannot start the HTTP thread");
        sem_destroy(&http->ready);
        rc = CD_EIO;
        goto fail;
    }
    while (sem_wait(&http->ready) != 0 && errno == EINTR) {
    }
    sem_destroy(&http->ready);
    if (http->start_rc != 0) {
        pthread_join(http->thread, NULL);
        *errmsg = http->start_err;
        http->start_err = NULL;
        rc = http->start_rc;
        goto fail;
    }
    cd_log_info("http", "listening", "{s:s, s:s, s:I, s:I, s:i, s:i, s:i, s:i}", "addr", http->addr,
                "protocols",
                http->ssl_ctx ? "h2 (TLS, ALPN), http/1.1 (TLS)"
                              : "h2c (prior knowledge), http/1.1",
                "max_body_bytes", (json_int_t)opts->max_body_bytes, "max_header_bytes",
                (json_int_t)opts->max_header_bytes, "max_streams", opts->max_streams,
                "request_timeout_ms", opts->request_timeout_ms, "idle_timeout_ms",
                opts->idle_timeout_ms, "max_requests_per_conn_s", opts->max_requests_per_conn_s);
    *http_p = http;
    return 0;

fail:
    s_free(http);
    return rc;
}

const char *
cd_http_addr(const cd_http_t *self)
{
    return self->addr;
}

int
cd_http_port(const cd_http_t *self)
{
    return self->tcp_port;
}

int
cd_http_stop(cd_http_t **self_p)
{
    if (!self_p || !*self_p) {
        return 0;
    }
    cd_http_t *http = *self_p;
    *self_p = NULL;
    uint64_t one = 1;
    ssize_t n = write(http->stop_fd, &one, sizeof one);
    (void)n;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    //  The thread bounds itself by stop_timeout_ms; the margin is for
    //  tearing h2o down.
    int64_t wait_ms = (int64_t)http->opts.stop_timeout_ms + 3000;
    deadline.tv_sec += wait_ms / 1000;
    deadline.tv_nsec += (wait_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    if (pthread_timedjoin_np(http->thread, NULL, &deadline) != 0) {
        cd_log_error("http", "the HTTP thread did not stop in time; leaving it", NULL);
        return CD_ETIMEDOUT;
    }
    cd_log_info("http", "stopped", "{s:s}", "addr", http->addr);
    s_free(http);
    return 0;
}
