//! Making certificates: trust anchors and issuers for operators (`weft identity create-root` /
//! `create-issuer`), workload leaves for the identity service, and keys + CSRs for proxies.
//!
//! Roots and issuers are what `step certificate create --profile root-ca` / `intermediate-ca`
//! make: ECDSA P-256 keys, CN-only subjects, critical basic constraints (pathlen 1 for a root, 0
//! for an issuer), critical key usage keyCertSign + cRLSign, subject and authority key
//! identifiers, random serial numbers.
//!
//! Leaves carry the workload identity as DNS SAN and SPIFFE URI SAN, serverAuth + clientAuth,
//! CA:FALSE, a random 128-bit serial, and a validity of `now - skew .. now + lifetime`, cut at
//! the issuer chain's own expiry.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::anchors::TrustAnchors;
use crate::cert::{
    certs_to_pem, key_matches_parsed, parse_pem_certs, parse_private_key, parse_x509, serial_hex,
    CertInfo, KeyType, PrivateKey, Validity,
};
use crate::error::PkiError;
use crate::identity::Identity;
use crate::time::{add, sub, to_offset, truncate};
use crate::verify::{verify_chain, ChainInfo};

#[cfg(test)]
mod tests;

/// Bytes of randomness in a serial number (RFC 5280 allows up to 20 octets; CA/B Forum asks for
/// at least 64 bits of randomness; we use 128).
pub const SERIAL_BYTES: usize = 16;

/// Longest common name accepted for roots and issuers (X.520 `ub-common-name`).
const MAX_CN_LEN: usize = 64;

/// A new CA certificate and its private key, both PEM.
pub struct CertAndKey {
    /// The certificate, one PEM block.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), unencrypted.
    pub key_pem: String,
    /// When the certificate expires (may be earlier than asked when the signing CA expires
    /// first).
    pub not_after: SystemTime,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Creates a self-signed root (trust anchor), like
/// `step certificate create NAME ca.crt ca.key --profile root-ca --no-password --insecure
/// --not-after=<lifetime>`: subject `CN=<common_name>`, CA:TRUE pathlen:1, valid from `now` for
/// `lifetime`.
pub fn create_root(
    common_name: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<CertAndKey, PkiError> {
    let key = PrivateKey::generate_ecdsa_p256()?;
    let not_after = truncate(add(now, check_lifetime(lifetime)?)?);
    let params = ca_params(common_name, 1, now, not_after)?;
    let cert = params.self_signed(key.key_pair()).map_err(PkiError::Sign)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_pem: key.to_pem(),
        not_after,
    })
}

/// Creates an issuer (intermediate CA) signed by the given CA, like
/// `step certificate create NAME issuer.crt issuer.key --profile intermediate-ca --ca ca.crt
/// --ca-key ca.key --no-password --insecure --not-after=<lifetime>`: subject `CN=<common_name>`,
/// CA:TRUE pathlen:0, valid from `now` for `lifetime` but never past the CA's own expiry.
///
/// Refuses a CA certificate that is not a CA (a leaf), cannot sign certificates or has
/// pathlen:0; a key that is not the CA certificate's; and a CA that is expired or not valid yet.
/// The signing CA may use any key type rcgen signs with (RSA roots included); the new issuer
/// always gets an ECDSA P-256 key.
pub fn create_issuer(
    common_name: &str,
    ca_cert_pem: &[u8],
    ca_key_pem: &[u8],
    lifetime: Duration,
    now: SystemTime,
) -> Result<CertAndKey, PkiError> {
    let lifetime = check_lifetime(lifetime)?;
    let ca_certs = parse_pem_certs(ca_cert_pem)?;
    let ca_key = parse_private_key(ca_key_pem)?;
    let Some(ca_der) = ca_certs.first() else {
        return Err(PkiError::NoCertificates { found: Vec::new() });
    };
    let ca = parse_x509(ca_der.as_ref(), 1)?;
    let ca_info = CertInfo::from_parsed(&ca, ca_der.as_ref())?;
    check_signing_ca(&ca_info, "the signing CA")?;
    if ca_info.path_len == Some(0) {
        return Err(PkiError::PathLenZero {
            subject: ca_info.subject,
        });
    }
    if !key_matches_parsed(&ca_key, &ca) {
        return Err(PkiError::KeyMismatch {
            subject: ca_info.subject,
        });
    }
    check_valid_now(&ca_info, now)?;
    check_reproducible_name(ca.subject(), &ca_info.subject)?;

    let key = PrivateKey::generate_ecdsa_p256()?;
    let not_after = truncate(add(now, lifetime)?).min(ca_info.not_after);
    let mut params = ca_params(common_name, 0, now, not_after)?;
    params.use_authority_key_identifier_extension = true;
    let issuer = rcgen::Issuer::from_ca_cert_der(ca_der, ca_key.key_pair()).map_err(|_| {
        PkiError::UnsupportedIssuerName {
            subject: ca_info.subject.clone(),
        }
    })?;
    let cert = params
        .signed_by(key.key_pair(), &issuer)
        .map_err(PkiError::Sign)?;
    self_check(cert.der(), &ca, &ca_info)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_pem: key.to_pem(),
        not_after,
    })
}

