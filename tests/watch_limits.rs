//! `WatchOccupancy` under load, against the service started in-process: streams past `--max-watch-streams` are
//! answered `RESOURCE_EXHAUSTED`, a large snapshot arrives whole in pieces to a reader that
//! reads, and a reader that never reads does not hold its copy of the set: its stream is ended
//! with `RESOURCE_EXHAUSTED` once a piece has waited for it too long.

mod support;

use std::time::Duration;

use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::watch_occupancy_response::Kind;
use occupancy::proto::{WatchOccupancyRequest, WatchOccupancyResponse};
use support::{InProcess, PusherStub, eventually};
use tonic::{Code, Streaming};

async fn watch(gate: &InProcess) -> Result<Streaming<WatchOccupancyResponse>, tonic::Status> {
    OccupancyClient::new(gate.channel().await)
        .watch_occupancy(WatchOccupancyRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

async fn next(stream: &mut Streaming<WatchOccupancyResponse>) -> WatchOccupancyResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch message within 10 s")
        .expect("stream healthy")
        .expect("stream still open")
}

fn kind(message: &WatchOccupancyResponse) -> Kind {
    Kind::try_from(message.kind).expect("known kind")
}

#[tokio::test]
async fn streams_past_the_cap_are_refused_until_one_closes() {
    let gate = InProcess::start(&["--max-watch-streams".into(), "2".into()]).await;
    let mut first = watch(&gate).await.expect("first stream");
    let mut second = watch(&gate).await.expect("second stream");
    assert_eq!(kind(&next(&mut first).await), Kind::Reset);
    assert_eq!(kind(&next(&mut second).await), Kind::Reset);

    let refused = watch(&gate).await.expect_err("a third stream is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-watch-streams"),
        "{refused:?}"
    );

    drop(first);
    eventually(Duration::from_secs(5), "a place frees up", || async {
        watch(&gate).await.is_ok()
    })
    .await;
}

#[test]
fn the_max_watch_streams_flag_must_be_positive() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_occupancy"))
        .args(["--max-watch-streams", "0"])
        .env("PUSHER_APP_ID", "1")
        .env("PUSHER_KEY", "k")
        .env("PUSHER_SECRET", "s")
        .env_remove("REDIS_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run occupancy");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-watch-streams / OCCUPANCY_MAX_WATCH_STREAMS"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_comes_in_pieces_and_a_reader_that_never_reads_is_let_go() {
    const CHANNELS: usize = 100_000;
    let stub = PusherStub::start().await;
    let names: Vec<String> = (0..CHANNELS)
        .map(|i| format!("private-watched-job-{i:08}"))
        .collect();
    stub.set_listing(
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::ZERO,
    );
    let gate = InProcess::start(&[
        "--pusher-api-url".into(),
        stub.url(),
        "--pusher-timeout".into(),
        "15s".into(),
        "--reconcile-interval".into(),
        "60s".into(),
    ])
    .await;
    // The start-up reconciliation fills the memory store from the listing.
    eventually(Duration::from_secs(20), "the set is filled", || async {
        let mut stream = watch(&gate).await.expect("watch");
        assert_eq!(kind(&next(&mut stream).await), Kind::Reset);
        let mut seen = 0;
        loop {
            let message = next(&mut stream).await;
            match kind(&message) {
                Kind::Snapshot => {
                    assert!(message.occupied.len() <= 1000, "pieces of at most 1,000");
                    seen += message.occupied.len();
                }
                Kind::Synced => break,
                other => panic!("unexpected {other:?} in the snapshot"),
            }
        }
        seen == CHANNELS
    })
    .await;

    // A reader that opens a stream and does not read for longer than the stall bound.
    let mut stalled = watch(&gate).await.expect("watch");
    tokio::time::sleep(occupancy::wire::SNAPSHOT_STALL + Duration::from_secs(2)).await;
    let mut synced = false;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.message())
            .await
            .expect("an answer within 10 s")
        {
            Ok(Some(message)) => synced |= kind(&message) == Kind::Synced,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    assert!(!synced, "the stalled reader never got the whole snapshot");
}
