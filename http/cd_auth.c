/*  cd_auth: the auth hook and the HTTP thread's caches (see cd_auth.h).

    State (cd__auth_t, owned by the HTTP thread):
      keys   hash hex -> s_key_t {user, admin, expiry}: API keys seen lately
      fams   family -> expiry: logins revoked within a token's lifetime
      bans   an array of networks (address, prefix length, expiry)
      gen    bumped by every change to keys: a lookup answered after a
             change it may have missed is asked again
    A tick every few seconds forgets what expired and, every
    CD_AUTH_BANS_REFRESH_MS, asks an api actor for the bans in force.

    Cost on the hot path: a bearer token is one HMAC-SHA-256 over about 300
    bytes plus a hash lookup of its family when any family is revoked; an
    API key is one BLAKE2b and a hash lookup; with no bans configured the
    ban check is one comparison.

    Interface: cd_auth_check; inside the layer cd__auth_start,
    cd__auth_stop, cd__auth_banned, cd__auth_notify. */
#include "cd_auth.h"
#include "http_internal.h"

#include "cd_error.h"
#include "cd_jwt.h"
#include "cd_log.h"
#include "cd_token.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define S_TICK_MS 5000     //  expiry sweep
#define S_FAM_SLACK_S 60   //  remember a revoked family this much beyond a token's life
#define S_LOOKUP_RETRIES 3 //  lookups asked again after a concurrent change

typedef struct {
    int64_t user_id;     //  the key's owner
    bool admin;          //  its role
    uint64_t expires_ms; //  h2o_now after which it is asked again
} s_key_t;

typedef struct {
    int family;        //  AF_INET or AF_INET6
    uint8_t addr[16];  //  network address (4 bytes for AF_INET)
    int prefix;        //  bits that must match
    int64_t expires_s; //  Unix time, 0: never
} s_ban_t;

struct cd__auth {
    cd_http_t *http;                       //  the server
    bool on;                               //  keys configured: check everything
    cd_jwt_key_t jwt;                      //  access tokens' key
    uint8_t token_key[CD_TOKEN_KEY_BYTES]; //  API-key hashes' key
    zhashx_t *keys;                        //  hash hex -> s_key_t *
    zhashx_t *fams;                        //  family -> int64_t * (forget after, Unix s)
    zhashx_t *verified;                    //  access tokens verified: hash hex -> claims
    uint8_t verified_key[crypto_generichash_KEYBYTES]; //  their hashes' key (random)
    s_ban_t *bans;                                     //  bans in force
    size_t n_bans;                                     //  entries in bans
    uint64_t gen;                                      //  bumped by every key invalidation
    uint64_t bans_gen;          //  bumped by every ban list received from a change
    uint64_t bans_ask_gen;      //  bans_gen when the refresh in flight was asked
    int lookups;                //  API-key lookups in flight
    uint64_t bans_due_ms;       //  next refresh of the bans (h2o_now)
    bool bans_asking;           //  a refresh is in flight
    h2o_timeout_t tick_timeout; //  the tick's list
    h2o_timeout_entry_t tick;   //  the tick
};

static void s_box_free(void **item);

//  --- bans --------------------------------------------------------------------------

//  Parses "addr/prefix" (or a bare address). False if malformed.
static bool
s_parse_net(const char *text, s_ban_t *ban)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", text);
    char *slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
    }
    memset(ban, 0, sizeof *ban);
    if (inet_pton(AF_INET, buf, ban->addr) == 1) {
        ban->family = AF_INET;
        ban->prefix = 32;
    } else if (inet_pton(AF_INET6, buf, ban->addr) == 1) {
        ban->family = AF_INET6;
        ban->prefix = 128;
    } else {
        return false;
    }
    if (slash) {
        char *end = NULL;
        long bits = strtol(slash + 1, &end, 10);
        if (!*(slash + 1) || *end || bits < 0 || bits > ban->prefix) {
            return false;
        }
        ban->prefix = (int)bits;
    }
    return true;
}

