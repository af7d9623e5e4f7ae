/*  cd_bus: the event bus (see cd_bus.h for the wire format).

    One thread, the actor's. State: the database connection (or a reconnect
    timer), the position last_seen (the newest event id already sent to the
    watcher, or -1 until known), the watch lease, and a few timers:
      read       0 ms, armed by a commit notice or when a read stopped at
                 its round limit: runs once per loop turn, after the turn's
                 messages, so a burst of notices costs one read
      poll       every poll_ms: reads while watched (events of other nodes),
                 lets a lapsed watch go
      retry      one-shot after the watcher's queue was full
      flush      0 ms, while ephemeral events wait: sends them as one
                 envelope per loop turn
      reconnect  one-shot with exponential backoff while the database is away

    A read takes up to `page` rows after last_seen, sends them in envelopes
    of at most batch_events / about batch_bytes, and advances last_seen
    past each envelope that went out; a full page reads again, up to
    S_READ_ROUNDS pages per turn, then yields to the loop (the read timer
    continues) so heartbeats and requests are not held up by a backlog.

    Live envelopes go through a mailer of their own whose runtime has a
    send timeout of 0, so a full watcher queue is reported at once
    (CD_EBUSY) instead of stalling the bus; requests to persist and answers
    use the actor's own mailer, with the node's send timeout. */
#include "cd_bus.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_mailer.h"
#include "cd_q_events.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_READ_ROUNDS 8         //  pages read per loop turn at most
#define S_LIST_MAX 1000         //  largest list page
#define S_LIST_BYTES (4u << 20) //  about the most event JSON in one list answer
#define S_AGENT_MAX 64          //  longest agent name
#define S_EVENT_OVERHEAD 48     //  msgpack bytes around one event's JSON, about
#define S_ID_TEXT 24            //  an int64 as decimal text, with NUL
#define S_OWNERS_MAX 4096       //  owners of ephemeral events remembered (then forgotten at once)

//  API.md's event types, as the events table's CHECK lists them.
static const char *const s_types[] = {
    "agent.status",   "task.created",     "task.started",   "task.handoff",   "task.token",
    "task.completed", "task.failed",      "task.cancelled", "hitl.requested", "hitl.answered",
    "hitl.expired",   "artifact.created", "schedule.fired",
};

typedef struct {
    cd_bus_args_t cfg;        //  arguments with defaults applied
    cd_db_t *db;              //  the read connection, or NULL while down
    int backoff_ms;           //  next reconnect delay
    int reconnect_timer;      //  timer id, 0 if none
    bool ever_connected;      //  a connect has succeeded once
    int64_t last_seen;        //  newest event id sent (or skipped at a watch start); -1 unknown
    int64_t watched_until_us; //  monotonic end of the watch lease; 0 when not watched
    bool announce;            //  a watch started: send the position before anything
    bool read_armed;          //  a read timer is set
    int retry_timer;          //  timer id while waiting to retry a full watcher, 0 if none
    cd_runtime_t live_rt;     //  the node's settings with a send timeout of 0
    cd_mailer_t *live;        //  sends live envelopes (never waits)
    cd_pack_t *pack;          //  requests and answers
    cd_pack_t *out;           //  live envelope payloads
    cd_pack_t *ephemeral;     //  ephemeral events waiting for the flush (array items)
    uint32_t n_ephemeral;     //  items in ephemeral
    bool flush_armed;         //  a flush timer is set
    zhashx_t *owners;         //  "task/project" -> s_owners_t: owners of ephemeral events seen
    uint64_t emitted;         //  events forwarded to persist
    uint64_t ephemerals;      //  ephemeral events accepted
    uint64_t failed;          //  emits refused or failed
    uint64_t read;            //  events read from the table and sent
    uint64_t envelopes;       //  live envelopes sent
    uint64_t delayed;         //  sends put off because the watcher was full
    uint64_t dropped;         //  ephemeral events dropped (watcher full or gone)
    uint64_t lists;           //  list requests answered
    uint64_t reconnects;      //  successful connects after the first
    char last_error[256];     //  last database failure, "" if none
} s_bus_t;

static int s_on_reconnect(cd_actor_t *self, void *arg);
static int s_on_read(cd_actor_t *self, void *arg);

static int64_t
s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool
s_watched(const s_bus_t *bus)
{
    return bus->watched_until_us != 0 && s_mono_us() < bus->watched_until_us;
}

static bool
s_known_type(cd_str_t type)
{
    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++) {
        if (cd_str_eq(type, s_types[i])) {
            return true;
        }
    }
    return false;
}

//  --- answers ----------------------------------------------------------------------------

//  Where the answer to env goes: its reply_to header, else its sender.
static void
s_reply_to(const cd_envelope_t *env, char *to, size_t size)
{
    cd_str_t reply = env->from;
    cd_envelope_header(env, "reply_to", &reply);
    snprintf(to, size, "%.*s", (int)reply.len, reply.ptr ? reply.ptr : "");
}

//  Answers env with kind and the bytes in bus->pack.
static void
s_answer(cd_actor_t *self, s_bus_t *bus, const cd_envelope_t *env, cd_kind_t kind)
{
    char to[CD_ENV_MAX_NAME + 1];
    s_reply_to(env, to, sizeof to);
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, kind, to);
    memcpy(out.parent_id, env->id, CD_ENV_UUID_SIZE);
    memcpy(out.trace_id, env->trace_id, CD_ENV_UUID_SIZE);
    out.task_id = env->task_id;
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(bus->pack);
    int rc = cd_actor_send(self, &out);
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(self), "answer not delivered", "{s:s, s:s}", "to", to, "error",
                    cd_errname(rc));
    }
}

