/*  cd_batch: the write engine under the persist actor.

    One PostgreSQL connection (non-blocking socket, pipeline mode) that
    writes a batch of requests in ONE transaction and tells each request its
    own outcome. A request names a *target* registered beforehand:

      statement  a parameterised SQL statement ("INSERT ... RETURNING id",
                 "UPDATE ..."), run as a prepared statement in pipeline mode;
                 its result is the first column of the first row returned
                 (if any) and the number of rows it affected;
      table      an append-only table and its columns, written with COPY
                 (one row per request; COPY returns no ids).

    Only registered targets run: a request can never bring SQL of its own.
    Parameters are text (NULL = SQL NULL), as libpq's text format.

    Exactly-once. Every request carries a 16-byte id. In the transaction
    that applies a batch, the ids of the requests it applied are copied into
    persist_requests (migration 0003) under a primary key, with their
    results. A request whose id is already recorded is not applied again: it
    is answered from its record (outcome.replayed). When the connection
    drops after COMMIT was sent and before its answer arrived, the requests
    are marked in doubt (outcome.doubt_txid = the transaction id captured at
    BEGIN). Handed back to cd_batch_run after a reconnect, in-doubt requests
    make it ask pg_xact_status(txid) and look their ids up before anything
    is replayed: committed ones are answered from their records, the rest
    are applied.

    A failed statement fails only its own request. The fast path runs the
    batch without savepoints (a savepoint per request costs two statements
    and a subtransaction id each); if any statement or COPY fails, the
    transaction is rolled back and the batch runs again with a SAVEPOINT
    around each request, statements in pipeline windows, so that every
    request gets its own outcome and the rest commit. Values that PostgreSQL
    would reject anyway (invalid UTF-8, a NUL byte) or that exceed the size
    limit fail their own request before anything is sent.

    Synchronous by design: cd_batch_run returns when the batch committed or
    the connection failed. All its I/O is non-blocking (a PQflush /
    PQconsumeInput loop over poll) and bounded by io_timeout_ms, so the
    caller's thread is never held longer than that (plus connect_timeout_ms
    for a connect). The persist actor runs it on a writer thread of its own
    (see cd_persist.h), so its loop never waits on the database.

    A cd_batch_t belongs to one thread. */
#ifndef CD_DB_BATCH_H
#define CD_DB_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_BATCH_ID_SIZE 16                   //  bytes of a request id (a UUID)
#define CD_BATCH_MAX_PARAMS 100               //  parameters (or columns) per request
#define CD_BATCH_MAX_TARGETS 1000             //  registered statements and tables
#define CD_BATCH_MAX_NAME 63                  //  length of a target name
#define CD_BATCH_DEFAULT_MAX_VALUE (1u << 20) //  bytes per parameter value
#define CD_BATCH_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define CD_BATCH_DEFAULT_IO_TIMEOUT_MS 3000

typedef struct cd_batch cd_batch_t;

typedef struct {
    const char *conninfo;   //  libpq keyword/value string or URI; copied
    size_t max_value_bytes; //  limit per parameter value; 0 = CD_BATCH_DEFAULT_MAX_VALUE
    int connect_timeout_ms; //  bound on one connection attempt; 0 = default
    int io_timeout_ms;      //  bound on one cd_batch_run; 0 = default. The session's
                            //  statement_timeout is set to half of it, so one slow
                            //  statement fails alone before the batch gives up
} cd_batch_opts_t;

//  What happened to one request. Strings are owned by the request
//  (cd_batch_outcome_clear frees them).
typedef struct {
    int rc;             //  0 applied (or replayed); CD_EDB rejected by PostgreSQL;
                        //  CD_ETOOBIG a value over the limit; CD_EINVAL invalid input
                        //  (bad UTF-8, NUL byte, parameter count, unknown target);
                        //  CD_ECONN not done: the connection was lost, run it again
    bool replayed;      //  rc 0 from the record of an earlier commit of this id
    int64_t rows;       //  rows the statement affected (1 for a table row)
    char *value;        //  first column of the first row returned, or NULL
    char sqlstate[6];   //  PostgreSQL's SQLSTATE (or the one it would give), "" if none
    char *message;      //  error text when rc != 0, else NULL
    int64_t doubt_txid; //  != 0: the COMMIT of this transaction got no answer; keep it
                        //  when handing the request back (the outcome is looked up)
} cd_batch_outcome_t;

//  One write request. The caller owns the request and everything it points
//  to; cd_batch_run only fills `out`.
typedef struct {
    uint8_t id[CD_BATCH_ID_SIZE]; //  request id
    int target;                   //  from cd_batch_add_statement/_table or cd_batch_find
    int nparams;                  //  entries in values/lengths
    const char *const *values;    //  NUL-terminated texts; a NULL entry is SQL NULL
    const uint32_t *lengths;      //  byte length of each value (without the NUL)
    cd_batch_outcome_t out;       //  filled by cd_batch_run
} cd_batch_req_t;

