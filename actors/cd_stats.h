/*  cd_stats: the statistics snapshot writer (registry name `stats`).

    Once a minute (interval_ms) it asks the persist actor to run statement
    "stats.snapshot" (db/cd_q_system.h: the counters, read from the tables
    inside the INSERT, merged with what this node adds) with this node's
    id and {"uptime_s": s}: one row of stats_history per node per minute,
    which GET /api/v1/stats/history pages through. The actor holds no
    database connection and does no reading of its own: the snapshot is
    computed by the database where it is stored.

    The statement is registered with persist by the API's system module
    (cd_api_stmts lists cd_q_system_writes), so a node that runs persist
    with cd_api_stmts can run this actor beside it. Each request carries a
    deadline of one interval: while the database is away, snapshots are
    dropped (and counted) rather than queued; nothing is retried, the next
    minute brings a new one.

    A `control` envelope with header `op: stats` is answered (kind
    `result`, to `reply_to` or `from`) with {"sent": n, "written": n,
    "failed": n, "last_error": str}. */
#ifndef CD_ACTORS_STATS_H
#define CD_ACTORS_STATS_H

#include "cd_actor.h"

#include <stdint.h>

#define CD_STATS_NAME "stats"
#define CD_STATS_INTERVAL_MS 60000 //  one snapshot a minute (API.md)

//  The actor's arguments; borrowed for the actor's life. Zero fields take
//  the defaults.
typedef struct {
    const char *persist; //  the persist actor's name; NULL: "persist"
    const char *node_id; //  this node's id, stored with each snapshot; may be NULL
    int64_t started_us;  //  node start, monotonic µs (zclock_usecs); 0: the actor's start
    int interval_ms;     //  between snapshots; 0: CD_STATS_INTERVAL_MS
} cd_stats_args_t;

extern const cd_actor_ops_t cd_stats_ops;

#endif
