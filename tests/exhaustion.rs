//! No peer can exhaust the gate: many slow webhook bodies stay within the shared buffer budget
//! (memory measured on the real process), a declared body over the limit is refused before it
//! is read, and the gRPC port closes silent connections within the handshake timeout, refuses
//! connections past its cap and refuses oversized messages on its open services too.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::probe::{closed_within, memory, mib};
use support::{KEY, Occupancy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Code;

/// Attacking connections: as many as the confirmed attack used, under the default cap of 1024.
const PEERS: usize = 800;
/// What each declares and (all but one byte of it) sends: the confirmed attack's 512 KiB.
const DECLARED: usize = 512 * 1024;
/// Peak resident memory allowed during the attack: a quarter of a 256 MiB pod.
const RSS_BOUND: u64 = 64 * 1024 * 1024;

/// The attacks run one at a time: each moves hundreds of megabytes through loopback, and on two
/// shared cores running them together only measures the machine.
static ONE_ATTACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Opens `peers` connections that each send the public app key and `declared - 1` bytes of a
/// `declared`-byte body, then stall. Returns the connections, held open.
async fn slow_bodies(addr: SocketAddr, peers: usize, declared: usize) -> Vec<TcpStream> {
    let body: Arc<[u8]> = vec![b' '; declared - 1].into();
    let tasks: Vec<_> = (0..peers)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let head = format!(
                    "POST /webhooks/pusher HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                     X-Pusher-Key: {KEY}\r\nX-Pusher-Signature: 00\r\nContent-Length: {declared}\r\n\r\n"
                );
                // Refused peers see their writes fail once the server closes; held ones block
                // when the server stops reading. Either way the connection is kept.
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&body).await
                })
                .await;
                stream
            })
        })
        .collect();
    let mut held = Vec::with_capacity(peers);
    for task in tasks {
        held.push(task.await.expect("attacker task"));
    }
    held
}

/// The accept queue the kernel keeps for the listener on `addr`: a listener's Send-Q in `ss`.
fn listen_backlog(addr: SocketAddr) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", addr.port())])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    // State, Recv-Q, Send-Q, local address, peer address.
    fields
        .get(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no listener on {addr} in `ss`: {text:?}"))
}

/// The kernel's cap on any listener's accept queue.
fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number")
}

/// How the attackers' connections stand, seen from their side: refused (answered or closed by
/// the gate) or silent (held by the gate, or never reached it). Says where a lost peer went.
fn census(held: &[TcpStream]) -> String {
    let (mut answered, mut closed, mut silent) = (0, 0, 0);
    let mut buf = [0u8; 64];
    for stream in held {
        match stream.try_read(&mut buf) {
            Ok(0) => closed += 1,
            Ok(_) => answered += 1,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => silent += 1,
            Err(_) => closed += 1,
        }
    }
    format!("{answered} answered, {closed} closed, {silent} silent")
}

/// The attack against a gate whose per-request limit admits the whole 512 KiB, so only the
/// budget stands between the peers and the memory: returns (RSS before, RSS and peak during).
async fn attack(gate: &Occupancy) -> (u64, (u64, u64), Vec<TcpStream>) {
    let (before, _) = memory(gate.pid());
    let held = slow_bodies(gate.http_addr, PEERS, DECLARED).await;
    // Let the server read what it will of the held bodies (all 400 MiB of them, without a budget).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = memory(gate.pid());
    eprintln!(
        "{PEERS} peers x {} KiB: RSS {:.1} MiB before, {:.1} MiB during, peak {:.1} MiB",
        DECLARED / 1024,
        mib(before),
        mib(during.0),
        mib(during.1)
    );
    (before, during, held)
}

