//! This machine's wall clock, in the units Pusher uses: milliseconds for webhooks' `time_ms`,
//! seconds for the API's `auth_timestamp`.

use std::time::{SystemTime, UNIX_EPOCH};

/// How far ahead of this machine's clock a webhook's `time_ms` (or a reconciliation's
/// stamp) may be. Pusher's clock and ours
/// differ by little (its request signing already insists on NTP-grade clocks); a stamp further
/// ahead than this (a Pusher-compatible server whose clock runs fast) would make every real event
/// for its channels stale until the real clock caught up, so it is pulled back to this bound.
pub const MAX_FUTURE_MS: u64 = 60_000;

/// Milliseconds since the epoch. A clock before 1970 gives 0, which every caller treats as
/// "older than anything" rather than failing.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Seconds since the epoch (0 before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
