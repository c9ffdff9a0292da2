//! `v1 Service` and `workload.linkerd.io ExternalWorkload`: what a service is called, which
//! ports it has, and which workloads serve it.
//!
//! In the local mesh every workload is an ExternalWorkload (an address, ports, labels and the
//! proxy's identity); a Service selects workloads by label, as in Kubernetes.

use crate::error::Issues;
use crate::scalar;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// The `spec` of a `v1 Service`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Labels a workload must carry to serve this Service. Empty: endpoints are managed by
    /// hand (or the Service mirrors a remote one).
    #[serde(default, deserialize_with = "scalar::string_map")]
    pub selector: BTreeMap<String, String>,
    /// The Service's ports.
    #[serde(default, deserialize_with = "scalar::list")]
    pub ports: Vec<ServicePort>,
    /// `type` (ClusterIP, NodePort, LoadBalancer, ExternalName), as written.
    #[serde(default, rename = "type", deserialize_with = "scalar::opt_text")]
    pub service_type: Option<String>,
    /// `clusterIP`, as written (`None` for headless Services).
    #[serde(default, rename = "clusterIP", deserialize_with = "scalar::opt_text")]
    pub cluster_ip: Option<String>,
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// The port's name (required when a Service has more than one port).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub name: Option<String>,
    /// The port clients connect to.
    #[serde(deserialize_with = "scalar::port")]
    pub port: u16,
    /// The workload's port: a number, or the name of a workload port. Defaults to `port`.
    #[serde(default)]
    pub target_port: Option<TargetPort>,
    /// The transport protocol (default TCP).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// `appProtocol` (e.g. `http`, `kubernetes.io/h2c`), as written.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub app_protocol: Option<String>,
}

/// A Service's `targetPort`: a number or the name of a workload's port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// The name of a port on the workload.
    Name(String),
}

impl<'de> Deserialize<'de> for TargetPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TargetPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TargetPort, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(TargetPort::Number(p)),
                    _ => Err(E::custom(format!(
                        "{v} is not a port: expected a number from 1 to 65535 or a port name"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TargetPort, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!(
                        "{v} is not a port: expected a number from 1 to 65535 or a port name"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetPort, E> {
                let v = v.trim();
                match v.parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) if is_port_name(v) => Ok(TargetPort::Name(v.to_string())),
                    Err(_) => Err(E::custom(format!(
                        "{v:?} is not a port: expected a number from 1 to 65535 or a port name (lowercase letters, digits and '-', at most 15)"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    /// TCP (the default).
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP (not proxied by Weft).
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP (not proxied by Weft).
    #[serde(rename = "SCTP")]
    Sctp,
}

/// Whether `name` is a valid Kubernetes port name (IANA service name: ≤15 characters, lowercase
/// letters, digits and `-`, at least one letter, no leading, trailing or double `-`).
pub fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Whether `name` is a DNS label (RFC 1123: ≤63 lowercase letters, digits and `-`, starting
/// and ending with a letter or digit), as Service and namespace names must be.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl ServiceSpec {
    /// Whether a workload with `labels` serves this Service (an empty selector selects none).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty() && self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The port with this number.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    pub(crate) fn validate(&self, issues: &mut Issues) {
        if self.ports.is_empty() && self.service_type.as_deref() != Some("ExternalName") {
            issues.push("spec.ports", "a Service needs at least one port");
        }
        let mut numbers = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let field = format!("spec.ports[{i}]");
            if !numbers.insert(p.port) {
                issues.push(
                    format!("{field}.port"),
                    format!("port {} is listed twice", p.port),
                );
            }
            match &p.name {
                Some(name) if !is_port_name(name) => issues.push(
                    format!("{field}.name"),
                    format!("{name:?} is not a port name: lowercase letters, digits and '-', at most 15"),
                ),
                Some(name) if !names.insert(name.as_str()) => issues.push(
                    format!("{field}.name"),
                    format!("port name {name:?} is used twice"),
                ),
                None if self.ports.len() > 1 => issues.push(
                    format!("{field}.name"),
                    "every port needs a name when a Service has more than one",
                ),
                _ => {}
            }
        }
    }
}

impl ServicePort {
    /// The workload port this Service port forwards to, given the workload's named ports.
    pub fn target_port_on(&self, named_ports: &BTreeMap<String, u16>) -> Option<u16> {
        match &self.target_port {
            None => Some(self.port),
            Some(TargetPort::Number(n)) => Some(*n),
            Some(TargetPort::Name(name)) => named_ports.get(name).copied(),
        }
    }
}

/// The `spec` of a `workload.linkerd.io ExternalWorkload`: a workload outside Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalWorkloadSpec {
    /// The workload's proxy identity.
    #[serde(rename = "meshTLS")]
    pub mesh_tls: MeshTls,
    /// The ports the workload serves.
    #[serde(default, deserialize_with = "scalar::list")]
    pub ports: Vec<WorkloadPort>,
    /// The workload's addresses.
    #[serde(default, rename = "workloadIPs", deserialize_with = "scalar::list")]
    pub workload_ips: Vec<WorkloadIp>,
}

/// `spec.meshTLS` of an ExternalWorkload.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTls {
    /// The identity the workload's proxy presents (a SPIFFE ID or a Weft identity name).
    #[serde(deserialize_with = "scalar::text")]
    pub identity: String,
    /// The TLS server name (SNI) clients use to reach the workload's proxy.
    #[serde(deserialize_with = "scalar::text")]
    pub server_name: String,
}

/// One port of an ExternalWorkload.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPort {
    /// The port's name, for Services whose `targetPort` is a name.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub name: Option<String>,
    /// The port number.
    #[serde(deserialize_with = "scalar::port")]
    pub port: u16,
    /// The transport protocol (default TCP).
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

/// One address of an ExternalWorkload.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WorkloadIp {
    /// The IP address.
    #[serde(deserialize_with = "ip")]
    pub ip: IpAddr,
}

fn ip<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = scalar::text(d)?;
    text.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "{text:?} is not an IP address: expected e.g. 127.0.1.5 or ::1"
        ))
    })
}

impl ExternalWorkloadSpec {
    /// The workload's named ports, for resolving a Service's named `targetPort`.
    pub fn named_ports(&self) -> BTreeMap<String, u16> {
        self.ports
            .iter()
            .filter_map(|p| p.name.clone().map(|n| (n, p.port)))
            .collect()
    }

    pub(crate) fn validate(&self, issues: &mut Issues) {
        if self.mesh_tls.identity.trim().is_empty() {
            issues.push(
                "spec.meshTLS.identity",
                "the workload's identity is required",
            );
        }
        if self.mesh_tls.server_name.trim().is_empty() {
            issues.push(
                "spec.meshTLS.serverName",
                "the workload's TLS server name is required",
            );
        }
        if self.workload_ips.is_empty() {
            issues.push("spec.workloadIPs", "a workload needs at least one address");
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(name) = &p.name {
                if !names.insert(name.as_str()) {
                    issues.push(
                        format!("spec.ports[{i}].name"),
                        format!("port name {name:?} is used twice"),
                    );
                }
            }
        }
    }
}
