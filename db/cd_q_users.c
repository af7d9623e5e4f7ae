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
    "'mfa_secret', u.mfa_secret, 'mfa_last_step', u.mfa_last_step))"

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

//  Failures that count towards a lockout (see 0006_auth.sql): NULL is a
//  failure recorded before outcomes were.
#define S_COUNTED_FAILURE                                                                          \
    "NOT success AND (outcome IS NULL OR outcome IN ('bad_credentials', 'mfa_invalid',"            \
    " 'mfa_replay'))"

//  --- the writes persist runs (cd_q_users_writes) --------------------------------

static const char s_auth_attempt[] =
    "INSERT INTO login_attempts (username, user_id, ip, success, outcome)"
    " VALUES ($1::text, $2::bigint, $3::inet, false, $4::text)"
    " RETURNING json_build_object('id', id, 'outcome', outcome)";

//  The TOTP step moves forward only: a replayed code leaves `ok` false, and
//  then no token is issued and the attempt is recorded as mfa_replay.
static const char s_auth_login[] =
    "WITH m AS (UPDATE users SET mfa_last_step = $6::bigint WHERE id = $2::bigint"
    "  AND $6::bigint IS NOT NULL AND (mfa_last_step IS NULL OR mfa_last_step < $6::bigint)"
    "  RETURNING id),"
    " ok AS (SELECT ($6::bigint IS NULL OR EXISTS (SELECT FROM m)) AS ok),"
    " a AS (INSERT INTO login_attempts (username, user_id, ip, success, outcome)"
    "  SELECT $1::text, $2::bigint, $3::inet, ok.ok,"
    "  CASE WHEN ok.ok THEN 'ok' ELSE 'mfa_replay' END FROM ok),"
    " r AS (INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, ip)"
    "  SELECT $2::bigint, gen_random_uuid(), decode($4::text, 'hex'),"
    "  now() + $5::bigint * interval '1 second', $3::inet FROM ok WHERE ok.ok RETURNING family)"
    " SELECT json_build_object('ok', ok.ok, 'family', (SELECT family FROM r),"
    " 'user', (SELECT " USER_JSON " FROM users u WHERE u.id = $2::bigint)) FROM ok";

//  A token is live if unused, unrevoked, unexpired and its family has no
//  revoked token: a reuse revokes the rows this statement's snapshot sees,
//  and the family check also kills a successor a concurrent rotation just
//  committed. Of two presentations of one token, the second waits for the
//  first's row lock, finds it used, and revokes the family.
static const char s_auth_refresh[] =
    "WITH t AS (SELECT r.user_id, r.family FROM refresh_tokens r"
    "  WHERE r.token_hash = decode($1::text, 'hex')),"
    " used AS (UPDATE refresh_tokens r SET used_at = now()"
    "  WHERE r.token_hash = decode($1::text, 'hex') AND r.used_at IS NULL"
    "  AND r.revoked_at IS NULL AND r.expires_at > now() AND NOT EXISTS (SELECT FROM"
    "  refresh_tokens x WHERE x.family = r.family AND x.revoked_at IS NOT NULL)"
    "  RETURNING r.user_id, r.family),"
    " rv AS (UPDATE refresh_tokens r SET revoked_at = now() WHERE r.family IN (SELECT family"
    "  FROM t) AND r.revoked_at IS NULL AND NOT EXISTS (SELECT FROM used) RETURNING r.id),"
    " n AS (INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, ip)"
    "  SELECT used.user_id, used.family, decode($2::text, 'hex'),"
    "  now() + $3::bigint * interval '1 second', $4::inet FROM used RETURNING user_id, family)"
    " SELECT json_build_object('ok', true, 'family', n.family, 'user', " USER_JSON ")"
    " FROM n JOIN users u ON u.id = n.user_id"
    " UNION ALL SELECT json_build_object('ok', false, 'family', t.family, 'revoked',"
    " (SELECT count(*) FROM rv)) FROM t WHERE NOT EXISTS (SELECT FROM used)";

static const char s_auth_logout[] =
    "WITH r AS (UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1::uuid"
    "  AND user_id = $2::bigint AND revoked_at IS NULL RETURNING id)"
    " SELECT json_build_object('revoked', count(*)) FROM r";

