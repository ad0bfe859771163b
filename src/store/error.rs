//! Why a store could not answer, sorted into "retry later" and "an operator must look".

/// Why the store could not answer. Kept apart so callers can tell "retry later" from "an operator
/// must look", which map to different gRPC statuses and HTTP codes. The source is kept for the
/// log; callers show only the short message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached right now (refused, dropped, timed out, loading, read-only
    /// replica). Retrying later is the right answer, so webhooks get 503 and the gate
    /// `UNAVAILABLE`.
    #[error("occupancy store unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    /// The store answered, but with an error that retrying will not fix (for example the key
    /// holds something other than a set).
    #[error("occupancy store failed")]
    Failed(#[source] ::redis::RedisError),
    /// The store answered something this service does not understand.
    #[error("occupancy store answered unexpectedly: {0}")]
    Unexpected(&'static str),
}

impl StoreError {
    /// Whether retrying later can succeed. The one decision behind both answers to a store
    /// failure: `UNAVAILABLE` on the gate and 503 on webhooks when true (Pusher retries for five
    /// minutes), `INTERNAL` and 500 when an operator must look.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
