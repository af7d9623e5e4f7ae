/*  cd_cluster: the link between nodes over ZeroMQ tcp.

    Envelopes addressed to `node/<id>/<name>` on another node reach this
    actor (the mailer routes them here). It forwards their bytes unchanged,
    without re-encoding, over a DEALER socket connected to that node's
    cluster endpoint. Inbound, a ROUTER socket bound on this node's cluster
    endpoint receives envelopes from other nodes and delivers them to the
    local actor they name.

    No silent loss: DEALER blocks at its high-water mark (the send then
    fails after the send timeout and the message becomes a dead letter),
    ROUTER runs with ZMQ_ROUTER_MANDATORY, every tcp socket has ZeroMQ
    heartbeats (a dead peer is noticed) and ZMQ_MAXMSGSIZE (a peer cannot
    make us allocate more than one envelope's worth), and linger is bounded
    so queued messages are flushed at shutdown. Large payloads travel as
    their own frame, zero-copy from the local queue to the socket.

    Peers come from configuration (`--peer id=tcp://host:port`) or at run
    time from a `control` envelope with headers op=peer, node=<id>,
    endpoint=<tcp endpoint>. */
#ifndef CD_ACTORS_CLUSTER_H
#define CD_ACTORS_CLUSTER_H

#include "cd_actor.h"
#include "cd_config.h"

typedef struct {
    const char *bind;               //  this node's cluster endpoint, or NULL (outbound only)
    const cd_config_peer_t *peers;  //  other nodes; borrowed
    size_t n_peers;                 //  entries in peers
    int heartbeat_ivl_ms;           //  ZMQ_HEARTBEAT_IVL on tcp links
    int heartbeat_timeout_ms;       //  ZMQ_HEARTBEAT_TIMEOUT / TTL
} cd_cluster_args_t;

extern const cd_actor_ops_t cd_cluster_ops;

#endif
