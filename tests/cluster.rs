//! Redis Cluster, with a real three-node cluster made by `redis-cli --cluster create`: the
//! service (in the test's process) on a `redis+cluster://` URL takes webhooks, answers IsOccupied
//! and WatchOccupancy, reconciles from Pusher's listing, keeps each app's keys in one slot on the
//! node that serves it, follows the feed on another node when its node drops it, and orders
//! shuffled, duplicated, concurrent deliveries correctly.

mod support;
#[path = "support/topology.rs"]
mod topology;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::watch_occupancy_response::Kind;
use occupancy::proto::{IsOccupiedRequest, WatchOccupancyRequest};
use support::in_process::InProcess;
use support::{PusherStub, eventually, now_ms};
use tonic::transport::Channel;
use topology::{Cluster, direct, smembers};

const SET: &str = "pusher:channels";

async fn occupied(gate: &OccupancyClient<Channel>, channel: &str) -> bool {
    gate.clone()
        .is_occupied(IsOccupiedRequest {
            channel: channel.into(),
            ..Default::default()
        })
        .await
        .expect("IsOccupied")
        .into_inner()
        .occupied
}

/// Waits until the change feed has been established `count` times in all
/// (`occupancy_feed_follows_total`) and is followed now (`occupancy_feed_up 1`).
async fn wait_for_feed(service: &InProcess, count: usize, within: Duration) {
    service
        .admin()
        .metric_becomes(
            "occupancy_feed_follows_total",
            &[],
            within,
            "the change feed is established",
            |follows| follows >= count as f64,
        )
        .await;
    service.admin().wait_feed_up(within).await;
}

