//! Compilation: from objects to the policy of every Service port ([`Policies`]).
//!
//! Precedence follows Linkerd:
//! 1. A ServiceProfile for the Service (named `<svc>.<ns>.svc.<domain>`, in the Service's
//!    namespace) that has `routes` or `dstOverrides` wins, and so does a TrafficSplit on the
//!    Service (Linkerd turns splits into a profile's `dstOverrides`). HTTPRoutes attached to
//!    the Service and its retry/timeout annotations are then ignored — and each ignored object
//!    is recorded in [`ServicePolicy::overridden`], so `weft check` can say so.
//! 2. Otherwise HTTPRoutes attached to the Service (through `parentRefs`) give the routes, in
//!    Gateway API precedence order. A route's retry (or timeout) annotations replace the
//!    Service's retry (or timeout) annotations as a group; without any, the Service's apply.
//!    A route's `timeout.linkerd.io/*` annotation beats its `timeouts` field, which beats the
//!    Service's annotation.
//! 3. Otherwise one default route carries the Service's annotations.
//!
//! Every retry, including those configured by annotations, draws on the service's budget: the
//! profile's `retryBudget` when a profile has one (even a profile without routes), else
//! Linkerd's default of 20% plus 10 retries a second over 10 s. (Linkerd gives annotation
//! retries no budget at all.)
//!
//! Failure accrual comes from the Service's `balancer.linkerd.io/failure-accrual*` annotations
//! and applies to every port, whatever the routes came from (it is a property of the
//! endpoints, not of the routes); a bad value turns it off for the Service, as in Linkerd.
//!
//! A bad annotation value is an error naming the object and the annotation; the route is kept,
//! without the setting (a retry group with a bad value turns retries off for that object,
//! never on with guessed conditions).

mod references;
mod routes;

use crate::annotations::accrual::{
    failure_accrual_annotations, unused_accrual_annotations, FAILURE_ACCRUAL,
};
use crate::annotations::{
    retry_annotations, timeout_annotations, unknown_policy_annotations, Group, RetryAnnotations,
    StatusRange, TimeoutAnnotations, DEFAULT_RETRY_LIMIT, RETRY_ANNOTATIONS, TIMEOUT_ANNOTATIONS,
};
use crate::error::{ErrorClass, ModelError};
use crate::httproute::HttpRouteSpec;
use crate::object::{Object, Resource};
use crate::policy::{
    Backend, FailureAccrual, Override, Policies, PolicySource, RequestMatch, RetryBudget,
    RetryPolicy, Route, ServicePolicy, ServiceRef, Timeouts,
};
use crate::profile::ServiceProfileSpec;
use crate::service::{ServicePort, ServiceSpec};
use crate::split::TrafficSplitSpec;
use std::collections::BTreeMap;
use std::time::Duration;

/// The cluster's DNS domain unless told otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The request timeout of a ServiceProfile route that sets none (Linkerd's default).
pub const PROFILE_ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most retries of one request on a retryable ServiceProfile route. Linkerd caps these only
/// by the budget; Weft adds a per-request cap too (one retry model for both APIs), generous
/// enough that the budget stays the real limit.
pub const PROFILE_RETRY_LIMIT: u32 = 3;

/// Options for [`compile_with`].
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The cluster's DNS domain, for FQDNs (`cluster.local`).
    pub cluster_domain: String,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
        }
    }
}

/// Compiles objects into per-service policies, with the default options.
pub fn compile(objects: &[Object]) -> Policies {
    compile_with(objects, &CompileOptions::default())
}

/// Compiles objects into per-service policies.
///
/// When two objects have the same kind, namespace and name, the first one wins and the other
/// is reported. Errors and warnings are in [`Policies::errors`] and [`Policies::warnings`].
pub fn compile_with(objects: &[Object], options: &CompileOptions) -> Policies {
    let mut out = Policies::default();
    let index = Index::new(objects, options, &mut out);
    for (svc, spec) in index.services.values() {
        for port in &spec.ports {
            let policy = index.service_policy(svc, port);
            out.services.insert(policy.authority.clone(), policy);
        }
    }
    index.check_references(&mut out);
    out
}

/// A problem in `object` at `field`.
pub(crate) fn object_error(
    class: ErrorClass,
    object: &Object,
    field: &str,
    message: impl Into<String>,
) -> ModelError {
    ModelError::new(class, &object.source, message)
        .object(
            object.kind().name(),
            Some(object.namespace()),
            object.name(),
        )
        .field(field)
}

/// The retry and timeout annotations of one Service or HTTPRoute, compiled.
#[derive(Clone, Debug)]
pub(crate) struct PolicyAnnotations {
    /// `Present(None)` when the group is present but yields no retries (invalid, or limit 0).
    retry: Group<Option<RetryPolicy>>,
    timeouts: Group<TimeoutAnnotations>,
    /// The policy annotations present, for [`Override::annotations`].
    keys: Vec<String>,
    /// A Service's failure accrual (always `None` for HTTPRoutes).
    failure_accrual: Option<FailureAccrual>,
}

