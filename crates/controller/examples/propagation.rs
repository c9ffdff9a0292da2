//! Update propagation latency of the destination service: from a change applied to the store
//! to the message arriving at a gRPC client watching that service.
//!
//! Loads `--services` Services × `--endpoints` ExternalWorkloads into a MemoryStore, starts the
//! real service on loopback, opens a `Get` watch for every service (and `GetPolicy` watches for
//! `--policy-watches` of them), then `--changes` times moves one endpoint of one service (a
//! different service each time) and waits for its `AddSet` on that service's stream; then as
//! many times changes one service's timeout annotation and waits for the new policy.
//!
//! ```text
//! cargo run --release -p weft-controller --example propagation -- --services 1000 --endpoints 10 --changes 200
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weft_api::destination::policy_update::Update as P;
use weft_api::destination::update::Update as U;
use weft_controller::test_util::destination::{
    client, objects, request, service_yaml, start, workload_yaml,
};
use weft_store::{MemoryStore, Store};

struct Options {
    services: usize,
    endpoints: usize,
    changes: usize,
    policy_watches: usize,
    connections: usize,
}

fn options() -> Options {
    let mut o = Options {
        services: 1_000,
        endpoints: 10,
        changes: 200,
        policy_watches: 200,
        connections: 4,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = || -> usize {
            pair.get(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", pair[0]))
        };
        match pair[0].as_str() {
            "--services" => o.services = value(),
            "--endpoints" => o.endpoints = value(),
            "--changes" => o.changes = value(),
            "--policy-watches" => o.policy_watches = value(),
            "--connections" => o.connections = value().max(1),
            other => panic!(
                "unknown flag {other}; flags: --services --endpoints --changes --policy-watches --connections"
            ),
        }
    }
    o
}

/// The address of endpoint `endpoint` of `service` after `generation` changes: every
/// generation of one endpoint differs from the one before (0 is the initial address).
fn ip(service: usize, endpoint: usize, generation: usize) -> String {
    let second = if generation == 0 {
        0
    } else {
        1 + (generation - 1) % 254
    };
    format!(
        "10.{second}.{}.{}",
        service / 250 * 50 + endpoint,
        service % 250
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what}: n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}

#[tokio::main]
async fn main() {
    let o = options();
    let ns = "bench";
    let mut text = String::new();
    for s in 0..o.services {
        text.push_str(&service_yaml(ns, &format!("svc-{s}"), 80, 8080));
        for e in 0..o.endpoints {
            text.push_str(&workload_yaml(
                ns,
                &format!("svc-{s}-{e}"),
                &format!("svc-{s}"),
                &ip(s, e, 0),
            ));
        }
    }
    let store = Arc::new(MemoryStore::with_objects(objects(&text)));
    println!(
        "store: {} services x {} endpoints = {} objects",
        o.services,
        o.endpoints,
        store.snapshot().len()
    );
    let loaded = Instant::now();
    let running = start(store.clone()).await;
    let mut index = running.index();
    index.wait_for(|i| i.is_synced()).await.unwrap();
    println!(
        "initial index built in {:.1}ms",
        loaded.elapsed().as_secs_f64() * 1e3
    );

    // One task per stream forwards (service, message) as it arrives.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, U, Instant)>();
    let (ptx, mut prx) = mpsc::unbounded_channel::<(usize, P, Instant)>();
    let mut clients = Vec::new();
    for _ in 0..o.connections {
        clients.push(client(running.grpc_addr()).await);
    }
    let opened = Instant::now();
    for s in 0..o.services {
        let mut c = clients[s % clients.len()].clone();
        let mut stream = c
            .get(request(&format!("svc-{s}.{ns}:80")))
            .await
            .unwrap()
            .into_inner();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = stream.message().await {
                if let Some(u) = m.update {
                    let _ = tx.send((s, u, Instant::now()));
                }
            }
        });
    }
    for s in 0..o.policy_watches.min(o.services) {
        let mut c = clients[s % clients.len()].clone();
        let mut stream = c
            .get_policy(request(&format!("svc-{s}.{ns}:80")))
            .await
            .unwrap()
            .into_inner();
        let ptx = ptx.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = stream.message().await {
                if let Some(u) = m.update {
                    let _ = ptx.send((s, u, Instant::now()));
                }
            }
        });
    }
    // Every watch gets its initial state.
    for _ in 0..o.services {
        rx.recv().await.unwrap();
    }
    for _ in 0..o.policy_watches.min(o.services) {
        prx.recv().await.unwrap();
    }
    println!(
        "{} Get + {} GetPolicy watches opened and answered in {:.1}ms",
        o.services,
        o.policy_watches.min(o.services),
        opened.elapsed().as_secs_f64() * 1e3
    );

    // When each index (by store revision) was published, as seen by a task watching it.
    let published: Arc<std::sync::Mutex<HashMap<u64, Instant>>> = Arc::default();
    {
        let published = published.clone();
        let mut index = running.index();
        tokio::spawn(async move {
            while index.changed().await.is_ok() {
                let revision = index.borrow_and_update().revision();
                published.lock().unwrap().insert(revision, Instant::now());
            }
        });
    }
    let publish_latency =
        |revision: u64, t0: Instant| published.lock().unwrap().get(&revision).map(|at| *at - t0);

    let mut endpoint_latency = Vec::with_capacity(o.changes);
    let mut endpoint_publish = Vec::with_capacity(o.changes);
    for i in 0..o.changes {
        let s = (i * 7919) % o.services;
        let e = i % o.endpoints;
        let new_ip = ip(s, e, i + 1);
        let object = objects(&workload_yaml(
            ns,
            &format!("svc-{s}-{e}"),
            &format!("svc-{s}"),
            &new_ip,
        ))
        .remove(0);
        let want = format!("{new_ip}:8080");
        let t0 = Instant::now();
        store.apply(object);
        loop {
            let (svc, update, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("no update within 10s")
                .unwrap();
            if svc == s {
                if let U::Add(add) = &update {
                    if add.endpoints.iter().any(|ep| ep.addr == want) {
                        endpoint_latency.push(at - t0);
                        let revision = store.snapshot().revision();
                        endpoint_publish.extend(publish_latency(revision, t0));
                        break;
                    }
                }
            }
        }
    }
    // Let the RemoveSets of the last change arrive and drop them.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {}
    report("endpoint change -> index published", endpoint_publish);
    report("endpoint change -> AddSet at client", endpoint_latency);

    let mut policy_latency = Vec::with_capacity(o.changes);
    let mut policy_publish = Vec::with_capacity(o.changes);
    let watched = o.policy_watches.min(o.services).max(1);
    for i in 0..o.changes {
        let s = (i * 7919) % watched;
        let ms = 1_000 + i;
        let object = objects(&service_yaml(ns, &format!("svc-{s}"), 80, 8080).replace(
            &format!("namespace: {ns}}}"),
            &format!("namespace: {ns}, annotations: {{timeout.linkerd.io/request: {ms}ms}}}}"),
        ))
        .remove(0);
        let t0 = Instant::now();
        store.apply(object);
        loop {
            let (svc, update, at) = tokio::time::timeout(Duration::from_secs(10), prx.recv())
                .await
                .expect("no policy within 10s")
                .unwrap();
            if let (true, P::Policy(p)) = (svc == s, &update) {
                let got = p
                    .routes
                    .first()
                    .and_then(|r| r.timeouts.as_ref())
                    .map(|t| t.request_ms);
                if got == Some(ms as u64) {
                    policy_latency.push(at - t0);
                    let revision = store.snapshot().revision();
                    policy_publish.extend(publish_latency(revision, t0));
                    break;
                }
            }
        }
    }
    report("policy change -> index published", policy_publish);
    report(
        "policy change -> PolicyUpdate at client (recompiles every service)",
        policy_latency,
    );
    let (_, metrics) = weft_controller::test_util::http_get(running.admin_addr(), "/metrics").await;
    for line in metrics.lines().filter(|l| {
        l.starts_with("destination_index_build_seconds ")
            || l.starts_with("destination_store_changes_applied_total ")
            || l.starts_with("destination_updates_sent_total")
    }) {
        println!("{line}");
    }
    running.shutdown().await;
}
