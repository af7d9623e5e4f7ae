/*  cd_events: event lists, SSE and WebSocket subscribers (see cd_events.h
    for the routes and the gap-free rule).

    Events. A live envelope from the bus becomes one batch: a reference-
    counted array of reference-counted events, each one allocation that
    holds its filter fields, its JSON and its SSE text (built once, shared
    by every subscriber). Subscribers hold references: SSE ones in their
    send queue and in the iovecs h2o is writing, all of them in `held`
    while they replay. WebSocket messages are copied into wslay's queue.

    A subscriber is replaying (pages from the bus, live batches held) or
    live (batches applied as they come). Registered subscribers are
    offered every live batch; the bus is watched while there is one.

    Sending. SSE: at most one h2o_send in flight per stream (h2o's rule);
    when h2o calls the generator's proceed, the events sent are released
    and the next ones (up to S_SEND_MAX) go. A replay asks for its next
    page only once the queue has drained, so replays are paced by the
    client. WebSocket: messages go into wslay's queue and h2o's websocket
    helper writes them; the queue length is the buffer, and a replay's
    pacing is checked by a short pump timer (the helper reports no drain).

    Lifetime. An SSE subscriber is tied to its request by a shared
    allocation in the request's pool whose dispose callback says the
    request is gone (client gone, stream reset, response finished): the
    subscriber is then cleaned up and freed. A WebSocket subscriber ends
    with its connection (the helper's callback with no message). Anything
    that may end a subscriber synchronously (a stream reset, the websocket
    helper's proceed) is bracketed by a busy count, and a subscriber that
    went meanwhile is freed when the count drops to zero; iterations take
    the next link first.

    Interface: the routes cd_events_get, cd_events_ws; inside the layer
    cd__events_start, cd__events_live, cd__events_shutdown,
    cd__events_stop. */
#include "cd_events.h"
#include "http_internal.h"

#include "cd_error.h"
#include "cd_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_REPLAY_PAGE 500      //  events per replay page
#define S_LIST_DEFAULT 50      //  JSON list page size by default
#define S_LIST_MAX 1000        //  ... and at most
#define S_CALL_TIMEOUT_MS 5000 //  a page request to the bus
#define S_RETRY_MS 500         //  after a failed page, once streaming
#define S_RENEW_MS 1000        //  watch renewal (the bus's lease is 5 s)
#define S_PUMP_MS 10           //  WebSocket replay pacing checks
#define S_CHECK_MS 250         //  backlog checks (slow subscribers)
#define S_HARD_FACTOR 16       //  a backlog this many times the limit is dropped at once
#define S_SEND_MAX 256         //  events per h2o_send
#define S_WS_MAX_MESSAGE 65536 //  largest message a WebSocket client may send
#define S_AGENT_MAX 64         //  longest agent name
#define S_NONE INT64_MIN       //  no value (a filter that matches anything)
#define S_PARAM_MAX 1024       //  longest decoded query parameter value

//  API.md's event types; a subscription's types are a bit mask over them.
static const char *const s_types[] = {
    "agent.status",   "task.created",     "task.started",   "task.handoff",   "task.token",
    "task.completed", "task.failed",      "task.cancelled", "hitl.requested", "hitl.answered",
    "hitl.expired",   "artifact.created", "schedule.fired",
};
#define S_N_TYPES (sizeof s_types / sizeof s_types[0])

//  --- events and batches -------------------------------------------------------------

typedef struct {
    int refs;              //  holders; < 0: permanent (the ping and hello comments)
    int64_t id;            //  event id; 0 for an ephemeral event
    int64_t project_id;    //  or S_NONE
    int64_t task_id;       //  or S_NONE
    int64_t task_owner;    //  the user who created its task, or S_NONE
    int64_t project_owner; //  the user who created its project, or S_NONE
    int type;              //  index in s_types, -1 if unknown
    const char *agent;     //  in this allocation, or NULL
    const char *json;      //  the event JSON, in this allocation
    size_t json_len;       //  its length
    const char *sse;       //  the SSE text, in this allocation
    size_t sse_len;        //  its length
} s_event_t;

typedef struct {
    int refs;            //  holders
    bool ephemeral;      //  no range: prev and last mean nothing
    int64_t prev;        //  the batch covers every event with prev < id <= last
    int64_t last;        //  ...
    size_t bytes;        //  SSE bytes of its events (what holding it costs)
    size_t n;            //  events
    s_event_t *events[]; //  references
} s_batch_t;

static void *
s_alloc(size_t size)
{
    void *p = calloc(1, size);
    if (!p) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return p;
}

