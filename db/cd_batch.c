/*  cd_batch: the write engine under the persist actor (see cd_batch.h).

    A run is one or more *attempts*; an attempt is one transaction made of
    *rounds* (one round trip each). A pipeline round enters pipeline mode,
    queues prepared statements, sends one Sync, reads every result in order
    and leaves pipeline mode. The final round is one query string in the
    simple protocol, because libpq allows no COPY in pipeline mode:

        [BEGIN; SELECT pg_current_xact_id();]     the txid, for doubt
        COPY persist_requests (id, result, rows) FROM STDIN;
        COPY <table> (<columns>) FROM STDIN; ...  one per table with rows
        COMMIT

    The server asks for each COPY's data when it reaches it, so the whole
    transaction is one round trip however many rows it holds; the string
    holds no values (they travel as COPY data). The fast attempt:

      table rows only        the final round alone: one round trip
      with statements        a pipeline round (BEGIN, txid, every statement
                             request), then the final round, whose records
                             carry the statements' results: two

    If a statement or COPY of the fast attempt fails, the transaction is
    rolled back and the slow attempt runs: ids looked up first, then each
    request inside SAVEPOINT/RELEASE (table rows as single INSERTs), queued
    in pipeline windows of S_WINDOW requests with one Sync each. An error
    aborts the rest of its window (the server skips to the Sync); the next
    window starts with ROLLBACK TO SAVEPOINT and resumes after the failed
    request, so good requests run once and each bad one costs one round
    trip; its final round copies the records of everything applied. If the
    records' COPY meets an id already recorded (a replay that was not known
    to be one, or a concurrent writer), the attempt is rolled back and
    repeated with the lookup, which then answers it from its record.

    Every wait polls the socket with the run's deadline, and libpq is fed
    with PQconsumeInput while sending (the server stops reading if its
    results are not read). Losing the connection, or passing the deadline,
    closes it: what was not committed is reported CD_ECONN; if COMMIT had
    been sent, the requests carry the txid for the next run to resolve.

    Interface: cd_batch_new/destroy, cd_batch_add_statement/_table,
    cd_batch_find, cd_batch_target_nparams, cd_batch_connect/connected/
    disconnect, cd_batch_run, cd_batch_outcome_clear, cd_batch_prune,
    cd_batch_stats, cd_batch_last_error. */
#include "cd_batch.h"
#include "cd_error.h"
#include "cd_log.h"
#include "db_internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_WINDOW 64        //  slow attempt: requests per pipeline window
#define S_FLUSH_EVERY 256  //  queued statements between flushes
#define S_COPY_CHUNK 65536 //  bytes per PQputCopyData
#define S_MAX_ATTEMPTS 4   //  attempts of one run before failing what is left
#define S_SMALL 8          //  table rows up to which a batch uses INSERTs, not COPY

//  Internal statements, prepared on every connection.
#define S_BEGIN "cd_begin"
#define S_TXID "cd_txid"
#define S_COMMIT "cd_commit"
#define S_LOOKUP "cd_lookup"
#define S_RECORD "cd_record"
#define S_XACT "cd_xact"
#define S_PRUNE "cd_prune"

typedef struct {
    char *name;            //  target name (what requests give)
    bool is_table;         //  COPY target rather than a statement
    int nparams;           //  parameters / columns
    char *sql;             //  the statement, or a table's single-row INSERT
    char *copy_sql;        //  tables: COPY ... FROM STDIN
    char stmt[24];         //  prepared statement name
    char *prep_error;      //  why PostgreSQL rejected it on this connection, or NULL
    char prep_sqlstate[6]; //  its SQLSTATE
} s_target_t;

typedef struct {
    char *data; //  bytes, NUL-terminated when used as text
    size_t len; //  used
    size_t cap; //  allocated
} s_buf_t;

typedef enum {
    S_PENDING = 0, //  not done yet in this attempt
    S_OK,          //  applied in this attempt
    S_FAILED,      //  failed on its own
    S_REPLAYED     //  found in persist_requests
} s_state_t;

//  Working state of one request during a run.
typedef struct {
    cd_batch_req_t *req; //  the caller's request
    int dup_of;          //  index of the first request with the same id, or -1
    bool final;          //  outcome settled for the whole run
    bool fast_failed;    //  its statement failed in the fast attempt (error in req->out)
    s_state_t state;     //  within the current attempt
} s_item_t;

typedef enum {
    Q_BEGIN,
    Q_TXID,
    Q_LOOKUP,
    Q_STMT,
    Q_SAVEPOINT,
    Q_RELEASE,
    Q_ROLLBACK_TO,
    Q_RECORD,
    Q_COMMIT
} s_qkind_t;

typedef struct {
    s_qkind_t kind; //  what the query is, to interpret its result
    int arg;        //  item index (Q_STMT, Q_SAVEPOINT, Q_RELEASE)
} s_query_t;

//  How a round or an attempt ended.
typedef enum {
    R_OK = 0,   //  as planned
    R_LOST,     //  connection lost (CD_ECONN; it is closed)
    R_FAILED,   //  a request's statement failed (first_error says which)
    R_CONFLICT, //  a record insert met an existing id
    R_FATAL     //  something failed that belongs to no request (commit, records)
} s_round_t;

struct cd_batch {
    char *conninfo;         //  copied from opts
    size_t max_value;       //  per parameter value
    int connect_timeout_ms; //  per connection attempt
    int io_timeout_ms;      //  per run
    PGconn *conn;           //  NULL while not connected
    s_target_t *targets;    //  registered targets
    size_t n_targets;       //  used entries
    s_query_t *queue;       //  queries of the current pipeline round
    size_t n_queue;         //  used entries
    size_t cap_queue;       //  allocated entries
    s_item_t *items;        //  per-request state of the current run
    size_t n_items;         //  requests in the current run
    size_t cap_items;       //  allocated entries
    size_t *order;          //  item indices sorted by id
    s_buf_t copy;           //  COPY data
    s_buf_t arr_ids;        //  uuid[] literal
    s_buf_t sql;            //  query string of the final round
    s_buf_t idtext;         //  small path: the ids as text, 37 bytes each
    int64_t deadline_us;    //  of the current operation, monotonic
    int64_t txid;           //  of the current transaction, 0 if unknown
    bool commit_sent;       //  COMMIT queued in the current attempt
    int first_error_item;   //  item whose statement failed in the last round, or -1
    char err_sqlstate[6];   //  error of the last failed round
    char *err_message;      //  its text (owned)
    char last_error[512];   //  last connection-level failure
    cd_batch_stats_t stats; //  counters
};

//  --- small helpers ----------------------------------------------------------------------

static int64_t
s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
s_buf_reserve(s_buf_t *buf, size_t more)
{
    if (buf->len + more + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 4096;
        while (cap < buf->len + more + 1) {
            cap *= 2;
        }
        buf->data = cd__db_checked(realloc(buf->data, cap), __FILE__, __LINE__);
        buf->cap = cap;
    }
}

