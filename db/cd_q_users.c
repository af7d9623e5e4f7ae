/*  cd_q_users: queries on users, password_history, login_attempts,
    banned_ips, refresh_tokens and api_keys (see cd_q_users.h).

    Refresh-token rotation is one compare-and-set UPDATE: of two requests
    presenting the same token, the second waits for the first's row lock,
    re-checks "unused" against the committed row and fails, which is
    exactly the reuse the caller must punish by revoking the family.

    Interface: cd_q_users_insert, cd_q_users_get, cd_q_users_auth,
    cd_q_users_list, cd_q_users_patch, cd_q_users_delete,
    cd_q_users_count, cd_q_users_set_password, cd_q_users_password_history,
    cd_q_users_set_mfa, cd_q_logins_record, cd_q_logins_lockout,
    cd_q_logins_purge, cd_q_bans_insert, cd_q_bans_list, cd_q_bans_delete,
    cd_q_bans_check, cd_q_refresh_insert, cd_q_refresh_use,
    cd_q_refresh_revoke_family, cd_q_refresh_revoke_user,
    cd_q_refresh_purge, cd_q_api_keys_insert, cd_q_api_keys_list,
    cd_q_api_keys_delete, cd_q_api_keys_auth. */
#include "cd_q_users.h"
#include "cd_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USER_JSON                                                                                  \
    "json_build_object('id', u.id, 'username', u.username, 'role', u.role, 'mfa_enabled', "        \
    "u.mfa_enabled, 'created_at', cd_ts(u.created_at), 'updated_at', cd_ts(u.updated_at), "        \
    "'password_changed_at', cd_ts(u.password_changed_at))"

#define USER_AUTH_JSON                                                                             \
    "(" USER_JSON "::jsonb || jsonb_build_object('password_hash', u.password_hash, "               \
    "'mfa_secret', u.mfa_secret))"

#define BAN_JSON                                                                                   \
    "json_build_object('id', b.id, 'ip', host(b.ip) || CASE WHEN masklen(b.ip) < "                 \
    "CASE family(b.ip) WHEN 4 THEN 32 ELSE 128 END THEN '/' || masklen(b.ip) ELSE '' END, "        \
    "'reason', b.reason, 'created_by', b.created_by, 'created_at', cd_ts(b.created_at), "          \
    "'expires_at', cd_ts(b.expires_at))"

#define REFRESH_JSON                                                                               \
    "json_build_object('id', r.id, 'user_id', r.user_id, 'family', r.family, 'created_at', "       \
    "cd_ts(r.created_at), 'expires_at', cd_ts(r.expires_at), 'used_at', cd_ts(r.used_at), "        \
    "'revoked_at', cd_ts(r.revoked_at))"

#define KEY_JSON                                                                                   \
    "json_build_object('id', k.id, 'user_id', k.user_id, 'name', k.name, 'prefix', k.prefix, "     \
    "'created_at', cd_ts(k.created_at), 'last_used_at', cd_ts(k.last_used_at))"

//  --- users ------------------------------------------------------------

int
cd_q_users_insert(cd_db_t *db, const char *username, const char *password_hash, const char *role,
                  char **out)
{
    const char *params[] = {username, password_hash, role};
    return cd__q_one(db,
                     "INSERT INTO users AS u (username, password_hash, role) VALUES ($1, $2, $3)"
                     " RETURNING " USER_JSON,
                     3, params, out);
}

int
cd_q_users_get(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, "SELECT " USER_JSON " FROM users u WHERE u.id = $1", 1, params, out);
}

int
cd_q_users_auth(cd_db_t *db, int64_t id, const char *username, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), username};
    return cd__q_one(db,
                     "SELECT " USER_AUTH_JSON " FROM users u WHERE CASE WHEN $1::bigint IS NULL"
                     " THEN lower(u.username) = lower($2) ELSE u.id = $1 END",
                     2, params, out);
}

int
cd_q_users_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out)
{
    const char *params[] = {cursor, NULL};
    return cd__q_page(db,
                      "SELECT u.id, " USER_JSON
                      " FROM users u WHERE ($1::bigint IS NULL OR u.id < $1)"
                      " ORDER BY u.id DESC LIMIT $2",
                      2, params, limit, out);
}

int
cd_q_users_patch(cd_db_t *db, int64_t id, const char *json, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), json};
    return cd__q_one(
        db,
        "UPDATE users u SET"
        " username = CASE WHEN $2::jsonb ? 'username' THEN $2::jsonb ->> 'username'"
        " ELSE u.username END,"
        " role = CASE WHEN $2::jsonb ? 'role' THEN $2::jsonb ->> 'role' ELSE u.role END"
        " WHERE u.id = $1 RETURNING " USER_JSON,
        2, params, out);
}

int
cd_q_users_delete(cd_db_t *db, int64_t id)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_write(db, "DELETE FROM users WHERE id = $1", 1, params, NULL);
}

