/*  cd_vault_actor: the node's credential vault (see cd_vault_actor.h).

    State: at most one unlocked vault (`active`), at most one vault made
    by init and not yet committed (`pending`, with its salt), the KDF job
    running on the worker thread (`running`) and those waiting for it
    (`waiting`), and the recent failed unlocks (a ring of monotonic times).

    The worker: a job (password in sodium_malloc'd memory, the record or
    the parameters) is handed to a new thread; when the KDF returns, the
    thread stores the outcome in the job and writes one byte to a pipe the
    actor watches. The actor then joins the thread, answers, and starts the
    next job. A thread per job costs nothing next to half a second of
    argon2id, and with one running at a time memory stays at one KDF's.

    Interface: cd_vault_actor_ops. */
#include "cd_vault_actor.h"

#include "cd_error.h"
#include "cd_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  Where an answer goes.
typedef struct {
    char to[CD_ENV_MAX_NAME + 1];    //  reply_to, else from
    uint8_t id[CD_ENV_UUID_SIZE];    //  the request's id (the answer's parent_id)
    uint8_t trace[CD_ENV_UUID_SIZE]; //  its trace id
    int64_t task_id;                 //  its task, 0 if none
} s_addr_t;

//  A KDF request.
typedef struct {
    bool init;                //  init (else unlock)
    s_addr_t addr;            //  whom to answer
    char *password;           //  sodium_malloc'd, wiped by sodium_free
    size_t len;               //  its length
    cd_vault_record_t record; //  unlock: the stored record; init: the new one
    cd_vault_params_t params; //  init: the KDF cost
    int rc;                   //  the outcome (worker)
    cd_vault_t *vault;        //  the vault it made, or NULL (worker)
    int wake_fd;              //  the worker writes here when done (borrowed)
} s_job_t;

typedef struct {
    cd_actor_t *self;                               //  the actor
    cd_vault_params_t params;                       //  KDF cost of a new vault
    int max_failures;                               //  failed unlocks ...
    int64_t window_us;                              //  ... within this: rate limited
    cd_vault_t *active;                             //  the unlocked vault, or NULL: locked
    cd_vault_t *pending;                            //  made by init, not yet committed
    char pending_salt[2 * CD_VAULT_SALT_BYTES + 1]; //  its salt (hex)
    s_job_t *running;                               //  the job on the worker, or NULL
    pthread_t worker;                               //  its thread, while running
    zlistx_t *waiting;                              //  s_job_t * queued behind it
    int pipe[2];                                    //  the worker's wake-up: read, write
    int64_t failures[CD_VAULT_MAX_FAILURES_CAP];    //  times of failed unlocks (ring)
    int n_failures;                                 //  entries used
    int next_failure;                               //  next slot to write
    cd_pack_t *pack;                                //  answers
} s_vault_t;

//  --- jobs ---------------------------------------------------------------------------

static void
s_job_destroy(s_job_t **job_p)
{
    s_job_t *job = *job_p;
    if (!job) {
        return;
    }
    if (job->password) {
        sodium_free(job->password);
    }
    cd_vault_destroy(&job->vault);
    sodium_memzero(job, sizeof *job);
    free(job);
    *job_p = NULL;
}

static void
s_job_free(void **item)
{
    s_job_destroy((s_job_t **)item);
}

static void *
s_worker(void *arg)
{
    s_job_t *job = (s_job_t *)arg;
    if (job->init) {
        job->rc = cd_vault_create(job->password, job->len, &job->params, &job->record, &job->vault);
    } else {
        job->rc = cd_vault_unlock(&job->record, job->password, job->len, &job->vault);
    }
    //  The password is not needed any more: wipe it before waking the actor.
    sodium_free(job->password);
    job->password = NULL;
    char byte = 1;
    while (write(job->wake_fd, &byte, 1) < 0 && errno == EINTR) {
    }
    return NULL;
}

//  --- answers ------------------------------------------------------------------------

