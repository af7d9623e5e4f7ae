/*  cd_api: the api actor core (see cd_api.h and api_internal.h).

    One request in, one answer out. The core decodes the request into a
    cd_api_req_t (its own copies of every string: a parked request outlives
    the envelope), handles Idempotency-Key, finds the operation's handler
    and calls it. A handler that calls another actor parks the request in
    a table keyed by the call's envelope id; the answer (matched by
    parent_id) resumes it. A sweep every second answers requests parked
    longer than S_PARK_TIMEOUT_MS with a 504, so a lost answer never leaks a
    request (the HTTP side gives up earlier anyway).

    Interface: cd_api_ops, cd_api_stmts, cd_api_has_op, and the helpers of
    api_internal.h. */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_log.h"
#include "cd_mailer.h"
#include "cd_q_orch.h"
#include "cd_q_audit.h"
#include "cd_q_system.h"
#include "cd_q_usage.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_MAX_PARAMS 8 //  path parameters
#define S_MAX_QUERY 24 //  query parameters
#define S_PARK_TIMEOUT_MS 60000
#define S_SWEEP_MS 1000
#define S_DB_RETRY_MS 500  //  after a failed connect, wait before the next try
#define S_IDEM_TTL_S 86400 //  API.md: a repeat within 24 h is replayed

//  The modules, in the order their statements are registered.
static const cd_api_module_t *const s_modules[] = {
    &cd__api_catalog_module,  &cd__api_agents_module, &cd__api_node_module,
    &cd__api_projects_module, &cd__api_hitl_module,   &cd__api_schedules_module,
    &cd__api_system_module,   &cd__api_tasks_module,  &cd__api_vault_module,
    &cd__api_pull_module,     &cd__api_auth_module,
};
#define S_N_MODULES (sizeof s_modules / sizeof s_modules[0])

typedef struct s_api s_api_t;

typedef struct {
    char *name;
    char *value;
} s_kv_t;

struct cd_api_req {
    s_api_t *api;                       //  the actor's state
    char op[64];                        //  operation
    char method[8];                     //  HTTP method
    char reply_to[CD_ENV_MAX_NAME + 1]; //  where the answer goes
    uint8_t id[CD_ENV_UUID_SIZE];       //  the request envelope's id (answer's parent_id)
    uint8_t trace[CD_ENV_UUID_SIZE];    //  its trace id
    s_kv_t params[S_MAX_PARAMS];        //  path parameters
    size_t n_params;
    s_kv_t query[S_MAX_QUERY]; //  query parameters
    size_t n_query;
    char *body_text;   //  body JSON text, or NULL
    json_t *body;      //  parsed body, or NULL
    int64_t user_id;   //  caller
    bool admin;        //  caller's role
    char ip[64];       //  caller's address
    char fam[72];      //  caller's login (refresh family), "" if none
    char *path;        //  request path, or NULL
    int64_t audit_as;  //  the audit record's user, when not the caller (0: the caller)
    bool no_audit;     //  a replayed answer: nothing changed
    char *idem_key;    //  Idempotency-Key, or NULL
    bool idem_claimed; //  this request holds the key
    json_t *scratch;   //  handler state
    //  While parked:
    uint8_t call_id[CD_ENV_UUID_SIZE]; //  the call's envelope id (table key)
    cd_api_reply_fn *reply_fn;         //  continuation
    void *reply_arg;                   //  its argument
    cd_api_write_fn *write_fn;         //  for writes: the handler's continuation
    void *write_arg;                   //  its argument
    int64_t parked_us;                 //  when it was parked (monotonic)
};

struct s_api {
    cd_actor_t *self;
    cd_runtime_t kick_rt; //  the runtime with no send timeout, for kicks
    cd_mailer_t *kicker;  //  sends kicks without waiting; NULL until the first
    int64_t kicked_us;    //  last plain kick sent (monotonic)
    bool kick_pending;    //  a plain kick waits for its coalescing timer
    const cd_api_args_t *args;
    cd_db_t *db;         //  read connection, or NULL while down
    int64_t db_retry_us; //  no connect attempt before this
    zhashx_t *ops;       //  op name -> cd_api_fn *
    zhashx_t *parked;    //  call id -> cd_api_req_t *
    cd_pack_t *pack;     //  reused for answers and calls
    zhashx_t *states;    //  module state: key -> s_state_t *
};

//  A module's state in this actor (cd_api_state).
typedef struct {
    void *value;          //  the module's
    void (*fini)(void *); //  called with value when the actor stops, or NULL
} s_state_t;

//  --- the modules' statements ----------------------------------------------------

static cd_persist_stmt_t *s_stmts;
static size_t s_n_stmts;
static pthread_once_t s_stmts_once = PTHREAD_ONCE_INIT;

//  Write tables of other actors that write through persist (they have no
//  API module), registered with the modules' (the node gives persist this
//  one list).
typedef struct {
    const cd_q_write_t *writes;
    const size_t *n_writes;
} s_writes_t;

static const s_writes_t s_other_writes[] = {
    {cd_q_usage_writes, &cd_q_usage_n_writes}, //  the llm agents' usage ledger
    {cd_q_orch_writes, &cd_q_orch_n_writes},   //  the orchestrator's
    {cd_q_usage_writes, &cd_q_usage_n_writes},
    {cd_q_audit_writes, &cd_q_audit_n_writes},
};

//  Adds a table's statements, each name once.
static void
s_stmts_add(const cd_q_write_t *writes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const cd_q_write_t *w = &writes[i];
        bool seen = false;
        for (size_t j = 0; j < s_n_stmts && !seen; j++) {
            seen = streq(s_stmts[j].name, w->name);
        }
        if (!seen) {
            s_stmts[s_n_stmts++] = (cd_persist_stmt_t){w->name, w->sql, w->nparams};
        }
    }
}

static void
s_stmts_build(void)
{
    size_t n = 0;
    for (size_t m = 0; m < S_N_MODULES; m++) {
        n += s_modules[m]->n_writes ? *s_modules[m]->n_writes : 0;
    }
    for (size_t i = 0; i < sizeof s_other_writes / sizeof s_other_writes[0]; i++) {
        n += *s_other_writes[i].n_writes;
    }
    //  Lives as long as the process: the persist actor borrows it. Modules
    //  may share a family's table: each name once.
    s_stmts = (cd_persist_stmt_t *)zmalloc((n + 1) * sizeof *s_stmts);
    for (size_t m = 0; m < S_N_MODULES; m++) {
        if (s_modules[m]->n_writes) {
            s_stmts_add(s_modules[m]->writes, *s_modules[m]->n_writes);
        }
    }
    for (size_t i = 0; i < sizeof s_other_writes / sizeof s_other_writes[0]; i++) {
        s_stmts_add(s_other_writes[i].writes, *s_other_writes[i].n_writes);
    }
}

