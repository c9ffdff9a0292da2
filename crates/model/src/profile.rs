//! `linkerd.io ServiceProfile` (v1alpha1, v1alpha2): routes matched by conditions on method and
//! path, which of them are retryable, their timeouts and response classes, the retry budget,
//! and weighted `dstOverrides`.
//!
//! A profile is named after the authority it describes, usually a Service's FQDN
//! (`web-svc.emojivoto.svc.cluster.local`), and lives in that Service's namespace.

use crate::error::Issues;
use crate::scalar;
use serde::Deserialize;
use std::time::Duration;

/// The `spec` of a ServiceProfile.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProfileSpec {
    /// Routes, matched in order; the first whose condition matches wins.
    #[serde(default, deserialize_with = "scalar::list")]
    pub routes: Vec<ProfileRoute>,
    /// The retry budget shared by the profile's retryable routes.
    #[serde(default)]
    pub retry_budget: Option<RetryBudgetSpec>,
    /// Weighted destinations that replace the profile's own authority.
    #[serde(default, deserialize_with = "scalar::list")]
    pub dst_overrides: Vec<DstOverride>,
}

/// One route of a ServiceProfile.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRoute {
    /// The route's name (the `route` label in metrics), e.g. `GET /api/list`.
    #[serde(default, deserialize_with = "scalar::text")]
    pub name: String,
    /// Which requests the route matches.
    #[serde(default)]
    pub condition: Option<RequestCondition>,
    /// How responses are classified, in order; the first that matches decides.
    #[serde(default, deserialize_with = "scalar::list")]
    pub response_classes: Vec<ResponseClassSpec>,
    /// Whether failed requests on this route may be retried (only idempotent ones should be).
    #[serde(default, deserialize_with = "scalar::opt_boolean")]
    pub is_retryable: Option<bool>,
    /// The request timeout (whole exchange, retries included).
    #[serde(default, deserialize_with = "scalar::opt_duration")]
    pub timeout: Option<Duration>,
}

/// A request condition: every field that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCondition {
    /// The request's method, e.g. `GET`.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub method: Option<String>,
    /// A regular expression the whole path must match.
    #[serde(default, deserialize_with = "scalar::opt_regex")]
    pub path_regex: Option<String>,
    /// Conditions that must all hold.
    #[serde(default)]
    pub all: Option<Vec<RequestCondition>>,
    /// Conditions of which one must hold.
    #[serde(default)]
    pub any: Option<Vec<RequestCondition>>,
    /// A condition that must not hold.
    #[serde(default, rename = "not")]
    pub negate: Option<Box<RequestCondition>>,
}

/// One response class: responses matching `condition` are failures or successes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseClassSpec {
    /// Which responses the class covers.
    #[serde(default)]
    pub condition: Option<ResponseCondition>,
    /// Whether those responses are failures.
    #[serde(default, deserialize_with = "scalar::opt_boolean")]
    pub is_failure: Option<bool>,
}

/// A response condition: every field that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseCondition {
    /// The status is within these bounds.
    #[serde(default)]
    pub status: Option<StatusBounds>,
    /// Conditions that must all hold.
    #[serde(default)]
    pub all: Option<Vec<ResponseCondition>>,
    /// Conditions of which one must hold.
    #[serde(default)]
    pub any: Option<Vec<ResponseCondition>>,
    /// A condition that must not hold.
    #[serde(default, rename = "not")]
    pub negate: Option<Box<ResponseCondition>>,
}

/// `status: {min, max}` of a response condition (each bound optional, inclusive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatusBounds {
    /// Lowest status (default 100).
    #[serde(default, deserialize_with = "scalar::opt_status")]
    pub min: Option<u16>,
    /// Highest status (default 599).
    #[serde(default, deserialize_with = "scalar::opt_status")]
    pub max: Option<u16>,
}

/// `retryBudget`: retries may add at most `retryRatio` of the live traffic, plus
/// `minRetriesPerSecond`, measured over `ttl`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudgetSpec {
    /// The fraction of requests that may be retries, e.g. 0.2.
    #[serde(deserialize_with = "scalar::ratio")]
    pub retry_ratio: f64,
    /// Retries allowed per second regardless of the ratio.
    #[serde(deserialize_with = "scalar::count")]
    pub min_retries_per_second: u32,
    /// The window over which the ratio is computed.
    #[serde(deserialize_with = "scalar::duration")]
    pub ttl: Duration,
}

