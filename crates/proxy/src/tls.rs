//! mTLS between proxies: TLS 1.3 with rustls (aws-lc-rs), the workload certificate from the
//! identity service, and trust anchors that can change at run time.
//!
//! The configs are built once; the certificate and the anchors live behind locks that the
//! resolvers and verifiers read on every handshake, so a renewal or an anchor rotation applies to
//! the next handshake without touching established connections.
//!
//! Outbound, the proxy sends the peer's expected identity as SNI, and the verifier checks the
//! chain against the anchors **and** that the certificate's DNS SAN equals that identity.
//! Inbound, a ClientHello whose SNI is this proxy's identity is terminated here (client
//! certificates are requested and verified; the client's identity is recorded); any other TLS is
//! the app's own and passes through as opaque TCP.

use std::fmt;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

/// ALPN of meshed HTTP/2 between proxies.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN of meshed HTTP/1.1 (upgrades, which cannot ride HTTP/2).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN announcing Weft's opaque-TCP transport header.
pub const ALPN_TRANSPORT: &[u8] = b"weft.transport/1";

/// What a connection to a meshed peer carries (its ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    H2,
    Http1,
    Transport,
}

impl Alpn {
    fn index(self) -> usize {
        match self {
            Alpn::H2 => 0,
            Alpn::Http1 => 1,
            Alpn::Transport => 2,
        }
    }
    fn bytes(self) -> &'static [u8] {
        match self {
            Alpn::H2 => ALPN_H2,
            Alpn::Http1 => ALPN_HTTP1,
            Alpn::Transport => ALPN_TRANSPORT,
        }
    }
}

/// Why TLS material was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no usable trust anchors: {0}")]
    Anchors(String),
    #[error("certificate or key refused: {0}")]
    Certificate(String),
}

/// The parts that change at run time.
struct Dynamic {
    local_id: String,
    provider: Arc<CryptoProvider>,
    cert: RwLock<Option<Arc<CertifiedKey>>>,
    client_verifier: RwLock<Arc<dyn ClientCertVerifier>>,
    server_verifier: RwLock<Arc<dyn ServerCertVerifier>>,
}

impl fmt::Debug for Dynamic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dynamic")
            .field("local_id", &self.local_id)
            .finish()
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(PoisonError::into_inner).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(PoisonError::into_inner) = value;
}

/// A peer's verified identity and the negotiated protocol of an accepted connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The client's identity (DNS SAN of its verified certificate), if it sent one.
    pub client_id: Option<String>,
    pub alpn: Option<Vec<u8>>,
}

/// mTLS for one proxy.
pub struct Tls {
    dynamic: Arc<Dynamic>,
    server: Arc<rustls::ServerConfig>,
    clients: [Arc<rustls::ClientConfig>; 3],
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("local_id", &self.dynamic.local_id)
            .finish()
    }
}

/// Verifiers of client (inbound) and server (outbound) certificates for one set of anchors.
type Verifiers = (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>);

fn verifiers(
    anchors: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<Verifiers, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(anchors.iter().cloned());
    if added == 0 {
        return Err(TlsError::Anchors(format!(
            "none of the {} certificates is a usable trust anchor",
            anchors.len()
        )));
    }
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "some trust anchors could not be parsed and are ignored"
        );
    }
    let roots = Arc::new(roots);
    let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Anchors(e.to_string()))?;
    let server = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Anchors(e.to_string()))?;
    Ok((client, server))
}

