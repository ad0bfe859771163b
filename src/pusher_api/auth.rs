//! Verifying a request signed for Pusher's HTTP API, exactly as Pusher checks it.
//!
//! The checks run in Pusher's order and each failure names the check that failed, never the
//! signature expected: `auth_key` one of the app's keys (rotation included), `auth_version` 1.0,
//! `auth_timestamp` within [`MAX_CLOCK_SKEW_SECS`] of this machine's clock, `body_md5` equal to
//! the body's MD5 when there is a body (tolerated on an empty body when it is the MD5 of nothing,
//! as the Python SDK sends on GET), and `auth_signature` the hex HMAC-SHA256 under that key's
//! secret of `METHOD\nPATH\nQUERY`, compared in constant time.

use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::pusher::signing::{sign, string_to_sign};

/// How far `auth_timestamp` may be from this machine's clock, as Pusher allows.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// The query parameters that authenticate a request; everything else is the request's own.
pub const AUTH_PARAMS: [&str; 5] = [
    "auth_key",
    "auth_timestamp",
    "auth_version",
    "body_md5",
    "auth_signature",
];

/// Why a request's signature was refused; the message is the 401 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A required parameter is absent.
    #[error("Missing {0} parameter")]
    Missing(&'static str),
    /// A parameter appears twice, so which one was signed is ambiguous.
    #[error("Duplicate {0} parameter")]
    Duplicate(String),
    /// The key is not one of this app's.
    #[error("Unknown auth_key for this app")]
    UnknownKey,
    /// Only version 1.0 exists.
    #[error("Unsupported auth_version: expected 1.0")]
    Version,
    /// Not a number of seconds.
    #[error("auth_timestamp is not a unix time in seconds")]
    BadTimestamp,
    /// Too far from this machine's clock (a replay, or a client clock that is wrong).
    #[error(
        "Timestamp expired: Given timestamp ({given}) not within {MAX_CLOCK_SKEW_SECS}s of server time ({now})"
    )]
    Expired {
        /// The request's `auth_timestamp`.
        given: u64,
        /// This machine's clock.
        now: u64,
    },
    /// `body_md5` does not match the body received.
    #[error("body_md5 does not match the MD5 of the body received")]
    BodyMd5,
    /// The HMAC does not match under the key's secret.
    #[error("Invalid signature: expected the hex HMAC-SHA256, under the app secret, of {0:?}")]
    Signature(String),
}

/// Checks a request's authentication against `keys` (the app's key/secret pairs) at `now` (unix
/// seconds). `query` is the raw query string; on success the decoded parameters come back.
pub fn verify(
    keys: &[(String, SecretString)],
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    now: u64,
) -> Result<Vec<(String, String)>, AuthError> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (index, (key, _)) in params.iter().enumerate() {
        let lower = key.to_ascii_lowercase();
        if params[..index]
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(&lower))
        {
            return Err(AuthError::Duplicate(lower.chars().take(64).collect()));
        }
    }
    let get = |name: &'static str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(AuthError::Missing(name))
    };
    let key = get("auth_key")?;
    let secret = keys
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s)
        .ok_or(AuthError::UnknownKey)?;
    if get("auth_version")? != "1.0" {
        return Err(AuthError::Version);
    }
    let given: u64 = get("auth_timestamp")?
        .parse()
        .map_err(|_| AuthError::BadTimestamp)?;
    if given.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(AuthError::Expired { given, now });
    }
    let md5 = hex::encode(Md5::digest(body));
    match params.iter().find(|(k, _)| k == "body_md5") {
        Some((_, given)) if !given.eq_ignore_ascii_case(&md5) => return Err(AuthError::BodyMd5),
        None if !body.is_empty() => return Err(AuthError::Missing("body_md5")),
        _ => {}
    }
    let signature = get("auth_signature")?;
    let message = string_to_sign(method, path, &params);
    let expected = sign(secret.expose_secret(), &message);
    if !bool::from(
        signature
            .to_ascii_lowercase()
            .as_bytes()
            .ct_eq(expected.as_bytes()),
    ) {
        return Err(AuthError::Signature(message));
    }
    Ok(params)
}

