/*  cd_migrate: versioned schema migrations, compiled into the binary.

    Each file db/migrations/NNNN_name.sql is one migration: version NNNN,
    name "name". The build embeds them (cmake/embed_migrations.cmake), so a
    cadred binary carries exactly the schema it was written for.

    At start-up cd_migrate_run applies the missing ones in version order,
    each in its own transaction together with its row in
    schema_migrations(version, name, applied_at). Every transaction first
    takes a transaction-scoped advisory lock, so nodes starting together
    against one database apply each migration once. A database that already
    holds a version above the highest this binary knows is refused: an old
    binary must not run on a schema it does not understand.

    A migration's SQL runs inside that transaction: it must not contain
    BEGIN/COMMIT or statements that cannot run in a transaction block
    (CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE before PostgreSQL
    12, VACUUM). */
#ifndef CD_DB_MIGRATE_H
#define CD_DB_MIGRATE_H

#include "cd_db.h"

#include <stddef.h>

typedef struct {
    int version;      // NNNN from the file name, > 0
    const char *name; // the file name's "name" part
    const char *sql;  // the file's text
} cd_migration_t;

//  Applies the embedded migrations (see cd_migrate_run_list).
int cd_migrate_run(cd_db_t *db, int *applied_count, char **errmsg);

//  Applies the migrations of list[0..n) that the database lacks. list must
//  be strictly ascending by version (else CD_EINVAL); it is borrowed for
//  the call. Tests pass their own list to simulate another binary.
//  *applied_count (if not NULL) receives how many this call applied, on
//  failure too. Returns 0;
//  CD_EVERSION if the database holds a version above list's highest;
//  CD_EDB or CD_ECONN if a statement failed, after rolling back that
//  migration entirely (cd_db_error(db) still holds the failure, with its
//  SQLSTATE). Migrations applied before the failure stay applied. On
//  failure, if errmsg is not NULL, *errmsg receives a message naming the
//  migration (caller frees). Runs on the caller's thread; db must not be
//  inside a transaction.
int cd_migrate_run_list(cd_db_t *db, const cd_migration_t *list, size_t n, int *applied_count,
                        char **errmsg);

//  The highest embedded migration version.
int cd_migrate_latest(void);

//  The embedded migrations, ascending; *n receives their number. Borrowed,
//  static.
const cd_migration_t *cd_migrate_embedded(size_t *n);

//  The highest version recorded in the database (0 when schema_migrations
//  does not exist yet), for readiness checks. Returns 0, CD_EDB or CD_ECONN.
int cd_migrate_version(cd_db_t *db, int *version);

#endif
