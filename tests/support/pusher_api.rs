//! The gate with `--pusher-api-addr`, a real Redis and the Pusher stand-in upstream, and requests
//! signed exactly as Pusher's official server SDKs sign them.

use std::net::SocketAddr;

use super::in_process::InProcess;
use super::{KEY, PusherStub, RedisServer, SECRET, TestPki, now_ms};

/// The service (in the test's process) answering Pusher's HTTP API in front of the stand-in.
pub struct ApiGate {
    pub redis: RedisServer,
    pub stub: PusherStub,
    pub service: InProcess,
    pub api: SocketAddr,
    http: reqwest::Client,
    /// `http://127.0.0.1:port`, or `https://localhost:port` with TLS.
    base: String,
}

impl ApiGate {
    /// Starts Redis, the stand-in and the service with `extra` flags (a `--pusher-api-url` in
    /// `extra` replaces the stand-in's).
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, None).await
    }

    /// As [`ApiGate::start`], serving the listener over TLS with `pki`'s server certificate
    /// when given, and trusting its CA.
    pub async fn start_with(extra: &[&str], pki: Option<&TestPki>) -> Self {
        let stub = PusherStub::start().await;
        let redis = RedisServer::start();
        let mut args: Vec<String> = vec![
            "--redis-url".into(),
            redis.url(),
            "--pusher-api-addr".into(),
            "127.0.0.1:0".into(),
        ];
        if !extra.contains(&"--pusher-api-url") {
            args.extend(["--pusher-api-url".to_owned(), stub.url()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        let tls = match pki {
            Some(pki) => {
                args.extend([
                    "--pusher-api-tls-cert".to_owned(),
                    pki.server_cert.display().to_string(),
                    "--pusher-api-tls-key".to_owned(),
                    pki.server_key.display().to_string(),
                ]);
                let ca = std::fs::read(&pki.ca_cert).unwrap();
                http = http.add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
                true
            }
            None => false,
        };
        let service = InProcess::start(&args).await;
        let api = service
            .pusher_api_addr
            .expect("the service serves the Pusher API when --pusher-api-addr is given");
        let base = if tls {
            format!("https://localhost:{}", api.port())
        } else {
            format!("http://{api}")
        };
        Self {
            redis,
            stub,
            service,
            api,
            http: http.build().unwrap(),
            base,
        }
    }

    /// Marks `channels` occupied through a signed webhook, as Pusher would.
    pub async fn occupy(&self, channels: &[&str]) {
        let events: Vec<(&str, &str)> = channels.iter().map(|c| ("channel_occupied", *c)).collect();
        let (status, body) = self.service.send_webhook(&events).await;
        assert_eq!(status.as_u16(), 200, "{body}");
    }

    /// A request signed with the app's key and secret, now.
    pub async fn send(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.send_with(method, path, &[], body, KEY, SECRET, unix_now())
            .await
    }

    /// A request with its own query `params`, signed with `key`/`secret` at `timestamp` as the
    /// Node and Python SDKs sign: every parameter but the signature, keys sorted, `k=v&...`
    /// unescaped; `body_md5` when there is a body.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &str,
        key: &str,
        secret: &str,
        timestamp: u64,
    ) -> (u16, String) {
        let own = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let signed = occupancy::wire::sign_api_request_with(
            own,
            key,
            secret,
            method,
            path,
            body.as_bytes(),
            timestamp,
        );
        self.send_raw(method, path, &encode(&signed), body).await
    }

    /// A request with exactly this query string and body.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &str,
    ) -> (u16, String) {
        let url = format!("{}{path}?{query}", self.base);
        let mut request = self
            .http
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json");
        if !body.is_empty() {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect("Pusher API request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Sends a signed request whose body the gate may refuse while it is still being sent: the
    /// 413 comes back, or (when the gate closes the connection before the client has read it)
    /// the transport error does. `None` for the latter.
    pub async fn send_refusable(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        let signed = occupancy::wire::sign_api_request_with(
            Vec::new(),
            KEY,
            SECRET,
            method,
            path,
            body.as_bytes(),
            unix_now(),
        );
        let url = format!("{}{path}?{}", self.base, encode(&signed));
        // A client of its own: the connection the gate closes on a refused body must not go
        // back to the shared pool for the next request to trip over.
        let one_off = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        match one_off
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                Some((status, response.text().await.unwrap_or_default()))
            }
            Err(_) => None,
        }
    }

    /// The sum of the series of metric `name` carrying every label of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.service.admin().metric(name, &labels).await
    }
}

/// A query string, percent-encoded as Node's and Python's HTTP clients send it.
pub fn encode(params: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

pub fn unix_now() -> u64 {
    now_ms() / 1000
}
