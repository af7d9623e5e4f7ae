/*  cd_pgembed: runs a private PostgreSQL for the node (see cd_pgembed.h).

    Everything goes through PostgreSQL's own tools, run with fork + execve
    (never a shell string): initdb once, pg_ctl to start and stop. pg_ctl
    puts the postmaster in a session of its own and waits for it to accept
    connections (or to finish crash recovery); we bound every wait on our
    side as well, kill a child that overruns, and put its captured output
    into the error message.

    Settings are not passed as pg_ctl -o "-c ..." options, because pg_ctl
    hands those to /bin/sh and a path would need shell quoting. Instead
    initdb's postgresql.conf gets one line, include 'cadre.conf', and
    cadre.conf is rewritten at every start: no TCP (listen_addresses = ''),
    the socket dir, max_connections, and the fast-mode switches. The paths
    pg_ctl itself quotes (-D, -l) are checked for the few characters that
    would break its quoting.

    Root: PostgreSQL refuses to run as root, so the tools run as the
    postgres account (setgroups/setgid/setuid in the child before execve),
    the cluster dir is given to it, and we check in a child running as that
    account that it can reach the dir, naming the parent that blocks it.

    A postmaster left running by a node that died (a SIGKILL, a crash) is
    recognised by its pid in postmaster.pid and its working directory (a
    postmaster chdirs into PGDATA): it is stopped fast and started again,
    so the server always runs with this run's settings. A pid of a dead
    process is PostgreSQL's case: it replaces the stale file itself.

    Interface: cd_pgembed_start, cd_pgembed_stop, cd_pgembed_kill,
    cd_pgembed_restart, cd_pgembed_conninfo, cd_pgembed_conninfo_for,
    cd_pgembed_create_database, cd_pgembed_dir, cd_pgembed_datadir,
    cd_pgembed_sockdir, cd_pgembed_bindir, cd_pgembed_pid,
    cd_pgembed_find_bindir. */
#include "cd_pgembed.h"
#include "cd_db.h"
#include "cd_error.h"
#include "cd_log.h"
#include "db_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  With no TCP listener the port only names the socket file.
#define CD_PGEMBED_PORT "5432"
#define CD_PGEMBED_SOCKET_NAME "/.s.PGSQL." CD_PGEMBED_PORT
//  sizeof(sockaddr_un.sun_path) is 108, one byte of which is the NUL.
#define CD_PGEMBED_SOCKET_MAX 107
#define CD_PGEMBED_USER "cadre"
#define CD_PGEMBED_DEFAULT_DB "cadre"
#define CD_PGEMBED_OUTPUT_MAX (64 * 1024)
#define CD_PGEMBED_LOG_TAIL 4096
#define CD_PGEMBED_LOG_ROTATE (16L * 1024 * 1024)
#define CD_PGEMBED_INITDB_TIMEOUT_S 300
#define CD_PGEMBED_STOP_TIMEOUT_S 60

//  Who the tools run as: ourselves, or the postgres account when we are
//  root.
typedef struct {
    bool drop; // switch to uid/gid in the child
    uid_t uid; // the postgres account's uid
    gid_t gid; // its primary group
} s_cred_t;

struct cd_pgembed {
    char *dir;           // cluster dir, absolute
    char *datadir;       // <dir>/data (PGDATA)
    char *sockdir;       // <dir>/run
    char *logfile;       // <dir>/postgresql.log
    char *bindir;        // PostgreSQL's bin dir
    char *dbname;        // the database created at start
    char *conninfo;      // conninfo for dbname
    bool fast;           // test settings (see cd_pgembed_opts_t)
    int start_timeout_s; // bound on pg_ctl start
    s_cred_t cred;       // who runs the tools and the server
};

static void
s_set_errmsg(char **errmsg, char *text)
{
    if (errmsg) {
        *errmsg = text;
    } else {
        free(text);
    }
}

static int64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

//  ------------------------------------------------------------------
//  Child processes

//  The environment for the tools: ours without PG* variables, so a PGDATA,
//  PGPORT or PGHOST of the user's shell cannot redirect them. The array
//  borrows the strings of environ; free only the array.
static char **
s_child_env(void)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n]) {
        n++;
    }
    char **env = cd__db_calloc(n + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "PG", 2) != 0) {
            env[k++] = environ[i];
        }
    }
    return env;
}

