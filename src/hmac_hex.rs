//! Hex HMAC-SHA256, the one signature Pusher uses everywhere: on webhooks it sends us
//! (`X-Pusher-Signature`) and on API requests we send it (`auth_signature`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The lowercase hex HMAC-SHA256 of `message` under `secret`.
pub fn sign_hex(secret: &[u8], message: &[u8]) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

/// Whether `signature` is the hex HMAC-SHA256 of `message` under `secret`, in either case.
/// The digest comparison takes the same time wherever the first differing byte is, so a
/// stranger cannot find a valid signature byte by byte.
pub fn verify_hex(secret: &[u8], message: &[u8], signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    mac(secret, message).verify_slice(&expected).is_ok()
}

fn mac(secret: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_in_either_case() {
        let signature = sign_hex(b"secret", b"body");
        assert_eq!(signature.len(), 64);
        assert!(verify_hex(b"secret", b"body", &signature));
        assert!(verify_hex(b"secret", b"body", &signature.to_uppercase()));
        assert!(!verify_hex(b"other", b"body", &signature));
        assert!(!verify_hex(b"secret", b"body", "not hex"));
    }
}
