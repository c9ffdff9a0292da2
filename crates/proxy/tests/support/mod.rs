//! Shared helpers for the proxy's end-to-end tests: start real `weft-proxy` processes and
//! in-process testapps on loopback, talk to them with real clients.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1, chosen outside Linux's ephemeral range (32768-60999) so that client
/// sockets of parallel tests (the 10,000-connection test opens many) cannot take it between this
/// check and the proxy's bind.
pub fn free_port() -> u16 {
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

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python interpreter with grpcio and websockets (WEFT_TEST_PYTHON, else `.venv`).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("WEFT_TEST_PYTHON") {
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

/// Fails the test with a clear message when a required external tool is missing.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "required tool `{name}` is not installed (.ci/run installs it)"
    );
}

/// A running weft-proxy process, killed on drop.
pub struct Proxy {
    pub child: Child,
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

/// Builder for a proxy's environment.
#[derive(Default, Clone)]
pub struct ProxyEnv {
    pub vars: Vec<(String, String)>,
}

impl ProxyEnv {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(mut self, k: &str, v: impl ToString) -> Self {
        self.vars.push((k.to_string(), v.to_string()));
        self
    }
    /// Inbound traffic goes to this app address.
    pub fn app(self, addr: SocketAddr) -> Self {
        self.set("WEFT_PROXY_INBOUND_APP_ADDR", addr)
    }
    /// Traffic for `target` goes meshed to `peer`'s inbound listener.
    pub fn meshed(self, target: &str, peer: &Proxy) -> Self {
        self.set(
            "WEFT_PROXY_MESHED_PEERS",
            format!("{target}={}", peer.inbound),
        )
    }
}

impl Proxy {
    /// Starts a proxy on fresh loopback ports and waits until /ready answers 200.
    pub fn start(env: ProxyEnv) -> Proxy {
        let p = Self::spawn(env);
        p.wait_ready();
        p
    }

    /// Starts a proxy without waiting.
    pub fn spawn(env: ProxyEnv) -> Proxy {
        let outbound: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let inbound: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::env::temp_dir().join(format!(
            "weft-proxy-test-{}-{}.log",
            std::process::id(),
            admin.port()
        ));
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft-proxy"));
        cmd.env("WEFT_PROXY_IDENTITY_DISABLED", "true")
            .env("WEFT_PROXY_OUTBOUND_LISTEN_ADDR", outbound.to_string())
            .env("WEFT_PROXY_INBOUND_LISTEN_ADDR", inbound.to_string())
            .env("WEFT_PROXY_ADMIN_LISTEN_ADDR", admin.to_string())
            .env("WEFT_PROXY_LOG", "info,weft_proxy=debug")
            .stdout(Stdio::null())
            .stderr(logf);
        for (k, v) in &env.vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Proxy {
            child,
            outbound,
            inbound,
            admin,
            log,
        }
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(self.admin, "/ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("proxy did not become ready; log:\n{}", self.log_text());
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").unwrap().1
    }

    /// Sum of the values of every series of `name` whose label text contains all `labels`.
    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of the values of every series of `name` whose label text contains all `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.0 GET (for admin endpoints): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path)
}

pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
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

/// Runs curl with `args`, failing the test if curl cannot be started.
pub fn curl(args: &[&str]) -> Output {
    require_tool("curl");
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .unwrap()
}

/// An in-process weft-testapp on its own runtime thread.
pub struct TestApp {
    pub addr: SocketAddr,
}

impl TestApp {
    pub fn start(cfg: weft_testapp::ServerConfig) -> TestApp {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let addr = weft_testapp::spawn(cfg).await.unwrap();
                tx.send(addr).unwrap();
                std::future::pending::<()>().await;
            });
        });
        TestApp {
            addr: rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        }
    }

    pub fn named(name: &str) -> TestApp {
        Self::start(weft_testapp::ServerConfig {
            name: name.to_string(),
            ..Default::default()
        })
    }
}

/// Two proxies forming a meshed hop in front of a testapp: the client talks to
/// `client.outbound` naming `target`, which goes meshed to `server`'s inbound, then to the app.
pub struct MeshedHop {
    pub app: TestApp,
    pub server: Proxy,
    pub client: Proxy,
    /// The authority clients use (`app:PORT`).
    pub target: String,
}

impl MeshedHop {
    pub fn start() -> MeshedHop {
        Self::start_with(ProxyEnv::new(), ProxyEnv::new())
    }

    pub fn start_with(client_env: ProxyEnv, server_env: ProxyEnv) -> MeshedHop {
        let app = TestApp::named("app");
        let server = Proxy::start(server_env.app(app.addr));
        let target = format!("app.test:{}", app.addr.port());
        let client = Proxy::start(client_env.meshed(&target, &server));
        MeshedHop {
            app,
            server,
            client,
            target,
        }
    }

    /// `http://TARGET/path` for use with `curl -x`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.target, path)
    }

    /// The outbound proxy as curl's `-x` argument.
    pub fn proxy_arg(&self) -> String {
        format!("http://{}", self.client.outbound)
    }
}

pub mod destination;

pub mod identity;
