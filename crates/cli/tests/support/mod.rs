//! Helpers for the tests that run the real `weft` binary: a scratch directory to run it in,
//! the openssl CLI in that directory, and checks on what a run printed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The result of one run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit status 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        &self.stdout
    }

    /// Asserts the failure contract for bad input: exit status 1, nothing on stdout, exactly one
    /// line on stderr that starts with `error: <file>: ` and contains `reason`.
    #[track_caller]
    pub fn fails_naming(&self, file: &str, reason: &str) {
        assert_eq!(self.code, 1, "expected exit status 1, got {self:#?}");
        assert_eq!(self.stdout, "", "nothing on stdout when failing: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "exactly one line on stderr: {self:#?}");
        let prefix = format!("error: {file}: ");
        assert!(
            lines[0].starts_with(&prefix),
            "the line must start with {prefix:?}: {self:#?}"
        );
        assert!(
            lines[0].contains(reason),
            "the line must say {reason:?}: {self:#?}"
        );
    }
}

/// A temporary directory in which `weft` and `openssl` run; file names in messages are then
/// the short relative names the tests pass.
pub struct Dir(tempfile::TempDir);

impl Dir {
    pub fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.join(name), contents).unwrap();
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.join(name)).unwrap()
    }

    pub fn exists(&self, name: &str) -> bool {
        self.join(name).exists()
    }

    /// Every entry of the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Runs `weft ARGS` here.
    pub fn weft(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(self.path())
            .env_remove("WEFT_CONTEXT")
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `openssl ARGS` here; returns success and stdout + stderr.
    pub fn try_openssl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("the openssl CLI must be installed (bash .ci/install-deps)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs `openssl ARGS` here, which must succeed; returns its output.
    #[track_caller]
    pub fn openssl(&self, args: &[&str]) -> String {
        let (ok, out) = self.try_openssl(args);
        assert!(ok, "openssl {} failed:\n{out}", args.join(" "));
        out
    }

    /// The spec's §2 with weft instead of step: ca.crt/ca.key (87600h) and issuer.crt/issuer.key
    /// (8760h).
    pub fn weft_root_and_issuer(&self) {
        self.weft(&[
            "identity",
            "create-root",
            "ca.crt",
            "ca.key",
            "--name",
            "root.linkerd.cluster.local",
            "--not-after",
            "87600h",
        ])
        .ok();
        self.weft(&[
            "identity",
            "create-issuer",
            "issuer.crt",
            "issuer.key",
            "--name",
            "identity.linkerd.cluster.local",
            "--ca",
            "ca.crt",
            "--ca-key",
            "ca.key",
            "--not-after",
            "8760h",
        ])
        .ok();
    }
}

/// openssl configuration with the extension sections operators use for a mesh PKI, and a
/// minimal `openssl ca` setup for certificates with explicit (past or future) dates.
pub const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
[dn]
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
[v3_intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,digitalSignature,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = DNS:web.emojivoto.serviceaccount.identity.linkerd.cluster.local,URI:spiffe://cluster.local/ns/emojivoto/sa/web
[ca]
default_ca = ca_default
[ca_default]
database = index.txt
new_certs_dir = .
rand_serial = yes
default_md = sha256
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
";

/// The workload identity used for leaves.
pub const WEB_ID: &str = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";

/// Operator-made certificates with the openssl CLI, in a [`Dir`].
pub struct Openssl<'a>(pub &'a Dir);

impl Openssl<'_> {
    fn setup(&self) {
        if !self.0.exists("openssl.cnf") {
            self.0.write("openssl.cnf", OPENSSL_CNF);
            self.0.write("index.txt", "");
        }
    }

    /// A P-256 key the way many guides make one: `openssl ecparam -genkey` (SEC1 `EC PRIVATE
    /// KEY`).
    pub fn ec_key(&self, key: &str) {
        self.0.openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key,
        ]);
    }

    /// An RSA key (`openssl genpkey`, PKCS#8).
    pub fn rsa_key(&self, key: &str, bits: u32) {
        let bits = format!("rsa_keygen_bits:{bits}");
        self.0.openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &bits,
            "-out",
            key,
        ]);
    }

    /// A self-signed root: `openssl req -x509 -new -key KEY -days 3650 -extensions v3_root`.
    pub fn root(&self, cert: &str, key: &str, subject: &str) {
        self.setup();
        self.0.openssl(&[
            "req",
            "-x509",
            "-new",
            "-config",
            "openssl.cnf",
            "-extensions",
            "v3_root",
            "-key",
            key,
            "-sha256",
            "-days",
            "3650",
            "-subj",
            subject,
            "-out",
            cert,
        ]);
    }

    /// A CSR for `key`.
    pub fn csr(&self, csr: &str, key: &str, subject: &str) {
        self.setup();
        self.0.openssl(&[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-key",
            key,
            "-subj",
            subject,
            "-out",
            csr,
        ]);
    }

    /// Signs a CSR with `openssl x509 -req -CA ... -extfile openssl.cnf -extensions SECTION`.
    pub fn sign(&self, cert: &str, csr: &str, ca: &str, ca_key: &str, section: &str) {
        self.setup();
        self.0.openssl(&[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "365",
            "-sha256",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            section,
            "-out",
            cert,
        ]);
    }

    /// Signs a CSR with `openssl ca` and explicit dates (`YYYYMMDDHHMMSSZ`), for expired and
    /// not-yet-valid certificates. `signer` is `(ca_cert, ca_key)`, or `(None, key)` to
    /// self-sign.
    pub fn sign_dated(
        &self,
        cert: &str,
        csr: &str,
        signer: (Option<&str>, &str),
        section: &str,
        (start, end): (&str, &str),
    ) {
        self.setup();
        let mut args = vec!["ca", "-batch", "-config", "openssl.cnf", "-notext"];
        match signer {
            (Some(ca_cert), ca_key) => args.extend(["-cert", ca_cert, "-keyfile", ca_key]),
            (None, key) => args.extend(["-selfsign", "-keyfile", key]),
        }
        args.extend([
            "-in",
            csr,
            "-out",
            cert,
            "-extensions",
            section,
            "-startdate",
            start,
            "-enddate",
            end,
        ]);
        self.0.openssl(&args);
    }

    /// A root (v3_root) and an intermediate signed by it (v3_intermediate), both P-256 with
    /// SEC1 keys: `<prefix>ca.crt/.key`, `<prefix>issuer.crt/.key`.
    pub fn root_and_intermediate(&self, prefix: &str) {
        let (ca, ca_key) = (format!("{prefix}ca.crt"), format!("{prefix}ca.key"));
        let (is, is_key, is_csr) = (
            format!("{prefix}issuer.crt"),
            format!("{prefix}issuer.key"),
            format!("{prefix}issuer.csr"),
        );
        self.ec_key(&ca_key);
        self.root(&ca, &ca_key, "/CN=root.linkerd.cluster.local");
        self.ec_key(&is_key);
        self.csr(&is_csr, &is_key, "/CN=identity.linkerd.cluster.local");
        self.sign(&is, &is_csr, &ca, &ca_key, "v3_intermediate");
    }

    /// A workload leaf signed by `ca`: `<name>.crt`, `<name>.key`.
    pub fn leaf(&self, name: &str, ca: &str, ca_key: &str) {
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        self.ec_key(&key);
        self.csr(&csr, &key, &format!("/CN={WEB_ID}"));
        self.sign(&crt, &csr, ca, ca_key, "v3_leaf");
    }
}