//  The old hash goes to password_history, trimmed to the newest $3 (as
//  cd_q_users_set_password); every other login of the user ends (its
//  families, but $4, the caller's own, are revoked and listed).
static const char s_auth_password[] =
    "WITH old AS (SELECT id, password_hash FROM users WHERE id = $1::bigint FOR UPDATE),"
    " h AS (INSERT INTO password_history (user_id, password_hash)"
    "  SELECT id, password_hash FROM old),"
    " d AS (DELETE FROM password_history p WHERE p.user_id = $1::bigint"
    "  AND p.id NOT IN (SELECT q.id FROM password_history q WHERE q.user_id = $1::bigint"
    "  ORDER BY q.id DESC LIMIT $3::int - 1)),"
    " rv AS (UPDATE refresh_tokens r SET revoked_at = now() FROM old WHERE r.user_id = old.id"
    "  AND r.revoked_at IS NULL AND r.family IS DISTINCT FROM $4::uuid RETURNING r.family),"
    " up AS (UPDATE users u SET password_hash = $2::text, password_changed_at = now() FROM old"
    "  WHERE u.id = old.id RETURNING " USER_JSON " AS j)"
    " SELECT json_build_object('user', up.j, 'families',"
    " (SELECT coalesce(json_agg(DISTINCT family), '[]') FROM rv)) FROM up";

//  A new secret while MFA is off; {"conflict": true} while it is on.
static const char s_auth_mfa_setup[] =
    "WITH up AS (UPDATE users u SET mfa_secret = $2::text WHERE u.id = $1::bigint"
    "  AND NOT u.mfa_enabled RETURNING " USER_JSON " AS j)"
    " SELECT j FROM up UNION ALL SELECT json_build_object('conflict', true) FROM users"
    " WHERE id = $1::bigint AND NOT EXISTS (SELECT FROM up)";

//  No row: the secret changed meanwhile, or the code's step was used.
static const char s_auth_mfa_enable[] =
    "UPDATE users u SET mfa_enabled = true, mfa_last_step = $3::bigint WHERE u.id = $1::bigint"
    " AND u.mfa_secret = $2::text AND (u.mfa_last_step IS NULL OR u.mfa_last_step < $3::bigint)"
    " RETURNING " USER_JSON;

static const char s_users_insert[] =
    "INSERT INTO users AS u (username, password_hash, role) VALUES ($1::text, $2::text, $3::text)"
    " RETURNING " USER_JSON;

//  A new password ($3) keeps the history as above; a new password or role
//  ends every login of the user (its refresh tokens), and the answer lists
//  those logins' families.
static const char s_users_update[] =
    "WITH old AS (SELECT id, password_hash, role FROM users WHERE id = $1::bigint FOR UPDATE),"
    " h AS (INSERT INTO password_history (user_id, password_hash)"
    "  SELECT id, password_hash FROM old WHERE $3::text IS NOT NULL),"
    " d AS (DELETE FROM password_history p WHERE $3::text IS NOT NULL AND p.user_id = $1::bigint"
    "  AND p.id NOT IN (SELECT q.id FROM password_history q WHERE q.user_id = $1::bigint"
    "  ORDER BY q.id DESC LIMIT $4::int - 1)),"
    " rv AS (UPDATE refresh_tokens r SET revoked_at = now() FROM old WHERE r.user_id = old.id"
    "  AND r.revoked_at IS NULL AND ($3::text IS NOT NULL OR ($2::jsonb ? 'role'"
    "  AND $2::jsonb ->> 'role' IS DISTINCT FROM old.role)) RETURNING r.family),"
    " up AS (UPDATE users u SET"
    "  username = CASE WHEN $2::jsonb ? 'username' THEN $2::jsonb ->> 'username' ELSE u.username"
    "  END,"
    "  role = CASE WHEN $2::jsonb ? 'role' THEN $2::jsonb ->> 'role' ELSE u.role END,"
    "  password_hash = coalesce($3::text, u.password_hash),"
    "  password_changed_at = CASE WHEN $3::text IS NULL THEN u.password_changed_at ELSE now()"
    "  END FROM old WHERE u.id = old.id RETURNING " USER_JSON " AS j)"
    " SELECT json_build_object('user', up.j, 'families',"
    " (SELECT coalesce(json_agg(DISTINCT family), '[]') FROM rv)) FROM up";

