/*  cd_pwriter: writes through persist with retries (see cd_pwriter.h).

    Each write keeps its encoded request payload and its envelope id, so a
    resend is the same request byte for byte: persist answers a replay from
    its record instead of applying it again. Writes are found by id (a
    hash of the 16-byte ids, as the api actor parks its calls).

    Interface: cd_pwriter_new, cd_pwriter_destroy, cd_pwriter_send,
    cd_pwriter_handle, cd_pwriter_tick, cd_pwriter_pending. */
#include "cd_pwriter.h"

#include "cd_error.h"
#include "cd_log.h"

#include <stdlib.h>
#include <string.h>

#define S_RETRY_MIN_MS 100
#define S_RETRY_MAX_MS 2000

typedef struct {
    uint8_t id[CD_ENV_UUID_SIZE]; //  the request id (its envelope's): our key
    char *stmt;                   //  for logs
    uint8_t *payload;             //  the encoded request map
    size_t size;                  //  its length
    cd_pwriter_fn *fn;            //  continuation
    void *arg;                    //  its argument
    int64_t due_us;               //  send (again) at this time (monotonic); 0: sent, waiting
    int64_t sent_us;              //  last sent (monotonic)
    int backoff_ms;               //  next retry delay
    int tries;                    //  sends so far
} s_write_t;

struct cd_pwriter {
    cd_actor_t *self;    //  the owning actor
    const char *persist; //  persist's name (borrowed)
    int timeout_ms;      //  unanswered this long: resend
    zhashx_t *writes;    //  id -> s_write_t *
    cd_pack_t *pack;     //  reused request buffer
    uint64_t transient;  //  transient failures seen (for the log)
    bool warned;         //  a streak of transient failures is being logged once
};

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

static void
s_write_free(s_write_t **write_p)
{
    s_write_t *write = *write_p;
    if (write) {
        free(write->stmt);
        free(write->payload);
        free(write);
        *write_p = NULL;
    }
}

cd_pwriter_t *
cd_pwriter_new(cd_actor_t *self, const char *persist, int timeout_ms)
{
    cd_pwriter_t *w = (cd_pwriter_t *)zmalloc(sizeof *w);
    w->self = self;
    w->persist = persist;
    w->timeout_ms = timeout_ms > 0 ? timeout_ms : CD_PWRITER_TIMEOUT_MS;
    w->writes = zhashx_new();
    zhashx_set_key_hasher(w->writes, s_id_hash);
    zhashx_set_key_comparator(w->writes, s_id_compare);
    zhashx_set_key_duplicator(w->writes, NULL);
    zhashx_set_key_destructor(w->writes, NULL);
    w->pack = cd_pack_new();
    return w;
}

void
cd_pwriter_destroy(cd_pwriter_t **self_p)
{
    cd_pwriter_t *w = self_p ? *self_p : NULL;
    if (!w) {
        return;
    }
    s_write_t *write;
    cd_pwriter_result_t closed = {
        .rc = CD_ECLOSED, .code = "stopped", .sqlstate = "", .message = "stopping"};
    while ((write = (s_write_t *)zhashx_first(w->writes)) != NULL) {
        zhashx_delete(w->writes, write->id);
        write->fn(w->self, &closed, write->arg);
        s_write_free(&write);
    }
    zhashx_destroy(&w->writes);
    cd_pack_destroy(&w->pack);
    free(w);
    *self_p = NULL;
}

//  Sends (or resends) a write. On a failed send it is scheduled again.
static void
s_transmit(cd_pwriter_t *w, s_write_t *write)
{
    cd_envelope_t env;
    cd_actor_envelope_init(w->self, &env, CD_KIND_TASK, w->persist);
    memcpy(env.id, write->id, CD_ENV_UUID_SIZE);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = (cd_bin_t){write->payload, (uint32_t)write->size};
    write->tries++;
    write->sent_us = zclock_usecs();
    int rc = cd_actor_send(w->self, &env);
    if (rc == 0) {
        write->due_us = 0;
        return;
    }
    write->due_us = write->sent_us + (int64_t)write->backoff_ms * 1000;
    if (write->backoff_ms < S_RETRY_MAX_MS) {
        write->backoff_ms *= 2;
    }
    w->transient++;
    if (!w->warned) {
        w->warned = true;
        cd_log_warn(cd_actor_name(w->self), "persist unreachable; writes wait", "{s:s, s:s}",
                    "stmt", write->stmt, "error", cd_errname(rc));
    }
}

