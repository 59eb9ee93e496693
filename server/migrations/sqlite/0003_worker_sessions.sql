-- Worker sessions as each replica last published them, so ListWorkers on
-- any replica shows every replica's workers. A replica rewrites its own rows
-- every heartbeat interval; rows not refreshed are stale and ignored.
CREATE TABLE worker_sessions (
    session_id     TEXT    NOT NULL PRIMARY KEY,
    replica        TEXT    NOT NULL,
    worker_id      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    -- JSON array of queue names.
    queues         TEXT    NOT NULL,
    slots          INTEGER NOT NULL,
    leases_held    INTEGER NOT NULL,
    -- JSON object of string values.
    labels         TEXT    NOT NULL,
    sdk_version    TEXT    NOT NULL,
    -- Unix microseconds.
    connected_at   INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    -- Lease operations refused for a stale or foreign token.
    fenced_operations INTEGER NOT NULL,
    seen_at        INTEGER NOT NULL
);
CREATE INDEX worker_sessions_replica_idx ON worker_sessions (replica);
