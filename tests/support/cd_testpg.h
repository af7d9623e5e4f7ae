/*  cd_testpg: the PostgreSQL test fixture.

    One private cluster per test executable, started on first use (fast
    mode, in a fresh /tmp/cadre-test-XXXXXX) through cd_pgembed, stopped and
    removed at exit. Each test asks for a database of its own with
    cd_testpg_fresh_db, so tests never see each other's rows.

    If the test process dies without running atexit (a signal, a sanitizer
    abort, a ctest timeout), a watchdog child notices its end and stops the
    server immediately, then removes the temp dir: a postmaster never
    outlives its test run. The process also becomes a child subreaper so the
    postmasters it starts are its children and are reaped when they stop.

    Single-threaded use: call these from the test's main thread. */
#ifndef CD_TESTS_SUPPORT_TESTPG_H
#define CD_TESTS_SUPPORT_TESTPG_H

#include "cd_pgembed.h"

//  Creates a new, uniquely named, empty database on the fixture's cluster
//  (starting the cluster first if needed) and returns its conninfo in
//  *conninfo (caller frees). Returns 0 or a CD_E* code, after printing the
//  reason to stderr.
int cd_testpg_fresh_db(char **conninfo);

//  The fixture's cluster, started if needed; NULL (reason on stderr) if it
//  cannot start. Borrowed, valid until exit. Fault tests may kill and
//  restart it (cd_pgembed_kill, cd_pgembed_restart).
cd_pgembed_t *cd_testpg_cluster(void);

//  A new empty scratch dir /tmp/cadre-test-XXXXXX that the postgres account
//  can search (mode 0711), removed at exit with everything in it, for
//  tests that run clusters of their own. Returns its path (caller frees)
//  or NULL.
char *cd_testpg_scratch_dir(void);

//  rm -rf path. Returns 0 or -1.
int cd_testpg_rmtree(const char *path);

#endif
