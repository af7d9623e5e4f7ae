/*  cd_routes_auth: identity and access (API.md "Authentication"): login,
    refresh, logout, me, password, MFA; users (A); API keys; banned
    addresses (A); the audit log (A). Served by the api actors
    (actors/cd_api_auth.c), operation names in `arg`. Login and refresh
    are the only public routes of this table. */
#include "cd_routes.h"

#include <stdint.h>

#define S_OBJ(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define S_LIST(item)                                                                               \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" item "},"                                     \
          "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}")
#define S_TS "{\"type\":\"string\",\"format\":\"date-time\"}"
#define S_TS_NULL "{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true}"
#define S_INT "{\"type\":\"integer\"}"
#define S_STR "{\"type\":\"string\"}"

#define S_TOKENS                                                                                   \
    S_OBJ("\"access_token\":" S_STR ",\"refresh_token\":" S_STR                                    \
          ",\"token_type\":{\"type\":\"string\",\"enum\":[\"bearer\"]},\"expires_in\":" S_INT)

#define S_USER                                                                                     \
    S_OBJ("\"id\":" S_INT ",\"username\":" S_STR                                                   \
          ",\"role\":{\"type\":\"string\",\"enum\":[\"admin\",\"user\"]},"                         \
          "\"mfa_enabled\":{\"type\":\"boolean\"},\"created_at\":" S_TS ",\"updated_at\":" S_TS    \
          ",\"password_changed_at\":" S_TS)

#define S_KEY                                                                                      \
    S_OBJ("\"id\":" S_INT ",\"user_id\":" S_INT ",\"name\":" S_STR ",\"prefix\":" S_STR            \
          ",\"created_at\":" S_TS ",\"last_used_at\":" S_TS_NULL)

#define S_KEY_NEW                                                                                  \
    S_OBJ("\"id\":" S_INT ",\"user_id\":" S_INT ",\"name\":" S_STR ",\"prefix\":" S_STR            \
          ",\"key\":" S_STR ",\"created_at\":" S_TS)

#define S_BAN                                                                                      \
    S_OBJ("\"id\":" S_INT ",\"ip\":" S_STR ",\"reason\":" S_STR                                    \
          ",\"created_by\":{\"type\":\"integer\",\"nullable\":true},\"created_at\":" S_TS          \
          ",\"expires_at\":" S_TS_NULL)

#define S_AUDIT                                                                                    \
    S_OBJ("\"id\":" S_INT ",\"ts\":" S_TS ",\"user_id\":{\"type\":\"integer\",\"nullable\":true}," \
          "\"action\":" S_STR ",\"target\":{\"type\":\"string\",\"nullable\":true},"               \
          "\"details\":{\"type\":\"object\"},\"ip\":{\"type\":\"string\",\"nullable\":true},"      \
          "\"prev_hash\":{\"type\":\"string\",\"nullable\":true},"                                 \
          "\"hash\":{\"type\":\"string\",\"nullable\":true}")

#define S_VERIFY                                                                                   \
    S_OBJ("\"intact\":{\"type\":\"boolean\"},\"rows\":" S_INT ",\"verdict\":{\"type\":\"string\"," \
          "\"enum\":[\"intact\",\"edited\",\"deleted\",\"inserted\",\"truncated\","                \
          "\"unreadable\"]},\"id\":" S_INT ",\"why\":" S_STR)

static const cd_json_field_t s_login_fields[] = {
    {"username", CD_JSON_STRING, true, false, 1, 256, "user name (any case)"},
    {"password", CD_JSON_STRING, true, false, 1, 4096, "password"},
    {"totp", CD_JSON_STRING, false, false, 1, 16,
     "the current 6-digit TOTP code, once MFA is on for this user"},
};
static const cd_json_schema_t s_login = {"Login", s_login_fields, 3};

static const cd_json_field_t s_refresh_fields[] = {
    {"refresh_token", CD_JSON_STRING, true, false, 1, 128, "the refresh token of the last pair"},
};
static const cd_json_schema_t s_refresh = {"Refresh", s_refresh_fields, 1};

