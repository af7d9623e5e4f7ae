/*  cd_q: the helpers under every query module (see cd_q.h).

    Each helper runs one statement through cd_db_query and turns its rows
    into the JSON text the modules hand out: one value, a compare-and-set
    outcome, or a page. A page is built by joining the rows' JSON texts
    with commas inside brackets; PostgreSQL already produced each object,
    so nothing is parsed here.

    Interface: cd_q_page_fini; layer-private cd__q_i64, cd__q_limit,
    cd__q_one, cd__q_cas, cd__q_cas_json, cd__q_page, cd__q_all, cd__q_write,
    cd__q_tx_begin, cd__q_tx_end. */
#include "cd_q.h"
#include "cd_error.h"
#include "db_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
cd_q_page_fini(cd_q_page_t *page)
{
    if (!page) {
        return;
    }
    free(page->items);
    free(page->next_cursor);
    *page = (cd_q_page_t){0};
}

const char *
cd__q_i64(char buf[24], int64_t v)
{
    if (v == CD_Q_NULL) {
        return NULL;
    }
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

int
cd__q_limit(int limit)
{
    if (limit <= 0) {
        return CD_Q_LIMIT_DEFAULT;
    }
    return limit > CD_Q_LIMIT_MAX ? CD_Q_LIMIT_MAX : limit;
}

int
cd__q_one(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out)
{
    return cd_db_query_text(db, sql, nparams, params, out);
}

int
cd__q_cas(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out)
{
    if (out) {
        *out = NULL;
    }
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query(db, sql, nparams, params, &rows);
    if (rc != 0) {
        return rc;
    }
    if (cd_db_rows_count(rows) == 0) {
        rc = CD_ENOTFOUND;
    } else {
        const char *ok = cd_db_rows_get(rows, 0, 0);
        rc = ok && strcmp(ok, "t") == 0 ? 0 : CD_ESTATE;
        const char *json = cd_db_rows_get(rows, 0, 1);
        if (out && json) {
            *out = cd__db_strdup(json);
        }
    }
    cd_db_rows_destroy(&rows);
    return rc;
}

int
cd__q_cas_json(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out)
{
    if (out) {
        *out = NULL;
    }
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query(db, sql, nparams, params, &rows);
    if (rc != 0) {
        return rc;
    }
    if (cd_db_rows_count(rows) == 0) {
        rc = CD_ENOTFOUND;
    } else {
        const char *ok = cd_db_rows_get(rows, 0, 1);
        rc = ok && strcmp(ok, "t") == 0 ? 0 : CD_ESTATE;
        const char *json = cd_db_rows_get(rows, 0, 0);
        if (out && json) {
            *out = cd__db_strdup(json);
        }
    }
    cd_db_rows_destroy(&rows);
    return rc;
}

//  Joins column col of rows [0, n) into a JSON array.
static char *
s_join(const cd_db_rows_t *rows, int n, int col)
{
    size_t len = 3;
    for (int i = 0; i < n; i++) {
        const char *v = cd_db_rows_get(rows, i, col);
        len += (v ? strlen(v) : 4) + 1;
    }
    char *out = cd__db_checked(malloc(len), __FILE__, __LINE__);
    char *p = out;
    *p++ = '[';
    for (int i = 0; i < n; i++) {
        const char *v = cd_db_rows_get(rows, i, col);
        if (!v) {
            v = "null";
        }
        if (i > 0) {
            *p++ = ',';
        }
        size_t vl = strlen(v);
        memcpy(p, v, vl);
        p += vl;
    }
    *p++ = ']';
    *p = '\0';
    return out;
}

int
cd__q_page(cd_db_t *db, const char *sql, int nparams, const char **params, int limit,
           cd_q_page_t *out)
{
    *out = (cd_q_page_t){0};
    limit = cd__q_limit(limit);
    char lim[24];
    params[nparams - 1] = cd__q_i64(lim, (int64_t)limit + 1);
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query(db, sql, nparams, params, &rows);
    if (rc != 0) {
        return rc;
    }
    int n = cd_db_rows_count(rows);
    if (n > limit) {
        n = limit;
        out->next_cursor = cd__db_strdup(cd_db_rows_get(rows, n - 1, 0));
    }
    out->items = s_join(rows, n, 1);
    out->count = n;
    cd_db_rows_destroy(&rows);
    return 0;
}

int
cd__q_all(cd_db_t *db, const char *sql, int nparams, const char *const *params, cd_q_page_t *out)
{
    *out = (cd_q_page_t){0};
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query(db, sql, nparams, params, &rows);
    if (rc != 0) {
        return rc;
    }
    out->count = cd_db_rows_count(rows);
    out->items = s_join(rows, out->count, 0);
    cd_db_rows_destroy(&rows);
    return 0;
}

int
cd__q_write(cd_db_t *db, const char *sql, int nparams, const char *const *params, int64_t *affected)
{
    int64_t n = 0;
    int rc = cd_db_exec_params(db, sql, nparams, params, &n);
    if (affected) {
        *affected = n;
    }
    if (rc == 0 && n == 0) {
        rc = CD_ENOTFOUND;
    }
    return rc;
}

int
cd__q_tx_begin(cd_db_t *db, bool *own)
{
    *own = !cd_db_in_transaction(db);
    return *own ? cd_db_begin(db) : 0;
}

int
cd__q_tx_end(cd_db_t *db, bool own, int rc)
{
    if (!own) {
        return rc;
    }
    if (rc != 0) {
        cd_db_rollback(db);
        return rc;
    }
    return cd_db_commit(db);
}
