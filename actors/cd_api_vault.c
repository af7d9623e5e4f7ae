/*  cd_api_vault: the credential vault and connections for the REST API
    (API.md "Vault and connections").

    The vault itself is the `vault` actor (cd_vault_actor.h): this module
    reads and stores its record and asks it, by message, to derive keys,
    seal values and report its state; a request waiting for it is parked
    like one waiting for persist, so no api actor ever waits for the half
    second argon2id takes.

      status   initialized: the vault table has its record; locked: the
               vault actor of this node holds no key (or is not running).
      init     weak passwords (under 12 characters) are 400 weak_password;
               an existing record 409. The vault actor makes a new vault
               and answers its record, held pending; vault.init stores the
               record through persist (INSERT ... ON CONFLICT DO NOTHING:
               a concurrent init from another node loses with 409), then
               `commit` makes the new vault the unlocked one (`abort`
               drops it if the record was not stored). 204.
      unlock   the stored record and the password go to the vault actor:
               204, or 401 unauthenticated, or 429 rate_limited with
               Retry-After (its limit on wrong passwords), or 409 if there
               is no record.
      lock     204; the key is wiped.

    Connections. Which config keys are secret: those named in
    secret_fields, and those named password, api_key, token or secret
    (any case). Their values must be strings; the vault seals each
    (a random nonce each) and the row stores config with "********" in
    their place and the sealed values, as an object, in `secrets`
    (db/cd_q_system.h). So every read is masked by construction, and the
    clear values exist only in this request's memory and the vault's. A
    secret key nested inside another value would be stored in clear: it is
    refused, naming the outer key (which secret_fields can name).

    Create and update need the vault unlocked (API.md): the seal request
    is always sent, and the vault's vault_locked becomes 423 locked. A
    PATCH is built on the row as read (config, secret_fields, the sealed
    values): a config given replaces the old one, where a secret key
    whose value is "********" keeps its sealed value; keys that become
    secret through secret_fields get their current values sealed; a value
    sealed before stays sealed. The write is guarded by the updated_at
    read, so two PATCHes that cross give one 409 rather than a lost
    secret. Delete needs no vault.

    Interface: cd__api_vault_module. */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_log.h"
#include "cd_mpjson.h"
#include "cd_q_system.h"
#include "cd_vault_actor.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_MIN_PASSWORD_CHARS 12 //  API.md
#define S_NAME_MAX_CHARS 100    //  connections.name
#define S_SECRET_MAX 8192       //  bytes of one secret value
#define S_FIELDS_MAX 64         //  entries of secret_fields
#define S_FIELD_MAX 100         //  bytes of one entry

//  --- the vault actor ---------------------------------------------------------------

//  Sends op (payload: the map in pack, or NULL for {}) to the vault actor
//  and parks req until its answer. secret: the payload holds a password or
//  clear values: it travels as its own frame and pack's bytes are wiped
//  after the send. Returns 0 or the send's error.
static int
s_vault_call(cd_api_req_t *req, const char *op, cd_pack_t *pack, bool secret, cd_api_reply_fn *fn)
{
    cd_pack_t *empty = NULL;
    if (!pack) {
        empty = cd_pack_new();
        cd_pack_map(empty, 0);
        pack = empty;
    }
    cd_envelope_t env;
    cd_api_envelope_init(req, &env, CD_KIND_TASK, CD_VAULT_ACTOR_NAME);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str(op)};
    env.n_headers = 1;
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    env.payload_in_frame = secret;
    int rc = fn ? cd_api_call(req, &env, fn, NULL) : cd_actor_send(cd_api_actor(req), &env);
    if (secret) {
        cd_bin_t bytes = cd_pack_bytes(pack);
        sodium_memzero((void *)bytes.ptr, bytes.len);
    }
    cd_pack_destroy(&empty);
    return rc;
}

//  The vault's answer as JSON (caller decrefs; NULL if malformed) and
//  its error code ("" for a result).
static json_t *
s_answer(const cd_envelope_t *reply, const char **code)
{
    json_t *payload = NULL;
    const char *why = NULL;
    if (reply->payload_type != CD_PAYLOAD_MAP || cd_mpjson_decode(reply->payload, &payload, &why)) {
        *code = "invalid";
        return NULL;
    }
    const char *c = json_string_value(json_object_get(payload, "code"));
    *code = reply->kind == CD_KIND_RESULT ? "" : c ? c : "invalid";
    return payload;
}

