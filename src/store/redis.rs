//! The Redis store: each app's set lives under one key (`pusher:channels` by default), so
//! encoders that already run `SISMEMBER pusher:channels X` keep working beside the gate.
//!
//! Events are applied by a Lua script that checks each event's `time_ms` against a sorted set of
//! per-channel timestamps (`{<set key>}:times`, sharing the set key's hash slot so the script
//! runs on one slot of a Redis Cluster too) and changes the set in the same atomic step.
//!
//! One [`ConnectionManager`] multiplexes every request. It reconnects by itself after errors it
//! deems fatal, but not after timeouts (a Redis that died without a reset) or `READONLY` (a
//! primary demoted by a failover), so [`RedisBackend`] rebuilds it after consecutive timeouts and
//! on `READONLY`. It is created lazily, so the service starts (and reports `NOT_SERVING`) while
//! Redis is still down, and short timeouts make an outage answer quickly.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ServerErrorKind};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::feed::{AppCache, Freshness};
use super::{Applied, Event, FeedEvent, Occupancy, OccupancyStore, Repairs, StoreError};
use crate::channel::ChannelName;
use crate::metrics::{count, metrics, observe};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// A `redis://` or `rediss://` URL. May hold a password: never log it whole (see
    /// [`RedisBackend::describe`]).
    pub url: String,
    /// Limit on connecting and on each command's answer; an outage is reported after this long.
    pub timeout: Duration,
}

/// After this many timeouts in a row the connection is presumed dead (a Redis gone without a
/// reset keeps a socket open for minutes) and is rebuilt.
const TIMEOUTS_BEFORE_REBUILD: u32 = 2;

struct Shared {
    client: redis::Client,
    config: ConnectionManagerConfig,
    current: RwLock<ConnectionManager>,
    timeouts: AtomicU32,
    target: String,
    timeout: Duration,
    /// Each app's feed channel, local copy and set key.
    feeds: RwLock<Vec<(String, Arc<AppCache>, String)>>,
    freshness: Freshness,
}

/// One Redis, shared by the stores of every app. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

/// Why a Redis URL cannot be used at all. Only the category is kept: the URL may hold a password.
#[derive(Debug, thiserror::Error)]
#[error("not a usable Redis URL ({category})")]
pub struct BadRedisUrl {
    category: String,
}

impl RedisBackend {
    /// Prepares the connection without making it, so a Redis that is down at start-up delays
    /// nothing; the first command connects. Fails only for a URL that cannot be used at all.
    pub fn new(config: &RedisStoreConfig) -> Result<Self, BadRedisUrl> {
        let bad = |e: RedisError| BadRedisUrl {
            category: e.category().to_owned(),
        };
        let client = redis::Client::open(config.url.as_str()).map_err(bad)?;
        // The address alone: the URL may carry a password.
        let target = client.get_connection_info().addr().to_string();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // One quick retry: a request must not wait through a long backoff while Redis is
            // down; the manager keeps reconnecting on later requests anyway.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let connection =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                .map_err(bad)?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                config: manager_config,
                current: RwLock::new(connection),
                timeouts: AtomicU32::new(0),
                target,
                timeout: config.timeout,
                feeds: RwLock::default(),
                freshness: Freshness::default(),
            }),
        })
    }

    /// Where this backend points, safe to log: host and port, never credentials.
    pub fn describe(&self) -> String {
        format!("redis at {}", self.shared.target)
    }

    /// The store of one app's set, under `keys`, with a local copy that [`Self::run_feed`]
    /// keeps current.
    pub fn store(&self, keys: StoreKeys, retention: Duration) -> RedisStore {
        let cache = Arc::new(AppCache::default());
        self.shared
            .feeds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((keys.feed.clone(), cache.clone(), keys.set.clone()));
        RedisStore {
            backend: self.clone(),
            keys,
            retention_ms: retention.as_millis() as u64,
            cache,
        }
    }

    /// Follows the change feed of every app's store until `shutdown` (see [`super::feed`]).
    pub fn run_feed(
        &self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        super::feed::run(self.clone(), shutdown)
    }

    /// Whether reads are answered from the local copies right now.
    pub fn answers_from_memory(&self) -> bool {
        self.shared.freshness.is_fresh()
    }

    pub(super) fn client(&self) -> &redis::Client {
        &self.shared.client
    }

    pub(super) fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    pub(super) fn freshness(&self) -> &Freshness {
        &self.shared.freshness
    }

    pub(super) fn feeds(&self) -> Vec<(String, Arc<AppCache>)> {
        self.shared
            .feeds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(feed, cache, _)| (feed.clone(), cache.clone()))
            .collect()
    }

    /// Every member of the set whose feed is `feed`, read from Redis.
    pub(super) async fn members_of_feed(&self, feed: &str) -> Result<Vec<String>, StoreError> {
        let set = self
            .shared
            .feeds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(f, _, _)| f == feed)
            .map(|(_, _, set)| set.clone())
            .ok_or(StoreError::Unexpected("a feed without a set"))?;
        self.run(|mut c| async move { redis::cmd("SMEMBERS").arg(set).query_async(&mut c).await })
            .await
    }

    /// Publishes a heartbeat; a failure only means the feed will be found silent.
    pub(super) async fn publish_heartbeat(&self, feed: &str, payload: &str) {
        let result: Result<i64, StoreError> = self
            .run(|mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(feed)
                    .arg(payload)
                    .query_async(&mut c)
                    .await
            })
            .await;
        if let Err(err) = result {
            tracing::debug!(error = ?err, "cannot publish the feed heartbeat");
        }
    }

    fn connection(&self) -> ConnectionManager {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs one request, rebuilding the connection when its failure shows the old one is stuck,
    /// and sorts any error into "retry later" and "needs an operator".
    async fn run<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let started = std::time::Instant::now();
        let result = request(self.connection()).await;
        observe(&metrics().store_duration, &[], started.elapsed());
        match result {
            Ok(value) => {
                self.shared.timeouts.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Err(err) => {
                if is_read_only(&err) {
                    tracing::warn!(
                        "Redis answered READONLY (a replica, after a failover?): reconnecting"
                    );
                    self.rebuild();
                } else if err.is_timeout() {
                    let count = self.shared.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                    if count >= TIMEOUTS_BEFORE_REBUILD {
                        tracing::warn!(timeouts = count, "Redis keeps timing out: reconnecting");
                        self.rebuild();
                    }
                }
                let err = classify(err);
                let kind = match err {
                    StoreError::Unavailable(_) => "unavailable",
                    _ => "failed",
                };
                count(&metrics().store_errors, &[("kind", kind)], 1);
                Err(err)
            }
        }
    }

    fn rebuild(&self) {
        self.shared.timeouts.store(0, Ordering::Relaxed);
        match ConnectionManager::new_lazy_with_config(
            self.shared.client.clone(),
            self.shared.config.clone(),
        ) {
            Ok(fresh) => {
                *self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = fresh;
            }
            Err(err) => {
                tracing::error!(error = %err.category(), "cannot rebuild the Redis connection")
            }
        }
    }
}

