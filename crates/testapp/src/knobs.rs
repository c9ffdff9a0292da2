//! The knob handler's inputs: parsing and validating `status`, `latency_ms`, `error_rate` and
//! `size` from the query string or `x-testapp-*` headers, and the error-rate accumulator.
//!
//! Everything here is synchronous and pure so it is unit-tested without a runtime.

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;

use crate::ServerConfig;

/// Longest latency a request (or the start-up config) may ask for: every wait is bounded, and a
/// test that wants longer is almost certainly a typo (`latency_ms=50000` for `5000`).
pub const MAX_LATENCY: Duration = Duration::from_secs(600);

/// Largest body the knob handler or `/bytes` will generate (1 TiB): far above any test, and it
/// keeps `size` from being used to ask for an absurd stream by accident.
pub const MAX_SIZE: u64 = 1 << 40;

/// An invalid knob value, naming where it came from (query parameter, header or flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {origin} {value:?}: expected {expected}")]
pub struct KnobError {
    /// Where the value came from, e.g. `query parameter status` or `header x-testapp-size`.
    pub origin: String,
    /// The offending value, as received.
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl KnobError {
    fn new(source: &str, value: &str, expected: &'static str) -> Self {
        Self {
            origin: source.to_string(),
            value: value.to_string(),
            expected,
        }
    }
}

/// The effective behaviour of one knob-handler request.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    /// Response status when no error is injected.
    pub status: u16,
    /// Delay before answering.
    pub latency: Duration,
    /// Probability-like fraction of requests answered with 500.
    pub error_rate: f64,
    /// Body size in bytes; `None` answers `hello from NAME\n`.
    pub size: Option<u64>,
}

impl Knobs {
    /// Resolves each knob from the query string first, then the `x-testapp-*` header, then the
    /// start-up default.
    pub fn resolve(
        query: Option<&str>,
        headers: &HeaderMap,
        defaults: &ServerConfig,
    ) -> Result<Self, KnobError> {
        let status = match lookup(query, headers, "status")? {
            Some((src, v)) => parse_status(&src, &v)?,
            None => defaults.status,
        };
        let latency = match lookup(query, headers, "latency_ms")? {
            Some((src, v)) => parse_latency_ms(&src, &v)?,
            None => defaults.latency,
        };
        let error_rate = match lookup(query, headers, "error_rate")? {
            Some((src, v)) => parse_error_rate(&src, &v)?,
            None => defaults.error_rate,
        };
        let size = match lookup(query, headers, "size")? {
            Some((src, v)) => Some(parse_size(&src, &v)?),
            None => defaults.size.map(|s| s as u64),
        };
        Ok(Self {
            status,
            latency,
            error_rate,
            size,
        })
    }
}

/// Finds knob `name` in the query (`name=...`) or header (`x-testapp-name-with-dashes`),
/// returning a description of the source and the raw value.
fn lookup(
    query: Option<&str>,
    headers: &HeaderMap,
    name: &str,
) -> Result<Option<(String, String)>, KnobError> {
    if let Some(v) = query_param(query, name) {
        return Ok(Some((format!("query parameter {name}"), v.to_string())));
    }
    let header = format!("x-testapp-{}", name.replace('_', "-"));
    match headers.get(&header) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) => Ok(Some((format!("header {header}"), s.trim().to_string()))),
            Err(_) => Err(KnobError::new(
                &format!("header {header}"),
                &String::from_utf8_lossy(v.as_bytes()),
                "a visible ASCII value",
            )),
        },
    }
}

/// The first value of query parameter `name`, without percent-decoding (knob values are
/// numbers). A parameter given without `=` has the empty value.
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Parses a response status: 200–599 (1xx are not final responses and cannot be injected).
pub fn parse_status(source: &str, value: &str) -> Result<u16, KnobError> {
    match value.parse::<u16>() {
        Ok(s) if (200..=599).contains(&s) => Ok(s),
        _ => Err(KnobError::new(
            source,
            value,
            "an integer status from 200 to 599",
        )),
    }
}

/// Parses a latency in whole milliseconds, at most [`MAX_LATENCY`].
pub fn parse_latency_ms(source: &str, value: &str) -> Result<Duration, KnobError> {
    const EXPECTED: &str = "an integer number of milliseconds from 0 to 600000";
    let ms = value
        .parse::<u64>()
        .map_err(|_| KnobError::new(source, value, EXPECTED))?;
    let latency = Duration::from_millis(ms);
    if latency > MAX_LATENCY {
        return Err(KnobError::new(source, value, EXPECTED));
    }
    Ok(latency)
}

/// Checks a latency given as a [`Duration`] (start-up configuration).
pub fn check_latency(source: &str, latency: Duration) -> Result<(), KnobError> {
    if latency > MAX_LATENCY {
        return Err(KnobError::new(
            source,
            &format!("{}ms", latency.as_millis()),
            "at most 600000 milliseconds",
        ));
    }
    Ok(())
}

/// Parses an error rate: a finite number from 0.0 to 1.0.
pub fn parse_error_rate(source: &str, value: &str) -> Result<f64, KnobError> {
    let rate = value
        .parse::<f64>()
        .map_err(|_| KnobError::new(source, value, "a number from 0.0 to 1.0"))?;
    check_error_rate(source, rate)?;
    Ok(rate)
}

/// Checks an error rate given as a number (start-up configuration).
pub fn check_error_rate(source: &str, rate: f64) -> Result<(), KnobError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(KnobError::new(
            source,
            &rate.to_string(),
            "a number from 0.0 to 1.0",
        ))
    }
}

