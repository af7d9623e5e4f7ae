/*  cd_pwriter: an actor's writes through the persist actor, with the
    retries persist's contract asks of its requesters (cd_persist.h).

    A write is one persist request (a statement name and text parameters).
    The writer keeps each request it sent until persist answers it. A
    definitive answer (committed, or the statement rejected) calls the
    write's continuation once. A transient one (busy, the database away,
    the actor stopped, an answer "in doubt", or no answer within
    timeout_ms, e.g. persist crashed with it) does not: the request is sent
    again, with the same id, after a backoff (100 ms doubling to 2 s), for
    as long as it takes. Persist records every committed request id, so a
    request sent twice is applied at most once; the continuation learns
    the outcome either way. Writers that must not lose a write (the
    orchestrator's step records) use this instead of a bare send.

    Owned by one actor and used on its thread only: the actor routes
    persist's answers to cd_pwriter_handle and calls cd_pwriter_tick from
    a timer (every 100 ms is plenty). */
#ifndef CD_ACTORS_PWRITER_H
#define CD_ACTORS_PWRITER_H

#include "cd_actor.h"

#include <stdbool.h>
#include <stddef.h>

#define CD_PWRITER_TIMEOUT_MS 30000 //  no answer this long: send again

typedef struct cd_pwriter cd_pwriter_t;

//  A definitive outcome. Strings borrowed, valid during the continuation.
typedef struct {
    int rc;               //  0 committed; CD_EDB the statement was rejected (sqlstate);
                          //  CD_EINVAL persist refused the request (bad_request, too_big ...);
                          //  CD_ECLOSED the writer is being destroyed (free arg, nothing else)
    const char *value;    //  the statement's answer (first column of its first row), or NULL
    const char *code;     //  persist's error code, or "" when committed
    const char *sqlstate; //  with CD_EDB, else ""
    const char *message;  //  error text, or ""
} cd_pwriter_result_t;

typedef void(cd_pwriter_fn)(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg);

//  A writer for actor self, sending to persist (borrowed name). Caller
//  owns the result.
cd_pwriter_t *cd_pwriter_new(cd_actor_t *self, const char *persist, int timeout_ms);

//  Frees the writer and every write still out. Each continuation is
//  called once more with rc CD_ECLOSED, only so that it frees its arg
//  (the actor is stopping; persist's answers go nowhere). Nulls *self_p;
//  safe on NULL.
void cd_pwriter_destroy(cd_pwriter_t **self_p);

//  Sends statement stmt with nparams text parameters (NULL: SQL NULL).
//  fn(self, result, arg) is called once, from cd_pwriter_handle, with the
//  definitive outcome. Never fails: a request that cannot be sent now
//  (persist's queue full or persist restarting) is sent from the tick.
void cd_pwriter_send(cd_pwriter_t *self, const char *stmt, int nparams, const char *const *params,
                     cd_pwriter_fn *fn, void *arg);

//  If env is persist's answer to one of our writes, handles it (calling
//  the continuation when it is definitive) and returns true; else false.
bool cd_pwriter_handle(cd_pwriter_t *self, const cd_envelope_t *env);

//  Sends again what is due: requests whose backoff passed, and those
//  unanswered beyond timeout_ms.
void cd_pwriter_tick(cd_pwriter_t *self);

//  Writes out (sent and not answered definitively yet).
size_t cd_pwriter_pending(const cd_pwriter_t *self);

#endif
