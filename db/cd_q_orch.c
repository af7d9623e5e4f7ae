/*  cd_q_orch: the orchestrator's statements and reads (see cd_q_orch.h).

    Every write is one statement over a batch of records (a JSON array
    taken apart by jsonb_array_elements). The task rows are updated first
    (compare-and-set on status, lease owner and attempt) with event_seq
    bumped by the number of history rows the record adds; the history
    rows then take their seq from the returned event_seq, so the seq
    trigger never runs on this path. Events are inserted in task id order
    (the events trigger serialises event writers; one order keeps batches
    comparable). The persist actor has one writer connection, so these
    statements never race each other on one node; on several nodes the
    compare-and-set decides.

    Interface: cd_q_orch_writes, cd_q_orch_write, cd_q_orch_candidates,
    cd_q_orch_position, cd_q_orch_directory. */
#include "cd_q_orch.h"
#include "cd_error.h"
#include "db_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

//  Where the last run of task t stopped (cd_q_orch.h, "resume"): its last
//  handoff or question after the last reset (the `created` row, or a
//  retry that starts over: the API's, whose payload has no "resume").
#define POSITION_JSON                                                                              \
    "(SELECT json_build_object('kind', e.kind, 'agent', CASE WHEN e.kind = 'handoff'"              \
    " THEN e.to_agent ELSE e.from_agent END, 'stage', e.payload -> 'stage', 'input',"              \
    " e.payload -> 'input', 'hitl', (SELECT json_build_object('request_id', h.id, 'status',"       \
    " h.status, 'response', h.response, 'approved', h.approved, 'on_timeout', h.on_timeout)"       \
    " FROM hitl_requests h WHERE e.kind = 'hitl_requested'"                                        \
    " AND h.id = (e.payload ->> 'hitl_id')::bigint))"                                              \
    " FROM task_events e WHERE e.task_id = t.id AND e.kind IN ('handoff', 'hitl_requested')"       \
    " AND e.seq > (SELECT coalesce(max(m.seq), 0) FROM task_events m WHERE m.task_id = t.id"       \
    " AND (m.kind = 'created' OR (m.kind = 'retry' AND NOT m.payload ? 'resume')))"                \
    " ORDER BY e.seq DESC LIMIT 1)"

//  A task record (cd_q_orch.h) from a row aliased t. A task whose only
//  history is its `created` row (event_seq 1) has nothing to resume.
#define ORCH_TASK_JSON                                                                             \
    "json_build_object('id', t.id, 'title', t.title, 'project_id', t.project_id, 'priority',"      \
    " t.priority, 'created_us', (extract(epoch FROM t.created_at) * 1000000)::bigint,"             \
    " 'assignee', t.assignee, 'input', t.input, 'attempts', t.attempts, 'max_attempts',"           \
    " t.max_attempts, 'timeout_ms', t.timeout_ms, 'budget', t.budget, 'usage', t.usage,"           \
    " 'status', t.status, 'resume', CASE WHEN t.event_seq > 1 THEN " POSITION_JSON " END)"

//  The HITL request object, from a row aliased h: the same text as
//  HITL_JSON in cd_q_hitl.c (events carry the API's shape).
#define HITL_JSON                                                                                  \
    "json_build_object('id', h.id, 'task_id', h.task_id, 'project_id', h.project_id, 'agent', "    \
    "h.agent, 'question', h.question, 'options', h.options, 'status', h.status, 'response', "      \
    "h.response, 'approved', h.approved, 'deadline', cd_ts(h.deadline), 'on_timeout', "            \
    "h.on_timeout, 'created_at', cd_ts(h.created_at), 'answered_at', cd_ts(h.answered_at))"

//  The compare-and-set every step record passes: the task is still the
//  run the orchestrator dispatched.
#define STILL_OURS "t.status = 'in_progress' AND t.lease_owner = $1 AND t.attempts = r.a"

