//! The servers: the gRPC gate, the webhook listener and the admin listener over the same apps,
//! spawned into the service's task set (see [`super`], which binds the listeners and owns the
//! tasks).
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
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::admin::{self, Readiness};
use crate::apps::Apps;
use crate::config::Config;
use crate::gate::{Coalescer, Gate};
use crate::grpc_auth::BearerTokens;
use crate::grpc_listener;
use crate::health;
use crate::http_listener::{self, Named};
use crate::metrics::Metrics;
use crate::proto::occupancy_server::OccupancyServer;
use crate::pusher_api::{self, PusherApiAccess};
use crate::reconcile;
use crate::webhook::{self, WebhookKeys};

use super::tasks::{ServeError, Shutdown, TaskSet};

/// What the servers need that is built at start-up rather than read from the [`Config`]: the
/// apps with their stores and Pusher clients, and the keys, tokens and TLS settings in the form
/// their checks use. Everything else is read from the configuration itself.
pub struct Built {
    /// The apps served, each with its store and Pusher client.
    pub apps: Arc<Apps>,
    /// What every server counts into, served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Key/secret pairs accepted on webhooks, each naming its app.
    pub webhook_keys: WebhookKeys,
    /// Tokens required on occupancy.v1 calls (none: open).
    pub grpc_tokens: BearerTokens,
    /// TLS for the gRPC listener (none: plaintext).
    pub grpc_tls: Option<ServerTlsConfig>,
    /// The Pusher API listener's keys and TLS (used when its listener is given).
    pub pusher_api: Option<PusherApiAccess>,
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
    config: &Config,
    built: Built,
    listeners: Listeners,
    shutdown: Shutdown,
    tasks: &mut TaskSet,
) -> Result<Arc<Coalescer>, ServeError> {
    let stop = shutdown.stop.clone();
    let draining = spawn_drain_signal(shutdown, tasks);
    let (health_service, readiness) =
        spawn_health_and_repairs(config, &built, draining, &stop, tasks).await;
    let coalescer = Arc::new(Coalescer::new(stop.clone(), built.metrics.clone()));
    let Built {
        apps,
        metrics,
        webhook_keys,
        grpc_tokens,
        grpc_tls,
        pusher_api,
    } = built;
    let gate = Gate::new(
        apps.clone(),
        coalescer.clone(),
        config.store_down,
        stop.clone(),
        metrics.clone(),
    )
    .with_max_watch_streams(config.max_watch_streams);
    spawn_grpc(
        config,
        gate,
        grpc_tokens,
        grpc_tls,
        health_service,
        listeners.grpc,
        &metrics,
        &stop,
        tasks,
    )?;

    // The Pusher API listener: the same hardening as the webhook port, over the same apps.
    if let (Some(listener), Some(access)) = (listeners.pusher_api, pusher_api) {
        let router = pusher_api::router(
            apps.clone(),
            access.keys,
            config.max_event_bytes,
            config.http_body_timeout,
            config.store_down,
            metrics.clone(),
        );
        let server = http_listener::serve_maybe_tls(
            listener,
            router,
            config.http_limits,
            access.tls,
            Named {
                name: "pusher_api",
                metrics: metrics.clone(),
            },
            stop.clone(),
        );
        tasks.spawn("Pusher API server", async move {
            server.await.map_err(ServeError::from)
        });
    }
    let router = webhook::router(
        apps,
        webhook_keys,
        config.webhook_body_limit,
        config.http_body_timeout,
        config.webhook_buffer_budget,
        metrics.clone(),
    );
    let http_server = http_listener::serve(
        listeners.http,
        router,
        config.http_limits,
        Named {
            name: "webhook",
            metrics: metrics.clone(),
        },
        stop.clone(),
    );
    tasks.spawn("webhook server", async move {
        http_server.await.map_err(ServeError::from)
    });
    let admin_server = axum::serve(listeners.admin, admin::router(readiness, metrics))
        .with_graceful_shutdown(stop.cancelled_owned());
    tasks.spawn("admin server", async move {
        admin_server.await.map_err(ServeError::from)
    });
    Ok(coalescer)
}

/// Draining starts with whichever comes first: the early signal, or the stop itself. Returns
/// the token that says so.
fn spawn_drain_signal(shutdown: Shutdown, tasks: &mut TaskSet) -> CancellationToken {
    let draining = CancellationToken::new();
    let (signal, early, stop) = (draining.clone(), shutdown.draining, shutdown.stop);
    tasks.spawn("drain signal", async move {
        tokio::select! {
            _ = early.cancelled() => {}
            _ = stop.cancelled() => {}
        }
        signal.cancel();
        // Ends with the others, not before: the first task to end stops the service.
        stop.cancelled().await;
        Ok(())
    });
    draining
}

/// Health (gRPC health and `/readyz`, from store pings), and reconciliation with Pusher on its
/// interval and whenever a store asks for a repair. Returns the health service to serve on the
/// gRPC port and the readiness the admin port reports.
async fn spawn_health_and_repairs(
    config: &Config,
    built: &Built,
    draining: CancellationToken,
    stop: &CancellationToken,
    tasks: &mut TaskSet,
) -> (HealthServer<impl Health>, Readiness) {
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
    let apps = &built.apps;
    let recovered = Arc::new(Notify::new());
    forward_repair_requests(apps, &recovered, stop, tasks);
    let health = health::track_store(
        apps.clone(),
        reporter,
        readiness.clone(),
        config.health_interval,
        recovered.clone(),
        draining,
    );
    let until_stop = stop.clone();
    tasks.spawn("health", async move {
        health.await;
        // Health ends when draining starts; the service is not stopped by that.
        until_stop.cancelled().await;
        Ok(())
    });
    if let Some(interval) = config.reconcile_interval {
        let reconcile = reconcile::run(
            apps.clone(),
            interval,
            recovered,
            stop.clone(),
            built.metrics.clone(),
        );
        tasks.spawn("reconciliation", async move {
            reconcile.await;
            Ok(())
        });
    }
    (health_service, readiness)
}

/// The gRPC server: the gate behind its tokens, health and reflection, with every limit a
/// stranger's connection is held to.
#[allow(clippy::too_many_arguments)]
fn spawn_grpc(
    config: &Config,
    gate: Gate,
    tokens: BearerTokens,
    tls: Option<ServerTlsConfig>,
    health_service: HealthServer<impl Health>,
    listener: TcpListener,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
    tasks: &mut TaskSet,
) -> Result<(), ServeError> {
    // v1 for current grpcurl and grpc tools, v1alpha for grpcurl before 1.8.8.
    let reflection_v1 = reflection()
        .build_v1()?
        .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES);
    let reflection_v1alpha = reflection()
        .build_v1alpha()?
        .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES);
    let budget = crate::grpc_budget::RequestBudget::new(
        crate::grpc_budget::GRPC_BUFFER_BUDGET_BYTES,
        metrics.grpc_refused("buffer_budget"),
    );
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(GRPC_MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT));
    if let Some(tls) = tls {
        // A peer that starts a TLS handshake and stalls is dropped like a silent one.
        builder = builder.tls_config(tls.timeout(config.grpc_limits.handshake_timeout))?;
    }
    // TCP_NODELAY on every accepted socket: without it Nagle's algorithm holds each small
    // response until the client's delayed ACK, about 40 ms per unary call from Go clients.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let incoming = grpc_listener::limit(incoming, config.grpc_limits, metrics.clone());
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
    Ok(())
}
