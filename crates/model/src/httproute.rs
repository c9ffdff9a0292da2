//! `gateway.networking.k8s.io HTTPRoute` (v1, v1beta1, v1alpha2; Linkerd's `policy.linkerd.io`
//! HTTPRoute has the same shape): routes attached to a Service through `parentRefs`, with
//! matches on path, method, headers and query parameters, weighted `backendRefs`, and
//! `timeouts`. Retries and further timeouts come from `retry.linkerd.io/*` and
//! `timeout.linkerd.io/*` annotations (see [`crate::annotations`]).

use crate::error::Issues;
use crate::scalar;
use serde::Deserialize;
use std::time::Duration;

/// The `spec` of an HTTPRoute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// What the route attaches to. Weft uses parents of kind Service (group `core` or `""`).
    #[serde(default, deserialize_with = "scalar::list")]
    pub parent_refs: Vec<ParentRef>,
    /// Hostnames (used by gateways; ignored for Service parents, as in Linkerd).
    #[serde(default, deserialize_with = "scalar::list")]
    pub hostnames: Vec<String>,
    /// The rules. None at all means one rule matching every request.
    #[serde(default, deserialize_with = "scalar::list")]
    pub rules: Vec<HttpRouteRule>,
}

/// A `parentRefs` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// API group: `core` or `""` for Services (defaults to the Gateway API group, or to core
    /// when `kind: Service` is given without a group).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub group: Option<String>,
    /// Kind: `Service` for mesh routes (defaults to `Gateway`).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub kind: Option<String>,
    /// Namespace (defaults to the route's).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub namespace: Option<String>,
    /// The parent's name.
    #[serde(deserialize_with = "scalar::text")]
    pub name: String,
    /// A port name on the parent (alternative to `port`).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub section_name: Option<String>,
    /// The Service port the route applies to (all ports when absent).
    #[serde(default, deserialize_with = "scalar::opt_port")]
    pub port: Option<u16>,
}

impl ParentRef {
    /// Whether this parent is a Service (mesh traffic), as opposed to a Gateway.
    pub fn is_service(&self) -> bool {
        self.kind.as_deref() == Some("Service")
            && matches!(self.group.as_deref(), None | Some("") | Some("core"))
    }
}

/// One rule of an HTTPRoute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// The rule's name (Gateway API 1.2+), used in metrics when present.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub name: Option<String>,
    /// Matches, any of which selects the rule. None at all means `PathPrefix /`.
    #[serde(default, deserialize_with = "scalar::list")]
    pub matches: Vec<HttpRouteMatch>,
    /// Filters. Weft does not apply them yet; `compile` warns about each.
    #[serde(default, deserialize_with = "scalar::list")]
    pub filters: Vec<Filter>,
    /// Where matching requests go. None at all means the parent Service.
    #[serde(default, deserialize_with = "scalar::list")]
    pub backend_refs: Vec<BackendRef>,
    /// Request and backend-request timeouts.
    #[serde(default)]
    pub timeouts: Option<RouteTimeouts>,
}

/// An entry of `matches`: every part that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// The path match (default: prefix `/`).
    #[serde(default)]
    pub path: Option<PathMatchSpec>,
    /// Header matches, all of which must hold.
    #[serde(default, deserialize_with = "scalar::list")]
    pub headers: Vec<ValueMatchSpec>,
    /// Query parameter matches, all of which must hold.
    #[serde(default, deserialize_with = "scalar::list")]
    pub query_params: Vec<ValueMatchSpec>,
    /// The request's method.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub method: Option<String>,
}

/// `path: {type, value}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PathMatchSpec {
    /// How the path is compared (default `PathPrefix`).
    #[serde(default, rename = "type")]
    pub match_type: Option<PathMatchType>,
    /// The path, prefix or regular expression (default `/`).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub value: Option<String>,
}

/// The path match types of the Gateway API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum PathMatchType {
    /// The whole path equals the value.
    Exact,
    /// The path starts with the value, element by element (`/api` matches `/api/x`, not `/apix`).
    PathPrefix,
    /// The whole path matches the regular expression.
    RegularExpression,
}

/// A header or query parameter match.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ValueMatchSpec {
    /// How the value is compared (default `Exact`).
    #[serde(default, rename = "type")]
    pub match_type: Option<ValueMatchType>,
    /// The header or parameter name.
    #[serde(deserialize_with = "scalar::text")]
    pub name: String,
    /// The value or regular expression.
    #[serde(deserialize_with = "scalar::text")]
    pub value: String,
}

