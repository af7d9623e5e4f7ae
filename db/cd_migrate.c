/*  cd_migrate: applies the embedded schema migrations (see cd_migrate.h).

    One pass per migration, each pass one transaction:

        BEGIN
        SELECT pg_advisory_xact_lock(<key>)      -- nodes queue up here
        CREATE TABLE IF NOT EXISTS schema_migrations (...)
        newest recorded version > newest known?  -> ROLLBACK, CD_EVERSION
        this version recorded already?          -> COMMIT, next
        <the migration's SQL>
        INSERT INTO schema_migrations ...
        COMMIT

    Deciding "already applied" after taking the lock, inside the same
    transaction that applies, is what makes concurrent starts safe: the
    second node waits on the lock, then sees the first node's row. A final
    pass with no migration left re-checks the version, so the check runs
    even when the list is empty or everything is applied.

    Interface: cd_migrate_run, cd_migrate_run_list, cd_migrate_latest,
    cd_migrate_embedded, cd_migrate_version. */
#include "cd_migrate.h"
#include "cd_error.h"
#include "cd_log.h"
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The advisory lock every migrating session takes: "cadremig" in ASCII,
//  unlikely to collide with locks the application takes for itself.
#define CD_MIGRATE_LOCK_KEY "7161115324986517863"

static const char *const s_create_table = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                          " version int PRIMARY KEY,"
                                          " name text NOT NULL,"
                                          " applied_at timestamptz NOT NULL DEFAULT now())";

static void
s_set_errmsg(char **errmsg, char *text)
{
    if (errmsg) {
        *errmsg = text;
    } else {
        free(text);
    }
}

//  Sets *errmsg to "<what>: <database error>".
static void
s_db_errmsg(cd_db_t *db, char **errmsg, const char *what)
{
    char *err = cd_db_error_format(cd_db_error(db));
    s_set_errmsg(errmsg, cd__db_printf("%s: %s", what, err));
    free(err);
}

static int
s_rollback(cd_db_t *db)
{
    return cd__db_exec_keep_error(db, "ROLLBACK");
}

//  Opens the transaction of one pass and returns the newest recorded
//  version in *newest.
static int
s_begin_pass(cd_db_t *db, int64_t *newest, char **errmsg)
{
    int rc = cd_db_exec(db, "BEGIN", NULL);
    if (rc != 0) {
        s_db_errmsg(db, errmsg, "cannot begin the migration transaction");
        return rc;
    }
    const char *key[] = {CD_MIGRATE_LOCK_KEY};
    rc = cd_db_exec_params(db, "SELECT pg_advisory_xact_lock($1::bigint)", 1, key, NULL);
    if (rc == 0) {
        rc = cd_db_exec_params(db, s_create_table, 0, NULL, NULL);
    }
    if (rc == 0) {
        rc = cd_db_query_int64(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0,
                               NULL, newest);
    }
    if (rc != 0) {
        s_db_errmsg(db, errmsg, "cannot read schema_migrations");
        s_rollback(db);
    }
    return rc;
}

//  Applies m inside the open transaction (unless recorded already) and
//  commits. *applied is set when it ran.
static int
s_apply(cd_db_t *db, const cd_migration_t *m, bool *applied, char **errmsg)
{
    *applied = false;
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[] = {version, m->name};
    int64_t count = 0;
    int rc = cd_db_query_int64(db, "SELECT count(*) FROM schema_migrations WHERE version = $1", 1,
                               params, &count);
    if (rc != 0) {
        s_db_errmsg(db, errmsg, "cannot read schema_migrations");
        goto err_rollback;
    }
    if (count == 0) {
        rc = cd_db_exec(db, m->sql, NULL);
        if (rc != 0) {
            char *what = cd__db_printf("migration %04d_%s failed", m->version, m->name);
            s_db_errmsg(db, errmsg, what);
            free(what);
            goto err_rollback;
        }
        rc = cd_db_exec_params(db, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               2, params, NULL);
        if (rc != 0) {
            s_db_errmsg(db, errmsg, "cannot record the migration");
            goto err_rollback;
        }
    }
    rc = cd_db_exec(db, "COMMIT", NULL);
    if (rc != 0) {
        char *what = cd__db_printf("cannot commit migration %04d_%s", m->version, m->name);
        s_db_errmsg(db, errmsg, what);
        free(what);
        goto err_rollback;
    }
    *applied = count == 0;
    return 0;

err_rollback:
    s_rollback(db);
    return rc;
}

int
cd_migrate_run_list(cd_db_t *db, const cd_migration_t *list, size_t n, int *applied_count,
                    char **errmsg)
{
    if (applied_count) {
        *applied_count = 0;
    }
    if (errmsg) {
        *errmsg = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (list[i].version <= 0 || !list[i].name || !list[i].sql ||
            (i > 0 && list[i].version <= list[i - 1].version)) {
            s_set_errmsg(errmsg, cd__db_strdup("migration list is not strictly ascending"));
            return CD_EINVAL;
        }
    }
    int latest = n > 0 ? list[n - 1].version : 0;
    int applied = 0;
    //  Pass i applies list[i]; pass n only re-checks the version.
    for (size_t i = 0; i <= n; i++) {
        int64_t newest = 0;
        int rc = s_begin_pass(db, &newest, errmsg);
        if (rc != 0) {
            return rc;
        }
        if (newest > latest) {
            s_rollback(db);
            s_set_errmsg(errmsg, cd__db_printf("database schema version %lld is newer than this "
                                               "cadred (knows up to %d); upgrade cadred",
                                               (long long)newest, latest));
            return CD_EVERSION;
        }
        if (i == n) {
            rc = cd_db_exec(db, "COMMIT", NULL);
            if (rc != 0) {
                s_db_errmsg(db, errmsg, "cannot commit the migration check");
                s_rollback(db);
                return rc;
            }
            break;
        }
        bool ran = false;
        rc = s_apply(db, &list[i], &ran, errmsg);
        if (rc != 0) {
            return rc;
        }
        if (ran) {
            applied++;
            if (applied_count) {
                *applied_count = applied;
            }
            cd_log_info("db", "migration applied", "{s:i, s:s}", "version", list[i].version, "name",
                        list[i].name);
        }
    }
    return 0;
}

int
cd_migrate_run(cd_db_t *db, int *applied_count, char **errmsg)
{
    return cd_migrate_run_list(db, cd__migrations, cd__migrations_count, applied_count, errmsg);
}

int
cd_migrate_latest(void)
{
    return cd__migrations_count > 0 ? cd__migrations[cd__migrations_count - 1].version : 0;
}

const cd_migration_t *
cd_migrate_embedded(size_t *n)
{
    *n = cd__migrations_count;
    return cd__migrations;
}

int
cd_migrate_version(cd_db_t *db, int *version)
{
    *version = 0;
    int64_t exists = 0;
    int rc = cd_db_query_int64(db, "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int", 0,
                               NULL, &exists);
    if (rc != 0 || !exists) {
        return rc;
    }
    int64_t v = 0;
    rc = cd_db_query_int64(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL,
                           &v);
    if (rc == 0) {
        *version = (int)v;
    }
    return rc;
}
