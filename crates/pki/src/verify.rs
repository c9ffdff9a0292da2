//! Chain verification: does a certificate chain, through the given intermediates, to one of the
//! trust anchors, and is every certificate on the way valid now?
//!
//! This is the check behind `weft identity verify`, behind loading an issuer, and behind tests of
//! issued leaves (TLS handshakes are left to rustls' verifier, which applies the same rules plus
//! key-usage checks specific to TLS). The rules:
//!
//! - every certificate is signed by the next one up, found by name (and key identifier);
//! - every certificate above the target is a CA (basic constraints CA:TRUE), allowed to sign
//!   certificates if it has a key usage extension, and within its `pathlen`;
//! - every certificate, the trust anchor included, is inside its validity window at `now`;
//! - SHA-1 signatures are refused;
//! - optionally, the target's DNS SAN equals an expected identity.
//!
//! Several anchors may share a name (an old and a new root during trust anchor rotation, both
//! `CN=root.linkerd.cluster.local`), so every candidate issuer is tried, not just the first.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry as oids;
use x509_parser::x509::X509Name;

use crate::cert::{parse_x509, CertInfo, Validity};
use crate::error::{CertRef, CertRole, VerifyError};

#[cfg(test)]
mod tests;

/// Longest chain searched, in certificates above the target (intermediates plus the anchor).
const MAX_DEPTH: usize = 6;

/// Most signature checks one verification may spend (bounds path building on hostile input).
const MAX_SIGNATURE_CHECKS: usize = 64;

/// A verified chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInfo {
    /// The path that verified: the target first, the trust anchor last. When the target is
    /// itself one of the anchors, the path holds just it.
    pub chain: Vec<CertInfo>,
    /// Position of the anchor used, in the `anchors` argument.
    pub anchor_index: usize,
    /// The earliest `not_after` on the path: the chain stops verifying then.
    pub not_after: SystemTime,
}

impl ChainInfo {
    /// The certificate that was verified.
    pub fn target(&self) -> Option<&CertInfo> {
        self.chain.first()
    }

    /// The trust anchor it chains to.
    pub fn anchor(&self) -> Option<&CertInfo> {
        self.chain.last()
    }
}

/// One parsed certificate of the input.
struct Node<'a> {
    cert: X509Certificate<'a>,
    der: &'a [u8],
    info: CertInfo,
    role: CertRole,
    /// Position in its input list (0 for the target).
    index: usize,
}

impl Node<'_> {
    fn cert_ref(&self) -> CertRef {
        CertRef {
            role: self.role,
            subject: self.info.subject.clone(),
        }
    }

    fn subject_key_id(&self) -> Option<&[u8]> {
        self.cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
                _ => None,
            })
    }

    fn authority_key_id(&self) -> Option<&[u8]> {
        self.cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0)
                }
                _ => None,
            })
    }
}

/// Verifies that `target` chains through `intermediates` (in any order; extras are ignored) to
/// one of `anchors`, with every certificate on the path valid at `now`, and, when
/// `expect_identity` is given, that the target has it as a DNS SAN.
pub fn verify_chain(
    target: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[CertificateDer<'_>],
    now: SystemTime,
    expect_identity: Option<&str>,
) -> Result<ChainInfo, VerifyError> {
    if anchors.is_empty() {
        return Err(VerifyError::NoAnchors);
    }
    let mut nodes = vec![parse_node(target, CertRole::Target, 0)?];
    for (i, der) in intermediates.iter().enumerate() {
        nodes.push(parse_node(der, CertRole::Intermediate, i)?);
    }
    for (i, der) in anchors.iter().enumerate() {
        nodes.push(parse_node(der, CertRole::Anchor, i)?);
    }

    let path = find_path(&nodes)?;
    let infos: Vec<CertInfo> = path
        .iter()
        .filter_map(|&i| nodes.get(i).map(|n| n.info.clone()))
        .collect();
    let anchor_index = path
        .last()
        .and_then(|&i| nodes.get(i))
        .map_or(0, |n| n.index);
    let not_after = infos
        .iter()
        .map(|i| i.not_after)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);

    // The path is structurally sound; now the clock.
    for &i in &path {
        let Some(node) = nodes.get(i) else { continue };
        match node.info.validity_at(now) {
            Validity::Valid => {}
            Validity::Expired => {
                return Err(VerifyError::Expired {
                    which: node.cert_ref(),
                    not_after: node.info.not_after,
                })
            }
            Validity::NotYetValid => {
                return Err(VerifyError::NotYetValid {
                    which: node.cert_ref(),
                    not_before: node.info.not_before,
                })
            }
        }
    }

    if let Some(expected) = expect_identity {
        let found = &nodes
            .first()
            .map(|n| n.info.dns_sans.clone())
            .unwrap_or_default();
        if !found.iter().any(|d| d.eq_ignore_ascii_case(expected)) {
            return Err(VerifyError::IdentityMismatch {
                expected: expected.to_owned(),
                found: found.clone(),
            });
        }
    }

    Ok(ChainInfo {
        chain: infos,
        anchor_index,
        not_after,
    })
}

