/*  cd_echo: the echo agent (see cd_echo.h).

    The output is built without decoding the input: {"echo": <payload>}
    is a one-entry map header, the key, and the payload's own encoded bytes
    (a map payload is already one msgpack value; a bin payload is written
    as a bin value). Delayed answers are copied into a small record and sent
    from a timer, so a sleeping echo keeps answering heartbeats and other
    messages. */
#include "cd_echo.h"
#include "cd_error.h"
#include "cd_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CD_ECHO_MAX_SLEEP_MS 3600000

typedef struct {
    const cd_echo_args_t *args;          //  options; borrowed from the node
    cd_pack_t *pack;                     //  reused output buffer
    cd_envelope_t out;                   //  reused answer
    char reply_to[CD_ENV_MAX_NAME + 80]; //  qualified requester name
    zlistx_t *pending;                   //  s_pending_t * waiting for their delay
} s_echo_t;

//  An answer waiting for its delay.
typedef struct {
    s_echo_t *echo;    //  the agent
    void *handle;      //  its place in echo->pending
    cd_envelope_t env; //  what to send; views point into bytes below
    char *to;          //  destination
    char *reply_to;    //  header value, or NULL
    uint8_t *payload;  //  output bytes
} s_pending_t;

static int
s_parse_int(const char *text, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || !end || *end || end == text || value < min || value > max) {
        return CD_ECONFIG;
    }
    *out = (int)value;
    return 0;
}

int
cd_echo_args_new(const cd_config_agent_t *agent, cd_echo_args_t **out, char **errmsg)
{
    cd_echo_args_t *self = (cd_echo_args_t *)zmalloc(sizeof *self);
    for (size_t i = 0; i < agent->n_options; i++) {
        const char *key = agent->options[i].key;
        const char *value = agent->options[i].value;
        bool ok = true;
        if (streq(key, "sleep_ms")) {
            ok = s_parse_int(value, 0, CD_ECHO_MAX_SLEEP_MS, &self->sleep_ms) == 0;
        } else if (streq(key, "fail")) {
            ok = streq(value, "true") || streq(value, "false") || streq(value, "1") ||
                 streq(value, "0");
            self->fail = streq(value, "true") || streq(value, "1");
        } else if (streq(key, "handoff_to")) {
            ok = *value && strlen(value) < CD_ENV_MAX_NAME;
            free(self->handoff_to);
            self->handoff_to = strdup(value);
        } else {
            if (asprintf(errmsg,
                         "agent %s: unknown echo option '%s' (known: sleep_ms, fail, "
                         "handoff_to)",
                         agent->name, key) < 0) {
                *errmsg = NULL;
            }
            cd_echo_args_destroy(&self);
            return CD_ECONFIG;
        }
        if (!ok) {
            if (asprintf(errmsg, "agent %s: echo option %s: bad value '%s'", agent->name, key,
                         value) < 0) {
                *errmsg = NULL;
            }
            cd_echo_args_destroy(&self);
            return CD_ECONFIG;
        }
    }
    *out = self;
    return 0;
}

void
cd_echo_args_destroy(cd_echo_args_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->handoff_to);
        free(*self_p);
        *self_p = NULL;
    }
}

//  Sends an answer. An undeliverable one is already a dead letter; a full
//  queue is logged (the caller of a real task retries by policy).
static void
s_deliver(cd_actor_t *self, const cd_envelope_t *out)
{
    int rc = cd_actor_send(self, out);
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(self), "answer not delivered", "{s:s}", "error", cd_errname(rc));
    }
}

static void
s_pending_destroy(void **item)
{
    s_pending_t *pending = (s_pending_t *)*item;
    free(pending->to);
    free(pending->reply_to);
    free(pending->payload);
    free(pending);
    *item = NULL;
}

