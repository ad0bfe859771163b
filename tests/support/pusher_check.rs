//! Pusher's checks on a signed HTTP API request, made the same way by every stand-in (the
//! single-app `PusherStub`, the multi-app one and the SDK suites' one): `auth_key`,
//! `auth_version` 1.0, `auth_timestamp` within 600 s, `body_md5` and `auth_signature`, with
//! Pusher's own wording for each refusal.

use std::time::{SystemTime, UNIX_EPOCH};

use md5::Digest;

/// One app's credentials, as the stand-in knows them.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub app_id: &'a str,
    pub key: &'a str,
    pub secret: &'a str,
}

/// What a request without a body may carry as `body_md5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBodyMd5 {
    /// Nothing: the gate's own signer never sends one, so the stand-ins that check the gate's
    /// requests refuse it.
    Refused,
    /// The MD5 of nothing, as Pusher accepts from the Python SDK on a GET.
    Accepted,
}

/// The decoded query parameters of `query` (without the leading `?`), in order.
pub fn params_of(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Pusher's verdict on `method path?params` with `body`, for the app `app`: `Err` carries the
/// reason Pusher gives with its 401.
pub fn verify(
    app: Credentials<'_>,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    empty_md5: EmptyBodyMd5,
) -> Result<(), String> {
    let app_id = path.split('/').nth(2).unwrap_or("");
    if app_id != app.app_id {
        return Err(format!("Unknown app_id {app_id}"));
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("Missing {name}"))
    };
    if get("auth_key")? != app.key {
        return Err("Unknown auth_key".into());
    }
    if get("auth_version")? != "1.0" {
        return Err("auth_version must be 1.0".into());
    }
    let timestamp: u64 = get("auth_timestamp")?
        .parse()
        .map_err(|_| "Invalid auth_timestamp")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(timestamp) > 600 {
        return Err(format!(
            "Timestamp expired: Given timestamp ({timestamp}) not within 600s of server time ({now})"
        ));
    }
    let md5 = hex::encode(md5::Md5::digest(body));
    match get("body_md5") {
        Ok(_) if body.is_empty() && empty_md5 == EmptyBodyMd5::Refused => {
            return Err("body_md5 given for an empty body".into());
        }
        Ok(given) if given != md5 => return Err("body_md5 does not match the body".into()),
        Err(missing) if !body.is_empty() => return Err(missing),
        _ => {}
    }
    let expected = occupancy::wire::sign_api_request(
        app.secret,
        &occupancy::wire::string_to_sign(method, path, params),
    );
    if get("auth_signature")? != expected {
        return Err("Invalid signature: you should have sent HmacSHA256Hex(...)".into());
    }
    Ok(())
}
