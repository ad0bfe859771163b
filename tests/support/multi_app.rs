//! A Pusher stand-in for several apps at once: `POST /apps/{id}/events` is checked against the
//! credentials of app `id` (key, secret), exactly as the single-app stand-in checks its own, and
//! every call is recorded with the key that signed it. `GET /apps/{id}/channels` answers app
//! `id`'s own listing, when signed with that app's credentials.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::pusher_check::{Credentials, EmptyBodyMd5, params_of, verify};

/// One trigger request the stand-in received.
#[derive(Debug, Clone)]
pub struct AppCall {
    pub app_id: String,
    pub auth_key: String,
    pub signature_valid: bool,
    pub body: Value,
}

/// App id -> the channels its listing answers; and (app id, valid signature) per listing.
type Listings = (
    std::collections::HashMap<String, Vec<String>>,
    Vec<(String, bool)>,
);

struct State_ {
    /// (app id, key, secret).
    apps: Vec<(String, String, String)>,
    calls: Mutex<Vec<AppCall>>,
    listings: Mutex<Listings>,
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
            listings: Mutex::default(),
        });
        let router = Router::new()
            .route("/apps/{app_id}/events", post(trigger))
            .route("/apps/{app_id}/channels", get(list_channels))
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

    /// What app `app_id`'s `GET /apps/{id}/channels` answers from now on.
    pub fn set_listing(&self, app_id: &str, channels: &[&str]) {
        self.state.listings.lock().unwrap().0.insert(
            app_id.to_owned(),
            channels.iter().map(|c| (*c).to_owned()).collect(),
        );
    }

    /// Every listing asked for: (app id, whether its signature was valid).
    pub fn listings(&self) -> Vec<(String, bool)> {
        self.state.listings.lock().unwrap().1.clone()
    }
}

/// Pusher's checks of a request signed as app `app_id`, with that app's credentials.
fn signed_by_app(
    state: &State_,
    method: &str,
    app_id: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) -> bool {
    state
        .apps
        .iter()
        .find(|(id, _, _)| id == app_id)
        .is_some_and(|(app_id, key, secret)| {
            let app = Credentials {
                app_id,
                key,
                secret,
            };
            verify(app, method, path, params, body, EmptyBodyMd5::Refused).is_ok()
        })
}

async fn list_channels(
    State(state): State<Arc<State_>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let path = format!("/apps/{app_id}/channels");
    let params = params_of(query.as_deref().unwrap_or(""));
    let valid = signed_by_app(&state, "GET", &app_id, &path, &params, b"");
    let mut listings = state.listings.lock().unwrap();
    listings.1.push((app_id.clone(), valid));
    if !valid {
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    let channels: serde_json::Map<String, Value> = listings
        .0
        .get(&app_id)
        .into_iter()
        .flatten()
        .map(|c| (c.clone(), serde_json::json!({})))
        .collect();
    axum::Json(serde_json::json!({ "channels": channels })).into_response()
}

async fn trigger(
    State(state): State<Arc<State_>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> (StatusCode, String) {
    let params = params_of(query.as_deref().unwrap_or(""));
    let path = format!("/apps/{app_id}/events");
    let valid = signed_by_app(&state, "POST", &app_id, &path, &params, &body);
    let auth_key = params
        .iter()
        .find(|(k, _)| k == "auth_key")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    state.calls.lock().unwrap().push(AppCall {
        app_id,
        auth_key,
        signature_valid: valid,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if valid {
        (StatusCode::OK, "{}".into())
    } else {
        (StatusCode::UNAUTHORIZED, "invalid signature".into())
    }
}
