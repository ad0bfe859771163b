//! Real parts for the integration tests: a `redis-server` on a free port, the real `occupancy`
//! binary, and a local stand-in for Pusher's HTTP API that checks every request's signature the
//! way Pusher does and records what it received. Nothing here mocks the store.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const APP_ID: &str = "4242";
pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret-do-not-log";

/// A gRPC channel to the gate at `url`, for any generated client (gate, health, reflection).
pub async fn channel_to(url: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(url.to_owned())
        .expect("valid URL")
        .connect()
        .await
        .expect("connect to the gate")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A real `redis-server`, without persistence, on a free port. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts (again) on the same port, empty, as a restarted Redis would be.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with \
                     `apt-get install redis-server` (Debian) or run tests/run-all.sh"
                )
            });
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "redis-server did not listen on port {}",
            self.port
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A direct connection, to look at the set as encoders reading Redis would.
    /// Retried for a few seconds: on a loaded machine (CI runs every suite on two cores) a busy
    /// redis-server can be slow to accept.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.get_multiplexed_async_connection().await {
                Ok(connection) => return connection,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("connect to test redis: {err}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("connect to test redis: {err}"),
            }
        }
    }

    pub async fn members(&self, key: &str) -> Vec<String> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut self.connection().await)
            .await
            .expect("SMEMBERS");
        members.sort();
        members
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request the Pusher stand-in received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub signature_valid: bool,
    pub body: Value,
    /// The body exactly as received.
    pub raw: String,
    /// The query parameters other than the signature's.
    pub params: Vec<(String, String)>,
}

/// How the stand-in answers trigger requests, to test how Pusher's failures are passed on.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub status: StatusCode,
    pub body: String,
    pub delay: Duration,
    /// A `Location` header to send (for redirects).
    pub location: Option<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            body: "{}".into(),
            delay: Duration::ZERO,
            location: None,
        }
    }
}

#[derive(Default)]
struct StubState {
    calls: Mutex<Vec<Call>>,
    behaviour: Mutex<Behaviour>,
    /// Answers for triggers that include a given channel, set by client suites over HTTP.
    by_channel: Mutex<std::collections::HashMap<String, Behaviour>>,
    /// What `GET /apps/{id}/channels` lists, and how long it takes to answer.
    listing: Mutex<(Vec<String>, Duration)>,
    /// How many listings were asked for (signed correctly or not).
    listings: std::sync::atomic::AtomicUsize,
    /// Queries and other requests that are not triggers (channel info, users, terminate,
    /// listings), in order.
    queries: Mutex<Vec<Call>>,
}

/// `POST /_stub/behaviour`: how triggers that include `channel` are answered from now on.
#[derive(serde::Deserialize)]
struct BehaviourRequest {
    channel: String,
    status: u16,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    delay_ms: u64,
}

/// A local server standing in for Pusher's HTTP API (`POST /apps/{id}/events`). It verifies
/// `auth_key`, `auth_timestamp`, `auth_version`, `body_md5` and `auth_signature` exactly as
/// Pusher specifies, answers 401 to anything unsigned, and records every call. `GET /_stub/calls`
/// lists them as JSON for client suites in other languages.
pub struct PusherStub {
    pub addr: SocketAddr,
    state: Arc<StubState>,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl PusherStub {
    /// Serves on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, state) = Self::serve(listener);
        Self {
            addr,
            state,
            _runtime: None,
        }
    }