/// The node whose change feed is followed now (`occupancy_feed_node{node=…} 1`).
async fn feed_node(service: &InProcess) -> String {
    service
        .admin()
        .feed_node()
        .await
        .expect("the metrics name the node the feed follows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_serves_every_part_of_the_service() {
    let cluster = Cluster::start();
    let mut connection = cluster.connection().await;

    // The app's keys: one slot, the set's own (its plain name hashes like its `{…}` twin).
    let slot = cluster.slot_of(SET).await;
    for key in [
        "{pusher:channels}:times",
        "{pusher:channels}:changes",
        "{pusher:channels}:reconcile-lock",
        "{pusher:channels}:seq",
    ] {
        assert_eq!(cluster.slot_of(key).await, slot, "{key}");
    }

    // Reconciliation at start-up: a stray channel goes, Pusher's listed ones come.
    let _: i64 = redis::cmd("SADD")
        .arg(SET)
        .arg("stray")
        .query_async(&mut connection)
        .await
        .expect("SADD stray");
    let stub = PusherStub::start().await;
    stub.set_listing(&["listed-a", "listed-b"], Duration::ZERO);
    let service = InProcess::start(&[
        "--redis-url".into(),
        cluster.url(),
        "--pusher-api-url".into(),
        stub.url(),
        "--reconcile-interval".into(),
        "1h".into(),
    ])
    .await;
    eventually(
        Duration::from_secs(10),
        "reconciled from the listing",
        || {
            let mut connection = connection.clone();
            async move { smembers(&mut connection, SET).await == ["listed-a", "listed-b"] }
        },
    )
    .await;
    wait_for_feed(&service, 1, Duration::from_secs(10)).await;

    // Webhooks and reads.
    let gate = OccupancyClient::new(service.channel().await);
    let (status, body) = service
        .send_webhook(&[("channel_occupied", "cluster-1")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(occupied(&gate, "cluster-1").await);
    assert!(!occupied(&gate, "cluster-absent").await);
    let (status, _) = service
        .send_webhook(&[
            ("channel_vacated", "listed-b"),
            ("channel_occupied", "cluster-1b"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);
    let expected = ["cluster-1", "cluster-1b", "listed-a"];
    assert_eq!(smembers(&mut connection, SET).await, expected);

    // The set lives on the node serving its slot; the others redirect.
    let owner = cluster.port_of_slot(slot).await;
    assert_eq!(
        smembers(&mut direct(owner, None).await, SET).await,
        expected
    );
    for node in cluster.nodes.iter().filter(|n| n.port != owner) {
        let redirected: Result<Vec<String>, _> = redis::cmd("SMEMBERS")
            .arg(SET)
            .query_async(&mut direct(node.port, None).await)
            .await;
        let err = redirected.expect_err("another node does not serve the slot");
        assert!(err.to_string().to_lowercase().contains("moved"), "{err}");
    }

    // WatchOccupancy: the snapshot, then changes made through the cluster.
    let mut watch = gate
        .clone()
        .watch_occupancy(WatchOccupancyRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let mut snapshot = BTreeSet::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("a watch message within 5 s")
            .expect("healthy")
            .expect("open");
        if message.kind == Kind::Synced as i32 {
            break;
        }
        snapshot.extend(message.occupied);
    }
    assert_eq!(snapshot, expected.iter().map(|c| c.to_string()).collect());
    service
        .send_webhook(&[("channel_occupied", "cluster-2")])
        .await;
    let change = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a change within 5 s")
        .expect("healthy")
        .expect("open");
    assert_eq!(change.kind, Kind::Change as i32, "{change:?}");
    assert_eq!(change.occupied, ["cluster-2"]);

    // The feed's node drops it: it is followed again, on the next node.
    let first = feed_node(&service).await;
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the node");
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut direct(port, None).await)
        .await
        .expect("CLIENT KILL");
    assert!(killed >= 1, "the feed was on {first}");
    wait_for_feed(&service, 2, Duration::from_secs(10)).await;
    assert_ne!(
        feed_node(&service).await,
        first,
        "the feed moved to another node"
    );
    service
        .send_webhook(&[("channel_vacated", "cluster-2")])
        .await;
    eventually(Duration::from_secs(5), "vacant after the move", || {
        let gate = gate.clone();
        async move { !occupied(&gate, "cluster-2").await }
    })
    .await;

    // Ordering: random per-channel histories delivered shuffled, duplicated and concurrently
    // end in the newest truth, on a second app key (another slot, maybe another node).
    let ordering = InProcess::start(&[
        "--redis-url".into(),
        cluster.url(),
        "--pusher-api-url".into(),
        stub.url(),
        "--redis-key".into(),
        "ordering:channels".into(),
    ])
    .await;
    let seed = now_ms() | 1;
    eprintln!("ordering property seed: {seed}");
    let mut rng = XorShift(seed);
    let ordering = Arc::new(ordering);
    let ordering_gate = OccupancyClient::new(ordering.channel().await);
    for round in 0..3 {
        check_ordering_round(&ordering, &ordering_gate, &mut connection, &mut rng, round).await;
    }
    // A script touching two slots is refused by the cluster (CROSSSLOT), an error retrying
    // does not fix: counted as a failed store request.
    for instance in [&service, &*ordering] {
        let failed = instance
            .admin()
            .metric("occupancy_store_errors_total", &[r#"kind="failed""#])
            .await;
        assert_eq!(
            failed, 0.0,
            "a store request failed (a script touched two slots?)"
        );
    }
}

/// Small deterministic generator, so a failing seed can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn check_ordering_round(
    service: &Arc<InProcess>,
    gate: &OccupancyClient<Channel>,
    connection: &mut redis::cluster_async::ClusterConnection,
    rng: &mut XorShift,
    round: u32,
) {
    let base = now_ms() - 60_000;
    let mut truth = BTreeMap::new();
    let mut deliveries = Vec::new();
    for c in 0..20 {
        let channel = format!("ord-{round}-{c}");
        let mut time = base + rng.below(1000);
        let mut last = false;
        for _ in 0..=rng.below(6) {
            time += 1 + rng.below(50);
            last = rng.below(2) == 1;
            let event = (channel.clone(), last, time);
            if rng.below(3) == 0 {
                deliveries.push(event.clone());
            }
            deliveries.push(event);
        }
        truth.insert(channel, last);
    }
    for i in (1..deliveries.len()).rev() {
        deliveries.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let queue = Arc::new(Mutex::new(deliveries));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (queue, service) = (queue.clone(), service.clone());
            tokio::spawn(async move {
                loop {
                    let Some((channel, occupied, time)) = queue.lock().expect("queue").pop() else {
                        return;
                    };
                    let name = if occupied {
                        "channel_occupied"
                    } else {
                        "channel_vacated"
                    };
                    let (status, body) = service.send_webhook_at(time, &[(name, &channel)]).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            })
        })
        .collect();
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("deliveries done within 30 s")
            .expect("every delivery accepted");
    }
    let prefix = format!("ord-{round}-");
    let expected: Vec<String> = truth
        .iter()
        .filter(|(_, occupied)| **occupied)
        .map(|(c, _)| c.clone())
        .collect();
    let mut actual: Vec<String> = smembers(connection, "ordering:channels")
        .await
        .into_iter()
        .filter(|c| c.starts_with(&prefix))
        .collect();
    actual.sort();
    assert_eq!(
        actual, expected,
        "round {round}: the set is the newest truth"
    );
    for (channel, occupied_now) in &truth {
        let channel = channel.clone();
        let wanted = *occupied_now;
        eventually(
            Duration::from_secs(5),
            &format!("IsOccupied({channel}) == {wanted}"),
            || {
                let (gate, channel) = (gate.clone(), channel.clone());
                async move { occupied(&gate, &channel).await == wanted }
            },
        )
        .await;
    }
}
