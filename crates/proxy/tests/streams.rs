//! Streaming through the meshed hop with real clients: gRPC (grpcio) unary, server-streaming,
//! interleaved bidi streaming, forced non-OK statuses and their metrics, gRPC over grpcio's own
//! HTTP CONNECT proxy support, WebSocket upgrades (Python `websockets`), and 100 MiB uploads,
//! downloads and echoes checked by SHA-256 while the proxies' memory stays flat.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// Size of the large transfers.
const BIG: u64 = 100 * 1024 * 1024;

/// Peak RSS a proxy may reach while streaming [`BIG`] bytes: far below the body size, so a
/// proxy that buffered a whole body (or even a large part of it) fails.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Proxy variables a client could pick up from the environment; removed so that only the tests
/// that ask for a proxy use one.
const PROXY_ENV: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "grpc_proxy",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// The grpcio client shared with the testapp's tests.
fn grpc_client() -> PathBuf {
    workspace().join("crates/testapp/tests/grpc_client.py")
}

/// A helper script under `tests/py/`.
fn py_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// Runs `cmd` to completion, killing it (and failing the test) after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).unwrap();
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).unwrap();
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&out_reader.join().unwrap()).to_string();
            let err = String::from_utf8_lossy(&err_reader.join().unwrap()).to_string();
            panic!("{what} did not finish within {limit:?}\nstdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// Runs a Python script with the test venv, no proxy from the environment, bounded in time.
fn python_run(script: &Path, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let mut cmd = Command::new(python());
    cmd.arg(script).args(args);
    for k in PROXY_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_bounded(cmd, Duration::from_secs(60));
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `message:` lines of grpc_client.py's output.
fn grpc_messages(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("message: "))
        .collect()
}

/// The series of metric family `name` (for failure messages).
fn series(proxy: &Proxy, name: &str) -> String {
    let text = proxy.metrics();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
    lines.join("\n")
}

/// Waits (bounded) until `proxy`'s metric reaches `want`, then returns its value, so the test
/// can assert it exactly. Responses are recorded when their body ends, which may be a moment
/// after the client has seen the trailers.
fn metric_reaching(proxy: &Proxy, name: &str, labels: &[&str], want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = proxy.metric_sum(name, labels);
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that both proxies of `hop` recorded exactly `n` gRPC responses with `grpc_status`
/// and the given classification.
fn assert_grpc_responses(hop: &MeshedHop, grpc_status: u32, classification: &str, n: f64) {
    let status = format!("grpc_status=\"{grpc_status}\"");
    let class = format!("classification=\"{classification}\"");
    for (proxy, direction) in [(&hop.client, "outbound"), (&hop.server, "inbound")] {
        let dir = format!("direction=\"{direction}\"");
        let labels = [
            dir.as_str(),
            status.as_str(),
            class.as_str(),
            "status_code=\"200\"",
        ];
        let got = metric_reaching(proxy, "response_total", &labels, n);
        assert_eq!(
            got,
            n,
            "{direction} response_total{labels:?}:\n{}",
            series(proxy, "response_total")
        );
    }
}

#[test]
fn grpc_unary_and_server_stream_through_meshed_hop() {
    let hop = MeshedHop::start();
    let outbound = hop.client.outbound.to_string();
    let client = grpc_client();

    let (ok, out) = python_run(
        &client,
        &[
            &outbound,
            "Unary",
            "hello weft ✓",
            "--authority",
            &hop.target,
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert_eq!(grpc_messages(&out), vec!["hello weft ✓"], "{out}");
    assert!(out.contains("status: OK (0)"), "{out}");

    let (ok, out) = python_run(
        &client,
        &[
            &outbound,
            "ServerStream",
            "tick",
            "--count",
            "250",
            "--authority",
            &hop.target,
        ],
        &[],
    );
    assert!(ok, "{out}");
    let messages = grpc_messages(&out);
    assert_eq!(messages.len(), 250, "{out}");
    assert!(messages.iter().all(|m| *m == "tick"), "{out}");
    assert!(out.contains("status: OK (0)"), "{out}");

    // Both calls crossed the meshed hop over HTTP/2 and were classified as successes by both
    // proxies, with the grpc-status read from the trailers.
    let authority = format!("authority=\"{}\"", hop.target);
    assert_eq!(
        hop.client
            .metric_sum("request_total", &["direction=\"outbound\"", &authority]),
        2.0
    );
    assert_eq!(
        hop.server
            .metric_sum("request_total", &["direction=\"inbound\""]),
        2.0
    );
    assert_grpc_responses(&hop, 0, "success", 2.0);
    assert_eq!(
        hop.client
            .metric_sum("response_total", &["classification=\"failure\""]),
        0.0,
        "{}",
        series(&hop.client, "response_total")
    );
}

#[test]
fn grpc_forced_status_arrives_with_message_and_is_classified_failure() {
    let hop = MeshedHop::start();
    let outbound = hop.client.outbound.to_string();
    let client = grpc_client();
    // '%' and ':' exercise grpc-message percent-encoding end to end.
    let detail = "no such vote: 100% gone";

    let (ok, out) = python_run(
        &client,
        &[
            &outbound,
            "Unary",
            "where",
            "--authority",
            &hop.target,
            "--metadata",
            "x-testapp-grpc-status=5",
            "--metadata",
            &format!("x-testapp-grpc-message={detail}"),
            "--expect-status",
            "NOT_FOUND",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("status: NOT_FOUND (5)"), "{out}");
    assert!(out.contains(&format!("details: {detail}\n")), "{out}");

    // A server stream whose messages all arrive, then a non-OK status in the trailers.
    let (ok, out) = python_run(
        &client,
        &[
            &outbound,
            "ServerStream",
            "partial",
            "--count",
            "4",
            "--authority",
            &hop.target,
            "--metadata",
            "x-testapp-grpc-status=14",
            "--metadata",
            "x-testapp-grpc-message=try later",
            "--expect-status",
            "UNAVAILABLE",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert_eq!(grpc_messages(&out), vec!["partial"; 4], "{out}");
    assert!(out.contains("status: UNAVAILABLE (14)"), "{out}");
    assert!(out.contains("details: try later\n"), "{out}");

    assert_grpc_responses(&hop, 5, "failure", 1.0);
    assert_grpc_responses(&hop, 14, "failure", 1.0);
    // HTTP said 200 both times: the failure classification came from the trailers alone.
    assert_eq!(
        hop.client
            .metric_sum("response_total", &["classification=\"success\""]),
        0.0,
        "{}",
        series(&hop.client, "response_total")
    );
    // Not mistaken for a broken stream or a proxy error.
    assert_eq!(
        hop.client.metric_sum("response_total", &["error="]),
        0.0,
        "{}",
        series(&hop.client, "response_total")
    );
    assert_eq!(
        hop.server.metric_sum("response_total", &["error="]),
        0.0,
        "{}",
        series(&hop.server, "response_total")
    );
}

#[test]
fn grpc_bidi_stream_interleaved_through_meshed_hop() {
    let hop = MeshedHop::start();
    let outbound = hop.client.outbound.to_string();
    let (ok, out) = python_run(
        &py_script("grpc_bidi.py"),
        &[&outbound, "60", "--authority", &hop.target],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("ok: 60 interleaved"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("echo: ")).count(),
        60,
        "{out}"
    );
    assert_grpc_responses(&hop, 0, "success", 1.0);
}

#[test]
fn grpc_through_grpcio_http_connect_proxy_support() {
    let hop = MeshedHop::start();
    let client = grpc_client();
    // No --authority and no explicit address: grpcio cannot resolve app.test itself; with
    // http_proxy set it sends `CONNECT app.test:PORT` to the outbound proxy and speaks HTTP/2
    // inside the tunnel, which the proxy detects and routes meshed.
    let env = [("http_proxy", hop.proxy_arg())];
    let (ok, out) = python_run(&client, &[&hop.target, "Unary", "tunnelled"], &env);
    assert!(ok, "{out}\nclient proxy log:\n{}", hop.client.log_text());
    assert_eq!(grpc_messages(&out), vec!["tunnelled"], "{out}");
    let (ok, out) = python_run(
        &client,
        &[&hop.target, "ServerStream", "again", "--count", "5"],
        &env,
    );
    assert!(ok, "{out}");
    assert_eq!(grpc_messages(&out).len(), 5, "{out}");
    let authority = format!("authority=\"{}\"", hop.target);
    assert_eq!(
        hop.client
            .metric_sum("request_total", &["direction=\"outbound\"", &authority]),
        2.0,
        "{}",
        series(&hop.client, "request_total")
    );
    assert_eq!(
        hop.server
            .metric_sum("request_total", &["direction=\"inbound\""]),
        2.0
    );
    assert_grpc_responses(&hop, 0, "success", 2.0);
    // grpcio speaks only HTTP/2, so the HTTP/1 the outbound proxy detected was the CONNECT.
    assert!(
        hop.client.metric_sum(
            "protocol_detect_total",
            &["direction=\"outbound\"", "protocol=\"http/1\""]
        ) >= 1.0,
        "{}",
        series(&hop.client, "protocol_detect_total")
    );
    assert!(
        hop.client.metric_sum(
            "protocol_detect_total",
            &["direction=\"outbound\"", "protocol=\"h2\""]
        ) >= 1.0,
        "{}",
        series(&hop.client, "protocol_detect_total")
    );
}

#[test]
fn websocket_echo_through_meshed_hop() {
    let hop = MeshedHop::start();
    let outbound = hop.client.outbound.to_string();
    let (ok, out) = python_run(
        &py_script("ws_echo.py"),
        &[&outbound, &hop.target, "--rounds", "6"],
        &[],
    );
    assert!(ok, "{out}");
    // 6 rounds of text + binary, plus one large message of each kind.
    assert!(out.contains("ok: 14 messages"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("echo: text")).count(),
        7,
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("echo: binary"))
            .count(),
        7,
        "{out}"
    );
    // The testapp itself answered the upgrade, over HTTP/1.1, after the meshed hop.
    assert!(out.contains("header: x-testapp-name: app\n"), "{out}");
    assert!(
        out.contains("header: x-testapp-version: HTTP/1.1\n"),
        "{out}"
    );
    assert_eq!(
        hop.server
            .metric_sum("request_total", &["direction=\"inbound\""]),
        1.0
    );
    assert!(
        hop.client
            .metric_sum("response_total", &["status_code=\"101\""])
            >= 1.0,
        "{}",
        series(&hop.client, "response_total")
    );
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weft-streams-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SHA-256 (hex) of everything written to `feed`'s writer, computed by `sha256sum` (the
/// debug-built `sha2` crate would dominate the test's run time).
fn sha256sum(feed: impl FnOnce(&mut dyn Write)) -> String {
    require_tool("sha256sum");
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
        feed(&mut stdin);
        stdin.flush().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.split_whitespace().next().unwrap().to_string();
    assert_eq!(hex.len(), 64, "{text}");
    hex
}

/// Writes `len` pseudo-random bytes (xorshift, so nothing periodic that a dropped or repeated
/// chunk could hide in) to `path`; returns their SHA-256 in hex.
fn write_random_file(path: &Path, len: u64) -> String {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        for word in chunk[..n].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        file.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
    file_sha256(path).0
}

/// SHA-256 (hex) and length of a file.
fn file_sha256(path: &Path) -> (String, u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let hex = sha256sum(|w| {
        std::io::copy(&mut std::fs::File::open(path).unwrap(), w).unwrap();
    });
    (hex, len)
}

/// SHA-256 (hex) of the first `len` bytes of the testapp's pattern (`/bytes?size=len`).
fn pattern_sha256(len: u64) -> String {
    use weft_testapp::pattern_byte;
    // The pattern is periodic (documented as 251); find the period rather than assume it, and
    // feed whole periods so that every block starts at pattern offset 0.
    let period = (1..=4096u64)
        .find(|p| (0..(1 << 16)).all(|i| pattern_byte(i) == pattern_byte(i + p)))
        .unwrap();
    let block_len = period * ((1 << 20) / period);
    let block: Vec<u8> = (0..block_len).map(pattern_byte).collect();
    sha256sum(|w| {
        let mut left = len;
        while left > 0 {
            let n = left.min(block_len);
            w.write_all(&block[..n as usize]).unwrap();
            left -= n;
        }
    })
}

/// Runs curl (bounded) while sampling the RSS of both proxies; returns curl's output and the
/// peak RSS of each proxy in KiB.
fn curl_sampling_rss(hop: &MeshedHop, args: &[&str]) -> (Output, u64, u64) {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut client, mut server) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                client = client.max(hop.client.rss_kib());
                server = server.max(hop.server.rss_kib());
                std::thread::sleep(Duration::from_millis(5));
            }
            (client, server)
        });
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "--max-time", "100", "-x", &hop.proxy_arg()])
            .args(args);
        for k in PROXY_ENV {
            cmd.env_remove(k);
        }
        let started = Instant::now();
        let out = run_bounded(cmd, Duration::from_secs(110));
        done.store(true, Ordering::Relaxed);
        eprintln!("curl {}: {:?}", args.last().unwrap(), started.elapsed());
        let (client, server) = sampler.join().unwrap();
        (out, client, server)
    })
}

