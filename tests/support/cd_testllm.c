/*  cd_testllm: the OpenAI-compatible test server (see cd_testllm.h).

    An accept thread polls the listening socket (and a stop flag every
    50 ms) and starts a detached thread per connection; stop waits for the
    live count to reach zero. */
#include "cd_testllm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct cd_testllm {
    int listener;         //  listening socket
    char base_url[64];    //  http://127.0.0.1:<port>/v1
    pthread_t acceptor;   //  the accept thread
    atomic_bool stopping; //  stop asked
    atomic_int live;      //  connection threads running
    atomic_int requests;  //  chat completions received
    atomic_int hangups;   //  slow requests the client abandoned
    pthread_mutex_t lock; //  guards the two below
    char *last_body;      //  the last request's body
    char *last_auth;      //  its Authorization value
};

typedef struct {
    cd_testllm_t *server; //  the server
    int fd;               //  the connection
} s_conn_t;

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool
s_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static void
s_respond(int fd, int status, const char *reason, const char *type, const char *extra,
          const char *body)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, reason, type, strlen(body), extra ? extra : "");
    s_write_all(fd, head, (size_t)n);
    s_write_all(fd, body, strlen(body));
}

static void
s_stream_head(int fd)
{
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    s_write_all(fd, head, strlen(head));
}

//  One SSE event with a delta token (JSON-escaped by jansson).
static void
s_stream_token(int fd, const char *token)
{
    json_t *chunk = json_pack("{s:s, s:s, s:[{s:i, s:{s:s}, s:n}]}", "id", "c1", "object",
                              "chat.completion.chunk", "choices", "index", 0, "delta", "content",
                              token, "finish_reason");
    char *text = json_dumps(chunk, JSON_COMPACT);
    json_decref(chunk);
    s_write_all(fd, "data: ", 6);
    s_write_all(fd, text, strlen(text));
    s_write_all(fd, "\n\n", 2);
    free(text);
    s_sleep_ms(5);
}

static const char *const s_usage_chunk =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n";

static void
s_chat(cd_testllm_t *self, int fd, const char *body)
{
    json_t *req = json_loads(body, 0, NULL);
    const char *model = json_string_value(json_object_get(req, "model"));
    bool stream = json_is_true(json_object_get(req, "stream"));
    const char *prompt = json_string_value(
        json_object_get(json_array_get(json_object_get(req, "messages"), 0), "content"));
    model = model ? model : "";
    if (strcmp(model, "error-500") == 0) {
        s_respond(fd, 500, "Internal Server Error", "application/json", NULL,
                  "{\"error\":{\"message\":\"upstream exploded\"}}");
    } else if (strcmp(model, "error-400") == 0) {
        s_respond(fd, 400, "Bad Request", "application/json", NULL,
                  "{\"error\":{\"message\":\"bad model\",\"type\":\"invalid_request_error\"}}");
    } else if (strcmp(model, "rate-429") == 0) {
        s_respond(fd, 429, "Too Many Requests", "application/json", "Retry-After: 2\r\n",
                  "{\"error\":{\"message\":\"slow down\"}}");
    } else if (strcmp(model, "garbage") == 0) {
        s_stream_head(fd);
        s_write_all(fd, "data: {not json\n\n", 17);
    } else if (strcmp(model, "garbage-json") == 0) {
        s_respond(fd, 200, "OK", "application/json", NULL, "<html>");
    } else if (strcmp(model, "stream-error") == 0) {
        s_stream_head(fd);
        s_stream_token(fd, "Hel");
        const char *event = "data: {\"error\":{\"message\":\"overloaded\"}}\n\n";
        s_write_all(fd, event, strlen(event));
    } else if (strcmp(model, "slow") == 0) {
        s_stream_head(fd);
        s_write_all(fd, ": waiting\n\n", 11);
        for (int i = 0; i < 200 && !atomic_load(&self->stopping); i++) {
            struct pollfd p = {fd, POLLIN, 0};
            char byte;
            if (poll(&p, 1, 50) > 0 && recv(fd, &byte, 1, MSG_DONTWAIT) <= 0) {
                atomic_fetch_add(&self->hangups, 1);
                break;
            }
        }
    } else if (!stream) {
        json_t *answer = json_pack(
            "{s:s, s:s, s:s, s:[{s:i, s:{s:s, s:s}, s:s}], s:{s:i, s:i, s:i}}", "id", "c1",
            "object", "chat.completion", "model", model, "choices", "index", 0, "message", "role",
            "assistant", "content", strcmp(model, "echo") == 0 && prompt ? prompt : "Hello world",
            "finish_reason", "stop", "usage", "prompt_tokens", 12, "completion_tokens", 3,
            "total_tokens", 15);
        char *text = json_dumps(answer, JSON_COMPACT);
        json_decref(answer);
        s_respond(fd, 200, "OK", "application/json", NULL, text);
        free(text);
    } else {
        s_stream_head(fd);
        s_write_all(fd, ": keep-alive\n\n", 14);
        if (strcmp(model, "echo") == 0) {
            s_stream_token(fd, prompt ? prompt : "");
        } else {
            s_stream_token(fd, "Hel");
            s_stream_token(fd, "lo");
            s_stream_token(fd, " world");
        }
        const char *finish = "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},"
                             "\"finish_reason\":\"stop\"}]}\r\n\r\n";
        s_write_all(fd, finish, strlen(finish));
        s_write_all(fd, s_usage_chunk, strlen(s_usage_chunk));
        if (strcmp(model, "no-done") != 0) {
            s_write_all(fd, "data: [DONE]\n\n", 14);
        }
    }
    json_decref(req);
}

