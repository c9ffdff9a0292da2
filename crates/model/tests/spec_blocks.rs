//! Every YAML block of the spec (`shared/spec/linkerd-in-production.txt`, §4–§7 and the
//! enterprise scenario) parses unchanged and compiles to what the spec says it does.
//!
//! The blocks are kept verbatim in `tests/fixtures/spec/`; `fixtures_are_the_spec_verbatim`
//! checks them against the spec itself when it is present beside the repository.

mod common;

use common::{parse_ok, policy, request, service, stream};
use std::time::Duration;
use weft_model::policy::{PathMatch, RequestMatch};
use weft_model::{compile, Kind, PolicySource, Resource, RetryBudget, StatusRange};

const WEB_DEFAULT: &str = include_str!("fixtures/spec/web-default-httproute.yaml");
const WEB_SVC_PROFILE: &str = include_str!("fixtures/spec/web-svc-profile.yaml");
const WEB_SPLIT: &str = include_str!("fixtures/spec/web-split.yaml");
const PODINFO_FAILOVER: &str = include_str!("fixtures/spec/podinfo-failover-split.yaml");
const AUTH_FAILOVER: &str = include_str!("fixtures/spec/auth-failover-split.yaml");

const FIXTURES: [(&str, &str); 5] = [
    ("web-default-httproute.yaml", WEB_DEFAULT),
    ("web-svc-profile.yaml", WEB_SVC_PROFILE),
    ("web-split.yaml", WEB_SPLIT),
    ("podinfo-failover-split.yaml", PODINFO_FAILOVER),
    ("auth-failover-split.yaml", AUTH_FAILOVER),
];

/// The YAML blocks of the spec: from an `apiVersion:` line to the next blank line.
fn spec_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match &mut current {
            None if line.starts_with("apiVersion:") => current = Some(vec![line]),
            None => {}
            Some(lines) if line.trim().is_empty() => {
                blocks.push(format!("{}\n", lines.join("\n")));
                current = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    if let Some(lines) = current {
        blocks.push(format!("{}\n", lines.join("\n")));
    }
    blocks
}

#[test]
fn fixtures_are_the_spec_verbatim() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/spec/linkerd-in-production.txt");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("{} not found; the fixtures stand in for it", path.display());
        return;
    };
    let blocks = spec_blocks(&text);
    assert_eq!(
        blocks.len(),
        FIXTURES.len(),
        "the spec has {} YAML blocks",
        blocks.len()
    );
    for (block, (name, fixture)) in blocks.iter().zip(FIXTURES) {
        assert_eq!(
            block, fixture,
            "tests/fixtures/spec/{name} differs from the spec"
        );
        parse_ok(name, block);
    }
}

#[test]
fn every_block_parses_unchanged() {
    let kinds: Vec<Kind> = FIXTURES
        .iter()
        .flat_map(|(name, text)| parse_ok(name, text))
        .map(|o| o.kind())
        .collect();
    assert_eq!(
        kinds,
        vec![
            Kind::HttpRoute,
            Kind::ServiceProfile,
            Kind::TrafficSplit,
            Kind::TrafficSplit,
            Kind::TrafficSplit
        ]
    );
    // All of them together, as one stream, too.
    assert_eq!(
        parse_ok("all.yaml", &stream(&FIXTURES.map(|f| f.1))).len(),
        5
    );
}

#[test]
fn web_default_httproute_retries_and_timeouts() {
    let objects = parse_ok(
        "web.yaml",
        &stream(&[&service("emojivoto", "web", 80), WEB_DEFAULT]),
    );
    let policies = compile(&objects);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    assert!(policies.warnings.is_empty(), "{:?}", policies.warnings);
    let web = policy(&policies, "web.emojivoto.svc.cluster.local:80");
    assert_eq!(web.source, PolicySource::HttpRoute);
    assert_eq!(
        (web.namespace.as_str(), web.name.as_str(), web.port),
        ("emojivoto", "web", 80)
    );
    assert_eq!(web.routes.len(), 1);
    let route = &web.routes[0];
    assert_eq!(route.name, "web-default");
    assert_eq!(route.origin, "HTTPRoute emojivoto/web-default rules[0]");
    assert_eq!(
        route.condition,
        RequestMatch::Path(PathMatch::Prefix("/api".into()))
    );
    let retry = route.retry.as_ref().expect("retries are configured");
    assert_eq!(
        retry.http_statuses,
        vec![StatusRange { min: 500, max: 599 }]
    );
    assert!(retry.grpc_codes.is_empty());
    assert_eq!(retry.limit, 2);
    assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(300)));
    assert_eq!(route.timeouts.request, Some(Duration::from_secs(2)));
    assert_eq!(route.timeouts.response, Some(Duration::from_secs(1)));
    assert_eq!(route.timeouts.idle, None);
    // Annotation retries get the default budget too (Linkerd gives them none).
    assert_eq!(web.retry_budget, RetryBudget::default());
    assert_eq!(web.retry_budget.retry_ratio, 0.2);
    assert_eq!(web.retry_budget.min_retries_per_second, 10);
    assert_eq!(web.retry_budget.ttl, Duration::from_secs(10));
    // The backend is the Service itself.
    assert_eq!(web.backends.len(), 1);
    assert_eq!(
        web.backends[0].authority,
        "web.emojivoto.svc.cluster.local:80"
    );
    // PathPrefix is element-wise, and a request matching no route has none (404).
    assert!(web.route_for(&request("GET", "/api")).is_some());
    assert!(web.route_for(&request("GET", "/api/list")).is_some());
    assert!(web.route_for(&request("GET", "/apis")).is_none());
    assert!(web.route_for(&request("GET", "/")).is_none());
}

