//! The job queue: apalis jobs on Redis. A job only says "look at chunk N of task T" or
//! "export task T"; Postgres holds the truth, so a lost or repeated job changes nothing.

use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::{Config, RedisStorage};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use wacheck_core::TaskId;
use wacheck_store::chunks::Pushes;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    Chunk { task: TaskId, chunk: i32 },
    Export { task: TaskId },
}

/// Jobs pushed in one script call at most (keeps every Lua `unpack` far below its limit).
const PUSH_BATCH: usize = 500;
/// Due jobs moved to the ready list per step of the promoter.
const PROMOTE_BATCH: usize = 500;

const PROMOTE_LUA: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
end
return #ids
";

const CLEAN_LUA: &str = r"
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', ARGV[1] .. id)
end
return #ids
";

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    name: String,
    config: Config,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to Redis; `prefix` namespaces every key (`{prefix}:jobs:*`).
    pub async fn connect(url: &str, prefix: &str, batch_size: usize) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(10)))
                    .set_connection_timeout(Some(Duration::from_secs(5))),
            )
            .await?;
        let name = format!("{prefix}:jobs");
        let config = Config::default()
            .queue(&name)
            .batch_size(batch_size.max(1))
            .heartbeat_interval(Duration::from_secs(5))
            .missed_heartbeats(6);
        Ok(Self { conn, name, config })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn storage(&self) -> RedisStorage<Job> {
        RedisStorage::new(self.conn.clone()).with_config(self.config.clone())
    }

    pub async fn push_all(&self, pushes: &Pushes) -> anyhow::Result<()> {
        let jobs: Vec<Job> = pushes
            .chunks
            .iter()
            .map(|&(task, chunk)| Job::Chunk { task, chunk })
            .chain(pushes.exports.iter().map(|&task| Job::Export { task }))
            .collect();
        let mut storage = self.storage();
        for batch in jobs.chunks(PUSH_BATCH) {
            storage
                .push_bulk(batch.to_vec())
                .await
                .map_err(|e| anyhow::anyhow!("pushing jobs to redis: {e}"))?;
        }
        Ok(())
    }

    /// Moves due jobs to the ready list in bounded steps, so that no single fetch ever has to
    /// move thousands at once. Returns how many it moved.
    pub async fn promote_due(&self) -> anyhow::Result<u64> {
        let script = redis::Script::new(PROMOTE_LUA);
        let now = chrono::Utc::now().timestamp();
        let mut moved = 0u64;
        loop {
            let n: u64 = script
                .key(format!("{}:scheduled", self.name))
                .key(format!("{}:active", self.name))
                .arg(now)
                .arg(PROMOTE_BATCH)
                .invoke_async(&mut self.conn.clone())
                .await?;
            moved += n;
            if n < PROMOTE_BATCH as u64 {
                return Ok(moved);
            }
        }
    }

    /// Deletes finished jobs (their payload and metadata): Postgres keeps what matters.
    pub async fn clean_finished(&self) -> anyhow::Result<u64> {
        let script = redis::Script::new(CLEAN_LUA);
        let mut removed = 0u64;
        for set in ["done", "dead"] {
            loop {
                let n: u64 = script
                    .key(format!("{}:{set}", self.name))
                    .key(format!("{}:data", self.name))
                    .arg(format!("{}:meta:", self.name))
                    .arg(PROMOTE_BATCH)
                    .invoke_async(&mut self.conn.clone())
                    .await?;
                removed += n;
                if n < PROMOTE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// Deletes every key of this queue (tests and `wacheck` tooling).
    pub async fn purge(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.name))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        let _: () = redis::cmd("ZREM")
            .arg("core:apalis:queues:list")
            .arg(format!("{}:workers", self.name))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
