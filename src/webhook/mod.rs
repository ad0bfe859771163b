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
//! | 408 | the body did not arrive within the body timeout (connection closed) |
//! | 413 | the body is over the configured limit, by its `Content-Length` before it is read or as it arrives (connection closed) |
//! | 431 | the request head is over [`crate::http_listener::MAX_HEAD_BYTES`] (answered by hyper before this handler runs) |
//! | 500 | the store answered with an error retrying will not fix |
//! | 503 | the store cannot be reached, or the bytes buffered across all connections are at their budget (then the connection is closed, nothing of the body read): Pusher will retry |
//!
//! Refusals that a stranger can cause (every check before the signature) are logged at most
//! once per [`crate::refusals::WARN_PERIOD`] each, with a count; `/metrics` counts every one.

mod budget;
mod payload;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

pub use self::budget::{BodyBudget, MAX_BUDGET_BYTES, Reservation};
pub use self::payload::Batch;
pub use self::signature::{WebhookKey, WebhookKeys, sign};
use crate::apps::{App, Apps};
use crate::metrics::{Metrics, count};
use crate::refusals::{Refusals, WARN_PERIOD};
use crate::store::{Applied, Occupancy};

/// The path Pusher is configured to post to.
pub const WEBHOOK_PATH: &str = "/webhooks/pusher";

/// Default largest body: 64 KiB. A webhook of the "channel existence" kind (all this service
/// reads) is about 70 bytes an event, so even a batch of 20 is under 2 KiB; the limit leaves 30
/// times that. Apps that also send `client_event` or presence webhooks to this URL with
/// batching on can send up to 20 events of 10 KB data each: raise `--webhook-body-limit` for them.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Default budget of body bytes buffered across all connections: 4 MiB, 64 bodies at the
/// default limit or about 2,000 typical webhooks at once, a small part of a 256 MiB pod.
pub const DEFAULT_BUFFER_BUDGET: usize = 4 * 1024 * 1024;

static BAD_KEY: Refusals = Refusals::new("webhooks rejected: bad key", WARN_PERIOD);
static BAD_SIGNATURE: Refusals = Refusals::new("webhooks rejected: bad signature", WARN_PERIOD);
static TOO_LARGE: Refusals = Refusals::new("webhooks rejected: body over the limit", WARN_PERIOD);
static TOO_SLOW: Refusals = Refusals::new("webhooks rejected: body too slow", WARN_PERIOD);
static UNREADABLE: Refusals = Refusals::new("webhook bodies could not be read", WARN_PERIOD);
static OVER_BUDGET: Refusals = Refusals::new(
    "webhooks refused with 503: the webhook buffer budget is spent",
    WARN_PERIOD,
);

struct WebhookState {
    apps: Arc<Apps>,
    keys: WebhookKeys,
    body_limit: usize,
    body_timeout: Duration,
    budget: BodyBudget,
    metrics: Arc<Metrics>,
}

/// The axum router serving [`WEBHOOK_PATH`], rejecting bodies over `body_limit` bytes or not
/// received within `body_timeout`, and refusing requests once `buffer_budget` bytes of bodies
/// are buffered across all connections. Counts into `metrics`.
pub fn router(
    apps: Arc<Apps>,
    keys: WebhookKeys,
    body_limit: usize,
    body_timeout: Duration,
    buffer_budget: usize,
    metrics: Arc<Metrics>,
) -> Router {
    let state = Arc::new(WebhookState {
        apps,
        keys,
        body_limit,
        body_timeout,
        budget: BodyBudget::new(buffer_budget, metrics.webhook_buffered_bytes.clone()),
        metrics,
    });
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .with_state(state)
}

/// A step's refusal: the answer to send instead of going on (boxed: a response is large and the
/// happy path should not carry its size).
type Refusal = Box<Response>;

/// One webhook, in the order that refuses a stranger cheapest: the key on the headers, then the
/// body within its limits, then the signature over it, then the batch itself; only then the
/// store. Each step answers for itself when it refuses.
async fn receive(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let steps = async {
        let key = known_key(&state, header("x-pusher-key"))?;
        let (body, _reservation) = read_body(&state, &parts.headers, body).await?;
        let app = signed_by(&state, key, header("x-pusher-signature"), &body)?;
        let batch = parse_batch(&state.metrics, app, &body)?;
        let applied = apply(app, &batch).await?;
        Ok::<_, Refusal>(applied_answer(&state.metrics, app, &batch, &applied))
    };
    steps.await.unwrap_or_else(|refusal| *refusal)
}

/// The key named by `X-Pusher-Key`: a stranger's request is refused on its headers alone,
/// before its body is read.
fn known_key<'a>(state: &'a WebhookState, key: Option<&str>) -> Result<&'a WebhookKey, Refusal> {
    state.keys.find(key).map_err(|err| {
        outcome(&state.metrics, "bad_key");
        BAD_KEY.record(&err);
        Box::new(answer(StatusCode::UNAUTHORIZED, &err.to_string()))
    })
}

