//! Endpoints of every Service port, derived from Services and the ExternalWorkloads they
//! select, as the protobuf proxies receive.
//!
//! - A Service selects the ExternalWorkloads of its namespace whose labels include all of its
//!   `selector` (an empty selector selects none: such a Service exists with no endpoints).
//! - Each selected workload gives one endpoint per `workloadIPs` entry, on the port's target
//!   port: `targetPort` as a number, or the workload port with that name (a workload without
//!   a port of that name is not an endpoint of that Service port, as in Kubernetes), or the
//!   Service port itself when `targetPort` is absent.
//! - **Meshed**: every ExternalWorkload names its proxy's identity (`spec.meshTLS.identity`,
//!   required), so it is meshed unless annotated `linkerd.io/inject: disabled`. A meshed
//!   endpoint carries `proxy { identity, inbound_addr = <ip>:<inbound port> }`, the inbound
//!   port being `config.linkerd.io/proxy-inbound-port` (Linkerd's annotation) or 4143.
//! - **Protocol hint**: `opaque` when the Service's `config.linkerd.io/opaque-ports` lists the
//!   Service port, the workload's lists the target port, or `appProtocol` is
//!   `linkerd.io/opaque`; else `http` for meshed endpoints (the peer proxy accepts HTTP/2
//!   from proxies) and for HTTP `appProtocol`s; else unknown.
//! - **Metric labels**: the set carries `namespace` and `service`; each endpoint `pod` and
//!   `external_workload` (the workload's name), `serviceaccount` when the identity names one
//!   (`<sa>.<ns>.serviceaccount.identity.…` or `spiffe://…/ns/<ns>/sa/<sa>`), and
//!   `deployment` from the workload's `weft.io/deployment` label when present.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use weft_api::destination as pb;
use weft_model::meta::{InjectMode, PortRange};
use weft_model::service::{ExternalWorkloadSpec, ServicePort, ServiceSpec};
use weft_model::{Kind, Object, Resource};
use weft_store::{ByName, Snapshot};

use super::authority::ServiceAuthority;

/// The port of a peer proxy's inbound listener unless annotated otherwise.
pub const DEFAULT_INBOUND_PORT: u16 = 4143;

/// The weight of every endpoint (the proto's default).
pub const DEFAULT_WEIGHT: u32 = 10_000;

/// Annotation naming a workload proxy's inbound port (Linkerd's).
pub const PROXY_INBOUND_PORT: &str = "config.linkerd.io/proxy-inbound-port";

/// Label naming the deployment a workload belongs to, for the `deployment` metric label.
pub const DEPLOYMENT_LABEL: &str = "weft.io/deployment";

/// `appProtocol` values that mean HTTP (any version).
const HTTP_APP_PROTOCOLS: &[&str] = &[
    "http",
    "http2",
    "h2c",
    "grpc",
    "kubernetes.io/h2c",
    "kubernetes.io/ws",
];

/// `appProtocol` that means opaque TCP.
const OPAQUE_APP_PROTOCOL: &str = "linkerd.io/opaque";

/// The endpoints of one Service port.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSet {
    /// Labels every endpoint shares (`namespace`, `service`).
    pub labels: HashMap<String, String>,
    /// The endpoints, by `addr`.
    pub endpoints: BTreeMap<String, pb::Endpoint>,
}

/// The endpoint sets of every Service port, by canonical authority. A Service port that
/// exists has an entry (maybe empty); one that does not exist has none.
pub type EndpointIndex = HashMap<String, Arc<EndpointSet>>;

/// Most Services one change may affect before [`update`] rebuilds everything instead: each
/// affected Service scans the workloads of its namespace, a full build indexes them once.
const MAX_INCREMENTAL_SERVICES: usize = 32;

/// Endpoint sets, and what each Service contributed to them, so that one Service can be
/// rebuilt alone.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// The sets, by canonical authority.
    pub sets: EndpointIndex,
    /// By Service (namespace, name): its authorities and the problems found building them.
    services: BTreeMap<(String, String), Arc<ServiceEntry>>,
}

/// What one Service contributed to [`Endpoints`].
#[derive(Debug, Default)]
struct ServiceEntry {
    authorities: Vec<String>,
    /// The names of the workloads it selects (in its namespace), in name order.
    workloads: BTreeSet<String>,
    problems: Vec<String>,
}