/// Parameters shared by roots and issuers.
fn ca_params(
    common_name: &str,
    path_len: u8,
    now: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, PkiError> {
    check_common_name(common_name)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = cn_name(common_name);
    params.not_before = to_offset(now)?;
    params.not_after = to_offset(not_after)?;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn cn_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn check_common_name(cn: &str) -> Result<(), PkiError> {
    let bad = |reason: &str| {
        Err(PkiError::InvalidName {
            name: cn.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if cn.trim().is_empty() {
        return bad("it is empty");
    }
    if cn.chars().count() > MAX_CN_LEN {
        return bad("a common name is at most 64 characters");
    }
    if cn.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    Ok(())
}

fn check_lifetime(lifetime: Duration) -> Result<Duration, PkiError> {
    if lifetime < Duration::from_secs(1) {
        return Err(PkiError::InvalidValidity {
            reason: "the lifetime must be at least one second".to_owned(),
        });
    }
    Ok(lifetime)
}

/// The CA may sign certificates.
fn check_signing_ca(info: &CertInfo, role: &'static str) -> Result<(), PkiError> {
    if !info.is_ca {
        return Err(PkiError::NotACa {
            subject: info.subject.clone(),
            role,
        });
    }
    if !info.can_sign_certs() {
        return Err(PkiError::NoCertSign {
            subject: info.subject.clone(),
        });
    }
    Ok(())
}

fn check_valid_now(info: &CertInfo, now: SystemTime) -> Result<(), PkiError> {
    match info.validity_at(now) {
        Validity::Valid => Ok(()),
        Validity::Expired => Err(PkiError::Expired {
            subject: info.subject.clone(),
            not_after: info.not_after,
        }),
        Validity::NotYetValid => Err(PkiError::NotYetValid {
            subject: info.subject.clone(),
            not_before: info.not_before,
        }),
    }
}

/// rcgen re-encodes the signer's subject as the issuer name of what it signs; it can do so
/// exactly only for names of single-valued, non-repeated attributes (which is what step, openssl
/// and Weft produce). Anything else is refused up front rather than yielding certificates whose
/// issuer name does not match.
fn check_reproducible_name(name: &X509Name<'_>, subject: &str) -> Result<(), PkiError> {
    let mut seen = Vec::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(PkiError::UnsupportedIssuerName {
                subject: subject.to_owned(),
            });
        };
        let oid = attr.attr_type().to_id_string();
        if seen.contains(&oid) {
            return Err(PkiError::UnsupportedIssuerName {
                subject: subject.to_owned(),
            });
        }
        seen.push(oid);
    }
    Ok(())
}

/// Checks that a certificate we just signed names the signer exactly and verifies with its key.
fn self_check(
    signed: &[u8],
    signer: &x509_parser::certificate::X509Certificate<'_>,
    signer_info: &CertInfo,
) -> Result<(), PkiError> {
    let cert = parse_x509(signed, 1)?;
    let name_ok = cert.issuer().as_raw() == signer.subject().as_raw();
    let sig_ok = cert.verify_signature(Some(signer.public_key())).is_ok();
    if name_ok && sig_ok {
        Ok(())
    } else {
        Err(PkiError::UnsupportedIssuerName {
            subject: signer_info.subject.clone(),
        })
    }
}

/// A random, positive serial number with [`SERIAL_BYTES`] bytes of randomness from the system's
/// CSPRNG (via aws-lc-rs). DER encoding adds a zero byte when the top bit is set, so the encoded
/// integer is always positive.
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    // An all-zero draw (probability 2^-128) would encode as serial 0, which RFC 5280 forbids.
    while bytes.iter().all(|b| *b == 0) {
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Random)?;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// A signed workload certificate.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The leaf, DER.
    pub cert_der: CertificateDer<'static>,
    /// The leaf, PEM.
    pub cert_pem: String,
    /// The CA certificates above the leaf, issuer first (what a TLS server sends after its leaf).
    pub intermediates: Vec<CertificateDer<'static>>,
    /// The leaf followed by the intermediates, PEM.
    pub chain_pem: String,
    /// The serial number, uppercase hex (for the audit log).
    pub serial_hex: String,
    /// Start of validity (`now - skew`).
    pub not_before: SystemTime,
    /// End of validity (`now + lifetime`, or the issuer chain's expiry if earlier).
    pub not_after: SystemTime,
}

/// A loaded, validated issuer that signs workload certificates. `Send + Sync`: one issuer serves
/// concurrent requests; swap the whole value to rotate.
pub struct Issuer {
    signer: rcgen::Issuer<'static, KeyPair>,
    info: CertInfo,
    chain: ChainInfo,
    /// The issuer and any further intermediates from its PEM, issuer first.
    intermediates: Vec<CertificateDer<'static>>,
    intermediates_pem: String,
    anchors: TrustAnchors,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("subject", &self.info.subject)
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Loads an issuer from its certificate PEM (the issuer first, optionally followed by
    /// further intermediates up to a root), its private key PEM, and the trust anchor bundle.
    ///
    /// Refuses, with a message naming the problem: a certificate that is not a CA or may not sign
    /// certificates; an issuer key that is not ECDSA P-256; a key that does not match the
    /// certificate; an issuer that does not chain to one of the anchors, or is expired or not yet
    /// valid at `now` (as is anything on its chain).
    pub fn load(
        cert_pem: &[u8],
        key_pem: &[u8],
        anchors_pem: &[u8],
        now: SystemTime,
    ) -> Result<Self, PkiError> {
        let certs = parse_pem_certs(cert_pem)?;
        let key = parse_private_key(key_pem)?;
        let anchors = TrustAnchors::from_pem(anchors_pem)?;
        Self::from_parts(certs, key, anchors, now)
    }

    /// [`Issuer::load`] for already parsed inputs.
    pub fn from_parts(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKey,
        anchors: TrustAnchors,
        now: SystemTime,
    ) -> Result<Self, PkiError> {
        let Some(issuer_der) = certs.first() else {
            return Err(PkiError::NoCertificates { found: Vec::new() });
        };
        let parsed = parse_x509(issuer_der.as_ref(), 1)?;
        let info = CertInfo::from_parsed(&parsed, issuer_der.as_ref())?;
        check_signing_ca(&info, "an issuer")?;
        if info.key_type != KeyType::EcdsaP256 {
            return Err(PkiError::UnsupportedKey {
                what: "issuer",
                key_type: info.key_type.clone(),
                requirement: "issuers must use ECDSA P-256",
            });
        }
        if !key_matches_parsed(&key, &parsed) {
            return Err(PkiError::KeyMismatch {
                subject: info.subject,
            });
        }
        let rest = certs.get(1..).unwrap_or_default();
        let chain = verify_chain(issuer_der, rest, anchors.certs(), now, None)?;
        check_reproducible_name(parsed.subject(), &info.subject)?;

        let signer =
            rcgen::Issuer::from_ca_cert_der(issuer_der, key.into_key_pair()).map_err(|_| {
                PkiError::UnsupportedIssuerName {
                    subject: info.subject.clone(),
                }
            })?;
        // Sign a throwaway certificate for the issuer's own public key to prove that what we
        // produce names and verifies against this issuer.
        let probe_key = rcgen::SubjectPublicKeyInfo::from_der(parsed.public_key().raw)
            .map_err(PkiError::Sign)?;
        let mut probe = CertificateParams::default();
        probe.serial_number = Some(random_serial()?);
        let probe = probe
            .signed_by(&probe_key, &signer)
            .map_err(PkiError::Sign)?;
        self_check(probe.der(), &parsed, &info)?;

        let intermediates_pem = certs_to_pem(&certs);
        Ok(Self {
            signer,
            info,
            chain,
            intermediates: certs,
            intermediates_pem,
            anchors,
        })
    }

    /// What the issuer certificate says.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// The issuer's own expiry.
    pub fn not_after(&self) -> SystemTime {
        self.info.not_after
    }

    /// The earliest expiry on the issuer's chain (issuer, intermediates, anchor): no leaf
    /// outlives it.
    pub fn valid_until(&self) -> SystemTime {
        self.chain.not_after
    }

    /// The chain verified at load time, issuer first, anchor last.
    pub fn chain(&self) -> &ChainInfo {
        &self.chain
    }

    /// The issuer certificate followed by any further intermediates, DER.
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates
    }

    /// The trust anchors the issuer was validated against.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// Signs a workload certificate for `identity` from a CSR (DER).
    ///
    /// The CSR must be validly self-signed with an ECDSA P-256 or P-384 key and carry exactly the
    /// requested identity: every subject common name and every DNS SAN equal to it, any URI SAN
    /// equal to its SPIFFE ID, and no other names. Nothing else from the CSR is copied: the
    /// leaf's names, key usages and constraints are always Weft's.
    ///
    /// Validity: `now - skew` to `now + lifetime`, cut at [`Issuer::valid_until`].
    pub fn certify(
        &self,
        csr_der: &[u8],
        identity: &Identity,
        lifetime: Duration,
        skew: Duration,
        now: SystemTime,
    ) -> Result<Leaf, PkiError> {
        let lifetime = check_lifetime(lifetime)?;
        for cert in &self.chain.chain {
            check_valid_now(cert, now)?;
        }
        let public_key = check_csr(csr_der, identity)?;

        let not_before = truncate(sub(now, skew)?);
        let not_after = truncate(add(now, lifetime)?).min(self.chain.not_after);
        let mut params = CertificateParams::default();
        params.distinguished_name = cn_name(identity.as_str());
        params.subject_alt_names = vec![
            SanType::DnsName(ia5(identity.as_str())?),
            SanType::URI(ia5(&identity.spiffe_uri())?),
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = to_offset(not_before)?;
        params.not_after = to_offset(not_after)?;
        let cert = params
            .signed_by(&public_key, &self.signer)
            .map_err(PkiError::Sign)?;

        let cert_pem = cert.pem();
        let serial = parse_x509(cert.der().as_ref(), 1)
            .map(|c| serial_hex(c.raw_serial()))
            .unwrap_or_default();
        Ok(Leaf {
            cert_der: cert.der().clone(),
            chain_pem: format!("{cert_pem}{}", self.intermediates_pem),
            cert_pem,
            intermediates: self.intermediates.clone(),
            serial_hex: serial,
            not_before,
            not_after,
        })
    }
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String, PkiError> {
    rcgen::string::Ia5String::try_from(s).map_err(|e| PkiError::InvalidName {
        name: s.to_owned(),
        reason: e.to_string(),
    })
}

/// Parses and checks a CSR; returns its public key for the leaf.
fn check_csr(csr_der: &[u8], identity: &Identity) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    let bad = |reason: String| PkiError::BadCsr { reason };
    let (rest, csr) =
        X509CertificationRequest::from_der(csr_der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} trailing bytes after the CSR", rest.len())));
    }
    match csr.verify_signature() {
        Ok(()) => {}
        Err(x509_parser::error::X509Error::SignatureUnsupportedAlgorithm) => {
            return Err(bad("unsupported signature algorithm".to_owned()))
        }
        Err(_) => return Err(PkiError::CsrBadSignature),
    }
    let info = &csr.certification_request_info;
    let key_type = KeyType::from_spki(&info.subject_pki);
    if !matches!(key_type, KeyType::EcdsaP256 | KeyType::EcdsaP384) {
        return Err(PkiError::UnsupportedKey {
            what: "CSR",
            key_type,
            requirement: "workload keys must be ECDSA P-256 or P-384",
        });
    }

    let expected = identity.as_str();
    let spiffe = identity.spiffe_uri();
    let mut found = Vec::new();
    let mut exact = true;
    let mut claims_identity = false;
    for cn in info.subject.iter_common_name() {
        let cn = cn.as_str().unwrap_or("<non-text CN>");
        exact &= cn == expected;
        claims_identity = true;
        found.push(format!("CN={cn}"));
    }
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => {
                            exact &= *d == expected;
                            claims_identity = true;
                            found.push(format!("DNS:{d}"));
                        }
                        GeneralName::URI(u) => {
                            exact &= *u == spiffe;
                            found.push(format!("URI:{u}"));
                        }
                        other => {
                            exact = false;
                            found.push(format!("{other}"));
                        }
                    }
                }
            }
        }
    }
    if !exact || !claims_identity {
        return Err(PkiError::CsrIdentityMismatch {
            expected: expected.to_owned(),
            found,
        });
    }
    rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw).map_err(|e| PkiError::BadCsr {
        reason: format!("unsupported public key: {e}"),
    })
}

/// Generates a fresh ECDSA P-256 key (kept in memory) and a CSR for `identity`: subject
/// `CN=<identity>`, DNS SAN `<identity>`. This is what a proxy sends to the identity service.
pub fn generate_key_and_csr(
    identity: &Identity,
) -> Result<(PrivateKey, CertificateSigningRequestDer<'static>), PkiError> {
    let key = PrivateKey::generate_ecdsa_p256()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = cn_name(identity.as_str());
    params.subject_alt_names = vec![SanType::DnsName(ia5(identity.as_str())?)];
    let csr = params
        .serialize_request(key.key_pair())
        .map_err(PkiError::Sign)?;
    Ok((key, csr.der().clone()))
}