fn parse_node<'a>(
    der: &'a CertificateDer<'_>,
    role: CertRole,
    index: usize,
) -> Result<Node<'a>, VerifyError> {
    let malformed = |reason: String| VerifyError::Malformed {
        which: role,
        index: index + 1,
        reason,
    };
    let bytes: &'a [u8] = der.as_ref();
    let cert = parse_x509(bytes, index + 1).map_err(|e| malformed(e.to_string()))?;
    let info = CertInfo::from_parsed(&cert, bytes).map_err(|e| malformed(e.to_string()))?;
    Ok(Node {
        cert,
        der: bytes,
        info,
        role,
        index,
    })
}

/// State of the path search.
struct Search<'n, 'a> {
    nodes: &'n [Node<'a>],
    signature_checks: usize,
    /// The first structural problem met on a complete path (reported if no path is clean).
    policy_error: Option<VerifyError>,
    /// A signature that failed although name and key identifier matched.
    bad_signature: Option<VerifyError>,
    /// A refused signature algorithm.
    unsupported: Option<VerifyError>,
    /// The deepest certificate whose issuer was not found, with that issuer's name.
    stuck: Option<(usize, usize)>,
}

/// Finds a path from the target (node 0) to an anchor whose structure is sound: signatures,
/// CA flags, key usage, path length. Validity windows are checked by the caller on the result.
fn find_path(nodes: &[Node<'_>]) -> Result<Vec<usize>, VerifyError> {
    let Some(target) = nodes.first() else {
        return Err(VerifyError::NoAnchors);
    };
    // A trust anchor verifies as itself.
    if let Some(i) = nodes
        .iter()
        .position(|n| n.role == CertRole::Anchor && n.der == target.der)
    {
        return Ok(vec![i]);
    }
    let mut search = Search {
        nodes,
        signature_checks: 0,
        policy_error: None,
        bad_signature: None,
        unsupported: None,
        stuck: None,
    };
    let mut path = vec![0];
    if search.extend(&mut path) {
        return Ok(path);
    }
    let err = search
        .policy_error
        .or(search.bad_signature)
        .or(search.unsupported);
    if let Some(err) = err {
        return Err(err);
    }
    let (depth_node, _) = search.stuck.unwrap_or((0, 0));
    let stuck = nodes.get(depth_node).unwrap_or(target);
    Err(VerifyError::UnknownIssuer {
        which: stuck.cert_ref(),
        issuer: stuck.info.issuer.clone(),
    })
}

impl Search<'_, '_> {
    /// Depth-first search from the last certificate of `path`. Returns true with `path`
    /// complete (ending at an anchor) when a sound path is found.
    fn extend(&mut self, path: &mut Vec<usize>) -> bool {
        let Some(&current) = path.last() else {
            return false;
        };
        let Some(child) = self.nodes.get(current) else {
            return false;
        };
        let mut found_issuer = false;
        // Anchors first: the shortest path wins.
        let order = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.role == CertRole::Anchor)
            .chain(
                self.nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.role == CertRole::Intermediate),
            );
        let candidates: Vec<usize> = order
            .filter(|(i, n)| {
                !path.contains(i)
                    && names_match(child.cert.issuer(), n.cert.subject())
                    && key_ids_compatible(child, n)
            })
            .map(|(i, _)| i)
            .collect();
        for candidate in candidates {
            let Some(parent) = self.nodes.get(candidate) else {
                continue;
            };
            if !self.signed_by(child, parent) {
                continue;
            }
            found_issuer = true;
            path.push(candidate);
            if parent.role == CertRole::Anchor {
                match check_structure(self.nodes, path) {
                    Ok(()) => return true,
                    Err(e) => {
                        self.policy_error.get_or_insert(e);
                    }
                }
            } else if path.len() <= MAX_DEPTH && self.extend(path) {
                return true;
            }
            path.pop();
        }
        if !found_issuer {
            let depth = path.len();
            if self.stuck.is_none_or(|(_, d)| depth > d) {
                self.stuck = Some((current, depth));
            }
        }
        false
    }

    /// Checks the child's signature with the parent's key, recording why it failed.
    fn signed_by(&mut self, child: &Node<'_>, parent: &Node<'_>) -> bool {
        let alg = &child.cert.signature_algorithm.algorithm;
        if *alg == oids::OID_PKCS1_SHA1WITHRSA || *alg == oids::OID_SHA1_WITH_RSA {
            self.unsupported
                .get_or_insert(VerifyError::UnsupportedSignature {
                    which: child.cert_ref(),
                    algorithm: "SHA-1 with RSA".to_owned(),
                });
            return false;
        }
        if self.signature_checks >= MAX_SIGNATURE_CHECKS {
            return false;
        }
        self.signature_checks += 1;
        match child.cert.verify_signature(Some(parent.cert.public_key())) {
            Ok(()) => true,
            Err(X509Error::SignatureUnsupportedAlgorithm) => {
                self.unsupported
                    .get_or_insert(VerifyError::UnsupportedSignature {
                        which: child.cert_ref(),
                        algorithm: child.info.signature_algorithm.clone(),
                    });
                false
            }
            Err(_) => {
                // Same name and the same key identifier: this is the issuer, and the signature
                // is wrong. Without key identifiers a failure just means "a different key".
                let ids_equal = matches!(
                    (child.authority_key_id(), parent.subject_key_id()),
                    (Some(a), Some(s)) if a == s
                );
                if ids_equal {
                    self.bad_signature.get_or_insert(VerifyError::BadSignature {
                        which: child.cert_ref(),
                    });
                }
                false
            }
        }
    }
}