impl Tls {
    /// TLS for the workload `local_id`, trusting `anchors`. It has no certificate until
    /// [`Tls::set_certificate`]; until then handshakes fail.
    pub fn new(local_id: &str, anchors: &[CertificateDer<'static>]) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (client_verifier, server_verifier) = verifiers(anchors, &provider)?;
        let dynamic = Arc::new(Dynamic {
            local_id: local_id.to_string(),
            provider: provider.clone(),
            cert: RwLock::new(None),
            client_verifier: RwLock::new(client_verifier),
            server_verifier: RwLock::new(server_verifier),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Anchors(e.to_string()))?
            .with_client_cert_verifier(Arc::new(DynClientVerifier(dynamic.clone())))
            .with_cert_resolver(Arc::new(DynCert(dynamic.clone())));
        server.alpn_protocols = vec![
            ALPN_H2.to_vec(),
            ALPN_HTTP1.to_vec(),
            ALPN_TRANSPORT.to_vec(),
        ];
        let client = |alpn: Alpn| -> Result<Arc<rustls::ClientConfig>, TlsError> {
            let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| TlsError::Anchors(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DynServerVerifier(dynamic.clone())))
                .with_client_cert_resolver(Arc::new(DynCert(dynamic.clone())));
            c.alpn_protocols = vec![alpn.bytes().to_vec()];
            Ok(Arc::new(c))
        };
        Ok(Tls {
            clients: [
                client(Alpn::H2)?,
                client(Alpn::Http1)?,
                client(Alpn::Transport)?,
            ],
            server: Arc::new(server),
            dynamic,
        })
    }

    /// This proxy's identity.
    pub fn local_id(&self) -> &str {
        &self.dynamic.local_id
    }

    /// Replaces the trust anchors (a bundle during rotation). New handshakes use them.
    pub fn set_anchors(&self, anchors: &[CertificateDer<'static>]) -> Result<(), TlsError> {
        let (client, server) = verifiers(anchors, &self.dynamic.provider)?;
        write(&self.dynamic.client_verifier, client);
        write(&self.dynamic.server_verifier, server);
        Ok(())
    }

    /// Installs a new certificate chain (leaf first) and its key.
    pub fn set_certificate(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), TlsError> {
        if chain.is_empty() {
            return Err(TlsError::Certificate("empty certificate chain".into()));
        }
        let ck = CertifiedKey::from_der(chain, key, &self.dynamic.provider)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        write(&self.dynamic.cert, Some(Arc::new(ck)));
        Ok(())
    }

    /// Whether a certificate is installed.
    pub fn has_certificate(&self) -> bool {
        read(&self.dynamic.cert).is_some()
    }

    /// Connects TLS to a meshed peer that must present `peer_id`.
    pub async fn connect<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: IO,
        peer_id: &str,
        alpn: Alpn,
    ) -> io::Result<tokio_rustls::client::TlsStream<IO>> {
        let name = ServerName::try_from(peer_id.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{peer_id:?} is not a DNS name"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(self.clients[alpn.index()].clone());
        connector.connect(name, io).await
    }

    /// Completes the server side of a handshake whose ClientHello named this proxy.
    pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: IO,
    ) -> io::Result<(tokio_rustls::server::TlsStream<IO>, Accepted)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        let stream = acceptor.accept(io).await?;
        let (_, conn) = stream.get_ref();
        let client_id = conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| weft_pki::CertInfo::from_der(leaf).ok())
            .and_then(|info| info.dns_sans.into_iter().next());
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        Ok((stream, Accepted { client_id, alpn }))
    }

    /// The server side of the tap port: TLS 1.3 with this proxy's certificate, and a client
    /// certificate that is **required**, chains to the trust anchors and names `client_id`
    /// (the viz component's identity). Anyone else fails the handshake, before any tap data.
    /// Certificate renewals and anchor rotations apply to the next handshake, as for mTLS
    /// between proxies.
    pub fn tap_acceptor(&self, client_id: &str) -> Result<TapAcceptor, TlsError> {
        let verifier = OnlyClient {
            dynamic: self.dynamic.clone(),
            client_id: client_id.to_ascii_lowercase(),
        };
        let mut server = rustls::ServerConfig::builder_with_provider(self.dynamic.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Anchors(e.to_string()))?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(DynCert(self.dynamic.clone())));
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(TapAcceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            client_id: client_id.to_ascii_lowercase(),
        })
    }

    /// The current leaf's expiry, if any.
    pub fn certificate_expiry(&self) -> Option<SystemTime> {
        let ck = read(&self.dynamic.cert)?;
        let leaf = ck.cert.first()?;
        weft_pki::CertInfo::from_der(leaf).ok().map(|i| i.not_after)
    }
}

