//! The subcommands, one module per command group.

use clap::Subcommand;

pub mod identity;

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trust anchors, issuers and certificates: create, inspect and verify them.
    ///
    /// Makes what `step certificate create --profile root-ca / intermediate-ca` makes; reads
    /// what step, openssl and Weft make.
    Identity(identity::IdentityArgs),
}

/// Runs a command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Identity(args) => identity::run(args),
    }
}
