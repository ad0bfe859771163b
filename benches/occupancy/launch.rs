//! The real parts a run needs: a `redis-server` on a free port and the real `occupancy` binary
//! (the release build cargo made for this benchmark), both on 127.0.0.1 only and killed on drop.
//!
//! Ports are chosen here and passed in, and readiness is checked by asking the service itself,
//! so nothing depends on the wording of the service's log.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use tonic::transport::Channel;

/// The Pusher app the service is started with; webhooks are signed with this pair.
pub const APP_ID: &str = "4242";
/// The app key sent in `X-Pusher-Key`.
pub const KEY: &str = "bench-key";
/// The app secret webhooks are signed with.
pub const SECRET: &str = "bench-secret";
/// How many of the service's last log lines are kept, to explain a failed start.
const LOG_TAIL: usize = 40;

/// A port nothing listens on right now (the kernel's choice for port 0, released at once).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts connections on `port`, for at most `timeout`.
fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Kills and reaps a child; it is ours, started by this process.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A real `redis-server` without persistence, on a free port of 127.0.0.1.
pub struct RedisServer {
    /// Where it listens.
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` from `PATH` and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (Debian: apt-get install redis-server)")?;
        let mut server = Self { port, child };
        if !wait_for_port(port, Duration::from_secs(10)) {
            stop(&mut server.child);
            bail!("redis-server did not listen on port {port} within 10 s");
        }
        Ok(server)
    }

    /// The server's process id, for its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL the service and the baseline client both use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The real `occupancy` binary on two free ports of 127.0.0.1.
pub struct Service {
    child: Child,
    /// The gRPC listener.
    pub grpc_addr: SocketAddr,
    /// The webhook listener.
    pub http_addr: SocketAddr,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// How many log lines the service has written so far.
    pub log_lines: Arc<AtomicU64>,
}

impl Service {
    /// Starts the binary on Redis at `redis_url`, or in memory when `None`, with the log filter
    /// `log` (`info` is the service's default, so the one that production runs with). Pusher's
    /// API is pointed at a closed local port: nothing here publishes, and no traffic may leave
    /// the machine.
    pub async fn start(redis_url: Option<&str>, log: &str) -> anyhow::Result<Self> {
        Self::start_with(redis_url, log, "http://127.0.0.1:9", &[]).await
    }

    /// As [`Service::start`], publishing to `pusher_api_url` (a local stand-in) with `extra`
    /// flags.
    pub async fn start_with(
        redis_url: Option<&str>,
        log: &str,
        pusher_api_url: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let grpc_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let http_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let admin_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut command = Command::new(env!("CARGO_BIN_EXE_occupancy"));
        command
            .args(["--grpc-addr", &grpc_addr.to_string()])
            .args(["--http-addr", &http_addr.to_string()])
            .args(["--admin-addr", &admin_addr.to_string()])
            .args(["--pusher-app-id", APP_ID, "--pusher-key", KEY])
            .args(["--pusher-api-url", pusher_api_url])
            .args(extra)
            // Reconciliation asks Pusher for its channel list, and there is no Pusher here.
            .args(["--reconcile-interval", "0"])
            .env("PUSHER_SECRET", SECRET)
            .env("RUST_LOG", log)
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = redis_url {
            command.env("REDIS_URL", url);
        }
        let mut child = command
            .spawn()
            .context("cannot start the occupancy binary")?;
        let stderr = child
            .stderr
            .take()
            .context("the occupancy binary has no stderr pipe")?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let log_lines = Arc::new(AtomicU64::new(0));
        let (sink, count) = (tail.clone(), log_lines.clone());
        // The log is drained as production's collector would drain it; only a tail is kept.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                count.fetch_add(1, Ordering::Relaxed);
                let mut tail = sink.lock().unwrap_or_else(PoisonError::into_inner);
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut service = Self {
            child,
            grpc_addr,
            http_addr,
            tail,
            log_lines,
        };
        service.wait_until_ready(Duration::from_secs(30)).await?;
        Ok(service)
    }

    /// Asks `IsOccupied` until it answers, the process exits or `timeout` passes.
    async fn wait_until_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "occupancy exited during start-up ({status}); log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(channel) = self.channel().await {
                let request = IsOccupiedRequest {
                    channel: "bench-ready".into(),
                    ..Default::default()
                };
                if OccupancyClient::new(channel)
                    .is_occupied(request)
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "occupancy did not answer within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new gRPC channel (one HTTP/2 connection) to the gate.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.grpc_addr))?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await?)
    }

    /// The webhook URL Pusher would post to.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/pusher", self.http_addr)
    }

    /// The process id, for its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the service logged.
    pub fn log_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Resident memory of process `pid` in bytes (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    proc_status_kb(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident memory of process `pid` in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    proc_status_kb(pid, "VmHWM:").map(|kb| kb * 1024)
}

fn proc_status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// Linux reports CPU time in clock ticks of 1/100 s (`USER_HZ`, 100 on every mainstream build).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time (user and system) process `pid` has used so far. CPU time per request is what the
/// same work costs whatever else the machine runs, where requests/s depends on what else runs.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime 14 and stime 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("no command name in {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no CPU time in {path}"))
    };
    let total = ticks(14 - 3)? + ticks(15 - 3)?;
    Ok(Duration::from_millis(total * 1000 / TICKS_PER_SECOND))
}

/// The two first fields of a `schedstat` file: time on a CPU and time ready but waiting for
/// one, both in nanoseconds.
fn schedstat(path: &str) -> anyhow::Result<(Duration, Duration)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(on_cpu)), Some(Ok(waiting))) => {
            Ok((Duration::from_nanos(on_cpu), Duration::from_nanos(waiting)))
        }
        _ => bail!("unexpected {path}: {text:?}"),
    }
}

/// Time the live threads of process `pid` have spent ready to run but waiting for a CPU. On a
/// machine shared with other work this is the latency nobody's code caused.
pub fn run_queue_wait(pid: u32) -> anyhow::Result<Duration> {
    let dir = format!("/proc/{pid}/task");
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between listing and reading; it no longer waits for anything.
        if let Ok((_, waiting)) = schedstat(&path.to_string_lossy()) {
            total += waiting;
        }
    }
    Ok(total)
}

/// CPU time the calling thread has used, in nanoseconds' resolution.
pub fn thread_cpu_time() -> anyhow::Result<Duration> {
    schedstat("/proc/thread-self/schedstat").map(|(on_cpu, _)| on_cpu)
}
