/*  cd_hasher: the password hashing actors (registry names `auth/0` ..
    `auth/N-1`).

    argon2id costs about 100 ms of one core and 64 MiB per hash
    (engine/cd_password.h). That work must never run on the HTTP thread
    (it would stall every connection) nor on the api actors (it would
    stall every read queued behind it), so the api actors send each
    password job here and park the request until the answer. N actors
    hash N passwords at once at most, which caps the memory a login flood
    can take (N x 64 MiB); the api actors cap the jobs they have out
    (CD_HASHER_INFLIGHT_MAX each) and answer 503 beyond, so the queues in
    front of these actors stay short; and a job whose envelope deadline
    has passed while it queued is refused without hashing (its requester
    has given up or is about to).

    Wire format
    -----------
    Request: kind `task`, payload map

        {"pw": str,                  the password (as received)
         "verify": str | nil,        optional: check pw against this hash
                                     (nil: an unknown user; verified against
                                     a dummy hash at the same cost, false)
         "reject": str,              optional: hashes pw must match none of,
                                     one per line (password history)
         "hash": true}               optional: hash pw

    The steps run in that order and stop at the first that fails. Answer
    (to `reply_to` or `from`, parent_id = the request id): kind `result`
    {"ok": bool (verify matched, or no verify), "reused": bool (pw matched
    a rejected hash), "hash": str (when asked and ok and not reused)}, or
    kind `error` {"code": "busy" | "bad_request" | "failed", "message"}. */
#ifndef CD_ACTORS_HASHER_H
#define CD_ACTORS_HASHER_H

#include "cd_actor.h"

#define CD_HASHER_NAME "auth"      //  registry names are CD_HASHER_NAME "/<i>"
#define CD_HASHER_WORKERS 2        //  default number of actors
#define CD_HASHER_INFLIGHT_MAX 8   //  jobs one api actor may have out at once
#define CD_HASHER_DEADLINE_MS 5000 //  how long a job may wait in a queue

extern const cd_actor_ops_t cd_hasher_ops;

#endif
