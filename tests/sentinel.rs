//! Redis Sentinel, with real processes: a password-protected primary and its replica, three
//! password-protected `redis-sentinel`s with a short `down-after-milliseconds`, and the service
//! on a `redis+sentinel://` URL listing the sentinels (with both passwords). Webhooks keep arriving while the primary is
//! killed; within a bound the sentinels promote the replica, the service finds it, webhooks
//! succeed again and land on the new primary, the feed follows it and health is `SERVING`.

mod support;
#[path = "support/topology.rs"]
mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::{Occupancy, PusherStub, eventually, free_port};
use tonic_health::pb::health_client::HealthClient;
use topology::{Node, TempDir, direct, require, smembers};

const PASSWORD: &str = "sentinel-test-pw-do-not-log";
const SENTINEL_PASSWORD: &str = "sentinel-own-pw-do-not-log";
const MASTER: &str = "occupancy-primary";
const SET: &str = "pusher:channels";
const SERVING: i32 = 1;
/// How long the whole failover may take, from the kill to a webhook applied on the new primary.
const FAILOVER_BOUND: Duration = Duration::from_secs(20);

fn sentinel(dir: &TempDir, primary_port: u16) -> Node {
    let port = free_port();
    let config = dir.path().join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &config,
        format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             requirepass {SENTINEL_PASSWORD}\n\
             sentinel sentinel-pass {SENTINEL_PASSWORD}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
             sentinel auth-pass {MASTER} {PASSWORD}\n\
             sentinel down-after-milliseconds {MASTER} 500\n\
             sentinel failover-timeout {MASTER} 3000\n\
             sentinel parallel-syncs {MASTER} 1\n"
        ),
    )
    .expect("write the sentinel's configuration");
    Node::spawn(
        "redis-sentinel",
        &[config.display().to_string()],
        port,
        dir.path(),
    )
}

/// `SENTINEL MASTER` as field -> value.
async fn sentinel_view(port: u16) -> std::collections::HashMap<String, String> {
    redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER)
        .query_async(&mut direct(port, Some(SENTINEL_PASSWORD)).await)
        .await
        .unwrap_or_default()
}

