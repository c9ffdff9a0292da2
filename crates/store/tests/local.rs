//! The local backend with real files in a temporary directory: initial load, changes seen
//! through the watch channel, malformed files reported and held at their last good version,
//! and atomic writes never read half-written.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weft_model::Kind;
use weft_store::local::manifests_dir;
use weft_store::manifests::Problem;
use weft_store::{write_atomic, LocalOptions, LocalStore, Snapshot, Store};

/// How long any change may take to be seen before a test fails (the store polls every 20 ms
/// here; this only bounds a failing test).
const WAIT: Duration = Duration::from_secs(10);

struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "weft-store-local-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn manifests(&self) -> PathBuf {
        manifests_dir(&self.0)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(self.manifests()).unwrap();
        let p = self.manifests().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn open(&self) -> LocalStore {
        LocalStore::open_with(
            &self.0,
            LocalOptions {
                poll_interval: Duration::from_millis(20),
            },
        )
        .unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn service(name: &str, port: u16) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports: [{{port: {port}}}]\n")
}

fn names(s: &Snapshot) -> Vec<String> {
    s.iter().map(|o| o.name().to_string()).collect()
}

fn port(s: &Snapshot, name: &str) -> Option<String> {
    let o = s.get(Kind::Service, "shop", name)?;
    // The object's debug text carries its ports; enough to tell two versions apart.
    let text = format!("{o:?}");
    ["80", "81", "82"]
        .into_iter()
        .find(|p| text.contains(&format!("port: {p}")))
        .map(str::to_string)
}

async fn wait_snapshot(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    what: &str,
    f: impl FnMut(&Arc<Snapshot>) -> bool,
) -> Arc<Snapshot> {
    let result = match tokio::time::timeout(WAIT, rx.wait_for(f)).await {
        Ok(Ok(s)) => Some(s.clone()),
        Ok(Err(_)) => panic!("store closed while waiting for {what}"),
        Err(_) => None,
    };
    match result {
        Some(s) => s,
        None => panic!("timed out waiting for {what}: {:?}", names(&rx.borrow())),
    }
}

