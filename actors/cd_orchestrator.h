/*  cd_orchestrator: the orchestrator (registry name `orchestrator`), which
    runs tasks through agents (DESIGN.md "Tasks and orchestration").

    It claims `todo` tasks this node can serve, routes each to an agent
    (a named agent; the least-loaded agent of a role; a team's pipeline,
    its type's roles in order, each stage served by the member holding
    that role), drives every step with the agent protocol
    (cd_agent_proto.h), and records each step through persist before the
    next one starts. It never holds a thread for a task: a task lives in
    its memory only while a step runs or waits for a free agent, and in
    the database always.

    Routing and capacity. An agent never runs more steps at once than its
    `concurrency`. Local agents are the `agent/<name>` actors running in
    this node's registry; `remote` agents are served by HTTP workers
    through the pull API (a worker's poll is a free slot). A claim takes
    only what the free slots can start now, best first (priority 9 before
    0, then oldest), so tasks no agent can take stay `todo`; a handoff to
    a busy agent waits in that agent's queue, best first.

    Steps. A stage gets {"input": the previous stage's output (the task's
    input for the first), "original": the task's input, "task": {id,
    title, project_id}, "hitl"?, "budget"?}. A result's `handoff_to` sends
    the output to that agent next and takes the task off its pipeline:
    from then on only handoff_to decides, and the task completes with the
    output of the first agent that does not hand off. Otherwise a team's
    task moves to its next stage, and the last stage's output is the
    task's output.

    Recording (db/cd_q_orch.h has the statements, the history and the
    events each writes). Records of many tasks travel in one statement;
    every record is a compare-and-set on (status in_progress, lease owner
    this node, attempt), so a duplicate or late record, a cancelled task
    or one another node took over changes nothing. Answers are matched to
    the step in flight by the step's id (parent_id); any other is
    discarded.

    Failure. An `error` answer with retryable true, a step timeout
    (timeout_ms; the agent is told to cancel) or an agent restarting under
    a step fails the attempt: back to `todo` after an exponential backoff
    (backoff_ms x 2^(attempt-1), at most backoff_max_ms), resuming at the
    failed stage, until max_attempts, then `failed` with the error.
    retryable false fails the task at once; code "rate_limited" with
    retry_after_ms parks it until then without counting the attempt.

    HITL. A `hitl_request` answer makes the task `waiting_human` (a
    hitl_requests row; nothing is held in memory). When it is answered
    (the API's hitl.respond puts the task back in progress, leased to the
    answering node, and kicks op=resume) or expires (a pass every
    hitl_check_ms, which also catches deadlines that passed while no node
    ran), the same agent gets the same stage again with "hitl" filled in;
    on_timeout "fail" fails the task instead.

    Leases and recovery. Tasks this node runs are leased to its node id;
    the leases are renewed every lease_ms/3. On start, the tasks still
    leased to this node id (it crashed or was killed) go back to `todo`,
    as do tasks whose lease expired (another node died), and the next
    claim resumes each from its last recorded handoff (or question), the
    attempt counted.

    Wake-ups: op=kick (new or retried tasks: claim), op=cancel (task_id: a
    running step is told to stop and its late answer discarded), op=resume
    (task_id: a HITL answer), op=agents (the directory changed), all
    `control` envelopes without an answer. The orchestrator also claims
    every scan_ms and re-reads the directory every refresh_ms, so nothing
    depends on a kick (several nodes share one database).

    Pull API (remote agents), `control` envelopes answered with a `result`
    {"s": HTTP status, "b": JSON text} (parent_id = the request id):
      op=next, payload {"agent": name, "wait_ms": int}: the next step for
        that remote agent, waiting up to wait_ms: 200 with the task record
        plus "step": {"id": hex, "number", "stage", "input", "original",
        "hitl"?, "deadline"}; 204 when none came in time; 404 for an agent
        that is not remote.
      op=complete, payload {"task_id": int, "body": JSON text}: body
        {"step": id, "output": any, "handoff_to"?} | {"step", "error":
        {code, message, retryable?, retry_after_ms?}} | {"step", "hitl":
        {question, options?, timeout_s?, on_timeout?}}: the answer to
        that step, answered after it is recorded: 200 {"id", "status"} (the
        task's status then), or 409 when that step is not the one in
        flight (finished, timed out, cancelled, or another's). */
#ifndef CD_ACTORS_ORCHESTRATOR_H
#define CD_ACTORS_ORCHESTRATOR_H

#include "cd_actor.h"

#define CD_ORCHESTRATOR_NAME "orchestrator"

#define CD_ORCH_LEASE_MS 30000
#define CD_ORCH_SCAN_MS 250
#define CD_ORCH_BACKOFF_MS 1000
#define CD_ORCH_BACKOFF_MAX_MS 60000
#define CD_ORCH_HITL_CHECK_MS 1000
#define CD_ORCH_REFRESH_MS 2000
#define CD_ORCH_CLAIM_MAX 500     //  tasks per claim
#define CD_ORCH_WAIT_MAX_MS 30000 //  longest pull API wait

//  The actor's arguments; borrowed for its life. Zero fields take the
//  defaults above.
typedef struct {
    const char *conninfo; //  the database, for reads (required)
    const char *node_id;  //  this node's id: the lease owner (required)
    const char *persist;  //  the persist actor ("persist")
    int lease_ms;         //  lease length
    int scan_ms;          //  claim at least this often
    int backoff_ms;       //  first retry delay
    int backoff_max_ms;   //  longest retry delay
    int hitl_check_ms;    //  HITL deadline pass
    int refresh_ms;       //  directory re-read
    int claim_max;        //  tasks per claim
} cd_orchestrator_args_t;

extern const cd_actor_ops_t cd_orchestrator_ops;

#endif
