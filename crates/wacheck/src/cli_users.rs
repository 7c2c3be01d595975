//! `wacheck users …`, `wacheck keys …` and `wacheck token create`: who may call the API.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use wacheck_store::users::UserLimits;
use wacheck_store::{keys, users};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        id: String,
        #[command(flatten)]
        limits: UserLimitArgs,
    },
    /// List users with their own limits.
    List,
    /// Refuse every key and token of a user (their tasks and results stay).
    Disable { id: String },
    /// Let a disabled user call again.
    Enable { id: String },
    /// Delete a user with their keys, history and own accounts. Refused while they have
    /// tasks, unless `--with-data` (then their tasks and result files go too).
    Delete {
        id: String,
        /// Delete the user's tasks and result files as well.
        #[arg(long)]
        with_data: bool,
    },
    /// Set a user's own limits (`--numbers-per-day default` goes back to the service's).
    Limits {
        id: String,
        #[command(flatten)]
        limits: UserLimitArgs,
    },
}

/// A limit as given: a number, or `default` for the service's; `None` when not given.
fn limit<T: std::str::FromStr>(s: &Option<String>) -> anyhow::Result<Option<Option<T>>> {
    match s.as_deref() {
        None => Ok(None),
        Some("default") => Ok(Some(None)),
        Some(v) => v
            .parse()
            .map(|n| Some(Some(n)))
            .map_err(|_| anyhow::anyhow!("`{v}` is neither a number nor `default`")),
    }
}

#[derive(Args, Default)]
pub struct UserLimitArgs {
    /// Requests per minute of each of the user's keys (0: unlimited; `default`: the service's).
    #[arg(long)]
    requests_per_minute: Option<String>,
    /// Requests that may come at once.
    #[arg(long)]
    request_burst: Option<String>,
    /// Input rows the user may upload per UTC day (0: unlimited).
    #[arg(long)]
    numbers_per_day: Option<String>,
    /// Tasks being checked at once (0: unlimited).
    #[arg(long)]
    max_concurrent_tasks: Option<String>,
    /// Input rows per task (at most the service's `api.max_rows`).
    #[arg(long)]
    max_rows: Option<String>,
}

impl UserLimitArgs {
    fn over(&self, mut l: UserLimits) -> anyhow::Result<UserLimits> {
        if let Some(v) = limit::<u32>(&self.requests_per_minute)? {
            l.requests_per_minute = v;
        }
        if let Some(v) = limit::<u32>(&self.request_burst)? {
            l.request_burst = v.map(|b| b.max(1));
        }
        if let Some(v) = limit::<u64>(&self.numbers_per_day)? {
            l.numbers_per_day = v;
        }
        if let Some(v) = limit::<u32>(&self.max_concurrent_tasks)? {
            l.max_concurrent_tasks = v;
        }
        if let Some(v) = limit::<u64>(&self.max_rows)? {
            l.max_rows = v.map(|r| r.max(1));
        }
        l.check().map_err(anyhow::Error::msg)?;
        Ok(l)
    }
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key for a user; prints only the key, once.
    Create {
        #[arg(long)]
        user: String,
        /// Create the user first when there is none of that id (otherwise an unknown user,
        /// such as a typo, is refused).
        #[arg(long)]
        create_user: bool,
        /// What the key may do: check, tasks, admin (repeat or comma-separate; default
        /// check,tasks).
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
        /// A label, to tell keys apart in lists.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (of one user, or all): id, prefix, scopes, last use, revocation.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a key by its id (from `keys list`).
    Revoke { id: String },
}

fn scopes_of(scopes: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if scopes.is_empty() {
        return Ok(keys::DEFAULT_SCOPES.to_vec());
    }
    scopes
        .iter()
        .map(|s| {
            keys::SCOPES
                .iter()
                .find(|k| **k == s.as_str())
                .copied()
                .with_context(|| format!("unknown scope `{s}`: use check, tasks or admin"))
        })
        .collect()
}

fn valid(id: &str) -> anyhow::Result<&str> {
    let id = id.trim();
    anyhow::ensure!(
        wacheck_core::account::valid_user_id(id),
        "a user id is 1-64 letters, digits, `-`, `_`, `.` and `@`"
    );
    Ok(id)
}

fn found(changed: bool, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(changed, "no {what}");
    eprintln!("done");
    Ok(())
}

pub async fn users(
    db: &sqlx::PgPool,
    config: &crate::config::Config,
    command: UsersCommand,
) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { id, limits } => {
            let id = valid(&id)?;
            let limits = limits.over(UserLimits::default())?;
            anyhow::ensure!(users::create(db, id).await?, "a user `{id}` exists already");
            users::set_limits(db, id, limits).await?;
            eprintln!("user `{id}` created; `wacheck keys create --user {id}` gives it a key");
            Ok(())
        }
        UsersCommand::List => {
            let show = |v: Option<u64>| v.map_or("default".to_owned(), |v| v.to_string());
            println!(
                "{:<24} {:<9} {:>9} {:>9} {:>12} {:>10} {:>10}",
                "user", "state", "req/min", "burst", "numbers/day", "tasks", "max_rows"
            );
            for u in users::list(db).await? {
                let l = u.limits;
                println!(
                    "{:<24} {:<9} {:>9} {:>9} {:>12} {:>10} {:>10}",
                    u.id,
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    },
                    show(l.requests_per_minute.map(u64::from)),
                    show(l.request_burst.map(u64::from)),
                    show(l.numbers_per_day),
                    show(l.max_concurrent_tasks.map(u64::from)),
                    show(l.max_rows),
                );
            }
            Ok(())
        }
        UsersCommand::Disable { id } => {
            found(users::set_disabled(db, &id, true).await?, "such user")
        }
        UsersCommand::Enable { id } => {
            found(users::set_disabled(db, &id, false).await?, "such user")
        }
        UsersCommand::Delete { id, with_data } => match users::delete(db, &id, with_data).await? {
            users::Deleted::NotFound => anyhow::bail!("no user `{id}`"),
            users::Deleted::HasTasks(n) => anyhow::bail!(
                "user `{id}` has {n} tasks: `wacheck users delete {id} --with-data` deletes \
                 them and their result files too (or `wacheck users disable {id}` keeps them)"
            ),
            users::Deleted::Done { tasks, files } => {
                let blob = crate::app::open_blob(config, db).await?;
                for key in &files {
                    blob.delete(key)
                        .await
                        .with_context(|| format!("removing the stored file {key}"))?;
                }
                eprintln!(
                    "user `{id}` deleted, with {tasks} tasks and {} files",
                    files.len()
                );
                Ok(())
            }
        },
        UsersCommand::Limits { id, limits } => {
            let u = users::get(db, &id).await?.context("no such user")?;
            found(
                users::set_limits(db, &id, limits.over(u.limits)?).await?,
                "such user",
            )
        }
    }
}

