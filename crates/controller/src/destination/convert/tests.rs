use super::*;
use pb::request_match::Kind as M;
use pb::response_match::Kind as R;
use weft_model::policy::{Override, ServiceRef};
use weft_model::GrpcCode;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sample_policy() -> ServicePolicy {
    ServicePolicy {
        authority: "web.shop.svc.cluster.local:80".into(),
        namespace: "shop".into(),
        name: "web".into(),
        port: 80,
        source: PolicySource::ServiceProfile,
        routes: vec![
            Route {
                name: "GET /api/list".into(),
                origin: "ServiceProfile shop/web.shop.svc.cluster.local routes[0]".into(),
                condition: RequestMatch::All(vec![
                    RequestMatch::Method("GET".into()),
                    RequestMatch::Path(PathMatch::Regex("/api/list".into())),
                    RequestMatch::Not(Box::new(RequestMatch::Any(vec![
                        RequestMatch::Header {
                            name: "x-canary".into(),
                            value: ValueMatch::Exact("1".into()),
                        },
                        RequestMatch::QueryParam {
                            name: "debug".into(),
                            value: ValueMatch::Regex("t.*".into()),
                        },
                        RequestMatch::Path(PathMatch::Prefix("/api".into())),
                        RequestMatch::Path(PathMatch::Exact("/x".into())),
                    ]))),
                ]),
                retry: Some(RetryPolicy {
                    http_statuses: vec![
                        StatusRange { min: 502, max: 504 },
                        StatusRange { min: 429, max: 429 },
                    ],
                    grpc_codes: vec![GrpcCode::Unavailable, GrpcCode::DeadlineExceeded],
                    limit: 3,
                    per_try_timeout: Some(ms(300)),
                }),
                timeouts: Timeouts {
                    request: Some(ms(600)),
                    response: Some(Duration::from_micros(1500)),
                    idle: None,
                },
                response_classes: vec![ResponseClass {
                    condition: ResponseMatch::Any(vec![
                        ResponseMatch::Status(StatusRange { min: 500, max: 599 }),
                        ResponseMatch::Not(Box::new(ResponseMatch::All(vec![
                            ResponseMatch::Status(StatusRange { min: 200, max: 299 }),
                        ]))),
                    ]),
                    is_failure: true,
                }],
                backends: vec![],
            },
            Route {
                name: "default".into(),
                origin: "default".into(),
                condition: RequestMatch::All(vec![]),
                retry: None,
                timeouts: Timeouts::default(),
                response_classes: vec![],
                backends: vec![Backend {
                    authority: "web-canary.shop.svc.cluster.local:80".into(),
                    service: None,
                    weight: 500,
                }],
            },
        ],
        backends: vec![
            Backend {
                authority: "web.shop.svc.cluster.local:80".into(),
                service: Some(ServiceRef {
                    namespace: "shop".into(),
                    name: "web".into(),
                    port: 80,
                }),
                weight: 90_000,
            },
            Backend {
                authority: "web-canary.shop.svc.cluster.local:80".into(),
                service: None,
                weight: 10_000,
            },
        ],
        retry_budget: RetryBudget {
            retry_ratio: 0.1,
            min_retries_per_second: 5,
            ttl: Duration::from_secs(10),
        },
        failure_accrual: None,
        overridden: vec![Override {
            by: "ServiceProfile shop/web.shop.svc.cluster.local".into(),
            ignored: "HTTPRoute shop/web-default".into(),
            annotations: vec!["retry.linkerd.io/http".into()],
        }],
    }
}

#[test]
fn durations_round_up_to_whole_milliseconds() {
    assert_eq!(millis(Duration::ZERO), 0);
    assert_eq!(millis(ms(600)), 600);
    assert_eq!(
        millis(Duration::from_micros(1)),
        1,
        "never rounds to 'no timeout'"
    );
    assert_eq!(millis(Duration::from_micros(1500)), 2);
    assert_eq!(millis(Duration::from_secs(90)), 90_000);
    assert_eq!(millis(Duration::MAX), u64::MAX);
    assert_eq!(opt_millis(None), 0);
}

#[test]
fn a_whole_policy_converts_field_by_field() {
    let p = service_policy(&sample_policy());
    assert_eq!(p.authority, "web.shop.svc.cluster.local:80");
    assert_eq!(
        (p.namespace.as_str(), p.name.as_str(), p.port),
        ("shop", "web", 80)
    );
    assert_eq!(p.source, pb::PolicySource::ServiceProfile as i32);
    assert_eq!(
        p.retry_budget,
        Some(pb::RetryBudget {
            retry_ratio: 0.1,
            min_retries_per_second: 5,
            ttl_ms: 10_000
        })
    );
    assert_eq!(
        p.failure_accrual, None,
        "off unless the Service turns it on"
    );
    assert_eq!(p.fail_fast_ms, 0);
    assert_eq!(
        p.overridden,
        vec!["HTTPRoute shop/web-default is ignored because ServiceProfile shop/web.shop.svc.cluster.local takes precedence (annotations retry.linkerd.io/http)"]
    );
    let weights: Vec<_> = p
        .backends
        .iter()
        .map(|b| (b.authority.as_str(), b.weight))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("web.shop.svc.cluster.local:80", 90_000),
            ("web-canary.shop.svc.cluster.local:80", 10_000)
        ]
    );

    assert_eq!(p.routes.len(), 2);
    let list = &p.routes[0];
    assert_eq!(list.name, "GET /api/list");
    assert_eq!(
        list.retry,
        Some(pb::RetryPolicy {
            http_statuses: vec![
                pb::StatusRange { min: 502, max: 504 },
                pb::StatusRange { min: 429, max: 429 }
            ],
            grpc_codes: vec![14, 4],
            limit: 3,
            per_try_timeout_ms: 300,
        })
    );
    assert_eq!(
        list.timeouts,
        Some(pb::Timeouts {
            request_ms: 600,
            response_ms: 2,
            idle_ms: 0
        })
    );
    let class = &list.response_classes[0];
    assert!(class.is_failure);
    let Some(R::Any(any)) = class.condition.as_ref().and_then(|c| c.kind.clone()) else {
        panic!("{class:?}")
    };
    assert_eq!(
        any.matches[0].kind,
        Some(R::Status(pb::StatusRange { min: 500, max: 599 }))
    );
    let Some(R::Not(not)) = &any.matches[1].kind else {
        panic!("{any:?}")
    };
    let Some(R::All(all)) = &not.kind else {
        panic!("{not:?}")
    };
    assert_eq!(
        all.matches[0].kind,
        Some(R::Status(pb::StatusRange { min: 200, max: 299 }))
    );

    let default = &p.routes[1];
    assert_eq!(default.retry, None, "not retryable");
    assert_eq!(
        default.condition,
        Some(pb::RequestMatch {
            kind: Some(M::All(pb::MatchList { matches: vec![] }))
        }),
        "always true"
    );
    assert_eq!(default.timeouts, Some(pb::Timeouts::default()));
    assert_eq!(default.backends[0].weight, 500);
}