/// The Redis keys of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKeys {
    /// The set of occupied channels, read by encoders with `SISMEMBER`.
    pub set: String,
    /// Sorted set: channel -> `time_ms` of the last event applied.
    pub times: String,
    /// The lock that lets one replica at a time reconcile this app.
    pub reconcile_lock: String,
    /// The pub/sub channel every applied change is published on.
    pub feed: String,
    /// The counter numbering published changes, so a replica knows when its copy has caught up.
    pub seq: String,
}

impl StoreKeys {
    /// The keys for a set under `set`. The others share its hash slot: they use its hash tag if
    /// it has one, or wrap the whole key in one (`{pusher:channels}:times` hashes exactly like
    /// `pusher:channels`), so encoders keep reading the set by its plain name, in a Redis Cluster
    /// too.
    pub fn for_set(set: &str) -> Self {
        let tag = match hash_tag(set) {
            Some(_) => set.to_owned(),
            None => format!("{{{set}}}"),
        };
        Self {
            set: set.to_owned(),
            times: format!("{tag}:times"),
            reconcile_lock: format!("{tag}:reconcile-lock"),
            feed: format!("{tag}:changes"),
            seq: format!("{tag}:seq"),
        }
    }
}

/// The part of a key Redis Cluster hashes, when the key names one (`a{tag}b` -> `tag`).
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// One app's set of occupied channels in Redis.
#[derive(Clone, Debug)]
pub struct RedisStore {
    backend: RedisBackend,
    keys: StoreKeys,
    retention_ms: u64,
    cache: Arc<AppCache>,
}

fn apply_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/apply.lua")))
}

fn reconcile_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/reconcile.lua")))
}

impl RedisStore {
    /// This app's keys.
    pub fn keys(&self) -> &StoreKeys {
        &self.keys
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> &RedisBackend {
        &self.backend
    }
}

/// How long a write waits for the feed to bring it back before answering anyway.
const OWN_WRITE_WAIT: Duration = Duration::from_millis(200);

impl RedisStore {
    /// Waits until this replica's copy has caught up with change `seq`, so whoever made the
    /// change (a webhook's sender) reads it back at once. The copy is written only by the feed,
    /// in Redis's order: applying our own change to it directly could land after a newer change
    /// from another replica and undo it.
    async fn read_own_write(&self, seq: u64) {
        if seq == 0 || !self.backend.answers_from_memory() {
            return;
        }
        if !self.cache.wait_for(seq, OWN_WRITE_WAIT).await {
            tracing::debug!(
                seq,
                "the change feed is slow: answering before the copy caught up"
            );
        }
    }
}

impl OccupancyStore for RedisStore {
    fn watch(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.cache.watch()
    }

