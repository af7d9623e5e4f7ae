/*  cd_q_system: queries on config, stats_history, audit_logs, nodes,
    idempotency_keys and connections (see cd_q_system.h).

    Claiming an idempotency key is one INSERT ... ON CONFLICT: the unique
    (user_id, key) decides between concurrent first requests, and an
    expired record is taken over in the same statement. When a concurrent
    claim commits between our snapshot and our conflict check, the
    statement sees neither its own row nor the other's; one retry (a new
    statement, a new snapshot) then finds it.

    Interface: cd_q_system_writes, cd_q_config_{get_all,get,set,delete},
    cd_q_stats_{insert,snapshot,current,list,purge}, cd_q_audit_{insert,list},
    cd_q_nodes_{register,heartbeat,list,expired,delete},
    cd_q_idem_{begin,finish,abandon,purge},
    cd_q_connections_writes, cd_q_connections_{insert,get,sealed,list,patch,delete},
    cd_q_vault_{get,init}. */
#include "cd_q_system.h"
#include "cd_error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#define STATS_JSON                                                                                 \
    "json_build_object('id', s.id, 'ts', cd_ts(s.ts), 'node_id', s.node_id, 'stats', s.stats)"

#define AUDIT_JSON                                                                                 \
    "json_build_object('id', a.id, 'ts', cd_ts(a.ts), 'user_id', a.user_id, 'action', a.action, "  \
    "'target', a.target, 'details', a.details, 'ip', host(a.ip), 'prev_hash', "                    \
    "encode(a.prev_hash, 'hex'), 'hash', encode(a.hash, 'hex'))"

#define NODE_JSON                                                                                  \
    "json_build_object('id', n.id, 'address', n.address, 'version', n.version, 'started_at', "     \
    "cd_ts(n.started_at), 'heartbeat_at', cd_ts(n.heartbeat_at), 'lease_expires_at', "             \
    "cd_ts(n.lease_expires_at), 'alive', n.lease_expires_at > now())"

#define IDEM_JSON                                                                                  \
    "json_build_object('key', k.key, 'user_id', k.user_id, 'request_hash', "                       \
    "encode(k.request_hash, 'hex'), 'response_status', k.response_status, 'response_body', "       \
    "k.response_body, 'created_at', cd_ts(k.created_at), 'expires_at', cd_ts(k.expires_at))"

#define CONN_JSON                                                                                  \
    "json_build_object('id', c.id, 'name', c.name, 'connector_type', c.connector_type, "           \
    "'config', c.config, 'secret_fields', c.secret_fields, 'has_secrets', c.secrets IS NOT "       \
    "NULL, 'created_by', c.created_by, 'created_at', cd_ts(c.created_at), 'updated_at', "          \
    "cd_ts(c.updated_at))"

//  --- config -----------------------------------------------------------

static const char *const s_config_all =
    "SELECT coalesce(jsonb_object_agg(key, value ORDER BY key), '{}') FROM config";

int
cd_q_config_get_all(cd_db_t *db, char **out)
{
    return cd__q_one(db, s_config_all, 0, NULL, out);
}

int
cd_q_config_get(cd_db_t *db, const char *key, char **out)
{
    const char *params[] = {key};
    return cd__q_one(db, "SELECT value FROM config WHERE key = $1", 1, params, out);
}

//  Keys whose value is JSON null are deleted; the others are set. The
//  answer is the whole config after the change, built from the
//  statement's snapshot (the rows before) minus the patched keys plus the
//  rows written: a statement's final SELECT does not see its own CTEs'
//  writes.
static const char s_config_patch[] =
    "WITH b AS (SELECT key, value FROM jsonb_each($1::jsonb)),"
    " d AS (DELETE FROM config c USING b WHERE c.key = b.key AND jsonb_typeof(b.value) = 'null'"
    "  RETURNING c.key),"
    " s AS (INSERT INTO config (key, value) SELECT key, value FROM b"
    "  WHERE jsonb_typeof(value) <> 'null'"
    "  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
    "  RETURNING key, value)"
    " SELECT coalesce(jsonb_object_agg(x.key, x.value ORDER BY x.key), '{}') FROM ("
    "  SELECT c.key, c.value FROM config c WHERE NOT EXISTS (SELECT FROM b WHERE b.key = c.key)"
    "  UNION ALL SELECT key, value FROM s) x";

