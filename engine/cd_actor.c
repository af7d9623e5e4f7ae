/*  cd_actor: the actor runtime (see cd_actor.h).

    Each actor thread runs one loop: zmq_poll over its pipe, its inbox, the
    sockets it watches, with the nearest timer as the timeout. Inbox messages
    are drained in batches (up to CD_ACTOR_BATCH per wake-up) because a
    cross-core wake-up costs far more than a message; between batches the
    pipe is looked at again so heartbeats are answered promptly.

    Outbound goes through the actor's mailer (cd_mailer.c).

    Interface:
      supervisors: cd_actor_inbox_new, cd_actor_start, cd_actor_stop, cd_actor_reap
      handlers:    cd_actor_send, cd_actor_forward_frames, cd_actor_dead_letter,
                   cd_actor_watch/unwatch, cd_actor_after/every/cancel, cd_actor_quit */
#include "cd_actor.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_mailer.h"
#include "engine_internal.h"

#include <poll.h>
#include <sys/time.h>
#include <time.h>

#define CD_ACTOR_BATCH 64 //  inbox messages handled per wake-up

typedef struct {
    void *socket;       //  watched socket (zsock_t, zactor_t), or NULL for a plain fd
    int fd;             //  the plain fd, or the socket's ZMQ_FD
    short events;       //  plain fd: what to poll for (a socket: POLLIN)
    short revents;      //  plain fd: what the last poll reported
    cd_actor_io_fn *fn; //  called when readable
    void *arg;          //  passed to fn
    bool drains;        //  socket: fn says CD_ACTOR_DRAINED when it found nothing
} s_watch_t;

typedef struct {
    int id;                //  > 0; 0 marks a free slot
    int64_t due_us;        //  next firing, monotonic µs
    int interval_ms;       //  0 for one-shot
    cd_actor_timer_fn *fn; //  callback
    void *arg;             //  passed to fn
} s_timer_t;

struct cd_actor {
    cd_instance_t *inst;     //  borrowed from the supervisor
    zsock_t *pipe;           //  to the supervisor; borrowed from zactor
    cd_mailer_t *mailer;     //  outbound
    s_watch_t *watches;      //  watched sockets
    size_t n_watches;        //  used entries
    size_t cap_watches;      //  allocated entries
    struct pollfd *fds;      //  pipe, inbox, watches: what the loop sleeps on
    size_t cap_fds;          //  allocated entries
    bool items_dirty;        //  watches changed during this pass
    bool pipe_touched;       //  a handler used the pipe: look at it again
    s_timer_t *timers;       //  timers
    size_t n_timers;         //  used slots (some may be free)
    int next_timer_id;       //  last id handed out
    bool quit;               //  leave the loop after this handler
    zmq_msg_t frames[2];     //  message being handled: envelope, payload frame
    cd_envelope_t env;       //  its decoded view
    short fd_revents;        //  revents of the fd whose callback runs, else 0
    cd_queue_meter_t *meter; //  the inbox's meter (a reference), or NULL
};

int64_t
cd_now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int64_t
s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  --- inbox and lifecycle (supervisor side) ----------------------------------

zsock_t *
cd_actor_inbox_new(const cd_runtime_t *rt, const char *name)
{
    char endpoint[CD_REGISTRY_MAX_ENDPOINT];
    if (cd_registry_endpoint(rt->registry, name, endpoint, sizeof endpoint) != 0) {
        cd_log_error("runtime", "actor name too long", "{s:s}", "name", name);
        return NULL;
    }
    zsock_t *inbox = zsock_new(ZMQ_PULL);
    assert(inbox);
    zsock_set_rcvhwm(inbox, rt->queue_hwm);
    zsock_set_linger(inbox, 0);
    if (zsock_bind(inbox, "%s", endpoint) != 0) {
        cd_log_error("runtime", "cannot bind actor inbox", "{s:s, s:s, s:s}", "name", name,
                     "endpoint", endpoint, "error", zmq_strerror(zmq_errno()));
        zsock_destroy(&inbox);
        return NULL;
    }
    cd_registry_bound(rt->registry, name);
    return inbox;
}

void
cd_actor_inbox_destroy(zsock_t **inbox_p)
{
    if (inbox_p && *inbox_p) {
        const char *endpoint = zsock_endpoint(*inbox_p);
        if (endpoint) {
            zsock_unbind(*inbox_p, "%s", endpoint);
        }
        zsock_destroy(inbox_p);
    }
}

