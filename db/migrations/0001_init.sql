-- 0001_init: the first migration. The full schema arrives with later
-- migrations; this one creates the node-wide settings table the config
-- layer reads (key -> JSON value).
CREATE TABLE config (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
