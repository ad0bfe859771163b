//! The addresses a service started on port 0 reports with `--listen-addrs-file`: three
//! `key=value` lines (`grpc`, `http`, `admin`), written atomically once all three listeners are
//! bound. Tests poll for the file rather than reading the log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The three bound addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl ListenAddrs {
    /// Parses the file's text; every one of the three keys is required.
    pub fn parse(text: &str) -> Result<Self, String> {
        let find = |key: &str| -> Result<SocketAddr, String> {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| format!("no {key}= line in {text:?}"))?
                .trim()
                .parse()
                .map_err(|err| format!("{key}: {err}"))
        };
        Ok(Self {
            grpc: find("grpc")?,
            http: find("http")?,
            admin: find("admin")?,
        })
    }
}

/// A path nobody else uses, in the temporary directory, for one service's addresses.
pub fn temporary_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "occupancy-addrs-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Waits up to `limit` for `path` to appear, reads it and removes it; an error if the process
/// exits first or the time runs out.
pub fn wait_for(path: &Path, child: &mut Child, limit: Duration) -> Result<ListenAddrs, String> {
    let deadline = Instant::now() + limit;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let _ = std::fs::remove_file(path);
                return ListenAddrs::parse(&text);
            }
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot read {}: {err}", path.display()));
            }
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited first: {status}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("no {} within {limit:?}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
