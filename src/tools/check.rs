//! `occupancy check`: asks a running gate over gRPC whether channels are occupied, as an encoder
//! would (`occupancy.v1.Occupancy/IsOccupied`, one call per channel), with the same token and
//! TLS an encoder would need.
//!
//! It answers the operator's first question ("does the gate think anyone is watching job 42?")
//! without grpcurl, a `.proto` or Redis access, and it exercises the whole path an encoder
//! takes: address, TLS, token, app id.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{ToolError, runtime, usage};
use crate::app_config::check_app_id;
use crate::channel::ChannelName;
use crate::proto::IsOccupiedRequest;
use crate::proto::occupancy_client::OccupancyClient;

/// Where the gate listens when it runs on this machine with its default `--grpc-addr`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:50051";

/// `occupancy check`'s arguments. Not `Debug`: it holds the token.
#[derive(clap::Args)]
#[command(
    about = "Asks a running gate over gRPC (IsOccupied) whether each channel is occupied",
    long_about = "Asks a running occupancy gate over gRPC (occupancy.v1.Occupancy/IsOccupied) \
                  whether each CHANNEL is occupied, and prints one line per channel: \
                  `CHANNEL occupied` or `CHANNEL vacant`. Exits 0 when every channel was \
                  answered; on a gRPC error prints its status code and message and exits 1; \
                  exits 2 on bad usage.",
    after_help = "Examples:\n  \
        occupancy check private-job-42 job-43\n  \
        OCCUPANCY_TOKEN=... occupancy check --addr gate.internal:50051 --tls-ca ca.pem job-42\n  \
        occupancy check --app-id 123456 job-42      (a gate serving several apps)"
)]
pub struct Args {
    /// Channel names to ask about.
    #[arg(required = true, value_name = "CHANNEL")]
    pub channels: Vec<String>,

    /// The gate's gRPC address, host:port. Plaintext, or TLS when --tls-ca is given.
    #[arg(long, default_value = DEFAULT_ADDR, value_name = "HOST:PORT")]
    pub addr: String,

    /// The Pusher app id; needed only when the gate serves several apps.
    #[arg(long, value_name = "ID")]
    pub app_id: Option<String>,

    /// Bearer token, for a gate started with --grpc-tokens (sent as `authorization: Bearer`).
    /// Prefer the environment variable over the flag, which other users of the machine can see.
    #[arg(long, env = "OCCUPANCY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM CA certificate(s) to verify the gate's certificate with; turns TLS on.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,

    /// The name the gate's certificate is checked against; default the host of --addr.
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_domain: Option<String>,

