/*  cd_persist: the persist actor (registry name `persist`), through which
    every other actor writes to PostgreSQL.

    It receives write requests, batches them (up to batch_max requests, or
    until its inbox goes quiet, or batch_wait_ms after the oldest arrived),
    writes each batch in one transaction through cd_batch (pipeline mode for
    statements, COPY for append-only tables), and only after COMMIT answers
    each requester. Acknowledged means committed.

    Wire format
    -----------
    Request: kind `task`, header `op` = "write" (or no `op`), payload map

        {"stmt":  "<statement name>", "params": [v1, v2, ...]}   or
        {"table": "<table name>",     "params": [c1, c2, ...]}

    Names are those registered in cd_persist_args_t (a request never brings
    SQL). A parameter is a string (UTF-8 text), nil (SQL NULL), an integer,
    a float, a boolean ("true"/"false") or bin (bytes taken as text; still
    UTF-8-checked). The envelope's `id` is the request id: send a retry
    with the same id and it is applied at most once. The answer goes to the
    `reply_to` header if present, else to `from`; header `ack` = "errors"
    asks for errors only (no result when it succeeds: for writers that
    fire and forget, such as the event bus's unacknowledged emits);
    `deadline` (if set) bounds how long the request may wait.

    Answer, with parent_id = the request id and task_id/trace_id copied:
      kind `result`, payload {"value": str|nil, "rows": int, "replayed": bool}
        value: first column of the first row the statement returned (e.g.
        RETURNING id); rows: rows affected (1 per table row); replayed: the
        request had been committed before and was answered from its record.
      kind `error`, payload {"code": str, "message": str, "sqlstate": str,
                             "in_doubt": bool}
        code: "bad_request" (malformed payload, unknown name, wrong number of
        params), "invalid_value" (invalid UTF-8 or NUL byte: SQLSTATE
        22021), "too_big" (a value over max_value_bytes: 54000),
        "db_error" (PostgreSQL rejected this request: its SQLSTATE and
        message), "db_unavailable" (the database stayed unreachable beyond
        wait_timeout_ms or the deadline, or the queue was full while it was
        away), "busy" (the queue was full, or the request waited beyond
        wait_timeout_ms or its deadline while the database was up but too
        slow), "stopped" (the actor stopped first). in_doubt: the
        request's COMMIT was sent but its answer was lost and the database
        has not come back to say: it may be committed; retry with the same
        id to learn which.

    Stats: kind `control`, header `op` = "stats": answered with a `result`
    whose payload is {"db_ok": bool, "pending": int, "batches": int,
    "rows": int, "failed": int, "replayed": int, "expired": int,
    "in_doubt": int, "reconnects": int, "last_batch_ms": float,
    "batch_ms_total": float, "last_batch_size": int, "oldest_wait_ms": int,
    "slow_batches": int, "notices": int, "notices_dropped": int,
    "last_error": str, "batch_max": int, "batch_wait_ms": int,
    "queue_limit": int, "wait_timeout_ms": int}
    (for /health/ready: ready while db_ok). The last four are the settings
    in force, defaults applied; the actor also logs them at info when it
    starts.

    Batching: a batch goes to the database when batch_max requests wait,
    when the inbox has gone quiet (a loop turn brought no new request:
    nobody else is about to send, so waiting only adds latency), or when the
    oldest request has waited batch_wait_ms. Under load the inbox is never
    quiet and batches grow while the previous commit runs (group commit); a
    lone writer is answered after one commit.

    Threads: the database work runs on a writer thread the actor owns (a
    zactor holding the cd_batch connection); batches go to it and come back
    by pointer over its pipe, which the actor watches like any socket, so
    exactly one thread owns a batch at any time. The actor's loop never
    waits on the database: it answers heartbeats and `stats` and keeps
    queueing requests during a commit, and a full batch that was waiting
    goes to the writer the moment the previous one comes back, before that
    one's requesters are answered, so answering overlaps the next commit.
    (The alternative, a non-blocking libpq state machine driven from the
    actor loop through an fd watch, would need a runtime addition and would
    still serialise building a batch with committing it.) Each job is
    bounded: a batch by io_timeout_ms (default 3 s, each statement by half
    of it), a connect by connect_timeout_ms (1 s). Reconnects are attempts
    from a timer with exponential backoff, never a sleep.

    Waiting is bounded: requests wait in a queue of at most queue_limit
    (beyond it they fail at once), and each fails after wait_timeout_ms (or
    its deadline) with db_unavailable while the database is unreachable, or
    busy while it is up but too slow for the load. Requests of a batch that
    lost its connection go back to the head of the queue and are replayed
    after the reconnect; if their COMMIT was in flight, the outcome is
    looked up first (cd_batch.h), so none is applied twice. A request that
    is acknowledged is committed; one that failed with in_doubt=false was
    not applied; in_doubt=true means either, and a retry with the same id
    settles it. If the actor itself crashes, the requests it had taken from
    its inbox are lost unanswered (those still in the inbox survive the
    restart); their requesters retry with the same ids after their own
    timeout, and the records make that safe.

    Records of committed request ids older than prune_age_s are pruned every
    prune_interval_s; a replay older than that would be applied again.
    The same pass applies the retention of the event log and the stats
    history (events_retention_s, stats_retention_s; 0, the actor's default,
    keeps everything): up to 10,000 rows of each per statement, oldest
    first, and the next chunk a second later while there is more, so a
    large backlog never holds the writer for long.

    Commit notices: when `notify` names an actor (the event bus, `bus`),
    then after every batch that committed at least one request persist
    sends it one `control` envelope with header `op` = "committed" and no
    payload, before answering the batch's requesters. At most one per
    batch, whatever the batch held: the receiver reads what changed itself
    (the bus reads the events table from the last id it saw), so a notice
    only says "look now". It is never waited for: it is sent without
    blocking and dropped when the receiver's queue is full (or the
    receiver is not running); the receiver catches up on the next notice
    or its own poll, since nothing is lost but the wake-up. Dropped notices
    are counted (`notices_dropped` in stats). */