/// The request's own parameters: every one but the authentication.
pub fn own_params(params: Vec<(String, String)>) -> Vec<(String, String)> {
    params
        .into_iter()
        .filter(|(k, _)| !AUTH_PARAMS.contains(&k.to_ascii_lowercase().as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::signing::signed_query;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const BODY: &[u8] = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const NOW: u64 = 1_353_088_179;

    fn keys() -> Vec<(String, SecretString)> {
        vec![
            ("old".to_owned(), SecretString::from("old-secret")),
            (KEY.to_owned(), SecretString::from(SECRET)),
        ]
    }

    fn query(params: &[(String, String)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
    }

    #[test]
    fn accepts_pushers_worked_example_with_any_of_the_apps_keys() {
        let q = query(&signed_query(
            KEY,
            SECRET,
            "POST",
            "/apps/3/events",
            BODY,
            NOW,
        ));
        assert!(q.contains("da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"));
        let params = verify(&keys(), "POST", "/apps/3/events", &q, BODY, NOW + 600).expect("valid");
        assert!(own_params(params).is_empty());
        let q = query(&signed_query(
            "old",
            "old-secret",
            "GET",
            "/apps/3/channels",
            b"",
            NOW,
        ));
        assert!(verify(&keys(), "GET", "/apps/3/channels", &q, b"", NOW).is_ok());
    }

    #[test]
    fn own_parameters_are_signed_and_kept() {
        let params = crate::pusher::signing::sign_with(
            vec![
                ("filter_by_prefix".into(), "presence-".into()),
                ("info".into(), "user_count".into()),
            ],
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            b"",
            NOW,
        );
        let got = verify(
            &keys(),
            "GET",
            "/apps/3/channels",
            &query(&params),
            b"",
            NOW,
        )
        .expect("valid");
        assert_eq!(
            own_params(got),
            [
                ("filter_by_prefix".to_owned(), "presence-".to_owned()),
                ("info".to_owned(), "user_count".to_owned())
            ]
        );
    }

    #[test]
    fn each_failed_check_is_named_and_never_the_expected_signature() {
        let good = signed_query(KEY, SECRET, "POST", "/apps/3/events", BODY, NOW);
        let with = |name: &str, value: &str| {
            let mut params = good.clone();
            params
                .iter_mut()
                .filter(|(k, _)| k == name)
                .for_each(|(_, v)| *v = value.to_owned());
            query(&params)
        };
        let check = |q: String, body: &[u8], now: u64| {
            verify(&keys(), "POST", "/apps/3/events", &q, body, now)
        };
        assert_eq!(
            check(with("auth_key", "nope"), BODY, NOW),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            check(with("auth_version", "2.0"), BODY, NOW),
            Err(AuthError::Version)
        );
        assert!(matches!(
            check(query(&good), BODY, NOW + 601),
            Err(AuthError::Expired { .. })
        ));
        assert_eq!(check(query(&good), b"{}", NOW), Err(AuthError::BodyMd5));
        let err = check(with("auth_signature", "00"), BODY, NOW).expect_err("refused");
        assert!(matches!(err, AuthError::Signature(_)));
        assert!(!err.to_string().contains("da454824c97ba181a32c"), "{err}");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
        // Signed under the other key's secret.
        let wrong = signed_query(KEY, "old-secret", "POST", "/apps/3/events", BODY, NOW);
        assert!(matches!(
            check(query(&wrong), BODY, NOW),
            Err(AuthError::Signature(_))
        ));
        let mut twice = good.clone();
        twice.push(("auth_key".into(), KEY.into()));
        assert!(matches!(
            check(query(&twice), BODY, NOW),
            Err(AuthError::Duplicate(_))
        ));
        assert_eq!(
            check("auth_key=x".into(), BODY, NOW),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            check(String::new(), BODY, NOW),
            Err(AuthError::Missing("auth_key"))
        );
    }

    #[test]
    fn an_empty_body_may_carry_the_md5_of_nothing() {
        let mut params = vec![("body_md5".to_owned(), hex::encode(Md5::digest(b"")))];
        params = crate::pusher::signing::sign_with(
            params,
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            b"",
            NOW,
        );
        assert!(
            verify(
                &keys(),
                "GET",
                "/apps/3/channels",
                &query(&params),
                b"",
                NOW
            )
            .is_ok()
        );
    }
}
