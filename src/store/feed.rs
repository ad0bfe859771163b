//! Each replica's local copy of every app's set, kept current by a Redis pub/sub feed.
//!
//! The set changes only when a webhook arrives, yet it is read thousands of times a second, so
//! reads are answered from memory. Every change is made by a Lua script that also `PUBLISH`es
//! what it applied; every replica subscribes and applies the same lines to its copy, in Redis's
//! order. After any break in the feed the whole set is read again (subscribe first, then
//! `SMEMBERS`, so nothing published in between is lost), and watchers are told to resynchronise.
//!
//! The feed is followed on the node the store's connection goes to, which after a sentinel
//! failover is the new primary. In a Redis Cluster any node will do, since a classic `PUBLISH`
//! (scripts included) is broadcast to every node: the configured nodes are used in turn, so a
//! dead node is left behind on the next attempt.
//!
//! Staleness is bounded: each replica publishes a heartbeat every [`HEARTBEAT`]; the copy is
//! used only while something was heard on the feed within [`STALENESS_BOUND`]. Past that (a
//! subscriber stuck behind a dead socket, a killed pub/sub client) reads go to Redis until the
//! feed is re-established and reloaded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::redis::RedisBackend;
use super::{ChangeBatch, FeedEvent, WATCH_BUFFER, now_ms};

/// How often each replica publishes a heartbeat on the feed.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// The local copy answers only while the feed was heard from within this long.
pub const STALENESS_BOUND: Duration = Duration::from_millis(1500);

/// The heartbeat's payload: no channel is named `h` with a `+` or `-` before it.
const HEARTBEAT_PAYLOAD: &str = "h";

/// One app's local copy and its watchers.
#[derive(Debug)]
pub struct AppCache {
    set: RwLock<HashSet<Box<str>>>,
    changes: broadcast::Sender<Arc<FeedEvent>>,
    /// The highest change number applied, for writers waiting to read their own change.
    seq: tokio::sync::watch::Sender<u64>,
}

impl Default for AppCache {
    fn default() -> Self {
        Self {
            set: RwLock::default(),
            changes: broadcast::channel(WATCH_BUFFER).0,
            seq: tokio::sync::watch::channel(0).0,
        }
    }
}

impl AppCache {
    /// Whether `channel` is in the copy.
    pub fn contains(&self, channel: &str) -> bool {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(channel)
    }

