//! Which Redis deployment `--redis-url` names, and how to reach its current primary.
//!
//! Three kinds of deployment are supported, told apart by the URL's scheme:
//!
//! | URL | Deployment |
//! |-----|------------|
//! | `redis://[[user]:password@]host[:port][/db]` | one Redis (or a proxy in front of several) |
//! | `rediss://…` | the same over TLS |
//! | `redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]…]/MASTER_NAME[/db][?sentinel_password=…&sentinel_username=…]` | a primary watched by Redis Sentinel; the hosts are the *sentinels* (default port 26379) and the password is the *data node's* |
//! | `rediss+sentinel://…` | the same, with TLS to the sentinels and to the data nodes |
//! | `redis+cluster://[[user]:password@]host1[:port1][,host2[:port2]…][/]` | a Redis Cluster; the hosts are some of its nodes (default port 6379), used to discover the rest |
//! | `rediss+cluster://…` | the same over TLS |
//!
//! Passwords and other reserved characters must be percent-encoded, as in any URL. A private CA
//! for TLS (`--redis-ca`) applies to every TLS connection: the data nodes, the sentinels and the
//! cluster nodes.
//!
//! A [`Target`] turns the URL into connections: a [`redis::aio::ConnectionManager`] for one Redis
//! or for the primary a sentinel named (asking the sentinels again whenever the connection is
//! rebuilt, which is how a failover is followed), or a cluster connection that routes each
//! command to the node holding its key's slot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, TlsCertificates,
    TlsMode, Value,
};

/// Why a Redis URL cannot be used at all. The message never holds the URL or any part of it
/// that could be a secret: only which rule it broke.
#[derive(Debug, thiserror::Error)]
#[error("not a usable Redis URL ({reason})")]
pub struct BadRedisUrl {
    reason: String,
    /// The redis crate's own complaint, when it made one. Its messages are fixed texts that do
    /// not quote the URL.
    #[source]
    source: Option<RedisError>,
}

impl BadRedisUrl {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            source: None,
        }
    }

    fn from_redis(context: &str, err: RedisError) -> Self {
        Self {
            reason: format!("{context}: {}", err.category()),
            source: Some(err),
        }
    }
}

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// The default port of a Redis node.
const REDIS_PORT: u16 = 6379;

/// A parsed `--redis-url` with the CA it trusts, ready to connect. Holds credentials: never
/// logged (see [`Target::describe`]).
pub(super) enum Target {
    /// One Redis at a fixed address.
    Single(redis::Client),
    /// The primary that the sentinels currently name.
    Sentinel {
        /// Asks the sentinels; locked because a lookup uses its cached sentinel connections.
        client: tokio::sync::Mutex<SentinelClient>,
        /// The master name the sentinels know the deployment by.
        master: String,
        /// The sentinels' addresses, for the log.
        sentinels: Vec<String>,
        /// The database number on the primary.
        db: i64,
    },
    /// A Redis Cluster.
    Cluster {
        /// Discovers the slots and routes commands.
        client: ClusterClient,
        /// One client per configured node: any of them can carry the pub/sub feed, since a
        /// classic `PUBLISH` is broadcast to every node of the cluster.
        nodes: Vec<(String, redis::Client)>,
        /// Which node the feed uses next; advanced on each (re)subscription so a dead node is
        /// left behind.
        next_feed_node: AtomicUsize,
    },
}

/// A live connection of either kind. Cloning shares it (both kinds multiplex).
#[derive(Clone)]
pub(super) enum Link {
    /// To one Redis: a fixed one, or the primary a sentinel named.
    Node(ConnectionManager),
    /// To a Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The pieces of a URL whose authority may list several hosts, which `url` cannot parse.
struct MultiHost<'a> {
    userinfo: Option<&'a str>,
    hosts: Vec<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_multi_host(rest: &str) -> Result<MultiHost<'_>, BadRedisUrl> {
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(BadRedisUrl::new("an empty host in the host list"));
    }
    Ok(MultiHost {
        userinfo,
        hosts,
        path,
        query,
    })
}

