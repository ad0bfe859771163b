//! Command-line flags and environment variables, and the checks that turn them into a
//! [`Config`] the server can trust.
//!
//! Secrets (`--pusher-secret`, `--pusher-extra-keys`, a password inside `--redis-url`) are taken
//! as plain text by clap and checked here instead, so no error message can ever echo them, and
//! `--help` never shows their values from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use secrecy::SecretString;

use crate::app_config::{AppConfig, RawApp, load_apps_file};
use crate::gate::StoreDownPolicy;
use crate::grpc_listener::GrpcLimits;
use crate::http_listener::HttpLimits;
use crate::store::RedisStoreConfig;

/// The command line. Not `Debug`: it holds secrets.
#[derive(Parser)]
#[command(
    name = "occupancy",
    version,
    about = "Keeps the set of occupied Pusher channels from Pusher's webhooks, and answers \
             encoders over gRPC whether anyone is watching, publishing through Pusher only \
             when someone is.",
    after_help = "Every option can also be set by the environment variable shown beside it. \
                  Without --redis-url the state lives in this process only."
)]
pub struct Cli {
    /// Address for the gRPC gate (IsOccupied, PublishIfOccupied, health, reflection).
    #[arg(long, env = "OCCUPANCY_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// Address for the webhook listener (POST /webhooks/pusher).
    #[arg(long, env = "OCCUPANCY_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Redis URL. One Redis: redis://[[user]:password@]host:port[/db] (rediss:// for TLS).
    /// Sentinel: redis+sentinel://[[user]:password@]sentinel1:port1,sentinel2:port2/MASTER_NAME[/db]
    /// [?sentinel_password=...] (the password is the data node's; rediss+sentinel:// for TLS).
    /// Cluster: redis+cluster://[[user]:password@]node1:port1,node2:port2,... (rediss+cluster://
    /// for TLS). Percent-encode reserved characters in passwords. Without it, state is kept in
    /// memory, local to this one process and lost on exit.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM file of the CA certificates to trust for TLS to Redis (rediss:// URLs, sentinels and
    /// cluster nodes included), for a Redis whose certificate a private CA signed.
    #[arg(long, env = "OCCUPANCY_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,

