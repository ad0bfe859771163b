//! The service started inside the test's process through its composition root
//! (`Service::bind`, then `run`), for tests that need no process boundary: no signals, no
//! restarts, no reading of the log. Its `/metrics` are its own (each service has its own set),
//! read through [`InProcess::admin`] as for a separate process. It runs on a
//! runtime of its own, on its own threads, so a test that blocks its own runtime, or loads it
//! with hundreds of requests, slows the service no more than it would a separate process.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use occupancy::config::Cli;
use occupancy::service::{Service, Shutdown};

use super::{APP_ID, KEY, SECRET};

/// A running in-process service; stopped (drained, then its runtime dropped) on drop.
pub struct InProcess {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Where Pusher's HTTP API is answered, when `--pusher-api-addr` was given.
    pub pusher_api_addr: Option<SocketAddr>,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// Starts the service with the options the binary-starting harness uses by default
    /// (`Occupancy::start`: the test app's credentials, health every 100 ms, reconciliation off
    /// unless asked for, every listener on port 0), then `args`.
    pub async fn start(args: &[String]) -> Self {
        let given = |flag: &str| {
            args.iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut all: Vec<String> = [
            "occupancy",
            "--grpc-addr=127.0.0.1:0",
            "--http-addr=127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec();
        if !given("--apps-file") {
            all.extend([
                format!("--pusher-app-id={APP_ID}"),
                format!("--pusher-key={KEY}"),
                format!("--pusher-secret={SECRET}"),
            ]);
        }
        for (flag, default) in [
            ("--admin-addr", "127.0.0.1:0"),
            ("--health-interval", "100ms"),
            ("--reconcile-interval", "0"),
        ] {
            if !given(flag) {
                all.push(format!("{flag}={default}"));
            }
        }
        all.extend(args.iter().cloned());
        refuse_service_environment();
        let config = Cli::try_parse_from(&all)
            .expect("the options parse")
            .into_config()
            .expect("the configuration is valid");

        let shutdown = Shutdown::default();
        let (bound, addrs) = tokio::sync::oneshot::channel();
        let run_until = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the service");
            runtime.block_on(async move {
                let service = Service::bind(config).await.expect("the service binds");
                let _ = bound.send((
                    service.grpc_addr(),
                    service.http_addr(),
                    service.admin_addr(),
                    service.pusher_api_addr(),
                ));
                service
                    .run(run_until)
                    .await
                    .expect("the service runs and drains");
            });
        });
        let (grpc_addr, http_addr, admin_addr, pusher_api_addr) =
            tokio::time::timeout(Duration::from_secs(20), addrs)
                .await
                .expect("the service bound its listeners within 20 s")
                .expect("the service thread reported its addresses");
        Self {
            grpc_addr,
            http_addr,
            admin_addr,
            pusher_api_addr,
            shutdown,
            thread: Some(thread),
        }
    }

    /// `http://host:port` of the gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A gRPC channel to the gate.
    pub async fn channel(&self) -> tonic::transport::Channel {
        super::channel_to(&self.grpc_url()).await
    }

    /// Where webhooks are posted.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/pusher", self.http_addr)
    }

    /// Posts `events` as one webhook, signed with the test app's key as Pusher would.
    pub async fn send_webhook(
        &self,
        events: &[(&str, &str)],
    ) -> (axum::http::StatusCode, serde_json::Value) {
        self.send_webhook_at(super::now_ms(), events).await
    }

    /// Posts `events` as one webhook created at `time_ms`, signed with the test app's key.
    pub async fn send_webhook_at(
        &self,
        time_ms: u64,
        events: &[(&str, &str)],
    ) -> (axum::http::StatusCode, serde_json::Value) {
        super::post_signed(
            &self.webhook_url(),
            KEY,
            SECRET,
            &super::webhook_body_at(time_ms, events),
        )
        .await
    }
}

/// The options are parsed in this process, so its environment counts as the service's would: a
/// `REDIS_URL` left exported in a developer's shell would turn an in-memory test into a Redis one
/// (the process harness removes it from the child). Refused plainly rather than obeyed.
fn refuse_service_environment() {
    use clap::CommandFactory;
    let set: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .filter(|name| std::env::var_os(name).is_some())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    assert!(
        set.is_empty(),
        "unset {set:?} to run the tests: the in-process service would read them as its options"
    );
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Stop, then let the service's own runtime finish its drain on its thread: waiting here
        // would block the test's runtime.
        self.shutdown.stop.cancel();
        drop(self.thread.take());
    }
}
