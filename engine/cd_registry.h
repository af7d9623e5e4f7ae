/*  cd_registry: the node's directory of actors by name.

    Every actor has a registry name (`deadletter`, `agent/coder`, ...) and an
    inbox bound at a fixed inproc endpoint derived from it, so resolving a
    name is formatting a string plus one question: is anything alive there?
    The registry answers that question and keeps per-actor counters.

    It is the one structure several threads share: supervisors write it when
    they start, restart and stop children; senders read it. Reads are made
    cheap by a generation counter: a sender caches what it resolved together
    with the generation it saw and asks again only when the generation moved
    (one atomic load per send). Writes take a mutex; they happen only on
    lifecycle changes. */
#ifndef CD_ENGINE_REGISTRY_H
#define CD_ENGINE_REGISTRY_H

#include "cd_envelope.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_REGISTRY_MAX_NAME 128 //  longest actor name
#define CD_REGISTRY_MAX_ENDPOINT 256 //  longest inproc endpoint
#define CD_REGISTRY_LOG_KEEP 200 //  log lines kept per actor

typedef enum {
    CD_ACTOR_ABSENT = 0, //  no such actor
    CD_ACTOR_STARTING,   //  inbox bound, not yet ready (messages queue)
    CD_ACTOR_RUNNING,    //  ready
    CD_ACTOR_RESTARTING, //  failed, being restarted (messages queue)
    CD_ACTOR_STOPPED,    //  stopped on purpose (messages are dead letters)
    CD_ACTOR_DEAD        //  gave up after its restart intensity
} cd_actor_status_t;

typedef struct cd_registry cd_registry_t;

//  Snapshot of one entry, for status pages and tests.
typedef struct {
    char name[CD_REGISTRY_MAX_NAME]; //  registry name
    cd_actor_status_t status;        //  lifecycle state
    uint32_t restarts;               //  restarts since the node started
    uint64_t dead_letters;           //  messages to it that could not be delivered
    uint32_t incarnation;            //  changes each time a new inbox is bound for it (unique)
    uint64_t queue_depth;            //  messages in its inbox (0 unless it can receive)
} cd_registry_entry_t;

//  A queue meter: messages put into one name's inbox (counted by senders
//  after each successful push) and taken out (counted by the actor after
//  each receive); the depth is the difference. Relaxed atomics: a sender
//  pays one uncontended add per message. Reference counted, so a sender's
//  cached route may outlive the name's entry.
typedef struct {
    atomic_uint_fast64_t in;  //  pushed
    atomic_uint_fast64_t out; //  received
    atomic_int refs;          //  holders (the entry, routes, the actor)
} cd_queue_meter_t;

static inline void
cd_queue_meter_in(cd_queue_meter_t *meter)
{
    if (meter) {
        atomic_fetch_add_explicit(&meter->in, 1, memory_order_relaxed);
    }
}

static inline void
cd_queue_meter_out(cd_queue_meter_t *meter)
{
    if (meter) {
        atomic_fetch_add_explicit(&meter->out, 1, memory_order_relaxed);
    }
}

//  The queue meter of name (created with its entry), with a reference the
//  caller releases; NULL if name is unknown. Any thread.
cd_queue_meter_t *
cd_registry_meter(cd_registry_t *self, const char *name);

//  Drops a reference from cd_registry_meter and nulls *meter_p. Safe on
//  NULL.
void
cd_registry_meter_release(cd_queue_meter_t **meter_p);

//  Messages sent, by envelope kind, counted by each sender (a mailer) in a
//  block it owns and attaches here: the sender's thread is the only writer
//  (relaxed atomics: plain stores on x86, no lock), readers sum the
//  attached blocks and what detached ones left behind.
typedef struct {
    atomic_uint_fast64_t sent[CD_KIND_COUNT_]; //  by cd_kind_t
} cd_msg_counts_t;

