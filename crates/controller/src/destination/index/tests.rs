use super::*;
use crate::destination::authority;
use weft_store::{MemoryStore, Store};

fn objects(text: &str) -> Vec<Object> {
    let (objects, errors) = weft_model::parse_documents("test.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    objects
}

fn service(name: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n---\n")
}

fn workload(name: &str, app: &str, ip: &str) -> String {
    format!("apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\nspec:\n  meshTLS: {{identity: {name}, serverName: {name}}}\n  workloadIPs: [{{ip: \"{ip}\"}}]\n---\n")
}

fn build(prev: &Index, store: &MemoryStore) -> Index {
    Index::build(prev, store.snapshot(), &CompileOptions::default())
}

const WEB: &str = "web.shop.svc.cluster.local:80";
const API: &str = "api.shop.svc.cluster.local:80";

#[test]
fn a_workload_change_does_not_recompile_policies() {
    let store = MemoryStore::with_objects(objects(&format!(
        "{}{}{}",
        service("web"),
        service("api"),
        workload("web-1", "web", "127.0.1.1")
    )));
    let first = build(&Index::empty(), &store);
    assert!(first.is_synced());
    assert_eq!(first.policies.len(), 2);
    assert_eq!(first.endpoint_count(), 1);
    for o in objects(&workload("web-2", "web", "127.0.1.2")) {
        store.apply(o);
    }
    let second = build(&first, &store);
    assert!(
        Arc::ptr_eq(&first.policies, &second.policies),
        "policies shared"
    );
    assert!(!Arc::ptr_eq(&first.endpoints, &second.endpoints));
    assert!(Arc::ptr_eq(
        &first.endpoints.sets[API],
        &second.endpoints.sets[API]
    ));
    assert_eq!(second.endpoints.sets[WEB].endpoints.len(), 2);
}

#[test]
fn unchanged_policies_keep_their_arc_when_others_change() {
    let store =
        MemoryStore::with_objects(objects(&format!("{}{}", service("web"), service("api"))));
    let first = build(&Index::empty(), &store);
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: api-route\n  namespace: shop\n  annotations: {retry.linkerd.io/http: 5xx}\nspec:\n  parentRefs: [{name: api, kind: Service, group: core, port: 80}]\n  rules: [{matches: [{path: {type: PathPrefix, value: /v1}}]}]\n";
    for o in objects(route) {
        store.apply(o);
    }
    let second = build(&first, &store);
    assert!(
        !Arc::ptr_eq(&first.policies, &second.policies),
        "recompiled"
    );
    assert!(Arc::ptr_eq(&first.policies[WEB], &second.policies[WEB]));
    assert_ne!(first.policies[API], second.policies[API]);
    assert_eq!(
        second.policies[API].proto.source,
        pb::PolicySource::HttpRoute as i32
    );
    assert!(
        Arc::ptr_eq(&first.endpoints, &second.endpoints),
        "no endpoint kind changed"
    );
}

#[test]
fn compile_errors_are_kept_and_valid_services_still_compile() {
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: shop\n  annotations: {retry.linkerd.io/http: \"6xx\"}\nspec:\n  ports: [{port: 80}]\n---\n";
    let store = MemoryStore::with_objects(objects(&format!("{}{bad}", service("web"))));
    let index = build(&Index::empty(), &store);
    assert!(index.policies.contains_key(WEB));
    assert!(index.policies.contains_key("bad.shop.svc.cluster.local:80"));
    assert_eq!(index.policy_errors.len(), 1, "{:?}", index.policy_errors);
    let e = &index.policy_errors[0];
    assert!(
        e.starts_with("test.yaml:")
            && e.contains("Service shop/bad: metadata.annotations[retry.linkerd.io/http]"),
        "{e}"
    );
}

#[test]
fn not_found_reasons_say_what_is_missing() {
    let store = MemoryStore::with_objects(objects(&service("web")));
    let index = build(&Index::empty(), &store);
    let reason = |a: &str| {
        let t = authority::parse(a, "cluster.local").unwrap();
        index.not_found_reason(&t, "cluster.local")
    };
    assert_eq!(
        reason("web.shop:81"),
        "Service shop/web has no port 81 (its ports: 80)"
    );
    assert_eq!(reason("nope.shop"), "Service shop/nope does not exist");
    assert_eq!(
        reason("www.example.com.:443"),
        "www.example.com:443 is not a Service of this cluster (expected <name>.<namespace>[.svc.cluster.local][:port])"
    );
}

#[tokio::test]
async fn the_indexer_rebuilds_once_per_change_and_waits_for_sync() {
    let store = Arc::new(MemoryStore::unsynced());
    let metrics = Arc::new(DestinationMetrics::default());
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut rx = spawn_indexer(
        store.watch(),
        CompileOptions::default(),
        metrics.clone(),
        drain_rx,
    );
    for o in objects(&service("web")) {
        store.apply(o);
    }
    assert!(!rx.borrow_and_update().is_synced());
    store.mark_synced();
    let index = wait_for_revision(&mut rx, 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(index.policies.contains_key(WEB));
    store.update(|w| {
        for o in objects(&format!(
            "{}{}",
            workload("web-1", "web", "127.0.1.1"),
            workload("web-2", "web", "127.0.1.2")
        )) {
            w.apply(o);
        }
    });
    let index = wait_for_revision(&mut rx, 3, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(index.endpoint_count(), 2);
    assert!(
        metrics.changes_applied_total() <= 3,
        "one build per published change"
    );
    drain_tx.send_replace(true);
}