//  Replaces the bans with a JSON array of {ip, expires_at_s}. Returns 0 or
//  CD_EINVAL (nothing replaced).
static int
s_set_bans(cd__auth_t *a, const json_t *list)
{
    if (!json_is_array(list)) {
        return CD_EINVAL;
    }
    size_t n = json_array_size(list);
    s_ban_t *bans = n ? (s_ban_t *)calloc(n, sizeof *bans) : NULL;
    if (n && !bans) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(list, i);
        const char *ip = json_string_value(json_object_get(item, "ip"));
        json_t *exp = json_object_get(item, "expires_at_s");
        if (!ip || !s_parse_net(ip, &bans[i]) || !(json_is_null(exp) || json_is_integer(exp))) {
            free(bans);
            return CD_EINVAL;
        }
        bans[i].expires_s = json_is_integer(exp) ? json_integer_value(exp) : 0;
    }
    free(a->bans);
    a->bans = bans;
    a->n_bans = n;
    return 0;
}

static bool
s_in_net(const s_ban_t *ban, int family, const uint8_t *addr)
{
    if (ban->family != family) {
        return false;
    }
    int full = ban->prefix / 8, rest = ban->prefix % 8;
    if (memcmp(ban->addr, addr, (size_t)full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ban->addr[full] & mask) == (addr[full] & mask);
}

bool
cd__auth_banned(cd_http_rctx_t *rctx)
{
    cd__auth_t *a = rctx->http->auth;
    if (!a || a->n_bans == 0) {
        return false;
    }
    struct sockaddr_storage sa;
    h2o_conn_t *conn = rctx->req->conn;
    if (!conn->callbacks->get_peername ||
        conn->callbacks->get_peername(conn, (struct sockaddr *)&sa) == 0) {
        return false;
    }
    int family = sa.ss_family;
    const uint8_t *addr = NULL;
    if (family == AF_INET) {
        addr = (const uint8_t *)&((struct sockaddr_in *)&sa)->sin_addr;
    } else if (family == AF_INET6) {
        const struct in6_addr *v6 = &((struct sockaddr_in6 *)&sa)->sin6_addr;
        addr = v6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(v6)) {
            //  An IPv4 client of a dual-stack socket: judged as IPv4.
            family = AF_INET;
            addr = v6->s6_addr + 12;
        }
    } else {
        return false;
    }
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < a->n_bans; i++) {
        const s_ban_t *ban = &a->bans[i];
        if ((ban->expires_s == 0 || ban->expires_s > now) && s_in_net(ban, family, addr)) {
            return true;
        }
    }
    return false;
}

//  --- the bans' refresh and the expiry sweep ---------------------------------------------

static void
s_bans_reply(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    cd__auth_t *a = (cd__auth_t *)arg;
    a->bans_asking = false;
    int status = 0;
    json_t *body = NULL;
    //  A list read before a change arrived is stale: the change's stands.
    bool overtaken = a->bans_gen != a->bans_ask_gen;
    if (rc == 0 && !overtaken && cd__http_api_reply_json(reply, &status, &body) == 0 &&
        status == 200) {
        if (s_set_bans(a, body) != 0) {
            cd_log_warn("http", "bans not understood; keeping the previous list", NULL);
        }
    }
    json_decref(body);
}

static void
s_bans_ask(cd__auth_t *a)
{
    cd_http_t *http = a->http;
    if (a->bans_asking || http->opts.api_actors <= 0 || http->stopping) {
        return;
    }
    char to[32];
    snprintf(to, sizeof to, "api/%u", http->api_next++ % (unsigned)http->opts.api_actors);
    cd_pack_t *pack = http->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "m");
    cd_pack_cstr(pack, "GET");
    cd_envelope_t env;
    cd__http_envelope_init(http, &env, CD_KIND_TASK, to);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("auth.bans_live")};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    if (cd__http_call_detached(http, &env, http->opts.request_timeout_ms, s_bans_reply, a) == 0) {
        a->bans_asking = true;
        a->bans_ask_gen = a->bans_gen;
    }
}

