-- Each run keeps the ids of the attempts its next decision needs (its
-- "heads", a JSON array), so a transition of a long run reads those
-- instead of every attempt; NULL (runs from before) reads them all.
-- `executions` counts task executions without retries: the max_steps
-- budget, which was counted over every attempt.
ALTER TABLE runs ADD COLUMN executions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN heads TEXT;
UPDATE runs r SET executions =
    (SELECT count(*) FROM attempts a WHERE a.run_id = r.id AND a.attempt = 1);
