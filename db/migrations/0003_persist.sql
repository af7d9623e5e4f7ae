-- 0003_persist: what the persist actor's write path itself needs
-- (db/cd_batch.c, actors/cd_persist.c).
--
-- persist_requests records, in the same transaction as the write, the id of
-- every request the persist actor committed. The primary key is what makes
-- a write exactly-once: a request replayed after a lost COMMIT or by a
-- requester that never saw its ack collides with its own record, and is
-- answered from it (result, rows) instead of being applied again.
--
-- Rows older than the retention (24 h by default) are pruned by the actor
-- in small chunks; a replay older than that would be applied again. The
-- BRIN index on committed_at costs almost nothing per insert (rows arrive in
-- time order) and lets the pruning find old rows without a scan.
CREATE TABLE persist_requests (
    id uuid PRIMARY KEY,
    result text,
    rows bigint NOT NULL DEFAULT 0,
    committed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX persist_requests_committed_at ON persist_requests USING brin (committed_at);
