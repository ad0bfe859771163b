//! Pusher's request signing for its HTTP API, done here rather than with the unmaintained
//! `pusher` crate (which panics on malformed input).
//!
//! Every request carries `auth_key`, `auth_timestamp` (unix seconds, within 600 s of Pusher's
//! clock), `auth_version=1.0`, `body_md5` (hex MD5 of a non-empty body) and `auth_signature`: the
//! hex HMAC-SHA256, under the app secret, of `METHOD\nPATH\nQUERY`, where QUERY is every other
//! parameter with lowercased keys, sorted by key, joined as `k=v&k=v` without URL escaping.

use md5::{Digest, Md5};

/// The query parameters that authenticate one request, `auth_signature` last.
pub fn signed_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> Vec<(String, String)> {
    sign_with(Vec::new(), key, secret, method, path, body, timestamp)
}

/// `params` (a request's own query, such as `filter_by_prefix` or `info`) followed by the
/// authentication parameters, signed over all of them as Pusher requires.
pub fn sign_with(
    mut params: Vec<(String, String)>,
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> Vec<(String, String)> {
    params.extend([
        ("auth_key".to_owned(), key.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
    ]);
    if !body.is_empty() {
        params.push(("body_md5".to_owned(), hex::encode(Md5::digest(body))));
    }
    let signature = sign(secret, &string_to_sign(method, path, &params));
    params.push(("auth_signature".to_owned(), signature));
    params
}

/// `METHOD\nPATH\nQUERY` with QUERY in Pusher's canonical form. Any `auth_signature` in `params`
/// is left out, so a receiver can check a request by rebuilding this from what it got.
pub fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{query}", method.to_ascii_uppercase())
}

/// Hex HMAC-SHA256 of `message` under `secret`.
pub fn sign(secret: &str, message: &str) -> String {
    crate::hmac_hex::sign_hex(secret.as_bytes(), message.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in Pusher's REST API reference.
    #[test]
    fn reproduces_pushers_worked_example() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let params = signed_query(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "POST",
            "/apps/3/events",
            body,
            1_353_088_179,
        );
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("body_md5"), Some("ec365a775a4cd0599faeb73354201b6f"));
        assert_eq!(
            string_to_sign("POST", "/apps/3/events", &params),
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            get("auth_signature"),
            Some("da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c")
        );
    }

    #[test]
    fn an_empty_body_has_no_md5() {
        let params = signed_query("k", "s", "GET", "/apps/3/channels", b"", 1);
        assert!(params.iter().all(|(k, _)| k != "body_md5"));
        assert_eq!(
            string_to_sign("get", "/apps/3/channels", &params),
            "GET\n/apps/3/channels\nauth_key=k&auth_timestamp=1&auth_version=1.0"
        );
    }
}
