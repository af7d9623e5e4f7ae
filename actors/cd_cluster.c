/*  cd_cluster: the tcp link between nodes (see cd_cluster.h).

    Start-up order matters for CurveZMQ: policy checks (no insecure
    non-loopback endpoint, keys well-formed, every peer keyed), then the
    actor's own ZeroMQ context, the ZAP handler bound in it, and only then
    the ROUTER; DEALERs (in czmq's shared context: a Curve client needs no
    handler) come last. */
#include "cd_cluster.h"
#include "cd_curve.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_zap.h"

#include <sodium.h>

#define CD_CLUSTER_MAX_FRAMES 2 //  envelope [+ payload]

typedef struct {
    const cd_cluster_args_t *args;         //  configuration; borrowed
    void *ctx;                             //  ZeroMQ context of the inbound side (owned)
    cd_zap_t *zap;                         //  ZAP handler in ctx, with CurveZMQ (owned)
    void *router;                          //  inbound ROUTER in ctx, or NULL (owned)
    zhashx_t *peers;                       //  node id -> zsock_t * DEALER (owned)
    const char *node_id;                   //  this node
    bool curve;                            //  links use CurveZMQ
    char public_key[CD_CURVE_KEY_LEN + 1]; //  this node's public key, with CurveZMQ
} s_cluster_t;