//  Answers a vault error that the operation has no special meaning for.
static void
s_vault_failed(cd_api_req_t *req, const cd_envelope_t *reply, const char *code,
               const json_t *payload)
{
    if (!reply) {
        cd_api_error(req, 504, "timeout", "the vault did not answer in time", NULL);
    } else if (streq(code, "vault_locked")) {
        cd_api_error(req, 423, "locked", "the vault is locked: unlock it first", NULL);
    } else if (streq(code, "busy")) {
        cd_api_error_retry(req, 503, "not_ready", "the vault is busy deriving keys; retry later",
                           NULL, 1);
    } else {
        const char *message = json_string_value(json_object_get(payload, "message"));
        cd_log_error(cd_actor_name(cd_api_actor(req)), "vault request failed", "{s:s, s:s, s:s}",
                     "op", cd_api_op(req), "code", code, "message", message ? message : "?");
        cd_api_error(req, 500, "internal", "the vault refused the request", NULL);
    }
}

static void
s_vault_absent(cd_api_req_t *req)
{
    cd_api_error_retry(req, 503, "not_ready", "the vault is not running on this node", NULL, 1);
}

//  Characters (code points) of UTF-8 text.
static size_t
s_chars(const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        n += (*p & 0xc0) != 0x80;
    }
    return n;
}

//  The stored record (caller frees) or NULL after answering; *missing
//  says there is none (not answered then).
static char *
s_record(cd_api_req_t *req, bool *missing)
{
    *missing = false;
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return NULL;
    }
    char *record = NULL;
    int rc = cd_q_vault_get(db, &record);
    if (rc == CD_ENOTFOUND) {
        *missing = true;
    } else if (rc != 0) {
        cd_api_fail(req, rc, db);
    }
    return record;
}

//  --- status --------------------------------------------------------------------------

static void
s_status_reply(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    bool locked = true;
    if (reply && reply->kind == CD_KIND_RESULT) {
        const char *code;
        json_t *payload = s_answer(reply, &code);
        locked = !json_is_false(json_object_get(payload, "locked"));
        json_decref(payload);
    }
    json_t *scratch = cd_api_scratch(req);
    cd_api_reply_json(req, 200,
                      json_pack("{s:O, s:b}", "initialized",
                                json_object_get(scratch, "initialized"), "locked", locked),
                      NULL);
}

static int
s_status(cd_api_req_t *req)
{
    bool missing = false;
    char *record = s_record(req, &missing);
    if (!record && !missing) {
        return 0;
    }
    free(record);
    json_object_set_new(cd_api_scratch(req), "initialized", json_boolean(!missing));
    if (s_vault_call(req, "status", NULL, false, s_status_reply) != 0) {
        //  No vault actor: nothing can be unlocked here.
        s_status_reply(req, NULL, NULL);
    }
    return 0;
}

//  --- init ----------------------------------------------------------------------------

static void
s_tell(cd_api_req_t *req, const char *op, const char *salt)
{
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "salt");
    cd_pack_cstr(pack, salt);
    s_vault_call(req, op, pack, false, NULL);
    cd_pack_destroy(&pack);
}

static void
s_init_committed(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    if (!reply || reply->kind != CD_KIND_RESULT) {
        //  The record is stored: the vault is initialised, only not
        //  unlocked here (a concurrent init on this node replaced ours).
        cd_log_warn(cd_actor_name(cd_api_actor(req)), "vault initialised but left locked", NULL);
    }
    cd_api_reply_empty(req);
}

