#![allow(clippy::unwrap_used)]

use super::*;

fn taps() -> (Arc<Taps>, Arc<TapMetrics>) {
    let metrics = Arc::new(TapMetrics::default());
    (Taps::new(metrics.clone()), metrics)
}

fn head(path: &str) -> Head<'_> {
    Head {
        direction: Direction::Inbound,
        source: "127.0.1.2".parse().unwrap(),
        method: "GET",
        authority: "web:80",
        normalized_authority: "web:80",
        path,
    }
}

fn source() -> SocketAddr {
    "127.0.1.2:40000".parse().unwrap()
}

fn dst() -> Option<SocketAddr> {
    Some("127.0.0.1:8080".parse().unwrap())
}

/// Runs one request through: dispatch, response head, body end.
fn one_request(taps: &Arc<Taps>, path: &str) -> Option<Arc<TapRequest>> {
    let req = taps.request(head(path), source(), "http")?;
    req.dispatch(
        dst(),
        &Tls::Established {
            client_id: Some("web.ns.serviceaccount.identity.weft.cluster.local".into()),
            server_id: None,
        },
        &DstLabels::default(),
    );
    req.response_init(200);
    req.response_end(None, 12, None);
    Some(req)
}

#[test]
fn idle_taps_are_inactive_and_registration_toggles_them() {
    let (taps, metrics) = taps();
    assert!(!taps.is_active());
    let (reg, _rx) = taps.register(Filter::default(), 0).unwrap();
    assert!(taps.is_active());
    assert_eq!(metrics.active.get(), 1);
    let (reg2, _rx2) = taps.register(Filter::default(), 0).unwrap();
    assert_eq!((reg.base(), reg2.base()), (0, 1));
    drop(reg);
    assert!(taps.is_active());
    drop(reg2);
    assert!(!taps.is_active());
    assert_eq!(metrics.active.get(), 0);
}

#[test]
fn a_request_yields_init_response_and_end() {
    let (taps, metrics) = taps();
    let (_reg, mut rx) = taps.register(Filter::default(), 0).unwrap();
    one_request(&taps, "/x").unwrap();
    let events: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e.request_id, Some(pb::RequestId { base: 0, stream: 0 }));
        assert_eq!(e.tls, "true");
        assert_eq!(e.source, "127.0.1.2:40000");
        assert_eq!(e.destination, "127.0.0.1:8080");
        assert_eq!(
            e.source_identity,
            "web.ns.serviceaccount.identity.weft.cluster.local"
        );
        assert_eq!(e.direction, pb::Direction::Inbound as i32);
    }
    match &events[0].event {
        Some(pb::tap_event::Event::RequestInit(r)) => {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/x"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &events[1].event,
        Some(pb::tap_event::Event::ResponseInit(r)) if r.status == 200
    ));
    assert!(matches!(
        &events[2].event,
        Some(pb::tap_event::Event::ResponseEnd(r)) if r.response_bytes == 12 && r.error.is_empty()
    ));
    assert_eq!(metrics.events_sent_total.get(), 3);
}

#[test]
fn filters_select_requests_before_anything_is_copied() {
    let (taps, _) = taps();
    let filter = Filter {
        path_prefix: Some("/api".into()),
        ..Default::default()
    };
    let (_reg, mut rx) = taps.register(filter, 0).unwrap();
    assert!(one_request(&taps, "/other").is_none());
    assert!(rx.try_recv().is_err());
    one_request(&taps, "/api/list").unwrap();
    assert!(rx.try_recv().is_ok());
}

#[test]
fn destination_filters_apply_at_dispatch() {
    let (taps, _) = taps();
    let filter = Filter {
        destination: Cidr::parse("10.0.0.0/8"),
        ..Default::default()
    };
    let (_reg, mut rx) = taps.register(filter, 0).unwrap();
    one_request(&taps, "/").unwrap();
    assert!(rx.try_recv().is_err(), "127.0.0.1 is not in 10/8");
}

