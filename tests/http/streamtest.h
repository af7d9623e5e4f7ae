/*  streamtest.h: event stream clients for the HTTP tests (header-only;
    include once per test program, after <cmocka.h> and httptest.h).

    - an SSE client in a thread of its own (libcurl multi) that parses
      the stream as it comes: ids, types, comments, the last data JSON;
    - a tiny WebSocket client over a TCP socket: the handshake (with
      extra header lines and a path of the caller's), masked frames out,
      frames in, JSON messages with pings answered.

    Everything talks to loopback only, with bounded timeouts. */
#ifndef CD_TESTS_STREAMTEST_H
#define CD_TESTS_STREAMTEST_H

#include <pthread.h>
#include <stdatomic.h>

//  --- an SSE client ------------------------------------------------------------------

#define ST_SSE_MAX 20000 //  events kept
#define ST_HEADERS_MAX 4 //  extra request header lines

typedef struct {
    char url[512];                      //  what to GET
    char last_event_id[32];             //  sent as Last-Event-ID if not empty
    char headers[ST_HEADERS_MAX][1200]; //  extra "Name: value" lines ("" for none)
    int proto;                          //  HT_HTTP1 or HT_H2C
    pthread_mutex_t lock;               //  guards what follows
    char *pending;                      //  bytes not yet parsed
    size_t pending_len;                 //  ...
    bool ok;                            //  ": ok" seen
    int pings;                          //  ": ping" seen
    int64_t ids[ST_SSE_MAX];            //  ids of the events received, in order
    char types[ST_SSE_MAX][40];         //  their event: lines
    int64_t tasks[ST_SSE_MAX];          //  their data's task_id (0 if null)
    int64_t projects[ST_SSE_MAX];       //  their data's project_id (0 if null)
    int n;                              //  events received with an id
    int ephemeral;                      //  events received without an id
    json_t *last_data;                  //  the last event's data: JSON
    char error[128];                    //  what was malformed, "" if nothing
    atomic_bool stop;                   //  the main thread asks it to leave
    atomic_bool done;                   //  the transfer ended
    CURLcode rc;                        //  its result
    long status;                        //  HTTP status
    long version;                       //  HTTP version used
    char content_type[64];              //  response content type
    pthread_t thread;                   //  the thread
} st_sse_t;

static inline void *
st_realloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q) {
        abort();
    }
    return q;
}

//  Parses complete SSE blocks out of c->pending (lock held).
static inline void
st_sse_parse(st_sse_t *c)
{
    while (true) {
        char *end = c->pending_len ? strstr(c->pending, "\n\n") : NULL;
        if (!end) {
            return;
        }
        *end = '\0';
        char *block = c->pending;
        int64_t id = -1;
        char type[40] = "";
        char *data = NULL;
        size_t data_len = 0;
        for (char *line = block; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) {
                *nl = '\0';
            }
            if (strcmp(line, ": ok") == 0) {
                c->ok = true;
            } else if (strcmp(line, ": ping") == 0) {
                c->pings++;
            } else if (strncmp(line, "id: ", 4) == 0) {
                id = atoll(line + 4);
            } else if (strncmp(line, "event: ", 7) == 0) {
                snprintf(type, sizeof type, "%s", line + 7);
            } else if (strncmp(line, "data: ", 6) == 0) {
                size_t add = strlen(line + 6);
                data = st_realloc(data, data_len + add + 2);
                if (data_len) {
                    data[data_len++] = '\n';
                }
                memcpy(data + data_len, line + 6, add);
                data_len += add;
                data[data_len] = '\0';
            } else if (!c->error[0]) {
                snprintf(c->error, sizeof c->error, "unexpected line: %.60s", line);
            }
            line = nl ? nl + 1 : NULL;
        }
        if (data) {
            json_t *doc = json_loads(data, 0, NULL);
            if (!doc && !c->error[0]) {
                snprintf(c->error, sizeof c->error, "data is not JSON: %.60s", data);
            }
            if (doc && id >= 0 && json_integer_value(json_object_get(doc, "id")) != id &&
                !c->error[0]) {
                snprintf(c->error, sizeof c->error, "id: %lld but data id differs", (long long)id);
            }
            json_decref(c->last_data);
            c->last_data = doc;
            if (id >= 0) {
                if (c->n < ST_SSE_MAX) {
                    c->ids[c->n] = id;
                    snprintf(c->types[c->n], sizeof c->types[0], "%s", type);
                    c->tasks[c->n] = json_integer_value(json_object_get(doc, "task_id"));
                    c->projects[c->n] = json_integer_value(json_object_get(doc, "project_id"));
                    c->n++;
                }
            } else {
                c->ephemeral++;
            }
            free(data);
        }
        size_t used = (size_t)(end + 2 - c->pending);
        memmove(c->pending, end + 2, c->pending_len - used + 1);
        c->pending_len -= used;
    }
}