//  In a forked child, before execve: only async-signal-safe calls, since
//  the parent may have other threads. Resets signal handling, detaches
//  from our session (a Ctrl-C on the terminal must reach only the node),
//  wires stdin to /dev/null and stdout/stderr to out_fd, closes every
//  other descriptor (a postmaster must not inherit the data-dir lock or a
//  test fixture's pipe), drops to the postgres account if asked and moves
//  to "/" (our cwd may be closed to it; every path we pass is absolute).
static void
s_child_setup(int null_fd, int out_fd, const s_cred_t *cred)
{
    //  Signal masks and ignored signals survive execve: the node blocks
    //  SIGINT/SIGTERM for its signalfd, and PostgreSQL's tools (and the
    //  server they start) must get default signal handling.
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            sigaction(sig, &dfl, NULL);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    //  dup2 clears close-on-exec, except when a descriptor is already in
    //  place (stdin was closed and /dev/null landed on 0).
    for (int fd = 0; fd <= 2; fd++) {
        fcntl(fd, F_SETFD, 0);
    }
    if (close_range(3, ~0U, 0) != 0) {
        for (int fd = 3; fd < 4096; fd++) {
            close(fd);
        }
    }
    if (cred->drop &&
        (setgroups(1, &cred->gid) != 0 || setgid(cred->gid) != 0 || setuid(cred->uid) != 0)) {
        static const char msg[] = "cannot switch to the postgres account\n";
        (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
        _exit(126);
    }
    if (chdir("/") != 0) {
        _exit(126);
    }
}

//  Appends to a bounded buffer; past the bound the oldest half is dropped,
//  since a tool's last lines say why it failed.
static void
s_output_append(char **buf, size_t *len, const char *data, size_t n)
{
    if (*len + n > CD_PGEMBED_OUTPUT_MAX) {
        size_t keep = *len / 2;
        memmove(*buf, *buf + *len - keep, keep);
        *len = keep;
        if (n > CD_PGEMBED_OUTPUT_MAX / 2) {
            data += n - CD_PGEMBED_OUTPUT_MAX / 2;
            n = CD_PGEMBED_OUTPUT_MAX / 2;
        }
    }
    *buf = cd__db_checked(realloc(*buf, *len + n + 1), __FILE__, __LINE__);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

//  Runs argv (argv[0] an absolute path) as cred, capturing stdout and
//  stderr into *output (caller frees; may be NULL to discard). Waits at
//  most timeout_s; on timeout kills the child's whole process group.
//  Returns 0 with the exit status in *status (a raw wait status), or
//  CD_ETIMEDOUT, or CD_EIO if it could not be started or its status was
//  lost (a SIGCHLD handler elsewhere reaping every child would do that:
//  the node must not install one).
static int
s_run(char *const argv[], const s_cred_t *cred, int timeout_s, char **output, int *status)
{
    if (output) {
        *output = NULL;
    }
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        return CD_EIO;
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return CD_EIO;
    }
    char **env = s_child_env();
    pid_t pid = fork();
    if (pid == 0) {
        s_child_setup(null_fd, pipefd[1], cred);
        execve(argv[0], argv, env);
        static const char msg[] = "cannot execute the program\n";
        (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
        _exit(127);
    }
    free(env);
    close(null_fd);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        return CD_EIO;
    }
    char *buf = NULL;
    size_t len = 0;
    s_output_append(&buf, &len, "", 0);
    int64_t deadline = s_now_ms() + (int64_t)timeout_s * 1000;
    bool timed_out = false;
    for (;;) {
        int64_t left = deadline - s_now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int r = poll(&pfd, 1, (int)(left > INT_MAX ? INT_MAX : left));
        if (r < 0 && errno != EINTR) {
            break;
        }
        if (r <= 0) {
            continue;
        }
        char chunk[4096];
        ssize_t n = read(pipefd[0], chunk, sizeof chunk);
        if (n > 0) {
            s_output_append(&buf, &len, chunk, (size_t)n);
        } else if (n == 0 || errno != EINTR) {
            break; // EOF: the child (and anything it started) closed its output
        }
    }
    close(pipefd[0]);
    //  Output closed: the child is exiting. Still bounded, in case it
    //  closed its descriptors and went on running.
    bool reaped = false;
    while (!timed_out && !reaped) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            reaped = true;
        } else if (r < 0 && errno != EINTR) {
            break; // ECHILD: someone else reaped it; its status is lost
        } else if (s_now_ms() >= deadline) {
            timed_out = true;
        } else {
            s_sleep_ms(5);
        }
    }
    if (timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
        }
    }
    if (output) {
        *output = buf;
    } else {
        free(buf);
    }
    return timed_out ? CD_ETIMEDOUT : reaped ? 0 : CD_EIO;
}

