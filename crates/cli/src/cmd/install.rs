//! `weft install`, `weft uninstall` and `weft upgrade` for local-mesh clusters.
//!
//! `install` makes the cluster directory (`$WEFT_HOME/<context>`), puts the trust anchors and
//! issuer in it (given, or generated with a warning), and starts the control plane.
//! `install --crds` only prepares the directory: the local mesh reads every kind Weft knows
//! without CRDs. The Kubernetes flavour (printing manifests for `kubectl apply`) will be
//! selected by a flag of its own, so these forms keep their meaning.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use weft_model::Kind;

use crate::context::Global;
use crate::local::control_plane::{self, PkiSource};
use crate::local::probe;

/// `weft install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Only prepare the cluster directory for resources (the local mesh needs no CRDs: every
    /// kind Weft reads is built in). The control plane is not started.
    #[arg(long)]
    pub crds: bool,

    /// PEM trust anchors (root CAs) of the mesh, e.g. made with `step certificate create
    /// --profile root-ca` or `weft identity create-root`.
    #[arg(long, value_name = "FILE", requires_all = ["identity_issuer_certificate_file", "identity_issuer_key_file"])]
    pub identity_trust_anchors_file: Option<PathBuf>,

    /// PEM certificate of the issuer (intermediate CA), signed by the trust anchors.
    #[arg(long, value_name = "FILE", requires_all = ["identity_trust_anchors_file", "identity_issuer_key_file"])]
    pub identity_issuer_certificate_file: Option<PathBuf>,

    /// PEM private key of the issuer.
    #[arg(long, value_name = "FILE", requires_all = ["identity_trust_anchors_file", "identity_issuer_certificate_file"])]
    pub identity_issuer_key_file: Option<PathBuf>,

    /// The cluster's loopback network, `127.A.B.0/24` (default: the first free 127.0.N.0/24).
    /// Only used when the cluster is created.
    #[arg(long, value_name = "127.A.B.0/24", value_parser = parse_network)]
    pub network: Option<[u8; 2]>,
}

/// `weft uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also remove the cluster's directory: manifests, PKI, tokens and logs.
    #[arg(long)]
    pub purge: bool,
}

/// `weft upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// PEM certificate of the new issuer; it must chain to the cluster's trust anchors (or to
    /// `--identity-trust-anchors-file` when given).
    #[arg(long, value_name = "FILE", requires = "identity_issuer_key_file")]
    pub identity_issuer_certificate_file: Option<PathBuf>,

    /// PEM private key of the new issuer.
    #[arg(
        long,
        value_name = "FILE",
        requires = "identity_issuer_certificate_file"
    )]
    pub identity_issuer_key_file: Option<PathBuf>,

    /// A new trust anchor bundle (for anchor rotation: old and new anchors together). The
    /// issuer in use (or the new one) must chain to it.
    #[arg(long, value_name = "FILE")]
    pub identity_trust_anchors_file: Option<PathBuf>,
}

/// Parses `127.A.B.0/24` (or `127.A.B`).
pub fn parse_network(s: &str) -> Result<[u8; 2], String> {
    let bare = s.strip_suffix(".0/24").unwrap_or(s);
    let parts: Vec<&str> = bare.split('.').collect();
    match parts.as_slice() {
        ["127", a, b] => match (a.parse::<u8>(), b.parse::<u8>()) {
            (Ok(a), Ok(b)) => Ok([a, b]),
            _ => Err(format!("{s:?}: expected 127.A.B.0/24")),
        },
        _ => Err(format!(
            "{s:?}: expected a loopback /24 such as 127.0.1.0/24"
        )),
    }
}

/// Runs `weft install`.
pub fn install(args: &InstallArgs, global: &Global) -> anyhow::Result<()> {
    let dir = global.cluster_dir()?;
    let home = dir
        .root()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut err = std::io::stderr().lock();
    if args.crds {
        control_plane::ensure_config(&dir, &home, args.network)?;
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        writeln!(
            err,
            "cluster {:?}: {} is ready for resources; the local mesh reads {} without CRDs",
            dir.name(),
            dir.manifests_dir().display(),
            kinds.join(", ")
        )?;
        return Ok(());
    }
    let pki = PkiSource {
        trust_anchors: args.identity_trust_anchors_file.clone(),
        issuer_cert: args.identity_issuer_certificate_file.clone(),
        issuer_key: args.identity_issuer_key_file.clone(),
    };
    let config = control_plane::create_cluster(&dir, &home, args.network, &pki, &mut err)?;
    let state = control_plane::start(&dir, &mut err)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "cluster {:?} installed in {}\n  network      127.{}.{}.0/24\n  identity     {}\n  destination  {}\n  viz          {}\n  admin        {}\nnext: weft check{}",
        dir.name(),
        dir.root().display(),
        config.net[0],
        config.net[1],
        state.identity,
        state.destination,
        state.viz,
        state.admin,
        global.context_flag()
    )?;
    Ok(())
}

