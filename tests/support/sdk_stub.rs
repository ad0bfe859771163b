//! A stand-in for Pusher's HTTP API covering everything an official server SDK can send through
//! the gate's Pusher API listener, for the SDK suites (`tests/pusher_sdks.rs`, `tests/sdk/`).
//!
//! The `PusherStub` in `mod.rs` serves only `POST events` and `GET channels` (and refuses the
//! `body_md5` the Python SDK sends on GET), which is what the gate itself calls. Behind the
//! listener, Pusher also sees `batch_events`, `info` answers, single-channel and user queries and
//! `terminate_connections`, so this stand-in serves all of them. Like Pusher, it verifies every
//! request's signature (`auth_key`, `auth_version`, `auth_timestamp` within 600 s, `body_md5`,
//! `auth_signature`); unlike Pusher, it records every request, signed correctly or not, so a suite
//! can assert what reached "Pusher" and that it was signed.
//!
//! Control endpoints, for suites in other languages (documented in `tests/sdk/README.md`):
//! `GET /_stub/calls`, `POST /_stub/behaviour`, `POST /_stub/listing`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::pusher_check::{self, EmptyBodyMd5};
use crate::support::{APP_ID, KEY, SECRET};

/// What the stand-in answers for `subscription_count` in `info`: not 0, so an answer from
/// Pusher can be told apart from one the gate synthesized for a dropped channel.
pub const SUBSCRIPTION_COUNT: u64 = 7;
/// What the stand-in answers for `user_count` (presence channels), for the same reason.
pub const USER_COUNT: u64 = 3;

/// One request the stand-in received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SdkCall {
    pub method: String,
    /// Without the query.
    pub path: String,
    /// The decoded query parameters other than the five authentication ones.
    pub query: HashMap<String, String>,
    pub signature_valid: bool,
    /// Why the signature check failed (empty when it passed).
    pub reason: String,
    /// The body exactly as received (UTF-8, lossy), so suites can compare bytes.
    pub raw_body: String,
    /// The body parsed as JSON, or null.
    pub body: Value,
}

/// How requests naming a channel are answered.
#[derive(Debug, Clone)]
struct Behaviour {
    status: StatusCode,
    body: String,
    delay: Duration,
}

#[derive(Default)]
struct StubState {
    calls: Mutex<Vec<SdkCall>>,
    by_channel: Mutex<HashMap<String, Behaviour>>,
    /// What `GET /apps/{id}/channels` answers under `channels`.
    listing: Mutex<serde_json::Map<String, Value>>,
}

/// `POST /_stub/behaviour`.
#[derive(serde::Deserialize)]
struct BehaviourRequest {
    channel: String,
    status: u16,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    delay_ms: u64,
}

/// The stand-in, serving on a runtime of its own (callers are not async).
pub struct SdkStub {
    pub addr: SocketAddr,
    state: Arc<StubState>,
    _runtime: tokio::runtime::Runtime,
}

impl SdkStub {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(StubState::default());
        let app = Router::new()
            .route("/apps/{app_id}/events", post(events))
            .route("/apps/{app_id}/batch_events", post(batch_events))
            .route("/apps/{app_id}/channels", get(channels))
            .route("/apps/{app_id}/channels/{name}", get(channel))
            .route("/apps/{app_id}/channels/{name}/users", get(users))
            .route(
                "/apps/{app_id}/users/{user_id}/terminate_connections",
                post(terminate),
            )
            .route("/_stub/calls", get(list_calls))
            .route("/_stub/behaviour", post(set_behaviour))
            .route("/_stub/listing", post(set_listing))
            .with_state(state.clone());
        let addr = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        });
        Self {
            addr,
            state,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<SdkCall> {
        self.state.calls.lock().unwrap().clone()
    }
}

/// Records the request and checks its signature: `Ok` carries the parsed body, `Err` Pusher's
/// kind of reason for the 401 (see [`refuse`]).
fn receive(
    state: &StubState,
    method: &str,
    path: String,
    query: Option<&str>,
    body: &[u8],
) -> Result<Value, String> {
    let params = pusher_check::params_of(query.unwrap_or(""));
    let verdict = verify(method, &path, &params, body);
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    const AUTH: [&str; 5] = [
        "auth_key",
        "auth_timestamp",
        "auth_version",
        "body_md5",
        "auth_signature",
    ];
    state.calls.lock().unwrap().push(SdkCall {
        method: method.into(),
        path,
        query: params
            .iter()
            .filter(|(k, _)| !AUTH.contains(&k.as_str()))
            .cloned()
            .collect(),
        signature_valid: verdict.is_ok(),
        reason: verdict.clone().err().unwrap_or_default(),
        raw_body: String::from_utf8_lossy(body).into_owned(),
        body: parsed.clone(),
    });
    verdict.map(|()| parsed)
}

/// Pusher's answer to a request whose signature check failed: 401 with the reason in plain text.
fn refuse(reason: String) -> Response {
    (StatusCode::UNAUTHORIZED, reason).into_response()
}

/// Pusher's checks. A `body_md5` on a request without a body is accepted when it is the MD5 of
/// the empty body, as Pusher accepts it from the Python SDK.
fn verify(
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) -> Result<(), String> {
    let app = pusher_check::Credentials {
        app_id: APP_ID,
        key: KEY,
        secret: SECRET,
    };
    pusher_check::verify(app, method, path, params, body, EmptyBodyMd5::Accepted)
}

/// The behaviour set for the first of `channels` that has one.
fn chosen<'a>(state: &StubState, channels: impl IntoIterator<Item = &'a str>) -> Option<Behaviour> {
    let by_channel = state.by_channel.lock().unwrap();
    channels
        .into_iter()
        .find_map(|c| by_channel.get(c).cloned())
}