int
cd_q_users_count(cd_db_t *db, int64_t *count)
{
    return cd_db_query_int64(db, "SELECT count(*) FROM users", 0, NULL, count);
}

int
cd_q_users_set_password(cd_db_t *db, int64_t id, const char *password_hash, int keep, char **out)
{
    if (keep < 1) {
        *out = NULL;
        return CD_EINVAL;
    }
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), password_hash, cd__q_i64(b2, keep)};
    //  All sub-statements share one snapshot: the trim does not see the
    //  row the history insert adds, so it keeps keep - 1 older rows and
    //  the new one makes keep.
    return cd__q_one(db,
                     "WITH old AS (SELECT id, password_hash FROM users WHERE id = $1 FOR UPDATE),"
                     " h AS (INSERT INTO password_history (user_id, password_hash)"
                     "  SELECT id, password_hash FROM old),"
                     " d AS (DELETE FROM password_history p WHERE p.user_id = $1"
                     "  AND p.id NOT IN (SELECT q.id FROM password_history q WHERE q.user_id = $1"
                     "  ORDER BY q.id DESC LIMIT $3::int - 1))"
                     " UPDATE users u SET password_hash = $2, password_changed_at = now()"
                     " FROM old WHERE u.id = old.id RETURNING " USER_JSON,
                     3, params, out);
}

int
cd_q_users_password_history(cd_db_t *db, int64_t id, int limit, cd_q_page_t *out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), cd__q_i64(b2, cd__q_limit(limit))};
    return cd__q_all(db,
                     "SELECT json_build_object('password_hash', p.password_hash, 'created_at',"
                     " cd_ts(p.created_at)) FROM password_history p WHERE p.user_id = $1"
                     " ORDER BY p.id DESC LIMIT $2",
                     2, params, out);
}

int
cd_q_users_set_mfa(cd_db_t *db, int64_t id, const char *secret, bool enabled, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), secret, enabled ? "true" : "false"};
    return cd__q_one(db,
                     "UPDATE users u SET mfa_secret = $2, mfa_enabled = $3 WHERE u.id = $1"
                     " RETURNING " USER_JSON,
                     3, params, out);
}

//  --- login attempts ---------------------------------------------------

int
cd_q_logins_record(cd_db_t *db, const char *username, int64_t user_id, const char *ip, bool success)
{
    char b1[24];
    const char *params[] = {username, cd__q_i64(b1, user_id), ip, success ? "true" : "false"};
    return cd_db_exec_params(db,
                             "INSERT INTO login_attempts (username, user_id, ip, success)"
                             " VALUES ($1, $2, $3, $4)",
                             4, params, NULL);
}

int
cd_q_logins_lockout(cd_db_t *db, const char *username, const char *ip, int max_failures,
                    int64_t window_s, int64_t *retry_after_s)
{
    *retry_after_s = 0;
    if (max_failures < 1 || window_s < 1) {
        return CD_EINVAL;
    }
    char b1[24], b2[24];
    const char *params[] = {username, ip, cd__q_i64(b1, max_failures), cd__q_i64(b2, window_s)};
    //  The max_failures-th newest failure inside the window, per key: once
    //  it leaves the window fewer than max_failures remain.
    return cd_db_query_int64(
        db,
        "SELECT coalesce(max(greatest(1, ceil(extract(epoch FROM f.ts + $4::bigint * interval"
        " '1 second' - now())))), 0)::bigint FROM ("
        " (SELECT ts FROM login_attempts WHERE lower(username) = lower($1) AND NOT success"
        "  AND ts > now() - $4::bigint * interval '1 second'"
        "  ORDER BY ts DESC OFFSET $3::int - 1 LIMIT 1)"
        " UNION ALL"
        " (SELECT ts FROM login_attempts WHERE ip = $2::inet AND NOT success"
        "  AND ts > now() - $4::bigint * interval '1 second'"
        "  ORDER BY ts DESC OFFSET $3::int - 1 LIMIT 1)) f",
        4, params, retry_after_s);
}

int
cd_q_logins_purge(cd_db_t *db, const char *before, int64_t *count)
{
    const char *params[] = {before};
    return cd_db_exec_params(db, "DELETE FROM login_attempts WHERE ts < $1::timestamptz", 1, params,
                             count);
}

//  --- banned addresses ----------------------------------------------------

int
cd_q_bans_insert(cd_db_t *db, const char *ip, const char *reason, const char *expires_at,
                 int64_t created_by, char **out)
{
    char b1[24];
    const char *params[] = {ip, reason, expires_at, cd__q_i64(b1, created_by)};
    return cd__q_one(db,
                     "INSERT INTO banned_ips AS b (ip, reason, expires_at, created_by)"
                     " VALUES ($1::inet, coalesce($2, ''), $3, $4) RETURNING " BAN_JSON,
                     4, params, out);
}

