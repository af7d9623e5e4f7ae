/*  api_internal.h: what the API modules (actors/cd_api_*.c) share with the
    api actor core (cd_api.c). Not for other layers.

    A handler gets one request (cd_api_req_t) and either answers it now
    (cd_api_reply*, cd_api_error, cd_api_fail) or parks it on a call to
    another actor (cd_api_write to persist, cd_api_call to anyone) and
    answers from the continuation. Every request is answered exactly once;
    the core frees it after the answer. A handler that returns non-zero
    without answering gets a 500 from the core.

    Reads run on the actor's connection (cd_api_db), synchronously: they
    are short, indexed queries, and other api actors serve meanwhile. */
#ifndef CD_ACTORS_API_INTERNAL_H
#define CD_ACTORS_API_INTERNAL_H

#include "cd_api.h"
#include "cd_db.h"
#include "cd_q.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct cd_api_req cd_api_req_t;

//  A handler: answers the request or parks it. Returns 0, or an error code
//  when it answered nothing (the core answers 500).
typedef int(cd_api_fn)(cd_api_req_t *req);

typedef struct {
    const char *op; //  operation name, as the route table gives it
    cd_api_fn *fn;  //  its handler
} cd_api_op_t;

typedef struct {
    const char *name;           //  family, for logs
    const cd_api_op_t *ops;     //  operations
    size_t n_ops;               //  entries in ops
    const cd_q_write_t *writes; //  statements it writes through persist (db/ tables)
    const size_t *n_writes;     //  entries in writes
} cd_api_module_t;

//  --- the request ---------------------------------------------------------------

//  A path or query parameter (decoded), or NULL. Borrowed, valid until the
//  answer.
const char *cd_api_param(const cd_api_req_t *req, const char *name);
const char *cd_api_query(const cd_api_req_t *req, const char *name);

//  The parsed body (an object), or NULL without one. Borrowed, as above.
json_t *cd_api_body(const cd_api_req_t *req);

//  The body's JSON text (compact, as received), or NULL.
const char *cd_api_body_text(const cd_api_req_t *req);

const char *cd_api_op(const cd_api_req_t *req);
int64_t cd_api_user(const cd_api_req_t *req); //  0: anonymous
bool cd_api_admin(const cd_api_req_t *req);
const char *cd_api_ip(const cd_api_req_t *req);
const char *cd_api_method(const cd_api_req_t *req);
const char *cd_api_path(const cd_api_req_t *req); //  "" if unknown
//  The login (refresh-token family) of the caller's bearer token, or NULL
//  (an API key, or anonymous).
const char *cd_api_session(const cd_api_req_t *req);
const char *cd_api_node_id(const cd_api_req_t *req);
const cd_api_args_t *cd_api_args(const cd_api_req_t *req);
cd_actor_t *cd_api_actor(const cd_api_req_t *req);

//  The actor's read connection, connected (reconnected if it broke). NULL
//  when the database is unreachable: the handler answers cd_api_fail(req,
//  CD_ECONN).
cd_db_t *cd_api_db(cd_api_req_t *req);

//  As cd_api_db for a handler that reads: NULL after answering 503
//  not_ready.
cd_db_t *cd_api_read_db(cd_api_req_t *req);

//  Handler scratch space that lives as long as the request: a JSON object
//  the core frees. Borrowed.
json_t *cd_api_scratch(cd_api_req_t *req);

//  --- parameters -------------------------------------------------------------------

//  Path parameter `name` as a positive id. On a malformed value answers
//  404 not_found (an id that cannot exist) and returns false.
bool cd_api_param_id(cd_api_req_t *req, const char *name, int64_t *out);

//  Query parameter as an integer within [min, max]; absent gives dflt
//  (CD_Q_NULL allowed). On a bad value answers 400 validation_failed
//  naming the parameter and returns false.
bool cd_api_query_int(cd_api_req_t *req, const char *name, int64_t min, int64_t max, int64_t dflt,
                      int64_t *out);

//  ?limit= (1..1000, default 50) and ?cursor= (a page's next_cursor: digits
//  only; anything else is 400). Returns false after answering 400.
bool cd_api_page_args(cd_api_req_t *req, int *limit, const char **cursor);

//  A page read's start: cd_api_page_args, then cd_api_read_db. NULL after
//  answering (400 or 503).
cd_db_t *cd_api_page_begin(cd_api_req_t *req, int *limit, const char **cursor);

