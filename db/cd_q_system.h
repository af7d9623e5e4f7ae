/*  cd_q_system: the node-wide tables: config, stats_history, audit_logs,
    nodes, idempotency_keys, connections.

    Conventions: cd_q.h. Rows:
      stats snapshot  {id, ts, node_id, stats}
      audit entry     {id, ts, user_id, action, target, details, ip, prev_hash, hash}
                      (hashes as hex, null until the audit writer fills them)
      node            {id, address, version, started_at, heartbeat_at, lease_expires_at,
                       alive}
      idempotency     {key, user_id, request_hash, response_status, response_body,
                       created_at, expires_at} (request_hash as hex)
      connection      {id, name, connector_type, config, secret_fields, has_secrets,
                       created_by, created_at, updated_at}; cd_q_connections_sealed adds
                      secrets, the object of sealed values {"<key>": "<hex>", ...}
                      ({} when none). Only sealed secrets are ever stored: the
                      callers (actors/cd_api_vault.c) put "********" in config in
                      place of each secret value and its sealed form (cd_vault_seal)
                      in secrets, so config is stored, and read, masked. The column
                      `secrets` (bytea) holds the UTF-8 text of that object.
      vault record    {kdf, opslimit, memlimit, salt, wrapped_dek} (hex), as
                      cd_vault_record_to_json writes it. */
#ifndef CD_DB_Q_SYSTEM_H
#define CD_DB_Q_SYSTEM_H

#include "cd_q.h"

//  The writes persist runs for this family (cd_q.h, cd_q_write_t):
//    "config.patch"    ($1 {key: value, ...}) -> the whole config after it
//                      (as cd_q_config_set)
//    "stats.snapshot"  ($1 node id, $2 extra JSON object or NULL) -> the
//                      snapshot row (as cd_q_stats_snapshot)
extern const cd_q_write_t cd_q_system_writes[];
extern const size_t cd_q_system_n_writes;

//  --- config -----------------------------------------------------------

//  Every key: {key: value, ...} ({} when empty) in *out (caller frees).
int cd_q_config_get_all(cd_db_t *db, char **out);

//  One key's JSON value, or CD_ENOTFOUND.
int cd_q_config_get(cd_db_t *db, const char *key, char **out);

//  Sets every key of the JSON object json to its value, and deletes the
//  keys whose value is null (a JSON merge patch, RFC 7396, one level
//  deep), in one statement; returns the whole config after it. CD_EDB
//  22023 if json is not an object.
int cd_q_config_set(cd_db_t *db, const char *json, char **out);

//  Deletes a key. Returns 0 or CD_ENOTFOUND.
int cd_q_config_delete(cd_db_t *db, const char *key);

//  --- stats history ------------------------------------------------------

//  Stores a snapshot (a JSON object) from node_id (or NULL).
int cd_q_stats_insert(cd_db_t *db, const char *node_id, const char *stats, char **out);

//  The counters, read from the tables now: {tasks: {todo, in_progress,
//  waiting_human, done, failed, cancelled}, agents: {starting, idle,
//  busy, stopped, crashed, offline}, hitl_pending, schedules_enabled,
//  events_total}. events_total is the newest event's id: events are
//  numbered in commit order, so it counts the events committed so far
//  (an upper bound: a rolled-back write may burn an id). cd_q_stats_current
//  adds ts (now, RFC 3339).
int cd_q_stats_current(cd_db_t *db, char **out);

//  Stores a snapshot of the counters (as cd_q_stats_current, without ts:
//  the row has its own) merged with extra (a JSON object of what the node
//  knows, e.g. {"uptime_s": 60}, or NULL), from node_id (or NULL).
//  Returns 0 and the row. The periodic writer (actors/cd_stats) sends the
//  same statement to persist.
int cd_q_stats_snapshot(cd_db_t *db, const char *node_id, const char *extra, char **out);

//  Snapshots taken at or after since (RFC 3339, or NULL), oldest first.
int cd_q_stats_list(cd_db_t *db, const char *since, const char *cursor, int limit,
                    cd_q_page_t *out);

//  --- audit log ----------------------------------------------------------

//  Appends an entry: user_id (or CD_Q_NULL), action (e.g. "task.create"),
//  target (or NULL), details (JSON or NULL for {}), ip (or NULL).
int cd_q_audit_insert(cd_db_t *db, int64_t user_id, const char *action, const char *target,
                      const char *details, const char *ip, char **out);

//  Filters of the audit list; they combine with AND.
typedef struct {
    int64_t user_id;    // or CD_Q_NULL
    const char *action; // or NULL
    const char *since;  // ts >= this RFC 3339 time, or NULL
    const char *cursor; // next_cursor of the previous page, or NULL
    int limit;          // page size (cd_q.h)
} cd_q_audit_filter_t;

//  One page of entries, newest first.
int cd_q_audit_list(cd_db_t *db, const cd_q_audit_filter_t *filter, cd_q_page_t *out);

