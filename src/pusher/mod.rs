//! Talking to Pusher Channels' HTTP API: request signing and the publisher that triggers events.

mod publisher;
pub mod signing;

pub(crate) use self::publisher::Upstream;
pub use self::publisher::{ListingError, PublishError, Publisher};
pub use crate::error_chain::error_chain;
