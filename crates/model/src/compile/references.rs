//! Warnings about references that lead nowhere (Services that do not exist, ports a Service
//! does not have, client-side profiles and consumer routes Weft does not support yet) and about
//! HTTPRoute features Weft does not apply. Each is reported once per object, not per port.

use super::{object_error, Index};
use crate::error::ErrorClass;
use crate::object::Object;
use crate::policy::Policies;

impl Index<'_> {
    fn service_exists(&self, namespace: &str, name: &str) -> bool {
        self.services.get(namespace, name).is_some()
    }

    fn warn(out: &mut Policies, class: ErrorClass, object: &Object, field: &str, message: String) {
        out.warnings
            .push(object_error(class, object, field, message));
    }

    /// Adds the warnings to `out`.
    pub(super) fn check_references(&self, out: &mut Policies) {
        self.check_routes(out);
        for (split, spec) in self.splits.values() {
            let ns = split.namespace();
            if !self.service_exists(ns, &spec.service) {
                Self::warn(
                    out,
                    ErrorClass::Reference,
                    split,
                    "spec.service",
                    format!(
                        "Service {ns}/{} does not exist (yet): the split applies to nothing until it does",
                        spec.service
                    ),
                );
            }
            for (i, b) in spec.backends.iter().enumerate() {
                if !self.service_exists(ns, &b.service) {
                    Self::warn(
                        out,
                        ErrorClass::Reference,
                        split,
                        &format!("spec.backends[{i}].service"),
                        format!(
                            "Service {ns}/{} does not exist (yet): requests given to it fail until it does",
                            b.service
                        ),
                    );
                }
            }
        }
        let suffix = format!(".svc.{}", self.domain);
        for (profile, _) in self.profiles.values() {
            let Some((name, ns)) = profile
                .name()
                .strip_suffix(&suffix)
                .and_then(|rest| rest.split_once('.'))
            else {
                continue;
            };
            if ns != profile.namespace() {
                Self::warn(
                    out,
                    ErrorClass::Unsupported,
                    profile,
                    "metadata.namespace",
                    format!(
                        "client-side ServiceProfiles (for a Service in namespace {ns}) are not supported yet; put the profile in namespace {ns}"
                    ),
                );
            } else if !self.service_exists(ns, name) {
                Self::warn(
                    out,
                    ErrorClass::Reference,
                    profile,
                    "metadata.name",
                    format!("Service {ns}/{name} does not exist (yet): the profile applies to nothing until it does"),
                );
            }
        }
    }

    fn check_routes(&self, out: &mut Policies) {
        for (route, spec) in &self.routes {
            let route_ns = route.namespace();
            for (i, parent) in spec.parent_refs.iter().enumerate() {
                if !parent.is_service() {
                    continue;
                }
                let field = format!("spec.parentRefs[{i}]");
                let ns = parent.namespace.as_deref().unwrap_or(route_ns);
                if ns != route_ns {
                    Self::warn(
                        out,
                        ErrorClass::Unsupported,
                        route,
                        &field,
                        format!("routes for a Service in another namespace ({ns}) are not supported yet; this parent is ignored"),
                    );
                    continue;
                }
                let Some((_, svc)) = self.services.get(ns, &parent.name) else {
                    Self::warn(
                        out,
                        ErrorClass::Reference,
                        route,
                        &field,
                        format!(
                            "Service {ns}/{} does not exist (yet): the route applies to nothing until it does",
                            parent.name
                        ),
                    );
                    continue;
                };
                let missing_port = match (parent.port, &parent.section_name) {
                    (Some(port), _) => svc.port(port).is_none().then(|| port.to_string()),
                    (None, Some(section)) => (!svc
                        .ports
                        .iter()
                        .any(|p| p.name.as_deref() == Some(section.as_str())))
                    .then(|| format!("{section:?}")),
                    (None, None) => None,
                };
                if let Some(port) = missing_port {
                    Self::warn(
                        out,
                        ErrorClass::Reference,
                        route,
                        &field,
                        format!(
                            "Service {ns}/{} has no port {port}: the route applies to nothing",
                            parent.name
                        ),
                    );
                }
            }
            for (i, rule) in spec.rules.iter().enumerate() {
                for (j, filter) in rule.filters.iter().enumerate() {
                    Self::warn(
                        out,
                        ErrorClass::Unsupported,
                        route,
                        &format!("spec.rules[{i}].filters[{j}]"),
                        format!(
                            "{} filters are not applied by Weft yet; the rest of the rule is",
                            filter.filter_type
                        ),
                    );
                }
                for (j, backend) in rule.backend_refs.iter().enumerate() {
                    let field = format!("spec.rules[{i}].backendRefs[{j}]");
                    if !backend.is_service() {
                        Self::warn(
                            out,
                            ErrorClass::Unsupported,
                            route,
                            &field,
                            format!(
                                "backends of kind {} are not supported; this backend is skipped",
                                backend.kind.as_deref().unwrap_or("Service")
                            ),
                        );
                        continue;
                    }
                    if !backend.filters.is_empty() {
                        Self::warn(
                            out,
                            ErrorClass::Unsupported,
                            route,
                            &format!("{field}.filters"),
                            "backend filters are not applied by Weft yet".to_string(),
                        );
                    }
                    let ns = backend.namespace.as_deref().unwrap_or(route_ns);
                    if !self.service_exists(ns, &backend.name) {
                        Self::warn(
                            out,
                            ErrorClass::Reference,
                            route,
                            &field,
                            format!(
                                "Service {ns}/{} does not exist (yet): requests sent to it fail until it does",
                                backend.name
                            ),
                        );
                    }
                }
            }
        }
    }
}
