//! Test helpers (feature `test-util`): PKI files in a temporary directory, an in-process identity
//! service on port 0, a gRPC client, a tiny HTTP GET for the admin port, and a log capture;
//! [`destination`] has the destination service's.
//! Panics on any failure: these are for tests only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod destination;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_api::identity::identity_client::IdentityClient;
use weft_api::identity::{CertifyRequest, CertifyResponse};
use weft_pki::{
    create_issuer, create_root, generate_key_and_csr, verify_chain, CertAndKey, CertInfo,
    CertificateDer, ChainInfo, Identity, PrivateKey, TrustAnchors,
};

use crate::cli::{IdentityArgs, MeshArgs};
use crate::identity::{mint_token, start, Running};

/// The trust domain of test identities.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The control-plane namespace of test identities (the controller's default).
pub const CONTROL_PLANE_NS: &str = "weft";
/// A token key, as the CLI writes it (64 hex characters).
pub const TOKEN_KEY: &str = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a0c2e4f6a8b0d2f4e6a8c0e";

const YEAR: Duration = Duration::from_secs(8760 * 3600);

/// `<sa>.<ns>.serviceaccount.identity.weft.cluster.local`.
pub fn identity(sa: &str, ns: &str) -> String {
    Identity::new(sa, ns, CONTROL_PLANE_NS, TRUST_DOMAIN)
        .unwrap()
        .to_string()
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-controller-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
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
        assert!(
            out.status.success(),
            "openssl {} failed:\n{text}",
            args.join(" ")
        );
        text
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new root (10 years), as `weft identity create-root` makes it.
pub fn new_root(cn: &str) -> CertAndKey {
    create_root(cn, 10 * YEAR, SystemTime::now()).unwrap()
}

/// A new issuer (1 year) signed by `root`.
pub fn new_issuer(root: &CertAndKey) -> CertAndKey {
    create_issuer(
        "identity.weft.cluster.local",
        root.cert_pem.as_bytes(),
        root.key_pem.as_bytes(),
        YEAR,
        SystemTime::now(),
    )
    .unwrap()
}

/// The files of one identity service: `ca.crt` (anchors), `issuer.crt`, `issuer.key`,
/// `token.key`, in a temporary directory.
pub struct TestPki {
    pub dir: TempDir,
    pub root: CertAndKey,
    pub issuer: CertAndKey,
}

impl TestPki {
    /// A root and an issuer made with weft-pki.
    pub fn new() -> Self {
        let dir = TempDir::new();
        let root = new_root("root.weft.cluster.local");
        let issuer = new_issuer(&root);
        dir.write("ca.crt", &root.cert_pem);
        dir.write("issuer.crt", &issuer.cert_pem);
        dir.write("issuer.key", &issuer.key_pem);
        dir.write("token.key", format!("{TOKEN_KEY}\n"));
        Self { dir, root, issuer }
    }

    pub fn anchors_path(&self) -> PathBuf {
        self.dir.path("ca.crt")
    }

    pub fn issuer_cert_path(&self) -> PathBuf {
        self.dir.path("issuer.crt")
    }

    pub fn issuer_key_path(&self) -> PathBuf {
        self.dir.path("issuer.key")
    }

    pub fn token_key_path(&self) -> PathBuf {
        self.dir.path("token.key")
    }

    /// Arguments for an identity service on these files: ports 0 on 127.0.0.1, a 50 ms reload
    /// interval, a 2 s grace period, other settings at their defaults.
    pub fn args(&self) -> IdentityArgs {
        IdentityArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            trust_anchors: self.anchors_path(),
            issuer_cert: self.issuer_cert_path(),
            issuer_key: self.issuer_key_path(),
            leaf_lifetime: Duration::from_secs(24 * 3600),
            clock_skew: Duration::from_secs(20),
            token_key_file: self.token_key_path(),
            reload_interval: Duration::from_millis(50),
            shutdown_grace_period: Duration::from_secs(2),
            mesh: MeshArgs {
                trust_domain: TRUST_DOMAIN.to_owned(),
                control_plane_namespace: CONTROL_PLANE_NS.to_owned(),
            },
        }
    }

    /// Starts an identity service on these files.
    pub async fn start(&self) -> Running {
        start(&self.args()).await.expect("identity service starts")
    }

    /// Overwrites the issuer files in place (certificate, then key: not atomically).
    pub fn write_issuer(&self, issuer: &CertAndKey) {
        self.dir.write("issuer.crt", &issuer.cert_pem);
        self.dir.write("issuer.key", &issuer.key_pem);
    }

    /// Overwrites the anchors file with a bundle of `roots`.
    pub fn write_anchors(&self, roots: &[&CertAndKey]) {
        let bundle: String = roots.iter().map(|r| r.cert_pem.as_str()).collect();
        self.dir.write("ca.crt", bundle);
    }

    /// Replaces ca.crt, issuer.crt and issuer.key with a root and an issuer made by the openssl
    /// CLI, with the extensions of step's root-ca and intermediate-ca profiles.
    pub fn use_openssl_made_certs(&self) {
        let d = &self.dir;
        d.write("openssl.cnf", OPENSSL_CNF);
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
        let mut root = vec![
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "root_ca",
        ];
        root.extend(ec);
        root.extend([
            "-noenc",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=root.openssl.cluster.local",
        ]);
        d.openssl(&root);
        let mut req = vec!["req", "-new", "-config", "openssl.cnf"];
        req.extend(ec);
        req.extend([
            "-noenc",
            "-keyout",
            "issuer.key",
            "-out",
            "issuer.csr",
            "-subj",
            "/CN=identity.openssl.cluster.local",
        ]);
        d.openssl(&req);
        d.openssl(&[
            "x509",
            "-req",
            "-in",
            "issuer.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "intermediate_ca",
            "-out",
            "issuer.crt",
        ]);
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// The extension profiles of step's root-ca and intermediate-ca, as openssl config.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
[dn]
[root_ca]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[intermediate_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

/// A key and a Certify request for `identity` with a token minted under `token_key`.
pub fn certify_request(identity: &str, token_key: &str) -> (PrivateKey, CertifyRequest) {
    let id = Identity::parse(identity).unwrap();
    let (key, csr) = generate_key_and_csr(&id).unwrap();
    let req = CertifyRequest {
        identity: identity.to_owned(),
        token: mint_token(token_key.as_bytes(), identity).into_bytes(),
        certificate_signing_request: csr.as_ref().to_vec(),
    };
    (key, req)
}

/// A gRPC client of the identity service at `addr`.
pub async fn client(addr: SocketAddr) -> IdentityClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    IdentityClient::new(channel)
}

/// `GET path` over HTTP/1.1 with a 10 s bound: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8(buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("admin request timed out")
}

/// Polls `check` every 10 ms until it returns true; panics after `limit` naming `what`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything logged in this process (through the subscriber [`capture_logs`] installs).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The lines logged so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let buf = self.0.lock().unwrap();
        String::from_utf8_lossy(&buf)
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a global subscriber that records every event at INFO and above,
/// without colours, and returns the record.
pub fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let buf = logs.0.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(buf.clone()))
            .try_init();
        logs
    })
    .clone()
}

