//! Bearer tokens on the `occupancy.v1` service.
//!
//! `PublishIfOccupied` can publish to any private or presence channel of the app, so a gate
//! reachable by strangers must ask who is calling. When tokens are configured, every call needs
//! `authorization: Bearer <token>`; several tokens are accepted at once so they can be rotated
//! without downtime. Health and reflection are served without this check so probes keep working.
//!
//! Tokens are compared by their SHA-256 digests in constant time: neither the content nor the
//! length of a configured token leaks through timing, and no token is ever logged. Refused calls
//! are counted in `occupancy_grpc_requests_refused_total` (`no_token`, `unknown_token`) and
//! logged at most once per [`WARN_PERIOD`]: a stranger calling without a token cannot fill the
//! log.

use prometheus_client::metrics::counter::Counter;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::metrics::Metrics;
use crate::refusals::{Refusals, WARN_PERIOD};

static NO_TOKEN: Refusals = Refusals::new("gRPC calls refused: no bearer token", WARN_PERIOD);
static UNKNOWN_TOKEN: Refusals =
    Refusals::new("gRPC calls refused: unknown bearer token", WARN_PERIOD);

/// The accepted tokens, as digests. Empty means the service is open.
#[derive(Clone, Default)]
pub struct BearerTokens {
    digests: Vec<[u8; 32]>,
    /// Calls refused for carrying no token, and for an unknown one.
    no_token: Counter,
    unknown_token: Counter,
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokens")
            .field("count", &self.digests.len())
            .finish()
    }
}

impl BearerTokens {
    /// Accepts any of `tokens`; none means every call is let through. Refusals are counted in
    /// `metrics`.
    pub fn new(tokens: &[SecretString], metrics: &Metrics) -> Self {
        Self {
            digests: tokens
                .iter()
                .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into())
                .collect(),
            no_token: metrics.grpc_refused("no_token"),
            unknown_token: metrics.grpc_refused("unknown_token"),
        }
    }

    /// Whether calls must carry a token.
    pub fn required(&self) -> bool {
        !self.digests.is_empty()
    }

    /// A tonic interceptor: lets a call through, or answers `UNAUTHENTICATED` without saying
    /// which token was tried.
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.required() {
            return Ok(request);
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        let Some(presented) = presented else {
            self.no_token.inc();
            NO_TOKEN.record(&"the call carried no `authorization: Bearer` header");
            return Err(Status::unauthenticated(
                "this gate requires `authorization: Bearer <token>`",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Every configured token is compared, so the time taken does not say which one matched.
        let matched = self
            .digests
            .iter()
            .fold(0u8, |found, known| found | known.ct_eq(&digest).unwrap_u8());
        if matched == 1 {
            Ok(request)
        } else {
            self.unknown_token.inc();
            UNKNOWN_TOKEN.record(&"the token is none of --grpc-tokens");
            Err(Status::unauthenticated("the bearer token is not accepted"))
        }
    }
}

/// The token of an `authorization` value `Bearer <token>` (scheme case-insensitive, RFC 6750).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn open_without_tokens() {
        assert!(BearerTokens::default().check(call(None)).is_ok());
    }

    #[test]
    fn any_configured_token_passes_and_others_do_not() {
        let metrics = Metrics::new();
        let tokens = BearerTokens::new(
            &[SecretString::from("new"), SecretString::from("old")],
            &metrics,
        );
        assert!(tokens.check(call(Some("Bearer new"))).is_ok());
        assert!(tokens.check(call(Some("bearer old"))).is_ok());
        for bad in [
            None,
            Some("Bearer"),
            Some("Bearer wrong"),
            Some("Basic new"),
            Some("new"),
        ] {
            let status = tokens.check(call(bad)).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
            assert!(!status.message().contains("new"), "{bad:?}");
        }
        assert_eq!(
            tokens.no_token.get(),
            4,
            "no bearer token: none, empty, Basic, bare"
        );
        assert_eq!(tokens.unknown_token.get(), 1, "a wrong token");
    }
}
