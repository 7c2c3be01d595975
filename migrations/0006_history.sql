-- Single-number checks: what each caller checked (their history), and the names under which
-- compatible clients address accounts.

-- One row per number checked through the single-number routes, kept for its caller only.
CREATE TABLE check_history (
    id          TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Which API family the check came through: `api`, `walytic` or `commbox`.
    source      TEXT NOT NULL CHECK (source IN ('api', 'walytic', 'commbox')),
    -- The session (Walytic) or stream (CommBox) the caller named; NULL for the native API.
    session_id  TEXT,
    -- The number as given, and as normalised (NULL when it is not a valid number).
    input       TEXT NOT NULL,
    e164        TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('yes', 'no', 'invalid', 'unknown')),
    account_id  TEXT,
    cached      BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX check_history_user ON check_history (user_id, created_at DESC, id DESC);
CREATE INDEX check_history_session ON check_history (user_id, session_id, created_at DESC, id DESC);

-- Other names of an account: a Walytic `sessionId` or a CommBox stream id that a client uses.
CREATE TABLE account_aliases (
    alias       TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX account_aliases_account ON account_aliases (account_id);
