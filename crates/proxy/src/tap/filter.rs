//! Which requests a tap wants: the filter of an `ObserveRequest`, parsed once when the tap
//! starts (so a malformed CIDR is the client's INVALID_ARGUMENT, never a panic) and matched
//! without allocating.

use std::net::IpAddr;

use weft_api::tap as pb;

use crate::telemetry::Direction;

/// Longest filter string accepted (paths, authorities, methods); longer ones are refused.
const MAX_FILTER_LEN: usize = 4096;

/// A filter field the client got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "{field}: {value:?} is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.1.3, fd00::/8)"
    )]
    Cidr { field: &'static str, value: String },
    #[error("{field} is longer than {MAX_FILTER_LEN} bytes")]
    TooLong { field: &'static str },
    #[error("direction: unknown value {0}")]
    Direction(i32),
}

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a /32 or /128). Host bits set below
    /// the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => {
                // Digits only: `u8::from_str` would also take a leading `+`.
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (ip, Some(p.parse::<u8>().ok()?))
            }
            None => (s, None),
        };
        let addr: IpAddr = ip.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr { addr, prefix })
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address matches as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A parsed filter: every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub method: Option<String>,
    /// Lower-cased.
    pub authority: Option<String>,
    pub path_prefix: Option<String>,
    pub source: Option<Cidr>,
    pub destination: Option<Cidr>,
    pub direction: Option<Direction>,
}

/// What a request offers to filters before the proxy has chosen where it goes.
#[derive(Debug)]
pub struct Head<'a> {
    pub direction: Direction,
    pub source: IpAddr,
    pub method: &'a str,
    /// As the client sent it (`:authority` or `Host`).
    pub authority: &'a str,
    /// As the proxy normalised it (lower case, default port added).
    pub normalized_authority: &'a str,
    pub path: &'a str,
}

