//! The outbound resilient client: what the proxy does with an outbound HTTP request when the
//! destination service knows its authority.
//!
//! - [`discovery`]: one shared `Get` + `GetPolicy` watch per authority, cached here and dropped
//!   after [`OutboundConfig::idle_timeout`] without requests; the last state survives a control
//!   plane outage.
//! - [`policy`] / [`route`]: the compiled policy and request matching.
//! - [`split`]: weighted backends; each backend authority has its own [`balance::Balancer`]
//!   (P2C over [`ewma`] costs, [`accrual`], fail-fast).
//! - [`exchange`]: one request through a route — timeouts, [`retry`] under the [`budget`], and
//!   the streamed response ([`body`]).
//! - [`metrics`]: the `route_*` families and balancer gauges.

pub mod accrual;
pub mod backoff;
pub mod balance;
pub mod body;
pub mod budget;
pub mod discovery;
pub mod ewma;
pub mod exchange;
pub mod metrics;
pub mod policy;
pub mod retry;
pub mod route;
pub mod split;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use balance::{Balancer, EndpointGauges};
use budget::RetryBudget;
use discovery::{Destination, PolicyState};
use metrics::{BalancerLabels, OutboundMetrics};
use policy::Policy;

/// Default time a watch is kept without requests.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of the outbound client.
#[derive(Clone, Debug)]
pub struct OutboundConfig {
    /// Watches unused for this long are closed.
    pub idle_timeout: Duration,
    /// The longest a request waits for a new watch's first policy answer before it is
    /// forwarded as if the service were unknown.
    pub initial_wait: Duration,
}

/// Aborts a watch task when its last handle goes.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A service authority's policy watch and retry budget, shared by its requests.
#[derive(Debug)]
pub struct ServiceHandle {
    pub authority: String,
    rx: watch::Receiver<PolicyState>,
    /// Its parameters follow the policy: the watch sets them on each update.
    pub budget: Arc<RetryBudget>,
    last_used: AtomicU64,
    _task: AbortOnDrop,
}

/// A backend authority's balancer and endpoint watch.
#[derive(Debug)]
pub struct BalancerHandle {
    pub balancer: Arc<Balancer>,
    last_used: AtomicU64,
    _task: AbortOnDrop,
}

/// The outbound client's caches.
pub struct Outbound {
    destination: Destination,
    config: OutboundConfig,
    epoch: Instant,
    services: Mutex<HashMap<String, Arc<ServiceHandle>>>,
    balancers: Mutex<HashMap<String, Arc<BalancerHandle>>>,
    pub metrics: Arc<OutboundMetrics>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// Starts the client (and its idle sweeper) on the current runtime.
    pub fn spawn(
        destination: Destination,
        config: OutboundConfig,
        metrics: Arc<OutboundMetrics>,
    ) -> Arc<Self> {
        let out = Arc::new(Outbound {
            destination,
            config,
            epoch: Instant::now(),
            services: Mutex::new(HashMap::new()),
            balancers: Mutex::new(HashMap::new()),
            metrics,
        });
        let weak = Arc::downgrade(&out);
        let every = (out.config.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(out) = Weak::upgrade(&weak) else {
                        return;
                    };
                    out.sweep();
                }
            }
            .instrument(tracing::debug_span!(parent: None, "outbound.sweep")),
        );
        out
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The policy of `authority`: from the cache, or a new watch (waiting a bounded time for
    /// its first answer). `None`: not a known service (or no answer in time) — forward the
    /// request as it is.
    pub async fn policy(&self, authority: &str) -> Option<(Arc<ServiceHandle>, Arc<Policy>)> {
        let svc = self.service(authority);
        let mut rx = svc.rx.clone();
        // Known services (every request after the first) skip the timer.
        let known = match &*rx.borrow() {
            PolicyState::Pending => None,
            s => Some(s.clone()),
        };
        let state = if let Some(s) = known {
            s
        } else {
            let wait = rx.wait_for(|s| !matches!(s, PolicyState::Pending));
            match tokio::time::timeout(self.config.initial_wait, wait).await {
                Ok(Ok(s)) => s.clone(),
                Ok(Err(_)) => return None,
                Err(_) => {
                    tracing::info!(dst.authority = %authority, wait = ?self.config.initial_wait, "no policy from the destination service yet; forwarding as unknown");
                    return None;
                }
            }
        };
        match state {
            PolicyState::Found(p) => Some((svc, p)),
            _ => None,
        }
    }

    fn service(&self, authority: &str) -> Arc<ServiceHandle> {
        let mut map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(authority) {
            s.last_used.store(self.stamp(), Ordering::Relaxed);
            return s.clone();
        }
        let (tx, rx) = watch::channel(PolicyState::Pending);
        let budget = Arc::new(RetryBudget::new(
            budget::BudgetParams::default(),
            Instant::now(),
        ));
        let task = tokio::spawn(
            self.destination
                .clone()
                .watch_policy(authority.to_string(), tx, budget.clone())
                .instrument(
                    tracing::info_span!(parent: None, "policy", dst.authority = %authority),
                ),
        );
        let s = Arc::new(ServiceHandle {
            authority: authority.to_string(),
            rx,
            budget,
            last_used: AtomicU64::new(self.stamp()),
            _task: AbortOnDrop(task.abort_handle()),
        });
        map.insert(authority.to_string(), s.clone());
        s
    }

    /// The balancer of a backend authority, watching its endpoints.
    pub fn balancer(&self, authority: &str) -> Arc<BalancerHandle> {
        let mut map = self
            .balancers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = map.get(authority) {
            b.last_used.store(self.stamp(), Ordering::Relaxed);
            return b.clone();
        }
        let gauge = |state| {
            self.metrics.balancer_endpoints.get(&BalancerLabels {
                authority: authority.to_string(),
                state,
            })
        };
        let gauges = EndpointGauges {
            ready: gauge("ready"),
            pending: gauge("pending"),
        };
        let balancer = Arc::new(Balancer::new(authority, gauges, balance::now()));
        let task = tokio::spawn(
            self.destination
                .clone()
                .watch_endpoints(authority.to_string(), balancer.clone())
                .instrument(
                    tracing::info_span!(parent: None, "endpoints", dst.authority = %authority),
                ),
        );
        let b = Arc::new(BalancerHandle {
            balancer,
            last_used: AtomicU64::new(self.stamp()),
            _task: AbortOnDrop(task.abort_handle()),
        });
        map.insert(authority.to_string(), b.clone());
        b
    }

    /// Closes watches that were not used for the idle timeout and that no request holds.
    fn sweep(&self) {
        let now = self.stamp();
        let idle = u64::try_from(self.config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let stale = |last: &AtomicU64| now.saturating_sub(last.load(Ordering::Relaxed)) >= idle;
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|a, s| {
                let keep = Arc::strong_count(s) > 1 || !stale(&s.last_used);
                if !keep {
                    tracing::debug!(dst.authority = %a, "closing idle policy watch");
                }
                keep
            });
        self.balancers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|a, b| {
                let keep = Arc::strong_count(b) > 1 || !stale(&b.last_used);
                if !keep {
                    tracing::debug!(dst.authority = %a, "closing idle endpoint watch");
                    b.balancer.clear_gauges();
                }
                keep
            });
    }

    /// Open watches (policy, endpoints), for tests and logs.
    pub fn watch_counts(&self) -> (usize, usize) {
        (
            self.services
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            self.balancers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
        )
    }
}
