//! Reading a webhook body into occupancy changes.
//!
//! Pusher posts `{"time_ms": <ms>, "events": [{"name": ..., "channel": ...}, ...]}`. Only
//! `channel_occupied` and `channel_vacated` matter here; every other kind (`member_added`,
//! `client_event`, `subscription_count`, `cache_miss`, kinds Pusher adds later) is accepted and
//! ignored, so enabling more webhooks in the dashboard never makes deliveries fail.

use serde::Deserialize;

use crate::channel::{ChannelName, ChannelNameError};
use crate::store::Change;

/// A webhook body, reduced to what the store needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// When Pusher created the webhook (ms since the epoch). All events in one request share it;
    /// it is what will order deliveries that arrive out of order.
    pub time_ms: u64,
    /// The occupancy changes, in the order Pusher listed them.
    pub changes: Vec<Change>,
    /// How many events were of other kinds.
    pub ignored: usize,
}

/// Why a body is not a webhook we can apply. Answered with 400: retrying the same body will not
/// help, and nothing is applied.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the shape Pusher sends.
    #[error("body is not a Pusher webhook: {0}")]
    Malformed(#[from] serde_json::Error),
    /// An occupancy event without a channel.
    #[error("event {index} ({name}) has no channel")]
    MissingChannel {
        /// Position of the event in `events`.
        index: usize,
        /// The event's name.
        name: String,
    },
    /// An occupancy event whose channel Pusher could not have sent.
    #[error("event {index} has an invalid channel: {source}")]
    BadChannel {
        /// Position of the event in `events`.
        index: usize,
        /// What is wrong with the name.
        source: ChannelNameError,
    },
}

#[derive(Deserialize)]
struct RawWebhook {
    time_ms: u64,
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    name: String,
    #[serde(default)]
    channel: Option<String>,
}

impl Batch {
    /// Parses a verified webhook body. Either the whole batch is valid or none of it is used.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let raw: RawWebhook = serde_json::from_slice(body)?;
        let mut changes = Vec::new();
        let mut ignored = 0;
        for (index, event) in raw.events.into_iter().enumerate() {
            let occupied = match event.name.as_str() {
                "channel_occupied" => true,
                "channel_vacated" => false,
                _ => {
                    ignored += 1;
                    continue;
                }
            };
            let channel = event.channel.ok_or_else(|| PayloadError::MissingChannel {
                index,
                name: event.name.clone(),
            })?;
            let channel = ChannelName::parse(channel)
                .map_err(|source| PayloadError::BadChannel { index, source })?;
            changes.push(Change { channel, occupied });
        }
        Ok(Self {
            time_ms: raw.time_ms,
            changes,
            ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(channel: &str, occupied: bool) -> Change {
        Change {
            channel: ChannelName::parse(channel).expect("valid test channel"),
            occupied,
        }
    }

    #[test]
    fn keeps_occupancy_events_in_order_and_counts_the_rest() {
        let body = br#"{"time_ms": 1700000000000, "events": [
            {"name": "channel_occupied", "channel": "a"},
            {"name": "member_added", "channel": "presence-a", "user_id": "7"},
            {"name": "channel_vacated", "channel": "b"},
            {"name": "client_event", "channel": "a", "event": "client-x", "data": "{}", "socket_id": "1.2"},
            {"name": "subscription_count", "channel": "a", "subscription_count": 3},
            {"name": "channel_occupied", "channel": "b"}
        ]}"#;
        let batch = Batch::parse(body).expect("valid webhook");
        assert_eq!(batch.time_ms, 1_700_000_000_000);
        assert_eq!(
            batch.changes,
            vec![change("a", true), change("b", false), change("b", true)]
        );
        assert_eq!(batch.ignored, 3);
    }

    #[test]
    fn rejects_bodies_that_are_not_webhooks() {
        for body in [
            &b"not json"[..],
            br#"{"events": []}"#,
            br#"{"time_ms": 1}"#,
            br#"{"time_ms": "soon", "events": []}"#,
            br#"{"time_ms": 1, "events": [{"channel": "a"}]}"#,
            br#"[]"#,
        ] {
            assert!(
                matches!(Batch::parse(body), Err(PayloadError::Malformed(_))),
                "accepted {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn rejects_the_whole_batch_for_one_bad_channel() {
        let body = br#"{"time_ms": 1, "events": [
            {"name": "channel_occupied", "channel": "ok"},
            {"name": "channel_vacated", "channel": "not ok"}
        ]}"#;
        assert!(matches!(
            Batch::parse(body),
            Err(PayloadError::BadChannel { index: 1, .. })
        ));
        let body = br#"{"time_ms": 1, "events": [{"name": "channel_occupied"}]}"#;
        assert!(matches!(
            Batch::parse(body),
            Err(PayloadError::MissingChannel { index: 0, .. })
        ));
    }
}
