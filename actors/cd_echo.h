/*  cd_echo: the deterministic agent, for tests and benchmarks.

    For each `task` or `handoff` envelope it answers {"echo": <payload>}:
    to the `reply_to` header if present, else to the sender; or, with
    `handoff_to` set, it hands that output on to the named agent (which may
    live on another node: `node/<id>/agent/<name>`), passing `reply_to`
    along so the last agent answers the original requester.

    Options (agent config): sleep_ms (answer after this delay, without
    blocking the actor), fail (answer with an `error` envelope instead),
    handoff_to (agent name). Headers of one message can also ask for
    faults, for supervision tests: `echo.crash` (the handler returns an
    error), `echo.exit` (the thread ends as if returning unexpectedly),
    `echo.block_ms` (the handler blocks: a hang). */
#ifndef CD_ACTORS_ECHO_H
#define CD_ACTORS_ECHO_H

#include "cd_actor.h"
#include "cd_config.h"

typedef struct {
    int sleep_ms;     //  delay before answering
    bool fail;        //  answer with an error
    char *handoff_to; //  next agent, or NULL
} cd_echo_args_t;

extern const cd_actor_ops_t cd_echo_ops;

//  Parses an agent's options. Returns 0, or CD_ECONFIG with *errmsg (caller
//  frees) naming the option. Caller owns *out (cd_echo_args_destroy).
int
cd_echo_args_new(const cd_config_agent_t *agent, cd_echo_args_t **out, char **errmsg);

void
cd_echo_args_destroy(cd_echo_args_t **self_p);

#endif