int
cd_q_bans_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out)
{
    const char *params[] = {cursor, NULL};
    return cd__q_page(db,
                      "SELECT b.id, " BAN_JSON " FROM banned_ips b"
                      " WHERE ($1::bigint IS NULL OR b.id < $1) ORDER BY b.id DESC LIMIT $2",
                      2, params, limit, out);
}

int
cd_q_bans_delete(cd_db_t *db, int64_t id)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_write(db, "DELETE FROM banned_ips WHERE id = $1", 1, params, NULL);
}

int
cd_q_bans_check(cd_db_t *db, const char *ip, bool *banned)
{
    *banned = false;
    const char *params[] = {ip};
    int64_t n = 0;
    int rc = cd_db_query_int64(db,
                               "SELECT count(*) FROM banned_ips WHERE ip >>= $1::inet"
                               " AND (expires_at IS NULL OR expires_at > now())",
                               1, params, &n);
    *banned = rc == 0 && n > 0;
    return rc;
}

//  --- refresh tokens ---------------------------------------------------

int
cd_q_refresh_insert(cd_db_t *db, int64_t user_id, const char *family, const char *hash_hex,
                    int64_t ttl_s, const char *ip, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, user_id), family, hash_hex, cd__q_i64(b2, ttl_s), ip};
    return cd__q_one(db,
                     "INSERT INTO refresh_tokens AS r (user_id, family, token_hash, expires_at, ip)"
                     " VALUES ($1, coalesce($2::uuid, gen_random_uuid()), decode($3, 'hex'),"
                     " now() + $4::bigint * interval '1 second', $5::inet) RETURNING " REFRESH_JSON,
                     5, params, out);
}

int
cd_q_refresh_use(cd_db_t *db, const char *hash_hex, char **out)
{
    const char *params[] = {hash_hex};
    return cd__q_cas(db,
                     "WITH u AS (UPDATE refresh_tokens r SET used_at = now()"
                     " WHERE r.token_hash = decode($1, 'hex') AND r.used_at IS NULL"
                     " AND r.revoked_at IS NULL AND r.expires_at > now() RETURNING " REFRESH_JSON
                     " AS j)"
                     " SELECT true, j FROM u UNION ALL SELECT false, " REFRESH_JSON
                     " FROM refresh_tokens r WHERE r.token_hash = decode($1, 'hex')"
                     " AND NOT EXISTS (SELECT FROM u)",
                     1, params, out);
}

int
cd_q_refresh_revoke_family(cd_db_t *db, const char *family, int64_t *count)
{
    const char *params[] = {family};
    return cd_db_exec_params(db,
                             "UPDATE refresh_tokens SET revoked_at = now()"
                             " WHERE family = $1::uuid AND revoked_at IS NULL",
                             1, params, count);
}

int
cd_q_refresh_revoke_user(cd_db_t *db, int64_t user_id, int64_t *count)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, user_id)};
    return cd_db_exec_params(db,
                             "UPDATE refresh_tokens SET revoked_at = now()"
                             " WHERE user_id = $1 AND revoked_at IS NULL",
                             1, params, count);
}

int
cd_q_refresh_purge(cd_db_t *db, int64_t *count)
{
    return cd_db_exec_params(db, "DELETE FROM refresh_tokens WHERE expires_at <= now()", 0, NULL,
                             count);
}

//  --- API keys ---------------------------------------------------------

int
cd_q_api_keys_insert(cd_db_t *db, int64_t user_id, const char *name, const char *prefix,
                     const char *hash_hex, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, user_id), name, prefix, hash_hex};
    return cd__q_one(db,
                     "INSERT INTO api_keys AS k (user_id, name, prefix, key_hash)"
                     " VALUES ($1, $2, $3, decode($4, 'hex')) RETURNING " KEY_JSON,
                     4, params, out);
}

int
cd_q_api_keys_list(cd_db_t *db, int64_t user_id, const char *cursor, int limit, cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, user_id), cursor, NULL};
    return cd__q_page(db,
                      "SELECT k.id, " KEY_JSON " FROM api_keys k"
                      " WHERE ($1::bigint IS NULL OR k.user_id = $1)"
                      " AND ($2::bigint IS NULL OR k.id < $2) ORDER BY k.id DESC LIMIT $3",
                      3, params, limit, out);
}

int
cd_q_api_keys_delete(cd_db_t *db, int64_t id, int64_t user_id)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), cd__q_i64(b2, user_id)};
    return cd__q_write(
        db, "DELETE FROM api_keys WHERE id = $1 AND ($2::bigint IS NULL OR user_id = $2)", 2,
        params, NULL);
}

int
cd_q_api_keys_auth(cd_db_t *db, const char *hash_hex, char **out)
{
    const char *params[] = {hash_hex};
    return cd__q_one(db,
                     "WITH k AS (UPDATE api_keys SET last_used_at = now()"
                     " WHERE key_hash = decode($1, 'hex') RETURNING id, user_id)"
                     " SELECT json_build_object('key_id', k.id, 'user', " USER_JSON ")"
                     " FROM k JOIN users u ON u.id = k.user_id",
                     1, params, out);
}
