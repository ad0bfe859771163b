//! The in-memory store: one app's set in this process, for a bare machine and for tests.
//!
//! State is lost on exit and is not shared with other replicas or with encoders reading Redis,
//! which is why start-up logs say so plainly when this store is chosen. It orders events exactly
//! as the Redis store does, so both pass the same tests.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

use super::change::{Applied, ChangeBatch, Event, FeedEvent, Occupancy, Repairs, WATCH_BUFFER};
use super::error::StoreError;
use crate::channel::ChannelName;
use crate::clock::now_ms;

/// What is known of one channel: whether it is occupied, and the time of the last event applied.
#[derive(Debug, Clone, Copy)]
struct Entry {
    occupied: bool,
    time_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Occupied channels, and vacated ones still inside the retention window.
    channels: HashMap<Box<str>, Entry>,
    /// When vacated entries outside the window were last dropped.
    pruned_at_ms: u64,
}

/// One app's set of occupied channels, held in this process. Cloning shares the set.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
    retention_ms: u64,
    changes: broadcast::Sender<Arc<FeedEvent>>,
}

/// How many reconcile changes are made under one write lock (see the Redis store's chunk).
const RECONCILE_CHUNK: usize = 1000;

/// How often vacated entries past the window are dropped: often enough to bound memory, rarely
/// enough that the scan costs nothing noticeable.
const PRUNE_EVERY_MS: u64 = 10_000;

impl MemoryStore {
    /// An empty store (every channel vacant) that remembers event times for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            state: Arc::default(),
            retention_ms: retention.as_millis() as u64,
            changes: broadcast::channel(WATCH_BUFFER).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock only means another writer panicked mid-batch; the map is still valid.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn announce(&self, batch: ChangeBatch) {
        if !batch.is_empty() {
            // No watcher is not an error.
            let _ = self.changes.send(Arc::new(FeedEvent::Changes(batch)));
        }
    }
}

/// The calls [`super::Store`] makes; every one answers at once, from memory.
impl MemoryStore {
    pub(super) async fn apply(&self, events: &[Event]) -> Result<Applied, StoreError> {
        let now = now_ms();
        let horizon = now.saturating_sub(self.retention_ms);
        let mut state = self.write();
        if now.saturating_sub(state.pruned_at_ms) >= PRUNE_EVERY_MS {
            state
                .channels
                .retain(|_, entry| entry.occupied || entry.time_ms >= horizon);
            state.pruned_at_ms = now;
        }
        let mut result = Applied::default();
        // Channels changed by this batch: within one webhook, events apply in the order listed.
        let mut touched = std::collections::HashSet::new();
        for event in events {
            let known = state.channels.get(event.channel.as_str()).copied();
            let known = known.filter(|entry| entry.time_ms >= horizon);
            // On equal time_ms from different requests occupied wins (see apply.lua for why).
            let stale = event.time_ms < horizon
                || known.is_some_and(|entry| {
                    event.time_ms < entry.time_ms
                        || (event.time_ms == entry.time_ms
                            && entry.occupied
                            && event.occupancy == Occupancy::Vacated
                            && !touched.contains(event.channel.as_str()))
                });
            if stale {
                result.stale += 1;
                continue;
            }
            let entry = Entry {
                occupied: event.occupancy == Occupancy::Occupied,
                time_ms: event.time_ms,
            };
            match state.channels.get_mut(event.channel.as_str()) {
                Some(slot) => *slot = entry,
                None => {
                    state.channels.insert(event.channel.as_str().into(), entry);
                }
            }
            touched.insert(event.channel.as_str());
            result.applied.push(event.clone());
        }
        drop(state);
        self.announce(ChangeBatch::of(&result.applied));
        Ok(result)
    }

    pub(super) async fn occupied(&self, channels: &[ChannelName]) -> Result<Vec<bool>, StoreError> {
        let state = self.read();
        Ok(channels
            .iter()
            .map(|c| state.channels.get(c.as_str()).is_some_and(|e| e.occupied))
            .collect())
    }

    pub(super) async fn members(&self) -> Result<Vec<String>, StoreError> {
        let state = self.read();
        Ok(state
            .channels
            .iter()
            .filter(|(_, e)| e.occupied)
            .map(|(c, _)| c.to_string())
            .collect())
    }

    /// Like the Redis store: the difference is found under a read lock, then applied in
    /// chunks of [`RECONCILE_CHUNK`], each under a short write lock that re-checks the guard, so
    /// a listing of hundreds of thousands of channels never blocks readers for long.
    pub(super) async fn reconcile(
        &self,
        listed: &[String],
        requested_at_ms: u64,
    ) -> Result<Repairs, StoreError> {
        // Names to add borrow from the listing; names to remove are copied out of the lock.
        let changes: Vec<(Cow<'_, str>, bool)> = {
            let state = self.read();
            let wanted: std::collections::HashSet<&str> =
                listed.iter().map(String::as_str).collect();
            let missing = wanted
                .iter()
                .filter(|c| !state.channels.get(**c).is_some_and(|e| e.occupied))
                .map(|c| (Cow::Borrowed(*c), true));
            let stale = state
                .channels
                .iter()
                .filter(|(c, e)| e.occupied && !wanted.contains(&***c))
                .map(|(c, _)| (Cow::Owned(c.to_string()), false));
            missing.chain(stale).collect()
        };
        let mut repairs = Repairs::default();
        for chunk in changes.chunks(RECONCILE_CHUNK) {
            let mut batch = Repairs::default();
            let mut state = self.write();
            for (channel, occupied) in chunk {
                let (channel, occupied) = (channel.as_ref(), *occupied);
                let entry = state.channels.get(channel).copied();
                // An event newer than the request stands: it happened after Pusher made its list.
                if entry.is_some_and(|e| e.time_ms > requested_at_ms || e.occupied == occupied)
                    || (!occupied && entry.is_none())
                {
                    continue;
                }
                state.channels.insert(
                    channel.into(),
                    Entry {
                        occupied,
                        time_ms: requested_at_ms,
                    },
                );
                if occupied {
                    batch.added.push(channel.to_owned());
                } else {
                    batch.removed.push(channel.to_owned());
                }
            }
            drop(state);
            self.announce(ChangeBatch {
                occupied: batch.added.clone(),
                vacated: batch.removed.clone(),
            });
            repairs.added.extend(batch.added);
            repairs.removed.extend(batch.removed);
        }
        Ok(repairs)
    }

    pub(super) fn watch(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.changes.subscribe()
    }

    pub(super) async fn lock_reconcile(
        &self,
        _owner: &str,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
