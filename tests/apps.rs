//! Several Pusher apps from one `--apps-file`, against the real binary and a real `redis-server`:
//! each app's webhooks land only in its own set, gRPC requests are routed by `app_id`, publishing
//! is signed with the named app's own credentials, and a bad combination stops start-up with one
//! line that echoes no secret.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::{IsOccupiedRequest, PublishIfOccupiedRequest};
use serde_json::json;
use support::multi_app::MultiAppStub;
use support::{Occupancy, RedisServer, post_signed, webhook_body};
use tonic::Code;
use tonic::transport::Channel;

const A_ID: &str = "1001";
const A_KEY: &str = "key-a";
const A_SECRET: &str = "secret-a-do-not-log";
const B_ID: &str = "2002";
const B_KEY: &str = "key-b";
const B_SECRET: &str = "secret-b-do-not-log";
const B_OLD_KEY: &str = "key-b-old";
const B_OLD_SECRET: &str = "secret-b-old-do-not-log";
const A_SET: &str = "pusher:1001:channels";
const B_SET: &str = "pusher:2002:channels";

/// A fresh directory holding `apps.toml` with `text`; removed on drop.
struct AppsFile {
    dir: PathBuf,
}

impl AppsFile {
    fn write(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "occupancy-apps-test-{}-{}",
            std::process::id(),
            support::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        std::fs::write(dir.join("apps.toml"), text).expect("write the apps file");
        Self { dir }
    }

    fn path(&self) -> String {
        self.dir.join("apps.toml").display().to_string()
    }
}

impl Drop for AppsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn two_apps(api_url: &str) -> String {
    format!(
        "[[app]]\nid = \"{A_ID}\"\nkey = \"{A_KEY}\"\nsecret = \"{A_SECRET}\"\napi_url = \"{api_url}\"\n\n\
         [[app]]\nid = \"{B_ID}\"\nkey = \"{B_KEY}\"\nsecret = \"{B_SECRET}\"\n\
         extra_keys = [\"{B_OLD_KEY}:{B_OLD_SECRET}\"]\napi_url = \"{api_url}\"\n"
    )
}

async fn is_occupied(
    gate: &OccupancyClient<Channel>,
    app_id: &str,
    channel: &str,
) -> Result<bool, tonic::Status> {
    gate.clone()
        .is_occupied(IsOccupiedRequest {
            channel: channel.into(),
            app_id: app_id.into(),
        })
        .await
        .map(|r| r.into_inner().occupied)
}

