//! `wacheck accounts …`: the account pool from the command line.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use wacheck_app::Caller;
use wacheck_app::accounts::{self as app, LimitsChange, NewAccountRequest, Summary};
use wacheck_core::{AccountKind, AccountState};
use wacheck_store::accounts::{self, AccountRecord};

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Add an account: `--native NAME` pairs a WhatsApp session of our own here (QR code in
    /// the terminal, or a pair code with `--phone`); `--waha NAME` / `--evolution NAME` use a
    /// session of a gateway; `--simulated NAME` answers by the documented rule.
    Add(Box<AddArgs>),
    /// List the accounts with their state and today's checks.
    List,
    /// Stop giving work to an account.
    Pause { name: String },
    /// Give work to an account again (also after a logout or failure the operator fixed).
    Resume { name: String },
    /// Change an account's budget.
    Limits {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Remove an account (a native account's session file stays in `native_dir`).
    Remove { name: String },
    /// Give an account another name: the session id a Walytic client sends, or the stream
    /// id of a CommBox client.
    Alias { name: String, alias: String },
    /// Remove a name of an account.
    Unalias { name: String, alias: String },
    /// What a task cost each account.
    Usage {
        #[arg(long)]
        task: String,
    },
}

#[derive(Args, Default)]
pub struct LimitArgs {
    /// Checks per minute (0: unlimited).
    #[arg(long)]
    per_minute: Option<u32>,
    /// Checks that may go at once.
    #[arg(long)]
    burst: Option<u32>,
    /// Checks per UTC day (0: no cap).
    #[arg(long)]
    daily_cap: Option<u32>,
    /// Random pause of up to this many milliseconds before each query.
    #[arg(long)]
    jitter_ms: Option<u32>,
}

impl LimitArgs {
    fn change(&self) -> LimitsChange {
        LimitsChange {
            per_minute: self.per_minute,
            burst: self.burst,
            daily_cap: self.daily_cap,
            jitter_ms: self.jitter_ms,
        }
    }
}

#[derive(Args)]
#[group(id = "kind", required = true, multiple = false, args = ["native", "waha", "evolution", "simulated"])]
pub struct AddArgs {
    /// A WhatsApp session of our own, paired now.
    #[arg(long, value_name = "NAME")]
    native: Option<String>,
    /// A WAHA session.
    #[arg(long, value_name = "NAME")]
    waha: Option<String>,
    /// An Evolution API instance.
    #[arg(long, value_name = "NAME")]
    evolution: Option<String>,
    /// A simulated account (answers by the documented rule; results are marked simulated).
    #[arg(long, value_name = "NAME")]
    simulated: Option<String>,
    /// Native: the account's own number (digits with country code) to pair with a code.
    #[arg(long)]
    phone: Option<String>,
    /// Gateway base URL (WAHA, Evolution).
    #[arg(long)]
    url: Option<String>,
    /// WAHA session or Evolution instance name (default: `default`).
    #[arg(long)]
    session: Option<String>,
    /// Gateway API key (or the WACHECK_GATEWAY_KEY environment variable).
    #[arg(long, env = "WACHECK_GATEWAY_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Numbers per check call (Evolution, native).
    #[arg(long)]
    batch: Option<usize>,
    /// Only this user's work uses the account (default: the shared pool).
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

pub async fn run(
    db: &sqlx::PgPool,
    config: &crate::config::Config,
    command: AccountsCommand,
) -> anyhow::Result<()> {
    let operator = Caller::operator();
    match command {
        AccountsCommand::Add(args) => add(db, config, *args).await,
        AccountsCommand::List => {
            let mut rows = vec![
                [
                    "name",
                    "kind",
                    "state",
                    "per_min",
                    "burst",
                    "daily_cap",
                    "today",
                    "aliases",
                    "reason",
                ]
                .map(str::to_owned)
                .to_vec(),
            ];
            for Summary {
                record: r,
                checks_today,
                aliases,
            } in app::list(db, &operator).await?
            {
                let state = if r.paused {
                    format!("{} (paused)", r.state)
                } else {
                    r.state.to_string()
                };
                rows.push(vec![
                    r.id.clone(),
                    r.kind.to_string(),
                    state,
                    r.limits.per_minute.to_string(),
                    r.limits.burst.to_string(),
                    r.limits.daily_cap.to_string(),
                    checks_today.to_string(),
                    aliases.join(","),
                    r.state_reason.unwrap_or_default(),
                ]);
            }
            print!("{}", table(&rows, 3..7));
            Ok(())
        }
        AccountsCommand::Pause { name } => {
            app::change(db, &operator, &name, Some(true), LimitsChange::default()).await?;
            done()
        }
        AccountsCommand::Resume { name } => {
            app::change(db, &operator, &name, Some(false), LimitsChange::default()).await?;
            done()
        }
        AccountsCommand::Limits { name, limits } => {
            app::change(db, &operator, &name, None, limits.change()).await?;
            done()
        }
        AccountsCommand::Remove { name } => {
            app::remove(db, &operator, &name).await?;
            done()
        }
        AccountsCommand::Alias { name, alias } => {
            app::add_alias(db, &operator, &name, &alias).await?;
            done()
        }
        AccountsCommand::Unalias { name, alias } => {
            app::remove_alias(db, &operator, &name, &alias).await?;
            done()
        }
        AccountsCommand::Usage { task } => {
            let (_, usage) = app::task_usage(db, &operator, &task).await?;
            println!(
                "{:<20} {:>10} {:>10} {:>8}",
                "account", "checks", "details", "calls"
            );
            for u in usage {
                println!(
                    "{:<20} {:>10} {:>10} {:>8}",
                    u.account, u.checks, u.details, u.calls
                );
            }
            Ok(())
        }
    }
}

fn done() -> anyhow::Result<()> {
    eprintln!("done");
    Ok(())
}

/// Rows as aligned columns: each as wide as its widest cell, the columns in `right`
/// right-aligned (numbers), the last one left ragged.
pub fn table(rows: &[Vec<String>], right: std::ops::Range<usize>) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, v) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c] - v.chars().count();
            if c + 1 == row.len() {
                line.push_str(v);
            } else if right.contains(&c) {
                line.push_str(&" ".repeat(pad));
                line.push_str(v);
            } else {
                line.push_str(v);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What adding `new` changes for the speed of checking, when until now only the built-in
/// simulated account (without limits) answered: from now on the added account's budget sets
/// the pace.
fn pace_notice(new: &AccountRecord) -> Option<String> {
    let l = new.limits;
    let per_day = l.checks_per_day().filter(|_| new.owner.is_none())?;
    let days = 200_000.0 / per_day.max(1) as f64;
    Some(format!(
        "note: the built-in simulated account, which answered without limits, is retired now; \
         `{id}` checks at most {per_minute} numbers a minute (bursts of {burst}) and {cap} a day, \
         so a 200,000-row file takes about {days:.0} days. `wacheck accounts limits {id} \
         --per-minute N --daily-cap N` changes that (0: unlimited).",
        id = new.id,
        per_minute = l.per_minute,
        burst = l.burst,
        cap = if l.daily_cap == 0 {
            "no cap".to_owned()
        } else {
            l.daily_cap.to_string()
        },
    ))
}

async fn add(db: &sqlx::PgPool, config: &crate::config::Config, a: AddArgs) -> anyhow::Result<()> {
    let (kind, name) = match (&a.native, &a.waha, &a.evolution, &a.simulated) {
        (Some(n), ..) => (AccountKind::Native, n.clone()),
        (_, Some(n), ..) => (AccountKind::Waha, n.clone()),
        (_, _, Some(n), _) => (AccountKind::Evolution, n.clone()),
        (.., Some(n)) => (AccountKind::Simulated, n.clone()),
        _ => {
            anyhow::bail!("say which kind of account: --native, --waha, --evolution or --simulated")
        }
    };
    let settings = match kind {
        AccountKind::Native => json!({ "batch": a.batch, "phone": a.phone }),
        AccountKind::Waha | AccountKind::Evolution => json!({
            "base_url": a.url.clone().context("--url is required for a gateway account")?,
            "session": a.session.clone().unwrap_or_else(|| "default".into()),
            "api_key": a.api_key,
            "batch": a.batch,
        }),
        AccountKind::Simulated => serde_json::to_value(&config.sim)?,
    };
    // Keys with null values are left out (absent means default).
    let settings = match settings {
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        v => v,
    };
    let new = NewAccountRequest {
        id: name.clone(),
        kind,
        owner: a.owner.clone(),
        settings,
        limits: a.limits.change(),
    };
    // Refused limits write nothing, not even the owner.
    new.limits
        .over(wacheck_store::accounts::Limits::default())?;
    if let Some(owner) = &a.owner {
        wacheck_store::keys::ensure_user(db, owner).await?;
    }
    let before = accounts::list(db).await?;
    let only_builtin = !before.is_empty() && before.iter().all(|r| r.builtin);
    let record = app::add(db, &Caller::operator(), true, new).await?;
    eprintln!(
        "account `{}` added ({}): {}{}",
        record.id,
        record.kind,
        record.state,
        record
            .state_reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    );
    if only_builtin && let Some(notice) = pace_notice(&record) {
        eprintln!("{notice}");
    }
    if only_builtin && record.state != AccountState::Connected {
        eprintln!(
            "note: the built-in simulated account is retired, and `{}` is {}: tasks wait until \
             it is connected (`wacheck accounts list` shows its state and why)",
            record.id, record.state
        );
    }
    if kind == AccountKind::Native {
        pair(db, config, &name).await?;
    }
    Ok(())
}

/// Runs a native account's session here until it is paired, showing QR codes (or the pair
/// code) in the terminal. Workers run it afterwards.
async fn pair(db: &sqlx::PgPool, config: &crate::config::Config, name: &str) -> anyhow::Result<()> {
    use wacheck_backends::native::{NativeSession, NativeSettings, SessionEvent};
    let r = accounts::get(db, name)
        .await?
        .context("the account vanished")?;
    let settings: NativeSettings = serde_json::from_value(r.settings.clone())?;
    let host = format!("cli-{}", std::process::id());
    let lease = Duration::from_secs(60);
    anyhow::ensure!(
        accounts::hold(db, name, &host, lease).await?,
        "a worker runs this account's session already: fetch its QR code from \
         GET /v1/accounts/{name}/qr.png, or pause the account and try again"
    );
    let dir = &config.accounts.native_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = wacheck_engine::native::session_file(dir, name);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let session = NativeSession::start(&file, &settings, settings.phone.is_some(), tx)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    eprintln!("connecting to WhatsApp… (Ctrl-C to give up; the account stays `pairing`)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut renew = tokio::time::interval(lease / 3);
    let outcome = loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = renew.tick() => {
                // Keep the session ours while pairing takes its time.
                accounts::hold(db, name, &host, lease).await?;
                continue;
            }
            _ = tokio::signal::ctrl_c() => break Err(anyhow::anyhow!("interrupted")),
            _ = tokio::time::sleep_until(deadline) => {
                break Err(anyhow::anyhow!(
                    "no pairing within 5 minutes (is WhatsApp reachable from here?)"
                ))
            }
        };
        let Some(event) = event else {
            break Err(anyhow::anyhow!("the session ended"));
        };
        match &event {
            SessionEvent::Qr { code, valid_for } => {
                eprintln!(
                    "\nScan within {} s: WhatsApp > Linked devices > Link a device\n{}",
                    valid_for.as_secs(),
                    wacheck_api::qr::text(code)?
                );
            }
            SessionEvent::PairCode { code, .. } => {
                eprintln!("\nOn the phone: Linked devices > Link with phone number, enter {code}");
            }
            _ => {}
        }
        let stop = wacheck_engine::native::record_event(db, name, &event, &file).await?;
        match event {
            SessionEvent::Connected { me: Some(me) } => break Ok(me),
            _ if stop => break Err(anyhow::anyhow!("pairing failed: {event:?}")),
            _ => {}
        }
    };
    session.stop().await;
    accounts::let_go(db, name, &host).await?;
    let me = outcome?;
    eprintln!("paired as {me}; workers will use the account from now on");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_whatever_the_cell_widths() {
        let rows = vec![
            vec!["name".into(), "n".into(), "reason".into()],
            vec![
                "a-very-long-account-name".into(),
                "12345".into(),
                "x".into(),
            ],
            vec!["b".into(), "7".into(), "".into()],
        ];
        assert_eq!(
            table(&rows, 1..2),
            "name                          n  reason\n\
             a-very-long-account-name  12345  x\n\
             b                             7\n"
        );
    }
}