    /// Redis key of the set of occupied channels (single app). Encoders can read it with
    /// SISMEMBER.
    #[arg(
        long,
        env = "OCCUPANCY_REDIS_KEY",
        default_value = "pusher:channels",
        conflicts_with = "apps_file"
    )]
    pub redis_key: String,

    /// How long per-channel event times are remembered to order webhooks; events older than
    /// this are ignored as stale. Keep it above Pusher's five minutes of retries.
    #[arg(long, env = "OCCUPANCY_RETENTION", default_value = "15m", value_parser = positive_duration)]
    pub retention: Duration,

    /// How often each app's set is repaired from Pusher's list of occupied channels
    /// (GET /apps/{id}/channels, one API call each time); 0 turns it off. It also runs at
    /// start-up and after the store recovers from an outage.
    #[arg(long, env = "OCCUPANCY_RECONCILE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,

    /// Limit on connecting to Redis and on each Redis answer (e.g. 500ms, 2s).
    #[arg(long, env = "OCCUPANCY_REDIS_TIMEOUT", default_value = "500ms", value_parser = positive_duration)]
    pub redis_timeout: Duration,

    /// A TOML file with one `[[app]]` table per Pusher app (id, key, secret, extra_keys,
    /// cluster or api_url, redis_key), for serving several apps. Replaces the single-app flags.
    #[arg(long, env = "OCCUPANCY_APPS_FILE", conflicts_with_all = ["pusher_app_id", "pusher_key", "pusher_secret", "pusher_extra_keys", "pusher_api_url", "pusher_cluster"])]
    pub apps_file: Option<PathBuf>,

    /// Pusher app id (single app; see --apps-file for several).
    #[arg(long, env = "PUSHER_APP_ID", required_unless_present = "apps_file")]
    pub pusher_app_id: Option<String>,

    /// Pusher app key: signs API requests, and webhooks signed with it are accepted.
    #[arg(long, env = "PUSHER_KEY", required_unless_present = "apps_file")]
    pub pusher_key: Option<String>,

    /// Pusher app secret for --pusher-key. Prefer the environment variable over the flag, which
    /// other users of the machine can see.
    #[arg(
        long,
        env = "PUSHER_SECRET",
        hide_env_values = true,
        required_unless_present = "apps_file"
    )]
    pub pusher_secret: Option<String>,

    /// More KEY:SECRET pairs, comma-separated, whose webhook signatures are also accepted
    /// (for key rotation: Pusher signs with the app's oldest active token).
    #[arg(long, env = "PUSHER_EXTRA_KEYS", hide_env_values = true)]
    pub pusher_extra_keys: Option<String>,

    /// Pusher cluster; the API is https://api-<cluster>.pusher.com.
    #[arg(long, env = "PUSHER_CLUSTER", default_value = "mt1")]
    pub pusher_cluster: String,

    /// API base URL, overriding --pusher-cluster (for Pusher-compatible servers and tests). This
    /// is where the gate publishes; --pusher-api-addr is where it answers SDKs itself.
    #[arg(long, env = "PUSHER_API_URL")]
    pub pusher_api_url: Option<String>,

    /// Limit on one Pusher API request, connecting included (e.g. 3s).
    #[arg(long, env = "OCCUPANCY_PUSHER_TIMEOUT", default_value = "3s", value_parser = positive_duration)]
    pub pusher_timeout: Duration,

    /// Largest webhook body accepted, in bytes; larger ones get 413. The default (64 KiB) is 30
    /// times a batch of 20 channel-existence events; raise it if this URL also gets batched
    /// client-event webhooks (up to 20 events of 10 KB data each).
    #[arg(long, env = "OCCUPANCY_WEBHOOK_BODY_LIMIT", default_value_t = crate::webhook::DEFAULT_BODY_LIMIT, value_parser = at_least_one)]
    pub webhook_body_limit: usize,

    /// Webhook body bytes buffered at once across all connections, in bytes; a request that
    /// does not fit gets 503 and its connection is closed. At least --webhook-body-limit.
    #[arg(long, env = "OCCUPANCY_WEBHOOK_BUFFER_BUDGET", default_value_t = crate::webhook::DEFAULT_BUFFER_BUDGET)]
    pub webhook_buffer_budget: usize,

    /// How long a new gRPC connection may take to send its HTTP/2 preface (and to finish the
    /// TLS handshake); a silent connection is closed after it.
    #[arg(long, env = "OCCUPANCY_GRPC_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub grpc_handshake_timeout: Duration,

    /// Most gRPC connections open at once; more are closed at once.
    #[arg(long, env = "OCCUPANCY_GRPC_MAX_CONNECTIONS", default_value_t = 1024, value_parser = at_least_one)]
    pub grpc_max_connections: usize,

    /// How often the store is pinged to drive the gRPC health status (e.g. 1s).
    #[arg(long, env = "OCCUPANCY_HEALTH_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub health_interval: Duration,

    /// Address for metrics (GET /metrics) and HTTP probes (/livez, /readyz). Keep it private:
    /// it is never the public webhook port.
    #[arg(long, env = "OCCUPANCY_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,

    /// A file to write the bound addresses to, once all three listeners are bound, as
    /// `grpc=HOST:PORT`, `http=HOST:PORT` and `admin=HOST:PORT` lines: for supervisors and
    /// tests that start the service on port 0. Written atomically (a temporary file in the same
    /// directory, then renamed), so a reader never sees half of it.
    #[arg(long, env = "OCCUPANCY_LISTEN_ADDRS_FILE")]
    pub listen_addrs_file: Option<PathBuf>,

    /// On SIGTERM or SIGINT, how long health says NOT_SERVING while still serving, before the
    /// listeners stop accepting; set it to the load balancer's probe period (e.g. 5s).
    #[arg(long, env = "OCCUPANCY_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After the listeners stop accepting, the longest wait for requests and streams in flight
    /// before exiting anyway (exit 0).
    #[arg(long, env = "OCCUPANCY_DRAIN_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub drain_timeout: Duration,

    /// What PublishIfOccupied does while the store cannot be asked: `all` publishes to every
    /// requested channel (no live update lost), `none` answers UNAVAILABLE.
    #[arg(
        long,
        env = "OCCUPANCY_PUBLISH_WHEN_STORE_DOWN",
        value_enum,
        default_value = "all"
    )]
    pub publish_when_store_down: StoreDownPolicy,

    /// How long a webhook client may take to send its request headers; also how long an idle
    /// keep-alive connection is kept.
    #[arg(long, env = "OCCUPANCY_HTTP_HEADER_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub http_header_timeout: Duration,

    /// How long a webhook body may take to arrive (408 after that).
    #[arg(long, env = "OCCUPANCY_HTTP_BODY_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub http_body_timeout: Duration,

    /// Most webhook connections open at once; more are closed at once.
    #[arg(long, env = "OCCUPANCY_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = at_least_one)]
    pub http_max_connections: usize,

    /// Most WatchOccupancy streams open at once; more are answered RESOURCE_EXHAUSTED. Each
    /// stream holds a task and, while its snapshot is sent, a copy of the watched set.
    #[arg(long, env = "OCCUPANCY_MAX_WATCH_STREAMS", default_value_t = 1024, value_parser = at_least_one)]
    pub max_watch_streams: usize,

    /// Extra PEM CA certificates to trust for the Pusher API (a self-hosted Pusher-compatible
    /// server with a private CA). The system's roots stay trusted.
    #[arg(long, env = "OCCUPANCY_PUSHER_CA")]
    pub pusher_ca: Option<PathBuf>,

    /// Bearer tokens, comma-separated, of which every occupancy.v1 call must carry one
    /// (`authorization: Bearer <token>`); several allow rotation. Health and reflection stay open.
    #[arg(long, env = "OCCUPANCY_GRPC_TOKENS", hide_env_values = true)]
    pub grpc_tokens: Option<String>,

    /// PEM certificate chain for serving gRPC over TLS (with --grpc-tls-key).
    #[arg(long, env = "OCCUPANCY_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,

    /// PEM private key for --grpc-tls-cert.
    #[arg(long, env = "OCCUPANCY_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,

    /// PEM CA certificates: when given, gRPC clients must present a certificate signed by one.
    #[arg(long, env = "OCCUPANCY_GRPC_TLS_CLIENT_CA", requires = "grpc_tls_cert")]
    pub grpc_tls_client_ca: Option<PathBuf>,

    /// Address on which the gate itself answers Pusher's HTTP publishing API (POST
    /// /apps/{id}/events, /batch_events, GET /apps/{id}/channels...), so an official Pusher
    /// server SDK pointed here (its host/port setting) publishes only to occupied channels. Off
    /// unless given. Not to be confused with --pusher-api-url, which is where the gate itself
    /// sends the events that pass: the real Pusher upstream.
    #[arg(long, env = "PUSHER_API_ADDR")]
    pub pusher_api_addr: Option<SocketAddr>,

    /// Largest `data` of one event accepted on --pusher-api-addr, in bytes (413 above); Pusher's
    /// own limit is 10240, raise it for a dedicated cluster with a higher one.
    #[arg(long, env = "OCCUPANCY_MAX_EVENT_BYTES", default_value_t = 10 * 1024, value_parser = at_least_one)]
    pub max_event_bytes: usize,

    /// PEM certificate chain for serving --pusher-api-addr over TLS (with --pusher-api-tls-key).
    #[arg(
        long,
        env = "OCCUPANCY_PUSHER_API_TLS_CERT",
        requires_all = ["pusher_api_tls_key", "pusher_api_addr"]
    )]
    pub pusher_api_tls_cert: Option<PathBuf>,

    /// PEM private key for --pusher-api-tls-cert.
    #[arg(
        long,
        env = "OCCUPANCY_PUSHER_API_TLS_KEY",
        requires = "pusher_api_tls_cert"
    )]
    pub pusher_api_tls_key: Option<PathBuf>,
}

