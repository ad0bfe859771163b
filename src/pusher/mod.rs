//! Talking to Pusher Channels' HTTP API: request signing and the publisher that triggers events.

mod publisher;
pub mod signing;

pub use self::publisher::{
    ListingError, MAX_LISTING_BYTES, PublishError, Publisher, PublisherConfig, cluster_url,
    error_chain,
};
