//! Finding the pod template of each kind of object and deciding what to do with it.
//!
//! | kind (API group) | pod template |
//! |---|---|
//! | Deployment, StatefulSet, DaemonSet, ReplicaSet (`apps`, `extensions`) | `spec.template` |
//! | Job (`batch`), ReplicationController (core) | `spec.template` |
//! | CronJob (`batch`) | `spec.jobTemplate.spec.template` |
//! | Pod (core) | the object itself |
//! | Namespace (core) | none: its own metadata is annotated |
//!
//! An object of another group with one of these kinds (a CRD called `Job`) is passed through.
//! Nothing here trusts the shape of its input: a field of the wrong type makes the object "not
//! injected" with a warning naming the field, and it is written out as it came.

use serde_yaml_ng::{Mapping, Value};

use super::report::{Outcome, Report};
use super::value::{mapping_entry, mapping_field, s, str_field, Field};
use super::{sidecar, Settings};

/// The annotation that turns injection on or off.
pub const INJECT_ANNOTATION: &str = "linkerd.io/inject";
/// Name of the proxy container.
pub const PROXY_CONTAINER: &str = "weft-proxy";
/// Name of Linkerd's proxy container: a pod that has it is not given a second proxy.
const LINKERD_PROXY_CONTAINER: &str = "linkerd-proxy";

/// How deeply `kind: List` may nest.
const MAX_LIST_DEPTH: usize = 8;

/// Where the pod template of a kind is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The pod template, a mapping with `metadata` and `spec`, at this path from the object (an
    /// empty path for a Pod: the object itself).
    Template(&'static [&'static str]),
    /// A Namespace: annotated, never given a sidecar.
    Namespace,
}

/// `spec.template`.
const SPEC_TEMPLATE: &[&str] = &["spec", "template"];
/// A CronJob's pod template.
const CRONJOB_TEMPLATE: &[&str] = &["spec", "jobTemplate", "spec", "template"];

/// The pod template of a `kind` of `apiVersion` (when the object has no `apiVersion`, the kind
/// alone decides).
pub fn target(api_version: Option<&str>, kind: &str) -> Option<Target> {
    let group = api_version.map(|v| v.rsplit_once('/').map_or("", |(group, _)| group));
    let in_group = |groups: &[&str]| group.is_none_or(|g| groups.contains(&g));
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
            if in_group(&["apps", "extensions"]) =>
        {
            Some(Target::Template(SPEC_TEMPLATE))
        }
        "Job" if in_group(&["batch"]) => Some(Target::Template(SPEC_TEMPLATE)),
        "CronJob" if in_group(&["batch"]) => Some(Target::Template(CRONJOB_TEMPLATE)),
        "ReplicationController" if in_group(&[""]) => Some(Target::Template(SPEC_TEMPLATE)),
        "Pod" if in_group(&[""]) => Some(Target::Template(&[])),
        "Namespace" if in_group(&[""]) => Some(Target::Namespace),
        _ => None,
    }
}

/// Processes one document or list item: injects what can be injected, records every object in
/// the report, and leaves everything else as it is. `at` names the value for messages.
pub fn process_value(
    v: &mut Value,
    at: &str,
    settings: &Settings,
    report: &mut Report,
    depth: usize,
) {
    let m = match v {
        Value::Null => return,
        Value::Mapping(m) => m,
        _ => return report.pass_through(at, "is not a Kubernetes object (not a mapping)"),
    };
    let Some(kind) = str_field(m, "kind").map(str::to_owned) else {
        return report.pass_through(at, "is not a Kubernetes object (no kind)");
    };
    let is_list = kind == "List"
        || (kind.ends_with("List") && matches!(m.get("items"), Some(Value::Sequence(_))));
    if is_list {
        return process_list(m, at, settings, report, depth);
    }
    let object = describe_object(&kind, m);
    let outcome = match target(str_field(m, "apiVersion"), &kind) {
        Some(Target::Template(path)) => inject_workload(m, path, settings),
        Some(Target::Namespace) => annotate_namespace(m),
        None => Outcome::Skipped,
    };
    report.record(&object, &outcome);
}

fn process_list(m: &mut Mapping, at: &str, settings: &Settings, report: &mut Report, depth: usize) {
    if depth >= MAX_LIST_DEPTH {
        return report.pass_through(
            at,
            &format!("has Lists nested more than {MAX_LIST_DEPTH} deep"),
        );
    }
    match m.get_mut("items") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                let at = format!("{at}, items[{i}]");
                process_value(item, &at, settings, report, depth + 1);
            }
        }
        Some(_) => report.pass_through(at, "is a List whose items is not a list"),
    }
}