/// A configuration that failed its checks. Messages name the option, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that cannot be used; the message says which option and why.
    #[error("{option}: {reason}")]
    Invalid {
        /// The option's flag and variable.
        option: &'static str,
        /// What is wrong, without echoing secrets.
        reason: String,
    },
}

fn invalid(option: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        reason: reason.into(),
    }
}

/// Where the set of occupied channels is kept.
#[derive(Clone)]
pub enum StoreChoice {
    /// In this process only.
    Memory,
    /// In Redis, shared with encoders and other replicas: its URL (possibly holding a password),
    /// timeout and CA, as the store takes them.
    Redis(RedisStoreConfig),
}

/// A checked configuration.
pub struct Config {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Webhook listen address.
    pub http_addr: SocketAddr,
    /// Which store to use.
    pub store: StoreChoice,
    /// The Pusher apps served, at least one.
    pub apps: Vec<AppConfig>,
    /// How long event times are kept to order webhooks.
    pub retention: Duration,
    /// How often sets are reconciled with Pusher; `None` when turned off.
    pub reconcile_interval: Option<Duration>,
    /// Pusher request timeout.
    pub pusher_timeout: Duration,
    /// Webhook body limit in bytes.
    pub webhook_body_limit: usize,
    /// Webhook body bytes buffered at once across all connections.
    pub webhook_buffer_budget: usize,
    /// gRPC handshake (preface) timeout and connection cap.
    pub grpc_limits: GrpcLimits,
    /// Health ping interval.
    pub health_interval: Duration,
    /// Tokens accepted on occupancy.v1 calls; empty means open.
    pub grpc_tokens: Vec<SecretString>,
    /// Metrics and probes listen address.
    pub admin_addr: SocketAddr,
    /// Where to write the bound addresses once bound (`--listen-addrs-file`).
    pub listen_addrs_file: Option<PathBuf>,
    /// How long health is NOT_SERVING before the listeners close.
    pub drain_delay: Duration,
    /// The longest wait for in-flight work once the listeners close.
    pub drain_timeout: Duration,
    /// PublishIfOccupied while the store is down.
    pub store_down: StoreDownPolicy,
    /// Header (and idle) timeout and connection cap of the webhook and Pusher API listeners.
    pub http_limits: HttpLimits,
    /// Body timeout of the webhook and Pusher API listeners.
    pub http_body_timeout: Duration,
    /// `WatchOccupancy` stream cap.
    pub max_watch_streams: usize,
    /// Extra CA certificates (PEM) for the Pusher API.
    pub pusher_ca: Option<Vec<u8>>,
    /// TLS for the gRPC listener, read from the PEM files given.
    pub grpc_tls: Option<GrpcTls>,
    /// Where the gate answers Pusher's HTTP API; `None`: not served.
    pub pusher_api_addr: Option<SocketAddr>,
    /// Largest event `data` accepted there, in bytes.
    pub max_event_bytes: usize,
    /// TLS for that listener: certificate chain and key (PEM).
    pub pusher_api_tls: Option<(Vec<u8>, SecretBytes)>,
}

