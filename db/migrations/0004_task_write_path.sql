-- 0004_task_write_path: the same rules as 0002, cheaper to enforce on the
-- hot write path (POST /api/v1/tasks through the persist actor), measured
-- with pgbench and perf on the create statement of db/cd_q_tasks.c.
--
-- 1. cd_assignee_valid becomes PL/pgSQL. As a SQL function with a standard
--    body it was inlined into the tasks CHECK, and the executor re-reads a
--    CHECK's expression tree for every statement it runs: the function's
--    stored body (compressed) was decompressed and parsed again on every
--    INSERT and on every UPDATE of a task, about half of the time of a
--    one-row create. A PL/pgSQL body is compiled once per session; the
--    CHECK keeps only a call. Same logic, same answers.
--
-- 2. The task_events seq trigger runs only when the writer leaves seq
--    NULL, as every appender does. The statement that creates a task writes
--    its first history row itself, with seq 1, and the task with
--    event_seq 1 in the same statement: the trigger's UPDATE of the brand
--    new task (a second row version, the CHECKs and the touch trigger
--    again) is pure cost there. UNIQUE (task_id, seq) still refuses a
--    writer that supplies a seq already taken; a writer that supplies one
--    also skips the trigger's check that the task exists, so only a
--    statement that has just inserted the task may do it.
CREATE OR REPLACE FUNCTION cd_assignee_valid(a jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN coalesce(
        jsonb_typeof(a) = 'object' AND (
            (a - 'agent' = '{}'::jsonb AND jsonb_typeof(a -> 'agent') = 'string'
                AND (a ->> 'agent') ~ '^[a-z0-9_-]{1,64}$')
            OR (a - 'role' = '{}'::jsonb AND jsonb_typeof(a -> 'role') = 'string'
                AND char_length(a ->> 'role') BETWEEN 1 AND 64)
            OR (a - 'team' = '{}'::jsonb AND jsonb_typeof(a -> 'team') = 'number'
                AND (a ->> 'team') ~ '^[1-9][0-9]{0,17}$')),
        false);
END
$$;

DROP TRIGGER task_events_seq ON task_events;
CREATE TRIGGER task_events_seq BEFORE INSERT ON task_events
    FOR EACH ROW WHEN (NEW.seq IS NULL) EXECUTE FUNCTION cd_task_events_seq();
