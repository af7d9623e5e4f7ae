/* label: integration */
/*  test_api_auth: identity and access over HTTP/2 against a real node
    (cd_testnode) on a real PostgreSQL: login (wrong password and unknown
    user alike, lockout per user and per address and its expiry, every
    attempt recorded), refresh rotation and reuse, logout, forged, expired,
    alg-none and other-alg tokens, API keys (shown once, own only, revoked
    at once), bans (every route, expiry, networks), users (A), every (A)
    route refusing a `user` and every authenticated route refusing nobody,
    other users' objects, password policy and history, TOTP
    accept/reject/replay, and the audit log (a row per write, the chain
    verifies, tampering is found). Requests from other loopback addresses
    (127.0.0.x) stand for other clients. */
#include "cd_testnode.h"

#include "cd_jwt.h"
#include "cd_routes.h"
#include "cd_totp.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <czmq.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define S_WINDOW_S 3 //  the node's lockout window (CADRE_LOGIN_WINDOW_S)

static int
s_setup(void **state)
{
    static const char *const env[] = {"CADRE_LOGIN_WINDOW_S=3", NULL};
    tn_node_t *node = tn_start(env);
    if (!node) {
        return -1;
    }
    *state = node;
    return 0;
}

static int
s_teardown(void **state)
{
    tn_node_t *node = (tn_node_t *)*state;
    tn_stop(&node);
    return 0;
}

static int64_t
s_sql_int(const tn_node_t *node, const char *fmt, ...)
{
    char sql[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(sql, sizeof sql, fmt, args);
    va_end(args);
    char *v = tn_sql(node, sql);
    int64_t n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

static const char *
s_str(const tn_resp_t *r, const char *key)
{
    return json_string_value(json_object_get(r->json, key));
}

//  One request from source as cred; checks the status; returns the
//  response (caller frees).
static tn_resp_t
s_expect(const tn_node_t *node, const char *source, const char *cred, const char *method,
         const char *path, const char *body, long status)
{
    tn_resp_t r;
    long got = tn_request_from(node, source, cred, method, path, body, NULL, &r);
    if (got != status) {
        fail_msg("%s %s as %.12s from %s: want %ld, got %ld %s", method, path,
                 cred ? cred : "nobody", source ? source : "127.0.0.1", status, got, r.body);
    }
    return r;
}

static void
s_check(const tn_node_t *node, const char *source, const char *cred, const char *method,
        const char *path, const char *body, long status)
{
    tn_resp_t r = s_expect(node, source, cred, method, path, body, status);
    tn_resp_free(&r);
}

static char *
s_login_body(const char *user, const char *password, const char *totp)
{
    json_t *obj = json_pack("{s:s, s:s}", "username", user, "password", password);
    if (totp) {
        json_object_set_new(obj, "totp", json_string(totp));
    }
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return text;
}

//  A login from source; returns the status, the response in *out.
static long
s_login(const tn_node_t *node, const char *source, const char *user, const char *password,
        const char *totp, tn_resp_t *out)
{
    char *body = s_login_body(user, password, totp);
    long status =
        tn_request_from(node, source, NULL, "POST", "/api/v1/auth/login", body, NULL, out);
    free(body);
    return status;
}

//  --- the first admin ------------------------------------------------------------------------

//  No CADRE_ADMIN_PASSWORD (empty counts as unset): a random one, written
//  once to <data dir>/admin-password with mode 0600; a restart keeps it.
static void
test_api_auth_first_start_generates_the_admin_password(void **state)
{
    static const char *const env[] = {"CADRE_ADMIN_PASSWORD=", NULL};
    tn_node_t *node = tn_start(env);
    assert_non_null(node);
    assert_null(node->admin_token);
    char path[512];
    snprintf(path, sizeof path, "%s/admin-password", node->data_dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char password[128] = "";
    assert_non_null(fgets(password, sizeof password, f));
    fclose(f);
    password[strcspn(password, "\n")] = '\0';
    assert_true(strlen(password) >= 20);
    char *token = tn_login(node, "admin", password, NULL);
    assert_non_null(token);
    free(token);
    assert_int_equal(tn_restart(node, env), 0);
    f = fopen(path, "r");
    char again[128] = "";
    assert_non_null(fgets(again, sizeof again, f));
    fclose(f);
    again[strcspn(again, "\n")] = '\0';
    assert_string_equal(again, password);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM users"), 1);
    token = tn_login(node, "admin", password, NULL);
    assert_non_null(token);
    free(token);
    tn_stop(&node);
    //  A weak password given is refused at start.
    static const char *const weak[] = {"CADRE_ADMIN_PASSWORD=short", NULL};
    assert_null(tn_start(weak));
}

//  --- login ------------------------------------------------------------------------------

static void
test_api_auth_login_me_and_anonymous(void **state)
{
    tn_node_t *node = *state;
    tn_resp_t r;
    assert_int_equal(s_login(node, NULL, "admin", TN_ADMIN_PASSWORD, NULL, &r), 200);
    assert_string_equal(s_str(&r, "token_type"), "bearer");
    assert_int_equal(json_integer_value(json_object_get(r.json, "expires_in")), 900);
    assert_non_null(s_str(&r, "refresh_token"));
    assert_memory_equal(s_str(&r, "refresh_token"), "cdr_", 4);
    char *token = strdup(s_str(&r, "access_token"));
    tn_resp_free(&r);
    //  Usernames are case-insensitive.
    assert_int_equal(s_login(node, NULL, "ADMIN", TN_ADMIN_PASSWORD, NULL, &r), 200);
    tn_resp_free(&r);

    r = s_expect(node, NULL, token, "GET", "/api/v1/auth/me", NULL, 200);
    assert_string_equal(s_str(&r, "username"), "admin");
    assert_string_equal(s_str(&r, "role"), "admin");
    assert_null(json_object_get(r.json, "password_hash"));
    tn_resp_free(&r);
    //  No credentials: 401 on an authenticated route, public routes open.
    r = s_expect(node, NULL, NULL, "GET", "/api/v1/tasks", NULL, 401);
    assert_string_equal(tn_error_code(&r), "unauthenticated");
    tn_resp_free(&r);
    s_check(node, NULL, NULL, "GET", "/health", NULL, 200);
    s_check(node, NULL, NULL, "GET", "/openapi.json", NULL, 200);
    s_check(node, NULL, "Basic YWRtaW46eA==", "GET", "/api/v1/auth/me", NULL, 401);
    free(token);
}

static void
test_api_auth_unknown_user_and_wrong_password_alike(void **state)
{
    tn_node_t *node = *state;
    char *token = NULL;
    assert_true(tn_user(node, "alike", "user", &token) > 0);
    free(token);
    tn_resp_t wrong, unknown;
    int64_t t0 = zclock_usecs();
    assert_int_equal(s_login(node, "127.0.0.20", "alike", "not-the-password!", NULL, &wrong), 401);
    int64_t t1 = zclock_usecs();
    assert_int_equal(
        s_login(node, "127.0.0.21", "nobody-here", "not-the-password!", NULL, &unknown), 401);
    int64_t t2 = zclock_usecs();
    assert_string_equal(tn_error_code(&wrong), "unauthenticated");
    assert_string_equal(wrong.body, unknown.body);
    //  The same argon2id work either way (loose bounds: a shared machine).
    double a = (double)(t1 - t0), b = (double)(t2 - t1);
    if (a > 3 * b || b > 3 * a) {
        fail_msg("wrong password %.0f us, unknown user %.0f us", a, b);
    }
    tn_resp_free(&wrong);
    tn_resp_free(&unknown);
    //  Both attempts recorded, with the address and why.
    assert_int_equal(s_sql_int(node,
                               "SELECT count(*) FROM login_attempts WHERE username = 'alike' AND"
                               " NOT success AND outcome = 'bad_credentials' AND ip = '127.0.0.20'"
                               " AND user_id IS NOT NULL"),
                     1);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM login_attempts WHERE username ="
                                     " 'nobody-here' AND user_id IS NULL AND ip = '127.0.0.21'"),
                     1);
    assert_true(s_sql_int(node, "SELECT count(*) FROM login_attempts WHERE username = 'admin'"
                                " AND success") >= 1);
}

static void
test_api_auth_lockout_and_its_expiry(void **state)
{
    tn_node_t *node = *state;
    char *token = NULL;
    assert_true(tn_user(node, "locky", "user", &token) > 0);
    free(token);
    assert_true(tn_user(node, "bystander", "user", &token) > 0);
    free(token);
    tn_resp_t r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(s_login(node, "127.0.0.30", "locky", "wrong-password-guess", NULL, &r),
                         401);
        tn_resp_free(&r);
    }
    //  The right password is refused now, from that address ...
    assert_int_equal(s_login(node, "127.0.0.30", "locky", TN_USER_PASSWORD, NULL, &r), 429);
    assert_string_equal(tn_error_code(&r), "rate_limited");
    char buf[32];
    assert_non_null(tn_header(&r, "retry-after", buf, sizeof buf));
    long after = strtol(buf, NULL, 10);
    assert_true(after >= 1 && after <= S_WINDOW_S);
    tn_resp_free(&r);
    //  ... and for that user from anywhere; from that address for anyone.
    assert_int_equal(s_login(node, "127.0.0.31", "locky", TN_USER_PASSWORD, NULL, &r), 429);
    tn_resp_free(&r);
    assert_int_equal(s_login(node, "127.0.0.30", "bystander", TN_USER_PASSWORD, NULL, &r), 429);
    tn_resp_free(&r);
    //  Another user from another address is unaffected.
    assert_int_equal(s_login(node, "127.0.0.31", "bystander", TN_USER_PASSWORD, NULL, &r), 200);
    tn_resp_free(&r);
    //  Every attempt is recorded, the refused ones as locked.
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM login_attempts WHERE username ="
                                     " 'locky' AND outcome = 'bad_credentials'"),
                     5);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM login_attempts WHERE outcome ="
                                     " 'locked' AND ip IN ('127.0.0.30', '127.0.0.31')"),
                     3);
    //  Once the window has passed, the right password works again.
    zclock_sleep((S_WINDOW_S + 1) * 1000);
    assert_int_equal(s_login(node, "127.0.0.30", "locky", TN_USER_PASSWORD, NULL, &r), 200);
    tn_resp_free(&r);
}

