-- Retention deletes each chain's finished runs oldest end first; runs that
-- have not ended are not in the index (so starting a run costs nothing more).
CREATE INDEX runs_by_chain_ended ON runs (chain_id, ended_at) WHERE ended_at IS NOT NULL;
-- A deleted run's idempotency keys go with it.
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (resource_key);
