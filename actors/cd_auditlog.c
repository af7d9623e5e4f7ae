/*  cd_auditlog: the audit chain's writer (see cd_auditlog.h).

    State: a queue of records, the head (hash of the chain's last row, read
    from the database when unknown: at start and after a fork), and at most
    one batch in flight. A batch takes the first n records, seals them in
    order after the head, and sends them as one JSON array; the records
    leave the queue only when persist acknowledges the commit. Any failure
    leaves them queued: a fork (23505) re-reads the head at once, anything
    else retries after CD_AUDITLOG_RETRY_MS. Each attempt seals again (new
    links, same ts), so a retried batch is always a valid continuation of
    whatever the table holds by then.

    Interface: cd_auditlog_ops, cd_auditlog_verify. */
#include "cd_auditlog.h"

#include "cd_error.h"
#include "cd_log.h"
#include "cd_q_audit.h"

#include <czmq.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_VERIFY_PAGE 1000 //  rows read per query by cd_auditlog_verify

typedef struct {
    char ts[CD_AUDIT_TS_LEN + 1]; //  stamped on arrival
    int64_t user_id;              //  or CD_AUDIT_NO_USER
    char *action;                 //  operation name
    char *target;                 //  or NULL
    char *details;                //  JSON object text
    char *ip;                     //  or NULL
} s_rec_t;

typedef struct {
    cd_actor_t *self;
    const cd_auditlog_args_t *args;
    const char *persist;               //  where batches go
    cd_db_t *db;                       //  read connection (the head), or NULL while down
    zlistx_t *queue;                   //  s_rec_t *, oldest first
    bool head_known;                   //  head is the chain's last hash (or the chain is empty)
    bool head_first;                   //  the chain is empty: the next row is the first
    uint8_t head[CD_AUDIT_HASH_BYTES]; //  the last row's hash
    size_t in_flight;                  //  records of the batch in flight (0: none)
    uint8_t call[CD_ENV_UUID_SIZE];    //  its request id
    uint8_t last[CD_AUDIT_HASH_BYTES]; //  its last record's hash
    int retry_timer;                   //  pending retry, 0: none
    cd_pack_t *pack;                   //  reused request buffer
    uint64_t written, dropped, forks, failed;
} s_log_t;

static void
s_rec_free(void **item)
{
    s_rec_t *rec = (s_rec_t *)*item;
    if (rec) {
        free(rec->action);
        free(rec->target);
        free(rec->details);
        free(rec->ip);
        free(rec);
        *item = NULL;
    }
}

static char *
s_dup(cd_str_t str)
{
    char *out = (char *)malloc(str.len + 1);
    if (!out) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    memcpy(out, str.ptr ? str.ptr : "", str.len);
    out[str.len] = '\0';
    return out;
}

//  A string field of the payload, copied, or NULL if absent or empty.
static char *
s_field(cd_bin_t payload, const char *key)
{
    cd_bin_t value;
    cd_str_t str;
    if (cd_msgpack_map_find(payload, key, &value) != 0 || cd_msgpack_read_str(value, &str) != 0 ||
        str.len == 0) {
        return NULL;
    }
    return s_dup(str);
}

