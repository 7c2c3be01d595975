//! `wacheck users …`, `wacheck keys …` and `wacheck token create`: who may call the API.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use wacheck_app::users::{self as app, UserLimitsChange};
use wacheck_app::{Caller, Scope};
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
    fn change(&self) -> anyhow::Result<UserLimitsChange> {
        Ok(UserLimitsChange {
            requests_per_minute: limit(&self.requests_per_minute)?,
            request_burst: limit(&self.request_burst)?,
            numbers_per_day: limit(&self.numbers_per_day)?,
            max_concurrent_tasks: limit(&self.max_concurrent_tasks)?,
            max_rows: limit(&self.max_rows)?,
        })
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

/// The scopes of a new key: the defaults when none are named.
fn scopes_of(scopes: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let asked = Scope::asked((!scopes.is_empty()).then_some(scopes))?;
    Ok(asked.into_iter().map(Scope::name).collect())
}

fn valid(id: &str) -> anyhow::Result<&str> {
    Ok(app::valid_id(id)?)
}

fn done() -> anyhow::Result<()> {
    eprintln!("done");
    Ok(())
}

pub async fn users(
    db: &sqlx::PgPool,
    config: &crate::config::Config,
    command: UsersCommand,
) -> anyhow::Result<()> {
    let operator = Caller::operator();
    match command {
        UsersCommand::Create { id, limits } => {
            let user = app::create(db, &operator, &id, limits.change()?).await?;
            let id = user.id;
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
            app::update(db, &operator, &id, Some(true), None).await?;
            done()
        }
        UsersCommand::Enable { id } => {
            app::update(db, &operator, &id, Some(false), None).await?;
            done()
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
            app::update(db, &operator, &id, None, Some(limits.change()?)).await?;
            done()
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
            // Refused scopes or a refused name write nothing, not even the user.
            Scope::asked((!scopes.is_empty()).then_some(&scopes[..]))?;
            if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
                anyhow::bail!("a key's name is at most 100 characters");
            }
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
            let scopes = (!scopes.is_empty()).then_some(&scopes[..]);
            let (_, key) =
                app::issue_key(db, &Caller::operator(), user, scopes, name.as_deref()).await?;
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
        KeysCommand::Revoke { id } => {
            app::revoke_key(db, &Caller::operator(), &id).await?;
            done()
        }
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
