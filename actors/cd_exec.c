/*  cd_exec: the exec agent (see cd_exec.h).

    One s_run_t per step, from the moment it is taken to its answer. A run
    is queued (no child yet) or running: its child's pidfd and the parent
    ends of three pipes are watched, and a timer bounds it. The run ends
    when the child has been reaped: stdout and stderr are drained (without
    waiting for a grandchild that kept them open), the group is killed,
    the answer is sent, and the next queued run starts. Every path that
    ends a run goes through s_finish, so fds, watches and the timer are
    released in one place; nothing else frees a run (fini aside).

    Interface: cd_exec_ops, cd_exec_args_new, cd_exec_args_destroy. */
#include "cd_exec.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_mpjson.h"
#include "cd_step.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_DEFAULT_PATH "PATH=/usr/local/bin:/usr/bin:/bin"
#define S_REAP_POLL_MS 20 //  without a pidfd: how often waitpid is asked

typedef struct s_exec s_exec_t;

typedef struct {
    s_exec_t *exec;                //  the agent
    void *handle;                  //  its place in exec->runs or exec->queue
    cd_step_addr_t addr;           //  whom to answer
    uint8_t *in;                   //  stdin bytes
    size_t in_len;                 //  their length
    size_t in_off;                 //  written so far
    pid_t pid;                     //  the child (its process group), 0 before the start
    int pidfd;                     //  its pidfd, or -1
    int in_fd;                     //  parent ends of the pipes, -1 once closed
    int out_fd;                    //  ...
    int err_fd;                    //  ...
    char *out;                     //  stdout so far
    size_t out_len;                //  its length
    size_t out_cap;                //  allocated
    char err[CD_EXEC_STDERR_TAIL]; //  the last stderr bytes
    size_t err_len;                //  bytes in err
    int timer;                     //  timeout timer, 0 if none
    int reap_timer;                //  waitpid polling without a pidfd, 0 if none
    int timeout_ms;                //  the bound this run got
    int64_t started_us;            //  when the child started
    bool timed_out;                //  killed by the timer
    bool cancelled;                //  killed by a cancel: no answer
    bool too_big;                  //  killed for its output
} s_run_t;

struct s_exec {
    cd_actor_t *self;           //  the actor
    const cd_exec_args_t *args; //  borrowed from the factory
    zlistx_t *runs;             //  s_run_t * with a child
    zlistx_t *queue;            //  s_run_t * waiting for a slot
    cd_pack_t *pack;            //  answers
    cd_pack_t *output;          //  a result's output value
};

//  --- arguments ------------------------------------------------------------------

static char **
s_strv_new(size_t n)
{
    return (char **)zmalloc((n + 1) * sizeof(char *));
}

static void
s_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++) {
        free(v[i]);
    }
    free(v);
}

//  A JSON string without NUL bytes, 1..CD_EXEC_MAX_ARG bytes (0 allowed if
//  empty_ok).
static bool
s_plain_string(const json_t *value, bool empty_ok)
{
    if (!json_is_string(value)) {
        return false;
    }
    size_t len = json_string_length(value);
    return len == strlen(json_string_value(value)) && len <= CD_EXEC_MAX_ARG &&
           (empty_ok || len > 0);
}

static bool
s_env_name(const char *name)
{
    if (!(isalpha((unsigned char)name[0]) || name[0] == '_')) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '_')) {
            return false;
        }
    }
    return strlen(name) <= 128;
}

