/*  cd_jwt: a signed token verifies and gives its claims back; every way a
    token can be wrong is refused with its own verdict: alg none (however
    it is signed), HS512, RS256, a missing alg, extra header members, a
    tampered payload or signature, another key, expiry and a future iat
    (with and without leeway), each missing claim, claims of the wrong
    type, and garbage and truncations at every length. Forged tokens are
    built here from raw JSON and carry a correct HS256 MAC, so each check
    is reached on its own. Ends with a measure of verifications per second. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_jwt.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define NOW 1700000000

static uint8_t s_secret[CD_JWT_KEY_BYTES];
static cd_jwt_key_t s_keyed;
static const cd_jwt_key_t *s_key = &s_keyed;

static int
s_setup(void **state)
{
    cd_jwt_keygen(s_secret);
    cd_jwt_key_init(&s_keyed, s_secret);
    return 0;
}

//  header.payload.MAC with an HS256 MAC under s_key, whatever the header
//  says. The result lives in a static buffer until the next call.
static const char *
s_forge(const char *header, const char *payload)
{
    static char token[4096];
    size_t n = 0;
    sodium_bin2base64(token, sizeof token, (const unsigned char *)header, strlen(header), B64);
    n = strlen(token);
    token[n++] = '.';
    sodium_bin2base64(token + n, sizeof token - n, (const unsigned char *)payload, strlen(payload),
                      B64);
    n = strlen(token);
    uint8_t mac[32];
    crypto_auth_hmacsha256(mac, (const unsigned char *)token, n, s_secret);
    token[n++] = '.';
    sodium_bin2base64(token + n, sizeof token - n, mac, sizeof mac, B64);
    return token;
}

//  header_b64.payload_b64.MAC with the MAC computed over the parts exactly
//  as given (which need not be canonical base64url).
static const char *
s_forge_raw(const char *header_b64, const char *payload_b64)
{
    static char token[4096];
    int n = snprintf(token, sizeof token, "%s.%s", header_b64, payload_b64);
    uint8_t mac[32];
    crypto_auth_hmacsha256(mac, (const unsigned char *)token, (size_t)n, s_secret);
    token[n++] = '.';
    sodium_bin2base64(token + n, sizeof token - (size_t)n, mac, sizeof mac, B64);
    return token;
}

static const char *const s_hs256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

//  A payload with every claim, valid at NOW.
static const char *const s_claims = "{\"sub\":\"42\",\"role\":\"user\",\"jti\":\"abc_DEF-123\","
                                    "\"fam\":\"6f1c2a4e-8d4b-4a51-9a63-0b1c2d3e4f50\","
                                    "\"iat\":1699999990,\"exp\":1700000890}";

static cd_jwt_err_t
s_verify(const char *token)
{
    cd_jwt_claims_t claims;
    return cd_jwt_verify(s_key, token, strlen(token), NOW, 0, &claims);
}

static void
s_expect(const char *token, cd_jwt_err_t expected)
{
    cd_jwt_err_t got = s_verify(token);
    if (got != expected) {
        fail_msg("%s: expected %s, got %s", token, cd_jwt_errname(expected), cd_jwt_errname(got));
    }
}

static void
test_jwt_signed_token_verifies_with_its_claims(void **state)
{
    cd_jwt_claims_t claims;
    assert_int_equal(cd_jwt_claims_init(&claims, 42, "admin",
                                        "6f1c2a4e-8d4b-4a51-9a63-0b1c2d3e4f50", NOW, CD_JWT_TTL_S),
                     0);
    assert_int_equal(strlen(claims.jti), 22);
    char token[CD_JWT_MAX_LEN + 1];
    size_t len = 0;
    assert_int_equal(cd_jwt_sign(s_key, &claims, token, sizeof token, &len), 0);
    assert_int_equal(len, strlen(token));
    //  The header is the fixed one, as every JWT library spells it.
    assert_int_equal(strncmp(token, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37), 0);
    cd_jwt_claims_t got;
    memset(&got, 0x55, sizeof got);
    assert_int_equal(cd_jwt_verify(s_key, token, len, NOW + 10, 0, &got), CD_JWT_OK);
    assert_int_equal(got.sub, 42);
    assert_string_equal(got.role, "admin");
    assert_string_equal(got.jti, claims.jti);
    assert_string_equal(got.fam, claims.fam);
    assert_int_equal(got.iat, NOW);
    assert_int_equal(got.exp, NOW + CD_JWT_TTL_S);
    //  Two tokens of the same login differ by their jti.
    cd_jwt_claims_t other;
    assert_int_equal(cd_jwt_claims_init(&other, 42, "admin", claims.fam, NOW, CD_JWT_TTL_S), 0);
    assert_string_not_equal(other.jti, claims.jti);
    //  A forged token with the same claims text verifies too.
    s_expect(s_forge(s_hs256, s_claims), CD_JWT_OK);
    s_expect(s_forge("{\"alg\":\"HS256\"}", s_claims), CD_JWT_OK);
    s_expect(s_forge(" { \"typ\" : \"jwt\" , \"alg\" : \"HS256\" } ", s_claims), CD_JWT_OK);
}

static void
test_jwt_alg_none_is_refused_however_it_is_signed(void **state)
{
    char token[1024];
    char header[64], payload[512];
    const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    sodium_bin2base64(header, sizeof header, (const unsigned char *)none, strlen(none), B64);
    sodium_bin2base64(payload, sizeof payload, (const unsigned char *)s_claims, strlen(s_claims),
                      B64);
    //  The classic unsigned form: empty signature.
    snprintf(token, sizeof token, "%s.%s.", header, payload);
    s_expect(token, CD_JWT_EALG_NONE);
    //  Without the last dot.
    snprintf(token, sizeof token, "%s.%s", header, payload);
    s_expect(token, CD_JWT_EFORMAT);
    //  With a correct HMAC: still none.
    s_expect(s_forge(none, s_claims), CD_JWT_EALG_NONE);
    s_expect(s_forge("{\"alg\":\"None\"}", s_claims), CD_JWT_EALG_NONE);
    s_expect(s_forge("{\"alg\":\"NONE\",\"typ\":\"JWT\"}", s_claims), CD_JWT_EALG_NONE);
}

static void
test_jwt_other_algorithms_are_refused(void **state)
{
    s_expect(s_forge("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", s_claims), CD_JWT_EALG);
    s_expect(s_forge("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", s_claims), CD_JWT_EALG);
    s_expect(s_forge("{\"alg\":\"hs256\"}", s_claims), CD_JWT_EALG);
    s_expect(s_forge("{\"alg\":\"HS256 \"}", s_claims), CD_JWT_EALG);
    s_expect(s_forge("{\"alg\":\"HS\\u0032\\u0035\\u0036\"}", s_claims), CD_JWT_EALG);
    s_expect(s_forge("{\"typ\":\"JWT\"}", s_claims), CD_JWT_EALG);
    s_expect(s_forge("{}", s_claims), CD_JWT_EALG);
}

static void
test_jwt_header_must_be_alg_and_typ_only(void **state)
{
    static const char *const bad[] = {
        "{\"alg\":\"HS256\",\"kid\":\"1\"}",
        "{\"alg\":\"HS256\",\"jku\":\"https://evil/\"}",
        "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"HS256\",\"typ\":\"JOSE\"}",
        "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"typ\":\"JWT\"}",
        "{\"alg\":256}",
        "{\"alg\":\"HS256\"",
        "{\"alg\":\"HS256\"}x",
        "{\"alg\":\"HS256\",}",
        "[\"HS256\"]",
        "\"HS256\"",
        "not json",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cd_jwt_err_t got = s_verify(s_forge(bad[i], s_claims));
        //  An empty header decodes to nothing: a format error.
        cd_jwt_err_t expected = bad[i][0] ? CD_JWT_EHEADER : CD_JWT_EFORMAT;
        if (got != expected) {
            fail_msg("header %s: got %s", bad[i], cd_jwt_errname(got));
        }
    }
}

static void
test_jwt_tampered_payload_or_signature_is_refused(void **state)
{
    char token[1024];
    snprintf(token, sizeof token, "%s", s_forge(s_hs256, s_claims));
    s_expect(token, CD_JWT_OK);
    char *dot1 = strchr(token, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    //  Another payload (sub 1, an admin) under the old signature.
    const char *evil = "{\"sub\":\"1\",\"role\":\"admin\",\"jti\":\"abc_DEF-123\","
                       "\"fam\":\"6f1c2a4e-8d4b-4a51-9a63-0b1c2d3e4f50\","
                       "\"iat\":1699999990,\"exp\":1700000890}";
    char evil_b64[512];
    sodium_bin2base64(evil_b64, sizeof evil_b64, (const unsigned char *)evil, strlen(evil), B64);
    char tampered[2048];
    snprintf(tampered, sizeof tampered, "%.*s.%s%s", (int)(dot1 - token), token, evil_b64, dot2);
    s_expect(tampered, CD_JWT_ESIGNATURE);
    //  One character of the signature changed (still canonical base64url).
    snprintf(tampered, sizeof tampered, "%s", token);
    char *sig = tampered + (dot2 - token) + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    s_expect(tampered, CD_JWT_ESIGNATURE);
    //  The signature cut short, extended, or empty.
    snprintf(tampered, sizeof tampered, "%.*s", (int)strlen(token) - 1, token);
    s_expect(tampered, CD_JWT_ESIGNATURE);
    snprintf(tampered, sizeof tampered, "%sAAAA", token);
    s_expect(tampered, CD_JWT_ESIGNATURE);
    snprintf(tampered, sizeof tampered, "%.*s", (int)(dot2 - token) + 1, token);
    s_expect(tampered, CD_JWT_ESIGNATURE);
    //  The right token under another key.
    uint8_t other_secret[CD_JWT_KEY_BYTES];
    cd_jwt_keygen(other_secret);
    cd_jwt_key_t other;
    cd_jwt_key_init(&other, other_secret);
    cd_jwt_claims_t claims;
    assert_int_equal(cd_jwt_verify(&other, token, strlen(token), NOW, 0, &claims),
                     CD_JWT_ESIGNATURE);
    //  A wiped key verifies nothing.
    cd_jwt_key_wipe(&other);
    cd_jwt_key_wipe(&other);
    assert_int_equal(cd_jwt_verify(&other, token, strlen(token), NOW, 0, &claims),
                     CD_JWT_ESIGNATURE);
}

static const char *
s_with_times(int64_t iat, int64_t exp)
{
    static char payload[512];
    snprintf(payload, sizeof payload,
             "{\"sub\":\"42\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":%lld,"
             "\"exp\":%lld}",
             (long long)iat, (long long)exp);
    return s_forge(s_hs256, payload);
}

static void
test_jwt_expiry_and_future_iat_with_and_without_leeway(void **state)
{
    cd_jwt_claims_t claims;
    const char *token = s_with_times(NOW - 900, NOW);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, 0, &claims), CD_JWT_EEXPIRED);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW - 1, 0, &claims), CD_JWT_OK);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW + 4, 5, &claims), CD_JWT_OK);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW + 5, 5, &claims),
                     CD_JWT_EEXPIRED);
    token = s_with_times(0, 1);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, 0, &claims), CD_JWT_EEXPIRED);
    //  Issued one second ahead of this clock.
    token = s_with_times(NOW + 1, NOW + 900);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, 0, &claims), CD_JWT_EFUTURE);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, 1, &claims), CD_JWT_OK);
    //  The largest times do not overflow anything.
    token = s_with_times(NOW, INT64_MAX);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, 1000, &claims), CD_JWT_OK);
    token = s_with_times(INT64_MAX, INT64_MAX);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, 1000, &claims),
                     CD_JWT_EFUTURE);
    //  A negative leeway is a caller's mistake, refused rather than honoured.
    token = s_with_times(NOW, NOW + 900);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, -1, &claims), CD_JWT_EFORMAT);
}

static void
test_jwt_each_missing_claim_has_its_own_verdict(void **state)
{
    static const struct {
        const char *payload;
        cd_jwt_err_t expected;
    } cases[] = {
        {"{\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}",
         CD_JWT_ENOSUB},
        {"{\"sub\":\"1\",\"role\":\"user\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}",
         CD_JWT_ENOJTI},
        {"{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1}", CD_JWT_ENOEXP},
        {"{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"exp\":2000000000}",
         CD_JWT_ENOIAT},
        {"{\"sub\":\"1\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}",
         CD_JWT_ENOROLE},
        {"{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"iat\":1,\"exp\":2000000000}",
         CD_JWT_ENOFAM},
        {"{}", CD_JWT_ENOSUB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_expect(s_forge(s_hs256, cases[i].payload), cases[i].expected);
    }
}

static void
test_jwt_claims_of_the_wrong_form_are_refused(void **state)
{
    static const char *const bad[] = {
        //  sub: a number, zero, negative, leading zero, too big, escaped
        "{\"sub\":42,\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}",
        "{\"sub\":\"0\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":"
        "2000000000}",
        "{\"sub\":\"-1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":"
        "2000000000}",
        "{\"sub\":\"042\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":"
        "2000000000}",
        "{\"sub\":\"9223372036854775808\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,"
        "\"exp\":2000000000}",
        "{\"sub\":\"4\\u0032\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":"
        "2000000000}",
        //  role: upper case, too long, empty, not a string
        "{\"sub\":\"1\",\"role\":\"Admin\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":"
        "2000000000}",
        "{\"sub\":\"1\",\"role\":\"abcdefghijklmnopq\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,"
        "\"exp\":2000000000}",
        "{\"sub\":\"1\",\"role\":\"\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}",
        "{\"sub\":\"1\",\"role\":null,\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}",
        //  jti / fam: foreign characters, too long
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"a "
        "b\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f/../x\",\"iat\":1,"
        "\"exp\":2000000000}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":"
        "\"12345678901234567890123456789012345678901234567890123456789012345\",\"iat\":1,"
        "\"exp\":2000000000}",
        //  times: a string, a fraction, an exponent, negative, too big
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":"
        "\"2000000000\"}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000."
        "5}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2e9}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":-1,\"exp\":"
        "2000000000}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,"
        "\"exp\":9223372036854775808}",
        //  a claim twice (a second exp that would extend the first)
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":1,"
        "\"exp\":2000000000}",
        //  nested unknown values, broken syntax, not an object
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000,"
        "\"aud\":[\"x\"]}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000,"
        "\"x\":{}}",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000",
        "{\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}"
        "}",
        "{\"sub\":\"1\" \"role\":\"user\"}",
        "[1]",
        "null",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cd_jwt_err_t got = s_verify(s_forge(s_hs256, bad[i]));
        if (got != CD_JWT_EPAYLOAD) {
            fail_msg("payload %s: got %s", bad[i], cd_jwt_errname(got));
        }
    }
}

static void
test_jwt_unknown_scalar_claims_are_ignored(void **state)
{
    const char *payload =
        "{\"nbf\":1,\"aud\":\"cadre\",\"flag\":true,\"off\":false,\"n\":null,\"f\":-1.5e3,"
        "\"s\":\"esc\\\"aped \\u00e9\\n\",\"sub\":\"7\",\"role\":\"user\",\"jti\":\"j\","
        "\"fam\":\"f\",\"iat\":1,\"exp\":2000000000}";
    cd_jwt_claims_t claims;
    const char *token = s_forge(s_hs256, payload);
    assert_int_equal(cd_jwt_verify(s_key, token, strlen(token), NOW, 0, &claims), CD_JWT_OK);
    assert_int_equal(claims.sub, 7);
}

static void
test_jwt_garbage_and_every_truncation_is_refused(void **state)
{
    static const char *const garbage[] = {
        "",
        ".",
        "..",
        "...",
        "a",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "Bearer x.y.z",
        "%%%.%%%.%%%",
        "eyJhbGciOiJIUzI1NiJ9..",
        ".eyJ9.",
        "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        cd_jwt_err_t got = s_verify(garbage[i]);
        assert_int_not_equal(got, CD_JWT_OK);
    }
    cd_jwt_claims_t claims;
    assert_int_equal(cd_jwt_verify(s_key, NULL, 0, NOW, 0, &claims), CD_JWT_EFORMAT);
    char token[CD_JWT_MAX_LEN + 1];
    snprintf(token, sizeof token, "%s", s_forge(s_hs256, s_claims));
    size_t len = strlen(token);
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_not_equal(cd_jwt_verify(s_key, token, cut, NOW, 0, &claims), CD_JWT_OK);
    }
    assert_int_equal(cd_jwt_verify(s_key, token, len, NOW, 0, &claims), CD_JWT_OK);
    //  Too long to be ours, even if well-formed.
    char payload[1200];
    int n = snprintf(payload, sizeof payload, "{\"pad\":\"");
    memset(payload + n, 'x', 900);
    snprintf(payload + n + 900, sizeof payload - (size_t)n - 900,
             "\",\"sub\":\"1\",\"role\":\"user\",\"jti\":\"j\",\"fam\":\"f\",\"iat\":1,"
             "\"exp\":2000000000}");
    s_expect(s_forge(s_hs256, payload), CD_JWT_EFORMAT);
    //  Base64url that is not canonical: unused bits set ("e30" is "{}",
    //  "e31" the same bytes with a stray bit), a length of 1 modulo 4,
    //  padding, standard base64's alphabet.
    char header[64];
    sodium_bin2base64(header, sizeof header, (const unsigned char *)s_hs256, strlen(s_hs256), B64);
    s_expect(s_forge_raw(header, "e30"), CD_JWT_ENOSUB);
    s_expect(s_forge_raw(header, "e31"), CD_JWT_EFORMAT);
    s_expect(s_forge_raw(header, "e30AA"), CD_JWT_EFORMAT);
    s_expect(s_forge_raw(header, "e30="), CD_JWT_EFORMAT);
    s_expect(s_forge_raw(header, "e+0"), CD_JWT_EFORMAT);
    //  {"alg":"HS256"} and a blank: 4 unused bits in the last character.
    s_expect(s_forge_raw("eyJhbGciOiJIUzI1NiJ9IA", "e30"), CD_JWT_ENOSUB);
    s_expect(s_forge_raw("eyJhbGciOiJIUzI1NiJ9IB", "e30"), CD_JWT_EFORMAT);
    char std[CD_JWT_MAX_LEN + 8];
    snprintf(std, sizeof std, "%s=", token);
    s_expect(std, CD_JWT_ESIGNATURE);
}

static void
test_jwt_sign_refuses_claims_verify_would_refuse(void **state)
{
    cd_jwt_claims_t claims;
    assert_int_equal(cd_jwt_claims_init(&claims, 0, "user", "f", NOW, 900), CD_EINVAL);
    assert_int_equal(cd_jwt_claims_init(&claims, 1, "User", "f", NOW, 900), CD_EINVAL);
    assert_int_equal(cd_jwt_claims_init(&claims, 1, "user", "a\"b", NOW, 900), CD_EINVAL);
    assert_int_equal(cd_jwt_claims_init(&claims, 1, "user", "", NOW, 900), CD_EINVAL);
    assert_int_equal(cd_jwt_claims_init(&claims, 1, NULL, "f", NOW, 900), CD_EINVAL);
    assert_int_equal(cd_jwt_claims_init(&claims, 1, "user", "f", -1, 900), CD_EINVAL);
    assert_int_equal(cd_jwt_claims_init(&claims, 1, "user", "f", INT64_MAX, 900), CD_EINVAL);
    assert_int_equal(cd_jwt_claims_init(&claims, 1, "user", "f", NOW, 900), 0);
    char token[CD_JWT_MAX_LEN + 1];
    assert_int_equal(cd_jwt_sign(s_key, &claims, token, 40, NULL), CD_ETOOBIG);
    cd_jwt_claims_t bad = claims;
    snprintf(bad.jti, sizeof bad.jti, "not ok");
    assert_int_equal(cd_jwt_sign(s_key, &bad, token, sizeof token, NULL), CD_EINVAL);
    bad = claims;
    bad.exp = -5;
    assert_int_equal(cd_jwt_sign(s_key, &bad, token, sizeof token, NULL), CD_EINVAL);
}

static void
test_jwt_every_verdict_has_a_name_and_text(void **state)
{
    for (int e = CD_JWT_OK; e <= CD_JWT_EFUTURE; e++) {
        assert_string_not_equal(cd_jwt_errname((cd_jwt_err_t)e), "UNKNOWN");
        assert_true(strlen(cd_jwt_strerror((cd_jwt_err_t)e)) > 0);
    }
    assert_string_equal(cd_jwt_errname(CD_JWT_EALG_NONE), "EALG_NONE");
    assert_string_equal(cd_jwt_errname((cd_jwt_err_t)99), "UNKNOWN");
}

//  Not a pass/fail figure (sanitizer builds are slow): prints the rate so
//  the cost on the HTTP thread is visible; bench/bench_auth measures it in
//  an optimised build.
static void
test_jwt_verifications_per_second(void **state)
{
    cd_jwt_claims_t claims;
    assert_int_equal(cd_jwt_claims_init(&claims, 42, "user", "6f1c2a4e-8d4b-4a51-9a63-0b1c2d3e4f50",
                                        NOW, CD_JWT_TTL_S),
                     0);
    char token[CD_JWT_MAX_LEN + 1];
    size_t len = 0;
    assert_int_equal(cd_jwt_sign(s_key, &claims, token, sizeof token, &len), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n = 20000;
    for (int i = 0; i < n; i++) {
        cd_jwt_claims_t got;
        assert_int_equal(cd_jwt_verify(s_key, token, len, NOW, 0, &got), CD_JWT_OK);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("jwt: %d verifications of a %zu-byte token in %.3f s: %.0f/s (%.2f us each)\n", n, len,
           s, n / s, s / n * 1e6);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_signed_token_verifies_with_its_claims),
        cmocka_unit_test(test_jwt_alg_none_is_refused_however_it_is_signed),
        cmocka_unit_test(test_jwt_other_algorithms_are_refused),
        cmocka_unit_test(test_jwt_header_must_be_alg_and_typ_only),
        cmocka_unit_test(test_jwt_tampered_payload_or_signature_is_refused),
        cmocka_unit_test(test_jwt_expiry_and_future_iat_with_and_without_leeway),
        cmocka_unit_test(test_jwt_each_missing_claim_has_its_own_verdict),
        cmocka_unit_test(test_jwt_claims_of_the_wrong_form_are_refused),
        cmocka_unit_test(test_jwt_unknown_scalar_claims_are_ignored),
        cmocka_unit_test(test_jwt_garbage_and_every_truncation_is_refused),
        cmocka_unit_test(test_jwt_sign_refuses_claims_verify_would_refuse),
        cmocka_unit_test(test_jwt_every_verdict_has_a_name_and_text),
        cmocka_unit_test(test_jwt_verifications_per_second),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
