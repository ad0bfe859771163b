//! Operator tools built into the `occupancy` binary, so that wherever the service is installed
//! the means to poke it are too:
//!
//! - `occupancy send-webhook (occupied|vacated) CHANNEL...` signs a webhook exactly as Pusher
//!   does and posts it to a running service ([`send_webhook`]);
//! - `occupancy check CHANNEL...` asks a running gate over gRPC whether channels are occupied
//!   ([`check`]).
//!
//! The server keeps its flat command line: `occupancy` with no tool name runs the server with the
//! same flags as ever. `main` hands the arguments to [`run_if_tool`] first, and only a first
//! argument that names a tool leaves the server's parsing untouched. A tool never starts a
//! listener, never needs Redis, and never prints a secret.
//!
//! Exit codes follow the server's: 0 success, 1 failure (a non-2xx answer, a gRPC error, nothing
//! reachable), 2 bad usage (one line naming the option).

pub mod check;
pub mod send_webhook;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Cli;

/// The names `main` dispatches on; anything else is the server's command line.
pub const TOOL_NAMES: [&str; 2] = ["send-webhook", "check"];

/// What the server's `--help` adds so operators find the tools.
const TOOLS_HELP: &str = "Operator tools, each with its own --help:
  occupancy send-webhook (occupied|vacated) CHANNEL...
      sign a webhook as Pusher does and send it to a running service
  occupancy check CHANNEL...
      ask a running gate over gRPC whether channels are occupied";

/// The tools' command line. Not `Debug`: `send-webhook` holds a secret.
#[derive(Parser)]
#[command(name = "occupancy", version)]
struct ToolsCli {
    #[command(subcommand)]
    tool: Tool,
}

#[derive(Subcommand)]
enum Tool {
    // No doc comments here: they would replace the tools' own `about` texts in their `--help`.
    SendWebhook(send_webhook::Args),
    Check(check::Args),
}

/// Why a tool stopped. [`ToolError::Usage`] exits 2, like the server's configuration errors;
/// everything else exits 1. No message holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An option or argument that cannot be used.
    #[error("{option}: {reason}")]
    Usage {
        /// The option (and its variable), or the argument.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The webhook got no HTTP answer at all.
    #[error("cannot send the webhook to {url}")]
    Send {
        /// Where it was sent.
        url: String,
        /// The HTTP client's error, without the URL.
        #[source]
        source: reqwest::Error,
    },
    /// The gate could not be reached.
    #[error("cannot connect to the gate at {addr}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The gate answered a call with an error status.
    #[error("{channel}: {}: {}", code_name(.status.code()), .status.message())]
    Status {
        /// The channel asked about.
        channel: String,
        /// The gate's answer.
        status: Box<tonic::Status>,
    },
    /// The webhook body could not be encoded (plain strings and numbers: not expected to
    /// happen, but not worth a panic either).
    #[error("cannot encode the webhook body")]
    Encode(#[source] serde_json::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl ToolError {
    /// 2 for bad usage, 1 for everything else.
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage { .. } => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// A [`ToolError::Usage`]: the tools' one way to say "fix the command line".
pub(crate) fn usage(option: &'static str, reason: impl Into<String>) -> ToolError {
    ToolError::Usage {
        option,
        reason: reason.into(),
    }
}

/// Runs the tool named by the first argument after the program name, and answers its exit code;
/// `None` when no tool is named, so the caller runs the server.
pub fn run_if_tool<I, T>(args: I) -> Option<ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let named = args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| TOOL_NAMES.contains(&a));
    if !named {
        return None;
    }
    let cli = match ToolsCli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            let tool = args.get(1).and_then(|a| a.to_str()).unwrap_or_default();
            eprintln!(
                "occupancy {tool}: {} (see --help)",
                one_line(&err.to_string())
            );
            return Some(ExitCode::from(2));
        }
    };
    let (name, outcome) = match cli.tool {
        Tool::SendWebhook(args) => ("send-webhook", send_webhook::run(args)),
        Tool::Check(args) => ("check", check::run(args)),
    };
    Some(match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "occupancy {name}: {}",
                crate::error_chain::error_chain(&err)
            );
            err.exit_code()
        }
    })
}

/// The server's command line, parsed as [`Cli::try_parse`] would, with the tools listed at the
/// end of `--help`.
pub fn parse_server_cli() -> Result<Cli, clap::Error> {
    let mut command = server_command();
    let matches = command
        .try_get_matches_from_mut(std::env::args_os())
        .map_err(|err| crate::config::name_env_in_error(&command, err))?;
    Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut command))
}

/// The server's clap command with [`TOOLS_HELP`] after its own closing text.
fn server_command() -> clap::Command {
    let command = Cli::command();
    let after = match command.get_after_help() {
        Some(existing) => format!("{existing}\n\n{TOOLS_HELP}"),
        None => TOOLS_HELP.to_owned(),
    };
    command.after_help(after)
}

/// clap's message without its usage block, folded onto one line so it reads well in a log;
/// the server's configuration errors and the tools' usage errors both use it.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
}

/// The canonical name of a gRPC status code (`UNAUTHENTICATED`), as grpcurl and the proto's
/// documentation spell it; tonic's `Display` gives a sentence instead.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A runtime for one tool run: one thread is plenty for one request at a time.
fn runtime() -> Result<tokio::runtime::Runtime, ToolError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ToolError::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tool_name_first_is_dispatched() {
        for args in [
            vec!["occupancy"],
            vec!["occupancy", "--grpc-addr", "127.0.0.1:0"],
            vec!["occupancy", "--pusher-key", "check"],
        ] {
            assert!(run_if_tool(args).is_none());
        }
    }

    #[test]
    fn the_server_help_lists_the_tools_after_its_own_text() {
        let own = Cli::command()
            .get_after_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        let help = server_command().render_help().to_string();
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words(&help).contains(&words(&own)), "{help}");
        assert!(help.contains("occupancy send-webhook"), "{help}");
        assert!(help.contains("occupancy check"), "{help}");
    }

    #[test]
    fn codes_are_named_as_grpc_spells_them() {
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
    }
}