static inline size_t
st_sse_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    st_sse_t *c = (st_sse_t *)arg;
    size_t len = size * nmemb;
    pthread_mutex_lock(&c->lock);
    c->pending = st_realloc(c->pending, c->pending_len + len + 1);
    memcpy(c->pending + c->pending_len, ptr, len);
    c->pending_len += len;
    c->pending[c->pending_len] = '\0';
    st_sse_parse(c);
    pthread_mutex_unlock(&c->lock);
    return len;
}

static inline void *
st_sse_main(void *arg)
{
    st_sse_t *c = (st_sse_t *)arg;
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: text/event-stream");
    if (c->last_event_id[0]) {
        char line[64];
        snprintf(line, sizeof line, "Last-Event-ID: %s", c->last_event_id);
        headers = curl_slist_append(headers, line);
    }
    for (int i = 0; i < ST_HEADERS_MAX; i++) {
        if (c->headers[i][0]) {
            headers = curl_slist_append(headers, c->headers[i]);
        }
    }
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, c->url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                     c->proto == HT_HTTP1 ? CURL_HTTP_VERSION_1_1
                                          : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, st_sse_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
    CURLM *multi = curl_multi_init();
    curl_multi_add_handle(multi, easy);
    int running = 1;
    c->rc = CURLE_OK;
    while (running && !atomic_load(&c->stop)) {
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                c->rc = msg->data.result;
            }
        }
        if (running) {
            curl_multi_poll(multi, NULL, 0, 20, NULL);
        }
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &c->version);
    char *type = NULL;
    curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &type);
    snprintf(c->content_type, sizeof c->content_type, "%s", type ? type : "");
    curl_multi_remove_handle(multi, easy);
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    atomic_store(&c->done, true);
    return NULL;
}

//  Starts a client on url; last_event_id < 0: none; header: one extra
//  "Name: value" line, or NULL.
static inline st_sse_t *
st_sse_start(const char *url, int proto, int64_t last_event_id, const char *header)
{
    st_sse_t *c = calloc(1, sizeof *c);
    snprintf(c->url, sizeof c->url, "%s", url);
    if (last_event_id >= 0) {
        snprintf(c->last_event_id, sizeof c->last_event_id, "%lld", (long long)last_event_id);
    }
    if (header) {
        snprintf(c->headers[0], sizeof c->headers[0], "%s", header);
    }
    c->proto = proto;
    pthread_mutex_init(&c->lock, NULL);
    assert_int_equal(pthread_create(&c->thread, NULL, st_sse_main, c), 0);
    return c;
}

static inline int
st_sse_count(st_sse_t *c)
{
    pthread_mutex_lock(&c->lock);
    int n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

//  Waits until the stream says ": ok" (subscribed).
static inline void
st_sse_await_ok(st_sse_t *c, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (ht_now_ms() < deadline) {
        pthread_mutex_lock(&c->lock);
        bool ok = c->ok;
        pthread_mutex_unlock(&c->lock);
        if (ok) {
            return;
        }
        if (atomic_load(&c->done)) {
            fail_msg("the stream ended before \": ok\" (status %ld, curl %d)", c->status, c->rc);
        }
        zclock_sleep(5);
    }
    fail_msg("no \": ok\" within %d ms", timeout_ms);
}

//  Waits until n events (with ids) arrived, or timeout_ms.
static inline int
st_sse_await(st_sse_t *c, int n, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    int have = st_sse_count(c);
    while (have < n && ht_now_ms() < deadline && !atomic_load(&c->done)) {
        zclock_sleep(5);
        have = st_sse_count(c);
    }
    return have;
}

static inline void
st_sse_stop(st_sse_t **c_p)
{
    st_sse_t *c = *c_p;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    if (c->error[0]) {
        fail_msg("SSE: %s", c->error);
    }
    json_decref(c->last_data);
    free(c->pending);
    pthread_mutex_destroy(&c->lock);
    free(c);
    *c_p = NULL;
}

//  --- a tiny WebSocket client ----------------------------------------------------------

typedef struct {
    int fd;               //  the socket
    uint8_t buf[1 << 16]; //  bytes read and not consumed
    size_t len;           //  ...
    char head[4096];      //  the handshake answer's status line and headers
} st_ws_t;

//  Reads more into ws->buf within timeout_ms. False on timeout or close.
static inline bool
st_ws_fill(st_ws_t *ws, int timeout_ms)
{
    struct pollfd p = {ws->fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) {
        return false;
    }
    ssize_t n = recv(ws->fd, ws->buf + ws->len, sizeof ws->buf - ws->len, 0);
    if (n <= 0) {
        return false;
    }
    ws->len += (size_t)n;
    return true;
}

//  A TCP connection to 127.0.0.1:port; rcvbuf > 0 sets SO_RCVBUF first (a
//  small window: the kernel then takes little of what the server sends).
static inline int
st_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

//  Connects to port and upgrades on path (NULL: "/ws"), with extra header
//  lines (each ending in \r\n; NULL: none). Returns NULL if the handshake
//  failed (the status line is copied into status, the answer's head into
//  head if not NULL).
static inline st_ws_t *
st_ws_open_at(int port, int rcvbuf, const char *path, const char *extra, char *status, size_t size,
              char *head, size_t head_size)
{
    st_ws_t *ws = calloc(1, sizeof *ws);
    ws->fd = st_connect(port, rcvbuf);
    char req[4096];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
             path ? path : "/ws", extra ? extra : "");
    assert_true(ht_send_all(ws->fd, req, strlen(req), 2000));
    char *end = NULL;
    while (!(end = memmem(ws->buf, ws->len, "\r\n\r\n", 4))) {
        if (!st_ws_fill(ws, 5000)) {
            fail_msg("no handshake answer");
        }
    }
    size_t n = (size_t)(end + 4 - (char *)ws->buf);
    char *eol = memchr(ws->buf, '\r', n);
    snprintf(status, size, "%.*s", (int)(eol - (char *)ws->buf), (char *)ws->buf);
    snprintf(ws->head, sizeof ws->head, "%.*s", (int)n, (char *)ws->buf);
    if (head) {
        snprintf(head, head_size, "%s", ws->head);
    }
    bool ok =
        strstr(status, " 101 ") && memmem(ws->buf, n, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28) != NULL;
    memmove(ws->buf, ws->buf + n, ws->len - n);
    ws->len -= n;
    if (!ok) {
        close(ws->fd);
        free(ws);
        return NULL;
    }
    return ws;
}