async fn answer(behaviour: Behaviour) -> Response {
    tokio::time::sleep(behaviour.delay).await;
    (
        behaviour.status,
        [(header::CONTENT_TYPE, "text/plain")],
        behaviour.body,
    )
        .into_response()
}

/// The `info` entry Pusher gives for `channel` when `info` asks for `attributes`.
fn info_entry(channel: &str, attributes: &str) -> Value {
    let mut entry = serde_json::Map::new();
    for attribute in attributes.split(',').map(str::trim) {
        match attribute {
            "subscription_count" => {
                entry.insert(attribute.into(), json!(SUBSCRIPTION_COUNT));
            }
            "user_count" if channel.starts_with("presence-") => {
                entry.insert(attribute.into(), json!(USER_COUNT));
            }
            _ => {}
        }
    }
    Value::Object(entry)
}

async fn events(
    State(state): State<Arc<StubState>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/apps/{app_id}/events");
    let event = match receive(&state, "POST", path, query.as_deref(), &body) {
        Ok(event) => event,
        Err(reason) => return refuse(reason),
    };
    let mut channels: Vec<&str> = event["channels"]
        .as_array()
        .map(|cs| cs.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    channels.extend(event["channel"].as_str());
    if let Some(behaviour) = chosen(&state, channels.iter().copied()) {
        return answer(behaviour).await;
    }
    match event["info"].as_str() {
        Some(info) => {
            let entries: serde_json::Map<String, Value> = channels
                .iter()
                .map(|c| ((*c).to_owned(), info_entry(c, info)))
                .collect();
            axum::Json(json!({ "channels": entries })).into_response()
        }
        None => axum::Json(json!({})).into_response(),
    }
}

async fn batch_events(
    State(state): State<Arc<StubState>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/apps/{app_id}/batch_events");
    let request = match receive(&state, "POST", path, query.as_deref(), &body) {
        Ok(request) => request,
        Err(reason) => return refuse(reason),
    };
    let batch = request["batch"].as_array().cloned().unwrap_or_default();
    if let Some(behaviour) = chosen(&state, batch.iter().filter_map(|e| e["channel"].as_str())) {
        return answer(behaviour).await;
    }
    if batch.iter().any(|e| e["info"].is_string()) {
        let entries: Vec<Value> = batch
            .iter()
            .map(|e| match (e["channel"].as_str(), e["info"].as_str()) {
                (Some(channel), Some(info)) => info_entry(channel, info),
                _ => json!({}),
            })
            .collect();
        return axum::Json(json!({ "batch": entries })).into_response();
    }
    axum::Json(json!({})).into_response()
}

async fn channels(
    State(state): State<Arc<StubState>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/apps/{app_id}/channels");
    if let Err(reason) = receive(&state, "GET", path, query.as_deref(), &body) {
        return refuse(reason);
    }
    let listing = state.listing.lock().unwrap().clone();
    axum::Json(json!({ "channels": listing })).into_response()
}

async fn channel(
    State(state): State<Arc<StubState>>,
    Path((app_id, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/apps/{app_id}/channels/{name}");
    if let Err(reason) = receive(&state, "GET", path, query.as_deref(), &body) {
        return refuse(reason);
    }
    if let Some(behaviour) = chosen(&state, [name.as_str()]) {
        return answer(behaviour).await;
    }
    axum::Json(json!({ "occupied": true, "subscription_count": SUBSCRIPTION_COUNT }))
        .into_response()
}

async fn users(
    State(state): State<Arc<StubState>>,
    Path((app_id, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/apps/{app_id}/channels/{name}/users");
    if let Err(reason) = receive(&state, "GET", path, query.as_deref(), &body) {
        return refuse(reason);
    }
    axum::Json(json!({ "users": [{ "id": "user-1" }, { "id": "user-2" }] })).into_response()
}

async fn terminate(
    State(state): State<Arc<StubState>>,
    Path((app_id, user_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/apps/{app_id}/users/{user_id}/terminate_connections");
    if let Err(reason) = receive(&state, "POST", path, query.as_deref(), &body) {
        return refuse(reason);
    }
    axum::Json(json!({})).into_response()
}

async fn list_calls(State(state): State<Arc<StubState>>) -> impl IntoResponse {
    let calls = state.calls.lock().unwrap().clone();
    axum::Json(json!({ "calls": calls }))
}

async fn set_behaviour(
    State(state): State<Arc<StubState>>,
    axum::Json(request): axum::Json<BehaviourRequest>,
) -> impl IntoResponse {
    let Ok(status) = StatusCode::from_u16(request.status) else {
        return (StatusCode::BAD_REQUEST, "status is not an HTTP status");
    };
    let behaviour = Behaviour {
        status,
        body: request.body.unwrap_or_else(|| "{}".into()),
        delay: Duration::from_millis(request.delay_ms),
    };
    state
        .by_channel
        .lock()
        .unwrap()
        .insert(request.channel, behaviour);
    (StatusCode::OK, "ok")
}

/// `POST /_stub/listing` with `{"channels": {...}}`: what `GET channels` answers from now on.
async fn set_listing(
    State(state): State<Arc<StubState>>,
    axum::Json(request): axum::Json<Value>,
) -> impl IntoResponse {
    let Some(channels) = request["channels"].as_object() else {
        return (StatusCode::BAD_REQUEST, "expected {\"channels\": {...}}");
    };
    *state.listing.lock().unwrap() = channels.clone();
    (StatusCode::OK, "ok")
}
