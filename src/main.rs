//! The `occupancy` binary: configuration, logging, signals and exit codes around
//! [`occupancy::service::Service`], which owns everything that runs.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use occupancy::config::{Cli, Config};
use occupancy::service::Service;
use occupancy::service::Shutdown;

fn main() -> ExitCode {
    if let Some(code) = occupancy::tools::run_if_tool(std::env::args_os()) {
        return code;
    }
    let cli: Cli = match occupancy::tools::parse_server_cli() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            eprintln!(
                "occupancy: {} (see --help)",
                occupancy::tools::one_line(&err.to_string())
            );
            return ExitCode::from(2);
        }
    };
    init_logging();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("occupancy: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("occupancy: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, on stderr with the logs, for whoever reads the crash.
            eprintln!("occupancy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Installed before the listeners bind, so a signal right after start-up still drains.
    let signals = Signals::install().context("cannot watch for SIGTERM and Ctrl-C")?;
    let drain_delay = config.drain_delay;
    let service = Service::bind(config).await?;
    let shutdown = Shutdown::default();
    tokio::spawn(signals.drive(shutdown.clone(), drain_delay));
    service.run(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, watched from start-up: the handlers are installed before the listeners
/// bind, so a signal that arrives right after start-up still drains instead of killing.
struct Signals {
    received: tokio::sync::mpsc::UnboundedReceiver<i32>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                // The exit code a shell gives a process killed by that signal.
                let code = tokio::select! {
                    _ = term.recv() => 143,
                    _ = int.recv() => 130,
                };
                if tx.send(code).is_err() {
                    break;
                }
            }
        });
        Ok(Self { received })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tx.send(130).is_err() {
                    break;
                }
            }
        });
        Ok(Self { received })
    }

    /// First signal: health `NOT_SERVING`, then after `drain_delay` the listeners stop. A
    /// second signal exits at once, for an operator who will not wait.
    async fn drive(mut self, shutdown: Shutdown, drain_delay: Duration) {
        if self.received.recv().await.is_none() {
            return;
        }
        tracing::info!(
            ?drain_delay,
            "shutting down: health is NOT_SERVING; draining"
        );
        shutdown.draining.cancel();
        tokio::select! {
            _ = tokio::time::sleep(drain_delay) => {}
            Some(code) = self.received.recv() => exit_now(code),
        }
        tracing::info!("listeners closed: finishing requests in flight");
        shutdown.stop.cancel();
        if let Some(code) = self.received.recv().await {
            exit_now(code);
        }
    }
}

fn exit_now(code: i32) -> ! {
    tracing::warn!(code, "second signal: exiting at once");
    std::process::exit(code)
}
