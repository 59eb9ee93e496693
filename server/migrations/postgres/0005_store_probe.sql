-- One row the health monitor rewrites to learn whether the store can
-- commit a write.
CREATE TABLE store_probe (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    probed_at TIMESTAMPTZ NOT NULL
);
