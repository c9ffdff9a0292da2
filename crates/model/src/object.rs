//! A parsed object: where it came from, its metadata, and its typed spec.

use crate::error::Source;
use crate::httproute::HttpRouteSpec;
use crate::link::LinkSpec;
use crate::meta::ObjectMeta;
use crate::profile::ServiceProfileSpec;
use crate::service::{ExternalWorkloadSpec, ServiceSpec};
use crate::split::TrafficSplitSpec;
use std::fmt;

/// A valid object read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Where it was read from.
    pub source: Source,
    /// Its `apiVersion`, as written (e.g. `gateway.networking.k8s.io/v1beta1`).
    pub api_version: String,
    /// Its metadata.
    pub metadata: ObjectMeta,
    /// Its typed spec.
    pub resource: Resource,
}

/// The kinds Weft reads, with their specs.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// `v1 Service`.
    Service(ServiceSpec),
    /// `workload.linkerd.io ExternalWorkload`.
    ExternalWorkload(ExternalWorkloadSpec),
    /// `linkerd.io ServiceProfile`.
    ServiceProfile(ServiceProfileSpec),
    /// `gateway.networking.k8s.io HTTPRoute` (or `policy.linkerd.io HTTPRoute`).
    HttpRoute(HttpRouteSpec),
    /// `split.smi-spec.io TrafficSplit`.
    TrafficSplit(TrafficSplitSpec),
    /// `multicluster.linkerd.io Link`.
    Link(Box<LinkSpec>),
}

/// The kinds Weft reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1 Service`.
    Service,
    /// `workload.linkerd.io ExternalWorkload`.
    ExternalWorkload,
    /// `linkerd.io ServiceProfile`.
    ServiceProfile,
    /// `gateway.networking.k8s.io HTTPRoute`.
    HttpRoute,
    /// `split.smi-spec.io TrafficSplit`.
    TrafficSplit,
    /// `multicluster.linkerd.io Link`.
    Link,
}

impl Kind {
    /// Every kind, in the order they are listed in messages.
    pub const ALL: [Kind; 6] = [
        Kind::Service,
        Kind::ExternalWorkload,
        Kind::ServiceProfile,
        Kind::HttpRoute,
        Kind::TrafficSplit,
        Kind::Link,
    ];

    /// The kind as manifests write it (`HTTPRoute`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::ExternalWorkload => "ExternalWorkload",
            Kind::ServiceProfile => "ServiceProfile",
            Kind::HttpRoute => "HTTPRoute",
            Kind::TrafficSplit => "TrafficSplit",
            Kind::Link => "Link",
        }
    }

    /// The `apiVersion`s read for this kind.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Service => &["v1"],
            Kind::ExternalWorkload => &[
                "workload.linkerd.io/v1beta1",
                "workload.linkerd.io/v1alpha1",
            ],
            Kind::ServiceProfile => &["linkerd.io/v1alpha2", "linkerd.io/v1alpha1"],
            Kind::HttpRoute => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1beta1",
                "gateway.networking.k8s.io/v1alpha2",
                "policy.linkerd.io/v1beta3",
                "policy.linkerd.io/v1beta2",
                "policy.linkerd.io/v1beta1",
            ],
            Kind::TrafficSplit => &["split.smi-spec.io/v1alpha2", "split.smi-spec.io/v1alpha1"],
            Kind::Link => &[
                "multicluster.linkerd.io/v1alpha1",
                "multicluster.linkerd.io/v1alpha2",
                "multicluster.linkerd.io/v1alpha3",
            ],
        }
    }

    /// The kind of an object with this `apiVersion` and `kind`, or why it is not read.
    pub fn resolve(api_version: &str, kind: &str) -> Result<Kind, String> {
        let Some(found) = Kind::ALL.into_iter().find(|k| k.name() == kind) else {
            let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
            return Err(format!(
                "kind {kind} ({api_version}) is not read by Weft; it reads {} and List",
                names.join(", ")
            ));
        };
        if found.api_versions().contains(&api_version) {
            Ok(found)
        } else {
            Err(format!(
                "apiVersion {api_version} is not supported for {kind} (supported: {})",
                found.api_versions().join(", ")
            ))
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Resource {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Service(_) => Kind::Service,
            Resource::ExternalWorkload(_) => Kind::ExternalWorkload,
            Resource::ServiceProfile(_) => Kind::ServiceProfile,
            Resource::HttpRoute(_) => Kind::HttpRoute,
            Resource::TrafficSplit(_) => Kind::TrafficSplit,
            Resource::Link(_) => Kind::Link,
        }
    }
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        self.resource.kind()
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The object's namespace (`default` when the manifest names none).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace()
    }

    /// `Kind namespace/name`, as messages name objects: `TrafficSplit emojivoto/web-split`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind(), self.namespace(), self.name())
    }
}
