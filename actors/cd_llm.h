/*  cd_llm: the llm agent: one chat completion per step, against an
    OpenAI-compatible provider, streamed, metered and budgeted.

    Config (API.md "Agents"):
        {"connection": "<connection name>",  required (1-100 bytes)
         "model": "...",                     required (1-200 bytes)
         "temperature": 0.2,                 0..2, sent only when given
         "max_tokens": 1024,                 completion bound, 1..1000000
         "stream": true,                     stream tokens (default true)
         "template_id": 12,                  prompt template; default: the
                                             agent's own (agents.template_id)
         "timeout_ms": 120000}               per call, 1..600000

    A step (cd_agent_proto.h; a message without the `step` header is
    handled the same way, its payload being the input):
    1. Context: one read on the agent's own database connection
       (cd_q_usage_llm_context): the connection row by name (its config
       gives base_url and optionally llm_rate_per_s; its api_key is
       stored sealed by the vault, the config holding "********" in its
       place: a clear api_key in the config is refused), the template's body,
       and the price table (config key llm_prices = {"<model>":
       {"prompt_per_1k": x, "completion_per_1k": y}}). The read runs at the
       step's start on the actor's thread: it is one indexed query over a
       local socket (well under a millisecond), bounded by a 2 s
       statement_timeout; the connection is opened lazily, and after a
       failure not retried for CD_LLM_DB_RETRY_MS (steps meanwhile answer
       db_unavailable). Give the conninfo a connect_timeout if the server
       may be unreachable rather than refusing.
    2. Prompt: the template rendered (cd_template) with the variables of
       the task's input object (payload "original"), overlaid with the
       stage input's keys when it is an object, plus "input" (the stage
       input: a string as it is, anything else as JSON) unless a key of
       that name exists; without a template, the stage input as text.
    3. Budget (payload "budget"): with the prompt estimated at a token per
       4 bytes (+8) and max_tokens as the completion bound, a call that
       could pass max_tokens or max_cost_usd (used + estimate > max) is
       not made: error budget_exceeded.
    4. Rate limit: a token bucket per connection name (llm_rate_per_s in
       the connection's config, burst max(1, rate); absent: unlimited)
       shared by the node's llm agents (cd_llm_rates_t). A step that finds
       it empty takes a reservation and waits on a timer (not an attempt;
       no answer meanwhile), bounded by its deadline.
    5. Key: right before the call (after the rate limit's wait) the
       sealed api_key goes to the vault actor (op open, cd_vault_actor.h)
       and the step waits for its answer (at most CD_LLM_VAULT_WAIT_MS),
       without holding the agent up. The clear key is kept in locked
       memory (sodium_malloc) and wiped, with the request headers that
       carry it, as soon as the transfer ends (or the step does). With
       the vault locked the step fails with vault_locked.
    6. Call: POST {base_url}/chat/completions with {"model", "messages":
       [{"role": "user", "content": prompt}], "max_tokens",
       "temperature"?, "stream", "stream_options": {"include_usage":
       true}} and "Authorization: Bearer <api_key>" (when one is set),
       through libcurl's multi interface driven from the actor's loop
       (curl's sockets watched with cd_actor_watch_fd_events, its timer a
       cd_actor_after timer; never curl_easy_perform), HTTP/2 when a TLS
       server offers it (ALPN), HTTP/1.1 otherwise. Timeout: timeout_ms or
       the step's deadline, whichever is first.
    7. Streaming (a text/event-stream answer): `data:` lines are events,
       `[DONE]` ends them; each choices[0].delta.content is a token sent
       to the bus at once (below) and appended to the message; the chunk
       with `usage` gives the token counts. A JSON answer (stream false, or
       a provider that does not stream) gives choices[0].message.content
       and usage.
    8. Ledger: the call is recorded through persist (statement
       usage.record, cd_q_usage_writes: task_id, project_id, agent,
       connection_id, model, prompt/completion tokens from the provider's
       usage, else estimates, cost from the price table, latency_ms), and
       the step is answered once persist has acknowledged it (so the
       task's usage, and the next step's budget, include this call), or
       after CD_LLM_PERSIST_WAIT_MS without an answer (logged).
    Answers, to reply_to with parent_id = the step's id:
      result {"output": "<the assistant's message>"}
      error  {"code", "message", "retryable", "retry_after_ms"?}:
        provider_unreachable (connect, DNS, TLS, connection lost) retryable
        timeout              retryable
        rate_limited         retryable, retry_after_ms from Retry-After
                             (seconds or an HTTP date; 1000 if absent): the
                             orchestrator parks the task, no attempt counted
        provider_error       HTTP 5xx and 408 retryable; other statuses
                             not; the message names the status and the
                             provider's error.message
        malformed_response   not JSON, bad SSE, a stream without [DONE],
                             an answer over CD_LLM_MAX_BODY: retryable
        budget_exceeded      not retryable, no call made
        vault_locked         not retryable: the vault holds no key (locked
                             since the node started, or locked by an admin),
                             or this node runs none; no call made
        vault_unavailable    retryable: the vault did not answer in time
        missing_variable, template_not_found, connection_not_found,
        connection_invalid, not_configured, bad_request: not retryable
        db_unavailable       retryable (the context read failed)
    A `control` op=cancel (parent_id = the step's id, or its task_id)
    drops the step wherever it is: queued, waiting for the rate limit or
    for the vault, or in transfer (curl_multi_remove_handle closes it);
    nothing is answered.
    A call already made is still recorded.

    Token events, to `bus` (cd_bus.h's emit): kind `control`, headers
    op=emit and ack=none (no answer), payload
        {"type": "task.token", "task_id": int|nil, "project_id": int|nil,
         "agent": "<name>", "data": "{\"token\": str, \"index\": int}",
         "persist": false}
    (data is the JSON text of the event's data object, as the bus takes
    it). They go out on a mailer that never waits: when the bus is full a
    token event is dropped (and counted), never the call held up; when
    the bus is absent none are sent. The message is recorded once, in the
    step's result.

    Concurrency: up to the agent's concurrency calls at once (from the
    factory; at most CD_LLM_MAX_CONCURRENCY), later steps wait in a FIFO
    queue.

    Threads: each agent runs on its own actor thread with its own curl
    multi handle and database connection. The only shared state is the
    rate table (cd_llm_rates_t, a mutex-protected hash owned by the node).
    curl_global_init runs once (pthread_once); curl >= 7.84 makes it
    thread-safe anyway. */
