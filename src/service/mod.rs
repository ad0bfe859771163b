//! The composition root: a [`Service`] built from a [`Config`] owns everything that runs.
//!
//! Two steps, as in linkerd2-proxy (`Config::build`, then `App::spawn`):
//! - [`Service::bind`] does everything that can fail before serving: the Redis URL, each app's
//!   store and Pusher client (the Redis stores from one backend, so the set of apps the change
//!   feed follows is fixed before it runs), and the listeners (gRPC, webhooks, admin, and the
//!   Pusher API when `--pusher-api-addr` is given). Its errors say which
//!   option is at fault.
//! - [`Service::run`] spawns every task (the gRPC gate, the webhook and admin listeners,
//!   health, reconciliation, the change feed) into one [`TaskSet`], and returns when all of them
//!   have ended: after `shutdown`, or as soon as one fails or panics, which stops the rest.
//!
//! The path of a webhook: webhook listener → [`crate::webhook`] → the app's store. The path of
//! a gate call: gRPC listener → [`crate::gate`] → the app's store (its local copy) →
//! [`crate::pusher::Publisher`] when someone is watching. The path of an SDK's trigger: Pusher
//! API listener → [`crate::pusher_api`] → the same store and policy as the gate → the same
//! publisher.

pub(crate) mod servers;
mod tasks;

use self::servers::{Built, Listeners};
use self::tasks::TaskSet;
pub use self::tasks::{ServeError, Shutdown};

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::apps::{App, Apps};
use crate::config::{Config, GrpcTls, StoreChoice};
use crate::grpc_auth::BearerTokens;
use crate::grpc_listener;
use crate::metrics::Metrics;
use crate::pusher::Publisher;
use crate::pusher_api::{AppKeys, PusherApiAccess};
use crate::store::{MemoryStore, RedisBackend, Store, StoreKeys};
use crate::webhook::{WebhookKey, WebhookKeys};

/// The stores of every app, all of one kind.
struct Stores {
    /// One per app, in configuration order.
    apps: Vec<Store>,
    /// With Redis, the one backend of every app's store, whose change feed keeps their local
    /// copies; `None` in memory (no `--redis-url`).
    redis: Option<RedisBackend>,
}

