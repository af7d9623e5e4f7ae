/*  cd_stats: writes a statistics snapshot through persist every interval
    (see cd_stats.h).

    A timer sends one persist request per interval and remembers its id;
    the answer (matched by parent_id) is counted as written or failed. An
    answer that never comes is not waited for: the next tick sends a new
    request anyway, and the request's deadline has made persist drop the
    old one. */
#include "cd_stats.h"

#include "cd_error.h"
#include "cd_log.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    cd_actor_t *self;               //  this actor
    const cd_stats_args_t *args;    //  borrowed
    const char *persist;            //  where snapshots go
    int interval_ms;                //  between snapshots
    int64_t started_us;             //  node start (monotonic µs)
    cd_pack_t *pack;                //  reused request buffer
    uint8_t last[CD_ENV_UUID_SIZE]; //  the last request's id
    uint64_t sent;                  //  requests sent
    uint64_t written;               //  snapshots committed
    uint64_t failed;                //  requests not sent or refused
    char last_error[128];           //  why the last one failed, "" if none did
} s_stats_t;

static void
s_failed(s_stats_t *st, const char *why)
{
    st->failed++;
    //  Once per failure streak is enough for the log.
    if (!st->last_error[0]) {
        cd_log_warn(cd_actor_name(st->self), "statistics snapshot not written", "{s:s}", "error",
                    why);
    }
    snprintf(st->last_error, sizeof st->last_error, "%s", why);
}

static int
s_tick(cd_actor_t *self, void *arg)
{
    s_stats_t *st = (s_stats_t *)arg;
    char extra[64];
    snprintf(extra, sizeof extra, "{\"uptime_s\": %.3f}",
             (double)(zclock_usecs() - st->started_us) / 1e6);
    cd_pack_t *pack = st->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "stmt");
    cd_pack_cstr(pack, "stats.snapshot");
    cd_pack_cstr(pack, "params");
    cd_pack_array(pack, 2);
    if (st->args->node_id) {
        cd_pack_cstr(pack, st->args->node_id);
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, extra);
    cd_envelope_t env;
    cd_actor_envelope_init(self, &env, CD_KIND_TASK, st->persist);
    env.deadline = cd_now_us() + (int64_t)st->interval_ms * 1000;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_actor_send(self, &env);
    if (rc != 0) {
        s_failed(st, cd_strerror(rc));
        return 0;
    }
    memcpy(st->last, env.id, CD_ENV_UUID_SIZE);
    st->sent++;
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_stats_args_t *a = (const cd_stats_args_t *)args;
    if (!a) {
        *why = "stats: no arguments";
        return CD_EINVAL;
    }
    s_stats_t *st = (s_stats_t *)zmalloc(sizeof *st);
    st->self = self;
    st->args = a;
    st->persist = a->persist ? a->persist : "persist";
    st->interval_ms = a->interval_ms > 0 ? a->interval_ms : CD_STATS_INTERVAL_MS;
    st->started_us = a->started_us > 0 ? a->started_us : zclock_usecs();
    st->pack = cd_pack_new();
    cd_actor_every(self, st->interval_ms, s_tick, st);
    *state_p = st;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_stats_t *st = (s_stats_t *)*state_p;
    if (st) {
        cd_pack_destroy(&st->pack);
        free(st);
        *state_p = NULL;
    }
}

//  Answers `op: stats` with the counters.
static void
s_answer(s_stats_t *st, const cd_envelope_t *env)
{
    cd_pack_t *pack = st->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 4);
    cd_pack_cstr(pack, "sent");
    cd_pack_uint(pack, st->sent);
    cd_pack_cstr(pack, "written");
    cd_pack_uint(pack, st->written);
    cd_pack_cstr(pack, "failed");
    cd_pack_uint(pack, st->failed);
    cd_pack_cstr(pack, "last_error");
    cd_pack_cstr(pack, st->last_error);
    cd_str_t reply;
    if (!cd_envelope_header(env, "reply_to", &reply)) {
        reply = env->from;
    }
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "%.*s", (int)reply.len, reply.ptr ? reply.ptr : "");
    cd_envelope_t out;
    cd_actor_envelope_init(st->self, &out, CD_KIND_RESULT, to);
    memcpy(out.parent_id, env->id, CD_ENV_UUID_SIZE);
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(pack);
    cd_actor_send(st->self, &out);
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_stats_t *st = (s_stats_t *)state;
    cd_str_t op = {NULL, 0};
    if (env->kind == CD_KIND_CONTROL && cd_envelope_header(env, "op", &op) &&
        cd_str_eq(op, "stats")) {
        s_answer(st, env);
        return 0;
    }
    if ((env->kind != CD_KIND_RESULT && env->kind != CD_KIND_ERROR) ||
        memcmp(env->parent_id, st->last, CD_ENV_UUID_SIZE) != 0) {
        return 0; //  a late answer to an earlier request, or not for us
    }
    if (env->kind == CD_KIND_RESULT) {
        st->written++;
        if (st->last_error[0]) {
            cd_log_info(cd_actor_name(self), "statistics snapshots written again", NULL);
            st->last_error[0] = '\0';
        }
        return 0;
    }
    char why[128] = "refused";
    cd_bin_t field;
    cd_str_t text;
    if (cd_msgpack_map_find(env->payload, "message", &field) == 0 &&
        cd_msgpack_read_str(field, &text) == 0) {
        snprintf(why, sizeof why, "%.*s", (int)text.len, text.ptr ? text.ptr : "");
    }
    s_failed(st, why);
    return 0;
}

const cd_actor_ops_t cd_stats_ops = {
    .kind = "stats",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