int
cd_q_config_set(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    *out = NULL;
    return cd__q_one(db, s_config_patch, 1, params, out);
}

int
cd_q_config_delete(cd_db_t *db, const char *key)
{
    const char *params[] = {key};
    return cd__q_write(db, "DELETE FROM config WHERE key = $1", 1, params, NULL);
}

//  --- stats history ------------------------------------------------------

//  The counters of a snapshot (see cd_q_system.h), read from the tables:
//  events_total from the primary key's end rather than count(*), which
//  would scan the largest table every minute.
#define STATS_COUNTERS                                                                             \
    "jsonb_build_object('tasks', (SELECT jsonb_object_agg(v.s, coalesce(c.n, 0))"                  \
    " FROM unnest(ARRAY['todo', 'in_progress', 'waiting_human', 'done', 'failed', 'cancelled'])"   \
    " v(s) LEFT JOIN (SELECT status, count(*) AS n FROM tasks GROUP BY status) c"                  \
    " ON c.status = v.s), 'agents', (SELECT jsonb_object_agg(v.s, coalesce(c.n, 0))"               \
    " FROM unnest(ARRAY['starting', 'idle', 'busy', 'stopped', 'crashed', 'offline']) v(s)"        \
    " LEFT JOIN (SELECT status, count(*) AS n FROM agents GROUP BY status) c ON c.status = v.s),"  \
    " 'hitl_pending', (SELECT count(*) FROM hitl_requests WHERE status = 'pending'),"              \
    " 'schedules_enabled', (SELECT count(*) FROM scheduled_tasks WHERE enabled),"                  \
    " 'events_total', (SELECT coalesce(max(id), 0) FROM events))"

static const char s_stats_snapshot[] =
    "INSERT INTO stats_history AS s (node_id, stats)"
    " SELECT $1, " STATS_COUNTERS " || coalesce($2::jsonb, '{}') RETURNING " STATS_JSON;

const cd_q_write_t cd_q_system_writes[] = {
    {"config.patch", s_config_patch, 1},
    {"stats.snapshot", s_stats_snapshot, 2},
};
const size_t cd_q_system_n_writes = sizeof cd_q_system_writes / sizeof cd_q_system_writes[0];

int
cd_q_stats_insert(cd_db_t *db, const char *node_id, const char *stats, char **out)
{
    const char *params[] = {node_id, stats};
    return cd__q_one(db,
                     "INSERT INTO stats_history AS s (node_id, stats) VALUES ($1, $2)"
                     " RETURNING " STATS_JSON,
                     2, params, out);
}

int
cd_q_stats_snapshot(cd_db_t *db, const char *node_id, const char *extra, char **out)
{
    const char *params[] = {node_id, extra};
    return cd__q_one(db, s_stats_snapshot, 2, params, out);
}

int
cd_q_stats_current(cd_db_t *db, char **out)
{
    return cd__q_one(db, "SELECT jsonb_build_object('ts', cd_ts(now())) || " STATS_COUNTERS, 0,
                     NULL, out);
}

int
cd_q_stats_list(cd_db_t *db, const char *since, const char *cursor, int limit, cd_q_page_t *out)
{
    const char *params[] = {since, cursor, NULL};
    return cd__q_page(db,
                      "SELECT s.id, " STATS_JSON " FROM stats_history s"
                      " WHERE ($1::timestamptz IS NULL OR s.ts >= $1)"
                      " AND ($2::bigint IS NULL OR s.id > $2) ORDER BY s.id LIMIT $3",
                      3, params, limit, out);
}

