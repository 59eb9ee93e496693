-- Worker sessions as each replica last published them, so ListWorkers on
-- any replica shows every replica's workers. A replica rewrites its own rows
-- every heartbeat interval; rows not refreshed are stale and ignored.
CREATE TABLE worker_sessions (
    session_id     TEXT COLLATE "C" PRIMARY KEY,
    replica        TEXT        NOT NULL,
    worker_id      TEXT        NOT NULL,
    name           TEXT        NOT NULL,
    queues         JSONB       NOT NULL,
    slots          INTEGER     NOT NULL,
    leases_held    INTEGER     NOT NULL,
    labels         JSONB       NOT NULL,
    sdk_version    TEXT        NOT NULL,
    connected_at   TIMESTAMPTZ NOT NULL,
    last_heartbeat TIMESTAMPTZ NOT NULL,
    -- Lease operations refused for a stale or foreign token.
    fenced_operations BIGINT   NOT NULL,
    seen_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX worker_sessions_replica_idx ON worker_sessions (replica);