static void
s_tcp_options(void *socket, const cd_runtime_t *rt, const cd_cluster_args_t *args)
{
    int64_t maxmsg = (int64_t)CD_ENV_MAX_SIZE + 1024;
    zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    int ivl = args->heartbeat_ivl_ms;
    int timeout = args->heartbeat_timeout_ms;
    zmq_setsockopt(socket, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(socket, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout);
    zmq_setsockopt(socket, ZMQ_HEARTBEAT_TTL, &timeout, sizeof timeout);
    int linger = rt->stop_timeout_ms;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
}

static void
s_dealer_destroy(void **item)
{
    zsock_destroy((zsock_t **)item);
}

//  Links to a peer. key is its Z85 public key (required with CurveZMQ,
//  ignored without).
static int
s_add_peer(cd_actor_t *self, s_cluster_t *cluster, const char *node_id, const char *endpoint,
           const char *key)
{
    if (streq(node_id, cluster->node_id)) {
        return 0;
    }
    const cd_cluster_args_t *args = cluster->args;
    cd_curve_key_t peer_key = {{0}};
    if (cluster->curve && cd_curve_key_decode(key, &peer_key) != 0) {
        cd_log_error(cd_actor_name(self), "peer has no valid CurveZMQ public key", "{s:s, s:s}",
                     "node", node_id, "endpoint", endpoint);
        return CD_EINVAL;
    }
    if (!cluster->curve && !args->allow_insecure && !cd_curve_endpoint_is_loopback(endpoint)) {
        cd_log_error(cd_actor_name(self),
                     "refusing a non-loopback peer without CurveZMQ (configure "
                     "--curve-secret-key, or --allow-insecure-tcp)",
                     "{s:s, s:s}", "node", node_id, "endpoint", endpoint);
        return CD_EPERM;
    }
    const cd_runtime_t *rt = cd_actor_runtime(self);
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    assert(dealer);
    zsock_set_identity(dealer, cluster->node_id);
    zsock_set_sndhwm(dealer, rt->queue_hwm);
    zsock_set_sndtimeo(dealer, rt->send_timeout_ms);
    s_tcp_options(zsock_resolve(dealer), rt, args);
    if (cluster->curve) {
        //  The client checks the server's key in the handshake: a node
        //  that is not this peer cannot answer it.
        zsock_set_curve_serverkey(dealer, key);
        zsock_set_curve_publickey(dealer, cluster->public_key);
        zsock_set_curve_secretkey(dealer, args->curve_secret_key);
    }
    if (zsock_connect(dealer, "%s", endpoint) != 0) {
        cd_log_error(cd_actor_name(self), "cannot connect to peer", "{s:s, s:s, s:s}", "node",
                     node_id, "endpoint", endpoint, "error", zmq_strerror(zmq_errno()));
        zsock_destroy(&dealer);
        return CD_EINVAL;
    }
    //  A peer we send to may send to us.
    if (cluster->zap) {
        cd_zap_allow(cluster->zap, &peer_key);
    }
    //  A newer endpoint for a known node replaces the old link.
    zhashx_delete(cluster->peers, node_id);
    zhashx_insert(cluster->peers, node_id, dealer);
    cd_log_info(cd_actor_name(self), "peer link", "{s:s, s:s, s:s}", "node", node_id, "endpoint",
                endpoint, "security", cluster->curve ? "curve" : "none");
    return 0;
}

//  Inbound: [identity, envelope, payload?] from another node.
static int
s_on_router(cd_actor_t *self, void *socket, void *arg)
{
    s_cluster_t *cluster = (s_cluster_t *)arg;
    void *router = zsock_resolve(socket);
    zmq_msg_t identity;
    zmq_msg_init(&identity);
    if (zmq_msg_recv(&identity, router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&identity);
        return CD_ACTOR_DRAINED;
    }
    zmq_msg_t frames[CD_CLUSTER_MAX_FRAMES];
    zmq_msg_init(&frames[0]);
    zmq_msg_init(&frames[1]);
    int n = 0;
    bool more = zmq_msg_more(&identity);
    while (more) {
        //  Anything past envelope + payload is read into the last slot and
        //  makes the message invalid.
        zmq_msg_t *slot = &frames[n < CD_CLUSTER_MAX_FRAMES ? n : CD_CLUSTER_MAX_FRAMES - 1];
        zmq_msg_recv(slot, router, 0);
        more = zmq_msg_more(slot);
        n++;
    }
    zmq_msg_close(&identity);
    cd_kind_t kind;
    cd_str_t to = {NULL, 0};
    int rc = n >= 1 && n <= CD_CLUSTER_MAX_FRAMES
                 ? cd_envelope_peek_route((const uint8_t *)zmq_msg_data(&frames[0]),
                                          zmq_msg_size(&frames[0]), &kind, &to)
                 : CD_EPROTO;
    char target[CD_ENV_MAX_NAME + 1] = "cluster";
    if (rc == 0) {
        snprintf(target, sizeof target, "%.*s", (int)to.len, to.ptr);
        //  Only names on this node are accepted from a peer: anything else
        //  would bounce between nodes.
        size_t id_len = strlen(cluster->node_id);
        if (!(strncmp(target, "node/", 5) == 0 &&
              strncmp(target + 5, cluster->node_id, id_len) == 0 && target[5 + id_len] == '/')) {
            rc = CD_EINVAL;
        }
    }
    if (rc == 0) {
        //  A routing failure is recorded by the mailer; a queue that stayed
        //  full is recorded here: the peer already handed the message over.
        if (cd_actor_forward_frames(self, target, frames, n) == CD_EBUSY) {
            cd_actor_dead_letter(self, target, "queue_full",
                                 (const uint8_t *)zmq_msg_data(&frames[0]),
                                 zmq_msg_size(&frames[0]));
        }
    } else {
        cd_log_warn(cd_actor_name(self), "rejected message from peer", "{s:s}", "error",
                    cd_errname(rc));
        cd_actor_dead_letter(self, target, rc == CD_EINVAL ? "misrouted" : "malformed",
                             (const uint8_t *)zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]));
    }
    zmq_msg_close(&frames[0]);
    zmq_msg_close(&frames[1]);
    return 0;
}

//  A control envelope for the link itself (op=peer adds a peer).
static void
s_control(cd_actor_t *self, s_cluster_t *cluster, const cd_envelope_t *env)
{
    cd_str_t op = {NULL, 0};
    cd_envelope_header(env, "op", &op);
    cd_str_t node = {NULL, 0};
    cd_envelope_header(env, "node", &node);
    cd_str_t endpoint = {NULL, 0};
    cd_envelope_header(env, "endpoint", &endpoint);
    cd_str_t key = {NULL, 0};
    cd_envelope_header(env, "key", &key);
    if (cd_str_eq(op, "peer") && node.len && endpoint.len) {
        char id[CD_ENV_MAX_NAME + 1];
        char ep[CD_ENV_MAX_NAME + 1];
        char public_key[CD_CURVE_KEY_LEN + 1];
        snprintf(id, sizeof id, "%.*s", (int)node.len, node.ptr);
        snprintf(ep, sizeof ep, "%.*s", (int)endpoint.len, endpoint.ptr);
        snprintf(public_key, sizeof public_key, "%.*s", (int)key.len, key.ptr);
        s_add_peer(self, cluster, id, ep, key.len == CD_CURVE_KEY_LEN ? public_key : NULL);
    }
}

