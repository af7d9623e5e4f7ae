/*  cd_deadletter: counts and keeps undeliverable messages (see the header). */
#include "cd_deadletter.h"
#include "cd_error.h"
#include "cd_log.h"

typedef struct {
    int64_t ts;      //  when it was recorded (µs)
    char to[128];    //  intended receiver
    char reason[32]; //  why it was not delivered
    uint32_t size;   //  size of the original message
} s_record_t;

typedef struct {
    s_record_t recent[CD_DEADLETTER_KEEP]; //  ring of the latest records
    uint64_t total;                        //  all records
    zhashx_t *by_reason;                   //  reason -> count (uint64_t *)
    cd_pack_t *pack;                       //  reused answer buffer
} s_dl_t;

static void
s_count_destroy(void **item)
{
    free(*item);
    *item = NULL;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    s_dl_t *dl = (s_dl_t *)zmalloc(sizeof *dl);
    dl->by_reason = zhashx_new();
    zhashx_set_destructor(dl->by_reason, s_count_destroy);
    dl->pack = cd_pack_new();
    *state_p = dl;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_dl_t *dl = (s_dl_t *)*state_p;
    if (dl) {
        zhashx_destroy(&dl->by_reason);
        cd_pack_destroy(&dl->pack);
        free(dl);
        *state_p = NULL;
    }
}

static int
s_answer_stats(cd_actor_t *self, s_dl_t *dl, const cd_envelope_t *env)
{
    cd_pack_reset(dl->pack);
    cd_pack_map(dl->pack, 2);
    cd_pack_cstr(dl->pack, "total");
    cd_pack_uint(dl->pack, dl->total);
    cd_pack_cstr(dl->pack, "reasons");
    cd_pack_map(dl->pack, (uint32_t)zhashx_size(dl->by_reason));
    for (uint64_t *count = (uint64_t *)zhashx_first(dl->by_reason); count;
         count = (uint64_t *)zhashx_next(dl->by_reason)) {
        cd_pack_cstr(dl->pack, (const char *)zhashx_cursor(dl->by_reason));
        cd_pack_uint(dl->pack, *count);
    }
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "%.*s", (int)env->from.len, env->from.ptr);
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_RESULT, to);
    memcpy(out.parent_id, env->id, sizeof env->id);
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(dl->pack);
    cd_actor_send(self, &out);
    return 0;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_dl_t *dl = (s_dl_t *)state;
    if (env->kind != CD_KIND_CONTROL) {
        return 0;
    }
    cd_str_t op = {NULL, 0};
    cd_envelope_header(env, "op", &op);
    if (op.ptr) {
        return cd_str_eq(op, "stats") ? s_answer_stats(self, dl, env) : 0;
    }
    cd_str_t reason = {NULL, 0};
    cd_envelope_header(env, "reason", &reason);
    cd_str_t to = {NULL, 0};
    cd_envelope_header(env, "to", &to);
    s_record_t *record = &dl->recent[dl->total % CD_DEADLETTER_KEEP];
    record->ts = env->ts;
    snprintf(record->to, sizeof record->to, "%.*s", (int)to.len, to.ptr ? to.ptr : "");
    snprintf(record->reason, sizeof record->reason, "%.*s", (int)reason.len,
             reason.ptr ? reason.ptr : "unknown");
    record->size = env->payload.len;
    dl->total++;
    uint64_t *count = (uint64_t *)zhashx_lookup(dl->by_reason, record->reason);
    if (!count) {
        count = (uint64_t *)zmalloc(sizeof *count);
        zhashx_insert(dl->by_reason, record->reason, count);
    }
    (*count)++;
    cd_log_info(cd_actor_name(self), "dead letter recorded", "{s:s, s:s, s:i}", "to", record->to,
                "reason", record->reason, "total", (int)dl->total);
    return 0;
}

const cd_actor_ops_t cd_deadletter_ops = {
    .kind = "deadletter",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
