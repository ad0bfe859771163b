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
//! [`Store`] is one app's view of its backend: the Redis store used in production or the
//! in-memory store used on a bare machine, which behave the same and pass the same tests.

mod change;
mod connect;
mod connection;
mod copy;
mod error;
mod feed;
mod keys;
mod memory;
mod redis;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

pub use self::change::{Applied, ChangeBatch, Event, FeedEvent, Occupancy, Repairs};
pub use self::connection::{RedisStoreConfig, check_redis_url};
pub use self::error::StoreError;
pub use self::feed::{HEARTBEAT, STALENESS_BOUND};
pub use self::keys::StoreKeys;
pub use self::memory::MemoryStore;
pub use self::redis::{RedisBackend, RedisStore};
use crate::channel::ChannelName;

/// One app's set of occupied channels, in whichever backend this deployment uses.
///
/// A concrete type rather than a generic over a trait: the backend is chosen once at start-up,
/// and one type lets every caller (gate, webhooks, Pusher API listener, health, reconciliation)
/// be written once, without a type parameter threaded through all of them. Each call answers
/// with at most one round trip to the backend, over connections set up once: the gate sits on
/// the encoders' hot path.
#[derive(Debug)]
pub(crate) enum Store {
    /// In this process only (no `--redis-url`).
    Memory(MemoryStore),
    /// In Redis, shared with the other replicas and with encoders reading the set.
    Redis(RedisStore),
}

/// Which of the channels asked about are occupied, by name.
///
/// Both lists keep the order of the question, and each channel asked about is in exactly one
/// of them (a channel asked twice is in it twice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupied {
    /// The channels that are occupied.
    pub occupied: Vec<ChannelName>,
    /// The channels that are vacant.
    pub vacant: Vec<ChannelName>,
}

impl Occupied {
    /// Every one of `channels` counted as occupied: the answer when the store cannot be asked
    /// and the policy is to publish anyway.
    pub fn all(channels: &[ChannelName]) -> Self {
        Self {
            occupied: channels.to_vec(),
            vacant: Vec::new(),
        }
    }

    /// Whether `channel` was found occupied. A linear search: a question names at most a
    /// hundred channels (the gate's and Pusher's limit per call).
    pub fn is_occupied(&self, channel: &ChannelName) -> bool {
        self.occupied.contains(channel)
    }

    /// Sorts `channels` by the backend's answers, given in the same order.
    fn sort(channels: &[ChannelName], answers: Vec<bool>) -> Result<Self, StoreError> {
        if answers.len() != channels.len() {
            return Err(StoreError::Unexpected(
                "the store answered for a different number of channels",
            ));
        }
        let mut sorted = Self::default();
        for (channel, occupied) in channels.iter().zip(answers) {
            if occupied {
                sorted.occupied.push(channel.clone());
            } else {
                sorted.vacant.push(channel.clone());
            }
        }
        Ok(sorted)
    }
}

/// A watcher's start: the set as it was, and every change since it was read.
#[derive(Debug)]
pub struct Subscription {
    /// Every occupied channel, read after `changes` was subscribed.
    pub members: Vec<String>,
    /// Every change to the app's set from just before `members` was read, whichever replica
    /// made it. A change may also be in `members` (changes are idempotent), none is missing.
    pub changes: broadcast::Receiver<Arc<FeedEvent>>,
}

impl Store {
    /// Applies `events` in order, as one atomic step, skipping stale ones.
    pub async fn apply(&self, events: &[Event]) -> Result<Applied, StoreError> {
        match self {
            Self::Memory(store) => store.apply(events).await,
            Self::Redis(store) => store.apply(events).await,
        }
    }

    /// Which of `channels` are occupied, by name.
    pub async fn occupied(&self, channels: &[ChannelName]) -> Result<Occupied, StoreError> {
        let answers = match self {
            Self::Memory(store) => store.occupied(channels).await?,
            Self::Redis(store) => store.occupied(channels).await?,
        };
        Occupied::sort(channels, answers)
    }

    /// Whether `channel` is occupied.
    pub async fn is_occupied(&self, channel: &ChannelName) -> Result<bool, StoreError> {
        let channels = std::slice::from_ref(channel);
        let answers = match self {
            Self::Memory(store) => store.occupied(channels).await?,
            Self::Redis(store) => store.occupied(channels).await?,
        };
        match answers.as_slice() {
            [occupied] => Ok(*occupied),
            _ => Err(StoreError::Unexpected(
                "the store answered for a different number of channels",
            )),
        }
    }

