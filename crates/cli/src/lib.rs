//! The `weft` command line.
//!
//! `main.rs` only parses [`Cli`] and hands it to [`run`]; each command group lives in a module
//! under [`cmd`]. Errors are `anyhow` here (this is the binary's command layer) and are printed
//! by [`report`] as one line, `error: <file>: <problem>`, with exit status 1; usage errors are
//! clap's (exit status 2).
//!
//! Command groups: `weft identity` (trust anchors, issuers, inspection and verification),
//! `install` / `uninstall` / `upgrade` and `apply` / `get` / `delete` (local-mesh clusters in
//! `$WEFT_HOME`, see [`context`] and [`local`]), `check`, `inject`, `viz` and `demo`. They share
//! the global `--context` flag and [`output::OutputArgs`]. Multicluster comes with its issue.

use std::process::ExitCode;

use clap::Parser;

pub mod cmd;
pub mod context;
mod duration;
mod files;
pub mod local;
pub mod output;

/// weft: a service mesh with a lean Rust sidecar proxy, compatible with Linkerd 2.x manifests.
#[derive(Debug, Parser)]
#[command(name = "weft", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The cluster to use: a local-mesh cluster in $WEFT_HOME (west, east, ...) or a Kubernetes
    /// context, as with kubectl. `weft identity` works on files and ignores it.
    #[arg(long, global = true, env = "WEFT_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: cmd::Command,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = context::Global {
        context: cli.context,
    };
    cmd::run(cli.command, &global)
}

/// Prints an error as one line on stderr and returns exit status 1.
///
/// A closed stdout (`weft identity inspect ca.crt | head -1`) is not worth a message: the reader
/// went away on purpose.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if !broken_pipe {
        eprintln!("error: {}", one_line(&format!("{err:#}")));
    }
    ExitCode::FAILURE
}

/// Folds a message onto one line, so that every failure is exactly one line whatever a library
/// put in its error text.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn messages_are_folded_onto_one_line() {
        assert_eq!(
            one_line("ca.crt: bad\n  thing\there "),
            "ca.crt: bad thing here"
        );
    }
}
