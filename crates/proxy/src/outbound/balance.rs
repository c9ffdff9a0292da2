//! The load balancer of one service authority: its endpoints (kept current by the discovery
//! watch), power of two choices over peak-EWMA cost, failure accrual, and waiting with fail-fast.
//!
//! Endpoints are shared (`Arc`): a request holds the endpoint it was sent to, so removing an
//! endpoint never fails requests already in flight to it. Requests that find no usable endpoint
//! wait for one, but only while the service has been without one for less than its fail-fast
//! period; after that they get 503 at once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::accrual::{Accrual, AccrualConfig};
use super::ewma::{p2c, PeakEwma, DEFAULT_DECAY, DEFAULT_RTT};
use crate::metrics::Gauge;
use crate::telemetry::DstLabels;

/// How often a waiting request re-checks (an ejected endpoint's backoff may have ended).
const WAIT_TICK: Duration = Duration::from_millis(50);

/// The clock of the balancer: Tokio's, so paused-time tests drive it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A meshed endpoint's proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshedProxy {
    /// The peer proxy's inbound listener.
    pub inbound: SocketAddr,
    /// The identity it must prove; `None` only when the control plane sends none.
    pub identity: Option<String>,
}

/// An endpoint as discovery describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub addr: SocketAddr,
    pub weight: u32,
    pub meshed: Option<MeshedProxy>,
    /// The destination service's metric labels (the set's and the endpoint's).
    pub labels: BTreeMap<String, String>,
    /// What of `labels` the request metrics export (`dst_namespace`, `dst_pod`, …).
    pub dst: DstLabels,
}

/// A change to the endpoint set, from discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointUpdate {
    /// The whole set (the first message of a fresh watch).
    Reset(Vec<EndpointSpec>),
    Add(Vec<EndpointSpec>),
    Remove(Vec<SocketAddr>),
    /// No endpoints; `exists: false` when the service does not exist.
    NoEndpoints {
        exists: bool,
    },
}

/// What the balancer knows about its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Discovery has not answered yet.
    Pending,
    /// The service does not exist: requests are forwarded as they are.
    NotFound,
    Known,
}

#[derive(Debug)]
struct Stats {
    ewma: PeakEwma,
    accrual: Accrual,
}

/// One endpoint, shared by the balancer and the requests sent to it.
#[derive(Debug)]
pub struct Endpoint {
    pub spec: EndpointSpec,
    stats: Mutex<Stats>,
    pending: AtomicU32,
}

