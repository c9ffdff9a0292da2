//! Unit tests: locating pod templates per kind, parsing and its errors, and hostile inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_yaml_ng::{Mapping, Value};

use super::input::{parse, Input};
use super::report::{Outcome, Report};
use super::sidecar::SidecarConfig;
use super::workload::{pod_template, process_value, target, Target};
use super::{inject_input, render, Format, Settings};

fn settings(manual: bool) -> Settings {
    Settings {
        manual,
        sidecar: SidecarConfig {
            image: "weft-proxy:test".into(),
            version: "9.9.9".into(),
            control_plane_namespace: "weft".into(),
            trust_domain: "cluster.local".into(),
            cluster_domain: "cluster.local".into(),
            skip_inbound_ports: None,
            skip_outbound_ports: None,
        },
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

/// Injects `text` (one input called `in.yaml`); returns the output documents and the report.
fn inject(text: &str, manual: bool) -> (Vec<Value>, String) {
    let mut input = parse("in.yaml", text.as_bytes()).unwrap();
    let mut report = Report::default();
    inject_input(&mut input, &settings(manual), &mut report);
    (input.docs, report.render())
}

fn parse_error(text: &[u8]) -> String {
    format!("{:#}", parse("in.yaml", text).unwrap_err())
}

#[test]
fn the_pod_template_of_each_kind() {
    let template = |kind: &str, api: &str, body: &str| {
        let mut obj = yaml(&format!("apiVersion: {api}\nkind: {kind}\n{body}"));
        let t = target(Some(api), kind).unwrap();
        let m = obj.as_mapping_mut().unwrap();
        pod_template(m, t).map(|t| t.get("marker").cloned())
    };
    let spec_template = "spec:\n  template:\n    marker: here\n";
    for (kind, api) in [
        ("Deployment", "apps/v1"),
        ("StatefulSet", "apps/v1"),
        ("DaemonSet", "apps/v1"),
        ("ReplicaSet", "apps/v1"),
        ("Deployment", "extensions/v1beta1"),
        ("Job", "batch/v1"),
        ("ReplicationController", "v1"),
    ] {
        assert_eq!(
            template(kind, api, spec_template),
            Some(Some(s("here"))),
            "{kind}"
        );
    }
    let cronjob = "spec:\n  jobTemplate:\n    spec:\n      template:\n        marker: here\n";
    assert_eq!(
        template("CronJob", "batch/v1", cronjob),
        Some(Some(s("here")))
    );
    assert_eq!(
        template("Pod", "v1", "marker: here\n"),
        Some(Some(s("here")))
    );
    assert_eq!(target(Some("v1"), "Namespace"), Some(Target::Namespace));
    // Same kind, other API group: a CRD, left alone.
    assert_eq!(target(Some("batch.volcano.sh/v1alpha1"), "Job"), None);
    assert_eq!(target(Some("apps.openshift.io/v1"), "Deployment"), None);
    assert_eq!(target(Some("v1"), "Service"), None);
    // No apiVersion: the kind decides.
    assert_eq!(
        target(None, "DaemonSet"),
        Some(Target::Template(&["spec", "template"]))
    );
}

fn s(text: &str) -> Value {
    Value::String(text.into())
}

const DEPLOY: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: emojivoto
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        image: buoyantio/emojivoto-web:v11
";

#[test]
fn default_mode_annotates_the_template_only() {
    let (docs, report) = inject(DEPLOY, false);
    let template = &docs[0]["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["linkerd.io/inject"],
        s("enabled")
    );
    assert_eq!(
        template["spec"]["containers"].as_sequence().unwrap().len(),
        1
    );
    assert!(docs[0]["metadata"].get("annotations").is_none());
    assert!(
        report.starts_with("deployment \"web\" injected\n"),
        "{report}"
    );
}

#[test]
fn manual_mode_adds_the_sidecar_with_the_identity() {
    let (docs, _) = inject(DEPLOY, true);
    let spec = &docs[0]["spec"]["template"]["spec"];
    let proxy = &spec["containers"][1];
    assert_eq!(proxy["name"], s("weft-proxy"));
    let env: Vec<(&str, &str)> = proxy["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e.get("value")?.as_str()?)))
        .collect();
    assert!(env.contains(&(
        "WEFT_PROXY_IDENTITY_NAME",
        "web.emojivoto.serviceaccount.identity.weft.cluster.local"
    )));
    assert_eq!(spec["initContainers"][0]["name"], s("weft-init"));
    assert_eq!(spec["volumes"].as_sequence().unwrap().len(), 3);
    let annotations = &docs[0]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["weft.io/proxy-version"], s("9.9.9"));
}

#[test]
fn without_a_namespace_the_identity_uses_the_downward_api() {
    let text = DEPLOY
        .replace("  namespace: emojivoto\n", "")
        .replace("      serviceAccountName: web\n", "");
    let (docs, _) = inject(&text, true);
    let env = &docs[0]["spec"]["template"]["spec"]["containers"][1]["env"];
    assert_eq!(env[0]["name"], s("WEFT_POD_NAMESPACE"));
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"]["fieldPath"],
        s("metadata.namespace")
    );
    let identity = env
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == s("WEFT_PROXY_IDENTITY_NAME"))
        .unwrap();
    assert_eq!(
        identity["value"],
        s("default.$(WEFT_POD_NAMESPACE).serviceaccount.identity.weft.cluster.local")
    );
}

