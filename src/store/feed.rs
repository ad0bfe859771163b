//! Each replica's local copy of every app's set, kept current by a Redis pub/sub feed.
//!
//! The set changes only when a webhook arrives, yet it is read thousands of times a second, so
//! reads are answered from memory. Every change is made by a Lua script that also `PUBLISH`es
//! what it applied (`#seq`, then `+name` / `-name` lines); every replica subscribes and applies
//! the same lines to its copy, in Redis's order. After any break in the feed the whole set is
//! read again (subscribe first, then the set and its sequence number in one script, so nothing
//! published in between is lost), watchers are told to resynchronise, and a reconciliation with
//! Pusher is asked for at once: while the feed was down Redis itself may have lost changes.
//!
//! The feed is followed on the node the store's connection goes to, which after a sentinel
//! failover is the new primary. In a Redis Cluster any node will do, since a classic `PUBLISH`
//! (scripts included) is broadcast to every node: the configured nodes are used in turn, so a
//! dead node is left behind on the next attempt.
//!
//! **Integrity.** Changes are numbered per app. A number that skips (a message lost) or goes
//! back (Redis restarted or was flushed) makes the copy reload. Every [`HEARTBEAT`] each replica
//! runs a check script per app (on the app's own slot in a cluster) that publishes a heartbeat
//! tagged with the replica's id, the app's current number and its data epoch; a replica counts
//! as live only on hearing its *own* heartbeats, and one whose number differs from its copy's
//! reloads. The copy answers only while its own heartbeat was heard within [`STALENESS_BOUND`];
//! past that (a subscriber stuck behind a dead socket, a killed pub/sub client) reads go to Redis
//! until the feed is re-established, and watchers are sent a reset.
//!
//! **Data loss.** Redis keeps a marker per app (`{set}:epoch`, a random id). A missing marker
//! (restart without persistence, `FLUSHALL`, an empty replica promoted) or a new server run id
//! with the old marker (a failover to a replica that may lack recent writes) is data loss: the
//! replica counts it, keeps answering from the copy it had (joined with the reloaded set, and
//! following every later change) instead of the emptied set, and asks for a reconciliation at
//! once. One replica takes the reconcile lock and re-seeds Redis from Pusher's listing; it then
//! publishes `r`, and every replica that kept its old copy reloads the repaired set.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::change::ChangeBatch;
use super::connection::Connection;
pub use super::copy::STALENESS_BOUND;
use super::copy::{AppCache, Hold, Known};
use super::error::StoreError;
use super::keys::{StoreKeys, random_id};
use super::scripts;

/// How often each replica publishes a heartbeat on every app's feed.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// What the stores of one deployment ask of its feed and of reconciliation, shared by them all.
#[derive(Debug, Default)]
pub(super) struct Signals {
    /// Notified when a reconciliation is wanted at once (data lost, or the feed broke).
    repair: Arc<Notify>,
    /// Notified when a read finds Redis answering while the feed is down.
    feed_wake: Notify,
}

impl Signals {
    /// Asks for a reconciliation at once (see [`super::Store::repair_wanted`]).
    pub(super) fn want_repair(&self) {
        self.repair.notify_one();
    }

    /// What reconciliation waits on for [`Self::want_repair`].
    pub(super) fn repair_requests(&self) -> Arc<Notify> {
        self.repair.clone()
    }

    /// Tells a feed waiting out its backoff that Redis answers again.
    pub(super) fn wake_feed(&self) {
        self.feed_wake.notify_one();
    }
}

/// One app the feed follows: its keys and the copy the feed keeps.
#[derive(Debug)]
struct FollowedApp {
    keys: StoreKeys,
    cache: Arc<AppCache>,
}

/// This replica's view of one Redis deployment: every app's local copy, and the feed that keeps
/// them current over the deployment's [`Connection`]. Built app by app before it runs; once it
/// runs, the set of apps is fixed.
#[derive(Debug)]
pub(super) struct Replica {
    connection: Connection,
    apps: Vec<FollowedApp>,
    signals: Arc<Signals>,
    /// This replica's name on the feed: it counts only its own heartbeats as signs of life.
    id: String,
}

