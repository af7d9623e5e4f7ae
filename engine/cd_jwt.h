/*  cd_jwt: access tokens, JWT (RFC 7519) signed with HMAC-SHA-256.

    A token is base64url(header) "." base64url(payload) "." base64url(MAC),
    without padding, where the header is {"alg":"HS256","typ":"JWT"}, the
    MAC is libsodium's crypto_auth_hmacsha256 of the first two parts under a
    32-byte per-installation key, and the payload carries exactly the claims
    of cd_jwt_claims_t:

        {"sub":"42","role":"admin","jti":"<22 chars>","fam":"<family>",
         "iat":1700000000,"exp":1700000900}

    sub is the user id as a decimal string (RFC 7519 makes sub a string);
    fam is the refresh-token family of the login, so logout can name the
    session from the access token alone.

    Verification pins the algorithm: the header must be a JSON object with
    "alg":"HS256" and at most "typ":"JWT" besides; "alg":"none", any other
    algorithm, a missing alg and any other header member are refused before
    the MAC is even looked at, so a token can never choose how it is
    checked. The MAC is compared in constant time
    (sodium_memcmp). Each way a token fails has its own
    code (cd_jwt_err_t), so logs and tests can tell them apart; the HTTP
    layer answers all of them with the same 401.

    Claims are read strictly: string claims only from the characters they
    are issued with (no JSON escapes), times only as non-negative integers
    (no fraction, exponent or sign), a claim given twice is refused;
    unknown claims with scalar values are ignored (RFC 7519 section 4),
    unknown nested values are refused.

    Cost: verification runs on the HTTP thread for every authenticated
    request, so it involves no database round trip and allocates nothing
    (the decoded parts live in stack buffers of fixed size, the claims in
    the caller's struct). The key is kept as an HMAC state that has already
    absorbed it (cd_jwt_key_t), which saves two of the SHA-256 compressions
    of every MAC, and the MAC is then compared with sodium_memcmp (constant
    time) instead of crypto_auth_hmacsha256_verify, which would key it
    again. The base64url parts are decoded by a table, not by libsodium's
    constant-time decoder (which costs as much as the MAC itself): the
    header, payload and presented MAC are public, only the key is secret.
    Revocation of an access token before its 15 minutes run out is not
    possible by design; logout revokes the refresh family.

    This returns its own verdict codes rather than the CD_E* table: they are
    outcomes of a check (which the caller maps to 401), not failures of an
    action. Pure functions over caller memory; any thread. */
#ifndef CD_ENGINE_JWT_H
#define CD_ENGINE_JWT_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#define CD_JWT_KEY_BYTES 32 //  HMAC-SHA-256 key (crypto_auth_hmacsha256_KEYBYTES)
#define CD_JWT_MAX_LEN 1024 //  longest token produced or accepted, in characters
#define CD_JWT_ROLE_MAX 16  //  role: 1..16 of a-z
#define CD_JWT_ID_MAX 64    //  jti and fam: 1..64 of A-Z a-z 0-9 _ -
#define CD_JWT_TTL_S 900    //  lifetime of an access token: 15 minutes
#define CD_JWT_LEEWAY_S 0   //  default clock leeway for exp and iat

#define CD_JWT_ERROR_TABLE(X)                                                                      \
    X(OK, "valid")                                                                                 \
    X(EFORMAT, "not three base64url parts of bounded size")                                        \
    X(EHEADER, "header is not a JSON object of alg and typ JWT")                                   \
    X(EALG_NONE, "alg none is refused")                                                            \
    X(EALG, "alg is missing or not HS256")                                                         \
    X(ESIGNATURE, "signature does not match")                                                      \
    X(EPAYLOAD, "payload is not a JSON object of well-formed claims")                              \
    X(ENOSUB, "sub claim missing")                                                                 \
    X(ENOJTI, "jti claim missing")                                                                 \
    X(ENOEXP, "exp claim missing")                                                                 \
    X(ENOIAT, "iat claim missing")                                                                 \
    X(ENOROLE, "role claim missing")                                                               \
    X(ENOFAM, "fam claim missing")                                                                 \
    X(EEXPIRED, "expired")                                                                         \
    X(EFUTURE, "issued in the future")

typedef enum {
#define CD_JWT_ENUM(name, text) CD_JWT_##name,
    CD_JWT_ERROR_TABLE(CD_JWT_ENUM)
#undef CD_JWT_ENUM
} cd_jwt_err_t;

//  A signing key, ready to use. Initialised once (cd_jwt_key_init), then
//  only read: any number of threads may sign and verify with it at once.
//  Holds key material: wipe it (cd_jwt_key_wipe) when done.
typedef struct {
    crypto_auth_hmacsha256_state keyed; //  HMAC-SHA-256 state with the key absorbed
} cd_jwt_key_t;

typedef struct {
    int64_t sub;                    //  user id, > 0
    char role[CD_JWT_ROLE_MAX + 1]; //  "admin" or "user" (any 1..16 of a-z here)
    char jti[CD_JWT_ID_MAX + 1];    //  this token's id
    char fam[CD_JWT_ID_MAX + 1];    //  the login's refresh-token family (a uuid)
    int64_t iat;                    //  issued at, Unix seconds
    int64_t exp;                    //  expires at, Unix seconds
} cd_jwt_claims_t;

//  Human text of a verdict ("expired"). Static.
const char *
cd_jwt_strerror(cd_jwt_err_t err);

//  Symbolic name without the prefix ("EEXPIRED"). Static.
const char *
cd_jwt_errname(cd_jwt_err_t err);

//  Fills secret with a new random key (to store; load it with
//  cd_jwt_key_init). Any thread.
void
cd_jwt_keygen(uint8_t secret[CD_JWT_KEY_BYTES]);

//  Prepares key from the 32 bytes of secret (borrowed for the call).
void
cd_jwt_key_init(cd_jwt_key_t *key, const uint8_t secret[CD_JWT_KEY_BYTES]);

//  Wipes key (sodium_memzero). Safe to call twice.
void
cd_jwt_key_wipe(cd_jwt_key_t *key);

//  Fills claims for a new token: sub, role and fam as given, a random jti,
//  iat = now_s and exp = now_s + ttl_s. Returns 0, or CD_EINVAL if sub is
//  not positive, role or fam is not of the allowed characters, or a time
//  is negative.
int
cd_jwt_claims_init(cd_jwt_claims_t *claims, int64_t sub, const char *role, const char *fam,
                   int64_t now_s, int64_t ttl_s);

//  Signs claims into out[0..out_size) as a NUL-terminated token and sets
//  *len (if not NULL) to its length. Returns 0; CD_EINVAL if a claim is
//  not one cd_jwt_verify would accept; CD_ETOOBIG if out is too small
//  (CD_JWT_MAX_LEN + 1 is always enough).
int
cd_jwt_sign(const cd_jwt_key_t *key, const cd_jwt_claims_t *claims, char *out, size_t out_size,
            size_t *len);

//  Verifies token[0..len) (the text after "Bearer ") under key at Unix time
//  now_s, allowing leeway_s seconds of clock difference (>= 0) for exp and
//  iat: expired once now_s >= exp + leeway_s, refused if iat > now_s +
//  leeway_s. Returns CD_JWT_OK and fills *claims, or the first reason the
//  token fails, checked in the order of the table above (format, header,
//  signature, payload, claims, times); *claims is then unspecified.
//  Allocates nothing.
cd_jwt_err_t
cd_jwt_verify(const cd_jwt_key_t *key, const char *token, size_t len, int64_t now_s,
              int64_t leeway_s, cd_jwt_claims_t *claims);

#endif
