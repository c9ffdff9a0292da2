//! The in-memory backend through the `Store` trait: revisions, change signals, batches,
//! structural sharing and snapshot diffs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use weft_model::{parse_documents, Kind, Object};
use weft_store::{synced, Applied, Change, MemoryStore, ObjectKey, Store};

fn objects(text: &str) -> Vec<Object> {
    let (objects, errors) = parse_documents("test.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    objects
}

fn service(name: &str, port: u16) -> Object {
    objects(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: {port}}}]\n"
    ))
    .remove(0)
}

fn workload(name: &str, ip: &str) -> Object {
    objects(&format!(
        "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {{name: {name}, namespace: shop, labels: {{app: web}}}}\nspec:\n  meshTLS: {{identity: web.shop, serverName: web.shop}}\n  workloadIPs: [{{ip: {ip}}}]\n"
    ))
    .remove(0)
}

#[test]
fn apply_publishes_a_new_revision_only_when_something_changed() {
    let store = MemoryStore::new();
    let mut rx = store.watch();
    assert_eq!(rx.borrow_and_update().revision(), 0);
    assert!(store.snapshot().is_synced());

    assert_eq!(store.apply(service("web", 80)), Applied::Created);
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().revision(), 1);

    assert_eq!(store.apply(service("web", 80)), Applied::Unchanged);
    assert!(
        !rx.has_changed().unwrap(),
        "an equal object publishes nothing"
    );

    assert_eq!(store.apply(service("web", 8080)), Applied::Updated);
    assert!(rx.has_changed().unwrap());
    let snap = rx.borrow_and_update().clone();
    assert_eq!(snap.revision(), 2);
    assert_eq!(snap.len(), 1);
    let stored = snap.get(Kind::Service, "shop", "web").unwrap();
    assert_eq!(*stored.as_ref(), service("web", 8080));

    assert!(!store.delete(Kind::Service, "shop", "missing"));
    assert!(!rx.has_changed().unwrap());
    assert!(store.delete(Kind::Service, "shop", "web"));
    assert!(rx.has_changed().unwrap());
    let snap = rx.borrow_and_update().clone();
    assert_eq!(snap.revision(), 3);
    assert!(snap.is_empty());
}

#[test]
fn a_batch_is_one_revision_and_old_snapshots_do_not_change() {
    let store = MemoryStore::with_objects([service("web", 80)]);
    let before = store.snapshot();
    assert_eq!(before.revision(), 1);
    let changed = store.update(|w| {
        w.apply(workload("web-1", "127.0.1.1"));
        w.apply(workload("web-2", "127.0.1.2"));
        w.apply(service("web", 80)); // unchanged
        assert_eq!(w.snapshot().objects(Kind::ExternalWorkload).len(), 2);
    });
    assert_eq!(changed, 2);
    let after = store.snapshot();
    assert_eq!(after.revision(), 2);
    assert_eq!(after.len(), 3);
    assert_eq!(before.len(), 1, "a published snapshot is immutable");
    assert_eq!(store.update(|_| {}), 0);
    assert_eq!(store.snapshot().revision(), 2);
}

#[test]
fn only_touched_kinds_are_copied_and_changes_are_listed() {
    let store = MemoryStore::with_objects([
        service("web", 80),
        workload("web-1", "127.0.1.1"),
        workload("web-2", "127.0.1.2"),
    ]);
    let old = store.snapshot();
    store.update(|w| {
        w.apply(workload("web-1", "127.0.1.9"));
        w.delete(&ObjectKey::new(Kind::ExternalWorkload, "shop", "web-2"));
        w.apply(workload("web-3", "127.0.1.3"));
    });
    let new = store.snapshot();
    assert!(!new.kind_changed(&old, Kind::Service));
    assert!(new.kind_changed(&old, Kind::ExternalWorkload));
    assert!(Arc::ptr_eq(
        new.get(Kind::Service, "shop", "web").unwrap(),
        old.get(Kind::Service, "shop", "web").unwrap()
    ));
    let changes: Vec<String> = new
        .changes_since(&old)
        .iter()
        .map(|c| match c {
            Change::Applied(o) => format!("applied {}", o.describe()),
            Change::Deleted(k) => format!("deleted {k}"),
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            "applied ExternalWorkload shop/web-1",
            "applied ExternalWorkload shop/web-3",
            "deleted ExternalWorkload shop/web-2",
        ]
    );
    assert!(new.changes_since(&new).is_empty());
}

#[test]
fn replace_all_publishes_only_the_differences() {
    let store = MemoryStore::with_objects([service("web", 80), service("api", 80)]);
    let old = store.snapshot();
    let changed = store.replace_all([service("web", 80), service("db", 5432)]);
    assert_eq!(changed, 2, "db created, api deleted; web kept");
    let new = store.snapshot();
    let keys: Vec<_> = new.changes_since(&old).iter().map(Change::key).collect();
    assert_eq!(
        keys,
        vec![
            ObjectKey::new(Kind::Service, "shop", "db"),
            ObjectKey::new(Kind::Service, "shop", "api"),
        ]
    );
    assert!(Arc::ptr_eq(
        new.get(Kind::Service, "shop", "web").unwrap(),
        old.get(Kind::Service, "shop", "web").unwrap()
    ));
    assert_eq!(
        store.replace_all([service("web", 80), service("db", 5432)]),
        0
    );
}

#[tokio::test]
async fn readers_wait_for_the_initial_sync_and_wake_on_changes() {
    let store = Arc::new(MemoryStore::unsynced());
    let mut rx = store.watch();
    assert!(!rx.borrow().is_synced());
    store.apply(service("web", 80));
    let writer = store.clone();
    let sync = tokio::spawn(async move {
        writer.mark_synced();
        writer.mark_synced(); // no second revision
    });
    let snap = tokio::time::timeout(Duration::from_secs(5), synced(&mut rx))
        .await
        .unwrap()
        .unwrap();
    sync.await.unwrap();
    assert!(snap.is_synced());
    assert_eq!(snap.len(), 1);
    assert_eq!(store.snapshot().revision(), 2);

    let _ = rx.borrow_and_update();
    let writer = store.clone();
    tokio::spawn(async move { writer.apply(service("api", 80)) });
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().len(), 2);

    drop(store);
    let dropped = MemoryStore::unsynced();
    let mut rx = dropped.watch();
    drop(dropped);
    assert!(synced(&mut rx).await.is_err(), "a closed store never syncs");
}
