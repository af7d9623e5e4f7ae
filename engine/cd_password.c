/*  cd_password: argon2id hashes and the password policy (see
    cd_password.h).

    Interface: cd_password_check_policy, cd_password_utf8_chars,
    cd_password_hash, cd_password_verify, cd_password_needs_rehash. */
#include "cd_password.h"
#include "cd_error.h"

#include <assert.h>
#include <sodium.h>
#include <string.h>

_Static_assert(CD_PASSWORD_HASH_MAX == crypto_pwhash_STRBYTES, "hash buffer size");
_Static_assert(CD_PASSWORD_OPSLIMIT >= crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
               "at least INTERACTIVE passes");
_Static_assert(CD_PASSWORD_MEMLIMIT >= crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE,
               "at least INTERACTIVE memory");

//  A hash of 32 random bytes nobody kept, made with the current parameters
//  (an assert on its use checks that it follows them).
static const char s_dummy_hash[CD_PASSWORD_HASH_MAX] =
    "$argon2id$v=19$m=65536,t=2,p=1$1QWC1AXp5HqXZbClViMCfw$"
    "HEkCgQeVGDQqkasQkrJwJ17iBsEqr1jXwT3+5YJofo4";

bool
cd_password_utf8_chars(const char *text, size_t len, size_t *count)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t cp;
        if (c == 0) {
            return false;
        } else if (c < 0x80) {
            extra = 0;
            cp = c;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false; //  a continuation byte where a character starts, or 0xf8..0xff
        }
        if (len - i - 1 < extra) {
            return false;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static const uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < least[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += extra + 1;
        n++;
    }
    *count = n;
    return true;
}

int
cd_password_check_policy(const char *password, size_t len, const char **why)
{
    const char *reason = NULL;
    int rc = 0;
    size_t chars = 0;
    if (!password) {
        reason = "no password";
        rc = CD_EINVAL;
    } else if (len > CD_PASSWORD_MAX_BYTES) {
        reason = "longer than 1024 bytes";
        rc = CD_ETOOBIG;
    } else if (!cd_password_utf8_chars(password, len, &chars)) {
        reason = "not valid UTF-8 text";
        rc = CD_EINVAL;
    } else if (chars < CD_PASSWORD_MIN_CHARS) {
        reason = "shorter than 12 characters";
        rc = CD_EINVAL;
    }
    if (why && reason) {
        *why = reason;
    }
    return rc;
}

int
cd_password_hash(const char *password, size_t len, char out[CD_PASSWORD_HASH_MAX])
{
    if (len > CD_PASSWORD_MAX_BYTES) {
        return CD_ETOOBIG;
    }
    //  crypto_pwhash_str fails only when it cannot allocate its memory.
    if (crypto_pwhash_str_alg(out, password, len, CD_PASSWORD_OPSLIMIT, CD_PASSWORD_MEMLIMIT,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        return CD_ENOMEM;
    }
    return 0;
}

bool
cd_password_verify(const char *hash, const char *password, size_t len)
{
    if (len > CD_PASSWORD_MAX_BYTES || !password) {
        return false;
    }
    if (!hash) {
        //  Same work as a real check, and never a match.
        assert(!cd_password_needs_rehash(s_dummy_hash));
        (void)!crypto_pwhash_str_verify(s_dummy_hash, password, len);
        return false;
    }
    if (strnlen(hash, CD_PASSWORD_HASH_MAX) >= CD_PASSWORD_HASH_MAX) {
        return false;
    }
    return crypto_pwhash_str_verify(hash, password, len) == 0;
}

bool
cd_password_needs_rehash(const char *hash)
{
    if (!hash || strnlen(hash, CD_PASSWORD_HASH_MAX) >= CD_PASSWORD_HASH_MAX) {
        return true;
    }
    //  The argon2id-specific check: the generic one would accept an argon2i
    //  hash with the same limits.
    return crypto_pwhash_argon2id_str_needs_rehash(hash, CD_PASSWORD_OPSLIMIT,
                                                   CD_PASSWORD_MEMLIMIT) != 0;
}
