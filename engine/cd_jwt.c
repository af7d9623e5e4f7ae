/*  cd_jwt: HS256 access tokens (see cd_jwt.h).

    The JSON of a header or payload is read by a small scanner over the
    decoded bytes rather than by jansson: the two objects are flat, their
    members are known, and a scanner that only records views into a stack
    buffer keeps verification free of allocation. It accepts the JSON
    grammar for the values it skips (strings with escapes, numbers,
    literals) and refuses nested values, so nothing a signer could write is
    misread; the values it keeps must be escape-free and are copied into the
    fixed-size claim fields after their characters are checked.

    Interface: cd_jwt_strerror, cd_jwt_errname, cd_jwt_keygen,
    cd_jwt_key_init, cd_jwt_key_wipe, cd_jwt_claims_init, cd_jwt_sign,
    cd_jwt_verify. */
#include "cd_jwt.h"
#include "cd_error.h"

#include <assert.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_HEADER_B64_MAX 128  //  base64url characters of a header
#define S_HEADER_MAX 96       //  its decoded bytes
#define S_PAYLOAD_B64_MAX 683 //  base64url characters of a payload
#define S_PAYLOAD_MAX 512     //  its decoded bytes
#define S_MAC_B64_LEN 43      //  base64url characters of a 32-byte MAC
#define S_MAX_MEMBERS 16      //  members of a header or payload object
#define S_B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static const char s_header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static const char *const s_text[] = {
#define CD_JWT_TEXT(name, text) text,
    CD_JWT_ERROR_TABLE(CD_JWT_TEXT)
#undef CD_JWT_TEXT
};

static const char *const s_name[] = {
#define CD_JWT_NAME(name, text) #name,
    CD_JWT_ERROR_TABLE(CD_JWT_NAME)
#undef CD_JWT_NAME
};

#define S_N_ERRORS (sizeof s_text / sizeof s_text[0])

const char *
cd_jwt_strerror(cd_jwt_err_t err)
{
    return (size_t)err < S_N_ERRORS ? s_text[err] : "unknown verdict";
}

const char *
cd_jwt_errname(cd_jwt_err_t err)
{
    return (size_t)err < S_N_ERRORS ? s_name[err] : "UNKNOWN";
}

//  --- character classes --------------------------------------------------------------

static bool
s_valid_role(const char *text, size_t len)
{
    if (len == 0 || len > CD_JWT_ROLE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] < 'a' || text[i] > 'z') {
            return false;
        }
    }
    return true;
}

static bool
s_valid_id(const char *text, size_t len)
{
    if (len == 0 || len > CD_JWT_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

//  Digits only, no leading zero (but "0"), into a non-negative int64.
static bool
s_parse_uint(const char *text, size_t len, int64_t *out)
{
    if (len == 0 || len > 19 || (len > 1 && text[0] == '0')) {
        return false;
    }
    int64_t value = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        int digit = text[i] - '0';
        if (value > (INT64_MAX - digit) / 10) {
            return false;
        }
        value = value * 10 + digit;
    }
    *out = value;
    return true;
}

//  --- the JSON scanner ------------------------------------------------------------------

typedef struct {
    const char *p;   //  next byte
    const char *end; //  one past the last byte
} s_json_t;

static void
s_ws(s_json_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) {
        j->p++;
    }
}

static bool
s_eat(s_json_t *j, char c)
{
    s_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static bool
s_is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

//  A string: [*start, *start + *len) is its content as written; *plain is
//  false if it holds an escape (the content is then not its value).
static bool
s_string(s_json_t *j, const char **start, size_t *len, bool *plain)
{
    s_ws(j);
    if (j->p >= j->end || *j->p != '"') {
        return false;
    }
    j->p++;
    *start = j->p;
    *plain = true;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            *len = (size_t)(j->p - *start);
            j->p++;
            return true;
        }
        if (c < 0x20) {
            return false;
        }
        if (c == '\\') {
            *plain = false;
            if (j->end - j->p < 2) {
                return false;
            }
            char e = j->p[1];
            if (e == 'u') {
                if (j->end - j->p < 6 || !s_is_hex(j->p[2]) || !s_is_hex(j->p[3]) ||
                    !s_is_hex(j->p[4]) || !s_is_hex(j->p[5])) {
                    return false;
                }
                j->p += 4;
            } else if (!(e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                         e == 'r' || e == 't')) {
                return false;
            }
            j->p++;
        }
        j->p++;
    }
    return false;
}