    async fn lock_reconcile(&self, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.keys.reconcile_lock.clone();
        let owner = owner.to_owned();
        let taken: Option<String> = self
            .backend
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(taken.is_some())
    }

    async fn apply(&self, events: &[Event]) -> Result<Applied, StoreError> {
        let mut invocation = apply_script().prepare_invoke();
        invocation
            .key(&self.keys.set)
            .key(&self.keys.times)
            .key(&self.keys.seq)
            .arg(self.retention_ms)
            .arg(&self.keys.feed);
        for event in events {
            invocation
                .arg(match event.occupancy {
                    Occupancy::Occupied => "1",
                    Occupancy::Vacated => "0",
                })
                .arg(event.time_ms)
                .arg(event.channel.as_str());
        }
        let answer: Vec<u64> = self
            .backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let Some((&seq, flags)) = answer.split_first() else {
            return Err(StoreError::Unexpected("the apply script gave no answer"));
        };
        if flags.len() != events.len() {
            return Err(StoreError::Unexpected(
                "the apply script answered for a different number of events",
            ));
        }
        let mut applied = Applied::default();
        for (event, &flag) in events.iter().zip(flags) {
            if flag == 1 {
                applied.applied.push(event.clone());
            } else {
                applied.stale += 1;
            }
        }
        self.read_own_write(seq).await;
        Ok(applied)
    }

    async fn occupied(&self, channels: &[ChannelName]) -> Result<Vec<bool>, StoreError> {
        if self.backend.answers_from_memory() {
            return Ok(channels
                .iter()
                .map(|c| self.cache.contains(c.as_str()))
                .collect());
        }
        let key = &self.keys.set;
        let answer: Vec<bool> = match channels {
            [] => return Ok(Vec::new()),
            [one] => {
                let one: bool = self
                    .backend
                    .run(|mut c| async move {
                        redis::cmd("SISMEMBER")
                            .arg(key)
                            .arg(one.as_str())
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                vec![one]
            }
            // SISMEMBER per channel, pipelined: one round trip, and unlike SMISMEMBER it works
            // on every Redis version.
            many => {
                let mut pipe = redis::pipe();
                for channel in many {
                    pipe.cmd("SISMEMBER").arg(key).arg(channel.as_str());
                }
                self.backend
                    .run(|mut c| async move { pipe.query_async(&mut c).await })
                    .await?
            }
        };
        if answer.len() != channels.len() {
            return Err(StoreError::Unexpected(
                "Redis answered for a different number of channels",
            ));
        }
        Ok(answer)
    }

    async fn members(&self) -> Result<Vec<String>, StoreError> {
        if self.backend.answers_from_memory() {
            return Ok(self.cache.members());
        }
        let key = &self.keys.set;
        self.backend
            .run(|mut c| async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await })
            .await
    }

    async fn reconcile(
        &self,
        listed: &[String],
        requested_at_ms: u64,
    ) -> Result<Repairs, StoreError> {
        let mut invocation = reconcile_script().prepare_invoke();
        invocation
            .key(&self.keys.set)
            .key(&self.keys.times)
            .key(&self.keys.seq)
            .arg(requested_at_ms)
            .arg(&self.keys.feed);
        for channel in listed {
            invocation.arg(channel.as_str());
        }
        let (added, removed, seq): (Vec<String>, Vec<String>, u64) = self
            .backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        self.read_own_write(seq).await;
        Ok(Repairs { added, removed })
    }

    /// An empty run of the apply script: proves Redis answers, has the script and takes writes
    /// (a replica answers `READONLY`), and prunes old timestamps on the way.
    async fn ping(&self) -> Result<(), StoreError> {
        let mut invocation = apply_script().prepare_invoke();
        invocation
            .key(&self.keys.set)
            .key(&self.keys.times)
            .key(&self.keys.seq)
            .arg(self.retention_ms)
            .arg("");
        let _: Vec<u64> = self
            .backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }
}

fn is_read_only(err: &RedisError) -> bool {
    matches!(err.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
        || err.to_string().contains("READONLY")
}

/// Sorts a Redis error into "try again later" and "needs an operator".
fn classify(err: RedisError) -> StoreError {
    let transient = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || is_read_only(&err)
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        );
    if transient {
        StoreError::Unavailable(err)
    } else {
        StoreError::Failed(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_keys_share_the_set_keys_hash_slot() {
        let plain = StoreKeys::for_set("pusher:channels");
        assert_eq!(plain.set, "pusher:channels");
        assert_eq!(plain.times, "{pusher:channels}:times");
        assert_eq!(plain.feed, "{pusher:channels}:changes");
        assert_eq!(plain.seq, "{pusher:channels}:seq");
        let tagged = StoreKeys::for_set("pusher:{42}:channels");
        assert_eq!(tagged.times, "pusher:{42}:channels:times");
        assert_eq!(hash_tag("a{}b"), None);
    }
}