//  Describes a wait status for a message.
static char *
s_status_text(int status)
{
    if (WIFEXITED(status)) {
        return cd__db_printf("exit status %d", WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        return cd__db_printf("killed by signal %d", WTERMSIG(status));
    }
    return cd__db_strdup("unknown status");
}

//  Runs a tool that must succeed. On failure *errmsg gets "<what> failed
//  (<status>): <output>" and the result is CD_EIO or CD_ETIMEDOUT.
static int
s_run_ok(char *const argv[], const s_cred_t *cred, int timeout_s, const char *what, char **errmsg)
{
    char *output = NULL;
    int status = 0;
    int rc = s_run(argv, cred, timeout_s, &output, &status);
    if (rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        free(output);
        return 0;
    }
    size_t len = output ? strlen(output) : 0;
    while (len > 0 && (output[len - 1] == '\n' || output[len - 1] == ' ')) {
        output[--len] = '\0';
    }
    char *state = rc == CD_ETIMEDOUT ? cd__db_printf("did not finish in %d s", timeout_s)
                  : rc != 0          ? cd__db_strdup("could not be started or waited for")
                                     : s_status_text(status);
    s_set_errmsg(errmsg, cd__db_printf("%s failed (%s): %s", what, state,
                                       output && *output ? output : "(no output)"));
    free(state);
    free(output);
    return rc == CD_ETIMEDOUT ? CD_ETIMEDOUT : CD_EIO;
}

//  ------------------------------------------------------------------
//  Finding the binaries

static bool
s_is_executable(const char *dir, const char *name)
{
    char *path = cd__db_printf("%s/%s", dir, name);
    bool ok = access(path, X_OK) == 0;
    free(path);
    return ok;
}

//  A command name searched on PATH, or a path. Returns the path (caller
//  frees) or NULL.
static char *
s_which(const char *name)
{
    if (strchr(name, '/')) {
        return access(name, X_OK) == 0 ? cd__db_strdup(name) : NULL;
    }
    const char *path = getenv("PATH");
    char *copy = cd__db_strdup(path ? path : "/usr/bin:/bin");
    char *found = NULL;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        if (*dir && s_is_executable(dir, name)) {
            found = cd__db_printf("%s/%s", dir, name);
        }
    }
    free(copy);
    return found;
}

static char *
s_bindir_from_pg_config(const char *pg_config)
{
    char *exe = s_which(pg_config);
    if (!exe) {
        return NULL;
    }
    char *argv[] = {exe, "--bindir", NULL};
    s_cred_t self_cred = {0};
    char *output = NULL;
    int status = 0;
    char *bindir = NULL;
    if (s_run(argv, &self_cred, 10, &output, &status) == 0 && WIFEXITED(status) &&
        WEXITSTATUS(status) == 0) {
        output[strcspn(output, "\r\n")] = '\0';
        if (output[0] == '/' && s_is_executable(output, "initdb")) {
            bindir = cd__db_strdup(output);
        }
    }
    free(output);
    free(exe);
    return bindir;
}

//  Parses "15" or "9.6" into major * 1000 + minor; -1 if not a version.
static long
s_version_rank(const char *name)
{
    char *end = NULL;
    long major = strtol(name, &end, 10);
    if (end == name || major < 0 || major > 100000) {
        return -1;
    }
    long minor = 0;
    if (*end == '.') {
        const char *m = end + 1;
        minor = strtol(m, &end, 10);
        if (end == m || minor < 0 || minor > 999) {
            return -1;
        }
    }
    return *end == '\0' ? major * 1000 + minor : -1;
}

int
cd__pgembed_find_bindir_in(const char *pg_config, const char *root, char **bindir, char **errmsg)
{
    *bindir = NULL;
    if (errmsg) {
        *errmsg = NULL;
    }
    if (pg_config) {
        *bindir = s_bindir_from_pg_config(pg_config);
        if (*bindir) {
            return 0;
        }
    }
    long best_rank = -1;
    DIR *d = root ? opendir(root) : NULL;
    for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d)) {
        long rank = s_version_rank(e->d_name);
        if (rank <= best_rank) {
            continue;
        }
        char *bin = cd__db_printf("%s/%s/bin", root, e->d_name);
        if (s_is_executable(bin, "initdb") && s_is_executable(bin, "pg_ctl") &&
            s_is_executable(bin, "postgres")) {
            free(*bindir);
            *bindir = bin;
            best_rank = rank;
        } else {
            free(bin);
        }
    }
    if (d) {
        closedir(d);
    }
    if (*bindir) {
        return 0;
    }
    s_set_errmsg(errmsg,
                 cd__db_printf("PostgreSQL server binaries not found (no initdb from pg_config "
                               "--bindir, none under %s/<version>/bin): install them with "
                               "`apt-get install postgresql` (or run scripts/deps), or set "
                               "DATABASE_URL to use an existing server",
                               root ? root : "(no dir)"));
    return CD_ENOTFOUND;
}

int
cd_pgembed_find_bindir(char **bindir, char **errmsg)
{
    return cd__pgembed_find_bindir_in("pg_config", "/usr/lib/postgresql", bindir, errmsg);
}

//  ------------------------------------------------------------------
//  Paths and ownership

