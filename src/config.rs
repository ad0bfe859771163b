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

use crate::apps::{
    AppConfig, api_url, check_app_id, check_distinct, check_key, load_apps_file, parse_key_pairs,
};
use crate::gate::StoreDownPolicy;

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
    #[arg(long, env = "OCCUPANCY_RETENTION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// How often each app's set is repaired from Pusher's list of occupied channels
    /// (GET /apps/{id}/channels, one API call each time); 0 turns it off. It also runs at
    /// start-up and after the store recovers from an outage.
    #[arg(long, env = "OCCUPANCY_RECONCILE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,

    /// Limit on connecting to Redis and on each Redis answer (e.g. 500ms, 2s).
    #[arg(long, env = "OCCUPANCY_REDIS_TIMEOUT", default_value = "500ms", value_parser = humantime::parse_duration)]
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

    /// API base URL, overriding --pusher-cluster (for Pusher-compatible servers and tests).
    #[arg(long, env = "PUSHER_API_URL")]
    pub pusher_api_url: Option<String>,

    /// Limit on one Pusher API request, connecting included (e.g. 3s).
    #[arg(long, env = "OCCUPANCY_PUSHER_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub pusher_timeout: Duration,

    /// Largest webhook body accepted, in bytes; larger ones get 413. The default fits a full
    /// batch of 20 events carrying 10 KB of client-event data each.
    #[arg(long, env = "OCCUPANCY_WEBHOOK_BODY_LIMIT", default_value_t = 512 * 1024)]
    pub webhook_body_limit: usize,

    /// How often the store is pinged to drive the gRPC health status (e.g. 1s).
    #[arg(long, env = "OCCUPANCY_HEALTH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// Address for metrics (GET /metrics) and HTTP probes (/livez, /readyz). Keep it private:
    /// it is never the public webhook port.
    #[arg(long, env = "OCCUPANCY_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,

    /// On SIGTERM or SIGINT, how long health says NOT_SERVING while still serving, before the
    /// listeners stop accepting; set it to the load balancer's probe period (e.g. 5s).
    #[arg(long, env = "OCCUPANCY_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After the listeners stop accepting, the longest wait for requests and streams in flight
    /// before exiting anyway (exit 0).
    #[arg(long, env = "OCCUPANCY_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
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
    #[arg(long, env = "OCCUPANCY_HTTP_HEADER_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,

    /// How long a webhook body may take to arrive (408 after that).
    #[arg(long, env = "OCCUPANCY_HTTP_BODY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub http_body_timeout: Duration,

    /// Most webhook connections open at once; more are closed at once.
    #[arg(long, env = "OCCUPANCY_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,

    /// Most WatchOccupancy streams open at once; more are answered RESOURCE_EXHAUSTED. Each
    /// stream holds a task and, while its snapshot is sent, a copy of the watched set.
    #[arg(long, env = "OCCUPANCY_MAX_WATCH_STREAMS", default_value_t = 1024)]
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
    /// In Redis, shared with encoders and other replicas.
    Redis {
        /// The URL, possibly holding a password.
        url: String,
        /// Connect and answer timeout.
        timeout: Duration,
        /// PEM CA certificates to trust for TLS to Redis.
        ca: Option<Vec<u8>>,
    },
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
    /// Health ping interval.
    pub health_interval: Duration,
    /// Tokens accepted on occupancy.v1 calls; empty means open.
    pub grpc_tokens: Vec<SecretString>,
    /// Metrics and probes listen address.
    pub admin_addr: SocketAddr,
    /// How long health is NOT_SERVING before the listeners close.
    pub drain_delay: Duration,
    /// The longest wait for in-flight work once the listeners close.
    pub drain_timeout: Duration,
    /// PublishIfOccupied while the store is down.
    pub store_down: StoreDownPolicy,
    /// Webhook header (and idle) timeout.
    pub http_header_timeout: Duration,
    /// Webhook body timeout.
    pub http_body_timeout: Duration,
    /// Webhook connection cap.
    pub http_max_connections: usize,
    /// `WatchOccupancy` stream cap.
    pub max_watch_streams: usize,
    /// Extra CA certificates (PEM) for the Pusher API.
    pub pusher_ca: Option<Vec<u8>>,
    /// TLS for the gRPC listener, read from the PEM files given.
    pub grpc_tls: Option<GrpcTls>,
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
        let store = match self.redis_url {
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
                StoreChoice::Redis {
                    url,
                    timeout: positive(
                        self.redis_timeout,
                        "--redis-timeout / OCCUPANCY_REDIS_TIMEOUT",
                    )?,
                    ca,
                }
            }
            _ => StoreChoice::Memory,
        };
        if self.webhook_body_limit == 0 {
            return Err(invalid(
                "--webhook-body-limit / OCCUPANCY_WEBHOOK_BODY_LIMIT",
                "must be at least 1 byte",
            ));
        }

        let grpc_tokens = match self.grpc_tokens.as_deref() {
            Some(raw) => parse_tokens(raw)?,
            None => Vec::new(),
        };
        let grpc_tls = match (self.grpc_tls_cert, self.grpc_tls_key) {
            (Some(cert), Some(key)) => Some(GrpcTls {
                cert: read_pem(
                    &cert,
                    "--grpc-tls-cert / OCCUPANCY_GRPC_TLS_CERT",
                    "CERTIFICATE",
                )?,
                key: SecretBytes(read_pem(
                    &key,
                    "--grpc-tls-key / OCCUPANCY_GRPC_TLS_KEY",
                    "PRIVATE KEY",
                )?),
                client_ca: self
                    .grpc_tls_client_ca
                    .map(|ca| {
                        read_pem(
                            &ca,
                            "--grpc-tls-client-ca / OCCUPANCY_GRPC_TLS_CLIENT_CA",
                            "CERTIFICATE",
                        )
                    })
                    .transpose()?,
            }),
            _ => None,
        };

        if self.http_max_connections == 0 {
            return Err(invalid(
                "--http-max-connections / OCCUPANCY_HTTP_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        if self.max_watch_streams == 0 {
            return Err(invalid(
                "--max-watch-streams / OCCUPANCY_MAX_WATCH_STREAMS",
                "must be at least 1",
            ));
        }
        let pusher_ca = self
            .pusher_ca
            .as_deref()
            .map(|path| read_pem(path, "--pusher-ca / OCCUPANCY_PUSHER_CA", "CERTIFICATE"))
            .transpose()?;

        Ok(Config {
            grpc_tokens,
            admin_addr: self.admin_addr,
            drain_delay: self.drain_delay,
            drain_timeout: positive(
                self.drain_timeout,
                "--drain-timeout / OCCUPANCY_DRAIN_TIMEOUT",
            )?,
            store_down: self.publish_when_store_down,
            http_header_timeout: positive(
                self.http_header_timeout,
                "--http-header-timeout / OCCUPANCY_HTTP_HEADER_TIMEOUT",
            )?,
            http_body_timeout: positive(
                self.http_body_timeout,
                "--http-body-timeout / OCCUPANCY_HTTP_BODY_TIMEOUT",
            )?,
            http_max_connections: self.http_max_connections,
            max_watch_streams: self.max_watch_streams,
            pusher_ca,
            grpc_tls,
            grpc_addr: self.grpc_addr,
            http_addr: self.http_addr,
            store,
            apps,
            retention: positive(self.retention, "--retention / OCCUPANCY_RETENTION")?,
            reconcile_interval: (!self.reconcile_interval.is_zero())
                .then_some(self.reconcile_interval),
            pusher_timeout: positive(
                self.pusher_timeout,
                "--pusher-timeout / OCCUPANCY_PUSHER_TIMEOUT",
            )?,
            webhook_body_limit: self.webhook_body_limit,
            health_interval: positive(
                self.health_interval,
                "--health-interval / OCCUPANCY_HEALTH_INTERVAL",
            )?,
        })
    }
}