static void
s_init_stored(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    const char *salt = json_string_value(json_object_get(cd_api_scratch(req), "salt"));
    if (res->rc != 0 || !res->value) {
        s_tell(req, "abort", salt);
        if (res->rc != 0) {
            cd_api_write_failed(req, res);
        } else {
            cd_api_error(req, 409, "conflict", "the vault is already initialised", NULL);
        }
        return;
    }
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, 1);
    cd_pack_cstr(pack, "salt");
    cd_pack_cstr(pack, salt);
    int rc = s_vault_call(req, "commit", pack, false, s_init_committed);
    cd_pack_destroy(&pack);
    if (rc != 0) {
        s_init_committed(req, NULL, NULL);
    }
}

static void
s_init_made(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    const char *code = "";
    json_t *payload = reply ? s_answer(reply, &code) : NULL;
    const char *record = json_string_value(json_object_get(payload, "record"));
    const char *salt = json_string_value(json_object_get(payload, "salt"));
    if (!reply || *code || !record || !salt) {
        s_vault_failed(req, reply, *code ? code : "invalid", payload);
        json_decref(payload);
        return;
    }
    json_object_set_new(cd_api_scratch(req), "salt", json_string(salt));
    const char *params[] = {record};
    int rc = cd_api_write(req, "vault.init", 1, params, s_init_stored, NULL);
    json_decref(payload);
    if (rc != 0) {
        s_tell(req, "abort", json_string_value(json_object_get(cd_api_scratch(req), "salt")));
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
}

//  Packs {"password": <master_password>} (plus "record" if not NULL).
static cd_pack_t *
s_password_pack(cd_api_req_t *req, const char *record)
{
    json_t *password = json_object_get(cd_api_body(req), "master_password");
    cd_pack_t *pack = cd_pack_new();
    cd_pack_map(pack, record ? 2 : 1);
    cd_pack_cstr(pack, "password");
    cd_pack_str(pack, json_string_value(password), json_string_length(password));
    if (record) {
        cd_pack_cstr(pack, "record");
        cd_pack_cstr(pack, record);
    }
    return pack;
}

static int
s_init(cd_api_req_t *req)
{
    const char *password = json_string_value(json_object_get(cd_api_body(req), "master_password"));
    if (!password || s_chars(password) < S_MIN_PASSWORD_CHARS) {
        cd_api_error(req, 400, "weak_password",
                     "the master password must have at least 12 characters",
                     json_pack("{s:s}", "field", "master_password"));
        return 0;
    }
    bool missing = false;
    char *record = s_record(req, &missing);
    if (!record && !missing) {
        return 0;
    }
    if (record) {
        free(record);
        cd_api_error(req, 409, "conflict", "the vault is already initialised", NULL);
        return 0;
    }
    cd_pack_t *pack = s_password_pack(req, NULL);
    int rc = s_vault_call(req, "init", pack, true, s_init_made);
    cd_pack_destroy(&pack);
    if (rc != 0) {
        s_vault_absent(req);
    }
    return 0;
}

//  --- unlock, lock ----------------------------------------------------------------------

static void
s_unlocked(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    const char *code = "";
    json_t *payload = reply ? s_answer(reply, &code) : NULL;
    if (reply && !*code) {
        cd_api_reply_empty(req);
    } else if (streq(code, "unauthenticated")) {
        cd_api_error(req, 401, "unauthenticated", "wrong master password", NULL);
    } else if (streq(code, "rate_limited")) {
        json_int_t retry = json_integer_value(json_object_get(payload, "retry_after_s"));
        cd_api_error_retry(req, 429, "rate_limited",
                           "too many wrong master passwords; the vault stays locked until "
                           "Retry-After",
                           NULL, retry);
    } else {
        s_vault_failed(req, reply, code, payload);
    }
    json_decref(payload);
}

static int
s_unlock(cd_api_req_t *req)
{
    bool missing = false;
    char *record = s_record(req, &missing);
    if (!record) {
        if (missing) {
            cd_api_error(req, 409, "conflict", "the vault is not initialised",
                         json_pack("{s:s}", "reason", "not_initialized"));
        }
        return 0;
    }
    cd_pack_t *pack = s_password_pack(req, record);
    free(record);
    int rc = s_vault_call(req, "unlock", pack, true, s_unlocked);
    cd_pack_destroy(&pack);
    if (rc != 0) {
        s_vault_absent(req);
    }
    return 0;
}

static void
s_locked(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    const char *code = "";
    json_t *payload = reply ? s_answer(reply, &code) : NULL;
    if (reply && !*code) {
        cd_api_reply_empty(req);
    } else {
        s_vault_failed(req, reply, code, payload);
    }
    json_decref(payload);
}

static int
s_lock(cd_api_req_t *req)
{
    if (s_vault_call(req, "lock", NULL, false, s_locked) != 0) {
        //  No vault actor, no key in memory: locked already.
        cd_api_reply_empty(req);
    }
    return 0;
}

//  --- connections: reads ------------------------------------------------------------------

static int
s_list(cd_api_req_t *req)
{
    return cd_api_list(req, cd_q_connections_list);
}

static int
s_get(cd_api_req_t *req)
{
    return cd_api_get(req, cd_q_connections_get);
}

//  --- connections: what is secret ------------------------------------------------------------

static bool
s_default_secret(const char *key)
{
    static const char *const names[] = {"password", "api_key", "token", "secret"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(key, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool
s_listed(const json_t *fields, const char *key)
{
    size_t i;
    const json_t *name;
    json_array_foreach(fields, i, name)
    {
        if (streq(json_string_value(name), key)) {
            return true;
        }
    }
    return false;
}

//  True if value holds, at any depth, an object key with a default secret
//  name.
static bool
s_nested_secret(const json_t *value)
{
    if (json_is_object(value)) {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)value, key, v)
        {
            if (s_default_secret(key) || s_nested_secret(v)) {
                return true;
            }
        }
    } else if (json_is_array(value)) {
        size_t i;
        const json_t *v;
        json_array_foreach(value, i, v)
        {
            if (s_nested_secret(v)) {
                return true;
            }
        }
    }
    return false;
}

//  400 naming config.<key> (the key cut to 64 bytes on a character
//  boundary: the error body must stay valid UTF-8).
static void
s_invalid_key(cd_api_req_t *req, const char *key, const char *reason)
{
    size_t len = strlen(key);
    if (len > 64) {
        len = 64;
        while (len > 0 && ((unsigned char)key[len] & 0xc0) == 0x80) {
            len--;
        }
    }
    char field[80];
    snprintf(field, sizeof field, "config.%.*s", (int)len, key);
    cd_api_invalid(req, field, reason);
}

//  Checks name, connector_type and secret_fields of a body (those present).
//  Returns false after answering 400.
static bool
s_check_body(cd_api_req_t *req, const json_t *body)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    if (name && (s_chars(name) < 1 || s_chars(name) > S_NAME_MAX_CHARS)) {
        cd_api_invalid(req, "name", "must be 1-100 characters");
        return false;
    }
    const char *type = json_string_value(json_object_get(body, "connector_type"));
    for (const char *p = type; p && *p; p++) {
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || strchr("_.-", *p))) {
            cd_api_invalid(req, "connector_type", "must be 1-64 of a-z 0-9 _ . -");
            return false;
        }
    }
    const json_t *fields = json_object_get(body, "secret_fields");
    if (json_is_array(fields)) {
        if (json_array_size(fields) > S_FIELDS_MAX) {
            cd_api_invalid(req, "secret_fields", "at most 64 keys");
            return false;
        }
        size_t i;
        const json_t *f;
        json_array_foreach(fields, i, f)
        {
            if (!json_is_string(f) || json_string_length(f) < 1 ||
                json_string_length(f) > S_FIELD_MAX) {
                cd_api_invalid(req, "secret_fields", "must be key names: strings of 1-100 bytes");
                return false;
            }
        }
    }
    return true;
}