    /// PEM client certificate, for a gate started with --grpc-tls-client-ca.
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Limit on connecting and on each call (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// A checked set of questions, ready to ask.
struct Check {
    addr: String,
    endpoint: Endpoint,
    channels: Vec<ChannelName>,
    app_id: String,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

/// Checks the arguments, asks about every channel and prints the answers; stops at the first
/// gRPC error (the next call would most likely fail the same way).
pub fn run(args: Args) -> Result<ExitCode, ToolError> {
    let check = prepare(args)?;
    runtime()?.block_on(ask(check))?;
    Ok(ExitCode::SUCCESS)
}

fn prepare(args: Args) -> Result<Check, ToolError> {
    let channels = args
        .channels
        .into_iter()
        .map(|name| {
            ChannelName::parse(name.as_str())
                .map_err(|e| usage("CHANNEL", format!("{name:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let app_id = match args.app_id {
        Some(id) => {
            let id = id.trim().to_owned();
            check_app_id(&id).map_err(|reason| usage("--app-id", reason))?;
            id
        }
        None => String::new(),
    };
    let authorization = args
        .token
        .map(|token| bearer(&SecretString::from(token)))
        .transpose()?;
    if args.timeout.is_zero() {
        return Err(usage("--timeout", "must be longer than zero"));
    }
    let host = host_of(&args.addr)?;
    let scheme = if args.tls_ca.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", args.addr.trim()))
        .map_err(|e| usage("--addr", format!("not a host:port ({e})")))?
        .connect_timeout(args.timeout)
        .timeout(args.timeout);
    if let Some(ca) = &args.tls_ca {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_pem(
                ca,
                "--tls-ca",
                "CERTIFICATE",
            )?))
            .domain_name(args.tls_domain.unwrap_or(host));
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            tls = tls.identity(Identity::from_pem(
                read_pem(cert, "--tls-cert", "CERTIFICATE")?,
                read_pem(key, "--tls-key", "PRIVATE KEY")?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| usage("--tls-ca", format!("cannot set up TLS ({e})")))?;
    }
    Ok(Check {
        addr: args.addr.trim().to_owned(),
        endpoint,
        channels,
        app_id,
        authorization,
    })
}

/// The `authorization` value for `token`. Errors never quote the token.
fn bearer(token: &SecretString) -> Result<MetadataValue<tonic::metadata::Ascii>, ToolError> {
    const OPTION: &str = "--token / OCCUPANCY_TOKEN";
    let token = token.expose_secret().trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(usage(
            OPTION,
            "is empty or holds a character outside printable ASCII",
        ));
    }
    let mut value: MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| usage(OPTION, "is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The host of `host:port` (brackets removed from an IPv6 address), for the TLS server name.
fn host_of(addr: &str) -> Result<String, ToolError> {
    const OPTION: &str = "--addr";
    let addr = addr.trim();
    if addr.contains("://") {
        return Err(usage(OPTION, "give host:port, without a scheme"));
    }
    let url = reqwest::Url::parse(&format!("http://{addr}"))
        .map_err(|e| usage(OPTION, format!("not a host:port ({e})")))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| usage(OPTION, "has no host"))?;
    if url.port().is_none() && !addr.ends_with(":80") {
        return Err(usage(OPTION, "must be host:port"));
    }
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(usage(OPTION, "must be host:port and nothing else"));
    }
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned())
}

/// Reads a PEM file that must hold a block whose label contains `label`; the error names the
/// option and the path, never the content.
fn read_pem(path: &Path, option: &'static str, label: &str) -> Result<Vec<u8>, ToolError> {
    crate::pem_file::read_pem(path, label).map_err(|err| usage(option, err.to_string()))
}

async fn ask(check: Check) -> Result<(), ToolError> {
    let channel: Channel = check
        .endpoint
        .connect()
        .await
        .map_err(|source| ToolError::Connect {
            addr: check.addr.clone(),
            source,
        })?;
    let mut client = OccupancyClient::new(channel);
    for name in &check.channels {
        let mut request = tonic::Request::new(IsOccupiedRequest {
            channel: name.as_str().to_owned(),
            app_id: check.app_id.clone(),
        });
        if let Some(value) = &check.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        let answer = client
            .is_occupied(request)
            .await
            .map_err(|status| ToolError::Status {
                channel: name.as_str().to_owned(),
                status: Box::new(status),
            })?;
        let state = if answer.into_inner().occupied {
            "occupied"
        } else {
            "vacant"
        };
        println!("{name} {state}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_host_port() {
        assert_eq!(host_of("127.0.0.1:50051").ok(), Some("127.0.0.1".into()));
        assert_eq!(
            host_of("gate.internal:443").ok(),
            Some("gate.internal".into())
        );
        assert_eq!(host_of("[::1]:50051").ok(), Some("::1".into()));
        for bad in ["http://x:1", "x", ":50051", "x:1/path", "u@x:1"] {
            assert!(
                matches!(
                    host_of(bad),
                    Err(ToolError::Usage {
                        option: "--addr",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn tokens_become_a_sensitive_bearer_value() {
        let value = bearer(&SecretString::from(" tok-1 ")).expect("valid");
        assert_eq!(value.to_str().ok(), Some("Bearer tok-1"));
        assert!(value.is_sensitive());
        for bad in ["", "two words", "caf\u{e9}"] {
            let err = bearer(&SecretString::from(bad)).expect_err(bad);
            assert!(!err.to_string().contains("words"), "{err}");
        }
    }
}
