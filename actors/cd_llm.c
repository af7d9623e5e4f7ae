/*  cd_llm: the llm agent (see cd_llm.h).

    One s_call_t per step, in one of five phases: queued (waiting for a
    slot), rate_wait (a timer until its rate-limit reservation comes),
    key_wait (the vault opening the API key), transfer (a curl easy handle
    in the agent's multi handle) and ledger (waiting for persist to
    acknowledge the usage row). Queued calls live in llm->queue, the
    others in llm->active; deleting a call from its list frees it, with
    whatever it holds (handle, timer, the clear key, wiped), so every way
    out (answer, cancel, stop) releases the same way.

    libcurl is driven by the actor's loop: curl says which sockets to watch
    for what (s_curl_socket -> cd_actor_watch_fd_events) and when to call
    it back (s_curl_timer -> cd_actor_after); the loop hands readiness back
    with curl_multi_socket_action and then collects finished transfers
    (s_check_done). Calls are freed only there or from handlers and
    timers, never inside a curl callback.

    The stream is parsed as it arrives (s_sse_*): bytes are cut into lines,
    `data:` lines gathered into events, each event's JSON read for its
    token and usage. A bad event aborts the transfer from the write
    callback (returning 0), which curl reports as a write error.

    Interface: cd_llm_ops, cd_llm_args_new, cd_llm_args_destroy,
    cd_llm_rates_new, cd_llm_rates_destroy, cd_llm_rates_reserve. */
#include "cd_llm.h"
#include "cd_db.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_mailer.h"
#include "cd_mpjson.h"
#include "cd_q_usage.h"
#include "cd_step.h"
#include "cd_template.h"
#include "cd_vault_actor.h"

#include <curl/curl.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

//  --- rates -----------------------------------------------------------------------

struct cd_llm_rates {
    pthread_mutex_t lock; //  guards buckets
    zhashx_t *buckets;    //  key -> s_bucket_t *
};

typedef struct {
    double tokens;   //  may go below zero: reservations not yet due
    double rate;     //  refill per second
    int64_t last_us; //  last refill
} s_bucket_t;

static void
s_bucket_destroy(void **item)
{
    free(*item);
    *item = NULL;
}

cd_llm_rates_t *
cd_llm_rates_new(void)
{
    cd_llm_rates_t *self = (cd_llm_rates_t *)zmalloc(sizeof *self);
    pthread_mutex_init(&self->lock, NULL);
    self->buckets = zhashx_new();
    zhashx_set_destructor(self->buckets, s_bucket_destroy);
    return self;
}

void
cd_llm_rates_destroy(cd_llm_rates_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy(&(*self_p)->buckets);
        pthread_mutex_destroy(&(*self_p)->lock);
        free(*self_p);
        *self_p = NULL;
    }
}

int64_t
cd_llm_rates_reserve(cd_llm_rates_t *self, const char *key, double rate_per_s, int64_t now_us)
{
    if (!(rate_per_s > 0)) {
        return 0;
    }
    double burst = rate_per_s < 1 ? 1 : rate_per_s;
    pthread_mutex_lock(&self->lock);
    s_bucket_t *bucket = (s_bucket_t *)zhashx_lookup(self->buckets, key);
    if (!bucket) {
        bucket = (s_bucket_t *)zmalloc(sizeof *bucket);
        *bucket = (s_bucket_t){burst, rate_per_s, now_us};
        zhashx_insert(self->buckets, key, bucket);
    }
    if (bucket->rate != rate_per_s) {
        bucket->rate = rate_per_s;
        bucket->tokens = bucket->tokens > burst ? burst : bucket->tokens;
    }
    if (now_us > bucket->last_us) {
        bucket->tokens += (double)(now_us - bucket->last_us) / 1e6 * rate_per_s;
        bucket->tokens = bucket->tokens > burst ? burst : bucket->tokens;
        bucket->last_us = now_us;
    }
    bucket->tokens -= 1;
    int64_t wait_ms = 0;
    if (bucket->tokens < 0) {
        //  Rounded up, so the reservation is due when the wait ends.
        double ms = -bucket->tokens / rate_per_s * 1000.0;
        wait_ms = (int64_t)ms;
        wait_ms += (double)wait_ms < ms ? 1 : 0;
    }
    pthread_mutex_unlock(&self->lock);
    return wait_ms;
}

//  --- arguments ------------------------------------------------------------------

static bool
s_config_string(const json_t *value, size_t max)
{
    return json_is_string(value) && json_string_length(value) >= 1 &&
           json_string_length(value) <= max &&
           strlen(json_string_value(value)) == json_string_length(value);
}

int
cd_llm_args_new(const char *agent, const json_t *config, int concurrency, cd_llm_args_t **out,
                char *why, size_t why_size)
{
    *out = NULL;
    cd_llm_args_t *self = (cd_llm_args_t *)zmalloc(sizeof *self);
    self->agent = strdup(agent ? agent : "");
    self->temperature = -1;
    self->max_tokens = CD_LLM_MAX_TOKENS;
    self->stream = true;
    self->timeout_ms = CD_LLM_TIMEOUT_MS;
    self->concurrency = concurrency <= 0                       ? 1
                        : concurrency > CD_LLM_MAX_CONCURRENCY ? CD_LLM_MAX_CONCURRENCY
                                                               : concurrency;
    self->persist = "persist";
    self->bus = "bus";
    self->vault = CD_VAULT_ACTOR_NAME;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)config, key, value)
    {
        if (json_is_null(value) && !streq(key, "connection") && !streq(key, "model")) {
            continue; //  an optional key set to null: its default
        }
        if (streq(key, "connection")) {
            if (!s_config_string(value, 100)) {
                snprintf(why, why_size, "config.connection: must be a connection name");
                goto fail;
            }
            self->connection = strdup(json_string_value(value));
        } else if (streq(key, "model")) {
            if (!s_config_string(value, 200)) {
                snprintf(why, why_size, "config.model: must be a string of 1-200 bytes");
                goto fail;
            }
            self->model = strdup(json_string_value(value));
        } else if (streq(key, "temperature")) {
            double t = json_number_value(value);
            if (!json_is_number(value) || t < 0 || t > 2) {
                snprintf(why, why_size, "config.temperature: must be a number from 0 to 2");
                goto fail;
            }
            self->temperature = t;
        } else if (streq(key, "max_tokens")) {
            if (!json_is_integer(value) || json_integer_value(value) < 1 ||
                json_integer_value(value) > 1000000) {
                snprintf(why, why_size, "config.max_tokens: must be an integer from 1 to 1000000");
                goto fail;
            }
            self->max_tokens = (int)json_integer_value(value);
        } else if (streq(key, "stream")) {
            if (!json_is_boolean(value)) {
                snprintf(why, why_size, "config.stream: must be a boolean");
                goto fail;
            }
            self->stream = json_is_true(value);
        } else if (streq(key, "template_id")) {
            if (!json_is_integer(value) || json_integer_value(value) < 1) {
                snprintf(why, why_size, "config.template_id: must be a template id");
                goto fail;
            }
            self->template_id = json_integer_value(value);
        } else if (streq(key, "timeout_ms")) {
            if (!json_is_integer(value) || json_integer_value(value) < 1 ||
                json_integer_value(value) > CD_LLM_MAX_TIMEOUT_MS) {
                snprintf(why, why_size, "config.timeout_ms: must be an integer from 1 to %d",
                         CD_LLM_MAX_TIMEOUT_MS);
                goto fail;
            }
            self->timeout_ms = (int)json_integer_value(value);
        } else {
            snprintf(why, why_size,
                     "config.%.60s: unknown key (known: connection, model, temperature, "
                     "max_tokens, stream, template_id, timeout_ms)",
                     key);
            goto fail;
        }
    }
    if (!self->connection) {
        snprintf(why, why_size, "config.connection: required (the name of a connection)");
        goto fail;
    }
    if (!self->model) {
        snprintf(why, why_size, "config.model: required");
        goto fail;
    }
    *out = self;
    return 0;
