use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wacheck::app::{App, Role};
use wacheck::config::Config;

/// Tells whether phone numbers are on WhatsApp, one by one or in bulk tasks.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(long, env = "WACHECK_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// api: HTTP only; worker: jobs only; all: both (default).
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Apply database migrations.
    Migrate,
    /// Manage users: create, list, disable, enable, limits.
    Users {
        #[command(subcommand)]
        command: wacheck::cli_users::UsersCommand,
    },
    /// Manage API keys: create, list, revoke.
    Keys {
        #[command(subcommand)]
        command: wacheck::cli_users::KeysCommand,
    },
    /// Issue a JWT for a user (HS256, signed with auth.jwt_secret).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the WhatsApp accounts that check numbers.
    Accounts {
        #[command(subcommand)]
        command: wacheck::cli_accounts::AccountsCommand,
    },
    /// Print the effective configuration as TOML (secrets left out).
    Config,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new token.
    Create(wacheck::cli_users::TokenArgs),
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file or a journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    Ok(())
}

async fn open_db(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    wacheck_store::open(&config.database_url, 2)
        .await
        .context("connecting to Postgres and applying migrations")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: what went wrong, with its causes.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { role } => {
            let app = App::start(config, role).await?;
            shutdown_signal().await?;
            app.stop().await;
        }
        Command::Migrate => {
            open_db(&config).await?;
            eprintln!("migrations applied");
        }
        Command::Users { command } => {
            let pool = open_db(&config).await?;
            wacheck::cli_users::users(&pool, &config, command).await?;
        }
        Command::Keys { command } => {
            let pool = open_db(&config).await?;
            wacheck::cli_users::keys(&pool, command).await?;
        }
        Command::Token {
            command: TokenCommand::Create(args),
        } => {
            let pool = open_db(&config).await?;
            wacheck::cli_users::token(&pool, &config, args).await?;
        }
        Command::Accounts { command } => {
            let pool = open_db(&config).await?;
            wacheck::cli_accounts::run(&pool, &config, command).await?;
        }
        Command::Config => print!("{}", config.to_toml_redacted()),
    }
    Ok(())
}