/// Every hostile shape is reported and passed through exactly as it came; none panics.
#[test]
fn hostile_shapes_pass_through_with_a_warning() {
    let cases = [
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: 5\n", "has no pod template (spec is not a mapping): not injected"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n", "has no pod template (spec is missing): not injected"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: [1]}\n", "(spec.template is not a mapping)"),
        ("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\nspec: {jobTemplate: {spec: 5}}\n", "(spec.jobTemplate.spec is not a mapping)"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: 5}}}\n", "spec.template.spec.containers is not a list"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {metadata: 5, spec: {containers: []}}}\n", "has spec.template.metadata that is not a mapping"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {metadata: {annotations: [a]}, spec: {containers: []}}}\n", "metadata.annotations that is not a mapping"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [], serviceAccountName: {a: b}}\n", "spec.serviceAccountName that is not a string"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [], volumes: 7}\n", "spec.volumes that is not a list"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [], initContainers: [{name: weft-init}]}\n", "already has spec.initContainers \"weft-init\" but no weft-proxy container"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x, annotations: {linkerd.io/inject: true}}\nspec: {containers: []}\n", "is annotated linkerd.io/inject: \"true\", not enabled, disabled or ingress"),
        ("apiVersion: v1\nkind: Namespace\nmetadata: 5\n", "namespace (unnamed) has metadata that is not a mapping: not annotated"),
        ("apiVersion: v1\nkind: List\nitems: {a: b}\n", "in.yaml: document 1 is a List whose items is not a list: passed through unchanged"),
        ("kind: [Deployment]\n", "in.yaml: document 1 is not a Kubernetes object (no kind)"),
        ("- just\n- a list\n", "in.yaml: document 1 is not a Kubernetes object (not a mapping)"),
        ("just a string\n", "in.yaml: document 1 is not a Kubernetes object (not a mapping)"),
        ("apiVersion: v1\nkind: List\nitems: [5, {kind: Service, metadata: {name: s}}]\n", "in.yaml: document 1, items[0] is not a Kubernetes object"),
    ];
    for (text, expected) in cases {
        // The sidecar's own fields matter only with --manual.
        let manual_only = ["serviceAccountName: {", "volumes: 7", "weft-init"];
        let modes: &[bool] = if manual_only.iter().any(|m| text.contains(m)) {
            &[true]
        } else {
            &[false, true]
        };
        for &manual in modes {
            let original = parse("in.yaml", text.as_bytes()).unwrap().docs;
            let (docs, report) = inject(text, manual);
            assert!(
                report.contains(expected),
                "{text}: manual={manual}: {report}"
            );
            assert!(report.contains("‼"), "{text}: {report}");
            assert_eq!(docs, original, "{text}: manual={manual}: changed");
        }
    }
}