fail:
    cd_llm_args_destroy(&self);
    return CD_EINVAL;
}

void
cd_llm_args_destroy(cd_llm_args_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->agent);
        free((*self_p)->connection);
        free((*self_p)->model);
        free(*self_p);
        *self_p = NULL;
    }
}

//  --- state -----------------------------------------------------------------------

typedef struct {
    char *ptr;  //  bytes, NUL-terminated when non-empty
    size_t len; //  used
    size_t cap; //  allocated
} s_buf_t;

typedef enum { S_QUEUED, S_RATE_WAIT, S_KEY_WAIT, S_TRANSFER, S_LEDGER } s_phase_t;

typedef struct s_llm s_llm_t;

typedef struct {
    s_llm_t *llm;                        //  the agent
    void *handle;                        //  place in llm->queue or llm->active
    s_phase_t phase;                     //  where it is
    cd_step_addr_t addr;                 //  whom to answer
    int64_t project_id;                  //  the task's project, 0 if none
    json_t *input;                       //  the stage input
    json_t *original;                    //  the task's input, or NULL
    bool has_budget;                     //  budget below applies
    cd_step_budget_t budget;             //  the task's budget and use
    int64_t connection_id;               //  from the context
    char *url;                           //  {base_url}/chat/completions
    char *sealed_key;                    //  the connection's api_key, sealed (hex), or NULL
    char *api_key;                       //  opened, in sodium_malloc'd memory, or NULL
    uint8_t key_id[CD_ENV_UUID_SIZE];    //  the vault request's id, in key_wait
    double rate;                         //  llm_rate_per_s, 0: none
    bool priced;                         //  the model is in llm_prices
    double price_prompt;                 //  USD per 1000 prompt tokens
    double price_completion;             //  USD per 1000 completion tokens
    char *prompt;                        //  the rendered prompt
    int64_t est_prompt;                  //  its estimated tokens
    CURL *easy;                          //  the transfer, or NULL
    struct curl_slist *headers;          //  its request headers
    char errbuf[CURL_ERROR_SIZE];        //  curl's error text
    long status;                         //  HTTP status of the answer
    bool event_stream;                   //  the answer is text/event-stream
    bool body_started;                   //  first body bytes seen
    bool sse;                            //  parsing the body as SSE
    int64_t retry_after_ms;              //  from Retry-After, -1 if none
    s_buf_t raw;                         //  a non-SSE body
    s_buf_t line;                        //  the SSE line being read
    s_buf_t data;                        //  the SSE event's data
    bool has_data;                       //  data holds a `data:` line (maybe empty)
    s_buf_t message;                     //  the assistant's message
    int64_t n_tokens;                    //  tokens streamed
    bool has_usage;                      //  the provider reported usage
    int64_t prompt_tokens;               //  its counts
    int64_t completion_tokens;           //  ...
    bool done;                           //  [DONE] seen
    const char *malformed;               //  why the answer is malformed, or NULL
    char *stream_error;                  //  an error event's message, or NULL
    bool tokens_live;                    //  token events go to the bus
    int64_t started_us;                  //  when the request went out
    int timer;                           //  rate, key or ledger wait timer, 0 if none
    uint8_t ledger_id[CD_ENV_UUID_SIZE]; //  the usage write's request id
} s_call_t;

typedef struct {
    s_llm_t *llm;     //  the agent
    curl_socket_t fd; //  the socket curl asked to watch
    void *handle;     //  place in llm->socks
} s_sock_t;

struct s_llm {
    cd_actor_t *self;          //  the actor
    const cd_llm_args_t *args; //  borrowed from the factory
    CURLM *multi;              //  every transfer of this agent
    int curl_timer;            //  curl's timeout, 0 if none
    zlistx_t *active;          //  s_call_t * in rate_wait, transfer or ledger
    zlistx_t *queue;           //  s_call_t * waiting for a slot
    zlistx_t *socks;           //  s_sock_t * curl watches
    cd_db_t *db;               //  context reads, or NULL
    int64_t db_retry_us;       //  no connect before this (monotonic)
    cd_pack_t *pack;           //  answers and requests
    cd_pack_t *aux;            //  values inside them
    cd_runtime_t token_rt;     //  the runtime with no send timeout
    cd_mailer_t *tokens;       //  token events: never waits
    uint64_t tokens_dropped;   //  token events the bus could not take
    bool admitting;            //  s_admit_queued is running (no recursion)
};

static bool
s_buf_append(s_buf_t *buf, const char *data, size_t n, size_t max)
{
    if (buf->len + n > max) {
        return false;
    }
    if (buf->len + n + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap * 2 : 256;
        while (cap < buf->len + n + 1) {
            cap *= 2;
        }
        buf->ptr = (char *)realloc(buf->ptr, cap);
        assert(buf->ptr);
        buf->cap = cap;
    }
    memcpy(buf->ptr + buf->len, data, n);
    buf->len += n;
    buf->ptr[buf->len] = '\0';
    return true;
}

static void
s_buf_free(s_buf_t *buf)
{
    free(buf->ptr);
    *buf = (s_buf_t){0};
}

//  Wipes and frees the clear API key and the request headers that carry
//  it. Only once curl is done with the headers (no transfer, or its
//  handle cleaned up).
static void
s_forget_key(s_call_t *call)
{
    for (struct curl_slist *h = call->headers; h; h = h->next) {
        sodium_memzero(h->data, strlen(h->data));
    }
    curl_slist_free_all(call->headers);
    call->headers = NULL;
    if (call->api_key) {
        sodium_free(call->api_key);
        call->api_key = NULL;
    }
}