const cd_persist_stmt_t *
cd_api_stmts(size_t *n)
{
    pthread_once(&s_stmts_once, s_stmts_build);
    *n = s_n_stmts;
    return s_stmts;
}

bool
cd_api_has_op(const char *op)
{
    for (size_t m = 0; m < S_N_MODULES; m++) {
        for (size_t i = 0; i < s_modules[m]->n_ops; i++) {
            if (streq(s_modules[m]->ops[i].op, op)) {
                return true;
            }
        }
    }
    return false;
}

//  --- ids as hash keys -------------------------------------------------------------

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

//  --- requests -------------------------------------------------------------------

static void
s_req_destroy(cd_api_req_t **req_p)
{
    cd_api_req_t *req = *req_p;
    if (!req) {
        return;
    }
    for (size_t i = 0; i < req->n_params; i++) {
        free(req->params[i].name);
        free(req->params[i].value);
    }
    for (size_t i = 0; i < req->n_query; i++) {
        free(req->query[i].name);
        free(req->query[i].value);
    }
    free(req->body_text);
    json_decref(req->body);
    json_decref(req->scratch);
    free(req->idem_key);
    free(req->path);
    free(req);
    *req_p = NULL;
}

static char *
s_strdup_view(cd_str_t view)
{
    char *out = (char *)malloc(view.len + 1);
    memcpy(out, view.ptr ? view.ptr : "", view.len);
    out[view.len] = '\0';
    return out;
}

typedef struct {
    s_kv_t *kv;
    size_t *n;
    size_t max;
} s_kv_fill_t;

static int
s_kv_entry(cd_bin_t key, cd_bin_t value, void *arg)
{
    s_kv_fill_t *fill = (s_kv_fill_t *)arg;
    cd_str_t k, v;
    if (cd_msgpack_read_str(key, &k) != 0 || cd_msgpack_read_str(value, &v) != 0) {
        return CD_EPROTO;
    }
    if (*fill->n >= fill->max) {
        return CD_ETOOBIG;
    }
    fill->kv[*fill->n] = (s_kv_t){s_strdup_view(k), s_strdup_view(v)};
    (*fill->n)++;
    return 0;
}

//  Copies a string field of the payload into buf (truncating). Absent: "".
static void
s_field_str(cd_bin_t payload, const char *key, char *buf, size_t size)
{
    cd_bin_t value;
    cd_str_t str = {NULL, 0};
    buf[0] = '\0';
    if (cd_msgpack_map_find(payload, key, &value) == 0 && cd_msgpack_read_str(value, &str) == 0) {
        snprintf(buf, size, "%.*s", (int)str.len, str.ptr ? str.ptr : "");
    }
}

//  Builds a request from its envelope. Returns NULL with *why set when the
//  payload is malformed.
static cd_api_req_t *
s_req_new(s_api_t *api, const cd_envelope_t *env, cd_str_t op, const char **why)
{
    cd_api_req_t *req = (cd_api_req_t *)zmalloc(sizeof *req);
    req->api = api;
    snprintf(req->op, sizeof req->op, "%.*s", (int)op.len, op.ptr);
    memcpy(req->id, env->id, CD_ENV_UUID_SIZE);
    memcpy(req->trace, env->trace_id, CD_ENV_UUID_SIZE);
    cd_str_t reply;
    if (!cd_envelope_header(env, "reply_to", &reply)) {
        reply = env->from;
    }
    snprintf(req->reply_to, sizeof req->reply_to, "%.*s", (int)reply.len,
             reply.ptr ? reply.ptr : "");
    cd_bin_t payload = env->payload;
    if (env->payload_type != CD_PAYLOAD_MAP) {
        *why = "payload is not a map";
        goto fail;
    }
    s_field_str(payload, "m", req->method, sizeof req->method);
    s_field_str(payload, "ip", req->ip, sizeof req->ip);
    s_field_str(payload, "f", req->fam, sizeof req->fam);
    cd_bin_t value;
    if (cd_msgpack_map_find(payload, "p", &value) == 0) {
        s_kv_fill_t fill = {req->params, &req->n_params, S_MAX_PARAMS};
        if (cd_msgpack_map_each(value, s_kv_entry, &fill) != 0) {
            *why = "bad path parameters";
            goto fail;
        }
    }
    if (cd_msgpack_map_find(payload, "q", &value) == 0) {
        s_kv_fill_t fill = {req->query, &req->n_query, S_MAX_QUERY};
        if (cd_msgpack_map_each(value, s_kv_entry, &fill) != 0) {
            *why = "too many or bad query parameters";
            goto fail;
        }
    }
    cd_str_t str;
    if (cd_msgpack_map_find(payload, "b", &value) == 0 && cd_msgpack_read_str(value, &str) == 0) {
        req->body_text = s_strdup_view(str);
        json_error_t error;
        req->body = json_loadb(req->body_text, str.len, JSON_REJECT_DUPLICATES, &error);
        if (!req->body) {
            *why = "body is not JSON";
            goto fail;
        }
    }
    int64_t user = 0;
    if (cd_msgpack_map_find(payload, "u", &value) == 0) {
        cd_msgpack_read_int(value, &user);
    }
    req->user_id = user;
    bool admin = false;
    if (cd_msgpack_map_find(payload, "a", &value) == 0) {
        cd_msgpack_read_bool(value, &admin);
    }
    req->admin = admin;
    if (cd_msgpack_map_find(payload, "path", &value) == 0 &&
        cd_msgpack_read_str(value, &str) == 0) {
        req->path = s_strdup_view(str);
    }
    if (cd_msgpack_map_find(payload, "ik", &value) == 0 && cd_msgpack_read_str(value, &str) == 0 &&
        str.len > 0) {
        req->idem_key = s_strdup_view(str);
    }
    return req;
fail:
    s_req_destroy(&req);
    return NULL;
}

static const char *
s_kv_get(const s_kv_t *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (streq(kv[i].name, name)) {
            return kv[i].value;
        }
    }
    return NULL;
}

