/*  cd_base32: RFC 4648 base32 (the standard alphabet A-Z 2-7), as TOTP
    secrets are written for authenticator apps.

    czmq's zarmour has base32 too, but its decoder asserts on a length that
    no encoder produces and skips characters outside the alphabet; a
    decoder of user-visible secrets must instead refuse both. This one is
    strict: upper-case alphabet only, padding either absent or complete
    (the whole text a multiple of 8 characters), nothing after the padding,
    and the unused low bits of the last character zero, so every byte
    string has exactly one accepted spelling per padding choice.

    Pure functions on caller buffers: no allocation, any thread. */
#ifndef CD_ENGINE_BASE32_H
#define CD_ENGINE_BASE32_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Characters (without the NUL) that cd_base32_encode writes for n bytes.
size_t
cd_base32_encoded_len(size_t n, bool pad);

//  Encodes in[0..n) into out as a NUL-terminated string, with '=' padding
//  to a multiple of 8 characters when pad is true. out_size must be at
//  least cd_base32_encoded_len(n, pad) + 1. Returns 0 or CD_ETOOBIG.
int
cd_base32_encode(const uint8_t *in, size_t n, bool pad, char *out, size_t out_size);

//  Decodes text[0..len) into out[0..out_size). On success returns 0 and
//  sets *out_len. Returns CD_EPROTO for text that is not canonical base32
//  (and sets *why, if not NULL, to a static description), CD_ETOOBIG if out
//  is too small. A decoded length never exceeds len * 5 / 8.
int
cd_base32_decode(const char *text, size_t len, uint8_t *out, size_t out_size, size_t *out_len,
                 const char **why);

#endif