impl PolicyAnnotations {
    fn read(object: &Object, errors: &mut Vec<ModelError>, warnings: &mut Vec<ModelError>) -> Self {
        let annotations = &object.metadata.annotations;
        let field = |key: &str| format!("metadata.annotations[{key}]");
        let (retry, invalid_retry) = retry_annotations(annotations);
        for bad in &invalid_retry {
            errors.push(object_error(
                ErrorClass::Annotation,
                object,
                &field(bad.annotation),
                format!(
                    "{}; retries from this {}'s annotations are turned off (its routes are kept)",
                    bad.error,
                    object.kind()
                ),
            ));
        }
        let (timeouts, invalid_timeouts) = timeout_annotations(annotations);
        for bad in &invalid_timeouts {
            errors.push(object_error(
                ErrorClass::Annotation,
                object,
                &field(bad.annotation),
                format!(
                    "{}; this timeout is not applied (the routes are kept)",
                    bad.error
                ),
            ));
        }
        for key in unknown_policy_annotations(annotations) {
            warnings.push(object_error(
                ErrorClass::Annotation,
                object,
                &field(key),
                format!(
                    "unknown annotation, ignored: Linkerd's are {} and {}",
                    RETRY_ANNOTATIONS.join(", "),
                    TIMEOUT_ANNOTATIONS.join(", ")
                ),
            ));
        }
        let failure_accrual = Self::read_accrual(object, errors, warnings);
        let retry = match retry {
            Group::Absent => Group::Absent,
            Group::Present(_) if !invalid_retry.is_empty() => Group::Present(None),
            Group::Present(r) => Group::Present(retry_policy(&r)),
        };
        let keys = RETRY_ANNOTATIONS
            .iter()
            .chain(TIMEOUT_ANNOTATIONS.iter())
            .filter(|k| annotations.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        Self {
            retry,
            timeouts,
            keys,
            failure_accrual,
        }
    }

    /// The `balancer.linkerd.io/failure-accrual*` annotations: read on a Service, reported as
    /// unused anywhere else (Linkerd reads them on Services only).
    fn read_accrual(
        object: &Object,
        errors: &mut Vec<ModelError>,
        warnings: &mut Vec<ModelError>,
    ) -> Option<FailureAccrual> {
        let annotations = &object.metadata.annotations;
        let field = |key: &str| format!("metadata.annotations[{key}]");
        if !matches!(object.resource, Resource::Service(_)) {
            for key in annotations
                .keys()
                .filter(|k| k.starts_with("balancer.linkerd.io/"))
            {
                warnings.push(object_error(
                    ErrorClass::Annotation,
                    object,
                    &field(key),
                    format!(
                        "ignored: failure accrual is configured on the Service, not on {}s",
                        object.kind()
                    ),
                ));
            }
            return None;
        }
        let (accrual, invalid) = failure_accrual_annotations(annotations);
        for bad in &invalid {
            errors.push(object_error(
                ErrorClass::Annotation,
                object,
                &field(bad.annotation),
                format!(
                    "{}; failure accrual is turned off for this Service",
                    bad.error
                ),
            ));
        }
        for key in unused_accrual_annotations(annotations) {
            let message = if key.starts_with("balancer.linkerd.io/failure-accrual-consecutive-")
                && !annotations.contains_key(FAILURE_ACCRUAL)
            {
                format!("ignored: failure accrual is off without {FAILURE_ACCRUAL}: consecutive")
            } else {
                format!(
                    "unknown annotation, ignored: Linkerd's are {}",
                    crate::annotations::accrual::FAILURE_ACCRUAL_ANNOTATIONS.join(", ")
                )
            };
            warnings.push(object_error(
                ErrorClass::Annotation,
                object,
                &field(key),
                message,
            ));
        }
        accrual
    }
}

/// The retry policy of an annotation group: HTTP conditions default to 5xx when neither HTTP
/// nor gRPC conditions are given, and the limit to [`DEFAULT_RETRY_LIMIT`].
fn retry_policy(r: &RetryAnnotations) -> Option<RetryPolicy> {
    let limit = r.limit.unwrap_or(DEFAULT_RETRY_LIMIT);
    if limit == 0 {
        return None;
    }
    let http_statuses = match (&r.http, &r.grpc) {
        (Some(http), _) => http.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => vec![StatusRange::SERVER_ERRORS],
    };
    Some(RetryPolicy {
        http_statuses,
        grpc_codes: r.grpc.clone().unwrap_or_default(),
        limit,
        per_try_timeout: nonzero(r.timeout),
    })
}

/// A zero timeout means "no timeout", as in the Gateway API.
pub(crate) fn nonzero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

fn timeouts_of(t: Option<&TimeoutAnnotations>) -> Timeouts {
    Timeouts {
        request: nonzero(t.and_then(|t| t.request)),
        response: nonzero(t.and_then(|t| t.response)),
        idle: nonzero(t.and_then(|t| t.idle)),
    }
}

/// A map by namespace and name that can be read with borrowed strings of any lifetime (a
/// tuple key would need the lookup strings to live as long as the objects).
pub(crate) struct ByName<'a, V>(BTreeMap<&'a str, BTreeMap<&'a str, V>>);

impl<'a, V> ByName<'a, V> {
    fn new() -> Self {
        Self(BTreeMap::new())
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<&V> {
        self.0.get(namespace)?.get(name)
    }

    fn insert(&mut self, namespace: &'a str, name: &'a str, value: V) {
        self.0.entry(namespace).or_default().insert(name, value);
    }

    /// Values by namespace, then name.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.values().flat_map(BTreeMap::values)
    }
}

/// Objects by kind and name, with their annotations compiled once.
pub(crate) struct Index<'a> {
    domain: &'a str,
    services: ByName<'a, (&'a Object, &'a ServiceSpec)>,
    profiles: ByName<'a, (&'a Object, &'a ServiceProfileSpec)>,
    /// By namespace and apex Service.
    splits: ByName<'a, (&'a Object, &'a TrafficSplitSpec)>,
    routes: Vec<(&'a Object, &'a HttpRouteSpec)>,
    service_annotations: ByName<'a, PolicyAnnotations>,
    route_annotations: ByName<'a, PolicyAnnotations>,
}