#[test]
fn lists_nested_too_deeply_are_passed_through() {
    let mut value: Value = yaml("{kind: Service, metadata: {name: s}}");
    for _ in 0..12 {
        let mut list = Mapping::new();
        list.insert(s("kind"), s("List"));
        list.insert(s("items"), Value::Sequence(vec![value]));
        value = Value::Mapping(list);
    }
    let mut report = Report::default();
    let original = value.clone();
    process_value(&mut value, "x", &settings(false), &mut report, 0);
    assert_eq!(value, original);
    assert!(
        report.render().contains("nested more than 8 deep"),
        "{}",
        report.render()
    );
}

#[test]
fn outcomes_of_the_checks() {
    let pod = |extra: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  {extra}\nspec:\n  containers:\n  - name: app\n    ports:\n    - containerPort: 53\n      protocol: UDP\n    - containerPort: 53\n      protocol: TCP\n    - containerPort: 5353\n      protocol: udp\n")
    };
    let (_, report) = inject(&pod(""), true);
    assert!(report.starts_with("‼ pod \"p\" has UDP ports (53/UDP, 5353/UDP): UDP is not proxied\npod \"p\" injected\n"), "{report}");
    let (_, report) = inject(&pod("annotations: {linkerd.io/inject: disabled}"), false);
    assert!(
        report.starts_with("‼ pod \"p\" is annotated linkerd.io/inject: disabled: not injected\n"),
        "{report}"
    );
    let (_, report) = inject(&pod("annotations: {linkerd.io/inject: Enabled}"), false);
    assert!(
        report.starts_with("pod \"p\" already injected\n"),
        "{report}"
    );
    let (_, report) = inject(&pod("annotations: {linkerd.io/inject: ingress}"), true);
    assert!(
        report.contains("ingress, which only the injector webhook supports: not injected"),
        "{report}"
    );
    let (_, report) = inject("apiVersion: v1\nkind: Pod\nmetadata: {generateName: job-}\nspec: {hostNetwork: true, containers: [{name: a}]}\n", false);
    assert!(
        report.starts_with("‼ pod \"job-\" uses hostNetwork: not injected\n"),
        "{report}"
    );
    let (_, report) = inject("apiVersion: v1\nkind: Pod\nmetadata: {name: l}\nspec: {containers: [{name: linkerd-proxy}]}\n", true);
    assert!(
        report.contains("already has a linkerd-proxy container: not injected"),
        "{report}"
    );
    // A workload annotated disabled on its own metadata (not the template's) is honoured too.
    let text = DEPLOY.replace(
        "  namespace: emojivoto\n",
        "  namespace: emojivoto\n  annotations:\n    linkerd.io/inject: disabled\n",
    );
    let (_, report) = inject(&text, true);
    assert!(
        report.starts_with("‼ deployment \"web\" is annotated linkerd.io/inject: disabled"),
        "{report}"
    );
}

#[test]
fn reports_count_everything() {
    let mut r = Report::default();
    r.record("deployment \"a\"", &Outcome::Injected { warnings: vec![] });
    r.record("namespace \"n\"", &Outcome::Annotated);
    r.record("service \"s\"", &Outcome::Skipped);
    r.record(
        "pod \"p\"",
        &Outcome::NotInjected("uses hostNetwork".into()),
    );
    assert_eq!(
        r.render(),
        "deployment \"a\" injected\nnamespace \"n\" annotated\nservice \"s\" skipped\n\
         ‼ pod \"p\" uses hostNetwork: not injected\n\
         summary: 1 injected, 1 annotated, 0 already injected or annotated, 1 not injected, 1 skipped (1 warning)\n"
    );
}