static void
s_buf_add(s_buf_t *buf, const char *data, size_t len)
{
    s_buf_reserve(buf, len);
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

static void
s_buf_addc(s_buf_t *buf, char c)
{
    s_buf_reserve(buf, 1);
    buf->data[buf->len++] = c;
    buf->data[buf->len] = '\0';
}

static void
s_buf_reset(s_buf_t *buf)
{
    buf->len = 0;
    if (buf->data) {
        buf->data[0] = '\0';
    }
}

//  Appends a value escaped for COPY's text format: backslash, newline,
//  carriage return and tab are the only bytes it gives meaning to. value
//  holds no NUL before len and one at len (cd_batch_run checked), so
//  strcspn finds the runs to copy as they are.
static void
s_buf_add_copy_value(s_buf_t *buf, const char *value, size_t len)
{
    s_buf_reserve(buf, 2 * len);
    char *out = buf->data + buf->len;
    const char *end = value + len;
    while (value < end) {
        size_t run = strcspn(value, "\\\n\r\t");
        memcpy(out, value, run);
        out += run;
        value += run;
        if (value >= end) {
            break;
        }
        *out++ = '\\';
        *out++ = *value == '\n' ? 'n' : *value == '\r' ? 'r' : *value == '\t' ? 't' : '\\';
        value++;
    }
    buf->len = (size_t)(out - buf->data);
    buf->data[buf->len] = '\0';
}

static void
s_buf_add_uuid(s_buf_t *buf, const uint8_t id[CD_BATCH_ID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    s_buf_reserve(buf, 36);
    char *out = buf->data + buf->len;
    for (int i = 0; i < CD_BATCH_ID_SIZE; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *out++ = '-';
        }
        *out++ = hex[id[i] >> 4];
        *out++ = hex[id[i] & 15];
    }
    buf->len += 36;
    buf->data[buf->len] = '\0';
}

static int
s_hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

//  Parses PostgreSQL's uuid text form. Returns 0 or -1.
static int
s_parse_uuid(const char *text, uint8_t out[CD_BATCH_ID_SIZE])
{
    int n = 0;
    for (const char *p = text; *p && n < 2 * CD_BATCH_ID_SIZE; p++) {
        if (*p == '-') {
            continue;
        }
        int v = s_hexval(*p);
        if (v < 0) {
            return -1;
        }
        if (n % 2 == 0) {
            out[n / 2] = (uint8_t)(v << 4);
        } else {
            out[n / 2] |= (uint8_t)v;
        }
        n++;
    }
    return n == 2 * CD_BATCH_ID_SIZE ? 0 : -1;
}

//  Offset of the first byte that makes s[0..n) invalid UTF-8 (a NUL byte
//  counts as invalid: PostgreSQL text cannot hold it), or n if it is valid.
static size_t
s_utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        //  Eight ASCII bytes at a time (no high bit, no zero byte): most text.
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, sizeof w);
            if (((w | ((w & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL)) &
                 0x8080808080808080ULL) == 0x8080808080808080ULL &&
                (w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c >= 0x01 && c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return i;
        }
        if (i + need >= n) {
            return i;
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return i;
        }
        for (size_t k = 2; k <= need; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) {
                return i;
            }
        }
        i += need + 1;
    }
    return n;
}

//  libpq messages end with newlines; keep one line.
static char *
s_oneline(const char *text)
{
    char *out = cd__db_strdup(text ? text : "");
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
s_notice(void *arg, const char *message)
{
    if (cd_log_enabled(CD_LOG_DEBUG)) {
        char *text = s_oneline(message);
        cd_log_debug("persist", "notice", "{s:s}", "text", text);
        free(text);
    }
}

//  A plain identifier, or schema.identifier.
static bool
s_ident_ok(const char *name, bool allow_schema)
{
    if (!name || !*name || strlen(name) > CD_BATCH_MAX_NAME * 2 + 1) {
        return false;
    }
    bool start = true;
    int dots = 0;
    for (const char *p = name; *p; p++) {
        if (*p == '.' && allow_schema && !start && dots == 0) {
            dots++;
            start = true;
            continue;
        }
        bool alpha = (*p >= 'a' && *p <= 'z') || *p == '_';
        bool digit = *p >= '0' && *p <= '9';
        if (!(alpha || (digit && !start))) {
            return false;
        }
        start = false;
    }
    return !start;
}

//  --- outcomes ---------------------------------------------------------------------------

void
cd_batch_outcome_clear(cd_batch_outcome_t *out)
{
    if (out) {
        free(out->value);
        free(out->message);
        *out = (cd_batch_outcome_t){0};
    }
}

static void
s_fail_item(s_item_t *item, int rc, const char *sqlstate, const char *message)
{
    cd_batch_outcome_t *out = &item->req->out;
    free(out->value);
    out->value = NULL;
    free(out->message);
    out->rc = rc;
    out->rows = 0;
    out->replayed = false;
    snprintf(out->sqlstate, sizeof out->sqlstate, "%s", sqlstate ? sqlstate : "");
    out->message = cd__db_strdup(message);
    item->state = S_FAILED;
}

//  The error a failed result describes: "primary; detail: ..." and the
//  SQLSTATE. Caller frees *message.
static void
s_result_error(const PGresult *res, PGconn *conn, char sqlstate[6], char **message)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    snprintf(sqlstate, 6, "%s", state ? state : "");
    char *line = s_oneline(primary ? primary
                           : res   ? PQresultErrorMessage(res)
                                   : PQerrorMessage(conn));
    if (detail) {
        char *det = s_oneline(detail);
        *message = cd__db_printf("%s; detail: %s", line, det);
        free(det);
        free(line);
    } else {
        *message = line;
    }
}

//  --- connection-level I/O ---------------------------------------------------------------

static void
s_close(cd_batch_t *self)
{
    if (self->conn) {
        PQfinish(self->conn);
        self->conn = NULL;
        self->stats.disconnects++;
    }
}

//  The connection is unusable: close it, say why. Returns R_LOST.
static s_round_t
s_lost(cd_batch_t *self, const char *why)
{
    char *line = s_oneline(why);
    snprintf(self->last_error, sizeof self->last_error, "%s", *line ? line : "connection lost");
    free(line);
    cd_log_warn("persist", "database connection lost", "{s:s, s:b}", "why", self->last_error,
                "commit_sent", self->commit_sent);
    s_close(self);
    return R_LOST;
}

//  Waits for the socket to be readable (and writable, if asked), feeding
//  libpq what arrived. Bounded by the operation's deadline.
static s_round_t
s_wait(cd_batch_t *self, bool want_write)
{
    int64_t left = self->deadline_us - s_mono_us();
    if (left <= 0) {
        return s_lost(self, "database I/O timed out");
    }
    struct pollfd pfd = {PQsocket(self->conn), (short)(POLLIN | (want_write ? POLLOUT : 0)), 0};
    int ready = poll(&pfd, 1, (int)((left + 999) / 1000));
    if (ready < 0 && errno != EINTR) {
        return s_lost(self, strerror(errno));
    }
    if (ready > 0 && (pfd.revents & (POLLIN | POLLERR | POLLHUP))) {
        if (!PQconsumeInput(self->conn)) {
            return s_lost(self, PQerrorMessage(self->conn));
        }
    }
    return R_OK;
}

//  Sends what libpq holds, reading meanwhile so the server never blocks on
//  us.
static s_round_t
s_flush(cd_batch_t *self)
{
    while (true) {
        int rc = PQflush(self->conn);
        if (rc == 0) {
            return R_OK;
        }
        if (rc < 0) {
            return s_lost(self, PQerrorMessage(self->conn));
        }
        if (s_wait(self, true) != R_OK) {
            return R_LOST;
        }
    }
}

//  The next result, skipping the NULL that ends each query's results. Two
//  NULLs in a row mean nothing is pending: a bug on our side, handled as a
//  lost connection rather than a hang.
static s_round_t
s_next(cd_batch_t *self, PGresult **res)
{
    *res = NULL;
    if (s_flush(self) != R_OK) {
        return R_LOST;
    }
    int nulls = 0;
    while (true) {
        if (PQisBusy(self->conn)) {
            if (s_wait(self, false) != R_OK) {
                return R_LOST;
            }
            continue;
        }
        PGresult *r = PQgetResult(self->conn);
        if (r) {
            *res = r;
            return R_OK;
        }
        if (PQstatus(self->conn) == CONNECTION_BAD) {
            return s_lost(self, PQerrorMessage(self->conn));
        }
        if (++nulls > 1) {
            return s_lost(self, "protocol out of step: no result pending");
        }
    }
}

//  Reads to the NULL that ends a (non-pipeline) query, clearing anything
//  left over.
static s_round_t
s_end(cd_batch_t *self)
{
    while (true) {
        if (PQisBusy(self->conn)) {
            if (s_wait(self, false) != R_OK) {
                return R_LOST;
            }
            continue;
        }
        PGresult *r = PQgetResult(self->conn);
        if (!r) {
            return PQstatus(self->conn) == CONNECTION_BAD ? s_lost(self, PQerrorMessage(self->conn))
                                                          : R_OK;
        }
        PQclear(r);
    }
}

//  True for errors that mean "this connection is finished": class 08, the
//  server shutting down or starting, or libpq's own broken state.
static bool
s_is_conn_error(cd_batch_t *self, const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return PQstatus(self->conn) == CONNECTION_BAD ||
           (st && (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
                   strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0));
}

static void
s_set_round_error(cd_batch_t *self, const PGresult *res)
{
    free(self->err_message);
    s_result_error(res, self->conn, self->err_sqlstate, &self->err_message);
}

