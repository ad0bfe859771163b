//! Redis going away and coming back: health, webhooks and the gate must all say so truthfully,
//! change nothing while it is down, and recover without a restart of the service.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::in_process::InProcess;
use support::{PusherStub, RedisServer};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

async fn health_is(health: &HealthClient<Channel>, wanted: i32) {
    for service in ["", support::health_poll::GATE] {
        support::health_poll::becomes(health, service, wanted, Duration::from_secs(10)).await;
    }
}

async fn is_occupied(
    gate: &OccupancyClient<Channel>,
    channel: &str,
) -> Result<bool, tonic::Status> {
    gate.clone()
        .is_occupied(IsOccupiedRequest {
            channel: channel.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().occupied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_reported_everywhere_and_recovery_needs_no_restart() {
    let stub = PusherStub::start().await;
    let mut redis = RedisServer::start();
    let service = InProcess::start(&[
        "--redis-url".into(),
        redis.url(),
        "--pusher-api-url".into(),
        stub.url(),
        "--redis-timeout".into(),
        "300ms".into(),
        "--publish-when-store-down".into(),
        "none".into(),
    ])
    .await;
    let channel = service.channel().await;
    let gate = OccupancyClient::new(channel.clone());
    let health = HealthClient::new(channel);

    health_is(&health, SERVING).await;
    assert_eq!(
        service
            .send_webhook(&[("channel_occupied", "before")])
            .await
            .0,
        StatusCode::OK
    );

    redis.stop();
    health_is(&health, NOT_SERVING).await;
    let (status, body) = service
        .send_webhook(&[("channel_occupied", "during")])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unavailable")),
        "{body}"
    );
    let err = is_occupied(&gate, "before")
        .await
        .expect_err("store is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = gate
        .clone()
        .publish_if_occupied(occupancy::proto::PublishIfOccupiedRequest {
            channels: vec!["before".into()],
            event: "e".into(),
            data: "d".into(),
            socket_id: String::new(),
            ..Default::default()
        })
        .await
        .expect_err("store is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        stub.calls().is_empty(),
        "nothing published while the gate cannot tell"
    );

    // A restarted Redis (no persistence here) comes back empty; the service reconnects by itself.
    redis.restart();
    health_is(&health, SERVING).await;
    support::eventually(
        Duration::from_secs(10),
        "webhooks accepted again",
        || async {
            service
                .send_webhook(&[("channel_occupied", "after")])
                .await
                .0
                == StatusCode::OK
        },
    )
    .await;
    assert!(is_occupied(&gate, "after").await.expect("gate answers"));
    assert!(
        !is_occupied(&gate, "during").await.expect("gate answers"),
        "the 503 applied nothing"
    );
    assert_eq!(redis.members("pusher:channels").await, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_redis_is_down_and_serves_once_it_is_up() {
    let stub = PusherStub::start().await;
    let mut redis = RedisServer::start();
    redis.stop();
    let service = InProcess::start(&[
        "--redis-url".into(),
        redis.url(),
        "--pusher-api-url".into(),
        stub.url(),
    ])
    .await;
    let channel = service.channel().await;
    let health = HealthClient::new(channel.clone());
    health_is(&health, NOT_SERVING).await;
    let err = is_occupied(&OccupancyClient::new(channel.clone()), "x")
        .await
        .expect_err("no store yet");
    assert_eq!(err.code(), Code::Unavailable);

    redis.restart();
    health_is(&health, SERVING).await;
    assert!(
        !is_occupied(&OccupancyClient::new(channel), "x")
            .await
            .expect("answers")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_type_is_internal_not_unavailable() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg("not-a-set")
        .arg("oops")
        .query_async(&mut redis.connection().await)
        .await
        .expect("SET");
    let service = InProcess::start(&[
        "--redis-url".into(),
        redis.url(),
        "--redis-key".into(),
        "not-a-set".into(),
        "--pusher-api-url".into(),
        stub.url(),
    ])
    .await;
    let gate = OccupancyClient::new(service.channel().await);
    let err = is_occupied(&gate, "x").await.expect_err("WRONGTYPE");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    let (status, _) = service.send_webhook(&[("channel_occupied", "x")]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn by_default_a_publish_while_the_store_is_down_goes_to_every_channel() {
    let stub = PusherStub::start().await;
    let mut redis = RedisServer::start();
    let service = InProcess::start(&[
        "--redis-url".into(),
        redis.url(),
        "--pusher-api-url".into(),
        stub.url(),
        "--redis-timeout".into(),
        "300ms".into(),
    ])
    .await;
    let channel = service.channel().await;
    let health = HealthClient::new(channel.clone());
    health_is(&health, SERVING).await;
    redis.stop();
    health_is(&health, NOT_SERVING).await;

    let answer = OccupancyClient::new(channel)
        .publish_if_occupied(occupancy::proto::PublishIfOccupiedRequest {
            channels: vec!["down-1".into(), "down-2".into()],
            event: "progress".into(),
            data: "{}".into(),
            ..Default::default()
        })
        .await
        .expect("published although the store is down")
        .into_inner();
    assert!(answer.store_unavailable);
    assert_eq!(answer.published, ["down-1", "down-2"]);
    assert!(answer.skipped.is_empty());
    let calls = stub.calls_for("down-1");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].body["channels"],
        serde_json::json!(["down-1", "down-2"])
    );
    assert_eq!(
        service
            .admin()
            .metric("occupancy_publish_store_down_total", &[])
            .await,
        1.0,
        "the fallback is counted"
    );
}
