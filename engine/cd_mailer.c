/*  cd_mailer: encode once, resolve by name, push (see cd_mailer.h). */
#include "cd_mailer.h"
#include "cd_error.h"
#include "cd_log.h"

#define CD_MAILER_NODE_PREFIX "node/" //  names of actors on other nodes start so
#define S_POOL_BUF 512                //  bytes of a pooled message buffer
#define S_POOL_KEEP 32                //  free buffers a mailer keeps

//  Message buffers for small envelopes, recycled between the sending
//  thread (the mailer's: it takes buffers) and the receivers (ZeroMQ's
//  free callback gives them back from whichever thread closes the
//  message). With a malloc per message the sender's malloc and the
//  receiver's free of the same ~250-byte chunks contended for one malloc
//  arena lock on every message. Returned buffers go on a lock-free stack
//  that only the owner empties (all at once, so no ABA); refs counts the
//  owner plus every buffer out, and whoever drops it to zero frees the
//  pool, so buffers may outlive their mailer. The owner keeps S_POOL_KEEP
//  free buffers and frees the rest itself (cd_mailer_trim when its actor
//  goes idle, and on taking back what was returned).
typedef struct s_pbuf {
    struct s_pbuf *next;      //  free list link
    struct s_pool *pool;      //  owner
    uint8_t data[S_POOL_BUF]; //  the message bytes
} s_pbuf_t;

typedef struct s_pool {
    _Atomic(s_pbuf_t *) returned; //  given back by receivers
    atomic_int refs;              //  1 for the mailer + 1 per buffer out
    s_pbuf_t *free;               //  the owner's free buffers
    int n_free;                   //  entries in free
} s_pool_t;

typedef struct {
    zsock_t *push;            //  connected to the destination's inbox
    uint64_t gen;             //  registry generation when status was read
    cd_actor_status_t status; //  destination status at that generation
    uint32_t incarnation;     //  which inbox of the destination push is connected to
    cd_queue_meter_t *meter;  //  the destination inbox's meter (a reference), or NULL
} s_route_t;

struct cd_mailer {
    const cd_runtime_t *rt;                    //  node settings; borrowed
    s_pool_t *pool;                            //  small message buffers
    char *name;                                //  the name it sends as
    zhashx_t *routes;                          //  destination name -> s_route_t (owned)
    cd_envbuf_t *envbuf;                       //  reused encode buffer
    cd_envbuf_t *dl_buf;                       //  encode buffer for dead-letter records (lazy)
    cd_idgen_t idgen;                          //  message ids
    char qualified[CD_REGISTRY_MAX_NAME + 80]; //  node/<id>/<name>, for remote sends
    char last_target[CD_REGISTRY_MAX_NAME];    //  destination of the last send
    s_route_t *last_route;                     //  its route (owned by routes), or NULL
    cd_msg_counts_t counts;                    //  sent by kind (attached to the registry)
};

//  The local actor a name is delivered to: this node's prefix is stripped;
//  another node's names go to the cluster link. Writes into buf.
static int
s_target(cd_mailer_t *self, const char *to, size_t to_len, char *buf, size_t size, bool *remote)
{
    *remote = false;
    const char *node_id = cd_registry_node_id(self->rt->registry);
    size_t prefix_len = strlen(CD_MAILER_NODE_PREFIX);
    if (to_len > prefix_len && memcmp(to, CD_MAILER_NODE_PREFIX, prefix_len) == 0) {
        const char *id = to + prefix_len;
        const char *slash = memchr(id, '/', to_len - prefix_len);
        if (!slash || slash == id || slash + 1 == to + to_len) {
            return CD_EINVAL;
        }
        size_t id_len = (size_t)(slash - id);
        if (id_len == strlen(node_id) && memcmp(id, node_id, id_len) == 0) {
            to_len -= (size_t)(slash + 1 - to);
            to = slash + 1;
        } else {
            *remote = true;
            to = "cluster";
            to_len = strlen(to);
        }
    }
    if (to_len == 0 || to_len >= size || to_len >= CD_REGISTRY_MAX_NAME) {
        return CD_EINVAL;
    }
    memcpy(buf, to, to_len);
    buf[to_len] = '\0';
    return 0;
}

static void
s_route_destroy(void **item)
{
    s_route_t *route = (s_route_t *)*item;
    if (route) {
        zsock_destroy(&route->push);
        cd_registry_meter_release(&route->meter);
        free(route);
        *item = NULL;
    }
}

