/*  cd_port: an inbox plus a mailer for a thread that is not an actor (see
    cd_port.h). */
#include "cd_port.h"
#include "cd_error.h"
#include "cd_log.h"
#include "engine_internal.h"

struct cd_port {
    const cd_runtime_t *rt; //  node settings; borrowed
    char *name;             //  registry name
    zsock_t *inbox;         //  PULL bound at the name's endpoint
    cd_mailer_t *mailer;    //  outbound
    zmq_msg_t frames[2];    //  last received message (envelope, payload frame)
};

cd_port_t *
cd_port_new(const cd_runtime_t *rt, const char *name)
{
    if (cd_registry_status_deliverable(cd_registry_status(rt->registry, name))) {
        return NULL;
    }
    zsock_t *inbox = cd_actor_inbox_new(rt, name);
    if (!inbox) {
        return NULL;
    }
    cd_port_t *self = (cd_port_t *)zmalloc(sizeof *self);
    self->rt = rt;
    self->name = strdup(name);
    assert(self->name);
    self->inbox = inbox;
    self->mailer = cd_mailer_new(rt, name);
    zmq_msg_init(&self->frames[0]);
    zmq_msg_init(&self->frames[1]);
    cd_registry_set_status(rt->registry, name, CD_ACTOR_RUNNING);
    return self;
}

void
cd_port_destroy(cd_port_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_port_t *self = *self_p;
    cd_registry_remove(self->rt->registry, self->name);
    cd_mailer_destroy(&self->mailer);
    cd_actor_inbox_destroy(&self->inbox);
    zmq_msg_close(&self->frames[0]);
    zmq_msg_close(&self->frames[1]);
    free(self->name);
    free(self);
    *self_p = NULL;
}

cd_mailer_t *
cd_port_mailer(cd_port_t *self)
{
    return self->mailer;
}

int
cd_port_send(cd_port_t *self, const cd_envelope_t *env)
{
    return cd_mailer_send(self->mailer, env);
}

zsock_t *
cd_port_socket(cd_port_t *self)
{
    return self->inbox;
}

int
cd_port_recv(cd_port_t *self, int timeout_ms, cd_envelope_t *env)
{
    //  Without a wait, a non-blocking receive says all: polling first would
    //  cost system calls on every message of a drain.
    zmq_pollitem_t item = {zsock_resolve(self->inbox), 0, ZMQ_POLLIN, 0};
    if (timeout_ms != 0 && zmq_poll(&item, 1, timeout_ms) <= 0) {
        return CD_ETIMEDOUT;
    }
    const char *why = NULL;
    int rc = cd__actor_recv(zsock_resolve(self->inbox), timeout_ms == 0 ? ZMQ_DONTWAIT : 0,
                            self->frames, env, &why);
    if (rc == CD_ETIMEDOUT) {
        return rc;
    }
    if (rc != 0) {
        cd_mailer_dead_letter(self->mailer, self->name, "malformed",
                              (const uint8_t *)zmq_msg_data(&self->frames[0]),
                              zmq_msg_size(&self->frames[0]));
    }
    return rc;
}