async fn health_status(health: &HealthClient<tonic::transport::Channel>) -> Option<i32> {
    support::health_poll::status(health, support::health_poll::GATE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_followed_without_a_restart() {
    require("redis-server", "redis-server");
    require("redis-sentinel", "redis-sentinel");
    let dir = TempDir::new("sentinel");
    let (primary_port, replica_port) = (free_port(), free_port());
    // No delay before a replica's first sync: the test must not kill the primary before it.
    let auth = [
        "--requirepass",
        PASSWORD,
        "--masterauth",
        PASSWORD,
        "--repl-diskless-sync-delay",
        "0",
    ];
    let mut primary = Node::redis(primary_port, dir.path(), &auth);
    let primary_addr = primary_port.to_string();
    let mut replica_args = auth.to_vec();
    replica_args.extend(["--replicaof", "127.0.0.1", &primary_addr]);
    let _replica = Node::redis(replica_port, dir.path(), &replica_args);
    let sentinels: Vec<Node> = (0..3).map(|_| sentinel(&dir, primary_port)).collect();

    // Failover needs a replica in sync, and sentinels that know it and each other.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let replication: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut direct(replica_port, Some(PASSWORD)).await)
            .await
            .unwrap_or_default();
        let mut ready = replication.contains("master_link_status:up");
        for s in &sentinels {
            let view = sentinel_view(s.port).await;
            ready &= view.get("num-slaves").map(String::as_str) == Some("1")
                && view.get("num-other-sentinels").map(String::as_str) == Some("2");
        }
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinels did not discover the replica and each other within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stub = PusherStub::start().await;
    let hosts: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url = format!(
        "redis+sentinel://:{PASSWORD}@{}/{MASTER}?sentinel_password={SENTINEL_PASSWORD}",
        hosts.join(",")
    );
    let service = Arc::new(Occupancy::start(&[
        "--redis-url".into(),
        url,
        "--pusher-api-url".into(),
        stub.url(),
        "--redis-timeout".into(),
        "300ms".into(),
    ]));
    let channel = service.channel().await;
    let health = HealthClient::new(channel.clone());
    let mut gate = OccupancyClient::new(channel);
    eventually(Duration::from_secs(10), "health SERVING", || {
        let health = health.clone();
        async move { health_status(&health).await == Some(SERVING) }
    })
    .await;
    assert_eq!(
        service
            .send_webhook(&[("channel_occupied", "before-failover")])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        smembers(&mut direct(primary_port, Some(PASSWORD)).await, SET).await,
        ["before-failover"],
        "the set is on the primary the sentinels named"
    );

    // Traffic all along: one webhook after another, each its own channel.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = tokio::spawn({
        let (service, stop, sent, failed) =
            (service.clone(), stop.clone(), sent.clone(), failed.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let name = format!("traffic-{n}");
                let (status, _) = tokio::time::timeout(
                    Duration::from_secs(5),
                    service.send_webhook(&[("channel_occupied", &name)]),
                )
                .await
                .unwrap_or((StatusCode::GATEWAY_TIMEOUT, serde_json::Value::Null));
                sent.fetch_add(1, Ordering::Relaxed);
                if status != StatusCode::OK {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed_at = Instant::now();
    primary.kill();
    // Webhooks fail while no primary is known, then succeed on the promoted replica.
    let mut recovered = None;
    while recovered.is_none() {
        assert!(
            killed_at.elapsed() < FAILOVER_BOUND,
            "webhooks did not succeed again within {FAILOVER_BOUND:?} of the kill; log:\n{}",
            service.log_text()
        );
        let (status, _) = service
            .send_webhook(&[("channel_occupied", "after-failover")])
            .await;
        if status == StatusCode::OK {
            recovered = Some(killed_at.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let recovered = recovered.unwrap_or_default();
    eprintln!(
        "webhooks succeeded again {recovered:?} after the primary was killed ({} of {} traffic \
         webhooks failed meanwhile)",
        failed.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed)
    );
    let view = sentinel_view(sentinels[0].port).await;
    assert_eq!(
        view.get("port").map(String::as_str),
        Some(replica_port.to_string().as_str()),
        "the sentinels promoted the replica: {view:?}"
    );
    let on_new_primary = smembers(&mut direct(replica_port, Some(PASSWORD)).await, SET).await;
    assert!(
        on_new_primary.contains(&"after-failover".to_owned())
            && on_new_primary.contains(&"before-failover".to_owned()),
        "the new primary holds the replicated set and the new webhook: {on_new_primary:?}"
    );

    // Traffic keeps succeeding on the new primary, and health says so.
    let failed_before = failed.load(Ordering::Relaxed);
    let sent_before = sent.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(5),
        "more traffic after recovery",
        || {
            let sent = sent.clone();
            async move { sent.load(Ordering::Relaxed) >= sent_before + 10 }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), traffic)
        .await
        .expect("the traffic stops")
        .expect("the traffic task did not panic");
    // At most the one webhook in flight when recovery was seen may still have failed.
    assert!(
        failed.load(Ordering::Relaxed) <= failed_before + 1,
        "traffic failed after recovery: {} failures after {failed_before}",
        failed.load(Ordering::Relaxed)
    );
    eventually(
        Duration::from_secs(5),
        "health SERVING after failover",
        || {
            let health = health.clone();
            async move { health_status(&health).await == Some(SERVING) }
        },
    )
    .await;

    // The feed follows the new primary: answers come from memory again, and they are current.
    let replica_node = format!("127.0.0.1:{replica_port}");
    eventually(
        Duration::from_secs(10),
        "the feed followed on the new primary",
        || async { service.feed_node().await.as_deref() == Some(replica_node.as_str()) },
    )
    .await;
    let occupied = gate
        .is_occupied(IsOccupiedRequest {
            channel: "after-failover".into(),
            ..Default::default()
        })
        .await
        .expect("IsOccupied after failover")
        .into_inner()
        .occupied;
    assert!(occupied);

    let log = service.log_text();
    assert!(
        !log.contains(PASSWORD) && !log.contains(SENTINEL_PASSWORD),
        "a password reached the log"
    );
}

/// `rediss+sentinel://`: TLS to the sentinel and to the primary it names, both trusting the
/// private CA given with `--redis-ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_sentinel_trusts_the_private_ca_for_sentinels_and_data_nodes() {
    require("redis-server", "redis-server");
    require("redis-sentinel", "redis-sentinel");
    let pki = support::TestPki::create();
    let dir = TempDir::new("sentinel-tls");
    let path = |p: &std::path::Path| p.display().to_string();
    let tls: Vec<String> = [
        "--tls-cert-file",
        &path(&pki.server_cert),
        "--tls-key-file",
        &path(&pki.server_key),
        "--tls-ca-cert-file",
        &path(&pki.ca_cert),
        "--tls-auth-clients",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let primary_port = free_port();
    let mut primary_args: Vec<&str> = vec!["--port", "0"];
    let primary_tls_port = primary_port.to_string();
    primary_args.extend(["--tls-port", &primary_tls_port]);
    primary_args.extend(tls.iter().map(String::as_str));
    let _primary = Node::redis(primary_port, dir.path(), &primary_args);

    let sentinel_port = free_port();
    let config = dir.path().join("sentinel-tls.conf");
    let directives: Vec<String> = tls
        .chunks(2)
        .map(|pair| format!("{} {}", pair[0].trim_start_matches("--"), pair[1]))
        .collect();
    std::fs::write(
        &config,
        format!(
            "port 0\n\
             tls-port {sentinel_port}\n\
             bind 127.0.0.1\n\
             tls-replication yes\n\
             {}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {MASTER} 500\n",
            directives.join("\n")
        ),
    )
    .expect("write the sentinel's configuration");
    let _sentinel = Node::spawn(
        "redis-sentinel",
        &[config.display().to_string()],
        sentinel_port,
        dir.path(),
    );

    let stub = PusherStub::start().await;
    let service = Occupancy::start(&[
        "--redis-url".into(),
        format!("rediss+sentinel://127.0.0.1:{sentinel_port}/{MASTER}"),
        "--redis-ca".into(),
        pki.ca_cert.display().to_string(),
        "--pusher-api-url".into(),
        stub.url(),
    ]);
    let channel = service.channel().await;
    let health = HealthClient::new(channel.clone());
    eventually(
        Duration::from_secs(10),
        "SERVING through TLS sentinels",
        || {
            let health = health.clone();
            async move { health_status(&health).await == Some(SERVING) }
        },
    )
    .await;
    let (status, body) = service
        .send_webhook(&[("channel_occupied", "sentinel-over-tls")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{primary_port}/"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.ca_cert).expect("read the CA")),
        },
    )
    .expect("a TLS client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the primary over TLS");
    assert_eq!(smembers(&mut connection, SET).await, ["sentinel-over-tls"]);
    let primary = format!("127.0.0.1:{primary_port}");
    eventually(Duration::from_secs(10), "the feed over TLS", || async {
        service.feed_node().await.as_deref() == Some(primary.as_str())
    })
    .await;
}
