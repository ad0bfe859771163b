//! The servers: the gRPC gate, the webhook listener and the admin listener over the same apps,
//! spawned into the service's task set (see [`crate::service`], which binds the listeners and
//! owns the tasks).
//!
//! Shutdown has two phases ([`Shutdown`]): first health turns `NOT_SERVING` so balancers stop sending work, then the listeners stop accepting, in-flight
//! requests finish, watch streams are told to end and held coalesced updates are sent. The
//! service bounds the whole drain with `--drain-timeout`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::TcpIncoming;

use crate::admin::{self, Readiness};
use crate::apps::Apps;
use crate::gate::{Coalescer, Gate, StoreDownPolicy};
use crate::grpc_auth::BearerTokens;
use crate::grpc_listener::{self, GrpcLimits};
use crate::health;
use crate::http_listener::{self, HttpLimits};
use crate::proto::occupancy_server::OccupancyServer;
use crate::pusher_api::{self, PusherApiSettings};
use crate::reconcile;
use crate::service::TaskSet;
use crate::webhook::{self, WebhookKeys};

/// Everything the two servers need besides their listeners.
pub struct Settings {
    /// The apps served, each with its store and Pusher client.
    pub apps: Arc<Apps>,
    /// Key/secret pairs accepted on webhooks, each naming its app.
    pub webhook_keys: WebhookKeys,
    /// Webhook body limit in bytes.
    pub webhook_body_limit: usize,
    /// How long a webhook body may take to arrive.
    pub webhook_body_timeout: Duration,
    /// Header timeout and connection cap of the webhook listener.
    pub http_limits: HttpLimits,
    /// What `PublishIfOccupied` does while the store cannot be asked.
    pub store_down: StoreDownPolicy,
    /// Most `WatchOccupancy` streams open at once.
    pub max_watch_streams: usize,
    /// How often the store is pinged for health.
    pub health_interval: Duration,
    /// How often sets are reconciled with Pusher; `None` turns reconciliation off.
    pub reconcile_interval: Option<Duration>,
    /// Tokens required on occupancy.v1 calls (none: open).
    pub grpc_tokens: BearerTokens,
    /// TLS for the gRPC listener (none: plaintext).
    pub grpc_tls: Option<ServerTlsConfig>,
    /// Webhook body bytes buffered at once across all connections.
    pub webhook_buffer_budget: usize,
    /// Handshake timeout and connection cap of the gRPC listener.
    pub grpc_limits: GrpcLimits,
    /// The Pusher API listener's settings (used when its listener is given).
    pub pusher_api: Option<PusherApiSettings>,
}

/// The listeners, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC: the gate, health and reflection.
    pub grpc: TcpListener,
    /// Webhooks from Pusher.
    pub http: TcpListener,
    /// Metrics and HTTP probes; keep it private.
    pub admin: TcpListener,
    /// Pusher's HTTP API, answered by the gate (`--pusher-api-addr`); none: not served.
    pub pusher_api: Option<TcpListener>,
}

/// The two phases of a shutdown. Cancelling `stop` alone implies draining.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Health turns `NOT_SERVING`; everything else goes on (the balancer's grace period).
    pub draining: CancellationToken,
    /// The listeners stop accepting, requests in flight finish, streams end.
    pub stop: CancellationToken,
}

/// Largest gRPC request accepted, on every service (health and reflection, open without a
/// token, included): 100 channel names of 164 bytes and 10 KB of data fit with room to spare;
/// anything larger is a mistake or an attack.
pub const GRPC_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Requests served at once on one gRPC connection (watch streams included).
pub const GRPC_MAX_CONCURRENT_STREAMS: u32 = 256;
/// HTTP/2 keepalive: a ping after this much silence, so dead peers and idle NAT entries are
/// noticed...
pub const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection is dropped if the ping is not answered within this.
pub const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why serving stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server")]
    Grpc(#[from] tonic::transport::Error),
    /// The webhook or admin server failed.
    #[error("webhook or admin server")]
    Http(#[from] std::io::Error),
    /// The reflection service could not be built from the descriptor sets.
    #[error("reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// An app's Pusher HTTP client could not be built (its TLS roots, say).
    #[error("cannot set up the Pusher HTTP client")]
    PusherClient(#[source] reqwest::Error),
    /// A task panicked; the panic itself is in the log.
    #[error("a service task panicked")]
    Panicked,
}

/// Wakes the reconcile loop (through `recovered`) whenever a store asks for a repair at once:
/// Redis lost data, or the change feed broke and may have missed changes. One forwarder per
/// distinct request source, until `stop`.
fn forward_repair_requests(
    apps: &Apps,
    recovered: &Arc<Notify>,
    stop: &CancellationToken,
    tasks: &mut TaskSet,
) {
    let mut sources: Vec<Arc<Notify>> = Vec::new();
    for app in apps.iter() {
        if let Some(source) = app.store.repair_wanted()
            && !sources.iter().any(|s| Arc::ptr_eq(s, &source))
        {
            sources.push(source);
        }
    }
    for source in sources {
        let (recovered, stop) = (recovered.clone(), stop.clone());
        tasks.spawn("repair requests", async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = source.notified() => {
                        tracing::info!("the store may have lost changes: reconciling now");
                        recovered.notify_one();
                    }
                }
            }
        });
    }
}

