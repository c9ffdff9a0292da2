use super::*;
use weft_store::{MemoryStore, Store};

const DOMAIN: &str = "cluster.local";

fn store(text: &str) -> MemoryStore {
    let (objects, errors) = weft_model::parse_documents("test.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    MemoryStore::with_objects(objects)
}

fn workload(ns: &str, name: &str, labels: &str, ips: &[&str], extra: &str) -> String {
    let ips: Vec<String> = ips.iter().map(|ip| format!("{{ip: \"{ip}\"}}")).collect();
    format!(
        "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\n{extra}spec:\n  meshTLS: {{identity: {name}.{ns}.serviceaccount.identity.weft.cluster.local, serverName: {name}.{ns}}}\n  ports: [{{name: http, port: 8080}}, {{name: admin, port: 9990}}]\n  workloadIPs: [{}]\n---\n",
        ips.join(", ")
    )
}

const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web, tier: front}\n  ports:\n    - {name: http, port: 80, targetPort: http}\n    - {name: admin, port: 9000, targetPort: 9990}\n    - {name: metrics, port: 9100, targetPort: prom}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: manual, namespace: shop}\nspec:\n  ports: [{port: 80}]\n---\n";

fn addrs(index: &EndpointIndex, authority: &str) -> Vec<String> {
    index
        .get(authority)
        .unwrap_or_else(|| panic!("no {authority}"))
        .endpoints
        .keys()
        .cloned()
        .collect()
}

#[test]
fn services_select_workloads_of_their_namespace_on_resolved_ports() {
    let text = format!(
        "{SERVICES}{}{}{}{}",
        workload(
            "shop",
            "web-1",
            "app: web, tier: front",
            &["127.0.1.1", "::1"],
            ""
        ),
        workload(
            "shop",
            "web-2",
            "app: web, tier: front, extra: x",
            &["127.0.1.2"],
            ""
        ),
        workload(
            "shop",
            "web-back",
            "app: web, tier: back",
            &["127.0.1.3"],
            ""
        ),
        workload(
            "other",
            "web-9",
            "app: web, tier: front",
            &["127.0.1.9"],
            ""
        ),
    );
    let built = build(&store(&text).snapshot(), DOMAIN, None);
    let (index, problems) = (&built.sets, built.problems());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        addrs(index, "web.shop.svc.cluster.local:80"),
        vec!["127.0.1.1:8080", "127.0.1.2:8080", "[::1]:8080"]
    );
    assert_eq!(
        addrs(index, "web.shop.svc.cluster.local:9000"),
        vec!["127.0.1.1:9990", "127.0.1.2:9990", "[::1]:9990"]
    );
    assert!(
        addrs(index, "web.shop.svc.cluster.local:9100").is_empty(),
        "no workload has a port named prom"
    );
    assert!(
        addrs(index, "manual.shop.svc.cluster.local:80").is_empty(),
        "an empty selector selects nothing, but the service exists"
    );
    assert!(!index.contains_key("web.shop.svc.cluster.local:81"));
    assert!(!index.contains_key("web.other.svc.cluster.local:80"));
    let set = &index["web.shop.svc.cluster.local:80"];
    assert_eq!(set.labels["namespace"], "shop");
    assert_eq!(set.labels["service"], "web");
}

#[test]
fn meshed_endpoints_name_their_proxy_and_labels() {
    let text = format!(
        "{SERVICES}{}{}{}",
        workload(
            "shop",
            "web-1",
            "app: web, tier: front, weft.io/deployment: web",
            &["127.0.1.1"],
            ""
        ),
        workload(
            "shop",
            "web-2",
            "app: web, tier: front",
            &["127.0.1.2"],
            "  annotations: {config.linkerd.io/proxy-inbound-port: \"5143\"}\n"
        ),
        workload(
            "shop",
            "web-3",
            "app: web, tier: front",
            &["127.0.1.3"],
            "  annotations: {linkerd.io/inject: disabled}\n"
        ),
    );
    let index = build(&store(&text).snapshot(), DOMAIN, None).sets;
    let set = &index["web.shop.svc.cluster.local:80"];
    let e1 = &set.endpoints["127.0.1.1:8080"];
    assert_eq!(e1.weight, DEFAULT_WEIGHT);
    assert_eq!(
        e1.proxy,
        Some(pb::MeshedProxy {
            inbound_addr: "127.0.1.1:4143".into(),
            identity: "web-1.shop.serviceaccount.identity.weft.cluster.local".into(),
            authority_override: String::new(),
        })
    );
    assert_eq!(e1.protocol_hint, pb::ProtocolHint::Http as i32);
    assert_eq!(e1.metric_labels["pod"], "web-1");
    assert_eq!(e1.metric_labels["external_workload"], "web-1");
    assert_eq!(e1.metric_labels["serviceaccount"], "web-1");
    assert_eq!(e1.metric_labels["deployment"], "web");
    let e2 = &set.endpoints["127.0.1.2:8080"];
    assert_eq!(e2.proxy.as_ref().unwrap().inbound_addr, "127.0.1.2:5143");
    assert!(!e2.metric_labels.contains_key("deployment"));
    let e3 = &set.endpoints["127.0.1.3:8080"];
    assert_eq!(e3.proxy, None, "inject: disabled runs no proxy");
    assert_eq!(e3.protocol_hint, pb::ProtocolHint::Unknown as i32);
}