static void
s_on_tick(h2o_timeout_entry_t *entry)
{
    cd__auth_t *a = H2O_STRUCT_FROM_MEMBER(cd__auth_t, tick, entry);
    uint64_t now_ms = h2o_now(a->http->loop);
    int64_t now_s = (int64_t)time(NULL);
    zlistx_t *gone = zlistx_new();
    for (int64_t *until = (int64_t *)zhashx_first(a->fams); until;
         until = (int64_t *)zhashx_next(a->fams)) {
        if (*until < now_s) {
            zlistx_add_end(gone, (void *)zhashx_cursor(a->fams));
        }
    }
    for (const char *fam = (const char *)zlistx_first(gone); fam;
         fam = (const char *)zlistx_next(gone)) {
        zhashx_delete(a->fams, fam);
    }
    zlistx_purge(gone);
    for (s_key_t *key = (s_key_t *)zhashx_first(a->keys); key;
         key = (s_key_t *)zhashx_next(a->keys)) {
        if (key->expires_ms < now_ms) {
            zlistx_add_end(gone, (void *)zhashx_cursor(a->keys));
        }
    }
    for (const char *hex = (const char *)zlistx_first(gone); hex;
         hex = (const char *)zlistx_next(gone)) {
        zhashx_delete(a->keys, hex);
    }
    zlistx_destroy(&gone);
    if (now_ms >= a->bans_due_ms) {
        a->bans_due_ms = now_ms + CD_AUTH_BANS_REFRESH_MS;
        s_bans_ask(a);
    }
    h2o_timeout_link(a->http->loop, &a->tick_timeout, &a->tick);
}

//  --- set-up and changes ------------------------------------------------------------------