//  A flood of logins is refused quickly beyond the hashing cap, never
//  queued: 2 api actors x 8 jobs may wait; the rest get 503 with
//  Retry-After at once.
typedef struct {
    const tn_node_t *node;
    char source[32];
    long status;
    bool retry_after;
    int64_t took_us;
} s_flood_t;

static void *
s_flooder(void *arg)
{
    s_flood_t *f = (s_flood_t *)arg;
    tn_resp_t r;
    int64_t t0 = zclock_usecs();
    f->status = s_login(f->node, f->source, "flood", TN_USER_PASSWORD, NULL, &r);
    f->took_us = zclock_usecs() - t0;
    char buf[16];
    f->retry_after = tn_header(&r, "retry-after", buf, sizeof buf) != NULL;
    tn_resp_free(&r);
    return NULL;
}

static void
test_api_auth_login_flood_is_refused_not_queued(void **state)
{
    tn_node_t *node = *state;
    char *token = NULL;
    assert_true(tn_user(node, "flood", "user", &token) > 0);
    free(token);
    enum { N = 48 };
    s_flood_t floods[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        floods[i] = (s_flood_t){.node = node};
        snprintf(floods[i].source, sizeof floods[i].source, "127.0.3.%d", i + 1);
        assert_int_equal(pthread_create(&threads[i], NULL, s_flooder, &floods[i]), 0);
    }
    int ok = 0, refused = 0;
    int64_t slowest_refusal = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        if (floods[i].status == 200) {
            ok++;
        } else if (floods[i].status == 503) {
            refused++;
            assert_true(floods[i].retry_after);
            if (floods[i].took_us > slowest_refusal) {
                slowest_refusal = floods[i].took_us;
            }
        } else {
            fail_msg("flood login %d: %ld", i, floods[i].status);
        }
    }
    assert_true(ok >= 1);
    assert_true(refused >= 1);
    assert_true(ok <= 2 * 8 + 8); //  at most the cap, plus logins that ended meanwhile
    //  Refusals do not wait for argon2id (loose: a shared, sanitized build).
    assert_true(slowest_refusal < 3000000);
}

//  --- tokens -------------------------------------------------------------------------------

