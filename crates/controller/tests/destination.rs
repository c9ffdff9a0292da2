//! The destination service end to end: the real tonic server on loopback port 0 over a
//! MemoryStore the tests feed, real gRPC clients, the admin port over HTTP, and the real
//! binary for `--manifests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;
use weft_api::destination::policy_update::Update as P;
use weft_api::destination::update::Update as U;
use weft_api::destination::{
    AddSet, FailureAccrual, MeshedProxy, PolicySource, PolicyUpdate, ProtocolHint, ServicePolicy,
    Update,
};
use weft_controller::destination::index::wait_for_revision;
use weft_controller::destination::metrics::{Call, UpdateKind};
use weft_controller::test_util::destination::{
    apply, client, next, request, service_yaml, start, workload_yaml, WAIT,
};
use weft_controller::test_util::{http_get, sample, TempDir};
use weft_model::Kind;
use weft_store::{MemoryStore, Store};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/spec/");

fn spec(file: &str) -> String {
    std::fs::read_to_string(format!("{SPEC}{file}")).unwrap()
}

fn add(update: Update) -> AddSet {
    match update.update {
        Some(U::Add(a)) => a,
        other => panic!("expected an AddSet, got {other:?}"),
    }
}

fn addrs(set: &AddSet) -> Vec<&str> {
    set.endpoints.iter().map(|e| e.addr.as_str()).collect()
}

fn removed(update: Update) -> Vec<String> {
    match update.update {
        Some(U::Remove(r)) => r.addrs,
        other => panic!("expected a RemoveSet, got {other:?}"),
    }
}

fn no_endpoints(update: Update) -> bool {
    match update.update {
        Some(U::NoEndpoints(n)) => n.exists,
        other => panic!("expected NoEndpoints, got {other:?}"),
    }
}

fn policy(update: PolicyUpdate) -> ServicePolicy {
    match update.update {
        Some(P::Policy(p)) => p,
        other => panic!("expected a policy, got {other:?}"),
    }
}

fn not_found(update: PolicyUpdate) -> String {
    match update.update {
        Some(P::NotFound(n)) => n.reason,
        other => panic!("expected not_found, got {other:?}"),
    }
}

#[tokio::test]
async fn get_sends_every_endpoint_then_diffs() {
    let store = Arc::new(MemoryStore::new());
    apply(
        &store,
        &format!(
            "{}{}{}{}",
            service_yaml("shop", "web", 80, 8080),
            workload_yaml("shop", "web-1", "web", "127.0.1.1"),
            workload_yaml("shop", "web-2", "web", "127.0.1.2"),
            workload_yaml("shop", "api-1", "api", "127.0.1.9"),
        ),
    );
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut stream = c.get(request("web.shop:80")).await.unwrap().into_inner();

    let first = add(next(&mut stream).await);
    assert_eq!(addrs(&first), vec!["127.0.1.1:8080", "127.0.1.2:8080"]);
    assert_eq!(first.metric_labels["namespace"], "shop");
    assert_eq!(first.metric_labels["service"], "web");
    let e = &first.endpoints[0];
    assert_eq!(e.weight, 10_000);
    assert_eq!(
        e.proxy,
        Some(MeshedProxy {
            inbound_addr: "127.0.1.1:4143".into(),
            identity: "web.shop.serviceaccount.identity.weft.cluster.local".into(),
            authority_override: String::new(),
        })
    );
    assert_eq!(e.protocol_hint, ProtocolHint::Http as i32);
    assert_eq!(e.metric_labels["pod"], "web-1");
    assert_eq!(e.metric_labels["serviceaccount"], "web");

    apply(&store, &workload_yaml("shop", "web-3", "web", "127.0.1.3"));
    assert_eq!(addrs(&add(next(&mut stream).await)), vec!["127.0.1.3:8080"]);

    store.delete(Kind::ExternalWorkload, "shop", "web-1");
    assert_eq!(removed(next(&mut stream).await), vec!["127.0.1.1:8080"]);

    // Scale to zero in one change.
    store.update(|w| {
        for name in ["web-2", "web-3"] {
            w.delete(&weft_store::ObjectKey::new(
                Kind::ExternalWorkload,
                "shop",
                name,
            ));
        }
    });
    assert!(no_endpoints(next(&mut stream).await), "exists: true");

    // And back.
    apply(&store, &workload_yaml("shop", "web-4", "web", "127.0.1.4"));
    assert_eq!(addrs(&add(next(&mut stream).await)), vec!["127.0.1.4:8080"]);
    running.shutdown().await;
}

