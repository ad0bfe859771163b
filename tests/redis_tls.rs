//! TLS to Redis, against a real `redis-server` that listens only for TLS, with a certificate a
//! private CA signed: with `--redis-ca` the service connects, applies webhooks and answers; without
//! it the connection fails (health `NOT_SERVING`, webhooks 503) instead of going plaintext.

mod support;
#[path = "support/topology.rs"]
mod topology;

use std::time::Duration;

use axum::http::StatusCode;
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::in_process::InProcess;
use support::{PusherStub, TestPki, eventually, free_port};
use tonic_health::pb::health_client::HealthClient;
use topology::{Node, TempDir, require};

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

/// A `redis-server` with TLS only (`--port 0`). Fails, saying so, when Debian's build lacks TLS.
fn tls_redis(pki: &TestPki, dir: &TempDir) -> Node {
    require("redis-server", "redis-server");
    let port = free_port();
    let path = |p: &std::path::Path| p.display().to_string();
    let args: Vec<String> = [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        &path(&pki.server_cert),
        "--tls-key-file",
        &path(&pki.server_key),
        "--tls-ca-cert-file",
        &path(&pki.ca_cert),
        "--tls-auth-clients",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Node::spawn("redis-server", &args, port, dir.path())
}

async fn health_status(health: &HealthClient<tonic::transport::Channel>) -> Option<i32> {
    support::health_poll::status(health, support::health_poll::GATE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_works_and_without_it_fails_closed() {
    let pki = TestPki::create();
    let dir = TempDir::new("tls");
    let redis = tls_redis(&pki, &dir);
    let url = format!("rediss://127.0.0.1:{}/", redis.port);
    let stub = PusherStub::start().await;

    let trusted = InProcess::start(&[
        "--redis-url".into(),
        url.clone(),
        "--redis-ca".into(),
        pki.ca_cert.display().to_string(),
        "--pusher-api-url".into(),
        stub.url(),
    ])
    .await;
    let channel = trusted.channel().await;
    let health = HealthClient::new(channel.clone());
    eventually(Duration::from_secs(10), "SERVING over TLS", || {
        let health = health.clone();
        async move { health_status(&health).await == Some(SERVING) }
    })
    .await;
    let (status, body) = trusted
        .send_webhook(&[("channel_occupied", "over-tls")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = OccupancyClient::new(channel)
        .is_occupied(IsOccupiedRequest {
            channel: "over-tls".into(),
            ..Default::default()
        })
        .await
        .expect("IsOccupied over TLS")
        .into_inner();
    assert!(answer.occupied);
    // The set is really in that Redis, read by a client of our own over TLS.
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.ca_cert).expect("read the CA")),
        },
    )
    .expect("a TLS client");
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("pusher:channels")
        .query_async(
            &mut client
                .get_multiplexed_async_connection()
                .await
                .expect("connect over TLS"),
        )
        .await
        .expect("SMEMBERS");
    assert_eq!(members, ["over-tls"]);
    // The feed rides TLS too: answers come from memory.
    trusted.admin().wait_feed_up(Duration::from_secs(10)).await;

    // Without the CA the server's certificate is not trusted: no connection, and no fallback.
    let untrusted = InProcess::start(&[
        "--redis-url".into(),
        url,
        "--pusher-api-url".into(),
        stub.url(),
    ])
    .await;
    let health = HealthClient::new(untrusted.channel().await);
    eventually(
        Duration::from_secs(10),
        "NOT_SERVING without the CA",
        || {
            let health = health.clone();
            async move { health_status(&health).await == Some(NOT_SERVING) }
        },
    )
    .await;
    let (status, body) = untrusted
        .send_webhook(&[("channel_occupied", "must-not-land")])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        health_status(&health).await,
        Some(NOT_SERVING),
        "stays down"
    );
    let metrics = untrusted.admin().metrics_text().await;
    assert!(
        metrics.lines().any(|line| line == "occupancy_feed_up 0")
            && metrics
                .lines()
                .any(|line| line == "occupancy_feed_follows_total 0"),
        "no feed without trust:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_cluster_trusts_the_private_ca_on_every_node() {
    let pki = TestPki::create();
    let cluster = topology::Cluster::start_tls(&pki);
    let stub = PusherStub::start().await;
    let service = InProcess::start(&[
        "--redis-url".into(),
        cluster.url(),
        "--redis-ca".into(),
        pki.ca_cert.display().to_string(),
        "--pusher-api-url".into(),
        stub.url(),
    ])
    .await;
    let channel = service.channel().await;
    let health = HealthClient::new(channel.clone());
    eventually(Duration::from_secs(10), "SERVING over TLS", || {
        let health = health.clone();
        async move { health_status(&health).await == Some(SERVING) }
    })
    .await;
    let (status, body) = service
        .send_webhook(&[("channel_occupied", "cluster-over-tls")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        OccupancyClient::new(channel)
            .is_occupied(IsOccupiedRequest {
                channel: "cluster-over-tls".into(),
                ..Default::default()
            })
            .await
            .expect("IsOccupied")
            .into_inner()
            .occupied
    );
    let members = topology::smembers(&mut cluster.connection().await, "pusher:channels").await;
    assert_eq!(members, ["cluster-over-tls"]);
    service.admin().wait_feed_up(Duration::from_secs(10)).await;
}
