//! A local cluster's control plane: creating the cluster directory and its PKI, starting
//! `weft-controller all` detached, finding it, and stopping it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use weft_pki::issue::{create_issuer, create_root, Issuer};
use weft_pki::TrustAnchors;
use weft_store::cluster::{ClusterConfig, ClusterDir, ControlPlaneState};

use super::{probe, process};

/// The control plane's program name.
pub const CONTROLLER: &str = "weft-controller";

/// How long `start` waits for the control plane to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a new cluster's trust anchor and issuer come from.
#[derive(Clone, Debug, Default)]
pub struct PkiSource {
    /// `--identity-trust-anchors-file`.
    pub trust_anchors: Option<PathBuf>,
    /// `--identity-issuer-certificate-file`.
    pub issuer_cert: Option<PathBuf>,
    /// `--identity-issuer-key-file`.
    pub issuer_key: Option<PathBuf>,
}

impl PkiSource {
    fn is_empty(&self) -> bool {
        self.trust_anchors.is_none() && self.issuer_cert.is_none() && self.issuer_key.is_none()
    }
}

/// Lifetimes of generated credentials (the spec's: a 10-year root kept offline, a 1-year
/// issuer).
const GENERATED_ROOT_LIFETIME: Duration = Duration::from_secs(87_600 * 3600);
const GENERATED_ISSUER_LIFETIME: Duration = Duration::from_secs(8_760 * 3600);

/// Creates the cluster directory (or completes one made by `weft install --crds`): cluster.json
/// on a free loopback network, manifests/, the PKI (copied from `pki` after checking it, or
/// generated with a warning on `err`), and the token key. An existing cluster's PKI is kept;
/// given files that differ from it are refused (that is `weft upgrade`'s job).
pub fn create_cluster(
    dir: &ClusterDir,
    home: &Path,
    net: Option<[u8; 2]>,
    pki: &PkiSource,
    err: &mut dyn Write,
) -> anyhow::Result<ClusterConfig> {
    let config = ensure_config(dir, home, net)?;
    std::fs::create_dir_all(dir.pki_dir())
        .with_context(|| format!("{}", dir.pki_dir().display()))?;
    install_pki(dir, &config, pki, err)?;
    if !dir.token_key().exists() {
        let key = random_hex(32)?;
        write_private(&dir.token_key(), format!("{key}\n").as_bytes())?;
    }
    Ok(config)
}

/// Creates `cluster.json` (on `net`, or the first free loopback network) and `manifests/`
/// unless they exist; returns the cluster's configuration.
pub fn ensure_config(
    dir: &ClusterDir,
    home: &Path,
    net: Option<[u8; 2]>,
) -> anyhow::Result<ClusterConfig> {
    let config = match dir.read_config() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let net = match net {
                Some(n) => n,
                None => free_network(home)?,
            };
            let config = ClusterConfig::new(dir.name(), net);
            dir.write_config(&config)
                .with_context(|| format!("{}", dir.config_file().display()))?;
            config
        }
        Err(e) => return Err(e).context(format!("cluster {:?}", dir.name())),
    };
    std::fs::create_dir_all(dir.manifests_dir())
        .with_context(|| format!("{}", dir.manifests_dir().display()))?;
    Ok(config)
}

fn install_pki(
    dir: &ClusterDir,
    config: &ClusterConfig,
    pki: &PkiSource,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let have = dir.trust_anchors().exists() && dir.issuer_cert().exists();
    if pki.is_empty() {
        if have {
            return Ok(());
        }
        let now = SystemTime::now();
        let td = &config.trust_domain;
        let root = create_root(&format!("root.{td}"), GENERATED_ROOT_LIFETIME, now)?;
        let issuer = create_issuer(
            &format!("identity.{}.{td}", config.control_plane_namespace),
            root.cert_pem.as_bytes(),
            root.key_pem.as_bytes(),
            GENERATED_ISSUER_LIFETIME,
            now,
        )?;
        weft_store::write_atomic(&dir.trust_anchors(), root.cert_pem.as_bytes())?;
        write_private(&dir.pki_dir().join("ca.key"), root.key_pem.as_bytes())?;
        write_private(&dir.issuer_key(), issuer.key_pem.as_bytes())?;
        weft_store::write_atomic(&dir.issuer_cert(), issuer.cert_pem.as_bytes())?;
        writeln!(
            err,
            "‼ generated a trust anchor and issuer for cluster {:?} in {}: fine for a local mesh; production must bring its own (--identity-trust-anchors-file, --identity-issuer-certificate-file, --identity-issuer-key-file)",
            dir.name(),
            dir.pki_dir().display()
        )?;
        return Ok(());
    }
    let (Some(anchors_path), Some(cert_path), Some(key_path)) =
        (&pki.trust_anchors, &pki.issuer_cert, &pki.issuer_key)
    else {
        bail!("--identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file go together: give all three, or none to generate them");
    };
    let anchors = read(anchors_path, "--identity-trust-anchors-file")?;
    let cert = read(cert_path, "--identity-issuer-certificate-file")?;
    let key = read(key_path, "--identity-issuer-key-file")?;
    check_pki(&anchors, &cert, &key, anchors_path, cert_path)?;
    if have {
        let same = std::fs::read(dir.trust_anchors()).ok().as_deref() == Some(&anchors[..])
            && std::fs::read(dir.issuer_cert()).ok().as_deref() == Some(&cert[..]);
        if !same {
            bail!(
                "cluster {:?} already has a trust anchor and issuer ({}); rotate the issuer with `weft upgrade`, or remove the cluster with `weft uninstall --purge`",
                dir.name(),
                dir.pki_dir().display()
            );
        }
        return Ok(());
    }
    weft_store::write_atomic(&dir.trust_anchors(), &anchors)?;
    write_private(&dir.issuer_key(), &key)?;
    weft_store::write_atomic(&dir.issuer_cert(), &cert)?;
    Ok(())
}

