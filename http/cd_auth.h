/*  cd_auth: the authentication and authorisation hook.

    The server calls cd_auth_check once for every request to a route that
    needs it (CD_ROUTE_AUTH or CD_ROUTE_ADMIN; the public routes are
    /health*, /metrics, /openapi.json and login/refresh), after routing and
    before the body is parsed or the handler runs. It reads what it needs
    from the request (Authorization: Bearer, X-API-Key, the peer address)
    through the accessors of http_internal.h, says allow / 401 / 403, and
    fills the identity handlers then see.

    For now it allows everything and leaves the identity anonymous: this
    is the seam where token and API-key verification (the security issue)
    goes, without touching the router or any handler. HTTP thread only. */
#ifndef CD_HTTP_AUTH_H
#define CD_HTTP_AUTH_H

#include "cd_router.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    CD_AUTH_ALLOW = 0,       //  go on
    CD_AUTH_UNAUTHENTICATED, //  401 unauthenticated
    CD_AUTH_FORBIDDEN        //  403 forbidden
} cd_auth_verdict_t;

//  Who is calling.
typedef struct {
    bool authenticated; //  a token or key was verified
    int64_t user_id;    //  0 when anonymous
    bool admin;         //  role admin
} cd_auth_identity_t;

//  Decides whether the request may use route. Fills *identity on allow.
//  When the verdict is not CD_AUTH_ALLOW, *message is set to a static text
//  for the error body.
cd_auth_verdict_t cd_auth_check(cd_http_rctx_t *rctx, const cd_route_t *route,
                                cd_auth_identity_t *identity, const char **message);

#endif
