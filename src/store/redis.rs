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
//! The layers, each using only those below it: [`super::connection`] (one connection to the
//! deployment, knowing nothing of apps), [`super::copy`] and [`super::feed`] (this replica's
//! local copy of each app's set, and the feed that keeps it current), and here the store that
//! answers from the copy while it is fresh and from Redis otherwise. [`RedisBackend`] puts them
//! together: every app's store is made from it before its feed runs, so the set of apps the
//! feed follows is fixed when it starts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::change::{Applied, Event, FeedEvent, Occupancy, Repairs};
use super::connection::{BadRedisUrl, Connection, RedisStoreConfig};
use super::copy::AppCache;
use super::error::StoreError;
use super::feed::{Replica, Signals};
use super::keys::{StoreKeys, random_id};
use super::scripts;
use crate::channel::ChannelName;
use crate::clock::MAX_FUTURE_MS;
use crate::metrics::Metrics;

/// One Redis deployment (a single Redis, a sentinel-managed primary or a cluster) and this
/// replica's view of it, from which every app's store is made.
#[derive(Debug)]
pub struct RedisBackend {
    connection: Connection,
    replica: Replica,
}

impl RedisBackend {
    /// Prepares the connection without making it, so a Redis that is down at start-up delays
    /// nothing; the first command connects. Fails only for a URL that cannot be used at all.
    /// Its commands and its change feed count into `metrics`.
    pub fn new(config: &RedisStoreConfig, metrics: Arc<Metrics>) -> Result<Self, BadRedisUrl> {
        let connection = Connection::new(config, metrics)?;
        Ok(Self {
            replica: Replica::new(connection.clone()),
            connection,
        })
    }

    /// Where this backend points, safe to log: addresses, never credentials.
    pub fn describe(&self) -> String {
        self.connection.describe().to_owned()
    }

    /// The store of one app's set, under `keys`, with a local copy that the feed keeps current
    /// once [`Self::run_feed`] runs. Taking `&mut self` while [`Self::run_feed`] takes `self`
    /// is what makes every store exist before the feed starts: none can be missed by it.
    pub fn store(&mut self, keys: StoreKeys, retention: Duration) -> RedisStore {
        // Pub/sub ignores the database number: gates on two databases of one Redis must not
        // hear each other's changes.
        let keys = keys.in_db(self.connection.db());
        if self.connection.is_cluster() && !keys.share_a_slot() {
            tracing::error!(
                set = %keys.set,
                "this set key holds a `}}` but no hash tag, so its bookkeeping keys cannot share \
                 its cluster slot and every update will fail (CROSSSLOT): give it a tag, e.g. \
                 `pusher:{{app}}:channels`"
            );
        }
        let cache = self.replica.follow(keys.clone());
        RedisStore {
            connection: self.connection.clone(),
            signals: self.replica.signals(),
            keys,
            retention_ms: retention.as_millis() as u64,
            cache,
        }
    }

    /// Follows the change feed of every app's store until `shutdown` (see [`super::feed`]).
    pub fn run_feed(
        self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.replica.run(shutdown)
    }
}

/// One app's set of occupied channels in Redis.
#[derive(Clone, Debug)]
pub struct RedisStore {
    connection: Connection,
    /// Requests to the feed and to reconciliation, shared with every app's store.
    signals: Arc<Signals>,
    keys: StoreKeys,
    retention_ms: u64,
    cache: Arc<AppCache>,
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
        let mut invocation = scripts::APPLY.prepare_invoke();
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
        let mut invocation = scripts::RECONCILE.prepare_invoke();
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
        self.connection
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
                .connection
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
        let mut invocation = scripts::READ.prepare_invoke();
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
            self.signals.wake_feed();
        }
        lost
    }

    /// Records that the set now matches Pusher's listing and tells every replica, so those that
    /// kept their copy through a data loss reload the repaired set. A failure only delays that
    /// until the next reconciliation.
    async fn announce_repaired(&self) {
        let mut invocation = scripts::REPAIRED.prepare_invoke();
        invocation
            .key(&self.keys.epoch)
            .key(&self.keys.repaired)
            .arg(&self.keys.feed);
        let result: Result<u64, StoreError> = self
            .connection
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
        Some(self.signals.repair_requests())
    }

    /// The lock records the data's epoch, so one taken before a data loss does not hold back
    /// the repair (see `lua/lock.lua`).
    pub(super) async fn lock_reconcile(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut invocation = scripts::LOCK.prepare_invoke();
        invocation
            .key(&self.keys.reconcile_lock)
            .key(&self.keys.epoch)
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .arg(random_id());
        let taken: u64 = self
            .connection
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
            .connection
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
            .connection
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
            .connection
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
            .connection
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ms;

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
        let mut backend = RedisBackend::new(
            &RedisStoreConfig {
                url: format!("redis://127.0.0.1:{}", redis.1),
                timeout: Duration::from_secs(2),
                ca: None,
            },
            Arc::default(),
        )
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