static void
s_call_destroy(void **item)
{
    s_call_t *call = (s_call_t *)*item;
    if (!call) {
        return;
    }
    s_llm_t *llm = call->llm;
    if (call->easy) {
        curl_multi_remove_handle(llm->multi, call->easy);
        curl_easy_cleanup(call->easy);
    }
    s_forget_key(call);
    if (call->timer) {
        cd_actor_cancel(llm->self, call->timer);
    }
    json_decref(call->input);
    json_decref(call->original);
    free(call->url);
    free(call->sealed_key);
    free(call->prompt);
    free(call->stream_error);
    s_buf_free(&call->raw);
    s_buf_free(&call->line);
    s_buf_free(&call->data);
    s_buf_free(&call->message);
    free(call);
    *item = NULL;
}

//  --- answers ---------------------------------------------------------------------

static void s_admit_queued(s_llm_t *llm);

//  Ends an active call (frees it) and lets a queued one in.
static void
s_end(s_call_t *call)
{
    s_llm_t *llm = call->llm;
    zlistx_delete(call->phase == S_QUEUED ? llm->queue : llm->active, call->handle);
    s_admit_queued(llm);
}

static void
s_fail(s_call_t *call, const char *code, const char *message, bool retryable,
       int64_t retry_after_ms)
{
    s_llm_t *llm = call->llm;
    cd_log_info(cd_actor_name(llm->self), "step failed", "{s:I, s:s, s:s}", "task_id",
                (json_int_t)call->addr.task_id, "code", code, "message", message);
    cd_step_pack_error(llm->pack, code, message, retryable, retry_after_ms);
    cd_step_send(llm->self, &call->addr, CD_KIND_ERROR, cd_pack_bytes(llm->pack));
    s_end(call);
}

static void
s_succeed(s_call_t *call)
{
    s_llm_t *llm = call->llm;
    cd_pack_reset(llm->aux);
    cd_pack_str(llm->aux, call->message.ptr ? call->message.ptr : "", call->message.len);
    cd_step_pack_result(llm->pack, cd_pack_bytes(llm->aux), NULL);
    cd_step_send(llm->self, &call->addr, CD_KIND_RESULT, cd_pack_bytes(llm->pack));
    s_end(call);
}

//  --- token events ----------------------------------------------------------------

static void
s_emit_token(s_call_t *call, const char *token, size_t len)
{
    s_llm_t *llm = call->llm;
    int64_t index = call->n_tokens++;
    if (!call->tokens_live) {
        return;
    }
    json_t *data = json_pack("{s:s%, s:I}", "token", token, len, "index", (json_int_t)index);
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!text) {
        return; //  a token that is not UTF-8 on its own: left out of the live view
    }
    cd_pack_t *pack = llm->aux;
    cd_pack_reset(pack);
    cd_pack_map(pack, 6);
    cd_pack_cstr(pack, "type");
    cd_pack_cstr(pack, "task.token");
    cd_pack_cstr(pack, "task_id");
    if (call->addr.task_id) {
        cd_pack_int(pack, call->addr.task_id);
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "project_id");
    if (call->project_id) {
        cd_pack_int(pack, call->project_id);
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "agent");
    cd_pack_cstr(pack, llm->args->agent);
    cd_pack_cstr(pack, "data");
    cd_pack_cstr(pack, text);
    cd_pack_cstr(pack, "persist");
    cd_pack_bool(pack, false);
    free(text);
    cd_envelope_t env;
    cd_mailer_envelope_init(llm->tokens, &env, CD_KIND_CONTROL, llm->args->bus);
    env.task_id = call->addr.task_id;
    memcpy(env.trace_id, call->addr.trace_id, CD_ENV_UUID_SIZE);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("emit")};
    env.headers[1] = (cd_env_header_t){cd_str("ack"), cd_str("none")};
    env.n_headers = 2;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_mailer_send(llm->tokens, &env);
    if (rc == CD_EBUSY) {
        llm->tokens_dropped++;
    } else if (rc != 0) {
        call->tokens_live = false; //  the bus went away: one dead letter is enough
    }
}

//  --- SSE -------------------------------------------------------------------------

//  One event's JSON: a token and/or usage, or an error. False to abort.
static bool
s_sse_event(s_call_t *call, const char *text, size_t len)
{
    json_t *event = json_loadb(text, len, 0, NULL);
    if (!json_is_object(event)) {
        json_decref(event);
        call->malformed = "a stream event is not a JSON object";
        return false;
    }
    json_t *error = json_object_get(event, "error");
    if (error) {
        const char *message = json_string_value(json_object_get(error, "message"));
        free(call->stream_error);
        call->stream_error = strdup(message ? message : "an error event in the stream");
        json_decref(event);
        return false;
    }
    json_t *choice = json_array_get(json_object_get(event, "choices"), 0);
    json_t *content = json_object_get(json_object_get(choice, "delta"), "content");
    if (json_is_string(content) && json_string_length(content) > 0) {
        if (!s_buf_append(&call->message, json_string_value(content), json_string_length(content),
                          CD_LLM_MAX_BODY)) {
            json_decref(event);
            call->malformed = "the message is larger than 4 MiB";
            return false;
        }
        s_emit_token(call, json_string_value(content), json_string_length(content));
    }
    json_t *usage = json_object_get(event, "usage");
    if (json_is_object(usage)) {
        call->has_usage = true;
        call->prompt_tokens = json_integer_value(json_object_get(usage, "prompt_tokens"));
        call->completion_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
    }
    json_decref(event);
    return true;
}

//  The end of an event (a blank line): dispatches its data.
static bool
s_sse_dispatch(s_call_t *call)
{
    if (!call->has_data) {
        return true;
    }
    call->has_data = false;
    const char *text = call->data.ptr ? call->data.ptr : "";
    size_t len = call->data.len;
    call->data.len = 0;
    if (len == 6 && memcmp(text, "[DONE]", 6) == 0) {
        call->done = true;
        return true;
    }
    if (call->done) {
        return true; //  nothing counts after [DONE]
    }
    return s_sse_event(call, text, len);
}

//  One complete line (without its end).
static bool
s_sse_line(s_call_t *call, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    if (len == 0) {
        return s_sse_dispatch(call);
    }
    if (line[0] == ':') {
        return true; //  a comment (keep-alive)
    }
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    if (name_len != 4 || memcmp(line, "data", 4) != 0) {
        return true; //  event:, id:, retry: mean nothing here
    }
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if ((call->has_data && !s_buf_append(&call->data, "\n", 1, CD_LLM_MAX_BODY)) ||
        !s_buf_append(&call->data, value, value_len, CD_LLM_MAX_BODY)) {
        call->malformed = "a stream event is larger than 4 MiB";
        return false;
    }
    call->has_data = true;
    return true;
}

