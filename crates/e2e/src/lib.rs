//! Helpers for Weft's end-to-end tests: build the binaries once, make a PKI in a temporary
//! directory, start the identity service, proxies and test apps as real processes on loopback,
//! and read their metrics.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
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
            "-p",
            "weft-cli",
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

/// A free port on `ip`, chosen outside Linux's ephemeral range (32768-60999) so that client
/// sockets of parallel tests (the 10,000-connection test opens many) cannot take it between this
/// check and the proxy's bind.
fn free_port_on(ip: IpAddr) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU32, Ordering};
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
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999 on {ip}");
}

/// A free address on 127.0.0.1 (see [`free_port_on`]).
pub fn free_addr() -> SocketAddr {
    free_addr_on(IpAddr::from([127, 0, 0, 1]))
}

/// A free address on `ip` (see [`free_port_on`]).
pub fn free_addr_on(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, free_port_on(ip))
}

/// A loopback address of its own for one workload, as in the local mesh of DESIGN.md:
/// `127.<a>.<b>.<c>` with `a` derived from the process id (so parallel test processes do not
/// share addresses) and `b.c` counting up. Any 127/8 address works on Linux without setup.
pub fn workload_ip() -> IpAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let a = 100 + (std::process::id() % 150) as u8;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::from([127, a, (n / 250) as u8, (n % 250 + 1) as u8])
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
        let addrs = (free_addr(), free_addr(), free_addr());
        Proxy::spawn_at(pki, sa, identity_addr, addrs, env)
    }

    /// As [`Proxy::spawn`], with every listener on `ip` (a workload's own loopback address, also
    /// the source of its outgoing connections): the inbound port is 4143 (the mesh's default)
    /// when it is free there.
    pub fn spawn_on(
        pki: &Pki,
        sa: &str,
        identity_addr: SocketAddr,
        ip: IpAddr,
        env: &[(&str, String)],
    ) -> Proxy {
        let default_inbound = SocketAddr::new(ip, 4143);
        let inbound = if TcpListener::bind(default_inbound).is_ok() {
            default_inbound
        } else {
            free_addr_on(ip)
        };
        let addrs = (free_addr_on(ip), inbound, free_addr_on(ip));
        let mut env_on = vec![("WEFT_PROXY_OUTBOUND_BIND_IP", ip.to_string())];
        env_on.extend(env.iter().cloned());
        Proxy::spawn_at(pki, sa, identity_addr, addrs, &env_on)
    }

    /// As [`Proxy::spawn`], listening on `(outbound, inbound, admin)`.
    pub fn spawn_at(
        pki: &Pki,
        sa: &str,
        identity_addr: SocketAddr,
        (outbound, inbound, admin): (SocketAddr, SocketAddr, SocketAddr),
        env: &[(&str, String)],
    ) -> Proxy {
        let identity = Pki::identity(sa);
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
    (testapp_at(name, addr, dir, &[]), addr)
}

/// Starts `weft-testapp serve` on `addr` with extra flags (`--error-rate 0.5`, …) and waits
/// until it answers.
pub fn testapp_at(name: &str, addr: SocketAddr, dir: &Path, flags: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("weft-testapp"));
    cmd.args(["serve", "--listen", &addr.to_string(), "--name", name])
        .args(flags);
    let p = Proc::spawn(&format!("app-{name}-{}", addr.port()), cmd, dir);
    wait_for(Duration::from_secs(20), "the testapp to listen", || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    });
    p
}

/// A running destination service (`weft-controller destination`).
pub struct Destinationd {
    pub proc: Proc,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl Destinationd {
    /// Starts the destination service on `listen` with `--manifests manifests` (read once) and
    /// waits until it is ready. `listen` may be the address of one that was stopped: a restart
    /// on the same port.
    pub fn start(dir: &Path, manifests: &Path, listen: SocketAddr) -> Destinationd {
        let admin = free_addr();
        let mut cmd = Command::new(bin("weft-controller"));
        cmd.args([
            "destination",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .arg("--manifests")
        .arg(manifests);
        let proc = Proc::spawn(&format!("destination-{}", admin.port()), cmd, dir);
        let mut d = Destinationd {
            proc,
            listen,
            admin,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http(d.admin, "GET", "/ready"), Ok((200, _))) {
            if let Ok(Some(status)) = d.proc.child.try_wait() {
                panic!(
                    "the destination service exited ({status}):\n{}",
                    d.proc.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the destination service was not ready within 30s:\n{}",
                d.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        d
    }

    /// The service's admin metrics.
    pub fn metrics(&self) -> String {
        http(self.admin, "GET", "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// Kills the process (SIGKILL: no graceful end of the streams) and waits for it.
    pub fn kill(mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }
}

/// A response to [`proxy_request`]: status, the headers the tests look at, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `x-testapp-name`: which backend answered.
    pub name: String,
    /// `l5d-proxy-error`: why the proxy answered itself.
    pub proxy_error: String,
    pub body: String,
}

/// Sends one request through an HTTP proxy at `proxy` in absolute-form (`GET http://host/path
/// HTTP/1.1`), as an explicitly configured HTTP client does, on a new connection that is
/// closed after the response. `headers` are added (e.g. `x-testapp-status: 500`).
pub fn proxy_request(
    proxy: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    let host = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| std::io::Error::other(format!("not an http:// URL: {url}")))?;
    let mut s = TcpStream::connect_timeout(&proxy, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("{method} {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    Ok(Answer {
        status,
        name: header("x-testapp-name"),
        proxy_error: header("l5d-proxy-error"),
        body: body.to_string(),
    })
}

/// The Python of the test venv (`.venv`, created as `.ci/run` does), or `WEFT_TEST_PYTHON`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv at {} (create it as .ci/run does, or set WEFT_TEST_PYTHON)",
        venv.display()
    );
    venv
}

/// What one run of the `weft` CLI printed.
#[derive(Debug)]
pub struct WeftRun {
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `weft ARGS` with `WEFT_HOME=home` (and no `WEFT_CONTEXT` from the environment).
pub fn weft(home: &Path, args: &[&str]) -> WeftRun {
    let out = Command::new(bin("weft"))
        .args(args)
        .env("WEFT_HOME", home)
        .env_remove("WEFT_CONTEXT")
        .output()
        .unwrap();
    WeftRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether process `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}
