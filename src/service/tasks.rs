//! One set that owns every task the service runs, so none is forgotten, none outlives the
//! service, and a panic in any of them is reported instead of swallowed.
//!
//! The rule is the one mini-redis follows for its connections: whoever starts a task owns its
//! end. Here the first task to end, for whatever reason, ends them all (a server that stops
//! alone would leave a half-working replica behind a balancer that still sends it work): it
//! cancels the shared stop token, and every other task drains on that token. Beside the set:
//! the two phases of a shutdown ([`Shutdown`]) and why serving stopped early ([`ServeError`]).

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The two phases of a shutdown. Cancelling `stop` alone implies draining.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Health turns `NOT_SERVING`; everything else goes on (the balancer's grace period).
    pub draining: CancellationToken,
    /// The listeners stop accepting, requests in flight finish, streams end.
    pub stop: CancellationToken,
}

/// Why serving stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server")]
    Grpc(#[from] tonic::transport::Error),
    /// The webhook or admin server failed.
    #[error("webhook or admin server")]
    Http(#[from] std::io::Error),
    /// The reflection service could not be built from the descriptor sets.
    #[error("reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// An app's Pusher HTTP client could not be built (its TLS roots, say).
    #[error("cannot set up the Pusher HTTP client")]
    PusherClient(#[source] reqwest::Error),
    /// A task panicked; the panic itself is in the log.
    #[error("a service task panicked")]
    Panicked,
}

/// Every task of a running service, each with a name for the report.
pub(crate) struct TaskSet {
    tasks: JoinSet<(&'static str, Result<(), ServeError>)>,
    stop: CancellationToken,
}

impl TaskSet {
    /// An empty set whose tasks all drain on `stop`.
    pub(crate) fn new(stop: CancellationToken) -> Self {
        Self {
            tasks: JoinSet::new(),
            stop,
        }
    }

    /// Runs `task` as part of the service, under `name`.
    pub(crate) fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Waits for every task. The first to end (a server failing, or every task draining after
    /// the stop token) cancels the stop token, so the others drain too; the first error or
    /// panic is what the service reports.
    pub(crate) async fn join_all(&mut self) -> Result<(), ServeError> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let ended = match joined {
                Ok((name, Ok(()))) => {
                    if !self.stop.is_cancelled() {
                        tracing::error!(task = name, "a service task ended by itself: stopping");
                    }
                    Ok(())
                }
                Ok((name, Err(err))) => {
                    tracing::error!(task = name, error = %crate::error_chain::error_chain(&err), "a service task failed: stopping");
                    Err(err)
                }
                Err(err) if err.is_panic() => {
                    tracing::error!(%err, "a service task panicked: stopping");
                    Err(ServeError::Panicked)
                }
                // Cancelled: only `abort`, which nothing calls while joining.
                Err(_) => Ok(()),
            };
            self.stop.cancel();
            if let Err(err) = ended {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_failing_task_stops_the_others_and_is_reported() {
        let stop = CancellationToken::new();
        let mut tasks = TaskSet::new(stop.clone());
        let waiting = stop.clone();
        tasks.spawn("waits for stop", async move {
            waiting.cancelled().await;
            Ok(())
        });
        tasks.spawn("fails", async {
            Err(ServeError::Http(std::io::Error::other("bind lost")))
        });
        let result = tasks.join_all().await;
        assert!(matches!(result, Err(ServeError::Http(_))), "{result:?}");
        assert!(stop.is_cancelled());
    }

    #[tokio::test]
    async fn a_panic_is_surfaced_not_swallowed() {
        let stop = CancellationToken::new();
        let mut tasks = TaskSet::new(stop.clone());
        tasks.spawn("panics", async { panic!("boom") });
        let result = tasks.join_all().await;
        assert!(matches!(result, Err(ServeError::Panicked)), "{result:?}");
        assert!(stop.is_cancelled());
    }
}