/// The PEM contents for serving gRPC over TLS.
#[derive(Clone)]
pub struct GrpcTls {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// The private key; never logged.
    pub key: SecretBytes,
    /// CAs that client certificates must chain to, when client certificates are required.
    pub client_ca: Option<Vec<u8>>,
}

/// Bytes that must not be printed (a private key).
#[derive(Clone)]
pub struct SecretBytes(pub Vec<u8>);

impl Cli {
    /// Checks every option, returning the first problem found.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let apps = match &self.apps_file {
            Some(path) => load_apps_file(path)
                .map_err(|e| invalid("--apps-file / OCCUPANCY_APPS_FILE", e.to_string()))?,
            None => vec![self.single_app()?],
        };
        let store = self.store()?;
        check_body_budget(self.webhook_body_limit, self.webhook_buffer_budget)?;
        check_retention(self.retention)?;

        let grpc_tokens = match self.grpc_tokens.as_deref() {
            Some(raw) => parse_tokens(raw)?,
            None => Vec::new(),
        };
        let grpc_tls = self.grpc_tls()?;
        let pusher_api_tls = self.pusher_api_tls()?;
        let pusher_ca = self
            .pusher_ca
            .as_deref()
            .map(|path| read_pem(path, "--pusher-ca / OCCUPANCY_PUSHER_CA", "CERTIFICATE"))
            .transpose()?;

        Ok(Config {
            pusher_api_addr: self.pusher_api_addr,
            max_event_bytes: self.max_event_bytes,
            pusher_api_tls,
            grpc_tokens,
            admin_addr: self.admin_addr,
            drain_delay: self.drain_delay,
            listen_addrs_file: self.listen_addrs_file,
            drain_timeout: self.drain_timeout,
            store_down: self.publish_when_store_down,
            http_limits: HttpLimits {
                header_timeout: self.http_header_timeout,
                max_connections: self.http_max_connections,
            },
            http_body_timeout: self.http_body_timeout,
            max_watch_streams: self.max_watch_streams,
            pusher_ca,
            grpc_tls,
            grpc_addr: self.grpc_addr,
            http_addr: self.http_addr,
            store,
            apps,
            retention: self.retention,
            reconcile_interval: (!self.reconcile_interval.is_zero())
                .then_some(self.reconcile_interval),
            pusher_timeout: self.pusher_timeout,
            webhook_body_limit: self.webhook_body_limit,
            webhook_buffer_budget: self.webhook_buffer_budget,
            grpc_limits: GrpcLimits {
                handshake_timeout: self.grpc_handshake_timeout,
                max_connections: self.grpc_max_connections,
            },
            health_interval: self.health_interval,
        })
    }
}

