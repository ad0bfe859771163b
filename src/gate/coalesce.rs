//! Coalescing progress-style publishes: per app, channel and event, at most one Pusher call per
//! interval, the latest data winning.
//!
//! A progress bar needs only the newest value, yet an encoder may report many times a second.
//! The first update of a quiet key is sent at once; later ones within the interval are held, a
//! newer held update replacing an older one; at the end of the interval the held update is sent
//! (if the channel is still occupied) and a new interval starts. So the last update is always
//! delivered, at most one interval late. On shutdown held updates are sent at once, not dropped.
//!
//! Keys that start an interval in the same publish share one task, so their held updates go out
//! together: one Pusher call per 100 channels holding the same data, not one call per channel.
//! A held update whose send fails in a way that may pass (429, 5xx, a timeout, Pusher
//! unreachable) is kept and sent again after a growing delay, until it goes out, a newer update
//! replaces it, or the process drains (one last attempt then). Other failures (a 4xx that
//! retrying cannot fix) are logged and the update dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::App;
use crate::channel::ChannelName;
use crate::metrics::{Metrics, count};
use crate::pusher::PublishError;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    app: String,
    channel: ChannelName,
    event: String,
}

/// An update waiting for the end of its interval.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Held {
    data: String,
    socket_id: Option<String>,
}

#[derive(Debug)]
struct Slot {
    interval: Duration,
    held: Option<Held>,
    /// The task pacing this key: a key retired and started again belongs to a new task, and
    /// the old one must leave it alone.
    pacer: u64,
}

/// What happened to one channel's update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it now; an interval starts.
    Now,
    /// Held for the end of the current interval; `superseded` says whether it replaced an older
    /// held update.
    Deferred {
        /// An older held update was replaced and will never be sent.
        superseded: bool,
    },
}

/// The held updates of every key; shared by all calls of one gate.
#[derive(Debug)]
pub struct Coalescer {
    slots: Mutex<HashMap<Key, Slot>>,
    /// The per-key tasks, so a drain can wait for held updates to go out.
    tasks: TaskTracker,
    /// Cancelled when the gate shuts down: held updates are sent then.
    shutdown: CancellationToken,
    /// Numbers the pacing tasks.
    pacers: AtomicU64,
    /// The service's metrics: held updates sent again are counted there.
    metrics: Arc<Metrics>,
}

impl Coalescer {
    /// No update held yet; held ones are sent early once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Mutex::default(),
            tasks: TaskTracker::new(),
            shutdown,
            pacers: AtomicU64::new(0),
            metrics,
        }
    }

    /// Decides for each of `channels` whether its update goes out now or is held. For channels
    /// sent now the caller publishes; one task for the keys this call starts sends their held
    /// updates later, together.
    pub fn decide(
        self: &Arc<Self>,
        app: &Arc<App>,
        channels: &[ChannelName],
        event: &str,
        data: &str,
        socket_id: Option<&str>,
        interval: Duration,
    ) -> Vec<Decision> {
        let pacer = self.pacers.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut started = Vec::new();
        let decisions = channels
            .iter()
            .map(|channel| {
                let key = Key {
                    app: app.id.clone(),
                    channel: channel.clone(),
                    event: event.to_owned(),
                };
                match slots.get_mut(&key) {
                    Some(slot) => {
                        slot.interval = interval;
                        let superseded = slot
                            .held
                            .replace(Held {
                                data: data.to_owned(),
                                socket_id: socket_id.map(str::to_owned),
                            })
                            .is_some();
                        Decision::Deferred { superseded }
                    }
                    None => {
                        slots.insert(
                            key.clone(),
                            Slot {
                                interval,
                                held: None,
                                pacer,
                            },
                        );
                        started.push(key);
                        Decision::Now
                    }
                }
            })
            .collect();
        if !started.is_empty() {
            self.tasks
                .spawn(self.clone().pace(app.clone(), pacer, started));
        }
        decisions
    }

    /// Waits until every held update was sent (they are sent at once after shutdown).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The intervals of keys started together: after each, send what is held, retire the keys
    /// that hold nothing, and stop when none is left. After a failed send that may pass, the
    /// next round waits for the retry delay (at least the interval).
    async fn pace(self: Arc<Self>, app: Arc<App>, pacer: u64, mut keys: Vec<Key>) {
        let mut retry: Option<Duration> = None;
        loop {
            let interval = {
                let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                keys.retain(|key| slots.get(key).is_some_and(|slot| slot.pacer == pacer));
                match keys
                    .iter()
                    .filter_map(|key| slots.get(key))
                    .map(|s| s.interval)
                    .max()
                {
                    Some(interval) => interval,
                    None => return,
                }
            };
            let wait = retry.map_or(interval, |delay| delay.max(interval));
            let draining = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = self.shutdown.cancelled() => true,
            };
            let held: Vec<(Key, Held)> = {
                let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                let mut held = Vec::new();
                for key in &keys {
                    match slots.get_mut(key).and_then(|slot| slot.held.take()) {
                        Some(update) => held.push((key.clone(), update)),
                        None => {
                            slots.remove(key);
                        }
                    }
                    if draining {
                        slots.remove(key);
                    }
                }
                held
            };
            if held.is_empty() {
                return;
            }
            let failed = send_held(&app, held).await;
            if draining {
                for (key, _) in &failed {
                    tracing::warn!(app = %app.id, channel = %key.channel, event = %key.event, "held update dropped: Pusher still failing at shutdown");
                }
                return;
            }
            if failed.is_empty() {
                retry = None;
                continue;
            }
            // Put each failed update back unless a newer one took its place meanwhile.
            count(
                &self.metrics.publish_channels,
                &[("app", &app.id), ("outcome", "held_retried")],
                failed.len() as u64,
            );
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, update) in failed {
                if let Some(slot) = slots.get_mut(&key) {
                    slot.held.get_or_insert(update);
                }
            }
            let delay = retry.map_or(RETRY_FIRST, |delay| (delay * 2).min(RETRY_MAX));
            retry = Some(delay);
        }
    }
}

