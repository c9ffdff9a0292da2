//! Helpers for Weft's end-to-end tests: build the binaries once, make a PKI in a temporary
//! directory, start the identity service, proxies and test apps as real processes on loopback,
//! and read their metrics.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of a workspace binary, built (once per test process) with the same profile as the tests.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace()).args([
            "build",
            "-q",
            "-p",
            "weft-proxy",
            "-p",
            "weft-controller",
            "-p",
            "weft-testapp",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "building the binaries failed");
        dir
    });
    let p = dir.join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// A free port on 127.0.0.1, chosen outside Linux's ephemeral range (32768-60999) so that client
/// sockets of parallel tests (the 10,000-connection test opens many) cannot take it between this
/// check and the proxy's bind.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    // Ports are handed out in sequence from a random start, so one process never gets the same
    // port twice (random picks collided: two listeners of one proxy were given one port).
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        (h.finish() % 12_000) as u32
    });
    for _ in 0..1000 {
        let port = 20_000 + ((start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

/// A free address on 127.0.0.1 (see [`free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `f` until it is true or `timeout` passes (then panics with `what`).
pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A minimal HTTP/1.0 request: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {buf:?}")))?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Sum of every series of `name` whose labels contain all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A child process, killed on drop, with its log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            log,
            name: name.to_string(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// A trust anchor, an issuer and a token key in a temporary directory.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// The anchors bundle the control plane and proxies read (rewritten during rotation).
    pub anchors: PathBuf,
    pub issuer_cert: PathBuf,
    pub issuer_key: PathBuf,
    pub token_key: PathBuf,
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("weft-e2e-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `contents` to `path` atomically (temp file + rename), as operators' tools do.
pub fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = temp_dir(tag);
        let now = SystemTime::now();
        let root = weft_pki::create_root("root.linkerd.cluster.local", 3650 * DAY, now).unwrap();
        let issuer = weft_pki::create_issuer(
            "identity.linkerd.cluster.local",
            root.cert_pem.as_bytes(),
            root.key_pem.as_bytes(),
            365 * DAY,
            now,
        )
        .unwrap();
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            anchors: dir.join("anchors.pem"),
            issuer_cert: dir.join("issuer.crt"),
            issuer_key: dir.join("issuer.key"),
            token_key: dir.join("token.key"),
            dir,
        };
        std::fs::write(&pki.ca_cert, &root.cert_pem).unwrap();
        std::fs::write(&pki.ca_key, &root.key_pem).unwrap();
        std::fs::write(&pki.anchors, &root.cert_pem).unwrap();
        std::fs::write(&pki.issuer_cert, &issuer.cert_pem).unwrap();
        std::fs::write(&pki.issuer_key, &issuer.key_pem).unwrap();
        std::fs::write(
            &pki.token_key,
            "0123456789abcdef0123456789abcdef-e2e-token-key",
        )
        .unwrap();
        pki
    }

    /// The identity of service account `sa` in namespace `emojivoto`.
    pub fn identity(sa: &str) -> String {
        format!("{sa}.emojivoto.serviceaccount.identity.weft.cluster.local")
    }

    /// Writes the bootstrap token of `identity` and returns its path.
    pub fn token(&self, identity: &str) -> PathBuf {
        let key = std::fs::read(&self.token_key).unwrap();
        let key = String::from_utf8(key).unwrap();
        let token = weft_controller::identity::mint_token(key.trim().as_bytes(), identity);
        let path = self.dir.join(format!("{identity}.token"));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// A new issuer signed by the root in `ca_cert`/`ca_key`, written over the issuer files.
    pub fn rotate_issuer(&self, name: &str) {
        let ca_cert = std::fs::read(&self.ca_cert).unwrap();
        let ca_key = std::fs::read(&self.ca_key).unwrap();
        self.rotate_issuer_from(name, &ca_cert, &ca_key);
    }

    /// A new root (trust anchor), not yet trusted by anyone: (cert PEM, key PEM).
    pub fn new_root(name: &str) -> (String, String) {
        let root = weft_pki::create_root(name, 3650 * DAY, SystemTime::now()).unwrap();
        (root.cert_pem, root.key_pem)
    }

    /// Writes the trust-anchor bundle that the control plane and proxies watch.
    pub fn set_anchors(&self, pems: &[&str]) {
        write_atomic(&self.anchors, pems.concat().as_bytes());
    }

    /// A new issuer signed by the given root, written over the issuer files.
    pub fn rotate_issuer_from(&self, name: &str, ca_cert: &[u8], ca_key: &[u8]) {
        let now = SystemTime::now();
        let issuer = weft_pki::create_issuer(name, ca_cert, ca_key, 365 * DAY, now).unwrap();
        // Key first, then certificate: the service refuses a mismatched pair and keeps the old one
        // until both have been replaced.
        write_atomic(&self.issuer_key, issuer.key_pem.as_bytes());
        write_atomic(&self.issuer_cert, issuer.cert_pem.as_bytes());
    }

    /// Starts the identity service with `leaf_lifetime` and waits until it is ready.
    pub fn start_identity(&self, leaf_lifetime: &str) -> Identityd {
        let listen = free_addr();
        let admin = free_addr();
        let mut cmd = Command::new(bin("weft-controller"));
        cmd.args([
            "identity",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .arg("--trust-anchors")
        .arg(&self.anchors)
        .arg("--issuer-cert")
        .arg(&self.issuer_cert)
        .arg("--issuer-key")
        .arg(&self.issuer_key)
        .arg("--token-key-file")
        .arg(&self.token_key)
        .args([
            "--leaf-lifetime",
            leaf_lifetime,
            "--reload-interval",
            "200ms",
        ]);
        let proc = Proc::spawn(&format!("identity-{}", listen.port()), cmd, &self.dir);
        let d = Identityd {
            proc,
            listen,
            admin,
        };
        wait_for(
            Duration::from_secs(30),
            "the identity service to be ready",
            || matches!(http(d.admin, "GET", "/ready"), Ok((200, _))),
        );
        d
    }
}

/// A running identity service.
pub struct Identityd {
    pub proc: Proc,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

/// A running proxy.
pub struct Proxy {
    pub proc: Proc,
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub identity: String,
}

impl Proxy {
    /// Starts a proxy for service account `sa` with mTLS (identity from `pki`, service at
    /// `identity_addr`), plus `env`. Does not wait for readiness.
    pub fn spawn(pki: &Pki, sa: &str, identity_addr: SocketAddr, env: &[(&str, String)]) -> Proxy {
        let identity = Pki::identity(sa);
        let (outbound, inbound, admin) = (free_addr(), free_addr(), free_addr());
        let mut cmd = Command::new(bin("weft-proxy"));
        cmd.env_clear()
            .env("WEFT_PROXY_OUTBOUND_LISTEN_ADDR", outbound.to_string())
            .env("WEFT_PROXY_INBOUND_LISTEN_ADDR", inbound.to_string())
            .env("WEFT_PROXY_ADMIN_LISTEN_ADDR", admin.to_string())
            .env("WEFT_PROXY_IDENTITY_NAME", &identity)
            .env("WEFT_PROXY_IDENTITY_TRUST_ANCHORS", &pki.anchors)
            .env("WEFT_PROXY_IDENTITY_SVC_ADDR", identity_addr.to_string())
            .env("WEFT_PROXY_IDENTITY_TOKEN_FILE", pki.token(&identity))
            .env("WEFT_PROXY_LOG", "info,weft_proxy=debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(&format!("proxy-{sa}-{}", admin.port()), cmd, &pki.dir);
        Proxy {
            proc,
            outbound,
            inbound,
            admin,
            identity,
        }
    }

    pub fn wait_ready(&self) {
        wait_for(
            Duration::from_secs(30),
            &format!("proxy {} to be ready", self.identity),
            || matches!(http(self.admin, "GET", "/ready"), Ok((200, _))),
        );
    }

    pub fn metrics(&self) -> String {
        http(self.admin, "GET", "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }
}

/// Starts `weft-testapp serve` on a free port and waits until it answers.
pub fn testapp(name: &str, dir: &Path) -> (Proc, SocketAddr) {
    let addr = free_addr();
    let mut cmd = Command::new(bin("weft-testapp"));
    cmd.args(["serve", "--listen", &addr.to_string(), "--name", name]);
    let p = Proc::spawn(&format!("app-{name}-{}", addr.port()), cmd, dir);
    wait_for(Duration::from_secs(20), "the testapp to listen", || {
        http(addr, "GET", "/").is_ok()
    });
    (p, addr)
}
