//! The network and process probes behind the checks. Blocking and bounded: every probe gives up
//! after [`TIMEOUT`], so an unreachable address is an error naming it, never a hang.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// How long one probe may take: connecting, and then the whole exchange.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The most bytes of an HTTP response that are read (admin bodies are a few lines).
const MAX_RESPONSE: u64 = 64 * 1024;

/// Connects to `addr` within [`TIMEOUT`].
pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            format!("{addr}: no answer within {}s", TIMEOUT.as_secs())
        }
        ErrorKind::ConnectionRefused => format!("{addr}: connection refused (nothing listens)"),
        _ => format!("{addr}: cannot connect: {e}"),
    })?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(stream)
}

/// `GET path` over HTTP/1.0: the status code and the body (lossy UTF-8).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = connect(addr)?;
    let io_err = |e: std::io::Error| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            format!(
                "GET {path} on {addr}: no answer within {}s",
                TIMEOUT.as_secs()
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
                "GET {path} on {addr}: no complete answer within {}s",
                TIMEOUT.as_secs()
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

/// The result of a probe run on a scoped thread (a panic becomes an error, not a crash).
pub fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, String>>) -> Result<T, String> {
    handle
        .join()
        .unwrap_or_else(|_| Err("the probe failed unexpectedly".to_owned()))
}

/// Whether process `pid` exists (and is not a zombie on Linux).
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        // It exists but belongs to someone else.
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    exists && !is_zombie(pid)
}

/// A process that exited but was not reaped by its parent still answers signal 0.
fn is_zombie(pid: u32) -> bool {
    // /proc/<pid>/stat is `pid (comm) S ...`; comm may hold spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Performs a TLS handshake with `addr`, sending `server_name` as SNI, and returns the
/// certificate chain the server presented (leaf first). The chain is captured even when the
/// handshake fails afterwards (a proxy that requires a client certificate refuses us then).
/// Verifying the chain is the caller's business: this accepts any chain, but still checks the
/// server's handshake signature so that the chain belongs to whoever answered.
pub fn server_chain(
    addr: SocketAddr,
    server_name: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("{server_name:?} is not a TLS server name: {e}"))?;
    let mut conn =
        ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS to {addr}: {e}"))?;
    let mut stream = connect(addr)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut failure = None;
    while conn.is_handshaking() && recorder.take_if_any().is_none() {
        if Instant::now() > deadline {
            failure = Some(format!(
                "TLS handshake with {addr}: no certificate within {}s",
                TIMEOUT.as_secs()
            ));
            break;
        }
        match conn.complete_io(&mut stream) {
            Ok((0, 0)) if conn.is_handshaking() => {
                failure = Some(format!(
                    "TLS handshake with {addr}: the connection was closed before a certificate was sent"
                ));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                failure = Some(match e.kind() {
                    ErrorKind::TimedOut | ErrorKind::WouldBlock => format!(
                        "TLS handshake with {addr}: no certificate within {}s",
                        TIMEOUT.as_secs()
                    ),
                    _ => format!("TLS handshake with {addr}: {e}"),
                });
                break;
            }
        }
    }
    match recorder.take_if_any() {
        Some(chain) => Ok(chain),
        None => Err(failure.unwrap_or_else(|| {
            format!("TLS handshake with {addr}: the server presented no certificate")
        })),
    }
}

/// A certificate verifier that records the server's chain and accepts it.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Option<Vec<CertificateDer<'static>>>>,
    provider: Arc<CryptoProvider>,
}

impl Recorder {
    fn take_if_any(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.chain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner) = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
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
    fn a_silent_server_is_an_error_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let err = http_get(addr, "/ready").unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(started.elapsed() < TIMEOUT * 2, "{:?}", started.elapsed());
        let err = server_chain(
            addr,
            "web.emojivoto.serviceaccount.identity.weft.cluster.local",
        )
        .unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(started.elapsed() < TIMEOUT * 4, "{:?}", started.elapsed());
        drop(listener);
    }

    #[test]
    fn a_closed_port_is_refused() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = http_get(addr, "/live").unwrap_err();
        assert!(err.contains("connection refused"), "{err}");
    }

    #[test]
    fn this_process_is_alive_and_a_huge_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
        assert!(!process_alive(0));
    }
}
