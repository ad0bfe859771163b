//! `WatchOccupancy`: a snapshot of one app's set, then every change, for clients that keep a
//! local copy.
//!
//! Each snapshot comes with its change stream from one call ([`crate::store::Store::subscribe`]),
//! which subscribes to the feed before reading the set, so no change between the two is lost
//! (one may be seen twice, which is harmless: changes are idempotent). A reader that falls more
//! than the store's watch buffer (`WATCH_BUFFER`, 1,024 batches) behind is not buffered without bound:
//! it is sent `KIND_RESET` and a fresh snapshot, as it is when the store's own feed restarted.
//! Streams end on shutdown with `UNAVAILABLE`, so they never hold the drain.
//!
//! Memory is bounded per stream and in number of streams. At most `--max-watch-streams` streams
//! are open at once; past that a new one is answered `RESOURCE_EXHAUSTED` (clients resubscribe
//! with backoff). The snapshot goes out in pieces of [`SNAPSHOT_CHUNK`] names, each built only
//! when the [`OUTBOX`] has room, so the stream's own copy of the set shrinks as the reader reads.
//! A reader that leaves a piece untaken for [`SNAPSHOT_STALL`] is ended with
//! `RESOURCE_EXHAUSTED`: a reader that never reads pins that copy for that long at most, then
//! only what is already queued (at most [`OUTBOX`] messages).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::status;
use crate::apps::App;
use crate::proto::WatchOccupancyResponse;
use crate::proto::watch_occupancy_response::Kind;
use crate::store::{ChangeBatch, FeedEvent, Subscription};

/// The stream of answers handed to tonic.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchOccupancyResponse, Status>> + Send>>;

/// How many channels one snapshot message lists: small enough for any gRPC message limit.
const SNAPSHOT_CHUNK: usize = 1000;

/// Messages queued for one slow reader before the feed itself starts to lag: with snapshot
/// pieces of [`SNAPSHOT_CHUNK`] names, at most 16,000 names wait in one stream's queue.
const OUTBOX: usize = 16;

/// How long a snapshot piece may wait for room in the reader's queue before the stream is
/// ended: a reader that reads at all takes a piece far sooner.
pub const SNAPSHOT_STALL: Duration = Duration::from_secs(5);

/// The default of `--max-watch-streams`.
pub const DEFAULT_MAX_STREAMS: usize = 1024;

/// The cap on open streams: each holds one [`Slot`] until tonic drops it (the stream closed).
#[derive(Debug)]
pub struct Watchers {
    permits: Arc<Semaphore>,
    max: usize,
    /// The service's `watch_streams` gauge: slots held right now.
    open: Gauge,
}

/// One open stream's place under the cap, shown on the gauge while it is held.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Watchers {
    /// Room for `max` streams at once, counted on `open`.
    pub fn new(max: usize, open: Gauge) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open,
        }
    }

    /// A place for one more stream, or `RESOURCE_EXHAUSTED` when all are taken.
    pub fn admit(&self) -> Result<Slot, Status> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} WatchOccupancy streams are open, the most this gate serves \
                 (--max-watch-streams); retry later or watch another replica",
                self.max
            ))
        })?;
        self.open.inc();
        Ok(Slot {
            _permit: permit,
            open: self.open.clone(),
        })
    }
}

/// Starts feeding one watcher.
pub fn start(
    app: Arc<App>,
    prefix: String,
    slot: Slot,
    shutdown: CancellationToken,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(OUTBOX);
    let (end_tx, end_rx) = oneshot::channel();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            outcome = feed(&app, &prefix, &tx) => outcome,
            _ = shutdown.cancelled() => Err(Status::unavailable("the gate is shutting down; reconnect")),
            _ = tx.closed() => Ok(()),
        };
        if let Err(status) = outcome {
            // Ahead of whatever is still queued: a reader that stalled gets it when it reads.
            let _ = end_tx.send(status);
        }
    });
    Box::pin(Outlet {
        queue: rx,
        end: Some(end_rx),
        ended: false,
        _slot: slot,
    })
}

/// One stream's answers as tonic reads them. It holds the stream's place under the cap for as
/// long as the stream is open (not just while its task runs), and yields the ending status as
/// soon as there is one, before anything still queued.
struct Outlet {
    queue: mpsc::Receiver<Result<WatchOccupancyResponse, Status>>,
    end: Option<oneshot::Receiver<Status>>,
    ended: bool,
    _slot: Slot,
}

impl Stream for Outlet {
    type Item = Result<WatchOccupancyResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(end) = self.end.as_mut() {
            match Pin::new(end).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.ended = true;
                    self.queue.close();
                    return Poll::Ready(Some(Err(status)));
                }
                // The task ended without a status (the reader went away).
                Poll::Ready(Err(_)) => self.end = None,
                Poll::Pending => {}
            }
        }
        self.queue.poll_recv(cx)
    }
}

type Outbox = mpsc::Sender<Result<WatchOccupancyResponse, Status>>;

/// Runs until the reader goes away (`Ok`) or the stream must end with a status (`Err`).
async fn feed(app: &App, prefix: &str, tx: &Outbox) -> Result<(), Status> {
    loop {
        let Subscription {
            members,
            mut changes,
        } = app
            .store
            .subscribe()
            .await
            .map_err(|err| status::store(&app.id, err))?;
        if !snapshot(members, prefix, tx).await? {
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

/// Sends RESET, `members` (the current set) in pieces as the reader takes them, then SYNCED.
/// False when the reader went away.
async fn snapshot(members: Vec<String>, prefix: &str, tx: &Outbox) -> Result<bool, Status> {
    let mut matching = members.into_iter().filter(|c| c.starts_with(prefix));
    if !send_piece(tx, message(Kind::Reset, Vec::new(), Vec::new())).await? {
        return Ok(false);
    }
    loop {
        let piece: Vec<String> = matching.by_ref().take(SNAPSHOT_CHUNK).collect();
        if piece.is_empty() {
            break;
        }
        if !send_piece(tx, message(Kind::Snapshot, piece, Vec::new())).await? {
            return Ok(false);
        }
    }
    send_piece(tx, message(Kind::Synced, Vec::new(), Vec::new())).await
}

/// Queues one snapshot message once the reader's queue has room. False when the reader went
/// away; `RESOURCE_EXHAUSTED` when it left the queue full for [`SNAPSHOT_STALL`].
async fn send_piece(tx: &Outbox, message: WatchOccupancyResponse) -> Result<bool, Status> {
    match tokio::time::timeout(SNAPSHOT_STALL, tx.send(Ok(message))).await {
        Ok(sent) => Ok(sent.is_ok()),
        Err(_) => Err(Status::resource_exhausted(
            "the snapshot was not read in time; reconnect",
        )),
    }
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
