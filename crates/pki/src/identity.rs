//! Workload identities: the names that leaf certificates carry.
//!
//! A workload's identity is its Kubernetes service account, spelt as a DNS name:
//!
//! ```text
//! <service account>.<namespace>.serviceaccount.identity.<control-plane namespace>.<trust domain>
//! web.emojivoto.serviceaccount.identity.linkerd.cluster.local
//! ```
//!
//! That name is the leaf certificate's DNS SAN (what peers check and what the outbound side sends
//! as SNI). The same identity is also written as a SPIFFE ID URI SAN,
//! `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, for tools that speak SPIFFE.
//!
//! Names are validated strictly here so that nothing ambiguous can ever reach a certificate: every
//! part is a lowercase DNS label (RFC 1123), the trust domain is a DNS name of one or more such
//! labels, and the whole name fits the 253-character DNS limit.

use std::fmt;
use std::str::FromStr;

/// The fixed labels between the namespace and the control-plane namespace.
const MARKER: &str = ".serviceaccount.identity.";

/// The longest DNS name (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;

/// The longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A workload identity such as `web.emojivoto.serviceaccount.identity.linkerd.cluster.local`.
///
/// Construct it with [`Identity::new`] from its parts or parse a full name with
/// [`str::parse`] / [`Identity::parse`]; both validate. An `Identity` is always valid, so code
/// that holds one never needs to check it again.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// The full DNS name.
    name: String,
    /// Length of the service-account label (the name starts with it).
    sa_len: usize,
    /// Byte range of the namespace label.
    ns: (usize, usize),
    /// Byte range of the control-plane namespace label.
    cp_ns: (usize, usize),
    /// Byte offset where the trust domain starts (it runs to the end).
    td_start: usize,
}

/// Which part of an identity a validation error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityPart {
    /// The service account name.
    ServiceAccount,
    /// The workload's namespace.
    Namespace,
    /// The control plane's namespace.
    ControlPlaneNamespace,
    /// The trust domain (for example `cluster.local`).
    TrustDomain,
}

impl fmt::Display for IdentityPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServiceAccount => "service account",
            Self::Namespace => "namespace",
            Self::ControlPlaneNamespace => "control-plane namespace",
            Self::TrustDomain => "trust domain",
        })
    }
}

/// Why a string is not a valid identity or identity part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The name does not have the `<sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust domain>`
    /// shape.
    #[error(
        "identity {name:?} is not of the form \
         <service account>.<namespace>.serviceaccount.identity.<control-plane namespace>.<trust domain>"
    )]
    Malformed {
        /// The rejected name.
        name: String,
    },
    /// One part is not a valid lowercase DNS label (or, for the trust domain, DNS name).
    #[error("invalid {part} {value:?} in identity: {reason}")]
    InvalidPart {
        /// Which part.
        part: IdentityPart,
        /// The rejected value.
        value: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// The full name is longer than DNS allows.
    #[error("identity {name:?} is {len} characters long; DNS names are at most 253")]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length.
        len: usize,
    },
}

impl Identity {
    /// Builds an identity from its parts, validating each.
    ///
    /// ```
    /// # use weft_pki::identity::Identity;
    /// let id = Identity::new("web", "emojivoto", "linkerd", "cluster.local").unwrap();
    /// assert_eq!(id.as_str(), "web.emojivoto.serviceaccount.identity.linkerd.cluster.local");
    /// assert_eq!(id.spiffe_uri(), "spiffe://cluster.local/ns/emojivoto/sa/web");
    /// ```
    pub fn new(
        service_account: &str,
        namespace: &str,
        control_plane_namespace: &str,
        trust_domain: &str,
    ) -> Result<Self, IdentityError> {
        check_label(IdentityPart::ServiceAccount, service_account)?;
        check_label(IdentityPart::Namespace, namespace)?;
        check_label(IdentityPart::ControlPlaneNamespace, control_plane_namespace)?;
        check_trust_domain(trust_domain)?;
        let name = format!(
            "{service_account}.{namespace}{MARKER}{control_plane_namespace}.{trust_domain}"
        );
        if name.len() > MAX_NAME_LEN {
            return Err(IdentityError::TooLong {
                len: name.len(),
                name,
            });
        }
        let sa_len = service_account.len();
        let ns_start = sa_len + 1;
        let ns_end = ns_start + namespace.len();
        let cp_start = ns_end + MARKER.len();
        let cp_end = cp_start + control_plane_namespace.len();
        Ok(Self {
            name,
            sa_len,
            ns: (ns_start, ns_end),
            cp_ns: (cp_start, cp_end),
            td_start: cp_end + 1,
        })
    }

