/*  cd_testbus.h: the event pipeline for tests (header-only, static
    inline; include once per test program, after <cmocka.h>).

    A root supervisor with the persist actor (the `events` COPY table as the
    node registers it, commit notices to `bus`) and the bus, against a test
    database; helpers to emit events through the bus and to read the bus's
    live envelopes and answers as JSON. Everything waits with bounds. */
#ifndef CD_TESTS_SUPPORT_TESTBUS_H
#define CD_TESTS_SUPPORT_TESTBUS_H

#include "cd_bus.h"
#include "cd_error.h"
#include "cd_json.h"
#include "cd_persist.h"
#include "cd_port.h"
#include "cd_supervisor.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The events table as the node registers it for persist (engine/cadred.c).
static const char *const tb_event_columns[] = {"type", "project_id", "task_id", "agent", "data"};
static const cd_persist_table_t tb_tables[] = {{"events", "events", tb_event_columns, 5}};

typedef struct {
    cd_runtime_t rt;             //  node settings (registry owned here)
    cd_persist_args_t persist;   //  persist's arguments
    cd_bus_args_t bus;           //  the bus's arguments
    cd_child_spec_t children[2]; //  persist, bus
    cd_supervisor_spec_t spec;   //  one_for_one
    cd_root_t *root;             //  running tree, or NULL
} tb_tree_t;

//  Fills t for the database conninfo (borrowed); adjust, then tb_start.
static inline void
tb_init(tb_tree_t *t, const char *conninfo, const char *node_id)
{
    memset(t, 0, sizeof *t);
    t->rt = (cd_runtime_t){cd_registry_new(node_id), 1000, 2000, 200, 5000, 5000, 5, 10};
    t->persist = (cd_persist_args_t){
        .conninfo = conninfo, .tables = tb_tables, .n_tables = 1, .notify = "bus"};
    t->bus = (cd_bus_args_t){.conninfo = conninfo};
}

static inline void
tb_start(tb_tree_t *t)
{
    t->children[0] = (cd_child_spec_t){"persist", &cd_persist_ops, &t->persist, 0};
    t->children[1] = (cd_child_spec_t){"bus", &cd_bus_ops, &t->bus, 0};
    t->spec = (cd_supervisor_spec_t){CD_ONE_FOR_ONE, -1, 0, t->children, 2};
    char why[160] = "";
    t->root = cd_root_new(&t->rt, "root", &t->spec, why, sizeof why);
    if (!t->root) {
        fail_msg("tree: %s", why);
    }
}

//  Stops the tree and frees the registry (ports must be gone first).
static inline void
tb_stop(tb_tree_t *t)
{
    if (t->root) {
        assert_int_equal(cd_root_destroy(&t->root), 0);
    }
    cd_registry_destroy(&t->rt.registry);
}

//  Sends an emit from port. data is JSON text or NULL; project/task < 0:
//  nil. ack false adds the header ack=none. Returns the send's result and
//  the envelope id in id (if not NULL).
static inline int
tb_emit(cd_port_t *port, const char *type, int64_t project, int64_t task, const char *agent,
        const char *data, bool persist, bool ack, uint8_t id[16])
{
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 6);
    cd_pack_cstr(pack, "type");
    cd_pack_cstr(pack, type);
    cd_pack_cstr(pack, "project_id");
    if (project >= 0) {
        cd_pack_int(pack, project);
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "task_id");
    if (task >= 0) {
        cd_pack_int(pack, task);
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "agent");
    if (agent) {
        cd_pack_cstr(pack, agent);
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "data");
    if (data) {
        cd_pack_cstr(pack, data);
    } else {
        cd_pack_nil(pack);
    }
    cd_pack_cstr(pack, "persist");
    cd_pack_bool(pack, persist);
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(port), &env, CD_KIND_EVENT, "bus");
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("emit")};
    env.headers[1] = (cd_env_header_t){cd_str("ack"), cd_str("none")};
    env.n_headers = ack ? 1 : 2;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    if (id) {
        memcpy(id, env.id, 16);
    }
    int rc = cd_port_send(port, &env);
    cd_pack_destroy(&pack);
    return rc;
}

//  A control request with header op (and payload JSON, or NULL) to the bus.
//  Returns its id in id.
static inline void
tb_request(cd_port_t *port, const char *op, const char *payload_json, uint8_t id[16])
{
    cd_pack_t *pack = cd_pack_new();
    cd_envelope_t env;
    cd_mailer_envelope_init(cd_port_mailer(port), &env, CD_KIND_CONTROL, "bus");
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    if (payload_json) {
        json_t *doc = json_loads(payload_json, 0, NULL);
        assert_non_null(doc);
        assert_int_equal(cd_json_to_msgpack(doc, pack), 0);
        json_decref(doc);
        env.payload_type = CD_PAYLOAD_MAP;
        env.payload = cd_pack_bytes(pack);
    }
    if (id) {
        memcpy(id, env.id, 16);
    }
    assert_int_equal(cd_port_send(port, &env), 0);
    cd_pack_destroy(&pack);
}

//  A received envelope, decoded: kind and payload as JSON (caller decrefs).
typedef struct {
    cd_kind_t kind;     //  its kind
    uint8_t parent[16]; //  its parent_id
    json_t *payload;    //  its payload, or NULL
} tb_msg_t;

//  Receives the next envelope on port within timeout_ms. False if none.
static inline bool
tb_recv(cd_port_t *port, int timeout_ms, tb_msg_t *msg)
{
    cd_envelope_t env;
    memset(msg, 0, sizeof *msg);
    if (cd_port_recv(port, timeout_ms, &env) != 0) {
        return false;
    }
    msg->kind = env.kind;
    memcpy(msg->parent, env.parent_id, 16);
    if (env.payload_type != CD_PAYLOAD_NONE) {
        const char *why = NULL;
        if (cd_json_from_msgpack(env.payload, &msg->payload, &why) != 0) {
            fail_msg("payload does not read as JSON: %s", why);
        }
    }
    return true;
}

//  Waits for the answer to id (other messages are dropped).
static inline void
tb_await(cd_port_t *port, const uint8_t id[16], int timeout_ms, tb_msg_t *msg)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    while (zclock_mono() < deadline) {
        if (tb_recv(port, 50, msg)) {
            if (memcmp(msg->parent, id, 16) == 0) {
                return;
            }
            json_decref(msg->payload);
        }
    }
    fail_msg("no answer within %d ms", timeout_ms);
}

//  A bus stats figure.
static inline int64_t
tb_stat(cd_port_t *port, const char *key)
{
    uint8_t id[16];
    tb_request(port, "stats", NULL, id);
    tb_msg_t msg;
    tb_await(port, id, 5000, &msg);
    assert_int_equal(msg.kind, CD_KIND_RESULT);
    json_t *v = json_object_get(msg.payload, key);
    int64_t n = json_is_boolean(v) ? json_is_true(v) : json_integer_value(v);
    json_decref(msg.payload);
    return n;
}

#endif