//  pg_ctl wraps -D and -l in double quotes for /bin/sh, and the socket dir
//  goes into a quoted postgresql.conf value: refuse what would break them.
static int
s_check_path(const char *dir, char **errmsg)
{
    for (const unsigned char *p = (const unsigned char *)dir; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || strchr("\"'\\$`,", *p)) {
            s_set_errmsg(errmsg, cd__db_printf("cluster dir %s contains a character PostgreSQL's "
                                               "tools cannot take (a quote, \\, $, `, a comma or "
                                               "a control character); choose another data dir",
                                               dir));
            return CD_EINVAL;
        }
    }
    size_t len = strlen(dir) + strlen("/run" CD_PGEMBED_SOCKET_NAME);
    if (len > CD_PGEMBED_SOCKET_MAX) {
        s_set_errmsg(errmsg,
                     cd__db_printf("the socket path %s/run%s would be %zu bytes, over the %d "
                                   "bytes a unix socket path may have; use a shorter data dir",
                                   dir, CD_PGEMBED_SOCKET_NAME, len, CD_PGEMBED_SOCKET_MAX));
        return CD_EINVAL;
    }
    return 0;
}

//  An absolute version of dir (not resolving links), for checks made
//  before the dir exists. Caller frees.
static char *
s_absolute(const char *dir)
{
    if (dir[0] == '/') {
        return cd__db_strdup(dir);
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        return cd__db_strdup(dir);
    }
    return cd__db_printf("%s/%s", cwd, dir);
}

static int
s_lookup_postgres(s_cred_t *cred, char **errmsg)
{
    *cred = (s_cred_t){0};
    if (geteuid() != 0) {
        return 0;
    }
    char buf[4096];
    struct passwd pw;
    struct passwd *found = NULL;
    if (getpwnam_r("postgres", &pw, buf, sizeof buf, &found) != 0 || !found) {
        s_set_errmsg(
            errmsg, cd__db_strdup("running as root, the embedded PostgreSQL needs the unprivileged "
                                  "'postgres' account (apt-get install postgresql creates it); or "
                                  "run cadred as another user, or set DATABASE_URL"));
        return CD_EPERM;
    }
    if (pw.pw_uid == 0) {
        s_set_errmsg(errmsg, cd__db_strdup("the 'postgres' account has uid 0; PostgreSQL "
                                           "refuses to run as root"));
        return CD_EPERM;
    }
    cred->drop = true;
    cred->uid = pw.pw_uid;
    cred->gid = pw.pw_gid;
    return 0;
}

static bool
s_dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        return false;
    }
    bool empty = true;
    for (struct dirent *e = readdir(d); e && empty; e = readdir(d)) {
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    }
    closedir(d);
    return empty;
}

//  As root: gives the cluster dir to the postgres account (only an empty
//  one: a populated dir of another owner is the user's to sort out).
static int
s_take_ownership(const cd_pgembed_t *self, char **errmsg)
{
    struct stat st;
    if (stat(self->dir, &st) != 0) {
        s_set_errmsg(errmsg, cd__db_printf("cannot stat %s: %s", self->dir, strerror(errno)));
        return CD_EIO;
    }
    if (st.st_uid == self->cred.uid) {
        return 0;
    }
    if (!s_dir_is_empty(self->dir)) {
        s_set_errmsg(errmsg, cd__db_printf("%s belongs to uid %ld, but PostgreSQL runs as the "
                                           "postgres account when cadred runs as root; fix it "
                                           "with: chown -R postgres:postgres %s",
                                           self->dir, (long)st.st_uid, self->dir));
        return CD_EPERM;
    }
    if (chown(self->dir, self->cred.uid, self->cred.gid) != 0) {
        s_set_errmsg(errmsg, cd__db_printf("cannot give %s to the postgres account: %s", self->dir,
                                           strerror(errno)));
        return CD_EIO;
    }
    return 0;
}

//  As root: checks, in a child running as the postgres account, that it
//  can search every parent of the cluster dir and use the dir itself. On
//  failure names the first path that blocks it.
static int
s_check_reachable(const cd_pgembed_t *self, char **errmsg)
{
    //  Prefixes "/a", "/a/b", ..., dir; built before fork.
    size_t n = 0;
    for (const char *p = self->dir + 1; *p; p++) {
        n += *p == '/';
    }
    n += 1;
    char **prefixes = cd__db_calloc(n, sizeof *prefixes);
    size_t k = 0;
    for (const char *p = self->dir + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            prefixes[k++] = strndup(self->dir, (size_t)(p - self->dir));
            cd__db_checked(prefixes[k - 1], __FILE__, __LINE__);
        }
        if (*p == '\0') {
            break;
        }
    }
    int pipefd[2];
    int rc = 0;
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        rc = CD_EIO;
        goto done;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        if (setgroups(1, &self->cred.gid) != 0 || setgid(self->cred.gid) != 0 ||
            setuid(self->cred.uid) != 0) {
            _exit(2);
        }
        for (size_t i = 0; i < k; i++) {
            int mode = i + 1 < k ? X_OK : R_OK | W_OK | X_OK;
            if (access(prefixes[i], mode) != 0) {
                uint32_t at = (uint32_t)i;
                (void)!write(pipefd[1], &at, sizeof at);
                _exit(1);
            }
        }
        _exit(0);
    }
    close(pipefd[1]);
    uint32_t at = UINT32_MAX;
    if (pid > 0) {
        while (read(pipefd[0], &at, sizeof at) < 0 && errno == EINTR) {
        }
    }
    close(pipefd[0]);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) == 2) {
        s_set_errmsg(errmsg, cd__db_strdup("cannot check access as the postgres account"));
        rc = CD_EIO;
    } else if (WEXITSTATUS(status) != 0) {
        const char *blocker = at < k ? prefixes[at] : self->dir;
        s_set_errmsg(errmsg,
                     cd__db_printf("the postgres account (which runs the embedded PostgreSQL "
                                   "when cadred runs as root) cannot reach %s: no access to %s. "
                                   "Use a data dir whose parents it can search (e.g. under "
                                   "/var/lib or /tmp), allow it (chmod o+x %s), or set "
                                   "DATABASE_URL",
                                   self->dir, blocker, blocker));
        rc = CD_EPERM;
    }
