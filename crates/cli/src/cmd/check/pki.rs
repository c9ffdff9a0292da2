//! `weft-identity`: the cluster's trust anchors (`pki/ca.crt`) and issuer (`pki/issuer.crt`,
//! `pki/issuer.key`) parse, are CAs, belong together and are not expired or expiring soon.
//! Parsing and chain checks are `weft_pki`'s; this module only decides what to report.

use std::path::Path;
use std::time::{Duration, SystemTime};

use weft_pki::{
    fmt_time, key_matches_cert, parse_pem_certs, parse_private_key, verify_chain, CertInfo,
    CertificateDer, VerifyError,
};
use weft_store::cluster::ClusterDir;

use super::report::{Category, Check};
use crate::cmd::identity::expiry::span;

/// A trust anchor or issuer expiring within this is a warning (Linkerd's threshold too).
pub const CA_WARNING_THRESHOLD: Duration = Duration::from_secs(60 * 24 * 3600);

/// Category name.
pub const CATEGORY: &str = "weft-identity";

/// Check ids.
pub mod ids {
    /// `pki/ca.crt` holds at least one readable certificate.
    pub const ANCHORS_PARSE: &str = "weft-identity/trust-anchors-parse";
    /// Every trust anchor is a CA that may sign certificates.
    pub const ANCHORS_ARE_CA: &str = "weft-identity/trust-anchors-are-ca";
    /// At least one trust anchor is valid now.
    pub const ANCHORS_NOT_EXPIRED: &str = "weft-identity/trust-anchors-not-expired";
    /// No trust anchor expires within 60 days (or has expired, in a bundle with valid ones).
    pub const ANCHORS_NOT_EXPIRING: &str = "weft-identity/trust-anchors-not-expiring-soon";
    /// `pki/issuer.crt` and `pki/issuer.key` parse.
    pub const ISSUER_PARSES: &str = "weft-identity/issuer-parses";
    /// The issuer key is the issuer certificate's.
    pub const ISSUER_KEY_MATCHES: &str = "weft-identity/issuer-key-matches";
    /// The issuer chains to the trust anchors.
    pub const ISSUER_CHAINS: &str = "weft-identity/issuer-chains-to-anchors";
    /// The issuer is valid now.
    pub const ISSUER_NOT_EXPIRED: &str = "weft-identity/issuer-not-expired";
    /// The issuer does not expire within 60 days.
    pub const ISSUER_NOT_EXPIRING: &str = "weft-identity/issuer-not-expiring-soon";
}

/// Where a certificate stands against the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Before `not_before`: valid in this long.
    NotYetValid(Duration),
    /// Past `not_after`: expired this long ago.
    Expired(Duration),
    /// Valid, but ends within the threshold: in this long.
    ExpiresSoon(Duration),
    /// Valid for longer than the threshold.
    Fine(Duration),
}

/// Classifies a validity window at `now` with a warning `threshold`. The window includes both
/// ends, as in X.509.
pub fn expiry(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    threshold: Duration,
) -> Expiry {
    if let Ok(until) = not_before.duration_since(now) {
        if !until.is_zero() {
            return Expiry::NotYetValid(until);
        }
    }
    match not_after.duration_since(now) {
        Ok(left) if left < threshold => Expiry::ExpiresSoon(left),
        Ok(left) => Expiry::Fine(left),
        Err(e) => Expiry::Expired(e.duration()),
    }
}

/// What the identity checks hand to the data-plane checks.
#[derive(Default)]
pub struct Anchors {
    /// The parsed trust anchors, when `pki/ca.crt` parsed.
    pub certs: Option<Vec<CertificateDer<'static>>>,
}

/// Runs the `weft-identity` checks against the cluster (or skips them all without one).
pub fn check(cluster: Option<&ClusterDir>, now: SystemTime) -> (Category, Anchors) {
    let mut cat = Category::new(CATEGORY);
    let Some(dir) = cluster else {
        for (id, desc) in DESCRIPTIONS {
            cat.push(Check::skipped(
                id,
                *desc,
                super::existence::ids::CLUSTER_EXISTS,
            ));
        }
        return (cat, Anchors::default());
    };
    let root = dir.root();
    let anchors = check_anchors(&mut cat, dir, root, now);
    check_issuer(&mut cat, dir, root, anchors.certs.as_deref(), now);
    (cat, anchors)
}

