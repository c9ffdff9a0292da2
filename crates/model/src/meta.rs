//! Object metadata, label selectors, and typed readers for the labels and annotations Linkerd
//! users already put on their objects (`linkerd.io/inject`, `config.linkerd.io/*`,
//! `mirror.linkerd.io/exported`, `failover.linkerd.io/*`).
//!
//! Labels and annotations are kept verbatim; the accessors parse on demand and return an error
//! that names the annotation, so nothing a user wrote is silently dropped.

use crate::annotations::AnnotationError;
use crate::scalar;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `linkerd.io/inject` (annotation on a namespace, workload or pod template).
pub const INJECT: &str = "linkerd.io/inject";
/// Prefix of the proxy configuration annotations (`config.linkerd.io/opaque-ports`, …).
pub const CONFIG_PREFIX: &str = "config.linkerd.io/";
/// `config.linkerd.io/opaque-ports`: ports whose traffic is never protocol-detected.
pub const OPAQUE_PORTS: &str = "config.linkerd.io/opaque-ports";
/// `mirror.linkerd.io/exported` (label on a Service): export it to linked clusters.
pub const MIRROR_EXPORTED: &str = "mirror.linkerd.io/exported";
/// `failover.linkerd.io/primary-service` (annotation on a TrafficSplit).
pub const FAILOVER_PRIMARY_SERVICE: &str = "failover.linkerd.io/primary-service";
/// `failover.linkerd.io/controlled-by` (label on a TrafficSplit).
pub const FAILOVER_CONTROLLED_BY: &str = "failover.linkerd.io/controlled-by";
/// Prefix of Weft's own settings.
pub const WEFT_PREFIX: &str = "weft.io/";

/// The namespace of objects whose manifest names none, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The `metadata` of an object: what Weft reads of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The object's name (required; checked after reading so the error names the kind).
    #[serde(default, deserialize_with = "scalar::text")]
    pub name: String,
    /// The namespace as written; see [`ObjectMeta::namespace`].
    #[serde(default, rename = "namespace", deserialize_with = "scalar::opt_text")]
    pub namespace_field: Option<String>,
    /// Labels, verbatim (unquoted numbers and booleans are read as their text).
    #[serde(default, deserialize_with = "scalar::string_map")]
    pub labels: BTreeMap<String, String>,
    /// Annotations, verbatim (unquoted numbers and booleans are read as their text).
    #[serde(default, deserialize_with = "scalar::string_map")]
    pub annotations: BTreeMap<String, String>,
    /// `creationTimestamp` (RFC 3339), used to order HTTPRoutes as the Gateway API says.
    #[serde(default, deserialize_with = "scalar::opt_text")]
    pub creation_timestamp: Option<String>,
}

/// The `linkerd.io/inject` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectMode {
    /// `enabled`: add the proxy.
    Enabled,
    /// `disabled`: never add the proxy.
    Disabled,
    /// `ingress`: add the proxy in ingress mode (routes by the request's headers).
    Ingress,
}

/// How a Service is exported to linked clusters (`mirror.linkerd.io/exported`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exported {
    /// `true`: mirrored, reached through the target cluster's gateway.
    Gateway,
    /// `remote-discovery`: mirrored, reached directly (flat network).
    RemoteDiscovery,
}

/// An inclusive range of ports, as in `config.linkerd.io/opaque-ports: "25,4000-4100"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (equal to `first` for a single port).
    pub last: u16,
}

impl ObjectMeta {
    /// A metadata with just a namespace and a name (for objects built in code).
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace_field: Some(namespace.to_string()),
            ..Self::default()
        }
    }

    /// The object's namespace: as written, or [`DEFAULT_NAMESPACE`].
    pub fn namespace(&self) -> &str {
        match self.namespace_field.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => DEFAULT_NAMESPACE,
        }
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// `linkerd.io/inject`, read from the annotations (or, as some charts do, the labels).
    pub fn inject(&self) -> Result<Option<InjectMode>, AnnotationError> {
        let Some(value) = self.annotation(INJECT).or_else(|| self.label(INJECT)) else {
            return Ok(None);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "enabled" => Ok(Some(InjectMode::Enabled)),
            "disabled" => Ok(Some(InjectMode::Disabled)),
            "ingress" => Ok(Some(InjectMode::Ingress)),
            _ => Err(AnnotationError::NotOneOf {
                value: value.to_string(),
                expected: "enabled, disabled or ingress",
            }),
        }
    }

    /// The `config.linkerd.io/*` annotations, as (setting, value): `("opaque-ports", "25")`.
    pub fn config_annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.annotations.iter().filter_map(|(k, v)| {
            k.strip_prefix(CONFIG_PREFIX)
                .map(|setting| (setting, v.as_str()))
        })
    }

    /// `config.linkerd.io/opaque-ports`, parsed.
    pub fn opaque_ports(&self) -> Result<Option<Vec<PortRange>>, AnnotationError> {
        self.annotation(OPAQUE_PORTS)
            .map(parse_port_ranges)
            .transpose()
    }

    /// `mirror.linkerd.io/exported` (a label): `true`, `remote-discovery`, or `false`/absent.
    pub fn mirror_exported(&self) -> Result<Option<Exported>, AnnotationError> {
        let Some(value) = self.label(MIRROR_EXPORTED) else {
            return Ok(None);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Some(Exported::Gateway)),
            "remote-discovery" => Ok(Some(Exported::RemoteDiscovery)),
            "false" | "" => Ok(None),
            _ => Err(AnnotationError::NotOneOf {
                value: value.to_string(),
                expected: "true, remote-discovery or false",
            }),
        }
    }

    /// `failover.linkerd.io/primary-service` (an annotation): the primary backend's Service.
    pub fn failover_primary_service(&self) -> Option<&str> {
        self.annotation(FAILOVER_PRIMARY_SERVICE)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// `failover.linkerd.io/controlled-by` (a label): which controller manages this split.
    pub fn failover_controlled_by(&self) -> Option<&str> {
        self.label(FAILOVER_CONTROLLED_BY)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

/// Parses a list of ports and ranges: `"25,443, 4000-4100"`.
pub fn parse_port_ranges(value: &str) -> Result<Vec<PortRange>, AnnotationError> {
    let port = |item: &str| -> Result<u16, AnnotationError> {
        match item.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(AnnotationError::NotAPort {
                item: item.trim().to_string(),
            }),
        }
    };
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let range = match item.split_once('-') {
            Some((a, b)) => PortRange {
                first: port(a)?,
                last: port(b)?,
            },
            None => {
                let p = port(item)?;
                PortRange { first: p, last: p }
            }
        };
        if range.first > range.last {
            return Err(AnnotationError::NotAPort {
                item: item.to_string(),
            });
        }
        out.push(range);
    }
    if out.is_empty() {
        return Err(AnnotationError::Empty {
            expected: "ports like 25 or ranges like 4000-4100",
        });
    }
    out.sort();
    Ok(out)
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must all be present with these values.
    #[serde(default, deserialize_with = "scalar::string_map")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    #[serde(default, deserialize_with = "scalar::list")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LabelRequirement {
    /// The label's key.
    #[serde(deserialize_with = "scalar::text")]
    pub key: String,
    /// How the label is compared.
    pub operator: LabelOperator,
    /// Values for `In` and `NotIn`.
    #[serde(default, deserialize_with = "scalar::list")]
    pub values: Vec<String>,
}

