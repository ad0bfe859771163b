//! Each replica's local copy of every app's set, kept current by a Redis pub/sub feed.
//!
//! The set changes only when a webhook arrives, yet it is read thousands of times a second, so
//! reads are answered from memory. Every change is made by a Lua script that also `PUBLISH`es
//! what it applied (`#seq`, then `+name` / `-name` lines); every replica subscribes and applies
//! the same lines to its copy, in Redis's order. After any break in the feed the whole set is
//! read again (subscribe first, then the set and its sequence number in one script, so nothing
//! published in between is lost), watchers are told to resynchronise, and a reconciliation with
//! Pusher is asked for at once: while the feed was down Redis itself may have lost changes.
//!
//! The feed is followed on the node the store's connection goes to, which after a sentinel
//! failover is the new primary. In a Redis Cluster any node will do, since a classic `PUBLISH`
//! (scripts included) is broadcast to every node: the configured nodes are used in turn, so a
//! dead node is left behind on the next attempt.
//!
//! **Integrity.** Changes are numbered per app. A number that skips (a message lost) or goes
//! back (Redis restarted or was flushed) makes the copy reload. Every [`HEARTBEAT`] each replica
//! runs a check script per app (on the app's own slot in a cluster) that publishes a heartbeat
//! tagged with the replica's id, the app's current number and its data epoch; a replica counts
//! as live only on hearing its *own* heartbeats, and one whose number differs from its copy's
//! reloads. The copy answers only while its own heartbeat was heard within [`STALENESS_BOUND`];
//! past that (a subscriber stuck behind a dead socket, a killed pub/sub client) reads go to Redis
//! until the feed is re-established, and watchers are sent a reset.
//!
//! **Data loss.** Redis keeps a marker per app (`{set}:epoch`, a random id). A missing marker
//! (restart without persistence, `FLUSHALL`, an empty replica promoted) or a new server run id
//! with the old marker (a failover to a replica that may lack recent writes) is data loss: the
//! replica counts it, keeps answering from the copy it had (joined with the reloaded set, and
//! following every later change) instead of the emptied set, and asks for a reconciliation at
//! once. One replica takes the reconcile lock and re-seeds Redis from Pusher's listing; it then
//! publishes `r`, and every replica that kept its old copy reloads the repaired set.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::redis::{RedisBackend, StoreKeys};
use super::{ChangeBatch, FeedEvent, WATCH_BUFFER, now_ms};

/// How often each replica publishes a heartbeat on every app's feed.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

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

    fn learn(&self, epoch: String, run_id: String) {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = Known {
            epoch: Some(epoch),
            run_id,
        };
    }

    fn heard(&self) {
        self.heard_at_ms.store(now_ms(), Ordering::Release);
    }

    fn lost(&self) {
        self.heard_at_ms.store(0, Ordering::Release);
    }

    fn silent_for(&self) -> Duration {
        let heard = self.heard_at_ms.load(Ordering::Acquire);
        Duration::from_millis(now_ms().saturating_sub(heard))
    }

    fn holds_old_copy(&self) -> bool {
        self.copy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .held
            .is_some()
    }

    /// Applies a batch that names each channel once (see [`ChangeBatch::of`]), so the order of
    /// its lists does not matter, and tells watchers.
    fn apply(&self, batch: ChangeBatch, seq: Option<u64>) {
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
    fn replace(&self, members: Vec<String>, seq: u64, hold: Hold) {
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
    fn expire_held(&self) {
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
    fn reset_watchers(&self) {
        let _ = self.changes.send(Arc::new(FeedEvent::Reset));
    }
}

/// What a reload does with a copy kept through a data loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Data was lost: keep what the copy held until the set is repaired.
    Start,
    /// The set was repaired: drop it.
    Drop,
    /// Keep it as it is (none, or a repair still to come).
    Keep,
}

/// One app's set and change number as one check script read them.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) epoch: String,
    pub(super) run_id: String,
    pub(super) seq: u64,
    /// Whether the set was repaired from Pusher's listing since the data's epoch began.
    pub(super) repaired: bool,
    pub(super) members: Vec<String>,
}

/// A random id: this replica's name on the feed, or a new data epoch.
pub(super) fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

