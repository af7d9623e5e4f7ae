/*  cd_supervisor: supervision strategies and restart intensity (see the
    header for the contract).

    Design. The supervisor's state lives in its own actor thread. Each child
    has a heap record with its spec, its inbox and the instance record its
    current thread borrows. Every incarnation gets a fresh instance record:
    a thread that hung and was abandoned keeps the old one (with `abandoned`
    set), so when it wakes up it sees that it was replaced and leaves without
    touching the inbox its successor now reads. Abandoned threads stay
    watched until they end, then are reaped.

    Failures are detected three ways: a $CRASH report (a handler returned an
    error), czmq's end-of-thread signal when we did not ask the child to stop
    (the thread returned on its own), and heartbeat silence (a hung or
    vanished thread). All three lead to s_child_failed.

    Children started by message (s_sup_handle) are built by the spec's
    factory; their args are owned through a small count (s_owned_t) shared
    by the child record and any abandoned thread of it, so they are released
    only when the last thread that may read them is gone. */
#include "cd_supervisor.h"
#include "cd_error.h"
#include "cd_log.h"

#include <stdarg.h>

typedef struct s_sup s_sup_t;

//  Args a factory made for a child, released when the count drops to zero.
typedef struct {
    void *args; //  what the factory built
    int refs;   //  the child record + abandoned threads of it
} s_owned_t;

typedef struct s_child {
    s_sup_t *sup;           //  the supervisor that owns this record
    char *name;             //  registry name (owned)
    cd_child_spec_t spec;   //  spec; spec.name points at name
    zsock_t *inbox;         //  owned; survives restarts
    cd_instance_t *inst;    //  current incarnation's record (owned)
    cd_instance_t *pending; //  record of a thread spawned but not yet ready
    zactor_t *actor;        //  current thread, NULL when not running
    int64_t last_pong_us;   //  last sign of life
    int relay;              //  command answers to pass up to our parent
    char crash_why[128];    //  reason of the last $CRASH
    bool stopped;           //  stopped on purpose: no sibling's failure restarts it
    s_owned_t *owned;       //  args made by the factory, or NULL (spec args are borrowed)
} s_child_t;

typedef struct {
    s_sup_t *sup;        //  the supervisor that watches it
    zactor_t *actor;     //  abandoned thread's pipe
    cd_instance_t *inst; //  the record it still borrows
    s_owned_t *owned;    //  the args it still borrows, or NULL
} s_abandoned_t;

struct s_sup {
    const cd_runtime_t *rt;            //  node settings
    cd_strategy_t strategy;            //  how failures spread
    int max_restarts;                  //  R
    int window_s;                      //  T
    s_child_t **children;              //  in start order
    size_t n_children;                 //  used entries
    int64_t *restarts;                 //  recent restart times (µs), ring of max_restarts + 1
    size_t n_restarts;                 //  entries used in restarts
    zlistx_t *abandoned;               //  s_abandoned_t *
    int heartbeat_timer;               //  timer id
    const cd_child_factory_t *factory; //  builds children on request, or NULL
    void *factory_arg;                 //  passed to it
    char *prefix;                      //  completes request names ("" for none)
    cd_pack_t *pack;                   //  answer payloads
};

static int s_on_child(cd_actor_t *self, void *socket, void *arg);

static int s_on_abandoned(cd_actor_t *self, void *socket, void *arg);

static int64_t
s_mono_ms(void)
{
    return zclock_mono();
}

const char *
cd_strategy_name(cd_strategy_t strategy)
{
    static const char *const names[] = {"one_for_one", "one_for_all", "rest_for_one"};
    return (unsigned)strategy < 3 ? names[strategy] : "unknown";
}

int
cd_strategy_parse(const char *text, cd_strategy_t *strategy)
{
    for (int i = 0; i < 3; i++) {
        if (text && streq(text, cd_strategy_name((cd_strategy_t)i))) {
            *strategy = (cd_strategy_t)i;
            return 0;
        }
    }
    return CD_EINVAL;
}

//  --- one child ----------------------------------------------------------------

static cd_instance_t *
s_instance_new(s_sup_t *sup, s_child_t *child)
{
    cd_instance_t *inst = (cd_instance_t *)zmalloc(sizeof *inst);
    inst->name = strdup(child->name);
    assert(inst->name);
    inst->ops = child->spec.ops;
    inst->args = child->spec.args;
    inst->rt = sup->rt;
    inst->inbox = child->inbox;
    return inst;
}

static void
s_instance_destroy(cd_instance_t **inst_p)
{
    if (*inst_p) {
        free((*inst_p)->name);
        free(*inst_p);
        *inst_p = NULL;
    }
}

static s_owned_t *
s_owned_ref(s_owned_t *owned)
{
    if (owned) {
        owned->refs++;
    }
    return owned;
}

//  Drops one reference; the last gives the args back to the factory.
static void
s_owned_release(s_sup_t *sup, s_owned_t **owned_p)
{
    s_owned_t *owned = *owned_p;
    *owned_p = NULL;
    if (owned && --owned->refs == 0) {
        sup->factory->release(sup->factory_arg, owned->args);
        free(owned);
    }
}

