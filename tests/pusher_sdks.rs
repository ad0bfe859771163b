//! Pusher's official server SDKs (Node `pusher`, Python `pusher`, Java `pusher-http-java`)
//! publishing through the gate's Pusher HTTP API listener (`--pusher-api-addr`), each configured
//! only with its own host/port options, as a user changing one setting would.
//!
//! Each test starts a real `redis-server`, the signature-checking stand-in for Pusher
//! (`support/sdk_stub.rs`) and the real `occupancy` binary twice: one gate whose upstream is the
//! stand-in, and one whose upstream is a port where nothing listens. It then runs one SDK suite
//! under `tests/sdk/<lang>` with its language's usual runner and the environment described in
//! `tests/sdk/README.md`; the test fails when the suite fails, and when the runner is missing
//! (install everything with `bash tests/run-all.sh`): a suite that does not run proves nothing.
//!
//! `cargo test --test pusher_sdks` runs the three; `cargo test --test pusher_sdks node` one.

#[path = "support/sdk_stub.rs"]
mod sdk_stub;
mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sdk_stub::SdkStub;
use support::{APP_ID, KEY, Occupancy, RedisServer, SECRET, free_port};

/// The encryption master key the SDKs encrypt `private-encrypted-` channels with (32 bytes,
/// base64). Only the SDKs and the suites' decryption know it: the gate never sees it.
const ENCRYPTION_MASTER_KEY_BASE64: &str = "b2NjdXBhbmN5LXRlc3QtbWFzdGVyLWtleS0zMmJ5dGU=";

/// The gates' limit on one Pusher request (`--pusher-timeout`), shorter than the default 3 s so
/// that the suites' slow-Pusher tests stay short; the suites make the stand-in slower than this.
const UPSTREAM_TIMEOUT_MS: u64 = 1000;

/// How long one suite may take before it is killed and the test fails.
const SUITE_LIMIT: Duration = Duration::from_secs(75);

#[test]
fn node_sdk_through_the_gate() {
    run_suite("node", "node", &["--test", "--test-reporter=spec"]);
}

#[test]
fn python_sdk_through_the_gate() {
    run_suite(
        "python",
        "python3",
        &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
    );
}

#[test]
fn java_sdk_through_the_gate() {
    run_suite(
        "java",
        "mvn",
        &[
            "-B",
            "--no-transfer-progress",
            "-Dstyle.color=never",
            "test",
        ],
    );
}

/// A gate with the Pusher API listener on a port of its own choosing among free ones.
struct Gate {
    service: Occupancy,
    api_port: u16,
}

fn start_gate(redis: &RedisServer, upstream: &str) -> Gate {
    let api_port = free_port();
    let service = Occupancy::start(&[
        "--redis-url".to_owned(),
        redis.url(),
        "--pusher-api-url".to_owned(),
        upstream.to_owned(),
        "--pusher-api-addr".to_owned(),
        format!("127.0.0.1:{api_port}"),
        "--pusher-timeout".to_owned(),
        format!("{UPSTREAM_TIMEOUT_MS}ms"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", api_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Pusher API listener did not listen on 127.0.0.1:{api_port}; log:\n{}",
            service.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Gate { service, api_port }
}

fn run_suite(lang: &str, program: &str, args: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk")
        .join(lang);
    let redis = RedisServer::start();
    let stub = SdkStub::start();
    let gate = start_gate(&redis, &stub.url());
    let closed_port = free_port();
    let orphan = start_gate(&redis, &format!("http://127.0.0.1:{closed_port}"));

    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(&dir)
        .env("PUSHER_GATE_HOST", "127.0.0.1")
        .env("PUSHER_GATE_PORT", gate.api_port.to_string())
        .env("PUSHER_ORPHAN_GATE_PORT", orphan.api_port.to_string())
        .env("PUSHER_CLOSED_PORT", closed_port.to_string())
        .env("PUSHER_APP_ID", APP_ID)
        .env("PUSHER_KEY", KEY)
        .env("PUSHER_SECRET", SECRET)
        .env(
            "PUSHER_ENCRYPTION_MASTER_KEY_BASE64",
            ENCRYPTION_MASTER_KEY_BASE64,
        )
        .env("OCCUPANCY_WEBHOOK_URL", gate.service.webhook_url())
        .env("PUSHER_STUB_URL", stub.url())
        .env(
            "STUB_SUBSCRIPTION_COUNT",
            sdk_stub::SUBSCRIPTION_COUNT.to_string(),
        )
        .env("STUB_USER_COUNT", sdk_stub::USER_COUNT.to_string())
        .env(
            "PUSHER_GATE_UPSTREAM_TIMEOUT_MS",
            UPSTREAM_TIMEOUT_MS.to_string(),
        )
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the {lang} SDK suite could not start `{program}` ({e}): install what it needs \
                 with `bash tests/run-all.sh`"
            )
        });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the suite") {
            break status;
        }
        if started.elapsed() > SUITE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the {lang} SDK suite ran longer than {SUITE_LIMIT:?}; the gate's last log lines:\n{}",
                log_tail(&gate.service)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "{lang} SDK suite: {status} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "the {lang} SDK suite failed ({status}); its output is above. The gate's last log lines:\n{}",
        log_tail(&gate.service)
    );
}

/// The end of the gate's log, enough to see why a request was refused or failed upstream.
fn log_tail(service: &Occupancy) -> String {
    let log = service.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