/// Why a Service's endpoints must be rebuilt.
#[derive(Debug)]
enum Affected {
    /// The Service itself changed (selector, ports, annotations), appeared or went away: its
    /// workloads are selected again.
    Service,
    /// Only these workloads of its namespace changed (before or after, the Service selects
    /// them).
    Workloads(BTreeSet<String>),
}

impl Endpoints {
    /// Problems (bad annotations) found building the sets, as log lines, each once.
    pub fn problems(&self) -> Vec<String> {
        let all: std::collections::BTreeSet<&String> = self
            .services
            .values()
            .flat_map(|e| e.problems.iter())
            .collect();
        all.into_iter().cloned().collect()
    }

    /// How many endpoints there are, over every Service port.
    pub fn count(&self) -> usize {
        self.sets.values().map(|s| s.endpoints.len()).sum()
    }
}

/// Builds the endpoints of `snapshot` from scratch. Sets equal to those in `previous` are
/// shared with it (the same `Arc`), so watchers can skip unchanged services by pointer.
pub fn build(
    snapshot: &Snapshot,
    cluster_domain: &str,
    previous: Option<&EndpointIndex>,
) -> Endpoints {
    let workloads = WorkloadIndex::new(snapshot);
    let mut out = Endpoints::default();
    for (key, svc) in snapshot.objects(Kind::Service).iter() {
        let Resource::Service(spec) = &svc.resource else {
            continue;
        };
        let selected = workloads.selected_by(svc.namespace(), spec);
        let entry = service_sets(svc, spec, selected, cluster_domain, previous, &mut out.sets);
        out.services.insert(key.clone(), Arc::new(entry));
    }
    out
}

/// The endpoints of `new`, given those of `old`: only the Services the change affects (changed
/// themselves, or selecting a workload that changed, before or after) are rebuilt; the rest
/// is shared. Falls back to [`build`] when a change affects many Services.
pub fn update(prev: &Endpoints, old: &Snapshot, new: &Snapshot, cluster_domain: &str) -> Endpoints {
    let Some(affected) = affected_services(old, new) else {
        return build(new, cluster_domain, Some(&prev.sets));
    };
    let mut out = prev.clone();
    for (key, why) in affected {
        let previous = out.services.remove(&key);
        if let Some(entry) = &previous {
            for a in &entry.authorities {
                out.sets.remove(a);
            }
        }
        let Some(svc) = new.get(Kind::Service, &key.0, &key.1) else {
            continue;
        };
        let Resource::Service(spec) = &svc.resource else {
            continue;
        };
        let workloads = new.objects(Kind::ExternalWorkload);
        let selected: Vec<&Object> = match (why, previous) {
            // The selection changes only by the workloads that changed: no namespace scan.
            (Affected::Workloads(changed), Some(entry)) => {
                let mut names: BTreeSet<&str> = entry
                    .workloads
                    .iter()
                    .filter(|n| !changed.contains(*n))
                    .map(String::as_str)
                    .collect();
                for name in &changed {
                    let now = new.get(Kind::ExternalWorkload, &key.0, name);
                    if now.is_some_and(|w| spec.selects(&w.metadata.labels)) {
                        names.insert(name);
                    }
                }
                names
                    .into_iter()
                    .filter_map(|n| workloads.get(&(key.0.clone(), n.to_string())))
                    .map(|w| w.as_ref())
                    .collect()
            }
            _ if spec.selector.is_empty() => Vec::new(),
            _ => in_namespace(workloads, &key.0)
                .filter(|w| spec.selects(&w.metadata.labels))
                .collect(),
        };
        let entry = service_sets(
            svc,
            spec,
            selected,
            cluster_domain,
            Some(&prev.sets),
            &mut out.sets,
        );
        out.services.insert(key, Arc::new(entry));
    }
    out
}