impl Cli {
    /// Where the sets are kept: Redis when a URL is given (checked here, never quoted: it may
    /// hold a password), memory otherwise.
    fn store(&self) -> Result<StoreChoice, ConfigError> {
        Ok(match self.redis_url.clone() {
            Some(url) if !url.trim().is_empty() => {
                let ca = self
                    .redis_ca
                    .as_deref()
                    .map(|ca| read_pem(ca, "--redis-ca / OCCUPANCY_REDIS_CA", "CERTIFICATE"))
                    .transpose()?;
                // Checked here so a bad URL stops start-up like every other bad option. The
                // message never quotes the URL: it may hold a password.
                crate::store::check_redis_url(&url, ca.as_deref())
                    .map_err(|e| invalid("--redis-url / REDIS_URL", e.to_string()))?;
                StoreChoice::Redis(RedisStoreConfig {
                    url,
                    timeout: self.redis_timeout,
                    ca,
                })
            }
            _ => StoreChoice::Memory,
        })
    }

    /// TLS for the gRPC listener, when a certificate and key are given.
    fn grpc_tls(&self) -> Result<Option<GrpcTls>, ConfigError> {
        Ok(match (&self.grpc_tls_cert, &self.grpc_tls_key) {
            (Some(cert), Some(key)) => Some(GrpcTls {
                cert: read_pem(
                    cert,
                    "--grpc-tls-cert / OCCUPANCY_GRPC_TLS_CERT",
                    "CERTIFICATE",
                )?,
                key: SecretBytes(read_pem(
                    key,
                    "--grpc-tls-key / OCCUPANCY_GRPC_TLS_KEY",
                    "PRIVATE KEY",
                )?),
                client_ca: self
                    .grpc_tls_client_ca
                    .as_ref()
                    .map(|ca| {
                        read_pem(
                            ca,
                            "--grpc-tls-client-ca / OCCUPANCY_GRPC_TLS_CLIENT_CA",
                            "CERTIFICATE",
                        )
                    })
                    .transpose()?,
            }),
            _ => None,
        })
    }

