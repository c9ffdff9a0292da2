#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use rcgen::{KeyPair, RsaKeySize, PKCS_RSA_SHA256};

use super::*;
use crate::error::{CertRole, VerifyError};
use crate::test_support::*;

const SKEW: Duration = Duration::from_secs(10);

fn csr_for(identity: &Identity) -> Vec<u8> {
    generate_key_and_csr(identity).unwrap().1.as_ref().to_vec()
}

/// A CSR with arbitrary names, signed by a fresh key of the given algorithm.
fn custom_csr(cn: Option<&str>, sans: Vec<SanType>, key: &KeyPair) -> Vec<u8> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p.serialize_request(key).unwrap().der().as_ref().to_vec()
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

// --- roots and issuers ---------------------------------------------------------------------

#[test]
fn root_is_what_step_root_ca_profile_makes() {
    let root = create_root("root.linkerd.cluster.local", 10 * YEAR, t0()).unwrap();
    let info = CertInfo::from_der(root.cert_der.as_ref()).unwrap();
    assert_eq!(info.subject, "CN=root.linkerd.cluster.local");
    assert!(info.self_issued && info.is_ca);
    assert_eq!(info.path_len, Some(1));
    assert_eq!(info.key_usage, Some(vec!["keyCertSign", "cRLSign"]));
    assert_eq!(info.key_type, KeyType::EcdsaP256);
    assert_eq!((info.not_before, info.not_after), (t0(), t0() + 10 * YEAR));
    assert_eq!(root.not_after, info.not_after);
    assert!(info.subject_key_id.is_some());
    let parsed = x509_parser::parse_x509_certificate(root.cert_der.as_ref())
        .unwrap()
        .1;
    // Basic constraints and key usage are critical; the root signs itself.
    assert!(parsed.basic_constraints().unwrap().unwrap().critical);
    assert!(parsed.key_usage().unwrap().unwrap().critical);
    assert!(parsed.verify_signature(None).is_ok());
    // The key is PKCS#8 PEM and belongs to the certificate.
    assert!(root.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = parse_private_key(root.key_pem.as_bytes()).unwrap();
    assert!(crate::cert::key_matches_cert(&key, root.cert_der.as_ref()));
    assert_eq!(
        parse_pem_certs(root.cert_pem.as_bytes()).unwrap(),
        vec![root.cert_der]
    );
}

#[test]
fn issuer_is_what_step_intermediate_ca_profile_makes() {
    let pki = Pki::new(t0());
    let info = CertInfo::from_der(pki.issuer.cert_der.as_ref()).unwrap();
    let root = CertInfo::from_der(pki.root.cert_der.as_ref()).unwrap();
    assert_eq!(info.subject, "CN=identity.linkerd.cluster.local");
    assert_eq!(info.issuer, "CN=root.linkerd.cluster.local");
    assert!(info.is_ca);
    assert_eq!(info.path_len, Some(0));
    assert_eq!(info.key_usage, Some(vec!["keyCertSign", "cRLSign"]));
    assert_eq!(info.key_type, KeyType::EcdsaP256);
    assert_eq!((info.not_before, info.not_after), (t0(), t0() + YEAR));
    assert_eq!(info.authority_key_id, root.subject_key_id);
    assert_ne!(info.subject_key_id, root.subject_key_id);
    assert_ne!(info.serial_hex, root.serial_hex);
    crate::verify::verify_chain(&pki.issuer_der(), &[], &[pki.root_der()], t0(), None).unwrap();
}

#[test]
fn issuer_lifetime_is_cut_at_the_ca_expiry() {
    let root = create_root("root", 30 * DAY, t0()).unwrap();
    let issuer = create_issuer(
        "issuer",
        root.cert_pem.as_bytes(),
        root.key_pem.as_bytes(),
        YEAR,
        t0(),
    )
    .unwrap();
    assert_eq!(issuer.not_after, t0() + 30 * DAY);
    let info = CertInfo::from_der(issuer.cert_der.as_ref()).unwrap();
    assert_eq!(info.not_after, t0() + 30 * DAY);
}

#[test]
fn create_issuer_refuses_a_leaf_as_ca() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let (key, csr) = generate_key_and_csr(&web()).unwrap();
    let leaf = issuer.certify(&csr, &web(), DAY, SKEW, t0()).unwrap();
    let err = create_issuer(
        "x",
        leaf.cert_pem.as_bytes(),
        key.to_pem().as_bytes(),
        YEAR,
        t0(),
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::NotACa { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "certificate \"CN={}\" is not a CA (CA:FALSE) — the signing CA must be a CA",
            web()
        )
    );
}

