/*  cd_token: opaque bearer tokens — API keys and refresh tokens.

    A token is 32 random bytes (256 bits) written as unpadded base64url
    after a short prefix that says what it is and makes a leaked one easy
    to recognise (secret scanners, logs):

        cdk_<43 characters>     an API key (X-API-Key)
        cdr_<43 characters>     a refresh token

    The server never stores a token, only its hash: BLAKE2b-256
    (crypto_generichash) of the whole token text, keyed with a
    per-installation key. A fast keyed hash is right here, argon2id is
    not: the token is uniformly random, so there is nothing to stretch, and
    an API key is checked on every request. The key means a stolen table
    of hashes cannot even be checked against candidate tokens without it.
    Hashes are 32 bytes (api_keys.key_hash, refresh_tokens.token_hash) or
    64 lower-case hex characters where text is needed.

    Comparisons of hashes are constant-time (sodium_memcmp). Looking a hash
    up by equality in the database is fine: an attacker who can time that
    index search learns about hashes of tokens they do not have, which does
    not help them forge one.

    Pure functions over caller memory; any thread. */
#ifndef CD_ENGINE_TOKEN_H
#define CD_ENGINE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_TOKEN_RANDOM_BYTES 32 //  entropy of a token
#define CD_TOKEN_PREFIX_LEN 4    //  "cdk_" or "cdr_"
#define CD_TOKEN_LEN 47          //  characters of a token: prefix + 43
#define CD_TOKEN_KEY_BYTES 32    //  the per-installation hashing key
#define CD_TOKEN_HASH_BYTES 32   //  BLAKE2b-256
#define CD_TOKEN_HASH_HEX_LEN 64 //  a hash as hex
#define CD_TOKEN_DISPLAY_LEN 12  //  prefix + 8 characters, shown to tell keys apart

typedef enum {
    CD_TOKEN_API_KEY, //  cdk_
    CD_TOKEN_REFRESH  //  cdr_
} cd_token_kind_t;

//  Writes a new random token of kind (CD_TOKEN_LEN characters and a NUL)
//  into out. The caller shows it once and keeps only its hash.
void
cd_token_new(cd_token_kind_t kind, char out[CD_TOKEN_LEN + 1]);

//  True if text[0..len) is a well-formed token (known prefix, exact
//  length, base64url characters, canonical last character); sets *kind
//  (if not NULL). A cheap check that spares a hash and a lookup for
//  garbage.
bool
cd_token_parse(const char *text, size_t len, cd_token_kind_t *kind);

//  Fills key with a new random hashing key (once per installation).
void
cd_token_keygen(uint8_t key[CD_TOKEN_KEY_BYTES]);

//  The keyed hash of token[0..len) into out. Returns 0, or CD_EINVAL if
//  the token is not well-formed (nothing is hashed).
int
cd_token_hash(const uint8_t key[CD_TOKEN_KEY_BYTES], const char *token, size_t len,
              uint8_t out[CD_TOKEN_HASH_BYTES]);

//  A hash as 64 lower-case hex characters and a NUL.
void
cd_token_hash_hex(const uint8_t hash[CD_TOKEN_HASH_BYTES], char out[CD_TOKEN_HASH_HEX_LEN + 1]);

//  Constant-time equality of two hashes.
bool
cd_token_hash_equal(const uint8_t a[CD_TOKEN_HASH_BYTES], const uint8_t b[CD_TOKEN_HASH_BYTES]);

//  Constant-time equality of two hex hashes (NUL-terminated). False unless
//  both are exactly CD_TOKEN_HASH_HEX_LEN characters; the time depends on
//  nothing else.
bool
cd_token_hex_equal(const char *a, const char *b);

//  The first CD_TOKEN_DISPLAY_LEN characters of a well-formed token, to
//  store beside its hash (api_keys.prefix) so a user can tell keys apart.
//  They carry 48 of the 256 random bits. Empty for a malformed token.
void
cd_token_display(const char *token, char out[CD_TOKEN_DISPLAY_LEN + 1]);

#endif