impl Replica {
    /// A replica following no app yet.
    pub(super) fn new(connection: Connection) -> Self {
        Self {
            connection,
            apps: Vec::new(),
            signals: Arc::default(),
            id: random_id(),
        }
    }

    /// Adds an app to follow, and gives its copy.
    pub(super) fn follow(&mut self, keys: StoreKeys) -> Arc<AppCache> {
        let cache = Arc::new(AppCache::default());
        self.apps.push(FollowedApp {
            keys,
            cache: cache.clone(),
        });
        cache
    }

    /// The requests every app's store may make of the feed and of reconciliation.
    pub(super) fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }

    /// The check script (see `lua/check.lua`) for one app, as this replica knows its data.
    fn check_invocation(
        &self,
        keys: &StoreKeys,
        known: &Known,
        mode: &str,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = scripts::CHECK.prepare_invoke();
        invocation
            .key(&keys.set)
            .key(&keys.seq)
            .key(&keys.epoch)
            .key(&keys.repaired)
            .arg(mode)
            .arg(known.epoch.as_deref().unwrap_or(""))
            .arg(&known.run_id)
            .arg(random_id())
            .arg(&keys.feed)
            .arg(&self.id);
        invocation
    }

    /// Reads one app's set with its change number and data epoch, in one atomic step.
    async fn check(&self, keys: &StoreKeys, known: &Known) -> Result<Snapshot, StoreError> {
        let invocation = self.check_invocation(keys, known, "reload");
        let (epoch, run_id, seq, repaired, members): (String, String, u64, u64, Vec<String>) = self
            .connection
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(Snapshot {
            epoch,
            run_id,
            seq,
            repaired: repaired == 1,
            members,
        })
    }

    /// Checks one app's data and publishes this replica's heartbeat on its feed; a failure only
    /// means the heartbeat will not be heard, and the copy will stop answering.
    async fn heartbeat(&self, keys: &StoreKeys, known: &Known) {
        let invocation = self.check_invocation(keys, known, "beat");
        let result: Result<(String, String, u64, u64), StoreError> = self
            .connection
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await;
        if let Err(err) = result {
            tracing::debug!(error = ?err, set = %keys.set, "cannot publish the feed heartbeat");
        }
    }

    /// Follows the feed until `shutdown`, re-establishing it with backoff after any break.
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let replica = &self;
        let mut backoff = Duration::from_millis(100);
        let mut was_up = false;
        let mut ever_up = false;
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = follow(replica, &mut was_up, &mut ever_up, &mut backoff) => result,
            };
            replica.connection.metrics().feed_up.set(0);
            // Reads go to Redis until the feed is back (see `RedisStore::occupied` for how an
            // emptied Redis is not believed meanwhile), and watchers start over.
            for app in &replica.apps {
                app.cache.lost();
            }
            if was_up {
                let m = replica.connection.metrics();
                m.feed_breaks.inc();
                m.feed_node.clear();
                for app in &replica.apps {
                    app.cache.reset_watchers();
                }
                tracing::warn!(error = ?result, "the change feed broke: re-establishing it");
                was_up = false;
            } else {
                tracing::debug!(error = ?result, "the change feed is not established yet");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
                // A read found Redis answering again: no need to wait out the backoff.
                _ = replica.signals.feed_wake.notified() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// One app's set and change number as one check script read them.
#[derive(Debug)]
struct Snapshot {
    epoch: String,
    run_id: String,
    seq: u64,
    /// Whether the set was repaired from Pusher's listing since the data's epoch began.
    repaired: bool,
    members: Vec<String>,
}

/// Why the feed had to be re-established.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("cannot subscribe")]
    Subscribe(#[source] redis::RedisError),
    #[error("subscribing timed out")]
    SubscribeTimeout,
    #[error("cannot reach a node to follow the feed on")]
    Connect(#[source] StoreError),
    #[error("cannot reload the set")]
    Reload(#[source] StoreError),
    #[error("the subscription closed")]
    Closed,
    #[error("own heartbeat not heard for {0:?}")]
    Silent(Duration),
}

/// Why a copy was read again while its feed stayed up.
#[derive(Debug, Clone, Copy)]
enum Resync {
    /// A change number was skipped: a message was lost.
    Gap,
    /// A change number went back: Redis restarted or was flushed.
    Regression,
    /// The data's epoch changed: Redis lost data.
    Epoch,
    /// The set was repaired after a data loss.
    Repaired,
    /// The feed was re-established after a break.
    Reconnect,
}

impl Resync {
    fn label(self) -> &'static str {
        match self {
            Self::Gap => "gap",
            Self::Regression => "regression",
            Self::Epoch => "epoch",
            Self::Repaired => "repaired",
            Self::Reconnect => "reconnect",
        }
    }
}

/// One app's place in the feed while it is followed.
struct Follower {
    keys: StoreKeys,
    cache: Arc<AppCache>,
    /// The change number the copy reflects.
    at: u64,
    /// Whether this replica's own heartbeat was heard since the last reload: until then,
    /// numbers up to `at` are changes published before the reload, already in the copy.
    confirmed: bool,
}

impl Follower {
    /// Reads the set and its number again, noticing a data loss on the way.
    async fn reload(&mut self, replica: &Replica, reason: Option<Resync>) -> Result<(), FeedError> {
        let known = self.cache.known();
        let snapshot = replica
            .check(&self.keys, &known)
            .await
            .map_err(FeedError::Reload)?;
        let lost = known.epoch.as_ref().is_some_and(|e| *e != snapshot.epoch);
        let m = replica.connection.metrics();
        if let Some(reason) = reason {
            crate::metrics::count(&m.feed_resyncs, &[("reason", reason.label())], 1);
        }
        let hold = if lost {
            m.store_data_loss.inc();
            tracing::warn!(
                set = %self.keys.set,
                members = snapshot.members.len(),
                repaired = snapshot.repaired,
                "Redis lost this set's data (restarted empty, flushed or failed over): answering \
                 from the copy held before until the set is repaired from Pusher's listing"
            );
            replica.signals.want_repair();
            if snapshot.repaired {
                Hold::Drop
            } else {
                Hold::Start
            }
        } else if matches!(reason, Some(Resync::Repaired)) || snapshot.repaired {
            Hold::Drop
        } else {
            Hold::Keep
        };
        self.cache.learn(snapshot.epoch, snapshot.run_id);
        self.cache.replace(snapshot.members, snapshot.seq, hold);
        self.at = snapshot.seq;
        self.confirmed = false;
        Ok(())
    }

    /// Handles one message from this app's feed.
    async fn handle(
        &mut self,
        replica: &Replica,
        payload: &str,
        me: &str,
    ) -> Result<(), FeedError> {
        if let Some(beat) = payload.strip_prefix("h ") {
            let mut parts = beat.split(' ');
            let (Some(id), Some(seq), Some(epoch)) = (parts.next(), parts.next(), parts.next())
            else {
                return Ok(());
            };
            if id != me {
                // Another replica's heartbeat says nothing about this one's subscription.
                return Ok(());
            }
            self.cache.heard();
            let seq = seq.parse::<u64>().unwrap_or(0);
            let known = self.cache.known();
            if known.epoch.as_deref() != Some(epoch) {
                return self.reload(replica, Some(Resync::Epoch)).await;
            }
            if seq > self.at {
                return self.reload(replica, Some(Resync::Gap)).await;
            }
            if seq < self.at {
                return self.reload(replica, Some(Resync::Regression)).await;
            }
            self.confirmed = true;
            return Ok(());
        }
        if payload == "r" {
            if self.cache.holds_old_copy() {
                return self.reload(replica, Some(Resync::Repaired)).await;
            }
            return Ok(());
        }
        // A heartbeat from a replica of an older version.
        if payload == "h" {
            return Ok(());
        }
        let seq = payload
            .lines()
            .find_map(|line| line.strip_prefix('#'))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            if seq <= self.at {
                if self.confirmed {
                    return self.reload(replica, Some(Resync::Regression)).await;
                }
                // Published before the reload read the set: already in the copy.
                return Ok(());
            }
            if seq > self.at + 1 {
                return self.reload(replica, Some(Resync::Gap)).await;
            }
            self.at = seq;
        }
        let batch = ChangeBatch::from_states(payload.lines().filter_map(|line| {
            line.strip_prefix('+')
                .map(|name| (name, true))
                .or_else(|| line.strip_prefix('-').map(|name| (name, false)))
        }));
        self.cache.apply(batch, seq);
        Ok(())
    }
}

async fn follow(
    replica: &Replica,
    was_up: &mut bool,
    ever_up: &mut bool,
    backoff: &mut Duration,
) -> Result<(), FeedError> {
    let mut followers: Vec<Follower> = replica
        .apps
        .iter()
        .map(|app| Follower {
            keys: app.keys.clone(),
            cache: app.cache.clone(),
            at: 0,
            confirmed: false,
        })
        .collect();
    if followers.is_empty() {
        // No app registered: nothing to follow.
        std::future::pending::<()>().await;
        return Ok(());
    }
    // The current primary (a failover moves it), or the next node of a cluster.
    let (node, client) = replica
        .connection
        .feed_node()
        .await
        .map_err(FeedError::Connect)?;
    let pubsub =
        match tokio::time::timeout(replica.connection.timeout(), client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                replica.connection.note_failure(&err);
                return Err(FeedError::Subscribe(err));
            }
            Err(_) => {
                replica
                    .connection
                    .note_failure(&super::connect::timed_out());
                return Err(FeedError::SubscribeTimeout);
            }
        };
    let (mut sink, mut stream) = pubsub.split();
    let names: Vec<&str> = followers.iter().map(|f| f.keys.feed.as_str()).collect();
    tokio::time::timeout(replica.connection.timeout(), sink.subscribe(&names))
        .await
        .map_err(|_| FeedError::SubscribeTimeout)?
        .map_err(FeedError::Subscribe)?;
    // Subscribed first, then read: a change published in between arrives on the feed too, with
    // a number the reload already covers, and is skipped.
    let reason = ever_up.then_some(Resync::Reconnect);
    for follower in &mut followers {
        follower.reload(replica, reason).await?;
    }
    if *ever_up {
        // Changes may have been missed while the feed was down, in Redis too if it lost them.
        replica.signals.want_repair();
    }
    let m = replica.connection.metrics();
    m.feed_up.set(1);
    if !*was_up {
        m.feed_follows.inc();
        m.feed_node.clear();
        m.feed_node
            .get_or_create(&vec![("node", node.to_string())])
            .set(1);
        tracing::info!(
            apps = followers.len(),
            node = %node,
            "following the change feed: answering from memory"
        );
    }
    *was_up = true;
    *ever_up = true;
    *backoff = Duration::from_millis(100);

    let me = replica.id.clone();
    let mut ticker = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return Err(FeedError::Closed) };
                let Ok(payload) = message.get_payload::<String>() else { continue };
                let channel = message.get_channel_name();
                if let Some(follower) = followers.iter_mut().find(|f| f.keys.feed == channel) {
                    follower.handle(replica, &payload, &me).await?;
                }
            }
            _ = ticker.tick() => {
                for follower in &followers {
                    let silent = follower.cache.silent_for();
                    if silent > STALENESS_BOUND {
                        return Err(FeedError::Silent(silent));
                    }
                    follower.cache.expire_held();
                }
                for follower in &followers {
                    replica.heartbeat(&follower.keys, &follower.cache.known()).await;
                }
            }
        }
    }
}