static const cd_json_field_t s_password_fields[] = {
    {"current_password", CD_JSON_STRING, true, false, 1, 4096, "the password now"},
    {"new_password", CD_JSON_STRING, true, false, 0, 4096,
     "at least 12 characters, none of the last 5 passwords"},
};
static const cd_json_schema_t s_password = {"PasswordChange", s_password_fields, 2};

static const cd_json_field_t s_mfa_verify_fields[] = {
    {"code", CD_JSON_STRING, true, false, 1, 16, "the current 6-digit code of the new secret"},
};
static const cd_json_schema_t s_mfa_verify = {"MfaVerify", s_mfa_verify_fields, 1};

static const cd_json_field_t s_user_create_fields[] = {
    {"username", CD_JSON_STRING, true, false, 1, 64,
     "1-64 of A-Z a-z 0-9 _ . @ -; unique in any case"},
    {"password", CD_JSON_STRING, true, false, 0, 4096, "at least 12 characters"},
    {"role", CD_JSON_STRING, false, false, 1, 16, "admin or user (default user)"},
};
static const cd_json_schema_t s_user_create = {"UserCreate", s_user_create_fields, 3};

static const cd_json_field_t s_user_patch_fields[] = {
    {"username", CD_JSON_STRING, false, false, 1, 64, "a new name"},
    {"role", CD_JSON_STRING, false, false, 1, 16, "admin or user"},
    {"password", CD_JSON_STRING, false, false, 0, 4096, "a new password (an admin's reset)"},
};
static const cd_json_schema_t s_user_patch = {"UserPatch", s_user_patch_fields, 3};

static const cd_json_field_t s_key_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 100, "what the key is for"},
};
static const cd_json_schema_t s_key_create = {"ApiKeyCreate", s_key_create_fields, 1};

static const cd_json_field_t s_ban_create_fields[] = {
    {"ip", CD_JSON_STRING, true, false, 1, 64, "an address, or a network as addr/prefix"},
    {"reason", CD_JSON_STRING, false, true, 0, 1000, "why"},
    {"expires_at", CD_JSON_STRING, false, true, 1, 64, "RFC 3339; absent or null: for ever"},
};
static const cd_json_schema_t s_ban_create = {"BanCreate", s_ban_create_fields, 3};

