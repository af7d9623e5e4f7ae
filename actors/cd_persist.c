/*  cd_persist: the persist actor (see cd_persist.h for the wire format and
    the batching policy).

    Two threads. The actor's own thread takes requests, validates and queues
    them, and answers; a writer thread it owns (a zactor) holds the cd_batch
    connection and runs one job at a time: a batch, a connect, a prune. A
    job travels to the writer and back as a pointer over the writer's pipe,
    so exactly one thread owns it at any moment, and the actor watches that
    pipe from its loop like any socket. While the writer commits batch N the
    actor keeps taking requests for batch N+1; when N comes back, N+1 is
    sent at once and only then are N's requesters answered, so the answers
    overlap the next commit. The actor's loop never waits on the database:
    heartbeats and `stats` are answered during a commit too.

    State: a FIFO of pending requests (a ring bounded by queue_limit plus one
    batch, so a batch that lost its connection always fits back at the
    head), two jobs (one with the writer, one being answered), and timers:
      tick       0 ms, while requests wait, the database is up and the writer
                 idle: runs once per loop turn, after the turn's messages, and
                 sends a batch when the turn brought none (the inbox is
                 quiet), when a batch is full, or when the oldest request has
                 waited batch_wait_ms
      reconnect  one-shot with exponential backoff while the database is away
      sweep      every wait_timeout_ms / 4 (10-250 ms): fails requests past
                 their time (db_unavailable, or busy if the database is up)
      prune      every prune_interval_s: deletes old request records, and
                 events and stats history past their retention

    A pending request is one allocation: the record, its parameter pointers
    and lengths, the reply address and the parameter texts, so a request
    costs one malloc and one free. */
#include "cd_persist.h"
#include "cd_batch.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_mailer.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_PRUNE_CHUNK 10000 //  records deleted per prune statement

typedef struct {
    cd_batch_req_t req;                 //  what cd_batch runs; values point into this allocation
    char *reply_to;                     //  where the answer goes (in this allocation)
    int64_t task_id;                    //  copied to the answer
    uint8_t trace_id[CD_ENV_UUID_SIZE]; //  copied to the answer
    int64_t arrived_us;                 //  monotonic, when handled
    int64_t expires_us; //  monotonic, when it fails if still waiting for the database
    bool errors_only;   //  header ack=errors: no answer when it succeeds
} s_pending_t;

typedef struct {
    s_pending_t **slot; //  circular
    size_t cap;         //  slots
    size_t head;        //  index of the first
    size_t count;       //  entries
} s_ring_t;

//  A name requests may give, and the cd_batch target it stands for.
typedef struct {
    const char *name; //  borrowed from the arguments
    bool is_table;    //  a "table" name (else a "stmt" name)
    int target;       //  cd_batch target index
    int nparams;      //  parameters it takes
} s_name_t;

typedef enum { JOB_RUN, JOB_CONNECT, JOB_PRUNE } s_jobkind_t;

//  Work for the writer thread. Owned by whichever thread holds it: the
//  actor fills it, the writer runs it, the actor reads the outcome.
typedef struct {
    s_jobkind_t kind;                       //  what to do
    size_t n;                               //  RUN: requests in reqs/pending
    cd_batch_req_t *reqs;                   //  RUN: batch_max entries (copies of pending[i]->req)
    s_pending_t **pending;                  //  RUN: the requests' records
    int prune_age_s[CD_BATCH_PRUNE_COUNT_]; //  PRUNE: how old rows must be, per table (0: keep)
    int rc;                                 //  outcome: 0 or a CD_E* code
    double ms;                              //  RUN: time the writer spent on it
    bool prune_more;                        //  PRUNE: a table had more than one chunk to delete
    char *errmsg;                           //  CONNECT: why it failed (owned; freed by the actor)
    cd_batch_stats_t stats;                 //  the writer's counters after the job
    char last_error[256];                   //  the writer's last connection failure
} s_job_t;

typedef struct {
    cd_persist_args_t cfg;    //  arguments with defaults applied
    s_name_t *names;          //  statement and table names
    size_t n_names;           //  entries in names
    zactor_t *writer;         //  the writer thread (owns the cd_batch_t)
    s_job_t jobs[2];          //  one with the writer, one being answered
    s_job_t *busy;            //  the job the writer holds, or NULL
    s_job_t *answering;       //  the job whose requests are being answered, or NULL
    s_ring_t queue;           //  pending requests, oldest first
    cd_pack_t *pack;          //  answer payloads
    bool db_ok;               //  connected and not known broken
    bool ever_connected;      //  a connect has succeeded once
    bool tick_armed;          //  a tick timer is set
    int msgs_since_tick;      //  write requests handled since the last tick
    int reconnect_timer;      //  timer id, 0 if none
    bool prune_wanted;        //  a prune is due when the writer is next idle
    int backoff_ms;           //  next reconnect delay
    int64_t down_since_us;    //  monotonic, when the database went away
    uint64_t batches;         //  transactions committed
    uint64_t rows;            //  requests applied
    uint64_t failed;          //  requests answered with an error
    uint64_t replayed;        //  requests answered from their records
    uint64_t expired;         //  requests failed for waiting too long
    uint64_t reconnects;      //  successful connects after the first
    double last_batch_ms;     //  duration of the last batch
    double batch_ms_total;    //  time the writer spent in batches
    int last_batch_size;      //  requests in it
    cd_batch_stats_t wstats;  //  the writer's counters, as of its last job
    cd_runtime_t notify_rt;   //  the node's settings with a send timeout of 0
    cd_mailer_t *notifier;    //  sends commit notices (never waits); NULL without cfg.notify
    uint64_t notices;         //  commit notices sent
    uint64_t notices_dropped; //  notices not sent: the receiver was full or not running
    char last_error[256];     //  last database failure, "" if none
} s_persist_t;

static const s_name_t *
s_find_name(const s_persist_t *persist, bool is_table, cd_str_t name)
{
    for (size_t i = 0; i < persist->n_names; i++) {
        const s_name_t *entry = &persist->names[i];
        if (entry->is_table == is_table && cd_str_eq(name, entry->name)) {
            return entry;
        }
    }
    return NULL;
}

static int64_t
s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  --- the queue --------------------------------------------------------------------------

static s_pending_t *
s_ring_at(const s_ring_t *ring, size_t i)
{
    return ring->slot[(ring->head + i) % ring->cap];
}