static void
s_addr(const cd_envelope_t *env, s_addr_t *addr)
{
    cd_str_t to;
    if (!cd_envelope_header(env, "reply_to", &to)) {
        to = env->from;
    }
    snprintf(addr->to, sizeof addr->to, "%.*s", (int)to.len, to.ptr ? to.ptr : "");
    memcpy(addr->id, env->id, CD_ENV_UUID_SIZE);
    memcpy(addr->trace, env->trace_id, CD_ENV_UUID_SIZE);
    addr->task_id = env->task_id;
}

//  Sends what v->pack holds. secret: the payload carries a clear value:
//  it travels as its own frame (not through the mailer's reused buffer)
//  and the pack's bytes are wiped after the send.
static void
s_send(s_vault_t *v, const s_addr_t *addr, cd_kind_t kind, bool secret)
{
    cd_envelope_t out;
    cd_actor_envelope_init(v->self, &out, kind, addr->to);
    memcpy(out.parent_id, addr->id, CD_ENV_UUID_SIZE);
    memcpy(out.trace_id, addr->trace, CD_ENV_UUID_SIZE);
    out.task_id = addr->task_id;
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(v->pack);
    out.payload_in_frame = secret;
    int rc = cd_actor_send(v->self, &out);
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(v->self), "answer not delivered", "{s:s, s:s}", "to", addr->to,
                    "error", cd_errname(rc));
    }
    if (secret) {
        cd_bin_t bytes = cd_pack_bytes(v->pack);
        sodium_memzero((void *)bytes.ptr, bytes.len);
    }
    cd_pack_reset(v->pack);
}

static void
s_ok(s_vault_t *v, const s_addr_t *addr)
{
    cd_pack_reset(v->pack);
    cd_pack_map(v->pack, 0);
    s_send(v, addr, CD_KIND_RESULT, false);
}

static void
s_error(s_vault_t *v, const s_addr_t *addr, const char *code, const char *message,
        int64_t retry_after_s)
{
    cd_pack_reset(v->pack);
    cd_pack_map(v->pack, retry_after_s > 0 ? 3 : 2);
    cd_pack_cstr(v->pack, "code");
    cd_pack_cstr(v->pack, code);
    cd_pack_cstr(v->pack, "message");
    cd_pack_cstr(v->pack, message);
    if (retry_after_s > 0) {
        cd_pack_cstr(v->pack, "retry_after_s");
        cd_pack_int(v->pack, retry_after_s);
    }
    s_send(v, addr, CD_KIND_ERROR, false);
}

//  --- rate limit ---------------------------------------------------------------------

//  Microseconds until unlocking is allowed again, 0 if it is now.
static int64_t
s_blocked_us(const s_vault_t *v, int64_t now)
{
    if (v->n_failures < v->max_failures) {
        return 0;
    }
    //  The ring is full: next_failure is the oldest of the last max_failures.
    int64_t oldest = v->failures[v->next_failure];
    int64_t left = oldest + v->window_us - now;
    return left > 0 ? left : 0;
}

static void
s_failure(s_vault_t *v, int64_t now)
{
    v->failures[v->next_failure] = now;
    v->next_failure = (v->next_failure + 1) % v->max_failures;
    if (v->n_failures < v->max_failures) {
        v->n_failures++;
    }
}

//  Answers rate_limited and returns true if unlocks are blocked now.
static bool
s_rate_limited(s_vault_t *v, const s_addr_t *addr)
{
    int64_t left = s_blocked_us(v, zclock_usecs());
    if (left == 0) {
        return false;
    }
    s_error(v, addr, "rate_limited", "too many wrong master passwords; retry later",
            (left + 999999) / 1000000);
    return true;
}

//  --- the KDF jobs -------------------------------------------------------------------

