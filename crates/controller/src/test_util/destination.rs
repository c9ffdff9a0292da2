//! Helpers for the destination service's tests and benchmarks: manifests in a line, an
//! in-process service over a [`MemoryStore`] on port 0, a client, and bounded waits on streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Streaming;
use weft_api::destination::destination_client::DestinationClient;
use weft_api::destination::GetDestination;
use weft_model::Object;
use weft_store::MemoryStore;

use crate::cli::{DestinationArgs, StoreBackend};
use crate::destination::{start_with_store, Running};

/// How long a test waits for one message before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Arguments for an in-process service on loopback port 0.
pub fn args() -> DestinationArgs {
    DestinationArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        store: StoreBackend::Memory,
        manifests: Vec::new(),
        cluster_domain: "cluster.local".to_owned(),
        shutdown_grace_period: Duration::from_secs(5),
    }
}

/// Starts the service over `store`.
pub async fn start(store: Arc<MemoryStore>) -> Running {
    start_with_store(&args(), store).await.unwrap()
}

/// A client of the service at `addr`.
pub async fn client(addr: SocketAddr) -> DestinationClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    DestinationClient::new(channel)
}

/// A request for `authority`.
pub fn request(authority: &str) -> GetDestination {
    GetDestination {
        authority: authority.to_owned(),
        caller_identity: "test.default.serviceaccount.identity.weft.cluster.local".to_owned(),
    }
}

/// The next message of a stream, failing the test after [`WAIT`] or if the stream ends.
pub async fn next<T>(stream: &mut Streaming<T>) -> T {
    match tokio::time::timeout(WAIT, stream.message()).await {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => panic!("the stream ended"),
        Ok(Err(status)) => panic!("the stream failed: {status:?}"),
        Err(_) => panic!("no message within {WAIT:?}"),
    }
}

/// Parses manifests, failing the test on any problem.
pub fn objects(text: &str) -> Vec<Object> {
    let (objects, errors) = weft_model::parse_documents("test.yaml", text);
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(messages.is_empty(), "{}", messages.join("\n"));
    objects
}

/// Applies manifests to `store` as one revision.
pub fn apply(store: &MemoryStore, text: &str) {
    let objects = objects(text);
    store.update(|w| {
        for o in objects {
            w.apply(o);
        }
    });
}

/// A Service selecting `app: <name>` with one port forwarding to `target_port`.
pub fn service_yaml(namespace: &str, name: &str, port: u16, target_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: {port}, targetPort: {target_port}}}]\n---\n"
    )
}

/// An ExternalWorkload labelled `app: <app>` at `ip`, meshed with identity
/// `<app>.<namespace>.serviceaccount.identity.weft.cluster.local`.
pub fn workload_yaml(namespace: &str, name: &str, app: &str, ip: &str) -> String {
    format!(
        "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}}}}}\nspec:\n  meshTLS: {{identity: {app}.{namespace}.serviceaccount.identity.weft.cluster.local, serverName: {app}.{namespace}}}\n  ports: [{{name: http, port: 8080}}]\n  workloadIPs: [{{ip: \"{ip}\"}}]\n---\n"
    )
}
