//! The layout of a local-mesh cluster directory, shared by the `weft` CLI (which creates and
//! drives it) and `weft-controller all --store local:DIR` (which serves from it).
//!
//! ```text
//! $WEFT_HOME/                    default ~/.weft
//!   <cluster>/                   one per cluster: west, east, ...
//!     cluster.json               ClusterConfig: name, loopback network, trust domain
//!     manifests/*.yaml           the resources (LocalStore watches this)
//!     pki/ca.crt                 trust anchors (PEM bundle)
//!     pki/issuer.crt issuer.key  the issuer that signs workload certificates
//!     pki/token.key              the key workload tokens are minted with (HMAC)
//!     tokens/<identity>.token    each workload's bootstrap token
//!     run/control-plane.json     ControlPlaneState of the running control plane
//!     run/workloads/<ns>.<name>.json  WorkloadState of each running workload
//!     logs/                      control plane and workload logs
//! ```
//!
//! Every cluster owns a loopback /24 (`127.0.<n>.0/24`): the control plane listens on `.254`
//! with the standard ports, workloads get `.1`, `.2`, … so every proxy binds the standard
//! proxy ports on its own address.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::local::write_atomic;

/// The cluster `weft` uses when neither `--context` nor `WEFT_CONTEXT` names one.
pub const DEFAULT_CONTEXT: &str = "west";

/// Control plane ports (Linkerd's defaults), on the cluster's control-plane address.
pub const IDENTITY_PORT: u16 = 8080;
/// The destination service's gRPC port.
pub const DESTINATION_PORT: u16 = 8086;
/// The viz API's port.
pub const VIZ_PORT: u16 = 8085;
/// The control plane's admin port (`/metrics`, `/ready`, `/live`).
pub const ADMIN_PORT: u16 = 9990;

/// Proxy ports, on each workload's address.
pub const PROXY_OUTBOUND_PORT: u16 = 4140;
/// The proxy's inbound (mTLS) port.
pub const PROXY_INBOUND_PORT: u16 = 4143;
/// The proxy's tap port.
pub const PROXY_TAP_PORT: u16 = 4190;
/// The proxy's admin port.
pub const PROXY_ADMIN_PORT: u16 = 4191;

/// The service account the viz component's identity names (the only identity proxies accept on
/// their tap port).
pub const VIZ_SERVICE_ACCOUNT: &str = "viz";

/// `$WEFT_HOME`, else `~/.weft`.
pub fn weft_home() -> PathBuf {
    if let Some(home) = std::env::var_os("WEFT_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".weft")
}

/// A cluster name is a DNS label: it names a directory and appears in mirrored service names
/// (`podinfo-east`).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cluster name {name:?} must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
        ))
    }
}

/// One cluster's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDir {
    name: String,
    root: PathBuf,
}

impl ClusterDir {
    /// The directory of cluster `name` under `home` (it need not exist yet).
    pub fn new(home: &Path, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            root: home.join(name),
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the cluster has been created (its `cluster.json` exists).
    pub fn exists(&self) -> bool {
        self.config_file().is_file()
    }

    /// `cluster.json`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("cluster.json")
    }

    /// `manifests/`.
    pub fn manifests_dir(&self) -> PathBuf {
        crate::local::manifests_dir(&self.root)
    }

    /// `pki/`.
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }

    /// `pki/ca.crt`: the trust anchors.
    pub fn trust_anchors(&self) -> PathBuf {
        self.pki_dir().join("ca.crt")
    }

    /// `pki/issuer.crt`.
    pub fn issuer_cert(&self) -> PathBuf {
        self.pki_dir().join("issuer.crt")
    }

    /// `pki/issuer.key`.
    pub fn issuer_key(&self) -> PathBuf {
        self.pki_dir().join("issuer.key")
    }

    /// `pki/token.key`.
    pub fn token_key(&self) -> PathBuf {
        self.pki_dir().join("token.key")
    }

    /// `tokens/`.
    pub fn tokens_dir(&self) -> PathBuf {
        self.root.join("tokens")
    }

    /// `tokens/<identity>.token`.
    pub fn token_file(&self, identity: &str) -> PathBuf {
        self.tokens_dir().join(format!("{identity}.token"))
    }

    /// `run/`.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// `run/control-plane.json`.
    pub fn control_plane_file(&self) -> PathBuf {
        self.run_dir().join("control-plane.json")
    }

    /// `run/workloads/`.
    pub fn workloads_dir(&self) -> PathBuf {
        self.run_dir().join("workloads")
    }

    /// `run/workloads/<ns>.<name>.json`.
    pub fn workload_file(&self, namespace: &str, name: &str) -> PathBuf {
        self.workloads_dir()
            .join(format!("{namespace}.{name}.json"))
    }

    /// `logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Reads `cluster.json`.
    pub fn read_config(&self) -> io::Result<ClusterConfig> {
        read_json(&self.config_file())
    }

    /// Writes `cluster.json` atomically.
    pub fn write_config(&self, config: &ClusterConfig) -> io::Result<()> {
        write_json(&self.config_file(), config)
    }

    /// Reads `run/control-plane.json`; `None` when no control plane was started.
    pub fn read_control_plane(&self) -> io::Result<Option<ControlPlaneState>> {
        read_optional(&self.control_plane_file())
    }

    /// Writes `run/control-plane.json` atomically.
    pub fn write_control_plane(&self, state: &ControlPlaneState) -> io::Result<()> {
        write_json(&self.control_plane_file(), state)
    }

    /// Every `run/workloads/*.json`, sorted by namespace and name. A file that cannot be read
    /// is returned as an error entry so callers can report it.
    pub fn read_workloads(&self) -> io::Result<Vec<Result<WorkloadState, String>>> {
        let dir = self.workloads_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|p| read_json(&p).map_err(|e| format!("{}: {e}", p.display())))
            .collect())
    }

    /// Writes `run/workloads/<ns>.<name>.json` atomically.
    pub fn write_workload(&self, state: &WorkloadState) -> io::Result<()> {
        write_json(&self.workload_file(&state.namespace, &state.name), state)
    }
}