const char *
cd_api_param(const cd_api_req_t *req, const char *name)
{
    return s_kv_get(req->params, req->n_params, name);
}

const char *
cd_api_query(const cd_api_req_t *req, const char *name)
{
    return s_kv_get(req->query, req->n_query, name);
}

json_t *
cd_api_body(const cd_api_req_t *req)
{
    return req->body;
}

const char *
cd_api_body_text(const cd_api_req_t *req)
{
    return req->body_text;
}

const char *
cd_api_op(const cd_api_req_t *req)
{
    return req->op;
}

int64_t
cd_api_user(const cd_api_req_t *req)
{
    return req->user_id;
}

bool
cd_api_admin(const cd_api_req_t *req)
{
    return req->admin;
}

const char *
cd_api_ip(const cd_api_req_t *req)
{
    return req->ip;
}

const char *
cd_api_method(const cd_api_req_t *req)
{
    return req->method;
}

const char *
cd_api_path(const cd_api_req_t *req)
{
    return req->path ? req->path : "";
}

const char *
cd_api_session(const cd_api_req_t *req)
{
    return req->fam[0] ? req->fam : NULL;
}

const char *
cd_api_node_id(const cd_api_req_t *req)
{
    return req->api->args->node_id;
}

const cd_api_args_t *
cd_api_args(const cd_api_req_t *req)
{
    return req->api->args;
}

cd_actor_t *
cd_api_actor(const cd_api_req_t *req)
{
    return req->api->self;
}

json_t *
cd_api_scratch(cd_api_req_t *req)
{
    if (!req->scratch) {
        req->scratch = json_object();
    }
    return req->scratch;
}

cd_db_t *
cd_api_db(cd_api_req_t *req)
{
    s_api_t *api = req->api;
    if (api->db && !cd_db_connected(api->db)) {
        if (cd_db_reset(api->db) != 0) {
            cd_db_close(&api->db);
            api->db_retry_us = zclock_usecs() + S_DB_RETRY_MS * 1000;
        }
    }
    if (!api->db && zclock_usecs() >= api->db_retry_us) {
        char *errmsg = NULL;
        if (cd_db_connect(api->args->conninfo, &api->db, &errmsg) != 0) {
            cd_log_warn(cd_actor_name(api->self), "database unreachable", "{s:s}", "error",
                        errmsg ? errmsg : "?");
            api->db_retry_us = zclock_usecs() + S_DB_RETRY_MS * 1000;
        }
        free(errmsg);
    }
    return api->db;
}

cd_db_t *
cd_api_read_db(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_db(req);
    if (!db) {
        cd_api_fail(req, CD_ECONN, NULL);
    }
    return db;
}

cd_db_t *
cd_api_page_begin(cd_api_req_t *req, int *limit, const char **cursor)
{
    return cd_api_page_args(req, limit, cursor) ? cd_api_read_db(req) : NULL;
}

//  --- parameters -------------------------------------------------------------------

//  Parses a whole decimal integer. False on anything else or overflow.
static bool
s_parse_i64(const char *text, int64_t *out)
{
    if (!text || !*text || strlen(text) > 20) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || isspace((unsigned char)text[0])) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

bool
cd_api_param_id(cd_api_req_t *req, const char *name, int64_t *out)
{
    int64_t id = 0;
    if (!s_parse_i64(cd_api_param(req, name), &id) || id <= 0) {
        cd_api_error(req, 404, "not_found", "no such object",
                     json_pack("{s:s, s:s}", "param", name, "reason", "not a valid id"));
        return false;
    }
    *out = id;
    return true;
}

bool
cd_api_query_int(cd_api_req_t *req, const char *name, int64_t min, int64_t max, int64_t dflt,
                 int64_t *out)
{
    const char *text = cd_api_query(req, name);
    if (!text) {
        *out = dflt;
        return true;
    }
    int64_t v = 0;
    if (!s_parse_i64(text, &v)) {
        cd_api_invalid(req, name, "must be an integer");
        return false;
    }
    if (v < min || v > max) {
        char reason[96];
        snprintf(reason, sizeof reason, "must be between %lld and %lld", (long long)min,
                 (long long)max);
        cd_api_invalid(req, name, reason);
        return false;
    }
    *out = v;
    return true;
}

bool
cd_api_page_args(cd_api_req_t *req, int *limit, const char **cursor)
{
    int64_t v = 0;
    if (!cd_api_query_int(req, "limit", 1, CD_Q_LIMIT_MAX, CD_Q_LIMIT_DEFAULT, &v)) {
        return false;
    }
    *limit = (int)v;
    const char *c = cd_api_query(req, "cursor");
    int64_t n = 0;
    if (c && (!s_parse_i64(c, &n) || n < 0)) {
        cd_api_invalid(req, "cursor", "not a cursor this API gave out");
        return false;
    }
    *cursor = c;
    return true;
}

bool
cd_api_query_time(cd_api_req_t *req, const char *name, const char **out)
{
    const char *text = cd_api_query(req, name);
    *out = NULL;
    if (!text) {
        return true;
    }
    //  YYYY-MM-DD[Thh:mm[:ss[.frac]]][Z|±hh:mm]: digits and these signs only.
    size_t len = strlen(text);
    bool ok = len >= 10 && len <= 40 && isdigit((unsigned char)text[0]) && text[4] == '-' &&
              text[7] == '-';
    for (size_t i = 0; ok && i < len; i++) {
        ok = isdigit((unsigned char)text[i]) || strchr("-:T.Z+tz ", text[i]) != NULL;
    }
    if (!ok) {
        cd_api_invalid(req, name, "must be an RFC 3339 timestamp");
        return false;
    }
    *out = text;
    return true;
}

bool
cd_api_query_enum(cd_api_req_t *req, const char *name, const char *const *allowed, const char **out)
{
    const char *text = cd_api_query(req, name);
    *out = NULL;
    if (!text) {
        return true;
    }
    for (const char *const *a = allowed; *a; a++) {
        if (streq(*a, text)) {
            *out = *a;
            return true;
        }
    }
    cd_api_invalid(req, name, "not one of the allowed values");
    return false;
}

//  --- kicks ----------------------------------------------------------------------

#define S_KICK_COALESCE_US 1000

