/*  httptest.h: helpers shared by the HTTP tests (header-only; each test
    program includes it once).

    - a node fixture: a registry, a supervisor tree of echo agents
      (agent/plain, agent/slow answering after 300 ms, agent/failing) and
      optionally a fake `persist` actor that answers stats requests, and an
      HTTP server on 127.0.0.1 port 0 with a forwarding route
      POST /test/agents/{name} -> agent/{name};
    - libcurl requests over HTTP/1.1, h2c with prior knowledge, or h2 over
      TLS, returning status, headers, body and the protocol used;
    - raw HTTP/2 frames over a TCP socket, for the attack tests.

    Everything talks to loopback only, with bounded timeouts. */
#ifndef CD_TESTS_HTTPTEST_H
#define CD_TESTS_HTTPTEST_H

#include "cd_echo.h"
#include "cd_error.h"
#include "cd_http.h"
#include "cd_log.h"
#include "cd_port.h"
#include "cd_supervisor.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

//  --- a fake persist actor ------------------------------------------------------

//  Behaviour of the fake persist: how it answers `op: stats`.
typedef struct {
    bool db_ok;  //  reported db_ok
    bool silent; //  never answers
} ht_persist_args_t;

static inline int
ht_persist_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    *state_p = args;
    return 0;
}

static inline int
ht_persist_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    const ht_persist_args_t *args = (const ht_persist_args_t *)state;
    if (env->kind != CD_KIND_CONTROL || args->silent) {
        return 0;
    }
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 6);
    cd_pack_cstr(pack, "db_ok");
    cd_pack_bool(pack, args->db_ok);
    cd_pack_cstr(pack, "pending");
    cd_pack_int(pack, 2);
    cd_pack_cstr(pack, "batches");
    cd_pack_uint(pack, 3);
    cd_pack_cstr(pack, "rows");
    cd_pack_uint(pack, 7);
    cd_pack_cstr(pack, "last_batch_ms");
    cd_pack_double(pack, 1.5);
    cd_pack_cstr(pack, "last_error");
    cd_pack_cstr(pack, args->db_ok ? "" : "connection refused");
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "%.*s", (int)env->from.len, env->from.ptr);
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_RESULT, to);
    memcpy(out.parent_id, env->id, sizeof env->id);
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(pack);
    cd_actor_send(self, &out);
    cd_pack_destroy(&pack);
    return 0;
}

static const cd_actor_ops_t ht_persist_ops = {
    .kind = "fake-persist",
    .init = ht_persist_init,
    .handle = ht_persist_handle,
};

//  --- the fixture -----------------------------------------------------------------

static const cd_route_t ht_routes[] = {
    {"POST", "/test/agents/{name}", cd_http_route_forward, 0, "Test: forward to an agent",
     &cd_http_forward_body, 200, NULL, "{\"type\":\"object\"}", "agent/{name}"},
};

typedef struct {
    cd_runtime_t rt;
    cd_echo_args_t plain, slow, failing;
    ht_persist_args_t persist;
    cd_child_spec_t children[4];
    cd_supervisor_spec_t spec;
    cd_root_t *root;
    cd_http_t *http;
    char base[160]; //  "http://127.0.0.1:port"
} ht_node_t;

//  Options with the forwarding route; the caller adjusts them.
static inline void
ht_opts(cd_http_opts_t *opts)
{
    cd_http_opts_defaults(opts);
    opts->addr = "127.0.0.1:0";
    opts->extra_routes = ht_routes;
    opts->n_extra_routes = sizeof ht_routes / sizeof ht_routes[0];
    opts->stop_timeout_ms = 1000;
}

//  Starts the tree (with a fake persist when persist is not NULL) and the
//  server with opts.
static inline ht_node_t *
ht_node_start(const cd_http_opts_t *opts, const ht_persist_args_t *persist)
{
    static int generation = 0;
    char id[16];
    snprintf(id, sizeof id, "h%d", ++generation);
    ht_node_t *node = (ht_node_t *)calloc(1, sizeof *node);
    node->rt = (cd_runtime_t){cd_registry_new(id), 1000, 1000, 100, 2000, 3000, 5, 10};
    node->slow.sleep_ms = 300;
    node->failing.fail = true;
    size_t n = 0;
    node->children[n++] = (cd_child_spec_t){"agent/plain", &cd_echo_ops, &node->plain, 0};
    node->children[n++] = (cd_child_spec_t){"agent/slow", &cd_echo_ops, &node->slow, 0};
    node->children[n++] = (cd_child_spec_t){"agent/failing", &cd_echo_ops, &node->failing, 0};
    if (persist) {
        node->persist = *persist;
        node->children[n++] = (cd_child_spec_t){"persist", &ht_persist_ops, &node->persist, 0};
    }
    node->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, node->children, n};
    char why[160];
    node->root = cd_root_new(&node->rt, "root", &node->spec, why, sizeof why);
    if (!node->root) {
        fprintf(stderr, "tree: %s\n", why);
        abort();
    }
    char *errmsg = NULL;
    int rc = cd_http_start(opts, &node->rt, &node->http, &errmsg);
    if (rc != 0) {
        fprintf(stderr, "cd_http_start: %s\n", errmsg ? errmsg : cd_strerror(rc));
        abort();
    }
    snprintf(node->base, sizeof node->base, "http://%s", cd_http_addr(node->http));
    return node;
}

