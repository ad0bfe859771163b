//! The `grpc.health.v1` status, driven by whether the store answers.
//!
//! Load balancers and orchestrators ask the health service, not our RPCs, so it must say
//! `NOT_SERVING` as soon as the store stops answering (every gate answer would fail) and
//! `SERVING` again as soon as it is back, without a restart. A background task pings the store
//! on an interval and reports transitions, both for the whole server (`""`) and for
//! `occupancy.v1.Occupancy`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::Readiness;
use crate::apps::Apps;
use crate::store::StoreError;

/// Failed pings in a row before health turns `NOT_SERVING`: one slow ping (a GC pause, a busy
/// Redis) must not take every replica out of the balancer at the same moment.
pub const FAILURES_BEFORE_NOT_SERVING: u32 = 2;

/// The names whose status is reported: the whole server and the gate service.
pub const SERVICE_NAMES: [&str; 2] = ["", crate::proto::occupancy_server::SERVICE_NAME];

/// Pings every app's store every `interval` (with a little jitter, so replicas do not ping in
/// step) until `shutdown` (the start of a drain: health turns `NOT_SERVING` at once), keeping
/// `reporter` and `readiness` up to date, and notifies `recovered` when the store answers again
/// after an outage. Starts `NOT_SERVING` so nothing is routed here before the first
/// successful ping, which is sent at once.
pub async fn track_store(
    apps: Arc<Apps>,
    reporter: HealthReporter,
    readiness: Readiness,
    interval: Duration,
    recovered: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut current = ServingStatus::NotServing;
    set_all(&reporter, &readiness, current).await;
    let mut failures = 0u32;
    // The first ping goes out at once: health turns SERVING as soon as the store answers, not
    // an interval after the listeners opened.
    let mut first = true;
    // Start-up counts as an outage: if the start-up reconcile found the store down, the first
    // SERVING makes it up at once instead of an interval later.
    let mut was_down = true;
    let jitter = jitter(interval);
    loop {
        let wait = if first {
            Duration::ZERO
        } else {
            interval + jitter
        };
        first = false;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        // The store has its own timeouts; this one guards against a ping that never returns.
        let limit = interval.max(Duration::from_secs(1));
        let failure = match tokio::time::timeout(limit, ping_all(&apps)).await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("store stopped answering ({err:?})")),
            Err(_) => Some(format!("store pings time out after {limit:?}")),
        };
        let next = match failure {
            None => {
                failures = 0;
                ServingStatus::Serving
            }
            Some(reason) => {
                failures += 1;
                if failures == FAILURES_BEFORE_NOT_SERVING {
                    tracing::warn!("{reason}: health is NOT_SERVING");
                }
                if failures >= FAILURES_BEFORE_NOT_SERVING || current == ServingStatus::NotServing {
                    ServingStatus::NotServing
                } else {
                    current
                }
            }
        };
        if failures >= FAILURES_BEFORE_NOT_SERVING {
            was_down = true;
        }
        if next != current {
            if next == ServingStatus::Serving {
                tracing::info!("store answers: health is SERVING");
                if was_down {
                    recovered.notify_one();
                    was_down = false;
                }
            }
            current = next;
            set_all(&reporter, &readiness, current).await;
        }
    }
    // Draining: tell balancers to stop sending new work here.
    set_all(&reporter, &readiness, ServingStatus::NotServing).await;
}

async fn ping_all(apps: &Apps) -> Result<(), StoreError> {
    for app in apps.iter() {
        app.store.ping().await?;
    }
    Ok(())
}

/// Up to a tenth of the interval, different in each process.
fn jitter(interval: Duration) -> Duration {
    let seed = std::process::id() as u64 ^ crate::clock::now_ms();
    interval.mul_f64((seed % 1000) as f64 / 10_000.0)
}

/// Reports `status` for every name in [`SERVICE_NAMES`] and on `/readyz`.
pub async fn set_all(reporter: &HealthReporter, readiness: &Readiness, status: ServingStatus) {
    readiness.set(status == ServingStatus::Serving);
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}
