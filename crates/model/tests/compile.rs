//! Compilation: precedence, Service annotation defaults, route order, backends, bad
//! annotation values, and the JSON form of the policy.

mod common;

use common::{parse_ok, policy, request, service, stream};
use std::time::Duration;
use weft_model::policy::{PathMatch, RequestInfo, RequestMatch, ServiceRef, ValueMatch};
use weft_model::{
    compile, ErrorClass, FailureAccrual, GrpcCode, Override, PolicySource, RetryBudget, StatusRange,
};

const WEB_SVC_ANNOTATED: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web-svc
  namespace: emojivoto
  annotations:
    retry.linkerd.io/http: gateway-error
    timeout.linkerd.io/request: 5s
spec:
  selector: {app: web-svc}
  ports:
    - name: http
      port: 80
      targetPort: 8080
"#;

const WEB_ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-api
  namespace: emojivoto
  annotations:
    retry.linkerd.io/http: "5xx, 429"
    retry.linkerd.io/limit: "2"
spec:
  parentRefs:
    - {name: web-svc, kind: Service, group: "", port: 80}
  rules:
    - matches:
        - path: {type: PathPrefix, value: /api}
"#;

const WEB_PROFILE: &str = r#"apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web-svc.emojivoto.svc.cluster.local
  namespace: emojivoto
spec:
  routes:
    - name: GET /api/list
      condition: {method: GET, pathRegex: /api/list}
      isRetryable: true
"#;

#[test]
fn service_profile_wins_over_httproute_and_says_so() {
    let objects = parse_ok(
        "web.yaml",
        &stream(&[WEB_SVC_ANNOTATED, WEB_ROUTE, WEB_PROFILE]),
    );
    let policies = compile(&objects);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    assert_eq!(web.source, PolicySource::ServiceProfile);
    let by = "ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local";
    assert_eq!(
        web.overridden,
        vec![
            Override {
                by: by.into(),
                ignored: "HTTPRoute emojivoto/web-api".into(),
                annotations: vec![
                    "retry.linkerd.io/http".into(),
                    "retry.linkerd.io/limit".into()
                ],
            },
            Override {
                by: by.into(),
                ignored: "Service emojivoto/web-svc annotations".into(),
                annotations: vec![
                    "retry.linkerd.io/http".into(),
                    "timeout.linkerd.io/request".into()
                ],
            },
        ]
    );
    assert_eq!(
        web.overridden[0].to_string(),
        "HTTPRoute emojivoto/web-api is ignored because ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local takes precedence (annotations retry.linkerd.io/http, retry.linkerd.io/limit)"
    );
    // The profile's routes are used; none of the annotations leak in.
    assert_eq!(web.routes[0].name, "GET /api/list");
    assert_eq!(web.routes.last().map(|r| r.name.as_str()), Some("default"));
    assert!(web.routes.last().and_then(|r| r.retry.as_ref()).is_none());
    assert_eq!(web.routes.last().and_then(|r| r.timeouts.request), None);
}

#[test]
fn a_profile_with_only_a_budget_tunes_annotation_retries() {
    let budget_only = r#"apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web-svc.emojivoto.svc.cluster.local
  namespace: emojivoto
spec:
  retryBudget:
    retryRatio: 0.05
    minRetriesPerSecond: 1
    ttl: 1m
"#;
    let objects = parse_ok(
        "web.yaml",
        &stream(&[WEB_SVC_ANNOTATED, WEB_ROUTE, budget_only]),
    );
    let policies = compile(&objects);
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    assert_eq!(web.source, PolicySource::HttpRoute);
    assert!(web.overridden.is_empty());
    assert_eq!(
        web.retry_budget,
        RetryBudget {
            retry_ratio: 0.05,
            min_retries_per_second: 1,
            ttl: Duration::from_secs(60)
        }
    );
    let retry = web.routes[0].retry.as_ref().expect("route retries");
    assert_eq!(
        retry.http_statuses,
        vec![
            StatusRange { min: 429, max: 429 },
            StatusRange { min: 500, max: 599 }
        ]
    );
}

