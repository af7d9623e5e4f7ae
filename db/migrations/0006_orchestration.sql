-- 0006_orchestration: what the orchestrator's claim path needs
-- (db/cd_q_orch.c, actors/cd_orchestrator.c).
--
-- The orchestrator reads the best claimable tasks per assignee (a named
-- agent, a role, a team), each with its own LIMIT, in (priority DESC,
-- created_at, id) order. 0002 has partial indexes for the agent and role
-- keys; a team's tasks had none, so a claim for a team scanned the whole
-- todo backlog.
CREATE INDEX tasks_claim_team_idx ON tasks ((assignee ->> 'team'), priority DESC, created_at, id)
    WHERE status = 'todo';
