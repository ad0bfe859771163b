//! One Pusher app's configuration, checked: from the single-app flags (`--pusher-app-id` and
//! friends) or from an apps file (`--apps-file`, TOML, one `[[app]]` table per app), both
//! through [`RawApp::check`], so the two ways cannot disagree on what is valid.
//!
//! It uses only the URL checks and the store's key naming, never the Pusher client or the
//! registry of served apps ([`crate::apps`]): the configuration, the Pusher client and the
//! registry all read [`AppConfig`] without importing one another.

use std::collections::HashSet;
use std::path::Path;

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;

use crate::http_url::HttpUrlError;

/// The API base URL of a Pusher cluster such as `mt1` or `eu`.
pub fn cluster_url(cluster: &str) -> Result<Url, url::ParseError> {
    Url::parse(&format!("https://api-{cluster}.pusher.com"))
}

/// One Pusher app, checked.
#[derive(Clone)]
pub struct AppConfig {
    /// The Pusher app id.
    pub id: String,
    /// The key that signs API requests; webhooks signed with it are accepted.
    pub key: String,
    /// Its secret; never logged.
    pub secret: SecretString,
    /// More key/secret pairs accepted on webhooks (key rotation).
    pub extra_keys: Vec<(String, SecretString)>,
    /// Pusher API base URL.
    pub api_url: Url,
    /// The Redis key of this app's set.
    pub redis_key: String,
}

impl AppConfig {
    /// Every key/secret pair that may sign for this app: its own first, then the rotation's.
    pub fn key_pairs(&self) -> impl Iterator<Item = (&String, &SecretString)> {
        std::iter::once((&self.key, &self.secret))
            .chain(self.extra_keys.iter().map(|(key, secret)| (key, secret)))
    }
}

/// A problem with the apps file or the app flags; names the place, never a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AppsError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    #[serde(default)]
    app: Vec<RawApp>,
}

/// One app as given, before any check: an `[[app]]` table of the apps file, or the single-app
/// flags. Both go through [`RawApp::check`], so the two ways of configuring an app cannot
/// disagree on what is valid.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) secret: String,
    #[serde(default)]
    pub(crate) extra_keys: Vec<String>,
    pub(crate) cluster: Option<String>,
    pub(crate) api_url: Option<String>,
    pub(crate) redis_key: Option<String>,
}

/// A field of an app, so each way of configuring one can name it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppField {
    Id,
    Key,
    Secret,
    ExtraKeys,
    Cluster,
    ApiUrl,
    RedisKey,
}

impl AppField {
    /// The field's name in an apps file.
    pub(crate) fn file_key(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Key => "key",
            Self::Secret => "secret",
            Self::ExtraKeys => "extra_keys",
            Self::Cluster => "cluster",
            Self::ApiUrl => "api_url",
            Self::RedisKey => "redis_key",
        }
    }

    /// The flag and environment variable that set it for a single app.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Self::Id => "--pusher-app-id / PUSHER_APP_ID",
            Self::Key => "--pusher-key / PUSHER_KEY",
            Self::Secret => "--pusher-secret / PUSHER_SECRET",
            Self::ExtraKeys => "--pusher-extra-keys / PUSHER_EXTRA_KEYS",
            Self::Cluster => "--pusher-cluster / PUSHER_CLUSTER",
            Self::ApiUrl => "--pusher-api-url / PUSHER_API_URL",
            Self::RedisKey => "--redis-key / OCCUPANCY_REDIS_KEY",
        }
    }
}

/// What is wrong with one field of an app; never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: AppField,
    pub(crate) reason: String,
}

fn field(field: AppField) -> impl Fn(String) -> FieldError {
    move |reason| FieldError { field, reason }
}

