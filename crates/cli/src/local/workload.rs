//! Workloads of the local mesh: an application process and, when meshed, its weft-proxy
//! sidecar on the workload's own loopback address, recorded in `run/workloads/`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use weft_store::cluster::{
    ClusterConfig, ClusterDir, ControlPlaneState, WorkloadState, PROXY_ADMIN_PORT,
    PROXY_INBOUND_PORT, PROXY_OUTBOUND_PORT, PROXY_TAP_PORT,
};

use super::process;

/// The proxy's program name.
pub const PROXY: &str = "weft-proxy";

/// What to run.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Namespace.
    pub namespace: String,
    /// Workload (ExternalWorkload) name.
    pub name: String,
    /// The deployment it belongs to.
    pub deployment: String,
    /// The service account its identity names.
    pub service_account: String,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// The application: program and arguments.
    pub app: Vec<String>,
    /// The port the application serves on (inbound traffic goes there), if any.
    pub app_port: Option<u16>,
    /// Whether it gets a proxy.
    pub meshed: bool,
}

impl WorkloadSpec {
    /// The sidecar's outbound listener (what the app uses as its HTTP proxy).
    pub fn proxy_outbound(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PROXY_OUTBOUND_PORT))
    }
}

/// Starts the workload's proxy when it is meshed, and records the workload. Start the app
/// with [`start_app`] once the proxy is ready, so its first requests are already meshed.
pub fn start_proxy(
    dir: &ClusterDir,
    config: &ClusterConfig,
    control_plane: &ControlPlaneState,
    spec: &WorkloadSpec,
) -> anyhow::Result<WorkloadState> {
    let logs = dir.logs_dir();
    let identity = spec
        .meshed
        .then(|| config.workload_identity(&spec.service_account, &spec.namespace));
    let mut state = WorkloadState {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        deployment: spec.deployment.clone(),
        ip: spec.ip,
        identity: identity.clone(),
        app_pid: None,
        app_program: None,
        proxy_pid: None,
    };
    if let Some(identity) = &identity {
        let token_file = dir.token_file(identity);
        let key = std::fs::read(dir.token_key())
            .with_context(|| format!("{}", dir.token_key().display()))?;
        let token = weft_pki::token::mint_token(&key, identity);
        if let Some(parent) = token_file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        weft_store::write_atomic(&token_file, format!("{token}\n").as_bytes())?;
        let ip = spec.ip;
        let mut proxy = Command::new(process::binary(PROXY));
        proxy
            .env(
                "WEFT_PROXY_INBOUND_LISTEN_ADDR",
                addr(ip, PROXY_INBOUND_PORT),
            )
            .env(
                "WEFT_PROXY_OUTBOUND_LISTEN_ADDR",
                addr(ip, PROXY_OUTBOUND_PORT),
            )
            .env("WEFT_PROXY_ADMIN_LISTEN_ADDR", addr(ip, PROXY_ADMIN_PORT))
            .env("WEFT_PROXY_TAP_LISTEN_ADDR", addr(ip, PROXY_TAP_PORT))
            .env("WEFT_PROXY_TAP_SVC_NAME", config.viz_identity())
            .env("WEFT_PROXY_OUTBOUND_BIND_IP", ip.to_string())
            .env("WEFT_PROXY_IDENTITY_NAME", identity)
            .env("WEFT_PROXY_IDENTITY_TOKEN_FILE", &token_file)
            .env("WEFT_PROXY_IDENTITY_TRUST_ANCHORS", dir.trust_anchors())
            .env(
                "WEFT_PROXY_IDENTITY_SVC_ADDR",
                control_plane.identity.to_string(),
            )
            .env(
                "WEFT_PROXY_DESTINATION_SVC_ADDR",
                control_plane.destination.to_string(),
            )
            .env(
                "WEFT_PROXY_LOG",
                std::env::var("WEFT_PROXY_LOG").unwrap_or_else(|_| "info".to_owned()),
            );
        if let Some(port) = spec.app_port {
            proxy.env("WEFT_PROXY_INBOUND_APP_ADDR", addr(ip, port));
        }
        let log = logs.join(format!("{}.{}.proxy.log", spec.namespace, spec.name));
        let child = process::spawn_detached(proxy, &log)?;
        state.proxy_pid = Some(child.id());
    }
    dir.write_workload(&state)?;
    Ok(state)
}

/// Starts the workload's application and records it.
pub fn start_app(
    dir: &ClusterDir,
    spec: &WorkloadSpec,
    state: &mut WorkloadState,
) -> anyhow::Result<()> {
    let logs = dir.logs_dir();
    if let Some((program, args)) = spec.app.split_first() {
        let mut app = Command::new(process::binary(program));
        app.args(args);
        let log = logs.join(format!("{}.{}.log", spec.namespace, spec.name));
        let child = process::spawn_detached(app, &log)?;
        state.app_pid = Some(child.id());
        state.app_program = Some(program.clone());
    }
    dir.write_workload(state)?;
    Ok(())
}

fn addr(ip: Ipv4Addr, port: u16) -> String {
    SocketAddr::from((ip, port)).to_string()
}

/// Stops every recorded workload of the cluster (apps first, then proxies, so the proxies see
/// their apps leave) and removes the records. Returns how many were running.
pub fn stop_all(dir: &ClusterDir) -> anyhow::Result<usize> {
    let workloads = dir.read_workloads()?;
    let mut stopped = std::collections::BTreeSet::new();
    for w in workloads.iter().flatten() {
        if let (Some(pid), Some(program)) = (w.app_pid, &w.app_program) {
            if process::stop(pid, program, Duration::from_secs(5)) {
                stopped.insert((w.namespace.clone(), w.name.clone()));
            }
        }
    }
    for w in workloads.iter().flatten() {
        if let Some(pid) = w.proxy_pid {
            if process::stop(pid, PROXY, Duration::from_secs(10)) {
                stopped.insert((w.namespace.clone(), w.name.clone()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir.workloads_dir());
    Ok(stopped.len())
}