#ifndef CD_ACTORS_PERSIST_H
#define CD_ACTORS_PERSIST_H

#include "cd_actor.h"

#include <stddef.h>

//  Defaults, chosen with bench/bench_persist (2-core VM, fsync on); the
//  node's --persist-* options (engine/cd_config.c) default to the same:
//  - batch_max 500: throughput is flat from 250 to 1,000 rows per
//    transaction (PostgreSQL's per-row work is the limit there); 500 costs
//    half the commits (fsyncs) of 250 under saturation and keeps a full
//    batch's transaction near 10 ms, so queued requests do not wait long.
//  - batch_wait_ms 5: a cap only. The quiet-inbox rule sends a batch as
//    soon as no more requests are coming, so 1, 5 and 20 ms measured the
//    same with writers that wait for their acks; under a continuous trickle
//    it bounds what batching adds to a request's latency.
#define CD_PERSIST_BATCH_MAX 500
#define CD_PERSIST_BATCH_WAIT_MS 5
#define CD_PERSIST_QUEUE_LIMIT 20000
#define CD_PERSIST_WAIT_TIMEOUT_MS 10000
#define CD_PERSIST_RECONNECT_MIN_MS 50
#define CD_PERSIST_RECONNECT_MAX_MS 2000
#define CD_PERSIST_PRUNE_INTERVAL_S 600
#define CD_PERSIST_PRUNE_AGE_S 86400

//  A statement requests may name.
typedef struct {
    const char *name; //  what requests give as "stmt"
    const char *sql;  //  parameterised SQL ($1 ...)
    int nparams;      //  parameters it takes
} cd_persist_stmt_t;

//  An append-only table requests may name (one row per request, by COPY).
typedef struct {
    const char *name;           //  what requests give as "table"
    const char *table;          //  table (or schema.table)
    const char *const *columns; //  columns, in the order of "params"
    int ncolumns;               //  entries in columns
} cd_persist_table_t;

//  The actor's arguments; borrowed (with everything they point to) for the
//  actor's life. Zero fields take the defaults.
typedef struct {
    const char *conninfo;             //  the database (required)
    const cd_persist_stmt_t *stmts;   //  statements requests may name
    size_t n_stmts;                   //  entries in stmts
    const cd_persist_table_t *tables; //  tables requests may name
    size_t n_tables;                  //  entries in tables
    int batch_max;                    //  N: requests per transaction
    int batch_wait_ms;                //  T: longest a request waits for its batch to fill
    int queue_limit;                  //  requests waiting at most (database away or slow)
    int wait_timeout_ms;              //  how long a request may wait for the database
    int reconnect_min_ms;             //  first reconnect delay ...
    int reconnect_max_ms;             //  ... doubling up to this
    int connect_timeout_ms;           //  bound on one connection attempt (cd_batch)
    int io_timeout_ms;                //  bound on one batch (cd_batch)
    size_t max_value_bytes;           //  limit per parameter value (cd_batch)
    int prune_interval_s;             //  how often old request records are pruned
    int prune_age_s;                  //  how old they must be
    int events_retention_s;           //  events older than this go at each prune; 0 keeps all
    int stats_retention_s;            //  stats_history likewise; 0 keeps all
    const char *notify;               //  actor told op=committed after a batch, or NULL
} cd_persist_args_t;

extern const cd_actor_ops_t cd_persist_ops;

#endif
