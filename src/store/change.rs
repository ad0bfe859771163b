//! What the store speaks of: occupancy events as webhooks report them, what applying them did,
//! and the changes watchers are told about. Plain data, shared by both backends and their
//! callers; nothing here touches a backend.

use crate::channel::ChannelName;

/// What a webhook said happened to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    /// `channel_occupied`: the first subscriber arrived.
    Occupied,
    /// `channel_vacated`: the last subscriber left.
    Vacated,
}

/// One occupancy event, as a webhook reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The channel whose occupancy changed.
    pub channel: ChannelName,
    /// What happened.
    pub occupancy: Occupancy,
    /// When Pusher created the webhook (ms since the epoch): orders deliveries.
    pub time_ms: u64,
}

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The events that were applied, in order (the set now reflects them).
    pub applied: Vec<Event>,
    /// How many events were older than what the store already knew, or than the retention
    /// window, and so changed nothing.
    pub stale: usize,
}

/// What a reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Channels Pusher listed that the set lacked.
    pub added: Vec<String>,
    /// Channels the set held that Pusher did not list.
    pub removed: Vec<String>,
}

/// The channels that changed in one applied batch or repair, as watchers see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Channels that became occupied.
    pub occupied: Vec<String>,
    /// Channels that became vacant.
    pub vacated: Vec<String>,
}

impl ChangeBatch {
    /// The net changes of events applied in order: a channel named twice counts once, with its
    /// last state, so the batch means the same whichever list is applied first.
    pub fn of(events: &[Event]) -> Self {
        Self::from_states(
            events
                .iter()
                .map(|e| (e.channel.as_str(), e.occupancy == Occupancy::Occupied)),
        )
    }

    /// The net changes of `(channel, occupied)` states in order (later ones win).
    pub fn from_states<'a>(states: impl IntoIterator<Item = (&'a str, bool)>) -> Self {
        let mut last: Vec<(&str, bool)> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (channel, occupied) in states {
            match seen.get(channel) {
                Some(&index) => last[index] = (channel, occupied),
                None => {
                    seen.insert(channel, last.len());
                    last.push((channel, occupied));
                }
            }
        }
        let mut batch = Self::default();
        for (channel, occupied) in last {
            if occupied {
                batch.occupied.push(channel.to_owned());
            } else {
                batch.vacated.push(channel.to_owned());
            }
        }
        batch
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.occupied.is_empty() && self.vacated.is_empty()
    }
}

/// What a store tells its watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// These channels changed.
    Changes(ChangeBatch),
    /// Changes may have been missed (the feed between replicas broke): read the whole set again.
    Reset,
}

/// How many feed events a watcher may fall behind before it is resynchronised.
pub const WATCH_BUFFER: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_named_twice_in_a_batch_keeps_its_last_state() {
        let batch =
            ChangeBatch::from_states([("x", true), ("x", false), ("y", false), ("y", true)]);
        assert_eq!(batch.occupied, ["y"]);
        assert_eq!(batch.vacated, ["x"]);
    }
}
