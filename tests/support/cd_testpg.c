/*  cd_testpg: one private PostgreSQL per test executable (see cd_testpg.h).

    Process-wide state is the point of a fixture (one cluster per run), so
    it lives in a file-local struct rather than in an actor.

    Cleanup has two paths. Normally an atexit handler stops the cluster,
    stops any server a test left running in a scratch dir, and removes the
    scratch dirs. If the process dies without atexit, a watchdog child
    (forked at first use, in its own session so a signal to the test's
    process group spares it) sees the pipe from its parent reach EOF and
    does the same: it finds the servers by their working directory (a
    postmaster and its backends chdir into PGDATA), asks each postmaster
    for an immediate shutdown (SIGQUIT), kills what is left, and removes the
    dirs. Scratch dirs are announced to it over that pipe as fixed-size
    records (each write under PIPE_BUF, so atomic). */
#include "cd_testpg.h"
#include "cd_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CD_TESTPG_MAX_DIRS 64
#define CD_TESTPG_RECORD 256

static struct {
    pid_t owner;           // the test process (forked children must not clean up)
    bool started;          // watchdog and atexit set up
    bool cluster_failed;   // the cluster could not start; do not retry
    cd_pgembed_t *cluster; // the shared cluster, or NULL
    int watchdog_fd;       // write end of the pipe to the watchdog
    pid_t watchdog_pid;    // the watchdog child
    char dirs[CD_TESTPG_MAX_DIRS][CD_TESTPG_RECORD]; // scratch dirs to remove at exit
    size_t ndirs;                                    // entries used in dirs
    unsigned next_db;                                // counter for database names
} s_fx = {.watchdog_fd = -1};

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int
s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int
cd_testpg_rmtree(const char *path)
{
    if (access(path, F_OK) != 0) {
        return 0;
    }
    return nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

//  The index of the dir (of n) that path lies in, or -1.
static int
s_under(const char *path, char dirs[][CD_TESTPG_RECORD], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(dirs[i]);
        if (strncmp(path, dirs[i], len) == 0 && (path[len] == '/' || path[len] == '\0')) {
            return (int)i;
        }
    }
    return -1;
}

//  Signals every live process whose cwd lies in one of dirs: postmasters
//  (their pid is the first line of <cwd>/postmaster.pid) with postmaster_sig,
//  others with other_sig (0: leave them). Returns how many were found.
static int
s_signal_under(char dirs[][CD_TESTPG_RECORD], size_t n, int postmaster_sig, int other_sig)
{
    DIR *proc = opendir("/proc");
    if (!proc) {
        return 0;
    }
    int found = 0;
    for (struct dirent *e = readdir(proc); e; e = readdir(proc)) {
        char *end = NULL;
        long pid = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || pid == (long)getpid()) {
            continue;
        }
        char link[64];
        char cwd[PATH_MAX];
        snprintf(link, sizeof link, "/proc/%ld/cwd", pid);
        ssize_t len = readlink(link, cwd, sizeof cwd - 1);
        if (len < 0) {
            continue; // gone, or a zombie
        }
        cwd[len] = '\0';
        if (s_under(cwd, dirs, n) < 0) {
            continue;
        }
        found++;
        char pidfile[PATH_MAX + 32];
        snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", cwd);
        long owner = 0;
        FILE *f = fopen(pidfile, "re");
        if (f) {
            if (fscanf(f, "%ld", &owner) != 1) {
                owner = 0;
            }
            fclose(f);
        }
        int sig = owner == pid ? postmaster_sig : other_sig;
        if (sig) {
            kill((pid_t)pid, sig);
        }
    }
    closedir(proc);
    return found;
}

//  Stops every server running in dirs: immediate shutdown, then SIGKILL
//  for whatever has not gone after a few seconds.
static void
s_stop_servers_under(char dirs[][CD_TESTPG_RECORD], size_t n)
{
    if (s_signal_under(dirs, n, SIGQUIT, 0) == 0) {
        return;
    }
    for (int i = 0; i < 300; i++) {
        s_sleep_ms(10);
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (s_signal_under(dirs, n, 0, 0) == 0) {
            return;
        }
    }
    s_signal_under(dirs, n, SIGKILL, SIGKILL);
}

static void
s_cleanup_dirs(char dirs[][CD_TESTPG_RECORD], size_t n)
{
    s_stop_servers_under(dirs, n);
    for (size_t i = 0; i < n; i++) {
        cd_testpg_rmtree(dirs[i]);
    }
}