static int
s_type_index(const char *type, size_t len)
{
    for (size_t i = 0; i < S_N_TYPES; i++) {
        if (strlen(s_types[i]) == len && memcmp(s_types[i], type, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

//  Builds an event; its SSE text is "id: N\n" (persisted ones only),
//  "event: type\n", one "data: " line per line of the JSON, "\n".
static s_event_t *
s_event_new(int64_t id, const char *type, size_t type_len, int64_t project_id, int64_t task_id,
            const char *agent, size_t agent_len, const char *json, size_t json_len,
            int64_t task_owner, int64_t project_owner)
{
    size_t lines = 1;
    for (size_t i = 0; i < json_len; i++) {
        lines += json[i] == '\n';
    }
    char id_line[40] = "";
    if (id > 0) {
        snprintf(id_line, sizeof id_line, "id: %lld\n", (long long)id);
    }
    size_t sse_len = strlen(id_line) + 7 + type_len + 1 + lines * 7 + json_len + 1;
    size_t size = sizeof(s_event_t) + (agent ? agent_len + 1 : 0) + json_len + 1 + sse_len + 1;
    s_event_t *ev = (s_event_t *)s_alloc(size);
    char *at = (char *)(ev + 1);
    ev->refs = 1;
    ev->id = id;
    ev->project_id = project_id;
    ev->task_id = task_id;
    ev->task_owner = task_owner;
    ev->project_owner = project_owner;
    ev->type = s_type_index(type, type_len);
    if (agent) {
        memcpy(at, agent, agent_len);
        ev->agent = at;
        at += agent_len + 1;
    }
    memcpy(at, json, json_len);
    ev->json = at;
    ev->json_len = json_len;
    at += json_len + 1;
    char *sse = at;
    size_t n = strlen(id_line);
    memcpy(sse, id_line, n);
    memcpy(sse + n, "event: ", 7);
    n += 7;
    memcpy(sse + n, type, type_len);
    n += type_len;
    sse[n++] = '\n';
    const char *line = json, *end = json + json_len;
    while (line <= end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *stop = nl ? nl : end;
        memcpy(sse + n, "data: ", 6);
        n += 6;
        memcpy(sse + n, line, (size_t)(stop - line));
        n += (size_t)(stop - line);
        sse[n++] = '\n';
        line = stop + 1;
    }
    sse[n++] = '\n';
    ev->sse = sse;
    ev->sse_len = n;
    return ev;
}

//  A permanent comment event (": ping\n\n").
static s_event_t *
s_comment_new(const char *text)
{
    size_t len = strlen(text);
    s_event_t *ev = (s_event_t *)s_alloc(sizeof *ev + len + 1);
    char *at = (char *)(ev + 1);
    memcpy(at, text, len);
    ev->refs = -1;
    ev->type = -1;
    ev->sse = at;
    ev->sse_len = len;
    ev->json = at;
    return ev;
}

static void
s_event_release(s_event_t *ev)
{
    if (ev && ev->refs > 0 && --ev->refs == 0) {
        free(ev);
    }
}

static s_event_t *
s_event_ref(s_event_t *ev)
{
    if (ev->refs > 0) {
        ev->refs++;
    }
    return ev;
}

static void
s_batch_release(s_batch_t *batch)
{
    if (batch && --batch->refs == 0) {
        for (size_t i = 0; i < batch->n; i++) {
            s_event_release(batch->events[i]);
        }
        free(batch);
    }
}

static int64_t
s_json_id(const json_t *value)
{
    return json_is_integer(value) ? (int64_t)json_integer_value(value) : S_NONE;
}

//  An EVENT array of the bus ([id, type, project_id, task_id, agent,
//  json, task_owner, project_owner]) as an event, or NULL if it is
//  malformed.
static s_event_t *
s_event_from_json(const json_t *item)
{
    if (!json_is_array(item) || json_array_size(item) != 8) {
        return NULL;
    }
    const json_t *id = json_array_get(item, 0), *type = json_array_get(item, 1),
                 *agent = json_array_get(item, 4), *json = json_array_get(item, 5),
                 *task_owner = json_array_get(item, 6), *project_owner = json_array_get(item, 7);
    if ((!json_is_integer(id) && !json_is_null(id)) || !json_is_string(type) ||
        (!json_is_string(agent) && !json_is_null(agent)) || !json_is_string(json) ||
        (json_is_integer(id) && json_integer_value(id) < 1) ||
        (!json_is_integer(task_owner) && !json_is_null(task_owner)) ||
        (!json_is_integer(project_owner) && !json_is_null(project_owner))) {
        return NULL;
    }
    return s_event_new(
        json_is_integer(id) ? (int64_t)json_integer_value(id) : 0, json_string_value(type),
        json_string_length(type), s_json_id(json_array_get(item, 2)),
        s_json_id(json_array_get(item, 3)), json_is_string(agent) ? json_string_value(agent) : NULL,
        json_is_string(agent) ? json_string_length(agent) : 0, json_string_value(json),
        json_string_length(json), s_json_id(task_owner), s_json_id(project_owner));
}

//  A live envelope's payload as a batch, or NULL if it is malformed.
static s_batch_t *
s_batch_from_json(const json_t *payload)
{
    const json_t *events = json_object_get(payload, "events");
    const json_t *prev = json_object_get(payload, "prev"), *last = json_object_get(payload, "last");
    if (!json_is_array(events) || (prev && !json_is_integer(prev)) ||
        (last && !json_is_integer(last)) || !prev != !last) {
        return NULL;
    }
    size_t n = json_array_size(events);
    s_batch_t *batch = (s_batch_t *)s_alloc(sizeof *batch + n * sizeof(s_event_t *));
    batch->refs = 1;
    batch->ephemeral = !prev;
    batch->prev = prev ? (int64_t)json_integer_value(prev) : 0;
    batch->last = last ? (int64_t)json_integer_value(last) : 0;
    for (size_t i = 0; i < n; i++) {
        s_event_t *ev = s_event_from_json(json_array_get(events, i));
        if (!ev || (batch->ephemeral != (ev->id == 0)) ||
            (!batch->ephemeral && (ev->id <= batch->prev || ev->id > batch->last))) {
            s_event_release(ev);
            s_batch_release(batch);
            return NULL;
        }
        batch->events[batch->n++] = ev;
        batch->bytes += ev->sse_len;
    }
    return batch;
}

//  --- filters --------------------------------------------------------------------------

typedef struct {
    int64_t project_id;          //  S_NONE: any
    int64_t task_id;             //  S_NONE: any
    char agent[S_AGENT_MAX + 1]; //  "": any
    uint32_t types;              //  bit i: s_types[i]; 0: any
} s_filter_t;

static void
s_filter_init(s_filter_t *f)
{
    *f = (s_filter_t){.project_id = S_NONE, .task_id = S_NONE};
}

//  True if viewer (a user id; S_NONE: an admin, or nobody checked) may
//  see ev: the rule of db/cd_q_events.h, which the bus's lists apply in
//  SQL, applied here to live events.
static bool
s_visible(int64_t viewer, const s_event_t *ev)
{
    if (viewer == S_NONE || ev->task_owner == viewer || ev->project_owner == viewer) {
        return true;
    }
    return ev->task_id == S_NONE && ev->project_id == S_NONE && ev->type >= 0 &&
           strcmp(s_types[ev->type], "agent.status") == 0;
}

static bool
s_match(const s_filter_t *f, const s_event_t *ev)
{
    if (f->project_id != S_NONE && ev->project_id != f->project_id) {
        return false;
    }
    if (f->task_id != S_NONE && ev->task_id != f->task_id) {
        return false;
    }
    if (f->agent[0] && (!ev->agent || strcmp(ev->agent, f->agent) != 0)) {
        return false;
    }
    return !f->types || (ev->type >= 0 && (f->types & (1u << ev->type)));
}

//  An id: 1..19 decimal digits, no sign, at least min. True if valid.
static bool
s_parse_id(const char *text, size_t len, int64_t min, int64_t *out)
{
    if (len == 0 || len > 19) {
        return false;
    }
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        int digit = text[i] - '0';
        if (v > (INT64_MAX - digit) / 10) {
            return false;
        }
        v = v * 10 + digit;
    }
    if (v < min) {
        return false;
    }
    *out = v;
    return true;
}

static bool
s_parse_agent(const char *text, size_t len, s_filter_t *f)
{
    if (len == 0 || len > S_AGENT_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    memcpy(f->agent, text, len);
    f->agent[len] = '\0';
    return true;
}

//  Adds one type name to the mask. False if it names no type.
static bool
s_add_type(const char *name, size_t len, uint32_t *mask)
{
    int i = s_type_index(name, len);
    if (i < 0) {
        return false;
    }
    *mask |= 1u << i;
    return true;
}

//  A comma-separated list of types. False on an empty item or unknown type.
static bool
s_parse_types(const char *text, size_t len, uint32_t *mask)
{
    *mask = 0;
    const char *at = text, *end = text + len;
    while (true) {
        const char *comma = memchr(at, ',', (size_t)(end - at));
        const char *stop = comma ? comma : end;
        if (!s_add_type(at, (size_t)(stop - at), mask)) {
            return false;
        }
        if (!comma) {
            return true;
        }
        at = comma + 1;
    }
}

//  The filter's types as a comma list into buf ("" for any).
static void
s_types_text(uint32_t mask, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < S_N_TYPES; i++) {
        if (mask & (1u << i)) {
            used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? "," : "", s_types[i]);
        }
    }
}

//  Packs the filter's keys (not the map header); returns how many.
static uint32_t
s_pack_filter(cd_pack_t *pack, const s_filter_t *f)
{
    uint32_t n = 0;
    if (f->project_id != S_NONE) {
        cd_pack_cstr(pack, "project_id");
        cd_pack_int(pack, f->project_id);
        n++;
    }
    if (f->task_id != S_NONE) {
        cd_pack_cstr(pack, "task_id");
        cd_pack_int(pack, f->task_id);
        n++;
    }
    if (f->agent[0]) {
        cd_pack_cstr(pack, "agent");
        cd_pack_cstr(pack, f->agent);
        n++;
    }
    if (f->types) {
        char types[512];
        s_types_text(f->types, types, sizeof types);
        cd_pack_cstr(pack, "types");
        cd_pack_cstr(pack, types);
        n++;
    }
    return n;
}

static uint32_t
s_filter_keys(const s_filter_t *f)
{
    return (f->project_id != S_NONE) + (f->task_id != S_NONE) + (f->agent[0] != '\0') +
           (f->types != 0);
}

//  --- subscribers ----------------------------------------------------------------------

typedef enum { S_SSE, S_WS } s_kind_t;

typedef struct s_sub s_sub_t;

struct cd__events {
    cd_http_t *http;                 //  the server
    h2o_linklist_t subs;             //  every subscriber (s_sub_t)
    size_t n_subs;                   //  entries in subs
    size_t n_watching;               //  registered subscribers
    h2o_timeout_t ping_timeout;      //  events_ping_ms
    h2o_timeout_entry_t ping_entry;  //  its entry
    h2o_timeout_t renew_timeout;     //  S_RENEW_MS
    h2o_timeout_entry_t renew_entry; //  linked while anyone watches
    h2o_timeout_t retry_timeout;     //  S_RETRY_MS, subscribers' retries
    h2o_timeout_t pump_timeout;      //  S_PUMP_MS
    h2o_timeout_entry_t pump_entry;  //  linked while a WebSocket replay waits to drain
    h2o_timeout_t check_timeout;     //  S_CHECK_MS
    h2o_timeout_entry_t check_entry; //  backlog checks
    s_event_t *ping;                 //  ": ping\n\n"
    s_event_t *hello;                //  ": ok\n\n"
    cd_pack_t *pack;                 //  request payloads
};

struct s_sub {
    cd__events_t *ev;                  //  the module
    h2o_linklist_t link;               //  in ev->subs
    s_kind_t kind;                     //  SSE or WebSocket
    s_filter_t filter;                 //  what it wants
    int64_t viewer;                    //  whom it serves: a user id, or S_NONE (sees everything)
    cd_auth_identity_t who;            //  the credentials it was opened with
    bool registered;                   //  offered live batches (counted in n_watching)
    bool replaying;                    //  paging from the bus; live batches are held
    bool started;                      //  SSE: response started; WebSocket: acknowledged
    bool head_only;                    //  the next page asks for the head only (live start)
    int64_t pos;                       //  every event with id <= pos has been considered
    int64_t dropped_last;              //  held batches were dropped up to this id
    bool calling;                      //  a page request is pending
    uint8_t call_id[CD_ENV_UUID_SIZE]; //  its id
    bool page_wanted;                  //  another page is due once the queue drains
    h2o_timeout_entry_t retry;         //  a failed page is asked again
    s_batch_t **held;                  //  live batches held while replaying
    size_t n_held;                     //  entries in held
    size_t cap_held;                   //  room in held
    size_t held_bytes;                 //  what they weigh
    cd_http_rctx_t *rctx;              //  SSE: the request's context, NULL once gone
    h2o_req_t *req;                    //  SSE: the request, NULL once gone
    h2o_generator_t gen;               //  SSE: the response's generator
    s_event_t **queue;                 //  SSE: events to send (ring)
    size_t q_head;                     //  ... its first
    size_t q_count;                    //  ... entries
    size_t q_cap;                      //  ... room
    size_t q_bytes;                    //  ... SSE bytes queued
    s_event_t *inflight[S_SEND_MAX];   //  SSE: events h2o is writing
    h2o_iovec_t iov[S_SEND_MAX];       //  SSE: their texts
    size_t n_inflight;                 //  entries in inflight
    bool sending;                      //  SSE: an h2o_send is in flight
    bool ending;                       //  SSE: end the stream after the send in flight
    h2o_websocket_conn_t *ws;          //  WebSocket: the connection
    int busy;                          //  calls in progress that may end it
    bool gone;                         //  its request or connection is gone: free when not busy
    bool dead;                         //  ended by us (stopping or too slow): receives nothing
    bool over;                         //  its backlog was over the limit at the last check
    size_t last_queued;                //  its backlog then
};

static void s_request_page(s_sub_t *sub);
static void s_flush(s_sub_t *sub);

static cd_http_t *
s_http(s_sub_t *sub)
{
    return sub->ev->http;
}

//  --- watching -------------------------------------------------------------------------

static void
s_watch_send(cd__events_t *ev, bool on)
{
    cd_http_t *http = ev->http;
    cd_pack_reset(ev->pack);
    cd_pack_map(ev->pack, 1);
    cd_pack_cstr(ev->pack, "on");
    cd_pack_bool(ev->pack, on);
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_CONTROL, CD_EVENTS_BUS);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("watch")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(ev->pack);
    //  Never waits; a watch that is lost is sent again by the renewal, a
    //  lost unwatch lapses at the bus.
    int rc = cd_port_send(http->port, &env);
    if (rc != 0 && rc != CD_EBUSY) {
        cd_log_debug("http", "event bus not watched", "{s:s}", "error", cd_errname(rc));
    }
}

static void
s_on_renew(h2o_timeout_entry_t *entry)
{
    cd__events_t *ev = H2O_STRUCT_FROM_MEMBER(cd__events_t, renew_entry, entry);
    if (ev->n_watching > 0) {
        s_watch_send(ev, true);
        h2o_timeout_link(ev->http->loop, &ev->renew_timeout, &ev->renew_entry);
    }
}

static void
s_register(s_sub_t *sub)
{
    if (sub->registered) {
        return;
    }
    cd__events_t *ev = sub->ev;
    sub->registered = true;
    if (ev->n_watching++ == 0) {
        s_watch_send(ev, true);
        h2o_timeout_link(ev->http->loop, &ev->renew_timeout, &ev->renew_entry);
    }
}

static void
s_unregister(s_sub_t *sub)
{
    if (!sub->registered) {
        return;
    }
    cd__events_t *ev = sub->ev;
    sub->registered = false;
    if (--ev->n_watching == 0) {
        h2o_timeout_unlink(&ev->renew_entry);
        if (!ev->http->stopping) {
            s_watch_send(ev, false);
        }
    }
}

//  --- subscriber life -------------------------------------------------------------------

//  Whom a caller's events are for: S_NONE (everything) for an admin, or
//  when nobody is checked (a server without keys); else its user id (0,
//  which owns nothing, if it has none).
static int64_t
s_viewer(const cd_http_rctx_t *rctx)
{
    const cd_auth_identity_t *who = &rctx->identity;
    if (!who->authenticated || who->admin) {
        return S_NONE;
    }
    return who->user_id > 0 ? who->user_id : 0;
}

//  Packs the viewer as the bus's list takes it: one key, none for
//  S_NONE.
static void
s_pack_viewer(cd_pack_t *pack, int64_t viewer)
{
    if (viewer != S_NONE) {
        cd_pack_cstr(pack, "viewer");
        cd_pack_int(pack, viewer);
    }
}

static s_sub_t *
s_sub_new(cd__events_t *ev, s_kind_t kind, const cd_http_rctx_t *rctx)
{
    s_sub_t *sub = (s_sub_t *)s_alloc(sizeof *sub);
    sub->ev = ev;
    sub->kind = kind;
    sub->viewer = s_viewer(rctx);
    sub->who = rctx->identity;
    s_filter_init(&sub->filter);
    h2o_linklist_insert(&ev->subs, &sub->link);
    ev->n_subs++;
    cd_metrics_event_subscribers(ev->http->metrics, +1);
    return sub;
}

static void
s_held_clear(s_sub_t *sub)
{
    for (size_t i = 0; i < sub->n_held; i++) {
        s_batch_release(sub->held[i]);
    }
    sub->n_held = 0;
    sub->held_bytes = 0;
}

static void
s_queue_clear(s_sub_t *sub)
{
    while (sub->q_count > 0) {
        s_event_release(sub->queue[sub->q_head]);
        sub->q_head = (sub->q_head + 1) % sub->q_cap;
        sub->q_count--;
    }
    sub->q_bytes = 0;
}

static void
s_cancel_call(s_sub_t *sub)
{
    if (sub->calling) {
        cd__http_call_cancel(s_http(sub), sub->call_id);
        sub->calling = false;
    }
    h2o_timeout_unlink(&sub->retry);
}

//  Stops everything it takes part in; what h2o may still be writing
//  (inflight) stays until the request is gone.
static void
s_quiesce(s_sub_t *sub)
{
    s_unregister(sub);
    s_cancel_call(sub);
    s_held_clear(sub);
    s_queue_clear(sub);
    sub->page_wanted = false;
}

static void
s_sub_free(s_sub_t *sub)
{
    s_quiesce(sub);
    for (size_t i = 0; i < sub->n_inflight; i++) {
        s_event_release(sub->inflight[i]);
    }
    h2o_linklist_unlink(&sub->link);
    sub->ev->n_subs--;
    cd_metrics_event_subscribers(sub->ev->http->metrics, -1);
    free(sub->held);
    free(sub->queue);
    free(sub);
}

//  Ends a call that may have ended the subscriber. Returns false when it
//  is gone (freed here).
static bool
s_release(s_sub_t *sub)
{
    if (--sub->busy == 0 && sub->gone) {
        s_sub_free(sub);
        return false;
    }
    return true;
}

//  The SSE request is gone (its pool is being cleared).
static void
s_on_request_gone(void *data)
{
    s_sub_t *sub = *(s_sub_t **)data;
    sub->req = NULL;
    sub->rctx = NULL;
    sub->gone = true;
    s_quiesce(sub);
    if (sub->busy == 0) {
        s_sub_free(sub);
    }
}

//  Runs the websocket helper (writes what is queued); it may close the
//  connection and so end the subscriber. Returns false if it did.
static bool
s_ws_kick(s_sub_t *sub)
{
    if (!sub->ws || !sub->ws->sock) {
        return true;
    }
    sub->busy++;
    h2o_websocket_proceed(sub->ws);
    return s_release(sub);
}

static void
s_ws_text(s_sub_t *sub, const char *text, size_t len)
{
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    //  Fails only once a close is under way: nothing to do then.
    (void)wslay_event_queue_msg(sub->ws->ws_ctx, &msg);
}

//  A WebSocket error message {"error": {...}}.
static void
s_ws_error(s_sub_t *sub, const char *code, const char *message, const char *field,
           const char *reason)
{
    json_t *details =
        field ? json_pack("{s:s, s:s}", "field", field, "reason", reason ? reason : message) : NULL;
    size_t len = 0;
    char *text = cd_json_error_body(code, message, details, &len);
    s_ws_text(sub, text, len);
    free(text);
}

//  Ends a subscriber from our side: dropped as too slow, or refused. The
//  caller must not touch sub afterwards.
static void
s_kill(s_sub_t *sub)
{
    if (sub->dead) {
        return;
    }
    sub->dead = true;
    s_quiesce(sub);
    if (sub->kind == S_WS) {
        if (sub->ws) {
            h2o_websocket_close(sub->ws);
            sub->ws = NULL;
        }
        sub->gone = true;
        if (sub->busy == 0) {
            s_sub_free(sub);
        }
        return;
    }
    if (!sub->req || !sub->started) {
        return;
    }
    sub->busy++;
    if (sub->sending) {
        //  Stuck in a write (the usual case): h2o takes no other send
        //  before that one completes, so the connection is shut down.
        cd__http_abort(s_http(sub), sub->req);
    } else {
        //  An error end: HTTP/2 resets just this stream (RST_STREAM),
        //  HTTP/1.1 closes the connection after it.
        h2o_send(sub->req, NULL, 0, H2O_SEND_STATE_ERROR);
    }
    s_release(sub);
}

static void
s_drop_slow(s_sub_t *sub, size_t queued)
{
    cd_http_t *http = s_http(sub);
    cd_metrics_slow_client(http->metrics);
    cd_log_info("http", "slow event subscriber dropped", "{s:s, s:I, s:I, s:I}", "kind",
                sub->kind == S_SSE ? "sse" : "websocket", "queued_bytes", (json_int_t)queued,
                "limit", (json_int_t)http->opts.events_max_buffer, "pos", (json_int_t)sub->pos);
    s_kill(sub);
}

//  True if a string of list (a JSON array) is text.
static bool
s_listed(const json_t *list, const char *text)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (json_is_string(item) && strcmp(json_string_value(item), text) == 0) {
            return true;
        }
    }
    return false;
}

