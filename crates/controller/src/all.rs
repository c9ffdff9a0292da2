//! `weft-controller all --store local:DIR`: every component of a local-mesh cluster in one
//! process — identity, destination and viz (which taps proxies with a leaf for the cluster's viz
//! identity, issued from the identity service's credentials) — behind one admin server.
//!
//! Everything comes from the cluster directory (see `weft_store::cluster`): addresses from
//! `cluster.json` (the cluster's loopback `.254` with the standard ports, each overridable),
//! credentials from `pki/`, resources from `manifests/` (watched). Once every listener is bound
//! the process writes `run/control-plane.json` (its pid and addresses), which is how `weft`
//! finds it, and removes it when it stops.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use tokio::sync::watch;
use tracing::Instrument;
use weft_store::cluster::{ClusterConfig, ClusterDir, ControlPlaneState};
use weft_store::{LocalStore, Store};

use crate::admin::{self, SharedAdmin};
use crate::cli::{DestinationArgs, IdentityArgs, MeshArgs, StoreBackend};
use crate::duration::parse_duration;
use crate::grpc_task::{bind_one, BindError};
use crate::{destination, identity, viz};

/// `weft-controller all`.
#[derive(Clone, Debug, Args)]
pub struct AllArgs {
    /// The cluster directory: `local:DIR` (made by `weft install`). Its `cluster.json` gives
    /// the addresses and names; `pki/` the credentials; `manifests/` the resources.
    #[arg(long, env = "WEFT_STORE", value_name = "local:DIR")]
    pub store: StoreBackend,

    /// Address of the identity service (default: the cluster's control-plane address, port
    /// 8080).
    #[arg(long, env = "WEFT_IDENTITY_LISTEN")]
    pub identity_listen: Option<SocketAddr>,

    /// Address of the destination service (default: port 8086).
    #[arg(long, env = "WEFT_DESTINATION_LISTEN")]
    pub destination_listen: Option<SocketAddr>,

    /// Address of the viz API (default: port 8085).
    #[arg(long, env = "WEFT_VIZ_LISTEN")]
    pub viz_listen: Option<SocketAddr>,

    /// How often the viz component scrapes every proxy's /metrics.
    #[arg(long, env = "WEFT_VIZ_SCRAPE_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub viz_scrape_interval: Duration,

    /// How long scraped samples are kept (the longest `weft viz stat -t` window).
    #[arg(long, env = "WEFT_VIZ_RETENTION", default_value = "10m", value_parser = parse_duration)]
    pub viz_retention: Duration,

    /// Address of the admin server, shared by every component (default: port 9990).
    #[arg(long, env = "WEFT_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Lifetime of workload certificates.
    #[arg(long, env = "WEFT_IDENTITY_LEAF_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub leaf_lifetime: Duration,

    /// How long calls and streams may run after a shutdown signal before they are cut.
    #[arg(long, env = "WEFT_SHUTDOWN_GRACE_PERIOD", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
}

/// Why `all` did not start: one line naming the file, flag or component.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--store` is not a local cluster directory.
    #[error("--store: `all` runs a local cluster: expected local:DIR")]
    NotLocal,
    /// `cluster.json` is missing or unreadable.
    #[error("{path}: {source} (create the cluster with `weft install`)")]
    Cluster {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifests directory cannot be read.
    #[error("--store: {0}")]
    Store(weft_store::manifests::ReadError),
    /// The identity service did not start.
    #[error("identity: {0}")]
    Identity(#[from] identity::StartError),
    /// The destination service did not start.
    #[error("destination: {0}")]
    Destination(#[from] destination::StartError),
    /// The viz component did not start.
    #[error("viz: {0}")]
    Viz(#[from] viz::StartError),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// `run/control-plane.json` could not be written.
    #[error("{path}: cannot write: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl StartError {
    /// The exit status: 64 for configuration, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Identity(e) => e.exit_code(),
            Self::Destination(e) => e.exit_code(),
            Self::Viz(e) => e.exit_code(),
            Self::Bind(_) | Self::State { .. } => 1,
            Self::NotLocal | Self::Cluster { .. } | Self::Store(_) => identity::EX_USAGE,
        }
    }
}

/// The running control plane.
pub struct Running {
    cluster: ClusterDir,
    state: ControlPlaneState,
    identity: identity::Running,
    destination: destination::Running,
    viz: viz::Running,
    drain: watch::Sender<bool>,
}

impl Running {
    /// What was written to `run/control-plane.json`.
    pub fn state(&self) -> &ControlPlaneState {
        &self.state
    }

    /// Runs until `signal` resolves, then stops every component and removes
    /// `run/control-plane.json`.
    /// A component whose server stops on its own stops the others too, and the process
    /// fails: a control plane half-serving is worse than one that is visibly down.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let failed = tokio::select! {
            () = signal => None,
            e = self.identity.stopped() => Some(e),
            e = self.destination.stopped() => Some(e),
        };
        tracing::info!("shutting down");
        self.shutdown().await;
        failed.map_or(Ok(()), Err)
    }

    /// Stops every component (draining them) and removes `run/control-plane.json` if it is
    /// still this process's.
    pub async fn shutdown(self) {
        let _ = self.drain.send(true);
        tokio::join!(
            self.identity.shutdown(),
            self.destination.shutdown(),
            self.viz.shutdown()
        );
        let file = self.cluster.control_plane_file();
        if let Ok(Some(state)) = self.cluster.read_control_plane() {
            if state.pid == self.state.pid {
                let _ = std::fs::remove_file(&file);
            }
        }
    }
}

