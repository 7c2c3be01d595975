-- Who may do what: users that can be disabled, per-user limits, and named keys.

ALTER TABLE users
    -- A disabled user's keys and tokens are refused (401); their data stays.
    ADD COLUMN disabled_at           TIMESTAMPTZ,
    -- Per-user limits; NULL takes the service's default (the `limits` settings).
    ADD COLUMN requests_per_minute   INT CHECK (requests_per_minute >= 0),
    ADD COLUMN request_burst         INT CHECK (request_burst >= 1),
    ADD COLUMN numbers_per_day       BIGINT CHECK (numbers_per_day >= 0),
    ADD COLUMN max_concurrent_tasks  INT CHECK (max_concurrent_tasks >= 0),
    ADD COLUMN max_rows              BIGINT CHECK (max_rows >= 1);

-- A label for a key, so that a list of keys says which is which.
ALTER TABLE api_keys ADD COLUMN name TEXT;

-- Quotas count a user's tasks of today and those still at work.
CREATE INDEX tasks_user_status ON tasks (user_id, status);