//  Query parameter as an RFC 3339 timestamp (checked loosely here, exactly
//  by PostgreSQL). Returns false after answering 400.
bool cd_api_query_time(cd_api_req_t *req, const char *name, const char **out);

//  Query parameter restricted to a set of words (NULL-terminated). Returns
//  false after answering 400.
bool cd_api_query_enum(cd_api_req_t *req, const char *name, const char *const *allowed,
                       const char **out);

//  --- answering -------------------------------------------------------------------

//  Answers with a JSON text body (copied). location (may be NULL) becomes
//  the Location header.
void cd_api_reply_text(cd_api_req_t *req, int status, const char *json, const char *location);

//  Answers with a JSON value; takes ownership of obj.
void cd_api_reply_json(cd_api_req_t *req, int status, json_t *obj, const char *location);

//  Answers a page as {"items": [...], "next_cursor": "..." | null}.
void cd_api_reply_page(cd_api_req_t *req, const cd_q_page_t *page);

//  Answers a read of one object: 200 with row (JSON text) when rc is 0,
//  else cd_api_fail(req, rc, db). Frees row (may be NULL).
void cd_api_reply_read(cd_api_req_t *req, int rc, cd_db_t *db, char *row);

//  Answers a page read: the page when rc is 0, else cd_api_fail(req, rc,
//  db). Finishes the page.
void cd_api_reply_read_page(cd_api_req_t *req, int rc, cd_db_t *db, cd_q_page_t *page);

//  A whole handler for a list whose query takes only (cursor, limit):
//  page arguments, the read, the answer. Returns 0 (answered).
typedef int(cd_api_list_fn)(cd_db_t *db, const char *cursor, int limit, cd_q_page_t *out);
int cd_api_list(cd_api_req_t *req, cd_api_list_fn *fn);

//  A whole handler for a get by the path's {id} whose query takes only the
//  id. Returns 0 (answered).
typedef int(cd_api_get_fn)(cd_db_t *db, int64_t id, char **out);
int cd_api_get(cd_api_req_t *req, cd_api_get_fn *fn);

//  Answers 204 with no body.
void cd_api_reply_empty(cd_api_req_t *req);

//  Answers with raw bytes of a content type (artifact content), with
//  X-Content-Type-Options: nosniff. filename (may be NULL: none) makes it
//  a download: Content-Disposition: attachment with that name (made safe
//  for the header), unless content_type is JSON.
void cd_api_reply_bytes(cd_api_req_t *req, int status, const char *content_type,
                        const char *filename, const void *data, size_t len);

//  Answers {"error": {code, message, details}}; takes ownership of details
//  (may be NULL).
void cd_api_error(cd_api_req_t *req, int status, const char *code, const char *message,
                  json_t *details);

//  As cd_api_error, with a Retry-After header of retry_after_s seconds (429
//  rate_limited, 503 not_ready).
void cd_api_error_retry(cd_api_req_t *req, int status, const char *code, const char *message,
                        json_t *details, int64_t retry_after_s);

//  400 validation_failed with details {field, reason}.
void cd_api_invalid(cd_api_req_t *req, const char *field, const char *reason);

//  Answers a failed query by its code: CD_ENOTFOUND 404, CD_ESTATE 409,
//  CD_ECONN 503 not_ready, CD_EDB by SQLSTATE (23505 409 conflict, 23503
//  400 validation_failed naming the constraint, 23514/23502/22xxx 400),
//  anything else 500. db may be NULL (no SQLSTATE to read).
void cd_api_fail(cd_api_req_t *req, int rc, cd_db_t *db);

//  As cd_api_fail for an error known by its SQLSTATE and message (persist
//  answers): sqlstate may be "" or NULL.
void cd_api_fail_sql(cd_api_req_t *req, const char *sqlstate, const char *message);

//  --- calls to other actors ---------------------------------------------------------

//  The outcome of a write through persist. Strings borrowed, valid during
//  the continuation.
typedef struct {
    int rc;               //  0 committed; CD_EDB rejected (sqlstate); CD_EBUSY / CD_ECONN
                          //  the database is slow or away; CD_ETIMEDOUT no answer;
                          //  CD_EINVAL a bad request
    const char *value;    //  the statement's first column of its first row, or NULL
    int64_t rows;         //  rows affected
    const char *sqlstate; //  when rc is CD_EDB, else ""
    const char *message;  //  error text, or NULL
} cd_api_result_t;