/// The operators of `matchExpressions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum LabelOperator {
    /// The label is one of the values.
    In,
    /// The label is absent or none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector. An empty selector selects everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    LabelOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    LabelOperator::NotIn => !value.is_some_and(|v| r.values.contains(v)),
                    LabelOperator::Exists => value.is_some(),
                    LabelOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        ObjectMeta {
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::new("test", "podinfo")
        }
    }

    #[test]
    fn typed_linkerd_labels_and_annotations() {
        let m = meta(
            &[
                (FAILOVER_CONTROLLED_BY, "linkerd-failover"),
                (MIRROR_EXPORTED, "true"),
            ],
            &[
                (FAILOVER_PRIMARY_SERVICE, "podinfo"),
                (INJECT, "enabled"),
                ("config.linkerd.io/opaque-ports", "25, 4000-4100,443"),
                ("config.linkerd.io/proxy-log-level", "warn"),
            ],
        );
        assert_eq!(m.failover_controlled_by(), Some("linkerd-failover"));
        assert_eq!(m.failover_primary_service(), Some("podinfo"));
        assert_eq!(m.mirror_exported(), Ok(Some(Exported::Gateway)));
        assert_eq!(m.inject(), Ok(Some(InjectMode::Enabled)));
        let ports = m.opaque_ports().ok().flatten().unwrap_or_default();
        assert_eq!(
            ports,
            vec![
                PortRange {
                    first: 25,
                    last: 25
                },
                PortRange {
                    first: 443,
                    last: 443
                },
                PortRange {
                    first: 4000,
                    last: 4100
                },
            ]
        );
        let config: Vec<_> = m.config_annotations().collect();
        assert_eq!(
            config,
            vec![
                ("opaque-ports", "25, 4000-4100,443"),
                ("proxy-log-level", "warn")
            ]
        );
    }

    #[test]
    fn bad_typed_values_are_errors_not_silence() {
        let m = meta(&[(MIRROR_EXPORTED, "yes")], &[(INJECT, "enable")]);
        assert_eq!(
            m.inject().map_err(|e| e.to_string()),
            Err(r#""enable" is not one of enabled, disabled or ingress"#.to_string())
        );
        assert_eq!(
            m.mirror_exported().map_err(|e| e.to_string()),
            Err(r#""yes" is not one of true, remote-discovery or false"#.to_string())
        );
        assert_eq!(
            parse_port_ranges("25,http").map_err(|e| e.to_string()),
            Err(r#""http" is not a port or a port range like 4000-4100"#.to_string())
        );
        assert!(parse_port_ranges("4100-4000").is_err());
    }

    #[test]
    fn namespace_defaults_like_kubectl() {
        let mut m = ObjectMeta::new("emojivoto", "web");
        assert_eq!(m.namespace(), "emojivoto");
        m.namespace_field = None;
        assert_eq!(m.namespace(), "default");
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("mirror.linkerd.io/exported", "true")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut sel = LabelSelector::default();
        assert!(sel.matches(&labels));
        sel.match_labels
            .insert(MIRROR_EXPORTED.to_string(), "true".to_string());
        assert!(sel.matches(&labels));
        sel.match_expressions.push(LabelRequirement {
            key: "app".into(),
            operator: LabelOperator::DoesNotExist,
            values: vec![],
        });
        assert!(sel.matches(&labels));
        sel.match_expressions[0].operator = LabelOperator::Exists;
        assert!(!sel.matches(&labels));
    }
}
