#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use weft_pki::{verify_chain, CertInfo, CertificateDer, IdentityPart};

use super::*;
use crate::identity::credentials::{Contents, CredentialPaths};
use crate::identity::token::{mint_token, HmacTokens};
use crate::test_util::{
    certify_request, identity, new_issuer, new_root, CONTROL_PLANE_NS, TOKEN_KEY, TRUST_DOMAIN,
};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn paths() -> CredentialPaths {
    CredentialPaths {
        trust_anchors: PathBuf::from("ca.crt"),
        issuer_cert: PathBuf::from("issuer.crt"),
        issuer_key: PathBuf::from("issuer.key"),
    }
}

struct Fixture {
    service: IdentityService,
    metrics: Arc<IdentityMetrics>,
    root_der: CertificateDer<'static>,
    issuer_der: CertificateDer<'static>,
    // Keeps the channel open.
    _tx: watch::Sender<Arc<Credentials>>,
}

fn fixture_with(tokens: Arc<dyn TokenValidator>) -> Fixture {
    let root = new_root("root.weft.cluster.local");
    let issuer = new_issuer(&root);
    let contents = Contents {
        trust_anchors: root.cert_pem.clone().into_bytes(),
        issuer_cert: issuer.cert_pem.clone().into_bytes(),
        issuer_key: issuer.key_pem.clone().into_bytes(),
    };
    let creds = Credentials::build(&paths(), &contents, SystemTime::now()).unwrap();
    let (tx, rx) = watch::channel(Arc::new(creds));
    let metrics = Arc::new(IdentityMetrics::default());
    let service = IdentityService::new(
        rx,
        tokens,
        IssuancePolicy {
            trust_domain: TRUST_DOMAIN.to_owned(),
            control_plane_namespace: CONTROL_PLANE_NS.to_owned(),
            leaf_lifetime: DAY,
            clock_skew: Duration::from_secs(20),
        },
        metrics.clone(),
    );
    Fixture {
        service,
        metrics,
        root_der: root.cert_der,
        issuer_der: issuer.cert_der,
        _tx: tx,
    }
}

fn fixture() -> Fixture {
    fixture_with(Arc::new(
        HmacTokens::from_key_file_contents(TOKEN_KEY.as_bytes()).unwrap(),
    ))
}

fn err_of(f: &Fixture, req: &CertifyRequest) -> CertifyError {
    f.service
        .certify_at(req, SystemTime::now())
        .expect_err("the call must fail")
}

#[test]
fn signs_a_leaf_that_chains_to_the_anchor() {
    let f = fixture();
    let web = identity("web", "emojivoto");
    let (_key, req) = certify_request(&web, TOKEN_KEY);
    let now = SystemTime::now();
    let rsp = f.service.certify_at(&req, now).unwrap();

    let leaf = CertificateDer::from(rsp.leaf_certificate.clone());
    let intermediates: Vec<CertificateDer<'static>> = rsp
        .intermediate_certificates
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    assert_eq!(intermediates.first(), Some(&f.issuer_der));
    let chain = verify_chain(
        &leaf,
        &intermediates,
        std::slice::from_ref(&f.root_der),
        now,
        Some(&web),
    )
    .unwrap();
    assert_eq!(chain.chain.len(), 3);

    let info = CertInfo::from_der(&rsp.leaf_certificate).unwrap();
    assert_eq!(info.dns_sans, vec![web.clone()]);
    assert_eq!(
        info.uri_sans,
        vec!["spiffe://cluster.local/ns/emojivoto/sa/web".to_owned()]
    );
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert_eq!(
        i128::from(rsp.valid_until_unix_ms),
        ms(info.not_after) as i128
    );
    let lifetime = info.not_after.duration_since(now).unwrap();
    assert!(
        lifetime > DAY - Duration::from_secs(2) && lifetime <= DAY,
        "{lifetime:?}"
    );
    assert_eq!(f.metrics.issued_total(), 1);
}

