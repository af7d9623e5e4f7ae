/*  engine_internal.h: helpers shared by engine modules only. */
#ifndef CD_ENGINE_INTERNAL_H
#define CD_ENGINE_INTERNAL_H

#include "cd_envelope.h"

#include <zmq.h>

//  Receives one message (envelope [+ payload frame]) from socket into
//  frames[0..1] and decodes it into *env, which borrows from the frames.
//  flags is 0 or ZMQ_DONTWAIT. Returns 0, CD_ETIMEDOUT when nothing was
//  there, or a decode error with *why set (the frames hold the message).
int
cd__actor_recv(void *socket, int flags, zmq_msg_t frames[2], cd_envelope_t *env,
               const char **why);

#endif
