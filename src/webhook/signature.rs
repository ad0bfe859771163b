//! Checking that a webhook really comes from Pusher.
//!
//! Pusher signs the raw body with HMAC-SHA256 under the secret of the app token named in
//! `X-Pusher-Key` and sends the lowercase hex digest in `X-Pusher-Signature`. An app may hold
//! several tokens and Pusher signs with its oldest active one, so rotating a key means accepting
//! two pairs for a while: hence a list, not a single pair.

use secrecy::{ExposeSecret, SecretString};

use crate::hmac_hex::{sign_hex, verify_hex};

/// One accepted webhook key: its secret, and which app (by position) it belongs to.
#[derive(Clone)]
pub struct WebhookKey {
    /// The app key, as sent in `X-Pusher-Key`.
    pub key: String,
    /// Its secret; never logged.
    pub secret: SecretString,
    /// The app's position in the configuration.
    pub app: usize,
}

/// The key/secret pairs whose signatures are accepted, across every app.
#[derive(Clone)]
pub struct WebhookKeys {
    pairs: Vec<WebhookKey>,
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.pairs.iter().map(|p| p.key.as_str()).collect();
        f.debug_struct("WebhookKeys")
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

/// Why a webhook's signature was not accepted. The messages name no key or secret, since they go
/// back to whoever sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Pusher-Key` header.
    #[error("missing X-Pusher-Key header")]
    MissingKey,
    /// `X-Pusher-Key` names no configured key.
    #[error("unknown X-Pusher-Key")]
    UnknownKey,
    /// No `X-Pusher-Signature` header.
    #[error("missing X-Pusher-Signature header")]
    MissingSignature,
    /// The signature is not the body's HMAC under that key's secret.
    #[error("X-Pusher-Signature does not match the body")]
    Mismatch,
}

impl WebhookKeys {
    /// Accepts signatures made with any of `pairs`.
    pub fn new(pairs: Vec<WebhookKey>) -> Self {
        Self { pairs }
    }

    /// The pair for the `X-Pusher-Key` header, checked before the body is read so a stranger's
    /// request costs nothing more than its headers.
    pub fn find(&self, key: Option<&str>) -> Result<&WebhookKey, SignatureError> {
        let key = key.ok_or(SignatureError::MissingKey)?;
        self.pairs
            .iter()
            .find(|p| p.key == key)
            .ok_or(SignatureError::UnknownKey)
    }

    /// Accepts `body` only if `signature` is its hex HMAC-SHA256 under the secret of `key`, and
    /// answers which app the key belongs to. The handler finds the key first (one lookup per
    /// request); the tests check both steps at once.
    #[cfg(test)]
    pub fn verify(
        &self,
        key: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<usize, SignatureError> {
        self.find(key)?.verify(signature, body)
    }
}

impl WebhookKey {
    /// Accepts `body` only if `signature` is its hex HMAC-SHA256 under this key's secret, and
    /// answers which app the key belongs to. The digest comparison takes the same time wherever
    /// the first differing byte is.
    pub fn verify(&self, signature: Option<&str>, body: &[u8]) -> Result<usize, SignatureError> {
        let signature = signature.ok_or(SignatureError::MissingSignature)?;
        // Pusher sends lowercase hex; either case is accepted, since the bytes are what count.
        if !verify_hex(self.secret.expose_secret().as_bytes(), body, signature) {
            return Err(SignatureError::Mismatch);
        }
        Ok(self.app)
    }
}

/// The hex HMAC-SHA256 of `body` under `secret`, as Pusher computes `X-Pusher-Signature`.
/// Public so that tests and tools can sign webhooks exactly as Pusher does.
pub fn sign(secret: &str, body: &[u8]) -> String {
    sign_hex(secret.as_bytes(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> WebhookKeys {
        let pair = |key: &str, secret: &str, app| WebhookKey {
            key: key.into(),
            secret: SecretString::from(secret),
            app,
        };
        WebhookKeys::new(vec![
            pair("old", "old-secret", 0),
            pair("new", "new-secret", 0),
            pair("other", "other-secret", 1),
        ])
    }

    #[test]
    fn accepts_either_key_during_rotation() {
        let body = br#"{"time_ms":1,"events":[]}"#;
        for (key, secret) in [("old", "old-secret"), ("new", "new-secret")] {
            let sig = sign(secret, body);
            assert_eq!(keys().verify(Some(key), Some(&sig), body), Ok(0));
            let upper = sig.to_uppercase();
            assert_eq!(keys().verify(Some(key), Some(&upper), body), Ok(0));
        }
        let sig = sign("other-secret", body);
        assert_eq!(keys().verify(Some("other"), Some(&sig), body), Ok(1));
    }

    #[test]
    fn matches_an_independently_computed_digest() {
        // echo -n 'hello' | openssl dgst -sha256 -hmac 'secret'
        assert_eq!(
            sign("secret", b"hello"),
            "88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b"
        );
    }

    #[test]
    fn rejects_each_kind_of_bad_signature() {
        let body = b"{}";
        let good = sign("old-secret", body);
        let k = keys();
        assert_eq!(
            k.verify(None, Some(&good), body),
            Err(SignatureError::MissingKey)
        );
        assert_eq!(
            k.verify(Some("old"), None, body),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            k.verify(Some("nope"), Some(&good), body),
            Err(SignatureError::UnknownKey)
        );
        // Signed with the other pair's secret.
        assert_eq!(
            k.verify(Some("new"), Some(&good), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            k.verify(Some("old"), Some(&good), b"{ }"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            k.verify(Some("old"), Some("not hex"), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            k.verify(Some("old"), Some(&good[..10]), body),
            Err(SignatureError::Mismatch)
        );
    }
}
