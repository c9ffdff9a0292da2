//! End-to-end test of transparent mode: two "pods" in network namespaces joined by a veth pair,
//! each with `weft-proxy init`'s iptables rules and a proxy running as uid 2102. The client in A
//! knows nothing about the mesh (plain curl and a plain TCP client, run as root); the rules send
//! its connection through A's outbound proxy, across the link, through B's inbound proxy, to the
//! server in B.
//!
//! Needs root, iproute2, iptables, util-linux's setpriv, curl and python3 (CI has them). It fails,
//! never skips, when they are missing.

#![allow(clippy::unwrap_used)]

mod netns;

use netns::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The default opaque port the TCP echo server listens on (Redis's).
const ECHO_PORT: u16 = 6379;
const APP_PORT: u16 = 8080;

const ECHO_SERVER: &str = r#"
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(64)
print("listening", flush=True)
def serve(conn, peer):
    print("connection from %s:%d" % peer, flush=True)
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"#;

/// Sends a greeting and a 256 KiB payload, half-closes, and expects the same bytes back before
/// EOF (so the proxies must stream both ways and propagate the half-close).
const ECHO_CLIENT: &str = r#"
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
payload = b"PING weft opaque\r\n" + bytes(i % 251 for i in range(256 * 1024))
s = socket.create_connection((host, port), timeout=10)
def send():
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = bytearray()
while True:
    data = s.recv(65536)
    if not data:
        break
    got += data
t.join()
s.close()
if bytes(got) != payload:
    print("echo mismatch: sent %d bytes, got %d back (first bytes %r)" % (len(payload), len(got), bytes(got[:40])))
    sys.exit(1)
print("echoed %d bytes" % len(got))
"#;

/// Two pods, A (client side) and B (server side), each with the rules and a proxy.
/// Field order is drop order: processes, then namespaces, then the scratch directory.
struct Mesh {
    procs: Vec<Proc>,
    a: Netns,
    b: Netns,
    ip_b: String,
    dir: ScratchDir,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.procs {
                eprintln!("----- log of {} -----\n{}", p.label, p.log_text());
            }
            for ns in [&self.a, &self.b] {
                let rules = output(ns.cmd("iptables").args(["-t", "nat", "-S"]));
                eprintln!(
                    "----- iptables -t nat -S in {} -----\n{}",
                    ns.name,
                    String::from_utf8_lossy(&rules.stdout)
                );
            }
        }
    }
}

/// Applies `weft-proxy init` in `ns` twice and checks that one copy of the rules is installed.
fn init(ns: &Netns, proxy: &PathBuf) {
    for _ in 0..2 {
        let mut cmd = ns.cmd(proxy);
        cmd.arg("init");
        remove_env(&mut cmd, "WEFT_PROXY_");
        check(&mut cmd);
    }
    let rules = check(ns.cmd("iptables").args(["-t", "nat", "-S"]));
    for want in [
        "-A PREROUTING -j WEFT_PROXY_INBOUND",
        "-A OUTPUT -j WEFT_PROXY_OUTPUT",
        "-A WEFT_PROXY_INBOUND -p tcp -j REDIRECT --to-ports 4143",
        "-A WEFT_PROXY_OUTPUT -m owner --uid-owner 2102 -j RETURN",
        "-A WEFT_PROXY_OUTPUT -p tcp -j REDIRECT --to-ports 4140",
    ] {
        let n = rules.lines().filter(|l| *l == want).count();
        assert_eq!(
            n, 1,
            "`{want}` appears {n} times after two inits in {}:\n{rules}",
            ns.name
        );
    }
}

fn proxy_cmd(ns: &Netns, proxy: &PathBuf, extra_env: &[(&str, String)]) -> Command {
    let mut cmd = ns.cmd("setpriv");
    cmd.args(["--reuid", PROXY_UID, "--regid", PROXY_UID, "--clear-groups"])
        .arg(proxy);
    remove_env(&mut cmd, "WEFT_PROXY_");
    cmd.envs([
        ("WEFT_PROXY_IDENTITY_DISABLED", "true"),
        ("WEFT_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:4140"),
        ("WEFT_PROXY_INBOUND_LISTEN_ADDR", "0.0.0.0:4143"),
        ("WEFT_PROXY_ADMIN_LISTEN_ADDR", "127.0.0.1:4191"),
        ("WEFT_PROXY_DETECT_TIMEOUT", "1s"),
        ("WEFT_PROXY_LOG", "info,weft_proxy=debug"),
    ]);
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd
}

fn wait_ready(ns: &Netns, what: &str, url: &str, procs: &[&Proc]) {
    wait_for(what, Duration::from_secs(15), procs, || {
        ns.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "1",
            url,
        ])
        .ok()
        .filter(|code| code == "200")
    });
}