#[test]
fn create_issuer_refuses_a_key_that_is_not_the_cas() {
    let pki = Pki::new(t0());
    let err = create_issuer(
        "x",
        pki.root.cert_pem.as_bytes(),
        pki.issuer.key_pem.as_bytes(),
        YEAR,
        t0(),
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "private key does not match certificate \"CN=root.linkerd.cluster.local\" (their public keys differ)"
    );
}

#[test]
fn create_issuer_refuses_an_expired_or_future_ca() {
    let root = create_root("root", DAY, t0()).unwrap();
    let (c, k) = (root.cert_pem.as_bytes(), root.key_pem.as_bytes());
    let err = create_issuer("x", c, k, YEAR, t0() + 2 * DAY).unwrap_err();
    assert!(matches!(err, PkiError::Expired { not_after, .. } if not_after == t0() + DAY));
    assert_eq!(
        err.to_string(),
        "certificate \"CN=root\" expired at 2030-01-02T00:00:00Z"
    );
    let err = create_issuer("x", c, k, YEAR, t0() - DAY).unwrap_err();
    assert!(matches!(err, PkiError::NotYetValid { .. }), "{err:?}");
}

#[test]
fn create_issuer_refuses_a_pathlen_zero_ca() {
    let pki = Pki::new(t0());
    let err = create_issuer(
        "x",
        pki.issuer.cert_pem.as_bytes(),
        pki.issuer.key_pem.as_bytes(),
        YEAR,
        t0(),
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::PathLenZero { .. }), "{err:?}");
}

#[test]
fn create_issuer_refuses_non_pem() {
    let pki = Pki::new(t0());
    let err = create_issuer("x", b"garbage", pki.root.key_pem.as_bytes(), YEAR, t0()).unwrap_err();
    assert!(matches!(err, PkiError::NotPem { .. }), "{err:?}");
    let err = create_issuer("x", pki.root.cert_pem.as_bytes(), b"", YEAR, t0()).unwrap_err();
    assert!(matches!(err, PkiError::NotPem { .. }), "{err:?}");
}

#[test]
fn names_and_lifetimes_are_validated() {
    for bad in ["", "   ", &"a".repeat(65), "a\nb"] {
        let err = create_root(bad, YEAR, t0()).unwrap_err();
        assert!(
            matches!(err, PkiError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    assert!(create_root(&"a".repeat(64), YEAR, t0()).is_ok());
    let err = create_root("r", Duration::ZERO, t0()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidValidity { .. }), "{err:?}");
    let err = create_root("r", Duration::from_secs(u64::MAX / 2), t0()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidValidity { .. }), "{err:?}");
}

#[test]
fn an_rsa_root_can_sign_an_ecdsa_issuer() {
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let root = params("rsa-root", ca(1), t0(), t0() + YEAR)
        .self_signed(&key)
        .unwrap();
    let issuer = create_issuer(
        "issuer",
        root.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        DAY,
        t0(),
    )
    .unwrap();
    let loaded = Issuer::load(
        issuer.cert_pem.as_bytes(),
        issuer.key_pem.as_bytes(),
        root.pem().as_bytes(),
        t0(),
    )
    .unwrap();
    assert_eq!(
        loaded.chain().anchor().unwrap().key_type,
        KeyType::Rsa(2048)
    );
    let leaf = loaded
        .certify(&csr_for(&web()), &web(), HOUR, SKEW, t0())
        .unwrap();
    crate::verify::verify_chain(
        &leaf.cert_der,
        loaded.intermediates(),
        &[root.der().clone()],
        t0(),
        Some(web().as_str()),
    )
    .unwrap();
}

// --- loading an issuer ---------------------------------------------------------------------

#[test]
fn issuer_load_accepts_a_good_issuer() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0() + HOUR);
    assert_eq!(issuer.info().subject, "CN=identity.linkerd.cluster.local");
    assert_eq!(issuer.not_after(), t0() + YEAR);
    assert_eq!(issuer.valid_until(), t0() + YEAR);
    assert_eq!(issuer.intermediates(), &[pki.issuer_der()]);
    assert_eq!(issuer.anchors().len(), 1);
    assert_eq!(issuer.chain().chain.len(), 2);
    assert!(format!("{issuer:?}").contains("identity.linkerd.cluster.local"));
}

