-- The LLM fleet: limits of a backend and of its models, servers that reject
-- `stream_options`, what the reconciler observed of each model, when the
-- model list was fetched (cloud lists are reused for an hour), and which
-- replica syncs the backend now. Pools choose their selection policy and
-- whether they use models their backends report without a declaration.

ALTER TABLE backends
    ADD COLUMN requests_per_minute INTEGER     NOT NULL DEFAULT 0,
    ADD COLUMN tokens_per_minute   BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN model_limits        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN omit_stream_options INTEGER     NOT NULL DEFAULT 0,
    ADD COLUMN observed_models     JSONB       NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN models_at           TIMESTAMPTZ,
    -- The replica that syncs the backend, until when (a lease: another
    -- replica may take over once it has passed).
    ADD COLUMN sync_owner          TEXT,
    ADD COLUMN sync_until          TIMESTAMPTZ;

ALTER TABLE pools
    ADD COLUMN policy          TEXT    NOT NULL DEFAULT '',
    ADD COLUMN discover_models INTEGER NOT NULL DEFAULT 0;
