/*  cd_curve: CurveZMQ keys and the security policy of tcp links.

    Keys are written as Z85 (ZeroMQ RFC 32): 40 characters for 32 bytes.
    A node has one key pair: its secret key is configured
    (CADRE_CURVE_SECRET_KEY), its public key is derived from it and given to
    the other nodes, which list it with the peer (--peer
    ID=PUBLIC_KEY@tcp://HOST:PORT) and, to let it connect in, among their
    allowed keys (CADRE_CURVE_ALLOWED_KEYS, comma-separated; a configured
    peer's key is allowed too). Z85 uses '#', so in the config file keys
    are quoted ("...") or ZPL reads the rest of the line as a comment.

    The policy: a tcp endpoint that is not loopback carries node traffic
    in clear unless CurveZMQ is on, so such an endpoint (a bind or a peer)
    is refused without keys unless the operator explicitly allows it
    (--allow-insecure-tcp).

    `cadred keygen [PATH]` makes a key pair (with czmq's zcert) and prints
    it, or writes PATH.key (the secret key, mode 0600) and PATH.pub.

    Pure functions except cd_curve_keygen_command (files, streams); any
    thread. */
#ifndef CD_ENGINE_CURVE_H
#define CD_ENGINE_CURVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CD_CURVE_KEY_LEN 40   //  Z85 characters of a key
#define CD_CURVE_KEY_BYTES 32 //  bytes of a key

//  A key in binary.
typedef struct {
    uint8_t bytes[CD_CURVE_KEY_BYTES]; //  the 32 bytes
} cd_curve_key_t;

//  True if text is exactly CD_CURVE_KEY_LEN Z85 characters (a 32-byte key).
bool
cd_curve_key_valid(const char *text);

//  Decodes a Z85 key. Returns 0 or CD_EINVAL.
int
cd_curve_key_decode(const char *text, cd_curve_key_t *key);

//  The Z85 form of a key into out (CD_CURVE_KEY_LEN characters and a NUL).
void
cd_curve_key_encode(const cd_curve_key_t *key, char out[CD_CURVE_KEY_LEN + 1]);

//  The public key (Z85) of a secret key (Z85) into out. Returns 0, or
//  CD_EINVAL for a malformed key.
int
cd_curve_public_of(const char *secret, char out[CD_CURVE_KEY_LEN + 1]);

//  A new key pair, Z85. Returns 0, or CD_ENOSYS if this ZeroMQ has no
//  CurveZMQ.
int
cd_curve_keypair(char public_key[CD_CURVE_KEY_LEN + 1], char secret_key[CD_CURVE_KEY_LEN + 1]);

//  Parses a comma-separated list of Z85 keys (blanks around items and
//  empty items ignored) into *keys (caller frees, free()) and *n. Returns
//  0, or CD_EINVAL and sets *bad (if not NULL) to the 0-based position of
//  the first malformed item. NULL or "" is an empty list.
int
cd_curve_key_list(const char *text, cd_curve_key_t **keys, size_t *n, size_t *bad);

//  True if a ZeroMQ tcp endpoint ("tcp://HOST:PORT") names a loopback
//  host: 127.0.0.0/8, ::1 (also IPv4-mapped), "localhost", or interface
//  "lo". A wildcard (*, 0.0.0.0, ::), any other name and anything
//  malformed are not.
bool
cd_curve_endpoint_is_loopback(const char *endpoint);

//  `cadred keygen [PATH]`: args are what follows "keygen". With no
//  argument prints "public-key <z85>" and "secret-key <z85>" lines to out;
//  with PATH writes PATH.key (secret, 0600) and PATH.pub (public, 0644),
//  each the key and a newline, refusing to overwrite either, and prints
//  the public key line. Errors go to err. Returns the exit code: 0, 1 (the
//  files could not be written), 2 (usage).
int
cd_curve_keygen_command(char **args, size_t n_args, FILE *out, FILE *err);

#endif
