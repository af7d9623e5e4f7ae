/*  cd_api_agents: the agents routes (API.md "Agents").

    The agents table is the directory; the `agents` supervisor runs the
    actors. Creating an agent writes its row (status `starting`, event
    agent.status) through persist, then asks the supervisor by message to
    start its actor (cd_agents_factory builds it), then records `idle`:
    the 201 leaves with the actor running. A start that fails removes the
    row again, so no agent is listed that does not run. Agents of kind
    `remote` have no actor here (an external worker serves them): they are
    stored `offline`.

    Reads show the live state: a local agent's status and restart count
    come from the registry when it knows better than the row (stopped,
    restarting, dead), since restarts happen without a database write.

    stop / start / restart / DELETE go to the supervisor first, then the
    row. PATCH rewrites the row, then replaces the running actor with one
    built from the new config (remove + start), so a bad config never
    reaches the supervisor: it is checked here before anything is written.

    The log route reads the registry's ring of the agent's recent log
    lines (engine/cd_registry.h). */
#include "api_internal.h"

#include "cd_agents.h"
#include "cd_error.h"
#include "cd_q_agents.h"
#include "cd_registry.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NAME_MAX 64

static const char *const s_statuses[] = {"starting", "idle",    "busy", "stopped",
                                         "crashed",  "offline", NULL};
static const char *const s_kinds[] = {"echo", "llm", "exec", "remote", NULL};

//  1..64 of [a-z0-9_-].
static bool
s_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > S_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static cd_registry_t *
s_registry(cd_api_req_t *req)
{
    return cd_actor_runtime(cd_api_actor(req))->registry;
}

//  Overlays the registry's view of a local agent on its row (in place).
static void
s_overlay(cd_api_req_t *req, json_t *agent)
{
    const char *name = json_string_value(json_object_get(agent, "name"));
    const char *kind = json_string_value(json_object_get(agent, "kind"));
    const char *node = json_string_value(json_object_get(agent, "node_id"));
    if (!name || !cd_agents_kind_local(kind) || (node && !streq(node, cd_api_node_id(req)))) {
        return;
    }
    char reg[CD_REGISTRY_MAX_NAME];
    snprintf(reg, sizeof reg, "%s%s", CD_AGENTS_PREFIX, name);
    cd_registry_entry_t entry;
    if (cd_registry_get(s_registry(req), reg, &entry) != 0) {
        return;
    }
    const char *status = NULL;
    switch (entry.status) {
    case CD_ACTOR_STARTING:
        status = "starting";
        break;
    case CD_ACTOR_STOPPED:
        status = "stopped";
        break;
    case CD_ACTOR_RESTARTING:
    case CD_ACTOR_DEAD:
        status = "crashed";
        break;
    default:
        break;
    }
    if (status) {
        json_object_set_new(agent, "status", json_string(status));
    }
    json_int_t restarts = json_integer_value(json_object_get(agent, "restarts"));
    if ((json_int_t)entry.restarts > restarts) {
        json_object_set_new(agent, "restarts", json_integer(entry.restarts));
    }
}

//  Answers an agent row (JSON text) with the live overlay.
static void
s_reply_agent(cd_api_req_t *req, int status, const char *row, bool location)
{
    json_t *agent = json_loads(row, 0, NULL);
    if (!agent) {
        cd_api_error(req, 500, "internal", "the agent row is not JSON", NULL);
        return;
    }
    s_overlay(req, agent);
    char loc[128];
    snprintf(loc, sizeof loc, "/api/v1/agents/%s",
             json_string_value(json_object_get(agent, "name")));
    cd_api_reply_json(req, status, agent, location ? loc : NULL);
}

//  The {name} path parameter, checked. Answers 404 and returns NULL if it
//  cannot name an agent.
static const char *
s_path_name(cd_api_req_t *req)
{
    const char *name = cd_api_param(req, "name");
    if (!s_name_ok(name)) {
        cd_api_error(req, 404, "not_found", "no such agent", NULL);
        return NULL;
    }
    return name;
}

//  --- reads ----------------------------------------------------------------------

