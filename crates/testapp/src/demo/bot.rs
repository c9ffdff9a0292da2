//! The vote-bot: drives the web front end forever, like emojivoto's.
//!
//! Each round is `GET /api/list` then `POST /api/vote?choice=<random shortcode>`; rounds are
//! paced so the bot sends about `rps` requests per second in total. Failures are counted,
//! never fatal: after a connection error the bot backs off [`CONNECT_BACKOFF`] so a missing
//! front end does not become a busy loop. Every `summary_interval` it logs one line with the
//! ok/failed counts of the interval and of the whole run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::time::MissedTickBehavior;

use super::client::Upstream;
use super::{emoji, percent_encode, Rng};

/// Pause after a request that could not connect.
pub const CONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Highest accepted `rps`: far above what a demo needs, low enough that a typo does not
/// flood a laptop.
pub const MAX_RPS: f64 = 10_000.0;

/// What the vote-bot drives and how fast.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// The web front end's authority, e.g. `web-svc.emojivoto.svc.cluster.local:80`.
    pub web_authority: String,
    /// Requests per second in total (each round is two requests), `0 < rps <= 10000`.
    pub rps: f64,
    /// How often to log the summary line.
    pub summary_interval: Duration,
}

/// An invalid [`BotConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BotConfigError {
    /// `rps` is not in `(0, 10000]`.
    #[error("--rps {0} must be a number above 0 and at most 10000")]
    Rps(f64),
    /// The summary interval is zero.
    #[error("--summary-interval must be more than 0")]
    SummaryInterval,
}

impl BotConfig {
    /// Checks the configuration; [`run`] calls it first.
    pub fn validate(&self) -> Result<(), BotConfigError> {
        if !(self.rps.is_finite() && self.rps > 0.0 && self.rps <= MAX_RPS) {
            return Err(BotConfigError::Rps(self.rps));
        }
        if self.summary_interval.is_zero() {
            return Err(BotConfigError::SummaryInterval);
        }
        Ok(())
    }

    /// Time between rounds: two requests per round.
    fn round_period(&self) -> Duration {
        Duration::from_secs_f64(2.0 / self.rps)
    }
}

/// Request outcomes, shared between the request loop and the summary task.
#[derive(Debug, Default)]
struct Counters {
    list_ok: AtomicU64,
    list_failed: AtomicU64,
    vote_ok: AtomicU64,
    vote_failed: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    list_ok: u64,
    list_failed: u64,
    vote_ok: u64,
    vote_failed: u64,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            list_ok: self.list_ok.load(Ordering::Relaxed),
            list_failed: self.list_failed.load(Ordering::Relaxed),
            vote_ok: self.vote_ok.load(Ordering::Relaxed),
            vote_failed: self.vote_failed.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            list_ok: self.list_ok - earlier.list_ok,
            list_failed: self.list_failed - earlier.list_failed,
            vote_ok: self.vote_ok - earlier.vote_ok,
            vote_failed: self.vote_failed - earlier.vote_failed,
        }
    }

    fn ok(&self) -> u64 {
        self.list_ok + self.vote_ok
    }

    fn failed(&self) -> u64 {
        self.list_failed + self.vote_failed
    }
}

/// The summary line, e.g. `last 10s: 48 ok, 2 failed (list 23 ok/1 failed, vote 25 ok/1
/// failed); total 480 ok, 20 failed`.
fn summary(interval: Duration, last: &Snapshot, total: &Snapshot) -> String {
    format!(
        "last {interval:?}: {} ok, {} failed (list {} ok/{} failed, vote {} ok/{} failed); \
         total {} ok, {} failed",
        last.ok(),
        last.failed(),
        last.list_ok,
        last.list_failed,
        last.vote_ok,
        last.vote_failed,
        total.ok(),
        total.failed(),
    )
}

/// Runs the vote-bot forever (until the process ends). Fails only for an invalid config.
pub async fn run(cfg: BotConfig, upstream: Upstream) -> anyhow::Result<()> {
    cfg.validate()?;
    let counters = Arc::new(Counters::default());
    let summary_task = tokio::spawn({
        let counters = counters.clone();
        let interval = cfg.summary_interval;
        async move {
            let mut last = Snapshot::default();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let now = counters.snapshot();
                tracing::info!("{}", summary(interval, &now.since(&last), &now));
                last = now;
            }
        }
    });
    // Abort the summary task however this future ends (it is dropped on shutdown).
    let _guard = AbortOnDrop(summary_task);
    tracing::info!(dst.authority = %cfg.web_authority, rps = cfg.rps, "vote-bot starting");
    let mut rng = Rng::from_entropy();
    let mut ticker = tokio::time::interval(cfg.round_period());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let listed = request(&upstream, &cfg, Method::GET, "/api/list").await;
        bump(&counters.list_ok, &counters.list_failed, listed);
        if listed == Outcome::ConnectError {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
        let choice = emoji::EMOJI[rng.below(emoji::EMOJI.len())].shortcode;
        let path = format!("/api/vote?choice={}", percent_encode(choice));
        let voted = request(&upstream, &cfg, Method::POST, &path).await;
        bump(&counters.vote_ok, &counters.vote_failed, voted);
        if voted == Outcome::ConnectError {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    ConnectError,
}

fn bump(ok: &AtomicU64, failed: &AtomicU64, outcome: Outcome) {
    let counter = if outcome == Outcome::Ok { ok } else { failed };
    counter.fetch_add(1, Ordering::Relaxed);
}

async fn request(upstream: &Upstream, cfg: &BotConfig, method: Method, path: &str) -> Outcome {
    match upstream
        .call(method.clone(), &cfg.web_authority, path)
        .await
    {
        Ok(resp) if resp.status.is_success() => Outcome::Ok,
        Ok(resp) => {
            tracing::debug!(%method, path, status = resp.status.as_u16(), "request failed");
            Outcome::Failed
        }
        Err(error) => {
            tracing::debug!(%method, path, %error, "request failed");
            if error.is_connect() {
                Outcome::ConnectError
            } else {
                Outcome::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rps: f64) -> BotConfig {
        BotConfig {
            web_authority: "web:80".to_string(),
            rps,
            summary_interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn validation_and_pacing() {
        assert_eq!(cfg(5.0).validate(), Ok(()));
        assert_eq!(cfg(5.0).round_period(), Duration::from_millis(400));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 10_001.0] {
            assert!(cfg(bad).validate().is_err(), "{bad}");
        }
        let mut c = cfg(1.0);
        c.summary_interval = Duration::ZERO;
        assert_eq!(c.validate(), Err(BotConfigError::SummaryInterval));
    }

    #[test]
    fn summary_line() {
        let total = Snapshot {
            list_ok: 30,
            list_failed: 3,
            vote_ok: 32,
            vote_failed: 1,
        };
        let earlier = Snapshot {
            list_ok: 10,
            list_failed: 1,
            vote_ok: 10,
            vote_failed: 0,
        };
        assert_eq!(
            summary(Duration::from_secs(10), &total.since(&earlier), &total),
            "last 10s: 42 ok, 3 failed (list 20 ok/2 failed, vote 22 ok/1 failed); \
             total 62 ok, 4 failed"
        );
    }
}
