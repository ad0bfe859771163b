//! Turning gRPC requests into checked values, so nothing invalid reaches the store or Pusher and
//! the caller learns which field was wrong (`INVALID_ARGUMENT`, message naming the field).

use crate::channel::ChannelName;
use crate::proto::{IsOccupiedRequest, PublishIfOccupiedRequest};

/// Pusher accepts at most this many channels in one trigger.
pub const MAX_CHANNELS: usize = 100;
/// The longest event name Pusher's SDKs accept.
pub const MAX_EVENT_NAME_LEN: usize = 200;
/// The largest `data` Pusher accepts in one event (10 KB).
pub const MAX_DATA_BYTES: usize = 10 * 1024;

/// The longest coalescing interval a caller may ask for.
pub const MAX_COALESCE_MS: u64 = 60_000;

/// A request field that failed validation; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field, as named in the proto (with an index for repeated fields).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidField {
    InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A checked `IsOccupied` request.
pub fn is_occupied(request: IsOccupiedRequest) -> Result<ChannelName, InvalidField> {
    ChannelName::parse(request.channel).map_err(|e| invalid("channel", e.to_string()))
}

/// A checked `WatchOccupancy` prefix: empty, or the start of a channel name.
pub fn watch_prefix(prefix: String) -> Result<String, InvalidField> {
    if prefix.is_empty() {
        return Ok(prefix);
    }
    ChannelName::parse(prefix)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| invalid("channel_prefix", e.to_string()))
}

/// A checked `PublishIfOccupied` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Distinct channels, in the order first given.
    pub channels: Vec<ChannelName>,
    /// The Pusher event name.
    pub event: String,
    /// The event's data, verbatim.
    pub data: String,
    /// The connection to exclude, if any.
    pub socket_id: Option<String>,
    /// The coalescing interval, when asked for.
    pub coalesce: Option<std::time::Duration>,
}

/// Checks every field of a `PublishIfOccupied` request.
pub fn publish(request: PublishIfOccupiedRequest) -> Result<Publish, InvalidField> {
    if request.channels.is_empty() {
        return Err(invalid("channels", "at least one channel is required"));
    }
    if request.channels.len() > MAX_CHANNELS {
        return Err(invalid(
            "channels",
            format!(
                "{} channels given; at most {MAX_CHANNELS} per call",
                request.channels.len()
            ),
        ));
    }
    let mut channels: Vec<ChannelName> = Vec::with_capacity(request.channels.len());
    for (index, name) in request.channels.into_iter().enumerate() {
        let channel = ChannelName::parse(name)
            .map_err(|e| invalid(format!("channels[{index}]"), e.to_string()))?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }

    let event_len = request.event.chars().count();
    if event_len == 0 {
        return Err(invalid("event", "event name is empty"));
    }
    if event_len > MAX_EVENT_NAME_LEN {
        return Err(invalid(
            "event",
            format!("event name is {event_len} characters long; the limit is {MAX_EVENT_NAME_LEN}"),
        ));
    }
    if request.data.len() > MAX_DATA_BYTES {
        return Err(invalid(
            "data",
            format!(
                "data is {} bytes; Pusher accepts at most {MAX_DATA_BYTES}",
                request.data.len()
            ),
        ));
    }
    let socket_id = match request.socket_id.as_str() {
        "" => None,
        id if is_socket_id(id) => Some(request.socket_id),
        _ => {
            return Err(invalid(
                "socket_id",
                "not a Pusher socket id (digits, a dot, digits, e.g. 123.456)",
            ));
        }
    };
    let coalesce = match request.coalesce_ms {
        0 => None,
        ms if u64::from(ms) > MAX_COALESCE_MS => {
            return Err(invalid(
                "coalesce_ms",
                format!("{ms} ms asked; at most {MAX_COALESCE_MS}"),
            ));
        }
        ms => Some(std::time::Duration::from_millis(u64::from(ms))),
    };
    Ok(Publish {
        channels,
        event: request.event,
        data: request.data,
        socket_id,
        coalesce,
    })
}

/// Pusher socket ids look like `123.456`; Pusher rejects anything else with 400.
fn is_socket_id(id: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.split_once('.')
        .is_some_and(|(a, b)| all_digits(a) && all_digits(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        channels: &[&str],
        event: &str,
        data: &str,
        socket_id: &str,
    ) -> PublishIfOccupiedRequest {
        PublishIfOccupiedRequest {
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            event: event.into(),
            data: data.into(),
            socket_id: socket_id.into(),
            ..Default::default()
        }
    }

    fn field_of(result: Result<Publish, InvalidField>) -> String {
        result.expect_err("should be rejected").field
    }

    #[test]
    fn accepts_a_good_request_and_drops_duplicate_channels() {
        let checked = publish(request(&["a", "b", "a"], "progress", "{}", "1.2")).expect("valid");
        let names: Vec<&str> = checked.channels.iter().map(ChannelName::as_str).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(checked.socket_id.as_deref(), Some("1.2"));
        let checked = publish(request(&["a"], "e", "", "")).expect("valid");
        assert_eq!(checked.socket_id, None);
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        assert_eq!(field_of(publish(request(&[], "e", "", ""))), "channels");
        let many: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(field_of(publish(request(&many, "e", "", ""))), "channels");
        assert_eq!(
            field_of(publish(request(&["ok", "bad one"], "e", "", ""))),
            "channels[1]"
        );
        assert_eq!(field_of(publish(request(&["a"], "", "", ""))), "event");
        let long_event = "e".repeat(MAX_EVENT_NAME_LEN + 1);
        assert_eq!(
            field_of(publish(request(&["a"], &long_event, "", ""))),
            "event"
        );
        let big = "x".repeat(MAX_DATA_BYTES + 1);
        assert_eq!(field_of(publish(request(&["a"], "e", &big, ""))), "data");
        for bad in ["1", "a.b", "1.", ".1", "1.2.3", "1.2 "] {
            assert_eq!(
                field_of(publish(request(&["a"], "e", "", bad))),
                "socket_id",
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let many: Vec<String> = (0..MAX_CHANNELS).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let event = "e".repeat(MAX_EVENT_NAME_LEN);
        let data = "x".repeat(MAX_DATA_BYTES);
        assert!(publish(request(&many, &event, &data, "")).is_ok());
    }
}
