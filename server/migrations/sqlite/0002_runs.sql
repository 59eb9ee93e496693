-- Execution state: runs, their task attempts and their event logs.
-- Timestamps are INTEGER unix microseconds (UTC); statuses are the
-- `as_str` spellings of RunStatus / AttemptStatus; payloads are encoded
-- protobuf messages, opaque to the store.

CREATE TABLE runs (
    id            TEXT    NOT NULL PRIMARY KEY,
    chain_id      TEXT    NOT NULL,
    chain_version INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    input         BLOB    NOT NULL,
    output        BLOB,
    -- RunFailure: all three set, or all three NULL.
    error_message TEXT,
    error_task_id TEXT,
    error_reason  TEXT,
    -- JSON object of string values.
    labels        TEXT    NOT NULL,
    priority      INTEGER NOT NULL,
    tenant        TEXT    NOT NULL,
    request_id    TEXT,
    steps         INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    -- Sequence number of the run's last event in run_events.
    last_seq      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    ended_at      INTEGER,
    updated_at    INTEGER NOT NULL
);
-- list_runs: newest first (descending id) within one status, chain or tenant.
CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX runs_by_chain ON runs (chain_id, id);
CREATE INDEX runs_by_tenant ON runs (tenant, id);

CREATE TABLE attempts (
    id               TEXT    NOT NULL PRIMARY KEY,
    run_id           TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id          TEXT    NOT NULL,
    attempt          INTEGER NOT NULL,
    step             INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    available_at     INTEGER NOT NULL,
    deadline         INTEGER,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    lease_expiries   INTEGER NOT NULL,
    input            BLOB    NOT NULL,
    prompt           TEXT,
    output           BLOB,
    error            TEXT,
    dead_lettered    INTEGER NOT NULL,
    backend_id       TEXT,
    model            TEXT,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    ended_at         INTEGER
);
-- A run's attempts in step order (snapshots, list_attempts).
CREATE INDEX attempts_by_run ON attempts (run_id, step, id);
-- claim: ready attempts of one queue in claim order (one scan per queue,
-- stopping at the limit). Partial, so the index holds only the claimable
-- set; queries must spell `status = 'ready'` literally for the planner to
-- use it.
CREATE INDEX attempts_ready ON attempts (queue, priority DESC, available_at, id)
    WHERE status = 'ready';
-- due_attempts: leases that expire, and task deadlines that pass.
CREATE INDEX attempts_lease_expiry ON attempts (lease_expires_at)
    WHERE status = 'leased';
CREATE INDEX attempts_deadline ON attempts (deadline)
    WHERE status = 'leased' AND deadline IS NOT NULL;
-- list_dead_letters: newest first, of all queues or of one.
CREATE INDEX attempts_dead_letters ON attempts (id)
    WHERE dead_lettered = 1;
CREATE INDEX attempts_dead_letters_by_queue ON attempts (queue, id)
    WHERE dead_lettered = 1;

CREATE TABLE run_events (
    run_id  TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- From 1, without gaps, per run.
    seq     INTEGER NOT NULL,
    payload BLOB    NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
