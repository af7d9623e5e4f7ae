/*  cd_zap: a ZAP handler admitting CurveZMQ clients by key (see cd_zap.h).

    A request is seven frames after the REP envelope: version "1.0",
    request id, domain, address, routing id, mechanism, and for CURVE one
    credential, the client's 32-byte public key. The reply is version,
    the same request id, status code, status text, user id and an empty
    metadata frame. Anything malformed is answered 500 (REP must answer
    every request it reads, or the socket jams).

    Interface: cd_zap_new, cd_zap_destroy, cd_zap_allow, cd_zap_socket,
    cd_zap_handle, cd_zap_admitted, cd_zap_refused. */
#include "cd_zap.h"
#include "cd_error.h"
#include "cd_log.h"

#include <czmq.h>
#include <jansson.h>
#include <sodium.h>
#include <string.h>

#define S_FRAMES 7       //  a CURVE request
#define S_FRAME_MAX 256  //  longest frame we read (others are malformed)
#define S_DOMAIN_MAX 254 //  ZMQ_ZAP_DOMAIN is at most 254 bytes

struct cd_zap {
    void *socket;                  //  REP at CD_ZAP_ENDPOINT in the owner's context
    char domain[S_DOMAIN_MAX + 1]; //  the servers' ZMQ_ZAP_DOMAIN
    cd_curve_key_t *keys;          //  admitted public keys
    size_t n_keys;                 //  entries in keys
    char *actor;                   //  for log lines
    uint64_t admitted;             //  handshakes admitted
    uint64_t refused;              //  handshakes refused
};