static bool
s_digits(s_json_t *j)
{
    const char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        j->p++;
    }
    return j->p > start;
}

//  A number as JSON writes it: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
//  *integer is true when it is digits only (no sign, fraction, exponent).
static bool
s_number(s_json_t *j, const char **start, size_t *len, bool *integer)
{
    s_ws(j);
    *start = j->p;
    *integer = true;
    if (j->p < j->end && *j->p == '-') {
        *integer = false;
        j->p++;
    }
    const char *digits = j->p;
    if (!s_digits(j) || (*digits == '0' && j->p - digits > 1)) {
        return false;
    }
    if (j->p < j->end && *j->p == '.') {
        *integer = false;
        j->p++;
        if (!s_digits(j)) {
            return false;
        }
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        *integer = false;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) {
            j->p++;
        }
        if (!s_digits(j)) {
            return false;
        }
    }
    *len = (size_t)(j->p - *start);
    return true;
}

static bool
s_literal(s_json_t *j, const char *word)
{
    size_t len = strlen(word);
    if ((size_t)(j->end - j->p) >= len && memcmp(j->p, word, len) == 0) {
        j->p += len;
        return true;
    }
    return false;
}

//  Skips one scalar value; refuses objects and arrays.
static bool
s_skip_scalar(s_json_t *j)
{
    s_ws(j);
    if (j->p >= j->end) {
        return false;
    }
    const char *start;
    size_t len;
    bool flag;
    switch (*j->p) {
    case '"':
        return s_string(j, &start, &len, &flag);
    case 't':
        return s_literal(j, "true");
    case 'f':
        return s_literal(j, "false");
    case 'n':
        return s_literal(j, "null");
    default:
        return s_number(j, &start, &len, &flag);
    }
}

//  Steps to the next member of an object. Returns false on a syntax error
//  or too many members; otherwise *done says whether the object closed,
//  and if not, [*key, *key + *key_len) is the next key (as written) and
//  its value follows.
static bool
s_member(s_json_t *j, int *count, const char **key, size_t *key_len, bool *done)
{
    if (*count == 0) {
        if (!s_eat(j, '{')) {
            return false;
        }
    } else if (!s_eat(j, ',')) {
        *done = s_eat(j, '}');
        return *done;
    }
    if (*count == 0 && s_eat(j, '}')) {
        *done = true;
        return true;
    }
    bool plain;
    if (*count >= S_MAX_MEMBERS || !s_string(j, key, key_len, &plain) || !s_eat(j, ':')) {
        return false;
    }
    (*count)++;
    *done = false;
    return true;
}

static bool
s_key_is(const char *key, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(key, name, len) == 0;
}

//  Only blanks after the object.
static bool
s_end(s_json_t *j)
{
    s_ws(j);
    return j->p == j->end;
}

//  --- header and payload ---------------------------------------------------------------

