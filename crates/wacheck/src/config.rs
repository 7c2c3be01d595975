//! Configuration: defaults, then an optional TOML file, then the environment.
//!
//! Environment: `DATABASE_URL`, `REDIS_URL`, and `WACHECK_*` for everything else, with `__`
//! between section and key (`WACHECK_PIPELINE__CHUNK_SIZE=1000`, `WACHECK_S3__BUCKET=results`).
//! `WACHECK_TEST_*` and `WACHECK_BENCH_*` variables belong to the test suite and the
//! benchmarks, and [`CLIENT_VARIABLES`] to the
//! command-line client: both are ignored here. Any other `WACHECK_*` variable must name a
//! setting, so that a typo stops the service instead of being ignored.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use wacheck_api::{ApiSettings, AuthSettings, LimitSettings};
use wacheck_backends::simulated::SimConfig;
use wacheck_blob::S3Config;
use wacheck_engine::{CacheSettings, PoolSettings, RateConfig};
use wacheck_worker::PipelineSettings;

/// Variables of the `wacheck` command line itself (its options' `env`), not settings of the
/// service: they share the prefix, so the configuration must not refuse them.
pub const CLIENT_VARIABLES: &[&str] = &["CONFIG", "GATEWAY_KEY", "SERVER", "KEY"];

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database_url: String,
    pub redis_url: String,
    /// Listen address of the API.
    pub bind: String,
    /// External base URL of the API, used in download links of the local store.
    pub public_url: Option<String>,
    /// Prefix of every Redis key of this deployment.
    pub redis_prefix: String,
    /// Database connections per process.
    pub db_max_connections: u32,
    /// Directory of result files when no S3 storage is configured.
    pub local_dir: PathBuf,
    pub s3: Option<S3Config>,
    #[serde(default)]
    pub sim: SimConfig,
    /// Rate of the built-in simulated account.
    #[serde(default)]
    pub rate: RateConfig,
    /// How the account pool treats accounts.
    #[serde(default)]
    pub accounts: PoolSettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub pipeline: PipelineSettings,
    #[serde(default)]
    pub api: ApiSettings,
    /// How tokens are checked.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Default limits of every user.
    #[serde(default)]
    pub limits: LimitSettings,
}

