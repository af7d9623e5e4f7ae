/*  cd_agents: the agent kinds this build runs, in one place.

    The engine's supervisor knows nothing of kinds: it asks a child
    factory (cd_supervisor.h) to build a child from a `start` request. This
    module is that factory for the `agents` supervisor, and the check the
    REST API runs on an agent's kind and config before it stores one.

    Kinds (API.md "Agents"): echo (cd_echo.h), llm (cd_llm.h) and exec
    (cd_exec.h) run here as actors; remote is served by an external worker
    (no actor on this node). Creating any agent is admin-only in the API,
    which matters most for exec.

    Factory request payload (the supervisor's `start`):
        {"name": "<agent name>", "kind": "echo"|"llm"|"exec",
         "config": "<JSON object text>", "concurrency": int?}
    The config text is the agent's `config` as stored in the agents table;
    concurrency is the agent's (default 1): exec and llm agents run that
    many steps at once and queue the rest.

    The factory's factory_arg is a cd_agents_env_t (below), or NULL: then
    llm agents start but answer every step not_configured.

    Pure functions and a static factory; any thread. */
#ifndef CD_ACTORS_AGENTS_H
#define CD_ACTORS_AGENTS_H

#include "cd_llm.h"
#include "cd_supervisor.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CD_AGENTS_PREFIX "agent/" //  registry names are agent/<name>

//  What agents need from the node: the `agents` supervisor's factory_arg.
//  Borrowed by the factory and by every agent it builds: it must outlive
//  the supervisor (the node owns it, like the rates it points to).
typedef struct {
    const char *conninfo;  //  the node's database (llm agents read their context), or NULL
    const char *persist;   //  persist's registry name (NULL: "persist")
    const char *bus;       //  the bus's registry name (NULL: "bus")
    cd_llm_rates_t *rates; //  the node's per-connection buckets, NULL: no rate limits
} cd_agents_env_t;

//  True for the kinds API.md names (echo, llm, exec, remote).
bool cd_agents_kind_valid(const char *kind);

//  True if agents of this kind run as an actor on this node (echo, llm,
//  exec).
bool cd_agents_kind_local(const char *kind);

//  Checks an agent's config (a JSON object, or NULL for none) for kind.
//  Returns 0, or CD_EINVAL (a bad kind, key or value: why names it,
//  "config.<key>: ..." for a config problem).
int cd_agents_check(const char *kind, const json_t *config, char *why, size_t why_size);

//  The factory for the `agents` supervisor (factory_arg: a
//  cd_agents_env_t, or NULL).
extern const cd_child_factory_t cd_agents_factory;

#endif
