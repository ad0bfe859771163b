//! Pusher channel names, checked once at the edge.
//!
//! Pusher documents a channel name as at most 164 characters of `A-Z a-z 0-9 _ - = @ , . ;`
//! (its SDKs allow 200 and one API page is stricter; we follow the channels guide). Checking here
//! means a name that Pusher would reject never reaches the store or the HTTP API, and the caller
//! learns which name was wrong instead of getting an opaque failure later.

use std::fmt;

/// The longest channel name Pusher accepts.
pub const MAX_CHANNEL_NAME_LEN: usize = 164;

/// The longest channel name taken from a webhook (what Pusher's SDKs and soketi allow).
pub const MAX_WEBHOOK_CHANNEL_NAME_LEN: usize = 200;

/// Why a string is not a valid channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// Pusher has no channel with an empty name.
    #[error("channel name is empty")]
    Empty,
    /// Longer than [`MAX_CHANNEL_NAME_LEN`].
    #[error("channel name is {0} characters long; the limit is {MAX_CHANNEL_NAME_LEN}")]
    TooLong(usize),
    /// Holds a character outside `A-Z a-z 0-9 _ - = @ , . ;`.
    #[error("channel name contains {0:?}; allowed are A-Z a-z 0-9 and _ - = @ , . ;")]
    BadCharacter(char),
}

/// A channel name that Pusher would accept. Holding one proves the check was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

impl ChannelName {
    /// Checks `name` against Pusher's rules.
    pub fn parse(name: impl Into<String>) -> Result<Self, ChannelNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        // All allowed characters are ASCII, so a byte count is a character count once the
        // characters are known to be allowed; check characters first so a long name full of
        // multi-byte characters reports the character, not a misleading length.
        if let Some(bad) = name.chars().find(|c| !is_allowed(*c)) {
            return Err(ChannelNameError::BadCharacter(bad));
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong(name.len()));
        }
        Ok(Self(name))
    }

    /// Checks a name that came in a webhook, which is wider than what the gate accepts from
    /// encoders: Pusher's own `#server-to-user-<id>` channels start with `#`, and
    /// Pusher-protocol servers such as soketi allow names up to 200 characters. Refusing them
    /// would cost the whole batch they arrive in.
    pub fn from_webhook(name: impl Into<String>) -> Result<Self, ChannelNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if let Some(bad) = name.chars().find(|c| !is_allowed(*c) && *c != '#') {
            return Err(ChannelNameError::BadCharacter(bad));
        }
        if name.len() > MAX_WEBHOOK_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong(name.len()));
        }
        Ok(Self(name))
    }

    /// The name as Pusher and the store spell it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character_and_common_prefixes() {
        for name in [
            "a",
            "private-job-42",
            "presence-room",
            "private-encrypted-x",
            "cache-x",
            "A-Za-z0-9_-=@,.;",
        ] {
            assert_eq!(ChannelName::parse(name).map(|c| c.0), Ok(name.to_owned()));
        }
    }

    #[test]
    fn webhooks_may_name_server_to_user_channels_and_longer_names() {
        assert!(ChannelName::from_webhook("#server-to-user-1").is_ok());
        assert!(ChannelName::from_webhook("a".repeat(MAX_WEBHOOK_CHANNEL_NAME_LEN)).is_ok());
        assert!(ChannelName::from_webhook("a".repeat(MAX_WEBHOOK_CHANNEL_NAME_LEN + 1)).is_err());
        assert!(ChannelName::from_webhook("a b").is_err());
        assert!(ChannelName::from_webhook("").is_err());
    }

    #[test]
    fn accepts_exactly_the_length_limit() {
        let name = "a".repeat(MAX_CHANNEL_NAME_LEN);
        assert!(ChannelName::parse(name).is_ok());
    }

    #[test]
    fn rejects_too_long_empty_and_bad_characters() {
        assert_eq!(
            ChannelName::parse("a".repeat(MAX_CHANNEL_NAME_LEN + 1)),
            Err(ChannelNameError::TooLong(MAX_CHANNEL_NAME_LEN + 1))
        );
        assert_eq!(ChannelName::parse(""), Err(ChannelNameError::Empty));
        for (name, bad) in [
            ("bad channel", ' '),
            ("#reserved", '#'),
            ("a/b", '/'),
            ("é", 'é'),
            ("a:b", ':'),
        ] {
            assert_eq!(
                ChannelName::parse(name),
                Err(ChannelNameError::BadCharacter(bad))
            );
        }
    }
}