//  orch.claim: $1 node, $2 lease ms, $3 [{t, a, g, s}]. Two history rows
//  (assigned, started) and task.started.
static const char s_claim[] =
    "WITH r AS (SELECT (x.e ->> 't')::bigint AS t, (x.e ->> 'a')::int AS a, x.e ->> 'g' AS g,"
    "  x.e -> 's' AS s FROM jsonb_array_elements($3::jsonb) AS x(e)),"
    " u AS (UPDATE tasks t SET status = 'in_progress', agent = r.g, lease_owner = $1,"
    "  lease_expires_at = now() + $2::bigint * interval '1 millisecond',"
    "  attempts = t.attempts + 1, started_at = now(), next_attempt_at = NULL,"
    "  event_seq = t.event_seq + 2"
    "  FROM r WHERE t.id = r.t AND t.status = 'todo' AND t.attempts = r.a"
    "  AND (t.next_attempt_at IS NULL OR t.next_attempt_at <= now())"
    "  RETURNING t.id, t.event_seq, t.attempts, t.project_id, r.g, r.s),"
    " h AS (INSERT INTO task_events (task_id, seq, kind, to_agent, status, payload)"
    "  SELECT u.id, u.event_seq - 1, 'assigned', u.g, 'in_progress',"
    "  jsonb_build_object('stage', u.s, 'attempt', u.attempts) FROM u"
    "  UNION ALL SELECT u.id, u.event_seq, 'started', u.g, 'in_progress',"
    "  jsonb_build_object('attempt', u.attempts, 'node', $1::text) FROM u),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT 'task.started', u.project_id, u.id, u.g, jsonb_build_object('attempt', u.attempts,"
    "  'agent', u.g, 'stage', u.s) FROM u ORDER BY u.id)"
    " SELECT coalesce(json_agg(u.id ORDER BY u.id), '[]') FROM u";

//  orch.advance: $1 node, $2 [{t, a, f, s, o, n?}]. A record with n hands
//  the task on (output, handoff, task.handoff); without, completes it
//  (output, completed, task.completed; the lease is dropped).
static const char s_advance[] =
    "WITH r AS (SELECT (x.e ->> 't')::bigint AS t, (x.e ->> 'a')::int AS a, x.e ->> 'f' AS f,"
    "  x.e -> 's' AS s, x.e -> 'o' AS o, x.e -> 'n' AS n"
    "  FROM jsonb_array_elements($2::jsonb) AS x(e)),"
    " u AS (UPDATE tasks t SET agent = coalesce(r.n ->> 'g', t.agent),"
    "  status = CASE WHEN r.n IS NULL THEN 'done' ELSE 'in_progress' END,"
    "  output = CASE WHEN r.n IS NULL THEN r.o ELSE t.output END,"
    "  finished_at = CASE WHEN r.n IS NULL THEN now() END,"
    "  lease_owner = CASE WHEN r.n IS NULL THEN NULL ELSE t.lease_owner END,"
    "  lease_expires_at = CASE WHEN r.n IS NULL THEN NULL ELSE t.lease_expires_at END,"
    "  event_seq = t.event_seq + 2"
    "  FROM r WHERE t.id = r.t AND " STILL_OURS
    "  RETURNING t.id, t.event_seq, t.project_id, r.f, r.s, r.o, r.n),"
    " h AS (INSERT INTO task_events (task_id, seq, kind, from_agent, to_agent, status, payload)"
    "  SELECT u.id, u.event_seq - 1, 'output', u.f, NULL, 'in_progress',"
    "  jsonb_build_object('stage', u.s, 'output', u.o) FROM u"
    "  UNION ALL SELECT u.id, u.event_seq, CASE WHEN u.n IS NULL THEN 'completed' ELSE 'handoff'"
    "  END, u.f, u.n ->> 'g', CASE WHEN u.n IS NULL THEN 'done' ELSE 'in_progress' END,"
    "  CASE WHEN u.n IS NULL THEN '{}'::jsonb"
    "  ELSE jsonb_build_object('stage', u.n -> 's', 'input', u.o) END FROM u),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT CASE WHEN u.n IS NULL THEN 'task.completed' ELSE 'task.handoff' END, u.project_id,"
    "  u.id, coalesce(u.n ->> 'g', u.f), CASE WHEN u.n IS NULL"
    "  THEN jsonb_build_object('agent', u.f, 'output', u.o)"
    "  ELSE jsonb_build_object('from', u.f, 'to', u.n ->> 'g', 'stage', u.n -> 's') END"
    "  FROM u ORDER BY u.id)"
    " SELECT coalesce(json_agg(u.id ORDER BY u.id), '[]') FROM u";