#[test]
fn issuer_load_refuses_a_leaf() {
    let pki = Pki::new(t0());
    let (key, csr) = generate_key_and_csr(&web()).unwrap();
    let leaf = pki
        .load(t0())
        .certify(&csr, &web(), DAY, SKEW, t0())
        .unwrap();
    let err = Issuer::load(
        leaf.cert_pem.as_bytes(),
        key.to_pem().as_bytes(),
        pki.root.cert_pem.as_bytes(),
        t0(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "certificate \"CN={}\" is not a CA (CA:FALSE) — an issuer must be a CA",
            web()
        )
    );
}

#[test]
fn issuer_load_refuses_a_key_that_does_not_match() {
    let pki = Pki::new(t0());
    let err = Issuer::load(
        pki.issuer.cert_pem.as_bytes(),
        pki.root.key_pem.as_bytes(),
        pki.root.cert_pem.as_bytes(),
        t0(),
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn issuer_load_refuses_an_issuer_not_signed_by_the_anchors() {
    let pki = Pki::new(t0());
    let other = Pki::new(t0());
    let err = Issuer::load(
        pki.issuer.cert_pem.as_bytes(),
        pki.issuer.key_pem.as_bytes(),
        other.root.cert_pem.as_bytes(),
        t0(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, PkiError::Verify(VerifyError::UnknownIssuer { which, .. }) if which.role == CertRole::Target),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("was not issued by any of the trust anchors"),
        "{err}"
    );
    // With both roots in the bundle it loads (anchor rotation, step 1).
    let bundle = format!("{}{}", other.root.cert_pem, pki.root.cert_pem);
    Issuer::load(
        pki.issuer.cert_pem.as_bytes(),
        pki.issuer.key_pem.as_bytes(),
        bundle.as_bytes(),
        t0(),
    )
    .unwrap();
}

#[test]
fn issuer_load_refuses_expired_and_future_issuers() {
    let pki = Pki::new(t0());
    let load = |now| {
        Issuer::load(
            pki.issuer.cert_pem.as_bytes(),
            pki.issuer.key_pem.as_bytes(),
            pki.root.cert_pem.as_bytes(),
            now,
        )
    };
    let err = load(t0() + YEAR + HOUR).unwrap_err();
    assert!(
        matches!(&err, PkiError::Verify(VerifyError::Expired { not_after, .. }) if *not_after == t0() + YEAR),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "certificate \"CN=identity.linkerd.cluster.local\" expired at 2031-01-01T00:00:00Z"
    );
    let err = load(t0() - HOUR).unwrap_err();
    assert!(
        matches!(err, PkiError::Verify(VerifyError::NotYetValid { .. })),
        "{err:?}"
    );
}

#[test]
fn issuer_load_refuses_an_rsa_issuer() {
    let pki = Pki::new(t0());
    let root_key = KeyPair::from_pem(&pki.root.key_pem).unwrap();
    let rsa = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let root = rcgen::Issuer::from_ca_cert_der(&pki.root_der(), &root_key).unwrap();
    let cert = params("rsa-issuer", ca(0), t0(), t0() + YEAR)
        .signed_by(&rsa, &root)
        .unwrap();
    let err = Issuer::load(
        cert.pem().as_bytes(),
        rsa.serialize_pem().as_bytes(),
        pki.root.cert_pem.as_bytes(),
        t0(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::UnsupportedKey {
                key_type: KeyType::Rsa(2048),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "issuer key is RSA 2048; issuers must use ECDSA P-256"
    );
}

#[test]
fn issuer_load_refuses_bad_inputs() {
    let pki = Pki::new(t0());
    let (c, k, a) = (
        pki.issuer.cert_pem.as_bytes(),
        pki.issuer.key_pem.as_bytes(),
        pki.root.cert_pem.as_bytes(),
    );
    assert!(matches!(
        Issuer::load(b"nope", k, a, t0()),
        Err(PkiError::NotPem { .. })
    ));
    assert!(matches!(
        Issuer::load(c, b"nope", a, t0()),
        Err(PkiError::NotPem { .. })
    ));
    assert!(matches!(
        Issuer::load(c, k, b"nope", t0()),
        Err(PkiError::NotPem { .. })
    ));
    assert!(matches!(
        Issuer::load(c, k, k, t0()),
        Err(PkiError::NoCertificates { .. })
    ));
    assert!(matches!(
        Issuer::load(k, k, a, t0()),
        Err(PkiError::NoCertificates { .. })
    ));
    // A leaf in the anchor bundle is refused as an anchor.
    let (_key, csr) = generate_key_and_csr(&web()).unwrap();
    let leaf = pki
        .load(t0())
        .certify(&csr, &web(), DAY, SKEW, t0())
        .unwrap();
    let err = Issuer::load(c, k, leaf.cert_pem.as_bytes(), t0()).unwrap_err();
    assert!(
        err.to_string().ends_with("a trust anchor must be a CA"),
        "{err}"
    );
}

#[test]
fn issuer_pem_may_carry_its_chain() {
    let pki = Pki::new(t0());
    let chain = format!("{}{}", pki.issuer.cert_pem, pki.root.cert_pem);
    let issuer = Issuer::load(
        chain.as_bytes(),
        pki.issuer.key_pem.as_bytes(),
        pki.root.cert_pem.as_bytes(),
        t0(),
    )
    .unwrap();
    assert_eq!(issuer.intermediates().len(), 2);
    let leaf = issuer
        .certify(&csr_for(&web()), &web(), DAY, SKEW, t0())
        .unwrap();
    assert_eq!(parse_pem_certs(leaf.chain_pem.as_bytes()).unwrap().len(), 3);
}

#[test]
fn issuer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Issuer>();
    check::<Leaf>();
    check::<TrustAnchors>();
}

// --- leaves ----------------------------------------------------------------------------------

#[test]
fn leaf_carries_the_identity_and_verifies() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let (key, csr) = generate_key_and_csr(&web()).unwrap();
    let leaf = issuer.certify(&csr, &web(), DAY, SKEW, t0()).unwrap();
    let info = CertInfo::from_der(leaf.cert_der.as_ref()).unwrap();
    assert_eq!(info.dns_sans, vec![web().to_string()]);
    assert_eq!(info.uri_sans, vec![web().spiffe_uri()]);
    assert_eq!(info.ext_key_usage, vec!["serverAuth", "clientAuth"]);
    assert!(!info.is_ca);
    assert_eq!(info.key_type, KeyType::EcdsaP256);
    assert!(crate::cert::key_matches_cert(&key, leaf.cert_der.as_ref()));
    assert_eq!(leaf.intermediates, vec![pki.issuer_der()]);
    let chain = parse_pem_certs(leaf.chain_pem.as_bytes()).unwrap();
    assert_eq!(chain, vec![leaf.cert_der.clone(), pki.issuer_der()]);
    assert_eq!(
        parse_pem_certs(leaf.cert_pem.as_bytes()).unwrap(),
        vec![leaf.cert_der.clone()]
    );
    assert_eq!(leaf.serial_hex, info.serial_hex);
    crate::verify::verify_chain(
        &leaf.cert_der,
        &leaf.intermediates,
        &[pki.root_der()],
        t0(),
        Some(web().as_str()),
    )
    .unwrap();
}

#[test]
fn leaf_validity_is_lifetime_with_skew_before() {
    let pki = Pki::new(t0());
    let now = t0() + HOUR + Duration::from_millis(700);
    let leaf = pki
        .load(t0())
        .certify(&csr_for(&web()), &web(), DAY, SKEW, now)
        .unwrap();
    let info = CertInfo::from_der(leaf.cert_der.as_ref()).unwrap();
    assert_eq!(info.not_before, t0() + HOUR - SKEW);
    assert_eq!(info.not_after, t0() + HOUR + DAY);
    assert_eq!(
        (leaf.not_before, leaf.not_after),
        (info.not_before, info.not_after)
    );
}

#[test]
fn leaf_never_outlives_its_issuer() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let now = t0() + YEAR - HOUR;
    let leaf = issuer
        .certify(&csr_for(&web()), &web(), DAY, SKEW, now)
        .unwrap();
    assert_eq!(leaf.not_after, t0() + YEAR);
    let info = CertInfo::from_der(leaf.cert_der.as_ref()).unwrap();
    assert_eq!(info.not_after, t0() + YEAR);
}

#[test]
fn an_issuer_that_expired_after_loading_refuses_to_sign() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let err = issuer
        .certify(&csr_for(&web()), &web(), DAY, SKEW, t0() + 2 * YEAR)
        .unwrap_err();
    assert!(matches!(err, PkiError::Expired { .. }), "{err:?}");
    assert!(
        err.to_string().contains("identity.linkerd.cluster.local"),
        "{err}"
    );
}

