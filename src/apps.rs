//! The Pusher apps one deployment serves, and the registry that routes requests to them.
//!
//! Each app is built from its [`crate::app_config::AppConfig`] at start-up. Webhooks find their
//! app by `X-Pusher-Key`; gRPC requests by `app_id`, which may be empty when there is only one
//! app; the Pusher API listener by the `/apps/{id}/` of its path.

use std::sync::Arc;

use crate::pusher::Publisher;
use crate::store::Store;

/// One served app: its store and its Pusher client.
pub struct App {
    /// The Pusher app id.
    pub id: String,
    /// The app's set of occupied channels.
    pub store: Store,
    /// Publishes to this app and lists its channels.
    pub publisher: Publisher,
}

impl App {
    /// An app served from `store`, publishing through `publisher`.
    pub fn new(id: String, store: Store, publisher: Publisher) -> Self {
        Self {
            id,
            store,
            publisher,
        }
    }
}

/// Why a request's `app_id` names no app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppLookupError {
    /// Empty while several apps are served.
    #[error("app_id: required, since this gate serves several apps ({0})")]
    Ambiguous(String),
    /// No such app here.
    #[error("app_id: no app {0:?} is configured here")]
    Unknown(String),
}

/// Every app this deployment serves.
pub struct Apps {
    apps: Vec<Arc<App>>,
}

impl Apps {
    /// The apps, in configuration order; at least one.
    pub fn new(apps: Vec<App>) -> Self {
        Self {
            apps: apps.into_iter().map(Arc::new).collect(),
        }
    }

    /// The app a request names; empty names the only one.
    pub fn resolve(&self, app_id: &str) -> Result<&Arc<App>, AppLookupError> {
        if app_id.is_empty() {
            return match self.apps.as_slice() {
                [only] => Ok(only),
                apps => Err(AppLookupError::Ambiguous(
                    apps.iter()
                        .map(|a| a.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            };
        }
        self.apps
            .iter()
            .find(|a| a.id == app_id)
            .ok_or_else(|| AppLookupError::Unknown(app_id.chars().take(64).collect()))
    }

    /// The app at `index` (as webhook keys name them).
    pub fn get(&self, index: usize) -> Option<&Arc<App>> {
        self.apps.get(index)
    }

    /// Every app.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }
}
