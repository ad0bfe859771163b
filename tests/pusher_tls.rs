//! `--pusher-ca`: a self-hosted Pusher-compatible server behind a private CA. The stand-in here
//! speaks HTTPS with a certificate made in the test; the gate publishes to it only when told to
//! trust that CA, and the request still carries a valid Pusher signature.

mod support;

use std::sync::Arc;

use occupancy::proto::PublishIfOccupiedRequest;
use occupancy::proto::occupancy_client::OccupancyClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::{InProcess, PusherStub, TestPki};
use tokio::net::TcpListener;
use tonic::Code;

/// Accepts TLS on a free port and relays each connection to the plain stand-in.
async fn tls_front(pki: &TestPki, backend: std::net::SocketAddr) -> std::net::SocketAddr {
    let certs = CertificateDer::pem_file_iter(&pki.server_cert)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("key");
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

async fn publish(gate: &InProcess) -> Result<Vec<String>, tonic::Status> {
    gate.send_webhook(&[("channel_occupied", "tls-job")]).await;
    OccupancyClient::new(gate.channel().await)
        .publish_if_occupied(PublishIfOccupiedRequest {
            channels: vec!["tls-job".into()],
            event: "progress".into(),
            data: "{}".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().published)
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_given() {
    let pki = TestPki::create();
    let stub = PusherStub::start().await;
    let front = tls_front(&pki, stub.addr).await;
    let api = format!("https://localhost:{}", front.port());

    let untrusting = InProcess::start(&["--pusher-api-url".into(), api.clone()]).await;
    let status = publish(&untrusting)
        .await
        .expect_err("an unknown CA is refused");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(stub.calls().is_empty(), "nothing reached the server");

    let trusting = InProcess::start(&[
        "--pusher-api-url".into(),
        api,
        "--pusher-ca".into(),
        pki.ca_cert.display().to_string(),
    ])
    .await;
    assert_eq!(publish(&trusting).await.expect("published"), ["tls-job"]);
    let calls = stub.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].signature_valid);
}