static inline void
ht_node_stop(ht_node_t **node_p)
{
    ht_node_t *node = *node_p;
    if (cd_http_stop(&node->http) != 0) {
        fprintf(stderr, "cd_http_stop timed out\n");
        abort();
    }
    if (cd_root_destroy(&node->root) != 0) {
        fprintf(stderr, "cd_root_destroy timed out\n");
        abort();
    }
    cd_registry_destroy(&node->rt.registry);
    free(node);
    *node_p = NULL;
}

//  --- TLS ----------------------------------------------------------------------------

//  A throw-away self-signed certificate for localhost in a new temporary
//  directory: fills dir (from the template "/tmp/...XXXXXX"), cert, key.
//  Returns false if openssl failed.
static inline bool
ht_tls_make(char *dir, char *cert, char *key, size_t size)
{
    if (!mkdtemp(dir)) {
        return false;
    }
    snprintf(cert, size, "%s/cert.pem", dir);
    snprintf(key, size, "%s/key.pem", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 1 -subj /CN=localhost >/dev/null 2>&1",
             key, cert);
    return system(cmd) == 0;
}

static inline void
ht_tls_remove(const char *dir, const char *cert, const char *key)
{
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

//  --- curl ---------------------------------------------------------------------------

enum { HT_HTTP1 = 1, HT_H2C, HT_H2_TLS };

typedef struct {
    CURLcode rc;   //  CURLE_OK when a response came
    long status;   //  HTTP status
    long version;  //  CURL_HTTP_VERSION_1_1, _2_0
    char *headers; //  raw header block (NUL-terminated)
    size_t headers_len;
    char *body; //  body (NUL-terminated)
    size_t body_len;
    double seconds; //  total time
} ht_response_t;

typedef struct {
    char *data; //  NUL-terminated
    size_t len; //  bytes, without the NUL
} ht_buf_t;

static inline size_t
ht_collect(char *data, size_t size, size_t n, void *arg)
{
    ht_buf_t *buf = (ht_buf_t *)arg;
    size_t add = size * n;
    buf->data = (char *)realloc(buf->data, buf->len + add + 1);
    memcpy(buf->data + buf->len, data, add);
    buf->len += add;
    buf->data[buf->len] = '\0';
    return add;
}

static inline void
ht_response_free(ht_response_t *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static inline CURL *
ht_easy(const char *method, const char *url, const char *body, size_t body_len,
        struct curl_slist *headers, int proto, long timeout_ms, ht_buf_t *hbuf, ht_buf_t *bbuf)
{
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    }
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION,
                     proto == HT_HTTP1 ? CURL_HTTP_VERSION_1_1
                     : proto == HT_H2C ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                       : CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_VERBOSE, getenv("HT_VERBOSE") ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, ht_collect);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, hbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ht_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, bbuf);
    return curl;
}

static inline void
ht_finish(CURL *curl, CURLcode rc, ht_buf_t *hbuf, ht_buf_t *bbuf, ht_response_t *out)
{
    out->rc = rc;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(curl, CURLINFO_HTTP_VERSION, &out->version);
    curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME, &out->seconds);
    out->headers = hbuf->data ? hbuf->data : strdup("");
    out->headers_len = hbuf->len;
    out->body = bbuf->data ? bbuf->data : strdup("");
    out->body_len = bbuf->len;
}

//  One request. headers is a NULL-terminated list of "Name: value" (may be
//  NULL). Returns the curl result; *out holds the response.
static inline CURLcode
ht_request(const char *method, const char *url, const char *body, size_t body_len,
           const char *const *headers, int proto, long timeout_ms, ht_response_t *out)
{
    memset(out, 0, sizeof *out);
    struct curl_slist *list = NULL;
    for (const char *const *h = headers; h && *h; h++) {
        list = curl_slist_append(list, *h);
    }
    ht_buf_t hbuf = {NULL, 0}, bbuf = {NULL, 0};
    CURL *curl = ht_easy(method, url, body, body_len, list, proto, timeout_ms, &hbuf, &bbuf);
    CURLcode rc = curl_easy_perform(curl);
    ht_finish(curl, rc, &hbuf, &bbuf, out);
    curl_easy_cleanup(curl);
    curl_slist_free_all(list);
    return rc;
}

//  GET base+path.
static inline CURLcode
ht_get(const ht_node_t *node, const char *path, int proto, ht_response_t *out)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", node->base, path);
    return ht_request("GET", url, NULL, 0, NULL, proto, 10000, out);
}

//  POST a JSON body to base+path.
static inline CURLcode
ht_post_json(const ht_node_t *node, const char *path, const char *json, int proto,
             ht_response_t *out)
{
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    char url[512];
    snprintf(url, sizeof url, "%s%s", node->base, path);
    return ht_request("POST", url, json, strlen(json), headers, proto, 10000, out);
}

