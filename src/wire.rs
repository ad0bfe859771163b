//! Pusher's wire formats, for programs that play Pusher or its users: signing a webhook as
//! Pusher signs it, signing an API request as an official server SDK does, and the limits the
//! gate applies to what it receives.

pub use crate::gate::watch::SNAPSHOT_STALL;
pub use crate::pusher::signing::{
    sign as sign_api_request, sign_with as sign_api_request_with, signed_query, string_to_sign,
};
pub use crate::service::servers::GRPC_MAX_MESSAGE_BYTES;
pub use crate::store::{HEARTBEAT, STALENESS_BOUND};
pub use crate::webhook::{WEBHOOK_PATH, sign as sign_webhook};