/// `deployment "web"`: the kind in lower case, and the name (or the `generateName` prefix).
pub fn describe_object(kind: &str, m: &Mapping) -> String {
    let meta = match mapping_field(m, "metadata") {
        Field::Mapping(meta) => Some(meta),
        _ => None,
    };
    let name = meta.and_then(|meta| {
        str_field(meta, "name")
            .filter(|n| !n.is_empty())
            .or_else(|| str_field(meta, "generateName"))
    });
    match name {
        Some(name) => format!("{} {name:?}", kind.to_lowercase()),
        None => format!("{} (unnamed)", kind.to_lowercase()),
    }
}

/// The value of `linkerd.io/inject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectValue {
    Enabled,
    Disabled,
    Ingress,
    /// Something else, as written.
    Other(String),
}

/// Reads `linkerd.io/inject` from an object's or template's `metadata`; an error names the
/// field that is not what Kubernetes requires.
fn inject_annotation(owner: &Mapping, prefix: &str) -> Result<Option<InjectValue>, String> {
    let meta = match mapping_field(owner, "metadata") {
        Field::Absent => return Ok(None),
        Field::Mapping(meta) => meta,
        Field::Wrong => return Err(format!("has {prefix}metadata that is not a mapping")),
    };
    let annotations = match mapping_field(meta, "annotations") {
        Field::Absent => return Ok(None),
        Field::Mapping(a) => a,
        Field::Wrong => {
            return Err(format!(
                "has {prefix}metadata.annotations that is not a mapping"
            ))
        }
    };
    Ok(annotations.get(INJECT_ANNOTATION).map(|v| {
        let text = super::value::describe(v);
        match text.trim().to_ascii_lowercase().as_str() {
            "enabled" => InjectValue::Enabled,
            "disabled" => InjectValue::Disabled,
            "ingress" => InjectValue::Ingress,
            _ => InjectValue::Other(text),
        }
    }))
}

/// Sets annotations on `owner.metadata.annotations`, creating both when missing.
pub fn set_annotations(
    owner: &mut Mapping,
    pairs: &[(&str, &str)],
    prefix: &str,
) -> Result<(), String> {
    let meta = mapping_entry(owner, "metadata", true)
        .ok_or_else(|| format!("has {prefix}metadata that is not a mapping"))?;
    let annotations = mapping_entry(meta, "annotations", false)
        .ok_or_else(|| format!("has {prefix}metadata.annotations that is not a mapping"))?;
    for (k, v) in pairs {
        annotations.insert(s(*k), s(*v));
    }
    Ok(())
}

/// The text of the `prefix` of paths in messages: `spec.template.` (empty for a Pod).
fn prefix_of(path: &[&str]) -> String {
    path.iter().map(|p| format!("{p}.")).collect()
}

/// Walks `path` down from `obj`; every step must be a mapping.
fn locate<'a>(obj: &'a mut Mapping, path: &[&str]) -> Result<&'a mut Mapping, String> {
    let mut here = obj;
    for (i, step) in path.iter().enumerate() {
        let name = path[..=i].join(".");
        here = match here.get_mut(*step) {
            None | Some(Value::Null) => {
                return Err(format!("has no pod template ({name} is missing)"))
            }
            Some(Value::Mapping(next)) => next,
            Some(_) => return Err(format!("has no pod template ({name} is not a mapping)")),
        };
    }
    Ok(here)
}

/// Locates a workload's pod template.
#[cfg(test)]
pub fn pod_template(obj: &mut Mapping, target: Target) -> Option<&mut Mapping> {
    match target {
        Target::Template(path) => locate(obj, path).ok(),
        Target::Namespace => None,
    }
}

