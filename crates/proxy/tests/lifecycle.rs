//! The proxy process's life: configuration errors before any port is bound, `--help`, the admin
//! endpoints, graceful shutdown (SIGTERM and `POST /shutdown`) with its grace period, and opaque
//! ports (server-speaks-first protocols), plain and through a meshed hop.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::*;
use weft_proxy::config;

// ---- helpers ---------------------------------------------------------------------------------

/// Waits for `child` to exit, polling; fails (and kills it) after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `cond` holds, polling; fails with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sigterm(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGTERM).unwrap();
}

/// An HTTP/1.0 request with a body (support::http_request sends none): (status, body).
fn request_with_body(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A `weft-proxy` command with none of this process's `WEFT_PROXY_*` variables.
fn proxy_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft-proxy"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WEFT_PROXY_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the proxy to completion (bounded): (status, stdout, stderr).
fn run_proxy(mut cmd: Command) -> (ExitStatus, String, String) {
    let mut child = cmd.spawn().unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

/// Three loopback listeners held by the test: while they exist, the proxy cannot bind their
/// addresses, so a proxy that tried to bind before validating would fail with "cannot listen".
struct HeldPorts {
    outbound: TcpListener,
    inbound: TcpListener,
    admin: TcpListener,
}

impl HeldPorts {
    fn new() -> Self {
        let bind = || TcpListener::bind("127.0.0.1:0").unwrap();
        HeldPorts {
            outbound: bind(),
            inbound: bind(),
            admin: bind(),
        }
    }

    /// The proxy command configured to listen on the held addresses.
    fn command(&self) -> Command {
        let mut cmd = proxy_command();
        cmd.env(
            config::OUTBOUND_LISTEN_ADDR,
            self.outbound.local_addr().unwrap().to_string(),
        )
        .env(
            config::INBOUND_LISTEN_ADDR,
            self.inbound.local_addr().unwrap().to_string(),
        )
        .env(
            config::ADMIN_LISTEN_ADDR,
            self.admin.local_addr().unwrap().to_string(),
        );
        cmd
    }
}

/// A TCP server that speaks first (a banner line on accept), then echoes.
const BANNER: &str = "220 weft-banner ready\r\n";

fn banner_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                if conn.write_all(BANNER.as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Opens `CONNECT target` through the outbound proxy at `proxy`; returns the tunnel and any bytes
/// that arrived after the response head.
fn connect_tunnel(proxy: SocketAddr, target: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(proxy).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "proxy closed during CONNECT: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (s, got[end..].to_vec())
}

/// Reads one line (through `\n`) within `limit`, starting with bytes already read.
fn read_line(s: &mut TcpStream, mut have: Vec<u8>, limit: Duration) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    while !have.contains(&b'\n') {
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before a full line: {:?}",
                String::from_utf8_lossy(&have)
            ),
            Ok(n) => have.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "no line within {limit:?} (got {:?})",
                    String::from_utf8_lossy(&have)
                )
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    String::from_utf8_lossy(&have).to_string()
}

/// The banner arrives within 10 s, and the echo works afterwards.
fn assert_banner_and_echo(s: &mut TcpStream, leftover: Vec<u8>) -> Duration {
    let start = Instant::now();
    let banner = read_line(s, leftover, Duration::from_secs(10));
    let elapsed = start.elapsed();
    assert_eq!(banner, BANNER);
    s.write_all(b"ping through the proxy\n").unwrap();
    assert_eq!(
        read_line(s, Vec::new(), Duration::from_secs(10)),
        "ping through the proxy\n"
    );
    elapsed
}

// ---- configuration -----------------------------------------------------------------------

#[test]
fn invalid_configuration_exits_64_naming_variable_and_value_before_binding() {
    let cases: &[(&str, &str)] = &[
        (config::OUTBOUND_LISTEN_ADDR, "nope:1"),
        (config::INBOUND_LISTEN_ADDR, "127.0.0.1"),
        (config::ADMIN_LISTEN_ADDR, "localhost:4191"),
        (config::INBOUND_APP_ADDR, "app:8080"),
        (config::OUTBOUND_BIND_IP, "127.0.0.300"),
        (config::DETECT_TIMEOUT, "0s"),
        (config::DETECT_TIMEOUT, "10 parsecs"),
        (config::OPAQUE_PORTS, "25,70000"),
        (config::OPAQUE_PORTS, "9000-8000"),
        (config::OPAQUE_PORTS, "smtp"),
        (config::CONNECT_TIMEOUT, "-1s"),
        (config::RESPONSE_TIMEOUT, "soon"),
        (config::POOL_IDLE_TIMEOUT, "3"),
        (config::SHUTDOWN_GRACE_PERIOD, "forever"),
        (config::MAX_IN_FLIGHT_REQUESTS, "0"),
        (config::MAX_CONNECTIONS, "-5"),
        (config::IDENTITY_DISABLED, "maybe"),
        (config::MESHED_PEERS, "web=127.0.0.1:4143"),
        (config::MESHED_PEERS, "web:80=nowhere:4143"),
        (config::WORKER_THREADS, "65"),
        (config::LOG, "weft_proxy=loud"),
    ];
    for (var, value) in cases {
        let held = HeldPorts::new();
        let mut cmd = held.command();
        cmd.env(config::IDENTITY_DISABLED, "true").env(var, value);
        let (status, _, stderr) = run_proxy(cmd);
        assert_eq!(
            status.code(),
            Some(64),
            "{var}={value:?}: {status}\n{stderr}"
        );
        assert!(
            stderr.contains(var),
            "{var}={value:?}: stderr does not name the variable:\n{stderr}"
        );
        assert!(
            stderr.contains(value),
            "{var}={value:?}: stderr does not show the value:\n{stderr}"
        );
        // Had it bound (or tried to bind) first, it would have failed on the held ports instead.
        assert!(
            !stderr.contains("cannot listen"),
            "{var}={value:?}: tried to bind before validating:\n{stderr}"
        );
    }
}

#[test]
fn identity_must_be_disabled_explicitly() {
    // Not held: the admin port is free, and nothing may ever accept on it.
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = proxy_command();
    cmd.env(config::ADMIN_LISTEN_ADDR, admin.to_string())
        .env(
            config::OUTBOUND_LISTEN_ADDR,
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            config::INBOUND_LISTEN_ADDR,
            format!("127.0.0.1:{}", free_port()),
        );
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let probe = TcpStream::connect_timeout(&admin, Duration::from_millis(200));
        assert!(
            probe.is_err(),
            "something accepted on the admin port {admin}"
        );
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(TcpStream::connect_timeout(&admin, Duration::from_millis(200)).is_err());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(config::IDENTITY_DISABLED), "{stderr}");

    // Same with the ports held: validation fails first.
    let held = HeldPorts::new();
    let (status, _, stderr) = run_proxy(held.command());
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(config::IDENTITY_DISABLED) && !stderr.contains("cannot listen"),
        "{stderr}"
    );
}

