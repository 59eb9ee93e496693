-- Initial schema of the embedded SQLite store.
-- Timestamps are INTEGER unix microseconds (UTC) so they round-trip exactly;
-- maps and lists are JSON text.

CREATE TABLE backends (
    id                 TEXT    NOT NULL PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE,
    backend_type       TEXT    NOT NULL,
    base_url           TEXT    NOT NULL,
    api_key            TEXT,
    priority           INTEGER NOT NULL,
    max_concurrency    INTEGER NOT NULL,
    request_timeout_ms INTEGER NOT NULL,
    labels             TEXT    NOT NULL,
    -- Reconciler observations (BackendState); not covered by the revision.
    health             TEXT    NOT NULL DEFAULT '',
    models             TEXT    NOT NULL DEFAULT '[]',
    last_error         TEXT    NOT NULL DEFAULT '',
    last_sync_at       INTEGER,
    latency_ms         INTEGER,
    revision           INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE pools (
    id          TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    purpose     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE models (
    name           TEXT    NOT NULL PRIMARY KEY,
    id             TEXT    NOT NULL,
    context_length INTEGER NOT NULL,
    capabilities   TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE pool_backends (
    pool_id    TEXT NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    backend_id TEXT NOT NULL REFERENCES backends (id) ON DELETE CASCADE,
    PRIMARY KEY (pool_id, backend_id)
);
CREATE INDEX pool_backends_by_backend ON pool_backends (backend_id, pool_id);

CREATE TABLE pool_models (
    pool_id    TEXT NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    model_name TEXT NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    PRIMARY KEY (pool_id, model_name)
);
CREATE INDEX pool_models_by_model ON pool_models (model_name, pool_id);

CREATE TABLE hooks (
    name           TEXT    NOT NULL PRIMARY KEY,
    description    TEXT    NOT NULL,
    url            TEXT    NOT NULL,
    method         TEXT    NOT NULL,
    timeout_ms     INTEGER NOT NULL,
    headers        TEXT    NOT NULL,
    secret_headers TEXT    NOT NULL,
    queue          TEXT    NOT NULL,
    revision       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- One row per chain id; survives deletion so a re-created chain continues
-- its version numbering.
CREATE TABLE chain_heads (
    id             TEXT    NOT NULL PRIMARY KEY,
    latest_version INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE chain_versions (
    id         TEXT    NOT NULL REFERENCES chain_heads (id),
    version    INTEGER NOT NULL,
    definition BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);

-- AIP-155 request ids, reserved in the transaction of the creation they
-- guard. `resource_version` is set for chain versions.
CREATE TABLE idempotency_keys (
    scope            TEXT    NOT NULL,
    request_id       TEXT    NOT NULL,
    request_hash     TEXT    NOT NULL,
    resource_key     TEXT    NOT NULL,
    resource_version INTEGER,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (scope, request_id)
);
