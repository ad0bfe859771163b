//! The bodies of `POST /apps/{id}/events` and `/batch_events`: checked as Pusher checks them,
//! split by occupancy, rebuilt with only the channels that pass, and the answers merged back.
//!
//! A body is read as an ordered list of fields whose values stay raw JSON text
//! ([`serde_json::value::RawValue`]): `data` is never decoded and re-encoded (on a
//! `private-encrypted-` channel it is ciphertext the gate cannot and must not touch), so the
//! body sent upstream differs from the one received only in its channel list.

use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::channel::ChannelName;

/// Pusher accepts at most this many channels in one trigger.
pub const MAX_CHANNELS: usize = crate::gate::request::MAX_CHANNELS;
/// The longest event name the SDKs and Pusher accept.
pub const MAX_EVENT_NAME_LEN: usize = crate::gate::request::MAX_EVENT_NAME_LEN;
/// Pusher's own limit on one batch; larger batches go upstream in chunks of this size.
pub const BATCH_CHUNK: usize = 10;
/// The most events one batch request may hold here (ten upstream calls).
pub const MAX_BATCH_EVENTS: usize = 100;

/// Why a body was refused: 400 or 413 with a plain-text reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Malformed or invalid: 400.
    #[error("{0}")]
    Invalid(String),
    /// `data` over the limit: 413.
    #[error("{0}")]
    TooLarge(String),
}

fn invalid(reason: impl Into<String>) -> BodyError {
    BodyError::Invalid(reason.into())
}

/// A JSON object's fields in their order, values as raw text.
#[derive(Debug)]
pub struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    // Two readers of one body must not see two different events.
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("duplicate field {key:?}")));
                    }
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

impl Fields {
    /// Reads a JSON object; anything else is a 400.
    pub fn parse(json: &[u8]) -> Result<Self, BodyError> {
        serde_json::from_slice(json).map_err(|e| invalid(format!("Invalid JSON body: {e}")))
    }

    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| &**v)
    }

    /// The object again, its channel field (`channels` or `channel`) replaced by a `channels`
    /// array of `channels`; every other field byte for byte.
    pub fn with_channels(&self, channels: &[&str]) -> Vec<u8> {
        let mut out = String::from("{");
        let mut placed = false;
        for (key, value) in &self.0 {
            let (key, value) = if key == "channels" || key == "channel" {
                if placed {
                    continue;
                }
                placed = true;
                ("channels", json!(channels).to_string())
            } else {
                (key.as_str(), value.get().to_owned())
            };
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&json!(key).to_string());
            out.push(':');
            out.push_str(&value);
        }
        out.push('}');
        out.into_bytes()
    }
}

/// How a channel is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Published only if occupied.
    Gated(ChannelName),
    /// Always published: `#server-to-user-*` (no occupancy webhooks exist for it) and cache
    /// channels (Pusher replays their last event to the next subscriber).
    Always(String),
}

impl Channel {
    /// The name as requested.
    pub fn name(&self) -> &str {
        match self {
            Self::Gated(name) => name.as_str(),
            Self::Always(name) => name,
        }
    }
}

/// The cache channel prefixes: their last event is kept for the next subscriber.
const CACHE_PREFIXES: [&str; 4] = [
    "cache-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-cache-",
];

/// Checks a requested channel name and says how it is gated.
pub fn channel(name: String) -> Result<Channel, String> {
    if name.starts_with("#server-to-user-") {
        return ChannelName::from_webhook(name.clone())
            .map(|_| Channel::Always(name))
            .map_err(|e| e.to_string());
    }
    let checked = ChannelName::parse(name).map_err(|e| e.to_string())?;
    if CACHE_PREFIXES
        .iter()
        .any(|p| checked.as_str().starts_with(p))
    {
        Ok(Channel::Always(checked.as_str().to_owned()))
    } else {
        Ok(Channel::Gated(checked))
    }
}

/// The `info` attributes asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// `subscription_count`.
    pub subscription_count: bool,
    /// `user_count` (presence channels only).
    pub user_count: bool,
}

impl Info {
    /// Whether any attribute was asked for.
    pub fn any(self) -> bool {
        self.subscription_count || self.user_count
    }

    /// What Pusher would say about a channel nobody is subscribed to.
    pub fn vacant(self, channel: &str) -> Value {
        let mut entry = Map::new();
        if self.subscription_count {
            entry.insert("subscription_count".into(), json!(0));
        }
        if self.user_count && channel.starts_with("presence-") {
            entry.insert("user_count".into(), json!(0));
        }
        Value::Object(entry)
    }
}