//  Whether a fail record r sends task t back to todo (read on the row as
//  it was: every SET expression sees the old values).
#define RETRIES "(r.p OR (r.r AND t.attempts < t.max_attempts))"

//  orch.fail: $1 node, $2 [{t, a, f, s, e, r, b, p}]. Back to todo after
//  backoff b (history retry with "resume": the next run resumes at this
//  stage), or failed (history failed, task.failed). A parked record (a
//  rate limit) gives its attempt back.
static const char s_fail[] =
    "WITH r AS (SELECT (x.e ->> 't')::bigint AS t, (x.e ->> 'a')::int AS a, x.e ->> 'f' AS f,"
    "  x.e -> 's' AS s, x.e -> 'e' AS e, coalesce((x.e ->> 'r')::boolean, false) AS r,"
    "  coalesce((x.e ->> 'b')::bigint, 0) AS b, coalesce((x.e ->> 'p')::boolean, false) AS p"
    "  FROM jsonb_array_elements($2::jsonb) AS x(e)),"
    " u AS (UPDATE tasks t SET"
    "  status = CASE WHEN " RETRIES " THEN 'todo' ELSE 'failed' END,"
    "  attempts = CASE WHEN r.p THEN greatest(t.attempts - 1, 0) ELSE t.attempts END,"
    "  next_attempt_at = CASE WHEN " RETRIES " THEN now() + r.b * interval '1 millisecond' END,"
    "  finished_at = CASE WHEN " RETRIES " THEN NULL ELSE now() END,"
    "  error = r.e, lease_owner = NULL, lease_expires_at = NULL, event_seq = t.event_seq + 1"
    "  FROM r WHERE t.id = r.t AND " STILL_OURS
    "  RETURNING t.id, t.status, t.attempts, t.event_seq, t.project_id, r.f, r.s, r.e, r.b, r.p),"
    " h AS (INSERT INTO task_events (task_id, seq, kind, from_agent, status, payload)"
    "  SELECT u.id, u.event_seq, CASE WHEN u.status = 'todo' THEN 'retry' ELSE 'failed' END, u.f,"
    "  u.status, jsonb_build_object('error', u.e, 'attempt', u.attempts, 'stage', u.s)"
    "  || CASE WHEN u.status = 'todo' THEN jsonb_build_object('resume', true, 'backoff_ms', u.b,"
    "  'parked', u.p) ELSE '{}'::jsonb END FROM u),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT 'task.failed', u.project_id, u.id, u.f, jsonb_build_object('error', u.e,"
    "  'attempts', u.attempts) FROM u WHERE u.status = 'failed' ORDER BY u.id)"
    " SELECT coalesce(json_agg(json_build_object('id', u.id, 'status', u.status) ORDER BY u.id),"
    " '[]') FROM u";

//  orch.hitl: $1 node, $2 [{t, a, f, s, i, q}]. The task waits (no lease:
//  nothing runs it); the request, its history row and hitl.requested.
static const char s_hitl[] =
    "WITH r AS (SELECT (x.e ->> 't')::bigint AS t, (x.e ->> 'a')::int AS a, x.e ->> 'f' AS f,"
    "  x.e -> 's' AS s, x.e -> 'i' AS i, x.e -> 'q' AS q"
    "  FROM jsonb_array_elements($2::jsonb) AS x(e)),"
    " u AS (UPDATE tasks t SET status = 'waiting_human', lease_owner = NULL,"
    "  lease_expires_at = NULL, event_seq = t.event_seq + 1"
    "  FROM r WHERE t.id = r.t AND " STILL_OURS
    "  RETURNING t.id, t.project_id, t.event_seq, r.f, r.s, r.i, r.q),"
    " hr AS (INSERT INTO hitl_requests AS h (task_id, project_id, agent, question, options,"
    "  deadline, on_timeout)"
    "  SELECT u.id, u.project_id, u.f, u.q ->> 'question', nullif(u.q -> 'options', 'null'),"
    "  now() + (u.q ->> 'timeout_s')::double precision * interval '1 second',"
    "  coalesce(u.q ->> 'on_timeout', 'deny') FROM u ORDER BY u.id"
    "  RETURNING h.id, h.task_id, " HITL_JSON " AS j),"
    " hist AS (INSERT INTO task_events (task_id, seq, kind, from_agent, status, payload)"
    "  SELECT u.id, u.event_seq, 'hitl_requested', u.f, 'waiting_human',"
    "  jsonb_build_object('hitl_id', hr.id, 'question', u.q ->> 'question', 'stage', u.s,"
    "  'input', u.i) FROM u JOIN hr ON hr.task_id = u.id),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT 'hitl.requested', u.project_id, u.id, u.f, hr.j::jsonb FROM u"
    "  JOIN hr ON hr.task_id = u.id ORDER BY u.id)"
    " SELECT coalesce(json_agg(json_build_object('id', hr.task_id, 'hitl_id', hr.id)"
    " ORDER BY hr.task_id), '[]') FROM hr";

