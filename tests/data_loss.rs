//! Redis losing its data, against the service (in the test's process), a real `redis-server`
//! and the Pusher stand-in: restarted empty on the same port, or `FLUSHALL`ed under two replicas. Each time the
//! gate keeps answering "occupied" for a channel Pusher lists (never dropping to the emptied
//! set), notices the loss (`occupancy_store_data_loss_total`), and re-seeds Redis from Pusher's
//! listing within 2 s, so encoders reading `SISMEMBER` are right again; one replica lists, not
//! each, and the copies kept through the loss give way to the repaired set.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::in_process::InProcess;
use support::{PusherStub, RedisServer};
use tonic::transport::Channel;

const SET: &str = "pusher:channels";

async fn start(redis: &RedisServer, stub: &PusherStub) -> InProcess {
    InProcess::start(&[
        "--redis-url".into(),
        redis.url(),
        "--pusher-api-url".into(),
        stub.url(),
        "--reconcile-interval".into(),
        "60s".into(),
    ])
    .await
}

async fn occupied(gate: &OccupancyClient<Channel>, channel: &str) -> Result<bool, tonic::Status> {
    Ok(gate
        .clone()
        .is_occupied(IsOccupiedRequest {
            channel: channel.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .occupied)
}

async fn sismember(redis: &RedisServer, channel: &str) -> bool {
    let Ok(client) = redis::Client::open(redis.url()) else {
        return false;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("SISMEMBER")
        .arg(SET)
        .arg(channel)
        .query_async(&mut connection)
        .await
        .unwrap_or(false)
}

/// Whether `service` counted a data loss (`occupancy_store_data_loss_total`).
async fn noticed_loss(service: &InProcess) -> bool {
    service
        .admin()
        .metric("occupancy_store_data_loss_total", &[])
        .await
        >= 1.0
}

/// Asks `channel` every 20 ms until stopped, counting "vacant" answers and errors.
struct Poller {
    stop: Arc<AtomicBool>,
    vacant: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    asked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn start(gate: OccupancyClient<Channel>, channel: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (vacant, errors, asked) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let task = {
            let (stop, vacant, errors, asked) =
                (stop.clone(), vacant.clone(), errors.clone(), asked.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match occupied(&gate, channel).await {
                        Ok(true) => {}
                        Ok(false) => {
                            vacant.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    asked.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            stop,
            vacant,
            errors,
            asked,
            task,
        }
    }

    /// Stops and returns (asked, vacant, errors).
    async fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("poller");
        (
            self.asked.load(Ordering::Relaxed),
            self.vacant.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Waits until Redis holds `channel`, returning how long that took; fails past `limit`.
async fn reseeded(redis: &RedisServer, channel: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        if sismember(redis, channel).await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "Redis still lacks {channel} {limit:?} after losing its data"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ready(gate: &OccupancyClient<Channel>, redis: &RedisServer, channel: &str) {
    support::eventually(
        Duration::from_secs(10),
        "the start-up reconcile",
        || async {
            sismember(redis, channel).await && occupied(gate, channel).await.unwrap_or(false)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_keeps_answers_and_is_reseeded_within_2s() {
    let mut redis = RedisServer::start();
    let stub = PusherStub::start().await;
    stub.set_listing(&["job-1", "job-2"], Duration::ZERO);
    let service = start(&redis, &stub).await;
    let gate = OccupancyClient::new(service.channel().await);
    ready(&gate, &redis, "job-1").await;
    // Let a few heartbeats confirm the feed.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let poller = Poller::start(gate.clone(), "job-1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.stop();
    redis.restart();
    let restarted = Instant::now();
    let took = reseeded(&redis, "job-1", restarted, Duration::from_secs(2)).await;
    assert!(
        sismember(&redis, "job-2").await,
        "the whole listing is re-seeded"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (asked, vacant, errors) = poller.finish().await;
    eprintln!("re-seeded {took:?} after the restart; {asked} answers, {errors} errors");
    assert_eq!(
        vacant, 0,
        "{vacant} of {asked} answers said vacant for a channel Pusher lists as occupied"
    );
    assert!(noticed_loss(&service).await, "the loss is counted");
    assert!(occupied(&gate, "job-1").await.expect("answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_under_two_replicas_is_repaired_once_without_dark_answers() {
    let redis = RedisServer::start();
    let stub = PusherStub::start().await;
    stub.set_listing(&["job-1"], Duration::ZERO);
    let a = start(&redis, &stub).await;
    let b = start(&redis, &stub).await;
    let gate_a = OccupancyClient::new(a.channel().await);
    let gate_b = OccupancyClient::new(b.channel().await);
    ready(&gate_a, &redis, "job-1").await;
    ready(&gate_b, &redis, "job-1").await;
    // A channel occupied by webhook that Pusher will no longer list once the data is lost.
    a.send_webhook(&[("channel_occupied", "gone-1")]).await;
    support::eventually(
        Duration::from_secs(3),
        "both replicas see gone-1",
        || async {
            occupied(&gate_a, "gone-1").await.unwrap_or(false)
                && occupied(&gate_b, "gone-1").await.unwrap_or(false)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let listings_before = stub.listings();

    let poll_a = Poller::start(gate_a.clone(), "job-1");
    let poll_b = Poller::start(gate_b.clone(), "job-1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut redis.connection().await)
        .await
        .expect("FLUSHALL");
    let flushed = Instant::now();
    let took = reseeded(&redis, "job-1", flushed, Duration::from_secs(2)).await;
    eprintln!("re-seeded {took:?} after FLUSHALL");
    // The copies kept through the loss give way to the repaired set: gone-1 is not listed.
    support::eventually(
        Duration::from_secs(3),
        "both replicas drop gone-1 after the repair",
        || async {
            !occupied(&gate_a, "gone-1").await.unwrap_or(true)
                && !occupied(&gate_b, "gone-1").await.unwrap_or(true)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (name, poller) in [("a", poll_a), ("b", poll_b)] {
        let (asked, vacant, errors) = poller.finish().await;
        assert_eq!(
            vacant, 0,
            "replica {name}: {vacant} of {asked} answers said vacant"
        );
        assert_eq!(
            errors, 0,
            "replica {name}: {errors} of {asked} answers failed"
        );
    }
    assert_eq!(
        stub.listings() - listings_before,
        1,
        "one replica lists after the loss, not each"
    );
    for service in [&a, &b] {
        assert!(noticed_loss(service).await);
    }
    assert!(!sismember(&redis, "gone-1").await);
}

/// A `redis-server` that saves its snapshot to a directory of its own, so it can restart from an
/// older snapshot (as a failover to a lagging replica, or a restart from last night's dump, would
/// bring back data that lacks the latest writes). Killed on drop.
struct SnapshotRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl SnapshotRedis {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "occupancy-snapshot-{}-{}",
            std::process::id(),
            support::now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("snapshot dir");
        let mut server = Self {
            port: support::free_port(),
            dir,
            child: None,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Killed without saving, then started again from the last snapshot.
    fn restart_from_snapshot(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.run();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A [`RedisServer`]-like view for the helpers above: same port, not owned.
    async fn sismember(&self, channel: &str) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("SISMEMBER")
            .arg(SET)
            .arg(channel)
            .query_async(&mut connection)
            .await
            .unwrap_or(false)
    }
}

impl Drop for SnapshotRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_an_older_snapshot_is_a_data_loss_too() {
    let mut redis = SnapshotRedis::start();
    let stub = PusherStub::start().await;
    stub.set_listing(&["job-1"], Duration::ZERO);
    let service = InProcess::start(&[
        "--redis-url".into(),
        redis.url(),
        "--pusher-api-url".into(),
        stub.url(),
        "--reconcile-interval".into(),
        "60s".into(),
    ])
    .await;
    let gate = OccupancyClient::new(service.channel().await);
    support::eventually(
        Duration::from_secs(10),
        "the start-up reconcile",
        || async {
            redis.sismember("job-1").await && occupied(&gate, "job-1").await.unwrap_or(false)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The snapshot holds job-1 and the data's marker; job-2 arrives after it.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("SAVE")
        .query_async(&mut connection)
        .await
        .expect("SAVE");
    stub.set_listing(&["job-1", "job-2"], Duration::ZERO);
    service.send_webhook(&[("channel_occupied", "job-2")]).await;
    assert!(occupied(&gate, "job-2").await.expect("answer"));
    tokio::time::sleep(Duration::from_millis(600)).await;

    let poller = Poller::start(gate.clone(), "job-2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart_from_snapshot();
    let restarted = Instant::now();
    assert!(
        redis.sismember("job-1").await,
        "the snapshot was loaded (the marker with it)"
    );
    loop {
        if redis.sismember("job-2").await {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(2),
            "Redis still lacks job-2 2 s after restarting from an older snapshot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("re-seeded {:?} after the restart", restarted.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (asked, vacant, errors) = poller.finish().await;
    eprintln!("{asked} answers, {errors} errors");
    assert_eq!(vacant, 0, "{vacant} of {asked} answers said vacant");
    assert!(noticed_loss(&service).await);
}
