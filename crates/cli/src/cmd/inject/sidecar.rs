//! The sidecar `weft inject --manual` adds to a pod template.
//!
//! - **`weft-proxy`** (appended to `containers`, so the app stays the default container of
//!   `kubectl logs/exec`): configured by the `WEFT_PROXY_*` variables the proxy reads
//!   (crates/proxy/src/config.rs). Inbound listens on `0.0.0.0:4143` (the iptables target) and
//!   admin on `0.0.0.0:4191` (kubelet probes and Prometheus reach it from outside the pod; its
//!   `/shutdown` and `/proxy-log-level` answer only on loopback). Outbound stays on
//!   `127.0.0.1:4140`: locally redirected connections arrive on loopback, and an outbound
//!   listener reachable from other pods would be an open relay. Runs as uid 2102, non-root, with
//!   a read-only root file system and no capabilities; ready (`/ready`) once it holds a
//!   certificate.
//! - **Identity**: the name is `<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane
//!   namespace>.<trust domain>`. When the manifest names no namespace (it will be applied with
//!   `kubectl -n`), the namespace comes from the downward API (`WEFT_POD_NAMESPACE`) and Kubernetes
//!   expands `$(WEFT_POD_NAMESPACE)` in the identity. The trust anchors are the `ca-bundle.crt` key
//!   of the ConfigMap `weft-identity-trust-roots`, which must exist in the workload's namespace
//!   (a ConfigMap volume cannot reach across namespaces); the bootstrap token is a projected
//!   ServiceAccount token with audience `identity.weft.io`, checked by the identity service with a
//!   TokenReview.
//! - **`weft-init`** (appended to `initContainers`, so earlier init containers still reach the
//!   network before the redirect is in place): `weft-proxy init` with the ports above, the proxy's
//!   uid, and the skipped ports; root with NET_ADMIN and NET_RAW, as iptables needs; an emptyDir
//!   on `/run` for iptables-legacy's lock file, since its root file system is read-only.
//! - The template's annotations: `linkerd.io/inject: enabled`, `weft.io/proxy-version` and
//!   `linkerd.io/proxy-version` (which Linkerd dashboards read).
//!
//! There is no emptyDir for the proxy's private key: the proxy keeps it in memory only.

use serde_yaml_ng::{Mapping, Value};

use super::value::{map, mapping_field, n, s, seq, sequence_entry, str_field, strings, Field};
use super::workload::{set_annotations, INJECT_ANNOTATION, PROXY_CONTAINER};

/// Name of the init container.
pub const INIT_CONTAINER: &str = "weft-init";
/// The uid the proxy runs as; its own connections are exempt from the redirect.
pub const PROXY_UID: i64 = 2102;
/// Inbound listener (the iptables target for traffic to the pod).
pub const INBOUND_PORT: i64 = 4143;
/// Outbound listener (the iptables target for traffic from the pod).
pub const OUTBOUND_PORT: i64 = 4140;
/// Admin server: /ready, /live, /metrics.
pub const ADMIN_PORT: i64 = 4191;
/// Tap server; never redirected, like the admin port.
pub const TAP_PORT: i64 = 4190;
/// Audience of the projected ServiceAccount token the identity service accepts.
pub const TOKEN_AUDIENCE: &str = "identity.weft.io";
/// The ConfigMap with the trust anchors (key `ca-bundle.crt`), in the workload's namespace.
pub const TRUST_ROOTS_CONFIGMAP: &str = "weft-identity-trust-roots";

const TRUST_ANCHORS_VOLUME: &str = "weft-identity-trust-roots";
const TRUST_ANCHORS_DIR: &str = "/var/run/weft/identity/trust-roots";
const TOKEN_VOLUME: &str = "weft-identity-token";
const TOKEN_DIR: &str = "/var/run/weft/identity/token";
const XTABLES_VOLUME: &str = "weft-init-xtables-lock";
/// The downward-API variable holding the pod's namespace when the manifest names none.
const NAMESPACE_VAR: &str = "WEFT_POD_NAMESPACE";

/// What the sidecar looks like; from the command line.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// Image of both containers.
    pub image: String,
    /// Version written in the `*/proxy-version` annotations.
    pub version: String,
    pub control_plane_namespace: String,
    pub trust_domain: String,
    pub cluster_domain: String,
    /// Extra inbound ports not redirected (validated, `22,8000-8010`).
    pub skip_inbound_ports: Option<String>,
    /// Outbound ports not redirected.
    pub skip_outbound_ports: Option<String>,
}

impl SidecarConfig {
    fn service_addr(&self, service: &str, port: u16) -> String {
        format!(
            "{service}.{}.svc.{}:{port}",
            self.control_plane_namespace, self.cluster_domain
        )
    }
}