    /// The set as it is now together with every change from then on. The feed is subscribed
    /// before the set is read, here and nowhere else, so no change between the two is lost
    /// whoever calls.
    pub async fn subscribe(&self) -> Result<Subscription, StoreError> {
        let changes = match self {
            Self::Memory(store) => store.watch(),
            Self::Redis(store) => store.watch(),
        };
        let members = match self {
            Self::Memory(store) => store.members().await?,
            Self::Redis(store) => store.members().await?,
        };
        Ok(Subscription { members, changes })
    }

    /// Every occupied channel now, for reconciliation (which protects current members while a
    /// removal waits for its confirming listing). Watchers use [`Self::subscribe`] instead, which
    /// cannot lose a change between the read and the subscription.
    pub async fn members(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Memory(store) => store.members().await,
            Self::Redis(store) => store.members().await,
        }
    }

    /// Makes the set equal `listed` (Pusher's answer to a listing requested at `requested_at_ms`),
    /// except for channels changed by an event newer than the request, which stand. The one call
    /// that may take many short steps (chunks) rather than one: a listing can name hundreds of
    /// thousands of channels, and no single step may hold the backend long.
    pub async fn reconcile(
        &self,
        listed: &[String],
        requested_at_ms: u64,
    ) -> Result<Repairs, StoreError> {
        match self {
            Self::Memory(store) => store.reconcile(listed, requested_at_ms).await,
            Self::Redis(store) => store.reconcile(listed, requested_at_ms).await,
        }
    }

    /// Takes this app's reconcile lock for `ttl` unless another replica holds it; true when
    /// taken. A store private to one process always grants it.
    pub async fn lock_reconcile(&self, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Self::Memory(store) => store.lock_reconcile(owner, ttl).await,
            Self::Redis(store) => store.lock_reconcile(owner, ttl).await,
        }
    }

    /// Notified when this store wants a reconciliation at once rather than at the next
    /// interval: its backend lost data, or the feed between replicas broke and changes may have
    /// been missed. `None` for a store that never does (one private to this process).
    pub fn repair_wanted(&self) -> Option<Arc<tokio::sync::Notify>> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(store) => store.repair_wanted(),
        }
    }

    /// Succeeds only while the store can answer and take writes; drives the health status.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => store.ping().await,
            Self::Redis(store) => store.ping().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ms;

    fn name(name: &str) -> ChannelName {
        ChannelName::parse(name).expect("a valid name")
    }

    fn occupy(channel: &str, time_ms: u64) -> Event {
        Event {
            channel: name(channel),
            occupancy: Occupancy::Occupied,
            time_ms,
        }
    }

    fn memory() -> Store {
        Store::Memory(MemoryStore::new(Duration::from_secs(3600)))
    }

    #[tokio::test]
    async fn answers_name_the_channels_in_the_order_asked() {
        let store = memory();
        let now = now_ms();
        store
            .apply(&[occupy("b", now), occupy("d", now)])
            .await
            .expect("apply");
        let asked = [name("d"), name("a"), name("b"), name("c"), name("d")];
        let answer = store.occupied(&asked).await.expect("occupied");
        assert_eq!(answer.occupied, [name("d"), name("b"), name("d")]);
        assert_eq!(answer.vacant, [name("a"), name("c")]);
        assert!(answer.is_occupied(&name("b")));
        assert!(!answer.is_occupied(&name("a")));
        assert!(!answer.is_occupied(&name("never-asked")));
        assert!(store.is_occupied(&name("d")).await.expect("is_occupied"));
        assert!(!store.is_occupied(&name("a")).await.expect("is_occupied"));
        assert_eq!(
            store.occupied(&[]).await.expect("occupied"),
            Occupied::default()
        );
    }

    #[test]
    fn a_short_answer_from_a_backend_is_an_error_not_a_guess() {
        let err = Occupied::sort(&[name("a"), name("b")], vec![true])
            .expect_err("one answer for two channels");
        assert!(!err.is_transient(), "{err}");
    }

    #[tokio::test]
    async fn a_subscription_holds_the_set_and_every_change_after_it() {
        let store = memory();
        let now = now_ms();
        store.apply(&[occupy("before", now)]).await.expect("apply");
        let Subscription {
            members,
            mut changes,
        } = store.subscribe().await.expect("subscribe");
        assert_eq!(members, ["before"]);
        store.apply(&[occupy("after", now)]).await.expect("apply");
        let event = changes.try_recv().expect("the change after the snapshot");
        assert_eq!(
            *event,
            FeedEvent::Changes(ChangeBatch {
                occupied: vec!["after".to_owned()],
                vacated: Vec::new(),
            })
        );
    }
}
