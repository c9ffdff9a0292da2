//! Error types.
//!
//! Every message names what is wrong and, where there is one, the likely fix, in one line, so
//! that callers only add the file name: `issuer.crt: certificate is not a CA (CA:FALSE) — an
//! issuer must be a CA`.

use std::fmt;
use std::time::SystemTime;

use crate::cert::KeyType;
use crate::identity::IdentityError;
use crate::time::fmt_time;

/// Errors from parsing, loading and issuing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The input has no PEM block at all.
    #[error("not PEM: expected a \"-----BEGIN {expected}-----\" block")]
    NotPem {
        /// The block label that was expected (`CERTIFICATE`, `PRIVATE KEY`, ...).
        expected: &'static str,
    },
    /// A PEM block is damaged (bad base64, mismatched or missing END line).
    #[error("malformed PEM: {reason}")]
    BadPem {
        /// What is wrong.
        reason: String,
    },
    /// The PEM holds blocks, but no certificate.
    #[error("no CERTIFICATE block in PEM (found: {})", found.join(", "))]
    NoCertificates {
        /// Labels of the blocks that were found.
        found: Vec<String>,
    },
    /// The PEM holds blocks, but no private key.
    #[error(
        "no private key in PEM (found: {}); expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY",
        found.join(", ")
    )]
    NoPrivateKey {
        /// Labels of the blocks that were found.
        found: Vec<String>,
    },
    /// More than one private key in one PEM input.
    #[error("{count} private keys in one PEM; expected exactly one")]
    SeveralPrivateKeys {
        /// How many.
        count: usize,
    },
    /// A password-protected key.
    #[error(
        "private key is encrypted; an unencrypted key is needed \
         (step: --no-password --insecure; openssl: -noenc)"
    )]
    EncryptedKey,
    /// A block labelled CERTIFICATE that is not a valid X.509 certificate.
    #[error("certificate {index} is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// Position in the input, from 1.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// A private key that cannot be read or is of an unsupported kind.
    #[error("invalid private key: {reason}")]
    BadKey {
        /// What is wrong.
        reason: String,
    },
    /// A key of a type that this use does not accept.
    #[error("{what} key is {key_type}; {requirement}")]
    UnsupportedKey {
        /// Which key (`issuer`, `trust anchor`, `CSR`).
        what: &'static str,
        /// The key's type.
        key_type: KeyType,
        /// What is accepted.
        requirement: &'static str,
    },
    /// A certificate used as a CA is not one.
    #[error("certificate {subject:?} is not a CA (CA:FALSE) — {role} must be a CA")]
    NotACa {
        /// Its subject.
        subject: String,
        /// The role it was given (`an issuer`, `a trust anchor`, `the signing CA`).
        role: &'static str,
    },
    /// A CA whose key usage excludes certificate signing.
    #[error("CA certificate {subject:?} has a key usage without keyCertSign, so it cannot sign certificates")]
    NoCertSign {
        /// Its subject.
        subject: String,
    },
    /// A CA with `pathlen:0` asked to sign another CA.
    #[error(
        "CA certificate {subject:?} has pathlen:0, so it may not sign another CA; \
         sign the issuer with the root (trust anchor) instead"
    )]
    PathLenZero {
        /// Its subject.
        subject: String,
    },
    /// The private key is not the certificate's.
    #[error("private key does not match certificate {subject:?} (their public keys differ)")]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate past its `notAfter`.
    #[error("certificate {subject:?} expired at {}", fmt_time(*not_after))]
    Expired {
        /// Its subject.
        subject: String,
        /// When it expired.
        not_after: SystemTime,
    },
    /// A certificate before its `notBefore`.
    #[error("certificate {subject:?} is not valid until {} (check the clock)", fmt_time(*not_before))]
    NotYetValid {
        /// Its subject.
        subject: String,
        /// When it becomes valid.
        not_before: SystemTime,
    },
    /// An empty trust-anchor bundle.
    #[error("trust anchor bundle holds no certificates")]
    NoAnchors,
    /// A chain check failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// An invalid identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A CSR that cannot be parsed.
    #[error("invalid CSR: {reason}")]
    BadCsr {
        /// What is wrong.
        reason: String,
    },
    /// A CSR whose signature does not verify with its own public key.
    #[error("CSR signature does not verify with the CSR's public key")]
    CsrBadSignature,
    /// A CSR that asks for names other than exactly the requested identity.
    #[error(
        "CSR does not carry exactly the requested identity {expected}: it names [{}]",
        found.join(", ")
    )]
    CsrIdentityMismatch {
        /// The identity that was asked for.
        expected: String,
        /// Every name the CSR carries (subject CN and SANs).
        found: Vec<String>,
    },
    /// A lifetime or time that cannot be used.
    #[error("invalid validity period: {reason}")]
    InvalidValidity {
        /// What is wrong.
        reason: String,
    },
    /// A name that cannot be put in a certificate.
    #[error("invalid certificate name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The issuer's subject name could not be reproduced in the certificates it signs.
    #[error(
        "CA certificate {subject:?} has a subject name that Weft cannot reproduce exactly as the \
         issuer name of what it signs (multi-valued or repeated attributes); re-create it with a \
         plain CN subject"
    )]
    UnsupportedIssuerName {
        /// The issuer's subject.
        subject: String,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Key generation or signing failed in the crypto library.
    #[error("could not create the certificate: {0}")]
    Sign(#[source] rcgen::Error),
}

/// Which certificate of a chain an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRef {
    /// Its place in the chain.
    pub role: CertRole,
    /// Its subject name, e.g. `CN=identity.linkerd.cluster.local`.
    pub subject: String,
}