//  orch.renew: $1 node, $2 lease ms, $3 [id, ...].
static const char s_renew[] =
    "WITH u AS (UPDATE tasks t SET lease_expires_at = now() + $2::bigint * interval"
    "  '1 millisecond' FROM jsonb_array_elements_text($3::jsonb) AS x(id)"
    "  WHERE t.id = x.id::bigint AND t.lease_owner = $1 AND t.status = 'in_progress'"
    "  RETURNING t.id)"
    " SELECT coalesce(json_agg(u.id ORDER BY u.id), '[]') FROM u";

//  orch.recover: $1 node, $2 also this node's own leases. Tasks whose
//  runner is gone go back to todo (the next run resumes from the last
//  handoff; the claim counts the attempt), or fail when out of attempts.
static const char s_recover[] =
    "WITH c AS (SELECT c.id, c.lease_owner AS owner FROM tasks c WHERE c.status = 'in_progress'"
    "  AND (c.lease_expires_at < now() OR ($2::boolean AND c.lease_owner = $1))"
    "  ORDER BY c.id FOR UPDATE SKIP LOCKED),"
    " u AS (UPDATE tasks t SET"
    "  status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'todo' END,"
    "  finished_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,"
    "  error = CASE WHEN t.attempts >= t.max_attempts THEN jsonb_build_object('code',"
    "  'lease_expired', 'message', 'the node running the task stopped', 'node', c.owner)"
    "  ELSE t.error END,"
    "  lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL,"
    "  event_seq = t.event_seq + 1 FROM c WHERE t.id = c.id"
    "  RETURNING t.id, t.status, t.attempts, t.event_seq, t.project_id, t.agent, t.error,"
    "  c.owner),"
    " h AS (INSERT INTO task_events (task_id, seq, kind, from_agent, status, payload)"
    "  SELECT u.id, u.event_seq, CASE WHEN u.status = 'todo' THEN 'retry' ELSE 'failed' END,"
    "  u.agent, u.status, CASE WHEN u.status = 'todo' THEN jsonb_build_object('resume', true,"
    "  'attempt', u.attempts, 'reason', CASE WHEN u.owner = $1 THEN 'node_restarted'"
    "  ELSE 'lease_expired' END, 'node', u.owner)"
    "  ELSE jsonb_build_object('error', u.error, 'attempt', u.attempts) END FROM u),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT 'task.failed', u.project_id, u.id, u.agent, jsonb_build_object('error', u.error,"
    "  'attempts', u.attempts) FROM u WHERE u.status = 'failed' ORDER BY u.id)"
    " SELECT coalesce(json_agg(json_build_object('id', u.id, 'status', u.status) ORDER BY u.id),"
    " '[]') FROM u";