//  Outbound: an envelope for another node. Only `to` is read; the bytes
//  are forwarded by reference.
static int
s_raw(cd_actor_t *self, void *state, zmq_msg_t *frames, int n)
{
    s_cluster_t *cluster = (s_cluster_t *)state;
    const uint8_t *bytes = (const uint8_t *)zmq_msg_data(&frames[0]);
    size_t size = zmq_msg_size(&frames[0]);
    cd_kind_t kind;
    cd_str_t to_view;
    if (cd_envelope_peek_route(bytes, size, &kind, &to_view) != 0) {
        cd_actor_dead_letter(self, "cluster", "malformed", bytes, size);
        return 0;
    }
    if (cd_str_eq(to_view, "cluster")) {
        cd_envelope_t *env = (cd_envelope_t *)malloc(sizeof *env);
        assert(env);
        if (kind == CD_KIND_CONTROL && cd_envelope_decode(bytes, size, env, NULL) == 0) {
            s_control(self, cluster, env);
        }
        free(env);
        return 0;
    }
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "%.*s", (int)to_view.len, to_view.ptr);
    char node_id[CD_ENV_MAX_NAME + 1] = "";
    const char *slash = strncmp(to, "node/", 5) == 0 ? strchr(to + 5, '/') : NULL;
    if (slash) {
        snprintf(node_id, sizeof node_id, "%.*s", (int)(slash - to - 5), to + 5);
    }
    zsock_t *dealer = (zsock_t *)zhashx_lookup(cluster->peers, node_id);
    if (!dealer) {
        cd_actor_dead_letter(self, to, "no_route_to_node", bytes, size);
        return 0;
    }
    zmq_msg_t out[CD_CLUSTER_MAX_FRAMES];
    for (int i = 0; i < n; i++) {
        zmq_msg_init(&out[i]);
        //  A copy shares the bytes (reference-counted), it does not duplicate them.
        zmq_msg_copy(&out[i], &frames[i]);
    }
    void *socket = zsock_resolve(dealer);
    int sent = 0;
    while (sent < n && zmq_msg_send(&out[sent], socket, sent + 1 < n ? ZMQ_SNDMORE : 0) >= 0) {
        sent++;
    }
    if (sent < n) {
        cd_actor_dead_letter(self, to, "peer_unreachable", bytes, size);
    }
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&out[i]);
    }
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_cluster_t *cluster = (s_cluster_t *)*state_p;
    if (!cluster) {
        return;
    }
    if (cluster->router) {
        cd_actor_unwatch(self, cluster->router);
        zmq_close(cluster->router);
    }
    if (cluster->zap) {
        cd_actor_unwatch(self, cd_zap_socket(cluster->zap));
        cd_zap_destroy(&cluster->zap);
    }
    //  Waits for the ROUTER's linger; every socket of ctx is closed.
    if (cluster->ctx) {
        zmq_ctx_term(cluster->ctx);
    }
    zhashx_destroy(&cluster->peers);
    sodium_memzero(cluster, sizeof *cluster);
    free(cluster);
    *state_p = NULL;
}

static int
s_on_zap(cd_actor_t *self, void *socket, void *arg)
{
    s_cluster_t *cluster = (s_cluster_t *)arg;
    cd_zap_handle(cluster->zap);
    return 0;
}

//  The checks before any socket exists. Returns 0 or fails the start.
static int
s_policy(cd_actor_t *self, s_cluster_t *cluster, const char **why)
{
    const cd_cluster_args_t *config = cluster->args;
    if (!cluster->curve) {
        if (config->bind && !config->allow_insecure &&
            !cd_curve_endpoint_is_loopback(config->bind)) {
            cd_log_error(cd_actor_name(self),
                         "refusing to bind a non-loopback endpoint without CurveZMQ (configure "
                         "--curve-secret-key, or --allow-insecure-tcp)",
                         "{s:s}", "endpoint", config->bind);
            *why = "refusing a non-loopback tcp bind without CurveZMQ keys";
            return CD_EPERM;
        }
        return 0;
    }
    if (!zsys_has_curve()) {
        *why = "CurveZMQ keys are configured but this ZeroMQ has no CurveZMQ";
        return CD_ENOSYS;
    }
    if (cd_curve_public_of(config->curve_secret_key, cluster->public_key) != 0) {
        *why = "the CurveZMQ secret key is not a Z85 key";
        return CD_ECONFIG;
    }
    return 0;
}