static char *
s_b64(const void *data, size_t len)
{
    size_t size = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(size);
    sodium_bin2base64(out, size, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

//  The claims of an admin access token of family f1 (jti, iat, exp).
static void
s_admin_claims(char *out, size_t size, int64_t admin, const char *jti, int64_t iat, int64_t exp)
{
    snprintf(out, size,
             "{\"sub\":\"%lld\",\"role\":\"admin\",\"jti\":\"%s\",\"fam\":\"f1\",\"iat\":%lld,"
             "\"exp\":%lld}",
             (long long)admin, jti, (long long)iat, (long long)exp);
}

//  header.payload.signature with HMAC-SHA-256 under key (NULL: no
//  signature at all).
static char *
s_forge(const char *header, const char *payload, const uint8_t *key)
{
    char *h = s_b64(header, strlen(header)), *p = s_b64(payload, strlen(payload));
    char *signing = zsys_sprintf("%s.%s", h, p);
    char *sig = strdup("");
    if (key) {
        uint8_t mac[32];
        crypto_auth_hmacsha256(mac, (const uint8_t *)signing, strlen(signing), key);
        free(sig);
        sig = s_b64(mac, sizeof mac);
    }
    char *token = zsys_sprintf("%s.%s", signing, sig);
    free(h);
    free(p);
    zstr_free(&signing);
    free(sig);
    return token;
}

static void
test_api_auth_forged_expired_and_other_alg_tokens(void **state)
{
    tn_node_t *node = *state;
    char *hex = tn_sql(node, "SELECT encode(key, 'hex') FROM auth_keys WHERE name = 'jwt'");
    assert_non_null(hex);
    uint8_t key[32], other[32];
    size_t len = 0;
    assert_int_equal(sodium_hex2bin(key, 32, hex, strlen(hex), NULL, &len, NULL), 0);
    free(hex);
    randombytes_buf(other, sizeof other);
    int64_t admin = s_sql_int(node, "SELECT id FROM users WHERE username = 'admin'");
    int64_t now = (int64_t)time(NULL);
    const char *hs256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char payload[256];
    s_admin_claims(payload, sizeof payload, admin, "j1", now - 10, now + 600);
    //  Sanity: the right key makes a token that works.
    char *good = s_forge(hs256, payload, key);
    s_check(node, NULL, good, "GET", "/api/v1/users", NULL, 200);
    //  Another key, a changed payload, no signature, alg none, HS512.
    char *forged = s_forge(hs256, payload, other);
    s_check(node, NULL, forged, "GET", "/api/v1/auth/me", NULL, 401);
    char tampered[256];
    snprintf(tampered, sizeof tampered, "%s", payload);
    tampered[9] = tampered[9] == '1' ? '2' : '1'; //  another sub, same signature
    char *swapped = s_forge(hs256, tampered, NULL);
    char *dot = strrchr(good, '.');
    char *resigned = zsys_sprintf("%s%s", swapped, dot + 1);
    s_check(node, NULL, resigned, "GET", "/api/v1/auth/me", NULL, 401);
    char *none = s_forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL);
    s_check(node, NULL, none, "GET", "/api/v1/auth/me", NULL, 401);
    char *hs512 = s_forge("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", payload, key);
    s_check(node, NULL, hs512, "GET", "/api/v1/auth/me", NULL, 401);
    //  Expired, and issued in the future.
    s_admin_claims(payload, sizeof payload, admin, "j2", now - 1000, now - 100);
    char *expired = s_forge(hs256, payload, key);
    tn_resp_t r = s_expect(node, NULL, expired, "GET", "/api/v1/auth/me", NULL, 401);
    assert_non_null(strstr(r.body, "expired"));
    tn_resp_free(&r);
    s_admin_claims(payload, sizeof payload, admin, "j3", now + 300, now + 900);
    char *future = s_forge(hs256, payload, key);
    s_check(node, NULL, future, "GET", "/api/v1/auth/me", NULL, 401);
    s_check(node, NULL, "not.a.token", "GET", "/api/v1/auth/me", NULL, 401);
    //  A token the node has already verified (and keeps as verified) is
    //  refused once it expires.
    s_admin_claims(payload, sizeof payload, admin, "j4", now - 10, now + 2);
    char *brief = s_forge(hs256, payload, key);
    s_check(node, NULL, brief, "GET", "/api/v1/auth/me", NULL, 200);
    s_check(node, NULL, brief, "GET", "/api/v1/auth/me", NULL, 200);
    while ((int64_t)time(NULL) < now + 2) {
        zclock_sleep(100);
    }
    r = s_expect(node, NULL, brief, "GET", "/api/v1/auth/me", NULL, 401);
    assert_non_null(strstr(r.body, "expired"));
    tn_resp_free(&r);
    free(brief);
    const char *const bearer_empty[] = {"Authorization: Bearer ", NULL};
    tn_resp_t e;
    assert_int_equal(tn_request_as(node, NULL, "GET", "/api/v1/auth/me", NULL, bearer_empty, &e),
                     401);
    tn_resp_free(&e);
    free(good);
    free(forged);
    free(swapped);
    zstr_free(&resigned);
    free(none);
    free(hs512);
    free(expired);
    free(future);
}

static void
test_api_auth_refresh_rotation_and_reuse(void **state)
{
    tn_node_t *node = *state;
    char *refresh = NULL;
    char *access = tn_login(node, "admin", TN_ADMIN_PASSWORD, &refresh);
    assert_non_null(access);
    char body[160];
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", refresh);
    tn_resp_t r = s_expect(node, NULL, NULL, "POST", "/api/v1/auth/refresh", body, 200);
    char *access2 = strdup(s_str(&r, "access_token"));
    char *refresh2 = strdup(s_str(&r, "refresh_token"));
    assert_string_not_equal(refresh2, refresh);
    tn_resp_free(&r);
    s_check(node, NULL, access2, "GET", "/api/v1/auth/me", NULL, 200);
    //  The first refresh token is dead; presenting it again revokes the
    //  whole login: the newer pair dies too, access tokens included.
    s_check(node, NULL, NULL, "POST", "/api/v1/auth/refresh", body, 401);
    s_check(node, NULL, access2, "GET", "/api/v1/auth/me", NULL, 401);
    s_check(node, NULL, access, "GET", "/api/v1/auth/me", NULL, 401);
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", refresh2);
    s_check(node, NULL, NULL, "POST", "/api/v1/auth/refresh", body, 401);
    //  Unknown and malformed refresh tokens.
    s_check(node, NULL, NULL, "POST", "/api/v1/auth/refresh",
            "{\"refresh_token\":\"cdr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}", 401);
    s_check(node, NULL, NULL, "POST", "/api/v1/auth/refresh", "{\"refresh_token\":\"x\"}", 401);
    //  Other logins are unaffected.
    s_check(node, NULL, node->admin_token, "GET", "/api/v1/auth/me", NULL, 200);
    free(access);
    free(access2);
    free(refresh);
    free(refresh2);
}

static void
test_api_auth_logout(void **state)
{
    tn_node_t *node = *state;
    char *refresh = NULL;
    char *access = tn_login(node, "admin", TN_ADMIN_PASSWORD, &refresh);
    s_check(node, NULL, access, "GET", "/api/v1/auth/me", NULL, 200);
    s_check(node, NULL, access, "POST", "/api/v1/auth/logout", NULL, 204);
    s_check(node, NULL, access, "GET", "/api/v1/auth/me", NULL, 401);
    char body[160];
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", refresh);
    s_check(node, NULL, NULL, "POST", "/api/v1/auth/refresh", body, 401);
    s_check(node, NULL, node->admin_token, "GET", "/api/v1/auth/me", NULL, 200);
    free(access);
    free(refresh);
}

//  --- API keys ------------------------------------------------------------------------------

static void
test_api_auth_api_keys(void **state)
{
    tn_node_t *node = *state;
    char *alice = NULL, *bob = NULL;
    int64_t alice_id = tn_user(node, "keyalice", "user", &alice);
    assert_true(alice_id > 0);
    assert_true(tn_user(node, "keybob", "user", &bob) > 0);
    tn_resp_t r = s_expect(node, NULL, alice, "POST", "/api/v1/api-keys", "{\"name\":\"ci\"}", 201);
    char *key = strdup(s_str(&r, "key"));
    int64_t id = json_integer_value(json_object_get(r.json, "id"));
    assert_memory_equal(key, "cdk_", 4);
    assert_int_equal(strlen(key), 47);
    char loc[64], want[64];
    snprintf(want, sizeof want, "/api/v1/api-keys/%lld", (long long)id);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), want);
    tn_resp_free(&r);
    //  Only its hash is stored.
    assert_int_equal(s_sql_int(node,
                               "SELECT count(*) FROM api_keys WHERE id = %lld AND"
                               " octet_length(key_hash) = 32",
                               (long long)id),
                     1);
    //  The key authenticates as its owner.
    r = s_expect(node, NULL, key, "GET", "/api/v1/auth/me", NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "id")), alice_id);
    tn_resp_free(&r);
    s_check(node, NULL, key, "GET", "/api/v1/auth/me", NULL, 200); //  from the cache
    s_check(node, NULL, key, "GET", "/api/v1/users", NULL, 403);   //  a user's key
    //  Listed without the key, for its owner and admins only.
    r = s_expect(node, NULL, alice, "GET", "/api/v1/api-keys", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_null(strstr(r.body, key));
    tn_resp_free(&r);
    r = s_expect(node, NULL, bob, "GET", "/api/v1/api-keys", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    tn_resp_free(&r);
    r = s_expect(node, NULL, node->admin_token, "GET", "/api/v1/api-keys", NULL, 200);
    assert_true(json_array_size(json_object_get(r.json, "items")) >= 1);
    tn_resp_free(&r);
    //  Another user cannot delete it; its owner can, and it stops at once.
    s_check(node, NULL, bob, "DELETE", want, NULL, 404);
    s_check(node, NULL, key, "GET", "/api/v1/auth/me", NULL, 200);
    s_check(node, NULL, alice, "DELETE", want, NULL, 204);
    r = s_expect(node, NULL, key, "GET", "/api/v1/auth/me", NULL, 401);
    assert_string_equal(tn_error_code(&r), "unauthenticated");
    tn_resp_free(&r);
    s_check(node, NULL, alice, "DELETE", want, NULL, 404);
    //  Idempotency-Key never stores a secret for a replay: each POST makes a
    //  new key, and no stored answer holds a key or a token.
    const char *const idem[] = {"Idempotency-Key: same-key", NULL};
    tn_resp_t i1, i2;
    assert_int_equal(
        tn_request_as(node, alice, "POST", "/api/v1/api-keys", "{\"name\":\"i\"}", idem, &i1), 201);
    assert_int_equal(
        tn_request_as(node, alice, "POST", "/api/v1/api-keys", "{\"name\":\"i\"}", idem, &i2), 201);
    assert_string_not_equal(s_str(&i1, "key"), s_str(&i2, "key"));
    tn_resp_free(&i1);
    tn_resp_free(&i2);
    assert_int_equal(
        tn_request_as(node, NULL, "POST", "/api/v1/auth/login",
                      "{\"username\":\"keybob\",\"password\":\"" TN_USER_PASSWORD "\"}", idem, &i1),
        200);
    tn_resp_free(&i1);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM idempotency_keys WHERE response_body"
                                     " LIKE '%%cdk_%%' OR response_body LIKE '%%access_token%%'"),
                     0);
    //  Malformed and unknown keys; logout has no session with a key.
    s_check(node, NULL, "cdk_nonsense", "GET", "/api/v1/auth/me", NULL, 401);
    s_check(node, NULL, "cdk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "GET", "/api/v1/auth/me",
            NULL, 401);
    r = s_expect(node, NULL, alice, "POST", "/api/v1/api-keys", "{\"name\":\"two\"}", 201);
    char *key2 = strdup(s_str(&r, "key"));
    tn_resp_free(&r);
    s_check(node, NULL, key2, "POST", "/api/v1/auth/logout", NULL, 400);
    //  Deleting the user ends its keys at once.
    s_check(node, NULL, key2, "GET", "/api/v1/auth/me", NULL, 200);
    snprintf(want, sizeof want, "/api/v1/users/%lld", (long long)alice_id);
    s_check(node, NULL, node->admin_token, "DELETE", want, NULL, 204);
    s_check(node, NULL, key2, "GET", "/api/v1/auth/me", NULL, 401);
    s_check(node, NULL, alice, "GET", "/api/v1/auth/me", NULL, 401);
    free(key);
    free(key2);
    free(alice);
    free(bob);
}

