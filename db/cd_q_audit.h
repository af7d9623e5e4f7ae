/*  cd_q_audit: the audit chain's own statements (audit_logs), beside the
    list and the unsealed insert of cd_q_system.

    Conventions: cd_q.h. An entry is {id, ts, user_id, action, target,
    details, ip, prev_hash, hash} (hashes as hex), as cd_q_system prints
    it and cd_audit_row_parse reads it.

    Writes through persist (cd_q_audit_writes):
      "audit.append"  ($1 a JSON array of sealed entries {ts, user_id,
                      action, target, details, ip, prev_hash, hash}, in
                      chain order) -> {count, last_id}. All or nothing;
                      CD_EDB 23505 (audit_logs_prev_hash_key) when another
                      writer appended to the same head first. */
#ifndef CD_DB_Q_AUDIT_H
#define CD_DB_Q_AUDIT_H

#include "cd_q.h"

extern const cd_q_write_t cd_q_audit_writes[];
extern const size_t cd_q_audit_n_writes;

//  Runs "audit.append" (above).
int cd_q_audit_append(cd_db_t *db, const char *json, char **out);

//  The newest sealed entry {id, hash} (the chain's head), or CD_ENOTFOUND
//  when the chain is empty.
int cd_q_audit_head(cd_db_t *db, char **out);

//  Up to limit entries with id > after_id (0: from the start), oldest
//  first, for a verification that pages through the whole table. The
//  page's next_cursor is the last id when more may follow.
int cd_q_audit_chain(cd_db_t *db, int64_t after_id, int limit, cd_q_page_t *out);

#endif