//  The families of the user's logins (its refresh tokens go with it).
static const char s_users_remove[] =
    "WITH f AS (SELECT DISTINCT family FROM refresh_tokens WHERE user_id = $1::bigint"
    "  AND revoked_at IS NULL),"
    " d AS (DELETE FROM users WHERE id = $1::bigint RETURNING id)"
    " SELECT json_build_object('id', d.id, 'families', (SELECT coalesce(json_agg(family), '[]')"
    " FROM f)) FROM d";

static const char s_api_keys_insert[] =
    "INSERT INTO api_keys AS k (user_id, name, prefix, key_hash)"
    " VALUES ($1::bigint, $2::text, $3::text, decode($4::text, 'hex')) RETURNING " KEY_JSON;

static const char s_api_keys_remove[] =
    "DELETE FROM api_keys WHERE id = $1::bigint AND ($2::bigint IS NULL OR user_id = $2::bigint)"
    " RETURNING json_build_object('id', id, 'user_id', user_id, 'key_hash',"
    " encode(key_hash, 'hex'))";

static const char s_api_keys_touch[] =
    "UPDATE api_keys SET last_used_at = now() WHERE key_hash = decode($1::text, 'hex')"
    " RETURNING json_build_object('id', id)";

static const char s_bans_insert[] =
    "INSERT INTO banned_ips AS b (ip, reason, expires_at, created_by)"
    " VALUES ($1::inet, coalesce($2::text, ''), $3::timestamptz, $4::bigint) RETURNING " BAN_JSON;

static const char s_bans_remove[] =
    "DELETE FROM banned_ips WHERE id = $1::bigint RETURNING json_build_object('id', id)";

const cd_q_write_t cd_q_users_writes[] = {
    {"auth.attempt", s_auth_attempt, 4},       {"auth.login", s_auth_login, 6},
    {"auth.refresh", s_auth_refresh, 4},       {"auth.logout", s_auth_logout, 2},
    {"auth.password", s_auth_password, 4},     {"auth.mfa_setup", s_auth_mfa_setup, 2},
    {"auth.mfa_enable", s_auth_mfa_enable, 3}, {"users.insert", s_users_insert, 3},
    {"users.update", s_users_update, 4},       {"users.delete", s_users_remove, 1},
    {"api_keys.insert", s_api_keys_insert, 4}, {"api_keys.delete", s_api_keys_remove, 2},
    {"api_keys.touch", s_api_keys_touch, 1},   {"bans.insert", s_bans_insert, 4},
    {"bans.delete", s_bans_remove, 1},
};

const size_t cd_q_users_n_writes = sizeof cd_q_users_writes / sizeof cd_q_users_writes[0];

//  --- users ------------------------------------------------------------

int
cd_q_users_insert(cd_db_t *db, const char *username, const char *password_hash, const char *role,
                  char **out)
{
    const char *params[] = {username, password_hash, role};
    return cd__q_one(db, s_users_insert, 3, params, out);
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
        " (SELECT ts FROM login_attempts WHERE lower(username) = lower($1) AND " S_COUNTED_FAILURE
        "  AND ts > now() - $4::bigint * interval '1 second'"
        "  ORDER BY ts DESC OFFSET $3::int - 1 LIMIT 1)"
        " UNION ALL"
        " (SELECT ts FROM login_attempts WHERE ip = $2::inet AND " S_COUNTED_FAILURE
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
    return cd__q_one(db, s_bans_insert, 4, params, out);
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
    return cd__q_one(db, s_api_keys_insert, 4, params, out);
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

//  --- the writes as functions (the same SQL persist runs) --------------------------

int
cd_q_logins_fail(cd_db_t *db, const char *username, int64_t user_id, const char *ip,
                 const char *outcome, char **out)
{
    char b1[24];
    const char *params[] = {username, cd__q_i64(b1, user_id), ip, outcome};
    return cd__q_one(db, s_auth_attempt, 4, params, out);
}

int
cd_q_auth_login(cd_db_t *db, const char *username, int64_t user_id, const char *ip,
                const char *hash_hex, int64_t ttl_s, int64_t step, char **out)
{
    char b1[24], b2[24], b3[24];
    const char *params[] = {username, cd__q_i64(b1, user_id), ip,
                            hash_hex, cd__q_i64(b2, ttl_s),   cd__q_i64(b3, step)};
    return cd__q_one(db, s_auth_login, 6, params, out);
}

int
cd_q_auth_refresh(cd_db_t *db, const char *old_hex, const char *new_hex, int64_t ttl_s,
                  const char *ip, char **out)
{
    char b1[24];
    const char *params[] = {old_hex, new_hex, cd__q_i64(b1, ttl_s), ip};
    return cd__q_one(db, s_auth_refresh, 4, params, out);
}

int
cd_q_auth_logout(cd_db_t *db, const char *family, int64_t user_id, char **out)
{
    char b1[24];
    const char *params[] = {family, cd__q_i64(b1, user_id)};
    return cd__q_one(db, s_auth_logout, 2, params, out);
}

int
cd_q_auth_password(cd_db_t *db, int64_t user_id, const char *password_hash, int keep,
                   const char *family, char **out)
{
    if (keep < 1) {
        *out = NULL;
        return CD_EINVAL;
    }
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, user_id), password_hash, cd__q_i64(b2, keep), family};
    return cd__q_one(db, s_auth_password, 4, params, out);
}

