/*  cd_testnode: a whole node in the test process, for integration tests.

    tn_start runs cd_node_start (the very wiring cadred runs) on a fresh
    database of the PostgreSQL fixture (cd_testpg), a scratch data dir and
    HTTP on 127.0.0.1 port 0; tn_stop stops it. Requests go over real
    HTTP/2 (h2c with prior knowledge) through libcurl, to loopback only,
    each bounded in time.

    Authentication is on, as in cadred: tn_start sets CADRE_ADMIN_PASSWORD
    to TN_ADMIN_PASSWORD (unless extra_env sets it), signs in as `admin`
    once, and tn_request sends every request with that access token unless
    its headers bring their own Authorization or X-API-Key. tn_request_as
    sends as someone else (a token, an API key) or as nobody; tn_login and
    tn_user make the credentials.

    Single-threaded use, like cd_testpg; requests (tn_request) may come
    from any thread. */
#ifndef CD_TESTS_SUPPORT_TESTNODE_H
#define CD_TESTS_SUPPORT_TESTNODE_H

#include "cd_node.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    cd_node_t *node;   //  the running node
    char *conninfo;    //  its database (for tests that check rows with SQL)
    char *data_dir;    //  its scratch data dir
    char base[64];     //  "http://127.0.0.1:<port>"
    char *admin_token; //  an access token of `admin` (tn_start signs in), or NULL
} tn_node_t;

#define TN_ADMIN_PASSWORD "admin-password-of-the-tests" //  what tn_start gives admin
#define TN_USER_PASSWORD "user-password-of-the-tests"   //  what tn_user gives its users

//  Starts a node. extra_env: NULL-terminated "NAME=value" settings added
//  to the defaults (may be NULL). Returns NULL after printing why.
tn_node_t *tn_start(const char *const *extra_env);

//  Stops the node and starts a new one on the same database and data dir
//  (a new HTTP port: base changes). Returns 0 or an error (printed).
int tn_restart(tn_node_t *node, const char *const *extra_env);

//  Stops the node and frees everything. Safe on NULL; nulls *node_p.
void tn_stop(tn_node_t **node_p);

//  A response.
typedef struct {
    long status;     //  HTTP status, 0 if no response came
    long version;    //  2 for HTTP/2
    char *headers;   //  raw header block
    char *body;      //  body, NUL-terminated
    size_t body_len; //  its length
    json_t *json;    //  body parsed as JSON, or NULL
} tn_resp_t;

//  One request over h2c. body may be NULL; headers a NULL-terminated list
//  of "Name: value" (Content-Type: application/json is added for a body
//  unless given). Returns the status (0 if none came).
long tn_request(const tn_node_t *node, const char *method, const char *path, const char *body,
                const char *const *headers, tn_resp_t *out);

//  tn_request with credentials cred instead of admin's token: an access
//  token (sent as Authorization: Bearer), an API key ("cdk_...", sent as
//  X-API-Key), or NULL: anonymous.
long tn_request_as(const tn_node_t *node, const char *cred, const char *method, const char *path,
                   const char *body, const char *const *headers, tn_resp_t *out);

//  tn_request_as from the local address source (another loopback address
//  such as "127.0.0.2": lockouts and bans are per address), or NULL.
long tn_request_from(const tn_node_t *node, const char *source, const char *cred,
                     const char *method, const char *path, const char *body,
                     const char *const *headers, tn_resp_t *out);

//  tn_request_as without extra headers.
long tn_call_as(const tn_node_t *node, const char *cred, tn_resp_t *out, const char *method,
                const char *path, const char *body);

//  Signs in; returns the access token (caller frees), or NULL after
//  printing why. *refresh (if not NULL) gets the refresh token (caller
//  frees).
char *tn_login(const tn_node_t *node, const char *username, const char *password, char **refresh);

//  Creates a user (as admin) with TN_USER_PASSWORD and role ("user" or
//  "admin"), signs in as it, and returns its id; *token gets its access
//  token (caller frees). Returns 0 after printing why on failure.
int64_t tn_user(const tn_node_t *node, const char *username, const char *role, char **token);

//  tn_request without extra headers.
long tn_call(const tn_node_t *node, tn_resp_t *out, const char *method, const char *path,
             const char *body);

void tn_resp_free(tn_resp_t *resp);

//  A response header's value (case-insensitive name), copied into buf; NULL
//  if absent.
const char *tn_header(const tn_resp_t *resp, const char *name, char *buf, size_t size);

//  The error code of an error body, or "".
const char *tn_error_code(const tn_resp_t *resp);

//  Runs SQL on the node's database and returns the first column of the
//  first row (caller frees), or NULL.
char *tn_sql(const tn_node_t *node, const char *sql);

#endif