static int
s_list(cd_api_req_t *req)
{
    cd_q_agent_filter_t filter = {0};
    const char *cursor = cd_api_query(req, "cursor");
    if (cursor && !s_name_ok(cursor)) {
        cd_api_invalid(req, "cursor", "not a cursor this API gave out");
        return 0;
    }
    int64_t limit = 0;
    if (!cd_api_query_int(req, "limit", 1, CD_Q_LIMIT_MAX, CD_Q_LIMIT_DEFAULT, &limit) ||
        !cd_api_query_enum(req, "status", s_statuses, &filter.status) ||
        !cd_api_query_enum(req, "kind", s_kinds, &filter.kind)) {
        return 0;
    }
    filter.role = cd_api_query(req, "role");
    filter.cursor = cursor;
    filter.limit = (int)limit;
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_agents_list(db, &filter, &page);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *items = json_loads(page.items, 0, NULL);
    size_t i;
    json_t *agent;
    json_array_foreach(items, i, agent)
    {
        s_overlay(req, agent);
    }
    json_t *out = json_pack("{s:o, s:s?}", "items", items ? items : json_array(), "next_cursor",
                            page.next_cursor);
    if (!page.next_cursor) {
        json_object_set_new(out, "next_cursor", json_null());
    }
    cd_q_page_fini(&page);
    cd_api_reply_json(req, 200, out, NULL);
    return 0;
}

static int
s_get(cd_api_req_t *req)
{
    const char *name = s_path_name(req);
    if (!name) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_agents_get(db, name, &row);
    if (rc == 0) {
        s_reply_agent(req, 200, row, false);
    } else {
        cd_api_fail(req, rc, db);
    }
    free(row);
    return 0;
}

static int
s_log(cd_api_req_t *req)
{
    const char *name = s_path_name(req);
    if (!name) {
        return 0;
    }
    int64_t limit = 0;
    if (!cd_api_query_int(req, "limit", 1, CD_REGISTRY_LOG_KEEP, 100, &limit)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_agents_get(db, name, &row);
    free(row);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    char reg[CD_REGISTRY_MAX_NAME];
    snprintf(reg, sizeof reg, "%s%s", CD_AGENTS_PREFIX, name);
    char *lines = NULL;
    if (cd_registry_log_read(s_registry(req), reg, (size_t)limit, &lines) != 0) {
        lines = strdup("[]"); //  known to the directory, not running here
    }
    size_t len = strlen(lines) + 32;
    char *body = (char *)malloc(len);
    snprintf(body, len, "{\"items\":%s}", lines);
    cd_api_reply_text(req, 200, body, NULL);
    free(body);
    free(lines);
    return 0;
}

//  --- the supervisor ----------------------------------------------------------------

//  Sends op for name to the agents supervisor; config (JSON text) and the
//  agent's concurrency (0: unknown) for start (cd_agents.h's factory
//  request). Returns cd_api_call's result.
static int
s_supervise(cd_api_req_t *req, const char *op, const char *name, const char *kind,
            const char *config, int64_t concurrency, cd_api_reply_fn *fn)
{
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, config ? (concurrency > 0 ? 4 : 3) : 1);
    cd_pack_cstr(pack, "name");
    cd_pack_cstr(pack, name);
    if (config) {
        cd_pack_cstr(pack, "kind");
        cd_pack_cstr(pack, kind);
        cd_pack_cstr(pack, "config");
        cd_pack_cstr(pack, config);
        if (concurrency > 0) {
            cd_pack_cstr(pack, "concurrency");
            cd_pack_int(pack, concurrency);
        }
    }
    cd_envelope_t env;
    cd_api_envelope_init(req, &env, CD_KIND_CONTROL, cd_api_args(req)->agents);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_api_call(req, &env, fn, NULL);
    cd_pack_destroy(&pack);
    return rc;
}

