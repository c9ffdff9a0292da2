//! Lenient readers for scalar fields (ports, weights, durations, regexes, string maps).
//!
//! Manifests in the wild write `port: "80"`, `weight: 500m`, `retry.linkerd.io/limit: 2`
//! (unquoted) and `isRetryable: "true"`; Kubernetes' own schemas accept some of these and
//! people copy the rest. Each reader accepts what is unambiguous and otherwise fails with a
//! message that quotes the value and says what was expected. Conversion happens inside the
//! serde visitor, so the YAML deserializer attaches the value's own line to the error.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// A scalar as it appeared in the manifest, before conversion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl fmt::Display for Scalar {
    /// Strings are quoted (`"ten"`), numbers and booleans are not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Scalar {
    /// The scalar as text: strings as they are, numbers and booleans as written in YAML.
    pub(crate) fn into_text(self) -> String {
        match self {
            Scalar::Str(s) => s,
            other => other.to_string(),
        }
    }
}

/// A visitor that reads any scalar and converts it with `convert`.
struct ScalarVisitor<T> {
    expecting: &'static str,
    convert: fn(Scalar) -> Result<T, String>,
}

impl<'de, T> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        (self.convert)(Scalar::Bool(v)).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.convert)(Scalar::Int(i128::from(v))).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.convert)(Scalar::Int(i128::from(v))).map_err(E::custom)
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
        (self.convert)(Scalar::Int(v)).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.convert)(Scalar::Float(v)).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.convert)(Scalar::Str(v.to_string())).map_err(E::custom)
    }
}

/// Like [`ScalarVisitor`] but for optional fields: null is `None`.
struct OptionVisitor<T>(ScalarVisitor<T>);

impl<'de, T> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

/// Defines `$name` (required field) and `$opt` (optional field) readers for one scalar type.
macro_rules! scalar_reader {
    ($name:ident, $opt:ident, $ty:ty, $expecting:expr, $convert:expr) => {
        #[allow(dead_code)]
        pub(crate) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            d.deserialize_any(ScalarVisitor {
                expecting: $expecting,
                convert: $convert,
            })
        }

        #[allow(dead_code)]
        pub(crate) fn $opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            d.deserialize_option(OptionVisitor(ScalarVisitor {
                expecting: $expecting,
                convert: $convert,
            }))
        }
    };
}

/// An integer written as a number or as a string of digits.
fn integer(s: &Scalar) -> Option<i128> {
    match s {
        Scalar::Int(i) => Some(*i),
        Scalar::Str(text) => text.trim().parse().ok(),
        Scalar::Float(x) if x.fract() == 0.0 && x.abs() < 1e18 => Some(*x as i128),
        _ => None,
    }
}

fn to_port(s: Scalar) -> Result<u16, String> {
    match integer(&s) {
        Some(n @ 1..=65535) => u16::try_from(n).map_err(|e| e.to_string()),
        _ => Err(format!(
            "{s} is not a port: expected a number from 1 to 65535"
        )),
    }
}

scalar_reader!(port, opt_port, u16, "a port number (1-65535)", to_port);

fn to_status(s: Scalar) -> Result<u16, String> {
    match integer(&s) {
        Some(n @ 100..=599) => u16::try_from(n).map_err(|e| e.to_string()),
        _ => Err(format!(
            "{s} is not an HTTP status: expected a number from 100 to 599"
        )),
    }
}

scalar_reader!(
    status,
    opt_status,
    u16,
    "an HTTP status (100-599)",
    to_status
);

fn to_count(s: Scalar) -> Result<u32, String> {
    match integer(&s).map(u32::try_from) {
        Some(Ok(n)) => Ok(n),
        _ => Err(format!(
            "{s} is not a count: expected a whole number like 5"
        )),
    }
}

scalar_reader!(count, opt_count, u32, "a whole number", to_count);

fn to_route_weight(s: Scalar) -> Result<u32, String> {
    match integer(&s).map(u32::try_from) {
        Some(Ok(n)) if n <= crate::split::MAX_WEIGHT => Ok(n),
        _ => Err(format!(
            "{s} is not a weight: expected a whole number from 0 to 1000000"
        )),
    }
}

scalar_reader!(
    route_weight,
    opt_route_weight,
    u32,
    "a weight (0-1000000)",
    to_route_weight
);

fn to_quantity_weight(s: Scalar) -> Result<u32, String> {
    let parsed = match &s {
        Scalar::Int(i) => crate::split::parse_weight(&i.to_string()),
        Scalar::Float(x) => crate::split::parse_weight(&x.to_string()),
        Scalar::Str(text) => crate::split::parse_weight(text),
        Scalar::Bool(_) => Err(crate::split::WeightError::NotAWeight {
            value: s.to_string(),
        }),
    };
    parsed.map_err(|e| match e {
        crate::split::WeightError::NotAWeight { .. } => crate::split::WeightError::NotAWeight {
            value: s.to_string(),
        }
        .to_string(),
        other => other.to_string(),
    })
}

