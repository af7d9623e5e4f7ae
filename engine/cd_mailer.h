/*  cd_mailer: the sending half of any participant in the actor system.

    An actor, or a thread that is not an actor (main, the HTTP loop, a test),
    sends envelopes through a mailer: it encodes each envelope once, resolves
    the destination name through the registry and pushes the bytes into the
    destination's inbox. A mailer belongs to one thread.

    Outbound it keeps one PUSH socket per destination it has talked to,
    connected to that destination's inbox. PUSH never drops: at the
    high-water mark a send waits (ZMQ_SNDTIMEO) and then fails, reported as
    CD_EBUSY. The destination's liveness is re-read from the registry only
    when the registry's generation changed since the last look. */
#ifndef CD_ENGINE_MAILER_H
#define CD_ENGINE_MAILER_H

#include "cd_actor.h"

typedef struct cd_mailer cd_mailer_t;

//  Creates a mailer that sends as `name`. rt is borrowed and must outlive
//  it. Caller owns the result.
cd_mailer_t *
cd_mailer_new(const cd_runtime_t *rt, const char *name);

//  Destroys it (queued outbound messages are still delivered within the stop
//  timeout) and nulls *self_p. Safe on NULL and twice.
void
cd_mailer_destroy(cd_mailer_t **self_p);

//  Gives back to malloc the small-message buffers beyond the few a mailer
//  keeps, counting those its receivers returned since the last send. The
//  actor loop calls it before it sleeps, so an actor that sent a burst
//  holds little once idle (it wakes at least at every supervisor ping).
void
cd_mailer_trim(cd_mailer_t *self);

//  Free small-message buffers it holds, those returned included (exact
//  only while no receiver is giving one back).
size_t
cd_mailer_pooled(const cd_mailer_t *self);

//  The name it sends as. Borrowed.
const char *
cd_mailer_name(const cd_mailer_t *self);

//  See cd_actor_envelope_init.
void
cd_mailer_envelope_init(cd_mailer_t *self, cd_envelope_t *env, cd_kind_t kind, const char *to);

//  See cd_actor_send.
int
cd_mailer_send(cd_mailer_t *self, const cd_envelope_t *env);

//  See cd_actor_forward_frames.
int
cd_mailer_forward_frames(cd_mailer_t *self, const char *to, zmq_msg_t *frames, int n);

//  See cd_actor_dead_letter.
void
cd_mailer_dead_letter(cd_mailer_t *self, const char *to, const char *reason, const uint8_t *raw,
                      size_t raw_size);

#endif
