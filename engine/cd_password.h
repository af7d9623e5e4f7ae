/*  cd_password: password hashing (argon2id) and the password policy.

    Hashes are libsodium's crypto_pwhash_str strings
    ("$argon2id$v=19$m=65536,t=2,p=1$<salt>$<hash>", under 128 characters,
    as users.password_hash and password_history store them): the algorithm,
    its parameters and a random salt travel inside the string, so
    parameters can be raised later without breaking old hashes
    (cd_password_needs_rehash says when to re-hash at the next login).

    Parameters: argon2id with libsodium's INTERACTIVE limits, 2 passes over
    64 MiB, one lane. That is the floor the issue sets, and already above
    OWASP's recommendations for argon2id (19 MiB, 2 passes); it costs about
    80-110 ms of one core per hash on this project's 2-core VMs (bench_auth
    measures it; more when the machine is busy), which is what bounds
    logins per second by design (about 10 per core). Raising
    it further would make every login slower and the memory per concurrent
    login (64 MiB) larger; the caller caps concurrent hashes (a worker
    actor, never the HTTP thread) so a login flood cannot exhaust memory.

    Policy: at least 12 characters counted as Unicode code points of valid
    UTF-8 (so "ééééééééééé" is 11 characters, not 22), at most 1024 bytes
    (argon2 pre-hashes its input, so the limit is about request sizes, not
    cost), no NUL. No composition rules and no forced rotation (NIST SP
    800-63B). Text is not Unicode-normalised: a client should send NFC.

    Pure functions; any thread. cd_password_hash and cd_password_verify are
    slow on purpose and allocate 64 MiB for their duration. */
#ifndef CD_ENGINE_PASSWORD_H
#define CD_ENGINE_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define CD_PASSWORD_MIN_CHARS 12       //  shortest password, in code points
#define CD_PASSWORD_MAX_BYTES 1024     //  longest password, in bytes
#define CD_PASSWORD_HASH_MAX 128       //  a hash string with its NUL (crypto_pwhash_STRBYTES)
#define CD_PASSWORD_OPSLIMIT 2u        //  argon2id passes (OPSLIMIT_INTERACTIVE)
#define CD_PASSWORD_MEMLIMIT 67108864u //  argon2id memory in bytes (MEMLIMIT_INTERACTIVE)

//  Checks password[0..len) against the policy. Returns 0; CD_EINVAL if it
//  is too short, not valid UTF-8 or holds a NUL; CD_ETOOBIG if it is too
//  long. *why (if not NULL) gets a static reason on failure.
int
cd_password_check_policy(const char *password, size_t len, const char **why);

//  The number of code points of valid UTF-8 text[0..len) in *count.
//  Returns false (and leaves *count alone) for invalid UTF-8: a stray or
//  missing continuation byte, an overlong form, a surrogate, a code point
//  above U+10FFFF, or a NUL.
bool
cd_password_utf8_chars(const char *text, size_t len, size_t *count);

//  Hashes password[0..len) into out (a NUL-terminated string). Returns 0;
//  CD_ETOOBIG above CD_PASSWORD_MAX_BYTES; CD_ENOMEM if argon2 cannot get
//  its memory. Does not apply the policy.
int
cd_password_hash(const char *password, size_t len, char out[CD_PASSWORD_HASH_MAX]);

//  True if password[0..len) matches hash. A NULL hash (an unknown user)
//  verifies against a fixed hash of a random password with the same
//  parameters and returns false, so an unknown user costs the same time as
//  a wrong password. A malformed hash or an over-long password is false.
bool
cd_password_verify(const char *hash, const char *password, size_t len);

//  True if hash was made with other parameters than the current ones (or
//  with another algorithm, or is malformed): re-hash the password at the
//  next successful login.
bool
cd_password_needs_rehash(const char *hash);

#endif
