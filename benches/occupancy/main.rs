//! `cargo bench --bench occupancy`: the gate's numbers, measured against real parts.
//!
//! It starts a `redis-server` on a free port and the real `occupancy` binary (the release build
//! cargo makes for benchmarks) on 127.0.0.1, then measures, in one run so that ratios compare
//! like with like on a noisy machine:
//!
//! 1. `IsOccupied` over gRPC at concurrency 1, 16 and 64, beside direct `SISMEMBER` on the same
//!    Redis from this process (the baseline: what an encoder reading Redis itself would get);
//! 2. a cached gate (a local set kept by `WatchOccupancy`): lookups/s, and the delay from
//!    sending a webhook to the watcher seeing its change (reported as pending by a service build
//!    that answers `WatchOccupancy` with UNIMPLEMENTED);
//! 3. signed webhook ingestion, single events and batches of 20;
//! 4. the service's memory holding 1,000,000 occupied channels in memory mode.
//!
//! It prints a PASS/MISS line per target. `--quick` (or `OCCUPANCY_BENCH_QUICK=1`) runs every
//! section for a few seconds in all, for CI; the run fails only if a request fails or one
//! sequential client's median `IsOccupied` exceeds 5 ms (the Nagle/delayed-ACK stall is 40 ms),
//! for tonic's client and for a grpc-go-like one (`pinging.rs`), the one that stall hits.
//! Results and notes: BENCHMARKS.md.
//!
//! A `harness = false` bench target, not a binary of the package: cargo builds it and the
//! service binary in the release profile only when asked to bench, hands it the binary's path
//! (`CARGO_BIN_EXE_occupancy`), and it never ships with the service.

mod launch;
mod load;
mod pinging;
mod pusher_api;
mod watch;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use tokio::sync::mpsc;

use crate::launch::{
    KEY, RedisServer, SECRET, Service, cpu_time, peak_rss_bytes, rss_bytes, run_queue_wait,
    thread_cpu_time,
};
use crate::load::{Bounds, Measured, ms};
use crate::pinging::PingingClient;
use crate::watch::CachedGate;

/// The service's default set key, which encoders reading Redis also use.
const REDIS_KEY: &str = "pusher:channels";
/// Concurrency levels for every request/response measurement.
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Names asked about in the gate measurements; every other one is occupied.
const GATE_NAMES: usize = 20_000;
/// The CI guard: one sequential client's median `IsOccupied`, far below a 40 ms stall.
const GUARD_P50: Duration = Duration::from_millis(5);
/// Concurrency of the memory fill.
const FILL_CONCURRENCY: usize = 16;
/// Events per webhook in the memory fill, as Pusher batches them.
const FILL_BATCH: usize = 20;

/// How long and how much each section measures.
struct Plan {
    quick: bool,
    warmup: Duration,
    duration: Duration,
    max_requests: u64,
    webhook_duration: Duration,
    fill_channels: u64,
    fill_limit: Duration,
    watch_samples: u64,
    lookups: u64,
    log_filter: String,
}

impl Plan {
    /// Full mode: long enough for stable percentiles, under a minute in all. Quick mode: every
    /// section runs, a few seconds in all, so CI keeps the benchmark working.
    fn new(quick: bool) -> Self {
        let log_filter = std::env::var("OCCUPANCY_BENCH_LOG").unwrap_or_else(|_| "info".to_owned());
        if quick {
            Self {
                quick,
                warmup: Duration::from_millis(100),
                duration: Duration::from_millis(300),
                max_requests: 200_000,
                webhook_duration: Duration::from_millis(200),
                // A multiple of FILL_CONCURRENCY * FILL_BATCH, so every worker sends as many.
                fill_channels: 20_480,
                fill_limit: Duration::from_secs(20),
                watch_samples: 20,
                lookups: 5_000_000,
                log_filter,
            }
        } else {
            Self {
                quick,
                warmup: Duration::from_millis(300),
                duration: Duration::from_secs(3),
                max_requests: 5_000_000,
                webhook_duration: Duration::from_secs(2),
                fill_channels: 1_000_000,
                fill_limit: Duration::from_secs(60),
                watch_samples: 500,
                lookups: 500_000_000,
                log_filter,
            }
        }
    }

    /// A measurement of `duration`, capped in count too.
    fn bounds(&self, duration: Duration) -> Bounds {
        Bounds {
            duration,
            max_requests: self.max_requests,
        }
    }
}

