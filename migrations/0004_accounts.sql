-- The account pool, the result cache, and what each task cost each account.

-- A WhatsApp account (or a gateway session of one) that checks numbers. `settings` holds what
-- its backend needs (gateway URL, session or instance name, gateway key, batch size); `owner_id`
-- NULL puts it in the shared pool, otherwise only that user's work uses it.
CREATE TABLE accounts (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('simulated', 'native', 'waha', 'evolution')),
    owner_id          TEXT REFERENCES users (id) ON DELETE CASCADE,
    settings          JSONB NOT NULL DEFAULT '{}',
    -- Made by the service from its configuration when no other account exists.
    builtin           BOOLEAN NOT NULL DEFAULT false,
    state             TEXT NOT NULL CHECK (state IN ('pairing', 'connected', 'cooling_down',
                                                     'logged_out', 'banned', 'failed')),
    state_reason      TEXT,
    state_changed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- cooling_down (or a temporary ban) lasts until then.
    cool_until        TIMESTAMPTZ,
    -- Rate limits in a row without a good answer in between; each doubles the next cool-down.
    strikes           INT NOT NULL DEFAULT 0,
    paused            BOOLEAN NOT NULL DEFAULT false,
    per_minute        INT NOT NULL CHECK (per_minute >= 0),
    burst             INT NOT NULL CHECK (burst >= 1),
    daily_cap         INT NOT NULL CHECK (daily_cap >= 0),
    jitter_ms         INT NOT NULL CHECK (jitter_ms >= 0),
    -- The JID the account itself has (known once paired).
    me                TEXT,
    -- Pairing of a native account: the current QR payload and when it expires, or a pair code.
    qr_code           TEXT,
    qr_expires_at     TIMESTAMPTZ,
    pair_code         TEXT,
    -- The worker process that holds a native account's connection, until when.
    host              TEXT,
    host_until        TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Changes of kind, settings or limits (workers rebuild the account when it moves).
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX accounts_owner ON accounts (owner_id);

-- What each account spent, one row per report (per stored batch, or per failed call): numbers in
-- check calls, in detail calls, and the calls themselves (failed ones spend budget all the
-- same). Rows are only ever inserted, so that concurrent workers never wait on each other
-- here; per-task and per-day figures are sums. `task_id` is NULL for single-number requests.
CREATE TABLE account_usage (
    account_id  TEXT NOT NULL,
    task_id     TEXT COLLATE "C",
    user_id     TEXT,
    day         DATE NOT NULL DEFAULT ((now() AT TIME ZONE 'UTC')::date),
    checks      BIGINT NOT NULL,
    details     BIGINT NOT NULL,
    calls       BIGINT NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX account_usage_task ON account_usage (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX account_usage_day ON account_usage (account_id, day);

-- Definite answers, reused across tasks and users for a while so that a number checked
-- yesterday costs no budget today. `details_at` is set when the about text, its date and the
-- picture flag were fetched too. Simulated answers are marked and served only while a
-- simulated account is in use.
CREATE TABLE number_cache (
    number         BIGINT PRIMARY KEY,
    outcome        TEXT NOT NULL CHECK (outcome IN ('yes', 'no')),
    jid            TEXT,
    lid            TEXT,
    business       BOOLEAN,
    simulated      BOOLEAN NOT NULL,
    account_id     TEXT,
    checked_at     TIMESTAMPTZ NOT NULL,
    details_at     TIMESTAMPTZ,
    signature      TEXT,
    status_update  DATE,
    has_picture    BOOLEAN,
    privacy        TEXT
);

ALTER TABLE task_results
    ADD COLUMN cached       BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN account_id   TEXT,
    ADD COLUMN has_picture  BOOLEAN,
    ADD COLUMN privacy      TEXT,
    ADD COLUMN simulated    BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE tasks
    -- false: this task's numbers are checked afresh even when the cache knows them.
    ADD COLUMN use_cache       BOOLEAN NOT NULL DEFAULT true,
    -- Rows answered from the cache (part of `success`).
    ADD COLUMN cached          BIGINT NOT NULL DEFAULT 0,
    -- Some answer came from a simulated account.
    ADD COLUMN simulated       BOOLEAN NOT NULL DEFAULT false,
    -- Why the task's work is waiting (no healthy account), since when; NULL while it moves.
    ADD COLUMN waiting         TEXT,
    ADD COLUMN waiting_since   TIMESTAMPTZ;

-- API keys carry scopes: `check` (single-number routes), `tasks` (the task API), `admin`
-- (accounts, users and keys).
ALTER TABLE api_keys ADD COLUMN scopes TEXT[] NOT NULL DEFAULT '{check,tasks}';

-- Before this migration every answer came from the simulation.
UPDATE task_results SET simulated = true;
UPDATE tasks SET simulated = true WHERE success + failure > invalid OR status <> 'pending';
