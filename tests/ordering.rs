//! Webhooks ordered by `time_ms`, against the service started in-process and a real `redis-server` (or the
//! in-memory store): late, replayed and duplicated deliveries never undo a newer event, events
//! outside the retention window change nothing, unusable channels are skipped and counted, and a
//! randomised history delivered shuffled and concurrently to two replicas ends in the newest truth.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use serde_json::{Value, json};
use support::{InProcess, KEY, PusherStub, RedisServer, SECRET, StoreKind, now_ms, post_signed};
use tonic::transport::Channel;

const SET: &str = "pusher:channels";
const TIMES: &str = "{pusher:channels}:times";

struct Env {
    redis: Option<RedisServer>,
    _stub: PusherStub,
    service: InProcess,
    gate: OccupancyClient<Channel>,
}

impl Env {
    async fn start(kind: StoreKind, extra: &[&str]) -> Self {
        let stub = PusherStub::start().await;
        let redis = (kind == StoreKind::Redis).then(RedisServer::start);
        let mut args = vec!["--pusher-api-url".to_owned(), stub.url()];
        if let Some(redis) = &redis {
            args.extend(["--redis-url".to_owned(), redis.url()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let service = InProcess::start(&args).await;
        let gate = OccupancyClient::new(service.channel().await);
        Self {
            redis,
            _stub: stub,
            service,
            gate,
        }
    }

    /// Posts one signed webhook created at `time_ms`; expects 200 and returns its counts.
    async fn webhook_at(&self, time_ms: u64, events: &[(&str, &str)]) -> Counts {
        let (status, body) = self.service.send_webhook_at(time_ms, events).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Counts::of(&body)
    }

    async fn occupied(&self, channel: &str) -> bool {
        is_occupied(&self.gate, channel).await
    }
}

async fn is_occupied(gate: &OccupancyClient<Channel>, channel: &str) -> bool {
    gate.clone()
        .is_occupied(IsOccupiedRequest {
            channel: channel.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("IsOccupied({channel}) failed: {s:?}"))
        .into_inner()
        .occupied
}

/// The counts of a 200 webhook answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    occupied: u64,
    vacated: u64,
    stale: u64,
    ignored: u64,
    invalid: u64,
}

impl Counts {
    fn of(body: &Value) -> Self {
        let field = |name: &str| {
            body[name]
                .as_u64()
                .unwrap_or_else(|| panic!("webhook answer without a numeric {name:?}: {body}"))
        };
        Self {
            occupied: field("occupied"),
            vacated: field("vacated"),
            stale: field("stale"),
            ignored: field("ignored"),
            invalid: field("invalid"),
        }
    }
}

use support::both_stores::on_both_stores;

on_both_stores!(
    a_late_vacated_does_not_undo_a_newer_occupied,
    replayed_old_webhooks_change_nothing,
    events_outside_a_short_retention_are_stale,
    a_mixed_batch_applies_the_usable_events_and_counts_the_rest,
    within_one_batch_events_apply_in_the_order_listed,
    on_equal_time_across_requests_occupied_wins,
);

async fn within_one_batch_events_apply_in_the_order_listed(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let counts = env
        .webhook_at(
            now_ms(),
            &[
                ("channel_occupied", "x"),
                ("channel_vacated", "x"),
                ("channel_vacated", "y"),
                ("channel_occupied", "y"),
            ],
        )
        .await;
    assert_eq!(
        counts,
        Counts {
            occupied: 2,
            vacated: 2,
            ..Counts::default()
        },
        "events sharing the batch's time_ms all apply"
    );
    assert!(!env.occupied("x").await, "x: the later vacated wins");
    assert!(env.occupied("y").await, "y: the later occupied wins");
    if let Some(redis) = &env.redis {
        assert_eq!(redis.members(SET).await, ["y"]);
    }
}

async fn a_late_vacated_does_not_undo_a_newer_occupied(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let now = now_ms();
    let counts = env.webhook_at(now, &[("channel_occupied", "job-1")]).await;
    assert_eq!(
        counts,
        Counts {
            occupied: 1,
            ..Counts::default()
        }
    );
    let counts = env
        .webhook_at(now - 1000, &[("channel_vacated", "job-1")])
        .await;
    assert_eq!(
        counts,
        Counts {
            stale: 1,
            ..Counts::default()
        },
        "a vacated created before the occupied is stale"
    );
    assert!(env.occupied("job-1").await, "the newer occupied stands");

    // A vacated newer than the occupied applies; the older occupied arriving after it is stale.
    let counts = env
        .webhook_at(now + 1, &[("channel_vacated", "job-1")])
        .await;
    assert_eq!(counts.vacated, 1, "{counts:?}");
    assert!(!env.occupied("job-1").await);
    let counts = env
        .webhook_at(now - 500, &[("channel_occupied", "job-1")])
        .await;
    assert_eq!(counts.stale, 1, "{counts:?}");
    assert!(!env.occupied("job-1").await, "the newer vacated stands");

    if let Some(redis) = &env.redis {
        assert!(redis.members(SET).await.is_empty());
        let score: Option<u64> = redis::cmd("ZSCORE")
            .arg(TIMES)
            .arg("job-1")
            .query_async(&mut redis.connection().await)
            .await
            .expect("ZSCORE");
        assert_eq!(
            score,
            Some(now + 1),
            "the time of the last applied event is kept"
        );
    }
}

/// Pusher's order between two webhooks stamped with the same `time_ms` is unknown; a watched
/// channel wrongly vacant loses updates while one wrongly occupied costs one publish, so across
/// requests occupied wins, whichever arrives first.
async fn on_equal_time_across_requests_occupied_wins(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let now = now_ms();

    // Occupied, then vacated at the same time: the vacated is stale.
    let counts = env.webhook_at(now, &[("channel_occupied", "a")]).await;
    assert_eq!(counts.occupied, 1, "{counts:?}");
    let counts = env.webhook_at(now, &[("channel_vacated", "a")]).await;
    assert_eq!(
        counts,
        Counts {
            stale: 1,
            ..Counts::default()
        },
        "a vacated at the occupied's time is stale"
    );
    assert!(env.occupied("a").await, "a: occupied wins");

    // Vacated, then occupied at the same time (the pair delivered in reverse): occupied.
    let counts = env.webhook_at(now, &[("channel_vacated", "b")]).await;
    assert_eq!(counts.vacated, 1, "{counts:?}");
    let counts = env.webhook_at(now, &[("channel_occupied", "b")]).await;
    assert_eq!(counts.occupied, 1, "{counts:?}");
    assert!(env.occupied("b").await, "b: occupied wins");
    // And a late duplicate of the vacated changes nothing.
    let counts = env.webhook_at(now, &[("channel_vacated", "b")]).await;
    assert_eq!(counts.stale, 1, "{counts:?}");
    assert!(env.occupied("b").await, "b: still occupied");

    // A strictly newer vacated still applies.
    let counts = env.webhook_at(now + 1, &[("channel_vacated", "a")]).await;
    assert_eq!(counts.vacated, 1, "{counts:?}");
    assert!(!env.occupied("a").await, "a: the newer vacated applies");

    if let Some(redis) = &env.redis {
        assert_eq!(redis.members(SET).await, ["b"]);
    }
}

async fn replayed_old_webhooks_change_nothing(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let now = now_ms();
    let twenty_minutes_ago = now - 20 * 60 * 1000;
    env.webhook_at(now, &[("channel_occupied", "watched")])
        .await;

    // A captured webhook from 20 minutes ago, replayed: outside the 15-minute default window.
    let counts = env
        .webhook_at(
            twenty_minutes_ago,
            &[
                ("channel_vacated", "watched"),
                ("channel_occupied", "long-gone"),
            ],
        )
        .await;
    assert_eq!(
        counts,
        Counts {
            stale: 2,
            ..Counts::default()
        }
    );
    assert!(env.occupied("watched").await);
    assert!(!env.occupied("long-gone").await);
    // Replayed again: still nothing, whatever was applied in between.
    env.webhook_at(now + 1, &[("channel_vacated", "other")])
        .await;
    let counts = env
        .webhook_at(twenty_minutes_ago, &[("channel_occupied", "other")])
        .await;
    assert_eq!(counts.stale, 1, "{counts:?}");
    assert!(!env.occupied("other").await);
    if let Some(redis) = &env.redis {
        assert_eq!(redis.members(SET).await, ["watched"]);
    }
}

async fn events_outside_a_short_retention_are_stale(kind: StoreKind) {
    let env = Env::start(kind, &["--retention", "5m"]).await;
    let counts = env
        .webhook_at(now_ms() - 6 * 60 * 1000, &[("channel_occupied", "old")])
        .await;
    assert_eq!(
        counts,
        Counts {
            stale: 1,
            ..Counts::default()
        },
        "6 min old with --retention 5m (the shortest allowed)"
    );
    assert!(!env.occupied("old").await);
    // A fresh one still applies, so the retention is what made the first stale.
    let counts = env
        .webhook_at(now_ms(), &[("channel_occupied", "fresh")])
        .await;
    assert_eq!(counts.occupied, 1, "{counts:?}");
    assert!(env.occupied("fresh").await);
    if let Some(redis) = &env.redis {
        assert_eq!(redis.members(SET).await, ["fresh"]);
    }
}

async fn a_mixed_batch_applies_the_usable_events_and_counts_the_rest(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let name_200 = format!("private-{}", "x".repeat(192));
    let name_201 = format!("private-{}", "x".repeat(193));
    assert_eq!((name_200.len(), name_201.len()), (200, 201));
    let body = json!({"time_ms": now_ms(), "events": [
        {"name": "channel_occupied", "channel": "a"},
        {"name": "channel_occupied", "channel": "#server-to-user-1"},
        {"name": "channel_occupied", "channel": "bad name!"},
        {"name": "channel_occupied", "channel": name_200},
        {"name": "channel_occupied", "channel": name_201},
        {"name": "channel_occupied"},
        {"name": "channel_vacated", "channel": 7},
        {"name": "member_added", "channel": "presence-a", "user_id": "u1"},
        {"name": "client_event", "channel": "a", "event": "client-x", "data": "{}", "socket_id": "1.2"},
    ]})
    .to_string();
    let (status, answer) = post_signed(&env.service.webhook_url(), KEY, SECRET, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        Counts::of(&answer),
        Counts {
            occupied: 3,
            ignored: 2,
            invalid: 4,
            ..Counts::default()
        },
        "{answer}"
    );
    assert!(env.occupied("a").await);
    assert!(!env.occupied("presence-a").await, "member_added is ignored");
    if let Some(redis) = &env.redis {
        let mut expected = vec!["#server-to-user-1".to_owned(), "a".to_owned(), name_200];
        expected.sort();
        assert_eq!(redis.members(SET).await, expected, "nothing else changed");
        let mut times: Vec<String> = redis::cmd("ZRANGE")
            .arg(TIMES)
            .arg(0)
            .arg(-1)
            .query_async(&mut redis.connection().await)
            .await
            .expect("ZRANGE");
        times.sort();
        assert_eq!(times, expected, "only applied events are timed");
    }
}

// ---------------------------------------------------------------------------------------------
// The property: any delivery of a set of per-channel histories ends in the newest truth.

/// SplitMix64: small, seedable, good enough to shuffle deliveries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64) as usize;
            items.swap(i, j);
        }
    }
}

