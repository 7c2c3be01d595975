//! Users and their keys: create, read, disable and enable users, change their limits; issue,
//! list and revoke keys. Admins only (the command line acts as an admin).

use sqlx::PgPool;
use wacheck_store::keys::{self, KeyRecord};
use wacheck_store::users::{self, QuotaUse, UserLimits, UserRecord};

use crate::{Caller, Code, Error, Scope};

/// A user's own limits to set: `None` keeps what is there, `Some(None)` goes back to the
/// service's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserLimitsChange {
    pub requests_per_minute: Option<Option<u32>>,
    pub request_burst: Option<Option<u32>>,
    pub numbers_per_day: Option<Option<u64>>,
    pub max_concurrent_tasks: Option<Option<u32>>,
    pub max_rows: Option<Option<u64>>,
}

impl UserLimitsChange {
    /// `l` with these changes, refused when a value cannot work.
    pub fn over(&self, mut l: UserLimits) -> Result<UserLimits, Error> {
        if let Some(v) = self.requests_per_minute {
            l.requests_per_minute = v;
        }
        if let Some(v) = self.request_burst {
            l.request_burst = v;
        }
        if let Some(v) = self.numbers_per_day {
            l.numbers_per_day = v;
        }
        if let Some(v) = self.max_concurrent_tasks {
            l.max_concurrent_tasks = v;
        }
        if let Some(v) = self.max_rows {
            l.max_rows = v;
        }
        l.check()
            .map_err(|why| Error::new(Code::InvalidParameter, why))?;
        Ok(l)
    }
}

fn no_user() -> Error {
    Error::new(Code::NotFound, "no such user")
}

/// A user id as given, if it can be one.
pub fn valid_id(id: &str) -> Result<&str, Error> {
    let id = id.trim();
    if wacheck_core::account::valid_user_id(id) {
        Ok(id)
    } else {
        Err(Error::new(
            Code::InvalidParameter,
            "a user id is 1-64 letters, digits, `-`, `_`, `.` and `@`",
        ))
    }
}

/// What the caller's own quotas used today.
pub async fn own_use(db: &PgPool, caller: &Caller) -> Result<QuotaUse, Error> {
    Ok(users::quota_use(db, &caller.id).await?)
}

/// Every user with what their quotas used.
pub async fn list(db: &PgPool, caller: &Caller) -> Result<Vec<(UserRecord, QuotaUse)>, Error> {
    caller.require(Scope::Admin)?;
    let mut out = Vec::new();
    for u in users::list(db).await? {
        let used = users::quota_use(db, &u.id).await?;
        out.push((u, used));
    }
    Ok(out)
}

/// One user with what their quotas used.
pub async fn get(db: &PgPool, caller: &Caller, id: &str) -> Result<(UserRecord, QuotaUse), Error> {
    caller.require(Scope::Admin)?;
    let u = users::get(db, id).await?.ok_or_else(no_user)?;
    let used = users::quota_use(db, &u.id).await?;
    Ok((u, used))
}

/// Creates a user with its own limits over the defaults.
pub async fn create(
    db: &PgPool,
    caller: &Caller,
    id: &str,
    limits: UserLimitsChange,
) -> Result<UserRecord, Error> {
    caller.require(Scope::Admin)?;
    let id = valid_id(id)?;
    let limits = limits.over(UserLimits::default())?;
    if !users::create(db, id).await? {
        return Err(Error::new(
            Code::UserExists,
            format!("a user `{id}` exists already"),
        ));
    }
    users::set_limits(db, id, limits).await?;
    users::get(db, id).await?.ok_or_else(no_user)
}

/// Disables or enables a user, and changes their limits; everything is checked before
/// anything is written.
pub async fn update(
    db: &PgPool,
    caller: &Caller,
    id: &str,
    disabled: Option<bool>,
    limits: Option<UserLimitsChange>,
) -> Result<(), Error> {
    caller.require(Scope::Admin)?;
    let u = users::get(db, id).await?.ok_or_else(no_user)?;
    if disabled == Some(true) && u.id == caller.id {
        return Err(Error::new(
            Code::CannotDisableSelf,
            "an admin cannot disable their own user (it would lock them out); \
             ask another admin or use `wacheck users disable`",
        ));
    }
    let limits = limits.map(|l| l.over(u.limits)).transpose()?;
    if let Some(limits) = limits {
        users::set_limits(db, &u.id, limits).await?;
    }
    if let Some(d) = disabled {
        users::set_disabled(db, &u.id, d).await?;
    }
    Ok(())
}

/// A user's keys, newest first.
pub async fn keys(db: &PgPool, caller: &Caller, user: &str) -> Result<Vec<KeyRecord>, Error> {
    caller.require(Scope::Admin)?;
    users::get(db, user).await?.ok_or_else(no_user)?;
    Ok(keys::list(db, Some(user)).await?)
}

/// A new key for `user` with the scopes asked for (the defaults when none are named): its
/// record, and the key itself, which is never shown again.
pub async fn issue_key(
    db: &PgPool,
    caller: &Caller,
    user: &str,
    scopes: Option<&[String]>,
    name: Option<&str>,
) -> Result<(KeyRecord, String), Error> {
    caller.require(Scope::Admin)?;
    let owner = users::get(db, user).await?.ok_or_else(no_user)?;
    let scopes: Vec<&str> = Scope::asked(scopes)?.into_iter().map(Scope::name).collect();
    if name.is_some_and(|n| n.chars().count() > 100) {
        return Err(Error::new(
            Code::InvalidParameter,
            "a key's name is at most 100 characters",
        ));
    }
    Ok(keys::issue(db, &owner.id, &scopes, name).await?)
}

/// Revokes a live key (not the one the caller is using).
pub async fn revoke_key(db: &PgPool, caller: &Caller, key_id: &str) -> Result<(), Error> {
    caller.require(Scope::Admin)?;
    if caller.key_id.as_deref() == Some(key_id) {
        return Err(Error::new(
            Code::KeyInUse,
            "this request is made with that key: revoke it with another key, \
             or with `wacheck keys revoke`",
        ));
    }
    if keys::revoke(db, key_id).await? {
        Ok(())
    } else {
        Err(Error::new(Code::NotFound, "no such live key"))
    }
}