    /// Parses and validates a full identity name.
    pub fn parse(name: &str) -> Result<Self, IdentityError> {
        let malformed = || IdentityError::Malformed {
            name: name.to_owned(),
        };
        let (head, tail) = name.split_once(MARKER).ok_or_else(malformed)?;
        let (sa, ns) = head.split_once('.').ok_or_else(malformed)?;
        let (cp_ns, td) = tail.split_once('.').ok_or_else(malformed)?;
        // `new` re-checks every part, including that `ns` has no further dots (so a name like
        // `a.b.c.serviceaccount.identity...` is refused rather than read as namespace `b.c`).
        Self::new(sa, ns, cp_ns, td)
    }

    /// The full name, e.g. `web.emojivoto.serviceaccount.identity.linkerd.cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The service account, e.g. `web`.
    pub fn service_account(&self) -> &str {
        self.name.get(..self.sa_len).unwrap_or_default()
    }

    /// The workload's namespace, e.g. `emojivoto`.
    pub fn namespace(&self) -> &str {
        self.name.get(self.ns.0..self.ns.1).unwrap_or_default()
    }

    /// The control plane's namespace, e.g. `linkerd`.
    pub fn control_plane_namespace(&self) -> &str {
        self.name
            .get(self.cp_ns.0..self.cp_ns.1)
            .unwrap_or_default()
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        self.name.get(self.td_start..).unwrap_or_default()
    }

