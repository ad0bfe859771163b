//! Reading a webhook body into occupancy events.
//!
//! Pusher posts `{"time_ms": <ms>, "events": [{"name": ..., "channel": ...}, ...]}`. Only
//! `channel_occupied` and `channel_vacated` matter here; every other kind (`member_added`,
//! `client_event`, `subscription_count`, `cache_miss`, kinds Pusher adds later) is accepted and
//! ignored, so enabling more webhooks in the dashboard never makes deliveries fail. An occupancy
//! event whose channel the gate cannot use is counted as invalid and skipped: rejecting the
//! batch would make Pusher retry it for five minutes and then drop the good events with it.

use serde::Deserialize;

use crate::channel::ChannelName;
use crate::clock::MAX_FUTURE_MS;
use crate::store::{Event, Occupancy};

/// A webhook body, reduced to what the store needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// When Pusher created the webhook (ms since the epoch). All events in one request share it;
    /// it orders deliveries that arrive out of order.
    pub time_ms: u64,
    /// The occupancy events, in the order Pusher listed them.
    pub events: Vec<Event>,
    /// How many events were of other kinds.
    pub ignored: usize,
    /// How many occupancy events had a missing or unusable channel.
    pub invalid: usize,
}

/// Why a body is not a webhook at all. Answered with 400: retrying the same body will not help,
/// and nothing is applied.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the shape Pusher sends.
    #[error("body is not a Pusher webhook: {0}")]
    Malformed(#[from] serde_json::Error),
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
    channel: Option<serde_json::Value>,
}

impl Batch {
    /// Pulls a `time_ms` too far ahead of `now_ms` back to [`MAX_FUTURE_MS`] ahead, so a fast
    /// clock can pin a channel for at most that long. True when it did.
    pub fn bound_future(&mut self, now_ms: u64) -> bool {
        let limit = now_ms.saturating_add(MAX_FUTURE_MS);
        if self.time_ms <= limit {
            return false;
        }
        self.time_ms = limit;
        for event in &mut self.events {
            event.time_ms = limit;
        }
        true
    }

    /// Parses a verified webhook body.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let raw: RawWebhook = serde_json::from_slice(body)?;
        let mut batch = Batch {
            time_ms: raw.time_ms,
            events: Vec::new(),
            ignored: 0,
            invalid: 0,
        };
        for (index, event) in raw.events.into_iter().enumerate() {
            let occupancy = match event.name.as_str() {
                "channel_occupied" => Occupancy::Occupied,
                "channel_vacated" => Occupancy::Vacated,
                _ => {
                    batch.ignored += 1;
                    continue;
                }
            };
            let channel = match event.channel {
                Some(serde_json::Value::String(name)) => {
                    ChannelName::from_webhook(name).map_err(|e| e.to_string())
                }
                Some(_) => Err("channel is not a string".to_owned()),
                None => Err("no channel".to_owned()),
            };
            match channel {
                Ok(channel) => batch.events.push(Event {
                    channel,
                    occupancy,
                    time_ms: raw.time_ms,
                }),
                Err(reason) => {
                    tracing::debug!(index, %reason, "webhook event skipped: unusable channel");
                    batch.invalid += 1;
                }
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(channel: &str, occupancy: Occupancy) -> Event {
        Event {
            channel: ChannelName::from_webhook(channel).expect("valid test channel"),
            occupancy,
            time_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn keeps_occupancy_events_in_order_and_counts_the_rest() {
        let body = br##"{"time_ms": 1700000000000, "events": [
            {"name": "channel_occupied", "channel": "a"},
            {"name": "member_added", "channel": "presence-a", "user_id": "7"},
            {"name": "channel_vacated", "channel": "b"},
            {"name": "client_event", "channel": "a", "event": "client-x", "data": "{}", "socket_id": "1.2"},
            {"name": "subscription_count", "channel": "a", "subscription_count": 3},
            {"name": "channel_occupied", "channel": "#server-to-user-1"}
        ]}"##;
        let batch = Batch::parse(body).expect("valid webhook");
        assert_eq!(batch.time_ms, 1_700_000_000_000);
        assert_eq!(
            batch.events,
            vec![
                event("a", Occupancy::Occupied),
                event("b", Occupancy::Vacated),
                event("#server-to-user-1", Occupancy::Occupied)
            ]
        );
        assert_eq!((batch.ignored, batch.invalid), (3, 0));
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
    fn a_stamp_far_in_the_future_is_pulled_back_to_the_bound() {
        let body =
            br#"{"time_ms": 10000000, "events": [{"name": "channel_occupied", "channel": "a"}]}"#;
        let mut batch = Batch::parse(body).expect("a webhook");
        assert!(!batch.bound_future(10_000_000 - MAX_FUTURE_MS));
        assert!(batch.bound_future(1_000));
        assert_eq!(batch.time_ms, 1_000 + MAX_FUTURE_MS);
        assert_eq!(batch.events[0].time_ms, 1_000 + MAX_FUTURE_MS);
    }

    #[test]
    fn skips_unusable_channels_and_keeps_the_rest() {
        let long = "a".repeat(201);
        let body = format!(
            r#"{{"time_ms": 1, "events": [
            {{"name": "channel_occupied", "channel": "ok"}},
            {{"name": "channel_vacated", "channel": "not ok"}},
            {{"name": "channel_vacated", "channel": 7}},
            {{"name": "channel_occupied"}},
            {{"name": "channel_occupied", "channel": "{long}"}}
        ]}}"#
        );
        let batch = Batch::parse(body.as_bytes()).expect("a webhook");
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.invalid, 4);
    }
}
