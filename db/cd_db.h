/*  cd_db: one PostgreSQL connection, seen through our own types.

    Only db/ includes <libpq-fe.h>; every other layer talks to the database
    through cd_db_t. A call returns 0 or a negative CD_E* code:

        CD_EDB      the server reported an error (SQLSTATE kept, see below)
        CD_ECONN    the connection is gone (or the server is shutting down)
        CD_ENOTFOUND, CD_EPROTO, CD_EINVAL   as documented per function

    After a failed call the connection keeps the last error in a
    cd_db_error_t: PostgreSQL's SQLSTATE, primary message, detail, hint and
    the violated constraint's name. Callers branch on the SQLSTATE
    ("23505" unique violation, "40001" serialisation failure ...), never
    on message text.

    A cd_db_t belongs to one thread at a time. Every query takes its values
    as parameters ($1, $2 ...); SQL text is never built from values. */
#ifndef CD_DB_DB_H
#define CD_DB_DB_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cd_db cd_db_t;

//  The last error of a connection. All strings are owned by the connection.
typedef struct {
    char sqlstate[6]; // five-character SQLSTATE, "" if the error did not come from the server
    char *message;    // primary message; NULL when the last call succeeded
    char *detail;     // DETAIL line, or NULL
    char *hint;       // HINT line, or NULL
    char *constraint; // name of the violated constraint, or NULL
} cd_db_error_t;

//  Opens a connection. conninfo is a libpq keyword/value string or a
//  postgres:// URI (DATABASE_URL). The session uses UTF-8 and
//  application_name "cadred" unless conninfo says otherwise; server notices
//  go to the debug log rather than stderr.
//  Returns 0 and *out (caller owns; cd_db_close), CD_EINVAL when conninfo
//  does not parse, or CD_ECONN when the server cannot be reached. On
//  failure, if errmsg is not NULL, *errmsg receives a message (caller frees).
//  The message never repeats a password.
int cd_db_connect(const char *conninfo, cd_db_t **out, char **errmsg);

//  Closes the connection and frees it. Safe on NULL and on *self_p == NULL;
//  nulls the caller's pointer.
void cd_db_close(cd_db_t **self_p);

//  True if the connection is up as far as libpq knows (the last call did
//  not find it broken).
bool cd_db_connected(const cd_db_t *self);

//  Re-establishes a broken connection with the same parameters. Returns 0
//  or CD_ECONN (last error set).
int cd_db_reset(cd_db_t *self);

//  Runs sql with the simple query protocol: no parameters, and it may hold
//  several statements (a migration, "BEGIN", "COMMIT"). Never put values in
//  it: use cd_db_exec_params. Returns 0, CD_EDB or CD_ECONN; on failure, if
//  errmsg is not NULL, *errmsg receives cd_db_error_format() of the error
//  (caller frees).
int cd_db_exec(cd_db_t *self, const char *sql, char **errmsg);

//  Runs one statement with nparams text parameters ($1 ...; a NULL entry
//  is SQL NULL). Rows it returns are discarded. If rows_affected is not
//  NULL it receives the command's row count (0 for statements without one).
//  Returns 0, CD_EDB or CD_ECONN.
int cd_db_exec_params(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                      int64_t *rows_affected);

//  Runs one parameterised query and reads the first column of its first
//  row as a 64-bit integer. Returns 0 and *out; CD_ENOTFOUND if there is no
//  row or the value is NULL; CD_EPROTO if the value is not an integer;
//  CD_EDB or CD_ECONN.
int cd_db_query_int64(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                      int64_t *out);

//  As cd_db_query_int64 but returns the value as text in *out (caller
//  frees).
int cd_db_query_text(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                     char **out);

//  Quotes an identifier (a database or table name) for SQL text, for the
//  few statements that cannot take it as a parameter (CREATE DATABASE).
//  Returns the quoted name (caller frees), or NULL (last error set).
char *cd_db_quote_ident(cd_db_t *self, const char *ident);

//  The error of the last call on this connection, or NULL if that call
//  succeeded. Borrowed, valid until the next call on the connection.
const cd_db_error_t *cd_db_error(const cd_db_t *self);

//  True if err holds an error with this SQLSTATE. Safe on NULL.
bool cd_db_error_is(const cd_db_error_t *err, const char *sqlstate);

//  One-line text of an error: "message (SQLSTATE xxxxx); detail: ...".
//  Returns a string the caller frees; "no error" for NULL.
char *cd_db_error_format(const cd_db_error_t *err);

//  ---------------------------------------------------------------------
//  Result sets

typedef struct cd_db_rows cd_db_rows_t;

//  Runs one parameterised statement (as cd_db_exec_params) and keeps the
//  rows it returns, all values as text. A statement without rows (INSERT
//  without RETURNING) gives an empty set. Returns 0 and *out (caller owns;
//  cd_db_rows_destroy), CD_EDB or CD_ECONN (then *out is NULL).
int cd_db_query(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                cd_db_rows_t **out);

//  As cd_db_query, for a statement run often on this connection: prepared
//  on its first use in the session and executed by name afterwards, so the
//  server parses and plans it once (a read that costs ~0.2 ms planned
//  every time costs ~0.03 ms this way). The statement is known by the
//  address of sql, which must therefore be a string with static storage,
//  never text built at run time. A reset forgets what was prepared.
int cd_db_query_prepared(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                         cd_db_rows_t **out);

//  Frees a result set. Safe on NULL and on *rows_p == NULL; nulls the
//  caller's pointer. Every value borrowed from the set dies with it.
void cd_db_rows_destroy(cd_db_rows_t **rows_p);

//  Number of rows and of columns.
int cd_db_rows_count(const cd_db_rows_t *rows);
int cd_db_rows_ncols(const cd_db_rows_t *rows);

//  The command's row count (UPDATE 3 -> 3), 0 for commands without one.
int64_t cd_db_rows_affected(const cd_db_rows_t *rows);

//  The column named name (as the query spelled it, case-sensitive), or -1.
int cd_db_rows_col(const cd_db_rows_t *rows, const char *name);

//  The value at (row, col) as text, or NULL for SQL NULL and for a row or
//  column out of range. Borrowed, valid until cd_db_rows_destroy.
const char *cd_db_rows_get(const cd_db_rows_t *rows, int row, int col);

//  True if (row, col) is SQL NULL or out of range.
bool cd_db_rows_isnull(const cd_db_rows_t *rows, int row, int col);

//  Reads (row, col) as a 64-bit integer into *out. Returns 0, CD_ENOTFOUND
//  if the value is NULL or out of range, CD_EPROTO if it is not an
//  integer.
int cd_db_rows_int64(const cd_db_rows_t *rows, int row, int col, int64_t *out);

//  ---------------------------------------------------------------------
//  Transactions

//  BEGIN, COMMIT. Each returns 0, CD_EDB or CD_ECONN. The server answers
//  COMMIT of a transaction that had failed with a rollback: cd_db_commit
//  then returns CD_EDB with SQLSTATE "25P02" (in_failed_sql_transaction),
//  never 0.
int cd_db_begin(cd_db_t *self);
int cd_db_commit(cd_db_t *self);

//  ROLLBACK, keeping the connection's last error as it was, so the caller
//  still sees why it rolled back. Safe when no transaction is open.
//  Returns 0 or the code of the ROLLBACK itself.
int cd_db_rollback(cd_db_t *self);

//  True while a transaction is open on the connection (idle in a
//  transaction block, or in a failed one).
bool cd_db_in_transaction(const cd_db_t *self);

#endif
