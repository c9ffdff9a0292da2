//! Request matching (a route's `RequestMatch` tree) and response classification
//! (`ResponseClass`), compiled once per policy update so requests only evaluate them.
//!
//! Regexes are anchored (the whole path or value must match) and size-limited; one that does
//! not compile makes its condition match nothing (logged), never a panic or a catch-all.

use http::{HeaderMap, Method, Uri};
use regex::Regex;
use weft_api::destination as pb;

/// Compiled-program size limit of one regex from the control plane.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled request condition.
#[derive(Clone, Debug)]
pub enum RequestMatch {
    Always,
    Never,
    All(Vec<RequestMatch>),
    Any(Vec<RequestMatch>),
    Not(Box<RequestMatch>),
    Method(Method),
    PathExact(String),
    /// Element-wise prefix, without its trailing `/` (empty: every path).
    PathPrefix(String),
    PathRegex(Regex),
    Header(String, ValueMatch),
    Query(String, ValueMatch),
}

/// A compiled header or query-parameter value condition.
#[derive(Clone, Debug)]
pub enum ValueMatch {
    Exact(String),
    Regex(Regex),
    /// Any value (the name is present).
    Present,
    /// The value's regex was invalid: matches nothing.
    Never,
}

impl ValueMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(e) => e == v,
            ValueMatch::Regex(r) => r.is_match(v),
            ValueMatch::Present => true,
            ValueMatch::Never => false,
        }
    }
}

fn anchored(pattern: &str, route: &str) -> Option<Regex> {
    match regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(route, regex = pattern, error = %e, "invalid regex in route policy; the condition matches nothing");
            None
        }
    }
}

impl RequestMatch {
    /// Compiles a condition; an absent one matches every request.
    pub fn compile(m: Option<&pb::RequestMatch>, route: &str) -> RequestMatch {
        use pb::request_match::Kind;
        let Some(kind) = m.and_then(|m| m.kind.as_ref()) else {
            return RequestMatch::Always;
        };
        match kind {
            Kind::All(list) => RequestMatch::All(
                list.matches
                    .iter()
                    .map(|m| Self::compile(Some(m), route))
                    .collect(),
            ),
            Kind::Any(list) => RequestMatch::Any(
                list.matches
                    .iter()
                    .map(|m| Self::compile(Some(m), route))
                    .collect(),
            ),
            Kind::Not(inner) => RequestMatch::Not(Box::new(Self::compile(Some(inner), route))),
            Kind::Method(m) => match Method::from_bytes(m.trim().as_bytes()) {
                Ok(m) => RequestMatch::Method(m),
                Err(_) => {
                    tracing::warn!(route, method = %m, "invalid method in route policy; the condition matches nothing");
                    RequestMatch::Never
                }
            },
            Kind::Path(p) => match &p.kind {
                Some(pb::path_match::Kind::Exact(e)) => RequestMatch::PathExact(e.clone()),
                Some(pb::path_match::Kind::Prefix(p)) => {
                    RequestMatch::PathPrefix(p.trim_end_matches('/').to_string())
                }
                Some(pb::path_match::Kind::Regex(r)) => match anchored(r, route) {
                    Some(r) => RequestMatch::PathRegex(r),
                    None => RequestMatch::Never,
                },
                None => RequestMatch::Always,
            },
            Kind::Header(v) => RequestMatch::Header(v.name.to_ascii_lowercase(), value(v, route)),
            Kind::QueryParam(v) => RequestMatch::Query(v.name.clone(), value(v, route)),
        }
    }

    /// Whether a request with this method, URI and headers satisfies the condition.
    pub fn matches(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        match self {
            RequestMatch::Always => true,
            RequestMatch::Never => false,
            RequestMatch::All(ms) => ms.iter().all(|m| m.matches(method, uri, headers)),
            RequestMatch::Any(ms) => ms.iter().any(|m| m.matches(method, uri, headers)),
            RequestMatch::Not(m) => !m.matches(method, uri, headers),
            RequestMatch::Method(m) => m == method,
            RequestMatch::PathExact(p) => uri.path() == p,
            RequestMatch::PathPrefix(p) => {
                let path = uri.path();
                p.is_empty()
                    || path == p
                    || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            RequestMatch::PathRegex(r) => r.is_match(uri.path()),
            RequestMatch::Header(name, v) => headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|h| h.to_str().ok())
                .any(|h| v.matches(h)),
            RequestMatch::Query(name, v) => uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|pair| {
                    let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == name).then_some(val)
                })
                .any(|val| v.matches(val)),
        }
    }
}

