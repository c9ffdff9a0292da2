//! Two-phase shutdown: a drain signal that every listener and connection watches, and a way for
//! the signaller to wait until every watcher is gone.

use tokio::sync::{mpsc, watch};

/// Held by the task that starts a drain.
pub struct Signal {
    tx: watch::Sender<bool>,
    done_rx: mpsc::Receiver<()>,
}

/// Cloned into every listener and connection. Dropping it tells the signaller this holder has
/// finished.
#[derive(Clone)]
pub struct Watch {
    rx: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

/// A new drain pair.
pub fn channel() -> (Signal, Watch) {
    let (tx, rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    (Signal { tx, done_rx }, Watch { rx, _done: done_tx })
}

impl Signal {
    /// Tells every watcher to drain, then waits until all of them are dropped.
    pub async fn drain(mut self) {
        let _ = self.tx.send(true);
        // `recv` returns None once every `Watch` (and its sender) is gone.
        let _ = self.done_rx.recv().await;
    }
}

impl Watch {
    /// Resolves when a drain has started.
    pub async fn signaled(&self) {
        let mut rx = self.rx.clone();
        // An error means the signal was dropped without draining: treat as a drain.
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        *self.rx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_watchers() {
        let (signal, watch) = channel();
        let w2 = watch.clone();
        let task = tokio::spawn(async move {
            w2.signaled().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(w2);
        });
        drop(watch);
        let start = tokio::time::Instant::now();
        signal.drain().await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        assert!(task.await.is_ok());
    }
}