void
cd__events_revoke(cd_http_t *http, const json_t *effects)
{
    cd__events_t *ev = http->events;
    if (!ev) {
        return;
    }
    const json_t *fams = json_object_get(effects, "fams");
    const json_t *keys = json_object_get(effects, "keys");
    const json_t *users = json_object_get(effects, "users");
    for (h2o_linklist_t *node = ev->subs.next; node != &ev->subs;) {
        s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, link, node);
        node = node->next;
        const cd_auth_identity_t *who = &sub->who;
        if (sub->dead || sub->gone || !who->authenticated) {
            continue;
        }
        bool revoked = who->fam[0] ? s_listed(fams, who->fam) : s_listed(keys, who->key);
        size_t i;
        json_t *item;
        json_array_foreach(users, i, item)
        {
            //  A user's keys all went (deleted, role changed); its logins
            //  come as fams.
            revoked = revoked || (!who->fam[0] && json_integer_value(item) == who->user_id);
        }
        if (revoked) {
            cd_log_info("http", "event stream ended: its credentials were revoked", "{s:s, s:I}",
                        "kind", sub->kind == S_SSE ? "sse" : "websocket", "user_id",
                        (json_int_t)who->user_id);
            s_kill(sub);
        }
    }
}

//  --- queues ---------------------------------------------------------------------------