//  --- bans -----------------------------------------------------------------------------------

static void
test_api_auth_banned_addresses(void **state)
{
    tn_node_t *node = *state;
    const char *admin = node->admin_token;
    tn_resp_t r = s_expect(node, NULL, admin, "POST", "/api/v1/banned-ips",
                           "{\"ip\":\"127.0.0.40\",\"reason\":\"test\"}", 201);
    int64_t id = json_integer_value(json_object_get(r.json, "id"));
    assert_string_equal(s_str(&r, "ip"), "127.0.0.40");
    tn_resp_free(&r);
    //  403 on every route, /health and unknown paths included, at once.
    r = s_expect(node, "127.0.0.40", NULL, "GET", "/health", NULL, 403);
    assert_string_equal(tn_error_code(&r), "forbidden");
    tn_resp_free(&r);
    s_check(node, "127.0.0.40", NULL, "GET", "/no/such/path", NULL, 403);
    s_check(node, "127.0.0.40", admin, "GET", "/api/v1/tasks", NULL, 403);
    r = s_expect(node, "127.0.0.40", NULL, "POST", "/api/v1/auth/login",
                 "{\"username\":\"admin\",\"password\":\"" TN_ADMIN_PASSWORD "\"}", 403);
    tn_resp_free(&r);
    s_check(node, "127.0.0.41", NULL, "GET", "/health", NULL, 200);
    s_check(node, NULL, admin, "POST", "/api/v1/banned-ips", "{\"ip\":\"127.0.0.40\"}", 409);
    s_check(node, NULL, admin, "POST", "/api/v1/banned-ips", "{\"ip\":\"not-an-ip\"}", 400);
    r = s_expect(node, NULL, admin, "GET", "/api/v1/banned-ips", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    tn_resp_free(&r);
    //  Lifting it works at once too.
    char path[64];
    snprintf(path, sizeof path, "/api/v1/banned-ips/%lld", (long long)id);
    s_check(node, NULL, admin, "DELETE", path, NULL, 204);
    s_check(node, "127.0.0.40", NULL, "GET", "/health", NULL, 200);
    s_check(node, NULL, admin, "DELETE", path, NULL, 404);
    //  A network; and a ban that expires.
    r = s_expect(node, NULL, admin, "POST", "/api/v1/banned-ips", "{\"ip\":\"127.0.1.0/24\"}", 201);
    assert_string_equal(s_str(&r, "ip"), "127.0.1.0/24");
    tn_resp_free(&r);
    s_check(node, "127.0.1.7", NULL, "GET", "/health", NULL, 403);
    s_check(node, "127.0.2.7", NULL, "GET", "/health", NULL, 200);
    char body[128];
    char *until = tn_sql(node, "SELECT cd_ts(now() + interval '2 seconds')");
    snprintf(body, sizeof body, "{\"ip\":\"127.0.0.42\",\"expires_at\":\"%s\"}", until);
    free(until);
    s_check(node, NULL, admin, "POST", "/api/v1/banned-ips", body, 201);
    s_check(node, "127.0.0.42", NULL, "GET", "/health", NULL, 403);
    zclock_sleep(3000);
    s_check(node, "127.0.0.42", NULL, "GET", "/health", NULL, 200);
    //  A user may not ban.
    char *user = NULL;
    assert_true(tn_user(node, "banner", "user", &user) > 0);
    s_check(node, NULL, user, "POST", "/api/v1/banned-ips", "{\"ip\":\"10.1.1.1\"}", 403);
    s_check(node, NULL, user, "GET", "/api/v1/banned-ips", NULL, 403);
    free(user);
}

//  --- roles and ownership ------------------------------------------------------------------------

//  A route's pattern with every {param} replaced by "1".
static void
s_fill(const char *pattern, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = pattern; *p && n + 2 < size; p++) {
        if (*p == '{') {
            out[n++] = '1';
            p = strchr(p, '}');
            if (!p) {
                break;
            }
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

static void
test_api_auth_every_admin_route_refuses_a_user(void **state)
{
    tn_node_t *node = *state;
    char *user = NULL;
    assert_true(tn_user(node, "walker", "user", &user) > 0);
    int admin_routes = 0, auth_routes = 0;
    for (size_t t = 0; t < cd_http_n_route_tables; t++) {
        const cd_route_table_t *table = &cd_http_route_tables[t];
        for (size_t i = 0; i < *table->n; i++) {
            const cd_route_t *route = &table->routes[i];
            if (!cd_route_needs_auth(route)) {
                continue;
            }
            char path[256];
            s_fill(route->pattern, path, sizeof path);
            const char *body = route->body ? "{}" : NULL;
            tn_resp_t r;
            if (route->flags & CD_ROUTE_ADMIN) {
                admin_routes++;
                long status = tn_call_as(node, user, &r, route->method, path, body);
                if (status != 403 || strcmp(tn_error_code(&r), "forbidden") != 0) {
                    fail_msg("%s %s as a user: %ld %s", route->method, route->pattern, status,
                             r.body);
                }
                tn_resp_free(&r);
            }
            auth_routes++;
            long status = tn_call_as(node, NULL, &r, route->method, path, body);
            if (status != 401) {
                fail_msg("%s %s anonymously: %ld %s", route->method, route->pattern, status,
                         r.body);
            }
            tn_resp_free(&r);
        }
    }
    assert_true(admin_routes > 20);
    assert_true(auth_routes > admin_routes);
    free(user);
}

static void
test_api_auth_users_see_only_their_own(void **state)
{
    tn_node_t *node = *state;
    char *amy = NULL, *ben = NULL;
    int64_t amy_id = tn_user(node, "amy", "user", &amy);
    assert_true(amy_id > 0);
    assert_true(tn_user(node, "ben", "user", &ben) > 0);
    //  Amy's project and task carry her id.
    tn_resp_t r =
        s_expect(node, NULL, amy, "POST", "/api/v1/projects", "{\"name\":\"amy's\"}", 201);
    int64_t project = json_integer_value(json_object_get(r.json, "id"));
    assert_int_equal(json_integer_value(json_object_get(r.json, "created_by")), amy_id);
    tn_resp_free(&r);
    char body[256];
    snprintf(body, sizeof body,
             "{\"title\":\"amy's task\",\"project_id\":%lld,\"assignee\":{\"agent\":\"echo\"}}",
             (long long)project);
    r = s_expect(node, NULL, amy, "POST", "/api/v1/tasks", body, 201);
    int64_t task = json_integer_value(json_object_get(r.json, "id"));
    tn_resp_free(&r);
    assert_int_equal(
        s_sql_int(node, "SELECT created_by FROM tasks WHERE id = %lld", (long long)task), amy_id);
    r = s_expect(node, NULL, amy, "POST", "/api/v1/schedules",
                 "{\"name\":\"amy's\",\"interval_s\":3600,\"task\":{\"title\":\"t\","
                 "\"assignee\":{\"agent\":\"echo\"}}}",
                 201);
    int64_t schedule = json_integer_value(json_object_get(r.json, "id"));
    tn_resp_free(&r);
    //  Ben sees none of it: 404 and absent from lists.
    char path[96];
    snprintf(path, sizeof path, "/api/v1/projects/%lld", (long long)project);
    s_check(node, NULL, amy, "GET", path, NULL, 200);
    s_check(node, NULL, ben, "GET", path, NULL, 404);
    s_check(node, NULL, ben, "PATCH", path, "{\"name\":\"mine\"}", 404);
    s_check(node, NULL, ben, "DELETE", path, NULL, 404);
    s_check(node, NULL, node->admin_token, "GET", path, NULL, 200);
    snprintf(path, sizeof path, "/api/v1/tasks/%lld", (long long)task);
    s_check(node, NULL, amy, "GET", path, NULL, 200);
    s_check(node, NULL, ben, "GET", path, NULL, 404);
    s_check(node, NULL, ben, "PATCH", path, "{\"title\":\"mine\"}", 404);
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/cancel", (long long)task);
    s_check(node, NULL, ben, "POST", path, NULL, 404);
    snprintf(path, sizeof path, "/api/v1/schedules/%lld", (long long)schedule);
    s_check(node, NULL, amy, "GET", path, NULL, 200);
    s_check(node, NULL, ben, "GET", path, NULL, 404);
    static const char *const lists[] = {"/api/v1/projects", "/api/v1/tasks", "/api/v1/schedules",
                                        "/api/v1/hitl"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        r = s_expect(node, NULL, ben, "GET", lists[i], NULL, 200);
        if (json_array_size(json_object_get(r.json, "items")) != 0) {
            fail_msg("%s as ben: %s", lists[i], r.body);
        }
        tn_resp_free(&r);
        r = s_expect(node, NULL, amy, "GET", lists[i], NULL, 200);
        if (i < 3 && json_array_size(json_object_get(r.json, "items")) != 1) {
            fail_msg("%s as amy: %s", lists[i], r.body);
        }
        tn_resp_free(&r);
    }
    free(amy);
    free(ben);
}

//  --- users (A) --------------------------------------------------------------------------------

static void
test_api_auth_users_crud(void **state)
{
    tn_node_t *node = *state;
    const char *admin = node->admin_token;
    tn_resp_t r = s_expect(node, NULL, admin, "POST", "/api/v1/users",
                           "{\"username\":\"carl\",\"password\":\"" TN_USER_PASSWORD "\"}", 201);
    int64_t id = json_integer_value(json_object_get(r.json, "id"));
    assert_string_equal(s_str(&r, "role"), "user");
    assert_false(json_is_true(json_object_get(r.json, "mfa_enabled")));
    char loc[64], path[64];
    snprintf(path, sizeof path, "/api/v1/users/%lld", (long long)id);
    assert_string_equal(tn_header(&r, "location", loc, sizeof loc), path);
    tn_resp_free(&r);
    //  The hash is argon2id; never the password.
    char *hash = tn_sql(node, "SELECT password_hash FROM users WHERE username = 'carl'");
    assert_memory_equal(hash, "$argon2id$", 10);
    assert_null(strstr(hash, TN_USER_PASSWORD));
    free(hash);
    s_check(node, NULL, admin, "POST", "/api/v1/users",
            "{\"username\":\"CARL\",\"password\":\"" TN_USER_PASSWORD "\"}", 409);
    r = s_expect(node, NULL, admin, "POST", "/api/v1/users",
                 "{\"username\":\"dora\",\"password\":\"short\"}", 400);
    assert_string_equal(tn_error_code(&r), "weak_password");
    tn_resp_free(&r);
    //  Eleven characters of two bytes each are eleven characters.
    r = s_expect(node, NULL, admin, "POST", "/api/v1/users",
                 "{\"username\":\"dora\",\"password\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
                 "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}",
                 400);
    assert_string_equal(tn_error_code(&r), "weak_password");
    tn_resp_free(&r);
    s_check(node, NULL, admin, "POST", "/api/v1/users",
            "{\"username\":\"bad name\",\"password\":\"" TN_USER_PASSWORD "\"}", 400);
    s_check(node, NULL, admin, "POST", "/api/v1/users",
            "{\"username\":\"eve\",\"password\":\"" TN_USER_PASSWORD "\",\"role\":\"root\"}", 400);
    s_check(node, NULL, admin, "GET", path, NULL, 200);
    r = s_expect(node, NULL, admin, "GET", "/api/v1/users?limit=1000", NULL, 200);
    assert_true(json_array_size(json_object_get(r.json, "items")) >= 2);
    tn_resp_free(&r);
    //  A new role ends the user's logins; the new role holds at the next.
    char *carl = tn_login(node, "carl", TN_USER_PASSWORD, NULL);
    s_check(node, NULL, carl, "GET", "/api/v1/users", NULL, 403);
    r = s_expect(node, NULL, admin, "PATCH", path, "{\"role\":\"admin\"}", 200);
    assert_string_equal(s_str(&r, "role"), "admin");
    tn_resp_free(&r);
    s_check(node, NULL, carl, "GET", "/api/v1/auth/me", NULL, 401);
    free(carl);
    carl = tn_login(node, "carl", TN_USER_PASSWORD, NULL);
    s_check(node, NULL, carl, "GET", "/api/v1/users", NULL, 200);
    //  An admin keeps its own role and account.
    int64_t admin_id = s_sql_int(node, "SELECT id FROM users WHERE username = 'admin'");
    char self[64];
    snprintf(self, sizeof self, "/api/v1/users/%lld", (long long)admin_id);
    s_check(node, NULL, admin, "PATCH", self, "{\"role\":\"user\"}", 409);
    s_check(node, NULL, admin, "DELETE", self, NULL, 409);
    //  A reset password.
    s_check(node, NULL, admin, "PATCH", path, "{\"password\":\"short\"}", 400);
    s_check(node, NULL, admin, "PATCH", path, "{\"password\":\"a-brand-new-password\"}", 200);
    s_check(node, NULL, carl, "GET", "/api/v1/auth/me", NULL, 401);
    free(carl);
    carl = tn_login(node, "carl", "a-brand-new-password", NULL);
    assert_non_null(carl);
    s_check(node, NULL, admin, "DELETE", path, NULL, 204);
    s_check(node, NULL, carl, "GET", "/api/v1/auth/me", NULL, 401);
    s_check(node, NULL, admin, "GET", path, NULL, 404);
    s_check(node, NULL, admin, "DELETE", path, NULL, 404);
    free(carl);
}

//  --- passwords ------------------------------------------------------------------------------

static void
s_change(const tn_node_t *node, const char *token, const char *current, const char *next,
         long status, const char *code)
{
    char body[256];
    snprintf(body, sizeof body, "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", current,
             next);
    tn_resp_t r = s_expect(node, NULL, token, "POST", "/api/v1/auth/password", body, status);
    if (code) {
        assert_string_equal(tn_error_code(&r), code);
    }
    tn_resp_free(&r);
}

static void
test_api_auth_password_change_and_history(void **state)
{
    tn_node_t *node = *state;
    char *token = NULL;
    assert_true(tn_user(node, "hist", "user", &token) > 0);
    char *other = tn_login(node, "hist", TN_USER_PASSWORD, NULL);
    s_change(node, token, "wrong-current-password", "password-number-one", 403, "forbidden");
    s_change(node, token, TN_USER_PASSWORD, "too-short", 400, "weak_password");
    s_change(node, token, TN_USER_PASSWORD, TN_USER_PASSWORD, 400, "password_reused");
    static const char *const pw[] = {"password-number-one", "password-number-two",
                                     "password-number-three", "password-number-four",
                                     "password-number-five"};
    const char *current = TN_USER_PASSWORD;
    for (int i = 0; i < 5; i++) {
        s_change(node, token, current, pw[i], 204, NULL);
        current = pw[i];
    }
    //  This login goes on; the other one ended with the first change.
    s_check(node, NULL, token, "GET", "/api/v1/auth/me", NULL, 200);
    s_check(node, NULL, other, "GET", "/api/v1/auth/me", NULL, 401);
    //  The original is among the last five (history), and so is the
    //  first new one; a sixth change pushes the original out.
    s_change(node, token, current, TN_USER_PASSWORD, 400, "password_reused");
    s_change(node, token, current, pw[0], 400, "password_reused");
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM password_history h JOIN users u ON"
                                     " u.id = h.user_id WHERE u.username = 'hist'"),
                     5);
    s_change(node, token, current, "password-number-six", 204, NULL);
    s_change(node, token, "password-number-six", TN_USER_PASSWORD, 204, NULL);
    //  Signing in takes the new password only.
    tn_resp_t r;
    assert_int_equal(s_login(node, "127.0.0.50", "hist", "password-number-six", NULL, &r), 401);
    tn_resp_free(&r);
    char *again = tn_login(node, "hist", TN_USER_PASSWORD, NULL);
    assert_non_null(again);
    free(again);
    free(other);
    free(token);
}

//  --- Idempotency-Key and secrets ----------------------------------------------------------

//  How many idempotency records hold one of the plain hashes of body
//  (BLAKE2b-256 and SHA-256 of the body alone, and BLAKE2b-256 of op, a
//  NUL and the body, as the api actor hashes a request).
static int64_t
s_plain_hashes_stored(const tn_node_t *node, const char *op, const char *body)
{
    uint8_t b2[32], sha[32], req[32];
    crypto_generichash(b2, sizeof b2, (const uint8_t *)body, strlen(body), NULL, 0);
    crypto_hash_sha256(sha, (const uint8_t *)body, strlen(body));
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof req);
    crypto_generichash_update(&st, (const uint8_t *)op, strlen(op) + 1);
    crypto_generichash_update(&st, (const uint8_t *)body, strlen(body));
    crypto_generichash_final(&st, req, sizeof req);
    char h1[65], h2[65], h3[65];
    sodium_bin2hex(h1, sizeof h1, b2, sizeof b2);
    sodium_bin2hex(h2, sizeof h2, sha, sizeof sha);
    sodium_bin2hex(h3, sizeof h3, req, sizeof req);
    return s_sql_int(node,
                     "SELECT count(*) FROM idempotency_keys WHERE request_hash IN"
                     " ('\\x%s'::bytea, '\\x%s'::bytea, '\\x%s'::bytea)",
                     h1, h2, h3);
}

