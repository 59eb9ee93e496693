-- Paused queues (docs/operations.md, "Queues"): a queue named here offers
-- nothing until it is resumed; the claims read it in their own transaction.
CREATE TABLE paused_queues (
    name      TEXT    NOT NULL PRIMARY KEY,
    paused_by TEXT    NOT NULL,
    -- Unix microseconds.
    paused_at INTEGER NOT NULL
);

-- The server processes using this database (docs/operations.md, "Replicas,
-- draining and failover"). Times are unix microseconds.
CREATE TABLE replicas (
    id             TEXT    NOT NULL PRIMARY KEY,
    listen_address TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL,
    -- `active`, `draining` or `gone`.
    state          TEXT    NOT NULL,
    stopped_at     INTEGER
);