//  Finds the live route to a local actor. Returns 0, CD_ENOTFOUND (no such
//  actor) or CD_EDEAD (stopped or dead).
static int
s_route(cd_mailer_t *self, const char *target, s_route_t **route_p)
{
    const cd_runtime_t *rt = self->rt;
    uint64_t gen = cd_registry_generation(rt->registry);
    //  Most senders talk to one destination at a time: remember the last.
    s_route_t *route = self->last_route && streq(self->last_target, target)
                           ? self->last_route
                           : (s_route_t *)zhashx_lookup(self->routes, target);
    if (!route || route->gen != gen) {
        uint32_t incarnation = 0;
        cd_actor_status_t status = cd_registry_lookup(rt->registry, target, &incarnation);
        if (route && route->incarnation != incarnation) {
            //  The destination got a new inbox: the old connection is dead.
            zhashx_delete(self->routes, target);
            self->last_route = NULL;
            route = NULL;
        }
        if (!route) {
            if (!cd_registry_status_deliverable(status)) {
                return status == CD_ACTOR_ABSENT ? CD_ENOTFOUND : CD_EDEAD;
            }
            char endpoint[CD_REGISTRY_MAX_ENDPOINT];
            if (cd_registry_endpoint(rt->registry, target, endpoint, sizeof endpoint) != 0) {
                return CD_ENOTFOUND;
            }
            route = (s_route_t *)zmalloc(sizeof *route);
            route->push = zsock_new(ZMQ_PUSH);
            assert(route->push);
            zsock_set_sndhwm(route->push, rt->queue_hwm);
            zsock_set_sndtimeo(route->push, rt->send_timeout_ms);
            //  Messages still queued when this mailer closes are delivered,
            //  within the stop timeout, rather than discarded.
            zsock_set_linger(route->push, rt->stop_timeout_ms);
            if (zsock_connect(route->push, "%s", endpoint) != 0) {
                zsock_destroy(&route->push);
                free(route);
                return CD_ENOTFOUND;
            }
            route->incarnation = incarnation;
            route->meter = cd_registry_meter(rt->registry, target);
            zhashx_insert(self->routes, target, route);
        }
        route->gen = gen;
        route->status = status;
    }
    *route_p = route;
    if (route != self->last_route) {
        snprintf(self->last_target, sizeof self->last_target, "%s", target);
        self->last_route = route;
    }
    return cd_registry_status_deliverable(route->status)
               ? 0
               : (route->status == CD_ACTOR_ABSENT ? CD_ENOTFOUND : CD_EDEAD);
}

//  Sends n frames on a route's socket. On success the frames are emptied.
static int
s_send_frames(s_route_t *route, zmq_msg_t *frames, int n)
{
    void *socket = zsock_resolve(route->push);
    for (int i = 0; i < n; i++) {
        //  PUSH messages are atomic: once the first frame is accepted the
        //  rest go into the same pipe and cannot block.
        if (zmq_msg_send(&frames[i], socket, i + 1 < n ? ZMQ_SNDMORE : 0) < 0) {
            return zmq_errno() == EAGAIN ? CD_EBUSY : CD_ECLOSED;
        }
    }
    cd_queue_meter_in(route->meter);
    return 0;
}

static void
s_pool_free_list(s_pbuf_t *list)
{
    while (list) {
        s_pbuf_t *next = list->next;
        free(list);
        list = next;
    }
}

//  Drops a reference; the last one frees the pool and what came back.
static void
s_pool_unref(s_pool_t *pool)
{
    if (atomic_fetch_sub_explicit(&pool->refs, 1, memory_order_acq_rel) == 1) {
        s_pool_free_list(atomic_exchange_explicit(&pool->returned, NULL, memory_order_acquire));
        s_pool_free_list(pool->free);
        free(pool);
    }
}

//  ZeroMQ's free callback, on the thread that closed the message.
static void
s_pool_give_back(void *data, void *hint)
{
    (void)data;
    s_pbuf_t *buf = (s_pbuf_t *)hint;
    s_pool_t *pool = buf->pool;
    buf->next = atomic_load_explicit(&pool->returned, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&pool->returned, &buf->next, buf,
                                                  memory_order_release, memory_order_relaxed)) {
    }
    s_pool_unref(pool);
}

//  Takes back what receivers returned: onto the free list up to
//  S_POOL_KEEP, the rest back to malloc from this thread, which allocated
//  them (the owner's only).
static void
s_pool_reclaim(s_pool_t *pool)
{
    s_pbuf_t *back = atomic_exchange_explicit(&pool->returned, NULL, memory_order_acquire);
    while (back) {
        s_pbuf_t *next = back->next;
        if (pool->n_free < S_POOL_KEEP) {
            back->next = pool->free;
            pool->free = back;
            pool->n_free++;
        } else {
            free(back);
        }
        back = next;
    }
}