impl<'a> Index<'a> {
    fn new(objects: &'a [Object], options: &'a CompileOptions, out: &mut Policies) -> Self {
        let mut index = Index {
            domain: &options.cluster_domain,
            services: ByName::new(),
            profiles: ByName::new(),
            splits: ByName::new(),
            routes: Vec::new(),
            service_annotations: ByName::new(),
            route_annotations: ByName::new(),
        };
        let mut seen: BTreeMap<(&str, &str, &str), &Object> = BTreeMap::new();
        for object in objects {
            let (ns, name) = (object.namespace(), object.name());
            let key = (object.kind().name(), ns, name);
            if let Some(first) = seen.get(&key) {
                out.errors.push(object_error(
                    ErrorClass::Reference,
                    object,
                    "",
                    format!(
                        "{} is defined twice (first at {}); this one is ignored",
                        object.describe(),
                        first.source
                    ),
                ));
                continue;
            }
            seen.insert(key, object);
            match &object.resource {
                Resource::Service(spec) => {
                    index.services.insert(ns, name, (object, spec));
                    let a = PolicyAnnotations::read(object, &mut out.errors, &mut out.warnings);
                    index.service_annotations.insert(ns, name, a);
                }
                Resource::HttpRoute(spec) => {
                    index.routes.push((object, spec));
                    let a = PolicyAnnotations::read(object, &mut out.errors, &mut out.warnings);
                    index.route_annotations.insert(ns, name, a);
                }
                Resource::ServiceProfile(spec) => index.profiles.insert(ns, name, (object, spec)),
                Resource::TrafficSplit(spec) => match index.splits.get(ns, &spec.service) {
                    Some((first, _)) => out.errors.push(object_error(
                        ErrorClass::Reference,
                        object,
                        "spec.service",
                        format!(
                            "Service {ns}/{} is already split by {}; this split is ignored",
                            spec.service,
                            first.describe()
                        ),
                    )),
                    None => index.splits.insert(ns, &spec.service, (object, spec)),
                },
                Resource::ExternalWorkload(_) | Resource::Link(_) => {}
            }
        }
        index
    }

    fn annotations_of(&self, object: &Object) -> Option<&PolicyAnnotations> {
        let by_name = match object.resource {
            Resource::Service(_) => &self.service_annotations,
            Resource::HttpRoute(_) => &self.route_annotations,
            _ => return None,
        };
        by_name.get(object.namespace(), object.name())
    }

    /// `<name>.<namespace>.svc.<domain>`.
    pub(crate) fn fqdn(&self, namespace: &str, name: &str) -> String {
        format!("{name}.{namespace}.svc.{}", self.domain)
    }

