/*  cd_q_orch: what the orchestrator reads and writes (tasks in flight,
    their history, HITL requests raised by agents, leases).

    Conventions: cd_q.h. The orchestrator reads on its own connection
    (the reads below) and writes only through persist, by the statement
    names of cd_q_orch_writes; the cd_q_orch_* write functions run the very
    same SQL, for the tests.

    Every write takes a batch: $2 (or $3) is a JSON array of records, one
    per task, so that one statement carries the steps of many tasks (the
    statement's fixed cost, not the rows, bounds the orchestrator's write
    path, as it bounds the API's creates). Each record changes its task
    only if the task is still what the orchestrator believes: in
    progress, leased to this node ($1), at the attempt it dispatched (a =
    attempts as the claim left it). A record that finds its task changed
    (cancelled, archived, taken over by another node after a lease ran
    out, or a duplicate after a crash) changes nothing, and the answer
    leaves its task out: that is how "no task completes twice" holds.

    History rows are written with their seq, computed from the task's
    event_seq, which the same statement bumps under the task's row lock
    (the trigger of 0002 is skipped when seq is given, migration 0004): a
    step costs one UPDATE of its task, not one per history row.

    The records (keys are short: they travel by the thousand):
      claim    {"t": id, "a": attempts as read, "g": agent, "s": stage}
      advance  {"t", "a", "f": agent that answered, "s": its stage (null
               off the pipeline), "o": its output, "n": {"g": next agent,
               "s": next stage} or absent when the task is done}
      fail     {"t", "a", "f", "s", "e": error object, "r": retryable,
               "b": backoff ms, "p": park (rate limited: not counted)}
      hitl     {"t", "a", "f", "s", "i": the stage input, "q": {question,
               options?, timeout_s?, on_timeout?} (checked by the caller)}

    History a run writes (API.md's kinds), for a three-stage team:
      created (API) . assigned(->a) . started . output(a) . handoff(a->b)
      . output(b) . handoff(b->c) . output(c) . completed
    with `retry` (payload "resume": true: the run resumes from its last
    handoff, unlike the API's retry, which starts over) or `failed` when
    an attempt fails, and hitl_requested / hitl_answered / hitl_expired
    around a question. Payloads: assigned {stage, attempt}, started
    {attempt, node}, output {stage, output}, handoff {stage, input} (the
    next stage and its input), hitl_requested {hitl_id, question, stage,
    input}, retry {error?, attempt, stage, resume, backoff_ms?, parked?,
    reason?}, failed {error, attempt, stage}.

    Events: task.started {attempt, agent, stage}, task.handoff {from, to,
    stage}, task.completed {agent, output}, task.failed {error, attempts},
    hitl.requested and hitl.expired (the request), all in the statement
    that makes the change. */
#ifndef CD_DB_Q_ORCH_H
#define CD_DB_Q_ORCH_H

#include "cd_q.h"

//  The writes persist runs for the orchestrator (cd_q.h, cd_q_write_t):
//    orch.claim    ($1 node, $2 lease ms, $3 claim records)
//                  -> [id, ...] the tasks claimed (in_progress, leased)
//    orch.advance  ($1 node, $2 advance records) -> [id, ...] applied
//    orch.fail     ($1 node, $2 fail records) -> [{id, status}, ...]
//                  status todo (retried later, or parked) or failed
//    orch.hitl     ($1 node, $2 hitl records) -> [{id, hitl_id}, ...]
//    orch.renew    ($1 node, $2 lease ms, $3 [id, ...]) -> [id, ...] renewed
//    orch.recover  ($1 node, $2 "true": also this node's own leases, live
//                  or not) -> [{id, status}, ...] requeued (todo) or failed
//    orch.expire   ($1 node, $2 lease ms) -> [{id, action}, ...], action
//                  "resume" (the task is in progress again, leased to
//                  node), "failed", or "wait" (other requests pending)
extern const cd_q_write_t cd_q_orch_writes[];
extern const size_t cd_q_orch_n_writes;

//  Runs write statement `name` of cd_q_orch_writes with params, returning
//  its answer (first column of the first row) in *out (caller frees).
//  For tests; the orchestrator sends these to persist.
int cd_q_orch_write(cd_db_t *db, const char *name, const char *const *params, char **out);

//  The best claimable tasks for each key of keys, a JSON array of
//  {"k": "agent"|"role"|"team", "v": name or team id, "n": at most this
//  many}: status todo, next_attempt_at passed, assigned to that key,
//  highest priority first, then oldest. *out receives one array of task
//  records (below), in that order over all keys. Nothing is locked: the
//  claim write re-checks each task.
//
//  A task record: {id, title, project_id, priority, created_us, assignee,
//  input, attempts, max_attempts, timeout_ms, budget, usage, status,
//  resume}; resume is null for a run that starts at its first stage, else
//  where the last run stopped: {kind: "handoff"|"hitl_requested", agent,
//  stage, input, hitl: {request_id, status, response, approved,
//  on_timeout} | null}. (The position after the last reset: the task's
//  `created` row or an API retry.)
int cd_q_orch_candidates(cd_db_t *db, const char *keys, char **out);

//  The task record of task id if it is in progress and leased to node
//  (a task resumed after a HITL answer or expiry), or CD_ENOTFOUND.
int cd_q_orch_position(cd_db_t *db, int64_t id, const char *node, char **out);

//  The directory: {"agents": [{name, kind, role, concurrency, node_id,
//  status}], "teams": [{id, stages: [[member agent, ...], ...]}]} with a
//  team's stages in its type's order, each the members holding that
//  stage's role.
int cd_q_orch_directory(cd_db_t *db, char **out);

#endif
