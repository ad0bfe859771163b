//! The Redis store: each app's set lives under one key (`pusher:channels` by default), so
//! encoders that already run `SISMEMBER pusher:channels X` keep working beside the gate.
//!
//! Events are applied by a Lua script that checks each event's `time_ms` against a sorted set of
//! per-channel timestamps (`{<set key>}:times`, sharing the set key's hash slot so the script
//! runs on one slot of a Redis Cluster too) and changes the set in the same atomic step.
//! Beside them, in the same slot: the counter numbering published changes (`:seq`), the marker
//! naming the data's epoch and the last epoch repaired (`:epoch`, `:repaired`, see
//! [`super::feed`] for how a data loss is found and repaired), and the reconcile lock.
//!
//! [`RedisBackend`] holds one connection that multiplexes every request: a
//! [`redis::aio::ConnectionManager`] to one Redis or to the primary the sentinels name, or a
//! cluster connection (see [`super::connect`] for the URL syntaxes). The manager reconnects by
//! itself after errors it deems fatal, but not after timeouts (a Redis that died without a
//! reset) or `READONLY` (a primary demoted by a failover), and it always reconnects to the same
//! address; so the backend replaces the connection after consecutive failures and on
//! `READONLY`, asking the sentinels again when they are used, which is how a failover is
//! followed. Nothing connects before the first request, so the service starts (and reports
//! `NOT_SERVING`) while Redis is still down, and short timeouts make an outage answer quickly.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{ErrorKind, RedisError, Script, ServerErrorKind};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use super::connect::BadRedisUrl;
use super::connect::{Link, Target};
use super::feed::{AppCache, Known, Snapshot, random_id};
use super::{Applied, Event, FeedEvent, Occupancy, Repairs, StoreError, now_ms};
use crate::channel::ChannelName;
use crate::metrics::{count, metrics, observe};
use crate::webhook::MAX_FUTURE_MS;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// A URL of one of the kinds in [`super::connect`]: `redis[s]://`, `redis[s]+sentinel://`
    /// or `redis[s]+cluster://`. May hold a password: never log it whole (see
    /// [`RedisBackend::describe`]).
    pub url: String,
    /// Limit on connecting and on each command's answer; an outage is reported after this long.
    pub timeout: Duration,
    /// PEM certificates of a private CA to trust for TLS connections (`--redis-ca`), instead of
    /// the public web roots.
    pub ca: Option<Vec<u8>>,
}

/// Checks a `--redis-url` (and the CA to trust with it) without connecting, so a bad one stops
/// start-up like every other bad option. The error never quotes the URL.
pub fn check_redis_url(url: &str, ca: Option<&[u8]>) -> Result<(), BadRedisUrl> {
    Target::parse(url, ca, Duration::from_secs(1)).map(|_| ())
}

/// After this many connection failures in a row (timeouts, refusals, drops) the connection is
/// presumed dead, or pointing at a node that is no longer the primary, and is replaced. A Redis
/// gone without a reset keeps a socket open for minutes; a sentinel-managed primary that died
/// must be looked up again.
const FAILURES_BEFORE_REBUILD: u32 = 2;

/// After a failed attempt to connect (a lookup that found no primary yet, a cluster that does not
/// answer), requests fail at once for this long instead of each trying again.
const CONNECT_HOLDOFF: Duration = Duration::from_millis(100);

struct Shared {
    target: Target,
    config: ConnectionManagerConfig,
    /// The connection in use; `None` until the first request, and after it was found dead.
    current: RwLock<Option<Link>>,
    /// The node the current connection goes to (the primary the sentinels named), on which the
    /// pub/sub feed is followed; `None` for a cluster, whose feed rotates over its nodes.
    node: RwLock<Option<redis::Client>>,
    /// One connection attempt at a time: the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    /// When the last attempt to connect failed (ms since the epoch), 0 if it did not.
    failed_connect_at_ms: AtomicU64,
    failures: AtomicU32,
    target_name: String,
    timeout: Duration,
    /// Each app's keys and local copy.
    feeds: RwLock<Vec<(StoreKeys, Arc<AppCache>)>>,
    /// Notified when a reconciliation is wanted at once (data lost, or the feed broke).
    repair: Arc<tokio::sync::Notify>,
    /// This replica's name on the feed: it counts only its own heartbeats as signs of life.
    replica_id: String,
    /// Notified when a read finds Redis answering while the feed is down.
    feed_wake: tokio::sync::Notify,
}

