/*  cd_http_api: the resource routes' one handler. It turns a request into
    an envelope for an api actor (actors/cd_api.h has the wire format) and
    answers with the actor's reply as it comes: status, body, content type,
    headers. The route's `arg` is the operation name.

    Requests are spread over the api actors (api/0 .. api/N-1) round-robin,
    except those of CD_ROUTE_MERGED routes: they all go to api/0, which
    merges concurrent ones into one write (task creates: one statement of
    64 creates costs PostgreSQL about half as much per task as four of 16,
    and persist commits one transaction at a time). Each actor has its own database connection for
   reads, and a write is parked in its actor until persist acks the commit, so a slow write never
   holds other requests.

    Interface: cd_http_route_api, cd__http_api_call, cd__http_api_call_bare,
    cd__http_api_reply_json. */
#include "http_internal.h"

#include "cd_routes.h"

#include "cd_error.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define S_MAX_QUERY 24 //  query parameters passed on (more is 400)

static int
s_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

//  Decodes %XX and '+' of a query component into out (at most size-1
//  bytes). Returns the length, or -1 on a malformed escape, a NUL byte, or
//  an overflow.
static int
s_decode(const char *src, size_t len, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len) {
                return -1;
            }
            int hi = s_hex(src[i + 1]);
            int lo = s_hex(src[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0' || n + 1 >= size) {
            return -1;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return (int)n;
}

//  Packs the query string as a map of decoded names to values (the first
//  of repeated names wins). Returns false after answering 400.
static bool
s_pack_query(cd_http_rctx_t *rctx, cd_pack_t *pack)
{
    h2o_req_t *req = rctx->req;
    const char *q = NULL;
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
        q = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    struct {
        char *name, *value;
    } kv[S_MAX_QUERY];
    size_t n = 0;
    size_t i = 0;
    while (q && i < qlen) {
        size_t end = i;
        while (end < qlen && q[end] != '&') {
            end++;
        }
        if (end > i) {
            const char *eq = memchr(q + i, '=', end - i);
            size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
            const char *v = eq ? eq + 1 : q + end;
            size_t vlen = eq ? (size_t)(q + end - v) : 0;
            char *name = (char *)h2o_mem_alloc_pool(&req->pool, nlen + 1);
            char *value = (char *)h2o_mem_alloc_pool(&req->pool, vlen + 1);
            if (s_decode(q + i, nlen, name, nlen + 1) < 0 ||
                s_decode(v, vlen, value, vlen + 1) < 0) {
                cd__http_send_error(rctx, 400, "validation_failed", "the query string is malformed",
                                    json_pack("{s:s}", "field", "query"));
                return false;
            }
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++) {
                seen = strcmp(kv[k].name, name) == 0;
            }
            if (!seen) {
                if (n == S_MAX_QUERY) {
                    cd__http_send_error(rctx, 400, "validation_failed", "too many query parameters",
                                        json_pack("{s:s}", "field", "query"));
                    return false;
                }
                kv[n].name = name;
                kv[n].value = value;
                n++;
            }
        }
        i = end + 1;
    }
    cd_pack_map(pack, (uint32_t)n);
    for (size_t k = 0; k < n; k++) {
        cd_pack_cstr(pack, kv[k].name);
        cd_pack_cstr(pack, kv[k].value);
    }
    return true;
}

//  The peer's address as text ("" if unknown).
static void
s_peer_ip(cd_http_rctx_t *rctx, char *buf, size_t size)
{
    struct sockaddr_storage sa;
    buf[0] = '\0';
    h2o_conn_t *conn = rctx->req->conn;
    if (!conn->callbacks->get_peername) {
        return;
    }
    socklen_t len = conn->callbacks->get_peername(conn, (struct sockaddr *)&sa);
    if (len == 0) {
        return;
    }
    if (sa.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, buf, (socklen_t)size);
    } else if (sa.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, buf, (socklen_t)size);
    }
}

typedef struct {
    const char *to; //  the api actor called
} s_api_call_t;

