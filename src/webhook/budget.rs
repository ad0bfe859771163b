//! The bytes of webhook bodies buffered at once, across every connection.
//!
//! A per-request limit alone does not bound memory: the app key is public (every browser has
//! it), so 800 connections that send it with 512 KiB of body each and then stall took the
//! process from 11 MB to 434 MB RSS, over the 256 MiB a Kubernetes pod is typically given. Each
//! request therefore reserves, before a byte of its body is read, as many bytes as it may buffer
//! (its `Content-Length`, or the per-request limit when it sends none) from one budget shared by
//! all connections. A request that finds the budget spent is answered 503 at once and its
//! connection closed: nothing of it was buffered, and Pusher retries a 503 for five minutes. The
//! reservation is returned when the request's handler finishes, whatever its answer.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest budget (and per-request limit) that can be reserved at once.
pub const MAX_BUDGET_BYTES: usize = u32::MAX as usize;

/// The shared budget of body bytes.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    /// The service's `webhook_buffered_bytes` gauge: bytes reserved right now.
    reserved: Gauge,
}

/// Bytes reserved for one request's body; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
    reserved: Gauge,
}

impl BodyBudget {
    /// A budget of `total` bytes (at most [`MAX_BUDGET_BYTES`]; the configuration checks it),
    /// whose reservations are shown on the `reserved` gauge.
    pub fn new(total: usize, reserved: Gauge) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(total.min(MAX_BUDGET_BYTES))),
            reserved,
        }
    }

    /// Reserves `bytes` for one body, or `None` if fewer than that are left. Never waits: a
    /// request queued for memory would hold its connection, which is what the budget prevents.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let wanted = u32::try_from(bytes).ok()?;
        let permit = self.bytes.clone().try_acquire_many_owned(wanted).ok()?;
        self.reserved.inc_by(bytes as i64);
        Some(Reservation {
            _permit: permit,
            bytes,
            reserved: self.reserved.clone(),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved.dec_by(self.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_past_the_budget_are_refused_until_one_is_returned() {
        let reserved = Gauge::default();
        let budget = BodyBudget::new(100, reserved.clone());
        let first = budget.try_reserve(60).expect("fits");
        assert_eq!(reserved.get(), 60, "the gauge shows what is reserved");
        assert!(budget.try_reserve(41).is_none(), "over the budget");
        let second = budget.try_reserve(40).expect("exactly fills it");
        assert!(budget.try_reserve(1).is_none());
        drop(first);
        assert!(budget.try_reserve(60).is_some(), "returned on drop");
        drop(second);
        assert_eq!(reserved.get(), 0, "and what is returned");
        assert!(
            budget.try_reserve(0).is_some(),
            "an empty body needs nothing"
        );
    }
}