int
cd__auth_start(cd_http_t *http)
{
    cd__auth_t *a = (cd__auth_t *)zmalloc(sizeof *a);
    a->http = http;
    http->auth = a;
    a->keys = zhashx_new();
    zhashx_set_destructor(a->keys, s_box_free);
    a->fams = zhashx_new();
    zhashx_set_destructor(a->fams, s_box_free);
    a->verified = zhashx_new();
    zhashx_set_destructor(a->verified, s_box_free);
    randombytes_buf(a->verified_key, sizeof a->verified_key);
    h2o_timeout_init(http->loop, &a->tick_timeout, S_TICK_MS);
    a->tick.cb = s_on_tick;
    a->bans_due_ms = h2o_now(http->loop) + CD_AUTH_BANS_REFRESH_MS;
    h2o_timeout_link(http->loop, &a->tick_timeout, &a->tick);
    if (!http->opts.auth_jwt_key || !http->opts.auth_token_key) {
        return 0;
    }
    a->on = true;
    cd_jwt_key_init(&a->jwt, http->opts.auth_jwt_key);
    memcpy(a->token_key, http->opts.auth_token_key, sizeof a->token_key);
    if (http->opts.auth_bans) {
        json_t *list = json_loads(http->opts.auth_bans, 0, NULL);
        int rc = s_set_bans(a, list);
        json_decref(list);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void
cd__auth_stop(cd_http_t *http)
{
    cd__auth_t *a = http->auth;
    if (!a) {
        return;
    }
    h2o_timeout_unlink(&a->tick);
    h2o_timeout_dispose(http->loop, &a->tick_timeout);
    zhashx_destroy(&a->keys);
    zhashx_destroy(&a->fams);
    zhashx_destroy(&a->verified);
    sodium_memzero(a->verified_key, sizeof a->verified_key);
    free(a->bans);
    cd_jwt_key_wipe(&a->jwt);
    sodium_memzero(a->token_key, sizeof a->token_key);
    free(a);
    http->auth = NULL;
}

static void
s_box_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void *
s_box(const void *data, size_t size)
{
    void *box = zmalloc(size);
    memcpy(box, data, size);
    return box;
}

void
cd__auth_notify(cd_http_t *http, const cd_envelope_t *env)
{
    cd__auth_t *a = http->auth;
    cd_bin_t value;
    cd_str_t text;
    if (!a || env->payload_type != CD_PAYLOAD_MAP ||
        cd_msgpack_map_find(env->payload, "effects", &value) != 0 ||
        cd_msgpack_read_str(value, &text) != 0) {
        return;
    }
    json_t *effects = json_loadb(text.ptr, text.len, 0, NULL);
    if (!effects) {
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(effects, "keys"), i, item)
    {
        if (json_is_string(item)) {
            zhashx_delete(a->keys, json_string_value(item));
        }
    }
    json_t *users = json_object_get(effects, "users");
    if (json_array_size(users) > 0) {
        zlistx_t *gone = zlistx_new();
        for (s_key_t *key = (s_key_t *)zhashx_first(a->keys); key;
             key = (s_key_t *)zhashx_next(a->keys)) {
            json_array_foreach(users, i, item)
            {
                if (json_integer_value(item) == key->user_id) {
                    zlistx_add_end(gone, (void *)zhashx_cursor(a->keys));
                }
            }
        }
        for (const char *hex = (const char *)zlistx_first(gone); hex;
             hex = (const char *)zlistx_next(gone)) {
            zhashx_delete(a->keys, hex);
        }
        zlistx_destroy(&gone);
    }
    if (json_object_get(effects, "keys") || users) {
        a->gen++;
    }
    int64_t until = (int64_t)time(NULL) + CD_JWT_TTL_S + S_FAM_SLACK_S;
    json_array_foreach(json_object_get(effects, "fams"), i, item)
    {
        const char *fam = json_string_value(item);
        if (fam && strlen(fam) <= CD_AUTH_FAM_MAX) {
            zhashx_update(a->fams, fam, s_box(&until, sizeof until));
        }
    }
    //  Streams opened with what was just revoked end now, like its requests.
    cd__events_revoke(http, effects);
    json_t *bans = json_object_get(effects, "bans");
    if (bans && s_set_bans(a, bans) != 0) {
        cd_log_warn("http", "bans not understood; keeping the previous list", NULL);
    } else if (bans) {
        a->bans_gen++;
    }
    json_decref(effects);
}

//  --- the hook ----------------------------------------------------------------------------

//  The admin check, once the caller is known.
static cd_auth_verdict_t
s_role(const cd_route_t *route, const cd_auth_identity_t *identity, const char **message)
{
    if ((route->flags & CD_ROUTE_ADMIN) && !identity->admin) {
        *message = "this needs the admin role";
        return CD_AUTH_FORBIDDEN;
    }
    return CD_AUTH_ALLOW;
}

//  Verifies an access token, or finds it verified before. A client sends
//  the same token with every request for its 15 minutes, and verifying
//  (base64, HMAC-SHA-256, the claims' JSON) is most of what authentication
//  costs a request; a verified token is found again by a keyed BLAKE2b of
//  its bytes (the key is random per process: the table's order reveals
//  nothing, and no token can be made to collide with another), with its
//  claims, until it expires. Revocation (fams) is checked on every request
//  all the same. Bounded: a full table is emptied, tokens are verified
//  again.
#define S_VERIFIED_MAX 4096

static cd_jwt_err_t
s_verify(cd__auth_t *a, const char *token, size_t len, cd_jwt_claims_t *claims)
{
    int64_t now = (int64_t)time(NULL);
    uint8_t hash[16];
    char hex[2 * sizeof hash + 1];
    bool hashed = len <= CD_JWT_MAX_LEN &&
                  crypto_generichash(hash, sizeof hash, (const unsigned char *)token, len,
                                     a->verified_key, sizeof a->verified_key) == 0;
    if (hashed) {
        sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
        const cd_jwt_claims_t *seen = (const cd_jwt_claims_t *)zhashx_lookup(a->verified, hex);
        if (seen) {
            if (seen->exp > now) {
                *claims = *seen;
                return CD_JWT_OK;
            }
            zhashx_delete(a->verified, hex);
            return CD_JWT_EEXPIRED;
        }
    }
    cd_jwt_err_t err = cd_jwt_verify(&a->jwt, token, len, now, 0, claims);
    if (err == CD_JWT_OK && hashed) {
        if (zhashx_size(a->verified) >= S_VERIFIED_MAX) {
            zhashx_purge(a->verified);
        }
        zhashx_insert(a->verified, hex, s_box(claims, sizeof *claims));
    }
    return err;
}

static cd_auth_verdict_t
s_bearer(cd__auth_t *a, const char *token, size_t len, cd_auth_identity_t *identity,
         const char **message)
{
    cd_jwt_claims_t claims;
    cd_jwt_err_t err = s_verify(a, token, len, &claims);
    if (err != CD_JWT_OK) {
        *message = err == CD_JWT_EEXPIRED ? "the access token has expired"
                                          : "the access token is not valid";
        return CD_AUTH_UNAUTHENTICATED;
    }
    if (zhashx_size(a->fams) > 0 && zhashx_lookup(a->fams, claims.fam)) {
        *message = "this login has ended: sign in again";
        return CD_AUTH_UNAUTHENTICATED;
    }
    identity->authenticated = true;
    identity->user_id = claims.sub;
    identity->admin = strcmp(claims.role, "admin") == 0;
    snprintf(identity->fam, sizeof identity->fam, "%s", claims.fam);
    return CD_AUTH_ALLOW;
}

//  A lookup in flight: what the request needs when its answer comes.
typedef struct {
    cd_http_rctx_t *rctx;                //  the parked request
    cd__auth_t *auth;                    //  the state it counts in
    char hex[CD_TOKEN_HASH_HEX_LEN + 1]; //  the key's hash
    uint64_t gen;                        //  a->gen when it was asked
    int tries;                           //  asked so far
    bool pending;                        //  counted in auth->lookups, no answer yet
} s_lookup_t;

//  The request's pool is going: a lookup still pending (its client left)
//  will never be answered, and no longer counts.
static void
s_lookup_dispose(void *data)
{
    s_lookup_t *lookup = (s_lookup_t *)data;
    if (lookup->pending) {
        lookup->pending = false;
        lookup->auth->lookups--;
    }
}

static int s_lookup(cd__auth_t *a, s_lookup_t *lookup);

static void
s_lookup_reply(cd_http_rctx_t *rctx, const cd_envelope_t *reply, int rc, void *arg)
{
    s_lookup_t *lookup = (s_lookup_t *)arg;
    cd__auth_t *a = rctx->http->auth;
    lookup->pending = false;
    a->lookups--;
    int status = 0;
    json_t *body = NULL;
    if (rc != 0 || cd__http_api_reply_json(reply, &status, &body) != 0 ||
        (status != 200 && status != 404)) {
        json_decref(body);
        cd__http_after_auth(rctx, CD_AUTH_BUSY, "the API key could not be checked; retry");
        return;
    }
    if (status == 404) {
        json_decref(body);
        cd__http_after_auth(rctx, CD_AUTH_UNAUTHENTICATED, "unknown or revoked API key");
        return;
    }
    if (a->gen != lookup->gen) {
        //  A key or user changed while we asked: this answer may predate it.
        json_decref(body);
        if (lookup->tries < S_LOOKUP_RETRIES && s_lookup(a, lookup) == 0) {
            return;
        }
        cd__http_after_auth(rctx, CD_AUTH_BUSY, "the API key could not be checked; retry");
        return;
    }
    s_key_t key = {
        .user_id = json_integer_value(json_object_get(body, "user_id")),
        .admin = json_is_string(json_object_get(body, "role")) &&
                 strcmp(json_string_value(json_object_get(body, "role")), "admin") == 0,
        .expires_ms = h2o_now(a->http->loop) + CD_AUTH_KEY_TTL_MS,
    };
    json_decref(body);
    if (key.user_id <= 0) {
        cd__http_after_auth(rctx, CD_AUTH_UNAUTHENTICATED, "unknown or revoked API key");
        return;
    }
    if (zhashx_size(a->keys) >= CD_AUTH_KEYS_MAX) {
        zhashx_purge(a->keys);
    }
    zhashx_update(a->keys, lookup->hex, s_box(&key, sizeof key));
    rctx->identity.authenticated = true;
    rctx->identity.user_id = key.user_id;
    rctx->identity.admin = key.admin;
    snprintf(rctx->identity.key, sizeof rctx->identity.key, "%s", lookup->hex);
    const char *message = NULL;
    cd_auth_verdict_t verdict = s_role(rctx->match.route, &rctx->identity, &message);
    cd__http_after_auth(rctx, verdict, message);
}

//  Asks an api actor who owns the key. Returns 0 (parked) or an error.
static int
s_lookup(cd__auth_t *a, s_lookup_t *lookup)
{
    cd_http_rctx_t *rctx = lookup->rctx;
    cd_http_t *http = rctx->http;
    if (a->lookups >= CD_AUTH_LOOKUPS_MAX) {
        return CD_EBUSY;
    }
    lookup->gen = a->gen;
    lookup->tries++;
    cd_pack_t *pack = http->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "m");
    cd_pack_cstr(pack, "GET");
    cd_pack_cstr(pack, "q");
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "hash");
    cd_pack_cstr(pack, lookup->hex);
    const char *to = NULL;
    int rc = cd__http_api_call(rctx, "auth.key_resolve", s_lookup_reply, lookup, &to);
    if (rc == 0) {
        a->lookups++;
        lookup->pending = true;
    }
    return rc;
}

