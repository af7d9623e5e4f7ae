/*  cd_curve: CurveZMQ keys and the tcp security policy (see cd_curve.h).

    Interface: cd_curve_key_valid, cd_curve_key_decode, cd_curve_key_encode,
    cd_curve_public_of, cd_curve_keypair, cd_curve_key_list,
    cd_curve_endpoint_is_loopback, cd_curve_keygen_command. */
#include "cd_curve.h"
#include "cd_error.h"

#include <czmq.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

int
cd_curve_key_decode(const char *text, cd_curve_key_t *key)
{
    //  zmq_z85_decode checks the alphabet but reads a NUL-terminated string
    //  of any length: check the length first.
    if (!text || strnlen(text, CD_CURVE_KEY_LEN + 1) != CD_CURVE_KEY_LEN ||
        !zmq_z85_decode(key->bytes, text)) {
        return CD_EINVAL;
    }
    return 0;
}

bool
cd_curve_key_valid(const char *text)
{
    cd_curve_key_t key;
    bool valid = cd_curve_key_decode(text, &key) == 0;
    sodium_memzero(&key, sizeof key);
    return valid;
}

void
cd_curve_key_encode(const cd_curve_key_t *key, char out[CD_CURVE_KEY_LEN + 1])
{
    char *done = zmq_z85_encode(out, key->bytes, CD_CURVE_KEY_BYTES);
    assert(done);
    (void)done;
}

int
cd_curve_public_of(const char *secret, char out[CD_CURVE_KEY_LEN + 1])
{
    if (!cd_curve_key_valid(secret) || zmq_curve_public(out, secret) != 0) {
        return CD_EINVAL;
    }
    return 0;
}

int
cd_curve_keypair(char public_key[CD_CURVE_KEY_LEN + 1], char secret_key[CD_CURVE_KEY_LEN + 1])
{
    if (!zsys_has_curve()) {
        return CD_ENOSYS;
    }
    zcert_t *cert = zcert_new();
    if (!cert) {
        return CD_ENOSYS;
    }
    memcpy(public_key, zcert_public_txt(cert), CD_CURVE_KEY_LEN + 1);
    memcpy(secret_key, zcert_secret_txt(cert), CD_CURVE_KEY_LEN + 1);
    zcert_destroy(&cert);
    return 0;
}

int
cd_curve_key_list(const char *text, cd_curve_key_t **keys, size_t *n, size_t *bad)
{
    *keys = NULL;
    *n = 0;
    if (!text || !*text) {
        return 0;
    }
    char *copy = strdup(text);
    assert(copy);
    //  At most one key per comma-separated item.
    size_t cap = 1;
    for (const char *c = text; *c; c++) {
        cap += *c == ',';
    }
    cd_curve_key_t *out = calloc(cap, sizeof *out);
    assert(out);
    size_t count = 0, position = 0;
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t') {
            item++;
        }
        size_t len = strlen(item);
        while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t')) {
            item[--len] = '\0';
        }
        if (len == 0) {
            continue;
        }
        if (cd_curve_key_decode(item, &out[count]) != 0) {
            if (bad) {
                *bad = position;
            }
            rc = CD_EINVAL;
            break;
        }
        count++;
        position++;
    }
    free(copy);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *keys = out;
    *n = count;
    return 0;
}

bool
cd_curve_endpoint_is_loopback(const char *endpoint)
{
    if (!endpoint || strncmp(endpoint, "tcp://", 6) != 0) {
        return false;
    }
    const char *host = endpoint + 6;
    const char *colon = strrchr(host, ':');
    if (!colon || colon == host) {
        return false;
    }
    size_t len = (size_t)(colon - host);
    if (host[0] == '[' && len >= 2 && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    char name[INET6_ADDRSTRLEN + 1];
    if (len >= sizeof name) {
        return false;
    }
    memcpy(name, host, len);
    name[len] = '\0';
    if (strcmp(name, "localhost") == 0 || strcmp(name, "lo") == 0) {
        return true;
    }
    struct in_addr v4;
    if (inet_pton(AF_INET, name, &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    struct in6_addr v6;
    if (inet_pton(AF_INET6, name, &v6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    }
    return false;
}

//  Writes text and a newline to a new file path with mode; refuses an
//  existing file. Returns 0 or errno.
static int
s_write_new(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        return errno;
    }
    //  The umask may have taken bits away; the mode asked for is exact.
    int rc = fchmod(fd, mode) == 0 ? 0 : errno;
    size_t len = strlen(text);
    if (rc == 0 && (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1)) {
        rc = errno ? errno : EIO;
    }
    if (close(fd) != 0 && rc == 0) {
        rc = errno;
    }
    if (rc != 0) {
        unlink(path);
    }
    return rc;
}

int
cd_curve_keygen_command(char **args, size_t n_args, FILE *out, FILE *err)
{
    if (n_args > 1 || (n_args == 1 && !*args[0])) {
        fprintf(err, "usage: cadred keygen [PATH]   (writes PATH.key and PATH.pub)\n");
        return 2;
    }
    char public_key[CD_CURVE_KEY_LEN + 1], secret_key[CD_CURVE_KEY_LEN + 1];
    if (cd_curve_keypair(public_key, secret_key) != 0) {
        fprintf(err, "cadred keygen: this ZeroMQ has no CurveZMQ support\n");
        return 1;
    }
    int code = 0;
    if (n_args == 0) {
        fprintf(out, "public-key %s\nsecret-key %s\n", public_key, secret_key);
    } else {
        char *key_path = zsys_sprintf("%s.key", args[0]);
        char *pub_path = zsys_sprintf("%s.pub", args[0]);
        int rc = s_write_new(key_path, secret_key, 0600);
        const char *failed = key_path;
        if (rc == 0) {
            rc = s_write_new(pub_path, public_key, 0644);
            failed = pub_path;
            if (rc != 0) {
                unlink(key_path);
            }
        }
        if (rc != 0) {
            fprintf(err, "cadred keygen: cannot write %s: %s\n", failed, strerror(rc));
            code = 1;
        } else {
            fprintf(out, "public-key %s\nwrote %s (secret, mode 0600) and %s\n", public_key,
                    key_path, pub_path);
        }
        zstr_free(&key_path);
        zstr_free(&pub_path);
    }
    sodium_memzero(secret_key, sizeof secret_key);
    return code;
}