#[test]
fn a_traffic_split_also_takes_over_like_dst_overrides() {
    let split = r#"apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: web-split, namespace: emojivoto}
spec:
  service: web-svc
  backends:
    - {service: web-svc, weight: 3}
    - {service: web-canary, weight: 1}
"#;
    let objects = parse_ok(
        "web.yaml",
        &stream(&[
            WEB_SVC_ANNOTATED,
            &service("emojivoto", "web-canary", 80),
            WEB_ROUTE,
            split,
        ]),
    );
    let policies = compile(&objects);
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    assert_eq!(web.source, PolicySource::ServiceProfile);
    assert_eq!(web.overridden.len(), 2);
    assert!(web
        .overridden
        .iter()
        .all(|o| o.by == "TrafficSplit emojivoto/web-split"));
    assert_eq!(
        web.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        vec![3_000, 1_000]
    );
}

#[test]
fn service_annotations_are_defaults_for_routes() {
    let own_retry = r#"apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: own-retry
  namespace: emojivoto
  annotations:
    retry.linkerd.io/limit: "3"
spec:
  parentRefs: [{name: web-svc, kind: Service, group: core}]
  rules:
    - matches: [{path: {type: Exact, value: /api/vote}}]
      timeouts: {request: 3s}
"#;
    let inherits = r#"apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: inherits
  namespace: emojivoto
  annotations:
    timeout.linkerd.io/request: 1s
spec:
  parentRefs: [{name: web-svc, kind: Service, group: core, port: 80}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      timeouts: {request: 3s, backendRequest: 500ms}
"#;
    let objects = parse_ok(
        "web.yaml",
        &stream(&[WEB_SVC_ANNOTATED, own_retry, inherits]),
    );
    let policies = compile(&objects);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    let names: Vec<_> = web.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["own-retry", "inherits"], "exact path first");

    // own-retry: its retry group replaces the Service's (5xx by default, limit 3); without
    // timeout annotations, its `timeouts` field beats the Service's 5s.
    let own = &web.routes[0];
    let retry = own.retry.as_ref().expect("retries");
    assert_eq!(retry.http_statuses, vec![StatusRange::SERVER_ERRORS]);
    assert_eq!(retry.limit, 3);
    assert_eq!(own.timeouts.request, Some(Duration::from_secs(3)));

    // inherits: the Service's retries (gateway-error, limit 1); its own timeout annotation
    // beats its `timeouts` field, which still gives the backend timeout.
    let inherited = &web.routes[1];
    let retry = inherited.retry.as_ref().expect("retries");
    assert_eq!(
        retry.http_statuses,
        vec![StatusRange { min: 502, max: 504 }]
    );
    assert_eq!(retry.limit, 1);
    assert_eq!(inherited.timeouts.request, Some(Duration::from_secs(1)));
    assert_eq!(
        inherited.timeouts.response,
        Some(Duration::from_millis(500))
    );
}

#[test]
fn a_service_alone_gets_a_default_route_from_its_annotations() {
    let grpc = r#"apiVersion: v1
kind: Service
metadata:
  name: emoji-svc
  namespace: emojivoto
  annotations:
    retry.linkerd.io/grpc: "unavailable, deadline-exceeded"
    retry.linkerd.io/timeout: 250ms
    timeout.linkerd.io/idle: 1m30s
spec:
  ports:
    - {name: grpc, port: 8080}
    - {name: prom, port: 8801}
"#;
    let policies = compile(&parse_ok("emoji.yaml", grpc));
    assert_eq!(policies.services.len(), 2, "one policy per port");
    let emoji = policy(&policies, "emoji-svc.emojivoto.svc.cluster.local:8080");
    assert_eq!(emoji.source, PolicySource::Default);
    let route = &emoji.routes[0];
    assert_eq!(route.name, "default");
    assert_eq!(route.condition, RequestMatch::All(vec![]));
    let retry = route.retry.as_ref().expect("retries");
    assert!(retry.http_statuses.is_empty(), "gRPC conditions only");
    assert_eq!(
        retry.grpc_codes,
        vec![GrpcCode::DeadlineExceeded, GrpcCode::Unavailable]
    );
    assert_eq!(retry.limit, 1, "the limit defaults to 1");
    assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(250)));
    assert_eq!(route.timeouts.idle, Some(Duration::from_secs(90)));
    assert_eq!(policies.for_service("emojivoto", "emoji-svc").count(), 2);
}