static int
s_header_entry(cd_bin_t key, cd_bin_t value, void *arg)
{
    cd_http_rctx_t *rctx = (cd_http_rctx_t *)arg;
    cd_str_t k, v;
    if (cd_msgpack_read_str(key, &k) != 0 || cd_msgpack_read_str(value, &v) != 0) {
        return CD_EPROTO;
    }
    char *name = h2o_mem_alloc_pool(&rctx->req->pool, k.len + 1);
    memcpy(name, k.ptr, k.len);
    name[k.len] = '\0';
    char *val = h2o_mem_alloc_pool(&rctx->req->pool, v.len + 1);
    memcpy(val, v.ptr, v.len);
    val[v.len] = '\0';
    cd__http_add_header(rctx, name, val);
    return 0;
}

static void
s_api_reply(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    s_api_call_t *call = (s_api_call_t *)arg;
    if (rc == CD_ETIMEDOUT) {
        cd__http_send_error(rctx, 504, "timeout", "the request was not answered in time", NULL);
        return;
    }
    if (rc != 0) {
        cd__http_call_failed(rctx, rc, call->to);
        return;
    }
    cd_bin_t field;
    int64_t status = 0;
    cd_str_t body = {"", 0};
    cd_bin_t bytes = {NULL, 0};
    if (reply->kind != CD_KIND_RESULT || reply->payload_type != CD_PAYLOAD_MAP ||
        cd_msgpack_map_find(reply->payload, "s", &field) != 0 ||
        cd_msgpack_read_int(field, &status) != 0 || status < 100 || status > 599 ||
        cd_msgpack_map_find(reply->payload, "b", &field) != 0) {
        cd__http_send_error(rctx, 502, "bad_reply", "the API actor's answer is malformed", NULL);
        return;
    }
    bool text = cd_msgpack_read_str(field, &body) == 0;
    if (!text) {
        //  bin: raw bytes, after its 1..5 byte header.
        const uint8_t *p = field.ptr;
        size_t hdr = p[0] == 0xc4 ? 2 : p[0] == 0xc5 ? 3 : p[0] == 0xc6 ? 5 : 0;
        if (hdr == 0 || field.len < hdr) {
            cd__http_send_error(rctx, 502, "bad_reply", "the API actor's answer is malformed",
                                NULL);
            return;
        }
        bytes.ptr = p + hdr;
        bytes.len = field.len - (uint32_t)hdr;
    }
    char *content_type = NULL;
    cd_str_t ct;
    if (cd_msgpack_map_find(reply->payload, "ct", &field) == 0 &&
        cd_msgpack_read_str(field, &ct) == 0) {
        content_type = h2o_mem_alloc_pool(&rctx->req->pool, ct.len + 1);
        memcpy(content_type, ct.ptr, ct.len);
        content_type[ct.len] = '\0';
    }
    if (cd_msgpack_map_find(reply->payload, "h", &field) == 0) {
        cd_msgpack_map_each(field, s_header_entry, rctx);
    }
    if (status == 204) {
        cd__http_send(rctx, 204, NULL, "", 0, true);
    } else if (text) {
        cd__http_send(rctx, (int)status,
                      content_type ? content_type : "application/json; charset=utf-8", body.ptr,
                      body.len, false);
    } else {
        cd__http_send(rctx, (int)status, content_type ? content_type : "application/octet-stream",
                      (const char *)bytes.ptr, bytes.len, false);
    }
}

