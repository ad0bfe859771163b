//! Redis failing in the ways production Redis fails, against the real binary and real
//! `redis-server` processes: killed mid-traffic and restarted empty, demoted to a read-only
//! replica, and frozen (SIGSTOP) with its sockets open. The service must answer truthfully and
//! quickly while it lasts, and recover by itself, without a restart, once it is over.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::{Occupancy, PusherStub, RedisServer};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SET: &str = "pusher:channels";

async fn health_becomes(client: &HealthClient<Channel>, wanted: ServingStatus, within: Duration) {
    support::health_poll::becomes(client, support::health_poll::GATE, wanted as i32, within).await;
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

/// Polls `check` until it holds or `within` passes, then panics naming `what`.
async fn until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::eventually(within, what, &mut check).await
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

fn start(redis: &RedisServer, stub: &PusherStub, extra: &[&str]) -> Occupancy {
    let mut args = vec![
        "--redis-url".to_owned(),
        redis.url(),
        "--pusher-api-url".to_owned(),
        stub.url(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Occupancy::start(&args)
}

/// What the background traffic saw, per kind of answer.
#[derive(Debug, Default)]
struct Seen {
    webhook_ok: usize,
    webhook_503: usize,
    grpc_ok: usize,
    grpc_unavailable: usize,
    /// Any other answer, or one that took too long: (what, elapsed).
    wrong: Vec<(String, Duration)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_and_restarted_empty_is_repaired_by_the_recovery_reconcile() {
    let stub = PusherStub::start().await;
    let mut redis = RedisServer::start();
    let listed = ["live-1", "live-2", "live-3"];
    stub.set_listing(&listed, Duration::ZERO);
    // An interval of an hour: only start-up and the recovery trigger can reconcile.
    let service = start(
        &redis,
        &stub,
        &["--redis-timeout", "200ms", "--reconcile-interval", "1h"],
    );
    let channel = service.channel().await;
    let gate = OccupancyClient::new(channel.clone());
    let health_client = HealthClient::new(channel);
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    until(Duration::from_secs(3), "the start-up reconcile", || async {
        redis.members(SET).await == listed
    })
    .await;
    assert_eq!(stub.listings(), 1);

    // Traffic: occupied webhooks for live-1 (a listed channel, so the final set is the listing)
    // and IsOccupied, back to back, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, gate, service_url) = (stop.clone(), gate.clone(), service.webhook_url());
        tokio::spawn(async move {
            let mut seen = Seen::default();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let started = Instant::now();
                let (status, body) = support::post_signed(
                    &service_url,
                    support::KEY,
                    support::SECRET,
                    &support::webhook_body(&[("channel_occupied", "live-1")]),
                )
                .await;
                let took = started.elapsed();
                match status {
                    _ if took > Duration::from_secs(2) => {
                        seen.wrong.push((format!("webhook {status} {body}"), took))
                    }
                    StatusCode::OK => seen.webhook_ok += 1,
                    StatusCode::SERVICE_UNAVAILABLE => seen.webhook_503 += 1,
                    _ => seen.wrong.push((format!("webhook {status} {body}"), took)),
                }
                let started = Instant::now();
                let answer = is_occupied(&gate, "live-2").await;
                let took = started.elapsed();
                match answer {
                    _ if took > Duration::from_secs(2) => {
                        seen.wrong.push((format!("IsOccupied {answer:?}"), took))
                    }
                    Ok(_) => seen.grpc_ok += 1,
                    Err(s) if s.code() == Code::Unavailable => seen.grpc_unavailable += 1,
                    Err(s) => seen.wrong.push((format!("IsOccupied {s:?}"), took)),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.stop();
    health_becomes(
        &health_client,
        ServingStatus::NotServing,
        Duration::from_secs(3),
    )
    .await;
    let (status, body) = service
        .send_webhook(&[("channel_occupied", "during")])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let err = is_occupied(&gate, "live-1")
        .await
        .expect_err("Redis is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.restart();
    let restarted = Instant::now();
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    until(
        Duration::from_secs(5),
        "the set restored from the listing after the restart",
        || async { redis.members(SET).await == listed },
    )
    .await;
    eprintln!("set restored {:?} after the restart", restarted.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = traffic.await.expect("traffic task");
    eprintln!("traffic: {seen:?}");

    assert!(
        seen.wrong.is_empty(),
        "unexpected answers: {:?}",
        seen.wrong
    );
    assert!(
        seen.webhook_503 > 0 && seen.grpc_unavailable > 0,
        "the outage was seen by the traffic: {seen:?}"
    );
    assert!(seen.webhook_ok > 0 && seen.grpc_ok > 0, "{seen:?}");
    assert_eq!(
        stub.listings(),
        2,
        "start-up and the recovery, nothing else"
    );
    assert_eq!(redis.members(SET).await, listed, "the 503 applied nothing");
    let recovered = service
        .metric(
            "occupancy_reconcile_triggers_total",
            &[r#"trigger="recovered""#],
        )
        .await;
    assert!(
        recovered >= 1.0,
        "the store's recovery triggered a reconciliation: {recovered}"
    );
    assert!(is_occupied(&gate, "live-3").await.expect("answers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_demoted_to_a_read_only_replica_is_not_serving_until_promoted_again() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    let primary = RedisServer::start();
    let service = start(&redis, &stub, &["--redis-timeout", "300ms"]);
    let channel = service.channel().await;
    let gate = OccupancyClient::new(channel.clone());
    let health_client = HealthClient::new(channel);
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        service
            .send_webhook(&[("channel_occupied", "before")])
            .await
            .0,
        StatusCode::OK
    );

    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query_async(&mut redis.connection().await)
        .await
        .expect("REPLICAOF");
    until(Duration::from_secs(5), "webhooks answered 503", || async {
        service
            .send_webhook(&[("channel_occupied", "during")])
            .await
            .0
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    health_becomes(
        &health_client,
        ServingStatus::NotServing,
        Duration::from_secs(3),
    )
    .await;
    // Steadily so, not by chance.
    for _ in 0..3 {
        let (status, body) = service
            .send_webhook(&[("channel_occupied", "during")])
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    let read_only = service
        .metric(
            "occupancy_store_reconnects_total",
            &[r#"reason="read_only""#],
        )
        .await;
    assert!(
        read_only >= 1.0,
        "the demotion (a READONLY answer) made the store reconnect: {read_only}"
    );

    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut redis.connection().await)
        .await
        .expect("REPLICAOF NO ONE");
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    let (status, body) = service.send_webhook(&[("channel_occupied", "after")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        redis.members(SET).await.contains(&"after".to_owned()),
        "applied on the promoted Redis"
    );
    assert!(is_occupied(&gate, "after").await.expect("answers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_fails_requests_within_the_timeout_and_recovery_follows_sigcont() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    let pid = redis.pid().expect("redis-server runs");
    let service = start(&redis, &stub, &["--redis-timeout", "200ms"]);
    let channel = service.channel().await;
    let gate = OccupancyClient::new(channel.clone());
    let health_client = HealthClient::new(channel);
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        service
            .send_webhook(&[("channel_occupied", "before")])
            .await
            .0,
        StatusCode::OK
    );

    signal(pid, "STOP");
    // Whatever happens below, the redis-server is killed on drop (SIGKILL ends a stopped one).
    // Reads are answered from the local copy while the change feed was heard from within its
    // staleness bound; past it they go to Redis, which must fail fast rather than hang.
    tokio::time::sleep(occupancy::wire::STALENESS_BOUND + Duration::from_millis(200)).await;
    for round in 0..4 {
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), is_occupied(&gate, "before"))
            .await
            .unwrap_or_else(|_| panic!("round {round}: IsOccupied hung on a frozen Redis"));
        let took = started.elapsed();
        let err = answer.expect_err("a frozen Redis cannot answer");
        assert_eq!(err.code(), Code::Unavailable, "round {round}: {err:?}");
        assert!(
            took < Duration::from_millis(1500),
            "round {round}: IsOccupied took {took:?} with --redis-timeout 200ms"
        );

        let started = Instant::now();
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(5),
            service.send_webhook(&[("channel_occupied", "during")]),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the webhook hung on a frozen Redis"));
        let took = started.elapsed();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "round {round}: {body}"
        );
        assert!(
            took < Duration::from_millis(1500),
            "round {round}: the webhook took {took:?} with --redis-timeout 200ms"
        );
    }
    health_becomes(
        &health_client,
        ServingStatus::NotServing,
        Duration::from_secs(3),
    )
    .await;

    signal(pid, "CONT");
    let resumed = Instant::now();
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    until(
        Duration::from_secs(5),
        "IsOccupied answers again",
        || async { matches!(is_occupied(&gate, "before").await, Ok(true)) },
    )
    .await;
    let (status, body) = service.send_webhook(&[("channel_occupied", "after")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(is_occupied(&gate, "after").await.expect("answers"));
    eprintln!("answering again {:?} after SIGCONT", resumed.elapsed());
}

/// Redis is down when the service starts (both started together by an orchestrator) and up again
/// before the health check has failed twice. The start-up reconcile could not run, and with no
/// "recovery" seen (health never left its initial NOT_SERVING through failures), nothing repairs
/// the set until the next interval (an hour here): the listing must still be applied promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_up_reconcile_missed_while_redis_was_starting_is_made_up_soon() {
    let stub = PusherStub::start().await;
    let mut redis = RedisServer::start();
    redis.stop();
    stub.set_listing(&["live-1", "live-2"], Duration::ZERO);
    let service = start(
        &redis,
        &stub,
        &[
            "--redis-timeout",
            "200ms",
            "--reconcile-interval",
            "1h",
            "--health-interval",
            "1s",
        ],
    );
    until(
        Duration::from_millis(900),
        "the start-up reconcile to fail on the missing Redis",
        || async {
            service
                .metric(
                    "occupancy_reconcile_rounds_total",
                    &[r#"result="store_unavailable""#],
                )
                .await
                >= 1.0
        },
    )
    .await;
    redis.restart();
    let health_client = HealthClient::new(service.channel().await);
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    until(
        Duration::from_secs(5),
        "the set filled from the listing once Redis is up",
        || async { redis.members(SET).await == ["live-1", "live-2"] },
    )
    .await;
}

/// A TCP proxy in front of Redis that can black-hole every connection open so far: their sockets
/// stay open but no byte passes any more, as with a Redis host gone without a reset. Connections
/// made afterwards pass normally.
struct BlackHoleProxy {
    port: u16,
    current: Arc<std::sync::Mutex<tokio::sync::watch::Sender<bool>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl BlackHoleProxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let current = Arc::new(std::sync::Mutex::new(tokio::sync::watch::channel(false).0));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (shared, count) = (current.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let frozen = shared.lock().expect("proxy lock").subscribe();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, frozen.clone()));
                tokio::spawn(pump(server_read, client_write, frozen));
            }
        });
        Self {
            port,
            current,
            connections,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Black-holes every connection open now.
    fn freeze(&self) {
        let mut current = self.current.lock().expect("proxy lock");
        let _ = current.send(true);
        *current = tokio::sync::watch::channel(false).0;
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::io::copy(&mut from, &mut to) => {}
        _ = async { frozen.wait_for(|f| *f).await.is_ok() } => {
            // Keep both sockets open, silently, for as long as the test runs (bounded anyway).
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_went_silent_is_rebuilt_after_repeated_timeouts() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    let proxy = BlackHoleProxy::start(redis.port).await;
    let service = Occupancy::start(&[
        "--redis-url".to_owned(),
        proxy.url(),
        "--pusher-api-url".to_owned(),
        stub.url(),
        "--redis-timeout".to_owned(),
        "200ms".to_owned(),
    ]);
    let channel = service.channel().await;
    let gate = OccupancyClient::new(channel.clone());
    let health_client = HealthClient::new(channel);
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        service
            .send_webhook(&[("channel_occupied", "before")])
            .await
            .0,
        StatusCode::OK
    );
    let connections = proxy.connections();

    proxy.freeze();
    // The silent connection times out; after two timeouts in a row a new one must be made, and
    // through it everything answers again, without a restart and while the old socket stays open.
    let frozen = Instant::now();
    // Writes always go to Redis (reads may come from the local copy), so a webhook proves the
    // connection.
    until(
        Duration::from_secs(5),
        "webhooks applied over a rebuilt connection",
        || async {
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                service.send_webhook(&[("channel_occupied", "rebuilt")]),
            )
            .await;
            matches!(answer, Ok((StatusCode::OK, _)))
        },
    )
    .await;
    assert!(is_occupied(&gate, "before").await.expect("answers"));
    eprintln!("answering again {:?} after the freeze", frozen.elapsed());
    assert!(
        proxy.connections() > connections,
        "a new connection was made ({connections} before)"
    );
    let (status, body) = service.send_webhook(&[("channel_occupied", "after")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(redis.members(SET).await, ["after", "before", "rebuilt"]);
    health_becomes(
        &health_client,
        ServingStatus::Serving,
        Duration::from_secs(3),
    )
    .await;
    let rebuilt = service
        .metric(
            "occupancy_store_reconnects_total",
            &[r#"reason="timeouts""#],
        )
        .await;
    assert!(
        rebuilt >= 1.0,
        "the connection was replaced after repeated timeouts: {rebuilt}"
    );
}