int
cd_q_auth_mfa_setup(cd_db_t *db, int64_t user_id, const char *secret, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, user_id), secret};
    return cd__q_one(db, s_auth_mfa_setup, 2, params, out);
}

int
cd_q_auth_mfa_enable(cd_db_t *db, int64_t user_id, const char *secret, int64_t step, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, user_id), secret, cd__q_i64(b2, step)};
    return cd__q_one(db, s_auth_mfa_enable, 3, params, out);
}

int
cd_q_users_update(cd_db_t *db, int64_t id, const char *json, const char *password_hash, int keep,
                  char **out)
{
    if (keep < 1) {
        *out = NULL;
        return CD_EINVAL;
    }
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), json, password_hash, cd__q_i64(b2, keep)};
    return cd__q_one(db, s_users_update, 4, params, out);
}

int
cd_q_users_remove(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, s_users_remove, 1, params, out);
}

int
cd_q_api_keys_remove(cd_db_t *db, int64_t id, int64_t user_id, char **out)
{
    char b1[24], b2[24];
    const char *params[] = {cd__q_i64(b1, id), cd__q_i64(b2, user_id)};
    return cd__q_one(db, s_api_keys_remove, 2, params, out);
}

int
cd_q_api_keys_touch(cd_db_t *db, const char *hash_hex, char **out)
{
    const char *params[] = {hash_hex};
    return cd__q_one(db, s_api_keys_touch, 1, params, out);
}

int
cd_q_bans_remove(cd_db_t *db, int64_t id, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id)};
    return cd__q_one(db, s_bans_remove, 1, params, out);
}

//  --- reads for the HTTP thread's caches --------------------------------------------

int
cd_q_api_keys_lookup(cd_db_t *db, const char *hash_hex, char **out)
{
    const char *params[] = {hash_hex};
    return cd__q_one(db,
                     "SELECT json_build_object('key_id', k.id, 'user_id', u.id, 'role', u.role)"
                     " FROM api_keys k JOIN users u ON u.id = k.user_id"
                     " WHERE k.key_hash = decode($1, 'hex')",
                     1, params, out);
}

int
cd_q_bans_live(cd_db_t *db, char **out)
{
    return cd__q_one(
        db,
        "SELECT coalesce(json_agg(json_build_object('ip', host(b.ip) || '/' || masklen(b.ip),"
        " 'expires_at_s', floor(extract(epoch FROM b.expires_at))::bigint) ORDER BY b.id), '[]')"
        " FROM banned_ips b WHERE b.expires_at IS NULL OR b.expires_at > now()",
        0, NULL, out);
}

//  --- per-installation keys ------------------------------------------------------------

int
cd_q_auth_key(cd_db_t *db, const char *name, const char *candidate_hex, char **out_hex)
{
    const char *params[] = {name, candidate_hex};
    //  Of nodes starting together, the first INSERT wins; every node reads
    //  the winner back (the CTE's own snapshot cannot see another's row, so
    //  the read is a second statement).
    int rc = cd_db_exec_params(db,
                               "INSERT INTO auth_keys (name, key) VALUES ($1, decode($2, 'hex'))"
                               " ON CONFLICT (name) DO NOTHING",
                               2, params, NULL);
    if (rc != 0) {
        *out_hex = NULL;
        return rc;
    }
    return cd__q_one(db, "SELECT encode(key, 'hex') FROM auth_keys WHERE name = $1", 1, params,
                     out_hex); //  $1 only: params[1] is not sent
}
