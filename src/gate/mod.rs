//! The gRPC gate: `IsOccupied`, `PublishIfOccupied` and `WatchOccupancy`.
//!
//! Answers come from the store (from memory where it keeps a current copy); a publish to vacant
//! channels costs nothing more, which is the saving the whole service exists for. Occupied channels of one publish share a single
//! Pusher API call.

pub mod coalesce;
pub mod request;
mod status;
pub(crate) mod watch;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use self::coalesce::Coalescer;
use self::coalesce::Decision;
use self::request::Publish;
use crate::apps::{App, Apps};
use crate::channel::ChannelName;
use crate::metrics::{Metrics, count};
use crate::proto::occupancy_server::Occupancy;
use crate::proto::{
    IsOccupiedRequest, IsOccupiedResponse, PublishIfOccupiedRequest, PublishIfOccupiedResponse,
    WatchOccupancyRequest,
};
use crate::store::{Occupied, StoreError};

/// The `occupancy.v1.Occupancy` service over every configured app.
pub struct Gate {
    apps: Arc<Apps>,
    shutdown: CancellationToken,
    coalescer: Arc<Coalescer>,
    store_down: StoreDownPolicy,
    watchers: watch::Watchers,
    /// The service's metrics.
    metrics: Arc<Metrics>,
}

/// What `PublishIfOccupied` does when the store cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreDownPolicy {
    /// Publish to every requested channel: no live update is lost, some calls are paid for
    /// nothing.
    #[default]
    All,
    /// Answer `UNAVAILABLE`; the caller decides.
    None,
}

impl Gate {
    /// A gate answering for `apps`, counting into `metrics`; watch streams end when `shutdown`
    /// is cancelled, and held updates of `coalescer` are sent then.
    pub fn new(
        apps: Arc<Apps>,
        coalescer: Arc<Coalescer>,
        store_down: StoreDownPolicy,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            apps,
            shutdown,
            coalescer,
            store_down,
            watchers: watch::Watchers::new(
                watch::DEFAULT_MAX_STREAMS,
                metrics.watch_streams.clone(),
            ),
            metrics,
        }
    }

    /// Caps the `WatchOccupancy` streams open at once at `max` (`--max-watch-streams`).
    pub fn with_max_watch_streams(mut self, max: usize) -> Self {
        self.watchers = watch::Watchers::new(max, self.metrics.watch_streams.clone());
        self
    }

    fn app(&self, app_id: &str) -> Result<&Arc<App>, Status> {
        self.apps.resolve(app_id).map_err(status::app)
    }
}

/// Which of `channels` are occupied, by name, from the app's store (its local copy where it
/// keeps one), and whether the store could not be asked. With the store unreachable and
/// [`StoreDownPolicy::All`] every channel counts as occupied; any other store failure is the
/// caller's to answer. Shared by `PublishIfOccupied` and the Pusher API listener so both gate
/// the same way.
pub(crate) async fn occupied_or_policy(
    app: &App,
    channels: &[crate::channel::ChannelName],
    store_down: StoreDownPolicy,
    metrics: &Metrics,
) -> Result<(Occupied, bool), StoreError> {
    match app.store.occupied(channels).await {
        Ok(occupied) => Ok((occupied, false)),
        Err(err @ StoreError::Unavailable(_)) if store_down == StoreDownPolicy::All => {
            count(&metrics.publish_store_down, &[("app", &app.id)], 1);
            tracing::warn!(app = %app.id, error = ?err, channels = channels.len(), "store unavailable: publishing to every requested channel");
            Ok((Occupied::all(channels), true))
        }
        Err(err) => Err(err),
    }
}

#[tonic::async_trait]
impl Occupancy for Gate {
    type WatchOccupancyStream = watch::WatchStream;

    async fn is_occupied(
        &self,
        request: Request<IsOccupiedRequest>,
    ) -> Result<Response<IsOccupiedResponse>, Status> {
        let request = request.into_inner();
        let app = self.app(&request.app_id)?;
        let channel = request::is_occupied(request).map_err(status::invalid)?;
        let occupied = app
            .store
            .is_occupied(&channel)
            .await
            .map_err(|err| status::store(&app.id, err))?;
        count(
            &self.metrics.gate_checks,
            &[
                ("app", &app.id),
                ("answer", if occupied { "occupied" } else { "vacant" }),
            ],
            1,
        );
        tracing::debug!(app = %app.id, %channel, occupied, "gate answered");
        Ok(Response::new(IsOccupiedResponse { occupied }))
    }

