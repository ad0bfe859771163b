//! The gRPC port's accepted connections, limited before tonic sees them.
//!
//! tonic's server has no connection cap and no deadline for a new connection's HTTP/2 preface:
//! a peer that opens TCP connections and says nothing holds each one for ever (HTTP/2 keepalive
//! pings start only once the preface has arrived), and enough of them exhaust file descriptors.
//! Here each accepted socket takes a permit from a fixed pool (past the cap it is closed at once,
//! as on the webhook port) and must send its first [`PREFACE_LEN`] bytes (the HTTP/2 preface in
//! plaintext, the start of the ClientHello under TLS, whose handshake tonic bounds with the same
//! timeout) within the handshake timeout, or its reads fail and the connection is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::metrics::{Metrics, count};
use crate::refusals::{Refusals, WARN_PERIOD};

/// Bytes of the HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub const PREFACE_LEN: usize = 24;

static REFUSED: Refusals = Refusals::new("gRPC connections refused: too many open", WARN_PERIOD);

/// Limits on what a stranger's gRPC connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// How long a new connection may take to send its first bytes (and, with TLS, to finish
    /// the TLS handshake).
    pub handshake_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
}

/// The accepted connections of `incoming`, each holding a permit and a handshake deadline;
/// connections past `limits.max_connections` are closed at once, counted in `metrics`, and never
/// yielded.
pub fn limit(
    incoming: TcpIncoming,
    limits: GrpcLimits,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = std::io::Result<Limited>> + Send + 'static {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    incoming.filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(err) => return Some(Err(err)),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            count(&metrics.connections_refused, &[("listener", "grpc")], 1);
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
            REFUSED.record(&format_args!(
                "limit {}, latest from {peer}",
                limits.max_connections
            ));
            return None;
        };
        Some(Ok(Limited {
            inner: stream,
            _permit: permit,
            handshake: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
            received: 0,
        }))
    })
}

/// An accepted connection: reads fail once the handshake deadline passes before the peer sent
/// [`PREFACE_LEN`] bytes; the permit is returned when the connection is dropped.
#[derive(Debug)]
pub struct Limited {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Armed until the first [`PREFACE_LEN`] bytes have arrived.
    handshake: Option<Pin<Box<Sleep>>>,
    received: usize,
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Polled before the socket, so the timer wakes this task even while the peer is silent.
        if let Some(deadline) = &mut this.handshake
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the gRPC handshake timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && this.handshake.is_some()
        {
            this.received += buf.filled().len() - before;
            if this.received >= PREFACE_LEN {
                this.handshake = None;
            }
        }
        polled
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Whether a gRPC listener on `addr` lets anyone who reaches it call `PublishIfOccupied`: it
/// listens beyond loopback, and callers are told apart neither by tokens nor by client
/// certificates (TLS alone encrypts but admits anyone).
pub fn is_open_to_anyone(addr: SocketAddr, tokens: bool, client_certificates: bool) -> bool {
    !addr.ip().is_loopback() && !tokens && !client_certificates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unauthenticated_listener_beyond_loopback_is_open_to_anyone() {
        let any: SocketAddr = "0.0.0.0:50051".parse().expect("addr");
        let lan: SocketAddr = "10.0.0.5:50051".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:50051".parse().expect("addr");
        let local6: SocketAddr = "[::1]:50051".parse().expect("addr");
        assert!(is_open_to_anyone(any, false, false));
        assert!(is_open_to_anyone(lan, false, false));
        assert!(!is_open_to_anyone(any, true, false));
        assert!(!is_open_to_anyone(any, false, true));
        assert!(!is_open_to_anyone(local, false, false));
        assert!(!is_open_to_anyone(local6, false, false));
    }
}
