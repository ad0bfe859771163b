//! The parts of the churn test (tests/churn.rs): a Redis that really restarts empty, a simulated
//! Pusher that owns the truth of which channels are occupied and tells the gates about it the way
//! Pusher does (signed webhooks with `time_ms`, vacated held back, retries, a channel listing kept
//! current), a publisher calling `PublishIfOccupied` every 200 ms, and the bookkeeping that turns
//! what they saw into the figures of the report.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use occupancy::proto::PublishIfOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

use crate::support::{self, PusherStub};

/// A small seeded generator (SplitMix64), so a run's churn is the same sequence every time.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A `redis-server` without persistence in a directory of its own (so no stray `dump.rdb` can be
/// loaded), which `kill` ends with SIGKILL and `start_again` brings back on the same port, and
/// which checks that it really came back empty: a new run id and no key loaded.
pub struct EmptyRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
    run_id: String,
}

impl EmptyRedis {
    pub fn start() -> Self {
        let port = support::free_port();
        let dir =
            std::env::temp_dir().join(format!("occupancy-churn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port,
            dir,
            child: None,
            run_id: String::new(),
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with \
                     `apt-get install redis-server` (Debian) or run tests/run-all.sh"
                )
            });
        self.child = Some(child);
        let info = self.info_when_up(Duration::from_secs(10));
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("INFO has no {name}"))
        };
        let run_id = field("run_id");
        assert_ne!(run_id, self.run_id, "redis-server did not restart");
        assert_eq!(
            field("rdb_last_load_keys_loaded"),
            "0",
            "redis-server restarted with data"
        );
        self.run_id = run_id;
    }

    /// `INFO` once the server answers it (so it listens and has finished loading).
    fn info_when_up(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let answer = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("INFO").query::<String>(&mut c));
            match answer {
                Ok(info) if info.contains("loading:0") => return info,
                _ if Instant::now() > deadline => {
                    panic!("redis-server did not answer on port {}", self.port)
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGKILL, as an OOM kill or a lost node would end it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port, and panics unless it is a new, empty server.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url()).ok()?;
        tokio::time::timeout(
            Duration::from_millis(500),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()
    }

    pub async fn flushall(&self) {
        let mut connection = self.connection().await.expect("connect to redis");
        let () = redis::cmd("FLUSHALL")
            .query_async(&mut connection)
            .await
            .expect("FLUSHALL");
    }

    /// `SMEMBERS key`, as an encoder reading Redis directly sees it; `None` if Redis does not
    /// answer.
    pub async fn members(&self, key: &str) -> Option<BTreeSet<String>> {
        let mut connection = self.connection().await?;
        let members: Vec<String> = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("SMEMBERS").arg(key).query_async(&mut connection),
        )
        .await
        .ok()?
        .ok()?;
        Some(members.into_iter().collect())
    }
}

impl Drop for EmptyRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shape of the churn.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    pub seed: u64,
    pub channels: usize,
    pub subscribers: usize,
    /// One subscriber joins or leaves a channel this often.
    pub step: Duration,
    /// `channel_vacated` is held back this long after the last subscriber leaves, plus up to
    /// `vacate_jitter`, and cancelled if one comes back meanwhile (as Pusher and sockudo do).
    pub vacate_delay: Duration,
    pub vacate_jitter: Duration,
    /// Send `channel_occupied` on every first subscriber, even one who comes back within the
    /// hold-back of `channel_vacated` (as sockudo does: occupied at once, vacated re-checked). When
    /// false, a come-back within the hold-back sends nothing at all (Pusher's documented "cancelled
    /// if one comes back"), and a reconciliation landing in the hold-back leaves the channel vacant
    /// in the gate until the next one.
    pub occupied_on_every_join: bool,
}

/// One channel as Pusher knows it.
#[derive(Debug, Clone, Default)]
struct ChannelTruth {
    subscribers: usize,
    /// Every change of "has a subscriber", in order.
    history: Vec<(Instant, bool)>,
    /// What the last webhook sent said (occupied or vacated).
    announced: bool,
    /// Bumped on every change, so a held-back `channel_vacated` knows it was overtaken.
    generation: u64,
    /// The last `time_ms` sent for this channel, so stamps strictly increase.
    last_time_ms: u64,
}

#[derive(Debug, Default)]
struct TruthState {
    channels: Vec<ChannelTruth>,
}

/// Which channels had subscribers when, as recorded by the simulated Pusher.
#[derive(Clone)]
pub struct Truth {
    pub names: Arc<Vec<String>>,
    state: Arc<Mutex<TruthState>>,
}