static void
s_kick_send(s_api_t *api, const char *op, int64_t task_id)
{
    const char *to = api->args->orchestrator;
    if (!to || !cd_registry_status_deliverable(cd_registry_status(api->kick_rt.registry, to))) {
        return;
    }
    if (!api->kicker) {
        api->kicker = cd_mailer_new(&api->kick_rt, cd_actor_name(api->self));
    }
    cd_envelope_t env;
    cd_mailer_envelope_init(api->kicker, &env, CD_KIND_CONTROL, to);
    env.task_id = task_id;
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    //  Dropped when the queue is full: the orchestrator is busy and scans.
    cd_mailer_send(api->kicker, &env);
}

static int
s_kick_timer(cd_actor_t *self, void *arg)
{
    s_api_t *api = (s_api_t *)arg;
    api->kick_pending = false;
    api->kicked_us = zclock_usecs();
    s_kick_send(api, "kick", 0);
    (void)self;
    return 0;
}

void
cd_api_kick(cd_api_req_t *req, const char *op, int64_t task_id)
{
    s_api_t *api = req->api;
    if (!api->args->orchestrator) {
        return;
    }
    if (!streq(op, "kick")) {
        s_kick_send(api, op, task_id);
        return;
    }
    //  Under load every create would kick: one per millisecond is enough.
    int64_t now = zclock_usecs();
    if (api->kick_pending) {
        return;
    }
    if (now - api->kicked_us >= S_KICK_COALESCE_US) {
        api->kicked_us = now;
        s_kick_send(api, op, 0);
    } else {
        api->kick_pending = true;
        cd_actor_after(api->self, 1, s_kick_timer, api);
    }
}

static bool
s_starts_with(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

//  After a successful answer: the kick the operation calls for (cd_api.h).
static void
s_kick_after(cd_api_req_t *req, int status, const char *body, size_t len)
{
    if (status < 200 || status >= 300 || !req->api->args->orchestrator) {
        return;
    }
    const char *op = req->op;
    if (streq(op, "tasks.create") || streq(op, "tasks.batch") || streq(op, "tasks.retry") ||
        streq(op, "schedules.run")) {
        cd_api_kick(req, "kick", 0);
    } else if (streq(op, "tasks.cancel")) {
        const char *id = cd_api_param(req, "id");
        cd_api_kick(req, "cancel", id ? strtoll(id, NULL, 10) : 0);
    } else if (streq(op, "hitl.respond")) {
        json_t *row = json_loadb(body, len, 0, NULL);
        json_t *task = json_object_get(row, "task_id");
        if (json_is_integer(task)) {
            cd_api_kick(req, "resume", json_integer_value(task));
        }
        json_decref(row);
    } else if (!streq(req->method, "GET") &&
               (s_starts_with(op, "agents.") || s_starts_with(op, "teams.") ||
                s_starts_with(op, "team_types.") || s_starts_with(op, "roles."))) {
        cd_api_kick(req, "agents", 0);
    }
}

//  --- answering ------------------------------------------------------------------

static void s_idem_settle(cd_api_req_t *req, int status, const char *body, size_t len);

//  Records a successful change with the audit writer, without waiting: the
//  answer does not depend on it (cd_auditlog.h says how records survive a
//  database outage). Uses api->pack: after the answer is sent.
static void
s_audit(cd_api_req_t *req, int status, const char *location)
{
    s_api_t *api = req->api;
    if (!api->args->audit || req->no_audit || status < 200 || status > 299 ||
        streq(req->method, "GET") || streq(req->method, "HEAD")) {
        return;
    }
    int64_t user = req->audit_as > 0 ? req->audit_as : req->user_id;
    char details[64];
    snprintf(details, sizeof details, "{\"method\":\"%s\",\"status\":%d}", req->method, status);
    const char *target = location ? location : req->path;
    cd_pack_t *pack = api->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 5);
    cd_pack_cstr(pack, "u");
    cd_pack_int(pack, user > 0 ? user : 0);
    cd_pack_cstr(pack, "action");
    cd_pack_cstr(pack, req->op);
    cd_pack_cstr(pack, "target");
    if (target && *target) {
        //  audit_logs.target holds 500 characters.
        cd_pack_str(pack, target, strnlen(target, 500));
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "ip");
    cd_pack_cstr(pack, req->ip);
    cd_pack_cstr(pack, "details");
    cd_pack_cstr(pack, details);
    cd_envelope_t env;
    cd_actor_envelope_init(api->self, &env, CD_KIND_TASK, api->args->audit);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_actor_send(api->self, &env);
    if (rc != 0) {
        cd_log_error(cd_actor_name(api->self), "audit record not sent", "{s:s, s:s}", "op", req->op,
                     "error", cd_strerror(rc));
    }
}

void
cd_api_audit_as(cd_api_req_t *req, int64_t user_id)
{
    req->audit_as = user_id;
}

void
cd_api_auth_notify(cd_api_req_t *req, json_t *effects)
{
    s_api_t *api = req->api;
    char *text = effects ? json_dumps(effects, JSON_COMPACT) : NULL;
    json_decref(effects);
    if (!text || !req->reply_to[0]) {
        free(text);
        return;
    }
    cd_pack_t *pack = api->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "effects");
    cd_pack_cstr(pack, text);
    free(text);
    cd_envelope_t env;
    cd_actor_envelope_init(api->self, &env, CD_KIND_CONTROL, req->reply_to);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("auth")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    //  Same sender, same receiver: ZeroMQ keeps it ahead of the answer.
    int rc = cd_actor_send(api->self, &env);
    if (rc != 0) {
        cd_log_error(cd_actor_name(api->self), "auth change not delivered to the HTTP layer",
                     "{s:s, s:s}", "op", req->op, "error", cd_strerror(rc));
    }
}

