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
    down and relays the answer up.

    Control by message
    ------------------
    Any actor (or cd_port) can drive a supervisor through its inbox, by its
    registry name (`agents`). Request: kind `control`, header `op` =
    "start" | "stop" | "restart" | "remove", payload map

        {"name": "<child name>", ...}

    where name is the child's registry name, or that name without the
    supervisor's prefix (spec.prefix, e.g. "agent/": "coder" and
    "agent/coder" name the same child). Control characters are refused. For
    `start` the payload also carries what the child factory needs, e.g.
        {"name": "coder", "kind": "echo", "config": <any msgpack value>}
    Other kinds, and control envelopes without `op`, are ignored.

      start    a child this supervisor knows and has stopped is started again
               (no factory call); otherwise the factory (spec.factory) builds
               a new child spec from the request, the child is started (its
               init has answered when the reply goes) and kept, after the
               children it already has. A request-driven start that fails
               leaves nothing behind (a known child stays stopped).
      stop     stops the child (its queued messages become dead letters,
               senders get CD_EDEAD) but keeps it known, with its inbox and
               log lines: `start` or `restart` brings it back. Stopping a
               stopped child is not an error.
      restart  stops and starts the child (counted as a restart of it; not
               held against the restart intensity). If its start fails it is
               left stopped and the answer is `failed`.
      remove   stops the child and forgets it: its registry entry (and log
               lines) go, the factory releases its args.

    Answer, to the `reply_to` header if present, else to `from`, with
    parent_id = the request's id and task_id, trace_id copied:
      kind `result`, payload {"ok": true, "name": "<registry name>",
                              "status": "running" | "stopped" | "removed"}
      kind `error`,  payload {"code": str, "message": str}
        code: "not_found" (no such child: stop, restart, remove),
              "exists" (start: the child runs already, or another actor
              has the name), "invalid" (malformed request, unknown op,
              a supervisor without a factory, or the factory refused it:
              message is the factory's text), "failed" (the child's init
              failed or did not answer, or the factory's spec was unusable).
    Apart from a failed restart (above), an error changes nothing.

    A supervisor serves one request (or command, or child failure) at a
    time: a start waits for the child's init, up to the runtime's stop
    timeout, so a requester's own timeout should allow for that.

    Children built by the factory are supervised like the others: the
    strategy and restart intensity apply to them, they stop in reverse start
    order when the supervisor ends, and their args are released then (or at
    `remove`). A supervisor that gives up loses them with the rest; when its
    own supervisor restarts it, it starts only the children of its spec, so
    whoever started children on request must start them again. A child
    stopped on purpose (`stop`, or a transient/temporary child that ended)
    is not restarted by a sibling's failure under one_for_all or
    rest_for_one. */
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

//  Builds children on request (the `start` op above). Supplied by whoever
//  builds the supervisor's spec: the node wiring knows the agent kinds, the
//  engine does not. Both callbacks run in the supervisor's thread.
typedef struct {
    //  Builds the spec of a new child for request (the `start` envelope;
    //  borrowed, valid during the call: copy what the child needs). On entry
    //  *out is {registry name (borrowed; leave it), NULL, NULL,
    //  CD_RESTART_PERMANENT}. Sets out->ops (static), out->args (made for
    //  this child; the supervisor owns them from then on and hands them back
    //  to release) and may set out->restart. Returns 0, or an error with why
    //  filled for the requester (unknown kind, bad config); on error it
    //  keeps nothing and has released what it made.
    int (*build)(void *factory_arg, const cd_envelope_t *request, cd_child_spec_t *out, char *why,
                 size_t why_size);
    //  Releases args made by build, once the child is removed or the
    //  supervisor has ended and no thread of the child still runs.
    void (*release)(void *factory_arg, void *child_args);
} cd_child_factory_t;

typedef struct {
    cd_strategy_t strategy;            //  how failures spread
    int max_restarts;                  //  R (< 0: the runtime's default)
    int window_s;                      //  T (<= 0: the runtime's default)
    const cd_child_spec_t *children;   //  started in this order; copied
    size_t n_children;                 //  entries in children
    const cd_child_factory_t *factory; //  builds children on request; borrowed, static; or NULL
    void *factory_arg;                 //  passed to factory; borrowed, must outlive the supervisor
    const char *prefix;                //  completes request names ("agent/"); copied; or NULL
} cd_supervisor_spec_t;

//  Supervisor behaviour; args is a cd_supervisor_spec_t * (borrowed until
//  init returns; the child args, factory and factory_arg it names must
//  outlive the supervisor).
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