static cd_auth_verdict_t
s_api_key(cd__auth_t *a, cd_http_rctx_t *rctx, const char *key, size_t len,
          cd_auth_identity_t *identity, const char **message)
{
    cd_token_kind_t kind;
    uint8_t hash[CD_TOKEN_HASH_BYTES];
    if (!cd_token_parse(key, len, &kind) || kind != CD_TOKEN_API_KEY ||
        cd_token_hash(a->token_key, key, len, hash) != 0) {
        *message = "unknown or revoked API key";
        return CD_AUTH_UNAUTHENTICATED;
    }
    char hex[CD_TOKEN_HASH_HEX_LEN + 1];
    cd_token_hash_hex(hash, hex);
    s_key_t *cached = (s_key_t *)zhashx_lookup(a->keys, hex);
    if (cached && cached->expires_ms >= h2o_now(a->http->loop)) {
        identity->authenticated = true;
        identity->user_id = cached->user_id;
        identity->admin = cached->admin;
        snprintf(identity->key, sizeof identity->key, "%s", hex);
        return CD_AUTH_ALLOW;
    }
    s_lookup_t *lookup =
        (s_lookup_t *)h2o_mem_alloc_shared(&rctx->req->pool, sizeof *lookup, s_lookup_dispose);
    memset(lookup, 0, sizeof *lookup);
    lookup->rctx = rctx;
    lookup->auth = a;
    memcpy(lookup->hex, hex, sizeof hex);
    int rc = s_lookup(a, lookup);
    if (rc != 0) {
        *message = rc == CD_EBUSY && a->lookups >= CD_AUTH_LOOKUPS_MAX
                       ? "too many API keys being checked; retry"
                       : "the API key could not be checked; retry";
        return CD_AUTH_BUSY;
    }
    return CD_AUTH_PENDING;
}