//  Sends one masked frame.
static inline void
st_ws_send(st_ws_t *ws, uint8_t opcode, const void *data, size_t len)
{
    uint8_t frame[16 + 4096];
    assert_true(len <= 4096);
    size_t n = 0;
    frame[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        frame[n++] = (uint8_t)(0x80 | len);
    } else {
        frame[n++] = 0x80 | 126;
        frame[n++] = (uint8_t)(len >> 8);
        frame[n++] = (uint8_t)len;
    }
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(frame + n, mask, 4);
    n += 4;
    for (size_t i = 0; i < len; i++) {
        frame[n + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
    }
    assert_true(ht_send_all(ws->fd, frame, n + len, 2000));
}

static inline void
st_ws_send_text(st_ws_t *ws, const char *text)
{
    st_ws_send(ws, 0x1, text, strlen(text));
}

//  Reads one frame: its opcode and payload (NUL-terminated, caller frees).
//  Returns -1 on timeout or close.
static inline int
st_ws_recv(st_ws_t *ws, char **payload, size_t *len, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (true) {
        if (ws->len >= 2) {
            size_t need = 2;
            uint64_t plen = ws->buf[1] & 0x7f;
            if (plen == 126) {
                need = 4;
                if (ws->len >= need) {
                    plen = (uint64_t)ws->buf[2] << 8 | ws->buf[3];
                }
            } else if (plen == 127) {
                need = 10;
                if (ws->len >= need) {
                    plen = 0;
                    for (int i = 0; i < 8; i++) {
                        plen = plen << 8 | ws->buf[2 + i];
                    }
                }
            }
            assert_false(ws->buf[1] & 0x80); //  the server does not mask
            if (ws->len >= need && ws->len >= need + plen) {
                int opcode = ws->buf[0] & 0x0f;
                *payload = malloc(plen + 1);
                memcpy(*payload, ws->buf + need, plen);
                (*payload)[plen] = '\0';
                *len = plen;
                memmove(ws->buf, ws->buf + need + plen, ws->len - need - plen);
                ws->len -= need + plen;
                return opcode;
            }
        }
        int left = (int)(deadline - ht_now_ms());
        if (left <= 0 || !st_ws_fill(ws, left)) {
            return -1;
        }
    }
}

//  The next text message as JSON (pings answered and skipped); NULL on
//  timeout.
static inline json_t *
st_ws_json(st_ws_t *ws, int timeout_ms)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    while (ht_now_ms() < deadline) {
        char *payload = NULL;
        size_t len = 0;
        int opcode = st_ws_recv(ws, &payload, &len, (int)(deadline - ht_now_ms()));
        if (opcode < 0) {
            return NULL;
        }
        if (opcode == 0x9) {
            st_ws_send(ws, 0xa, payload, len);
            free(payload);
            continue;
        }
        assert_int_equal(opcode, 0x1);
        json_t *doc = json_loads(payload, 0, NULL);
        if (!doc) {
            fail_msg("not JSON: %s", payload);
        }
        free(payload);
        return doc;
    }
    return NULL;
}

static inline void
st_ws_close(st_ws_t **ws_p)
{
    close((*ws_p)->fd);
    free(*ws_p);
    *ws_p = NULL;
}

#endif
