-- Prompts and error messages are run data (rendered from inputs, written by
-- models, hooks and workers) and may hold U+0000, which `text` refuses:
-- they are kept as UTF-8 bytes, as SQLite keeps them, so they round-trip.
ALTER TABLE attempts
    ALTER COLUMN prompt TYPE bytea USING convert_to(prompt, 'UTF8'),
    ALTER COLUMN error TYPE bytea USING convert_to(error, 'UTF8');
ALTER TABLE runs
    ALTER COLUMN error_message TYPE bytea USING convert_to(error_message, 'UTF8');
