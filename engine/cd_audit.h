/*  cd_audit: the tamper-evident chain of audit_logs rows.

    Each row carries prev_hash, the hash of the row before it (32 zero
    bytes for the first row of the table), and

        hash = BLAKE2b-256(prev_hash || canonical(row))

    so editing a row breaks its own hash, and deleting or inserting one
    breaks the link of the next. The writer computes both before the
    INSERT (cd_audit_seal); the verifier recomputes them from what the
    table holds (cd_audit_verifier_*) and names the first row that does
    not fit and how.

    The canonical form of a row is the compact JSON array

        ["cadre-audit-1", ts, user_id, action, target, details, ip]

    with, so that writer and verifier produce the same bytes whatever
    PostgreSQL did to the values on the way:
      - ts: exactly "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, microseconds), the
        form cd_ts() in the schema prints. The writer must therefore set ts
        itself (cd_audit_ts) instead of leaving it to DEFAULT now();
        timestamptz keeps microseconds, so the text comes back unchanged.
      - user_id: an integer, or null (CD_AUDIT_NO_USER).
      - action, target: JSON strings (target may be null); strings are
        written with only '"', '\' and bytes below 0x20 escaped (as \", \\
        and \u00xx), every other byte as is.
      - details: the JSON value re-serialised: objects with keys sorted
        bytewise and no blanks, arrays in order, strings as above, true,
        false, null, and every number read as an IEEE double and printed
        as an integer if it is one below 2^53 in magnitude, else with %.17g.
        jsonb keeps numbers exactly but reformats them (1e2 becomes 100,
        -0.0 becomes 0.0), sorts keys its own way and drops duplicates;
        reading both sides as doubles makes the two agree. The price: two
        integers beyond 2^53 that round to the same double hash alike.
        Duplicate keys are refused (jsonb would silently keep the last).
      - ip: null, or the address re-printed by inet_ntop (lower-case,
        shortest IPv6 form), as PostgreSQL's host(ip) and the writer's
        spelling of the same address may differ.
    The row id is not hashed: the writer does not know it before the
    INSERT, and the chain already fixes the order.

    What the chain cannot show by itself: rows deleted at the end of the
    table (nothing links to them), and a rewrite of a row together with
    every row after it. Verification therefore takes an optional expected
    head (the hash of the last row, kept somewhere the database user cannot
    rewrite, e.g. logged or exported periodically). Writers must append one
    at a time in chain order: the node's audit writer takes a lock for the
    read-last-hash + INSERT (e.g. pg_advisory_xact_lock) so that two nodes
    never link to the same row.

    Pure functions and a verifier value the caller owns; any thread, one
    verifier per thread. */
#ifndef CD_ENGINE_AUDIT_H
#define CD_ENGINE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_AUDIT_HASH_BYTES 32           //  BLAKE2b-256
#define CD_AUDIT_TS_LEN 27               //  "2026-11-22T10:00:00.123456Z"
#define CD_AUDIT_NO_USER INT64_MIN       //  user_id NULL
#define CD_AUDIT_DETAILS_MAX 65536       //  bytes of details text accepted
#define CD_AUDIT_RECENT 64               //  rows remembered to recognise an insertion
#define CD_AUDIT_VERSION "cadre-audit-1" //  first element of the canonical form

//  One audit_logs row. Strings are borrowed from the caller, except in a
//  row filled by cd_audit_row_parse, which owns them until
//  cd_audit_row_fini.
typedef struct {
    int64_t id;                             //  audit_logs.id; not hashed (0 before the INSERT)
    const char *ts;                         //  CD_AUDIT_TS_LEN characters (cd_audit_ts)
    int64_t user_id;                        //  the acting user, or CD_AUDIT_NO_USER
    const char *action;                     //  "task.create" ...
    const char *target;                     //  or NULL
    const char *details;                    //  JSON text, or NULL for {}
    const char *ip;                         //  the client's address, or NULL
    uint8_t prev_hash[CD_AUDIT_HASH_BYTES]; //  hash of the row before
    uint8_t hash[CD_AUDIT_HASH_BYTES];      //  this row's hash
    char *owned;                            //  strings of a parsed row, or NULL
} cd_audit_row_t;

//  The canonical time text of unix_us (microseconds since the epoch, UTC)
//  into out (CD_AUDIT_TS_LEN characters and a NUL).
void
cd_audit_ts(int64_t unix_us, char out[CD_AUDIT_TS_LEN + 1]);

//  The canonical form of row (above) as *out[0..*len), NUL-terminated;
//  caller owns *out (free()). Returns 0; CD_EINVAL if a field cannot be
//  written canonically (ts not in the canonical form, action missing,
//  details not JSON or with duplicate keys, ip not an address), with *why
//  (if not NULL) saying which; CD_ETOOBIG for details over
//  CD_AUDIT_DETAILS_MAX. prev_hash, hash and id are not read.
int
cd_audit_canonical(const cd_audit_row_t *row, char **out, size_t *len, const char **why);