//  orch.expire: $1 node, $2 lease ms. Due requests expire (approved
//  records what the policy decided); per task: fail (any of its expired
//  requests says fail), resume (no other request pending: in progress
//  again, leased to $1), or wait. One UPDATE per task, history rows with
//  their seq (hitl_expired per request, then failed), events.
static const char s_expire[] =
    "WITH d AS (UPDATE hitl_requests h SET status = 'expired', approved = (h.on_timeout ="
    "  'approve') WHERE h.id IN (SELECT x.id FROM hitl_requests x WHERE x.status = 'pending'"
    "  AND x.deadline <= now() ORDER BY x.id LIMIT 200 FOR UPDATE SKIP LOCKED)"
    "  RETURNING h.*, " HITL_JSON " AS j),"
    " td AS (SELECT d.task_id, bool_or(d.on_timeout = 'fail') AS fail, count(*)::int AS n,"
    "  min(d.id) AS hitl_id FROM d GROUP BY d.task_id),"
    " p AS (SELECT t.id, t.status AS was, CASE WHEN t.status <> 'waiting_human' THEN t.status"
    "  WHEN td.fail THEN 'failed' WHEN EXISTS (SELECT FROM hitl_requests o WHERE o.task_id = t.id"
    "  AND o.status = 'pending' AND o.id NOT IN (SELECT d.id FROM d)) THEN 'waiting_human'"
    "  ELSE 'in_progress' END AS becomes, td.n, td.hitl_id FROM tasks t JOIN td ON td.task_id = "
    "t.id),"
    " u AS (UPDATE tasks t SET status = p.becomes,"
    "  lease_owner = CASE WHEN p.was = 'waiting_human' AND p.becomes = 'in_progress' THEN $1"
    "  ELSE t.lease_owner END,"
    "  lease_expires_at = CASE WHEN p.was = 'waiting_human' AND p.becomes = 'in_progress'"
    "  THEN now() + $2::bigint * interval '1 millisecond' ELSE t.lease_expires_at END,"
    "  finished_at = CASE WHEN p.was = 'waiting_human' AND p.becomes = 'failed' THEN now()"
    "  ELSE t.finished_at END,"
    "  error = CASE WHEN p.was = 'waiting_human' AND p.becomes = 'failed' THEN jsonb_build_object("
    "  'code', 'hitl_expired', 'message', 'a question to a human expired unanswered"
    " (on_timeout fail)', 'hitl_id', p.hitl_id) ELSE t.error END,"
    "  event_seq = t.event_seq + p.n + CASE WHEN p.was = 'waiting_human' AND p.becomes = 'failed'"
    "  THEN 1 ELSE 0 END"
    "  FROM p WHERE t.id = p.id"
    "  RETURNING t.id, t.event_seq, t.status, t.project_id, t.agent, t.attempts, t.error, p.was,"
    "  p.n),"
    " x AS (SELECT u.*, (u.was = 'waiting_human' AND u.status = 'failed') AS failed FROM u),"
    " h AS (INSERT INTO task_events (task_id, seq, kind, to_agent, status, payload)"
    "  SELECT d.task_id, x.event_seq - x.n - (CASE WHEN x.failed THEN 1 ELSE 0 END)"
    "  + row_number() OVER (PARTITION BY d.task_id ORDER BY d.id), 'hitl_expired', d.agent,"
    "  x.status, jsonb_build_object('hitl_id', d.id, 'question', d.question, 'on_timeout',"
    "  d.on_timeout, 'approved', d.approved) FROM d JOIN x ON x.id = d.task_id"
    "  UNION ALL SELECT x.id, x.event_seq, 'failed', NULL, 'failed', jsonb_build_object('error',"
    "  x.error, 'attempt', x.attempts) FROM x WHERE x.failed),"
    " ev AS (INSERT INTO events (type, project_id, task_id, agent, data)"
    "  SELECT v.type, v.project_id, v.task_id, v.agent, v.data FROM ("
    "  SELECT 'hitl.expired' AS type, d.project_id, d.task_id, d.agent, d.j::jsonb AS data,"
    "  d.id AS o FROM d"
    "  UNION ALL SELECT 'task.failed', x.project_id, x.id, x.agent, jsonb_build_object('error',"
    "  x.error, 'attempts', x.attempts), 9223372036854775807 FROM x WHERE x.failed) v"
    "  ORDER BY v.task_id, v.o)"
    " SELECT coalesce(json_agg(json_build_object('id', x.id, 'action', CASE WHEN x.failed"
    " THEN 'failed' WHEN x.was = 'waiting_human' AND x.status = 'in_progress' THEN 'resume'"
    " ELSE 'wait' END) ORDER BY x.id), '[]') FROM x";

const cd_q_write_t cd_q_orch_writes[] = {
    {"orch.claim", s_claim, 3},   {"orch.advance", s_advance, 2}, {"orch.fail", s_fail, 2},
    {"orch.hitl", s_hitl, 2},     {"orch.renew", s_renew, 3},     {"orch.recover", s_recover, 2},
    {"orch.expire", s_expire, 2},
};
const size_t cd_q_orch_n_writes = sizeof cd_q_orch_writes / sizeof cd_q_orch_writes[0];

