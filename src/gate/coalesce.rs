//! Coalescing progress-style publishes: per app, channel and event, at most one Pusher call per
//! interval, the latest data winning.
//!
//! A progress bar needs only the newest value, yet an encoder may report many times a second.
//! The first update of a quiet key is sent at once; later ones within the interval are held, a
//! newer held update replacing an older one; at the end of the interval the held update is sent
//! (if the channel is still occupied) and a new interval starts. So the last update is always
//! delivered, at most one interval late. On shutdown held updates are sent at once, not dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::App;
use crate::channel::ChannelName;
use crate::store::OccupancyStore;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    app: String,
    channel: ChannelName,
    event: String,
}

/// An update waiting for the end of its interval.
#[derive(Clone, Debug)]
struct Held {
    data: String,
    socket_id: Option<String>,
}

#[derive(Debug)]
struct Slot {
    interval: Duration,
    held: Option<Held>,
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
}

impl Coalescer {
    /// No update held yet; held ones are sent early once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            slots: Mutex::default(),
            tasks: TaskTracker::new(),
            shutdown,
        }
    }

    /// Decides for each of `channels` whether its update goes out now or is held. For channels
    /// sent now the caller publishes; a task per busy key sends held updates later.
    pub fn decide<S: OccupancyStore>(
        self: &Arc<Self>,
        app: &Arc<App<S>>,
        channels: &[ChannelName],
        event: &str,
        data: &str,
        socket_id: Option<&str>,
        interval: Duration,
    ) -> Vec<Decision> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        channels
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
                            },
                        );
                        self.tasks.spawn(self.clone().pace(app.clone(), key));
                        Decision::Now
                    }
                }
            })
            .collect()
    }

    /// Waits until every held update was sent (they are sent at once after shutdown).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// One key's intervals: after each, send what is held, or retire the key when nothing is.
    async fn pace<S: OccupancyStore>(self: Arc<Self>, app: Arc<App<S>>, key: Key) {
        loop {
            let interval = {
                let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                match slots.get(&key) {
                    Some(slot) => slot.interval,
                    None => return,
                }
            };
            let draining = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = self.shutdown.cancelled() => true,
            };
            let held = {
                let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                let held = slots.get_mut(&key).and_then(|slot| slot.held.take());
                if held.is_none() || draining {
                    slots.remove(&key);
                }
                held
            };
            let Some(held) = held else { return };
            send_held(&app, &key, held).await;
            if draining {
                return;
            }
        }
    }
}

/// Sends a held update if its channel is still occupied.
async fn send_held<S: OccupancyStore>(app: &App<S>, key: &Key, held: Held) {
    match app.store.occupied(std::slice::from_ref(&key.channel)).await {
        Ok(answer) if answer.first() == Some(&true) => {}
        Ok(_) => {
            tracing::debug!(app = %app.id, channel = %key.channel, event = %key.event, "held update dropped: the channel was vacated");
            return;
        }
        Err(err) => {
            // Better to pay for one call than to lose the last update.
            tracing::warn!(app = %app.id, error = ?err, "store unavailable: sending the held update anyway");
        }
    }
    match app
        .publisher
        .trigger(
            std::slice::from_ref(&key.channel),
            &key.event,
            &held.data,
            held.socket_id.as_deref(),
        )
        .await
    {
        Ok(()) => {
            tracing::debug!(app = %app.id, channel = %key.channel, event = %key.event, "held update sent")
        }
        Err(err) => {
            tracing::warn!(app = %app.id, channel = %key.channel, event = %key.event, error = %crate::pusher::error_chain(&err), "held update could not be sent")
        }
    }
}
