//! The change feed's integrity, against the service (in the test's process, or the binary where
//! start-up itself is tested) and a real `redis-server`: gates on two
//! databases of one Redis do not hear each other; a skipped or repeated change number makes the
//! copy reload (a forged line never sticks); a replica whose feed is cut tells its watchers to
//! start over; a feed that breaks is caught up; keys that would share their bookkeeping (`K` and
//! `{K}`) are refused at start-up with one line.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::watch_occupancy_response::Kind;
use occupancy::proto::{IsOccupiedRequest, WatchOccupancyRequest, WatchOccupancyResponse};
use support::in_process::InProcess;
use support::{PusherStub, RedisServer};
use tonic::Streaming;
use tonic::transport::Channel;

const FEED: &str = "{pusher:channels}:changes";

async fn start(url: String, stub: &PusherStub) -> InProcess {
    InProcess::start(&[
        "--redis-url".into(),
        url,
        "--pusher-api-url".into(),
        stub.url(),
    ])
    .await
}

async fn occupied(gate: &OccupancyClient<Channel>, channel: &str) -> bool {
    gate.clone()
        .is_occupied(IsOccupiedRequest {
            channel: channel.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("IsOccupied({channel}): {s:?}"))
        .into_inner()
        .occupied
}

async fn publish(redis: &RedisServer, channel: &str, payload: &str) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut redis.connection().await)
        .await
        .expect("PUBLISH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_on_two_databases_of_one_redis_do_not_hear_each_other() {
    let redis = RedisServer::start();
    let stub = PusherStub::start().await;
    let base = format!("redis://127.0.0.1:{}", redis.port);
    let db0 = start(format!("{base}/0"), &stub).await;
    let db1 = start(format!("{base}/1"), &stub).await;
    let (gate0, gate1) = (
        OccupancyClient::new(db0.channel().await),
        OccupancyClient::new(db1.channel().await),
    );
    let (status, _) = db1.send_webhook(&[("channel_occupied", "on-db1")]).await;
    assert!(status.is_success());
    let (status, _) = db0.send_webhook(&[("channel_occupied", "on-db0")]).await;
    assert!(status.is_success());
    assert!(occupied(&gate1, "on-db1").await);
    assert!(occupied(&gate0, "on-db0").await);
    // Long enough for any change or heartbeat to cross over.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !occupied(&gate0, "on-db1").await,
        "db 0 heard db 1's change"
    );
    assert!(
        !occupied(&gate1, "on-db0").await,
        "db 1 heard db 0's change"
    );
    let on_db0: bool = redis::cmd("SISMEMBER")
        .arg("pusher:channels")
        .arg("on-db1")
        .query_async(&mut redis.connection().await)
        .await
        .expect("SISMEMBER");
    assert!(!on_db0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_or_repeated_change_number_reloads_the_copy() {
    let redis = RedisServer::start();
    let stub = PusherStub::start().await;
    let service = start(redis.url(), &stub).await;
    let gate = OccupancyClient::new(service.channel().await);
    service
        .send_webhook(&[("channel_occupied", "real-1")])
        .await;
    service
        .send_webhook(&[("channel_occupied", "real-2")])
        .await;
    assert!(occupied(&gate, "real-2").await);
    // Heard its own heartbeat since: the copy is confirmed at change 2.
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Change 7 after 2: changes 3 to 6 were lost, so the copy is read again from Redis, which
    // never held the forged channel.
    publish(&redis, FEED, "#7\n+forged-gap").await;
    support::eventually(Duration::from_secs(2), "a reload after the gap", || async {
        service
            .admin()
            .metric("occupancy_feed_resyncs_total", &["reason=\"gap\""])
            .await
            >= 1.0
    })
    .await;
    assert!(
        !occupied(&gate, "forged-gap").await,
        "the forged line stuck"
    );
    assert!(occupied(&gate, "real-1").await && occupied(&gate, "real-2").await);

    tokio::time::sleep(Duration::from_millis(800)).await;
    // Change 1 again after 2: the numbering went back (a Redis restarted or flushed).
    publish(&redis, FEED, "#1\n+forged-regression").await;
    support::eventually(
        Duration::from_secs(2),
        "a reload after the regression",
        || async {
            service
                .admin()
                .metric("occupancy_feed_resyncs_total", &["reason=\"regression\""])
                .await
                >= 1.0
        },
    )
    .await;
    assert!(!occupied(&gate, "forged-regression").await);
    assert!(occupied(&gate, "real-1").await);

    // Another replica's heartbeat, and an unnumbered forgery, do not count as this one's.
    publish(&redis, FEED, "h someone-else 999 bogus").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(occupied(&gate, "real-2").await);
}

async fn next_kind(stream: &mut Streaming<WatchOccupancyResponse>, within: Duration) -> Kind {
    let message = tokio::time::timeout(within, stream.message())
        .await
        .expect("a watch message in time")
        .expect("stream healthy")
        .expect("stream open");
    Kind::try_from(message.kind).expect("known kind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_gets_reset_when_the_feed_is_cut() {
    let redis = RedisServer::start();
    let stub = PusherStub::start().await;
    let mut admin = redis.connection().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "gate", "on", ">gatepw", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let service = start(
        format!("redis://gate:gatepw@127.0.0.1:{}/", redis.port),
        &stub,
    )
    .await;
    service.send_webhook(&[("channel_occupied", "job-1")]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut stream = OccupancyClient::new(service.channel().await)
        .watch_occupancy(WatchOccupancyRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let second = Duration::from_secs(1);
    assert_eq!(next_kind(&mut stream, second).await, Kind::Reset);
    assert_eq!(next_kind(&mut stream, second).await, Kind::Snapshot);
    assert_eq!(next_kind(&mut stream, second).await, Kind::Synced);

    // The gate may no longer subscribe, and its subscription is cut.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "gate", "-subscribe"])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER -subscribe");
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    let cut = Instant::now();
    let bound = occupancy::wire::STALENESS_BOUND + occupancy::wire::HEARTBEAT;
    let mut reset = false;
    while cut.elapsed() < bound * 2 {
        if next_kind(&mut stream, bound * 2).await == Kind::Reset {
            reset = true;
            break;
        }
    }
    assert!(reset, "no RESET within {:?} of the cut", bound * 2);
    eprintln!("RESET {:?} after the cut", cut.elapsed());
    support::eventually(Duration::from_secs(3), "feed_up 0", || async {
        service.admin().metric("occupancy_feed_up", &[]).await == 0.0
    })
    .await;
    // Answers still come, from Redis now.
    assert!(occupied(&OccupancyClient::new(service.channel().await), "job-1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_breaks_reloads_and_asks_for_a_repair() {
    let redis = RedisServer::start();
    let stub = PusherStub::start().await;
    stub.set_listing(&["listed-1"], Duration::ZERO);
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
    support::eventually(Duration::from_secs(5), "start-up reconcile", || async {
        occupied(&gate, "listed-1").await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut redis.connection().await)
        .await
        .expect("CLIENT KILL");
    support::eventually(
        Duration::from_secs(3),
        "a reload after the break",
        || async {
            service
                .admin()
                .metric("occupancy_feed_resyncs_total", &["reason=\"reconnect\""])
                .await
                >= 1.0
        },
    )
    .await;
    assert!(occupied(&gate, "listed-1").await);
    assert_eq!(service.admin().metric("occupancy_feed_up", &[]).await, 1.0);
}

#[test]
fn keys_that_would_share_their_bookkeeping_are_refused_with_one_line() {
    let dir = std::env::temp_dir().join(format!("occupancy-feed-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("apps.toml");
    std::fs::write(
        &path,
        "[[app]]\nid = \"1\"\nkey = \"k1\"\nsecret = \"s1\"\nredis_key = \"K\"\n\
         [[app]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\nredis_key = \"{K}\"\n",
    )
    .expect("write apps file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_occupancy"))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--apps-file", path.to_str().expect("utf-8 path")])
        .env_remove("PUSHER_APP_ID")
        .env_remove("PUSHER_KEY")
        .env_remove("PUSHER_SECRET")
        .env_remove("OCCUPANCY_APPS_FILE")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run occupancy");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for occupancy") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            panic!("occupancy started with K and {{K}}: it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line:\n{stderr}");
    assert!(stderr.contains("{K}:times"), "{stderr}");
}

/// Another replica's heartbeats on the same feed are no sign that this replica's own
/// subscription and writes work: a replica that can no longer publish its own heartbeat stops
/// answering from memory, while the other, healthy one goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_replicas_own_heartbeat_keeps_its_copy_answering() {
    let redis = RedisServer::start();
    let stub = PusherStub::start().await;
    let mut admin = redis.connection().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "gate-a", "on", ">apw", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let a = start(
        format!("redis://gate-a:apw@127.0.0.1:{}/", redis.port),
        &stub,
    )
    .await;
    let b = start(redis.url(), &stub).await;
    for gate in [&a, &b] {
        support::eventually(Duration::from_secs(5), "feed_up", || async {
            gate.admin().metric("occupancy_feed_up", &[]).await == 1.0
        })
        .await;
    }
    // Replica a can no longer publish (its heartbeat script, or a plain PUBLISH); b still does,
    // on the channel a is subscribed to.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "gate-a", "-@scripting", "-publish"])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    support::eventually(
        occupancy::wire::STALENESS_BOUND * 3,
        "replica a stops answering from memory",
        || async { a.admin().metric("occupancy_feed_up", &[]).await == 0.0 },
    )
    .await;
    assert_eq!(b.admin().metric("occupancy_feed_up", &[]).await, 1.0);
}
