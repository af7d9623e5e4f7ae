/*  cd_bus: the event bus (registry name `bus`): every actor emits events
    through it, it tails the events table, and it fans new events out live
    to one watcher (the HTTP frontend's port, `http`), which serves them to
    SSE and WebSocket clients. It also answers event lists, from which those
    clients replay.

    The events table is written only by the persist actor, so that event
    ids increase in commit order (the table's trigger, cd_q_events.h): a
    reader that has seen every event up to id N finds every later one with
    "id > N", whenever it looks. The bus keeps such a position (last_seen),
    and reads "id > last_seen" when persist says a batch committed (its
    commit notices, cd_persist.h) and every poll_ms while watched, so that
    events committed by other nodes sharing the database are seen too.
    Nothing is read while nobody watches.

    Wire format
    -----------
    Requests carry header `op`; any kind but `result` and `error`.

    op=emit, payload map
        {"type": str, "project_id": int|nil, "task_id": int|nil,
         "agent": str|nil, "data": str|nil, "persist": bool}
      type is one of API.md's event types; data is the event's data as
      JSON text of an object (absent or nil: {}); agent is 1-64 bytes;
      persist defaults to true. Header `ack` = "none" asks for no answer.
      persist true: the bus forwards the event to persist as a write into
      its COPY table `events` (columns type, project_id, task_id, agent,
      data), with the emit's own envelope id as the request id (so an emit
      retried with the same id is written at most once), its task_id,
      trace_id and deadline, and reply_to = the emitter (its `reply_to`
      header, else `from`): persist answers the emitter directly, after
      COMMIT, as it answers any write (result {"value": nil, "rows": 1,
      "replayed": bool}, or error {"code", "message", "sqlstate",
      "in_doubt"}). With ack=none the write asks persist for errors only
      (its header ack=errors), which go to the bus, which counts and logs
      them. The event then reaches watchers from the
      table, with its id.
      persist false: an ephemeral event (task.token): no row and no id; it
      goes to the watcher at once (if one watches), and the emitter gets
      result {"value": nil, "rows": 0, "replayed": false}.
      A malformed emit is answered error {"code": "bad_request",
      "message"}; persist not running: {"code": "db_unavailable"}; its
      queue full: {"code": "busy"} (unless ack=none).

    op=committed (persist's commit notice): no payload, no answer.

    op=watch, payload {"on": bool}: from the watcher, whether anyone
      subscribes. While on, new events are sent to it. A watch lapses
      after watch_lease_ms without a renewal (an `on` again), so a watcher
      that went away costs nothing for long; watchers renew at least every
      watch_lease_ms / 2. When a watch starts, reading starts at the newest
      event then (the watcher replays what came before with op=list), and
      the first live envelope says so (below). No answer.

    op=list, payload map (every key optional)
        {"project_id": int, "task_id": int, "agent": str, "types": str,
         "viewer": int, "after": int, "limit": int, "head_only": bool}
      types: comma-separated; after: default 0; limit 1..1000, default 50;
      viewer: a user id: only the events that user may see
      (cd_q_events.h), absent or nil: every event (an admin).
      Answered result
        {"events": [EVENT...], "next_cursor": str|nil, "head": int}
      events: matching events with id > after, ascending, at most limit
      (and about 4 MiB); next_cursor: the last id given when more may
      follow, nil when nothing matched after them at the time of the read;
      head: the newest id, read just before the page, so every event with
      id <= head was visible to it: a reader that got next_cursor nil has
      seen every matching event up to head. head_only: no page, just head.
      Errors: error {"code": "bad_request" | "db_unavailable" | "db_error",
      "message"}.

    op=stats: answered result {"db_ok": bool, "watched": bool,
      "last_seen": int, "emitted": int, "ephemeral": int, "failed": int,
      "read": int, "envelopes": int, "delayed": int, "lists": int,
      "reconnects": int, "last_error": str}.

    Live events, to the watcher: kind `event`, header `op` = "events",
    payload map, one of
        {"prev": int, "last": int, "events": [EVENT...]}
      persisted events: exactly every event with prev < id <= last (all
      of them: filtering is the watcher's job), ascending. Envelopes chain:
      the next one's prev is this one's last. A prev above the last `last`
      a watcher saw means it missed events (the bus restarted, or a watch
      lapsed and started again): it reads them back itself (op=list). The
      first envelope after a watch starts is the position alone, prev =
      last = the newest id, events empty, so that a watcher that is behind
      learns it at once rather than at the next commit.
        {"events": [EVENT...]}
      ephemeral events (id nil), without prev and last.
    EVENT = [id: int|nil, type: str, project_id: int|nil,
             task_id: int|nil, agent: str|nil, json: str,
             task_owner: int|nil, project_owner: int|nil]
      json is the event as API.md gives it: {"id", "ts", "type",
      "project_id", "task_id", "agent", "data"}; the other fields repeat
      what a subscription filters on, so that the receiver need not parse
      the JSON, and name the event's owners, the users who created its
      task and its project (nil: none), by which the receiver decides who
      may see it (cd_q_events.h). A persisted event's owners are read
      with it; an ephemeral event's are looked up when it is emitted
      (once per task and project, then remembered), and are nil when the
      database is away, which leaves it to admins. Several events travel per envelope (up to
   batch_events, and about batch_bytes).

    Delivery never waits: live envelopes go out on a mailer with no send
    timeout. When the watcher's queue is full, the bus keeps its position
    and tries again after retry_ms (the rows stay in the table), so no
    persisted event is skipped; ephemeral events are dropped then.

    Database: one connection of its own (cd_db), used from the actor's
    thread: reads are short indexed queries, bounded by
    statement_timeout_ms. A lost connection (CD_ECONN) is reopened from a
    timer with exponential backoff (reconnect_min_ms doubling to
    reconnect_max_ms), never by sleeping; meanwhile lists are answered
    db_unavailable and live reading resumes from last_seen afterwards. A
    connect blocks the actor for as long as libpq takes to fail: give the
    conninfo a connect_timeout when the server may be unreachable rather
    than refusing. */
#ifndef CD_ACTORS_BUS_H
#define CD_ACTORS_BUS_H

#include "cd_actor.h"

#define CD_BUS_POLL_MS 250
#define CD_BUS_PAGE 500
#define CD_BUS_BATCH_EVENTS 500
#define CD_BUS_BATCH_BYTES (256u << 10)
#define CD_BUS_WATCH_LEASE_MS 5000
#define CD_BUS_RETRY_MS 20
#define CD_BUS_RECONNECT_MIN_MS 100
#define CD_BUS_RECONNECT_MAX_MS 5000
#define CD_BUS_STATEMENT_TIMEOUT_MS 5000

//  The actor's arguments; borrowed (with the strings) for the actor's life.
//  Zero fields take the defaults.
typedef struct {
    const char *conninfo;     //  the database (required)
    const char *watcher;      //  who live events go to (default "http")
    const char *persist;      //  the persist actor (default "persist")
    const char *table;        //  persist's COPY table name for events (default "events")
    int poll_ms;              //  read this often while watched
    int page;                 //  rows per read of the table
    int batch_events;         //  events per live envelope at most
    size_t batch_bytes;       //  about this many bytes of event JSON per live envelope
    int watch_lease_ms;       //  a watch lapses this long after its last renewal
    int retry_ms;             //  after the watcher's queue was full
    int reconnect_min_ms;     //  first reconnect delay ...
    int reconnect_max_ms;     //  ... doubling up to this
    int statement_timeout_ms; //  bound on one read
} cd_bus_args_t;

extern const cd_actor_ops_t cd_bus_ops;

#endif
