//! Reconciliation from Pusher's channel list (`GET /apps/{id}/channels`, served by the stand-in),
//! against a real `redis-server`: the set is repaired at start-up and after Redis loses it, an
//! event newer than the listing request is never undone, several replicas share one listing per
//! interval, and every repair is logged without the secret. The services run in the test's
//! process (their rounds and repairs read from each one's `/metrics`), except where the log itself
//! is under test.

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use support::in_process::InProcess;
use support::state::Admin;
use support::{Occupancy, PusherStub, RedisServer, SECRET, now_ms};

const SET: &str = "pusher:channels";
const TIMES: &str = "{pusher:channels}:times";
/// The wait between a round's two listings (`reconcile::CONFIRM_DELAY`).
const CONFIRM: Duration = Duration::from_secs(4);

fn args(redis: &RedisServer, stub: &PusherStub, interval: &str) -> [String; 6] {
    [
        "--redis-url".into(),
        redis.url(),
        "--pusher-api-url".into(),
        stub.url(),
        "--reconcile-interval".into(),
        interval.into(),
    ]
}

async fn start(redis: &RedisServer, stub: &PusherStub, interval: &str) -> InProcess {
    InProcess::start(&args(redis, stub, interval)).await
}

/// Waits until `admin` counts at least one round of `result`.
async fn rounds_reach(admin: Admin, result: &str, within: Duration) {
    admin
        .metric_becomes(
            "occupancy_reconcile_rounds_total",
            &[&format!("result=\"{result}\"")],
            within,
            &format!("a {result} round"),
            |rounds| rounds >= 1.0,
        )
        .await;
}

/// Channels `admin` counts as repaired, by `change` (`added`, `removed`).
async fn repairs(admin: Admin, change: &str) -> f64 {
    admin
        .metric(
            "occupancy_reconcile_repairs_total",
            &[&format!("change=\"{change}\"")],
        )
        .await
}

async fn sadd_at(redis: &RedisServer, channel: &str, time_ms: u64) {
    let mut connection = redis.connection().await;
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg(SET)
        .arg(channel)
        .cmd("ZADD")
        .arg(TIMES)
        .arg(time_ms)
        .arg(channel)
        .query_async(&mut connection)
        .await
        .expect("SADD/ZADD");
}

