-- 0007_auth: what identity and access need beyond the tables of 0002
-- (actors/cd_api_auth.c, actors/cd_auditlog.c).
--
-- users.mfa_last_step: the TOTP time step of the last code this user got
-- accepted (engine/cd_totp.h). A code of that step or an earlier one is a
-- replay; the statement that accepts a code moves it forward only
-- (compare-and-set), so of two logins with one code exactly one wins.
ALTER TABLE users ADD COLUMN mfa_last_step bigint CHECK (mfa_last_step >= 0);

-- login_attempts.outcome: why an attempt failed. Lockout counts the
-- failures that guessed something (bad_credentials, mfa_invalid,
-- mfa_replay), not the attempts refused while locked out (else the window
-- would never pass while someone keeps trying) nor a right password that
-- still lacks its TOTP code (mfa_required). NULL on rows written before.
ALTER TABLE login_attempts ADD COLUMN outcome text CHECK (outcome IN
    ('ok', 'bad_credentials', 'locked', 'mfa_required', 'mfa_invalid', 'mfa_replay'));

-- The audit chain stays a chain: two rows can never link to the same
-- predecessor. Each node has one writer (actors/cd_auditlog.c) that knows
-- the head it appends to; a writer on another node that appended first
-- makes this node's INSERT fail with 23505 (it waits for the other
-- transaction's outcome on the index entry), and the writer re-reads the
-- head and seals again. An advisory lock taken inside the INSERT could not
-- do this: the statement's snapshot is taken before the lock is granted.
CREATE UNIQUE INDEX audit_logs_prev_hash_key ON audit_logs (prev_hash);
