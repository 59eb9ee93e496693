-- A deleted run's idempotency keys go with it. (Retention finds old runs by
-- id range on runs_by_chain: run ids are UUIDv7, so they sort by creation.)
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (resource_key);
