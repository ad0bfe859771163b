//! Sending a verified request on to Pusher and passing its answer back as it came.
//!
//! Pusher's own status and body reach the SDK unchanged (the SDKs map 400, 401, 403, 413, 429
//! and 5xx to their own errors); a Pusher that cannot be reached is a 502 and one that does not
//! answer within `--pusher-timeout` a 504, each with a plain-text reason. The upstream client is
//! the app's [`Publisher`]: the same connection pool, timeout and no-redirect policy as
//! `PublishIfOccupied`.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Tally, plain};
use crate::pusher::{PublishError, Publisher, Upstream, error_chain};

/// What came of a forwarded request: Pusher's answer, or the gate's answer for a transport
/// failure (already counted and logged).
pub(super) type Forwarded = Result<Upstream, Response>;

/// Forwards `body` to `{api}/apps/{id}/{suffix}` with the request's own `params`, newly signed.
pub(super) async fn send(
    publisher: &Publisher,
    app_id: &str,
    tally: Tally<'_>,
    method: Method,
    suffix: &str,
    params: Vec<(String, String)>,
    body: Vec<u8>,
) -> Forwarded {
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
        .map_err(|_| plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"))?;
    publisher
        .forward(tally.endpoint.label(), method, suffix, params, body)
        .await
        .map_err(|err| failure(app_id, tally, err))
}

/// The gate's answer when Pusher gave none.
fn failure(app_id: &str, tally: Tally<'_>, err: PublishError) -> Response {
    let (status, outcome) = match err {
        PublishError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        _ => (StatusCode::BAD_GATEWAY, "unreachable"),
    };
    tracing::warn!(app = %app_id, endpoint = tally.endpoint.label(), error = %error_chain(&err), "Pusher API request not forwarded");
    tally.outcome(outcome);
    plain(status, &err.to_string())
}

/// Pusher's answer as the gate's.
pub(super) fn pass_through(upstream: Upstream) -> Response {
    let status = StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, upstream.body).into_response();
    if let Some(value) = upstream
        .content_type
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
