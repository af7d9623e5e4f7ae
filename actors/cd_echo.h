/*  cd_echo: the deterministic agent, for tests and benchmarks.

    Orchestrated steps (header `step`, cd_agent_proto.h) are answered to
    reply_to with parent_id = the step's id:
      result  {"output": {"echo": <payload.input>}, "handoff_to": <option>}
              (handoff_to only when configured: the orchestrator routes)
      error   {"code": "echo_failed", "message": ..., "retryable": true}
              with `fail`
      hitl_request {"question", "options"?, "timeout_s"?, "on_timeout"?}
              with `ask_human`, on a step without "hitl"; on the step that
              resumes it (with "hitl") the output is
              {"echo": input, "human": <hitl.response>}, or after an
              expired request {"echo": input, "approved": false} when it
              was denied (hitl.approved false, or nil with on_timeout
              deny, the default), {"echo": input} when approved; an
              expired request whose policy is fail (which the orchestrator
              handles itself) is answered error {"code": "hitl_expired",
              "retryable": false}.
    A `control` op=cancel drops an answer still waiting for its sleep_ms
    (matched by parent_id = the step's id, or by task_id without one).

    Messages without a `step` header (tests and benchmarks) are answered as
    they always were: {"echo": <payload>} to the `reply_to` header if
    present, else to the sender; or, with `handoff_to` set, that output is
    handed on to the named agent (which may live on another node:
    `node/<id>/agent/<name>`), passing `reply_to` along so the last agent
    answers the original requester; with `fail`, an `error` envelope
    {"error": "..."}.

    Options (agent config): sleep_ms (answer after this delay, without
    blocking the actor), fail, handoff_to (agent name), ask_human (a
    question, or the JSON text of {question, options?, timeout_s?,
    on_timeout?}: a value that starts with '{' is read as that object).
    Headers of one message can also ask for faults, for supervision tests:
    `echo.crash` (the handler returns an error), `echo.exit` (the thread
    ends as if returning unexpectedly), `echo.block_ms` (the handler
    blocks: a hang). */
#ifndef CD_ACTORS_ECHO_H
#define CD_ACTORS_ECHO_H

#include "cd_actor.h"
#include "cd_config.h"

#define CD_ECHO_MAX_QUESTION 4096 //  bytes of an ask_human question
#define CD_ECHO_MAX_OPTIONS 32    //  choices an ask_human may offer
#define CD_ECHO_MAX_TIMEOUT_S (30 * 86400)

//  What ask_human asks (all NULL/0 when the option is absent).
typedef struct {
    char *question;   //  the question, or NULL: ask nothing
    char **options;   //  choices offered, or NULL
    size_t n_options; //  entries in options
    int timeout_s;    //  request deadline, 0: none
    char *on_timeout; //  "deny", "approve", "fail", or NULL (the orchestrator's default)
} cd_echo_ask_t;

typedef struct {
    int sleep_ms;      //  delay before answering
    bool fail;         //  answer with an error
    char *handoff_to;  //  next agent, or NULL
    cd_echo_ask_t ask; //  ask_human, if set
} cd_echo_args_t;

extern const cd_actor_ops_t cd_echo_ops;

//  Parses an agent's options. Returns 0, or CD_ECONFIG with *errmsg (caller
//  frees) naming the option. Caller owns *out (cd_echo_args_destroy).
int
cd_echo_args_new(const cd_config_agent_t *agent, cd_echo_args_t **out, char **errmsg);

void
cd_echo_args_destroy(cd_echo_args_t **self_p);

#endif
