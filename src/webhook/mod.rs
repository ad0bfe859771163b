//! The webhook listener: `POST /webhooks/pusher` keeps each app's set in step with Pusher.
//!
//! Every answer is chosen with Pusher's delivery in mind: it retries any non-2xx answer for five
//! minutes, so a transient failure (the store is down) must be non-2xx (503) to be retried, while
//! a request that can never succeed (bad signature, malformed body) gets a 4xx that says why.
//! Checks run cheapest and most fundamental first: the key header before the body is read, the
//! signature before the body is parsed. None of the error answers changes state:
//!
//! | answer | when |
//! |---|---|
//! | 200 | the batch was applied (stale, unusable and other events counted, not applied) |
//! | 400 | the body is not a Pusher webhook |
//! | 401 | `X-Pusher-Key` / `X-Pusher-Signature` missing, unknown or wrong |
//! | 408 | the body did not arrive within the body timeout |
//! | 413 | the body is over the configured limit |
//! | 500 | the store answered with an error retrying will not fix |
//! | 503 | the store cannot be reached: Pusher will retry |

mod payload;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

pub use self::payload::MAX_FUTURE_MS;
pub use self::payload::{Batch, PayloadError};
pub use self::signature::{SignatureError, WebhookKey, WebhookKeys, sign};
use crate::apps::Apps;
use crate::metrics::{count, metrics};
use crate::store::{Occupancy, OccupancyStore, StoreError};

/// The path Pusher is configured to post to.
pub const WEBHOOK_PATH: &str = "/webhooks/pusher";

struct WebhookState<S> {
    apps: Arc<Apps<S>>,
    keys: WebhookKeys,
    body_limit: usize,
    body_timeout: Duration,
}

/// The axum router serving [`WEBHOOK_PATH`], rejecting bodies over `body_limit` bytes or not
/// received within `body_timeout`.
pub fn router<S: OccupancyStore>(
    apps: Arc<Apps<S>>,
    keys: WebhookKeys,
    body_limit: usize,
    body_timeout: Duration,
) -> Router {
    let state = Arc::new(WebhookState {
        apps,
        keys,
        body_limit,
        body_timeout,
    });
    Router::new()
        .route(WEBHOOK_PATH, post(receive::<S>))
        .with_state(state)
}

async fn receive<S: OccupancyStore>(
    State(state): State<Arc<WebhookState<S>>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // A stranger's request is refused on its headers alone, before its body is read.
    let key = match state.keys.find(header("x-pusher-key")) {
        Ok(key) => key,
        Err(err) => {
            outcome("bad_key");
            tracing::warn!(reason = %err, "webhook rejected: bad key");
            return answer(StatusCode::UNAUTHORIZED, &err.to_string());
        }
    };
    let read = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.body_limit),
    );
    let body = match read.await {
        Err(_) => {
            outcome("body_timeout");
            tracing::warn!(timeout = ?state.body_timeout, "webhook rejected: body too slow");
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                "the body was not received in time",
            );
        }
        Ok(Ok(body)) => body,
        Ok(Err(err)) => {
            // The only error with a limit set is the limit, or a client that broke off.
            let too_large = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            outcome(if too_large { "too_large" } else { "unreadable" });
            return if too_large {
                tracing::warn!(
                    limit = state.body_limit,
                    "webhook rejected: body over the limit"
                );
                answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body is over the webhook size limit",
                )
            } else {
                tracing::warn!(%err, "webhook body could not be read");
                answer(StatusCode::BAD_REQUEST, "the body could not be read")
            };
        }
    };

    let app = match key
        .verify(header("x-pusher-signature"), &body)
        .map(|index| state.apps.get(index))
    {
        Ok(Some(app)) => app,
        Ok(None) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "webhook key without an app",
            );
        }
        Err(err) => {
            outcome("bad_signature");
            tracing::warn!(reason = %err, "webhook rejected: bad signature");
            return answer(StatusCode::UNAUTHORIZED, &err.to_string());
        }
    };

    let mut batch = match Batch::parse(&body) {
        Ok(batch) => batch,
        Err(err) => {
            outcome("bad_body");
            tracing::warn!(reason = %err, "webhook rejected: bad body");
            return answer(StatusCode::BAD_REQUEST, &err.to_string());
        }
    };

    let sent_at = batch.time_ms;
    if batch.bound_future(crate::store::now_ms()) {
        tracing::warn!(app = %app.id, time_ms = sent_at, bounded_to = batch.time_ms, "webhook stamped in the future: is a clock wrong?");
    }

    let applied = match app.store.apply(&batch.events).await {
        Ok(applied) => applied,
        Err(err) => {
            let status = match err {
                StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Failed(_) | StoreError::Unexpected(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            tracing::error!(error = ?err, app = %app.id, events = batch.events.len(), "webhook batch not applied");
            return answer(status, &err.to_string());
        }
    };

    let occupied = applied
        .applied
        .iter()
        .filter(|e| e.occupancy == Occupancy::Occupied)
        .count();
    let vacated = applied.applied.len() - occupied;
    outcome("applied");
    let m = metrics();
    let app_id = app.id.as_str();
    let stale_occupied = batch
        .events
        .iter()
        .filter(|e| e.occupancy == Occupancy::Occupied)
        .count()
        - occupied;
    for (kind, effect, n) in [
        ("occupied", "applied", occupied),
        ("vacated", "applied", vacated),
        ("occupied", "stale", stale_occupied),
        ("vacated", "stale", applied.stale - stale_occupied),
        ("other", "ignored", batch.ignored),
        ("occupancy", "invalid", batch.invalid),
    ] {
        count(
            &m.webhook_events,
            &[("app", app_id), ("kind", kind), ("effect", effect)],
            n as u64,
        );
    }
    if applied.stale > 0 {
        tracing::debug!(app = %app.id, stale = applied.stale, time_ms = batch.time_ms, "stale webhook events ignored");
    }
    tracing::info!(
        app = %app.id,
        time_ms = batch.time_ms,
        occupied,
        vacated,
        stale = applied.stale,
        ignored = batch.ignored,
        invalid = batch.invalid,
        "webhook batch applied"
    );
    (
        StatusCode::OK,
        axum::Json(json!({
            "occupied": occupied,
            "vacated": vacated,
            "stale": applied.stale,
            "ignored": batch.ignored,
            "invalid": batch.invalid,
        })),
    )
        .into_response()
}

fn outcome(outcome: &str) {
    count(&metrics().webhook_requests, &[("outcome", outcome)], 1);
}

/// An error answer: `{"error": reason}`, so Pusher's dashboard and operators see why.
fn answer(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": reason }))).into_response()
}
