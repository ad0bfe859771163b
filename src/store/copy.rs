//! One app's local copy of its set, as this replica holds it: what the feed reported, what was
//! kept through a data loss, and whether the copy is fresh enough to answer. Written only by the
//! feed ([`super::feed`]), read by the store and its watchers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

use super::change::{ChangeBatch, FeedEvent, WATCH_BUFFER};
use crate::clock::now_ms;

/// The local copy answers only while this replica's own heartbeat was heard within this long.
pub const STALENESS_BOUND: Duration = Duration::from_millis(1500);

/// How long a copy kept through a data loss is used without a repair (reconciliation off, or
/// Pusher unreachable): past Pusher's five minutes of retries, every missed event has been
/// delivered again or is lost for good.
const HOLD_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The local copy of one app's set.
#[derive(Debug, Default)]
struct Copy {
    /// What Redis holds, as the feed reported it.
    live: HashSet<Box<str>>,
    /// What the copy held when Redis lost its data, minus channels vacated since, kept until
    /// the set is repaired from Pusher's listing; and when it was taken (ms since the epoch).
    held: Option<(HashSet<Box<str>>, u64)>,
}

/// What this replica last learned from Redis about one app's data.
#[derive(Debug, Default, Clone)]
pub(super) struct Known {
    /// The data's epoch (the marker's value); `None` before the first contact.
    pub(super) epoch: Option<String>,
    /// The server's run id; empty when unknown (INFO denied).
    pub(super) run_id: String,
}

/// One app's local copy and its watchers.
#[derive(Debug)]
pub struct AppCache {
    copy: RwLock<Copy>,
    changes: broadcast::Sender<Arc<FeedEvent>>,
    /// The highest change number applied, for writers waiting to read their own change.
    seq: tokio::sync::watch::Sender<u64>,
    /// When this replica last heard its own heartbeat on this app's feed, or reloaded the set
    /// (ms since the epoch; 0 before the first reload).
    heard_at_ms: AtomicU64,
    known: Mutex<Known>,
}

impl Default for AppCache {
    fn default() -> Self {
        Self {
            copy: RwLock::default(),
            changes: broadcast::channel(WATCH_BUFFER).0,
            seq: tokio::sync::watch::channel(0).0,
            heard_at_ms: AtomicU64::new(0),
            known: Mutex::default(),
        }
    }
}

impl AppCache {
    /// Whether `channel` is in the copy.
    pub fn contains(&self, channel: &str) -> bool {
        let copy = self.copy.read().unwrap_or_else(PoisonError::into_inner);
        copy.live.contains(channel)
            || copy
                .held
                .as_ref()
                .is_some_and(|(held, _)| held.contains(channel))
    }

    /// Every channel in the copy.
    pub fn members(&self) -> Vec<String> {
        let copy = self.copy.read().unwrap_or_else(PoisonError::into_inner);
        let mut members: Vec<String> = copy.live.iter().map(|c| c.to_string()).collect();
        if let Some((held, _)) = &copy.held {
            members.extend(
                held.iter()
                    .filter(|c| !copy.live.contains(&***c))
                    .map(|c| c.to_string()),
            );
        }
        members
    }

    /// Whether the copy may answer: this replica heard its own heartbeat lately.
    pub fn is_fresh(&self) -> bool {
        let heard = self.heard_at_ms.load(Ordering::Acquire);
        heard != 0 && now_ms().saturating_sub(heard) <= STALENESS_BOUND.as_millis() as u64
    }