#[test]
fn malformed_identity_is_invalid_argument() {
    let f = fixture();
    let (_key, mut req) = certify_request(&identity("web", "emojivoto"), TOKEN_KEY);
    for bad in [
        "",
        "web",
        "web.emojivoto.svc.cluster.local",
        "Web.emojivoto.serviceaccount.identity.weft.cluster.local",
    ] {
        req.identity = bad.to_owned();
        let err = err_of(&f, &req);
        assert!(
            matches!(err, CertifyError::MalformedIdentity(_)),
            "{bad}: {err:?}"
        );
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.reason(), FailureReason::InvalidIdentity);
    }
    assert_eq!(f.metrics.failures_total(FailureReason::InvalidIdentity), 4);
    assert_eq!(f.metrics.issued_total(), 0);
}

#[test]
fn identity_of_another_mesh_is_invalid_argument() {
    let f = fixture();
    for other in [
        "web.emojivoto.serviceaccount.identity.weft.example.com",
        "web.emojivoto.serviceaccount.identity.linkerd.cluster.local",
    ] {
        // A valid token and a matching CSR: only the mesh is wrong.
        let (_key, req) = certify_request(other, TOKEN_KEY);
        let err = err_of(&f, &req);
        assert!(
            matches!(err, CertifyError::ForeignIdentity { .. }),
            "{err:?}"
        );
        let status = err.to_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains(".serviceaccount.identity.weft.cluster.local"),
            "{}",
            status.message()
        );
    }
}

#[test]
fn bad_tokens_are_unauthenticated() {
    let f = fixture();
    let web = identity("web", "emojivoto");
    let voting = identity("voting", "emojivoto");
    let (_key, mut req) = certify_request(&web, TOKEN_KEY);
    // A token minted for another identity, one under another key, garbage, none.
    let tokens = [
        mint_token(TOKEN_KEY.as_bytes(), &voting).into_bytes(),
        mint_token(&[7u8; 32], &web).into_bytes(),
        b"not-a-token".to_vec(),
        Vec::new(),
    ];
    for token in tokens {
        req.token = token;
        let err = err_of(&f, &req);
        assert!(matches!(err, CertifyError::Token(_)), "{err:?}");
        assert_eq!(err.to_status().code(), Code::Unauthenticated);
        assert_eq!(err.reason(), FailureReason::Unauthenticated);
    }
    assert_eq!(f.metrics.failures_total(FailureReason::Unauthenticated), 4);
}