static int
s_send_pending(cd_actor_t *self, void *arg)
{
    s_pending_t *pending = (s_pending_t *)arg;
    s_deliver(self, &pending->env);
    zlistx_delete(pending->echo->pending, pending->handle);
    return 0;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    s_echo_t *echo = (s_echo_t *)zmalloc(sizeof *echo);
    echo->args = (const cd_echo_args_t *)args;
    echo->pack = cd_pack_new();
    echo->pending = zlistx_new();
    zlistx_set_destructor(echo->pending, s_pending_destroy);
    *state_p = echo;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_echo_t *echo = (s_echo_t *)*state_p;
    if (echo) {
        //  Stopping cuts delays short: answers already owed are sent now,
        //  not dropped.
        for (s_pending_t *pending = (s_pending_t *)zlistx_first(echo->pending); pending;
             pending = (s_pending_t *)zlistx_next(echo->pending)) {
            s_deliver(self, &pending->env);
        }
        cd_pack_destroy(&echo->pack);
        zlistx_destroy(&echo->pending);
        free(echo);
        *state_p = NULL;
    }
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_echo_t *echo = (s_echo_t *)state;
    if (env->kind != CD_KIND_TASK && env->kind != CD_KIND_HANDOFF) {
        return 0;
    }
    cd_str_t value;
    if (cd_envelope_header(env, "echo.crash", NULL)) {
        return CD_ECRASH;
    }
    if (cd_envelope_header(env, "echo.exit", NULL)) {
        cd_actor_quit(self);
        return 0;
    }
    if (cd_envelope_header(env, "echo.block_ms", &value)) {
        char text[16];
        snprintf(text, sizeof text, "%.*s", (int)(value.len < 15 ? value.len : 15), value.ptr);
        usleep((useconds_t)atoi(text) * 1000u);
    }
    //  Output: {"echo": input} or {"error": "..."}.
    cd_pack_reset(echo->pack);
    cd_pack_map(echo->pack, 1);
    if (echo->args->fail) {
        cd_pack_cstr(echo->pack, "error");
        cd_pack_cstr(echo->pack, "echo agent configured to fail");
    } else {
        cd_pack_cstr(echo->pack, "echo");
        if (env->payload_type == CD_PAYLOAD_MAP) {
            cd_pack_raw(echo->pack, env->payload.ptr, env->payload.len);
        } else if (env->payload_type == CD_PAYLOAD_BIN) {
            cd_pack_bin(echo->pack, env->payload.ptr, env->payload.len);
        } else {
            cd_pack_nil(echo->pack);
        }
    }
    cd_bin_t output = cd_pack_bytes(echo->pack);

    cd_str_t reply_to = env->from;
    cd_envelope_header(env, "reply_to", &reply_to);
    bool handoff = echo->args->handoff_to && !echo->args->fail;
    cd_kind_t kind = handoff ? CD_KIND_HANDOFF : echo->args->fail ? CD_KIND_ERROR : CD_KIND_RESULT;

    //  The answer is built on the stack; only a delayed one is copied.
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "%s", handoff ? echo->args->handoff_to : "");
    if (!handoff) {
        snprintf(to, sizeof to, "%.*s", (int)reply_to.len, reply_to.ptr ? reply_to.ptr : "");
    }
    cd_envelope_t *out = &echo->out;
    cd_actor_envelope_init(self, out, kind, to);
    out->task_id = env->task_id;
    memcpy(out->trace_id, env->trace_id, sizeof env->trace_id);
    memcpy(out->parent_id, env->id, sizeof env->id);
    out->deadline = env->deadline;
    out->payload_type = CD_PAYLOAD_MAP;
    out->payload = output;
    if (handoff) {
        //  The next agent may live on another node: name the requester so
        //  that it can be reached from anywhere.
        if (!(reply_to.len > 5 && memcmp(reply_to.ptr, "node/", 5) == 0)) {
            snprintf(echo->reply_to, sizeof echo->reply_to, "node/%s/%.*s",
                     cd_registry_node_id(cd_actor_runtime(self)->registry), (int)reply_to.len,
                     reply_to.ptr ? reply_to.ptr : "");
            reply_to = cd_str(echo->reply_to);
        }
        out->headers[0] = (cd_env_header_t){cd_str("reply_to"), reply_to};
        out->n_headers = 1;
    }
    if (echo->args->sleep_ms <= 0) {
        s_deliver(self, out);
        return 0;
    }
    s_pending_t *pending = (s_pending_t *)zmalloc(sizeof *pending);
    pending->echo = echo;
    pending->to = strdup(to);
    pending->reply_to = strndup(reply_to.ptr ? reply_to.ptr : "", reply_to.len);
    pending->payload = (uint8_t *)malloc(output.len ? output.len : 1);
    assert(pending->to && pending->reply_to && pending->payload);
    memcpy(pending->payload, output.ptr, output.len);
    pending->env = *out;
    pending->env.to = cd_str(pending->to);
    pending->env.payload = (cd_bin_t){pending->payload, output.len};
    if (handoff) {
        pending->env.headers[0].value = cd_str(pending->reply_to);
    }
    pending->handle = zlistx_add_end(echo->pending, pending);
    cd_actor_after(self, echo->args->sleep_ms, s_send_pending, pending);
    return 0;
}

const cd_actor_ops_t cd_echo_ops = {
    .kind = "echo",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
