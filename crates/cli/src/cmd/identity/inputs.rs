//! Reading certificates, keys and anchor bundles from the files given on the command line. Every
//! error is one line that starts with the file's name: `ca.crt: not PEM: expected a "-----BEGIN
//! CERTIFICATE-----" block`.

use std::fmt::Display;
use std::path::Path;

use anyhow::anyhow;
use weft_pki::{parse_certs, parse_private_key, CertificateDer, PrivateKey, TrustAnchors};

use crate::files::read_input;

/// `<path>: <problem>`.
pub fn named(path: &Path, problem: impl Display) -> anyhow::Error {
    anyhow!("{}: {problem}", path.display())
}

/// The certificates of a PEM file (all CERTIFICATE blocks, in order) or of a DER file (one).
pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read_input(path)?;
    parse_certs(&bytes).map_err(|e| named(path, e))
}

/// The one private key of a PEM file (PKCS#8, SEC1 or PKCS#1; unencrypted).
pub fn read_key(path: &Path) -> anyhow::Result<(PrivateKey, Vec<u8>)> {
    let bytes = read_input(path)?;
    let key = parse_private_key(&bytes).map_err(|e| named(path, e))?;
    Ok((key, bytes))
}

/// A trust anchor bundle: every certificate must be a CA that may sign certificates, with a key
/// type anchors accept (ECDSA P-256/P-384, RSA 2048–8192, Ed25519).
pub fn read_anchors(path: &Path) -> anyhow::Result<TrustAnchors> {
    let certs = read_certs(path)?;
    TrustAnchors::from_der(certs).map_err(|e| named(path, e))
}