/// How a header or query parameter value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ValueMatchType {
    /// Equal to the value.
    Exact,
    /// The whole value matches the regular expression.
    RegularExpression,
}

/// A filter (only its type is kept: Weft reports filters it does not apply).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Filter {
    /// The filter's type, e.g. `RequestHeaderModifier`.
    #[serde(rename = "type", deserialize_with = "scalar::text")]
    pub filter_type: String,
}

/// A `backendRefs` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// API group (default core).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub group: Option<String>,
    /// Kind (default Service).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub kind: Option<String>,
    /// The backend Service's name.
    #[serde(deserialize_with = "scalar::text")]
    pub name: String,
    /// Its namespace (default the route's).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub namespace: Option<String>,
    /// Its port (default the parent's port).
    #[serde(default, deserialize_with = "scalar::opt_port")]
    pub port: Option<u16>,
    /// Relative weight, 0 to 1,000,000 (default 1).
    #[serde(default = "default_weight", deserialize_with = "scalar::route_weight")]
    pub weight: u32,
    /// Filters on this backend (reported, not applied).
    #[serde(default, deserialize_with = "scalar::list")]
    pub filters: Vec<Filter>,
}

impl BackendRef {
    /// Whether the backend is a Service.
    pub fn is_service(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("Service"))
            && matches!(self.group.as_deref(), None | Some("") | Some("core"))
    }
}

fn default_weight() -> u32 {
    1
}

/// `timeouts` of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTimeouts {
    /// The whole exchange (`timeout.linkerd.io/request` takes priority, as in Linkerd).
    #[serde(default, deserialize_with = "scalar::opt_duration")]
    pub request: Option<Duration>,
    /// One backend request (`timeout.linkerd.io/response` takes priority).
    #[serde(default, deserialize_with = "scalar::opt_duration")]
    pub backend_request: Option<Duration>,
}

/// Whether `s` is an HTTP token (a method or header name, RFC 9110 `tchar`s).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl HttpRouteSpec {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        for (i, p) in self.parent_refs.iter().enumerate() {
            if p.name.trim().is_empty() {
                issues.push(
                    format!("spec.parentRefs[{i}].name"),
                    "a parent needs a name",
                );
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let field = format!("spec.rules[{i}]");
            for (j, m) in rule.matches.iter().enumerate() {
                m.validate(&format!("{field}.matches[{j}]"), issues);
            }
            for (j, b) in rule.backend_refs.iter().enumerate() {
                if b.name.trim().is_empty() {
                    issues.push(
                        format!("{field}.backendRefs[{j}].name"),
                        "a backend needs a name",
                    );
                }
            }
        }
    }
}

impl HttpRouteMatch {
    fn validate(&self, field: &str, issues: &mut Issues) {
        if let Some(path) = &self.path {
            let value = path.value.as_deref().unwrap_or("/");
            match path.match_type.unwrap_or(PathMatchType::PathPrefix) {
                PathMatchType::Exact | PathMatchType::PathPrefix if !value.starts_with('/') => {
                    issues.push(
                        format!("{field}.path.value"),
                        format!("{value:?} is not a path: it must start with '/'"),
                    )
                }
                PathMatchType::RegularExpression => {
                    if let Err(message) = scalar::check_regex(value) {
                        issues.push(format!("{field}.path.value"), message);
                    }
                }
                _ => {}
            }
        }
        if let Some(method) = &self.method {
            if !is_token(method) {
                issues.push(
                    format!("{field}.method"),
                    format!("{method:?} is not an HTTP method"),
                );
            }
        }
        for (kind, list) in [
            ("headers", &self.headers),
            ("queryParams", &self.query_params),
        ] {
            for (i, h) in list.iter().enumerate() {
                let field = format!("{field}.{kind}[{i}]");
                if kind == "headers" && !is_token(&h.name) {
                    issues.push(
                        format!("{field}.name"),
                        format!("{:?} is not a header name", h.name),
                    );
                }
                if h.match_type == Some(ValueMatchType::RegularExpression) {
                    if let Err(message) = scalar::check_regex(&h.value) {
                        issues.push(format!("{field}.value"), message);
                    }
                }
            }
        }
    }
}
