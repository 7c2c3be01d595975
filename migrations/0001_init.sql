-- wacheck schema: Postgres is the source of truth for tasks, rows and results.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    prefix        TEXT NOT NULL,
    key_hash      BYTEA NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE tasks (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind                TEXT NOT NULL CHECK (kind IN ('simple', 'detail')),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'exported')),
    result_format       TEXT NOT NULL CHECK (result_format IN ('xlsx', 'csv')),
    default_region      TEXT,
    total               BIGINT NOT NULL,
    invalid             BIGINT NOT NULL,
    distinct_numbers    BIGINT NOT NULL,
    success             BIGINT NOT NULL DEFAULT 0,
    failure             BIGINT NOT NULL DEFAULT 0,
    chunk_size          INT NOT NULL,
    chunk_count         INT NOT NULL,
    chunks_done         INT NOT NULL DEFAULT 0,
    result_key          TEXT,
    export_enqueued_at  TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at        TIMESTAMPTZ,
    exported_at         TIMESTAMPTZ
);
CREATE INDEX tasks_user ON tasks (user_id, created_at);
CREATE INDEX tasks_unfinished ON tasks (status) WHERE status IN ('pending', 'processing', 'completed');

-- One row per input row, in input order. num_idx points at the distinct number (NULL: invalid row).
CREATE TABLE task_rows (
    task_id  TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    row_no   INT NOT NULL,
    raw      TEXT,
    num_idx  INT,
    PRIMARY KEY (task_id, row_no)
);

-- One row per distinct valid number of a task, numbered in order of first appearance.
-- Chunk c of a task covers num_idx in [c * chunk_size, (c + 1) * chunk_size).
-- outcome NULL = not checked yet; once set it never changes (that is what makes chunks idempotent).
CREATE TABLE task_numbers (
    task_id        TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    num_idx        INT NOT NULL,
    e164           TEXT NOT NULL,
    rows           INT NOT NULL,
    outcome        TEXT CHECK (outcome IN ('yes', 'no', 'unknown')),
    reason         TEXT,
    jid            TEXT,
    lid            TEXT,
    business       BOOLEAN,
    signature      TEXT,
    status_update  DATE,
    checked_at     TIMESTAMPTZ,
    PRIMARY KEY (task_id, num_idx)
);

-- Work units. enqueued_at: a job was pushed; leased_until: a worker holds it; done_at: results stored.
CREATE TABLE task_chunks (
    task_id       TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    chunk_no      INT NOT NULL,
    enqueued_at   TIMESTAMPTZ,
    leased_until  TIMESTAMPTZ,
    lease_owner   TEXT,
    attempts      INT NOT NULL DEFAULT 0,
    done_at       TIMESTAMPTZ,
    PRIMARY KEY (task_id, chunk_no)
);
CREATE INDEX task_chunks_open ON task_chunks (task_id, chunk_no) WHERE done_at IS NULL;

-- Service-wide values shared by every process (for example the signing secret of local links).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
