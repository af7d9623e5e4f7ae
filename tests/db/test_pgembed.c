/* label: db */
/*  test_pgembed: the embedded PostgreSQL: first start, reuse, crashes of
    the node and of the server, and the ways a start must fail. */
#include "cd_db.h"
#include "cd_error.h"
#include "cd_pgembed.h"
#include "cd_testpg.h"
#include "db_internal.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct {
    char *scratch;    // this test's scratch dir
    char *dir;        // <scratch>/pg, the cluster dir
    cd_pgembed_t *pg; // the running server, stopped by teardown
} fixture_t;

static int
s_setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->scratch = cd_testpg_scratch_dir();
    assert_non_null(fx->scratch);
    assert_true(asprintf(&fx->dir, "%s/pg", fx->scratch) > 0);
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    fixture_t *fx = *state;
    cd_pgembed_stop(&fx->pg);
    free(fx->dir);
    free(fx->scratch);
    free(fx);
    return 0;
}

static void
s_start(fixture_t *fx)
{
    cd_pgembed_opts_t opts = {.dir = fx->dir, .fast = true};
    char *err = NULL;
    int rc = cd_pgembed_start(&opts, &fx->pg, &err);
    if (rc != 0) {
        fail_msg("start: %s: %s", cd_errname(rc), err);
    }
    assert_null(err);
}

static cd_db_t *
s_connect(const cd_pgembed_t *pg)
{
    cd_db_t *db = NULL;
    char *err = NULL;
    if (cd_db_connect(cd_pgembed_conninfo(pg), &db, &err) != 0) {
        fail_msg("connect: %s", err);
    }
    return db;
}

static int64_t
s_count(cd_db_t *db, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(cd_db_query_int64(db, sql, 0, NULL, &n), 0);
    return n;
}

static char *
s_file(const fixture_t *fx, const char *sub)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", fx->dir, sub) > 0);
    return path;
}

static void
test_pgembed_start_stop_reuse(void **state)
{
    fixture_t *fx = *state;
    s_start(fx);
    assert_string_equal(cd_pgembed_dir(fx->pg), fx->dir);
    char *version = s_file(fx, "data/PG_VERSION");
    struct stat first;
    assert_int_equal(stat(version, &first), 0);
    assert_true(cd_pgembed_pid(fx->pg) > 0);

    cd_db_t *db = s_connect(fx->pg);
    char *name = NULL;
    assert_int_equal(cd_db_query_text(db, "SELECT current_database()", 0, NULL, &name), 0);
    assert_string_equal(name, "cadre");
    free(name);
    assert_int_equal(cd_db_exec(db, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)", NULL),
                     0);
    cd_db_close(&db);
    assert_int_equal(cd_pgembed_stop(&fx->pg), 0);
    assert_null(fx->pg);
    assert_int_equal(cd_pgembed_stop(&fx->pg), 0);
    assert_int_equal(cd_pgembed_stop(NULL), 0);

    //  Again on the same dir: no initdb (PG_VERSION untouched), data kept.
    s_start(fx);
    struct stat second;
    assert_int_equal(stat(version, &second), 0);
    assert_true(first.st_ino == second.st_ino && first.st_mtime == second.st_mtime);
    db = s_connect(fx->pg);
    assert_int_equal(s_count(db, "SELECT sum(v) FROM kept"), 7);
    cd_db_close(&db);
    free(version);
}

