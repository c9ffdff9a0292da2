//! Failure accrual (circuit breaking) for one endpoint: after `consecutive_failures` failed
//! requests in a row the endpoint is taken out of the balancer; after a backoff it gets one probe
//! request; a failed probe doubles the backoff (up to the maximum), a successful one puts the
//! endpoint back.
//!
//! Pure state over a caller-supplied clock.

use std::time::{Duration, Instant};

/// Settings from the service's policy (`FailureAccrual`), sanitized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccrualConfig {
    pub consecutive_failures: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl AccrualConfig {
    /// `None` when the policy turns it off (0 failures).
    pub fn sanitized(consecutive_failures: u32, min_ms: u64, max_ms: u64) -> Option<Self> {
        if consecutive_failures == 0 {
            return None;
        }
        let min_backoff = Duration::from_millis(min_ms.clamp(1, 3_600_000));
        let max_backoff = Duration::from_millis(max_ms.min(3_600_000)).max(min_backoff);
        Some(AccrualConfig {
            consecutive_failures,
            min_backoff,
            max_backoff,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the balancer.
    Closed { failures: u32 },
    /// Ejected until `until`; then one probe may go.
    Open { until: Instant, backoff: Duration },
    /// One probe is in flight.
    Probing { backoff: Duration },
}

/// One endpoint's failure accrual.
#[derive(Clone, Copy, Debug)]
pub struct Accrual {
    state: State,
}

impl Default for Accrual {
    fn default() -> Self {
        Accrual {
            state: State::Closed { failures: 0 },
        }
    }
}

impl Accrual {
    /// Whether the balancer may pick this endpoint now.
    pub fn available(&self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until, .. } => now >= until,
            State::Probing { .. } => false,
        }
    }

    /// Whether the endpoint is ejected (for the `pending` endpoint count).
    pub fn ejected(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// The endpoint was picked: an ejected endpoint whose backoff is over becomes the probe.
    pub fn picked(&mut self, now: Instant) {
        if let State::Open { until, backoff } = self.state {
            if now >= until {
                self.state = State::Probing { backoff };
            }
        }
    }

    /// Records the outcome of a request. Returns true when the endpoint's availability changed.
    pub fn record(&mut self, failed: bool, now: Instant, cfg: Option<&AccrualConfig>) -> bool {
        let Some(cfg) = cfg else {
            // Accrual was switched off: everything goes back in.
            let changed = self.ejected();
            self.state = State::Closed { failures: 0 };
            return changed;
        };
        match (self.state, failed) {
            (State::Closed { .. }, false) => {
                self.state = State::Closed { failures: 0 };
                false
            }
            (State::Closed { failures }, true) => {
                let failures = failures.saturating_add(1);
                if failures >= cfg.consecutive_failures {
                    self.state = State::Open {
                        until: now + cfg.min_backoff,
                        backoff: cfg.min_backoff,
                    };
                    true
                } else {
                    self.state = State::Closed { failures };
                    false
                }
            }
            (State::Probing { .. }, false) => {
                self.state = State::Closed { failures: 0 };
                true
            }
            (State::Probing { backoff }, true) => {
                let backoff = (backoff * 2).min(cfg.max_backoff);
                self.state = State::Open {
                    until: now + backoff,
                    backoff,
                };
                false
            }
            // Responses to requests sent before the ejection change nothing.
            (State::Open { .. }, _) => false,
        }
    }

    /// The probe was cancelled (the client went away): another may go at once.
    pub fn cancelled(&mut self, now: Instant) {
        if let State::Probing { backoff } = self.state {
            self.state = State::Open {
                until: now,
                backoff,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AccrualConfig {
        AccrualConfig::sanitized(3, 100, 400).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn ejects_after_consecutive_failures_and_probes_after_backoff() {
        let t0 = Instant::now();
        let c = cfg();
        let mut a = Accrual::default();
        a.record(true, t0, Some(&c));
        a.record(false, t0, Some(&c)); // a success resets the count
        a.record(true, t0, Some(&c));
        a.record(true, t0, Some(&c));
        assert!(a.available(t0));
        assert!(a.record(true, t0, Some(&c)));
        assert!(!a.available(t0));
        let t1 = t0 + Duration::from_millis(100);
        assert!(a.available(t1));
        a.picked(t1);
        assert!(!a.available(t1), "only one probe at a time");
        // A failed probe doubles the backoff.
        a.record(true, t1, Some(&c));
        assert!(!a.available(t1 + Duration::from_millis(199)));
        let t2 = t1 + Duration::from_millis(200);
        assert!(a.available(t2));
        a.picked(t2);
        a.record(true, t2, Some(&c));
        // Capped at the maximum.
        a.picked(t2 + Duration::from_millis(400));
        a.record(true, t2 + Duration::from_millis(400), Some(&c));
        assert!(a.available(t2 + Duration::from_millis(800)));
        // A successful probe closes the circuit.
        let t3 = t2 + Duration::from_millis(800);
        a.picked(t3);
        assert!(a.record(false, t3, Some(&c)));
        assert!(a.available(t3) && !a.ejected());
    }

    #[test]
    fn cancelled_probe_allows_another() {
        let t0 = Instant::now();
        let c = cfg();
        let mut a = Accrual::default();
        for _ in 0..3 {
            a.record(true, t0, Some(&c));
        }
        let t1 = t0 + Duration::from_secs(1);
        a.picked(t1);
        a.cancelled(t1);
        assert!(a.available(t1));
    }

    #[test]
    fn disabled_or_bad_config() {
        assert_eq!(AccrualConfig::sanitized(0, 1, 1), None);
        let c = AccrualConfig::sanitized(1, 0, 0).unwrap_or_else(|| unreachable!());
        assert_eq!(c.min_backoff, Duration::from_millis(1));
        assert_eq!(c.max_backoff, c.min_backoff);
        let t0 = Instant::now();
        let mut a = Accrual::default();
        a.record(true, t0, Some(&c));
        assert!(a.ejected());
        assert!(
            a.record(false, t0, None),
            "switching accrual off restores the endpoint"
        );
        assert!(!a.ejected());
    }
}
