-- 0008_lean_writes: the same rules and the same answers, with less work per
-- write. Measured on the statements the persist actor runs for
-- POST /api/v1/tasks (PostgreSQL's statement log, EXPLAIN ANALYZE of a
-- create of 200 tasks): the tasks row cost ~50 us of its ~120 us, mostly
-- index entries, and the exactly-once records of persist_requests cost
-- ~1.3 ms per merged create, mostly pglz compressing the answer.
--
-- 1. persist_requests.result is compressed with lz4 instead of pglz: the
--    answer of a merged create (tens of KiB of JSON) is compressed ~3x
--    faster, and read back only after a COMMIT whose answer was lost.
ALTER TABLE persist_requests ALTER COLUMN result SET COMPRESSION lz4;

-- 2. A new task entered 10 indexes. Each of the three claim indexes took
--    every todo task, the NULL keys of the two kinds of assignee it is not
--    about included; they now take only their own kind (a query's
--    `assignee ->> 'agent' = $1` implies the IS NOT NULL of the predicate,
--    so the planner still uses them). tasks_claim_idx (any todo task by
--    priority) served no query: the orchestrator and claim_next always name
--    the agent, the role or the team. tasks_created_idx served only the
--    `since` filter of the task list, which reads by id DESC anyway
--    (created_at grows with id). project_id is NULL for most new tasks:
--    its index skips NULLs. tasks_agent_idx served no query either (the
--    list's `agent` filter matches agent OR assignee's agent, which no
--    single index serves) and made every handoff, which changes the agent,
--    a non-HOT update; with it gone and pages kept 20% free (fillfactor),
--    a handoff rewrites the row in place of its page without touching any
--    index. The status index orders as the list does (id DESC within a
--    status). A create now enters 4 indexes.
DROP INDEX tasks_claim_idx;
DROP INDEX tasks_created_idx;
DROP INDEX tasks_claim_agent_idx;
DROP INDEX tasks_claim_role_idx;
DROP INDEX tasks_claim_team_idx;
DROP INDEX tasks_project_idx;
DROP INDEX tasks_agent_idx;
DROP INDEX tasks_status_idx;
CREATE INDEX tasks_claim_agent_idx ON tasks ((assignee ->> 'agent'), priority DESC, created_at, id)
    WHERE status = 'todo' AND (assignee ->> 'agent') IS NOT NULL;
CREATE INDEX tasks_claim_role_idx ON tasks ((assignee ->> 'role'), priority DESC, created_at, id)
    WHERE status = 'todo' AND (assignee ->> 'role') IS NOT NULL;
CREATE INDEX tasks_claim_team_idx ON tasks ((assignee ->> 'team'), priority DESC, created_at, id)
    WHERE status = 'todo' AND (assignee ->> 'team') IS NOT NULL;
CREATE INDEX tasks_project_idx ON tasks (project_id, id) WHERE project_id IS NOT NULL;
ALTER TABLE tasks SET (fillfactor = 80);
CREATE INDEX tasks_status_idx ON tasks (status, id);

-- 3. Events: the commit-order lock is taken once per statement instead of
--    once per row (a PL/pgSQL call per event). The id becomes an identity
--    (GENERATED ALWAYS, continuing the old sequence), drawn per row after
--    the statement's BEFORE trigger has taken the lock (COPY fires
--    statement triggers too), so the rule of 0002 stands: ids are drawn
--    under the lock and event-writing transactions commit in id order. A
--    writer that supplies an id is refused (it would break that order).
--    events.ts is append-ordered: a BRIN index serves the retention
--    DELETE at a fraction of a btree's cost.
DROP TRIGGER events_id ON events;
DROP FUNCTION cd_events_id();
DO $$
DECLARE
    next bigint := (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
                    FROM events_id_seq);
BEGIN
    DROP SEQUENCE events_id_seq;
    EXECUTE format('ALTER TABLE events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY'
                   ' (SEQUENCE NAME events_id_seq START WITH %s)', next);
END
$$;
CREATE FUNCTION cd_events_lock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7161115324985996916);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_lock BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION cd_events_lock();
DROP INDEX events_ts_idx;
CREATE INDEX events_ts_idx ON events USING brin (ts);