//  Runs one statement outside pipeline mode (ROLLBACK, a prune) and gives
//  its result. Caller clears *res_out when it is not NULL.
static s_round_t
s_exec(cd_batch_t *self, const char *sql, const char *stmt, int nparams, const char *const *params,
       PGresult **res_out)
{
    *res_out = NULL;
    int sent = stmt ? PQsendQueryPrepared(self->conn, stmt, nparams, params, NULL, NULL, 0)
                    : PQsendQueryParams(self->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!sent) {
        return s_lost(self, PQerrorMessage(self->conn));
    }
    PGresult *res = NULL;
    if (s_next(self, &res) != R_OK) {
        return R_LOST;
    }
    if (s_end(self) != R_OK) {
        PQclear(res);
        return R_LOST;
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK &&
        s_is_conn_error(self, res)) {
        char sqlstate[6], *message = NULL;
        s_result_error(res, self->conn, sqlstate, &message);
        PQclear(res);
        s_lost(self, message);
        free(message);
        return R_LOST;
    }
    *res_out = res;
    return R_OK;
}

//  Ends whatever transaction the connection is in.
static s_round_t
s_rollback(cd_batch_t *self)
{
    if (!self->conn || PQtransactionStatus(self->conn) == PQTRANS_IDLE) {
        return self->conn ? R_OK : R_LOST;
    }
    PGresult *res = NULL;
    if (s_exec(self, "ROLLBACK", NULL, 0, NULL, &res) != R_OK) {
        return R_LOST;
    }
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok ? R_OK : s_lost(self, "ROLLBACK failed");
}

//  --- pipeline rounds --------------------------------------------------------------------

static void
s_queue_add(cd_batch_t *self, s_qkind_t kind, int arg)
{
    if (self->n_queue == self->cap_queue) {
        self->cap_queue = self->cap_queue ? self->cap_queue * 2 : 256;
        self->queue = cd__db_checked(realloc(self->queue, self->cap_queue * sizeof(s_query_t)),
                                     __FILE__, __LINE__);
    }
    self->queue[self->n_queue++] = (s_query_t){kind, arg};
}

static s_round_t
s_pipe_begin(cd_batch_t *self)
{
    self->n_queue = 0;
    if (!PQenterPipelineMode(self->conn)) {
        return s_lost(self, PQerrorMessage(self->conn));
    }
    return R_OK;
}

//  Queues one query of the round. sql for an unnamed statement, else the
//  prepared statement's name.
static s_round_t
s_pipe_send(cd_batch_t *self, s_qkind_t kind, int arg, const char *sql, const char *stmt,
            int nparams, const char *const *params)
{
    int sent = stmt ? PQsendQueryPrepared(self->conn, stmt, nparams, params, NULL, NULL, 0)
                    : PQsendQueryParams(self->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!sent) {
        return s_lost(self, PQerrorMessage(self->conn));
    }
    s_queue_add(self, kind, arg);
    if (self->n_queue % S_FLUSH_EVERY == 0) {
        //  Start the server working and keep libpq's buffer bounded.
        return s_flush(self);
    }
    return R_OK;
}

static s_round_t s_on_result(cd_batch_t *self, const s_query_t *q, PGresult *res);

//  Sends the Sync, reads every queued result in order (each through
//  s_on_result), then the Sync's, and leaves pipeline mode. The round's
//  first error is kept (err_sqlstate/err_message, first_error_item); what
//  the server skipped after it comes back as PGRES_PIPELINE_ABORTED.
static s_round_t
s_pipe_end(cd_batch_t *self)
{
    if (!PQpipelineSync(self->conn)) {
        return s_lost(self, PQerrorMessage(self->conn));
    }
    s_round_t outcome = R_OK;
    for (size_t i = 0; i < self->n_queue; i++) {
        PGresult *res = NULL;
        if (s_next(self, &res) != R_OK) {
            return R_LOST;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_ABORTED) {
            PQclear(res);
            continue;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && s_is_conn_error(self, res)) {
            char sqlstate[6], *message = NULL;
            s_result_error(res, self->conn, sqlstate, &message);
            PQclear(res);
            s_lost(self, message);
            free(message);
            return R_LOST;
        }
        s_round_t r = s_on_result(self, &self->queue[i], res);
        PQclear(res);
        if (r == R_LOST) {
            return R_LOST;
        }
        if (outcome == R_OK) {
            outcome = r;
        }
    }
    PGresult *res = NULL;
    if (s_next(self, &res) != R_OK) {
        return R_LOST;
    }
    bool synced = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    PQclear(res);
    if (!synced || !PQexitPipelineMode(self->conn)) {
        return s_lost(self, "pipeline out of step");
    }
    return outcome;
}

//  --- the run's items --------------------------------------------------------------------

static bool
s_live(const s_item_t *item)
{
    return !item->final && item->dup_of < 0;
}

//  Item whose id is id (first of its duplicates), or NULL. order[] is
//  sorted by id.
static s_item_t *
s_find_item(cd_batch_t *self, const uint8_t id[CD_BATCH_ID_SIZE])
{
    size_t lo = 0, hi = self->n_items;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(self->items[self->order[mid]].req->id, id, CD_BATCH_ID_SIZE);
        if (c == 0) {
            //  The first of equal ids sits leftmost.
            while (mid > 0 &&
                   memcmp(self->items[self->order[mid - 1]].req->id, id, CD_BATCH_ID_SIZE) == 0) {
                mid--;
            }
            return &self->items[self->order[mid]];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

//  Interprets one result of a pipeline round.
static s_round_t
s_on_result(cd_batch_t *self, const s_query_t *q, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    switch (q->kind) {
    case Q_TXID:
        if (ok && PQntuples(res) == 1) {
            self->txid = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        }
        break;
    case Q_LOOKUP:
        if (ok) {
            for (int r = 0; r < PQntuples(res); r++) {
                uint8_t id[CD_BATCH_ID_SIZE];
                if (s_parse_uuid(PQgetvalue(res, r, 0), id) != 0) {
                    continue;
                }
                s_item_t *item = s_find_item(self, id);
                if (!item || !s_live(item)) {
                    continue;
                }
                //  Answered from the record: final whatever this attempt does.
                cd_batch_outcome_t *out = &item->req->out;
                free(out->value);
                free(out->message);
                out->message = NULL;
                out->sqlstate[0] = '\0';
                out->value = PQgetisnull(res, r, 1) ? NULL : cd__db_strdup(PQgetvalue(res, r, 1));
                out->rows = strtoll(PQgetvalue(res, r, 2), NULL, 10);
                out->rc = 0;
                out->replayed = true;
                out->doubt_txid = 0;
                item->state = S_REPLAYED;
                item->final = true;
                self->stats.replayed++;
            }
        }
        break;
    case Q_STMT: {
        s_item_t *item = &self->items[q->arg];
        if (ok) {
            cd_batch_outcome_t *out = &item->req->out;
            free(out->value);
            out->value = NULL;
            if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0 &&
                !PQgetisnull(res, 0, 0)) {
                out->value = cd__db_strdup(PQgetvalue(res, 0, 0));
            }
            const char *tuples = PQcmdTuples(res);
            out->rows = *tuples ? strtoll(tuples, NULL, 10) : 0;
            item->state = S_OK;
            return R_OK;
        }
        s_set_round_error(self, res);
        self->first_error_item = q->arg;
        return R_FAILED;
    }
    case Q_RECORD:
        if (!ok) {
            s_set_round_error(self, res);
            return strcmp(self->err_sqlstate, "23505") == 0 ? R_CONFLICT : R_FATAL;
        }
        return R_OK;
    case Q_COMMIT:
        //  COMMIT of a failed transaction "succeeds" with the tag ROLLBACK.
        if (!ok || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
            if (!ok) {
                s_set_round_error(self, res);
            }
            return R_FATAL;
        }
        return R_OK;
    case Q_SAVEPOINT:
    case Q_RELEASE:
        if (!ok) {
            s_set_round_error(self, res);
            self->first_error_item = q->arg;
            return R_FAILED;
        }
        return R_OK;
    default:
        break;
    }
    if (!ok) {
        s_set_round_error(self, res);
        return R_FATAL;
    }
    return R_OK;
}

//  Queues the lookup of every live item's id.
static s_round_t
s_send_lookup(cd_batch_t *self, size_t n)
{
    s_buf_reset(&self->arr_ids);
    s_buf_addc(&self->arr_ids, '{');
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (s_live(&self->items[i])) {
            if (count++ > 0) {
                s_buf_addc(&self->arr_ids, ',');
            }
            s_buf_add_uuid(&self->arr_ids, self->items[i].req->id);
        }
    }
    s_buf_addc(&self->arr_ids, '}');
    const char *params[1] = {self->arr_ids.data};
    return s_pipe_send(self, Q_LOOKUP, 0, NULL, S_LOOKUP, 1, params);
}

