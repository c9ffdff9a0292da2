//! `multicluster.linkerd.io Link`: how this cluster reaches another one (its gateway's address,
//! port and identity, how to probe it, and which of its Services to mirror). Parsed and
//! validated here; the service mirror acts on it.

use crate::error::Issues;
use crate::meta::LabelSelector;
use crate::scalar;
use serde::Deserialize;
use std::time::Duration;

/// The `spec` of a Link.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSpec {
    /// The linked (target) cluster's name, e.g. `east`; mirrors are named `<svc>-<name>`.
    #[serde(deserialize_with = "scalar::text")]
    pub target_cluster_name: String,
    /// The target cluster's DNS domain (default `cluster.local`).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub target_cluster_domain: Option<String>,
    /// The target cluster's control-plane namespace.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub target_cluster_linkerd_namespace: Option<String>,
    /// The Secret holding credentials to watch the target cluster.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub cluster_credentials_secret: Option<String>,
    /// The gateway's address (IP or host name; several may be comma-separated).
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub gateway_address: Option<String>,
    /// The gateway's port (Linkerd writes it as a string: `"4143"`).
    #[serde(default, deserialize_with = "scalar::opt_port")]
    pub gateway_port: Option<u16>,
    /// The identity the gateway's proxy presents.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub gateway_identity: Option<String>,
    /// How to probe the gateway for liveness and latency.
    #[serde(default)]
    pub probe_spec: Option<ProbeSpec>,
    /// Which of the target's Services are mirrored through the gateway.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// Which are mirrored for direct (remote-discovery) access.
    #[serde(default)]
    pub remote_discovery_selector: Option<LabelSelector>,
}

/// `probeSpec` of a Link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// The HTTP path probed on the gateway, e.g. `/ready`.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub path: Option<String>,
    /// The port probed (Linkerd writes it as a string: `"4191"`).
    #[serde(default, deserialize_with = "scalar::opt_port")]
    pub port: Option<u16>,
    /// Time between probes, e.g. `3s`.
    #[serde(default, deserialize_with = "scalar::opt_duration")]
    pub period: Option<Duration>,
    /// Consecutive failures before the gateway is considered down.
    #[serde(default, deserialize_with = "scalar::opt_count")]
    pub failure_threshold: Option<u32>,
    /// How long one probe may take.
    #[serde(default, deserialize_with = "scalar::opt_duration")]
    pub timeout: Option<Duration>,
}

impl LinkSpec {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        if !crate::service::is_dns_label(&self.target_cluster_name) {
            issues.push(
                "spec.targetClusterName",
                format!(
                    "{:?} is not a cluster name: lowercase letters, digits and '-'",
                    self.target_cluster_name
                ),
            );
        }
        if let Some(path) = self.probe_spec.as_ref().and_then(|p| p.path.as_ref()) {
            if !path.starts_with('/') {
                issues.push(
                    "spec.probeSpec.path",
                    format!("{path:?} is not a path: it must start with '/'"),
                );
            }
        }
        if let Some(Duration::ZERO) = self.probe_spec.as_ref().and_then(|p| p.period) {
            issues.push(
                "spec.probeSpec.period",
                "the probe period must be more than 0",
            );
        }
    }
}