/// A service whose listeners are bound and whose stores are built, ready to [`run`](Self::run).
pub struct Service {
    config: Config,
    /// What every part of this service counts into, served at `/metrics`.
    metrics: Arc<Metrics>,
    stores: Stores,
    listeners: Listeners,
    /// TLS for the Pusher API listener, checked at bind time.
    pusher_api_tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Builds the stores and binds the listeners of `config`. Nothing is served yet, and nothing
    /// connects to Redis (a Redis that is down at start-up delays nothing).
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let stores = build_stores(&config, &metrics)?;
        let listeners = bind_listeners(&config).await?;
        tracing::info!(
            addr = %listeners.grpc.local_addr()?,
            tls = config.grpc_tls.is_some(),
            client_certificates = config.grpc_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            tokens = config.grpc_tokens.len(),
            "gRPC listening"
        );
        warn_if_open_to_anyone(listeners.grpc.local_addr()?, &config, &metrics);
        tracing::info!(addr = %listeners.http.local_addr()?, path = crate::webhook::WEBHOOK_PATH, "webhooks listening");
        tracing::info!(addr = %listeners.admin.local_addr()?, "admin listening (/metrics, /livez, /readyz)");
        if let Some(api) = &listeners.pusher_api {
            tracing::info!(addr = %api.local_addr()?, tls = config.pusher_api_tls.is_some(), max_event_bytes = config.max_event_bytes, "Pusher API listening (/apps/{{id}}/events, /batch_events, ...)");
        }
        let pusher_api_tls = config
            .pusher_api_tls
            .as_ref()
            .map(|(cert, key)| crate::http_listener::tls_acceptor(cert, &key.0))
            .transpose()
            .context("--pusher-api-tls-cert / --pusher-api-tls-key")?;
        let service = Self {
            config,
            metrics,
            stores,
            listeners,
            pusher_api_tls,
        };
        if let Some(path) = &service.config.listen_addrs_file {
            write_listen_addrs(
                path,
                service.grpc_addr(),
                service.http_addr(),
                service.admin_addr(),
            )
            .with_context(|| {
                format!(
                    "--listen-addrs-file / OCCUPANCY_LISTEN_ADDRS_FILE: cannot write {}",
                    path.display()
                )
            })?;
        }
        Ok(service)
    }

    /// Where the gRPC gate listens (with port 0 in the configuration, the port chosen).
    pub fn grpc_addr(&self) -> SocketAddr {
        local_addr(&self.listeners.grpc)
    }

    /// Where webhooks are received.
    pub fn http_addr(&self) -> SocketAddr {
        local_addr(&self.listeners.http)
    }

    /// Where `/metrics`, `/livez` and `/readyz` are served.
    pub fn admin_addr(&self) -> SocketAddr {
        local_addr(&self.listeners.admin)
    }

    /// Where Pusher's HTTP API is answered, when `--pusher-api-addr` is given.
    pub fn pusher_api_addr(&self) -> Option<SocketAddr> {
        self.listeners.pusher_api.as_ref().map(local_addr)
    }

    /// Serves until `shutdown` (see [`Shutdown`] for its two phases) or until a task fails,
    /// then drains: in-flight requests finish and held coalesced updates are sent, for at most
    /// `--drain-timeout` once the listeners have closed.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
        let Self {
            config,
            metrics,
            stores,
            listeners,
            pusher_api_tls,
        } = self;
        let stop = shutdown.stop.clone();
        let drain_timeout = config.drain_timeout;
        let mut tasks = TaskSet::new(stop.clone());
        if let Some(backend) = stores.redis {
            let feed = backend.run_feed(stop.clone());
            tasks.spawn("change feed", async move {
                feed.await;
                Ok(())
            });
        }
        let built = build(&config, stores.apps, pusher_api_tls, &metrics)?;
        let coalescer = servers::spawn(&config, built, listeners, shutdown, &mut tasks).await?;
        let finished = async {
            let result = tasks.join_all().await;
            // Held coalesced updates go out now rather than being lost.
            coalescer.drain().await;
            result
        };
        // The drain is bounded: once the listeners close, whatever is still open after
        // --drain-timeout (a Health/Watch stream, a stuck client) does not keep the process
        // alive. Dropping `finished` drops the task set, which aborts what is left.
        tokio::select! {
            result = finished => result,
            _ = drain_deadline(stop, drain_timeout) => {
                tracing::warn!(?drain_timeout, "drain timeout: exiting with requests still open");
                Ok(())
            }
        }
    }
}

async fn drain_deadline(stop: CancellationToken, limit: std::time::Duration) {
    stop.cancelled().await;
    tokio::time::sleep(limit).await;
}

