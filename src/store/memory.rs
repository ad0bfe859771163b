//! The in-memory store: the whole set in this process, for a bare machine and for tests.
//!
//! State is lost on exit and is not shared with other replicas or with encoders reading Redis,
//! which is why start-up logs say so plainly when this store is chosen.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use super::{Change, OccupancyStore, StoreError};
use crate::channel::ChannelName;

/// A set of occupied channels held in this process. Cloning shares the set.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    channels: Arc<RwLock<HashSet<String>>>,
}

impl MemoryStore {
    /// An empty store: every channel vacant.
    pub fn new() -> Self {
        Self::default()
    }
}

impl OccupancyStore for MemoryStore {
    async fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        // One write lock for the whole batch makes it atomic to readers. A poisoned lock only
        // means another writer panicked mid-batch; the set itself is still a valid set.
        let mut set = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for change in changes {
            if change.occupied {
                set.insert(change.channel.as_str().to_owned());
            } else {
                set.remove(change.channel.as_str());
            }
        }
        Ok(())
    }

    async fn occupied(&self, channels: &[ChannelName]) -> Result<Vec<bool>, StoreError> {
        let set = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        Ok(channels.iter().map(|c| set.contains(c.as_str())).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
