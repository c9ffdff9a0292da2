//! Protocol detection on accepted connections: HTTP/2 by its connection preface, HTTP/1.x by a
//! parseable request line, Weft's meshed-TCP transport header, otherwise opaque TCP.
//!
//! Detection reads at most [`MAX_DETECT_BYTES`]; the bytes read are handed back so the chosen
//! protocol handler can replay them.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::transport;

/// HTTP/2's client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The longest request line (or preface) detection waits for before calling it opaque.
pub const MAX_DETECT_BYTES: usize = 8 * 1024;

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2,
    /// Weft's meshed opaque-TCP transport header (inbound only).
    MeshedTcp,
    /// A TLS ClientHello (record type 22, version 3.x).
    Tls,
    Opaque,
}

/// Why detection decided what it did; the `reason` label of `protocol_detect_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Detected,
    /// The client sent nothing within the detect timeout (server-speaks-first protocols).
    Timeout,
    /// The bytes are not HTTP.
    NotHttp,
    /// The client closed before sending a full request line.
    Eof,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Detected => "detected",
            Reason::Timeout => "timeout",
            Reason::NotHttp => "not_http",
            Reason::Eof => "eof",
        }
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1",
            Protocol::H2 => "h2",
            Protocol::MeshedTcp => "meshed_tcp",
            Protocol::Tls => "tls",
            Protocol::Opaque => "opaque",
        }
    }
}

/// The outcome of looking at a buffer so far.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Is(Protocol),
    NeedMore,
}

fn classify(buf: &[u8], accept_transport_header: bool) -> Verdict {
    if buf.is_empty() {
        return Verdict::NeedMore;
    }
    if accept_transport_header {
        let n = buf.len().min(transport::MAGIC.len());
        if buf[..n] == transport::MAGIC[..n] {
            return if n == transport::MAGIC.len() {
                Verdict::Is(Protocol::MeshedTcp)
            } else {
                Verdict::NeedMore
            };
        }
    }
    if buf[0] == 0x16 {
        return match buf.get(1) {
            None => Verdict::NeedMore,
            Some(0x03) => Verdict::Is(Protocol::Tls),
            Some(_) => Verdict::Is(Protocol::Opaque),
        };
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Verdict::Is(Protocol::H2)
        } else {
            Verdict::NeedMore
        };
    }
    // HTTP/1: `METHOD SP request-target SP HTTP/1.x CRLF`.
    let line_end = buf.iter().position(|&b| b == b'\n');
    let line = match line_end {
        Some(end) => &buf[..end],
        None => buf,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        // A complete method token must be followed by a space; anything else is not HTTP.
        return Verdict::Is(Protocol::Opaque);
    }
    let target = match parts.next() {
        Some(t) => t,
        None if line_end.is_none() && method.len() < 32 => return Verdict::NeedMore,
        None => return Verdict::Is(Protocol::Opaque),
    };
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Verdict::Is(Protocol::Opaque);
    }
    let version = match parts.next() {
        Some(v) => v,
        None if line_end.is_none() => return Verdict::NeedMore,
        None => return Verdict::Is(Protocol::Opaque),
    };
    const V: &[u8] = b"HTTP/1.";
    if line_end.is_none() {
        let n = version.len().min(V.len());
        return if version[..n] == V[..n] && version.len() <= V.len() + 1 {
            Verdict::NeedMore
        } else {
            Verdict::Is(Protocol::Opaque)
        };
    }
    if version.len() == V.len() + 1
        && version.starts_with(V)
        && matches!(version[V.len()], b'0' | b'1')
    {
        Verdict::Is(Protocol::Http1)
    } else {
        Verdict::Is(Protocol::Opaque)
    }
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads from `io` until the protocol is known, the buffer limit is hit, the client closes, or
/// `timeout` passes. Returns the protocol, why, and the bytes read.
pub async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
    accept_transport_header: bool,
) -> std::io::Result<(Protocol, Reason, BytesMut)> {
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Verdict::Is(p) = classify(&buf, accept_transport_header) {
            let reason = if p == Protocol::Opaque {
                Reason::NotHttp
            } else {
                Reason::Detected
            };
            return Ok((p, reason, buf));
        }
        if buf.len() >= MAX_DETECT_BYTES {
            return Ok((Protocol::Opaque, Reason::NotHttp, buf));
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.len().max(1024));
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Err(_) => return Ok((Protocol::Opaque, Reason::Timeout, buf)),
            Ok(Ok(0)) => return Ok((Protocol::Opaque, Reason::Eof, buf)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn classifies() {
        use Protocol::*;
        let cases: &[(&[u8], Verdict)] = &[
            (b"GET / HTTP/1.1\r\n", Verdict::Is(Http1)),
            (b"POST /x?y HTTP/1.0\r\nHost: a\r\n", Verdict::Is(Http1)),
            (b"CONNECT a:443 HTTP/1.1\r\n", Verdict::Is(Http1)),
            (b"GET / HTTP/1.1", Verdict::NeedMore),
            (b"GET / HT", Verdict::NeedMore),
            (b"GE", Verdict::NeedMore),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Verdict::Is(H2)),
            (b"PRI * HTTP/2.0\r\n", Verdict::NeedMore),
            (b"\x16\x03\x01\x02\x00", Verdict::Is(Tls)),
            (b"\x16", Verdict::NeedMore),
            (b"\x16\x01", Verdict::Is(Opaque)),
            (b"*1\r\n$4\r\nPING\r\n", Verdict::Is(Opaque)),
            (b"GET / HTTP/2.0\r\n", Verdict::Is(Opaque)),
            (b"GET / FOO/1.1\r\n", Verdict::Is(Opaque)),
            (b"GET /\r\n", Verdict::Is(Opaque)),
            (b"SSH-2.0-OpenSSH\r\n", Verdict::Is(Opaque)),
        ];
        for (input, want) in cases {
            assert_eq!(
                &classify(input, false),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(classify(transport::MAGIC, true), Verdict::Is(MeshedTcp));
        assert_eq!(classify(&transport::MAGIC[..3], true), Verdict::NeedMore);
        assert_eq!(classify(transport::MAGIC, false), Verdict::Is(Opaque));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out_as_opaque() {
        let (mut a, _b) = tokio::io::duplex(64);
        let (p, r, buf) = detect(&mut a, Duration::from_secs(1), false).await.unwrap();
        assert_eq!((p, r), (Protocol::Opaque, Reason::Timeout));
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn split_request_line_is_http1_and_bytes_are_kept() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move {
            b.write_all(b"GET /a").await.unwrap();
            tokio::task::yield_now().await;
            b.write_all(b" HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            // Keep `b` open until detection finishes.
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let (p, _, buf) = detect(&mut a, Duration::from_secs(5), false).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        assert!(buf.starts_with(b"GET /a HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn endless_line_is_opaque_at_the_limit() {
        let (mut a, mut b) = tokio::io::duplex(MAX_DETECT_BYTES * 2);
        b.write_all(&vec![b'A'; MAX_DETECT_BYTES + 10])
            .await
            .unwrap();
        let (p, r, _) = detect(&mut a, Duration::from_secs(5), false).await.unwrap();
        assert_eq!((p, r), (Protocol::Opaque, Reason::NotHttp));
    }
}