int
cd_exec_args_new(const json_t *config, int concurrency, cd_exec_args_t **out, char *why,
                 size_t why_size)
{
    *out = NULL;
    cd_exec_args_t *self = (cd_exec_args_t *)zmalloc(sizeof *self);
    self->timeout_ms = CD_EXEC_TIMEOUT_MS;
    self->max_output = CD_EXEC_MAX_OUTPUT;
    self->concurrency = concurrency <= 0                        ? 1
                        : concurrency > CD_EXEC_MAX_CONCURRENCY ? CD_EXEC_MAX_CONCURRENCY
                                                                : concurrency;
    const json_t *env = NULL;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)config, key, value)
    {
        if (streq(key, "argv")) {
            size_t n = json_array_size(value);
            if (!json_is_array(value) || n == 0 || n > CD_EXEC_MAX_ARGS) {
                snprintf(why, why_size, "config.argv: must be a non-empty array of strings");
                goto fail;
            }
            s_strv_free(self->argv);
            self->argv = s_strv_new(n);
            for (size_t i = 0; i < n; i++) {
                const json_t *arg = json_array_get(value, i);
                if (!s_plain_string(arg, i > 0)) {
                    snprintf(why, why_size,
                             "config.argv[%zu]: must be a string of at most 4096 bytes "
                             "without NUL",
                             i);
                    goto fail;
                }
                self->argv[i] = strdup(json_string_value(arg));
            }
            if (self->argv[0][0] != '/') {
                snprintf(why, why_size,
                         "config.argv[0]: must be an absolute path (no shell, "
                         "no PATH lookup)");
                goto fail;
            }
        } else if (streq(key, "timeout_ms")) {
            if (!json_is_integer(value) || json_integer_value(value) < 1 ||
                json_integer_value(value) > CD_EXEC_MAX_TIMEOUT_MS) {
                snprintf(why, why_size, "config.timeout_ms: must be an integer from 1 to %d",
                         CD_EXEC_MAX_TIMEOUT_MS);
                goto fail;
            }
            self->timeout_ms = (int)json_integer_value(value);
        } else if (streq(key, "max_output_bytes")) {
            if (!json_is_integer(value) || json_integer_value(value) < 1 ||
                json_integer_value(value) > (json_int_t)CD_EXEC_MAX_OUTPUT_LIMIT) {
                snprintf(why, why_size, "config.max_output_bytes: must be an integer from 1 to %u",
                         CD_EXEC_MAX_OUTPUT_LIMIT);
                goto fail;
            }
            self->max_output = (size_t)json_integer_value(value);
        } else if (streq(key, "env")) {
            if (!json_is_object(value) || json_object_size(value) > CD_EXEC_MAX_ENV) {
                snprintf(why, why_size, "config.env: must be an object of at most %d strings",
                         CD_EXEC_MAX_ENV);
                goto fail;
            }
            env = value;
        } else {
            snprintf(why, why_size,
                     "config.%.60s: unknown key (known: argv, timeout_ms, env, "
                     "max_output_bytes)",
                     key);
            goto fail;
        }
    }
    if (!self->argv) {
        snprintf(why, why_size,
                 "config.argv: required (an array of strings, the first an "
                 "absolute path)");
        goto fail;
    }
    self->envp = s_strv_new(json_object_size(env) + 1);
    size_t n = 0;
    bool has_path = false;
    json_object_foreach((json_t *)env, key, value)
    {
        if (!s_env_name(key) || !s_plain_string(value, true)) {
            snprintf(why, why_size,
                     "config.env.%.60s: names are [A-Za-z_][A-Za-z0-9_]*, values strings "
                     "without NUL",
                     key);
            goto fail;
        }
        has_path = has_path || streq(key, "PATH");
        if (asprintf(&self->envp[n], "%s=%s", key, json_string_value(value)) < 0) {
            self->envp[n] = NULL;
            snprintf(why, why_size, "config.env: out of memory");
            goto fail;
        }
        n++;
    }
    if (!has_path) {
        self->envp[n++] = strdup(S_DEFAULT_PATH);
    }
    *out = self;
    return 0;
fail:
    cd_exec_args_destroy(&self);
    return CD_EINVAL;
}

void
cd_exec_args_destroy(cd_exec_args_t **self_p)
{
    if (self_p && *self_p) {
        s_strv_free((*self_p)->argv);
        s_strv_free((*self_p)->envp);
        free(*self_p);
        *self_p = NULL;
    }
}

//  --- the child -----------------------------------------------------------------

//  In the forked child: only async-signal-safe calls until execve.
static void __attribute__((noreturn))
s_child(const cd_exec_args_t *args, int in_fd, int out_fd, int err_fd, pid_t parent)
{
    setpgid(0, 0);
    //  If the parent died between fork and prctl, nobody would send the
    //  signal: check that it is still the parent after asking.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(127);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        sigaction(sig, &dfl, NULL); //  fails harmlessly for SIGKILL, SIGSTOP, RT internals
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    //  The pipe ends are >= 3 (s_pipe), so these dup2 calls cannot clobber
    //  one another.
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
        _exit(127);
    }
    close_range(3, ~0u, 0);
    execve(args->argv[0], args->argv, args->envp);
    static const char msg[] = "cadre exec: cannot execute argv[0] (execve failed)\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
}

