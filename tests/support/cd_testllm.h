/*  cd_testllm: a small OpenAI-compatible server for tests, on 127.0.0.1
    and a port of the kernel's choosing, speaking HTTP/1.1 (one request
    per connection, then close) from threads of its own.

    POST {base}/chat/completions answers by the request's "model":
      (any other)   the completion "Hello world": streamed as the tokens
                    "Hel", "lo", " world" (then a chunk with usage
                    {prompt_tokens 12, completion_tokens 3} and [DONE])
                    when "stream" is true, else one JSON answer with the
                    same usage
      "echo"        as above, with the prompt (messages[0].content) as the
                    one token / the content
      "error-500"   500 {"error": {"message": "upstream exploded"}}
      "error-400"   400 {"error": {"message": "bad model"}}
      "rate-429"    429 with Retry-After: 2
      "garbage"     200 text/event-stream with "data: {not json"
      "garbage-json" 200 application/json "<html>"
      "no-done"     the stream without [DONE]
      "stream-error" a stream whose event is {"error": {...}}
      "slow"        200 text/event-stream, a comment, then nothing until
                    the client hangs up (counted) or 10 s pass
    Anything else (path, method) is 404.

    Any thread may call the accessors; start/stop from one thread. */
#ifndef CD_TESTS_SUPPORT_TESTLLM_H
#define CD_TESTS_SUPPORT_TESTLLM_H

typedef struct cd_testllm cd_testllm_t;

//  Starts the server. Returns NULL (reason on stderr) on failure.
cd_testllm_t *cd_testllm_start(void);

//  Stops it (waits for its threads, bounded) and nulls *self_p.
void cd_testllm_stop(cd_testllm_t **self_p);

//  "http://127.0.0.1:<port>/v1". Borrowed, valid until stop.
const char *cd_testllm_base_url(const cd_testllm_t *self);

//  Chat completion requests received so far.
int cd_testllm_requests(cd_testllm_t *self);

//  The last request's body and Authorization header value (caller frees;
//  NULL if none).
char *cd_testllm_last_body(cd_testllm_t *self);
char *cd_testllm_last_auth(cd_testllm_t *self);

//  "slow" requests whose client hung up before the server gave up.
int cd_testllm_hangups(cd_testllm_t *self);

#endif