static void
s_enqueue(s_sub_t *sub, s_event_t *ev)
{
    if (sub->kind == S_WS) {
        s_ws_text(sub, ev->json, ev->json_len);
        return;
    }
    if (sub->q_count == sub->q_cap) {
        size_t cap = sub->q_cap ? sub->q_cap * 2 : 64;
        s_event_t **queue = (s_event_t **)s_alloc(cap * sizeof *queue);
        for (size_t i = 0; i < sub->q_count; i++) {
            queue[i] = sub->queue[(sub->q_head + i) % sub->q_cap];
        }
        free(sub->queue);
        sub->queue = queue;
        sub->q_head = 0;
        sub->q_cap = cap;
    }
    sub->queue[(sub->q_head + sub->q_count++) % sub->q_cap] = s_event_ref(ev);
    sub->q_bytes += ev->sse_len;
}

//  Bytes waiting to be written to the client.
static size_t
s_queued(s_sub_t *sub)
{
    if (sub->kind == S_WS) {
        return sub->ws ? wslay_event_get_queued_msg_length(sub->ws->ws_ctx) : 0;
    }
    return sub->q_bytes;
}

static void
s_hold(s_sub_t *sub, s_batch_t *batch)
{
    if (sub->n_held == sub->cap_held) {
        sub->cap_held = sub->cap_held ? sub->cap_held * 2 : 8;
        sub->held = (s_batch_t **)realloc(sub->held, sub->cap_held * sizeof *sub->held);
        if (!sub->held) {
            fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
            abort();
        }
    }
    batch->refs++;
    sub->held[sub->n_held++] = batch;
    sub->held_bytes += batch->bytes;
    if (sub->held_bytes > s_http(sub)->opts.events_max_buffer) {
        //  Too much to hold: let it go and read it back from the table
        //  (ephemeral events are lost).
        for (size_t i = 0; i < sub->n_held; i++) {
            if (!sub->held[i]->ephemeral && sub->held[i]->last > sub->dropped_last) {
                sub->dropped_last = sub->held[i]->last;
            }
        }
        s_held_clear(sub);
    }
}

//  Applies a batch to a live subscriber: queues what it wants. False on a
//  gap (the batch starts after pos): nothing is applied then.
static bool
s_apply(s_sub_t *sub, const s_batch_t *batch)
{
    if (!batch->ephemeral && batch->prev > sub->pos) {
        return false;
    }
    for (size_t i = 0; i < batch->n; i++) {
        s_event_t *e = batch->events[i];
        if ((batch->ephemeral || e->id > sub->pos) && s_visible(sub->viewer, e) &&
            s_match(&sub->filter, e)) {
            s_enqueue(sub, e);
        }
    }
    if (!batch->ephemeral && batch->last > sub->pos) {
        sub->pos = batch->last;
    }
    return true;
}

//  The replay is done: applies the held batches in order, or starts
//  another replay at the first gap among them.
static void
s_finish_replay(s_sub_t *sub)
{
    sub->replaying = false;
    size_t i = 0;
    while (i < sub->n_held && s_apply(sub, sub->held[i])) {
        s_batch_release(sub->held[i]);
        i++;
    }
    if (i < sub->n_held) {
        sub->replaying = true;
        sub->page_wanted = true;
    }
    sub->held_bytes = 0;
    for (size_t j = i; j < sub->n_held; j++) {
        sub->held[j - i] = sub->held[j];
        sub->held_bytes += sub->held[j]->bytes;
    }
    sub->n_held -= i;
}

static bool
s_drained(s_sub_t *sub)
{
    if (sub->kind == S_SSE) {
        return sub->q_count == 0;
    }
    return s_queued(sub) < s_http(sub)->opts.events_max_buffer / 4;
}

//  Asks for the next replay page if one is due and the client has taken
//  the last one.
static void
s_maybe_page(s_sub_t *sub)
{
    if (!sub->replaying || !sub->page_wanted || sub->calling || sub->dead || sub->gone) {
        return;
    }
    if (!s_drained(sub)) {
        if (sub->kind == S_WS && !h2o_timeout_is_linked(&sub->ev->pump_entry)) {
            h2o_timeout_link(s_http(sub)->loop, &sub->ev->pump_timeout, &sub->ev->pump_entry);
        }
        return;
    }
    sub->page_wanted = false;
    s_request_page(sub);
}