//  The supervisor's answer: true for ok; else code (and message) copied.
static bool
s_supervised(const cd_envelope_t *reply, char *code, size_t code_size, char *message,
             size_t message_size)
{
    snprintf(code, code_size, "%s", reply ? "failed" : "timeout");
    snprintf(message, message_size, "%s",
             reply ? "the supervisor refused" : "the supervisor did not answer");
    if (!reply) {
        return false;
    }
    if (reply->kind == CD_KIND_RESULT) {
        return true;
    }
    cd_bin_t field;
    cd_str_t str;
    if (cd_msgpack_map_find(reply->payload, "code", &field) == 0 &&
        cd_msgpack_read_str(field, &str) == 0) {
        snprintf(code, code_size, "%.*s", (int)str.len, str.ptr);
    }
    if (cd_msgpack_map_find(reply->payload, "message", &field) == 0 &&
        cd_msgpack_read_str(field, &str) == 0) {
        snprintf(message, message_size, "%.*s", (int)str.len, str.ptr);
    }
    return false;
}

//  Writes status for the agent in the scratch's "name", then answers with
//  the scratch's "status_code" (202 / 200 / 201).
static void
s_status_written(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    json_t *scratch = cd_api_scratch(req);
    int status = (int)json_integer_value(json_object_get(scratch, "status_code"));
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such agent", NULL);
    } else {
        s_reply_agent(req, status, res->value, status == 201);
    }
}

static void
s_write_status(cd_api_req_t *req, const char *status, int status_code)
{
    json_t *scratch = cd_api_scratch(req);
    json_object_set_new(scratch, "status_code", json_integer(status_code));
    const char *name = json_string_value(json_object_get(scratch, "name"));
    const char *params[] = {name, status, cd_api_node_id(req)};
    int rc = cd_api_write(req, "agents.set_status", 3, params, s_status_written, NULL);
    if (rc != 0) {
        cd_api_fail(req, CD_ECONN, NULL);
    }
}

//  --- create ----------------------------------------------------------------------

static void
s_create_undone(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    json_t *scratch = cd_api_scratch(req);
    cd_api_error(req, 500, "start_failed", "the agent's actor did not start; nothing was kept",
                 json_pack("{s:O?}", "reason", json_object_get(scratch, "why")));
}

static void
s_create_started(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    char code[32], message[200];
    if (s_supervised(reply, code, sizeof code, message, sizeof message)) {
        s_write_status(req, "idle", 201);
        return;
    }
    json_t *scratch = cd_api_scratch(req);
    json_object_set_new(scratch, "why", json_string(message));
    const char *name = json_string_value(json_object_get(scratch, "name"));
    const char *params[] = {name};
    if (cd_api_write(req, "agents.delete", 1, params, s_create_undone, NULL) != 0) {
        cd_api_error(req, 500, "start_failed", message, NULL);
    }
}

static void
s_create_written(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "23503")) {
        cd_api_invalid(req, "template_id", "no such template");
        return;
    }
    if (res->rc == CD_EDB && streq(res->sqlstate, "23505")) {
        cd_api_error(req, 409, "conflict", "an agent with this name exists",
                     json_pack("{s:s}", "field", "name"));
        return;
    }
    if (res->rc != 0 || !res->value) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *scratch = cd_api_scratch(req);
    const char *kind = json_string_value(json_object_get(scratch, "kind"));
    if (!cd_agents_kind_local(kind)) {
        s_reply_agent(req, 201, res->value, true);
        return;
    }
    const char *name = json_string_value(json_object_get(scratch, "name"));
    const char *config = json_string_value(json_object_get(scratch, "config"));
    json_t *agent = json_loads(res->value, 0, NULL);
    json_int_t concurrency = json_integer_value(json_object_get(agent, "concurrency"));
    json_decref(agent);
    if (s_supervise(req, "start", name, kind, config, concurrency, s_create_started) != 0) {
        s_create_started(req, NULL, NULL);
    }
}

//  Checks kind and config (a bad one is refused before anything is
//  written). Returns false after answering 400.
static bool
s_check(cd_api_req_t *req, const char *kind, const json_t *config)
{
    char why[200];
    int rc = cd_agents_check(kind, config, why, sizeof why);
    if (rc != 0) {
        cd_api_invalid(req, rc == CD_ENOSYS || !cd_agents_kind_valid(kind) ? "kind" : "config",
                       why);
        return false;
    }
    return true;
}