/// The Services whose endpoints may differ between `old` and `new`, and why; `None` when
/// there are more than [`MAX_INCREMENTAL_SERVICES`].
fn affected_services(
    old: &Snapshot,
    new: &Snapshot,
) -> Option<BTreeMap<(String, String), Affected>> {
    let mut out: BTreeMap<(String, String), Affected> = BTreeMap::new();
    for change in new.changes_since(old) {
        let key = change.key();
        match key.kind {
            Kind::Service => {
                out.insert((key.namespace, key.name), Affected::Service);
            }
            Kind::ExternalWorkload => {
                let before = old.get(Kind::ExternalWorkload, &key.namespace, &key.name);
                let after = new.get(Kind::ExternalWorkload, &key.namespace, &key.name);
                for (svc_key, svc) in in_namespace_keyed(new.objects(Kind::Service), &key.namespace)
                {
                    let Resource::Service(spec) = &svc.resource else {
                        continue;
                    };
                    let selects = |w: Option<&Arc<Object>>| {
                        w.is_some_and(|w| spec.selects(&w.metadata.labels))
                    };
                    if !(selects(before) || selects(after)) {
                        continue;
                    }
                    let why = out
                        .entry(svc_key.clone())
                        .or_insert_with(|| Affected::Workloads(BTreeSet::new()));
                    if let Affected::Workloads(names) = why {
                        names.insert(key.name.clone());
                    }
                }
            }
            _ => {}
        }
        if out.len() > MAX_INCREMENTAL_SERVICES {
            return None;
        }
    }
    Some(out)
}

/// The objects of one namespace, with their keys.
fn in_namespace_keyed<'a>(
    map: &'a ByName,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a (String, String), &'a Arc<Object>)> + 'a {
    map.range((namespace.to_string(), String::new())..)
        .take_while(move |((ns, _), _)| ns == namespace)
}

/// The objects of one namespace.
fn in_namespace<'a>(map: &'a ByName, namespace: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
    in_namespace_keyed(map, namespace).map(|(_, o)| o.as_ref())
}

/// Adds the sets of every port of `svc` to `sets`; returns what it added.
fn service_sets(
    svc: &Object,
    spec: &ServiceSpec,
    selected: Vec<&Object>,
    cluster_domain: &str,
    previous: Option<&EndpointIndex>,
    sets: &mut EndpointIndex,
) -> ServiceEntry {
    let mut problems = Vec::new();
    let service_opaque = opaque_ports(svc, &mut problems);
    let workloads = selected.iter().map(|w| w.name().to_string()).collect();
    let infos: Vec<Workload<'_>> = selected
        .into_iter()
        .filter_map(|w| Workload::new(w, &mut problems))
        .collect();
    let mut authorities = Vec::with_capacity(spec.ports.len());
    for port in &spec.ports {
        let authority = ServiceAuthority {
            namespace: svc.namespace().to_string(),
            name: svc.name().to_string(),
            port: port.port,
        }
        .canonical(cluster_domain);
        let set = endpoint_set(svc, port, &service_opaque, &infos);
        let set = match previous.and_then(|p| p.get(&authority)) {
            Some(prev) if **prev == set => prev.clone(),
            _ => Arc::new(set),
        };
        sets.insert(authority.clone(), set);
        authorities.push(authority);
    }
    ServiceEntry {
        authorities,
        workloads,
        problems,
    }
}

fn endpoint_set(
    svc: &Object,
    port: &ServicePort,
    service_opaque: &[PortRange],
    workloads: &[Workload<'_>],
) -> EndpointSet {
    let labels = HashMap::from([
        ("namespace".to_string(), svc.namespace().to_string()),
        ("service".to_string(), svc.name().to_string()),
    ]);
    let opaque_service = in_ranges(service_opaque, port.port)
        || port.app_protocol.as_deref() == Some(OPAQUE_APP_PROTOCOL);
    let http_app = port
        .app_protocol
        .as_deref()
        .is_some_and(|p| HTTP_APP_PROTOCOLS.contains(&p.to_ascii_lowercase().as_str()));
    let mut endpoints = BTreeMap::new();
    for w in workloads {
        let Some(target) = port.target_port_on(&w.named_ports) else {
            continue;
        };
        let hint = if opaque_service || in_ranges(&w.opaque, target) {
            pb::ProtocolHint::Opaque
        } else if w.inbound_port.is_some() || http_app {
            pb::ProtocolHint::Http
        } else {
            pb::ProtocolHint::Unknown
        };
        for ip in &w.spec.workload_ips {
            let addr = SocketAddr::new(ip.ip, target).to_string();
            let proxy = w.inbound_port.map(|p| pb::MeshedProxy {
                inbound_addr: SocketAddr::new(ip.ip, p).to_string(),
                identity: w.spec.mesh_tls.identity.clone(),
                authority_override: String::new(),
            });
            endpoints.insert(
                addr.clone(),
                pb::Endpoint {
                    addr,
                    weight: DEFAULT_WEIGHT,
                    metric_labels: w.labels.clone(),
                    proxy,
                    protocol_hint: hint as i32,
                },
            );
        }
    }
    EndpointSet { labels, endpoints }
}

fn in_ranges(ranges: &[PortRange], port: u16) -> bool {
    ranges.iter().any(|r| (r.first..=r.last).contains(&port))
}

/// `config.linkerd.io/opaque-ports` of an object; a bad value is reported and ignored.
fn opaque_ports(object: &Object, problems: &mut Vec<String>) -> Vec<PortRange> {
    match object.metadata.opaque_ports() {
        Ok(ranges) => ranges.unwrap_or_default(),
        Err(e) => {
            problems.push(format!(
                "{}: {}: metadata.annotations[{}]: {e}; no port is treated as opaque",
                object.source,
                object.describe(),
                weft_model::meta::OPAQUE_PORTS
            ));
            Vec::new()
        }
    }
}

/// ExternalWorkloads by namespace and label, so a Service finds its workloads without scanning
/// every workload.
struct WorkloadIndex<'a> {
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Object>>,
}

