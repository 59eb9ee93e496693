-- API keys kept in the store (docs/security.md). Only the SHA-256 digest
-- of a secret is kept, with its first 8 characters (`prefix`) to recognise
-- it in logs. `namespace` NULL means every namespace; `queues` is a JSON
-- list (worker keys; empty for any queue).
CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT        NOT NULL,
    role         TEXT        NOT NULL,
    namespace    TEXT,
    queues       TEXT        NOT NULL,
    prefix       TEXT        NOT NULL,
    secret_hash  BYTEA       NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   TEXT        NOT NULL,
    last_used_at TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
-- Bumped by every change of `api_keys` that matters to a key check
-- (create, revoke); each replica polls this one row every 250 ms and
-- reloads its key cache when it moves, so a revocation reaches every
-- replica within a second.
CREATE TABLE api_key_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO api_key_revision (id, revision) VALUES (1, 0);