static int
s_create(cd_api_req_t *req)
{
    json_t *body = cd_api_body(req);
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *kind = json_string_value(json_object_get(body, "kind"));
    json_t *config = json_object_get(body, "config");
    if (!s_name_ok(name)) {
        cd_api_invalid(req, "name", "must be 1-64 of [a-z0-9_-]");
        return 0;
    }
    if (!s_check(req, kind, json_is_null(config) ? NULL : config)) {
        return 0;
    }
    json_t *scratch = cd_api_scratch(req);
    json_object_set_new(scratch, "name", json_string(name));
    json_object_set_new(scratch, "kind", json_string(kind));
    char *config_text = json_is_object(config) ? json_dumps(config, JSON_COMPACT) : strdup("{}");
    json_object_set_new(scratch, "config", json_string(config_text));
    free(config_text);
    const char *status = cd_agents_kind_local(kind) ? "starting" : "offline";
    const char *params[] = {cd_api_body_text(req), cd_api_node_id(req), status};
    if (cd_api_write(req, "agents.insert", 3, params, s_create_written, NULL) != 0) {
        cd_api_fail(req, CD_ECONN, NULL);
    }
    return 0;
}

//  --- stop / start / restart -----------------------------------------------------------

//  After the supervisor acted: record the status, answer 202.
static void
s_control_done(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    json_t *scratch = cd_api_scratch(req);
    char code[32], message[200];
    if (!s_supervised(reply, code, sizeof code, message, sizeof message)) {
        if (streq(code, "not_found")) {
            cd_api_error(req, 409, "conflict", "the agent is not running on this node",
                         json_pack("{s:s}", "reason", message));
        } else {
            cd_api_error(req, 500, "control_failed", message, json_pack("{s:s}", "code", code));
        }
        return;
    }
    s_write_status(req, json_string_value(json_object_get(scratch, "status")), 202);
}

//  Reads the agent, checks it runs here, then sends op.
static int
s_control(cd_api_req_t *req, const char *op, const char *status)
{
    const char *name = s_path_name(req);
    if (!name) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_agents_get(db, name, &row);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *agent = json_loads(row, 0, NULL);
    free(row);
    const char *kind = json_string_value(json_object_get(agent, "kind"));
    bool local = cd_agents_kind_local(kind);
    json_t *scratch = cd_api_scratch(req);
    json_object_set_new(scratch, "name", json_string(name));
    json_object_set_new(scratch, "status", json_string(status));
    if (!local) {
        json_decref(agent);
        cd_api_error(req, 409, "conflict", "a remote agent is run by its worker, not this node",
                     NULL);
        return 0;
    }
    char *config = json_dumps(json_object_get(agent, "config"), JSON_COMPACT);
    rc = s_supervise(req, op, name, kind, streq(op, "start") ? config : NULL,
                     json_integer_value(json_object_get(agent, "concurrency")), s_control_done);
    free(config);
    json_decref(agent);
    if (rc != 0) {
        s_control_done(req, NULL, NULL);
    }
    return 0;
}

static int
s_stop(cd_api_req_t *req)
{
    return s_control(req, "stop", "stopped");
}

static int
s_start(cd_api_req_t *req)
{
    return s_control(req, "start", "idle");
}

static int
s_restart(cd_api_req_t *req)
{
    return s_control(req, "restart", "idle");
}

//  --- delete ---------------------------------------------------------------------

static void
s_delete_written(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such agent", NULL);
    } else {
        cd_api_reply_empty(req);
    }
}

static void
s_delete_removed(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    char code[32], message[200];
    if (!s_supervised(reply, code, sizeof code, message, sizeof message) &&
        !streq(code, "not_found")) {
        cd_api_error(req, 500, "control_failed", message, json_pack("{s:s}", "code", code));
        return;
    }
    const char *name = json_string_value(json_object_get(cd_api_scratch(req), "name"));
    const char *params[] = {name};
    if (cd_api_write(req, "agents.delete", 1, params, s_delete_written, NULL) != 0) {
        cd_api_fail(req, CD_ECONN, NULL);
    }
}