//  A pipe whose ends are >= 3 (never stdin/out/err, even in a process
//  that closed them), close-on-exec, the parent's end non-blocking. end
//  is the parent's side: 0 (it reads) or 1 (it writes). Returns 0 or -1.
static int
s_pipe(int fds[2], int parent_end)
{
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 3) {
            int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            close(fds[i]);
            fds[i] = moved;
        }
    }
    if (fds[0] < 0 || fds[1] < 0 ||
        fcntl(fds[parent_end], F_SETFL, fcntl(fds[parent_end], F_GETFL) | O_NONBLOCK) != 0) {
        if (fds[0] >= 0) {
            close(fds[0]);
        }
        if (fds[1] >= 0) {
            close(fds[1]);
        }
        return -1;
    }
    return 0;
}

//  --- runs ------------------------------------------------------------------------

static void
s_run_destroy(void **item)
{
    s_run_t *run = (s_run_t *)*item;
    if (run) {
        free(run->in);
        free(run->out);
        free(run);
        *item = NULL;
    }
}

static void
s_close_fd(cd_actor_t *self, int *fd)
{
    if (*fd >= 0) {
        cd_actor_unwatch_fd(self, *fd);
        close(*fd);
        *fd = -1;
    }
}

static void
s_kill_group(s_run_t *run)
{
    if (run->pid > 0) {
        kill(-run->pid, SIGKILL);
    }
}

//  Appends stdout bytes; false when the bound is passed.
static bool
s_out_append(s_run_t *run, const char *buf, size_t n)
{
    size_t max = run->exec->args->max_output;
    if (run->out_len + n > max) {
        return false;
    }
    if (run->out_len + n + 1 > run->out_cap) {
        size_t cap = run->out_cap ? run->out_cap * 2 : 4096;
        while (cap < run->out_len + n + 1) {
            cap *= 2;
        }
        run->out = (char *)realloc(run->out, cap);
        assert(run->out);
        run->out_cap = cap;
    }
    memcpy(run->out + run->out_len, buf, n);
    run->out_len += n;
    run->out[run->out_len] = '\0';
    return true;
}

//  Keeps the last CD_EXEC_STDERR_TAIL bytes of stderr.
static void
s_err_append(s_run_t *run, const char *buf, size_t n)
{
    if (n >= CD_EXEC_STDERR_TAIL) {
        memcpy(run->err, buf + n - CD_EXEC_STDERR_TAIL, CD_EXEC_STDERR_TAIL);
        run->err_len = CD_EXEC_STDERR_TAIL;
        return;
    }
    if (run->err_len + n > CD_EXEC_STDERR_TAIL) {
        size_t drop = run->err_len + n - CD_EXEC_STDERR_TAIL;
        memmove(run->err, run->err + drop, run->err_len - drop);
        run->err_len -= drop;
    }
    memcpy(run->err + run->err_len, buf, n);
    run->err_len += n;
}

//  Reads what fd has now. Returns 1 at EOF (or a read error), else 0.
static int
s_drain(s_run_t *run, int fd, bool is_out)
{
    char buf[16384];
    while (true) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            if (!is_out) {
                s_err_append(run, buf, (size_t)n);
            } else if (!run->too_big && !s_out_append(run, buf, (size_t)n)) {
                //  Keep reading (and dropping) so the child is not stuck
                //  on a full pipe while the kill lands.
                run->too_big = true;
                s_kill_group(run);
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : 1;
    }
}

static void s_finish(cd_actor_t *self, s_run_t *run);

static int
s_on_stdout(cd_actor_t *self, void *socket, void *arg)
{
    s_run_t *run = (s_run_t *)arg;
    if (s_drain(run, run->out_fd, true)) {
        s_close_fd(self, &run->out_fd);
    }
    return 0;
}

static int
s_on_stderr(cd_actor_t *self, void *socket, void *arg)
{
    s_run_t *run = (s_run_t *)arg;
    if (s_drain(run, run->err_fd, false)) {
        s_close_fd(self, &run->err_fd);
    }
    return 0;
}