/// One webhook: a `time_ms` and its (event name, channel) pairs.
type Delivery = (u64, Vec<(&'static str, String)>);

struct Scenario {
    deliveries: Vec<Delivery>,
    /// Channel -> whether its newest event was `channel_occupied`.
    truth: BTreeMap<String, bool>,
    /// How many events the deliveries hold in all (duplicates included).
    events_sent: u64,
}

/// 40 channels with 2 to 6 events each at strictly increasing ticks within the last minute;
/// events that share a tick may travel together in one batch (a batch has one `time_ms`), others
/// alone; a third of the deliveries are sent two or three times; all shuffled.
fn scenario(seed: u64, prefix: &str) -> Scenario {
    let mut rng = Rng(seed);
    let ticks = 30u64;
    let base = now_ms() - 55_000;
    let tick_ms = 1_500;
    let mut truth = BTreeMap::new();
    // tick -> events created at that tick
    let mut at_tick: BTreeMap<u64, Vec<(&'static str, String)>> = BTreeMap::new();
    for c in 0..40 {
        let channel = format!("{prefix}-c{c}");
        let count = rng.range(2, 6) as usize;
        let mut chosen = BTreeSet::new();
        while chosen.len() < count {
            chosen.insert(rng.range(0, ticks - 1));
        }
        let mut occupied = false;
        for tick in chosen {
            // Mostly alternate as Pusher would, sometimes repeat a state (a lost event).
            occupied = if rng.chance(75) {
                !occupied
            } else {
                rng.chance(50)
            };
            let name = if occupied {
                "channel_occupied"
            } else {
                "channel_vacated"
            };
            at_tick
                .entry(tick)
                .or_default()
                .push((name, channel.clone()));
        }
        truth.insert(channel, occupied);
    }
    let mut deliveries = Vec::new();
    for (tick, mut events) in at_tick {
        let time_ms = base + tick * tick_ms;
        rng.shuffle(&mut events);
        while !events.is_empty() {
            let take = if rng.chance(50) {
                1
            } else {
                rng.range(2, 5) as usize
            }
            .min(events.len());
            let batch: Vec<_> = events.drain(..take).collect();
            // Sometimes the batch's events also arrive again one by one.
            if batch.len() > 1 && rng.chance(20) {
                for event in &batch {
                    deliveries.push((time_ms, vec![event.clone()]));
                }
            }
            let copies = if rng.chance(33) { rng.range(2, 3) } else { 1 };
            for _ in 0..copies {
                deliveries.push((time_ms, batch.clone()));
            }
        }
    }
    rng.shuffle(&mut deliveries);
    let events_sent = deliveries.iter().map(|(_, e)| e.len() as u64).sum();
    Scenario {
        deliveries,
        truth,
        events_sent,
    }
}

/// The seeds to run: OCCUPANCY_PROPTEST_SEED replays one; otherwise five fresh ones.
fn seeds() -> Vec<u64> {
    match std::env::var("OCCUPANCY_PROPTEST_SEED") {
        Ok(seed) => vec![
            seed.trim()
                .parse()
                .expect("OCCUPANCY_PROPTEST_SEED is a u64"),
        ],
        Err(_) => {
            let start = now_ms() ^ (u64::from(std::process::id()) << 32);
            (0..5).map(|i| Rng(start.wrapping_add(i)).next()).collect()
        }
    }
}

/// Delivers `scenario` from `tasks` concurrent tasks, each posting to the webhook URLs in turn,
/// and checks every answer is 200; returns the summed counts.
async fn deliver(scenario: &Scenario, urls: &[String], tasks: usize, seed: u64) -> Counts {
    let client = reqwest::Client::new();
    let deliveries = Arc::new(scenario.deliveries.clone());
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (client, deliveries, urls) = (client.clone(), deliveries.clone(), urls.to_vec());
        handles.push(tokio::spawn(async move {
            let mut sum = Counts::default();
            for (i, (time_ms, events)) in deliveries.iter().enumerate().skip(task).step_by(tasks) {
                let events: Vec<Value> = events
                    .iter()
                    .map(|(name, channel)| json!({"name": name, "channel": channel}))
                    .collect();
                let body = json!({"time_ms": time_ms, "events": events}).to_string();
                let signature = occupancy::wire::sign_webhook(SECRET, body.as_bytes());
                let url = &urls[(i / tasks) % urls.len()];
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-pusher-key", KEY)
                    .header("x-pusher-signature", signature)
                    .body(body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: webhook to {url}: {e}"));
                let status = response.status();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                assert_eq!(status.as_u16(), 200, "seed {seed}: {answer}");
                let c = Counts::of(&answer);
                sum.occupied += c.occupied;
                sum.vacated += c.vacated;
                sum.stale += c.stale;
                sum.ignored += c.ignored;
                sum.invalid += c.invalid;
            }
            sum
        }));
    }
    let mut total = Counts::default();
    for handle in handles {
        let c = handle.await.expect("delivery task");
        total.occupied += c.occupied;
        total.vacated += c.vacated;
        total.stale += c.stale;
        total.ignored += c.ignored;
        total.invalid += c.invalid;
    }
    total
}

async fn check_property(redis: Option<&RedisServer>, services: &[&InProcess]) {
    let urls: Vec<String> = services.iter().map(|s| s.webhook_url()).collect();
    let mut gates = Vec::new();
    for service in services {
        gates.push(OccupancyClient::new(service.channel().await));
    }
    let started = Instant::now();
    for (round, seed) in seeds().into_iter().enumerate() {
        eprintln!(
            "property round {round}: seed {seed} (replay with OCCUPANCY_PROPTEST_SEED={seed})"
        );
        let prefix = format!("r{round}");
        let scenario = scenario(seed, &prefix);
        let counts = deliver(&scenario, &urls, 6, seed).await;
        assert_eq!(
            counts.occupied + counts.vacated + counts.stale,
            scenario.events_sent,
            "seed {seed}: every event is applied or stale: {counts:?}"
        );
        assert_eq!((counts.ignored, counts.invalid), (0, 0), "seed {seed}");
        let expected: Vec<String> = scenario
            .truth
            .iter()
            .filter(|(_, occupied)| **occupied)
            .map(|(c, _)| c.clone())
            .collect();
        if let Some(redis) = redis {
            let members: Vec<String> = redis
                .members(SET)
                .await
                .into_iter()
                .filter(|m| m.starts_with(&format!("{prefix}-")))
                .collect();
            let mut expected_sorted = expected.clone();
            expected_sorted.sort();
            assert_eq!(
                members, expected_sorted,
                "seed {seed}: SMEMBERS differs from the newest truth"
            );
        }
        // Each instance answers from its local copy, which follows the other instance's writes
        // through the change feed within its staleness bound: wait that long at most.
        let settle = Instant::now() + occupancy::wire::STALENESS_BOUND;
        for (index, gate) in gates.iter().enumerate() {
            for (channel, occupied) in &scenario.truth {
                let mut answer = is_occupied(gate, channel).await;
                while answer != *occupied && Instant::now() < settle {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    answer = is_occupied(gate, channel).await;
                }
                assert_eq!(
                    answer, *occupied,
                    "seed {seed}: instance {index} IsOccupied({channel})"
                );
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the property rounds took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_duplicated_concurrent_deliveries_to_two_replicas_end_in_the_newest_truth() {
    let stub = PusherStub::start().await;
    let redis = RedisServer::start();
    let args = [
        "--redis-url".to_owned(),
        redis.url(),
        "--pusher-api-url".to_owned(),
        stub.url(),
    ];
    let one = InProcess::start(&args).await;
    let two = InProcess::start(&args).await;
    check_property(Some(&redis), &[&one, &two]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_duplicated_concurrent_deliveries_to_memory_end_in_the_newest_truth() {
    let stub = PusherStub::start().await;
    let one = InProcess::start(&["--pusher-api-url".to_owned(), stub.url()]).await;
    check_property(None, &[&one]).await;
}
