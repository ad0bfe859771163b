//! The gate speaking Pusher's own HTTP publishing API (`--pusher-api-addr`), so any official
//! Pusher server SDK gets gated publishing by changing its host and port.
//!
//! `/apps/{app_id}/...` picks the app; every request is verified exactly as Pusher verifies it
//! ([`auth`]), with any of the app's keys. Triggers are split by the gate's answer ([`gated`]):
//! events on vacant channels go nowhere, the rest go to Pusher in one request newly signed with
//! the app's own key. Everything else under `/apps/{app_id}/` (channel queries, terminating a
//! user's connections) is verified and forwarded unchanged ([`forward`]). Checks run cheapest
//! first: the path and app, the body's size and arrival, the signature, then the body. None of the
//! refusals reaches Pusher:
//!
//! | answer | when |
//! |---|---|
//! | Pusher's | the request was forwarded: Pusher's status and body, passed through |
//! | 200 `{}` | a trigger or batch whose every channel is vacant: nothing sent (with `info`, an entry per channel) |
//! | 400 | the body is not JSON, or not a valid event (channels, names, fields) |
//! | 401 | `auth_key`, `auth_version`, `auth_timestamp`, `body_md5` or `auth_signature` failed |
//! | 404 | not under `/apps/{app_id}/`, or no such app here |
//! | 405 | a method other than POST on `events`/`batch_events`, other than GET/POST elsewhere |
//! | 408 | the body did not arrive within `--http-body-timeout` |
//! | 413 | the body is over the listener's limit, or an event's `data` over `--max-event-bytes` |
//! | 500 | the store failed in a way retrying will not fix |
//! | 502 | Pusher could not be reached |
//! | 503 | the store cannot be asked and `--publish-when-store-down none` |
//! | 504 | Pusher did not answer within `--pusher-timeout` |
//!
//! Error bodies are one line of plain text, as Pusher's are. Bodies and secrets are never
//! logged; a refusal logs one line, at most one a second.

mod auth;
mod events;
mod forward;
mod gated;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

pub use self::events::MAX_BATCH_EVENTS;
use crate::apps::{App, Apps};
use crate::gate::StoreDownPolicy;
use crate::metrics::{Metrics, count};

/// The key/secret pairs one app accepts on this listener (its key first, then extra keys).
pub struct AppKeys {
    /// The Pusher app id.
    pub app_id: String,
    /// Every key/secret pair that may sign a request for it.
    pub keys: Vec<(String, SecretString)>,
}

/// What is built for the listener at start-up: each app's credentials in the form the
/// signature check uses, and the TLS acceptor. Its limits are read from the configuration.
pub struct PusherApiAccess {
    /// Credentials per app.
    pub keys: Vec<AppKeys>,
    /// TLS for the listener (none: plain HTTP).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Largest body read: a full batch of [`MAX_BATCH_EVENTS`] events whose data is at
/// `max_event_bytes` and escaped at worst twice over, plus room for names and channels.
fn body_limit(max_event_bytes: usize) -> usize {
    MAX_BATCH_EVENTS
        .saturating_mul(max_event_bytes.saturating_mul(2))
        .saturating_add(256 * 1024)
}

struct ApiState {
    apps: Arc<Apps>,
    keys: Vec<AppKeys>,
    body_limit: usize,
    body_timeout: Duration,
    max_event_bytes: usize,
    store_down: StoreDownPolicy,
    metrics: Arc<Metrics>,
}

/// The router answering Pusher's HTTP API for `apps` with their `keys`: an event's `data` may
/// be up to `max_event_bytes`, a body must arrive within `body_timeout`, and while the store
/// cannot be asked `store_down` decides (as for `PublishIfOccupied`). Counts into `metrics`.
pub fn router(
    apps: Arc<Apps>,
    keys: Vec<AppKeys>,
    max_event_bytes: usize,
    body_timeout: Duration,
    store_down: StoreDownPolicy,
    metrics: Arc<Metrics>,
) -> Router {
    let state = Arc::new(ApiState {
        apps,
        keys,
        body_limit: body_limit(max_event_bytes),
        body_timeout,
        max_event_bytes,
        store_down,
        metrics,
    });
    Router::new().fallback(handle).with_state(state)
}

/// Which part of the API a request is for, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Events,
    BatchEvents,
    Channels,
    Users,
    Other,
}