#[test]
fn csr_for_another_identity_is_refused() {
    let f = fixture();
    let web = identity("web", "emojivoto");
    let (_key, mut req) = certify_request(&web, TOKEN_KEY);
    // web's token, but a CSR that names voting.
    let (_key, voting_req) = certify_request(&identity("voting", "emojivoto"), TOKEN_KEY);
    req.certificate_signing_request = voting_req.certificate_signing_request;
    let err = err_of(&f, &req);
    assert!(
        matches!(err, CertifyError::Csr(PkiError::CsrIdentityMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.reason(), FailureReason::InvalidCsr);

    req.certificate_signing_request = b"garbage".to_vec();
    let err = err_of(&f, &req);
    assert!(
        matches!(err, CertifyError::Csr(PkiError::BadCsr { .. })),
        "{err:?}"
    );
    assert_eq!(f.metrics.failures_total(FailureReason::InvalidCsr), 2);
}

#[test]
fn expired_issuer_is_failed_precondition() {
    let f = fixture();
    let (_key, req) = certify_request(&identity("web", "emojivoto"), TOKEN_KEY);
    let two_years = SystemTime::now() + Duration::from_secs(2 * 8760 * 3600);
    let err = f.service.certify_at(&req, two_years).unwrap_err();
    assert!(matches!(err, CertifyError::NoValidIssuer(_)), "{err:?}");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(f.metrics.failures_total(FailureReason::NoValidIssuer), 1);
}

struct Unreachable;

impl TokenValidator for Unreachable {
    fn validate(&self, _: &str, _: &[u8]) -> Result<(), TokenError> {
        Err(TokenError::Unavailable(
            "tokenreview: connection refused".to_owned(),
        ))
    }
}

#[test]
fn unavailable_token_check_is_internal_and_hides_details() {
    let f = fixture_with(Arc::new(Unreachable));
    let (_key, req) = certify_request(&identity("web", "emojivoto"), TOKEN_KEY);
    let err = err_of(&f, &req);
    let status = err.to_status();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        !status.message().contains("tokenreview"),
        "{}",
        status.message()
    );
    assert_eq!(f.metrics.failures_total(FailureReason::Internal), 1);
}

#[test]
fn every_error_maps_to_the_closed_set() {
    let id_err = Identity::new("Web", "ns", "weft", "cluster.local").unwrap_err();
    assert!(matches!(
        id_err,
        IdentityError::InvalidPart {
            part: IdentityPart::ServiceAccount,
            ..
        }
    ));
    let cases: Vec<(CertifyError, Code, FailureReason)> = vec![
        (
            CertifyError::MalformedIdentity(id_err),
            Code::InvalidArgument,
            FailureReason::InvalidIdentity,
        ),
        (
            CertifyError::ForeignIdentity {
                identity: "x".into(),
                control_plane_namespace: "weft".into(),
                trust_domain: "cluster.local".into(),
            },
            Code::InvalidArgument,
            FailureReason::InvalidIdentity,
        ),
        (
            CertifyError::Token(TokenError::Missing),
            Code::Unauthenticated,
            FailureReason::Unauthenticated,
        ),
        (
            CertifyError::Token(TokenError::Malformed("x")),
            Code::Unauthenticated,
            FailureReason::Unauthenticated,
        ),
        (
            CertifyError::Token(TokenError::Rejected {
                identity: "x".into(),
            }),
            Code::Unauthenticated,
            FailureReason::Unauthenticated,
        ),
        (
            CertifyError::Token(TokenError::Unavailable("x".into())),
            Code::Internal,
            FailureReason::Internal,
        ),
        (
            CertifyError::from_signing(PkiError::BadCsr { reason: "x".into() }),
            Code::InvalidArgument,
            FailureReason::InvalidCsr,
        ),
        (
            CertifyError::from_signing(PkiError::CsrBadSignature),
            Code::InvalidArgument,
            FailureReason::InvalidCsr,
        ),
        (
            CertifyError::from_signing(PkiError::CsrIdentityMismatch {
                expected: "x".into(),
                found: vec![],
            }),
            Code::InvalidArgument,
            FailureReason::InvalidCsr,
        ),
        (
            CertifyError::from_signing(PkiError::Expired {
                subject: "CN=issuer".into(),
                not_after: UNIX_EPOCH,
            }),
            Code::FailedPrecondition,
            FailureReason::NoValidIssuer,
        ),
        (
            CertifyError::from_signing(PkiError::NotYetValid {
                subject: "CN=issuer".into(),
                not_before: UNIX_EPOCH,
            }),
            Code::FailedPrecondition,
            FailureReason::NoValidIssuer,
        ),
        (
            CertifyError::NoValidIssuer("x".into()),
            Code::FailedPrecondition,
            FailureReason::NoValidIssuer,
        ),
        (
            CertifyError::from_signing(PkiError::NoAnchors),
            Code::Internal,
            FailureReason::Internal,
        ),
        (
            CertifyError::from_signing(PkiError::InvalidValidity { reason: "x".into() }),
            Code::Internal,
            FailureReason::Internal,
        ),
    ];
    for (err, code, reason) in cases {
        assert_eq!(err.code(), code, "{err:?}");
        assert_eq!(err.to_status().code(), code, "{err:?}");
        assert_eq!(err.reason(), reason, "{err:?}");
        if code == Code::Internal {
            assert_eq!(
                err.to_status().message(),
                "internal error; see the identity service's log"
            );
        } else {
            assert_eq!(err.to_status().message(), err.to_string());
        }
    }
}
