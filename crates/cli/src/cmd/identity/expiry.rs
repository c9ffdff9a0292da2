//! How a certificate's validity window looks from now, in words: "expires in 365 days",
//! "EXPIRED 3 days ago", "not valid for another 2 hours".

use std::time::{Duration, SystemTime};

use weft_pki::CertInfo;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Where `now` falls in a certificate's validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Valid; expires after this long.
    Valid(Duration),
    /// Expired this long ago.
    Expired(Duration),
    /// Becomes valid after this long.
    NotYetValid(Duration),
}

impl Window {
    /// The window of `info` at `now`.
    pub fn of(info: &CertInfo, now: SystemTime) -> Self {
        if let Ok(early) = info.not_before.duration_since(now) {
            if !early.is_zero() {
                return Self::NotYetValid(early);
            }
        }
        match info.not_after.duration_since(now) {
            Ok(left) => Self::Valid(left),
            Err(past) => Self::Expired(past.duration()),
        }
    }

    /// `valid`, `expired` or `not_yet_valid` (for JSON).
    pub fn status(self) -> &'static str {
        match self {
            Self::Valid(_) => "valid",
            Self::Expired(_) => "expired",
            Self::NotYetValid(_) => "not_yet_valid",
        }
    }
}

/// Seconds until expiry; negative once expired.
pub fn expires_in_seconds(info: &CertInfo, now: SystemTime) -> i64 {
    match info.not_after.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs())
            .map(|s| -s)
            .unwrap_or(i64::MIN),
    }
}

/// "expires in 365 days", "EXPIRED 3 days ago", "NOT YET VALID: starts in 2 hours".
pub fn phrase(info: &CertInfo, now: SystemTime) -> String {
    match Window::of(info, now) {
        Window::Valid(d) => format!("expires in {}", span(d)),
        Window::Expired(d) => format!("EXPIRED {} ago", span(d)),
        Window::NotYetValid(d) => format!("NOT YET VALID: starts in {}", span(d)),
    }
}

/// A duration in the largest unit that keeps it readable: days from two days on, then hours,
/// minutes, seconds; rounded to the nearest unit (a 8760h certificate made a moment ago
/// "expires in 365 days", not 364).
pub fn span(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 2 * DAY {
        ((secs + DAY / 2) / DAY, "day")
    } else if secs >= 2 * HOUR {
        ((secs + HOUR / 2) / HOUR, "hour")
    } else if secs >= 2 * MINUTE {
        ((secs + MINUTE / 2) / MINUTE, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_to_a_readable_unit() {
        let s = Duration::from_secs;
        assert_eq!(span(s(87_600 * HOUR - 1)), "3650 days");
        assert_eq!(span(s(8_760 * HOUR - 3)), "365 days");
        assert_eq!(span(s(2 * DAY)), "2 days");
        assert_eq!(span(s(2 * DAY - 1)), "48 hours");
        assert_eq!(span(s(24 * HOUR)), "24 hours");
        assert_eq!(span(s(90 * MINUTE)), "90 minutes");
        assert_eq!(span(s(90)), "90 seconds");
        assert_eq!(span(s(1)), "1 second");
        assert_eq!(span(Duration::ZERO), "0 seconds");
    }
}