/// A copy of the histories, to answer questions about the past without holding the lock.
pub struct TruthSnapshot {
    pub names: Arc<Vec<String>>,
    histories: Vec<Vec<(Instant, bool)>>,
}

impl TruthSnapshot {
    /// Whether channel `i` had a subscriber at `t`.
    pub fn occupied_at(&self, i: usize, t: Instant) -> bool {
        self.histories[i]
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .is_some_and(|(_, occupied)| *occupied)
    }

    /// Whether channel `i` changed in `(from, to]`.
    pub fn changed_between(&self, i: usize, from: Instant, to: Instant) -> bool {
        self.histories[i]
            .iter()
            .any(|(at, _)| *at > from && *at <= to)
    }

    /// Whether channel `i` was occupied (or vacant, per `occupied`) for the whole of `[from, to]`.
    pub fn held(&self, i: usize, occupied: bool, from: Instant, to: Instant) -> bool {
        self.occupied_at(i, from) == occupied && !self.changed_between(i, from, to)
    }

    /// Occupancy changes seen over the run.
    pub fn transitions(&self) -> usize {
        self.histories.iter().map(Vec::len).sum()
    }
}

impl Truth {
    pub fn snapshot(&self) -> TruthSnapshot {
        let state = self.state.lock().unwrap();
        TruthSnapshot {
            names: self.names.clone(),
            histories: state.channels.iter().map(|c| c.history.clone()).collect(),
        }
    }

    fn occupied_names(state: &TruthState, names: &[String]) -> Vec<String> {
        state
            .channels
            .iter()
            .zip(names)
            .filter(|(c, _)| c.subscribers > 0)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// Counters of the webhooks the simulated Pusher sent.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub sent: AtomicUsize,
    pub delivered: AtomicUsize,
    /// Attempts answered with anything but 2xx, or not answered: retried.
    pub retried: AtomicUsize,
}

/// The gates Pusher's webhooks reach, round-robin, as a load balancer in front of the replicas
/// would spread them.
#[derive(Clone, Default)]
pub struct WebhookTargets {
    urls: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
}

impl WebhookTargets {
    pub fn add(&self, url: String) {
        self.urls.lock().unwrap().push(url);
    }