//  POST body to path as cred with Idempotency-Key key; checks the status.
static void
s_post_keyed(const tn_node_t *node, const char *cred, const char *path, const char *body,
             const char *key, long status, const char *code)
{
    char line[128];
    snprintf(line, sizeof line, "Idempotency-Key: %s", key);
    const char *const headers[] = {line, NULL};
    tn_resp_t r;
    long got = tn_request_as(node, cred, "POST", path, body, headers, &r);
    if (got != status || (code && strcmp(tn_error_code(&r), code) != 0)) {
        fail_msg("POST %s (key %s): want %ld %s, got %ld %s", path, key, status, code ? code : "",
                 got, r.body ? r.body : "");
    }
    tn_resp_free(&r);
}

static void
test_api_auth_idempotency_stores_nothing_of_a_secret(void **state)
{
    tn_node_t *node = *state;
    //  An ordinary POST records its key with a request hash: the mechanism
    //  is on, and its hash is the request's plain one.
    static const char project[] = "{\"name\":\"keyed\"}";
    s_post_keyed(node, node->admin_token, "/api/v1/projects", project, "idem-project", 201, NULL);
    //  (A replay: one project.)
    s_post_keyed(node, node->admin_token, "/api/v1/projects", project, "idem-project", 201, NULL);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM projects WHERE name = 'keyed'"), 1);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM idempotency_keys WHERE key ="
                                     " 'idem-project' AND octet_length(request_hash) = 32"),
                     1);
    assert_int_equal(s_plain_hashes_stored(node, "projects.create", project), 1);

    //  A user's password: no record, no hash; a repeat runs again and is
    //  refused as a repeat would be without the key (the name is taken).
    static const char user[] =
        "{\"username\":\"idemuser\",\"password\":\"idem-user-password\",\"role\":\"user\"}";
    s_post_keyed(node, node->admin_token, "/api/v1/users", user, "idem-user", 201, NULL);
    s_post_keyed(node, node->admin_token, "/api/v1/users", user, "idem-user", 409, "conflict");
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM users WHERE username = 'idemuser'"), 1);
    //  A password change: the same.
    char *token = tn_login(node, "idemuser", "idem-user-password", NULL);
    assert_non_null(token);
    static const char change[] = "{\"current_password\":\"idem-user-password\","
                                 "\"new_password\":\"idem-user-password-2\"}";
    s_post_keyed(node, token, "/api/v1/auth/password", change, "idem-password", 204, NULL);
    s_post_keyed(node, token, "/api/v1/auth/password", change, "idem-password", 403, "forbidden");
    //  An MFA code.
    s_post_keyed(node, token, "/api/v1/auth/mfa/setup", NULL, "idem-mfa", 200, NULL);
    static const char code[] = "{\"code\":\"000000\"}";
    s_post_keyed(node, token, "/api/v1/auth/mfa/verify", code, "idem-mfa", 400, NULL);
    //  A login (its password, and the tokens of its answer).
    static const char login[] = "{\"username\":\"idemuser\",\"password\":\"idem-user-password-2\"}";
    s_post_keyed(node, NULL, "/api/v1/auth/login", login, "idem-login", 200, NULL);
    free(token);

    const char *keys[] = {"idem-user", "idem-password", "idem-mfa", "idem-login"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_int_equal(
            s_sql_int(node, "SELECT count(*) FROM idempotency_keys WHERE key = '%s'", keys[i]), 0);
    }
    assert_int_equal(s_plain_hashes_stored(node, "users.create", user), 0);
    assert_int_equal(s_plain_hashes_stored(node, "auth.password", change), 0);
    assert_int_equal(s_plain_hashes_stored(node, "auth.mfa_verify", code), 0);
    assert_int_equal(s_plain_hashes_stored(node, "auth.login", login), 0);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM idempotency_keys WHERE"
                                     " response_body LIKE '%%password%%'"),
                     0);
}