/// The body, read within the size and time limits, with its share of the buffer budget
/// (released when the reservation drops). Bytes are reserved before any is read: a declared
/// length over the limit is refused on the headers, and a body without one may take up to the
/// limit.
async fn read_body(
    state: &WebhookState,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(axum::body::Bytes, Reservation), Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.body_limit as u64) {
        outcome(&state.metrics, "too_large");
        TOO_LARGE.record(&format_args!("limit {} bytes", state.body_limit));
        return Err(Box::new(closing(answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is over the webhook size limit",
        ))));
    }
    let wanted = declared.map_or(state.body_limit, |n| n as usize);
    let Some(reservation) = state.budget.try_reserve(wanted) else {
        outcome(&state.metrics, "over_budget");
        OVER_BUDGET.record(&format_args!("{wanted} bytes asked"));
        return Err(Box::new(closing(answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many webhook bodies in flight; retry later",
        ))));
    };
    let read = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.body_limit),
    );
    match read.await {
        Ok(Ok(body)) => Ok((body, reservation)),
        Err(_) => {
            outcome(&state.metrics, "body_timeout");
            TOO_SLOW.record(&format_args!("timeout {:?}", state.body_timeout));
            Err(Box::new(closing(answer(
                StatusCode::REQUEST_TIMEOUT,
                "the body was not received in time",
            ))))
        }
        Ok(Err(err)) => {
            // The only error with a limit set is the limit, or a client that broke off.
            let too_large = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            outcome(
                &state.metrics,
                if too_large { "too_large" } else { "unreadable" },
            );
            Err(Box::new(closing(if too_large {
                TOO_LARGE.record(&format_args!("limit {} bytes", state.body_limit));
                answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body is over the webhook size limit",
                )
            } else {
                UNREADABLE.record(&err);
                answer(StatusCode::BAD_REQUEST, "the body could not be read")
            })))
        }
    }
}

/// The app whose key signed `body`, if `signature` is right.
fn signed_by<'a>(
    state: &'a WebhookState,
    key: &WebhookKey,
    signature: Option<&str>,
    body: &[u8],
) -> Result<&'a Arc<App>, Refusal> {
    match key
        .verify(signature, body)
        .map(|index| state.apps.get(index))
    {
        Ok(Some(app)) => Ok(app),
        Ok(None) => Err(Box::new(answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "webhook key without an app",
        ))),
        Err(err) => {
            outcome(&state.metrics, "bad_signature");
            BAD_SIGNATURE.record(&err);
            Err(Box::new(answer(StatusCode::UNAUTHORIZED, &err.to_string())))
        }
    }
}

/// The batch in `body`, its time pulled back if it is stamped too far in the future.
fn parse_batch(metrics: &Metrics, app: &App, body: &[u8]) -> Result<Batch, Refusal> {
    let mut batch = Batch::parse(body).map_err(|err| {
        outcome(metrics, "bad_body");
        tracing::warn!(reason = %err, "webhook rejected: bad body");
        Box::new(answer(StatusCode::BAD_REQUEST, &err.to_string()))
    })?;
    let sent_at = batch.time_ms;
    if batch.bound_future(crate::clock::now_ms()) {
        count(&metrics.webhook_future_bounded, &[("app", &app.id)], 1);
        tracing::warn!(app = %app.id, time_ms = sent_at, bounded_to = batch.time_ms, "webhook stamped in the future: is a clock wrong?");
    }
    Ok(batch)
}

/// The batch applied to the app's store: 503 when the store is out of reach (Pusher retries),
/// 500 when an operator must look.
async fn apply(app: &App, batch: &Batch) -> Result<Applied, Refusal> {
    app.store.apply(&batch.events).await.map_err(|err| {
        let status = if err.is_transient() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        tracing::error!(error = ?err, app = %app.id, events = batch.events.len(), "webhook batch not applied");
        Box::new(answer(status, &err.to_string()))
    })
}

/// Counts what the batch did and answers it. The counts go to `/metrics`; the log line is at
/// debug, since at thousands of webhooks a second one line each would be the log's whole budget.
fn applied_answer(metrics: &Metrics, app: &App, batch: &Batch, applied: &Applied) -> Response {
    let occupied = applied
        .applied
        .iter()
        .filter(|e| e.occupancy == Occupancy::Occupied)
        .count();
    let vacated = applied.applied.len() - occupied;
    outcome(metrics, "applied");
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
            &metrics.webhook_events,
            &[("app", app.id.as_str()), ("kind", kind), ("effect", effect)],
            n as u64,
        );
    }
    tracing::debug!(
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

fn outcome(metrics: &Metrics, outcome: &str) {
    count(&metrics.webhook_requests, &[("outcome", outcome)], 1);
}

/// `response` with `Connection: close`: the rest of a body not read (or cut off) must not be
/// taken for the next request, and a peer refused for load should not keep the socket.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// An error answer: `{"error": reason}`, so Pusher's dashboard and operators see why.
fn answer(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": reason }))).into_response()
}
