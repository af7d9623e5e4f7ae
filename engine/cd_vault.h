/*  cd_vault: the keys that seal connection secrets.

    Two keys:
      - the data-encryption key (DEK), 32 random bytes that seal every
        secret value with crypto_secretbox (XSalsa20-Poly1305, a random
        nonce per value);
      - the key-encryption key (KEK), derived from the master password with
        argon2id (crypto_pwhash, MODERATE limits: 3 passes over 256 MiB,
        0.5-0.7 s here, once per init or unlock) and a random salt; it
        only wraps the DEK (crypto_secretbox again) and is wiped at once.
    What is stored (cd_vault_record_t, the `vault` table): the KDF
    parameters, the salt and the wrapped DEK. Neither key is ever stored.
    Changing the master password re-wraps the DEK; the sealed values stay.

    A vault object is an unlocked vault: it holds the DEK in memory from
    sodium_malloc (guard pages, never swapped: sodium_mlock), readable only
    while a seal or open runs (sodium_mprotect_noaccess otherwise), wiped and
    freed by cd_vault_destroy, which is what locking is. After a restart
    there is no object until someone unlocks.

    A wrong master password is CD_EPERM: the KEK it derives cannot open
    the wrapped DEK (the MAC fails). So is a record whose parameters or
    salt were tampered with (a weaker opslimit derives another KEK), which
    means the stored parameters cannot be downgraded to speed up guessing.

    Sealed values are hex text of nonce (24 bytes) || MAC (16) || ciphertext,
    as connections.secrets stores them (bytea, given to the query layer as
    hex). They carry nothing in clear but their length.

    Threads: a vault object belongs to one thread at a time (the actor
    that owns it); the mprotect toggling is not safe to share. Records and
    sealed text are plain values. */
#ifndef CD_ENGINE_VAULT_H
#define CD_ENGINE_VAULT_H

#include <stddef.h>
#include <stdint.h>

#define CD_VAULT_KEY_BYTES 32          //  DEK and KEK (crypto_secretbox_KEYBYTES)
#define CD_VAULT_SALT_BYTES 16         //  crypto_pwhash_SALTBYTES
#define CD_VAULT_NONCE_BYTES 24        //  crypto_secretbox_NONCEBYTES
#define CD_VAULT_MAC_BYTES 16          //  crypto_secretbox_MACBYTES
#define CD_VAULT_WRAPPED_BYTES 72      //  nonce || MAC || DEK
#define CD_VAULT_OVERHEAD 40           //  sealed bytes beyond the plain text
#define CD_VAULT_SEALED_MAX 65536      //  a sealed value (connections.secrets)
#define CD_VAULT_PASSWORD_MAX 1024     //  master password, bytes
#define CD_VAULT_OPSLIMIT 3ull         //  argon2id passes (OPSLIMIT_MODERATE)
#define CD_VAULT_MEMLIMIT 268435456ull //  argon2id bytes (MEMLIMIT_MODERATE)
#define CD_VAULT_KDF "argon2id13"      //  the record's kdf

//  The largest value to seal, in bytes.
#define CD_VAULT_PLAIN_MAX (CD_VAULT_SEALED_MAX - CD_VAULT_OVERHEAD)

//  The KDF cost. Records carry theirs; a new vault takes the defaults
//  above unless told otherwise (tests use less to run fast).
typedef struct {
    uint64_t opslimit; //  passes, 1..64
    uint64_t memlimit; //  bytes, 8 KiB..4 GiB
} cd_vault_params_t;

//  What is stored to unlock later. Not secret, but integrity-relevant:
//  any change makes unlocking fail.
typedef struct {
    cd_vault_params_t params;                //  KDF cost
    uint8_t salt[CD_VAULT_SALT_BYTES];       //  KDF salt
    uint8_t wrapped[CD_VAULT_WRAPPED_BYTES]; //  nonce || secretbox(DEK) under the KEK
} cd_vault_record_t;

typedef struct cd_vault cd_vault_t;

//  Initialises a new vault: a random DEK, a KEK from password[0..len)
//  with params (NULL: the defaults) and a random salt, the DEK wrapped.
//  On success returns 0, fills *record (to store) and sets *out to the
//  unlocked vault (caller owns it: cd_vault_destroy). Returns CD_EINVAL for
//  params out of range or an empty password, CD_ETOOBIG for a password over
//  CD_VAULT_PASSWORD_MAX, CD_ENOMEM if argon2 or the locked memory cannot
//  be had. The password policy is the caller's. Slow on purpose.
int
cd_vault_create(const char *password, size_t len, const cd_vault_params_t *params,
                cd_vault_record_t *record, cd_vault_t **out);

//  Unlocks the vault of record with password[0..len). Returns 0 and *out
//  (caller owns it); CD_EPERM for a wrong password (or a tampered record);
//  CD_EINVAL for params out of range; CD_ETOOBIG, CD_ENOMEM as above.
//  Slow on purpose.
int
cd_vault_unlock(const cd_vault_record_t *record, const char *password, size_t len,
                cd_vault_t **out);

//  Locks: wipes the DEK, frees the vault and nulls *self_p. Safe on NULL
//  and twice.
void
cd_vault_destroy(cd_vault_t **self_p);

//  Wraps this vault's DEK under a new master password (new salt, params
//  NULL: the defaults) into *record, to replace the stored one. Values
//  sealed before stay readable. Returns as cd_vault_create.
int
cd_vault_rewrap(cd_vault_t *self, const char *password, size_t len, const cd_vault_params_t *params,
                cd_vault_record_t *record);

//  Seals plain[0..len) into *hex_out (NUL-terminated lower-case hex of
//  nonce || MAC || ciphertext; caller owns it, free()). Returns 0 or
//  CD_ETOOBIG above CD_VAULT_PLAIN_MAX.
int
cd_vault_seal(cd_vault_t *self, const void *plain, size_t len, char **hex_out);

//  Opens a sealed value (hex as cd_vault_seal writes it). Returns 0 and
//  sets *plain_out to the plain text, NUL-terminated, in locked memory
//  (free it with cd_vault_secret_free, which wipes it) and *len (if not
//  NULL); CD_EPROTO for text that is not a sealed value; CD_EPERM if it was
//  not sealed by this vault or was altered.
int
cd_vault_open(cd_vault_t *self, const char *hex, char **plain_out, size_t *len);

//  Wipes and frees a value from cd_vault_open; nulls *plain_p. Safe on
//  NULL.
void
cd_vault_secret_free(char **plain_p);

//  The record as a JSON object, the columns of the `vault` table:
//    {"kdf":"argon2id13","opslimit":3,"memlimit":268435456,
//     "salt":"<32 hex>","wrapped_dek":"<144 hex>"}
//  *out is NUL-terminated; caller owns it (free()).
void
cd_vault_record_to_json(const cd_vault_record_t *record, char **out);

//  Reads a record from JSON of that shape (extra members ignored; numbers
//  may also be decimal strings, as bigint columns print). Returns 0, or
//  CD_EPROTO with *why (if not NULL) saying what is wrong.
int
cd_vault_record_from_json(const char *json, cd_vault_record_t *record, const char **why);

#endif
