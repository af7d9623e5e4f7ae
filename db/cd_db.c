/*  cd_db: a PostgreSQL connection behind our own type (see cd_db.h).

    Each call runs synchronously on the caller's thread and records its
    outcome in self->err: cleared on success, filled from the PGresult's
    diagnostic fields on failure. Keeping the error on the connection (as
    SQLite does with sqlite3_errmsg) lets every call return a plain CD_E*
    code while callers that care can still branch on the SQLSTATE.

    A failure is CD_ECONN rather than CD_EDB when the connection is broken,
    when the SQLSTATE is of class 08 (connection exception), or when it is
    57P01-57P03 (the server is shutting down or starting): those mean "try
    again on a new connection", which is what the persist actor will do.

    Interface: cd_db_connect, cd_db_close, cd_db_connected, cd_db_reset,
    cd_db_exec, cd_db_exec_params, cd_db_query_int64, cd_db_query_text,
    cd_db_quote_ident, cd_db_error, cd_db_error_is, cd_db_error_format;
    result sets: cd_db_query, cd_db_query_prepared, cd_db_rows_destroy, cd_db_rows_count,
    cd_db_rows_ncols, cd_db_rows_affected, cd_db_rows_col, cd_db_rows_get,
    cd_db_rows_isnull, cd_db_rows_int64; transactions: cd_db_begin,
    cd_db_commit, cd_db_rollback, cd_db_in_transaction.

    A result set is the PGresult itself behind our type: reading a value
    is PQgetvalue, with no copy, and the values live until it is
    destroyed. */
#include "cd_db.h"
#include "cd_error.h"
#include "cd_log.h"
#include "db_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cd_db_rows {
    PGresult *res; // the result, status TUPLES_OK or COMMAND_OK; cleared on destroy
};

struct cd_db {
    PGconn *conn;          // the libpq connection, never NULL while the object lives
    cd_db_error_t err;     // outcome of the last call; err.message NULL on success
    const char **prepared; // statements prepared in this session (cd_db_query_prepared);
                           // statement i is named "cd_p<i>"
    size_t n_prepared;     // entries in prepared
    size_t cap_prepared;   // room in prepared
};

void *
cd__db_checked(void *p, const char *file, int line)
{
    if (!p) {
        fprintf(stderr, "%s:%d: out of memory\n", file, line);
        abort();
    }
    return p;
}

char *
cd__db_printf_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    return cd__db_checked(n < 0 ? NULL : out, file, line);
}

static char *
s_dup_or_null(const char *s)
{
    return s ? cd__db_strdup(s) : NULL;
}

//  libpq messages end with a newline (sometimes several lines); keep one
//  line per log field and error text.
static char *
s_trimmed(const char *s)
{
    char *out = cd__db_strdup(s ? s : "");
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) {
        out[--n] = '\0';
    }
    for (char *p = out; *p; p++) {
        if (*p == '\n') {
            *p = ' ';
        }
    }
    return out;
}

static void
s_error_clear(cd_db_error_t *err)
{
    free(err->message);
    free(err->detail);
    free(err->hint);
    free(err->constraint);
    *err = (cd_db_error_t){0};
}

static void
s_set_error(cd_db_t *self, const char *sqlstate, const char *message)
{
    s_error_clear(&self->err);
    snprintf(self->err.sqlstate, sizeof self->err.sqlstate, "%s", sqlstate ? sqlstate : "");
    self->err.message = s_trimmed(message);
}

//  Records the error a failed PGresult (or a NULL one) describes and
//  returns the CD_E* code for it.
static int
s_fail(cd_db_t *self, const PGresult *res)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (primary) {
        s_set_error(self, PQresultErrorField(res, PG_DIAG_SQLSTATE), primary);
        self->err.detail = s_dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
        self->err.hint = s_dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
        self->err.constraint = s_dup_or_null(PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME));
    } else {
        //  No diagnostic fields: libpq itself failed (connection lost, out
        //  of memory, protocol error); its text is on the connection.
        const char *text = res ? PQresultErrorMessage(res) : "";
        s_set_error(self, NULL, *text ? text : PQerrorMessage(self->conn));
    }
    const char *st = self->err.sqlstate;
    if (PQstatus(self->conn) != CONNECTION_OK || strncmp(st, "08", 2) == 0 ||
        strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0) {
        return CD_ECONN;
    }
    return CD_EDB;
}

