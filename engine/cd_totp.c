/*  cd_totp: RFC 6238 one-time passwords (see cd_totp.h).

    A code is HOTP (RFC 4226) of the time step: HMAC-SHA-1 of the step as an
    8-byte big-endian counter, "dynamic truncation" to 31 bits at the
    offset the last nibble names, then that number modulo 10^digits.

    Verification computes the codes of all three steps of the window and
    folds the comparisons into masks without branching on secrets, so the
    time taken says nothing about which step (if any) matched.

    Interface: cd_totp_secret_new, cd_totp_uri, cd_totp_hotp, cd_totp_step,
    cd_totp_code, cd_totp_verify. */
#include "cd_totp.h"
#include "cd_base32.h"
#include "cd_error.h"

#include <assert.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
cd_totp_secret_new(char out[CD_TOTP_SECRET_LEN + 1])
{
    uint8_t key[CD_TOTP_SECRET_BYTES];
    randombytes_buf(key, sizeof key);
    int rc = cd_base32_encode(key, sizeof key, false, out, CD_TOTP_SECRET_LEN + 1);
    assert(rc == 0);
    (void)rc;
    sodium_memzero(key, sizeof key);
}

//  Decodes a stored secret. Returns 0 or CD_EINVAL.
static int
s_secret_key(const char *secret, uint8_t key[CD_TOTP_SECRET_MAX], size_t *key_len)
{
    if (!secret) {
        return CD_EINVAL;
    }
    size_t len = strnlen(secret, CD_TOTP_SECRET_MAX * 2 + 1);
    if (len == 0 || cd_base32_decode(secret, len, key, CD_TOTP_SECRET_MAX, key_len, NULL) != 0 ||
        *key_len == 0) {
        return CD_EINVAL;
    }
    return 0;
}

//  Appends account percent-encoded (RFC 3986: everything but the
//  unreserved characters).
static void
s_escape(const char *text, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        bool unreserved = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                          (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' ||
                          *c == '~';
        if (unreserved) {
            *out++ = (char)*c;
        } else {
            *out++ = '%';
            *out++ = hex[*c >> 4];
            *out++ = hex[*c & 15];
        }
    }
    *out = '\0';
}

int
cd_totp_uri(const char *secret, const char *account, char **out)
{
    uint8_t key[CD_TOTP_SECRET_MAX];
    size_t key_len = 0;
    if (s_secret_key(secret, key, &key_len) != 0 || !account) {
        return CD_EINVAL;
    }
    sodium_memzero(key, sizeof key);
    size_t account_len = strlen(account);
    if (account_len == 0 || account_len > 256) {
        return CD_EINVAL;
    }
    char escaped[256 * 3 + 1];
    s_escape(account, escaped);
    int n = asprintf(out,
                     "otpauth://totp/" CD_TOTP_ISSUER ":%s?secret=%s&issuer=" CD_TOTP_ISSUER
                     "&algorithm=SHA1&digits=%d&period=%d",
                     escaped, secret, CD_TOTP_DIGITS, CD_TOTP_PERIOD_S);
    if (n < 0) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return 0;
}

int
cd_totp_hotp(const uint8_t *key, size_t key_len, uint64_t counter, int digits, uint32_t *code)
{
    static const uint32_t powers[] = {1000000, 10000000, 100000000};
    if (digits < 6 || digits > 8 || key_len > CD_TOTP_SECRET_MAX) {
        return CD_EINVAL;
    }
    uint8_t message[8];
    for (int i = 7; i >= 0; i--) {
        message[i] = (uint8_t)(counter & 0xff);
        counter >>= 8;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    //  A key of length 0 is valid HMAC input but OpenSSL wants a non-NULL
    //  pointer for it.
    static const uint8_t empty[1] = {0};
    if (!HMAC(EVP_sha1(), key_len ? key : empty, (int)key_len, message, sizeof message, mac,
              &mac_len) ||
        mac_len != 20) {
        return CD_EINVAL;
    }
    unsigned offset = mac[19] & 0x0f;
    uint32_t binary = ((uint32_t)(mac[offset] & 0x7f) << 24) | ((uint32_t)mac[offset + 1] << 16) |
                      ((uint32_t)mac[offset + 2] << 8) | (uint32_t)mac[offset + 3];
    *code = binary % powers[digits - 6];
    sodium_memzero(mac, sizeof mac);
    return 0;
}

int64_t
cd_totp_step(int64_t unix_s)
{
    return unix_s < 0 ? 0 : unix_s / CD_TOTP_PERIOD_S;
}

static void
s_format(uint32_t code, char out[CD_TOTP_DIGITS + 1])
{
    for (int i = CD_TOTP_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + code % 10);
        code /= 10;
    }
    out[CD_TOTP_DIGITS] = '\0';
}

int
cd_totp_code(const char *secret, int64_t unix_s, char out[CD_TOTP_DIGITS + 1])
{
    uint8_t key[CD_TOTP_SECRET_MAX];
    size_t key_len = 0;
    if (s_secret_key(secret, key, &key_len) != 0) {
        return CD_EINVAL;
    }
    uint32_t code = 0;
    int rc = cd_totp_hotp(key, key_len, (uint64_t)cd_totp_step(unix_s), CD_TOTP_DIGITS, &code);
    sodium_memzero(key, sizeof key);
    if (rc == 0) {
        s_format(code, out);
    }
    return rc;
}

int
cd_totp_verify(const char *secret, const char *code, int64_t now_s, int64_t last_step,
               int64_t *step)
{
    if (!code || strnlen(code, CD_TOTP_DIGITS + 1) != CD_TOTP_DIGITS) {
        return CD_EINVAL;
    }
    for (int i = 0; i < CD_TOTP_DIGITS; i++) {
        if (code[i] < '0' || code[i] > '9') {
            return CD_EINVAL;
        }
    }
    uint8_t key[CD_TOTP_SECRET_MAX];
    size_t key_len = 0;
    if (s_secret_key(secret, key, &key_len) != 0) {
        return CD_EINVAL;
    }
    int64_t now_step = cd_totp_step(now_s);
    int64_t fresh_step = -1; //  latest matching step after last_step
    bool replayed = false;   //  a match at a step already used
    for (int64_t s = now_step - CD_TOTP_WINDOW; s <= now_step + CD_TOTP_WINDOW; s++) {
        uint32_t value = 0;
        if (s < 0 || cd_totp_hotp(key, key_len, (uint64_t)s, CD_TOTP_DIGITS, &value) != 0) {
            continue;
        }
        char expected[CD_TOTP_DIGITS + 1];
        s_format(value, expected);
        //  Masks rather than branches on the comparison: every candidate
        //  costs the same whether it matches or not.
        int64_t match = -(int64_t)(sodium_memcmp(expected, code, CD_TOTP_DIGITS) == 0);
        int64_t fresh = -(int64_t)(s > last_step);
        fresh_step = (match & fresh & s) | (~(match & fresh) & fresh_step);
        replayed |= (match & ~fresh) != 0;
        sodium_memzero(expected, sizeof expected);
    }
    sodium_memzero(key, sizeof key);
    if (fresh_step >= 0) {
        *step = fresh_step;
        return 0;
    }
    return replayed ? CD_EEXIST : CD_EPERM;
}