#[test]
fn parse_errors_name_the_document_line_and_column() {
    let err = parse_error(b"kind: Service\n---\nkind: Pod\nmetadata:\n  name: [x\n---\nkind: X\n");
    assert!(err.starts_with("in.yaml: document 2, line "), "{err}");
    assert!(
        !err.contains("at line 6 column 1"),
        "the location is said once: {err}"
    );
    let err = parse_error(b"a: 1\n---\nb: *nope\n");
    assert!(
        err.starts_with("in.yaml: document 2, line 3, column 4: unknown anchor"),
        "{err}"
    );
    let err = parse_error(b"kind: Pod\n\x00\x01\x02 garbage\n");
    assert_eq!(
        err,
        "in.yaml: line 2, column 1: control character U+0000 is not allowed in YAML (a binary file?)"
    );
    let err = parse_error(b"kind: Pod\nname: \xff\xfe\n");
    assert_eq!(
        err,
        "in.yaml: line 2, column 7: not UTF-8 text (a binary file?)"
    );
    let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    let err = parse_error(deep.as_bytes());
    assert!(err.contains("document 1, line 1, column"), "{err}");
    assert!(err.contains("recursion limit exceeded"), "{err}");
    let deep = format!(
        "a:{}",
        (0..300)
            .map(|i| format!("\n{}b:", " ".repeat(i + 1)))
            .collect::<String>()
    );
    let err = parse_error(deep.as_bytes());
    assert!(err.contains("recursion limit exceeded"), "{err}");
    let err = parse_error(b"{\"kind\": \"Pod\"}\n{\"kind\": \"Pod\",}\n");
    assert!(
        err.starts_with("in.yaml: document 2, line 2, column "),
        "{err}"
    );
    // A billion laughs is refused, not expanded.
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (i, prev) in ('b'..='j').zip('a'..) {
        laughs.push_str(&format!("{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let err = parse_error(laughs.as_bytes());
    assert!(err.contains("repetition limit exceeded"), "{err}");
}

#[test]
fn streams_empty_documents_and_json() {
    let input = parse(
        "in.yaml",
        b"---\nkind: A\n---\n---\n# only a comment\n---\nkind: B\n---\n",
    )
    .unwrap();
    let kinds: Vec<Option<&str>> = input
        .docs
        .iter()
        .map(|d| d.get("kind").and_then(Value::as_str))
        .collect();
    assert!(
        kinds.contains(&Some("A")) && kinds.contains(&Some("B")),
        "{kinds:?}"
    );
    let out = render(&[input], Format::Yaml).unwrap();
    assert_eq!(out, "kind: A\n---\nkind: B\n");

    let input = parse("in.json", b"{\"kind\": \"B\", \"a\": 1}\n{\"kind\": \"A\"}").unwrap();
    assert_eq!(input.docs.len(), 2);
    assert_eq!(
        render(&[input], Format::Yaml).unwrap(),
        "kind: B\na: 1\n---\nkind: A\n"
    );
    // `{` that is not JSON but is YAML.
    let input = parse("in.yaml", b"{kind: A, b: [1, 2]}\n").unwrap();
    assert_eq!(input.docs[0]["b"][1], yaml("2"));
    let empty = Input {
        name: "e".into(),
        docs: vec![Value::Null],
    };
    assert_eq!(render(&[empty], Format::Json).unwrap(), "");
}

#[test]
fn octal_modes_are_read_as_kubernetes_reads_them() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a}]\n  volumes:\n  - name: s\n    secret:\n      secretName: s\n      defaultMode: 0644\n      items: [{key: k, path: p, mode: 0400}]\n  - name: c\n    configMap: {name: c, defaultMode: 420}\nmode: 0644\n";
    let (docs, _) = inject(text, false);
    let volumes = &docs[0]["spec"]["volumes"];
    assert_eq!(volumes[0]["secret"]["defaultMode"], yaml("420"));
    assert_eq!(volumes[0]["secret"]["items"][0]["mode"], yaml("256"));
    assert_eq!(volumes[1]["configMap"]["defaultMode"], yaml("420"));
    // Outside `volumes`, a string stays a string.
    assert_eq!(docs[0]["mode"], s("0644"));
}
