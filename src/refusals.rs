//! Warnings about refused peers, at most one line per period, each with the count it stands for.
//!
//! A peer that is refused (over a connection cap, over the webhook buffer budget, a body too
//! large or too slow) can make itself refused thousands of times a second; one log line each
//! would let it fill the disk and drown every other line. So the first refusal is logged at
//! once, and later ones only once the period has passed, saying how many were refused since the
//! last line. Exact counts are in `/metrics`; the log is for a human to notice.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often each kind of refusal may be logged.
pub const WARN_PERIOD: Duration = Duration::from_secs(10);

/// One kind of refusal and when it was last logged.
#[derive(Debug)]
pub struct Refusals {
    what: &'static str,
    period: Duration,
    /// When the last line was written, and refusals since then not yet logged.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Refusals {
    /// A kind of refusal described by `what` (the log message), logged at most once per
    /// `period`.
    pub const fn new(what: &'static str, period: Duration) -> Self {
        Self {
            what,
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one refusal; logs a warning with the number refused since the last line if
    /// `period` has passed since it. `detail` says why (a limit, a peer address).
    pub fn record(&self, detail: &dyn std::fmt::Display) {
        let refused = {
            // A poisoned lock only means another thread panicked mid-count: keep counting.
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.1 += 1;
            match state.0 {
                Some(logged) if logged.elapsed() < self.period => return,
                _ => {}
            }
            let refused = state.1;
            *state = (Some(Instant::now()), 0);
            refused
        };
        tracing::warn!(refused, period = ?self.period, "{}: {detail}", self.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_between_lines_and_starts_again_after_each() {
        let refusals = Refusals::new("refused", Duration::from_millis(50));
        refusals.record(&"first");
        for _ in 0..5 {
            refusals.record(&"held back");
        }
        assert_eq!(refusals.state.lock().expect("lock").1, 5);
        std::thread::sleep(Duration::from_millis(60));
        refusals.record(&"logged with the five before it");
        assert_eq!(refusals.state.lock().expect("lock").1, 0);
    }
}