impl<'a> WorkloadIndex<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        let mut by_label: HashMap<(&str, &str, &str), Vec<&Object>> = HashMap::new();
        for w in snapshot.objects(Kind::ExternalWorkload).values() {
            for (k, v) in &w.metadata.labels {
                by_label
                    .entry((w.namespace(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(w);
            }
        }
        Self { by_label }
    }

    /// The workloads of `namespace` that `spec`'s selector selects, in name order.
    fn selected_by(&self, namespace: &str, spec: &ServiceSpec) -> Vec<&'a Object> {
        // Probe with the first selector label; check the rest on the candidates.
        let Some((k, v)) = spec.selector.iter().next() else {
            return Vec::new();
        };
        self.by_label
            .get(&(namespace, k.as_str(), v.as_str()))
            .map(|ws| {
                ws.iter()
                    .copied()
                    .filter(|w| spec.selects(&w.metadata.labels))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a workload contributes to every endpoint it gives.
struct Workload<'a> {
    spec: &'a ExternalWorkloadSpec,
    named_ports: BTreeMap<String, u16>,
    labels: HashMap<String, String>,
    /// `None` when the workload runs no proxy.
    inbound_port: Option<u16>,
    opaque: Vec<PortRange>,
}

impl<'a> Workload<'a> {
    fn new(object: &'a Object, problems: &mut Vec<String>) -> Option<Self> {
        let Resource::ExternalWorkload(spec) = &object.resource else {
            return None;
        };
        let meta = &object.metadata;
        let meshed = !matches!(meta.inject(), Ok(Some(InjectMode::Disabled)));
        let inbound_port = meshed.then(|| match meta.annotation(PROXY_INBOUND_PORT) {
            None => DEFAULT_INBOUND_PORT,
            Some(v) => match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    problems.push(format!(
                        "{}: {}: metadata.annotations[{PROXY_INBOUND_PORT}]: {v:?} is not a port; its proxy is assumed on {DEFAULT_INBOUND_PORT}",
                        object.source,
                        object.describe()
                    ));
                    DEFAULT_INBOUND_PORT
                }
            },
        });
        let mut labels = HashMap::from([
            ("pod".to_string(), object.name().to_string()),
            ("external_workload".to_string(), object.name().to_string()),
        ]);
        if let Some(sa) = service_account(&spec.mesh_tls.identity) {
            labels.insert("serviceaccount".to_string(), sa.to_string());
        }
        if let Some(d) = meta.label(DEPLOYMENT_LABEL) {
            labels.insert("deployment".to_string(), d.to_string());
        }
        Some(Self {
            spec,
            named_ports: spec.named_ports(),
            labels,
            inbound_port,
            opaque: opaque_ports(object, problems),
        })
    }
}

/// The service account an identity names: `<sa>.<ns>.serviceaccount.identity.…` (Linkerd and
/// Weft identities) or `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
pub fn service_account(identity: &str) -> Option<&str> {
    if let Some(path) = identity.strip_prefix("spiffe://") {
        let parts: Vec<&str> = path.split('/').collect();
        return match parts.as_slice() {
            [_, "ns", _, "sa", sa] if !sa.is_empty() => Some(sa),
            _ => None,
        };
    }
    let mut labels = identity.split('.');
    match (labels.next(), labels.next(), labels.next(), labels.next()) {
        (Some(sa), Some(_ns), Some("serviceaccount"), Some("identity")) if !sa.is_empty() => {
            Some(sa)
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