static void
s_ring_push_back(s_ring_t *ring, s_pending_t *p)
{
    assert(ring->count < ring->cap);
    ring->slot[(ring->head + ring->count++) % ring->cap] = p;
}

static void
s_ring_push_front(s_ring_t *ring, s_pending_t *p)
{
    assert(ring->count < ring->cap);
    ring->head = (ring->head + ring->cap - 1) % ring->cap;
    ring->slot[ring->head] = p;
    ring->count++;
}

static s_pending_t *
s_ring_pop_front(s_ring_t *ring)
{
    s_pending_t *p = ring->slot[ring->head];
    ring->head = (ring->head + 1) % ring->cap;
    ring->count--;
    return p;
}

static void
s_pending_free(s_pending_t **p_p)
{
    if (*p_p) {
        cd_batch_outcome_clear(&(*p_p)->req.out);
        free(*p_p);
        *p_p = NULL;
    }
}

//  --- the request payload ----------------------------------------------------------------
//  A small reader for the "params" array: the envelope decoder has already
//  validated the payload as msgpack within bounds, but every length is
//  checked again here before it is used.

typedef enum { P_NIL, P_TEXT, P_INT, P_UINT, P_BOOL, P_DOUBLE } s_pkind_t;

typedef struct {
    s_pkind_t kind;  //  what it is
    const char *ptr; //  P_TEXT: the bytes (borrowed from the payload)
    uint32_t len;    //  P_TEXT: their length; others: length of the text form
    int64_t i;       //  P_INT
    uint64_t u;      //  P_UINT
    bool b;          //  P_BOOL
    double d;        //  P_DOUBLE
} s_param_t;

typedef struct {
    const uint8_t *p;   //  next byte
    const uint8_t *end; //  one past the last
} s_rd_t;

static bool
s_rd_be(s_rd_t *rd, size_t n, uint64_t *out)
{
    if ((size_t)(rd->end - rd->p) < n) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v << 8 | rd->p[i];
    }
    rd->p += n;
    *out = v;
    return true;
}

//  Reads an array header. Returns false if the value is not an array.
static bool
s_rd_array(s_rd_t *rd, uint32_t *n)
{
    if (rd->p >= rd->end) {
        return false;
    }
    uint8_t c = *rd->p++;
    uint64_t v = 0;
    if ((c & 0xf0) == 0x90) {
        *n = c & 0x0f;
        return true;
    }
    if ((c == 0xdc && s_rd_be(rd, 2, &v)) || (c == 0xdd && s_rd_be(rd, 4, &v))) {
        *n = (uint32_t)v;
        return true;
    }
    return false;
}

//  Reads one scalar parameter. Returns NULL or what is wrong.
static const char *
s_rd_param(s_rd_t *rd, s_param_t *out)
{
    if (rd->p >= rd->end) {
        return "params ends early";
    }
    uint8_t c = *rd->p++;
    uint64_t v = 0, len = 0;
    *out = (s_param_t){0};
    if (c <= 0x7f) {
        out->kind = P_INT;
        out->i = c;
    } else if (c >= 0xe0) {
        out->kind = P_INT;
        out->i = (int8_t)c;
    } else if ((c & 0xe0) == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb || c == 0xc4 ||
               c == 0xc5 || c == 0xc6) {
        bool ok = true;
        if ((c & 0xe0) == 0xa0) {
            len = c & 0x1f;
        } else {
            size_t width = c == 0xd9 || c == 0xc4 ? 1 : c == 0xda || c == 0xc5 ? 2 : 4;
            ok = s_rd_be(rd, width, &len);
        }
        if (!ok || (uint64_t)(rd->end - rd->p) < len) {
            return "a string parameter is truncated";
        }
        out->kind = P_TEXT;
        out->ptr = (const char *)rd->p;
        out->len = (uint32_t)len;
        rd->p += len;
    } else if (c == 0xc0) {
        out->kind = P_NIL;
    } else if (c == 0xc2 || c == 0xc3) {
        out->kind = P_BOOL;
        out->b = c == 0xc3;
    } else if (c >= 0xcc && c <= 0xcf) {
        if (!s_rd_be(rd, (size_t)1 << (c - 0xcc), &v)) {
            return "an integer parameter is truncated";
        }
        out->kind = P_UINT;
        out->u = v;
    } else if (c >= 0xd0 && c <= 0xd3) {
        size_t width = (size_t)1 << (c - 0xd0);
        if (!s_rd_be(rd, width, &v)) {
            return "an integer parameter is truncated";
        }
        //  Sign-extend from width bytes.
        int shift = (int)(64 - 8 * width);
        out->kind = P_INT;
        out->i = shift ? (int64_t)(v << shift) >> shift : (int64_t)v;
    } else if (c == 0xca || c == 0xcb) {
        if (!s_rd_be(rd, c == 0xca ? 4 : 8, &v)) {
            return "a float parameter is truncated";
        }
        out->kind = P_DOUBLE;
        if (c == 0xca) {
            uint32_t bits = (uint32_t)v;
            float f;
            memcpy(&f, &bits, sizeof f);
            out->d = f;
        } else {
            memcpy(&out->d, &v, sizeof out->d);
        }
    } else {
        return "a parameter must be a string, number, boolean or nil";
    }
    return NULL;
}

//  Text form of a non-text parameter into buf; returns its length.
static int
s_param_text(const s_param_t *param, char *buf, size_t size)
{
    switch (param->kind) {
    case P_INT:
        return snprintf(buf, size, "%lld", (long long)param->i);
    case P_UINT:
        return snprintf(buf, size, "%llu", (unsigned long long)param->u);
    case P_BOOL:
        return snprintf(buf, size, "%s", param->b ? "true" : "false");
    case P_DOUBLE:
        return snprintf(buf, size, "%.17g", param->d);
    default:
        return 0;
    }
}

