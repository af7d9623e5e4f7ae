/*  cd_testnode: see cd_testnode.h. */
#include "cd_testnode.h"

#include "cd_config.h"
#include "cd_db.h"
#include "cd_error.h"
#include "cd_testpg.h"

#include <czmq.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TN_TIMEOUT_MS 20000

//  Starts tn->node on tn->conninfo and tn->data_dir.
static int
s_boot(tn_node_t *tn, const char *const *extra_env)
{
    char *env[64];
    size_t n = 0;
    env[n++] = zsys_sprintf("CADRE_DATA_DIR=%s", tn->data_dir);
    env[n++] = zsys_sprintf("DATABASE_URL=%s", tn->conninfo);
    env[n++] = strdup("CADRE_HTTP_ADDR=127.0.0.1:0");
    env[n++] = strdup("CADRE_LOG_LEVEL=warn");
    bool password = false;
    for (const char *const *e = extra_env; e && *e && n < 61; e++) {
        env[n++] = strdup(*e);
        password = password || strncmp(*e, "CADRE_ADMIN_PASSWORD=", 21) == 0;
    }
    if (!password) {
        env[n++] = strdup("CADRE_ADMIN_PASSWORD=" TN_ADMIN_PASSWORD);
    }
    env[n] = NULL;
    char *argv[] = {"cadred", NULL};
    cd_config_t *config = NULL;
    char *errmsg = NULL;
    int rc = cd_config_load(1, argv, env, &config, &errmsg);
    for (size_t i = 0; i < n; i++) {
        free(env[i]);
    }
    if (rc == 0) {
        rc = cd_node_start(&config, zclock_usecs(), &tn->node, &errmsg);
    }
    if (rc != 0) {
        fprintf(stderr, "tn_start: %s\n", errmsg ? errmsg : cd_strerror(rc));
        free(errmsg);
        cd_config_destroy(&config);
        return rc;
    }
    snprintf(tn->base, sizeof tn->base, "http://%s", cd_node_http_addr(tn->node));
    if (!tn->admin_token && !password) {
        //  Keys live in the database: a token stays good across restarts.
        tn->admin_token = tn_login(tn, "admin", TN_ADMIN_PASSWORD, NULL);
        if (!tn->admin_token) {
            fprintf(stderr, "tn_start: cannot sign in as admin\n");
            return CD_EINVAL;
        }
    }
    return 0;
}

tn_node_t *
tn_start(const char *const *extra_env)
{
    tn_node_t *tn = (tn_node_t *)zmalloc(sizeof *tn);
    if (cd_testpg_fresh_db(&tn->conninfo) != 0) {
        free(tn);
        return NULL;
    }
    tn->data_dir = cd_testpg_scratch_dir();
    if (s_boot(tn, extra_env) != 0) {
        cd_node_stop(&tn->node);
        free(tn->conninfo);
        free(tn->data_dir);
        free(tn);
        return NULL;
    }
    return tn;
}

int
tn_restart(tn_node_t *tn, const char *const *extra_env)
{
    cd_node_stop(&tn->node);
    return s_boot(tn, extra_env);
}

void
tn_stop(tn_node_t **node_p)
{
    tn_node_t *tn = *node_p;
    if (!tn) {
        return;
    }
    *node_p = NULL;
    cd_node_stop(&tn->node);
    free(tn->admin_token);
    cd_testpg_rmtree(tn->data_dir);
    free(tn->data_dir);
    free(tn->conninfo);
    free(tn);
}

typedef struct {
    char *data;
    size_t len;
} s_buf_t;

static size_t
s_collect(char *data, size_t size, size_t n, void *arg)
{
    s_buf_t *buf = (s_buf_t *)arg;
    size_t add = size * n;
    buf->data = (char *)realloc(buf->data, buf->len + add + 1);
    memcpy(buf->data + buf->len, data, add);
    buf->len += add;
    buf->data[buf->len] = '\0';
    return add;
}

