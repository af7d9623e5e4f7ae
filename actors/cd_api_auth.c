/*  cd_api_auth: identity and access for the REST API (API.md
    "Authentication"): login, refresh, logout, me, password, MFA; users
    (A); API keys; banned addresses (A); the audit log (A). And two
    operations no route names, which the HTTP thread calls to fill its
    caches: auth.key_resolve (an API key's owner by the key's hash) and
    auth.bans_live (the bans in force).

    Who does what. The HTTP thread verifies every access token and API key
    itself (http/cd_auth.c); this module issues them and keeps the tables.
    Passwords are hashed and checked by the hasher actors (cd_hasher.h),
    never here: a request that needs argon2id is parked on a call to
    `auth/<i>` (round-robin) and resumed by the answer. An api actor has at
    most CD_HASHER_INFLIGHT_MAX such jobs out; beyond, 503 not_ready with
    Retry-After at once, so a login flood is refused quickly instead of
    queueing (and each job carries a deadline, past which the hasher drops
    it). Every write goes through persist (db/cd_q_users.h lists the
    statements), and the answer leaves after the commit.

    Login. The lockout check (5 counted failures in 15 min for the name
    as typed, or from the address) comes first and answers 429 with
    Retry-After even for the right password; then the user is read and the
    password checked, against a dummy hash when there is no such user, so
    an unknown user and a wrong password cost the same argon2id and get
    the same 401 body; every attempt is recorded before the answer. With
    MFA on, a missing code is 401 mfa_required; a code is checked here
    (cd_totp) and accepted once: the login statement moves the user's
    last TOTP step forward by compare-and-set, in the same transaction
    that issues the refresh token. The access token is a JWT of 15 minutes
    naming the login's refresh family (fam); the refresh token is random,
    stored as a keyed hash, valid 30 days, rotated on every use, and a
    reused one revokes its whole family.

    Revocation reaches the HTTP thread's caches before the answer
    (cd_api_auth_notify): a deleted API key, a logged-out or reused family,
    a user whose password or role changed or who was deleted, a new list
    of bans. Access tokens are then refused by family or by user (tokens
    issued before the change), the key is dropped from the cache.

    A `user` sees and deletes only its own API keys (another's is 404);
    an admin sees everyone's. */
#include "api_internal.h"

#include "cd_auditlog.h"
#include "cd_error.h"
#include "cd_hasher.h"
#include "cd_log.h"
#include "cd_password.h"
#include "cd_q_audit.h"
#include "cd_q_system.h"
#include "cd_q_users.h"
#include "cd_token.h"
#include "cd_totp.h"

#include <czmq.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_REFRESH_TTL_S (30 * 86400) //  a refresh token lives 30 days
#define S_HISTORY_KEEP 5             //  previous password hashes that may not be reused
#define S_MAX_FAILURES 5             //  default lockout: failures ...
#define S_WINDOW_S 900               //  ... within 15 minutes
#define S_BAD_LOGIN "invalid username or password"

//  --- small helpers ----------------------------------------------------------------

static void
s_not_sent(cd_api_req_t *req, int rc)
{
    cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
}

