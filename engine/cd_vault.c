/*  cd_vault: the credential vault's keys (see cd_vault.h).

    The DEK lives in one sodium_malloc'd region of CD_VAULT_KEY_BYTES,
    guarded and locked, kept PROT_NONE between uses; s_dek_open/s_dek_close
    bracket every use. The KEK exists only inside s_derive's callers, in its
    own sodium_malloc'd region, freed (which wipes it) before they return.

    Interface: cd_vault_create, cd_vault_unlock, cd_vault_destroy,
    cd_vault_rewrap, cd_vault_seal, cd_vault_open, cd_vault_secret_free,
    cd_vault_record_to_json, cd_vault_record_from_json. */
#include "cd_vault.h"
#include "cd_error.h"
#include "cd_log.h"

#include <assert.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(CD_VAULT_KEY_BYTES == crypto_secretbox_KEYBYTES, "key size");
_Static_assert(CD_VAULT_SALT_BYTES == crypto_pwhash_SALTBYTES, "salt size");
_Static_assert(CD_VAULT_NONCE_BYTES == crypto_secretbox_NONCEBYTES, "nonce size");
_Static_assert(CD_VAULT_MAC_BYTES == crypto_secretbox_MACBYTES, "MAC size");
_Static_assert(CD_VAULT_WRAPPED_BYTES ==
                   CD_VAULT_NONCE_BYTES + CD_VAULT_MAC_BYTES + CD_VAULT_KEY_BYTES,
               "wrapped size");
_Static_assert(CD_VAULT_OVERHEAD == CD_VAULT_NONCE_BYTES + CD_VAULT_MAC_BYTES, "overhead");
_Static_assert(CD_VAULT_OPSLIMIT == crypto_pwhash_argon2id_OPSLIMIT_MODERATE, "MODERATE passes");
_Static_assert(CD_VAULT_MEMLIMIT == crypto_pwhash_argon2id_MEMLIMIT_MODERATE, "MODERATE memory");

#define S_OPSLIMIT_MAX 64ull         //  a record asking for more is refused
#define S_MEMLIMIT_MAX 4294967296ull //  4 GiB
#define S_MEMLIMIT_MIN 8192ull       //  crypto_pwhash_argon2id_MEMLIMIT_MIN

struct cd_vault {
    uint8_t *dek; //  CD_VAULT_KEY_BYTES from sodium_malloc, PROT_NONE between uses
};

static const cd_vault_params_t s_defaults = {CD_VAULT_OPSLIMIT, CD_VAULT_MEMLIMIT};

static bool
s_params_valid(const cd_vault_params_t *params)
{
    return params->opslimit >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
           params->opslimit <= S_OPSLIMIT_MAX && params->memlimit >= S_MEMLIMIT_MIN &&
           params->memlimit <= S_MEMLIMIT_MAX;
}

static int
s_check_input(const char *password, size_t len, const cd_vault_params_t *params)
{
    if (!password || len == 0 || !s_params_valid(params)) {
        return CD_EINVAL;
    }
    return len > CD_VAULT_PASSWORD_MAX ? CD_ETOOBIG : 0;
}

