//! The gRPC service: `weft.identity.v1.Identity/Certify`.
//!
//! A call is checked in this order: the identity is a well-formed workload identity of this mesh
//! (trust domain and control-plane namespace); the token proves it; an issuer valid now is loaded;
//! the CSR is well-formed, self-signed, and names exactly that identity (checked by
//! `weft_pki::Issuer::certify`). Then the leaf is signed, counted and logged as an audit line.
//!
//! Errors map to a closed set of gRPC codes ([`CertifyError::code`]) and metric reasons
//! ([`CertifyError::reason`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};
use weft_api::identity::identity_server::Identity as IdentityApi;
use weft_api::identity::{CertifyRequest, CertifyResponse};
use weft_pki::{fmt_time, Identity, IdentityError, PkiError};

use super::credentials::Credentials;
use super::metrics::{FailureReason, IdentityMetrics};
use super::token::{TokenError, TokenValidator};

/// Where audit lines go: one `INFO` event per issued certificate under this target, so they
/// can be routed or filtered separately (`WEFT_LOG=info,weft_controller::audit=info`).
pub const AUDIT_TARGET: &str = "weft_controller::audit";

/// What the service signs, and for whom.
#[derive(Clone, Debug)]
pub struct IssuancePolicy {
    /// Identities must end in this trust domain.
    pub trust_domain: String,
    /// Identities must name this control-plane namespace.
    pub control_plane_namespace: String,
    /// Lifetime of leaves (cut at the issuer chain's expiry).
    pub leaf_lifetime: Duration,
    /// Leaves start this long before the time of issue.
    pub clock_skew: Duration,
}

