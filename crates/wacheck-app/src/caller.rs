//! Who asks: the user behind a key or token, what the key may do, and the user's limits. Every
//! use case takes a [`Caller`] and decides here, once, whether the caller may.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use wacheck_store::keys;
use wacheck_store::users::{self, UserLimits};

use crate::{Code, Error};

/// What a key or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Single-number checks.
    Check,
    /// Tasks, and the caller's own accounts.
    Tasks,
    /// Everything, for every user.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Check, Scope::Tasks, Scope::Admin];
    /// What a key or token carries when nothing else is asked for.
    pub const DEFAULT: [Scope; 2] = [Scope::Check, Scope::Tasks];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Check => "check",
            Scope::Tasks => "tasks",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scopes a new key asks for: the defaults when none are named; an unknown or empty
    /// list is refused.
    pub fn asked(names: Option<&[String]>) -> Result<Vec<Scope>, Error> {
        let Some(names) = names else {
            return Ok(Scope::DEFAULT.to_vec());
        };
        if names.is_empty() {
            return Err(Error::new(Code::InvalidParameter, "a key needs a scope"));
        }
        let mut out = Vec::new();
        for name in names {
            let scope = Scope::parse(name).ok_or_else(|| {
                Error::new(
                    Code::InvalidParameter,
                    format!("unknown scope `{name}`: use check, tasks or admin"),
                )
            })?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        Ok(out)
    }

    /// The scopes a stored key or a token's `scope` claim names, in their order; unknown
    /// names grant nothing.
    pub fn granted<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        let mut out = Vec::new();
        for scope in names.into_iter().filter_map(Scope::parse) {
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        out
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Service-wide default limits of every user (each user may have their own).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per minute of one key (or token subject); 0: unlimited.
    pub requests_per_minute: u32,
    /// Requests that may come at once.
    pub request_burst: u32,
    /// Input rows a user may upload per UTC day; 0: unlimited.
    pub numbers_per_day: u64,
    /// Tasks of a user being checked at once; 0: unlimited.
    pub max_concurrent_tasks: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            requests_per_minute: 6_000,
            request_burst: 200,
            numbers_per_day: 0,
            max_concurrent_tasks: 0,
        }
    }
}

/// A user's limits with the defaults filled in (0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub request_burst: u32,
    pub numbers_per_day: u64,
    pub max_concurrent_tasks: u32,
    pub max_rows: u64,
}

impl Limits {
    /// `user`'s own limits over the `defaults`; rows never exceed the service's `max_rows`.
    pub fn of(user: &UserLimits, defaults: &LimitSettings, max_rows: u64) -> Limits {
        Limits {
            requests_per_minute: user
                .requests_per_minute
                .unwrap_or(defaults.requests_per_minute),
            request_burst: user.request_burst.unwrap_or(defaults.request_burst).max(1),
            numbers_per_day: user.numbers_per_day.unwrap_or(defaults.numbers_per_day),
            max_concurrent_tasks: user
                .max_concurrent_tasks
                .unwrap_or(defaults.max_concurrent_tasks),
            max_rows: user.max_rows.unwrap_or(max_rows).min(max_rows).max(1),
        }
    }
}

/// The caller of a use case.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub id: String,
    pub scopes: Vec<Scope>,
    /// The key used (`None` for a token or the command line).
    pub key_id: Option<String>,
    pub limits: Limits,
    /// What the use cases found of the caller's quotas (HTTP shows it in `X-Quota-*`).
    pub quota: crate::quota::QuotaReport,
}

impl Caller {
    /// The operator at the command line: an admin, without limits, whose id no user can have.
    pub fn operator() -> Caller {
        Caller {
            id: "(command line)".into(),
            scopes: vec![Scope::Admin],
            key_id: None,
            limits: Limits {
                requests_per_minute: 0,
                request_burst: 1,
                numbers_per_day: 0,
                max_concurrent_tasks: 0,
                max_rows: u64::MAX,
            },
            quota: Default::default(),
        }
    }

    /// Who presents the API key `key`; `None` for an unknown or revoked key, or a key of a
    /// disabled user. `defaults` and `max_rows` fill the limits the user has none of.
    pub async fn by_key(
        db: &PgPool,
        defaults: &LimitSettings,
        max_rows: u64,
        key: &str,
    ) -> Result<Option<Caller>, Error> {
        let Some(k) = keys::authenticate(db, key).await? else {
            return Ok(None);
        };
        Ok(Some(Caller {
            limits: Limits::of(&k.limits, defaults, max_rows),
            scopes: Scope::granted(k.scopes.iter().map(String::as_str)),
            id: k.user_id,
            key_id: Some(k.key_id),
            quota: Default::default(),
        }))
    }

