//! The WhatsApp accounts: list, add, change, pause, resume and remove them, name them, show the
//! QR code of one being paired, and what a task cost each. Admins see every account; other
//! callers only their own, and someone else's account looks exactly like a missing one.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use wacheck_core::{AccountKind, AccountState, TaskId};
use wacheck_engine::pool::{AddError, add_account};
use wacheck_store::accounts::{self, AccountRecord, Limits, NewAccount, TaskUsage};
use wacheck_store::tasks::TaskRecord;

use crate::{Caller, Code, Error, Scope};

/// Longest random pause before each call an account may be given.
const MAX_JITTER_MS: u32 = 600_000;

/// Limits to set; what is missing keeps its current (or default) value.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitsChange {
    pub per_minute: Option<u32>,
    pub burst: Option<u32>,
    pub daily_cap: Option<u32>,
    pub jitter_ms: Option<u32>,
}

impl LimitsChange {
    /// `base` with these changes; a burst of 0 or a jitter over 10 minutes is refused.
    pub fn over(&self, base: Limits) -> Result<Limits, Error> {
        let l = Limits {
            per_minute: self.per_minute.unwrap_or(base.per_minute),
            burst: self.burst.unwrap_or(base.burst),
            daily_cap: self.daily_cap.unwrap_or(base.daily_cap),
            jitter_ms: self.jitter_ms.unwrap_or(base.jitter_ms),
        };
        if l.burst == 0 {
            return Err(Error::new(
                Code::InvalidParameter,
                "burst must be at least 1",
            ));
        }
        if l.jitter_ms > MAX_JITTER_MS {
            return Err(Error::new(
                Code::InvalidParameter,
                "jitter_ms must be at most 600000 (10 minutes)",
            ));
        }
        Ok(l)
    }
}

/// An account with what it did today and its other names.
#[derive(Debug)]
pub struct Summary {
    pub record: AccountRecord,
    pub checks_today: i64,
    pub aliases: Vec<String>,
}

fn no_account(id: &str) -> Error {
    Error::new(Code::NotFound, format!("no account `{id}`"))
}

/// The account `id`, if the caller may see it.
pub async fn visible(db: &PgPool, caller: &Caller, id: &str) -> Result<AccountRecord, Error> {
    caller.require(Scope::Tasks)?;
    accounts::get(db, id)
        .await?
        .filter(|r| caller.owns(r.owner.as_deref()))
        .ok_or_else(|| no_account(id))
}

/// Every account the caller may see, by id.
pub async fn list(db: &PgPool, caller: &Caller) -> Result<Vec<Summary>, Error> {
    caller.require(Scope::Tasks)?;
    let today: HashMap<String, i64> = accounts::checks_today(db).await?.into_iter().collect();
    let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
    for (account, alias) in accounts::aliases(db).await? {
        aliases.entry(account).or_default().push(alias);
    }
    Ok(accounts::list(db)
        .await?
        .into_iter()
        .filter(|r| caller.owns(r.owner.as_deref()))
        .map(|record| Summary {
            checks_today: today.get(&record.id).copied().unwrap_or(0),
            aliases: aliases.remove(&record.id).unwrap_or_default(),
            record,
        })
        .collect())
}

/// One account the caller may see.
pub async fn show(db: &PgPool, caller: &Caller, id: &str) -> Result<Summary, Error> {
    let record = visible(db, caller, id).await?;
    let checks_today = accounts::checks_on(db, &record.id, Utc::now().date_naive()).await?;
    let aliases = accounts::aliases(db)
        .await?
        .into_iter()
        .filter(|(a, _)| *a == record.id)
        .map(|(_, alias)| alias)
        .collect();
    Ok(Summary {
        record,
        checks_today,
        aliases,
    })
}

/// An account to add.
#[derive(Debug)]
pub struct NewAccountRequest {
    pub id: String,
    pub kind: AccountKind,
    /// What the backend needs (docs/backends.md).
    pub settings: Value,
    pub limits: LimitsChange,
    /// Admins add to the shared pool unless they name a user; other callers' accounts are
    /// always their own.
    pub owner: Option<String>,
}

/// Whether the caller may add accounts at all (`user_accounts`: whether callers other than
/// admins may add their own).
pub fn may_add(caller: &Caller, user_accounts: bool) -> Result<(), Error> {
    caller.require(Scope::Tasks)?;
    if !caller.is_admin() && !user_accounts {
        return Err(Error::new(
            Code::MissingScope,
            "only admins add accounts here (the operator may let users add their own: \
             accounts.user_accounts)",
        ));
    }
    Ok(())
}

