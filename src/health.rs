//! The `grpc.health.v1` status, driven by whether the store answers.
//!
//! Load balancers and orchestrators ask the health service, not our RPCs, so it must say
//! `NOT_SERVING` as soon as the store stops answering (every gate answer would fail) and
//! `SERVING` again as soon as it is back, without a restart. A background task pings the store
//! on an interval and reports transitions, both for the whole server (`""`) and for
//! `occupancy.v1.Occupancy`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::store::OccupancyStore;

/// The names whose status is reported: the whole server and the gate service.
pub const SERVICE_NAMES: [&str; 2] = ["", crate::proto::occupancy_server::SERVICE_NAME];

/// Pings `store` every `interval` until `shutdown`, keeping `reporter` up to date. Starts
/// `NOT_SERVING` so nothing is routed here before the first successful ping.
pub async fn track_store<S: OccupancyStore>(
    store: Arc<S>,
    reporter: HealthReporter,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut current = ServingStatus::NotServing;
    set_all(&reporter, current).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // The store has its own timeouts; this one guards against a ping that never returns.
        let limit = interval.max(Duration::from_secs(1));
        let next = match tokio::time::timeout(limit, store.ping()).await {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(err)) => {
                if current != ServingStatus::NotServing {
                    tracing::warn!(%err, "store stopped answering: health is NOT_SERVING");
                }
                ServingStatus::NotServing
            }
            Err(_) => {
                if current != ServingStatus::NotServing {
                    tracing::warn!(?limit, "store ping timed out: health is NOT_SERVING");
                }
                ServingStatus::NotServing
            }
        };
        if next != current {
            if next == ServingStatus::Serving {
                tracing::info!("store answers: health is SERVING");
            }
            current = next;
            set_all(&reporter, current).await;
        }
    }
    // Draining: tell balancers to stop sending new work here.
    set_all(&reporter, ServingStatus::NotServing).await;
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}
