//! Native sessions: each native account's WhatsApp session runs in one worker process at a
//! time. A worker takes an account's host lease in Postgres, starts its session from the
//! SQLite file in `native_dir`, and records what the session lives through (QR codes,
//! pairing, logouts, bans) on the account, where the API and every other process see it.
//! The pool of that process checks through the session; other processes leave the account
//! to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};
use wacheck_backends::native::{NativeSession, NativeSettings, SessionEvent};
use wacheck_core::{AccountKind, AccountState};
use wacheck_store::accounts::{self, AccountRecord};

use crate::pool::Pool;

/// The file a native account's session lives in.
pub fn session_file(dir: &std::path::Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.db"))
}

/// Deletes a session's store with its write-ahead log, so that a new pairing starts afresh.
pub fn forget_session(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// Records one session event on the account. Returns whether the session should stop.
pub async fn record_event(
    db: &sqlx::PgPool,
    id: &str,
    event: &SessionEvent,
    session_file: &std::path::Path,
) -> anyhow::Result<bool> {
    match event {
        SessionEvent::Qr { code, valid_for } => {
            let until = Utc::now() + chrono::Duration::from_std(*valid_for)?;
            accounts::set_pairing(db, id, Some((code, until)), None).await?;
        }
        SessionEvent::PairCode { code, .. } => {
            accounts::set_pairing(db, id, None, Some(code)).await?;
        }
        SessionEvent::Connected { me: Some(me) } => {
            info!(account = id, me, "native account paired");
            accounts::paired(db, id, me).await?;
        }
        SessionEvent::Connected { me: None } => {
            // Back after pairing's restart, or after a temporary ban ended.
            let record = accounts::get(db, id).await?;
            let back = record.is_some_and(|r| match r.state {
                AccountState::Pairing => r.me.is_some(),
                AccountState::Banned => r.cool_until.is_some_and(|t| t <= Utc::now()),
                _ => false,
            });
            if back {
                accounts::set_state(db, id, AccountState::Connected, Some("connected"), None)
                    .await?;
            }
        }
        SessionEvent::LoggedOut { reason } => {
            warn!(account = id, "native session logged out: {reason}");
            accounts::set_state(db, id, AccountState::LoggedOut, Some(reason), None).await?;
            // A logged-out session cannot come back; the next pairing starts afresh. (The
            // host stops the session at its next pass; the files go now.)
            forget_session(session_file);
            return Ok(true);
        }
        SessionEvent::Banned { for_secs, reason } => {
            warn!(account = id, "native account banned: {reason}");
            let until = for_secs.map(|s| Utc::now() + chrono::Duration::seconds(s as i64));
            accounts::set_state(db, id, AccountState::Banned, Some(reason), until).await?;
            return Ok(true);
        }
        SessionEvent::Failed { reason } => {
            warn!(account = id, "native session failed: {reason}");
            accounts::set_state(db, id, AccountState::Failed, Some(reason), None).await?;
            return Ok(true);
        }
        SessionEvent::Disconnected { reason } => {
            info!(
                account = id,
                "native session disconnected (reconnecting): {reason}"
            );
        }
    }
    Ok(false)
}

struct Running {
    session: NativeSession,
    events: tokio::task::JoinHandle<()>,
    /// When this process last renewed the account's host lease.
    renewed: std::time::Instant,
}

/// The native sessions this process runs.
pub struct NativeHost {
    pool: Arc<Pool>,
    owner: String,
    running: Mutex<HashMap<String, Running>>,
}

/// Whether a worker should run this account's session: one being paired, one that works,
/// or one whose temporary ban is over.
fn wanted(r: &AccountRecord) -> bool {
    r.kind == AccountKind::Native
        && !r.paused
        && match r.state {
            AccountState::Pairing | AccountState::Connected | AccountState::CoolingDown => true,
            AccountState::Banned => r.cool_until.is_some_and(|t| t <= Utc::now()),
            _ => false,
        }
}

impl NativeHost {
    pub fn new(pool: Arc<Pool>, owner: String) -> Self {
        NativeHost {
            pool,
            owner,
            running: Mutex::default(),
        }
    }

    /// One pass: start the sessions this process may hold, keep their leases, stop the rest.
    /// A failure with one account does not hold up the others; a session whose lease this
    /// process could not renew for two thirds of its length stops, since another process may
    /// hold it by then.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let lease = Duration::from_secs(self.pool.settings.native_lease_secs.max(3));
        let db = self.pool.db().clone();
        let records: Vec<AccountRecord> = accounts::list(&db)
            .await?
            .into_iter()
            .filter(|r| r.kind == AccountKind::Native)
            .collect();
        let mut running = self.running.lock().await;
        let mut changed = false;
        for r in &records {
            match self.pass(r, lease, &mut running).await {
                Ok(c) => changed |= c,
                Err(e) => warn!(account = %r.id, "native session: {e:#}"),
            }
        }
        let stale: Vec<String> = running
            .iter()
            .filter(|(id, run)| {
                !records.iter().any(|r| &r.id == *id) || run.renewed.elapsed() > lease * 2 / 3
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(run) = running.remove(&id) {
                warn!(account = %id, "native session stopped: removed, or its lease not renewed");
                stop(run).await;
            }
            changed = true;
        }
        for r in &records {
            self.pool.set_native(
                &r.id,
                running.get(&r.id).map(|run| session_backend(&run.session)),
            );
        }
        drop(running);
        if changed {
            self.pool.refresh().await?;
        }
        Ok(())
    }

    /// Starts, keeps or stops one account's session. Returns whether anything changed.
    async fn pass(
        &self,
        r: &AccountRecord,
        lease: Duration,
        running: &mut HashMap<String, Running>,
    ) -> anyhow::Result<bool> {
        let db = self.pool.db();
        let here = running.contains_key(&r.id);
        let file = session_file(&self.pool.settings.native_dir, &r.id);
        // A paired account whose session file is not on this machine is left to the worker
        // that has it: starting afresh here would un-pair it.
        let startable = here || r.state == AccountState::Pairing || file.exists();
        let keep = wanted(r) && startable && accounts::hold(db, &r.id, &self.owner, lease).await?;
        if keep && here {
            if let Some(run) = running.get_mut(&r.id) {
                run.renewed = std::time::Instant::now();
            }
            return Ok(false);
        }
        if keep {
            match self.start(r).await {
                Ok(run) => {
                    running.insert(r.id.clone(), run);
                }
                Err(e) => {
                    warn!(account = %r.id, "native session cannot start: {e}");
                    accounts::set_state(db, &r.id, AccountState::Failed, Some(&e), None).await?;
                    accounts::let_go(db, &r.id, &self.owner).await?;
                }
            }
            return Ok(true);
        }
        if here {
            if let Some(run) = running.remove(&r.id) {
                stop(run).await;
            }
            if !wanted(r) {
                accounts::let_go(db, &r.id, &self.owner).await?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    async fn start(&self, r: &AccountRecord) -> Result<Running, String> {
        let settings: NativeSettings = serde_json::from_value(r.settings.clone())
            .map_err(|e| format!("native settings: {e}"))?;
        let dir = &self.pool.settings.native_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("creating the session directory {}: {e}", dir.display()))?;
        let file = session_file(dir, &r.id);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let pair_with_phone = r.state == AccountState::Pairing && r.me.is_none();
        let session = NativeSession::start(&file, &settings, pair_with_phone, tx).await?;
        info!(account = %r.id, "native session started");
        let db = self.pool.db().clone();
        let id = r.id.clone();
        let events = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match record_event(&db, &id, &event, &file).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => warn!(account = %id, "recording a session event: {e:#}"),
                }
            }
        });
        Ok(Running {
            session,
            events,
            renewed: std::time::Instant::now(),
        })
    }

    /// Stops every session (a stopping worker) and gives their leases back.
    pub async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        for (id, run) in running.drain() {
            stop(run).await;
            self.pool.set_native(&id, None);
            if let Err(e) = accounts::let_go(self.pool.db(), &id, &self.owner).await {
                warn!(account = %id, "giving the session back: {e}");
            }
        }
    }
}

fn session_backend(s: &NativeSession) -> Arc<dyn wacheck_backends::CheckBackend> {
    s.backend()
}

async fn stop(run: Running) {
    run.events.abort();
    if tokio::time::timeout(Duration::from_secs(10), run.session.stop())
        .await
        .is_err()
    {
        warn!("a native session did not stop within 10 s");
    }
}