async fn wait_problems(
    rx: &mut watch::Receiver<Arc<Vec<Problem>>>,
    what: &str,
    f: impl FnMut(&Arc<Vec<Problem>>) -> bool,
) -> Vec<String> {
    match tokio::time::timeout(WAIT, rx.wait_for(f)).await {
        Ok(Ok(p)) => p.iter().map(ToString::to_string).collect(),
        Ok(Err(_)) => panic!("store closed while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

#[tokio::test]
async fn loads_every_manifest_at_open_and_skips_temporary_and_hidden_files() {
    let dir = Dir::new();
    dir.write("a.yaml", &service("web", 80));
    dir.write("b.yml", &service("api", 80));
    dir.write(".c.yaml", "garbage: [");
    dir.write(".a.yaml.1.2.tmp", "garbage: [");
    dir.write("d.yaml.tmp", "garbage: [");
    dir.write("notes.txt", "not a manifest");
    std::fs::create_dir_all(dir.manifests().join("sub")).unwrap();
    std::fs::write(dir.manifests().join("sub/e.yaml"), service("nested", 80)).unwrap();

    let store = dir.open();
    assert_eq!(store.backend(), "local");
    let s = store.snapshot();
    assert!(s.is_synced(), "synced when open returns");
    assert_eq!(names(&s), vec!["api", "web"]);
    assert!(store.problems().is_empty(), "{:?}", store.problems());
}

#[tokio::test]
async fn a_missing_cluster_directory_is_an_error_and_a_missing_manifests_directory_is_empty() {
    let dir = Dir::new();
    let err = LocalStore::open(&dir.0.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope: cannot read manifests"), "{err}");

    let store = dir.open();
    assert!(store.snapshot().is_synced());
    assert!(store.snapshot().is_empty());
    let mut rx = store.watch();
    dir.write("a.yaml", &service("web", 80));
    wait_snapshot(&mut rx, "the manifests directory to appear", |s| {
        s.get(Kind::Service, "shop", "web").is_some()
    })
    .await;
}

#[tokio::test]
async fn adding_modifying_and_deleting_files_publishes_new_snapshots() {
    let dir = Dir::new();
    dir.write("a.yaml", &service("web", 80));
    let store = dir.open();
    let mut rx = store.watch();
    let first = rx.borrow_and_update().clone();
    assert_eq!(names(&first), vec!["web"]);

    // Add.
    let b = dir.write("b.yaml", &service("api", 80));
    let s = wait_snapshot(&mut rx, "b.yaml's service", |s| {
        s.get(Kind::Service, "shop", "api").is_some()
    })
    .await;
    assert!(s.revision() > first.revision());
    assert_eq!(names(&s), vec!["api", "web"]);

    // Modify in place, twice in a row with the same size: the second write may keep the
    // first one's modification time, and must still be seen.
    dir.write("b.yaml", &service("api", 81));
    dir.write("b.yaml", &service("api", 82));
    wait_snapshot(&mut rx, "the second modification", |s| {
        port(s, "api").as_deref() == Some("82")
    })
    .await;

    // Delete.
    std::fs::remove_file(&b).unwrap();
    let s = wait_snapshot(&mut rx, "b.yaml's service to go", |s| {
        s.get(Kind::Service, "shop", "api").is_none()
    })
    .await;
    assert_eq!(names(&s), vec!["web"]);
    assert!(store.problems().is_empty());
}

#[tokio::test]
async fn a_malformed_file_is_reported_and_keeps_its_last_good_objects_until_fixed() {
    let dir = Dir::new();
    dir.write("a.yaml", &service("web", 80));
    dir.write("b.yaml", &service("api", 80));
    let store = dir.open();
    let mut rx = store.watch();
    let mut problems = store.watch_problems();

    // An invalid value: reported with file, line and field; b.yaml's last good object stays.
    dir.write(
        "b.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  ports: [{port: 99999}]\n",
    );
    let reported = wait_problems(&mut problems, "b.yaml's problem", |p| !p.is_empty()).await;
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert!(
        reported[0].contains("b.yaml:") && reported[0].contains("spec.ports[0].port"),
        "{}",
        reported[0]
    );
    assert_eq!(names(&store.snapshot()), vec!["api", "web"]);
    assert_eq!(port(&store.snapshot(), "api").as_deref(), Some("80"));

    // A file that is not YAML at all, never good: reported with its line; nothing served.
    dir.write("c.yaml", "apiVersion: v1\nkind: Service\nmetadata: [\n");
    let reported = wait_problems(&mut problems, "c.yaml's problem", |p| p.len() == 2).await;
    assert!(
        reported.iter().any(|p| p.contains("c.yaml:")),
        "{reported:#?}"
    );

    // The rest keeps working.
    dir.write("a.yaml", &service("web", 81));
    wait_snapshot(&mut rx, "a.yaml's change", |s| {
        port(s, "web").as_deref() == Some("81")
    })
    .await;

    // Fixing b.yaml clears its problem and serves its new content.
    dir.write("b.yaml", &service("api", 82));
    let reported =
        wait_problems(&mut problems, "b.yaml's problem to clear", |p| p.len() == 1).await;
    assert!(reported[0].contains("c.yaml:"), "{reported:#?}");
    wait_snapshot(&mut rx, "b.yaml's fix", |s| {
        port(s, "api").as_deref() == Some("82")
    })
    .await;

    // Fixing c.yaml clears every problem.
    dir.write("c.yaml", &service("shop", 80));
    wait_problems(&mut problems, "every problem to clear", |p| p.is_empty()).await;
    wait_snapshot(&mut rx, "c.yaml's service", |s| {
        s.get(Kind::Service, "shop", "shop").is_some()
    })
    .await;

    // Deleting a malformed file clears its problem too.
    dir.write("d.yaml", "kind: [");
    wait_problems(&mut problems, "d.yaml's problem", |p| p.len() == 1).await;
    std::fs::remove_file(dir.manifests().join("d.yaml")).unwrap();
    wait_problems(&mut problems, "d.yaml's problem to go", |p| p.is_empty()).await;
}

#[tokio::test]
async fn duplicates_across_files_are_reported_and_the_first_file_wins() {
    let dir = Dir::new();
    dir.write("a.yaml", &service("web", 80));
    dir.write("b.yaml", &service("web", 81));
    let store = dir.open();
    assert_eq!(port(&store.snapshot(), "web").as_deref(), Some("80"));
    let problems: Vec<String> = store.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("b.yaml:1") && problems[0].contains("defined twice"),
        "{}",
        problems[0]
    );
}

#[tokio::test]
async fn atomic_writes_of_a_big_file_are_never_read_half_written() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.manifests()).unwrap();
    let path = dir.manifests().join("big.yaml");
    let big = |port: u16| -> String {
        (0..2000)
            .map(|i| service(&format!("svc-{i}"), port))
            .collect::<Vec<_>>()
            .join("---\n")
    };
    let versions = [big(80), big(81)];
    write_atomic(&path, versions[0].as_bytes()).unwrap();
    let store = LocalStore::open_with(
        &dir.0,
        LocalOptions {
            poll_interval: Duration::from_millis(1),
        },
    )
    .unwrap();
    assert_eq!(store.snapshot().len(), 2000);

    let chunked = |path: PathBuf, text: String| {
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(&path).unwrap();
            for chunk in text.as_bytes().chunks(1000) {
                file.write_all(chunk).unwrap();
                file.flush().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    // The control, in a directory of its own: content written slowly in place *is* read
    // half-written (so the rest of this test could fail), and reported.
    let control_dir = Dir::new();
    std::fs::create_dir_all(control_dir.manifests()).unwrap();
    let control_store = LocalStore::open_with(
        &control_dir.0,
        LocalOptions {
            poll_interval: Duration::from_millis(1),
        },
    )
    .unwrap();
    let mut control_problems = control_store.watch_problems();
    let control = chunked(
        control_dir.manifests().join("slow.yaml"),
        versions[1].clone(),
    );
    wait_problems(
        &mut control_problems,
        "a half-written file to be reported",
        |p| !p.is_empty(),
    )
    .await;
    control.await.unwrap();
    drop(control_store);

    // Record every problem list published while writing.
    let mut problems = store.watch_problems();
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while problems.changed().await.is_ok() {
            seen.extend(problems.borrow_and_update().iter().map(ToString::to_string));
        }
        seen
    });
    let mut rx = store.watch();
    let writer = {
        let path = path.clone();
        let versions = versions.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..40 {
                write_atomic(&path, versions[i % 2].as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    writer.await.unwrap();
    // A slow writer to a temporary file, renamed when done (what `write_atomic` does).
    let tmp = dir.manifests().join(".big.yaml.slow.tmp");
    chunked(tmp.clone(), versions[1].clone()).await.unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    // The last write holds port 81.
    wait_snapshot(&mut rx, "the last version", |s| {
        port(s, "svc-1999").as_deref() == Some("81") && s.len() == 2000
    })
    .await;
    assert!(store.problems().is_empty(), "{:?}", store.problems());
    drop(store);
    let seen = tokio::time::timeout(WAIT, seen).await.unwrap().unwrap();
    assert!(
        seen.is_empty(),
        "problems were published while writing atomically: {seen:#?}"
    );
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.manifests())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["big.yaml"]);
}

#[test]
fn write_atomic_replaces_content_and_rejects_a_path_without_a_file_name() {
    let dir = Dir::new();
    let path = dir.0.join("x.yaml");
    write_atomic(&path, b"one").unwrap();
    write_atomic(&path, b"two").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert!(write_atomic(Path::new("/"), b"x").is_err());
    let missing_dir = dir.0.join("missing/x.yaml");
    assert!(write_atomic(&missing_dir, b"x").is_err());
}