static const char *
s_i64(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

//  The caller must be a user (not anonymous): else 401 and false.
static bool
s_need_user(cd_api_req_t *req)
{
    if (cd_api_user(req) > 0) {
        return true;
    }
    cd_api_error(req, 401, "unauthenticated", "this needs a signed-in user", NULL);
    return false;
}

static bool
s_configured(cd_api_req_t *req)
{
    const cd_api_args_t *args = cd_api_args(req);
    if (args->jwt_key && args->token_key && args->auth_workers > 0) {
        return true;
    }
    cd_api_error(req, 503, "not_ready", "authentication is not configured on this node", NULL);
    return false;
}

//  The client's address for inet columns ("" when unknown: the unspecified
//  address, so attempts from nowhere still count together).
static const char *
s_ip(const cd_api_req_t *req)
{
    const char *ip = cd_api_ip(req);
    return ip && *ip ? ip : "0.0.0.0";
}

static const char *
s_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

//  A JSON array of one string.
static json_t *
s_one(const char *text)
{
    json_t *a = json_array();
    json_array_append_new(a, json_string(text));
    return a;
}

//  --- password jobs (cd_hasher.h) -------------------------------------------------------

typedef struct {
    int inflight;  //  jobs out from this actor
    unsigned next; //  round-robin over the hashers
} s_jobs_t;

typedef struct {
    int rc;           //  0, or CD_EBUSY (refused or no answer) / CD_EINVAL (bad job)
    bool ok;          //  verify matched (true without verify)
    bool reused;      //  matched a rejected hash
    const char *hash; //  the new hash, or NULL; borrowed during the call
} s_job_result_t;

typedef void(s_job_fn)(cd_api_req_t *req, const s_job_result_t *res);

static s_jobs_t *
s_jobs(cd_api_req_t *req)
{
    void **slot = cd_api_state(req, "auth.jobs", free);
    if (!*slot) {
        *slot = zmalloc(sizeof(s_jobs_t));
    }
    return (s_jobs_t *)*slot;
}

static void
s_job_reply(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    s_jobs(req)->inflight--;
    s_job_result_t res = {.rc = CD_EBUSY};
    char hash[CD_PASSWORD_HASH_MAX] = "";
    if (reply && reply->kind == CD_KIND_RESULT) {
        cd_bin_t value;
        cd_str_t str;
        res.rc = 0;
        if (cd_msgpack_map_find(reply->payload, "ok", &value) == 0) {
            cd_msgpack_read_bool(value, &res.ok);
        }
        if (cd_msgpack_map_find(reply->payload, "reused", &value) == 0) {
            cd_msgpack_read_bool(value, &res.reused);
        }
        if (cd_msgpack_map_find(reply->payload, "hash", &value) == 0 &&
            cd_msgpack_read_str(value, &str) == 0 && str.len < sizeof hash) {
            memcpy(hash, str.ptr, str.len);
            hash[str.len] = '\0';
            res.hash = hash;
        }
    } else if (reply) {
        char code[32] = "";
        cd_bin_t value;
        cd_str_t str;
        if (cd_msgpack_map_find(reply->payload, "code", &value) == 0 &&
            cd_msgpack_read_str(value, &str) == 0) {
            snprintf(code, sizeof code, "%.*s", (int)str.len, str.ptr);
        }
        res.rc = streq(code, "busy") ? CD_EBUSY : CD_EINVAL;
    }
    ((s_job_fn *)arg)(req, &res);
    sodium_memzero(hash, sizeof hash);
}

//  Sends a password job: pw, and optionally a hash to verify (verify_set;
//  verify NULL: an unknown user), hashes to reject (newline-separated, or
//  NULL) and whether to hash. Parks req until fn. Returns false after
//  answering (503 when this actor has too many jobs out).
static bool
s_job(cd_api_req_t *req, const char *pw, bool verify_set, const char *verify, const char *reject,
      bool hash, s_job_fn *fn)
{
    const cd_api_args_t *args = cd_api_args(req);
    s_jobs_t *jobs = s_jobs(req);
    if (jobs->inflight >= CD_HASHER_INFLIGHT_MAX) {
        cd_api_error_retry(req, 503, "not_ready",
                           "too many password checks in progress; retry shortly", NULL, 1);
        return false;
    }
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 1 + (verify_set ? 1 : 0) + (reject ? 1 : 0) + (hash ? 1 : 0));
    cd_pack_cstr(pack, "pw");
    cd_pack_cstr(pack, pw);
    if (verify_set) {
        cd_pack_cstr(pack, "verify");
        if (verify) {
            cd_pack_cstr(pack, verify);
        } else {
            cd_pack_nil(pack);
        }
    }
    if (reject) {
        cd_pack_cstr(pack, "reject");
        cd_pack_cstr(pack, reject);
    }
    if (hash) {
        cd_pack_cstr(pack, "hash");
        cd_pack_bool(pack, true);
    }
    char to[32];
    snprintf(to, sizeof to, "%s/%u", CD_HASHER_NAME,
             jobs->next++ % (unsigned)(args->auth_workers > 0 ? args->auth_workers : 1));
    cd_envelope_t env;
    cd_api_envelope_init(req, &env, CD_KIND_TASK, to);
    env.deadline = cd_now_us() + (int64_t)CD_HASHER_DEADLINE_MS * 1000;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_api_call(req, &env, s_job_reply, (void *)fn);
    cd_pack_destroy(&pack);
    if (rc != 0) {
        cd_api_error_retry(req, 503, "not_ready", "the password checkers are not running", NULL, 1);
        return false;
    }
    jobs->inflight++;
    return true;
}

//  A password job that did not run: 503 (busy hashers) or 500.
static void
s_job_failed(cd_api_req_t *req, const s_job_result_t *res)
{
    if (res->rc == CD_EBUSY) {
        cd_api_error_retry(req, 503, "not_ready", "the password checkers are busy; retry shortly",
                           NULL, 1);
    } else {
        cd_api_error(req, 500, "internal", "the password could not be processed", NULL);
    }
}

//  400 weak_password unless pw meets the policy.
static bool
s_policy(cd_api_req_t *req, const char *field, const char *pw)
{
    const char *why = NULL;
    if (cd_password_check_policy(pw, strlen(pw), &why) == 0) {
        return true;
    }
    cd_api_error(req, 400, "weak_password",
                 "a password needs at least 12 characters (and at most 1024 bytes)",
                 json_pack("{s:s, s:s}", "field", field, "reason", why ? why : "too weak"));
    return false;
}

//  --- tokens -------------------------------------------------------------------------

//  Answers 200 with a new access token for user (a user row: id, role) in
//  family, and the refresh token in clear (kept in scratch "refresh").
static void
s_reply_tokens(cd_api_req_t *req, json_t *user, const char *family)
{
    const cd_api_args_t *args = cd_api_args(req);
    int64_t id = json_integer_value(json_object_get(user, "id"));
    const char *role = s_str(user, "role");
    const char *refresh = s_str(cd_api_scratch(req), "refresh");
    cd_jwt_claims_t claims;
    char token[CD_JWT_MAX_LEN + 1];
    if (!role || !family || !refresh ||
        cd_jwt_claims_init(&claims, id, role, family, (int64_t)time(NULL), CD_JWT_TTL_S) != 0 ||
        cd_jwt_sign(args->jwt_key, &claims, token, sizeof token, NULL) != 0) {
        cd_api_error(req, 500, "internal", "the token could not be issued", NULL);
        return;
    }
    cd_api_audit_as(req, id);
    cd_api_reply_json(req, 200,
                      json_pack("{s:s, s:s, s:s, s:i}", "access_token", token, "refresh_token",
                                refresh, "token_type", "bearer", "expires_in", CD_JWT_TTL_S),
                      NULL);
}