/// Why a Certify call failed.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// Not a workload identity at all.
    #[error(transparent)]
    MalformedIdentity(#[from] IdentityError),
    /// A workload identity of another mesh.
    #[error(
        "identity {identity} is not in this mesh: identities here end in \
         .serviceaccount.identity.{control_plane_namespace}.{trust_domain}"
    )]
    ForeignIdentity {
        /// The identity asked for.
        identity: String,
        /// This mesh's control-plane namespace.
        control_plane_namespace: String,
        /// This mesh's trust domain.
        trust_domain: String,
    },
    /// The token does not prove the identity (or could not be checked).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The CSR is refused.
    #[error(transparent)]
    Csr(PkiError),
    /// No issuer valid now.
    #[error("no valid issuer: {0}")]
    NoValidIssuer(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl CertifyError {
    /// The gRPC code: INVALID_ARGUMENT for a bad identity or CSR, UNAUTHENTICATED for a bad
    /// token, FAILED_PRECONDITION when no valid issuer is loaded, INTERNAL otherwise.
    pub fn code(&self) -> Code {
        match self {
            Self::MalformedIdentity(_) | Self::ForeignIdentity { .. } | Self::Csr(_) => {
                Code::InvalidArgument
            }
            Self::Token(TokenError::Unavailable(_)) => Code::Internal,
            Self::Token(_) => Code::Unauthenticated,
            Self::NoValidIssuer(_) => Code::FailedPrecondition,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The metric label.
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::MalformedIdentity(_) | Self::ForeignIdentity { .. } => {
                FailureReason::InvalidIdentity
            }
            Self::Csr(_) => FailureReason::InvalidCsr,
            Self::Token(TokenError::Unavailable(_)) => FailureReason::Internal,
            Self::Token(_) => FailureReason::Unauthenticated,
            Self::NoValidIssuer(_) => FailureReason::NoValidIssuer,
            Self::Internal(_) => FailureReason::Internal,
        }
    }

    /// The status sent to the caller. Internal details stay in the log.
    pub fn to_status(&self) -> Status {
        match self.code() {
            Code::Internal => Status::internal("internal error; see the identity service's log"),
            code => Status::new(code, self.to_string()),
        }
    }

    /// Sorts an error from signing: the CSR's fault, the issuer's (it expired since the check),
    /// or ours.
    fn from_signing(e: PkiError) -> Self {
        match e {
            PkiError::BadCsr { .. }
            | PkiError::CsrBadSignature
            | PkiError::CsrIdentityMismatch { .. }
            | PkiError::UnsupportedKey { .. }
            | PkiError::InvalidName { .. } => Self::Csr(e),
            PkiError::Expired { .. } | PkiError::NotYetValid { .. } | PkiError::Verify(_) => {
                Self::NoValidIssuer(e.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The identity service.
#[derive(Clone)]
pub struct IdentityService {
    credentials: watch::Receiver<Arc<Credentials>>,
    tokens: Arc<dyn TokenValidator>,
    policy: Arc<IssuancePolicy>,
    metrics: Arc<IdentityMetrics>,
}

impl IdentityService {
    /// A service signing with whatever `credentials` holds at the time of each call.
    pub fn new(
        credentials: watch::Receiver<Arc<Credentials>>,
        tokens: Arc<dyn TokenValidator>,
        policy: IssuancePolicy,
        metrics: Arc<IdentityMetrics>,
    ) -> Self {
        Self {
            credentials,
            tokens,
            policy: Arc::new(policy),
            metrics,
        }
    }

    /// Handles one request at `now`, counting and logging the outcome.
    pub fn certify_at(
        &self,
        req: &CertifyRequest,
        now: SystemTime,
    ) -> Result<CertifyResponse, CertifyError> {
        let result = self.sign(req, now);
        match &result {
            Ok(_) => self.metrics.issued(),
            Err(e) => {
                self.metrics.failed(e.reason());
                if e.code() == Code::Internal {
                    tracing::error!(identity = %req.identity, error = %e, "certify failed");
                } else {
                    tracing::info!(identity = %req.identity, reason = e.reason().as_str(), error = %e, "certify refused");
                }
            }
        }
        result
    }

    fn sign(&self, req: &CertifyRequest, now: SystemTime) -> Result<CertifyResponse, CertifyError> {
        let identity = Identity::parse(&req.identity)?;
        let policy = &self.policy;
        if identity.trust_domain() != policy.trust_domain
            || identity.control_plane_namespace() != policy.control_plane_namespace
        {
            return Err(CertifyError::ForeignIdentity {
                identity: identity.to_string(),
                control_plane_namespace: policy.control_plane_namespace.clone(),
                trust_domain: policy.trust_domain.clone(),
            });
        }
        self.tokens.validate(identity.as_str(), &req.token)?;

        // Clone the Arc and release the watch's lock before signing.
        let creds = self.credentials.borrow().clone();
        if let Some(why) = creds.unusable_at(now) {
            return Err(CertifyError::NoValidIssuer(why));
        }
        let leaf = creds
            .issuer
            .certify(
                &req.certificate_signing_request,
                &identity,
                policy.leaf_lifetime,
                policy.clock_skew,
                now,
            )
            .map_err(CertifyError::from_signing)?;

        tracing::info!(
            target: AUDIT_TARGET,
            identity = %identity,
            serial = %leaf.serial_hex,
            not_after = %fmt_time(leaf.not_after),
            issuer = %creds.issuer.info().subject,
            "certificate issued"
        );
        Ok(CertifyResponse {
            leaf_certificate: leaf.cert_der.to_vec(),
            intermediate_certificates: leaf.intermediates.iter().map(|c| c.to_vec()).collect(),
            valid_until_unix_ms: unix_millis(leaf.not_after),
        })
    }
}

fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

#[tonic::async_trait]
impl IdentityApi for IdentityService {
    #[tracing::instrument(skip_all, fields(
        identity = %request.get_ref().identity,
        client.addr = ?request.remote_addr(),
    ))]
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        // Signing is a few hundred microseconds of CPU: cheap enough to run inline.
        self.certify_at(request.get_ref(), SystemTime::now())
            .map(Response::new)
            .map_err(|e| e.to_status())
    }
}

#[cfg(test)]
mod tests;
