//! Fuzz-style property tests, bounded and deterministic: random strings through the annotation,
//! duration and weight parsers, and mutated manifests through the YAML reader and compiler.
//! Nothing may panic, and what parses must satisfy simple invariants.

use std::time::Duration;
use weft_model::annotations::accrual::{
    failure_accrual_annotations, parse_jitter_ratio, parse_max_failures, FAILURE_ACCRUAL,
    FAILURE_ACCRUAL_MAX_FAILURES, FAILURE_ACCRUAL_MAX_PENALTY, FAILURE_ACCRUAL_MIN_PENALTY,
};
use weft_model::{
    compile, format_duration, parse_documents, parse_duration, parse_grpc_retry_conditions,
    parse_http_retry_conditions, parse_retry_limit, parse_weight,
};

/// xorshift64*: small, fast and reproducible (no dependency, same sequence on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A string of up to `max` pieces drawn from `alphabet`.
    fn string(&mut self, alphabet: &[&str], max: usize) -> String {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

const ANNOTATION_ALPHABET: &[&str] = &[
    "0",
    "1",
    "2",
    "4",
    "5",
    "9",
    "x",
    "X",
    "xx",
    "-",
    ",",
    " ",
    ".",
    "gateway-error",
    "5xx",
    "500",
    "599",
    "600",
    "65536",
    "99999999999999999999",
    "unavailable",
    "_",
    "ok",
    "µ",
    "é",
    "\t",
    "\n",
    "m",
    "s",
    "h",
    "ms",
    "us",
    "ns",
];

#[test]
fn annotation_and_duration_parsers_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut accrual_parsed = 0;
    for _ in 0..20_000 {
        let s = rng.string(ANNOTATION_ALPHABET, 12);
        if let Ok(ranges) = parse_http_retry_conditions(&s) {
            assert!(!ranges.is_empty());
            assert!(
                ranges
                    .iter()
                    .all(|r| 100 <= r.min && r.min <= r.max && r.max <= 599),
                "{s:?}"
            );
            assert!(
                ranges.windows(2).all(|w| w[0].max + 1 < w[1].min),
                "{s:?}: not merged"
            );
        }
        if let Ok(codes) = parse_grpc_retry_conditions(&s) {
            assert!(!codes.is_empty());
            assert!(codes.windows(2).all(|w| w[0] < w[1]), "{s:?}: not sorted");
        }
        let _ = parse_retry_limit(&s);
        let _ = parse_weight(&s);
        if let Ok(n) = parse_max_failures(&s) {
            assert!(n >= 1, "{s:?}");
        }
        if let Ok(r) = parse_jitter_ratio(&s) {
            assert!((0.0..=100.0).contains(&r), "{s:?}");
        }
        // Each annotation gets its own value, valid half the time, so the whole set parses
        // often enough for the checks below to run (a count at the end proves they did).
        let mut value = |valid: String| {
            if rng.below(2) == 0 {
                valid
            } else {
                rng.string(ANNOTATION_ALPHABET, 12)
            }
        };
        let max_failures = value(format!("{}", 1 + s.len()));
        let min_penalty = value(format!("{}ms", 10 * s.len()));
        let t = value(format!("{}s", 1 + s.len()));
        let annotations: std::collections::BTreeMap<String, String> = [
            (FAILURE_ACCRUAL, "consecutive"),
            (FAILURE_ACCRUAL_MAX_FAILURES, max_failures.as_str()),
            (FAILURE_ACCRUAL_MIN_PENALTY, min_penalty.as_str()),
            (FAILURE_ACCRUAL_MAX_PENALTY, t.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let (Some(a), _) = failure_accrual_annotations(&annotations) {
            accrual_parsed += 1;
            assert!(
                a.max_failures >= 1 && a.min_penalty <= a.max_penalty,
                "{max_failures:?} {min_penalty:?} {t:?}"
            );
            assert!(!a.max_penalty.is_zero(), "{t:?}");
        }
        if let Ok(d) = parse_duration(&s) {
            // What parses formats to something that parses back to the same duration.
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{s:?}");
        }
    }
    assert!(
        accrual_parsed > 1000,
        "the accrual checks ran {accrual_parsed} times"
    );
}

#[test]
fn any_bytes_through_the_parsers() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let len = rng.below(24);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse_http_retry_conditions(&s);
        let _ = parse_grpc_retry_conditions(&s);
        let _ = parse_duration(&s);
        let _ = parse_weight(&s);
        let _ = parse_max_failures(&s);
        let _ = parse_jitter_ratio(&s);
    }
}

#[test]
fn durations_round_trip() {
    let mut rng = Rng(7);
    for _ in 0..10_000 {
        let d = Duration::new(rng.next() % 1_000_000, (rng.next() % 1_000_000_000) as u32);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

const MANIFESTS: &str = concat!(
    include_str!("fixtures/spec/web-default-httproute.yaml"),
    "---\n",
    include_str!("fixtures/spec/web-svc-profile.yaml"),
    "---\n",
    include_str!("fixtures/spec/web-split.yaml"),
    "---\n",
    include_str!("fixtures/spec/podinfo-failover-split.yaml"),
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: emojivoto}\nspec:\n  ports: [{port: 80}]\n",
);

const YAML_PIECES: &[&str] = &[
    " ", "\n", ":", "-", "---\n", "[", "]", "{", "}", "\"", "'", "#", "&a", "*a", "!!str ", "0",
    "-1", "1e9", "ten", "500m", "null", "~", "\t", "|", ">", "5xx", "2s", "?", ",",
];

#[test]
fn mutated_manifests_never_panic() {
    let mut rng = Rng(0xfeed);
    let base = MANIFESTS.as_bytes();
    for _ in 0..1_500 {
        let mut text = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 => {
                    let end = (at + rng.below(8)).min(text.len());
                    text.drain(at..end);
                }
                1 => {
                    let piece = YAML_PIECES[rng.below(YAML_PIECES.len())];
                    text.splice(at..at, piece.bytes());
                }
                _ => {
                    if at < text.len() {
                        text[at] = YAML_PIECES[rng.below(YAML_PIECES.len())].as_bytes()[0];
                    }
                }
            }
        }
        let text = String::from_utf8_lossy(&text);
        let (objects, errors) = parse_documents("fuzz.yaml", &text);
        for e in &errors {
            // Every problem names the file it came from.
            assert!(e.to_string().starts_with("fuzz.yaml"), "{e}");
        }
        let policies = compile(&objects);
        for p in policies.services.values() {
            assert!(
                !p.backends.is_empty(),
                "a policy always has somewhere to send requests"
            );
        }
    }
}
