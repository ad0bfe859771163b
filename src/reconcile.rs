//! Repairing each app's set from Pusher's own list of occupied channels.
//!
//! Webhooks get lost (an outage longer than Pusher's five minutes of retries, a server such as
//! soketi that never retries) and a Redis can restart empty. Without repair a dashboard that
//! stays open stays dark. So, per app, at start-up, after the store recovers, and every interval,
//! the set is compared with `GET /apps/{id}/channels`: what is missing is added, what is stale is
//! removed, but an event applied after the listing was requested stands (see
//! [`Store::reconcile`](crate::store::Store::reconcile)). What is missing is added from the first listing at once;
//! a removal waits for a second listing taken [`CONFIRM_DELAY`] later, because Pusher's listing
//! may omit a channel during the hold-back of `channel_vacated`, after which no webhook comes if
//! a subscriber returned. Each listing is one Pusher API call against the app's quota (two per
//! round), so with several replicas a short lock in the store lets only one of them list per
//! interval.
//!
//! The listing is trusted no more than a webhook: its size is bounded and every name checked,
//! and a listing that fails either check changes nothing (see
//! [`Publisher::channels`](crate::pusher::Publisher::channels)). The store applies the difference
//! in small chunks so that a listing of hundreds of thousands of channels never holds Redis for
//! long: webhooks and health checks are served between chunks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::apps::{App, Apps};
use crate::clock::now_ms;
use crate::metrics::{Metrics, count};
use crate::pusher::ListingError;

/// How long after the first listing the second one is taken, before anything is removed.
/// Pusher holds `channel_vacated` back for up to 3 s after the last subscriber leaves and sends
/// no webhook at all if one comes back within that time, while its listing may already omit the
/// channel. A removal taken from one listing inside that hold-back is never corrected by a
/// webhook, so removals wait for a second listing taken after it: 3 s plus a second of margin.
pub const CONFIRM_DELAY: Duration = Duration::from_secs(4);

/// Reconciles every app until `shutdown`: now, then every `interval`, and whenever `recovered`
/// is notified (the store came back from an outage).
///
/// A round lists each app's channels and adds what is missing at once (a data-loss repair must
/// not wait), then waits [`CONFIRM_DELAY`] once for all apps and lists again: only a channel
/// absent from both listings is removed. A recovery during the wait lists again at once for
/// every app whose lock is granted again (a data loss: the lock records the data's epoch) and
/// adds what is missing, then the wait goes on; if one came, apps whose first half failed get a
/// new round right after this one.
///
/// Rounds, triggers and repairs are counted into `metrics`.
pub async fn run(
    apps: Arc<Apps>,
    interval: Duration,
    recovered: Arc<Notify>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let rounds = Rounds {
        owner: instance_id(),
        // Held through the confirmation wait, then a little less than an interval, so no other
        // replica lists in the middle of a round and the next round can run on time anywhere.
        lock_ttl: CONFIRM_DELAY + interval.mul_f32(0.9).max(Duration::from_secs(1)),
        metrics,
    };
    let mut trigger = "start";
    loop {
        count(
            &rounds.metrics.reconcile_triggers,
            &[("trigger", trigger)],
            1,
        );
        // A recovery notified before this round's listings is covered by them.
        take_notification(&recovered);
        let mut pending = Vec::new();
        let mut unfinished = false;
        for app in apps.iter() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                first = rounds.first_listing(app) => match first {
                    Ok(first) => pending.push((app, first)),
                    Err(result) => {
                        unfinished = true;
                        rounds.count_round(app, result);
                    }
                },
            }
        }
        let mut recovered_meanwhile = false;
        let confirm_at = tokio::time::Instant::now() + CONFIRM_DELAY;
        while !pending.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(confirm_at) => break,
                _ = recovered.notified() => {
                    recovered_meanwhile = true;
                    tracing::info!("store recovered during the confirmation wait: adding from a new listing");
                    count(
                        &rounds.metrics.reconcile_triggers,
                        &[("trigger", "recovered")],
                        1,
                    );
                    for (app, first) in &mut pending {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = rounds.relist(app, first) => {}
                        }
                    }
                }
            }
        }
        for (app, first) in pending {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = rounds.confirm(app, first) => rounds.count_round(app, result),
            }
        }
        trigger = if recovered_meanwhile && unfinished {
            "recovered"
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => "interval",
                _ = recovered.notified() => {
                    tracing::info!("store recovered: reconciling");
                    "recovered"
                }
            }
        };
    }
}