static cd_jwt_err_t
s_header(const char *text, size_t len)
{
    s_json_t j = {text, text + len};
    int count = 0;
    bool done = false;
    bool seen_alg = false, seen_typ = false;
    cd_jwt_err_t alg = CD_JWT_EALG; //  until an alg says otherwise
    const char *key;
    size_t key_len;
    while (s_member(&j, &count, &key, &key_len, &done) && !done) {
        const char *value;
        size_t value_len;
        bool plain;
        if (s_key_is(key, key_len, "alg")) {
            if (seen_alg || !s_string(&j, &value, &value_len, &plain)) {
                return CD_JWT_EHEADER;
            }
            seen_alg = true;
            if (value_len == 5 && memcmp(value, "HS256", 5) == 0) {
                alg = CD_JWT_OK;
            } else if (value_len == 4 && strncasecmp(value, "none", 4) == 0) {
                alg = CD_JWT_EALG_NONE;
            }
        } else if (s_key_is(key, key_len, "typ")) {
            if (seen_typ || !s_string(&j, &value, &value_len, &plain) || value_len != 3 ||
                strncasecmp(value, "JWT", 3) != 0) {
                return CD_JWT_EHEADER;
            }
            seen_typ = true;
        } else {
            return CD_JWT_EHEADER;
        }
    }
    if (!done || !s_end(&j)) {
        return CD_JWT_EHEADER;
    }
    return alg;
}

enum { S_SUB = 1, S_ROLE = 2, S_JTI = 4, S_FAM = 8, S_IAT = 16, S_EXP = 32 };

//  A string claim with only the characters valid() accepts, into a field
//  of field_size bytes (the checks bound the length below it).
static bool
s_string_claim(s_json_t *j, bool (*valid)(const char *, size_t), char *field)
{
    const char *value;
    size_t len;
    bool plain;
    if (!s_string(j, &value, &len, &plain) || !plain || !valid(value, len)) {
        return false;
    }
    memcpy(field, value, len);
    field[len] = '\0';
    return true;
}

static bool
s_int_claim(s_json_t *j, int64_t *out)
{
    const char *value;
    size_t len;
    bool integer;
    return s_number(j, &value, &len, &integer) && integer && s_parse_uint(value, len, out);
}

static bool
s_sub_claim(s_json_t *j, int64_t *out)
{
    const char *value;
    size_t len;
    bool plain;
    return s_string(j, &value, &len, &plain) && plain && s_parse_uint(value, len, out) && *out > 0;
}

//  One member's value into claims; *seen collects which were read.
static bool
s_claim(s_json_t *j, const char *key, size_t key_len, cd_jwt_claims_t *claims, unsigned *seen)
{
    unsigned bit = s_key_is(key, key_len, "sub")    ? S_SUB
                   : s_key_is(key, key_len, "role") ? S_ROLE
                   : s_key_is(key, key_len, "jti")  ? S_JTI
                   : s_key_is(key, key_len, "fam")  ? S_FAM
                   : s_key_is(key, key_len, "iat")  ? S_IAT
                   : s_key_is(key, key_len, "exp")  ? S_EXP
                                                    : 0;
    if (bit & *seen) {
        return false;
    }
    *seen |= bit;
    switch (bit) {
    case S_SUB:
        return s_sub_claim(j, &claims->sub);
    case S_ROLE:
        return s_string_claim(j, s_valid_role, claims->role);
    case S_JTI:
        return s_string_claim(j, s_valid_id, claims->jti);
    case S_FAM:
        return s_string_claim(j, s_valid_id, claims->fam);
    case S_IAT:
        return s_int_claim(j, &claims->iat);
    case S_EXP:
        return s_int_claim(j, &claims->exp);
    default:
        return s_skip_scalar(j);
    }
}

static cd_jwt_err_t
s_payload(const char *text, size_t len, cd_jwt_claims_t *claims)
{
    s_json_t j = {text, text + len};
    int count = 0;
    bool done = false;
    unsigned seen = 0;
    const char *key;
    size_t key_len;
    while (s_member(&j, &count, &key, &key_len, &done) && !done) {
        if (!s_claim(&j, key, key_len, claims, &seen)) {
            return CD_JWT_EPAYLOAD;
        }
    }
    if (!done || !s_end(&j)) {
        return CD_JWT_EPAYLOAD;
    }
    static const struct {
        unsigned bit;
        cd_jwt_err_t err;
    } required[] = {{S_SUB, CD_JWT_ENOSUB}, {S_JTI, CD_JWT_ENOJTI},   {S_EXP, CD_JWT_ENOEXP},
                    {S_IAT, CD_JWT_ENOIAT}, {S_ROLE, CD_JWT_ENOROLE}, {S_FAM, CD_JWT_ENOFAM}};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!(seen & required[i].bit)) {
            return required[i].err;
        }
    }
    return CD_JWT_OK;
}