#[derive(Serialize)]
struct Defaults {
    database_url: &'static str,
    redis_url: &'static str,
    bind: &'static str,
    redis_prefix: &'static str,
    db_max_connections: u32,
    local_dir: &'static str,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &redact_url(&self.redis_url))
            .field("bind", &self.bind)
            .field("public_url", &self.public_url)
            .field("redis_prefix", &self.redis_prefix)
            .field("db_max_connections", &self.db_max_connections)
            .field("local_dir", &self.local_dir)
            .field("s3", &self.s3)
            .field("sim", &self.sim)
            .field("rate", &self.rate)
            .field("accounts", &self.accounts)
            .field("cache", &self.cache)
            .field("pipeline", &self.pipeline)
            .field("api", &self.api)
            .field("auth", &self.auth)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Hides the password of a `scheme://user:password@host` URL (and a `password=` parameter).
pub fn redact_url(url: &str) -> String {
    if let Some((base, query)) = url.split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
                _ => p.to_owned(),
            })
            .collect();
        return format!("{}?{}", redact_url(base), query.join("&"));
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:[redacted]{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let defaults = Defaults {
            // What scripts/services sets up: the postgres user with password `postgres`.
            database_url: "postgres://postgres:postgres@127.0.0.1:5432/wacheck",
            redis_url: "redis://127.0.0.1:6379",
            bind: "127.0.0.1:8080",
            redis_prefix: "wacheck",
            db_max_connections: 16,
            local_dir: "./data/results",
        };
        let mut fig = Figment::from(Serialized::defaults(defaults));
        if let Some(file) = file {
            anyhow::ensure!(file.exists(), "config file {} not found", file.display());
            fig = fig.merge(Toml::file(file));
        }
        fig = fig
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL", "REDIS_URL"])
                    .map(|k| k.as_str().to_ascii_lowercase().into()),
            )
            .merge(
                Env::prefixed("WACHECK_")
                    .filter(|k| {
                        let k = k.as_str().to_ascii_uppercase();
                        !CLIENT_VARIABLES.contains(&k.as_str())
                            && !k.starts_with("TEST_")
                            && !k.starts_with("BENCH_")
                    })
                    .split("__"),
            );
        fig.extract().map_err(|e| {
            let first = e.into_iter().next().map(|e| e.to_string());
            anyhow::anyhow!(
                "invalid configuration: {}",
                first.unwrap_or_else(|| "unreadable".into())
            )
        })
    }

    /// This configuration as a TOML file to paste into a configuration file, with every
    /// secret left out: lines that would hold one are comments that say so.
    pub fn to_toml_redacted(&self) -> String {
        let mut out = String::from(
            "# wacheck's effective configuration. Secrets are not shown: a secret's line is a \
             comment, a URL's password reads [redacted]; put them back here or in the \
             environment.\n",
        );
        for line in self.to_toml().lines() {
            let key = line.split_once(" = ").map(|(k, _)| k.trim());
            let value = || line.split_once(" = ").map(|(_, v)| v.trim_matches('"'));
            match key {
                Some("jwt_secret" | "secret_key") => {
                    out += &format!("# {} = \"…\" (set; not shown)\n", key.unwrap_or_default());
                }
                // Kept as a setting, so that a pasted file fails loudly on the password
                // instead of falling back to the default database.
                Some(k @ ("database_url" | "redis_url"))
                    if value().is_some_and(|v| redact_url(v) != v) =>
                {
                    out += &format!(
                        "{k} = \"{}\"   # the password is not shown: put it back\n",
                        redact_url(value().unwrap_or_default())
                    );
                }
                _ => {
                    out += line;
                    out.push('\n');
                }
            }
        }
        out
    }

    /// This configuration as a TOML file that [`Config::load`] reads back (secrets included:
    /// for files the caller writes for its own processes, such as tests and benchmarks).
    pub fn to_toml(&self) -> String {
        use secrecy::ExposeSecret;
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut t = String::new();
        t += &format!("database_url = {}\n", q(&self.database_url));
        t += &format!("redis_url = {}\n", q(&self.redis_url));
        t += &format!("bind = {}\n", q(&self.bind));
        if let Some(u) = &self.public_url {
            t += &format!("public_url = {}\n", q(u));
        }
        t += &format!("redis_prefix = {}\n", q(&self.redis_prefix));
        t += &format!("db_max_connections = {}\n", self.db_max_connections);
        t += &format!("local_dir = {}\n", q(&self.local_dir.to_string_lossy()));
        if let Some(s3) = &self.s3 {
            t += "[s3]\n";
            t += &format!("endpoint = {}\n", q(&s3.endpoint));
            t += &format!("region = {}\n", q(&s3.region));
            t += &format!("bucket = {}\n", q(&s3.bucket));
            t += &format!("access_key = {}\n", q(&s3.access_key));
            t += &format!("secret_key = {}\n", q(s3.secret_key.expose_secret()));
            t += &format!("path_style = {}\n", s3.path_style);
        }
        let section = |name: &str, body: Result<String, toml::ser::Error>| {
            format!("[{name}]\n{}", body.expect("settings serialise to TOML"))
        };
        t += &section("sim", toml::to_string(&self.sim));
        t += &section("rate", toml::to_string(&self.rate));
        t += &section("accounts", toml::to_string(&self.accounts));
        t += &section("cache", toml::to_string(&self.cache));
        t += &section("pipeline", toml::to_string(&self.pipeline));
        t += &section("api", toml::to_string(&self.api));
        t += &section("auth", toml::to_string(&self.auth));
        t += &section("limits", toml::to_string(&self.limits));
        t
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:[redacted]@h/db"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=require"),
            "postgres://h/db?user=u&password=[redacted]&sslmode=require"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // the error type is figment's
    fn debug_output_hides_s3_secret() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WACHECK_S3__ENDPOINT", "http://127.0.0.1:1");
            jail.set_env("WACHECK_S3__BUCKET", "b");
            jail.set_env("WACHECK_S3__ACCESS_KEY", "ak");
            jail.set_env("WACHECK_S3__SECRET_KEY", "very-secret-value");
            jail.set_env("WACHECK_PIPELINE__CHUNK_SIZE", "7");
            let c = Config::load(None).expect("config");
            assert_eq!(c.pipeline.chunk_size, 7);
            let shown = format!("{c:?}");
            assert!(!shown.contains("very-secret-value"), "{shown}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // the error type is figment's
    fn toml_round_trip() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WACHECK_PIPELINE__CHUNK_SIZE", "7");
            jail.set_env("WACHECK_API__MAX_ROWS", "9");
            jail.set_env("WACHECK_S3__ENDPOINT", "http://127.0.0.1:1");
            jail.set_env("WACHECK_S3__BUCKET", "b");
            jail.set_env("WACHECK_S3__ACCESS_KEY", "ak");
            jail.set_env("WACHECK_S3__SECRET_KEY", "sk");
            let c = Config::load(None).expect("config");
            jail.clear_env();
            jail.create_file("w.toml", &c.to_toml())?;
            let back = Config::load(Some(Path::new("w.toml"))).expect("config");
            assert_eq!(format!("{back:?}"), format!("{c:?}"));
            assert_eq!(back.api.max_rows, 9);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // the error type is figment's
    fn client_variables_coexist_and_typos_are_one_line() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WACHECK_GATEWAY_KEY", "abc");
            jail.set_env("WACHECK_SERVER", "http://127.0.0.1:8080");
            jail.set_env("WACHECK_KEY", "wk_x");
            assert!(Config::load(None).is_ok());
            jail.set_env("WACHECK_PIPELINE__CHUNK_SIZ", "7");
            let err = Config::load(None)
                .expect_err("a typo is refused")
                .to_string();
            assert!(err.starts_with("invalid configuration: "), "{err}");
            assert!(err.contains("chunk_siz"), "{err}");
            assert!(!err.contains('\n'), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // the error type is figment's
    fn printed_configuration_reads_back_without_its_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", "postgres://u:pw-123@127.0.0.1/db");
            jail.set_env(
                "WACHECK_AUTH__JWT_SECRET",
                "0123456789abcdef0123456789abcdef-secret",
            );
            jail.set_env("WACHECK_PIPELINE__CHUNK_SIZE", "7");
            let c = Config::load(None).expect("config");
            let shown = c.to_toml_redacted();
            assert!(
                !shown.contains("pw-123") && !shown.contains("-secret"),
                "{shown}"
            );
            jail.clear_env();
            jail.create_file("pasted.toml", &shown)?;
            let back = Config::load(Some(Path::new("pasted.toml"))).expect("it reads back");
            assert_eq!(back.pipeline.chunk_size, 7);
            assert!(back.auth.jwt_secret.is_none());
            // The database is still named, with a password that cannot work.
            assert_eq!(back.database_url, "postgres://u:[redacted]@127.0.0.1/db");
            Ok(())
        });
    }
}