impl Endpoint {
    fn new(spec: EndpointSpec, now: Instant) -> Self {
        Endpoint {
            spec,
            stats: Mutex::new(Stats {
                ewma: PeakEwma::new(DEFAULT_RTT, DEFAULT_DECAY, now),
                accrual: Accrual::default(),
            }),
            pending: AtomicU32::new(0),
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cost(&self, now: Instant) -> f64 {
        self.stats()
            .ewma
            .cost(now, self.pending.load(Ordering::Relaxed), self.spec.weight)
    }

    /// Marks a request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.pending.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Records a round trip (request sent → response headers).
    pub fn observe_rtt(&self, rtt: Duration, now: Instant) {
        self.stats().ewma.observe(rtt, now);
    }

    /// The current latency estimate, in milliseconds (for logs and tests).
    pub fn estimate_ms(&self, now: Instant) -> f64 {
        self.stats().ewma.estimate(now) / 1e6
    }
}

/// A request in flight to an endpoint (counts toward its cost).
#[derive(Debug)]
pub struct InFlight(pub Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct State {
    status: Status,
    endpoints: HashMap<SocketAddr, Arc<Endpoint>>,
    /// Since when no endpoint has been usable (`None` while one is).
    unusable_since: Option<Instant>,
}

/// Why no endpoint was returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unready {
    /// The service does not exist.
    NotFound,
    /// No usable endpoint for the whole fail-fast period.
    FailFast,
    /// The caller's deadline passed while waiting.
    Deadline,
}

/// The balancer's endpoint gauges (`ready`, `pending` = ejected by failure accrual).
#[derive(Clone, Debug, Default)]
pub struct EndpointGauges {
    pub ready: Arc<Gauge>,
    pub pending: Arc<Gauge>,
}

/// The load balancer of one authority.
#[derive(Debug)]
pub struct Balancer {
    pub authority: String,
    state: Mutex<State>,
    changed: Notify,
    gauges: EndpointGauges,
}

impl Balancer {
    pub fn new(authority: &str, gauges: EndpointGauges, now: Instant) -> Self {
        Balancer {
            authority: authority.to_string(),
            state: Mutex::new(State {
                status: Status::Pending,
                endpoints: HashMap::new(),
                unusable_since: Some(now),
            }),
            changed: Notify::new(),
            gauges,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// Number of endpoints (for tests).
    pub fn len(&self) -> usize {
        self.lock().endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a discovery update and wakes waiting requests.
    pub fn apply(&self, update: EndpointUpdate, now: Instant) {
        {
            let mut st = self.lock();
            let upsert = |st: &mut State, spec: EndpointSpec| {
                // Keep the latency history of an endpoint that did not really change.
                let keep = st
                    .endpoints
                    .get(&spec.addr)
                    .filter(|e| e.spec == spec)
                    .cloned();
                let ep = keep.unwrap_or_else(|| Arc::new(Endpoint::new(spec.clone(), now)));
                st.endpoints.insert(spec.addr, ep);
            };
            match update {
                EndpointUpdate::Reset(specs) => {
                    let mut old = std::mem::take(&mut st.endpoints);
                    for spec in specs {
                        if let Some(e) = old.remove(&spec.addr) {
                            st.endpoints.insert(spec.addr, e);
                        }
                        upsert(&mut st, spec);
                    }
                    st.status = Status::Known;
                }
                EndpointUpdate::Add(specs) => {
                    for spec in specs {
                        upsert(&mut st, spec);
                    }
                    st.status = Status::Known;
                }
                EndpointUpdate::Remove(addrs) => {
                    for a in addrs {
                        st.endpoints.remove(&a);
                    }
                    st.status = Status::Known;
                }
                EndpointUpdate::NoEndpoints { exists } => {
                    st.endpoints.clear();
                    st.status = if exists {
                        Status::Known
                    } else {
                        Status::NotFound
                    };
                }
            }
            if st.endpoints.is_empty() {
                st.unusable_since.get_or_insert(now);
            } else {
                st.unusable_since = None;
            }
            self.update_gauges(&st, now);
        }
        self.changed.notify_waiters();
    }

    fn update_gauges(&self, st: &State, now: Instant) {
        let ready = st
            .endpoints
            .values()
            .filter(|e| e.stats().accrual.available(now))
            .count();
        let total = st.endpoints.len();
        self.gauges.ready.set(ready as i64);
        self.gauges.pending.set((total - ready) as i64);
    }

    /// Picks an endpoint now, if one is usable.
    pub fn pick(&self, now: Instant) -> Result<Arc<Endpoint>, Status> {
        let mut st = self.lock();
        if st.status != Status::Known {
            return Err(st.status);
        }
        let usable: Vec<&Arc<Endpoint>> = st
            .endpoints
            .values()
            .filter(|e| e.stats().accrual.available(now))
            .collect();
        let costs: Vec<f64> = usable.iter().map(|e| e.cost(now)).collect();
        let chosen = p2c(&costs, fastrand::usize(..), fastrand::usize(..))
            .and_then(|i| usable.get(i))
            .map(|e| (*e).clone());
        match chosen {
            Some(ep) => {
                st.unusable_since = None;
                ep.stats().accrual.picked(now);
                Ok(ep)
            }
            None => {
                st.unusable_since.get_or_insert(now);
                Err(Status::Known)
            }
        }
    }

    /// Waits for a usable endpoint: at once if there is one, 503 (`FailFast`) if the service
    /// has had none for `fail_fast`, else until one appears, the fail-fast period ends or
    /// `deadline` passes.
    pub async fn ready(
        &self,
        fail_fast: Duration,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Arc<Endpoint>, Unready> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now();
            match self.pick(now) {
                Ok(ep) => return Ok(ep),
                Err(Status::NotFound) => return Err(Unready::NotFound),
                Err(_) => {}
            }
            let since = self.lock().unusable_since.unwrap_or(now);
            let fail_at = since + fail_fast;
            if now >= fail_at {
                return Err(Unready::FailFast);
            }
            let wait = (fail_at - now).min(WAIT_TICK);
            let mut wake = tokio::time::Instant::now() + wait;
            if let Some(d) = deadline {
                if d <= tokio::time::Instant::now() {
                    return Err(Unready::Deadline);
                }
                wake = wake.min(d);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Zeroes the endpoint gauges (the balancer is being dropped).
    pub fn clear_gauges(&self) {
        self.gauges.ready.set(0);
        self.gauges.pending.set(0);
    }

    /// Records a request's outcome for failure accrual.
    pub fn record(&self, ep: &Endpoint, failed: bool, cfg: Option<&AccrualConfig>) {
        let now = now();
        let changed = ep.stats().accrual.record(failed, now, cfg);
        if changed {
            if failed {
                tracing::info!(dst.authority = %self.authority, endpoint = %ep.spec.addr, "endpoint ejected after consecutive failures");
            } else {
                tracing::info!(dst.authority = %self.authority, endpoint = %ep.spec.addr, "endpoint back in the balancer");
            }
            let st = self.lock();
            self.update_gauges(&st, now);
        }
    }

    /// The client went away before the outcome was known.
    pub fn cancelled(&self, ep: &Endpoint) {
        ep.stats().accrual.cancelled(now());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(port: u16) -> EndpointSpec {
        EndpointSpec {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 0,
            meshed: None,
            labels: BTreeMap::new(),
            dst: DstLabels::default(),
        }
    }

    #[test]
    fn p2c_prefers_the_fast_endpoint() {
        let t0 = Instant::now();
        let b = Balancer::new("svc:80", EndpointGauges::default(), t0);
        b.apply(EndpointUpdate::Reset(vec![spec(1), spec(2), spec(3)]), t0);
        for port in [1, 2, 3] {
            let ep = b.lock().endpoints[&spec(port).addr].clone();
            let rtt = if port == 2 { 51 } else { 1 };
            ep.observe_rtt(Duration::from_millis(rtt), t0);
        }
        let mut slow = 0;
        for _ in 0..1000 {
            if b.pick(t0).unwrap().spec.addr.port() == 2 {
                slow += 1;
            }
        }
        assert_eq!(slow, 0);
        assert_eq!(b.gauges.ready.get(), 3);
    }

    #[test]
    fn pending_requests_spread_load() {
        let t0 = Instant::now();
        let b = Balancer::new("svc:80", EndpointGauges::default(), t0);
        b.apply(EndpointUpdate::Reset(vec![spec(1), spec(2)]), t0);
        let first = b.pick(t0).unwrap();
        let _busy = first.start();
        // Equal latency: the idle one is cheaper.
        assert_ne!(b.pick(t0).unwrap().spec.addr, first.spec.addr);
    }

    #[test]
    fn updates_keep_in_flight_endpoints_alive_and_reset_replaces() {
        let t0 = Instant::now();
        let b = Balancer::new("svc:80", EndpointGauges::default(), t0);
        assert_eq!(b.pick(t0).unwrap_err(), Status::Pending);
        b.apply(EndpointUpdate::Add(vec![spec(1)]), t0);
        let held = b.pick(t0).unwrap();
        b.apply(EndpointUpdate::Remove(vec![spec(1).addr]), t0);
        assert_eq!(held.spec.addr.port(), 1, "still usable by its request");
        assert_eq!(b.pick(t0).unwrap_err(), Status::Known);
        b.apply(EndpointUpdate::Add(vec![spec(2), spec(3)]), t0);
        b.apply(EndpointUpdate::Reset(vec![spec(4)]), t0);
        assert_eq!(b.len(), 1);
        b.apply(EndpointUpdate::NoEndpoints { exists: false }, t0);
        assert_eq!(b.pick(t0).unwrap_err(), Status::NotFound);
    }

    #[test]
    fn accrual_ejects_and_probes() {
        let t0 = Instant::now();
        let b = Balancer::new("svc:80", EndpointGauges::default(), t0);
        b.apply(EndpointUpdate::Reset(vec![spec(1)]), t0);
        let cfg = AccrualConfig::sanitized(2, 60_000, 60_000);
        let ep = b.pick(t0).unwrap();
        b.record(&ep, true, cfg.as_ref());
        b.record(&ep, true, cfg.as_ref());
        assert_eq!(b.gauges.pending.get(), 1);
        assert!(b.pick(Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_endpoints_then_fails_fast() {
        let b = Arc::new(Balancer::new("svc:80", EndpointGauges::default(), now()));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.ready(Duration::from_secs(3), None).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        b.apply(EndpointUpdate::Add(vec![spec(1)]), now());
        assert!(waiter.await.unwrap().is_ok());
        // Now empty: requests wait within the window…
        b.apply(EndpointUpdate::NoEndpoints { exists: true }, now());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        assert_eq!(
            b.ready(Duration::from_secs(3), Some(deadline))
                .await
                .unwrap_err(),
            Unready::Deadline
        );
        // …and after the fail-fast period they get 503 at once.
        let started = tokio::time::Instant::now();
        assert_eq!(
            b.ready(Duration::from_secs(3), None).await.unwrap_err(),
            Unready::FailFast
        );
        let waited = started.elapsed();
        assert!(waited <= Duration::from_secs(3), "{waited:?}");
        assert_eq!(
            b.ready(Duration::from_secs(3), None).await.unwrap_err(),
            Unready::FailFast
        );
        assert_eq!(started.elapsed(), waited, "no second wait");
    }
}
