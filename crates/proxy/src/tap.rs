//! Live tap: streams events about the HTTP requests this proxy handles to the viz component
//! (`weft viz tap`), served by [`server`] on the tap port.
//!
//! A tap is a filter, a rate cap and a bounded channel. For each request that matches and is
//! under the cap the request path emits `RequestInit` when it dispatches the request (the
//! destination is known then), `ResponseInit` when the response head arrives and `ResponseEnd`
//! when the response body ends, fails or is abandoned.
//!
//! **Cost when nobody taps.** The request path calls [`Taps::is_active`] once per request: one
//! relaxed atomic load of the number of open taps. When it is zero nothing else happens: no
//! lock, no allocation, no copy of the request head; the `Option<Arc<TapRequest>>` carried along
//! the path stays `None`. Registering and unregistering a tap (rare) take a lock.
//!
//! **Slow tap clients never slow the data path.** Events go through a bounded channel per tap
//! with `try_send`; when it is full the event is dropped and counted in
//! `tap_events_dropped_total`. A request whose `RequestInit` was dropped (or that was over the
//! tap's rate cap) emits nothing further to that tap.

mod filter;
pub mod server;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::mpsc;
use weft_api::tap as pb;

pub use filter::{Cidr, Filter, FilterError, Head};

use crate::metrics::{Counter, Gauge};
use crate::telemetry::{Direction, DstLabels, Tls};

/// Requests per second a tap reports when it asks for 0.
pub const DEFAULT_MAX_RPS: u32 = 100;
/// The most requests per second one tap may report.
pub const MAX_RPS: u32 = 1000;
/// Open taps per proxy; more are refused (RESOURCE_EXHAUSTED). The viz component opens one per
/// `weft viz tap`, so this is a bound on concurrent operators, not on traffic.
pub const MAX_TAPS: usize = 100;
/// Events buffered per tap: a full second of the default rate (three events per request) with
/// room to spare; beyond it events are dropped rather than queued.
pub const EVENT_BUFFER: usize = 1024;

/// Tap metrics: open taps, events sent and dropped.
#[derive(Default, Debug)]
pub struct TapMetrics {
    pub active: Gauge,
    pub events_sent_total: Counter,
    pub events_dropped_total: Counter,
}

impl TapMetrics {
    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write as _;
        let mut one = |name: &str, kind: &str, help: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "tap_active_streams",
            "gauge",
            "Tap streams open on this proxy.",
            self.active.get(),
        );
        one(
            "tap_events_sent_total",
            "counter",
            "Tap events queued to tap streams.",
            i64::try_from(self.events_sent_total.get()).unwrap_or(i64::MAX),
        );
        one(
            "tap_events_dropped_total",
            "counter",
            "Tap events dropped because a tap stream's buffer was full (a slow tap client).",
            i64::try_from(self.events_dropped_total.get()).unwrap_or(i64::MAX),
        );
    }
}

/// Too many taps are open.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_TAPS} taps are already open on this proxy")]
pub struct TooManyTaps;

/// The open taps, shared by the request path and the tap server.
pub struct Taps {
    /// The number of open taps: the only thing the request path reads when nobody taps.
    active: AtomicUsize,
    subscribers: RwLock<Vec<Arc<Subscriber>>>,
    next_base: AtomicU32,
    metrics: Arc<TapMetrics>,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taps")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

/// One open tap.
struct Subscriber {
    /// The tap's number on this proxy (`id=<base>:…`).
    base: u32,
    filter: Filter,
    bucket: Mutex<Bucket>,
    /// The next request's number within this tap (`id=…:<stream>`).
    next_stream: AtomicU64,
    tx: mpsc::Sender<pb::TapEvent>,
}

/// A token bucket: up to `rate` requests at once, refilled at `rate` per second.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate);
        Bucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
    }

    /// Whether a request could be reported now (without taking the token).
    fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The rate a tap asked for, defaulted and clamped.
pub fn effective_rps(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_MAX_RPS,
        n => n.min(MAX_RPS),
    }
}

/// An open tap; dropping it closes the tap.
pub struct Registration {
    taps: Arc<Taps>,
    sub: Arc<Subscriber>,
}

