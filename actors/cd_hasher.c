/*  cd_hasher: password jobs off the HTTP thread and the api actors (see
    cd_hasher.h).

    One job at a time per actor, synchronously: the runtime answers the
    supervisor's heartbeats between jobs, and a job lasts about 100 ms per
    hash, far below the heartbeat timeout. The actor's thread runs at a
    lower scheduling priority (nice +S_NICE): under a login flood the
    hashes take whatever CPU the node does not need, and the HTTP thread,
    the api actors and persist keep serving everyone else. Passwords are copied into
    locked memory for the job and wiped after it; the envelope bytes that
    carried them are ZeroMQ's and freed with the message.

    Interface: cd_hasher_ops. */
#include "cd_hasher.h"

#include "cd_error.h"
#include "cd_log.h"
#include "cd_password.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define S_MAX_REJECT 16 //  history hashes one job may carry
#define S_NICE 10       //  the hashing thread's niceness

typedef struct {
    cd_actor_t *self;
    cd_pack_t *pack; //  reused for answers
} s_hasher_t;

static void
s_reply(s_hasher_t *h, const cd_envelope_t *req, cd_kind_t kind)
{
    cd_str_t to;
    if (!cd_envelope_header(req, "reply_to", &to)) {
        to = req->from;
    }
    char name[CD_ENV_MAX_NAME + 1];
    snprintf(name, sizeof name, "%.*s", (int)to.len, to.ptr ? to.ptr : "");
    cd_envelope_t out;
    cd_actor_envelope_init(h->self, &out, kind, name);
    memcpy(out.parent_id, req->id, CD_ENV_UUID_SIZE);
    memcpy(out.trace_id, req->trace_id, CD_ENV_UUID_SIZE);
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(h->pack);
    int rc = cd_actor_send(h->self, &out);
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(h->self), "answer not delivered", "{s:s}", "error",
                    cd_strerror(rc));
    }
}

static void
s_error(s_hasher_t *h, const cd_envelope_t *req, const char *code, const char *message)
{
    cd_pack_reset(h->pack);
    cd_pack_map(h->pack, 2);
    cd_pack_cstr(h->pack, "code");
    cd_pack_cstr(h->pack, code);
    cd_pack_cstr(h->pack, "message");
    cd_pack_cstr(h->pack, message);
    s_reply(h, req, CD_KIND_ERROR);
}

//  A hash string of the payload into buf (NUL-terminated). False if it
//  does not fit (no valid hash is that long).
static bool
s_copy_hash(cd_str_t str, char buf[CD_PASSWORD_HASH_MAX])
{
    if (str.len >= CD_PASSWORD_HASH_MAX) {
        return false;
    }
    memcpy(buf, str.ptr ? str.ptr : "", str.len);
    buf[str.len] = '\0';
    return true;
}

//  Runs the job's steps. Returns 0 with *ok, *reused and hash (empty if
//  none) set, or an error code with *why.
static int
s_job(cd_bin_t payload, const char *pw, size_t pw_len, bool *ok, bool *reused,
      char hash[CD_PASSWORD_HASH_MAX], const char **why)
{
    cd_bin_t value;
    cd_str_t str;
    *ok = true;
    *reused = false;
    hash[0] = '\0';
    if (cd_msgpack_map_find(payload, "verify", &value) == 0) {
        char stored[CD_PASSWORD_HASH_MAX];
        if (cd_msgpack_read_str(value, &str) == 0) {
            //  An over-long stored hash cannot verify: as a wrong password.
            *ok = s_copy_hash(str, stored) && cd_password_verify(stored, pw, pw_len);
        } else {
            *ok = cd_password_verify(NULL, pw, pw_len); //  same cost, false
        }
        if (!*ok) {
            return 0;
        }
    }
    if (cd_msgpack_map_find(payload, "reject", &value) == 0 &&
        cd_msgpack_read_str(value, &str) == 0) {
        const char *p = str.ptr, *end = str.ptr + str.len;
        for (int n = 0; p && p < end && n < S_MAX_REJECT && !*reused; n++) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            char old[CD_PASSWORD_HASH_MAX];
            if (len > 0 && s_copy_hash((cd_str_t){p, len}, old)) {
                *reused = cd_password_verify(old, pw, pw_len);
            }
            p = nl ? nl + 1 : NULL;
        }
        if (*reused) {
            return 0;
        }
    }
    bool want = false;
    if (cd_msgpack_map_find(payload, "hash", &value) == 0 &&
        cd_msgpack_read_bool(value, &want) == 0 && want) {
        int rc = cd_password_hash(pw, pw_len, hash);
        if (rc != 0) {
            *why = rc == CD_ETOOBIG ? "password too long" : "argon2id could not run";
            return rc;
        }
    }
    return 0;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_hasher_t *h = (s_hasher_t *)state;
    if (env->kind != CD_KIND_TASK) {
        return 0;
    }
    if (env->deadline > 0 && cd_now_us() > env->deadline) {
        s_error(h, env, "busy", "the job waited beyond its deadline");
        return 0;
    }
    cd_bin_t value;
    cd_str_t pw;
    if (env->payload_type != CD_PAYLOAD_MAP ||
        cd_msgpack_map_find(env->payload, "pw", &value) != 0 ||
        cd_msgpack_read_str(value, &pw) != 0 || pw.len > CD_PASSWORD_MAX_BYTES) {
        s_error(h, env, "bad_request", "no password, or one over the size limit");
        return 0;
    }
    //  The password in locked memory for the job (never swapped out), wiped
    //  after it.
    char *copy = (char *)sodium_malloc(pw.len + 1);
    if (!copy) {
        s_error(h, env, "failed", "out of memory");
        return 0;
    }
    memcpy(copy, pw.ptr ? pw.ptr : "", pw.len);
    copy[pw.len] = '\0';
    bool ok = false, reused = false;
    char hash[CD_PASSWORD_HASH_MAX];
    const char *why = NULL;
    int rc = s_job(env->payload, copy, pw.len, &ok, &reused, hash, &why);
    sodium_free(copy);
    if (rc != 0) {
        s_error(h, env, "failed", why ? why : cd_strerror(rc));
        return 0;
    }
    cd_pack_reset(h->pack);
    cd_pack_map(h->pack, hash[0] ? 3 : 2);
    cd_pack_cstr(h->pack, "ok");
    cd_pack_bool(h->pack, ok);
    cd_pack_cstr(h->pack, "reused");
    cd_pack_bool(h->pack, reused);
    if (hash[0]) {
        cd_pack_cstr(h->pack, "hash");
        cd_pack_cstr(h->pack, hash);
    }
    s_reply(h, env, CD_KIND_RESULT);
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    //  Linux: a thread's nice value is its own (setpriority on its tid).
    //  Not fatal: hashing at the normal priority only serves others less.
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), S_NICE) != 0) {
        cd_log_debug(cd_actor_name(self), "could not lower the hashing priority", NULL);
    }
    s_hasher_t *h = (s_hasher_t *)zmalloc(sizeof *h);
    h->self = self;
    h->pack = cd_pack_new();
    *state_p = h;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_hasher_t *h = (s_hasher_t *)*state_p;
    if (!h) {
        return;
    }
    cd_pack_destroy(&h->pack);
    free(h);
    *state_p = NULL;
}

const cd_actor_ops_t cd_hasher_ops = {
    .kind = "hasher",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
