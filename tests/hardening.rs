//! The listeners facing strangers: slow and idle connections are closed while the gate keeps
//! answering, an unknown key is refused before the body is read, a connection cap holds, and
//! the Pusher client never follows a redirect.

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::{IsOccupiedRequest, PublishIfOccupiedRequest};
use support::in_process::InProcess;
use support::{Behaviour, KEY, PusherStub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

/// Reads until the server closes the connection or `limit` passes; returns what was read and
/// whether the connection was closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
        }
    }
}

async fn gate_answers(gate: &InProcess) {
    let answer = OccupancyClient::new(gate.channel().await)
        .is_occupied(IsOccupiedRequest {
            channel: "still-here".into(),
            ..Default::default()
        })
        .await;
    assert!(answer.is_ok(), "the gate stopped answering: {answer:?}");
}

#[tokio::test]
async fn half_sent_headers_and_idle_connections_are_closed_within_the_timeout() {
    let gate = InProcess::start(&["--http-header-timeout".into(), "500ms".into()]).await;

    let mut slow = TcpStream::connect(gate.http_addr).await.expect("connect");
    slow.write_all(b"POST /webhooks/pusher HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    gate_answers(&gate).await;
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "a half-sent request was kept open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A keep-alive connection that goes quiet after one request is closed too.
    let mut idle = TcpStream::connect(gate.http_addr).await.expect("connect");
    idle.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.1 405"),
        "{answer}"
    );
    assert!(closed, "an idle keep-alive connection was kept open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    gate_answers(&gate).await;
}

#[tokio::test]
async fn an_unknown_key_is_refused_before_the_body_is_read() {
    let gate = InProcess::start(&[]).await;
    for key_header in ["X-Pusher-Key: stranger\r\n", ""] {
        let mut stream = TcpStream::connect(gate.http_addr).await.expect("connect");
        let head = format!(
            "POST /webhooks/pusher HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             {key_header}X-Pusher-Signature: 00\r\nContent-Length: 100000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        // Not a byte of the 100 MB body is sent: the answer must come anyway.
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{key_header:?}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let gate = InProcess::start(&["--http-body-timeout".into(), "500ms".into()]).await;
    let mut stream = TcpStream::connect(gate.http_addr).await.expect("connect");
    let head = format!(
        "POST /webhooks/pusher HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Pusher-Key: {KEY}\r\nX-Pusher-Signature: 00\r\nContent-Length: 1000\r\n\r\n{{\"time_ms\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_are_closed_and_the_gate_answers() {
    let gate = InProcess::start(&[
        "--http-max-connections".into(),
        "2".into(),
        "--http-header-timeout".into(),
        "10s".into(),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(gate.http_addr).await.expect("connect");
        stream
            .write_all(b"POST /webhooks/pusher HTTP/1.1\r\n")
            .await
            .expect("write");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(gate.http_addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(closed, "a connection past the cap was served");
    gate_answers(&gate).await;
    let refused = gate
        .admin()
        .metric(
            "occupancy_connections_refused_total",
            &["listener=\"webhook\""],
        )
        .await;
    assert!(refused >= 1.0, "the refusal is counted: {refused}");

    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = gate
        .send_webhook(&[("channel_occupied", "after-cap")])
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "connections are served again once others closed"
    );
}

#[tokio::test]
async fn a_redirect_from_pusher_is_not_followed() {
    let stub = PusherStub::start().await;
    let elsewhere = PusherStub::start().await;
    stub.set_behaviour(Behaviour {
        status: StatusCode::TEMPORARY_REDIRECT,
        body: String::new(),
        location: Some(format!(
            "{}/apps/{}/events",
            elsewhere.url(),
            support::APP_ID
        )),
        ..Default::default()
    });
    let gate = InProcess::start(&["--pusher-api-url".into(), stub.url()]).await;
    gate.send_webhook(&[("channel_occupied", "redirected")])
        .await;
    let status = OccupancyClient::new(gate.channel().await)
        .publish_if_occupied(PublishIfOccupiedRequest {
            channels: vec!["redirected".into()],
            event: "e".into(),
            data: "{}".into(),
            ..Default::default()
        })
        .await
        .expect_err("a redirect is not success");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("307"), "{status:?}");
    assert_eq!(stub.calls().len(), 1);
    assert!(
        elsewhere.calls().is_empty(),
        "the signed request was re-sent elsewhere"
    );
}

#[tokio::test]
async fn an_oversized_grpc_request_is_refused_and_the_gate_answers() {
    let gate = InProcess::start(&[]).await;
    let status = OccupancyClient::new(gate.channel().await)
        .is_occupied(IsOccupiedRequest {
            channel: "x".repeat(occupancy::wire::GRPC_MAX_MESSAGE_BYTES + 1),
            ..Default::default()
        })
        .await
        .expect_err("a request over the limit");
    // tonic answers a message over the decoding limit with OUT_OF_RANGE.
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    gate_answers(&gate).await;
}
