//! Parsing: invalid objects are reported with file, document, line, kind/name and field path,
//! and never take down the valid ones; every kind Weft reads parses.

mod common;

use common::{parse_ok, policy};
use std::net::IpAddr;
use std::time::Duration;
use weft_model::meta::Exported;
use weft_model::{compile, parse_bytes, parse_documents, ErrorClass, Kind, ModelError, Resource};

const MIXED: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: emojivoto
spec:
  ports:
    - port: 80
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: web-split
  namespace: emojivoto
spec:
  service: web
  backends:
    - service: web
      weight: 90
    - service: web-canary
      weight: ten
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: emojivoto
---
apiVersion: v1
kind: Service
metadata:
  name: [broken
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-regex, namespace: emojivoto}
spec:
  parentRefs: [{name: web, kind: Service, group: core}]
  rules:
    - matches: [{path: {type: RegularExpression, value: "/api/(list"}}]
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: ok-split, namespace: emojivoto}
spec:
  service: web
  backends: [{service: web, weight: 1}]
"#;

fn messages(errors: &[ModelError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn invalid_objects_are_reported_and_valid_ones_compile() {
    let (objects, errors) = parse_documents("emojivoto.yaml", MIXED);
    let names: Vec<_> = objects.iter().map(|o| o.describe()).collect();
    assert_eq!(
        names,
        vec!["Service emojivoto/web", "TrafficSplit emojivoto/ok-split"]
    );

    assert_eq!(errors.len(), 4, "{:#?}", messages(&errors));
    assert_eq!(
        errors[0].to_string(),
        r#"emojivoto.yaml:21 (document 2): TrafficSplit emojivoto/web-split: spec.backends[1].weight: "ten" is not a weight: expected a whole number like 90 or a quantity like 500m"#
    );
    assert_eq!(errors[0].class, ErrorClass::Invalid);
    assert_eq!(errors[0].document, 2);
    assert_eq!(errors[0].kind.as_deref(), Some("TrafficSplit"));
    assert_eq!(errors[0].namespace.as_deref(), Some("emojivoto"));
    assert_eq!(errors[0].name.as_deref(), Some("web-split"));
    assert_eq!(errors[0].field.as_deref(), Some("spec.backends[1].weight"));

    assert_eq!(
        errors[1].to_string(),
        "emojivoto.yaml:23 (document 3): Deployment emojivoto/web: kind Deployment (apps/v1) is not read by Weft; it reads Service, ExternalWorkload, ServiceProfile, HTTPRoute, TrafficSplit, Link and List"
    );
    assert_eq!(errors[1].class, ErrorClass::UnsupportedKind);

    assert_eq!(errors[2].class, ErrorClass::Syntax);
    assert_eq!(errors[2].document, 4);
    let line = errors[2].line.unwrap_or(0);
    assert!((29..=33).contains(&line), "{}", errors[2]);
    assert!(errors[2]
        .to_string()
        .starts_with(&format!("emojivoto.yaml:{line} (document 4): ")));

    assert_eq!(
        errors[3].to_string(),
        r#"emojivoto.yaml:34 (document 5): HTTPRoute emojivoto/bad-regex: spec.rules[0].matches[0].path.value: "/api/(list" is not a valid regular expression: unclosed group"#
    );

    let policies = compile(&objects);
    let web = policy(&policies, "web.emojivoto.svc.cluster.local:80");
    assert_eq!(web.backends.len(), 1);
    assert_eq!(web.source, weft_model::PolicySource::ServiceProfile);
}

fn errors_of(text: &str) -> Vec<String> {
    let (objects, errors) = parse_documents("x.yaml", text);
    assert!(objects.is_empty(), "{objects:?}");
    messages(&errors)
}

#[test]
fn type_errors_name_the_field_and_line() {
    assert_eq!(
        errors_of("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n    - port: http\n"),
        vec![r#"x.yaml:6: Service default/web: spec.ports[0].port: "http" is not a port: expected a number from 1 to 65535"#]
    );
    assert_eq!(
        errors_of("apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s, namespace: n}\nspec:\n  backends: []\n"),
        vec!["x.yaml:5: TrafficSplit n/s: spec: missing field `service`"]
    );
    assert_eq!(
        errors_of("apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: a.b.svc.cluster.local, namespace: b}\nspec:\n  routes:\n    - name: r\n      condition: {method: GET}\n      timeout: 300\n"),
        vec![r#"x.yaml:8: ServiceProfile b/a.b.svc.cluster.local: spec.routes[0].timeout: 300 is not a duration: it has no unit (expected e.g. 300ms, 2s or 1m30s)"#]
    );
    assert_eq!(
        errors_of("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules:\n    - matches: [{path: {type: Prefix, value: /}}]\n"),
        vec!["x.yaml:6: HTTPRoute default/r: spec.rules[0].matches[0].path.type: unknown variant `Prefix`, expected one of `Exact`, `PathPrefix`, `RegularExpression`"]
    );
}

#[test]
fn validation_errors_name_every_bad_field() {
    let profile = r#"apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
    - condition: {}
    - name: ok
      condition: {method: GET}
      responseClasses:
        - condition: {status: {min: 504, max: 500}}
  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10m}
"#;
    let lines = errors_of(profile);
    assert_eq!(
        lines,
        vec![
            "x.yaml:1: ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local: spec.routes[0].name: every route needs a name",
            "x.yaml:1: ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local: spec.routes[0].condition: a condition needs at least one of method, pathRegex, all, any or not",
            "x.yaml:1: ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local: spec.routes[1].responseClasses[0].condition.status: min 504 is larger than max 500: no status can match",
            "x.yaml:1: ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local: spec.retryBudget.ttl: 10m is outside 1s-60s: the budget would forget retries too quickly or too slowly",
        ]
    );
    assert_eq!(
        errors_of("apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s, namespace: n}\nspec:\n  service: web\n  backends: [{service: a, weight: 0}, {service: a, weight: 0}]\n"),
        vec![
            "x.yaml:1: TrafficSplit n/s: spec.backends[1].service: a is listed twice",
            "x.yaml:1: TrafficSplit n/s: spec.backends: every backend has weight 0, so no request could be sent anywhere",
        ]
    );
    assert_eq!(
        errors_of("apiVersion: v1\nkind: Service\nmetadata: {name: Web_Svc}\nspec:\n  ports: [{port: 80}]\n"),
        vec![r#"x.yaml:1: Service default/Web_Svc: metadata.name: "Web_Svc" is not a Service name: lowercase letters, digits and '-', at most 63"#]
    );
    assert_eq!(
        errors_of("apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\nspec:\n  ports: [{port: 80}, {port: 81}]\n"),
        vec![
            "x.yaml:1: Service: spec.ports[0].name: every port needs a name when a Service has more than one",
            "x.yaml:1: Service: spec.ports[1].name: every port needs a name when a Service has more than one",
        ]
    );
}

#[test]
fn documents_that_are_not_objects() {
    assert_eq!(
        errors_of("just a string\n"),
        vec!["x.yaml:1: this document is not an object: expected a mapping with apiVersion, kind and metadata"]
    );
    assert_eq!(
        errors_of("---\nkind: Service\nmetadata: {name: a}\n"),
        vec!["x.yaml:2: Service default/a: apiVersion: missing: every object needs an apiVersion and a kind"]
    );
    assert_eq!(
        errors_of("apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: a}\nspec: {}\n"),
        vec!["x.yaml:1: TrafficSplit default/a: apiVersion split.smi-spec.io/v1alpha4 is not supported for TrafficSplit (supported: split.smi-spec.io/v1alpha2, split.smi-spec.io/v1alpha1)"]
    );
    // Empty documents and comments are nothing, not errors.
    let (objects, errors) = parse_documents("x.yaml", "# nothing\n---\n---\n# still nothing\n");
    assert!(objects.is_empty() && errors.is_empty());
    // Not UTF-8.
    let (_, errors) = parse_bytes("x.yaml", b"a: 1\nb: \xff\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(2));
    assert_eq!(errors[0].class, ErrorClass::Syntax);
}

#[test]
fn list_items_are_objects_with_their_own_paths() {
    let list = r#"apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: emojivoto}
    spec:
      ports: [{port: 80}]
  - apiVersion: split.smi-spec.io/v1alpha1
    kind: TrafficSplit
    metadata: {name: web-split, namespace: emojivoto}
    spec:
      service: web
      backends: [{service: web, weight: -1}]
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings}
"#;
    let (objects, errors) = parse_documents("list.yaml", list);
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].describe(), "Service emojivoto/web");
    assert_eq!(
        messages(&errors),
        vec![
            r#"list.yaml:1: TrafficSplit emojivoto/web-split: items[1].spec.backends[0].weight: "-1" is not a weight: weights cannot be negative"#,
            "list.yaml:1: ConfigMap default/settings: kind ConfigMap (v1) is not read by Weft; it reads Service, ExternalWorkload, ServiceProfile, HTTPRoute, TrafficSplit, Link and List",
        ]
    );
}

#[test]
fn external_workloads_parse() {
    let text = r#"apiVersion: workload.linkerd.io/v1beta1
kind: ExternalWorkload
metadata:
  name: web-1
  namespace: emojivoto
  labels:
    app: web-svc
    version: 2
spec:
  meshTLS:
    identity: "spiffe://root.linkerd.cluster.local/web"
    serverName: web-1.emojivoto.cluster.local
  ports:
    - {name: http, port: 8080}
  workloadIPs:
    - ip: 127.0.1.5
status:
  conditions: []
"#;
    let objects = parse_ok("web-1.yaml", text);
    let Resource::ExternalWorkload(spec) = &objects[0].resource else {
        panic!("not an ExternalWorkload")
    };
    assert_eq!(
        spec.mesh_tls.identity,
        "spiffe://root.linkerd.cluster.local/web"
    );
    assert_eq!(
        spec.workload_ips[0].ip,
        "127.0.1.5"
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    );
    assert_eq!(
        objects[0].metadata.label("version"),
        Some("2"),
        "unquoted label values are text"
    );
    assert_eq!(spec.named_ports().get("http"), Some(&8080));

    let svc = parse_ok(
        "web-svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-svc, namespace: emojivoto}\nspec:\n  selector: {app: web-svc}\n  ports: [{port: 80, targetPort: http}]\n",
    );
    let Resource::Service(svc) = &svc[0].resource else {
        panic!("not a Service")
    };
    assert!(svc.selects(&objects[0].metadata.labels));
    assert_eq!(svc.ports[0].target_port_on(&spec.named_ports()), Some(8080));

    assert_eq!(
        errors_of("apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {name: w}\nspec:\n  meshTLS: {identity: a, serverName: b}\n  workloadIPs: [{ip: 127.0.1}]\n"),
        vec![r#"x.yaml:6: ExternalWorkload default/w: spec.workloadIPs[0].ip: "127.0.1" is not an IP address: expected e.g. 127.0.1.5 or ::1"#]
    );
}

#[test]
fn links_parse() {
    let text = r#"apiVersion: multicluster.linkerd.io/v1alpha1
kind: Link
metadata:
  name: east
  namespace: linkerd-multicluster
spec:
  clusterCredentialsSecret: cluster-credentials-east
  gatewayAddress: 127.0.2.1
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  gatewayPort: "4143"
  probeSpec:
    path: /ready
    period: 3s
    port: "4191"
  selector:
    matchLabels:
      mirror.linkerd.io/exported: "true"
  remoteDiscoverySelector:
    matchLabels:
      mirror.linkerd.io/exported: remote-discovery
  targetClusterDomain: cluster.local
  targetClusterLinkerdNamespace: linkerd
  targetClusterName: east
"#;
    let objects = parse_ok("link.yaml", text);
    assert_eq!(objects[0].kind(), Kind::Link);
    let Resource::Link(link) = &objects[0].resource else {
        panic!("not a Link")
    };
    assert_eq!(link.target_cluster_name, "east");
    assert_eq!(link.gateway_port, Some(4143));
    assert_eq!(link.gateway_address.as_deref(), Some("127.0.2.1"));
    let probe = link.probe_spec.clone().unwrap_or_default();
    assert_eq!(
        (probe.path.as_deref(), probe.port, probe.period),
        (Some("/ready"), Some(4191), Some(Duration::from_secs(3)))
    );

    // The exported label on a Service selects it for mirroring.
    let svc = parse_ok(
        "podinfo.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: podinfo\n  namespace: test\n  labels: {mirror.linkerd.io/exported: \"true\"}\nspec:\n  ports: [{port: 9898}]\n",
    );
    assert_eq!(
        svc[0].metadata.mirror_exported(),
        Ok(Some(Exported::Gateway))
    );
    let selector = link.selector.clone().unwrap_or_default();
    assert!(selector.matches(&svc[0].metadata.labels));
    assert!(!link
        .remote_discovery_selector
        .clone()
        .unwrap_or_default()
        .matches(&svc[0].metadata.labels));
}
