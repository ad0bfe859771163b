//! The one check for an http(s) URL given as an option (`--pusher-api-url`, an apps file's
//! `api_url`, the webhook tool's `--url`): a host, no credentials, since requests to it are
//! signed with a secret and a URL's userinfo ends up in logs and proxies.

use url::Url;

/// Why a URL option cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpUrlError {
    /// It does not parse.
    #[error("not a URL ({0})")]
    NotAUrl(url::ParseError),
    /// Another scheme, or no host.
    #[error("must be an http:// or https:// URL with a host")]
    NotHttp,
    /// It carries a user name or password.
    #[error("must not carry credentials")]
    Credentials,
}

/// `raw` (trimmed) as an http(s) URL with a host and no credentials.
pub fn parse_http_url(raw: &str) -> Result<Url, HttpUrlError> {
    let url = Url::parse(raw.trim()).map_err(HttpUrlError::NotAUrl)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(HttpUrlError::NotHttp);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HttpUrlError::Credentials);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_http_with_a_host_and_no_credentials() {
        assert!(parse_http_url(" https://api-eu.pusher.com ").is_ok());
        assert_eq!(parse_http_url("ftp://x"), Err(HttpUrlError::NotHttp));
        assert_eq!(
            parse_http_url("https://u:p@x"),
            Err(HttpUrlError::Credentials)
        );
        assert!(matches!(
            parse_http_url("nope"),
            Err(HttpUrlError::NotAUrl(_))
        ));
    }
}
