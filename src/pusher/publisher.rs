//! Triggering events through `POST /apps/{app_id}/events`.
//!
//! One HTTP client (with its connection pool) lives as long as the service, so a busy encoder
//! farm reuses warm TLS connections instead of paying a handshake per progress tick. Every
//! request has a timeout, and every failure keeps Pusher's own reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::signing::signed_query;
use crate::app_config::AppConfig;
use crate::channel::{ChannelName, ChannelNameError};
use crate::metrics::{Metrics, count, observe};

/// Why an event was not published. Each keeps the reason so the caller is never left guessing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Pusher answered, but not with success.
    #[error("Pusher answered {status}: {reason}")]
    Rejected {
        /// The HTTP status Pusher gave.
        status: u16,
        /// Pusher's explanation (the response body, shortened).
        reason: String,
    },
    /// No answer within the timeout; the event may or may not have been delivered.
    #[error("Pusher did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be encoded; nothing was sent, and retrying will not help.
    #[error("cannot encode the Pusher request")]
    Encode(#[source] serde_json::Error),
    /// Pusher could not be reached at all. The cause (DNS, TCP, TLS) is kept for the log; the
    /// caller gets this short, stable message.
    #[error("Pusher could not be reached")]
    Unreachable(#[source] reqwest::Error),
}

/// Pusher's answer to a forwarded request, passed on as it came.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    /// The HTTP status.
    pub status: u16,
    /// Its `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: axum::body::Bytes,
}

/// The body of `POST /apps/{app_id}/events`.
#[derive(Serialize)]
struct TriggerBody<'a> {
    name: &'a str,
    data: &'a str,
    channels: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
}

/// Publishes events to Pusher. Cloning shares the connection pool.
#[derive(Clone)]
pub struct Publisher {
    http: reqwest::Client,
    /// The app published to: its id, signing key and secret, and API base URL.
    app: AppConfig,
    /// The limit on one whole request, connection included (`--pusher-timeout`).
    timeout: Duration,
    events_path: String,
    events_url: Url,
    channels_path: String,
    channels_url: Url,
    /// The service's metrics: each request counted by endpoint and status, with its latency.
    metrics: Arc<Metrics>,
}

/// The answer to `GET /apps/{app_id}/channels`: only the names matter, each entry's attributes
/// (`user_count` when asked for) are skipped without being kept.
#[derive(serde::Deserialize)]
struct ChannelsAnswer {
    channels: std::collections::HashMap<String, serde::de::IgnoredAny>,
}

/// The largest channel listing read. It must fit a million channels: each entry is at most
/// `"<name>":{},` with a name of up to
/// [`MAX_WEBHOOK_CHANNEL_NAME_LEN`](crate::channel::MAX_WEBHOOK_CHANNEL_NAME_LEN) (200) bytes, so 206 bytes,
/// or about 226 with a `{"user_count":N}` attribute: 1,000,000 x 226 = 226 MB < 256 MiB
/// (268 MB). Real names are far shorter (a million 40-byte names is about 50 MB); the bound is
/// there so a broken or hostile server cannot make the process read without end.
pub const MAX_LISTING_BYTES: usize = 256 * 1024 * 1024;

/// Why a channel listing was not used. Nothing is changed for any of them.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// The request failed or Pusher answered with an error.
    #[error(transparent)]
    Request(#[from] PublishError),
    /// The body was larger than the limit.
    #[error("the channel list is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not `{"channels": {...}}`.
    #[error("the answer is not a channel list")]
    Malformed(#[source] serde_json::Error),
    /// A listed name is not a channel name Pusher would send. The name is not quoted: it may
    /// hold line breaks or anything else a log must not carry.
    #[error("the channel list names an invalid channel")]
    BadName(#[source] ChannelNameError),
}

impl ListingError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Request(_) => "request_failed",
            Self::TooLarge(_) => "too_large",
            Self::Malformed(_) => "malformed",
            Self::BadName(_) => "bad_name",
        }
    }
}