#[test]
fn bad_annotation_values_are_errors_and_the_route_stays() {
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-api
  namespace: emojivoto
  annotations:
    retry.linkerd.io/http: "5xx, 600"
    retry.linkerd.io/limit: "2"
    timeout.linkerd.io/request: 2 s
    timeout.linkerd.io/response: 1s
    retry.linkerd.io/htpp: 5xx
spec:
  parentRefs: [{name: web-svc, kind: Service, group: core, port: 80}]
  rules:
    - matches: [{path: {value: /api}}]
"#;
    let objects = parse_ok("route.yaml", &stream(&[WEB_SVC_ANNOTATED, route]));
    let policies = compile(&objects);
    let errors: Vec<_> = policies.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![
            "route.yaml:16 (document 2): HTTPRoute emojivoto/web-api: metadata.annotations[retry.linkerd.io/http]: 600 is not an HTTP status: status codes go from 100 to 599; retries from this HTTPRoute's annotations are turned off (its routes are kept)",
            r#"route.yaml:16 (document 2): HTTPRoute emojivoto/web-api: metadata.annotations[timeout.linkerd.io/request]: "2 s" is not a duration: "2" has no unit (expected e.g. 300ms, 2s or 1m30s); this timeout is not applied (the routes are kept)"#,
        ]
    );
    assert!(policies
        .errors
        .iter()
        .all(|e| e.class == ErrorClass::Annotation));
    assert_eq!(policies.warnings.len(), 1);
    assert_eq!(
        policies.warnings[0].field.as_deref(),
        Some("metadata.annotations[retry.linkerd.io/htpp]")
    );
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    assert_eq!(web.routes.len(), 1, "the route is kept");
    let kept = &web.routes[0];
    assert!(kept.retry.is_none(), "no retries rather than guessed ones");
    assert_eq!(kept.timeouts.request, None);
    assert_eq!(kept.timeouts.response, Some(Duration::from_secs(1)));
}

#[test]
fn routes_are_ordered_by_gateway_precedence() {
    let routes = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-route, namespace: shop}
spec:
  parentRefs: [{name: api, kind: Service, group: core}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: api, port: 80}]
    - matches:
        - {path: {type: PathPrefix, value: /v1/}}
        - {path: {type: PathPrefix, value: /v1/items}, method: GET}
    - matches:
        - path: {type: PathPrefix, value: /v1/items}
          headers: [{name: X-Canary, value: "true"}]
      backendRefs:
        - {name: api-canary, port: 80, weight: 1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-route, namespace: shop}
spec:
  parentRefs: [{name: api, kind: Service, group: core, port: 80}]
  rules:
    - matches:
        - {path: {type: Exact, value: /v1/items/special}}
        - {path: {type: RegularExpression, value: "/v1/items/[0-9]+"}}
"#;
    let objects = parse_ok(
        "routes.yaml",
        &stream(&[
            &service("shop", "api", 80),
            &service("shop", "api-canary", 80),
            routes,
        ]),
    );
    let policies = compile(&objects);
    assert!(policies.warnings.is_empty(), "{:?}", policies.warnings);
    let api = policy(&policies, "api.shop.svc.cluster.local:80");
    let order: Vec<_> = api.routes.iter().map(|r| r.origin.as_str()).collect();
    assert_eq!(
        order,
        vec![
            "HTTPRoute shop/a-route rules[0]", // Exact
            "HTTPRoute shop/a-route rules[0]", // RegularExpression
            "HTTPRoute shop/b-route rules[1]", // /v1/items with a method
            "HTTPRoute shop/b-route rules[2]", // /v1/items with a header
            "HTTPRoute shop/b-route rules[1]", // /v1/
            "HTTPRoute shop/b-route rules[0]", // /
        ]
    );
    let pick = |req: &RequestInfo<'_>| api.route_for(req).map(|r| r.origin.clone());
    assert_eq!(
        pick(&request("GET", "/v1/items/42")).as_deref(),
        Some("HTTPRoute shop/a-route rules[0]")
    );
    assert_eq!(
        pick(&request("GET", "/v1/items")).as_deref(),
        Some("HTTPRoute shop/b-route rules[1]")
    );
    let canary = RequestInfo {
        method: "POST",
        path: "/v1/items",
        headers: &[("x-canary", "true")],
        query: &[],
    };
    assert_eq!(
        pick(&canary).as_deref(),
        Some("HTTPRoute shop/b-route rules[2]")
    );
    assert_eq!(
        pick(&request("POST", "/v1/items")).as_deref(),
        Some("HTTPRoute shop/b-route rules[1]")
    );
    assert_eq!(
        pick(&request("GET", "/")).as_deref(),
        Some("HTTPRoute shop/b-route rules[0]")
    );

    let header_route = &api.routes[3];
    assert_eq!(
        header_route.condition,
        RequestMatch::All(vec![
            RequestMatch::Path(PathMatch::Prefix("/v1/items".into())),
            RequestMatch::Header {
                name: "x-canary".into(),
                value: ValueMatch::Exact("true".into())
            },
        ])
    );
    assert_eq!(header_route.backends.len(), 1);
    assert_eq!(
        header_route.backends[0].authority,
        "api-canary.shop.svc.cluster.local:80"
    );
    assert_eq!(header_route.backends[0].weight, 1_000);
    assert_eq!(
        header_route.backends[0].service,
        Some(ServiceRef {
            namespace: "shop".into(),
            name: "api-canary".into(),
            port: 80
        })
    );
}