impl Mesh {
    /// Starts the two pods. `meshed`: A's proxy is told that B:8080 is a meshed peer whose inbound
    /// proxy is B:4143, so HTTP between the proxies goes over HTTP/2.
    fn start(meshed: bool) -> Mesh {
        require_root_and_tools();
        reap_stale_namespaces();
        let dir = ScratchDir::new();
        let testapp = testapp_bin();
        let mut proxy = proxy_bin();
        if !executable_by_others(&proxy) {
            // The proxy runs as uid 2102, which must be able to reach the binary.
            let copy = dir.path.join("weft-proxy");
            std::fs::copy(&proxy, &copy).unwrap();
            proxy = copy;
        }

        let a = Netns::new("a");
        let b = Netns::new("b");
        let (_ip_a, ip_b) = link(&a, &b, random_octet());
        let mut mesh = Mesh {
            procs: Vec::new(),
            a,
            b,
            ip_b,
            dir,
        };

        // B's workloads: the HTTP test app and a TCP echo server.
        let mut app = mesh.b.cmd(&testapp);
        app.args([
            "serve",
            "--listen",
            &format!("0.0.0.0:{APP_PORT}"),
            "--name",
            "b",
        ]);
        mesh.procs
            .push(Proc::spawn("testapp-b", &mesh.dir.path, app));
        let script = mesh.dir.path.join("echo_server.py");
        std::fs::write(&script, ECHO_SERVER).unwrap();
        let mut echo = mesh.b.cmd("python3");
        echo.arg("-u").arg(&script).arg(ECHO_PORT.to_string());
        mesh.procs.push(Proc::spawn("echo-b", &mesh.dir.path, echo));

        init(&mesh.a, &proxy);
        init(&mesh.b, &proxy);

        let proxy_b = proxy_cmd(&mesh.b, &proxy, &[]);
        mesh.procs
            .push(Proc::spawn("proxy-b", &mesh.dir.path, proxy_b));
        let peers = if meshed {
            vec![(
                "WEFT_PROXY_MESHED_PEERS",
                format!("{0}:{APP_PORT}={0}:4143", mesh.ip_b),
            )]
        } else {
            Vec::new()
        };
        let proxy_a = proxy_cmd(&mesh.a, &proxy, &peers);
        mesh.procs
            .push(Proc::spawn("proxy-a", &mesh.dir.path, proxy_a));

        let procs: Vec<&Proc> = mesh.procs.iter().collect();
        wait_ready(
            &mesh.a,
            "proxy A's /ready",
            "http://127.0.0.1:4191/ready",
            &procs,
        );
        wait_ready(
            &mesh.b,
            "proxy B's /ready",
            "http://127.0.0.1:4191/ready",
            &procs,
        );
        // From inside B over loopback, which the rules leave alone.
        wait_ready(
            &mesh.b,
            "the test app in B",
            &format!("http://127.0.0.1:{APP_PORT}/"),
            &procs,
        );
        let echo_log = &mesh.procs[1];
        wait_for(
            "the echo server in B",
            Duration::from_secs(15),
            &procs,
            || echo_log.log_text().contains("listening").then_some(()),
        );
        mesh
    }

    fn metrics(ns: &Netns) -> String {
        ns.curl(&["http://127.0.0.1:4191/metrics"])
            .unwrap_or_else(|e| panic!("scraping the proxy in {}: {e}", ns.name))
    }

    /// Waits (up to 5 s: metrics may be recorded when the connection closes) until the sum of
    /// `name{labels…}` in `ns`'s proxy reaches 1.
    fn expect_counted(&self, ns: &Netns, name: &str, labels: &[&str]) {
        let procs: Vec<&Proc> = self.procs.iter().collect();
        let mut last = String::new();
        let counted = poll(Duration::from_secs(5), &procs, || {
            last = Self::metrics(ns);
            (metric_sum(&last, name, labels) >= 1.0).then_some(())
        });
        assert!(
            counted.is_some(),
            "{name} with {labels:?} not counted (>= 1) by the proxy in {}; its /metrics:\n{last}",
            ns.name
        );
    }

    /// GETs B's `/headers` from A as root with a client that knows nothing about the mesh.
    fn get_headers(&self) -> String {
        let url = format!("http://{}:{APP_PORT}/headers", self.ip_b);
        self.a
            .curl(&["-i", &url])
            .unwrap_or_else(|e| panic!("request from A to B failed: {e}"))
    }
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn assert_answered_by_b(response: &str) {
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "expected 200 from the test app in B, got:\n{response}"
    );
    assert_eq!(header(response, "x-testapp-name"), Some("b"), "{response}");
    assert_eq!(
        header(response, "x-testapp-version"),
        Some("HTTP/1.1"),
        "the app in B must see HTTP/1.1, as the client sent it:\n{response}"
    );
    assert!(response.contains("GET /headers"), "{response}");
}