//  Builds a pending request from a write envelope. Returns NULL and sets
//  *why (static text) if the payload is not a valid request.
static s_pending_t *
s_pending_new(s_persist_t *persist, const cd_envelope_t *env, const char **why)
{
    if (env->payload_type != CD_PAYLOAD_MAP) {
        *why = "the payload must be a map {stmt|table, params}";
        return NULL;
    }
    cd_bin_t name_v, params_v;
    cd_str_t name;
    bool is_table = cd_msgpack_map_find(env->payload, "table", &name_v) == 0;
    if (!is_table && cd_msgpack_map_find(env->payload, "stmt", &name_v) != 0) {
        *why = "the payload names no \"stmt\" or \"table\"";
        return NULL;
    }
    if (cd_msgpack_read_str(name_v, &name) != 0) {
        *why = "\"stmt\" or \"table\" must be a string";
        return NULL;
    }
    const s_name_t *target = s_find_name(persist, is_table, name);
    if (!target) {
        *why = is_table ? "unknown table" : "unknown statement";
        return NULL;
    }
    s_param_t params[CD_BATCH_MAX_PARAMS];
    uint32_t n = 0;
    if (cd_msgpack_map_find(env->payload, "params", &params_v) == 0) {
        s_rd_t rd = {params_v.ptr, params_v.ptr + params_v.len};
        if (!s_rd_array(&rd, &n)) {
            *why = "\"params\" must be an array";
            return NULL;
        }
        if (n > CD_BATCH_MAX_PARAMS) {
            *why = "too many params";
            return NULL;
        }
        for (uint32_t i = 0; i < n; i++) {
            const char *bad = s_rd_param(&rd, &params[i]);
            if (bad) {
                *why = bad;
                return NULL;
            }
        }
    }
    if ((int)n != target->nparams) {
        *why = "wrong number of params for this statement or table";
        return NULL;
    }
    //  One allocation: record | values[n] | lengths[n] | reply_to | texts.
    cd_str_t reply = env->from;
    cd_envelope_header(env, "reply_to", &reply);
    size_t text = (size_t)reply.len + 1;
    for (uint32_t i = 0; i < n; i++) {
        char tmp[40];
        if (params[i].kind != P_TEXT && params[i].kind != P_NIL) {
            params[i].len = (uint32_t)s_param_text(&params[i], tmp, sizeof tmp);
        }
        text += params[i].kind == P_NIL ? 0 : (size_t)params[i].len + 1;
    }
    size_t head = (sizeof(s_pending_t) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    size_t size = head + n * sizeof(char *) + n * sizeof(uint32_t) + text;
    s_pending_t *p = (s_pending_t *)calloc(1, size);
    assert(p);
    const char **values = (const char **)((char *)p + head);
    uint32_t *lengths = (uint32_t *)(values + n);
    char *out = (char *)(lengths + n);
    p->reply_to = out;
    memcpy(out, reply.ptr ? reply.ptr : "", reply.len);
    out[reply.len] = '\0';
    out += reply.len + 1;
    for (uint32_t i = 0; i < n; i++) {
        if (params[i].kind == P_NIL) {
            values[i] = NULL;
            continue;
        }
        if (params[i].kind == P_TEXT) {
            memcpy(out, params[i].ptr, params[i].len);
        } else {
            s_param_text(&params[i], out, (size_t)params[i].len + 1);
        }
        out[params[i].len] = '\0';
        values[i] = out;
        lengths[i] = params[i].len;
        out += params[i].len + 1;
    }
    memcpy(p->req.id, env->id, sizeof p->req.id);
    p->req.target = target->target;
    p->req.nparams = (int)n;
    p->req.values = values;
    p->req.lengths = lengths;
    p->task_id = env->task_id;
    cd_str_t ack = {NULL, 0};
    p->errors_only = cd_envelope_header(env, "ack", &ack) && cd_str_eq(ack, "errors");
    memcpy(p->trace_id, env->trace_id, sizeof p->trace_id);
    p->arrived_us = s_mono_us();
    p->expires_us = p->arrived_us + (int64_t)persist->cfg.wait_timeout_ms * 1000;
    if (env->deadline > 0) {
        int64_t left = env->deadline - cd_now_us();
        if (p->arrived_us + left < p->expires_us) {
            p->expires_us = p->arrived_us + left;
        }
    }
    return p;
}

//  --- answers ----------------------------------------------------------------------------

static void
s_send(cd_actor_t *self, const cd_envelope_t *out)
{
    int rc = cd_actor_send(self, out);
    //  Nobody to answer is already a dead letter; a full queue loses only the
    //  answer (the write is committed; a retry with the same id learns it).
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(self), "answer not delivered", "{s:s}", "error", cd_errname(rc));
    }
}

static void
s_answer_env(cd_actor_t *self, cd_envelope_t *out, cd_kind_t kind, const char *to,
             const uint8_t id[CD_ENV_UUID_SIZE], int64_t task_id,
             const uint8_t trace_id[CD_ENV_UUID_SIZE], cd_pack_t *pack)
{
    cd_actor_envelope_init(self, out, kind, to);
    memcpy(out->parent_id, id, CD_ENV_UUID_SIZE);
    out->task_id = task_id;
    memcpy(out->trace_id, trace_id, CD_ENV_UUID_SIZE);
    out->payload_type = CD_PAYLOAD_MAP;
    out->payload = cd_pack_bytes(pack);
    s_send(self, out);
}

static void
s_pack_error(cd_pack_t *pack, const char *code, const char *message, const char *sqlstate,
             bool in_doubt)
{
    cd_pack_reset(pack);
    cd_pack_map(pack, 4);
    cd_pack_cstr(pack, "code");
    cd_pack_cstr(pack, code);
    cd_pack_cstr(pack, "message");
    cd_pack_cstr(pack, message ? message : "");
    cd_pack_cstr(pack, "sqlstate");
    cd_pack_cstr(pack, sqlstate ? sqlstate : "");
    cd_pack_cstr(pack, "in_doubt");
    cd_pack_bool(pack, in_doubt);
}

//  Answers a request that never became pending (bad payload, full queue).
static void
s_reject(cd_actor_t *self, s_persist_t *persist, const cd_envelope_t *env, const char *code,
         const char *message)
{
    char to[2 * CD_ENV_MAX_NAME];
    cd_str_t reply = env->from;
    cd_envelope_header(env, "reply_to", &reply);
    snprintf(to, sizeof to, "%.*s", (int)reply.len, reply.ptr ? reply.ptr : "");
    s_pack_error(persist->pack, code, message, "", false);
    cd_envelope_t out;
    s_answer_env(self, &out, CD_KIND_ERROR, to, env->id, env->task_id, env->trace_id,
                 persist->pack);
    persist->failed++;
}

static const char *
s_error_code(const cd_batch_outcome_t *out)
{
    switch (out->rc) {
    case CD_ETOOBIG:
        return "too_big";
    case CD_EINVAL:
        return strcmp(out->sqlstate, "22021") == 0 ? "invalid_value" : "bad_request";
    case CD_ECONN:
        return "db_unavailable";
    default:
        return "db_error";
    }
}