//  Sends the answer and frees the request. A body with a content_type is
//  raw bytes (artifact content): it goes out with X-Content-Type-Options:
//  nosniff, so that no browser guesses another type than the one given,
//  and disposition (if not NULL) as its Content-Disposition.
static void
s_answer(cd_api_req_t *req, int status, const char *content_type, const void *body, size_t len,
         const char *location, const char *retry_after, const char *disposition)
{
    s_api_t *api = req->api;
    if (req->idem_claimed) {
        s_idem_settle(req, status, content_type ? NULL : (const char *)body, len);
    }
    cd_pack_t *pack = api->pack;
    cd_pack_reset(pack);
    uint32_t n_headers =
        (location ? 1 : 0) + (retry_after ? 1 : 0) + (content_type ? 1 : 0) + (disposition ? 1 : 0);
    uint32_t n = 2 + (content_type ? 1 : 0) + (n_headers ? 1 : 0);
    cd_pack_map(pack, n);
    cd_pack_cstr(pack, "s");
    cd_pack_int(pack, status);
    cd_pack_cstr(pack, "b");
    if (content_type) {
        cd_pack_bin(pack, body, len);
        cd_pack_cstr(pack, "ct");
        cd_pack_cstr(pack, content_type);
    } else {
        cd_pack_str(pack, (const char *)body, len);
    }
    if (n_headers) {
        cd_pack_cstr(pack, "h");
        cd_pack_map(pack, n_headers);
        if (location) {
            cd_pack_cstr(pack, "location");
            cd_pack_cstr(pack, location);
        }
        if (retry_after) {
            cd_pack_cstr(pack, "retry-after");
            cd_pack_cstr(pack, retry_after);
        }
        if (content_type) {
            cd_pack_cstr(pack, "x-content-type-options");
            cd_pack_cstr(pack, "nosniff");
        }
        if (disposition) {
            cd_pack_cstr(pack, "content-disposition");
            cd_pack_cstr(pack, disposition);
        }
    }
    cd_envelope_t out;
    cd_actor_envelope_init(api->self, &out, CD_KIND_RESULT, req->reply_to);
    memcpy(out.parent_id, req->id, CD_ENV_UUID_SIZE);
    memcpy(out.trace_id, req->trace, CD_ENV_UUID_SIZE);
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(pack);
    int rc = cd_actor_send(api->self, &out);
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(api->self), "answer not delivered", "{s:s, s:s}", "op", req->op,
                    "error", cd_strerror(rc));
    }
    if (!content_type) {
        s_kick_after(req, status, (const char *)body, len);
    }
    s_audit(req, status, location);
    s_req_destroy(&req);
}

void
cd_api_reply_text(cd_api_req_t *req, int status, const char *json, const char *location)
{
    s_answer(req, status, NULL, json, strlen(json), location, NULL, NULL);
}

void
cd_api_reply_json(cd_api_req_t *req, int status, json_t *obj, const char *location)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(obj);
    if (!text) {
        cd_api_error(req, 500, "internal", "could not encode the answer", NULL);
        return;
    }
    s_answer(req, status, NULL, text, strlen(text), location, NULL, NULL);
    free(text);
}

void
cd_api_reply_page(cd_api_req_t *req, const cd_q_page_t *page)
{
    //  The items are JSON text from PostgreSQL: splice, don't re-parse.
    const char *items = page->items ? page->items : "[]";
    size_t len = strlen(items) + 64 + (page->next_cursor ? strlen(page->next_cursor) : 0);
    char *text = (char *)malloc(len);
    if (page->next_cursor) {
        snprintf(text, len, "{\"items\":%s,\"next_cursor\":\"%s\"}", items, page->next_cursor);
    } else {
        snprintf(text, len, "{\"items\":%s,\"next_cursor\":null}", items);
    }
    s_answer(req, 200, NULL, text, strlen(text), NULL, NULL, NULL);
    free(text);
}

void
cd_api_reply_read(cd_api_req_t *req, int rc, cd_db_t *db, char *row)
{
    if (rc == 0) {
        cd_api_reply_text(req, 200, row, NULL);
    } else {
        cd_api_fail(req, rc, db);
    }
    free(row);
}

void
cd_api_reply_read_page(cd_api_req_t *req, int rc, cd_db_t *db, cd_q_page_t *page)
{
    if (rc == 0) {
        cd_api_reply_page(req, page);
    } else {
        cd_api_fail(req, rc, db);
    }
    cd_q_page_fini(page);
}

void
cd_api_on_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row) {
        cd_api_error(req, 500, "internal", "the write returned no object", NULL);
        return;
    }
    char location[160];
    snprintf(location, sizeof location, "%s/%lld", (const char *)arg,
             (long long)json_integer_value(json_object_get(row, "id")));
    json_decref(row);
    cd_api_reply_text(req, 201, res->value, location);
}

void
cd_api_on_deleted(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "23503") && arg) {
        cd_api_error(req, 409, "conflict", (const char *)arg,
                     json_pack("{s:s}", "sqlstate", res->sqlstate));
    } else if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such object", NULL);
    } else {
        cd_api_reply_empty(req);
    }
}

int
cd_api_list(cd_api_req_t *req, cd_api_list_fn *fn)
{
    int limit = 0;
    const char *cursor = NULL;
    cd_db_t *db = cd_api_page_begin(req, &limit, &cursor);
    if (db) {
        cd_q_page_t page = {0};
        int rc = fn(db, cursor, limit, &page);
        cd_api_reply_read_page(req, rc, db, &page);
    }
    return 0;
}

int
cd_api_get(cd_api_req_t *req, cd_api_get_fn *fn)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (db) {
        char *row = NULL;
        int rc = fn(db, id, &row);
        cd_api_reply_read(req, rc, db, row);
    }
    return 0;
}

void
cd_api_reply_empty(cd_api_req_t *req)
{
    s_answer(req, 204, NULL, "", 0, NULL, NULL, NULL);
}

//  True if media type `type` is JSON (application/json, or a +json
//  type, with or without parameters): data a client fetches, which no
//  browser renders as a page.
static bool
s_json_type(const char *type)
{
    size_t len = strcspn(type, ";");
    while (len > 0 && (type[len - 1] == ' ' || type[len - 1] == '\t')) {
        len--;
    }
    return (len == 16 && strncasecmp(type, "application/json", 16) == 0) ||
           (len > 5 && strncasecmp(type + len - 5, "+json", 5) == 0);
}

#define S_FILENAME_ASCII 100  //  longest ASCII fallback file name
#define S_FILENAME_BYTES 1024 //  longest name encoded in filename* (bytes of UTF-8)

static bool
s_filename_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