//  Starts the child's thread without waiting for its init (see
//  s_child_ready).
static void
s_child_spawn(s_sup_t *sup, s_child_t *child)
{
    assert(!child->actor);
    child->pending = s_instance_new(sup, child);
    child->actor = cd_actor_spawn(child->pending);
}

//  Waits for a spawned child's init. Returns 0 or CD_ECRASH (its init
//  failed or never answered) with why filled.
static int
s_child_ready(cd_actor_t *self, s_sup_t *sup, s_child_t *child, char *why, size_t why_size)
{
    cd_instance_t *inst = child->pending;
    child->pending = NULL;
    if (cd_actor_await_ready(&child->actor, inst, why, why_size) != 0) {
        cd_log_error(cd_actor_name(self), "child failed to start", "{s:s, s:s}", "child",
                     child->name, "why", why);
        if (atomic_load(&inst->abandoned)) {
            //  Its init never answered: the thread may still use inst and
            //  the args; both are left to it (never freed).
            cd_registry_count_hung(sup->rt->registry, 1);
            s_owned_ref(child->owned);
        } else {
            s_instance_destroy(&inst);
        }
        return CD_ECRASH;
    }
    s_instance_destroy(&child->inst);
    child->inst = inst;
    child->stopped = false;
    child->last_pong_us = s_mono_ms();
    cd_actor_watch(self, child->actor, s_on_child, child);
    cd_registry_set_status(sup->rt->registry, child->name, CD_ACTOR_RUNNING);
    return 0;
}

//  Starts the child's thread and waits for its init. Returns 0 or CD_ECRASH
//  with why filled.
static int
s_child_start(cd_actor_t *self, s_sup_t *sup, s_child_t *child, char *why, size_t why_size)
{
    s_child_spawn(sup, child);
    return s_child_ready(self, sup, child, why, why_size);
}

//  Gives up on a thread that does not answer: it keeps its instance record
//  (flagged) and is reaped when it ends.
static void
s_child_abandon(cd_actor_t *self, s_sup_t *sup, s_child_t *child)
{
    cd_actor_unwatch(self, child->actor);
    atomic_store(&child->inst->abandoned, true);
    s_abandoned_t *gone = (s_abandoned_t *)zmalloc(sizeof *gone);
    gone->sup = sup;
    gone->actor = child->actor;
    gone->inst = child->inst;
    gone->owned = s_owned_ref(child->owned);
    zlistx_add_end(sup->abandoned, gone);
    cd_actor_watch(self, gone->actor, s_on_abandoned, gone);
    cd_registry_count_hung(sup->rt->registry, 1);
    child->actor = NULL;
    child->inst = NULL;
}

//  Stops the child's thread (bounded). A thread that does not stop in time
//  is abandoned.
static void
s_child_stop(cd_actor_t *self, s_sup_t *sup, s_child_t *child)
{
    if (!child->actor) {
        return;
    }
    cd_actor_unwatch(self, child->actor);
    if (cd_actor_stop(&child->actor, sup->rt->stop_timeout_ms) != 0) {
        cd_log_error(cd_actor_name(self), "child did not stop in time; abandoned", "{s:s}", "child",
                     child->name);
        cd_actor_watch(self, child->actor, s_on_child, child);
        s_child_abandon(self, sup, child);
    }
}

//  Moves whatever is queued in the child's inbox to the dead letters.
static void
s_child_drain(cd_actor_t *self, s_child_t *child, const char *reason)
{
    void *inbox = zsock_resolve(child->inbox);
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    while (zmq_msg_recv(&frame, inbox, ZMQ_DONTWAIT) >= 0) {
        bool first = true;
        do {
            if (first) {
                cd_actor_dead_letter(self, child->name, reason,
                                     (const uint8_t *)zmq_msg_data(&frame), zmq_msg_size(&frame));
                first = false;
            }
        } while (zmq_msg_more(&frame) && zmq_msg_recv(&frame, inbox, 0) >= 0);
    }
    zmq_msg_close(&frame);
}

static void
s_child_destroy(s_child_t **child_p)
{
    s_child_t *child = *child_p;
    cd_actor_inbox_destroy(&child->inbox);
    s_instance_destroy(&child->inst);
    s_owned_release(child->sup, &child->owned);
    free(child->name);
    free(child);
    *child_p = NULL;
}

//  Ends a child for good: stop, dead-letter its queue, mark it.
static void
s_child_retire(cd_actor_t *self, s_sup_t *sup, s_child_t *child, cd_actor_status_t status)
{
    s_child_stop(self, sup, child);
    child->stopped = true;
    cd_registry_set_status(sup->rt->registry, child->name, status);
    s_child_drain(self, child, status == CD_ACTOR_DEAD ? "actor_dead" : "actor_stopped");
}

//  --- strategies -------------------------------------------------------------------

static size_t
s_child_index(s_sup_t *sup, s_child_t *child)
{
    for (size_t i = 0; i < sup->n_children; i++) {
        if (sup->children[i] == child) {
            return i;
        }
    }
    return SIZE_MAX;
}