static int
s_on_stdin(cd_actor_t *self, void *socket, void *arg)
{
    s_run_t *run = (s_run_t *)arg;
    while (run->in_off < run->in_len) {
        ssize_t n = write(run->in_fd, run->in + run->in_off, run->in_len - run->in_off);
        if (n > 0) {
            run->in_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (n < 0 && errno == EPIPE) {
            //  The child closed its stdin: what it did not read is its
            //  business. Take the SIGPIPE this write raised (blocked in
            //  this thread) off the pending set.
            sigset_t pipe_set;
            sigemptyset(&pipe_set);
            sigaddset(&pipe_set, SIGPIPE);
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
        break;
    }
    s_close_fd(self, &run->in_fd);
    return 0;
}

//  Packs the answer of a run whose child was reaped with status into
//  exec->pack. Returns its kind.
static cd_kind_t
s_answer(s_run_t *run, int status)
{
    s_exec_t *exec = run->exec;
    cd_pack_t *pack = exec->pack;
    char message[CD_EXEC_STDERR_TAIL + 160];
    int tail = (int)run->err_len;
    if (run->too_big) {
        snprintf(message, sizeof message, "stdout exceeded %zu bytes; the command was killed",
                 exec->args->max_output);
        cd_step_pack_error(pack, "output_too_large", message, false, -1);
        return CD_KIND_ERROR;
    }
    if (run->timed_out) {
        snprintf(message, sizeof message, "killed after %d ms: %.*s", run->timeout_ms, tail,
                 run->err);
        cd_step_pack_error(pack, "timeout", message, true, -1);
        return CD_KIND_ERROR;
    }
    if (WIFSIGNALED(status)) {
        snprintf(message, sizeof message, "killed by signal %d: %.*s", WTERMSIG(status), tail,
                 run->err);
        cd_step_pack_error(pack, "exit_status", message, true, -1);
        return CD_KIND_ERROR;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(message, sizeof message, "exited with status %d: %.*s", WEXITSTATUS(status), tail,
                 run->err);
        cd_step_pack_error(pack, "exit_status", message, true, -1);
        return CD_KIND_ERROR;
    }
    //  stdout as one JSON value if it is one, else as text.
    json_t *output =
        run->out_len ? json_loadb(run->out, run->out_len, JSON_DECODE_ANY, NULL) : NULL;
    if (!output) {
        output = json_stringn(run->out ? run->out : "", run->out_len);
    }
    cd_pack_reset(exec->output);
    if (!output || cd_mpjson_encode(output, exec->output) != 0) {
        cd_step_pack_error(pack, "malformed_output",
                           output ? "stdout nests too deeply" : "stdout is not UTF-8 text", false,
                           -1);
        json_decref(output);
        return CD_KIND_ERROR;
    }
    json_decref(output);
    cd_step_pack_result(pack, cd_pack_bytes(exec->output), NULL);
    return CD_KIND_RESULT;
}

//  The child has been reaped with status: drain, answer, clean up.
static void
s_reaped(cd_actor_t *self, s_run_t *run, int status)
{
    if (run->out_fd >= 0) {
        s_drain(run, run->out_fd, true);
    }
    if (run->err_fd >= 0) {
        s_drain(run, run->err_fd, false);
    }
    if (!run->cancelled) {
        cd_kind_t kind = s_answer(run, status);
        cd_step_send(self, &run->addr, kind, cd_pack_bytes(run->exec->pack));
    }
    cd_log_debug(cd_actor_name(self), "command ended", "{s:I, s:i, s:I}", "task_id",
                 (json_int_t)run->addr.task_id, "status", status, "ms",
                 (json_int_t)((cd_now_us() - run->started_us) / 1000));
    s_finish(self, run);
}

//  Reaps the child if it has ended. While it is a zombie its pid, and so
//  its process group id, cannot be reused: that is the moment to kill
//  whatever it left in the group, then reap it.
static void
s_try_reap(cd_actor_t *self, s_run_t *run)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)run->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno != EINTR) {
            //  Reaped by someone else (a stray waitpid(-1)): the status is
            //  lost, and the group may be gone.
            run->pid = 0;
            s_reaped(self, run, 0xff00);
        }
        return;
    }
    if (info.si_pid == 0) {
        return; //  still running
    }
    s_kill_group(run);
    int status = 0;
    while (waitpid(run->pid, &status, 0) < 0 && errno == EINTR) {
    }
    run->pid = 0;
    s_reaped(self, run, status);
}

static int
s_on_pidfd(cd_actor_t *self, void *socket, void *arg)
{
    s_try_reap(self, (s_run_t *)arg);
    return 0;
}

static int
s_on_reap_poll(cd_actor_t *self, void *arg)
{
    s_try_reap(self, (s_run_t *)arg);
    return 0;
}

static int
s_on_timeout(cd_actor_t *self, void *arg)
{
    s_run_t *run = (s_run_t *)arg;
    run->timer = 0;
    run->timed_out = true;
    s_kill_group(run);
    return 0;
}

static void s_start(cd_actor_t *self, s_run_t *run);

