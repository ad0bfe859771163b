//! Churn under faults (issue 13, "How it is tested"): a simulated Pusher with 12 subscribers
//! joining and leaving 40 private channels at random (seeded) sends signed
//! `channel_occupied`/`channel_vacated` webhooks to the real `occupancy` binary (default
//! settings) on a real `redis-server`, keeps its channel listing true, and receives the triggers;
//! a publisher calls `PublishIfOccupied` every 200 ms for every job channel. Faults, a few seconds
//! apart: the gate SIGKILLed and restarted, `FLUSHALL`, Redis SIGKILLed and restarted empty on the
//! same port; then with two replicas behind the publisher (which alternates): the second replica
//! SIGKILLed and restarted, `FLUSHALL`, Redis restarted empty.
//!
//! Counted per fault: watched updates skipped (a channel occupied since well before the call, and
//! still, whose update the gate skipped), deliveries missed (the gate said published, Pusher got
//! nothing), wasted publishes (sent to a vacant channel), and the time until `SMEMBERS` holds the
//! true set again. Required: no watched update skipped outside 2 s after a fault, no delivery
//! missed, Redis true again within 2 s of each fault. The table is printed and written to
//! `target/tmp/churn-report.txt`; BENCHMARKS.md says how to read it.
//!
//! sockudo (a real Pusher-protocol server) is not used: its crate pulls in the AWS SDK, ScyllaDB,
//! SurrealDB and sqlx, far beyond CI's build time; the issue allows the signature-checking
//! stand-in driven as churn, which is what `support/churn.rs` does.

#[path = "support/churn.rs"]
mod churn;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use churn::{
    ChurnConfig, Deliveries, EmptyRedis, FAULT_WINDOW, Publisher, PusherSim, REDIS_LIMIT, Segment,
    WebhookTargets,
};
use support::{Occupancy, PusherStub};

const SET: &str = "pusher:channels";
const SEED: u64 = 13;
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// How long a channel must have been occupied before a skip of it counts: the occupied webhook is
/// sent at once, so this is its delivery and processing time, with room for a loaded CI machine.
const GRACE: Duration = Duration::from_millis(500);
const VACATE_DELAY: Duration = Duration::from_millis(1000);
const VACATE_JITTER: Duration = Duration::from_millis(200);
/// How long each segment lasts after its recovery: the 2 s window, then clean measurement.
const HOLD: Duration = Duration::from_millis(4500);
/// How the simulated Pusher announces a subscriber who comes back within the hold-back of
/// `channel_vacated`: `false` sends `channel_occupied` again (as sockudo does); `true` sends
/// nothing at all, as Pusher documents ("cancelled if one comes back"), so only the gate's
/// reconciliation keeps such a channel (its removals wait for a second listing). The
/// `CHURN_PUSHER=documented` or `=sockudo` environment variable overrides it for one run. The
/// documented mode is the default since it passed three runs in a row with 0 skips.
const DOCUMENTED_PUSHER: bool = true;

/// Whether this run follows Pusher's documented behaviour (see [`DOCUMENTED_PUSHER`]).
fn documented_pusher() -> bool {
    match std::env::var("CHURN_PUSHER").as_deref() {
        Ok("documented") => true,
        Ok("sockudo") => false,
        _ => DOCUMENTED_PUSHER,
    }
}

/// Redis must be true within this of each fault.
const REDIS_BOUND: Duration = Duration::from_secs(2);