static void
s_start_next(s_vault_t *v)
{
    while (!v->running && zlistx_size(v->waiting) > 0) {
        s_job_t *job = (s_job_t *)zlistx_detach(v->waiting, NULL);
        //  Failures may have come in while it waited.
        if (!job->init && s_rate_limited(v, &job->addr)) {
            s_job_destroy(&job);
            continue;
        }
        job->wake_fd = v->pipe[1];
        if (pthread_create(&v->worker, NULL, s_worker, job) != 0) {
            s_error(v, &job->addr, "busy", "no thread for the key derivation", 0);
            s_job_destroy(&job);
            continue;
        }
        v->running = job;
    }
}

//  Queues a KDF request (takes ownership of *job_p).
static void
s_submit(s_vault_t *v, s_job_t **job_p)
{
    s_job_t *job = *job_p;
    *job_p = NULL;
    if (zlistx_size(v->waiting) >= CD_VAULT_MAX_WAITING) {
        s_error(v, &job->addr, "busy", "the vault is busy deriving keys; retry later", 1);
        s_job_destroy(&job);
        return;
    }
    zlistx_add_end(v->waiting, job);
    s_start_next(v);
}

//  The worker finished: answer its job, start the next.
static int
s_on_wake(cd_actor_t *self, void *socket, void *arg)
{
    s_vault_t *v = (s_vault_t *)arg;
    char bytes[8];
    while (read(v->pipe[0], bytes, sizeof bytes) < 0 && errno == EINTR) {
    }
    s_job_t *job = v->running;
    if (!job) {
        return 0;
    }
    pthread_join(v->worker, NULL);
    v->running = NULL;
    if (job->init) {
        if (job->rc != 0) {
            s_error(v, &job->addr, "invalid", cd_strerror(job->rc), 0);
        } else {
            cd_vault_destroy(&v->pending);
            v->pending = job->vault;
            job->vault = NULL;
            sodium_bin2hex(v->pending_salt, sizeof v->pending_salt, job->record.salt,
                           CD_VAULT_SALT_BYTES);
            char *record = NULL;
            cd_vault_record_to_json(&job->record, &record);
            cd_pack_reset(v->pack);
            cd_pack_map(v->pack, 2);
            cd_pack_cstr(v->pack, "record");
            cd_pack_cstr(v->pack, record);
            cd_pack_cstr(v->pack, "salt");
            cd_pack_cstr(v->pack, v->pending_salt);
            free(record);
            s_send(v, &job->addr, CD_KIND_RESULT, false);
            cd_log_info(cd_actor_name(self), "vault created, awaiting its record's commit", NULL);
        }
    } else if (job->rc == 0) {
        cd_vault_destroy(&v->active);
        v->active = job->vault;
        job->vault = NULL;
        v->n_failures = 0;
        v->next_failure = 0;
        cd_log_info(cd_actor_name(self), "vault unlocked", NULL);
        s_ok(v, &job->addr);
    } else if (job->rc == CD_EPERM) {
        s_failure(v, zclock_usecs());
        cd_log_warn(cd_actor_name(self), "unlock refused: wrong master password", "{s:i}",
                    "recent_failures", v->n_failures);
        s_error(v, &job->addr, "unauthenticated", "wrong master password", 0);
    } else {
        s_error(v, &job->addr, "invalid", cd_strerror(job->rc), 0);
    }
    s_job_destroy(&job);
    s_start_next(v);
    return 0;
}

//  --- requests -----------------------------------------------------------------------

//  A string field of the payload, or false.
static bool
s_field(const cd_envelope_t *env, const char *key, cd_str_t *out)
{
    cd_bin_t value;
    return env->payload_type == CD_PAYLOAD_MAP &&
           cd_msgpack_map_find(env->payload, key, &value) == 0 &&
           cd_msgpack_read_str(value, out) == 0 && out->ptr;
}

