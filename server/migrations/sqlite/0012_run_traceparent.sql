-- The W3C `traceparent` a run was started with (normalised, or NULL): the
-- parent of the run's span, so its trace joins the caller's (docs/operations.md,
-- "Traces"). Written at creation only.
ALTER TABLE runs ADD COLUMN traceparent TEXT;
