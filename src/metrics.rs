//! Prometheus metrics, served as text at `GET /metrics` on the admin listener.
//!
//! One set per [`crate::service::Service`], made by its composition root and handed to each
//! part that counts (the listeners, the gate, the stores' connection and feed, the Pusher
//! client, reconciliation), as linkerd2-proxy hands out its metrics. Not a process-wide static:
//! two services in one process (tests start several in one binary) each count only their own
//! traffic, so `/metrics` says what that service did. Names follow Prometheus conventions
//! (`occupancy_` prefix, `_total` counters, `_seconds` histograms); the README lists them all.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A metric's labels: a few fixed names with values from a small known set (or app ids).
pub type Labels = Vec<(&'static str, String)>;

type Counters = Family<Labels, Counter>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric one service exports; shared by its parts as an `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    /// Webhook requests, by `outcome`.
    pub webhook_requests: Counters,
    /// Webhook events, by `app`, `kind` (occupied, vacated, other) and `effect` (applied,
    /// stale, ignored, invalid).
    pub webhook_events: Counters,
    /// `IsOccupied` answers, by `app` and `answer` (occupied, vacant).
    pub gate_checks: Counters,
    /// Channels asked to publish to, by `app` and `outcome` (published, skipped, deferred,
    /// superseded, published_store_down, held_retried): skipped ones are Pusher calls saved;
    /// held_retried counts held updates sent again after a send that may pass failed.
    pub publish_channels: Counters,
    /// Pusher API requests, by `endpoint` (events, channels) and `status` (HTTP code, timeout,
    /// unreachable).
    pub pusher_requests: Counters,
    /// Pusher API request latency, by `endpoint`.
    pub pusher_duration: Histograms,
    /// Store errors, by `kind` (unavailable, failed).
    pub store_errors: Counters,
    /// Redis round-trip latency.
    pub store_duration: Histograms,
    /// Reconcile repairs, by `app` and `change` (added, removed).
    pub reconcile_repairs: Counters,
    /// Open `WatchOccupancy` streams.
    pub watch_streams: Gauge,
    /// 1 while answers come from the local copy kept by the change feed.
    pub feed_up: Gauge,
    /// `PublishIfOccupied` calls answered by publishing to every requested channel because the
    /// store could not be asked (`--publish-when-store-down all`), by `app`.
    pub publish_store_down: Counters,
    /// Webhooks stamped ahead of this clock whose time was bounded, by `app`.
    pub webhook_future_bounded: Counters,
    /// Redis connections replaced, by `reason` (`read_only`: a demoted primary answered
    /// READONLY; `timeouts`, `failures`: several in a row).
    pub store_reconnects: Counters,
    /// Reconcile rounds started, by `trigger` (`start`, `interval`, `recovered`: the store came
    /// back from an outage).
    pub reconcile_triggers: Counters,
    /// Reconcile rounds of one app, by `app` and `result` (`repaired`, `clean`,
    /// `locked_elsewhere`: another replica holds this interval's lock, `store_unavailable`,
    /// `listing_failed`, `listing_refused`: too large, not a listing or an invalid name, and
    /// nothing changed; `unconfirmed`: the second listing failed or was refused, so additions
    /// stand and nothing was removed; `failed`).
    pub reconcile_rounds: Counters,
    /// Times the change feed was established (re-established after a break counts again).
    pub feed_follows: Counter,
    /// Times the change feed broke after it had been established.
    pub feed_breaks: Counter,
    /// 1 for the Redis node whose change feed is followed (`node`); none while not following.
    pub feed_node: Family<Labels, Gauge>,
    /// Webhook body bytes reserved from the shared buffer budget right now.
    pub webhook_buffered_bytes: Gauge,
    /// Connections closed at once because a listener was at its cap, by `listener` (webhook,
    /// pusher_api, grpc).
    pub connections_refused: Counters,
    /// 1 when gRPC listens beyond loopback with no way to tell callers apart (no tokens, no
    /// client certificates): anyone who reaches the port can publish.
    pub grpc_insecure: Gauge,
    /// gRPC requests failed before their handler saw them, by `reason` (buffer_budget,
    /// no_token, unknown_token).
    pub grpc_requests_refused: Counters,
    /// Requests to the Pusher API listener, by `endpoint` (events, batch_events, channels,
    /// users, other) and `outcome` (forwarded, dropped, upstream_error, unreachable, timeout,
    /// unauthorized, bad_request, too_large, unknown_app, ...).
    pub pusher_api_requests: Counters,
    /// Times this replica found that Redis lost an app's data (restarted empty, flushed, failed
    /// over to a replica that lacked it).
    pub store_data_loss: Counter,
    /// Local copies read again while the feed stayed up or came back, by `reason` (gap,
    /// regression, epoch, repaired, reconnect).
    pub feed_resyncs: Counters,
}

fn latency() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A new set, every counter at zero, registered under the `occupancy_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("occupancy");
        let metrics = Self {
            webhook_requests: Counters::default(),
            webhook_events: Counters::default(),
            gate_checks: Counters::default(),
            publish_channels: Counters::default(),
            pusher_requests: Counters::default(),
            pusher_duration: Histograms::new_with_constructor(latency),
            store_errors: Counters::default(),
            store_duration: Histograms::new_with_constructor(latency),
            reconcile_repairs: Counters::default(),
            watch_streams: Gauge::default(),
            feed_up: Gauge::default(),
            publish_store_down: Counters::default(),
            webhook_future_bounded: Counters::default(),
            store_reconnects: Counters::default(),
            reconcile_triggers: Counters::default(),
            reconcile_rounds: Counters::default(),
            feed_follows: Counter::default(),
            feed_breaks: Counter::default(),
            feed_node: Family::default(),
            webhook_buffered_bytes: Gauge::default(),
            connections_refused: Counters::default(),
            grpc_insecure: Gauge::default(),
            grpc_requests_refused: Counters::default(),
            pusher_api_requests: Counters::default(),
            store_data_loss: Counter::default(),
            feed_resyncs: Counters::default(),
            registry: Registry::default(),
        };
        registry.register(
            "webhook_requests",
            "Webhook requests by outcome",
            metrics.webhook_requests.clone(),
        );
        registry.register(
            "webhook_events",
            "Webhook events by kind and effect",
            metrics.webhook_events.clone(),
        );
        registry.register(
            "gate_checks",
            "IsOccupied answers",
            metrics.gate_checks.clone(),
        );
        registry.register(
            "publish_channels",
            "Channels asked to publish to, by outcome (skipped ones are Pusher calls saved)",
            metrics.publish_channels.clone(),
        );
        registry.register(
            "pusher_requests",
            "Pusher API requests by endpoint and status",
            metrics.pusher_requests.clone(),
        );
        registry.register_with_unit(
            "pusher_request_duration",
            "Pusher API request latency",
            prometheus_client::registry::Unit::Seconds,
            metrics.pusher_duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store errors by kind",
            metrics.store_errors.clone(),
        );
        registry.register_with_unit(
            "store_request_duration",
            "Redis round-trip latency",
            prometheus_client::registry::Unit::Seconds,
            metrics.store_duration.clone(),
        );
        registry.register(
            "reconcile_repairs",
            "Channels repaired from Pusher's list",
            metrics.reconcile_repairs.clone(),
        );
        registry.register(
            "watch_streams",
            "Open WatchOccupancy streams",
            metrics.watch_streams.clone(),
        );
        registry.register(
            "feed_up",
            "1 while answers come from the local copy",
            metrics.feed_up.clone(),
        );
        registry.register(
            "publish_store_down",
            "PublishIfOccupied calls that published to every channel because the store was down",
            metrics.publish_store_down.clone(),
        );
        registry.register(
            "webhook_future_bounded",
            "Webhooks stamped in the future whose time was bounded to this clock",
            metrics.webhook_future_bounded.clone(),
        );
        registry.register(
            "store_reconnects",
            "Redis connections replaced, by reason",
            metrics.store_reconnects.clone(),
        );
        registry.register(
            "reconcile_triggers",
            "Reconcile rounds started, by trigger",
            metrics.reconcile_triggers.clone(),
        );
        registry.register(
            "reconcile_rounds",
            "Reconcile rounds of one app, by result",
            metrics.reconcile_rounds.clone(),
        );
        registry.register(
            "feed_follows",
            "Times the change feed was established",
            metrics.feed_follows.clone(),
        );
        registry.register(
            "feed_breaks",
            "Times the change feed broke after being established",
            metrics.feed_breaks.clone(),
        );
        registry.register(
            "feed_node",
            "1 for the Redis node whose change feed is followed",
            metrics.feed_node.clone(),
        );
        registry.register(
            "webhook_buffered_bytes",
            "Webhook body bytes reserved from the shared buffer budget",
            metrics.webhook_buffered_bytes.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because the listener was at its cap",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "grpc_insecure",
            "1 when gRPC listens beyond loopback without tokens or client certificates",
            metrics.grpc_insecure.clone(),
        );
        registry.register(
            "grpc_requests_refused",
            "gRPC requests failed before their handler saw them, by reason",
            metrics.grpc_requests_refused.clone(),
        );
        registry.register(
            "pusher_api_requests",
            "Requests to the Pusher API listener by endpoint and outcome",
            metrics.pusher_api_requests.clone(),
        );
        registry.register(
            "store_data_loss",
            "Times Redis was found to have lost an app's data",
            metrics.store_data_loss.clone(),
        );
        registry.register(
            "feed_resyncs",
            "Local copies read again, by reason",
            metrics.feed_resyncs.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The counter of gRPC requests refused for `reason` before their handler saw them, for a
    /// part that counts only that one series.
    pub fn grpc_refused(&self, reason: &str) -> Counter {
        self.grpc_requests_refused
            .get_or_create(&vec![("reason", reason.to_owned())])
            .clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Adds `by` to the counter of `family` with `labels`.
pub fn count(family: &Counters, labels: &[(&'static str, &str)], by: u64) {
    if by > 0 {
        family
            .get_or_create(&labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
            .inc_by(by);
    }
}

/// Records `elapsed` in the histogram of `family` with `labels`.
pub fn observe(family: &Histograms, labels: &[(&'static str, &str)], elapsed: Duration) {
    family
        .get_or_create(&labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
        .observe(elapsed.as_secs_f64());
}
