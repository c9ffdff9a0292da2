//! A minimal client of the viz API: one HTTP/1.0 `GET` per call over a plain TCP connection
//! (the API is on loopback, and HTTP/1.0 makes the server end a streamed body by closing the
//! connection, so no chunked decoding is needed), JSON bodies, and errors as one line that
//! names the API's address and the likely cause.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, Context as _};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a JSON answer may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest JSON answer read.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// The viz API of one cluster.
#[derive(Clone, Debug)]
pub struct VizClient {
    /// Its address.
    pub addr: SocketAddr,
}

/// `application/x-www-form-urlencoded`-style escaping of a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `path?k=v&…`, leaving out absent values.
pub fn url(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        _ => {
            let s = e.to_string();
            // "No route to host (os error 113)" → "no route to host".
            let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_lowercase().chain(c).collect())
                .unwrap_or(s)
        }
    }
}

impl VizClient {
    fn unreachable(&self, e: &io::Error) -> anyhow::Error {
        anyhow!(
            "the viz API at {} is not reachable: {} (is the control plane running? weft check)",
            self.addr,
            describe(e)
        )
    }

    /// Sends `GET path_and_query` and returns the status and a reader positioned at the body.
    pub fn open(
        &self,
        path_and_query: &str,
        read_timeout: Option<Duration>,
    ) -> anyhow::Result<(u16, BufReader<TcpStream>)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)
            .map_err(|e| self.unreachable(&e))?;
        stream
            .set_read_timeout(read_timeout)
            .map_err(|e| self.unreachable(&e))?;
        let _ = stream.set_nodelay(true);
        write!(
            stream,
            "GET {path_and_query} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: weft\r\n\r\n",
            self.addr
        )
        .map_err(|e| self.unreachable(&e))?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .map_err(|e| self.unreachable(&e))?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                anyhow!(
                    "the viz API at {} answered something that is not HTTP ({:?})",
                    self.addr,
                    status_line.trim()
                )
            })?;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| self.unreachable(&e))?;
            if n == 0 || line == "\r\n" || line == "\n" {
                break;
            }
        }
        Ok((status, reader))
    }

    /// `GET` a JSON document; a non-200 answer is an error carrying the API's message.
    pub fn get_json(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        let (status, reader) = self.open(path_and_query, Some(READ_TIMEOUT))?;
        let mut body = Vec::new();
        reader
            .take(MAX_BODY)
            .read_to_end(&mut body)
            .map_err(|e| self.unreachable(&e))?;
        let value: Result<serde_json::Value, _> = serde_json::from_slice(&body);
        if status != 200 {
            return Err(api_error(status, value.ok().as_ref(), self.addr));
        }
        value.with_context(|| format!("the viz API at {} answered invalid JSON", self.addr))
    }
}

/// The error for a non-200 answer: the API's own message (which names the parameter).
pub fn api_error(status: u16, body: Option<&serde_json::Value>, addr: SocketAddr) -> anyhow::Error {
    match body.and_then(|b| b.get("error")).and_then(|e| e.as_str()) {
        Some(message) => anyhow!("{message}"),
        None => anyhow!("the viz API at {addr} answered HTTP {status}"),
    }
}

/// Reads newline-terminated lines from a stream, tolerating read timeouts (which let the
/// caller do periodic work) without losing partial lines.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
}

/// What [`LineReader::next_line`] found.
pub enum Next {
    /// A complete line (without the newline).
    Line(String),
    /// The read timed out: no complete line yet.
    Idle,
    /// The stream ended.
    End,
}

impl<R: Read> LineReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// The next line, `Idle` on a read timeout, or `End`.
    pub fn next_line(&mut self) -> io::Result<Next> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line[..i]).trim_end().to_owned();
                return Ok(Next::Line(text));
            }
            if self.buf.len() > 16 * 1024 * 1024 {
                bail_io("a tap line is longer than 16 MiB")?;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.inner.read(&mut chunk) {
                Ok(0) => return Ok(Next::End),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Next::Idle)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn bail_io(msg: &str) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::InvalidData, msg.to_owned()))
}

/// The viz API address of the selected cluster's running control plane.
pub fn for_cluster(global: &crate::context::Global) -> anyhow::Result<VizClient> {
    let cluster = global.cluster()?;
    let cp = cluster.control_plane()?;
    Ok(VizClient { addr: cp.viz })
}

/// Checks a status for streaming endpoints, reading the error body when not 200.
pub fn expect_ok<R: Read>(status: u16, reader: R, addr: SocketAddr) -> anyhow::Result<R> {
    if status == 200 {
        return Ok(reader);
    }
    let mut body = Vec::new();
    let mut reader = reader;
    let _ = reader.by_ref().take(1024 * 1024).read_to_end(&mut body);
    let value: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    Err(api_error(status, value.as_ref(), addr))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_values() {
        assert_eq!(
            url(
                "/api/stat",
                &[
                    ("resource", Some("deploy/web")),
                    ("from", None),
                    ("path", Some("/a b&c"))
                ]
            ),
            "/api/stat?resource=deploy/web&path=/a%20b%26c"
        );
        assert_eq!(url("/api/targets", &[]), "/api/targets");
    }

    #[test]
    fn errors_are_short() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&e), "connection refused");
        let e = io::Error::other("No route to host (os error 113)");
        assert_eq!(describe(&e), "no route to host");
    }

    #[test]
    fn lines_survive_partial_reads() {
        let data: &[u8] = b"a\nbc\n\nd";
        let mut r = LineReader::new(data);
        let mut got = Vec::new();
        loop {
            match r.next_line().unwrap() {
                Next::Line(l) => got.push(l),
                Next::Idle => {}
                Next::End => break,
            }
        }
        assert_eq!(got, vec!["a", "bc", ""]);
    }
}