//  A new refresh token: its text into scratch "refresh", its hash (hex)
//  into hex.
static void
s_new_refresh(cd_api_req_t *req, char hex[CD_TOKEN_HASH_HEX_LEN + 1])
{
    char token[CD_TOKEN_LEN + 1];
    cd_token_new(CD_TOKEN_REFRESH, token);
    uint8_t hash[CD_TOKEN_HASH_BYTES];
    cd_token_hash(cd_api_args(req)->token_key, token, CD_TOKEN_LEN, hash);
    cd_token_hash_hex(hash, hex);
    json_object_set_new(cd_api_scratch(req), "refresh", json_string(token));
    sodium_memzero(token, sizeof token);
}

//  --- login ----------------------------------------------------------------------------

static int64_t
s_max_failures(const cd_api_req_t *req)
{
    int n = cd_api_args(req)->login_max_failures;
    return n > 0 ? n : S_MAX_FAILURES;
}

static int64_t
s_window_s(const cd_api_req_t *req)
{
    int n = cd_api_args(req)->login_window_s;
    return n > 0 ? n : S_WINDOW_S;
}

//  After a failed attempt was recorded: the answer prepared in scratch
//  ("status", "code", "message", "retry_after").
static void
s_attempt_recorded(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *s = cd_api_scratch(req);
    int status = (int)json_integer_value(json_object_get(s, "status"));
    const char *code = s_str(s, "code");
    const char *message = s_str(s, "message");
    if (status == 429) {
        json_int_t retry = json_integer_value(json_object_get(s, "retry_after"));
        cd_api_error_retry(req, 429, code, message, json_pack("{s:I}", "retry_after_s", retry),
                           retry);
        return;
    }
    cd_api_error(req, status, code, message, NULL);
}

//  Records a failed attempt (outcome), then answers status/code/message.
static void
s_fail_login(cd_api_req_t *req, const char *outcome, int status, const char *code,
             const char *message)
{
    json_t *s = cd_api_scratch(req);
    json_object_set_new(s, "status", json_integer(status));
    json_object_set_new(s, "code", json_string(code));
    json_object_set_new(s, "message", json_string(message));
    json_t *user = json_object_get(s, "user");
    char idbuf[24];
    const char *params[] = {s_str(s, "username"),
                            user ? s_i64(idbuf, json_integer_value(json_object_get(user, "id")))
                                 : NULL,
                            s_ip(req), outcome};
    int rc = cd_api_write(req, "auth.attempt", 4, params, s_attempt_recorded, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
}

static void
s_login_done(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row || !json_is_true(json_object_get(row, "ok"))) {
        //  The code's step was taken meanwhile (a concurrent login with it).
        json_decref(row);
        cd_api_error(req, 401, "unauthenticated", "invalid or already used TOTP code", NULL);
        return;
    }
    s_reply_tokens(req, json_object_get(row, "user"), s_str(row, "family"));
    json_decref(row);
}