//  Content-Disposition: attachment for a file name, as RFC 6266 has it: a
//  quoted ASCII fallback (every byte but [A-Za-z0-9._-] becomes '_', at
//  most S_FILENAME_ASCII of them) and the name itself as percent-encoded
//  UTF-8 in filename* (RFC 8187). Path separators become '_' in both;
//  nothing that could end the header (quotes, line breaks) is left
//  unencoded; a name that is empty or only dots is "artifact". Caller
//  frees.
static char *
s_disposition(const char *name)
{
    size_t len = strnlen(name, S_FILENAME_BYTES);
    if (strspn(name, ".") >= len) {
        name = "artifact";
        len = strlen(name);
    }
    char ascii[S_FILENAME_ASCII + 1];
    size_t n = 0;
    for (; n < len && n < S_FILENAME_ASCII; n++) {
        ascii[n] = s_filename_char((unsigned char)name[n]) ? name[n] : '_';
    }
    ascii[n] = '\0';
    //  RFC 8187 attr-char: ALPHA DIGIT ! # $ & + - . ^ _ ` | ~
    static const char attr[] = "!#$&+-.^_`|~";
    char *out = (char *)zmalloc(64 + n + 3 * len + 1);
    int at = sprintf(out, "attachment; filename=\"%s\"; filename*=UTF-8''", ascii);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '\\') {
            c = '_';
        }
        if (s_filename_char(c) || strchr(attr, c)) {
            out[at++] = (char)c;
        } else {
            at += sprintf(out + at, "%%%02X", c);
        }
    }
    out[at] = '\0';
    return out;
}

void
cd_api_reply_bytes(cd_api_req_t *req, int status, const char *content_type, const char *filename,
                   const void *data, size_t len)
{
    char *disposition = filename && !s_json_type(content_type) ? s_disposition(filename) : NULL;
    s_answer(req, status, content_type, data, len, NULL, NULL, disposition);
    free(disposition);
}

static void
s_error(cd_api_req_t *req, int status, const char *code, const char *message, json_t *details,
        const char *retry_after)
{
    json_t *body = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message", message,
                             "details", details ? details : json_object());
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    s_answer(req, status, NULL, text, strlen(text), NULL, retry_after, NULL);
    free(text);
}

void
cd_api_error(cd_api_req_t *req, int status, const char *code, const char *message, json_t *details)
{
    s_error(req, status, code, message, details, NULL);
}

void
cd_api_error_retry(cd_api_req_t *req, int status, const char *code, const char *message,
                   json_t *details, int64_t retry_after_s)
{
    char retry[24];
    snprintf(retry, sizeof retry, "%lld", (long long)(retry_after_s > 0 ? retry_after_s : 1));
    s_error(req, status, code, message, details, retry);
}

void
cd_api_invalid(cd_api_req_t *req, const char *field, const char *reason)
{
    char message[160];
    snprintf(message, sizeof message, "%s: %s", field, reason);
    cd_api_error(req, 400, "validation_failed", message,
                 json_pack("{s:s, s:s}", "field", field, "reason", reason));
}

void
cd_api_fail_sql(cd_api_req_t *req, const char *sqlstate, const char *message)
{
    const char *state = sqlstate ? sqlstate : "";
    json_t *details = json_pack("{s:s}", "sqlstate", state);
    if (streq(state, "23505")) {
        cd_api_error(req, 409, "conflict", "an object with this name or key already exists",
                     details);
    } else if (streq(state, "23503")) {
        cd_api_error(req, 409, "conflict",
                     "the change refers to an object that does not exist, or removes one that is "
                     "still in use",
                     details);
    } else if (strncmp(state, "22", 2) == 0 || streq(state, "23514") || streq(state, "23502")) {
        json_object_set_new(details, "reason", json_string(message ? message : "invalid value"));
        cd_api_error(req, 400, "validation_failed", "a value is out of range or malformed",
                     details);
    } else if (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0) {
        s_error(req, 503, "not_ready", "the database is unavailable; retry later", details, "1");
    } else {
        cd_log_error(cd_actor_name(req->api->self), "query failed", "{s:s, s:s, s:s}", "op",
                     req->op, "sqlstate", state, "error", message ? message : "?");
        cd_api_error(req, 500, "internal", "the database rejected the request", details);
    }
}

void
cd_api_fail(cd_api_req_t *req, int rc, cd_db_t *db)
{
    if (rc == CD_ENOTFOUND) {
        cd_api_error(req, 404, "not_found", "no such object", NULL);
    } else if (rc == CD_ESTATE) {
        cd_api_error(req, 409, "conflict", "the object is not in a state that allows this", NULL);
    } else if (rc == CD_ECONN) {
        s_error(req, 503, "not_ready", "the database is unavailable; retry later", NULL, "1");
    } else if (rc == CD_EDB && db) {
        const cd_db_error_t *err = cd_db_error(db);
        cd_api_fail_sql(req, err ? err->sqlstate : "", err ? err->message : NULL);
    } else {
        cd_log_error(cd_actor_name(req->api->self), "request failed", "{s:s, s:s}", "op", req->op,
                     "error", cd_strerror(rc));
        cd_api_error(req, 500, "internal", cd_strerror(rc), NULL);
    }
}

//  --- idempotency ------------------------------------------------------------------

//  The request's hash: operation, path parameters and body.
static void
s_idem_hash(const cd_api_req_t *req, char hex[65])
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, 32);
    crypto_generichash_update(&state, (const uint8_t *)req->op, strlen(req->op) + 1);
    for (size_t i = 0; i < req->n_params; i++) {
        crypto_generichash_update(&state, (const uint8_t *)req->params[i].value,
                                  strlen(req->params[i].value) + 1);
    }
    if (req->body_text) {
        crypto_generichash_update(&state, (const uint8_t *)req->body_text, strlen(req->body_text));
    }
    uint8_t hash[32];
    crypto_generichash_final(&state, hash, sizeof hash);
    sodium_bin2hex(hex, 65, hash, sizeof hash);
}

//  Operations that ignore Idempotency-Key (cd_api.h says why): answers
//  carrying a secret shown once (tokens, an API key, a TOTP secret) must
//  never be stored for a replay; bodies carrying a secret (a password, an
//  MFA code, a connection's secret values, the vault's master password)
//  must leave no fast hash of it in idempotency_keys.request_hash; and
//  the vault's operations act on the node that receives them only.
bool
cd_api_idem_ignored(const char *op)
{
    static const char *const secret[] = {
        //  answers
        "auth.login", "auth.refresh", "auth.mfa_setup", "api_keys.create",
        //  bodies
        "auth.password", "auth.mfa_verify", "users.create", "connections.create"};
    if (strncmp(op, "vault.", 6) == 0) {
        return true; //  the master password (init, unlock); per node (lock too)
    }
    for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++) {
        if (streq(op, secret[i])) {
            return true;
        }
    }
    return false;
}

