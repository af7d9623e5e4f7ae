/*  cd_scheduler: fires scheduled tasks (registry name `scheduler`).

    Every tick_ms it reads the enabled schedules whose next_run_at has
    come (db/cd_q_schedules.h) and fires each once through persist
    ("schedules.fire": the task with its history and events, then
    schedule.fired, and next_run_at moved on, in one statement that is a
    compare-and-set on next_run_at, so several nodes fire a schedule once).
    A cron schedule's next time is its next minute after now (UTC,
    actors/cd_cron.h); an interval schedule keeps its beat
    (next_run_at + k x interval_s, the first after now). After a firing it
    kicks the orchestrator.

    Downtime. A firing is missed when the one after it is due too: the
    node was down (or the scheduler stalled) for more than a period. Then
    the schedule's catch_up decides: "once" fires once for all the missed
    periods; "skip" (the default) fires none of them and waits for the
    next time after now. Either way a schedule never fires once per
    missed period.

    Wire: `control` op=tick makes it look now (tests). No answers. */
#ifndef CD_ACTORS_SCHEDULER_H
#define CD_ACTORS_SCHEDULER_H

#include "cd_actor.h"

#define CD_SCHEDULER_NAME "scheduler"
#define CD_SCHEDULER_TICK_MS 1000

//  Borrowed for the actor's life. Zero fields take the defaults.
typedef struct {
    const char *conninfo;     //  the database, for reads (required)
    const char *persist;      //  the persist actor ("persist")
    const char *orchestrator; //  kicked after a firing ("orchestrator"), or NULL
    int tick_ms;              //  how often due schedules are read
} cd_scheduler_args_t;

extern const cd_actor_ops_t cd_scheduler_ops;

#endif
