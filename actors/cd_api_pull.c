/*  cd_api_pull: the pull API for HTTP workers serving `remote` agents
    (API.md "Agents": POST /api/v1/agents/{name}/next, and the completion
    route this module defines, POST /api/v1/tasks/{id}/complete).

    Both go to the orchestrator, which owns the steps: the request is
    parked here (cd_api_call) and answered with what the orchestrator
    says (cd_orchestrator.h, "Pull API"), so no api actor ever waits.

    next: long-polls up to ?wait_ms= (0..30000, default 0; even 0 waits for
      the one claim the poll starts, about a database round trip) and
      answers 200 with the task and its "step" ({id, number, stage, agent,
      input, original, hitl?, deadline}), or 204.
    complete: the worker's answer to that step: {"step": id, "output": any,
      "handoff_to"?: name} | {"step", "error": {code, message, retryable?,
      retry_after_ms?}} | {"step", "hitl": {question, options?, timeout_s?,
      on_timeout?}}, exactly one of output, error, hitl. 200 {id, status}
      after it is recorded (status: in_progress when handed on, done,
      todo when it will be retried, failed, waiting_human); 409 when that
      step is not the one in flight (it timed out, the task was cancelled,
      or the answer came twice); 404 for no such task.

    Interface: cd__api_pull_module. */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_tasks.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_WAIT_MAX_MS 30000 //  API.md: ?wait_ms= max 30000
#define S_WAIT_MIN_MS 200   //  a poll waits at least for the claim it starts

//  Answers with the orchestrator's {"s": status, "b": body}.
static void
s_relay(cd_api_req_t *req, const cd_envelope_t *reply)
{
    if (!reply) {
        cd_api_error(req, 504, "timeout", "the orchestrator did not answer in time", NULL);
        return;
    }
    cd_bin_t field;
    int64_t status = 0;
    cd_str_t body = {NULL, 0};
    if (reply->kind != CD_KIND_RESULT || cd_msgpack_map_find(reply->payload, "s", &field) != 0 ||
        cd_msgpack_read_int(field, &status) != 0 || status < 100 || status > 599) {
        cd_api_error(req, 502, "bad_reply", "the orchestrator's answer is malformed", NULL);
        return;
    }
    if (cd_msgpack_map_find(reply->payload, "b", &field) == 0) {
        cd_msgpack_read_str(field, &body);
    }
    if (status == 204) {
        cd_api_reply_empty(req);
        return;
    }
    char *text = strndup(body.ptr ? body.ptr : "{}", body.ptr ? body.len : 2);
    cd_api_reply_text(req, (int)status, text, NULL);
    free(text);
}

//  Sends op with a payload map built by the caller in pack to the
//  orchestrator and parks req on fn.
static int
s_ask(cd_api_req_t *req, const char *op, cd_pack_t *pack, cd_api_reply_fn *fn)
{
    const char *to = cd_api_args(req)->orchestrator;
    if (!to) {
        cd_api_error(req, 503, "not_ready", "this node runs no orchestrator", NULL);
        return 0;
    }
    cd_envelope_t env;
    cd_api_envelope_init(req, &env, CD_KIND_CONTROL, to);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_api_call(req, &env, fn, NULL);
    if (rc != 0) {
        cd_api_error(req, 503, "not_ready", "the orchestrator is not running; retry later", NULL);
    }
    return 0;
}

static void
s_next_reply(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    (void)arg;
    s_relay(req, reply);
}

static int
s_next(cd_api_req_t *req)
{
    const char *name = cd_api_param(req, "name");
    int64_t wait_ms = 0;
    if (!cd_api_query_int(req, "wait_ms", 0, S_WAIT_MAX_MS, 0, &wait_ms)) {
        return 0;
    }
    if (wait_ms < S_WAIT_MIN_MS) {
        wait_ms = S_WAIT_MIN_MS;
    }
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "agent");
    cd_pack_cstr(pack, name ? name : "");
    cd_pack_cstr(pack, "wait_ms");
    cd_pack_int(pack, wait_ms);
    int rc = s_ask(req, "next", pack, s_next_reply);
    cd_pack_destroy(&pack);
    return rc;
}

static void
s_complete_reply(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    (void)arg;
    cd_bin_t field;
    int64_t status = 0;
    if (reply && reply->kind == CD_KIND_RESULT &&
        cd_msgpack_map_find(reply->payload, "s", &field) == 0 &&
        cd_msgpack_read_int(field, &status) == 0 && status == 409) {
        //  Not the step in flight: is there such a task at all?
        int64_t id = 0;
        if (!cd_api_param_id(req, "id", &id)) {
            return;
        }
        cd_db_t *db = cd_api_db(req);
        char *row = NULL;
        int rc = db ? cd_q_tasks_get(db, id, &row) : CD_ECONN;
        free(row);
        if (rc == CD_ENOTFOUND) {
            cd_api_error(req, 404, "not_found", "no such task", NULL);
            return;
        }
    }
    s_relay(req, reply);
}

static int
s_complete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    const json_t *body = cd_api_body(req);
    int answers = (json_object_get(body, "output") ? 1 : 0) +
                  (json_object_get(body, "error") ? 1 : 0) +
                  (json_object_get(body, "hitl") ? 1 : 0);
    if (answers != 1) {
        cd_api_invalid(req, "output", "give exactly one of output, error, hitl");
        return 0;
    }
    const json_t *error = json_object_get(body, "error");
    if (error && (!json_is_string(json_object_get(error, "code")) ||
                  json_string_length(json_object_get(error, "code")) == 0)) {
        cd_api_invalid(req, "error", "must be {code, message?, retryable?, retry_after_ms?}");
        return 0;
    }
    const json_t *hitl = json_object_get(body, "hitl");
    if (hitl && !json_is_string(json_object_get(hitl, "question"))) {
        cd_api_invalid(req, "hitl", "must be {question, options?, timeout_s?, on_timeout?}");
        return 0;
    }
    const json_t *handoff = json_object_get(body, "handoff_to");
    if (handoff && !json_is_null(handoff) && (error || hitl)) {
        cd_api_invalid(req, "handoff_to", "goes with output only");
        return 0;
    }
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "task_id");
    cd_pack_int(pack, id);
    cd_pack_cstr(pack, "body");
    cd_pack_cstr(pack, cd_api_body_text(req));
    int rc = s_ask(req, "complete", pack, s_complete_reply);
    cd_pack_destroy(&pack);
    return rc;
}

static const cd_api_op_t s_ops[] = {
    {"agents.next", s_next},
    {"tasks.complete", s_complete},
};

const cd_api_module_t cd__api_pull_module = {"pull", s_ops, sizeof s_ops / sizeof s_ops[0], NULL,
                                             NULL};
