//! Coalesced publishing against the real binary and the signature-checking Pusher stand-in: at
//! most one Pusher call per interval per channel and event, the latest data winning, the last
//! update always delivered, held updates sent on shutdown.

mod support;

use std::time::{Duration, Instant};

use occupancy::proto::PublishIfOccupiedRequest;
use occupancy::proto::PublishIfOccupiedResponse;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::{Occupancy, PusherStub, eventually};
use tonic::Code;
use tonic::transport::Channel;

async fn publish(
    client: &mut OccupancyClient<Channel>,
    channel: &str,
    data: &str,
    coalesce_ms: u32,
) -> Result<PublishIfOccupiedResponse, tonic::Status> {
    client
        .publish_if_occupied(PublishIfOccupiedRequest {
            channels: vec![channel.into()],
            event: "progress".into(),
            data: data.into(),
            coalesce_ms,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

fn sent_data(stub: &PusherStub, channel: &str) -> Vec<String> {
    stub.calls_for(channel)
        .iter()
        .map(|c| c.body["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn gate_with_watched(channel: &str) -> (PusherStub, Occupancy, OccupancyClient<Channel>) {
    let stub = PusherStub::start().await;
    let gate = Occupancy::start(&["--pusher-api-url".into(), stub.url()]);
    let (status, _) = gate.send_webhook(&[("channel_occupied", channel)]).await;
    assert!(status.is_success());
    let client = OccupancyClient::new(gate.channel().await);
    (stub, gate, client)
}

#[tokio::test]
async fn the_first_goes_now_the_latest_held_one_follows_and_the_rest_are_superseded() {
    let (stub, _gate, mut client) = gate_with_watched("job-c1").await;
    let first = publish(&mut client, "job-c1", "10%", 400)
        .await
        .expect("publish");
    assert_eq!(first.published, ["job-c1"]);
    assert!(first.deferred.is_empty());

    let second = publish(&mut client, "job-c1", "20%", 400)
        .await
        .expect("publish");
    assert!(second.published.is_empty());
    assert_eq!(second.deferred, ["job-c1"]);
    assert_eq!(second.superseded, 0);
    let third = publish(&mut client, "job-c1", "30%", 400)
        .await
        .expect("publish");
    assert_eq!(third.deferred, ["job-c1"]);
    assert_eq!(third.superseded, 1, "30% replaced the held 20%");

    eventually(Duration::from_secs(3), "the held update is sent", || {
        let n = stub.calls_for("job-c1").len();
        async move { n >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sent_data(&stub, "job-c1"), ["10%", "30%"]);
    assert!(stub.calls().iter().all(|c| c.signature_valid));

    // A quiet key sends at once again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = publish(&mut client, "job-c1", "40%", 400)
        .await
        .expect("publish");
    assert_eq!(later.published, ["job-c1"]);
}

#[tokio::test]
async fn at_most_one_call_per_interval_and_the_last_update_always_arrives() {
    let (stub, _gate, mut client) = gate_with_watched("job-c2").await;
    let interval = Duration::from_millis(250);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        sent += 1;
        publish(&mut client, "job-c2", &format!("{sent}"), 250)
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let last = format!("{sent}");
    eventually(
        Duration::from_secs(3),
        "the last update is delivered",
        || {
            let data = sent_data(&stub, "job-c2");
            let last = last.clone();
            async move { data.last() == Some(&last) }
        },
    )
    .await;
    let calls = stub.calls_for("job-c2").len();
    let allowed = (elapsed.as_millis() / interval.as_millis()) as usize + 2;
    assert!(
        calls <= allowed,
        "{calls} Pusher calls for {sent} updates over {elapsed:?} at one per {interval:?}"
    );
    assert!(calls >= 2, "{calls}");
}

#[tokio::test]
async fn held_updates_are_sent_on_shutdown_and_bad_intervals_are_refused() {
    let (stub, gate, mut client) = gate_with_watched("job-c3").await;
    publish(&mut client, "job-c3", "first", 30_000)
        .await
        .expect("publish");
    let held = publish(&mut client, "job-c3", "last", 30_000)
        .await
        .expect("publish");
    assert_eq!(held.deferred, ["job-c3"]);

    let status = publish(&mut client, "job-c3", "x", 60_001)
        .await
        .expect_err("too long an interval");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("coalesce_ms"), "{status:?}");

    let exit = tokio::task::spawn_blocking(move || gate.terminate("TERM"))
        .await
        .expect("join");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(sent_data(&stub, "job-c3"), ["first", "last"]);
}