//  --- interface ---------------------------------------------------------------------------

void
cd_jwt_keygen(uint8_t secret[CD_JWT_KEY_BYTES])
{
    crypto_auth_hmacsha256_keygen(secret);
}

void
cd_jwt_key_init(cd_jwt_key_t *key, const uint8_t secret[CD_JWT_KEY_BYTES])
{
    crypto_auth_hmacsha256_init(&key->keyed, secret, CD_JWT_KEY_BYTES);
}

void
cd_jwt_key_wipe(cd_jwt_key_t *key)
{
    sodium_memzero(key, sizeof *key);
}

//  The MAC of text under key, from a copy of the keyed state.
static void
s_mac(const cd_jwt_key_t *key, const char *text, size_t len,
      uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state state = key->keyed;
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)text, len);
    crypto_auth_hmacsha256_final(&state, mac);
    sodium_memzero(&state, sizeof state);
}

int
cd_jwt_claims_init(cd_jwt_claims_t *claims, int64_t sub, const char *role, const char *fam,
                   int64_t now_s, int64_t ttl_s)
{
    if (sub <= 0 || !role || !s_valid_role(role, strlen(role)) || !fam ||
        !s_valid_id(fam, strlen(fam)) || now_s < 0 || ttl_s < 0 || now_s > INT64_MAX - ttl_s) {
        return CD_EINVAL;
    }
    memset(claims, 0, sizeof *claims);
    claims->sub = sub;
    memcpy(claims->role, role, strlen(role) + 1);
    memcpy(claims->fam, fam, strlen(fam) + 1);
    uint8_t id[16];
    randombytes_buf(id, sizeof id);
    sodium_bin2base64(claims->jti, sizeof claims->jti, id, sizeof id, S_B64);
    claims->iat = now_s;
    claims->exp = now_s + ttl_s;
    return 0;
}

int
cd_jwt_sign(const cd_jwt_key_t *key, const cd_jwt_claims_t *claims, char *out, size_t out_size,
            size_t *len)
{
    size_t role_len = strnlen(claims->role, sizeof claims->role);
    size_t jti_len = strnlen(claims->jti, sizeof claims->jti);
    size_t fam_len = strnlen(claims->fam, sizeof claims->fam);
    if (claims->sub <= 0 || !s_valid_role(claims->role, role_len) ||
        !s_valid_id(claims->jti, jti_len) || !s_valid_id(claims->fam, fam_len) || claims->iat < 0 ||
        claims->exp < 0) {
        return CD_EINVAL;
    }
    char payload[S_PAYLOAD_MAX];
    int n = snprintf(payload, sizeof payload,
                     "{\"sub\":\"%lld\",\"role\":\"%s\",\"jti\":\"%s\",\"fam\":\"%s\","
                     "\"iat\":%lld,\"exp\":%lld}",
                     (long long)claims->sub, claims->role, claims->jti, claims->fam,
                     (long long)claims->iat, (long long)claims->exp);
    assert(n > 0 && (size_t)n < sizeof payload);
    size_t header_b64 = sodium_base64_ENCODED_LEN(sizeof s_header_json - 1, S_B64) - 1;
    size_t payload_b64 = sodium_base64_ENCODED_LEN((size_t)n, S_B64) - 1;
    size_t total = header_b64 + 1 + payload_b64 + 1 + S_MAC_B64_LEN;
    if (out_size < total + 1) {
        return CD_ETOOBIG;
    }
    sodium_bin2base64(out, header_b64 + 1, (const unsigned char *)s_header_json,
                      sizeof s_header_json - 1, S_B64);
    out[header_b64] = '.';
    sodium_bin2base64(out + header_b64 + 1, payload_b64 + 1, (const unsigned char *)payload,
                      (size_t)n, S_B64);
    size_t signed_len = header_b64 + 1 + payload_b64;
    out[signed_len] = '.';
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    s_mac(key, out, signed_len, mac);
    sodium_bin2base64(out + signed_len + 1, S_MAC_B64_LEN + 1, mac, sizeof mac, S_B64);
    if (len) {
        *len = total;
    }
    return 0;
}

