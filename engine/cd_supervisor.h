/*  cd_supervisor: a supervisor is an actor whose job is other actors.

    It starts its children in order, watches them (a $CRASH report, a thread
    that ends without being asked, a heartbeat that goes unanswered) and
    restarts them by its strategy, as in OTP:
      one_for_one   restart the child that failed
      one_for_all   stop every other child, restart them all in order
      rest_for_one  stop the children started after it, restart it and them
    Restart intensity: more than R restarts within T seconds and the
    supervisor gives up: it stops all its children (their queued messages
    become dead letters) and fails itself, so its own supervisor decides. At
    the root the node shuts down with a non-zero exit.

    A supervisor is an ordinary cd_actor (cd_supervisor_ops), so supervisors
    nest. Children are started by the supervisor's thread; a child's inbox is
    owned by the supervisor and survives the child's restarts.

    Commands on a supervisor's pipe (from its parent), each answered with
    "OK" or "ERR" <why>:
      START   <path> <spec pointer>   start a new child
      STOP    <path> <child name>     stop a child; its queue becomes dead letters
      RESTART <path> <child name>     stop and start a child
    <path> names the supervisor below this one that should act ("" = this
    one, "agents" = its child `agents`, "a>b" deeper); a supervisor forwards
    down and relays the answer up. */
#ifndef CD_ENGINE_SUPERVISOR_H
#define CD_ENGINE_SUPERVISOR_H

#include "cd_actor.h"

typedef enum { CD_ONE_FOR_ONE, CD_ONE_FOR_ALL, CD_REST_FOR_ONE } cd_strategy_t;

typedef enum {
    CD_RESTART_PERMANENT, //  always restarted
    CD_RESTART_TRANSIENT, //  restarted only after a failure, not after a clean exit
    CD_RESTART_TEMPORARY  //  never restarted
} cd_restart_t;

typedef struct {
    const char *name;          //  registry name; copied
    const cd_actor_ops_t *ops; //  behaviour; borrowed, static
    void *args;                //  init argument; borrowed, must outlive the child
    cd_restart_t restart;      //  restart policy
} cd_child_spec_t;

typedef struct {
    cd_strategy_t strategy;          //  how failures spread
    int max_restarts;                //  R (< 0: the runtime's default)
    int window_s;                    //  T (<= 0: the runtime's default)
    const cd_child_spec_t *children; //  started in this order; copied
    size_t n_children;               //  entries in children
} cd_supervisor_spec_t;

//  Supervisor behaviour; args is a cd_supervisor_spec_t * (borrowed until
//  init returns; the child args it names must outlive the supervisor).
extern const cd_actor_ops_t cd_supervisor_ops;

//  The root of a tree, run from a thread that is not an actor (main, tests).
typedef struct cd_root cd_root_t;

//  Starts a root supervisor named name with spec. Returns NULL and writes
//  why if any child failed to start. Caller owns the result.
cd_root_t *
cd_root_new(const cd_runtime_t *rt, const char *name, const cd_supervisor_spec_t *spec, char *why,
            size_t why_size);

//  Stops the tree (children in reverse start order) within the runtime's
//  stop timeout per actor and destroys the root. Returns 0, or CD_ETIMEDOUT
//  if some actor did not stop (its thread is left running). Nulls *self_p.
int
cd_root_destroy(cd_root_t **self_p);

//  The root's pipe, to poll for $CRASH (the tree gave up) or its end.
//  Borrowed.
zactor_t *
cd_root_actor(cd_root_t *self);

//  Sends a command (see above) and waits up to timeout_ms for its answer.
//  Returns 0 on "OK", CD_ETIMEDOUT, or CD_ESTATE with why filled on "ERR"
//  or if the root failed meanwhile.
int
cd_root_call(cd_root_t *self, const char *command, const char *path, const char *name,
             const cd_child_spec_t *spec, int timeout_ms, char *why, size_t why_size);

const char *
cd_strategy_name(cd_strategy_t strategy);

//  Parses "one_for_one", "one_for_all", "rest_for_one". Returns 0 or CD_EINVAL.
int
cd_strategy_parse(const char *text, cd_strategy_t *strategy);

#endif