//  Attaches / detaches a sender's block (borrowed while attached). Detach
//  folds its counts into the registry's totals.
void
cd_registry_counts_attach(cd_registry_t *self, cd_msg_counts_t *counts);
void
cd_registry_counts_detach(cd_registry_t *self, cd_msg_counts_t *counts);

//  Messages sent so far by kind, every sender of the node. Any thread.
void
cd_registry_messages(cd_registry_t *self, uint64_t out[CD_KIND_COUNT_]);

//  Creates the registry of node node_id and installs its log sink (if
//  CD_LOG_SINK_MAX sinks are already installed it logs a warning and keeps
//  no lines). Caller owns the result.
cd_registry_t *
cd_registry_new(const char *node_id);

//  Removes its log sink, destroys it and nulls *self_p. Safe on NULL and
//  twice. Only once every actor that uses it has stopped.
void
cd_registry_destroy(cd_registry_t **self_p);

//  This node's id. Borrowed, valid for the registry's life.
const char *
cd_registry_node_id(const cd_registry_t *self);

//  Writes the inproc endpoint of local actor name into buf. Returns 0 or
//  CD_ETOOBIG if the name is too long.
int
cd_registry_endpoint(const cd_registry_t *self, const char *name, char *buf, size_t size);

//  Sets the status of name, creating the entry if needed. Bumps the
//  generation. Any thread.
void
cd_registry_set_status(cd_registry_t *self, const char *name, cd_actor_status_t status);

//  Removes name (it no longer exists). Bumps the generation.
void
cd_registry_remove(cd_registry_t *self, const char *name);

//  Counts one restart of name.
void
cd_registry_count_restart(cd_registry_t *self, const char *name);

//  Counts one dead letter addressed to name (which may not exist).
void
cd_registry_count_dead_letter(cd_registry_t *self, const char *name);

//  Status of name (CD_ACTOR_ABSENT if unknown).
cd_actor_status_t
cd_registry_status(cd_registry_t *self, const char *name);

//  Records that a new inbox was bound for name (status starting, a new
//  incarnation): senders connected to an older inbox must reconnect.
void
cd_registry_bound(cd_registry_t *self, const char *name);

//  Status and incarnation of name in one look.
cd_actor_status_t
cd_registry_lookup(cd_registry_t *self, const char *name, uint32_t *incarnation);

//  True if messages sent to this status are queued for the actor.
bool
cd_registry_status_deliverable(cd_actor_status_t status);

//  Fills *entry for name. Returns 0 or CD_ENOTFOUND.
int
cd_registry_get(cd_registry_t *self, const char *name, cd_registry_entry_t *entry);

//  Copies up to max entries, sorted by name, into entries; returns how many
//  exist (which may exceed max).
size_t
cd_registry_list(cd_registry_t *self, cd_registry_entry_t *entries, size_t max);

//  The recent log lines of name, newest last: the last `limit` of them (all
//  it keeps if limit is 0 or above CD_REGISTRY_LOG_KEEP) as one JSON array
//      [{"ts":"<RFC 3339>","level":"info","msg":"...","fields":{...}}, ...]
//  Sets *json_p to that text, NUL-terminated; caller owns it (free()).
//  Returns 0 ("[]" if name logged nothing yet), or CD_ENOTFOUND (name is
//  not registered; *json_p is NULL). Any thread.
int
cd_registry_log_read(cd_registry_t *self, const char *name, size_t limit, char **json_p);

//  Changes whenever any status changes. One atomic load.
uint64_t
cd_registry_generation(const cd_registry_t *self);

//  Total dead letters on this node.
uint64_t
cd_registry_dead_letters(const cd_registry_t *self);

//  Threads that stopped answering and were abandoned, still not ended.
//  A node that exits with any must not wait for them (see cadred.c).
void
cd_registry_count_hung(cd_registry_t *self, int delta);

int
cd_registry_hung(const cd_registry_t *self);

//  Name of a status ("running", ...).
const char *
cd_actor_status_name(cd_actor_status_t status);

#endif