const cd_route_t cd_routes_auth[] = {
    {"POST", "/api/v1/auth/login", cd_http_route_api, CD_ROUTE_NO_IDEM,
     "Sign in: an access token (JWT, 15 min) and a refresh token (30 days, rotated on use). 401 "
     "unauthenticated with the same body for an unknown user and a wrong password; 401 "
     "mfa_required without totp once MFA is on (a code is accepted once); 429 rate_limited with "
     "Retry-After after 5 failures in 15 min for the user or from the address, even with the "
     "right password. Every attempt is recorded",
     &s_login, 200, NULL, S_TOKENS, "auth.login"},
    {"POST", "/api/v1/auth/refresh", cd_http_route_api, CD_ROUTE_NO_IDEM,
     "A new pair for a refresh token, which dies; presenting a dead one (used, revoked, expired) "
     "revokes its whole login, access tokens included: 401",
     &s_refresh, 200, NULL, S_TOKENS, "auth.refresh"},
    {"POST", "/api/v1/auth/logout", cd_http_route_api, CD_ROUTE_AUTH,
     "Ends the login the access token names (no body): its refresh tokens are revoked and its "
     "access tokens refused from now on. 400 with an API key (no login to end)",
     NULL, 204, NULL, NULL, "auth.logout"},
    {"GET", "/api/v1/auth/me", cd_http_route_api, CD_ROUTE_AUTH, "The current user", NULL, 200,
     NULL, S_USER, "auth.me"},
    {"POST", "/api/v1/auth/password", cd_http_route_api, CD_ROUTE_AUTH | CD_ROUTE_NO_IDEM,
     "Changes the password: 403 if current_password is wrong, 400 weak_password under 12 "
     "characters, 400 password_reused if it is the current or one of the last 5. Other logins "
     "of the user end; this one goes on",
     &s_password, 204, NULL, NULL, "auth.password"},
    {"POST", "/api/v1/auth/mfa/setup", cd_http_route_api, CD_ROUTE_AUTH | CD_ROUTE_NO_IDEM,
     "A new TOTP secret (base32; SHA-1, 6 digits, 30 s) and its otpauth:// URI; MFA is on only "
     "after /mfa/verify. 409 while MFA is on",
     NULL, 200, NULL, S_OBJ("\"secret\":" S_STR ",\"otpauth_uri\":" S_STR), "auth.mfa_setup"},
    {"POST", "/api/v1/auth/mfa/verify", cd_http_route_api, CD_ROUTE_AUTH | CD_ROUTE_NO_IDEM,
     "Turns MFA on with a current code of the secret from /mfa/setup (400 naming code when it "
     "does not match or was used)",
     &s_mfa_verify, 204, NULL, NULL, "auth.mfa_verify"},
    {"GET", "/api/v1/users", cd_http_route_api, CD_ROUTE_ADMIN, "List users", NULL, 200, NULL,
     S_LIST(S_USER), "users.list"},
    {"POST", "/api/v1/users", cd_http_route_api, CD_ROUTE_ADMIN | CD_ROUTE_NO_IDEM,
     "Create a user (400 weak_password under 12 characters, 409 for a taken name)", &s_user_create,
     201, NULL, S_USER, "users.create"},
    {"GET", "/api/v1/users/{id}", cd_http_route_api, CD_ROUTE_ADMIN, "Get a user", NULL, 200, NULL,
     S_USER, "users.get"},
    {"PATCH", "/api/v1/users/{id}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Rename, change the role or reset the password; a new role or password ends the user's "
     "logins. An admin cannot drop its own admin role (409)",
     &s_user_patch, 200, NULL, S_USER, "users.patch"},
    {"DELETE", "/api/v1/users/{id}", cd_http_route_api, CD_ROUTE_ADMIN,
     "Delete a user: its keys and logins end at once; its tasks and projects stay. Not oneself "
     "(409)",
     NULL, 204, NULL, NULL, "users.delete"},
    {"GET", "/api/v1/api-keys", cd_http_route_api, CD_ROUTE_AUTH,
     "List API keys (a user: its own; an admin: everyone's), without the keys", NULL, 200, NULL,
     S_LIST(S_KEY), "api_keys.list"},
    {"POST", "/api/v1/api-keys", cd_http_route_api, CD_ROUTE_AUTH | CD_ROUTE_NO_IDEM,
     "Create an API key for the caller: `key` (use as X-API-Key) is shown only here", &s_key_create,
     201, NULL, S_KEY_NEW, "api_keys.create"},
    {"DELETE", "/api/v1/api-keys/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Delete an API key (a user: its own, else 404); it stops working before the 204", NULL, 204,
     NULL, NULL, "api_keys.delete"},
    {"GET", "/api/v1/banned-ips", cd_http_route_api, CD_ROUTE_ADMIN, "List bans", NULL, 200, NULL,
     S_LIST(S_BAN), "bans.list"},
    {"POST", "/api/v1/banned-ips", cd_http_route_api, CD_ROUTE_ADMIN,
     "Ban an address or network until expires_at (or for ever): 403 on every route, /health "
     "included, from before the 201 (409 if banned already)",
     &s_ban_create, 201, NULL, S_BAN, "bans.create"},
    {"DELETE", "/api/v1/banned-ips/{id}", cd_http_route_api, CD_ROUTE_ADMIN, "Lift a ban", NULL,
     204, NULL, NULL, "bans.delete"},
    {"GET", "/api/v1/audit-logs", cd_http_route_api, CD_ROUTE_ADMIN,
     "The audit log, newest first: one entry per successful change made through the API (action "
     "is the operation, target the object's path); filters user_id, action, since",
     NULL, 200, NULL, S_LIST(S_AUDIT), "audit.list"},
    {"GET", "/api/v1/audit-logs/verify", cd_http_route_api, CD_ROUTE_ADMIN,
     "Verifies the audit log's hash chain from its first row: intact, or the first row edited, "
     "deleted or inserted behind the writer's back",
     NULL, 200, NULL, S_VERIFY, "audit.verify"},
};

const size_t cd_routes_auth_n = sizeof cd_routes_auth / sizeof cd_routes_auth[0];