/// One Redis deployment (a single Redis, a sentinel-managed primary or a cluster), shared by the
/// stores of every app. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.shared.target_name)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Prepares the connection without making it, so a Redis that is down at start-up delays
    /// nothing; the first command connects. Fails only for a URL that cannot be used at all.
    pub fn new(config: &RedisStoreConfig) -> Result<Self, BadRedisUrl> {
        let target = Target::parse(&config.url, config.ca.as_deref(), config.timeout)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // One quick retry: a request must not wait through a long backoff while Redis is
            // down; the manager keeps reconnecting on later requests anyway.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        Ok(Self {
            shared: Arc::new(Shared {
                target_name: target.describe(),
                target,
                config: manager_config,
                current: RwLock::new(None),
                node: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_connect_at_ms: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                timeout: config.timeout,
                feeds: RwLock::default(),
                repair: Arc::new(tokio::sync::Notify::new()),
                replica_id: random_id(),
                feed_wake: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Where this backend points, safe to log: addresses, never credentials.
    pub fn describe(&self) -> String {
        self.shared.target_name.clone()
    }

    /// The store of one app's set, under `keys`, with a local copy that [`Self::run_feed`]
    /// keeps current.
    pub fn store(&self, keys: StoreKeys, retention: Duration) -> RedisStore {
        // Pub/sub ignores the database number: gates on two databases of one Redis must not
        // hear each other's changes.
        let keys = keys.in_db(self.shared.target.db());
        if self.shared.target.is_cluster() && !keys.share_a_slot() {
            tracing::error!(
                set = %keys.set,
                "this set key holds a `}}` but no hash tag, so its bookkeeping keys cannot share \
                 its cluster slot and every update will fail (CROSSSLOT): give it a tag, e.g. \
                 `pusher:{{app}}:channels`"
            );
        }
        let cache = Arc::new(AppCache::default());
        self.shared
            .feeds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((keys.clone(), cache.clone()));
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

    /// Asks for a reconciliation at once (see [`super::Store::repair_wanted`]).
    pub(super) fn want_repair(&self) {
        self.shared.repair.notify_one();
    }

    pub(super) fn feed_wake(&self) -> &tokio::sync::Notify {
        &self.shared.feed_wake
    }

    pub(super) fn replica_id(&self) -> &str {
        &self.shared.replica_id
    }

    /// The node to follow the pub/sub feed on, and its address for the log: the current
    /// primary (connecting first, which asks the sentinels when they are used), or for a
    /// cluster the next of its configured nodes (any node hears every `PUBLISH`).
    pub(super) async fn feed_node(&self) -> Result<(String, redis::Client), StoreError> {
        if let Some(node) = self.shared.target.next_feed_node() {
            return Ok(node);
        }
        self.link().await.map_err(StoreError::Unavailable)?;
        self.shared
            .node
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map(|client| (client.get_connection_info().addr().to_string(), client))
            .ok_or(StoreError::Unexpected("a connection without a node"))
    }

    /// Counts a failure met outside [`Self::run`] (the feed's subscription), so a dead primary
    /// seen there also leads to asking the sentinels again.
    pub(super) fn note_failure(&self, err: &RedisError) {
        self.failed(err);
    }

    pub(super) fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// Each app's keys and local copy.
    pub(super) fn feeds(&self) -> Vec<(StoreKeys, Arc<AppCache>)> {
        self.shared
            .feeds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The check script (see `lua/check.lua`) for one app, as this replica knows its data.
    fn check_invocation(
        &self,
        keys: &StoreKeys,
        known: &Known,
        mode: &str,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = check_script().prepare_invoke();
        invocation
            .key(&keys.set)
            .key(&keys.seq)
            .key(&keys.epoch)
            .key(&keys.repaired)
            .arg(mode)
            .arg(known.epoch.as_deref().unwrap_or(""))
            .arg(&known.run_id)
            .arg(random_id())
            .arg(&keys.feed)
            .arg(&self.shared.replica_id);
        invocation
    }

    /// Reads one app's set with its change number and data epoch, in one atomic step.
    pub(super) async fn check(
        &self,
        keys: &StoreKeys,
        known: &Known,
    ) -> Result<Snapshot, StoreError> {
        let invocation = self.check_invocation(keys, known, "reload");
        let (epoch, run_id, seq, repaired, members): (String, String, u64, u64, Vec<String>) = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(Snapshot {
            epoch,
            run_id,
            seq,
            repaired: repaired == 1,
            members,
        })
    }

    /// Checks one app's data and publishes this replica's heartbeat on its feed; a failure only
    /// means the heartbeat will not be heard, and the copy will stop answering.
    pub(super) async fn heartbeat(&self, keys: &StoreKeys, known: &Known) {
        let invocation = self.check_invocation(keys, known, "beat");
        let result: Result<(String, String, u64, u64), StoreError> = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await;
        if let Err(err) = result {
            tracing::debug!(error = ?err, set = %keys.set, "cannot publish the feed heartbeat");
        }
    }

    /// The connection in use, made first if there is none. Only one task connects at a time;
    /// after a failed attempt, requests fail at once for [`CONNECT_HOLDOFF`].
    async fn link(&self) -> Result<Link, RedisError> {
        if let Some(link) = self.current_link() {
            return Ok(link);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(link) = self.current_link() {
            return Ok(link);
        }
        let failed_at = self.shared.failed_connect_at_ms.load(Ordering::Acquire);
        if failed_at != 0 && now_ms().saturating_sub(failed_at) < CONNECT_HOLDOFF.as_millis() as u64
        {
            return Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the last attempt to connect failed moments ago",
            )));
        }
        match self
            .shared
            .target
            .connect(&self.shared.config, self.shared.timeout)
            .await
        {
            Ok((link, node)) => {
                self.shared.failed_connect_at_ms.store(0, Ordering::Release);
                *self
                    .shared
                    .node
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = node;
                *self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(link.clone());
                Ok(link)
            }
            Err(err) => {
                self.shared
                    .failed_connect_at_ms
                    .store(now_ms().max(1), Ordering::Release);
                tracing::debug!(error = %err, store = %self.shared.target_name, "cannot connect to Redis");
                Err(err)
            }
        }
    }

    fn current_link(&self) -> Option<Link> {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs one request, replacing the connection when its failure shows the old one is stuck
    /// or points at a demoted primary, and sorts any error into "retry later" and "needs an
    /// operator".
    async fn run<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        F: FnOnce(Link) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let started = std::time::Instant::now();
        // A failure to connect at all is always "retry later", whatever the sentinels said.
        let result = match self.link().await {
            Ok(link) => request(link).await.map_err(|err| {
                self.failed(&err);
                classify(err)
            }),
            Err(err) => Err(StoreError::Unavailable(err)),
        };
        observe(&metrics().store_duration, &[], started.elapsed());
        match result {
            Ok(value) => {
                self.shared.failures.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Err(err) => {
                let kind = match err {
                    StoreError::Unavailable(_) => "unavailable",
                    _ => "failed",
                };
                count(&metrics().store_errors, &[("kind", kind)], 1);
                Err(err)
            }
        }
    }

    /// Replaces the connection after `READONLY` (a primary demoted by a failover), and after
    /// [`FAILURES_BEFORE_REBUILD`] connection failures in a row: timeouts always (a dead socket),
    /// refusals and drops too when the target can be looked up again (sentinels, a cluster).
    fn failed(&self, err: &RedisError) {
        if is_read_only(err) {
            count(&metrics().store_reconnects, &[("reason", "read_only")], 1);
            tracing::warn!(
                store = %self.shared.target_name,
                "Redis answered READONLY (a replica, after a failover?): reconnecting"
            );
            self.forget_connection();
            return;
        }
        let counts = err.is_timeout()
            || (self.shared.target.rediscovers()
                && (err.is_io_error()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()));
        if counts {
            let count = self.shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if count >= FAILURES_BEFORE_REBUILD {
                let reason = if err.is_timeout() {
                    "timeouts"
                } else {
                    "failures"
                };
                crate::metrics::count(&metrics().store_reconnects, &[("reason", reason)], 1);
                if err.is_timeout() {
                    tracing::warn!(failures = count, store = %self.shared.target_name, "Redis keeps timing out: reconnecting");
                } else {
                    tracing::warn!(failures = count, store = %self.shared.target_name, "Redis keeps failing: reconnecting");
                }
                self.forget_connection();
            }
        }
    }

    fn forget_connection(&self) {
        self.shared.failures.store(0, Ordering::Relaxed);
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
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
    /// A random id naming the data Redis holds; missing or replaced when Redis lost data.
    pub epoch: String,
    /// The epoch whose set was last repaired from Pusher's listing.
    pub repaired: String,
}

impl StoreKeys {
    /// The keys for a set under `set`. The others share its hash slot: they use its hash tag if
    /// it has one, or wrap the whole key in one, so encoders keep reading the set by its plain
    /// name, in a Redis Cluster too.
    ///
    /// Why the wrapped twin lands in the same slot: Redis Cluster hashes a key's hash tag (the
    /// text between its first `{` and the first `}` after it, when not empty) or else the whole
    /// key. `pusher:channels` has no tag, so its whole name is hashed; `{pusher:channels}:times`
    /// has the tag `pusher:channels`, the same text, hence the same CRC16 and slot (checked here
    /// against Redis's own example and in `tests/cluster.rs` with `CLUSTER KEYSLOT`). So the apply
    /// script's two keys are one slot and run on one node, and `SISMEMBER pusher:channels X`
    /// needs no change. The one set name that cannot be twinned is one holding a `}` but no
    /// valid tag (`a{}b`, `a}b`): [`Self::share_a_slot`] is false and a cluster refuses the
    /// script (`CROSSSLOT`), which is logged at start-up.
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
            epoch: format!("{tag}:epoch"),
            repaired: format!("{tag}:repaired"),
        }
    }

    /// The same keys for database `db`: pub/sub ignores the database number, so the feed
    /// channel names it (database 0 keeps the plain name).
    pub fn in_db(mut self, db: i64) -> Self {
        if db != 0 && !self.feed.ends_with(&format!(":db{db}")) {
            self.feed = format!("{}:db{db}", self.feed);
        }
        self
    }

    /// Every key derived from the set key, the set key excluded: two apps whose keys share one
    /// of these would share their bookkeeping (`K` and `{K}` do).
    pub fn derived(&self) -> [&str; 6] {
        [
            &self.times,
            &self.reconcile_lock,
            &self.feed,
            &self.seq,
            &self.epoch,
            &self.repaired,
        ]
    }
}

impl StoreKeys {
    /// Whether the set and its bookkeeping keys hash to one Redis Cluster slot, as the scripts
    /// need.
    pub fn share_a_slot(&self) -> bool {
        let slot = cluster_slot(&self.set);
        self.derived().iter().all(|key| cluster_slot(key) == slot)
    }
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key, modulo
/// 16384, as the cluster specification defines it.
fn cluster_slot(key: &str) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
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

fn check_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/check.lua")))
}

fn lock_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/lock.lua")))
}

fn repaired_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/repaired.lua")))
}

