/*  cd_teststep: a test playing the orchestrator (cd_agent_proto.h) over a
    cd_port: it sends steps and cancels to an agent and reads the answers
    back as JSON. Header-only helpers (static inline) for the agent tests;
    the port's thread only. */
#ifndef CD_TESTS_SUPPORT_TESTSTEP_H
#define CD_TESTS_SUPPORT_TESTSTEP_H

#include "cd_agent_proto.h"
#include "cd_error.h"
#include "cd_mpjson.h"
#include "cd_port.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Sends a step to `to`: payload {"input": <input_json>, "original":
//  <input_json>, "task": {"id": task_id, "title": "t", "project_id": nil}}
//  merged with the keys of extra_json (an object text, or NULL: e.g.
//  "hitl", "budget", or a "task" that replaces the default). deadline_us 0
//  for none. Writes the step's id into id (if not NULL). Returns the send's
//  result.
static inline int
ts_step_send(cd_port_t *port, const char *to, int64_t task_id, const char *input_json,
             const char *extra_json, int64_t deadline_us, uint8_t id[CD_ENV_UUID_SIZE])
{
    json_t *input = json_loads(input_json ? input_json : "null", JSON_DECODE_ANY, NULL);
    if (!input) {
        return CD_EINVAL;
    }
    json_t *payload = json_pack("{s:O, s:O, s:{s:I, s:s, s:n}}", "input", input, "original", input,
                                "task", "id", (json_int_t)task_id, "title", "t", "project_id");
    json_decref(input);
    if (extra_json) {
        json_t *extra = json_loads(extra_json, 0, NULL);
        if (!extra) {
            json_decref(payload);
            return CD_EINVAL;
        }
        json_object_update(payload, extra);
        json_decref(extra);
    }
    cd_pack_t *pack = cd_pack_new();
    cd_mpjson_encode(payload, pack);
    json_decref(payload);
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(port), &env, CD_KIND_TASK, to);
    env.task_id = task_id;
    env.deadline = deadline_us;
    env.trace_id[0] = 7;
    env.headers[0] =
        (cd_env_header_t){cd_str("reply_to"), cd_str(cd_mailer_name(cd_port_mailer(port)))};
    env.headers[1] = (cd_env_header_t){cd_str(CD_PROTO_STEP_HEADER), cd_str("1")};
    env.n_headers = 2;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    if (id) {
        memcpy(id, env.id, CD_ENV_UUID_SIZE);
    }
    int rc = cd_port_send(port, &env);
    cd_pack_destroy(&pack);
    return rc;
}

//  Sends control op=cancel for the step id (or, with id NULL, for task_id).
static inline int
ts_cancel_send(cd_port_t *port, const char *to, int64_t task_id, const uint8_t id[CD_ENV_UUID_SIZE])
{
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(port), &env, CD_KIND_CONTROL, to);
    env.task_id = task_id;
    if (id) {
        memcpy(env.parent_id, id, CD_ENV_UUID_SIZE);
    }
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("cancel")};
    env.n_headers = 1;
    return cd_port_send(port, &env);
}

//  Receives the next envelope within timeout_ms and decodes its map
//  payload into *payload (caller owns; NULL without one). Returns 0 or the
//  receive's error. env's views die at the next receive.
static inline int
ts_recv_json(cd_port_t *port, int timeout_ms, cd_envelope_t *env, json_t **payload)
{
    *payload = NULL;
    int rc = cd_port_recv(port, timeout_ms, env);
    if (rc != 0) {
        return rc;
    }
    if (env->payload_type == CD_PAYLOAD_MAP) {
        const char *why = NULL;
        rc = cd_mpjson_decode(env->payload, payload, &why);
    }
    return rc;
}

//  The JSON text of a value (for messages and comparisons). Caller frees.
static inline char *
ts_dump(const json_t *value)
{
    return value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                 : strdup("(null)");
}

#endif
