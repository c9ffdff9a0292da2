//! The network and process probes behind the checks. Blocking and bounded: every probe gives up
//! after [`TIMEOUT`], so an unreachable address is an error naming it, never a hang.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::local::probe;

/// How long one probe may take: connecting, and then the whole exchange.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to `addr` within [`TIMEOUT`].
pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    probe::connect(addr, TIMEOUT)
}

/// `GET path` within [`TIMEOUT`]: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    probe::get(addr, path, TIMEOUT)
}

/// The result of a probe run on a scoped thread (a panic becomes an error, not a crash).
pub fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, String>>) -> Result<T, String> {
    handle
        .join()
        .unwrap_or_else(|_| Err("the probe failed unexpectedly".to_owned()))
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
    server_chain_within(addr, server_name, TIMEOUT)
}

/// [`server_chain`] giving up after `timeout`.
fn server_chain_within(
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
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
    let mut stream = probe::connect(addr, timeout)?;
    let deadline = Instant::now() + timeout;
    let mut failure = None;
    while conn.is_handshaking() && recorder.take_if_any().is_none() {
        if Instant::now() > deadline {
            failure = Some(format!(
                "TLS handshake with {addr}: no certificate within {timeout:?}"
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
                    ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                        format!("TLS handshake with {addr}: no certificate within {timeout:?}")
                    }
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
    fn a_silent_tls_server_is_an_error_naming_the_timeout() {
        // Accepted by the kernel's backlog, never answered.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let err = server_chain_within(
            addr,
            "web.emojivoto.serviceaccount.identity.weft.cluster.local",
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("no certificate within 100ms"), "{err}");
        drop(listener);
    }
}
