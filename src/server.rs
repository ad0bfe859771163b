//! Wiring: the gRPC gate and the webhook listener over the same apps, served until shutdown.
//!
//! Both listeners are bound by the caller and handed in, so the binary can report bind errors
//! clearly and tests can use port 0. Shutdown stops accepting, lets in-flight requests finish,
//! ends watch streams, then returns.

use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::TcpIncoming;

use crate::apps::Apps;
use crate::gate::Gate;
use crate::grpc_auth::BearerTokens;
use crate::health;
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
    /// How often the store is pinged for health.
    pub health_interval: Duration,
    /// How often sets are reconciled with Pusher; `None` turns reconciliation off.
    pub reconcile_interval: Option<Duration>,
    /// Tokens required on occupancy.v1 calls (none: open).
    pub grpc_tokens: BearerTokens,
    /// TLS for the gRPC listener (none: plaintext).
    pub grpc_tls: Option<ServerTlsConfig>,
}

/// Why serving stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server")]
    Grpc(#[from] tonic::transport::Error),
    /// The webhook server failed.
    #[error("webhook server")]
    Http(#[from] std::io::Error),
    /// The reflection service could not be built from the descriptor sets.
    #[error("reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Reflection over every service this server offers, ready to build in either dialect.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Serves gRPC on `grpc` and webhooks on `http` until `shutdown` is cancelled, then drains.
pub async fn serve<S: OccupancyStore>(
    settings: Settings<S>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let recovered = Arc::new(Notify::new());
    let health_task = tokio::spawn(health::track_store(
        settings.apps.clone(),
        reporter,
        settings.health_interval,
        recovered.clone(),
        shutdown.clone(),
    ));
    let reconcile_task = settings.reconcile_interval.map(|interval| {
        tokio::spawn(reconcile::run(
            settings.apps.clone(),
            interval,
            recovered,
            shutdown.clone(),
        ))
    });

    // v1 for current grpcurl and grpc tools, v1alpha for grpcurl before 1.8.8.
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let gate = Gate::new(settings.apps.clone(), shutdown.clone());
    let tokens = settings.grpc_tokens;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = settings.grpc_tls {
        builder = builder.tls_config(tls)?;
    }
    // TCP_NODELAY on every accepted socket: without it Nagle's algorithm holds each small
    // response until the client's delayed ACK, about 40 ms per unary call from Go clients.
    let incoming = TcpIncoming::from(grpc).with_nodelay(Some(true));
    let grpc_server = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(OccupancyServer::with_interceptor(gate, move |request| {
            tokens.check(request)
        }))
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());

    let router = webhook::router(
        settings.apps,
        settings.webhook_keys,
        settings.webhook_body_limit,
    );
    // The same for webhook answers: Pusher waits for each one.
    let http = http.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on a webhook connection");
        }
    });
    let http_server =
        axum::serve(http, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());

    let result = tokio::try_join!(
        async { grpc_server.await.map_err(ServeError::from) },
        async { http_server.await.map_err(ServeError::from) },
    );
    // If one server failed, stop the other and the background tasks too.
    shutdown.cancel();
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