    fn pick(&self) -> String {
        let urls = self.urls.lock().unwrap();
        urls[self.next.fetch_add(1, Ordering::Relaxed) % urls.len()].clone()
    }
}

/// The simulated Pusher: subscribers join and leave channels at random (seeded); the channel
/// listing the stand-in serves is kept equal to the channels that have subscribers; webhooks go
/// out when a channel gains its first subscriber (at once) or loses its last (held back, and
/// re-checked). A webhook that fails is retried with backoff (250 ms doubling to 1 s) until the
/// run stops, on whichever replica the balancer picks next, with its original `time_ms`.
pub struct PusherSim {
    pub truth: Truth,
    pub stats: Arc<WebhookStats>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PusherSim {
    pub fn start(config: ChurnConfig, stub: Arc<PusherStub>, targets: WebhookTargets) -> Self {
        let names: Arc<Vec<String>> = Arc::new(
            (0..config.channels)
                .map(|i| format!("private-job-{i:02}"))
                .collect(),
        );
        let truth = Truth {
            names: names.clone(),
            state: Arc::new(Mutex::new(TruthState {
                channels: vec![ChannelTruth::default(); config.channels],
            })),
        };
        stub.set_listing(&[], Duration::ZERO);
        let stats = Arc::new(WebhookStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let sender = Sender {
            http,
            targets,
            stats: stats.clone(),
            stop: stop.clone(),
        };
        let task = tokio::spawn(churn(config, truth.clone(), stub, sender, stop.clone()));
        Self {
            truth,
            stats,
            stop,
            task: Some(task),
        }
    }

    /// Stops the churn (webhooks still being retried give up too).
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

#[derive(Clone)]
struct Sender {
    http: reqwest::Client,
    targets: WebhookTargets,
    stats: Arc<WebhookStats>,
    stop: Arc<AtomicBool>,
}

impl Sender {
    /// Sends one event as its own signed webhook, retrying until delivered or stopped.
    fn send(&self, name: &'static str, channel: String, time_ms: u64) {
        let this = self.clone();
        this.stats.sent.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let body = support::webhook_body_at(time_ms, &[(name, &channel)]);
            let signature = occupancy::wire::sign_webhook(support::SECRET, body.as_bytes());
            let mut backoff = Duration::from_millis(250);
            while !this.stop.load(Ordering::SeqCst) {
                let answer = this
                    .http
                    .post(this.targets.pick())
                    .header("content-type", "application/json")
                    .header("x-pusher-key", support::KEY)
                    .header("x-pusher-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                if answer.is_ok_and(|a| a.status().is_success()) {
                    this.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                this.stats.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        });
    }
}

async fn churn(
    config: ChurnConfig,
    truth: Truth,
    stub: Arc<PusherStub>,
    sender: Sender,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(config.seed);
    // Each subscriber (a dashboard) watches one to three job channels at a time.
    let mut watching: Vec<Vec<usize>> = vec![Vec::new(); config.subscribers];
    let mut ticker = tokio::time::interval(config.step);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        let who = rng.below(config.subscribers);
        let join = match watching[who].len() {
            0 => true,
            n if n >= 3 => false,
            _ => rng.below(2) == 0,
        };
        let channel = if join {
            let free: Vec<usize> = (0..config.channels)
                .filter(|c| !watching[who].contains(c))
                .collect();
            let c = free[rng.below(free.len())];
            watching[who].push(c);
            c
        } else {
            let at = rng.below(watching[who].len());
            watching[who].swap_remove(at)
        };
        let jitter_ms = rng.below(config.vacate_jitter.as_millis() as usize + 1) as u64;
        let vacate_after = config.vacate_delay + Duration::from_millis(jitter_ms);

        let mut state = truth.state.lock().unwrap();
        let now = Instant::now();
        let entry = &mut state.channels[channel];
        let before = entry.subscribers > 0;
        if join {
            entry.subscribers += 1;
        } else {
            entry.subscribers -= 1;
        }
        let after = entry.subscribers > 0;
        if before == after {
            continue;
        }
        entry.history.push((now, after));
        entry.generation += 1;
        let generation = entry.generation;
        if after && (!entry.announced || config.occupied_on_every_join) {
            entry.announced = true;
            let time_ms = stamp(entry);
            sender.send("channel_occupied", truth.names[channel].clone(), time_ms);
        } else if !after {
            // Held back, then re-checked: sent only if nobody came back meanwhile.
            let (truth, sender) = (truth.clone(), sender.clone());
            tokio::spawn(async move {
                tokio::time::sleep(vacate_after).await;
                let mut state = truth.state.lock().unwrap();
                let entry = &mut state.channels[channel];
                if entry.generation == generation && entry.announced && entry.subscribers == 0 {
                    entry.announced = false;
                    let time_ms = stamp(entry);
                    sender.send("channel_vacated", truth.names[channel].clone(), time_ms);
                }
            });
        }
        let listing = Truth::occupied_names(&state, &truth.names);
        drop(state);
        let listing: Vec<&str> = listing.iter().map(String::as_str).collect();
        stub.set_listing(&listing, Duration::ZERO);
    }
}

/// A `time_ms` for a new webhook about `entry`: now, but strictly after its previous one, so two
/// webhooks of one channel never share a stamp.
fn stamp(entry: &mut ChannelTruth) -> u64 {
    let time_ms = support::now_ms().max(entry.last_time_ms + 1);
    entry.last_time_ms = time_ms;
    time_ms
}

/// What one `PublishIfOccupied` call was answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub published: Vec<String>,
    pub skipped: Vec<String>,
    pub store_unavailable: bool,
}

/// One tick of the publisher.
#[derive(Debug, Clone)]
pub struct PublishRecord {
    pub tick: u64,
    pub sent: Instant,
    pub answered: Instant,
    /// Which replica answered (or was tried last).
    pub gate: usize,
    pub outcome: Result<Answer, String>,
}

/// Calls `PublishIfOccupied` every 200 ms with every job channel, on the replicas in turn (and on
/// the next one when a call fails, as a client behind a balancer would be retried), with the
/// tick number in `data` so each delivery Pusher receives can be matched to its call.
pub struct Publisher {
    pub records: Arc<Mutex<Vec<PublishRecord>>>,
    gates: Arc<Mutex<Vec<OccupancyClient<Channel>>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub const EVENT: &str = "progress";

impl Publisher {
    pub fn start(channels: Arc<Vec<String>>, every: Duration) -> Self {
        let records = Arc::new(Mutex::new(Vec::new()));
        let gates: Arc<Mutex<Vec<OccupancyClient<Channel>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(publish_loop(
            channels,
            every,
            records.clone(),
            gates.clone(),
            stop.clone(),
        ));
        Self {
            records,
            gates,
            stop,
            task: Some(task),
        }
    }