/// Why the feed had to be re-established.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("cannot subscribe")]
    Subscribe(#[source] redis::RedisError),
    #[error("subscribing timed out")]
    SubscribeTimeout,
    #[error("cannot reach a node to follow the feed on")]
    Connect(#[source] super::StoreError),
    #[error("cannot reload the set")]
    Reload(#[source] super::StoreError),
    #[error("the subscription closed")]
    Closed,
    #[error("own heartbeat not heard for {0:?}")]
    Silent(Duration),
}

/// Why a copy was read again while its feed stayed up.
#[derive(Debug, Clone, Copy)]
enum Resync {
    /// A change number was skipped: a message was lost.
    Gap,
    /// A change number went back: Redis restarted or was flushed.
    Regression,
    /// The data's epoch changed: Redis lost data.
    Epoch,
    /// The set was repaired after a data loss.
    Repaired,
    /// The feed was re-established after a break.
    Reconnect,
}

impl Resync {
    fn label(self) -> &'static str {
        match self {
            Self::Gap => "gap",
            Self::Regression => "regression",
            Self::Epoch => "epoch",
            Self::Repaired => "repaired",
            Self::Reconnect => "reconnect",
        }
    }
}

/// Follows the feed until `shutdown`, re-establishing it with backoff after any break.
pub async fn run(backend: RedisBackend, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut was_up = false;
    let mut ever_up = false;
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = follow(&backend, &mut was_up, &mut ever_up, &mut backoff) => result,
        };
        crate::metrics::metrics().feed_up.set(0);
        // Reads go to Redis until the feed is back (see `RedisStore::occupied` for how an
        // emptied Redis is not believed meanwhile), and watchers start over.
        for (_, cache) in backend.feeds() {
            cache.lost();
        }
        if was_up {
            let m = crate::metrics::metrics();
            m.feed_breaks.inc();
            m.feed_node.clear();
            for (_, cache) in backend.feeds() {
                cache.reset_watchers();
            }
            tracing::warn!(error = ?result, "the change feed broke: re-establishing it");
            was_up = false;
        } else {
            tracing::debug!(error = ?result, "the change feed is not established yet");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
            // A read found Redis answering again: no need to wait out the backoff.
            _ = backend.feed_wake().notified() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One app's place in the feed while it is followed.
struct Follower {
    keys: StoreKeys,
    cache: Arc<AppCache>,
    /// The change number the copy reflects.
    at: u64,
    /// Whether this replica's own heartbeat was heard since the last reload: until then,
    /// numbers up to `at` are changes published before the reload, already in the copy.
    confirmed: bool,
}

impl Follower {
    /// Reads the set and its number again, noticing a data loss on the way.
    async fn reload(
        &mut self,
        backend: &RedisBackend,
        reason: Option<Resync>,
    ) -> Result<(), FeedError> {
        let known = self.cache.known();
        let snapshot = backend
            .check(&self.keys, &known)
            .await
            .map_err(FeedError::Reload)?;
        let lost = known.epoch.as_ref().is_some_and(|e| *e != snapshot.epoch);
        let m = crate::metrics::metrics();
        if let Some(reason) = reason {
            crate::metrics::count(&m.feed_resyncs, &[("reason", reason.label())], 1);
        }
        let hold = if lost {
            m.store_data_loss.inc();
            tracing::warn!(
                set = %self.keys.set,
                members = snapshot.members.len(),
                repaired = snapshot.repaired,
                "Redis lost this set's data (restarted empty, flushed or failed over): answering \
                 from the copy held before until the set is repaired from Pusher's listing"
            );
            backend.want_repair();
            if snapshot.repaired {
                Hold::Drop
            } else {
                Hold::Start
            }
        } else if matches!(reason, Some(Resync::Repaired)) || snapshot.repaired {
            Hold::Drop
        } else {
            Hold::Keep
        };
        self.cache.learn(snapshot.epoch, snapshot.run_id);
        self.cache.replace(snapshot.members, snapshot.seq, hold);
        self.at = snapshot.seq;
        self.confirmed = false;
        Ok(())
    }

    /// Handles one message from this app's feed.
    async fn handle(
        &mut self,
        backend: &RedisBackend,
        payload: &str,
        me: &str,
    ) -> Result<(), FeedError> {
        if let Some(beat) = payload.strip_prefix("h ") {
            let mut parts = beat.split(' ');
            let (Some(id), Some(seq), Some(epoch)) = (parts.next(), parts.next(), parts.next())
            else {
                return Ok(());
            };
            if id != me {
                // Another replica's heartbeat says nothing about this one's subscription.
                return Ok(());
            }
            self.cache.heard();
            let seq = seq.parse::<u64>().unwrap_or(0);
            let known = self.cache.known();
            if known.epoch.as_deref() != Some(epoch) {
                return self.reload(backend, Some(Resync::Epoch)).await;
            }
            if seq > self.at {
                return self.reload(backend, Some(Resync::Gap)).await;
            }
            if seq < self.at {
                return self.reload(backend, Some(Resync::Regression)).await;
            }
            self.confirmed = true;
            return Ok(());
        }
        if payload == "r" {
            if self.cache.holds_old_copy() {
                return self.reload(backend, Some(Resync::Repaired)).await;
            }
            return Ok(());
        }
        // A heartbeat from a replica of an older version.
        if payload == "h" {
            return Ok(());
        }
        let seq = payload
            .lines()
            .find_map(|line| line.strip_prefix('#'))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            if seq <= self.at {
                if self.confirmed {
                    return self.reload(backend, Some(Resync::Regression)).await;
                }
                // Published before the reload read the set: already in the copy.
                return Ok(());
            }
            if seq > self.at + 1 {
                return self.reload(backend, Some(Resync::Gap)).await;
            }
            self.at = seq;
        }
        let batch = ChangeBatch::from_states(payload.lines().filter_map(|line| {
            line.strip_prefix('+')
                .map(|name| (name, true))
                .or_else(|| line.strip_prefix('-').map(|name| (name, false)))
        }));
        self.cache.apply(batch, seq);
        Ok(())
    }
}

async fn follow(
    backend: &RedisBackend,
    was_up: &mut bool,
    ever_up: &mut bool,
    backoff: &mut Duration,
) -> Result<(), FeedError> {
    let mut followers: Vec<Follower> = backend
        .feeds()
        .into_iter()
        .map(|(keys, cache)| Follower {
            keys,
            cache,
            at: 0,
            confirmed: false,
        })
        .collect();
    if followers.is_empty() {
        // No app registered: nothing to follow.
        std::future::pending::<()>().await;
        return Ok(());
    }
    // The current primary (a failover moves it), or the next node of a cluster.
    let (node, client) = backend.feed_node().await.map_err(FeedError::Connect)?;
    let pubsub = match tokio::time::timeout(backend.timeout(), client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(err)) => {
            backend.note_failure(&err);
            return Err(FeedError::Subscribe(err));
        }
        Err(_) => {
            backend.note_failure(&super::connect::timed_out());
            return Err(FeedError::SubscribeTimeout);
        }
    };
    let (mut sink, mut stream) = pubsub.split();
    let names: Vec<&str> = followers.iter().map(|f| f.keys.feed.as_str()).collect();
    tokio::time::timeout(backend.timeout(), sink.subscribe(&names))
        .await
        .map_err(|_| FeedError::SubscribeTimeout)?
        .map_err(FeedError::Subscribe)?;
    // Subscribed first, then read: a change published in between arrives on the feed too, with
    // a number the reload already covers, and is skipped.
    let reason = ever_up.then_some(Resync::Reconnect);
    for follower in &mut followers {
        follower.reload(backend, reason).await?;
    }
    if *ever_up {
        // Changes may have been missed while the feed was down, in Redis too if it lost them.
        backend.want_repair();
    }
    crate::metrics::metrics().feed_up.set(1);
    if !*was_up {
        let m = crate::metrics::metrics();
        m.feed_follows.inc();
        m.feed_node.clear();
        m.feed_node
            .get_or_create(&vec![("node", node.to_string())])
            .set(1);
        tracing::info!(
            apps = followers.len(),
            node = %node,
            "following the change feed: answering from memory"
        );
    }
    *was_up = true;
    *ever_up = true;
    *backoff = Duration::from_millis(100);

    let me = backend.replica_id().to_owned();
    let mut ticker = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return Err(FeedError::Closed) };
                let Ok(payload) = message.get_payload::<String>() else { continue };
                let channel = message.get_channel_name();
                if let Some(follower) = followers.iter_mut().find(|f| f.keys.feed == channel) {
                    follower.handle(backend, &payload, &me).await?;
                }
            }
            _ = ticker.tick() => {
                for follower in &followers {
                    let silent = follower.cache.silent_for();
                    if silent > STALENESS_BOUND {
                        return Err(FeedError::Silent(silent));
                    }
                    follower.cache.expire_held();
                }
                for follower in &followers {
                    backend.heartbeat(&follower.keys, &follower.cache.known()).await;
                }
            }
        }
    }
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

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id(), random_id());
    }
}
