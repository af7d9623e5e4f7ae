/*  cd_auditlog: the audit log's writer (registry name `audit`), the one
    owner of this node's end of the audit chain (engine/cd_audit.h).

    Every state-changing request a user makes through the REST API is
    recorded: the api actors send one record per successful write (who,
    what, on which target, from which address) here, without waiting. The
    writer stamps each record with its time (the canonical ts the chain
    hashes), seals it onto the chain after the head it knows, and appends
    the records through the persist actor in one statement ("audit.append",
    db/cd_q_audit.h), one batch in flight at a time, so the chain it
    writes is in order by construction. Under load the records that arrive
    during a commit form the next batch.

    Several nodes: each has its own writer, but the table has one chain.
    audit_logs_prev_hash_key (0006_auth.sql) lets no two rows link to one
    predecessor, so when another node appended first, this node's batch
    fails with 23505; the writer then re-reads the head from the database
    and seals the batch again. Nothing is lost while the database is away:
    records wait (at most CD_AUDITLOG_QUEUE_MAX; beyond, new ones are
    dropped, counted and logged) and the batch is retried every second.

    Wire format. Record: kind `task`, payload map {"u": int (0: nobody),
    "action": str, "target": str | nil, "ip": str, "details": str (a JSON
    object as text)}; no answer. Control: kind `control`, header `op` =
    "stats" -> kind `result` {"queued", "written", "dropped", "forks",
    "failed"} to `reply_to` or `from`.

    cd_auditlog_verify is the verification routine: it reads the whole
    table in id order and feeds it through the chain verifier. */
#ifndef CD_ACTORS_AUDITLOG_H
#define CD_ACTORS_AUDITLOG_H

#include "cd_actor.h"
#include "cd_audit.h"
#include "cd_db.h"

#define CD_AUDITLOG_NAME "audit"
#define CD_AUDITLOG_BATCH_MAX 500    //  records per statement
#define CD_AUDITLOG_QUEUE_MAX 100000 //  records waiting at most
#define CD_AUDITLOG_RETRY_MS 1000    //  after a failed batch

//  The actor's arguments; borrowed for its life.
typedef struct {
    const char *conninfo; //  the database, to read the chain's head (required)
    const char *persist;  //  the persist actor's name; NULL: "persist"
} cd_auditlog_args_t;

extern const cd_actor_ops_t cd_auditlog_ops;

//  Verifies every row of audit_logs in id order on db (the caller's
//  connection), against the expected head hash (32 bytes, or NULL if
//  unknown: rows deleted at the end then go unnoticed). Returns 0 and the
//  verdict in *finding (CD_AUDIT_INTACT or what was found first, naming
//  the row) and the number of rows read in *rows (if not NULL); or a query
//  error (nothing verified). Pages through the table: any size.
int cd_auditlog_verify(cd_db_t *db, const uint8_t *head, cd_audit_finding_t *finding,
                       int64_t *rows);

#endif