//  Reads the chain's head. Returns 0 or the query's error.
static int
s_read_head(s_log_t *log)
{
    if (log->db && !cd_db_connected(log->db) && cd_db_reset(log->db) != 0) {
        cd_db_close(&log->db);
    }
    if (!log->db && cd_db_connect(log->args->conninfo, &log->db, NULL) != 0) {
        return CD_ECONN;
    }
    char *row = NULL;
    int rc = cd_q_audit_head(log->db, &row);
    if (rc == CD_ENOTFOUND) {
        log->head_first = true;
        memset(log->head, 0, sizeof log->head);
        log->head_known = true;
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    json_t *obj = json_loads(row, 0, NULL);
    free(row);
    const char *hex = json_string_value(json_object_get(obj, "hash"));
    size_t len = 0;
    rc = hex &&
                 sodium_hex2bin(log->head, sizeof log->head, hex, strlen(hex), NULL, &len, NULL) ==
                     0 &&
                 len == sizeof log->head
             ? 0
             : CD_EPROTO;
    json_decref(obj);
    if (rc == 0) {
        log->head_first = false;
        log->head_known = true;
    }
    return rc;
}

static void s_flush(s_log_t *log);

static int
s_on_retry(cd_actor_t *self, void *arg)
{
    s_log_t *log = (s_log_t *)arg;
    log->retry_timer = 0;
    s_flush(log);
    return 0;
}

static void
s_retry_later(s_log_t *log)
{
    if (!log->retry_timer) {
        log->retry_timer = cd_actor_after(log->self, CD_AUDITLOG_RETRY_MS, s_on_retry, log);
    }
}

//  Seals the first records after the head and sends them. The records stay
//  queued until the commit is acknowledged.
static void
s_flush(s_log_t *log)
{
    if (log->in_flight || log->retry_timer || zlistx_size(log->queue) == 0) {
        return;
    }
    if (!log->head_known) {
        int rc = s_read_head(log);
        if (rc != 0) {
            log->failed++;
            s_retry_later(log);
            return;
        }
    }
    json_t *rows = json_array();
    uint8_t prev[CD_AUDIT_HASH_BYTES];
    memcpy(prev, log->head, sizeof prev);
    bool first = log->head_first;
    size_t n = 0;
    s_rec_t *rec = (s_rec_t *)zlistx_first(log->queue);
    while (rec && n < CD_AUDITLOG_BATCH_MAX) {
        cd_audit_row_t row = {.ts = rec->ts,
                              .user_id = rec->user_id,
                              .action = rec->action,
                              .target = rec->target,
                              .details = rec->details,
                              .ip = rec->ip};
        //  Cannot fail: s_record let in only records with a canonical form.
        if (cd_audit_seal(&row, first ? NULL : prev, NULL) != 0) {
            fprintf(stderr, "%s:%d: audit record cannot be sealed\n", __FILE__, __LINE__);
            abort();
        }
        char prev_hex[65], hash_hex[65];
        sodium_bin2hex(prev_hex, sizeof prev_hex, row.prev_hash, sizeof row.prev_hash);
        sodium_bin2hex(hash_hex, sizeof hash_hex, row.hash, sizeof row.hash);
        json_t *details = json_loads(rec->details, 0, NULL);
        json_array_append_new(
            rows,
            json_pack("{s:s, s:o, s:s, s:o, s:o, s:o, s:s, s:s}", "ts", rec->ts, "user_id",
                      rec->user_id == CD_AUDIT_NO_USER ? json_null() : json_integer(rec->user_id),
                      "action", rec->action, "target",
                      rec->target ? json_string(rec->target) : json_null(), "details",
                      details ? details : json_object(), "ip",
                      rec->ip ? json_string(rec->ip) : json_null(), "prev_hash", prev_hex, "hash",
                      hash_hex));
        memcpy(prev, row.hash, sizeof prev);
        first = false;
        n++;
        rec = (s_rec_t *)zlistx_next(log->queue);
    }
    if (n == 0) {
        json_decref(rows);
        return;
    }
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    cd_pack_t *pack = log->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "stmt");
    cd_pack_cstr(pack, "audit.append");
    cd_pack_cstr(pack, "params");
    cd_pack_array(pack, 1);
    cd_pack_cstr(pack, text);
    free(text);
    cd_envelope_t env;
    cd_actor_envelope_init(log->self, &env, CD_KIND_TASK, log->persist);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_actor_send(log->self, &env);
    if (rc != 0) {
        log->failed++;
        s_retry_later(log);
        return;
    }
    memcpy(log->call, env.id, CD_ENV_UUID_SIZE);
    memcpy(log->last, prev, sizeof prev);
    log->in_flight = n;
}

