//! Where the set of occupied channels lives.
//!
//! The gate and the webhook listener only need three things from storage: apply a batch of
//! occupancy changes as one unit, say which of some channels are occupied, and say whether the
//! store is reachable at all (for health checks). [`OccupancyStore`] is exactly that, so the Redis
//! store used in production and the in-memory store used on a bare machine are interchangeable and
//! pass the same behavioural tests.

mod memory;
mod redis;

use std::future::Future;

pub use self::memory::MemoryStore;
pub use self::redis::{RedisStore, RedisStoreConfig};
use crate::channel::ChannelName;

/// One channel becoming occupied or vacant, as a webhook reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The channel whose occupancy changed.
    pub channel: ChannelName,
    /// `true` for `channel_occupied`, `false` for `channel_vacated`.
    pub occupied: bool,
}

/// Why the store could not answer. Kept apart so callers can tell "retry later" from "an operator
/// must look", which map to different gRPC statuses and HTTP codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached right now (refused, dropped, timed out, loading). Retrying
    /// later is the right answer, so webhooks get 503 and the gate `UNAVAILABLE`.
    #[error("occupancy store unavailable: {0}")]
    Unavailable(String),
    /// The store answered, but with an error that retrying will not fix (for example the key
    /// holds something other than a set).
    #[error("occupancy store failed: {0}")]
    Failed(String),
}

/// Storage for the set of occupied channels.
///
/// Implementations answer every call with at most one round trip to their backend, over
/// connections set up once: the gate sits on the encoders' hot path.
pub trait OccupancyStore: Send + Sync + 'static {
    /// Applies `changes` in order, as one unit: either all take effect or none does.
    fn apply(&self, changes: &[Change]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// For each of `channels`, in order, whether it is occupied.
    fn occupied(
        &self,
        channels: &[ChannelName],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Succeeds only while the store can answer; drives the health status.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