/// Adds an account: a gateway is asked at once whether its session works; a native account
/// waits to be paired. `user_accounts`: whether callers other than admins may add their own.
pub async fn add(
    db: &PgPool,
    caller: &Caller,
    user_accounts: bool,
    new: NewAccountRequest,
) -> Result<AccountRecord, Error> {
    may_add(caller, user_accounts)?;
    let owner = match (caller.is_admin(), new.owner) {
        (true, owner) => owner,
        (false, None) => Some(caller.id.clone()),
        (false, Some(o)) if o == caller.id => Some(o),
        (false, Some(_)) => {
            return Err(Error::new(
                Code::MissingScope,
                "only admins add accounts for other users",
            ));
        }
    };
    let new = NewAccount {
        id: new.id,
        kind: new.kind,
        owner,
        settings: new.settings,
        limits: new.limits.over(Limits::default())?,
        state: AccountState::Pairing,
        builtin: false,
    };
    add_account(db, new).await.map_err(|e| match e {
        AddError::Invalid(m) => Error::new(Code::InvalidAccount, m),
        AddError::Exists(_) => Error::new(Code::AccountExists, e.to_string()),
        AddError::Store(s) => s.into(),
    })
}

/// Changes an account's limits, and pauses or resumes it.
pub async fn change(
    db: &PgPool,
    caller: &Caller,
    id: &str,
    paused: Option<bool>,
    limits: LimitsChange,
) -> Result<(), Error> {
    let r = visible(db, caller, id).await?;
    let limits = limits.over(r.limits)?;
    if limits != r.limits {
        accounts::set_limits(db, &r.id, limits).await?;
    }
    if let Some(p) = paused {
        accounts::set_paused(db, &r.id, p).await?;
    }
    Ok(())
}

/// Removes an account.
pub async fn remove(db: &PgPool, caller: &Caller, id: &str) -> Result<(), Error> {
    let r = visible(db, caller, id).await?;
    if !accounts::remove(db, &r.id).await? {
        return Err(no_account(id));
    }
    Ok(())
}

/// Whether a name can be an alias: it has to fit in one URL path segment.
fn valid_alias(a: &str) -> bool {
    (1..=200).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+=".contains(&b))
}

/// Gives an account another name (a Walytic session or CommBox stream id).
pub async fn add_alias(db: &PgPool, caller: &Caller, id: &str, alias: &str) -> Result<(), Error> {
    let r = visible(db, caller, id).await?;
    if !valid_alias(alias) {
        return Err(Error::new(
            Code::InvalidParameter,
            "an alias is 1-200 letters, digits and -_.~+=",
        ));
    }
    if !accounts::add_alias(db, alias, &r.id).await? {
        return Err(Error::new(
            Code::AliasTaken,
            format!("`{alias}` names another account already"),
        ));
    }
    Ok(())
}

/// Removes a name of an account.
pub async fn remove_alias(
    db: &PgPool,
    caller: &Caller,
    id: &str,
    alias: &str,
) -> Result<(), Error> {
    let r = visible(db, caller, id).await?;
    if !accounts::remove_alias(db, alias, &r.id).await? {
        return Err(Error::new(
            Code::NotFound,
            format!("`{id}` has no alias `{alias}`"),
        ));
    }
    Ok(())
}

/// The QR code a native account being paired shows now.
pub async fn qr_code(db: &PgPool, caller: &Caller, id: &str) -> Result<String, Error> {
    let r = visible(db, caller, id).await?;
    if r.state != AccountState::Pairing {
        return Err(Error::new(
            Code::NotPairing,
            format!("account `{}` is {}, not pairing", r.id, r.state),
        ));
    }
    r.qr_code
        .filter(|_| r.qr_expires_at.is_some_and(|t| t > Utc::now()))
        .ok_or_else(|| {
            Error::new(
                Code::NotFound,
                "no QR code right now: a worker shows one once the session reaches WhatsApp; \
                 ask again in a few seconds",
            )
        })
}

/// What a task cost each account: its owner and admins may see it.
pub async fn task_usage(
    db: &PgPool,
    caller: &Caller,
    task_id: &str,
) -> Result<(TaskRecord, Vec<TaskUsage>), Error> {
    caller.require(Scope::Tasks)?;
    let id: TaskId = task_id.parse().map_err(|_| Error::task_not_found())?;
    let task = wacheck_store::tasks::get(db, id)
        .await?
        .filter(|t| caller.owns(Some(&t.user_id)))
        .ok_or_else(Error::task_not_found)?;
    let usage = accounts::task_usage(db, task.id).await?;
    Ok((task, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_keep_what_is_not_given_and_refuse_nonsense() {
        let base = Limits::default();
        let l = LimitsChange {
            per_minute: Some(30),
            ..Default::default()
        }
        .over(base)
        .unwrap();
        assert_eq!((l.per_minute, l.burst), (30, base.burst));
        let refused = |c: LimitsChange| c.over(base).unwrap_err().message().to_owned();
        assert_eq!(
            refused(LimitsChange {
                burst: Some(0),
                ..Default::default()
            }),
            "burst must be at least 1"
        );
        assert_eq!(
            refused(LimitsChange {
                jitter_ms: Some(600_001),
                ..Default::default()
            }),
            "jitter_ms must be at most 600000 (10 minutes)"
        );
    }

    #[test]
    fn aliases_fit_one_path_segment() {
        assert!(valid_alias("stream-7.a~b+c=d_e"));
        assert!(!valid_alias(""));
        assert!(!valid_alias("a/b"));
        assert!(!valid_alias(&"x".repeat(201)));
    }
}