pub async fn keys(db: &sqlx::PgPool, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            user,
            create_user,
            scopes,
            name,
        } => {
            let user = valid(&user)?;
            let scopes = scopes_of(&scopes)?;
            if create_user {
                users::create(db, user).await?;
            } else {
                users::get(db, user).await?.with_context(|| {
                    format!(
                        "no user `{user}`: check its spelling (`wacheck users list`), or add \
                         --create-user to create it"
                    )
                })?;
            }
            let (_, key) = keys::issue(db, user, &scopes, name.as_deref()).await?;
            println!("{key}");
            Ok(())
        }
        KeysCommand::List { user } => {
            println!(
                "{:<26} {:<20} {:<12} {:<18} {:<20} {:<8} name",
                "id", "user", "prefix", "scopes", "last used", "state"
            );
            for k in keys::list(db, user.as_deref()).await? {
                println!(
                    "{:<26} {:<20} {:<12} {:<18} {:<20} {:<8} {}",
                    k.id,
                    k.user_id,
                    k.prefix,
                    k.scopes.join(","),
                    k.last_used_at
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "never".into()),
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "live"
                    },
                    k.name.unwrap_or_default()
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { id } => found(keys::revoke(db, &id).await?, "such live key"),
    }
}

#[derive(Args)]
pub struct TokenArgs {
    /// The user the token speaks for (its `sub`).
    #[arg(long)]
    user: String,
    /// Lifetime, in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// What it may do (default check,tasks).
    #[arg(long = "scope", value_delimiter = ',')]
    scopes: Vec<String>,
}

/// Prints an HS256 token signed with `auth.jwt_secret`.
pub async fn token(
    db: &sqlx::PgPool,
    config: &crate::config::Config,
    args: TokenArgs,
) -> anyhow::Result<()> {
    let user = valid(&args.user)?;
    users::active(db, user)
        .await?
        .with_context(|| format!("no active user `{user}` (wacheck users create {user})"))?;
    let scopes = scopes_of(&args.scopes)?.join(" ");
    let verifier = wacheck_api::JwtVerifier::new(&config.auth)?;
    let token = verifier.issue(user, Some(&scopes), Duration::from_secs(args.ttl.max(1)))?;
    println!("{token}");
    Ok(())
}
