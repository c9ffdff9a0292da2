//! Authorities as proxies ask for them, normalized to the one key the index uses:
//! `<name>.<namespace>.svc.<cluster domain>:<port>`.
//!
//! Accepted forms, case-insensitive, with an optional trailing dot: `name.namespace`,
//! `name.namespace.svc` and `name.namespace.svc.<cluster domain>`, each with `:port` or
//! without (then port 80, as HTTP's default). Anything else that is well-formed (an IP address,
//! `example.com:443`, a name in another cluster domain) is [`Target::External`]: it names no
//! service here, and the service answers so. Malformed input (an empty host, a port that is not
//! 1-65535) is an [`AuthorityError`].

use std::fmt;

use weft_model::service::is_dns_label;

/// Longest authority accepted (a DNS name is at most 253 bytes; the rest is slack for a port).
const MAX_AUTHORITY_LEN: usize = 512;

/// The port an authority without one means.
pub const DEFAULT_PORT: u16 = 80;

/// A Service port in this cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceAuthority {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The Service port.
    pub port: u16,
}

impl ServiceAuthority {
    /// The canonical authority: `<name>.<namespace>.svc.<domain>:<port>`, the key of the
    /// compiled policies.
    pub fn canonical(&self, cluster_domain: &str) -> String {
        format!(
            "{}.{}.svc.{cluster_domain}:{}",
            self.name, self.namespace, self.port
        )
    }
}

/// What an authority names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Service port of this cluster (it may or may not exist).
    Service(ServiceAuthority),
    /// Something that cannot be a Service of this cluster, as `host:port` (lowercase).
    External(String),
}

/// Why an authority is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// Nothing to look up.
    #[error("the authority is empty")]
    Empty,
    /// Too long to be a host name.
    #[error("the authority is longer than {MAX_AUTHORITY_LEN} bytes")]
    TooLong,
    /// The port is not a number from 1 to 65535.
    #[error("{authority:?}: {port:?} is not a port (expected 1-65535)")]
    BadPort {
        /// The authority.
        authority: String,
        /// The port as written.
        port: String,
    },
    /// The host is empty or has characters no host name has.
    #[error("{authority:?} is not host:port")]
    BadHost {
        /// The authority.
        authority: String,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Service(s) => write!(f, "{}.{}:{}", s.name, s.namespace, s.port),
            Target::External(a) => f.write_str(a),
        }
    }
}

/// Parses and normalizes `authority` for a cluster whose DNS domain is `cluster_domain`.
pub fn parse(authority: &str, cluster_domain: &str) -> Result<Target, AuthorityError> {
    let trimmed = authority.trim();
    if trimmed.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if trimmed.len() > MAX_AUTHORITY_LEN {
        return Err(AuthorityError::TooLong);
    }
    let lower = trimmed.to_ascii_lowercase();
    let bad_host = || AuthorityError::BadHost {
        authority: trimmed.to_string(),
    };
    let (host, port) = split_port(&lower).ok_or_else(bad_host)?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(AuthorityError::BadPort {
                    authority: trimmed.to_string(),
                    port: p.to_string(),
                })
            }
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if !valid_host {
        return Err(bad_host());
    }
    let domain = cluster_domain.trim().trim_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let service = match labels.as_slice() {
        [name, namespace] | [name, namespace, "svc"] => Some((*name, *namespace)),
        [name, namespace, "svc", rest @ ..] if !rest.is_empty() && rest.join(".") == domain => {
            Some((*name, *namespace))
        }
        _ => None,
    };
    match service {
        Some((name, namespace)) if is_dns_label(name) && is_dns_label(namespace) => {
            Ok(Target::Service(ServiceAuthority {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port,
            }))
        }
        _ if host.contains(':') => Ok(Target::External(format!("[{host}]:{port}"))),
        _ => Ok(Target::External(format!("{host}:{port}"))),
    }
}

/// `host` and the port text, if any. IPv6 hosts must be bracketed when a port follows.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.matches(':').count() {
        0 => Some((authority, None)),
        1 => authority.split_once(':').map(|(h, p)| (h, Some(p))),
        // A bare IPv6 address.
        _ => Some((authority, None)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn service(authority: &str) -> String {
        match parse(authority, "cluster.local") {
            Ok(Target::Service(s)) => s.canonical("cluster.local"),
            other => panic!("{authority}: {other:?}"),
        }
    }

    fn external(authority: &str) -> String {
        match parse(authority, "cluster.local") {
            Ok(Target::External(a)) => a,
            other => panic!("{authority}: {other:?}"),
        }
    }

    #[test]
    fn every_service_form_means_the_same_service() {
        let want = "web-svc.emojivoto.svc.cluster.local:80";
        for a in [
            "web-svc.emojivoto:80",
            "web-svc.emojivoto.svc:80",
            "web-svc.emojivoto.svc.cluster.local:80",
            "web-svc.emojivoto.svc.cluster.local.:80",
            "Web-Svc.EmojiVoto.SVC.Cluster.Local:80",
            "web-svc.emojivoto",
            "web-svc.emojivoto.svc.cluster.local",
            " web-svc.emojivoto:80 ",
        ] {
            assert_eq!(service(a), want, "{a}");
        }
        assert_eq!(
            service("voting-svc.emojivoto:8080"),
            "voting-svc.emojivoto.svc.cluster.local:8080"
        );
    }

    #[test]
    fn the_cluster_domain_is_configurable() {
        let Ok(Target::Service(s)) = parse("web.shop.svc.example.org:80", "example.org.") else {
            panic!()
        };
        assert_eq!(s.canonical("example.org"), "web.shop.svc.example.org:80");
        assert_eq!(
            external("web.shop.svc.example.org:80"),
            "web.shop.svc.example.org:80",
            "another cluster's domain is not a service here"
        );
    }

    #[test]
    fn other_hosts_are_external() {
        assert_eq!(external("www.example.com:443"), "www.example.com:443");
        assert_eq!(external("web:8080"), "web:8080");
        assert_eq!(external("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(external("[::1]:8080"), "[::1]:8080");
        assert_eq!(external("::1"), "[::1]:80");
        assert_eq!(external("a_b.shop:80"), "a_b.shop:80", "not a DNS label");
        assert_eq!(
            external("web.shop.pod.cluster.local"),
            "web.shop.pod.cluster.local:80"
        );
    }

    #[test]
    fn malformed_authorities_are_errors_naming_the_problem() {
        assert_eq!(parse("", "cluster.local"), Err(AuthorityError::Empty));
        assert_eq!(parse("  ", "cluster.local"), Err(AuthorityError::Empty));
        let err = parse("web.shop:http", "cluster.local").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#""web.shop:http": "http" is not a port (expected 1-65535)"#
        );
        assert!(matches!(
            parse("web.shop:0", "cluster.local"),
            Err(AuthorityError::BadPort { .. })
        ));
        assert!(matches!(
            parse("web.shop:65536", "cluster.local"),
            Err(AuthorityError::BadPort { .. })
        ));
        assert!(matches!(
            parse("web.shop:", "cluster.local"),
            Err(AuthorityError::BadPort { .. })
        ));
        for bad in [":80", "web shop:80", "web/shop:80", "[::1", "[::1]x"] {
            assert!(
                matches!(
                    parse(bad, "cluster.local"),
                    Err(AuthorityError::BadHost { .. })
                ),
                "{bad}: {:?}",
                parse(bad, "cluster.local")
            );
        }
        assert_eq!(
            parse(&"a".repeat(600), "cluster.local"),
            Err(AuthorityError::TooLong)
        );
    }
}
