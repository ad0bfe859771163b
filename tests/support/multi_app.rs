//! A Pusher stand-in for several apps at once: `POST /apps/{id}/events` is checked against the
//! credentials of app `id` (key, secret), exactly as the single-app stand-in checks its own, and
//! every call is recorded with the key that signed it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use md5::Digest;
use serde_json::Value;

/// One trigger request the stand-in received.
#[derive(Debug, Clone)]
pub struct AppCall {
    pub app_id: String,
    pub auth_key: String,
    pub signature_valid: bool,
    pub body: Value,
}

struct State_ {
    /// (app id, key, secret).
    apps: Vec<(String, String, String)>,
    calls: Mutex<Vec<AppCall>>,
}

pub struct MultiAppStub {
    pub addr: SocketAddr,
    state: Arc<State_>,
}

impl MultiAppStub {
    /// Serves, on the current tokio runtime, the apps given as (id, key, secret).
    pub async fn start(apps: &[(&str, &str, &str)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State_ {
            apps: apps
                .iter()
                .map(|(i, k, s)| ((*i).to_owned(), (*k).to_owned(), (*s).to_owned()))
                .collect(),
            calls: Mutex::default(),
        });
        let router = Router::new()
            .route("/apps/{app_id}/events", post(trigger))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<AppCall> {
        self.state.calls.lock().unwrap().clone()
    }
}

async fn trigger(
    State(state): State<Arc<State_>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> (StatusCode, String) {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let path = format!("/apps/{app_id}/events");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let valid = state
        .apps
        .iter()
        .find(|(id, _, _)| *id == app_id)
        .is_some_and(|(_, key, secret)| {
            get("auth_key") == *key
                && get("auth_version") == "1.0"
                && get("auth_timestamp")
                    .parse::<u64>()
                    .is_ok_and(|t| t.abs_diff(now) <= 600)
                && get("body_md5") == hex::encode(md5::Md5::digest(&body))
                && get("auth_signature")
                    == occupancy::pusher::signing::sign(
                        secret,
                        &occupancy::pusher::signing::string_to_sign("POST", &path, &params),
                    )
        });
    state.calls.lock().unwrap().push(AppCall {
        app_id,
        auth_key: get("auth_key"),
        signature_valid: valid,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if valid {
        (StatusCode::OK, "{}".into())
    } else {
        (StatusCode::UNAUTHORIZED, "invalid signature".into())
    }
}