/// The first delay before a failed held update is sent again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// The longest delay between attempts, so an update still arrives soon after Pusher recovers.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The most channels one Pusher trigger call may name.
const MAX_CHANNELS_PER_CALL: usize = 100;

/// Sends held updates whose channels are still occupied, one call per 100 channels sharing the
/// same data. Returns the updates whose send failed in a way that may pass, to try again.
async fn send_held(app: &App, held: Vec<(Key, Held)>) -> Vec<(Key, Held)> {
    let channels: Vec<ChannelName> = held.iter().map(|(key, _)| key.channel.clone()).collect();
    let held: Vec<(Key, Held)> = match app.store.occupied(&channels).await {
        Ok(answer) => held
            .into_iter()
            .filter(|(key, _)| {
                let occupied = answer.is_occupied(&key.channel);
                if !occupied {
                    tracing::debug!(app = %app.id, channel = %key.channel, event = %key.event, "held update dropped: the channel was vacated");
                }
                occupied
            })
            .collect(),
        Err(err) => {
            // Better to pay for one call than to lose the last update.
            tracing::warn!(app = %app.id, error = ?err, "store unavailable: sending the held updates anyway");
            held
        }
    };
    // Updates carrying the same data (and exclusion) can share a call.
    let mut groups: HashMap<Held, Vec<Key>> = HashMap::new();
    for (key, update) in held {
        groups.entry(update).or_default().push(key);
    }
    let mut failed = Vec::new();
    for (update, keys) in groups {
        for call in keys.chunks(MAX_CHANNELS_PER_CALL) {
            let channels: Vec<ChannelName> = call.iter().map(|key| key.channel.clone()).collect();
            let event = &call[0].event;
            match app
                .publisher
                .trigger(&channels, event, &update.data, update.socket_id.as_deref())
                .await
            {
                Ok(()) => {
                    tracing::debug!(app = %app.id, channels = channels.len(), %event, "held updates sent")
                }
                Err(err) if may_pass(&err) => {
                    tracing::warn!(app = %app.id, channels = channels.len(), %event, error = %crate::pusher::error_chain(&err), "held updates could not be sent: trying again");
                    failed.extend(call.iter().map(|key| (key.clone(), update.clone())));
                }
                Err(err) => {
                    tracing::warn!(app = %app.id, channels = channels.len(), %event, error = %crate::pusher::error_chain(&err), "held updates could not be sent and were dropped")
                }
            }
        }
    }
    failed
}

/// Whether a failed send may succeed later: Pusher was busy or broken (429, 5xx), did not
/// answer, or could not be reached. A 4xx other than 429 will fail the same way again.
fn may_pass(err: &PublishError) -> bool {
    match err {
        PublishError::Rejected { status, .. } => *status == 429 || *status >= 500,
        PublishError::Timeout(_) | PublishError::Unreachable(_) => true,
        PublishError::Encode(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        let rejected = |status| PublishError::Rejected {
            status,
            reason: String::new(),
        };
        for status in [429, 500, 502, 503, 504] {
            assert!(may_pass(&rejected(status)), "{status}");
        }
        for status in [400, 401, 403, 404, 413] {
            assert!(!may_pass(&rejected(status)), "{status}");
        }
        assert!(may_pass(&PublishError::Timeout(Duration::from_secs(1))));
    }
}
