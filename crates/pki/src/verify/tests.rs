#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rcgen::{IsCa, KeyUsagePurpose};

use super::*;
use crate::cert::parse_pem_certs;
use crate::issue::{create_issuer, create_root, generate_key_and_csr, Leaf};
use crate::test_support::*;
use crate::time::fmt_time;

const SKEW: Duration = Duration::from_secs(10);

fn leaf(pki: &Pki, now: SystemTime) -> Leaf {
    let (_key, csr) = generate_key_and_csr(&web()).unwrap();
    pki.load(now).certify(&csr, &web(), DAY, SKEW, now).unwrap()
}

fn target(which: CertRole, subject: &str) -> CertRef {
    CertRef {
        role: which,
        subject: subject.to_owned(),
    }
}

#[test]
fn root_issuer_leaf_round_trip_verifies() {
    let pki = Pki::new(t0());
    let leaf = leaf(&pki, t0());
    let now = t0() + HOUR;
    let info = verify_chain(
        &leaf.cert_der,
        &[pki.issuer_der()],
        &[pki.root_der()],
        now,
        Some(web().as_str()),
    )
    .unwrap();
    let subjects: Vec<_> = info.chain.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("CN={}", web()).as_str(),
            "CN=identity.linkerd.cluster.local",
            "CN=root.linkerd.cluster.local"
        ]
    );
    assert_eq!(info.anchor_index, 0);
    assert_eq!(info.not_after, leaf.not_after);
    assert_eq!(info.target().unwrap().dns_sans, vec![web().to_string()]);
    assert_eq!(
        info.anchor().unwrap().subject,
        "CN=root.linkerd.cluster.local"
    );
}

#[test]
fn chain_verifies_against_the_second_anchor_of_a_bundle() {
    let old = Pki::named("old-root", t0());
    let new = Pki::new(t0());
    let leaf = leaf(&new, t0());
    let info = verify_chain(
        &leaf.cert_der,
        &[new.issuer_der()],
        &[old.root_der(), new.root_der()],
        t0(),
        None,
    )
    .unwrap();
    assert_eq!(info.anchor_index, 1);
}

#[test]
fn anchors_with_the_same_name_are_all_tried() {
    // Anchor rotation: old and new root share the CN, as `step` makes them.
    let old = Pki::new(t0());
    let new = Pki::new(t0());
    for (pki, want) in [(&old, 0), (&new, 1)] {
        let leaf = leaf(pki, t0());
        let info = verify_chain(
            &leaf.cert_der,
            &[old.issuer_der(), new.issuer_der()],
            &[old.root_der(), new.root_der()],
            t0(),
            None,
        )
        .unwrap();
        assert_eq!(info.anchor_index, want);
    }
}

#[test]
fn wrong_anchor_is_unknown_issuer_naming_the_stuck_certificate() {
    let pki = Pki::new(t0());
    let other = Pki::new(t0()); // same names, different keys
    let leaf = leaf(&pki, t0());
    let err = verify_chain(
        &leaf.cert_der,
        &[pki.issuer_der()],
        &[other.root_der()],
        t0(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownIssuer {
            which: target(CertRole::Intermediate, "CN=identity.linkerd.cluster.local"),
            issuer: "CN=root.linkerd.cluster.local".to_owned(),
        }
    );
    assert_eq!(
        err.to_string(),
        "intermediate certificate \"CN=identity.linkerd.cluster.local\" was not issued by any of \
         the trust anchors (issuer \"CN=root.linkerd.cluster.local\" is not among the \
         intermediates and anchors given, or did not sign it)"
    );
}

#[test]
fn missing_intermediate_is_unknown_issuer_for_the_leaf() {
    let pki = Pki::new(t0());
    let leaf = leaf(&pki, t0());
    let err = verify_chain(&leaf.cert_der, &[], &[pki.root_der()], t0(), None).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownIssuer {
            which: target(CertRole::Target, &format!("CN={}", web())),
            issuer: "CN=identity.linkerd.cluster.local".to_owned(),
        }
    );
}

#[test]
fn expired_leaf_is_named_with_its_date() {
    let pki = Pki::new(t0());
    let leaf = leaf(&pki, t0());
    let later = leaf.not_after + Duration::from_secs(1);
    let err = verify_chain(
        &leaf.cert_der,
        &[pki.issuer_der()],
        &[pki.root_der()],
        later,
        None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::Expired {
            which: target(CertRole::Target, &format!("CN={}", web())),
            not_after: t0() + DAY,
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "certificate \"CN={}\" expired at 2030-01-02T00:00:00Z",
            web()
        )
    );
    // The last second is still valid.
    assert!(verify_chain(
        &leaf.cert_der,
        &[pki.issuer_der()],
        &[pki.root_der()],
        leaf.not_after,
        None
    )
    .is_ok());
}

