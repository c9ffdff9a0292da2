//! The identity service's signing credentials: the trust anchor bundle and the issuer that chains
//! to it, loaded from three files and validated together.
//!
//! Loading is split in two so that the part that decides is pure: [`read`] does the file I/O,
//! [`Credentials::build`] parses and checks bytes at a given time. Every error names the file at
//! fault and the problem, in one line: `/etc/weft/issuer.crt: certificate "CN=…" expired at …`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use weft_pki::{
    fmt_time, parse_pem_certs, parse_private_key, CertInfo, Issuer, PkiError, TrustAnchors,
};

/// Where the credentials live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialPaths {
    /// The trust anchor bundle (PEM, one or more CA certificates).
    pub trust_anchors: PathBuf,
    /// The issuer certificate (PEM, optionally followed by further intermediates).
    pub issuer_cert: PathBuf,
    /// The issuer's private key (PEM).
    pub issuer_key: PathBuf,
}

/// The contents of the three files.
#[derive(Clone)]
pub struct Contents {
    /// The trust anchor bundle.
    pub trust_anchors: Vec<u8>,
    /// The issuer certificate.
    pub issuer_cert: Vec<u8>,
    /// The issuer key.
    pub issuer_key: Vec<u8>,
}

impl fmt::Debug for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Contents")
            .field("trust_anchors", &self.trust_anchors.len())
            .field("issuer_cert", &self.issuer_cert.len())
            .field("issuer_key", &"<redacted>")
            .finish()
    }
}

/// SHA-256 of each file's contents: what the reloader compares to notice a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Of the trust anchor bundle.
    pub trust_anchors: [u8; 32],
    /// Of the issuer certificate.
    pub issuer_cert: [u8; 32],
    /// Of the issuer key.
    pub issuer_key: [u8; 32],
}

impl Contents {
    /// The fingerprint of these contents.
    pub fn fingerprint(&self) -> Fingerprint {
        let h = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        Fingerprint {
            trust_anchors: h(&self.trust_anchors),
            issuer_cert: h(&self.issuer_cert),
            issuer_key: h(&self.issuer_key),
        }
    }
}

/// A credentials problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct LoadError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    #[source]
    pub problem: Problem,
}

/// What is wrong with a credentials file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// It cannot be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// Its contents are refused.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

impl LoadError {
    fn new(path: &Path, problem: impl Into<Problem>) -> Self {
        Self {
            path: path.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Reads the three files (blocking I/O: call it from a blocking task in async code).
pub fn read(paths: &CredentialPaths) -> Result<Contents, LoadError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| LoadError::new(p, Problem::Read(e)));
    Ok(Contents {
        trust_anchors: read(&paths.trust_anchors)?,
        issuer_cert: read(&paths.issuer_cert)?,
        issuer_key: read(&paths.issuer_key)?,
    })
}

/// A validated issuer and the anchors it chains to: what the identity service signs with.
pub struct Credentials {
    /// The issuer (validated against `anchors` when loaded).
    pub issuer: Issuer,
    /// The trust anchor bundle.
    pub anchors: TrustAnchors,
    /// The fingerprint of the files these were loaded from.
    pub fingerprint: Fingerprint,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("issuer", &self.issuer.info().subject)
            .field("issuer_not_after", &fmt_time(self.issuer.not_after()))
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses and validates file contents at `now`: the bundle must hold valid CA certificates;
    /// the issuer must be an ECDSA P-256 CA whose key matches, that chains to one of the anchors
    /// and is valid (as is its chain) at `now`.
    pub fn build(
        paths: &CredentialPaths,
        contents: &Contents,
        now: SystemTime,
    ) -> Result<Self, LoadError> {
        let anchors = TrustAnchors::from_pem(&contents.trust_anchors)
            .map_err(|e| LoadError::new(&paths.trust_anchors, e))?;
        let certs = parse_pem_certs(&contents.issuer_cert)
            .map_err(|e| LoadError::new(&paths.issuer_cert, e))?;
        let key = parse_private_key(&contents.issuer_key)
            .map_err(|e| LoadError::new(&paths.issuer_key, e))?;
        let issuer = Issuer::from_parts(certs, key, anchors.clone(), now).map_err(|e| {
            // A key that does not match is the key file's problem (most likely the wrong file);
            // everything else is about the certificate and its chain.
            let path = match e {
                PkiError::KeyMismatch { .. } => &paths.issuer_key,
                _ => &paths.issuer_cert,
            };
            LoadError::new(path, e)
        })?;
        Ok(Self {
            issuer,
            anchors,
            fingerprint: contents.fingerprint(),
        })
    }

    /// Reads and builds in one go (start-up).
    pub fn load(paths: &CredentialPaths, now: SystemTime) -> Result<Self, LoadError> {
        Self::build(paths, &read(paths)?, now)
    }

    /// Why certificates cannot be signed at `now`, if they cannot: some certificate on the
    /// issuer's chain (issuer, intermediates, anchor) is expired or not valid yet.
    pub fn unusable_at(&self, now: SystemTime) -> Option<String> {
        self.issuer
            .chain()
            .chain
            .iter()
            .find(|c| !c.is_valid_at(now))
            .map(|c| describe_invalid(c, now))
    }

    /// The earliest expiry in the trust anchor bundle.
    pub fn anchors_expiry(&self) -> Option<SystemTime> {
        self.anchors.earliest_expiry()
    }
}

fn describe_invalid(c: &CertInfo, now: SystemTime) -> String {
    if now > c.not_after {
        format!(
            "certificate {:?} on the issuer's chain expired at {}",
            c.subject,
            fmt_time(c.not_after)
        )
    } else {
        format!(
            "certificate {:?} on the issuer's chain is not valid until {}",
            c.subject,
            fmt_time(c.not_before)
        )
    }
}