done:
    for (size_t i = 0; i < k; i++) {
        free(prefixes[i]);
    }
    free(prefixes);
    return rc;
}

static int
s_mkdir_owned(const cd_pgembed_t *self, const char *path, char **errmsg)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        s_set_errmsg(errmsg, cd__db_printf("cannot create %s: %s", path, strerror(errno)));
        return CD_EIO;
    }
    if (self->cred.drop && chown(path, self->cred.uid, self->cred.gid) != 0) {
        s_set_errmsg(errmsg, cd__db_printf("cannot chown %s: %s", path, strerror(errno)));
        return CD_EIO;
    }
    return 0;
}

static int
s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

//  rm -rf; 0 or -1.
static int
s_rmtree(const char *path)
{
    if (access(path, F_OK) != 0) {
        return 0;
    }
    return nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

//  Writes a whole file (as us) and hands it to the server's account.
static int
s_write_file(const cd_pgembed_t *self, const char *path, const char *text, int flags, char **errmsg)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | flags, 0600);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len ||
        (self->cred.drop && fchown(fd, self->cred.uid, self->cred.gid) != 0)) {
        s_set_errmsg(errmsg, cd__db_printf("cannot write %s: %s", path, strerror(errno)));
        if (fd >= 0) {
            close(fd);
        }
        return CD_EIO;
    }
    close(fd);
    return 0;
}

//  ------------------------------------------------------------------
//  initdb, configuration, start, stop

static const char *
s_locale(void)
{
    //  C.UTF-8 sorts bytewise like C but knows UTF-8 character classes;
    //  not every libc has it.
    locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
    if (loc) {
        freelocale(loc);
        return "--locale=C.UTF-8";
    }
    return "--locale=C";
}

