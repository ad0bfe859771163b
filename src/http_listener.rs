//! The webhook port's accept loop, hardened for the internet.
//!
//! axum's own `serve` has no header-read timeout and no connection cap, so a client that sends
//! half its headers and then nothing holds a socket for ever, and a few thousand of them exhaust
//! file descriptors and take the gRPC gate down with them. Here every connection is served by
//! hyper's HTTP/1.1 (all Pusher speaks) with a header-read timeout (which also bounds how long an
//! idle keep-alive connection may wait for its next request), TCP_NODELAY, and a permit from a
//! fixed pool: past the cap, new connections are closed at once instead of queueing. The body
//! read is bounded in the handler (see [`crate::webhook`]): by a per-request limit and by a
//! budget of bytes shared by all connections, so many slow peers cannot exhaust memory either. Shutdown stops accepting, lets
//! requests in flight finish and closes idle connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, count};
use crate::refusals::{Refusals, WARN_PERIOD};

static REFUSED: Refusals = Refusals::new("HTTP connections refused: too many open", WARN_PERIOD);

/// Largest request head (request line and headers) buffered per connection. hyper's default,
/// about 400 KiB, let 800 peers sending endless header lines hold 70 MiB between them (measured,
/// tests/exhaustion.rs); Pusher's heads are under 1 KiB. Also the most hyper buffers at once
/// while reading a body. A head over it is answered 431 and the connection closed.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Limits on what a stranger's connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
}

/// hyper's HTTP/1.1 settings for one connection, the same with or without TLS: the header-read
/// timeout and the head buffer bound are what keep a stranger's connection cheap.
fn http1(limits: &HttpLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
}

/// Which listener a server is, as its metrics and log lines name it.
#[derive(Debug, Clone)]
pub struct Named {
    /// The `listener` label: `webhook`, `pusher_api`.
    pub name: &'static str,
    /// The service's metrics, where refused connections are counted.
    pub metrics: Arc<Metrics>,
}

/// Serves `router` on `listener` until `shutdown`, then waits for requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    named: Named,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_maybe_tls(listener, router, limits, None, named, shutdown).await
}

/// Why a TLS certificate and key cannot serve. Names what is wrong, never the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate file holds no certificate that parses.
    #[error("cannot read the certificate chain")]
    Certificate(#[source] rustls_pki_types::pem::Error),
    /// The key file holds no private key that parses.
    #[error("cannot read the private key")]
    Key(#[source] rustls_pki_types::pem::Error),
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("the certificate and key cannot be used")]
    Config(#[source] tokio_rustls::rustls::Error),
}

/// A TLS acceptor (HTTP/1.1 only) from a PEM certificate chain and private key.
pub fn tls_acceptor(cert: &[u8], key: &[u8]) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsSetupError::Certificate)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(TlsSetupError::Key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsSetupError::Config)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(TlsSetupError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// [`serve`], with TLS when `tls` is given: the handshake is bounded by the header timeout, so a
/// peer that opens a connection and stalls holds its permit no longer than one that sends
/// half its headers.
pub async fn serve_maybe_tls(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    named: Named,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Named { name, metrics } = named;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%err, listener = name, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            count(&metrics.connections_refused, &[("listener", name)], 1);
            REFUSED.record(&format_args!(
                "{name} listener, limit {}, latest from {peer}",
                limits.max_connections
            ));
            drop(stream);
            continue;
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, listener = name, "cannot set TCP_NODELAY");
        }
        if let Some(acceptor) = &tls {
            let (acceptor, router, watcher) =
                (acceptor.clone(), router.clone(), graceful.watcher());
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(
                    limits.header_timeout,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%err, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let connection = http1(&limits)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
                if let Err(err) = watcher.watch(connection).await {
                    tracing::debug!(%err, %peer, "TLS connection ended with an error");
                }
                drop(permit);
            });
            continue;
        }
        let connection = http1(&limits).serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, %peer, listener = name, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
