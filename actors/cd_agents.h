/*  cd_agents: the agent kinds this build runs, in one place.

    The engine's supervisor knows nothing of kinds: it asks a child
    factory (cd_supervisor.h) to build a child from a `start` request. This
    module is that factory for the `agents` supervisor, and the check the
    REST API runs on an agent's kind and config before it stores one.

    Kinds (API.md "Agents"): echo (runs here), remote (served by an
    external worker: no actor on this node), llm and exec (their actors
    come with the orchestration work; until then creating one is refused
    with a clear message, not stored half-working).

    Factory request payload (the supervisor's `start`):
        {"name": "<agent name>", "kind": "echo", "config": "<JSON object text>"}
    The config text is the agent's `config` as stored in the agents table.

    Pure functions and a static factory; any thread. */
#ifndef CD_ACTORS_AGENTS_H
#define CD_ACTORS_AGENTS_H

#include "cd_supervisor.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CD_AGENTS_PREFIX "agent/" //  registry names are agent/<name>

//  True for the kinds API.md names (echo, llm, exec, remote).
bool cd_agents_kind_valid(const char *kind);

//  True if agents of this kind run as an actor on this node.
bool cd_agents_kind_local(const char *kind);

//  Checks an agent's config (a JSON object, or NULL for none) for kind.
//  Returns 0, CD_EINVAL (a bad key or value: why names it) or CD_ENOSYS
//  (the kind is not available in this build: why says so).
int cd_agents_check(const char *kind, const json_t *config, char *why, size_t why_size);

//  The factory for the `agents` supervisor (factory_arg unused: NULL).
extern const cd_child_factory_t cd_agents_factory;

#endif