static void
s_notice(void *arg, const char *message)
{
    if (cd_log_enabled(CD_LOG_DEBUG)) {
        char *text = s_trimmed(message);
        cd_log_debug("db", "notice", "{s:s}", "text", text);
        free(text);
    }
}

//  Checks that conninfo parses before connecting, so a typo is CD_EINVAL
//  rather than a connection failure. libpq's parse errors quote pieces of
//  the string; when it may hold a password (a password keyword or a URI
//  with user info) the error is given without them.
static bool
s_conninfo_parses(const char *conninfo, char **errmsg)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        if (errmsg) {
            bool secret = strcasestr(conninfo, "password") || strchr(conninfo, '@');
            char *line = s_trimmed(perr ? perr : "out of memory");
            *errmsg = secret ? cd__db_strdup("invalid connection string (the details are withheld: "
                                             "it may contain a password)")
                             : cd__db_printf("invalid connection string: %s", line);
            free(line);
        }
        PQfreemem(perr);
        return false;
    }
    PQconninfoFree(opts);
    return true;
}

int
cd_db_connect(const char *conninfo, cd_db_t **out, char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    *out = NULL;
    if (!conninfo) {
        if (errmsg) {
            *errmsg = cd__db_strdup("no connection string");
        }
        return CD_EINVAL;
    }
    if (!s_conninfo_parses(conninfo, errmsg)) {
        return CD_EINVAL;
    }
    //  expand_dbname=1: "dbname" carries the whole conninfo or URI, which
    //  overrides the keywords before it ("options": what conninfo leaves
    //  unset) and is overridden by those after it.
    const char *const keys[] = {"options", "dbname", "fallback_application_name", "client_encoding",
                                NULL};
    const char *const values[] = {CD_DB_SESSION_OPTIONS, conninfo, "cadred", "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    cd__db_checked(conn, __FILE__, __LINE__);
    if (PQstatus(conn) != CONNECTION_OK) {
        if (errmsg) {
            char *line = s_trimmed(PQerrorMessage(conn));
            *errmsg = cd__db_printf("could not connect to PostgreSQL: %s", line);
            free(line);
        }
        PQfinish(conn);
        return CD_ECONN;
    }
    cd_db_t *self = cd__db_calloc(1, sizeof *self);
    self->conn = conn;
    PQsetNoticeProcessor(conn, s_notice, self);
    *out = self;
    return 0;
}

void
cd_db_close(cd_db_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_db_t *self = *self_p;
    PQfinish(self->conn);
    s_error_clear(&self->err);
    free(self->prepared);
    free(self);
    *self_p = NULL;
}

bool
cd_db_connected(const cd_db_t *self)
{
    return PQstatus(self->conn) == CONNECTION_OK;
}

int
cd_db_reset(cd_db_t *self)
{
    self->n_prepared = 0; //  prepared statements die with the session
    PQreset(self->conn);
    if (PQstatus(self->conn) != CONNECTION_OK) {
        s_set_error(self, NULL, PQerrorMessage(self->conn));
        return CD_ECONN;
    }
    s_error_clear(&self->err);
    return 0;
}

//  Clears res on every path. Returns 0 for a command or rows, else the
//  recorded error.
static int
s_finish(cd_db_t *self, PGresult *res, int64_t *rows_affected)
{
    ExecStatusType st = PQresultStatus(res);
    if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        if (rows_affected) {
            const char *n = PQcmdTuples(res);
            *rows_affected = *n ? strtoll(n, NULL, 10) : 0;
        }
        PQclear(res);
        s_error_clear(&self->err);
        return 0;
    }
    int rc = s_fail(self, res);
    PQclear(res);
    return rc;
}