#[test]
fn csr_for_another_identity_is_refused() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let err = issuer
        .certify(&csr_for(&web()), &voting(), DAY, SKEW, t0())
        .unwrap_err();
    match &err {
        PkiError::CsrIdentityMismatch { expected, found } => {
            assert_eq!(expected, voting().as_str());
            assert_eq!(found, &[format!("CN={}", web()), format!("DNS:{}", web())]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("CSR does not carry exactly the requested identity"));
}

#[test]
fn csr_names_must_all_be_the_identity() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let id = web();
    let key = KeyPair::generate().unwrap();
    let ok = [
        custom_csr(Some(id.as_str()), vec![], &key),
        custom_csr(None, vec![dns(id.as_str())], &key),
        custom_csr(
            Some(id.as_str()),
            vec![dns(id.as_str()), uri(&id.spiffe_uri())],
            &key,
        ),
    ];
    for csr in ok {
        issuer.certify(&csr, &id, DAY, SKEW, t0()).unwrap();
    }
    let refused = [
        custom_csr(None, vec![], &key),
        custom_csr(None, vec![uri(&id.spiffe_uri())], &key),
        custom_csr(Some(id.as_str()), vec![dns(voting().as_str())], &key),
        custom_csr(
            Some(id.as_str()),
            vec![dns(id.as_str()), dns("evil.example.com")],
            &key,
        ),
        custom_csr(Some("evil.example.com"), vec![dns(id.as_str())], &key),
        custom_csr(Some(id.as_str()), vec![uri(&voting().spiffe_uri())], &key),
        custom_csr(
            Some(id.as_str()),
            vec![SanType::IpAddress("10.0.0.1".parse().unwrap())],
            &key,
        ),
        custom_csr(Some(&id.as_str().to_uppercase()), vec![], &key),
    ];
    for (i, csr) in refused.iter().enumerate() {
        let err = issuer.certify(csr, &id, DAY, SKEW, t0()).unwrap_err();
        assert!(
            matches!(err, PkiError::CsrIdentityMismatch { .. }),
            "case {i}: {err:?}"
        );
    }
}

