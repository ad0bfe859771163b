//! `WatchOccupancy`: a snapshot of one app's set, then every change, for clients that keep a
//! local copy.
//!
//! The feed is subscribed before the snapshot is read, so no change between the two is lost
//! (one may be seen twice, which is harmless: changes are idempotent). A reader that falls more
//! than [`WATCH_BUFFER`](crate::store::WATCH_BUFFER) batches behind is not buffered without bound:
//! it is sent `KIND_RESET` and a fresh snapshot, as it is when the store's own feed restarted. Streams end on shutdown with `UNAVAILABLE`, so
//! they never hold the drain.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::status;
use crate::apps::App;
use crate::proto::WatchOccupancyResponse;
use crate::proto::watch_occupancy_response::Kind;
use crate::store::OccupancyStore;
use crate::store::{ChangeBatch, FeedEvent};

/// The stream of answers handed to tonic.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchOccupancyResponse, Status>> + Send>>;

/// How many channels one snapshot message lists: small enough for any gRPC message limit.
const SNAPSHOT_CHUNK: usize = 1000;

/// Messages queued for one slow reader before the feed itself starts to lag.
const OUTBOX: usize = 64;

/// Starts feeding one watcher.
pub fn start<S: OccupancyStore>(
    app: Arc<App<S>>,
    prefix: String,
    shutdown: CancellationToken,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(OUTBOX);
    tokio::spawn(async move {
        let gauge = &crate::metrics::metrics().watch_streams;
        gauge.inc();
        let outcome = tokio::select! {
            outcome = feed(&app, &prefix, &tx) => outcome,
            _ = shutdown.cancelled() => Err(Status::unavailable("the gate is shutting down; reconnect")),
            _ = tx.closed() => Ok(()),
        };
        if let Err(status) = outcome {
            let _ = tx.send(Err(status)).await;
        }
        gauge.dec();
    });
    Box::pin(ReceiverStream::new(rx))
}

type Outbox = mpsc::Sender<Result<WatchOccupancyResponse, Status>>;

/// Runs until the reader goes away (`Ok`) or the stream must end with a status (`Err`).
async fn feed<S: OccupancyStore>(app: &App<S>, prefix: &str, tx: &Outbox) -> Result<(), Status> {
    let mut changes = app.store.watch();
    loop {
        if !snapshot(app, prefix, tx).await? {
            return Ok(());
        }
        loop {
            match changes.recv().await {
                Ok(event) => {
                    let FeedEvent::Changes(batch) = &*event else {
                        tracing::debug!(app = %app.id, "the change feed restarted: resynchronising");
                        break;
                    };
                    if let Some(message) = change_message(batch, prefix)
                        && tx.send(Ok(message)).await.is_err()
                    {
                        return Ok(());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(app = %app.id, missed, "watcher fell behind: resynchronising");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Status::unavailable("the change feed closed; reconnect"));
                }
            }
        }
    }
}

/// Sends RESET, the current set in chunks, then SYNCED. False when the reader went away.
async fn snapshot<S: OccupancyStore>(
    app: &App<S>,
    prefix: &str,
    tx: &Outbox,
) -> Result<bool, Status> {
    let members = app
        .store
        .members()
        .await
        .map_err(|err| status::store(&app.id, err))?;
    let matching: Vec<String> = members
        .into_iter()
        .filter(|c| c.starts_with(prefix))
        .collect();
    let mut messages = vec![message(Kind::Reset, Vec::new(), Vec::new())];
    messages.extend(
        matching
            .chunks(SNAPSHOT_CHUNK)
            .map(|chunk| message(Kind::Snapshot, chunk.to_vec(), Vec::new())),
    );
    messages.push(message(Kind::Synced, Vec::new(), Vec::new()));
    for m in messages {
        if tx.send(Ok(m)).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn change_message(batch: &ChangeBatch, prefix: &str) -> Option<WatchOccupancyResponse> {
    let pick = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|c| c.starts_with(prefix))
            .cloned()
            .collect()
    };
    let (occupied, vacated) = (pick(&batch.occupied), pick(&batch.vacated));
    (!occupied.is_empty() || !vacated.is_empty()).then(|| message(Kind::Change, occupied, vacated))
}

fn message(kind: Kind, occupied: Vec<String>, vacated: Vec<String>) -> WatchOccupancyResponse {
    WatchOccupancyResponse {
        kind: kind as i32,
        occupied,
        vacated,
    }
}
