//! Prometheus metrics, served as text at `GET /metrics` on the admin listener.
//!
//! One process-wide set, as with any metrics facade: the webhook listener, the gate, the store
//! and the Pusher client each count what they see without threading a handle through every
//! call. Names follow Prometheus conventions (`occupancy_` prefix, `_total` counters, `_seconds`
//! histograms); the README lists them all.

use std::sync::LazyLock;
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

/// Every metric the service exports.
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
    /// superseded, published_store_down): skipped ones are Pusher calls saved.
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

impl Metrics {
    fn new() -> Self {
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
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
