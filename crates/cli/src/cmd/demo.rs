//! `weft demo`: a meshed emojivoto-like application on the local mesh, in one command.
//!
//! Creates (or reuses) the cluster, starts its control plane, applies the application's
//! resources (Services, ExternalWorkloads, the spec's ServiceProfile for `web-svc`), starts each
//! workload — `emoji`, `voting`, `web` and the traffic generator `vote-bot`, each a
//! `weft-testapp demo` role behind its own `weft-proxy` on its own loopback address — waits for
//! every proxy to hold its certificate, and prints what runs and what to try. Without
//! `--detach` it stays until Ctrl-C (or SIGTERM) and then stops everything it started.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use weft_store::cluster::{ClusterConfig, ClusterDir, ControlPlaneState};

use crate::context::Global;
use crate::local::control_plane::{self, PkiSource};
use crate::local::workload;
use crate::local::{probe, process};

mod app;

/// `weft demo`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    /// Leave the demo running and return (stop it with `weft demo stop`).
    #[arg(long)]
    pub detach: bool,

    /// Share of the voting service's requests that fail (so retries and budgets show).
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    pub voting_error_rate: f64,

    /// Requests per second the vote-bot sends.
    #[arg(long, default_value_t = 5.0)]
    pub rps: f64,

    /// The cluster's loopback network, `127.A.B.0/24`, when the cluster is created (default:
    /// the first free 127.0.N.0/24).
    #[arg(long, value_name = "127.A.B.0/24", value_parser = crate::cmd::install::parse_network)]
    pub network: Option<[u8; 2]>,

    /// `stop`: end a detached demo.
    #[command(subcommand)]
    pub command: Option<DemoCommand>,
}

/// `weft demo stop`.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Stop the demo's workloads and the cluster's control plane.
    Stop,
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected a share between 0.0 and 1.0")),
    }
}

/// How long to wait for every proxy to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `weft demo` / `weft demo stop`.
pub fn run(args: &DemoArgs, global: &Global) -> anyhow::Result<()> {
    let dir = global.cluster_dir()?;
    if let Some(DemoCommand::Stop) = args.command {
        return stop(&dir);
    }
    let mut err = std::io::stderr().lock();
    let home = dir
        .root()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    writeln!(
        err,
        "[1/5] cluster {:?} in {}",
        dir.name(),
        dir.root().display()
    )?;
    let config =
        control_plane::create_cluster(&dir, &home, args.network, &PkiSource::default(), &mut err)?;
    if dir.read_workloads()?.iter().flatten().next().is_some() {
        writeln!(err, "      stopping the workloads of an earlier demo")?;
        workload::stop_all(&dir)?;
    }
    write!(err, "[2/5] ")?;
    let ours = control_plane::running(&dir).is_none();
    let cp = control_plane::start(&dir, &mut err)?;
    let result = start_app(&dir, &config, &cp, args, &mut err);
    if let Err(e) = result {
        writeln!(err, "the demo did not start; stopping what it started")?;
        let _ = stop_quietly(&dir, ours);
        return Err(e);
    }
    let mut out = std::io::stdout().lock();
    summary(&mut out, &dir, &config, global)?;
    if args.detach {
        writeln!(
            out,
            "\nrunning in the background; stop it with: weft demo stop{}",
            global.context_flag()
        )?;
        return Ok(());
    }
    writeln!(out, "\nrunning; Ctrl-C stops everything")?;
    out.flush()?;
    drop(out);
    wait_for_signal();
    writeln!(err, "\nstopping the demo")?;
    if ours {
        stop(&dir)
    } else {
        let n = workload::stop_all(&dir)?;
        writeln!(err, "stopped {n} workload(s); the control plane was running before the demo and keeps running")?;
        Ok(())
    }
}