//  SSE: hands queued events to h2o, one send at a time. WebSocket: lets
//  the helper write. May end a WebSocket subscriber (see s_ws_kick).
static void
s_flush(s_sub_t *sub)
{
    if (sub->kind == S_WS) {
        s_ws_kick(sub);
        return;
    }
    if (!sub->started || sub->sending || sub->dead || !sub->req) {
        return;
    }
    size_t n = 0;
    uint64_t events = 0;
    while (sub->q_count > 0 && n < S_SEND_MAX) {
        s_event_t *e = sub->queue[sub->q_head];
        sub->q_head = (sub->q_head + 1) % sub->q_cap;
        sub->q_count--;
        sub->q_bytes -= e->sse_len;
        sub->inflight[n] = e;
        sub->iov[n] = h2o_iovec_init(e->sse, e->sse_len);
        events += e->refs > 0;
        n++;
    }
    if (n == 0) {
        return;
    }
    sub->n_inflight = n;
    sub->sending = true;
    cd_metrics_events_sent(s_http(sub)->metrics, events);
    h2o_send(sub->req, sub->iov, n, H2O_SEND_STATE_IN_PROGRESS);
}

//  h2o wrote what was sent: release it and send more.
static void
s_on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, gen, gen);
    for (size_t i = 0; i < sub->n_inflight; i++) {
        s_event_release(sub->inflight[i]);
    }
    sub->n_inflight = 0;
    sub->sending = false;
    if (sub->ending) {
        sub->ending = false;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    s_flush(sub);
    s_maybe_page(sub);
}

//  --- replay pages -----------------------------------------------------------------------

static void s_on_page(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg);

//  The stream opens: SSE headers and ": ok"; a WebSocket acknowledgement.
static void
s_start(s_sub_t *sub)
{
    sub->started = true;
    if (sub->kind == S_WS) {
        static const char ack[] = "{\"subscribed\":true}";
        s_ws_text(sub, ack, sizeof ack - 1);
        return;
    }
    cd__http_add_header(sub->rctx, "cache-control", "no-cache");
    cd__http_add_header(sub->rctx, "x-accel-buffering", "no");
    sub->gen.proceed = s_on_proceed;
    sub->gen.stop = NULL;
    cd__http_start_stream(sub->rctx, 200, "text/event-stream", &sub->gen);
    s_enqueue(sub, sub->ev->hello);
}

//  A page could not be had. Before the stream opened: SSE answers 503 (the
//  request then ends), a WebSocket gets an error message and is no longer
//  subscribed. After: asked again shortly.
static void
s_page_failed(s_sub_t *sub, const char *message)
{
    cd_http_t *http = s_http(sub);
    if (sub->started) {
        if (!http->stopping) {
            h2o_timeout_link(http->loop, &sub->ev->retry_timeout, &sub->retry);
        }
        return;
    }
    s_quiesce(sub);
    if (sub->kind == S_WS) {
        s_ws_error(sub, "not_ready", message, NULL, NULL);
        s_flush(sub);
        return;
    }
    sub->dead = true;
    if (sub->rctx) {
        cd__http_add_header(sub->rctx, "retry-after", "1");
        cd__http_send_error(sub->rctx, 503, "not_ready", message,
                            json_pack("{s:s}", "actor", CD_EVENTS_BUS));
    }
}

static void
s_request_page(s_sub_t *sub)
{
    if (sub->calling || sub->dead || sub->gone) {
        return;
    }
    cd__events_t *ev = sub->ev;
    cd_http_t *http = ev->http;
    cd_pack_t *pack = ev->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, s_filter_keys(&sub->filter) + (sub->viewer != S_NONE) + 3);
    s_pack_filter(pack, &sub->filter);
    s_pack_viewer(pack, sub->viewer);
    cd_pack_cstr(pack, "after");
    cd_pack_int(pack, sub->pos);
    cd_pack_cstr(pack, "limit");
    cd_pack_int(pack, S_REPLAY_PAGE);
    cd_pack_cstr(pack, "head_only");
    cd_pack_bool(pack, sub->head_only);
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_CONTROL, CD_EVENTS_BUS);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("list")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd__http_call_detached(http, &env, S_CALL_TIMEOUT_MS, s_on_page, sub);
    if (rc == 0) {
        sub->calling = true;
        memcpy(sub->call_id, env.id, CD_ENV_UUID_SIZE);
        return;
    }
    s_page_failed(sub, rc == CD_EBUSY     ? "the event bus is busy; retry later"
                       : rc == CD_ECLOSED ? "the node is stopping"
                                          : "the event bus is not running");
}

static void
s_on_retry(h2o_timeout_entry_t *entry)
{
    s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, retry, entry);
    s_request_page(sub);
}

static void
s_on_page(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    s_sub_t *sub = (s_sub_t *)arg;
    sub->calling = false;
    json_t *payload = NULL;
    const char *why = NULL;
    if (rc != 0) {
        s_page_failed(sub, rc == CD_ETIMEDOUT ? "the event bus did not answer in time"
                                              : "the node is stopping");
        return;
    }
    if (reply->payload_type == CD_PAYLOAD_NONE ||
        cd_json_from_msgpack(reply->payload, &payload, &why) != 0 || !json_is_object(payload)) {
        json_decref(payload);
        s_page_failed(sub, "the event bus answered something unreadable");
        return;
    }
    if (reply->kind != CD_KIND_RESULT) {
        const char *message = json_string_value(json_object_get(payload, "message"));
        char text[320];
        snprintf(text, sizeof text, "the event bus cannot list events: %s",
                 message ? message : "error");
        json_decref(payload);
        s_page_failed(sub, text);
        return;
    }
    json_t *events = json_object_get(payload, "events");
    json_t *next = json_object_get(payload, "next_cursor");
    json_t *head = json_object_get(payload, "head");
    if (!json_is_array(events) || !json_is_integer(head)) {
        json_decref(payload);
        s_page_failed(sub, "the event bus answered something unreadable");
        return;
    }
    sub->busy++;
    if (!sub->started) {
        s_start(sub);
    }
    size_t i;
    json_t *item;
    json_array_foreach(events, i, item)
    {
        s_event_t *e = s_event_from_json(item);
        if (e && e->id > sub->pos) {
            if (s_visible(sub->viewer, e) && s_match(&sub->filter, e)) {
                s_enqueue(sub, e);
            }
            sub->pos = e->id;
        }
        s_event_release(e);
    }
    sub->head_only = false;
    if (json_is_string(next)) {
        sub->page_wanted = true;
    } else {
        //  Every match up to head has been seen.
        if (json_integer_value(head) > sub->pos) {
            sub->pos = json_integer_value(head);
        }
        if (sub->dropped_last > sub->pos) {
            sub->page_wanted = true;
        } else {
            s_finish_replay(sub);
        }
    }
    cd_log_debug("http", "event replay page", "{s:i, s:b, s:I, s:I, s:b}", "events",
                 (int)json_array_size(events), "more", json_is_string(next), "head",
                 (json_int_t)json_integer_value(head), "pos", (json_int_t)sub->pos, "replaying",
                 sub->replaying);
    json_decref(payload);
    s_flush(sub);
    if (s_release(sub)) {
        s_maybe_page(sub);
    }
}

static void
s_on_pump(h2o_timeout_entry_t *entry)
{
    cd__events_t *ev = H2O_STRUCT_FROM_MEMBER(cd__events_t, pump_entry, entry);
    for (h2o_linklist_t *node = ev->subs.next; node != &ev->subs;) {
        s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, link, node);
        node = node->next;
        if (sub->kind == S_WS) {
            s_maybe_page(sub);
        }
    }
}

//  Starts (or restarts) a subscription: registered for live events first,
//  then the first page (or the head) is asked for.
static void
s_subscribe(s_sub_t *sub, const s_filter_t *filter, bool replay, int64_t after)
{
    s_cancel_call(sub);
    s_held_clear(sub);
    sub->filter = *filter;
    sub->replaying = true;
    sub->started = false;
    sub->head_only = !replay;
    sub->pos = replay ? after : 0;
    sub->dropped_last = 0;
    sub->page_wanted = false;
    s_register(sub);
    s_request_page(sub);
}

//  --- live batches ---------------------------------------------------------------------