/// DER bytes as a certificate.
pub fn der(v: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from(v.to_vec())
}

/// The response's intermediates.
pub fn intermediates(rsp: &CertifyResponse) -> Vec<CertificateDer<'static>> {
    rsp.intermediate_certificates
        .iter()
        .map(|c| der(c))
        .collect()
}

/// Verifies the response's chain, now, against the anchors file as it is now, expecting `id`.
pub fn verify_against(pki: &TestPki, rsp: &CertifyResponse, id: &str) -> ChainInfo {
    let anchors = TrustAnchors::from_pem(&pki.dir.read("ca.crt")).unwrap();
    verify_chain(
        &der(&rsp.leaf_certificate),
        &intermediates(rsp),
        anchors.certs(),
        SystemTime::now(),
        Some(id),
    )
    .unwrap()
}

/// The authority key identifier of the leaf: which issuer signed it.
pub fn signer_of(rsp: &CertifyResponse) -> String {
    CertInfo::from_der(&rsp.leaf_certificate)
        .unwrap()
        .authority_key_id
        .expect("leaves carry an authority key identifier")
}

/// The subject key identifier of a CA.
pub fn key_id(cert: &CertAndKey) -> String {
    CertInfo::from_der(&cert.cert_der)
        .unwrap()
        .subject_key_id
        .unwrap()
}

/// The value of one sample line (`name` with its labels, exactly as printed).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// The admin port's `/metrics`.
pub async fn scrape_metrics(running: &Running) -> String {
    let (status, body) = http_get(running.admin_addr(), "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// One Certify call on a new connection.
pub async fn certify_once(
    running: &Running,
    req: CertifyRequest,
) -> Result<CertifyResponse, tonic::Status> {
    let mut c = client(running.grpc_addr()).await;
    c.certify(req).await.map(tonic::Response::into_inner)
}