static void
s_answer_error(cd_actor_t *self, s_bus_t *bus, const cd_envelope_t *env, const char *code,
               const char *message)
{
    cd_pack_reset(bus->pack);
    cd_pack_map(bus->pack, 2);
    cd_pack_cstr(bus->pack, "code");
    cd_pack_cstr(bus->pack, code);
    cd_pack_cstr(bus->pack, "message");
    cd_pack_cstr(bus->pack, message);
    s_answer(self, bus, env, CD_KIND_ERROR);
}

//  --- the database -----------------------------------------------------------------------

static void
s_db_down(cd_actor_t *self, s_bus_t *bus, const char *why)
{
    if (bus->db) {
        cd_log_warn(cd_actor_name(self), "database connection lost", "{s:s}", "error",
                    why ? why : "");
        cd_db_close(&bus->db);
    }
    snprintf(bus->last_error, sizeof bus->last_error, "%s", why ? why : "");
    if (!bus->reconnect_timer) {
        bus->reconnect_timer = cd_actor_after(self, bus->backoff_ms, s_on_reconnect, bus);
    }
}

//  The text of the connection's last error (static buffer of the caller).
static const char *
s_db_error(s_bus_t *bus, char *buf, size_t size)
{
    const cd_db_error_t *err = bus->db ? cd_db_error(bus->db) : NULL;
    snprintf(buf, size, "%s", err && err->message ? err->message : "database error");
    return buf;
}

//  After a failed query: a lost connection takes it down. That is
//  CD_ECONN, and also a failure the server did not report (no SQLSTATE:
//  libpq's own, such as "server closed the connection unexpectedly", which
//  can come before libpq marks the connection bad).
static void
s_db_failed(cd_actor_t *self, s_bus_t *bus, int rc, const char *what)
{
    char text[256];
    s_db_error(bus, text, sizeof text);
    const cd_db_error_t *err = bus->db ? cd_db_error(bus->db) : NULL;
    if (rc == CD_ECONN || !bus->db || !cd_db_connected(bus->db) || !err || !err->sqlstate[0]) {
        s_db_down(self, bus, text);
    } else {
        cd_log_warn(cd_actor_name(self), what, "{s:s, s:s}", "error", cd_errname(rc), "why", text);
    }
}

//  The newest event id into last_seen. False if the database failed.
static bool
s_seek_head(cd_actor_t *self, s_bus_t *bus)
{
    int64_t head = 0;
    int rc = cd_q_events_last_id(bus->db, &head);
    if (rc != 0) {
        s_db_failed(self, bus, rc, "cannot read the newest event id");
        return false;
    }
    bus->last_seen = head;
    return true;
}

static int
s_on_reconnect(cd_actor_t *self, void *arg)
{
    s_bus_t *bus = (s_bus_t *)arg;
    bus->reconnect_timer = 0;
    if (bus->db) {
        return 0;
    }
    char *errmsg = NULL;
    int rc = cd_db_connect(bus->cfg.conninfo, &bus->db, &errmsg);
    if (rc == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "SET statement_timeout = %d", bus->cfg.statement_timeout_ms);
        rc = cd_db_exec(bus->db, sql, NULL);
    }
    if (rc != 0) {
        if (!errmsg && bus->db) {
            char text[256];
            errmsg = strdup(s_db_error(bus, text, sizeof text));
        }
        cd_db_close(&bus->db);
        if (bus->ever_connected || bus->last_error[0] == '\0') {
            cd_log_warn(cd_actor_name(self), "database unavailable", "{s:s, s:i}", "error",
                        errmsg ? errmsg : cd_errname(rc), "next_ms", bus->backoff_ms);
        }
        snprintf(bus->last_error, sizeof bus->last_error, "%s", errmsg ? errmsg : "");
        free(errmsg);
        bus->reconnect_timer = cd_actor_after(self, bus->backoff_ms, s_on_reconnect, bus);
        bus->backoff_ms = bus->backoff_ms * 2 > bus->cfg.reconnect_max_ms
                              ? bus->cfg.reconnect_max_ms
                              : bus->backoff_ms * 2;
        return 0;
    }
    if (bus->ever_connected) {
        bus->reconnects++;
        cd_log_info(cd_actor_name(self), "database reachable", NULL);
    }
    bus->ever_connected = true;
    bus->backoff_ms = bus->cfg.reconnect_min_ms;
    bus->last_error[0] = '\0';
    //  The first position is the newest event; after an outage reading goes
    //  on from where it stopped.
    if (bus->last_seen < 0 && !s_seek_head(self, bus)) {
        return 0;
    }
    if (s_watched(bus) && !bus->read_armed) {
        bus->read_armed = true;
        cd_actor_after(self, 0, s_on_read, bus);
    }
    return 0;
}

//  --- live envelopes ---------------------------------------------------------------------

//  True if the watcher can be sent to; a watcher that is gone ends the
//  watch (its sends would only make dead letters).
static bool
s_watcher_here(s_bus_t *bus)
{
    cd_actor_status_t status = cd_registry_status(bus->live_rt.registry, bus->cfg.watcher);
    if (!cd_registry_status_deliverable(status)) {
        bus->watched_until_us = 0;
        return false;
    }
    return true;
}

