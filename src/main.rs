//! The `occupancy` binary: configuration, logging, signals and exit codes around
//! [`occupancy::server::serve`].

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use occupancy::apps::{App, AppConfig, Apps};
use occupancy::config::{Cli, Config, GrpcTls, StoreChoice};
use occupancy::grpc_auth::BearerTokens;
use occupancy::pusher::{Publisher, PublisherConfig};
use occupancy::server::{Settings, serve};
use occupancy::store::{MemoryStore, OccupancyStore, RedisBackend, RedisStoreConfig, StoreKeys};
use occupancy::webhook::{WebhookKey, WebhookKeys};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            eprintln!("occupancy: {} (see --help)", one_line(&err.to_string()));
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

/// clap's message without its usage block, folded onto one line so it reads well in a log.
fn one_line(message: &str) -> String {
    message
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
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
            run_with(config, |_| MemoryStore::new(retention)).await
        }
        StoreChoice::Redis { url, timeout } => {
            let backend = RedisBackend::new(&RedisStoreConfig { url, timeout })
                .context("--redis-url / REDIS_URL")?;
            tracing::info!(store = %backend.describe(), "using Redis");
            let retention = config.retention;
            run_with(config, |app| {
                let keys = StoreKeys::for_set(&app.redis_key);
                tracing::info!(app = %app.id, set = %keys.set, times = %keys.times, "app set in Redis");
                backend.store(keys, retention)
            })
            .await
        }
    }
}

async fn run_with<S: OccupancyStore>(
    config: Config,
    store_for: impl Fn(&AppConfig) -> S,
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
        apps.push(App::new(app.id.clone(), store_for(app), publisher));
    }

    let signal = shutdown_signal().context("cannot watch for SIGTERM and Ctrl-C")?;
    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_addr))?;
    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen for webhooks on {}", config.http_addr))?;
    tracing::info!(
        addr = %grpc.local_addr()?,
        tls = config.grpc_tls.is_some(),
        client_certificates = config.grpc_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        tokens = config.grpc_tokens.len(),
        "gRPC listening"
    );
    tracing::info!(addr = %http.local_addr()?, path = occupancy::webhook::WEBHOOK_PATH, "webhooks listening");

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        on_signal.cancel();
    });

    serve(
        Settings {
            apps: Arc::new(Apps::new(apps)),
            webhook_keys: WebhookKeys::new(webhook_keys),
            webhook_body_limit: config.webhook_body_limit,
            health_interval: config.health_interval,
            reconcile_interval: config.reconcile_interval,
            grpc_tokens: BearerTokens::new(&config.grpc_tokens),
            grpc_tls: config.grpc_tls.as_ref().map(server_tls),
        },
        grpc,
        http,
        shutdown,
    )
    .await?;
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

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when first polled, so a signal that arrives right after start-up is not lost (and does not
/// kill the process without draining).
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
