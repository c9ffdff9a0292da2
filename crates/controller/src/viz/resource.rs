//! Resources as `weft viz` names them (`deploy/web`, `po/web-0`, `ns/emojivoto`,
//! `svc/web-svc`, with Linkerd's aliases), and the workloads each one stands for in a store
//! snapshot.
//!
//! In the local mesh every workload is an ExternalWorkload: a deployment is the workloads
//! labelled `weft.io/deployment: <name>`, a pod is one workload, a namespace is every workload
//! in it, and a service is the workloads its selector selects.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use weft_model::meta::InjectMode;
use weft_model::{Kind, Object, Resource as ModelResource};
use weft_store::Snapshot;

use crate::destination::endpoints::DEPLOYMENT_LABEL;

/// A workload proxy's admin port unless annotated otherwise.
pub const DEFAULT_ADMIN_PORT: u16 = 4191;
/// A workload proxy's tap port.
pub const DEFAULT_TAP_PORT: u16 = 4190;
/// Annotation naming a workload proxy's admin port (Linkerd's).
pub const PROXY_ADMIN_PORT: &str = "config.linkerd.io/proxy-admin-port";
/// Annotation naming a workload proxy's tap port (Weft's; Linkerd's tap port is fixed).
pub const PROXY_TAP_PORT: &str = "weft.io/proxy-tap-port";

/// The kinds `weft viz` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// Workloads sharing a `weft.io/deployment` label.
    Deployment,
    /// One workload.
    Pod,
    /// Every workload of a namespace.
    Namespace,
    /// The workloads a Service selects.
    Service,
}