/// One `dstOverrides` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DstOverride {
    /// Where to send the traffic: `host:port` (the port defaults to the request's).
    #[serde(deserialize_with = "scalar::text")]
    pub authority: String,
    /// The weight, in thousandths (a Kubernetes quantity: `1` = 1000, `500m` = 500).
    #[serde(deserialize_with = "scalar::quantity_weight")]
    pub weight: u32,
}

/// Budget ttls Linkerd accepts; outside this a budget either forgets too fast or too slowly.
const TTL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

impl ServiceProfileSpec {
    /// Whether this profile takes over the service's policy: it has routes or dstOverrides.
    pub fn overrides_routes(&self) -> bool {
        !self.routes.is_empty() || !self.dst_overrides.is_empty()
    }

    pub(crate) fn validate(&self, issues: &mut Issues) {
        for (i, route) in self.routes.iter().enumerate() {
            let field = format!("spec.routes[{i}]");
            if route.name.trim().is_empty() {
                issues.push(format!("{field}.name"), "every route needs a name");
            }
            match &route.condition {
                None => issues.push(
                    format!("{field}.condition"),
                    "every route needs a condition (e.g. method and pathRegex)",
                ),
                Some(c) => c.validate(&format!("{field}.condition"), issues),
            }
            for (j, class) in route.response_classes.iter().enumerate() {
                let field = format!("{field}.responseClasses[{j}]");
                match &class.condition {
                    None => issues.push(
                        format!("{field}.condition"),
                        "every response class needs a condition",
                    ),
                    Some(c) => c.validate(&format!("{field}.condition"), issues),
                }
            }
        }
        if let Some(budget) = &self.retry_budget {
            let (min, max) = TTL_RANGE;
            if budget.ttl < min || budget.ttl > max {
                issues.push(
                    "spec.retryBudget.ttl",
                    format!(
                        "{} is outside 1s-60s: the budget would forget retries too quickly or too slowly",
                        crate::duration::format_duration(budget.ttl)
                    ),
                );
            }
        }
        for (i, dst) in self.dst_overrides.iter().enumerate() {
            if let Err(message) = split_authority(&dst.authority) {
                issues.push(format!("spec.dstOverrides[{i}].authority"), message);
            }
        }
    }
}

impl RequestCondition {
    fn validate(&self, field: &str, issues: &mut Issues) {
        let set = self.method.is_some()
            || self.path_regex.is_some()
            || self.all.is_some()
            || self.any.is_some()
            || self.negate.is_some();
        if !set {
            issues.push(
                field,
                "a condition needs at least one of method, pathRegex, all, any or not",
            );
        }
        if let Some(method) = &self.method {
            if !crate::httproute::is_token(method) {
                issues.push(
                    format!("{field}.method"),
                    format!("{method:?} is not an HTTP method"),
                );
            }
        }
        for (name, list) in [("all", &self.all), ("any", &self.any)] {
            for (i, c) in list.iter().flatten().enumerate() {
                c.validate(&format!("{field}.{name}[{i}]"), issues);
            }
        }
        if let Some(c) = &self.negate {
            c.validate(&format!("{field}.not"), issues);
        }
    }
}

impl ResponseCondition {
    fn validate(&self, field: &str, issues: &mut Issues) {
        let set = self.status.is_some()
            || self.all.is_some()
            || self.any.is_some()
            || self.negate.is_some();
        if !set {
            issues.push(
                field,
                "a condition needs at least one of status, all, any or not",
            );
        }
        if let Some(StatusBounds {
            min: Some(min),
            max: Some(max),
        }) = self.status
        {
            if min > max {
                issues.push(
                    format!("{field}.status"),
                    format!("min {min} is larger than max {max}: no status can match"),
                );
            }
        }
        for (name, list) in [("all", &self.all), ("any", &self.any)] {
            for (i, c) in list.iter().flatten().enumerate() {
                c.validate(&format!("{field}.{name}[{i}]"), issues);
            }
        }
        if let Some(c) = &self.negate {
            c.validate(&format!("{field}.not"), issues);
        }
    }
}

/// Splits `host[:port]` into host and optional port.
pub(crate) fn split_authority(authority: &str) -> Result<(&str, Option<u16>), String> {
    let authority = authority.trim();
    let bad = || {
        format!("{authority:?} is not an authority: expected host:port, e.g. web-canary.emojivoto.svc.cluster.local:80")
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(bad)?;
            (host, Some(port))
        }
        None => (authority, None),
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_host {
        return Err(bad());
    }
    Ok((host, port))
}