    /// Serves on a runtime of its own, for callers that are not async.
    pub fn start_blocking() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (addr, state) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            Self::serve(listener)
        });
        Self {
            addr,
            state,
            _runtime: Some(runtime),
        }
    }

    fn serve(listener: tokio::net::TcpListener) -> (SocketAddr, Arc<StubState>) {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(StubState::default());
        let app = Router::new()
            .route("/apps/{app_id}/events", post(trigger))
            .route("/_stub/calls", get(list_calls))
            .route("/_stub/behaviour", post(set_channel_behaviour))
            .route("/apps/{app_id}/channels", get(list_channels))
            .route("/apps/{app_id}/batch_events", post(batch_trigger))
            .route("/apps/{app_id}/channels/{name}", get(channel_info))
            .route("/apps/{app_id}/channels/{name}/users", get(channel_users))
            .route(
                "/apps/{app_id}/users/{user}/terminate_connections",
                post(terminate_connections),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, state)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Calls whose `channels` include `channel`.
    pub fn calls_for(&self, channel: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c.body["channels"]
                    .as_array()
                    .is_some_and(|chs| chs.iter().any(|ch| ch == channel))
            })
            .collect()
    }

    /// What `GET /apps/{id}/channels` answers from now on: `channels` occupied, after `delay`.
    pub fn set_listing(&self, channels: &[&str], delay: Duration) {
        *self.state.listing.lock().unwrap() =
            (channels.iter().map(|c| (*c).to_owned()).collect(), delay);
    }

    /// How many channel listings were asked for so far.
    pub fn listings(&self) -> usize {
        self.state
            .listings
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests that are not triggers (listings, channel info, users, terminate), in order.
    pub fn queries(&self) -> Vec<Call> {
        self.state.queries.lock().unwrap().clone()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }
}

async fn set_channel_behaviour(
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
        location: None,
    };
    state
        .by_channel
        .lock()
        .unwrap()
        .insert(request.channel, behaviour);
    (StatusCode::OK, "ok")
}

