/*  cd_q_audit: the audit chain's statements (see cd_q_audit.h).

    Rows are inserted in the array's order (ORDER BY its ordinality), so
    ids follow the chain and a verifier reading by id reads the chain.

    Interface: cd_q_audit_writes, cd_q_audit_append, cd_q_audit_head,
    cd_q_audit_chain. */
#include "cd_q_audit.h"
#include "cd_error.h"

#include <stdio.h>

#define AUDIT_JSON                                                                                 \
    "json_build_object('id', a.id, 'ts', cd_ts(a.ts), 'user_id', a.user_id, 'action', a.action, "  \
    "'target', a.target, 'details', a.details, 'ip', host(a.ip), 'prev_hash', "                    \
    "encode(a.prev_hash, 'hex'), 'hash', encode(a.hash, 'hex'))"

static const char s_audit_append[] =
    "WITH ins AS (INSERT INTO audit_logs (ts, user_id, action, target, details, ip, prev_hash,"
    " hash) SELECT (r ->> 'ts')::timestamptz, (r ->> 'user_id')::bigint, r ->> 'action',"
    " r ->> 'target', coalesce(r -> 'details', '{}'::jsonb), (r ->> 'ip')::inet,"
    " decode(r ->> 'prev_hash', 'hex'), decode(r ->> 'hash', 'hex')"
    " FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(r, n) ORDER BY x.n"
    " RETURNING id)"
    " SELECT json_build_object('count', count(*), 'last_id', max(id)) FROM ins";

const cd_q_write_t cd_q_audit_writes[] = {
    {"audit.append", s_audit_append, 1},
};

const size_t cd_q_audit_n_writes = sizeof cd_q_audit_writes / sizeof cd_q_audit_writes[0];

int
cd_q_audit_append(cd_db_t *db, const char *json, char **out)
{
    const char *params[] = {json};
    return cd__q_one(db, s_audit_append, 1, params, out);
}

int
cd_q_audit_head(cd_db_t *db, char **out)
{
    return cd__q_one(db,
                     "SELECT json_build_object('id', a.id, 'hash', encode(a.hash, 'hex'))"
                     " FROM audit_logs a WHERE a.hash IS NOT NULL ORDER BY a.id DESC LIMIT 1",
                     0, NULL, out);
}

int
cd_q_audit_chain(cd_db_t *db, int64_t after_id, int limit, cd_q_page_t *out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, after_id), NULL};
    return cd__q_page(db,
                      "SELECT a.id, " AUDIT_JSON " FROM audit_logs a WHERE a.id > $1::bigint"
                      " ORDER BY a.id LIMIT $2",
                      2, params, limit, out);
}