//  --- TOTP -----------------------------------------------------------------------------------

static void
test_api_auth_totp(void **state)
{
    tn_node_t *node = *state;
    char *token = NULL;
    assert_true(tn_user(node, "otp", "user", &token) > 0);
    tn_resp_t r = s_expect(node, NULL, token, "POST", "/api/v1/auth/mfa/setup", NULL, 200);
    char *secret = strdup(s_str(&r, "secret"));
    assert_int_equal(strlen(secret), 32);
    const char *uri = s_str(&r, "otpauth_uri");
    assert_non_null(strstr(uri, "otpauth://totp/cadre:otp?secret="));
    assert_non_null(strstr(uri, secret));
    tn_resp_free(&r);
    //  Not on until verified: a plain login still works.
    assert_int_equal(s_login(node, "127.0.0.60", "otp", TN_USER_PASSWORD, NULL, &r), 200);
    tn_resp_free(&r);
    int64_t now = (int64_t)time(NULL);
    char code[8], wrong[8], next[8];
    assert_int_equal(cd_totp_code(secret, now, code), 0);
    assert_int_equal(cd_totp_code(secret, now + 30, next), 0);
    snprintf(wrong, sizeof wrong, "%06d", (atoi(code) + 500000) % 1000000);
    char body[64];
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", wrong);
    s_check(node, NULL, token, "POST", "/api/v1/auth/mfa/verify", body, 400);
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    s_check(node, NULL, token, "POST", "/api/v1/auth/mfa/verify", body, 204);
    s_check(node, NULL, token, "POST", "/api/v1/auth/mfa/setup", NULL, 409);
    r = s_expect(node, NULL, token, "GET", "/api/v1/auth/me", NULL, 200);
    assert_true(json_is_true(json_object_get(r.json, "mfa_enabled")));
    tn_resp_free(&r);
    //  Without a code: mfa_required. With the code used to verify: a
    //  replay. A wrong code: refused. The next step's code: accepted, once.
    assert_int_equal(s_login(node, "127.0.0.61", "otp", TN_USER_PASSWORD, NULL, &r), 401);
    assert_string_equal(tn_error_code(&r), "mfa_required");
    tn_resp_free(&r);
    assert_int_equal(s_login(node, "127.0.0.61", "otp", TN_USER_PASSWORD, code, &r), 401);
    assert_string_equal(tn_error_code(&r), "unauthenticated");
    tn_resp_free(&r);
    assert_int_equal(s_login(node, "127.0.0.62", "otp", TN_USER_PASSWORD, wrong, &r), 401);
    tn_resp_free(&r);
    assert_int_equal(s_login(node, "127.0.0.63", "otp", TN_USER_PASSWORD, next, &r), 200);
    assert_non_null(s_str(&r, "access_token"));
    tn_resp_free(&r);
    assert_int_equal(s_login(node, "127.0.0.63", "otp", TN_USER_PASSWORD, next, &r), 401);
    tn_resp_free(&r);
    //  A right code with a wrong password is still a wrong password.
    assert_int_equal(s_login(node, "127.0.0.64", "otp", "wrong-password-here", next, &r), 401);
    assert_string_equal(tn_error_code(&r), "unauthenticated");
    tn_resp_free(&r);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM login_attempts WHERE username = 'otp'"
                                     " AND outcome IN ('mfa_required', 'mfa_invalid',"
                                     " 'mfa_replay')"),
                     4);
    free(secret);
    free(token);
}

