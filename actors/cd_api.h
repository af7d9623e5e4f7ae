/*  cd_api: the REST API's actors (registry names `api/0` .. `api/N-1`).

    The HTTP frontend never touches the database: for every resource route
    it sends one envelope to an api actor and answers with what comes back.
    An api actor owns one database connection for reads (db/cd_q_*
    functions, run on its own thread) and writes through the persist actor,
    asynchronously: a request that writes is parked until persist acks the
    commit, so the actor keeps serving others meanwhile, and the HTTP
    answer (201/200) leaves only after the commit.

    Wire format
    -----------
    Request: kind `task`, header `op` = the operation ("tasks.create" ...,
    the route table's names), payload map

        {"m": "POST", "p": {name: str, ...},     path parameters
         "q": {name: str, ...},                   query parameters (decoded)
         "b": str | nil,                          the body (JSON text, already
                                                  checked against the route's schema)
         "u": int, "a": bool, "ip": str,          the caller: user id (0 anonymous),
                                                  admin, peer address
         "f": str,                                the login (refresh family) of a bearer
                                                  token, optional
         "path": str,                             the request path (audit target)
         "ik": str}                               Idempotency-Key (POST only), optional

    The answer goes to the `reply_to` header if present, else to `from`,
    with parent_id = the request id:
      kind `result`, payload {"s": int, "b": str | bin, "ct": str?,
                              "h": {name: value, ...}?}
    status, body (JSON text unless `ct` names another type) and extra
    response headers (location, retry-after; with raw bytes
    x-content-type-options and content-disposition). Errors are answers
    like any other, with an API.md error body.

    Idempotency-Key: a POST carrying one is claimed in idempotency_keys
    (keyed by user and key, with a hash of the operation and body) before
    it runs; a repeat gets the first answer replayed, a different body 409,
    and a repeat while the first is still running 409 as well. An answer
    of 5xx releases the key so a retry runs again. Operations that carry a
    secret ignore the header (cd_api_idem_ignored), so that nothing about
    the secret is stored: those whose answer carries one shown once
    (login, refresh, MFA setup, API-key creation: the answer would be
    stored for replay), and those whose body carries one (a password, a
    vault master password, an MFA code, a connection's secrets: the
    stored request hash, a fast unkeyed hash, would let anyone who reads
    the table test guesses of the secret at that speed, where the secret
    itself is kept only under argon2id or sealed). The vault's operations
    (init, unlock, lock) ignore it too: they act on the node that
    receives them, and an answer recorded by one node of a cluster must
    not stand for another. Each of them is safe to repeat without it: a
    repeat is refused (409 for a taken name or an initialised vault, 400
    for a reused password or code, 401 for a used refresh token) or does
    again what a retry means (sign in, unlock, lock). These bookkeeping rows
    are written on the actor's own connection: they coordinate requests,
    they are not the API's data (which only persist writes).

    Operations live in modules (actors/cd_api_<family>.c), each a table of
    {op, handler} plus the write statements it sends to persist; the node
    registers every module's statements with the persist actor
    (cd_api_stmts). See actors/api_internal.h for what a handler uses.

    Wake-ups: after a successful answer to an operation the orchestrator
    acts on, the core sends it a `control` envelope (no answer, never
    waiting: dropped if its queue is full, since it also scans on a
    timer): op=kick after tasks.create, tasks.batch, tasks.retry and
    schedules.run (plain kicks are coalesced to one per millisecond per
    actor); op=cancel with task_id after tasks.cancel; op=resume with
    task_id after hitl.respond; op=agents after a change to agents, teams,
    team types or roles.

    Audit: every request that changes state and succeeds (a method other
    than GET and HEAD answered 2xx, replays excepted) is recorded by the
    core, whatever the module: it sends {who, operation, target (the
    Location of a create, else the path), ip, {method, status}} to the
    audit writer (actors/cd_auditlog.h) after the answer. */
#ifndef CD_ACTORS_API_H
#define CD_ACTORS_API_H

#include "cd_actor.h"
#include "cd_jwt.h"
#include "cd_persist.h"

#include <stddef.h>

#define CD_API_NAME "api" //  registry names are CD_API_NAME "/<i>"

typedef struct {
    const char *conninfo;     //  the database (required); borrowed
    const char *node_id;      //  this node's id; borrowed
    const char *persist;      //  the persist actor's name ("persist")
    const char *agents;       //  the agents supervisor's name ("agents")
    const char *bus;          //  the bus actor's name ("bus"), or NULL
    const char *orchestrator; //  told of changes it acts on ("orchestrator"), or NULL
    int64_t started_us;       //  node start, monotonic µs (zclock_usecs), for uptime; 0: unknown
    //  Identity and access (actors/cd_api_auth.c); NULL / 0: the auth
    //  routes answer 503.
    const cd_jwt_key_t *jwt_key; //  signs access tokens; borrowed
    const uint8_t *token_key;    //  CD_TOKEN_KEY_BYTES: refresh-token and API-key hashes; borrowed
    int auth_workers;            //  password hashing actors auth/0 .. auth/N-1 (cd_hasher.h)
    int login_max_failures;      //  failures that lock a login out (0: 5) ...
    int login_window_s;          //  ... within this window (0: 900 s)
    const char *audit;           //  the audit writer ("audit"), or NULL: no audit records
} cd_api_args_t;

extern const cd_actor_ops_t cd_api_ops;

//  Every write statement of every API module (and of the other actors that
//  write through persist: the llm agents' usage ledger), for the persist
//  actor's arguments. Static, built once; *n receives the count.
const cd_persist_stmt_t *cd_api_stmts(size_t *n);

//  True if op names an operation some module serves (tests: the route
//  table and the modules agree).
bool cd_api_has_op(const char *op);

//  True if op ignores Idempotency-Key because its body or its answer
//  carries a secret (above). Any thread.
bool cd_api_idem_ignored(const char *op);

#endif