//  A message of size bytes copied from data: pooled when small.
static void
s_msg_init(s_pool_t *pool, zmq_msg_t *msg, const void *data, size_t size)
{
    if (size > S_POOL_BUF) {
        zmq_msg_init_size(msg, size);
        memcpy(zmq_msg_data(msg), data, size);
        return;
    }
    if (!pool->free) {
        s_pool_reclaim(pool);
    }
    s_pbuf_t *buf = pool->free;
    if (buf) {
        pool->free = buf->next;
        pool->n_free--;
    } else {
        buf = (s_pbuf_t *)malloc(sizeof *buf);
        assert(buf);
        buf->pool = pool;
    }
    memcpy(buf->data, data, size);
    atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
    zmq_msg_init_data(msg, buf->data, size, s_pool_give_back, buf);
}

void
cd_mailer_trim(cd_mailer_t *self)
{
    if (atomic_load_explicit(&self->pool->returned, memory_order_relaxed)) {
        s_pool_reclaim(self->pool);
    }
}

size_t
cd_mailer_pooled(const cd_mailer_t *self)
{
    size_t n = (size_t)self->pool->n_free;
    for (const s_pbuf_t *b = atomic_load_explicit(&self->pool->returned, memory_order_acquire); b;
         b = b->next) {
        n++;
    }
    return n;
}

//  Sends what buf holds (the encoding of env) on a route, with env's
//  payload as a second frame when it travels in its own frame.
static int
s_push(s_pool_t *pool, s_route_t *route, const cd_envbuf_t *buf, const cd_envelope_t *env)
{
    zmq_msg_t frames[2];
    size_t size = cd_envbuf_size(buf);
    s_msg_init(pool, &frames[0], cd_envbuf_data(buf), size);
    int n = 1;
    if (env->payload_in_frame) {
        zmq_msg_init_size(&frames[1], env->payload.len);
        memcpy(zmq_msg_data(&frames[1]), env->payload.ptr, env->payload.len);
        n = 2;
    }
    int rc = s_send_frames(route, frames, n);
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&frames[i]);
    }
    return rc;
}

static const char *
s_failure_reason(int rc)
{
    return rc == CD_ENOTFOUND ? "unknown_actor" : rc == CD_EDEAD ? "actor_dead" : "invalid_name";
}

int
cd_mailer_forward_frames(cd_mailer_t *self, const char *to, zmq_msg_t *frames, int n)
{
    char target[CD_REGISTRY_MAX_NAME];
    bool remote;
    int rc = s_target(self, to, strlen(to), target, sizeof target, &remote);
    s_route_t *route = NULL;
    if (rc == 0) {
        rc = s_route(self, target, &route);
    }
    if (rc != 0) {
        cd_mailer_dead_letter(self, to, s_failure_reason(rc),
                              (const uint8_t *)zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]));
        return rc;
    }
    return s_send_frames(route, frames, n);
}

void
cd_mailer_envelope_init(cd_mailer_t *self, cd_envelope_t *env, cd_kind_t kind, const char *to)
{
    memset(env, 0, offsetof(cd_envelope_t, headers));
    cd_idgen_next(&self->idgen, env->id);
    env->kind = kind;
    env->from = cd_str(self->name);
    env->to = cd_str(to);
    env->ts = cd_now_us();
    env->attempt = 1;
}