/// Adds the sidecar to a pod template (`metadata` + `spec`). Everything is checked before the
/// first change, so on `Err` (the reason, read after the object's name) the template is as it
/// was. `prefix` is the template's path for messages (`spec.template.`); `namespace` the
/// object's, if its manifest names one.
pub fn inject(
    template: &mut Mapping,
    prefix: &str,
    namespace: Option<&str>,
    config: &SidecarConfig,
) -> Result<(), String> {
    let spec = match mapping_field(template, "spec") {
        Field::Mapping(spec) => spec,
        _ => return Err(format!("has no pod spec ({prefix}spec is not a mapping)")),
    };
    let service_account = service_account(spec, prefix)?;
    check_names(spec, "initContainers", INIT_CONTAINER, prefix)?;
    for volume in [TRUST_ANCHORS_VOLUME, TOKEN_VOLUME, XTABLES_VOLUME] {
        check_names(spec, "volumes", volume, prefix)?;
    }
    if let Field::Wrong = mapping_field(template, "metadata") {
        return Err(format!("has {prefix}metadata that is not a mapping"));
    }
    if let Field::Mapping(meta) = mapping_field(template, "metadata") {
        if let Field::Wrong = mapping_field(meta, "annotations") {
            return Err(format!(
                "has {prefix}metadata.annotations that is not a mapping"
            ));
        }
    }

    let proxy = proxy_container(&service_account, namespace, config);
    let init = init_container(config);
    let spec = template
        .get_mut("spec")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| format!("has no pod spec ({prefix}spec is not a mapping)"))?;
    let sequence_error = |field: &str| format!("has {prefix}spec.{field} that is not a list");
    sequence_entry(spec, "containers")
        .ok_or_else(|| sequence_error("containers"))?
        .push(proxy);
    sequence_entry(spec, "initContainers")
        .ok_or_else(|| sequence_error("initContainers"))?
        .push(init);
    sequence_entry(spec, "volumes")
        .ok_or_else(|| sequence_error("volumes"))?
        .extend(volumes());
    set_annotations(
        template,
        &[
            (INJECT_ANNOTATION, "enabled"),
            ("weft.io/proxy-version", &config.version),
            ("linkerd.io/proxy-version", &config.version),
        ],
        prefix,
    )
}

/// `spec.serviceAccountName` (or the deprecated `spec.serviceAccount`), `default` when unset.
fn service_account(spec: &Mapping, prefix: &str) -> Result<String, String> {
    for field in ["serviceAccountName", "serviceAccount"] {
        match spec.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(sa)) if sa.is_empty() => {}
            Some(Value::String(sa)) => return Ok(sa.clone()),
            Some(_) => return Err(format!("has {prefix}spec.{field} that is not a string")),
        }
    }
    Ok("default".into())
}

/// Fails if `spec[field]` is not a list (when present) or already has an entry called `name`.
fn check_names(spec: &Mapping, field: &str, name: &str, prefix: &str) -> Result<(), String> {
    match spec.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Sequence(items)) => {
            let taken = items
                .iter()
                .any(|i| i.as_mapping().and_then(|i| str_field(i, "name")) == Some(name));
            if taken {
                Err(format!(
                    "already has {prefix}spec.{field} {name:?} but no {PROXY_CONTAINER} container"
                ))
            } else {
                Ok(())
            }
        }
        Some(_) => Err(format!("has {prefix}spec.{field} that is not a list")),
    }
}

fn env(name: &str, value: impl Into<String>) -> Value {
    map([("name", s(name)), ("value", s(value))])
}

