-- 0005_security_keys: where the node keeps the keys of its security
-- features (engine/cd_vault.c, engine/cd_jwt.c, engine/cd_token.c).
--
-- vault: the credential vault's one record. A master password derives the
-- key-encryption key (argon2id with these parameters and salt); it wraps
-- the data-encryption key that seals connections.secrets. Only the wrapped
-- key is stored, never a key: without the master password the row opens
-- nothing. Any change to it makes unlocking fail (a weaker opslimit derives
-- another key), so its parameters cannot be downgraded. No row: the vault
-- is not initialised yet.
CREATE TABLE vault (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    kdf text NOT NULL CHECK (kdf = 'argon2id13'),
    opslimit bigint NOT NULL CHECK (opslimit BETWEEN 1 AND 64),
    memlimit bigint NOT NULL CHECK (memlimit BETWEEN 8192 AND 4294967296),
    salt bytea NOT NULL CHECK (octet_length(salt) = 16),
    -- nonce (24) || crypto_secretbox of the 32-byte key (MAC 16 + 32)
    wrapped_dek bytea NOT NULL CHECK (octet_length(wrapped_dek) = 72),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER vault_touch BEFORE UPDATE ON vault
    FOR EACH ROW EXECUTE FUNCTION cd_touch_updated_at();

-- auth_keys: per-installation secrets of authentication, in the database
-- because every node of a cluster needs the same ones (a token issued by
-- one node is checked by another): 'jwt', the HMAC-SHA-256 key of access
-- tokens, and 'token_hash', the BLAKE2b key of the stored hashes of API
-- keys and refresh tokens. Not sealed by the vault, like users.mfa_secret:
-- logins must work while the vault is locked after a restart. Created once
-- (INSERT ... ON CONFLICT DO NOTHING, then read back) by the first node.
CREATE TABLE auth_keys (
    name text PRIMARY KEY CHECK (name IN ('jwt', 'token_hash')),
    key bytea NOT NULL CHECK (octet_length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