//  Sends bus->out as a live envelope. Returns 0 or the send's error.
static int
s_send_live(s_bus_t *bus)
{
    cd_envelope_t env;
    cd_mailer_envelope_init(bus->live, &env, CD_KIND_EVENT, bus->cfg.watcher);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("events")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(bus->out);
    int rc = cd_mailer_send(bus->live, &env);
    if (rc == 0) {
        bus->envelopes++;
    }
    return rc;
}

static void
s_pack_nullable_int(cd_pack_t *pack, const cd_db_rows_t *rows, int row, int col)
{
    int64_t v = 0;
    if (cd_db_rows_int64(rows, row, col, &v) == 0) {
        cd_pack_int(pack, v);
    } else {
        cd_pack_nil(pack);
    }
}

static void
s_pack_nullable_str(cd_pack_t *pack, const cd_db_rows_t *rows, int row, int col)
{
    const char *v = cd_db_rows_get(rows, row, col);
    if (v) {
        cd_pack_cstr(pack, v);
    } else {
        cd_pack_nil(pack);
    }
}

//  One EVENT array from a row of cd_q_events_rows.
static void
s_pack_row(cd_pack_t *pack, const cd_db_rows_t *rows, int i)
{
    cd_pack_array(pack, 8);
    s_pack_nullable_int(pack, rows, i, CD_Q_EVENT_COL_ID);
    s_pack_nullable_str(pack, rows, i, CD_Q_EVENT_COL_TYPE);
    s_pack_nullable_int(pack, rows, i, CD_Q_EVENT_COL_PROJECT);
    s_pack_nullable_int(pack, rows, i, CD_Q_EVENT_COL_TASK);
    s_pack_nullable_str(pack, rows, i, CD_Q_EVENT_COL_AGENT);
    s_pack_nullable_str(pack, rows, i, CD_Q_EVENT_COL_JSON);
    s_pack_nullable_int(pack, rows, i, CD_Q_EVENT_COL_TASK_OWNER);
    s_pack_nullable_int(pack, rows, i, CD_Q_EVENT_COL_PROJECT_OWNER);
}

static size_t
s_row_size(const cd_db_rows_t *rows, int i)
{
    const char *json = cd_db_rows_get(rows, i, CD_Q_EVENT_COL_JSON);
    return (json ? strlen(json) : 0) + S_EVENT_OVERHEAD;
}

//  Sends rows [0, n) to the watcher in envelopes that chain from
//  last_seen. Returns the number of rows sent; fewer than n when the
//  watcher's queue was full or it went away.
static int
s_send_rows(cd_actor_t *self, s_bus_t *bus, const cd_db_rows_t *rows, int n)
{
    int sent = 0;
    while (sent < n) {
        int end = sent;
        size_t bytes = 0;
        while (end < n && end - sent < bus->cfg.batch_events &&
               (end == sent || bytes + s_row_size(rows, end) <= bus->cfg.batch_bytes)) {
            bytes += s_row_size(rows, end);
            end++;
        }
        int64_t last = 0;
        if (cd_db_rows_int64(rows, end - 1, CD_Q_EVENT_COL_ID, &last) != 0) {
            cd_log_error(cd_actor_name(self), "event row without an id", NULL);
            return sent;
        }
        cd_pack_reset(bus->out);
        cd_pack_map(bus->out, 3);
        cd_pack_cstr(bus->out, "prev");
        cd_pack_int(bus->out, bus->last_seen);
        cd_pack_cstr(bus->out, "last");
        cd_pack_int(bus->out, last);
        cd_pack_cstr(bus->out, "events");
        cd_pack_array(bus->out, (uint32_t)(end - sent));
        for (int i = sent; i < end; i++) {
            s_pack_row(bus->out, rows, i);
        }
        int rc = s_send_live(bus);
        if (rc != 0) {
            if (rc == CD_EBUSY) {
                bus->delayed++;
            } else {
                bus->watched_until_us = 0;
            }
            return sent;
        }
        bus->last_seen = last;
        bus->read += (uint64_t)(end - sent);
        sent = end;
    }
    return sent;
}

static int s_on_retry(cd_actor_t *self, void *arg);

//  Sends the position alone, {"prev": last_seen, "last": last_seen,
//  "events": []}: a watcher that is behind it learns of its gap now, not
//  at the next commit. Returns the send's result.
static int
s_announce(s_bus_t *bus)
{
    cd_pack_reset(bus->out);
    cd_pack_map(bus->out, 3);
    cd_pack_cstr(bus->out, "prev");
    cd_pack_int(bus->out, bus->last_seen);
    cd_pack_cstr(bus->out, "last");
    cd_pack_int(bus->out, bus->last_seen);
    cd_pack_cstr(bus->out, "events");
    cd_pack_array(bus->out, 0);
    return s_send_live(bus);
}

//  Reads what committed after last_seen and sends it, while watched.
static void
s_read(cd_actor_t *self, s_bus_t *bus)
{
    if (!bus->db || bus->last_seen < 0 || bus->retry_timer || !s_watched(bus) ||
        !s_watcher_here(bus)) {
        return;
    }
    if (bus->announce) {
        int rc = s_announce(bus);
        if (rc != 0) {
            if (rc == CD_EBUSY) {
                bus->delayed++;
                bus->retry_timer = cd_actor_after(self, bus->cfg.retry_ms, s_on_retry, bus);
            }
            return;
        }
        bus->announce = false;
    }
    for (int round = 0; round < S_READ_ROUNDS; round++) {
        cd_db_rows_t *rows = NULL;
        int rc = cd_q_events_tail(bus->db, bus->last_seen, bus->cfg.page, &rows);
        if (rc != 0) {
            s_db_failed(self, bus, rc, "cannot read new events");
            return;
        }
        int n = cd_db_rows_count(rows);
        int sent = s_send_rows(self, bus, rows, n);
        cd_db_rows_destroy(&rows);
        if (sent < n) {
            if (s_watched(bus)) {
                bus->retry_timer = cd_actor_after(self, bus->cfg.retry_ms, s_on_retry, bus);
            }
            return;
        }
        if (n < bus->cfg.page) {
            return;
        }
    }
    //  A backlog: go on next turn, after the inbox.
    if (!bus->read_armed) {
        bus->read_armed = true;
        cd_actor_after(self, 0, s_on_read, bus);
    }
}