static bool
s_sse_feed(s_call_t *call, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t chunk = nl ? (size_t)(nl - data) : len;
        bool ok;
        if (nl && call->line.len == 0) {
            ok = s_sse_line(call, data, chunk); //  a whole line: no copy
        } else if (!s_buf_append(&call->line, data, chunk, CD_LLM_MAX_BODY)) {
            call->malformed = "a stream line is larger than 4 MiB";
            return false;
        } else {
            ok = true;
            if (nl) {
                ok = s_sse_line(call, call->line.ptr, call->line.len);
                call->line.len = 0;
            }
        }
        if (!ok) {
            return false;
        }
        data += nl ? chunk + 1 : chunk;
        len -= nl ? chunk + 1 : chunk;
    }
    return true;
}

//  --- curl callbacks (inside curl: never free a call here) ----------------------

static size_t
s_on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_call_t *call = (s_call_t *)arg;
    size_t len = size * nmemb;
    if (!call->body_started) {
        call->body_started = true;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
        call->sse = call->status / 100 == 2 && call->event_stream;
    }
    if (call->sse) {
        return s_sse_feed(call, ptr, len) ? len : 0;
    }
    if (!s_buf_append(&call->raw, ptr, len, CD_LLM_MAX_BODY)) {
        call->malformed = "the answer is larger than 4 MiB";
        return 0;
    }
    return len;
}

//  Parses a Retry-After value: delta-seconds or an HTTP date.
static int64_t
s_retry_after(const char *value)
{
    char *end = NULL;
    long long seconds = strtoll(value, &end, 10);
    if (end != value && seconds >= 0 && (*end == '\0' || *end == ' ')) {
        return seconds > 86400 ? 86400000 : (int64_t)seconds * 1000;
    }
    time_t when = curl_getdate(value, NULL);
    if (when < 0) {
        return -1;
    }
    int64_t delta = ((int64_t)when * 1000000 - cd_now_us()) / 1000;
    return delta < 0 ? 0 : delta;
}

static size_t
s_on_header(char *buffer, size_t size, size_t nitems, void *arg)
{
    s_call_t *call = (s_call_t *)arg;
    size_t len = size * nitems;
    char line[512];
    size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buffer, n);
    line[n] = '\0';
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n')) {
        line[--n] = '\0';
    }
    if (strncmp(line, "HTTP/", 5) == 0) {
        //  A new response (after a 100 Continue, say): forget the last one.
        call->event_stream = false;
        call->retry_after_ms = -1;
    } else if (strncasecmp(line, "content-type:", 13) == 0) {
        call->event_stream = strcasestr(line + 13, "text/event-stream") != NULL;
    } else if (strncasecmp(line, "retry-after:", 12) == 0) {
        const char *value = line + 12;
        while (*value == ' ' || *value == '\t') {
            value++;
        }
        call->retry_after_ms = s_retry_after(value);
    }
    return len;
}

static int s_on_curl_fd(cd_actor_t *self, void *socket, void *arg);

static int
s_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    s_llm_t *llm = (s_llm_t *)userp;
    s_sock_t *sock = (s_sock_t *)socketp;
    if (what == CURL_POLL_REMOVE) {
        cd_actor_unwatch_fd(llm->self, fd);
        if (sock) {
            zlistx_delete(llm->socks, sock->handle);
        }
        return 0;
    }
    if (!sock) {
        sock = (s_sock_t *)zmalloc(sizeof *sock);
        sock->llm = llm;
        sock->fd = fd;
        sock->handle = zlistx_add_end(llm->socks, sock);
        curl_multi_assign(llm->multi, fd, sock);
    }
    short events =
        (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    cd_actor_watch_fd_events(llm->self, fd, events, s_on_curl_fd, sock);
    return 0;
}

static int s_on_curl_timeout(cd_actor_t *self, void *arg);

static int
s_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    s_llm_t *llm = (s_llm_t *)userp;
    if (llm->curl_timer) {
        cd_actor_cancel(llm->self, llm->curl_timer);
        llm->curl_timer = 0;
    }
    if (timeout_ms >= 0) {
        llm->curl_timer = cd_actor_after(llm->self, (int)timeout_ms, s_on_curl_timeout, llm);
    }
    return 0;
}

//  --- finished transfers ----------------------------------------------------------

//  The token counts and cost of a finished call.
static void
s_usage(s_call_t *call, int64_t *prompt, int64_t *completion, double *cost)
{
    *prompt = call->has_usage ? call->prompt_tokens : call->est_prompt;
    *completion = call->has_usage ? call->completion_tokens
                  : call->sse     ? call->n_tokens
                                  : (int64_t)(call->message.len + 3) / 4;
    *prompt = *prompt < 0 ? 0 : *prompt;
    *completion = *completion < 0 ? 0 : *completion;
    *cost = (double)*prompt / 1000.0 * call->price_prompt +
            (double)*completion / 1000.0 * call->price_completion;
}

static int
s_on_ledger_timeout(cd_actor_t *self, void *arg)
{
    s_call_t *call = (s_call_t *)arg;
    call->timer = 0;
    cd_log_warn(cd_actor_name(self), "usage row not acknowledged in time", "{s:I}", "task_id",
                (json_int_t)call->addr.task_id);
    s_succeed(call);
    return 0;
}

//  Records the call through persist; the answer waits for the ack.
static void
s_ledger(s_call_t *call)
{
    s_llm_t *llm = call->llm;
    int64_t prompt, completion;
    double cost;
    s_usage(call, &prompt, &completion, &cost);
    json_t *row = json_pack(
        "{s:o, s:o, s:s, s:I, s:s, s:I, s:I, s:f, s:I}", "task_id",
        call->addr.task_id ? json_integer(call->addr.task_id) : json_null(), "project_id",
        call->project_id ? json_integer(call->project_id) : json_null(), "agent", llm->args->agent,
        "connection_id", (json_int_t)call->connection_id, "model", llm->args->model,
        "prompt_tokens", (json_int_t)prompt, "completion_tokens", (json_int_t)completion,
        "cost_usd", cost, "latency_ms", (json_int_t)((zclock_usecs() - call->started_us) / 1000));
    char *text = row ? json_dumps(row, JSON_COMPACT) : NULL;
    json_decref(row);
    if (!text) {
        s_succeed(call);
        return;
    }
    cd_pack_t *pack = llm->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "stmt");
    cd_pack_cstr(pack, "usage.record");
    cd_pack_cstr(pack, "params");
    cd_pack_array(pack, 1);
    cd_pack_cstr(pack, text);
    free(text);
    cd_envelope_t env;
    cd_actor_envelope_init(llm->self, &env, CD_KIND_TASK, llm->args->persist);
    env.task_id = call->addr.task_id;
    memcpy(env.trace_id, call->addr.trace_id, CD_ENV_UUID_SIZE);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    memcpy(call->ledger_id, env.id, CD_ENV_UUID_SIZE);
    int rc = cd_actor_send(llm->self, &env);
    if (rc != 0) {
        cd_log_warn(cd_actor_name(llm->self), "usage row not written", "{s:I, s:s}", "task_id",
                    (json_int_t)call->addr.task_id, "error", cd_errname(rc));
        s_succeed(call);
        return;
    }
    call->phase = S_LEDGER;
    call->timer = cd_actor_after(llm->self, CD_LLM_PERSIST_WAIT_MS, s_on_ledger_timeout, call);
}

