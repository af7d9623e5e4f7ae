/*  db_internal: what the db/ modules share and no other layer sees.

    Allocation helpers abort on out-of-memory with file and line, as the
    style asks; the migration table is generated at build time from
    db/migrations/NNNN_name.sql by cmake/embed_migrations.cmake. */
#ifndef CD_DB_INTERNAL_H
#define CD_DB_INTERNAL_H

#include "cd_db.h"
#include "cd_migrate.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

//  Aborts with file and line if p is NULL; returns p.
void *cd__db_checked(void *p, const char *file, int line);

//  printf into a new string (caller frees). Aborts on out-of-memory.
__attribute__((format(printf, 3, 4))) char *cd__db_printf_at(const char *file, int line,
                                                             const char *fmt, ...);

//  Session settings of every connection the node opens, unless its
//  connection string sets `options` itself: no JIT. PostgreSQL compiles a
//  query to machine code once its estimated cost passes jit_above_cost,
//  which estimates for small tables often do (the orchestrator's
//  directory read, ~1 ms of work, paid ~20 ms of compilation every time);
//  the node's queries are all short, and compiling never pays back.
#define CD_DB_SESSION_OPTIONS "-c jit=off"

#define cd__db_printf(...) cd__db_printf_at(__FILE__, __LINE__, __VA_ARGS__)
#define cd__db_strdup(s) ((char *)cd__db_checked(strdup(s), __FILE__, __LINE__))
#define cd__db_calloc(n, size) cd__db_checked(calloc((n), (size)), __FILE__, __LINE__)

//  Runs sql like cd_db_exec but leaves the connection's last error as it
//  was: for the ROLLBACK after a failure, so the caller still sees the
//  error that caused it. Returns 0 or the CD_E* code of the rollback.
int cd__db_exec_keep_error(cd_db_t *self, const char *sql);

//  mkdir -p: missing parents get 0755 (searchable, as `mkdir -p` makes
//  them), the last component gets mode exactly (umask ignored). *created
//  says whether the last component was made now. Returns 0 or an errno
//  value, with the path that failed in *failed (caller frees).
int cd__datadir_mkdirs(const char *dir, mode_t mode, bool *created, char **failed);

//  The migrations compiled into this binary, ascending by version
//  (generated file cd_migrations_gen.c).
extern const cd_migration_t cd__migrations[];
extern const size_t cd__migrations_count;

//  Looks for PostgreSQL's server binaries: `pg_config --bindir` when
//  pg_config (a path, or a name searched on PATH) exists and that dir holds
//  initdb, else the highest <root>/<version>/bin holding initdb, pg_ctl and
//  postgres. Returns 0 and *bindir (caller frees) or CD_ENOTFOUND with
//  *errmsg telling how to install PostgreSQL (caller frees). Exposed for
//  tests; cd_pgembed_find_bindir uses pg_config and /usr/lib/postgresql.
int cd__pgembed_find_bindir_in(const char *pg_config, const char *root, char **bindir,
                               char **errmsg);

#endif