#[test]
fn protocol_hints_follow_opaque_ports_and_app_protocol() {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: shop\n  annotations: {{config.linkerd.io/opaque-ports: \"5432\"}}\nspec:\n  selector: {{app: db}}\n  ports:\n    - {{name: sql, port: 5432, targetPort: 8080}}\n    - {{name: api, port: 80, targetPort: 8080, appProtocol: http}}\n    - {{name: raw, port: 81, targetPort: 9990}}\n---\n{}{}",
        workload("shop", "db-1", "app: db", &["127.0.2.1"], "  annotations: {linkerd.io/inject: disabled}\n"),
        workload("shop", "db-2", "app: db", &["127.0.2.2"], "  annotations: {config.linkerd.io/opaque-ports: \"9990\"}\n"),
    );
    let index = build(&store(&text).snapshot(), DOMAIN, None).sets;
    let hint = |authority: &str, addr: &str| index[authority].endpoints[addr].protocol_hint;
    let opaque = pb::ProtocolHint::Opaque as i32;
    let http = pb::ProtocolHint::Http as i32;
    let unknown = pb::ProtocolHint::Unknown as i32;
    assert_eq!(
        hint("db.shop.svc.cluster.local:5432", "127.0.2.1:8080"),
        opaque
    );
    assert_eq!(
        hint("db.shop.svc.cluster.local:5432", "127.0.2.2:8080"),
        opaque
    );
    assert_eq!(
        hint("db.shop.svc.cluster.local:80", "127.0.2.1:8080"),
        http,
        "appProtocol"
    );
    assert_eq!(
        hint("db.shop.svc.cluster.local:80", "127.0.2.2:8080"),
        http,
        "meshed"
    );
    assert_eq!(
        hint("db.shop.svc.cluster.local:81", "127.0.2.1:9990"),
        unknown
    );
    assert_eq!(
        hint("db.shop.svc.cluster.local:81", "127.0.2.2:9990"),
        opaque
    );
}

#[test]
fn bad_annotations_are_reported_and_defaults_used() {
    let text = format!(
        "{SERVICES}{}",
        workload(
            "shop",
            "web-1",
            "app: web, tier: front",
            &["127.0.1.1"],
            "  annotations: {config.linkerd.io/proxy-inbound-port: \"inbound\", config.linkerd.io/opaque-ports: \"x\"}\n"
        ),
    );
    let built = build(&store(&text).snapshot(), DOMAIN, None);
    let (index, problems) = (&built.sets, built.problems());
    let e = &index["web.shop.svc.cluster.local:80"].endpoints["127.0.1.1:8080"];
    assert_eq!(e.proxy.as_ref().unwrap().inbound_addr, "127.0.1.1:4143");
    assert_eq!(e.protocol_hint, pb::ProtocolHint::Http as i32);
    assert!(
        problems.iter().any(|p| p.contains("ExternalWorkload shop/web-1: metadata.annotations[config.linkerd.io/proxy-inbound-port]: \"inbound\" is not a port")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("test.yaml") && p.contains("config.linkerd.io/opaque-ports")),
        "{problems:#?}"
    );
}

#[test]
fn unchanged_sets_are_shared_with_the_previous_index() {
    let text = format!(
        "{SERVICES}{}apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: shop}}\nspec:\n  selector: {{app: api}}\n  ports: [{{port: 80}}]\n---\n{}",
        workload("shop", "web-1", "app: web, tier: front", &["127.0.1.1"], ""),
        workload("shop", "api-1", "app: api", &["127.0.3.1"], ""),
    );
    let store = store(&text);
    let first = build(&store.snapshot(), DOMAIN, None).sets;
    let (w, _) = weft_model::parse_documents(
        "t.yaml",
        &workload("shop", "api-2", "app: api", &["127.0.3.2"], ""),
    );
    store.apply(w.into_iter().next().unwrap());
    let second = build(&store.snapshot(), DOMAIN, Some(&first)).sets;
    let web = "web.shop.svc.cluster.local:80";
    let api = "api.shop.svc.cluster.local:80";
    assert!(Arc::ptr_eq(&first[web], &second[web]));
    assert!(!Arc::ptr_eq(&first[api], &second[api]));
    assert_eq!(addrs(&second, api), vec!["127.0.3.1:80", "127.0.3.2:80"]);
}

#[test]
fn service_accounts_from_identities() {
    assert_eq!(
        service_account("web.emojivoto.serviceaccount.identity.linkerd.cluster.local"),
        Some("web")
    );
    assert_eq!(
        service_account("spiffe://cluster.local/ns/emojivoto/sa/web"),
        Some("web")
    );
    assert_eq!(
        service_account("spiffe://root.linkerd.cluster.local/web"),
        None
    );
    assert_eq!(service_account("web-1.emojivoto.cluster.local"), None);
    assert_eq!(service_account(""), None);
}

/// Applies `text` to `store`, then checks that updating `prev` incrementally gives exactly what
/// a full build gives.
fn step(
    store: &MemoryStore,
    prev: &mut (Endpoints, Arc<Snapshot>),
    change: impl FnOnce(&MemoryStore),
) {
    change(store);
    let new = store.snapshot();
    let incremental = update(&prev.0, &prev.1, &new, DOMAIN);
    let full = build(&new, DOMAIN, None);
    let sorted = |e: &Endpoints| -> BTreeMap<String, EndpointSet> {
        e.sets
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect()
    };
    assert_eq!(sorted(&incremental), sorted(&full));
    assert_eq!(incremental.problems(), full.problems());
    *prev = (incremental, new);
}

fn apply_text(store: &MemoryStore, text: &str) {
    let (objects, errors) = weft_model::parse_documents("test.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    store.update(|w| {
        for o in objects {
            w.apply(o);
        }
    });
}