    /// TLS for the Pusher API listener, when a certificate and key are given.
    fn pusher_api_tls(&self) -> Result<Option<(Vec<u8>, SecretBytes)>, ConfigError> {
        Ok(
            match (&self.pusher_api_tls_cert, &self.pusher_api_tls_key) {
                (Some(cert), Some(key)) => Some((
                    read_pem(
                        cert,
                        "--pusher-api-tls-cert / OCCUPANCY_PUSHER_API_TLS_CERT",
                        "CERTIFICATE",
                    )?,
                    SecretBytes(read_pem(
                        key,
                        "--pusher-api-tls-key / OCCUPANCY_PUSHER_API_TLS_KEY",
                        "PRIVATE KEY",
                    )?),
                )),
                _ => None,
            },
        )
    }
}

impl Cli {
    /// The single app of the flags, checked exactly as an `[[app]]` of an apps file is.
    fn single_app(&self) -> Result<AppConfig, ConfigError> {
        let raw = RawApp {
            id: self.pusher_app_id.clone().unwrap_or_default(),
            key: self.pusher_key.clone().unwrap_or_default(),
            secret: self.pusher_secret.clone().unwrap_or_default(),
            extra_keys: self
                .pusher_extra_keys
                .as_deref()
                .map(|raw| raw.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            // --pusher-cluster has a default: an explicit --pusher-api-url wins over it.
            cluster: self
                .pusher_api_url
                .is_none()
                .then(|| self.pusher_cluster.clone()),
            api_url: self.pusher_api_url.clone(),
            redis_key: Some(self.redis_key.clone()),
        };
        raw.check(false)
            .map_err(|e| invalid(e.field.flag(), e.reason))
    }
}

/// Names the flag with its environment variable in an invalid value's error (`'--retention /
/// OCCUPANCY_RETENTION'`, as every other configuration error does): the value may have come from either, and the checks declared on the
/// flags (their value parsers) know neither.
pub fn name_env_in_error(command: &clap::Command, mut err: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg).cloned() else {
        return err;
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches("--");
    let env = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned());
    if let Some(env) = env {
        err.insert(
            ContextKind::InvalidArg,
            ContextValue::String(format!("--{long} / {env}")),
        );
    }
    err
}

/// Pusher retries a webhook for five minutes: a retry that arrives later than the retention
/// would find its channel's last event time forgotten and could undo a newer event.
pub const MIN_RETENTION: Duration = Duration::from_secs(5 * 60);

fn check_retention(retention: Duration) -> Result<(), ConfigError> {
    if retention < MIN_RETENTION {
        return Err(invalid(
            "--retention / OCCUPANCY_RETENTION",
            "must be at least 5m, Pusher's window of webhook retries (a late retry must still \
             be ordered against newer events)",
        ));
    }
    Ok(())
}

/// The buffer budget must hold one body at the limit, and fit what can be reserved at once.
fn check_body_budget(limit: usize, budget: usize) -> Result<(), ConfigError> {
    let max = crate::webhook::MAX_BUDGET_BYTES;
    if budget > max {
        return Err(invalid(
            "--webhook-buffer-budget / OCCUPANCY_WEBHOOK_BUFFER_BUDGET",
            format!("must be at most {max} bytes"),
        ));
    }
    if budget < limit {
        return Err(invalid(
            "--webhook-buffer-budget / OCCUPANCY_WEBHOOK_BUFFER_BUDGET",
            format!(
                "must be at least --webhook-body-limit / OCCUPANCY_WEBHOOK_BODY_LIMIT ({limit} \
                 bytes), or no body at the limit could ever be read"
            ),
        ));
    }
    Ok(())
}

