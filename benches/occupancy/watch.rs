//! A small cached gate, the way an encoder could answer `IsOccupied` from memory: a local
//! `HashSet` kept current by the `WatchOccupancy` stream (KIND_RESET, KIND_SNAPSHOT*,
//! KIND_SYNCED, then KIND_CHANGE per applied batch).
//!
//! It lives in the benchmark, not the library, because it exists to measure two things: how many
//! lookups a local copy answers against a Redis round trip, and how long a webhook's change takes
//! to reach a watcher. A service build that does not serve `WatchOccupancy` yet answers
//! UNIMPLEMENTED, and both measurements are then reported as pending instead of failing the run.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::watch_occupancy_response::Kind;
use occupancy::proto::{WatchOccupancyRequest, WatchOccupancyResponse};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// A channel that became occupied, and when this process learnt it.
pub type Seen = (String, Instant);

/// The local copy of the occupied set, and the task that keeps it.
pub struct CachedGate {
    set: Arc<RwLock<HashSet<String>>>,
    synced: watch::Receiver<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl CachedGate {
    /// Opens the stream. `Ok(None)` when the service does not serve `WatchOccupancy`. Every
    /// channel a KIND_CHANGE reports occupied is also sent to `seen`, if given, with the instant
    /// it arrived (dropped rather than waited for if nobody reads it).
    pub async fn connect(
        channel: Channel,
        seen: Option<mpsc::Sender<Seen>>,
    ) -> anyhow::Result<Option<Self>> {
        let request = WatchOccupancyRequest::default();
        let stream = match OccupancyClient::new(channel).watch_occupancy(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(status) => return Err(status).context("WatchOccupancy"),
        };
        let set = Arc::new(RwLock::new(HashSet::new()));
        let (synced_tx, synced) = watch::channel(false);
        let task = tokio::spawn(keep(stream, set.clone(), synced_tx, seen));
        Ok(Some(Self { set, synced, task }))
    }

    /// Waits for KIND_SYNCED, at most `timeout`.
    pub async fn wait_synced(&mut self, timeout: Duration) -> anyhow::Result<()> {
        match tokio::time::timeout(timeout, self.synced.wait_for(|synced| *synced)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("the WatchOccupancy stream ended before KIND_SYNCED"),
            Err(_) => bail!("no KIND_SYNCED within {timeout:?}"),
        }
    }

    /// How many channels the local copy holds.
    pub fn len(&self) -> usize {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Answers from the local copy. A real client would ask the gate while not synchronised;
    /// the benchmark only looks up after KIND_SYNCED.
    pub fn is_occupied(&self, channel: &str) -> bool {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(channel)
    }

    /// Looks up `names` in turn on this thread, at most `max` lookups and for about
    /// `duration`, and returns how many lookups were made, how many answered occupied, and the
    /// time taken.
    pub fn lookups(&self, names: &[String], max: u64, duration: Duration) -> (u64, u64, Duration) {
        let start = Instant::now();
        let (mut done, mut hits) = (0u64, 0u64);
        // The clock is read once per round of names, not per lookup, to measure the lookup.
        'rounds: while done < max {
            for name in names {
                hits += u64::from(std::hint::black_box(self.is_occupied(name)));
                done += 1;
                if done >= max {
                    break 'rounds;
                }
            }
            if start.elapsed() >= duration {
                break;
            }
        }
        (done, hits, start.elapsed())
    }
}

impl Drop for CachedGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Applies the stream to `set` until it ends.
async fn keep(
    mut stream: tonic::Streaming<WatchOccupancyResponse>,
    set: Arc<RwLock<HashSet<String>>>,
    synced: watch::Sender<bool>,
    seen: Option<mpsc::Sender<Seen>>,
) -> anyhow::Result<()> {
    while let Some(message) = stream.next().await {
        let message = message.context("WatchOccupancy stream")?;
        let arrived = Instant::now();
        let kind = Kind::try_from(message.kind).unwrap_or(Kind::Unspecified);
        {
            let mut set = set.write().unwrap_or_else(PoisonError::into_inner);
            match kind {
                Kind::Reset => {
                    set.clear();
                    synced.send_replace(false);
                }
                Kind::Snapshot => set.extend(message.occupied.iter().cloned()),
                Kind::Synced => {
                    synced.send_replace(true);
                }
                Kind::Change => {
                    for channel in &message.vacated {
                        set.remove(channel);
                    }
                    set.extend(message.occupied.iter().cloned());
                }
                // A kind this client does not know: ignore it, as proto3 clients should.
                Kind::Unspecified => {}
            }
        }
        if let (Kind::Change, Some(seen)) = (kind, &seen) {
            for channel in message.occupied {
                let _ = seen.try_send((channel, arrived));
            }
        }
    }
    Ok(())
}