//  An access token or an API key (told apart by the key's prefix), from
//  somewhere other than its own header.
static cd_auth_verdict_t
s_token_or_key(cd__auth_t *a, cd_http_rctx_t *rctx, const char *value, size_t len,
               cd_auth_identity_t *identity, const char **message)
{
    cd_token_kind_t kind;
    if (cd_token_parse(value, len, &kind) && kind == CD_TOKEN_API_KEY) {
        return s_api_key(a, rctx, value, len, identity, message);
    }
    return s_bearer(a, value, len, identity, message);
}

#define S_WS_PREFIX "bearer." //  the Sec-WebSocket-Protocol entry that carries credentials

//  The credentials of a WebSocket upgrade that sent no header for them:
//  the first `bearer.<token>` entry of Sec-WebSocket-Protocol (remembered
//  in rctx->ws_protocol, to be echoed), else the query's access_token.
//  Returns false if there is neither; *value then NULL.
static bool
s_ws_credentials(cd_http_rctx_t *rctx, const char **value, size_t *len)
{
    *value = NULL;
    *len = 0;
    size_t list_len = 0;
    const char *list = cd__http_header(rctx, "sec-websocket-protocol", &list_len);
    for (const char *at = list, *end = list ? list + list_len : NULL; list && at < end;) {
        const char *comma = memchr(at, ',', (size_t)(end - at));
        const char *stop = comma ? comma : end;
        while (at < stop && (*at == ' ' || *at == '\t')) {
            at++;
        }
        const char *last = stop;
        while (last > at && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }
        size_t n = (size_t)(last - at);
        if (n > sizeof S_WS_PREFIX - 1 && memcmp(at, S_WS_PREFIX, sizeof S_WS_PREFIX - 1) == 0) {
            rctx->ws_protocol = h2o_strdup(&rctx->req->pool, at, n).base;
            *value = at + sizeof S_WS_PREFIX - 1;
            *len = n - (sizeof S_WS_PREFIX - 1);
            return true;
        }
        at = stop + 1;
    }
    h2o_req_t *req = rctx->req;
    if (req->query_at == SIZE_MAX) {
        return false;
    }
    static const char name[] = "access_token=";
    const char *at = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (at < end) {
        const char *amp = memchr(at, '&', (size_t)(end - at));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - at) >= sizeof name - 1 && memcmp(at, name, sizeof name - 1) == 0) {
            *value = at + sizeof name - 1;
            *len = (size_t)(stop - *value);
            return true;
        }
        at = stop + 1;
    }
    return false;
}

