-- A deleted run's idempotency keys go with it. (Retention finds old runs by
-- id range on runs_chain_idx: run ids are UUIDv7, so they sort by creation;
-- an index on the end time would cost every run's last update its HOT
-- update.)
CREATE INDEX idempotency_keys_resource_idx ON idempotency_keys (resource_key);