/// Parses a body size in bytes, at most [`MAX_SIZE`].
pub fn parse_size(source: &str, value: &str) -> Result<u64, KnobError> {
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_SIZE => Ok(n),
        _ => Err(KnobError::new(
            source,
            value,
            "an integer number of bytes from 0 to 1099511627776",
        )),
    }
}

/// Checks that the server name can be sent as the `x-testapp-name` header value.
pub fn validate_name(name: &str) -> Result<(), KnobError> {
    if !name.is_empty() && http::HeaderValue::from_str(name).is_ok() {
        Ok(())
    } else {
        Err(KnobError::new(
            "--name",
            name,
            "a non-empty name usable as a header value",
        ))
    }
}

/// Decides which requests get an injected 500.
///
/// Deterministic on purpose: an accumulator adds each request's rate and fails the request
/// whenever it crosses 1. With `error_rate=0.25`, exactly one request in four fails, so tests
/// of retries and load reports get exact counts instead of flaky ones.
#[derive(Debug, Default)]
pub struct ErrorBudget {
    acc: Mutex<f64>,
}

impl ErrorBudget {
    /// Whether the current request, with error rate `rate`, should fail.
    pub fn should_fail(&self, rate: f64) -> bool {
        if rate <= 0.0 || rate.is_nan() {
            return false;
        }
        // A poisoned lock only means another request panicked mid-update of a plain f64.
        let mut acc = self.acc.lock().unwrap_or_else(|e| e.into_inner());
        *acc += rate.min(1.0);
        if *acc >= 1.0 - 1e-9 {
            *acc = (*acc - 1.0).max(0.0);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn defaults_apply_without_query_or_headers() {
        let cfg = ServerConfig {
            status: 201,
            latency: Duration::from_millis(7),
            error_rate: 0.5,
            size: Some(10),
            ..ServerConfig::default()
        };
        let k = Knobs::resolve(None, &HeaderMap::new(), &cfg).unwrap();
        assert_eq!(
            k,
            Knobs {
                status: 201,
                latency: Duration::from_millis(7),
                error_rate: 0.5,
                size: Some(10)
            }
        );
    }

    #[test]
    fn query_wins_over_header_and_header_over_default() {
        let h = headers(&[
            ("x-testapp-status", "503"),
            ("x-testapp-latency-ms", "12"),
            ("x-testapp-size", "3"),
            ("x-testapp-error-rate", "0.1"),
        ]);
        let k =
            Knobs::resolve(Some("a=b&status=404&size=99"), &h, &ServerConfig::default()).unwrap();
        assert_eq!(k.status, 404);
        assert_eq!(k.size, Some(99));
        assert_eq!(k.latency, Duration::from_millis(12));
        assert_eq!(k.error_rate, 0.1);
    }

    #[test]
    fn invalid_values_name_the_knob() {
        let cfg = ServerConfig::default();
        let e = Knobs::resolve(Some("status=abc"), &HeaderMap::new(), &cfg).unwrap_err();
        assert!(e.to_string().contains("query parameter status"), "{e}");
        let e = Knobs::resolve(Some("status=99"), &HeaderMap::new(), &cfg).unwrap_err();
        assert!(e.to_string().contains("status"), "{e}");
        let e = Knobs::resolve(Some("error_rate=1.5"), &HeaderMap::new(), &cfg).unwrap_err();
        assert!(e.to_string().contains("error_rate"), "{e}");
        let e = Knobs::resolve(Some("error_rate=NaN"), &HeaderMap::new(), &cfg).unwrap_err();
        assert!(e.to_string().contains("error_rate"), "{e}");
        let e = Knobs::resolve(Some("latency_ms=-1"), &HeaderMap::new(), &cfg).unwrap_err();
        assert!(e.to_string().contains("latency_ms"), "{e}");
        let e = Knobs::resolve(Some("latency_ms=600001"), &HeaderMap::new(), &cfg).unwrap_err();
        assert!(e.to_string().contains("latency_ms"), "{e}");
        let h = headers(&[("x-testapp-size", "lots")]);
        let e = Knobs::resolve(None, &h, &cfg).unwrap_err();
        assert!(e.to_string().contains("header x-testapp-size"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn query_param_handles_missing_and_bare_keys() {
        assert_eq!(query_param(Some("a=1&b=2"), "b"), Some("2"));
        assert_eq!(query_param(Some("a=1&a=2"), "a"), Some("1"));
        assert_eq!(query_param(Some("flag"), "flag"), Some(""));
        assert_eq!(query_param(Some("ab=1"), "a"), None);
        assert_eq!(query_param(None, "a"), None);
    }

    #[test]
    fn error_budget_fails_exactly_the_requested_fraction() {
        let budget = ErrorBudget::default();
        let failures = (0..100).filter(|_| budget.should_fail(0.25)).count();
        assert_eq!(failures, 25);
        let budget = ErrorBudget::default();
        assert_eq!((0..10).filter(|_| budget.should_fail(1.0)).count(), 10);
        let budget = ErrorBudget::default();
        assert_eq!((0..10).filter(|_| budget.should_fail(0.0)).count(), 0);
        let budget = ErrorBudget::default();
        assert_eq!((0..30).filter(|_| budget.should_fail(0.1)).count(), 3);
    }

    #[test]
    fn server_config_validation() {
        assert!(ServerConfig::default().validate().is_ok());
        let bad = ServerConfig {
            error_rate: 2.0,
            ..ServerConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("error-rate"));
        let bad = ServerConfig {
            status: 42,
            ..ServerConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("status"));
        let bad = ServerConfig {
            name: "bad\nname".into(),
            ..ServerConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("name"));
    }
}
