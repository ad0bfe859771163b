//! A bad `--redis-url` of every kind (single, sentinel, cluster, TLS with a bad CA) stops
//! start-up with exit code 2 and one line naming `--redis-url / REDIS_URL` (or the CA option),
//! never echoing the password.

use std::process::{Command, Stdio};

const PASSWORD: &str = "url-secret-do-not-echo";

fn start_up_error(url: &str, extra: &[&str]) -> (i32, Vec<String>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_occupancy"))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(extra)
        .env_remove("REDIS_URL")
        .env_remove("OCCUPANCY_REDIS_CA")
        .env("PUSHER_APP_ID", "1")
        .env("PUSHER_KEY", "k")
        .env("PUSHER_SECRET", "s")
        .env("REDIS_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("run occupancy");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = stderr
        .lines()
        .filter(|l| l.contains("occupancy:"))
        .map(str::to_owned)
        .collect();
    (output.status.code().unwrap_or(-1), lines, stderr)
}

#[test]
fn bad_urls_of_every_kind_stop_start_up_without_echoing_the_password() {
    for url in [
        format!("redis://:{PASSWORD}@127.0.0.1:notaport/"),
        format!("redis+sentinel://:{PASSWORD}@127.0.0.1:26379"),
        format!("redis+sentinel://:{PASSWORD}@127.0.0.1:26379,/primary"),
        format!("redis+sentinel://:{PASSWORD}@127.0.0.1:26379/primary/db"),
        format!("redis+sentinel://:{PASSWORD}@127.0.0.1:26379/primary?{PASSWORD}=x"),
        format!("redis+cluster://:{PASSWORD}@127.0.0.1:7000,127.0.0.1:99999"),
        format!("redis+cluster://:{PASSWORD}@127.0.0.1:7000/1"),
        format!("rediss+cluster://:{PASSWORD}@:7000"),
        format!("redis+mystery://:{PASSWORD}@127.0.0.1"),
    ] {
        let (code, lines, stderr) = start_up_error(&url, &[]);
        assert_eq!(code, 2, "{url}: {stderr}");
        assert_eq!(lines.len(), 1, "one line for {url}: {stderr}");
        assert!(lines[0].contains("--redis-url / REDIS_URL"), "{stderr}");
        assert!(!stderr.contains(PASSWORD), "password echoed: {stderr}");
    }
}

#[test]
fn a_ca_that_cannot_be_used_is_named() {
    let dir = std::env::temp_dir().join(format!("occupancy-redis-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let not_pem = dir.join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate").expect("write");
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:6380/");
    for (path, url) in [
        (not_pem.display().to_string(), url.clone()),
        (dir.join("missing.pem").display().to_string(), url),
    ] {
        let (code, lines, stderr) = start_up_error(&url, &["--redis-ca", &path]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("--redis-ca / OCCUPANCY_REDIS_CA"),
            "{stderr}"
        );
        assert!(!stderr.contains(PASSWORD), "password echoed: {stderr}");
    }
    // A CA for a plaintext URL is a mistake worth stopping for.
    let pem = dir.join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let (code, lines, stderr) = start_up_error(
        &format!("redis://:{PASSWORD}@127.0.0.1:6379/"),
        &["--redis-ca", &pem.display().to_string()],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("--redis-url / REDIS_URL") && lines[0].contains("--redis-ca"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "password echoed: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
