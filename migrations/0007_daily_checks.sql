-- How many numbers each user checked one by one on each day (UTC), for the `numbers_per_day`
-- quota. Kept apart from `check_history`, which the user may clear: clearing the history does
-- not give the day's quota back. A request reserves its numbers here before it checks them, in
-- one conditional upsert, so concurrent requests cannot pass the same last slot.
CREATE TABLE daily_checks (
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day      DATE NOT NULL,
    numbers  BIGINT NOT NULL CHECK (numbers >= 0),
    PRIMARY KEY (user_id, day)
);

INSERT INTO daily_checks (user_id, day, numbers)
SELECT user_id, (created_at AT TIME ZONE 'UTC')::date, count(*)
FROM check_history
GROUP BY 1, 2;