#[test]
fn csr_requests_beyond_names_are_ignored() {
    // A CSR asking to be a CA with code-signing usage still gets a plain workload leaf.
    let pki = Pki::new(t0());
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, web().as_str());
    p.distinguished_name
        .push(DnType::OrganizationName, "Evil Corp");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let csr = p.serialize_request(&key).unwrap();
    let leaf = pki
        .load(t0())
        .certify(csr.der(), &web(), DAY, SKEW, t0())
        .unwrap();
    let info = CertInfo::from_der(leaf.cert_der.as_ref()).unwrap();
    assert!(!info.is_ca);
    assert_eq!(info.subject, format!("CN={}", web()));
    assert_eq!(info.ext_key_usage, vec!["serverAuth", "clientAuth"]);
    assert_eq!(info.key_usage, Some(vec!["digitalSignature"]));
}

#[test]
fn bad_csrs_are_refused() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let err = issuer
        .certify(b"junk", &web(), DAY, SKEW, t0())
        .unwrap_err();
    assert!(matches!(err, PkiError::BadCsr { .. }), "{err:?}");

    let mut csr = csr_for(&web());
    // Change one letter of the requested name: the self-signature no longer verifies.
    let at = csr.windows(3).position(|w| w == b"web").unwrap();
    csr[at] = b'x';
    let err = issuer.certify(&csr, &web(), DAY, SKEW, t0()).unwrap_err();
    assert!(matches!(err, PkiError::CsrBadSignature), "{err:?}");

    let mut csr = csr_for(&web());
    csr.push(0);
    let err = issuer.certify(&csr, &web(), DAY, SKEW, t0()).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");

    let err = issuer
        .certify(&csr_for(&web()), &web(), Duration::ZERO, SKEW, t0())
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidValidity { .. }), "{err:?}");
}

