//! Wiring: the gRPC gate, the webhook listener and the admin listener over the same apps, served
//! until shutdown.
//!
//! The listeners are bound by the caller and handed in, so the binary can report bind errors
//! clearly and tests can use port 0. Shutdown has two phases ([`Shutdown`]): first health turns
//! `NOT_SERVING` so balancers stop sending work, then the listeners stop accepting, in-flight
//! requests finish, watch streams are told to end and held coalesced updates are sent. The
//! binary bounds the whole drain with `--drain-timeout`.

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
use crate::health;
use crate::http_listener::{self, HttpLimits};
use crate::proto::occupancy_server::OccupancyServer;
use crate::reconcile;
use crate::store::OccupancyStore;
use crate::webhook::{self, WebhookKeys};

/// Everything the two servers need besides their listeners.
pub struct Settings<S> {
    /// The apps served, each with its store and Pusher client.
    pub apps: Arc<Apps<S>>,
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
    /// How often the store is pinged for health.
    pub health_interval: Duration,
    /// How often sets are reconciled with Pusher; `None` turns reconciliation off.
    pub reconcile_interval: Option<Duration>,
    /// Tokens required on occupancy.v1 calls (none: open).
    pub grpc_tokens: BearerTokens,
    /// TLS for the gRPC listener (none: plaintext).
    pub grpc_tls: Option<ServerTlsConfig>,
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
}

/// The two phases of a shutdown. Cancelling `stop` alone implies draining.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Health turns `NOT_SERVING`; everything else goes on (the balancer's grace period).
    pub draining: CancellationToken,
    /// The listeners stop accepting, requests in flight finish, streams end.
    pub stop: CancellationToken,
}

/// Largest gRPC request accepted: 100 channel names of 164 bytes and 10 KB of data fit with
/// room to spare; anything larger is a mistake or an attack.
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
}

/// Wakes the reconcile loop (through `recovered`) whenever a store asks for a repair at once:
/// Redis lost data, or the change feed broke and may have missed changes. One forwarder per
/// distinct request source, until `stop`.
fn forward_repair_requests<S: OccupancyStore>(
    apps: &Apps<S>,
    recovered: &Arc<Notify>,
    stop: &CancellationToken,
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
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
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

/// Serves gRPC, webhooks and the admin routes until `shutdown.stop`, then drains.
pub async fn serve<S: OccupancyStore>(
    settings: Settings<S>,
    listeners: Listeners,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let stop = shutdown.stop.clone();
    // Draining starts with whichever comes first.
    let draining = CancellationToken::new();
    {
        let (draining, early, stop) = (draining.clone(), shutdown.draining, stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = early.cancelled() => {}
                _ = stop.cancelled() => {}
            }
            draining.cancel();
        });
    }
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::default();
    let recovered = Arc::new(Notify::new());
    forward_repair_requests(&settings.apps, &recovered, &stop);
    let health_task = tokio::spawn(health::track_store(
        settings.apps.clone(),
        reporter,
        readiness.clone(),
        settings.health_interval,
        recovered.clone(),
        draining,
    ));
    let reconcile_task = settings.reconcile_interval.map(|interval| {
        tokio::spawn(reconcile::run(
            settings.apps.clone(),
            interval,
            recovered,
            stop.clone(),
        ))
    });

    // v1 for current grpcurl and grpc tools, v1alpha for grpcurl before 1.8.8.
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let coalescer = Arc::new(Coalescer::new(stop.clone()));
    let gate = Gate::new(
        settings.apps.clone(),
        coalescer.clone(),
        settings.store_down,
        stop.clone(),
    );
    let tokens = settings.grpc_tokens;
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(GRPC_MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT));
    if let Some(tls) = settings.grpc_tls {
        builder = builder.tls_config(tls)?;
    }
    // TCP_NODELAY on every accepted socket: without it Nagle's algorithm holds each small
    // response until the client's delayed ACK, about 40 ms per unary call from Go clients.
    let incoming = TcpIncoming::from(listeners.grpc)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let occupancy = OccupancyServer::new(gate).max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES);
    let grpc_server = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            occupancy,
            move |request| tokens.check(request),
        ))
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());

    let router = webhook::router(
        settings.apps,
        settings.webhook_keys,
        settings.webhook_body_limit,
        settings.webhook_body_timeout,
    );
    let http_server =
        http_listener::serve(listeners.http, router, settings.http_limits, stop.clone());
    let admin_server = axum::serve(listeners.admin, admin::router(readiness))
        .with_graceful_shutdown(stop.clone().cancelled_owned());

    let result = tokio::try_join!(
        async { grpc_server.await.map_err(ServeError::from) },
        async { http_server.await.map_err(ServeError::from) },
        async { admin_server.await.map_err(ServeError::from) },
    );
    // If one server failed, stop the others and the background tasks too.
    stop.cancel();
    // Held coalesced updates go out now rather than being lost.
    coalescer.drain().await;
    if let Err(err) = health_task.await {
        tracing::error!(%err, "the health task panicked");
    }
    if let Some(task) = reconcile_task
        && let Err(err) = task.await
    {
        tracing::error!(%err, "the reconcile task panicked");
    }
    result.map(|_| ())
}
