/*  cd_totp: time-based one-time passwords (RFC 6238) for MFA.

    The parameters are fixed, as API.md promises and as every authenticator
    app assumes: HMAC-SHA-1, 6 digits, 30-second steps counted from the Unix
    epoch, and a code accepted for the current step and one step either
    side (clock drift). Secrets are 20 random bytes (the size of a SHA-1
    block input RFC 4226 recommends) written as 32 characters of base32
    without padding, as users.mfa_secret stores them.

    Replay. A code stays valid for up to 90 seconds, but may be used once.
    cd_totp_verify takes the last time step this user logged in with and
    refuses a code of that step or an earlier one; on success it returns
    the step it matched, which the caller stores (users row, written in
    the same transaction that accepts the login).

    HMAC-SHA-1 comes from OpenSSL's libcrypto (libsodium has no SHA-1);
    everything else is libsodium. Pure functions, any thread; nothing is
    allocated except by cd_totp_uri. */
#ifndef CD_ENGINE_TOTP_H
#define CD_ENGINE_TOTP_H

#include <stddef.h>
#include <stdint.h>

#define CD_TOTP_SECRET_BYTES 20 //  random bytes of a secret
#define CD_TOTP_SECRET_LEN 32   //  its base32 characters (no padding)
#define CD_TOTP_SECRET_MAX 80   //  longest secret in bytes (users.mfa_secret: 128 chars)
#define CD_TOTP_PERIOD_S 30     //  seconds per time step
#define CD_TOTP_DIGITS 6        //  digits of a code
#define CD_TOTP_WINDOW 1        //  steps accepted either side of now
#define CD_TOTP_ISSUER "cadre"  //  issuer shown by authenticator apps

//  Writes a new random secret (CD_TOTP_SECRET_LEN base32 characters and a
//  NUL) into out. Any thread.
void
cd_totp_secret_new(char out[CD_TOTP_SECRET_LEN + 1]);

//  The key URI authenticator apps import (as a QR code):
//    otpauth://totp/cadre:<account>?secret=<secret>&issuer=cadre
//        &algorithm=SHA1&digits=6&period=30
//  with the account (the username) percent-encoded. secret is base32.
//  Returns 0 and sets *out (caller owns it, free()); CD_EINVAL if secret is
//  not base32 or account is empty or longer than 256 bytes.
int
cd_totp_uri(const char *secret, const char *account, char **out);

//  HOTP (RFC 4226): the `digits`-digit code (6..8) of counter under key.
//  Returns 0 and sets *code, or CD_EINVAL for a bad digit count or a key
//  longer than CD_TOTP_SECRET_MAX.
int
cd_totp_hotp(const uint8_t *key, size_t key_len, uint64_t counter, int digits, uint32_t *code);

//  The time step of a Unix time (floor(t / 30); 0 before the epoch).
int64_t
cd_totp_step(int64_t unix_s);

//  The code of secret (base32) at Unix time unix_s, as CD_TOTP_DIGITS
//  digits with leading zeros and a NUL. Returns 0 or CD_EINVAL for a
//  malformed secret. For tests and clients; the server only verifies.
int
cd_totp_code(const char *secret, int64_t unix_s, char out[CD_TOTP_DIGITS + 1]);

//  Checks code (exactly CD_TOTP_DIGITS ASCII digits) against secret
//  (base32) at now_s, for the steps now-1, now and now+1. last_step is the
//  step of this user's last accepted code (-1 if none): codes of that step
//  or earlier are refused. The three candidates are all computed and
//  compared in constant time whatever matches.
//  Returns 0 and sets *step to the matched step (the latest if several
//  match); CD_EPERM if the code matches no step of the window;
//  CD_EEXIST if it matches only steps already used (a replay);
//  CD_EINVAL if secret or code is malformed.
int
cd_totp_verify(const char *secret, const char *code, int64_t now_s, int64_t last_step,
               int64_t *step);

#endif
