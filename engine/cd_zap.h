/*  cd_zap: a ZAP handler (ZeroMQ RFC 27) that admits CurveZMQ clients by
    public key.

    Without a ZAP handler a CurveZMQ server only encrypts: any client that
    knows the server's public key gets in. ZeroMQ asks the handler bound at
    inproc://zeromq.zap.01 *of the server socket's context* about every
    handshake; this one answers 200 for a client key in its allowed set and
    400 for any other (and for another mechanism or domain), logs each
    refusal with the key and address, and counts both.

    The endpoint is per context, and only one handler can bind it. So a
    link actor that serves CurveZMQ gives its server socket a ZeroMQ context
    of its own and binds the handler there first: two nodes in one process
    (the tests) or two link actors in one node cannot collide, and no
    process-wide handler is needed. The handler must be bound before the
    server socket binds, and a server must not bind if the handler could
    not be: cd_zap_new returning NULL means fail closed.

    It is not a thread: the owner polls cd_zap_socket and calls
    cd_zap_handle when it is readable (a handshake waits for that answer,
    not the messages of connections already made). Owned and used by one
    thread. */
#ifndef CD_ENGINE_ZAP_H
#define CD_ENGINE_ZAP_H

#include "cd_curve.h"

#include <stddef.h>
#include <stdint.h>

#define CD_ZAP_ENDPOINT "inproc://zeromq.zap.01" //  where ZeroMQ asks (RFC 27)

typedef struct cd_zap cd_zap_t;

//  Binds a handler in the ZeroMQ context ctx (borrowed; it must outlive
//  the handler) for servers whose ZMQ_ZAP_DOMAIN is domain, admitting the
//  keys[0..n_keys) (copied). log_actor names the actor in log lines.
//  Returns the handler (caller owns it), or NULL (and logs why) if the
//  endpoint cannot be bound, e.g. another handler holds it.
cd_zap_t *
cd_zap_new(void *ctx, const char *domain, const cd_curve_key_t *keys, size_t n_keys,
           const char *log_actor);

//  Closes the handler's socket and frees it. Nulls *self_p; safe on NULL.
void
cd_zap_destroy(cd_zap_t **self_p);

//  Admits one more key from now on (a peer added at run time).
void
cd_zap_allow(cd_zap_t *self, const cd_curve_key_t *key);

//  The socket to poll for requests. Borrowed, valid until destroy.
void *
cd_zap_socket(cd_zap_t *self);

//  Answers the requests waiting, without blocking. Returns how many.
int
cd_zap_handle(cd_zap_t *self);

//  Handshakes admitted and refused so far.
uint64_t
cd_zap_admitted(const cd_zap_t *self);

uint64_t
cd_zap_refused(const cd_zap_t *self);

#endif
