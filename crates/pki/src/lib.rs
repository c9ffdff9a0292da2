//! Weft's certificate logic, as pure code: no network and no file I/O (callers pass bytes and
//! add file names to errors).
//!
//! - [`identity`]: workload identity names (`<sa>.<ns>.serviceaccount.identity.<cp-ns>.<td>`)
//!   and their SPIFFE IDs.
//! - [`cert`]: PEM/DER parsing of certificates and keys, and [`cert::CertInfo`] for inspection.
//! - [`verify`]: chain building and verification against a bundle of trust anchors.
//! - [`anchors`]: validated trust anchor bundles.
//! - [`issue`]: creating roots and issuers (as `step certificate create` does), signing workload
//!   leaves from CSRs, and generating a proxy's key + CSR.
//!
//! The trust model (DESIGN.md, "Identity"): a long-lived, offline trust anchor signs an issuer
//! (rotated routinely), which signs short-lived leaves (hours) for each workload. All crypto
//! runs on aws-lc-rs, like the proxy's rustls.

pub mod anchors;
pub mod cert;
mod error;
pub mod identity;
pub mod issue;
#[cfg(test)]
mod openssl_tests;
#[cfg(test)]
mod test_support;
mod time;
pub mod token;
pub mod verify;

pub use anchors::TrustAnchors;
pub use cert::{
    certs_to_pem, key_matches_cert, parse_certs, parse_pem_certs, parse_private_key, CertInfo,
    KeyType, PrivateKey, Validity,
};
pub use error::{CertRef, CertRole, PkiError, VerifyError};
pub use identity::{Identity, IdentityError, IdentityPart};
pub use issue::{
    create_issuer, create_root, generate_key_and_csr, CertAndKey, Issuer, Leaf, SERIAL_BYTES,
};
pub use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
pub use time::fmt_time;
pub use verify::{verify_chain, ChainInfo};