//  The provider's error text from a JSON error body, else the body's start.
static void
s_provider_message(s_call_t *call, char *out, size_t size)
{
    json_t *body = call->raw.len ? json_loadb(call->raw.ptr, call->raw.len, 0, NULL) : NULL;
    json_t *error = json_object_get(body, "error");
    const char *message = json_string_value(json_object_get(error, "message"));
    if (!message) {
        message = json_string_value(error);
    }
    if (message) {
        snprintf(out, size, "HTTP %ld: %.300s", call->status, message);
    } else {
        snprintf(out, size, "HTTP %ld: %.200s", call->status, call->raw.ptr ? call->raw.ptr : "");
    }
    json_decref(body);
}

//  A non-streamed 2xx answer: the message and usage from its JSON.
static bool
s_parse_completion(s_call_t *call)
{
    json_t *body = json_loadb(call->raw.ptr ? call->raw.ptr : "", call->raw.len, 0, NULL);
    json_t *choice = json_array_get(json_object_get(body, "choices"), 0);
    json_t *message = json_object_get(choice, "message");
    json_t *content = json_object_get(message, "content");
    bool ok = json_is_object(message) && (json_is_string(content) || json_is_null(content));
    if (ok && json_is_string(content)) {
        s_buf_append(&call->message, json_string_value(content), json_string_length(content),
                     CD_LLM_MAX_BODY);
    }
    json_t *usage = json_object_get(body, "usage");
    if (ok && json_is_object(usage)) {
        call->has_usage = true;
        call->prompt_tokens = json_integer_value(json_object_get(usage, "prompt_tokens"));
        call->completion_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
    }
    json_decref(body);
    return ok;
}

static void
s_transfer_done(s_call_t *call, CURLcode code)
{
    char message[512];
    if (code == CURLE_OK && call->sse) {
        //  A last line or event without its terminator.
        if (call->line.len > 0) {
            size_t len = call->line.len;
            call->line.len = 0;
            if (!s_sse_line(call, call->line.ptr, len)) {
                code = CURLE_WRITE_ERROR;
            }
        }
        if (code == CURLE_OK && !s_sse_dispatch(call)) {
            code = CURLE_WRITE_ERROR;
        }
        if (code == CURLE_OK && !call->done) {
            call->malformed = "the stream ended without [DONE]";
            code = CURLE_WRITE_ERROR;
        }
    }
    if (!call->body_started) {
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
    }
    if (call->stream_error) {
        snprintf(message, sizeof message, "the provider reported an error mid-stream: %.300s",
                 call->stream_error);
        s_fail(call, "provider_error", message, true, -1);
        return;
    }
    if (call->malformed) {
        s_fail(call, "malformed_response", call->malformed, true, -1);
        return;
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
        snprintf(message, sizeof message, "no complete answer within the time allowed: %.200s",
                 call->errbuf[0] ? call->errbuf : curl_easy_strerror(code));
        s_fail(call, "timeout", message, true, -1);
        return;
    }
    if (code != CURLE_OK) {
        snprintf(message, sizeof message, "%s: %.200s", curl_easy_strerror(code),
                 call->errbuf[0] ? call->errbuf : "");
        s_fail(call, "provider_unreachable", message, true, -1);
        return;
    }
    if (call->status == 429) {
        s_provider_message(call, message, sizeof message);
        s_fail(call, "rate_limited", message, true,
               call->retry_after_ms >= 0 ? call->retry_after_ms : CD_LLM_RETRY_AFTER_MS);
        return;
    }
    if (call->status / 100 != 2) {
        s_provider_message(call, message, sizeof message);
        bool retryable = call->status / 100 == 5 || call->status == 408;
        s_fail(call, "provider_error", message, retryable, -1);
        return;
    }
    if (!call->sse && !s_parse_completion(call)) {
        s_fail(call, "malformed_response", "the answer is not a chat completion", true, -1);
        return;
    }
    //  The transfer is over: free the handle now, not after the ledger,
    //  and with it the key.
    curl_multi_remove_handle(call->llm->multi, call->easy);
    curl_easy_cleanup(call->easy);
    call->easy = NULL;
    s_forget_key(call);
    s_ledger(call);
}

static void
s_check_done(s_llm_t *llm)
{
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(llm->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURLcode code = msg->data.result;
        s_call_t *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call) {
            s_transfer_done(call, code);
        }
    }
}

static int
s_on_curl_fd(cd_actor_t *self, void *socket, void *arg)
{
    s_sock_t *sock = (s_sock_t *)arg;
    s_llm_t *llm = sock->llm;
    short revents = cd_actor_fd_revents(self);
    int mask = ((revents & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) |
               ((revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((revents & POLLERR) ? CURL_CSELECT_ERR : 0);
    int running = 0;
    //  sock may be freed inside (CURL_POLL_REMOVE): not used after this.
    curl_multi_socket_action(llm->multi, sock->fd, mask, &running);
    s_check_done(llm);
    return 0;
}

static int
s_on_curl_timeout(cd_actor_t *self, void *arg)
{
    s_llm_t *llm = (s_llm_t *)arg;
    llm->curl_timer = 0;
    int running = 0;
    curl_multi_socket_action(llm->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    s_check_done(llm);
    return 0;
}

//  --- starting a call -------------------------------------------------------------

static void
s_send(s_call_t *call)
{
    s_llm_t *llm = call->llm;
    const cd_llm_args_t *args = llm->args;
    int64_t timeout_ms = args->timeout_ms;
    if (call->addr.deadline > 0) {
        int64_t left = (call->addr.deadline - cd_now_us()) / 1000;
        if (left <= 0) {
            s_fail(call, "timeout", "the step's deadline passed before the call", true, -1);
            return;
        }
        timeout_ms = left < timeout_ms ? left : timeout_ms;
    }
    json_t *body = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model", args->model, "messages",
                             "role", "user", "content", call->prompt, "max_tokens",
                             args->max_tokens, "stream", args->stream);
    if (!body) {
        s_fail(call, "bad_request", "the prompt is not UTF-8 text", false, -1);
        return;
    }
    if (args->temperature >= 0) {
        json_object_set_new(body, "temperature", json_real(args->temperature));
    }
    if (args->stream) {
        json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    assert(text);
    call->headers = curl_slist_append(call->headers, "Content-Type: application/json");
    call->headers = curl_slist_append(call->headers, args->stream ? "Accept: text/event-stream"
                                                                  : "Accept: application/json");
    call->headers = curl_slist_append(call->headers, "Expect:");
    if (call->api_key && *call->api_key) {
        //  Built in locked memory; the list's copy is wiped by s_forget_key.
        size_t size = strlen(call->api_key) + 32;
        char *auth = (char *)sodium_malloc(size);
        assert(auth);
        snprintf(auth, size, "Authorization: Bearer %s", call->api_key);
        call->headers = curl_slist_append(call->headers, auth);
        sodium_free(auth);
    }
    CURL *easy = curl_easy_init();
    assert(easy);
    call->easy = easy;
    call->retry_after_ms = -1;
    curl_easy_setopt(easy, CURLOPT_URL, call->url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, text);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)call);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout_ms < 10000 ? timeout_ms : 10000));
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    free(text);
    call->phase = S_TRANSFER;
    call->started_us = zclock_usecs();
    call->tokens_live = cd_registry_status_deliverable(
        cd_registry_status(cd_actor_runtime(llm->self)->registry, args->bus));
    CURLMcode mrc = curl_multi_add_handle(llm->multi, easy);
    if (mrc != CURLM_OK) {
        s_fail(call, "provider_unreachable", curl_multi_strerror(mrc), true, -1);
    }
}