    /// Waits up to `limit` until change `seq` has been applied; false if it was not in time.
    pub async fn wait_for(&self, seq: u64, limit: Duration) -> bool {
        let mut applied = self.seq.subscribe();
        tokio::time::timeout(limit, applied.wait_for(|&at| at >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A receiver of every later change.
    pub fn watch(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.changes.subscribe()
    }

    pub(super) fn known(&self) -> Known {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn learn(&self, epoch: String, run_id: String) {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = Known {
            epoch: Some(epoch),
            run_id,
        };
    }

    pub(super) fn heard(&self) {
        self.heard_at_ms.store(now_ms(), Ordering::Release);
    }

    pub(super) fn lost(&self) {
        self.heard_at_ms.store(0, Ordering::Release);
    }

    pub(super) fn silent_for(&self) -> Duration {
        let heard = self.heard_at_ms.load(Ordering::Acquire);
        Duration::from_millis(now_ms().saturating_sub(heard))
    }

    pub(super) fn holds_old_copy(&self) -> bool {
        self.copy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .held
            .is_some()
    }

    /// Applies a batch that names each channel once (see [`ChangeBatch::of`]), so the order of
    /// its lists does not matter, and tells watchers.
    pub(super) fn apply(&self, batch: ChangeBatch, seq: Option<u64>) {
        {
            let mut copy = self.copy.write().unwrap_or_else(PoisonError::into_inner);
            for channel in &batch.occupied {
                copy.live.insert(channel.as_str().into());
            }
            for channel in &batch.vacated {
                copy.live.remove(channel.as_str());
                if let Some((held, _)) = &mut copy.held {
                    held.remove(channel.as_str());
                }
            }
        }
        if let Some(seq) = seq {
            self.seq.send_if_modified(|at| {
                let newer = seq > *at;
                *at = (*at).max(seq);
                newer
            });
        }
        if !batch.is_empty() {
            let _ = self.changes.send(Arc::new(FeedEvent::Changes(batch)));
        }
    }

    /// Replaces the copy with `members`, read with change number `seq`, and tells watchers to
    /// start over. `hold` decides what becomes of the copy kept through a data loss.
    pub(super) fn replace(&self, members: Vec<String>, seq: u64, hold: Hold) {
        let fresh: HashSet<Box<str>> = members.into_iter().map(String::into_boxed_str).collect();
        {
            let mut copy = self.copy.write().unwrap_or_else(PoisonError::into_inner);
            let old = std::mem::replace(&mut copy.live, fresh);
            match hold {
                Hold::Start => {
                    let mut held = copy.held.take().map(|(held, _)| held).unwrap_or_default();
                    held.extend(old);
                    copy.held = Some((held, now_ms()));
                }
                Hold::Drop => copy.held = None,
                Hold::Keep => {}
            }
        }
        self.seq.send_replace(seq);
        self.heard();
        self.reset_watchers();
    }

    /// Drops a copy kept through a data loss for longer than [`HOLD_LIMIT`].
    pub(super) fn expire_held(&self) {
        let mut copy = self.copy.write().unwrap_or_else(PoisonError::into_inner);
        if copy.held.as_ref().is_some_and(|(_, since)| {
            now_ms().saturating_sub(*since) > HOLD_LIMIT.as_millis() as u64
        }) {
            tracing::warn!(
                "the set was not repaired within {HOLD_LIMIT:?} of a data loss: dropping the copy \
                 kept from before it"
            );
            copy.held = None;
            drop(copy);
            self.reset_watchers();
        }
    }

    /// Tells watchers that changes may have been missed.
    pub(super) fn reset_watchers(&self) {
        let _ = self.changes.send(Arc::new(FeedEvent::Reset));
    }
}

/// What a reload does with a copy kept through a data loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Data was lost: keep what the copy held until the set is repaired.
    Start,
    /// The set was repaired: drop it.
    Drop,
    /// Keep it as it is (none, or a repair still to come).
    Keep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_copy_answers_until_dropped_and_follows_vacated() {
        let cache = AppCache::default();
        cache.replace(vec!["a".into(), "b".into()], 3, Hold::Keep);
        cache.replace(vec![], 0, Hold::Start);
        assert!(cache.contains("a") && cache.contains("b"));
        cache.apply(
            ChangeBatch::from_states([("b", false), ("c", true)]),
            Some(1),
        );
        assert!(cache.contains("a") && !cache.contains("b") && cache.contains("c"));
        let mut members = cache.members();
        members.sort();
        assert_eq!(members, ["a", "c"]);
        cache.replace(vec!["c".into()], 2, Hold::Drop);
        assert_eq!(cache.members(), ["c"]);
    }
}
