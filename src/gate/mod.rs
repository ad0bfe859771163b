//! The gRPC gate: `IsOccupied`, `PublishIfOccupied` and `WatchOccupancy`.
//!
//! Each answer costs one store round trip; a publish to vacant channels costs nothing more, which
//! is the saving the whole service exists for. Occupied channels of one publish share a single
//! Pusher API call.

pub mod request;
mod status;
mod watch;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::apps::{App, Apps};
use crate::proto::occupancy_server::Occupancy;
use crate::proto::{
    IsOccupiedRequest, IsOccupiedResponse, PublishIfOccupiedRequest, PublishIfOccupiedResponse,
    WatchOccupancyRequest,
};
use crate::store::OccupancyStore;

/// The `occupancy.v1.Occupancy` service over every configured app.
pub struct Gate<S> {
    apps: Arc<Apps<S>>,
    shutdown: CancellationToken,
}

impl<S> Gate<S> {
    /// A gate answering for `apps`; watch streams end when `shutdown` is cancelled.
    pub fn new(apps: Arc<Apps<S>>, shutdown: CancellationToken) -> Self {
        Self { apps, shutdown }
    }

    fn app(&self, app_id: &str) -> Result<&Arc<App<S>>, Status> {
        self.apps.resolve(app_id).map_err(status::app)
    }
}

#[tonic::async_trait]
impl<S: OccupancyStore> Occupancy for Gate<S> {
    type WatchOccupancyStream = watch::WatchStream;

    async fn is_occupied(
        &self,
        request: Request<IsOccupiedRequest>,
    ) -> Result<Response<IsOccupiedResponse>, Status> {
        let request = request.into_inner();
        let app = self.app(&request.app_id)?;
        let channel = request::is_occupied(request).map_err(status::invalid)?;
        let answer = app
            .store
            .occupied(std::slice::from_ref(&channel))
            .await
            .map_err(|err| status::store(&app.id, err))?;
        let occupied = answer.first().copied().unwrap_or(false);
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
        let occupied = app
            .store
            .occupied(&publish.channels)
            .await
            .map_err(|err| status::store(&app.id, err))?;
        let (live, vacant): (Vec<_>, Vec<_>) = publish
            .channels
            .into_iter()
            .zip(occupied)
            .partition(|(_, occupied)| *occupied);
        let live: Vec<_> = live.into_iter().map(|(c, _)| c).collect();
        let skipped: Vec<String> = vacant.into_iter().map(|(c, _)| c.to_string()).collect();

        if !live.is_empty() {
            app.publisher
                .trigger(
                    &live,
                    &publish.event,
                    &publish.data,
                    publish.socket_id.as_deref(),
                )
                .await
                .map_err(|err| {
                    tracing::warn!(app = %app.id, error = %err, event = %publish.event, channels = live.len(), "publish failed");
                    status::publish(err)
                })?;
        }
        tracing::debug!(
            app = %app.id,
            event = %publish.event,
            published = live.len(),
            skipped = skipped.len(),
            "publish gated"
        );
        Ok(Response::new(PublishIfOccupiedResponse {
            published: live.into_iter().map(|c| c.to_string()).collect(),
            skipped,
            ..Default::default()
        }))
    }

    async fn watch_occupancy(
        &self,
        request: Request<WatchOccupancyRequest>,
    ) -> Result<Response<Self::WatchOccupancyStream>, Status> {
        let request = request.into_inner();
        let app = self.app(&request.app_id)?.clone();
        let prefix = request::watch_prefix(request.channel_prefix).map_err(status::invalid)?;
        Ok(Response::new(watch::start(
            app,
            prefix,
            self.shutdown.clone(),
        )))
    }
}
