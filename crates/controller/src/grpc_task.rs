//! The running gRPC server of a component, and how it stops: every component (identity,
//! destination, …) serves one tonic server that ends when its drain signal fires, and is cut
//! after a grace period if calls or streams outlive it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::duration::format_duration;

/// A component's spawned gRPC server and its drain signal.
pub struct GrpcTask {
    /// The component's name, for messages (`identity`, `destination`).
    name: &'static str,
    drain: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    grace: Duration,
}

impl GrpcTask {
    /// Wraps a server spawned with `serve_with_incoming_shutdown` on `drain`'s receiver.
    pub fn new(
        name: &'static str,
        drain: watch::Sender<bool>,
        server: JoinHandle<Result<(), tonic::transport::Error>>,
        grace: Duration,
    ) -> Self {
        Self {
            name,
            drain,
            server,
            grace,
        }
    }

    /// Runs until `signal` resolves (then drains) or the gRPC server fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            () = signal => {
                tracing::info!("shutting down");
                self.shutdown().await;
                Ok(())
            }
            res = &mut self.server => {
                let _ = self.drain.send(true);
                match res {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow::anyhow!("{} gRPC server failed: {e}", self.name)),
                    Err(e) => Err(anyhow::anyhow!("{} gRPC server task failed: {e}", self.name)),
                }
            }
        }
    }

    /// Drains: fires the drain signal (the server stops accepting; the component's own tasks
    /// watching the signal end their streams), then waits for the server for at most the grace
    /// period before cutting what is left.
    pub async fn shutdown(mut self) {
        let _ = self.drain.send(true);
        match tokio::time::timeout(self.grace, &mut self.server).await {
            Ok(_) => tracing::debug!(component = self.name, "gRPC server stopped"),
            Err(_) => {
                tracing::warn!(
                    component = self.name,
                    grace = %format_duration(self.grace),
                    "calls did not finish in the grace period; cutting them"
                );
                self.server.abort();
            }
        }
    }
}
