//! Rates that hold across every process of a deployment: a GCRA (generic cell rate
//! algorithm) on the Redis server's clock, with an optional daily cap. Account budgets (checks
//! per minute, burst, checks a day) and callers' request rates both book through here.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// KEYS[1] holds the theoretical arrival time in microseconds, KEYS[2] today's count.
/// ARGV: emission interval (µs, 0 = no rate), burst tolerance (µs), cost, daily cap (0 = none).
/// Returns `{status, value, remaining, reset}`: `{0, n, r, µs}` n are booked (fewer than asked
/// when only n are left today), r more would fit now, the budget is whole again in µs;
/// `{1, µs, 0, µs}` wait that long before asking again; `{2, 0, 0, 0}` the cap is reached;
/// `{3, 0, 0, 0}` today's count is not in Redis (the caller seeds it).
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if cap > 0 then
  local used = redis.call('GET', KEYS[2])
  if not used then return {3, 0, 0, 0} end
  local left = cap - tonumber(used)
  if left <= 0 then return {2, 0, 0, 0} end
  if cost > left then cost = left end
end
local remaining, reset = 0, 0
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local wait = new_tat - tolerance - now
  if wait > 0 then return {1, math.ceil(wait), 0, tat - now} end
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
  remaining = math.floor((now + tolerance - new_tat) / interval)
  reset = new_tat - now
end
if cap > 0 then redis.call('INCRBY', KEYS[2], cost) end
return {0, cost, remaining, reset}
";

/// Raises today's count in Redis to at least what Postgres knows (after a flush or restart).
const SEED_LUA: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'EX', 172800) end
return 0
";

/// A rate: one unit every `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    interval_us: u64,
    tolerance_us: u64,
}

impl Gcra {
    /// `per_minute` units a minute with bursts of `burst`; `None` when `per_minute` is 0.
    pub fn per_minute(per_minute: u32, burst: u32) -> Option<Gcra> {
        (per_minute > 0).then(|| {
            let interval_us = (60_000_000 / u64::from(per_minute)).max(1);
            Gcra {
                interval_us,
                tolerance_us: interval_us * u64::from(burst.max(1)),
            }
        })
    }
}

/// What booking said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `booked` units may go now; `remaining` more would fit at once; the budget is whole
    /// again after `reset`.
    Booked {
        booked: u64,
        remaining: u64,
        reset: Duration,
    },
    /// Nothing now: ask again after `wait`; the budget is whole again after `reset`.
    Wait { wait: Duration, reset: Duration },
    /// The daily cap is reached.
    Capped,
    /// Today's count is not in Redis: seed it, then book again.
    Unseeded,
}

/// Books units against rates kept in Redis.
#[derive(Clone)]
pub struct Rates {
    redis: ConnectionManager,
    gcra: redis::Script,
    seed: redis::Script,
}

impl Rates {
    pub fn new(redis: ConnectionManager) -> Self {
        Rates {
            redis,
            gcra: redis::Script::new(GCRA_LUA),
            seed: redis::Script::new(SEED_LUA),
        }
    }

    /// Books `cost` units at `rate` (kept under `rate_key`), and against `cap` a day (counted
    /// under `day_key`) when a cap is given.
    pub async fn book(
        &self,
        rate_key: &str,
        rate: Option<Gcra>,
        cost: u64,
        cap: Option<(&str, u64)>,
    ) -> redis::RedisResult<Verdict> {
        let rate = rate.unwrap_or(Gcra {
            interval_us: 0,
            tolerance_us: 0,
        });
        // Without a cap the day key is never read; the rate key stands in, so that every key a
        // script names is one of ours (Redis ACLs may restrict keys by prefix).
        let (day_key, cap) = cap.unwrap_or((rate_key, 0));
        let mut conn = self.redis.clone();
        let (status, value, remaining, reset): (i64, i64, i64, i64) = self
            .gcra
            .key(rate_key)
            .key(day_key)
            .arg(rate.interval_us)
            .arg(rate.tolerance_us)
            .arg(cost)
            .arg(cap)
            .invoke_async(&mut conn)
            .await?;
        let us = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(match status {
            0 => Verdict::Booked {
                booked: value.max(0) as u64,
                remaining: remaining.max(0) as u64,
                reset: us(reset),
            },
            1 => Verdict::Wait {
                wait: us(value.max(1)),
                reset: us(reset),
            },
            2 => Verdict::Capped,
            _ => Verdict::Unseeded,
        })
    }

    /// Raises today's count under `day_key` to at least `used`.
    pub async fn seed(&self, day_key: &str, used: u64) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let _: i64 = self
            .seed
            .key(day_key)
            .arg(used)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