//  The 6-bit value of a base64url character, or -1.
static int
s_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

//  Decodes one part; false unless it is canonical unpadded base64url (no
//  length of 1 modulo 4, the unused bits of the last character zero) that
//  fits out. Not constant-time: its input is public.
static bool
s_decode(const char *b64, size_t b64_len, uint8_t *out, size_t out_size, size_t *out_len)
{
    if (b64_len % 4 == 1 || b64_len / 4 * 3 + (b64_len % 4 ? b64_len % 4 - 1 : 0) > out_size) {
        return false;
    }
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < b64_len; i++) {
        int v = s_b64_value((unsigned char)b64[i]);
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        return false;
    }
    *out_len = o;
    return true;
}

cd_jwt_err_t
cd_jwt_verify(const cd_jwt_key_t *key, const char *token, size_t len, int64_t now_s,
              int64_t leeway_s, cd_jwt_claims_t *claims)
{
    if (!token || len == 0 || len > CD_JWT_MAX_LEN || leeway_s < 0) {
        return CD_JWT_EFORMAT;
    }
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
        return CD_JWT_EFORMAT;
    }
    size_t header_b64 = (size_t)(dot1 - token);
    size_t payload_b64 = (size_t)(dot2 - dot1 - 1);
    size_t mac_b64 = len - (size_t)(dot2 + 1 - token);
    if (header_b64 == 0 || header_b64 > S_HEADER_B64_MAX || payload_b64 == 0 ||
        payload_b64 > S_PAYLOAD_B64_MAX) {
        return CD_JWT_EFORMAT;
    }
    uint8_t header[S_HEADER_MAX];
    size_t header_len = 0;
    if (!s_decode(token, header_b64, header, sizeof header, &header_len)) {
        return CD_JWT_EFORMAT;
    }
    cd_jwt_err_t err = s_header((const char *)header, header_len);
    if (err != CD_JWT_OK) {
        return err;
    }
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    size_t mac_len = 0;
    if (mac_b64 != S_MAC_B64_LEN || !s_decode(dot2 + 1, mac_b64, mac, sizeof mac, &mac_len) ||
        mac_len != sizeof mac) {
        return CD_JWT_ESIGNATURE;
    }
    uint8_t expected[crypto_auth_hmacsha256_BYTES];
    s_mac(key, token, (size_t)(dot2 - token), expected);
    int differs = sodium_memcmp(expected, mac, sizeof mac);
    sodium_memzero(expected, sizeof expected);
    if (differs != 0) {
        return CD_JWT_ESIGNATURE;
    }
    uint8_t payload[S_PAYLOAD_MAX];
    size_t payload_len = 0;
    if (!s_decode(dot1 + 1, payload_b64, payload, sizeof payload, &payload_len)) {
        return CD_JWT_EFORMAT;
    }
    err = s_payload((const char *)payload, payload_len, claims);
    if (err != CD_JWT_OK) {
        return err;
    }
    //  Written so that nothing overflows: exp and iat are 0..INT64_MAX,
    //  leeway_s >= 0, and a clock reads far from INT64_MIN.
    if (claims->exp <= now_s - leeway_s) {
        return CD_JWT_EEXPIRED;
    }
    if (claims->iat - leeway_s > now_s) {
        return CD_JWT_EFUTURE;
    }
    return CD_JWT_OK;
}