/// Reads a listing body, checking every name; one bad name refuses the whole listing.
fn parse_listing(body: &[u8]) -> Result<Vec<String>, ListingError> {
    let answer: ChannelsAnswer = serde_json::from_slice(body).map_err(ListingError::Malformed)?;
    answer
        .channels
        .into_keys()
        .map(|name| {
            ChannelName::from_webhook(name)
                .map(|c| c.as_str().to_owned())
                .map_err(ListingError::BadName)
        })
        .collect()
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("events_url", &self.events_url.as_str())
            .field("key", &self.app.key)
            .finish_non_exhaustive()
    }
}

/// How much of Pusher's error body to keep in a message.
const MAX_REASON_LEN: usize = 300;

impl Publisher {
    /// Builds the client once, counting its requests into `metrics`; fails only if the TLS
    /// stack cannot be set up or the extra CA is not PEM.
    /// `timeout` bounds each request, connection included; `extra_ca` (PEM) is trusted beside
    /// the system's roots, for a self-hosted server with a private CA.
    pub fn new(
        app: &AppConfig,
        timeout: Duration,
        extra_ca: Option<&[u8]>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = extra_ca {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        // One pool per app, kept warm across publishes: keep-alive connections are reused.
        let http = builder
            .pool_max_idle_per_host(32)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("occupancy/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send a signed request to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        // A base URL with a path (a proxy prefix) keeps it; the signature covers the full path.
        let prefix = app.api_url.path().trim_end_matches('/');
        let events_path = format!("{prefix}/apps/{}/events", app.id);
        let mut events_url = app.api_url.clone();
        events_url.set_path(&events_path);
        let channels_path = format!("{prefix}/apps/{}/channels", app.id);
        let mut channels_url = app.api_url.clone();
        channels_url.set_path(&channels_path);
        Ok(Self {
            http,
            app: app.clone(),
            timeout,
            events_path,
            events_url,
            channels_path,
            channels_url,
            metrics,
        })
    }

    /// Triggers `event` with `data` on all of `channels` (1 to 100) in one API call, excluding
    /// the connection `socket_id` if given.
    pub async fn trigger(
        &self,
        channels: &[ChannelName],
        event: &str,
        data: &str,
        socket_id: Option<&str>,
    ) -> Result<(), PublishError> {
        let body = serde_json::to_vec(&TriggerBody {
            name: event,
            data,
            channels: channels.iter().map(ChannelName::as_str).collect(),
            socket_id,
        })
        .map_err(PublishError::Encode)?;
        let timestamp = crate::clock::now_secs();
        let query = signed_query(
            &self.app.key,
            self.app.secret.expose_secret(),
            "POST",
            &self.events_path,
            &body,
            timestamp,
        );
        let started = Instant::now();
        let response = self
            .http
            .post(self.events_url.clone())
            .query(&query)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e));
        self.record("events", started, &response);
        let response = response?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(PublishError::Rejected {
            status: status.as_u16(),
            reason: shorten(text.trim()),
        })
    }