static int
s_on_key_timeout(cd_actor_t *self, void *arg)
{
    s_call_t *call = (s_call_t *)arg;
    call->timer = 0;
    s_fail(call, "vault_unavailable", "the vault did not answer in time", true, -1);
    return 0;
}

//  Asks the vault to open the connection's API key, right before the
//  call; the answer (s_on_key) sends the request. Without a key, sends it
//  now.
static void
s_unseal(s_call_t *call)
{
    s_llm_t *llm = call->llm;
    if (!call->sealed_key) {
        s_send(call);
        return;
    }
    cd_pack_t *pack = llm->aux;
    cd_pack_reset(pack);
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "sealed");
    cd_pack_cstr(pack, call->sealed_key);
    cd_envelope_t env;
    cd_actor_envelope_init(llm->self, &env, CD_KIND_TASK, llm->args->vault);
    env.task_id = call->addr.task_id;
    memcpy(env.trace_id, call->addr.trace_id, CD_ENV_UUID_SIZE);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("open")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    memcpy(call->key_id, env.id, CD_ENV_UUID_SIZE);
    int rc = cd_actor_send(llm->self, &env);
    if (rc == CD_EBUSY) {
        s_fail(call, "vault_unavailable", "the vault's queue is full", true, -1);
        return;
    }
    if (rc != 0) {
        s_fail(call, "vault_locked", "there is no vault on this node to open the API key", false,
               -1);
        return;
    }
    call->phase = S_KEY_WAIT;
    call->timer = cd_actor_after(llm->self, CD_LLM_VAULT_WAIT_MS, s_on_key_timeout, call);
}

//  The vault's answer: the key in clear (kept in locked memory until the
//  transfer ends), or why not.
static void
s_on_key(s_call_t *call, const cd_envelope_t *env)
{
    s_llm_t *llm = call->llm;
    if (call->timer) {
        cd_actor_cancel(llm->self, call->timer);
        call->timer = 0;
    }
    cd_bin_t field;
    cd_str_t value = {NULL, 0};
    if (env->kind == CD_KIND_ERROR) {
        cd_str_t code = {NULL, 0};
        if (cd_msgpack_map_find(env->payload, "code", &field) == 0) {
            cd_msgpack_read_str(field, &code);
        }
        if (cd_str_eq(code, "vault_locked")) {
            s_fail(call, "vault_locked",
                   "the vault is locked: unlock it (POST /api/v1/system/unlock), then retry", false,
                   -1);
        } else if (cd_str_eq(code, "busy")) {
            s_fail(call, "vault_unavailable", "the vault is busy", true, -1);
        } else {
            s_fail(call, "connection_invalid",
                   "the connection's api_key does not open with this vault", false, -1);
        }
        return;
    }
    if (cd_msgpack_map_find(env->payload, "value", &field) != 0 ||
        cd_msgpack_read_str(field, &value) != 0) {
        s_fail(call, "connection_invalid", "the vault's answer holds no key", false, -1);
        return;
    }
    call->api_key = (char *)sodium_malloc((size_t)value.len + 1);
    assert(call->api_key);
    memcpy(call->api_key, value.ptr ? value.ptr : "", value.len);
    call->api_key[value.len] = '\0';
    s_send(call);
}

static int
s_on_rate_wait(cd_actor_t *self, void *arg)
{
    s_call_t *call = (s_call_t *)arg;
    call->timer = 0;
    s_unseal(call);
    return 0;
}

//  The agent's database connection, (re)connected; NULL while unreachable.
static cd_db_t *
s_db(s_llm_t *llm)
{
    if (llm->db && !cd_db_connected(llm->db)) {
        cd_db_close(&llm->db);
    }
    if (!llm->db && zclock_usecs() >= llm->db_retry_us) {
        char *errmsg = NULL;
        if (cd_db_connect(llm->args->conninfo, &llm->db, &errmsg) == 0) {
            char sql[64];
            snprintf(sql, sizeof sql, "SET statement_timeout = %d", CD_LLM_STATEMENT_TIMEOUT_MS);
            if (cd_db_exec(llm->db, sql, NULL) != 0) {
                cd_db_close(&llm->db);
            }
        } else {
            cd_log_warn(cd_actor_name(llm->self), "database unreachable", "{s:s}", "error",
                        errmsg ? errmsg : "?");
        }
        free(errmsg);
        if (!llm->db) {
            llm->db_retry_us = zclock_usecs() + (int64_t)CD_LLM_DB_RETRY_MS * 1000;
        }
    }
    return llm->db;
}