#[test]
fn request_match_trees_keep_their_shape() {
    let p = service_policy(&sample_policy());
    let Some(M::All(all)) = p.routes[0].condition.as_ref().and_then(|c| c.kind.clone()) else {
        panic!()
    };
    assert_eq!(all.matches[0].kind, Some(M::Method("GET".into())));
    assert_eq!(
        all.matches[1].kind,
        Some(M::Path(pb::PathMatch {
            kind: Some(pb::path_match::Kind::Regex("/api/list".into()))
        }))
    );
    let Some(M::Not(not)) = &all.matches[2].kind else {
        panic!()
    };
    let Some(M::Any(any)) = &not.kind else {
        panic!()
    };
    let kinds: Vec<_> = any.matches.iter().map(|m| m.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            Some(M::Header(pb::ValueMatch {
                name: "x-canary".into(),
                kind: Some(pb::value_match::Kind::Exact("1".into()))
            })),
            Some(M::QueryParam(pb::ValueMatch {
                name: "debug".into(),
                kind: Some(pb::value_match::Kind::Regex("t.*".into()))
            })),
            Some(M::Path(pb::PathMatch {
                kind: Some(pb::path_match::Kind::Prefix("/api".into()))
            })),
            Some(M::Path(pb::PathMatch {
                kind: Some(pb::path_match::Kind::Exact("/x".into()))
            })),
        ]
    );
}

#[test]
fn sources_map_one_to_one() {
    assert_eq!(source(PolicySource::Default), pb::PolicySource::Default);
    assert_eq!(source(PolicySource::HttpRoute), pb::PolicySource::HttpRoute);
    assert_eq!(
        source(PolicySource::ServiceProfile),
        pb::PolicySource::ServiceProfile
    );
}

#[test]
fn the_spec_profile_compiles_and_converts() {
    let text = include_str!("../../../../model/tests/fixtures/spec/web-svc-profile.yaml");
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web-svc, namespace: emojivoto}\nspec:\n  selector: {app: web-svc}\n  ports: [{port: 80, targetPort: 8080}]\n";
    let (mut objects, errors) = weft_model::parse_documents("profile.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    objects.extend(weft_model::parse_documents("svc.yaml", svc).0);
    let policies = weft_model::compile(&objects);
    let p = service_policy(
        policies
            .get("web-svc.emojivoto.svc.cluster.local:80")
            .unwrap(),
    );
    let names: Vec<_> = p.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["GET /api/list", "POST /api/vote", "default"]);
    assert_eq!(p.routes[0].timeouts.as_ref().unwrap().request_ms, 600);
    assert!(p.routes[0].retry.is_some());
    assert!(p.routes[1].retry.is_none());
    let budget = p.retry_budget.unwrap();
    assert_eq!(
        (
            budget.retry_ratio,
            budget.min_retries_per_second,
            budget.ttl_ms
        ),
        (0.1, 5, 10_000)
    );
}

#[test]
fn failure_accrual_converts_to_backoffs_in_milliseconds() {
    let mut policy = sample_policy();
    policy.failure_accrual = Some(FailureAccrual {
        max_failures: 3,
        min_penalty: Duration::from_micros(250_500),
        max_penalty: Duration::from_secs(90),
        jitter_ratio: 0.5,
    });
    assert_eq!(
        service_policy(&policy).failure_accrual,
        Some(pb::FailureAccrual {
            consecutive_failures: 3,
            min_backoff_ms: 251,
            max_backoff_ms: 90_000,
        })
    );

    // From the annotations, with Linkerd's defaults for what is not set.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n    balancer.linkerd.io/failure-accrual: consecutive\n    balancer.linkerd.io/failure-accrual-consecutive-max-penalty: 30s\nspec:\n  ports: [{port: 80}]\n";
    let (objects, errors) = weft_model::parse_documents("svc.yaml", svc);
    assert!(errors.is_empty(), "{errors:?}");
    let policies = weft_model::compile(&objects);
    let p = service_policy(policies.get("web.shop.svc.cluster.local:80").unwrap());
    assert_eq!(
        p.failure_accrual,
        Some(pb::FailureAccrual {
            consecutive_failures: 7,
            min_backoff_ms: 1_000,
            max_backoff_ms: 30_000,
        })
    );
}
