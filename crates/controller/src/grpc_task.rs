//! The running gRPC server of a component, and how it stops: every component (identity,
//! destination, …) serves one tonic server that ends when its drain signal fires, and is cut
//! after a grace period if calls or streams outlive it; and how its two listeners are bound.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
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
    /// The server task has ended (and its handle must not be polled again).
    ended: bool,
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
            ended: false,
        }
    }

    /// Resolves when the gRPC server stops on its own (it only should after a drain), with why;
    /// pending forever once it has resolved. `weft-controller all` watches every component with
    /// this, so one failed server does not leave the process half-serving.
    pub async fn stopped(&mut self) -> anyhow::Error {
        if self.ended {
            return std::future::pending().await;
        }
        let res = (&mut self.server).await;
        self.ended = true;
        let _ = self.drain.send(true);
        match res {
            Ok(Ok(())) => anyhow::anyhow!("{} gRPC server stopped", self.name),
            Ok(Err(e)) => anyhow::anyhow!("{} gRPC server failed: {e}", self.name),
            Err(e) => anyhow::anyhow!("{} gRPC server task failed: {e}", self.name),
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
            e = self.stopped() => Err(e),
        }
    }

    /// Drains: fires the drain signal (the server stops accepting; the component's own tasks
    /// watching the signal end their streams), then waits for the server for at most the grace
    /// period before cutting what is left.
    pub async fn shutdown(mut self) {
        let _ = self.drain.send(true);
        if self.ended {
            return;
        }
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

/// A component's listener that could not be bound (exit status 1: the configuration is valid,
/// the address is not available).
#[derive(Debug, thiserror::Error)]
#[error("{flag} {addr}: cannot listen: {source}")]
pub struct BindError {
    /// The flag that names the address.
    pub flag: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A component's two listeners (`--listen` for gRPC, `--admin-listen`), bound, with the
/// addresses they actually got (port 0 picks one). `admin` is `None` when the component shares
/// another admin server (`weft-controller all`); `admin_addr` is then that server's.
pub struct Listeners {
    pub grpc: TcpListener,
    pub grpc_addr: SocketAddr,
    pub admin: Option<TcpListener>,
    pub admin_addr: SocketAddr,
}

impl Listeners {
    /// Binds `--listen` and `--admin-listen`.
    pub async fn bind(listen: SocketAddr, admin_listen: SocketAddr) -> Result<Self, BindError> {
        let (grpc, grpc_addr) = bind_one("--listen", listen).await?;
        let (admin, admin_addr) = bind_one("--admin-listen", admin_listen).await?;
        Ok(Self {
            grpc,
            grpc_addr,
            admin: Some(admin),
            admin_addr,
        })
    }

    /// Binds `--listen`, and `--admin-listen` unless the component reports to `shared` (then
    /// `listen_flag` names the gRPC address in errors: `weft-controller all` has one flag per
    /// component).
    pub async fn bind_for(
        listen_flag: &'static str,
        listen: SocketAddr,
        admin_listen: SocketAddr,
        shared: Option<&crate::admin::SharedAdmin>,
    ) -> Result<Self, BindError> {
        match shared {
            None => Self::bind(listen, admin_listen).await,
            Some(shared) => {
                let (grpc, grpc_addr) = bind_one(listen_flag, listen).await?;
                Ok(Self {
                    grpc,
                    grpc_addr,
                    admin: None,
                    admin_addr: shared.addr(),
                })
            }
        }
    }
}

/// Binds one listener, naming `flag` if it fails.
pub async fn bind_one(
    flag: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), BindError> {
    let err = |source| BindError { flag, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_address_names_its_flag() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));

        let Err(e) = Listeners::bind(any, addr).await else {
            panic!("bound an address that is taken")
        };
        assert_eq!(e.flag, "--admin-listen");
        assert!(
            e.to_string()
                .starts_with(&format!("--admin-listen {addr}: cannot listen: ")),
            "{e}"
        );

        let l = Listeners::bind(any, any).await.unwrap();
        assert_ne!(
            l.grpc_addr.port(),
            0,
            "the bound port is reported, not the requested 0"
        );
        assert_ne!(l.grpc_addr, l.admin_addr);
    }
}