static void
s_login_checked(cd_api_req_t *req, const s_job_result_t *res)
{
    if (res->rc != 0) {
        s_job_failed(req, res);
        return;
    }
    json_t *s = cd_api_scratch(req);
    json_t *user = json_object_get(s, "user");
    if (!res->ok || !user) {
        s_fail_login(req, "bad_credentials", 401, "unauthenticated", S_BAD_LOGIN);
        return;
    }
    int64_t step = CD_Q_NULL;
    if (json_is_true(json_object_get(user, "mfa_enabled"))) {
        const char *code = json_string_value(json_object_get(cd_api_body(req), "totp"));
        if (!code) {
            s_fail_login(req, "mfa_required", 401, "mfa_required",
                         "this user has MFA on: send the current TOTP code as totp");
            return;
        }
        json_t *last = json_object_get(user, "mfa_last_step");
        int64_t matched = 0;
        int rc = cd_totp_verify(s_str(user, "mfa_secret"), code, (int64_t)time(NULL),
                                json_is_integer(last) ? json_integer_value(last) : -1, &matched);
        if (rc == CD_EEXIST) {
            s_fail_login(req, "mfa_replay", 401, "unauthenticated",
                         "invalid or already used TOTP code");
            return;
        }
        if (rc != 0) {
            s_fail_login(req, "mfa_invalid", 401, "unauthenticated",
                         "invalid or already used TOTP code");
            return;
        }
        step = matched;
    }
    char hex[CD_TOKEN_HASH_HEX_LEN + 1], idbuf[24], ttl[24], stepbuf[24];
    s_new_refresh(req, hex);
    const char *params[] = {s_str(s, "username"),
                            s_i64(idbuf, json_integer_value(json_object_get(user, "id"))),
                            s_ip(req),
                            hex,
                            s_i64(ttl, S_REFRESH_TTL_S),
                            step == CD_Q_NULL ? NULL : s_i64(stepbuf, step)};
    int rc = cd_api_write(req, "auth.login", 6, params, s_login_done, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
}

static int
s_login(cd_api_req_t *req)
{
    if (!s_configured(req)) {
        return 0;
    }
    if (s_jobs(req)->inflight >= CD_HASHER_INFLIGHT_MAX) {
        //  Before any database work: a flood is refused at the cost of a
        //  comparison.
        cd_api_error_retry(req, 503, "not_ready",
                           "too many password checks in progress; retry shortly", NULL, 1);
        return 0;
    }
    json_t *body = cd_api_body(req);
    const char *username = s_str(body, "username");
    const char *password = s_str(body, "password");
    const char *totp = s_str(body, "totp");
    if (!username || !password) {
        cd_api_invalid(req, username ? "password" : "username", "required");
        return 0;
    }
    if (totp && (strlen(totp) != CD_TOTP_DIGITS || strspn(totp, "0123456789") != CD_TOTP_DIGITS)) {
        cd_api_invalid(req, "totp", "must be 6 digits");
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    json_t *s = cd_api_scratch(req);
    json_object_set_new(s, "username", json_string(username));
    int64_t retry = 0;
    int rc = cd_q_logins_lockout(db, username, s_ip(req), (int)s_max_failures(req), s_window_s(req),
                                 &retry);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    char *row = NULL;
    rc = cd_q_users_auth(db, CD_Q_NULL, username, &row);
    if (rc != 0 && rc != CD_ENOTFOUND) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *user = row ? json_loads(row, 0, NULL) : NULL;
    free(row);
    if (user) {
        json_object_set_new(s, "user", user);
    }
    if (retry > 0) {
        json_object_set_new(s, "retry_after", json_integer(retry));
        s_fail_login(req, "locked", 429, "rate_limited",
                     "too many failed logins for this user or from this address; retry later");
        return 0;
    }
    s_job(req, password, true, user ? s_str(user, "password_hash") : NULL, NULL, false,
          s_login_checked);
    return 0;
}

//  --- refresh, logout, me --------------------------------------------------------------

static void
s_refreshed(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row) {
        cd_api_error(req, 401, "unauthenticated", "unknown refresh token", NULL);
        return;
    }
    const char *family = s_str(row, "family");
    if (!json_is_true(json_object_get(row, "ok"))) {
        //  Dead (used, revoked or expired): the whole login is revoked, its
        //  access tokens included.
        if (family) {
            cd_api_auth_notify(req, json_pack("{s:o}", "fams", s_one(family)));
        }
        json_decref(row);
        cd_api_error(req, 401, "unauthenticated",
                     "this refresh token is no longer valid; its login has been revoked", NULL);
        return;
    }
    s_reply_tokens(req, json_object_get(row, "user"), family);
    json_decref(row);
}

static int
s_refresh(cd_api_req_t *req)
{
    if (!s_configured(req)) {
        return 0;
    }
    const char *token = s_str(cd_api_body(req), "refresh_token");
    cd_token_kind_t kind;
    if (!token || !cd_token_parse(token, strlen(token), &kind) || kind != CD_TOKEN_REFRESH) {
        cd_api_error(req, 401, "unauthenticated", "unknown refresh token", NULL);
        return 0;
    }
    uint8_t hash[CD_TOKEN_HASH_BYTES];
    char old_hex[CD_TOKEN_HASH_HEX_LEN + 1], new_hex[CD_TOKEN_HASH_HEX_LEN + 1], ttl[24];
    cd_token_hash(cd_api_args(req)->token_key, token, strlen(token), hash);
    cd_token_hash_hex(hash, old_hex);
    s_new_refresh(req, new_hex);
    const char *params[] = {old_hex, new_hex, s_i64(ttl, S_REFRESH_TTL_S), s_ip(req)};
    int rc = cd_api_write(req, "auth.refresh", 4, params, s_refreshed, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

static void
s_logged_out(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    cd_api_auth_notify(req, json_pack("{s:o}", "fams", s_one(cd_api_session(req))));
    cd_api_reply_empty(req);
}

static int
s_logout(cd_api_req_t *req)
{
    if (!s_need_user(req)) {
        return 0;
    }
    const char *family = cd_api_session(req);
    if (!family) {
        cd_api_error(req, 400, "validation_failed",
                     "no session to end: the request was authenticated by an API key",
                     json_pack("{s:s}", "reason", "api key"));
        return 0;
    }
    char idbuf[24];
    const char *params[] = {family, s_i64(idbuf, cd_api_user(req))};
    int rc = cd_api_write(req, "auth.logout", 2, params, s_logged_out, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

static int
s_me(cd_api_req_t *req)
{
    if (!s_need_user(req)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_users_get(db, cd_api_user(req), &row);
    if (rc == 0) {
        cd_api_reply_text(req, 200, row, NULL);
    } else if (rc == CD_ENOTFOUND) {
        cd_api_error(req, 401, "unauthenticated", "this user no longer exists", NULL);
    } else {
        cd_api_fail(req, rc, db);
    }
    free(row);
    return 0;
}

//  --- password change ---------------------------------------------------------------------

static void
s_password_changed(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row) {
        cd_api_error(req, 401, "unauthenticated", "this user no longer exists", NULL);
        return;
    }
    json_t *fams = json_object_get(row, "families");
    if (json_array_size(fams) > 0) {
        cd_api_auth_notify(req, json_pack("{s:O}", "fams", fams));
    }
    json_decref(row);
    cd_api_reply_empty(req);
}

static void
s_password_hashed(cd_api_req_t *req, const s_job_result_t *res)
{
    if (res->rc != 0 || (!res->reused && !res->hash)) {
        s_job_failed(req, res);
        return;
    }
    if (res->reused) {
        cd_api_error(req, 400, "password_reused",
                     "the new password must differ from the current and the last 5",
                     json_pack("{s:s}", "field", "new_password"));
        return;
    }
    char idbuf[24], keep[24];
    const char *params[] = {s_i64(idbuf, cd_api_user(req)), res->hash, s_i64(keep, S_HISTORY_KEEP),
                            cd_api_session(req)};
    int rc = cd_api_write(req, "auth.password", 4, params, s_password_changed, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
}

static void
s_password_current(cd_api_req_t *req, const s_job_result_t *res)
{
    if (res->rc != 0) {
        s_job_failed(req, res);
        return;
    }
    if (!res->ok) {
        cd_api_error(req, 403, "forbidden", "the current password is wrong",
                     json_pack("{s:s}", "field", "current_password"));
        return;
    }
    json_t *s = cd_api_scratch(req);
    s_job(req, s_str(cd_api_body(req), "new_password"), false, NULL, s_str(s, "reject"), true,
          s_password_hashed);
}

static int
s_password(cd_api_req_t *req)
{
    if (!s_configured(req) || !s_need_user(req)) {
        return 0;
    }
    json_t *body = cd_api_body(req);
    const char *current = s_str(body, "current_password");
    const char *next = s_str(body, "new_password");
    if (!current || !next) {
        cd_api_invalid(req, current ? "new_password" : "current_password", "required");
        return 0;
    }
    if (!s_policy(req, "new_password", next)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_users_auth(db, cd_api_user(req), NULL, &row);
    if (rc != 0) {
        free(row);
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *user = json_loads(row, 0, NULL);
    free(row);
    cd_q_page_t page = {0};
    rc = cd_q_users_password_history(db, cd_api_user(req), S_HISTORY_KEEP, &page);
    if (rc != 0) {
        json_decref(user);
        cd_q_page_fini(&page);
        cd_api_fail(req, rc, db);
        return 0;
    }
    //  The hashes the new password must not match: the current one and the
    //  history, one per line.
    json_t *history = json_loads(page.items, 0, NULL);
    cd_q_page_fini(&page);
    zchunk_t *reject = zchunk_new(NULL, 0);
    const char *hash = s_str(user, "password_hash");
    zchunk_extend(reject, hash, strlen(hash));
    size_t i;
    json_t *item;
    json_array_foreach(history, i, item)
    {
        const char *old = s_str(item, "password_hash");
        if (old) {
            zchunk_extend(reject, "\n", 1);
            zchunk_extend(reject, old, strlen(old));
        }
    }
    zchunk_extend(reject, "", 1);
    json_object_set_new(cd_api_scratch(req), "reject",
                        json_string((const char *)zchunk_data(reject)));
    zchunk_destroy(&reject);
    json_decref(history);
    s_job(req, current, true, hash, NULL, false, s_password_current);
    json_decref(user);
    return 0;
}

//  --- MFA --------------------------------------------------------------------------------------

static void
s_mfa_set(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row) {
        cd_api_error(req, 401, "unauthenticated", "this user no longer exists", NULL);
        return;
    }
    if (json_is_true(json_object_get(row, "conflict"))) {
        json_decref(row);
        cd_api_error(req, 409, "conflict", "MFA is already on for this user", NULL);
        return;
    }
    const char *secret = s_str(cd_api_scratch(req), "secret");
    char *uri = NULL;
    if (cd_totp_uri(secret, s_str(row, "username"), &uri) != 0) {
        json_decref(row);
        cd_api_error(req, 500, "internal", "the key URI could not be built", NULL);
        return;
    }
    cd_api_reply_json(req, 200, json_pack("{s:s, s:s}", "secret", secret, "otpauth_uri", uri),
                      NULL);
    free(uri);
    json_decref(row);
}

static int
s_mfa_setup(cd_api_req_t *req)
{
    if (!s_need_user(req)) {
        return 0;
    }
    char secret[CD_TOTP_SECRET_LEN + 1], idbuf[24];
    cd_totp_secret_new(secret);
    json_object_set_new(cd_api_scratch(req), "secret", json_string(secret));
    const char *params[] = {s_i64(idbuf, cd_api_user(req)), secret};
    int rc = cd_api_write(req, "auth.mfa_setup", 2, params, s_mfa_set, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

static void
s_mfa_enabled(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 409, "conflict",
                     "the MFA secret changed, or this code was used already: try again", NULL);
    } else {
        cd_api_reply_empty(req);
    }
}

static int
s_mfa_verify(cd_api_req_t *req)
{
    if (!s_need_user(req)) {
        return 0;
    }
    const char *code = s_str(cd_api_body(req), "code");
    if (!code) {
        cd_api_invalid(req, "code", "required");
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_users_auth(db, cd_api_user(req), NULL, &row);
    if (rc != 0) {
        free(row);
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *user = json_loads(row, 0, NULL);
    free(row);
    const char *secret = s_str(user, "mfa_secret");
    if (!secret) {
        json_decref(user);
        cd_api_error(req, 409, "conflict", "no MFA secret yet: call /api/v1/auth/mfa/setup first",
                     NULL);
        return 0;
    }
    json_t *last = json_object_get(user, "mfa_last_step");
    int64_t step = 0;
    rc = cd_totp_verify(secret, code, (int64_t)time(NULL),
                        json_is_integer(last) ? json_integer_value(last) : -1, &step);
    if (rc != 0) {
        json_decref(user);
        cd_api_error(req, 400, "validation_failed",
                     rc == CD_EEXIST ? "code: already used" : "code: does not match the secret",
                     json_pack("{s:s, s:s}", "field", "code", "reason",
                               rc == CD_EEXIST ? "already used" : "wrong code"));
        return 0;
    }
    char idbuf[24], stepbuf[24];
    const char *params[] = {s_i64(idbuf, cd_api_user(req)), secret, s_i64(stepbuf, step)};
    rc = cd_api_write(req, "auth.mfa_enable", 3, params, s_mfa_enabled, NULL);
    json_decref(user);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

//  --- what the HTTP thread asks -------------------------------------------------------------

static void
s_key_touched(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    //  last_used_at is a courtesy: the lookup's answer stands either way.
    cd_api_reply_text(req, 200, s_str(cd_api_scratch(req), "key"), NULL);
}

static int
s_key_resolve(cd_api_req_t *req)
{
    const char *hash = cd_api_query(req, "hash");
    if (!hash || strlen(hash) != CD_TOKEN_HASH_HEX_LEN ||
        strspn(hash, "0123456789abcdef") != CD_TOKEN_HASH_HEX_LEN) {
        cd_api_invalid(req, "hash", "64 lower-case hex digits");
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = cd_q_api_keys_lookup(db, hash, &row);
    if (rc != 0) {
        free(row);
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_object_set_new(cd_api_scratch(req), "key", json_string(row));
    free(row);
    const char *params[] = {hash};
    if (cd_api_write(req, "api_keys.touch", 1, params, s_key_touched, NULL) != 0) {
        cd_api_reply_text(req, 200, s_str(cd_api_scratch(req), "key"), NULL);
    }
    return 0;
}

static int
s_bans_live(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *bans = NULL;
    int rc = cd_q_bans_live(db, &bans);
    if (rc == 0) {
        cd_api_reply_text(req, 200, bans, NULL);
    } else {
        cd_api_fail(req, rc, db);
    }
    free(bans);
    return 0;
}

//  --- users (A) ----------------------------------------------------------------------------

static void
s_user_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "23505")) {
        cd_api_error(req, 409, "conflict", "this username is taken",
                     json_pack("{s:s}", "field", "username"));
    } else if (res->rc == CD_EDB && streq(res->sqlstate, "23514")) {
        cd_api_invalid(req, "username", "1-64 of A-Z a-z 0-9 _ . @ -");
    } else if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 500, "internal", "the write returned no user", NULL);
    } else {
        json_t *row = json_loads(res->value, 0, NULL);
        char location[64];
        snprintf(location, sizeof location, "/api/v1/users/%lld",
                 (long long)json_integer_value(json_object_get(row, "id")));
        json_decref(row);
        cd_api_reply_text(req, 201, res->value, location);
    }
}

static void
s_user_hashed(cd_api_req_t *req, const s_job_result_t *res)
{
    if (res->rc != 0 || !res->hash) {
        s_job_failed(req, res);
        return;
    }
    json_t *body = cd_api_body(req);
    const char *role = s_str(body, "role");
    const char *params[] = {s_str(body, "username"), res->hash, role ? role : "user"};
    int rc = cd_api_write(req, "users.insert", 3, params, s_user_created, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
}

static bool
s_role_ok(cd_api_req_t *req)
{
    const char *role = s_str(cd_api_body(req), "role");
    if (role && !streq(role, "admin") && !streq(role, "user")) {
        cd_api_invalid(req, "role", "must be admin or user");
        return false;
    }
    return true;
}

static int
s_users_create(cd_api_req_t *req)
{
    if (!s_configured(req) || !s_role_ok(req)) {
        return 0;
    }
    const char *password = s_str(cd_api_body(req), "password");
    if (!password || !s_policy(req, "password", password)) {
        if (!password) {
            cd_api_invalid(req, "password", "required");
        }
        return 0;
    }
    s_job(req, password, false, NULL, NULL, true, s_user_hashed);
    return 0;
}

static int
s_users_list(cd_api_req_t *req)
{
    return cd_api_list(req, cd_q_users_list);
}

static int
s_users_get(cd_api_req_t *req)
{
    return cd_api_get(req, cd_q_users_get);
}

static void
s_user_updated(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "23505")) {
        cd_api_error(req, 409, "conflict", "this username is taken",
                     json_pack("{s:s}", "field", "username"));
        return;
    }
    if (res->rc == CD_EDB && streq(res->sqlstate, "23514")) {
        cd_api_invalid(req, "username", "1-64 of A-Z a-z 0-9 _ . @ -");
        return;
    }
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such user", NULL);
        return;
    }
    json_t *row = json_loads(res->value, 0, NULL);
    json_t *user = json_object_get(row, "user");
    json_t *body = cd_api_body(req);
    if (json_object_get(body, "role") || json_object_get(body, "password")) {
        //  Its tokens carry the old role (or were won with the old
        //  password): its logins end, and its keys are looked up again.
        json_t *users = json_array();
        json_array_append_new(users, json_integer(json_integer_value(json_object_get(user, "id"))));
        cd_api_auth_notify(
            req, json_pack("{s:o, s:O}", "users", users, "fams", json_object_get(row, "families")));
    }
    cd_api_reply_json(req, 200, json_incref(user), NULL);
    json_decref(row);
}

//  Sends the update: the body without password, and the new hash (or NULL).
static void
s_user_update(cd_api_req_t *req, const char *hash)
{
    json_t *fields = json_deep_copy(cd_api_body(req));
    json_object_del(fields, "password");
    char *json = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    char keep[24];
    const char *params[] = {cd_api_param(req, "id"), json, hash, s_i64(keep, S_HISTORY_KEEP)};
    int rc = cd_api_write(req, "users.update", 4, params, s_user_updated, NULL);
    free(json);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
}

static void
s_user_rehashed(cd_api_req_t *req, const s_job_result_t *res)
{
    if (res->rc != 0 || !res->hash) {
        s_job_failed(req, res);
        return;
    }
    s_user_update(req, res->hash);
}

static int
s_users_patch(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id) || !s_role_ok(req)) {
        return 0;
    }
    json_t *body = cd_api_body(req);
    const char *role = s_str(body, "role");
    if (id == cd_api_user(req) && role && !streq(role, "admin")) {
        cd_api_error(req, 409, "conflict", "an admin cannot take away its own admin role",
                     json_pack("{s:s}", "field", "role"));
        return 0;
    }
    const char *password = s_str(body, "password");
    if (password) {
        if (s_configured(req) && s_policy(req, "password", password)) {
            s_job(req, password, false, NULL, NULL, true, s_user_rehashed);
        }
        return 0;
    }
    s_user_update(req, NULL);
    return 0;
}

static void
s_user_deleted(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such user", NULL);
    } else {
        json_t *row = json_loads(res->value, 0, NULL);
        json_t *users = json_array();
        json_array_append_new(users, json_integer(json_integer_value(json_object_get(row, "id"))));
        cd_api_auth_notify(
            req, json_pack("{s:o, s:O}", "users", users, "fams", json_object_get(row, "families")));
        json_decref(row);
        cd_api_reply_empty(req);
    }
}

static int
s_users_delete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    if (id == cd_api_user(req)) {
        cd_api_error(req, 409, "conflict", "an admin cannot delete itself", NULL);
        return 0;
    }
    char idbuf[24];
    const char *params[] = {s_i64(idbuf, id)};
    int rc = cd_api_write(req, "users.delete", 1, params, s_user_deleted, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

//  --- API keys -----------------------------------------------------------------------------

//  Whose keys the caller may see: its own (an admin: anyone's).
static int64_t
s_key_owner(const cd_api_req_t *req)
{
    return cd_api_user(req) > 0 && !cd_api_admin(req) ? cd_api_user(req) : CD_Q_NULL;
}

static int
s_keys_list(cd_api_req_t *req)
{
    int limit = 0;
    const char *cursor = NULL;
    cd_db_t *db = cd_api_page_begin(req, &limit, &cursor);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_api_keys_list(db, s_key_owner(req), cursor, limit, &page);
    cd_api_reply_read_page(req, rc, db, &page);
    return 0;
}

static void
s_key_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row) {
        cd_api_error(req, 500, "internal", "the write returned no key", NULL);
        return;
    }
    //  The only time the key is shown.
    json_object_set(row, "key", json_object_get(cd_api_scratch(req), "key"));
    char location[64];
    snprintf(location, sizeof location, "/api/v1/api-keys/%lld",
             (long long)json_integer_value(json_object_get(row, "id")));
    cd_api_reply_json(req, 201, row, location);
}

static int
s_keys_create(cd_api_req_t *req)
{
    if (!s_configured(req) || !s_need_user(req)) {
        return 0;
    }
    char token[CD_TOKEN_LEN + 1], prefix[CD_TOKEN_DISPLAY_LEN + 1], hex[CD_TOKEN_HASH_HEX_LEN + 1];
    cd_token_new(CD_TOKEN_API_KEY, token);
    cd_token_display(token, prefix);
    uint8_t hash[CD_TOKEN_HASH_BYTES];
    cd_token_hash(cd_api_args(req)->token_key, token, CD_TOKEN_LEN, hash);
    cd_token_hash_hex(hash, hex);
    json_object_set_new(cd_api_scratch(req), "key", json_string(token));
    sodium_memzero(token, sizeof token);
    char idbuf[24];
    const char *params[] = {s_i64(idbuf, cd_api_user(req)), s_str(cd_api_body(req), "name"), prefix,
                            hex};
    int rc = cd_api_write(req, "api_keys.insert", 4, params, s_key_created, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

static void
s_key_deleted(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row) {
        cd_api_error(req, 404, "not_found", "no such API key", NULL);
        return;
    }
    //  Out of the HTTP thread's cache before the 204 leaves.
    cd_api_auth_notify(req, json_pack("{s:o}", "keys", s_one(s_str(row, "key_hash"))));
    json_decref(row);
    cd_api_reply_empty(req);
}

static int
s_keys_delete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24], ownerbuf[24];
    int64_t owner = s_key_owner(req);
    const char *params[] = {s_i64(idbuf, id), owner == CD_Q_NULL ? NULL : s_i64(ownerbuf, owner)};
    int rc = cd_api_write(req, "api_keys.delete", 2, params, s_key_deleted, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

//  --- banned addresses (A) -----------------------------------------------------------------

//  After a ban changed: the HTTP thread gets the new list, then the answer.
static bool
s_bans_changed(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return false;
    }
    char *bans = NULL;
    int rc = cd_q_bans_live(db, &bans);
    json_t *list = rc == 0 ? json_loads(bans, 0, NULL) : NULL;
    free(bans);
    if (!list) {
        //  Committed, but this node's view lags until its next refresh.
        cd_log_warn(cd_actor_name(cd_api_actor(req)), "bans not re-read after a change", NULL);
        return true;
    }
    cd_api_auth_notify(req, json_pack("{s:o}", "bans", list));
    return true;
}

static void
s_ban_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "23505")) {
        cd_api_error(req, 409, "conflict", "this address is banned already",
                     json_pack("{s:s}", "field", "ip"));
    } else if (res->rc == CD_EDB && strncmp(res->sqlstate, "22", 2) == 0) {
        cd_api_invalid(req, streq(res->sqlstate, "22P02") ? "ip" : "expires_at",
                       "not a valid address or time");
    } else if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 500, "internal", "the write returned no ban", NULL);
    } else if (s_bans_changed(req)) {
        json_t *row = json_loads(res->value, 0, NULL);
        char location[64];
        snprintf(location, sizeof location, "/api/v1/banned-ips/%lld",
                 (long long)json_integer_value(json_object_get(row, "id")));
        json_decref(row);
        cd_api_reply_text(req, 201, res->value, location);
    }
}