static void
s_offer(s_sub_t *sub, s_batch_t *batch)
{
    if (sub->dead || !sub->registered) {
        return;
    }
    if (sub->replaying) {
        s_hold(sub, batch);
        return;
    }
    if (!s_apply(sub, batch)) {
        //  A gap: read it back first.
        cd_log_debug("http", "event stream gap: replaying", "{s:I, s:I}", "pos",
                     (json_int_t)sub->pos, "prev", (json_int_t)batch->prev);
        sub->replaying = true;
        sub->page_wanted = true;
        s_hold(sub, batch);
        s_maybe_page(sub);
        return;
    }
    //  A burst of batches handled in one loop turn queues more than any
    //  client can take before its writes complete; the backlog checks judge
    //  slowness. This only bounds memory.
    size_t queued = s_queued(sub);
    if (queued > s_http(sub)->opts.events_max_buffer * S_HARD_FACTOR) {
        s_drop_slow(sub, queued);
        return;
    }
    s_flush(sub);
}

//  A subscriber whose backlog is over the limit at two checks in a row,
//  and did not shrink in between, had S_CHECK_MS to work it off and did
//  not: it is dropped. (One that is catching up is left alone.)
static void
s_on_check(h2o_timeout_entry_t *entry)
{
    cd__events_t *ev = H2O_STRUCT_FROM_MEMBER(cd__events_t, check_entry, entry);
    size_t limit = ev->http->opts.events_max_buffer;
    for (h2o_linklist_t *node = ev->subs.next; node != &ev->subs;) {
        s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, link, node);
        node = node->next;
        if (sub->dead || sub->gone) {
            continue;
        }
        size_t queued = s_queued(sub);
        if (queued > limit && sub->over && queued >= sub->last_queued) {
            s_drop_slow(sub, queued);
            continue;
        }
        sub->over = queued > limit;
        sub->last_queued = queued;
    }
    h2o_timeout_link(ev->http->loop, &ev->check_timeout, &ev->check_entry);
}

void
cd__events_live(cd_http_t *http, const cd_envelope_t *env)
{
    cd__events_t *ev = http->events;
    if (!ev || ev->n_watching == 0) {
        return;
    }
    json_t *payload = NULL;
    const char *why = NULL;
    s_batch_t *batch = NULL;
    if (env->payload_type == CD_PAYLOAD_MAP &&
        cd_json_from_msgpack(env->payload, &payload, &why) == 0) {
        batch = s_batch_from_json(payload);
    }
    json_decref(payload);
    if (!batch) {
        cd_log_warn("http", "malformed event envelope dropped", "{s:s}", "why",
                    why ? why : "not a batch of events");
        return;
    }
    for (h2o_linklist_t *node = ev->subs.next; node != &ev->subs;) {
        s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, link, node);
        node = node->next;
        s_offer(sub, batch);
    }
    s_batch_release(batch);
}

static void
s_on_ping(h2o_timeout_entry_t *entry)
{
    cd__events_t *ev = H2O_STRUCT_FROM_MEMBER(cd__events_t, ping_entry, entry);
    for (h2o_linklist_t *node = ev->subs.next; node != &ev->subs;) {
        s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, link, node);
        node = node->next;
        if (sub->dead || sub->gone) {
            continue;
        }
        if (sub->kind == S_SSE) {
            if (sub->started && sub->q_count == 0 && !sub->sending) {
                s_enqueue(sub, ev->ping);
                s_flush(sub);
            }
        } else if (sub->ws && sub->ws->sock) {
            struct wslay_event_msg msg = {WSLAY_PING, NULL, 0};
            (void)wslay_event_queue_msg(sub->ws->ws_ctx, &msg);
            s_flush(sub);
        }
    }
    h2o_timeout_link(ev->http->loop, &ev->ping_timeout, &ev->ping_entry);
}

//  --- query parameters -------------------------------------------------------------------

typedef struct {
    s_filter_t filter; //  filters
    bool has_after;    //  after (or cursor) given
    int64_t after;     //  its value
    int limit;         //  page size
} s_query_t;

static int
s_hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

//  Percent-decodes src[0..len) into out (NUL-terminated). False if a
//  escape is malformed, a NUL results, or it does not fit.
static bool
s_url_decode(const char *src, size_t len, char *out, size_t size, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= len) {
                return false;
            }
            int hi = s_hex(src[i + 1]), lo = s_hex(src[i + 2]);
            if (hi < 0 || lo < 0) {
                return false;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || n + 1 >= size) {
            return false;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    *out_len = n;
    return true;
}

static void
s_bad_param(cd_http_rctx_t *rctx, const char *field, const char *reason)
{
    char message[160];
    snprintf(message, sizeof message, "%s: %s", field, reason);
    cd__http_send_error(rctx, 400, "validation_failed", message,
                        json_pack("{s:s, s:s}", "field", field, "reason", reason));
}

//  Parses the query string. False if answered (400).
static bool
s_parse_query(cd_http_rctx_t *rctx, s_query_t *q)
{
    h2o_req_t *req = rctx->req;
    s_filter_init(&q->filter);
    q->has_after = false;
    q->after = 0;
    q->limit = S_LIST_DEFAULT;
    if (req->query_at == SIZE_MAX) {
        return true;
    }
    const char *at = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    unsigned seen = 0;
    while (at < end) {
        const char *amp = memchr(at, '&', (size_t)(end - at));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(at, '=', (size_t)(stop - at));
        char name[32], value[S_PARAM_MAX + 1];
        size_t name_len = 0, value_len = 0;
        if (stop == at) {
            at = stop + 1;
            continue;
        }
        bool name_ok =
            s_url_decode(at, (size_t)((eq ? eq : stop) - at), name, sizeof name, &name_len);
        for (size_t i = 0; name_ok && i < name_len; i++) {
            name_ok = (name[i] >= 'a' && name[i] <= 'z') || name[i] == '_';
        }
        if (!name_ok) {
            //  Not echoed: it may be anything, even invalid UTF-8.
            s_bad_param(rctx, "query",
                        "a parameter name is not one of project_id, task_id, "
                        "agent, types, after, cursor, limit");
            return false;
        }
        if (!eq ||
            !s_url_decode(eq + 1, (size_t)(stop - eq - 1), value, sizeof value, &value_len)) {
            s_bad_param(rctx, name,
                        eq ? "the value is malformed or too long" : "a value is required");
            return false;
        }
        static const char *const known[] = {"project_id", "task_id", "agent", "types",
                                            "after",      "cursor",  "limit"};
        int which = -1;
        for (int i = 0; i < (int)(sizeof known / sizeof known[0]); i++) {
            if (strcmp(name, known[i]) == 0) {
                which = i;
            }
        }
        if (which < 0) {
            s_bad_param(rctx, name,
                        "unknown parameter (known: project_id, task_id, agent, "
                        "types, after, cursor, limit)");
            return false;
        }
        if (seen & (1u << which) || ((which == 4 || which == 5) && q->has_after)) {
            s_bad_param(rctx, name,
                        which >= 4 && which <= 5 ? "give after or cursor, once" : "given twice");
            return false;
        }
        seen |= 1u << which;
        int64_t v = 0;
        bool ok = true;
        switch (which) {
        case 0:
            ok = s_parse_id(value, value_len, 1, &q->filter.project_id);
            break;
        case 1:
            ok = s_parse_id(value, value_len, 1, &q->filter.task_id);
            break;
        case 2:
            ok = s_parse_agent(value, value_len, &q->filter);
            break;
        case 3:
            ok = s_parse_types(value, value_len, &q->filter.types);
            break;
        case 4:
        case 5:
            ok = s_parse_id(value, value_len, 0, &q->after);
            q->has_after = ok;
            break;
        default:
            ok = s_parse_id(value, value_len, 1, &v) && v <= S_LIST_MAX;
            q->limit = (int)v;
            break;
        }
        if (!ok) {
            static const char *const reasons[] = {
                "must be an integer >= 1",
                "must be an integer >= 1",
                "must be 1-64 characters of [a-z0-9_-]",
                "must be a comma-separated list of event types",
                "must be an event id (an integer >= 0)",
                "must be an event id (an integer >= 0)",
                "must be an integer from 1 to 1000",
            };
            s_bad_param(rctx, name, reasons[which]);
            return false;
        }
        at = stop + 1;
    }
    return true;
}

//  --- GET /api/v1/events -------------------------------------------------------------------