static void s_actor_main(zsock_t *pipe, void *args);

zactor_t *
cd_actor_spawn(cd_instance_t *inst)
{
    atomic_store(&inst->abandoned, false);
    zactor_t *actor = zactor_new(s_actor_main, inst);
    assert(actor);
    //  Every later wait on this pipe is bounded: zactor_destroy's own wait
    //  included (see cd_actor_reap).
    zsock_set_rcvtimeo(actor, inst->rt->stop_timeout_ms);
    zsock_set_sndtimeo(actor, 0);
    return actor;
}

int
cd_actor_await_ready(zactor_t **actor_p, cd_instance_t *inst, char *why, size_t why_size)
{
    zmsg_t *msg = zmsg_recv(*actor_p);
    char *cmd = msg ? zmsg_popstr(msg) : NULL;
    if (cmd && streq(cmd, "$READY")) {
        zstr_free(&cmd);
        zmsg_destroy(&msg);
        return 0;
    }
    char *reason = msg ? zmsg_popstr(msg) : NULL;
    snprintf(why, why_size, "%s", reason ? reason : cmd ? cmd : "no answer from actor init");
    zstr_free(&reason);
    bool failed = cmd && streq(cmd, "$FAILED");
    zstr_free(&cmd);
    zmsg_destroy(&msg);
    if (failed) {
        //  The thread exits right after $FAILED: wait for it (bounded).
        zsock_wait(*actor_p);
    } else {
        atomic_store(&inst->abandoned, true);
    }
    cd_actor_reap(actor_p);
    return CD_ECRASH;
}

zactor_t *
cd_actor_start(cd_instance_t *inst, char *why, size_t why_size)
{
    zactor_t *actor = cd_actor_spawn(inst);
    return cd_actor_await_ready(&actor, inst, why, why_size) == 0 ? actor : NULL;
}

void
cd_actor_reap(zactor_t **actor_p)
{
    if (!actor_p || !*actor_p) {
        return;
    }
    //  The thread has ended or is abandoned: zactor_destroy's $TERM either
    //  fails (no peer) or is never answered, so do not let it wait.
    zsock_set_rcvtimeo(*actor_p, 0);
    zsock_set_sndtimeo(*actor_p, 0);
    zactor_destroy(actor_p);
}

int
cd_actor_stop(zactor_t **actor_p, int timeout_ms)
{
    zactor_t *actor = *actor_p;
    zsock_set_sndtimeo(actor, 0);
    zstr_send(actor, "$TERM");
    int64_t deadline = s_mono_us() + (int64_t)timeout_ms * 1000;
    while (true) {
        int64_t left_ms = (deadline - s_mono_us()) / 1000;
        if (left_ms <= 0) {
            return CD_ETIMEDOUT;
        }
        zmq_pollitem_t item = {zsock_resolve(actor), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left_ms) <= 0) {
            continue;
        }
        zmsg_t *msg = zmsg_recv(actor);
        bool ended = msg && zmsg_signal(msg) >= 0;
        zmsg_destroy(&msg);
        if (ended) {
            cd_actor_reap(actor_p);
            return 0;
        }
    }
}

//  --- sending (actor thread) ----------------------------------------------------

void
cd_actor_envelope_init(cd_actor_t *self, cd_envelope_t *env, cd_kind_t kind, const char *to)
{
    cd_mailer_envelope_init(self->mailer, env, kind, to);
}

int
cd_actor_send(cd_actor_t *self, const cd_envelope_t *env)
{
    return cd_mailer_send(self->mailer, env);
}

int
cd_actor_forward_frames(cd_actor_t *self, const char *to, zmq_msg_t *frames, int n)
{
    return cd_mailer_forward_frames(self->mailer, to, frames, n);
}

void
cd_actor_dead_letter(cd_actor_t *self, const char *to, const char *reason, const uint8_t *raw,
                     size_t raw_size)
{
    cd_mailer_dead_letter(self->mailer, to, reason, raw, raw_size);
}

//  --- watches and timers (actor thread) ---------------------------------------

