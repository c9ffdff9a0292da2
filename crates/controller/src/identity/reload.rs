//! Live reload of the trust anchor and issuer files.
//!
//! One task, the single writer of the credentials `watch` channel, polls the three files every
//! `--reload-interval` (1 s): it reads them and compares their SHA-256 with what it last loaded
//! or tried. Polling needs no inotify and works the same for a file rewritten in place, a file
//! replaced by rename, and a Kubernetes Secret volume's symlink swap.
//!
//! A change is loaded once it has been seen unchanged at two polls in a row, so an operator who
//! writes `issuer.crt` and then `issuer.key` is not told that the key does not match in between.
//! New credentials go through all of the start-up checks ([`Credentials::build`]); if they fail,
//! the error is logged naming the file and the reason, the previous credentials stay in use, and
//! the same bad contents are not reported again until they change.
//!
//! The decision logic, [`Reloader::poll`], is synchronous and tested without a runtime.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use weft_pki::fmt_time;

use super::credentials::{self, Contents, CredentialPaths, Credentials, Fingerprint, LoadError};
use super::metrics::IdentityMetrics;

/// What one poll saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Observed {
    /// All three files, by content.
    Files(Fingerprint),
    /// A file could not be read (the error text).
    Unreadable(String),
}

/// What one poll did.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing changed since the last load or attempt.
    Unchanged,
    /// A change was seen; it is loaded if it is still the same at the next poll.
    Settling,
    /// New credentials were loaded and published.
    Reloaded,
    /// A change was refused; the previous credentials stay.
    Refused(LoadError),
}

/// The single writer of the credentials channel.
pub struct Reloader {
    paths: CredentialPaths,
    tx: watch::Sender<Arc<Credentials>>,
    metrics: Arc<IdentityMetrics>,
    /// What was last loaded or attempted.
    current: Observed,
    /// A change seen at the previous poll.
    pending: Option<Observed>,
}

impl Reloader {
    /// A reloader that starts from `initial` (loaded at start-up), and the channel's receiver.
    pub fn new(
        paths: CredentialPaths,
        initial: Credentials,
        metrics: Arc<IdentityMetrics>,
    ) -> (Self, watch::Receiver<Arc<Credentials>>) {
        let current = Observed::Files(initial.fingerprint);
        let (tx, rx) = watch::channel(Arc::new(initial));
        let reloader = Self {
            paths,
            tx,
            metrics,
            current,
            pending: None,
        };
        (reloader, rx)
    }

    /// Another receiver of the credentials.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Credentials>> {
        self.tx.subscribe()
    }

    /// Decides what to do with what the files hold now.
    pub fn poll(&mut self, read: Result<Contents, LoadError>, now: SystemTime) -> Outcome {
        let observed = match &read {
            Ok(contents) => Observed::Files(contents.fingerprint()),
            Err(e) => Observed::Unreadable(e.to_string()),
        };
        if observed == self.current {
            self.pending = None;
            return Outcome::Unchanged;
        }
        if self.pending.as_ref() != Some(&observed) {
            self.pending = Some(observed);
            return Outcome::Settling;
        }
        self.pending = None;
        let previous = std::mem::replace(&mut self.current, observed);
        let result = read.and_then(|contents| Credentials::build(&self.paths, &contents, now));
        match result {
            Ok(creds) => {
                let changed = changed_files(&self.paths, &previous, &creds.fingerprint);
                tracing::info!(
                    changed = %changed,
                    issuer = %creds.issuer.info().subject,
                    issuer.not_after = %fmt_time(creds.issuer.not_after()),
                    trust_anchors = creds.anchors.len(),
                    "loaded new identity credentials"
                );
                self.tx.send_replace(Arc::new(creds));
                self.metrics.reloaded(true);
                Outcome::Reloaded
            }
            Err(e) => {
                let kept = self.tx.borrow();
                tracing::error!(
                    "refused new identity credentials: {e}; still signing with issuer {:?} (expires {})",
                    kept.issuer.info().subject,
                    fmt_time(kept.issuer.not_after()),
                );
                drop(kept);
                self.metrics.reloaded(false);
                Outcome::Refused(e)
            }
        }
    }

    /// Polls every `interval` until `drain` turns `true`.
    pub async fn run(mut self, interval: Duration, mut drain: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks.tick().await; // The first tick is immediate; start-up has just loaded the files.
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = drain.wait_for(|d| *d) => return,
            }
            let paths = self.paths.clone();
            let read = match tokio::task::spawn_blocking(move || credentials::read(&paths)).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "reading the identity credential files failed");
                    continue;
                }
            };
            self.poll(read, SystemTime::now());
        }
    }
}

/// Names the files whose contents differ from `previous`, for the log.
fn changed_files(paths: &CredentialPaths, previous: &Observed, now: &Fingerprint) -> String {
    let Observed::Files(before) = previous else {
        return "all (previously unreadable)".to_owned();
    };
    let mut names = Vec::new();
    if before.trust_anchors != now.trust_anchors {
        names.push(paths.trust_anchors.display().to_string());
    }
    if before.issuer_cert != now.issuer_cert {
        names.push(paths.issuer_cert.display().to_string());
    }
    if before.issuer_key != now.issuer_key {
        names.push(paths.issuer_key.display().to_string());
    }
    names.join(", ")
}

#[cfg(test)]
mod tests;