int
cd_db_exec(cd_db_t *self, const char *sql, char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    //  With several statements PQexec returns the last result only; an
    //  error stops the string there and is that last result.
    int rc = s_finish(self, PQexec(self->conn, sql), NULL);
    if (rc != 0 && errmsg) {
        *errmsg = cd_db_error_format(&self->err);
    }
    return rc;
}

int
cd__db_exec_keep_error(cd_db_t *self, const char *sql)
{
    PGresult *res = PQexec(self->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (!res || st != PGRES_COMMAND_OK) {
        rc = PQstatus(self->conn) == CONNECTION_OK ? CD_EDB : CD_ECONN;
    }
    PQclear(res);
    return rc;
}

int
cd_db_exec_params(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                  int64_t *rows_affected)
{
    if (rows_affected) {
        *rows_affected = 0;
    }
    PGresult *res = PQexecParams(self->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    return s_finish(self, res, rows_affected);
}

//  Runs a one-value query; on success *res_out holds a result with at
//  least one row and one column and a non-NULL first value.
static int
s_query_one(cd_db_t *self, const char *sql, int nparams, const char *const *params,
            PGresult **res_out)
{
    *res_out = NULL;
    PGresult *res = PQexecParams(self->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = s_fail(self, res);
        PQclear(res);
        return rc;
    }
    if (PQntuples(res) < 1 || PQnfields(res) < 1 || PQgetisnull(res, 0, 0)) {
        s_set_error(self, NULL, PQntuples(res) < 1 ? "query returned no row" : "value is NULL");
        PQclear(res);
        return CD_ENOTFOUND;
    }
    s_error_clear(&self->err);
    *res_out = res;
    return 0;
}

int
cd_db_query_int64(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                  int64_t *out)
{
    PGresult *res = NULL;
    int rc = s_query_one(self, sql, nparams, params, &res);
    if (rc != 0) {
        return rc;
    }
    const char *text = PQgetvalue(res, 0, 0);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        s_set_error(self, NULL, "value is not a 64-bit integer");
        rc = CD_EPROTO;
    } else {
        *out = (int64_t)v;
    }
    PQclear(res);
    return rc;
}

int
cd_db_query_text(cd_db_t *self, const char *sql, int nparams, const char *const *params, char **out)
{
    *out = NULL;
    PGresult *res = NULL;
    int rc = s_query_one(self, sql, nparams, params, &res);
    if (rc != 0) {
        return rc;
    }
    *out = cd__db_strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

char *
cd_db_quote_ident(cd_db_t *self, const char *ident)
{
    char *quoted = PQescapeIdentifier(self->conn, ident, strlen(ident));
    if (!quoted) {
        s_set_error(self, NULL, PQerrorMessage(self->conn));
        return NULL;
    }
    char *copy = cd__db_strdup(quoted);
    PQfreemem(quoted);
    s_error_clear(&self->err);
    return copy;
}

const cd_db_error_t *
cd_db_error(const cd_db_t *self)
{
    return self->err.message ? &self->err : NULL;
}

bool
cd_db_error_is(const cd_db_error_t *err, const char *sqlstate)
{
    return err && err->message && strcmp(err->sqlstate, sqlstate) == 0;
}

char *
cd_db_error_format(const cd_db_error_t *err)
{
    if (!err || !err->message) {
        return cd__db_strdup("no error");
    }
    char *detail = err->detail ? s_trimmed(err->detail) : NULL;
    char *out = cd__db_printf("%s%s%s%s%s%s", err->message, err->sqlstate[0] ? " (SQLSTATE " : "",
                              err->sqlstate, err->sqlstate[0] ? ")" : "",
                              detail ? "; detail: " : "", detail ? detail : "");
    free(detail);
    return out;
}

int
cd_db_query(cd_db_t *self, const char *sql, int nparams, const char *const *params,
            cd_db_rows_t **out)
{
    *out = NULL;
    PGresult *res = PQexecParams(self->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (!res || (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)) {
        int rc = s_fail(self, res);
        PQclear(res);
        return rc;
    }
    s_error_clear(&self->err);
    cd_db_rows_t *rows = cd__db_calloc(1, sizeof *rows);
    rows->res = res;
    *out = rows;
    return 0;
}

int
cd_db_query_prepared(cd_db_t *self, const char *sql, int nparams, const char *const *params,
                     cd_db_rows_t **out)
{
    *out = NULL;
    size_t i = 0;
    while (i < self->n_prepared && self->prepared[i] != sql) {
        i++;
    }
    char name[32];
    snprintf(name, sizeof name, "cd_p%zu", i);
    if (i == self->n_prepared) {
        PGresult *res = PQprepare(self->conn, name, sql, nparams, NULL);
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
            int rc = s_fail(self, res);
            PQclear(res);
            return rc;
        }
        PQclear(res);
        if (self->n_prepared == self->cap_prepared) {
            self->cap_prepared = self->cap_prepared ? self->cap_prepared * 2 : 16;
            self->prepared =
                cd__db_checked(realloc(self->prepared, self->cap_prepared * sizeof *self->prepared),
                               __FILE__, __LINE__);
        }
        self->prepared[self->n_prepared++] = sql;
    }
    PGresult *res = PQexecPrepared(self->conn, name, nparams, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (!res || (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)) {
        int rc = s_fail(self, res);
        PQclear(res);
        return rc;
    }
    s_error_clear(&self->err);
    cd_db_rows_t *rows = cd__db_calloc(1, sizeof *rows);
    rows->res = res;
    *out = rows;
    return 0;
}

void
cd_db_rows_destroy(cd_db_rows_t **rows_p)
{
    if (!rows_p || !*rows_p) {
        return;
    }
    PQclear((*rows_p)->res);
    free(*rows_p);
    *rows_p = NULL;
}

int
cd_db_rows_count(const cd_db_rows_t *rows)
{
    return PQntuples(rows->res);
}

int
cd_db_rows_ncols(const cd_db_rows_t *rows)
{
    return PQnfields(rows->res);
}

int64_t
cd_db_rows_affected(const cd_db_rows_t *rows)
{
    const char *n = PQcmdTuples(rows->res);
    return *n ? strtoll(n, NULL, 10) : 0;
}

int
cd_db_rows_col(const cd_db_rows_t *rows, const char *name)
{
    //  PQfnumber folds unquoted names to lower case and strips quotes;
    //  compare exactly instead, as the header promises.
    for (int i = 0; i < PQnfields(rows->res); i++) {
        if (strcmp(PQfname(rows->res, i), name) == 0) {
            return i;
        }
    }
    return -1;
}

static bool
s_in_range(const cd_db_rows_t *rows, int row, int col)
{
    return row >= 0 && col >= 0 && row < PQntuples(rows->res) && col < PQnfields(rows->res);
}

bool
cd_db_rows_isnull(const cd_db_rows_t *rows, int row, int col)
{
    return !s_in_range(rows, row, col) || PQgetisnull(rows->res, row, col);
}

const char *
cd_db_rows_get(const cd_db_rows_t *rows, int row, int col)
{
    return cd_db_rows_isnull(rows, row, col) ? NULL : PQgetvalue(rows->res, row, col);
}

int
cd_db_rows_int64(const cd_db_rows_t *rows, int row, int col, int64_t *out)
{
    const char *text = cd_db_rows_get(rows, row, col);
    if (!text) {
        return CD_ENOTFOUND;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        return CD_EPROTO;
    }
    *out = (int64_t)v;
    return 0;
}

int
cd_db_begin(cd_db_t *self)
{
    return cd_db_exec(self, "BEGIN", NULL);
}

int
cd_db_commit(cd_db_t *self)
{
    PGresult *res = PQexec(self->conn, "COMMIT");
    if (PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
        //  The transaction had failed; the server rolled it back instead.
        PQclear(res);
        s_set_error(self, "25P02", "transaction was rolled back: a statement in it had failed");
        return CD_EDB;
    }
    return s_finish(self, res, NULL);
}

int
cd_db_rollback(cd_db_t *self)
{
    return cd__db_exec_keep_error(self, "ROLLBACK");
}

bool
cd_db_in_transaction(const cd_db_t *self)
{
    PGTransactionStatusType st = PQtransactionStatus(self->conn);
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR;
}