static int
s_on_read(cd_actor_t *self, void *arg)
{
    s_bus_t *bus = (s_bus_t *)arg;
    bus->read_armed = false;
    s_read(self, bus);
    return 0;
}

static int
s_on_retry(cd_actor_t *self, void *arg)
{
    s_bus_t *bus = (s_bus_t *)arg;
    bus->retry_timer = 0;
    s_read(self, bus);
    return 0;
}

static int
s_on_poll(cd_actor_t *self, void *arg)
{
    s_bus_t *bus = (s_bus_t *)arg;
    if (bus->watched_until_us != 0 && !s_watched(bus)) {
        cd_log_debug(cd_actor_name(self), "watch lapsed", NULL);
        bus->watched_until_us = 0;
    }
    s_read(self, bus);
    return 0;
}

static int
s_on_flush(cd_actor_t *self, void *arg)
{
    s_bus_t *bus = (s_bus_t *)arg;
    bus->flush_armed = false;
    if (bus->n_ephemeral == 0) {
        return 0;
    }
    if (s_watched(bus) && s_watcher_here(bus)) {
        cd_bin_t items = cd_pack_bytes(bus->ephemeral);
        cd_pack_reset(bus->out);
        cd_pack_map(bus->out, 1);
        cd_pack_cstr(bus->out, "events");
        cd_pack_array(bus->out, bus->n_ephemeral);
        cd_pack_raw(bus->out, items.ptr, items.len);
        if (s_send_live(bus) != 0) {
            bus->dropped += bus->n_ephemeral;
        }
    } else {
        bus->dropped += bus->n_ephemeral;
    }
    cd_pack_reset(bus->ephemeral);
    bus->n_ephemeral = 0;
    return 0;
}

//  --- emit -------------------------------------------------------------------------------

typedef struct {
    cd_str_t type;      //  event type
    bool has_project;   //  project_id given (not nil)
    int64_t project_id; //  its value
    bool has_task;      //  task_id given
    int64_t task_id;    //  its value
    cd_str_t agent;     //  agent, ptr NULL if none
    cd_str_t data;      //  JSON text, ptr NULL if none
    bool persist;       //  written to the table (else ephemeral)
} s_emit_t;

static bool
s_is_nil(cd_bin_t value)
{
    return value.len == 1 && value.ptr[0] == 0xc0;
}

//  An optional integer field: absent or nil leaves *has false.
static const char *
s_opt_int(cd_bin_t map, const char *key, bool *has, int64_t *value, const char *bad)
{
    cd_bin_t v;
    *has = false;
    if (cd_msgpack_map_find(map, key, &v) != 0 || s_is_nil(v)) {
        return NULL;
    }
    if (cd_msgpack_read_int(v, value) != 0) {
        return bad;
    }
    *has = true;
    return NULL;
}

//  An optional text field (str or bin): absent or nil leaves out->ptr NULL.
static const char *
s_opt_text(cd_bin_t map, const char *key, cd_str_t *out, const char *bad)
{
    cd_bin_t v;
    *out = (cd_str_t){NULL, 0};
    if (cd_msgpack_map_find(map, key, &v) != 0 || s_is_nil(v)) {
        return NULL;
    }
    if (cd_msgpack_read_str(v, out) == 0) {
        return NULL;
    }
    //  bin 8/16/32 carrying text
    uint8_t c = v.len > 0 ? v.ptr[0] : 0;
    size_t width = c == 0xc4 ? 1 : c == 0xc5 ? 2 : c == 0xc6 ? 4 : 0;
    if (width == 0 || v.len < 1 + width) {
        return bad;
    }
    uint64_t len = 0;
    for (size_t i = 0; i < width; i++) {
        len = len << 8 | v.ptr[1 + i];
    }
    if (len != v.len - 1 - width) {
        return bad;
    }
    *out = (cd_str_t){(const char *)v.ptr + 1 + width, (uint32_t)len};
    return NULL;
}

//  Reads an emit payload. Returns NULL or what is wrong (static text).
static const char *
s_emit_read(const cd_envelope_t *env, s_emit_t *e, json_t **data)
{
    *e = (s_emit_t){.persist = true};
    *data = NULL;
    if (env->payload_type != CD_PAYLOAD_MAP) {
        return "the payload must be a map {type, project_id, task_id, agent, data, persist}";
    }
    cd_bin_t map = env->payload, v;
    if (cd_msgpack_map_find(map, "type", &v) != 0 || cd_msgpack_read_str(v, &e->type) != 0) {
        return "\"type\" must be a string";
    }
    if (!s_known_type(e->type)) {
        return "\"type\" is not an event type";
    }
    const char *bad = s_opt_int(map, "project_id", &e->has_project, &e->project_id,
                                "\"project_id\" must be an integer");
    if (!bad) {
        bad =
            s_opt_int(map, "task_id", &e->has_task, &e->task_id, "\"task_id\" must be an integer");
    }
    if (!bad) {
        bad = s_opt_text(map, "agent", &e->agent, "\"agent\" must be a string");
    }
    if (!bad && e->agent.ptr && (e->agent.len == 0 || e->agent.len > S_AGENT_MAX)) {
        bad = "\"agent\" must be 1-64 bytes";
    }
    if (!bad) {
        bad = s_opt_text(map, "data", &e->data, "\"data\" must be JSON text");
    }
    if (bad) {
        return bad;
    }
    if (cd_msgpack_map_find(map, "persist", &v) == 0 && !s_is_nil(v) &&
        cd_msgpack_read_bool(v, &e->persist) != 0) {
        return "\"persist\" must be a boolean";
    }
    if (e->data.ptr) {
        //  Checked here (it is embedded as it is in what clients receive):
        //  one JSON object, nothing after it.
        json_error_t err;
        *data = json_loadb(e->data.ptr, e->data.len, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(*data)) {
            json_decref(*data);
            *data = NULL;
            return "\"data\" must be the JSON text of an object";
        }
    }
    return NULL;
}

