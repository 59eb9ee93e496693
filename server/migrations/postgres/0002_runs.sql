-- Execution state: runs, their task attempts and their event logs. This is
-- the hot path (see PERFORMANCE.md): every index here is paid for on every
-- insert and on every update that is not HOT, so each one serves a query the
-- store actually runs.
--
-- Ids are UUIDv7 text, "C" collation: they sort bytewise by creation time,
-- the same as SQLite, and page keys compare the same way.

CREATE TABLE runs (
    id            TEXT COLLATE "C" PRIMARY KEY,
    chain_id      TEXT COLLATE "C" NOT NULL,
    chain_version BIGINT      NOT NULL,
    -- RunStatus::as_str.
    status        TEXT        NOT NULL,
    -- Encoded taskloom.v1.Value messages.
    input         BYTEA       NOT NULL,
    output        BYTEA,
    -- RunFailure: all three set, or all three NULL.
    error_message TEXT,
    error_task_id TEXT,
    error_reason  TEXT,
    labels        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    priority      INTEGER     NOT NULL,
    tenant        TEXT        NOT NULL,
    request_id    TEXT,
    steps         INTEGER     NOT NULL,
    input_tokens  BIGINT      NOT NULL,
    output_tokens BIGINT      NOT NULL,
    -- Sequence number of the run's last event.
    last_seq      BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT runs_error_complete CHECK (
        (error_message IS NULL) = (error_task_id IS NULL)
        AND (error_message IS NULL) = (error_reason IS NULL)
    )
) WITH (
    -- Every transition rewrites the run row (status, last_seq, tokens,
    -- updated_at). No index covers a column that changes, so with free
    -- space on the page those updates are HOT: one heap record, no index
    -- entries.
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.05
);

-- ListRuns filters; each serves "newest first" within its key.
--
-- Deliberately no index on status: it would make every status change (two
-- or more per run) a non-HOT update that writes a new entry into every
-- index of the table, about a third more WAL per run. A status filter
-- narrows with the other filters' indexes, or scans runs newest first;
-- retention keeps the table to recent runs.
CREATE INDEX runs_chain_idx ON runs (chain_id, id);
CREATE INDEX runs_tenant_idx ON runs (tenant, id);
-- Label filters (`labels @> {...}`); jsonb_path_ops is the smaller, faster
-- GIN flavour and serves exactly `@>`.
CREATE INDEX runs_labels_idx ON runs USING GIN (labels jsonb_path_ops);
-- Creation-time ranges. BRIN: a few pages for the whole table, since rows
-- arrive in creation order.
CREATE INDEX runs_created_idx ON runs USING BRIN (created_at);

CREATE TABLE attempts (
    id               TEXT COLLATE "C" PRIMARY KEY,
    run_id           TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id          TEXT        NOT NULL,
    attempt          INTEGER     NOT NULL,
    step             INTEGER     NOT NULL,
    -- AttemptStatus::as_str.
    status           TEXT        NOT NULL,
    queue            TEXT        NOT NULL,
    priority         INTEGER     NOT NULL,
    available_at     TIMESTAMPTZ NOT NULL,
    deadline         TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at TIMESTAMPTZ,
    lease_expiries   INTEGER     NOT NULL,
    input            BYTEA       NOT NULL,
    prompt           TEXT,
    output           BYTEA,
    error            TEXT,
    dead_lettered    BOOLEAN     NOT NULL,
    backend_id       TEXT,
    model            TEXT,
    input_tokens     BIGINT      NOT NULL,
    output_tokens    BIGINT      NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    ended_at         TIMESTAMPTZ
) WITH (
    -- No fillfactor below 100: nearly every attempt update changes its
    -- status or its lease times, which the partial indexes below cover, so
    -- the updates cannot be HOT and reserved space would only be wasted.
    -- Frequent vacuum keeps the dead versions out of the ready index.
    autovacuum_vacuum_scale_factor = 0.05
);

-- A run's attempts in step order: the snapshot every transition loads, and
-- ListAttempts.
CREATE INDEX attempts_run_idx ON attempts (run_id, step, id);
-- The claim query, in its exact order. Partial: only ready attempts are in
-- it, so it stays as small as the backlog however many attempts finished.
CREATE INDEX attempts_ready_idx ON attempts (queue, priority DESC, available_at, id)
    WHERE status = 'ready';
-- Lease expiry and task deadlines: the earlier of the two is when a leased
-- attempt falls due (LEAST ignores NULL). Partial: only leased attempts.
CREATE INDEX attempts_due_idx ON attempts ((LEAST(lease_expires_at, deadline)), id)
    WHERE status = 'leased';
-- Dead letters, newest first. Rare, so the index is tiny.
CREATE INDEX attempts_dead_letter_idx ON attempts (id) WHERE dead_lettered;

-- Append-only, read by (run_id, seq) ranges; the primary key is the index.
CREATE TABLE run_events (
    run_id  TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    -- Encoded taskloom.v1.RunEvent.
    payload BYTEA  NOT NULL,
    PRIMARY KEY (run_id, seq)
);