fn attack_args(budget: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--webhook-body-limit",
        "524288",
        "--http-body-timeout",
        "30s",
        "--http-header-timeout",
        "30s",
    ]
    .map(String::from)
    .to_vec();
    if let Some(budget) = budget {
        args.extend(["--webhook-buffer-budget".into(), budget.into()]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_bodies_stay_within_the_buffer_budget_and_pusher_gets_through_after() {
    let _one = ONE_ATTACK_AT_A_TIME.lock().await;
    // The default budget (4 MiB) with the per-request limit raised to the old 512 KiB.
    let gate = Occupancy::start(&attack_args(None));
    assert_eq!(
        listen_backlog(gate.http_addr),
        1024.min(somaxconn()),
        "the webhook port queues a burst of connections"
    );
    let (_, (rss, peak), held) = attack(&gate).await;
    assert!(
        peak < RSS_BOUND,
        "peak RSS {:.1} MiB (now {:.1} MiB) over the {:.0} MiB bound",
        mib(peak),
        mib(rss),
        mib(RSS_BOUND)
    );
    let admin = gate.admin();
    // Eight bodies of 512 KiB fill the 4 MiB budget; every other peer is refused. With the
    // listen backlog at mio's 128, one or two peers in about four runs were lost here: reset by
    // the kernel after their handshake overflowed the accept queue, never seen by the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = admin
            .metric("occupancy_webhook_requests_total", &["over_budget"])
            .await;
        if refused == (PEERS - 8) as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{refused} of {PEERS} peers refused; attackers' side: {}; metrics:\n{}",
            census(&held),
            admin.metrics_text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let buffered = admin.metric("occupancy_webhook_buffered_bytes", &[]).await;
    assert_eq!(
        buffered,
        (8 * DECLARED) as f64,
        "the held bodies fill the 4 MiB budget exactly"
    );

    // While the budget is spent a real webhook is refused with 503, which Pusher retries...
    let (status, body) = gate.send_webhook(&[("channel_occupied", "during")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("retry")),
        "{body}"
    );

    // ...and once the peers go away, it is applied.
    drop(held);
    support::eventually(
        Duration::from_secs(5),
        "the budget is returned",
        || async move { admin.metric("occupancy_webhook_buffered_bytes", &[]).await == 0.0 },
    )
    .await;
    let (status, body) = gate.send_webhook(&[("channel_occupied", "after")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["occupied"], 1, "{body}");
}

/// The same attack with the budget set out of reach, as before it existed: run by hand for
/// the figure in BENCHMARKS.md (`cargo test --test exhaustion -- --ignored --nocapture`). It
/// needs about 450 MB of memory, so it is not part of the normal run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "uses ~450 MB; run by hand for BENCHMARKS.md"]
async fn without_the_budget_the_same_attack_takes_hundreds_of_megabytes() {
    let _one = ONE_ATTACK_AT_A_TIME.lock().await;
    let gate = Occupancy::start(&attack_args(Some("1073741824")));
    let (_, (_, peak), held) = attack(&gate).await;
    assert!(
        peak > 4 * RSS_BOUND,
        "peak RSS {:.1} MiB: the attack did not take memory, so the bounded test proves nothing",
        mib(peak)
    );
    drop(held);
}

#[tokio::test]
async fn a_declared_body_over_the_default_limit_is_refused_before_it_is_read() {
    let gate = Occupancy::start(&[]);
    let mut stream = TcpStream::connect(gate.http_addr).await.expect("connect");
    let head = format!(
        "POST /webhooks/pusher HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Pusher-Key: {KEY}\r\nX-Pusher-Signature: 00\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // Not a byte of the body is sent: the answer comes on the headers, and the connection closes.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await;
    assert!(read.is_ok(), "the connection was not closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    assert_eq!(
        gate.metric("occupancy_webhook_requests_total", &["too_large"])
            .await,
        1.0
    );

    // A body at the limit is read (and, unsigned, refused for its signature).
    let body = vec![b' '; 64 * 1024];
    let (status, _) = support::post_raw(&gate.webhook_url(), Some(KEY), Some("00"), body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn gate_answers(gate: &Occupancy) {
    let answer = OccupancyClient::new(gate.channel().await)
        .is_occupied(IsOccupiedRequest {
            channel: "still-here".into(),
            ..Default::default()
        })
        .await;
    assert!(answer.is_ok(), "the gate stopped answering: {answer:?}");
}

#[tokio::test]
async fn a_silent_grpc_connection_is_closed_within_the_handshake_timeout() {
    let gate = Occupancy::start(&["--grpc-handshake-timeout".into(), "500ms".into()]);
    // One that sends nothing, one that stops in the middle of the HTTP/2 preface.
    let mut silent = TcpStream::connect(gate.grpc_addr).await.expect("connect");
    let mut partial = TcpStream::connect(gate.grpc_addr).await.expect("connect");
    partial.write_all(b"PRI * HTTP/2.0").await.expect("write");
    for (name, stream) in [("silent", &mut silent), ("partial preface", &mut partial)] {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        let closed = closed.unwrap_or_else(|| panic!("a {name} connection was kept open"));
        assert!(
            closed < Duration::from_millis(1500),
            "a {name} connection was closed only after {closed:?}"
        );
    }
    // A client that sent its preface keeps its connection past the deadline.
    let mut client = OccupancyClient::new(gate.channel().await);
    let request = IsOccupiedRequest {
        channel: "kept".into(),
        ..Default::default()
    };
    client.is_occupied(request.clone()).await.expect("answer");
    tokio::time::sleep(Duration::from_millis(800)).await;
    client
        .is_occupied(request)
        .await
        .expect("the same connection answers after the handshake timeout");
}

#[tokio::test]
async fn past_the_grpc_connection_cap_new_connections_are_closed_at_once() {
    let gate = Occupancy::start(&[
        "--grpc-max-connections".into(),
        "2".into(),
        "--grpc-handshake-timeout".into(),
        "30s".into(),
    ]);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(gate.grpc_addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(gate.grpc_addr).await.expect("connect");
    let started = Instant::now();
    let closed = closed_within(&mut third, Duration::from_secs(3)).await;
    assert!(closed.is_some(), "a connection past the cap was kept");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        gate.metric(
            "occupancy_connections_refused_total",
            &["listener=\"grpc\""]
        )
        .await
            >= 1.0
    );

    // The permits come back when the held connections close.
    drop(held);
    support::eventually(
        Duration::from_secs(3),
        "a gRPC connection is served",
        || async {
            let Ok(channel) = tonic::transport::Channel::from_shared(gate.grpc_url())
                .expect("url")
                .connect()
                .await
            else {
                return false;
            };
            OccupancyClient::new(channel)
                .is_occupied(IsOccupiedRequest {
                    channel: "x".into(),
                    ..Default::default()
                })
                .await
                .is_ok()
        },
    )
    .await;
}

#[tokio::test]
async fn oversized_health_and_reflection_requests_are_refused() {
    let gate = Occupancy::start(&[]);
    let huge = "x".repeat(occupancy::wire::GRPC_MAX_MESSAGE_BYTES + 1);

    let status = tonic_health::pb::health_client::HealthClient::new(gate.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: huge.clone(),
        })
        .await
        .expect_err("a health request over the limit");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    {
        use tokio_stream::StreamExt;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(huge)),
        };
        let answer = ServerReflectionClient::new(gate.channel().await)
            .server_reflection_info(tokio_stream::iter([request]))
            .await;
        // tonic's reflection service ends the stream when its request cannot be decoded: the
        // request is refused either as OUT_OF_RANGE or by ending without an answer. Under the
        // limit a request is decoded and answered (NOT_FOUND for an unknown symbol), shown below.
        match answer {
            Err(status) => assert_eq!(status.code(), Code::OutOfRange, "{status:?}"),
            Ok(stream) => match stream.into_inner().next().await {
                None => {}
                Some(Err(status)) => assert_eq!(status.code(), Code::OutOfRange, "{status:?}"),
                Some(Ok(answer)) => panic!("a reflection request over the limit: {answer:?}"),
            },
        }
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("x".repeat(1000))),
        };
        let answer = ServerReflectionClient::new(gate.channel().await)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection")
            .into_inner()
            .next()
            .await;
        // Decoded and looked up: an unknown symbol is NOT_FOUND.
        assert!(
            matches!(&answer, Some(Err(status)) if status.code() == Code::NotFound),
            "{answer:?}"
        );
    }
    gate_answers(&gate).await;
}

#[tokio::test]
async fn with_tls_a_silent_or_stalled_handshake_is_closed_within_the_timeout() {
    let pki = support::TestPki::create();
    let gate = Occupancy::start(&[
        "--grpc-tls-cert".into(),
        pki.server_cert.display().to_string(),
        "--grpc-tls-key".into(),
        pki.server_key.display().to_string(),
        "--grpc-handshake-timeout".into(),
        "500ms".into(),
    ]);
    let mut silent = TcpStream::connect(gate.grpc_addr).await.expect("connect");
    // The first 40 bytes of a TLS ClientHello (record header, handshake header, version,
    // random), past the preface's 24 bytes, then nothing: tonic's TLS handshake timeout.
    let mut stalled = TcpStream::connect(gate.grpc_addr).await.expect("connect");
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[7u8; 29]);
    stalled.write_all(&hello).await.expect("write");
    for (name, stream) in [("silent", &mut silent), ("stalled TLS", &mut stalled)] {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        let closed = closed.unwrap_or_else(|| panic!("a {name} connection was kept open"));
        assert!(
            closed < Duration::from_millis(1500),
            "a {name} connection was closed only after {closed:?}"
        );
    }
}

