//! Answers from memory, coherent across replicas: two instances share one Redis; a webhook to
//! one is seen by the other's `IsOccupied` and by a watcher on the other; when the pub/sub feed
//! is killed, answers fall back to Redis and the copy resynchronises.

mod support;

use std::time::Duration;

use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::watch_occupancy_response::Kind;
use occupancy::proto::{IsOccupiedRequest, WatchOccupancyRequest};
use support::{Occupancy, RedisServer, eventually};
use tonic::transport::Channel;

fn redis_args(redis: &RedisServer) -> Vec<String> {
    vec!["--redis-url".into(), redis.url()]
}

async fn occupied(client: &mut OccupancyClient<Channel>, channel: &str) -> bool {
    client
        .is_occupied(IsOccupiedRequest {
            channel: channel.into(),
            ..Default::default()
        })
        .await
        .expect("IsOccupied")
        .into_inner()
        .occupied
}

async fn wait_for_memory(gate: &Occupancy) {
    gate.wait_feed_up(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_webhook_to_one_replica_is_seen_by_the_other_and_its_watchers() {
    let redis = RedisServer::start();
    let a = Occupancy::start(&redis_args(&redis));
    let b = Occupancy::start(&redis_args(&redis));
    wait_for_memory(&a).await;
    wait_for_memory(&b).await;
    let mut b_client = OccupancyClient::new(b.channel().await);
    let mut watch = b_client
        .watch_occupancy(WatchOccupancyRequest::default())
        .await
        .expect("watch")
        .into_inner();
    for expected in [Kind::Reset, Kind::Synced] {
        let message = watch.message().await.expect("healthy").expect("open");
        assert_eq!(message.kind, expected as i32);
    }

    let (status, _) = a.send_webhook(&[("channel_occupied", "shared-1")]).await;
    assert!(status.is_success());
    let change = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("the watcher on B sees A's webhook within 2 s")
        .expect("healthy")
        .expect("open");
    assert_eq!(change.kind, Kind::Change as i32);
    assert_eq!(change.occupied, ["shared-1"]);
    eventually(Duration::from_secs(2), "B answers occupied", || {
        let mut client = b_client.clone();
        async move { occupied(&mut client, "shared-1").await }
    })
    .await;

    a.send_webhook(&[("channel_vacated", "shared-1")]).await;
    eventually(Duration::from_secs(2), "B answers vacant", || {
        let mut client = b_client.clone();
        async move { !occupied(&mut client, "shared-1").await }
    })
    .await;
}

#[tokio::test]
async fn a_killed_feed_falls_back_to_redis_and_resynchronises() {
    let redis = RedisServer::start();
    let gate = Occupancy::start(&redis_args(&redis));
    wait_for_memory(&gate).await;
    let mut client = OccupancyClient::new(gate.channel().await);

    // Break the feed, then change the set behind the gate's back: only a read from Redis (while
    // the feed is down) or a reload (once it is back) can see it.
    let mut direct = redis.connection().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut direct)
        .await
        .expect("CLIENT KILL");
    assert!(killed >= 1, "the gate had a pub/sub connection");
    let _: i64 = redis::cmd("SADD")
        .arg(&["pusher:channels", "behind-its-back"])
        .query_async(&mut direct)
        .await
        .expect("SADD");
    eventually(
        Duration::from_secs(5),
        "the gate sees the direct change",
        || {
            let mut client = client.clone();
            async move { occupied(&mut client, "behind-its-back").await }
        },
    )
    .await;
    let breaks = gate.metric("occupancy_feed_breaks_total", &[]).await;
    assert!(breaks >= 1.0, "the change feed broke: {breaks}");

    // Once the feed is back the copy is current again and answers from memory.
    gate.admin()
        .metric_becomes(
            "occupancy_feed_follows_total",
            &[],
            Duration::from_secs(10),
            "the feed is followed again",
            |follows| follows >= 2.0,
        )
        .await;
    gate.wait_feed_up(Duration::from_secs(10)).await;
    assert!(occupied(&mut client, "behind-its-back").await);
    gate.send_webhook(&[("channel_vacated", "behind-its-back")])
        .await;
    assert!(!occupied(&mut client, "behind-its-back").await);
}
