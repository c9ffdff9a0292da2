use super::*;
use crate::destination::authority;
use pb::update::Update as U;
use weft_model::{CompileOptions, Kind, Object};
use weft_store::{MemoryStore, Store};

fn objects(text: &str) -> Vec<Object> {
    let (objects, errors) = weft_model::parse_documents("test.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    objects
}

fn apply(store: &MemoryStore, text: &str) {
    store.update(|w| {
        for o in objects(text) {
            w.apply(o);
        }
    });
}

const WEB_SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";

fn workload(name: &str, ip: &str) -> String {
    format!("apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {{name: {name}, namespace: shop, labels: {{app: web}}}}\nspec:\n  meshTLS: {{identity: {name}, serverName: {name}}}\n  workloadIPs: [{{ip: \"{ip}\"}}]\n")
}

/// Builds indexes from a store, as the indexer does.
struct Indexes {
    store: MemoryStore,
    last: Index,
}

impl Indexes {
    fn new() -> Self {
        Self {
            store: MemoryStore::new(),
            last: Index::empty(),
        }
    }
    fn next(&mut self) -> &Index {
        self.last = Index::build(
            &self.last,
            self.store.snapshot(),
            &CompileOptions::default(),
        );
        &self.last
    }
}

fn describe(msgs: &[(UpdateKind, pb::Update)]) -> Vec<String> {
    msgs.iter()
        .map(|(_, m)| match m.update.as_ref().unwrap() {
            U::Add(a) => {
                let addrs: Vec<_> = a.endpoints.iter().map(|e| e.addr.as_str()).collect();
                format!("add {}", addrs.join(","))
            }
            U::Remove(r) => format!("remove {}", r.addrs.join(",")),
            U::NoEndpoints(n) => format!("none exists={}", n.exists),
        })
        .collect()
}

#[test]
fn endpoint_watches_send_state_then_diffs() {
    let mut ix = Indexes::new();
    let mut w = EndpointWatch::new(Some("web.shop.svc.cluster.local:80".into()));
    assert_eq!(describe(&w.update(ix.next())), vec!["none exists=false"]);
    assert!(w.update(ix.next()).is_empty(), "nothing changed");

    apply(&ix.store, WEB_SVC);
    assert_eq!(describe(&w.update(ix.next())), vec!["none exists=true"]);

    apply(
        &ix.store,
        &format!(
            "{}---\n{}",
            workload("web-1", "127.0.1.1"),
            workload("web-2", "127.0.1.2")
        ),
    );
    let msgs = w.update(ix.next());
    assert_eq!(describe(&msgs), vec!["add 127.0.1.1:8080,127.0.1.2:8080"]);
    let U::Add(add) = msgs[0].1.update.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(add.metric_labels["service"], "web");
    assert_eq!(add.metric_labels["namespace"], "shop");

    // A workload that moves: the new address is added before the old one is removed.
    apply(&ix.store, &workload("web-2", "127.0.1.3"));
    assert_eq!(
        describe(&w.update(ix.next())),
        vec!["add 127.0.1.3:8080", "remove 127.0.1.2:8080"]
    );

    // A changed endpoint (now unmeshed) is re-added under the same address.
    apply(
        &ix.store,
        &workload("web-1", "127.0.1.1").replace(
            "labels:",
            "annotations: {linkerd.io/inject: disabled}, labels:",
        ),
    );
    let msgs = w.update(ix.next());
    assert_eq!(describe(&msgs), vec!["add 127.0.1.1:8080"]);
    let U::Add(add) = msgs[0].1.update.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(add.endpoints[0].proxy, None);

    ix.store.delete(Kind::ExternalWorkload, "shop", "web-1");
    assert_eq!(
        describe(&w.update(ix.next())),
        vec!["remove 127.0.1.1:8080"]
    );
    ix.store.delete(Kind::ExternalWorkload, "shop", "web-2");
    assert_eq!(describe(&w.update(ix.next())), vec!["none exists=true"]);
    assert!(w.update(ix.next()).is_empty());

    apply(&ix.store, &workload("web-1", "127.0.1.1"));
    assert_eq!(describe(&w.update(ix.next())), vec!["add 127.0.1.1:8080"]);
    ix.store.delete(Kind::Service, "shop", "web");
    assert_eq!(describe(&w.update(ix.next())), vec!["none exists=false"]);
}

#[test]
fn a_first_message_with_endpoints_is_one_add() {
    let mut ix = Indexes::new();
    apply(
        &ix.store,
        &format!("{WEB_SVC}---\n{}", workload("web-1", "127.0.1.1")),
    );
    let mut w = EndpointWatch::new(Some("web.shop.svc.cluster.local:80".into()));
    assert_eq!(describe(&w.update(ix.next())), vec!["add 127.0.1.1:8080"]);
    let mut external = EndpointWatch::new(None);
    assert_eq!(
        describe(&external.update(ix.next())),
        vec!["none exists=false"]
    );
}

#[test]
fn large_sets_are_split_into_several_adds() {
    let mut ix = Indexes::new();
    let mut text = format!("{WEB_SVC}---\n");
    for i in 0..2_500u32 {
        let ip = format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256);
        text.push_str(&workload(&format!("web-{i}"), &ip));
        text.push_str("---\n");
    }
    apply(&ix.store, &text);
    let mut w = EndpointWatch::new(Some("web.shop.svc.cluster.local:80".into()));
    let msgs = w.update(ix.next());
    let sizes: Vec<usize> = msgs
        .iter()
        .map(|(_, m)| match m.update.as_ref().unwrap() {
            U::Add(a) => a.endpoints.len(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(sizes, vec![1_000, 1_000, 500]);
}

#[test]
fn policy_watches_send_only_real_changes() {
    use pb::policy_update::Update as P;
    let mut ix = Indexes::new();
    let target = authority::parse("web.shop:80", "cluster.local").unwrap();
    let mut w = PolicyWatch::new(target, Some("web.shop.svc.cluster.local:80".into()));
    let (kind, msg) = w.update(ix.next(), "cluster.local").unwrap();
    assert_eq!(kind, UpdateKind::NotFound);
    let Some(P::NotFound(nf)) = msg.update else {
        panic!()
    };
    assert_eq!(nf.reason, "Service shop/web does not exist");
    assert!(w.update(ix.next(), "cluster.local").is_none());

    apply(&ix.store, WEB_SVC);
    let (kind, msg) = w.update(ix.next(), "cluster.local").unwrap();
    assert_eq!(kind, UpdateKind::Policy);
    let Some(P::Policy(p)) = msg.update else {
        panic!()
    };
    assert_eq!(p.authority, "web.shop.svc.cluster.local:80");

    apply(&ix.store, &workload("web-1", "127.0.1.1"));
    assert!(
        w.update(ix.next(), "cluster.local").is_none(),
        "endpoints are not policy"
    );
    apply(&ix.store, "apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: shop}\nspec:\n  ports: [{port: 80}]\n");
    assert!(
        w.update(ix.next(), "cluster.local").is_none(),
        "another service"
    );

    apply(
        &ix.store,
        &WEB_SVC.replace(
            "metadata: {name: web, namespace: shop}",
            "metadata: {name: web, namespace: shop, annotations: {timeout.linkerd.io/request: 2s}}",
        ),
    );
    let (_, msg) = w.update(ix.next(), "cluster.local").unwrap();
    let Some(P::Policy(p)) = msg.update else {
        panic!()
    };
    assert_eq!(p.routes[0].timeouts.as_ref().unwrap().request_ms, 2_000);

    ix.store.delete(Kind::Service, "shop", "web");
    let (kind, _) = w.update(ix.next(), "cluster.local").unwrap();
    assert_eq!(kind, UpdateKind::NotFound);
}