//  Releases a finished run and starts the next queued one.
static void
s_finish(cd_actor_t *self, s_run_t *run)
{
    s_exec_t *exec = run->exec;
    s_close_fd(self, &run->in_fd);
    s_close_fd(self, &run->out_fd);
    s_close_fd(self, &run->err_fd);
    s_close_fd(self, &run->pidfd);
    if (run->timer) {
        cd_actor_cancel(self, run->timer);
    }
    if (run->reap_timer) {
        cd_actor_cancel(self, run->reap_timer);
    }
    zlistx_delete(exec->runs, run->handle);
    //  A queued run that fails to start frees no slot: go on.
    while (zlistx_size(exec->queue) > 0 &&
           zlistx_size(exec->runs) < (size_t)exec->args->concurrency) {
        s_run_t *next = (s_run_t *)zlistx_first(exec->queue);
        zlistx_detach(exec->queue, next->handle);
        s_start(self, next);
    }
}

//  Answers a run that could not start and frees it.
static void
s_fail_start(cd_actor_t *self, s_run_t *run, const char *code, const char *message, bool retryable)
{
    cd_step_pack_error(run->exec->pack, code, message, retryable, -1);
    cd_step_send(self, &run->addr, CD_KIND_ERROR, cd_pack_bytes(run->exec->pack));
    void *item = run;
    s_run_destroy(&item);
}

//  Starts a run's child (run is in no list yet).
static void
s_start(cd_actor_t *self, s_run_t *run)
{
    s_exec_t *exec = run->exec;
    int timeout_ms = exec->args->timeout_ms;
    if (run->addr.deadline > 0) {
        int64_t left_ms = (run->addr.deadline - cd_now_us()) / 1000;
        if (left_ms <= 0) {
            s_fail_start(self, run, "timeout", "the step's deadline passed before it started",
                         true);
            return;
        }
        if (left_ms < timeout_ms) {
            timeout_ms = (int)left_ms;
        }
    }
    int in[2], out[2], err[2];
    if (s_pipe(in, 1) != 0) {
        s_fail_start(self, run, "spawn_failed", strerror(errno), true);
        return;
    }
    if (s_pipe(out, 0) != 0) {
        close(in[0]);
        close(in[1]);
        s_fail_start(self, run, "spawn_failed", strerror(errno), true);
        return;
    }
    if (s_pipe(err, 0) != 0) {
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        s_fail_start(self, run, "spawn_failed", strerror(errno), true);
        return;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        s_child(exec->args, in[0], out[1], err[1], parent);
    }
    int fork_errno = errno;
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        s_fail_start(self, run, "spawn_failed", strerror(fork_errno), true);
        return;
    }
    //  Also here: a kill of the group must find it even if the child has
    //  not run yet (EACCES once it has exec'd is fine: it did it itself).
    setpgid(pid, pid);
    run->pid = pid;
    run->started_us = cd_now_us();
    run->timeout_ms = timeout_ms;
    run->in_fd = in[1];
    run->out_fd = out[0];
    run->err_fd = err[0];
    run->handle = zlistx_add_end(exec->runs, run);
    run->pidfd = pidfd_open(pid, 0);
    if (run->pidfd >= 0) {
        fcntl(run->pidfd, F_SETFD, FD_CLOEXEC);
        cd_actor_watch_fd_events(self, run->pidfd, POLLIN, s_on_pidfd, run);
    } else {
        run->pidfd = -1;
        run->reap_timer = cd_actor_every(self, S_REAP_POLL_MS, s_on_reap_poll, run);
    }
    cd_actor_watch_fd_events(self, run->out_fd, POLLIN, s_on_stdout, run);
    cd_actor_watch_fd_events(self, run->err_fd, POLLIN, s_on_stderr, run);
    if (run->in_len > 0) {
        cd_actor_watch_fd_events(self, run->in_fd, POLLOUT, s_on_stdin, run);
    } else {
        s_close_fd(self, &run->in_fd);
    }
    run->timer = cd_actor_after(self, timeout_ms, s_on_timeout, run);
}

//  --- the actor --------------------------------------------------------------------

