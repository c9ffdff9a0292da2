//! Reading certificates and keys: PEM/DER parsing, inspection ([`CertInfo`]), private keys.
//!
//! Inputs are bytes; callers read the files and add the file name to errors. Certificates made
//! by `step certificate create`, by openssl and by Weft itself are all read the same way.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry as oids;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::PkiError;
use crate::time::{fmt_time, from_asn1};

#[cfg(test)]
mod tests;

/// PEM label of a certificate.
const CERTIFICATE: &str = "CERTIFICATE";
/// PEM label of a PKCS#8 private key.
const PKCS8_KEY: &str = "PRIVATE KEY";
/// PEM label of a SEC1 (OpenSSL "traditional") EC private key.
const SEC1_KEY: &str = "EC PRIVATE KEY";
/// PEM label of a PKCS#1 RSA private key.
const PKCS1_KEY: &str = "RSA PRIVATE KEY";
/// PEM label of a password-protected PKCS#8 key.
const ENCRYPTED_KEY: &str = "ENCRYPTED PRIVATE KEY";

/// The kind of public key a certificate or private key holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (secp256r1): what Weft creates and what issuers must use.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// RSA with the modulus size in bits.
    Rsa(u32),
    /// Ed25519.
    Ed25519,
    /// Anything else, described by its algorithm (and curve) OID.
    Other(String),
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::Rsa(bits) => write!(f, "RSA {bits}"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

impl KeyType {
    /// Reads the key type from a parsed SubjectPublicKeyInfo.
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Self {
        let alg = &spki.algorithm.algorithm;
        if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == oids::OID_EC_P256 => Self::EcdsaP256,
                Some(c) if c == oids::OID_NIST_EC_P384 => Self::EcdsaP384,
                Some(c) => Self::Other(format!("EC on curve {c}")),
                None => Self::Other("EC with no named curve".to_owned()),
            }
        } else if *alg == oids::OID_PKCS1_RSAENCRYPTION {
            match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Self::Rsa(bit_len(rsa.modulus)),
                _ => Self::Other("RSA (unreadable modulus)".to_owned()),
            }
        } else if *alg == oids::OID_SIG_ED25519 {
            Self::Ed25519
        } else {
            Self::Other(format!("key algorithm {alg}"))
        }
    }
}

/// The number of significant bits in a big-endian unsigned integer.
fn bit_len(be: &[u8]) -> u32 {
    let digits: &[u8] = match be.iter().position(|b| *b != 0) {
        Some(i) => be.get(i..).unwrap_or_default(),
        None => return 0,
    };
    let Some(first) = digits.first() else {
        return 0;
    };
    let len = u32::try_from(digits.len()).unwrap_or(u32::MAX / 8);
    (len - 1) * 8 + (8 - first.leading_zeros())
}

/// Whether a certificate is inside its validity window at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Before `not_before`.
    NotYetValid,
    /// Between `not_before` and `not_after`, both included.
    Valid,
    /// After `not_after`.
    Expired,
}

/// What a certificate says, in plain types: for `weft identity inspect`, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `CN=identity.linkerd.cluster.local`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// The subject's first common name, if any.
    pub common_name: Option<String>,
    /// DNS subject alternative names.
    pub dns_sans: Vec<String>,
    /// URI subject alternative names (SPIFFE IDs).
    pub uri_sans: Vec<String>,
    /// IP address subject alternative names.
    pub ip_sans: Vec<IpAddr>,
    /// Start of the validity window.
    pub not_before: SystemTime,
    /// End of the validity window.
    pub not_after: SystemTime,
    /// Basic constraints say CA:TRUE.
    pub is_ca: bool,
    /// The CA's path length constraint, if it has one.
    pub path_len: Option<u32>,
    /// Key usage bits by their RFC 5280 names (`digitalSignature`, `keyCertSign`, ...); `None`
    /// when the certificate has no key usage extension (any usage is then allowed).
    pub key_usage: Option<Vec<&'static str>>,
    /// Extended key usages (`serverAuth`, `clientAuth`, other OIDs as dotted strings).
    pub ext_key_usage: Vec<String>,
    /// The subject public key's type.
    pub key_type: KeyType,
    /// The signature algorithm, e.g. `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
    /// Serial number as uppercase hex without separators (as `openssl x509 -serial` prints it).
    pub serial_hex: String,
    /// SHA-256 of the DER, uppercase hex with colons (as `openssl x509 -fingerprint -sha256`).
    pub sha256_fingerprint: String,
    /// Subject key identifier, lowercase hex.
    pub subject_key_id: Option<String>,
    /// Authority key identifier, lowercase hex.
    pub authority_key_id: Option<String>,
    /// Subject and issuer names are equal (a root, normally).
    pub self_issued: bool,
}