fn value(v: &pb::ValueMatch, route: &str) -> ValueMatch {
    match &v.kind {
        Some(pb::value_match::Kind::Exact(e)) => ValueMatch::Exact(e.clone()),
        Some(pb::value_match::Kind::Regex(r)) => match anchored(r, route) {
            Some(r) => ValueMatch::Regex(r),
            None => ValueMatch::Never,
        },
        // A name alone: present with any value.
        None => ValueMatch::Present,
    }
}

/// A compiled response condition.
#[derive(Clone, Debug)]
pub enum ResponseMatch {
    Status(u16, u16),
    All(Vec<ResponseMatch>),
    Any(Vec<ResponseMatch>),
    Not(Box<ResponseMatch>),
    Always,
}

impl ResponseMatch {
    pub fn compile(m: Option<&pb::ResponseMatch>) -> ResponseMatch {
        use pb::response_match::Kind;
        match m.and_then(|m| m.kind.as_ref()) {
            None => ResponseMatch::Always,
            Some(Kind::Status(r)) => {
                ResponseMatch::Status(clamp_status(r.min), clamp_status(r.max))
            }
            Some(Kind::All(l)) => {
                ResponseMatch::All(l.matches.iter().map(|m| Self::compile(Some(m))).collect())
            }
            Some(Kind::Any(l)) => {
                ResponseMatch::Any(l.matches.iter().map(|m| Self::compile(Some(m))).collect())
            }
            Some(Kind::Not(m)) => ResponseMatch::Not(Box::new(Self::compile(Some(m)))),
        }
    }

    pub fn matches(&self, status: u16) -> bool {
        match self {
            ResponseMatch::Status(lo, hi) => (*lo..=*hi).contains(&status),
            ResponseMatch::All(ms) => ms.iter().all(|m| m.matches(status)),
            ResponseMatch::Any(ms) => ms.iter().any(|m| m.matches(status)),
            ResponseMatch::Not(m) => !m.matches(status),
            ResponseMatch::Always => true,
        }
    }
}

pub fn clamp_status(s: u32) -> u16 {
    u16::try_from(s.min(999)).unwrap_or(999)
}