#[test]
fn held_ports_method_detects_binding() {
    // The control for the tests above: a valid configuration on held ports fails to bind.
    let held = HeldPorts::new();
    let mut cmd = held.command();
    cmd.env(config::IDENTITY_DISABLED, "true");
    let (status, _, stderr) = run_proxy(cmd);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    // Logs that do not go to a terminal are plain text (no ANSI colour codes).
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in the log: {stderr:?}"
    );
}

#[test]
fn help_lists_every_variable() {
    let mut cmd = proxy_command();
    cmd.arg("--help");
    let (status, stdout, stderr) = run_proxy(cmd);
    assert!(status.success(), "{status}: {stderr}");
    for v in config::VARS {
        assert!(
            stdout.contains(v.name),
            "--help does not list {}:\n{stdout}",
            v.name
        );
        assert!(
            stdout.contains(&format!("default: {}", v.default)),
            "--help lacks the default of {}",
            v.name
        );
    }
    // Anything else on the command line is a usage error.
    let mut cmd = proxy_command();
    cmd.arg("--outbound=127.0.0.1:1");
    let (status, _, stderr) = run_proxy(cmd);
    assert_eq!(status.code(), Some(64), "{stderr}");
}

// ---- admin server ------------------------------------------------------------------------

#[test]
fn admin_endpoints() {
    let proxy = Proxy::start(ProxyEnv::new());
    assert_eq!(
        http_get(proxy.admin, "/live").unwrap(),
        (200, "live\n".to_string())
    );
    assert_eq!(
        http_get(proxy.admin, "/ready").unwrap(),
        (200, "ready\n".to_string())
    );
    let (status, metrics) = http_get(proxy.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("process_start_time_seconds"), "{metrics}");
    assert_eq!(http_get(proxy.admin, "/nope").unwrap().0, 404);
    assert_eq!(http_request(proxy.admin, "POST", "/live").unwrap().0, 405);
    assert_eq!(
        http_request(proxy.admin, "DELETE", "/proxy-log-level")
            .unwrap()
            .0,
        405
    );
}