//  A new job with a copy of the password field, or NULL after answering.
static s_job_t *
s_job_new(s_vault_t *v, const cd_envelope_t *env, const s_addr_t *addr, bool init)
{
    cd_str_t password;
    if (!s_field(env, "password", &password)) {
        s_error(v, addr, "invalid", "password: required (a string)", 0);
        return NULL;
    }
    if (password.len > CD_VAULT_PASSWORD_MAX) {
        s_error(v, addr, "too_big", "password: too long", 0);
        return NULL;
    }
    s_job_t *job = (s_job_t *)zmalloc(sizeof *job);
    job->init = init;
    job->addr = *addr;
    job->params = v->params;
    job->len = password.len;
    job->password = (char *)sodium_malloc(password.len + 1);
    assert(job->password);
    memcpy(job->password, password.ptr, password.len);
    job->password[password.len] = '\0';
    return job;
}

static void
s_on_init(s_vault_t *v, const cd_envelope_t *env, const s_addr_t *addr)
{
    s_job_t *job = s_job_new(v, env, addr, true);
    if (job) {
        s_submit(v, &job);
    }
}

static void
s_on_unlock(s_vault_t *v, const cd_envelope_t *env, const s_addr_t *addr)
{
    cd_str_t text;
    if (!s_field(env, "record", &text) || text.len > 1024) {
        s_error(v, addr, "invalid", "record: required (the vault record as JSON)", 0);
        return;
    }
    char record_json[1025];
    memcpy(record_json, text.ptr, text.len);
    record_json[text.len] = '\0';
    cd_vault_record_t record;
    const char *why = NULL;
    if (cd_vault_record_from_json(record_json, &record, &why) != 0) {
        s_error(v, addr, "invalid", why ? why : "record: malformed", 0);
        return;
    }
    if (s_rate_limited(v, addr)) {
        return;
    }
    s_job_t *job = s_job_new(v, env, addr, false);
    if (job) {
        job->record = record;
        s_submit(v, &job);
    }
}

//  commit (make the pending vault the unlocked one) or abort (drop it).
static void
s_on_settle(s_vault_t *v, const cd_envelope_t *env, const s_addr_t *addr, bool commit)
{
    cd_str_t salt;
    if (!s_field(env, "salt", &salt)) {
        s_error(v, addr, "invalid", "salt: required", 0);
        return;
    }
    bool match = v->pending && salt.len == strlen(v->pending_salt) &&
                 memcmp(salt.ptr, v->pending_salt, salt.len) == 0;
    if (!match) {
        if (commit) {
            s_error(v, addr, "not_pending", "no pending vault with this salt", 0);
        } else {
            s_ok(v, addr);
        }
        return;
    }
    if (commit) {
        cd_vault_destroy(&v->active);
        v->active = v->pending;
        v->pending = NULL;
        cd_log_info(cd_actor_name(v->self), "vault initialised and unlocked", NULL);
    } else {
        cd_vault_destroy(&v->pending);
    }
    v->pending_salt[0] = '\0';
    s_ok(v, addr);
}

static void
s_on_lock(s_vault_t *v, const s_addr_t *addr)
{
    bool was = v->active != NULL;
    cd_vault_destroy(&v->active);
    cd_vault_destroy(&v->pending);
    v->pending_salt[0] = '\0';
    if (was) {
        cd_log_info(cd_actor_name(v->self), "vault locked", NULL);
    }
    s_ok(v, addr);
}

static void
s_on_status(s_vault_t *v, const s_addr_t *addr)
{
    cd_pack_reset(v->pack);
    cd_pack_map(v->pack, 2);
    cd_pack_cstr(v->pack, "locked");
    cd_pack_bool(v->pack, v->active == NULL);
    cd_pack_cstr(v->pack, "busy");
    cd_pack_bool(v->pack, v->running != NULL);
    s_send(v, addr, CD_KIND_RESULT, false);
}

typedef struct {
    s_vault_t *v;
    cd_pack_t *out; //  the sealed values, as map entries
    uint32_t n;     //  entries in out
    int rc;         //  first failure
    char why[96];   //  its message
} s_seal_t;