//  --- audit log ----------------------------------------------------------

int
cd_q_audit_insert(cd_db_t *db, int64_t user_id, const char *action, const char *target,
                  const char *details, const char *ip, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, user_id), action, target, details, ip};
    return cd__q_one(db,
                     "INSERT INTO audit_logs AS a (user_id, action, target, details, ip)"
                     " VALUES ($1, $2, $3, coalesce($4::jsonb, '{}'), $5::inet)"
                     " RETURNING " AUDIT_JSON,
                     5, params, out);
}

int
cd_q_audit_list(cd_db_t *db, const cd_q_audit_filter_t *f, cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, f->user_id), f->action, f->since, f->cursor, NULL};
    return cd__q_page(db,
                      "SELECT a.id, " AUDIT_JSON " FROM audit_logs a"
                      " WHERE ($1::bigint IS NULL OR a.user_id = $1)"
                      " AND ($2::text IS NULL OR a.action = $2)"
                      " AND ($3::timestamptz IS NULL OR a.ts >= $3)"
                      " AND ($4::bigint IS NULL OR a.id < $4) ORDER BY a.id DESC LIMIT $5",
                      5, params, f->limit, out);
}

//  --- nodes --------------------------------------------------------------

int
cd_q_nodes_register(cd_db_t *db, const char *id, const char *address, const char *version,
                    int64_t lease_ms, char **out)
{
    char b1[24];
    const char *params[] = {id, address, version, cd__q_i64(b1, lease_ms)};
    return cd__q_one(db,
                     "INSERT INTO nodes AS n (id, address, version, lease_expires_at)"
                     " VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')"
                     " ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address,"
                     " version = EXCLUDED.version, started_at = now(), heartbeat_at = now(),"
                     " lease_expires_at = EXCLUDED.lease_expires_at RETURNING " NODE_JSON,
                     4, params, out);
}

int
cd_q_nodes_heartbeat(cd_db_t *db, const char *id, int64_t lease_ms, char **out)
{
    char b1[24];
    const char *params[] = {id, cd__q_i64(b1, lease_ms)};
    return cd__q_one(db,
                     "UPDATE nodes n SET heartbeat_at = now(),"
                     " lease_expires_at = now() + $2::bigint * interval '1 millisecond'"
                     " WHERE n.id = $1 RETURNING " NODE_JSON,
                     2, params, out);
}

int
cd_q_nodes_list(cd_db_t *db, cd_q_page_t *out)
{
    return cd__q_all(db, "SELECT " NODE_JSON " FROM nodes n ORDER BY n.id", 0, NULL, out);
}

int
cd_q_nodes_expired(cd_db_t *db, cd_q_page_t *out)
{
    return cd__q_all(db,
                     "SELECT " NODE_JSON " FROM nodes n WHERE n.lease_expires_at <= now()"
                     " ORDER BY n.id",
                     0, NULL, out);
}

int
cd_q_nodes_delete(cd_db_t *db, const char *id)
{
    const char *params[] = {id};
    return cd__q_write(db, "DELETE FROM nodes WHERE id = $1", 1, params, NULL);
}

//  --- idempotency keys -----------------------------------------------------

int
cd_q_idem_begin(cd_db_t *db, const char *key, int64_t user_id, const char *hash_hex, int64_t ttl_s,
                char **out)
{
    char b1[24], b2[24];
    const char *params[] = {key, cd__q_i64(b1, user_id), hash_hex, cd__q_i64(b2, ttl_s)};
    int rc = CD_ENOTFOUND;
    for (int attempt = 0; attempt < 2 && rc == CD_ENOTFOUND; attempt++) {
        rc = cd__q_cas(
            db,
            "WITH ins AS (INSERT INTO idempotency_keys AS k (key, user_id, request_hash,"
            " expires_at) VALUES ($1, $2::bigint, decode($3, 'hex'),"
            " now() + $4::bigint * interval '1 second')"
            " ON CONFLICT (user_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,"
            " response_status = NULL, response_body = NULL, created_at = now(),"
            " expires_at = EXCLUDED.expires_at WHERE k.expires_at <= now()"
            " RETURNING " IDEM_JSON " AS j)"
            " SELECT true, j FROM ins UNION ALL SELECT false, " IDEM_JSON
            " FROM idempotency_keys k WHERE k.key = $1"
            " AND k.user_id IS NOT DISTINCT FROM $2::bigint AND NOT EXISTS (SELECT FROM ins)",
            4, params, out);
    }
    return rc == CD_ESTATE ? CD_EEXIST : rc;
}

