/*  cd_authboot: keys, the first admin and the bans at start-up (see
    cd_authboot.h).

    Two nodes starting together on an empty database both see no user:
    both hash a password and insert `admin`, the second insert fails on
    the unique username, and that node goes on (the first one's password
    holds). A generated password is written before the user is created, so
    a password that was never shown never protects an account.

    Interface: cd_authboot_run, cd_authboot_fini. */
#include "cd_authboot.h"

#include "cd_error.h"
#include "cd_log.h"
#include "cd_password.h"
#include "cd_q_users.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_GENERATED_BYTES 18 //  a generated password: 144 bits, 24 base64url characters

static char *
s_dberr(cd_db_t *db, const char *what, int rc)
{
    const cd_db_error_t *err = cd_db_error(db);
    return zsys_sprintf("%s: %s", what, err && err->message ? err->message : cd_strerror(rc));
}

//  One key: ours if the installation had none.
static int
s_key(cd_db_t *db, const char *name, const uint8_t candidate[32], uint8_t out[32], char **errmsg)
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, candidate, 32);
    char *stored = NULL;
    int rc = cd_q_auth_key(db, name, hex, &stored);
    sodium_memzero(hex, sizeof hex);
    size_t len = 0;
    if (rc == 0 &&
        (sodium_hex2bin(out, 32, stored, strlen(stored), NULL, &len, NULL) != 0 || len != 32)) {
        rc = CD_EPROTO;
    }
    if (stored) {
        sodium_memzero(stored, strlen(stored));
        free(stored);
    }
    if (rc != 0) {
        *errmsg = s_dberr(db, name, rc);
    }
    return rc;
}

//  Writes the generated password to <data dir>/admin-password, 0600.
static int
s_write_password(const char *data_dir, const char *password, char **path_out, char **errmsg)
{
    char *path = zsys_sprintf("%s/%s", data_dir, CD_AUTHBOOT_PASSWORD_FILE);
    //  O_TRUNC: a file left by a start that failed before creating the user
    //  named a password that protects nothing.
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    size_t len = strlen(password);
    bool ok = fd >= 0 && fchmod(fd, 0600) == 0 && write(fd, password, len) == (ssize_t)len &&
              write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int err = errno;
    if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        *errmsg = zsys_sprintf("cannot write %s: %s", path, strerror(err));
        zstr_free(&path);
        return CD_EIO;
    }
    *path_out = path;
    return 0;
}

static int
s_admin(cd_db_t *db, const char *data_dir, const char *given, cd_authboot_t *self, char **errmsg)
{
    int64_t users = 0;
    int rc = cd_db_query_int64(db, "SELECT count(*) FROM users", 0, NULL, &users);
    if (rc != 0) {
        *errmsg = s_dberr(db, "users", rc);
        return rc;
    }
    if (users > 0) {
        return 0;
    }
    char generated[64] = "";
    const char *password = given;
    char *path = NULL;
    if (given) {
        const char *why = NULL;
        if (cd_password_check_policy(given, strlen(given), &why) != 0) {
            *errmsg = zsys_sprintf("CADRE_ADMIN_PASSWORD: %s", why ? why : "refused");
            return CD_ECONFIG;
        }
    } else {
        uint8_t bytes[S_GENERATED_BYTES];
        randombytes_buf(bytes, sizeof bytes);
        sodium_bin2base64(generated, sizeof generated, bytes, sizeof bytes,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_memzero(bytes, sizeof bytes);
        password = generated;
        rc = s_write_password(data_dir, generated, &path, errmsg);
        if (rc != 0) {
            sodium_memzero(generated, sizeof generated);
            return rc;
        }
    }
    char hash[CD_PASSWORD_HASH_MAX];
    rc = cd_password_hash(password, strlen(password), hash);
    char *row = NULL;
    if (rc == 0) {
        rc = cd_q_users_insert(db, CD_AUTHBOOT_ADMIN, hash, "admin", &row);
    }
    free(row);
    const cd_db_error_t *err = cd_db_error(db);
    if (rc == CD_EDB && err && streq(err->sqlstate, "23505")) {
        rc = 0; //  another node created it first: its password holds
        if (path) {
            unlink(path);
        }
    } else if (rc != 0) {
        *errmsg = s_dberr(db, "creating the admin user", rc);
    } else {
        self->admin_created = true;
        if (path) {
            //  Once, as the operator needs it; never again.
            cd_log_warn("node", "created user admin with a generated password", "{s:s, s:s}",
                        "password", generated, "file", path);
        } else {
            cd_log_info("node", "created user admin (password from CADRE_ADMIN_PASSWORD)", NULL);
        }
    }
    sodium_memzero(generated, sizeof generated);
    zstr_free(&path);
    return rc;
}

int
cd_authboot_run(cd_db_t *db, const char *data_dir, const char *admin_password, cd_authboot_t *self,
                char **errmsg)
{
    memset(self, 0, sizeof *self);
    uint8_t candidate[32];
    cd_jwt_keygen(candidate);
    int rc = s_key(db, "jwt", candidate, self->jwt_secret, errmsg);
    if (rc == 0) {
        cd_token_keygen(candidate);
        rc = s_key(db, "token_hash", candidate, self->token_key, errmsg);
    }
    sodium_memzero(candidate, sizeof candidate);
    if (rc != 0) {
        return rc;
    }
    cd_jwt_key_init(&self->jwt, self->jwt_secret);
    rc = s_admin(db, data_dir, admin_password, self, errmsg);
    if (rc != 0) {
        return rc;
    }
    rc = cd_q_bans_live(db, &self->bans);
    if (rc != 0) {
        *errmsg = s_dberr(db, "banned_ips", rc);
    }
    return rc;
}

void
cd_authboot_fini(cd_authboot_t *self)
{
    cd_jwt_key_wipe(&self->jwt);
    sodium_memzero(self->jwt_secret, sizeof self->jwt_secret);
    sodium_memzero(self->token_key, sizeof self->token_key);
    free(self->bans);
    self->bans = NULL;
}