    /// Every channel in the copy.
    pub fn members(&self) -> Vec<String> {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Waits up to `limit` until change `seq` has been applied; false if it was not in time.
    pub async fn wait_for(&self, seq: u64, limit: Duration) -> bool {
        let mut applied = self.seq.subscribe();
        tokio::time::timeout(limit, applied.wait_for(|&at| at >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Applies a batch that names each channel once (see [`ChangeBatch::of`]), so the order of
    /// its lists does not matter.
    fn apply(&self, batch: &ChangeBatch) {
        let mut set = self.set.write().unwrap_or_else(PoisonError::into_inner);
        for channel in &batch.occupied {
            set.insert(channel.as_str().into());
        }
        for channel in &batch.vacated {
            set.remove(channel.as_str());
        }
    }

    /// Applies one feed message (`#seq`, then `+name` / `-name` lines in order) and tells
    /// watchers.
    fn apply_message(&self, payload: &str) {
        let seq = payload
            .lines()
            .find_map(|line| line.strip_prefix('#'))
            .and_then(|n| n.parse::<u64>().ok());
        let batch = ChangeBatch::from_states(payload.lines().filter_map(|line| {
            line.strip_prefix('+')
                .map(|name| (name, true))
                .or_else(|| line.strip_prefix('-').map(|name| (name, false)))
        }));
        self.apply(&batch);
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

    /// Replaces the copy with `members` and tells watchers to start over. The change counter
    /// restarts too: a Redis that restarted empty numbers changes from 1 again.
    fn replace(&self, members: Vec<String>) {
        self.seq.send_replace(0);
        let fresh: HashSet<Box<str>> = members.into_iter().map(String::into_boxed_str).collect();
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        let _ = self.changes.send(Arc::new(FeedEvent::Reset));
    }

    /// A receiver of every later change.
    pub fn watch(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.changes.subscribe()
    }
}

/// When the feed was last heard from (ms since the epoch; 0 while it is not synchronised).
#[derive(Debug, Default)]
pub struct Freshness {
    heard_at_ms: AtomicU64,
}

impl Freshness {
    /// Whether the local copies may answer.
    pub fn is_fresh(&self) -> bool {
        let heard = self.heard_at_ms.load(Ordering::Acquire);
        heard != 0 && now_ms().saturating_sub(heard) <= STALENESS_BOUND.as_millis() as u64
    }

    fn synced(&self) {
        self.heard();
        crate::metrics::metrics().feed_up.set(1);
    }

    fn heard(&self) {
        self.heard_at_ms.store(now_ms(), Ordering::Release);
    }

    fn lost(&self) {
        self.heard_at_ms.store(0, Ordering::Release);
        crate::metrics::metrics().feed_up.set(0);
    }

    fn silent_for(&self) -> Duration {
        let heard = self.heard_at_ms.load(Ordering::Acquire);
        Duration::from_millis(now_ms().saturating_sub(heard))
    }
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
    #[error("nothing heard for {0:?}")]
    Silent(Duration),
}

/// Follows the feed until `shutdown`, re-establishing it with backoff after any break.
pub async fn run(backend: RedisBackend, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut was_up = false;
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = follow(&backend, &mut was_up, &mut backoff) => result,
        };
        backend.freshness().lost();
        if was_up {
            let m = crate::metrics::metrics();
            m.feed_breaks.inc();
            m.feed_node.clear();
            tracing::warn!(error = ?result, "the change feed broke: answering from Redis until it is back");
            was_up = false;
        } else {
            tracing::debug!(error = ?result, "the change feed is not established yet");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn follow(
    backend: &RedisBackend,
    was_up: &mut bool,
    backoff: &mut Duration,
) -> Result<(), FeedError> {
    let caches = backend.feeds();
    let Some((heartbeat_channel, _, _)) = caches.first().cloned() else {
        // No app registered: nothing to follow.
        std::future::pending::<()>().await;
        return Ok(());
    };
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
    let names: Vec<&str> = caches.iter().map(|(name, _, _)| name.as_str()).collect();
    tokio::time::timeout(backend.timeout(), sink.subscribe(&names))
        .await
        .map_err(|_| FeedError::SubscribeTimeout)?
        .map_err(FeedError::Subscribe)?;
    // Subscribed first, then read: a change published in between arrives on the feed too and
    // is applied after the reload, which converges (every line sets a channel absolutely).
    for (_, cache, set) in &caches {
        let members = backend.smembers(set).await.map_err(FeedError::Reload)?;
        cache.replace(members);
    }
    backend.freshness().synced();
    if !*was_up {
        let m = crate::metrics::metrics();
        m.feed_follows.inc();
        m.feed_node.clear();
        m.feed_node
            .get_or_create(&vec![("node", node.to_string())])
            .set(1);
        tracing::info!(
            apps = caches.len(),
            node = %node,
            "following the change feed: answering from memory"
        );
    }
    *was_up = true;
    *backoff = Duration::from_millis(100);

    let mut ticker = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return Err(FeedError::Closed) };
                backend.freshness().heard();
                let Ok(payload) = message.get_payload::<String>() else { continue };
                if payload == HEARTBEAT_PAYLOAD {
                    continue;
                }
                let channel = message.get_channel_name();
                if let Some((_, cache, _)) = caches.iter().find(|(name, _, _)| name == channel) {
                    cache.apply_message(&payload);
                }
            }
            _ = ticker.tick() => {
                let silent = backend.freshness().silent_for();
                if silent > STALENESS_BOUND {
                    return Err(FeedError::Silent(silent));
                }
                backend.publish_heartbeat(&heartbeat_channel, HEARTBEAT_PAYLOAD).await;
            }
        }
    }
}