//  The stdin bytes of a step: a string raw, anything else as JSON text.
static int
s_stdin_bytes(const cd_step_view_t *view, uint8_t **out, size_t *len)
{
    if (view->input_raw) {
        *out = (uint8_t *)malloc(view->input.len + 1);
        assert(*out);
        memcpy(*out, view->input.ptr, view->input.len);
        *len = view->input.len;
        return 0;
    }
    json_t *input = NULL;
    int rc = cd_mpjson_decode(view->input, &input, NULL);
    if (rc != 0) {
        return rc;
    }
    if (json_is_string(input)) {
        *len = json_string_length(input);
        *out = (uint8_t *)malloc(*len + 1);
        assert(*out);
        memcpy(*out, json_string_value(input), *len);
    } else {
        char *text = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
        assert(text);
        *out = (uint8_t *)text;
        *len = strlen(text);
    }
    json_decref(input);
    return 0;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_exec_t *exec = (s_exec_t *)state;
    if (cd_step_is_cancel(env)) {
        for (s_run_t *run = (s_run_t *)zlistx_first(exec->runs); run;
             run = (s_run_t *)zlistx_next(exec->runs)) {
            if (cd_step_cancel_matches(env, &run->addr)) {
                run->cancelled = true;
                s_kill_group(run);
            }
        }
        s_run_t *run = (s_run_t *)zlistx_first(exec->queue);
        while (run) {
            s_run_t *next = (s_run_t *)zlistx_next(exec->queue);
            if (cd_step_cancel_matches(env, &run->addr)) {
                zlistx_delete(exec->queue, run->handle);
            }
            run = next;
        }
        return 0;
    }
    if (!cd_step_is_step(env)) {
        return 0;
    }
    cd_step_view_t view;
    const char *why = NULL;
    int rc = cd_step_view(env, &view, &why);
    s_run_t *run = (s_run_t *)zmalloc(sizeof *run);
    run->exec = exec;
    run->pidfd = run->in_fd = run->out_fd = run->err_fd = -1;
    cd_step_addr(env, &view, &run->addr);
    if (rc == 0 && s_stdin_bytes(&view, &run->in, &run->in_len) != 0) {
        why = "the step's input does not convert to JSON";
        rc = CD_EPROTO;
    }
    if (rc != 0) {
        s_fail_start(self, run, "bad_request", why, false);
        return 0;
    }
    if (zlistx_size(exec->runs) < (size_t)exec->args->concurrency) {
        s_start(self, run);
    } else {
        run->handle = zlistx_add_end(exec->queue, run);
    }
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    //  Writing to a child that closed its stdin raises SIGPIPE: blocked in
    //  this thread only, the write just fails with EPIPE.
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    s_exec_t *exec = (s_exec_t *)zmalloc(sizeof *exec);
    exec->self = self;
    exec->args = (const cd_exec_args_t *)args;
    exec->runs = zlistx_new();
    zlistx_set_destructor(exec->runs, s_run_destroy);
    exec->queue = zlistx_new();
    zlistx_set_destructor(exec->queue, s_run_destroy);
    exec->pack = cd_pack_new();
    exec->output = cd_pack_new();
    *state_p = exec;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_exec_t *exec = (s_exec_t *)*state_p;
    if (!exec) {
        return;
    }
    //  No child outlives its agent: kill every group, then reap (SIGKILL
    //  cannot be ignored, so the wait is short). Steps still owed an answer
    //  get one, so the orchestrator need not wait for its timeout.
    for (s_run_t *run = (s_run_t *)zlistx_first(exec->runs); run;
         run = (s_run_t *)zlistx_next(exec->runs)) {
        s_kill_group(run);
    }
    cd_step_pack_error(exec->pack, "agent_stopped",
                       "the exec agent stopped; its command was killed", true, -1);
    cd_bin_t stopped = cd_pack_bytes(exec->pack);
    for (s_run_t *run = (s_run_t *)zlistx_first(exec->queue); run;
         run = (s_run_t *)zlistx_next(exec->queue)) {
        cd_step_send(self, &run->addr, CD_KIND_ERROR, stopped);
    }
    for (s_run_t *run = (s_run_t *)zlistx_first(exec->runs); run;
         run = (s_run_t *)zlistx_next(exec->runs)) {
        if (run->pid > 0) {
            while (waitpid(run->pid, NULL, 0) < 0 && errno == EINTR) {
            }
        }
        if (!run->cancelled) {
            cd_step_send(self, &run->addr, CD_KIND_ERROR, stopped);
        }
        s_close_fd(self, &run->in_fd);
        s_close_fd(self, &run->out_fd);
        s_close_fd(self, &run->err_fd);
        s_close_fd(self, &run->pidfd);
    }
    zlistx_destroy(&exec->runs);
    zlistx_destroy(&exec->queue);
    cd_pack_destroy(&exec->pack);
    cd_pack_destroy(&exec->output);
    free(exec);
    *state_p = NULL;
}

const cd_actor_ops_t cd_exec_ops = {
    .kind = "exec",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
