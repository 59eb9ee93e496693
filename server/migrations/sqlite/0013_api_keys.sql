-- API keys kept in the store (docs/security.md). Only the SHA-256 digest
-- of a secret is kept, with its first 8 characters (`prefix`) to recognise
-- it in logs. Times are microseconds since the epoch; `namespace` NULL
-- means every namespace; `queues` is a JSON list (worker keys; empty for
-- any queue).
CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    namespace    TEXT,
    queues       TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER,
    revoked_at   INTEGER
);
-- Bumped by every change of `api_keys` that matters to a key check
-- (create, revoke); each replica polls this one row and reloads its key
-- cache when it moves (other processes may write the file: `taskloom keys`).
CREATE TABLE api_key_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO api_key_revision (id, revision) VALUES (1, 0);