//  Answers a pending request from its outcome and frees it.
static void
s_answer(cd_actor_t *self, s_persist_t *persist, s_pending_t **p_p)
{
    s_pending_t *p = *p_p;
    const cd_batch_outcome_t *o = &p->req.out;
    cd_envelope_t out;
    if (o->rc == 0) {
        if (!p->errors_only) {
            cd_pack_reset(persist->pack);
            cd_pack_map(persist->pack, 3);
            cd_pack_cstr(persist->pack, "value");
            if (o->value) {
                cd_pack_cstr(persist->pack, o->value);
            } else {
                cd_pack_nil(persist->pack);
            }
            cd_pack_cstr(persist->pack, "rows");
            cd_pack_int(persist->pack, o->rows);
            cd_pack_cstr(persist->pack, "replayed");
            cd_pack_bool(persist->pack, o->replayed);
            s_answer_env(self, &out, CD_KIND_RESULT, p->reply_to, p->req.id, p->task_id,
                         p->trace_id, persist->pack);
        }
        if (o->replayed) {
            persist->replayed++;
        } else {
            persist->rows++;
        }
    } else {
        s_pack_error(persist->pack, s_error_code(o), o->message, o->sqlstate, o->doubt_txid != 0);
        s_answer_env(self, &out, CD_KIND_ERROR, p->reply_to, p->req.id, p->task_id, p->trace_id,
                     persist->pack);
        persist->failed++;
    }
    s_pending_free(p_p);
}

//  Fails a waiting request with code and a message naming why.
static void
s_fail_pending(cd_actor_t *self, s_persist_t *persist, s_pending_t **p_p, const char *code,
               const char *message)
{
    s_pending_t *p = *p_p;
    bool in_doubt = p->req.out.doubt_txid != 0;
    char text[512];
    snprintf(text, sizeof text, "%s%s", message,
             in_doubt ? "; its commit was in flight when the connection was lost, so it may be "
                        "committed: retry with the same id to learn the outcome"
                      : "");
    s_pack_error(persist->pack, code, text, strcmp(code, "db_unavailable") == 0 ? "08006" : "",
                 in_doubt);
    cd_envelope_t out;
    s_answer_env(self, &out, CD_KIND_ERROR, p->reply_to, p->req.id, p->task_id, p->trace_id,
                 persist->pack);
    persist->failed++;
    s_pending_free(p_p);
}

//  --- the writer thread ------------------------------------------------------------------
//  Commands on its pipe: a string ("RUN", "CONNECT", "PRUNE") and the job's
//  address; it answers "DONE" and the same address. "$TERM" (from
//  zactor_destroy) ends it after the job in hand.

static void
s_job_msg_send(void *pipe, const char *command, s_job_t *job)
{
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, command);
    zmsg_addmem(msg, &job, sizeof job);
    if (zmsg_send(&msg, pipe) != 0) {
        //  An inproc PAIR with one message in flight at most cannot be full.
        fprintf(stderr, "%s:%d: writer pipe refused a job\n", __FILE__, __LINE__);
        abort();
    }
}

//  Receives a command; returns its job (NULL for $TERM or junk).
static s_job_t *
s_job_msg_recv(void *pipe, char *command, size_t size)
{
    zmsg_t *msg = zmsg_recv(pipe);
    command[0] = '\0';
    if (!msg) {
        return NULL;
    }
    char *cmd = zmsg_popstr(msg);
    zframe_t *frame = zmsg_pop(msg);
    s_job_t *job = NULL;
    if (cmd && frame && zframe_size(frame) == sizeof job) {
        memcpy(&job, zframe_data(frame), sizeof job);
    }
    snprintf(command, size, "%s", cmd ? cmd : "");
    zstr_free(&cmd);
    zframe_destroy(&frame);
    zmsg_destroy(&msg);
    return job;
}

static void
s_writer_main(zsock_t *pipe, void *args)
{
    cd_batch_t *batch = (cd_batch_t *)args;
    zsock_signal(pipe, 0);
    while (true) {
        char command[16];
        s_job_t *job = s_job_msg_recv(pipe, command, sizeof command);
        if (!job) {
            //  A signal landing on this thread (a child's SIGCHLD) interrupts
            //  the wait: that is not the end. $TERM or a closed pipe is.
            bool interrupted = !command[0] && zmq_errno() == EINTR && !zsys_interrupted;
            if (!interrupted) {
                break;
            }
            continue;
        }
        int64_t t0 = s_mono_us();
        if (job->kind == JOB_RUN) {
            job->rc = cd_batch_run(batch, job->reqs, job->n);
        } else if (job->kind == JOB_CONNECT) {
            job->rc = cd_batch_connect(batch, &job->errmsg);
        } else {
            //  A table that fails (logged by cd_batch) does not keep the
            //  others from their turn; a lost connection ends the pass.
            job->rc = 0;
            job->prune_more = false;
            for (int t = 0; t < CD_BATCH_PRUNE_COUNT_ && job->rc != CD_ECONN; t++) {
                int64_t deleted = 0;
                int rc = job->prune_age_s[t] > 0
                             ? cd_batch_prune(batch, (cd_batch_prune_t)t, job->prune_age_s[t],
                                              S_PRUNE_CHUNK, &deleted)
                             : 0;
                if (rc != 0 && (job->rc == 0 || rc == CD_ECONN)) {
                    job->rc = rc;
                }
                job->prune_more = job->prune_more || deleted == S_PRUNE_CHUNK;
            }
        }
        job->ms = (double)(s_mono_us() - t0) / 1000.0;
        job->stats = *cd_batch_stats(batch);
        snprintf(job->last_error, sizeof job->last_error, "%s", cd_batch_last_error(batch));
        s_job_msg_send(pipe, "DONE", job);
    }
    cd_batch_destroy(&batch);
}

//  --- database up and down ---------------------------------------------------------------

static int s_on_tick(cd_actor_t *self, void *arg);
static int s_on_reconnect(cd_actor_t *self, void *arg);
static int s_on_sweep(cd_actor_t *self, void *arg);
static int s_on_prune(cd_actor_t *self, void *arg);

//  The job that is neither with the writer nor being answered.
static s_job_t *
s_idle_job(s_persist_t *persist)
{
    s_job_t *taken = persist->busy ? persist->busy : persist->answering;
    return taken == &persist->jobs[0] ? &persist->jobs[1] : &persist->jobs[0];
}

