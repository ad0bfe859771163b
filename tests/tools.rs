//! The operator tools, run as an operator runs them: the real `occupancy` binary with a tool
//! name, against the real service started by `support` (with Redis where the store matters),
//! over real sockets, with tokens and TLS made here.

mod support;

use std::process::{Command, Stdio};

use support::{KEY, Occupancy, RedisServer, SECRET, TestPki};

/// What one tool run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `occupancy ARGS` with none of the variables the tools read, plus `envs`.
fn occupancy(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_occupancy"))
        .args(args)
        .env_remove("PUSHER_APP_ID")
        .env_remove("PUSHER_KEY")
        .env_remove("PUSHER_SECRET")
        .env_remove("OCCUPANCY_TOKEN")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run occupancy");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `send-webhook` to `gate` with the key and secret in the environment, as on a host where the
/// service's environment file is loaded.
fn send_webhook(gate: &Occupancy, secret: &str, args: &[&str]) -> Run {
    let url = gate.webhook_url();
    let mut argv = vec!["send-webhook", "--url", &url];
    argv.extend_from_slice(args);
    occupancy(&argv, &[("PUSHER_KEY", KEY), ("PUSHER_SECRET", secret)])
}

/// `check` against `gate`'s plaintext address.
fn check(gate: &Occupancy, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let addr = gate.grpc_addr.to_string();
    let mut argv = vec!["check", "--addr", &addr];
    argv.extend_from_slice(args);
    occupancy(&argv, envs)
}

#[test]
fn a_webhook_sent_by_hand_is_what_check_then_reports() {
    let redis = RedisServer::start();
    let gate = Occupancy::start(&["--redis-url".into(), redis.url()]);

    let sent = send_webhook(&gate, SECRET, &["occupied", "job-1", "private-job-2"]);
    assert_eq!(sent.code, 0, "{}", sent.output());
    assert!(
        sent.stdout.starts_with("HTTP 200 OK\n"),
        "{}",
        sent.output()
    );
    assert!(sent.stdout.contains(r#""occupied":2"#), "{}", sent.output());

    let asked = check(&gate, &["job-1", "private-job-2", "job-3"], &[]);
    assert_eq!(asked.code, 0, "{}", asked.output());
    assert_eq!(
        asked.stdout,
        "job-1 occupied\nprivate-job-2 occupied\njob-3 vacant\n"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    assert_eq!(
        rt.block_on(redis.members("pusher:channels")),
        ["job-1", "private-job-2"],
        "the set encoders read from Redis"
    );

    // Stamped with the current time, so it is newer than the occupied event and applied.
    let sent = send_webhook(&gate, SECRET, &["vacated", "job-1"]);
    assert_eq!(sent.code, 0, "{}", sent.output());
    assert!(sent.stdout.contains(r#""vacated":1"#), "{}", sent.output());
    let asked = check(&gate, &["job-1", "private-job-2"], &[]);
    assert_eq!(asked.code, 0, "{}", asked.output());
    assert_eq!(asked.stdout, "job-1 vacant\nprivate-job-2 occupied\n");

    let log = gate.log_text();
    assert!(!log.contains(SECRET), "secret logged:\n{log}");
}

#[test]
fn a_wrong_secret_gets_401_and_exit_1() {
    let gate = Occupancy::start(&[]);
    let sent = send_webhook(&gate, "not-the-secret", &["occupied", "job-1"]);
    assert_eq!(sent.code, 1, "{}", sent.output());
    assert!(
        sent.stdout.starts_with("HTTP 401 Unauthorized\n"),
        "{}",
        sent.output()
    );
    assert!(
        sent.stdout.contains("X-Pusher-Signature"),
        "{}",
        sent.output()
    );
    assert!(
        !sent.output().contains("not-the-secret"),
        "{}",
        sent.output()
    );

    let asked = check(&gate, &["job-1"], &[]);
    assert_eq!(asked.stdout, "job-1 vacant\n", "{}", asked.output());
}

#[test]
fn bad_usage_is_one_line_exit_2_and_never_the_secret() {
    let secret = ("PUSHER_SECRET", "very-secret-value");
    for (args, envs, mentions) in [
        (
            &["send-webhook", "occupied", "job-1"][..],
            &[secret][..],
            "--pusher-key",
        ),
        (
            &["send-webhook", "occupied", "job-1"][..],
            &[("PUSHER_KEY", KEY)][..],
            "--pusher-secret",
        ),
        (
            &["send-webhook", "--pusher-key", "a:b", "occupied", "job-1"][..],
            &[secret][..],
            "PUSHER_KEY",
        ),
        (
            &["send-webhook", "--url", "ftp://x/", "occupied", "job-1"][..],
            &[secret, ("PUSHER_KEY", KEY)][..],
            "--url",
        ),
        (
            &["send-webhook", "occupied"][..],
            &[secret, ("PUSHER_KEY", KEY)][..],
            "CHANNEL",
        ),
        (
            &["send-webhook", "joined", "job-1"][..],
            &[secret, ("PUSHER_KEY", KEY)][..],
            "joined",
        ),
        (
            &["send-webhook", "occupied", "job 1"][..],
            &[secret, ("PUSHER_KEY", KEY)][..],
            "CHANNEL",
        ),
        (&["check"][..], &[][..], "CHANNEL"),
        (
            &["check", "--addr", "http://127.0.0.1:1", "job-1"][..],
            &[][..],
            "--addr",
        ),
        (
            &["check", "--tls-ca", "/nonexistent/ca.pem", "job-1"][..],
            &[][..],
            "--tls-ca",
        ),
        (
            &["check", "job-1"][..],
            &[("OCCUPANCY_TOKEN", "very-secret-value and more")][..],
            "OCCUPANCY_TOKEN",
        ),
    ] {
        let run = occupancy(args, envs);
        assert_eq!(run.code, 2, "{args:?}: {}", run.output());
        assert_eq!(run.stdout, "", "{args:?}");
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.starts_with("occupancy "), "{}", run.stderr);
        assert!(run.stderr.contains(mentions), "{args:?}: {}", run.stderr);
        assert!(
            !run.output().contains("very-secret-value"),
            "secret echoed: {}",
            run.output()
        );
    }
}

#[test]
fn nothing_listening_is_one_line_and_exit_1() {
    let port = support::free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/webhooks/pusher");
    let sent = occupancy(
        &["send-webhook", "--url", &url, "occupied", "job-1"],
        &[("PUSHER_KEY", KEY), ("PUSHER_SECRET", SECRET)],
    );
    assert_eq!(sent.code, 1, "{}", sent.output());
    assert_eq!(sent.stderr.trim().lines().count(), 1, "{}", sent.stderr);
    assert!(
        sent.stderr.contains("cannot send the webhook"),
        "{}",
        sent.stderr
    );
    assert!(!sent.output().contains(SECRET));

    let addr = format!("127.0.0.1:{port}");
    let asked = occupancy(&["check", "--addr", &addr, "job-1"], &[]);
    assert_eq!(asked.code, 1, "{}", asked.output());
    assert_eq!(asked.stderr.trim().lines().count(), 1, "{}", asked.stderr);
    assert!(asked.stderr.contains("cannot connect"), "{}", asked.stderr);
}

#[test]
fn check_carries_the_token_a_protected_gate_needs() {
    let gate = Occupancy::start(&["--grpc-tokens".into(), "tok-new,tok-old".into()]);

    let without = check(&gate, &["job-1"], &[]);
    assert_eq!(without.code, 1, "{}", without.output());
    assert_eq!(without.stdout, "");
    assert!(
        without.stderr.contains("job-1: UNAUTHENTICATED: "),
        "{}",
        without.stderr
    );

    let wrong = check(&gate, &["--token", "tok-wrong", "job-1"], &[]);
    assert_eq!(wrong.code, 1, "{}", wrong.output());
    assert!(wrong.stderr.contains("UNAUTHENTICATED"), "{}", wrong.stderr);
    assert!(!wrong.output().contains("tok-wrong"), "{}", wrong.output());

    let flag = check(&gate, &["--token", "tok-new", "job-1"], &[]);
    assert_eq!(flag.code, 0, "{}", flag.output());
    assert_eq!(flag.stdout, "job-1 vacant\n");

    let env = check(&gate, &["job-1"], &[("OCCUPANCY_TOKEN", "tok-old")]);
    assert_eq!(env.code, 0, "{}", env.output());
    assert_eq!(env.stdout, "job-1 vacant\n");
}

#[test]
fn check_speaks_tls_with_the_ca_given() {
    let pki = TestPki::create();
    let gate = Occupancy::start(&[
        "--grpc-tls-cert".into(),
        pki.server_cert.display().to_string(),
        "--grpc-tls-key".into(),
        pki.server_key.display().to_string(),
    ]);
    let sent = send_webhook(&gate, SECRET, &["occupied", "job-1"]);
    assert_eq!(sent.code, 0, "{}", sent.output());

    let ca = pki.ca_cert.display().to_string();
    let port = gate.grpc_addr.port();
    // By IP (the certificate names 127.0.0.1) and by name.
    for addr in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let asked = occupancy(
            &["check", "--addr", &addr, "--tls-ca", &ca, "job-1", "job-2"],
            &[],
        );
        assert_eq!(asked.code, 0, "{addr}: {}", asked.output());
        assert_eq!(asked.stdout, "job-1 occupied\njob-2 vacant\n");
    }

    // Plaintext against the TLS listener gets no answer.
    let plaintext = check(&gate, &["--timeout", "2s", "job-1"], &[]);
    assert_eq!(plaintext.code, 1, "{}", plaintext.output());
    assert_eq!(plaintext.stdout, "");
    assert_eq!(
        plaintext.stderr.trim().lines().count(),
        1,
        "{}",
        plaintext.stderr
    );

    // A certificate for another name is refused.
    let addr = format!("127.0.0.1:{port}");
    let other = occupancy(
        &[
            "check",
            "--addr",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-domain",
            "gate.example.com",
            "job-1",
        ],
        &[],
    );
    assert_eq!(other.code, 1, "{}", other.output());
}

#[test]
fn check_presents_a_client_certificate_when_the_gate_requires_one() {
    let pki = TestPki::create();
    let gate = Occupancy::start(&[
        "--grpc-tls-cert".into(),
        pki.server_cert.display().to_string(),
        "--grpc-tls-key".into(),
        pki.server_key.display().to_string(),
        "--grpc-tls-client-ca".into(),
        pki.ca_cert.display().to_string(),
    ]);
    let addr = format!("localhost:{}", gate.grpc_addr.port());
    let ca = pki.ca_cert.display().to_string();
    let without = occupancy(&["check", "--addr", &addr, "--tls-ca", &ca, "job-1"], &[]);
    assert_eq!(without.code, 1, "{}", without.output());

    let (cert, key) = (
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );
    let with = occupancy(
        &[
            "check",
            "--addr",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "job-1",
        ],
        &[],
    );
    assert_eq!(with.code, 0, "{}", with.output());
    assert_eq!(with.stdout, "job-1 vacant\n");
}

#[test]
fn help_documents_the_tools_without_showing_the_secret() {
    let envs = [
        ("PUSHER_SECRET", "very-secret-value"),
        ("OCCUPANCY_TOKEN", "very-secret-value"),
    ];
    let server = occupancy(&["--help"], &envs);
    assert_eq!(server.code, 0);
    assert!(
        server.stdout.contains("occupancy send-webhook"),
        "{}",
        server.stdout
    );
    assert!(
        server.stdout.contains("occupancy check"),
        "{}",
        server.stdout
    );

    let send = occupancy(&["send-webhook", "--help"], &envs);
    assert_eq!(send.code, 0);
    for needle in [
        "PUSHER_KEY",
        "PUSHER_SECRET",
        "--url",
        "occupied",
        "vacated",
        "Examples",
    ] {
        assert!(send.stdout.contains(needle), "{needle}: {}", send.stdout);
    }

    let check = occupancy(&["check", "--help"], &envs);
    assert_eq!(check.code, 0);
    for needle in [
        "--addr",
        "--app-id",
        "OCCUPANCY_TOKEN",
        "--tls-ca",
        "Examples",
    ] {
        assert!(check.stdout.contains(needle), "{needle}: {}", check.stdout);
    }
    for run in [&server, &send, &check] {
        assert!(
            !run.output().contains("very-secret-value"),
            "{}",
            run.output()
        );
    }
}