#ifndef CD_ACTORS_LLM_H
#define CD_ACTORS_LLM_H

#include "cd_actor.h"

#include <jansson.h>
#include <stdint.h>

#define CD_LLM_MAX_TOKENS 1024           //  default completion bound
#define CD_LLM_TIMEOUT_MS 120000         //  default per call
#define CD_LLM_MAX_TIMEOUT_MS 600000     //  largest a config may set
#define CD_LLM_MAX_BODY (4u << 20)       //  largest answer body (or one SSE event)
#define CD_LLM_MAX_CONCURRENCY 256       //  calls at once
#define CD_LLM_DB_RETRY_MS 1000          //  after a failed connect, before the next
#define CD_LLM_PERSIST_WAIT_MS 15000     //  longest wait for the ledger's ack
#define CD_LLM_STATEMENT_TIMEOUT_MS 2000 //  bound on the context read
#define CD_LLM_RETRY_AFTER_MS 1000       //  a 429 without Retry-After
#define CD_LLM_VAULT_WAIT_MS 10000       //  longest wait for the vault to open the key

//  The node's per-connection token buckets, shared by its llm agents.
typedef struct cd_llm_rates cd_llm_rates_t;

//  Caller owns the result (the node: it must outlive the agents).
cd_llm_rates_t *cd_llm_rates_new(void);

//  Safe on NULL and twice; nulls *self_p.
void cd_llm_rates_destroy(cd_llm_rates_t **self_p);

//  Reserves one request in key's bucket (rate_per_s > 0; burst max(1,
//  rate); the bucket follows a changed rate) at now_us (monotonic µs).
//  Returns how many ms to wait before sending: 0 to go now. Reservations
//  queue in order. Any thread.
int64_t cd_llm_rates_reserve(cd_llm_rates_t *self, const char *key, double rate_per_s,
                             int64_t now_us);

//  An agent's arguments. Strings owned, except those marked borrowed.
typedef struct {
    char *agent;           //  the agent's name (no prefix): ledger, events, template
    char *connection;      //  connection name
    char *model;           //  model name
    double temperature;    //  < 0: not sent
    int max_tokens;        //  completion bound
    bool stream;           //  stream tokens
    int64_t template_id;   //  0: the agent's own template (if any)
    int timeout_ms;        //  per call
    int concurrency;       //  calls at once
    const char *conninfo;  //  borrowed: the node's database, NULL: not configured
    const char *persist;   //  borrowed: persist's name
    const char *bus;       //  borrowed: the bus's name
    const char *vault;     //  borrowed: the vault actor's name
    cd_llm_rates_t *rates; //  borrowed: shared buckets, NULL: no rate limits
} cd_llm_args_t;

extern const cd_actor_ops_t cd_llm_ops;

//  Builds args from an agent's name and JSON config (NULL: none, which
//  lacks connection and model) and its concurrency (<= 0: 1). Of the
//  borrowed fields, persist, bus and vault default to "persist", "bus" and "vault",
//  conninfo and rates to NULL: the caller fills them. Returns 0 and *out (caller owns:
//  cd_llm_args_destroy), or CD_EINVAL with why naming the key ("config.model: ...").
int cd_llm_args_new(const char *agent, const json_t *config, int concurrency, cd_llm_args_t **out,
                    char *why, size_t why_size);

//  Safe on NULL and twice; nulls *self_p.
void cd_llm_args_destroy(cd_llm_args_t **self_p);

#endif