//  Queues BEGIN and the txid capture. With lookup, the ids are looked up
//  in the same round, ended here, so that replays are known before any
//  statement is sent. Leaves a pipeline open: with BEGIN queued, or empty
//  after a lookup round.
static s_round_t
s_send_begin(cd_batch_t *self, size_t n, bool lookup)
{
    self->txid = 0;
    self->commit_sent = false;
    if (s_pipe_begin(self) != R_OK ||
        s_pipe_send(self, Q_BEGIN, 0, NULL, S_BEGIN, 0, NULL) != R_OK ||
        s_pipe_send(self, Q_TXID, 0, NULL, S_TXID, 0, NULL) != R_OK) {
        return R_LOST;
    }
    if (!lookup) {
        return R_OK;
    }
    if (s_send_lookup(self, n) != R_OK) {
        return R_LOST;
    }
    s_round_t r = s_pipe_end(self);
    if (r != R_OK) {
        return r;
    }
    return s_pipe_begin(self);
}

//  Requests the last round records: those applied (statements, and table
//  rows of the slow attempt) and the table rows the round itself copies.
static bool
s_recorded(const cd_batch_t *self, const s_item_t *item)
{
    return s_live(item) && (item->state == S_OK || (item->state == S_PENDING &&
                                                    self->targets[item->req->target].is_table));
}

//  COPY data of the records: id, result, rows.
static size_t
s_build_copy_records(cd_batch_t *self, size_t n)
{
    s_buf_reset(&self->copy);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        const s_item_t *item = &self->items[i];
        if (!s_recorded(self, item)) {
            continue;
        }
        s_buf_add_uuid(&self->copy, item->req->id);
        s_buf_addc(&self->copy, '\t');
        const char *value = item->state == S_OK ? item->req->out.value : NULL;
        if (value) {
            s_buf_add_copy_value(&self->copy, value, strlen(value));
        } else {
            s_buf_add(&self->copy, "\\N", 2);
        }
        char rows[32];
        int len = snprintf(rows, sizeof rows, "\t%lld\n",
                           (long long)(item->state == S_OK ? item->req->out.rows : 1));
        s_buf_add(&self->copy, rows, (size_t)len);
        count++;
    }
    return count;
}

//  COPY data of the pending rows of one table target.
static size_t
s_build_copy_rows(cd_batch_t *self, size_t n, int target)
{
    const s_target_t *t = &self->targets[target];
    s_buf_reset(&self->copy);
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) {
        const s_item_t *item = &self->items[i];
        if (!s_live(item) || item->state != S_PENDING || item->req->target != target) {
            continue;
        }
        for (int c = 0; c < t->nparams; c++) {
            if (c > 0) {
                s_buf_addc(&self->copy, '\t');
            }
            const char *v = item->req->values[c];
            if (v) {
                s_buf_add_copy_value(&self->copy, v,
                                     item->req->lengths ? item->req->lengths[c] : strlen(v));
            } else {
                s_buf_add(&self->copy, "\\N", 2);
            }
        }
        s_buf_addc(&self->copy, '\n');
        rows++;
    }
    return rows;
}

//  Sends the COPY data in self->copy and ends it.
static s_round_t
s_put_copy(cd_batch_t *self)
{
    for (size_t off = 0; off < self->copy.len;) {
        size_t chunk = self->copy.len - off < S_COPY_CHUNK ? self->copy.len - off : S_COPY_CHUNK;
        int put = PQputCopyData(self->conn, self->copy.data + off, (int)chunk);
        if (put < 0) {
            return s_lost(self, PQerrorMessage(self->conn));
        }
        if (put == 0) {
            //  libpq's buffer is full: let the server drain it.
            if (s_wait(self, true) != R_OK || s_flush(self) != R_OK) {
                return R_LOST;
            }
            continue;
        }
        off += chunk;
    }
    while (true) {
        int end = PQputCopyEnd(self->conn, NULL);
        if (end > 0) {
            return s_flush(self);
        }
        if (end < 0) {
            return s_lost(self, PQerrorMessage(self->conn));
        }
        if (s_wait(self, true) != R_OK) {
            return R_LOST;
        }
    }
}

//  Waits for the next result of a simple query; *res is NULL when the
//  query string is done.
static s_round_t
s_get(cd_batch_t *self, PGresult **res)
{
    *res = NULL;
    if (s_flush(self) != R_OK) {
        return R_LOST;
    }
    while (PQisBusy(self->conn)) {
        if (s_wait(self, false) != R_OK) {
            return R_LOST;
        }
    }
    *res = PQgetResult(self->conn);
    return R_OK;
}

//  The last round of an attempt, one query string in the simple protocol:
//
//      [BEGIN; SELECT pg_current_xact_id();]          unless already begun
//      COPY persist_requests (id, result, rows) FROM STDIN;
//      COPY <table> (<columns>) FROM STDIN; ...        each table with rows
//      COMMIT
//
//  The server runs the statements in order and asks for each COPY's data
//  when it gets there, so the round costs one round trip whatever it holds.
//  The string holds no values (they travel as COPY data). An error skips the
//  rest of the string (COMMIT included) and leaves the transaction failed.
static s_round_t
s_final_round(cd_batch_t *self, size_t n, bool begun)
{
    int copies[CD_BATCH_MAX_TARGETS + 1]; //  -1: the records, else a table target
    int n_copies = 0;
    s_buf_t *sql = &self->sql;
    s_buf_reset(sql);
    if (!begun) {
        self->txid = 0;
        s_buf_add(sql, "BEGIN; SELECT pg_current_xact_id(); ", 36);
    }
    size_t records = 0;
    for (size_t i = 0; i < n; i++) {
        records += s_recorded(self, &self->items[i]);
    }
    if (records > 0) {
        const char *copy = "COPY persist_requests (id, result, rows) FROM STDIN; ";
        s_buf_add(sql, copy, strlen(copy));
        copies[n_copies++] = -1;
    }
    for (size_t t = 0; t < self->n_targets; t++) {
        if (!self->targets[t].is_table) {
            continue;
        }
        bool any = false;
        for (size_t i = 0; i < n && !any; i++) {
            const s_item_t *item = &self->items[i];
            any = s_live(item) && item->state == S_PENDING && item->req->target == (int)t;
        }
        if (any) {
            s_buf_add(sql, self->targets[t].copy_sql, strlen(self->targets[t].copy_sql));
            s_buf_add(sql, "; ", 2);
            copies[n_copies++] = (int)t;
        }
    }
    s_buf_add(sql, "COMMIT", 6);
    //  The server reaches COMMIT only after the last COPY's data: until that
    //  is sent, a lost connection means nothing was committed.
    self->commit_sent = n_copies == 0;
    if (!PQsendQuery(self->conn, sql->data)) {
        return s_lost(self, PQerrorMessage(self->conn));
    }
    s_round_t outcome = R_OK;
    int next_copy = 0, in_copy = -2; //  -2: not in a COPY
    bool committed = false;
    while (true) {
        PGresult *res = NULL;
        if (s_get(self, &res) != R_OK) {
            return R_LOST;
        }
        if (!res) {
            break;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN) {
            PQclear(res);
            if (next_copy >= n_copies) {
                return s_lost(self, "unexpected COPY");
            }
            in_copy = copies[next_copy++];
            if (in_copy == -1) {
                s_build_copy_records(self, n);
            } else {
                s_build_copy_rows(self, n, in_copy);
            }
            self->commit_sent = self->commit_sent || next_copy == n_copies;
            if (s_put_copy(self) != R_OK) {
                return R_LOST;
            }
            continue;
        }
        if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 1) {
            self->txid = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        } else if (st == PGRES_COMMAND_OK) {
            const char *tag = PQcmdStatus(res);
            committed = committed || strcmp(tag, "COMMIT") == 0;
            if (strncmp(tag, "COPY", 4) == 0) {
                in_copy = -2;
            }
        } else if (outcome == R_OK) {
            bool lost = s_is_conn_error(self, res);
            s_set_round_error(self, res);
            if (lost) {
                PQclear(res);
                return s_lost(self, self->err_message);
            }
            outcome = in_copy == -1
                          ? (strcmp(self->err_sqlstate, "23505") == 0 ? R_CONFLICT : R_FATAL)
                      : in_copy >= 0 ? R_FAILED
                                     : R_FATAL;
        }
        PQclear(res);
    }
    if (outcome == R_OK && !committed) {
        free(self->err_message);
        self->err_message = cd__db_strdup("COMMIT did not complete");
        self->err_sqlstate[0] = '\0';
        outcome = R_FATAL;
    }
    if (outcome == R_OK) {
        for (size_t i = 0; i < n; i++) {
            s_item_t *item = &self->items[i];
            if (s_live(item) && item->state == S_PENDING &&
                self->targets[item->req->target].is_table) {
                item->state = S_OK;
                item->req->out.rows = 1;
            }
        }
    }
    return outcome;
}