cd_zap_t *
cd_zap_new(void *ctx, const char *domain, const cd_curve_key_t *keys, size_t n_keys,
           const char *log_actor)
{
    const char *actor = log_actor ? log_actor : "zap";
    if (!domain || strlen(domain) > S_DOMAIN_MAX) {
        return NULL;
    }
    void *socket = zmq_socket(ctx, ZMQ_REP);
    if (!socket) {
        cd_log_error(actor, "cannot create the ZAP handler socket", "{s:s}", "error",
                     zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(socket, CD_ZAP_ENDPOINT) != 0) {
        cd_log_error(actor, "cannot bind the ZAP handler", "{s:s, s:s}", "endpoint",
                     CD_ZAP_ENDPOINT, "error", zmq_strerror(zmq_errno()));
        zmq_close(socket);
        return NULL;
    }
    cd_zap_t *self = (cd_zap_t *)zmalloc(sizeof *self);
    self->socket = socket;
    snprintf(self->domain, sizeof self->domain, "%s", domain);
    self->keys = (cd_curve_key_t *)zmalloc((n_keys ? n_keys : 1) * sizeof *self->keys);
    if (n_keys) {
        memcpy(self->keys, keys, n_keys * sizeof *keys);
    }
    self->n_keys = n_keys;
    self->actor = strdup(actor);
    assert(self->actor);
    return self;
}

void
cd_zap_destroy(cd_zap_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_zap_t *self = *self_p;
    zmq_close(self->socket);
    free(self->keys);
    free(self->actor);
    free(self);
    *self_p = NULL;
}

void
cd_zap_allow(cd_zap_t *self, const cd_curve_key_t *key)
{
    for (size_t i = 0; i < self->n_keys; i++) {
        if (memcmp(self->keys[i].bytes, key->bytes, CD_CURVE_KEY_BYTES) == 0) {
            return;
        }
    }
    self->keys = (cd_curve_key_t *)realloc(self->keys, (self->n_keys + 1) * sizeof *self->keys);
    assert(self->keys);
    self->keys[self->n_keys++] = *key;
}

void *
cd_zap_socket(cd_zap_t *self)
{
    return self->socket;
}

uint64_t
cd_zap_admitted(const cd_zap_t *self)
{
    return self->admitted;
}

uint64_t
cd_zap_refused(const cd_zap_t *self)
{
    return self->refused;
}

static bool
s_frame_is(const zmq_msg_t *frame, const char *text)
{
    size_t len = strlen(text);
    return zmq_msg_size((zmq_msg_t *)frame) == len &&
           memcmp(zmq_msg_data((zmq_msg_t *)frame), text, len) == 0;
}

static bool
s_known(const cd_zap_t *self, const uint8_t *key)
{
    bool known = false;
    for (size_t i = 0; i < self->n_keys; i++) {
        known |= sodium_memcmp(self->keys[i].bytes, key, CD_CURVE_KEY_BYTES) == 0;
    }
    return known;
}

//  Sends the reply frames; request_id may be NULL (a request too broken to
//  have one).
static void
s_reply(cd_zap_t *self, zmq_msg_t *request_id, const char *status, const char *text,
        const char *user)
{
    zmq_send(self->socket, "1.0", 3, ZMQ_SNDMORE);
    if (request_id) {
        zmq_msg_send(request_id, self->socket, ZMQ_SNDMORE);
    } else {
        zmq_send(self->socket, "", 0, ZMQ_SNDMORE);
    }
    zmq_send(self->socket, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(self->socket, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(self->socket, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(self->socket, "", 0, 0);
}

//  Reads one request, if any, and answers it. Returns false if none waits.
static bool
s_handle_one(cd_zap_t *self)
{
    zmq_msg_t frames[S_FRAMES + 1];
    int n = 0;
    bool more = true;
    bool ok = true;
    while (more) {
        zmq_msg_t *slot = &frames[n < S_FRAMES + 1 ? n : S_FRAMES];
        if (n <= S_FRAMES) {
            zmq_msg_init(slot);
        }
        if (zmq_msg_recv(slot, self->socket, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            if (n == 0) {
                zmq_msg_close(slot);
                return false;
            }
            ok = false;
            break;
        }
        more = zmq_msg_more(slot);
        ok = ok && zmq_msg_size(slot) <= S_FRAME_MAX;
        n++;
    }
    int held = n < S_FRAMES + 1 ? n : S_FRAMES + 1;
    ok = ok && n >= 6 && s_frame_is(&frames[0], "1.0");
    zmq_msg_t *request_id = n >= 2 ? &frames[1] : NULL;
    if (!ok) {
        s_reply(self, request_id, "500", "malformed ZAP request", "");
        cd_log_warn(self->actor, "malformed ZAP request", NULL);
    } else {
        //  Only the CURVE mechanism, with one 32-byte key, in our domain.
        char address[64] = "";
        snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&frames[3]),
                 (const char *)zmq_msg_data(&frames[3]));
        bool curve = n == S_FRAMES && s_frame_is(&frames[5], "CURVE") &&
                     zmq_msg_size(&frames[6]) == CD_CURVE_KEY_BYTES;
        bool domain = s_frame_is(&frames[2], self->domain);
        char key[CD_CURVE_KEY_LEN + 1] = "-";
        if (curve) {
            cd_curve_key_t client;
            memcpy(client.bytes, zmq_msg_data(&frames[6]), CD_CURVE_KEY_BYTES);
            cd_curve_key_encode(&client, key);
        }
        if (curve && domain && s_known(self, (const uint8_t *)zmq_msg_data(&frames[6]))) {
            self->admitted++;
            s_reply(self, request_id, "200", "OK", key);
            cd_log_debug(self->actor, "admitted a CurveZMQ peer", "{s:s, s:s}", "key", key,
                         "address", address);
        } else {
            self->refused++;
            s_reply(self, request_id, "400",
                    !curve    ? "CurveZMQ required"
                    : !domain ? "unknown domain"
                              : "unknown key",
                    "");
            cd_log_warn(self->actor, "refused a peer: its CurveZMQ key is not allowed",
                        "{s:s, s:s, s:s, s:I}", "key", key, "address", address, "reason",
                        !curve    ? "not CURVE"
                        : !domain ? "unknown domain"
                                  : "unknown key",
                        "refused", (json_int_t)self->refused);
        }
    }
    for (int i = 0; i < held; i++) {
        zmq_msg_close(&frames[i]);
    }
    return true;
}

int
cd_zap_handle(cd_zap_t *self)
{
    int handled = 0;
    while (s_handle_one(self)) {
        handled++;
    }
    return handled;
}
