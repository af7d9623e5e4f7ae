/*  cd_agent_proto: how the orchestrator and agents talk. Every agent kind
    (echo, llm, exec, and the gateway that serves remote workers) speaks
    this; the orchestrator (registry name `orchestrator`) drives it.

    One step of a task run
    ----------------------
    Orchestrator -> agent, to `agent/<name>`:
      kind `task` (the first step of a run) or `handoff` (a later step),
      task_id = the task, trace_id = the run (one per attempt), id = the
      step's message id, attempt = the task's attempt (from 1),
      deadline = now + the task's timeout_ms (0: none),
      headers: `reply_to` = "orchestrator", `step` = the step number
      ("1", "2", ...; its presence marks an orchestrated step),
      payload map:
        {"input":    <the stage input: the task input for the first
                      stage, the previous stage's output after>,
         "original": <the task's input, unchanged>,
         "task":     {"id": int, "title": str, "project_id": int|nil},
         "hitl":     {"request_id": int, "response": <any>,
                      "approved": bool|nil, "expired": bool}   (only when the
                      step resumes after a human answered, or a deadline passed)
         "budget":   {"max_tokens": int|nil, "max_cost_usd": float|nil,
                      "used_tokens": int, "used_cost_usd": float}  (only if the
                      task has a budget)}

    Agent -> orchestrator (to `reply_to`), parent_id = the step's id,
    task_id and trace_id copied; exactly one of:
      kind `result`  payload {"output": <any>, "handoff_to": str?}
                     handoff_to names the next agent and overrides the team
                     pipeline for this step
      kind `error`   payload {"code": str, "message": str,
                              "retryable": bool, "retry_after_ms": int?}
                     retryable false fails the task at once (bad input,
                     budget_exceeded, vault_locked); true counts an attempt
                     (or, with retry_after_ms and code "rate_limited",
                     parks the task until then without counting one)
      kind `hitl_request` payload {"question": str, "options": [str]?,
                                   "timeout_s": int?, "on_timeout":
                                   "deny"|"approve"|"fail"?}
                     the agent is done with the step for now; when the
                     request is answered (or expires) the orchestrator sends
                     the same agent a new step with the same input and
                     "hitl" filled in. No thread waits meanwhile.

    Meanwhile an agent may send live events to `bus` (kind `control`,
    header op=emit, persist false), e.g. task.token for streamed tokens,
    and usage records through persist (llm_calls).

    Cancel: orchestrator -> agent, kind `control`, header op=cancel,
    task_id set, parent_id = the step's id. The agent stops the work if it
    can (kills a child process, aborts an HTTP call) and need not answer;
    an answer that still comes is discarded by the orchestrator, which
    matches answers to the step it is waiting for.

    Messages without a `step` header are not orchestrated (tests and
    benchmarks call agents directly): agents answer them as they always
    did (echo answers {"echo": <payload>} to reply_to or from). */
#ifndef CD_ACTORS_AGENT_PROTO_H
#define CD_ACTORS_AGENT_PROTO_H

#define CD_PROTO_ORCHESTRATOR "orchestrator"
#define CD_PROTO_STEP_HEADER "step"

#endif