static int
s_seal_entry(cd_bin_t key, cd_bin_t value, void *arg)
{
    s_seal_t *seal = (s_seal_t *)arg;
    cd_str_t name, plain;
    if (cd_msgpack_read_str(key, &name) != 0 || cd_msgpack_read_str(value, &plain) != 0) {
        seal->rc = CD_EPROTO;
        snprintf(seal->why, sizeof seal->why, "values: names and values must be strings");
        return CD_EPROTO;
    }
    char *hex = NULL;
    int rc = cd_vault_seal(seal->v->active, plain.ptr ? plain.ptr : "", plain.len, &hex);
    if (rc != 0) {
        seal->rc = rc;
        snprintf(seal->why, sizeof seal->why, "values.%.*s: too long to seal",
                 (int)(name.len < 64 ? name.len : 64), name.ptr ? name.ptr : "");
        return rc;
    }
    cd_pack_str(seal->out, name.ptr ? name.ptr : "", name.len);
    cd_pack_cstr(seal->out, hex);
    free(hex);
    seal->n++;
    return 0;
}

static void
s_on_seal(s_vault_t *v, const cd_envelope_t *env, const s_addr_t *addr)
{
    if (!v->active) {
        s_error(v, addr, "vault_locked", "the vault is locked", 0);
        return;
    }
    cd_bin_t values;
    if (env->payload_type != CD_PAYLOAD_MAP ||
        cd_msgpack_map_find(env->payload, "values", &values) != 0) {
        s_error(v, addr, "invalid", "values: required (a map)", 0);
        return;
    }
    s_seal_t seal = {.v = v, .out = cd_pack_new()};
    if (cd_msgpack_map_each(values, s_seal_entry, &seal) != 0) {
        bool big = seal.rc == CD_ETOOBIG;
        s_error(v, addr, big ? "too_big" : "invalid",
                seal.why[0] ? seal.why : "values: must be a map", 0);
        cd_pack_destroy(&seal.out);
        return;
    }
    cd_pack_reset(v->pack);
    cd_pack_map(v->pack, 1);
    cd_pack_cstr(v->pack, "sealed");
    cd_pack_map(v->pack, seal.n);
    cd_bin_t entries = cd_pack_bytes(seal.out);
    cd_pack_raw(v->pack, entries.ptr, entries.len);
    cd_pack_destroy(&seal.out);
    s_send(v, addr, CD_KIND_RESULT, false);
}

static void
s_on_open(s_vault_t *v, const cd_envelope_t *env, const s_addr_t *addr)
{
    if (!v->active) {
        s_error(v, addr, "vault_locked", "the vault is locked", 0);
        return;
    }
    cd_str_t sealed;
    if (!s_field(env, "sealed", &sealed) || sealed.len > 2 * CD_VAULT_SEALED_MAX) {
        s_error(v, addr, "invalid", "sealed: required (a sealed value, hex)", 0);
        return;
    }
    char *hex = (char *)malloc(sealed.len + 1);
    assert(hex);
    memcpy(hex, sealed.ptr, sealed.len);
    hex[sealed.len] = '\0';
    char *plain = NULL;
    size_t len = 0;
    int rc = cd_vault_open(v->active, hex, &plain, &len);
    free(hex);
    if (rc != 0) {
        s_error(v, addr, "bad_secret", "not a value this vault sealed, or altered", 0);
        return;
    }
    cd_pack_reset(v->pack);
    cd_pack_map(v->pack, 1);
    cd_pack_cstr(v->pack, "value");
    cd_pack_str(v->pack, plain, len);
    cd_vault_secret_free(&plain);
    s_send(v, addr, CD_KIND_RESULT, true);
}