#[test]
fn expired_issuer_is_named() {
    // Weft clamps leaves to their issuer, so an outliving leaf is made by hand to isolate the
    // issuer's expiry.
    let root = create_root("root", 10 * YEAR, t0()).unwrap();
    let issuer = create_issuer(
        "issuer",
        root.cert_pem.as_bytes(),
        root.key_pem.as_bytes(),
        DAY,
        t0(),
    )
    .unwrap();
    let issuer_key = rcgen::KeyPair::from_pem(&issuer.key_pem).unwrap();
    let (leaf, _) = sign(
        &leaf_params(web().as_str(), t0(), t0() + 3 * DAY),
        Some((&issuer.cert_der, &issuer_key)),
    );
    let now = t0() + 2 * DAY;
    let err = verify_chain(
        &leaf,
        std::slice::from_ref(&issuer.cert_der),
        std::slice::from_ref(&root.cert_der),
        now,
        None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::Expired {
            which: target(CertRole::Intermediate, "CN=issuer"),
            not_after: t0() + DAY,
        }
    );
    assert!(err
        .to_string()
        .starts_with("intermediate certificate \"CN=issuer\" expired at"));
}

#[test]
fn expired_anchor_is_named() {
    let pki = Pki::new(t0());
    let now = t0() + 11 * YEAR;
    let err = verify_chain(&pki.issuer_der(), &[], &[pki.root_der()], now, None).unwrap_err();
    // The issuer expired first, but the path is checked from the target up.
    assert!(matches!(&err, VerifyError::Expired { which, .. } if which.role == CertRole::Target));
    let err = verify_chain(&pki.root_der(), &[], &[pki.root_der()], now, None).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Expired {
            which: target(CertRole::Anchor, "CN=root.linkerd.cluster.local"),
            not_after: t0() + 10 * YEAR,
        }
    );
}