#[test]
fn profile_dst_overrides_and_response_classes() {
    let profile = r#"apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: books.shop.svc.cluster.local
  namespace: shop
spec:
  routes:
    - name: GET /books
      condition:
        all:
          - method: GET
          - not: {pathRegex: /books/admin.*}
      isRetryable: "true"
      responseClasses:
        - condition: {status: {min: 503, max: 503}}
          isFailure: false
        - condition: {any: [{status: {min: 429, max: 429}}, {status: {min: 500}}]}
          isFailure: true
  dstOverrides:
    - authority: books.shop.svc.cluster.local:7000
      weight: 750m
    - authority: books-v2.shop.svc.cluster.local
      weight: 250m
"#;
    let objects = parse_ok(
        "books.yaml",
        &stream(&[&service("shop", "books", 7000), profile]),
    );
    let policies = compile(&objects);
    let books = policy(&policies, "books.shop.svc.cluster.local:7000");
    let retry = books.routes[0].retry.as_ref().expect("retryable");
    assert_eq!(
        retry.http_statuses,
        vec![
            StatusRange { min: 429, max: 429 },
            StatusRange { min: 500, max: 502 },
            StatusRange { min: 504, max: 599 },
        ]
    );
    let backends: Vec<_> = books
        .backends
        .iter()
        .map(|b| (b.authority.as_str(), b.weight))
        .collect();
    assert_eq!(
        backends,
        vec![
            ("books.shop.svc.cluster.local:7000", 750),
            ("books-v2.shop.svc.cluster.local:7000", 250),
        ]
    );
    assert!(books
        .route_for(&request("GET", "/books/1"))
        .is_some_and(|r| r.name == "GET /books"));
    assert!(books
        .route_for(&request("GET", "/books/admin/x"))
        .is_some_and(|r| r.name == "default"));
}

#[test]
fn quantity_weights_in_v1alpha1_splits() {
    let split = r#"apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: web-split, namespace: emojivoto}
spec:
  service: web
  backends:
    - {service: web, weight: 500m}
    - {service: web-canary, weight: "1"}
    - {service: web-next, weight: 0.25}
"#;
    let objects = parse_ok("split.yaml", split);
    let weft_model::Resource::TrafficSplit(spec) = &objects[0].resource else {
        panic!("not a split")
    };
    let weights: Vec<_> = spec.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, vec![500, 1_000, 250]);
}

