//! An in-test PKI (trust anchor and issuer from weft-pki) and identity service
//! (`weft.identity.v1`) on its own runtime thread, so proxy tests can run proxies with mTLS
//! without the control plane; plus certificates for test clients (e.g. a tap client).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};
use weft_api::identity as pb;
use weft_api::identity::identity_server::{Identity as IdentitySvc, IdentityServer};
use weft_pki::{CertificateDer, Identity, Issuer, PrivateKeyDer};

use super::ProxyEnv;

const DAY: Duration = Duration::from_secs(86_400);

/// A trust anchor and an issuer, with the anchor bundle written to a file for proxies.
pub struct Pki {
    pub dir: PathBuf,
    /// The anchors PEM (`WEFT_PROXY_IDENTITY_TRUST_ANCHORS`).
    pub anchors: PathBuf,
    pub root_der: CertificateDer<'static>,
    issuer: Arc<Issuer>,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let now = SystemTime::now();
        let root = weft_pki::create_root("root.weft.test", 365 * DAY, now).unwrap();
        let iss = weft_pki::create_issuer(
            "identity.weft.test",
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
        let dir = std::env::temp_dir().join(format!(
            "weft-proxy-pki-{tag}-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let anchors = dir.join("anchors.pem");
        std::fs::write(&anchors, &root.cert_pem).unwrap();
        std::fs::write(dir.join("token"), "test-token").unwrap();
        Pki {
            dir,
            anchors,
            root_der: root.cert_der,
            issuer: Arc::new(issuer),
        }
    }

    /// The identity of service account `sa` in namespace `emojivoto`.
    pub fn identity(sa: &str) -> String {
        format!("{sa}.emojivoto.serviceaccount.identity.weft.cluster.local")
    }

    /// A certificate chain (leaf first) and key for `sa`, as a test client presents them.
    pub fn leaf(&self, sa: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let id = Identity::parse(&Self::identity(sa)).unwrap();
        let (key, csr) = weft_pki::generate_key_and_csr(&id).unwrap();
        let leaf = self
            .issuer
            .certify(
                csr.as_ref(),
                &id,
                DAY,
                Duration::from_secs(30),
                SystemTime::now(),
            )
            .unwrap();
        let mut chain = vec![leaf.cert_der];
        chain.extend(leaf.intermediates);
        (chain, key.private_key_der())
    }

    /// Proxy settings for workload `sa` with mTLS, certified by `identityd`.
    pub fn proxy_env(&self, sa: &str, identityd: &Identityd) -> ProxyEnv {
        ProxyEnv::new()
            .set("WEFT_PROXY_IDENTITY_DISABLED", "false")
            .set("WEFT_PROXY_IDENTITY_NAME", Self::identity(sa))
            .set("WEFT_PROXY_IDENTITY_TRUST_ANCHORS", self.anchors.display())
            .set("WEFT_PROXY_IDENTITY_SVC_ADDR", identityd.addr)
            .set(
                "WEFT_PROXY_IDENTITY_TOKEN_FILE",
                self.dir.join("token").display(),
            )
    }

    /// Starts an identity service that certifies any workload of this PKI (tokens are not
    /// checked: the control plane's tests cover that).
    pub fn start_identity(&self) -> Identityd {
        let addr: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        let issuer = self.issuer.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                ready_tx.send(()).unwrap();
                let _ = tonic::transport::Server::builder()
                    .add_service(IdentityServer::new(Certifier { issuer }))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await;
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Identityd { addr }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running in-test identity service (lives as long as the test process).
pub struct Identityd {
    pub addr: SocketAddr,
}

struct Certifier {
    issuer: Arc<Issuer>,
}

#[tonic::async_trait]
impl IdentitySvc for Certifier {
    async fn certify(
        &self,
        request: Request<pb::CertifyRequest>,
    ) -> Result<Response<pb::CertifyResponse>, Status> {
        let req = request.into_inner();
        let id =
            Identity::parse(&req.identity).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let leaf = self
            .issuer
            .certify(
                &req.certificate_signing_request,
                &id,
                DAY,
                Duration::from_secs(30),
                SystemTime::now(),
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let valid_until = leaf
            .not_after
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Ok(Response::new(pb::CertifyResponse {
            leaf_certificate: leaf.cert_der.to_vec(),
            intermediate_certificates: leaf.intermediates.iter().map(|c| c.to_vec()).collect(),
            valid_until_unix_ms: i64::try_from(valid_until).unwrap_or(i64::MAX),
        }))
    }
}