//  A few table rows and nothing else: one pipeline round of prepared
//  statements, [BEGIN, txid, (INSERT row, INSERT record) per row, COMMIT],
//  cheaper than the final round's two COPY set-ups for a lone writer.
//  COMMIT is queued with the rest, so a connection lost anywhere in the
//  round leaves the rows in doubt (resolved by the lookup, as always).
static s_round_t
s_attempt_small(cd_batch_t *self, size_t n)
{
    if (s_send_begin(self, n, false) != R_OK) {
        return R_LOST;
    }
    s_buf_reset(&self->idtext);
    s_buf_reserve(&self->idtext, n * 37);
    for (size_t i = 0; i < n; i++) {
        s_item_t *item = &self->items[i];
        if (!s_live(item)) {
            continue;
        }
        //  Reserved above: the buffer does not move while texts are taken.
        const char *id = self->idtext.data + self->idtext.len;
        s_buf_add_uuid(&self->idtext, item->req->id);
        s_buf_addc(&self->idtext, '\0');
        const s_target_t *t = &self->targets[item->req->target];
        if (s_pipe_send(self, Q_STMT, (int)i, NULL, t->stmt, item->req->nparams,
                        item->req->values) != R_OK ||
            s_pipe_send(self, Q_RECORD, (int)i, NULL, S_RECORD, 1, &id) != R_OK) {
            return R_LOST;
        }
    }
    self->commit_sent = true;
    if (s_pipe_send(self, Q_COMMIT, 0, NULL, S_COMMIT, 0, NULL) != R_OK) {
        return R_LOST;
    }
    return s_pipe_end(self);
}

//  The fast attempt: no savepoints. Statements (if any) go in one pipeline
//  round, then everything else in the final round.
static s_round_t
s_attempt_fast(cd_batch_t *self, size_t n, bool lookup)
{
    bool any_stmt = false;
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) {
        const s_item_t *item = &self->items[i];
        any_stmt = any_stmt || (s_live(item) && !self->targets[item->req->target].is_table);
        rows += s_live(item);
    }
    self->commit_sent = false;
    if (!any_stmt && !lookup && rows <= S_SMALL) {
        return s_attempt_small(self, n);
    }
    if (!any_stmt && !lookup) {
        return s_final_round(self, n, false);
    }
    s_round_t r = s_send_begin(self, n, lookup);
    if (r != R_OK) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        s_item_t *item = &self->items[i];
        if (!s_live(item) || item->state != S_PENDING) {
            continue;
        }
        const s_target_t *t = &self->targets[item->req->target];
        if (!t->is_table && s_pipe_send(self, Q_STMT, (int)i, NULL, t->stmt, item->req->nparams,
                                        item->req->values) != R_OK) {
            return R_LOST;
        }
    }
    r = s_pipe_end(self);
    if (r != R_OK) {
        return r;
    }
    return s_final_round(self, n, true);
}

//  The slow attempt: lookup, then a savepoint around each request.
static s_round_t
s_attempt_slow(cd_batch_t *self, size_t n)
{
    s_round_t r = s_send_begin(self, n, true);
    if (r != R_OK) {
        return r;
    }
    //  A pipeline is open (empty): the first window goes into it.
    bool open = true;
    size_t next = 0;
    bool rollback_to = false;
    while (true) {
        while (next < n && (!s_live(&self->items[next]) || self->items[next].state != S_PENDING)) {
            next++;
        }
        if (next >= n) {
            break;
        }
        if (!open && s_pipe_begin(self) != R_OK) {
            return R_LOST;
        }
        open = false;
        if (rollback_to && s_pipe_send(self, Q_ROLLBACK_TO, 0, "ROLLBACK TO SAVEPOINT cd_r", NULL,
                                       0, NULL) != R_OK) {
            return R_LOST;
        }
        rollback_to = false;
        size_t queued = 0;
        for (size_t i = next; i < n && queued < S_WINDOW; i++) {
            s_item_t *item = &self->items[i];
            if (!s_live(item) || item->state != S_PENDING) {
                continue;
            }
            const s_target_t *t = &self->targets[item->req->target];
            if (s_pipe_send(self, Q_SAVEPOINT, (int)i, "SAVEPOINT cd_r", NULL, 0, NULL) != R_OK ||
                s_pipe_send(self, Q_STMT, (int)i, NULL, t->stmt, item->req->nparams,
                            item->req->values) != R_OK ||
                s_pipe_send(self, Q_RELEASE, (int)i, "RELEASE SAVEPOINT cd_r", NULL, 0, NULL) !=
                    R_OK) {
                return R_LOST;
            }
            queued++;
        }
        self->first_error_item = -1;
        r = s_pipe_end(self);
        if (r == R_LOST || r == R_FATAL) {
            return r;
        }
        if (r == R_FAILED && self->first_error_item >= 0) {
            s_item_t *bad = &self->items[self->first_error_item];
            //  Its statement may have succeeded before its RELEASE failed.
            bad->req->out.rows = 0;
            s_fail_item(bad, CD_EDB, self->err_sqlstate, self->err_message);
            rollback_to = true;
            next = (size_t)self->first_error_item + 1;
        }
        //  Items of the window after the failure are still S_PENDING: the
        //  next window picks them up.
    }
    if (open && !PQexitPipelineMode(self->conn)) {
        return s_lost(self, "pipeline out of step");
    }
    if (rollback_to) {
        //  The last window ended in a failure: restore the transaction.
        if (s_pipe_begin(self) != R_OK ||
            s_pipe_send(self, Q_ROLLBACK_TO, 0, "ROLLBACK TO SAVEPOINT cd_r", NULL, 0, NULL) !=
                R_OK) {
            return R_LOST;
        }
        r = s_pipe_end(self);
        if (r != R_OK) {
            return r;
        }
    }
    return s_final_round(self, n, true);
}

//  --- the run ----------------------------------------------------------------------------

static int
s_cmp_order(const void *a, const void *b, void *arg)
{
    const cd_batch_t *self = (const cd_batch_t *)arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = memcmp(self->items[x].req->id, self->items[y].req->id, CD_BATCH_ID_SIZE);
    return c ? c : (x < y ? -1 : x > y);
}

static size_t
s_value_len(const cd_batch_req_t *req, int i)
{
    return req->lengths ? req->lengths[i] : strlen(req->values[i]);
}