int
cd_q_orch_write(cd_db_t *db, const char *name, const char *const *params, char **out)
{
    *out = NULL;
    for (size_t i = 0; i < cd_q_orch_n_writes; i++) {
        if (strcmp(cd_q_orch_writes[i].name, name) == 0) {
            return cd__q_one(db, cd_q_orch_writes[i].sql, cd_q_orch_writes[i].nparams, params, out);
        }
    }
    return CD_EINVAL;
}

//  One key's best claimable tasks; `cond` selects the key's tasks (its
//  partial index serves the order).
#define CANDIDATES_OF(kind, cond)                                                                  \
    " SELECT c.* FROM k, LATERAL (SELECT t.* FROM tasks t WHERE k.k = '" kind "'"                  \
    " AND t.status = 'todo' AND " cond                                                             \
    " AND (t.next_attempt_at IS NULL OR t.next_attempt_at <= now())"                               \
    " ORDER BY t.priority DESC, t.created_at, t.id LIMIT k.n) c"

static const char s_candidates[] =
    "WITH k AS (SELECT x.e ->> 'k' AS k, x.e ->> 'v' AS v, (x.e ->> 'n')::int AS n"
    " FROM jsonb_array_elements($1::jsonb) AS x(e)),"
    " c AS (" CANDIDATES_OF("agent", "t.assignee ->> 'agent' = k.v") " UNION ALL " CANDIDATES_OF(
        "role",
        "t.assignee ->> 'role' = k.v") " UNION ALL " CANDIDATES_OF("team",
                                                                   "t.assignee ->> 'team' "
                                                                   "= k.v") ")"
                                                                            " SELECT "
                                                                            "coalesce(json_"
                                                                            "agg(" ORCH_TASK_JSON
                                                                            " ORDER BY t.priority "
                                                                            "DESC, t.created_at, "
                                                                            "t.id),"
                                                                            " '[]') FROM c t";

static const char s_position[] = "SELECT " ORCH_TASK_JSON " FROM tasks t WHERE t.id = $1::bigint"
                                 " AND t.status = 'in_progress' AND t.lease_owner = $2";

static const char s_directory[] =
    "SELECT json_build_object('agents', (SELECT coalesce(json_agg(json_build_object('name',"
    " a.name, 'kind', a.kind, 'role', a.role, 'concurrency', a.concurrency, 'node_id',"
    " a.node_id, 'status', a.status) ORDER BY a.name), '[]') FROM agents a),"
    " 'teams', (SELECT coalesce(json_agg(json_build_object('id', m.id, 'stages',"
    " (SELECT coalesce(json_agg((SELECT coalesce(json_agg(tm.agent ORDER BY tm.agent), '[]')"
    " FROM team_members tm WHERE tm.team_id = m.id AND tm.role_id = r.role_id)"
    " ORDER BY r.position), '[]') FROM team_type_roles r"
    " WHERE r.team_type_id = m.team_type_id)) ORDER BY m.id), '[]') FROM teams m))";

//  Runs one of the reads above as a prepared statement (they run often, and
//  parsing and planning them cost more than running them) and returns the
//  first column of its first row, or CD_ENOTFOUND.
static int
s_read(cd_db_t *db, const char *sql, int nparams, const char *const *params, char **out)
{
    *out = NULL;
    cd_db_rows_t *rows = NULL;
    int rc = cd_db_query_prepared(db, sql, nparams, params, &rows);
    if (rc != 0) {
        return rc;
    }
    const char *v = cd_db_rows_count(rows) > 0 ? cd_db_rows_get(rows, 0, 0) : NULL;
    if (v) {
        *out = cd__db_strdup(v);
    }
    cd_db_rows_destroy(&rows);
    return v ? 0 : CD_ENOTFOUND;
}

int
cd_q_orch_candidates(cd_db_t *db, const char *keys, char **out)
{
    const char *params[] = {keys};
    return s_read(db, s_candidates, 1, params, out);
}

int
cd_q_orch_position(cd_db_t *db, int64_t id, const char *node, char **out)
{
    char b1[24];
    const char *params[] = {cd__q_i64(b1, id), node};
    return s_read(db, s_position, 2, params, out);
}

int
cd_q_orch_directory(cd_db_t *db, char **out)
{
    return s_read(db, s_directory, 0, NULL, out);
}
