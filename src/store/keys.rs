//! The names this service uses in Redis: each app's keys, which share one cluster slot, and the
//! random ids that name a replica on the feed and an epoch of the data.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::now_ms;

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

/// A random id: this replica's name on the feed, or a new data epoch.
pub(super) fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
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

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id(), random_id());
    }
}
