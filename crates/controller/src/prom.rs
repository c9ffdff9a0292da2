//! A small Prometheus text-format (0.0.4) encoder: families with `# HELP` and `# TYPE`, samples
//! with escaped label values. The control plane exports a handful of counters and gauges, so a
//! metrics library would be more than it needs.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of family a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; sample names end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Appends families to a text buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

impl Encoder {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Samples of the family follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample: `name{k="v",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The text so far.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// Seconds since the Unix epoch, as a metric value (negative before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn encodes_families_and_escapes_labels() {
        let mut e = Encoder::new();
        e.family("x_total", Kind::Counter, "Things.\nMore.")
            .sample("x_total", &[("reason", "a\"b\\c\nd"), ("k", "v")], 3.0)
            .single("y", Kind::Gauge, "A gauge.", 1.5)
            .single("z", Kind::Gauge, "Odd.", f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\\nMore.\n# TYPE x_total counter\n\
             x_total{reason=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\n\
             # HELP y A gauge.\n# TYPE y gauge\ny 1.5\n\
             # HELP z Odd.\n# TYPE z gauge\nz NaN\n"
        );
    }

    #[test]
    fn unix_seconds_of_times() {
        assert_eq!(
            unix_seconds(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            1.7e9
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(1)), -1.0);
        assert_eq!(format_value(1_893_456_000.0), "1893456000");
    }
}
