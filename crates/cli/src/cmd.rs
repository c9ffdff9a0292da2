//! The subcommands, one module per command group.

use clap::Subcommand;

use crate::context::Global;

pub mod check;
pub mod demo;
pub mod identity;
pub mod inject;
pub mod install;
pub mod resources;
pub mod viz;

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trust anchors, issuers and certificates: create, inspect and verify them.
    ///
    /// Makes what `step certificate create --profile root-ca / intermediate-ca` makes; reads
    /// what step, openssl and Weft make.
    Identity(identity::IdentityArgs),

    /// Add the Weft proxy to Kubernetes workloads: annotate them, or with --manual add the sidecar.
    ///
    /// Reads Kubernetes YAML or JSON (files, directories, or `-` for stdin) and writes it to
    /// stdout, with a report of what was done to each object on stderr.
    Inject(inject::InjectArgs),

    /// Create a local cluster and start its control plane (`--crds`: only prepare it).
    ///
    /// The cluster is `$WEFT_HOME/<context>` (default ~/.weft/west). Without the identity
    /// files a trust anchor and issuer are generated, with a warning.
    Install(install::InstallArgs),

    /// Stop a local cluster's control plane and workloads (`--purge`: also remove it).
    Uninstall(install::UninstallArgs),

    /// Rotate the issuer (or the trust anchor bundle) of a running cluster, after checking that
    /// the new issuer chains to the trust anchors.
    Upgrade(install::UpgradeArgs),

    /// Validate resources and store them in the cluster (the control plane applies them).
    Apply(resources::ApplyArgs),

    /// List or show the cluster's resources.
    Get(resources::GetArgs),

    /// Remove a resource from the cluster.
    Delete(resources::DeleteArgs),

    /// Run a meshed emojivoto-like application on the local mesh, in one command.
    ///
    /// Creates (or reuses) the cluster, starts its control plane and the workloads web, emoji,
    /// voting and vote-bot, each behind its own proxy on its own loopback address, and keeps
    /// them running until Ctrl-C (or `--detach`, then `weft demo stop`).
    Demo(demo::DemoArgs),

    /// Check that the local mesh is healthy: control plane, identity, configuration, and with
    /// --proxy every proxy. Exit status 1 when a check fails (warnings exit 0).
    Check(check::CheckArgs),

    /// Golden metrics, edges, routes and live tap of the mesh: `stat`, `edges`, `routes`,
    /// `tap`, `top`, `check`.
    Viz(viz::VizArgs),
}

/// Runs a command.
pub fn run(command: Command, global: &Global) -> anyhow::Result<()> {
    match command {
        Command::Identity(args) => identity::run(args),
        Command::Inject(args) => inject::run(args),
        Command::Install(args) => install::install(&args, global),
        Command::Uninstall(args) => install::uninstall(&args, global),
        Command::Upgrade(args) => install::upgrade(&args, global),
        Command::Apply(args) => resources::apply(&args, global),
        Command::Get(args) => resources::get(&args, global),
        Command::Delete(args) => resources::delete(&args, global),
        Command::Demo(args) => demo::run(&args, global),
        Command::Check(args) => check::run(args, global),
        Command::Viz(args) => viz::run(args, global),
    }
}