static void
s_start_job(s_persist_t *persist, s_job_t *job, s_jobkind_t kind)
{
    assert(!persist->busy);
    job->kind = kind;
    job->rc = 0;
    job->ms = 0;
    job->prune_more = false;
    free(job->errmsg);
    job->errmsg = NULL;
    persist->busy = job;
    s_job_msg_send(persist->writer,
                   kind == JOB_RUN       ? "RUN"
                   : kind == JOB_CONNECT ? "CONNECT"
                                         : "PRUNE",
                   job);
}

static void
s_arm_tick(cd_actor_t *self, s_persist_t *persist)
{
    if (!persist->tick_armed) {
        cd_actor_after(self, 0, s_on_tick, persist);
        persist->tick_armed = true;
    }
}

static void
s_db_down(cd_actor_t *self, s_persist_t *persist, const char *why)
{
    if (persist->db_ok || persist->down_since_us == 0) {
        persist->down_since_us = s_mono_us();
    }
    persist->db_ok = false;
    snprintf(persist->last_error, sizeof persist->last_error, "%s", why ? why : "");
    if (!persist->reconnect_timer) {
        persist->reconnect_timer =
            cd_actor_after(self, persist->backoff_ms, s_on_reconnect, persist);
    }
}

static int
s_on_reconnect(cd_actor_t *self, void *arg)
{
    s_persist_t *persist = (s_persist_t *)arg;
    persist->reconnect_timer = 0;
    if (persist->db_ok) {
        return 0;
    }
    if (persist->busy) {
        //  A prune still in hand (it will fail fast): try again soon.
        persist->reconnect_timer = cd_actor_after(self, 10, s_on_reconnect, persist);
        return 0;
    }
    s_start_job(persist, s_idle_job(persist), JOB_CONNECT);
    return 0;
}

//  Fails the waiting requests past their time (wait_timeout_ms or their
//  deadline): db_unavailable while the database is away, busy while it is
//  up but too slow for the load.
static int
s_on_sweep(cd_actor_t *self, void *arg)
{
    s_persist_t *persist = (s_persist_t *)arg;
    int64_t now = s_mono_us();
    size_t n = persist->queue.count;
    bool due = false;
    for (size_t i = 0; i < n && !due; i++) {
        due = s_ring_at(&persist->queue, i)->expires_us <= now;
    }
    if (!due) {
        return 0;
    }
    char message[384];
    if (persist->db_ok) {
        snprintf(message, sizeof message,
                 "waited too long in the persist queue (%zu requests; the last batch of %d took "
                 "%.1f ms)",
                 n, persist->last_batch_size, persist->last_batch_ms);
    } else {
        snprintf(message, sizeof message, "database unavailable for %lld ms: %s",
                 (long long)((now - persist->down_since_us) / 1000),
                 persist->last_error[0] ? persist->last_error : "not connected");
    }
    for (size_t i = 0; i < n; i++) {
        s_pending_t *p = s_ring_pop_front(&persist->queue);
        if (p->expires_us <= now) {
            s_fail_pending(self, persist, &p, persist->db_ok ? "busy" : "db_unavailable", message);
            persist->expired++;
        } else {
            s_ring_push_back(&persist->queue, p);
        }
    }
    return 0;
}

//  --- batches ----------------------------------------------------------------------------

//  True when the waiting requests should go: a full batch, an oldest
//  request that waited batch_wait_ms, or (quiet) a loop turn that brought
//  no new request.
static bool
s_batch_due(const s_persist_t *persist, bool quiet)
{
    if (persist->queue.count == 0) {
        return false;
    }
    return quiet || persist->queue.count >= (size_t)persist->cfg.batch_max ||
           s_mono_us() - s_ring_at(&persist->queue, 0)->arrived_us >=
               (int64_t)persist->cfg.batch_wait_ms * 1000;
}

//  Hands the oldest batch_max requests to the writer, if it is idle and the
//  database up. Returns true if it did.
static bool
s_send_batch(s_persist_t *persist)
{
    if (persist->busy || !persist->db_ok || persist->queue.count == 0) {
        return false;
    }
    s_job_t *job = s_idle_job(persist);
    size_t n = persist->queue.count < (size_t)persist->cfg.batch_max
                   ? persist->queue.count
                   : (size_t)persist->cfg.batch_max;
    for (size_t i = 0; i < n; i++) {
        job->pending[i] = s_ring_pop_front(&persist->queue);
        job->reqs[i] = job->pending[i]->req;
    }
    job->n = n;
    s_start_job(persist, job, JOB_RUN);
    return true;
}

//  Tells cfg.notify that a batch committed (see "Commit notices" in the
//  header): one envelope, sent without waiting, dropped if it cannot go.
static void
s_notify(cd_actor_t *self, s_persist_t *persist)
{
    const char *to = persist->cfg.notify;
    //  A receiver that is not running would make every notice a dead
    //  letter: skip it quietly (it catches up when it runs).
    if (!cd_registry_status_deliverable(cd_registry_status(persist->notify_rt.registry, to))) {
        persist->notices_dropped++;
        return;
    }
    cd_envelope_t env;
    cd_mailer_envelope_init(persist->notifier, &env, CD_KIND_CONTROL, to);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("committed")};
    env.n_headers = 1;
    int rc = cd_mailer_send(persist->notifier, &env);
    if (rc == 0) {
        persist->notices++;
    } else {
        persist->notices_dropped++;
        cd_log_debug(cd_actor_name(self), "commit notice dropped", "{s:s, s:s}", "to", to, "error",
                     cd_errname(rc));
    }
}