#[test]
fn log_level_can_be_read_and_changed() {
    let proxy = Proxy::start(ProxyEnv::new().set("WEFT_PROXY_LOG", "info"));
    let level = |p: &Proxy| {
        let (status, body) = http_get(p.admin, "/proxy-log-level").unwrap();
        assert_eq!(status, 200);
        body.trim().to_string()
    };
    assert_eq!(level(&proxy), "info");
    // An outbound connection that sends non-HTTP bytes is closed with an info-level line. It is
    // written before the socket closes, so once the client sees the close, the line is there.
    const LINE: &str = "opaque connection has no destination";
    let garbage = |p: &Proxy| {
        let mut s = TcpStream::connect(p.outbound).unwrap();
        s.write_all(b"\x00\x01garbage\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    };
    garbage(&proxy);
    assert_eq!(proxy.log_text().matches(LINE).count(), 1);

    assert_eq!(
        request_with_body(proxy.admin, "PUT", "/proxy-log-level", "warn\n").0,
        204
    );
    assert_eq!(level(&proxy), "warn");
    garbage(&proxy);
    assert_eq!(
        proxy.log_text().matches(LINE).count(),
        1,
        "info line logged at level warn"
    );

    let (status, body) =
        request_with_body(proxy.admin, "PUT", "/proxy-log-level", "weft_proxy=loud");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("weft_proxy=loud"), "{body}");
    assert_eq!(
        level(&proxy),
        "warn",
        "an invalid filter must not change the level"
    );

    assert_eq!(
        request_with_body(
            proxy.admin,
            "PUT",
            "/proxy-log-level",
            "warn,weft_proxy=info"
        )
        .0,
        204
    );
    assert_eq!(level(&proxy), "warn,weft_proxy=info");
    garbage(&proxy);
    assert_eq!(
        proxy.log_text().matches(LINE).count(),
        2,
        "info line not logged after raising the level"
    );
}

// ---- shutdown ----------------------------------------------------------------------------

/// With a slow request in flight through `hop.client`, `stop` starts a drain: /ready turns 503,
/// the outbound listener stops accepting, the slow request still completes with 200, and the
/// proxy exits 0.
fn drains_then_exits(hop: &mut MeshedHop, stop: impl FnOnce(&Proxy)) {
    let in_flight = |p: &Proxy| p.metric_sum("request_total", &["direction=\"outbound\""]);
    let before = in_flight(&hop.client);
    let (proxy, url) = (hop.proxy_arg(), hop.url("/?latency_ms=3000"));
    let slow = std::thread::spawn(move || curl(&["-i", "-x", &proxy, &url]));
    wait_for(
        Duration::from_secs(10),
        "the slow request to be in flight",
        || in_flight(&hop.client) > before,
    );

    stop(&hop.client);
    let admin = hop.client.admin;
    wait_for(
        Duration::from_secs(5),
        "/ready to answer 503 while draining",
        || matches!(http_get(admin, "/ready"), Ok((503, _))),
    );
    let outbound = hop.client.outbound;
    wait_for(
        Duration::from_secs(5),
        "the outbound listener to refuse connections",
        || matches!(TcpStream::connect_timeout(&outbound, Duration::from_secs(1)), Err(e) if e.kind() == ErrorKind::ConnectionRefused),
    );
    // Still draining: the slow request is not done yet.
    assert!(
        hop.client.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    let out = slow.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "the in-flight request did not complete: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = wait_exit(&mut hop.client.child, Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "{status}\n{}",
        hop.client.log_text()
    );
    let log = hop.client.log_text();
    assert!(log.contains("drained; exiting"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let mut hop = MeshedHop::start();
    drains_then_exits(&mut hop, |p| sigterm(p.pid()));
    assert!(hop.client.log_text().contains("signal received, draining"));
}

#[test]
fn post_shutdown_drains_in_flight_requests_and_exits_0() {
    let mut hop = MeshedHop::start();
    // GET does not shut down.
    let (status, _) = http_request(hop.client.admin, "GET", "/shutdown").unwrap();
    assert_eq!(status, 405);
    assert_eq!(http_get(hop.client.admin, "/ready").unwrap().0, 200);
    drains_then_exits(&mut hop, |p| {
        assert_eq!(
            http_request(p.admin, "POST", "/shutdown").unwrap(),
            (200, "shutdown\n".to_string())
        );
    });
    assert!(hop
        .client
        .log_text()
        .contains("shutdown requested through the admin server"));
}

#[test]
fn grace_period_bounds_shutdown() {
    let mut hop = MeshedHop::start_with(
        ProxyEnv::new().set("WEFT_PROXY_SHUTDOWN_GRACE_PERIOD", "1s"),
        ProxyEnv::new(),
    );
    let mut s = TcpStream::connect(hop.client.outbound).unwrap();
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        hop.url("/?latency_ms=20000"),
        hop.target
    )
    .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the 20 s request to be in flight",
        || {
            hop.client
                .metric_sum("request_total", &["direction=\"outbound\""])
                >= 1.0
        },
    );

    let signalled = Instant::now();
    sigterm(hop.client.pid());
    let status = wait_exit(&mut hop.client.child, Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "{status}\n{}",
        hop.client.log_text()
    );
    // It waited for the grace period (the request could not have finished), then gave up.
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the 1 s grace period"
    );
    assert!(
        hop.client.log_text().contains("grace period over"),
        "{}",
        hop.client.log_text()
    );

    // The abandoned request's connection is closed, without a response.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    assert!(
        r.is_ok() || matches!(r, Err(ref e) if e.kind() == ErrorKind::ConnectionReset),
        "{r:?}"
    );
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