#[test]
fn not_yet_valid_is_named_with_its_date() {
    let future = t0() + 30 * DAY;
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let (_k, csr) = generate_key_and_csr(&web()).unwrap();
    let leaf = issuer.certify(&csr, &web(), DAY, SKEW, future).unwrap();
    let err = verify_chain(
        &leaf.cert_der,
        &[pki.issuer_der()],
        &[pki.root_der()],
        t0(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::NotYetValid {
            which: target(CertRole::Target, &format!("CN={}", web())),
            not_before: future - SKEW,
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "certificate \"CN={}\" is not valid until {} (check the clock)",
            web(),
            fmt_time(future - SKEW)
        )
    );
    // A whole hierarchy made in the future.
    let pki = Pki::new(future);
    let err = verify_chain(&pki.issuer_der(), &[], &[pki.root_der()], t0(), None).unwrap_err();
    assert!(matches!(err, VerifyError::NotYetValid { not_before, .. } if not_before == future));
}

#[test]
fn identity_must_be_a_dns_san_of_the_target() {
    let pki = Pki::new(t0());
    let leaf = leaf(&pki, t0());
    let anchors = [pki.root_der()];
    let inter = [pki.issuer_der()];
    let err = verify_chain(
        &leaf.cert_der,
        &inter,
        &anchors,
        t0(),
        Some(voting().as_str()),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::IdentityMismatch {
            expected: voting().to_string(),
            found: vec![web().to_string()],
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "certificate is for [{}], not the expected identity {}",
            web(),
            voting()
        )
    );
    // The SPIFFE URI is not a DNS name and does not count.
    assert!(verify_chain(
        &leaf.cert_der,
        &inter,
        &anchors,
        t0(),
        Some(&web().spiffe_uri())
    )
    .is_err());
    // DNS names compare case-insensitively.
    let upper = web().to_string().to_uppercase();
    assert!(verify_chain(&leaf.cert_der, &inter, &anchors, t0(), Some(&upper)).is_ok());
}

#[test]
fn a_leaf_that_signs_is_not_a_ca() {
    let pki = Pki::new(t0());
    // Re-sign a leaf with a CA:FALSE certificate by hand (what a confused operator might do).
    let key = rcgen::KeyPair::from_pem(&pki.issuer.key_pem).unwrap();
    let mut fake = params("not-a-ca", IsCa::ExplicitNoCa, t0(), t0() + YEAR);
    fake.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root_key = rcgen::KeyPair::from_pem(&pki.root.key_pem).unwrap();
    let root_issuer = rcgen::Issuer::from_ca_cert_der(&pki.root_der(), &root_key).unwrap();
    let fake_cert = fake.signed_by(&key, &root_issuer).unwrap();
    let (victim, _) = sign(
        &leaf_params(web().as_str(), t0(), t0() + DAY),
        Some((fake_cert.der(), &key)),
    );
    let err = verify_chain(
        &victim,
        &[fake_cert.der().clone()],
        &[pki.root_der()],
        t0(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::NotACa {
            which: target(CertRole::Intermediate, "CN=not-a-ca"),
        }
    );
    assert!(err.to_string().contains("is not a CA"), "{err}");
}

#[test]
fn a_ca_without_key_cert_sign_may_not_sign() {
    let root_params = {
        let mut p = params("root", ca(1), t0(), t0() + YEAR);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p
    };
    let (root, root_key) = sign(&root_params, None);
    let (leaf, _) = sign(
        &leaf_params("x.example", t0(), t0() + DAY),
        Some((&root, &root_key)),
    );
    let err = verify_chain(&leaf, &[], &[root], t0(), None).unwrap_err();
    assert!(matches!(err, VerifyError::NoCertSign { .. }), "{err:?}");
}

#[test]
fn path_length_is_enforced() {
    // root (pathlen 1) → issuer (pathlen 0) → sub-CA → leaf: the issuer has a CA below it.
    let pki = Pki::new(t0());
    let issuer_key = rcgen::KeyPair::from_pem(&pki.issuer.key_pem).unwrap();
    let (sub, sub_key) = sign(
        &params("sub-ca", ca(0), t0(), t0() + YEAR),
        Some((&pki.issuer.cert_der, &issuer_key)),
    );
    let (leaf, _) = sign(
        &leaf_params("x.example", t0(), t0() + DAY),
        Some((&sub, &sub_key)),
    );
    let err = verify_chain(
        &leaf,
        &[sub, pki.issuer_der()],
        &[pki.root_der()],
        t0(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::PathLenExceeded {
            which: target(CertRole::Intermediate, "CN=identity.linkerd.cluster.local"),
            path_len: 0,
            below: 1,
        }
    );
}

#[test]
fn altered_certificate_is_a_bad_signature() {
    let pki = Pki::new(t0());
    let leaf = leaf(&pki, t0());
    let mut der = leaf.cert_der.as_ref().to_vec();
    // Change one letter of the subject CN (inside the signed part), keeping the structure.
    let at = der.windows(13).position(|w| w == b"web.emojivoto").unwrap();
    der[at] = b'x';
    let err = verify_chain(
        &CertificateDer::from(der),
        &[pki.issuer_der()],
        &[pki.root_der()],
        t0(),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::BadSignature { ref which } if which.role == CertRole::Target),
        "{err:?}"
    );
}

#[test]
fn an_anchor_verifies_as_itself_and_an_issuer_against_its_root() {
    let pki = Pki::new(t0());
    let info = verify_chain(&pki.root_der(), &[], &[pki.root_der()], t0(), None).unwrap();
    assert_eq!(info.chain.len(), 1);
    let info = verify_chain(&pki.issuer_der(), &[], &[pki.root_der()], t0(), None).unwrap();
    assert_eq!(info.chain.len(), 2);
    assert_eq!(info.not_after, t0() + YEAR);
}

#[test]
fn a_root_not_in_the_bundle_is_unknown() {
    let pki = Pki::new(t0());
    let other = Pki::named("other-root", t0());
    let err = verify_chain(&pki.root_der(), &[], &[other.root_der()], t0(), None).unwrap_err();
    assert!(
        matches!(err, VerifyError::UnknownIssuer { ref which, .. } if which.role == CertRole::Target),
        "{err:?}"
    );
}

#[test]
fn no_anchors_and_malformed_inputs() {
    let pki = Pki::new(t0());
    assert_eq!(
        verify_chain(&pki.root_der(), &[], &[], t0(), None),
        Err(VerifyError::NoAnchors)
    );
    let junk = CertificateDer::from(vec![0x30, 0x00]);
    let err = verify_chain(
        &pki.issuer_der(),
        &[pki.root_der(), junk.clone()],
        &[pki.root_der()],
        t0(),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Malformed {
                which: CertRole::Intermediate,
                index: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("intermediate certificate 2 is not a valid X.509"),
        "{err}"
    );
    let err = verify_chain(&junk, &[], &[pki.root_der()], t0(), None).unwrap_err();
    assert!(matches!(
        err,
        VerifyError::Malformed {
            which: CertRole::Target,
            index: 1,
            ..
        }
    ));
}

#[test]
fn extra_and_unordered_intermediates_are_fine() {
    let pki = Pki::new(t0());
    let other = Pki::named("other", t0());
    let leaf = leaf(&pki, t0());
    let inters = [
        other.issuer_der(),
        pki.root_der(),
        other.root_der(),
        pki.issuer_der(),
    ];
    let info = verify_chain(&leaf.cert_der, &inters, &[pki.root_der()], t0(), None).unwrap();
    assert_eq!(info.chain.len(), 3);
}

#[test]
fn names_match_folds_case_and_spaces() {
    // An anchor re-issued with the same key but a differently cased name still anchors.
    let (root, root_key) = sign(&params("Root  CA", ca(1), t0(), t0() + YEAR), None);
    let (leaf, _) = sign(
        &leaf_params("x.example", t0(), t0() + DAY),
        Some((&root, &root_key)),
    );
    let twin = params("root ca", ca(1), t0(), t0() + YEAR)
        .self_signed(&root_key)
        .unwrap();
    let info = verify_chain(&leaf, &[], &[twin.der().clone()], t0(), None).unwrap();
    assert_eq!(info.anchor().unwrap().subject, "CN=root ca");
}

#[test]
fn step_style_bundle_parses_and_verifies() {
    let pki = Pki::new(t0());
    let bundle = format!("{}{}", pki.issuer.cert_pem, pki.root.cert_pem);
    let certs = parse_pem_certs(bundle.as_bytes()).unwrap();
    let leaf = leaf(&pki, t0());
    assert!(verify_chain(&leaf.cert_der, &certs, &[pki.root_der()], t0(), None).is_ok());
}