/// The gate's default settings, given explicitly because the test harness otherwise shortens the
/// health interval and turns periodic reconciliation off.
fn gate_args(redis: &EmptyRedis, stub: &PusherStub) -> Vec<String> {
    [
        "--redis-url",
        &redis.url(),
        "--pusher-api-url",
        &stub.url(),
        "--health-interval",
        "1s",
        "--reconcile-interval",
        "60s",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Polls `SMEMBERS` until it holds the true set (on every channel not in the middle of a change),
/// and how long that took from `since`; `None` if not within `REDIS_LIMIT`.
async fn redis_true_after(redis: &EmptyRedis, sim: &PusherSim, since: Instant) -> Option<Duration> {
    let stable_for = VACATE_DELAY + VACATE_JITTER + GRACE;
    loop {
        if let Some(members) = redis.members(SET).await {
            let at = Instant::now();
            let truth = sim.truth.snapshot();
            if churn::redis_disagreement(&truth, &members, at, stable_for, 10)
                .is_some_and(|wrong| wrong.is_empty())
            {
                return Some(at - since);
            }
        }
        if since.elapsed() > REDIS_LIMIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run so far: one segment per event, and what it needs to judge them.
struct Run {
    segments: Vec<Segment>,
    stub: Arc<PusherStub>,
    records: Arc<std::sync::Mutex<Vec<churn::PublishRecord>>>,
}

impl Run {
    /// Records an event that began at `start` and was over at `recovered`, measures Redis, waits
    /// out the segment, and prints its line of the report.
    async fn record(
        &mut self,
        name: &str,
        fault: bool,
        start: Instant,
        recovered: Instant,
        redis: &EmptyRedis,
        sim: &PusherSim,
    ) {
        let redis_true_after = if fault {
            redis_true_after(redis, sim, recovered).await
        } else {
            None
        };
        self.segments.push(Segment {
            name: name.to_owned(),
            fault,
            start,
            recovered,
            redis_true_after,
        });
        tokio::time::sleep_until((recovered + HOLD).into()).await;
        let figures = self.figures(sim);
        let (segment, f) = (self.segments.last(), figures.last());
        if let (Some(segment), Some(f)) = (segment, f) {
            println!(
                "churn: {name}: back after {} ms; watched updates skipped {} within {FAULT_WINDOW:?} \
                 and {} after; deliveries missed {}; wasted publishes {} ({} stale); Redis true \
                 again after {}",
                (recovered - start).as_millis(),
                f.skipped_in_window,
                f.skipped_outside,
                f.missed,
                f.wasted,
                f.wasted_stale,
                match segment.redis_true_after {
                    Some(d) => format!("{} ms", d.as_millis()),
                    None if fault => format!("> {REDIS_LIMIT:?} (not measured further)"),
                    None => "- (no fault)".to_owned(),
                },
            );
        }
    }

    /// The figures of every segment so far. Triggers reach Pusher before the gate answers, so
    /// every recorded publish can be judged at once.
    fn figures(&self, sim: &PusherSim) -> Vec<churn::Figures> {
        let records = self.records.lock().expect("publisher records").clone();
        churn::figures(
            &self.segments,
            &records,
            &sim.truth.snapshot(),
            &Deliveries::from_stub(&self.stub),
            GRACE,
            VACATE_DELAY + VACATE_JITTER,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_under_faults_skips_no_watched_update_and_keeps_redis_true() {
    let began = Instant::now();
    let stub = Arc::new(PusherStub::start().await);
    let mut redis = tokio::task::block_in_place(EmptyRedis::start);
    let args = gate_args(&redis, &stub);
    let mut gate_a = tokio::task::block_in_place(|| Occupancy::start(&args));

    let targets = WebhookTargets::default();
    targets.add(gate_a.webhook_url());
    let mut sim = PusherSim::start(
        ChurnConfig {
            seed: SEED,
            channels: 40,
            subscribers: 12,
            step: Duration::from_millis(150),
            vacate_delay: VACATE_DELAY,
            vacate_jitter: VACATE_JITTER,
            occupied_on_every_join: !documented_pusher(),
        },
        stub.clone(),
        targets.clone(),
    );
    let mut publisher = Publisher::start(sim.truth.names.clone(), PUBLISH_EVERY);
    publisher.add_gate(gate_a.grpc_url());
    let mut run = Run {
        segments: Vec::new(),
        stub: stub.clone(),
        records: publisher.records.clone(),
    };

    // Warm-up: the set fills from webhooks (a no-fault baseline: nothing may be skipped).
    let t = Instant::now();
    run.record("warm-up, 1 replica", false, t, t, &redis, &sim)
        .await;

    // 1. The gate SIGKILLed; back half a second later on the same ports.
    let t = Instant::now();
    gate_a.signal("KILL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| gate_a.restart());
    run.record(
        "gate SIGKILL + restart",
        true,
        t,
        Instant::now(),
        &redis,
        &sim,
    )
    .await;

    // 2. FLUSHALL.
    let t = Instant::now();
    redis.flushall().await;
    run.record("FLUSHALL", true, t, Instant::now(), &redis, &sim)
        .await;

    // 3. Redis SIGKILLed and started again, empty, on the same port half a second later.
    let t = Instant::now();
    tokio::task::block_in_place(|| redis.kill());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| redis.start_again());
    run.record(
        "Redis killed, restarted empty",
        true,
        t,
        Instant::now(),
        &redis,
        &sim,
    )
    .await;

    // A second replica joins; webhooks and publishes alternate between the two from now on.
    let t = Instant::now();
    let mut gate_b = tokio::task::block_in_place(|| Occupancy::start(&args));
    targets.add(gate_b.webhook_url());
    publisher.add_gate(gate_b.grpc_url());
    run.record("replica 2 joins", false, t, Instant::now(), &redis, &sim)
        .await;

    // 4. The second replica SIGKILLed and restarted.
    let t = Instant::now();
    gate_b.signal("KILL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| gate_b.restart());
    run.record(
        "2 replicas: replica 2 SIGKILL+restart",
        true,
        t,
        Instant::now(),
        &redis,
        &sim,
    )
    .await;

    // 5. FLUSHALL under two replicas.
    let t = Instant::now();
    redis.flushall().await;
    run.record(
        "2 replicas: FLUSHALL",
        true,
        t,
        Instant::now(),
        &redis,
        &sim,
    )
    .await;

    // 6. Redis restarted empty under two replicas.
    let t = Instant::now();
    tokio::task::block_in_place(|| redis.kill());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| redis.start_again());
    run.record(
        "2 replicas: Redis restarted empty",
        true,
        t,
        Instant::now(),
        &redis,
        &sim,
    )
    .await;

    publisher.stop().await;
    sim.stop().await;
    let records = publisher.records.lock().expect("publisher records").clone();
    let truth = sim.truth.snapshot();
    let deliveries = Deliveries::from_stub(&stub);
    let figures = run.figures(&sim);

    let mut report = vec![churn::report_header()];
    for (segment, f) in run.segments.iter().zip(&figures) {
        report.push(churn::report_line(segment, f));
    }
    let stats = &sim.stats;
    let ordering = std::sync::atomic::Ordering::Relaxed;
    let footer = format!(
        "seed {SEED}; 40 channels, 12 subscribers, one join/leave every 150 ms; {} occupancy \
         changes; webhooks sent {}, delivered {}, failed attempts retried {}; publishes every \
         {PUBLISH_EVERY:?}; a skip counts when the channel was occupied from {GRACE:?} before the \
         call to its answer; the window is {FAULT_WINDOW:?} after the faulted part was back; \
         wasted/stale = published to a vacant channel / vacant for longer than the vacate \
         hold-back; come-back within the hold-back: {}; whole run {:.1} s",
        truth.transitions(),
        stats.sent.load(ordering),
        stats.delivered.load(ordering),
        stats.retried.load(ordering),
        if documented_pusher() {
            "no webhook (Pusher's documented behaviour)"
        } else {
            "channel_occupied again (sockudo)"
        },
        began.elapsed().as_secs_f64(),
    );
    report.push(footer);
    let report = report.join("\n");
    println!("\n{report}\n");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("churn-report.txt");
    let _ = std::fs::write(&path, format!("{report}\n"));
    println!("(written to {})", path.display());

    // The run must have meant something before its zeros can.
    let mut failures = Vec::new();
    let expected_publishes = (began.elapsed().as_millis() / PUBLISH_EVERY.as_millis()) as usize;
    if records.len() * 10 < expected_publishes * 6 {
        failures.push(format!(
            "only {} publishes of about {expected_publishes}: the publisher did not keep up",
            records.len()
        ));
    }
    if truth.transitions() < 20 {
        failures.push(format!("only {} occupancy changes", truth.transitions()));
    }
    if deliveries.badly_signed > 0 {
        failures.push(format!(
            "{} triggers failed Pusher's signature check",
            deliveries.badly_signed
        ));
    }
    for (segment, f) in run.segments.iter().zip(&figures) {
        let name = &segment.name;
        if f.watched == 0 {
            failures.push(format!("{name}: no watched channel to judge"));
        }
        if f.skipped_outside > 0 {
            failures.push(format!(
                "{name}: {} watched updates skipped more than {FAULT_WINDOW:?} after the fault",
                f.skipped_outside
            ));
            failures.extend(f.examples.iter().map(|e| format!("  {e}")));
        }
        if f.missed > 0 {
            failures.push(format!(
                "{name}: {} deliveries the gate reported published never reached Pusher",
                f.missed
            ));
        }
        if segment.fault && segment.redis_true_after.is_none_or(|d| d >= REDIS_BOUND) {
            failures.push(format!(
                "{name}: Redis did not hold the true set within {REDIS_BOUND:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "churn under faults:\n  {}\n\n{report}",
        failures.join("\n  ")
    );
}
