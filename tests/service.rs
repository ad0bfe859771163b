//! The service started in-process through its composition root, as an embedding program or a
//! test would: `Service::bind` on port 0, addresses read back from the service, readiness and
//! state read from `/readyz`, `/metrics` and the gate's answers, and `run` returning once the
//! shutdown token is cancelled.

mod support;

use std::time::Duration;

use clap::Parser;
use occupancy::config::Cli;
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::service::Service;
use occupancy::service::Shutdown;
use support::{
    APP_ID, KEY, PusherStub, RedisServer, SECRET, eventually, post_signed, webhook_body,
};

fn config(stub: &PusherStub, redis: Option<&RedisServer>) -> occupancy::config::Config {
    let mut args = vec![
        "occupancy".to_owned(),
        "--grpc-addr=127.0.0.1:0".into(),
        "--http-addr=127.0.0.1:0".into(),
        "--admin-addr=127.0.0.1:0".into(),
        format!("--pusher-app-id={APP_ID}"),
        format!("--pusher-key={KEY}"),
        format!("--pusher-secret={SECRET}"),
        format!("--pusher-api-url={}", stub.url()),
    ];
    if let Some(redis) = redis {
        args.push(format!("--redis-url={}", redis.url()));
    }
    Cli::try_parse_from(args)
        .expect("flags parse")
        .into_config()
        .expect("configuration is valid")
}

async fn admin_get(admin: std::net::SocketAddr, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{admin}{path}")).await {
        Ok(answer) => (
            answer.status().as_u16(),
            answer.text().await.unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// Binds, serves a webhook and a gate call, and stops, reading everything from the service.
async fn serve_and_stop(redis: Option<&RedisServer>) {
    let stub = PusherStub::start().await;
    // Reconciliation runs as configured by default: Pusher's list must agree with the webhook.
    stub.set_listing(&["private-job-1"], Duration::ZERO);
    let service = Service::bind(config(&stub, redis)).await.expect("binds");
    let (grpc, http, admin) = (
        service.grpc_addr(),
        service.http_addr(),
        service.admin_addr(),
    );
    assert_ne!(grpc.port(), 0, "the chosen port is reported");
    let shutdown = Shutdown::default();
    let running = tokio::spawn(service.run(shutdown.clone()));

    eventually(Duration::from_secs(5), "/readyz answers 200", || async {
        admin_get(admin, "/readyz").await.0 == 200
    })
    .await;
    if redis.is_some() {
        eventually(
            Duration::from_secs(5),
            "answers from the local copy",
            || async {
                admin_get(admin, "/metrics")
                    .await
                    .1
                    .lines()
                    .any(|line| line == "occupancy_feed_up 1")
            },
        )
        .await;
    }

    let url = format!("http://{http}{}", occupancy::wire::WEBHOOK_PATH);
    let body = webhook_body(&[("channel_occupied", "private-job-1")]);
    let (status, _) = post_signed(&url, KEY, SECRET, &body).await;
    assert_eq!(status, 200);
    let mut gate = OccupancyClient::connect(format!("http://{grpc}"))
        .await
        .expect("gate connects");
    let occupied = gate
        .is_occupied(IsOccupiedRequest {
            channel: "private-job-1".into(),
            ..Default::default()
        })
        .await
        .expect("IsOccupied answers")
        .into_inner()
        .occupied;
    assert!(occupied);

    shutdown.stop.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("run returns after the stop token")
        .expect("run does not panic");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        admin_get(admin, "/livez").await.0,
        0,
        "the admin listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_memory_service_starts_serves_and_stops_in_process() {
    serve_and_stop(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_service_starts_serves_and_stops_in_process() {
    let redis = RedisServer::start();
    serve_and_stop(Some(&redis)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_fails_bind_and_names_the_listener() {
    let stub = PusherStub::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = config(&stub, None);
    config.http_addr = taken.local_addr().expect("addr");
    let err = Service::bind(config).await.expect_err("the port is taken");
    assert!(
        format!("{err:#}").contains("cannot listen for webhooks"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bound_addresses_are_written_to_the_listen_addrs_file() {
    let stub = PusherStub::start().await;
    let path = support::listen_addrs::temporary_path();
    let mut config = config(&stub, None);
    config.listen_addrs_file = Some(path.clone());
    let service = Service::bind(config).await.expect("binds");
    let text = std::fs::read_to_string(&path).expect("the file is there once bound");
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        text,
        format!(
            "grpc={}\nhttp={}\nadmin={}\n",
            service.grpc_addr(),
            service.http_addr(),
            service.admin_addr()
        )
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("a directory"))
        .expect("list the directory")
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let file = path.file_name().expect("a name").to_string_lossy();
            name.starts_with(&*file) && name.ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary file left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_listen_addrs_file_fails_bind_and_names_the_flag() {
    let stub = PusherStub::start().await;
    let mut config = config(&stub, None);
    config.listen_addrs_file = Some("/nonexistent-directory/occupancy.addrs".into());
    let err = Service::bind(config).await.expect_err("cannot write there");
    assert!(
        format!("{err:#}").contains("--listen-addrs-file / OCCUPANCY_LISTEN_ADDRS_FILE"),
        "{err:#}"
    );
}

/// Each service has its own metrics: two in one process (as an embedding program or this test
/// binary runs them) do not count into each other's `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_in_one_process_count_only_their_own_traffic() {
    let one = support::in_process::InProcess::start(&[]).await;
    let two = support::in_process::InProcess::start(&[]).await;
    let applied = ["outcome=\"applied\""];
    for _ in 0..3 {
        let (status, body) = one.send_webhook(&[("channel_occupied", "job-1")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = two.send_webhook(&[("channel_occupied", "job-2")]).await;
    assert_eq!(status, 200, "{body}");
    let requests = "occupancy_webhook_requests_total";
    assert_eq!(one.admin().metric(requests, &applied).await, 3.0);
    assert_eq!(two.admin().metric(requests, &applied).await, 1.0);
}