//  Claims the request's key. Returns true if the request should run; false
//  when it was answered (a replay, a conflict, or the database is away).
static bool
s_idem_claim(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_db(req);
    if (!db) {
        cd_api_fail(req, CD_ECONN, NULL);
        return false;
    }
    if (strlen(req->idem_key) > 255) {
        cd_api_error(req, 400, "validation_failed", "Idempotency-Key is longer than 255 bytes",
                     json_pack("{s:s}", "field", "Idempotency-Key"));
        return false;
    }
    char hex[65];
    s_idem_hash(req, hex);
    char *row = NULL;
    int64_t user = req->user_id > 0 ? req->user_id : CD_Q_NULL;
    int rc = cd_q_idem_begin(db, req->idem_key, user, hex, S_IDEM_TTL_S, &row);
    if (rc == 0) {
        req->idem_claimed = true;
        free(row);
        return true;
    }
    if (rc != CD_EEXIST) {
        free(row);
        cd_api_fail(req, rc, db);
        return false;
    }
    json_t *record = json_loads(row, 0, NULL);
    free(row);
    const char *hash = json_string_value(json_object_get(record, "request_hash"));
    json_t *status = json_object_get(record, "response_status");
    const char *body = json_string_value(json_object_get(record, "response_body"));
    free(req->idem_key); //  not ours: never settle it
    req->idem_key = NULL;
    if (!hash || !streq(hash, hex)) {
        cd_api_error(req, 409, "conflict", "this Idempotency-Key was used with a different request",
                     json_pack("{s:s}", "field", "Idempotency-Key"));
    } else if (!json_is_integer(status)) {
        cd_api_error(req, 409, "conflict",
                     "a request with this Idempotency-Key is still in progress",
                     json_pack("{s:s}", "field", "Idempotency-Key"));
    } else {
        req->no_audit = true;
        s_answer(req, (int)json_integer_value(status), NULL, body ? body : "",
                 body ? strlen(body) : 0, NULL, NULL, NULL);
    }
    json_decref(record);
    return false;
}

static void
s_idem_settle(cd_api_req_t *req, int status, const char *body, size_t len)
{
    req->idem_claimed = false;
    cd_db_t *db = cd_api_db(req);
    if (!db) {
        return; //  the record expires; a retry meanwhile gets 409 in progress
    }
    int64_t user = req->user_id > 0 ? req->user_id : CD_Q_NULL;
    int rc;
    if (status >= 500 || !body) {
        rc = cd_q_idem_abandon(db, req->idem_key, user);
    } else {
        char *copy = strndup(body, len);
        rc = cd_q_idem_finish(db, req->idem_key, user, status, copy);
        free(copy);
    }
    if (rc != 0) {
        cd_log_warn(cd_actor_name(req->api->self), "idempotency record not settled", "{s:s, s:s}",
                    "op", req->op, "error", cd_strerror(rc));
    }
}

//  --- calls -------------------------------------------------------------------------

void
cd_api_envelope_init(cd_api_req_t *req, cd_envelope_t *env, cd_kind_t kind, const char *to)
{
    cd_actor_envelope_init(req->api->self, env, kind, to);
}

int
cd_api_call(cd_api_req_t *req, cd_envelope_t *env, cd_api_reply_fn *fn, void *arg)
{
    s_api_t *api = req->api;
    int rc = cd_actor_send(api->self, env);
    if (rc != 0) {
        return rc;
    }
    memcpy(req->call_id, env->id, CD_ENV_UUID_SIZE);
    req->reply_fn = fn;
    req->reply_arg = arg;
    req->parked_us = zclock_usecs();
    zhashx_insert(api->parked, req->call_id, req);
    return 0;
}

//  Reads persist's answer into a result and calls the write continuation.
static void
s_write_reply(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    cd_api_result_t res = {.rc = CD_ETIMEDOUT, .sqlstate = ""};
    char *value = NULL, *sqlstate = NULL, *message = NULL;
    if (reply) {
        cd_bin_t field;
        cd_str_t str;
        if (reply->kind == CD_KIND_RESULT) {
            res.rc = 0;
            if (cd_msgpack_map_find(reply->payload, "value", &field) == 0 &&
                cd_msgpack_read_str(field, &str) == 0) {
                value = s_strdup_view(str);
            }
            if (cd_msgpack_map_find(reply->payload, "rows", &field) == 0) {
                cd_msgpack_read_int(field, &res.rows);
            }
        } else {
            char code[32];
            s_field_str(reply->payload, "code", code, sizeof code);
            if (cd_msgpack_map_find(reply->payload, "sqlstate", &field) == 0 &&
                cd_msgpack_read_str(field, &str) == 0) {
                sqlstate = s_strdup_view(str);
            }
            if (cd_msgpack_map_find(reply->payload, "message", &field) == 0 &&
                cd_msgpack_read_str(field, &str) == 0) {
                message = s_strdup_view(str);
            }
            if (streq(code, "db_error") || streq(code, "invalid_value") || streq(code, "too_big")) {
                res.rc = CD_EDB;
            } else if (streq(code, "busy")) {
                res.rc = CD_EBUSY;
            } else if (streq(code, "db_unavailable") || streq(code, "stopped")) {
                res.rc = CD_ECONN;
            } else {
                res.rc = CD_EINVAL;
            }
        }
    }
    res.value = value;
    res.sqlstate = sqlstate ? sqlstate : "";
    res.message = message;
    cd_api_write_fn *fn = req->write_fn;
    req->write_fn = NULL;
    fn(req, &res, arg);
    free(value);
    free(sqlstate);
    free(message);
}

int
cd_api_write(cd_api_req_t *req, const char *stmt, int nparams, const char *const *params,
             cd_api_write_fn *fn, void *arg)
{
    s_api_t *api = req->api;
    cd_pack_t *pack = api->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "stmt");
    cd_pack_cstr(pack, stmt);
    cd_pack_cstr(pack, "params");
    cd_pack_array(pack, (uint32_t)nparams);
    for (int i = 0; i < nparams; i++) {
        if (params[i]) {
            cd_pack_cstr(pack, params[i]);
        } else {
            cd_pack_nil(pack);
        }
    }
    cd_envelope_t env;
    cd_actor_envelope_init(api->self, &env, CD_KIND_TASK, api->args->persist);
    memcpy(env.trace_id, req->trace, CD_ENV_UUID_SIZE);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    req->write_fn = fn;
    req->write_arg = arg;
    int rc = cd_api_call(req, &env, s_write_reply, arg);
    if (rc != 0) {
        req->write_fn = NULL;
    }
    return rc;
}

