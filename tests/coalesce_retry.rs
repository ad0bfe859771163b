//! Coalescing keeps its promise when Pusher fails, against the service started in-process and the
//! signature-checking stand-in: a held update whose send fails (503, 429) is sent again until
//! Pusher recovers, a newer update replacing it meanwhile; held updates of one publish go out
//! together, one call for up to 100 channels.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::{PublishIfOccupiedRequest, PublishIfOccupiedResponse};
use support::{Behaviour, InProcess, PusherStub, eventually};
use tonic::transport::Channel;

async fn publish(
    client: &mut OccupancyClient<Channel>,
    channels: &[String],
    data: &str,
    coalesce_ms: u32,
) -> PublishIfOccupiedResponse {
    client
        .publish_if_occupied(PublishIfOccupiedRequest {
            channels: channels.to_vec(),
            event: "progress".into(),
            data: data.into(),
            coalesce_ms,
            ..Default::default()
        })
        .await
        .expect("publish")
        .into_inner()
}

fn sent_data(stub: &PusherStub, channel: &str) -> Vec<String> {
    stub.calls_for(channel)
        .iter()
        .map(|c| c.body["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn failing(status: StatusCode) -> Behaviour {
    Behaviour {
        status,
        body: r#"{"error":"try later"}"#.into(),
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn a_held_update_that_fails_is_sent_again_and_arrives_once_pusher_recovers() {
    let stub = PusherStub::start().await;
    let gate = InProcess::start(&["--pusher-api-url".into(), stub.url()]).await;
    let (status, _) = gate.send_webhook(&[("channel_occupied", "job-r1")]).await;
    assert!(status.is_success());
    let mut client = OccupancyClient::new(gate.channel().await);
    let channel = vec!["job-r1".to_owned()];

    let first = publish(&mut client, &channel, "10%", 200).await;
    assert_eq!(first.published, channel);
    stub.set_behaviour(failing(StatusCode::SERVICE_UNAVAILABLE));
    let held = publish(&mut client, &channel, "20%", 200).await;
    assert_eq!(held.deferred, channel);
    // Sent when the interval ends, refused, and sent again.
    eventually(
        Duration::from_secs(5),
        "the held 20% is tried twice",
        || {
            let tries = sent_data(&stub, "job-r1")
                .iter()
                .filter(|d| *d == "20%")
                .count();
            async move { tries >= 2 }
        },
    )
    .await;
    // A newer update replaces the failing one; 429 is worth retrying too.
    stub.set_behaviour(failing(StatusCode::TOO_MANY_REQUESTS));
    publish(&mut client, &channel, "30%", 200).await;
    eventually(Duration::from_secs(5), "the held 30% is tried", || {
        let data = sent_data(&stub, "job-r1");
        async move { data.iter().any(|d| d == "30%") }
    })
    .await;

    stub.set_behaviour(Behaviour::default());
    let before = stub.calls_for("job-r1").len();
    eventually(
        Duration::from_secs(12),
        "the held update is sent after Pusher recovers",
        || {
            let n = stub.calls_for("job-r1").len();
            async move { n > before }
        },
    )
    .await;
    // Delivered: no more attempts, and nothing older than 30% was sent after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let data = sent_data(&stub, "job-r1");
    assert_eq!(data.len(), before + 1, "sent once after recovery: {data:?}");
    assert_eq!(data.last().map(String::as_str), Some("30%"), "{data:?}");
    let first_30 = data.iter().position(|d| d == "30%").expect("30% sent");
    assert!(
        data[first_30..].iter().all(|d| d == "30%"),
        "the replaced 20% was not sent after 30%: {data:?}"
    );
    assert!(stub.calls().iter().all(|c| c.signature_valid));
}

#[tokio::test]
async fn held_updates_of_one_publish_go_out_in_one_call_of_up_to_100_channels() {
    let stub = PusherStub::start().await;
    let gate = InProcess::start(&["--pusher-api-url".into(), stub.url()]).await;
    let channels: Vec<String> = (0..100).map(|i| format!("job-b{i}")).collect();
    for part in channels.chunks(50) {
        let events: Vec<(&str, &str)> = part
            .iter()
            .map(|c| ("channel_occupied", c.as_str()))
            .collect();
        let (status, _) = gate.send_webhook(&events).await;
        assert!(status.is_success());
    }
    let mut client = OccupancyClient::new(gate.channel().await);
    let first = publish(&mut client, &channels, "1", 300).await;
    assert_eq!(first.published.len(), 100);
    let held = publish(&mut client, &channels, "2", 300).await;
    assert_eq!(held.deferred.len(), 100);
    eventually(Duration::from_secs(5), "the held updates are sent", || {
        let n = stub.calls().len();
        async move { n >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let calls = stub.calls();
    assert_eq!(calls.len(), 2, "one call now, one for the 100 held updates");
    let mut named: Vec<String> = calls[1].body["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    named.sort();
    let mut expected = channels.clone();
    expected.sort();
    assert_eq!(named, expected);
    assert_eq!(calls[1].body["data"], "2");
}