async fn set_is(redis: &RedisServer, expected: &[&str], within: Duration, what: &str) {
    let mut expected: Vec<String> = expected.iter().map(|c| (*c).to_owned()).collect();
    expected.sort();
    let deadline = Instant::now() + within;
    loop {
        let members = redis.members(SET).await;
        if members == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the set is {members:?}, expected {expected:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) for a log line containing every one of `parts`, and returns it.
async fn log_line(service: &Occupancy, parts: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = service
            .log_text()
            .lines()
            .find(|line| parts.iter().all(|p| line.contains(p)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} within {within:?}; log:\n{}",
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fills_the_set_from_the_listing_and_logs_the_repair_without_the_secret() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    sadd_at(&redis, "stale-member", now_ms() - 60_000).await;
    sadd_at(&redis, "still-live", now_ms() - 60_000).await;
    stub.set_listing(
        &["still-live", "private-job-1", "presence-room"],
        Duration::ZERO,
    );
    let service = Occupancy::start(&args(&redis, &stub, "1s"));
    set_is(
        &redis,
        &["still-live", "private-job-1", "presence-room"],
        Duration::from_secs(3) + CONFIRM,
        "start-up reconciliation",
    )
    .await;
    let admin = service.admin();
    rounds_reach(admin, "repaired", Duration::from_secs(3)).await;
    assert_eq!(
        (
            repairs(admin, "added").await,
            repairs(admin, "removed").await
        ),
        (2.0, 1.0)
    );
    // The log line says what was repaired, for an operator.
    let line = log_line(
        &service,
        &["reconciled: repaired", "added=2", "removed=1"],
        Duration::from_secs(3),
    )
    .await;
    assert!(line.contains("app=4242"), "names the app: {line}");
    assert!(
        line.contains("stale-member") && line.contains("private-job-1"),
        "names the channels: {line}"
    );
    // A round with nothing to repair repairs nothing and logs no repair.
    rounds_reach(admin, "clean", Duration::from_secs(4) + CONFIRM).await;
    assert_eq!(
        admin
            .metric("occupancy_reconcile_rounds_total", &["result=\"repaired\""])
            .await,
        1.0
    );
    assert_eq!(
        (
            repairs(admin, "added").await,
            repairs(admin, "removed").await
        ),
        (2.0, 1.0)
    );
    let log = service.log_text();
    let logged = log
        .lines()
        .filter(|l| l.contains("reconciled: repaired"))
        .count();
    assert_eq!(logged, 1, "one repair, one line:\n{log}");
    assert!(!log.contains(SECRET), "the secret is in the log:\n{log}");
    assert!(
        !log.contains("auth_signature"),
        "a signed URL is in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_lost_by_redis_is_restored_within_about_one_interval() {
    let stub = PusherStub::start().await;
    let mut redis = RedisServer::start();
    let listed = ["job-1", "job-2", "job-3"];
    stub.set_listing(&listed, Duration::ZERO);
    let service = start(&redis, &stub, "1s").await;
    set_is(&redis, &listed, Duration::from_secs(3), "start-up").await;

    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut redis.connection().await)
        .await
        .expect("FLUSHALL");
    assert!(redis.members(SET).await.is_empty());
    let flushed = Instant::now();
    set_is(&redis, &listed, Duration::from_secs(3), "after FLUSHALL").await;
    eprintln!("restored {:?} after FLUSHALL", flushed.elapsed());

    // A Redis restarted empty (no persistence) on the same port.
    redis.stop();
    redis.restart();
    let restarted = Instant::now();
    set_is(&redis, &listed, Duration::from_secs(4), "after a restart").await;
    eprintln!("restored {:?} after a restart", restarted.elapsed());
    assert_eq!(
        service
            .send_webhook(&[("channel_occupied", "job-4")])
            .await
            .0,
        StatusCode::OK
    );
}

/// The listing is requested, then (while Pusher takes 1.5 s to answer) X is vacated and Y
/// occupied; the listing, made before those events, still lists X and not Y (the second listing,
/// which confirms removals, lacks Y too). Neither event may be undone. W (listed, missing) is added and Z (old, not listed) removed, so the round did run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_newer_than_the_listing_request_wins() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    let old = now_ms() - 60_000;
    sadd_at(&redis, "x", old).await;
    sadd_at(&redis, "z", old).await;
    stub.set_listing(&["x", "w"], Duration::from_millis(1500));
    // A long interval: the start-up round is the only one.
    let service = start(&redis, &stub, "1h").await;
    support::eventually(Duration::from_secs(5), "the listing request", || async {
        stub.listings() >= 1
    })
    .await;
    let sent = Instant::now();
    let (status, body) = service
        .send_webhook_at(
            now_ms(),
            &[("channel_vacated", "x"), ("channel_occupied", "y")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["vacated"].as_u64(), body["occupied"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert!(
        sent.elapsed() < Duration::from_millis(1000),
        "the webhook must land while the listing is in flight; took {:?}",
        sent.elapsed()
    );
    // The confirming listing knows x vacated, and still lacks y: y stands only because its
    // event is newer than the first listing's request.
    stub.set_listing(&["w"], Duration::ZERO);
    let admin = service.admin();
    rounds_reach(admin, "repaired", Duration::from_secs(5) + CONFIRM).await;
    assert_eq!(
        redis.members(SET).await,
        ["w", "y"],
        "x vacated and y occupied after the request stand"
    );
    assert_eq!(
        (
            repairs(admin, "added").await,
            repairs(admin, "removed").await
        ),
        (1.0, 1.0),
        "w added, z removed"
    );
    // The first listing and the one confirming the removal.
    assert_eq!(stub.listings(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_list_about_once_per_interval_not_each() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    stub.set_listing(&["a"], Duration::ZERO);
    let one = start(&redis, &stub, "1s").await;
    let two = start(&redis, &stub, "1s").await;
    set_is(&redis, &["a"], Duration::from_secs(3), "start-up").await;
    let before = stub.listings();
    let window = Duration::from_millis(10_000);
    tokio::time::sleep(window).await;
    let listed = stub.listings() - before;
    eprintln!("{listed} listings in {window:?}");
    // A round is two listings 4 s apart and holds the lock through both, then a little less than
    // an interval: one lister gives two rounds (3 or 4 listings) in 10 s; both listing every
    // round (4 s + 1 s apart) gives 8.
    assert!(
        (2..=5).contains(&listed),
        "{listed} listings in {window:?} by two replicas with --reconcile-interval 1s"
    );
    let mut skipped = 0.0;
    for service in [&one, &two] {
        skipped += service
            .admin()
            .metric(
                "occupancy_reconcile_rounds_total",
                &["result=\"locked_elsewhere\""],
            )
            .await;
    }
    assert!(
        skipped >= 2.0,
        "replicas skipped {skipped} rounds for the lock"
    );
}

/// The same race on the in-memory store, seen through IsOccupied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_newer_than_the_listing_request_wins_in_memory_too() {
    use occupancy::proto::IsOccupiedRequest;
    use occupancy::proto::occupancy_client::OccupancyClient;

    let stub = PusherStub::start().await;
    stub.set_listing(&["x", "w"], Duration::from_millis(1500));
    let service = InProcess::start(&[
        "--pusher-api-url".into(),
        stub.url(),
        "--reconcile-interval".into(),
        "1h".into(),
    ])
    .await;
    support::eventually(Duration::from_secs(5), "the listing request", || async {
        stub.listings() >= 1
    })
    .await;
    let sent = Instant::now();
    // Known before the listing was made: x and z occupied a minute ago.
    let (status, body) = service
        .send_webhook_at(
            now_ms() - 60_000,
            &[("channel_occupied", "x"), ("channel_occupied", "z")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // After the request: x vacated, y occupied.
    let (status, body) = service
        .send_webhook_at(
            now_ms(),
            &[("channel_vacated", "x"), ("channel_occupied", "y")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        sent.elapsed() < Duration::from_millis(1000),
        "the webhooks must land while the listing is in flight; took {:?}",
        sent.elapsed()
    );
    // Later listings (the confirming one, one after the start-up recovery) know x vacated, and
    // still lack y: y stands only because its event is newer than the first listing's request.
    stub.set_listing(&["w"], Duration::ZERO);
    let admin = service.admin();
    rounds_reach(admin, "repaired", Duration::from_secs(5) + CONFIRM).await;
    let gate = OccupancyClient::new(service.channel().await);
    for (channel, expected) in [("w", true), ("x", false), ("y", true), ("z", false)] {
        let occupied = gate
            .clone()
            .is_occupied(IsOccupiedRequest {
                channel: channel.into(),
                ..Default::default()
            })
            .await
            .expect("IsOccupied")
            .into_inner()
            .occupied;
        assert_eq!(occupied, expected, "{channel}");
    }
    assert_eq!(
        (
            repairs(admin, "added").await,
            repairs(admin, "removed").await
        ),
        (1.0, 1.0),
        "w added, z removed"
    );
}

/// Pusher holds `channel_vacated` back for up to 3 s and sends nothing if a subscriber comes back
/// within it, while its listing may already omit the channel. A round whose first listing lands
/// in that hold-back must not remove the channel: `held` (occupied by a webhook stamped before the
/// round) is missing from the first listing and back in the second, and stays occupied
/// throughout; `gone`, missing from both, is removed; `new`, listed, is added at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_missing_from_only_the_first_listing_stays_occupied() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    // The first listing takes a second: time to deliver the webhook while it is in flight.
    stub.set_listing(&["new"], Duration::from_millis(1000));
    let service = start(&redis, &stub, "1h").await;
    support::eventually(Duration::from_secs(5), "the first listing", || async {
        stub.listings() >= 1
    })
    .await;
    let (status, body) = service
        .send_webhook_at(
            now_ms() - 10_000,
            &[("channel_occupied", "held"), ("channel_occupied", "gone")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // From the second listing on, the subscriber is back (no webhook: Pusher cancelled it).
    stub.set_listing(&["new", "held"], Duration::ZERO);
    set_is(
        &redis,
        &["gone", "held", "new"],
        Duration::from_secs(2),
        "additions from the first listing, no removal",
    )
    .await;
    let admin = service.admin();
    let deadline = Instant::now() + CONFIRM + Duration::from_secs(5);
    while admin
        .metric("occupancy_reconcile_rounds_total", &["result=\"repaired\""])
        .await
        < 1.0
    {
        let members = redis.members(SET).await;
        assert!(
            members.contains(&"held".to_owned()),
            "held was removed by one listing taken in the hold-back: {members:?}"
        );
        assert!(
            Instant::now() < deadline,
            "no repaired round; metrics:\n{}",
            admin.metrics_text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stub.listings(), 2);
    assert_eq!(redis.members(SET).await, ["held", "new"]);
    assert_eq!(repairs(admin, "removed").await, 1.0);
}

/// A second listing that is refused confirms nothing: the round adds what the first listed and
/// removes nothing, counted as `unconfirmed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_second_listing_removes_nothing() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    sadd_at(&redis, "stale", now_ms() - 60_000).await;
    stub.set_listing(&["new"], Duration::from_millis(500));
    let service = start(&redis, &stub, "1h").await;
    support::eventually(Duration::from_secs(5), "the first listing", || async {
        stub.listings() >= 1
    })
    .await;
    // Not a channel name: the gate refuses the whole listing.
    stub.set_listing(&["new", "not a name!"], Duration::ZERO);
    let admin = service.admin();
    rounds_reach(admin, "unconfirmed", CONFIRM + Duration::from_secs(5)).await;
    assert_eq!(stub.listings(), 2);
    assert_eq!(redis.members(SET).await, ["new", "stale"]);
    assert_eq!(repairs(admin, "removed").await, 0.0);
}
