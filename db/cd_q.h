/*  cd_q: the conventions every db/cd_q_<family> query module follows.

    One module per table family (cd_q_tasks, cd_q_events, cd_q_agents,
    cd_q_users, cd_q_catalog, cd_q_projects, cd_q_hitl, cd_q_schedules,
    cd_q_usage, cd_q_system), each a set of plain functions over a cd_db_t.
    Other layers never see libpq; they see these conventions:

    Rows out are JSON text. Every function that returns rows returns them
    as JSON objects built by PostgreSQL (json_build_object), in the shape
    API.md gives the resource, with RFC 3339 UTC timestamps
    ("2026-11-22T10:00:00.123456Z"), jsonb columns embedded as JSON, ids
    as numbers and SQL NULL as null. One row: char **out (caller frees).
    Several rows: a cd_q_page_t holding a JSON array. The HTTP layer can
    answer with that text as it is; actors parse it with jansson. Fields
    the API does not list (updated_at, lease_owner ...) may be present;
    secrets (password hashes, token hashes, sealed connection secrets)
    only appear from the functions whose names say so (..._auth,
    ..._sealed).

    Values in are C scalars and JSON text. Integers are int64_t, with
    CD_Q_NULL meaning "absent": SQL NULL for a column, "no filter" for a
    filter, "keep" in an update. Strings are const char *, NULL meaning
    the same. Whole objects from a request body (a create or a PATCH) are
    passed as the JSON object text, and the SQL takes its fields apart
    (`$1::jsonb ->> 'title'`): a create applies the API's defaults for
    missing keys; a patch changes exactly the keys present (a key present
    with null sets NULL where the column allows it). Unknown keys are
    ignored here: rejecting them is the HTTP layer's job. Hashes and other
    bytes cross as lower-case hex text; artifact content as base64.
    Timestamps in are RFC 3339 text.

    Lists are keyset-paginated: a cursor is opaque text (the last row's
    key); pass the page's next_cursor to get the next page. A page never
    repeats or skips a row that existed when paging started, whatever is
    inserted meanwhile. Resource lists run newest first (id descending);
    logs that are replayed (events, task history, stats) run oldest first.
    A limit of 0 or less means CD_Q_LIMIT_DEFAULT; above CD_Q_LIMIT_MAX it
    is clamped. A malformed cursor is CD_EDB with SQLSTATE 22P02.

    Errors: 0 or a negative CD_E* code. CD_EDB with the SQLSTATE kept on
    the connection (cd_db_error): 23505 unique violation (HTTP 409),
    23503 foreign key (a missing referenced row, or a row still in use),
    23514 check violation and 22xxx bad values (HTTP 400). CD_ECONN: the
    connection is gone, retry on a new one. CD_ENOTFOUND: no such row.
    CD_ESTATE: the row exists but is not in a state that allows the change
    (a finished task, an answered HITL request: HTTP 409).

    Every statement is parameterised; no SQL text is built from values.
    A function writes exactly what its name says, in one statement (or
    one transaction it opens itself when the connection is idle, joining
    the caller's otherwise); task history (cd_q_task_events_append) and
    bus events (cd_q_events_insert) are written by the caller, inside
    its own transaction when it wants them atomic with the change.

    Functions run on the caller's thread, on a connection that thread
    owns. */
#ifndef CD_DB_Q_H
#define CD_DB_Q_H

#include "cd_db.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  "No value" for an integer parameter.
#define CD_Q_NULL INT64_MIN

//  Page sizes (API.md: default 50, max 1000).
#define CD_Q_LIMIT_DEFAULT 50
#define CD_Q_LIMIT_MAX 1000

//  A write statement the persist actor runs for other actors (they write
//  through it, never on their own connections). One statement, parameters
//  as text ($1 ...), returning at most one row whose first column is the
//  result: the changed object as JSON text (absent: no such object).
//  Each family exports its table (cd_q_<family>_writes) and its query
//  functions run the very same SQL, so the tests of db/ cover what persist
//  runs. Names are "<family>.<verb>".
typedef struct {
    const char *name; //  what a persist request gives as "stmt"
    const char *sql;  //  the statement
    int nparams;      //  parameters it takes
} cd_q_write_t;

//  Several rows.
typedef struct {
    char *items;       // JSON array text of the rows, "[]" if none; owned by the page
    int count;         // number of elements in items
    char *next_cursor; // cursor of the next page, NULL on the last page; owned by the page
} cd_q_page_t;

//  Frees what a page holds and zeroes it. Safe on a zeroed page, twice.
void cd_q_page_fini(cd_q_page_t *page);

//  ---------------------------------------------------------------------
//  For the cd_q_* modules only (layer-private).

//  Writes v as decimal into buf and returns buf, or NULL for CD_Q_NULL.
const char *cd__q_i64(char buf[24], int64_t v);

//  The limit a list runs with (see above).
int cd__q_limit(int limit);

//  Runs sql and returns the first column of its first row in *out
//  (caller frees). CD_ENOTFOUND if there is no row or the value is NULL.
int cd__q_one(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out);

//  Runs a compare-and-set statement whose result is no row (no such
//  object: CD_ENOTFOUND) or one row (ok, json): ok true returns 0, false
//  CD_ESTATE. In both cases *out (if out is not NULL) receives the JSON
//  (caller frees): the changed row, or the row as it is.
int cd__q_cas(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out);

//  Runs a list query whose rows are (cursor, json) in page order and whose
//  last parameter $nparams is its LIMIT: the helper sets params[nparams-1]
//  to limit + 1 itself, to learn whether another page follows. Fills *out
//  (zeroed first).
int cd__q_page(cd_db_t *db, const char *sql, int nparams, const char **params, int limit,
               cd_q_page_t *out);

//  As cd__q_cas for a statement whose columns are the other way round,
//  (json, ok): a write statement persist runs (persist answers with the
//  first column only, so the JSON itself must also tell a conflict apart,
//  e.g. by a "conflict": true member).
int cd__q_cas_json(cd_db_t *db, const char *sql, int nparams, const char *const *params,
                   char **out);

//  Runs sql and collects the first column of every row (JSON text) into
//  *out, with no cursor.
int cd__q_all(cd_db_t *db, const char *sql, int nparams, const char *const *params,
              cd_q_page_t *out);

//  Runs a write; CD_ENOTFOUND if it touched no row. *affected (if not
//  NULL) receives the row count.
int cd__q_write(cd_db_t *db, const char *sql, int nparams, const char *const *params,
                int64_t *affected);

//  Opens a transaction unless one is open: *own says whether this call
//  opened it. cd__q_tx_end commits (rc == 0) or rolls back what it owns
//  and returns rc, or the commit's error.
int cd__q_tx_begin(cd_db_t *db, bool *own);
int cd__q_tx_end(cd_db_t *db, bool own, int rc);

#endif