impl Endpoint {
    fn of(rest: &str) -> Self {
        match rest {
            "events" => Self::Events,
            "batch_events" => Self::BatchEvents,
            _ if rest == "channels" || rest.starts_with("channels/") => Self::Channels,
            _ if rest.starts_with("users/") => Self::Users,
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::BatchEvents => "batch_events",
            Self::Channels => "channels",
            Self::Users => "users",
            Self::Other => "other",
        }
    }
}

/// One request's endpoint and the service's metrics, where its outcome is counted.
#[derive(Clone, Copy)]
struct Tally<'a> {
    endpoint: Endpoint,
    metrics: &'a Metrics,
}

impl Tally<'_> {
    /// Counts the request by endpoint and outcome.
    fn outcome(self, outcome: &str) {
        count(
            &self.metrics.pusher_api_requests,
            &[("endpoint", self.endpoint.label()), ("outcome", outcome)],
            1,
        );
    }

    /// A refused request: counted, logged at most once a second (with how many went
    /// unlogged), and answered with a one-line reason.
    fn refuse(self, why: &'static str, status: StatusCode, reason: &str) -> Response {
        self.outcome(why);
        log_refusal(self.endpoint, status, reason);
        plain(status, reason)
    }
}

async fn handle(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let tally = |endpoint| Tally {
        endpoint,
        metrics: &state.metrics,
    };
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or_default();
    let Some((app_id, rest)) = path
        .strip_prefix("/apps/")
        .and_then(|r| r.split_once('/'))
        .or_else(|| app_of_bare_users_path(&state.keys, path, query))
        .filter(|(id, rest)| !id.is_empty() && plain_segments(rest))
    else {
        return tally(Endpoint::Other).refuse(
            "not_found",
            StatusCode::NOT_FOUND,
            "Not found: the Pusher HTTP API is under /apps/{app_id}/",
        );
    };
    let endpoint = Endpoint::of(rest);
    let tally = tally(endpoint);
    let (Ok(app), Some(keys)) = (
        state.apps.resolve(app_id),
        state.keys.iter().find(|k| k.app_id == app_id),
    ) else {
        return tally.refuse(
            "unknown_app",
            StatusCode::NOT_FOUND,
            "Unknown app: no app with this id is served here",
        );
    };
    let method = parts.method.clone();
    let allowed = match endpoint {
        Endpoint::Events | Endpoint::BatchEvents => method == Method::POST,
        _ => method == Method::POST || method == Method::GET,
    };
    if !allowed {
        return tally.refuse(
            "method",
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        );
    }
    let body = match read_body(body, state.body_limit, state.body_timeout).await {
        Ok(body) => body,
        Err((status, outcome, reason)) => return tally.refuse(outcome, status, reason),
    };
    let params = match auth::verify(
        &keys.keys,
        method.as_str(),
        path,
        query,
        &body,
        unix_seconds(),
    ) {
        Ok(params) => params,
        Err(err) => {
            return tally.refuse("unauthorized", StatusCode::UNAUTHORIZED, &err.to_string());
        }
    };
    match endpoint {
        Endpoint::Events => gated::trigger(&state, tally, app, &body).await,
        Endpoint::BatchEvents => gated::batch(&state, tally, app, &body).await,
        _ => forward_unchanged(tally, app, method, rest, params, body.to_vec()).await,
    }
}