#[test]
fn http_and_opaque_tcp_go_through_both_proxies() {
    let mesh = Mesh::start(false);

    let response = mesh.get_headers();
    assert_answered_by_b(&response);
    // Unmeshed: A's proxy sends the request as it is to the app's address, where B's rules
    // redirect it to B's inbound proxy.
    let app = format!("target_addr=\"{}:{APP_PORT}\"", mesh.ip_b);
    mesh.expect_counted(&mesh.a, "request_total", &[r#"direction="outbound""#, &app]);
    mesh.expect_counted(&mesh.b, "request_total", &[r#"direction="inbound""#]);

    let script = mesh.dir.path.join("echo_client.py");
    std::fs::write(&script, ECHO_CLIENT).unwrap();
    let out = output(
        mesh.a
            .cmd("python3")
            .arg(&script)
            .arg(&mesh.ip_b)
            .arg(ECHO_PORT.to_string()),
    );
    assert!(
        out.status.success(),
        "opaque TCP echo from A to B:{ECHO_PORT} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let port_label = format!(":{ECHO_PORT}\"");
    mesh.expect_counted(&mesh.a, "tcp_open_total", &[r#"direction="outbound""#]);
    mesh.expect_counted(&mesh.b, "tcp_open_total", &[r#"direction="inbound""#]);
    let metrics_a = Mesh::metrics(&mesh.a);
    assert!(
        metrics_a
            .lines()
            .any(|l| l.starts_with("tcp_open_total{") && l.contains(&port_label)),
        "A's proxy shows no TCP connection to port {ECHO_PORT}:\n{metrics_a}"
    );
}

#[test]
fn meshed_http_is_carried_over_h2_and_restored() {
    let mesh = Mesh::start(true);

    let response = mesh.get_headers();
    // The app in B still sees HTTP/1.1: B's inbound proxy restored it.
    assert_answered_by_b(&response);
    // A sent the request to B's inbound proxy, not to the app's port …
    let peer = format!("target_addr=\"{}:4143\"", mesh.ip_b);
    mesh.expect_counted(
        &mesh.a,
        "request_total",
        &[r#"direction="outbound""#, &peer],
    );
    mesh.expect_counted(&mesh.b, "request_total", &[r#"direction="inbound""#]);
    // … and B's inbound proxy received HTTP/2 from it.
    mesh.expect_counted(
        &mesh.b,
        "protocol_detect_total",
        &[r#"direction="inbound""#, r#"protocol="h2""#],
    );
}

#[test]
fn init_dry_run_prints_rules_and_rejects_bad_input() {
    let proxy = proxy_bin();
    let mut cmd = Command::new(&proxy);
    cmd.args(["init", "--dry-run"]);
    remove_env(&mut cmd, "WEFT_PROXY_");
    let out = output(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "weft-proxy init --dry-run: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "iptables -t nat -N WEFT_PROXY_INBOUND",
            "iptables -t nat -F WEFT_PROXY_INBOUND",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp --dport 4190 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp --dport 4191 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp -j REDIRECT --to-ports 4143",
            "iptables -t nat -N WEFT_PROXY_OUTPUT",
            "iptables -t nat -F WEFT_PROXY_OUTPUT",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -m owner --uid-owner 2102 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -o lo -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -p tcp -j REDIRECT --to-ports 4140",
            "iptables -t nat -A PREROUTING -j WEFT_PROXY_INBOUND",
            "iptables -t nat -A OUTPUT -j WEFT_PROXY_OUTPUT",
        ]
    );

    // Flags and environment variables are equivalent.
    let mut cmd = Command::new(&proxy);
    cmd.args(["init", "--dry-run", "--iptables", "iptables-legacy"]);
    remove_env(&mut cmd, "WEFT_PROXY_");
    let out = output(cmd.env("WEFT_PROXY_INIT_SKIP_SUBNETS", "10.96.0.0/12"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "iptables-legacy -t nat -A WEFT_PROXY_OUTPUT -d 10.96.0.0/12 -j RETURN"),
        "{stdout}"
    );

    for (args, needle) in [
        (
            &["--skip-subnets", "10.0.0/8"][..],
            r#"invalid --skip-subnets "10.0.0/8""#,
        ),
        (
            &["--skip-inbound-ports", "4190,http"][..],
            r#"invalid --skip-inbound-ports "http""#,
        ),
        (
            &["--proxy-uid", "weft"][..],
            r#"invalid --proxy-uid "weft""#,
        ),
    ] {
        let mut cmd = Command::new(&proxy);
        cmd.args(["init", "--dry-run"]).args(args);
        remove_env(&mut cmd, "WEFT_PROXY_");
        let out = output(&mut cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "init {args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "init {args:?}: stderr {stderr:?} lacks {needle:?}"
        );
        assert!(out.stdout.is_empty(), "nothing planned on bad input");
    }
}
