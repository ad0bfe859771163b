//! The gRPC gate: `IsOccupied` and `PublishIfOccupied`.
//!
//! Each answer costs one store round trip; a publish to vacant channels costs nothing more, which
//! is the saving the whole service exists for. Occupied channels of one publish share a single
//! Pusher API call.

pub mod request;
mod status;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::occupancy_server::Occupancy;
use crate::proto::{
    IsOccupiedRequest, IsOccupiedResponse, PublishIfOccupiedRequest, PublishIfOccupiedResponse,
    WatchOccupancyRequest, WatchOccupancyResponse,
};
use crate::pusher::Publisher;
use crate::store::OccupancyStore;

/// The `occupancy.v1.Occupancy` service over a store and a publisher.
pub struct Gate<S> {
    store: Arc<S>,
    publisher: Publisher,
}

impl<S> Gate<S> {
    /// A gate answering from `store` and publishing through `publisher`.
    pub fn new(store: Arc<S>, publisher: Publisher) -> Self {
        Self { store, publisher }
    }
}

#[tonic::async_trait]
impl<S: OccupancyStore> Occupancy for Gate<S> {
    type WatchOccupancyStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<WatchOccupancyResponse, Status>> + Send>,
    >;

    async fn watch_occupancy(
        &self,
        _request: Request<WatchOccupancyRequest>,
    ) -> Result<Response<Self::WatchOccupancyStream>, Status> {
        Err(Status::unimplemented("WatchOccupancy is not served yet"))
    }

    async fn is_occupied(
        &self,
        request: Request<IsOccupiedRequest>,
    ) -> Result<Response<IsOccupiedResponse>, Status> {
        let channel = request::is_occupied(request.into_inner()).map_err(status::invalid)?;
        let answer = self
            .store
            .occupied(std::slice::from_ref(&channel))
            .await
            .map_err(status::store)?;
        let occupied = answer.first().copied().unwrap_or(false);
        tracing::debug!(%channel, occupied, "gate answered");
        Ok(Response::new(IsOccupiedResponse { occupied }))
    }

    async fn publish_if_occupied(
        &self,
        request: Request<PublishIfOccupiedRequest>,
    ) -> Result<Response<PublishIfOccupiedResponse>, Status> {
        let publish = request::publish(request.into_inner()).map_err(status::invalid)?;
        let occupied = self
            .store
            .occupied(&publish.channels)
            .await
            .map_err(status::store)?;
        let (live, vacant): (Vec<_>, Vec<_>) = publish
            .channels
            .into_iter()
            .zip(occupied)
            .partition(|(_, occupied)| *occupied);
        let live: Vec<_> = live.into_iter().map(|(c, _)| c).collect();
        let skipped: Vec<String> = vacant.into_iter().map(|(c, _)| c.to_string()).collect();

        if !live.is_empty() {
            self.publisher
                .trigger(
                    &live,
                    &publish.event,
                    &publish.data,
                    publish.socket_id.as_deref(),
                )
                .await
                .map_err(|err| {
                    tracing::warn!(%err, event = %publish.event, channels = live.len(), "publish failed");
                    status::publish(err)
                })?;
        }
        tracing::debug!(
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
}
