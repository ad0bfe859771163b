//! Operating the service: Prometheus metrics and HTTP probes on the admin listener, and drains
//! that turn health off first, finish in-flight work, never hang on open streams, and give way
//! to a second signal.

mod support;

use std::time::Duration;

use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::{IsOccupiedRequest, PublishIfOccupiedRequest};
use support::{KEY, Occupancy, PusherStub, post_signed};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The value of the sample whose line starts with `prefix` (name and labels as rendered).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test]
async fn metrics_count_what_happened_and_probes_answer() {
    let stub = PusherStub::start().await;
    let gate = Occupancy::start(&["--pusher-api-url".into(), stub.url()]);
    let (status, _) = get(&format!("{}/livez", gate.admin_url())).await;
    assert_eq!(status, 200);
    support::eventually(Duration::from_secs(5), "ready", || async {
        get(&format!("{}/readyz", gate.admin_url())).await.0 == 200
    })
    .await;

    gate.send_webhook(&[
        ("channel_occupied", "m-1"),
        ("channel_vacated", "m-2"),
        ("member_added", "presence-x"),
    ])
    .await;
    post_signed(&gate.webhook_url(), KEY, "wrong-secret", "{}").await;
    let mut client = OccupancyClient::new(gate.channel().await);
    for channel in ["m-1", "m-2", "m-3"] {
        client
            .is_occupied(IsOccupiedRequest {
                channel: channel.into(),
                ..Default::default()
            })
            .await
            .expect("IsOccupied");
    }
    client
        .publish_if_occupied(PublishIfOccupiedRequest {
            channels: vec!["m-1".into(), "m-2".into(), "m-3".into()],
            event: "progress".into(),
            data: "{}".into(),
            ..Default::default()
        })
        .await
        .expect("publish");

    let (status, text) = get(&format!("{}/metrics", gate.admin_url())).await;
    assert_eq!(status, 200);
    let expect = |name: &str, labels: &[&str], value: f64| {
        assert_eq!(
            sample(&text, name, labels),
            value,
            "{name} {labels:?} in:\n{text}"
        );
    };
    expect(
        "occupancy_webhook_requests_total",
        &["outcome=\"applied\""],
        1.0,
    );
    expect(
        "occupancy_webhook_requests_total",
        &["outcome=\"bad_signature\""],
        1.0,
    );
    expect(
        "occupancy_webhook_events_total",
        &["kind=\"occupied\"", "effect=\"applied\""],
        1.0,
    );
    expect(
        "occupancy_webhook_events_total",
        &["kind=\"vacated\"", "effect=\"applied\""],
        1.0,
    );
    expect(
        "occupancy_webhook_events_total",
        &["effect=\"ignored\""],
        1.0,
    );
    expect("occupancy_gate_checks_total", &["answer=\"occupied\""], 1.0);
    expect("occupancy_gate_checks_total", &["answer=\"vacant\""], 2.0);
    expect(
        "occupancy_publish_channels_total",
        &["outcome=\"published\""],
        1.0,
    );
    expect(
        "occupancy_publish_channels_total",
        &["outcome=\"skipped\""],
        2.0,
    );
    expect(
        "occupancy_pusher_requests_total",
        &["endpoint=\"events\"", "status=\"200\""],
        1.0,
    );
    expect(
        "occupancy_pusher_request_duration_seconds_count",
        &["endpoint=\"events\""],
        1.0,
    );
    expect("occupancy_watch_streams", &[], 0.0);
    assert!(text.contains("# TYPE occupancy_feed_up gauge"), "{text}");
    assert!(!text.contains(support::SECRET));
}

#[tokio::test]
async fn a_drain_turns_health_off_first_and_does_not_wait_for_open_streams() {
    let gate = Occupancy::start(&[
        "--drain-delay".into(),
        "1500ms".into(),
        "--drain-timeout".into(),
        "1s".into(),
    ]);
    let channel = gate.channel().await;
    let mut health = HealthClient::new(channel.clone());
    support::health_poll::becomes(
        &health,
        "",
        ServingStatus::Serving as i32,
        Duration::from_secs(5),
    )
    .await;
    // A Health/Watch stream never ends by itself; it must not hold the exit.
    let mut watch = health
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("first status");

    gate.signal("TERM");
    // NOT_SERVING during the drain delay.
    support::health_poll::becomes(
        &health,
        "",
        ServingStatus::NotServing as i32,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(get(&format!("{}/readyz", gate.admin_url())).await.0, 503);
    // Still answering while the balancer takes it out.
    let answer = OccupancyClient::new(channel)
        .is_occupied(IsOccupiedRequest {
            channel: "during-drain".into(),
            ..Default::default()
        })
        .await;
    assert!(answer.is_ok(), "{answer:?}");

    let (status, took) =
        tokio::task::spawn_blocking(move || gate.wait_exit(Duration::from_secs(8)))
            .await
            .expect("join");
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?} with a stream open"
    );
    drop(watch);
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let gate = Occupancy::start(&["--drain-delay".into(), "30s".into()]);
        gate.signal(signal);
        std::thread::sleep(Duration::from_millis(200));
        gate.signal(signal);
        let (status, took) = gate.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(code), "SIG{signal} twice");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
