//! Assembles the service from its parts: database, queue, storage, accounts, API, worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App as HttpApp, HttpServer, web};
use anyhow::Context;
use secrecy::SecretString;
use wacheck_api::{AppState, JwtVerifier, RateLimiter};
use wacheck_app::{CheckSettings, Services, TaskSettings};
use wacheck_blob::{BlobStore, LocalStore, S3Store};
use wacheck_engine::Pool;
use wacheck_engine::pool::{builtin_account, spawn_refresher};
use wacheck_worker::{Pipeline, Queue, WorkerHandle, spawn_worker};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// API and worker in one process.
    All,
    Api,
    Worker,
}

/// A running service.
pub struct App {
    /// Where the API listens (when it runs).
    pub addr: Option<SocketAddr>,
    /// The account pool (tests read the simulation's call counters through it).
    pub accounts: Arc<Pool>,
    pub pool: sqlx::PgPool,
    pub queue: Queue,
    pub blob: Arc<dyn BlobStore>,
    server: Option<(
        actix_web::dev::ServerHandle,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
    worker: Option<WorkerHandle>,
    refresher: tokio::task::JoinHandle<()>,
}

/// A unique worker name: host, pid and a ULID.
fn worker_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}-{}", std::process::id(), ulid::Ulid::generate())
}

pub async fn open_blob(config: &Config, pool: &sqlx::PgPool) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match &config.s3 {
        Some(s3) => {
            let store = S3Store::new(s3);
            if let Err(e) = store.ensure_bucket().await {
                tracing::warn!("bucket check failed (exports retry until storage answers): {e}");
            }
            Arc::new(store)
        }
        None => {
            let secret = wacheck_store::keys::shared_secret(pool, "link_secret").await?;
            Arc::new(
                LocalStore::new(
                    &config.local_dir,
                    &config.public_url(),
                    SecretString::from(secret),
                )
                .with_context(|| format!("creating {}", config.local_dir.display()))?,
            )
        }
    })
}

impl App {
    pub async fn start(config: Config, role: Role) -> anyhow::Result<App> {
        let pool = wacheck_store::open(&config.database_url, config.db_max_connections)
            .await
            .context("connecting to Postgres and applying migrations")?;
        let queue = Queue::connect(
            &config.redis_url,
            &config.redis_prefix,
            config.pipeline.concurrency,
        )
        .await
        .context("connecting to Redis")?;
        // Bind first, so that a port-0 address is known before links are made.
        let listener = match role {
            Role::All | Role::Api => Some(
                std::net::TcpListener::bind(&config.bind)
                    .with_context(|| format!("binding {}", config.bind))?,
            ),
            Role::Worker => None,
        };
        let mut config = config;
        if config.public_url.is_none()
            && let Some(l) = &listener
        {
            let local = l.local_addr()?;
            if local.ip().is_unspecified() {
                tracing::warn!(
                    "listening on {local}, an address no client can use in a link: download \
                     links (result_url) will point to http://{local}/; set WACHECK_PUBLIC_URL \
                     (public_url) to the address clients reach this service at"
                );
            }
            config.public_url = Some(format!("http://{local}"));
        }
        let blob = open_blob(&config, &pool).await?;

        let builtin = config.accounts.builtin_simulated
            && wacheck_store::accounts::ensure_builtin(
                &pool,
                &builtin_account(&config.sim, config.rate),
            )
            .await
            .context("setting up the built-in simulated account")?;
        let accounts = Arc::new(Pool::new(
            pool.clone(),
            queue.connection(),
            &config.redis_prefix,
            config.accounts.clone(),
        ));
        accounts.refresh().await.context("loading the accounts")?;
        let refresher = spawn_refresher(accounts.clone());
        if builtin {
            tracing::warn!(
                "RESULTS ARE SIMULATED: no WhatsApp account is configured; answers follow a fixed rule \
                 ({}% on WhatsApp). Add an account to check for real: see docs/backends.md",
                config.sim.registered_percent
            );
        } else if accounts.simulated_in_use(None) {
            tracing::warn!("a SIMULATED account is in the pool: some results will be simulated");
        }

        let worker = matches!(role, Role::All | Role::Worker).then(|| {
            spawn_worker(Arc::new(Pipeline::new(
                pool.clone(),
                queue.clone(),
                blob.clone(),
                accounts.clone(),
                config.pipeline.clone(),
                config.cache.clone(),
                worker_name(),
            )))
        });

        let mut addr = None;
        let mut server = None;
        if let Some(listener) = listener {
            let state = AppState {
                app: Services {
                    pool: pool.clone(),
                    queue: queue.clone(),
                    blob: blob.clone(),
                    accounts: accounts.clone(),
                    tasks: TaskSettings {
                        chunk_size: config.pipeline.chunk_size.max(1),
                        window: config.pipeline.window.max(1),
                        max_rows: config.api.max_rows,
                        dedupe_run: config.api.dedupe_run,
                        result_url_ttl: Duration::from_secs(config.api.result_url_ttl_secs.max(1)),
                    },
                    checks: CheckSettings {
                        effort: config.pipeline.effort(
                            &config.cache,
                            Duration::from_millis(config.api.check_max_wait_ms),
                        ),
                        max_wait: Duration::from_millis(config.api.check_max_wait_ms),
                    },
                    limits: config.limits.clone(),
                    ingest_slots: Arc::new(tokio::sync::Semaphore::new(
                        config.api.max_concurrent_ingests.max(1),
                    )),
                },
                api: config.api.clone(),
                jwt: Arc::new(
                    JwtVerifier::new(&config.auth).context("setting up token checks ([auth])")?,
                ),
                rate: Arc::new(RateLimiter::new(queue.connection(), &config.redis_prefix)),
            };
            let data = web::Data::new(state);
            let http = HttpServer::new(move || {
                HttpApp::new()
                    .app_data(data.clone())
                    // The path only: query strings may carry download-link signatures.
                    .wrap(
                        actix_web::middleware::Logger::new("%a \"%m %U\" %s %b %Dms")
                            .log_target("wacheck::http"),
                    )
                    .configure(wacheck_api::configure)
            })
            .shutdown_timeout(config.pipeline.shutdown_grace_secs)
            .listen(listener)?;
            addr = http.addrs().first().copied();
            let running = http.disable_signals().run();
            let handle = running.handle();
            server = Some((handle, tokio::spawn(running)));
            if let Some(addr) = addr {
                tracing::info!(%addr, "API listening");
            }
        }
        Ok(App {
            addr,
            accounts,
            pool,
            queue,
            blob,
            server,
            worker,
            refresher,
        })
    }

    /// Graceful stop: the API stops taking requests, workers finish or release their jobs.
    pub async fn stop(self) {
        if let Some((handle, join)) = self.server {
            handle.stop(true).await;
            let _ = join.await;
        }
        if let Some(worker) = self.worker {
            worker.shutdown().await;
        }
        self.refresher.abort();
        self.pool.close().await;
    }
}