//  Checks a request before anything is sent. Returns false (and fails the
//  item) if it cannot run.
static bool
s_validate(cd_batch_t *self, s_item_t *item)
{
    const cd_batch_req_t *req = item->req;
    char text[256];
    if (req->target < 0 || (size_t)req->target >= self->n_targets) {
        s_fail_item(item, CD_EINVAL, "", "unknown write target");
        return false;
    }
    const s_target_t *t = &self->targets[req->target];
    if (t->prep_error) {
        snprintf(text, sizeof text, "%s '%s' was rejected by the database: %s",
                 t->is_table ? "table" : "statement", t->name, t->prep_error);
        s_fail_item(item, CD_EDB, t->prep_sqlstate, text);
        return false;
    }
    if (req->nparams != t->nparams || (req->nparams > 0 && !req->values)) {
        snprintf(text, sizeof text, "%s '%s' takes %d parameters, the request has %d",
                 t->is_table ? "table" : "statement", t->name, t->nparams, req->nparams);
        s_fail_item(item, CD_EINVAL, "", text);
        return false;
    }
    for (int i = 0; i < req->nparams; i++) {
        const char *v = req->values[i];
        if (!v) {
            continue;
        }
        size_t len = s_value_len(req, i);
        if (len > self->max_value) {
            snprintf(text, sizeof text,
                     "parameter %d of '%s' is %zu bytes, over the limit of %zu bytes", i + 1,
                     t->name, len, self->max_value);
            s_fail_item(item, CD_ETOOBIG, "54000", text);
            return false;
        }
        if (v[len] != '\0') {
            snprintf(text, sizeof text, "parameter %d of '%s' is not NUL-terminated at its length",
                     i + 1, t->name);
            s_fail_item(item, CD_EINVAL, "", text);
            return false;
        }
        size_t bad = s_utf8_check((const uint8_t *)v, len);
        if (bad < len) {
            if (v[bad] == '\0') {
                snprintf(text, sizeof text,
                         "parameter %d of '%s' contains a NUL byte at offset %zu", i + 1, t->name,
                         bad);
            } else {
                snprintf(text, sizeof text,
                         "parameter %d of '%s' is not valid UTF-8 (byte 0x%02x at offset %zu)",
                         i + 1, t->name, (unsigned)(uint8_t)v[bad], bad);
            }
            s_fail_item(item, CD_EINVAL, "22021", text);
            return false;
        }
    }
    return true;
}

//  Asks what became of the in-doubt transactions of the live items. Returns
//  R_OK with *lookup set unless every one of them is known aborted (then
//  their doubt is cleared: nothing of theirs was committed).
//
//  The txid is only a hint; the ids decide. A transaction whose COMMIT
//  record reached the disk has its xid durably assigned, so "aborted" is
//  the truth for it. But when a crash loses the WAL of an uncommitted
//  transaction, the server may not know the xid at all ("in the future":
//  unknown) or may even hand it to a new transaction later ("committed",
//  but someone else's). Both only trigger the lookup by id, which is exact.
static s_round_t
s_resolve_doubt(cd_batch_t *self, size_t n, bool *lookup)
{
    *lookup = false;
    int64_t seen[8];
    size_t n_seen = 0;
    for (size_t i = 0; i < n; i++) {
        const s_item_t *item = &self->items[i];
        int64_t txid = item->req->out.doubt_txid;
        if (!s_live(item) || txid == 0) {
            continue;
        }
        bool known = false;
        for (size_t k = 0; k < n_seen; k++) {
            known = known || seen[k] == txid;
        }
        if (known) {
            continue;
        }
        if (n_seen == sizeof seen / sizeof seen[0]) {
            *lookup = true;
            return R_OK;
        }
        seen[n_seen++] = txid;
        char param[24];
        snprintf(param, sizeof param, "%lld", (long long)txid);
        const char *params[1] = {param};
        PGresult *res = NULL;
        if (s_exec(self, NULL, S_XACT, 1, params, &res) != R_OK) {
            return R_LOST;
        }
        bool answered = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                        !PQgetisnull(res, 0, 0);
        const char *status = answered ? PQgetvalue(res, 0, 0) : "unknown";
        char *why = answered ? NULL : s_oneline(PQresultErrorMessage(res));
        cd_log_info("persist", "in-doubt commit: looked up its transaction", "{s:I, s:s, s:s}",
                    "txid", (long long)txid, "status", status, "why", why ? why : "");
        free(why);
        if (strcmp(status, "aborted") != 0) {
            *lookup = true;
        }
        PQclear(res);
    }
    if (!*lookup) {
        for (size_t i = 0; i < n; i++) {
            if (s_live(&self->items[i])) {
                self->items[i].req->out.doubt_txid = 0;
            }
        }
    }
    return R_OK;
}

//  Fails every live item that has no outcome yet.
static void
s_fail_rest(cd_batch_t *self, size_t n, int rc, const char *sqlstate, const char *message)
{
    for (size_t i = 0; i < n; i++) {
        s_item_t *item = &self->items[i];
        if (s_live(item)) {
            int64_t doubt = item->req->out.doubt_txid;
            s_fail_item(item, rc, sqlstate, message);
            item->req->out.doubt_txid = rc == CD_ECONN ? doubt : 0;
            item->final = true;
            if (rc != CD_ECONN) {
                self->stats.failed++;
            }
        }
    }
}

//  Later requests with an id already in the batch get the first one's
//  outcome.
static void
s_copy_duplicates(cd_batch_t *self, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s_item_t *item = &self->items[i];
        if (item->dup_of < 0) {
            continue;
        }
        const cd_batch_outcome_t *first = &self->items[item->dup_of].req->out;
        cd_batch_outcome_t *out = &item->req->out;
        cd_batch_outcome_clear(out);
        out->rc = first->rc;
        out->replayed = first->rc == 0;
        out->rows = first->rows;
        out->value = first->value ? cd__db_strdup(first->value) : NULL;
        memcpy(out->sqlstate, first->sqlstate, sizeof out->sqlstate);
        out->message = first->message ? cd__db_strdup(first->message) : NULL;
        out->doubt_txid = first->doubt_txid;
    }
}

static void
s_prepare_items(cd_batch_t *self, cd_batch_req_t *reqs, size_t n)
{
    if (n > self->cap_items) {
        self->items =
            cd__db_checked(realloc(self->items, n * sizeof(s_item_t)), __FILE__, __LINE__);
        self->order = cd__db_checked(realloc(self->order, n * sizeof(size_t)), __FILE__, __LINE__);
        self->cap_items = n;
    }
    self->n_items = n;
    for (size_t i = 0; i < n; i++) {
        int64_t doubt = reqs[i].out.doubt_txid;
        cd_batch_outcome_clear(&reqs[i].out);
        reqs[i].out.doubt_txid = doubt;
        self->items[i] = (s_item_t){&reqs[i], -1, false, false, S_PENDING};
        self->order[i] = i;
    }
    for (size_t i = 0; i < n; i++) {
        if (!s_validate(self, &self->items[i])) {
            self->items[i].final = true;
            self->stats.failed++;
        }
    }
    qsort_r(self->order, n, sizeof(size_t), s_cmp_order, self);
    for (size_t k = 1; k < n; k++) {
        s_item_t *prev = &self->items[self->order[k - 1]];
        s_item_t *item = &self->items[self->order[k]];
        if (memcmp(prev->req->id, item->req->id, CD_BATCH_ID_SIZE) == 0) {
            item->dup_of = prev->dup_of >= 0 ? prev->dup_of : (int)self->order[k - 1];
        }
    }
}