//  RFC 3339 UTC with microseconds, as the database writes timestamps.
static void
s_timestamp(int64_t us, char *buf, size_t size)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%06dZ", date, (int)(us % 1000000));
}

typedef struct {
    int64_t task;    //  created_by of the event's task, or CD_Q_NULL
    int64_t project; //  created_by of its project, or CD_Q_NULL
} s_owners_t;

static void
s_owners_free(void **item)
{
    free(*item);
    *item = NULL;
}

//  The owners of an ephemeral event (it has no row to read them with):
//  looked up once per task and project, then remembered (they never
//  change). Unknown when the database is away: CD_Q_NULL, so only admins
//  see the event.
static s_owners_t
s_ephemeral_owners(cd_actor_t *self, s_bus_t *bus, const s_emit_t *e)
{
    s_owners_t owners = {CD_Q_NULL, CD_Q_NULL};
    if (!e->has_task && !e->has_project) {
        return owners;
    }
    char key[2 * S_ID_TEXT + 2];
    snprintf(key, sizeof key, "%lld/%lld", e->has_task ? (long long)e->task_id : 0,
             e->has_project ? (long long)e->project_id : 0);
    const s_owners_t *known = (const s_owners_t *)zhashx_lookup(bus->owners, key);
    if (known) {
        return *known;
    }
    if (!bus->db) {
        return owners;
    }
    int rc = cd_q_events_owners(bus->db, e->has_task ? e->task_id : CD_Q_NULL,
                                e->has_project ? e->project_id : CD_Q_NULL, &owners.task,
                                &owners.project);
    if (rc != 0) {
        s_db_failed(self, bus, rc, "cannot read an event's owners");
        return (s_owners_t){CD_Q_NULL, CD_Q_NULL};
    }
    if (zhashx_size(bus->owners) >= S_OWNERS_MAX) {
        zhashx_purge(bus->owners);
    }
    s_owners_t *copy = (s_owners_t *)zmalloc(sizeof *copy);
    *copy = owners;
    zhashx_insert(bus->owners, key, copy);
    return owners;
}

static void
s_pack_owner(cd_pack_t *p, int64_t owner)
{
    if (owner != CD_Q_NULL) {
        cd_pack_int(p, owner);
    } else {
        cd_pack_nil(p);
    }
}

//  An ephemeral event: queued for this turn's live envelope.
static void
s_emit_ephemeral(cd_actor_t *self, s_bus_t *bus, const cd_envelope_t *env, const s_emit_t *e,
                 json_t *data)
{
    bus->ephemerals++;
    if (!s_watched(bus)) {
        json_decref(data);
        bus->dropped++;
        return;
    }
    char ts[64];
    s_timestamp(env->ts > 0 ? env->ts : cd_now_us(), ts, sizeof ts);
    json_t *event = json_pack("{s:n, s:s, s:s%, s:o, s:o, s:o, s:o}", "id", "ts", ts, "type",
                              e->type.ptr, (size_t)e->type.len, "project_id",
                              e->has_project ? json_integer(e->project_id) : json_null(), "task_id",
                              e->has_task ? json_integer(e->task_id) : json_null(), "agent",
                              e->agent.ptr ? json_stringn(e->agent.ptr, e->agent.len) : json_null(),
                              "data", data ? data : json_object());
    char *text = event ? json_dumps(event, JSON_COMPACT) : NULL;
    json_decref(event);
    if (!text) {
        //  Invalid UTF-8 in the agent name, the only text not checked yet.
        bus->failed++;
        return;
    }
    s_owners_t owners = s_ephemeral_owners(self, bus, e);
    cd_pack_t *p = bus->ephemeral;
    cd_pack_array(p, 8);
    cd_pack_nil(p);
    cd_pack_str(p, e->type.ptr, e->type.len);
    if (e->has_project) {
        cd_pack_int(p, e->project_id);
    } else {
        cd_pack_nil(p);
    }
    if (e->has_task) {
        cd_pack_int(p, e->task_id);
    } else {
        cd_pack_nil(p);
    }
    if (e->agent.ptr) {
        cd_pack_str(p, e->agent.ptr, e->agent.len);
    } else {
        cd_pack_nil(p);
    }
    cd_pack_cstr(p, text);
    free(text);
    s_pack_owner(p, owners.task);
    s_pack_owner(p, owners.project);
    bus->n_ephemeral++;
    if (bus->n_ephemeral >= (uint32_t)bus->cfg.batch_events ||
        cd_pack_bytes(p).len >= bus->cfg.batch_bytes) {
        s_on_flush(self, bus);
    } else if (!bus->flush_armed) {
        bus->flush_armed = true;
        cd_actor_after(self, 0, s_on_flush, bus);
    }
}

