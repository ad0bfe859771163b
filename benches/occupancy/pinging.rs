//! A gRPC client that writes like grpc-go: every unary call goes out with an HTTP/2 PING beside
//! it, as grpc-go's bandwidth estimator sends one whenever data arrives.
//!
//! This is the pattern behind the 40 ms stall the CI guard exists for. The server answers the
//! PING at once, then the call a little later; without TCP_NODELAY on the server, Nagle's
//! algorithm holds that second small write until the client acknowledges the first, and the
//! client delays its ACK by up to 40 ms. tonic's own client sends no such PING, so against a
//! server without TCP_NODELAY it stays fast at the median and would not trip the guard; this
//! client does.

use std::net::SocketAddr;

use anyhow::{Context, bail, ensure};
use occupancy::proto::{IsOccupiedRequest, IsOccupiedResponse};
use prost::Message;
use tokio::net::TcpStream;
use tonic::codegen::{Bytes, http};

/// The method path of `IsOccupied`.
const IS_OCCUPIED: &str = "/occupancy.v1.Occupancy/IsOccupied";

/// One HTTP/2 connection to the gate, making one call at a time.
pub struct PingingClient {
    send: h2::client::SendRequest<Bytes>,
    ping: h2::PingPong,
    uri: String,
}

impl PingingClient {
    /// Connects to the gate's gRPC listener at `addr` (plaintext).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        // As grpc-go does: the client's own writes are never held back.
        tcp.set_nodelay(true)?;
        let (send, mut connection) = h2::client::handshake(tcp).await?;
        let ping = connection
            .ping_pong()
            .context("the HTTP/2 connection's ping handle was already taken")?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server closes; nothing to report then.
            let _ = connection.await;
        });
        Ok(Self {
            send,
            ping,
            uri: format!("http://{addr}{IS_OCCUPIED}"),
        })
    }

    /// Asks `IsOccupied` for `channel`, with a PING sent beside the call, and waits for both.
    pub async fn is_occupied(&mut self, channel: &str) -> anyhow::Result<bool> {
        let message = IsOccupiedRequest {
            channel: channel.to_owned(),
            ..Default::default()
        }
        .encode_to_vec();
        // gRPC framing: uncompressed flag, big-endian length, message.
        let mut frame = Vec::with_capacity(5 + message.len());
        frame.push(0);
        frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
        frame.extend_from_slice(&message);

        let request = http::Request::post(&self.uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(Bytes::from(frame), true)?;
        let (response, pong) = tokio::join!(response, self.ping.ping(h2::Ping::opaque()));
        pong.context("PING")?;
        let response = response.context("IsOccupied")?;
        ensure!(
            response.status() == http::StatusCode::OK,
            "IsOccupied answered HTTP {}",
            response.status()
        );

        let mut body = response.into_body();
        let mut answer = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            answer.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await?.unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("missing");
        if status != "0" {
            bail!("IsOccupied answered grpc-status {status}");
        }
        ensure!(answer.len() >= 5, "IsOccupied answered a short frame");
        Ok(IsOccupiedResponse::decode(&answer[5..])?.occupied)
    }
}