impl CertInfo {
    /// Inspects one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let cert = parse_x509(der, 1)?;
        Self::from_parsed(&cert, der)
    }

    /// Builds the info from an already parsed certificate and its DER.
    pub(crate) fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Result<Self, PkiError> {
        let bad = |reason: String| PkiError::BadCertificate { index: 1, reason };
        let mut info = Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            dns_sans: Vec::new(),
            uri_sans: Vec::new(),
            ip_sans: Vec::new(),
            not_before: from_asn1(cert.validity().not_before),
            not_after: from_asn1(cert.validity().not_after),
            is_ca: false,
            path_len: None,
            key_usage: None,
            ext_key_usage: Vec::new(),
            key_type: KeyType::from_spki(cert.public_key()),
            signature_algorithm: signature_algorithm_name(&cert.signature_algorithm.algorithm),
            serial_hex: serial_hex(cert.raw_serial()),
            sha256_fingerprint: fingerprint(der),
            subject_key_id: None,
            authority_key_id: None,
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        };
        for ext in cert.iter_extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => {
                    info.is_ca = bc.ca;
                    info.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => info.key_usage = Some(key_usage_names(ku)),
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let named = [
                        (eku.any, "anyExtendedKeyUsage"),
                        (eku.server_auth, "serverAuth"),
                        (eku.client_auth, "clientAuth"),
                        (eku.code_signing, "codeSigning"),
                        (eku.email_protection, "emailProtection"),
                        (eku.time_stamping, "timeStamping"),
                        (eku.ocsp_signing, "OCSPSigning"),
                    ];
                    info.ext_key_usage = named
                        .iter()
                        .filter(|(set, _)| *set)
                        .map(|(_, name)| (*name).to_owned())
                        .chain(eku.other.iter().map(|oid| oid.to_id_string()))
                        .collect();
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => info.dns_sans.push((*d).to_owned()),
                            GeneralName::URI(u) => info.uri_sans.push((*u).to_owned()),
                            GeneralName::IPAddress(ip) => {
                                if let Some(ip) = ip_from_bytes(ip) {
                                    info.ip_sans.push(ip);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(ki) => {
                    info.subject_key_id = Some(hex(ki.0, None, false));
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    info.authority_key_id =
                        aki.key_identifier.as_ref().map(|k| hex(k.0, None, false));
                }
                ParsedExtension::ParseError { error } => {
                    return Err(bad(format!("extension {}: {error}", ext.oid)));
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// Where `now` falls relative to the validity window.
    pub fn validity_at(&self, now: SystemTime) -> Validity {
        if now < self.not_before {
            Validity::NotYetValid
        } else if now > self.not_after {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }

    /// `now` is inside the validity window.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.validity_at(now) == Validity::Valid
    }

    /// The validity window as text: `2026-01-01T00:00:00Z .. 2036-01-01T00:00:00Z`.
    pub fn validity_text(&self) -> String {
        format!(
            "{} .. {}",
            fmt_time(self.not_before),
            fmt_time(self.not_after)
        )
    }

    /// A CA whose key usage (if present) allows signing certificates.
    pub fn can_sign_certs(&self) -> bool {
        self.is_ca
            && self
                .key_usage
                .as_ref()
                .is_none_or(|ku| ku.contains(&"keyCertSign"))
    }
}

/// Names of the key usage bits that are set.
fn key_usage_names(ku: &x509_parser::extensions::KeyUsage) -> Vec<&'static str> {
    [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name)
    .collect()
}

/// A readable name for common signature algorithms; the dotted OID otherwise.
pub(crate) fn signature_algorithm_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let known = [
        (oids::OID_SIG_ECDSA_WITH_SHA256, "ecdsa-with-SHA256"),
        (oids::OID_SIG_ECDSA_WITH_SHA384, "ecdsa-with-SHA384"),
        (oids::OID_SIG_ECDSA_WITH_SHA512, "ecdsa-with-SHA512"),
        (oids::OID_PKCS1_SHA256WITHRSA, "sha256WithRSAEncryption"),
        (oids::OID_PKCS1_SHA384WITHRSA, "sha384WithRSAEncryption"),
        (oids::OID_PKCS1_SHA512WITHRSA, "sha512WithRSAEncryption"),
        (oids::OID_PKCS1_SHA1WITHRSA, "sha1WithRSAEncryption"),
        (oids::OID_PKCS1_RSASSAPSS, "RSASSA-PSS"),
        (oids::OID_SIG_ED25519, "Ed25519"),
    ];
    known
        .iter()
        .find(|(k, _)| k == oid)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| oid.to_id_string())
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Hex-encodes bytes, optionally with a separator.
pub(crate) fn hex(bytes: &[u8], sep: Option<char>, upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            if let Some(sep) = sep {
                out.push(sep);
            }
        }
        let s = if upper {
            format!("{b:02X}")
        } else {
            format!("{b:02x}")
        };
        out.push_str(&s);
    }
    out
}