    /// Every occupied channel of the app, from `GET /apps/{app_id}/channels` (one API call,
    /// counted against the app's quota like any other).
    ///
    /// The answer is trusted no more than a webhook: its body is read up to
    /// [`MAX_LISTING_BYTES`] and every name must pass [`ChannelName::from_webhook`], else the
    /// whole listing is refused (one bad name, such as one holding a newline that would inject
    /// lines into the change feed, means the answer is not what Pusher sends).
    pub async fn channels(&self) -> Result<Vec<String>, ListingError> {
        let query = signed_query(
            &self.app.key,
            self.app.secret.expose_secret(),
            "GET",
            &self.channels_path,
            b"",
            crate::clock::now_secs(),
        );
        let started = Instant::now();
        let response = self
            .http
            .get(self.channels_url.clone())
            .query(&query)
            .send()
            .await
            .map_err(|e| self.transport_error(e));
        self.record("channels", started, &response);
        let mut response = response?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(PublishError::Rejected {
                status: status.as_u16(),
                reason: shorten(text.trim()),
            }
            .into());
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_LISTING_BYTES as u64)
        {
            return Err(ListingError::TooLarge(MAX_LISTING_BYTES));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if body.len() + chunk.len() > MAX_LISTING_BYTES {
                return Err(ListingError::TooLarge(MAX_LISTING_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        parse_listing(&body)
    }

    /// Sends one request to `{api_url}/apps/{app_id}/{suffix}` as received by the gate's own
    /// Pusher API listener: `params` (the request's query without its authentication) and the raw
    /// `body` unchanged, newly signed with this app's key and secret. Pusher's answer comes back
    /// whatever its status; only a transport failure or timeout is an error. `endpoint` labels
    /// the request in the metrics.
    pub(crate) async fn forward(
        &self,
        endpoint: &str,
        method: reqwest::Method,
        suffix: &str,
        params: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Upstream, PublishError> {
        let prefix = self.app.api_url.path().trim_end_matches('/');
        let path = format!("{prefix}/apps/{}/{suffix}", self.app.id);
        let mut url = self.app.api_url.clone();
        url.set_path(&path);
        let query = super::signing::sign_with(
            params,
            &self.app.key,
            self.app.secret.expose_secret(),
            method.as_str(),
            &path,
            &body,
            crate::clock::now_secs(),
        );
        let mut request = self.http.request(method, url).query(&query);
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| self.transport_error(e));
        self.record(endpoint, started, &response);
        let response = response?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok(Upstream {
            status,
            content_type,
            body,
        })
    }

    /// A transport failure without the request URL, whose query carries the signature.
    fn transport_error(&self, err: reqwest::Error) -> PublishError {
        if err.is_timeout() {
            PublishError::Timeout(self.timeout)
        } else {
            // Without the URL: its query carries the request's signature.
            PublishError::Unreachable(err.without_url())
        }
    }

    /// Counts one Pusher request by endpoint and outcome, with its latency.
    fn record(
        &self,
        endpoint: &str,
        started: Instant,
        response: &Result<reqwest::Response, PublishError>,
    ) {
        let status = match response {
            Ok(response) => response.status().as_u16().to_string(),
            Err(PublishError::Timeout(_)) => "timeout".to_owned(),
            Err(_) => "unreachable".to_owned(),
        };
        count(
            &self.metrics.pusher_requests,
            &[("endpoint", endpoint), ("status", &status)],
            1,
        );
        observe(
            &self.metrics.pusher_duration,
            &[("endpoint", endpoint)],
            started.elapsed(),
        );
    }
}

fn shorten(text: &str) -> String {
    if text.is_empty() {
        return "(no reason given)".to_owned();
    }
    match text.char_indices().nth(MAX_REASON_LEN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_its_names_and_skips_their_attributes() {
        let mut names = parse_listing(
            br##"{"channels":{"a":{},"presence-b":{"user_count":3},"#server-to-user-1":{}}}"##,
        )
        .expect("a good listing");
        names.sort();
        assert_eq!(names, ["#server-to-user-1", "a", "presence-b"]);
    }

    #[test]
    fn one_bad_name_refuses_the_whole_listing() {
        for body in [
            r#"{"channels":{"a":{},"b\n+c":{}}}"#.to_owned(),
            r#"{"channels":{"a":{},"":{}}}"#.to_owned(),
            format!(r#"{{"channels":{{"a":{{}},"{}":{{}}}}}}"#, "x".repeat(201)),
        ] {
            assert!(
                matches!(
                    parse_listing(body.as_bytes()),
                    Err(ListingError::BadName(_))
                ),
                "{body}"
            );
        }
        assert!(matches!(
            parse_listing(b"[]"),
            Err(ListingError::Malformed(_))
        ));
    }
}
