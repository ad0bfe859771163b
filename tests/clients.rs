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

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use support::{APP_ID, KEY, Occupancy, PusherStub, RedisServer, SECRET};

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
    let service = Occupancy::start(&[
        "--redis-url".into(),
        redis.url(),
        "--pusher-api-url".into(),
        stub.url(),
    ]);
    let dead = format!("127.0.0.1:{}", support::free_port());

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
            .env("OCCUPANCY_ADDR", service.grpc_addr.to_string())
            .env("OCCUPANCY_WEBHOOK_URL", service.webhook_url())
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
