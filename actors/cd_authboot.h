/*  cd_authboot: what authentication needs before the node serves anyone.

    At start-up, on the node's start-up connection (before any request):
      - the per-installation keys (auth_keys, 0005_security_keys.sql): the
        JWT signing key and the key of the stored token hashes, created by
        the first node that starts (INSERT ... ON CONFLICT DO NOTHING, then
        read back) and shared by every node of the cluster;
      - on a first start (no user at all): the user `admin`, with the
        password given (CADRE_ADMIN_PASSWORD, which must meet the password
        policy), or else a random one, written once to
        <data dir>/admin-password (mode 0600) and logged once;
      - the bans in force, for the HTTP layer's first view of them.
    The keys are handed to the HTTP layer (which verifies tokens) and to
    the api actors (which issue them); they stay in this struct, owned by
    the node, and are wiped when it stops. */
#ifndef CD_ACTORS_AUTHBOOT_H
#define CD_ACTORS_AUTHBOOT_H

#include "cd_db.h"
#include "cd_jwt.h"
#include "cd_token.h"

#include <stdint.h>

#define CD_AUTHBOOT_ADMIN "admin"                  //  the first user's name
#define CD_AUTHBOOT_PASSWORD_FILE "admin-password" //  in the data dir

typedef struct {
    cd_jwt_key_t jwt;                      //  access tokens' key, ready to use
    uint8_t jwt_secret[CD_JWT_KEY_BYTES];  //  the same key, raw (for the HTTP layer)
    uint8_t token_key[CD_TOKEN_KEY_BYTES]; //  key of API-key and refresh-token hashes
    char *bans;                            //  JSON array of the bans in force (owned)
    bool admin_created;                    //  this start created `admin`
} cd_authboot_t;

//  Loads (or creates) the keys, creates `admin` on a first start, reads
//  the bans. admin_password may be NULL (generate one). Returns 0; CD_EDB
//  / CD_ECONN for the database; CD_ECONFIG when admin_password breaks the
//  policy; CD_EIO when the password file cannot be written. *errmsg (caller
//  frees) says why. On failure call cd_authboot_fini all the same.
int cd_authboot_run(cd_db_t *db, const char *data_dir, const char *admin_password,
                    cd_authboot_t *self, char **errmsg);

//  Wipes the keys and frees the bans. Safe twice.
void cd_authboot_fini(cd_authboot_t *self);

#endif
