//! `weft identity create-root` and `create-issuer`: a trust anchor and an issuer, as step's
//! `root-ca` and `intermediate-ca` profiles make them, written atomically (the key with mode
//! 0600), never over existing files unless `--force`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::bail;
use clap::Args;
use weft_pki::{certs_to_pem, create_issuer as pki_create_issuer, create_root as pki_create_root};
use weft_pki::{fmt_time, CertAndKey, CertInfo, Issuer, PkiError, TrustAnchors};

use super::expiry::span;
use super::inputs::{named, read_certs, read_key};
use crate::duration::NotAfter;
use crate::files::{check_new, same_path, write_new, NewFile, CERT_MODE, KEY_MODE};

/// Arguments of `weft identity create-root`.
#[derive(Debug, Args)]
pub struct CreateRootArgs {
    /// Where to write the root certificate (PEM), e.g. ca.crt.
    #[arg(value_name = "CERT_FILE")]
    pub cert: PathBuf,

    /// Where to write the root's private key (unencrypted PKCS#8 PEM, mode 0600), e.g. ca.key.
    #[arg(value_name = "KEY_FILE")]
    pub key: PathBuf,

    /// The root's common name (its subject is CN=<name>).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "root.linkerd.cluster.local"
    )]
    pub name: String,

    /// When the root expires: a duration from now (87600h is 10 years; 24h, 1m30s, 300ms, 1.5h,
    /// 3650d) or an RFC 3339 time (2036-01-01T00:00:00Z).
    #[arg(long, value_name = "DURATION|TIME", default_value = "87600h")]
    pub not_after: NotAfter,

    /// Replace CERT_FILE and KEY_FILE if they exist.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `weft identity create-issuer`.
#[derive(Debug, Args)]
pub struct CreateIssuerArgs {
    /// Where to write the issuer certificate (PEM), e.g. issuer.crt.
    #[arg(value_name = "CERT_FILE")]
    pub cert: PathBuf,

    /// Where to write the issuer's private key (unencrypted PKCS#8 PEM, mode 0600), e.g.
    /// issuer.key.
    #[arg(value_name = "KEY_FILE")]
    pub key: PathBuf,

    /// The certificate of the CA that signs the issuer (PEM or DER), normally the trust anchor,
    /// e.g. ca.crt. Its first certificate is the signer; every certificate in it is taken as a
    /// trust anchor for the final check.
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,

    /// The CA's private key (PEM: PKCS#8, EC or RSA; unencrypted), e.g. ca.key.
    #[arg(long, value_name = "FILE")]
    pub ca_key: PathBuf,

    /// The issuer's common name (its subject is CN=<name>).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "identity.linkerd.cluster.local"
    )]
    pub name: String,

    /// When the issuer expires: a duration from now (8760h is one year) or an RFC 3339 time. It
    /// is cut to the CA's own expiry if that comes first (with a warning).
    #[arg(long, value_name = "DURATION|TIME", default_value = "8760h")]
    pub not_after: NotAfter,

    /// Replace CERT_FILE and KEY_FILE if they exist.
    #[arg(long)]
    pub force: bool,
}

/// `weft identity create-root`.
pub fn create_root(args: &CreateRootArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    check_new(&[&args.cert, &args.key], args.force)?;
    let now = SystemTime::now();
    let lifetime = lifetime(args.not_after, now)?;
    let made = pki_create_root(&args.name, lifetime, now).map_err(|e| argument_error(&e))?;
    write_pair(&args.cert, &args.key, &made, args.force)?;
    let info = CertInfo::from_der(made.cert_der.as_ref())?;
    writeln!(
        out,
        "Created trust anchor {:?} ({}, CA pathlen:1), valid until {} ({}).",
        info.subject,
        info.key_type,
        fmt_time(info.not_after),
        span(remaining(&info, now)),
    )?;
    writeln!(out, "Certificate: {}", args.cert.display())?;
    writeln!(
        out,
        "Private key: {} (unencrypted, mode 0600; keep it offline)",
        args.key.display()
    )?;
    Ok(())
}

