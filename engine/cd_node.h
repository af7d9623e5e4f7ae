/*  cd_node: a whole node, assembled. The one module that wires every layer
    together (engine/cadred.c is only its main(): signals, exit codes).

    cd_node_start runs the start-up sequence of DESIGN.md "Running": the
    data directory and its lock, the node id, the database (DATABASE_URL,
    or the embedded PostgreSQL in <data dir>/pg), migrations, the supervisor
    tree, then the HTTP frontend:

      root (one_for_one)
        deadletter
        persist          the batching writer every durable write goes through
        bus              events: tails what persist committed, fans it out
        api/0 .. api/N-1 the REST API's actors (reads on their own
                         connections, writes through persist)
        stats            statistics snapshots
        cluster          when a cluster endpoint or peers are configured
        orchestrator     runs tasks through agents (claims, steps, leases)
        scheduler        fires scheduled tasks
        agents (one_for_one)
          agent/<name>   configured agents, then those created over the API

    cd_node_stop undoes it in reverse: the HTTP frontend first (no new
    request reaches an actor that is stopping), then the tree in reverse
    start order, then the database, the embedded PostgreSQL, the lock.

    Tests start a node in-process with it (tests/support/cd_testnode), so
    integration tests run exactly the node cadred runs. Not thread-safe:
    one thread starts and stops a node. */
#ifndef CD_ENGINE_NODE_H
#define CD_ENGINE_NODE_H

#include "cd_config.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct cd_node cd_node_t;

//  Starts a node from config (takes ownership of *config_p and nulls it;
//  on failure it is released too). started_us is the process start
//  (zclock_usecs), for uptime. Returns 0 and *out (caller owns it), or an
//  error code with *errmsg (caller frees): CD_ECONFIG for bad
//  configuration (exit code 2), anything else for a failed start.
int cd_node_start(cd_config_t **config_p, int64_t started_us, cd_node_t **out, char **errmsg);

//  Stops everything the node started, in reverse order. Returns true if
//  some agent thread hung and is still running (the caller should _exit
//  rather than wait for ZeroMQ's context at exit). Safe on NULL; nulls
//  *self_p.
bool cd_node_stop(cd_node_t **self_p);

//  The root supervisor's pipe: "$CRASH" arrives on it when the tree gave
//  up. Borrowed.
zactor_t *cd_node_root(cd_node_t *self);

//  The bound HTTP address ("127.0.0.1:8080"), node id, data dir. Borrowed.
const char *cd_node_http_addr(cd_node_t *self);
const char *cd_node_id(cd_node_t *self);
const cd_config_t *cd_node_config(cd_node_t *self);

#endif