cd_auth_verdict_t
cd_auth_check(cd_http_rctx_t *rctx, const cd_route_t *route, cd_auth_identity_t *identity,
              const char **message)
{
    cd__auth_t *a = rctx->http->auth;
    memset(identity, 0, sizeof *identity);
    *message = NULL;
    if (!a || !a->on) {
        return CD_AUTH_ALLOW;
    }
    size_t len = 0;
    const char *value = cd__http_header(rctx, "authorization", &len);
    cd_auth_verdict_t verdict;
    if (value) {
        if (len <= 7 || strncasecmp(value, "Bearer ", 7) != 0) {
            *message = "Authorization must be: Bearer <access token>";
            return CD_AUTH_UNAUTHENTICATED;
        }
        verdict = s_bearer(a, value + 7, len - 7, identity, message);
    } else if ((value = cd__http_header(rctx, "x-api-key", &len)) != NULL) {
        verdict = s_api_key(a, rctx, value, len, identity, message);
    } else if ((route->flags & CD_ROUTE_WS_AUTH) && s_ws_credentials(rctx, &value, &len)) {
        if (len == 0) {
            *message = "access_token is empty";
            return CD_AUTH_UNAUTHENTICATED;
        }
        verdict = s_token_or_key(a, rctx, value, len, identity, message);
    } else if (route->flags & CD_ROUTE_WS_AUTH) {
        *message = "authentication required: Authorization: Bearer <token>, X-API-Key, "
                   "Sec-WebSocket-Protocol: bearer.<token>, or ?access_token=<token>";
        return CD_AUTH_UNAUTHENTICATED;
    } else {
        *message = "authentication required: Authorization: Bearer <token> or X-API-Key";
        return CD_AUTH_UNAUTHENTICATED;
    }
    if (verdict != CD_AUTH_ALLOW) {
        return verdict;
    }
    return s_role(route, identity, message);
}