#[test]
fn incremental_updates_equal_full_builds() {
    let store = MemoryStore::new();
    apply_text(
        &store,
        &format!(
            "{SERVICES}{}{}",
            workload("shop", "web-1", "app: web, tier: front", &["127.0.1.1"], ""),
            workload("shop", "api-1", "app: api", &["127.0.3.1"], ""),
        ),
    );
    let mut prev = (build(&store.snapshot(), DOMAIN, None), store.snapshot());
    let before = prev.0.sets.clone();
    // A workload added to web.
    step(&store, &mut prev, |s| {
        apply_text(
            s,
            &workload("shop", "web-2", "app: web, tier: front", &["127.0.1.2"], ""),
        )
    });
    assert!(
        Arc::ptr_eq(
            &before["manual.shop.svc.cluster.local:80"],
            &prev.0.sets["manual.shop.svc.cluster.local:80"]
        ),
        "unaffected services are shared"
    );
    // A workload that leaves web by changing its labels.
    step(&store, &mut prev, |s| {
        apply_text(
            s,
            &workload("shop", "web-1", "app: web, tier: back", &["127.0.1.1"], ""),
        )
    });
    assert_eq!(
        prev.0.sets["web.shop.svc.cluster.local:80"].endpoints.len(),
        1
    );
    // A Service that appears, selecting existing workloads, and one with a bad annotation.
    step(&store, &mut prev, |s| {
        apply_text(
            s,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\n  annotations: {config.linkerd.io/opaque-ports: \"nope\"}\nspec:\n  selector: {app: api}\n  ports: [{port: 80, targetPort: 8080}]\n",
        )
    });
    assert_eq!(prev.0.problems().len(), 1);
    // A Service whose ports change, then goes away.
    step(&store, &mut prev, |s| {
        apply_text(
            s,
            "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {app: api}\n  ports: [{port: 81, targetPort: 8080}]\n",
        )
    });
    assert!(!prev.0.sets.contains_key("api.shop.svc.cluster.local:80"));
    assert!(prev.0.problems().is_empty());
    step(&store, &mut prev, |s| {
        s.delete(Kind::Service, "shop", "api");
    });
    assert!(!prev.0.sets.contains_key("api.shop.svc.cluster.local:81"));
    // A workload deleted.
    step(&store, &mut prev, |s| {
        s.delete(Kind::ExternalWorkload, "shop", "web-2");
    });
    // Many services at once: falls back to a full build, same result.
    step(&store, &mut prev, |s| {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: bulk-{i}, namespace: shop}}\nspec:\n  selector: {{app: api}}\n  ports: [{{port: 80}}]\n---\n"
            ));
        }
        apply_text(s, &text);
    });
    assert_eq!(
        prev.0.sets.len(),
        4 + 40,
        "web (3 ports), manual and the bulk services"
    );
}
