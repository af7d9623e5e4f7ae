/*  cd_q_users: users and what authentication keeps about them:
    password_history, login_attempts, banned_ips, refresh_tokens, api_keys.

    Conventions: cd_q.h. A user row is API.md's user: {id, username, role,
    mfa_enabled, created_at} plus password_changed_at and updated_at. The
    password hash and TOTP secret appear only in cd_q_users_auth's row.
    Token and key hashes cross as 64 hex digits (32 bytes); computing them
    (and comparing passwords) is the caller's job. Usernames are unique
    regardless of case.

    Writes through persist (cd_q_users_writes; each function of the
    "writes" section below runs the same SQL, for the db tests):
      "auth.attempt"     ($1 username, $2 user id, $3 ip, $4 outcome) a failed
                         login (outcome: bad_credentials, locked, mfa_required,
                         mfa_invalid, mfa_replay) -> {id, outcome}
      "auth.login"       ($1 username, $2 user id, $3 ip, $4 refresh hash hex,
                         $5 ttl s, $6 TOTP step or NULL) -> {ok, family, user};
                         ok false (and no token) when the step was used already
      "auth.refresh"     ($1 presented hash, $2 next hash, $3 ttl s, $4 ip) ->
                         {ok: true, family, user} (rotated), {ok: false, family,
                         revoked: n} (a dead token: its family is revoked), or
                         no row (unknown)
      "auth.logout"      ($1 family, $2 user id) -> {revoked: n}
      "auth.password"    ($1 user id, $2 hash, $3 history kept, $4 family kept)
                         -> {user, families: [the revoked other families]}
      "auth.mfa_setup"   ($1 user id, $2 base32 secret) -> user, or
                         {conflict: true} while MFA is on; no row: no user
      "auth.mfa_enable"  ($1 user id, $2 the secret, $3 step) -> user; no row
                         if the secret changed or the step was used
      "users.insert"     ($1 username, $2 hash, $3 role) -> user
      "users.update"     ($1 id, $2 {username?, role?}, $3 hash or NULL, $4
                         history kept) -> {user, families}; a new password or
                         role revokes the user's refresh tokens (their
                         families are listed)
      "users.delete"     ($1 id) -> {id, families: the user's live logins}
      "api_keys.insert"  ($1 user id, $2 name, $3 prefix, $4 hash hex) -> key
      "api_keys.delete"  ($1 id, $2 owner or NULL) -> {id, user_id, key_hash}
      "api_keys.touch"   ($1 hash hex) -> {id}
      "bans.insert"      ($1 ip, $2 reason, $3 expires_at, $4 created_by) -> ban
      "bans.delete"      ($1 id) -> {id} */
#ifndef CD_DB_Q_USERS_H
#define CD_DB_Q_USERS_H

#include "cd_q.h"

#include <stdbool.h>

extern const cd_q_write_t cd_q_users_writes[];
extern const size_t cd_q_users_n_writes;

//  --- users ------------------------------------------------------------

//  Creates a user: username, its password_hash (crypto_pwhash_str
//  output), role "admin" or "user". Returns 0 and the user in *out
//  (caller frees); CD_EDB 23505 if the username is taken (in any case),
//  23514 for a bad username or role.
int cd_q_users_insert(cd_db_t *db, const char *username, const char *password_hash,
                      const char *role, char **out);

//  The user with this id, or CD_ENOTFOUND.
int cd_q_users_get(cd_db_t *db, int64_t id, char **out);

//  The user row plus password_hash, mfa_secret and mfa_last_step, for checking
//  credentials: by id, or (id CD_Q_NULL) by username in any case.
//  Returns 0 or CD_ENOTFOUND.
int cd_q_users_auth(cd_db_t *db, int64_t id, const char *username, char **out);

//  One page of users, newest first.
int cd_q_users_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);

//  Applies a PATCH body: username, role. Returns 0 and the user;
//  CD_ENOTFOUND; CD_EDB as for insert.
int cd_q_users_patch(cd_db_t *db, int64_t id, const char *json, char **out);