    /// The SPIFFE ID of this identity: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub fn spiffe_uri(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain(),
            self.namespace(),
            self.service_account()
        )
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Identity {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// Checks one RFC 1123 label: 1–63 characters of `a-z`, `0-9` and `-`, starting and ending with
/// a letter or digit. Uppercase is refused rather than folded: Kubernetes names are lowercase, and
/// a certificate must carry exactly the name that peers will compare against.
fn check_label(part: IdentityPart, value: &str) -> Result<(), IdentityError> {
    let bad = |reason| {
        Err(IdentityError::InvalidPart {
            part,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > MAX_LABEL_LEN {
        return bad("it is longer than 63 characters");
    }
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("it contains uppercase letters; names must be lowercase");
    }
    if value.contains('.') {
        return bad("it contains a dot; it must be a single DNS label");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("only a-z, 0-9 and '-' are allowed");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return bad("it must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks a trust domain: one or more dot-separated labels, each valid per [`check_label`].
fn check_trust_domain(value: &str) -> Result<(), IdentityError> {
    if value.is_empty() {
        return Err(IdentityError::InvalidPart {
            part: IdentityPart::TrustDomain,
            value: String::new(),
            reason: "it is empty",
        });
    }
    for label in value.split('.') {
        if label.is_empty() {
            return Err(IdentityError::InvalidPart {
                part: IdentityPart::TrustDomain,
                value: value.to_owned(),
                reason: "it has an empty label (leading, trailing or doubled dot)",
            });
        }
        check_label(IdentityPart::TrustDomain, label).map_err(|e| match e {
            IdentityError::InvalidPart { reason, .. } => IdentityError::InvalidPart {
                part: IdentityPart::TrustDomain,
                value: value.to_owned(),
                reason,
            },
            other => other,
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const WEB: &str = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";

    #[test]
    fn new_builds_the_linkerd_shaped_name() {
        let id = Identity::new("web", "emojivoto", "linkerd", "cluster.local").unwrap();
        assert_eq!(id.as_str(), WEB);
        assert_eq!(id.to_string(), WEB);
        assert_eq!(id.service_account(), "web");
        assert_eq!(id.namespace(), "emojivoto");
        assert_eq!(id.control_plane_namespace(), "linkerd");
        assert_eq!(id.trust_domain(), "cluster.local");
    }

    #[test]
    fn spiffe_uri_has_trust_domain_namespace_and_service_account() {
        let id = Identity::new("web", "emojivoto", "linkerd", "cluster.local").unwrap();
        assert_eq!(
            id.spiffe_uri(),
            "spiffe://cluster.local/ns/emojivoto/sa/web"
        );
        let id = Identity::new("default", "ns-1", "weft", "example").unwrap();
        assert_eq!(id.spiffe_uri(), "spiffe://example/ns/ns-1/sa/default");
    }

    #[test]
    fn parse_round_trips_and_splits_parts() {
        let id: Identity = WEB.parse().unwrap();
        assert_eq!(
            id,
            Identity::new("web", "emojivoto", "linkerd", "cluster.local").unwrap()
        );
        let id = Identity::parse("a-1.b.serviceaccount.identity.weft.corp.example.com").unwrap();
        assert_eq!(id.service_account(), "a-1");
        assert_eq!(id.namespace(), "b");
        assert_eq!(id.control_plane_namespace(), "weft");
        assert_eq!(id.trust_domain(), "corp.example.com");
    }

    #[test]
    fn parse_refuses_other_shapes() {
        for bad in [
            "",
            "web",
            "web.emojivoto.svc.cluster.local",
            "web.serviceaccount.identity.linkerd.cluster.local",
            "web.emojivoto.serviceaccount.identity.linkerd",
            "web.emojivoto.serviceaccount.identity.",
        ] {
            let err = Identity::parse(bad).unwrap_err();
            assert!(
                matches!(err, IdentityError::Malformed { .. }),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn parse_refuses_extra_labels_in_namespace_position() {
        let err =
            Identity::parse("web.a.b.serviceaccount.identity.linkerd.cluster.local").unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::InvalidPart {
                    part: IdentityPart::Namespace,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_labels_name_the_part_and_the_rule() {
        let cases = [
            (
                ("", "ns", "cp", "td"),
                IdentityPart::ServiceAccount,
                "empty",
            ),
            (
                ("Web", "ns", "cp", "td"),
                IdentityPart::ServiceAccount,
                "uppercase",
            ),
            (("sa", "ns_1", "cp", "td"), IdentityPart::Namespace, "a-z"),
            (
                ("sa", "-ns", "cp", "td"),
                IdentityPart::Namespace,
                "start and end",
            ),
            (
                ("sa", "ns", "cp-", "td"),
                IdentityPart::ControlPlaneNamespace,
                "start and end",
            ),
            (
                ("sa", "ns", "c.p", "td"),
                IdentityPart::ControlPlaneNamespace,
                "dot",
            ),
            (("sa", "ns", "cp", ""), IdentityPart::TrustDomain, "empty"),
            (
                ("sa", "ns", "cp", "cluster..local"),
                IdentityPart::TrustDomain,
                "empty label",
            ),
            (
                ("sa", "ns", "cp", ".local"),
                IdentityPart::TrustDomain,
                "empty label",
            ),
            (
                ("sa", "ns", "cp", "cluster.local."),
                IdentityPart::TrustDomain,
                "empty label",
            ),
            (
                ("sa", "ns", "cp", "Cluster.local"),
                IdentityPart::TrustDomain,
                "uppercase",
            ),
            (
                ("sa", "ns", "cp", "clu ster"),
                IdentityPart::TrustDomain,
                "a-z",
            ),
            (
                ("sä", "ns", "cp", "td"),
                IdentityPart::ServiceAccount,
                "a-z",
            ),
        ];
        for ((sa, ns, cp, td), want_part, want_reason) in cases {
            let err = Identity::new(sa, ns, cp, td).unwrap_err();
            match &err {
                IdentityError::InvalidPart { part, reason, .. } => {
                    assert_eq!(*part, want_part, "{err}");
                    assert!(reason.contains(want_reason), "{err}");
                }
                other => panic!("unexpected {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains(&want_part.to_string()), "{msg}");
        }
    }

    #[test]
    fn label_length_limit_is_63() {
        let ok = "a".repeat(63);
        assert!(Identity::new(&ok, "ns", "cp", "td").is_ok());
        let long = "a".repeat(64);
        let err = Identity::new(&long, "ns", "cp", "td").unwrap_err();
        assert!(err.to_string().contains("63"), "{err}");
    }

    #[test]
    fn whole_name_limit_is_253() {
        let l = "a".repeat(63);
        let td = format!("{l}.{l}");
        let err = Identity::new(&l, &l, "cp", &td).unwrap_err();
        assert!(matches!(err, IdentityError::TooLong { .. }), "{err:?}");
        assert!(err.to_string().contains("253"), "{err}");
    }
}