/// `cluster.json`: what a cluster is, fixed when it is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// The cluster's name (its directory's name).
    pub name: String,
    /// The cluster's loopback /24: `127.<net[0]>.<net[1]>.0/24`.
    pub net: [u8; 2],
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// The control plane's namespace, as it appears in identities.
    pub control_plane_namespace: String,
}

impl ClusterConfig {
    /// A cluster named `name` on `127.<net>.0/24` with Weft's default names.
    pub fn new(name: &str, net: [u8; 2]) -> Self {
        Self {
            name: name.to_owned(),
            net,
            trust_domain: "cluster.local".to_owned(),
            control_plane_namespace: "weft".to_owned(),
        }
    }

    /// The address of host `n` (1..=253 for workloads) in the cluster's network.
    pub fn ip(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.net[0], self.net[1], n)
    }

    /// The control plane's address (`.254`).
    pub fn control_plane_ip(&self) -> Ipv4Addr {
        self.ip(254)
    }

    /// The identity service's address.
    pub fn identity_addr(&self) -> SocketAddr {
        SocketAddr::from((self.control_plane_ip(), IDENTITY_PORT))
    }

    /// The destination service's address.
    pub fn destination_addr(&self) -> SocketAddr {
        SocketAddr::from((self.control_plane_ip(), DESTINATION_PORT))
    }

    /// The viz API's address.
    pub fn viz_addr(&self) -> SocketAddr {
        SocketAddr::from((self.control_plane_ip(), VIZ_PORT))
    }

    /// The control plane's admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((self.control_plane_ip(), ADMIN_PORT))
    }

    /// The identity of a workload running as service account `sa` in namespace `ns`.
    pub fn workload_identity(&self, sa: &str, ns: &str) -> String {
        format!(
            "{sa}.{ns}.serviceaccount.identity.{cp}.{td}",
            cp = self.control_plane_namespace,
            td = self.trust_domain
        )
    }

    /// The viz component's identity: the only client proxies accept on their tap port.
    pub fn viz_identity(&self) -> String {
        self.workload_identity(VIZ_SERVICE_ACCOUNT, &self.control_plane_namespace)
    }
}

/// `run/control-plane.json`: the running control plane, written by whoever started it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneState {
    /// The `weft-controller all` process.
    pub pid: u32,
    /// Unix seconds when it was started.
    pub started_at: u64,
    /// The identity service.
    pub identity: SocketAddr,
    /// The destination service.
    pub destination: SocketAddr,
    /// The viz API.
    pub viz: SocketAddr,
    /// The admin server.
    pub admin: SocketAddr,
}

/// `run/workloads/<ns>.<name>.json`: one workload started in the local mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadState {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name (its ExternalWorkload's name).
    pub name: String,
    /// The deployment it belongs to.
    pub deployment: String,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// Its proxy's identity, when it has a proxy.
    pub identity: Option<String>,
    /// The application process.
    pub app_pid: Option<u32>,
    /// The application's program name (to tell it from a process that reused its pid).
    #[serde(default)]
    pub app_program: Option<String>,
    /// The proxy process, when it has one.
    pub proxy_pid: Option<u32>,
}

impl WorkloadState {
    /// The proxy's admin address.
    pub fn proxy_admin(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PROXY_ADMIN_PORT))
    }

    /// The proxy's inbound address.
    pub fn proxy_inbound(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PROXY_INBOUND_PORT))
    }

    /// The proxy's tap address.
    pub fn proxy_tap(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PROXY_TAP_PORT))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<T> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

fn read_optional<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match read_json(path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert!(validate_name("west").is_ok());
        assert!(validate_name("east-2").is_ok());
        for bad in ["", "West", "-a", "a-", "a/b", "..", "a.b"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn addresses_and_identities() {
        let c = ClusterConfig::new("west", [0, 1]);
        assert_eq!(c.identity_addr().to_string(), "127.0.1.254:8080");
        assert_eq!(c.ip(3).to_string(), "127.0.1.3");
        assert_eq!(
            c.viz_identity(),
            "viz.weft.serviceaccount.identity.weft.cluster.local"
        );
    }

    #[test]
    fn state_round_trips_through_files() {
        let dir = std::env::temp_dir().join(format!("weft-cluster-test-{}", std::process::id()));
        let cluster = ClusterDir::new(&dir, "west");
        let config = ClusterConfig::new("west", [0, 7]);
        cluster.write_config(&config).expect("write config");
        assert_eq!(cluster.read_config().expect("read config"), config);
        assert!(cluster.read_control_plane().expect("no state").is_none());
        let w = WorkloadState {
            namespace: "emojivoto".into(),
            name: "web-0".into(),
            deployment: "web".into(),
            ip: config.ip(1),
            identity: Some(config.workload_identity("web", "emojivoto")),
            app_pid: Some(1),
            app_program: Some("weft-testapp".into()),
            proxy_pid: Some(2),
        };
        cluster.write_workload(&w).expect("write workload");
        std::fs::write(cluster.workloads_dir().join("broken.json"), b"{").expect("write");
        let read = cluster.read_workloads().expect("read workloads");
        assert_eq!(read.len(), 2);
        assert!(read[0].is_err(), "broken.json sorts first and is reported");
        assert_eq!(read[1].as_ref().expect("ok"), &w);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
