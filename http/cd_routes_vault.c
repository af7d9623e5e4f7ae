/*  cd_routes_vault: the credential vault and connections (API.md "Vault
    and connections"). Served by the api actors (actors/cd_api_vault.c),
    operation names in `arg`. */
#include "cd_routes.h"

#define S_OBJ(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define S_LIST(item)                                                                               \
    S_OBJ("\"items\":{\"type\":\"array\",\"items\":" item "},"                                     \
          "\"next_cursor\":{\"type\":\"string\",\"nullable\":true}")
#define S_TS "{\"type\":\"string\",\"format\":\"date-time\"}"

#define S_STATUS S_OBJ("\"initialized\":{\"type\":\"boolean\"},\"locked\":{\"type\":\"boolean\"}")

#define S_CONNECTION                                                                               \
    S_OBJ("\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},"                          \
          "\"connector_type\":{\"type\":\"string\"},"                                              \
          "\"config\":{\"type\":\"object\",\"description\":\"secret values read "                  \
          "\\\"********\\\"\"},"                                                                   \
          "\"secret_fields\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"                \
          "\"has_secrets\":{\"type\":\"boolean\"},"                                                \
          "\"created_by\":{\"type\":\"integer\",\"nullable\":true},"                               \
          "\"created_at\":" S_TS ",\"updated_at\":" S_TS)

static const cd_json_field_t s_password_fields[] = {
    {"master_password", CD_JSON_STRING, true, false, 0, 1024,
     "the master password (at least 12 characters, at most 1024 bytes)"},
};
static const cd_json_schema_t s_password = {"MasterPassword", s_password_fields, 1};

static const cd_json_field_t s_create_fields[] = {
    {"name", CD_JSON_STRING, true, false, 1, 400, "unique name, 1-100 characters"},
    {"connector_type", CD_JSON_STRING, true, false, 1, 64, "1-64 of a-z 0-9 _ . -"},
    {"config", CD_JSON_OBJECT, false, true, 0, 0,
     "settings; the values of secret keys are sealed and read back as \"********\""},
    {"secret_fields", CD_JSON_ARRAY, false, true, 0, 0,
     "top-level keys of config to seal, besides password, api_key, token and secret"},
};
static const cd_json_schema_t s_create = {"ConnectionCreate", s_create_fields, 4};

static const cd_json_field_t s_patch_fields[] = {
    {"name", CD_JSON_STRING, false, false, 1, 400, "unique name, 1-100 characters"},
    {"connector_type", CD_JSON_STRING, false, false, 1, 64, "1-64 of a-z 0-9 _ . -"},
    {"config", CD_JSON_OBJECT, false, true, 0, 0,
     "replaces the config; a secret key whose value is \"********\" keeps its stored value"},
    {"secret_fields", CD_JSON_ARRAY, false, true, 0, 0,
     "replaces the list of keys to seal (a value sealed before stays sealed)"},
};
static const cd_json_schema_t s_patch = {"ConnectionPatch", s_patch_fields, 4};

#define S_SECRETS                                                                                  \
    "Keys of config named in secret_fields, or named password, api_key, token or secret (any "     \
    "case), must have string values; they are sealed by the vault (crypto_secretbox, a random "    \
    "nonce each) and stored only sealed; every read shows \"********\". A key with those names "   \
    "nested inside another value is refused (list the outer key in secret_fields). 423 locked "    \
    "while the vault is locked"

const cd_route_t cd_routes_vault[] = {
    {"GET", "/api/v1/system/status", cd_http_route_api, CD_ROUTE_AUTH,
     "The vault: initialized (a master password was set) and locked (this node holds no key: "
     "after every start until unlocked)",
     NULL, 200, NULL, S_STATUS, "vault.status"},
    {"POST", "/api/v1/system/init", cd_http_route_api, CD_ROUTE_ADMIN | CD_ROUTE_NO_IDEM,
     "Initialise the vault: a data key wrapped under a key derived from master_password "
     "(argon2id, MODERATE limits); only the wrapped key, salt and parameters are stored. The "
     "vault is unlocked afterwards. 400 weak_password under 12 characters; 409 if initialised",
     &s_password, 204, NULL, NULL, "vault.init"},
    {"POST", "/api/v1/system/unlock", cd_http_route_api, CD_ROUTE_ADMIN | CD_ROUTE_NO_IDEM,
     "Unlock the vault on this node. 401 unauthenticated on a wrong master password (the vault "
     "stays as it was); after 5 wrong ones within 15 minutes 429 rate_limited with Retry-After, "
     "even for the right one; 409 if not initialised. Idempotency-Key is not honoured",
     &s_password, 204, NULL, NULL, "vault.unlock"},
    {"POST", "/api/v1/system/lock", cd_http_route_api, CD_ROUTE_ADMIN | CD_ROUTE_NO_IDEM,
     "Lock the vault on this node: its key is wiped from memory", NULL, 204, NULL, NULL,
     "vault.lock"},
    {"GET", "/api/v1/connections", cd_http_route_api, CD_ROUTE_AUTH,
     "Connections, newest first; secret values read \"********\"", NULL, 200, NULL,
     S_LIST(S_CONNECTION), "connections.list"},
    {"POST", "/api/v1/connections", cd_http_route_api, CD_ROUTE_AUTH | CD_ROUTE_NO_IDEM,
     "Create a connection. " S_SECRETS "; 409 for a taken name", &s_create, 201, NULL, S_CONNECTION,
     "connections.create"},
    {"GET", "/api/v1/connections/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Get a connection; secret values read \"********\"", NULL, 200, NULL, S_CONNECTION,
     "connections.get"},
    {"PATCH", "/api/v1/connections/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Update a connection. " S_SECRETS ". A config given replaces the old one: a secret key "
     "sent as \"********\" keeps its stored value, a secret key left out is removed. 409 if "
     "the connection changed meanwhile",
     &s_patch, 200, NULL, S_CONNECTION, "connections.patch"},
    {"DELETE", "/api/v1/connections/{id}", cd_http_route_api, CD_ROUTE_AUTH,
     "Delete a connection (also while the vault is locked)", NULL, 204, NULL, NULL,
     "connections.delete"},
};

const size_t cd_routes_vault_n = sizeof cd_routes_vault / sizeof cd_routes_vault[0];
