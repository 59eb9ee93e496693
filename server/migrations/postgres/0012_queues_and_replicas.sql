-- Paused queues (docs/operations.md, "Queues"): a queue named here offers
-- nothing on any replica until it is resumed; the claims read it in their
-- own transaction.
CREATE TABLE paused_queues (
    name      TEXT COLLATE "C" PRIMARY KEY,
    paused_by TEXT        NOT NULL,
    paused_at TIMESTAMPTZ NOT NULL
);

-- The server processes sharing this database (docs/operations.md,
-- "Replicas, draining and failover"). Each writes its heartbeat about every
-- second; one whose heartbeat is older than the replica timeout is declared
-- gone by any live one, which releases its leases.
CREATE TABLE replicas (
    id             TEXT COLLATE "C" PRIMARY KEY,
    listen_address TEXT        NOT NULL,
    version        TEXT        NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    heartbeat_at   TIMESTAMPTZ NOT NULL,
    -- `active`, `draining` or `gone`.
    state          TEXT        NOT NULL,
    stopped_at     TIMESTAMPTZ
);
CREATE INDEX replicas_live_idx ON replicas (heartbeat_at) WHERE state <> 'gone';