static bool
s_is_remote(cd_str_t name)
{
    return name.len >= 5 && memcmp(name.ptr, "node/", 5) == 0;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_vault_t *v = (s_vault_t *)state;
    if (env->kind != CD_KIND_TASK && env->kind != CD_KIND_CONTROL) {
        return 0;
    }
    cd_str_t reply_to = {NULL, 0};
    cd_envelope_header(env, "reply_to", &reply_to);
    if (s_is_remote(env->from) || s_is_remote(reply_to)) {
        cd_log_warn(cd_actor_name(self), "request from another node refused", "{s:s%}", "from",
                    env->from.ptr ? env->from.ptr : "", (size_t)env->from.len);
        return 0;
    }
    cd_str_t op = {NULL, 0};
    if (!cd_envelope_header(env, "op", &op)) {
        return 0;
    }
    s_addr_t addr = {0};
    s_addr(env, &addr);
    if (cd_str_eq(op, "status")) {
        s_on_status(v, &addr);
    } else if (cd_str_eq(op, "init")) {
        s_on_init(v, env, &addr);
    } else if (cd_str_eq(op, "commit") || cd_str_eq(op, "abort")) {
        s_on_settle(v, env, &addr, cd_str_eq(op, "commit"));
    } else if (cd_str_eq(op, "unlock")) {
        s_on_unlock(v, env, &addr);
    } else if (cd_str_eq(op, "lock")) {
        s_on_lock(v, &addr);
    } else if (cd_str_eq(op, "seal")) {
        s_on_seal(v, env, &addr);
    } else if (cd_str_eq(op, "open")) {
        s_on_open(v, env, &addr);
    } else {
        s_error(v, &addr, "invalid", "unknown op", 0);
    }
    return 0;
}

//  --- the actor ----------------------------------------------------------------------

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_vault_actor_args_t *a = (const cd_vault_actor_args_t *)args;
    if (a &&
        (a->max_failures < 0 || a->max_failures > CD_VAULT_MAX_FAILURES_CAP || a->window_ms < 0)) {
        *why = "vault: max_failures must be 0..64 and window_ms >= 0";
        return CD_EINVAL;
    }
    if (sodium_init() < 0) {
        *why = "libsodium did not initialise";
        return CD_ENOMEM;
    }
    s_vault_t *v = (s_vault_t *)zmalloc(sizeof *v);
    v->self = self;
    v->params =
        a && a->params ? *a->params : (cd_vault_params_t){CD_VAULT_OPSLIMIT, CD_VAULT_MEMLIMIT};
    v->max_failures = a && a->max_failures ? a->max_failures : CD_VAULT_MAX_FAILURES;
    v->window_us = (int64_t)(a && a->window_ms ? a->window_ms : CD_VAULT_FAILURE_WINDOW_MS) * 1000;
    if (pipe2(v->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(v);
        *why = "vault: no pipe for the worker";
        return CD_EIO;
    }
    v->waiting = zlistx_new();
    zlistx_set_destructor(v->waiting, s_job_free);
    v->pack = cd_pack_new();
    cd_actor_watch_fd(self, v->pipe[0], s_on_wake, v);
    *state_p = v;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_vault_t *v = (s_vault_t *)*state_p;
    if (!v) {
        return;
    }
    cd_actor_unwatch_fd(self, v->pipe[0]);
    if (v->running) {
        //  At most one KDF's time (under a second): the job must not be
        //  freed under the worker's feet.
        pthread_join(v->worker, NULL);
        s_job_destroy(&v->running);
    }
    zlistx_destroy(&v->waiting);
    bool was = v->active != NULL;
    cd_vault_destroy(&v->active);
    cd_vault_destroy(&v->pending);
    if (was) {
        cd_log_info(cd_actor_name(self), "vault wiped at stop", NULL);
    }
    close(v->pipe[0]);
    close(v->pipe[1]);
    cd_pack_destroy(&v->pack);
    sodium_memzero(v, sizeof *v);
    free(v);
    *state_p = NULL;
}

const cd_actor_ops_t cd_vault_actor_ops = {
    .kind = "vault",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