/// Accepts tap clients (see [`Tls::tap_acceptor`]).
#[derive(Clone)]
pub struct TapAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    client_id: String,
}

impl fmt::Debug for TapAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapAcceptor")
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl TapAcceptor {
    /// Completes a handshake with a tap client; fails unless the client proved the tap
    /// identity.
    pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: IO,
    ) -> io::Result<tokio_rustls::server::TlsStream<IO>> {
        let stream = self.acceptor.accept(io).await?;
        // The verifier already refused anyone else; checked again so that a change there can
        // never open the tap port.
        let (_, conn) = stream.get_ref();
        let proven = conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .is_some_and(|leaf| cert_names(leaf, &self.client_id));
        if !proven {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "tap client did not prove the tap identity",
            ));
        }
        Ok(stream)
    }
}

/// Whether a certificate's DNS SANs include `name` (lower case).
fn cert_names(leaf: &CertificateDer<'_>, name: &str) -> bool {
    weft_pki::CertInfo::from_der(leaf)
        .map(|info| {
            info.dns_sans
                .iter()
                .any(|san| san.eq_ignore_ascii_case(name))
        })
        .unwrap_or(false)
}

/// Verifies tap clients: a certificate is required, it must chain to the current anchors, and
/// it must name the one identity allowed to tap.
#[derive(Debug)]
struct OnlyClient {
    dynamic: Arc<Dynamic>,
    client_id: String,
}

impl ClientCertVerifier for OnlyClient {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = read(&self.dynamic.client_verifier).verify_client_cert(
            end_entity,
            intermediates,
            now,
        )?;
        if !cert_names(end_entity, &self.client_id) {
            tracing::info!(
                allowed = %self.client_id,
                "tap client refused: its certificate names another identity"
            );
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.dynamic.client_verifier).verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.dynamic.client_verifier).verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        read(&self.dynamic.client_verifier).supported_verify_schemes()
    }
}

/// What the first bytes of a TLS connection say about its destination.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientHelloSni {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// Not a TLS ClientHello.
    NotTls,
    /// A complete ClientHello with this SNI (if any).
    Sni(Option<String>),
}

/// Reads the SNI of a ClientHello from the bytes received so far, without consuming them.
pub fn client_hello_sni(buf: &[u8]) -> ClientHelloSni {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = buf;
    while !rd.is_empty() {
        match acceptor.read_tls(&mut rd) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return ClientHelloSni::NotTls,
        }
    }
    match acceptor.accept() {
        Ok(None) => ClientHelloSni::NeedMore,
        Ok(Some(accepted)) => {
            ClientHelloSni::Sni(accepted.client_hello().server_name().map(str::to_string))
        }
        Err(_) => ClientHelloSni::NotTls,
    }
}

/// Serves the current certificate (server and client side).
#[derive(Debug)]
struct DynCert(Arc<Dynamic>);

impl ResolvesServerCert for DynCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        read(&self.0.cert)
    }
}

impl ResolvesClientCert for DynCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        read(&self.0.cert)
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies client certificates against the current anchors.
#[derive(Debug)]
struct DynClientVerifier(Arc<Dynamic>);

impl ClientCertVerifier for DynClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; anchors change at run time and we cannot lend a borrow of them.
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        read(&self.0.client_verifier).verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.0.client_verifier).verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.0.client_verifier).verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        read(&self.0.client_verifier).supported_verify_schemes()
    }
}

/// Verifies a peer's certificate against the current anchors and the expected identity (SNI).
#[derive(Debug)]
struct DynServerVerifier(Arc<Dynamic>);