//  Persist's answer to the batch in flight.
static void
s_batch_done(s_log_t *log, const cd_envelope_t *env)
{
    size_t n = log->in_flight;
    log->in_flight = 0;
    if (env->kind == CD_KIND_RESULT) {
        for (size_t i = 0; i < n; i++) {
            s_rec_t *rec = (s_rec_t *)zlistx_first(log->queue);
            if (!rec) {
                break;
            }
            zlistx_delete(log->queue, zlistx_cursor(log->queue));
        }
        memcpy(log->head, log->last, sizeof log->head);
        log->head_first = false;
        log->written += n;
        s_flush(log);
        return;
    }
    char sqlstate[8] = "", message[256] = "";
    cd_bin_t value;
    cd_str_t str;
    if (cd_msgpack_map_find(env->payload, "sqlstate", &value) == 0 &&
        cd_msgpack_read_str(value, &str) == 0) {
        snprintf(sqlstate, sizeof sqlstate, "%.*s", (int)str.len, str.ptr ? str.ptr : "");
    }
    if (cd_msgpack_map_find(env->payload, "message", &value) == 0 &&
        cd_msgpack_read_str(value, &str) == 0) {
        snprintf(message, sizeof message, "%.*s", (int)str.len, str.ptr ? str.ptr : "");
    }
    log->head_known = false;
    if (streq(sqlstate, "23505")) {
        //  Another node appended to the same head: link after its rows.
        log->forks++;
        s_flush(log);
        return;
    }
    log->failed++;
    cd_log_warn(cd_actor_name(log->self), "audit batch not written; retrying", "{s:s, s:s}",
                "sqlstate", sqlstate, "error", message);
    s_retry_later(log);
}

static void
s_record(s_log_t *log, const cd_envelope_t *env)
{
    char *action = s_field(env->payload, "action");
    if (!action) {
        return;
    }
    if (zlistx_size(log->queue) >= CD_AUDITLOG_QUEUE_MAX) {
        //  The database has been away for long. The oldest records may be
        //  in the batch in flight: this one goes.
        free(action);
        if (log->dropped++ % 1000 == 0) {
            cd_log_error(cd_actor_name(log->self), "audit queue full: records dropped", "{s:I}",
                         "dropped", (json_int_t)log->dropped);
        }
        return;
    }
    s_rec_t *rec = (s_rec_t *)zmalloc(sizeof *rec);
    cd_audit_ts(cd_now_us(), rec->ts);
    int64_t user = 0;
    cd_bin_t value;
    if (cd_msgpack_map_find(env->payload, "u", &value) == 0) {
        cd_msgpack_read_int(value, &user);
    }
    rec->user_id = user > 0 ? user : CD_AUDIT_NO_USER;
    rec->action = action;
    rec->target = s_field(env->payload, "target");
    rec->details = s_field(env->payload, "details");
    if (!rec->details) {
        rec->details = strdup("{}");
    }
    rec->ip = s_field(env->payload, "ip");
    cd_audit_row_t row = {.ts = rec->ts,
                          .user_id = rec->user_id,
                          .action = rec->action,
                          .target = rec->target,
                          .details = rec->details,
                          .ip = rec->ip};
    char *canonical = NULL;
    size_t len = 0;
    const char *why = NULL;
    if (cd_audit_canonical(&row, &canonical, &len, &why) != 0) {
        //  Only the api core makes records: a bug, not input.
        cd_log_error(cd_actor_name(log->self), "audit record refused", "{s:s, s:s}", "action",
                     rec->action, "why", why ? why : "?");
        void *item = rec;
        s_rec_free(&item);
        log->dropped++;
        return;
    }
    free(canonical);
    zlistx_add_end(log->queue, rec);
    s_flush(log);
}