typedef void(cd_api_write_fn)(cd_api_req_t *req, const cd_api_result_t *res, void *arg);

//  Continuations for the usual writes (pass as fn to cd_api_write):
//  cd_api_on_created: 201 with the row, Location arg (a path prefix) + "/"
//  + its id; cd_api_on_deleted: 204, 404 when no row matched, and 409
//  with arg as the message (may be NULL: no such case) when the row is
//  still referenced (23503). Other failures: cd_api_write_failed.
cd_api_write_fn cd_api_on_created;
cd_api_write_fn cd_api_on_deleted;

//  Sends a write to persist: statement stmt (a name from some module's
//  writes) with nparams text parameters (NULL = SQL NULL), and parks req
//  until the commit is acked; then calls fn. Returns 0, or an error code
//  (nothing parked: the handler answers, e.g. cd_api_fail).
int cd_api_write(cd_api_req_t *req, const char *stmt, int nparams, const char *const *params,
                 cd_api_write_fn *fn, void *arg);

//  Answers a failed write: 503 not_ready for an unavailable or busy
//  database (Retry-After), 504 for no answer, the SQLSTATE mapping
//  (cd_api_fail_sql) for a rejected statement.
void cd_api_write_failed(cd_api_req_t *req, const cd_api_result_t *res);

//  Reply to a call: the answer (borrowed, valid during the call), or NULL
//  when none came in time.
typedef void(cd_api_reply_fn)(cd_api_req_t *req, const cd_envelope_t *reply, void *arg);

//  Sends env (its id is the call id: fill it with cd_actor_envelope_init
//  through cd_api_envelope_init) and parks req until the answer, matched by
//  parent_id. Returns 0 or the send's error (nothing parked).
int cd_api_call(cd_api_req_t *req, cd_envelope_t *env, cd_api_reply_fn *fn, void *arg);

//  Fills the routine fields of an envelope from this actor.
void cd_api_envelope_init(cd_api_req_t *req, cd_envelope_t *env, cd_kind_t kind, const char *to);

//  Tells the orchestrator (if the actor has one) op for task_id (0: none):
//  "kick", "cancel", "resume", "agents". Never waits; a kick that cannot
//  go now is dropped (the orchestrator scans on a timer anyway). The core
//  sends these itself after the operations listed in cd_api.h.
void cd_api_kick(cd_api_req_t *req, const char *op, int64_t task_id);
//  --- identity and audit ---------------------------------------------------------

//  The audit record of this request names user_id as its actor (a login,
//  whose caller is anonymous until it succeeds). Before the answer.
void cd_api_audit_as(cd_api_req_t *req, int64_t user_id);

//  Tells the HTTP thread that sent req what changed for its caches, now,
//  before the answer (which then reaches it after this): effects is a JSON
//  object {"keys": [hash hex, ...] (API keys gone), "users": [id, ...]
//  (tokens issued before now and keys of these users no longer hold),
//  "fams": [family, ...] (logins revoked), "bans": [...] (the bans in
//  force, as cd_q_bans_live)}, any member optional (http/cd_auth.c).
//  Takes ownership of effects.
void cd_api_auth_notify(cd_api_req_t *req, json_t *effects);

//  --- module state -----------------------------------------------------------------

//  This actor's state for a module, by key (the module's name): a slot
//  holding NULL until the module sets it. When the actor stops, fini (if
//  not NULL; the one given first counts) is called with the slot's value,
//  before parked requests are freed. Borrowed, valid while the actor runs.
//  (Modules keep requests they answer together here, e.g. merged writes.)
void **cd_api_state(cd_api_req_t *req, const char *key, void (*fini)(void *value));

//  Frees a request that is neither answered nor parked, without answering
//  it: for a module's fini only. Nulls *req_p.
void cd_api_drop(cd_api_req_t **req_p);

//  --- modules ---------------------------------------------------------------------

//  The modules (each cd_api_<family>.c defines one).
extern const cd_api_module_t cd__api_catalog_module;
extern const cd_api_module_t cd__api_agents_module;
extern const cd_api_module_t cd__api_node_module;
extern const cd_api_module_t cd__api_projects_module;
extern const cd_api_module_t cd__api_hitl_module, cd__api_schedules_module, cd__api_system_module;
extern const cd_api_module_t cd__api_tasks_module;
extern const cd_api_module_t cd__api_vault_module;
extern const cd_api_module_t cd__api_pull_module;
extern const cd_api_module_t cd__api_auth_module;

#endif
