//! Durations and end times as people type them: `87600h`, `8760h`, `24h`, `1m30s`, `300ms`,
//! `1.5h`, `3650d` (Go's `time.ParseDuration` syntax, which step and Linkerd users know, plus `d`
//! for days and optional spaces between parts), or an RFC 3339 time for `--not-after`, as step
//! accepts (`2036-01-01T00:00:00Z`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Units, longest suffix first where one is a prefix of another (`ms` before `m`).
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (examples: 87600h, 24h, 1m30s, 300ms)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses a non-negative duration such as `8760h`, `1m30s`, `1.5h` or `300ms`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason: String| DurationError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(fail("it is negative".to_owned()));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(fail("it is empty".to_owned()));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(fail(format!("expected a number at {rest:?}")));
        }
        if number.matches('.').count() > 1 {
            return Err(fail(format!("{number:?} is not a number")));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(fail(format!(
                "{number:?} has no unit (ns, us, ms, s, m, h or d)"
            )));
        }
        let Some(&(_, nanos_per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(fail(format!(
                "unknown unit {unit:?} (use ns, us, ms, s, m, h or d)"
            )));
        };
        let part = scaled(number, nanos_per_unit).ok_or_else(|| fail("too large".to_owned()))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| fail("too large".to_owned()))?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| fail("too large".to_owned()))?;
    // The remainder of a division by 10^9 always fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one dot) times `unit` nanoseconds, or `None` on overflow.
fn scaled(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(unit)?;
    // Nanosecond precision needs at most 18 fraction digits for a day; ignore the rest.
    let fraction = fraction.get(..fraction.len().min(18)).unwrap_or("");
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        value = value.checked_add(digits.checked_mul(unit)? / scale)?;
    }
    Some(value)
}

/// When a new certificate stops being valid: a lifetime from now, or a fixed time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAfter {
    /// `now + duration`.
    In(Duration),
    /// A fixed time.
    At(SystemTime),
}

impl NotAfter {
    /// The lifetime this gives a certificate made at `now`.
    pub fn lifetime_from(self, now: SystemTime) -> Result<Duration, String> {
        match self {
            Self::In(d) => Ok(d),
            Self::At(t) => t.duration_since(now).map_err(|_| {
                format!(
                    "{} is in the past; give a later time or a duration such as 8760h",
                    weft_pki::fmt_time(t)
                )
            }),
        }
    }
}

impl FromStr for NotAfter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let looks_like_date = s.len() >= 10
            && s.as_bytes().get(4) == Some(&b'-')
            && s.bytes().take(4).all(|b| b.is_ascii_digit());
        if looks_like_date {
            return OffsetDateTime::parse(s, &Rfc3339)
                .map(|t| Self::At(SystemTime::from(t)))
                .map_err(|e| {
                    format!(
                        "invalid time {s:?}: {e} (expected RFC 3339, e.g. 2036-01-01T00:00:00Z)"
                    )
                });
        }
        parse_duration(s).map(Self::In).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    #[test]
    fn parses_what_operators_type() {
        let cases = [
            ("87600h", Duration::from_secs(87_600 * H)),
            ("8760h", Duration::from_secs(8_760 * H)),
            ("24h", Duration::from_secs(24 * H)),
            ("1m30s", Duration::from_secs(90)),
            ("300ms", Duration::from_millis(300)),
            ("1.5h", Duration::from_secs(5_400)),
            ("2h45m", Duration::from_secs(2 * H + 45 * 60)),
            ("1h 30m", Duration::from_secs(5_400)),
            ("3650d", Duration::from_secs(3_650 * 24 * H)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            (".5s", Duration::from_millis(500)),
            ("+5s", Duration::from_secs(5)),
            (" 5s ", Duration::from_secs(5)),
            ("0", Duration::ZERO),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for (input, reason) in [
            ("", "empty"),
            ("90", "no unit"),
            ("5x", "unknown unit \"x\""),
            ("5 h", "no unit"),
            ("-1h", "negative"),
            ("h", "expected a number"),
            ("1..5h", "not a number"),
            ("99999999999999999999999999h", "too large"),
            ("1y", "unknown unit"),
        ] {
            let err = parse_duration(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn not_after_takes_a_duration_or_an_rfc3339_time() {
        assert_eq!(
            "8760h".parse::<NotAfter>(),
            Ok(NotAfter::In(Duration::from_secs(8760 * H)))
        );
        let at: NotAfter = "2036-01-01T00:00:00Z".parse().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(2_082_758_400);
        assert_eq!(at, NotAfter::At(t));
        let now = t - Duration::from_secs(10);
        assert_eq!(at.lifetime_from(now), Ok(Duration::from_secs(10)));
        let err = at.lifetime_from(t + Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("in the past"), "{err}");
        let err = "2036-13-01T00:00:00Z".parse::<NotAfter>().unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