//  Sends with cred unless the headers bring credentials of their own.
static long
s_request(const tn_node_t *node, const char *source, const char *cred, const char *method,
          const char *path, const char *body, const char *const *headers, tn_resp_t *out)
{
    memset(out, 0, sizeof *out);
    char url[1024];
    snprintf(url, sizeof url, "%s%s", node->base, path);
    struct curl_slist *list = NULL;
    bool typed = false, own = false;
    for (const char *const *h = headers; h && *h; h++) {
        list = curl_slist_append(list, *h);
        typed = typed || strncasecmp(*h, "content-type:", 13) == 0;
        own = own || strncasecmp(*h, "authorization:", 14) == 0 ||
              strncasecmp(*h, "x-api-key:", 10) == 0;
    }
    if (cred && !own) {
        char line[2048];
        snprintf(line, sizeof line,
                 strncmp(cred, "cdk_", 4) == 0 ? "X-API-Key: %s" : "Authorization: Bearer %s",
                 cred);
        list = curl_slist_append(list, line);
    }
    if (body && !typed) {
        list = curl_slist_append(list, "Content-Type: application/json");
    }
    s_buf_t hbuf = {NULL, 0}, bbuf = {NULL, 0};
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    }
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)TN_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    if (source) {
        char iface[80];
        snprintf(iface, sizeof iface, "host!%s", source);
        curl_easy_setopt(curl, CURLOPT_INTERFACE, iface);
    }
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s_collect);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &hbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &bbuf);
    if (curl_easy_perform(curl) == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
        long version = 0;
        curl_easy_getinfo(curl, CURLINFO_HTTP_VERSION, &version);
        out->version = version == CURL_HTTP_VERSION_2_0   ? 2
                       : version == CURL_HTTP_VERSION_1_1 ? 1
                                                          : 0;
    }
    curl_easy_cleanup(curl);
    curl_slist_free_all(list);
    out->headers = hbuf.data ? hbuf.data : strdup("");
    out->body = bbuf.data ? bbuf.data : strdup("");
    out->body_len = bbuf.len;
    out->json = out->body_len ? json_loadb(out->body, out->body_len, 0, NULL) : NULL;
    return out->status;
}

long
tn_request(const tn_node_t *node, const char *method, const char *path, const char *body,
           const char *const *headers, tn_resp_t *out)
{
    return s_request(node, NULL, node->admin_token, method, path, body, headers, out);
}

long
tn_request_as(const tn_node_t *node, const char *cred, const char *method, const char *path,
              const char *body, const char *const *headers, tn_resp_t *out)
{
    return s_request(node, NULL, cred, method, path, body, headers, out);
}

long
tn_call(const tn_node_t *node, tn_resp_t *out, const char *method, const char *path,
        const char *body)
{
    return tn_request(node, method, path, body, NULL, out);
}

long
tn_call_as(const tn_node_t *node, const char *cred, tn_resp_t *out, const char *method,
           const char *path, const char *body)
{
    return s_request(node, NULL, cred, method, path, body, NULL, out);
}

long
tn_request_from(const tn_node_t *node, const char *source, const char *cred, const char *method,
                const char *path, const char *body, const char *const *headers, tn_resp_t *out)
{
    return s_request(node, source, cred, method, path, body, headers, out);
}

char *
tn_login(const tn_node_t *node, const char *username, const char *password, char **refresh)
{
    json_t *req = json_pack("{s:s, s:s}", "username", username, "password", password);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    tn_resp_t r;
    long status = s_request(node, NULL, NULL, "POST", "/api/v1/auth/login", body, NULL, &r);
    free(body);
    const char *access = json_string_value(json_object_get(r.json, "access_token"));
    const char *next = json_string_value(json_object_get(r.json, "refresh_token"));
    char *token = NULL;
    if (status == 200 && access && next) {
        token = strdup(access);
        if (refresh) {
            *refresh = strdup(next);
        }
    } else {
        fprintf(stderr, "tn_login %s: %ld %s\n", username, status, r.body);
    }
    tn_resp_free(&r);
    return token;
}

int64_t
tn_user(const tn_node_t *node, const char *username, const char *role, char **token)
{
    json_t *req = json_pack("{s:s, s:s, s:s}", "username", username, "password", TN_USER_PASSWORD,
                            "role", role);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    tn_resp_t r;
    long status = tn_request(node, "POST", "/api/v1/users", body, NULL, &r);
    free(body);
    int64_t id = (int64_t)json_integer_value(json_object_get(r.json, "id"));
    if (status != 201 || id <= 0) {
        fprintf(stderr, "tn_user %s: %ld %s\n", username, status, r.body);
        tn_resp_free(&r);
        return 0;
    }
    tn_resp_free(&r);
    *token = tn_login(node, username, TN_USER_PASSWORD, NULL);
    return *token ? id : 0;
}

void
tn_resp_free(tn_resp_t *resp)
{
    free(resp->headers);
    free(resp->body);
    json_decref(resp->json);
    memset(resp, 0, sizeof *resp);
}

const char *
tn_header(const tn_resp_t *resp, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen(name);
    for (const char *line = resp->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (*v == ' ') {
                v++;
            }
            snprintf(buf, size, "%.*s", (int)(line + len - v), v);
            return buf;
        }
        line = end ? end + 2 : NULL;
    }
    return NULL;
}

const char *
tn_error_code(const tn_resp_t *resp)
{
    const char *code =
        json_string_value(json_object_get(json_object_get(resp->json, "error"), "code"));
    return code ? code : "";
}

char *
tn_sql(const tn_node_t *node, const char *sql)
{
    cd_db_t *db = NULL;
    if (cd_db_connect(node->conninfo, &db, NULL) != 0) {
        return NULL;
    }
    char *out = NULL;
    cd_db_query_text(db, sql, 0, NULL, &out);
    cd_db_close(&db);
    return out;
}
