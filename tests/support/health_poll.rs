//! Asking a running gate's gRPC health service (`grpc.health.v1`), and waiting, bounded, for a
//! status: the one poll the fault, outage, TLS and Sentinel tests share.
// Every test crate compiles the support module; only some of them poll health.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The gate's own service name in the health service ("" asks about the whole server).
pub const GATE: &str = "occupancy.v1.Occupancy";

/// The status number `service` reports now (1 `SERVING`, 2 `NOT_SERVING`), or `None` when the
/// health service cannot be asked.
pub async fn status(health: &HealthClient<Channel>, service: &str) -> Option<i32> {
    health
        .clone()
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// Polls `service` every 50 ms until it reports `wanted`; fails after `within`, naming the last
/// status seen.
pub async fn becomes(health: &HealthClient<Channel>, service: &str, wanted: i32, within: Duration) {
    let start = Instant::now();
    loop {
        let now = status(health, service).await;
        if now == Some(wanted) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "health of {service:?} is {now:?}, not {wanted}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
