//! Runs every client library's own test suite against the real service.
//!
//! One real `redis-server`, the real `occupancy` binary on it and the signature-checking Pusher
//! stand-in are started once; then each `clients/<lang>` suite runs with its language's usual
//! runner and the environment described in `clients/CONTRACT.md`. A missing toolchain fails the
//! run with what to install: a suite that silently does not run proves nothing.
//!
//! `cargo test --test clients` runs all of them; `cargo test --test clients -- go python` runs
//! some.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use support::{APP_ID, KEY, Occupancy, PusherStub, RedisServer, SECRET, TestPki};

/// Tokens the secure gate accepts: a current one and the one being rotated out.
const TOKEN: &str = "client-suite-token";
const TOKEN_OLD: &str = "client-suite-token-old";

/// A client suite: its folder under `clients/`, and the command that runs its tests there.
struct Suite {
    lang: &'static str,
    program: &'static str,
    args: &'static [&'static str],
}

const SUITES: &[Suite] = &[
    Suite {
        lang: "ruby",
        program: "ruby",
        args: &[
            "-Ilib",
            "-Itest",
            "-e",
            "Dir['test/**/*_test.rb'].sort.each { |f| require File.expand_path(f) }",
        ],
    },
    Suite {
        lang: "python",
        program: "python3",
        args: &["-m", "pytest", "-q"],
    },
    Suite {
        lang: "go",
        program: "go",
        args: &["test", "-count=1", "./..."],
    },
    Suite {
        lang: "node",
        program: "npm",
        args: &["test"],
    },
    Suite {
        lang: "java",
        program: "mvn",
        args: &["-B", "-q", "test"],
    },
];

fn main() -> ExitCode {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let unknown: Vec<&String> = wanted
        .iter()
        .filter(|w| SUITES.iter().all(|s| s.lang != w.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!("unknown client suite(s) {unknown:?}; known: ruby python go node java");
        return ExitCode::FAILURE;
    }
    let suites: Vec<&Suite> = SUITES
        .iter()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s.lang))
        .collect();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let redis = RedisServer::start();
    let stub = PusherStub::start_blocking();
    let common = vec![
        "--redis-url".to_owned(),
        redis.url(),
        "--pusher-api-url".to_owned(),
        stub.url(),
    ];
    let service = Occupancy::start(&common);
    let pki = TestPki::create();
    let mut secure_args = common.clone();
    secure_args.extend([
        "--grpc-tls-cert".to_owned(),
        pki.server_cert.display().to_string(),
        "--grpc-tls-key".to_owned(),
        pki.server_key.display().to_string(),
        "--grpc-tokens".to_owned(),
        format!("{TOKEN},{TOKEN_OLD}"),
    ]);
    let secure = Occupancy::start(&secure_args);
    let dead = format!("127.0.0.1:{}", support::free_port());
    let (grpc_addr, webhook_url) = (service.grpc_addr, service.webhook_url());
    let service = Arc::new(Mutex::new(service));
    let (harness_url, _harness_runtime) = control_server(service.clone());

    let (mut passed, mut failed) = (0, 0);
    for suite in suites {
        let dir = root.join("clients").join(suite.lang);
        let started = Instant::now();
        println!(
            "=== client suite {}: {} {}",
            suite.lang,
            suite.program,
            suite.args.join(" ")
        );
        let result = Command::new(suite.program)
            .args(suite.args)
            .current_dir(&dir)
            .env("OCCUPANCY_ADDR", grpc_addr.to_string())
            .env("OCCUPANCY_WEBHOOK_URL", &webhook_url)
            .env(
                "OCCUPANCY_SECURE_ADDR",
                format!("localhost:{}", secure.grpc_addr.port()),
            )
            .env("OCCUPANCY_TLS_CA", &pki.ca_cert)
            .env("OCCUPANCY_TEST_TOKEN", TOKEN)
            .env("OCCUPANCY_TEST_TOKEN_OLD", TOKEN_OLD)
            .env("OCCUPANCY_HARNESS_URL", &harness_url)
            .env("OCCUPANCY_DEAD_ADDR", &dead)
            .env("TEST_PUSHER_APP_ID", APP_ID)
            .env("TEST_PUSHER_KEY", KEY)
            .env("TEST_PUSHER_SECRET", SECRET)
            .env("PUSHER_STUB_URL", stub.url())
            .status();
        let ok = match result {
            Ok(status) if status.success() => true,
            Ok(status) => {
                eprintln!("client suite {} failed: {status}", suite.lang);
                false
            }
            Err(err) => {
                eprintln!(
                    "client suite {} could not start `{}` ({err}): install its toolchain with \
                     `bash clients/{}/install-deps.sh`, or run everything with `bash tests/run-all.sh`",
                    suite.lang, suite.program, suite.lang
                );
                false
            }
        };
        println!(
            "=== client suite {}: {} in {:.1}s",
            suite.lang,
            if ok { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("clients: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Serves `POST /restart-gate` for client suites that test surviving a gate restart: the
/// plaintext gate is stopped and started again at the same addresses, and the answer comes once
/// it listens again.
fn control_server(service: Arc<Mutex<Occupancy>>) -> (String, tokio::runtime::Runtime) {
    use axum::routing::post;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("harness runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the harness control port");
    let addr: SocketAddr = listener.local_addr().expect("harness address");
    let app = axum::Router::new().route(
        "/restart-gate",
        post(move || {
            let service = service.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    service.lock().unwrap_or_else(|e| e.into_inner()).restart();
                })
                .await
                .map(|()| "restarted")
                .map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), runtime)
}