//  A batch came back: requests that lost their connection go back to the
//  head of the queue; the next batch goes out; commit notice; then the
//  rest are answered.
static void
s_batch_done(cd_actor_t *self, s_persist_t *persist, s_job_t *job, bool send_next)
{
    persist->answering = job;
    persist->last_batch_ms = job->ms;
    persist->batch_ms_total += job->ms;
    persist->last_batch_size = (int)job->n;
    bool requeued = false;
    bool committed = false;
    for (size_t i = job->n; i-- > 0;) {
        job->pending[i]->req.out = job->reqs[i].out;
        committed = committed || job->reqs[i].out.rc == 0;
        if (job->reqs[i].out.rc == CD_ECONN) {
            //  Back to the head, in order (this walks from the last).
            s_ring_push_front(&persist->queue, job->pending[i]);
            job->pending[i] = NULL;
            requeued = true;
        }
    }
    if (job->rc == 0) {
        persist->batches++;
    }
    if (job->rc == CD_ECONN || requeued) {
        s_db_down(self, persist, job->last_error);
    } else if (send_next && s_batch_due(persist, false)) {
        //  A full batch (or one that waited long enough) goes now, and
        //  commits while this one is answered. A smaller one waits for the
        //  inbox to go quiet (the tick): the answers below bring more
        //  requests, and a commit costs the same for 30 rows or 300.
        s_send_batch(persist);
    }
    //  Before the answers: whoever tails the committed rows is woken as
    //  early as the requesters are.
    if (committed && persist->notifier) {
        s_notify(self, persist);
    }
    for (size_t i = 0; i < job->n; i++) {
        if (job->pending[i]) {
            s_answer(self, persist, &job->pending[i]);
        }
    }
    job->n = 0;
    persist->answering = NULL;
}

static void
s_connect_done(cd_actor_t *self, s_persist_t *persist, s_job_t *job)
{
    if (job->rc == 0) {
        if (persist->ever_connected) {
            cd_log_info(cd_actor_name(self), "database reachable", "{s:i, s:i}", "down_ms",
                        (int)((s_mono_us() - persist->down_since_us) / 1000), "pending",
                        (int)persist->queue.count);
            persist->reconnects++;
        }
        persist->ever_connected = true;
        persist->db_ok = true;
        persist->down_since_us = 0;
        persist->backoff_ms = persist->cfg.reconnect_min_ms;
        persist->last_error[0] = '\0';
        return;
    }
    if (!persist->ever_connected && persist->down_since_us == 0) {
        cd_log_warn(cd_actor_name(self), "database unavailable at start", "{s:s}", "error",
                    job->errmsg ? job->errmsg : "");
    } else {
        //  Each attempt is logged at debug only: an outage would flood the log.
        cd_log_debug(cd_actor_name(self), "reconnect failed", "{s:s, s:i}", "error",
                     job->errmsg ? job->errmsg : "", "next_ms", persist->backoff_ms);
    }
    s_db_down(self, persist, job->errmsg);
    //  s_db_down armed the timer with the current delay; the next one waits longer.
    persist->backoff_ms = persist->backoff_ms * 2 > persist->cfg.reconnect_max_ms
                              ? persist->cfg.reconnect_max_ms
                              : persist->backoff_ms * 2;
}

//  Hands the writer a prune of every table with an age (the request
//  records always; events and stats history when they have a retention).
static void
s_start_prune(s_persist_t *persist)
{
    s_job_t *job = s_idle_job(persist);
    job->prune_age_s[CD_BATCH_PRUNE_REQUESTS] = persist->cfg.prune_age_s;
    job->prune_age_s[CD_BATCH_PRUNE_EVENTS] = persist->cfg.events_retention_s;
    job->prune_age_s[CD_BATCH_PRUNE_STATS] = persist->cfg.stats_retention_s;
    s_start_job(persist, job, JOB_PRUNE);
}

//  Applies what the writer sent back. With send_next, the next batch (or a
//  due prune) goes out.
static void
s_job_done(cd_actor_t *self, s_persist_t *persist, s_job_t *job, bool send_next)
{
    assert(job == persist->busy);
    persist->busy = NULL;
    persist->wstats = job->stats;
    if (job->kind == JOB_RUN) {
        s_batch_done(self, persist, job, send_next);
    } else if (job->kind == JOB_CONNECT) {
        s_connect_done(self, persist, job);
    } else if (job->rc == CD_ECONN) {
        s_db_down(self, persist, job->last_error);
    } else if (job->rc == 0 && job->prune_more) {
        //  More to go: another chunk soon, between batches.
        cd_actor_after(self, 1000, s_on_prune, persist);
    }
    if (!send_next) {
        return;
    }
    if (!persist->busy && persist->db_ok && persist->prune_wanted) {
        persist->prune_wanted = false;
        s_start_prune(persist);
    }
    if (!persist->busy && persist->db_ok && persist->queue.count > 0) {
        s_arm_tick(self, persist);
    }
}

static int
s_on_writer(cd_actor_t *self, void *socket, void *arg)
{
    s_persist_t *persist = (s_persist_t *)arg;
    char command[16];
    s_job_t *job = s_job_msg_recv(socket, command, sizeof command);
    if (!job && !command[0]) {
        return 0; //  nothing after all (interrupted)
    }
    if (!job || !streq(command, "DONE") || job != persist->busy) {
        //  The writer thread ended or spoke out of turn: a bug; restart.
        return CD_ESTATE;
    }
    s_job_done(self, persist, job, true);
    return 0;
}

static int
s_on_tick(cd_actor_t *self, void *arg)
{
    s_persist_t *persist = (s_persist_t *)arg;
    persist->tick_armed = false;
    bool quiet = persist->msgs_since_tick == 0;
    persist->msgs_since_tick = 0;
    //  While the writer is busy its answer sends the next batch: no tick.
    if (!persist->db_ok || persist->busy || persist->queue.count == 0) {
        return 0;
    }
    if (!s_batch_due(persist, quiet) || !s_send_batch(persist)) {
        s_arm_tick(self, persist);
    }
    return 0;
}

static int
s_on_prune(cd_actor_t *self, void *arg)
{
    s_persist_t *persist = (s_persist_t *)arg;
    if (!persist->db_ok) {
        return 0;
    }
    if (persist->busy) {
        persist->prune_wanted = true;
        return 0;
    }
    s_start_prune(persist);
    return 0;
}

//  --- handlers ---------------------------------------------------------------------------

