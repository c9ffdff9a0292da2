//! A parser for the Prometheus text format (0.0.4), as much of it as the viz component reads:
//! sample lines `name{label="value",…} value [timestamp]` of the families it asks for. Comments
//! (`# HELP`, `# TYPE`) and other families are skipped without being interpreted.
//!
//! The input comes from a proxy, which the viz component does not trust: anything malformed is
//! an error naming the line (never a panic), and the number of kept samples is capped.

use std::fmt;

/// The most samples kept from one exposition; a proxy with more is reported, not stored.
pub const MAX_SAMPLES: usize = 100_000;

/// The most labels on one sample.
const MAX_LABELS: usize = 64;

/// A sample's labels, sorted by name.
pub type Labels = Vec<(String, String)>;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name (`response_latency_ms_bucket`, not the family's).
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// Why an exposition was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line is not a valid sample.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// More samples than [`MAX_SAMPLES`].
    #[error("more than {MAX_SAMPLES} samples")]
    TooManySamples,
    /// Not UTF-8.
    #[error("the body is not UTF-8")]
    NotUtf8,
}

/// Parses `body`, keeping the samples whose name `keep` accepts.
pub fn parse(body: &[u8], keep: impl Fn(&str) -> bool) -> Result<Vec<Sample>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotUtf8)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason| ParseError::Line {
            line: i + 1,
            reason,
        };
        let name_len = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_len];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("expected a metric name"));
        }
        // Validate every line's shape, even of families not kept: a truncated or garbled body
        // is an error for the whole scrape rather than a silently partial one.
        let (labels, rest) = parse_labels(&line[name_len..]).map_err(err)?;
        let value = parse_value(rest).map_err(err)?;
        if !keep(name) {
            continue;
        }
        if out.len() >= MAX_SAMPLES {
            return Err(ParseError::TooManySamples);
        }
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// Parses `{k="v",…}` (if present) and returns the labels and what follows.
fn parse_labels(s: &str) -> Result<(Labels, &str), &'static str> {
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((Vec::new(), s));
    };
    let mut labels: Labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            if labels.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err("a label appears twice");
            }
            return Ok((labels, after));
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() {
            return Err("expected a label name");
        }
        rest = rest[name_len..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or("expected '=' after a label name")?;
        rest = rest.trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or("expected a quoted label value")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("invalid escape in a label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        rest = &rest[end + 1..];
        if labels.len() >= MAX_LABELS {
            return Err("too many labels");
        }
        labels.push((name.to_owned(), value));
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label");
        }
    }
}

/// Parses ` value [timestamp]`.
fn parse_value(s: &str) -> Result<f64, &'static str> {
    if !s.starts_with([' ', '\t']) {
        return Err("expected a space before the value");
    }
    let mut parts = s.split_ascii_whitespace();
    let value = parts.next().ok_or("missing value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| "the value is not a number")?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| "the timestamp is not an integer")?;
    }
    if parts.next().is_some() {
        return Err("unexpected text after the value");
    }
    Ok(value)
}

/// Label values for messages: `{a="b",c="d"}`.
pub struct DisplayLabels<'a>(pub &'a [(String, String)]);

impl fmt::Display for DisplayLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn all(body: &str) -> Result<Vec<Sample>, ParseError> {
        parse(body.as_bytes(), |_| true)
    }

    #[test]
    fn parses_proxy_output() {
        let body = "# HELP response_total Total count of HTTP responses.\n\
# TYPE response_total counter\n\
response_total{direction=\"inbound\",authority=\"web:80\",tls=\"true\",client_id=\"a\\\"b\\\\c\\nd\",status_code=\"200\",classification=\"success\"} 42\n\
response_latency_ms_bucket{direction=\"inbound\",le=\"+Inf\"} 3\n\
process_start_time_seconds 1.7e9\n\
tcp_open_connections{direction=\"inbound\",} -1 1700000000000\n";
        let samples = all(body).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].name, "response_total");
        assert_eq!(samples[0].value, 42.0);
        let labels: Vec<(&str, &str)> = samples[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("authority", "web:80"),
                ("classification", "success"),
                ("client_id", "a\"b\\c\nd"),
                ("direction", "inbound"),
                ("status_code", "200"),
                ("tls", "true"),
            ]
        );
        assert_eq!(samples[1].labels[1], ("le".into(), "+Inf".into()));
        assert_eq!(samples[2].value, 1.7e9);
        assert_eq!(samples[3].value, -1.0);
        let kept = parse(body.as_bytes(), |n| n == "response_total").unwrap();
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn special_values() {
        let s = all("a +Inf\nb -Inf\nc NaN\n").unwrap();
        assert_eq!(s[0].value, f64::INFINITY);
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert!(s[2].value.is_nan());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases = [
            "response_total{",
            "response_total{a=\"b\"",
            "response_total{a=\"b} 1",
            "response_total{a=b} 1",
            "response_total{=\"b\"} 1",
            "response_total{a=\"\\x\"} 1",
            "response_total{a=\"1\",a=\"2\"} 1",
            "response_total 1 2 3",
            "response_total one",
            "response_total",
            "response_total{}1",
            "{a=\"b\"} 1",
            "9abc 1",
            "response_total 1 notatime",
            "é 1",
        ];
        for c in cases {
            assert!(all(c).is_err(), "{c:?} accepted");
        }
        assert_eq!(
            all("ok 1\nbad{a=\"x").unwrap_err().to_string(),
            "line 2: unterminated label value"
        );
        assert_eq!(parse(&[0xff, 0xfe], |_| true), Err(ParseError::NotUtf8));
        // Arbitrary bytes never panic.
        let mut seed = 7u64;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let alphabet = b"a{}=\",\\ 1.e+-\n#_";
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            let _ = parse(&bytes, |_| true);
        }
    }

    #[test]
    fn sample_count_is_capped() {
        let body = "a 1\n".repeat(MAX_SAMPLES + 1);
        assert_eq!(all(&body), Err(ParseError::TooManySamples));
        assert_eq!(
            parse(body.as_bytes(), |_| false).map(|s| s.len()),
            Ok(0),
            "skipped families do not count"
        );
    }
}
