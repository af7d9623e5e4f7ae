/*  cd_step: the agent side of the step protocol (cd_agent_proto.h), shared
    by the agent kinds (echo, exec, llm).

    An agent reads a step with cd_step_view (views borrowed from the
    envelope, nothing copied: the echo agent answers thousands of steps a
    second), keeps what it needs to answer later in a cd_step_addr_t (a
    plain value, copied), and answers with cd_step_send and a payload
    built by cd_step_pack_result / cd_step_pack_error.

    A `task` or `handoff` without the `step` header is not orchestrated
    (tests and benchmarks call agents directly); cd_step_view still reads
    it, with step 0 and the whole payload as the input, and answers go to
    the `reply_to` header or else the sender, as for a step.

    Pure functions over borrowed data, except cd_step_send (actor thread). */
#ifndef CD_ACTORS_STEP_H
#define CD_ACTORS_STEP_H

#include "cd_actor.h"

#include <stdbool.h>
#include <stdint.h>

//  A step, as views into its envelope (borrowed: valid while it is).
typedef struct {
    int step;           //  step number from the header; 0: not orchestrated
    cd_str_t reply_to;  //  where answers go (reply_to header, else from)
    cd_bin_t input;     //  the stage input: one msgpack value (nil if absent)
    bool input_raw;     //  input holds raw bytes (a bin payload), not msgpack
    cd_bin_t original;  //  the task's input (msgpack), ptr NULL if absent
    cd_bin_t hitl;      //  the "hitl" map, ptr NULL if absent
    cd_bin_t budget;    //  the "budget" map, ptr NULL if absent
    int64_t project_id; //  task.project_id, 0 if nil or absent
} cd_step_view_t;

//  Where and how to answer a step: a value the agent keeps while it works.
typedef struct {
    uint8_t step_id[CD_ENV_UUID_SIZE];  //  the step's id: answers' parent_id
    uint8_t trace_id[CD_ENV_UUID_SIZE]; //  the run
    int64_t task_id;                    //  the task (0 if none)
    int64_t deadline;                   //  µs since the epoch, 0 = none
    int step;                           //  step number, 0: not orchestrated
    char reply_to[CD_ENV_MAX_NAME + 1]; //  destination of answers
} cd_step_addr_t;

//  A HITL answer the step resumes with (views borrowed from the map).
typedef struct {
    int64_t request_id; //  the HITL request, 0 if absent
    cd_bin_t response;  //  the human's response (msgpack), nil if absent
    int approved;       //  1 true, 0 false, -1 nil or absent
    bool expired;       //  the request's deadline passed
} cd_step_hitl_t;

//  A task's budget and what it used so far. Absent limits are < 0.
typedef struct {
    int64_t max_tokens;   //  -1: none
    double max_cost_usd;  //  < 0: none
    int64_t used_tokens;  //  0 if absent
    double used_cost_usd; //  0 if absent
} cd_step_budget_t;

//  True for a `task` or `handoff` envelope (a step, orchestrated or not).
bool cd_step_is_step(const cd_envelope_t *env);

//  True for a cancel: kind `control` with header op=cancel.
bool cd_step_is_cancel(const cd_envelope_t *env);

//  True if cancel (a cancel envelope) is meant for the step at addr: its
//  parent_id is that step's id, or (no parent_id) its task_id is the
//  step's task.
bool cd_step_cancel_matches(const cd_envelope_t *cancel, const cd_step_addr_t *addr);

//  Reads a step. Returns 0, or CD_EPROTO with *why (static text) when an
//  orchestrated step's payload is not a map or a field has the wrong type.
int cd_step_view(const cd_envelope_t *env, cd_step_view_t *out, const char **why);

//  Fills addr from a step envelope and its view.
void cd_step_addr(const cd_envelope_t *env, const cd_step_view_t *view, cd_step_addr_t *addr);

//  Reads view->hitl. Returns 0, CD_ENOTFOUND if the step has none, or
//  CD_EPROTO.
int cd_step_hitl(const cd_step_view_t *view, cd_step_hitl_t *out);

//  Reads view->budget. Returns 0, CD_ENOTFOUND if the step has none, or
//  CD_EPROTO.
int cd_step_budget(const cd_step_view_t *view, cd_step_budget_t *out);

//  Reads a msgpack number (any integer or float) as a double. Returns 0
//  or CD_EPROTO.
int cd_step_read_number(cd_bin_t value, double *out);

//  Writes {"output": <output>, "handoff_to": handoff_to} (handoff_to left
//  out when NULL) into pack, after resetting it. output is one encoded
//  msgpack value and must not live in pack.
void cd_step_pack_result(cd_pack_t *pack, cd_bin_t output, const char *handoff_to);

//  Writes {"code", "message", "retryable", "retry_after_ms"?} into pack,
//  after resetting it; retry_after_ms < 0 leaves it out.
void cd_step_pack_error(cd_pack_t *pack, const char *code, const char *message, bool retryable,
                        int64_t retry_after_ms);

//  Sends kind (result, error, hitl_request) with a map payload to the
//  step's reply_to: parent_id = the step's id, task_id, trace_id and
//  deadline copied.
//  Returns as cd_actor_send; an undeliverable answer is already a dead
//  letter, and other failures are logged here.
int cd_step_send(cd_actor_t *self, const cd_step_addr_t *addr, cd_kind_t kind, cd_bin_t payload);

#endif