    /// Adds a replica; its address stays the same across restarts, so the client reconnects.
    pub fn add_gate(&self, grpc_url: String) {
        let channel = Endpoint::from_shared(grpc_url)
            .unwrap()
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_secs(1))
            .connect_lazy();
        self.gates
            .lock()
            .unwrap()
            .push(OccupancyClient::new(channel));
    }

    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn publish_loop(
    channels: Arc<Vec<String>>,
    every: Duration,
    records: Arc<Mutex<Vec<PublishRecord>>>,
    gates: Arc<Mutex<Vec<OccupancyClient<Channel>>>>,
    stop: Arc<AtomicBool>,
) {
    let ticks = AtomicU64::new(0);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        let clients = gates.lock().unwrap().clone();
        if clients.is_empty() {
            continue;
        }
        let tick = ticks.fetch_add(1, Ordering::Relaxed);
        let first = tick as usize % clients.len();
        let sent = Instant::now();
        let mut outcome = Err("no replica tried".to_owned());
        let mut gate = first;
        for attempt in 0..clients.len() {
            gate = (first + attempt) % clients.len();
            let request = PublishIfOccupiedRequest {
                channels: channels.to_vec(),
                event: EVENT.into(),
                data: format!("{{\"tick\":{tick}}}"),
                ..Default::default()
            };
            outcome = match clients[gate].clone().publish_if_occupied(request).await {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    Ok(Answer {
                        published: answer.published,
                        skipped: answer.skipped,
                        store_unavailable: answer.store_unavailable,
                    })
                }
                Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
            };
            if outcome.is_ok() {
                break;
            }
        }
        records.lock().unwrap().push(PublishRecord {
            tick,
            sent,
            answered: Instant::now(),
            gate,
            outcome,
        });
    }
}

/// Which ticks' events reached which channels, from the trigger calls the stand-in received.
pub struct Deliveries {
    pub by_tick: HashMap<u64, HashSet<String>>,
    /// Triggers whose signature the stand-in rejected (must be none).
    pub badly_signed: usize,
}

impl Deliveries {
    pub fn from_stub(stub: &PusherStub) -> Self {
        let mut by_tick: HashMap<u64, HashSet<String>> = HashMap::new();
        let mut badly_signed = 0;
        for call in stub.calls() {
            if !call.signature_valid {
                badly_signed += 1;
                continue;
            }
            let tick = call.body["data"]
                .as_str()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|d| d["tick"].as_u64());
            let (Some(tick), Some(channels)) = (tick, call.body["channels"].as_array()) else {
                continue;
            };
            by_tick
                .entry(tick)
                .or_default()
                .extend(channels.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        Self {
            by_tick,
            badly_signed,
        }
    }
}

/// A stretch of the run: from an event (a fault, or the start) to the next one.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    /// A fault (Redis is then required to be true again within 2 s), or an ordinary event.
    pub fault: bool,
    pub start: Instant,
    /// When the faulted part was back (gate listening, Redis answering, FLUSHALL returned).
    pub recovered: Instant,
    /// Time from `recovered` until `SMEMBERS` held the true set; `None` if not within the limit.
    pub redis_true_after: Option<Duration>,
}

/// The figures of one segment.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub publishes: usize,
    pub failed_publishes: usize,
    pub store_unavailable: usize,
    /// (publish, channel) pairs where the channel had been watched since well before the call.
    pub watched: usize,
    pub skipped_in_window: usize,
    pub skipped_outside: usize,
    pub wasted: usize,
    /// Of `wasted`: channels vacant for longer than the vacate hold-back (the gate's fault).
    pub wasted_stale: usize,
    pub missed: usize,
    /// Up to five skips outside the window, described, for the failure message.
    pub examples: Vec<String>,
}

/// How long after a fault's recovery Redis is polled for the true set before giving up.
pub const REDIS_LIMIT: Duration = Duration::from_secs(4);

/// How long after `recovered` skips are forgiven.
pub const FAULT_WINDOW: Duration = Duration::from_secs(2);