/// Injects one workload (or Pod) whose pod template is at `path`.
fn inject_workload(obj: &mut Mapping, path: &[&str], settings: &Settings) -> Outcome {
    let prefix = prefix_of(path);
    // `linkerd.io/inject: disabled` on the workload itself is honoured too, as people put it
    // there by mistake and clearly mean it.
    let own = if path.is_empty() {
        Ok(None)
    } else {
        inject_annotation(obj, "")
    };
    let namespace = match mapping_field(obj, "metadata") {
        Field::Mapping(meta) => str_field(meta, "namespace")
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned),
        _ => None,
    };
    let template = match locate(obj, path) {
        Ok(t) => t,
        Err(reason) => return Outcome::NotInjected(reason),
    };
    let annotation = match inject_annotation(template, &prefix) {
        Ok(a) => a,
        Err(reason) => return Outcome::NotInjected(reason),
    };
    if annotation == Some(InjectValue::Disabled) || own == Ok(Some(InjectValue::Disabled)) {
        return Outcome::NotInjected(format!("is annotated {INJECT_ANNOTATION}: disabled"));
    }
    let spec = match mapping_field(template, "spec") {
        Field::Mapping(spec) => spec,
        Field::Absent => {
            return Outcome::NotInjected(format!("has no pod spec ({prefix}spec is missing)"))
        }
        Field::Wrong => {
            return Outcome::NotInjected(format!("has no pod spec ({prefix}spec is not a mapping)"))
        }
    };
    let containers = match spec.get("containers") {
        Some(Value::Sequence(c)) => c,
        None | Some(Value::Null) => {
            return Outcome::NotInjected(format!(
                "has no containers ({prefix}spec.containers is missing)"
            ))
        }
        Some(_) => {
            return Outcome::NotInjected(format!(
                "has no containers ({prefix}spec.containers is not a list)"
            ))
        }
    };
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c.as_mapping().and_then(|c| str_field(c, "name")))
        .collect();
    if names.contains(&PROXY_CONTAINER) {
        return Outcome::AlreadyInjected;
    }
    if names.contains(&LINKERD_PROXY_CONTAINER) {
        return Outcome::NotInjected(format!("already has a {LINKERD_PROXY_CONTAINER} container"));
    }
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        return Outcome::NotInjected("uses hostNetwork".into());
    }
    match annotation {
        Some(InjectValue::Enabled | InjectValue::Ingress) if !settings.manual => {
            return Outcome::AlreadyInjected
        }
        Some(InjectValue::Ingress) => {
            return Outcome::NotInjected(format!(
            "is annotated {INJECT_ANNOTATION}: ingress, which only the injector webhook supports"
        ))
        }
        Some(InjectValue::Other(value)) => {
            return Outcome::NotInjected(format!(
                "is annotated {INJECT_ANNOTATION}: {value:?}, not enabled, disabled or ingress"
            ))
        }
        Some(InjectValue::Enabled | InjectValue::Disabled) | None => {}
    }
    let mut warnings = Vec::new();
    let udp_ports = udp_ports(containers);
    if !udp_ports.is_empty() {
        warnings.push(format!(
            "has UDP ports ({}): UDP is not proxied",
            udp_ports.join(", ")
        ));
    }
    // A sidecar never exits by itself, so a pod meant to run to completion would not.
    if let Some(policy @ ("Never" | "OnFailure")) = str_field(spec, "restartPolicy") {
        warnings.push(format!(
            "has restartPolicy {policy}: the proxy does not exit by itself, so the app must POST \
             to http://localhost:4191/shutdown when done or the pod never completes"
        ));
    }
    let injected = if settings.manual {
        sidecar::inject(template, &prefix, namespace.as_deref(), &settings.sidecar)
    } else {
        set_annotations(template, &[(INJECT_ANNOTATION, "enabled")], &prefix)
    };
    match injected {
        Ok(()) => Outcome::Injected { warnings },
        Err(reason) => Outcome::NotInjected(reason),
    }
}

/// The UDP ports the containers declare, as `53/UDP`, without repeats.
fn udp_ports(containers: &[Value]) -> Vec<String> {
    let mut ports = Vec::new();
    let declared = containers
        .iter()
        .filter_map(|c| c.get("ports").and_then(Value::as_sequence))
        .flatten();
    for port in declared {
        let udp = port
            .get("protocol")
            .and_then(Value::as_str)
            .is_some_and(|p| p.eq_ignore_ascii_case("udp"));
        if udp {
            let number = port
                .get("containerPort")
                .map_or_else(|| "?".into(), super::value::describe);
            let text = format!("{number}/UDP");
            if !ports.contains(&text) {
                ports.push(text);
            }
        }
    }
    ports
}

/// Annotates a Namespace `linkerd.io/inject: enabled` (in both modes: its pods are then injected
/// by the webhook).
fn annotate_namespace(obj: &mut Mapping) -> Outcome {
    match inject_annotation(obj, "") {
        Err(reason) => Outcome::NotAnnotated(reason),
        Ok(Some(InjectValue::Disabled)) => {
            Outcome::NotAnnotated(format!("is annotated {INJECT_ANNOTATION}: disabled"))
        }
        Ok(Some(InjectValue::Enabled | InjectValue::Ingress)) => Outcome::AlreadyAnnotated,
        Ok(Some(InjectValue::Other(value))) => Outcome::NotAnnotated(format!(
            "is annotated {INJECT_ANNOTATION}: {value:?}, not enabled, disabled or ingress"
        )),
        Ok(None) => match set_annotations(obj, &[(INJECT_ANNOTATION, "enabled")], "") {
            Ok(()) => Outcome::Annotated,
            Err(reason) => Outcome::NotAnnotated(reason),
        },
    }
}