static int
s_emit(cd_actor_t *self, s_bus_t *bus, const cd_envelope_t *env)
{
    cd_str_t ack = {NULL, 0};
    bool answer = !(cd_envelope_header(env, "ack", &ack) && cd_str_eq(ack, "none"));
    s_emit_t e;
    json_t *data = NULL;
    const char *bad = s_emit_read(env, &e, &data);
    if (bad) {
        bus->failed++;
        cd_log_debug(cd_actor_name(self), "emit refused", "{s:s}", "why", bad);
        if (answer) {
            s_answer_error(self, bus, env, "bad_request", bad);
        }
        return 0;
    }
    if (!e.persist) {
        s_emit_ephemeral(self, bus, env, &e, data);
        if (answer) {
            cd_pack_reset(bus->pack);
            cd_pack_map(bus->pack, 3);
            cd_pack_cstr(bus->pack, "value");
            cd_pack_nil(bus->pack);
            cd_pack_cstr(bus->pack, "rows");
            cd_pack_int(bus->pack, 0);
            cd_pack_cstr(bus->pack, "replayed");
            cd_pack_bool(bus->pack, false);
            s_answer(self, bus, env, CD_KIND_RESULT);
        }
        return 0;
    }
    json_decref(data);
    cd_pack_t *p = bus->pack;
    cd_pack_reset(p);
    cd_pack_map(p, 2);
    cd_pack_cstr(p, "table");
    cd_pack_cstr(p, bus->cfg.table);
    cd_pack_cstr(p, "params");
    cd_pack_array(p, 5);
    cd_pack_str(p, e.type.ptr, e.type.len);
    if (e.has_project) {
        cd_pack_int(p, e.project_id);
    } else {
        cd_pack_nil(p);
    }
    if (e.has_task) {
        cd_pack_int(p, e.task_id);
    } else {
        cd_pack_nil(p);
    }
    if (e.agent.ptr) {
        cd_pack_str(p, e.agent.ptr, e.agent.len);
    } else {
        cd_pack_nil(p);
    }
    if (e.data.ptr) {
        cd_pack_str(p, e.data.ptr, e.data.len);
    } else {
        cd_pack_cstr(p, "{}");
    }
    char reply[CD_ENV_MAX_NAME + 1];
    if (answer) {
        s_reply_to(env, reply, sizeof reply);
    } else {
        snprintf(reply, sizeof reply, "%s", cd_actor_name(self));
    }
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, CD_KIND_TASK, bus->cfg.persist);
    //  The emit's id is the write's: persist records it, so a retried emit
    //  is written at most once, and answers the emitter with it.
    memcpy(out.id, env->id, CD_ENV_UUID_SIZE);
    memcpy(out.trace_id, env->trace_id, CD_ENV_UUID_SIZE);
    out.task_id = env->task_id;
    out.deadline = env->deadline;
    out.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("write")};
    out.headers[1] = (cd_env_header_t){cd_str("reply_to"), cd_str(reply)};
    out.headers[2] = (cd_env_header_t){cd_str("ack"), cd_str("errors")};
    out.n_headers = answer ? 2 : 3;
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = cd_pack_bytes(p);
    int rc = cd_actor_send(self, &out);
    if (rc == 0) {
        bus->emitted++;
        return 0;
    }
    bus->failed++;
    if (answer) {
        bool busy = rc == CD_EBUSY;
        s_answer_error(self, bus, env, busy ? "busy" : "db_unavailable",
                       busy ? "the persist actor's queue is full"
                            : "the persist actor is not running");
    }
    return 0;
}

//  --- list, watch, stats -----------------------------------------------------------------