    async fn publish_if_occupied(
        &self,
        request: Request<PublishIfOccupiedRequest>,
    ) -> Result<Response<PublishIfOccupiedResponse>, Status> {
        let request = request.into_inner();
        let app = self.app(&request.app_id)?;
        let publish = request::publish(request).map_err(status::invalid)?;
        let (occupied, store_unavailable) =
            occupied_or_policy(app, &publish.channels, self.store_down, &self.metrics)
                .await
                .map_err(|err| status::store(&app.id, err))?;
        let Occupied {
            occupied: live,
            vacant,
        } = occupied;
        let skipped: Vec<String> = vacant.iter().map(ToString::to_string).collect();

        let Timing {
            now,
            deferred,
            superseded,
        } = self.time(app, live, &publish);
        if !now.is_empty() {
            app.publisher
                .trigger(
                    &now,
                    &publish.event,
                    &publish.data,
                    publish.socket_id.as_deref(),
                )
                .await
                .map_err(|err| {
                    tracing::warn!(app = %app.id, error = %crate::pusher::error_chain(&err), event = %publish.event, channels = now.len(), "publish failed");
                    status::publish(err)
                })?;
        }
        count_outcomes(
            &self.metrics,
            &app.id,
            &publish.event,
            [
                ("published", now.len() as u64),
                ("skipped", skipped.len() as u64),
                ("deferred", deferred.len() as u64),
                ("superseded", u64::from(superseded)),
            ],
        );
        Ok(Response::new(PublishIfOccupiedResponse {
            published: now.into_iter().map(|c| c.to_string()).collect(),
            skipped,
            deferred,
            superseded,
            store_unavailable,
        }))
    }

    async fn watch_occupancy(
        &self,
        request: Request<WatchOccupancyRequest>,
    ) -> Result<Response<Self::WatchOccupancyStream>, Status> {
        let request = request.into_inner();
        let app = self.app(&request.app_id)?.clone();
        let prefix = request::watch_prefix(request.channel_prefix).map_err(status::invalid)?;
        let slot = self.watchers.admit()?;
        Ok(Response::new(watch::start(
            app,
            prefix,
            slot,
            self.shutdown.clone(),
        )))
    }
}

/// Which occupied channels of one publish go out now, and which the coalescer holds.
struct Timing {
    /// Published now.
    now: Vec<ChannelName>,
    /// Held by the coalescer, to go out at the end of their interval.
    deferred: Vec<String>,
    /// How many held updates this one replaced.
    superseded: u32,
}

impl Gate {
    /// Without coalescing every occupied channel goes out now; with it, the coalescer decides
    /// per channel (see [`Coalescer::decide`]).
    fn time(&self, app: &Arc<App>, live: Vec<ChannelName>, publish: &Publish) -> Timing {
        let Some(interval) = publish.coalesce else {
            return Timing {
                now: live,
                deferred: Vec::new(),
                superseded: 0,
            };
        };
        let decisions = self.coalescer.decide(
            app,
            &live,
            &publish.event,
            &publish.data,
            publish.socket_id.as_deref(),
            interval,
        );
        let mut timing = Timing {
            now: Vec::new(),
            deferred: Vec::new(),
            superseded: 0,
        };
        for (channel, decision) in live.into_iter().zip(decisions) {
            match decision {
                Decision::Now => timing.now.push(channel),
                Decision::Deferred { superseded } => {
                    timing.superseded += u32::from(superseded);
                    timing.deferred.push(channel.to_string());
                }
            }
        }
        timing
    }
}

/// Counts what one gated publish did with its channels, by outcome.
fn count_outcomes(metrics: &Metrics, app_id: &str, event: &str, outcomes: [(&str, u64); 4]) {
    for (outcome, n) in outcomes {
        count(
            &metrics.publish_channels,
            &[("app", app_id), ("outcome", outcome)],
            n,
        );
    }
    tracing::debug!(app = %app_id, event = %event, ?outcomes, "publish gated");
}