static int
s_initdb(const cd_pgembed_t *self, char **errmsg)
{
    //  initdb into a side dir, renamed into place when complete: a node
    //  killed during initdb leaves no half-made cluster behind.
    char *tmp = cd__db_printf("%s/data.initdb", self->dir);
    char *initdb = cd__db_printf("%s/initdb", self->bindir);
    char *conf = cd__db_printf("%s/postgresql.conf", tmp);
    int rc = 0;
    if (s_rmtree(tmp) != 0) {
        s_set_errmsg(errmsg, cd__db_printf("cannot remove %s: %s", tmp, strerror(errno)));
        rc = CD_EIO;
        goto done;
    }
    char *argv[] = {initdb,
                    "-D",
                    tmp,
                    "-U",
                    CD_PGEMBED_USER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    (char *)s_locale(),
                    self->fast ? "--no-sync" : NULL,
                    NULL};
    cd_log_info("pg", "initdb", "{s:s}", "dir", self->datadir);
    rc = s_run_ok(argv, &self->cred, CD_PGEMBED_INITDB_TIMEOUT_S, "initdb", errmsg);
    if (rc != 0) {
        goto done;
    }
    rc = s_write_file(self, conf,
                      "\n# cadre: the embedded server's settings, rewritten at every start\n"
                      "include 'cadre.conf'\n",
                      O_APPEND, errmsg);
    if (rc != 0) {
        goto done;
    }
    if (rename(tmp, self->datadir) != 0) {
        s_set_errmsg(errmsg, cd__db_printf("cannot rename %s to %s: %s", tmp, self->datadir,
                                           strerror(errno)));
        rc = CD_EIO;
        goto done;
    }
    if (!self->fast) {
        int dfd = open(self->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
done:
    free(conf);
    free(initdb);
    free(tmp);
    return rc;
}

static int
s_write_conf(const cd_pgembed_t *self, char **errmsg)
{
    char *path = cd__db_printf("%s/cadre.conf", self->datadir);
    char *text = cd__db_printf(
        "# Written by cadred at every start of its embedded server; edits are lost.\n"
        "listen_addresses = ''\n"
        "unix_socket_directories = '\"%s\"'\n"
        "port = " CD_PGEMBED_PORT "\n"
        "max_connections = 100\n"
        "%s",
        self->sockdir,
        self->fast ? "# fast mode (tests): survives a process crash, not an OS crash\n"
                     "fsync = off\n"
                     "full_page_writes = off\n"
                     "shared_buffers = '32MB'\n"
                   : "fsync = on\n"
                     "full_page_writes = on\n");
    int rc = s_write_file(self, path, text, O_TRUNC, errmsg);
    free(text);
    free(path);
    return rc;
}

//  Reads the postmaster's pid from postmaster.pid (0 if none).
static pid_t
s_pidfile_pid(const cd_pgembed_t *self)
{
    char *path = cd__db_printf("%s/postmaster.pid", self->datadir);
    FILE *f = fopen(path, "re");
    free(path);
    if (!f) {
        return 0;
    }
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        pid = 0;
    }
    fclose(f);
    return (pid_t)pid;
}

//  The pid of a live postmaster serving this PGDATA, or 0. A pid from
//  postmaster.pid is trusted only if that process's working directory is
//  our PGDATA: after a reboot or a long downtime the number may belong to
//  an unrelated process, which must not be signalled.
static pid_t
s_live_postmaster(const cd_pgembed_t *self)
{
    pid_t pid = s_pidfile_pid(self);
    if (pid <= 0 || kill(pid, 0) != 0) {
        return 0;
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/%ld/cwd", (long)pid);
    char cwd[PATH_MAX];
    ssize_t n = readlink(link, cwd, sizeof cwd - 1);
    if (n < 0) {
        return 0;
    }
    cwd[n] = '\0';
    return strcmp(cwd, self->datadir) == 0 ? pid : 0;
}

//  A postmaster is put in its own session by pg_ctl and normally ends up a
//  child of init. If this process is a child subreaper (a test fixture
//  makes itself one), it is our child instead, and we must collect it.
static void
s_reap(pid_t pid)
{
    int64_t deadline = s_now_ms() + 5000;
    while (pid > 0 && s_now_ms() < deadline) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) {
            return;
        }
        s_sleep_ms(5);
    }
}

static int
s_pg_ctl_stop(const cd_pgembed_t *self, const char *mode, char **errmsg)
{
    pid_t pid = s_live_postmaster(self);
    if (pid == 0) {
        return 0;
    }
    char *pg_ctl = cd__db_printf("%s/pg_ctl", self->bindir);
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", CD_PGEMBED_STOP_TIMEOUT_S);
    char *argv[] = {pg_ctl,       "stop", "-D", self->datadir, "-m",
                    (char *)mode, "-w",   "-t", timeout,       NULL};
    int rc = s_run_ok(argv, &self->cred, CD_PGEMBED_STOP_TIMEOUT_S + 15, "pg_ctl stop", errmsg);
    if (rc != 0 && strcmp(mode, "immediate") != 0) {
        cd_log_warn("pg", "stop failed, stopping immediately", "{s:s, s:s}", "dir", self->dir,
                    "mode", mode);
        char *ignored = NULL;
        argv[5] = "immediate";
        if (s_run_ok(argv, &self->cred, CD_PGEMBED_STOP_TIMEOUT_S + 15, "pg_ctl stop", &ignored) ==
            0) {
            rc = 0;
            if (errmsg) {
                free(*errmsg);
                *errmsg = NULL;
            }
        }
        free(ignored);
    }
    free(pg_ctl);
    if (rc == 0) {
        s_reap(pid);
        cd_log_info("pg", "stopped", "{s:s, s:s, s:i}", "dir", self->dir, "mode", mode, "pid",
                    (int)pid);
    }
    return rc;
}

static off_t
s_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

//  The server log written since offset from, at most its last
//  CD_PGEMBED_LOG_TAIL bytes. Caller frees.
static char *
s_log_tail(const cd_pgembed_t *self, off_t from)
{
    off_t size = s_file_size(self->logfile);
    if (size - from > CD_PGEMBED_LOG_TAIL) {
        from = size - CD_PGEMBED_LOG_TAIL;
    }
    if (from < 0 || size <= from) {
        return cd__db_strdup("(empty)");
    }
    char *buf = cd__db_calloc(1, (size_t)(size - from) + 1);
    int fd = open(self->logfile, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, buf, (size_t)(size - from), from) : -1;
    if (fd >= 0) {
        close(fd);
    }
    if (n <= 0) {
        free(buf);
        return cd__db_strdup("(unreadable)");
    }
    buf[n] = '\0';
    return buf;
}

