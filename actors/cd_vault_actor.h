/*  cd_vault_actor: the node's credential vault (registry name `vault`).

    The only place the data-encryption key (DEK) lives: an unlocked vault
    (engine/cd_vault.h: the key in sodium_malloc'd, mlock'ed memory kept
    out of core dumps, readable only during a seal or an open) owned by
    this actor's thread. Everybody else gets sealed values, or one opened
    value at a time, by message. After a restart there is no key: the
    vault is locked until someone unlocks it. Locking, and the actor's
    stop, wipe it.

    The actor holds no database connection. Callers read the stored
    record (the `vault` table, db/cd_q_system.h) and store a new one
    through persist themselves; the record is not secret.

    Key derivation (argon2id, MODERATE: about half a second and 256 MiB)
    runs on a worker thread of the actor, one at a time, so that status,
    seal and open keep being answered meanwhile and the supervisor's
    heartbeat is never missed; up to CD_VAULT_MAX_WAITING further init or
    unlock requests wait in order behind it, more are answered `busy`.

    Wrong master passwords are rate-limited like logins: after
    max_failures failed unlocks within window_ms, every unlock (even with
    the right password) is answered `rate_limited` with the seconds until
    the oldest of them leaves the window, without running the KDF; the
    vault stays as it was. A successful unlock clears the failures. The
    count is this node's and starts from zero at each start.

    Wire format
    -----------
    Requests: kind `task`, header `op`, payload a map. The answer goes to
    the `reply_to` header if present, else to `from`, with parent_id = the
    request's id: kind `result` with a map, or kind `error` with
    {"code", "message", "retry_after_s"?}.

      op        payload                          result
      status    {}                               {"locked": bool, "busy": bool}
      init      {"password": str}                {"record": str, "salt": str}
      commit    {"salt": str}                    {}
      abort     {"salt": str}                    {}
      unlock    {"password": str, "record": str} {}
      lock      {}                               {}
      seal      {"values": {name: str, ...}}     {"sealed": {name: str, ...}}
      open      {"sealed": str}                  {"value": str}

    init creates a new vault (a random DEK wrapped under the password) and
    answers its record (JSON, as cd_vault_record_to_json) to be stored;
    the new vault is held pending, not used, until `commit` with its salt
    (hex) makes it the unlocked vault (the caller commits once the record
    is stored, and sends `abort` if it could not be). unlock derives the
    key of record (JSON) from password and, if it opens the wrapped DEK,
    makes that the unlocked vault. seal seals each value (cd_vault_seal,
    a random nonce each) and answers the hex; open answers one value in
    clear: the requester must wipe it after use. The answer that carries
    a clear value travels as its own frame and the actor wipes its copy
    after sending.

    Error codes: invalid (a malformed request; message says what),
    vault_locked (seal/open while locked), unauthenticated (unlock: wrong
    password), rate_limited (retry_after_s), busy (too many KDF requests
    waiting), bad_secret (open: not a value this vault sealed),
    not_pending (commit of a vault that is not the pending one), too_big.

    Requests from another node (`from` or `reply_to` naming `node/...`)
    are refused unanswered: clear values never go into an envelope to
    another node. Passwords and values are never logged.

    Threads: the actor's thread owns the vaults; the worker only runs the
    KDF on a job the actor hands it and hands back. */
#ifndef CD_ACTORS_VAULT_ACTOR_H
#define CD_ACTORS_VAULT_ACTOR_H

#include "cd_actor.h"
#include "cd_vault.h"

#define CD_VAULT_ACTOR_NAME "vault"                 //  registry name
#define CD_VAULT_MASK "********"                    //  a secret value as reads show it
#define CD_VAULT_MAX_FAILURES 5                     //  failed unlocks ...
#define CD_VAULT_FAILURE_WINDOW_MS (15 * 60 * 1000) //  ... within this window: rate limited
#define CD_VAULT_MAX_WAITING 4                      //  KDF requests queued behind the running one
#define CD_VAULT_MAX_FAILURES_CAP 64                //  largest max_failures

//  The actor's arguments (may be NULL: all defaults); borrowed for the
//  actor's life. Zero fields take the defaults.
typedef struct {
    const cd_vault_params_t *params; //  KDF cost of a new vault; NULL: MODERATE
    int max_failures;                //  1..CD_VAULT_MAX_FAILURES_CAP; 0: CD_VAULT_MAX_FAILURES
    int window_ms;                   //  0: CD_VAULT_FAILURE_WINDOW_MS
} cd_vault_actor_args_t;

extern const cd_actor_ops_t cd_vault_actor_ops;

#endif
