//! Closed-loop load: `concurrency` workers, each sending its next request as soon as the last one
//! is answered, bounded both in time and in count, with every request's latency kept.
//!
//! Closed loop is what an encoder does (it waits for the answer before publishing), so requests/s
//! at concurrency 1 is the inverse of latency, and higher concurrency shows what overlapping buys.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

/// A request slower than this counts as failed: no load loop may hang on a lost answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// When a measurement stops: whichever bound comes first.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Wall-clock time for the whole measurement.
    pub duration: Duration,
    /// Requests across all workers.
    pub max_requests: u64,
}

/// What one measurement saw.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Requests answered successfully.
    pub requests: u64,
    /// Wall-clock time from the first request to the last answer.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Measured {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op(worker, i)` from `concurrency` workers within `bounds` and measures it. Any failed
/// or timed-out request fails the measurement, since a rate of errors means nothing.
pub async fn run<F, Fut>(concurrency: usize, bounds: Bounds, op: F) -> anyhow::Result<Measured>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let per_worker = (bounds.max_requests / concurrency as u64).max(1);
    let start = Instant::now();
    let deadline = start + bounds.duration;
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let op = op.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker.min(1 << 20) as usize);
            let mut i = 0;
            while i < per_worker && Instant::now() < deadline {
                let sent = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, op(worker, i)).await {
                    Ok(Ok(())) => latencies.push(sent.elapsed()),
                    Ok(Err(err)) => {
                        return Err(err.context(format!("worker {worker}, request {i}")));
                    }
                    Err(_) => {
                        bail!("worker {worker}, request {i}: no answer in {REQUEST_TIMEOUT:?}")
                    }
                }
                i += 1;
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = start.elapsed();
    if latencies.is_empty() {
        bail!("no request was answered");
    }
    latencies.sort_unstable();
    Ok(Measured {
        requests: latencies.len() as u64,
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    })
}

/// The `q` quantile of sorted, non-empty `sorted` (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds with three decimals, for tables.
pub fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1e3)
}