//  A response header's value (first occurrence, case-insensitive), copied
//  into buf; NULL if absent.
static inline const char *
ht_header(const ht_response_t *r, const char *name, char *buf, size_t size)
{
    size_t name_len = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > name_len && strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *value = line + name_len + 1;
            while (*value == ' ') {
                value++;
            }
            size_t vlen = (size_t)(line + len - value);
            snprintf(buf, size, "%.*s", (int)vlen, value);
            return buf;
        }
        line = end ? end + 2 : NULL;
    }
    return NULL;
}

//  The body as JSON (caller decrefs), or NULL.
static inline json_t *
ht_json(const ht_response_t *r)
{
    return json_loadb(r->body, r->body_len, 0, NULL);
}

//  The error code of an error body, copied into buf ("" if none).
static inline const char *
ht_error_code(const ht_response_t *r, char *buf, size_t size)
{
    json_t *doc = ht_json(r);
    const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    snprintf(buf, size, "%s", code ? code : "");
    json_decref(doc);
    return buf;
}

//  The value of a counter line "name{labels} value" in a metrics page, or -1.
static inline long long
ht_metric(const char *page, const char *series)
{
    size_t len = strlen(series);
    for (const char *at = strstr(page, series); at; at = strstr(at + 1, series)) {
        if ((at == page || at[-1] == '\n') && at[len] == ' ') {
            return atoll(at + len + 1);
        }
    }
    return -1;
}

static inline long long
ht_node_metric(const ht_node_t *node, const char *series)
{
    ht_response_t r;
    if (ht_get(node, "/metrics", HT_HTTP1, &r) != CURLE_OK) {
        ht_response_free(&r);
        return -1;
    }
    long long value = ht_metric(r.body, series);
    ht_response_free(&r);
    return value;
}

static inline int64_t
ht_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  --- raw sockets and HTTP/2 frames ----------------------------------------------

//  Connects to 127.0.0.1:port. Returns the fd or -1.
static inline int
ht_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

//  Sends everything; false when the peer has gone (or after timeout_ms).
static inline bool
ht_send_all(int fd, const void *data, size_t size, int timeout_ms)
{
    const uint8_t *at = (const uint8_t *)data;
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (size > 0) {
        ssize_t n = send(fd, at, size, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            at += n;
            size -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int left = (int)(deadline - ht_now_ms());
            if (left <= 0) {
                return false;
            }
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, left);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return false;
    }
    return true;
}

//  Appends one frame to buf at *len (buf must have room).
static inline void
ht_frame(uint8_t *buf, size_t *len, uint8_t type, uint8_t flags, uint32_t stream,
         const void *payload, size_t size)
{
    uint8_t *p = buf + *len;
    p[0] = (uint8_t)(size >> 16);
    p[1] = (uint8_t)(size >> 8);
    p[2] = (uint8_t)size;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(stream >> 24 & 0x7f);
    p[6] = (uint8_t)(stream >> 16);
    p[7] = (uint8_t)(stream >> 8);
    p[8] = (uint8_t)stream;
    if (size) {
        memcpy(p + 9, payload, size);
    }
    *len += 9 + size;
}

//  An HPACK block for GET /health over http: :method GET (2), :scheme
//  http (6), :path as a literal with indexed name (4).
static const uint8_t ht_hpack_get_health[] = {0x82, 0x86, 0x04, 0x07, '/', 'h',
                                              'e',  'a',  'l',  't',  'h'};

//  The client preface and an empty SETTINGS frame.
static inline bool
ht_h2_open(int fd)
{
    uint8_t buf[64];
    size_t len = 0;
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    len = 24;
    ht_frame(buf, &len, 0x4, 0, 0, NULL, 0);
    return ht_send_all(fd, buf, len, 2000);
}

//  Reads and discards what the server sent, until it closes or timeout_ms
//  passes. Returns true if the server closed the connection.
static inline bool
ht_wait_closed(int fd, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    uint8_t buf[16384];
    while (true) {
        int left = (int)(deadline - ht_now_ms());
        if (left <= 0) {
            return false;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            return true;
        }
    }
}

//  Reads what is available without waiting; returns false once the peer
//  has closed. Looks for a GOAWAY with the given error code, sets *seen.
static inline bool
ht_drain(int fd, uint32_t goaway_code, bool *seen)
{
    uint8_t buf[16384];
    while (true) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) {
            return false;
        }
        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        }
        //  Frames may straddle reads: a byte search for the GOAWAY pattern
        //  (type 7, stream 0, error code) is enough here.
        for (ssize_t i = 0; seen && i + 17 <= n; i++) {
            if (buf[i + 3] == 0x7 && buf[i + 5] == 0 && buf[i + 6] == 0 && buf[i + 7] == 0 &&
                buf[i + 8] == 0 && buf[i + 13] == 0 && buf[i + 14] == 0 && buf[i + 15] == 0 &&
                buf[i + 16] == goaway_code) {
                *seen = true;
            }
        }
    }
}

#endif