//  Splits config into what is stored and what is sealed: masked (the
//  config to store, "********" in place of each secret), to_seal (the
//  clear values to seal now), kept (old sealed values that stay). old is
//  the row's sealed values (NULL on create). Returns false after
//  answering 400.
static bool
s_split(cd_api_req_t *req, const json_t *config, const json_t *fields, const json_t *old,
        json_t *masked, json_t *to_seal, json_t *kept)
{
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)config, key, value)
    {
        bool secret = s_listed(fields, key) || s_default_secret(key);
        bool mask = json_is_string(value) && streq(json_string_value(value), CD_VAULT_MASK);
        const json_t *sealed = old ? json_object_get(old, key) : NULL;
        if (mask && json_is_string(sealed)) {
            json_object_set(kept, key, (json_t *)sealed);
            json_object_set_new(masked, key, json_string(CD_VAULT_MASK));
            continue;
        }
        if (secret) {
            if (!json_is_string(value)) {
                s_invalid_key(req, key, "a secret value must be a string");
                return false;
            }
            if (mask) {
                s_invalid_key(req, key,
                              "\"********\" keeps a stored secret, and this key has none: send "
                              "the value");
                return false;
            }
            if (json_string_length(value) > S_SECRET_MAX) {
                s_invalid_key(req, key, "a secret value is at most 8192 bytes");
                return false;
            }
            json_object_set(to_seal, key, (json_t *)value);
            json_object_set_new(masked, key, json_string(CD_VAULT_MASK));
            continue;
        }
        if (s_nested_secret(value)) {
            s_invalid_key(req, key,
                          "holds a key named password, api_key, token or secret, which would be "
                          "stored in clear: list this key in secret_fields to seal its value "
                          "(as a string)");
            return false;
        }
        json_object_set(masked, key, (json_t *)value);
    }
    return true;
}