#[tokio::test]
async fn every_authority_form_watches_the_same_service() {
    let store = Arc::new(MemoryStore::new());
    apply(
        &store,
        &format!(
            "{}{}",
            service_yaml("emojivoto", "web-svc", 80, 8080),
            workload_yaml("emojivoto", "web-1", "web-svc", "127.0.1.1"),
        ),
    );
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    for authority in [
        "web-svc.emojivoto:80",
        "web-svc.emojivoto.svc:80",
        "web-svc.emojivoto.svc.cluster.local:80",
        "web-svc.emojivoto.svc.cluster.local",
        "WEB-SVC.emojivoto.svc.cluster.local.:80",
    ] {
        let mut stream = c.get(request(authority)).await.unwrap().into_inner();
        assert_eq!(
            addrs(&add(next(&mut stream).await)),
            vec!["127.0.1.1:8080"],
            "{authority}"
        );
        let mut stream = c.get_policy(request(authority)).await.unwrap().into_inner();
        assert_eq!(
            policy(next(&mut stream).await).authority,
            "web-svc.emojivoto.svc.cluster.local:80",
            "{authority}"
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn an_unknown_service_is_reported_and_sent_once_it_exists() {
    let store = Arc::new(MemoryStore::new());
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut endpoints = c
        .get(request("later.shop:8080"))
        .await
        .unwrap()
        .into_inner();
    let mut policies = c
        .get_policy(request("later.shop:8080"))
        .await
        .unwrap()
        .into_inner();
    assert!(!no_endpoints(next(&mut endpoints).await), "exists: false");
    assert_eq!(
        not_found(next(&mut policies).await),
        "Service shop/later does not exist"
    );

    apply(
        &store,
        &format!(
            "{}{}",
            service_yaml("shop", "later", 8080, 9000),
            workload_yaml("shop", "later-1", "later", "127.0.2.1"),
        ),
    );
    assert_eq!(
        addrs(&add(next(&mut endpoints).await)),
        vec!["127.0.2.1:9000"]
    );
    let p = policy(next(&mut policies).await);
    assert_eq!(p.authority, "later.shop.svc.cluster.local:8080");
    assert_eq!(p.source, PolicySource::Default as i32);
    assert_eq!(p.routes.len(), 1);

    // Deleting the Service says "does not exist" again.
    store.delete(Kind::Service, "shop", "later");
    assert!(!no_endpoints(next(&mut endpoints).await));
    assert_eq!(
        not_found(next(&mut policies).await),
        "Service shop/later does not exist"
    );

    // Hosts that can be no Service here get the same answer, for the proxy to act on.
    let mut outside = c
        .get(request("www.example.com:443"))
        .await
        .unwrap()
        .into_inner();
    assert!(!no_endpoints(next(&mut outside).await));
    running.shutdown().await;
}

#[tokio::test]
async fn malformed_authorities_are_refused_and_counted() {
    let running = start(Arc::new(MemoryStore::new())).await;
    let mut c = client(running.grpc_addr()).await;
    let status = c.get(request("web.shop:http")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("\"http\" is not a port"),
        "{status:?}"
    );
    let status = c.get_policy(request("")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let (_, body) = http_get(running.admin_addr(), "/metrics").await;
    assert_eq!(
        sample(&body, "destination_invalid_requests_total{call=\"get\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "destination_invalid_requests_total{call=\"get_policy\"}"
        ),
        Some(1.0)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn the_spec_service_profile_gives_routes_retries_timeouts_and_budget() {
    let store = Arc::new(MemoryStore::new());
    apply(
        &store,
        &format!(
            "{}{}",
            service_yaml("emojivoto", "web-svc", 80, 8080),
            spec("web-svc-profile.yaml")
        ),
    );
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut stream = c
        .get_policy(request("web-svc.emojivoto.svc.cluster.local:80"))
        .await
        .unwrap()
        .into_inner();
    let p = policy(next(&mut stream).await);
    assert_eq!(p.source, PolicySource::ServiceProfile as i32);
    assert_eq!(
        (p.namespace.as_str(), p.name.as_str(), p.port),
        ("emojivoto", "web-svc", 80)
    );
    let names: Vec<_> = p.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["GET /api/list", "POST /api/vote", "default"]);

    let list = &p.routes[0];
    assert_eq!(list.timeouts.as_ref().unwrap().request_ms, 600);
    let retry = list.retry.as_ref().expect("GET /api/list is retryable");
    assert!(retry.limit >= 1);
    assert!(
        retry
            .http_statuses
            .iter()
            .any(|r| r.min <= 500 && r.max >= 599),
        "{retry:?}"
    );
    assert!(
        p.routes[1].retry.is_none(),
        "POST /api/vote is not retryable"
    );
    assert!(list.condition.is_some());

    let budget = p.retry_budget.unwrap();
    assert_eq!(budget.retry_ratio, 0.1);
    assert_eq!(budget.min_retries_per_second, 5);
    assert_eq!(budget.ttl_ms, 10_000);
    assert_eq!(p.failure_accrual, None);
    assert_eq!(p.backends.len(), 1);
    assert_eq!(
        p.backends[0].authority,
        "web-svc.emojivoto.svc.cluster.local:80"
    );
    assert!(p.overridden.is_empty());
    running.shutdown().await;
}

#[tokio::test]
async fn a_service_profile_overrides_httproute_annotations_and_says_so() {
    let store = Arc::new(MemoryStore::new());
    apply(
        &store,
        &format!(
            "{}{}",
            service_yaml("emojivoto", "web", 80, 8080),
            spec("web-default-httproute.yaml")
        ),
    );
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut stream = c
        .get_policy(request("web.emojivoto:80"))
        .await
        .unwrap()
        .into_inner();

    let p = policy(next(&mut stream).await);
    assert_eq!(p.source, PolicySource::HttpRoute as i32);
    assert!(p.overridden.is_empty());
    let route = &p.routes[0];
    let retry = route.retry.as_ref().unwrap();
    assert_eq!(retry.limit, 2);
    assert_eq!(retry.per_try_timeout_ms, 300);
    let t = route.timeouts.as_ref().unwrap();
    assert_eq!((t.request_ms, t.response_ms), (2_000, 1_000));

    // The spec's profile, for this Service.
    apply(
        &store,
        &spec("web-svc-profile.yaml").replace(
            "web-svc.emojivoto.svc.cluster.local",
            "web.emojivoto.svc.cluster.local",
        ),
    );
    let p = policy(next(&mut stream).await);
    assert_eq!(p.source, PolicySource::ServiceProfile as i32);
    assert_eq!(p.overridden.len(), 1, "{:?}", p.overridden);
    let why = &p.overridden[0];
    assert!(
        why.starts_with("HTTPRoute emojivoto/web-default is ignored because ServiceProfile emojivoto/web.emojivoto.svc.cluster.local takes precedence"),
        "{why}"
    );
    assert!(why.contains("retry.linkerd.io/http"), "{why}");
    let names: Vec<_> = p.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["GET /api/list", "POST /api/vote", "default"]);
    running.shutdown().await;
}

#[tokio::test]
async fn a_traffic_split_gives_weighted_backends() {
    let store = Arc::new(MemoryStore::new());
    apply(
        &store,
        &format!(
            "{}{}{}",
            service_yaml("emojivoto", "web", 80, 8080),
            service_yaml("emojivoto", "web-canary", 80, 8080),
            spec("web-split.yaml")
        ),
    );
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut stream = c
        .get_policy(request("web.emojivoto:80"))
        .await
        .unwrap()
        .into_inner();
    let p = policy(next(&mut stream).await);
    assert_eq!(p.source, PolicySource::ServiceProfile as i32);
    let backends: Vec<_> = p
        .backends
        .iter()
        .map(|b| (b.authority.as_str(), b.weight))
        .collect();
    assert_eq!(
        backends,
        vec![
            ("web.emojivoto.svc.cluster.local:80", 90_000),
            ("web-canary.emojivoto.svc.cluster.local:80", 10_000)
        ]
    );

    // Moving weight sends the new backends.
    apply(
        &store,
        &spec("web-split.yaml")
            .replace("weight: 90", "weight: 50")
            .replace("weight: 10", "weight: 50"),
    );
    let p = policy(next(&mut stream).await);
    let weights: Vec<_> = p.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, vec![50_000, 50_000]);
    running.shutdown().await;
}

#[tokio::test]
async fn a_policy_is_not_sent_again_when_unrelated_objects_change() {
    let store = Arc::new(MemoryStore::new());
    apply(
        &store,
        &format!(
            "{}{}",
            service_yaml("shop", "web", 80, 8080),
            service_yaml("shop", "api", 80, 8080)
        ),
    );
    let running = start(store.clone()).await;
    let mut index = running.index();
    let mut c = client(running.grpc_addr()).await;
    let mut web = c
        .get_policy(request("web.shop:80"))
        .await
        .unwrap()
        .into_inner();
    let mut api = c
        .get_policy(request("api.shop:80"))
        .await
        .unwrap()
        .into_inner();
    let first = policy(next(&mut web).await);
    policy(next(&mut api).await);

    // Changes to other objects, one at a time: a workload of web (endpoints, not policy), and
    // policy changes on api, each seen by api's stream before the next.
    for i in 1..=5u16 {
        apply(
            &store,
            &workload_yaml("shop", &format!("web-{i}"), "web", &format!("127.0.1.{i}")),
        );
        let revision = store.snapshot().revision();
        wait_for_revision(&mut index, revision, WAIT).await.unwrap();
        apply(
            &store,
            &service_yaml("shop", "api", 80, 8080).replace(
                "namespace: shop}",
                &format!("namespace: shop, annotations: {{timeout.linkerd.io/request: {i}s}}}}"),
            ),
        );
        let p = policy(next(&mut api).await);
        assert_eq!(
            p.routes[0].timeouts.as_ref().unwrap().request_ms,
            u64::from(i) * 1_000
        );
    }

    // The next message on web's stream is the one for web's own change, not a repeat.
    apply(
        &store,
        &service_yaml("shop", "web", 80, 8080).replace(
            "namespace: shop}",
            "namespace: shop, annotations: {timeout.linkerd.io/request: 7s}}",
        ),
    );
    let p = policy(next(&mut web).await);
    assert_ne!(p, first);
    assert_eq!(p.routes[0].timeouts.as_ref().unwrap().request_ms, 7_000);
    assert_eq!(running.metrics().sent_total(UpdateKind::Policy), 2 + 5 + 1);
    running.shutdown().await;
}

#[tokio::test]
async fn failure_accrual_annotations_reach_get_policy() {
    let annotated = |annotations: &str| {
        service_yaml("shop", "web", 80, 8080).replace(
            "namespace: shop}",
            &format!("namespace: shop, annotations: {{{annotations}}}}}"),
        )
    };
    let store = Arc::new(MemoryStore::new());
    apply(
        &store,
        &annotated(
            "balancer.linkerd.io/failure-accrual: consecutive, \
             balancer.linkerd.io/failure-accrual-consecutive-max-failures: '3', \
             balancer.linkerd.io/failure-accrual-consecutive-min-penalty: 250ms, \
             balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio: '0.2'",
        ),
    );
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut web = c
        .get_policy(request("web.shop:80"))
        .await
        .unwrap()
        .into_inner();
    let p = policy(next(&mut web).await);
    assert_eq!(
        p.failure_accrual,
        Some(FailureAccrual {
            consecutive_failures: 3,
            min_backoff_ms: 250,
            max_backoff_ms: 60_000,
        }),
        "max penalty defaults to Linkerd's 1m"
    );

    // A bad value turns it off (and the rest of the policy is still served)…
    apply(
        &store,
        &annotated(
            "balancer.linkerd.io/failure-accrual: consecutive, \
             balancer.linkerd.io/failure-accrual-consecutive-max-penalty: forever",
        ),
    );
    let p = policy(next(&mut web).await);
    assert_eq!(p.failure_accrual, None);
    assert_eq!(p.routes.len(), 1);

    // …and the defaults apply to the mode alone.
    apply(
        &store,
        &annotated("balancer.linkerd.io/failure-accrual: consecutive"),
    );
    let p = policy(next(&mut web).await);
    assert_eq!(
        p.failure_accrual,
        Some(FailureAccrual {
            consecutive_failures: 7,
            min_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
        })
    );
    running.shutdown().await;
}

#[tokio::test]
async fn admin_reports_watches_and_readiness_waits_for_the_store() {
    let store = Arc::new(MemoryStore::unsynced());
    let running = start(store.clone()).await;
    let (status, body) = http_get(running.admin_addr(), "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("destination: the store has not finished"),
        "{body}"
    );

    let mut c = client(running.grpc_addr()).await;
    let mut stream = c.get(request("web.shop:80")).await.unwrap().into_inner();
    // Objects that arrive before the store is synced are in the first answer: the stream waits
    // for the sync instead of saying "does not exist".
    apply(
        &store,
        &format!(
            "{}{}",
            service_yaml("shop", "web", 80, 8080),
            workload_yaml("shop", "web-1", "web", "127.0.1.1")
        ),
    );
    store.mark_synced();
    assert_eq!(addrs(&add(next(&mut stream).await)), vec!["127.0.1.1:8080"]);
    let (status, _) = http_get(running.admin_addr(), "/ready").await;
    assert_eq!(status, 200);
    let (status, _) = http_get(running.admin_addr(), "/live").await;
    assert_eq!(status, 200);

    let _policy = c
        .get_policy(request("web.shop:80"))
        .await
        .unwrap()
        .into_inner();
    let (_, body) = http_get(running.admin_addr(), "/metrics").await;
    assert_eq!(
        sample(&body, "destination_watches{call=\"get\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "destination_watches{call=\"get_policy\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "destination_updates_sent_total{call=\"get\",update=\"add\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&body, "destination_store_revision"), Some(2.0));
    assert_eq!(sample(&body, "destination_service_ports"), Some(1.0));
    assert_eq!(sample(&body, "destination_endpoints"), Some(1.0));
    assert_eq!(
        sample(&body, "destination_policy_problems{severity=\"error\"}"),
        Some(0.0)
    );
    assert!(sample(&body, "destination_store_changes_applied_total").unwrap() >= 1.0);

    // A watch that ends is no longer counted.
    drop(stream);
    let metrics = running.metrics().clone();
    weft_controller::test_util::wait_until("the get watch to close", WAIT, || {
        let m = metrics.clone();
        async move { m.active_watches(Call::Get) == 0 }
    })
    .await;
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_streams_cleanly() {
    let store = Arc::new(MemoryStore::new());
    apply(&store, &service_yaml("shop", "web", 80, 8080));
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut stream = c.get(request("web.shop:80")).await.unwrap().into_inner();
    assert!(no_endpoints(next(&mut stream).await));
    let shutdown = tokio::spawn(running.shutdown());
    let end = tokio::time::timeout(WAIT, stream.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "the stream ends with OK: {end:?}");
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
}

/// Reads the binary's stderr until a line contains `until`; returns every line read.
async fn read_stderr_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    until: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains(until);
            seen.push(line);
            if done {
                return;
            }
        }
        panic!("stderr ended before {until:?}");
    };
    if tokio::time::timeout(WAIT, read).await.is_err() {
        panic!("no {until:?} on stderr within {WAIT:?}: {seen:#?}");
    }
    seen
}

#[tokio::test]
async fn the_binary_reports_bad_manifests_and_serves_the_good_ones() {
    let dir = TempDir::new();
    dir.write(
        "good.yaml",
        format!(
            "{}{}",
            service_yaml("shop", "web", 80, 8080),
            workload_yaml("shop", "web-1", "web", "127.0.1.1")
        ),
    );
    dir.write(
        "mixed.yaml",
        format!(
            "{}apiVersion: v1\nkind: Service\nmetadata: {{name: broken, namespace: shop}}\nspec:\n  ports: [{{port: 99999}}]\n---\napiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {{name: s, namespace: shop}}\nspec:\n  service: web\n  backends: [{{service: web, weight: ten}}]\n",
            service_yaml("shop", "api", 80, 9090)
        ),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-controller"))
        .args([
            "destination",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--manifests",
        ])
        .arg(dir.dir())
        .env_remove("WEFT_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let seen = read_stderr_until(&mut lines, "destination service listening").await;
    let problems: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("manifest skipped"))
        .collect();
    assert_eq!(problems.len(), 2, "{seen:#?}");
    assert!(
        problems[0].contains("mixed.yaml:")
            && problems[0].contains("Service shop/broken: spec.ports[0].port"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("TrafficSplit shop/s: spec.backends[0].weight"),
        "{}",
        problems[1]
    );
    let listening = seen.last().unwrap();
    let addr = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc_addr="))
        .unwrap_or_else(|| panic!("no grpc_addr in {listening}"));

    let mut c = client(addr.parse().unwrap()).await;
    let mut web = c.get(request("web.shop:80")).await.unwrap().into_inner();
    assert_eq!(addrs(&add(next(&mut web).await)), vec!["127.0.1.1:8080"]);
    let mut api = c
        .get_policy(request("api.shop:80"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy(next(&mut api).await).name, "api");
    let mut broken = c
        .get_policy(request("broken.shop:80"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        not_found(next(&mut broken).await),
        "Service shop/broken does not exist"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn the_binary_refuses_a_missing_manifest_path() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-controller"))
        .args([
            "destination",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--manifests",
            "/nonexistent/weft-manifests",
        ])
        .env_remove("WEFT_LOG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("weft-controller destination: --manifests: /nonexistent/weft-manifests: cannot read manifests"),
        "{stderr}"
    );
}

#[tokio::test]
async fn many_watchers_of_many_services_each_get_their_own_state() {
    let store = Arc::new(MemoryStore::new());
    let mut text = String::new();
    for s in 0..50u16 {
        text.push_str(&service_yaml("bulk", &format!("svc-{s}"), 80, 8080));
        for e in 0..4u16 {
            text.push_str(&workload_yaml(
                "bulk",
                &format!("svc-{s}-{e}"),
                &format!("svc-{s}"),
                &format!("10.0.{s}.{e}"),
            ));
        }
    }
    apply(&store, &text);
    let running = start(store.clone()).await;
    let mut c = client(running.grpc_addr()).await;
    let mut streams = Vec::new();
    for s in 0..50u16 {
        let mut st = c
            .get(request(&format!("svc-{s}.bulk:80")))
            .await
            .unwrap()
            .into_inner();
        let got: BTreeSet<String> = add(next(&mut st).await)
            .endpoints
            .into_iter()
            .map(|e| e.addr)
            .collect();
        let want: BTreeSet<String> = (0..4u16).map(|e| format!("10.0.{s}.{e}:8080")).collect();
        assert_eq!(got, want);
        streams.push(st);
    }
    // One change reaches exactly the watch of its service.
    apply(
        &store,
        &workload_yaml("bulk", "svc-7-9", "svc-7", "10.0.7.9"),
    );
    assert_eq!(
        addrs(&add(next(&mut streams[7]).await)),
        vec!["10.0.7.9:8080"]
    );
    assert_eq!(running.metrics().sent_total(UpdateKind::Add), 51);
    assert_eq!(running.metrics().active_watches(Call::Get), 50);
    running.shutdown().await;
}

#[tokio::test]
async fn a_local_store_streams_file_changes_to_watchers() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path("manifests")).unwrap();
    let manifests = dir.path("manifests");
    let write = |name: &str, text: &str| {
        weft_store::write_atomic(&manifests.join(name), text.as_bytes()).unwrap();
    };
    write(
        "web.yaml",
        &format!(
            "{}{}",
            service_yaml("shop", "web", 80, 8080),
            workload_yaml("shop", "web-1", "web", "127.0.1.1"),
        ),
    );
    let mut args = weft_controller::test_util::destination::args();
    args.store = weft_controller::cli::StoreBackend::Local(dir.dir().to_path_buf());
    let running = weft_controller::destination::start(&args).await.unwrap();
    let mut c = client(running.grpc_addr()).await;
    let mut stream = c.get(request("web.shop:80")).await.unwrap().into_inner();
    assert_eq!(addrs(&add(next(&mut stream).await)), vec!["127.0.1.1:8080"]);

    // A new file adds an endpoint; a malformed file changes nothing; removing a file
    // removes its endpoint.
    write(
        "web-2.yaml",
        &workload_yaml("shop", "web-2", "web", "127.0.1.2"),
    );
    assert_eq!(addrs(&add(next(&mut stream).await)), vec!["127.0.1.2:8080"]);
    write("broken.yaml", "kind: [");
    std::fs::remove_file(manifests.join("web-2.yaml")).unwrap();
    assert_eq!(removed(next(&mut stream).await), vec!["127.0.1.2:8080"]);
    running.shutdown().await;
}