//  Deletes a user (their tokens, keys and history go with them; their
//  tasks and projects stay, with created_by null). Returns 0 or
//  CD_ENOTFOUND.
int cd_q_users_delete(cd_db_t *db, int64_t id);

//  Number of users in *count (0 on a first start).
int cd_q_users_count(cd_db_t *db, int64_t *count);

//  Replaces the password hash in one statement: the old hash goes to
//  password_history, of which the newest `keep` (>= 1) hashes are kept.
//  Returns 0 and the user; CD_ENOTFOUND; CD_EINVAL for keep < 1.
int cd_q_users_set_password(cd_db_t *db, int64_t id, const char *password_hash, int keep,
                            char **out);

//  The user's previous password hashes, newest first, at most limit:
//  items [{password_hash, created_at}].
int cd_q_users_password_history(cd_db_t *db, int64_t id, int limit, cd_q_page_t *out);

//  Sets the TOTP secret (base32, or NULL to clear) and whether MFA is on.
//  Returns 0 and the user; CD_ENOTFOUND; CD_EDB 23514 when enabling
//  without a secret.
int cd_q_users_set_mfa(cd_db_t *db, int64_t id, const char *secret, bool enabled, char **out);

//  --- login attempts ---------------------------------------------------

//  Records a login attempt: the username as typed, the user it named (or
//  CD_Q_NULL), the client address, the outcome.
int cd_q_logins_record(cd_db_t *db, const char *username, int64_t user_id, const char *ip,
                       bool success);

//  Lockout check: if the last max_failures failures of this username (any
//  case, from any address), or from this address (for any user), all fall
//  within the last window_s seconds, *retry_after_s receives the whole
//  seconds until the oldest of them leaves the window (>= 1); else 0.
int cd_q_logins_lockout(cd_db_t *db, const char *username, const char *ip, int max_failures,
                        int64_t window_s, int64_t *retry_after_s);

//  Deletes attempts older than before (RFC 3339); *count gets how many.
int cd_q_logins_purge(cd_db_t *db, const char *before, int64_t *count);

//  --- banned addresses ----------------------------------------------------

//  Bans ip (an address or a network, "10.0.0.0/8") with a reason, until
//  expires_at (RFC 3339, or NULL for ever). Returns 0 and {id, ip,
//  reason, created_by, created_at, expires_at}; CD_EDB 23505 if already
//  banned, 22P02 for a bad address.
int cd_q_bans_insert(cd_db_t *db, const char *ip, const char *reason, const char *expires_at,
                     int64_t created_by, char **out);

//  One page of bans, newest first.
int cd_q_bans_list(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);

//  Lifts a ban. Returns 0 or CD_ENOTFOUND.
int cd_q_bans_delete(cd_db_t *db, int64_t id);

//  *banned: whether ip falls inside a ban that has not expired.
int cd_q_bans_check(cd_db_t *db, const char *ip, bool *banned);

//  --- refresh tokens ---------------------------------------------------

//  Stores a refresh token by its hash (hex) for user_id, in family (a
//  UUID, or NULL to start a new family at login), valid ttl_s seconds,
//  issued to ip (or NULL). Returns 0 and {id, user_id, family,
//  created_at, expires_at, used_at, revoked_at}.
int cd_q_refresh_insert(cd_db_t *db, int64_t user_id, const char *family, const char *hash_hex,
                        int64_t ttl_s, const char *ip, char **out);

//  Presents a refresh token: if it is live (unused, unrevoked,
//  unexpired) it is marked used, atomically, and 0 returns its row. If
//  it exists but is dead, CD_ESTATE returns its row (a reused token: the
//  caller revokes the family). CD_ENOTFOUND if unknown. Of two
//  concurrent presentations of one token, exactly one gets 0.
int cd_q_refresh_use(cd_db_t *db, const char *hash_hex, char **out);