//  --- nodes --------------------------------------------------------------

//  Registers (or re-registers) node id at start-up: address and version
//  (or NULL), started now, lease until now + lease_ms.
int cd_q_nodes_register(cd_db_t *db, const char *id, const char *address, const char *version,
                        int64_t lease_ms, char **out);

//  Renews node id's lease. Returns 0 and the row; CD_ENOTFOUND if the
//  row is gone (another node declared it dead and removed it).
int cd_q_nodes_heartbeat(cd_db_t *db, const char *id, int64_t lease_ms, char **out);

//  Every node, by id; alive says whether its lease still runs.
int cd_q_nodes_list(cd_db_t *db, cd_q_page_t *out);

//  The nodes whose lease has expired, by id.
int cd_q_nodes_expired(cd_db_t *db, cd_q_page_t *out);

//  Removes a node's row. Returns 0 or CD_ENOTFOUND.
int cd_q_nodes_delete(cd_db_t *db, const char *id);

//  --- idempotency keys -----------------------------------------------------

//  Claims Idempotency-Key key for user_id (CD_Q_NULL: anonymous) with
//  the request's hash (hex), for ttl_s seconds. Returns 0 and the new
//  record if the key was free (or its record expired); CD_EEXIST and the
//  existing record if not: the caller compares request_hash (409 on a
//  difference) and replays response_status/response_body, or, while
//  response_status is null, the first request is still running.
int cd_q_idem_begin(cd_db_t *db, const char *key, int64_t user_id, const char *hash_hex,
                    int64_t ttl_s, char **out);

//  Stores the first request's response. Returns 0 or CD_ENOTFOUND.
int cd_q_idem_finish(cd_db_t *db, const char *key, int64_t user_id, int status, const char *body);

//  Releases a key whose first request ended without a response worth
//  replaying (so a retry runs again). Returns 0 or CD_ENOTFOUND.
int cd_q_idem_abandon(cd_db_t *db, const char *key, int64_t user_id);

//  Deletes expired records; *count gets how many.
int cd_q_idem_purge(cd_db_t *db, int64_t *count);

//  --- connections and the vault record -----------------------------------

//  The writes persist runs for connections and the vault (cd_q.h):
//    "connections.insert" ($1 {name, connector_type, config?, secret_fields?},
//                         $2 sealed values object or NULL, $3 created_by or NULL)
//                         -> the row (as cd_q_connections_insert)
//    "connections.patch"  ($1 id, $2 PATCH body, $3 sealed values object or
//                         NULL to keep them, $4 updated_at as read or NULL)
//                         -> the row; {..., "conflict": true} if it changed
//                         since $4; no row: no such connection
//    "connections.delete" ($1 id) -> {"id"}; no row: no such connection
//    "vault.init"         ($1 record JSON) -> {"initialized": true, created_at};
//                         no row: a record exists already
extern const cd_q_write_t cd_q_connections_writes[];
extern const size_t cd_q_connections_n_writes;

//  Creates a connection from {name, connector_type, config?,
//  secret_fields?} (config masked: no secret value in it) and the sealed
//  values (a JSON object text {"<key>": "<hex>"}, or NULL or "{}" for
//  none). Returns 0 and the row; CD_EDB 23505 for a taken name.
int cd_q_connections_insert(cd_db_t *db, const char *json, const char *secrets, int64_t created_by,
                            char **out);

//  The connection, without secrets, or CD_ENOTFOUND.
int cd_q_connections_get(cd_db_t *db, int64_t id, char **out);

//  The connection with its sealed values (secrets: {} when none), by id
//  or (id CD_Q_NULL) by name, for the vault to open. Returns 0 or
//  CD_ENOTFOUND.
int cd_q_connections_sealed(cd_db_t *db, int64_t id, const char *name, char **out);

//  One page of connections, newest first.
int cd_q_connections_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);

//  Applies a PATCH body: name, connector_type, config, secret_fields (a
//  key present replaces, null resets); secrets replaces the sealed values
//  unless NULL ("{}" removes them). expected (updated_at as read, or NULL)
//  guards against a change in between: CD_ESTATE with the row as it is
//  (plus "conflict": true) if it no longer matches. CD_ENOTFOUND if no
//  such connection.
int cd_q_connections_patch(cd_db_t *db, int64_t id, const char *json, const char *secrets,
                           const char *expected, char **out);

//  Deletes a connection. Returns 0 or CD_ENOTFOUND.
int cd_q_connections_delete(cd_db_t *db, int64_t id);

//  The vault record, or CD_ENOTFOUND while the vault is not initialised.
int cd_q_vault_get(cd_db_t *db, char **out);

//  Stores the vault record (the statement vault.init). Returns 0, or
//  CD_ENOTFOUND if one exists already (it is kept).
int cd_q_vault_init(cd_db_t *db, const char *record, char **out);

#endif
