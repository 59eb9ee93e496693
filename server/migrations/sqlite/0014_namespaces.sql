-- Namespaces (docs/security.md). Chains and hooks are keyed by namespace
-- and name; runs carry their namespace; a queue is stored as its key,
-- `namespace/queue` (the internal queue stays `internal`), so attempts,
-- paused queues and worker sessions need no column of their own. Rows
-- written before namespaces existed belong to `default`.
CREATE TABLE namespaces (
    name        TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    -- JSON array of the pools its LLM tasks may use; empty for every pool.
    pools       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL
);
INSERT INTO namespaces (name, description, pools, created_at, created_by)
VALUES ('default', '', '[]', CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), 'system');

CREATE TABLE chain_heads_new (
    namespace      TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    latest_version INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, id)
);
CREATE TABLE chain_versions_new (
    namespace  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    definition BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id, version),
    FOREIGN KEY (namespace, id) REFERENCES chain_heads_new (namespace, id)
);
INSERT INTO chain_heads_new (namespace, id, latest_version, created_at, deleted)
    SELECT 'default', id, latest_version, created_at, deleted FROM chain_heads;
INSERT INTO chain_versions_new (namespace, id, version, definition, created_at)
    SELECT 'default', id, version, definition, created_at FROM chain_versions;
DROP TABLE chain_versions;
DROP TABLE chain_heads;
ALTER TABLE chain_heads_new RENAME TO chain_heads;
ALTER TABLE chain_versions_new RENAME TO chain_versions;

CREATE TABLE hooks_new (
    namespace      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    url            TEXT    NOT NULL,
    method         TEXT    NOT NULL,
    timeout_ms     INTEGER NOT NULL,
    headers        TEXT    NOT NULL,
    secret_headers TEXT    NOT NULL,
    queue          TEXT    NOT NULL,
    revision       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- The one-column key the store's generic resource statements use.
    hook_key       TEXT    GENERATED ALWAYS AS (namespace || '/' || name) STORED,
    PRIMARY KEY (namespace, name)
);
INSERT INTO hooks_new (namespace, name, description, url, method, timeout_ms, headers,
                       secret_headers, queue, revision, created_at, updated_at)
    SELECT 'default', name, description, url, method, timeout_ms, headers, secret_headers,
           queue, revision, created_at, updated_at
    FROM hooks;
DROP TABLE hooks;
ALTER TABLE hooks_new RENAME TO hooks;
CREATE UNIQUE INDEX hooks_by_key ON hooks (hook_key);

ALTER TABLE runs ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
DROP INDEX runs_by_status;
DROP INDEX runs_by_chain;
DROP INDEX runs_by_tenant;
CREATE INDEX runs_by_namespace ON runs (namespace, id);
CREATE INDEX runs_by_status ON runs (namespace, status, id);
CREATE INDEX runs_by_chain ON runs (namespace, chain_id, id);
CREATE INDEX runs_by_tenant ON runs (namespace, tenant, id);

UPDATE attempts SET queue = 'default/' || queue WHERE queue <> 'internal';
UPDATE paused_queues SET name = 'default/' || name WHERE name <> 'internal';
DELETE FROM worker_sessions;
UPDATE idempotency_keys SET scope = 'default/' || scope;

-- The namespace each audited call named; a listing shows one namespace.
ALTER TABLE audit_events ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
CREATE INDEX audit_events_by_namespace ON audit_events (namespace, id);