    /// A backend for a Service port in the cluster.
    pub(crate) fn backend(&self, namespace: &str, name: &str, port: u16, weight: u32) -> Backend {
        Backend {
            authority: format!("{}:{port}", self.fqdn(namespace, name)),
            service: Some(ServiceRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port,
            }),
            weight,
        }
    }

    fn service_policy(&self, svc: &Object, port: &ServicePort) -> ServicePolicy {
        let (ns, name) = (svc.namespace(), svc.name());
        let fqdn = self.fqdn(ns, name);
        let profile = self.profiles.get(ns, &fqdn);
        let split = self.splits.get(ns, name);
        let attached: Vec<_> = self
            .routes
            .iter()
            .filter(|(route, spec)| routes::attaches(route, spec, svc, port))
            .collect();
        let service_annotations = self.annotations_of(svc);
        let retry_budget = profile
            .and_then(|(_, p)| p.retry_budget.as_ref())
            .map(|b| RetryBudget {
                retry_ratio: b.retry_ratio,
                min_retries_per_second: b.min_retries_per_second,
                ttl: b.ttl,
            })
            .unwrap_or_default();
        let self_backend = self.backend(ns, name, port.port, 1_000);
        let mut policy = ServicePolicy {
            authority: format!("{fqdn}:{}", port.port),
            namespace: ns.to_string(),
            name: name.to_string(),
            port: port.port,
            source: PolicySource::Default,
            routes: Vec::new(),
            backends: vec![self_backend],
            retry_budget,
            failure_accrual: service_annotations.and_then(|a| a.failure_accrual.clone()),
            overridden: Vec::new(),
        };

        let profile_wins = profile.filter(|(_, p)| p.overrides_routes());
        let winner = match (profile_wins, split) {
            (Some((p, _)), _) => Some(p.describe()),
            (None, Some((s, _))) => Some(s.describe()),
            (None, None) => None,
        };
        if let Some(by) = winner {
            policy.source = PolicySource::ServiceProfile;
            for (route, _) in &attached {
                policy.overridden.push(Override {
                    by: by.clone(),
                    ignored: route.describe(),
                    annotations: self
                        .annotations_of(route)
                        .map(|a| a.keys.clone())
                        .unwrap_or_default(),
                });
            }
            if let Some(a) = service_annotations.filter(|a| !a.keys.is_empty()) {
                policy.overridden.push(Override {
                    by: by.clone(),
                    ignored: format!("{} annotations", svc.describe()),
                    annotations: a.keys.clone(),
                });
            }
            if let Some((p, spec)) = profile_wins {
                policy.routes = routes::profile_routes(p, spec);
            }
            policy.routes.push(Route {
                name: "default".to_string(),
                origin: "default".to_string(),
                condition: RequestMatch::All(Vec::new()),
                retry: None,
                timeouts: Timeouts::default(),
                response_classes: Vec::new(),
                backends: Vec::new(),
            });
            match (split, profile_wins) {
                (Some((s, spec)), profile) => {
                    policy.backends = spec
                        .backends
                        .iter()
                        .map(|b| self.backend(s.namespace(), &b.service, port.port, b.weight))
                        .collect();
                    if let Some((p, _)) = profile.filter(|(_, p)| !p.dst_overrides.is_empty()) {
                        policy.overridden.push(Override {
                            by: s.describe(),
                            ignored: format!("{} dstOverrides", p.describe()),
                            annotations: Vec::new(),
                        });
                    }
                }
                (None, Some((_, spec))) if !spec.dst_overrides.is_empty() => {
                    policy.backends = routes::dst_overrides(self, spec, port.port);
                }
                _ => {}
            }
            return policy;
        }

        if attached.is_empty() {
            let retry = service_annotations.and_then(|a| a.retry.present().cloned().flatten());
            let timeouts = timeouts_of(service_annotations.and_then(|a| a.timeouts.present()));
            policy.routes.push(Route {
                name: "default".to_string(),
                origin: svc.describe(),
                condition: RequestMatch::All(Vec::new()),
                retry,
                timeouts,
                response_classes: Vec::new(),
                backends: Vec::new(),
            });
            return policy;
        }

        policy.source = PolicySource::HttpRoute;
        let defaults = routes::Defaults {
            retry: service_annotations.and_then(|a| a.retry.present().cloned().flatten()),
            timeouts: service_annotations.and_then(|a| a.timeouts.present().cloned()),
        };
        let mut entries = Vec::new();
        for (route, spec) in &attached {
            let annotations = self.annotations_of(route);
            routes::http_routes(
                self,
                route,
                spec,
                annotations,
                &defaults,
                port.port,
                &mut entries,
            );
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        policy.routes = entries.into_iter().map(|(_, r)| r).collect();
        policy
    }
}

impl PolicyAnnotations {
    /// The route-level retry: the route's own group if present, else the defaults.
    pub(crate) fn retry_or(&self, default: &Option<RetryPolicy>) -> Option<RetryPolicy> {
        match &self.retry {
            Group::Present(r) => r.clone(),
            Group::Absent => default.clone(),
        }
    }

    /// The route's timeout group, if present.
    pub(crate) fn timeouts(&self) -> Option<&TimeoutAnnotations> {
        self.timeouts.present()
    }
}
