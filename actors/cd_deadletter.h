/*  cd_deadletter: where undeliverable messages end up.

    Every message that could not be delivered (unknown name, an actor that
    is stopped or dead beyond its restarts, a malformed message) is sent here
    by the runtime with its reason and original bytes. The actor counts them
    by reason, keeps the most recent ones and logs each. A `control` envelope
    with header `op: stats` is answered with
    {"total": n, "reasons": {"<reason>": n, ...}}. (Persisting them to the
    database comes with the persistence layer.) */
#ifndef CD_ACTORS_DEADLETTER_H
#define CD_ACTORS_DEADLETTER_H

#include "cd_actor.h"

#define CD_DEADLETTER_KEEP 256 //  recent records kept in memory

extern const cd_actor_ops_t cd_deadletter_ops;

#endif