static int
s_pg_ctl_start(const cd_pgembed_t *self, char **errmsg)
{
    pid_t old = s_live_postmaster(self);
    if (old > 0) {
        //  Left running by a node that died. Restart it rather than adopt
        //  it, so it runs with this run's settings.
        cd_log_warn("pg", "server already running (left by a previous run?); restarting it",
                    "{s:s, s:i}", "dir", self->dir, "pid", (int)old);
        int rc = s_pg_ctl_stop(self, "fast", errmsg);
        if (rc != 0) {
            return rc;
        }
    }
    int rc = s_write_conf(self, errmsg);
    if (rc != 0) {
        return rc;
    }
    if (s_file_size(self->logfile) > CD_PGEMBED_LOG_ROTATE) {
        char *old_log = cd__db_printf("%s.1", self->logfile);
        if (rename(self->logfile, old_log) != 0) {
            cd_log_warn("pg", "cannot rotate the server log", "{s:s}", "file", self->logfile);
        }
        free(old_log);
    }
    off_t log_from = s_file_size(self->logfile);
    char *pg_ctl = cd__db_printf("%s/pg_ctl", self->bindir);
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", self->start_timeout_s);
    char *argv[] = {pg_ctl,        "start", "-D", self->datadir, "-l",
                    self->logfile, "-w",    "-t", timeout,       NULL};
    char *err = NULL;
    rc = s_run_ok(argv, &self->cred, self->start_timeout_s + 15, "pg_ctl start", &err);
    if (rc != 0) {
        char *tail = s_log_tail(self, log_from);
        s_set_errmsg(errmsg, cd__db_printf("%s; server log %s: %s", err, self->logfile, tail));
        free(tail);
        free(err);
    } else {
        cd_log_info("pg", "started", "{s:s, s:i, s:b}", "dir", self->dir, "pid",
                    (int)s_pidfile_pid(self), "fast", self->fast);
    }
    free(pg_ctl);
    return rc;
}

//  ------------------------------------------------------------------
//  Public interface

//  Single-quoted conninfo value; the paths were checked for quotes and
//  backslashes, database names are escaped here.
static char *
s_conninfo_value(const char *value)
{
    size_t len = strlen(value);
    char *out = cd__db_calloc(1, 2 * len + 3);
    char *p = out;
    *p++ = '\'';
    for (const char *v = value; *v; v++) {
        if (*v == '\'' || *v == '\\') {
            *p++ = '\\';
        }
        *p++ = *v;
    }
    *p++ = '\'';
    return out;
}

char *
cd_pgembed_conninfo_for(const cd_pgembed_t *self, const char *dbname)
{
    char *host = s_conninfo_value(self->sockdir);
    char *db = s_conninfo_value(dbname);
    char *out =
        cd__db_printf("host=%s port=" CD_PGEMBED_PORT " dbname=%s user=" CD_PGEMBED_USER, host, db);
    free(db);
    free(host);
    return out;
}

int
cd_pgembed_create_database(cd_pgembed_t *self, const char *name, char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    char *conninfo = cd_pgembed_conninfo_for(self, "postgres");
    cd_db_t *db = NULL;
    int rc = cd_db_connect(conninfo, &db, errmsg);
    free(conninfo);
    if (rc != 0) {
        return rc;
    }
    const char *params[] = {name};
    int64_t exists = 0;
    rc = cd_db_query_int64(db, "SELECT count(*) FROM pg_database WHERE datname = $1", 1, params,
                           &exists);
    if (rc == 0 && !exists) {
        char *quoted = cd_db_quote_ident(db, name);
        char *sql = quoted ? cd__db_printf("CREATE DATABASE %s TEMPLATE template0", quoted) : NULL;
        rc = sql ? cd_db_exec(db, sql, NULL) : CD_EDB;
        //  Another session created it between our check and our CREATE.
        if (rc != 0 && cd_db_error_is(cd_db_error(db), "42P04")) {
            rc = 0;
        }
        free(sql);
        free(quoted);
        if (rc == 0) {
            cd_log_info("pg", "database created", "{s:s}", "name", name);
        }
    }
    if (rc != 0) {
        char *text = cd_db_error_format(cd_db_error(db));
        s_set_errmsg(errmsg, cd__db_printf("cannot create database %s: %s", name, text));
        free(text);
    }
    cd_db_close(&db);
    return rc;
}

static void
s_destroy(cd_pgembed_t **self_p)
{
    cd_pgembed_t *self = *self_p;
    if (!self) {
        return;
    }
    free(self->dir);
    free(self->datadir);
    free(self->sockdir);
    free(self->logfile);
    free(self->bindir);
    free(self->dbname);
    free(self->conninfo);
    free(self);
    *self_p = NULL;
}

