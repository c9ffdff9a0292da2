//! `weft check`: is the local mesh healthy? Categories of checks printed with `√` / `‼` / `×`,
//! like `linkerd check`, with two differences that matter at 3am: **every category runs**
//! even after a failure (a check that depends on a failed one is shown as skipped, never left
//! out), and `-o json` gives the same results to scripts.
//!
//! - [`existence`]: `weft-existence` — the cluster, its control plane process, admin `/live`
//!   and `/ready`, and the identity, destination and viz ports.
//! - [`pki`]: `weft-identity` — trust anchors and issuer.
//! - [`config`]: `weft-config` — manifests, settings, and what overrides what.
//! - [`data_plane`]: `weft-data-plane`, with `--proxy` — every meshed workload's proxy.
//!
//! Every check has a stable id (`weft-identity/issuer-not-expired`), listed with its meaning
//! and hint in docs/check.md. Every network probe is bounded ([`probe::TIMEOUT`]).

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;

use crate::context::Global;
use crate::duration::parse_duration;
use crate::output::{write_json, Format, OutputArgs};

pub mod config;
pub mod data_plane;
pub mod existence;
pub mod pki;
pub mod probe;
pub mod report;

use report::Report;

/// Time between two rounds of checks under `--wait`.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// `weft check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also check the data plane: every meshed workload's proxy is running and ready, and
    /// serves a valid certificate for its identity under the current trust anchors; no
    /// deployment is half meshed.
    #[arg(long)]
    pub proxy: bool,

    /// Run the checks again until none fails or this much time has passed (`30s`, `2m`); only
    /// the last round is printed. 0 checks once.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub wait: Duration,

    /// Show each check's id (as `-o json` does).
    #[arg(short, long)]
    pub verbose: bool,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Some checks failed; the report has been printed. Exit status 1.
#[derive(Debug, thiserror::Error)]
#[error("{} check(s) failed: {}", .0.len(), .0.join(", "))]
pub struct ChecksFailed(pub Vec<&'static str>);

/// Runs `weft check`.
pub fn run(args: CheckArgs, global: &Global) -> anyhow::Result<()> {
    let dir = global.cluster_dir()?;
    let deadline = Instant::now() + args.wait;
    let report = loop {
        let report = run_checks(&dir, args.proxy, SystemTime::now());
        if report.success || Instant::now() + RETRY_INTERVAL > deadline {
            break report;
        }
        std::thread::sleep(RETRY_INTERVAL);
    };
    let mut out = std::io::stdout().lock();
    match args.output.output {
        Format::Json => write_json(&mut out, &report)?,
        Format::Table => {
            out.write_all(report.to_text(args.verbose).as_bytes())?;
            out.flush()?;
        }
    }
    if report.success {
        Ok(())
    } else {
        Err(ChecksFailed(report.failed_ids()).into())
    }
}

/// One round of every check against the cluster directory `dir`, at `now`.
pub fn run_checks(dir: &weft_store::cluster::ClusterDir, proxy: bool, now: SystemTime) -> Report {
    let (existence, found) = existence::check(dir);
    let cluster = found.dir.as_ref();
    let (identity, anchors) = pki::check(cluster, now);
    let (config, objects) = config::check(cluster.zip(found.config.as_ref()));
    let mut categories = vec![existence, identity, config];
    if proxy {
        categories.push(data_plane::check(
            cluster,
            objects.as_deref(),
            anchors.certs.as_deref(),
            now,
        ));
    }
    Report::new(categories)
}
