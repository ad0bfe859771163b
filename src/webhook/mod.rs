//! The webhook listener: `POST /webhooks/pusher` keeps the store in step with Pusher.
//!
//! Every answer is chosen with Pusher's delivery in mind: it retries any non-2xx answer for five
//! minutes, so a transient failure (the store is down) must be non-2xx (503) to be retried, while
//! a request that can never succeed (bad signature, malformed body) gets a 4xx that says why.
//! Checks run cheapest and most fundamental first, and none of the error answers changes state:
//!
//! | answer | when |
//! |---|---|
//! | 200 | the batch was applied (or held nothing to apply) |
//! | 400 | the body is not a Pusher webhook, or names an invalid channel |
//! | 401 | `X-Pusher-Key` / `X-Pusher-Signature` missing, unknown or wrong |
//! | 413 | the body is over the configured limit |
//! | 500 | the store answered with an error retrying will not fix |
//! | 503 | the store cannot be reached: Pusher will retry |

mod payload;
mod signature;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use std::sync::Arc;

pub use self::payload::{Batch, PayloadError};
pub use self::signature::{SignatureError, WebhookKeys, sign};
use crate::store::{OccupancyStore, StoreError};

/// The path Pusher is configured to post to.
pub const WEBHOOK_PATH: &str = "/webhooks/pusher";

struct WebhookState<S> {
    store: Arc<S>,
    keys: WebhookKeys,
}

/// The axum router serving [`WEBHOOK_PATH`], rejecting bodies over `body_limit` bytes.
pub fn router<S: OccupancyStore>(store: Arc<S>, keys: WebhookKeys, body_limit: usize) -> Router {
    let state = Arc::new(WebhookState { store, keys });
    Router::new()
        .route(WEBHOOK_PATH, post(receive::<S>))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn receive<S: OccupancyStore>(
    State(state): State<Arc<WebhookState<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            tracing::warn!(%status, "webhook body rejected: {}", rejection.body_text());
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body is over the webhook size limit".to_owned()
            } else {
                rejection.body_text()
            };
            return answer(status, &reason);
        }
    };

    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(err) = state
        .keys
        .verify(header("x-pusher-key"), header("x-pusher-signature"), &body)
    {
        tracing::warn!(reason = %err, "webhook rejected: bad signature");
        return answer(StatusCode::UNAUTHORIZED, &err.to_string());
    }

    let batch = match Batch::parse(&body) {
        Ok(batch) => batch,
        Err(err) => {
            tracing::warn!(reason = %err, "webhook rejected: bad body");
            return answer(StatusCode::BAD_REQUEST, &err.to_string());
        }
    };

    if let Err(err) = state.store.apply(&batch.changes).await {
        let status = match err {
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::error!(%err, events = batch.changes.len(), "webhook batch not applied");
        return answer(status, &err.to_string());
    }

    let occupied = batch.changes.iter().filter(|c| c.occupied).count();
    let vacated = batch.changes.len() - occupied;
    tracing::info!(
        time_ms = batch.time_ms,
        occupied,
        vacated,
        ignored = batch.ignored,
        "webhook batch applied"
    );
    (
        StatusCode::OK,
        axum::Json(json!({ "occupied": occupied, "vacated": vacated, "ignored": batch.ignored })),
    )
        .into_response()
}

/// An error answer: `{"error": reason}`, so Pusher's dashboard and operators see why.
fn answer(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": reason }))).into_response()
}
