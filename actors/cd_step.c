/*  cd_step: the agent side of the step protocol (see cd_step.h).

    Reading never decodes the input: a step's fields are found with
    cd_msgpack_map_find and handed out as views, so an agent that only
    wraps its input (echo) copies nothing.

    Interface: cd_step_is_step, cd_step_is_cancel, cd_step_cancel_matches,
    cd_step_view, cd_step_addr, cd_step_hitl, cd_step_budget,
    cd_step_read_number, cd_step_pack_result, cd_step_pack_error,
    cd_step_send. */
#include "cd_step.h"
#include "cd_agent_proto.h"
#include "cd_error.h"
#include "cd_log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t s_nil[] = {0xc0};

static bool
s_is_nil(cd_bin_t value)
{
    return value.len == 1 && value.ptr[0] == 0xc0;
}

static bool
s_is_map(cd_bin_t value)
{
    if (value.len == 0) {
        return false;
    }
    uint8_t b = value.ptr[0];
    return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

bool
cd_step_is_step(const cd_envelope_t *env)
{
    return env->kind == CD_KIND_TASK || env->kind == CD_KIND_HANDOFF;
}

bool
cd_step_is_cancel(const cd_envelope_t *env)
{
    cd_str_t op;
    return env->kind == CD_KIND_CONTROL && cd_envelope_header(env, "op", &op) &&
           cd_str_eq(op, "cancel");
}

bool
cd_step_cancel_matches(const cd_envelope_t *cancel, const cd_step_addr_t *addr)
{
    static const uint8_t zero[CD_ENV_UUID_SIZE] = {0};
    if (memcmp(cancel->parent_id, zero, CD_ENV_UUID_SIZE) != 0) {
        return memcmp(cancel->parent_id, addr->step_id, CD_ENV_UUID_SIZE) == 0;
    }
    return cancel->task_id != 0 && cancel->task_id == addr->task_id;
}

//  Parses the decimal step number of a header value (1 if unreadable: the
//  header's presence is what marks a step).
static int
s_step_number(cd_str_t value)
{
    char text[16];
    snprintf(text, sizeof text, "%.*s", (int)(value.len < 15 ? value.len : 15),
             value.ptr ? value.ptr : "");
    long n = strtol(text, NULL, 10);
    return n > 0 && n < 1000000 ? (int)n : 1;
}

int
cd_step_view(const cd_envelope_t *env, cd_step_view_t *out, const char **why)
{
    *out = (cd_step_view_t){0};
    out->reply_to = env->from;
    cd_envelope_header(env, "reply_to", &out->reply_to);
    cd_str_t step;
    if (!cd_envelope_header(env, CD_PROTO_STEP_HEADER, &step)) {
        //  Not orchestrated: the payload itself is the input.
        if (env->payload_type == CD_PAYLOAD_MAP) {
            out->input = env->payload;
        } else if (env->payload_type == CD_PAYLOAD_BIN) {
            out->input = env->payload;
            out->input_raw = true;
        } else {
            out->input = (cd_bin_t){s_nil, 1};
        }
        return 0;
    }
    out->step = s_step_number(step);
    if (env->payload_type != CD_PAYLOAD_MAP) {
        *why = "a step's payload must be a map";
        return CD_EPROTO;
    }
    cd_bin_t map = env->payload, value;
    out->input = cd_msgpack_map_find(map, "input", &value) == 0 ? value : (cd_bin_t){s_nil, 1};
    if (cd_msgpack_map_find(map, "original", &value) == 0) {
        out->original = value;
    }
    if (cd_msgpack_map_find(map, "hitl", &value) == 0 && !s_is_nil(value)) {
        if (!s_is_map(value)) {
            *why = "\"hitl\" must be a map";
            return CD_EPROTO;
        }
        out->hitl = value;
    }
    if (cd_msgpack_map_find(map, "budget", &value) == 0 && !s_is_nil(value)) {
        if (!s_is_map(value)) {
            *why = "\"budget\" must be a map";
            return CD_EPROTO;
        }
        out->budget = value;
    }
    cd_bin_t task, project;
    if (cd_msgpack_map_find(map, "task", &task) == 0 && s_is_map(task) &&
        cd_msgpack_map_find(task, "project_id", &project) == 0 && !s_is_nil(project)) {
        int64_t id = 0;
        if (cd_msgpack_read_int(project, &id) != 0) {
            *why = "\"task.project_id\" must be an integer";
            return CD_EPROTO;
        }
        out->project_id = id;
    }
    return 0;
}

void
cd_step_addr(const cd_envelope_t *env, const cd_step_view_t *view, cd_step_addr_t *addr)
{
    memcpy(addr->step_id, env->id, CD_ENV_UUID_SIZE);
    memcpy(addr->trace_id, env->trace_id, CD_ENV_UUID_SIZE);
    addr->task_id = env->task_id;
    addr->deadline = env->deadline;
    addr->step = view->step;
    snprintf(addr->reply_to, sizeof addr->reply_to, "%.*s", (int)view->reply_to.len,
             view->reply_to.ptr ? view->reply_to.ptr : "");
}

int
cd_step_hitl(const cd_step_view_t *view, cd_step_hitl_t *out)
{
    *out = (cd_step_hitl_t){.response = {s_nil, 1}, .approved = -1};
    if (!view->hitl.ptr) {
        return CD_ENOTFOUND;
    }
    cd_bin_t value;
    if (cd_msgpack_map_find(view->hitl, "request_id", &value) == 0 && !s_is_nil(value) &&
        cd_msgpack_read_int(value, &out->request_id) != 0) {
        return CD_EPROTO;
    }
    if (cd_msgpack_map_find(view->hitl, "response", &value) == 0) {
        out->response = value;
    }
    if (cd_msgpack_map_find(view->hitl, "approved", &value) == 0 && !s_is_nil(value)) {
        bool approved = false;
        if (cd_msgpack_read_bool(value, &approved) != 0) {
            return CD_EPROTO;
        }
        out->approved = approved ? 1 : 0;
    }
    if (cd_msgpack_map_find(view->hitl, "expired", &value) == 0 && !s_is_nil(value) &&
        cd_msgpack_read_bool(value, &out->expired) != 0) {
        return CD_EPROTO;
    }
    return 0;
}

int
cd_step_read_number(cd_bin_t value, double *out)
{
    int64_t i = 0;
    if (cd_msgpack_read_int(value, &i) == 0) {
        *out = (double)i;
        return 0;
    }
    if (value.len == 5 && value.ptr[0] == 0xca) {
        uint32_t bits = (uint32_t)value.ptr[1] << 24 | (uint32_t)value.ptr[2] << 16 |
                        (uint32_t)value.ptr[3] << 8 | value.ptr[4];
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
        return 0;
    }
    if (value.len == 9 && value.ptr[0] == 0xcb) {
        uint64_t bits = 0;
        for (int k = 1; k < 9; k++) {
            bits = bits << 8 | value.ptr[k];
        }
        memcpy(out, &bits, sizeof *out);
        return 0;
    }
    return CD_EPROTO;
}

//  An optional number field: absent or nil leaves *out as it is.
static int
s_opt_number(cd_bin_t map, const char *key, double *out)
{
    cd_bin_t value;
    if (cd_msgpack_map_find(map, key, &value) != 0 || s_is_nil(value)) {
        return 0;
    }
    return cd_step_read_number(value, out);
}

int
cd_step_budget(const cd_step_view_t *view, cd_step_budget_t *out)
{
    *out = (cd_step_budget_t){.max_tokens = -1, .max_cost_usd = -1};
    if (!view->budget.ptr) {
        return CD_ENOTFOUND;
    }
    double max_tokens = -1, used_tokens = 0;
    if (s_opt_number(view->budget, "max_tokens", &max_tokens) != 0 ||
        s_opt_number(view->budget, "max_cost_usd", &out->max_cost_usd) != 0 ||
        s_opt_number(view->budget, "used_tokens", &used_tokens) != 0 ||
        s_opt_number(view->budget, "used_cost_usd", &out->used_cost_usd) != 0) {
        return CD_EPROTO;
    }
    out->max_tokens = max_tokens < 0 ? -1 : (int64_t)max_tokens;
    out->used_tokens = used_tokens < 0 ? 0 : (int64_t)used_tokens;
    return 0;
}

void
cd_step_pack_result(cd_pack_t *pack, cd_bin_t output, const char *handoff_to)
{
    cd_pack_reset(pack);
    cd_pack_map(pack, handoff_to ? 2 : 1);
    cd_pack_cstr(pack, "output");
    cd_pack_raw(pack, output.ptr, output.len);
    if (handoff_to) {
        cd_pack_cstr(pack, "handoff_to");
        cd_pack_cstr(pack, handoff_to);
    }
}

void
cd_step_pack_error(cd_pack_t *pack, const char *code, const char *message, bool retryable,
                   int64_t retry_after_ms)
{
    cd_pack_reset(pack);
    cd_pack_map(pack, retry_after_ms >= 0 ? 4 : 3);
    cd_pack_cstr(pack, "code");
    cd_pack_cstr(pack, code);
    cd_pack_cstr(pack, "message");
    cd_pack_cstr(pack, message ? message : "");
    cd_pack_cstr(pack, "retryable");
    cd_pack_bool(pack, retryable);
    if (retry_after_ms >= 0) {
        cd_pack_cstr(pack, "retry_after_ms");
        cd_pack_int(pack, retry_after_ms);
    }
}

int
cd_step_send(cd_actor_t *self, const cd_step_addr_t *addr, cd_kind_t kind, cd_bin_t payload)
{
    cd_envelope_t out;
    cd_actor_envelope_init(self, &out, kind, addr->reply_to);
    out.task_id = addr->task_id;
    memcpy(out.trace_id, addr->trace_id, CD_ENV_UUID_SIZE);
    memcpy(out.parent_id, addr->step_id, CD_ENV_UUID_SIZE);
    out.deadline = addr->deadline;
    out.payload_type = CD_PAYLOAD_MAP;
    out.payload = payload;
    int rc = cd_actor_send(self, &out);
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(self), "answer not delivered", "{s:s, s:I}", "error",
                    cd_errname(rc), "task_id", (json_int_t)addr->task_id);
    }
    return rc;
}