//  --- audit ----------------------------------------------------------------------------------

//  Waits until the audit log has at least n rows of action on target.
static void
s_audited(const tn_node_t *node, const char *action, const char *target, int64_t user, int n)
{
    int64_t count = 0;
    for (int i = 0; i < 100 && count < n; i++) {
        count = s_sql_int(node,
                          "SELECT count(*) FROM audit_logs WHERE action = '%s' AND target = '%s'"
                          " AND user_id = %lld AND host(ip) = '127.0.0.1' AND hash IS NOT NULL"
                          " AND details ->> 'status' LIKE '2%%'",
                          action, target, (long long)user);
        if (count < n) {
            zclock_sleep(50);
        }
    }
    if (count < n) {
        fail_msg("no audit row for %s %s by %lld", action, target, (long long)user);
    }
}

static void
test_api_auth_audit_log_and_its_chain(void **state)
{
    tn_node_t *node = *state;
    const char *admin = node->admin_token;
    int64_t admin_id = s_sql_int(node, "SELECT id FROM users WHERE username = 'admin'");
    char *user = NULL;
    int64_t user_id = tn_user(node, "audited", "user", &user);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/users/%lld", (long long)user_id);
    s_audited(node, "users.create", path, admin_id, 1);
    s_audited(node, "auth.login", "/api/v1/auth/login", user_id, 1);
    tn_resp_t r = s_expect(node, NULL, user, "POST", "/api/v1/projects", "{\"name\":\"aud\"}", 201);
    snprintf(path, sizeof path, "/api/v1/projects/%lld",
             (long long)json_integer_value(json_object_get(r.json, "id")));
    tn_resp_free(&r);
    s_audited(node, "projects.create", path, user_id, 1);
    s_check(node, NULL, user, "PATCH", path, "{\"name\":\"aud2\"}", 200);
    s_audited(node, "projects.patch", path, user_id, 1);
    r = s_expect(node, NULL, admin, "POST", "/api/v1/templates",
                 "{\"name\":\"aud\",\"body\":\"hi\"}", 201);
    snprintf(path, sizeof path, "/api/v1/templates/%lld",
             (long long)json_integer_value(json_object_get(r.json, "id")));
    tn_resp_free(&r);
    s_audited(node, "templates.create", path, admin_id, 1);
    s_check(node, NULL, admin, "DELETE", path, NULL, 204);
    s_audited(node, "templates.delete", path, admin_id, 1);
    //  Failures and reads are not audited.
    int64_t before = s_sql_int(node, "SELECT count(*) FROM audit_logs");
    s_check(node, NULL, admin, "DELETE", path, NULL, 404);
    s_check(node, NULL, admin, "GET", "/api/v1/templates", NULL, 200);
    zclock_sleep(300);
    assert_int_equal(s_sql_int(node, "SELECT count(*) FROM audit_logs"), before);
    //  Admins list it, with filters; users may not.
    char query[160];
    snprintf(query, sizeof query, "/api/v1/audit-logs?user_id=%lld&action=projects.create",
             (long long)user_id);
    r = s_expect(node, NULL, admin, "GET", query, NULL, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    json_t *row = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(row, "ip")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(row, "action")), "projects.create");
    char since[64];
    snprintf(since, sizeof since, "%s", json_string_value(json_object_get(row, "ts")));
    tn_resp_free(&r);
    snprintf(query, sizeof query, "/api/v1/audit-logs?since=%s&limit=1000", since);
    r = s_expect(node, NULL, admin, "GET", query, NULL, 200);
    assert_true(json_array_size(json_object_get(r.json, "items")) >= 3);
    tn_resp_free(&r);
    s_check(node, NULL, admin, "GET", "/api/v1/audit-logs?since=yesterday", NULL, 400);
    s_check(node, NULL, user, "GET", "/api/v1/audit-logs", NULL, 403);
    //  The chain verifies; an edit, and a deletion, are found and named.
    r = s_expect(node, NULL, admin, "GET", "/api/v1/audit-logs/verify", NULL, 200);
    assert_true(json_is_true(json_object_get(r.json, "intact")));
    assert_true(json_integer_value(json_object_get(r.json, "rows")) >= 6);
    tn_resp_free(&r);
    int64_t victim = s_sql_int(node, "SELECT id FROM audit_logs WHERE action = 'projects.patch'");
    char *orig = tn_sql(node, "SELECT target FROM audit_logs WHERE action = 'projects.patch'");
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE audit_logs SET target = '/elsewhere' WHERE id = %lld",
             (long long)victim);
    free(tn_sql(node, sql));
    r = s_expect(node, NULL, admin, "GET", "/api/v1/audit-logs/verify", NULL, 200);
    assert_false(json_is_true(json_object_get(r.json, "intact")));
    assert_string_equal(s_str(&r, "verdict"), "edited");
    assert_int_equal(json_integer_value(json_object_get(r.json, "id")), victim);
    tn_resp_free(&r);
    snprintf(sql, sizeof sql, "UPDATE audit_logs SET target = '%s' WHERE id = %lld", orig,
             (long long)victim);
    free(tn_sql(node, sql));
    free(orig);
    r = s_expect(node, NULL, admin, "GET", "/api/v1/audit-logs/verify", NULL, 200);
    assert_true(json_is_true(json_object_get(r.json, "intact")));
    tn_resp_free(&r);
    snprintf(sql, sizeof sql, "DELETE FROM audit_logs WHERE id = %lld", (long long)victim);
    free(tn_sql(node, sql));
    r = s_expect(node, NULL, admin, "GET", "/api/v1/audit-logs/verify", NULL, 200);
    assert_string_equal(s_str(&r, "verdict"), "deleted");
    assert_true(json_integer_value(json_object_get(r.json, "id")) > victim);
    tn_resp_free(&r);
    free(user);
}