/// One checked event.
#[derive(Debug)]
pub struct Event {
    /// The body's fields, untouched.
    pub fields: Fields,
    /// The requested channels, in order.
    pub channels: Vec<Channel>,
    /// What `info` asked for.
    pub info: Info,
}

fn string(fields: &Fields, name: &str) -> Result<Option<String>, BodyError> {
    fields
        .get(name)
        .map(|raw| {
            serde_json::from_str::<String>(raw.get())
                .map_err(|_| invalid(format!("Expected {name} parameter to be a string")))
        })
        .transpose()
}

/// Checks one event (a trigger's body, or one entry of a batch, where `in_batch` allows only a
/// single `channel`).
pub fn event(fields: Fields, max_data_bytes: usize, in_batch: bool) -> Result<Event, BodyError> {
    let name = string(&fields, "name")?
        .ok_or_else(|| invalid("Expected name parameter to be a string"))?;
    if name.is_empty() {
        return Err(invalid("Event name must not be empty"));
    }
    let name_len = name.chars().count();
    if name_len > MAX_EVENT_NAME_LEN {
        return Err(invalid(format!(
            "Event name is too long ({name_len} characters; the limit is {MAX_EVENT_NAME_LEN})"
        )));
    }
    // Decoded only to measure it; what goes upstream is the raw text.
    let data = string(&fields, "data")?
        .ok_or_else(|| invalid("Expected data parameter to be a string"))?;
    if data.len() > max_data_bytes {
        return Err(BodyError::TooLarge(format!(
            "The data content of this event exceeds the allowed maximum ({max_data_bytes} bytes)"
        )));
    }
    let names: Vec<String> = match (fields.get("channels"), fields.get("channel")) {
        (Some(_), Some(_)) => return Err(invalid("Give channels or channel, not both")),
        (Some(_), None) if in_batch => {
            return Err(invalid("A batch event takes one channel parameter"));
        }
        (Some(raw), None) => serde_json::from_str(raw.get())
            .map_err(|_| invalid("Expected channels parameter to be an array of strings"))?,
        (None, Some(_)) => vec![string(&fields, "channel")?.unwrap_or_default()],
        (None, None) => return Err(invalid("Missing channels parameter")),
    };
    if names.is_empty() || names.len() > MAX_CHANNELS {
        return Err(invalid(format!(
            "Expected between 1 and {MAX_CHANNELS} channels, got {}",
            names.len()
        )));
    }
    let channels = names
        .into_iter()
        .enumerate()
        .map(|(index, name)| {
            channel(name).map_err(|e| invalid(format!("Invalid channel {}: {e}", index + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(raw) = fields.get("socket_id")
        && serde_json::from_str::<String>(raw.get()).is_err()
    {
        return Err(invalid("Expected socket_id parameter to be a string"));
    }
    let info = match string(&fields, "info")? {
        None => Info::default(),
        Some(text) => {
            let wanted: Vec<&str> = text.split(',').map(str::trim).collect();
            Info {
                subscription_count: wanted.contains(&"subscription_count"),
                user_count: wanted.contains(&"user_count"),
            }
        }
    };
    Ok(Event {
        fields,
        channels,
        info,
    })
}

/// Checks a batch body: `{"batch": [event, ...]}` of 1 to [`MAX_BATCH_EVENTS`] events. Each
/// event comes back with its raw text, which is what goes upstream.
pub fn batch(body: &[u8], max_data_bytes: usize) -> Result<Vec<(Box<RawValue>, Event)>, BodyError> {
    let fields = Fields::parse(body)?;
    let raw = fields
        .get("batch")
        .ok_or_else(|| invalid("Missing batch parameter"))?;
    let events: Vec<Box<RawValue>> = serde_json::from_str(raw.get())
        .map_err(|_| invalid("Expected batch parameter to be an array of events"))?;
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(invalid(format!(
            "Expected between 1 and {MAX_BATCH_EVENTS} events in the batch, got {}",
            events.len()
        )));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let fields = Fields::parse(raw.get().as_bytes())?;
            let event = event(fields, max_data_bytes, true).map_err(|e| match e {
                BodyError::Invalid(r) => invalid(format!("Batch event {}: {r}", index + 1)),
                BodyError::TooLarge(r) => {
                    BodyError::TooLarge(format!("Batch event {}: {r}", index + 1))
                }
            })?;
            Ok((raw, event))
        })
        .collect()
}

/// A batch body of these raw events.
pub fn batch_body(events: &[&RawValue]) -> Vec<u8> {
    let parts: Vec<&str> = events.iter().map(|e| e.get()).collect();
    format!("{{\"batch\":[{}]}}", parts.join(",")).into_bytes()
}

/// The `/events` answer with `info`: Pusher's entries for the forwarded channels (from
/// `upstream`, when it answered) and vacant ones for the dropped channels.
pub fn trigger_answer(upstream: Option<&[u8]>, dropped: &[&str], info: Info) -> Vec<u8> {
    let mut answer = upstream
        .and_then(|body| serde_json::from_slice::<Value>(body).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(object) = answer.as_object_mut() {
        let channels = object
            .entry("channels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(channels) = channels.as_object_mut() {
            for channel in dropped {
                channels
                    .entry(channel.to_string())
                    .or_insert_with(|| info.vacant(channel));
            }
        }
    }
    answer.to_string().into_bytes()
}

/// The entries of a `{"batch": [...]}` answer, or `None` if it is not one of `len` entries.
pub fn batch_entries(body: &[u8], len: usize) -> Option<Vec<Value>> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let entries = answer.get("batch")?.as_array()?;
    (entries.len() == len).then(|| entries.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilding_keeps_every_other_field_byte_for_byte() {
        let body = br#"{"name":"e","data":"{\"nonce\":\"a+/=\",\"ciphertext\":\"\u00e9x\"}","channels":["a","b","c"],"socket_id":"1.2","extra":[1, 2]}"#;
        let fields = Fields::parse(body).expect("object");
        let rebuilt = fields.with_channels(&["a", "c"]);
        assert_eq!(
            String::from_utf8(rebuilt).expect("utf-8"),
            r#"{"name":"e","data":"{\"nonce\":\"a+/=\",\"ciphertext\":\"\u00e9x\"}","channels":["a","c"],"socket_id":"1.2","extra":[1, 2]}"#
        );
        let single = Fields::parse(br#"{"channel":"a","name":"e","data":"x"}"#).expect("object");
        assert_eq!(
            single.with_channels(&["a"]),
            br#"{"channels":["a"],"name":"e","data":"x"}"#
        );
    }

    #[test]
    fn events_are_checked_as_pusher_checks_them() {
        let check = |body: &str| event(Fields::parse(body.as_bytes())?, 10, false);
        assert!(check(r#"{"name":"e","data":"0123456789","channels":["a"]}"#).is_ok());
        assert!(matches!(
            check(r#"{"name":"e","data":"0123456789x","channels":["a"]}"#),
            Err(BodyError::TooLarge(_))
        ));
        for body in [
            r#"{"name":"e","data":{},"channels":["a"]}"#,
            r#"{"name":1,"data":"","channels":["a"]}"#,
            r#"{"name":"e","data":"","channels":[]}"#,
            r#"{"name":"e","data":"","channels":["a b"]}"#,
            r#"{"name":"e","data":"","channel":"a","channels":["a"]}"#,
            r#"{"name":"e","data":"","channels":["a"],"name":"f"}"#,
            r#"{"name":"e","data":""}"#,
            "[1]",
            "{",
        ] {
            assert!(matches!(check(body), Err(BodyError::Invalid(_))), "{body}");
        }
        let long = format!(
            r#"{{"name":"{}","data":"","channels":["a"]}}"#,
            "n".repeat(201)
        );
        assert!(check(&long).is_err());
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let body = json!({"name": "e", "data": "", "channels": many}).to_string();
        assert!(check(&body).is_err());
    }

    #[test]
    fn cache_and_server_to_user_channels_always_pass() {
        for name in [
            "#server-to-user-42",
            "cache-a",
            "private-cache-a",
            "private-encrypted-cache-a",
            "presence-cache-a",
        ] {
            assert_eq!(channel(name.into()), Ok(Channel::Always(name.into())));
        }
        assert!(matches!(channel("private-a".into()), Ok(Channel::Gated(_))));
        assert!(channel("#other".into()).is_err());
    }

    #[test]
    fn info_answers_cover_every_requested_channel() {
        let info = Info {
            subscription_count: true,
            user_count: true,
        };
        let answer = trigger_answer(
            Some(br#"{"channels":{"a":{"subscription_count":3}}}"#),
            &["b", "presence-c"],
            info,
        );
        let answer: Value = serde_json::from_slice(&answer).expect("json");
        assert_eq!(
            answer,
            json!({"channels": {
                "a": {"subscription_count": 3},
                "b": {"subscription_count": 0},
                "presence-c": {"subscription_count": 0, "user_count": 0},
            }})
        );
    }
}
