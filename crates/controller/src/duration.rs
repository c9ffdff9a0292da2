//! Durations on the command line, as Go (and so Linkerd and step) writes them: `300ms`, `2s`,
//! `1m30s`, `24h`, `1.5h`, `87600h`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, and `d`
//! for days. A bare `0` is zero; any other number needs a unit, so `30` is refused rather than
//! guessed.

use std::time::Duration;

/// Why a duration does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 300ms, 2s, 1m30s, 24h)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a duration such as `1m30s`. Spaces between parts are allowed (`1m 30s`).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s.as_str();
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("a number has no unit"))?;
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(err("expected a number"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(err("unknown unit; use ns, us, ms, s, m, h or d")),
        };
        total_nanos = total_nanos
            .checked_add(scaled(num, unit_nanos).ok_or_else(|| err("malformed or too large"))?)
            .ok_or_else(|| err("too large"))?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("too large"))?;
    let nanos = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// `num` (digits with at most one `.`) times `unit_nanos`, truncated to whole nanoseconds.
fn scaled(num: &str, unit_nanos: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(unit_nanos)?;
    // Fractional digits: each contributes digit * unit / 10^position; 18 digits are plenty.
    let mut scale = unit_nanos;
    for digit in frac.chars().take(18) {
        scale /= 10;
        let d = u128::from(digit.to_digit(10)?);
        value = value.checked_add(d * scale)?;
    }
    Some(value)
}

/// Formats a duration the way [`parse_duration`] reads it: `24h`, `1m30s`, `300ms`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let ms = d.subsec_millis();
    let sub_ms_nanos = d.subsec_nanos() % 1_000_000;
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    if sub_ms_nanos > 0 {
        out.push_str(&format!("{sub_ms_nanos}ns"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let cases = [
            ("300ms", Duration::from_millis(300)),
            ("2s", Duration::from_secs(2)),
            ("1m30s", Duration::from_secs(90)),
            ("1m 30s", Duration::from_secs(90)),
            ("24h", Duration::from_secs(86_400)),
            ("87600h", Duration::from_secs(87_600 * 3600)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("1d", Duration::from_secs(86_400)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1h1m1s1ms", Duration::new(3661, 1_000_000)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["", "30", "1x", "h", "1..5s", "1.2.3s", "-1s", "1m30", "ms5"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let err = parse_duration("99999999999999999999999h").unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::from_secs(86_400),
            Duration::from_secs(90),
            Duration::from_millis(300),
            Duration::from_secs(20),
            Duration::new(3661, 1_000_007),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