//  --- connections: writes ----------------------------------------------------------------------

static void
s_patched(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
        return;
    }
    json_t *row = res->value ? json_loads(res->value, 0, NULL) : NULL;
    if (!row) {
        cd_api_error(req, 404, "not_found", "no such object", NULL);
    } else if (json_is_true(json_object_get(row, "conflict"))) {
        cd_api_error(req, 409, "conflict", "the connection changed meanwhile; read it and retry",
                     NULL);
    } else {
        cd_api_reply_text(req, 200, res->value, NULL);
    }
    json_decref(row);
}

//  The vault sealed the values: store the row. scratch holds "body" (what
//  the statement takes), "kept" (sealed values that stay), "secrets"
//  (false: leave the stored ones) and for a PATCH "id" and "expected".
static void
s_sealed(cd_api_req_t *req, const cd_envelope_t *reply, void *arg)
{
    const char *code = "";
    json_t *payload = reply ? s_answer(reply, &code) : NULL;
    json_t *sealed = json_object_get(payload, "sealed");
    if (!reply || *code || !json_is_object(sealed)) {
        if (streq(code, "too_big")) {
            cd_api_invalid(req, "config", "a secret value is too long to seal");
        } else {
            s_vault_failed(req, reply, *code ? code : "invalid", payload);
        }
        json_decref(payload);
        return;
    }
    json_t *scratch = cd_api_scratch(req);
    json_t *kept = json_object_get(scratch, "kept");
    json_object_update(kept, sealed);
    json_decref(payload);
    char *body = json_dumps(json_object_get(scratch, "body"), JSON_COMPACT);
    char *secrets =
        json_is_false(json_object_get(scratch, "secrets")) ? NULL : json_dumps(kept, JSON_COMPACT);
    int rc;
    const json_t *id = json_object_get(scratch, "id");
    if (id) {
        char b1[24];
        snprintf(b1, sizeof b1, "%lld", (long long)json_integer_value(id));
        const char *params[] = {b1, body, secrets,
                                json_string_value(json_object_get(scratch, "expected"))};
        rc = cd_api_write(req, "connections.patch", 4, params, s_patched, NULL);
    } else {
        char b3[24];
        int64_t user = cd_api_user(req);
        snprintf(b3, sizeof b3, "%lld", (long long)user);
        const char *params[] = {body, secrets, user > 0 ? b3 : NULL};
        rc = cd_api_write(req, "connections.insert", 3, params, cd_api_on_created,
                          (void *)"/api/v1/connections");
    }
    free(body);
    free(secrets);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
}

