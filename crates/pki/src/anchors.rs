//! Trust anchor bundles: the roots that proxies and the identity service trust.
//!
//! A bundle is one PEM file of one or more CA certificates. During trust anchor rotation it holds
//! the old and the new root side by side (often with the same subject name), and a chain is
//! accepted if it leads to any of them.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;

use crate::cert::{certs_to_pem, parse_pem_certs, parse_x509, CertInfo, KeyType};
use crate::error::PkiError;

/// A validated bundle of trust anchors.
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    certs: Vec<CertificateDer<'static>>,
    infos: Vec<CertInfo>,
}

impl TrustAnchors {
    /// Reads a PEM bundle. Every certificate must be a CA allowed to sign certificates, with an
    /// ECDSA P-256/P-384, RSA (2048 to 8192 bits) or Ed25519 key. Expired anchors are *not*
    /// refused here (a bundle may still carry an old root); chains through them fail to verify.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PkiError> {
        Self::from_der(parse_pem_certs(pem)?)
    }

    /// Like [`TrustAnchors::from_pem`], for certificates already in DER.
    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Result<Self, PkiError> {
        if certs.is_empty() {
            return Err(PkiError::NoAnchors);
        }
        let mut infos = Vec::with_capacity(certs.len());
        for (i, der) in certs.iter().enumerate() {
            let parsed = parse_x509(der.as_ref(), i + 1)?;
            let info = CertInfo::from_parsed(&parsed, der.as_ref())?;
            check_anchor(&info)?;
            infos.push(info);
        }
        Ok(Self { certs, infos })
    }

    /// The anchors, in bundle order.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// What each anchor says, in bundle order.
    pub fn infos(&self) -> &[CertInfo] {
        &self.infos
    }

    /// How many anchors the bundle holds (at least one).
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Always false: an empty bundle is refused when loading. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The earliest expiry in the bundle (for an "anchor expires at" metric).
    pub fn earliest_expiry(&self) -> Option<SystemTime> {
        self.infos.iter().map(|i| i.not_after).min()
    }

    /// The bundle as PEM.
    pub fn to_pem(&self) -> String {
        certs_to_pem(&self.certs)
    }
}

fn check_anchor(info: &CertInfo) -> Result<(), PkiError> {
    if !info.is_ca {
        return Err(PkiError::NotACa {
            subject: info.subject.clone(),
            role: "a trust anchor",
        });
    }
    if !info.can_sign_certs() {
        return Err(PkiError::NoCertSign {
            subject: info.subject.clone(),
        });
    }
    match info.key_type {
        KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Ed25519 => Ok(()),
        KeyType::Rsa(bits) if (2048..=8192).contains(&bits) => Ok(()),
        ref other => Err(PkiError::UnsupportedKey {
            what: "trust anchor",
            key_type: other.clone(),
            requirement: "anchors must use ECDSA P-256/P-384, RSA 2048–8192 or Ed25519",
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::issue::{create_root, generate_key_and_csr};
    use crate::test_support::*;

    #[test]
    fn a_bundle_of_two_roots_reports_both() {
        let old = create_root("root.linkerd.cluster.local", YEAR, t0()).unwrap();
        let new = create_root("root.linkerd.cluster.local", 10 * YEAR, t0()).unwrap();
        let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
        let anchors = TrustAnchors::from_pem(bundle.as_bytes()).unwrap();
        assert_eq!(anchors.len(), 2);
        assert!(!anchors.is_empty());
        assert_eq!(
            anchors.certs(),
            &[old.cert_der.clone(), new.cert_der.clone()]
        );
        assert_eq!(anchors.earliest_expiry(), Some(t0() + YEAR));
        assert_eq!(anchors.infos()[1].not_after, t0() + 10 * YEAR);
        let again = TrustAnchors::from_pem(anchors.to_pem().as_bytes()).unwrap();
        assert_eq!(again.certs(), anchors.certs());
    }

    #[test]
    fn expired_anchors_load_but_are_reported() {
        let old = create_root("old", DAY, t0()).unwrap();
        let anchors = TrustAnchors::from_pem(old.cert_pem.as_bytes()).unwrap();
        assert!(!anchors.infos()[0].is_valid_at(t0() + 2 * DAY));
    }

    #[test]
    fn non_anchors_are_refused() {
        let pki = Pki::new(t0());
        let (_k, csr) = generate_key_and_csr(&web()).unwrap();
        let leaf = pki
            .load(t0())
            .certify(&csr, &web(), DAY, DAY, t0())
            .unwrap();
        let bundle = format!("{}{}", pki.root.cert_pem, leaf.cert_pem);
        let err = TrustAnchors::from_pem(bundle.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                PkiError::NotACa {
                    role: "a trust anchor",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = TrustAnchors::from_pem(pki.root.key_pem.as_bytes()).unwrap_err();
        assert!(matches!(err, PkiError::NoCertificates { .. }), "{err:?}");
        let err = TrustAnchors::from_pem(b"").unwrap_err();
        assert!(matches!(err, PkiError::NotPem { .. }), "{err:?}");
        assert!(matches!(
            TrustAnchors::from_der(Vec::new()),
            Err(PkiError::NoAnchors)
        ));
    }
}