#[test]
fn duplicates_and_conflicting_splits_are_reported() {
    let split = |name: &str| {
        format!("apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {{name: {name}, namespace: emojivoto}}\nspec:\n  service: web\n  backends: [{{service: web, weight: 1}}]\n")
    };
    let objects = parse_ok(
        "dup.yaml",
        &stream(&[
            &service("emojivoto", "web", 80),
            &split("a"),
            &split("b"),
            &split("a"),
        ]),
    );
    let policies = compile(&objects);
    let errors: Vec<_> = policies.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![
            "dup.yaml:21 (document 3): TrafficSplit emojivoto/b: spec.service: Service emojivoto/web is already split by TrafficSplit emojivoto/a; this split is ignored",
            "dup.yaml:28 (document 4): TrafficSplit emojivoto/a: TrafficSplit emojivoto/a is defined twice (first at dup.yaml:14 (document 2)); this one is ignored",
        ]
    );
    assert!(policies
        .errors
        .iter()
        .all(|e| e.class == ErrorClass::Reference));
}

#[test]
fn dangling_references_and_unsupported_features_are_warnings() {
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs:
    - {name: missing, kind: Service, group: core}
    - {name: api, kind: Service, group: core, port: 81}
    - {name: api, kind: Service, group: core, namespace: other}
    - {name: public, kind: Gateway}
  rules:
    - filters: [{type: RequestHeaderModifier}]
      backendRefs:
        - {name: nowhere, port: 80}
        - {name: bucket, kind: S3Bucket, group: example.com}
"#;
    let objects = parse_ok("r.yaml", &stream(&[&service("shop", "api", 80), route]));
    let policies = compile(&objects);
    let warnings: Vec<_> = policies
        .warnings
        .iter()
        .map(|w| {
            (
                w.class,
                w.field.clone().unwrap_or_default(),
                w.message.clone(),
            )
        })
        .collect();
    let expect =
        |class, field: &str, message: &str| (class, field.to_string(), message.to_string());
    assert_eq!(
        warnings,
        vec![
            expect(ErrorClass::Reference, "spec.parentRefs[0]", "Service shop/missing does not exist (yet): the route applies to nothing until it does"),
            expect(ErrorClass::Reference, "spec.parentRefs[1]", "Service shop/api has no port 81: the route applies to nothing"),
            expect(ErrorClass::Unsupported, "spec.parentRefs[2]", "routes for a Service in another namespace (other) are not supported yet; this parent is ignored"),
            expect(ErrorClass::Unsupported, "spec.rules[0].filters[0]", "RequestHeaderModifier filters are not applied by Weft yet; the rest of the rule is"),
            expect(ErrorClass::Reference, "spec.rules[0].backendRefs[0]", "Service shop/nowhere does not exist (yet): requests sent to it fail until it does"),
            expect(ErrorClass::Unsupported, "spec.rules[0].backendRefs[1]", "backends of kind S3Bucket are not supported; this backend is skipped"),
        ]
    );
    // Nothing attached to api:80, so it keeps its default route.
    let api = policy(&policies, "api.shop.svc.cluster.local:80");
    assert_eq!(api.source, PolicySource::Default);
}

#[test]
fn the_policy_serializes_to_json_and_back() {
    let objects = parse_ok(
        "web.yaml",
        &stream(&[WEB_SVC_ANNOTATED, WEB_ROUTE, WEB_PROFILE]),
    );
    let policies = compile(&objects);
    let json = match serde_json::to_value(&policies) {
        Ok(v) => v,
        Err(e) => panic!("serialize: {e}"),
    };
    let web = &json["services"]["web-svc.emojivoto.svc.cluster.local:80"];
    assert_eq!(web["source"], "service-profile");
    assert_eq!(web["routes"][0]["timeouts"]["request"], "10s");
    assert_eq!(web["retry_budget"]["ttl"], "10s");
    assert_eq!(web["routes"][0]["condition"]["all"][0]["method"], "GET");
    assert_eq!(web["routes"][0]["retry"]["http_statuses"][0]["min"], 500);
    assert_eq!(
        web["overridden"][0]["ignored"],
        "HTTPRoute emojivoto/web-api"
    );
    let back: weft_model::Policies = match serde_json::from_value(json) {
        Ok(p) => p,
        Err(e) => panic!("deserialize: {e}"),
    };
    assert_eq!(back, policies);
}

const WEB_SVC_ACCRUAL: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web-svc
  namespace: emojivoto
  annotations:
    balancer.linkerd.io/failure-accrual: consecutive
    balancer.linkerd.io/failure-accrual-consecutive-max-failures: "3"
    balancer.linkerd.io/failure-accrual-consecutive-min-penalty: 500ms
