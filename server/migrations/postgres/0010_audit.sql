-- The audit log (docs/operations.md): one row per control-plane action. A
-- successful action's row is written in the action's own transaction; a
-- refused or failed one is appended on its own. Ids are UUIDv7 text, "C"
-- collation: they sort by time, newest first is `ORDER BY id DESC`.
CREATE TABLE audit_events (
    id            TEXT COLLATE "C" PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL,
    actor         TEXT        NOT NULL,
    action        TEXT        NOT NULL,
    resource_type TEXT        NOT NULL,
    resource_id   TEXT        NOT NULL,
    request_id    TEXT        NOT NULL,
    outcome       TEXT        NOT NULL,
    error_message TEXT        NOT NULL,
    replica       TEXT        NOT NULL
);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
CREATE INDEX audit_events_resource_idx ON audit_events (resource_type, resource_id, id);