void
cd_api_write_failed(cd_api_req_t *req, const cd_api_result_t *res)
{
    if (res->rc == CD_EDB) {
        cd_api_fail_sql(req, res->sqlstate, res->message);
    } else if (res->rc == CD_EBUSY || res->rc == CD_ECONN) {
        s_error(req, 503, "not_ready",
                res->rc == CD_EBUSY ? "the database is busy; retry later"
                                    : "the database is unavailable; retry later",
                json_pack("{s:s}", "reason", res->message ? res->message : ""), "1");
    } else if (res->rc == CD_ETIMEDOUT) {
        cd_api_error(req, 504, "timeout", "the write was not acknowledged in time", NULL);
    } else {
        cd_api_error(req, 500, "internal", res->message ? res->message : "write failed", NULL);
    }
}

//  --- module state -----------------------------------------------------------------

void **
cd_api_state(cd_api_req_t *req, const char *key, void (*fini)(void *value))
{
    s_api_t *api = req->api;
    s_state_t *state = (s_state_t *)zhashx_lookup(api->states, key);
    if (!state) {
        state = (s_state_t *)zmalloc(sizeof *state);
        state->fini = fini;
        zhashx_insert(api->states, key, state);
    }
    return &state->value;
}

void
cd_api_drop(cd_api_req_t **req_p)
{
    s_req_destroy(req_p);
}

//  --- the actor -------------------------------------------------------------------

static int
s_sweep(cd_actor_t *self, void *arg)
{
    s_api_t *api = (s_api_t *)arg;
    int64_t now = zclock_usecs();
    zlistx_t *late = zlistx_new();
    for (cd_api_req_t *req = (cd_api_req_t *)zhashx_first(api->parked); req;
         req = (cd_api_req_t *)zhashx_next(api->parked)) {
        if (now - req->parked_us > (int64_t)S_PARK_TIMEOUT_MS * 1000) {
            zlistx_add_end(late, req);
        }
    }
    for (cd_api_req_t *req = (cd_api_req_t *)zlistx_first(late); req;
         req = (cd_api_req_t *)zlistx_next(late)) {
        zhashx_delete(api->parked, req->call_id);
        req->reply_fn(req, NULL, req->reply_arg);
    }
    zlistx_destroy(&late);
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    s_api_t *api = (s_api_t *)zmalloc(sizeof *api);
    api->self = self;
    api->args = (const cd_api_args_t *)args;
    api->kick_rt = *cd_actor_runtime(self);
    api->kick_rt.send_timeout_ms = 0;
    api->ops = zhashx_new();
    zhashx_set_destructor(api->ops, NULL);
    zhashx_set_duplicator(api->ops, NULL);
    for (size_t m = 0; m < S_N_MODULES; m++) {
        for (size_t i = 0; i < s_modules[m]->n_ops; i++) {
            zhashx_insert(api->ops, s_modules[m]->ops[i].op, (void *)s_modules[m]->ops[i].fn);
        }
    }
    api->parked = zhashx_new();
    zhashx_set_key_hasher(api->parked, s_id_hash);
    zhashx_set_key_comparator(api->parked, s_id_compare);
    zhashx_set_key_duplicator(api->parked, NULL);
    zhashx_set_key_destructor(api->parked, NULL);
    api->pack = cd_pack_new();
    api->states = zhashx_new();
    char *errmsg = NULL;
    if (cd_db_connect(api->args->conninfo, &api->db, &errmsg) != 0) {
        //  Not fatal: reads answer 503 until the database is back.
        cd_log_warn(cd_actor_name(self), "database unreachable", "{s:s}", "error",
                    errmsg ? errmsg : "?");
    }
    free(errmsg);
    cd_actor_every(self, S_SWEEP_MS, s_sweep, api);
    *state_p = api;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_api_t *api = (s_api_t *)*state_p;
    if (!api) {
        return;
    }
    for (s_state_t *state = (s_state_t *)zhashx_first(api->states); state;
         state = (s_state_t *)zhashx_next(api->states)) {
        if (state->fini && state->value) {
            state->fini(state->value);
        }
        free(state);
    }
    zhashx_destroy(&api->states);
    cd_api_req_t *req;
    while ((req = (cd_api_req_t *)zhashx_first(api->parked)) != NULL) {
        zhashx_delete(api->parked, req->call_id);
        s_req_destroy(&req);
    }
    zhashx_destroy(&api->parked);
    zhashx_destroy(&api->ops);
    cd_pack_destroy(&api->pack);
    cd_mailer_destroy(&api->kicker);
    cd_db_close(&api->db);
    free(api);
    *state_p = NULL;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_api_t *api = (s_api_t *)state;
    if (env->kind == CD_KIND_RESULT || env->kind == CD_KIND_ERROR) {
        cd_api_req_t *req = (cd_api_req_t *)zhashx_lookup(api->parked, env->parent_id);
        if (req) {
            zhashx_delete(api->parked, env->parent_id);
            req->reply_fn(req, env, req->reply_arg);
        }
        return 0;
    }
    cd_str_t op;
    if (!cd_envelope_header(env, "op", &op) || op.len == 0 || op.len >= 64) {
        cd_actor_dead_letter(self, cd_actor_name(self), "no operation", NULL, 0);
        return 0;
    }
    const char *why = "?";
    cd_api_req_t *req = s_req_new(api, env, op, &why);
    if (!req) {
        cd_log_warn(cd_actor_name(self), "malformed request", "{s:s}", "why", why);
        return 0;
    }
    cd_api_fn *fn = (cd_api_fn *)zhashx_lookup(api->ops, req->op);
    if (!fn) {
        cd_api_error(req, 404, "not_found", "no such operation", json_pack("{s:s}", "op", req->op));
        return 0;
    }
    //  Not for operations whose body or answer carries a secret.
    if (req->idem_key && streq(req->method, "POST") && !cd_api_idem_ignored(req->op) &&
        !s_idem_claim(req)) {
        return 0;
    }
    int rc = fn(req);
    if (rc != 0) {
        //  The handler answered nothing.
        cd_api_fail(req, rc, NULL);
    }
    return 0;
}

const cd_actor_ops_t cd_api_ops = {
    .kind = "api",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
