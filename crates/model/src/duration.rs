//! Durations as Linkerd, Go and the Gateway API write them: `300ms`, `2s`, `1m30s`, `1.5s`.
//!
//! A duration is one or more `<number><unit>` parts, added up. Numbers may have a fraction
//! (`1.5s`, `.5s`); units are `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`. Spaces around the
//! value and between parts are ignored (`1m 30s`), and a bare `0` is zero. A number without a
//! unit is refused rather than guessed: Linkerd reads `timeout: 300` as an error too, and
//! "300 what?" is exactly the mistake that makes a timeout a thousand times too long.

use std::time::Duration;

/// Why a duration could not be read. Every message quotes the value and shows valid examples.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The value is empty or only spaces.
    #[error("empty duration: expected a value like 300ms, 2s or 1m30s")]
    Empty,
    /// A number has no unit after it.
    #[error(
        "{value:?} is not a duration: {number:?} has no unit (expected e.g. 300ms, 2s or 1m30s)"
    )]
    MissingUnit {
        /// The whole value.
        value: String,
        /// The number that lacks a unit.
        number: String,
    },
    /// A unit is not one of `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
    #[error("{value:?} is not a duration: unknown unit {unit:?} (expected ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The whole value.
        value: String,
        /// The unit that was not understood.
        unit: String,
    },
    /// The value starts with a minus sign.
    #[error("{value:?} is not a duration: it is negative")]
    Negative {
        /// The whole value.
        value: String,
    },
    /// The value does not have the shape `<number><unit>…`.
    #[error("{value:?} is not a duration: expected a value like 300ms, 2s or 1m30s")]
    Malformed {
        /// The whole value.
        value: String,
    },
    /// The value does not fit in a duration.
    #[error("{value:?} is too long a duration")]
    TooLarge {
        /// The whole value.
        value: String,
    },
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Units from longest to shortest, with their length in nanoseconds (formatting uses this order).
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

fn unit_nanos(unit: &str) -> Option<u128> {
    match unit {
        "µs" | "μs" => Some(1_000),
        _ => UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, n)| *n),
    }
}

/// Parses a duration such as `300ms`, `2s`, `1m30s` or `1.5s`.
///
/// ```
/// use std::time::Duration;
/// use weft_model::parse_duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("300").is_err());
/// ```
pub fn parse_duration(value: &str) -> Result<Duration, DurationError> {
    let text = value.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative {
            value: value.to_string(),
        });
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let malformed = || DurationError::Malformed {
        value: value.to_string(),
    };
    let too_large = || DurationError::TooLarge {
        value: value.to_string(),
    };

    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(malformed());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                value: value.to_string(),
                number: number.to_string(),
            });
        }
        let Some(scale) = unit_nanos(unit) else {
            return Err(DurationError::UnknownUnit {
                value: value.to_string(),
                unit: unit.to_string(),
            });
        };
        let nanos = scaled(number, scale).map_err(|e| match e {
            NumberError::Malformed => malformed(),
            NumberError::Overflow => too_large(),
        })?;
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        rest = after.trim_start();
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    // The remainder is below 10^9, so it always fits.
    let nanos = u32::try_from(total % NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, nanos))
}

/// Why a number could not be scaled.
enum NumberError {
    Malformed,
    Overflow,
}

/// `number` (digits with at most one `.`) times `scale` nanoseconds.
fn scaled(number: &str, scale: u128) -> Result<u128, NumberError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(NumberError::Malformed);
    }
    // u128 holds 38 digits; more than 30 whole digits is far beyond any Duration anyway.
    if whole.len() > 30 {
        return Err(NumberError::Overflow);
    }
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| NumberError::Malformed)?
    };
    let mut nanos = whole_value
        .checked_mul(scale)
        .ok_or(NumberError::Overflow)?;
    // Digits beyond nanosecond precision cannot change the result; 18 is plenty for any unit.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| NumberError::Malformed)?;
        let exponent = u32::try_from(fraction.len()).map_err(|_| NumberError::Malformed)?;
        // digits < 10^18 and scale < 4 * 10^12: the product fits in u128.
        nanos += digits * scale / 10u128.pow(exponent);
    }
    Ok(nanos)
}

/// Formats a duration so that [`parse_duration`] reads it back unchanged: `300ms`, `1m30s`,
/// `1s500ms`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_string();
    }
    let mut rest = duration.as_nanos();
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        let count = rest / nanos;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
            rest %= nanos;
        }
    }
    out
}

/// Serde support for `Option<Duration>` as a string in the compiled policy (`"300ms"`), so JSON
/// output reads like the manifests it came from.
pub mod serde_opt {
    use super::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `Some(d)` as its formatted string, `None` as null.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads a duration string or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde support for a required `Duration` as a string in the compiled policy.
pub mod serde_req {
    use super::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes the duration as its formatted string.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*value))
    }

    /// Reads a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        match parse_duration(text) {
            Ok(d) => d,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    fn err(text: &str) -> String {
        match parse_duration(text) {
            Ok(d) => panic!("{text:?} should not parse, got {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_forms_linkerd_users_write() {
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("600ms"), Duration::from_millis(600));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1h2m3s4ms5us6ns"), Duration::new(3723, 4_005_006));
    }

    #[test]
    fn forgiving_spelling() {
        assert_eq!(ok(" 2s "), Duration::from_secs(2));
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("+3s"), Duration::from_secs(3));
        assert_eq!(ok("250µs"), Duration::from_micros(250));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("1.5m"), Duration::from_secs(90));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        // Digits finer than a nanosecond are dropped, not refused.
        assert_eq!(ok("1.0000000019s"), Duration::new(1, 1));
    }

    #[test]
    fn bad_durations_say_why() {
        assert_eq!(
            err(""),
            "empty duration: expected a value like 300ms, 2s or 1m30s"
        );
        assert_eq!(
            err("300"),
            r#""300" is not a duration: "300" has no unit (expected e.g. 300ms, 2s or 1m30s)"#
        );
        assert_eq!(
            err("1m30"),
            r#""1m30" is not a duration: "30" has no unit (expected e.g. 300ms, 2s or 1m30s)"#
        );
        assert_eq!(
            err("5sec"),
            r#""5sec" is not a duration: unknown unit "sec" (expected ns, us, ms, s, m or h)"#
        );
        assert_eq!(
            err("2S"),
            r#""2S" is not a duration: unknown unit "S" (expected ns, us, ms, s, m or h)"#
        );
        assert_eq!(err("-1s"), r#""-1s" is not a duration: it is negative"#);
        assert_eq!(
            err("ms"),
            r#""ms" is not a duration: expected a value like 300ms, 2s or 1m30s"#
        );
        assert_eq!(
            err("1.2.3s"),
            r#""1.2.3s" is not a duration: expected a value like 300ms, 2s or 1m30s"#
        );
        assert_eq!(
            err(".s"),
            r#"".s" is not a duration: expected a value like 300ms, 2s or 1m30s"#
        );
        assert!(err("99999999999999999999999h").contains("too long"));
        assert!(err("9999999999999999999999999999999999s").contains("too long"));
    }

    #[test]
    fn format_round_trips() {
        for (d, text) in [
            (Duration::from_millis(300), "300ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::ZERO, "0s"),
            (Duration::new(3723, 4_005_006), "1h2m3s4ms5us6ns"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(ok(text), d);
        }
    }
}