async fn list_channels(
    State(state): State<Arc<StubState>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    state
        .listings
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = format!("/apps/{app_id}/channels");
    let query = query.unwrap_or_default();
    let verdict = verify_request("GET", &path, &query, b"");
    record_query(&state, "GET", &path, &query, &verdict, b"");
    if let Err(reason) = verdict {
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    let (mut channels, delay) = state.listing.lock().unwrap().clone();
    if let Some(prefix) = own_params(&query)
        .into_iter()
        .find_map(|(k, v)| (k == "filter_by_prefix").then_some(v))
    {
        channels.retain(|c| c.starts_with(&prefix));
    }
    tokio::time::sleep(delay).await;
    let channels: serde_json::Map<String, Value> =
        channels.into_iter().map(|c| (c, json!({}))).collect();
    axum::Json(json!({ "channels": channels })).into_response()
}

async fn list_calls(State(state): State<Arc<StubState>>) -> impl IntoResponse {
    let calls = state.calls.lock().unwrap().clone();
    axum::Json(json!({ "calls": calls }))
}

async fn trigger(
    State(state): State<Arc<StubState>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    raw: Bytes,
) -> axum::response::Response {
    let path = format!("/apps/{app_id}/events");
    let verdict = verify(&path, query.as_deref().unwrap_or(""), &raw);
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let chosen = {
        let by_channel = state.by_channel.lock().unwrap();
        body["channels"].as_array().and_then(|channels| {
            channels
                .iter()
                .filter_map(Value::as_str)
                .find_map(|c| by_channel.get(c).cloned())
        })
    };
    state.calls.lock().unwrap().push(Call {
        method: "POST".into(),
        path,
        signature_valid: verdict.is_ok(),
        body: body.clone(),
        raw: String::from_utf8_lossy(&raw).into_owned(),
        params: own_params(query.as_deref().unwrap_or("")),
    });
    if let Err(reason) = verdict {
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    let behaviour = chosen.unwrap_or_else(|| state.behaviour.lock().unwrap().clone());
    // With `info`, a successful answer lists every channel sent, one subscriber each, as
    // Pusher does for occupied channels.
    if let Some(info) = body["info"].as_str()
        && behaviour.status == StatusCode::OK
        && behaviour.body == "{}"
    {
        let channels: serde_json::Map<String, Value> = body["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|c| (c.to_owned(), info_entry(c, info)))
            .collect();
        return axum::Json(json!({ "channels": channels })).into_response();
    }
    tokio::time::sleep(behaviour.delay).await;
    let mut response = (behaviour.status, behaviour.body).into_response();
    if let Some(location) = behaviour.location {
        response
            .headers_mut()
            .insert("location", location.parse().unwrap());
    }
    response
}

/// What Pusher says about an occupied channel for `info` (one subscriber, one user).
fn info_entry(channel: &str, info: &str) -> Value {
    let mut entry = serde_json::Map::new();
    if info.contains("subscription_count") {
        entry.insert("subscription_count".into(), json!(1));
    }
    if info.contains("user_count") && channel.starts_with("presence-") {
        entry.insert("user_count".into(), json!(1));
    }
    Value::Object(entry)
}

/// A query's parameters other than the signature's.
fn own_params(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .filter(|(k, _)| {
            ![
                "auth_key",
                "auth_timestamp",
                "auth_version",
                "body_md5",
                "auth_signature",
            ]
            .contains(&k.as_str())
        })
        .collect()
}

fn record_query(
    state: &StubState,
    method: &str,
    path: &str,
    query: &str,
    verdict: &Result<(), String>,
    body: &[u8],
) {
    state.queries.lock().unwrap().push(Call {
        method: method.into(),
        path: path.into(),
        signature_valid: verdict.is_ok(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(body).into_owned(),
        params: own_params(query),
    });
}

/// `POST /apps/{id}/batch_events`: recorded with the triggers; answered by the behaviour of the
/// first event's channel that has one, else the default; with `info`, one entry per event.
async fn batch_trigger(
    State(state): State<Arc<StubState>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    raw: Bytes,
) -> axum::response::Response {
    let path = format!("/apps/{app_id}/batch_events");
    let query = query.unwrap_or_default();
    let verdict = verify(&path, &query, &raw);
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let events: Vec<Value> = body["batch"].as_array().cloned().unwrap_or_default();
    let chosen = {
        let by_channel = state.by_channel.lock().unwrap();
        events
            .iter()
            .filter_map(|e| e["channel"].as_str())
            .find_map(|c| by_channel.get(c).cloned())
    };
    state.calls.lock().unwrap().push(Call {
        method: "POST".into(),
        path,
        signature_valid: verdict.is_ok(),
        body,
        raw: String::from_utf8_lossy(&raw).into_owned(),
        params: own_params(&query),
    });
    if let Err(reason) = verdict {
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    let behaviour = chosen.unwrap_or_else(|| state.behaviour.lock().unwrap().clone());
    tokio::time::sleep(behaviour.delay).await;
    if behaviour.status == StatusCode::OK
        && behaviour.body == "{}"
        && events.iter().any(|e| e["info"].is_string())
    {
        let entries: Vec<Value> = events
            .iter()
            .map(|e| {
                info_entry(
                    e["channel"].as_str().unwrap_or_default(),
                    e["info"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        return axum::Json(json!({ "batch": entries })).into_response();
    }
    (behaviour.status, behaviour.body).into_response()
}

/// `GET /apps/{id}/channels/{name}`: occupied if the listing holds it.
async fn channel_info(
    State(state): State<Arc<StubState>>,
    Path((app_id, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let path = format!("/apps/{app_id}/channels/{name}");
    let query = query.unwrap_or_default();
    let verdict = verify_request("GET", &path, &query, b"");
    record_query(&state, "GET", &path, &query, &verdict, b"");
    if let Err(reason) = verdict {
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    let occupied = state.listing.lock().unwrap().0.contains(&name);
    axum::Json(json!({ "occupied": occupied })).into_response()
}

/// `GET /apps/{id}/channels/{name}/users`: nobody.
async fn channel_users(
    State(state): State<Arc<StubState>>,
    Path((app_id, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let path = format!("/apps/{app_id}/channels/{name}/users");
    let query = query.unwrap_or_default();
    let verdict = verify_request("GET", &path, &query, b"");
    record_query(&state, "GET", &path, &query, &verdict, b"");
    if let Err(reason) = verdict {
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    axum::Json(json!({ "users": [] })).into_response()
}

/// `POST /apps/{id}/users/{user}/terminate_connections`.
async fn terminate_connections(
    State(state): State<Arc<StubState>>,
    Path((app_id, user)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    raw: Bytes,
) -> axum::response::Response {
    let path = format!("/apps/{app_id}/users/{user}/terminate_connections");
    let query = query.unwrap_or_default();
    let verdict = verify_request("POST", &path, &query, &raw);
    record_query(&state, "POST", &path, &query, &verdict, &raw);
    if let Err(reason) = verdict {
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    axum::Json(json!({})).into_response()
}

/// Pusher's checks on a signed POST.
fn verify(path: &str, query: &str, body: &[u8]) -> Result<(), String> {
    verify_request("POST", path, query, body)
}

/// Pusher's checks on a request to this stand-in's app. A `body_md5` on a GET is refused: the
/// gate's own signer never sends one, and this stand-in checks the gate's requests.
fn verify_request(method: &str, path: &str, query: &str, body: &[u8]) -> Result<(), String> {
    let app = pusher_check::Credentials {
        app_id: APP_ID,
        key: KEY,
        secret: SECRET,
    };
    let params = pusher_check::params_of(query);
    pusher_check::verify(
        app,
        method,
        path,
        &params,
        body,
        pusher_check::EmptyBodyMd5::Refused,
    )
}

/// Which store the binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Redis,
    Memory,
}

/// The real `occupancy` binary, on ports it chose itself. Killed on drop.
pub struct Occupancy {
    child: Child,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    args: Vec<String>,
}

impl Occupancy {
    pub fn start(args: &[String]) -> Self {
        Self::start_at("127.0.0.1:0", "127.0.0.1:0", args)
    }

    /// Stops the process and starts it again with the same options at the same addresses, as a
    /// deployment restarting the gate would.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (grpc, http) = (self.grpc_addr.to_string(), self.http_addr.to_string());
        let args = self.args.clone();
        // The port was just freed; bind again, retrying briefly if the kernel still holds it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind(self.grpc_addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        *self = Self::start_at(&grpc, &http, &args);
    }

    pub fn start_at(grpc: &str, http: &str, args: &[String]) -> Self {
        let given = |flag: &str| args.iter().any(|a| a == flag);
        let mut command = Command::new(env!("CARGO_BIN_EXE_occupancy"));
        command.args(["--grpc-addr", grpc, "--http-addr", http]);
        if given("--apps-file") {
            command.env_remove("PUSHER_SECRET");
        } else {
            command
                .args(["--pusher-app-id", APP_ID, "--pusher-key", KEY])
                .env("PUSHER_SECRET", SECRET);
        }
        if !given("--admin-addr") {
            command.args(["--admin-addr", "127.0.0.1:0"]);
        }
        let addrs_file = listen_addrs::temporary_path();
        command.arg("--listen-addrs-file").arg(&addrs_file);
        if !given("--health-interval") {
            command.args(["--health-interval", "100ms"]);
        }
        // Reconciliation against a stand-in that lists nothing would empty the set under a test's
        // feet; the tests of reconciliation turn it on themselves.
        if !given("--reconcile-interval") {
            command.args(["--reconcile-interval", "0"]);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "occupancy=debug,info")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the occupancy binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("OCCUPANCY_TEST_LOG").is_some() {
                    eprintln!("[occupancy] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        // The addresses come from the file the service writes once bound, not from its log.
        let addrs = listen_addrs::wait_for(&addrs_file, &mut child, Duration::from_secs(20))
            .unwrap_or_else(|problem| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "occupancy did not report its addresses ({problem}); log:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        Self {
            child,
            grpc_addr: addrs.grpc,
            http_addr: addrs.http,
            admin_addr: addrs.admin,
            log,
            args: args.to_vec(),
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A gRPC channel to the gate, for any generated client (gate, health, reflection).
    pub async fn channel(&self) -> tonic::transport::Channel {
        channel_to(&self.grpc_url()).await
    }

    /// `http://host:port` of the admin listener (metrics and probes).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/pusher", self.http_addr)
    }

    /// Posts `events` as one webhook signed with the service's own key, as Pusher would.
    pub async fn send_webhook(&self, events: &[(&str, &str)]) -> (StatusCode, Value) {
        post_signed(&self.webhook_url(), KEY, SECRET, &webhook_body(events)).await
    }

    /// Posts `events` as one webhook created at `time_ms`.
    pub async fn send_webhook_at(
        &self,
        time_ms: u64,
        events: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        post_signed(
            &self.webhook_url(),
            KEY,
            SECRET,
            &webhook_body_at(time_ms, events),
        )
        .await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (TERM, INT, STOP...) without waiting.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit, and how long that took.
    pub fn wait_exit(mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "occupancy did not exit within {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (TERM, INT) and waits for the exit status.
    pub fn terminate(mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "occupancy did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Occupancy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Milliseconds since the epoch, as Pusher stamps `time_ms`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A webhook body as Pusher sends it, created now.
pub fn webhook_body(events: &[(&str, &str)]) -> String {
    webhook_body_at(now_ms(), events)
}

/// A webhook body as Pusher sends it, created at `time_ms`.
pub fn webhook_body_at(time_ms: u64, events: &[(&str, &str)]) -> String {
    let events: Vec<Value> = events
        .iter()
        .map(|(name, channel)| json!({ "name": name, "channel": channel }))
        .collect();
    json!({ "time_ms": time_ms, "events": events }).to_string()
}

/// Posts `body` signed with `key`/`secret` exactly as Pusher signs it.
pub async fn post_signed(url: &str, key: &str, secret: &str, body: &str) -> (StatusCode, Value) {
    let signature = occupancy::wire::sign_webhook(secret, body.as_bytes());
    post_raw(url, Some(key), Some(&signature), body.as_bytes().to_vec()).await
}

pub async fn post_raw(
    url: &str,
    key: Option<&str>,
    signature: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header("x-pusher-key", key);
    }
    if let Some(signature) = signature {
        request = request.header("x-pusher-signature", signature);
    }
    let response = request.send().await.expect("webhook request");
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A certificate authority and a server certificate it signed (for `localhost` and 127.0.0.1),
/// written as PEM files into a fresh directory, for TLS tests with nothing installed.
pub struct TestPki {
    pub dir: std::path::PathBuf,
    pub ca_cert: std::path::PathBuf,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

impl TestPki {
    pub fn create() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!(
            "occupancy-pki-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "occupancy test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issue = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = issue(vec!["localhost".into(), "127.0.0.1".into()]);
        let (client_pem, client_key_pem) = issue(vec!["encoder.test".into()]);
        let write = |name: &str, content: &str| {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            path
        };
        Self {
            ca_cert: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server-key.pem", &server_key_pem),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key_pem),
            dir,
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    /// The `redis-server` process id while it runs, to pause it (SIGSTOP) in fault tests.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Pusher's checks on a signed API request, shared by every stand-in.
pub mod pusher_check;

/// A Pusher stand-in serving several apps, each with its own credentials.
pub mod multi_app;

/// The addresses a service started on port 0 writes with `--listen-addrs-file`.
pub mod listen_addrs;

/// The service started in the test's own process, for tests that need no process boundary.
pub mod in_process;
#[allow(unused_imports)]
pub use in_process::InProcess;

/// State read from the service's admin listener: `/metrics` samples and `/readyz`.
pub mod state;

/// Metrics, memory, health and raw sockets, read from outside the service.
pub mod probe;

/// The gate started with its Pusher API listener, and requests signed as the SDKs sign them.
pub mod pusher_api;

/// `on_both_stores!`: one scenario run on Redis and on the in-memory store.
pub mod both_stores;

/// Polling the gate's gRPC health service for a status, bounded.
pub mod health_poll;