int
cd_q_idem_finish(cd_db_t *db, const char *key, int64_t user_id, int status, const char *body)
{
    char b1[24], b2[24];
    const char *params[] = {key, cd__q_i64(b1, user_id), cd__q_i64(b2, status), body};
    return cd__q_write(db,
                       "UPDATE idempotency_keys SET response_status = $3, response_body = $4"
                       " WHERE key = $1 AND user_id IS NOT DISTINCT FROM $2::bigint",
                       4, params, NULL);
}

int
cd_q_idem_abandon(cd_db_t *db, const char *key, int64_t user_id)
{
    char b1[24];
    const char *params[] = {key, cd__q_i64(b1, user_id)};
    return cd__q_write(db,
                       "DELETE FROM idempotency_keys"
                       " WHERE key = $1 AND user_id IS NOT DISTINCT FROM $2::bigint",
                       2, params, NULL);
}

int
cd_q_idem_purge(cd_db_t *db, int64_t *count)
{
    return cd_db_exec_params(db, "DELETE FROM idempotency_keys WHERE expires_at <= now()", 0, NULL,
                             count);
}

//  --- connections and the vault -----------------------------------------

//  secrets holds the UTF-8 text of the JSON object of sealed values
//  ({"api_key": "<hex>", ...}, each a cd_vault_seal output): bytea
//  because only the vault can read what it means.
static const char s_connections_insert[] =
    "INSERT INTO connections AS c (name, connector_type, config, secret_fields, secrets,"
    " created_by)"
    " SELECT b.e ->> 'name', b.e ->> 'connector_type',"
    " coalesce(nullif(b.e -> 'config', 'null'), '{}'),"
    " coalesce(nullif(b.e -> 'secret_fields', 'null'), '[]'),"
    " CASE WHEN $2::text IS NULL OR $2::jsonb = '{}' THEN NULL"
    " ELSE convert_to(($2::jsonb)::text, 'UTF8') END, $3::bigint"
    " FROM (SELECT $1::jsonb AS e) b RETURNING " CONN_JSON;

//  The precondition $4 (updated_at as read, or NULL) makes a PATCH built
//  on a stale read a conflict rather than a lost update of the secrets.
static const char s_connections_patch[] =
    "WITH cur AS (SELECT c.* FROM connections c WHERE c.id = $1),"
    " u AS (UPDATE connections c SET"
    "  name = CASE WHEN $2::jsonb ? 'name' THEN $2::jsonb ->> 'name' ELSE c.name END,"
    "  connector_type = CASE WHEN $2::jsonb ? 'connector_type'"
    "  THEN $2::jsonb ->> 'connector_type' ELSE c.connector_type END,"
    "  config = CASE WHEN $2::jsonb ? 'config'"
    "  THEN coalesce(nullif($2::jsonb -> 'config', 'null'), '{}') ELSE c.config END,"
    "  secret_fields = CASE WHEN $2::jsonb ? 'secret_fields'"
    "  THEN coalesce(nullif($2::jsonb -> 'secret_fields', 'null'), '[]')"
    "  ELSE c.secret_fields END,"
    "  secrets = CASE WHEN $3::text IS NULL THEN c.secrets"
    "  WHEN $3::jsonb = '{}' THEN NULL ELSE convert_to(($3::jsonb)::text, 'UTF8') END"
    "  WHERE c.id = $1 AND ($4::timestamptz IS NULL OR c.updated_at = $4::timestamptz)"
    "  RETURNING " CONN_JSON " AS j)"
    " SELECT j, true FROM u"
    " UNION ALL SELECT (" CONN_JSON "::jsonb || '{\"conflict\": true}')::json, false"
    " FROM cur c WHERE NOT EXISTS (SELECT FROM u)";