//  Counts a restart against the intensity. Returns false if it is exceeded.
static bool
s_intensity_allows(s_sup_t *sup)
{
    int64_t now = s_mono_ms();
    int64_t window_ms = (int64_t)sup->window_s * 1000;
    size_t kept = 0;
    for (size_t i = 0; i < sup->n_restarts; i++) {
        if (now - sup->restarts[i] < window_ms) {
            sup->restarts[kept++] = sup->restarts[i];
        }
    }
    sup->n_restarts = kept;
    if ((int)kept >= sup->max_restarts) {
        return false;
    }
    sup->restarts[sup->n_restarts++] = now;
    return true;
}

//  Stops every child and fails this supervisor. Returns the error that
//  crashes it.
static int
s_give_up(cd_actor_t *self, s_sup_t *sup, const char *child_name)
{
    cd_log_error(cd_actor_name(self), "restart intensity exceeded; giving up", "{s:s, s:i, s:i}",
                 "child", child_name, "max_restarts", sup->max_restarts, "window_s", sup->window_s);
    for (size_t i = sup->n_children; i-- > 0;) {
        s_child_retire(self, sup, sup->children[i], CD_ACTOR_DEAD);
        s_child_destroy(&sup->children[i]);
    }
    //  The records are gone; the registry keeps them as dead, so senders
    //  learn it (CD_EDEAD) until a successor takes the names.
    sup->n_children = 0;
    return CD_ECRASH;
}

//  Restarts children [from, to) in order; each restart counts against the
//  intensity, and a child whose init fails is retried under it.
static int
s_restart_range(cd_actor_t *self, s_sup_t *sup, size_t from, size_t to, const char *failed)
{
    for (size_t i = from; i < to; i++) {
        s_child_t *child = sup->children[i];
        if (child->actor || child->stopped) {
            continue;
        }
        while (true) {
            if (!s_intensity_allows(sup)) {
                return s_give_up(self, sup, failed);
            }
            cd_registry_count_restart(sup->rt->registry, child->name);
            char why[160];
            if (s_child_start(self, sup, child, why, sizeof why) == 0) {
                cd_log_info(cd_actor_name(self), "child restarted", "{s:s, s:s}", "child",
                            child->name, "strategy", cd_strategy_name(sup->strategy));
                break;
            }
        }
    }
    return 0;
}

//  A child's thread is gone or hung. Applies the policy and strategy.
static int
s_child_failed(cd_actor_t *self, s_sup_t *sup, s_child_t *child, const char *why, bool hung)
{
    cd_log_warn(cd_actor_name(self), "child failed", "{s:s, s:s, s:b}", "child", child->name, "why",
                why, "hung", hung);
    if (hung) {
        s_child_abandon(self, sup, child);
    } else if (child->actor) {
        cd_actor_unwatch(self, child->actor);
        cd_actor_reap(&child->actor);
    }
    bool crashed = hung || child->crash_why[0];
    child->crash_why[0] = '\0';
    size_t index = s_child_index(sup, child);
    if (child->spec.restart == CD_RESTART_TEMPORARY ||
        (child->spec.restart == CD_RESTART_TRANSIENT && !crashed)) {
        s_child_retire(self, sup, child, CD_ACTOR_STOPPED);
        return 0;
    }
    cd_registry_set_status(sup->rt->registry, child->name, CD_ACTOR_RESTARTING);
    size_t from = index;
    if (sup->strategy == CD_ONE_FOR_ALL) {
        from = 0;
    }
    size_t to = sup->strategy == CD_ONE_FOR_ONE ? index + 1 : sup->n_children;
    for (size_t i = to; i-- > from;) {
        if (sup->children[i] != child && sup->children[i]->actor) {
            cd_registry_set_status(sup->rt->registry, sup->children[i]->name, CD_ACTOR_RESTARTING);
            s_child_stop(self, sup, sup->children[i]);
        }
    }
    return s_restart_range(self, sup, from, to, child->name);
}

//  --- events ---------------------------------------------------------------------

//  Passes a command answer up to our parent.
static void
s_relay(cd_actor_t *self, zmsg_t **msg_p)
{
    zmsg_send(msg_p, cd_actor_pipe(self));
    zmsg_destroy(msg_p);
}