#[test]
fn csr_with_an_rsa_key_is_refused() {
    let pki = Pki::new(t0());
    let rsa = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let csr = custom_csr(Some(web().as_str()), vec![], &rsa);
    let err = pki
        .load(t0())
        .certify(&csr, &web(), DAY, SKEW, t0())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "CSR key is RSA 2048; workload keys must be ECDSA P-256 or P-384"
    );
}

#[test]
fn csr_with_a_p384_key_is_accepted() {
    let pki = Pki::new(t0());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let csr = custom_csr(Some(web().as_str()), vec![], &key);
    let leaf = pki
        .load(t0())
        .certify(&csr, &web(), DAY, SKEW, t0())
        .unwrap();
    let info = CertInfo::from_der(leaf.cert_der.as_ref()).unwrap();
    assert_eq!(info.key_type, KeyType::EcdsaP384);
}

#[test]
fn generated_csr_names_the_identity() {
    let (key, csr) = generate_key_and_csr(&web()).unwrap();
    assert_eq!(*key.key_type(), KeyType::EcdsaP256);
    let (_, parsed) = X509CertificationRequest::from_der(csr.as_ref()).unwrap();
    parsed.verify_signature().unwrap();
    assert_eq!(
        parsed.certification_request_info.subject.to_string(),
        format!("CN={}", web())
    );
    assert_eq!(
        parsed.certification_request_info.subject_pki.raw,
        key.public_key_spki_der()
    );
}

/// Serials: 1,000 leaves, 1,000 distinct positive serials, each a minimal DER INTEGER carrying
/// 128 random bits — every bit position is set in roughly half of them.
#[test]
fn serials_are_random_positive_128_bit_and_distinct() {
    const N: usize = 1000;
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let csr = csr_for(&web());
    let mut seen = HashSet::new();
    let mut ones = [0usize; 128];
    for _ in 0..N {
        let leaf = issuer.certify(&csr, &web(), DAY, SKEW, t0()).unwrap();
        let cert = x509_parser::parse_x509_certificate(leaf.cert_der.as_ref())
            .unwrap()
            .1;
        let raw = cert.raw_serial();
        // DER INTEGER content: positive (top bit clear), minimal, at most 16 bytes + sign byte.
        assert!(
            raw.first().unwrap() & 0x80 == 0,
            "negative serial {raw:02x?}"
        );
        assert!(raw.len() <= SERIAL_BYTES + 1);
        if raw.len() > 1 {
            assert!(
                !(raw[0] == 0 && raw[1] & 0x80 == 0),
                "non-minimal {raw:02x?}"
            );
        }
        assert!(raw.iter().any(|b| *b != 0), "zero serial");
        let magnitude = crate::cert::serial_hex(raw);
        assert!(magnitude.len() <= 32);
        assert_eq!(magnitude, leaf.serial_hex);
        // Left-pad to 16 bytes and count set bits per position.
        let mut bytes = [0u8; SERIAL_BYTES];
        let digits = if raw.len() == SERIAL_BYTES + 1 {
            &raw[1..]
        } else {
            raw
        };
        bytes[SERIAL_BYTES - digits.len()..].copy_from_slice(digits);
        for (i, one) in ones.iter_mut().enumerate() {
            if bytes[i / 8] & (0x80 >> (i % 8)) != 0 {
                *one += 1;
            }
        }
        assert!(seen.insert(leaf.serial_hex), "duplicate serial");
    }
    assert_eq!(seen.len(), N);
    // Binomial(1000, 0.5): mean 500, sd ~16; 350..650 is over 9 sd either side.
    for (bit, count) in ones.iter().enumerate() {
        assert!(
            (350..650).contains(count),
            "bit {bit} set in {count} of {N} serials"
        );
    }
}

#[test]
fn concurrent_issuance_gives_distinct_serials() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let csr = csr_for(&web());
    let serials: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..50)
                        .map(|_| {
                            issuer
                                .certify(&csr, &web(), DAY, SKEW, t0())
                                .unwrap()
                                .serial_hex
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: HashSet<_> = serials.iter().collect();
    assert_eq!(distinct.len(), 200);
}
