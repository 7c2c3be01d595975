-- Result files a person keeps using: the upload is kept beside its task so that the result file
-- can give the user's own columns back; the file is named after the input; invalid rows that
-- look like national numbers are counted so the task can say that default_region was missing.

ALTER TABLE tasks
    -- The uploaded file's name as the client sent it (the result file is named after it).
    ADD COLUMN input_name        TEXT,
    -- Where the upload is kept in the result store (NULL: tasks from before this migration).
    ADD COLUMN input_key         TEXT,
    -- Which columns the result file has: `full` (answers, reason, the input's own columns) or
    -- `ekycpro` (the answer columns alone).
    ADD COLUMN result_columns    TEXT NOT NULL DEFAULT 'ekycpro'
        CHECK (result_columns IN ('full', 'ekycpro')),
    -- Invalid rows written without a country code while the task had no default_region.
    ADD COLUMN invalid_national  BIGINT NOT NULL DEFAULT 0,
    -- When a worker first took the task's work (the rate and the finish estimate start here).
    ADD COLUMN started_at        TIMESTAMPTZ;

-- A gateway that does not answer at all is `unreachable`, not `pairing`.
ALTER TABLE accounts DROP CONSTRAINT accounts_state_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_state_check
    CHECK (state IN ('pairing', 'unreachable', 'connected', 'cooling_down', 'logged_out',
                     'banned', 'failed'));
