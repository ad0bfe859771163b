//! The bytes of partly received gRPC requests held at once, across every connection.
//!
//! tonic buffers a request message until all of it has arrived. Health and reflection answer
//! without a token, so a stranger can open connections with 256 streams each and send all but
//! the last byte of a 64 KiB message on every stream: 16 MiB held per connection, gigabytes
//! across the connection cap (1,000 such streams took the process from 20 to 100 MiB). Every
//! request body is therefore wrapped here: the bytes of a message not yet complete are reserved
//! from one shared budget of [`GRPC_BUFFER_BUDGET_BYTES`] (8 MiB), and returned when it
//! completes or the request ends. A message that arrives whole in one frame (every small
//! request) reserves nothing; a partial message that does not fit fails its request with
//! `RESOURCE_EXHAUSTED`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::codegen::http::Request;

/// Bytes of partial request messages held at once: 128 messages at the 64 KiB limit. tonic's
/// buffers grow by doubling, so the memory they take is up to about twice this. Only messages
/// split across HTTP/2 frames (over 16 KiB) or TCP segments reserve anything, and only until
/// they complete, so callers never come near it.
pub const GRPC_BUFFER_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// gRPC's length prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// The shared budget; cloned into every request.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    bytes: Arc<Semaphore>,
    /// The service's count of requests refused for the budget.
    refused: Counter,
}

impl RequestBudget {
    /// A budget of `bytes`; each request refused for it counts on `refused`.
    pub fn new(bytes: usize, refused: Counter) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
            refused,
        }
    }

    /// `request` with its body counted against this budget.
    pub fn wrap(&self, request: Request<Body>) -> Request<Body> {
        let budget = self.bytes.clone();
        let refused = self.refused.clone();
        request.map(|inner| {
            Body::new(Budgeted {
                inner,
                budget,
                held: None,
                framing: Framing::default(),
                refused,
            })
        })
    }
}

/// Where the current message is in the stream of length-prefixed messages.
#[derive(Debug, Default)]
struct Framing {
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// Bytes of the current message's payload still to come (valid once the prefix is whole).
    remaining: usize,
    /// Bytes of the current message received so far, prefix included.
    received: usize,
}

impl Framing {
    /// Moves past `data`; returns the bytes of the message left incomplete at its end.
    fn advance(&mut self, mut data: &[u8]) -> usize {
        while !data.is_empty() {
            if self.prefix_len < PREFIX {
                let take = (PREFIX - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
                self.prefix_len += take;
                self.received += take;
                data = &data[take..];
                if self.prefix_len == PREFIX {
                    let length = u32::from_be_bytes([
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ]);
                    self.remaining = length as usize;
                }
            } else {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                self.received += take;
                data = &data[take..];
            }
            if self.prefix_len == PREFIX && self.remaining == 0 {
                *self = Self::default();
            }
        }
        self.received
    }
}

/// A request body whose incomplete message holds bytes of the budget.
struct Budgeted {
    inner: Body,
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    framing: Framing,
    refused: Counter,
}

impl Budgeted {
    /// Holds exactly `pending` bytes of the budget, or fails.
    fn hold(&mut self, pending: usize) -> Result<(), Status> {
        let held = self.held.as_ref().map_or(0, |p| p.num_permits());
        if pending <= held {
            if pending < held {
                // A message completed: its bytes go back; the next one's are taken anew.
                self.held = None;
                return self.hold(pending);
            }
            return Ok(());
        }
        let more = u32::try_from(pending - held).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                Ok(())
            }
            Err(_) => {
                self.held = None;
                self.refused.inc();
                Err(Status::resource_exhausted(
                    "too many partly received requests on this server; retry later",
                ))
            }
        }
    }
}

impl http_body::Body for Budgeted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let pending = this.framing.advance(data);
            if let Err(status) = this.hold(pending) {
                return Poll::Ready(Some(Err(status)));
            }
        }
        if frame.is_none() {
            this.held = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&(len as u32).to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, len));
        bytes
    }

    #[test]
    fn only_the_incomplete_message_counts() {
        let mut framing = Framing::default();
        assert_eq!(framing.advance(&message(10)), 0, "a whole message");
        let two = [message(3), message(100)].concat();
        assert_eq!(framing.advance(&two[..50]), 50 - 8, "the second is partial");
        assert_eq!(framing.advance(&two[50..]), 0, "now complete");
        assert_eq!(framing.advance(&message(0)[..2]), 2, "a prefix in pieces");
        assert_eq!(framing.advance(&message(0)[2..]), 0);
    }

    #[test]
    fn partial_messages_past_the_budget_are_refused_and_give_back_on_completion() {
        let budget = RequestBudget::new(100, Counter::default());
        let body = |budget: &RequestBudget| Budgeted {
            inner: Body::empty(),
            budget: budget.bytes.clone(),
            held: None,
            framing: Framing::default(),
            refused: budget.refused.clone(),
        };
        let mut first = body(&budget);
        let pending = first.framing.advance(&message(200)[..60]);
        first.hold(pending).expect("fits");
        let mut second = body(&budget);
        let pending = second.framing.advance(&message(200)[..60]);
        let status = second.hold(pending).expect_err("over the budget");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(budget.refused.get(), 1, "the refusal is counted");
        let pending = first.framing.advance(&message(200)[60..]);
        first.hold(pending).expect("completes");
        assert_eq!(budget.bytes.available_permits(), 100, "given back");
    }
}