static double
s_number(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

//  True if config holds an api_key that is not the mask of a sealed one.
static bool
s_clear_key(const json_t *config)
{
    const json_t *key = json_object_get(config, "api_key");
    return key && !json_is_null(key) &&
           !(json_is_string(key) && streq(json_string_value(key), CD_VAULT_MASK));
}

//  Reads the context (connection, template, prices) into call. Returns
//  true, or false after answering.
static bool
s_context(s_call_t *call, char **template_body)
{
    s_llm_t *llm = call->llm;
    const cd_llm_args_t *args = llm->args;
    *template_body = NULL;
    cd_db_t *db = s_db(llm);
    if (!db) {
        s_fail(call, "db_unavailable", "the database is unreachable", true, -1);
        return false;
    }
    char *text = NULL;
    int rc = cd_q_usage_llm_context(db, args->agent, args->connection,
                                    args->template_id > 0 ? args->template_id : CD_Q_NULL, &text);
    if (rc != 0) {
        if (rc == CD_ECONN) {
            cd_db_close(&llm->db);
        }
        s_fail(call, "db_unavailable", "the context read failed", true, -1);
        return false;
    }
    json_t *ctx = json_loads(text, 0, NULL);
    free(text);
    json_t *conn = json_object_get(ctx, "connection");
    json_t *config = json_object_get(conn, "config");
    const char *base_url = json_string_value(json_object_get(config, "base_url"));
    char message[256];
    bool ok = false;
    if (!json_is_object(conn)) {
        snprintf(message, sizeof message, "no connection named '%.100s'", args->connection);
        s_fail(call, "connection_not_found", message, false, -1);
    } else if (!base_url ||
               (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0)) {
        snprintf(message, sizeof message,
                 "connection '%.100s' has no base_url (http:// or https://) in its config",
                 args->connection);
        s_fail(call, "connection_invalid", message, false, -1);
    } else if (s_clear_key(config)) {
        //  Written to the table by hand: the API seals every api_key.
        snprintf(message, sizeof message,
                 "connection '%.100s' has its api_key in clear in its config; set it through "
                 "the API, which seals it",
                 args->connection);
        s_fail(call, "connection_invalid", message, false, -1);
    } else if (!json_is_null(json_object_get(ctx, "template_id")) &&
               !json_is_string(json_object_get(ctx, "template"))) {
        snprintf(message, sizeof message, "template %lld does not exist",
                 (long long)json_integer_value(json_object_get(ctx, "template_id")));
        s_fail(call, "template_not_found", message, false, -1);
    } else {
        size_t len = strlen(base_url);
        while (len > 0 && base_url[len - 1] == '/') {
            len--;
        }
        if (asprintf(&call->url, "%.*s/chat/completions", (int)len, base_url) < 0) {
            call->url = NULL;
        }
        const char *sealed = json_string_value(json_object_get(conn, "sealed_api_key"));
        call->sealed_key = sealed ? strdup(sealed) : NULL;
        call->connection_id = json_integer_value(json_object_get(conn, "id"));
        call->rate = s_number(config, "llm_rate_per_s");
        json_t *price = json_object_get(json_object_get(ctx, "prices"), args->model);
        call->priced = json_is_object(price);
        call->price_prompt = s_number(price, "prompt_per_1k");
        call->price_completion = s_number(price, "completion_per_1k");
        const char *body = json_string_value(json_object_get(ctx, "template"));
        *template_body = body ? strdup(body) : NULL;
        ok = call->url != NULL;
    }
    json_decref(ctx);
    return ok;
}

//  Renders the prompt. Returns true, or false after answering.
static bool
s_render(s_call_t *call, const char *template_body)
{
    if (!template_body) {
        call->prompt = json_is_string(call->input)
                           ? strdup(json_string_value(call->input))
                           : json_dumps(call->input, JSON_COMPACT | JSON_ENCODE_ANY);
        assert(call->prompt);
        return true;
    }
    json_t *vars = json_is_object(call->original) ? json_deep_copy(call->original) : json_object();
    if (json_is_object(call->input)) {
        json_object_update(vars, call->input);
    }
    if (!json_object_get(vars, "input")) {
        json_object_set(vars, "input", call->input);
    }
    char *missing = NULL;
    call->prompt = cd_template_render(template_body, vars, &missing);
    json_decref(vars);
    if (!call->prompt) {
        char message[200];
        snprintf(message, sizeof message, "the template needs variable '%.100s'", missing);
        free(missing);
        s_fail(call, "missing_variable", message, false, -1);
        return false;
    }
    return true;
}

//  Checks the budget. Returns true, or false after answering.
static bool
s_budget(s_call_t *call)
{
    const cd_llm_args_t *args = call->llm->args;
    call->est_prompt = (int64_t)(strlen(call->prompt) + 3) / 4 + 8;
    if (!call->has_budget) {
        return true;
    }
    const cd_step_budget_t *b = &call->budget;
    int64_t bound = call->est_prompt + args->max_tokens;
    double cost = (double)call->est_prompt / 1000.0 * call->price_prompt +
                  (double)args->max_tokens / 1000.0 * call->price_completion;
    char message[256];
    if (b->max_tokens >= 0 && b->used_tokens + bound > b->max_tokens) {
        snprintf(message, sizeof message,
                 "this call could use %lld tokens (about %lld prompt + %d completion); the task "
                 "has used %lld of its %lld",
                 (long long)bound, (long long)call->est_prompt, args->max_tokens,
                 (long long)b->used_tokens, (long long)b->max_tokens);
        s_fail(call, "budget_exceeded", message, false, -1);
        return false;
    }
    if (b->max_cost_usd >= 0 && b->used_cost_usd + cost > b->max_cost_usd) {
        snprintf(message, sizeof message,
                 "this call could cost $%.6f; the task has used $%.6f of its $%.6f", cost,
                 b->used_cost_usd, b->max_cost_usd);
        s_fail(call, "budget_exceeded", message, false, -1);
        return false;
    }
    return true;
}

//  A call got its slot: context, prompt, budget, rate limit, request.
static void
s_begin(s_call_t *call)
{
    s_llm_t *llm = call->llm;
    if (!llm->args->conninfo) {
        s_fail(call, "not_configured",
               "llm agents need the node's database (cd_agents_env_t.conninfo)", false, -1);
        return;
    }
    char *template_body = NULL;
    if (!s_context(call, &template_body)) {
        return;
    }
    bool ok = s_render(call, template_body);
    free(template_body);
    if (!ok || !s_budget(call)) {
        return;
    }
    int64_t wait_ms = 0;
    if (llm->args->rates && call->rate > 0) {
        wait_ms = cd_llm_rates_reserve(llm->args->rates, llm->args->connection, call->rate,
                                       zclock_usecs());
    }
    if (wait_ms <= 0) {
        s_unseal(call);
        return;
    }
    if (call->addr.deadline > 0 && cd_now_us() + wait_ms * 1000 >= call->addr.deadline) {
        s_fail(call, "timeout", "the connection's rate limit would pass the step's deadline", true,
               -1);
        return;
    }
    call->phase = S_RATE_WAIT;
    call->timer = cd_actor_after(llm->self, (int)wait_ms, s_on_rate_wait, call);
}

//  Starts queued calls while slots are free. A call that fails at once
//  ends inside s_begin and comes back here: the flag turns that into the
//  next turn of this loop rather than a recursion as deep as the queue.
static void
s_admit_queued(s_llm_t *llm)
{
    if (llm->admitting) {
        return;
    }
    llm->admitting = true;
    while (zlistx_size(llm->queue) > 0 &&
           zlistx_size(llm->active) < (size_t)llm->args->concurrency) {
        s_call_t *call = (s_call_t *)zlistx_first(llm->queue);
        zlistx_detach(llm->queue, call->handle);
        call->phase = S_RATE_WAIT; //  "active", until s_begin says more
        call->handle = zlistx_add_end(llm->active, call);
        s_begin(call);
    }
    llm->admitting = false;
}

//  --- the actor -------------------------------------------------------------------

static void
s_on_step(s_llm_t *llm, const cd_envelope_t *env)
{
    cd_step_view_t view;
    const char *why = NULL;
    int rc = cd_step_view(env, &view, &why);
    s_call_t *call = (s_call_t *)zmalloc(sizeof *call);
    call->llm = llm;
    call->phase = S_QUEUED;
    cd_step_addr(env, &view, &call->addr);
    call->handle = zlistx_add_end(llm->queue, call);
    if (rc == 0) {
        call->project_id = view.project_id;
        if (view.input_raw) {
            call->input = json_stringn((const char *)view.input.ptr, view.input.len);
            rc = call->input ? 0 : CD_EPROTO;
            why = "the input is not UTF-8 text";
        } else {
            rc = cd_mpjson_decode(view.input, &call->input, &why);
        }
    }
    if (rc == 0 && view.original.ptr && cd_mpjson_decode(view.original, &call->original, &why)) {
        rc = CD_EPROTO;
    }
    if (rc == 0) {
        rc = cd_step_budget(&view, &call->budget);
        call->has_budget = rc == 0;
        why = "\"budget\" is malformed";
        rc = rc == CD_ENOTFOUND ? 0 : rc;
    }
    if (rc != 0) {
        s_fail(call, "bad_request", why ? why : "malformed step", false, -1);
        return;
    }
    s_admit_queued(llm);
}

static void
s_on_cancel(s_llm_t *llm, const cd_envelope_t *env)
{
    zlistx_t *lists[] = {llm->queue, llm->active};
    for (int i = 0; i < 2; i++) {
        s_call_t *call = (s_call_t *)zlistx_first(lists[i]);
        while (call) {
            s_call_t *next = (s_call_t *)zlistx_next(lists[i]);
            if (cd_step_cancel_matches(env, &call->addr)) {
                cd_log_debug(cd_actor_name(llm->self), "step cancelled", "{s:I}", "task_id",
                             (json_int_t)call->addr.task_id);
                zlistx_delete(lists[i], call->handle);
            }
            call = next;
        }
    }
    s_admit_queued(llm);
}

//  An answer: the vault's to a key request, or persist's to a usage write.
static void
s_on_answer(s_llm_t *llm, const cd_envelope_t *env)
{
    for (s_call_t *call = (s_call_t *)zlistx_first(llm->active); call;
         call = (s_call_t *)zlistx_next(llm->active)) {
        if (call->phase == S_KEY_WAIT &&
            memcmp(call->key_id, env->parent_id, CD_ENV_UUID_SIZE) == 0) {
            s_on_key(call, env);
            return;
        }
        if (call->phase == S_LEDGER &&
            memcmp(call->ledger_id, env->parent_id, CD_ENV_UUID_SIZE) == 0) {
            if (env->kind == CD_KIND_ERROR) {
                cd_bin_t value;
                cd_str_t code = {NULL, 0};
                if (cd_msgpack_map_find(env->payload, "code", &value) == 0) {
                    cd_msgpack_read_str(value, &code);
                }
                cd_log_warn(cd_actor_name(llm->self), "usage row not written", "{s:I, s:s%}",
                            "task_id", (json_int_t)call->addr.task_id, "error",
                            code.ptr ? code.ptr : "?", (size_t)code.len);
            }
            s_succeed(call);
            return;
        }
    }
}

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_llm_t *llm = (s_llm_t *)state;
    if (cd_step_is_cancel(env)) {
        s_on_cancel(llm, env);
    } else if (cd_step_is_step(env)) {
        s_on_step(llm, env);
    } else if (env->kind == CD_KIND_RESULT || env->kind == CD_KIND_ERROR) {
        s_on_answer(llm, env);
    }
    return 0;
}

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;

