//! Where the sets of occupied channels live, one set per Pusher app.
//!
//! Pusher promises neither order nor a single delivery, so the store does not simply add and
//! remove: every event carries Pusher's `time_ms`, and a channel changes only for an event at
//! least as new as the last one applied to it. Check and change are one atomic step (a Lua
//! script in Redis, one lock in memory), so concurrent deliveries to several replicas cannot
//! interleave wrongly. Per-channel timestamps are kept for a retention window only; events older
//! than the window are stale, so a replayed old webhook changes nothing and bookkeeping does not
//! grow with every channel ever seen.
//!
//! [`OccupancyStore`] is one app's view of a backend. The Redis store used in production and the
//! in-memory store used on a bare machine are interchangeable and pass the same tests.

mod connect;
mod feed;
mod memory;
mod redis;

use std::future::Future;
use std::time::Duration;

pub use self::feed::{HEARTBEAT, STALENESS_BOUND};
pub use self::memory::MemoryStore;
pub use self::redis::{RedisBackend, RedisStore, RedisStoreConfig, StoreKeys, check_redis_url};
use crate::channel::ChannelName;

/// What a webhook said happened to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    /// `channel_occupied`: the first subscriber arrived.
    Occupied,
    /// `channel_vacated`: the last subscriber left.
    Vacated,
}

/// One occupancy event, as a webhook reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The channel whose occupancy changed.
    pub channel: ChannelName,
    /// What happened.
    pub occupancy: Occupancy,
    /// When Pusher created the webhook (ms since the epoch): orders deliveries.
    pub time_ms: u64,
}

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The events that were applied, in order (the set now reflects them).
    pub applied: Vec<Event>,
    /// How many events were older than what the store already knew, or than the retention
    /// window, and so changed nothing.
    pub stale: usize,
}

/// What a reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Channels Pusher listed that the set lacked.
    pub added: Vec<String>,
    /// Channels the set held that Pusher did not list.
    pub removed: Vec<String>,
}

/// The channels that changed in one applied batch or repair, as watchers see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Channels that became occupied.
    pub occupied: Vec<String>,
    /// Channels that became vacant.
    pub vacated: Vec<String>,
}

impl ChangeBatch {
    /// The net changes of events applied in order: a channel named twice counts once, with its
    /// last state, so the batch means the same whichever list is applied first.
    pub fn of(events: &[Event]) -> Self {
        Self::from_states(
            events
                .iter()
                .map(|e| (e.channel.as_str(), e.occupancy == Occupancy::Occupied)),
        )
    }

    /// The net changes of `(channel, occupied)` states in order (later ones win).
    pub fn from_states<'a>(states: impl IntoIterator<Item = (&'a str, bool)>) -> Self {
        let mut last: Vec<(&str, bool)> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (channel, occupied) in states {
            match seen.get(channel) {
                Some(&index) => last[index] = (channel, occupied),
                None => {
                    seen.insert(channel, last.len());
                    last.push((channel, occupied));
                }
            }
        }
        let mut batch = Self::default();
        for (channel, occupied) in last {
            if occupied {
                batch.occupied.push(channel.to_owned());
            } else {
                batch.vacated.push(channel.to_owned());
            }
        }
        batch
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.occupied.is_empty() && self.vacated.is_empty()
    }
}

/// What a store tells its watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// These channels changed.
    Changes(ChangeBatch),
    /// Changes may have been missed (the feed between replicas broke): read the whole set again.
    Reset,
}

/// How many feed events a watcher may fall behind before it is resynchronised.
pub const WATCH_BUFFER: usize = 1024;

/// Why the store could not answer. Kept apart so callers can tell "retry later" from "an operator
/// must look", which map to different gRPC statuses and HTTP codes. The source is kept for the
/// log; callers show only the short message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached right now (refused, dropped, timed out, loading, read-only
    /// replica). Retrying later is the right answer, so webhooks get 503 and the gate
    /// `UNAVAILABLE`.
    #[error("occupancy store unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    /// The store answered, but with an error that retrying will not fix (for example the key
    /// holds something other than a set).
    #[error("occupancy store failed")]
    Failed(#[source] ::redis::RedisError),
    /// The store answered something this service does not understand.
    #[error("occupancy store answered unexpectedly: {0}")]
    Unexpected(&'static str),
}

impl StoreError {
    /// Whether retrying later can succeed. The one decision behind both answers to a store
    /// failure: `UNAVAILABLE` on the gate and 503 on webhooks when true (Pusher retries for five
    /// minutes), `INTERNAL` and 500 when an operator must look.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// One app's set of occupied channels.
///
/// Implementations answer every call with at most one round trip to their backend, over
/// connections set up once: the gate sits on the encoders' hot path.
pub trait OccupancyStore: Send + Sync + 'static {
    /// Applies `events` in order, as one atomic step, skipping stale ones.
    fn apply(&self, events: &[Event]) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// For each of `channels`, in order, whether it is occupied.
    fn occupied(
        &self,
        channels: &[ChannelName],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Every occupied channel.
    fn members(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Makes the set equal `listed` (Pusher's answer to a listing requested at `requested_at_ms`),
    /// except for channels changed by an event newer than the request, which stand. The one call
    /// that may take many short steps (chunks) rather than one: a listing can name hundreds of
    /// thousands of channels, and no single step may hold the backend long.
    fn reconcile(
        &self,
        listed: &[String],
        requested_at_ms: u64,
    ) -> impl Future<Output = Result<Repairs, StoreError>> + Send;

    /// Every change to this app's set from now on, whichever replica made it.
    fn watch(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<FeedEvent>>;

    /// Takes this app's reconcile lock for `ttl` unless another replica holds it; true when
    /// taken. A store private to one process always grants it.
    fn lock_reconcile(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Notified when this store wants a reconciliation at once rather than at the next
    /// interval: its backend lost data, or the feed between replicas broke and changes may have
    /// been missed. `None` for a store that never does (one private to this process).
    fn repair_wanted(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Succeeds only while the store can answer and take writes; drives the health status.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub use crate::clock::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_named_twice_in_a_batch_keeps_its_last_state() {
        let batch =
            ChangeBatch::from_states([("x", true), ("x", false), ("y", false), ("y", true)]);
        assert_eq!(batch.occupied, ["y"]);
        assert_eq!(batch.vacated, ["x"]);
    }
}
