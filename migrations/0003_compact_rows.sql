-- Compact storage: an upload writes a few thousand rows, not two rows per input line.
--
-- Before: task_rows (one row per input row) and task_numbers (one row per distinct number), so
-- a 1M-row upload wrote 2M rows and 2M index entries in its transaction (about 5 s here).
-- After: the input rows are stored in blocks of 1,024 as arrays, each chunk carries its
-- distinct numbers as arrays, and a number's answer is a row of task_results written by the
-- worker when it is known. Arrays are stored uncompressed: compressing them cost more than
-- writing them.

-- Input rows in order: block b holds rows [b * 1024, (b + 1) * 1024). `numbers` has the
-- E.164 digits of each row (NULL: the row is not a valid number); `raw` has the text of the
-- invalid rows (NULL elsewhere), or is NULL when the block has none.
CREATE TABLE task_row_blocks (
    task_id   TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    block_no  INT NOT NULL,
    numbers   BIGINT[] NOT NULL,
    raw       TEXT[],
    PRIMARY KEY (task_id, block_no)
);
ALTER TABLE task_row_blocks
    ALTER COLUMN numbers SET STORAGE EXTERNAL,
    ALTER COLUMN raw SET STORAGE EXTERNAL;

-- Each chunk's distinct numbers (E.164 digits, in order of first appearance), how many input
-- rows carry each, and how many of its numbers have an answer stored (grown by the statement
-- that stores them, so that claiming and finishing a chunk need not look its numbers up).
ALTER TABLE task_chunks
    ADD COLUMN numbers   BIGINT[],
    ADD COLUMN rows      INT[],
    ADD COLUMN answered  INT NOT NULL DEFAULT 0;
ALTER TABLE task_chunks
    ALTER COLUMN numbers SET STORAGE EXTERNAL,
    ALTER COLUMN rows SET STORAGE EXTERNAL;

-- One answer per distinct number of a task, written once (INSERT ... ON CONFLICT DO NOTHING is
-- what makes chunks idempotent). No foreign key: a per-row check would cost every insert;
-- deleting a task deletes its results explicitly. Task ids compare bytewise (they are ULIDs),
-- which keeps index lookups cheap.
CREATE TABLE task_results (
    task_id        TEXT COLLATE "C" NOT NULL,
    number         BIGINT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('yes', 'no', 'unknown')),
    reason         TEXT,
    jid            TEXT,
    lid            TEXT,
    business       BOOLEAN,
    signature      TEXT,
    status_update  DATE,
    checked_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, number)
);

-- Existing tasks move over unchanged.
INSERT INTO task_row_blocks (task_id, block_no, numbers, raw)
SELECT r.task_id, r.row_no / 1024,
       array_agg(substr(n.e164, 2)::bigint ORDER BY r.row_no),
       CASE WHEN bool_or(r.raw IS NOT NULL) THEN array_agg(r.raw ORDER BY r.row_no) END
FROM task_rows r
LEFT JOIN task_numbers n ON n.task_id = r.task_id AND n.num_idx = r.num_idx
GROUP BY r.task_id, r.row_no / 1024;

UPDATE task_chunks c SET numbers = s.numbers, rows = s.rows, answered = s.answered
FROM (
    SELECT n.task_id, n.num_idx / t.chunk_size AS chunk_no,
           array_agg(substr(n.e164, 2)::bigint ORDER BY n.num_idx) AS numbers,
           array_agg(n.rows ORDER BY n.num_idx) AS rows,
           count(*) FILTER (WHERE n.outcome IS NOT NULL) AS answered
    FROM task_numbers n JOIN tasks t ON t.id = n.task_id
    GROUP BY n.task_id, n.num_idx / t.chunk_size
) s
WHERE c.task_id = s.task_id AND c.chunk_no = s.chunk_no;
UPDATE task_chunks SET numbers = '{}', rows = '{}' WHERE numbers IS NULL;

INSERT INTO task_results (task_id, number, outcome, reason, jid, lid, business, signature,
                          status_update, checked_at)
SELECT task_id, substr(e164, 2)::bigint, outcome, reason, jid, lid, business, signature,
       status_update, coalesce(checked_at, now())
FROM task_numbers WHERE outcome IS NOT NULL;

ALTER TABLE task_chunks
    ALTER COLUMN numbers SET NOT NULL,
    ALTER COLUMN rows SET NOT NULL;

DROP TABLE task_rows;
DROP TABLE task_numbers;
