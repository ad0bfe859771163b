//! One connection to one Redis deployment, multiplexing every request of every app: it knows
//! nothing of apps, sets or feeds (see [`super::feed`] for the replica built on it, and
//! [`super::redis`] for the store).
//!
//! The connection is a [`redis::aio::ConnectionManager`] to one Redis or to the primary the
//! sentinels name, or a cluster connection (see [`super::connect`] for the URL syntaxes). The
//! manager reconnects by itself after errors it deems fatal, but not after timeouts (a Redis that
//! died without a reset) or `READONLY` (a primary demoted by a failover), and it always
//! reconnects to the same address; so [`Connection`] replaces it after consecutive failures and
//! on `READONLY`, asking the sentinels again when they are used, which is how a failover is
//! followed. Nothing connects before the first request, so the service starts (and reports
//! `NOT_SERVING`) while Redis is still down, and short timeouts make an outage answer quickly.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub use super::connect::BadRedisUrl;
use super::connect::{Link, Target};
use super::error::StoreError;
use crate::clock::now_ms;
use crate::metrics::{Metrics, count, observe};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// A URL of one of the kinds in [`super::connect`]: `redis[s]://`, `redis[s]+sentinel://`
    /// or `redis[s]+cluster://`. May hold a password: never log it whole (see
    /// [`Connection::describe`]).
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

/// The connection's state, shared by every clone.
struct State {
    target: Target,
    /// The target's addresses, safe to log.
    name: String,
    config: ConnectionManagerConfig,
    timeout: Duration,
    /// The connection in use; `None` until the first request, and after it was found dead.
    current: RwLock<Option<Link>>,
    /// The node the current connection goes to (the primary the sentinels named), on which the
    /// pub/sub feed is followed; `None` for a cluster, whose feed rotates over its nodes.
    node: RwLock<Option<redis::Client>>,
    /// One connection attempt at a time: the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    /// When the last attempt to connect failed (ms since the epoch), 0 if it did not.
    failed_connect_at_ms: AtomicU64,
    /// Connection failures in a row (see [`FAILURES_BEFORE_REBUILD`]).
    failures: AtomicU32,
    /// The service's metrics: latency, errors and reconnects of every command.
    metrics: Arc<Metrics>,
}

/// The connection to one Redis deployment (a single Redis, a sentinel-managed primary or a
/// cluster). Cloning shares it.
#[derive(Clone)]
pub(super) struct Connection {
    shared: Arc<State>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Prepares the connection without making it, so a Redis that is down at start-up delays
    /// nothing; the first command connects. Fails only for a URL that cannot be used at all.
    /// Counts into `metrics`.
    pub(super) fn new(
        config: &RedisStoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BadRedisUrl> {
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
            shared: Arc::new(State {
                name: target.describe(),
                target,
                config: manager_config,
                timeout: config.timeout,
                current: RwLock::new(None),
                node: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_connect_at_ms: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                metrics,
            }),
        })
    }

    /// The service's metrics, for the layers above (the feed counts there too).
    pub(super) fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Where this connection points, safe to log: addresses, never credentials.
    pub(super) fn describe(&self) -> &str {
        &self.shared.name
    }

    /// The database number the URL names (0 for a cluster).
    pub(super) fn db(&self) -> i64 {
        self.shared.target.db()
    }

    /// Whether the target is a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        self.shared.target.is_cluster()
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
                tracing::debug!(error = %err, store = %self.shared.name, "cannot connect to Redis");
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
    pub(super) async fn run<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
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
        observe(&self.shared.metrics.store_duration, &[], started.elapsed());
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
                count(&self.shared.metrics.store_errors, &[("kind", kind)], 1);
                Err(err)
            }
        }
    }

    /// Replaces the connection after `READONLY` (a primary demoted by a failover), and after
    /// [`FAILURES_BEFORE_REBUILD`] connection failures in a row: timeouts always (a dead socket),
    /// refusals and drops too when the target can be looked up again (sentinels, a cluster).
    fn failed(&self, err: &RedisError) {
        if is_read_only(err) {
            count(
                &self.shared.metrics.store_reconnects,
                &[("reason", "read_only")],
                1,
            );
            tracing::warn!(
                store = %self.shared.name,
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
            let failures = self.shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures >= FAILURES_BEFORE_REBUILD {
                let reason = if err.is_timeout() {
                    "timeouts"
                } else {
                    "failures"
                };
                count(
                    &self.shared.metrics.store_reconnects,
                    &[("reason", reason)],
                    1,
                );
                if err.is_timeout() {
                    tracing::warn!(failures, store = %self.shared.name, "Redis keeps timing out: reconnecting");
                } else {
                    tracing::warn!(failures, store = %self.shared.name, "Redis keeps failing: reconnecting");
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