/// Runs `weft uninstall`.
pub fn uninstall(args: &UninstallArgs, global: &Global) -> anyhow::Result<()> {
    let dir = global.cluster_dir()?;
    if !dir.root().exists() {
        bail!(
            "cluster {:?} does not exist in {}",
            dir.name(),
            dir.root().display()
        );
    }
    let mut out = std::io::stdout().lock();
    control_plane::stop_cluster(&dir, &mut out)?;
    if args.purge {
        std::fs::remove_dir_all(dir.root())
            .with_context(|| format!("{}: cannot remove", dir.root().display()))?;
        writeln!(out, "removed {}", dir.root().display())?;
    }
    Ok(())
}

/// Runs `weft upgrade`: checks the new credentials against the anchors, swaps the files
/// atomically, and waits until the running identity service serves the new issuer.
pub fn upgrade(args: &UpgradeArgs, global: &Global) -> anyhow::Result<()> {
    let cluster = global.cluster()?;
    let dir = &cluster.dir;
    if args.identity_issuer_certificate_file.is_none() && args.identity_trust_anchors_file.is_none()
    {
        bail!("nothing to upgrade: give --identity-issuer-certificate-file and --identity-issuer-key-file (and/or --identity-trust-anchors-file)");
    }
    let read = |p: &PathBuf, flag: &str| {
        std::fs::read(p).with_context(|| format!("{flag} {}", p.display()))
    };
    let anchors_path = args
        .identity_trust_anchors_file
        .clone()
        .unwrap_or_else(|| dir.trust_anchors());
    let anchors = read(&anchors_path, "--identity-trust-anchors-file")?;
    let (cert_path, cert, key) = match (
        &args.identity_issuer_certificate_file,
        &args.identity_issuer_key_file,
    ) {
        (Some(c), Some(k)) => (
            c.clone(),
            read(c, "--identity-issuer-certificate-file")?,
            read(k, "--identity-issuer-key-file")?,
        ),
        _ => (
            dir.issuer_cert(),
            read(&dir.issuer_cert(), "issuer")?,
            read(&dir.issuer_key(), "issuer key")?,
        ),
    };
    control_plane::check_pki(&anchors, &cert, &key, &anchors_path, &cert_path)?;
    let mut out = std::io::stdout().lock();
    if args.identity_trust_anchors_file.is_some() {
        weft_store::write_atomic(&dir.trust_anchors(), &anchors)?;
        writeln!(
            out,
            "trust anchors updated ({})",
            dir.trust_anchors().display()
        )?;
    }
    if args.identity_issuer_certificate_file.is_some() {
        // Key first: the identity service only accepts a certificate whose key matches, so a
        // reload between the two writes keeps the old issuer rather than failing.
        control_plane::write_private(&dir.issuer_key(), &key)?;
        weft_store::write_atomic(&dir.issuer_cert(), &cert)?;
        writeln!(out, "issuer updated ({})", dir.issuer_cert().display())?;
    }
    match control_plane::running(dir) {
        Some(state) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            let expected = format!(
                "identity_issuer_expiry_timestamp_seconds {}",
                issuer_expiry(&cert)
            );
            loop {
                let serving = probe::get(state.admin, "/metrics", Duration::from_secs(1))
                    .is_ok_and(|(s, body)| s == 200 && body.lines().any(|l| l == expected));
                if serving {
                    writeln!(out, "the identity service now signs with the new issuer; proxies get new certificates at their next renewal (check with `weft check --proxy`)")?;
                    break;
                }
                if Instant::now() > deadline {
                    writeln!(
                        out,
                        "‼ the identity service has not reported the new issuer yet; see {}",
                        dir.logs_dir().join("control-plane.log").display()
                    )?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        None => writeln!(
            out,
            "the control plane is not running; it will use the new credentials when started"
        )?,
    }
    Ok(())
}

/// What the identity service's metrics show of an issuer: its expiry, in unix seconds.
fn issuer_expiry(cert_pem: &[u8]) -> String {
    weft_pki::parse_pem_certs(cert_pem)
        .ok()
        .and_then(|certs| certs.first().cloned())
        .and_then(|der| weft_pki::CertInfo::from_der(der.as_ref()).ok())
        .and_then(|info| info.not_after.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| format!("{}", d.as_secs()))
        .unwrap_or_default()
}