fn assert_rss_bounded(what: &str, hop: &MeshedHop, client_kib: u64, server_kib: u64) {
    eprintln!("{what}: peak RSS client proxy {client_kib} KiB, server proxy {server_kib} KiB");
    assert!(client_kib > 0 && server_kib > 0, "RSS was never sampled");
    assert!(
        client_kib < RSS_LIMIT_KIB,
        "{what}: client proxy peaked at {client_kib} KiB, body buffered?"
    );
    assert!(
        server_kib < RSS_LIMIT_KIB,
        "{what}: server proxy peaked at {server_kib} KiB, body buffered?"
    );
    // Still alive and well after the transfer.
    assert!(matches!(http_get(hop.client.admin, "/ready"), Ok((200, _))));
}

#[test]
fn upload_100mib_to_sha256_streams() {
    require_tool("curl");
    let hop = MeshedHop::start();
    let dir = TempDir::new("upload");
    let file = dir.0.join("upload.bin");
    let started = Instant::now();
    let want = write_random_file(&file, BIG);
    let (out, client_kib, server_kib) = curl_sampling_rss(
        &hop,
        &[
            "-X",
            "POST",
            "-T",
            file.to_str().unwrap(),
            &hop.url("/sha256"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, format!("{want} {BIG}\n"));
    assert_rss_bounded("upload", &hop, client_kib, server_kib);
    eprintln!("upload: {:?}", started.elapsed());
}

#[test]
fn download_100mib_bytes_streams() {
    require_tool("curl");
    let hop = MeshedHop::start();
    let dir = TempDir::new("download");
    let file = dir.0.join("download.bin");
    let started = Instant::now();
    let (out, client_kib, server_kib) = curl_sampling_rss(
        &hop,
        &[
            "-o",
            file.to_str().unwrap(),
            &hop.url(&format!("/bytes?size={BIG}")),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got, len) = file_sha256(&file);
    let want = pattern_sha256(BIG);
    assert_eq!(len, BIG);
    assert_eq!(got, want, "downloaded bytes differ from the pattern");
    assert_rss_bounded("download", &hop, client_kib, server_kib);
    eprintln!("download: {:?}", started.elapsed());
}

#[test]
fn echo_100mib_upload_and_download_simultaneously() {
    require_tool("curl");
    let hop = MeshedHop::start();
    let dir = TempDir::new("echo");
    let input = dir.0.join("in.bin");
    let output = dir.0.join("out.bin");
    let started = Instant::now();
    let want = write_random_file(&input, BIG);
    // /echo streams each request frame back as it arrives, so the response flows while the
    // upload is still going; the proxies must carry both directions at once.
    let (out, client_kib, server_kib) = curl_sampling_rss(
        &hop,
        &[
            "-X",
            "POST",
            "-T",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            &hop.url("/echo"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(file_sha256(&output), (want, BIG));
    assert_rss_bounded("echo", &hop, client_kib, server_kib);
    eprintln!("echo: {:?}", started.elapsed());
}
