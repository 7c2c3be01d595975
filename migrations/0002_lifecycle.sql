-- Task lifecycle: cancellation, a reason for every state, export retries, retention.

ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('pending', 'processing', 'completed', 'exported', 'cancelled'));

ALTER TABLE tasks
    -- Rows whose number ended `unknown` (a part of `failure`, which also counts invalid rows).
    ADD COLUMN unknown          BIGINT NOT NULL DEFAULT 0,
    -- The last thing that went wrong for this task (backend errors, export failures), and when.
    ADD COLUMN last_error       TEXT,
    ADD COLUMN last_error_at    TIMESTAMPTZ,
    ADD COLUMN cancelled_at     TIMESTAMPTZ,
    -- Failed export attempts, and when the next one is due.
    ADD COLUMN export_attempts  INT NOT NULL DEFAULT 0,
    ADD COLUMN export_retry_at  TIMESTAMPTZ;

-- Retention sweeps find old tasks by age.
CREATE INDEX tasks_created ON tasks (created_at);