/// Everything measured, for the targets.
#[derive(Default)]
struct Results {
    /// `IsOccupied` per concurrency.
    grpc: Vec<(usize, Measured)>,
    /// `SISMEMBER` per concurrency.
    sismember: Vec<(usize, Measured)>,
    /// Cached lookups per second, and CPU nanoseconds per lookup.
    lookups: Option<(f64, f64)>,
    /// CPU microseconds per SISMEMBER (this process and Redis), per concurrency.
    sismember_cpu_us: Vec<f64>,
    /// Per gRPC measurement: concurrency, microseconds per request spent waiting for a CPU,
    /// and the CPU ratio (baseline CPU over gRPC CPU).
    grpc_detail: Vec<(usize, f64, f64)>,
    /// One sequential grpc-go-like client's `IsOccupied`.
    pinging: Option<Measured>,
    /// Webhook-to-watcher delay, p50 and p99.
    watch_delay: Option<(Duration, Duration)>,
    /// Single-event webhooks: concurrency, measurement, CPU-bound ceiling in req/s.
    webhooks_single: Vec<(usize, Measured, f64)>,
    /// Channels filled in memory mode, and the service's RSS in bytes then.
    fill: Option<(u64, u64)>,
    /// The Pusher API listener's figures per concurrency.
    pusher_api: Vec<pusher_api::Level>,
}