void
cd_pwriter_send(cd_pwriter_t *w, const char *stmt, int nparams, const char *const *params,
                cd_pwriter_fn *fn, void *arg)
{
    cd_pack_t *pack = w->pack;
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
    cd_bin_t bytes = cd_pack_bytes(pack);
    s_write_t *write = (s_write_t *)zmalloc(sizeof *write);
    //  The id is the envelope's: take a fresh one from the actor.
    cd_envelope_t probe;
    cd_actor_envelope_init(w->self, &probe, CD_KIND_TASK, w->persist);
    memcpy(write->id, probe.id, CD_ENV_UUID_SIZE);
    write->stmt = strdup(stmt);
    write->payload = (uint8_t *)malloc(bytes.len ? bytes.len : 1);
    assert(write->stmt && write->payload);
    memcpy(write->payload, bytes.ptr, bytes.len);
    write->size = bytes.len;
    write->fn = fn;
    write->arg = arg;
    write->backoff_ms = S_RETRY_MIN_MS;
    zhashx_insert(w->writes, write->id, write);
    s_transmit(w, write);
}

//  Copies a string field of an answer into a new string ("" if absent).
static char *
s_field(cd_bin_t payload, const char *key)
{
    cd_bin_t value;
    cd_str_t str = {NULL, 0};
    if (cd_msgpack_map_find(payload, key, &value) != 0 || cd_msgpack_read_str(value, &str) != 0) {
        return NULL;
    }
    return strndup(str.ptr ? str.ptr : "", str.len);
}

bool
cd_pwriter_handle(cd_pwriter_t *w, const cd_envelope_t *env)
{
    if (env->kind != CD_KIND_RESULT && env->kind != CD_KIND_ERROR) {
        return false;
    }
    s_write_t *write = (s_write_t *)zhashx_lookup(w->writes, env->parent_id);
    if (!write) {
        return false;
    }
    char *value = NULL, *code = NULL, *sqlstate = NULL, *message = NULL;
    cd_pwriter_result_t res = {.rc = 0, .code = "", .sqlstate = "", .message = ""};
    if (env->kind == CD_KIND_RESULT) {
        value = s_field(env->payload, "value");
        res.value = value;
    } else {
        code = s_field(env->payload, "code");
        sqlstate = s_field(env->payload, "sqlstate");
        message = s_field(env->payload, "message");
        bool in_doubt = false;
        cd_bin_t field;
        if (cd_msgpack_map_find(env->payload, "in_doubt", &field) == 0) {
            cd_msgpack_read_bool(field, &in_doubt);
        }
        const char *c = code ? code : "";
        bool transient = in_doubt || streq(c, "busy") || streq(c, "db_unavailable") ||
                         streq(c, "stopped") || streq(c, "");
        if (transient) {
            //  Again later, with the same id: persist settles an in-doubt
            //  request from its record.
            write->due_us = zclock_usecs() + (int64_t)write->backoff_ms * 1000;
            if (write->backoff_ms < S_RETRY_MAX_MS) {
                write->backoff_ms *= 2;
            }
            w->transient++;
            if (!w->warned) {
                w->warned = true;
                cd_log_warn(cd_actor_name(w->self), "a write waits for the database",
                            "{s:s, s:s, s:s}", "stmt", write->stmt, "code", c, "error",
                            message ? message : "");
            }
            free(code);
            free(sqlstate);
            free(message);
            return true;
        }
        res.rc = streq(c, "db_error") ? CD_EDB : CD_EINVAL;
        res.code = c;
        res.sqlstate = sqlstate ? sqlstate : "";
        res.message = message ? message : "";
    }
    if (w->warned) {
        w->warned = false;
        cd_log_info(cd_actor_name(w->self), "writes go through again", "{s:i}", "transient",
                    (int)w->transient);
    }
    zhashx_delete(w->writes, write->id);
    write->fn(w->self, &res, write->arg);
    s_write_free(&write);
    free(value);
    free(code);
    free(sqlstate);
    free(message);
    return true;
}

void
cd_pwriter_tick(cd_pwriter_t *w)
{
    int64_t now = zclock_usecs();
    zlistx_t *due = NULL;
    for (s_write_t *write = (s_write_t *)zhashx_first(w->writes); write;
         write = (s_write_t *)zhashx_next(w->writes)) {
        bool retry = write->due_us && write->due_us <= now;
        bool lost = !write->due_us && now - write->sent_us > (int64_t)w->timeout_ms * 1000;
        if (retry || lost) {
            if (!due) {
                due = zlistx_new();
            }
            zlistx_add_end(due, write);
        }
    }
    if (!due) {
        return;
    }
    for (s_write_t *write = (s_write_t *)zlistx_first(due); write;
         write = (s_write_t *)zlistx_next(due)) {
        if (!write->due_us) {
            cd_log_warn(cd_actor_name(w->self), "a write went unanswered; sending it again",
                        "{s:s, s:i}", "stmt", write->stmt, "tries", write->tries);
        }
        s_transmit(w, write);
    }
    zlistx_destroy(&due);
}

size_t
cd_pwriter_pending(const cd_pwriter_t *w)
{
    return zhashx_size(w->writes);
}
