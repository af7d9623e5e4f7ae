/*  cd_port: a mailbox for a thread that is not an actor.

    The node's main thread, the HTTP event loop and tests talk to actors
    through a port: it has a registry name and an inbox like an actor (so
    actors answer it by name) and a mailer to send. Its socket can be polled
    from a foreign event loop. A port belongs to one thread. */
#ifndef CD_ENGINE_PORT_H
#define CD_ENGINE_PORT_H

#include "cd_mailer.h"

typedef struct cd_port cd_port_t;

//  Binds an inbox for name and registers it as running. Returns NULL if the
//  name is taken. Caller owns the result.
cd_port_t *
cd_port_new(const cd_runtime_t *rt, const char *name);

//  Unregisters and destroys the port; nulls *self_p. Safe on NULL and twice.
void
cd_port_destroy(cd_port_t **self_p);

//  The port's mailer, to send. Borrowed.
cd_mailer_t *
cd_port_mailer(cd_port_t *self);

//  Shorthand for cd_mailer_send(cd_port_mailer(self), env).
int
cd_port_send(cd_port_t *self, const cd_envelope_t *env);

//  Receives and decodes the next envelope, waiting up to timeout_ms (-1:
//  forever). *env borrows from the port: valid until the next receive.
//  Returns 0, CD_ETIMEDOUT, or a decode error (the message is dropped as a
//  dead letter).
int
cd_port_recv(cd_port_t *self, int timeout_ms, cd_envelope_t *env);

//  The inbox socket, for zmq_poll. Borrowed.
zsock_t *
cd_port_socket(cd_port_t *self);

#endif
