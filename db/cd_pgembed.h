/*  cd_pgembed: the private PostgreSQL a node runs when DATABASE_URL is unset.

    The cluster lives in one directory that cd_pgembed owns:

        <dir>/data/             PGDATA (initdb'd on first start)
        <dir>/run/              the unix socket; no TCP listener at all
        <dir>/postgresql.log    the server's log

    Authentication is "trust" on the unix socket: only the account that
    owns <dir> (and root) can reach the socket inside it. When the node runs
    as root, PostgreSQL (which refuses root) runs as the "postgres" account
    that Debian's package creates, and <dir> is given to that account; every
    parent directory must then be searchable by it.

    The server runs in its own session, so a Ctrl-C on the node's terminal
    reaches only the node, which then stops the server in order. If the node
    dies without stopping it, the next start finds the server still running
    on <dir> and restarts it (a fast stop, then a start with this run's
    settings); a postmaster.pid left by a dead server is handled by
    PostgreSQL itself. One process at a time may use a dir: take
    cd_datadir_lock on the node's data directory first.

    All calls block (child processes are waited for with time bounds) and
    run on the caller's thread. They wait for their own children by pid, so
    the process must not reap children it did not start (no waitpid(-1) in
    a SIGCHLD handler). */
#ifndef CD_DB_PGEMBED_H
#define CD_DB_PGEMBED_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct cd_pgembed cd_pgembed_t;

typedef struct {
    const char *dir;     // the cluster dir, e.g. "<data dir>/pg"; created if missing
    bool fast;           // tests: fsync and full_page_writes off, small shared_buffers
    const char *dbname;  // database to create if missing; NULL = "cadre"
    int start_timeout_s; // bound on a server start (crash recovery included); 0 = 60
    const char *bindir;  // PostgreSQL's bin dir; NULL = search (cd_pgembed_find_bindir)
} cd_pgembed_opts_t;

//  Starts the server on opts->dir: initdb on first use (into a temporary
//  dir renamed into place, so an interrupted initdb never leaves a broken
//  cluster), then pg_ctl start, then creates the database if missing.
//  fast trades durability against an OS crash (not a process crash) for
//  speed: synchronous_commit stays on, so a commit that returned survives
//  "pg_ctl stop -m immediate" in fast mode too.
//  Returns 0 and *out (caller owns; cd_pgembed_stop), or CD_ENOTFOUND (no
//  PostgreSQL installed), CD_EPERM (the postgres account cannot reach the
//  dir, or no such account when running as root), CD_EINVAL (a path
//  PostgreSQL cannot take, a socket path over 107 bytes), CD_ETIMEDOUT, or
//  CD_EIO (a tool failed). On failure, if errmsg is not NULL, *errmsg
//  receives a message with the tool's output or the server log's tail
//  (caller frees).
int cd_pgembed_start(const cd_pgembed_opts_t *opts, cd_pgembed_t **out, char **errmsg);

//  Stops the server (pg_ctl stop -m fast, then -m immediate if that times
//  out) and frees. Safe on NULL and on *self_p == NULL; nulls the caller's
//  pointer. Returns 0 or CD_EIO / CD_ETIMEDOUT (the handle is freed either
//  way; the failure is logged).
int cd_pgembed_stop(cd_pgembed_t **self_p);

//  For fault tests: stops the server with pg_ctl's mode "smart", "fast" or
//  "immediate" (a simulated crash: no checkpoint, recovery on next start)
//  and keeps the handle for cd_pgembed_restart. Returns 0, CD_EINVAL for
//  another mode, CD_EIO or CD_ETIMEDOUT.
int cd_pgembed_kill(cd_pgembed_t *self, const char *mode);

//  Starts the server again on the same dir, with the same options (after
//  cd_pgembed_kill; a running server is stopped fast first). Returns as
//  cd_pgembed_start.
int cd_pgembed_restart(cd_pgembed_t *self, char **errmsg);

//  libpq conninfo for the database: "host='<dir>/run' port='5432'
//  dbname='cadre' user='cadre'". Borrowed, valid until stop.
const char *cd_pgembed_conninfo(const cd_pgembed_t *self);

//  The same for another database of this cluster. Caller frees.
char *cd_pgembed_conninfo_for(const cd_pgembed_t *self, const char *dbname);

//  Creates database name (from template0, so no session on template1 can
//  get in the way) unless it exists. Returns 0, CD_EDB or CD_ECONN; on
//  failure, if errmsg is not NULL, *errmsg receives a message (caller frees).
int cd_pgembed_create_database(cd_pgembed_t *self, const char *name, char **errmsg);

//  Paths of the cluster: its dir, PGDATA, the socket dir, the bin dir.
//  Borrowed, valid until stop.
const char *cd_pgembed_dir(const cd_pgembed_t *self);
const char *cd_pgembed_datadir(const cd_pgembed_t *self);
const char *cd_pgembed_sockdir(const cd_pgembed_t *self);
const char *cd_pgembed_bindir(const cd_pgembed_t *self);

//  The postmaster's pid from PGDATA/postmaster.pid, or 0 if none is
//  recorded.
pid_t cd_pgembed_pid(const cd_pgembed_t *self);

//  Finds PostgreSQL's server binaries: `pg_config --bindir` if that dir
//  holds initdb, else the highest /usr/lib/postgresql/<version>/bin with
//  initdb. Returns 0 and *bindir (caller frees), or CD_ENOTFOUND and, if
//  errmsg is not NULL, *errmsg saying how to install them (caller frees).
int cd_pgembed_find_bindir(char **bindir, char **errmsg);

#endif