impl ResourceKind {
    /// Reads a kind or one of its aliases (`deploy`, `po`, `ns`, `svc`, plurals).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" | "deploys" => Self::Deployment,
            "pod" | "pods" | "po" => Self::Pod,
            "namespace" | "namespaces" | "ns" => Self::Namespace,
            "service" | "services" | "svc" => Self::Service,
            _ => return None,
        })
    }

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::Pod => "pod",
            Self::Namespace => "namespace",
            Self::Service => "service",
        }
    }

    /// The `dst_*` label that names a destination of this kind in outbound metrics.
    pub fn dst_label(self) -> &'static str {
        match self {
            Self::Deployment => "dst_deployment",
            Self::Pod => "dst_pod",
            Self::Namespace => "dst_namespace",
            Self::Service => "dst_service",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `KIND` or `KIND/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRef {
    /// The kind.
    pub kind: ResourceKind,
    /// The name; every resource of the kind when absent.
    pub name: Option<String>,
}

/// What `KIND[/NAME]` accepts, for messages.
pub const KINDS_HELP: &str =
    "expected KIND or KIND/NAME with KIND one of deployment (deploy), pod (po), namespace (ns), service (svc)";

impl ResourceRef {
    /// Parses `deploy/web` or `deploy`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n.trim())),
            None => (s, None),
        };
        let kind = ResourceKind::parse(kind).ok_or_else(|| format!("{s:?}: {KINDS_HELP}"))?;
        let name = match name {
            Some("") => return Err(format!("{s:?}: the name after '/' is empty")),
            Some(n) if n.contains('/') => return Err(format!("{s:?}: {KINDS_HELP}")),
            Some(n) => Some(n.to_owned()),
            None => None,
        };
        Ok(Self { kind, name })
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{n}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// A workload, as the viz component needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its deployment, if labelled.
    pub deployment: Option<String>,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// Its proxy's identity; `None` when it has no proxy (`linkerd.io/inject: disabled`).
    pub identity: Option<String>,
    /// Its proxy's admin address.
    pub admin: Option<SocketAddr>,
    /// Its proxy's tap address.
    pub tap: Option<SocketAddr>,
    /// Its labels (for Service selectors).
    pub labels: BTreeMap<String, String>,
}

impl Workload {
    /// The workload an ExternalWorkload describes.
    pub fn from_object(object: &Object) -> Option<Self> {
        let ModelResource::ExternalWorkload(spec) = &object.resource else {
            return None;
        };
        let meta = &object.metadata;
        let meshed = !matches!(meta.inject(), Ok(Some(InjectMode::Disabled)));
        let ips: Vec<IpAddr> = spec.workload_ips.iter().map(|w| w.ip).collect();
        let port = |annotation: &str, default: u16| {
            meta.annotation(annotation)
                .and_then(|v| v.trim().parse::<u16>().ok())
                .filter(|p| *p > 0)
                .unwrap_or(default)
        };
        let first = ips.first().copied().filter(|_| meshed);
        Some(Self {
            namespace: object.namespace().to_owned(),
            name: object.name().to_owned(),
            deployment: meta.label(DEPLOYMENT_LABEL).map(str::to_owned),
            identity: meshed.then(|| spec.mesh_tls.identity.clone()),
            admin: first.map(|ip| SocketAddr::new(ip, port(PROXY_ADMIN_PORT, DEFAULT_ADMIN_PORT))),
            tap: first.map(|ip| SocketAddr::new(ip, port(PROXY_TAP_PORT, DEFAULT_TAP_PORT))),
            ips,
            labels: meta.labels.clone(),
        })
    }

    /// Whether it runs a proxy.
    pub fn meshed(&self) -> bool {
        self.identity.is_some()
    }

    /// Its (namespace, name).
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }
}

/// Every workload in a snapshot, in namespace and name order.
pub fn workloads(snapshot: &Snapshot) -> Vec<Workload> {
    snapshot
        .objects(Kind::ExternalWorkload)
        .values()
        .filter_map(|o| Workload::from_object(o))
        .collect()
}

/// One resource and its workloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Its kind.
    pub kind: ResourceKind,
    /// Its namespace (for a namespace: itself).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its workloads.
    pub workloads: Vec<Workload>,
}

impl Resolved {
    /// The workloads' IPs.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.workloads.iter().flat_map(|w| w.ips.iter().copied())
    }
}

/// Why a resource could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The resources `r` names in `namespace` (for namespaces, `namespace` is not used), each
/// with its workloads, sorted by name. A named resource that does not exist is an error.
pub fn resolve(
    snapshot: &Snapshot,
    r: &ResourceRef,
    namespace: &str,
) -> Result<Vec<Resolved>, NotFound> {
    let all = workloads(snapshot);
    let mut out: BTreeMap<(String, String), Vec<Workload>> = BTreeMap::new();
    match r.kind {
        ResourceKind::Deployment => {
            for w in all.iter().filter(|w| w.namespace == namespace) {
                if let Some(d) = &w.deployment {
                    out.entry((namespace.to_owned(), d.clone()))
                        .or_default()
                        .push(w.clone());
                }
            }
        }
        ResourceKind::Pod => {
            for w in all.iter().filter(|w| w.namespace == namespace) {
                out.insert(w.key(), vec![w.clone()]);
            }
        }
        ResourceKind::Namespace => {
            for w in &all {
                out.entry((w.namespace.clone(), w.namespace.clone()))
                    .or_default()
                    .push(w.clone());
            }
            for svc in snapshot.objects(Kind::Service).values() {
                let ns = svc.namespace().to_owned();
                out.entry((ns.clone(), ns)).or_default();
            }
        }
        ResourceKind::Service => {
            for svc in snapshot.objects(Kind::Service).values() {
                if svc.namespace() != namespace {
                    continue;
                }
                let ModelResource::Service(spec) = &svc.resource else {
                    continue;
                };
                let selected = all
                    .iter()
                    .filter(|w| w.namespace == namespace && spec.selects(&w.labels))
                    .cloned()
                    .collect();
                out.insert((namespace.to_owned(), svc.name().to_owned()), selected);
            }
        }
    }
    let resolved: Vec<Resolved> = out
        .into_iter()
        .filter(|((_, name), _)| r.name.as_ref().is_none_or(|n| n == name))
        .map(|((ns, name), workloads)| Resolved {
            kind: r.kind,
            namespace: ns,
            name,
            workloads,
        })
        .collect();
    if let (Some(name), true) = (&r.name, resolved.is_empty()) {
        return Err(NotFound(match r.kind {
            ResourceKind::Namespace => format!("namespace {name:?} has no workloads or services"),
            kind => format!("{kind} {name:?} not found in namespace {namespace:?}"),
        }));
    }
    Ok(resolved)
}

/// The services (namespace, name) that select any of `workloads`.
pub fn services_of(snapshot: &Snapshot, workloads: &[Workload]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in snapshot.objects(Kind::Service).values() {
        let ModelResource::Service(spec) = &svc.resource else {
            continue;
        };
        if workloads
            .iter()
            .any(|w| w.namespace == svc.namespace() && spec.selects(&w.labels))
        {
            out.push((svc.namespace().to_owned(), svc.name().to_owned()));
        }
    }
    out
}

/// The (service, namespace) an outbound authority names: `web-svc.emojivoto.svc.cluster.local:80`
/// and `web-svc.emojivoto:80` name `web-svc` in `emojivoto`.
pub fn service_of_authority(authority: &str) -> Option<(&str, &str)> {
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let mut labels = host.split('.');
    let svc = labels.next().filter(|s| !s.is_empty())?;
    let ns = labels.next().filter(|s| !s.is_empty())?;
    Some((svc, ns))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_aliases() {
        for (s, k) in [
            ("deploy/web", ResourceKind::Deployment),
            ("deployments/web", ResourceKind::Deployment),
            ("po/web-0", ResourceKind::Pod),
            ("ns/emojivoto", ResourceKind::Namespace),
            ("svc/web-svc", ResourceKind::Service),
            ("Service/web-svc", ResourceKind::Service),
        ] {
            assert_eq!(ResourceRef::parse(s).unwrap().kind, k, "{s}");
        }
        assert_eq!(ResourceRef::parse("deploy").unwrap().name, None);
        for bad in ["", "cronjob/x", "deploy/", "deploy/a/b"] {
            assert!(ResourceRef::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ResourceRef::parse("deploy/web").unwrap().to_string(),
            "deployment/web"
        );
    }

    #[test]
    fn authorities_name_services() {
        assert_eq!(
            service_of_authority("web-svc.emojivoto.svc.cluster.local:80"),
            Some(("web-svc", "emojivoto"))
        );
        assert_eq!(
            service_of_authority("web-svc.emojivoto:80"),
            Some(("web-svc", "emojivoto"))
        );
        assert_eq!(service_of_authority("web-svc:80"), None);
        assert_eq!(
            service_of_authority("127.0.0.1:80").map(|s| s.0),
            Some("127")
        );
    }
}