int
main(void)
{
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_auth_first_start_generates_the_admin_password),
        cmocka_unit_test(test_api_auth_login_me_and_anonymous),
        cmocka_unit_test(test_api_auth_unknown_user_and_wrong_password_alike),
        cmocka_unit_test(test_api_auth_lockout_and_its_expiry),
        cmocka_unit_test(test_api_auth_login_flood_is_refused_not_queued),
        cmocka_unit_test(test_api_auth_forged_expired_and_other_alg_tokens),
        cmocka_unit_test(test_api_auth_refresh_rotation_and_reuse),
        cmocka_unit_test(test_api_auth_logout),
        cmocka_unit_test(test_api_auth_api_keys),
        cmocka_unit_test(test_api_auth_banned_addresses),
        cmocka_unit_test(test_api_auth_every_admin_route_refuses_a_user),
        cmocka_unit_test(test_api_auth_users_see_only_their_own),
        cmocka_unit_test(test_api_auth_users_crud),
        cmocka_unit_test(test_api_auth_password_change_and_history),
        cmocka_unit_test(test_api_auth_totp),
        cmocka_unit_test(test_api_auth_idempotency_stores_nothing_of_a_secret),
        //  Last: it breaks the chain on purpose.
        cmocka_unit_test(test_api_auth_audit_log_and_its_chain),
    };
    int failed = cmocka_run_group_tests(tests, s_setup, s_teardown);
    curl_global_cleanup();
    return failed;
}