/// A duration that must be longer than zero: a zero timeout or interval would fail every
/// request or spin. Declared on each such flag as its value parser.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        Err("must be longer than zero".into())
    } else {
        Ok(duration)
    }
}

/// A count that must be at least 1 (a limit of zero would refuse everything).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Comma-separated tokens. Errors give the entry's position, never its text.
fn parse_tokens(raw: &str) -> Result<Vec<SecretString>, ConfigError> {
    let tokens: Vec<&str> = raw.split(',').map(str::trim).collect();
    if let Some(index) = tokens
        .iter()
        .position(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(invalid(
            "--grpc-tokens / OCCUPANCY_GRPC_TOKENS",
            format!(
                "token {} is empty or holds a character outside printable ASCII",
                index + 1
            ),
        ));
    }
    Ok(tokens
        .into_iter()
        .map(|t| SecretString::from(t.to_owned()))
        .collect())
}

/// Reads a PEM file that must hold a block whose label contains `label`; the error names the
/// option and the path, never the content.
fn read_pem(
    path: &std::path::Path,
    option: &'static str,
    label: &str,
) -> Result<Vec<u8>, ConfigError> {
    crate::pem_file::read_pem(path, label).map_err(|err| invalid(option, err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn cli(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec![
            "occupancy",
            "--pusher-app-id",
            "42",
            "--pusher-key",
            "k",
            "--pusher-secret",
            "s3cr3t",
        ];
        argv.extend_from_slice(args);
        let command = <Cli as clap::CommandFactory>::command();
        let matches =
            command
                .clone()
                .try_get_matches_from(argv)
                .map_err(|e| ConfigError::Invalid {
                    option: "flags",
                    reason: name_env_in_error(&command, e).to_string(),
                })?;
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("parses")
            .into_config()
    }

    #[test]
    fn defaults_to_memory_store_and_cluster_url() {
        let config = cli(&[]).expect("valid");
        assert!(matches!(config.store, StoreChoice::Memory));
        assert_eq!(config.apps.len(), 1);
        assert_eq!(
            config.apps[0].api_url.as_str(),
            "https://api-mt1.pusher.com/"
        );
        assert_eq!(config.apps[0].redis_key, "pusher:channels");
        assert!(config.apps[0].extra_keys.is_empty());
        assert_eq!(config.grpc_addr.port(), 50051);
        assert_eq!(config.http_addr.port(), 8080);
    }

    #[test]
    fn the_pusher_api_listener_is_off_unless_given() {
        let config = cli(&[]).expect("valid");
        assert!(config.pusher_api_addr.is_none() && config.pusher_api_tls.is_none());
        assert_eq!(config.max_event_bytes, 10240);
        let config = cli(&[
            "--pusher-api-addr",
            "127.0.0.1:8090",
            "--max-event-bytes",
            "30720",
        ])
        .expect("valid");
        assert_eq!(config.pusher_api_addr.map(|a| a.port()), Some(8090));
        assert_eq!(config.max_event_bytes, 30720);
        let err = cli(&["--max-event-bytes", "0"])
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("OCCUPANCY_MAX_EVENT_BYTES"), "{err}");
    }

    #[test]
    fn extra_keys_add_webhook_pairs() {
        let config = cli(&["--pusher-extra-keys", "old:one, older:two"]).expect("valid");
        let pairs: Vec<(&str, &str)> = config.apps[0]
            .extra_keys
            .iter()
            .map(|(k, s)| (k.as_str(), s.expose_secret()))
            .collect();
        assert_eq!(pairs, [("old", "one"), ("older", "two")]);
    }

    #[test]
    fn errors_name_the_option_and_never_the_secret() {
        let err = cli(&["--pusher-extra-keys", "fine:x,leakysecretvalue"])
            .err()
            .expect("rejected")
            .to_string();
        assert!(
            err.contains("PUSHER_EXTRA_KEYS") && err.contains("entry 2"),
            "{err}"
        );
        assert!(!err.contains("leakysecretvalue"), "{err}");

        for (args, option) in [
            (&["--pusher-api-url", "ftp://x"][..], "PUSHER_API_URL"),
            (&["--pusher-cluster", "a/b"][..], "PUSHER_CLUSTER"),
            (
                &["--webhook-body-limit", "0"][..],
                "OCCUPANCY_WEBHOOK_BODY_LIMIT",
            ),
            (&["--pusher-timeout", "0s"][..], "OCCUPANCY_PUSHER_TIMEOUT"),
            (&["--retention", "4m59s"][..], "OCCUPANCY_RETENTION"),
            (
                &[
                    "--webhook-body-limit",
                    "100000",
                    "--webhook-buffer-budget",
                    "99999",
                ][..],
                "OCCUPANCY_WEBHOOK_BUFFER_BUDGET",
            ),
            (
                &["--webhook-buffer-budget", "4294967296"][..],
                "OCCUPANCY_WEBHOOK_BUFFER_BUDGET",
            ),
            (
                &["--grpc-max-connections", "0"][..],
                "OCCUPANCY_GRPC_MAX_CONNECTIONS",
            ),
            (
                &["--grpc-handshake-timeout", "0s"][..],
                "OCCUPANCY_GRPC_HANDSHAKE_TIMEOUT",
            ),
        ] {
            let err = cli(args).err().expect("rejected").to_string();
            assert!(err.contains(option), "{err}");
        }
    }

    #[test]
    fn flags_and_apps_file_refuse_the_same_blank_redis_key() {
        let err = cli(&["--redis-key", "  "])
            .err()
            .expect("rejected")
            .to_string();
        assert!(err.contains("--redis-key"), "{err}");
        assert!(err.contains("must not be empty"), "{err}");
        let dir = std::env::temp_dir().join(format!("occupancy-blank-key-{}", std::process::id()));
        std::fs::write(
            &dir,
            "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nredis_key = \"  \"\n",
        )
        .expect("write apps file");
        let err = crate::app_config::load_apps_file(&dir)
            .err()
            .expect("rejected")
            .to_string();
        let _ = std::fs::remove_file(&dir);
        assert!(err.contains("redis_key"), "{err}");
        assert!(err.contains("must not be empty"), "{err}");
    }

    #[test]
    fn zero_durations_and_counts_are_refused_by_their_flags() {
        for (flag, value) in [
            ("--retention", "0s"),
            ("--pusher-timeout", "0s"),
            ("--http-max-connections", "0"),
            ("--webhook-body-limit", "0"),
        ] {
            let argv = [
                "occupancy",
                "--pusher-app-id=1",
                "--pusher-key=k",
                "--pusher-secret=s",
                flag,
                value,
            ];
            let err = Cli::try_parse_from(argv)
                .err()
                .expect("rejected")
                .to_string();
            assert!(err.contains(flag), "{err}");
            assert!(
                err.contains("longer than zero") || err.contains("at least 1"),
                "{err}"
            );
        }
    }

    #[test]
    fn retention_of_pusher_retry_window_and_a_budget_of_one_body_are_accepted() {
        let config = cli(&[
            "--retention",
            "5m",
            "--webhook-body-limit",
            "1000",
            "--webhook-buffer-budget",
            "1000",
        ])
        .expect("valid");
        assert_eq!(config.retention, MIN_RETENTION);
        assert_eq!(config.webhook_buffer_budget, 1000);
    }
}
