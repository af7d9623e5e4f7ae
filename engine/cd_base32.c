/*  cd_base32: strict RFC 4648 base32 (see cd_base32.h).

    Bits are gathered into a 64-bit accumulator five at a time and leave it
    eight at a time; whatever remains at the end must be fewer than eight
    bits and all zero, which is what makes the spelling canonical.

    Interface: cd_base32_encoded_len, cd_base32_encode, cd_base32_decode. */
#include "cd_base32.h"
#include "cd_error.h"

static const char s_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

size_t
cd_base32_encoded_len(size_t n, bool pad)
{
    size_t bits = n * 8;
    size_t chars = (bits + 4) / 5;
    return pad ? (chars + 7) / 8 * 8 : chars;
}

int
cd_base32_encode(const uint8_t *in, size_t n, bool pad, char *out, size_t out_size)
{
    size_t need = cd_base32_encoded_len(n, pad);
    if (out_size < need + 1) {
        return CD_ETOOBIG;
    }
    size_t o = 0;
    uint64_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = s_alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0) {
        out[o++] = s_alphabet[(acc << (5 - bits)) & 31];
    }
    while (o < need) {
        out[o++] = '=';
    }
    out[o] = '\0';
    return 0;
}

static int
s_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= '2' && c <= '7') {
        return c - '2' + 26;
    }
    return -1;
}

static int
s_fail(const char **why, const char *text)
{
    if (why) {
        *why = text;
    }
    return CD_EPROTO;
}

int
cd_base32_decode(const char *text, size_t len, uint8_t *out, size_t out_size, size_t *out_len,
                 const char **why)
{
    size_t data = len;
    while (data > 0 && text[data - 1] == '=') {
        data--;
    }
    size_t pad = len - data;
    //  Data characters beyond a multiple of 8 that can end an encoding: 2,
    //  4, 5 or 7 (1, 3 and 6 would leave a whole byte's worth of bits half
    //  written).
    size_t tail = data % 8;
    if (tail == 1 || tail == 3 || tail == 6) {
        return s_fail(why, "length is not that of any base32 encoding");
    }
    if (pad > 0 && (len % 8 != 0 || tail == 0)) {
        return s_fail(why, "padding does not complete the last 8-character group");
    }
    size_t bytes = data * 5 / 8;
    if (bytes > out_size) {
        return CD_ETOOBIG;
    }
    uint64_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < data; i++) {
        int v = s_value(text[i]);
        if (v < 0) {
            return s_fail(why, text[i] == '=' ? "padding in the middle"
                                              : "a character outside A-Z and 2-7");
        }
        acc = (acc << 5) | (uint64_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        return s_fail(why, "the unused bits of the last character are not zero");
    }
    *out_len = o;
    return 0;
}