fn read_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/read.lua")))
}

fn reconcile_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/reconcile.lua")))
}

/// How many changes one reconcile script call makes at most. Each change is about four O(1) or
/// O(log n) commands (`SISMEMBER`, `ZSCORE`, `SADD`/`SREM`, `ZADD`). Measured with `SLOWLOG` on
/// a shared 2-core machine under load: a chunk of 250 runs in about 1.2 to 2.3 ms, one of 1,000
/// in 7 to 29 ms (see BENCHMARKS.md), so 250 keeps every call far below the 10 ms a webhook or a
/// health check should ever wait behind it; 200,000 changes are then 800 calls.
const RECONCILE_CHUNK: usize = 250;

/// How many reconcile chunks are sent before the first answers: each round trip then overlaps
/// the next script instead of waiting for it, yet at most this many chunks (about 6 ms of
/// scripts) can be queued ahead of another request on the shared connection.
const RECONCILE_IN_FLIGHT: usize = 4;

/// How many members one `SSCAN` call asks for: a hint, each call stays around a millisecond.
const SCAN_COUNT: usize = 1000;

/// How long a write waits for the feed to bring it back before answering anyway.
const OWN_WRITE_WAIT: Duration = Duration::from_millis(200);

impl RedisStore {
    /// The apply script with this app's keys, the retention and the feed to publish on (empty:
    /// publish nothing), ready for events.
    fn apply_invocation(&self, feed: &str) -> redis::ScriptInvocation<'static> {
        let mut invocation = apply_script().prepare_invoke();
        invocation
            .key(&self.keys.set)
            .key(&self.keys.times)
            .key(&self.keys.seq)
            .arg(self.retention_ms)
            .arg(feed);
        invocation
    }

    /// Runs the reconcile script on one chunk of changes (`+name` / `-name`).
    async fn reconcile_chunk(
        &self,
        chunk: &[String],
        requested_at_ms: u64,
    ) -> Result<(Vec<String>, Vec<String>, u64), StoreError> {
        let mut invocation = reconcile_script().prepare_invoke();
        invocation
            .key(&self.keys.set)
            .key(&self.keys.times)
            .key(&self.keys.seq)
            .arg(requested_at_ms)
            .arg(&self.keys.feed)
            .arg(MAX_FUTURE_MS);
        for change in chunk {
            invocation.arg(change.as_str());
        }
        self.backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }

    /// Every member of the set, read from Redis in many short `SSCAN` calls rather than one
    /// `SMEMBERS`, which on a set of 200,000 holds Redis for tens of milliseconds. A member
    /// present for the whole scan is returned; one added or removed meanwhile may or may not be.
    async fn scan_members(&self) -> Result<HashSet<String>, StoreError> {
        let mut members = HashSet::new();
        let mut cursor = 0u64;
        loop {
            let key = &self.keys.set;
            let (next, page): (u64, Vec<String>) = self
                .backend
                .run(|mut c| async move {
                    redis::cmd("SSCAN")
                        .arg(key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            members.extend(page);
            if next == 0 {
                return Ok(members);
            }
            cursor = next;
        }
    }

    /// The read script (see `lua/read.lua`) in `mode`, comparing with what this copy knows.
    fn read_invocation(&self, mode: &str) -> redis::ScriptInvocation<'static> {
        let known = self.cache.known();
        let mut invocation = read_script().prepare_invoke();
        invocation
            .key(&self.keys.set)
            .key(&self.keys.epoch)
            .arg(known.epoch.as_deref().unwrap_or(""))
            .arg(&known.run_id)
            .arg(mode);
        invocation
    }

    /// Notes that Redis, read directly while the feed is down, `lost` the data the copy was
    /// taken from: then Redis's answer is joined with the copy's until the feed is back and
    /// the set repaired, and the feed is told to reconnect now. Returns `lost`.
    fn lost_since_copy(&self, lost: bool) -> bool {
        if lost {
            self.backend.feed_wake().notify_one();
        }
        lost
    }

    /// Records that the set now matches Pusher's listing and tells every replica, so those that
    /// kept their copy through a data loss reload the repaired set. A failure only delays that
    /// until the next reconciliation.
    async fn announce_repaired(&self) {
        let mut invocation = repaired_script().prepare_invoke();
        invocation
            .key(&self.keys.epoch)
            .key(&self.keys.repaired)
            .arg(&self.keys.feed);
        let result: Result<u64, StoreError> = self
            .backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await;
        if let Err(err) = result {
            tracing::debug!(error = ?err, set = %self.keys.set, "cannot announce the repair");
        }
    }

    /// Waits until this replica's copy has caught up with change `seq`, so whoever made the
    /// change (a webhook's sender) reads it back at once. The copy is written only by the feed,
    /// in Redis's order: applying our own change to it directly could land after a newer change
    /// from another replica and undo it.
    async fn read_own_write(&self, seq: u64) {
        if seq == 0 || !self.cache.is_fresh() {
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

/// The calls [`super::Store`] makes.
impl RedisStore {
    pub(super) fn watch(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.cache.watch()
    }

    pub(super) fn repair_wanted(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.backend.shared.repair.clone())
    }

    /// The lock records the data's epoch, so one taken before a data loss does not hold back
    /// the repair (see `lua/lock.lua`).
    pub(super) async fn lock_reconcile(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut invocation = lock_script().prepare_invoke();
        invocation
            .key(&self.keys.reconcile_lock)
            .key(&self.keys.epoch)
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .arg(random_id());
        let taken: u64 = self
            .backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(taken == 1)
    }

    pub(super) async fn apply(&self, events: &[Event]) -> Result<Applied, StoreError> {
        let mut invocation = self.apply_invocation(&self.keys.feed);
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

    pub(super) async fn occupied(&self, channels: &[ChannelName]) -> Result<Vec<bool>, StoreError> {
        if self.cache.is_fresh() {
            return Ok(channels
                .iter()
                .map(|c| self.cache.contains(c.as_str()))
                .collect());
        }
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.read_invocation("channels");
        for channel in channels {
            invocation.arg(channel.as_str());
        }
        let answer: Vec<u64> = self
            .backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let Some((&lost, flags)) = answer.split_first() else {
            return Err(StoreError::Unexpected("the read script gave no answer"));
        };
        if flags.len() != channels.len() {
            return Err(StoreError::Unexpected(
                "Redis answered for a different number of channels",
            ));
        }
        let lost = self.lost_since_copy(lost == 1);
        Ok(channels
            .iter()
            .zip(flags)
            // After a loss Redis holds the changes made since, the copy those made before.
            .map(|(c, &flag)| flag == 1 || (lost && self.cache.contains(c.as_str())))
            .collect())
    }

    pub(super) async fn members(&self) -> Result<Vec<String>, StoreError> {
        if self.cache.is_fresh() {
            return Ok(self.cache.members());
        }
        let invocation = self.read_invocation("members");
        let (lost, members): (u64, Vec<String>) = self
            .backend
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        if self.lost_since_copy(lost == 1) {
            let mut all: std::collections::HashSet<String> = members.into_iter().collect();
            all.extend(self.cache.members());
            return Ok(all.into_iter().collect());
        }
        Ok(members)
    }

    /// Compares `listed` with the set read by `SSCAN` (a few thousand members per call), then
    /// sends the difference to the reconcile script in chunks of [`RECONCILE_CHUNK`], each
    /// re-checked atomically with the `requested_at_ms` guard. So a listing of 200,000 channels
    /// never runs as one long command: webhooks and pings are served between the calls, and a
    /// chunk's answer stays well inside the store timeout. Each change is as safe as in one
    /// atomic pass: a channel changed by an event after the listing was requested carries a newer
    /// time and stands, and one whose membership changed between the scan and its chunk is left
    /// as it now is (the next round looks again).
    pub(super) async fn reconcile(
        &self,
        listed: &[String],
        requested_at_ms: u64,
    ) -> Result<Repairs, StoreError> {
        let current = self.scan_members().await?;
        let wanted: HashSet<&str> = listed.iter().map(String::as_str).collect();
        let changes: Vec<String> = wanted
            .iter()
            .filter(|c| !current.contains(**c))
            .map(|c| format!("+{c}"))
            .chain(
                current
                    .iter()
                    .filter(|c| !wanted.contains(c.as_str()))
                    .map(|c| format!("-{c}")),
            )
            .collect();
        drop(current);
        let mut repairs = Repairs::default();
        let mut last_seq = 0;
        let mut in_flight = tokio::task::JoinSet::new();
        let mut chunks = changes.chunks(RECONCILE_CHUNK).map(<[String]>::to_vec);
        loop {
            while in_flight.len() < RECONCILE_IN_FLIGHT {
                let Some(chunk) = chunks.next() else { break };
                let store = self.clone();
                in_flight
                    .spawn(async move { store.reconcile_chunk(&chunk, requested_at_ms).await });
            }
            let Some(done) = in_flight.join_next().await else {
                break;
            };
            let (added, removed, seq) =
                done.map_err(|_| StoreError::Unexpected("a reconcile chunk's task failed"))??;
            repairs.added.extend(added);
            repairs.removed.extend(removed);
            last_seq = last_seq.max(seq);
        }
        self.read_own_write(last_seq).await;
        self.announce_repaired().await;
        Ok(repairs)
    }

    /// An empty run of the apply script: proves Redis answers, has the script and takes writes
    /// (a replica answers `READONLY`), and prunes old timestamps on the way.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let invocation = self.apply_invocation("");
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
        assert_eq!(plain.epoch, "{pusher:channels}:epoch");
        assert_eq!(plain.clone().in_db(0).feed, "{pusher:channels}:changes");
        assert_eq!(plain.in_db(3).feed, "{pusher:channels}:changes:db3");
        let tagged = StoreKeys::for_set("pusher:{42}:channels");
        assert_eq!(tagged.times, "pusher:{42}:channels:times");
        assert_eq!(hash_tag("a{}b"), None);
    }

    #[test]
    fn the_plain_set_key_hashes_like_its_tagged_twin() {
        // The cluster specification's example: `CLUSTER KEYSLOT foo` is 12182.
        assert_eq!(cluster_slot("foo"), 12182);
        assert_eq!(cluster_slot("{foo}:times"), 12182);
        assert_eq!(
            cluster_slot("{user1000}.following"),
            cluster_slot("user1000")
        );
        for set in ["pusher:channels", "pusher:{42}:channels", "a{b", "x{"] {
            let keys = StoreKeys::for_set(set);
            assert!(keys.share_a_slot(), "{set}: {keys:?}");
        }
        assert!(!StoreKeys::for_set("a{}b").share_a_slot());
        assert!(!StoreKeys::for_set("a}b").share_a_slot());
        assert!(!StoreKeys::for_set("{}").share_a_slot());
    }

    /// A real `redis-server` on a free port, for the one test here that must call the store
    /// with a clock of its own; it stops with the test. Fails (never skips) without the binary.
    struct LocalRedis(std::process::Child, u16);

    impl LocalRedis {
        fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed (tests/run-all.sh installs it)");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Self(child, port)
        }
    }

    impl Drop for LocalRedis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fast_clock_cannot_stamp_repairs_more_than_a_minute_ahead() {
        let redis = LocalRedis::start();
        let backend = RedisBackend::new(&RedisStoreConfig {
            url: format!("redis://127.0.0.1:{}", redis.1),
            timeout: Duration::from_secs(2),
            ca: None,
        })
        .expect("backend");
        let store = backend.store(
            StoreKeys::for_set("pusher:channels"),
            Duration::from_secs(900),
        );
        // This gate's clock is an hour fast.
        let an_hour_ahead = now_ms() + 3_600_000;
        let repairs = store
            .reconcile(&["listed".to_owned()], an_hour_ahead)
            .await
            .expect("reconcile");
        assert_eq!(repairs.added, ["listed"]);
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", redis.1)).expect("url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let stamp: f64 = redis::cmd("ZSCORE")
            .arg("{pusher:channels}:times")
            .arg("listed")
            .query_async(&mut connection)
            .await
            .expect("ZSCORE");
        assert!(
            (stamp as u64) <= now_ms() + 61_000,
            "stamped {} ms ahead",
            stamp as u64 - now_ms()
        );
        // So a real event two minutes later still applies, as it would after a webhook clamped
        // the same way.
        let vacated = Event {
            channel: ChannelName::parse("listed").expect("name"),
            occupancy: Occupancy::Vacated,
            time_ms: now_ms() + 120_000,
        };
        let applied = store.apply(&[vacated]).await.expect("apply");
        assert_eq!(applied.applied.len(), 1, "{applied:?}");
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg("pusher:channels")
            .query_async(&mut connection)
            .await
            .expect("SMEMBERS");
        assert!(members.is_empty(), "{members:?}");
    }
}
