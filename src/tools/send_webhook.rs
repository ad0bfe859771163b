//! `occupancy send-webhook`: one `channel_occupied` or `channel_vacated` webhook, signed exactly
//! as Pusher signs it, posted to a running service.
//!
//! It exists to check a deployment end to end (the proxy in front, the key and secret, the store)
//! and to repair a channel by hand without waiting for Pusher, using nothing but the key and
//! secret the service itself is given: no app id, no Redis. The body is what Pusher sends,
//! `{"time_ms": <now>, "events": [{"name": ..., "channel": ...}, ...]}`, and the signature is
//! the hex HMAC-SHA256 of those exact bytes ([`crate::webhook::sign`], the function the
//! service's own checks are tested against).

use crate::http_url::HttpUrlError;
use std::process::ExitCode;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::{ToolError, runtime, usage};
use crate::app_config::check_key;
use crate::channel::ChannelName;
use crate::webhook::{WEBHOOK_PATH, sign};

/// The service's webhook URL when it runs on this machine with its default `--http-addr`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/webhooks/pusher";

/// Which event every channel gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `channel_occupied`: the channel gained its first subscriber.
    Occupied,
    /// `channel_vacated`: the channel lost its last subscriber.
    Vacated,
}

impl Kind {
    /// The event name Pusher uses.
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Occupied => "channel_occupied",
            Self::Vacated => "channel_vacated",
        }
    }
}

/// `occupancy send-webhook`'s arguments. Not `Debug`: it holds the secret.
#[derive(clap::Args)]
#[command(
    about = "Signs a channel_occupied or channel_vacated webhook exactly as Pusher does and \
             sends it to a running service",
    long_about = "Signs a channel_occupied or channel_vacated webhook exactly as Pusher does \
                  (hex HMAC-SHA256 of the body with the app secret, in X-Pusher-Signature, the \
                  key in X-Pusher-Key) and posts it to a running occupancy service. Prints the \
                  HTTP status and the answer's body. Exits 0 on a 2xx answer, 1 otherwise, 2 on \
                  bad usage.",
    after_help = "Examples:\n  \
        PUSHER_KEY=your-key PUSHER_SECRET=your-secret occupancy send-webhook occupied private-job-42\n  \
        occupancy send-webhook --url https://gate.example.com/webhooks/pusher vacated job-1 job-2\n\n\
        Key and secret are read from the same variables as the server's, so on a host where \
        the service's environment is loaded nothing else is needed. The service orders events \
        per channel by time_ms: an event older than the last one applied to a channel is \
        counted as stale and not applied."
)]
pub struct Args {
    /// occupied sends channel_occupied, vacated sends channel_vacated, for every CHANNEL.
    #[arg(value_enum)]
    pub kind: Kind,

    /// Channel names; all go in one webhook, in this order, as a batching Pusher app sends them.
    #[arg(required = true, value_name = "CHANNEL")]
    pub channels: Vec<String>,

    /// The service's webhook URL (its --http-addr and /webhooks/pusher, or the public URL that
    /// Pusher is configured with).
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,

    /// The Pusher app key the service accepts webhooks from (sent as X-Pusher-Key).
    #[arg(long, env = "PUSHER_KEY")]
    pub pusher_key: String,

    /// The secret of --pusher-key, which signs the body. Prefer the environment variable over
    /// the flag, which other users of the machine can see.
    #[arg(long, env = "PUSHER_SECRET", hide_env_values = true)]
    pub pusher_secret: String,

    /// The webhook's creation time in milliseconds since the epoch; default now. Only to replay
    /// a moment on purpose: the service ignores events older than the last one it applied to a
    /// channel, and older than its --retention.
    #[arg(long, value_name = "MS")]
    pub time_ms: Option<u64>,

