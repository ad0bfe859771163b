//! Repairing each app's set from Pusher's own list of occupied channels.
//!
//! Webhooks get lost (an outage longer than Pusher's five minutes of retries, a server such as
//! soketi that never retries) and a Redis can restart empty. Without repair a dashboard that
//! stays open stays dark. So, per app, at start-up, after the store recovers, and every interval,
//! the set is compared with `GET /apps/{id}/channels`: what is missing is added, what is stale is
//! removed, but an event applied after the listing was requested stands (see
//! [`Store::reconcile`](crate::store::Store::reconcile)). Each listing is one Pusher API call
//! against the app's quota, so with several replicas a short lock in the store lets only one of
//! them list per interval.
//!
//! The listing is trusted no more than a webhook: its size is bounded and every name checked,
//! and a listing that fails either check changes nothing (see
//! [`Publisher::channels`](crate::pusher::Publisher::channels)). The store applies the difference
//! in small chunks so that a listing of hundreds of thousands of channels never holds Redis for
//! long: webhooks and health checks are served between chunks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::apps::{App, Apps};
use crate::pusher::ListingError;
use crate::store::now_ms;

/// Reconciles every app until `shutdown`: now, then every `interval`, and whenever `recovered`
/// is notified (the store came back from an outage).
pub async fn run(
    apps: Arc<Apps>,
    interval: Duration,
    recovered: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let owner = instance_id();
    // Held a little less than an interval, so the next round can run on time anywhere.
    let lock_ttl = interval.mul_f32(0.9).max(Duration::from_secs(1));
    let mut trigger = "start";
    loop {
        crate::metrics::count(
            &crate::metrics::metrics().reconcile_triggers,
            &[("trigger", trigger)],
            1,
        );
        for app in apps.iter() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = reconcile(app, &owner, lock_ttl) => {}
            }
        }
        trigger = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => "interval",
            _ = recovered.notified() => {
                tracing::info!("store recovered: reconciling");
                "recovered"
            }
        };
    }
}

/// One round for one app, counted by its result. Failures are logged and left for the next
/// round.
pub async fn reconcile(app: &App, owner: &str, lock_ttl: Duration) {
    let result = round(app, owner, lock_ttl).await;
    crate::metrics::count(
        &crate::metrics::metrics().reconcile_rounds,
        &[("app", &app.id), ("result", result)],
        1,
    );
}

/// One round for one app; its result as `occupancy_reconcile_rounds_total` labels it.
async fn round(app: &App, owner: &str, lock_ttl: Duration) -> &'static str {
    match app.store.lock_reconcile(owner, lock_ttl).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(app = %app.id, "another replica reconciles this interval");
            return "locked_elsewhere";
        }
        Err(err) => {
            tracing::warn!(app = %app.id, error = ?err, "reconcile skipped: store unavailable");
            return "store_unavailable";
        }
    }
    let requested_at = now_ms();
    let listed = match app.publisher.channels().await {
        Ok(listed) => listed,
        Err(err @ ListingError::Request(_)) => {
            tracing::warn!(app = %app.id, error = %crate::pusher::error_chain(&err), "reconcile skipped: cannot list channels");
            return "listing_failed";
        }
        Err(err) => {
            tracing::warn!(app = %app.id, reason = err.reason(), error = %crate::pusher::error_chain(&err), "reconcile skipped: the channel list was refused and nothing was changed");
            return "listing_refused";
        }
    };
    let started = std::time::Instant::now();
    match app.store.reconcile(&listed, requested_at).await {
        Ok(repairs) if repairs.added.is_empty() && repairs.removed.is_empty() => {
            tracing::debug!(app = %app.id, listed = listed.len(), "reconciled: nothing to repair");
            "clean"
        }
        Ok(repairs) => {
            let m = crate::metrics::metrics();
            for (change, n) in [
                ("added", repairs.added.len()),
                ("removed", repairs.removed.len()),
            ] {
                crate::metrics::count(
                    &m.reconcile_repairs,
                    &[("app", &app.id), ("change", change)],
                    n as u64,
                );
            }
            tracing::warn!(
                app = %app.id,
                listed = listed.len(),
                added = repairs.added.len(),
                removed = repairs.removed.len(),
                added_channels = ?repairs.added.iter().take(20).collect::<Vec<_>>(),
                removed_channels = ?repairs.removed.iter().take(20).collect::<Vec<_>>(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "reconciled: repaired the set from Pusher's channel list"
            );
            "repaired"
        }
        Err(err) => {
            tracing::warn!(app = %app.id, error = ?err, "reconcile failed: store unavailable");
            "failed"
        }
    }
}

/// Names this process in the reconcile lock, for operators reading Redis.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{host}:{}:{}", std::process::id(), now_ms())
}