static void
s_curl_global(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void
s_sock_destroy(void **item)
{
    free(*item);
    *item = NULL;
}

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    pthread_once(&s_curl_once, s_curl_global);
    s_llm_t *llm = (s_llm_t *)zmalloc(sizeof *llm);
    llm->self = self;
    llm->args = (const cd_llm_args_t *)args;
    llm->multi = curl_multi_init();
    if (!llm->multi) {
        free(llm);
        *why = "curl_multi_init failed";
        return CD_ENOMEM;
    }
    curl_multi_setopt(llm->multi, CURLMOPT_SOCKETFUNCTION, s_curl_socket);
    curl_multi_setopt(llm->multi, CURLMOPT_SOCKETDATA, llm);
    curl_multi_setopt(llm->multi, CURLMOPT_TIMERFUNCTION, s_curl_timer);
    curl_multi_setopt(llm->multi, CURLMOPT_TIMERDATA, llm);
    llm->active = zlistx_new();
    zlistx_set_destructor(llm->active, s_call_destroy);
    llm->queue = zlistx_new();
    zlistx_set_destructor(llm->queue, s_call_destroy);
    llm->socks = zlistx_new();
    zlistx_set_destructor(llm->socks, s_sock_destroy);
    llm->pack = cd_pack_new();
    llm->aux = cd_pack_new();
    //  Token events must never hold the agent up: their own mailer, on a
    //  copy of the runtime without a send timeout.
    llm->token_rt = *cd_actor_runtime(self);
    llm->token_rt.send_timeout_ms = 0;
    llm->tokens = cd_mailer_new(&llm->token_rt, cd_actor_name(self));
    *state_p = llm;
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_llm_t *llm = (s_llm_t *)*state_p;
    if (!llm) {
        return;
    }
    if (llm->tokens_dropped) {
        cd_log_info(cd_actor_name(self), "token events dropped (bus full)", "{s:I}", "count",
                    (json_int_t)llm->tokens_dropped);
    }
    //  Calls first (their handles leave the multi handle), then curl, then
    //  the sockets curl did not say goodbye to.
    zlistx_destroy(&llm->queue);
    zlistx_destroy(&llm->active);
    curl_multi_cleanup(llm->multi);
    for (s_sock_t *sock = (s_sock_t *)zlistx_first(llm->socks); sock;
         sock = (s_sock_t *)zlistx_next(llm->socks)) {
        cd_actor_unwatch_fd(self, sock->fd);
    }
    zlistx_destroy(&llm->socks);
    if (llm->curl_timer) {
        cd_actor_cancel(self, llm->curl_timer);
    }
    cd_db_close(&llm->db);
    cd_mailer_destroy(&llm->tokens);
    cd_pack_destroy(&llm->pack);
    cd_pack_destroy(&llm->aux);
    free(llm);
    *state_p = NULL;
}

const cd_actor_ops_t cd_llm_ops = {
    .kind = "llm",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