static bool
s_wants_sse(cd_http_rctx_t *rctx)
{
    size_t len = 0;
    const char *accept = cd__http_header(rctx, "accept", &len);
    static const char want[] = "text/event-stream";
    for (size_t i = 0; accept && i + sizeof want - 1 <= len; i++) {
        if (strncasecmp(accept + i, want, sizeof want - 1) == 0) {
            return true;
        }
    }
    return false;
}

static void
s_on_list(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    if (rc == CD_ETIMEDOUT) {
        cd__http_send_error(rctx, 504, "timeout", "the event bus did not answer in time", NULL);
        return;
    }
    if (rc != 0) {
        cd__http_call_failed(rctx, rc, CD_EVENTS_BUS);
        return;
    }
    json_t *payload = NULL;
    const char *why = NULL;
    if (reply->payload_type == CD_PAYLOAD_NONE ||
        cd_json_from_msgpack(reply->payload, &payload, &why) != 0 || !json_is_object(payload)) {
        json_decref(payload);
        cd__http_send_error(rctx, 502, "bad_reply", "the event bus answered something unreadable",
                            NULL);
        return;
    }
    if (reply->kind != CD_KIND_RESULT) {
        const char *code = json_string_value(json_object_get(payload, "code"));
        const char *message = json_string_value(json_object_get(payload, "message"));
        bool bad = code && strcmp(code, "bad_request") == 0;
        cd__http_send_error(rctx, bad ? 400 : 503, bad ? "validation_failed" : "not_ready",
                            message ? message : "the event bus cannot list events",
                            json_pack("{s:s}", "actor", CD_EVENTS_BUS));
        json_decref(payload);
        return;
    }
    json_t *events = json_object_get(payload, "events");
    json_t *next = json_object_get(payload, "next_cursor");
    if (!json_is_array(events)) {
        json_decref(payload);
        cd__http_send_error(rctx, 502, "bad_reply", "the event bus answered something unreadable",
                            NULL);
        return;
    }
    //  The events' JSON goes out as the bus read it from the database:
    //  joined, not re-encoded.
    size_t size = 64 + (json_is_string(next) ? json_string_length(next) : 0);
    size_t i;
    json_t *item;
    json_array_foreach(events, i, item)
    {
        json_t *text = json_array_get(item, 5);
        size += (json_is_string(text) ? json_string_length(text) : 4) + 1;
    }
    char *body = (char *)h2o_mem_alloc_pool(&rctx->req->pool, size);
    size_t n = 0;
    memcpy(body, "{\"items\":[", 10);
    n = 10;
    json_array_foreach(events, i, item)
    {
        json_t *text = json_array_get(item, 5);
        if (i > 0) {
            body[n++] = ',';
        }
        if (json_is_string(text)) {
            memcpy(body + n, json_string_value(text), json_string_length(text));
            n += json_string_length(text);
        } else {
            memcpy(body + n, "null", 4);
            n += 4;
        }
    }
    n += (size_t)snprintf(
        body + n, size - n, "],\"next_cursor\":%s%s%s}", json_is_string(next) ? "\"" : "",
        json_is_string(next) ? json_string_value(next) : "null", json_is_string(next) ? "\"" : "");
    json_decref(payload);
    cd__http_send(rctx, 200, "application/json; charset=utf-8", body, n, true);
}

static int
s_list(cd_http_rctx_t *rctx, const s_query_t *q)
{
    cd_http_t *http = rctx->http;
    if (!cd_registry_status_deliverable(cd_registry_status(http->rt.registry, CD_EVENTS_BUS))) {
        //  Asked anyway, it would only make a dead letter.
        s_on_list(rctx, NULL, CD_EDEAD, NULL);
        return 0;
    }
    cd_pack_t *pack = http->events->pack;
    cd_pack_reset(pack);
    int64_t viewer = s_viewer(rctx);
    cd_pack_map(pack, s_filter_keys(&q->filter) + (viewer != S_NONE) + 2);
    s_pack_filter(pack, &q->filter);
    s_pack_viewer(pack, viewer);
    cd_pack_cstr(pack, "after");
    cd_pack_int(pack, q->after);
    cd_pack_cstr(pack, "limit");
    cd_pack_int(pack, q->limit);
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_CONTROL, CD_EVENTS_BUS);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("list")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd__http_call(rctx, &env, http->opts.request_timeout_ms, s_on_list, NULL);
    if (rc != 0) {
        s_on_list(rctx, NULL, rc == CD_ENOTFOUND ? CD_EDEAD : rc, NULL);
    }
    return 0;
}

//  503 unless the bus can be asked and there is room for one more
//  subscriber. True if answered.
static bool
s_refuse(cd_http_rctx_t *rctx)
{
    cd_http_t *http = rctx->http;
    if (!cd_registry_status_deliverable(cd_registry_status(http->rt.registry, CD_EVENTS_BUS))) {
        cd__http_add_header(rctx, "retry-after", "1");
        cd__http_send_error(rctx, 503, "not_ready", "the event bus is not running",
                            json_pack("{s:s}", "actor", CD_EVENTS_BUS));
        return true;
    }
    if (http->events->n_subs >= (size_t)http->opts.events_max_subscribers || http->stopping) {
        cd__http_add_header(rctx, "retry-after", "1");
        cd__http_send_error(rctx, 503, "not_ready",
                            http->stopping ? "the node is stopping"
                                           : "too many event subscribers; retry later",
                            json_pack("{s:i}", "limit", http->opts.events_max_subscribers));
        return true;
    }
    return false;
}

int
cd_events_get(cd_http_rctx_t *rctx)
{
    s_query_t q;
    if (!s_parse_query(rctx, &q)) {
        return 0;
    }
    if (!s_wants_sse(rctx) || rctx->req->method.len == 4) {
        //  HEAD is answered as the list would be (no stream without a body).
        return s_list(rctx, &q);
    }
    size_t len = 0;
    const char *last = cd__http_header(rctx, "last-event-id", &len);
    if (last) {
        if (!s_parse_id(last, len, 0, &q.after)) {
            s_bad_param(rctx, "Last-Event-ID", "must be an event id (an integer >= 0)");
            return 0;
        }
        q.has_after = true;
    }
    if (s_refuse(rctx)) {
        return 0;
    }
    s_sub_t *sub = s_sub_new(rctx->http->events, S_SSE, rctx);
    sub->rctx = rctx;
    sub->req = rctx->req;
    sub->retry.cb = s_on_retry;
    s_sub_t **slot =
        (s_sub_t **)h2o_mem_alloc_shared(&rctx->req->pool, sizeof(s_sub_t *), s_on_request_gone);
    *slot = sub;
    s_subscribe(sub, &q.filter, q.has_after, q.after);
    return 0;
}

//  --- GET /ws ------------------------------------------------------------------------------

//  A client's key as it may be echoed in an error: short printable ASCII,
//  else a placeholder (messages must stay valid UTF-8, whole).
static const char *
s_safe_key(const char *key)
{
    size_t len = strlen(key);
    for (size_t i = 0; i < len; i++) {
        if (key[i] < 0x20 || key[i] > 0x7e) {
            return "(a key)";
        }
    }
    return len <= 40 ? key : "(a long key)";
}

