//! The `occupancy` binary: configuration, logging, signals and exit codes around
//! [`occupancy::server::serve`].

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use occupancy::apps::{App, AppConfig, Apps};
use occupancy::config::{Cli, Config, GrpcTls, StoreChoice};
use occupancy::grpc_auth::BearerTokens;
use occupancy::http_listener::HttpLimits;
use occupancy::pusher::{Publisher, PublisherConfig};
use occupancy::server::{Listeners, Settings, Shutdown, serve};
use occupancy::store::{MemoryStore, OccupancyStore, RedisBackend, RedisStoreConfig, StoreKeys};
use occupancy::webhook::{WebhookKey, WebhookKeys};

fn main() -> ExitCode {
    if let Some(code) = occupancy::tools::run_if_tool(std::env::args_os()) {
        return code;
    }
    let cli: Cli = match occupancy::tools::parse_server_cli() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            eprintln!(
                "occupancy: {} (see --help)",
                occupancy::tools::one_line(&err.to_string())
            );
            return ExitCode::from(2);
        }
    };
    init_logging();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("occupancy: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("occupancy: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, on stderr with the logs, for whoever reads the crash.
            eprintln!("occupancy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(config: Config) -> anyhow::Result<()> {
    match config.store.clone() {
        StoreChoice::Memory => {
            tracing::warn!(
                "no --redis-url given: occupancy is kept in memory, local to this one process, \
                 lost on exit and invisible to encoders reading Redis"
            );
            let retention = config.retention;
            run_with(config, |_, _| MemoryStore::new(retention)).await
        }
        StoreChoice::Redis { url, timeout, ca } => {
            let backend = RedisBackend::new(&RedisStoreConfig { url, timeout, ca })
                .context("--redis-url / REDIS_URL")?;
            tracing::info!(store = %backend.describe(), "using Redis");
            let retention = config.retention;
            let feed_stop = CancellationToken::new();
            let stores: Vec<_> = config
                .apps
                .iter()
                .map(|app| {
                    let keys = StoreKeys::for_set(&app.redis_key);
                    tracing::info!(app = %app.id, set = %keys.set, times = %keys.times, feed = %keys.feed, "app set in Redis");
                    backend.store(keys, retention)
                })
                .collect();
            let feed = tokio::spawn(backend.run_feed(feed_stop.clone()));
            let result = run_with(config, |index, _| stores[index].clone()).await;
            feed_stop.cancel();
            let _ = feed.await;
            result
        }
    }
}

async fn run_with<S: OccupancyStore>(
    config: Config,
    store_for: impl Fn(usize, &AppConfig) -> S,
) -> anyhow::Result<()> {
    let mut apps = Vec::new();
    let mut webhook_keys = Vec::new();
    for (index, app) in config.apps.iter().enumerate() {
        let publisher = Publisher::new(PublisherConfig {
            api_url: app.api_url.clone(),
            app_id: app.id.clone(),
            key: app.key.clone(),
            secret: app.secret.clone(),
            timeout: config.pusher_timeout,
            extra_ca: config.pusher_ca.clone(),
        })
        .context("cannot set up the Pusher HTTP client")?;
        for (key, secret) in std::iter::once((&app.key, &app.secret))
            .chain(app.extra_keys.iter().map(|(k, s)| (k, s)))
        {
            webhook_keys.push(WebhookKey {
                key: key.clone(),
                secret: secret.clone(),
                app: index,
            });
        }
        tracing::info!(app = %app.id, api = %app.api_url, "publishing through Pusher");
        apps.push(App::new(app.id.clone(), store_for(index, app), publisher));
    }

    let signals = Signals::install().context("cannot watch for SIGTERM and Ctrl-C")?;
    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_addr))?;
    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen for webhooks on {}", config.http_addr))?;
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen for metrics and probes on {}",
                config.admin_addr
            )
        })?;
    tracing::info!(
        addr = %grpc.local_addr()?,
        tls = config.grpc_tls.is_some(),
        client_certificates = config.grpc_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        tokens = config.grpc_tokens.len(),
        "gRPC listening"
    );
    tracing::info!(addr = %http.local_addr()?, path = occupancy::webhook::WEBHOOK_PATH, "webhooks listening");
    tracing::info!(addr = %admin.local_addr()?, "admin listening (/metrics, /livez, /readyz)");

    let shutdown = Shutdown::default();
    let stopped = shutdown.stop.clone();
    tokio::spawn(signals.drive(shutdown.clone(), config.drain_delay));

    let served = serve(
        Settings {
            apps: Arc::new(Apps::new(apps)),
            webhook_keys: WebhookKeys::new(webhook_keys),
            webhook_body_limit: config.webhook_body_limit,
            webhook_body_timeout: config.http_body_timeout,
            http_limits: HttpLimits {
                header_timeout: config.http_header_timeout,
                max_connections: config.http_max_connections,
            },
            store_down: config.store_down,
            max_watch_streams: config.max_watch_streams,
            health_interval: config.health_interval,
            reconcile_interval: config.reconcile_interval,
            grpc_tokens: BearerTokens::new(&config.grpc_tokens),
            grpc_tls: config.grpc_tls.as_ref().map(server_tls),
        },
        Listeners { grpc, http, admin },
        shutdown,
    );
    // The drain is bounded: once the listeners close, whatever is still open after
    // --drain-timeout (a Health/Watch stream, a stuck client) does not keep the process alive.
    let drain_timeout = config.drain_timeout;
    tokio::select! {
        result = served => result?,
        _ = async {
            stopped.cancelled().await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!(?drain_timeout, "drain timeout: exiting with requests still open");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// tonic's TLS settings from the PEM files read at start-up.
fn server_tls(tls: &GrpcTls) -> tonic::transport::ServerTlsConfig {
    let identity = tonic::transport::Identity::from_pem(&tls.cert, &tls.key.0);
    let config = tonic::transport::ServerTlsConfig::new().identity(identity);
    match &tls.client_ca {
        Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
        None => config,
    }
}

/// SIGTERM and SIGINT, watched from start-up: the handlers are installed before the listeners
/// bind, so a signal that arrives right after start-up still drains instead of killing.
struct Signals {
    received: tokio::sync::mpsc::UnboundedReceiver<i32>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                // The exit code a shell gives a process killed by that signal.
                let code = tokio::select! {
                    _ = term.recv() => 143,
                    _ = int.recv() => 130,
                };
                if tx.send(code).is_err() {
                    break;
                }
            }
        });
        Ok(Self { received })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tx.send(130).is_err() {
                    break;
                }
            }
        });
        Ok(Self { received })
    }

    /// First signal: health `NOT_SERVING`, then after `drain_delay` the listeners stop. A
    /// second signal exits at once, for an operator who will not wait.
    async fn drive(mut self, shutdown: Shutdown, drain_delay: Duration) {
        if self.received.recv().await.is_none() {
            return;
        }
        tracing::info!(
            ?drain_delay,
            "shutting down: health is NOT_SERVING; draining"
        );
        shutdown.draining.cancel();
        tokio::select! {
            _ = tokio::time::sleep(drain_delay) => {}
            Some(code) = self.received.recv() => exit_now(code),
        }
        tracing::info!("listeners closed: finishing requests in flight");
        shutdown.stop.cancel();
        if let Some(code) = self.received.recv().await {
            exit_now(code);
        }
    }
}

fn exit_now(code: i32) -> ! {
    tracing::warn!(code, "second signal: exiting at once");
    std::process::exit(code)
}