//  Makes the cluster dir and fills in every path of self.
static int
s_prepare_dir(cd_pgembed_t *self, const char *dir, char **errmsg)
{
    char *abs = s_absolute(dir);
    int rc = s_check_path(abs, errmsg);
    if (rc != 0) {
        free(abs);
        return rc;
    }
    char *failed = NULL;
    bool created = false;
    int err = cd__datadir_mkdirs(abs, 0700, &created, &failed);
    if (err) {
        s_set_errmsg(errmsg, cd__db_printf("cannot create cluster dir %s: %s (at %s)", abs,
                                           strerror(err), failed));
        free(failed);
        free(abs);
        return err == EACCES || err == EPERM ? CD_EPERM : CD_EIO;
    }
    self->dir = realpath(abs, NULL);
    free(abs);
    if (!self->dir) {
        s_set_errmsg(errmsg, cd__db_printf("cannot resolve %s: %s", dir, strerror(errno)));
        return CD_EIO;
    }
    //  Symbolic links may have made the real path longer or odder.
    rc = s_check_path(self->dir, errmsg);
    if (rc == 0 && self->cred.drop) {
        rc = s_take_ownership(self, errmsg);
        if (rc == 0) {
            rc = s_check_reachable(self, errmsg);
        }
    }
    if (rc != 0) {
        if (created) {
            rmdir(self->dir);
        }
        return rc;
    }
    self->datadir = cd__db_printf("%s/data", self->dir);
    self->sockdir = cd__db_printf("%s/run", self->dir);
    self->logfile = cd__db_printf("%s/postgresql.log", self->dir);
    return s_mkdir_owned(self, self->sockdir, errmsg);
}

int
cd_pgembed_start(const cd_pgembed_opts_t *opts, cd_pgembed_t **out, char **errmsg)
{
    *out = NULL;
    if (errmsg) {
        *errmsg = NULL;
    }
    if (!opts || !opts->dir || !*opts->dir) {
        s_set_errmsg(errmsg, cd__db_strdup("no cluster dir given"));
        return CD_EINVAL;
    }
    cd_pgembed_t *self = cd__db_calloc(1, sizeof *self);
    self->fast = opts->fast;
    self->start_timeout_s = opts->start_timeout_s > 0 ? opts->start_timeout_s : 60;
    self->dbname = cd__db_strdup(opts->dbname ? opts->dbname : CD_PGEMBED_DEFAULT_DB);
    int rc = 0;
    if (opts->bindir) {
        self->bindir = cd__db_strdup(opts->bindir);
    } else {
        rc = cd_pgembed_find_bindir(&self->bindir, errmsg);
    }
    if (rc == 0) {
        rc = s_lookup_postgres(&self->cred, errmsg);
    }
    if (rc == 0) {
        rc = s_prepare_dir(self, opts->dir, errmsg);
    }
    if (rc != 0) {
        goto err_destroy;
    }
    self->conninfo = cd_pgembed_conninfo_for(self, self->dbname);
    char *version = cd__db_printf("%s/PG_VERSION", self->datadir);
    bool initialised = access(version, F_OK) == 0;
    free(version);
    if (!initialised) {
        rc = s_initdb(self, errmsg);
        if (rc != 0) {
            goto err_destroy;
        }
    }
    rc = cd_pgembed_restart(self, errmsg);
    if (rc != 0) {
        goto err_destroy;
    }
    *out = self;
    return 0;

err_destroy:
    s_destroy(&self);
    return rc;
}

int
cd_pgembed_restart(cd_pgembed_t *self, char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    int rc = s_pg_ctl_start(self, errmsg);
    if (rc == 0) {
        rc = cd_pgembed_create_database(self, self->dbname, errmsg);
        if (rc != 0) {
            //  Leave nothing running behind a failed start.
            s_pg_ctl_stop(self, "fast", NULL);
        }
    }
    return rc;
}

int
cd_pgembed_kill(cd_pgembed_t *self, const char *mode)
{
    if (!mode || (strcmp(mode, "smart") != 0 && strcmp(mode, "fast") != 0 &&
                  strcmp(mode, "immediate") != 0)) {
        return CD_EINVAL;
    }
    char *err = NULL;
    int rc = s_pg_ctl_stop(self, mode, &err);
    if (rc != 0) {
        cd_log_error("pg", "stop failed", "{s:s, s:s}", "dir", self->dir, "error", err);
    }
    free(err);
    return rc;
}

int
cd_pgembed_stop(cd_pgembed_t **self_p)
{
    if (!self_p || !*self_p) {
        return 0;
    }
    int rc = cd_pgembed_kill(*self_p, "fast");
    s_destroy(self_p);
    return rc;
}

const char *
cd_pgembed_conninfo(const cd_pgembed_t *self)
{
    return self->conninfo;
}

const char *
cd_pgembed_dir(const cd_pgembed_t *self)
{
    return self->dir;
}

const char *
cd_pgembed_datadir(const cd_pgembed_t *self)
{
    return self->datadir;
}

const char *
cd_pgembed_sockdir(const cd_pgembed_t *self)
{
    return self->sockdir;
}

const char *
cd_pgembed_bindir(const cd_pgembed_t *self)
{
    return self->bindir;
}

pid_t
cd_pgembed_pid(const cd_pgembed_t *self)
{
    return s_pidfile_pid(self);
}