scalar_reader!(
    quantity_weight,
    opt_quantity_weight,
    u32,
    "a weight like 90 or 500m",
    to_quantity_weight
);

fn to_ratio(s: Scalar) -> Result<f64, String> {
    let value = match &s {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(x) => Some(*x),
        Scalar::Str(text) => text.trim().parse::<f64>().ok(),
        Scalar::Bool(_) => None,
    };
    match value {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!(
            "{s} is not a ratio: expected a number of 0 or more, like 0.2"
        )),
    }
}

scalar_reader!(ratio, opt_ratio, f64, "a ratio like 0.2", to_ratio);

fn to_bool(s: Scalar) -> Result<bool, String> {
    match &s {
        Scalar::Bool(b) => Ok(*b),
        Scalar::Str(text) if text.trim().eq_ignore_ascii_case("true") => Ok(true),
        Scalar::Str(text) if text.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("{s} is not a boolean: expected true or false")),
    }
}

scalar_reader!(boolean, opt_boolean, bool, "true or false", to_bool);

fn to_duration(s: Scalar) -> Result<Duration, String> {
    match s {
        Scalar::Str(text) => crate::duration::parse_duration(&text).map_err(|e| e.to_string()),
        Scalar::Int(0) => Ok(Duration::ZERO),
        other => Err(format!(
            "{other} is not a duration: it has no unit (expected e.g. 300ms, 2s or 1m30s)"
        )),
    }
}

scalar_reader!(
    duration,
    opt_duration,
    Duration,
    "a duration like 300ms, 2s or 1m30s",
    to_duration
);

fn to_text(s: Scalar) -> Result<String, String> {
    Ok(s.into_text())
}

scalar_reader!(text, opt_text, String, "a string", to_text);

fn to_regex(s: Scalar) -> Result<String, String> {
    let text = s.into_text();
    check_regex(&text)?;
    Ok(text)
}

scalar_reader!(regex, opt_regex, String, "a regular expression", to_regex);

/// Checks that `pattern` compiles as a whole-value match (`^(?:pattern)$`), the way routes use
/// it. The error is the regex crate's last line ("unclosed group"), quoted with the pattern.
pub(crate) fn check_regex(pattern: &str) -> Result<(), String> {
    match regex::Regex::new(&format!("^(?:{pattern})$")) {
        Ok(_) => Ok(()),
        Err(e) => {
            let detail = e.to_string();
            let reason = detail
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid")
                .trim_start_matches("error: ")
                .to_string();
            Err(format!(
                "{pattern:?} is not a valid regular expression: {reason}"
            ))
        }
    }
}

/// A map of strings (labels, annotations, selectors) whose values may be written unquoted
/// (`retry.linkerd.io/limit: 2`); null means empty.
pub(crate) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct MapVisitor(PhantomData<()>);

    impl<'de> Visitor<'de> for MapVisitor {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<TextValue>()? {
                let value = map.next_value::<Option<TextValue>>()?;
                out.insert(key.0, value.map(|v| v.0).unwrap_or_default());
            }
            Ok(out)
        }
    }

    d.deserialize_option(MapVisitor(PhantomData))
}

/// A scalar read as text (for map keys and values).
struct TextValue(String);

impl<'de> serde::Deserialize<'de> for TextValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d).map(TextValue)
    }
}

/// A list that may be written as null (`rules:` with nothing after it) meaning empty.
pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let value: Option<Vec<T>> = serde::Deserialize::deserialize(d)?;
    Ok(value.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_accept_numbers_and_digit_strings() {
        assert_eq!(to_port(Scalar::Int(80)), Ok(80));
        assert_eq!(to_port(Scalar::Str("4143".into())), Ok(4143));
        assert_eq!(
            to_port(Scalar::Int(0)),
            Err("0 is not a port: expected a number from 1 to 65535".into())
        );
        assert_eq!(
            to_port(Scalar::Str("http".into())),
            Err(r#""http" is not a port: expected a number from 1 to 65535"#.into())
        );
        assert!(to_port(Scalar::Int(65536)).is_err());
    }

    #[test]
    fn regexes_are_checked_as_whole_matches() {
        assert_eq!(check_regex("/api/list"), Ok(()));
        assert_eq!(check_regex("/authors/[^/]*\\.json"), Ok(()));
        let err = check_regex("/api/(list").err().unwrap_or_default();
        assert!(
            err.starts_with(r#""/api/(list" is not a valid regular expression: "#),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn booleans_and_ratios() {
        assert_eq!(to_bool(Scalar::Str("True".into())), Ok(true));
        assert!(to_bool(Scalar::Str("yes".into())).is_err());
        assert_eq!(to_ratio(Scalar::Float(0.1)), Ok(0.1));
        assert_eq!(to_ratio(Scalar::Int(1)), Ok(1.0));
        assert!(to_ratio(Scalar::Float(-0.1)).is_err());
        assert!(to_ratio(Scalar::Float(f64::NAN)).is_err());
    }
}
