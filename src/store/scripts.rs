//! The Lua scripts every change and check runs as, one atomic step each (see `lua/`): built
//! once, sent by hash (`EVALSHA`, loading the script on a `NOSCRIPT`), and shared by the store
//! and the feed.

use std::sync::LazyLock;

use redis::Script;

/// Applies webhook events (or nothing: the health ping), publishing what changed.
pub(super) static APPLY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/apply.lua")));
/// Reads a set with its change number and epoch (a reload), or publishes a heartbeat.
pub(super) static CHECK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/check.lua")));
/// Takes an app's reconcile lock, unless another replica holds it in the current epoch.
pub(super) static LOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/lock.lua")));
/// Records that the set was repaired from Pusher's listing, and tells every replica.
pub(super) static REPAIRED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/repaired.lua")));
/// Answers reads while the feed is down, saying whether the data was lost since the copy.
pub(super) static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/read.lua")));
/// Applies one chunk of a reconciliation, guarded by the listing's request time.
pub(super) static RECONCILE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reconcile.lua")));