/// The place of a certificate in a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRole {
    /// The certificate being verified (a leaf, or an issuer when an issuer is checked).
    Target,
    /// An intermediate CA.
    Intermediate,
    /// A trust anchor (root).
    Anchor,
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Target => "certificate",
            Self::Intermediate => "intermediate certificate",
            Self::Anchor => "trust anchor",
        })
    }
}

impl fmt::Display for CertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.role, self.subject)
    }
}

/// Why a chain does not verify. Each variant renders as one line naming the certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A certificate in the input cannot be parsed.
    #[error("{which} {index} is not a valid X.509 certificate: {reason}")]
    Malformed {
        /// Which input list it was in.
        which: CertRole,
        /// Its position in that list, from 1.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// No trust anchors were given.
    #[error("no trust anchors to verify against")]
    NoAnchors,
    /// A certificate in the chain has expired.
    #[error("{which} expired at {}", fmt_time(*not_after))]
    Expired {
        /// Which certificate.
        which: CertRef,
        /// When it expired.
        not_after: SystemTime,
    },
    /// A certificate in the chain is not valid yet.
    #[error("{which} is not valid until {} (check the clock)", fmt_time(*not_before))]
    NotYetValid {
        /// Which certificate.
        which: CertRef,
        /// When it becomes valid.
        not_before: SystemTime,
    },
    /// No path leads from the certificate to one of the trust anchors.
    #[error(
        "{which} was not issued by any of the trust anchors (issuer {issuer:?} is not among \
         the intermediates and anchors given, or did not sign it)"
    )]
    UnknownIssuer {
        /// The certificate whose issuer is missing.
        which: CertRef,
        /// That certificate's issuer name.
        issuer: String,
    },
    /// A certificate that signs others is not a CA.
    #[error("{which} signs other certificates but is not a CA (CA:FALSE or no basic constraints)")]
    NotACa {
        /// Which certificate.
        which: CertRef,
    },
    /// A CA whose key usage excludes certificate signing.
    #[error("{which} is a CA but its key usage does not include keyCertSign")]
    NoCertSign {
        /// Which certificate.
        which: CertRef,
    },
    /// A CA with more CAs below it than its `pathlen` allows.
    #[error("{which} has pathlen:{path_len} but {below} CA certificate(s) below it")]
    PathLenExceeded {
        /// Which certificate.
        which: CertRef,
        /// Its path length constraint.
        path_len: u32,
        /// How many CA certificates are below it in the chain.
        below: u32,
    },
    /// The named issuer (matched by name and key identifier) did not produce this signature.
    #[error(
        "the signature on {which} does not verify with its issuer's key (altered certificate?)"
    )]
    BadSignature {
        /// The certificate whose signature failed.
        which: CertRef,
    },
    /// A signature algorithm that is not accepted (SHA-1, or unknown).
    #[error("{which} is signed with {algorithm}, which is not accepted")]
    UnsupportedSignature {
        /// Which certificate.
        which: CertRef,
        /// The algorithm's name or OID.
        algorithm: String,
    },
    /// The certificate's DNS names do not include the expected identity.
    #[error("certificate is for [{}], not the expected identity {expected}", found.join(", "))]
    IdentityMismatch {
        /// The identity that was expected.
        expected: String,
        /// The DNS SANs the certificate carries.
        found: Vec<String>,
    },
}