/// Checks that `cert`+`key` form an issuer that chains to `anchors` and is valid now.
pub fn check_pki(
    anchors: &[u8],
    cert: &[u8],
    key: &[u8],
    anchors_path: &Path,
    cert_path: &Path,
) -> anyhow::Result<()> {
    TrustAnchors::from_pem(anchors)
        .with_context(|| format!("{}: not usable trust anchors", anchors_path.display()))?;
    Issuer::load(cert, key, anchors, SystemTime::now()).with_context(|| {
        format!(
            "{}: not a usable issuer for the trust anchors in {}",
            cert_path.display(),
            anchors_path.display()
        )
    })?;
    Ok(())
}

fn read(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
}

/// Writes a secret readable by its owner only, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("{}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// `n` random bytes, hex.
pub fn random_hex(n: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("/dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The first loopback network `127.0.N.0/24` (N = 1..=250) that no cluster in `home` uses and
/// whose control-plane address is free.
pub fn free_network(home: &Path) -> anyhow::Result<[u8; 2]> {
    let mut used = Vec::new();
    if let Ok(entries) = std::fs::read_dir(home) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(c) = ClusterDir::new(home, &name).read_config() {
                used.push(c.net);
            }
        }
    }
    for n in 1..=250u8 {
        let net = [0, n];
        if used.contains(&net) {
            continue;
        }
        let probe = ClusterConfig::new("probe", net);
        if std::net::TcpListener::bind(probe.destination_addr()).is_ok() {
            return Ok(net);
        }
    }
    bail!("no free loopback network 127.0.N.0/24 (N = 1..250) for a new cluster")
}

/// The running control plane of `dir`, if its recorded process is alive.
pub fn running(dir: &ClusterDir) -> Option<ControlPlaneState> {
    let state = dir.read_control_plane().ok()??;
    process::is_running(state.pid, CONTROLLER).then_some(state)
}

/// Starts `weft-controller all` for the cluster unless it runs, and waits until it is ready,
/// printing progress on `err`.
pub fn start(dir: &ClusterDir, err: &mut dyn Write) -> anyhow::Result<ControlPlaneState> {
    if let Some(state) = running(dir) {
        if probe::ready(state.admin) {
            writeln!(
                err,
                "control plane of {:?} already running (pid {}, admin {})",
                dir.name(),
                state.pid,
                state.admin
            )?;
            return Ok(state);
        }
    }
    let log = dir.logs_dir().join("control-plane.log");
    let mut command = Command::new(process::binary(CONTROLLER));
    command
        .arg("all")
        .arg("--store")
        .arg(format!("local:{}", dir.root().display()));
    let mut child = process::spawn_detached(command, &log)?;
    let pid = child.id();
    write!(
        err,
        "starting the control plane of {:?} (pid {pid})",
        dir.name()
    )?;
    err.flush()?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last_dot = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            writeln!(err)?;
            bail!(
                "the control plane exited ({status}) before it was ready; {}:\n{}",
                log.display(),
                process::log_tail(&log, 5)
            );
        }
        if let Ok(Some(state)) = dir.read_control_plane() {
            if state.pid == pid && probe::ready(state.admin) {
                writeln!(err, " ready")?;
                return Ok(state);
            }
        }
        if Instant::now() > deadline {
            writeln!(err)?;
            process::stop(pid, CONTROLLER, Duration::from_secs(2));
            bail!(
                "the control plane was not ready within {}s; {}:\n{}",
                START_TIMEOUT.as_secs(),
                log.display(),
                process::log_tail(&log, 5)
            );
        }
        if last_dot.elapsed() > Duration::from_secs(1) {
            write!(err, ".")?;
            err.flush()?;
            last_dot = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the cluster's control plane; returns whether one was running.
pub fn stop(dir: &ClusterDir) -> anyhow::Result<bool> {
    let Some(state) = dir.read_control_plane().ok().flatten() else {
        return Ok(false);
    };
    let was = process::stop(state.pid, CONTROLLER, Duration::from_secs(10));
    let _ = std::fs::remove_file(dir.control_plane_file());
    Ok(was)
}

/// Stops the cluster's workloads and control plane, reporting on `out` (`weft uninstall`,
/// `weft demo stop`).
pub fn stop_cluster(dir: &ClusterDir, out: &mut dyn Write) -> anyhow::Result<()> {
    let workloads = super::workload::stop_all(dir)?;
    writeln!(out, "stopped {workloads} workload(s)")?;
    if stop(dir)? {
        writeln!(out, "stopped the control plane of {:?}", dir.name())?;
    } else {
        writeln!(out, "the control plane of {:?} was not running", dir.name())?;
    }
    Ok(())
}