const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        ids::ANCHORS_PARSE,
        "trust anchors are readable certificates",
    ),
    (ids::ANCHORS_ARE_CA, "trust anchors are CA certificates"),
    (ids::ANCHORS_NOT_EXPIRED, "trust anchors are valid now"),
    (
        ids::ANCHORS_NOT_EXPIRING,
        "trust anchors are not expiring within 60 days",
    ),
    (
        ids::ISSUER_PARSES,
        "issuer certificate and key are readable",
    ),
    (
        ids::ISSUER_KEY_MATCHES,
        "issuer key matches the issuer certificate",
    ),
    (ids::ISSUER_CHAINS, "issuer was issued by the trust anchors"),
    (ids::ISSUER_NOT_EXPIRED, "issuer certificate is valid now"),
    (
        ids::ISSUER_NOT_EXPIRING,
        "issuer certificate is not expiring within 60 days",
    ),
];

fn desc(id: &str) -> &'static str {
    DESCRIPTIONS
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("", |(_, d)| d)
}

/// `pki/ca.crt` relative to the cluster directory, as messages name it.
fn rel(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

fn read(path: &Path, root: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", rel(path, root)))
}

fn check_anchors(cat: &mut Category, dir: &ClusterDir, root: &Path, now: SystemTime) -> Anchors {
    let path = dir.trust_anchors();
    let name = rel(&path, root);
    let parsed = read(&path, root).and_then(|pem| {
        let certs = parse_pem_certs(&pem).map_err(|e| format!("{name}: {e}"))?;
        let infos = certs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                CertInfo::from_der(c.as_ref())
                    .map_err(|e| format!("{name}: certificate {}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((certs, infos))
    });
    let (certs, infos) = match parsed {
        Ok(v) => v,
        Err(e) => {
            cat.push(
                Check::error(ids::ANCHORS_PARSE, desc(ids::ANCHORS_PARSE), e).hint(
                    "write the trust anchor bundle (PEM) there again, or re-create the cluster \
                     with `weft install --identity-trust-anchors-file ...`",
                ),
            );
            for id in [
                ids::ANCHORS_ARE_CA,
                ids::ANCHORS_NOT_EXPIRED,
                ids::ANCHORS_NOT_EXPIRING,
            ] {
                cat.push(Check::skipped(id, desc(id), ids::ANCHORS_PARSE));
            }
            return Anchors::default();
        }
    };
    cat.push(Check::success(ids::ANCHORS_PARSE, desc(ids::ANCHORS_PARSE)));

    let not_ca: Vec<String> = infos
        .iter()
        .filter(|i| !i.can_sign_certs())
        .map(|i| {
            if i.is_ca {
                format!(
                    "{name}: {:?} is a CA but may not sign certificates (no keyCertSign)",
                    i.subject
                )
            } else {
                format!("{name}: {:?} is not a CA certificate (CA:FALSE)", i.subject)
            }
        })
        .collect();
    if not_ca.is_empty() {
        cat.push(Check::success(
            ids::ANCHORS_ARE_CA,
            desc(ids::ANCHORS_ARE_CA),
        ));
    } else {
        cat.push(
            Check::error(
                ids::ANCHORS_ARE_CA,
                desc(ids::ANCHORS_ARE_CA),
                not_ca.join("\n"),
            )
            .hint(
                "trust anchors are root CAs: `weft identity create-root` (or `step certificate \
                 create --profile root-ca`) makes one",
            ),
        );
    }

    let states: Vec<(&CertInfo, Expiry)> = infos
        .iter()
        .map(|i| {
            (
                i,
                expiry(i.not_before, i.not_after, now, CA_WARNING_THRESHOLD),
            )
        })
        .collect();
    let usable = states
        .iter()
        .any(|(_, e)| matches!(e, Expiry::Fine(_) | Expiry::ExpiresSoon(_)));
    if usable {
        cat.push(Check::success(
            ids::ANCHORS_NOT_EXPIRED,
            desc(ids::ANCHORS_NOT_EXPIRED),
        ));
    } else {
        let lines: Vec<String> = states
            .iter()
            .map(|(i, e)| format!("{name}: trust anchor {:?} {}", i.subject, state_text(i, *e)))
            .collect();
        cat.push(
            Check::error(
                ids::ANCHORS_NOT_EXPIRED,
                desc(ids::ANCHORS_NOT_EXPIRED),
                lines.join("\n"),
            )
            .hint(
                "no workload certificate can be verified: create a new root, add it to \
                     pki/ca.crt and issue a new issuer from it (`weft identity create-root`, \
                     `weft identity create-issuer`, `weft upgrade`)",
            ),
        );
    }

    let soon: Vec<String> = states
        .iter()
        .filter(|(_, e)| {
            matches!(e, Expiry::ExpiresSoon(_)) || (usable && !matches!(e, Expiry::Fine(_)))
        })
        .map(|(i, e)| format!("{name}: trust anchor {:?} {}", i.subject, state_text(i, *e)))
        .collect();
    if !usable {
        cat.push(Check::skipped(
            ids::ANCHORS_NOT_EXPIRING,
            desc(ids::ANCHORS_NOT_EXPIRING),
            ids::ANCHORS_NOT_EXPIRED,
        ));
    } else if soon.is_empty() {
        cat.push(Check::success(
            ids::ANCHORS_NOT_EXPIRING,
            desc(ids::ANCHORS_NOT_EXPIRING),
        ));
    } else {
        cat.push(
            Check::warning(
                ids::ANCHORS_NOT_EXPIRING,
                desc(ids::ANCHORS_NOT_EXPIRING),
                soon.join("\n"),
            )
            .hint(
                "rotate the trust anchor: put old and new roots in pki/ca.crt, move to an \
                     issuer from the new root, then remove the old root (expired roots in the \
                     bundle can simply be removed)",
            ),
        );
    }
    Anchors { certs: Some(certs) }
}

/// `expired at T (2 days ago)`, `expires in 30 days (T)`, ...
fn state_text(info: &CertInfo, e: Expiry) -> String {
    match e {
        Expiry::NotYetValid(d) => format!(
            "is not valid until {} (in {}; check the clock)",
            fmt_time(info.not_before),
            span(d)
        ),
        Expiry::Expired(d) => format!("expired at {} ({} ago)", fmt_time(info.not_after), span(d)),
        Expiry::ExpiresSoon(d) | Expiry::Fine(d) => {
            format!("expires in {} ({})", span(d), fmt_time(info.not_after))
        }
    }
}

fn check_issuer(
    cat: &mut Category,
    dir: &ClusterDir,
    root: &Path,
    anchors: Option<&[CertificateDer<'static>]>,
    now: SystemTime,
) {
    let cert_path = dir.issuer_cert();
    let key_path = dir.issuer_key();
    let cert_name = rel(&cert_path, root);
    let key_name = rel(&key_path, root);
    let certs = read(&cert_path, root).and_then(|pem| {
        let certs = parse_pem_certs(&pem).map_err(|e| format!("{cert_name}: {e}"))?;
        let first = certs
            .first()
            .ok_or_else(|| format!("{cert_name}: no certificate"))?;
        let info = CertInfo::from_der(first.as_ref()).map_err(|e| format!("{cert_name}: {e}"))?;
        Ok((certs, info))
    });
    let key = read(&key_path, root)
        .and_then(|pem| parse_private_key(&pem).map_err(|e| format!("{key_name}: {e}")));
    let ((certs, info), key) = match (certs, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => {
            let errors: Vec<String> = [c.err(), k.err()].into_iter().flatten().collect();
            cat.push(
                Check::error(ids::ISSUER_PARSES, desc(ids::ISSUER_PARSES), errors.join("\n")).hint(
                    "install a readable issuer with `weft upgrade --identity-issuer-certificate-file \
                     ... --identity-issuer-key-file ...`",
                ),
            );
            for id in [
                ids::ISSUER_KEY_MATCHES,
                ids::ISSUER_CHAINS,
                ids::ISSUER_NOT_EXPIRED,
                ids::ISSUER_NOT_EXPIRING,
            ] {
                cat.push(Check::skipped(id, desc(id), ids::ISSUER_PARSES));
            }
            return;
        }
    };
    cat.push(Check::success(ids::ISSUER_PARSES, desc(ids::ISSUER_PARSES)));
    let Some(issuer_der) = certs.first() else {
        return;
    };

    if key_matches_cert(&key, issuer_der.as_ref()) {
        cat.push(Check::success(
            ids::ISSUER_KEY_MATCHES,
            desc(ids::ISSUER_KEY_MATCHES),
        ));
    } else {
        cat.push(
            Check::error(
                ids::ISSUER_KEY_MATCHES,
                desc(ids::ISSUER_KEY_MATCHES),
                format!(
                    "{key_name} is not the key of {cert_name} ({:?}): their public keys differ",
                    info.subject
                ),
            )
            .hint("install the certificate and key that were created together (`weft upgrade`)"),
        );
    }

    match anchors {
        None => {
            cat.push(Check::skipped(
                ids::ISSUER_CHAINS,
                desc(ids::ISSUER_CHAINS),
                ids::ANCHORS_PARSE,
            ));
        }
        Some(anchors) => {
            let rest = certs.get(1..).unwrap_or_default();
            match verify_chain(issuer_der, rest, anchors, now, None) {
                // The path search comes before the clock: an expiry error means the chain
                // itself is sound; expiry has its own checks.
                Ok(_) | Err(VerifyError::Expired { .. } | VerifyError::NotYetValid { .. }) => {
                    cat.push(Check::success(ids::ISSUER_CHAINS, desc(ids::ISSUER_CHAINS)));
                }
                Err(e) => {
                    let why = match &e {
                        VerifyError::UnknownIssuer { .. } => format!(
                            "issuer was not issued by the trust anchors: {cert_name} ({:?}) names \
                             issuer {:?}, and no anchor in pki/ca.crt signed it",
                            info.subject, info.issuer
                        ),
                        other => format!(
                            "issuer was not issued by the trust anchors: {cert_name}: {other}"
                        ),
                    };
                    cat.push(
                        Check::error(ids::ISSUER_CHAINS, desc(ids::ISSUER_CHAINS), why)
                        .hint(
                            "proxies would reject every certificate it signs: issue a new issuer \
                             from a root in pki/ca.crt (`weft identity create-issuer --ca ...`) and \
                             install it with `weft upgrade`",
                        ),
                    );
                }
            }
        }
    }

    match expiry(info.not_before, info.not_after, now, CA_WARNING_THRESHOLD) {
        e @ (Expiry::Expired(_) | Expiry::NotYetValid(_)) => {
            cat.push(
                Check::error(
                    ids::ISSUER_NOT_EXPIRED,
                    desc(ids::ISSUER_NOT_EXPIRED),
                    format!("issuer certificate {cert_name} {}", state_text(&info, e)),
                )
                .hint(
                    "no new workload certificate can be issued: create a new issuer \
                     (`weft identity create-issuer`) and install it with `weft upgrade \
                     --identity-issuer-certificate-file ... --identity-issuer-key-file ...`",
                ),
            );
            cat.push(Check::skipped(
                ids::ISSUER_NOT_EXPIRING,
                desc(ids::ISSUER_NOT_EXPIRING),
                ids::ISSUER_NOT_EXPIRED,
            ));
        }
        e => {
            cat.push(Check::success(
                ids::ISSUER_NOT_EXPIRED,
                desc(ids::ISSUER_NOT_EXPIRED),
            ));
            if let Expiry::ExpiresSoon(_) = e {
                cat.push(
                    Check::warning(
                        ids::ISSUER_NOT_EXPIRING,
                        desc(ids::ISSUER_NOT_EXPIRING),
                        format!("issuer certificate {cert_name} {}", state_text(&info, e)),
                    )
                    .hint(
                        "rotate it with `weft upgrade --identity-issuer-certificate-file ... \
                         --identity-issuer-key-file ...` (no restart needed)",
                    ),
                );
            } else {
                cat.push(Check::success(
                    ids::ISSUER_NOT_EXPIRING,
                    desc(ids::ISSUER_NOT_EXPIRING),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn expiry_thresholds() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let t = CA_WARNING_THRESHOLD;
        assert_eq!(
            expiry(now - DAY, now + 30 * DAY, now, t),
            Expiry::ExpiresSoon(30 * DAY)
        );
        assert_eq!(
            expiry(now - DAY, now + 60 * DAY, now, t),
            Expiry::Fine(60 * DAY)
        );
        assert_eq!(
            expiry(now - DAY, now + 60 * DAY - Duration::from_secs(1), now, t),
            Expiry::ExpiresSoon(60 * DAY - Duration::from_secs(1))
        );
        assert_eq!(
            expiry(now - DAY, now + 365 * DAY, now, t),
            Expiry::Fine(365 * DAY)
        );
        // Both ends of the window are valid.
        assert_eq!(
            expiry(now, now, now, t),
            Expiry::ExpiresSoon(Duration::ZERO)
        );
        assert_eq!(
            expiry(now - 2 * DAY, now - DAY, now, t),
            Expiry::Expired(DAY)
        );
        assert_eq!(
            expiry(now + DAY, now + 90 * DAY, now, t),
            Expiry::NotYetValid(DAY)
        );
    }
}