//  Reads one request; returns its body (caller frees) or NULL.
static char *
s_read_request(cd_testllm_t *self, int fd, char *line, size_t line_size, char **auth)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    char *end = NULL;
    while (!end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (len == cap || poll(&p, 1, 5000) <= 0) {
            free(buf);
            return NULL;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            free(buf);
            return NULL;
        }
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - buf) + 4;
    const char *eol = strstr(buf, "\r\n");
    snprintf(line, line_size, "%.*s", (int)(eol - buf), buf);
    size_t body_len = 0;
    *auth = NULL;
    for (const char *h = eol + 2; h < end;) {
        const char *next = strstr(h, "\r\n");
        if (strncasecmp(h, "content-length:", 15) == 0) {
            body_len = strtoul(h + 15, NULL, 10);
        } else if (strncasecmp(h, "authorization:", 14) == 0) {
            const char *v = h + 14;
            while (*v == ' ') {
                v++;
            }
            *auth = strndup(v, (size_t)(next - v));
        }
        h = next + 2;
    }
    if (body_len > cap - head_len) {
        free(buf);
        free(*auth);
        *auth = NULL;
        return NULL;
    }
    while (len < head_len + body_len) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n = poll(&p, 1, 5000) > 0 ? recv(fd, buf + len, cap - len, 0) : -1;
        if (n <= 0) {
            free(buf);
            free(*auth);
            *auth = NULL;
            return NULL;
        }
        len += (size_t)n;
    }
    char *body = strndup(buf + head_len, body_len);
    free(buf);
    return body;
}

static void *
s_conn_main(void *arg)
{
    s_conn_t *conn = (s_conn_t *)arg;
    cd_testllm_t *self = conn->server;
    char line[256];
    char *auth = NULL;
    char *body = s_read_request(self, conn->fd, line, sizeof line, &auth);
    if (body) {
        if (strncmp(line, "POST ", 5) == 0 && strstr(line, "/v1/chat/completions ")) {
            atomic_fetch_add(&self->requests, 1);
            pthread_mutex_lock(&self->lock);
            free(self->last_body);
            free(self->last_auth);
            self->last_body = strdup(body);
            self->last_auth = auth;
            auth = NULL;
            pthread_mutex_unlock(&self->lock);
            s_chat(self, conn->fd, body);
        } else {
            s_respond(conn->fd, 404, "Not Found", "application/json", NULL, "{}");
        }
    }
    free(auth);
    free(body);
    shutdown(conn->fd, SHUT_WR);
    close(conn->fd);
    free(conn);
    atomic_fetch_sub(&self->live, 1);
    return NULL;
}

static void *
s_accept_main(void *arg)
{
    cd_testllm_t *self = (cd_testllm_t *)arg;
    while (!atomic_load(&self->stopping)) {
        struct pollfd p = {self->listener, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) {
            continue;
        }
        int fd = accept(self->listener, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        s_conn_t *conn = malloc(sizeof *conn);
        conn->server = self;
        conn->fd = fd;
        atomic_fetch_add(&self->live, 1);
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, s_conn_main, conn) != 0) {
            close(fd);
            free(conn);
            atomic_fetch_sub(&self->live, 1);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

cd_testllm_t *
cd_testllm_start(void)
{
    cd_testllm_t *self = calloc(1, sizeof *self);
    pthread_mutex_init(&self->lock, NULL);
    self->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t addr_len = sizeof addr;
    if (self->listener < 0 || bind(self->listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(self->listener, 64) != 0 ||
        getsockname(self->listener, (struct sockaddr *)&addr, &addr_len) != 0) {
        fprintf(stderr, "testllm: cannot listen: %s\n", strerror(errno));
        if (self->listener >= 0) {
            close(self->listener);
        }
        free(self);
        return NULL;
    }
    snprintf(self->base_url, sizeof self->base_url, "http://127.0.0.1:%d/v1",
             (int)ntohs(addr.sin_port));
    if (pthread_create(&self->acceptor, NULL, s_accept_main, self) != 0) {
        close(self->listener);
        free(self);
        return NULL;
    }
    return self;
}

void
cd_testllm_stop(cd_testllm_t **self_p)
{
    cd_testllm_t *self = self_p ? *self_p : NULL;
    if (!self) {
        return;
    }
    atomic_store(&self->stopping, true);
    pthread_join(self->acceptor, NULL);
    for (int i = 0; i < 500 && atomic_load(&self->live) > 0; i++) {
        s_sleep_ms(10);
    }
    close(self->listener);
    free(self->last_body);
    free(self->last_auth);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

const char *
cd_testllm_base_url(const cd_testllm_t *self)
{
    return self->base_url;
}

int
cd_testllm_requests(cd_testllm_t *self)
{
    return atomic_load(&self->requests);
}

static char *
s_copy_locked(cd_testllm_t *self, char *const *field)
{
    pthread_mutex_lock(&self->lock);
    char *copy = *field ? strdup(*field) : NULL;
    pthread_mutex_unlock(&self->lock);
    return copy;
}

char *
cd_testllm_last_body(cd_testllm_t *self)
{
    return s_copy_locked(self, &self->last_body);
}

char *
cd_testllm_last_auth(cd_testllm_t *self)
{
    return s_copy_locked(self, &self->last_auth);
}

int
cd_testllm_hangups(cd_testllm_t *self)
{
    return atomic_load(&self->hangups);
}