//  The actor's context, its ZAP handler (with CurveZMQ) and the ROUTER,
//  in that order.
static int
s_listen(cd_actor_t *self, s_cluster_t *cluster, const char **why)
{
    const cd_cluster_args_t *config = cluster->args;
    const cd_runtime_t *rt = cd_actor_runtime(self);
    cluster->ctx = zmq_ctx_new();
    assert(cluster->ctx);
    if (cluster->curve) {
        cd_curve_key_t *keys = NULL;
        size_t n_keys = 0, bad = 0;
        if (cd_curve_key_list(config->curve_allowed_keys, &keys, &n_keys, &bad) != 0) {
            cd_log_error(cd_actor_name(self), "an allowed CurveZMQ key is not a Z85 key", "{s:i}",
                         "position", (int)bad);
            *why = "an allowed CurveZMQ key is malformed";
            return CD_ECONFIG;
        }
        cluster->zap =
            cd_zap_new(cluster->ctx, CD_CLUSTER_ZAP_DOMAIN, keys, n_keys, cd_actor_name(self));
        free(keys);
        if (!cluster->zap) {
            *why = "cannot start the ZAP handler; refusing to serve CurveZMQ without it";
            return CD_EIO;
        }
        cd_actor_watch(self, cd_zap_socket(cluster->zap), s_on_zap, cluster);
    }
    cluster->router = zmq_socket(cluster->ctx, ZMQ_ROUTER);
    assert(cluster->router);
    int on = 1;
    zmq_setsockopt(cluster->router, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    zmq_setsockopt(cluster->router, ZMQ_RCVHWM, &rt->queue_hwm, sizeof rt->queue_hwm);
    s_tcp_options(cluster->router, rt, config);
    if (cluster->curve) {
        zmq_setsockopt(cluster->router, ZMQ_CURVE_SERVER, &on, sizeof on);
        zmq_setsockopt(cluster->router, ZMQ_CURVE_SECRETKEY, config->curve_secret_key,
                       CD_CURVE_KEY_LEN);
        zmq_setsockopt(cluster->router, ZMQ_ZAP_DOMAIN, CD_CLUSTER_ZAP_DOMAIN,
                       strlen(CD_CLUSTER_ZAP_DOMAIN));
    }
    if (zmq_bind(cluster->router, config->bind) != 0) {
        cd_log_error(cd_actor_name(self), "cannot bind cluster endpoint", "{s:s, s:s}", "endpoint",
                     config->bind, "error", zmq_strerror(zmq_errno()));
        *why = "cannot bind the cluster endpoint";
        return CD_EIO;
    }
    cd_actor_watch_drain(self, cluster->router, s_on_router, cluster);
    cd_log_info(cd_actor_name(self), "cluster link listening", "{s:s, s:s}", "endpoint",
                config->bind, "security", cluster->curve ? "curve" : "none");
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_cluster_args_t *config = (const cd_cluster_args_t *)args;
    const cd_runtime_t *rt = cd_actor_runtime(self);
    s_cluster_t *cluster = (s_cluster_t *)zmalloc(sizeof *cluster);
    cluster->args = config;
    cluster->node_id = cd_registry_node_id(rt->registry);
    cluster->curve = config->curve_secret_key != NULL;
    cluster->peers = zhashx_new();
    zhashx_set_destructor(cluster->peers, s_dealer_destroy);
    *state_p = cluster;
    int rc = s_policy(self, cluster, why);
    if (rc == 0 && config->bind) {
        rc = s_listen(self, cluster, why);
    }
    for (size_t i = 0; rc == 0 && i < config->n_peers; i++) {
        const cd_config_peer_t *peer = &config->peers[i];
        rc = s_add_peer(self, cluster, peer->node_id, peer->endpoint, peer->public_key);
        if (rc != 0) {
            *why = rc == CD_EPERM ? "refusing a non-loopback peer without CurveZMQ keys"
                                  : "cannot link to a configured peer";
        }
    }
    if (rc != 0) {
        s_fini(self, state_p);
    }
    return rc;
}

const cd_actor_ops_t cd_cluster_ops = {
    .kind = "cluster",
    .init = s_init,
    .fini = s_fini,
    .raw = s_raw,
};
