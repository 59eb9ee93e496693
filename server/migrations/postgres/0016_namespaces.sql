-- Namespaces (docs/security.md). Chains and hooks are keyed by namespace
-- and name; runs carry their namespace; a queue is stored as its key,
-- `namespace/queue` (the internal queue stays `internal`), so attempts,
-- paused queues and worker sessions need no column of their own. Rows
-- written before namespaces existed belong to `default`.
CREATE TABLE namespaces (
    name        TEXT COLLATE "C" PRIMARY KEY,
    description TEXT        NOT NULL,
    -- The pools its LLM tasks may use; empty for every pool.
    pools       TEXT[]      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT        NOT NULL
);
INSERT INTO namespaces (name, description, pools, created_at, created_by)
VALUES ('default', '', '{}', now(), 'system');

ALTER TABLE chain_versions DROP CONSTRAINT chain_versions_id_fkey;
ALTER TABLE chain_versions DROP CONSTRAINT chain_versions_pkey;
ALTER TABLE chain_heads DROP CONSTRAINT chain_heads_pkey;
ALTER TABLE chain_heads ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE chain_versions ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE chain_heads ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE chain_versions ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE chain_heads ADD PRIMARY KEY (namespace, id);
ALTER TABLE chain_versions ADD PRIMARY KEY (namespace, id, version);
ALTER TABLE chain_versions ADD FOREIGN KEY (namespace, id)
    REFERENCES chain_heads (namespace, id) ON DELETE CASCADE;

ALTER TABLE hooks DROP CONSTRAINT hooks_pkey;
ALTER TABLE hooks ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE hooks ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE hooks ADD PRIMARY KEY (namespace, name);
-- The one-column key the store's generic resource statements use.
ALTER TABLE hooks ADD COLUMN hook_key TEXT COLLATE "C"
    GENERATED ALWAYS AS (namespace || '/' || name) STORED;
CREATE UNIQUE INDEX hooks_key_idx ON hooks (hook_key);

-- A constant default: no table rewrite.
ALTER TABLE runs ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
DROP INDEX runs_chain_idx;
DROP INDEX runs_tenant_idx;
CREATE INDEX runs_namespace_idx ON runs (namespace, id);
CREATE INDEX runs_chain_idx ON runs (namespace, chain_id, id);
CREATE INDEX runs_tenant_idx ON runs (namespace, tenant, id);

UPDATE attempts SET queue = 'default/' || queue WHERE queue <> 'internal';
UPDATE paused_queues SET name = 'default/' || name WHERE name <> 'internal';
DELETE FROM worker_sessions;
UPDATE idempotency_keys SET scope = 'default/' || scope;

-- The namespace each audited call named; a listing shows one namespace.
ALTER TABLE audit_events ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
CREATE INDEX audit_events_namespace_idx ON audit_events (namespace, id);