/// Consumes a notification already stored in `notify`, if any.
fn take_notification(notify: &Notify) {
    use std::future::Future;
    let notified = std::pin::pin!(notify.notified());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = notified.poll(&mut cx);
}

/// What the first half of a round leaves for the second.
struct FirstListing {
    /// When the first listing was requested: events after it stand through both halves.
    requested_at: u64,
    listed: Vec<String>,
    /// Added at once from the first listing.
    added: Vec<String>,
}

/// What every round of this process shares: its name in the lock, how long the lock is held,
/// and where rounds, triggers and repairs are counted.
struct Rounds {
    owner: String,
    lock_ttl: Duration,
    metrics: Arc<Metrics>,
}

impl Rounds {
    /// Takes the lock, lists, and adds what the listing names and the set lacks, removing nothing
    /// (the listing may omit a channel inside Pusher's hold-back of `channel_vacated`). `Err` is the
    /// round's result when it ends here.
    async fn first_listing(&self, app: &App) -> Result<FirstListing, &'static str> {
        match app.store.lock_reconcile(&self.owner, self.lock_ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(app = %app.id, "another replica reconciles this interval");
                return Err("locked_elsewhere");
            }
            Err(err) => {
                tracing::warn!(app = %app.id, error = ?err, "reconcile skipped: store unavailable");
                return Err("store_unavailable");
            }
        }
        let requested_at = now_ms();
        let listed = list(app, "reconcile skipped").await?;
        let added = self.add_missing(app, &listed, requested_at).await?;
        Ok(FirstListing {
            requested_at,
            listed,
            added,
        })
    }

    /// A recovery in the middle of a round: if the lock is granted again (the data was lost, so its
    /// epoch changed; or a store private to this process), lists again and adds what is missing.
    /// The new listing joins the first, so it can only keep channels, never remove one.
    async fn relist(&self, app: &App, first: &mut FirstListing) {
        if !matches!(
            app.store.lock_reconcile(&self.owner, self.lock_ttl).await,
            Ok(true)
        ) {
            return;
        }
        if let Ok(listed) = list(app, "reconcile after a recovery skipped").await {
            if let Ok(added) = self.add_missing(app, &listed, now_ms()).await {
                first.added.extend(added);
            }
            first.listed.extend(listed);
        }
    }

    /// Lists again, adds what that listing names and the set lacks, then removes only a channel
    /// absent from both listings and not changed by an event since the first request.
    /// A second listing that fails or is refused removes nothing (`unconfirmed`).
    async fn confirm(&self, app: &App, first: FirstListing) -> &'static str {
        let second_at = now_ms();
        let second = match list(app, "reconcile unconfirmed: no removals this round").await {
            Ok(second) => second,
            Err(_) => return "unconfirmed",
        };
        // Additions come from the fresh listing only: the first may name a channel vacated since,
        // whose newer event a data loss in between erased.
        let mut added = first.added;
        match self.add_missing(app, &second, second_at).await {
            Ok(more) => added.extend(more),
            Err(result) => return result,
        }
        // Removals: what neither listing names. The first listing only protects current members.
        let members: std::collections::HashSet<String> = match app.store.members().await {
            Ok(members) => members.into_iter().collect(),
            Err(err) => {
                tracing::warn!(app = %app.id, error = ?err, "reconcile failed: store unavailable");
                return "failed";
            }
        };
        let mut listed: Vec<String> = first
            .listed
            .into_iter()
            .filter(|c| members.contains(c))
            .collect();
        drop(members);
        listed.extend(second);
        listed.sort_unstable();
        listed.dedup();
        let started = std::time::Instant::now();
        match app.store.reconcile(&listed, first.requested_at).await {
            Ok(repairs) => {
                self.count_repairs(app, &repairs);
                added.extend(repairs.added);
                let removed = repairs.removed;
                if added.is_empty() && removed.is_empty() {
                    tracing::debug!(app = %app.id, listed = listed.len(), "reconciled: nothing to repair");
                    return "clean";
                }
                tracing::warn!(
                    app = %app.id,
                    listed = listed.len(),
                    added = added.len(),
                    removed = removed.len(),
                    added_channels = ?added.iter().take(20).collect::<Vec<_>>(),
                    removed_channels = ?removed.iter().take(20).collect::<Vec<_>>(),
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

    /// Adds what `listed` names and the set lacks, removing nothing: reconciles against the listing
    /// plus every current member. A member added by a webhook between reading the members and the
    /// store's own scan could still be removed here; the confirming listing (or the next round)
    /// puts it back if Pusher lists it. `Err` is the round's result.
    async fn add_missing(
        &self,
        app: &App,
        listed: &[String],
        requested_at: u64,
    ) -> Result<Vec<String>, &'static str> {
        let members = match app.store.members().await {
            Ok(members) => members,
            Err(err) => {
                tracing::warn!(app = %app.id, error = ?err, "reconcile failed: store unavailable");
                return Err("failed");
            }
        };
        let mut keep: Vec<String> = listed.to_vec();
        keep.extend(members);
        keep.sort_unstable();
        keep.dedup();
        let started = std::time::Instant::now();
        let mut result = app.store.reconcile(&keep, requested_at).await;
        // After a data loss the members come from the copy this replica kept, so the call above also
        // restored channels Redis lost that Pusher does not list, stamped with the request time (which
        // would make a late `channel_vacated` for them look stale). Only Pusher's listing is
        // trusted for additions: take those straight out again.
        if let Ok(first) = &result {
            let listed_set: HashSet<&str> = listed.iter().map(String::as_str).collect();
            let restored: HashSet<&str> = first
                .added
                .iter()
                .map(String::as_str)
                .filter(|c| !listed_set.contains(c))
                .collect();
            if !restored.is_empty() {
                let keep: Vec<String> = keep
                    .iter()
                    .filter(|c| !restored.contains(c.as_str()))
                    .cloned()
                    .collect();
                let added: Vec<String> = first
                    .added
                    .iter()
                    .filter(|c| listed_set.contains(c.as_str()))
                    .cloned()
                    .collect();
                result =
                    app.store
                        .reconcile(&keep, requested_at)
                        .await
                        .map(|_| crate::store::Repairs {
                            added,
                            removed: Vec::new(),
                        });
            }
        }
        match result {
            Ok(repairs) => {
                self.count_repairs(app, &repairs);
                if !repairs.added.is_empty() {
                    tracing::warn!(
                        app = %app.id,
                        listed = listed.len(),
                        added = repairs.added.len(),
                        added_channels = ?repairs.added.iter().take(20).collect::<Vec<_>>(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "reconcile: added what Pusher lists; removals wait for a second listing"
                    );
                }
                Ok(repairs.added)
            }
            Err(err) => {
                tracing::warn!(app = %app.id, error = ?err, "reconcile failed: store unavailable");
                Err("failed")
            }
        }
    }

    /// Counts one app's round by its result, as `occupancy_reconcile_rounds_total` labels it.
    fn count_round(&self, app: &App, result: &'static str) {
        count(
            &self.metrics.reconcile_rounds,
            &[("app", &app.id), ("result", result)],
            1,
        );
    }

    /// Counts what one repair added and removed, as `occupancy_reconcile_repairs_total`
    /// labels it.
    fn count_repairs(&self, app: &App, repairs: &crate::store::Repairs) {
        for (change, n) in [
            ("added", repairs.added.len()),
            ("removed", repairs.removed.len()),
        ] {
            if n > 0 {
                count(
                    &self.metrics.reconcile_repairs,
                    &[("app", &app.id), ("change", change)],
                    n as u64,
                );
            }
        }
    }
}

/// One listing of the app's channels; `Err` is the round's result when it cannot be used.
async fn list(app: &App, what: &'static str) -> Result<Vec<String>, &'static str> {
    match app.publisher.channels().await {
        Ok(listed) => Ok(listed),
        Err(err @ ListingError::Request(_)) => {
            tracing::warn!(app = %app.id, error = %crate::pusher::error_chain(&err), "{what}: cannot list channels");
            Err("listing_failed")
        }
        Err(err) => {
            tracing::warn!(app = %app.id, reason = err.reason(), error = %crate::pusher::error_chain(&err), "{what}: the channel list was refused and nothing was removed");
            Err("listing_refused")
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