spec:
  selector: {app: web-svc}
  ports:
    - {name: http, port: 80, targetPort: 8080}
    - {name: admin, port: 9990}
"#;

#[test]
fn failure_accrual_from_service_annotations_on_every_port_and_source() {
    let objects = parse_ok(
        "web.yaml",
        &stream(&[
            WEB_SVC_ACCRUAL,
            WEB_PROFILE,
            &service("emojivoto", "emoji-svc", 8080),
        ]),
    );
    let policies = compile(&objects);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    assert!(policies.warnings.is_empty(), "{:?}", policies.warnings);
    let expected = Some(FailureAccrual {
        max_failures: 3,
        min_penalty: Duration::from_millis(500),
        max_penalty: Duration::from_secs(60),
        jitter_ratio: 0.5,
    });
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    assert_eq!(
        web.source,
        PolicySource::ServiceProfile,
        "a profile's routes win…"
    );
    assert_eq!(
        web.failure_accrual, expected,
        "…but accrual is the Service's"
    );
    assert!(
        web.overridden.is_empty(),
        "accrual annotations are not reported as overridden: {:?}",
        web.overridden
    );
    let admin = policy(&policies, "web-svc.emojivoto.svc.cluster.local:9990");
    assert_eq!(admin.failure_accrual, expected);
    let emoji = policy(&policies, "emoji-svc.emojivoto.svc.cluster.local:8080");
    assert_eq!(emoji.failure_accrual, None, "off without annotations");

    let json = match serde_json::to_value(web) {
        Ok(v) => v,
        Err(e) => panic!("serialize: {e}"),
    };
    assert_eq!(json["failure_accrual"]["min_penalty"], "500ms");
    assert_eq!(json["failure_accrual"]["max_penalty"], "1m");
}

#[test]
fn bad_failure_accrual_annotations_turn_it_off_and_name_the_annotation() {
    let svc = WEB_SVC_ACCRUAL.replace("\"3\"", "three");
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-api
  namespace: emojivoto
  annotations:
    balancer.linkerd.io/failure-accrual: consecutive
spec:
  parentRefs: [{name: web-svc, kind: Service, group: core, port: 80}]
  rules:
    - matches: [{path: {value: /api}}]
"#;
    let objects = parse_ok("web.yaml", &stream(&[&svc, route]));
    let policies = compile(&objects);
    let errors: Vec<_> = policies.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![
            r#"web.yaml:1: Service emojivoto/web-svc: metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-max-failures]: "three" is not a number of failures: expected a whole number of at least 1, like 7; failure accrual is turned off for this Service"#
        ]
    );
    assert!(policies
        .errors
        .iter()
        .all(|e| e.class == ErrorClass::Annotation));
    let warnings: Vec<_> = policies.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec!["web.yaml:16 (document 2): HTTPRoute emojivoto/web-api: metadata.annotations[balancer.linkerd.io/failure-accrual]: ignored: failure accrual is configured on the Service, not on HTTPRoutes"]
    );
    let web = policy(&policies, "web-svc.emojivoto.svc.cluster.local:80");
    assert_eq!(web.failure_accrual, None, "off rather than guessed");
    assert_eq!(web.routes.len(), 1, "the rest of the policy is served");

    // Tuning without the mode, and a typo, are warnings.
    let svc = r#"apiVersion: v1
kind: Service
metadata:
  name: web-svc
  namespace: emojivoto
  annotations:
    balancer.linkerd.io/failure-accrual-consecutive-max-failures: "3"
    balancer.linkerd.io/failure-acrual: consecutive
spec:
  ports: [{port: 80}]
"#;
    let policies = compile(&parse_ok("svc.yaml", svc));
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    let warnings: Vec<_> = policies
        .warnings
        .iter()
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("ignored: failure accrual is off without balancer.linkerd.io/failure-accrual: consecutive"), "{warnings:?}");
    assert!(
        warnings[1].starts_with(
            "unknown annotation, ignored: Linkerd's are balancer.linkerd.io/failure-accrual, "
        ),
        "{warnings:?}"
    );
    assert_eq!(
        policy(&policies, "web-svc.emojivoto.svc.cluster.local:80").failure_accrual,
        None
    );
}
