//! What start-up promises: a retention shorter than Pusher's retries is refused with one line,
//! health is SERVING as soon as the store answers (not an interval after the port opens), and a
//! gRPC port anyone can call is flagged.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::probe::health;
use support::{Occupancy, RedisServer};
use tonic_health::pb::health_check_response::ServingStatus;

#[test]
fn a_retention_shorter_than_pushers_retries_stops_start_up_with_one_line() {
    for (retention, refused) in [("1s", true), ("4m59s", true), ("5m", false)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_occupancy"))
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0", "--retention", retention])
            .env_remove("REDIS_URL")
            .env("PUSHER_APP_ID", "1")
            .env("PUSHER_KEY", "k")
            .env("PUSHER_SECRET", "s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run occupancy");
        // A refusal exits at once; a start that is accepted is still running after a second.
        let deadline = Instant::now() + Duration::from_secs(if refused { 5 } else { 1 });
        let exited = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !refused {
            assert!(exited.is_none(), "--retention {retention} was refused");
            let _ = child.kill();
            let _ = child.wait();
            continue;
        }
        let status = exited.unwrap_or_else(|| panic!("--retention {retention} was accepted"));
        let stderr = std::io::read_to_string(child.stderr.take().expect("stderr")).expect("read");
        assert_eq!(status.code(), Some(2), "{retention}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("occupancy:"))
            .collect();
        assert_eq!(errors.len(), 1, "one line for {retention}: {stderr}");
        assert!(errors[0].contains("OCCUPANCY_RETENTION"), "{stderr}");
    }
}

/// Starts the binary on a port chosen here and measures, from outside, the time between the
/// gRPC port accepting connections and health answering SERVING.
async fn time_to_serving(extra: &[&str]) -> Duration {
    let addr = format!("127.0.0.1:{}", support::free_port());
    let url = format!("http://{addr}");
    let watcher = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let opened = loop {
                if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                    break Instant::now();
                }
                assert!(Instant::now() < deadline, "the gRPC port never opened");
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            let channel = tonic::transport::Channel::from_shared(url)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            loop {
                if health(channel.clone(), "").await == Some(ServingStatus::Serving) {
                    break Instant::now() - opened;
                }
                assert!(Instant::now() < deadline, "health never turned SERVING");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // The default health interval, so an interval's wait would show.
    let mut args: Vec<String> = vec!["--health-interval".into(), "1s".into()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let gate =
        tokio::task::spawn_blocking(move || Occupancy::start_at(&addr, "127.0.0.1:0", &args))
            .await
            .expect("start");
    let elapsed = watcher.await.expect("watcher");
    // Both names turn together.
    assert_eq!(
        health(
            gate.channel().await,
            occupancy::proto::occupancy_server::SERVICE_NAME
        )
        .await,
        Some(ServingStatus::Serving)
    );
    eprintln!("SERVING {elapsed:?} after the gRPC port opened ({extra:?})");
    elapsed
}

/// Far below the one-second interval the first ping used to wait for, and well above the few
/// milliseconds it takes.
const SERVING_BOUND: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_as_soon_as_the_memory_store_answers() {
    let elapsed = time_to_serving(&[]).await;
    assert!(elapsed < SERVING_BOUND, "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_as_soon_as_redis_answers() {
    let redis = RedisServer::start();
    let elapsed = time_to_serving(&["--redis-url", &redis.url()]).await;
    assert!(elapsed < SERVING_BOUND, "{elapsed:?}");
}

#[tokio::test]
async fn a_grpc_port_anyone_can_call_is_flagged() {
    let open = Occupancy::start_at("0.0.0.0:0", "127.0.0.1:0", &[]);
    assert_eq!(
        open.metric("occupancy_grpc_insecure", &[]).await,
        1.0,
        "beyond loopback without tokens"
    );
    let with_tokens = Occupancy::start_at(
        "0.0.0.0:0",
        "127.0.0.1:0",
        &["--grpc-tokens".into(), "a-token".into()],
    );
    assert_eq!(
        with_tokens.metric("occupancy_grpc_insecure", &[]).await,
        0.0,
        "tokens tell callers apart"
    );
    let local = Occupancy::start(&[]);
    assert_eq!(
        local.metric("occupancy_grpc_insecure", &[]).await,
        0.0,
        "loopback only"
    );
}