//  Derives the KEK into *kek_p (sodium_malloc'd; the caller frees it with
//  sodium_free, which wipes it). Returns 0 or CD_ENOMEM.
static int
s_derive(const char *password, size_t len, const cd_vault_params_t *params,
         const uint8_t salt[CD_VAULT_SALT_BYTES], uint8_t **kek_p)
{
    uint8_t *kek = sodium_malloc(CD_VAULT_KEY_BYTES);
    if (!kek) {
        return CD_ENOMEM;
    }
    if (crypto_pwhash(kek, CD_VAULT_KEY_BYTES, password, len, salt, params->opslimit,
                      (size_t)params->memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_free(kek);
        return CD_ENOMEM;
    }
    *kek_p = kek;
    return 0;
}

static void
s_dek_open(cd_vault_t *self)
{
    sodium_mprotect_readwrite(self->dek);
}

static void
s_dek_close(cd_vault_t *self)
{
    sodium_mprotect_noaccess(self->dek);
}

//  A vault object with room for a DEK (left readable for the caller to
//  fill, then s_dek_close). NULL if locked memory cannot be had.
static cd_vault_t *
s_vault_new(void)
{
    cd_vault_t *self = calloc(1, sizeof *self);
    if (!self) {
        return NULL;
    }
    self->dek = sodium_malloc(CD_VAULT_KEY_BYTES);
    if (!self->dek) {
        free(self);
        return NULL;
    }
    //  sodium_malloc already tries to lock its pages; asking again tells
    //  us whether it worked (RLIMIT_MEMLOCK), which is worth a warning.
    if (sodium_mlock(self->dek, CD_VAULT_KEY_BYTES) != 0) {
        cd_log_warn("vault",
                    "cannot lock the vault key in memory (RLIMIT_MEMLOCK?); it may be "
                    "swapped out",
                    NULL);
    }
    return self;
}

//  Wraps the DEK of self under password into record (fresh salt).
static int
s_wrap(cd_vault_t *self, const char *password, size_t len, const cd_vault_params_t *params,
       cd_vault_record_t *record)
{
    cd_vault_record_t out = {.params = *params};
    randombytes_buf(out.salt, sizeof out.salt);
    uint8_t *kek = NULL;
    int rc = s_derive(password, len, params, out.salt, &kek);
    if (rc != 0) {
        return rc;
    }
    randombytes_buf(out.wrapped, CD_VAULT_NONCE_BYTES);
    s_dek_open(self);
    crypto_secretbox_easy(out.wrapped + CD_VAULT_NONCE_BYTES, self->dek, CD_VAULT_KEY_BYTES,
                          out.wrapped, kek);
    s_dek_close(self);
    sodium_free(kek);
    *record = out;
    return 0;
}

int
cd_vault_create(const char *password, size_t len, const cd_vault_params_t *params,
                cd_vault_record_t *record, cd_vault_t **out)
{
    *out = NULL;
    params = params ? params : &s_defaults;
    int rc = s_check_input(password, len, params);
    if (rc != 0) {
        return rc;
    }
    cd_vault_t *self = s_vault_new();
    if (!self) {
        return CD_ENOMEM;
    }
    crypto_secretbox_keygen(self->dek);
    s_dek_close(self);
    rc = s_wrap(self, password, len, params, record);
    if (rc != 0) {
        cd_vault_destroy(&self);
        return rc;
    }
    *out = self;
    return 0;
}

int
cd_vault_unlock(const cd_vault_record_t *record, const char *password, size_t len, cd_vault_t **out)
{
    *out = NULL;
    int rc = s_check_input(password, len, &record->params);
    if (rc != 0) {
        return rc;
    }
    uint8_t *kek = NULL;
    rc = s_derive(password, len, &record->params, record->salt, &kek);
    if (rc != 0) {
        return rc;
    }
    cd_vault_t *self = s_vault_new();
    if (!self) {
        sodium_free(kek);
        return CD_ENOMEM;
    }
    int opened =
        crypto_secretbox_open_easy(self->dek, record->wrapped + CD_VAULT_NONCE_BYTES,
                                   CD_VAULT_MAC_BYTES + CD_VAULT_KEY_BYTES, record->wrapped, kek);
    s_dek_close(self);
    sodium_free(kek);
    if (opened != 0) {
        cd_vault_destroy(&self);
        return CD_EPERM;
    }
    *out = self;
    return 0;
}

void
cd_vault_destroy(cd_vault_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_vault_t *self = *self_p;
    //  sodium_free makes the region writable, wipes it and unlocks it.
    sodium_free(self->dek);
    free(self);
    *self_p = NULL;
}

int
cd_vault_rewrap(cd_vault_t *self, const char *password, size_t len, const cd_vault_params_t *params,
                cd_vault_record_t *record)
{
    params = params ? params : &s_defaults;
    int rc = s_check_input(password, len, params);
    return rc != 0 ? rc : s_wrap(self, password, len, params, record);
}

int
cd_vault_seal(cd_vault_t *self, const void *plain, size_t len, char **hex_out)
{
    *hex_out = NULL;
    if (len > CD_VAULT_PLAIN_MAX) {
        return CD_ETOOBIG;
    }
    size_t sealed_len = CD_VAULT_OVERHEAD + len;
    uint8_t *sealed = malloc(sealed_len);
    char *hex = malloc(sealed_len * 2 + 1);
    assert(sealed && hex);
    randombytes_buf(sealed, CD_VAULT_NONCE_BYTES);
    s_dek_open(self);
    crypto_secretbox_easy(sealed + CD_VAULT_NONCE_BYTES, plain, len, sealed, self->dek);
    s_dek_close(self);
    sodium_bin2hex(hex, sealed_len * 2 + 1, sealed, sealed_len);
    free(sealed);
    *hex_out = hex;
    return 0;
}

int
cd_vault_open(cd_vault_t *self, const char *hex, char **plain_out, size_t *len)
{
    *plain_out = NULL;
    size_t hex_len = hex ? strnlen(hex, CD_VAULT_SEALED_MAX * 2 + 1) : 0;
    if (hex_len < CD_VAULT_OVERHEAD * 2 || hex_len > CD_VAULT_SEALED_MAX * 2 || hex_len % 2) {
        return CD_EPROTO;
    }
    size_t sealed_len = hex_len / 2;
    uint8_t *sealed = malloc(sealed_len);
    assert(sealed);
    size_t got = 0;
    if (sodium_hex2bin(sealed, sealed_len, hex, hex_len, NULL, &got, NULL) != 0 ||
        got != sealed_len) {
        free(sealed);
        return CD_EPROTO;
    }
    size_t plain_len = sealed_len - CD_VAULT_OVERHEAD;
    char *plain = sodium_malloc(plain_len + 1);
    if (!plain) {
        free(sealed);
        return CD_ENOMEM;
    }
    s_dek_open(self);
    int opened = crypto_secretbox_open_easy((unsigned char *)plain, sealed + CD_VAULT_NONCE_BYTES,
                                            sealed_len - CD_VAULT_NONCE_BYTES, sealed, self->dek);
    s_dek_close(self);
    free(sealed);
    if (opened != 0) {
        sodium_free(plain);
        return CD_EPERM;
    }
    plain[plain_len] = '\0';
    *plain_out = plain;
    if (len) {
        *len = plain_len;
    }
    return 0;
}

void
cd_vault_secret_free(char **plain_p)
{
    if (!plain_p || !*plain_p) {
        return;
    }
    sodium_free(*plain_p);
    *plain_p = NULL;
}

//  --- the record as JSON ---------------------------------------------------------------

void
cd_vault_record_to_json(const cd_vault_record_t *record, char **out)
{
    char salt[CD_VAULT_SALT_BYTES * 2 + 1];
    char wrapped[CD_VAULT_WRAPPED_BYTES * 2 + 1];
    sodium_bin2hex(salt, sizeof salt, record->salt, sizeof record->salt);
    sodium_bin2hex(wrapped, sizeof wrapped, record->wrapped, sizeof record->wrapped);
    if (asprintf(out,
                 "{\"kdf\":\"" CD_VAULT_KDF "\",\"opslimit\":%llu,\"memlimit\":%llu,"
                 "\"salt\":\"%s\",\"wrapped_dek\":\"%s\"}",
                 (unsigned long long)record->params.opslimit,
                 (unsigned long long)record->params.memlimit, salt, wrapped) < 0) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
}

//  An unsigned integer member, as a JSON integer or a decimal string.
static bool
s_json_u64(json_t *value, uint64_t *out)
{
    if (json_is_integer(value)) {
        json_int_t v = json_integer_value(value);
        *out = (uint64_t)v;
        return v >= 0;
    }
    const char *text = json_string_value(value);
    if (!text || !*text || strlen(text) > 19) {
        return false;
    }
    uint64_t v = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(*c - '0');
    }
    *out = v;
    return true;
}