static void
s_watch_add(cd_actor_t *self, s_watch_t watch)
{
    if (self->n_watches == self->cap_watches) {
        self->cap_watches = self->cap_watches ? self->cap_watches * 2 : 8;
        self->watches = (s_watch_t *)realloc(self->watches, self->cap_watches * sizeof(s_watch_t));
        assert(self->watches);
    }
    self->watches[self->n_watches++] = watch;
    self->items_dirty = true;
}

int
cd_actor_watch(cd_actor_t *self, void *socket, cd_actor_io_fn *fn, void *arg)
{
    s_watch_add(self, (s_watch_t){socket, zsock_fd(socket), POLLIN, 0, fn, arg});
    return 0;
}

int
cd_actor_watch_drain(cd_actor_t *self, void *socket, cd_actor_io_fn *fn, void *arg)
{
    s_watch_add(self, (s_watch_t){socket, zsock_fd(socket), POLLIN, 0, fn, arg, true});
    return 0;
}

int
cd_actor_watch_fd(cd_actor_t *self, int fd, cd_actor_io_fn *fn, void *arg)
{
    s_watch_add(self, (s_watch_t){NULL, fd, POLLIN, 0, fn, arg});
    return 0;
}

int
cd_actor_watch_fd_events(cd_actor_t *self, int fd, short events, cd_actor_io_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->n_watches; i++) {
        if (!self->watches[i].socket && self->watches[i].fd == fd) {
            self->watches[i].events = events;
            self->watches[i].revents = 0;
            self->watches[i].fn = fn;
            self->watches[i].arg = arg;
            self->items_dirty = true;
            return 0;
        }
    }
    s_watch_add(self, (s_watch_t){NULL, fd, events, 0, fn, arg});
    return 0;
}

short
cd_actor_fd_revents(const cd_actor_t *self)
{
    return self->fd_revents;
}

static void
s_unwatch_at(cd_actor_t *self, size_t i)
{
    memmove(&self->watches[i], &self->watches[i + 1],
            (self->n_watches - i - 1) * sizeof(s_watch_t));
    self->n_watches--;
    self->items_dirty = true;
}

void
cd_actor_unwatch(cd_actor_t *self, void *socket)
{
    for (size_t i = 0; i < self->n_watches; i++) {
        if (self->watches[i].socket == socket) {
            s_unwatch_at(self, i);
            return;
        }
    }
}

void
cd_actor_unwatch_fd(cd_actor_t *self, int fd)
{
    for (size_t i = 0; i < self->n_watches; i++) {
        if (!self->watches[i].socket && self->watches[i].fd == fd) {
            s_unwatch_at(self, i);
            return;
        }
    }
}

static int
s_timer_add(cd_actor_t *self, int delay_ms, int interval_ms, cd_actor_timer_fn *fn, void *arg)
{
    size_t slot = self->n_timers;
    for (size_t i = 0; i < self->n_timers; i++) {
        if (self->timers[i].id == 0) {
            slot = i;
            break;
        }
    }
    if (slot == self->n_timers) {
        self->timers = (s_timer_t *)realloc(self->timers, (self->n_timers + 1) * sizeof(s_timer_t));
        assert(self->timers);
        self->n_timers++;
    }
    int id = ++self->next_timer_id;
    self->timers[slot] =
        (s_timer_t){id, s_mono_us() + (int64_t)delay_ms * 1000, interval_ms, fn, arg};
    return id;
}

int
cd_actor_after(cd_actor_t *self, int delay_ms, cd_actor_timer_fn *fn, void *arg)
{
    return s_timer_add(self, delay_ms, 0, fn, arg);
}

int
cd_actor_every(cd_actor_t *self, int interval_ms, cd_actor_timer_fn *fn, void *arg)
{
    return s_timer_add(self, interval_ms, interval_ms > 0 ? interval_ms : 1, fn, arg);
}

void
cd_actor_cancel(cd_actor_t *self, int timer_id)
{
    for (size_t i = 0; i < self->n_timers; i++) {
        if (self->timers[i].id == timer_id) {
            self->timers[i].id = 0;
        }
    }
}

//  Milliseconds until the nearest timer, or -1 if there is none.
static long
s_poll_timeout(cd_actor_t *self)
{
    int64_t nearest = INT64_MAX;
    for (size_t i = 0; i < self->n_timers; i++) {
        if (self->timers[i].id && self->timers[i].due_us < nearest) {
            nearest = self->timers[i].due_us;
        }
    }
    if (nearest == INT64_MAX) {
        return -1;
    }
    int64_t left = nearest - s_mono_us();
    return left <= 0 ? 0 : (long)((left + 999) / 1000);
}