/// Whether a response is a failure: the first response class that matches decides; with none,
/// 5xx fail, and gRPC statuses other than OK fail.
pub fn is_failure(
    classes: &[(ResponseMatch, bool)],
    status: u16,
    grpc_status: Option<u16>,
) -> bool {
    if let Some((_, failure)) = classes.iter().find(|(m, _)| m.matches(status)) {
        return *failure;
    }
    status >= 500 || grpc_status.is_some_and(|g| g != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pb::request_match::Kind;

    fn m(kind: Kind) -> pb::RequestMatch {
        pb::RequestMatch { kind: Some(kind) }
    }
    fn path(k: pb::path_match::Kind) -> pb::RequestMatch {
        m(Kind::Path(pb::PathMatch { kind: Some(k) }))
    }
    fn check(c: &RequestMatch, method: &str, uri: &str, headers: &[(&str, &str)]) -> bool {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        c.matches(&method.parse().unwrap(), &uri.parse().unwrap(), &h)
    }

    #[test]
    fn path_forms() {
        let exact = RequestMatch::compile(
            Some(&path(pb::path_match::Kind::Exact("/api/list".into()))),
            "r",
        );
        assert!(check(&exact, "GET", "/api/list?x=1", &[]));
        assert!(!check(&exact, "GET", "/api/list/", &[]));
        let prefix = RequestMatch::compile(
            Some(&path(pb::path_match::Kind::Prefix("/api/".into()))),
            "r",
        );
        assert!(check(&prefix, "GET", "/api", &[]));
        assert!(check(&prefix, "GET", "/api/list", &[]));
        assert!(!check(&prefix, "GET", "/apis", &[]));
        let root =
            RequestMatch::compile(Some(&path(pb::path_match::Kind::Prefix("/".into()))), "r");
        assert!(check(&root, "GET", "/anything", &[]));
        let re = RequestMatch::compile(
            Some(&path(pb::path_match::Kind::Regex("/api/vote".into()))),
            "r",
        );
        assert!(check(&re, "POST", "/api/vote", &[]));
        assert!(
            !check(&re, "POST", "/api/vote/x", &[]),
            "regexes are anchored"
        );
        let re = RequestMatch::compile(
            Some(&path(pb::path_match::Kind::Regex("/books/\\d+".into()))),
            "r",
        );
        assert!(check(&re, "GET", "/books/12", &[]));
        assert!(!check(&re, "GET", "/books/x", &[]));
    }

    #[test]
    fn bad_regex_matches_nothing() {
        let re = RequestMatch::compile(Some(&path(pb::path_match::Kind::Regex("(".into()))), "r");
        assert!(!check(&re, "GET", "/(", &[]));
        let h = m(Kind::Header(pb::ValueMatch {
            name: "x".into(),
            kind: Some(pb::value_match::Kind::Regex("[".into())),
        }));
        assert!(!check(
            &RequestMatch::compile(Some(&h), "r"),
            "GET",
            "/",
            &[("x", "[")]
        ));
        let bad_method = m(Kind::Method("G E T".into()));
        assert!(!check(
            &RequestMatch::compile(Some(&bad_method), "r"),
            "GET",
            "/",
            &[]
        ));
    }

    #[test]
    fn combinators_headers_and_query() {
        let cond = m(Kind::All(pb::MatchList {
            matches: vec![
                m(Kind::Method("GET".into())),
                m(Kind::Any(pb::MatchList {
                    matches: vec![
                        m(Kind::Header(pb::ValueMatch {
                            name: "X-Canary".into(),
                            kind: Some(pb::value_match::Kind::Exact("yes".into())),
                        })),
                        m(Kind::QueryParam(pb::ValueMatch {
                            name: "v".into(),
                            kind: Some(pb::value_match::Kind::Regex("2|3".into())),
                        })),
                    ],
                })),
                m(Kind::Not(Box::new(path(pb::path_match::Kind::Prefix(
                    "/admin".into(),
                ))))),
            ],
        }));
        let c = RequestMatch::compile(Some(&cond), "r");
        assert!(check(&c, "GET", "/x", &[("x-canary", "yes")]));
        assert!(check(
            &c,
            "GET",
            "/x",
            &[("x-canary", "no"), ("x-canary", "yes")]
        ));
        assert!(check(&c, "GET", "/x?a=1&v=3", &[]));
        assert!(!check(&c, "GET", "/x?v=23", &[]));
        assert!(!check(&c, "POST", "/x", &[("x-canary", "yes")]));
        assert!(!check(&c, "GET", "/admin/x", &[("x-canary", "yes")]));
        assert!(check(&RequestMatch::compile(None, "r"), "DELETE", "/", &[]));
        let empty_any = m(Kind::Any(pb::MatchList { matches: vec![] }));
        assert!(!check(
            &RequestMatch::compile(Some(&empty_any), "r"),
            "GET",
            "/",
            &[]
        ));
    }

    #[test]
    fn response_classes() {
        let class = |min, max, failure| {
            (
                ResponseMatch::compile(Some(&pb::ResponseMatch {
                    kind: Some(pb::response_match::Kind::Status(pb::StatusRange {
                        min,
                        max,
                    })),
                })),
                failure,
            )
        };
        let classes = vec![class(500, 503, false), class(404, 404, true)];
        assert!(!is_failure(&classes, 502, None));
        assert!(is_failure(&classes, 504, None));
        assert!(is_failure(&classes, 404, None));
        assert!(!is_failure(&[], 404, None));
        assert!(is_failure(&[], 200, Some(14)));
        assert!(!is_failure(&[], 200, Some(0)));
    }
}