    /// Limit on the whole request, connecting included (e.g. 3s, 500ms).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The body Pusher sends, fields in Pusher's order.
#[derive(Serialize)]
struct Body {
    time_ms: u64,
    events: Vec<Event>,
}

/// One event of a channel existence webhook.
#[derive(Serialize)]
struct Event {
    name: &'static str,
    channel: String,
}

/// A checked request, ready to send.
struct Webhook {
    url: reqwest::Url,
    key: String,
    secret: SecretString,
    body: String,
    timeout: Duration,
}

/// Checks the arguments, sends the webhook, prints the answer; 0 on 2xx, 1 otherwise.
pub fn run(args: Args) -> Result<ExitCode, ToolError> {
    let webhook = prepare(args)?;
    let answer = runtime()?.block_on(send(&webhook))?;
    println!("HTTP {}", answer.status);
    let body = answer.body.trim_end();
    if !body.is_empty() {
        println!("{body}");
    }
    Ok(if answer.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Turns the arguments into a signed request, or says which one is wrong (never the secret).
fn prepare(args: Args) -> Result<Webhook, ToolError> {
    let secret = SecretString::from(args.pusher_secret);
    if secret.expose_secret().is_empty() {
        return Err(usage(
            "--pusher-secret / PUSHER_SECRET",
            "must not be empty",
        ));
    }
    let key = args.pusher_key.trim().to_owned();
    check_key(&key).map_err(|reason| usage("--pusher-key / PUSHER_KEY", reason))?;
    let url = webhook_url(&args.url)?;
    if args.timeout.is_zero() {
        return Err(usage("--timeout", "must be longer than zero"));
    }
    let mut events = Vec::with_capacity(args.channels.len());
    for name in args.channels {
        // The webhook's own rules (Pusher's `#server-to-user-` channels included): a name the
        // service would skip as unusable is refused here, where the operator can fix it.
        let channel = ChannelName::from_webhook(name.as_str())
            .map_err(|e| usage("CHANNEL", format!("{name:?}: {e}")))?;
        events.push(Event {
            name: args.kind.event_name(),
            channel: channel.as_str().to_owned(),
        });
    }
    let time_ms = match args.time_ms {
        Some(time_ms) => time_ms,
        None => crate::clock::now_ms(),
    };
    let body = serde_json::to_string(&Body { time_ms, events }).map_err(ToolError::Encode)?;
    Ok(Webhook {
        url,
        key,
        secret,
        body,
        timeout: args.timeout,
    })
}

/// An http(s) URL with a host and no credentials. A URL without a path gets the service's own
/// webhook path, so `--url http://host:8080` works too.
fn webhook_url(raw: &str) -> Result<reqwest::Url, ToolError> {
    const OPTION: &str = "--url";
    let mut url = crate::http_url::parse_http_url(raw).map_err(|err| match err {
        HttpUrlError::Credentials => {
            usage(OPTION, format!("{err}: the key and secret sign the body"))
        }
        other => usage(OPTION, other.to_string()),
    })?;
    if url.path() == "/" {
        url.set_path(WEBHOOK_PATH);
    }
    Ok(url)
}

/// The service's answer.
struct Answer {
    status: reqwest::StatusCode,
    body: String,
}

async fn send(webhook: &Webhook) -> Result<Answer, ToolError> {
    let failed = |source: reqwest::Error| ToolError::Send {
        url: webhook.url.to_string(),
        source: source.without_url(),
    };
    // A redirect is reported, not followed: Pusher does not follow one either, and following
    // would turn the POST into a GET.
    let client = reqwest::Client::builder()
        .timeout(webhook.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(failed)?;
    let signature = sign(webhook.secret.expose_secret(), webhook.body.as_bytes());
    let response = client
        .post(webhook.url.clone())
        .header("content-type", "application/json")
        .header("x-pusher-key", &webhook.key)
        .header("x-pusher-signature", signature)
        .body(webhook.body.clone())
        .send()
        .await
        .map_err(failed)?;
    let status = response.status();
    let body = response.text().await.map_err(failed)?;
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["send-webhook", "--pusher-key", "k", "--pusher-secret", "s"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).expect("parses").args
    }

    #[test]
    fn the_body_is_pushers_and_the_signature_covers_it() {
        let webhook =
            prepare(args(&["--time-ms", "1700000000000", "vacated", "a", "b"])).expect("valid");
        assert_eq!(
            webhook.body,
            concat!(
                r#"{"time_ms":1700000000000,"events":[{"name":"channel_vacated","channel":"a"},"#,
                r#"{"name":"channel_vacated","channel":"b"}]}"#
            )
        );
        assert_eq!(webhook.url.as_str(), DEFAULT_URL);
        let keys = crate::webhook::WebhookKeys::new(vec![crate::webhook::WebhookKey {
            key: "k".into(),
            secret: SecretString::from("s"),
            app: 0,
        }]);
        let signature = sign("s", webhook.body.as_bytes());
        assert_eq!(
            keys.verify(Some("k"), Some(&signature), webhook.body.as_bytes()),
            Ok(0)
        );
    }

    #[test]
    fn a_url_without_a_path_gets_the_webhook_path() {
        let webhook = prepare(args(&["--url", "http://gate:8080", "occupied", "a"])).expect("ok");
        assert_eq!(webhook.url.as_str(), "http://gate:8080/webhooks/pusher");
    }

    #[test]
    fn bad_usage_names_the_option() {
        for (extra, option) in [
            (&["--url", "ftp://x/y", "occupied", "a"][..], "--url"),
            (&["--url", "http://u:p@x/y", "occupied", "a"][..], "--url"),
            (&["--url", "nonsense", "occupied", "a"][..], "--url"),
            (&["occupied", "a b"][..], "CHANNEL"),
            (&["--timeout", "0s", "occupied", "a"][..], "--timeout"),
        ] {
            match prepare(args(extra)) {
                Err(ToolError::Usage { option: named, .. }) => assert_eq!(named, option),
                Err(other) => panic!("{extra:?}: {other}"),
                Ok(_) => panic!("{extra:?} accepted"),
            }
        }
        let mut argv = vec!["send-webhook", "--pusher-key", "k", "--pusher-secret", ""];
        argv.extend(["occupied", "a"]);
        let empty = Wrapper::try_parse_from(argv).expect("parses").args;
        assert!(matches!(
            prepare(empty),
            Err(ToolError::Usage {
                option: "--pusher-secret / PUSHER_SECRET",
                ..
            })
        ));
    }
}