int
cd_batch_run(cd_batch_t *self, cd_batch_req_t *reqs, size_t n)
{
    s_prepare_items(self, reqs, n);
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        live += s_live(&self->items[i]);
    }
    int rc = 0;
    if (live == 0) {
        goto done;
    }
    if (!self->conn) {
        s_fail_rest(self, n, CD_ECONN, "08006", "not connected to the database");
        rc = CD_ECONN;
        goto done;
    }
    self->deadline_us = s_mono_us() + (int64_t)self->io_timeout_ms * 1000;
    bool lookup = false;
    if (s_resolve_doubt(self, n, &lookup) != R_OK) {
        goto lost;
    }
    bool slow = false;
    for (int attempt = 0; attempt < S_MAX_ATTEMPTS; attempt++) {
        for (size_t i = 0; i < n; i++) {
            s_item_t *item = &self->items[i];
            if (s_live(item) && item->fast_failed) {
                //  Keeps its error; not run again (unless the lookup finds
                //  it was a replay all along).
                item->state = S_FAILED;
            } else if (s_live(item)) {
                int64_t doubt = item->req->out.doubt_txid;
                cd_batch_outcome_clear(&item->req->out);
                item->req->out.doubt_txid = doubt;
                item->state = S_PENDING;
            }
        }
        self->first_error_item = -1;
        s_round_t r = slow ? s_attempt_slow(self, n) : s_attempt_fast(self, n, lookup);
        if (r == R_OK) {
            self->stats.commits++;
            for (size_t i = 0; i < n; i++) {
                s_item_t *item = &self->items[i];
                if (!s_live(item)) {
                    continue;
                }
                item->final = true;
                item->req->out.doubt_txid = 0;
                if (item->state == S_OK) {
                    item->req->out.rc = 0;
                    self->stats.applied++;
                } else if (item->state == S_FAILED) {
                    self->stats.failed++;
                } else {
                    s_fail_item(item, CD_ESTATE, "", "request was not executed");
                    self->stats.failed++;
                }
            }
            goto done;
        }
        if (r == R_LOST) {
            goto lost;
        }
        //  Nothing of this attempt stays: roll it back and decide.
        self->commit_sent = false;
        if (s_rollback(self) != R_OK) {
            goto lost;
        }
        if (r == R_FAILED) {
            cd_log_debug("persist", "statement failed, batch runs again with savepoints",
                         "{s:s, s:s}", "sqlstate", self->err_sqlstate, "error",
                         self->err_message ? self->err_message : "");
            //  The first failure of the fast attempt ran after what the
            //  slow attempt runs before it, so it would fail the same way:
            //  it keeps its error and is not run (and waited for) again.
            //  Not final yet: the slow attempt's lookup may find that it
            //  is a replay of a committed request (which is why it failed).
            if (!slow && self->first_error_item >= 0) {
                s_item_t *bad = &self->items[self->first_error_item];
                s_fail_item(bad, CD_EDB, self->err_sqlstate, self->err_message);
                bad->fast_failed = true;
            }
            if (!slow) {
                self->stats.slow_batches++;
            }
            slow = true;
        } else if (r == R_CONFLICT) {
            self->stats.conflicts++;
            lookup = true;
        } else {
            char *text = cd__db_printf("batch failed: %s",
                                       self->err_message ? self->err_message : "unknown error");
            cd_log_warn("persist", "batch failed", "{s:s, s:s}", "sqlstate", self->err_sqlstate,
                        "error", text);
            s_fail_rest(self, n, CD_EDB, self->err_sqlstate, text);
            free(text);
            goto done;
        }
    }
    {
        char *text = cd__db_printf("batch gave up after %d attempts: %s", S_MAX_ATTEMPTS,
                                   self->err_message ? self->err_message : "unknown error");
        s_fail_rest(self, n, CD_EDB, self->err_sqlstate, text);
        free(text);
    }
    goto done;

lost:
    //  Whatever this connection did is either committed (COMMIT went out:
    //  in doubt, resolved by the next run) or rolled back by the server.
    if (self->commit_sent) {
        self->stats.in_doubt++;
        for (size_t i = 0; i < n; i++) {
            if (s_live(&self->items[i])) {
                self->items[i].req->out.doubt_txid = self->txid;
            }
        }
    }
    {
        char *text = cd__db_printf("database connection lost: %s", self->last_error);
        s_fail_rest(self, n, CD_ECONN, "08006", text);
        free(text);
    }
    self->commit_sent = false;
    rc = CD_ECONN;

done:
    s_copy_duplicates(self, n);
    return rc;
}

//  --- connection -------------------------------------------------------------------------

static const struct {
    const char *name;
    const char *sql;
    int nparams;
} s_internal[] = {
    //  Prepared too, so a small transaction is parsed and planned never.
    {S_BEGIN, "BEGIN", 0},
    {S_TXID, "SELECT pg_current_xact_id()", 0},
    {S_COMMIT, "COMMIT", 0},
    {S_LOOKUP, "SELECT id::text, result, rows FROM persist_requests WHERE id = ANY($1::uuid[])", 1},
    {S_RECORD, "INSERT INTO persist_requests (id, rows) VALUES ($1::uuid, 1)", 1},
    {S_XACT, "SELECT pg_xact_status($1::xid8)::text", 1},
    {S_PRUNE,
     "DELETE FROM persist_requests WHERE ctid = ANY(ARRAY("
     "SELECT ctid FROM persist_requests WHERE committed_at < now() - make_interval(secs => "
     "$1::int) "
     "LIMIT $2::int))",
     2},
};

//  Prepares one statement outside pipeline mode. On a server error returns
//  R_FATAL with err_sqlstate/err_message set.
static s_round_t
s_prepare(cd_batch_t *self, const char *name, const char *sql, int nparams)
{
    if (!PQsendPrepare(self->conn, name, sql, nparams, NULL)) {
        return s_lost(self, PQerrorMessage(self->conn));
    }
    PGresult *res = NULL;
    if (s_next(self, &res) != R_OK) {
        return R_LOST;
    }
    s_round_t r = R_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        bool lost = s_is_conn_error(self, res);
        s_set_round_error(self, res);
        r = lost ? s_lost(self, self->err_message) : R_FATAL;
    }
    PQclear(res);
    if (r == R_LOST) {
        return R_LOST;
    }
    return s_end(self) == R_OK ? r : R_LOST;
}

static void
s_set_errmsg(char **errmsg, char *text)
{
    if (errmsg) {
        *errmsg = text;
    } else {
        free(text);
    }
}

//  The non-blocking connect, bounded by connect_timeout_ms.
static int
s_open(cd_batch_t *self, char **errmsg)
{
    //  As cd_db_connect: conninfo's own options win over ours.
    const char *const keys[] = {"options", "dbname", "fallback_application_name", "client_encoding",
                                NULL};
    const char *const values[] = {CD_DB_SESSION_OPTIONS, self->conninfo, "cadred-persist", "UTF8",
                                  NULL};
    PGconn *conn = cd__db_checked(PQconnectStartParams(keys, values, 1), __FILE__, __LINE__);
    int64_t deadline = s_mono_us() + (int64_t)self->connect_timeout_ms * 1000;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    const char *failure = NULL;
    while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            break;
        }
        int64_t left = deadline - s_mono_us();
        if (left <= 0) {
            failure = "timed out";
            break;
        }
        struct pollfd pfd = {PQsocket(conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int ready = poll(&pfd, 1, (int)((left + 999) / 1000));
        if (ready < 0 && errno != EINTR) {
            failure = strerror(errno);
            break;
        }
        if (ready > 0) {
            st = PQconnectPoll(conn);
        }
    }
    if (failure || PQstatus(conn) != CONNECTION_OK) {
        char *line = s_oneline(failure ? failure : PQerrorMessage(conn));
        snprintf(self->last_error, sizeof self->last_error, "could not connect: %s", line);
        s_set_errmsg(errmsg, cd__db_printf("could not connect to PostgreSQL: %s", line));
        free(line);
        PQfinish(conn);
        return CD_ECONN;
    }
    if (PQsetnonblocking(conn, 1) != 0) {
        s_set_errmsg(errmsg, cd__db_strdup("could not make the connection non-blocking"));
        PQfinish(conn);
        return CD_ECONN;
    }
    PQsetNoticeProcessor(conn, s_notice, NULL);
    self->conn = conn;
    return 0;
}

int
cd_batch_connect(cd_batch_t *self, char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    s_close(self);
    int rc = s_open(self, errmsg);
    if (rc != 0) {
        return rc;
    }
    self->deadline_us = s_mono_us() + (int64_t)self->io_timeout_ms * 1000;
    //  One slow statement should fail alone, well before the batch's bound.
    char set[64];
    snprintf(set, sizeof set, "SET statement_timeout = %d", self->io_timeout_ms / 2);
    PGresult *res = NULL;
    if (s_exec(self, set, NULL, 0, NULL, &res) != R_OK) {
        goto lost;
    }
    PQclear(res);
    for (size_t i = 0; i < sizeof s_internal / sizeof s_internal[0]; i++) {
        s_round_t r = s_prepare(self, s_internal[i].name, s_internal[i].sql, s_internal[i].nparams);
        if (r == R_LOST) {
            goto lost;
        }
        if (r != R_OK) {
            bool missing = strcmp(self->err_sqlstate, "42P01") == 0;
            char *text = missing ? cd__db_printf("table persist_requests is missing: the database "
                                                 "lacks migration 0003_persist (%s)",
                                                 self->err_message)
                                 : cd__db_printf("cannot prepare %s: %s", s_internal[i].name,
                                                 self->err_message);
            snprintf(self->last_error, sizeof self->last_error, "%s", text);
            s_set_errmsg(errmsg, text);
            s_close(self);
            return CD_EDB;
        }
    }
    for (size_t t = 0; t < self->n_targets; t++) {
        s_target_t *target = &self->targets[t];
        free(target->prep_error);
        target->prep_error = NULL;
        target->prep_sqlstate[0] = '\0';
        s_round_t r = s_prepare(self, target->stmt, target->sql, target->nparams);
        if (r == R_LOST) {
            goto lost;
        }
        if (r != R_OK) {
            target->prep_error = cd__db_strdup(self->err_message);
            memcpy(target->prep_sqlstate, self->err_sqlstate, sizeof target->prep_sqlstate);
            cd_log_error("persist", "write target rejected by the database", "{s:s, s:s, s:s}",
                         "target", target->name, "sqlstate", self->err_sqlstate, "error",
                         self->err_message);
        }
    }
    self->stats.connects++;
    self->last_error[0] = '\0';
    return 0;

lost:
    s_set_errmsg(errmsg, cd__db_printf("connection lost while preparing: %s", self->last_error));
    return CD_ECONN;
}