fn start_app(
    dir: &ClusterDir,
    config: &ClusterConfig,
    cp: &ControlPlaneState,
    args: &DemoArgs,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let workloads = app::workloads(config, args.voting_error_rate, args.rps);
    writeln!(
        err,
        "[3/5] applying the emojivoto resources (Services, ExternalWorkloads, ServiceProfile)"
    )?;
    let manifests = app::manifests(config, &workloads);
    crate::cmd::resources::apply_text(dir, "weft-demo", &manifests, &mut std::io::sink())?;

    writeln!(err, "[4/5] starting a proxy for each workload")?;
    let mut started = Vec::new();
    for spec in &workloads {
        let state = workload::start_proxy(dir, config, cp, spec)?;
        writeln!(
            err,
            "      {:<9} {:<13} proxy pid {}",
            spec.deployment,
            spec.ip.to_string(),
            state.proxy_pid.unwrap_or_default()
        )?;
        started.push(state);
    }
    write!(
        err,
        "      waiting for every proxy to hold its mTLS certificate"
    )?;
    err.flush()?;
    let deadline = Instant::now() + READY_TIMEOUT;
    for state in &started {
        wait_ready(dir, state, deadline, err)?;
    }
    writeln!(err, " √")?;
    writeln!(err, "[5/5] starting the applications")?;
    for (spec, state) in workloads.iter().zip(started.iter_mut()) {
        workload::start_app(dir, spec, state)?;
        writeln!(
            err,
            "      {:<9} app pid {}",
            spec.deployment,
            state.app_pid.unwrap_or_default()
        )?;
    }
    Ok(())
}

fn wait_ready(
    dir: &ClusterDir,
    state: &weft_store::cluster::WorkloadState,
    deadline: Instant,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    loop {
        let proxy_alive = state
            .proxy_pid
            .is_some_and(|p| process::is_running(p, workload::PROXY));
        if !proxy_alive {
            writeln!(err)?;
            bail!(
                "the proxy of {} exited; see {}",
                state.name,
                dir.logs_dir()
                    .join(format!("{}.{}.proxy.log", state.namespace, state.name))
                    .display()
            );
        }
        if probe::ready(state.proxy_admin()) {
            write!(err, " {}", state.deployment)?;
            err.flush()?;
            return Ok(());
        }
        if Instant::now() > deadline {
            writeln!(err)?;
            bail!(
                "the proxy of {} was not ready within {}s; see {}",
                state.name,
                READY_TIMEOUT.as_secs(),
                dir.logs_dir().display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn summary(
    out: &mut dyn Write,
    dir: &ClusterDir,
    config: &ClusterConfig,
    global: &Global,
) -> anyhow::Result<()> {
    let ctx = global.context_flag();
    writeln!(
        out,
        "\nemojivoto is running, meshed with mTLS, in cluster {:?}:",
        dir.name()
    )?;
    writeln!(
        out,
        "  {:<10} {:<14} {:<62} PROXY ADMIN",
        "WORKLOAD", "ADDRESS", "IDENTITY"
    )?;
    for w in dir.read_workloads()?.into_iter().flatten() {
        writeln!(
            out,
            "  {:<10} {:<14} {:<62} {}",
            w.deployment,
            w.ip.to_string(),
            w.identity.as_deref().unwrap_or("-"),
            w.proxy_admin()
        )?;
    }
    writeln!(
        out,
        "  control plane: identity {}, destination {}, viz {}",
        config.identity_addr(),
        config.destination_addr(),
        config.viz_addr()
    )?;
    writeln!(out, "  logs: {}", dir.logs_dir().display())?;
    writeln!(out, "\ntry:")?;
    for cmd in [
        format!("weft{ctx} check --proxy"),
        format!("weft{ctx} viz stat deploy -n emojivoto"),
        format!("weft{ctx} viz edges deployment -n emojivoto"),
        format!("weft{ctx} viz tap deploy/web -n emojivoto"),
        format!("weft{ctx} viz routes deploy/web -n emojivoto"),
        format!("weft{ctx} viz top deploy/web -n emojivoto"),
        format!(
            "curl -x http://{} http://web-svc.emojivoto.svc.cluster.local/api/list",
            app::web_ip(config)
        ),
    ] {
        writeln!(out, "  {cmd}")?;
    }
    Ok(())
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_ok() {
        let _ = set.wait();
    } else {
        // Without a blockable mask, sleep: the default action of SIGINT ends the process.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn stop(dir: &ClusterDir) -> anyhow::Result<()> {
    control_plane::stop_cluster(dir, &mut std::io::stdout().lock())
}

fn stop_quietly(dir: &ClusterDir, control_plane_too: bool) -> anyhow::Result<()> {
    workload::stop_all(dir)?;
    if control_plane_too {
        control_plane::stop(dir)?;
    }
    Ok(())
}