/// Structure rules on a complete path `[target, ..., anchor]`.
fn check_structure(nodes: &[Node<'_>], path: &[usize]) -> Result<(), VerifyError> {
    for (depth, &i) in path.iter().enumerate().skip(1) {
        let Some(ca) = nodes.get(i) else { continue };
        if !ca.info.is_ca {
            return Err(VerifyError::NotACa {
                which: ca.cert_ref(),
            });
        }
        if !ca.info.can_sign_certs() {
            return Err(VerifyError::NoCertSign {
                which: ca.cert_ref(),
            });
        }
        // CA certificates strictly between this one and the target.
        let below = u32::try_from(depth.saturating_sub(1)).unwrap_or(u32::MAX);
        if let Some(path_len) = ca.info.path_len {
            if below > path_len {
                return Err(VerifyError::PathLenExceeded {
                    which: ca.cert_ref(),
                    path_len,
                    below,
                });
            }
        }
    }
    Ok(())
}

/// A child's authority key identifier rules a candidate out only when both identifiers exist
/// and differ.
fn key_ids_compatible(child: &Node<'_>, parent: &Node<'_>) -> bool {
    match (child.authority_key_id(), parent.subject_key_id()) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

/// Name comparison: byte-equal, or equal after RFC 5280 §7.1-style folding (case and
/// whitespace), which is what openssl does too.
pub(crate) fn names_match(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    a.as_raw() == b.as_raw() || canonical(a) == canonical(b)
}

/// A folded form of a name: per RDN, `(oid, value)` pairs with values lowercased and internal
/// whitespace collapsed.
fn canonical(name: &X509Name<'_>) -> Vec<Vec<(String, String)>> {
    name.iter()
        .map(|rdn| {
            let mut attrs: Vec<(String, String)> = rdn
                .iter()
                .map(|atv| {
                    let value = match atv.as_str() {
                        Ok(s) => s
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .to_lowercase(),
                        Err(_) => crate::cert::hex(atv.attr_value().data, None, false),
                    };
                    (atv.attr_type().to_id_string(), value)
                })
                .collect();
            attrs.sort();
            attrs
        })
        .collect()
}