impl Filter {
    /// Parses the filter of an `ObserveRequest` (absent means everything).
    pub fn from_proto(f: Option<&pb::Filter>) -> Result<Filter, FilterError> {
        let Some(f) = f else {
            return Ok(Filter::default());
        };
        let text =
            |field: &'static str, v: &Option<String>| -> Result<Option<String>, FilterError> {
                match v.as_deref().map(str::trim) {
                    None | Some("") => Ok(None),
                    Some(s) if s.len() > MAX_FILTER_LEN => Err(FilterError::TooLong { field }),
                    Some(s) => Ok(Some(s.to_string())),
                }
            };
        let cidr = |field: &'static str, v: &Option<String>| -> Result<Option<Cidr>, FilterError> {
            match text(field, v)? {
                None => Ok(None),
                Some(s) => Cidr::parse(&s)
                    .map(Some)
                    .ok_or(FilterError::Cidr { field, value: s }),
            }
        };
        let direction = match pb::Direction::try_from(f.direction) {
            Ok(pb::Direction::Unspecified) => None,
            Ok(pb::Direction::Inbound) => Some(Direction::Inbound),
            Ok(pb::Direction::Outbound) => Some(Direction::Outbound),
            Err(_) => return Err(FilterError::Direction(f.direction)),
        };
        Ok(Filter {
            method: text("method", &f.method)?,
            authority: text("authority", &f.authority)?.map(|a| a.to_ascii_lowercase()),
            path_prefix: text("path_prefix", &f.path_prefix)?,
            source: cidr("source", &f.source)?,
            destination: cidr("destination", &f.destination)?,
            direction,
        })
    }

    /// Whether the request head matches (everything but the destination).
    pub fn matches_head(&self, h: &Head<'_>) -> bool {
        self.direction.is_none_or(|d| d == h.direction)
            && self.method.as_deref().is_none_or(|m| m == h.method)
            && self.authority.as_deref().is_none_or(|a| {
                a.eq_ignore_ascii_case(h.authority)
                    || a.eq_ignore_ascii_case(h.normalized_authority)
            })
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| h.path.starts_with(p))
            && self.source.is_none_or(|c| c.contains(h.source))
    }

    /// Whether the destination the proxy chose matches (`None`: it answered before choosing
    /// one, which a destination filter never matches).
    pub fn matches_destination(&self, dst: Option<IpAddr>) -> bool {
        match self.destination {
            None => true,
            Some(c) => dst.is_some_and(|ip| c.contains(ip)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        // Host bits below the prefix are ignored.
        assert!(Cidr::parse("10.1.2.3/8").unwrap().contains(ip("10.9.9.9")));
        let one = Cidr::parse(" 127.0.1.3 ").unwrap();
        assert!(one.contains(ip("127.0.1.3")));
        assert!(!one.contains(ip("127.0.1.4")));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.9")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        // An IPv4-mapped IPv6 client matches an IPv4 network.
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(Cidr::parse("2001:db8::1/128")
            .unwrap()
            .contains(ip("2001:db8::1")));
    }

    #[test]
    fn hostile_cidrs_are_errors_not_panics() {
        let long = "1".repeat(10_000);
        let bad = [
            "",
            "/",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/255",
            "10.0.0.0/256",
            "10.0.0.0/99999999999999999999",
            "::/129",
            "10.0.0.0/8/8",
            "10.0.0",
            "10.0.0.0.0",
            "300.0.0.1",
            "example.com",
            "10.0.0.0 /8",
            "10.0.0.0/ 8",
            "١٠.0.0.0/8",
            "10.0.0.0/８",
            "\0",
            "[::1]",
            "::1%eth0",
            long.as_str(),
        ];
        for s in bad {
            assert!(Cidr::parse(s).is_none(), "{s:?}");
        }
        let f = pb::Filter {
            source: Some("10.0.0.0/33".into()),
            ..Default::default()
        };
        let e = Filter::from_proto(Some(&f)).unwrap_err();
        assert!(e.to_string().starts_with("source:"), "{e}");
        let f = pb::Filter {
            destination: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(
            Filter::from_proto(Some(&f)),
            Err(FilterError::Cidr {
                field: "destination",
                ..
            })
        ));
        let f = pb::Filter {
            path_prefix: Some("/".repeat(MAX_FILTER_LEN + 1)),
            ..Default::default()
        };
        assert!(Filter::from_proto(Some(&f)).is_err());
        let f = pb::Filter {
            direction: 7,
            ..Default::default()
        };
        assert_eq!(Filter::from_proto(Some(&f)), Err(FilterError::Direction(7)));
    }

    fn head<'a>(method: &'a str, path: &'a str) -> Head<'a> {
        Head {
            direction: Direction::Inbound,
            source: ip("127.0.1.2"),
            method,
            authority: "Web-Svc.emojivoto",
            normalized_authority: "web-svc.emojivoto:80",
            path,
        }
    }

    #[test]
    fn every_set_field_must_match() {
        let all = Filter::from_proto(None).unwrap();
        assert!(all.matches_head(&head("GET", "/")));
        assert!(all.matches_destination(None));

        let f = Filter::from_proto(Some(&pb::Filter {
            method: Some("POST".into()),
            path_prefix: Some("/api".into()),
            ..Default::default()
        }))
        .unwrap();
        assert!(f.matches_head(&head("POST", "/api/vote")));
        assert!(
            !f.matches_head(&head("GET", "/api/vote")),
            "method is exact"
        );
        assert!(
            !f.matches_head(&head("post", "/api/vote")),
            "method is exact"
        );
        assert!(!f.matches_head(&head("POST", "/apx")));
        assert!(!f.matches_head(&head("POST", "/")));

        // Authority: exact but case-insensitive, raw or normalised.
        for a in ["web-svc.emojivoto", "WEB-SVC.EMOJIVOTO:80"] {
            let f = Filter::from_proto(Some(&pb::Filter {
                authority: Some(a.into()),
                ..Default::default()
            }))
            .unwrap();
            assert!(f.matches_head(&head("GET", "/")), "{a}");
        }
        let f = Filter::from_proto(Some(&pb::Filter {
            authority: Some("web-svc".into()),
            ..Default::default()
        }))
        .unwrap();
        assert!(!f.matches_head(&head("GET", "/")), "no prefix matching");

        let f = Filter::from_proto(Some(&pb::Filter {
            source: Some("127.0.1.0/24".into()),
            destination: Some("10.0.0.0/8".into()),
            direction: pb::Direction::Inbound as i32,
            ..Default::default()
        }))
        .unwrap();
        assert!(f.matches_head(&head("GET", "/")));
        let mut out = head("GET", "/");
        out.direction = Direction::Outbound;
        assert!(!f.matches_head(&out));
        let mut elsewhere = head("GET", "/");
        elsewhere.source = ip("127.0.2.2");
        assert!(!f.matches_head(&elsewhere));
        assert!(f.matches_destination(Some(ip("10.1.1.1"))));
        assert!(!f.matches_destination(Some(ip("127.0.0.1"))));
        assert!(!f.matches_destination(None));
    }

    #[test]
    fn blank_fields_are_unset() {
        let f = Filter::from_proto(Some(&pb::Filter {
            method: Some("  ".into()),
            source: Some(String::new()),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(f, Filter::default());
    }
}