fn proxy_container(
    service_account: &str,
    namespace: Option<&str>,
    config: &SidecarConfig,
) -> Value {
    let mut env_vars = Vec::new();
    let namespace = match namespace {
        Some(ns) => ns.to_owned(),
        None => {
            env_vars.push(map([
                ("name", s(NAMESPACE_VAR)),
                (
                    "valueFrom",
                    map([("fieldRef", map([("fieldPath", s("metadata.namespace"))]))]),
                ),
            ]));
            format!("$({NAMESPACE_VAR})")
        }
    };
    let identity = format!(
        "{service_account}.{namespace}.serviceaccount.identity.{}.{}",
        config.control_plane_namespace, config.trust_domain
    );
    env_vars.extend([
        env(
            "WEFT_PROXY_INBOUND_LISTEN_ADDR",
            format!("0.0.0.0:{INBOUND_PORT}"),
        ),
        env(
            "WEFT_PROXY_OUTBOUND_LISTEN_ADDR",
            format!("127.0.0.1:{OUTBOUND_PORT}"),
        ),
        env(
            "WEFT_PROXY_ADMIN_LISTEN_ADDR",
            format!("0.0.0.0:{ADMIN_PORT}"),
        ),
        env("WEFT_PROXY_TAP_LISTEN_ADDR", format!("0.0.0.0:{TAP_PORT}")),
        env(
            "WEFT_PROXY_DESTINATION_SVC_ADDR",
            config.service_addr("weft-dst", 8086),
        ),
        env("WEFT_PROXY_IDENTITY_NAME", identity),
        env(
            "WEFT_PROXY_IDENTITY_TRUST_ANCHORS",
            format!("{TRUST_ANCHORS_DIR}/ca-bundle.crt"),
        ),
        env(
            "WEFT_PROXY_IDENTITY_TOKEN_FILE",
            format!("{TOKEN_DIR}/token"),
        ),
        env(
            "WEFT_PROXY_IDENTITY_SVC_ADDR",
            config.service_addr("weft-identity", 8080),
        ),
    ]);
    let probe = |path: &str, delay: i64| {
        map([
            ("httpGet", map([("path", s(path)), ("port", n(ADMIN_PORT))])),
            ("initialDelaySeconds", n(delay)),
        ])
    };
    map([
        ("name", s(PROXY_CONTAINER)),
        ("image", s(&config.image)),
        ("imagePullPolicy", s("IfNotPresent")),
        ("env", seq(env_vars)),
        (
            "ports",
            seq([
                map([
                    ("name", s("weft-proxy")),
                    ("containerPort", n(INBOUND_PORT)),
                ]),
                map([("name", s("weft-admin")), ("containerPort", n(ADMIN_PORT))]),
            ]),
        ),
        ("readinessProbe", probe("/ready", 2)),
        ("livenessProbe", probe("/live", 10)),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", Value::Bool(false)),
                ("capabilities", map([("drop", strings(["ALL"]))])),
                ("readOnlyRootFilesystem", Value::Bool(true)),
                ("runAsNonRoot", Value::Bool(true)),
                ("runAsUser", n(PROXY_UID)),
                ("seccompProfile", map([("type", s("RuntimeDefault"))])),
            ]),
        ),
        ("terminationMessagePolicy", s("FallbackToLogsOnError")),
        (
            "volumeMounts",
            seq([
                map([
                    ("name", s(TRUST_ANCHORS_VOLUME)),
                    ("mountPath", s(TRUST_ANCHORS_DIR)),
                    ("readOnly", Value::Bool(true)),
                ]),
                map([
                    ("name", s(TOKEN_VOLUME)),
                    ("mountPath", s(TOKEN_DIR)),
                    ("readOnly", Value::Bool(true)),
                ]),
            ]),
        ),
    ])
}

fn init_container(config: &SidecarConfig) -> Value {
    let mut skip_inbound = format!("{TAP_PORT},{ADMIN_PORT}");
    if let Some(extra) = &config.skip_inbound_ports {
        skip_inbound = format!("{skip_inbound},{extra}");
    }
    let mut args = vec![
        "init".to_owned(),
        format!("--inbound-port={INBOUND_PORT}"),
        format!("--outbound-port={OUTBOUND_PORT}"),
        format!("--proxy-uid={PROXY_UID}"),
        format!("--skip-inbound-ports={skip_inbound}"),
    ];
    if let Some(ports) = &config.skip_outbound_ports {
        args.push(format!("--skip-outbound-ports={ports}"));
    }
    map([
        ("name", s(INIT_CONTAINER)),
        ("image", s(&config.image)),
        ("imagePullPolicy", s("IfNotPresent")),
        ("args", strings(args.iter().map(String::as_str))),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", Value::Bool(false)),
                (
                    "capabilities",
                    map([
                        ("add", strings(["NET_ADMIN", "NET_RAW"])),
                        ("drop", strings(["ALL"])),
                    ]),
                ),
                ("privileged", Value::Bool(false)),
                ("readOnlyRootFilesystem", Value::Bool(true)),
                ("runAsNonRoot", Value::Bool(false)),
                ("runAsUser", n(0)),
                ("seccompProfile", map([("type", s("RuntimeDefault"))])),
            ]),
        ),
        ("terminationMessagePolicy", s("FallbackToLogsOnError")),
        (
            "volumeMounts",
            seq([map([("name", s(XTABLES_VOLUME)), ("mountPath", s("/run"))])]),
        ),
    ])
}

fn volumes() -> [Value; 3] {
    [
        map([
            ("name", s(TRUST_ANCHORS_VOLUME)),
            (
                "configMap",
                map([
                    ("name", s(TRUST_ROOTS_CONFIGMAP)),
                    (
                        "items",
                        seq([map([
                            ("key", s("ca-bundle.crt")),
                            ("path", s("ca-bundle.crt")),
                        ])]),
                    ),
                ]),
            ),
        ]),
        map([
            ("name", s(TOKEN_VOLUME)),
            (
                "projected",
                map([(
                    "sources",
                    seq([map([(
                        "serviceAccountToken",
                        map([
                            ("audience", s(TOKEN_AUDIENCE)),
                            ("expirationSeconds", n(86400)),
                            ("path", s("token")),
                        ]),
                    )])]),
                )]),
            ),
        ]),
        map([("name", s(XTABLES_VOLUME)), ("emptyDir", map([]))]),
    ]
}