static int
s_list(cd_actor_t *self, s_bus_t *bus, const cd_envelope_t *env)
{
    bus->lists++;
    cd_bin_t map = env->payload, v;
    if (env->payload_type != CD_PAYLOAD_MAP) {
        map = (cd_bin_t){(const uint8_t *)"\x80", 1}; //  {}: every key is optional
    }
    cd_q_event_filter_t filter = CD_Q_EVENT_FILTER_ALL;
    bool has = false;
    int64_t after = 0, limit = CD_Q_LIMIT_DEFAULT;
    bool head_only = false;
    cd_str_t agent = {NULL, 0}, types = {NULL, 0};
    const char *bad = s_opt_int(map, "project_id", &has, &filter.project_id, "\"project_id\"");
    if (!has) {
        filter.project_id = CD_Q_NULL;
    }
    if (!bad) {
        bad = s_opt_int(map, "task_id", &has, &filter.task_id, "\"task_id\"");
        if (!has) {
            filter.task_id = CD_Q_NULL;
        }
    }
    if (!bad) {
        bad = s_opt_int(map, "viewer", &has, &filter.viewer, "\"viewer\"");
        if (!has) {
            filter.viewer = CD_Q_NULL;
        }
    }
    if (!bad) {
        bad = s_opt_int(map, "after", &has, &after, "\"after\"");
    }
    if (!bad) {
        bad = s_opt_int(map, "limit", &has, &limit, "\"limit\"");
    }
    if (!bad) {
        bad = s_opt_text(map, "agent", &agent, "\"agent\"");
    }
    if (!bad) {
        bad = s_opt_text(map, "types", &types, "\"types\"");
    }
    if (!bad && cd_msgpack_map_find(map, "head_only", &v) == 0 && !s_is_nil(v) &&
        cd_msgpack_read_bool(v, &head_only) != 0) {
        bad = "\"head_only\"";
    }
    if (!bad && (after < 0 || limit < 1 || limit > S_LIST_MAX || agent.len > S_AGENT_MAX ||
                 types.len > 1024)) {
        bad = "a value out of range (after >= 0, limit 1..1000, agent 1-64 bytes)";
    }
    if (bad) {
        char message[160];
        snprintf(message, sizeof message, "list: %s is malformed", bad);
        s_answer_error(self, bus, env, "bad_request", message);
        return 0;
    }
    if (!bus->db) {
        char message[320];
        snprintf(message, sizeof message, "the database is unavailable: %s",
                 bus->last_error[0] ? bus->last_error : "not connected");
        s_answer_error(self, bus, env, "db_unavailable", message);
        return 0;
    }
    //  The head first: whatever has an id up to it is committed already,
    //  so the page below sees it.
    int64_t head = 0;
    int rc = cd_q_events_last_id(bus->db, &head);
    cd_db_rows_t *rows = NULL;
    if (rc == 0 && !head_only) {
        char agent_buf[S_AGENT_MAX + 1], types_buf[1025], after_buf[S_ID_TEXT];
        snprintf(agent_buf, sizeof agent_buf, "%.*s", (int)agent.len, agent.ptr ? agent.ptr : "");
        snprintf(types_buf, sizeof types_buf, "%.*s", (int)types.len, types.ptr ? types.ptr : "");
        snprintf(after_buf, sizeof after_buf, "%lld", (long long)after);
        filter.agent = agent.ptr ? agent_buf : NULL;
        filter.types = types.ptr ? types_buf : NULL;
        filter.after = after_buf;
        filter.limit = (int)limit + 1;
        rc = cd_q_events_rows(bus->db, &filter, &rows);
    }
    if (rc != 0) {
        char text[256];
        s_db_error(bus, text, sizeof text);
        s_answer_error(self, bus, env, rc == CD_ECONN ? "db_unavailable" : "db_error", text);
        s_db_failed(self, bus, rc, "cannot list events");
        return 0;
    }
    int n = rows ? cd_db_rows_count(rows) : 0;
    int give = 0;
    size_t bytes = 0;
    while (give < n && give < limit &&
           (give == 0 || bytes + s_row_size(rows, give) <= S_LIST_BYTES)) {
        bytes += s_row_size(rows, give);
        give++;
    }
    cd_pack_t *p = bus->pack;
    cd_pack_reset(p);
    cd_pack_map(p, 3);
    cd_pack_cstr(p, "events");
    cd_pack_array(p, (uint32_t)give);
    for (int i = 0; i < give; i++) {
        s_pack_row(p, rows, i);
    }
    cd_pack_cstr(p, "next_cursor");
    if (give < n) {
        s_pack_nullable_str(p, rows, give - 1, CD_Q_EVENT_COL_ID);
    } else {
        cd_pack_nil(p);
    }
    cd_pack_cstr(p, "head");
    cd_pack_int(p, head);
    cd_db_rows_destroy(&rows);
    s_answer(self, bus, env, CD_KIND_RESULT);
    return 0;
}

static int
s_watch(cd_actor_t *self, s_bus_t *bus, const cd_envelope_t *env)
{
    cd_bin_t v;
    bool on = false;
    if (env->payload_type != CD_PAYLOAD_MAP || cd_msgpack_map_find(env->payload, "on", &v) != 0 ||
        cd_msgpack_read_bool(v, &on) != 0) {
        cd_log_debug(cd_actor_name(self), "malformed watch ignored", NULL);
        return 0;
    }
    if (!on) {
        bus->watched_until_us = 0;
        return 0;
    }
    if (!s_watched(bus)) {
        //  A new watch: its watcher replays what came before by itself.
        cd_log_debug(cd_actor_name(self), "watch started", NULL);
        bus->last_seen = -1;
        bus->announce = true;
        if (bus->db) {
            s_seek_head(self, bus);
        }
        if (!bus->read_armed) {
            bus->read_armed = true;
            cd_actor_after(self, 0, s_on_read, bus);
        }
    }
    bus->watched_until_us = s_mono_us() + (int64_t)bus->cfg.watch_lease_ms * 1000;
    return 0;
}