impl ServerCertVerifier for DynServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        read(&self.0.server_verifier).verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.0.server_verifier).verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.0.server_verifier).verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        read(&self.0.server_verifier).supported_verify_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use weft_pki::{create_issuer, create_root, generate_key_and_csr, Identity, Issuer};

    const DAY: Duration = Duration::from_secs(86_400);

    struct Ca {
        root: weft_pki::CertAndKey,
        issuer: Issuer,
    }

    fn ca(name: &str) -> Ca {
        let now = SystemTime::now();
        let root = create_root(&format!("root.{name}"), 365 * DAY, now).unwrap();
        let iss = create_issuer(
            &format!("identity.{name}"),
            root.cert_pem.as_bytes(),
            root.key_pem.as_bytes(),
            30 * DAY,
            now,
        )
        .unwrap();
        let issuer = Issuer::load(
            iss.cert_pem.as_bytes(),
            iss.key_pem.as_bytes(),
            root.cert_pem.as_bytes(),
            now,
        )
        .unwrap();
        Ca { root, issuer }
    }

    fn id(sa: &str) -> Identity {
        Identity::new(sa, "emojivoto", "weft", "cluster.local").unwrap()
    }

    /// A Tls for `sa` trusting `anchors`, with a leaf from `ca`.
    fn tls(ca: &Ca, sa: &str, anchors: &[CertificateDer<'static>]) -> Tls {
        let identity = id(sa);
        let (key, csr) = generate_key_and_csr(&identity).unwrap();
        let leaf = ca
            .issuer
            .certify(
                csr.as_ref(),
                &identity,
                DAY,
                Duration::from_secs(20),
                SystemTime::now(),
            )
            .unwrap();
        let t = Tls::new(identity.as_str(), anchors).unwrap();
        let mut chain = vec![leaf.cert_der.clone()];
        chain.extend(leaf.intermediates.iter().cloned());
        t.set_certificate(chain, key.private_key_der()).unwrap();
        t
    }

    /// Runs one handshake: the client expects `expect`; returns what the server saw.
    async fn handshake(client: Arc<Tls>, server: Arc<Tls>, expect: &str) -> io::Result<Accepted> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (mut tls, acc) = server.accept(s).await?;
            let mut b = [0u8; 4];
            tls.read_exact(&mut b).await?;
            tls.write_all(&b).await?;
            tls.shutdown().await?;
            Ok::<_, io::Error>(acc)
        });
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let client_side = async {
            let mut tls = client.connect(s, expect, Alpn::H2).await?;
            tls.write_all(b"ping").await?;
            let mut b = [0u8; 4];
            tls.read_exact(&mut b).await?;
            assert_eq!(&b, b"ping");
            Ok::<_, io::Error>(())
        };
        let c = client_side.await;
        let s = srv.await.unwrap();
        c?;
        s
    }

    #[tokio::test]
    async fn mutual_tls_records_client_identity() {
        let ca = ca("a");
        let anchors = vec![ca.root.cert_der.clone()];
        let web = Arc::new(tls(&ca, "web", &anchors));
        let emoji = Arc::new(tls(&ca, "emoji", &anchors));
        let acc = handshake(web, emoji.clone(), emoji.local_id())
            .await
            .unwrap();
        assert_eq!(acc.client_id.as_deref(), Some(id("web").as_str()));
        assert_eq!(acc.alpn.as_deref(), Some(ALPN_H2));
    }

    #[tokio::test]
    async fn wrong_peer_identity_is_refused() {
        let ca = ca("a");
        let anchors = vec![ca.root.cert_der.clone()];
        let web = Arc::new(tls(&ca, "web", &anchors));
        let voting = Arc::new(tls(&ca, "voting", &anchors));
        // web expects emoji but reaches voting.
        let err = handshake(web, voting, id("emoji").as_str())
            .await
            .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn other_trust_anchor_is_refused_until_bundled() {
        let (a, b) = (ca("a"), ca("b"));
        let web = Arc::new(tls(&a, "web", std::slice::from_ref(&a.root.cert_der)));
        let emoji = Arc::new(tls(&b, "emoji", std::slice::from_ref(&b.root.cert_der)));
        assert!(handshake(web.clone(), emoji.clone(), emoji.local_id())
            .await
            .is_err());
        // Rotation: both sides trust the bundle of both anchors; no restart.
        let bundle = vec![a.root.cert_der.clone(), b.root.cert_der.clone()];
        web.set_anchors(&bundle).unwrap();
        emoji.set_anchors(&bundle).unwrap();
        let acc = handshake(web, emoji.clone(), emoji.local_id())
            .await
            .unwrap();
        assert_eq!(acc.client_id.as_deref(), Some(id("web").as_str()));
    }

    #[tokio::test]
    async fn no_certificate_means_no_handshake() {
        let a = ca("a");
        let anchors = vec![a.root.cert_der.clone()];
        let web = Arc::new(tls(&a, "web", &anchors));
        let bare = Arc::new(Tls::new(id("emoji").as_str(), &anchors).unwrap());
        assert!(!bare.has_certificate());
        assert!(handshake(web, bare, id("emoji").as_str()).await.is_err());
    }

    /// One tap handshake: `client` connects to `server`'s tap acceptor allowing `allowed`.
    async fn tap_handshake(client: Arc<Tls>, server: Arc<Tls>, allowed: &str) -> io::Result<()> {
        let acceptor = server.tap_acceptor(allowed).unwrap();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let srv = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await?;
            tls.write_all(b"tap!").await?;
            tls.shutdown().await?;
            Ok::<_, io::Error>(())
        });
        let name = server.local_id().to_string();
        let client_side = async {
            let mut tls = client.connect(client_io, &name, Alpn::H2).await?;
            let mut b = [0u8; 4];
            tls.read_exact(&mut b).await?;
            Ok::<_, io::Error>(())
        };
        let c = client_side.await;
        let s = srv.await.unwrap();
        c.and(s)
    }

    #[tokio::test]
    async fn tap_port_admits_only_the_tap_identity() {
        let a = ca("a");
        let anchors = vec![a.root.cert_der.clone()];
        let proxy = Arc::new(tls(&a, "web", &anchors));
        let viz = Arc::new(tls(&a, "tap", &anchors));
        let other = Arc::new(tls(&a, "emoji", &anchors));
        let anonymous = Arc::new(Tls::new(id("tap").as_str(), &anchors).unwrap());
        let allowed = id("tap").as_str().to_ascii_uppercase();
        tap_handshake(viz, proxy.clone(), &allowed).await.unwrap();
        assert!(tap_handshake(other, proxy.clone(), &allowed).await.is_err());
        assert!(tap_handshake(anonymous, proxy.clone(), &allowed)
            .await
            .is_err());
        // The tap identity from another CA is refused too.
        let b = ca("b");
        let foreign = Arc::new(tls(&b, "tap", &anchors));
        assert!(tap_handshake(foreign, proxy, &allowed).await.is_err());
    }

    #[test]
    fn anchors_must_parse() {
        assert!(Tls::new("x", &[CertificateDer::from(vec![1, 2, 3])]).is_err());
    }

    #[tokio::test]
    async fn client_hello_sni_is_read_without_consuming() {
        let a = ca("a");
        let web = tls(&a, "web", std::slice::from_ref(&a.root.cert_der));
        let (mut client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let name = id("emoji").as_str().to_string();
        let t = tokio::spawn(async move {
            let _ = web.connect(&mut client_io, &name, Alpn::H2).await;
        });
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        let sni = loop {
            let n = server_io.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            match client_hello_sni(&buf) {
                ClientHelloSni::NeedMore => continue,
                other => break other,
            }
        };
        assert_eq!(
            sni,
            ClientHelloSni::Sni(Some(id("emoji").as_str().to_string()))
        );
        assert_eq!(
            client_hello_sni(b"GET / HTTP/1.1\r\n"),
            ClientHelloSni::NotTls
        );
        assert_eq!(client_hello_sni(&buf[..3]), ClientHelloSni::NeedMore);
        drop(server_io);
        let _ = t.await;
    }
}