static int
s_on_child(cd_actor_t *self, void *socket, void *arg)
{
    s_child_t *child = (s_child_t *)arg;
    s_sup_t *sup = child->sup;
    zmsg_t *msg = zmsg_recv(socket);
    if (!msg) {
        return 0;
    }
    if (zmsg_signal(msg) >= 0) {
        //  The thread ended and we did not ask it to.
        zmsg_destroy(&msg);
        return s_child_failed(self, sup, child,
                              child->crash_why[0] ? child->crash_why : "thread exited", false);
    }
    char *command = zmsg_popstr(msg);
    int rc = 0;
    if (!command) {
        rc = 0;
    } else if (streq(command, "$PONG")) {
        child->last_pong_us = s_mono_ms();
    } else if (streq(command, "$CRASH")) {
        char *why = zmsg_popstr(msg);
        snprintf(child->crash_why, sizeof child->crash_why, "%s", why ? why : "crashed");
        zstr_free(&why);
        //  The thread is on its way out (fini, then czmq's signal): wait for
        //  that, bounded, so the inbox is free before a successor starts.
        int64_t deadline = s_mono_ms() + sup->rt->stop_timeout_ms;
        bool ended = false;
        while (!ended && s_mono_ms() < deadline) {
            zmq_pollitem_t item = {zsock_resolve(socket), 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&item, 1, (long)(deadline - s_mono_ms())) <= 0) {
                continue;
            }
            zmsg_t *next = zmsg_recv(socket);
            ended = next && zmsg_signal(next) >= 0;
            zmsg_destroy(&next);
        }
        rc = s_child_failed(self, sup, child, child->crash_why, !ended);
    } else if ((streq(command, "OK") || streq(command, "ERR")) && child->relay > 0) {
        child->relay--;
        zmsg_pushstr(msg, command);
        s_relay(self, &msg);
    }
    zstr_free(&command);
    zmsg_destroy(&msg);
    return rc;
}

static int
s_on_abandoned(cd_actor_t *self, void *socket, void *arg)
{
    s_abandoned_t *gone = (s_abandoned_t *)arg;
    zmsg_t *msg = zmsg_recv(socket);
    bool ended = msg && zmsg_signal(msg) >= 0;
    zmsg_destroy(&msg);
    if (ended) {
        //  The hung thread woke up, saw it was replaced and left.
        cd_log_info(cd_actor_name(self), "abandoned thread ended", "{s:s}", "child",
                    gone->inst->name);
        cd_actor_unwatch(self, gone->actor);
        cd_actor_reap(&gone->actor);
        s_instance_destroy(&gone->inst);
        s_owned_release(gone->sup, &gone->owned);
        cd_registry_count_hung(gone->sup->rt->registry, -1);
        void *handle = zlistx_find(gone->sup->abandoned, gone);
        zlistx_delete(gone->sup->abandoned, handle);
        free(gone);
    }
    return 0;
}

