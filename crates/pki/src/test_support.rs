//! Helpers shared by the unit tests: fixed clocks, a root → issuer → leaf hierarchy, hand-made
//! certificates for the odd cases, and an `openssl` runner in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::CertificateDer;

use crate::identity::Identity;
use crate::issue::{create_issuer, create_root, CertAndKey, Issuer};
use crate::time::to_offset;

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);
pub const YEAR: Duration = Duration::from_secs(8760 * 3600);

/// A fixed "now": 2030-01-01T00:00:00Z.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

pub fn web() -> Identity {
    Identity::new("web", "emojivoto", "linkerd", "cluster.local").unwrap()
}

pub fn voting() -> Identity {
    Identity::new("voting", "emojivoto", "linkerd", "cluster.local").unwrap()
}

/// A root (10 years) and an issuer (1 year) made at `now`, as in the spec's §2.
pub struct Pki {
    pub root: CertAndKey,
    pub issuer: CertAndKey,
}

impl Pki {
    pub fn new(now: SystemTime) -> Self {
        Self::named("root.linkerd.cluster.local", now)
    }

    pub fn named(root_cn: &str, now: SystemTime) -> Self {
        let root = create_root(root_cn, 10 * YEAR, now).unwrap();
        let issuer = create_issuer(
            "identity.linkerd.cluster.local",
            root.cert_pem.as_bytes(),
            root.key_pem.as_bytes(),
            YEAR,
            now,
        )
        .unwrap();
        Self { root, issuer }
    }

    pub fn load(&self, now: SystemTime) -> Issuer {
        Issuer::load(
            self.issuer.cert_pem.as_bytes(),
            self.issuer.key_pem.as_bytes(),
            self.root.cert_pem.as_bytes(),
            now,
        )
        .unwrap()
    }

    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.cert_der.clone()
    }

    pub fn issuer_der(&self) -> CertificateDer<'static> {
        self.issuer.cert_der.clone()
    }
}

/// Hand-made certificate parameters for cases Weft itself never produces.
pub fn params(
    cn: &str,
    is_ca: IsCa,
    not_before: SystemTime,
    not_after: SystemTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = is_ca;
    p.not_before = to_offset(not_before).unwrap();
    p.not_after = to_offset(not_after).unwrap();
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(crate::issue::random_serial().unwrap());
    if matches!(is_ca, IsCa::Ca(_)) {
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    p
}

pub fn ca(path_len: u8) -> IsCa {
    IsCa::Ca(BasicConstraints::Constrained(path_len))
}

/// A certificate for `params` with a fresh P-256 key, signed by `signer` (cert PEM + key).
pub fn sign(
    params: &CertificateParams,
    signer: Option<(&CertificateDer<'_>, &KeyPair)>,
) -> (CertificateDer<'static>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = match signer {
        None => params.self_signed(&key).unwrap(),
        Some((der, signer_key)) => {
            let issuer = rcgen::Issuer::from_ca_cert_der(der, signer_key).unwrap();
            params.signed_by(&key, &issuer).unwrap()
        }
    };
    (cert.der().clone(), key)
}

/// A leaf with the given DNS SAN, signed by `signer`.
pub fn leaf_params(name: &str, not_before: SystemTime, not_after: SystemTime) -> CertificateParams {
    let mut p = params(name, IsCa::ExplicitNoCa, not_before, not_after);
    p.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
    p
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-pki-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// Runs `openssl ARGS` in this directory; panics with its output if it fails.
    pub fn openssl(&self, args: &[&str]) -> String {
        let (ok, out) = self.try_openssl(args);
        assert!(ok, "openssl {} failed:\n{out}", args.join(" "));
        out
    }

    /// Runs `openssl ARGS` in this directory; returns success and combined output.
    pub fn try_openssl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("the openssl CLI must be installed to run these tests");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