/// Reads the cluster, starts identity and destination on its files and addresses, serves the
/// shared admin port, and records the running control plane in `run/control-plane.json`.
pub async fn start(args: &AllArgs) -> Result<Running, StartError> {
    let StoreBackend::Local(dir) = &args.store else {
        return Err(StartError::NotLocal);
    };
    let (home, name) = split_dir(dir);
    let cluster = ClusterDir::new(&home, &name);
    let config = cluster
        .read_config()
        .map_err(|source| StartError::Cluster {
            path: cluster.config_file(),
            source,
        })?;

    let admin_addr = args.admin_listen.unwrap_or_else(|| config.admin_addr());
    let (admin_listener, admin_addr) = bind_one("--admin-listen", admin_addr).await?;
    let shared = SharedAdmin::new(admin_addr);

    let mesh = MeshArgs {
        trust_domain: config.trust_domain.clone(),
        control_plane_namespace: config.control_plane_namespace.clone(),
    };
    let identity_args = IdentityArgs {
        listen: args
            .identity_listen
            .unwrap_or_else(|| config.identity_addr()),
        admin_listen: admin_addr,
        trust_anchors: cluster.trust_anchors(),
        issuer_cert: cluster.issuer_cert(),
        issuer_key: cluster.issuer_key(),
        leaf_lifetime: args.leaf_lifetime,
        clock_skew: Duration::from_secs(20),
        token_key_file: cluster.token_key(),
        reload_interval: Duration::from_secs(1),
        shutdown_grace_period: args.shutdown_grace_period,
        mesh,
    };
    let identity = identity::start_in(&identity_args, None, Some(&shared)).await?;

    // The store logs every problem it finds in the manifests itself.
    let store = LocalStore::open(cluster.root()).map_err(StartError::Store)?;
    let store: Arc<dyn Store> = Arc::new(store);
    let destination_args = DestinationArgs {
        listen: args
            .destination_listen
            .unwrap_or_else(|| config.destination_addr()),
        admin_listen: admin_addr,
        store: args.store.clone(),
        manifests: Vec::new(),
        cluster_domain: config.trust_domain.clone(),
        shutdown_grace_period: args.shutdown_grace_period,
    };
    let destination =
        destination::start_in(&destination_args, store.clone(), Some(&shared)).await?;

    let viz_args = viz::VizArgs {
        viz_listen: args.viz_listen.unwrap_or_else(|| config.viz_addr()),
        viz_scrape_interval: args.viz_scrape_interval,
        viz_retention: args.viz_retention,
    };
    let tap = viz::TapIdentity {
        credentials: identity.credentials(),
        identity: config.viz_identity(),
    };
    let viz = viz::start(&viz_args, store, Some(tap)).await?;
    shared.add(viz.telemetry());

    let (drain, drain_rx) = watch::channel(false);
    let admin = Arc::new(shared.into_admin(drain_rx.clone()));
    tokio::spawn(
        admin::serve(admin_listener, admin, drain_rx)
            .instrument(tracing::info_span!("admin", server.addr = %admin_addr)),
    );

    let state = ControlPlaneState {
        pid: std::process::id(),
        started_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        identity: identity.grpc_addr(),
        destination: destination.grpc_addr(),
        viz: viz.addr(),
        admin: admin_addr,
    };
    cluster
        .write_control_plane(&state)
        .map_err(|source| StartError::State {
            path: cluster.control_plane_file(),
            source,
        })?;
    log_started(&config, &state);
    Ok(Running {
        cluster,
        state,
        identity,
        destination,
        viz,
        drain,
    })
}

fn log_started(config: &ClusterConfig, state: &ControlPlaneState) {
    tracing::info!(
        cluster = %config.name,
        identity = %state.identity,
        destination = %state.destination,
        viz = %state.viz,
        admin = %state.admin,
        "control plane running"
    );
}

/// `DIR` as (home, cluster name): the cluster's name is its directory's name.
fn split_dir(dir: &std::path::Path) -> (PathBuf, String) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let home = dir
        .parent()
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    (home, name)
}