//  The watchdog's body (a forked child): collect dir records until the
//  parent's end of the pipe closes, then clean up after it.
static void
s_watchdog(int fd)
{
    setsid();
    char dirs[CD_TESTPG_MAX_DIRS][CD_TESTPG_RECORD];
    size_t n = 0;
    char record[CD_TESTPG_RECORD];
    for (;;) {
        ssize_t got = read(fd, record, sizeof record);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got != (ssize_t)sizeof record) {
            break; // EOF: the test process is gone (or done)
        }
        if (n < CD_TESTPG_MAX_DIRS) {
            memcpy(dirs[n++], record, sizeof record);
        }
    }
    s_cleanup_dirs(dirs, n);
    _exit(0);
}

static void
s_atexit(void)
{
    if (getpid() != s_fx.owner) {
        return; // a forked test child exiting: the dirs are not its own
    }
    //  Stop the watchdog first, so it does not race us over the same dirs.
    if (s_fx.watchdog_pid > 0) {
        kill(s_fx.watchdog_pid, SIGKILL);
        waitpid(s_fx.watchdog_pid, NULL, 0);
        s_fx.watchdog_pid = 0;
    }
    if (s_fx.watchdog_fd >= 0) {
        close(s_fx.watchdog_fd);
        s_fx.watchdog_fd = -1;
    }
    cd_pgembed_stop(&s_fx.cluster);
    s_cleanup_dirs(s_fx.dirs, s_fx.ndirs);
    s_fx.ndirs = 0;
}

static int
s_setup(void)
{
    if (s_fx.started) {
        return 0;
    }
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        perror("cd_testpg: pipe");
        return CD_EIO;
    }
    //  Postmasters we start become our children (pg_ctl's intermediate
    //  process exits), so stopped ones are reaped instead of lingering as
    //  zombies under an init that may not reap.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    s_fx.owner = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("cd_testpg: fork");
        close(pipefd[0]);
        close(pipefd[1]);
        return CD_EIO;
    }
    if (pid == 0) {
        close(pipefd[1]);
        s_watchdog(pipefd[0]);
    }
    close(pipefd[0]);
    s_fx.watchdog_fd = pipefd[1];
    s_fx.watchdog_pid = pid;
    s_fx.started = true;
    atexit(s_atexit);
    return 0;
}

char *
cd_testpg_scratch_dir(void)
{
    if (s_setup() != 0) {
        return NULL;
    }
    if (s_fx.ndirs == CD_TESTPG_MAX_DIRS) {
        fprintf(stderr, "cd_testpg: more than %d scratch dirs\n", CD_TESTPG_MAX_DIRS);
        return NULL;
    }
    char tmpl[] = "/tmp/cadre-test-XXXXXX";
    if (!mkdtemp(tmpl)) {
        perror("cd_testpg: mkdtemp");
        return NULL;
    }
    //  The postgres account (root runs) must search it; only search.
    if (chmod(tmpl, 0711) != 0) {
        perror("cd_testpg: chmod");
        rmdir(tmpl);
        return NULL;
    }
    char record[CD_TESTPG_RECORD] = {0};
    snprintf(record, sizeof record, "%s", tmpl);
    memcpy(s_fx.dirs[s_fx.ndirs++], record, sizeof record);
    if (write(s_fx.watchdog_fd, record, sizeof record) != (ssize_t)sizeof record) {
        perror("cd_testpg: watchdog");
    }
    return strdup(tmpl);
}

cd_pgembed_t *
cd_testpg_cluster(void)
{
    if (s_fx.cluster || s_fx.cluster_failed) {
        return s_fx.cluster;
    }
    char *scratch = cd_testpg_scratch_dir();
    if (!scratch) {
        s_fx.cluster_failed = true;
        return NULL;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/pg", scratch);
    free(scratch);
    cd_pgembed_opts_t opts = {.dir = dir, .fast = true, .dbname = "postgres"};
    char *err = NULL;
    int rc = cd_pgembed_start(&opts, &s_fx.cluster, &err);
    if (rc != 0) {
        fprintf(stderr, "cd_testpg: cannot start PostgreSQL (%s): %s\n", cd_errname(rc),
                err ? err : "");
        s_fx.cluster_failed = true;
    }
    free(err);
    return s_fx.cluster;
}

int
cd_testpg_fresh_db(char **conninfo)
{
    *conninfo = NULL;
    cd_pgembed_t *pg = cd_testpg_cluster();
    if (!pg) {
        return CD_ECONN;
    }
    char name[32];
    snprintf(name, sizeof name, "test_%u", ++s_fx.next_db);
    char *err = NULL;
    int rc = cd_pgembed_create_database(pg, name, &err);
    if (rc != 0) {
        fprintf(stderr, "cd_testpg: %s\n", err ? err : cd_strerror(rc));
        free(err);
        return rc;
    }
    *conninfo = cd_pgembed_conninfo_for(pg, name);
    return 0;
}