static void
s_stats(cd_actor_t *self, s_bus_t *bus, const cd_envelope_t *env)
{
    cd_pack_t *p = bus->pack;
    cd_pack_reset(p);
    cd_pack_map(p, 13);
    cd_pack_cstr(p, "db_ok");
    cd_pack_bool(p, bus->db != NULL);
    cd_pack_cstr(p, "watched");
    cd_pack_bool(p, s_watched(bus));
    cd_pack_cstr(p, "last_seen");
    cd_pack_int(p, bus->last_seen);
    cd_pack_cstr(p, "emitted");
    cd_pack_uint(p, bus->emitted);
    cd_pack_cstr(p, "ephemeral");
    cd_pack_uint(p, bus->ephemerals);
    cd_pack_cstr(p, "failed");
    cd_pack_uint(p, bus->failed);
    cd_pack_cstr(p, "read");
    cd_pack_uint(p, bus->read);
    cd_pack_cstr(p, "envelopes");
    cd_pack_uint(p, bus->envelopes);
    cd_pack_cstr(p, "delayed");
    cd_pack_uint(p, bus->delayed);
    cd_pack_cstr(p, "dropped");
    cd_pack_uint(p, bus->dropped);
    cd_pack_cstr(p, "lists");
    cd_pack_uint(p, bus->lists);
    cd_pack_cstr(p, "reconnects");
    cd_pack_uint(p, bus->reconnects);
    cd_pack_cstr(p, "last_error");
    cd_pack_cstr(p, bus->last_error);
    s_answer(self, bus, env, CD_KIND_RESULT);
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_bus_t *bus = (s_bus_t *)state;
    if (env->kind == CD_KIND_RESULT || env->kind == CD_KIND_ERROR) {
        //  Persist's answers to emits that asked for none.
        if (env->kind == CD_KIND_ERROR) {
            bus->failed++;
            cd_str_t code = {NULL, 0}, message = {NULL, 0};
            cd_bin_t v;
            if (env->payload_type == CD_PAYLOAD_MAP) {
                if (cd_msgpack_map_find(env->payload, "code", &v) == 0) {
                    cd_msgpack_read_str(v, &code);
                }
                if (cd_msgpack_map_find(env->payload, "message", &v) == 0) {
                    cd_msgpack_read_str(v, &message);
                }
            }
            cd_log_warn(cd_actor_name(self), "event not written", "{s:s%, s:s%}", "code",
                        code.ptr ? code.ptr : "", (size_t)code.len, "message",
                        message.ptr ? message.ptr : "", (size_t)message.len);
        }
        return 0;
    }
    cd_str_t op = {NULL, 0};
    cd_envelope_header(env, "op", &op);
    if (cd_str_eq(op, "emit")) {
        return s_emit(self, bus, env);
    }
    if (cd_str_eq(op, "committed")) {
        if (s_watched(bus) && !bus->read_armed) {
            bus->read_armed = true;
            cd_actor_after(self, 0, s_on_read, bus);
        }
        return 0;
    }
    if (cd_str_eq(op, "watch")) {
        return s_watch(self, bus, env);
    }
    if (cd_str_eq(op, "list")) {
        return s_list(self, bus, env);
    }
    if (cd_str_eq(op, "stats")) {
        s_stats(self, bus, env);
        return 0;
    }
    s_answer_error(self, bus, env, "bad_request",
                   "unknown op (known: emit, committed, watch, list, stats)");
    return 0;
}

//  --- lifecycle --------------------------------------------------------------------------

static int
s_default(int value, int def)
{
    return value > 0 ? value : def;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_bus_args_t *in = (const cd_bus_args_t *)args;
    if (!in || !in->conninfo) {
        *why = "bus: no database conninfo";
        return CD_EINVAL;
    }
    s_bus_t *bus = (s_bus_t *)zmalloc(sizeof *bus);
    bus->cfg = *in;
    cd_bus_args_t *cfg = &bus->cfg;
    cfg->watcher = cfg->watcher && *cfg->watcher ? cfg->watcher : "http";
    cfg->persist = cfg->persist && *cfg->persist ? cfg->persist : "persist";
    cfg->table = cfg->table && *cfg->table ? cfg->table : "events";
    cfg->poll_ms = s_default(cfg->poll_ms, CD_BUS_POLL_MS);
    cfg->page = s_default(cfg->page, CD_BUS_PAGE);
    if (cfg->page > CD_Q_EVENTS_ROWS_MAX) {
        cfg->page = CD_Q_EVENTS_ROWS_MAX;
    }
    cfg->batch_events = s_default(cfg->batch_events, CD_BUS_BATCH_EVENTS);
    cfg->batch_bytes = cfg->batch_bytes > 0 ? cfg->batch_bytes : CD_BUS_BATCH_BYTES;
    cfg->watch_lease_ms = s_default(cfg->watch_lease_ms, CD_BUS_WATCH_LEASE_MS);
    cfg->retry_ms = s_default(cfg->retry_ms, CD_BUS_RETRY_MS);
    cfg->reconnect_min_ms = s_default(cfg->reconnect_min_ms, CD_BUS_RECONNECT_MIN_MS);
    cfg->reconnect_max_ms = s_default(cfg->reconnect_max_ms, CD_BUS_RECONNECT_MAX_MS);
    if (cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
        cfg->reconnect_max_ms = cfg->reconnect_min_ms;
    }
    cfg->statement_timeout_ms = s_default(cfg->statement_timeout_ms, CD_BUS_STATEMENT_TIMEOUT_MS);
    bus->backoff_ms = cfg->reconnect_min_ms;
    bus->last_seen = -1;
    bus->live_rt = *cd_actor_runtime(self);
    bus->live_rt.send_timeout_ms = 0;
    bus->live = cd_mailer_new(&bus->live_rt, cd_actor_name(self));
    bus->pack = cd_pack_new();
    bus->out = cd_pack_new();
    bus->ephemeral = cd_pack_new();
    bus->owners = zhashx_new();
    zhashx_set_destructor(bus->owners, s_owners_free);
    //  The first connect runs from the loop: a database that is away at
    //  start is an outage like any other, not a failure to start.
    bus->reconnect_timer = cd_actor_after(self, 0, s_on_reconnect, bus);
    cd_actor_every(self, cfg->poll_ms, s_on_poll, bus);
    *state_p = bus;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_bus_t *bus = (s_bus_t *)*state_p;
    if (!bus) {
        return;
    }
    cd_db_close(&bus->db);
    cd_mailer_destroy(&bus->live);
    cd_pack_destroy(&bus->pack);
    cd_pack_destroy(&bus->out);
    cd_pack_destroy(&bus->ephemeral);
    zhashx_destroy(&bus->owners);
    free(bus);
    *state_p = NULL;
}

const cd_actor_ops_t cd_bus_ops = {
    .kind = "bus",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