fn main() -> ExitCode {
    let mut quick = std::env::var_os("OCCUPANCY_BENCH_QUICK").is_some_and(|v| v != "0");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            "--help" | "-h" => {
                println!(
                    "cargo bench --bench occupancy [-- --quick]\n\
                     env: OCCUPANCY_BENCH_QUICK=1 (same as --quick), \
                     OCCUPANCY_BENCH_LOG=<RUST_LOG for the service, default info>"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("occupancy bench: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("occupancy bench: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Plan::new(quick))) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("occupancy bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every section; `Ok(false)` when the CI guard tripped.
async fn run(plan: Plan) -> anyhow::Result<bool> {
    let started = Instant::now();
    print_machine(&plan);
    let mut results = Results::default();

    let redis = RedisServer::start()?;
    let service = Service::start(Some(&redis.url()), &plan.log_filter).await?;
    println!(
        "service: {} on Redis {} (pid {}), RUST_LOG={}",
        env!("CARGO_BIN_EXE_occupancy"),
        redis.url(),
        service.pid(),
        plan.log_filter
    );
    let redis_client = redis::Client::open(redis.url())?;
    let redis_conn = redis_client.get_multiplexed_async_connection().await?;
    let names: Arc<Vec<String>> = Arc::new(
        (0..GATE_NAMES)
            .map(|i| format!("private-job-{i:09}"))
            .collect(),
    );
    seed(&service, &names).await?;

    let pids = [std::process::id(), service.pid(), redis.pid()];
    gate_section(&plan, &service, &redis_conn, &names, &pids, &mut results).await?;
    cached_gate_section(&plan, &service, &names, &mut results).await?;
    webhook_section(&plan, &service, &pids, &mut results).await?;
    println!(
        "\nthe Redis-backed service logged {} lines so far",
        service.log_lines.load(std::sync::atomic::Ordering::Relaxed)
    );
    drop(service);
    results.pusher_api = pusher_api::section(&plan, &redis.url()).await?;
    drop(redis);
    memory_section(&plan, &mut results).await?;

    println!(
        "\nload average at the end: {} (run took {:.1} s)",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    Ok(report(&plan, &results))
}

/// Marks every other name of `names` occupied the way Pusher would, through signed webhooks of
/// 20 events (the service may answer from a copy kept by its own feed, which a direct `SADD`
/// would bypass), and waits until the gate answers accordingly.
async fn seed(service: &Service, names: &[String]) -> anyhow::Result<()> {
    let http = webhook_client()?;
    let occupied: Vec<&String> = names.iter().step_by(2).collect();
    for chunk in occupied.chunks(FILL_BATCH) {
        let events: Vec<(&str, &str)> = chunk
            .iter()
            .map(|c| ("channel_occupied", c.as_str()))
            .collect();
        post_webhook(&http, &service.webhook_url(), &events).await?;
    }
    let last = occupied.last().context("no names to seed")?;
    let mut client = OccupancyClient::new(service.channel().await?);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = IsOccupiedRequest {
            channel: (*last).clone(),
            ..Default::default()
        };
        if client.is_occupied(request).await?.into_inner().occupied {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the gate did not report {last} occupied within 10 s of its webhook"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The machine, for the record: figures mean little without it.
fn print_machine(plan: &Plan) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(str::trim)
        .unwrap_or("unknown");
    println!(
        "occupancy benchmark ({} mode): {cpus} CPUs ({model}), memory {memory}, load average {}",
        if plan.quick { "quick" } else { "full" },
        loadavg()
    );
    println!("client and server share this machine; compare ratios measured in the same run");
}

/// The 1, 5 and 15 minute load averages: how busy the machine was besides this run.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `IsOccupied` over gRPC and `SISMEMBER` directly, alternating per concurrency level so that
/// noise from other work on the machine falls on both alike.
async fn gate_section(
    plan: &Plan,
    service: &Service,
    redis_conn: &redis::aio::MultiplexedConnection,
    names: &Arc<Vec<String>>,
    pids: &[u32; 3],
    results: &mut Results,
) -> anyhow::Result<()> {
    println!(
        "\n## IsOccupied over gRPC vs direct SISMEMBER {REDIS_KEY} X (baseline, same Redis)\n\
         {} names asked in turn, every other one occupied; gRPC: one HTTP/2 channel shared by \
         all workers; SISMEMBER: one multiplexed connection shared by all workers (as the \
         service holds one)\n\
         CPU us/req: CPU time per request of this process / the service / redis-server, \
         which other work on the machine inflates far less than it does req/s; wait: \
         microseconds per request those processes' threads spent ready but waiting for a CPU, \
         summed over threads (so it can exceed the latency): what other work on the machine \
         cost; CPU ratio: \
         baseline CPU over gRPC CPU, the throughput ratio of the two if both were CPU-bound",
        names.len()
    );
    println!(
        "{:>4} | {:>10} {:>7} {:>7} {:>10} {:>5} | {:>10} {:>7} {:>7} {:>8} {:>5} | {:>6} {:>6}",
        "conc",
        "gRPC req/s",
        "p50 ms",
        "p99 ms",
        "CPU us/req",
        "wait",
        "SISM req/s",
        "p50 ms",
        "p99 ms",
        "CPU us/r",
        "wait",
        "ratio",
        "CPU r."
    );
    let client = OccupancyClient::new(service.channel().await?);
    for concurrency in CONCURRENCY {
        let (grpc, grpc_cpu) = {
            let (client, names) = (client.clone(), names.clone());
            measure(plan, concurrency, plan.duration, pids, move |worker, i| {
                let mut client = client.clone();
                let channel = pick(&names, worker, i).to_owned();
                async move {
                    client
                        .is_occupied(IsOccupiedRequest {
                            channel,
                            ..Default::default()
                        })
                        .await
                        .context("IsOccupied")?;
                    Ok(())
                }
            })
            .await?
        };
        let (baseline, baseline_cpu) = {
            let (conn, names) = (redis_conn.clone(), names.clone());
            // This process and redis-server: the service takes no part.
            let pids = [pids[0], pids[2]];
            measure(plan, concurrency, plan.duration, &pids, move |worker, i| {
                let mut conn = conn.clone();
                let channel = pick(&names, worker, i).to_owned();
                async move {
                    let _: bool = redis::cmd("SISMEMBER")
                        .arg(REDIS_KEY)
                        .arg(channel)
                        .query_async(&mut conn)
                        .await
                        .context("SISMEMBER")?;
                    Ok(())
                }
            })
            .await?
        };
        let (grpc_text, grpc_total) = grpc_cpu.cpu_per_request(grpc.requests);
        let (baseline_text, baseline_total) = baseline_cpu.cpu_per_request(baseline.requests);
        println!(
            "{:>4} | {:>10.0} {:>7} {:>7} {:>10} {:>5.0} | {:>10.0} {:>7} {:>7} {:>8} {:>5.0} | {:>5.2}x {:>5.2}x",
            concurrency,
            grpc.rate(),
            ms(grpc.p50),
            ms(grpc.p99),
            grpc_text,
            grpc_cpu.wait_per_request(grpc.requests),
            baseline.rate(),
            ms(baseline.p50),
            ms(baseline.p99),
            baseline_text,
            baseline_cpu.wait_per_request(baseline.requests),
            grpc.rate() / baseline.rate(),
            baseline_total / grpc_total.max(1e-9)
        );
        results.grpc.push((concurrency, grpc));
        results.sismember.push((concurrency, baseline));
        results.sismember_cpu_us.push(baseline_total);
        results.grpc_detail.push((
            concurrency,
            grpc_cpu.wait_per_request(grpc.requests),
            baseline_total / grpc_total.max(1e-9),
        ));
    }

    // The client pattern the CI guard is for (see pinging.rs), one call at a time.
    let pinging = Arc::new(tokio::sync::Mutex::new(
        PingingClient::connect(service.grpc_addr).await?,
    ));
    let names = names.clone();
    let (measured, _) = measure(plan, 1, plan.duration, &[], move |worker, i| {
        let (pinging, channel) = (pinging.clone(), pick(&names, worker, i).to_owned());
        async move {
            pinging.lock().await.is_occupied(&channel).await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "one sequential grpc-go-like client (an HTTP/2 PING beside every call): {:.0} req/s, \
         p50 {} ms, p99 {} ms",
        measured.rate(),
        ms(measured.p50),
        ms(measured.p99)
    );
    results.pinging = Some(measured);
    Ok(())
}

/// Warms up, then measures `op` at `concurrency` for `duration`, with what `pids` used
/// meanwhile.
async fn measure<F, Fut>(
    plan: &Plan,
    concurrency: usize,
    duration: Duration,
    pids: &[u32],
    op: F,
) -> anyhow::Result<(Measured, Usage)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let warm = op.clone();
    load::run(concurrency, plan.bounds(plan.warmup), move |w, i| {
        warm(w, i)
    })
    .await?;
    let before = Usage::now(pids)?;
    let measured = load::run(concurrency, plan.bounds(duration), move |w, i| op(w, i)).await?;
    Ok((measured, Usage::now(pids)?.since(&before)))
}

/// What some processes used: each one's CPU time, and the time their threads waited for a CPU
/// (all together), which says how much of the latency the rest of the machine caused.
struct Usage {
    cpu: Vec<Duration>,
    wait: Duration,
}

impl Usage {
    /// Totals so far.
    fn now(pids: &[u32]) -> anyhow::Result<Self> {
        let mut wait = Duration::ZERO;
        for pid in pids {
            wait += run_queue_wait(*pid)?;
        }
        Ok(Self {
            cpu: pids
                .iter()
                .map(|pid| cpu_time(*pid))
                .collect::<Result<_, _>>()?,
            wait,
        })
    }

    /// Used between `earlier` and `self`.
    fn since(&self, earlier: &Self) -> Self {
        Self {
            cpu: self
                .cpu
                .iter()
                .zip(&earlier.cpu)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            wait: self.wait.saturating_sub(earlier.wait),
        }
    }

    /// CPU microseconds per request, each process's share as `a/b/c`, and their sum.
    fn cpu_per_request(&self, requests: u64) -> (String, f64) {
        let per: Vec<f64> = self
            .cpu
            .iter()
            .map(|d| d.as_secs_f64() * 1e6 / requests.max(1) as f64)
            .collect();
        let text = per
            .iter()
            .map(|us| format!("{us:.0}"))
            .collect::<Vec<_>>()
            .join("/");
        (text, per.iter().sum())
    }

    /// Microseconds of waiting for a CPU per request.
    fn wait_per_request(&self, requests: u64) -> f64 {
        self.wait.as_secs_f64() * 1e6 / requests.max(1) as f64
    }
}

/// The name worker `worker` asks about in its request `i`: workers start apart and walk on.
fn pick(names: &[String], worker: usize, i: u64) -> &str {
    let index = (worker * 7_919 + i as usize) % names.len();
    &names[index]
}

/// The cached gate: lookups/s from the local copy, and webhook-to-watcher delay.
async fn cached_gate_section(
    plan: &Plan,
    service: &Service,
    names: &[String],
    results: &mut Results,
) -> anyhow::Result<()> {
    println!("\n## Cached gate (a local HashSet kept by WatchOccupancy)");
    let (seen_tx, mut seen) = mpsc::channel(1024);
    let Some(mut gate) = CachedGate::connect(service.channel().await?, Some(seen_tx)).await? else {
        println!(
            "PENDING: this service build answers WatchOccupancy with UNIMPLEMENTED; \
             lookups/s and webhook-to-watcher delay are measured once it serves the stream"
        );
        return Ok(());
    };
    gate.wait_synced(Duration::from_secs(10)).await?;
    let expected = names.len().div_ceil(2);
    ensure!(
        gate.len() >= expected,
        "the snapshot held {} channels, expected at least {expected}",
        gate.len()
    );

    let (max, duration) = (plan.lookups, plan.duration);
    // On this thread, so that its own CPU time is the lookups' cost.
    let (done, hits, elapsed, cpu) = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let before = thread_cpu_time()?;
        let (done, hits, elapsed) = gate.lookups(names, max, duration);
        Ok((
            done,
            hits,
            elapsed,
            thread_cpu_time()?.saturating_sub(before),
        ))
    })?;
    ensure!(
        hits > 0 && hits < done,
        "cached answers were all the same ({hits} of {done} occupied)"
    );
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let cpu_ns = cpu.as_secs_f64() * 1e9 / done.max(1) as f64;
    println!(
        "lookups from the local copy ({} channels, one thread): {rate:.0}/s ({:.0} ns each by \
         the clock, {cpu_ns:.0} ns of CPU each)",
        gate.len(),
        1e9 / rate
    );
    results.lookups = Some((rate, cpu_ns));

    // One webhook at a time, on an otherwise idle service. The service broadcasts a batch
    // before it answers, so the watcher usually sees the change before the 200 arrives: the
    // delay is measured from sending the webhook, an upper bound on the delay after the 200.
    let http = webhook_client()?;
    let nonce = unix_ms();
    let (mut from_send, mut after_answer) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(if plan.quick { 5 } else { 20 });
    for i in 0..plan.watch_samples {
        if Instant::now() >= deadline {
            break;
        }
        let channel = format!("bench-watch-{nonce}-{i:06}");
        let sent = Instant::now();
        post_webhook(
            &http,
            &service.webhook_url(),
            &[("channel_occupied", &channel)],
        )
        .await?;
        let answered = Instant::now();
        let arrived = loop {
            let (name, at) = tokio::time::timeout(Duration::from_secs(2), seen.recv())
                .await
                .with_context(|| format!("the watcher did not see {channel} within 2 s"))?
                .context("the watcher stopped")?;
            if name == channel {
                break at;
            }
        };
        from_send.push(arrived.saturating_duration_since(sent));
        if arrived > answered {
            after_answer.push(arrived - answered);
        }
    }
    ensure!(!from_send.is_empty(), "no webhook-to-watcher sample");
    from_send.sort_unstable();
    after_answer.sort_unstable();
    let (p50, p99) = (
        load::percentile(&from_send, 0.50),
        load::percentile(&from_send, 0.99),
    );
    println!(
        "webhook sent -> watcher sees the change: p50 {} ms, p99 {} ms over {} sequential \
         webhooks; {} of them seen only after the 200{}",
        ms(p50),
        ms(p99),
        from_send.len(),
        after_answer.len(),
        after_answer
            .last()
            .map(|worst| format!(" (at most {} ms after it)", ms(*worst)))
            .unwrap_or_default()
    );
    results.watch_delay = Some((p50, p99));
    Ok(())
}

/// Signed webhook ingestion on the Redis-backed service.
async fn webhook_section(
    plan: &Plan,
    service: &Service,
    pids: &[u32; 3],
    results: &mut Results,
) -> anyhow::Result<()> {
    println!(
        "\n## Webhook ingestion (signed like Pusher, HTTP/1.1 keep-alive, one connection per \
         worker, Redis store)\nrequests alternate: channel_occupied for a batch of new names, \
         then channel_vacated for the same names, so the set stays small\n\
         CPU us/req b/s/r: this process (client) / the service / redis-server; ceiling: the \
         req/s this machine's CPUs would allow at that CPU cost with nothing else running"
    );
    println!(
        "{:>5} {:>6} | {:>10} {:>10} {:>9} {:>9} | {:>18} {:>5} {:>9}",
        "conc",
        "events",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "CPU us/req b/s/r",
        "wait",
        "ceiling"
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let http = webhook_client()?;
    let url: Arc<str> = service.webhook_url().into();
    let nonce = unix_ms();
    for batch in [1usize, 20] {
        for concurrency in CONCURRENCY {
            let (http, url) = (http.clone(), url.clone());
            let (measured, cpu) = measure(
                plan,
                concurrency,
                plan.webhook_duration,
                pids,
                move |worker, i| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let kind = if i % 2 == 0 {
                            "channel_occupied"
                        } else {
                            "channel_vacated"
                        };
                        let channels: Vec<String> = (0..batch)
                            .map(|k| format!("bench-hook-{nonce}-{worker}-{}-{k}", i / 2))
                            .collect();
                        let events: Vec<(&str, &str)> =
                            channels.iter().map(|c| (kind, c.as_str())).collect();
                        // The vacated one a millisecond later at least: on equal times across
                        // requests occupied wins, as a real pair is never sent within one ms.
                        let time_ms = unix_ms() + u128::from(i % 2 == 1);
                        post_webhook_at(&http, &url, &events, time_ms).await
                    }
                },
            )
            .await?;
            let (cpu_text, cpu_total) = cpu.cpu_per_request(measured.requests);
            let ceiling = cpus * 1e6 / cpu_total.max(1e-9);
            println!(
                "{:>5} {:>6} | {:>10.0} {:>10.0} {:>9} {:>9} | {:>18} {:>5.0} {:>9.0}",
                concurrency,
                batch,
                measured.rate(),
                measured.rate() * batch as f64,
                ms(measured.p50),
                ms(measured.p99),
                cpu_text,
                cpu.wait_per_request(measured.requests),
                ceiling
            );
            if batch == 1 {
                results
                    .webhooks_single
                    .push((concurrency, measured, ceiling));
            }
        }
    }
    Ok(())
}

/// The service's memory holding `plan.fill_channels` channels in memory mode, filled the way
/// Pusher would fill it: signed webhooks of 20 `channel_occupied` events.
async fn memory_section(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    println!(
        "\n## Memory in memory mode: {} channels named like private-job-000000000 (21 bytes), \
         filled by signed webhooks of {FILL_BATCH} events at concurrency {FILL_CONCURRENCY}",
        plan.fill_channels
    );
    let service = Service::start(None, &plan.log_filter).await?;
    let empty = rss_bytes(service.pid())?;
    let http = webhook_client()?;
    let url: Arc<str> = service.webhook_url().into();
    let requests = plan.fill_channels / FILL_BATCH as u64;
    let pids = [std::process::id(), service.pid()];
    let before = Usage::now(&pids)?;
    let bounds = Bounds {
        duration: plan.fill_limit,
        max_requests: requests,
    };
    let fill = load::run(FILL_CONCURRENCY, bounds, move |worker, i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let first = (i * FILL_CONCURRENCY as u64 + worker as u64) * FILL_BATCH as u64;
            let channels: Vec<String> = (first..first + FILL_BATCH as u64)
                .map(|n| format!("private-job-{n:09}"))
                .collect();
            let events: Vec<(&str, &str)> = channels
                .iter()
                .map(|c| ("channel_occupied", c.as_str()))
                .collect();
            post_webhook(&http, &url, &events).await
        }
    })
    .await?;
    let used = Usage::now(&pids)?.since(&before);
    let filled = fill.requests * FILL_BATCH as u64;
    // The allocator may hand freed pages back late; give it a moment, as a long-running
    // service would have.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let full = rss_bytes(service.pid())?;
    let peak = peak_rss_bytes(service.pid())?;

    // The set really holds them: ask the gate about a spread of filled and unfilled names.
    let mut client = OccupancyClient::new(service.channel().await?);
    for n in (0..filled).step_by((filled as usize / 100).max(1)) {
        let channel = format!("private-job-{n:09}");
        let answer = client
            .is_occupied(IsOccupiedRequest {
                channel: channel.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        ensure!(answer.occupied, "{channel} was filled but reads vacant");
    }
    let beyond = format!("private-job-{filled:09}");
    let answer = client
        .is_occupied(IsOccupiedRequest {
            channel: beyond.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(
        !answer.occupied,
        "{beyond} was never filled but reads occupied"
    );

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "fill: {filled} channels in {:.1} s: {:.0} req/s, {:.0} events/s (p50 {} ms, p99 {} ms), \
         CPU us/req this process/service {}",
        fill.elapsed.as_secs_f64(),
        fill.rate(),
        fill.rate() * FILL_BATCH as f64,
        ms(fill.p50),
        ms(fill.p99),
        used.cpu_per_request(fill.requests).0
    );
    println!(
        "RSS: empty {:.1} MiB, holding {filled} channels {:.1} MiB (peak {:.1} MiB), \
         {:.0} bytes per channel",
        mib(empty),
        mib(full),
        mib(peak),
        full.saturating_sub(empty) as f64 / filled.max(1) as f64
    );
    results.fill = Some((filled, full));
    Ok(())
}

/// An HTTP/1.1 client for webhooks; its pool keeps one connection per concurrent request.
fn webhook_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// Posts `events` as one webhook signed like Pusher (hex HMAC-SHA256 of the raw body under the
/// app secret in `X-Pusher-Signature`, the key in `X-Pusher-Key`) and expects 200.
async fn post_webhook(
    http: &reqwest::Client,
    url: &str,
    events: &[(&str, &str)],
) -> anyhow::Result<()> {
    post_webhook_at(http, url, events, unix_ms()).await
}

/// [`post_webhook`] stamped `time_ms`.
async fn post_webhook_at(
    http: &reqwest::Client,
    url: &str,
    events: &[(&str, &str)],
    time_ms: u128,
) -> anyhow::Result<()> {
    // Channel names here are plain ASCII without quotes, so the JSON is written directly.
    let mut body = format!("{{\"time_ms\":{time_ms},\"events\":[");
    for (n, (name, channel)) in events.iter().enumerate() {
        let comma = if n == 0 { "" } else { "," };
        let _ = write!(
            body,
            "{comma}{{\"name\":\"{name}\",\"channel\":\"{channel}\"}}"
        );
    }
    body.push_str("]}");
    let signature = occupancy::wire::sign_webhook(SECRET, body.as_bytes());
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-pusher-key", KEY)
        .header("x-pusher-signature", signature)
        .body(body)
        .send()
        .await
        .context("webhook request")?;
    let status = response.status();
    let text = response.text().await.context("webhook answer")?;
    if status != reqwest::StatusCode::OK {
        bail!("webhook answered {status}: {text}");
    }
    // Every event here is newer than the last one for its channel; a stale count would mean
    // the benchmark measured no-ops.
    let answer: serde_json::Value = serde_json::from_str(&text).context("webhook answer")?;
    if answer["stale"].as_u64().unwrap_or(0) != 0 {
        bail!("webhook events were ignored as stale: {text}");
    }
    Ok(())
}

/// Now in Unix milliseconds, as Pusher's `time_ms`.
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One target's outcome.
enum Verdict {
    Pass,
    Miss,
    Pending,
}

/// Prints the targets; returns false when the CI guard tripped.
fn report(plan: &Plan, results: &Results) -> bool {
    let at = |list: &[(usize, Measured)], c: usize| {
        list.iter().find(|(conc, _)| *conc == c).map(|(_, m)| *m)
    };
    let sequential = at(&results.grpc, 1);
    let best_baseline = results
        .sismember
        .iter()
        .map(|(_, m)| m.rate())
        .fold(0.0, f64::max);
    let pass = |ok: bool| if ok { Verdict::Pass } else { Verdict::Miss };
    let mut targets: Vec<(&str, String, Verdict)> = Vec::new();
    if let Some(seq) = sequential {
        targets.push((
            "one sequential client IsOccupied p50 < 0.5 ms",
            format!("{} ms", ms(seq.p50)),
            pass(seq.p50 < Duration::from_micros(500)),
        ));
        let wait = results
            .grpc_detail
            .iter()
            .find(|d| d.0 == 1)
            .map_or(0.0, |d| d.1);
        targets.push((
            "one sequential client IsOccupied p99 < 2 ms",
            format!(
                "{} ms (threads waited {wait:.0} us per request for a CPU)",
                ms(seq.p99)
            ),
            pass(seq.p99 < Duration::from_millis(2)),
        ));
    }
    if let (Some(grpc), Some(base)) = (at(&results.grpc, 16), at(&results.sismember, 16)) {
        let ratio = grpc.rate() / base.rate();
        let cpu_ratio = results
            .grpc_detail
            .iter()
            .find(|d| d.0 == 16)
            .map_or(0.0, |d| d.2);
        targets.push((
            "IsOccupied at concurrency 16 >= 0.5x direct SISMEMBER",
            format!(
                "{ratio:.2}x ({:.0} vs {:.0} req/s); by CPU cost {cpu_ratio:.2}x",
                grpc.rate(),
                base.rate()
            ),
            pass(ratio >= 0.5),
        ));
    }
    match results.lookups {
        Some((rate, cpu_ns)) => {
            // The cheapest SISMEMBER in CPU, for the ratio an idle machine would show.
            let baseline_ns = results
                .sismember_cpu_us
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                * 1e3;
            targets.push((
                "cached gate lookups/s >= 100x SISMEMBER (best concurrency)",
                format!(
                    "{:.0}x ({rate:.0} vs {best_baseline:.0}/s); by CPU cost {:.0}x \
                     ({cpu_ns:.0} ns vs {baseline_ns:.0} ns)",
                    rate / best_baseline,
                    baseline_ns / cpu_ns.max(1e-9)
                ),
                pass(rate >= 100.0 * best_baseline),
            ))
        }
        None => targets.push((
            "cached gate lookups/s >= 100x SISMEMBER (best concurrency)",
            "WatchOccupancy not served yet".to_owned(),
            Verdict::Pending,
        )),
    }
    match results.watch_delay {
        Some((_, p99)) => targets.push((
            "webhook-to-watcher delay p99 < 10 ms",
            format!("{} ms, counted from sending the webhook", ms(p99)),
            pass(p99 < Duration::from_millis(10)),
        )),
        None => targets.push((
            "webhook-to-watcher delay p99 < 10 ms",
            "WatchOccupancy not served yet".to_owned(),
            Verdict::Pending,
        )),
    }
    if let Some((conc, best, _)) = results
        .webhooks_single
        .iter()
        .max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()))
    {
        let ceiling = results
            .webhooks_single
            .iter()
            .map(|(_, _, ceiling)| *ceiling)
            .fold(0.0, f64::max);
        targets.push((
            "webhook ingestion >= 25,000 signed single-event req/s",
            format!(
                "{:.0} req/s (best, at concurrency {conc}); CPU-bound ceiling {ceiling:.0} req/s",
                best.rate()
            ),
            pass(best.rate() >= 25_000.0),
        ));
    }
    if let Some((filled, rss)) = results.fill {
        let mib = rss as f64 / (1024.0 * 1024.0);
        let verdict = if filled >= 1_000_000 {
            pass(rss < 200 * 1000 * 1000)
        } else if plan.quick {
            Verdict::Pending
        } else {
            // The fill ran out of time: the target was not reached.
            Verdict::Miss
        };
        targets.push((
            "1,000,000 channels in memory mode < 200 MB RSS",
            format!("{:.1} MB ({mib:.1} MiB) holding {filled}", rss as f64 / 1e6),
            verdict,
        ));
    }

    for (what, got, ok) in pusher_api::targets(&results.pusher_api) {
        targets.push((what, got, pass(ok)));
    }

    println!("\n## Targets (2 cores, client and server together)");
    for (what, got, verdict) in &targets {
        let word = match verdict {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Pending if plan.quick => "SKIP",
            Verdict::Pending => "PENDING",
        };
        println!("{word:<7} {what}: {got}");
    }
    if plan.quick {
        println!("(quick mode: figures are too short to judge the targets; only the guard counts)");
    }

    // Both sequential clients: tonic's, and the grpc-go-like one that a missing TCP_NODELAY
    // on the server stalls at the median.
    let clients = [
        ("tonic", sequential),
        ("grpc-go-like (PING per call)", results.pinging),
    ];
    let mut guard_ok = true;
    println!();
    for (client, measured) in clients {
        match measured {
            Some(m) if m.p50 <= GUARD_P50 => println!(
                "guard OK: one sequential {client} client's median IsOccupied {} ms <= {} ms",
                ms(m.p50),
                ms(GUARD_P50)
            ),
            Some(m) => {
                println!(
                    "guard FAILED: one sequential {client} client's median IsOccupied {} ms > \
                     {} ms (a Nagle/delayed-ACK stall? TCP_NODELAY on the gRPC listener)",
                    ms(m.p50),
                    ms(GUARD_P50)
                );
                guard_ok = false;
            }
            None => {
                println!("guard FAILED: no sequential IsOccupied measurement from {client}");
                guard_ok = false;
            }
        }
    }
    guard_ok
}