static int
s_run_timers(cd_actor_t *self)
{
    int64_t now = s_mono_us();
    //  A callback may add timers (realloc): index, never hold a pointer.
    for (size_t i = 0; i < self->n_timers; i++) {
        if (self->timers[i].id == 0 || self->timers[i].due_us > now) {
            continue;
        }
        cd_actor_timer_fn *fn = self->timers[i].fn;
        void *arg = self->timers[i].arg;
        if (self->timers[i].interval_ms > 0) {
            self->timers[i].due_us = now + (int64_t)self->timers[i].interval_ms * 1000;
        } else {
            self->timers[i].id = 0;
        }
        int rc = fn(self, arg);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void
cd_actor_quit(cd_actor_t *self)
{
    self->quit = true;
}

const char *
cd_actor_name(const cd_actor_t *self)
{
    return self->inst->name;
}

const cd_runtime_t *
cd_actor_runtime(const cd_actor_t *self)
{
    return self->inst->rt;
}

zsock_t *
cd_actor_pipe(cd_actor_t *self)
{
    //  Sending on a ZeroMQ socket can consume the wake-up of a message
    //  arriving on it: the loop must look at the pipe again before sleeping.
    self->pipe_touched = true;
    return self->pipe;
}

zmq_msg_t *
cd_actor_current_frame(cd_actor_t *self, int index)
{
    return (index == 0 || (index == 1 && self->env.payload_in_frame)) ? &self->frames[index] : NULL;
}

int
cd__actor_recv(void *socket, int flags, zmq_msg_t frames[2], cd_envelope_t *env, const char **why)
{
    if (zmq_msg_recv(&frames[0], socket, flags) < 0) {
        return CD_ETIMEDOUT;
    }
    int n = 1;
    zmq_msg_t *last = &frames[0];
    while (zmq_msg_more(last)) {
        //  Only envelope [+ payload] is valid; drain anything longer.
        last = &frames[1];
        zmq_msg_recv(last, socket, 0);
        n++;
    }
    if (n > 2) {
        *why = "too many frames";
        return CD_EPROTO;
    }
    int rc = cd_envelope_decode((const uint8_t *)zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]),
                                env, why);
    if (rc == 0 && env->payload_in_frame != (n == 2)) {
        *why = "payload frame missing or unexpected";
        return CD_EPROTO;
    }
    if (rc == 0 && n == 2) {
        rc = cd_envelope_attach_payload(env, (const uint8_t *)zmq_msg_data(&frames[1]),
                                        zmq_msg_size(&frames[1]), why);
    }
    return rc;
}

//  --- the loop (actor thread) ---------------------------------------------------

//  Handles one pipe command. Returns 0, 1 to leave the loop, or an error.
static int
s_on_pipe_one(cd_actor_t *self, void *state)
{
    zmsg_t *msg = zmsg_recv(self->pipe);
    if (!msg) {
        return 0;
    }
    char *command = zmsg_popstr(msg);
    int rc = 0;
    if (!command) {
        rc = 0;
    } else if (streq(command, "$TERM")) {
        rc = 1;
    } else if (streq(command, "$PING")) {
        zstr_send(self->pipe, "$PONG");
    } else if (self->inst->ops->command) {
        rc = self->inst->ops->command(self, state, command, msg);
    }
    zstr_free(&command);
    zmsg_destroy(&msg);
    return rc;
}