    /// The active user a verified token names, with the token's space-separated `scope` (the
    /// default scopes when it names none); `None` when the user is gone or disabled.
    pub async fn by_token(
        db: &PgPool,
        defaults: &LimitSettings,
        max_rows: u64,
        subject: &str,
        scope: Option<&str>,
    ) -> Result<Option<Caller>, Error> {
        let Some(user) = users::active(db, subject).await? else {
            return Ok(None);
        };
        Ok(Some(Caller {
            limits: Limits::of(&user.limits, defaults, max_rows),
            scopes: scope.map_or(Scope::DEFAULT.to_vec(), |s| {
                Scope::granted(s.split_whitespace())
            }),
            id: user.id,
            key_id: None,
            quota: Default::default(),
        }))
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has(Scope::Admin)
    }

    /// The caller must hold `scope` (admins may do everything).
    pub fn require(&self, scope: Scope) -> Result<(), Error> {
        if self.has(scope) || self.is_admin() {
            Ok(())
        } else {
            Err(Error::new(
                Code::MissingScope,
                format!("this API key lacks the `{scope}` scope"),
            ))
        }
    }

    /// The `user_id` a request names must be the caller (admins may name anyone); anything
    /// else looks like a missing resource (no existence leak). Returns whose resources to use.
    pub fn acting_for<'a>(&'a self, user_id: &'a str) -> Result<&'a str, Error> {
        if self.id == user_id || self.is_admin() {
            Ok(user_id)
        } else {
            Err(Error::task_not_found())
        }
    }

    /// May the caller see or change what `owner` owns (`None`: the shared pool, admins only)?
    pub fn owns(&self, owner: Option<&str>) -> bool {
        self.is_admin() || owner == Some(self.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &[Scope]) -> Caller {
        Caller {
            id: "alice".into(),
            scopes: scopes.to_vec(),
            key_id: None,
            limits: Limits::of(&UserLimits::default(), &LimitSettings::default(), 10),
            quota: Default::default(),
        }
    }

    #[test]
    fn a_scope_is_required_unless_the_caller_is_an_admin() {
        let checker = caller(&[Scope::Check]);
        assert!(checker.require(Scope::Check).is_ok());
        let refused = checker.require(Scope::Tasks).unwrap_err();
        assert_eq!(refused.code(), Code::MissingScope);
        assert_eq!(refused.message(), "this API key lacks the `tasks` scope");
        assert!(caller(&[Scope::Admin]).require(Scope::Tasks).is_ok());
    }

    #[test]
    fn only_admins_act_for_others_and_others_see_no_such_task() {
        let alice = caller(&[Scope::Tasks]);
        assert_eq!(alice.acting_for("alice").unwrap(), "alice");
        assert_eq!(alice.acting_for("bob").unwrap_err().code(), Code::NotFound);
        assert_eq!(caller(&[Scope::Admin]).acting_for("bob").unwrap(), "bob");
        assert!(alice.owns(Some("alice")));
        assert!(!alice.owns(Some("bob")));
        assert!(!alice.owns(None));
    }

    #[test]
    fn scopes_asked_for_and_granted() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            Scope::asked(None).unwrap(),
            vec![Scope::Check, Scope::Tasks]
        );
        assert_eq!(
            Scope::asked(Some(&names(&["admin", "admin"]))).unwrap(),
            vec![Scope::Admin]
        );
        assert_eq!(
            Scope::asked(Some(&names(&["root"]))).unwrap_err().message(),
            "unknown scope `root`: use check, tasks or admin"
        );
        assert_eq!(
            Scope::asked(Some(&[])).unwrap_err().code(),
            Code::InvalidParameter
        );
        assert_eq!(
            Scope::granted(["tasks", "root", "check", "tasks"]),
            vec![Scope::Tasks, Scope::Check]
        );
    }

    #[test]
    fn user_limits_fall_back_to_the_defaults_and_rows_never_exceed_the_service() {
        let defaults = LimitSettings::default();
        let own = UserLimits {
            requests_per_minute: Some(10),
            max_rows: Some(10_000_000),
            ..Default::default()
        };
        let l = Limits::of(&own, &defaults, 5_000_000);
        assert_eq!(l.requests_per_minute, 10);
        assert_eq!(l.request_burst, defaults.request_burst);
        assert_eq!(l.max_rows, 5_000_000);
    }
}