//  Revokes every live token of a family, or of a user. *count (if not
//  NULL) receives how many.
int cd_q_refresh_revoke_family(cd_db_t *db, const char *family, int64_t *count);
int cd_q_refresh_revoke_user(cd_db_t *db, int64_t user_id, int64_t *count);

//  Deletes expired tokens; *count gets how many.
int cd_q_refresh_purge(cd_db_t *db, int64_t *count);

//  --- API keys ---------------------------------------------------------

//  Stores an API key of user_id by its hash (hex), with a name and the
//  short prefix shown in lists. Returns 0 and {id, user_id, name,
//  prefix, created_at, last_used_at}.
int cd_q_api_keys_insert(cd_db_t *db, int64_t user_id, const char *name, const char *prefix,
                         const char *hash_hex, char **out);

//  One page of keys of user_id (CD_Q_NULL: everyone's), newest first.
int cd_q_api_keys_list(cd_db_t *db, int64_t user_id, const char *cursor, int limit,
                       cd_q_page_t *out);

//  Deletes key id, if it belongs to user_id (CD_Q_NULL: anyone's).
//  Returns 0 or CD_ENOTFOUND.
int cd_q_api_keys_delete(cd_db_t *db, int64_t id, int64_t user_id);

//  Authenticates by key hash: records the use and returns {key_id, user:
//  {user row}}, or CD_ENOTFOUND.
int cd_q_api_keys_auth(cd_db_t *db, const char *hash_hex, char **out);

//  --- the writes (see the list above) ---------------------------------------

int cd_q_logins_fail(cd_db_t *db, const char *username, int64_t user_id, const char *ip,
                     const char *outcome, char **out);
int cd_q_auth_login(cd_db_t *db, const char *username, int64_t user_id, const char *ip,
                    const char *hash_hex, int64_t ttl_s, int64_t step, char **out);
int cd_q_auth_refresh(cd_db_t *db, const char *old_hex, const char *new_hex, int64_t ttl_s,
                      const char *ip, char **out);
int cd_q_auth_logout(cd_db_t *db, const char *family, int64_t user_id, char **out);
//  CD_EINVAL for keep < 1.
int cd_q_auth_password(cd_db_t *db, int64_t user_id, const char *password_hash, int keep,
                       const char *family, char **out);
int cd_q_auth_mfa_setup(cd_db_t *db, int64_t user_id, const char *secret, char **out);
int cd_q_auth_mfa_enable(cd_db_t *db, int64_t user_id, const char *secret, int64_t step,
                         char **out);
//  CD_EINVAL for keep < 1.
int cd_q_users_update(cd_db_t *db, int64_t id, const char *json, const char *password_hash,
                      int keep, char **out);
int cd_q_users_remove(cd_db_t *db, int64_t id, char **out);
int cd_q_api_keys_remove(cd_db_t *db, int64_t id, int64_t user_id, char **out);
int cd_q_api_keys_touch(cd_db_t *db, const char *hash_hex, char **out);
int cd_q_bans_remove(cd_db_t *db, int64_t id, char **out);

//  --- reads for the HTTP thread's caches -----------------------------------------

//  The key with this hash: {key_id, user_id, role}, or CD_ENOTFOUND.
//  Writes nothing (last_used_at is "api_keys.touch").
int cd_q_api_keys_lookup(cd_db_t *db, const char *hash_hex, char **out);

//  Every ban in force: a JSON array of {ip: "addr/prefix", expires_at_s:
//  Unix seconds or null}, oldest first.
int cd_q_bans_live(cd_db_t *db, char **out);

//  --- per-installation keys (0005_security_keys.sql) ---------------------------------

//  The key named name ("jwt", "token_hash") as 64 hex digits in *out_hex
//  (caller frees): candidate_hex (a fresh random key) is stored if the
//  installation has none yet, and whatever is stored is returned, so
//  nodes starting together agree. Runs on a connection outside a
//  transaction (node start-up).
int cd_q_auth_key(cd_db_t *db, const char *name, const char *candidate_hex, char **out_hex);

#endif