async fn publish(
    gate: &OccupancyClient<Channel>,
    app_id: &str,
    channels: &[&str],
) -> Result<(Vec<String>, Vec<String>), tonic::Status> {
    gate.clone()
        .publish_if_occupied(PublishIfOccupiedRequest {
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            event: "progress".into(),
            data: "{}".into(),
            socket_id: String::new(),
            app_id: app_id.into(),
            ..Default::default()
        })
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.published, r.skipped)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_has_its_own_set_keys_and_pusher_credentials() {
    let stub = MultiAppStub::start(&[(A_ID, A_KEY, A_SECRET), (B_ID, B_KEY, B_SECRET)]).await;
    let redis = RedisServer::start();
    let file = AppsFile::write(&two_apps(&stub.url()));
    let service = Occupancy::start(&[
        "--apps-file".into(),
        file.path(),
        "--redis-url".into(),
        redis.url(),
    ]);
    let gate = OccupancyClient::new(service.channel().await);
    let url = service.webhook_url();

    let send =
        |key: &'static str, secret: &'static str, events: Vec<(&'static str, &'static str)>| {
            let url = url.clone();
            async move {
                let (status, body) = post_signed(&url, key, secret, &webhook_body(&events)).await;
                assert_eq!(status, StatusCode::OK, "{key}: {body}");
            }
        };
    send(
        A_KEY,
        A_SECRET,
        vec![
            ("channel_occupied", "shared"),
            ("channel_occupied", "only-a"),
        ],
    )
    .await;
    send(B_KEY, B_SECRET, vec![("channel_occupied", "only-b")]).await;
    // Signed with B's older token (key rotation): B's set.
    send(
        B_OLD_KEY,
        B_OLD_SECRET,
        vec![("channel_occupied", "rotated-b")],
    )
    .await;
    // B vacating a channel it never had leaves A's "shared" alone.
    send(B_KEY, B_SECRET, vec![("channel_vacated", "shared")]).await;

    assert_eq!(redis.members(A_SET).await, ["only-a", "shared"]);
    assert_eq!(redis.members(B_SET).await, ["only-b", "rotated-b"]);
    assert!(
        redis.members("pusher:channels").await.is_empty(),
        "with several apps the classic key is not used"
    );

    // A key of one app with the secret of the other is refused and changes nothing.
    let (status, body) = post_signed(
        &url,
        A_KEY,
        B_SECRET,
        &webhook_body(&[("channel_occupied", "forged")]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(redis.members(A_SET).await, ["only-a", "shared"]);

    // IsOccupied routed by app_id.
    assert!(is_occupied(&gate, A_ID, "only-a").await.expect("A answers"));
    assert!(!is_occupied(&gate, B_ID, "only-a").await.expect("B answers"));
    assert!(
        is_occupied(&gate, B_ID, "rotated-b")
            .await
            .expect("B answers")
    );
    assert!(!is_occupied(&gate, B_ID, "shared").await.expect("B answers"));
    let err = is_occupied(&gate, "", "only-a")
        .await
        .expect_err("ambiguous");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("app_id")
            && err.message().contains(A_ID)
            && err.message().contains(B_ID),
        "the message names the field and both ids: {err:?}"
    );
    let err = is_occupied(&gate, "3003", "only-a")
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // PublishIfOccupied: the same routing, and Pusher called as the named app.
    let err = publish(&gate, "", &["only-a"])
        .await
        .expect_err("ambiguous");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains(A_ID) && err.message().contains(B_ID),
        "{err:?}"
    );
    let err = publish(&gate, "3003", &["only-a"])
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(stub.calls().is_empty(), "no call for a refused request");

    let (published, skipped) = publish(&gate, B_ID, &["only-b", "only-a", "rotated-b"])
        .await
        .expect("publish as B");
    assert_eq!(published, ["only-b", "rotated-b"]);
    assert_eq!(skipped, ["only-a"]);
    let (published, skipped) = publish(&gate, A_ID, &["only-b", "only-a"])
        .await
        .expect("publish as A");
    assert_eq!(
        (published, skipped),
        (vec!["only-a".to_owned()], vec!["only-b".to_owned()])
    );

    let calls = stub.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        (calls[0].app_id.as_str(), calls[0].auth_key.as_str()),
        (B_ID, B_KEY),
        "{calls:?}"
    );
    assert!(
        calls[0].signature_valid,
        "signed with B's secret: {calls:?}"
    );
    assert_eq!(
        calls[0].body,
        json!({"name": "progress", "data": "{}", "channels": ["only-b", "rotated-b"]})
    );
    assert_eq!(
        (calls[1].app_id.as_str(), calls[1].auth_key.as_str()),
        (A_ID, A_KEY),
        "{calls:?}"
    );
    assert!(
        calls[1].signature_valid,
        "signed with A's secret: {calls:?}"
    );

    let log = service.log_text();
    for secret in [A_SECRET, B_SECRET, B_OLD_SECRET] {
        assert!(!log.contains(secret), "secret in the log:\n{log}");
    }
}