#[test]
fn the_rate_cap_limits_requests_not_events() {
    let (taps, _) = taps();
    let (_reg, mut rx) = taps.register(Filter::default(), 5).unwrap();
    for _ in 0..50 {
        one_request(&taps, "/");
    }
    let events: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    // The burst of 5, plus whatever refilled while the loop ran (5 a second: 15 requests
    // would take a 2-second loop); never all 50. The refill arithmetic itself is
    // `buckets_refill_at_their_rate`.
    assert!(events.len() >= 15, "{}", events.len());
    assert!(events.len() <= 3 * 15, "{}", events.len());
    assert_eq!(events.len() % 3, 0, "every reported request is complete");
}

#[test]
fn buckets_refill_at_their_rate() {
    let t0 = Instant::now();
    let mut b = Bucket::new(5, t0);
    assert_eq!((0..10).filter(|_| b.take(t0)).count(), 5, "a burst of 5");
    assert!(!b.has_token(t0));
    let later = t0 + std::time::Duration::from_millis(400);
    assert!(b.has_token(later), "2 tokens after 0.4 s at 5/s");
    assert_eq!((0..10).filter(|_| b.take(later)).count(), 2);
    let much_later = later + std::time::Duration::from_secs(60);
    assert_eq!(
        (0..10).filter(|_| b.take(much_later)).count(),
        5,
        "never more than one second's worth"
    );
}

#[test]
fn requested_rates_are_defaulted_and_clamped() {
    assert_eq!(effective_rps(0), DEFAULT_MAX_RPS);
    assert_eq!(effective_rps(7), 7);
    assert_eq!(effective_rps(u32::MAX), MAX_RPS);
}

#[test]
fn a_full_buffer_drops_events_and_a_dropped_init_drops_the_request() {
    let (taps, metrics) = taps();
    let (_reg, mut rx) = taps.register(Filter::default(), MAX_RPS).unwrap();
    // Fill the buffer with requests that dispatched and got their response head (two events
    // each, so the rate cap is not what stops the next one).
    let mut dispatched = Vec::new();
    for _ in 0..EVENT_BUFFER / 2 {
        let req = taps.request(head("/"), source(), "http").unwrap();
        req.dispatch(dst(), &Tls::NoIdentity("disabled"), &DstLabels::default());
        req.response_init(200);
        dispatched.push(req);
    }
    assert_eq!(metrics.events_dropped_total.get(), 0);
    // The buffer is full: this request's RequestInit is dropped...
    let late = taps.request(head("/"), source(), "http").unwrap();
    late.dispatch(dst(), &Tls::NoIdentity("disabled"), &DstLabels::default());
    assert_eq!(metrics.events_dropped_total.get(), 1);
    // ... so after the client catches up, it still emits nothing.
    while rx.try_recv().is_ok() {}
    late.response_init(200);
    late.response_end(None, 0, None);
    assert!(rx.try_recv().is_err());
    assert_eq!(metrics.events_dropped_total.get(), 1);
    // The earlier ones go on.
    dispatched[0].response_end(None, 0, None);
    assert!(rx.try_recv().is_ok());
}

#[test]
fn too_many_taps_are_refused() {
    let (taps, _) = taps();
    let regs: Vec<_> = (0..MAX_TAPS)
        .map(|_| taps.register(Filter::default(), 0).unwrap())
        .collect();
    assert!(taps.register(Filter::default(), 0).is_err());
    drop(regs);
    assert!(taps.register(Filter::default(), 0).is_ok());
}

#[test]
fn metrics_encode_as_prometheus_text() {
    let m = TapMetrics::default();
    m.events_dropped_total.add(2);
    let mut out = String::new();
    m.encode(&mut out);
    assert!(out.contains("# TYPE tap_active_streams gauge\ntap_active_streams 0\n"));
    assert!(out.contains("tap_events_dropped_total 2\n"));
}
