//! State read from the service itself, the way an operator's monitoring reads it: samples of
//! `GET /metrics` and the status of `GET /readyz` on the admin listener. Tests assert on these
//! rather than on the log's wording. The same [`Admin`] reads a service started as a process
//! ([`Occupancy`]) or in the test's own process ([`InProcess`]): each service has its own
//! metrics, so two in one test binary do not count into each other's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Occupancy;
use super::in_process::InProcess;

/// The sum of the samples of metric `name` (exactly, as rendered, `_total` included) whose
/// labels include every one of `labels` (`key="value"` as rendered); 0 when there are none.
pub fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|label| rest.contains(label)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The text of `GET /metrics` at `admin` (empty when it cannot be fetched).
pub async fn metrics_at(admin: SocketAddr) -> String {
    match reqwest::get(format!("http://{admin}/metrics")).await {
        Ok(answer) => answer.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The admin listener of one service, read as monitoring reads it.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub SocketAddr);

impl Occupancy {
    /// This service's admin listener.
    pub fn admin(&self) -> Admin {
        Admin(self.admin_addr)
    }

    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.admin().metrics_text().await
    }

    /// The value of one metric (see [`sample`]).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.admin().metric(name, labels).await
    }

    /// See [`Admin::wait_feed_up`].
    pub async fn wait_feed_up(&self, within: Duration) {
        self.admin().wait_feed_up(within).await;
    }

    /// See [`Admin::feed_node`].
    pub async fn feed_node(&self) -> Option<String> {
        self.admin().feed_node().await
    }

    /// See [`Admin::readyz`].
    pub async fn readyz(&self) -> u16 {
        self.admin().readyz().await
    }
}

impl InProcess {
    /// This service's admin listener.
    pub fn admin(&self) -> Admin {
        Admin(self.admin_addr)
    }
}

impl Admin {
    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        metrics_at(self.0).await
    }

    /// The value of one metric (see [`sample`]).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        sample(&self.metrics_text().await, name, labels)
    }

    /// Waits up to `within` for metric `name` with `labels` to satisfy `holds`; the failure
    /// names `what` and shows the metrics.
    pub async fn metric_becomes(
        &self,
        name: &str,
        labels: &[&str],
        within: Duration,
        what: &str,
        holds: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let text = self.metrics_text().await;
            let value = sample(&text, name, labels);
            if holds(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {name}{labels:?} is {value} after {within:?}; metrics:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until answers come from the local copy kept by the change feed
    /// (`occupancy_feed_up 1`).
    pub async fn wait_feed_up(&self, within: Duration) {
        self.metric_becomes(
            "occupancy_feed_up",
            &[],
            within,
            "the change feed is followed",
            |v| v == 1.0,
        )
        .await;
    }

    /// The Redis node whose change feed is followed now (`occupancy_feed_node{node=…} 1`).
    pub async fn feed_node(&self) -> Option<String> {
        self.metrics_text()
            .await
            .lines()
            .filter(|line| line.starts_with("occupancy_feed_node{") && line.ends_with(" 1"))
            .find_map(|line| {
                let start = line.find("node=\"")? + "node=\"".len();
                let end = start + line[start..].find('"')?;
                Some(line[start..end].to_owned())
            })
    }

    /// The status `GET /readyz` answers (0 when it cannot be fetched).
    pub async fn readyz(&self) -> u16 {
        match reqwest::get(format!("http://{}/readyz", self.0)).await {
            Ok(answer) => answer.status().as_u16(),
            Err(_) => 0,
        }
    }
}