bool
cd_batch_connected(const cd_batch_t *self)
{
    return self->conn && PQstatus(self->conn) == CONNECTION_OK;
}

void
cd_batch_disconnect(cd_batch_t *self)
{
    s_close(self);
}

int
cd_batch_prune(cd_batch_t *self, cd_batch_prune_t what, int max_age_s, int limit, int64_t *deleted)
{
    //  Retention runs every few minutes: its statements are sent as text,
    //  not prepared at connect (a database made for persist alone has no
    //  events table). Oldest first: what retention leaves of the event log
    //  is a suffix by id, so a stream resumed from a deleted id goes on at
    //  the oldest kept.
    static const char *const sqls[CD_BATCH_PRUNE_COUNT_] = {
        NULL,
        "DELETE FROM events WHERE id = ANY(ARRAY(SELECT id FROM events"
        " WHERE ts < now() - make_interval(secs => $1::int) ORDER BY id LIMIT $2::int))",
        "DELETE FROM stats_history WHERE id = ANY(ARRAY(SELECT id FROM stats_history"
        " WHERE ts < now() - make_interval(secs => $1::int) ORDER BY ts, id LIMIT $2::int))"};
    static const char *const tables[CD_BATCH_PRUNE_COUNT_] = {"request records", "events",
                                                              "stats history"};
    if (deleted) {
        *deleted = 0;
    }
    if ((unsigned)what >= CD_BATCH_PRUNE_COUNT_) {
        return CD_EINVAL;
    }
    if (!self->conn) {
        return CD_ECONN;
    }
    self->deadline_us = s_mono_us() + (int64_t)self->io_timeout_ms * 1000;
    char age[24], lim[24];
    snprintf(age, sizeof age, "%d", max_age_s);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *params[2] = {age, lim};
    PGresult *res = NULL;
    if (s_exec(self, sqls[what], sqls[what] ? NULL : S_PRUNE, 2, params, &res) != R_OK) {
        return CD_ECONN;
    }
    int rc = 0;
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        if (deleted) {
            *deleted = strtoll(PQcmdTuples(res), NULL, 10);
        }
    } else {
        s_set_round_error(self, res);
        cd_log_warn("persist", "pruning failed", "{s:s, s:s, s:s}", "table", tables[what],
                    "sqlstate", self->err_sqlstate, "error", self->err_message);
        rc = CD_EDB;
    }
    PQclear(res);
    return rc;
}

//  --- lifecycle and targets --------------------------------------------------------------

cd_batch_t *
cd_batch_new(const cd_batch_opts_t *opts)
{
    if (!opts || !opts->conninfo) {
        return NULL;
    }
    cd_batch_t *self = cd__db_calloc(1, sizeof *self);
    self->conninfo = cd__db_strdup(opts->conninfo);
    self->max_value = opts->max_value_bytes ? opts->max_value_bytes : CD_BATCH_DEFAULT_MAX_VALUE;
    self->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                            : CD_BATCH_DEFAULT_CONNECT_TIMEOUT_MS;
    self->io_timeout_ms =
        opts->io_timeout_ms > 0 ? opts->io_timeout_ms : CD_BATCH_DEFAULT_IO_TIMEOUT_MS;
    self->first_error_item = -1;
    return self;
}

void
cd_batch_destroy(cd_batch_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_batch_t *self = *self_p;
    s_close(self);
    for (size_t i = 0; i < self->n_targets; i++) {
        free(self->targets[i].name);
        free(self->targets[i].sql);
        free(self->targets[i].copy_sql);
        free(self->targets[i].prep_error);
    }
    free(self->targets);
    free(self->queue);
    free(self->items);
    free(self->order);
    free(self->copy.data);
    free(self->arr_ids.data);
    free(self->sql.data);
    free(self->idtext.data);
    free(self->err_message);
    free(self->conninfo);
    free(self);
    *self_p = NULL;
}

static int
s_add_target(cd_batch_t *self, const char *name, bool is_table, int nparams, char *sql,
             char *copy_sql)
{
    int rc = 0;
    if (!name || !*name || strlen(name) > CD_BATCH_MAX_NAME || nparams < 0 ||
        nparams > CD_BATCH_MAX_PARAMS) {
        rc = CD_EINVAL;
    } else if (cd_batch_find(self, name, strlen(name)) >= 0) {
        rc = CD_EEXIST;
    } else if (self->n_targets >= CD_BATCH_MAX_TARGETS) {
        rc = CD_ETOOBIG;
    }
    if (rc != 0) {
        free(sql);
        free(copy_sql);
        return rc;
    }
    self->targets = cd__db_checked(
        realloc(self->targets, (self->n_targets + 1) * sizeof(s_target_t)), __FILE__, __LINE__);
    s_target_t *t = &self->targets[self->n_targets];
    *t = (s_target_t){0};
    t->name = cd__db_strdup(name);
    t->is_table = is_table;
    t->nparams = nparams;
    t->sql = sql;
    t->copy_sql = copy_sql;
    snprintf(t->stmt, sizeof t->stmt, "cd_w%zu", self->n_targets);
    return (int)self->n_targets++;
}

int
cd_batch_add_statement(cd_batch_t *self, const char *name, const char *sql, int nparams)
{
    if (!sql) {
        return CD_EINVAL;
    }
    return s_add_target(self, name, false, nparams, cd__db_strdup(sql), NULL);
}

int
cd_batch_add_table(cd_batch_t *self, const char *name, const char *table,
                   const char *const *columns, int ncolumns)
{
    if (!s_ident_ok(table, true) || !columns || ncolumns < 1 || ncolumns > CD_BATCH_MAX_PARAMS) {
        return CD_EINVAL;
    }
    s_buf_t cols = {0}, marks = {0};
    for (int i = 0; i < ncolumns; i++) {
        if (!s_ident_ok(columns[i], false)) {
            free(cols.data);
            free(marks.data);
            return CD_EINVAL;
        }
        char mark[16];
        int len = snprintf(mark, sizeof mark, "%s$%d", i ? ", " : "", i + 1);
        if (i) {
            s_buf_add(&cols, ", ", 2);
        }
        s_buf_add(&cols, columns[i], strlen(columns[i]));
        s_buf_add(&marks, mark, (size_t)len);
    }
    char *insert = cd__db_printf("INSERT INTO %s (%s) VALUES (%s)", table, cols.data, marks.data);
    char *copy = cd__db_printf("COPY %s (%s) FROM STDIN", table, cols.data);
    free(cols.data);
    free(marks.data);
    return s_add_target(self, name, true, ncolumns, insert, copy);
}

int
cd_batch_find(const cd_batch_t *self, const char *name, size_t len)
{
    for (size_t i = 0; i < self->n_targets; i++) {
        if (strlen(self->targets[i].name) == len && memcmp(self->targets[i].name, name, len) == 0) {
            return (int)i;
        }
    }
    return CD_ENOTFOUND;
}

int
cd_batch_target_nparams(const cd_batch_t *self, int target)
{
    return target >= 0 && (size_t)target < self->n_targets ? self->targets[target].nparams : -1;
}

const cd_batch_stats_t *
cd_batch_stats(const cd_batch_t *self)
{
    return &self->stats;
}

const char *
cd_batch_last_error(const cd_batch_t *self)
{
    return self->last_error;
}