static void
test_pgembed_no_tcp_socket_in_dir(void **state)
{
    fixture_t *fx = *state;
    s_start(fx);
    cd_db_t *db = s_connect(fx->pg);
    char *value = NULL;
    assert_int_equal(cd_db_query_text(db, "SHOW listen_addresses", 0, NULL, &value), 0);
    assert_string_equal(value, "");
    free(value);
    assert_int_equal(cd_db_query_text(db, "SHOW fsync", 0, NULL, &value), 0);
    assert_string_equal(value, "off");
    free(value);
    assert_int_equal(cd_db_query_text(db, "SHOW synchronous_commit", 0, NULL, &value), 0);
    assert_string_equal(value, "on");
    free(value);
    assert_int_equal(cd_db_query_text(db, "SHOW server_encoding", 0, NULL, &value), 0);
    assert_string_equal(value, "UTF8");
    free(value);
    cd_db_close(&db);

    char *run = s_file(fx, "run");
    assert_string_equal(cd_pgembed_sockdir(fx->pg), run);
    char *socket = s_file(fx, "run/.s.PGSQL.5432");
    struct stat st;
    assert_int_equal(stat(socket, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    //  Only the owner reaches the socket ("trust" relies on it).
    assert_int_equal(stat(run, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    free(socket);
    free(run);

    //  Another database of the cluster.
    char *err = NULL;
    assert_int_equal(cd_pgembed_create_database(fx->pg, "second db", &err), 0);
    assert_int_equal(cd_pgembed_create_database(fx->pg, "second db", &err), 0);
    char *conninfo = cd_pgembed_conninfo_for(fx->pg, "second db");
    assert_int_equal(cd_db_connect(conninfo, &db, NULL), 0);
    cd_db_close(&db);
    free(conninfo);
}

static void
test_pgembed_owner_crash_recovered(void **state)
{
    fixture_t *fx = *state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        //  The "node": starts the server, commits a row, then dies hard.
        cd_pgembed_opts_t opts = {.dir = fx->dir, .fast = true};
        cd_pgembed_t *pg = NULL;
        cd_db_t *db = NULL;
        char c = 'n';
        if (cd_pgembed_start(&opts, &pg, NULL) == 0 &&
            cd_db_connect(cd_pgembed_conninfo(pg), &db, NULL) == 0 &&
            cd_db_exec(db, "CREATE TABLE survivor (v int); INSERT INTO survivor VALUES (42)",
                       NULL) == 0) {
            c = 'y';
        }
        (void)!write(ready[1], &c, 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_int_equal(c, 'y');

    //  Its server is still running on the dir; a new start takes over.
    s_start(fx);
    cd_db_t *db = s_connect(fx->pg);
    assert_int_equal(s_count(db, "SELECT v FROM survivor"), 42);
    cd_db_close(&db);
}

//  A pid that surely names no process: a child we started and reaped.
static pid_t
s_dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        _exit(0);
    }
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

static void
test_pgembed_server_crash_and_stale_pidfile(void **state)
{
    fixture_t *fx = *state;
    s_start(fx);
    cd_db_t *db = s_connect(fx->pg);
    assert_int_equal(cd_db_exec(db, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)", NULL), 0);
    cd_db_close(&db);

    //  The lock file as the live server wrote it.
    char *pidfile = s_file(fx, "data/postmaster.pid");
    FILE *f = fopen(pidfile, "r");
    assert_non_null(f);
    char text[4096] = {0};
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    assert_true(len > 0);

    //  A server crash: no checkpoint; recovery replays the WAL. A commit
    //  that returned is there even in fast mode.
    assert_int_equal(cd_pgembed_kill(fx->pg, "immediate"), 0);
    assert_int_equal(cd_pgembed_kill(fx->pg, "nonsense"), CD_EINVAL);

    //  As if it had died without removing its lock file: same content,
    //  pid of a dead process.
    char *rest = strchr(text, '\n');
    assert_non_null(rest);
    f = fopen(pidfile, "w");
    assert_non_null(f);
    fprintf(f, "%ld%s", (long)s_dead_pid(), rest);
    fclose(f);
    if (geteuid() == 0) {
        struct stat st;
        char *datadir = s_file(fx, "data");
        assert_int_equal(stat(datadir, &st), 0);
        assert_int_equal(chown(pidfile, st.st_uid, st.st_gid), 0);
        free(datadir);
    }

    char *err = NULL;
    int rc = cd_pgembed_restart(fx->pg, &err);
    if (rc != 0) {
        fail_msg("restart: %s", err);
    }
    db = s_connect(fx->pg);
    assert_int_equal(s_count(db, "SELECT count(*) FROM t"), 1);
    assert_int_equal(cd_db_exec(db, "INSERT INTO t VALUES (2)", NULL), 0);
    cd_db_close(&db);

    //  And a plain crash + restart, twice over.
    assert_int_equal(cd_pgembed_kill(fx->pg, "immediate"), 0);
    assert_int_equal(cd_pgembed_restart(fx->pg, NULL), 0);
    db = s_connect(fx->pg);
    assert_int_equal(s_count(db, "SELECT count(*) FROM t"), 2);
    cd_db_close(&db);
    free(pidfile);
}

static void
test_pgembed_start_failure_shows_server_log(void **state)
{
    fixture_t *fx = *state;
    s_start(fx);
    assert_int_equal(cd_pgembed_kill(fx->pg, "fast"), 0);
    //  Stopping what is already stopped is fine.
    assert_int_equal(cd_pgembed_kill(fx->pg, "fast"), 0);
    assert_int_equal(cd_pgembed_stop(&fx->pg), 0);

    char *conf = s_file(fx, "data/postgresql.conf");
    FILE *f = fopen(conf, "a");
    assert_non_null(f);
    fputs("shared_buffers = 'lots'\n", f);
    fclose(f);
    cd_pgembed_opts_t opts = {.dir = fx->dir, .fast = true, .start_timeout_s = 10};
    char *err = NULL;
    assert_int_equal(cd_pgembed_start(&opts, &fx->pg, &err), CD_EIO);
    assert_null(fx->pg);
    assert_non_null(strstr(err, "pg_ctl start failed"));
    assert_non_null(strstr(err, "postgresql.log"));
    assert_non_null(strstr(err, "shared_buffers"));
    free(err);
    free(conf);
}

static void
test_pgembed_unreachable_dir(void **state)
{
    fixture_t *fx = *state;
    //  A parent the server's account cannot search: mode 0700 of root
    //  when we are root (PostgreSQL then runs as postgres), mode 0 else.
    char *private = NULL;
    assert_true(asprintf(&private, "%s/private", fx->scratch) > 0);
    assert_int_equal(mkdir(private, 0700), 0);
    if (geteuid() != 0) {
        assert_int_equal(chmod(private, 0), 0);
    }
    char *dir = NULL;
    assert_true(asprintf(&dir, "%s/pg", private) > 0);
    cd_pgembed_opts_t opts = {.dir = dir, .fast = true};
    char *err = NULL;
    int rc = cd_pgembed_start(&opts, &fx->pg, &err);
    assert_int_equal(rc, CD_EPERM);
    assert_null(fx->pg);
    assert_non_null(err);
    assert_non_null(strstr(err, private));
    if (geteuid() == 0) {
        assert_non_null(strstr(err, "cannot reach"));
        assert_non_null(strstr(err, "DATABASE_URL"));
        //  Nothing left behind by the failed start.
        assert_int_equal(access(dir, F_OK), -1);
    }
    free(err);
    chmod(private, 0700);
    free(dir);
    free(private);
}

static void
test_pgembed_rejects_bad_paths(void **state)
{
    fixture_t *fx = *state;
    char *longdir = NULL;
    assert_true(asprintf(&longdir, "%s/%0100d", fx->scratch, 0) > 0);
    cd_pgembed_opts_t opts = {.dir = longdir, .fast = true};
    char *err = NULL;
    assert_int_equal(cd_pgembed_start(&opts, &fx->pg, &err), CD_EINVAL);
    assert_non_null(strstr(err, "107"));
    free(err);
    assert_int_equal(access(longdir, F_OK), -1);
    free(longdir);

    char *quoted = NULL;
    assert_true(asprintf(&quoted, "%s/it's", fx->scratch) > 0);
    opts.dir = quoted;
    assert_int_equal(cd_pgembed_start(&opts, &fx->pg, &err), CD_EINVAL);
    assert_non_null(strstr(err, "character"));
    free(err);
    free(quoted);

    opts.dir = NULL;
    assert_int_equal(cd_pgembed_start(&opts, &fx->pg, NULL), CD_EINVAL);
}

static void
s_fake_bin(const char *root, const char *version, bool with_postgres)
{
    const char *tools[] = {"initdb", "pg_ctl", with_postgres ? "postgres" : NULL};
    for (size_t i = 0; i < 3 && tools[i]; i++) {
        char *path = NULL;
        assert_true(asprintf(&path, "%s/%s/bin", root, version) > 0);
        bool created = false;
        char *failed = NULL;
        assert_int_equal(cd__datadir_mkdirs(path, 0755, &created, &failed), 0);
        free(path);
        assert_true(asprintf(&path, "%s/%s/bin/%s", root, version, tools[i]) > 0);
        int fd = open(path, O_WRONLY | O_CREAT, 0755);
        assert_true(fd >= 0);
        close(fd);
        free(path);
    }
}

static void
test_pgembed_find_bindir(void **state)
{
    fixture_t *fx = *state;
    char *bindir = NULL;
    char *err = NULL;
    assert_int_equal(cd_pgembed_find_bindir(&bindir, &err), 0);
    assert_null(err);
    char *initdb = NULL;
    assert_true(asprintf(&initdb, "%s/initdb", bindir) > 0);
    assert_int_equal(access(initdb, X_OK), 0);
    free(initdb);
    free(bindir);

    //  Without pg_config: the highest version (numerically) that is whole.
    s_fake_bin(fx->scratch, "9.6", true);
    s_fake_bin(fx->scratch, "13", true);
    s_fake_bin(fx->scratch, "15", true);
    s_fake_bin(fx->scratch, "16", false);
    s_fake_bin(fx->scratch, "latest", true);
    assert_int_equal(cd__pgembed_find_bindir_in("no-such-pg-config", fx->scratch, &bindir, &err),
                     0);
    char *want = NULL;
    assert_true(asprintf(&want, "%s/15/bin", fx->scratch) > 0);
    assert_string_equal(bindir, want);
    free(want);
    free(bindir);

    //  Nothing found: say how to install it.
    assert_int_equal(cd__pgembed_find_bindir_in(NULL, fx->dir, &bindir, &err), CD_ENOTFOUND);
    assert_null(bindir);
    assert_non_null(strstr(err, "apt-get install postgresql"));
    assert_non_null(strstr(err, "scripts/deps"));
    free(err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pgembed_find_bindir, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_pgembed_start_stop_reuse, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_pgembed_no_tcp_socket_in_dir, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_pgembed_owner_crash_recovered, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_pgembed_server_crash_and_stale_pidfile, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_pgembed_start_failure_shows_server_log, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_pgembed_unreachable_dir, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_pgembed_rejects_bad_paths, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
