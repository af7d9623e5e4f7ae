/*  bench_auth: what the security primitives cost on this machine.

    Scenarios (each run --runs times; the median is reported):
      argon2id password hash    cd_password_hash, INTERACTIVE limits: the
                                bound on logins per second per core
      argon2id password verify  cd_password_verify of a right password
      vault KEK derivation      cd_vault_unlock, MODERATE limits (init and
                                unlock cost this once each)
      JWT verify                cd_jwt_verify of a 15-minute token: the
                                per-request cost of Bearer authentication
      JWT sign                  cd_jwt_sign
      API key hash              cd_token_hash (keyed BLAKE2b): the
                                per-request cost of X-API-Key before its
                                lookup
      TOTP verify               cd_totp_verify (three HMAC-SHA-1)
    The fast ones run for --ms milliseconds each and report operations per
    second and microseconds per operation; the slow ones report
    milliseconds per operation.

    Output: a table on stderr and one JSON object on stdout. */
#include "bench_stats.h"
#include "cd_jwt.h"
#include "cd_password.h"
#include "cd_token.h"
#include "cd_totp.h"
#include "cd_vault.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_RUNS 50

typedef struct {
    int runs; //  --runs
    int ms;   //  --ms: time per run of a fast scenario
} s_opts_t;

typedef struct {
    const char *name;         //  scenario
    bool slow;                //  reported in ms per operation
    double value[S_MAX_RUNS]; //  per run: ops/s (fast) or ms/op (slow)
} s_result_t;

static const char s_password[] = "correct horse battery staple";

//  Runs op for about ms milliseconds; returns operations per second.
static double
s_rate(int ms, void (*op)(void *), void *arg)
{
    int64_t start = bench_now_ns();
    int64_t deadline = start + (int64_t)ms * 1000000;
    long n = 0;
    int64_t now = start;
    while (now < deadline) {
        for (int i = 0; i < 256; i++) {
            op(arg);
        }
        n += 256;
        now = bench_now_ns();
    }
    return (double)n / ((double)(now - start) / 1e9);
}

typedef struct {
    cd_jwt_key_t key;                         //  signing key
    char token[CD_JWT_MAX_LEN + 1];           //  a valid token
    size_t len;                               //  its length
    cd_jwt_claims_t claims;                   //  its claims
    int64_t now;                              //  the time it is checked at
    uint8_t hash_key[CD_TOKEN_KEY_BYTES];     //  token hashing key
    char api_key[CD_TOKEN_LEN + 1];           //  an API key
    char totp_secret[CD_TOTP_SECRET_LEN + 1]; //  a TOTP secret
    char totp_code[CD_TOTP_DIGITS + 1];       //  its code now
} s_fast_t;

static void
s_jwt_verify(void *arg)
{
    s_fast_t *f = (s_fast_t *)arg;
    cd_jwt_claims_t claims;
    if (cd_jwt_verify(&f->key, f->token, f->len, f->now, 0, &claims) != CD_JWT_OK) {
        abort();
    }
}

static void
s_jwt_sign(void *arg)
{
    s_fast_t *f = (s_fast_t *)arg;
    char token[CD_JWT_MAX_LEN + 1];
    if (cd_jwt_sign(&f->key, &f->claims, token, sizeof token, NULL) != 0) {
        abort();
    }
}

static void
s_token_hash(void *arg)
{
    s_fast_t *f = (s_fast_t *)arg;
    uint8_t hash[CD_TOKEN_HASH_BYTES];
    if (cd_token_hash(f->hash_key, f->api_key, CD_TOKEN_LEN, hash) != 0) {
        abort();
    }
}

static void
s_totp_verify(void *arg)
{
    s_fast_t *f = (s_fast_t *)arg;
    int64_t step = 0;
    if (cd_totp_verify(f->totp_secret, f->totp_code, f->now, -1, &step) != 0) {
        abort();
    }
}

static double
s_ms_since(int64_t start)
{
    return (double)(bench_now_ns() - start) / 1e6;
}

static void
s_usage(void)
{
    fprintf(stderr, "usage: bench_auth [--runs N (1..%d, default 3)] [--ms MS (default 1000)]\n",
            S_MAX_RUNS);
    exit(2);
}