/// A verified request that is not a trigger: on to Pusher as it came, newly signed.
async fn forward_unchanged(
    tally: Tally<'_>,
    app: &App,
    method: Method,
    rest: &str,
    params: Vec<(String, String)>,
    body: Vec<u8>,
) -> Response {
    match forward::send(
        &app.publisher,
        &app.id,
        tally,
        method,
        rest,
        auth::own_params(params),
        body,
    )
    .await
    {
        Ok(upstream) => {
            tally.outcome(if (200..300).contains(&upstream.status) {
                "forwarded"
            } else {
                "upstream_error"
            });
            forward::pass_through(upstream)
        }
        Err(response) => response,
    }
}

/// The Python SDK's `terminate_connections` posts to `/users/{id}/terminate_connections`
/// without `/apps/{id}`: the app is then the one whose key signed it (keys are unique across
/// apps). The path as sent is what is verified; upstream gets the full path.
fn app_of_bare_users_path<'a>(
    keys: &'a [AppKeys],
    path: &'a str,
    query: &str,
) -> Option<(&'a str, &'a str)> {
    let rest = path.strip_prefix('/').filter(|r| r.starts_with("users/"))?;
    let key = url::form_urlencoded::parse(query.as_bytes())
        .find_map(|(k, v)| (k == "auth_key").then_some(v))?;
    keys.iter()
        .find(|app| app.keys.iter().any(|(k, _)| *k == key))
        .map(|app| (app.app_id.as_str(), rest))
}

/// Whether `rest` is a path of real segments: none empty, none `.` or `..` (`%2e` counts as a
/// dot, as URL parsers read it). A dot segment would be resolved away when the upstream URL is
/// built, so what reaches Pusher would not be the path that was signed and checked here.
fn plain_segments(rest: &str) -> bool {
    !rest.is_empty()
        && rest.split('/').all(|segment| {
            let dots = segment.to_ascii_lowercase().replace("%2e", ".");
            !segment.is_empty() && dots != "." && dots != ".."
        })
}

/// Reads the body, bounded in size and time.
async fn read_body(
    body: axum::body::Body,
    limit: usize,
    timeout: Duration,
) -> Result<axum::body::Bytes, (StatusCode, &'static str, &'static str)> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "The body was not received in time",
        )),
        Ok(Ok(body)) => Ok(body),
        Ok(Err(err)) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "Request body is over this listener's size limit",
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    "unreadable",
                    "The body could not be read",
                )
            })
        }
    }
}

/// Milliseconds of the last refusal logged, for the one-line-a-second limit.
static LAST_REFUSAL_LOGGED: AtomicU64 = AtomicU64::new(0);
/// Refusals not logged since the last line.
static REFUSALS_UNLOGGED: AtomicU64 = AtomicU64::new(0);

/// Logs a refusal at most once a second, with how many went unlogged since the last line.
fn log_refusal(endpoint: Endpoint, status: StatusCode, reason: &str) {
    let now = crate::clock::now_ms();
    let last = LAST_REFUSAL_LOGGED.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 1000
        && LAST_REFUSAL_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let unlogged = REFUSALS_UNLOGGED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            endpoint = endpoint.label(),
            status = status.as_u16(),
            reason,
            unlogged,
            "Pusher API request refused"
        );
    } else {
        REFUSALS_UNLOGGED.fetch_add(1, Ordering::Relaxed);
    }
}

/// A plain-text answer of one line, as Pusher's errors are.
fn plain(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        reason.replace(['\n', '\r'], " "),
    )
        .into_response()
}

/// A JSON answer.
fn json_answer(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_empty_segments_are_not_paths() {
        for rest in [
            "events",
            "channels/presence-a/users",
            "users/7/terminate_connections",
        ] {
            assert!(plain_segments(rest), "{rest}");
        }
        for rest in [
            "",
            "..",
            "channels/../events",
            "a//b",
            "%2e%2E/x",
            "x/.%2e",
            "channels/",
        ] {
            assert!(!plain_segments(rest), "{rest}");
        }
    }
}