static bool
s_json_hex(json_t *value, uint8_t *out, size_t size)
{
    const char *hex = json_string_value(value);
    size_t got = 0;
    return hex && json_string_length(value) == size * 2 &&
           sodium_hex2bin(out, size, hex, size * 2, NULL, &got, NULL) == 0 && got == size;
}

int
cd_vault_record_from_json(const char *json, cd_vault_record_t *record, const char **why)
{
    const char *problem = NULL;
    json_t *root = json ? json_loads(json, 0, NULL) : NULL;
    cd_vault_record_t out;
    memset(&out, 0, sizeof out);
    if (!json_is_object(root)) {
        problem = "not a JSON object";
    } else if (!json_is_string(json_object_get(root, "kdf")) ||
               strcmp(json_string_value(json_object_get(root, "kdf")), CD_VAULT_KDF) != 0) {
        problem = "kdf is not " CD_VAULT_KDF;
    } else if (!s_json_u64(json_object_get(root, "opslimit"), &out.params.opslimit) ||
               !s_json_u64(json_object_get(root, "memlimit"), &out.params.memlimit) ||
               !s_params_valid(&out.params)) {
        problem = "opslimit or memlimit missing or out of range";
    } else if (!s_json_hex(json_object_get(root, "salt"), out.salt, sizeof out.salt)) {
        problem = "salt is not 16 bytes of hex";
    } else if (!s_json_hex(json_object_get(root, "wrapped_dek"), out.wrapped, sizeof out.wrapped)) {
        problem = "wrapped_dek is not 72 bytes of hex";
    }
    json_decref(root);
    if (problem) {
        if (why) {
            *why = problem;
        }
        return CD_EPROTO;
    }
    *record = out;
    return 0;
}