int
main(int argc, char **argv)
{
    s_opts_t opt = {3, 1000};
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--runs") == 0 && a + 1 < argc) {
            opt.runs = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--ms") == 0 && a + 1 < argc) {
            opt.ms = atoi(argv[++a]);
        } else {
            s_usage();
        }
    }
    if (opt.runs < 1 || opt.runs > S_MAX_RUNS || opt.ms < 1) {
        s_usage();
    }
    if (sodium_init() < 0) {
        return 1;
    }
    s_fast_t *f = (s_fast_t *)calloc(1, sizeof *f);
    uint8_t secret[CD_JWT_KEY_BYTES];
    cd_jwt_keygen(secret);
    cd_jwt_key_init(&f->key, secret);
    f->now = 1700000000;
    if (cd_jwt_claims_init(&f->claims, 42, "user", "6f1c2a4e-8d4b-4a51-9a63-0b1c2d3e4f50", f->now,
                           CD_JWT_TTL_S) != 0 ||
        cd_jwt_sign(&f->key, &f->claims, f->token, sizeof f->token, &f->len) != 0) {
        return 1;
    }
    cd_token_keygen(f->hash_key);
    cd_token_new(CD_TOKEN_API_KEY, f->api_key);
    cd_totp_secret_new(f->totp_secret);
    if (cd_totp_code(f->totp_secret, f->now, f->totp_code) != 0) {
        return 1;
    }
    char hash[CD_PASSWORD_HASH_MAX];
    if (cd_password_hash(s_password, strlen(s_password), hash) != 0) {
        return 1;
    }
    cd_vault_record_t record;
    cd_vault_t *vault = NULL;
    if (cd_vault_create(s_password, strlen(s_password), NULL, &record, &vault) != 0) {
        return 1;
    }
    cd_vault_destroy(&vault);

    s_result_t results[] = {
        {"argon2id password hash", true, {0}},
        {"argon2id password verify", true, {0}},
        {"vault KEK derivation", true, {0}},
        {"JWT verify", false, {0}},
        {"JWT sign", false, {0}},
        {"API key hash", false, {0}},
        {"TOTP verify", false, {0}},
    };
    size_t n_results = sizeof results / sizeof results[0];
    bench_cpu_t cpu0 = bench_cpu_read();
    for (int r = 0; r < opt.runs; r++) {
        fprintf(stderr, "\rrun %d/%d ...", r + 1, opt.runs);
        int64_t t = bench_now_ns();
        char out[CD_PASSWORD_HASH_MAX];
        if (cd_password_hash(s_password, strlen(s_password), out) != 0) {
            return 1;
        }
        results[0].value[r] = s_ms_since(t);
        t = bench_now_ns();
        if (!cd_password_verify(hash, s_password, strlen(s_password))) {
            return 1;
        }
        results[1].value[r] = s_ms_since(t);
        t = bench_now_ns();
        if (cd_vault_unlock(&record, s_password, strlen(s_password), &vault) != 0) {
            return 1;
        }
        results[2].value[r] = s_ms_since(t);
        cd_vault_destroy(&vault);
        results[3].value[r] = s_rate(opt.ms, s_jwt_verify, f);
        results[4].value[r] = s_rate(opt.ms, s_jwt_sign, f);
        results[5].value[r] = s_rate(opt.ms, s_token_hash, f);
        results[6].value[r] = s_rate(opt.ms, s_totp_verify, f);
    }
    fprintf(stderr, "\r%-30s\r", "");
    char machine[128];
    bench_cpu_report(cpu0, machine, sizeof machine);
    fprintf(stderr,
            "medians of %d runs; argon2id password t=%u m=%u MiB, vault t=%llu m=%llu MiB\n",
            opt.runs, CD_PASSWORD_OPSLIMIT, CD_PASSWORD_MEMLIMIT >> 20, CD_VAULT_OPSLIMIT,
            CD_VAULT_MEMLIMIT >> 20);
    printf("{\"bench\":\"auth\",\"runs\":%d,\"password\":{\"opslimit\":%u,\"memlimit\":%u},"
           "\"vault\":{\"opslimit\":%llu,\"memlimit\":%llu},\"jwt_len\":%zu,\"results\":[",
           opt.runs, CD_PASSWORD_OPSLIMIT, CD_PASSWORD_MEMLIMIT, CD_VAULT_OPSLIMIT,
           CD_VAULT_MEMLIMIT, f->len);
    for (size_t i = 0; i < n_results; i++) {
        double median = bench_median(results[i].value, opt.runs);
        if (results[i].slow) {
            fprintf(stderr, "%-26s %10.1f ms/op  %10.1f ops/s\n", results[i].name, median,
                    1000.0 / median);
            printf("%s{\"name\":\"%s\",\"ms_per_op\":%.2f}", i ? "," : "", results[i].name, median);
        } else {
            fprintf(stderr, "%-26s %10.2f us/op  %10.0f ops/s\n", results[i].name, 1e6 / median,
                    median);
            printf("%s{\"name\":\"%s\",\"ops_per_s\":%.0f,\"us_per_op\":%.3f}", i ? "," : "",
                   results[i].name, median, 1e6 / median);
        }
    }
    printf("],%s}\n", machine);
    cd_jwt_key_wipe(&f->key);
    free(f);
    return 0;
}