static int
s_on_heartbeat(cd_actor_t *self, void *arg)
{
    s_sup_t *sup = (s_sup_t *)arg;
    int64_t now = s_mono_ms();
    for (size_t i = 0; i < sup->n_children; i++) {
        s_child_t *child = sup->children[i];
        if (!child->actor) {
            continue;
        }
        if (now - child->last_pong_us > sup->rt->heartbeat_timeout_ms) {
            int rc = s_child_failed(self, sup, child, "heartbeat missed", true);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        zstr_send(child->actor, "$PING");
    }
    return 0;
}

//  --- commands -----------------------------------------------------------------------

static s_child_t *
s_find(s_sup_t *sup, const char *name)
{
    for (size_t i = 0; i < sup->n_children; i++) {
        if (streq(sup->children[i]->name, name)) {
            return sup->children[i];
        }
    }
    return NULL;
}

static s_child_t *
s_child_new(cd_actor_t *self, s_sup_t *sup, const cd_child_spec_t *spec, const char **why)
{
    if (!spec->name || !spec->ops || !spec->ops->init || (!spec->ops->handle && !spec->ops->raw)) {
        *why = "incomplete child spec";
        return NULL;
    }
    if (s_find(sup, spec->name) ||
        cd_registry_status_deliverable(cd_registry_status(sup->rt->registry, spec->name))) {
        *why = "an actor with this name already runs";
        return NULL;
    }
    s_child_t *child = (s_child_t *)zmalloc(sizeof *child);
    child->sup = sup;
    child->name = strdup(spec->name);
    assert(child->name);
    child->spec = *spec;
    child->spec.name = child->name;
    child->inbox = cd_actor_inbox_new(sup->rt, child->name);
    if (!child->inbox) {
        *why = "cannot bind the actor's inbox";
        s_child_destroy(&child);
        return NULL;
    }
    return child;
}

static void
s_append(s_sup_t *sup, s_child_t *child)
{
    sup->children = (s_child_t **)realloc(sup->children, (sup->n_children + 1) * sizeof(void *));
    assert(sup->children);
    sup->children[sup->n_children++] = child;
}

static void
s_remove(s_sup_t *sup, s_child_t *child)
{
    size_t index = s_child_index(sup, child);
    memmove(&sup->children[index], &sup->children[index + 1],
            (sup->n_children - index - 1) * sizeof(void *));
    sup->n_children--;
}

static void
s_answer(cd_actor_t *self, const char *why)
{
    if (why) {
        zstr_sendx(cd_actor_pipe(self), "ERR", why, NULL);
    } else {
        zstr_send(cd_actor_pipe(self), "OK");
    }
}

static int
s_command(cd_actor_t *self, void *state, const char *command, zmsg_t *msg)
{
    s_sup_t *sup = (s_sup_t *)state;
    if (!streq(command, "START") && !streq(command, "STOP") && !streq(command, "RESTART")) {
        s_answer(self, "unknown command");
        return 0;
    }
    char *path = zmsg_popstr(msg);
    if (path && *path) {
        //  For a supervisor further down: forward, relay its answer later.
        char *sep = strchr(path, '>');
        const char *rest = sep ? sep + 1 : "";
        if (sep) {
            *sep = '\0';
        }
        s_child_t *child = s_find(sup, path);
        if (!child || !child->actor || child->spec.ops != &cd_supervisor_ops) {
            s_answer(self, "no such supervisor");
        } else {
            zmsg_pushstr(msg, rest);
            zmsg_pushstr(msg, command);
            zmsg_t *copy = zmsg_dup(msg);
            if (zmsg_send(&copy, child->actor) == 0) {
                child->relay++;
            } else {
                zmsg_destroy(&copy);
                s_answer(self, "supervisor busy");
            }
        }
        zstr_free(&path);
        return 0;
    }
    zstr_free(&path);
    const char *why = NULL;
    if (streq(command, "START")) {
        zframe_t *frame = zmsg_pop(msg);
        const cd_child_spec_t *spec = NULL;
        if (frame && zframe_size(frame) == sizeof spec) {
            memcpy(&spec, zframe_data(frame), sizeof spec);
        }
        zframe_destroy(&frame);
        s_child_t *child = spec ? s_child_new(self, sup, spec, &why) : NULL;
        if (!spec) {
            why = "missing child spec";
        }
        char start_why[160];
        if (child) {
            if (s_child_start(self, sup, child, start_why, sizeof start_why) == 0) {
                s_append(sup, child);
            } else {
                why = "child failed to start";
                cd_registry_remove(sup->rt->registry, child->name);
                s_child_destroy(&child);
            }
        }
    } else {
        char *name = zmsg_popstr(msg);
        s_child_t *child = name ? s_find(sup, name) : NULL;
        zstr_free(&name);
        if (!child) {
            why = "no such child";
        } else if (streq(command, "STOP")) {
            s_child_retire(self, sup, child, CD_ACTOR_STOPPED);
            cd_registry_remove(sup->rt->registry, child->name);
            s_remove(sup, child);
            s_child_destroy(&child);
        } else {
            s_child_stop(self, sup, child);
            cd_registry_count_restart(sup->rt->registry, child->name);
            char start_why[160];
            if (s_child_start(self, sup, child, start_why, sizeof start_why) != 0) {
                why = "child failed to start";
                int rc = s_child_failed(self, sup, child, why, false);
                s_answer(self, why);
                return rc;
            }
        }
    }
    s_answer(self, why);
    return 0;
}

//  --- lifecycle ------------------------------------------------------------------------

static void
s_sup_fini(cd_actor_t *self, void **state_p)
{
    s_sup_t *sup = (s_sup_t *)*state_p;
    if (!sup) {
        return;
    }
    //  Reverse start order: consumers stop before what they depend on.
    for (size_t i = sup->n_children; i-- > 0;) {
        s_child_t *child = sup->children[i];
        s_child_retire(self, sup, child, CD_ACTOR_STOPPED);
        cd_registry_remove(sup->rt->registry, child->name);
        s_child_destroy(&child);
    }
    free(sup->children);
    //  Give hung threads a last chance to end; those that do not are left
    //  running (their count stays in the registry for the node to see).
    int64_t deadline = s_mono_ms() + sup->rt->stop_timeout_ms;
    s_abandoned_t *gone;
    while ((gone = (s_abandoned_t *)zlistx_first(sup->abandoned))) {
        zlistx_detach_cur(sup->abandoned);
        zmq_pollitem_t item = {zsock_resolve(gone->actor), 0, ZMQ_POLLIN, 0};
        bool ended = false;
        while (!ended && s_mono_ms() < deadline &&
               zmq_poll(&item, 1, (long)(deadline - s_mono_ms())) > 0) {
            zmsg_t *msg = zmsg_recv(gone->actor);
            ended = msg && zmsg_signal(msg) >= 0;
            zmsg_destroy(&msg);
        }
        if (ended) {
            cd_actor_reap(&gone->actor);
            s_instance_destroy(&gone->inst);
            s_owned_release(sup, &gone->owned);
            cd_registry_count_hung(sup->rt->registry, -1);
        } else {
            cd_log_error(cd_actor_name(self), "hung thread left running at stop", "{s:s}", "child",
                         gone->inst->name);
        }
        free(gone);
    }
    zlistx_destroy(&sup->abandoned);
    cd_pack_destroy(&sup->pack);
    free(sup->prefix);
    free(sup->restarts);
    free(sup);
    *state_p = NULL;
}

static int
s_sup_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_supervisor_spec_t *spec = (const cd_supervisor_spec_t *)args;
    const cd_runtime_t *rt = cd_actor_runtime(self);
    s_sup_t *sup = (s_sup_t *)zmalloc(sizeof *sup);
    sup->rt = rt;
    sup->strategy = spec->strategy;
    sup->max_restarts = spec->max_restarts >= 0 ? spec->max_restarts : rt->restart_max;
    sup->window_s = spec->window_s > 0 ? spec->window_s : rt->restart_window_s;
    sup->restarts = (int64_t *)zmalloc(((size_t)sup->max_restarts + 1) * sizeof(int64_t));
    sup->abandoned = zlistx_new();
    sup->factory = spec->factory;
    sup->factory_arg = spec->factory_arg;
    sup->prefix = strdup(spec->prefix ? spec->prefix : "");
    assert(sup->prefix);
    sup->pack = cd_pack_new();
    *state_p = sup;
    //  Spawn every thread first, then wait for each: the start-ups overlap.
    for (size_t i = 0; i < spec->n_children; i++) {
        s_child_t *child = s_child_new(self, sup, &spec->children[i], why);
        if (!child) {
            break;
        }
        s_append(sup, child);
        s_child_spawn(sup, child);
    }
    bool ok = sup->n_children == spec->n_children;
    for (size_t i = 0; i < sup->n_children; i++) {
        char start_why[160];
        if (s_child_ready(self, sup, sup->children[i], start_why, sizeof start_why) != 0 && ok) {
            *why = "a child failed to start";
            ok = false;
        }
    }
    if (!ok) {
        //  Stops those that did start and releases every name.
        s_sup_fini(self, state_p);
        return CD_ECRASH;
    }
    sup->heartbeat_timer = cd_actor_every(self, rt->heartbeat_ivl_ms, s_on_heartbeat, sup);
    return 0;
}

