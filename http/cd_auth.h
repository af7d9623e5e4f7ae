/*  cd_auth: the authentication and authorisation hook.

    The server calls cd_auth_check once for every request to a route that
    needs it (CD_ROUTE_AUTH or CD_ROUTE_ADMIN; the public routes are
    /health*, /metrics, /openapi.json and login/refresh), after routing and
    before the body is parsed or the handler runs. It reads what it needs
    from the request (Authorization: Bearer, X-API-Key) through the
    accessors of http_internal.h, says allow / 401 / 403, and fills the
    identity handlers then see (it travels to the api actors as the
    request's "u", "a" and "f").

    Everything is decided in the HTTP thread, without a database round
    trip on the hot path:
      - an access token (a JWT, engine/cd_jwt.h) is verified with the
        installation's key, and refused if its login (fam) was revoked
        since it was issued (logout, a reused refresh token, a password or
        role change, a deleted user): the api actors name the revoked
        families to this thread before they answer, and it remembers them
        for the 15 minutes a token can live;
      - an API key is hashed (BLAKE2b) and looked up in a cache of
        hash -> (user, role). A miss parks the request (CD_AUTH_PENDING)
        and asks an api actor (operation auth.key_resolve); the answer
        fills the cache and resumes the request through
        cd__http_after_auth. Deleting a key drops it from the cache before
        the DELETE is answered, so it stops working at once. A lookup that
        was under way when an invalidation arrived is not trusted (a
        generation count) and is asked again. Entries also expire after
        CD_AUTH_KEY_TTL_MS, which bounds how long a key deleted through
        another node of a cluster keeps working here;
      - banned addresses (cd__auth_banned, called for every request, on
        every route) come from an in-memory list: the node's at start,
        replaced whenever an api actor changes a ban, and re-read every
        CD_AUTH_BANS_REFRESH_MS (expiry, other nodes' bans).

    A browser's WebSocket cannot send Authorization or X-API-Key, so a
    route flagged CD_ROUTE_WS_AUTH (GET /ws) also takes, when neither
    header is there, an access token or an API key as
      - an entry `bearer.<token>` of Sec-WebSocket-Protocol (the list a
        browser sends for `new WebSocket(url, ["bearer." + token])`);
        the entry is remembered in the request (ws_protocol) and echoed
        as the chosen subprotocol in the 101, as browsers require; or
      - the query parameter access_token=<token> (unencoded: tokens and
        keys are made of URL-safe characters).
    It is checked as the header would be (an API key by its cdk_ prefix,
    else as an access token); a missing or invalid one is 401 before any
    upgrade. No other route reads either, and nothing logs a query
    string.

    Without keys in the options (tests of the HTTP layer alone) nothing is
    checked: every caller is anonymous and allowed, as before this hook had
    a body. HTTP thread only. */
#ifndef CD_HTTP_AUTH_H
#define CD_HTTP_AUTH_H

#include "cd_router.h"
#include "cd_token.h"

#include <stdbool.h>
#include <stdint.h>

#define CD_AUTH_KEY_TTL_MS 60000      //  how long a cached API key is trusted
#define CD_AUTH_KEYS_MAX 100000       //  cached API keys at most (then the cache starts over)
#define CD_AUTH_LOOKUPS_MAX 256       //  API-key lookups in flight at most (then 503)
#define CD_AUTH_BANS_REFRESH_MS 10000 //  bans re-read from the database
#define CD_AUTH_FAM_MAX 64            //  a family id's length

typedef enum {
    CD_AUTH_ALLOW = 0,       //  go on
    CD_AUTH_UNAUTHENTICATED, //  401 unauthenticated
    CD_AUTH_FORBIDDEN,       //  403 forbidden
    CD_AUTH_BUSY,            //  503 not_ready (too many lookups in flight)
    CD_AUTH_PENDING          //  parked: cd__http_after_auth will be called
} cd_auth_verdict_t;

//  Who is calling.
typedef struct {
    bool authenticated;                  //  a token or key was verified
    int64_t user_id;                     //  0 when anonymous
    bool admin;                          //  role admin
    char fam[CD_AUTH_FAM_MAX + 1];       //  the access token's login, "" for an API key
    char key[CD_TOKEN_HASH_HEX_LEN + 1]; //  the API key's hash (hex), "" for an access token
} cd_auth_identity_t;

//  Decides whether the request may use route. Fills *identity on allow.
//  When the verdict is neither CD_AUTH_ALLOW nor CD_AUTH_PENDING, *message
//  is set to a static text for the error body. On CD_AUTH_PENDING the
//  decision comes later, through cd__http_after_auth (or never, if the
//  client goes away first).
cd_auth_verdict_t cd_auth_check(cd_http_rctx_t *rctx, const cd_route_t *route,
                                cd_auth_identity_t *identity, const char **message);

#endif