/// Bytes of header lines each peer sends without ending its head: under hyper's default
/// 400 KiB head buffer.
const HEADER_FLOOD: usize = 380 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peers_sending_endless_headers_stay_within_the_memory_bound() {
    let _one = ONE_ATTACK_AT_A_TIME.lock().await;
    let gate = Occupancy::start(&["--http-header-timeout".into(), "30s".into()]);
    let (before, _) = memory(gate.pid());
    let mut lines = String::new();
    while lines.len() < HEADER_FLOOD {
        lines.push_str(&format!(
            "X-Filler-{}: {}\r\n",
            lines.len(),
            "y".repeat(100)
        ));
    }
    let head: Arc<[u8]> = format!("POST /webhooks/pusher HTTP/1.1\r\nHost: x\r\n{lines}")
        .into_bytes()
        .into();
    let addr = gate.http_addr;
    // One head over the 16 KiB limit is answered 431 and closed.
    let mut one = TcpStream::connect(addr).await.expect("connect");
    let _ = one.write_all(&head).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut one, &mut answer),
    )
    .await;
    assert!(read.is_ok(), "an oversized head was kept open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let tasks: Vec<_> = (0..PEERS)
        .map(|_| {
            let head = head.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), stream.write_all(&head)).await;
                stream
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        held.push(task.await.expect("peer task"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss, peak) = memory(gate.pid());
    eprintln!(
        "{PEERS} peers x {} KiB of headers: RSS {:.1} MiB before, {:.1} MiB during, peak {:.1} MiB",
        HEADER_FLOOD / 1024,
        mib(before),
        mib(rss),
        mib(peak)
    );
    assert!(
        peak < RSS_BOUND,
        "peak RSS {:.1} MiB over the {:.0} MiB bound",
        mib(peak),
        mib(RSS_BOUND)
    );
    drop(held);
    let (status, body) = gate.send_webhook(&[("channel_occupied", "after")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Partial health requests: on each of `connections` HTTP/2 connections, `streams` calls of
/// `grpc.health.v1.Health/Check` that declare a message of `declared` bytes and send `sent` of
/// them. Returns everything that keeps them open, and the calls' answers as they come.
async fn partial_health_checks(
    addr: SocketAddr,
    connections: usize,
    streams: usize,
    declared: usize,
    sent: usize,
) -> (
    Vec<Box<dyn std::any::Any + Send>>,
    Vec<h2::client::ResponseFuture>,
) {
    let mut payload = vec![0u8];
    payload.extend_from_slice(&(declared as u32).to_be_bytes());
    payload.extend(std::iter::repeat_n(b'x', sent));
    let payload = axum::body::Bytes::from(payload);
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..connections {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(connection);
        for _ in 0..streams {
            client = client.ready().await.expect("stream slot");
            let request =
                axum::http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())
                    .expect("request");
            let (answer, mut send) = client.send_request(request, false).expect("send");
            send.send_data(payload.clone(), false).expect("data");
            answers.push(answer);
            keep.push(Box::new(send));
        }
        keep.push(Box::new(client));
    }
    (keep, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_grpc_messages_on_many_streams_stay_within_the_buffer_budget() {
    let _one = ONE_ATTACK_AT_A_TIME.lock().await;
    let gate = Occupancy::start(&[]);
    let (before, _) = memory(gate.pid());
    // 4 connections x 250 streams x 60,000 bytes: 60 MB if every partial message were held.
    let (keep, answers) = partial_health_checks(gate.grpc_addr, 4, 250, 65_000, 60_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss, peak) = memory(gate.pid());
    eprintln!(
        "1000 partial 60,000-byte gRPC messages: RSS {:.1} MiB before, {:.1} MiB during, peak {:.1} MiB",
        mib(before),
        mib(rss),
        mib(peak)
    );
    assert!(
        peak < RSS_BOUND,
        "peak RSS {:.1} MiB over the {:.0} MiB bound",
        mib(peak),
        mib(RSS_BOUND)
    );
    // The calls past the budget were answered RESOURCE_EXHAUSTED (8) at once.
    let mut exhausted = 0;
    for answer in answers {
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_millis(5), answer).await
            && response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                == Some("8")
        {
            exhausted += 1;
        }
    }
    let refused = gate
        .metric("occupancy_grpc_requests_refused_total", &["buffer_budget"])
        .await;
    assert!(
        exhausted > 500 && refused >= exhausted as f64,
        "{exhausted} answered RESOURCE_EXHAUSTED, {refused} counted"
    );
    drop(keep);
    gate_answers(&gate).await;
}
