-- One row the health monitor rewrites to learn whether the store can
-- commit a write. The payload (64 KiB) makes a nearly full disk count as
-- full.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL,
    payload BLOB NOT NULL
);