impl RawApp {
    /// The checked app. `several`: whether other apps are served beside it, which changes the
    /// default set key (`pusher:<id>:channels` rather than `pusher:channels`).
    pub(crate) fn check(self, several: bool) -> Result<AppConfig, FieldError> {
        let id = self.id.trim().to_owned();
        check_app_id(&id).map_err(field(AppField::Id))?;
        let key = self.key.trim().to_owned();
        check_key(&key).map_err(field(AppField::Key))?;
        if self.secret.is_empty() {
            return Err(field(AppField::Secret)("must not be empty".into()));
        }
        let extra_keys = parse_key_pairs(self.extra_keys.iter().map(String::as_str))
            .map_err(field(AppField::ExtraKeys))?;
        if self.cluster.is_some() && self.api_url.is_some() {
            return Err(field(AppField::ApiUrl)(
                "give cluster or api_url, not both".into(),
            ));
        }
        let api_url = api_url(
            self.api_url.as_deref(),
            self.cluster.as_deref().unwrap_or("mt1"),
        )
        .map_err(field(if self.api_url.is_some() {
            AppField::ApiUrl
        } else {
            AppField::Cluster
        }))?;
        let redis_key = match self.redis_key {
            Some(k) if k.trim().is_empty() => {
                return Err(field(AppField::RedisKey)("must not be empty".into()));
            }
            Some(k) => k,
            None if several => format!("pusher:{id}:channels"),
            None => "pusher:channels".to_owned(),
        };
        let app = AppConfig {
            id,
            key,
            secret: SecretString::from(self.secret),
            extra_keys,
            api_url,
            redis_key,
        };
        // An app's own keys must differ too (its key listed again among its extra keys).
        check_distinct(std::slice::from_ref(&app))
            .map_err(|e| field(AppField::ExtraKeys)(e.to_string()))?;
        Ok(app)
    }
}

/// Checks an app id: what Pusher issues, letters, digits, `-` and `_`.
pub fn check_app_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Err("must be a non-empty Pusher app id (letters, digits, - or _)".into())
    } else {
        Ok(())
    }
}

/// Checks an app key: non-empty, without the separators of `KEY:SECRET,...` lists.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains([':', ',']) || key.chars().any(char::is_whitespace) {
        Err("must be a non-empty Pusher app key without ':', ',' or spaces".into())
    } else {
        Ok(())
    }
}

/// The API base URL from an explicit URL or a cluster name.
pub fn api_url(explicit: Option<&str>, cluster: &str) -> Result<Url, String> {
    match explicit {
        Some(raw) => crate::http_url::parse_http_url(raw).map_err(|err| match err {
            HttpUrlError::Credentials => format!("{err}: the app key and secret sign requests"),
            other => other.to_string(),
        }),
        None => {
            let cluster = cluster.trim();
            if cluster.is_empty()
                || !cluster
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err("must be a cluster name such as mt1, eu or us2".into());
            }
            cluster_url(cluster).map_err(|e| e.to_string())
        }
    }
}

/// `KEY:SECRET` entries. Errors give the entry's position, never its text.
pub fn parse_key_pairs<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, SecretString)>, String> {
    entries
        .into_iter()
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| match entry.split_once(':') {
            Some((key, secret)) if check_key(key.trim()).is_ok() && !secret.is_empty() => {
                Ok((key.trim().to_owned(), SecretString::from(secret.to_owned())))
            }
            _ => Err(format!("entry {} is not KEY:SECRET", index + 1)),
        })
        .collect()
}