static const char s_connections_delete[] =
    "DELETE FROM connections c WHERE c.id = $1 RETURNING json_build_object('id', c.id)";

static const char s_vault_init[] =
    "INSERT INTO vault (kdf, opslimit, memlimit, salt, wrapped_dek)"
    " SELECT r ->> 'kdf', (r ->> 'opslimit')::bigint, (r ->> 'memlimit')::bigint,"
    " decode(r ->> 'salt', 'hex'), decode(r ->> 'wrapped_dek', 'hex')"
    " FROM (SELECT $1::jsonb AS r) b ON CONFLICT (id) DO NOTHING"
    " RETURNING json_build_object('initialized', true, 'created_at', cd_ts(created_at))";

const cd_q_write_t cd_q_connections_writes[] = {
    {"connections.insert", s_connections_insert, 3},
    {"connections.patch", s_connections_patch, 4},
    {"connections.delete", s_connections_delete, 1},
    {"vault.init", s_vault_init, 1},
};
const size_t cd_q_connections_n_writes =
    sizeof cd_q_connections_writes / sizeof cd_q_connections_writes[0];

int
cd_q_connections_insert(cd_db_t *db, const char *json, const char *secrets, int64_t created_by,
                        char **out)
{
    char b1[24];
    const char *params[] = {json, secrets, cd__q_i64(b1, created_by)};
    return cd__q_one(db, s_connections_insert, 3, params, out);
}

int
cd_q_connections_get(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, "SELECT " CONN_JSON " FROM connections c WHERE c.id = $1", 1, params, out);
}

int
cd_q_connections_sealed(cd_db_t *db, int64_t id, const char *name, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), name};
    return cd__q_one(db,
                     "SELECT (" CONN_JSON "::jsonb || jsonb_build_object('secrets',"
                     " coalesce(convert_from(c.secrets, 'UTF8')::jsonb, '{}'))) FROM connections c"
                     " WHERE CASE WHEN $1::bigint IS NULL THEN c.name = $2 ELSE c.id = $1 END",
                     2, params, out);
}

int
cd_q_connections_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out)
{
    const char *params[] = {cursor, NULL};
    return cd__q_page(db,
                      "SELECT c.id, " CONN_JSON " FROM connections c"
                      " WHERE ($1::bigint IS NULL OR c.id < $1) ORDER BY c.id DESC LIMIT $2",
                      2, params, limit, out);
}

int
cd_q_connections_patch(cd_db_t *db, int64_t id, const char *json, const char *secrets,
                       const char *expected, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json, secrets, expected};
    return cd__q_cas_json(db, s_connections_patch, 4, params, out);
}

int
cd_q_connections_delete(cd_db_t *db, int64_t id)
{
    char b1[24], *row = NULL;
    const char *params[] = {cd__q_i64(b1, id)};
    int rc = cd__q_one(db, s_connections_delete, 1, params, &row);
    free(row);
    return rc;
}

int
cd_q_vault_get(cd_db_t *db, char **out)
{
    return cd__q_one(db,
                     "SELECT json_build_object('kdf', kdf, 'opslimit', opslimit, 'memlimit',"
                     " memlimit, 'salt', encode(salt, 'hex'), 'wrapped_dek',"
                     " encode(wrapped_dek, 'hex')) FROM vault WHERE id = 1",
                     0, NULL, out);
}

int
cd_q_vault_init(cd_db_t *db, const char *record, char **out)
{
    const char *params[] = {record};
    return cd__q_one(db, s_vault_init, 1, params, out);
}
