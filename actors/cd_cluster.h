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

    Peers come from configuration (`--peer id=tcp://host:port`, or
    `--peer id=KEY@tcp://host:port` with the peer's CurveZMQ public key) or
    at run time from a `control` envelope with headers op=peer, node=<id>,
    endpoint=<tcp endpoint> and, with CurveZMQ, key=<Z85 public key>.

    Security (engine/cd_curve.h). With a secret key configured the links
    use CurveZMQ: the ROUTER is a Curve server whose handshakes a ZAP
    handler (engine/cd_zap.h) admits only for the allowed keys and the
    configured peers' keys, refusing and logging any other; each DEALER is
    a Curve client that also checks its peer's server key. The ROUTER and
    the handler live in a ZeroMQ context of the actor's own (the ZAP
    endpoint is per context), and the handler is bound before the ROUTER:
    if it cannot be, the actor fails to start rather than serve without it.
    Without keys, a non-loopback endpoint (bind or peer) is refused unless
    allow_insecure is set: node traffic would cross the network in clear. */
#ifndef CD_ACTORS_CLUSTER_H
#define CD_ACTORS_CLUSTER_H

#include "cd_actor.h"
#include "cd_config.h"

//  Borrowed by the actor for its life.
typedef struct {
    const char *bind;               //  this node's cluster endpoint, or NULL (outbound only)
    const cd_config_peer_t *peers;  //  other nodes (with their public keys under CurveZMQ)
    size_t n_peers;                 //  entries in peers
    int heartbeat_ivl_ms;           //  ZMQ_HEARTBEAT_IVL on tcp links
    int heartbeat_timeout_ms;       //  ZMQ_HEARTBEAT_TIMEOUT / TTL
    const char *curve_secret_key;   //  this node's Z85 secret key; NULL: no CurveZMQ
    const char *curve_allowed_keys; //  Z85 public keys admitted inbound, comma-separated, or NULL
    bool allow_insecure;            //  run non-loopback endpoints without CurveZMQ
} cd_cluster_args_t;

//  The ZAP domain of the cluster's Curve server.
#define CD_CLUSTER_ZAP_DOMAIN "cadre-cluster"

extern const cd_actor_ops_t cd_cluster_ops;

#endif