//  --- control by message ----------------------------------------------------------------

//  What a control request came to: an error code and message, or a status.
typedef struct {
    const char *code;   //  error code; NULL on success
    char message[256];  //  error text
    const char *status; //  on success: the child's status
} s_outcome_t;

static void s_fail(s_outcome_t *out, const char *code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_fail(s_outcome_t *out, const char *code, const char *format, ...)
{
    out->code = code;
    va_list ap;
    va_start(ap, format);
    vsnprintf(out->message, sizeof out->message, format, ap);
    va_end(ap);
}

//  The registry name a request means: payload {"name": str}, completed with
//  the prefix unless it already starts with it. Returns false (out filled)
//  if there is no usable name.
static bool
s_request_name(s_sup_t *sup, const cd_envelope_t *env, char *name, size_t size, s_outcome_t *out)
{
    cd_bin_t value;
    cd_str_t text = {NULL, 0};
    if (env->payload_type != CD_PAYLOAD_MAP ||
        cd_msgpack_map_find(env->payload, "name", &value) != 0 ||
        cd_msgpack_read_str(value, &text) != 0) {
        s_fail(out, "invalid", "the payload must be a map with a string \"name\"");
        return false;
    }
    for (uint32_t i = 0; i < text.len; i++) {
        unsigned char c = (unsigned char)text.ptr[i];
        if (c < 0x20 || c == 0x7f) {
            s_fail(out, "invalid", "the name has control characters");
            return false;
        }
    }
    size_t prefix_len = strlen(sup->prefix);
    bool prefixed = text.len >= prefix_len && memcmp(text.ptr, sup->prefix, prefix_len) == 0;
    size_t len = (prefixed ? 0 : prefix_len) + text.len;
    if (text.len == (prefixed ? prefix_len : 0)) {
        s_fail(out, "invalid", "the name is empty");
        return false;
    }
    if (len >= size || len >= CD_REGISTRY_MAX_NAME) {
        s_fail(out, "invalid", "the name is longer than %d bytes", CD_REGISTRY_MAX_NAME - 1);
        return false;
    }
    snprintf(name, size, "%s%.*s", prefixed ? "" : sup->prefix, (int)text.len, text.ptr);
    return true;
}

//  Starts a known, stopped child again. Its status stays stopped on failure.
static void
s_op_start_known(cd_actor_t *self, s_sup_t *sup, s_child_t *child, s_outcome_t *out)
{
    if (child->actor) {
        s_fail(out, "exists", "%s is already running", child->name);
        return;
    }
    char why[160];
    if (s_child_start(self, sup, child, why, sizeof why) != 0) {
        s_fail(out, "failed", "%s failed to start: %s", child->name, why);
        return;
    }
    out->status = "running";
}

//  Builds a new child with the factory, starts it and keeps it.
static void
s_op_start_new(cd_actor_t *self, s_sup_t *sup, const cd_envelope_t *env, const char *name,
               s_outcome_t *out)
{
    if (cd_registry_status_deliverable(cd_registry_status(sup->rt->registry, name))) {
        s_fail(out, "exists", "an actor named %s already runs", name);
        return;
    }
    if (!sup->factory) {
        s_fail(out, "invalid", "%s does not start children on request", cd_actor_name(self));
        return;
    }
    cd_child_spec_t spec = {name, NULL, NULL, CD_RESTART_PERMANENT};
    char why[256] = "";
    int rc = sup->factory->build(sup->factory_arg, env, &spec, why, sizeof why);
    if (rc != 0) {
        s_fail(out, "invalid", "%s", why[0] ? why : cd_strerror(rc));
        return;
    }
    s_owned_t *owned = (s_owned_t *)zmalloc(sizeof *owned);
    owned->args = spec.args;
    owned->refs = 1;
    if (!spec.name || !streq(spec.name, name)) {
        s_owned_release(sup, &owned);
        s_fail(out, "failed", "the child factory renamed %s", name);
        return;
    }
    const char *bad = NULL;
    s_child_t *child = s_child_new(self, sup, &spec, &bad);
    if (!child) {
        s_owned_release(sup, &owned);
        s_fail(out, "failed", "%s: %s", name, bad);
        return;
    }
    child->owned = owned;
    char start_why[160];
    if (s_child_start(self, sup, child, start_why, sizeof start_why) != 0) {
        cd_registry_remove(sup->rt->registry, child->name);
        s_child_destroy(&child);
        s_fail(out, "failed", "%s failed to start: %s", name, start_why);
        return;
    }
    s_append(sup, child);
    out->status = "running";
}

static void
s_op_restart(cd_actor_t *self, s_sup_t *sup, s_child_t *child, s_outcome_t *out)
{
    //  As the RESTART command: the inbox keeps what is queued meanwhile.
    s_child_stop(self, sup, child);
    cd_registry_count_restart(sup->rt->registry, child->name);
    char why[160];
    if (s_child_start(self, sup, child, why, sizeof why) != 0) {
        //  A request does not escalate: the child is left stopped.
        s_child_retire(self, sup, child, CD_ACTOR_STOPPED);
        s_fail(out, "failed", "%s failed to start: %s", child->name, why);
        return;
    }
    out->status = "running";
}

//  Sends the answer to a control request. out's fields are borrowed.
static void
s_reply(cd_actor_t *self, s_sup_t *sup, const cd_envelope_t *req, const char *name,
        const s_outcome_t *out)
{
    char to[CD_ENV_MAX_NAME + 1];
    cd_str_t reply = req->from;
    cd_envelope_header(req, "reply_to", &reply);
    snprintf(to, sizeof to, "%.*s", (int)reply.len, reply.ptr ? reply.ptr : "");
    cd_pack_t *pack = sup->pack;
    cd_pack_reset(pack);
    if (out->code) {
        cd_pack_map(pack, 2);
        cd_pack_cstr(pack, "code");
        cd_pack_cstr(pack, out->code);
        cd_pack_cstr(pack, "message");
        cd_pack_cstr(pack, out->message);
    } else {
        cd_pack_map(pack, 3);
        cd_pack_cstr(pack, "ok");
        cd_pack_bool(pack, true);
        cd_pack_cstr(pack, "name");
        cd_pack_cstr(pack, name);
        cd_pack_cstr(pack, "status");
        cd_pack_cstr(pack, out->status);
    }
    cd_envelope_t answer;
    cd_actor_envelope_init(self, &answer, out->code ? CD_KIND_ERROR : CD_KIND_RESULT, to);
    memcpy(answer.parent_id, req->id, CD_ENV_UUID_SIZE);
    memcpy(answer.trace_id, req->trace_id, CD_ENV_UUID_SIZE);
    answer.task_id = req->task_id;
    answer.payload_type = CD_PAYLOAD_MAP;
    answer.payload = cd_pack_bytes(pack);
    int rc = cd_actor_send(self, &answer);
    if (rc != 0) {
        cd_log_warn(cd_actor_name(self), "answer not delivered", "{s:s, s:s}", "to", to, "error",
                    cd_errname(rc));
    }
}

//  A control request: start, stop, restart or remove a child. Never fails
//  the supervisor: every outcome is an answer.
static int
s_sup_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_sup_t *sup = (s_sup_t *)state;
    cd_str_t op = {NULL, 0};
    if (env->kind != CD_KIND_CONTROL || !cd_envelope_header(env, "op", &op)) {
        cd_log_debug(cd_actor_name(self), "envelope ignored by supervisor", NULL);
        return 0;
    }
    s_outcome_t out = {NULL, "", NULL};
    char name[CD_REGISTRY_MAX_NAME] = "";
    bool start = cd_str_eq(op, "start");
    bool known_op =
        start || cd_str_eq(op, "stop") || cd_str_eq(op, "restart") || cd_str_eq(op, "remove");
    if (!known_op) {
        s_fail(&out, "invalid", "unknown op \"%.*s\"", (int)(op.len > 64 ? 64 : op.len), op.ptr);
    } else if (s_request_name(sup, env, name, sizeof name, &out)) {
        s_child_t *child = s_find(sup, name);
        if (start) {
            if (child) {
                s_op_start_known(self, sup, child, &out);
            } else {
                s_op_start_new(self, sup, env, name, &out);
            }
        } else if (!child) {
            s_fail(&out, "not_found", "%s has no child %s", cd_actor_name(self), name);
        } else if (cd_str_eq(op, "stop")) {
            s_child_retire(self, sup, child, CD_ACTOR_STOPPED);
            out.status = "stopped";
        } else if (cd_str_eq(op, "restart")) {
            s_op_restart(self, sup, child, &out);
        } else {
            s_child_retire(self, sup, child, CD_ACTOR_STOPPED);
            cd_registry_remove(sup->rt->registry, child->name);
            s_remove(sup, child);
            s_child_destroy(&child);
            out.status = "removed";
        }
    }
    if (cd_log_enabled(CD_LOG_INFO)) {
        char op_text[16];
        char requester[CD_ENV_MAX_NAME + 1];
        snprintf(op_text, sizeof op_text, "%.*s", (int)(op.len < 15 ? op.len : 15), op.ptr);
        snprintf(requester, sizeof requester, "%.*s", (int)env->from.len, env->from.ptr);
        if (out.code) {
            cd_log_info(cd_actor_name(self), "control request refused", "{s:s, s:s, s:s, s:s, s:s}",
                        "op", op_text, "child", name, "from", requester, "code", out.code, "why",
                        out.message);
        } else {
            cd_log_info(cd_actor_name(self), "control request done", "{s:s, s:s, s:s, s:s}", "op",
                        op_text, "child", name, "status", out.status, "from", requester);
        }
    }
    s_reply(self, sup, env, name, &out);
    return 0;
}