int
cd_mailer_send(cd_mailer_t *self, const cd_envelope_t *env)
{
    char target[CD_REGISTRY_MAX_NAME];
    bool remote;
    int rc = s_target(self, env->to.ptr, env->to.len, target, sizeof target, &remote);
    const cd_envelope_t *out = env;
    cd_envelope_t qualified;
    bool large = env->payload_type != CD_PAYLOAD_NONE && env->payload.len > CD_ENV_LARGE_PAYLOAD;
    if (rc == 0 && ((remote && !(env->from.len > 5 && memcmp(env->from.ptr, "node/", 5) == 0)) ||
                    (large && !env->payload_in_frame))) {
        //  A remote receiver must be able to answer: qualify `from` with this
        //  node. A large payload travels as its own frame.
        memcpy(&qualified, env, offsetof(cd_envelope_t, headers));
        memcpy(qualified.headers, env->headers, env->n_headers * sizeof env->headers[0]);
        memcpy(qualified.artifacts, env->artifacts, env->n_artifacts * sizeof env->artifacts[0]);
        if (remote) {
            snprintf(self->qualified, sizeof self->qualified, "node/%s/%.*s",
                     cd_registry_node_id(self->rt->registry), (int)env->from.len, env->from.ptr);
            qualified.from = cd_str(self->qualified);
        }
        qualified.payload_in_frame = qualified.payload_in_frame || large;
        out = &qualified;
    }
    if (cd_envelope_encode(out, self->envbuf) != 0) {
        return CD_EINVAL;
    }
    s_route_t *route = NULL;
    if (rc == 0) {
        rc = s_route(self, target, &route);
    }
    if (rc != 0) {
        char to[CD_ENV_MAX_NAME + 1];
        snprintf(to, sizeof to, "%.*s", (int)env->to.len, env->to.ptr ? env->to.ptr : "");
        cd_mailer_dead_letter(self, to, s_failure_reason(rc), cd_envbuf_data(self->envbuf),
                              cd_envbuf_size(self->envbuf));
        return rc;
    }
    rc = s_push(self->pool, route, self->envbuf, out);
    if (rc == 0 && env->kind > CD_KIND_NONE && env->kind < CD_KIND_COUNT_) {
        //  The only writer: no read-modify-write needed.
        atomic_uint_fast64_t *slot = &self->counts.sent[env->kind];
        atomic_store_explicit(slot, atomic_load_explicit(slot, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    return rc;
}

void
cd_mailer_dead_letter(cd_mailer_t *self, const char *to, const char *reason, const uint8_t *raw,
                      size_t raw_size)
{
    cd_registry_t *registry = self->rt->registry;
    cd_registry_count_dead_letter(registry, to);
    cd_log_warn(self->name, "dead letter", "{s:s, s:s, s:i}", "to", to, "reason", reason, "size",
                (int)raw_size);
    if (streq(self->name, "deadletter")) {
        return;
    }
    s_route_t *route = NULL;
    if (s_route(self, "deadletter", &route) != 0) {
        return;
    }
    cd_envelope_t *env = (cd_envelope_t *)malloc(sizeof *env);
    assert(env);
    cd_mailer_envelope_init(self, env, CD_KIND_CONTROL, "deadletter");
    env->headers[0] = (cd_env_header_t){cd_str("reason"), cd_str(reason)};
    env->headers[1] = (cd_env_header_t){cd_str("to"), cd_str(to)};
    env->n_headers = 2;
    if (raw) {
        env->payload_type = CD_PAYLOAD_BIN;
        env->payload = (cd_bin_t){raw, (uint32_t)raw_size};
        env->payload_in_frame = raw_size > CD_ENV_LARGE_PAYLOAD;
    }
    //  raw may live in self->envbuf: encode into the second buffer.
    if (!self->dl_buf) {
        self->dl_buf = cd_envbuf_new();
    }
    if (cd_envelope_encode(env, self->dl_buf) == 0 &&
        s_push(self->pool, route, self->dl_buf, env) != 0) {
        cd_log_error(self->name, "dead letter not recorded: deadletter queue full", "{s:s, s:s}",
                     "to", to, "reason", reason);
    }
    free(env);
}

cd_mailer_t *
cd_mailer_new(const cd_runtime_t *rt, const char *name)
{
    cd_mailer_t *self = (cd_mailer_t *)zmalloc(sizeof *self);
    self->rt = rt;
    self->name = strdup(name);
    assert(self->name);
    self->pool = (s_pool_t *)zmalloc(sizeof *self->pool);
    atomic_init(&self->pool->refs, 1);
    self->routes = zhashx_new();
    zhashx_set_destructor(self->routes, s_route_destroy);
    self->envbuf = cd_envbuf_new();
    cd_idgen_init(&self->idgen);
    if (rt->registry) {
        cd_registry_counts_attach(rt->registry, &self->counts);
    }
    return self;
}

void
cd_mailer_destroy(cd_mailer_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_mailer_t *self = *self_p;
    if (self->rt->registry) {
        cd_registry_counts_detach(self->rt->registry, &self->counts);
    }
    zhashx_destroy(&self->routes);
    s_pool_unref(self->pool);
    cd_envbuf_destroy(&self->envbuf);
    cd_envbuf_destroy(&self->dl_buf);
    free(self->name);
    free(self);
    *self_p = NULL;
}

const char *
cd_mailer_name(const cd_mailer_t *self)
{
    return self->name;
}
