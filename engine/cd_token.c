/*  cd_token: opaque tokens and their keyed hashes (see cd_token.h).

    Interface: cd_token_new, cd_token_parse, cd_token_keygen, cd_token_hash,
    cd_token_hash_hex, cd_token_hash_equal, cd_token_hex_equal,
    cd_token_display. */
#include "cd_token.h"
#include "cd_error.h"

#include <assert.h>
#include <sodium.h>
#include <string.h>

#define S_B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static const char *const s_prefix[] = {"cdk_", "cdr_"};

void
cd_token_new(cd_token_kind_t kind, char out[CD_TOKEN_LEN + 1])
{
    assert(kind == CD_TOKEN_API_KEY || kind == CD_TOKEN_REFRESH);
    uint8_t bytes[CD_TOKEN_RANDOM_BYTES];
    randombytes_buf(bytes, sizeof bytes);
    memcpy(out, s_prefix[kind], CD_TOKEN_PREFIX_LEN);
    sodium_bin2base64(out + CD_TOKEN_PREFIX_LEN, CD_TOKEN_LEN - CD_TOKEN_PREFIX_LEN + 1, bytes,
                      sizeof bytes, S_B64);
    sodium_memzero(bytes, sizeof bytes);
}

bool
cd_token_parse(const char *text, size_t len, cd_token_kind_t *kind)
{
    if (!text || len != CD_TOKEN_LEN) {
        return false;
    }
    int which = -1;
    for (int k = 0; k < 2; k++) {
        if (memcmp(text, s_prefix[k], CD_TOKEN_PREFIX_LEN) == 0) {
            which = k;
        }
    }
    uint8_t bytes[CD_TOKEN_RANDOM_BYTES];
    size_t n = 0;
    //  libsodium's decoder refuses foreign characters, padding and set
    //  unused bits, so one token has one spelling.
    bool ok = which >= 0 &&
              sodium_base642bin(bytes, sizeof bytes, text + CD_TOKEN_PREFIX_LEN,
                                CD_TOKEN_LEN - CD_TOKEN_PREFIX_LEN, NULL, &n, NULL, S_B64) == 0 &&
              n == sizeof bytes;
    sodium_memzero(bytes, sizeof bytes);
    if (ok && kind) {
        *kind = (cd_token_kind_t)which;
    }
    return ok;
}

void
cd_token_keygen(uint8_t key[CD_TOKEN_KEY_BYTES])
{
    crypto_generichash_keygen(key);
}

int
cd_token_hash(const uint8_t key[CD_TOKEN_KEY_BYTES], const char *token, size_t len,
              uint8_t out[CD_TOKEN_HASH_BYTES])
{
    if (!cd_token_parse(token, len, NULL)) {
        return CD_EINVAL;
    }
    crypto_generichash(out, CD_TOKEN_HASH_BYTES, (const unsigned char *)token, len, key,
                       CD_TOKEN_KEY_BYTES);
    return 0;
}

void
cd_token_hash_hex(const uint8_t hash[CD_TOKEN_HASH_BYTES], char out[CD_TOKEN_HASH_HEX_LEN + 1])
{
    sodium_bin2hex(out, CD_TOKEN_HASH_HEX_LEN + 1, hash, CD_TOKEN_HASH_BYTES);
}

bool
cd_token_hash_equal(const uint8_t a[CD_TOKEN_HASH_BYTES], const uint8_t b[CD_TOKEN_HASH_BYTES])
{
    return sodium_memcmp(a, b, CD_TOKEN_HASH_BYTES) == 0;
}

bool
cd_token_hex_equal(const char *a, const char *b)
{
    //  The lengths are public (always 64 for real hashes); only the
    //  contents are compared in constant time.
    if (!a || !b || strnlen(a, CD_TOKEN_HASH_HEX_LEN + 1) != CD_TOKEN_HASH_HEX_LEN ||
        strnlen(b, CD_TOKEN_HASH_HEX_LEN + 1) != CD_TOKEN_HASH_HEX_LEN) {
        return false;
    }
    return sodium_memcmp(a, b, CD_TOKEN_HASH_HEX_LEN) == 0;
}

void
cd_token_display(const char *token, char out[CD_TOKEN_DISPLAY_LEN + 1])
{
    out[0] = '\0';
    if (token && cd_token_parse(token, strnlen(token, CD_TOKEN_LEN + 1), NULL)) {
        memcpy(out, token, CD_TOKEN_DISPLAY_LEN);
        out[CD_TOKEN_DISPLAY_LEN] = '\0';
    }
}