static void
s_stats(cd_actor_t *self, s_persist_t *persist, const cd_envelope_t *env)
{
    int64_t oldest =
        persist->queue.count ? (s_mono_us() - s_ring_at(&persist->queue, 0)->arrived_us) / 1000 : 0;
    size_t in_writer = persist->busy && persist->busy->kind == JOB_RUN ? persist->busy->n : 0;
    cd_pack_t *pack = persist->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 23);
    cd_pack_cstr(pack, "db_ok");
    cd_pack_bool(pack, persist->db_ok);
    cd_pack_cstr(pack, "pending");
    cd_pack_int(pack, (int64_t)(persist->queue.count + in_writer));
    cd_pack_cstr(pack, "batches");
    cd_pack_uint(pack, persist->batches);
    cd_pack_cstr(pack, "rows");
    cd_pack_uint(pack, persist->rows);
    cd_pack_cstr(pack, "failed");
    cd_pack_uint(pack, persist->failed);
    cd_pack_cstr(pack, "replayed");
    cd_pack_uint(pack, persist->replayed);
    cd_pack_cstr(pack, "expired");
    cd_pack_uint(pack, persist->expired);
    cd_pack_cstr(pack, "in_doubt");
    cd_pack_uint(pack, persist->wstats.in_doubt);
    cd_pack_cstr(pack, "slow_batches");
    cd_pack_uint(pack, persist->wstats.slow_batches);
    cd_pack_cstr(pack, "reconnects");
    cd_pack_uint(pack, persist->reconnects);
    cd_pack_cstr(pack, "last_batch_ms");
    cd_pack_double(pack, persist->last_batch_ms);
    cd_pack_cstr(pack, "batch_ms_total");
    cd_pack_double(pack, persist->batch_ms_total);
    cd_pack_cstr(pack, "last_batch_size");
    cd_pack_int(pack, persist->last_batch_size);
    cd_pack_cstr(pack, "oldest_wait_ms");
    cd_pack_int(pack, oldest);
    cd_pack_cstr(pack, "notices");
    cd_pack_uint(pack, persist->notices);
    cd_pack_cstr(pack, "notices_dropped");
    cd_pack_uint(pack, persist->notices_dropped);
    cd_pack_cstr(pack, "last_error");
    cd_pack_cstr(pack, persist->last_error);
    cd_pack_cstr(pack, "batch_max");
    cd_pack_int(pack, persist->cfg.batch_max);
    cd_pack_cstr(pack, "batch_wait_ms");
    cd_pack_int(pack, persist->cfg.batch_wait_ms);
    cd_pack_cstr(pack, "queue_limit");
    cd_pack_int(pack, persist->cfg.queue_limit);
    cd_pack_cstr(pack, "wait_timeout_ms");
    cd_pack_int(pack, persist->cfg.wait_timeout_ms);
    cd_pack_cstr(pack, "events_retention_s");
    cd_pack_int(pack, persist->cfg.events_retention_s);
    cd_pack_cstr(pack, "stats_retention_s");
    cd_pack_int(pack, persist->cfg.stats_retention_s);
    char to[2 * CD_ENV_MAX_NAME];
    cd_str_t reply = env->from;
    cd_envelope_header(env, "reply_to", &reply);
    snprintf(to, sizeof to, "%.*s", (int)reply.len, reply.ptr ? reply.ptr : "");
    cd_envelope_t out;
    s_answer_env(self, &out, CD_KIND_RESULT, to, env->id, env->task_id, env->trace_id, pack);
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_persist_t *persist = (s_persist_t *)state;
    cd_str_t op = {NULL, 0};
    bool has_op = cd_envelope_header(env, "op", &op);
    if (env->kind == CD_KIND_CONTROL) {
        if (has_op && cd_str_eq(op, "stats")) {
            s_stats(self, persist, env);
        } else {
            s_reject(self, persist, env, "bad_request", "unknown control op (known: stats)");
        }
        return 0;
    }
    if (env->kind != CD_KIND_TASK) {
        //  Never answer answers (results, errors, events): no ping-pong.
        return 0;
    }
    if (has_op && !cd_str_eq(op, "write")) {
        s_reject(self, persist, env, "bad_request", "unknown op (known: write)");
        return 0;
    }
    const char *why = NULL;
    s_pending_t *p = s_pending_new(persist, env, &why);
    if (!p) {
        s_reject(self, persist, env, "bad_request", why);
        return 0;
    }
    if (persist->queue.count >= (size_t)persist->cfg.queue_limit) {
        char message[384];
        if (persist->db_ok) {
            snprintf(message, sizeof message, "persist queue full (%d requests waiting)",
                     persist->cfg.queue_limit);
        } else {
            snprintf(message, sizeof message,
                     "database unavailable and the persist queue is full (%d requests): %s",
                     persist->cfg.queue_limit,
                     persist->last_error[0] ? persist->last_error : "not connected");
        }
        s_fail_pending(self, persist, &p, persist->db_ok ? "busy" : "db_unavailable", message);
        return 0;
    }
    s_ring_push_back(&persist->queue, p);
    persist->msgs_since_tick++;
    if (!persist->db_ok || persist->busy) {
        //  Waits for the database, or for the batch in hand to come back.
        return 0;
    }
    if (persist->queue.count < (size_t)persist->cfg.batch_max || !s_send_batch(persist)) {
        s_arm_tick(self, persist);
    }
    return 0;
}

//  --- lifecycle --------------------------------------------------------------------------

static int
s_default(int value, int def)
{
    return value > 0 ? value : def;
}