typedef struct {
    uint64_t commits;      //  transactions committed
    uint64_t applied;      //  requests applied
    uint64_t failed;       //  requests that failed on their own
    uint64_t replayed;     //  requests answered from their records
    uint64_t slow_batches; //  batches re-run with a savepoint per request
    uint64_t conflicts;    //  batches re-run because a request id was already recorded
    uint64_t in_doubt;     //  COMMITs whose answer was lost
    uint64_t connects;     //  successful connections
    uint64_t disconnects;  //  connections lost or dropped
} cd_batch_stats_t;

//  Creates an unconnected writer. Returns NULL if opts->conninfo is NULL.
//  Caller owns the result. Aborts on out-of-memory.
cd_batch_t *cd_batch_new(const cd_batch_opts_t *opts);

//  Closes the connection and frees. Safe on NULL and twice; nulls *self_p.
void cd_batch_destroy(cd_batch_t **self_p);

//  Registers a statement target: sql with nparams text parameters ($1 ...).
//  Returns its index (>= 0), or CD_EINVAL (bad name, NULL sql, nparams out
//  of 0..CD_BATCH_MAX_PARAMS), CD_EEXIST (name taken), CD_ETOOBIG (too many
//  targets). It is prepared on every connection; if PostgreSQL rejects it,
//  requests for it fail with that error (the others are unaffected).
int cd_batch_add_statement(cd_batch_t *self, const char *name, const char *sql, int nparams);

//  Registers a table target: a request is one row of values for columns.
//  table and columns are plain identifiers ([a-z_][a-z0-9_]*, optionally
//  schema.table); they are checked here, never taken from requests. Returns
//  the index or an error as cd_batch_add_statement.
int cd_batch_add_table(cd_batch_t *self, const char *name, const char *table,
                       const char *const *columns, int ncolumns);

//  Index of the target called name[0..len), or CD_ENOTFOUND.
int cd_batch_find(const cd_batch_t *self, const char *name, size_t len);

//  Parameters a target takes, or -1 for an invalid index.
int cd_batch_target_nparams(const cd_batch_t *self, int target);

//  One connection attempt, bounded by connect_timeout_ms (non-blocking
//  connect). Prepares every target and checks that persist_requests exists.
//  Returns 0; CD_ECONN (unreachable, or lost while preparing); CD_EDB if
//  the schema is missing (persist_requests: migrations not applied). On
//  failure, if errmsg is not NULL, *errmsg receives a message (caller frees).
//  Connecting while connected drops the old connection first.
int cd_batch_connect(cd_batch_t *self, char **errmsg);

//  True while the connection is usable.
bool cd_batch_connected(const cd_batch_t *self);

//  Drops the connection (a later cd_batch_connect makes a new one).
void cd_batch_disconnect(cd_batch_t *self);

//  Writes reqs[0..n) in one transaction and fills each reqs[i].out.
//  Outcomes of the previous run are cleared first, except doubt_txid, which
//  is read (see above) and then rewritten. Returns 0 when every request has
//  a final outcome (applied, replayed, or failed on its own), or CD_ECONN
//  when the connection was lost or the I/O bound passed: then the requests
//  not final have out.rc == CD_ECONN (and doubt_txid set if their COMMIT
//  was in flight) and must be run again after cd_batch_connect. Never
//  applies a request twice. Requests with the same id in one batch are
//  applied once; the later ones get the first one's outcome as a replay.
int cd_batch_run(cd_batch_t *self, cd_batch_req_t *reqs, size_t n);

//  Frees an outcome's strings and zeroes it (doubt_txid included).
void cd_batch_outcome_clear(cd_batch_outcome_t *out);

//  What cd_batch_prune deletes: rows older than the age it is given.
typedef enum {
    CD_BATCH_PRUNE_REQUESTS = 0, //  persist_requests (committed_at): the exactly-once records
    CD_BATCH_PRUNE_EVENTS,       //  events (ts): the event log (retention)
    CD_BATCH_PRUNE_STATS,        //  stats_history (ts): the stats snapshots (retention)
    CD_BATCH_PRUNE_COUNT_
} cd_batch_prune_t;

//  Deletes up to limit rows of what older than max_age_s seconds (one
//  statement, its own transaction). *deleted (if not NULL) receives how
//  many. Returns 0, CD_EDB, CD_ECONN, or CD_EINVAL for an unknown what.
int cd_batch_prune(cd_batch_t *self, cd_batch_prune_t what, int max_age_s, int limit,
                   int64_t *deleted);

//  Counters since creation. Borrowed.
const cd_batch_stats_t *cd_batch_stats(const cd_batch_t *self);

//  Text of the last connection-level failure ("" if none). Borrowed, valid
//  until the next call.
const char *cd_batch_last_error(const cd_batch_t *self);

#endif