static int
s_bans_create(cd_api_req_t *req)
{
    json_t *body = cd_api_body(req);
    char userbuf[24];
    const char *params[] = {s_str(body, "ip"), s_str(body, "reason"), s_str(body, "expires_at"),
                            cd_api_user(req) > 0 ? s_i64(userbuf, cd_api_user(req)) : NULL};
    int rc = cd_api_write(req, "bans.insert", 4, params, s_ban_created, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

static int
s_bans_list(cd_api_req_t *req)
{
    return cd_api_list(req, cd_q_bans_list);
}

static void
s_ban_deleted(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such ban", NULL);
    } else if (s_bans_changed(req)) {
        cd_api_reply_empty(req);
    }
}

static int
s_bans_delete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idbuf[24];
    const char *params[] = {s_i64(idbuf, id)};
    int rc = cd_api_write(req, "bans.delete", 1, params, s_ban_deleted, NULL);
    if (rc != 0) {
        s_not_sent(req, rc);
    }
    return 0;
}

//  --- the audit log (A) -------------------------------------------------------------------

static int
s_audit_list(cd_api_req_t *req)
{
    cd_q_audit_filter_t f = {.user_id = CD_Q_NULL};
    if (!cd_api_page_args(req, &f.limit, &f.cursor) ||
        !cd_api_query_int(req, "user_id", 1, INT64_MAX, CD_Q_NULL, &f.user_id) ||
        !cd_api_query_time(req, "since", &f.since)) {
        return 0;
    }
    f.action = cd_api_query(req, "action");
    if (f.action && (strlen(f.action) < 1 || strlen(f.action) > 100)) {
        cd_api_invalid(req, "action", "1-100 characters");
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_audit_list(db, &f, &page);
    cd_api_reply_read_page(req, rc, db, &page);
    return 0;
}

static const char *const s_verdicts[] = {"intact",   "edited",    "deleted",
                                         "inserted", "truncated", "unreadable"};

static int
s_audit_verify(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    cd_audit_finding_t finding;
    int64_t rows = 0;
    int rc = cd_auditlog_verify(db, NULL, &finding, &rows);
    if (rc == CD_EPROTO) {
        cd_api_reply_json(req, 200,
                          json_pack("{s:b, s:I, s:s, s:s}", "intact", 0, "rows", (json_int_t)rows,
                                    "verdict", "unreadable", "why", "a row is malformed"),
                          NULL);
        return 0;
    }
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *out = json_pack("{s:b, s:I, s:s}", "intact", finding.verdict == CD_AUDIT_INTACT, "rows",
                            (json_int_t)rows, "verdict", s_verdicts[finding.verdict]);
    if (finding.verdict != CD_AUDIT_INTACT) {
        json_object_set_new(out, "id", json_integer(finding.id));
        json_object_set_new(out, "why", json_string(finding.why ? finding.why : ""));
    }
    cd_api_reply_json(req, 200, out, NULL);
    return 0;
}

//  --- the module --------------------------------------------------------------------------

static const cd_api_op_t s_ops[] = {
    {"auth.login", s_login},
    {"auth.refresh", s_refresh},
    {"auth.logout", s_logout},
    {"auth.me", s_me},
    {"auth.password", s_password},
    {"auth.mfa_setup", s_mfa_setup},
    {"auth.mfa_verify", s_mfa_verify},
    {"auth.key_resolve", s_key_resolve},
    {"auth.bans_live", s_bans_live},
    {"users.list", s_users_list},
    {"users.create", s_users_create},
    {"users.get", s_users_get},
    {"users.patch", s_users_patch},
    {"users.delete", s_users_delete},
    {"api_keys.list", s_keys_list},
    {"api_keys.create", s_keys_create},
    {"api_keys.delete", s_keys_delete},
    {"bans.list", s_bans_list},
    {"bans.create", s_bans_create},
    {"bans.delete", s_bans_delete},
    {"audit.list", s_audit_list},
    {"audit.verify", s_audit_verify},
};

const cd_api_module_t cd__api_auth_module = {
    "auth", s_ops, sizeof s_ops / sizeof s_ops[0], cd_q_users_writes, &cd_q_users_n_writes,
};
