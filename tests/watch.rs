//! `WatchOccupancy` against the real binary: the snapshot, the marker, every change after it,
//! the prefix filter, and streams ending on SIGTERM without holding the drain.

mod support;

use std::time::{Duration, Instant};

use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::watch_occupancy_response::Kind;
use occupancy::proto::{WatchOccupancyRequest, WatchOccupancyResponse};
use support::Occupancy;
use tonic::{Code, Streaming};

async fn next(stream: &mut Streaming<WatchOccupancyResponse>) -> WatchOccupancyResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a watch message within 5 s")
        .expect("stream healthy")
        .expect("stream still open")
}

fn kind(message: &WatchOccupancyResponse) -> Kind {
    Kind::try_from(message.kind).expect("known kind")
}

async fn watch(gate: &Occupancy, prefix: &str) -> Streaming<WatchOccupancyResponse> {
    OccupancyClient::new(gate.channel().await)
        .watch_occupancy(WatchOccupancyRequest {
            channel_prefix: prefix.into(),
            ..Default::default()
        })
        .await
        .expect("watch accepted")
        .into_inner()
}

#[tokio::test]
async fn snapshot_then_marker_then_changes_filtered_by_prefix() {
    let gate = Occupancy::start(&[]);
    let (status, _) = gate
        .send_webhook(&[
            ("channel_occupied", "job-1"),
            ("channel_occupied", "other-1"),
        ])
        .await;
    assert!(status.is_success());

    let mut stream = watch(&gate, "job-").await;
    assert_eq!(kind(&next(&mut stream).await), Kind::Reset);
    let snapshot = next(&mut stream).await;
    assert_eq!(kind(&snapshot), Kind::Snapshot);
    assert_eq!(snapshot.occupied, ["job-1"]);
    assert_eq!(kind(&next(&mut stream).await), Kind::Synced);

    gate.send_webhook(&[("channel_occupied", "other-2")]).await;
    gate.send_webhook(&[("channel_occupied", "job-2"), ("channel_vacated", "job-1")])
        .await;
    let change = next(&mut stream).await;
    assert_eq!(kind(&change), Kind::Change, "{change:?}");
    assert_eq!(change.occupied, ["job-2"], "other-2 is filtered out");
    assert_eq!(change.vacated, ["job-1"]);
}

#[tokio::test]
async fn an_empty_set_still_gets_its_marker_and_unknown_apps_are_not_found() {
    let gate = Occupancy::start(&[]);
    let mut stream = watch(&gate, "").await;
    assert_eq!(kind(&next(&mut stream).await), Kind::Reset);
    assert_eq!(kind(&next(&mut stream).await), Kind::Synced);

    let status = OccupancyClient::new(gate.channel().await)
        .watch_occupancy(WatchOccupancyRequest {
            app_id: "no-such-app".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown app");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = OccupancyClient::new(gate.channel().await)
        .watch_occupancy(WatchOccupancyRequest {
            channel_prefix: "bad prefix".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad prefix");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn sigterm_ends_open_watch_streams_and_exits_zero() {
    let gate = Occupancy::start(&[]);
    let mut stream = watch(&gate, "").await;
    assert_eq!(kind(&next(&mut stream).await), Kind::Reset);
    let started = Instant::now();
    let exit = tokio::task::spawn_blocking(move || gate.terminate("TERM"))
        .await
        .expect("join");
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a watch stream held the drain for {:?}",
        started.elapsed()
    );
    // The stream was told to end, not cut without a word.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                break;
            }
            Err(_) => panic!("the stream did not end after SIGTERM"),
        }
    }
}