/// Counts, for each segment, what the publisher's records show against the truth. `grace` is how
/// long a channel must have been occupied before a skip of it counts (the webhook's own delay);
/// `vacate_hold` the longest hold-back of `channel_vacated`.
pub fn figures(
    segments: &[Segment],
    records: &[PublishRecord],
    truth: &TruthSnapshot,
    deliveries: &Deliveries,
    grace: Duration,
    vacate_hold: Duration,
) -> Vec<Figures> {
    let index: HashMap<&str, usize> = truth
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut out = vec![Figures::default(); segments.len()];
    for record in records {
        let Some(s) = segments.iter().rposition(|s| s.start <= record.sent) else {
            continue;
        };
        let in_window = record.sent <= segments[s].recovered + FAULT_WINDOW;
        let f = &mut out[s];
        f.publishes += 1;
        let answer = match &record.outcome {
            Ok(answer) => answer,
            Err(_) => {
                f.failed_publishes += 1;
                continue;
            }
        };
        if answer.store_unavailable {
            f.store_unavailable += 1;
        }
        let watched_from = record.sent - grace;
        for (i, _) in truth.names.iter().enumerate() {
            if truth.held(i, true, watched_from, record.answered) {
                f.watched += 1;
            }
        }
        for channel in &answer.skipped {
            let Some(&i) = index.get(channel.as_str()) else {
                continue;
            };
            if truth.held(i, true, watched_from, record.answered) {
                if in_window {
                    f.skipped_in_window += 1;
                } else {
                    f.skipped_outside += 1;
                    if f.examples.len() < 5 {
                        let since = truth.histories[i]
                            .iter()
                            .rev()
                            .find(|(at, _)| *at <= record.sent)
                            .map_or(0, |(at, _)| (record.sent - *at).as_millis());
                        f.examples.push(format!(
                            "tick {} on replica {}, {} ms after recovery: {channel} skipped, \
                             occupied for {since} ms",
                            record.tick,
                            record.gate + 1,
                            (record.sent - segments[s].recovered).as_millis(),
                        ));
                    }
                }
            }
        }
        let delivered = deliveries.by_tick.get(&record.tick);
        for channel in &answer.published {
            if !delivered.is_some_and(|d| d.contains(channel)) {
                f.missed += 1;
            }
            let Some(&i) = index.get(channel.as_str()) else {
                continue;
            };
            if !truth.occupied_at(i, record.sent) {
                f.wasted += 1;
                if truth.held(i, false, record.sent - vacate_hold - grace, record.answered) {
                    f.wasted_stale += 1;
                }
            }
        }
    }
    out
}

/// Whether `members` is the true set at `at` on every channel that has not changed for
/// `stable_for` (a channel in the middle of a change may be either): `None` when fewer than
/// `min_checked` channels could be judged or none of them is occupied (nothing meaningful to
/// compare yet), else the channels that are wrong.
pub fn redis_disagreement(
    truth: &TruthSnapshot,
    members: &BTreeSet<String>,
    at: Instant,
    stable_for: Duration,
    min_checked: usize,
) -> Option<Vec<String>> {
    let mut checked = 0;
    let mut occupied = 0;
    let mut wrong = Vec::new();
    for (i, name) in truth.names.iter().enumerate() {
        if truth.changed_between(i, at - stable_for, at) {
            continue;
        }
        checked += 1;
        let expected = truth.occupied_at(i, at);
        occupied += usize::from(expected);
        if expected != members.contains(name) {
            wrong.push(name.clone());
        }
    }
    (checked >= min_checked && occupied > 0).then_some(wrong)
}

/// One line of the report: segment, publishes, failed publishes, answers with
/// `store_unavailable`, channels watched per publish (mean), watched updates skipped within 2 s
/// of the fault and outside it, deliveries missed, wasted publishes (all / vacant past the
/// hold-back), and the time until Redis held the true set again.
pub fn report_line(segment: &Segment, f: &Figures) -> String {
    let redis = match segment.redis_true_after {
        Some(d) => format!("{} ms", d.as_millis()),
        None if segment.fault => format!("not within {REDIS_LIMIT:?}"),
        None => "- (no fault)".to_owned(),
    };
    row(&[
        segment.name.clone(),
        f.publishes.to_string(),
        f.failed_publishes.to_string(),
        f.store_unavailable.to_string(),
        format!("{:.1}", f.watched as f64 / f.publishes.max(1) as f64),
        f.skipped_in_window.to_string(),
        f.skipped_outside.to_string(),
        f.missed.to_string(),
        format!("{}/{}", f.wasted, f.wasted_stale),
        redis,
    ])
}

/// The report's header, aligned with `report_line`.
pub fn report_header() -> String {
    row(&[
        "segment",
        "publishes",
        "failed",
        "store down",
        "watched/pub",
        "skipped <2s",
        "SKIPPED",
        "MISSED",
        "wasted/stale",
        "Redis true after",
    ]
    .map(str::to_owned))
}

fn row(cells: &[String]) -> String {
    const WIDTHS: [usize; 10] = [37, 9, 6, 10, 11, 11, 7, 6, 12, 0];
    cells
        .iter()
        .zip(WIDTHS)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect::<Vec<_>>()
        .join(" | ")
}