#[test]
fn web_svc_profile_routes_and_budget() {
    let objects = parse_ok(
        "web-svc.yaml",
        &stream(&[&service("emojivoto", "web-svc", 80), WEB_SVC_PROFILE]),
    );
    let policies = compile(&objects);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    assert!(policies.warnings.is_empty(), "{:?}", policies.warnings);
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    assert_eq!(web.source, PolicySource::ServiceProfile);
    let names: Vec<_> = web.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["GET /api/list", "POST /api/vote", "default"]);

    let list = &web.routes[0];
    assert_eq!(
        list.condition,
        RequestMatch::All(vec![
            RequestMatch::Method("GET".into()),
            RequestMatch::Path(PathMatch::Regex("/api/list".into())),
        ])
    );
    let retry = list.retry.as_ref().expect("GET /api/list is retryable");
    assert_eq!(
        retry.http_statuses,
        vec![StatusRange { min: 500, max: 599 }]
    );
    assert_eq!(retry.limit, weft_model::compile::PROFILE_RETRY_LIMIT);
    assert_eq!(list.timeouts.request, Some(Duration::from_millis(600)));

    let vote = &web.routes[1];
    assert!(vote.retry.is_none(), "POST /api/vote is not retryable");
    assert_eq!(
        vote.timeouts.request,
        Some(weft_model::compile::PROFILE_ROUTE_TIMEOUT)
    );

    assert_eq!(
        web.retry_budget,
        RetryBudget {
            retry_ratio: 0.1,
            min_retries_per_second: 5,
            ttl: Duration::from_secs(10),
        }
    );
    // Matching: the regex is a whole-path match; other requests take the default route.
    let route = |m, p| web.route_for(&request(m, p)).map(|r| r.name.as_str());
    assert_eq!(route("GET", "/api/list"), Some("GET /api/list"));
    assert_eq!(route("POST", "/api/vote"), Some("POST /api/vote"));
    assert_eq!(route("GET", "/api/list/extra"), Some("default"));
    assert_eq!(route("POST", "/api/list"), Some("default"));
}

#[test]
fn web_split_is_90_10() {
    let objects = parse_ok(
        "web-split.yaml",
        &stream(&[
            &service("emojivoto", "web", 80),
            &service("emojivoto", "web-canary", 80),
            WEB_SPLIT,
        ]),
    );
    let policies = compile(&objects);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    assert!(policies.warnings.is_empty(), "{:?}", policies.warnings);
    let web = policy(&policies, "web.emojivoto.svc.cluster.local:80");
    let backends: Vec<_> = web
        .backends
        .iter()
        .map(|b| (b.authority.as_str(), b.weight))
        .collect();
    assert_eq!(
        backends,
        vec![
            ("web.emojivoto.svc.cluster.local:80", 90_000),
            ("web-canary.emojivoto.svc.cluster.local:80", 10_000),
        ]
    );
    // The canary itself is not split.
    let canary = policy(&policies, "web-canary.emojivoto.svc.cluster.local:80");
    assert_eq!(canary.backends.len(), 1);
}

fn check_failover_split(text: &str, namespace: &str, primary: &str, standby: &str) {
    let objects = parse_ok(
        "failover.yaml",
        &stream(&[
            &service(namespace, primary, 80),
            &service(namespace, standby, 80),
            text,
        ]),
    );
    let split = objects
        .iter()
        .find(|o| o.kind() == Kind::TrafficSplit)
        .expect("the split");
    assert_eq!(split.metadata.failover_primary_service(), Some(primary));
    assert_eq!(
        split.metadata.failover_controlled_by(),
        Some("linkerd-failover")
    );
    let Resource::TrafficSplit(spec) = &split.resource else {
        panic!("not a TrafficSplit")
    };
    assert_eq!(spec.service, primary);
    let weights: Vec<_> = spec
        .backends
        .iter()
        .map(|b| (b.service.as_str(), b.weight))
        .collect();
    assert_eq!(weights, vec![(primary, 1_000), (standby, 0)]);

    let policies = compile(&objects);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    let apex = policy(
        &policies,
        &format!("{primary}.{namespace}.svc.cluster.local:80"),
    );
    let backends: Vec<_> = apex
        .backends
        .iter()
        .map(|b| (b.authority.clone(), b.weight))
        .collect();
    assert_eq!(
        backends,
        vec![
            (format!("{primary}.{namespace}.svc.cluster.local:80"), 1_000),
            (format!("{standby}.{namespace}.svc.cluster.local:80"), 0),
        ]
    );
}

#[test]
fn podinfo_failover_split() {
    check_failover_split(PODINFO_FAILOVER, "test", "podinfo", "podinfo-east");
}

#[test]
fn auth_failover_split() {
    check_failover_split(AUTH_FAILOVER, "payments", "auth", "auth-uswest2");
}

#[test]
fn failover_split_before_the_mirror_exists_is_a_warning() {
    let objects = parse_ok(
        "failover.yaml",
        &stream(&[&service("test", "podinfo", 9898), PODINFO_FAILOVER]),
    );
    let policies = compile(&objects);
    assert!(policies.errors.is_empty());
    let warnings: Vec<_> = policies.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec!["failover.yaml:14 (document 2): TrafficSplit test/podinfo: spec.backends[1].service: Service test/podinfo-east does not exist (yet): requests given to it fail until it does"]
    );
}
