/*  cd_actor: the actor runtime every agent and service runs on.

    An actor is a czmq zactor (its own thread) with a PAIR pipe to its
    supervisor and an inbox: a PULL socket bound at the inproc endpoint of its
    registry name. Other actors send envelopes to the name; the runtime
    receives them, decodes them once and calls the actor's handler. The
    runtime also answers the supervisor's heartbeat ($PING -> $PONG) between
    handler calls, so an actor whose handler hangs stops answering and is
    restarted.

    The inbox socket belongs to the supervisor, not to the actor instance: it
    is bound before the first instance starts and handed to each new instance
    after a restart, so messages queued for an actor survive its crash.

    Pipe protocol (all strings):
      supervisor -> actor   $TERM        stop: leave the loop, fini, exit
                            $PING        heartbeat; answered with $PONG
                            other        passed to ops->command
      actor -> supervisor   $READY       init succeeded
                            $FAILED why  init failed (the thread then exits)
                            $PONG
                            $CRASH why   a handler failed (the thread then exits)
      and czmq's own signal when the thread ends. */
#ifndef CD_ENGINE_ACTOR_H
#define CD_ENGINE_ACTOR_H

#include "cd_envelope.h"
#include "cd_registry.h"

#include <czmq.h>
#include <stdatomic.h>

//  Settings shared by every actor of a node. Immutable once actors run;
//  must outlive them (the node owns it).
typedef struct {
    cd_registry_t *registry; //  the node's registry
    int queue_hwm;           //  bound of each actor queue, in messages
    int send_timeout_ms;     //  how long a send waits on a full queue
    int heartbeat_ivl_ms;    //  supervisor ping interval
    int heartbeat_timeout_ms; //  silence after which an actor counts as hung
    int stop_timeout_ms;     //  how long a stop waits for an actor to exit
    int restart_max;         //  default restart intensity: R restarts ...
    int restart_window_s;    //  ... within T seconds
} cd_runtime_t;

//  The handle a handler gets: the running instance's context. Owned by the
//  runtime; borrowed by handlers for the duration of the call.
typedef struct cd_actor cd_actor_t;

typedef struct {
    const char *kind; //  what sort of actor ("echo", "supervisor", ...)
    //  In the actor thread, before $READY. Sets *state_p. Returns 0, or an
    //  error and sets *why (static text) to fail the start.
    int (*init)(cd_actor_t *self, void *args, void **state_p, const char **why);
    //  One envelope from the inbox. env borrows from the received frames,
    //  valid during the call. Returning an error crashes the actor.
    //  Required unless `raw` is set.
    int (*handle)(cd_actor_t *self, void *state, const cd_envelope_t *env);
    //  Optional: a pipe command that is not part of the runtime protocol.
    //  msg is borrowed. Returning an error crashes the actor.
    int (*command)(cd_actor_t *self, void *state, const char *command, zmsg_t *msg);
    //  Optional: frees the state; runs on every exit path after init.
    void (*fini)(cd_actor_t *self, void **state_p);
    //  Optional, for actors that only route: called instead of `handle`
    //  with the received frames (envelope [, payload]), not decoded, so a
    //  forwarding hop reads only what it needs (cd_envelope_peek_route).
    //  The frames are borrowed; zmq_msg_copy them to keep or send them.
    //  Returning an error crashes the actor.
    int (*raw)(cd_actor_t *self, void *state, zmq_msg_t *frames, int n);
} cd_actor_ops_t;

//  Called when a watched socket is readable. Returning an error crashes the
//  actor.
typedef int(cd_actor_io_fn)(cd_actor_t *self, void *socket, void *arg);

//  Called when a timer fires. Returning an error crashes the actor.
typedef int(cd_actor_timer_fn)(cd_actor_t *self, void *arg);

//  What a supervisor and the runtime share about one running instance. The
//  supervisor owns it; the actor thread borrows it until it exits.
typedef struct cd_instance {
    char *name;                    //  registry name
    const cd_actor_ops_t *ops;     //  behaviour
    void *args;                    //  passed to init; borrowed
    const cd_runtime_t *rt;        //  node settings; borrowed
    zsock_t *inbox;                //  PULL socket, owned by the supervisor
    atomic_bool abandoned;         //  set when the supervisor gave up on this thread
} cd_instance_t;

//  --- for supervisors -----------------------------------------------------

//  Creates the inbox of name: a PULL socket bound at its endpoint, with the
//  runtime's HWM. Returns NULL (and logs) if the endpoint is taken.
zsock_t *
cd_actor_inbox_new(const cd_runtime_t *rt, const char *name);

//  Unbinds and destroys an inbox, so its name can be bound again at once
//  (a closed socket releases its inproc endpoint only later, in ZeroMQ's
//  reaper thread). Nulls *inbox_p. Safe on NULL.
void
cd_actor_inbox_destroy(zsock_t **inbox_p);

//  Starts one instance in its own thread and waits (bounded by the stop
//  timeout) for $READY. On success returns the zactor (caller owns it);
//  on failure returns NULL and writes the reason into why[0..why_size).
//  inst is borrowed by the thread until it exits.
zactor_t *
cd_actor_start(cd_instance_t *inst, char *why, size_t why_size);

//  The two halves of cd_actor_start, so that a supervisor can start many
//  threads before waiting for any (a thread start costs a cross-core
//  wake-up): cd_actor_spawn starts the thread and returns its zactor (caller
//  owns it); cd_actor_await_ready waits for $READY and returns 0, or
//  CD_ECRASH with why filled, the zactor destroyed and *actor_p nulled.
zactor_t *
cd_actor_spawn(cd_instance_t *inst);

int
cd_actor_await_ready(zactor_t **actor_p, cd_instance_t *inst, char *why, size_t why_size);

