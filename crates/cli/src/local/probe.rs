//! Minimal HTTP/1.0 GETs of admin endpoints (`/ready`, `/live`, `/metrics`): blocking, bounded
//! by one deadline for connect, request and answer, no dependencies beyond std. Used by the
//! local-mesh commands and by `weft check`.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response read (admin answers are a few lines; metrics a few hundred KiB at most).
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// `1s`, `100ms`: how timeouts read in messages.
fn fmt_timeout(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Connects to `addr` within `timeout`, with read and write timeouts set to it.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            format!("{addr}: no answer within {}", fmt_timeout(timeout))
        }
        ErrorKind::ConnectionRefused => format!("{addr}: connection refused (nothing listens)"),
        _ => format!("{addr}: cannot connect: {e}"),
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(stream)
}

/// `GET path` on `addr`, all of it within `timeout`: the status code and the body (lossy
/// UTF-8), or why not, naming the address.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout)?;
    let io_err = |e: std::io::Error| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            format!(
                "GET {path} on {addr}: no answer within {}",
                fmt_timeout(timeout)
            )
        }
        _ => format!("GET {path} on {addr}: {e}"),
    };
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(io_err)?;
    let mut buf = Vec::new();
    let mut limited = (&mut stream).take(MAX_RESPONSE);
    let mut chunk = [0u8; 4096];
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "GET {path} on {addr}: no complete answer within {}",
                fmt_timeout(timeout)
            ));
        }
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    parse_response(&buf).ok_or_else(|| format!("GET {path} on {addr}: not an HTTP response"))
}

/// Whether `GET /ready` answers 200 within a second.
pub fn ready(addr: SocketAddr) -> bool {
    matches!(get(addr, "/ready", Duration::from_secs(1)), Ok((200, _)))
}

/// Splits an HTTP/1.x response into its status code and body.
fn parse_response(bytes: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some((status, body.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn responses_are_parsed() {
        assert_eq!(
            parse_response(
                b"HTTP/1.1 503 Service Unavailable\r\nx: y\r\n\r\nnot ready:\nno issuer\n"
            ),
            Some((503, "not ready:\nno issuer\n".to_owned()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\n\r\n"),
            Some((200, String::new()))
        );
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_response(b""), None);
    }

    #[test]
    fn a_silent_server_is_an_error_naming_the_timeout() {
        // Accepted by the kernel's backlog, never answered.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let err = get(addr, "/ready", Duration::from_millis(100)).unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("within 100ms"), "{err}");
        drop(listener);
    }

    #[test]
    fn a_closed_port_is_refused() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = get(addr, "/live", Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("connection refused"), "{err}");
    }
}