/// One `host[:port]` of a host list, checked by the redis crate's own URL parser.
fn node_addr(host: &str, tls: bool, default_port: u16) -> Result<ConnectionAddr, BadRedisUrl> {
    let has_port = match host.rsplit_once(']') {
        // [v6]:port
        Some((_, after)) => after.starts_with(':'),
        None => host.contains(':'),
    };
    let host_port = if has_port {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    let scheme = if tls { "rediss" } else { "redis" };
    let info = format!("{scheme}://{host_port}/")
        .into_connection_info()
        .map_err(|e| BadRedisUrl::from_redis("a host in the host list", e))?;
    Ok(info.addr().clone())
}

/// The credentials of `user:password@`, percent-decoded by the redis crate's parser.
fn credentials(userinfo: Option<&str>) -> Result<(Option<String>, Option<String>), BadRedisUrl> {
    let Some(userinfo) = userinfo else {
        return Ok((None, None));
    };
    let info = format!("redis://{userinfo}@localhost/")
        .into_connection_info()
        .map_err(|e| BadRedisUrl::from_redis("the user or password", e))?;
    let settings = info.redis_settings();
    Ok((
        settings.username().map(str::to_owned),
        settings.password().map(str::to_owned),
    ))
}

fn addr_text(addr: &ConnectionAddr) -> String {
    addr.to_string()
}

fn certificates(ca: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

impl Target {
    /// Parses `url` (see the module documentation for the syntaxes), trusting `ca` (PEM) for TLS
    /// when given. Does no I/O.
    pub(super) fn parse(
        url: &str,
        ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, BadRedisUrl> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            BadRedisUrl::new(
                "no scheme; expected redis://, rediss://, redis+sentinel:// or redis+cluster://",
            )
        })?;
        match scheme.to_ascii_lowercase().as_str() {
            "redis+sentinel" => Self::sentinel(rest, false, ca),
            "rediss+sentinel" => Self::sentinel(rest, true, ca),
            "redis+cluster" => Self::cluster(rest, false, ca, timeout),
            "rediss+cluster" => Self::cluster(rest, true, ca, timeout),
            "redis" | "rediss" | "redis+unix" | "unix" => Self::single(url, ca),
            _ => Err(BadRedisUrl::new(
                "unknown scheme; expected redis://, rediss://, redis+sentinel://, \
                 rediss+sentinel://, redis+cluster:// or rediss+cluster://",
            )),
        }
    }

    fn single(url: &str, ca: Option<&[u8]>) -> Result<Self, BadRedisUrl> {
        let info = url
            .into_connection_info()
            .map_err(|e| BadRedisUrl::from_redis("cannot parse", e))?;
        let client = match ca {
            Some(ca) => {
                if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
                    return Err(BadRedisUrl::new(
                        "a CA (--redis-ca) is given but the URL does not use TLS (rediss://)",
                    ));
                }
                redis::Client::build_with_tls(info, certificates(ca))
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| BadRedisUrl::from_redis("cannot use", e))?;
        Ok(Self::Single(client))
    }

    fn sentinel(rest: &str, tls: bool, ca: Option<&[u8]>) -> Result<Self, BadRedisUrl> {
        let parts = split_multi_host(rest)?;
        let sentinels = parts
            .hosts
            .iter()
            .map(|h| node_addr(h, tls, SENTINEL_PORT))
            .collect::<Result<Vec<_>, _>>()?;
        let mut path = parts.path.trim_end_matches('/').split('/');
        let master = path.next().unwrap_or_default();
        if master.is_empty() {
            return Err(BadRedisUrl::new(
                "no master name; expected redis+sentinel://host:port,…/MASTER_NAME[/db]",
            ));
        }
        let db = match path.next() {
            Some(db) => Some(db.parse::<i64>().map_err(|_| {
                BadRedisUrl::new("the database after the master name is not a number")
            })?),
            None => None,
        };
        if path.next().is_some() {
            return Err(BadRedisUrl::new(
                "too many path segments; expected /MASTER_NAME[/db]",
            ));
        }
        let (username, password) = credentials(parts.userinfo)?;
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for (key, value) in url::form_urlencoded::parse(parts.query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "sentinel_password" => sentinel_password = Some(value.into_owned()),
                "sentinel_username" => sentinel_username = Some(value.into_owned()),
                _ => {
                    return Err(BadRedisUrl::new(
                        "unknown query parameter; only sentinel_password and sentinel_username \
                         are understood",
                    ));
                }
            }
        }
        if !tls && ca.is_some() {
            return Err(BadRedisUrl::new(
                "a CA (--redis-ca) is given but the URL does not use TLS (rediss+sentinel://)",
            ));
        }
        let names = sentinels.iter().map(addr_text).collect();
        let mut builder = SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)
            .map_err(|e| BadRedisUrl::from_redis("cannot use the sentinels", e))?;
        if let Some(db) = db {
            builder = builder.set_client_to_redis_db(db);
        }
        if let Some(username) = username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(username) = sentinel_username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(ca) = ca {
                builder = builder
                    .set_client_to_redis_certificates(certificates(ca))
                    .set_client_to_sentinel_certificates(certificates(ca));
            }
        }
        let client = builder
            .build()
            .map_err(|e| BadRedisUrl::from_redis("cannot use the sentinels", e))?;
        Ok(Self::Sentinel {
            client: tokio::sync::Mutex::new(client),
            master: master.to_owned(),
            sentinels: names,
            db: db.unwrap_or(0),
        })
    }

    fn cluster(
        rest: &str,
        tls: bool,
        ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, BadRedisUrl> {
        let parts = split_multi_host(rest)?;
        if !parts.path.trim_matches('/').is_empty() {
            return Err(BadRedisUrl::new(
                "a cluster URL has no database or path (a Redis Cluster has only database 0)",
            ));
        }
        if parts.query.is_some_and(|q| !q.is_empty()) {
            return Err(BadRedisUrl::new("a cluster URL takes no query parameters"));
        }
        if !tls && ca.is_some() {
            return Err(BadRedisUrl::new(
                "a CA (--redis-ca) is given but the URL does not use TLS (rediss+cluster://)",
            ));
        }
        let (username, password) = credentials(parts.userinfo)?;
        let mut infos = Vec::new();
        for host in &parts.hosts {
            let mut settings = redis::RedisConnectionInfo::default();
            if let Some(username) = &username {
                settings = settings.set_username(username);
            }
            if let Some(password) = &password {
                settings = settings.set_password(password);
            }
            let info = node_addr(host, tls, REDIS_PORT)?
                .into_connection_info()
                .map_err(|e| BadRedisUrl::from_redis("a host in the host list", e))?
                .set_redis_settings(settings);
            infos.push(info);
        }
        let nodes = infos
            .iter()
            .map(|info| {
                let client = match ca {
                    Some(ca) => redis::Client::build_with_tls(info.clone(), certificates(ca)),
                    None => redis::Client::open(info.clone()),
                };
                client
                    .map(|c| (addr_text(info.addr()), c))
                    .map_err(|e| BadRedisUrl::from_redis("a cluster node", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Quick answers and few retries, so an outage is reported promptly (the single
        // connection's policy); MOVED and ASK are still followed.
        let mut builder = ClusterClientBuilder::new(infos.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .min_retry_wait(20)
            .max_retry_wait(200);
        if tls {
            builder = builder.tls(TlsMode::Secure);
            if let Some(ca) = ca {
                builder = builder.certs(certificates(ca));
            }
        }
        let client = builder
            .build()
            .map_err(|e| BadRedisUrl::from_redis("cannot use the cluster nodes", e))?;
        Ok(Self::Cluster {
            client,
            nodes,
            next_feed_node: AtomicUsize::new(0),
        })
    }

    /// Where this points, safe to log: addresses and names, never credentials.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Single(client) => format!("redis at {}", client.get_connection_info().addr()),
            Self::Sentinel {
                master, sentinels, ..
            } => format!(
                "redis primary {master:?} found by the sentinels at {}",
                sentinels.join(",")
            ),
            Self::Cluster { nodes, .. } => format!(
                "redis cluster found through {}",
                nodes
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// The database number the data lives in (a cluster has only 0). Pub/sub ignores it, so
    /// the feed's channel names it.
    pub(super) fn db(&self) -> i64 {
        match self {
            Self::Single(client) => client.get_connection_info().redis_settings().db(),
            Self::Sentinel { db, .. } => *db,
            Self::Cluster { .. } => 0,
        }
    }

    /// Whether this is a Redis Cluster, whose scripts must keep to one slot.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// Whether a connection that fails to answer should be replaced, asking the sentinels or
    /// the cluster again: true except for a fixed single Redis, whose connection manager
    /// reconnects to the same address by itself.
    pub(super) fn rediscovers(&self) -> bool {
        !matches!(self, Self::Single(_))
    }

    /// Makes a connection to the current primary (or the cluster), and the client of the node
    /// that carries the pub/sub feed when that follows the connection. For one Redis this does
    /// no I/O (the manager connects on first use); for a sentinel it asks the sentinels, which
    /// is how a failover is followed; for a cluster it loads the slot map. `timeout` bounds
    /// each step.
    pub(super) async fn connect(
        &self,
        config: &ConnectionManagerConfig,
        timeout: Duration,
    ) -> Result<(Link, Option<redis::Client>), RedisError> {
        match self {
            Self::Single(client) => {
                let manager =
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
                Ok((Link::Node(manager), Some(client.clone())))
            }
            Self::Sentinel { client, master, .. } => {
                // A lookup asks each sentinel, then checks with ROLE that the node it names is
                // a primary: allow a few round trips.
                let lookup = async { client.lock().await.async_get_client().await };
                let primary = tokio::time::timeout(timeout * 3, lookup)
                    .await
                    .map_err(|_| timed_out())??;
                tracing::info!(
                    master = %master,
                    primary = %primary.get_connection_info().addr(),
                    "the sentinels name the primary"
                );
                let manager =
                    ConnectionManager::new_lazy_with_config(primary.clone(), config.clone())?;
                Ok((Link::Node(manager), Some(primary)))
            }
            Self::Cluster { client, .. } => {
                let connection = tokio::time::timeout(timeout * 2, client.get_async_connection())
                    .await
                    .map_err(|_| timed_out())??;
                Ok((Link::Cluster(connection), None))
            }
        }
    }

    /// The node to follow the pub/sub feed on when it does not follow the connection (a
    /// cluster): the configured nodes in turn, so a dead one is left behind.
    pub(super) fn next_feed_node(&self) -> Option<(String, redis::Client)> {
        match self {
            Self::Cluster {
                nodes,
                next_feed_node,
                ..
            } if !nodes.is_empty() => {
                let index = next_feed_node.fetch_add(1, Ordering::Relaxed) % nodes.len();
                nodes.get(index).cloned()
            }
            _ => None,
        }
    }
}

/// A timeout as the redis crate reports one, so it is sorted like the crate's own.
pub(super) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn reason(url: &str) -> String {
        match Target::parse(url, None, SECOND) {
            Ok(_) => panic!("accepted {url}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn every_kind_parses() {
        assert!(matches!(
            Target::parse("redis://:pw@127.0.0.1:6379/2", None, SECOND),
            Ok(Target::Single(_))
        ));
        let sentinel = Target::parse(
            "redis+sentinel://:p%40ss@a:26380,b/mymaster/3?sentinel_password=x",
            None,
            SECOND,
        )
        .expect("sentinel");
        assert_eq!(sentinel.db(), 3);
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2", None, SECOND)
                .expect("single")
                .db(),
            2
        );
        assert_eq!(
            sentinel.describe(),
            "redis primary \"mymaster\" found by the sentinels at a:26380,b:26379"
        );
        let cluster =
            Target::parse("redis+cluster://:pw@n1:7000,n2:7001,n3", None, SECOND).expect("cluster");
        assert_eq!(
            cluster.describe(),
            "redis cluster found through n1:7000,n2:7001,n3:6379"
        );
        assert!(Target::parse("rediss+cluster://n1:7000/", None, SECOND).is_ok());
    }

    #[test]
    fn bad_urls_say_why_without_quoting_them() {
        for url in [
            "mysql://u:hunter2@h/db",
            "redis+sentinel://:hunter2@a:1,b:2",
            "redis+sentinel://:hunter2@a:1,,b:2/m",
            "redis+sentinel://:hunter2@a:notaport/m",
            "redis+sentinel://:hunter2@a:1/m/notadb",
            "redis+sentinel://:hunter2@a:1/m?hunter2=1",
            "redis+cluster://:hunter2@a:1,b:99999",
            "redis+cluster://:hunter2@a:1/3",
            "hunter2",
        ] {
            let reason = reason(url);
            assert!(reason.starts_with("not a usable Redis URL"), "{reason}");
            assert!(!reason.contains("hunter2"), "{url}: {reason}");
        }
        let Err(err) = Target::parse("redis://127.0.0.1/", Some(b"pem"), SECOND) else {
            panic!("a CA without TLS is a mistake");
        };
        assert!(err.to_string().contains("--redis-ca"), "{err}");
    }
}