/// Reflection over every service this server offers, ready to build in either dialect.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Spawns the gRPC gate, the webhook and admin listeners, health and reconciliation into
/// `tasks`, all serving until `shutdown.stop`. Returns the coalescer whose held updates the
/// caller sends once every server has drained.
pub(crate) async fn spawn(
    settings: Settings,
    listeners: Listeners,
    shutdown: Shutdown,
    tasks: &mut TaskSet,
) -> Result<Arc<Coalescer>, ServeError> {
    let stop = shutdown.stop.clone();
    // Draining starts with whichever comes first.
    let draining = CancellationToken::new();
    {
        let (draining, early, stop) = (draining.clone(), shutdown.draining, stop.clone());
        tasks.spawn("drain signal", async move {
            tokio::select! {
                _ = early.cancelled() => {}
                _ = stop.cancelled() => {}
            }
            draining.cancel();
            // Ends with the others, not before: the first task to end stops the service.
            stop.cancelled().await;
            Ok(())
        });
    }
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service.max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES);
    let readiness = Readiness::default();
    // tonic's reporter starts at SERVING; nothing may be routed here before the store answered.
    health::set_all(
        &reporter,
        &readiness,
        tonic_health::ServingStatus::NotServing,
    )
    .await;
    let recovered = Arc::new(Notify::new());
    forward_repair_requests(&settings.apps, &recovered, &stop, tasks);
    {
        let health = health::track_store(
            settings.apps.clone(),
            reporter,
            readiness.clone(),
            settings.health_interval,
            recovered.clone(),
            draining,
        );
        let stop = stop.clone();
        tasks.spawn("health", async move {
            health.await;
            // Health ends when draining starts; the service is not stopped by that.
            stop.cancelled().await;
            Ok(())
        });
    }
    if let Some(interval) = settings.reconcile_interval {
        let reconcile = reconcile::run(settings.apps.clone(), interval, recovered, stop.clone());
        tasks.spawn("reconciliation", async move {
            reconcile.await;
            Ok(())
        });
    }

    // v1 for current grpcurl and grpc tools, v1alpha for grpcurl before 1.8.8.
    let reflection_v1 = reflection()
        .build_v1()?
        .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES);
    let reflection_v1alpha = reflection()
        .build_v1alpha()?
        .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES);

    let coalescer = Arc::new(Coalescer::new(stop.clone()));
    let gate = Gate::new(
        settings.apps.clone(),
        coalescer.clone(),
        settings.store_down,
        stop.clone(),
    )
    .with_max_watch_streams(settings.max_watch_streams);
    let tokens = settings.grpc_tokens;
    let budget =
        crate::grpc_budget::RequestBudget::new(crate::grpc_budget::GRPC_BUFFER_BUDGET_BYTES);
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(GRPC_MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT));
    if let Some(tls) = settings.grpc_tls {
        // A peer that starts a TLS handshake and stalls is dropped like a silent one.
        builder = builder.tls_config(tls.timeout(settings.grpc_limits.handshake_timeout))?;
    }
    // TCP_NODELAY on every accepted socket: without it Nagle's algorithm holds each small
    // response until the client's delayed ACK, about 40 ms per unary call from Go clients.
    let incoming = TcpIncoming::from(listeners.grpc)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let incoming = grpc_listener::limit(incoming, settings.grpc_limits);
    let occupancy = OccupancyServer::new(gate).max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES);
    let grpc_server = builder
        .layer(tower::util::MapRequestLayer::new(move |request| {
            budget.wrap(request)
        }))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            occupancy,
            move |request| tokens.check(request),
        ))
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tasks.spawn("gRPC server", async move {
        grpc_server.await.map_err(ServeError::from)
    });

    // The Pusher API listener: the same hardening as the webhook port, over the same apps.
    let pusher_api_server = match (listeners.pusher_api, settings.pusher_api) {
        (Some(listener), Some(mut api)) => {
            let tls = api.tls.take();
            Some(http_listener::serve_maybe_tls(
                listener,
                pusher_api::router(settings.apps.clone(), api),
                settings.http_limits,
                tls,
                stop.clone(),
            ))
        }
        _ => None,
    };
    if let Some(server) = pusher_api_server {
        tasks.spawn("Pusher API server", async move {
            server.await.map_err(ServeError::from)
        });
    }
    let router = webhook::router(
        settings.apps,
        settings.webhook_keys,
        settings.webhook_body_limit,
        settings.webhook_body_timeout,
        settings.webhook_buffer_budget,
    );
    let http_server =
        http_listener::serve(listeners.http, router, settings.http_limits, stop.clone());
    tasks.spawn("webhook server", async move {
        http_server.await.map_err(ServeError::from)
    });
    let admin_server = axum::serve(listeners.admin, admin::router(readiness))
        .with_graceful_shutdown(stop.cancelled_owned());
    tasks.spawn("admin server", async move {
        admin_server.await.map_err(ServeError::from)
    });
    Ok(coalescer)
}