//  The hash row should carry after prev (32 bytes), into out. Returns as
//  cd_audit_canonical.
int
cd_audit_hash(const uint8_t prev[CD_AUDIT_HASH_BYTES], const cd_audit_row_t *row,
              uint8_t out[CD_AUDIT_HASH_BYTES], const char **why);

//  For the writer: sets row->prev_hash to prev (NULL: the first row, 32
//  zero bytes) and row->hash to the row's hash. Returns as
//  cd_audit_canonical; on failure the row is unchanged.
int
cd_audit_seal(cd_audit_row_t *row, const uint8_t *prev, const char **why);

//  Fills row from the JSON of one audit entry as db/cd_q_system.c prints
//  it: {"id", "ts", "user_id", "action", "target", "details", "ip",
//  "prev_hash", "hash"}, details as a JSON value or as a string holding
//  JSON text, hashes as 64 hex characters (null reads as zeros, which never
//  verifies). Returns 0 (release with cd_audit_row_fini) or CD_EPROTO with
//  *why set; on failure nothing needs releasing.
int
cd_audit_row_parse(const char *json, size_t len, cd_audit_row_t *row, const char **why);

//  Fills *rows with every entry of a JSON array of them (a cd_q page's
//  items), in the array's order, and *n with their count. Returns 0
//  (release with cd_audit_rows_free) or CD_EPROTO with *why set (nothing
//  to release). cd_q_audit_list runs newest first: verify in id order.
int
cd_audit_rows_parse(const char *json, size_t len, cd_audit_row_t **rows, size_t *n,
                    const char **why);

//  Frees rows[0..n) from cd_audit_rows_parse and nulls *rows_p. Safe on
//  NULL.
void
cd_audit_rows_free(cd_audit_row_t **rows_p, size_t n);

//  Frees what cd_audit_row_parse allocated and clears the row. Safe on a
//  row with borrowed strings (only clears it) and twice.
void
cd_audit_row_fini(cd_audit_row_t *row);

typedef enum {
    CD_AUDIT_INTACT = 0, //  every row fits
    CD_AUDIT_EDITED,     //  a row's content does not match its hash
    CD_AUDIT_DELETED,    //  a row's link skips rows that are gone (or a rewritten row)
    CD_AUDIT_INSERTED,   //  rows the chain does not link through
    CD_AUDIT_TRUNCATED,  //  the chain stops short of the expected head
    CD_AUDIT_UNREADABLE  //  a row cannot be put in canonical form
} cd_audit_verdict_t;

//  The first thing found wrong.
typedef struct {
    cd_audit_verdict_t verdict; //  what
    size_t index;               //  position of the row in the sequence fed (0-based)
    int64_t id;                 //  its id (0 for TRUNCATED: no such row)
    const char *why;            //  static text for humans
} cd_audit_finding_t;

//  A verification in progress over rows fed in chain (id) order, possibly
//  page by page. A value type: the caller owns it; no allocation.
typedef struct {
    uint8_t last[CD_AUDIT_HASH_BYTES]; //  the hash the next row must link to
    struct {
        uint8_t hash[CD_AUDIT_HASH_BYTES]; //  a good row's hash
        size_t index;                      //  its position
        int64_t id;                        //  its id
    } recent[CD_AUDIT_RECENT];             //  ring of the last good rows
    size_t n_good;                         //  good rows so far (ring position)
    size_t fed;                            //  rows fed so far
    bool pending;                          //  the last row's link was broken
    size_t pending_index;                  //  that row's position
    int64_t pending_id;                    //  its id
    int pending_back;                      //  ring slot of the earlier row it links to, or -1
    uint8_t pending_expected[CD_AUDIT_HASH_BYTES]; //  what it should have linked to
    cd_audit_finding_t finding;                    //  the verdict once found
} cd_audit_verifier_t;

//  Starts a verification. start is the hash the first row fed must link to:
//  NULL for the first row of the table, or the hash of the last row already
//  verified when resuming.
void
cd_audit_verifier_init(cd_audit_verifier_t *self, const uint8_t *start);

//  Feeds the next row (borrowed for the call). Returns true while nothing
//  is found wrong (a broken link waits for the next row to tell an
//  insertion from a deletion); false once a verdict is reached, after which
//  further rows are ignored.
bool
cd_audit_verifier_feed(cd_audit_verifier_t *self, const cd_audit_row_t *row);

//  Ends the verification. head is the expected hash of the last row, or
//  NULL if unknown (then rows deleted at the end go unnoticed). Returns the
//  verdict and fills *finding (if not NULL).
cd_audit_verdict_t
cd_audit_verifier_end(cd_audit_verifier_t *self, const uint8_t *head, cd_audit_finding_t *finding);

//  The whole verification over rows[0..n) from the start of the table.
cd_audit_verdict_t
cd_audit_verify(const cd_audit_row_t *rows, size_t n, const uint8_t *head,
                cd_audit_finding_t *finding);

#endif