static void
s_stats(s_log_t *log, const cd_envelope_t *env)
{
    cd_str_t to;
    if (!cd_envelope_header(env, "reply_to", &to)) {
        to = env->from;
    }
    char name[CD_ENV_MAX_NAME + 1];
    snprintf(name, sizeof name, "%.*s", (int)to.len, to.ptr ? to.ptr : "");
    cd_pack_t *pack = log->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 5);
    cd_pack_cstr(pack, "queued");
    cd_pack_int(pack, (int64_t)zlistx_size(log->queue));
    cd_pack_cstr(pack, "written");
    cd_pack_int(pack, (int64_t)log->written);
    cd_pack_cstr(pack, "dropped");
    cd_pack_int(pack, (int64_t)log->dropped);
    cd_pack_cstr(pack, "forks");
    cd_pack_int(pack, (int64_t)log->forks);
    cd_pack_cstr(pack, "failed");
    cd_pack_int(pack, (int64_t)log->failed);
    cd_envelope_t out;
    cd_actor_envelope_init(log->self, &out, CD_KIND_RESULT, name);
    memcpy(out.parent_id, env->id, CD_ENV_UUID_SIZE);
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(pack);
    cd_actor_send(log->self, &out);
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_log_t *log = (s_log_t *)state;
    if ((env->kind == CD_KIND_RESULT || env->kind == CD_KIND_ERROR) && log->in_flight &&
        memcmp(env->parent_id, log->call, CD_ENV_UUID_SIZE) == 0) {
        s_batch_done(log, env);
    } else if (env->kind == CD_KIND_TASK && env->payload_type == CD_PAYLOAD_MAP) {
        s_record(log, env);
    } else if (env->kind == CD_KIND_CONTROL) {
        cd_str_t op;
        if (cd_envelope_header(env, "op", &op) && op.len == 5 && memcmp(op.ptr, "stats", 5) == 0) {
            s_stats(log, env);
        }
    }
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_auditlog_args_t *a = (const cd_auditlog_args_t *)args;
    if (!a || !a->conninfo) {
        *why = "the audit writer needs conninfo";
        return CD_EINVAL;
    }
    s_log_t *log = (s_log_t *)zmalloc(sizeof *log);
    log->self = self;
    log->args = a;
    log->persist = a->persist ? a->persist : "persist";
    log->queue = zlistx_new();
    zlistx_set_destructor(log->queue, s_rec_free);
    log->pack = cd_pack_new();
    //  The head is read before the first batch (the database may not be
    //  there yet: records then wait).
    *state_p = log;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_log_t *log = (s_log_t *)*state_p;
    if (!log) {
        return;
    }
    if (zlistx_size(log->queue) > 0) {
        cd_log_warn(cd_actor_name(self), "audit records not written at stop", "{s:I}", "records",
                    (json_int_t)zlistx_size(log->queue));
    }
    zlistx_destroy(&log->queue);
    cd_pack_destroy(&log->pack);
    cd_db_close(&log->db);
    free(log);
    *state_p = NULL;
}

const cd_actor_ops_t cd_auditlog_ops = {
    .kind = "auditlog",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};

//  --- verification -------------------------------------------------------------------

int
cd_auditlog_verify(cd_db_t *db, const uint8_t *head, cd_audit_finding_t *finding, int64_t *rows)
{
    cd_audit_verifier_t verifier;
    cd_audit_verifier_init(&verifier, NULL);
    int64_t after = 0, count = 0;
    for (;;) {
        cd_q_page_t page = {0};
        int rc = cd_q_audit_chain(db, after, S_VERIFY_PAGE, &page);
        if (rc != 0) {
            cd_q_page_fini(&page);
            return rc;
        }
        cd_audit_row_t *list = NULL;
        size_t n = 0;
        const char *why = NULL;
        rc = cd_audit_rows_parse(page.items, strlen(page.items), &list, &n, &why);
        bool more = page.next_cursor != NULL;
        cd_q_page_fini(&page);
        if (rc != 0) {
            return rc;
        }
        for (size_t i = 0; i < n; i++) {
            cd_audit_verifier_feed(&verifier, &list[i]);
            after = list[i].id;
        }
        count += (int64_t)n;
        cd_audit_rows_free(&list, n);
        if (!more) {
            break;
        }
    }
    cd_audit_finding_t found;
    cd_audit_verifier_end(&verifier, head, &found);
    if (finding) {
        *finding = found;
    }
    if (rows) {
        *rows = count;
    }
    return 0;
}