//  Asks a live actor to stop and waits for its thread to end, up to
//  timeout_ms. Returns 0 if it ended (the zactor is destroyed and *actor_p
//  nulled), or CD_ETIMEDOUT (the actor is left as it is).
int
cd_actor_stop(zactor_t **actor_p, int timeout_ms);

//  Destroys the zactor of a thread that has already ended (its final signal
//  was received), without waiting. Nulls *actor_p.
void
cd_actor_reap(zactor_t **actor_p);

//  --- for handlers (actor thread only) -------------------------------------

//  This actor's registry name. Borrowed.
const char *
cd_actor_name(const cd_actor_t *self);

//  The node's runtime settings. Borrowed.
const cd_runtime_t *
cd_actor_runtime(const cd_actor_t *self);

//  The pipe to the supervisor (to answer commands). Borrowed.
zsock_t *
cd_actor_pipe(cd_actor_t *self);

//  Fills the routine fields of a new envelope: a fresh id, from = this
//  actor, ts = now, attempt = 1. Everything else is zeroed.
void
cd_actor_envelope_init(cd_actor_t *self, cd_envelope_t *env, cd_kind_t kind, const char *to);

//  Encodes env once and delivers it to env->to: a local name, or
//  `node/<id>/<name>` (this node's id is stripped; another node's goes through
//  the `cluster` actor). Returns 0 when the message is queued for a live
//  actor; CD_ENOTFOUND or CD_EDEAD when there is nobody to deliver to (the
//  message is recorded as a dead letter); CD_EBUSY when the receiver's queue
//  stayed full for the send timeout (nothing was sent; the caller decides);
//  CD_EINVAL if env does not encode.
int
cd_actor_send(cd_actor_t *self, const cd_envelope_t *env);

//  Forwards already-encoded envelope frames (envelope [, payload]) to `to`
//  without re-encoding: the bytes travel by reference. On success the frames
//  are emptied (sent); on failure the caller still owns them and must close
//  them. Returns as cd_actor_send (a failure is also recorded as a dead
//  letter).
int
cd_actor_forward_frames(cd_actor_t *self, const char *to, zmq_msg_t *frames, int n);

//  Frame index (0 envelope, 1 payload frame if any) of the message being
//  handled, or NULL. Borrowed, valid during the handler call; zmq_msg_copy
//  it to keep or forward the bytes without copying them.
zmq_msg_t *
cd_actor_current_frame(cd_actor_t *self, int index);

//  Records a message as a dead letter: counted in the registry and sent to
//  the `deadletter` actor with the reason (if that actor is gone, only
//  counted and logged). raw is the encoded envelope (may be NULL).
void
cd_actor_dead_letter(cd_actor_t *self, const char *to, const char *reason, const uint8_t *raw,
                     size_t raw_size);

//  Watches another socket from this actor's loop. socket is borrowed (the
//  caller keeps it alive until unwatched). Returns 0 or CD_ETOOBIG when the
//  watch table is full.
int
cd_actor_watch(cd_actor_t *self, void *socket, cd_actor_io_fn *fn, void *arg);

//  What a draining watch's callback returns when it found nothing.
#define CD_ACTOR_DRAINED 1

//  As cd_actor_watch, for a callback that receives with ZMQ_DONTWAIT and
//  returns CD_ACTOR_DRAINED when nothing was there (0 when it handled a
//  message): the loop calls it until it says so (a batch at most) without
//  asking the socket for ZMQ_EVENTS before each message, a system call.
//  Stop it with cd_actor_unwatch.
int
cd_actor_watch_drain(cd_actor_t *self, void *socket, cd_actor_io_fn *fn, void *arg);

//  Stops watching socket. No-op if it was not watched.
void
cd_actor_unwatch(cd_actor_t *self, void *socket);

//  Watches a plain file descriptor (a libpq or curl socket, a pidfd...):
//  fn(self, NULL, arg) is called when poll(2) reports it readable (or in
//  error). The caller keeps fd open until unwatched. Returns 0.
int
cd_actor_watch_fd(cd_actor_t *self, int fd, cd_actor_io_fn *fn, void *arg);

//  Stops watching fd. No-op if it was not watched.
void
cd_actor_unwatch_fd(cd_actor_t *self, int fd);

//  As cd_actor_watch_fd for the poll(2) events given (POLLIN, POLLOUT or
//  both; 0 keeps the watch but waits for nothing but errors): fn is called
//  when poll reports one of them, POLLERR or POLLHUP, and may ask which
//  with cd_actor_fd_revents. Watching an fd that is already watched
//  changes its events, callback and argument (what a libcurl socket
//  callback needs). Returns 0.
int
cd_actor_watch_fd_events(cd_actor_t *self, int fd, short events, cd_actor_io_fn *fn, void *arg);

//  In an fd watch's callback: the poll(2) revents that caused the call
//  (0 anywhere else).
short
cd_actor_fd_revents(const cd_actor_t *self);

//  Calls fn(self, arg) once after delay_ms. Returns a timer id (> 0).
int
cd_actor_after(cd_actor_t *self, int delay_ms, cd_actor_timer_fn *fn, void *arg);

//  Calls fn every interval_ms until cancelled. Returns a timer id (> 0).
int
cd_actor_every(cd_actor_t *self, int interval_ms, cd_actor_timer_fn *fn, void *arg);

//  Cancels a timer. No-op for an unknown id.
void
cd_actor_cancel(cd_actor_t *self, int timer_id);

//  Asks the runtime to leave the loop after the current handler returns,
//  as if $TERM had arrived (a clean exit, not a crash).
void
cd_actor_quit(cd_actor_t *self);

//  Microseconds since the epoch.
int64_t
cd_now_us(void);

#endif