/// Runs the binary with `args` (and `envs`), expecting it to stop by itself within 10 s; returns
/// its exit code and stderr.
fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_occupancy"));
    command
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("PUSHER_APP_ID")
        .env_remove("PUSHER_KEY")
        .env_remove("PUSHER_SECRET")
        .env_remove("OCCUPANCY_APPS_FILE")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start the occupancy binary");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait for occupancy") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(
                &mut child.stderr.take().expect("stderr piped"),
                &mut stderr,
            )
            .expect("read stderr");
            return (status.code(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("occupancy kept running with {args:?}: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn single_app_flags_beside_an_apps_file_stop_start_up_with_one_line() {
    let file = AppsFile::write(&two_apps("http://127.0.0.1:1"));
    let path = file.path();
    for (args, envs) in [
        (vec!["--apps-file", &path, "--pusher-app-id", "1"], vec![]),
        (vec!["--apps-file", &path, "--pusher-key", "k"], vec![]),
        (
            vec![
                "--apps-file",
                &path,
                "--pusher-api-url",
                "http://127.0.0.1:1",
            ],
            vec![],
        ),
        (vec!["--apps-file", &path, "--redis-key", "x"], vec![]),
        (
            vec![
                "--apps-file",
                &path,
                "--pusher-secret",
                "flagsecret-do-not-echo",
            ],
            vec![],
        ),
    ] {
        let (code, stderr) = run_to_exit(&args, &envs);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line expected:\n{stderr}"
        );
        assert!(
            stderr.contains("--apps-file"),
            "{args:?}: names the option: {stderr}"
        );
        assert!(!stderr.contains("flagsecret"), "secret echoed: {stderr}");
    }
}

/// Found by this suite: `--pusher-cluster` was silently ignored beside `--apps-file` (each app
/// names its own cluster or api_url), so an operator's cluster choice did nothing.
#[test]
fn pusher_cluster_beside_an_apps_file_is_refused_not_ignored() {
    let file = AppsFile::write(&two_apps("http://127.0.0.1:1"));
    for (args, envs) in [
        (
            vec![
                "--apps-file",
                file.path().as_str(),
                "--pusher-cluster",
                "eu",
            ],
            vec![],
        ),
        (
            vec!["--apps-file", file.path().as_str()],
            vec![("PUSHER_CLUSTER", "eu")],
        ),
    ] {
        let (code, stderr) = run_to_exit(&args, &envs);
        assert_eq!(code, Some(2), "{args:?} {envs:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one line expected:\n{stderr}"
        );
        assert!(
            stderr.contains("--pusher-cluster"),
            "names the option: {stderr}"
        );
    }
}

#[test]
fn two_apps_sharing_a_key_stop_start_up_naming_the_problem_not_the_secrets() {
    let text = format!(
        "[[app]]\nid = \"{A_ID}\"\nkey = \"{A_KEY}\"\nsecret = \"{A_SECRET}\"\n\
         [[app]]\nid = \"{B_ID}\"\nkey = \"{B_KEY}\"\nsecret = \"{B_SECRET}\"\n\
         extra_keys = [\"{A_KEY}:{B_OLD_SECRET}\"]\n"
    );
    for text in [
        text,
        format!(
            "[[app]]\nid = \"{A_ID}\"\nkey = \"{A_KEY}\"\nsecret = \"{A_SECRET}\"\n\
             [[app]]\nid = \"{B_ID}\"\nkey = \"{A_KEY}\"\nsecret = \"{B_SECRET}\"\n"
        ),
    ] {
        let file = AppsFile::write(&text);
        let (code, stderr) = run_to_exit(&["--apps-file", &file.path()], &[]);
        assert_eq!(code, Some(2), "{stderr}");
        let stderr = stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
        assert!(
            stderr.contains("--apps-file")
                && stderr.contains(A_KEY)
                && stderr.contains("used by another app"),
            "names the option, the key and the problem: {stderr}"
        );
        for secret in [A_SECRET, B_SECRET, B_OLD_SECRET] {
            assert!(!stderr.contains(secret), "secret echoed: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_is_reconciled_from_its_own_listing_under_its_own_lock() {
    let stub = MultiAppStub::start(&[(A_ID, A_KEY, A_SECRET), (B_ID, B_KEY, B_SECRET)]).await;
    stub.set_listing(A_ID, &["a-1", "a-2"]);
    stub.set_listing(B_ID, &["b-1"]);
    let redis = RedisServer::start();
    let mut connection = redis.connection().await;
    for (set, channel) in [(A_SET, "stale-a"), (B_SET, "stale-b"), (A_SET, "a-1")] {
        let _: () = redis::cmd("SADD")
            .arg(set)
            .arg(channel)
            .query_async(&mut connection)
            .await
            .expect("SADD");
    }
    let file = AppsFile::write(&two_apps(&stub.url()));
    let service = Occupancy::start(&[
        "--apps-file".into(),
        file.path(),
        "--redis-url".into(),
        redis.url(),
        "--reconcile-interval".into(),
        "1h".into(),
    ]);
    support::eventually(Duration::from_secs(10), "both apps reconciled", || async {
        redis.members(A_SET).await == ["a-1", "a-2"] && redis.members(B_SET).await == ["b-1"]
    })
    .await;
    let mut listings = stub.listings();
    listings.sort();
    // Two listings per app: the first adds, the second (after Pusher's vacate hold-back)
    // confirms the removals.
    assert_eq!(
        listings,
        [
            (A_ID.to_owned(), true),
            (A_ID.to_owned(), true),
            (B_ID.to_owned(), true),
            (B_ID.to_owned(), true)
        ],
        "two listings per app, each signed with its own credentials"
    );
    for set in [A_SET, B_SET] {
        let lock: bool = redis::cmd("EXISTS")
            .arg(format!("{{{set}}}:reconcile-lock"))
            .query_async(&mut connection)
            .await
            .expect("EXISTS");
        assert!(lock, "{set} has its own reconcile lock");
    }
    let log = service.log_text();
    for secret in [A_SECRET, B_SECRET, B_OLD_SECRET] {
        assert!(!log.contains(secret), "secret in the log:\n{log}");
    }
}