//  Builds the request payload in http->pack. Returns false after answering
//  (a malformed path or query).
static bool
s_pack_request(cd_http_rctx_t *rctx)
{
    cd_http_t *http = rctx->http;
    h2o_req_t *req = rctx->req;
    cd_pack_t *pack = http->pack;
    cd_pack_reset(pack);
    bool post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    size_t ik_len = 0;
    const char *ik = post ? cd__http_header(rctx, "idempotency-key", &ik_len) : NULL;
    bool fam = rctx->identity.fam[0] != '\0';
    cd_pack_map(pack, 8 + (ik ? 1 : 0) + (fam ? 1 : 0));
    cd_pack_cstr(pack, "m");
    cd_pack_str(pack, req->method.base, req->method.len);
    cd_pack_cstr(pack, "p");
    cd_pack_map(pack, (uint32_t)rctx->match.n_params);
    for (size_t i = 0; i < rctx->match.n_params; i++) {
        const cd_route_param_t *param = &rctx->match.params[i];
        cd_pack_str(pack, param->name, param->name_len);
        //  Path segments arrive percent-encoded.
        char *value = h2o_mem_alloc_pool(&req->pool, param->value_len + 1);
        if (s_decode(param->value, param->value_len, value, param->value_len + 1) < 0) {
            cd__http_send_error(rctx, 404, "not_found", "no such object",
                                json_pack("{s:s}", "reason", "malformed path"));
            return false;
        }
        cd_pack_cstr(pack, value);
    }
    cd_pack_cstr(pack, "q");
    if (!s_pack_query(rctx, pack)) {
        return false;
    }
    cd_pack_cstr(pack, "b");
    if (rctx->body && req->entity.base && req->entity.len > 0) {
        cd_pack_str(pack, req->entity.base, req->entity.len);
    } else if (rctx->body) {
        cd_pack_cstr(pack, "{}");
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "u");
    cd_pack_int(pack, rctx->identity.user_id);
    cd_pack_cstr(pack, "a");
    cd_pack_bool(pack, rctx->identity.admin);
    char ip[64];
    s_peer_ip(rctx, ip, sizeof ip);
    cd_pack_cstr(pack, "ip");
    cd_pack_cstr(pack, ip);
    cd_pack_cstr(pack, "path");
    cd_pack_str(pack, req->path_normalized.base, req->path_normalized.len);
    if (fam) {
        cd_pack_cstr(pack, "f");
        cd_pack_cstr(pack, rctx->identity.fam);
    }
    if (ik) {
        cd_pack_cstr(pack, "ik");
        cd_pack_str(pack, ik, ik_len);
    }
    return true;
}

int
cd__http_api_call(cd_http_rctx_t *rctx, const char *op, cd__http_reply_fn *fn, void *arg,
                  const char **to_p)
{
    cd_http_t *http = rctx->http;
    if (http->opts.api_actors <= 0) {
        return CD_ENOTFOUND;
    }
    char *to = h2o_mem_alloc_pool(&rctx->req->pool, 32);
    unsigned k = 0;
    if (!rctx->match.route || !(rctx->match.route->flags & CD_ROUTE_MERGED)) {
        k = http->api_next++ % (unsigned)http->opts.api_actors;
    }
    snprintf(to, 32, "%s/%u", "api", k);
    *to_p = to;
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_TASK, to);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(http->pack);
    int timeout_ms = http->opts.request_timeout_ms;
    if (rctx->match.route && (rctx->match.route->flags & CD_ROUTE_LONG_POLL)) {
        timeout_ms += CD_ROUTE_LONG_POLL_MS;
    }
    return cd__http_call(rctx, &env, timeout_ms, fn, arg);
}

int
cd_http_route_api(cd_http_rctx_t *rctx)
{
    cd_http_t *http = rctx->http;
    const char *op = (const char *)rctx->match.route->arg;
    if (!op || http->opts.api_actors <= 0) {
        cd__http_send_error(rctx, 503, "not_ready", "the API actors are not running", NULL);
        return 0;
    }
    if (!s_pack_request(rctx)) {
        return 0;
    }
    s_api_call_t *call = (s_api_call_t *)h2o_mem_alloc_pool(&rctx->req->pool, sizeof *call);
    int rc = cd__http_api_call(rctx, op, s_api_reply, call, &call->to);
    if (rc != 0) {
        cd__http_call_failed(rctx, rc, call->to);
    }
    return 0;
}

int
cd__http_api_call_bare(cd_http_rctx_t *rctx, const char *op, cd__http_reply_fn *fn, void *arg)
{
    cd_pack_t *pack = rctx->http->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "m");
    cd_pack_cstr(pack, "GET");
    const char *to = NULL;
    return cd__http_api_call(rctx, op, fn, arg, &to);
}

int
cd__http_api_reply_json(const cd_envelope_t *reply, int *status, json_t **body)
{
    cd_bin_t field;
    int64_t s = 0;
    cd_str_t text;
    *body = NULL;
    if (reply->kind != CD_KIND_RESULT || reply->payload_type != CD_PAYLOAD_MAP ||
        cd_msgpack_map_find(reply->payload, "s", &field) != 0 ||
        cd_msgpack_read_int(field, &s) != 0 ||
        cd_msgpack_map_find(reply->payload, "b", &field) != 0 ||
        cd_msgpack_read_str(field, &text) != 0) {
        return CD_EPROTO;
    }
    *status = (int)s;
    *body = json_loadb(text.ptr, text.len, 0, NULL);
    return *body ? 0 : CD_EPROTO;
}
