/*  cd_echo: the echo agent (see cd_echo.h).

    The output is built without decoding the input: {"echo": <payload>}
    is a one-entry map header, the key, and the payload's own encoded bytes
    (a map payload is already one msgpack value; a bin payload is written
    as a bin value; an orchestrated step's input is one value already).
    Delayed answers are copied into a small record and sent from a timer,
    so a sleeping echo keeps answering heartbeats, cancels and other
    messages. */
#include "cd_echo.h"
#include "cd_agent_proto.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_step.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CD_ECHO_MAX_SLEEP_MS 3600000

typedef struct {
    const cd_echo_args_t *args;          //  options; borrowed from the node
    cd_pack_t *pack;                     //  reused output buffer
    cd_pack_t *answer;                   //  reused step answer (wraps pack's output)
    cd_envelope_t out;                   //  reused answer
    char reply_to[CD_ENV_MAX_NAME + 80]; //  qualified requester name
    zlistx_t *pending;                   //  s_pending_t * waiting for their delay
} s_echo_t;

//  An answer waiting for its delay.
typedef struct {
    s_echo_t *echo;      //  the agent
    void *handle;        //  its place in echo->pending
    int timer;           //  the delay's timer id
    bool step;           //  an orchestrated step: sent with cd_step_send
    cd_step_addr_t addr; //  whom it answers (both paths: cancel matches on it)
    cd_envelope_t env;   //  not a step: what to send; views point into bytes below
    cd_kind_t kind;      //  a step: the answer's kind
    char *to;            //  not a step: destination
    char *reply_to;      //  not a step: header value, or NULL
    uint8_t *payload;    //  answer payload bytes
    size_t payload_len;  //  their length
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

static void
s_ask_fini(cd_echo_ask_t *ask)
{
    free(ask->question);
    for (size_t i = 0; i < ask->n_options; i++) {
        free(ask->options[i]);
    }
    free(ask->options);
    free(ask->on_timeout);
    *ask = (cd_echo_ask_t){0};
}

//  Reads ask_human: a question, or the JSON text of {question, options?,
//  timeout_s?, on_timeout?}. Returns NULL or what is wrong (static text).
static const char *
s_ask_parse(const char *value, cd_echo_ask_t *ask)
{
    s_ask_fini(ask);
    if (value[0] != '{') {
        if (!*value || strlen(value) > CD_ECHO_MAX_QUESTION) {
            return "the question must be 1-4096 bytes";
        }
        ask->question = strdup(value);
        return NULL;
    }
    json_t *obj = json_loads(value, JSON_REJECT_DUPLICATES, NULL);
    const char *bad = NULL;
    const char *key;
    json_t *item;
    if (!json_is_object(obj)) {
        bad = "must be a question or an object {question, options, timeout_s, on_timeout}";
        goto done;
    }
    json_object_foreach(obj, key, item)
    {
        if (streq(key, "question")) {
            if (!json_is_string(item) || json_string_length(item) == 0 ||
                json_string_length(item) > CD_ECHO_MAX_QUESTION) {
                bad = "question must be a string of 1-4096 bytes";
                goto done;
            }
            ask->question = strdup(json_string_value(item));
        } else if (streq(key, "options")) {
            if (json_is_null(item)) {
                continue;
            }
            if (!json_is_array(item) || json_array_size(item) > CD_ECHO_MAX_OPTIONS) {
                bad = "options must be an array of at most 32 strings";
                goto done;
            }
            ask->options = (char **)zmalloc((json_array_size(item) + 1) * sizeof(char *));
            size_t i;
            json_t *option;
            json_array_foreach(item, i, option)
            {
                if (!json_is_string(option)) {
                    bad = "options must be an array of at most 32 strings";
                    goto done;
                }
                ask->options[ask->n_options++] = strdup(json_string_value(option));
            }
        } else if (streq(key, "timeout_s")) {
            if (json_is_null(item)) {
                continue;
            }
            if (!json_is_integer(item) || json_integer_value(item) < 1 ||
                json_integer_value(item) > CD_ECHO_MAX_TIMEOUT_S) {
                bad = "timeout_s must be an integer from 1 to 2592000";
                goto done;
            }
            ask->timeout_s = (int)json_integer_value(item);
        } else if (streq(key, "on_timeout")) {
            if (json_is_null(item)) {
                continue;
            }
            const char *policy = json_string_value(item);
            if (!policy ||
                (!streq(policy, "deny") && !streq(policy, "approve") && !streq(policy, "fail"))) {
                bad = "on_timeout must be deny, approve or fail";
                goto done;
            }
            ask->on_timeout = strdup(policy);
        } else {
            bad = "unknown key (known: question, options, timeout_s, on_timeout)";
            goto done;
        }
    }
    if (!ask->question) {
        bad = "question is required";
    }
done:
    json_decref(obj);
    if (bad) {
        s_ask_fini(ask);
    }
    return bad;
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
        } else if (streq(key, "ask_human")) {
            const char *bad = *value ? s_ask_parse(value, &self->ask) : NULL;
            if (bad) {
                if (asprintf(errmsg, "agent %s: echo option ask_human: %s", agent->name, bad) < 0) {
                    *errmsg = NULL;
                }
                cd_echo_args_destroy(&self);
                return CD_ECONFIG;
            }
        } else {
            if (asprintf(errmsg,
                         "agent %s: unknown echo option '%s' (known: sleep_ms, fail, "
                         "handoff_to, ask_human)",
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
        s_ask_fini(&(*self_p)->ask);
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

static void
s_pending_deliver(cd_actor_t *self, s_pending_t *pending)
{
    if (pending->step) {
        cd_step_send(self, &pending->addr, pending->kind,
                     (cd_bin_t){pending->payload, (uint32_t)pending->payload_len});
    } else {
        s_deliver(self, &pending->env);
    }
}

static int
s_send_pending(cd_actor_t *self, void *arg)
{
    s_pending_t *pending = (s_pending_t *)arg;
    s_pending_deliver(self, pending);
    zlistx_delete(pending->echo->pending, pending->handle);
    return 0;
}

//  Queues a copy of payload to be sent after sleep_ms.
static s_pending_t *
s_pending_add(cd_actor_t *self, s_echo_t *echo, cd_bin_t payload)
{
    s_pending_t *pending = (s_pending_t *)zmalloc(sizeof *pending);
    pending->echo = echo;
    pending->payload = (uint8_t *)malloc(payload.len ? payload.len : 1);
    assert(pending->payload);
    memcpy(pending->payload, payload.ptr, payload.len);
    pending->payload_len = payload.len;
    pending->handle = zlistx_add_end(echo->pending, pending);
    pending->timer = cd_actor_after(self, echo->args->sleep_ms, s_send_pending, pending);
    return pending;
}

//  Drops the delayed answers a cancel is meant for.
static void
s_cancel(cd_actor_t *self, s_echo_t *echo, const cd_envelope_t *env)
{
    s_pending_t *pending = (s_pending_t *)zlistx_first(echo->pending);
    while (pending) {
        s_pending_t *next = (s_pending_t *)zlistx_next(echo->pending);
        if (cd_step_cancel_matches(env, &pending->addr)) {
            cd_actor_cancel(self, pending->timer);
            zlistx_delete(echo->pending, pending->handle);
        }
        pending = next;
    }
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    s_echo_t *echo = (s_echo_t *)zmalloc(sizeof *echo);
    echo->args = (const cd_echo_args_t *)args;
    echo->pack = cd_pack_new();
    echo->answer = cd_pack_new();
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
            s_pending_deliver(self, pending);
        }
        cd_pack_destroy(&echo->pack);
        cd_pack_destroy(&echo->answer);
        zlistx_destroy(&echo->pending);
        free(echo);
        *state_p = NULL;
    }
}

//  Packs {"echo": input} plus extra entries (n_extra of them follow).
static void
s_pack_echo(cd_pack_t *pack, const cd_step_view_t *view, uint32_t n_extra)
{
    cd_pack_reset(pack);
    cd_pack_map(pack, 1 + n_extra);
    cd_pack_cstr(pack, "echo");
    cd_pack_raw(pack, view->input.ptr, view->input.len);
}

//  The hitl_request payload of ask_human.
static void
s_pack_question(cd_pack_t *pack, const cd_echo_ask_t *ask)
{
    cd_pack_reset(pack);
    cd_pack_map(pack, 1 + (ask->options ? 1 : 0) + (ask->timeout_s > 0 ? 1 : 0) +
                          (ask->on_timeout ? 1 : 0));
    cd_pack_cstr(pack, "question");
    cd_pack_cstr(pack, ask->question);
    if (ask->options) {
        cd_pack_cstr(pack, "options");
        cd_pack_array(pack, (uint32_t)ask->n_options);
        for (size_t i = 0; i < ask->n_options; i++) {
            cd_pack_cstr(pack, ask->options[i]);
        }
    }
    if (ask->timeout_s > 0) {
        cd_pack_cstr(pack, "timeout_s");
        cd_pack_int(pack, ask->timeout_s);
    }
    if (ask->on_timeout) {
        cd_pack_cstr(pack, "on_timeout");
        cd_pack_cstr(pack, ask->on_timeout);
    }
}

//  Builds the answer to an orchestrated step in echo->answer. Returns its
//  kind.
static cd_kind_t
s_step_answer(s_echo_t *echo, const cd_step_view_t *view)
{
    const cd_echo_args_t *args = echo->args;
    if (args->fail) {
        cd_step_pack_error(echo->answer, "echo_failed", "echo agent configured to fail", true, -1);
        return CD_KIND_ERROR;
    }
    cd_step_hitl_t hitl;
    int rc = cd_step_hitl(view, &hitl);
    if (rc == CD_EPROTO) {
        cd_step_pack_error(echo->answer, "bad_request", "the step's \"hitl\" is malformed", false,
                           -1);
        return CD_KIND_ERROR;
    }
    if (args->ask.question && rc == CD_ENOTFOUND) {
        s_pack_question(echo->answer, &args->ask);
        return CD_KIND_HITL_REQUEST;
    }
    if (args->ask.question && hitl.expired) {
        int approved = hitl.approved;
        const char *policy = args->ask.on_timeout ? args->ask.on_timeout : "deny";
        if (approved < 0 && streq(policy, "fail")) {
            cd_step_pack_error(echo->answer, "hitl_expired",
                               "the question expired unanswered (on_timeout fail)", false, -1);
            return CD_KIND_ERROR;
        }
        if (approved < 0) {
            approved = streq(policy, "approve") ? 1 : 0;
        }
        s_pack_echo(echo->pack, view, approved ? 0 : 1);
        if (!approved) {
            cd_pack_cstr(echo->pack, "approved");
            cd_pack_bool(echo->pack, false);
        }
    } else if (args->ask.question) {
        s_pack_echo(echo->pack, view, 1);
        cd_pack_cstr(echo->pack, "human");
        cd_pack_raw(echo->pack, hitl.response.ptr, hitl.response.len);
    } else {
        s_pack_echo(echo->pack, view, 0);
    }
    cd_step_pack_result(echo->answer, cd_pack_bytes(echo->pack), args->handoff_to);
    return CD_KIND_RESULT;
}

//  An orchestrated step (cd_agent_proto.h): answered to reply_to, now or
//  after sleep_ms.
static void
s_step(cd_actor_t *self, s_echo_t *echo, const cd_envelope_t *env)
{
    cd_step_view_t view;
    const char *why = NULL;
    cd_kind_t kind;
    if (cd_step_view(env, &view, &why) != 0) {
        cd_step_pack_error(echo->answer, "bad_request", why, false, -1);
        kind = CD_KIND_ERROR;
    } else {
        kind = s_step_answer(echo, &view);
    }
    cd_step_addr_t addr;
    cd_step_addr(env, &view, &addr);
    cd_bin_t payload = cd_pack_bytes(echo->answer);
    if (echo->args->sleep_ms <= 0) {
        cd_step_send(self, &addr, kind, payload);
        return;
    }
    s_pending_t *pending = s_pending_add(self, echo, payload);
    pending->step = true;
    pending->kind = kind;
    pending->addr = addr;
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_echo_t *echo = (s_echo_t *)state;
    if (cd_step_is_cancel(env)) {
        s_cancel(self, echo, env);
        return 0;
    }
    if (!cd_step_is_step(env)) {
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
    if (cd_envelope_header(env, CD_PROTO_STEP_HEADER, NULL)) {
        s_step(self, echo, env);
        return 0;
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
    s_pending_t *pending = s_pending_add(self, echo, output);
    cd_step_view_t view = {.reply_to = reply_to, .input = output};
    cd_step_addr(env, &view, &pending->addr);
    pending->to = strdup(to);
    pending->reply_to = strndup(reply_to.ptr ? reply_to.ptr : "", reply_to.len);
    assert(pending->to && pending->reply_to);
    pending->env = *out;
    pending->env.to = cd_str(pending->to);
    pending->env.payload = (cd_bin_t){pending->payload, output.len};
    if (handoff) {
        pending->env.headers[0].value = cd_str(pending->reply_to);
    }
    return 0;
}

const cd_actor_ops_t cd_echo_ops = {
    .kind = "echo",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