/// `weft identity create-issuer`.
pub fn create_issuer(args: &CreateIssuerArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    check_new(&[&args.cert, &args.key], args.force)?;
    for output in [&args.cert, &args.key] {
        for input in [&args.ca, &args.ca_key] {
            if same_path(output, input) {
                bail!(
                    "{}: is an input (--ca or --ca-key) too; write the issuer to another file",
                    output.display()
                );
            }
        }
    }
    let ca_certs = read_certs(&args.ca)?;
    let (_, ca_key_pem) = read_key(&args.ca_key)?;
    let now = SystemTime::now();
    let lifetime = lifetime(args.not_after, now)?;

    // A CA key of a type the identity service refuses in a trust anchor (P-521, RSA 1024): say
    // so up front; weft-pki would otherwise fail later with a message about the CA's name.
    if let Err(e @ PkiError::UnsupportedKey { .. }) = TrustAnchors::from_der(ca_certs.clone()) {
        return Err(named(
            &args.ca,
            format!("the identity service would not accept this CA as a trust anchor: {e}"),
        ));
    }
    // The PEM of what was read, so that a DER --ca works too.
    let ca_pem = certs_to_pem(&ca_certs);
    let made = pki_create_issuer(&args.name, ca_pem.as_bytes(), &ca_key_pem, lifetime, now)
        .map_err(|e| match e {
            PkiError::KeyMismatch { subject } => named(
                &args.ca_key,
                format!(
                    "is not the private key of {} ({subject:?}): their public keys differ",
                    args.ca.display()
                ),
            ),
            PkiError::InvalidName { .. } | PkiError::InvalidValidity { .. } => argument_error(&e),
            PkiError::Sign(_) => anyhow::Error::new(e),
            other => named(&args.ca, other),
        })?;

    // What the identity service will do with it: load it against the trust anchors. Refuse to
    // write an issuer it would refuse (say, one under an anchor whose key type it does not take).
    Issuer::load(
        made.cert_pem.as_bytes(),
        made.key_pem.as_bytes(),
        ca_pem.as_bytes(),
        now,
    )
    .map_err(|e| {
        named(
            &args.ca,
            format!("the identity service would refuse an issuer signed by this CA: {e}"),
        )
    })?;

    write_pair(&args.cert, &args.key, &made, args.force)?;
    let info = CertInfo::from_der(made.cert_der.as_ref())?;
    let asked = now.checked_add(lifetime);
    if asked.is_some_and(|asked| made.not_after + Duration::from_secs(1) < asked) {
        eprintln!(
            "warning: {}: valid only until {}, when the CA in {} expires; the identity service \
             cannot use it after that",
            args.cert.display(),
            fmt_time(made.not_after),
            args.ca.display()
        );
    }
    writeln!(
        out,
        "Created issuer {:?} ({}, CA pathlen:0) signed by {:?}, valid until {} ({}).",
        info.subject,
        info.key_type,
        info.issuer,
        fmt_time(info.not_after),
        span(remaining(&info, now)),
    )?;
    writeln!(out, "Certificate: {}", args.cert.display())?;
    writeln!(
        out,
        "Private key: {} (unencrypted, mode 0600)",
        args.key.display()
    )?;
    Ok(())
}

/// The lifetime `--not-after` asks for.
fn lifetime(not_after: NotAfter, now: SystemTime) -> anyhow::Result<Duration> {
    not_after
        .lifetime_from(now)
        .map_err(|e| anyhow::anyhow!("--not-after: {e}"))
}

/// Errors about `--name` or `--not-after` rather than about a file.
fn argument_error(e: &PkiError) -> anyhow::Error {
    match e {
        PkiError::InvalidName { .. } => anyhow::anyhow!("--name: {e}"),
        PkiError::InvalidValidity { .. } => anyhow::anyhow!("--not-after: {e}"),
        _ => anyhow::anyhow!("{e}"),
    }
}

/// Writes a certificate and its key together, or neither, with Unix line endings as step and
/// openssl write them (weft-pki's key PEM currently comes with CRLF line endings).
fn write_pair(cert: &Path, key: &Path, made: &CertAndKey, force: bool) -> anyhow::Result<()> {
    let key_pem = made.key_pem.replace("\r\n", "\n");
    let cert_pem = made.cert_pem.replace("\r\n", "\n");
    write_new(
        &[
            NewFile {
                path: key,
                contents: key_pem.as_bytes(),
                mode: KEY_MODE,
            },
            NewFile {
                path: cert,
                contents: cert_pem.as_bytes(),
                mode: CERT_MODE,
            },
        ],
        force,
    )
}

/// Time left until `info` expires (zero if it has).
fn remaining(info: &CertInfo, now: SystemTime) -> Duration {
    info.not_after.duration_since(now).unwrap_or_default()
}