static int
s_delete(cd_api_req_t *req)
{
    const char *name = s_path_name(req);
    if (!name) {
        return 0;
    }
    json_object_set_new(cd_api_scratch(req), "name", json_string(name));
    if (s_supervise(req, "remove", name, NULL, NULL, 0, s_delete_removed) != 0) {
        s_delete_removed(req, NULL, NULL);
    }
    return 0;
}

//  --- patch ----------------------------------------------------------------------

static void
s_patch_restarted(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    char code[32], message[200];
    if (!s_supervised(reply, code, sizeof code, message, sizeof message)) {
        s_write_status(req, "crashed", 200);
        return;
    }
    s_write_status(req, "idle", 200);
}

static void
s_patch_removed(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    json_t *scratch = cd_api_scratch(req);
    const char *name = json_string_value(json_object_get(scratch, "name"));
    const char *kind = json_string_value(json_object_get(scratch, "kind"));
    const char *config = json_string_value(json_object_get(scratch, "config"));
    if (!cd_agents_kind_local(kind)) {
        s_write_status(req, "offline", 200);
        return;
    }
    json_int_t concurrency = json_integer_value(json_object_get(scratch, "concurrency"));
    if (s_supervise(req, "start", name, kind, config, concurrency, s_patch_restarted) != 0) {
        s_patch_restarted(req, NULL, NULL);
    }
}

static void
s_patch_written(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "23503")) {
        cd_api_invalid(req, "template_id", "no such template");
        return;
    }
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such agent", NULL);
        return;
    }
    json_t *agent = json_loads(res->value, 0, NULL);
    json_t *scratch = cd_api_scratch(req);
    json_object_set(scratch, "kind", json_object_get(agent, "kind"));
    json_object_set(scratch, "concurrency", json_object_get(agent, "concurrency"));
    char *config = json_dumps(json_object_get(agent, "config"), JSON_COMPACT);
    json_object_set_new(scratch, "config", json_string(config));
    free(config);
    json_decref(agent);
    const char *name = json_string_value(json_object_get(scratch, "name"));
    if (s_supervise(req, "remove", name, NULL, NULL, 0, s_patch_removed) != 0) {
        s_patch_removed(req, NULL, NULL);
    }
}

static int
s_patch(cd_api_req_t *req)
{
    const char *name = s_path_name(req);
    if (!name) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_agents_get(db, name, &row);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *agent = json_loads(row, 0, NULL);
    free(row);
    json_t *body = cd_api_body(req);
    //  The agent as it will be: checked before anything is written.
    json_t *kind = json_object_get(body, "kind");
    json_t *config = json_object_get(body, "config");
    const char *new_kind =
        kind ? json_string_value(kind) : json_string_value(json_object_get(agent, "kind"));
    const json_t *new_config =
        config ? (json_is_null(config) ? NULL : config) : json_object_get(agent, "config");
    bool ok = s_check(req, new_kind, new_config);
    json_decref(agent);
    if (!ok) {
        return 0;
    }
    json_object_set_new(cd_api_scratch(req), "name", json_string(name));
    const char *params[] = {name, cd_api_body_text(req)};
    if (cd_api_write(req, "agents.patch", 2, params, s_patch_written, NULL) != 0) {
        cd_api_fail(req, CD_ECONN, NULL);
    }
    return 0;
}

//  --- the module ---------------------------------------------------------------------

static const cd_api_op_t s_ops[] = {
    {"agents.list", s_list},   {"agents.create", s_create},   {"agents.get", s_get},
    {"agents.patch", s_patch}, {"agents.delete", s_delete},   {"agents.stop", s_stop},
    {"agents.start", s_start}, {"agents.restart", s_restart}, {"agents.log", s_log},
};

const cd_api_module_t cd__api_agents_module = {
    "agents", s_ops, sizeof s_ops / sizeof s_ops[0], cd_q_agents_writes, &cd_q_agents_n_writes,
};