impl Cli {
    /// The one app of the single-app flags.
    fn single_app(&self) -> Result<AppConfig, ConfigError> {
        let id = self
            .pusher_app_id
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_owned();
        check_app_id(&id).map_err(|e| invalid("--pusher-app-id / PUSHER_APP_ID", e))?;
        let key = self
            .pusher_key
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_owned();
        check_key(&key).map_err(|e| invalid("--pusher-key / PUSHER_KEY", e))?;
        let secret = self.pusher_secret.clone().unwrap_or_default();
        if secret.is_empty() {
            return Err(invalid(
                "--pusher-secret / PUSHER_SECRET",
                "must not be empty",
            ));
        }
        let extra_keys = match self.pusher_extra_keys.as_deref() {
            Some(raw) => parse_key_pairs(raw.split(','))
                .map_err(|e| invalid("--pusher-extra-keys / PUSHER_EXTRA_KEYS", e))?,
            None => Vec::new(),
        };
        let api_url =
            api_url(self.pusher_api_url.as_deref(), &self.pusher_cluster).map_err(|e| {
                if self.pusher_api_url.is_some() {
                    invalid("--pusher-api-url / PUSHER_API_URL", e)
                } else {
                    invalid("--pusher-cluster / PUSHER_CLUSTER", e)
                }
            })?;
        if self.redis_key.is_empty() {
            return Err(invalid(
                "--redis-key / OCCUPANCY_REDIS_KEY",
                "must not be empty",
            ));
        }
        let app = AppConfig {
            id,
            key,
            secret: SecretString::from(secret),
            extra_keys,
            api_url,
            redis_key: self.redis_key.clone(),
        };
        check_distinct(std::slice::from_ref(&app))
            .map_err(|e| invalid("--pusher-extra-keys / PUSHER_EXTRA_KEYS", e.to_string()))?;
        Ok(app)
    }
}

fn positive(duration: Duration, option: &'static str) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        Err(invalid(option, "must be longer than zero"))
    } else {
        Ok(duration)
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

/// Reads a PEM file that must hold a block whose label contains `label`. The error names the
/// option and the path, never the content.
fn read_pem(
    path: &std::path::Path,
    option: &'static str,
    label: &str,
) -> Result<Vec<u8>, ConfigError> {
    let content = std::fs::read(path)
        .map_err(|e| invalid(option, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&content);
    let has_block = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
    if !has_block {
        return Err(invalid(
            option,
            format!("{} holds no PEM {label} block", path.display()),
        ));
    }
    Ok(content)
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
        Cli::try_parse_from(argv).expect("parses").into_config()
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
        ] {
            let err = cli(args).err().expect("rejected").to_string();
            assert!(err.contains(option), "{err}");
        }
    }
}
