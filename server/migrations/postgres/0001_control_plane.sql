-- Control-plane tables: backends, pools, models, hooks, chains, and the
-- idempotency keys that guard their creation. Runs and attempts (the hot
-- path) come in later migrations.
--
-- Key columns use the "C" collation: pages are ordered bytewise, the same
-- as SQLite, whatever the database's locale.

CREATE TABLE backends (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    name               TEXT COLLATE "C" NOT NULL,
    backend_type       TEXT        NOT NULL,
    base_url           TEXT        NOT NULL,
    api_key            TEXT,
    priority           INTEGER     NOT NULL,
    max_concurrency    INTEGER     NOT NULL,
    request_timeout_ms BIGINT      NOT NULL,
    labels             JSONB       NOT NULL DEFAULT '{}'::jsonb,
    -- Reconciler observations; writing them does not bump the revision.
    health             TEXT        NOT NULL DEFAULT '',
    models             TEXT[]      NOT NULL DEFAULT '{}',
    last_error         TEXT        NOT NULL DEFAULT '',
    last_sync_at       TIMESTAMPTZ,
    latency_ms         BIGINT,
    revision           BIGINT      NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    -- Names are unique; the index also serves listing by name.
    CONSTRAINT backends_name_key UNIQUE (name)
);

CREATE TABLE pools (
    id          TEXT COLLATE "C" PRIMARY KEY,
    description TEXT        NOT NULL,
    purpose     TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE models (
    name           TEXT COLLATE "C" PRIMARY KEY,
    id             TEXT COLLATE "C" NOT NULL,
    context_length INTEGER     NOT NULL,
    capabilities   TEXT[]      NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT models_id_key UNIQUE (id)
);

CREATE TABLE hooks (
    name           TEXT COLLATE "C" PRIMARY KEY,
    description    TEXT        NOT NULL,
    url            TEXT        NOT NULL,
    method         TEXT        NOT NULL,
    timeout_ms     BIGINT      NOT NULL,
    headers        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    secret_headers JSONB       NOT NULL DEFAULT '{}'::jsonb,
    queue          TEXT        NOT NULL,
    revision       BIGINT      NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE pool_backends (
    pool_id    TEXT COLLATE "C" NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    backend_id TEXT COLLATE "C" NOT NULL REFERENCES backends (id) ON DELETE CASCADE,
    PRIMARY KEY (pool_id, backend_id)
);
-- The pools of a backend, and the cascade from backends.
CREATE INDEX pool_backends_backend_idx ON pool_backends (backend_id, pool_id);

CREATE TABLE pool_models (
    pool_id    TEXT COLLATE "C" NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    model_name TEXT COLLATE "C" NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    PRIMARY KEY (pool_id, model_name)
);
-- The pools of a model, and the cascade from models.
CREATE INDEX pool_models_model_idx ON pool_models (model_name, pool_id);

-- One row per chain id. A deleted chain keeps its row (and its versions) so
-- that runs can read the versions they pinned and a re-created chain
-- continues the numbering.
CREATE TABLE chain_heads (
    id             TEXT COLLATE "C" PRIMARY KEY,
    latest_version BIGINT      NOT NULL,
    -- When the chain was created (again, after a delete).
    created_at     TIMESTAMPTZ NOT NULL,
    deleted        BOOLEAN     NOT NULL DEFAULT FALSE
);

CREATE TABLE chain_versions (
    id         TEXT COLLATE "C" NOT NULL REFERENCES chain_heads (id) ON DELETE CASCADE,
    version    BIGINT      NOT NULL,
    -- The encoded taskloom.v1.Chain message.
    definition BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, version)
);

-- AIP-155 request ids, written in the same transaction as the creation they
-- guard; the primary key makes a concurrent duplicate wait for the first.
CREATE TABLE idempotency_keys (
    scope            TEXT        NOT NULL,
    request_id       TEXT        NOT NULL,
    request_hash     TEXT        NOT NULL,
    -- Key (id or name) of the resource the request created.
    resource_key     TEXT        NOT NULL,
    -- For chains: the version the request created.
    resource_version BIGINT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, request_id)
);
-- Lets a sweeper expire old keys.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