static void
s_free_state(s_persist_t *persist)
{
    cd_mailer_destroy(&persist->notifier);
    cd_pack_destroy(&persist->pack);
    for (int j = 0; j < 2; j++) {
        free(persist->jobs[j].reqs);
        free(persist->jobs[j].pending);
        free(persist->jobs[j].errmsg);
    }
    free(persist->queue.slot);
    free(persist->names);
    free(persist);
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_persist_args_t *in = (const cd_persist_args_t *)args;
    if (!in || !in->conninfo) {
        *why = "persist: no database conninfo";
        return CD_EINVAL;
    }
    s_persist_t *persist = (s_persist_t *)calloc(1, sizeof *persist);
    assert(persist);
    persist->cfg = *in;
    cd_persist_args_t *cfg = &persist->cfg;
    cfg->batch_max = s_default(cfg->batch_max, CD_PERSIST_BATCH_MAX);
    cfg->batch_wait_ms = s_default(cfg->batch_wait_ms, CD_PERSIST_BATCH_WAIT_MS);
    cfg->queue_limit = s_default(cfg->queue_limit, CD_PERSIST_QUEUE_LIMIT);
    cfg->wait_timeout_ms = s_default(cfg->wait_timeout_ms, CD_PERSIST_WAIT_TIMEOUT_MS);
    cfg->reconnect_min_ms = s_default(cfg->reconnect_min_ms, CD_PERSIST_RECONNECT_MIN_MS);
    cfg->reconnect_max_ms = s_default(cfg->reconnect_max_ms, CD_PERSIST_RECONNECT_MAX_MS);
    cfg->prune_interval_s = s_default(cfg->prune_interval_s, CD_PERSIST_PRUNE_INTERVAL_S);
    cfg->prune_age_s = s_default(cfg->prune_age_s, CD_PERSIST_PRUNE_AGE_S);
    if (cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
        cfg->reconnect_max_ms = cfg->reconnect_min_ms;
    }
    persist->pack = cd_pack_new();
    if (cfg->notify && *cfg->notify) {
        //  Its own mailer, so that a notice never waits on a full queue
        //  while the actor's answers keep the node's send timeout.
        persist->notify_rt = *cd_actor_runtime(self);
        persist->notify_rt.send_timeout_ms = 0;
        persist->notifier = cd_mailer_new(&persist->notify_rt, cd_actor_name(self));
    }
    cd_batch_t *batch =
        cd_batch_new(&(cd_batch_opts_t){.conninfo = cfg->conninfo,
                                        .max_value_bytes = cfg->max_value_bytes,
                                        .connect_timeout_ms = cfg->connect_timeout_ms,
                                        .io_timeout_ms = cfg->io_timeout_ms});
    persist->names = (s_name_t *)calloc(cfg->n_stmts + cfg->n_tables + 1, sizeof(s_name_t));
    assert(persist->names);
    for (size_t i = 0; i < cfg->n_stmts + cfg->n_tables; i++) {
        bool is_table = i >= cfg->n_stmts;
        int target;
        if (is_table) {
            const cd_persist_table_t *t = &cfg->tables[i - cfg->n_stmts];
            target = cd_batch_add_table(batch, t->name, t->table, t->columns, t->ncolumns);
        } else {
            const cd_persist_stmt_t *s = &cfg->stmts[i];
            target = cd_batch_add_statement(batch, s->name, s->sql, s->nparams);
        }
        if (target < 0) {
            *why = "persist: invalid or duplicate statement or table in its arguments";
            cd_batch_destroy(&batch);
            s_free_state(persist);
            return CD_EINVAL;
        }
        persist->names[persist->n_names++] =
            (s_name_t){is_table ? cfg->tables[i - cfg->n_stmts].name : cfg->stmts[i].name, is_table,
                       target, cd_batch_target_nparams(batch, target)};
    }
    persist->queue.cap = (size_t)cfg->queue_limit + (size_t)cfg->batch_max;
    persist->queue.slot = (s_pending_t **)calloc(persist->queue.cap, sizeof(s_pending_t *));
    assert(persist->queue.slot);
    for (int j = 0; j < 2; j++) {
        persist->jobs[j].reqs =
            (cd_batch_req_t *)calloc((size_t)cfg->batch_max, sizeof(cd_batch_req_t));
        persist->jobs[j].pending =
            (s_pending_t **)calloc((size_t)cfg->batch_max, sizeof(s_pending_t *));
        assert(persist->jobs[j].reqs && persist->jobs[j].pending);
    }
    persist->backoff_ms = cfg->reconnect_min_ms;
    //  The values in force, defaults applied: what an operator set through
    //  the node's options, or did not.
    cd_log_info(cd_actor_name(self), "settings", "{s:i, s:i, s:i, s:i, s:i, s:i}", "batch_max",
                cfg->batch_max, "batch_wait_ms", cfg->batch_wait_ms, "queue_limit",
                cfg->queue_limit, "wait_timeout_ms", cfg->wait_timeout_ms, "events_retention_s",
                cfg->events_retention_s, "stats_retention_s", cfg->stats_retention_s);
    //  From here the writer thread owns the cd_batch_t.
    persist->writer = zactor_new(s_writer_main, batch);
    assert(persist->writer);
    cd_actor_watch(self, persist->writer, s_on_writer, persist);
    //  The first connect runs in the writer: the database may be away at
    //  start, which is not a failure to start; requests wait as in any outage.
    s_start_job(persist, &persist->jobs[0], JOB_CONNECT);
    cd_actor_every(self, cfg->prune_interval_s * 1000, s_on_prune, persist);
    int sweep_ms = cfg->wait_timeout_ms / 4;
    cd_actor_every(self, sweep_ms < 10 ? 10 : sweep_ms > 250 ? 250 : sweep_ms, s_on_sweep, persist);
    *state_p = persist;
    return 0;
}

//  Waits (bounded) for the writer's answer and applies it, sending the
//  next batch if send_next. Returns false on timeout.
static bool
s_await_writer(cd_actor_t *self, s_persist_t *persist, int64_t until_us, bool send_next)
{
    while (persist->busy) {
        int64_t left_ms = (until_us - s_mono_us()) / 1000;
        if (left_ms <= 0) {
            return false;
        }
        zmq_pollitem_t item = {zsock_resolve(persist->writer), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left_ms) <= 0) {
            continue;
        }
        char command[16];
        s_job_t *job = s_job_msg_recv(persist->writer, command, sizeof command);
        if (job && job == persist->busy) {
            s_job_done(self, persist, job, send_next);
        }
    }
    return true;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_persist_t *persist = (s_persist_t *)*state_p;
    if (!persist) {
        return;
    }
    cd_actor_unwatch(self, persist->writer);
    //  What waits is written if the database is there, bounded by one I/O
    //  and one connect timeout in all; then everything left is answered.
    int io = persist->cfg.io_timeout_ms > 0 ? persist->cfg.io_timeout_ms
                                            : CD_BATCH_DEFAULT_IO_TIMEOUT_MS;
    int connect = persist->cfg.connect_timeout_ms > 0 ? persist->cfg.connect_timeout_ms
                                                      : CD_BATCH_DEFAULT_CONNECT_TIMEOUT_MS;
    int64_t until = s_mono_us() + (int64_t)(io + connect) * 1000;
    while (s_await_writer(self, persist, until, false) && persist->db_ok &&
           persist->queue.count > 0) {
        s_send_batch(persist);
    }
    //  A job still in hand (timed out): ending the writer waits for it, so
    //  its outcome can be read after.
    s_job_t *late = persist->busy;
    zactor_destroy(&persist->writer);
    if (late) {
        s_job_done(self, persist, late, false);
    }
    while (persist->queue.count > 0) {
        s_pending_t *p = s_ring_pop_front(&persist->queue);
        s_fail_pending(self, persist, &p, "stopped", "the persist actor stopped before writing it");
    }
    s_free_state(persist);
    *state_p = NULL;
}

const cd_actor_ops_t cd_persist_ops = {
    .kind = "persist",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