const cd_actor_ops_t cd_supervisor_ops = {
    .kind = "supervisor",
    .init = s_sup_init,
    .handle = s_sup_handle,
    .command = s_command,
    .fini = s_sup_fini,
};

//  --- the root ----------------------------------------------------------------------------

struct cd_root {
    const cd_runtime_t *rt; //  node settings
    cd_instance_t inst;     //  the root's instance record
    zactor_t *actor;        //  its thread
};

cd_root_t *
cd_root_new(const cd_runtime_t *rt, const char *name, const cd_supervisor_spec_t *spec, char *why,
            size_t why_size)
{
    cd_root_t *self = (cd_root_t *)zmalloc(sizeof *self);
    self->rt = rt;
    self->inst.name = strdup(name);
    assert(self->inst.name);
    self->inst.ops = &cd_supervisor_ops;
    self->inst.args = (void *)spec;
    self->inst.rt = rt;
    self->inst.inbox = cd_actor_inbox_new(rt, name);
    if (!self->inst.inbox) {
        snprintf(why, why_size, "cannot bind the inbox of %s", name);
        goto err_free;
    }
    self->actor = cd_actor_start(&self->inst, why, why_size);
    if (!self->actor) {
        goto err_inbox;
    }
    cd_registry_set_status(rt->registry, name, CD_ACTOR_RUNNING);
    return self;
err_inbox:
    cd_registry_remove(rt->registry, name);
    if (!atomic_load(&self->inst.abandoned)) {
        cd_actor_inbox_destroy(&self->inst.inbox);
    }
err_free:
    if (atomic_load(&self->inst.abandoned)) {
        return NULL; //  a hung init still borrows inst: leave it
    }
    free(self->inst.name);
    free(self);
    return NULL;
}