// ---- opaque ports ------------------------------------------------------------------------

#[test]
fn opaque_port_is_proxied_at_once() {
    let banner = banner_server();
    let proxy = Proxy::start(
        ProxyEnv::new()
            .set("WEFT_PROXY_OPAQUE_PORTS", format!("25,{}", banner.port()))
            .set("WEFT_PROXY_DETECT_TIMEOUT", "30s"),
    );
    let (mut s, leftover) = connect_tunnel(proxy.outbound, banner);
    // With a 30 s detect timeout, only skipping detection delivers the banner within 10 s.
    assert_banner_and_echo(&mut s, leftover);
    assert_eq!(
        proxy.metric_sum(
            "protocol_detect_total",
            &[
                "direction=\"outbound\"",
                "protocol=\"opaque\"",
                "reason=\"opaque_port\""
            ]
        ),
        1.0
    );
    assert_eq!(
        proxy.metric_sum("protocol_detect_total", &["reason=\"timeout\""]),
        0.0
    );
}

#[test]
fn server_speaks_first_after_detect_timeout() {
    let banner = banner_server();
    let proxy = Proxy::start(
        ProxyEnv::new()
            .set("WEFT_PROXY_OPAQUE_PORTS", "25")
            .set("WEFT_PROXY_DETECT_TIMEOUT", "500ms"),
    );
    let (mut s, leftover) = connect_tunnel(proxy.outbound, banner);
    let waited = assert_banner_and_echo(&mut s, leftover);
    // The proxy only connects upstream once detection has given up.
    assert!(
        waited >= Duration::from_millis(400),
        "banner after {waited:?}, before the detect timeout"
    );
    assert_eq!(
        proxy.metric_sum(
            "protocol_detect_total",
            &[
                "direction=\"outbound\"",
                "protocol=\"opaque\"",
                "reason=\"timeout\""
            ]
        ),
        1.0,
        "{}",
        proxy.metrics()
    );
}

#[test]
fn opaque_port_through_meshed_hop() {
    let banner = banner_server();
    // The server proxy's app address only supplies the IP; the transport header names the port.
    let server =
        Proxy::start(ProxyEnv::new().app(format!("127.0.0.1:{}", free_port()).parse().unwrap()));
    let client = Proxy::start(
        ProxyEnv::new()
            .meshed(&banner.to_string(), &server)
            .set("WEFT_PROXY_OPAQUE_PORTS", banner.port())
            .set("WEFT_PROXY_DETECT_TIMEOUT", "30s"),
    );
    let (mut s, leftover) = connect_tunnel(client.outbound, banner);
    assert_banner_and_echo(&mut s, leftover);
    assert_eq!(
        client.metric_sum(
            "protocol_detect_total",
            &["direction=\"outbound\"", "reason=\"opaque_port\""]
        ),
        1.0
    );
    assert_eq!(
        server.metric_sum(
            "protocol_detect_total",
            &["direction=\"inbound\"", "protocol=\"meshed_tcp\""]
        ),
        1.0,
        "{}",
        server.metrics()
    );
}

/// Regression: a client that has connected and sent nothing yet (still in protocol detection)
/// has no request in flight and must not hold the drain until the detect timeout.
#[test]

fn idle_connection_in_detection_does_not_delay_shutdown() {
    let mut proxy = Proxy::start(
        ProxyEnv::new()
            .set("WEFT_PROXY_DETECT_TIMEOUT", "30s")
            .set("WEFT_PROXY_SHUTDOWN_GRACE_PERIOD", "15s"),
    );
    let _idle = TcpStream::connect(proxy.outbound).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the idle connection to be accepted",
        || proxy.metric_sum("tcp_open_connections", &["direction=\"outbound\""]) >= 1.0,
    );
    sigterm(proxy.pid());
    // Fails (and kills the proxy) after 5 s: today it exits only when the 15 s grace period ends.
    let status = wait_exit(&mut proxy.child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}