impl Registration {
    /// The tap's number on this proxy.
    pub fn base(&self) -> u32 {
        self.sub.base
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut subs = self
            .taps
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|s| !Arc::ptr_eq(s, &self.sub));
        self.taps.active.store(subs.len(), Ordering::Release);
        self.taps.metrics.active.set(subs.len() as i64);
    }
}

impl Taps {
    pub fn new(metrics: Arc<TapMetrics>) -> Arc<Self> {
        Arc::new(Taps {
            active: AtomicUsize::new(0),
            subscribers: RwLock::new(Vec::new()),
            next_base: AtomicU32::new(0),
            metrics,
        })
    }

    /// Whether any tap is open. This is the whole per-request cost of tapping when nobody taps:
    /// one relaxed atomic load (callers check it before building anything for [`Taps::request`]).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) != 0
    }

    /// Opens a tap reporting requests that match `filter`, at most `max_rps` per second (see
    /// [`effective_rps`]). Events arrive on the receiver until the registration is dropped.
    pub fn register(
        self: &Arc<Self>,
        filter: Filter,
        max_rps: u32,
    ) -> Result<(Registration, mpsc::Receiver<pb::TapEvent>), TooManyTaps> {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let mut subs = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if subs.len() >= MAX_TAPS {
            return Err(TooManyTaps);
        }
        let sub = Arc::new(Subscriber {
            base: self.next_base.fetch_add(1, Ordering::Relaxed),
            filter,
            bucket: Mutex::new(Bucket::new(effective_rps(max_rps), Instant::now())),
            next_stream: AtomicU64::new(0),
            tx,
        });
        subs.push(sub.clone());
        self.active.store(subs.len(), Ordering::Release);
        self.metrics.active.set(subs.len() as i64);
        Ok((
            Registration {
                taps: self.clone(),
                sub,
            },
            rx,
        ))
    }

    /// Starts tapping a request whose head is `head` (call only when [`Taps::is_active`]).
    /// `None` when no open tap could want it.
    pub fn request(
        self: &Arc<Self>,
        head: Head<'_>,
        source: SocketAddr,
        scheme: &str,
    ) -> Option<Arc<TapRequest>> {
        // Over its rate cap a tap wants nothing: checked before copying the request's fields.
        let now = Instant::now();
        let wanted = self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|s| {
                s.filter.matches_head(&head)
                    && s.bucket
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .has_token(now)
            });
        if !wanted {
            return None;
        }
        Some(Arc::new(TapRequest {
            taps: self.clone(),
            start: now,
            direction: head.direction,
            source,
            method: head.method.to_string(),
            authority: head.authority.to_string(),
            normalized_authority: head.normalized_authority.to_string(),
            path: head.path.to_string(),
            scheme: scheme.to_string(),
            dispatched: OnceLock::new(),
            response_at: OnceLock::new(),
        }))
    }

    fn send(&self, sub: &Subscriber, event: pb::TapEvent) -> bool {
        match sub.tx.try_send(event) {
            Ok(()) => {
                self.metrics.events_sent_total.inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.events_dropped_total.inc();
                false
            }
            // The tap is closing: nobody reads this any more.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A request that some tap may report, carried along the request path.
pub struct TapRequest {
    taps: Arc<Taps>,
    start: Instant,
    direction: Direction,
    source: SocketAddr,
    method: String,
    authority: String,
    normalized_authority: String,
    path: String,
    scheme: String,
    /// Set once, when the request is dispatched: the taps that got its `RequestInit`.
    dispatched: OnceLock<Dispatched>,
    response_at: OnceLock<Instant>,
}

struct Dispatched {
    /// The fields every event of this request repeats.
    template: pb::TapEvent,
    /// The taps reporting this request, with the request's number in each.
    subs: Vec<(Arc<Subscriber>, u64)>,
}

fn tls_fields(tls: &Tls) -> (String, String, String) {
    match tls {
        Tls::NoIdentity(reason) => ((*reason).to_string(), String::new(), String::new()),
        Tls::Established {
            client_id,
            server_id,
        } => (
            "true".to_string(),
            client_id.clone().unwrap_or_default(),
            server_id.clone().unwrap_or_default(),
        ),
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl TapRequest {
    /// Emits `RequestInit` to every tap that wants this request now that its destination is
    /// known (`None`: the proxy answers itself before choosing one). Only the first call counts
    /// (a retried request is one request).
    pub fn dispatch(&self, destination: Option<SocketAddr>, tls: &Tls, dst: &DstLabels) {
        self.dispatched
            .get_or_init(|| self.select(destination, tls, dst));
    }

    fn select(&self, destination: Option<SocketAddr>, tls: &Tls, dst: &DstLabels) -> Dispatched {
        let (tls, source_identity, destination_identity) = tls_fields(tls);
        let template = pb::TapEvent {
            request_id: None,
            direction: match self.direction {
                Direction::Inbound => pb::Direction::Inbound,
                Direction::Outbound => pb::Direction::Outbound,
            } as i32,
            source: self.source.to_string(),
            destination: destination.map(|d| d.to_string()).unwrap_or_default(),
            tls,
            source_identity,
            destination_identity,
            destination_labels: dst
                .iter()
                .map(|(k, v)| {
                    (
                        k.strip_prefix("dst_").unwrap_or(k).to_string(),
                        v.to_string(),
                    )
                })
                .collect(),
            event: None,
        };
        let head = Head {
            direction: self.direction,
            source: self.source.ip(),
            method: &self.method,
            authority: &self.authority,
            normalized_authority: &self.normalized_authority,
            path: &self.path,
        };
        let dst_ip: Option<IpAddr> = destination.map(|d| d.ip());
        let now = Instant::now();
        let mut subs = Vec::new();
        // try_send never waits, so holding the read lock here is brief.
        let open = self
            .taps
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for sub in open.iter() {
            if !sub.filter.matches_head(&head) || !sub.filter.matches_destination(dst_ip) {
                continue;
            }
            if !sub
                .bucket
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(now)
            {
                continue;
            }
            let stream = sub.next_stream.fetch_add(1, Ordering::Relaxed);
            let mut event = template.clone();
            event.request_id = Some(pb::RequestId {
                base: sub.base,
                stream,
            });
            event.event = Some(pb::tap_event::Event::RequestInit(pb::RequestInit {
                method: self.method.clone(),
                authority: self.authority.clone(),
                path: self.path.clone(),
                scheme: self.scheme.clone(),
            }));
            if self.taps.send(sub, event) {
                subs.push((sub.clone(), stream));
            }
        }
        drop(open);
        Dispatched { template, subs }
    }

    fn emit(&self, event: &pb::tap_event::Event) {
        let Some(d) = self.dispatched.get() else {
            return;
        };
        for (sub, stream) in &d.subs {
            let mut e = d.template.clone();
            e.request_id = Some(pb::RequestId {
                base: sub.base,
                stream: *stream,
            });
            e.event = Some(event.clone());
            self.taps.send(sub, e);
        }
    }

    /// Emits `ResponseInit` (the response head arrived with `status`).
    pub fn response_init(&self, status: u16) {
        let now = Instant::now();
        let _ = self.response_at.set(now);
        if self.dispatched.get().is_none_or(|d| d.subs.is_empty()) {
            return;
        }
        self.emit(&pb::tap_event::Event::ResponseInit(pb::ResponseInit {
            status: u32::from(status),
            since_request_init_us: micros(now.saturating_duration_since(self.start)),
        }));
    }

    /// Emits `ResponseEnd`: the body ended after `bytes` bytes, with `grpc_status` from its
    /// trailers, or failed with `error`.
    pub fn response_end(&self, grpc_status: Option<u16>, bytes: u64, error: Option<&str>) {
        if self.dispatched.get().is_none_or(|d| d.subs.is_empty()) {
            return;
        }
        let now = Instant::now();
        let response_at = self.response_at.get().copied().unwrap_or(now);
        self.emit(&pb::tap_event::Event::ResponseEnd(pb::ResponseEnd {
            grpc_status: grpc_status.map(u32::from),
            since_request_init_us: micros(now.saturating_duration_since(self.start)),
            since_response_init_us: micros(now.saturating_duration_since(response_at)),
            response_bytes: bytes,
            error: error.unwrap_or_default().to_string(),
        }));
    }
}

#[cfg(test)]
mod tests;