/// Writes the bound addresses as `key=value` lines to `path`, atomically: a temporary file in
/// the same directory (so the rename stays on one file system), then renamed over `path`, so a
/// reader polling for the file sees all three lines or no file.
fn write_listen_addrs(
    path: &std::path::Path,
    grpc: SocketAddr,
    http: SocketAddr,
    admin: SocketAddr,
) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let mut temporary = name.to_os_string();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let text = format!("grpc={grpc}\nhttp={http}\nadmin={admin}\n");
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    // A bound TCP listener always has an address; the fallback is never used.
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Every app's store, from one backend when Redis is used.
fn build_stores(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Stores> {
    match &config.store {
        StoreChoice::Memory => {
            tracing::warn!(
                "no --redis-url given: occupancy is kept in memory, local to this one process, \
                 lost on exit and invisible to encoders reading Redis"
            );
            Ok(Stores {
                apps: config
                    .apps
                    .iter()
                    .map(|_| Store::Memory(MemoryStore::new(config.retention)))
                    .collect(),
                redis: None,
            })
        }
        StoreChoice::Redis(redis) => {
            let mut backend =
                RedisBackend::new(redis, metrics.clone()).context("--redis-url / REDIS_URL")?;
            tracing::info!(store = %backend.describe(), "using Redis");
            let apps = config
                .apps
                .iter()
                .map(|app| {
                    let keys = StoreKeys::for_set(&app.redis_key);
                    tracing::info!(app = %app.id, set = %keys.set, times = %keys.times, feed = %keys.feed, "app set in Redis");
                    Store::Redis(backend.store(keys, config.retention))
                })
                .collect();
            Ok(Stores {
                apps,
                redis: Some(backend),
            })
        }
    }
}

/// Connections the kernel queues per listener before the accept loop takes them: 1024, capped by
/// `net.core.somaxconn`. mio's and Rust's default of 128 overflowed under a burst of 800
/// connections (tests/exhaustion.rs): the peers past it waited for SYN retries or were reset,
/// where Pusher's webhook bursts and a fleet of SDK workers reconnecting at once should queue.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with [`LISTEN_BACKLOG`], reusing the address as `TcpListener::bind` does.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The listeners, bound before anything is served so a taken port fails start-up.
async fn bind_listeners(config: &Config) -> anyhow::Result<Listeners> {
    let grpc = listen(config.grpc_addr)
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_addr))?;
    let http = listen(config.http_addr)
        .with_context(|| format!("cannot listen for webhooks on {}", config.http_addr))?;
    let admin = listen(config.admin_addr).with_context(|| {
        format!(
            "cannot listen for metrics and probes on {}",
            config.admin_addr
        )
    })?;
    let pusher_api = match config.pusher_api_addr {
        Some(addr) => Some(listen(addr).with_context(|| {
            format!("cannot listen for Pusher API requests (--pusher-api-addr) on {addr}")
        })?),
        None => None,
    };
    Ok(Listeners {
        grpc,
        http,
        admin,
        pusher_api,
    })
}

/// What the servers need beside `config`: each app with its store and Pusher client, and the
/// keys, tokens and TLS settings in the form their checks use.
fn build(
    config: &Config,
    stores: Vec<Store>,
    pusher_api_tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: &Arc<Metrics>,
) -> Result<Built, ServeError> {
    let mut apps = Vec::new();
    let mut webhook_keys = Vec::new();
    for (index, (app, store)) in config.apps.iter().zip(stores).enumerate() {
        let publisher = Publisher::new(
            app,
            config.pusher_timeout,
            config.pusher_ca.as_deref(),
            metrics.clone(),
        )
        .map_err(ServeError::PusherClient)?;
        for (key, secret) in app.key_pairs() {
            webhook_keys.push(WebhookKey {
                key: key.clone(),
                secret: secret.clone(),
                app: index,
            });
        }
        tracing::info!(app = %app.id, api = %app.api_url, "publishing through Pusher");
        apps.push(App::new(app.id.clone(), store, publisher));
    }
    Ok(Built {
        apps: Arc::new(Apps::new(apps)),
        metrics: metrics.clone(),
        webhook_keys: WebhookKeys::new(webhook_keys),
        grpc_tokens: BearerTokens::new(&config.grpc_tokens, metrics),
        grpc_tls: config.grpc_tls.as_ref().map(server_tls),
        pusher_api: config.pusher_api_addr.map(|_| PusherApiAccess {
            keys: config
                .apps
                .iter()
                .map(|app| AppKeys {
                    app_id: app.id.clone(),
                    keys: app
                        .key_pairs()
                        .map(|(key, secret)| (key.clone(), secret.clone()))
                        .collect(),
                })
                .collect(),
            tls: pusher_api_tls,
        }),
    })
}

/// A gRPC listener anyone can call is a choice to make knowingly: `PublishIfOccupied` then lets
/// whoever reaches the port push events into the app's `private-` and `presence-` channels.
/// Said once at start-up and kept as a gauge for alerting.
fn warn_if_open_to_anyone(addr: SocketAddr, config: &Config, metrics: &Metrics) {
    let open = grpc_listener::is_open_to_anyone(
        addr,
        !config.grpc_tokens.is_empty(),
        config
            .grpc_tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some()),
    );
    metrics.grpc_insecure.set(i64::from(open));
    if open {
        tracing::warn!(
            %addr,
            "gRPC listens beyond loopback with neither --grpc-tokens nor client certificates: \
             anyone who reaches this port can call PublishIfOccupied and push events into the \
             app's private- and presence- channels"
        );
    }
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