int
cd_root_destroy(cd_root_t **self_p)
{
    if (!self_p || !*self_p) {
        return 0;
    }
    cd_root_t *self = *self_p;
    int rc = 0;
    if (self->actor) {
        //  The root waits for each child in turn: allow for all of them.
        rc = cd_actor_stop(&self->actor, self->rt->stop_timeout_ms * 4);
        if (rc != 0) {
            cd_log_error(self->inst.name, "supervisor tree did not stop in time", NULL);
            *self_p = NULL;
            return rc; //  its thread still borrows self
        }
    }
    cd_registry_remove(self->rt->registry, self->inst.name);
    cd_actor_inbox_destroy(&self->inst.inbox);
    free(self->inst.name);
    free(self);
    *self_p = NULL;
    return rc;
}

zactor_t *
cd_root_actor(cd_root_t *self)
{
    return self->actor;
}

int
cd_root_call(cd_root_t *self, const char *command, const char *path, const char *name,
             const cd_child_spec_t *spec, int timeout_ms, char *why, size_t why_size)
{
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, command);
    zmsg_addstr(msg, path ? path : "");
    if (spec) {
        zmsg_addmem(msg, &spec, sizeof spec);
    } else {
        zmsg_addstr(msg, name ? name : "");
    }
    zsock_set_sndtimeo(self->actor, timeout_ms);
    if (zmsg_send(&msg, self->actor) != 0) {
        zmsg_destroy(&msg);
        return CD_EBUSY;
    }
    int64_t deadline = s_mono_ms() + timeout_ms;
    while (s_mono_ms() < deadline) {
        zmq_pollitem_t item = {zsock_resolve(self->actor), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)(deadline - s_mono_ms())) <= 0) {
            continue;
        }
        zmsg_t *reply = zmsg_recv(self->actor);
        if (!reply) {
            continue;
        }
        if (zmsg_signal(reply) >= 0) {
            zmsg_destroy(&reply);
            snprintf(why, why_size, "supervisor tree ended");
            return CD_ESTATE;
        }
        char *answer = zmsg_popstr(reply);
        char *text = zmsg_popstr(reply);
        int rc = answer && streq(answer, "OK")                                 ? 0
                 : answer && (streq(answer, "ERR") || streq(answer, "$CRASH")) ? CD_ESTATE
                                                                               : 1;
        if (rc == CD_ESTATE) {
            snprintf(why, why_size, "%s", text ? text : "failed");
        }
        zstr_free(&answer);
        zstr_free(&text);
        zmsg_destroy(&reply);
        if (rc != 1) {
            return rc;
        }
    }
    snprintf(why, why_size, "no answer within %d ms", timeout_ms);
    return CD_ETIMEDOUT;
}
