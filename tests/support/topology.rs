//! Real Redis deployments for the high-availability tests: plain nodes with any options,
//! sentinels, and a cluster made with `redis-cli --cluster create`, each on free ports and in a
//! directory of its own, killed and removed on drop. A missing program fails the test with what
//! to install; nothing is skipped.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestPki, free_port};

/// Fails with what to install when `program` is not on the PATH.
pub fn require(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{program} is not installed: install it with `apt-get install {package}` (Debian) or run \
         tests/run-all.sh"
    );
}

/// A fresh directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "occupancy-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A process on a port, killed on drop.
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    /// Starts `program args…` and waits until `port` accepts connections.
    pub fn spawn(program: &str, args: &[String], port: u16, dir: &Path) -> Self {
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} ({e})"));
        let mut node = Self {
            port,
            child: Some(child),
        };
        if !wait_for_port(port, Duration::from_secs(10)) {
            node.kill();
            panic!("{program} did not listen on port {port}");
        }
        node
    }

    /// A `redis-server` without persistence on `port`, with `extra` options, working in a
    /// directory of its own under `dir` (replication writes files there).
    pub fn redis(port: u16, dir: &Path, extra: &[&str]) -> Self {
        let dir = dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.as_path();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn("redis-server", &args, port, dir)
    }

    /// Kills the process at once (SIGKILL), as a crashed machine would stop answering.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain-TCP connection to one node (no cluster redirections), with an optional password.
pub async fn direct(port: u16, password: Option<&str>) -> redis::aio::MultiplexedConnection {
    let url = match password {
        Some(pw) => format!("redis://:{pw}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    };
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
}

pub async fn smembers(connection: &mut impl redis::aio::ConnectionLike, key: &str) -> Vec<String> {
    let mut members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(connection)
        .await
        .expect("SMEMBERS");
    members.sort();
    members
}

/// A three-node Redis Cluster without replicas, made with `redis-cli --cluster create`,
/// optionally over TLS only (client and cluster bus) with certificates of a [`TestPki`].
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The CA to trust, for a TLS cluster.
    ca: Option<PathBuf>,
    dir: TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    pub fn start_tls(pki: &TestPki) -> Self {
        Self::start_with(Some(pki))
    }

    fn start_with(pki: Option<&TestPki>) -> Self {
        require("redis-server", "redis-server");
        require("redis-cli", "redis-tools");
        let dir = TempDir::new("cluster");
        let path = |p: &Path| p.display().to_string();
        let nodes: Vec<Node> = (0..3)
            .map(|_| {
                let port = free_port();
                let config = dir.path().join(format!("nodes-{port}.conf"));
                // The bus port is given: the default (port + 10000) may be past 65535.
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &path(&config),
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &free_port().to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(pki) = pki {
                    args.extend(
                        [
                            "--port",
                            "0",
                            "--tls-port",
                            &port.to_string(),
                            "--tls-cluster",
                            "yes",
                            "--tls-cert-file",
                            &path(&pki.server_cert),
                            "--tls-key-file",
                            &path(&pki.server_key),
                            "--tls-ca-cert-file",
                            &path(&pki.ca_cert),
                            "--tls-auth-clients",
                            "no",
                        ]
                        .iter()
                        .map(|s| s.to_string()),
                    );
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Node::redis(port, dir.path(), &args)
            })
            .collect();
        let cluster = Self {
            nodes,
            ca: pki.map(|p| p.ca_cert.clone()),
            dir,
        };
        let mut create = cluster.redis_cli();
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &cluster.nodes {
            loop {
                let info = cluster
                    .redis_cli()
                    .args(["-p", &node.port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .expect("redis-cli CLUSTER INFO");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach cluster_state:ok within 20 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// `redis-cli`, speaking TLS to a TLS cluster.
    fn redis_cli(&self) -> Command {
        let mut command = Command::new("redis-cli");
        if let Some(ca) = &self.ca {
            command.args(["--tls", "--cacert", &ca.display().to_string()]);
        }
        command
    }

    fn scheme(&self) -> &'static str {
        if self.ca.is_some() { "rediss" } else { "redis" }
    }

    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.ca.as_ref().map(|ca| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca).unwrap()),
        })
    }

    /// `redis+cluster://` (or `rediss+cluster://`) naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("{}+cluster://{}", self.scheme(), hosts.join(","))
    }

    /// A cluster-aware connection, following MOVED like any cluster client.
    pub async fn connection(&self) -> redis::cluster_async::ClusterConnection {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}://127.0.0.1:{}/", self.scheme(), n.port))
            .collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes);
        if let Some(certificates) = self.certificates() {
            builder = builder.certs(certificates);
        }
        builder
            .build()
            .unwrap()
            .get_async_connection()
            .await
            .expect("connect to the cluster")
    }

    /// A connection to one node only (no redirections followed).
    pub async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let url = format!("{}://127.0.0.1:{port}/", self.scheme());
        match self.certificates() {
            Some(certificates) => redis::Client::build_with_tls(url, certificates),
            None => redis::Client::open(url),
        }
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to node {port}: {e}"))
    }

    /// The port of the node that serves `slot`, from `CLUSTER SLOTS`.
    pub async fn port_of_slot(&self, slot: u16) -> u16 {
        let mut connection = self.node(self.nodes[0].port).await;
        let slots: Vec<(u16, u16, Vec<redis::Value>)> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Vec<redis::Value>>(&mut connection)
            .await
            .expect("CLUSTER SLOTS")
            .into_iter()
            .map(|range| {
                let redis::Value::Array(mut parts) = range else {
                    panic!("CLUSTER SLOTS: not an array")
                };
                let start: u16 = redis::from_redis_value(parts.remove(0)).unwrap();
                let end: u16 = redis::from_redis_value(parts.remove(0)).unwrap();
                (start, end, parts)
            })
            .collect();
        for (start, end, mut nodes) in slots {
            if (start..=end).contains(&slot) {
                let redis::Value::Array(mut primary) = nodes.remove(0) else {
                    panic!("CLUSTER SLOTS: no primary")
                };
                return redis::from_redis_value(primary.remove(1)).unwrap();
            }
        }
        panic!("no node serves slot {slot}")
    }

    /// `CLUSTER KEYSLOT key`, as the cluster itself computes it.
    pub async fn slot_of(&self, key: &str) -> u16 {
        let mut connection = self.node(self.nodes[0].port).await;
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("CLUSTER KEYSLOT")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