//  Asks the vault to seal to_seal (borrowed); s_sealed goes on.
static void
s_seal(cd_api_req_t *req, const json_t *to_seal)
{
    json_t *payload = json_pack("{s:O}", "values", (json_t *)to_seal);
    cd_pack_t *pack = cd_pack_new();
    int rc = cd_mpjson_encode(payload, pack);
    json_decref(payload);
    if (rc == 0) {
        rc = s_vault_call(req, "seal", pack, true, s_sealed);
        if (rc != 0) {
            s_vault_absent(req);
        }
    } else {
        cd_api_invalid(req, "config", "a secret value cannot be sealed");
    }
    cd_pack_destroy(&pack);
}

static int
s_create(cd_api_req_t *req)
{
    json_t *body = cd_api_body(req);
    if (!s_check_body(req, body)) {
        return 0;
    }
    json_t *fields = json_object_get(body, "secret_fields");
    json_t *config = json_object_get(body, "config");
    json_t *scratch = cd_api_scratch(req);
    json_t *stored = json_pack("{s:O, s:O}", "name", json_object_get(body, "name"),
                               "connector_type", json_object_get(body, "connector_type"));
    json_t *masked = json_object(), *to_seal = json_object(), *kept = json_object();
    json_object_set_new(stored, "config", masked);
    json_object_set_new(stored, "secret_fields",
                        json_is_array(fields) ? json_incref(fields) : json_array());
    json_object_set_new(scratch, "body", stored);
    json_object_set_new(scratch, "kept", kept);
    if (s_split(req, json_is_object(config) ? config : NULL, fields, NULL, masked, to_seal, kept)) {
        s_seal(req, to_seal);
    }
    json_decref(to_seal);
    return 0;
}

static int
s_patch(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    json_t *body = cd_api_body(req);
    if (!s_check_body(req, body)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *text = NULL;
    int rc = cd_q_connections_sealed(db, id, NULL, &text);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        return 0;
    }
    json_t *row = json_loads(text, 0, NULL);
    free(text);
    if (!row) {
        cd_api_error(req, 500, "internal", "the connection did not read as JSON", NULL);
        return 0;
    }
    json_t *scratch = cd_api_scratch(req);
    json_object_set_new(scratch, "id", json_integer(id));
    json_object_set(scratch, "expected", json_object_get(row, "updated_at"));
    json_t *stored = json_object();
    json_object_set_new(scratch, "body", stored);
    json_t *kept = json_object();
    json_object_set_new(scratch, "kept", kept);
    const char *copy[] = {"name", "connector_type"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(body, copy[i]);
        if (v) {
            json_object_set(stored, copy[i], v);
        }
    }
    json_t *to_seal = json_object();
    json_t *bfields = json_object_get(body, "secret_fields");
    json_t *bconfig = json_object_get(body, "config");
    bool ok = true;
    if (bfields || bconfig) {
        json_t *fields = bfields ? bfields : json_object_get(row, "secret_fields");
        json_t *config = bconfig ? bconfig : json_object_get(row, "config");
        json_t *masked = json_object();
        json_object_set_new(stored, "config", masked);
        if (bfields) {
            json_object_set(stored, "secret_fields", bfields);
        }
        ok = s_split(req, json_is_object(config) ? config : NULL, fields,
                     json_object_get(row, "secrets"), masked, to_seal, kept);
    } else {
        //  Neither config nor secret_fields: the sealed values stay as they are.
        json_object_set_new(scratch, "secrets", json_false());
    }
    json_decref(row);
    if (ok) {
        s_seal(req, to_seal);
    }
    json_decref(to_seal);
    return 0;
}

static int
s_delete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char b1[24];
    snprintf(b1, sizeof b1, "%lld", (long long)id);
    const char *params[] = {b1};
    int rc = cd_api_write(req, "connections.delete", 1, params, cd_api_on_deleted, NULL);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

static const cd_api_op_t s_ops[] = {
    {"vault.status", s_status}, {"vault.init", s_init},         {"vault.unlock", s_unlock},
    {"vault.lock", s_lock},     {"connections.list", s_list},   {"connections.create", s_create},
    {"connections.get", s_get}, {"connections.patch", s_patch}, {"connections.delete", s_delete},
};

const cd_api_module_t cd__api_vault_module = {
    "vault",
    s_ops,
    sizeof s_ops / sizeof s_ops[0],
    cd_q_connections_writes,
    &cd_q_connections_n_writes,
};
