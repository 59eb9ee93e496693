-- Global call limits (docs/limits.md). One row per model call and limit
-- scope it counted against: `hold_until` is set while the call is in flight
-- (a crashed replica's calls free themselves when it passes) and cleared
-- when the call settles; `tokens` is the estimate until then, the provider's
-- count after. Rows older than a minute are pruned. Admissions of one scope
-- are serialized across replicas by a transaction-scoped advisory lock.
CREATE TABLE limit_calls (
    call_id    TEXT        NOT NULL,
    scope      TEXT        NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    hold_until TIMESTAMPTZ,
    settled_at TIMESTAMPTZ,
    tokens     BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, scope)
);
CREATE INDEX limit_calls_by_scope ON limit_calls (scope, started_at);

-- A provider asked to be left alone (429/503 with Retry-After) until then.
CREATE TABLE limit_backoffs (
    scope  TEXT        PRIMARY KEY,
    until  TIMESTAMPTZ NOT NULL,
    reason TEXT        NOT NULL DEFAULT ''
);
