//! The Redis store: the set lives under one key (`pusher:channels` by default), so encoders that
//! already run `SISMEMBER pusher:channels X` keep working beside the gate.
//!
//! A single [`ConnectionManager`] multiplexes every request over one connection and reconnects by
//! itself after Redis restarts. It is created lazily, so the service starts (and reports
//! `NOT_SERVING`) while Redis is still down, and short timeouts make an outage answer quickly
//! instead of holding encoders and Pusher's webhook deliveries.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::{Change, OccupancyStore, StoreError};
use crate::channel::ChannelName;

/// How to reach Redis and which key holds the set.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// A `redis://` or `rediss://` URL. May hold a password: never log it whole (see
    /// [`RedisStore::describe`]).
    pub url: String,
    /// The key of the set of occupied channels.
    pub key: String,
    /// Limit on connecting and on each command's answer; an outage is reported after this long.
    pub timeout: Duration,
}

/// The set of occupied channels in Redis.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    key: String,
    target: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares the connection without making it, so a Redis that is down at start-up delays
    /// nothing; the first command connects. Fails only for a URL that cannot be used at all.
    pub fn new(config: RedisStoreConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| StoreError::Failed(format!("invalid Redis URL: {}", e.category())))?;
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
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| StoreError::Failed(format!("cannot set up Redis connection: {e}")))?;
        Ok(Self {
            connection,
            key: config.key,
            target,
        })
    }

    /// Where this store points, safe to log: host, port and key, never credentials.
    pub fn describe(&self) -> String {
        format!("redis at {} key {:?}", self.target, self.key)
    }
}

impl OccupancyStore for RedisStore {
    async fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // MULTI/EXEC: the batch lands whole and in order, in one round trip.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for change in changes {
            let command = if change.occupied { "SADD" } else { "SREM" };
            pipe.cmd(command)
                .arg(&self.key)
                .arg(change.channel.as_str())
                .ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(classify)
    }

    async fn occupied(&self, channels: &[ChannelName]) -> Result<Vec<bool>, StoreError> {
        let mut connection = self.connection.clone();
        match channels {
            [] => Ok(Vec::new()),
            [one] => {
                let occupied: bool = redis::cmd("SISMEMBER")
                    .arg(&self.key)
                    .arg(one.as_str())
                    .query_async(&mut connection)
                    .await
                    .map_err(classify)?;
                Ok(vec![occupied])
            }
            // SISMEMBER per channel, pipelined: one round trip, and unlike SMISMEMBER it works
            // on every Redis version.
            many => {
                let mut pipe = redis::pipe();
                for channel in many {
                    pipe.cmd("SISMEMBER").arg(&self.key).arg(channel.as_str());
                }
                pipe.query_async(&mut connection).await.map_err(classify)
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(classify)
    }
}

/// Sorts a Redis error into "try again later" and "needs an operator".
fn classify(err: RedisError) -> StoreError {
    let transient = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
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
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Failed(err.to_string())
    }
}