/// Serial number bytes (a DER INTEGER's content) as uppercase hex, without the sign byte.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => raw,
    };
    hex(trimmed, None, true)
}

/// SHA-256 fingerprint, `AB:CD:...`.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    hex(digest.as_ref(), Some(':'), true)
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_x509(der: &[u8], index: usize) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate {
        index,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(PkiError::BadCertificate {
            index,
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// Splits PEM input into blocks. Input with no BEGIN line is "not PEM"; a BEGIN line without a
/// complete block (a truncated file) is an error rather than silently skipped.
fn pem_blocks(input: &[u8], expected: &'static str) -> Result<Vec<pem::Pem>, PkiError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let begins = input.windows(BEGIN.len()).filter(|w| *w == BEGIN).count();
    if begins == 0 {
        return Err(PkiError::NotPem { expected });
    }
    let blocks = pem::parse_many(input).map_err(|e| PkiError::BadPem {
        reason: e.to_string(),
    })?;
    if blocks.len() != begins {
        return Err(PkiError::BadPem {
            reason: format!(
                "{begins} BEGIN line(s) but {} complete block(s); is the file truncated?",
                blocks.len()
            ),
        });
    }
    Ok(blocks)
}

/// PEM with LF line endings, as step and openssl write it (the `pem` crate defaults to CRLF).
fn encode_pem(p: &pem::Pem) -> String {
    pem::encode_config(
        p,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// All CERTIFICATE blocks of a PEM input, in order, each checked to be a valid X.509
/// certificate. Other blocks (keys, parameters) are skipped; input that is not PEM, or that
/// holds no certificate, is an error.
pub fn parse_pem_certs(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let blocks = pem_blocks(input, CERTIFICATE)?;
    let mut certs = Vec::new();
    for block in &blocks {
        if block.tag() == CERTIFICATE {
            parse_x509(block.contents(), certs.len() + 1)?;
            certs.push(CertificateDer::from(block.contents().to_vec()));
        }
    }
    if certs.is_empty() {
        return Err(PkiError::NoCertificates {
            found: blocks.iter().map(|b| b.tag().to_owned()).collect(),
        });
    }
    Ok(certs)
}

/// Like [`parse_pem_certs`], but also accepts one DER certificate.
pub fn parse_certs(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    if input.windows(11).any(|w| w == b"-----BEGIN ") {
        return parse_pem_certs(input);
    }
    if input.first() == Some(&0x30) && parse_x509(input, 1).is_ok() {
        return Ok(vec![CertificateDer::from(input.to_vec())]);
    }
    Err(PkiError::NotPem {
        expected: CERTIFICATE,
    })
}

/// Encodes certificates as PEM, one CERTIFICATE block each.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| encode_pem(&pem::Pem::new(CERTIFICATE, c.as_ref().to_vec())))
        .collect()
}

/// A private key with its type, usable for signing. `Debug` never prints the secret.
pub struct PrivateKey {
    key_pair: KeyPair,
    der: PrivateKeyDer<'static>,
    key_type: KeyType,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a fresh ECDSA P-256 key (in memory only).
    pub fn generate_ecdsa_p256() -> Result<Self, PkiError> {
        let key_pair =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Sign)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        Ok(Self {
            key_pair,
            der,
            key_type: KeyType::EcdsaP256,
        })
    }

    /// Loads a key from DER in any of the three formats.
    pub fn from_der(der: PrivateKeyDer<'static>) -> Result<Self, PkiError> {
        let key_pair = KeyPair::try_from(&der).map_err(|e| PkiError::BadKey {
            reason: format!("unsupported or damaged key ({e})"),
        })?;
        let spki = key_pair.subject_public_key_info();
        let key_type = match SubjectPublicKeyInfo::from_der(&spki) {
            Ok((_, spki)) => KeyType::from_spki(&spki),
            Err(e) => {
                return Err(PkiError::BadKey {
                    reason: format!("cannot read the public key: {e}"),
                })
            }
        };
        Ok(Self {
            key_pair,
            der,
            key_type,
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> &KeyType {
        &self.key_type
    }

    /// The private key DER, in the format it was loaded in (PKCS#8 for generated keys), e.g.
    /// for a rustls certified key.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        self.der.clone_key()
    }

    /// PEM encoding with the label of its format.
    pub fn to_pem(&self) -> String {
        let label = match &self.der {
            PrivateKeyDer::Pkcs1(_) => PKCS1_KEY,
            PrivateKeyDer::Sec1(_) => SEC1_KEY,
            _ => PKCS8_KEY,
        };
        encode_pem(&pem::Pem::new(label, self.der.secret_der().to_vec()))
    }

    /// The DER SubjectPublicKeyInfo of the public half.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.key_pair.subject_public_key_info()
    }

    /// The rcgen key pair, for signing.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// Gives up the key pair (to hand it to an rcgen issuer).
    pub(crate) fn into_key_pair(self) -> KeyPair {
        self.key_pair
    }

    /// The raw public key, as in a certificate's subjectPublicKey bit string.
    pub(crate) fn public_key_raw(&self) -> &[u8] {
        self.key_pair.der_bytes()
    }
}

/// Reads one private key from PEM: PKCS#8 (`PRIVATE KEY`, what step and `openssl genpkey`
/// write), SEC1 (`EC PRIVATE KEY`, from `openssl ecparam -genkey`) or PKCS#1 (`RSA PRIVATE KEY`).
/// Encrypted keys are refused with a hint; `EC PARAMETERS` blocks are skipped.
pub fn parse_private_key(input: &[u8]) -> Result<PrivateKey, PkiError> {
    let blocks = pem_blocks(input, PKCS8_KEY)?;
    let mut keys = Vec::new();
    for block in &blocks {
        let encrypted_header = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
        let der = block.contents().to_vec();
        match block.tag() {
            ENCRYPTED_KEY => return Err(PkiError::EncryptedKey),
            PKCS8_KEY | SEC1_KEY | PKCS1_KEY if encrypted_header => {
                return Err(PkiError::EncryptedKey)
            }
            PKCS8_KEY => keys.push(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))),
            SEC1_KEY => keys.push(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der))),
            PKCS1_KEY => keys.push(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der))),
            _ => {}
        }
    }
    let count = keys.len();
    match keys.pop() {
        None => Err(PkiError::NoPrivateKey {
            found: blocks.iter().map(|b| b.tag().to_owned()).collect(),
        }),
        Some(key) if count == 1 => PrivateKey::from_der(key),
        Some(_) => Err(PkiError::SeveralPrivateKeys { count }),
    }
}

/// The private key belongs to the certificate (same public key). `false` for unparseable DER.
pub fn key_matches_cert(key: &PrivateKey, cert_der: &[u8]) -> bool {
    match parse_x509(cert_der, 1) {
        Ok(cert) => key_matches_parsed(key, &cert),
        Err(_) => false,
    }
}

/// [`key_matches_cert`] for a parsed certificate.
pub(crate) fn key_matches_parsed(key: &PrivateKey, cert: &X509Certificate<'_>) -> bool {
    KeyType::from_spki(cert.public_key()) == key.key_type
        && cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}