/// Reads and checks an apps file. With one app its set defaults to `pusher:channels`; with
/// several, each defaults to `pusher:<id>:channels`.
pub fn load_apps_file(path: &Path) -> Result<Vec<AppConfig>, AppsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AppsError(format!("cannot read {}: {e}", path.display())))?;
    // toml's own Display quotes the offending line, which may hold a secret: keep only the
    // message and the line number.
    let file: AppsFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        AppsError(format!(
            "{} is not a valid apps file{}: {}",
            path.display(),
            line.map(|l| format!(" (line {l})")).unwrap_or_default(),
            e.message()
        ))
    })?;
    if file.app.is_empty() {
        return Err(AppsError(format!("{} defines no [[app]]", path.display())));
    }
    let several = file.app.len() > 1;
    let apps = file
        .app
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            raw.check(several).map_err(|e| {
                AppsError(format!(
                    "app {} ({}): {}",
                    index + 1,
                    e.field.file_key(),
                    e.reason
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_distinct(&apps)?;
    Ok(apps)
}

/// Two apps may not share an id, a Redis key or a webhook key: a webhook must find one app, and
/// one set must belong to one app.
pub fn check_distinct(apps: &[AppConfig]) -> Result<(), AppsError> {
    let mut ids = HashSet::new();
    let mut redis_keys = HashSet::new();
    let mut webhook_keys = HashSet::new();
    let mut derived = std::collections::HashMap::new();
    for app in apps {
        if !ids.insert(app.id.as_str()) {
            return Err(AppsError(format!("app id {} is configured twice", app.id)));
        }
        if !redis_keys.insert(app.redis_key.as_str()) {
            return Err(AppsError(format!(
                "app {}: redis_key {:?} is used by another app",
                app.id, app.redis_key
            )));
        }
        check_derived_keys(app, &mut derived)?;
        for (key, _) in app.key_pairs() {
            if !webhook_keys.insert(key.as_str()) {
                return Err(AppsError(format!(
                    "app {}: key {key} is used by another app (or twice)",
                    app.id
                )));
            }
        }
    }
    Ok(())
}

/// Refuses an app whose Redis keys (its set and the bookkeeping keys derived from it) meet
/// another app's: `K` and `{K}` are different set keys but share their times, sequence, lock and
/// feed keys, so the two apps would corrupt each other. `seen` maps each key taken to its app.
fn check_derived_keys<'a>(
    app: &'a AppConfig,
    seen: &mut std::collections::HashMap<String, &'a str>,
) -> Result<(), AppsError> {
    let keys = crate::store::StoreKeys::for_set(&app.redis_key);
    let mut mine: Vec<&str> = std::iter::once(keys.set.as_str())
        .chain(keys.derived())
        .collect();
    mine.dedup();
    for key in &mine {
        if let Some(other) = seen.get(*key) {
            return Err(AppsError(format!(
                "app {}: redis_key {:?} shares the Redis key {key:?} with app {other} (their \
                 bookkeeping would mix); give one of them another redis_key",
                app.id, app.redis_key
            )));
        }
    }
    for key in mine {
        seen.insert(key.to_owned(), app.id.as_str());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Vec<AppConfig>, AppsError> {
        let dir = std::env::temp_dir().join(format!(
            "occupancy-apps-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("apps.toml");
        std::fs::write(&path, text).expect("write");
        let result = load_apps_file(&path);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn one_app_keeps_the_classic_key_and_several_get_their_own() {
        let one = file("[[app]]\nid = \"1\"\nkey = \"k1\"\nsecret = \"s1\"\n").expect("valid");
        assert_eq!(one[0].redis_key, "pusher:channels");
        assert_eq!(one[0].api_url.as_str(), "https://api-mt1.pusher.com/");
        let two = file(
            "[[app]]\nid = \"1\"\nkey = \"k1\"\nsecret = \"s1\"\ncluster = \"eu\"\n\
             [[app]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\nextra_keys = [\"old:x\"]\napi_url = \"http://127.0.0.1:1\"\n",
        )
        .expect("valid");
        assert_eq!(two[0].redis_key, "pusher:1:channels");
        assert_eq!(two[1].redis_key, "pusher:2:channels");
        assert_eq!(two[0].api_url.as_str(), "https://api-eu.pusher.com/");
        assert_eq!(two[1].extra_keys.len(), 1);
    }

    #[test]
    fn shared_keys_and_bad_fields_are_refused_without_echoing_secrets() {
        for (text, expected) in [
            (
                "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"topsecret1\"\n[[app]]\nid = \"2\"\nkey = \"k\"\nsecret = \"topsecret2\"\n",
                "key k is used",
            ),
            (
                "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"topsecret1\"\nredis_key = \"x\"\n[[app]]\nid = \"2\"\nkey = \"j\"\nsecret = \"topsecret2\"\nredis_key = \"x\"\n",
                "redis_key",
            ),
            (
                "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"topsecret1\"\nextra_keys = [\"topsecret9\"]\n",
                "app 1 (extra_keys): entry 1",
            ),
            (
                "[[app]]\nid = \"a b\"\nkey = \"k\"\nsecret = \"topsecret1\"\n",
                "app 1 (id)",
            ),
            (
                "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"topsecret1\"\napi_url = \"https://u:topsecret3@h\"\n",
                "credentials",
            ),
            (
                "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = topsecret1\n",
                "line 4",
            ),
            ("", "defines no [[app]]"),
            (
                "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"topsecret1\"\nredis_key = \"K\"\n[[app]]\nid = \"2\"\nkey = \"j\"\nsecret = \"topsecret2\"\nredis_key = \"{K}\"\n",
                "app 2: redis_key \"{K}\" shares the Redis key \"{K}:times\" with app 1",
            ),
            (
                "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"topsecret1\"\nredis_key = \"K\"\n[[app]]\nid = \"2\"\nkey = \"j\"\nsecret = \"topsecret2\"\nredis_key = \"{K}:seq\"\n",
                "shares the Redis key \"{K}:seq\" with app 1",
            ),
        ] {
            let err = file(text).err().expect("refused").to_string();
            assert!(err.contains(expected), "{expected}: {err}");
            assert!(!err.contains("topsecret"), "secret echoed: {err}");
        }
    }
}
