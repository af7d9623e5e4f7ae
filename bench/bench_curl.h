/*  bench_curl.h: what the benchmarks that talk HTTP to a node share: a
    libcurl write callback that collects an answer, and the Authorization
    line of a login's answer. Header-only, like bench_stats.h. */
#ifndef CD_BENCH_CURL_H
#define CD_BENCH_CURL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  An answer being collected: NUL-terminated once anything arrived.
typedef struct {
    char *data; //  owned; NULL while empty
    size_t len;
} bench_buf_t;

//  CURLOPT_WRITEFUNCTION appending to the bench_buf_t in CURLOPT_WRITEDATA.
static inline size_t
bench_collect(char *data, size_t size, size_t n, void *arg)
{
    bench_buf_t *buf = (bench_buf_t *)arg;
    size_t add = size * n;
    buf->data = (char *)realloc(buf->data, buf->len + add + 1);
    memcpy(buf->data + buf->len, data, add);
    buf->len += add;
    buf->data[buf->len] = '\0';
    return add;
}

//  "Authorization: Bearer <access_token>" from the answer of POST
//  /api/v1/auth/login into out. False if the answer has no token.
static inline bool
bench_bearer(const char *login_answer, char *out, size_t size)
{
    json_t *answer = json_loads(login_answer ? login_answer : "", 0, NULL);
    const char *token = json_string_value(json_object_get(answer, "access_token"));
    bool ok = token && (size_t)snprintf(out, size, "Authorization: Bearer %s", token) < size;
    json_decref(answer);
    return ok;
}

#endif
