//! Helpers shared by the integration tests: running curl and Python with clear failures when a
//! tool is missing, and raw hyper client connections.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::process::Command;

/// Bound on every external command and every wait in these tests: generous, only there so a
/// broken feature fails instead of hanging the suite.
pub const WAIT: Duration = Duration::from_secs(30);

/// Request body type used by the raw hyper clients.
pub type ReqBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// Runs a command with a timeout, failing loudly if the tool is missing.
pub async fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"));
    out.unwrap_or_else(|e| panic!("cannot run {what} (is it installed and on PATH?): {e}"))
}

/// A response as seen by curl.
#[derive(Debug)]
pub struct CurlResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CurlResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// Runs curl with `args`, returning the final response (status, headers, body).
/// Headers are dumped to stderr so the body on stdout stays byte-exact.
pub async fn curl(args: &[&str]) -> CurlResponse {
    let out = run(
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "-D", "/dev/stderr"])
            .args(args),
        "curl",
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl {args:?} failed: {stderr}");
    // The last header block wins (after a `100 Continue`, for instance).
    let block = stderr
        .rsplit_terminator("\r\n\r\n")
        .find(|b| b.contains("HTTP/"))
        .unwrap_or_else(|| panic!("no response head in curl output: {stderr}"));
    let block = &block[block.find("HTTP/").unwrap()..];
    let mut lines = block.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    CurlResponse {
        status,
        headers,
        body: out.stdout,
        stderr,
    }
}

/// The Python interpreter with grpcio and websockets; panics with setup instructions if absent.
pub fn python() -> PathBuf {
    weft_testapp::testing::python().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `python -c script args...`.
pub async fn python_script(script: &str, args: &[&str]) -> Output {
    run(
        Command::new(python()).arg("-c").arg(script).args(args),
        "python",
    )
    .await
}

/// Runs the grpcio client script with `args`.
pub async fn grpc_client(args: &[&str]) -> Output {
    let script = weft_testapp::testing::grpc_client_script();
    assert!(script.exists(), "missing {}", script.display());
    run(
        Command::new(python()).arg(script).args(args),
        "grpc_client.py",
    )
    .await
}

/// An HTTP/1.1 client connection to `addr`.
pub async fn h1(addr: SocketAddr) -> http1::SendRequest<ReqBody> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/2 prior-knowledge client connection to `addr`.
pub async fn h2(addr: SocketAddr) -> http2::SendRequest<ReqBody> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