//  Handles every command waiting on the pipe.
static int
s_on_pipe(cd_actor_t *self, void *state)
{
    while (zsock_events(self->pipe) & ZMQ_POLLIN) {
        int rc = s_on_pipe_one(self, state);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

//  Calls the callback of every watched socket that is readable (up to a
//  batch each), and of every plain fd the last poll reported.
static int
s_on_watches(cd_actor_t *self)
{
    self->items_dirty = false;
    for (size_t i = 0; i < self->n_watches && !self->items_dirty; i++) {
        s_watch_t watch = self->watches[i];
        if (!watch.socket) {
            self->watches[i].revents = 0;
            if (watch.revents & (watch.events | POLLERR | POLLHUP)) {
                self->fd_revents = watch.revents;
                int rc = watch.fn(self, NULL, watch.arg);
                self->fd_revents = 0;
                if (rc != 0) {
                    return rc;
                }
            }
            continue;
        }
        //  Asking a socket for ZMQ_EVENTS makes it look at its command
        //  pipe, a system call: a draining watch is not asked, its callback
        //  tries to receive and says when nothing came.
        for (int n = 0; n < CD_ACTOR_BATCH && !self->items_dirty &&
                        (watch.drains || (zsock_events(watch.socket) & ZMQ_POLLIN));
             n++) {
            int rc = watch.fn(self, watch.socket, watch.arg);
            if (rc == CD_ACTOR_DRAINED && watch.drains) {
                break;
            }
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

//  True if a watched socket still has input (checked after the callbacks
//  and timers, which may have sent on them, right before sleeping).
static bool
s_watches_pending(cd_actor_t *self)
{
    for (size_t i = 0; i < self->n_watches; i++) {
        if (self->watches[i].socket && (zsock_events(self->watches[i].socket) & ZMQ_POLLIN)) {
            return true;
        }
    }
    return false;
}

//  Sleeps until the pipe, the inbox or a watch signals, or timeout_ms.
static void
s_sleep(cd_actor_t *self, long timeout_ms, bool *pipe_more, bool *inbox_more)
{
    size_t n = 2 + self->n_watches;
    if (n > self->cap_fds) {
        self->fds = (struct pollfd *)realloc(self->fds, n * sizeof(struct pollfd));
        assert(self->fds);
        self->cap_fds = n;
    }
    self->fds[0] = (struct pollfd){zsock_fd(self->pipe), POLLIN, 0};
    self->fds[1] = (struct pollfd){zsock_fd(self->inst->inbox), POLLIN, 0};
    for (size_t i = 0; i < self->n_watches; i++) {
        self->fds[2 + i] = (struct pollfd){self->watches[i].fd, self->watches[i].events, 0};
    }
    if (poll(self->fds, (nfds_t)n, timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms) <= 0) {
        return;
    }
    //  A ZeroMQ fd only says "look again"; the socket tells what is there.
    *pipe_more = *pipe_more || self->fds[0].revents;
    *inbox_more = *inbox_more || self->fds[1].revents;
    for (size_t i = 0; i < self->n_watches; i++) {
        self->watches[i].revents = self->fds[2 + i].revents;
    }
}

//  The inbox of a routing actor: frames go to ops->raw undecoded.
static int
s_on_inbox_raw(cd_actor_t *self, void *state, void *inbox, bool *drained)
{
    for (int i = 0; i < CD_ACTOR_BATCH; i++) {
        if (zmq_msg_recv(&self->frames[0], inbox, ZMQ_DONTWAIT) < 0) {
            *drained = true;
            return 0;
        }
        cd_queue_meter_out(self->meter);
        int n = 1;
        zmq_msg_t *last = &self->frames[0];
        while (zmq_msg_more(last)) {
            last = &self->frames[1];
            zmq_msg_recv(last, inbox, 0);
            n++;
        }
        if (n > 2) {
            cd_actor_dead_letter(self, self->inst->name, "malformed",
                                 (const uint8_t *)zmq_msg_data(&self->frames[0]),
                                 zmq_msg_size(&self->frames[0]));
            continue;
        }
        int rc = self->inst->ops->raw(self, state, self->frames, n);
        if (rc != 0) {
            return rc;
        }
        if (atomic_load(&self->inst->abandoned) || self->quit) {
            return 0;
        }
    }
    return 0;
}

//  Receives up to one batch from the inbox and dispatches it. Sets *drained
//  when the inbox was found empty. Returns 0 or the handler's error.
static int
s_on_inbox(cd_actor_t *self, void *state, bool *drained)
{
    void *inbox = zsock_resolve(self->inst->inbox);
    *drained = false;
    if (self->inst->ops->raw) {
        return s_on_inbox_raw(self, state, inbox, drained);
    }
    for (int i = 0; i < CD_ACTOR_BATCH; i++) {
        const char *why = NULL;
        int rc = cd__actor_recv(inbox, ZMQ_DONTWAIT, self->frames, &self->env, &why);
        if (rc == CD_ETIMEDOUT) {
            *drained = true;
            return 0;
        }
        cd_queue_meter_out(self->meter);
        if (rc != 0) {
            cd_log_warn(self->inst->name, "malformed message rejected", "{s:s, s:s}", "error",
                        cd_errname(rc), "why", why ? why : "");
            cd_actor_dead_letter(self, self->inst->name, "malformed",
                                 (const uint8_t *)zmq_msg_data(&self->frames[0]),
                                 zmq_msg_size(&self->frames[0]));
        } else {
            rc = self->inst->ops->handle(self, state, &self->env);
            if (rc != 0) {
                return rc;
            }
        }
        if (atomic_load(&self->inst->abandoned) || self->quit) {
            return 0;
        }
    }
    return 0;
}

static cd_actor_t *
s_actor_new(cd_instance_t *inst, zsock_t *pipe)
{
    cd_actor_t *self = (cd_actor_t *)zmalloc(sizeof *self);
    self->inst = inst;
    self->pipe = pipe;
    self->mailer = cd_mailer_new(inst->rt, inst->name);
    self->meter = inst->rt->registry ? cd_registry_meter(inst->rt->registry, inst->name) : NULL;
    zmq_msg_init(&self->frames[0]);
    zmq_msg_init(&self->frames[1]);
    self->items_dirty = true;
    return self;
}

static void
s_actor_destroy(cd_actor_t **self_p)
{
    cd_actor_t *self = *self_p;
    cd_mailer_destroy(&self->mailer);
    cd_registry_meter_release(&self->meter);
    zmq_msg_close(&self->frames[0]);
    zmq_msg_close(&self->frames[1]);
    free(self->watches);
    free(self->fds);
    free(self->timers);
    free(self);
    *self_p = NULL;
}

static void
s_actor_main(zsock_t *pipe, void *args)
{
    cd_instance_t *inst = (cd_instance_t *)args;
    zsock_signal(pipe, 0);
    zsock_set_sndtimeo(pipe, 0);
    cd_actor_t *self = s_actor_new(inst, pipe);
    void *state = NULL;
    const char *why = NULL;
    int rc = inst->ops->init(self, inst->args, &state, &why);
    if (rc != 0) {
        zstr_sendx(pipe, "$FAILED", why ? why : cd_strerror(rc), NULL);
        s_actor_destroy(&self);
        return;
    }
    zstr_send(pipe, "$READY");
    //  The loop sleeps in poll(2) on the sockets' ZMQ_FDs rather than in
    //  zmq_poll: a ZeroMQ fd is edge-like (it signals "look again"), so each
    //  source is drained until it reports nothing before the loop sleeps.
    //  This costs one poll per wake-up instead of zmq_poll's several, which
    //  is most of a round trip's overhead.
    bool pipe_more = true;
    bool inbox_more = true;
    while (!self->quit) {
        if (pipe_more || self->pipe_touched) {
            pipe_more = false;
            self->pipe_touched = false;
            rc = s_on_pipe(self, state);
            if (rc == 1) {
                rc = 0;
                break;
            }
            if (rc != 0) {
                why = "command handler failed";
                break;
            }
        }
        if (inbox_more) {
            bool drained = false;
            rc = s_on_inbox(self, state, &drained);
            inbox_more = !drained;
            if (rc != 0) {
                why = "message handler failed";
                break;
            }
        }
        //  A handler that hung long enough to be replaced must not touch the
        //  inbox again: its successor owns it now.
        if (atomic_load(&inst->abandoned) || self->quit) {
            break;
        }
        rc = s_run_timers(self);
        if (rc != 0) {
            why = "timer handler failed";
            break;
        }
        rc = s_on_watches(self);
        if (rc != 0) {
            why = "socket handler failed";
            break;
        }
        if (self->quit) {
            break;
        }
        bool busy = pipe_more || inbox_more || self->pipe_touched || self->items_dirty ||
                    s_watches_pending(self);
        if (!busy) {
            cd_mailer_trim(self->mailer);
        }
        s_sleep(self, busy ? 0 : s_poll_timeout(self), &pipe_more, &inbox_more);
    }
    bool abandoned = atomic_load(&inst->abandoned);
    if (rc != 0 && !abandoned) {
        cd_log_error(inst->name, "actor crashed", "{s:s, s:s}", "why", why, "error",
                     cd_errname(rc));
        zstr_sendx(pipe, "$CRASH", why, NULL);
    }
    if (inst->ops->fini) {
        inst->ops->fini(self, &state);
    }
    s_actor_destroy(&self);
}