//  Reads {"subscribe": {...}, "after": id?}. Returns NULL or what is wrong
//  (and writes the field's path into field).
static const char *
s_read_subscribe(const json_t *doc, s_filter_t *f, bool *replay, int64_t *after, char *field,
                 size_t size)
{
    s_filter_init(f);
    *replay = false;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)doc, key, value)
    {
        if (strcmp(key, "subscribe") != 0 && strcmp(key, "after") != 0) {
            snprintf(field, size, "%s", s_safe_key(key));
            return "unknown field (known: subscribe, after)";
        }
    }
    json_t *sub = json_object_get(doc, "subscribe");
    snprintf(field, size, "subscribe");
    if (!json_is_object(sub)) {
        return "required, an object of filters";
    }
    json_t *a = json_object_get(doc, "after");
    if (a && !json_is_null(a)) {
        snprintf(field, size, "after");
        if (!json_is_integer(a) || json_integer_value(a) < 0) {
            return "must be an event id (an integer >= 0)";
        }
        *replay = true;
        *after = json_integer_value(a);
    }
    json_object_foreach(sub, key, value)
    {
        snprintf(field, size, "subscribe.%s", s_safe_key(key));
        if (strcmp(key, "project_id") == 0 || strcmp(key, "task_id") == 0) {
            if (!json_is_integer(value) || json_integer_value(value) < 1) {
                return "must be an integer >= 1";
            }
            int64_t *slot = key[0] == 'p' ? &f->project_id : &f->task_id;
            *slot = json_integer_value(value);
        } else if (strcmp(key, "agent") == 0) {
            if (!json_is_string(value) ||
                !s_parse_agent(json_string_value(value), json_string_length(value), f)) {
                return "must be 1-64 characters of [a-z0-9_-]";
            }
        } else if (strcmp(key, "types") == 0) {
            bool ok = true;
            if (json_is_string(value)) {
                ok = s_parse_types(json_string_value(value), json_string_length(value), &f->types);
            } else if (json_is_array(value) && json_array_size(value) > 0) {
                size_t i;
                json_t *t;
                json_array_foreach(value, i, t)
                {
                    ok = ok && json_is_string(t) &&
                         s_add_type(json_string_value(t), json_string_length(t), &f->types);
                }
            } else {
                ok = false;
            }
            if (!ok) {
                return "must be event types: an array of names or a comma-separated list";
            }
        } else {
            return "unknown filter (known: project_id, task_id, agent, types)";
        }
    }
    return NULL;
}

static void
s_ws_message(s_sub_t *sub, const struct wslay_event_on_msg_recv_arg *arg)
{
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        s_ws_error(sub, "validation_failed", "send text frames with JSON", "message",
                   "binary frames are not accepted");
        return;
    }
    json_t *doc = NULL;
    cd_json_problem_t problem;
    if (cd_json_parse_body((const char *)arg->msg, arg->msg_length, &doc, &problem) != 0) {
        s_ws_error(sub, problem.code, problem.reason, problem.field ? problem.field : "message",
                   problem.text[0] ? problem.text : problem.reason);
        return;
    }
    s_filter_t filter;
    bool replay = false;
    int64_t after = 0;
    char field[64];
    const char *bad = s_read_subscribe(doc, &filter, &replay, &after, field, sizeof field);
    if (bad) {
        char message[256];
        snprintf(message, sizeof message, "%s: %s", field, bad);
        s_ws_error(sub, "validation_failed", message, field, bad);
        json_decref(doc);
        return;
    }
    json_decref(doc);
    if (s_http(sub)->stopping) {
        s_ws_error(sub, "not_ready", "the node is stopping", NULL, NULL);
        return;
    }
    s_subscribe(sub, &filter, replay, after);
}

//  The websocket helper's callback: a message, or arg NULL when the
//  connection closed (then the helper does nothing more with it).
static void
s_on_ws(h2o_websocket_conn_t *conn, const struct wslay_event_on_msg_recv_arg *arg)
{
    s_sub_t *sub = (s_sub_t *)conn->data;
    if (!arg) {
        sub->gone = true;
        s_quiesce(sub);
        h2o_websocket_close(conn);
        sub->ws = NULL;
        if (sub->busy == 0) {
            s_sub_free(sub);
        }
        return;
    }
    if (wslay_is_ctrl_frame(arg->opcode) || sub->dead) {
        return; //  wslay answers pings and closes itself
    }
    //  Inside the helper's loop: what is queued here is written by it.
    s_ws_message(sub, arg);
}

int
cd_events_ws(cd_http_rctx_t *rctx)
{
    h2o_req_t *req = rctx->req;
    const char *key = NULL;
    if (req->version >= 0x200 || h2o_is_websocket_handshake(req, &key) != 0 || !key) {
        if (req->version < 0x200) {
            //  (A connection-specific header, which HTTP/2 forbids.)
            cd__http_add_header(rctx, "upgrade", "websocket");
        }
        cd__http_send_error(rctx, 426, "upgrade_required",
                            "a WebSocket handshake over HTTP/1.1 is required here "
                            "(Upgrade: websocket, Sec-WebSocket-Key)",
                            NULL);
        return 0;
    }
    if (s_refuse(rctx)) {
        return 0;
    }
    if (rctx->ws_protocol) {
        //  The credentials came as a subprotocol: it is the one chosen
        //  (a browser fails a handshake that chooses none of its offer).
        cd__http_add_header(rctx, "sec-websocket-protocol", rctx->ws_protocol);
    }
    s_sub_t *sub = s_sub_new(rctx->http->events, S_WS, rctx);
    sub->retry.cb = s_on_retry;
    sub->ws = h2o_upgrade_to_websocket(req, key, sub, s_on_ws);
    wslay_event_config_set_max_recv_msg_length(sub->ws->ws_ctx, S_WS_MAX_MESSAGE);
    cd__http_upgraded(rctx, 101);
    return 0;
}

//  --- module -----------------------------------------------------------------------------

int
cd__events_start(cd_http_t *http)
{
    cd__events_t *ev = (cd__events_t *)s_alloc(sizeof *ev);
    ev->http = http;
    h2o_linklist_init_anchor(&ev->subs);
    h2o_timeout_init(http->loop, &ev->ping_timeout, (uint64_t)http->opts.events_ping_ms);
    h2o_timeout_init(http->loop, &ev->renew_timeout, S_RENEW_MS);
    h2o_timeout_init(http->loop, &ev->retry_timeout, S_RETRY_MS);
    h2o_timeout_init(http->loop, &ev->pump_timeout, S_PUMP_MS);
    h2o_timeout_init(http->loop, &ev->check_timeout, S_CHECK_MS);
    ev->check_entry.cb = s_on_check;
    h2o_timeout_link(http->loop, &ev->check_timeout, &ev->check_entry);
    ev->ping_entry.cb = s_on_ping;
    ev->renew_entry.cb = s_on_renew;
    ev->pump_entry.cb = s_on_pump;
    h2o_timeout_link(http->loop, &ev->ping_timeout, &ev->ping_entry);
    ev->ping = s_comment_new(": ping\n\n");
    ev->hello = s_comment_new(": ok\n\n");
    ev->pack = cd_pack_new();
    http->events = ev;
    return 0;
}

void
cd__events_shutdown(cd_http_t *http)
{
    cd__events_t *ev = http->events;
    if (!ev) {
        return;
    }
    for (h2o_linklist_t *node = ev->subs.next; node != &ev->subs;) {
        s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, link, node);
        node = node->next;
        if (sub->dead || sub->gone) {
            continue;
        }
        if (sub->kind == S_WS) {
            s_quiesce(sub);
            if (sub->ws && sub->ws->sock) {
                static const char reason[] = "the node is stopping";
                wslay_event_queue_close(sub->ws->ws_ctx, 1001, (const uint8_t *)reason,
                                        sizeof reason - 1);
                s_flush(sub);
            }
            continue;
        }
        if (!sub->started) {
            //  Still waiting for its first page: answered now, not later.
            s_page_failed(sub, "the node is stopping");
            continue;
        }
        s_quiesce(sub);
        sub->dead = true;
        if (sub->sending) {
            sub->ending = true;
        } else if (sub->req) {
            h2o_send(sub->req, NULL, 0, H2O_SEND_STATE_FINAL);
        }
    }
}

void
cd__events_stop(cd_http_t *http)
{
    cd__events_t *ev = http->events;
    if (!ev) {
        return;
    }
    while (ev->subs.next != &ev->subs) {
        //  Nothing should be left once every connection has closed.
        s_sub_t *sub = H2O_STRUCT_FROM_MEMBER(s_sub_t, link, ev->subs.next);
        s_sub_free(sub);
    }
    h2o_timeout_unlink(&ev->ping_entry);
    h2o_timeout_unlink(&ev->renew_entry);
    h2o_timeout_unlink(&ev->pump_entry);
    h2o_timeout_unlink(&ev->check_entry);
    h2o_timeout_dispose(http->loop, &ev->ping_timeout);
    h2o_timeout_dispose(http->loop, &ev->renew_timeout);
    h2o_timeout_dispose(http->loop, &ev->retry_timeout);
    h2o_timeout_dispose(http->loop, &ev->pump_timeout);
    h2o_timeout_dispose(http->loop, &ev->check_timeout);
    free(ev->ping);
    free(ev->hello);
    cd_pack_destroy(&ev->pack);
    free(ev);
    http->events = NULL;
}
