//! Access to the gate: bearer tokens on `occupancy.v1` (health and reflection stay open for
//! probes), gRPC over TLS with certificates made here, and client certificates when required.

mod support;

use occupancy::proto::IsOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use support::{Occupancy, TestPki};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn is_occupied(channel: &str) -> tonic::Request<IsOccupiedRequest> {
    tonic::Request::new(IsOccupiedRequest {
        channel: channel.into(),
        ..Default::default()
    })
}

fn with_token(token: &str) -> tonic::Request<IsOccupiedRequest> {
    let mut request = is_occupied("job-1");
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

#[tokio::test]
async fn tokens_guard_the_gate_but_not_health() {
    let gate = Occupancy::start(&["--grpc-tokens".into(), "tok-new, tok-old".into()]);
    let mut client = OccupancyClient::new(gate.channel().await);

    for (request, what) in [
        (is_occupied("job-1"), "no token"),
        (with_token("tok-wrong"), "a wrong token"),
        (
            with_token("tok-new-but-longer"),
            "a token with a right prefix",
        ),
    ] {
        let status = client.is_occupied(request).await.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    for token in ["tok-new", "tok-old"] {
        let answer = client.is_occupied(with_token(token)).await;
        assert!(answer.is_ok(), "{token}: {answer:?}");
    }
    let health = HealthClient::new(gate.channel().await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "health needs no token: {health:?}");

    for (reason, expected) in [("no_token", 1.0), ("unknown_token", 2.0)] {
        assert_eq!(
            gate.metric(
                "occupancy_grpc_requests_refused_total",
                &[&format!("reason=\"{reason}\"")]
            )
            .await,
            expected,
            "refusals counted by reason"
        );
    }
    // A stranger calling over and over is counted, but logged once per period, not per call.
    for _ in 0..50 {
        let status = client.is_occupied(is_occupied("job-1")).await;
        assert_eq!(status.expect_err("no token").code(), Code::Unauthenticated);
    }
    assert_eq!(
        gate.metric(
            "occupancy_grpc_requests_refused_total",
            &["reason=\"no_token\""]
        )
        .await,
        51.0
    );
    let log = gate.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("no bearer token"))
        .count();
    assert_eq!(lines, 1, "51 refusals in one period, one line:\n{log}");
    for token in ["tok-new", "tok-old", "tok-wrong"] {
        assert!(!log.contains(token), "token {token} logged:\n{log}");
    }
}

async fn tls_channel(
    gate: &Occupancy,
    pki: &TestPki,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let ca = std::fs::read(&pki.ca_cert).expect("CA");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Channel::from_shared(format!("https://localhost:{}", gate.grpc_addr.port()))
        .expect("URL")
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn grpc_over_tls_with_a_certificate_made_here() {
    let pki = TestPki::create();
    let gate = Occupancy::start(&[
        "--grpc-tls-cert".into(),
        pki.server_cert.display().to_string(),
        "--grpc-tls-key".into(),
        pki.server_key.display().to_string(),
    ]);
    let channel = tls_channel(&gate, &pki, None).await.expect("TLS connect");
    let answer = OccupancyClient::new(channel)
        .is_occupied(is_occupied("job-1"))
        .await;
    assert!(answer.is_ok(), "{answer:?}");

    // A plaintext client gets no answer from a TLS listener.
    let plaintext = Channel::from_shared(format!("http://{}", gate.grpc_addr))
        .expect("URL")
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let status = OccupancyClient::new(channel)
            .is_occupied(is_occupied("job-1"))
            .await
            .expect_err("plaintext refused");
        assert_ne!(status.code(), Code::Ok);
    }
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_given() {
    let pki = TestPki::create();
    let gate = Occupancy::start(&[
        "--grpc-tls-cert".into(),
        pki.server_cert.display().to_string(),
        "--grpc-tls-key".into(),
        pki.server_key.display().to_string(),
        "--grpc-tls-client-ca".into(),
        pki.ca_cert.display().to_string(),
    ]);
    let without = match tls_channel(&gate, &pki, None).await {
        Ok(channel) => OccupancyClient::new(channel)
            .is_occupied(is_occupied("job-1"))
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!without, "a client without a certificate was served");

    let identity = Identity::from_pem(
        std::fs::read(&pki.client_cert).expect("cert"),
        std::fs::read(&pki.client_key).expect("key"),
    );
    let channel = tls_channel(&gate, &pki, Some(identity))
        .await
        .expect("mutual TLS connect");
    let answer = OccupancyClient::new(channel)
        .is_occupied(is_occupied("job-1"))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
}
